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

/// Where a key is filed: its deadline, and whether its router was a Backup then (the
/// caller reads a Backup's kernel state before its timeout; a Master needs none).
pub(super) type Filed = (Instant, bool);

/// Deadlines in time order, each with the keys due then.
#[derive(Clone, Debug, Default)]
pub(super) struct Schedule {
    buckets: BTreeMap<Instant, Vec<(VridKey, bool)>>,
    spare: Vec<Vec<(VridKey, bool)>>,
}

impl Schedule {
    /// Moves `key` from `old` to `new` (either may be none).
    pub(super) fn refile(&mut self, key: VridKey, old: Option<Filed>, new: Option<Filed>) {
        if old == new {
            return;
        }
        self.unfile(key, old);
        if let Some((at, backup)) = new {
            let spare = &mut self.spare;
            self.buckets
                .entry(at)
                .or_insert_with(|| spare.pop().unwrap_or_default())
                .push((key, backup));
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
            keys.extend(due.iter().filter(|(_, b)| *b || !backups).map(|(k, _)| *k));
        }
        keys.sort_unstable();
    }

    /// The keys due at `now` into `keys`, cleared first, in key order, taking them off
    /// the schedule: the caller files each again.
    pub(super) fn take_due(&mut self, now: Instant, keys: &mut Vec<VridKey>) {
        keys.clear();
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > now {
                break;
            }
            let mut bucket = entry.remove();
            keys.extend(bucket.iter().map(|(k, _)| *k));
            bucket.clear();
            self.spare.push(bucket);
        }
        keys.sort_unstable();
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
