//! Split-brain watch: while Master, adverts from another router that also claims to be
//! Master and does not give way.
//!
//! A Master answers a worse master's advert at once (see `VirtualRouter`), so after a
//! healed partition the other side backs off within a round trip. One that keeps
//! advertising for more than two of our intervals does not hear us (one-way loss, a
//! filter, a wrong VRID on its side): both hold the addresses.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::vrrp::Instant;

/// Adverts in a row before a suspicion is raised.
const MIN_ADVERTS: u64 = 3;
/// At most one "still" warning per this long.
const REWARN: Duration = Duration::from_secs(30);

/// One run of adverts from a master that would not give way.
#[derive(Clone, Debug)]
pub struct Episode {
    /// The other master.
    pub peer: IpAddr,
    /// Its advertised priority.
    pub peer_priority: u8,
    /// Its advert interval.
    pub peer_interval: Duration,
    /// First of its adverts in this run.
    pub first: Instant,
    /// Last one.
    pub last: Instant,
    /// Wall-clock time of the first, for people.
    pub since: SystemTime,
    /// Adverts in this run.
    pub adverts: u64,
    /// Whether the run has lasted long enough to be called split brain.
    pub suspected: bool,
    warned_at: Option<Instant>,
}

/// The watch of one instance.
#[derive(Clone, Debug, Default)]
pub struct SplitBrain {
    /// The current run, if any.
    pub episode: Option<Episode>,
    /// Adverts from a master that did not give way, ever.
    pub adverts_total: u64,
    /// Runs that were called split brain, ever.
    pub suspicions: u64,
}

impl SplitBrain {
    /// A Master (with `ours` priority and `interval`) got an advert from `peer` that
    /// did not make it give way. Logs at warn when a suspicion starts, and at most every
    /// [`REWARN`] while it goes on.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        instance: &str,
        now: Instant,
        peer: IpAddr,
        peer_priority: u8,
        peer_interval: Duration,
        ours: u8,
        interval: Duration,
    ) {
        self.adverts_total += 1;
        let ep = self.episode.get_or_insert_with(|| Episode {
            peer,
            peer_priority,
            peer_interval,
            first: now,
            last: now,
            since: SystemTime::now(),
            adverts: 0,
            suspected: false,
            warned_at: None,
        });
        ep.peer = peer;
        ep.peer_priority = peer_priority;
        ep.peer_interval = peer_interval;
        ep.last = ep.last.max(now);
        ep.adverts += 1;
        let lasted = ep.last.saturating_duration_since(ep.first);
        if !ep.suspected && ep.adverts >= MIN_ADVERTS && lasted >= interval * 2 {
            ep.suspected = true;
            self.suspicions += 1;
            ep.warned_at = Some(now);
            tracing::warn!(
                instance,
                "split brain suspected: {peer} (priority {peer_priority}) keeps advertising as master \
                 although we (priority {ours}) answer; {} adverts in {:.1}s — one-way loss?",
                ep.adverts,
                lasted.as_secs_f64()
            );
        } else if ep.suspected
            && ep
                .warned_at
                .is_none_or(|w| now.saturating_duration_since(w) >= REWARN)
        {
            ep.warned_at = Some(now);
            tracing::warn!(
                instance,
                "split brain goes on: {} adverts from {peer} (priority {peer_priority}) in {:.0}s",
                ep.adverts,
                lasted.as_secs_f64()
            );
        }
    }

    /// Ends the run when the other master has been quiet for three of the longer of
    /// both intervals, or at once when `master` is false (we gave way ourselves).
    pub fn expire(&mut self, instance: &str, now: Instant, master: bool, interval: Duration) {
        let Some(ep) = &self.episode else {
            return;
        };
        let quiet = now.saturating_duration_since(ep.last);
        if master && quiet < interval.max(ep.peer_interval) * 3 {
            return;
        }
        if ep.suspected {
            tracing::warn!(
                instance,
                "split brain over: {} stopped advertising as master after {} adverts in {:.1}s",
                ep.peer,
                ep.adverts,
                ep.last.saturating_duration_since(ep.first).as_secs_f64()
            );
        }
        self.episode = None;
    }

    /// The `split_brain` object of `vigil status`: null unless suspected now.
    pub fn status(&self, now: Instant) -> serde_json::Value {
        match &self.episode {
            Some(ep) if ep.suspected => serde_json::json!({
                "suspected": true,
                "since": humantime::format_rfc3339_seconds(ep.since).to_string(),
                "seconds": now.saturating_duration_since(ep.first).as_secs_f64(),
                "peer": ep.peer.to_string(),
                "peer_priority": ep.peer_priority,
                "adverts": ep.adverts,
            }),
            _ => serde_json::Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn a_master_that_backs_off_is_no_split_brain() {
        let mut s = SplitBrain::default();
        let peer: IpAddr = "192.0.2.12".parse().expect("literal");
        let i = Duration::from_millis(100);
        s.observe("web", at(1000), peer, 100, i, 150, i);
        s.observe("web", at(1001), peer, 100, i, 150, i);
        assert!(s.status(at(1001)).is_null());
        s.expire("web", at(1400), true, i);
        assert!(s.episode.is_none());
        assert_eq!((s.adverts_total, s.suspicions), (2, 0));
    }

    #[test]
    fn a_master_that_keeps_advertising_is_suspected_until_it_stops() {
        let mut s = SplitBrain::default();
        let peer: IpAddr = "192.0.2.12".parse().expect("literal");
        let i = Duration::from_millis(100);
        for k in 0..5 {
            s.observe("web", at(1000 + k * 100), peer, 100, i, 150, i);
        }
        let st = s.status(at(1400));
        assert_eq!(st["peer"], "192.0.2.12");
        assert_eq!(st["adverts"], 5);
        assert_eq!(s.suspicions, 1);
        s.expire("web", at(1500), true, i);
        assert!(s.episode.is_some(), "quiet for less than 3 intervals");
        s.expire("web", at(1800), true, i);
        assert!(s.episode.is_none());
    }
}
