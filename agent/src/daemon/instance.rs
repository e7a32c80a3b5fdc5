//! One configured VRRP instance at run time: its election, its sockets, its addresses,
//! and the execution of what the election asks for.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use vigil_common::VridKey;

use super::adverts::{Adverts, SlotSpec};
use super::owned::{OwnedAddress, OwnedAddresses, OwnedRoute, OwnedRule};
use super::split::SplitBrain;
use crate::config;
use crate::datapath::transmit::{AdvertSender, SenderPool};
use crate::net::announce::{AnnounceSchedule, AnnounceTiming, Announcer, run_announcements_on};
use crate::net::{Interface, Netlink, VirtualAddress};
use crate::notify::Notifier;
use crate::track::Verdict;
use crate::vrrp::endpoint::key_of;
use crate::vrrp::{Action, Auth, Instant, RouterConfig, State, Transition, VirtualRouter};

/// A virtual address with the interface it lives on.
#[derive(Clone, Debug)]
pub struct Vip {
    /// Interface (the instance's, or the address's own `dev`).
    pub iface: Interface,
    /// Address, prefix, label.
    pub addr: VirtualAddress,
}

impl Vip {
    fn owned(&self) -> OwnedAddress {
        OwnedAddress {
            interface: self.iface.name.clone(),
            addr: self.addr.addr,
            prefix_len: self.addr.prefix_len,
        }
    }
}

/// Addresses with the interfaces they go on: their own `dev`, else `home` (the virtual
/// MAC interface, if any, else the instance's). For `virtual_addresses` and
/// `excluded_addresses` alike.
async fn resolve(
    list: &[config::VirtualAddress],
    cfg: &config::Instance,
    home: &Interface,
    netlink: &Netlink,
) -> anyhow::Result<Vec<Vip>> {
    let mut vips = Vec::new();
    for v in list {
        let on = match &v.dev {
            Some(dev) if *dev != cfg.interface => netlink.interface(dev).await?,
            _ => home.clone(),
        };
        let mut addr = VirtualAddress::new(v.addr, v.prefix_len);
        if let Some(l) = &v.label {
            addr = addr.with_label(l.clone());
        }
        vips.push(Vip { iface: on, addr });
    }
    Ok(vips)
}

/// A route of `virtual_routes` as recorded and as the kernel takes it.
type Route = (OwnedRoute, netlink_packet_route::route::RouteMessage);
/// A rule of `virtual_rules` as recorded and as the kernel takes it.
type Rule = (OwnedRule, netlink_packet_route::rule::RuleMessage);

/// The instance's routes, resolved: a unicast route without a gateway or a `dev` leaves
/// through the instance's interface.
async fn resolve_routes(
    name: &str,
    cfg: &config::Instance,
    iface: &Interface,
    netlink: &Netlink,
) -> anyhow::Result<Vec<Route>> {
    let mut routes = Vec::new();
    for r in &cfg.virtual_routes {
        let oif = match &r.dev {
            Some(dev) => Some(netlink.interface(dev).await?),
            None if r.via.is_none() && r.kind == config::route::RouteKind::Unicast => {
                Some(iface.clone())
            }
            None => None,
        };
        let msg = crate::net::route::route_message(r, oif.as_ref().map(|i| i.index))
            .map_err(|e| anyhow::anyhow!("instance {name}: route {r}: {e}"))?;
        let owned = OwnedRoute {
            route: r.to_string(),
            interface: oif.map(|i| i.name),
        };
        routes.push((owned, msg));
    }
    Ok(routes)
}

/// The instance's policy rules.
fn resolve_rules(cfg: &config::Instance) -> Vec<Rule> {
    cfg.virtual_rules
        .iter()
        .map(|r| {
            let owned = OwnedRule {
                rule: r.to_string(),
            };
            (owned, crate::net::route::rule_message(r))
        })
        .collect()
}

