//! Which BFD sessions should exist, and the caps on them: sans-IO, so the rules are
//! tested without sockets. A session exists for one of three reasons:
//!
//! - it is configured (`[bfd.NAME]`): always, caps or not;
//! - an instance learned the peer (from its adverts or `unicast_peers`) and wants it,
//!   until the instance lets the peer go (silent for Master_Down_Interval plus the
//!   detection time), stops, or loses `bfd`;
//! - the peer started it, on an interface where an instance with `bfd` listens (and,
//!   when every such instance has `unicast_peers`, from one of them): kept while Up,
//!   and for a linger time after it last left Up, so a peer that restarts comes back to
//!   the same session.
//!
//! A session with no reason left is taken down: AdminDown (diagnostic "administratively
//! down", RFC 5880 §6.8.16) for a detection time, so the peer knows it was let go and
//! not lost, then freed. Sessions that are not configured count against
//! `bfd_max_sessions_per_interface` and `bfd_max_sessions`; configured ones count but are
//! never refused. A learned session that finds no room evicts a session that is neither
//! configured nor learned nor Up (junk a peer started), else waits and is counted as
//! refused.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::bfd::State;
use crate::config::BfdTimers;
use crate::datapath::bfd::Family;
use crate::vrrp::Instant;

use super::SessionSpec;

/// Session caps (`bfd_max_sessions`, `bfd_max_sessions_per_interface`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// All interfaces together.
    pub total: usize,
    /// One interface.
    pub per_interface: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            total: crate::config::DEFAULT_MAX_SESSIONS,
            per_interface: crate::config::DEFAULT_MAX_SESSIONS_PER_INTERFACE,
        }
    }
}

/// How an interface answers peers that start a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listening {
    /// Timers of sessions peers start.
    pub timers: BfdTimers,
    /// How long such a session is kept after it last left Up.
    pub linger: Duration,
    /// Only these peers may (all instances there have `unicast_peers`); `None`: any.
    pub only: Option<BTreeSet<IpAddr>>,
}

/// A session as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// Name in logs and status.
    pub name: String,
    /// Interface.
    pub interface: String,
    /// Peer.
    pub peer: IpAddr,
    /// Local state.
    pub state: State,
    /// When it last left Up (or started, if never Up); `None` while Up.
    pub idle_since: Option<Instant>,
    /// Being taken down (AdminDown sent).
    pub removing: bool,
    /// Timers it runs with.
    pub timers: BfdTimers,
}

/// What to do to bring the sessions in line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Sessions (by index) to take down, with why.
    pub take_down: Vec<(usize, &'static str)>,
    /// Sessions being taken down that are wanted again: restart with this spec.
    pub restart: Vec<(usize, SessionSpec)>,
    /// Sessions to re-time or rename (a Poll Sequence when Up, RFC 5880 §6.8.3).
    pub retime: Vec<(usize, SessionSpec)>,
    /// Sessions to drop at once to make room (never Up, wanted by no one).
    pub evict: Vec<usize>,
    /// Sessions to start.
    pub start: Vec<SessionSpec>,
    /// Wanted sessions that found no room: (interface, peer).
    pub refused: Vec<(String, IpAddr)>,
}

/// What the agent wants of the BFD task.
#[derive(Clone, Debug, Default)]
pub struct Wants {
    /// `[bfd.NAME]`, by (interface, peer).
    pub named: BTreeMap<(String, IpAddr), SessionSpec>,
    /// Learned peers, by (interface, peer): the instances that want each, with timers.
    pub learned: BTreeMap<(String, IpAddr), BTreeMap<String, BfdTimers>>,
    /// Interfaces answering peers.
    pub listening: BTreeMap<(String, Family), Listening>,
    /// Caps.
    pub limits: Limits,
}

impl Wants {
    /// The session wanted to (`interface`, `peer`) by the configuration or an instance:
    /// a configured one's spec, else the fastest timers any instance asks for.
    pub fn wanted(&self, interface: &str, peer: IpAddr) -> Option<SessionSpec> {
        let key = (interface.to_owned(), peer);
        if let Some(spec) = self.named.get(&key) {
            return Some(spec.clone());
        }
        let timers = self
            .learned
            .get(&key)?
            .values()
            .min_by_key(|t| (t.interval, t.multiplier))?;
        Some(learned_spec(interface, peer, *timers))
    }

    /// How the interface answers `peer`, if it does.
    pub fn admits(&self, interface: &str, peer: IpAddr) -> Option<&Listening> {
        let l = self
            .listening
            .get(&(interface.to_owned(), Family::of(&peer)))?;
        l.only
            .as_ref()
            .is_none_or(|only| only.contains(&peer))
            .then_some(l)
    }

