//! Keeps the nftables table of Accept_Mode False (see [`crate::net::no_accept`]) in
//! step with the configuration: at start-up, after each reload, and gone at exit. A
//! marker file in the runtime directory says a table is installed, so a start-up after
//! a crash clears the old one, and an agent that never wrote one never runs `nft`.

use std::net::IpAddr;

use super::Agent;
use crate::config::Config;
use crate::net::no_accept;
use crate::vrrp::packet::PRIORITY_OWNER;

/// The addresses a Master may not accept traffic for: those of every instance with
/// `accept = false` that is not the address owner (RFC 5798 §6.4.3: the owner always
/// accepts), excluded addresses included, as keepalived's `no_accept` has it.
pub(super) fn refused(config: &Config) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for cfg in config.instances.values() {
        if cfg.accept || cfg.priority == PRIORITY_OWNER {
            continue;
        }
        for a in cfg.virtual_addresses.iter().chain(&cfg.excluded_addresses) {
            if !out.contains(&a.addr) {
                out.push(a.addr);
            }
        }
    }
    out
}

impl Agent {
    /// The marker of an installed table.
    fn no_accept_marker(&self) -> std::path::PathBuf {
        self.runtime_dir
            .join(format!("{}.nftables", self.config.global.router_id))
    }

    /// Writes (or removes) the table for the configuration in force. At `startup`, a
    /// table an earlier run left (its marker) is replaced or removed too.
    pub(super) async fn sync_no_accept(&mut self, startup: bool) {
        let want = refused(&self.config);
        let marker = self.no_accept_marker();
        let stale = startup && marker.exists();
        if self.no_accept == want && !stale {
            return;
        }
        let rules = if want.is_empty() {
            no_accept::removal()
        } else {
            no_accept::ruleset(&want)
        };
        match no_accept::run_nft(&rules).await {
            Ok(()) => {
                if want.is_empty() {
                    let _ = std::fs::remove_file(&marker);
                } else {
                    if let Err(e) = std::fs::write(&marker, no_accept::TABLE) {
                        tracing::warn!("writing {}: {e}", marker.display());
                    }
                    tracing::info!(
                        addresses = want.len(),
                        "accept = false: traffic to and from the virtual addresses is refused (nftables table inet {})",
                        no_accept::TABLE
                    );
                }
                self.no_accept = want;
            }
            Err(e) if want.is_empty() => {
                tracing::warn!("removing the nftables table inet {}: {e}", no_accept::TABLE);
            }
            Err(e) => tracing::error!(
                "accept = false cannot be enforced, a Master will accept traffic for its virtual addresses: {e}"
            ),
        }
    }

    /// Removes the table at exit, if this run wrote one.
    pub(super) async fn clear_no_accept(&mut self) {
        if self.no_accept.is_empty() {
            return;
        }
        match no_accept::run_nft(&no_accept::removal()).await {
            Ok(()) => {
                let _ = std::fs::remove_file(self.no_accept_marker());
            }
            Err(e) => {
                tracing::warn!("removing the nftables table inet {}: {e}", no_accept::TABLE)
            }
        }
        self.no_accept.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(instances: &str) -> Config {
        let text = format!("[global]\nrouter_id = \"t\"\n{instances}");
        crate::config::parse(&text, "t").expect("test config parses")
    }

    #[test]
    fn only_non_owners_with_accept_false_are_refused() {
        let c = config(
            "[instances.a]\ninterface = \"lo\"\nvrid = 1\npriority = 100\naccept = false\n\
             virtual_addresses = [\"192.0.2.100/24\"]\n\
             excluded_addresses = [\"2001:db8::5/64\"]\n\
             [instances.b]\ninterface = \"lo\"\nvrid = 2\npriority = 100\n\
             virtual_addresses = [\"192.0.2.101/24\"]\n\
             [instances.c]\ninterface = \"lo\"\nvrid = 3\npriority = 255\naccept = false\n\
             virtual_addresses = [\"192.0.2.102/24\"]\n",
        );
        let want: Vec<IpAddr> = vec![
            "192.0.2.100".parse().expect("literal"),
            "2001:db8::5".parse().expect("literal"),
        ];
        assert_eq!(refused(&c), want);
    }
}
