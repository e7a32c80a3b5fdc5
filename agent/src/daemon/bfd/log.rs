//! The recent history of the BFD sessions, for `vigil trace --bfd`: state changes,
//! sessions started, re-timed and let go, refusals at the caps. A bounded ring with
//! sequence numbers, so a reader that polls sees every entry or knows how many it missed.

use std::collections::VecDeque;
use std::net::IpAddr;

/// Entries kept; older ones are dropped (a reader behind by more learns how many).
pub const CAPACITY: usize = 512;

/// One thing that happened to a session.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Entry {
    /// Position in the history, from 1.
    pub seq: u64,
    /// Wall-clock time, seconds since the Unix epoch.
    pub time: f64,
    /// Session name.
    pub session: String,
    /// Interface.
    pub interface: String,
    /// Peer.
    pub peer: IpAddr,
    /// What happened, e.g. `Up -> Down: control detection time expired`.
    pub event: String,
    /// Local state after it.
    pub state: String,
    /// Detection time in force after it, milliseconds.
    pub detection_time_ms: Option<f64>,
    /// Our discriminator.
    pub local_discriminator: u32,
    /// The peer's (0 until heard).
    pub remote_discriminator: u32,
}

/// The ring.
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Entry>,
    next: u64,
}

impl History {
    /// Appends `entry`, numbering it.
    pub fn push(&mut self, mut entry: Entry) {
        self.next += 1;
        entry.seq = self.next;
        if self.entries.len() == CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// The entries after `seq`, and the sequence number of the newest.
    pub fn since(&self, seq: u64) -> (Vec<Entry>, u64) {
        let after = self
            .entries
            .iter()
            .filter(|e| e.seq > seq)
            .cloned()
            .collect();
        (after, self.next)
    }
}

/// Seconds since the Unix epoch, now.
pub fn wall_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(event: &str) -> Entry {
        Entry {
            seq: 0,
            time: 0.0,
            session: "eth0/192.0.2.11".into(),
            interface: "eth0".into(),
            peer: "192.0.2.11".parse().expect("literal address"),
            event: event.into(),
            state: "Up".into(),
            detection_time_ms: None,
            local_discriminator: 1,
            remote_discriminator: 2,
        }
    }

    #[test]
    fn a_reader_gets_what_came_after_it_and_the_ring_stays_bounded() {
        let mut h = History::default();
        h.push(entry("a"));
        h.push(entry("b"));
        let (after, newest) = h.since(1);
        assert_eq!(newest, 2);
        assert_eq!(after.len(), 1);
        assert_eq!((after[0].seq, after[0].event.as_str()), (2, "b"));
        for _ in 0..CAPACITY + 10 {
            h.push(entry("c"));
        }
        let (all, newest) = h.since(0);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(newest, CAPACITY as u64 + 12);
        // The oldest kept tells a reader at seq 0 that it missed the first twelve.
        assert_eq!(all[0].seq, 13);
    }
}
