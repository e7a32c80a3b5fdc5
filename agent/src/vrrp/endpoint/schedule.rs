//! The endpoint's deadlines in time order, so that the next wake-up and the routers due
//! are read off the front instead of asking every router each time (a Master's every
//! advert is one).
//!
//! Keys are filed in buckets, one per instant: Masters with one interval share their
//! deadlines, so a round of their adverts takes one bucket off and fills one other.
//! Emptied buckets are kept for reuse, so a steady round allocates nothing.

use std::collections::BTreeMap;

use vigil_common::VridKey;

use crate::vrrp::time::Instant;

/// What a key is filed as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A Backup: the caller reads its kernel state before its timeout.
    Backup,
    /// Any other router.
    Other,
    /// A steady Master whose Adver_Timer the endpoint holds, at this index of its
    /// timers: its round touches nothing else of it.
    Steady(u32),
}

/// Where a key is filed: its deadline, and as what.
pub(super) type Filed = (Instant, Kind);

/// Deadlines in time order, each with the keys due then.
#[derive(Clone, Debug, Default)]
pub(super) struct Schedule {
    buckets: BTreeMap<Instant, Vec<(VridKey, Kind)>>,
    spare: Vec<Vec<(VridKey, Kind)>>,
}

impl Schedule {
    /// Moves `key` from `old` to `new` (either may be none).
    pub(super) fn refile(&mut self, key: VridKey, old: Option<Filed>, new: Option<Filed>) {
        if old == new {
            return;
        }
        self.unfile(key, old);
        if let Some((at, kind)) = new {
            let spare = &mut self.spare;
            self.buckets
                .entry(at)
                .or_insert_with(|| spare.pop().unwrap_or_default())
                .push((key, kind));
        }
    }

    /// Takes `key` out, where it is filed at `at`.
    pub(super) fn unfile(&mut self, key: VridKey, at: Option<Filed>) {
        let Some((at, _)) = at else {
            return;
        };
        let Some(keys) = self.buckets.get_mut(&at) else {
            return;
        };
        if let Some(i) = keys.iter().position(|(k, _)| *k == key) {
            keys.swap_remove(i);
        }
        if keys.is_empty()
            && let Some(empty) = self.buckets.remove(&at)
        {
            self.spare.push(empty);
        }
    }

    /// The earliest deadline.
    pub(super) fn first(&self) -> Option<Instant> {
        self.buckets.first_key_value().map(|(at, _)| *at)
    }

    /// The keys due at `now` (those filed as Backups only, with `backups`) into `keys`,
    /// cleared first, in key order.
    pub(super) fn due(&self, now: Instant, backups: bool, keys: &mut Vec<VridKey>) {
        keys.clear();
        for (_, due) in self.buckets.range(..=now) {
            keys.extend(
                due.iter()
                    .filter(|(_, kind)| *kind == Kind::Backup || !backups)
                    .map(|(k, _)| *k),
            );
        }
        keys.sort_unstable();
    }

    /// The keys due at `now`, each with what it was filed as, into `due`, cleared first,
    /// in key order, taking them off the schedule: the caller files each again.
    pub(super) fn take_due(&mut self, now: Instant, due: &mut Vec<(VridKey, Kind)>) {
        due.clear();
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > now {
                break;
            }
            let mut bucket = entry.remove();
            due.extend(bucket.iter().copied());
            bucket.clear();
            self.spare.push(bucket);
        }
        due.sort_unstable_by_key(|(k, _)| *k);
    }

    /// Whether `key` is filed at `at`.
    pub(super) fn holds(&self, key: &VridKey, at: Filed) -> bool {
        self.buckets
            .get(&at.0)
            .is_some_and(|keys| keys.contains(&(*key, at.1)))
    }

    /// Keys filed, and whether any bucket is empty (it never should be).
    pub(super) fn census(&self) -> (usize, bool) {
        (
            self.buckets.values().map(Vec::len).sum(),
            self.buckets.values().any(Vec::is_empty),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(vrid: u8) -> VridKey {
        VridKey {
            ifindex: 2,
            family: 2,
            vrid,
            _pad: 0,
        }
    }

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn due_keys_come_off_in_key_order_and_refile_under_their_next_deadline() {
        let mut s = Schedule::default();
        for vrid in [5, 1, 3] {
            s.refile(key(vrid), None, Some((at(10), Kind::Other)));
        }
        s.refile(key(2), None, Some((at(12), Kind::Backup)));
        s.refile(key(4), None, Some((at(30), Kind::Backup)));
        assert_eq!(s.first(), Some(at(10)));

        let mut due = Vec::new();
        s.due(at(12), true, &mut due);
        assert_eq!(due, vec![key(2)], "only the Backup's");
        s.due(at(12), false, &mut due);
        assert_eq!(due, vec![key(1), key(2), key(3), key(5)]);

        let mut taken = Vec::new();
        s.take_due(at(12), &mut taken);
        let kinds = [Kind::Other, Kind::Backup, Kind::Other, Kind::Other];
        let keys = [key(1), key(2), key(3), key(5)];
        assert_eq!(taken, keys.into_iter().zip(kinds).collect::<Vec<_>>());
        assert_eq!(s.first(), Some(at(30)));
        assert_eq!(s.census(), (1, false));
        for &(k, _) in &taken {
            s.refile(k, None, Some((at(20), Kind::Other)));
        }
        assert_eq!(s.first(), Some(at(20)));
        assert_eq!(s.census(), (5, false));
        // The emptied buckets were reused for the new deadline.
        assert_eq!(s.spare.len(), 1);
    }

    #[test]
    fn a_key_moves_between_buckets_and_an_empty_bucket_goes() {
        let mut s = Schedule::default();
        s.refile(key(1), None, Some((at(10), Kind::Backup)));
        s.refile(key(2), None, Some((at(10), Kind::Backup)));
        s.refile(
            key(1),
            Some((at(10), Kind::Backup)),
            Some((at(10), Kind::Other)),
        );
        assert!(s.holds(&key(1), (at(10), Kind::Other)));
        assert!(!s.holds(&key(1), (at(10), Kind::Backup)));
        s.refile(
            key(2),
            Some((at(10), Kind::Backup)),
            Some((at(40), Kind::Backup)),
        );
        s.unfile(key(1), Some((at(10), Kind::Other)));
        assert_eq!(s.first(), Some(at(40)));
        assert_eq!(s.census(), (1, false));
        s.refile(key(2), Some((at(40), Kind::Backup)), None);
        assert_eq!(s.first(), None);
        assert_eq!(s.census(), (0, false));
    }
}
