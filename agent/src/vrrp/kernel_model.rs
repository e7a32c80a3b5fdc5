//! A model of the XDP program for the tests and the simulator: the same
//! `vigil_common::validate` and `vigil_common::suppress` calls as `ebpf/src/main.rs`,
//! around a ring buffer of bounded size (a full ring loses reports, as the kernel's
//! does) and a `vrid_stats` map that two CPUs may update at once; with kernel timers,
//! the per-VRID down timer of `ebpf/src/timer.rs` too (armed from the committed
//! arrivals, re-armed while adverts arrive, a silence record when they stop).

use std::collections::{BTreeMap, VecDeque};

use vigil_common::down::{RETRY_NS, alarm_ns, deadline_ns, interval_ns};
use vigil_common::event::EVENT_SILENCE;
use vigil_common::suppress::{self, Fate};
use vigil_common::validate::{self, Advert, Parsed};
use vigil_common::{AdvertEvent, DownParams, IfaceStats, Verdict, VridKey, VridStats, WatchEntry};

use crate::vrrp::endpoint::{Datapath, EndpointAction};

/// The program's maps and ring buffer.
#[derive(Clone, Debug, Default)]
pub struct KernelModel {
    /// The `watch` map, as the agent set it.
    pub watch: BTreeMap<VridKey, WatchEntry>,
    /// The `vrid_stats` map.
    pub stats: BTreeMap<VridKey, VridStats>,
    /// Records written and not yet read.
    pub ring: VecDeque<AdvertEvent>,
    /// Records the ring holds; more are lost.
    pub capacity: usize,
    /// Verdict counters per interface.
    pub iface: BTreeMap<u32, IfaceStats>,
    /// The `down_params` map (kernel timers): a VRID without an entry gets no timer.
    pub down: BTreeMap<VridKey, DownParams>,
    /// Armed down timers and their absolute expiry (ns).
    pub timers: BTreeMap<VridKey, u64>,
    /// The local priority each timer's expiry was computed for.
    armed_for: BTreeMap<VridKey, u8>,
}

/// One frame judged up to the point where the program writes its report: what a CPU
/// holds between reading the VRID's state and writing it back.
#[derive(Clone, Debug)]
pub struct InFlight {
    key: VridKey,
    advert: Advert,
    verdict: Verdict,
    ts: u64,
    ifindex: u32,
    digest: u32,
    fate: Option<Fate>,
    watched: Option<WatchEntry>,
    first: u64,
}

impl KernelModel {
    /// A program whose ring holds `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Applies what the agent does to the maps for an endpoint action.
    pub fn apply(&mut self, key: VridKey, action: &EndpointAction) {
        if let EndpointAction::Watch(e) = action {
            self.watch.insert(key, *e);
            self.stats.entry(key).or_default();
        }
    }

    /// First half of the program on one frame: parse, validate, read the state, decide.
    pub fn begin(&mut self, ifindex: u32, ts: u64, frame: &[u8]) -> Option<InFlight> {
        let mut a = Advert::default();
        let parsed = validate::parse(frame, &mut a);
        if parsed == Parsed::NotVrrp {
            return None;
        }
        let key = validate::watch_key(ifindex, &a).unwrap_or_default();
        // As the program: the state entry makes a VRID watched, and names its
        // configuration.
        let entry = match parsed {
            Parsed::Vrrp if key.ifindex != 0 && self.stats.contains_key(&key) => {
                self.watch.get(&key).copied()
            }
            _ => None,
        };
        let verdict = match parsed {
            Parsed::Broken(v) => v,
            _ => validate::check(frame, &a, entry.as_ref()),
        };
        self.iface.entry(ifindex).or_default().count(verdict);
        let digest = if verdict.passes() {
            validate::address_digest(frame, &a).unwrap_or(0)
        } else {
            0
        };
        let mut fate = None;
        let mut first = ts;
        let watched = entry;
        if let (Some(w), Some(s)) = (entry, self.stats.get_mut(&key)) {
            fate = suppress::judge(s, &a, verdict, &w);
            first = suppress::run_start(s, &a, ts, w.epoch);
        }
        Some(InFlight {
            key,
            advert: a,
            verdict,
            ts,
            ifindex,
            digest,
            fate,
            watched,
            first,
        })
    }