/// An instance at run time: everything but its election, which the endpoint owns.
pub struct Instance {
    /// Name in the config.
    pub name: String,
    /// Its configuration (compared on reload).
    pub cfg: config::Instance,
    /// The interface it runs on.
    pub iface: Interface,
    /// Key of its election in the endpoint and of its XDP watch entry.
    pub key: VridKey,
    /// The address its adverts go out from.
    pub primary: IpAddr,
    /// The socket its adverts leave through (shared with the instances on the same
    /// interface and source address); its adverts themselves are in [`Adverts`].
    sender: Arc<AdvertSender>,
    vips: Vec<Vip>,
    announcer: Option<Arc<Announcer>>,
    /// Announcers of the interfaces addresses with their own `dev` live on.
    dev_announcers: std::collections::BTreeMap<u32, Arc<Announcer>>,
    timing: AnnounceTiming,
    announce: Option<JoinHandle<u64>>,
    /// The schedule after a lower-priority advert (`garp_lower_prio_*`).
    lower_timing: AnnounceTiming,
    /// Its running announcements; apart from `announce` so that they do not cut short
    /// the master term's schedule (and its refresh).
    reannounce: Option<JoinHandle<u64>>,
    /// Transitions so far by (from, to, reason kind), for metrics.
    pub transition_counts: std::collections::BTreeMap<(State, State, &'static str), u64>,
    /// Its notify scripts' queue.
    pub notifier: Notifier,
    /// The tracking verdict last handed to the election (with any sync-group fault).
    pub tracked: Verdict,
    /// The instance's own tracking verdict, before its sync group's say.
    pub own: Verdict,
    /// Fault imposed by its sync group (another member is in Fault).
    pub sync_fault: Option<String>,
    /// Addresses added while Master but not advertised (`excluded_addresses`).
    excluded: Vec<Vip>,
    /// Routes and rules added while Master (`virtual_routes`, `virtual_rules`), as
    /// kernel messages with what the crash record keeps of them.
    routes: Vec<Route>,
    rules: Vec<Rule>,
    /// The virtual MAC interface vigil made for it, removed by [`Instance::close`].
    vmac: Option<crate::net::Interface>,
    /// Split-brain watch (while Master).
    pub split: SplitBrain,
    /// Virtual addresses found on the interface while Backup that vigil did not add,
    /// left alone (reported in status, warned once each).
    pub foreign_while_backup: Vec<IpAddr>,
    /// Virtual addresses vigil had added and removed again, found while Backup.
    pub removed_while_backup: u64,
    /// Addresses put back while Master after something else removed them.
    pub restored_while_master: u64,
}

/// The kernel down timer's parameters for an instance.
pub fn down_params(cfg: &config::Instance) -> vigil_common::DownParams {
    vigil_common::DownParams {
        adverts: u32::from(cfg.down_timer_adverts),
        lead_ns: vigil_common::down::ALARM_LEAD_NS,
        // RFC 3768 §7.1: a v2 Backup keeps its own interval (it discards others); v3
        // learns the Master's (RFC 5798 §6.4.2), which the kernel reads from each advert.
        interval_ns: match cfg.version {
            config::Version::V2 => u64::try_from(cfg.advert_interval.as_nanos()).unwrap_or(0),
            config::Version::V3 => 0,
        },
    }
}

/// The election's configuration of an instance.
pub fn router_config(cfg: &config::Instance) -> RouterConfig {
    let addrs = cfg.virtual_addresses.iter().map(|v| v.addr).collect();
    let mut rc = RouterConfig::new(cfg.vrid, cfg.version, cfg.priority, addrs);
    rc.advert_interval = cfg.advert_interval;
    rc.preempt = cfg.preempt;
    rc.preempt_delay = cfg.preempt_delay;
    rc.down_timer_adverts = cfg.down_timer_adverts;
    rc.accept_mode = cfg.accept;
    rc.initial_state = cfg.initial_state;
    rc.auth = match &cfg.auth_pass {
        Some(p) => Auth::password(p.as_bytes()).unwrap_or(Auth::None),
        None => Auth::None,
    };
    rc.v3_checksum_as_v2 = cfg.v3_checksum_as_v2;
    rc
}

/// The announcement schedule of an instance: its own `garp_master_*`, which the
/// configuration has already filled in from `[global]` where the instance sets none.
pub fn announce_timing(cfg: &config::Instance) -> AnnounceTiming {
    let g = &cfg.garp;
    AnnounceTiming {
        delay: g.master_delay,
        repeat: g.master_repeat,
        refresh: g.master_refresh.unwrap_or_default(),
        refresh_repeat: g.master_refresh_repeat,
        ..AnnounceTiming::default()
    }
}

/// The schedule after a lower-priority advert while Master: `garp_lower_prio_repeat`
/// rounds at once and as many `garp_lower_prio_delay` later, never a refresh.
pub fn lower_priority_timing(cfg: &config::Instance) -> AnnounceTiming {
    let g = &cfg.garp;
    AnnounceTiming {
        delay: g.lower_prio_delay,
        repeat: g.lower_prio_repeat,
        refresh: std::time::Duration::ZERO,
        ..AnnounceTiming::default()
    }
}

/// An announcer on `iface`, with the NA Router flag set when the interface forwards IPv6
/// (RFC 4861 §7.2.5: otherwise hosts drop this node from their default routers).
fn announcer_on(name: &str, iface: &Interface, mac: [u8; 6]) -> Option<Arc<Announcer>> {
    let forwards = crate::net::ipv6_forwarding(&iface.name).unwrap_or(false);
    match Announcer::new(iface, mac, None) {
        Ok(a) => Some(Arc::new(a.with_router_flag(forwards))),
        Err(e) => {
            tracing::warn!(instance = name, iface = %iface.name, "no gratuitous ARP/NA: {e}");
            None
        }
    }
}

impl Instance {
    /// Resolves interfaces and addresses and opens the transmit socket.
    pub async fn new(
        name: &str,
        cfg: &config::Instance,
        script_user: Option<&str>,
        netlink: &Netlink,
        senders: &mut SenderPool,
    ) -> anyhow::Result<Self> {
        let iface = netlink.interface(&cfg.interface).await?;
        // With use_vmac the addresses, announcements and (unless vmac_xmit_base or
        // unicast peers) adverts go through the macvlan; receiving and the XDP program
        // stay on `iface`.
        let v6 = cfg
            .virtual_addresses
            .first()
            .is_some_and(|v| v.addr.is_ipv6());
        let vmac = match &cfg.vmac {
            Some(v) => {
                let mac = if v6 {
                    crate::net::vmac::ipv6_mac(cfg.vrid)
                } else {
                    crate::net::vmac::ipv4_mac(cfg.vrid)
                };
                let vif = netlink
                    .ensure_vmac(&v.interface, &iface, mac, v6)
                    .await
                    .map_err(|e| anyhow::anyhow!("instance {name}: {}: {e}", v.interface))?;
                tracing::info!(instance = name, "virtual MAC interface {} up", vif.name);
                Some((vif, mac))
            }
            None => None,
        };
        let home = vmac.as_ref().map_or(&iface, |(v, _)| v).clone();
        // Adverts from the virtual MAC go to the group only. To a unicast peer they
        // leave from the parent and its MAC, as with vmac_xmit_base (keepalived forces
        // vmac_xmit_base there too): resolving the peer from the macvlan would fail
        // when the peer has the same virtual MAC on its own private macvlan, which
        // takes every broadcast from that MAC, ARP requests included.
        let adverts_from_vmac = cfg
            .vmac
            .as_ref()
            .is_some_and(|v| !v.xmit_base && cfg.unicast_peers.is_empty());
        if cfg.vmac.as_ref().is_some_and(|v| !v.xmit_base) && !adverts_from_vmac {
            tracing::info!(
                instance = name,
                "use_vmac with unicast_peers: adverts leave from {} and its own MAC (as with vmac_xmit_base)",
                iface.name
            );
        }
        let excluded = resolve(&cfg.excluded_addresses, cfg, &home, netlink).await?;
        let routes = resolve_routes(name, cfg, &iface, netlink).await?;
        let rules = resolve_rules(cfg);
        let vips = resolve(&cfg.virtual_addresses, cfg, &home, netlink).await?;
        let vip_addrs: Vec<IpAddr> = vips.iter().map(|v| v.addr.addr).collect();
        let (primary, sender) = if v6 {
            let ll = netlink.ipv6_link_local(&iface).await?.ok_or_else(|| {
                anyhow::anyhow!("{}: no usable IPv6 link-local address", iface.name)
            })?;
            // With a virtual MAC, adverts carry it as their Ethernet source (RFC 5798
            // §7.2) and the parent's link-local address as their IP source, as
            // keepalived sends them.
            let sender = match &vmac {
                Some((_, mac)) if adverts_from_vmac => senders.ipv6_framed(&iface, ll, *mac)?,
                _ => senders.ipv6(&iface, ll)?,
            };
            (IpAddr::V6(ll), sender)
        } else {
            let src = match cfg.unicast_src_ip {
                Some(IpAddr::V4(a)) => a,
                _ => {
                    let exclude: Vec<std::net::Ipv4Addr> = vip_addrs
                        .iter()
                        .filter_map(|a| match a {
                            IpAddr::V4(v) => Some(*v),
                            IpAddr::V6(_) => None,
                        })
                        .collect();
                    netlink.primary_ipv4(&iface, &exclude).await?.ok_or_else(|| {
                        anyhow::anyhow!(
                            "{}: no IPv4 address to send adverts from (add one, or set unicast_src_ip)",
                            iface.name
                        )
                    })?
                }
            };
            // The parent's address is the source either way (keepalived's choice too).
            let out = if adverts_from_vmac { &home } else { &iface };
            (IpAddr::V4(src), senders.ipv4(out, src)?)
        };
        let own_mac = match &vmac {
            Some((_, mac)) => Some(*mac),
            None => netlink.link(iface.index).await.ok().and_then(|l| l.mac),
        };
        let announcer = match own_mac {
            Some(mac) => announcer_on(name, &home, mac),
            None => None,
        };
        // Addresses with their own `dev` are announced there, with that device's MAC.
        let mut dev_announcers = std::collections::BTreeMap::new();
        for v in vips.iter().chain(&excluded) {
            if v.iface.index == home.index || dev_announcers.contains_key(&v.iface.index) {
                continue;
            }
            let mac = netlink.link(v.iface.index).await.ok().and_then(|l| l.mac);
            if let Some(a) = mac.and_then(|mac| announcer_on(name, &v.iface, mac)) {
                dev_announcers.insert(v.iface.index, a);
            }
        }
        let timing = announce_timing(cfg);
        if cfg.is_address_owner()
            && (cfg.track_scripts.iter().any(|t| t.weight != 0)
                || cfg.track_interfaces.iter().any(|t| t.weight != 0)
                || cfg.track_files.iter().any(|t| t.weight != 0))
        {
            // keepalived does the same: an owner's priority never moves.
            tracing::warn!(
                instance = name,
                "priority 255 (address owner): tracking weights are ignored, a tracked failure means FAULT"
            );
        }
        let rc = router_config(cfg);
        rc.validate(primary)
            .map_err(|e| anyhow::anyhow!("instance {name}: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            cfg: cfg.clone(),
            key: key_of(iface.index, primary, cfg.vrid),
            primary,
            iface,
            sender,
            vips,
            announcer,
            dev_announcers,
            timing,
            announce: None,
            lower_timing: lower_priority_timing(cfg),
            reannounce: None,
            transition_counts: std::collections::BTreeMap::new(),
            notifier: Notifier::new(name, cfg, script_user),
            tracked: Verdict::untracked(cfg),
            own: Verdict::untracked(cfg),
            sync_fault: None,
            excluded,
            routes,
            rules,
            vmac: vmac.map(|(v, _)| v),
            split: SplitBrain::default(),
            foreign_while_backup: Vec::new(),
            removed_while_backup: 0,
            restored_while_master: 0,
        })
    }

