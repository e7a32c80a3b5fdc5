//! The peer table of BFD-assisted takeover: which routers of a virtual router are known,
//! with the priority each last advertised, and whether this router is the Backup that
//! would win if the Master went away, the one whose BFD session to the Master is critical.
//!
//! Plain VRRP only carries the Master's adverts, so a Backup learns other Backups'
//! priorities only from the times they were Master, or never. A peer whose priority is
//! unknown might outrank us: then we are not sure to win, and the RFC's timer decides.
//!
//! A peer learned from adverts stays a session candidate while it is heard: one silent
//! for longer than the caller's limit (Master_Down_Interval plus the BFD detection time),
//! and not the Master we follow, stops being one and its session is let go. Its priority
//! stays known, so that forgetting a session never makes us believe we would win.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::vrrp::Instant;

/// What the table knows of one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Known {
    /// Priority last advertised; `None` until heard with a non-zero one.
    priority: Option<u8>,
    /// Named in `unicast_peers`: a candidate for as long as the configuration says so.
    configured: bool,
    /// Arrival of its newest advert.
    heard_at: Option<Instant>,
    /// A BFD session to it is wanted.
    candidate: bool,
}

/// The routers of one virtual router besides this one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerTable {
    peers: BTreeMap<IpAddr, Known>,
}

impl PeerTable {
    /// A table of configured peers (`unicast_peers`), priorities unknown.
    pub fn configured(peers: impl IntoIterator<Item = IpAddr>) -> PeerTable {
        PeerTable {
            peers: peers
                .into_iter()
                .map(|p| {
                    let known = Known {
                        priority: None,
                        configured: true,
                        heard_at: None,
                        candidate: true,
                    };
                    (p, known)
                })
                .collect(),
        }
    }

    /// An advert from `source` with `priority` arrived at `at`; priority 0 (a Master
    /// leaving) says nothing about the priority it had. True when `source` just became
    /// a session candidate (new, or heard again after it was let go).
    pub fn heard(&mut self, source: IpAddr, priority: u8, at: Instant) -> bool {
        let known = self.peers.entry(source).or_insert(Known {
            priority: None,
            configured: false,
            heard_at: None,
            candidate: false,
        });
        if priority != 0 {
            known.priority = Some(priority);
        }
        known.heard_at = Some(known.heard_at.map_or(at, |h| h.max(at)));
        let became = !known.candidate;
        known.candidate = true;
        became
    }

    /// Lets go of the learned candidates not heard for longer than `limit` at `now`,
    /// except `master` (whose steady adverts the datapath may keep to itself); returns
    /// them. Configured peers stay.
    pub fn expire(&mut self, now: Instant, limit: Duration, master: Option<IpAddr>) -> Vec<IpAddr> {
        let mut gone = Vec::new();
        for (addr, known) in &mut self.peers {
            let stale = known
                .heard_at
                .is_none_or(|h| now.saturating_duration_since(h) > limit);
            if known.candidate && !known.configured && Some(*addr) != master && stale {
                known.candidate = false;
                gone.push(*addr);
            }
        }
        gone
    }

    /// Every known peer.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.peers.keys().copied()
    }

    /// The peers a BFD session is wanted to.
    pub fn candidates(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.peers
            .iter()
            .filter(|(_, k)| k.candidate)
            .map(|(a, _)| *a)
    }

    /// Whether we (`me`, `priority`) win the election that follows `master`'s loss:
    /// every other peer is known to rank below us (RFC 5798 §6.4.2: higher priority,
    /// then higher primary address).
    pub fn would_win(&self, me: IpAddr, priority: u8, master: IpAddr) -> bool {
        self.peers
            .iter()
            .filter(|(addr, _)| **addr != master && **addr != me)
            .all(|(addr, known)| match known.priority {
                Some(p) => (p, *addr) < (priority, me),
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

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn a_pair_always_has_its_backup_win() {
        let mut t = PeerTable::default();
        t.heard(ip("192.0.2.11"), 150, at(0));
        assert!(t.would_win(ip("192.0.2.12"), 100, ip("192.0.2.11")));
        // unicast_peers names the master only.
        let t = PeerTable::configured([ip("192.0.2.11")]);
        assert!(t.would_win(ip("192.0.2.12"), 100, ip("192.0.2.11")));
    }

    #[test]
    fn an_unknown_or_better_third_router_means_the_rfc_timer_decides() {
        let mut t = PeerTable::configured([ip("192.0.2.11"), ip("192.0.2.13")]);
        t.heard(ip("192.0.2.11"), 150, at(0));
        assert!(!t.would_win(ip("192.0.2.12"), 100, ip("192.0.2.11")));
        // Once the third was heard below us, we are the one.
        t.heard(ip("192.0.2.13"), 90, at(0));
        assert!(t.would_win(ip("192.0.2.12"), 100, ip("192.0.2.11")));
        // Its goodbye (priority 0) keeps what we knew.
        t.heard(ip("192.0.2.13"), 0, at(0));
        assert!(t.would_win(ip("192.0.2.12"), 100, ip("192.0.2.11")));
        // Equal priority: the higher address wins.
        t.heard(ip("192.0.2.13"), 100, at(0));
        assert!(!t.would_win(ip("192.0.2.12"), 100, ip("192.0.2.11")));
        assert!(t.would_win(ip("192.0.2.14"), 100, ip("192.0.2.11")));
    }

    #[test]
    fn a_silent_learned_peer_stops_being_a_candidate_but_keeps_its_rank() {
        let limit = Duration::from_millis(3650);
        let mut t = PeerTable::configured([ip("192.0.2.20")]);
        assert!(t.heard(ip("192.0.2.11"), 150, at(0)));
        assert!(!t.heard(ip("192.0.2.11"), 150, at(1000)), "already one");
        assert!(t.heard(ip("192.0.2.13"), 200, at(500)));
        // Not yet silent for the limit.
        assert!(t.expire(at(4000), limit, None).is_empty());
        // The Master we follow stays; the configured peer stays, heard or not.
        assert_eq!(
            t.expire(at(4700), limit, Some(ip("192.0.2.11"))),
            [ip("192.0.2.13")]
        );
        let left: Vec<_> = t.candidates().collect();
        assert_eq!(left, [ip("192.0.2.11"), ip("192.0.2.20")]);
        // Once gone, it still outranks us: no premature takeover.
        assert!(!t.would_win(ip("192.0.2.12"), 100, ip("192.0.2.11")));
        // Heard again, it is a candidate again.
        assert!(t.heard(ip("192.0.2.13"), 200, at(5000)));
        assert!(t.expire(at(5000), limit, Some(ip("192.0.2.11"))).is_empty());
    }
}