    /// Second half: write the report if there is one and room for it, then settle the
    /// state.
    pub fn finish(&mut self, f: InFlight) {
        let report = f.fate == Some(Fate::Report);
        let attempt = report.then(|| {
            let written = self.ring.len() < self.capacity;
            if written {
                let mut e = AdvertEvent::zeroed();
                suppress::fill(
                    &mut e, f.ts, f.first, f.ifindex, &f.advert, f.verdict, f.digest,
                );
                self.ring.push_back(e);
            } else {
                self.iface.entry(f.ifindex).or_default().ring_full += 1;
            }
            suppress::Attempt {
                digest: f.digest,
                written,
            }
        });
        if let (Some(s), Some(w)) = (self.stats.get_mut(&f.key), f.watched) {
            suppress::settle(s, &f.advert, f.ts, &w, f.fate, attempt);
        }
        // As the program: the timer runs from the recorded arrival, and restarts on
        // every written report.
        match f.fate {
            Some(Fate::Quiet) => self.arm(f.key, false),
            Some(Fate::Report) => self.arm(f.key, attempt.is_some_and(|t| t.written)),
            _ => {}
        }
    }

    /// The deadline of a VRID's down timer from its state now, and when its timer fires
    /// for it (the alarm, a little ahead).
    fn deadline(&self, key: &VridKey) -> Option<(u64, u64)> {
        let (p, w, s) = (
            self.down.get(key)?,
            self.watch.get(key)?,
            self.stats.get(key)?,
        );
        let interval = if p.interval_ns != 0 {
            p.interval_ns
        } else {
            interval_ns(s.last_version, s.last_interval)
        };
        Some((
            deadline_ns(
                w.version,
                w.priority,
                interval,
                p.adverts,
                s.last_ns,
                s.last_priority,
            ),
            alarm_ns(
                w.version,
                w.priority,
                interval,
                p.adverts,
                s.last_ns,
                s.last_priority,
                p.lead_ns,
            ),
        ))
    }

    fn arm(&mut self, key: VridKey, reported: bool) {
        let local = self.watch.get(&key).map(|w| w.priority);
        if self.timers.contains_key(&key) && !reported && self.armed_for.get(&key) == local.as_ref()
        {
            return;
        }
        if let Some((_, alarm)) = self.deadline(&key) {
            self.timers.insert(key, alarm);
            if let Some(p) = local {
                self.armed_for.insert(key, p);
            }
        }
    }

    /// The earliest armed down timer's expiry.
    pub fn next_timer(&self) -> Option<u64> {
        self.timers.values().min().copied()
    }

    /// Runs the callback of every timer expired at `now`: re-arm while adverts arrive,
    /// go quiet for a Master, otherwise one silence record (lost if the ring is full).
    pub fn fire(&mut self, now: u64) {
        let expired: Vec<VridKey> = self
            .timers
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            self.timers.remove(&key);
            let master = self
                .watch
                .get(&key)
                .is_some_and(|w| w.flags & validate::WATCH_REPORT_ALL != 0);
            let Some((d, alarm)) = self.deadline(&key) else {
                continue;
            };
            if master {
                continue;
            }
            if now < alarm {
                self.timers.insert(key, alarm);
                if let Some(w) = self.watch.get(&key) {
                    self.armed_for.insert(key, w.priority);
                }
                continue;
            }
            let Some(s) = self.stats.get(&key) else {
                continue;
            };
            if self.ring.len() >= self.capacity {
                // As the program: try again shortly.
                self.iface.entry(key.ifindex).or_default().ring_full += 1;
                self.timers.insert(key, now + RETRY_NS);
                continue;
            }
            let mut e = AdvertEvent::zeroed();
            e.ts_ns = s.last_ns;
            // The model's timer runs exactly on time: it writes at `now`.
            e.first_ns = now;
            e.ifindex = key.ifindex;
            e.family = key.family;
            e.ttl = 255;
            e.version = s.last_version;
            e.kind = 1;
            e.vrid = key.vrid;
            e.priority = s.last_priority;
            e.addr_count = s.last_addr_count;
            e.interval = s.last_interval;
            e.event = EVENT_SILENCE;
            e.addr_digest = s.last_digest;
            e.src = s.last_src;
            e.deadline_ns = d;
            self.ring.push_back(e);
        }
    }

    /// The program on one frame, start to end.
    pub fn receive(&mut self, ifindex: u32, ts: u64, frame: &[u8]) {
        if let Some(f) = self.begin(ifindex, ts, frame) {
            self.finish(f);
        }
    }

    /// Two CPUs on two frames of the same moment: both read the state before either
    /// writes it back.
    pub fn receive_racing(&mut self, ifindex: u32, a: (u64, &[u8]), b: (u64, &[u8])) {
        let fa = self.begin(ifindex, a.0, a.1);
        let fb = self.begin(ifindex, b.0, b.1);
        if let Some(f) = fa {
            self.finish(f);
        }
        if let Some(f) = fb {
            self.finish(f);
        }
    }

    /// Everything in the ring, oldest first.
    pub fn drain(&mut self) -> Vec<Datapath> {
        self.ring.drain(..).map(Datapath::Event).collect()
    }
}