    /// Whether its adverts go to unicast peers.
    pub fn unicast(&self) -> bool {
        !self.cfg.unicast_peers.is_empty()
    }

    /// Executes one action of its election (`router`, read only); returns the
    /// transition, if it was one.
    pub async fn execute(
        &mut self,
        action: Action,
        router: &VirtualRouter,
        netlink: &Netlink,
        owned: &mut OwnedAddresses,
        adverts: &mut Adverts,
    ) -> Option<Transition> {
        match action {
            Action::StateChanged(t) => {
                tracing::info!(
                    instance = %self.name,
                    vrid = self.cfg.vrid,
                    "{} -> {}: {}",
                    t.from,
                    t.to,
                    t.reason
                );
                *self
                    .transition_counts
                    .entry((t.from, t.to, t.reason.kind()))
                    .or_insert(0) += 1;
                if t.to != State::Master {
                    for task in [self.announce.take(), self.reannounce.take()]
                        .into_iter()
                        .flatten()
                    {
                        task.abort();
                    }
                }
                if t.from == State::Master {
                    self.split
                        .expire(&self.name, t.at, false, self.cfg.advert_interval);
                }
                self.notifier.state(t.to, router.priority());
                return Some(t);
            }
            Action::SendAdvert { priority } => self.queue_advert(router, priority, adverts).await,
            // RFC 5798 §6.4.1 and §6.4.3: the advert goes out before addresses move.
            Action::AddAddresses => {
                adverts.flush(&self.key).await;
                self.add_addresses(netlink, owned).await;
            }
            Action::RemoveAddresses => {
                adverts.flush(&self.key).await;
                self.remove_addresses(netlink, owned).await;
            }
            Action::Announce => {
                adverts.flush(&self.key).await;
                self.announce();
            }
            Action::Reannounce => {
                adverts.flush(&self.key).await;
                self.restart_reannouncements();
            }
        }
        None
    }

