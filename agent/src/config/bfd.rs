//! BFD in the configuration: `bfd = { interval, multiplier }` (in `[global]` as the default
//! and per instance) for BFD-assisted takeover, and `[bfd.NAME]` sessions that instances
//! track with `track_bfd` (keepalived's `bfd_instance` / `track_bfd`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use super::duration::RawDuration;
use super::error::Errors;
use super::raw::S;
use super::validate::{duration_in, int_in, peer_addr};
use super::{check_ifname, display_key};

/// Shortest BFD interval accepted: what the transmit timer can hold on a busy host.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// Longest BFD interval accepted.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Default BFD interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(300);
/// Default detect multiplier.
pub const DEFAULT_MULTIPLIER: u8 = 3;
/// Default `bfd_max_sessions`: far more than the routers of any real segment, few
/// enough that junk cannot make the agent keep thousands of timers and packets.
pub const DEFAULT_MAX_SESSIONS: usize = 256;
/// Default `bfd_max_sessions_per_interface`: a VRRP segment has a handful of routers.
pub const DEFAULT_MAX_SESSIONS_PER_INTERFACE: usize = 16;

/// Timers of a BFD session: the interval asked for in both directions, and the number of
/// missed packets that takes the session down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdTimers {
    /// Desired Min TX and Required Min RX.
    pub interval: Duration,
    /// Detect Mult.
    pub multiplier: u8,
}

impl Default for BfdTimers {
    fn default() -> Self {
        BfdTimers {
            interval: DEFAULT_INTERVAL,
            multiplier: DEFAULT_MULTIPLIER,
        }
    }
}

/// `[bfd.NAME]`: a BFD session that instances track (keepalived `bfd_instance`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdSession {
    /// The peer.
    pub neighbor: IpAddr,
    /// Our address; `None`: the interface's address of the neighbor's family.
    pub source: Option<IpAddr>,
    /// Interface the peer is on (single hop).
    pub interface: String,
    /// Timers.
    pub timers: BfdTimers,
    /// Default weight for instances tracking it: 0 faults the instance while the session
    /// is down; otherwise keepalived's semantics (+ while up, − while down).
    pub weight: i32,
}

/// A `track_bfd` entry, weight resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackBfd {
    /// Name in `[bfd]`.
    pub session: String,
    /// Effective weight for this instance.
    pub weight: i32,
}

/// `bfd = { interval = "10ms", multiplier = 3 }` as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBfdTimers {
    pub interval: Option<S<RawDuration>>,
    pub multiplier: Option<S<i64>>,
}

/// `[bfd.NAME]` as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBfdSession {
    pub neighbor: S<String>,
    pub source: Option<S<String>>,
    pub interface: S<String>,
    pub interval: Option<S<RawDuration>>,
    pub multiplier: Option<S<i64>>,
    pub weight: Option<S<i64>>,
}

/// Checks a `bfd = { … }` table; unset keys come from `base`.
pub(crate) fn timers(
    e: &mut Errors<'_>,
    path: &str,
    raw: &RawBfdTimers,
    base: BfdTimers,
) -> BfdTimers {
    timer_values(e, path, &raw.interval, &raw.multiplier, base)
}

fn timer_values(
    e: &mut Errors<'_>,
    path: &str,
    interval: &Option<S<RawDuration>>,
    multiplier: &Option<S<i64>>,
    base: BfdTimers,
) -> BfdTimers {
    let interval = interval
        .as_ref()
        .and_then(|d| {
            duration_in(
                e,
                d,
                &format!("{path}.interval"),
                MIN_INTERVAL,
                MAX_INTERVAL,
                "1ms to 60s",
            )
        })
        .unwrap_or(base.interval);
    let multiplier = multiplier
        .as_ref()
        .and_then(|m| int_in(e, m, &format!("{path}.multiplier"), 1..=255))
        .map_or(base.multiplier, |m| m as u8);
    BfdTimers {
        interval,
        multiplier,
    }
}

/// Checks the `[bfd.NAME]` tables.
pub(crate) fn sessions(
    e: &mut Errors<'_>,
    raw: &BTreeMap<S<String>, S<RawBfdSession>>,
) -> BTreeMap<String, BfdSession> {
    let mut out = BTreeMap::new();
    for (name, s) in raw {
        let path = format!("bfd.{}", display_key(name.get_ref()));
        let before = e.len();
        if name.get_ref().trim().is_empty() {
            e.add(name.span(), &path, "session name is empty");
        }
        let r = s.get_ref();
        let neighbor = peer_addr(e, &r.neighbor, &format!("{path}.neighbor"), None);
        let source = r.source.as_ref().and_then(|a| {
            let addr = peer_addr(e, a, &format!("{path}.source"), None)?;
            if neighbor.is_some_and(|n| n.is_ipv4() != addr.is_ipv4()) {
                e.add(
                    a.span(),
                    format!("{path}.source"),
                    "source and neighbor must be of one family",
                );
            }
            Some(addr)
        });
        let interface = r.interface.get_ref().clone();
        if let Err(m) = check_ifname(&interface) {
            e.add(r.interface.span(), format!("{path}.interface"), m);
        }
        let timers = timer_values(e, &path, &r.interval, &r.multiplier, BfdTimers::default());
        let weight = r
            .weight
            .as_ref()
            .and_then(|w| int_in(e, w, &format!("{path}.weight"), -253..=253))
            .unwrap_or(0) as i32;
        if let (Some(neighbor), true) = (neighbor, e.len() == before) {
            out.insert(
                name.get_ref().clone(),
                BfdSession {
                    neighbor,
                    source,
                    interface,
                    timers,
                    weight,
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests;
