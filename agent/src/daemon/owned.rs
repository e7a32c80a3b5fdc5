//! The record of the virtual addresses, routes and rules this agent added, kept on disk
//! so that a run after a crash removes exactly those — and never an address or route
//! someone else put there.
//!
//! The file is a JSON object `{"addresses": [...], "routes": [...], "rules": [...]}`; a
//! plain list of addresses (what earlier versions wrote) is read as well.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::net::Netlink;

/// One address vigil added.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OwnedAddress {
    /// Interface name.
    pub interface: String,
    /// The address.
    pub addr: std::net::IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
}

/// One route vigil added (`virtual_routes`), as configured, with the interface it was
/// resolved to, so that a later run can rebuild the kernel's message and delete it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OwnedRoute {
    /// The route as written in the configuration.
    pub route: String,
    /// The output interface's name, if the route has one.
    pub interface: Option<String>,
}

/// One policy rule vigil added (`virtual_rules`), as configured.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OwnedRule {
    /// The rule as written in the configuration.
    pub rule: String,
}

/// What a previous run left, as read from its record.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Leftovers {
    /// Addresses.
    #[serde(default)]
    pub addresses: Vec<OwnedAddress>,
    /// Routes.
    #[serde(default)]
    pub routes: Vec<OwnedRoute>,
    /// Policy rules.
    #[serde(default)]
    pub rules: Vec<OwnedRule>,
}

/// The record on disk: today's object, or the address list earlier versions wrote.
#[derive(Deserialize)]
#[serde(untagged)]
enum OnDisk {
    Record(Leftovers),
    Addresses(Vec<OwnedAddress>),
}

/// The set of added addresses, routes and rules and the file that mirrors it.
#[derive(Debug)]
pub struct OwnedAddresses {
    path: PathBuf,
    set: BTreeSet<OwnedAddress>,
    routes: BTreeSet<OwnedRoute>,
    rules: BTreeSet<OwnedRule>,
}