    /// Announces its addresses again on its `garp_lower_prio_*` schedule: it heard a
    /// lower-priority advert, or (after its advert) a member of its sync group did.
    pub(super) fn restart_reannouncements(&mut self) {
        if let Some(task) = self.reannounce.take() {
            task.abort();
        }
        self.reannounce = self.spawn_announcements(self.lower_timing);
    }

    /// A Master of priority `ours` heard a lower-priority router that believes itself
    /// Master.
    pub fn rival(
        &mut self,
        at: Instant,
        source: IpAddr,
        priority: u8,
        interval: std::time::Duration,
        ours: u8,
    ) {
        self.split.observe(
            &self.name,
            at,
            source,
            priority,
            interval,
            ours,
            self.cfg.advert_interval,
        );
    }

    /// Queues its advert at `priority` (to the multicast group, or to each unicast
    /// peer), encoding it only when the priority differs from the last one encoded.
    pub(super) async fn queue_advert(
        &self,
        router: &VirtualRouter,
        priority: u8,
        adverts: &mut Adverts,
    ) {
        let spec = SlotSpec {
            name: &self.name,
            sender: &self.sender,
            unicast_peers: &self.cfg.unicast_peers,
        };
        adverts
            .queue_encoding(self.key, priority, spec, router)
            .await;
    }

    /// Whether vigil's record says one of this instance's addresses is on the node.
    pub fn holds_owned(&self, owned: &OwnedAddresses) -> bool {
        self.vips.iter().any(|v| owned.contains(&v.owned()))
    }

    /// Takes a new list of virtual addresses on reload; a Master (`holding`) removes
    /// the ones dropped from the list and keeps the others where they are. True when
    /// it must then add the new ones ([`Instance::claim_addresses`]): the caller does
    /// that once every instance has removed what it dropped, since an address may move
    /// from one instance to another in the same reload, and the removal must not come
    /// after the addition.
    pub async fn readdress(
        &mut self,
        cfg: &config::Instance,
        holding: bool,
        netlink: &Netlink,
        owned: &mut OwnedAddresses,
        staying: &std::collections::HashSet<super::reload::AddressKey>,
    ) -> anyhow::Result<bool> {
        let new = resolve(
            &cfg.virtual_addresses,
            cfg,
            self.vmac.as_ref().unwrap_or(&self.iface),
            netlink,
        )
        .await?;
        let same = |a: &Vip, b: &Vip| a.iface.index == b.iface.index && a.addr == b.addr;
        let gone: Vec<Vip> = self
            .vips
            .iter()
            .filter(|o| !new.iter().any(|n| same(o, n)))
            .cloned()
            .collect();
        let fresh = new.iter().any(|n| !self.vips.iter().any(|o| same(o, n)));
        self.vips = new;
        if holding {
            // Another Master of this node takes those over in this reload.
            for vip in gone
                .into_iter()
                .filter(|v| !staying.contains(&(v.addr.addr, v.addr.prefix_len)))
            {
                let o = vip.owned();
                if owned.contains(&o) {
                    match netlink.remove_address(&vip.iface, &vip.addr).await {
                        Ok(_) => owned.remove(&o),
                        Err(e) => {
                            tracing::error!(instance = %self.name, "removing {}: {e}", vip.addr)
                        }
                    }
                }
            }
        }
        Ok(holding && fresh)
    }