    /// Why a session should stay, as the spec it should run with; `None`: let it go.
    fn keep(&self, s: &View, now: Instant) -> Option<SessionSpec> {
        if let Some(spec) = self.wanted(&s.interface, s.peer) {
            return Some(spec);
        }
        let l = self.admits(&s.interface, s.peer)?;
        let alive = s.state == State::Up
            || s.idle_since
                .is_some_and(|t| now.saturating_duration_since(t) < l.linger);
        alive.then(|| SessionSpec {
            name: s.name.clone(),
            interface: s.interface.clone(),
            peer: s.peer,
            source: None,
            timers: l.timers,
        })
    }

    /// Whether one more session that is not configured fits beside `sessions`.
    pub fn room(&self, sessions: &[View], interface: &str) -> bool {
        self.room_for(
            sessions.len(),
            sessions.iter().filter(|s| s.interface == interface).count(),
        )
    }

    /// Whether one more session that is not configured fits beside `total` sessions,
    /// `on_interface` of them on its interface.
    pub fn room_for(&self, total: usize, on_interface: usize) -> bool {
        total < self.limits.total && on_interface < self.limits.per_interface
    }

    /// The plan that brings `sessions` in line with what is wanted at `now`.
    pub fn plan(&self, sessions: &[View], now: Instant) -> Plan {
        let mut plan = Plan::default();
        for (i, s) in sessions.iter().enumerate() {
            match self.keep(s, now) {
                Some(spec) if s.removing => plan.restart.push((i, spec)),
                Some(spec) if spec.timers != s.timers || spec.name != s.name => {
                    plan.retime.push((i, spec));
                }
                Some(_) => {}
                None if !s.removing => {
                    let why = if self.admits(&s.interface, s.peer).is_some() {
                        "down longer than the linger time and wanted by no instance"
                    } else {
                        "no longer configured, learned or listened for"
                    };
                    plan.take_down.push((i, why));
                }
                None => {}
            }
        }
        let present: BTreeSet<(&str, IpAddr)> = sessions
            .iter()
            .map(|s| (s.interface.as_str(), s.peer))
            .collect();
        // Configured first: they run whatever the count.
        let mut live: Vec<View> = sessions.to_vec();
        let mut gone: BTreeSet<usize> = BTreeSet::new();
        let wanted = self
            .named
            .keys()
            .map(|k| (k, true))
            .chain(self.learned.keys().map(|k| (k, false)));
        for ((interface, peer), named) in wanted {
            if present.contains(&(interface.as_str(), *peer))
                || plan
                    .start
                    .iter()
                    .any(|s| s.interface == *interface && s.peer == *peer)
            {
                continue;
            }
            let Some(spec) = self.wanted(interface, *peer) else {
                continue;
            };
            let counted: Vec<View> = live
                .iter()
                .enumerate()
                .filter(|(i, _)| !gone.contains(i))
                .map(|(_, v)| v.clone())
                .collect();
            if !named && !self.room(&counted, interface) {
                // Junk a peer started, never Up and wanted by no one, gives way.
                let full_here = counted.iter().filter(|s| s.interface == *interface).count()
                    >= self.limits.per_interface;
                let victim = live.iter().enumerate().position(|(i, s)| {
                    !gone.contains(&i)
                        && i < sessions.len()
                        && s.state != State::Up
                        && self.wanted(&s.interface, s.peer).is_none()
                        && (!full_here || s.interface == *interface)
                });
                match victim {
                    Some(v) => {
                        gone.insert(v);
                        plan.evict.push(v);
                    }
                    None => {
                        plan.refused.push((interface.clone(), *peer));
                        continue;
                    }
                }
            }
            live.push(View {
                name: spec.name.clone(),
                interface: spec.interface.clone(),
                peer: spec.peer,
                state: State::Down,
                idle_since: Some(now),
                removing: false,
                timers: spec.timers,
            });
            plan.start.push(spec);
        }
        // An evicted session is dropped, not taken down or re-timed.
        plan.take_down.retain(|(i, _)| !gone.contains(i));
        plan.retime.retain(|(i, _)| !gone.contains(i));
        plan
    }
}

/// The spec of a session an instance learned.
pub fn learned_spec(interface: &str, peer: IpAddr, timers: BfdTimers) -> SessionSpec {
    SessionSpec {
        name: format!("{interface}/{peer}"),
        interface: interface.to_owned(),
        peer,
        source: None,
        timers,
    }
}

#[cfg(test)]
mod tests;