impl OwnedAddresses {
    /// An empty record kept at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            set: BTreeSet::new(),
            routes: BTreeSet::new(),
            rules: BTreeSet::new(),
        }
    }

    /// What a previous run left in `path`: nothing when there is no file; nothing, with
    /// a warning, when it cannot be read or parsed (the kernel's own tag on each address,
    /// see `net::address::VIGIL_ADDRESS_PROTO`, still finds the addresses).
    pub fn leftovers(path: &Path) -> Leftovers {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Leftovers::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read the record of added addresses: {e}");
                return Leftovers::default();
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(OnDisk::Record(l)) => l,
            Ok(OnDisk::Addresses(addresses)) => Leftovers {
                addresses,
                ..Leftovers::default()
            },
            Err(e) => {
                tracing::warn!(path = %path.display(), "record of added addresses is corrupt ({e}); ignored");
                Leftovers::default()
            }
        }
    }

    /// Whether vigil added this address.
    pub fn contains(&self, a: &OwnedAddress) -> bool {
        self.set.contains(a)
    }

    /// Records an added address.
    pub fn insert(&mut self, a: OwnedAddress) {
        if self.set.insert(a) {
            self.save();
        }
    }

    /// Forgets a removed address.
    pub fn remove(&mut self, a: &OwnedAddress) {
        if self.set.remove(a) {
            self.save();
        }
    }

    /// Whether vigil added this route.
    pub fn has_route(&self, r: &OwnedRoute) -> bool {
        self.routes.contains(r)
    }

    /// Records an added route.
    pub fn insert_route(&mut self, r: OwnedRoute) {
        if self.routes.insert(r) {
            self.save();
        }
    }

    /// Forgets a removed route.
    pub fn remove_route(&mut self, r: &OwnedRoute) {
        if self.routes.remove(r) {
            self.save();
        }
    }

    /// Whether vigil added this rule.
    pub fn has_rule(&self, r: &OwnedRule) -> bool {
        self.rules.contains(r)
    }

    /// Records an added rule.
    pub fn insert_rule(&mut self, r: OwnedRule) {
        if self.rules.insert(r) {
            self.save();
        }
    }

    /// Forgets a removed rule.
    pub fn remove_rule(&mut self, r: &OwnedRule) {
        if self.rules.remove(r) {
            self.save();
        }
    }

    fn save(&self) {
        let record = Leftovers {
            addresses: self.set.iter().cloned().collect(),
            routes: self.routes.iter().cloned().collect(),
            rules: self.rules.iter().cloned().collect(),
        };
        let result = serde_json::to_vec(&record)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                // The runtime directory may have been removed under the agent (`rm -rf
                // /run/vigil`, a clean of /run): without the record, a crash would leave
                // routes and rules behind (addresses carry the kernel tag, they do not).
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let tmp = self.path.with_extension("tmp");
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, &self.path)
            });
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), "cannot record added addresses: {e}");
        }
    }

    /// Removes the file (clean exit: every address, route and rule is gone).
    pub fn clear(&mut self) {
        self.set.clear();
        self.routes.clear();
        self.rules.clear();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes the addresses, routes and rules a vigil that did not exit cleanly left
/// behind: rules first, then routes, then addresses (the reverse of adding them).
pub(crate) async fn remove_leftovers(netlink: &Netlink, path: &Path) {
    let left = OwnedAddresses::leftovers(path);
    for r in &left.rules {
        let msg = match r.rule.parse::<crate::config::route::VirtualRule>() {
            Ok(rule) => crate::net::route::rule_message(&rule),
            Err(e) => {
                tracing::error!("leftover rule {}: {e}", r.rule);
                continue;
            }
        };
        match netlink.remove_rule(msg).await {
            Ok(true) => tracing::warn!(
                "removed rule {}: left by a vigil that did not exit cleanly",
                r.rule
            ),
            Ok(false) => {}
            Err(e) => tracing::error!("removing leftover rule {}: {e}", r.rule),
        }
    }
    for r in &left.routes {
        let oif = match &r.interface {
            Some(name) => match netlink.interface(name).await {
                Ok(i) => Some(i.index),
                // Gone with its interface: the kernel removed the route too.
                Err(_) => continue,
            },
            None => None,
        };
        let msg = r
            .route
            .parse::<crate::config::route::VirtualRoute>()
            .map_err(|e| e.to_string())
            .and_then(|route| {
                crate::net::route::route_message(&route, oif).map_err(|e| e.to_string())
            });
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("leftover route {}: {e}", r.route);
                continue;
            }
        };
        match netlink.remove_route(msg).await {
            Ok(true) => tracing::warn!(
                "removed route {}: left by a vigil that did not exit cleanly",
                r.route
            ),
            Ok(false) => {}
            Err(e) => tracing::error!("removing leftover route {}: {e}", r.route),
        }
    }
    for a in left.addresses {
        let Ok(iface) = netlink.interface(&a.interface).await else {
            continue;
        };
        let vip = crate::net::VirtualAddress::new(a.addr, a.prefix_len);
        match netlink.remove_address(&iface, &vip).await {
            Ok(true) => tracing::warn!(
                "removed {}/{} from {}: left by a vigil that did not exit cleanly",
                a.addr,
                a.prefix_len,
                a.interface
            ),
            Ok(false) => {}
            Err(e) => tracing::error!("removing leftover {}: {e}", a.addr),
        }
    }
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_rules_survive_in_the_record_and_old_address_lists_still_read() {
        let dir = std::env::temp_dir().join(format!("vigil-owned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("t.addresses");
        let mut o = OwnedAddresses::new(path.clone());
        let a = OwnedAddress {
            interface: "eth0".into(),
            addr: "192.0.2.1".parse().expect("literal"),
            prefix_len: 24,
        };
        let r = OwnedRoute {
            route: "198.51.100.0/24 dev eth0 table 100".into(),
            interface: Some("eth0".into()),
        };
        let u = OwnedRule {
            rule: "from 192.0.2.1/32 table 100 priority 1000".into(),
        };
        o.insert(a.clone());
        o.insert_route(r.clone());
        o.insert_rule(u.clone());
        let l = OwnedAddresses::leftovers(&path);
        assert_eq!(
            (l.addresses, l.routes, l.rules),
            (vec![a.clone()], vec![r.clone()], vec![u.clone()])
        );
        o.remove_route(&r);
        let l = OwnedAddresses::leftovers(&path);
        assert!(l.routes.is_empty() && l.rules == vec![u]);
        // The list an earlier version wrote.
        std::fs::write(&path, serde_json::to_vec(&vec![a.clone()]).expect("json")).expect("write");
        let l = OwnedAddresses::leftovers(&path);
        assert_eq!(l.addresses, vec![a]);
        assert!(l.routes.is_empty() && l.rules.is_empty());
        o.clear();
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_removed_runtime_directory_is_made_again_for_the_record() {
        let dir = std::env::temp_dir().join(format!("vigil-owned-gone-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("t.addresses");
        let mut o = OwnedAddresses::new(path.clone());
        std::fs::remove_dir_all(&dir).expect("remove the runtime directory");
        let r = OwnedRoute {
            route: "198.51.100.0/24 dev eth0 table 100".into(),
            interface: Some("eth0".into()),
        };
        o.insert_route(r.clone());
        assert_eq!(OwnedAddresses::leftovers(&path).routes, vec![r]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