    /// Lets go of the addresses in `staying` before the instance stops: another Master
    /// of this node takes them over, so its release must not remove them.
    pub fn leave_addresses(
        &mut self,
        staying: &std::collections::HashSet<super::reload::AddressKey>,
    ) {
        let kept = |v: &Vip| !staying.contains(&(v.addr.addr, v.addr.prefix_len));
        self.vips.retain(kept);
        self.excluded.retain(kept);
    }

    /// Adds the instance's addresses (those already there stay) and announces them: a
    /// Master's new addresses after a reload.
    pub async fn claim_addresses(&mut self, netlink: &Netlink, owned: &mut OwnedAddresses) {
        self.add_addresses(netlink, owned).await;
        self.announce();
    }

    /// Takes new excluded addresses, routes and rules on reload; a Master (`holding`)
    /// removes those dropped from the configuration (rules, routes, then addresses),
    /// adds the new ones (addresses, routes, then rules) and announces new addresses;
    /// the others stay where they are. No transition either way.
    pub async fn reroute(
        &mut self,
        cfg: &config::Instance,
        holding: bool,
        netlink: &Netlink,
        owned: &mut OwnedAddresses,
    ) -> anyhow::Result<()> {
        let home = self.vmac.clone().unwrap_or_else(|| self.iface.clone());
        let excluded = resolve(&cfg.excluded_addresses, cfg, &home, netlink).await?;
        let routes = resolve_routes(&self.name, cfg, &self.iface, netlink).await?;
        let rules = resolve_rules(cfg);
        let same = |a: &Vip, b: &Vip| a.iface.index == b.iface.index && a.addr == b.addr;
        let gone_excluded: Vec<Vip> = self
            .excluded
            .iter()
            .filter(|o| !excluded.iter().any(|n| same(o, n)))
            .cloned()
            .collect();
        let new_excluded: Vec<Vip> = excluded
            .iter()
            .filter(|n| !self.excluded.iter().any(|o| same(o, n)))
            .cloned()
            .collect();
        let gone_routes: Vec<Route> = self
            .routes
            .iter()
            .filter(|o| !routes.iter().any(|n| n.0 == o.0))
            .cloned()
            .collect();
        let new_routes: Vec<Route> = routes
            .iter()
            .filter(|n| !self.routes.iter().any(|o| o.0 == n.0))
            .cloned()
            .collect();
        let gone_rules: Vec<Rule> = self
            .rules
            .iter()
            .filter(|o| !rules.iter().any(|n| n.0 == o.0))
            .cloned()
            .collect();
        let new_rules: Vec<Rule> = rules
            .iter()
            .filter(|n| !self.rules.iter().any(|o| o.0 == n.0))
            .cloned()
            .collect();
        self.excluded = excluded;
        self.routes = routes;
        self.rules = rules;
        if !holding {
            return Ok(());
        }
        self.remove_rules(&gone_rules, netlink, owned).await;
        self.remove_routes(&gone_routes, netlink, owned).await;
        for vip in &gone_excluded {
            let o = vip.owned();
            if !owned.contains(&o) {
                continue;
            }
            match netlink.remove_address(&vip.iface, &vip.addr).await {
                Ok(_) => owned.remove(&o),
                Err(e) => tracing::error!(instance = %self.name, "removing {}: {e}", vip.addr),
            }
        }
        for vip in &new_excluded {
            match netlink.add_address(&vip.iface, &vip.addr).await {
                Ok(true) => owned.insert(vip.owned()),
                Ok(false) => tracing::warn!(
                    instance = %self.name,
                    "{} is already on {} and was not added by vigil; it will be left alone",
                    vip.addr,
                    vip.iface.name
                ),
                Err(e) => tracing::error!(instance = %self.name, "adding {}: {e}", vip.addr),
            }
        }
        self.add_routes(&new_routes, netlink, owned).await;
        self.add_rules(&new_rules, netlink, owned).await;
        if !new_excluded.is_empty() {
            self.announce();
        }
        tracing::info!(
            instance = %self.name,
            excluded_added = new_excluded.len(),
            excluded_removed = gone_excluded.len(),
            routes_added = new_routes.len(),
            routes_removed = gone_routes.len(),
            rules_added = new_rules.len(),
            rules_removed = gone_rules.len(),
            "reload: excluded addresses, routes and rules applied in place"
        );
        Ok(())
    }

    async fn add_addresses(&mut self, netlink: &Netlink, owned: &mut OwnedAddresses) {
        for vip in self.vips.iter().chain(&self.excluded) {
            match netlink.add_address(&vip.iface, &vip.addr).await {
                Ok(true) => owned.insert(vip.owned()),
                Ok(false) if owned.contains(&vip.owned()) => {}
                Ok(false) => tracing::warn!(
                    instance = %self.name,
                    "{} is already on {} and was not added by vigil; it will be left alone",
                    vip.addr,
                    vip.iface.name
                ),
                Err(e) => tracing::error!(instance = %self.name, "adding {}: {e}", vip.addr),
            }
        }
        // Routes after the addresses they may use as source or gateway; rules last.
        self.add_routes(&self.routes, netlink, owned).await;
        self.add_rules(&self.rules, netlink, owned).await;
    }

    /// Adds `routes`, recording those vigil added (one already there is not vigil's
    /// unless the record says so).
    async fn add_routes(&self, routes: &[Route], netlink: &Netlink, owned: &mut OwnedAddresses) {
        for (o, msg) in routes {
            match netlink.add_route(msg.clone()).await {
                Ok(true) => owned.insert_route(o.clone()),
                Ok(false) => {}
                Err(e) => tracing::error!(instance = %self.name, "adding route {}: {e}", o.route),
            }
        }
    }

