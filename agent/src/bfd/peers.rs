//! The peer table of BFD-assisted takeover: which routers of a virtual router are known,
//! with the priority each last advertised, and whether this router is the Backup that
//! would win if the Master went away, the one whose BFD session to the Master is critical.
//!
//! Plain VRRP only carries the Master's adverts, so a Backup learns other Backups'
//! priorities only from the times they were Master, or never. A peer whose priority is
//! unknown might outrank us: then we are not sure to win, and the RFC's timer decides.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// The routers of one virtual router besides this one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerTable {
    peers: BTreeMap<IpAddr, Option<u8>>,
}

impl PeerTable {
    /// A table of configured peers (`unicast_peers`), priorities unknown.
    pub fn configured(peers: impl IntoIterator<Item = IpAddr>) -> PeerTable {
        PeerTable {
            peers: peers.into_iter().map(|p| (p, None)).collect(),
        }
    }

    /// An advert from `source` with `priority`; priority 0 (a Master leaving) says
    /// nothing about the priority it had.
    pub fn heard(&mut self, source: IpAddr, priority: u8) {
        let known = self.peers.entry(source).or_insert(None);
        if priority != 0 {
            *known = Some(priority);
        }
    }

    /// Every known peer.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.peers.keys().copied()
    }

    /// Whether we (`me`, `priority`) win the election that follows `master`'s loss:
    /// every other peer is known to rank below us (RFC 5798 §6.4.2: higher priority,
    /// then higher primary address).
    pub fn would_win(&self, me: IpAddr, priority: u8, master: IpAddr) -> bool {
        self.peers
            .iter()
            .filter(|(addr, _)| **addr != master && **addr != me)
            .all(|(addr, known)| match known {
                Some(p) => (*p, *addr) < (priority, me),
                None => false,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test literal is an address")
    }

    #[test]
    fn a_pair_always_has_its_backup_win() {
        let mut t = PeerTable::default();
        t.heard(ip("192.0.2.11"), 150);
        assert!(t.would_win(ip("192.0.2.12"), 100, ip("192.0.2.11")));
        // unicast_peers names the master only.
        let t = PeerTable::configured([ip("192.0.2.11")]);
        assert!(t.would_win(ip("192.0.2.12"), 100, ip("192.0.2.11")));
    }

    #[test]
    fn an_unknown_or_better_third_router_means_the_rfc_timer_decides() {
        let mut t = PeerTable::configured([ip("192.0.2.11"), ip("192.0.2.13")]);
        t.heard(ip("192.0.2.11"), 150);
        assert!(!t.would_win(ip("192.0.2.12"), 100, ip("192.0.2.11")));
        // Once the third was heard below us, we are the one.
        t.heard(ip("192.0.2.13"), 90);
        assert!(t.would_win(ip("192.0.2.12"), 100, ip("192.0.2.11")));
        // Its goodbye (priority 0) keeps what we knew.
        t.heard(ip("192.0.2.13"), 0);
        assert!(t.would_win(ip("192.0.2.12"), 100, ip("192.0.2.11")));
        // Equal priority: the higher address wins.
        t.heard(ip("192.0.2.13"), 100);
        assert!(!t.would_win(ip("192.0.2.12"), 100, ip("192.0.2.11")));
        assert!(t.would_win(ip("192.0.2.14"), 100, ip("192.0.2.11")));
    }
}
