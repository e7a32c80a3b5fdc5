//! A round's first adverts, ahead of its slow work. When many routers must advertise
//! in one round (a whole Backup taking over from a dead Master, a sync group moving
//! together, Masters answering a rival, a stop), each router's advert comes before its
//! address work in the queue (RFC 5798 §6.4.1, §6.4.2: the advert, then the
//! addresses and their announcements), but the queue runs router after router: the
//! last router's advert would wait for every other router's netlink changes. So the
//! caller takes these adverts out of the queue first, sends them together, and then
//! carries out the rest in order.

use super::{Action, Endpoint, EndpointAction, State, VridKey};

/// An advert taken out of the queue ahead of the round's address work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstAdvert {
    /// The router.
    pub key: VridKey,
    /// The priority to advertise.
    pub priority: u8,
    /// It is the router's first advert after becoming Master in this round.
    pub takeover: bool,
}

/// Whether `action` is work that may take time (netlink, announcements): an advert
/// queued after it for the same router stays after it.
fn slow(action: &Action) -> bool {
    matches!(
        action,
        Action::AddAddresses | Action::RemoveAddresses | Action::Announce | Action::Reannounce
    )
}

impl Endpoint {
    /// Whether the next action is a state change or address or announcement work: the
    /// point at which [`Endpoint::take_first_adverts`] is worth calling. A steady
    /// Master's round never reaches one.
    pub fn next_is_slow(&self) -> bool {
        match self.actions.front() {
            Some((_, EndpointAction::Router(Action::StateChanged(_)))) => true,
            Some((_, EndpointAction::Router(a))) => slow(a),
            _ => false,
        }
    }

    /// Takes out of the queue, into `out` in queue order, every advert that comes before
    /// its router's first address or announcement work of the round; everything else
    /// stays queued in order. The caller sends them before carrying out the rest, so
    /// each router's advert still precedes its own addresses and announcements.
    pub fn take_first_adverts(&mut self, out: &mut Vec<FirstAdvert>) {
        // Few routers have slow work in a round: small lists beat sets here.
        let mut blocked: Vec<VridKey> = Vec::new();
        let mut promoted: Vec<VridKey> = Vec::new();
        self.actions.retain(|(key, action)| {
            let EndpointAction::Router(a) = action else {
                return true;
            };
            match a {
                Action::StateChanged(t) => {
                    promoted.retain(|k| k != key);
                    if t.to == State::Master {
                        promoted.push(*key);
                    }
                    true
                }
                Action::SendAdvert { priority } if !blocked.contains(key) => {
                    let at = promoted.iter().position(|k| k == key);
                    if let Some(at) = at {
                        promoted.swap_remove(at);
                    }
                    out.push(FirstAdvert {
                        key: *key,
                        priority: *priority,
                        takeover: at.is_some(),
                    });
                    false
                }
                a if slow(a) => {
                    if !blocked.contains(key) {
                        blocked.push(*key);
                    }
                    true
                }
                _ => true,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use super::super::{EndpointInput, Instant, RouterConfig, Version, key_of};
    use super::*;

    const MS: u64 = 1_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal address")
    }

    fn key(vrid: u8) -> VridKey {
        key_of(2, ip("192.0.2.12"), vrid)
    }

    /// Backups of VRIDs `1..=n` at 100 ms adverts, started at 1 s, their actions so far
    /// taken.
    fn backups(n: u8) -> Endpoint {
        let mut ep = Endpoint::new();
        for vrid in 1..=n {
            let vip = ip(&format!("198.51.100.{vrid}"));
            let mut cfg = RouterConfig::new(vrid, Version::V3, 100, vec![vip]);
            cfg.advert_interval = Duration::from_millis(100);
            ep.add(key(vrid), cfg, ip("192.0.2.12"), false)
                .expect("a free key");
            ep.handle(
                Instant::from_nanos(1000 * MS),
                EndpointInput::Startup { key: key(vrid) },
            );
        }
        while ep.poll_action().is_some() {}
        ep
    }

    /// The router actions left in the queue for `k`, in order.
    fn left_for(ep: &mut Endpoint, k: VridKey) -> Vec<Action> {
        ep.actions
            .iter()
            .filter(|(key, _)| *key == k)
            .filter_map(|(_, a)| match a {
                EndpointAction::Router(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_takeover_advert_of_a_round_comes_before_any_address_work() {
        let mut ep = backups(30);
        // No Master was ever heard: every down timer has run out.
        ep.handle(Instant::from_nanos(5000 * MS), EndpointInput::Timeout);
        assert!(ep.next_is_slow());
        let mut first = Vec::new();
        ep.take_first_adverts(&mut first);
        let keys: Vec<VridKey> = first.iter().map(|f| f.key).collect();
        assert_eq!(keys, (1..=30).map(key).collect::<Vec<_>>());
        assert!(first.iter().all(|f| f.takeover && f.priority == 100));
        for vrid in 1..=30 {
            let left = left_for(&mut ep, key(vrid));
            assert!(
                matches!(left[0], Action::StateChanged(ref t) if t.to == State::Master),
                "{left:?}"
            );
            let add = left.iter().position(|a| *a == Action::AddAddresses);
            let announce = left.iter().position(|a| *a == Action::Announce);
            assert!(add.is_some() && add < announce, "{left:?}");
            assert!(
                !left.iter().any(|a| matches!(a, Action::SendAdvert { .. })),
                "{left:?}"
            );
        }
        // Taken once: a second look finds nothing.
        first.clear();
        ep.take_first_adverts(&mut first);
        assert!(first.is_empty());
    }

    #[test]
    fn an_advert_after_its_routers_address_work_stays_after_it() {
        let mut ep = backups(2);
        ep.actions.clear();
        let advert = |priority| EndpointAction::Router(Action::SendAdvert { priority });
        ep.actions
            .push_back((key(1), EndpointAction::Router(Action::RemoveAddresses)));
        ep.actions.push_back((key(1), advert(100)));
        ep.actions.push_back((key(2), advert(0)));
        ep.actions
            .push_back((key(2), EndpointAction::Router(Action::RemoveAddresses)));
        let mut first = Vec::new();
        ep.take_first_adverts(&mut first);
        assert_eq!(
            first,
            vec![FirstAdvert {
                key: key(2),
                priority: 0,
                takeover: false
            }]
        );
        assert_eq!(
            left_for(&mut ep, key(1)),
            vec![
                Action::RemoveAddresses,
                Action::SendAdvert { priority: 100 }
            ]
        );
        assert_eq!(left_for(&mut ep, key(2)), vec![Action::RemoveAddresses]);
    }

    #[test]
    fn a_steady_masters_round_has_no_slow_work() {
        let mut ep = backups(1);
        ep.actions.clear();
        ep.actions.push_back((
            key(1),
            EndpointAction::Router(Action::SendAdvert { priority: 100 }),
        ));
        assert!(!ep.next_is_slow());
    }
}