    /// Adds `rules`, recording those vigil added.
    async fn add_rules(&self, rules: &[Rule], netlink: &Netlink, owned: &mut OwnedAddresses) {
        for (o, msg) in rules {
            match netlink.add_rule(msg.clone()).await {
                Ok(true) => owned.insert_rule(o.clone()),
                Ok(false) => {}
                Err(e) => tracing::error!(instance = %self.name, "adding rule {}: {e}", o.rule),
            }
        }
    }

    /// Removes `routes` and forgets them.
    async fn remove_routes(&self, routes: &[Route], netlink: &Netlink, owned: &mut OwnedAddresses) {
        for (o, msg) in routes {
            match netlink.remove_route(msg.clone()).await {
                Ok(_) => owned.remove_route(o),
                Err(e) => {
                    tracing::error!(instance = %self.name, "removing route {}: {e}", o.route)
                }
            }
        }
    }

    /// Removes `rules` and forgets them.
    async fn remove_rules(&self, rules: &[Rule], netlink: &Netlink, owned: &mut OwnedAddresses) {
        for (o, msg) in rules {
            match netlink.remove_rule(msg.clone()).await {
                Ok(_) => owned.remove_rule(o),
                Err(e) => tracing::error!(instance = %self.name, "removing rule {}: {e}", o.rule),
            }
        }
    }

    async fn remove_addresses(&mut self, netlink: &Netlink, owned: &mut OwnedAddresses) {
        self.remove_rules(&self.rules, netlink, owned).await;
        self.remove_routes(&self.routes, netlink, owned).await;
        for vip in self.vips.iter().chain(&self.excluded) {
            let o = vip.owned();
            if !owned.contains(&o) {
                continue;
            }
            match netlink.remove_address(&vip.iface, &vip.addr).await {
                Ok(_) => owned.remove(&o),
                Err(e) => tracing::error!(instance = %self.name, "removing {}: {e}", vip.addr),
            }
        }
    }

    fn announce(&mut self) {
        if let Some(task) = self.announce.take() {
            task.abort();
        }
        self.announce = self.spawn_announcements(self.timing);
    }

    /// Starts announcing every address on `timing`'s schedule; `None` when there is
    /// nothing to announce or nothing to announce with.
    fn spawn_announcements(&self, timing: AnnounceTiming) -> Option<JoinHandle<u64>> {
        if timing.repeat == 0 {
            return None;
        }
        // Announcements cover excluded addresses too: hosts must learn where they moved.
        // Each goes out on the device the address lives on.
        let mut groups: Vec<(Arc<Announcer>, Vec<IpAddr>)> = Vec::new();
        for v in self.vips.iter().chain(&self.excluded) {
            let Some(a) = self
                .dev_announcers
                .get(&v.iface.index)
                .or(self.announcer.as_ref())
            else {
                continue;
            };
            match groups.iter_mut().find(|(g, _)| Arc::ptr_eq(g, a)) {
                Some((_, addrs)) => addrs.push(v.addr.addr),
                None => groups.push((a.clone(), vec![v.addr.addr])),
            }
        }
        if groups.is_empty() {
            return None;
        }
        let schedule = AnnounceSchedule::new(timing, std::time::Instant::now());
        Some(tokio::spawn(async move {
            let refs: Vec<(&Announcer, &[IpAddr])> =
                groups.iter().map(|(a, x)| (&**a, x.as_slice())).collect();
            run_announcements_on(&refs, schedule).await
        }))
    }

    /// While Master: puts back the virtual and excluded addresses that left their
    /// interface without vigil removing them (`ip addr del`, `ip addr flush`, another
    /// tool), then the routes and rules that may have gone with them, and announces the
    /// addresses again. The election chose this node, so the address belongs here; an
    /// address held by nobody is the one outcome a pair must never settle in. `seen`
    /// caches address lists per interface index for one round.
    pub async fn restore_addresses(
        &mut self,
        netlink: &Netlink,
        owned: &mut OwnedAddresses,
        seen: &mut std::collections::HashMap<u32, Vec<IpAddr>>,
    ) {
        let mut missing = Vec::new();
        for vip in self.vips.iter().chain(&self.excluded) {
            let index = vip.iface.index;
            if let std::collections::hash_map::Entry::Vacant(slot) = seen.entry(index) {
                match netlink.addresses(&vip.iface).await {
                    Ok(list) => {
                        slot.insert(list.iter().map(|a| a.addr).collect());
                    }
                    Err(e) => {
                        tracing::debug!(instance = %self.name, "address check: {e}");
                        continue;
                    }
                }
            }
            if !seen.get(&index).is_some_and(|l| l.contains(&vip.addr.addr)) {
                missing.push(vip.clone());
            }
        }
        if missing.is_empty() {
            return;
        }
        for vip in &missing {
            seen.remove(&vip.iface.index);
            match netlink.add_address(&vip.iface, &vip.addr).await {
                Ok(added) => {
                    if added {
                        owned.insert(vip.owned());
                    }
                    self.restored_while_master += 1;
                    tracing::warn!(
                        instance = %self.name,
                        "{} was removed from {} while this node is MASTER, not by vigil: added \
                         it back",
                        vip.addr,
                        vip.iface.name
                    );
                }
                Err(e) => {
                    tracing::error!(instance = %self.name, "adding {} back: {e}", vip.addr)
                }
            }
        }
        // The kernel drops routes whose source or gateway went with an address.
        self.add_routes(&self.routes, netlink, owned).await;
        self.add_rules(&self.rules, netlink, owned).await;
        self.announce();
    }

    /// The classic split-brain check, while Backup or Fault: a virtual address on the
    /// interface. vigil removes it only if vigil added it (the record in `owned`, e.g. a
    /// removal that failed); an address someone else put there is left alone and warned
    /// about once. `seen` caches address lists per interface index for one round;
    /// `keep` lists addresses a local Master instance holds.
    pub async fn check_addresses(
        &mut self,
        state: State,
        netlink: &Netlink,
        owned: &mut OwnedAddresses,
        seen: &mut std::collections::HashMap<u32, Vec<IpAddr>>,
        keep: &[IpAddr],
    ) {
        if !matches!(state, State::Backup | State::Fault) {
            self.foreign_while_backup.clear();
            return;
        }
        let mut foreign = Vec::new();
        for vip in &self.vips {
            let index = vip.iface.index;
            if let std::collections::hash_map::Entry::Vacant(slot) = seen.entry(index) {
                match netlink.addresses(&vip.iface).await {
                    Ok(list) => {
                        slot.insert(list.iter().map(|a| a.addr).collect());
                    }
                    Err(e) => {
                        tracing::debug!(instance = %self.name, "address check: {e}");
                        continue;
                    }
                }
            }
            let present = seen.get(&index).is_some_and(|l| l.contains(&vip.addr.addr));
            if !present || keep.contains(&vip.addr.addr) {
                continue;
            }
            let o = vip.owned();
            if owned.contains(&o) {
                match netlink.remove_address(&vip.iface, &vip.addr).await {
                    Ok(_) => {
                        owned.remove(&o);
                        self.removed_while_backup += 1;
                        tracing::warn!(
                            instance = %self.name,
                            "removed {} from {}: vigil had added it and this node is {}",
                            vip.addr,
                            vip.iface.name,
                            state
                        );
                    }
                    Err(e) => tracing::error!(instance = %self.name, "removing {}: {e}", vip.addr),
                }
            } else {
                if !self.foreign_while_backup.contains(&vip.addr.addr) {
                    tracing::warn!(
                        instance = %self.name,
                        "{} is on {} while this node is {}, and vigil did not add it: left alone \
                         (split brain? another agent or a person put it there)",
                        vip.addr,
                        vip.iface.name,
                        state
                    );
                }
                foreign.push(vip.addr.addr);
            }
        }
        self.foreign_while_backup = foreign;
    }

    /// Removes what the instance made besides its addresses (its virtual MAC
    /// interface); call after its last actions have run.
    pub async fn close(&mut self, netlink: &Netlink) {
        if let Some(v) = self.vmac.take() {
            match netlink.remove_vmac(&v).await {
                Ok(_) => {
                    tracing::info!(instance = %self.name, "virtual MAC interface {} removed", v.name)
                }
                Err(e) => tracing::error!(instance = %self.name, "removing {}: {e}", v.name),
            }
        }
    }

    /// At start, before the election: removes this instance's virtual addresses that
    /// carry vigil's kernel tag, left by an agent that did not exit cleanly and whose
    /// record file was lost or unreadable. Untagged ones (added by a person or another
    /// tool) stay.
    pub async fn remove_tagged(&self, netlink: &Netlink) {
        for vip in &self.vips {
            let Ok(list) = netlink.addresses(&vip.iface).await else {
                continue;
            };
            let tagged = list.iter().any(|a| {
                a.addr == vip.addr.addr && a.proto == crate::net::address::VIGIL_ADDRESS_PROTO
            });
            if !tagged {
                continue;
            }
            match netlink.remove_address(&vip.iface, &vip.addr).await {
                Ok(true) => tracing::warn!(
                    instance = %self.name,
                    "removed {} from {}: added by a vigil that did not exit cleanly \
                     (found by its kernel tag; no record of it survived)",
                    vip.addr,
                    vip.iface.name
                ),
                Ok(false) => {}
                Err(e) => tracing::error!(instance = %self.name, "removing {}: {e}", vip.addr),
            }
        }
    }

    /// Whether the instance runs on interface `index`: its own, or its virtual MAC
    /// interface.
    pub fn runs_on(&self, index: u32) -> bool {
        self.iface.index == index || self.vmac.as_ref().is_some_and(|v| v.index == index)
    }

    /// Whether `index` is the instance's virtual MAC interface.
    pub fn is_vmac(&self, index: u32) -> bool {
        self.vmac.as_ref().is_some_and(|v| v.index == index)
    }

    /// Forgets its virtual MAC interface after someone deleted it: there is nothing left
    /// for [`Instance::close`] to remove.
    pub fn vmac_deleted(&mut self, index: u32) {
        if self.is_vmac(index) {
            self.vmac = None;
        }
    }

    /// Forgets the record of addresses that went away with a deleted interface.
    pub fn forget_addresses_on(&self, index: u32, owned: &mut OwnedAddresses) {
        for vip in self.vips.iter().filter(|v| v.iface.index == index) {
            owned.remove(&vip.owned());
        }
    }

    /// Follows a rename of the interface the instance runs on (it is the same interface,
    /// known by its index).
    pub fn renamed(&mut self, index: u32, name: &str) {
        if self.iface.index == index && self.iface.name != name {
            tracing::info!(instance = %self.name, "interface {} renamed {name}; still running on it", self.iface.name);
            self.iface.name = name.to_owned();
        }
        for vip in self.vips.iter_mut().filter(|v| v.iface.index == index) {
            vip.iface.name = name.to_owned();
        }
    }

    /// Virtual addresses with their interfaces.
    pub fn vips(&self) -> &[Vip] {
        &self.vips
    }

    /// One status object for `vigil status`, with its election `router` and `received`,
    /// the adverts the datapath accepted for it.
    pub fn status(
        &self,
        now: Instant,
        router: &VirtualRouter,
        received: u64,
        sent: u64,
    ) -> serde_json::Value {
        let last = router.last_transition().map(|t| {
            serde_json::json!({
                "from": t.from.to_string(),
                "to": t.to.to_string(),
                "reason": t.reason.to_string(),
                "seconds_ago": now.saturating_duration_since(t.at).as_secs_f64(),
                "unix_time": std::time::SystemTime::now()
                    .checked_sub(now.saturating_duration_since(t.at))
                    .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs_f64()),
            })
        });
        serde_json::json!({
            "instance": self.name,
            "interface": self.iface.name,
            "vrid": self.cfg.vrid,
            "version": self.cfg.version.number(),
            "state": router.state().to_string(),
            "priority": self.cfg.priority,
            "effective_priority": router.priority(),
            "master": router.master().map(|m| m.to_string()),
            "primary": router.primary().to_string(),
            "virtual_addresses": self.vips.iter().map(|v| v.addr.to_string()).collect::<Vec<_>>(),
            "excluded_addresses": self.excluded.iter().map(|v| v.addr.to_string()).collect::<Vec<_>>(),
            "virtual_routes": self.routes.iter().map(|r| r.0.route.clone()).collect::<Vec<_>>(),
            "virtual_rules": self.rules.iter().map(|r| r.0.rule.clone()).collect::<Vec<_>>(),
            "vmac_interface": self.vmac.as_ref().map(|v| v.name.clone()),
            "sync_fault": self.sync_fault,
            "last_transition": last,
            "adverts_rx": received,
            "adverts_tx": sent,
            "transitions": self.transition_counts.iter().map(|((from, to, reason), n)| serde_json::json!({
                "from": from.to_string(), "to": to.to_string(), "reason": reason, "count": n,
            })).collect::<Vec<_>>(),
            "fault": self.tracked.fault,
            "split_brain": self.split.status(now),
            "split_brain_adverts": self.split.adverts_total,
            "addresses_while_backup": self.foreign_while_backup.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "removed_while_backup": self.removed_while_backup,
            "restored_while_master": self.restored_while_master,
        })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        for task in [self.announce.take(), self.reannounce.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_instance_garp_settings_win_over_global_ones() {
        let text = "[global]\nrouter_id = \"t\"\ngarp_master_repeat = 2\ngarp_master_delay = 10\n\
            [instances.a]\ninterface = \"eth0\"\nvrid = 1\npriority = 100\n\
            virtual_addresses = [\"192.0.2.1/24\"]\ngarp_master_repeat = 7\n\
            [instances.b]\ninterface = \"eth0\"\nvrid = 2\npriority = 100\n\
            virtual_addresses = [\"192.0.2.2/24\"]\n";
        let c = config::parse(text, "t").expect("valid configuration");
        let a = announce_timing(&c.instances["a"]);
        assert_eq!((a.repeat, a.delay), (7, std::time::Duration::from_secs(10)));
        let b = announce_timing(&c.instances["b"]);
        assert_eq!((b.repeat, b.delay), (2, std::time::Duration::from_secs(10)));
    }

    #[test]
    fn keepalived_garp_lower_prio_settings_shape_the_reannouncement_schedule() {
        let text = "[global]\nrouter_id = \"t\"\ngarp_master_repeat = 2\ngarp_master_delay = 10\n\
            garp_master_refresh = 30\ngarp_lower_prio_delay = 3\n\
            [instances.a]\ninterface = \"eth0\"\nvrid = 1\npriority = 100\n\
            virtual_addresses = [\"192.0.2.1/24\"]\ngarp_lower_prio_repeat = 1\n\
            [instances.b]\ninterface = \"eth0\"\nvrid = 2\npriority = 100\n\
            virtual_addresses = [\"192.0.2.2/24\"]\ngarp_master_repeat = 9\n";
        let c = config::parse(text, "t").expect("valid configuration");
        let secs = std::time::Duration::from_secs;
        let start = std::time::Instant::now();
        let a = lower_priority_timing(&c.instances["a"]);
        // One round now, one after [global]'s lower-priority delay, and no refresh.
        let at: Vec<_> = AnnounceSchedule::new(a, start).map(|t| t - start).collect();
        assert_eq!(at, vec![secs(0), secs(3)]);
        // Unset: [global]'s garp_master_repeat (2), not this instance's own 9.
        let b = lower_priority_timing(&c.instances["b"]);
        let at: Vec<_> = AnnounceSchedule::new(b, start).map(|t| t - start).collect();
        assert_eq!(at, vec![secs(0), secs(0), secs(3), secs(3)]);
    }
}
