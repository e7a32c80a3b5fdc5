use std::net::IpAddr;
use std::time::Duration;

use vigil_common::validate::{WATCH_DROP_LOWER, WATCH_REPORT_ALL};

use super::*;
use crate::vrrp::kernel_model::KernelModel;
use crate::vrrp::wire::WireAdvert;

const IFINDEX: u32 = 2;
const MS: u64 = 1_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal address")
}

fn vip() -> IpAddr {
    ip("192.0.2.100")
}

fn local() -> IpAddr {
    ip("192.0.2.12")
}

fn key() -> VridKey {
    key_of(IFINDEX, local(), 51)
}

/// An endpoint with one router of `priority` at 100 ms adverts, started at 1 s.
fn endpoint(priority: u8, preempt_delay: Duration) -> Endpoint {
    let mut cfg = RouterConfig::new(51, Version::V3, priority, vec![vip()]);
    cfg.advert_interval = Duration::from_millis(100);
    cfg.preempt_delay = preempt_delay;
    let mut ep = Endpoint::new();
    ep.add(key(), cfg, local(), false).expect("a free key");
    ep.handle(
        Instant::from_nanos(1000 * MS),
        EndpointInput::Startup { key: key() },
    );
    ep
}

fn advert_from(src: &str, priority: u8) -> Vec<u8> {
    WireAdvert::v3(ip(src), 51, priority, 10, vec![vip()]).frame()
}

/// Which datapath carries the frames to the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// Raw frames, judged by the endpoint.
    Raw,
    /// The XDP program (its model), with a ring of this many records.
    Xdp(usize),
}

/// A world of one endpoint, the datapath in front of it, and peers whose frames arrive
/// at given times; records every action.
struct World {
    ep: Endpoint,
    path: Path,
    kernel: KernelModel,
    actions: Vec<(VridKey, EndpointAction)>,
    /// When the agent's own timer woke it.
    wakeups: Vec<u64>,
    /// When the agent read a record from the ring (each one a wake-up of the daemon).
    records: Vec<u64>,
}

impl World {
    fn new(ep: Endpoint, path: Path) -> Self {
        let mut w = World {
            ep,
            path,
            kernel: KernelModel::new(match path {
                Path::Xdp(n) => n,
                Path::Raw => 0,
            }),
            actions: Vec::new(),
            wakeups: Vec::new(),
            records: Vec::new(),
        };
        w.collect();
        w
    }

    /// The kernel keeps the down timer (XDP only), with `down_timer_adverts` 3.
    fn with_kernel_timers(mut self) -> Self {
        self.kernel.down.insert(
            key(),
            vigil_common::DownParams {
                adverts: 3,
                ..Default::default()
            },
        );
        self.ep.handle(
            Instant::ZERO,
            EndpointInput::KernelTimer {
                key: key(),
                since_ns: 0,
            },
        );
        self
    }

    fn collect(&mut self) {
        while let Some((k, a)) = self.ep.poll_action() {
            if let Path::Xdp(_) = self.path {
                self.kernel.apply(k, &a);
            }
            self.actions.push((k, a));
        }
    }

    fn arrive(&mut self, ts: u64, frame: Vec<u8>) {
        let now = Instant::from_nanos(ts);
        match self.path {
            Path::Raw => self.ep.handle(
                now,
                EndpointInput::Datapath(Datapath::Frame {
                    ifindex: IFINDEX,
                    ts_ns: ts,
                    bytes: frame,
                }),
            ),
            Path::Xdp(_) => {
                self.kernel.receive(IFINDEX, ts, &frame);
                self.read_ring(now);
            }
        }
        self.collect();
    }

    fn read_ring(&mut self, now: Instant) {
        for r in self.kernel.drain() {
            self.records.push(now.as_nanos());
            self.ep.handle(now, EndpointInput::Datapath(r));
        }
    }

    /// What the daemon does when the timer fires.
    fn timer(&mut self, now: Instant) {
        self.wakeups.push(now.as_nanos());
        if let Path::Xdp(_) = self.path {
            self.read_ring(now);
            for key in self.ep.due(now) {
                if let Some(stats) = self.kernel.stats.get(&key).copied() {
                    self.ep.handle(
                        now,
                        EndpointInput::KernelState {
                            key,
                            stats,
                            timer_armed: Some(self.kernel.timers.contains_key(&key)),
                        },
                    );
                }
            }
        }
        self.ep.handle(now, EndpointInput::Timeout);
        self.collect();
    }

    /// Runs until `end`, with `frames` (arrival ns, bytes) arriving on the way.
    fn run(&mut self, end: u64, frames: &mut dyn Iterator<Item = (u64, Vec<u8>)>) {
        let mut next = frames.next();
        loop {
            let timer = self.ep.poll_timeout().map(Instant::as_nanos);
            let kernel = self.kernel.next_timer();
            // The kernel's timer first when it is due no later than the agent's.
            if let Some(k) = kernel
                && k <= end
                && timer.is_none_or(|t| k <= t)
                && next.as_ref().is_none_or(|(at, _)| k < *at)
            {
                self.kernel.fire(k);
                self.read_ring(Instant::from_nanos(k));
                self.collect();
                continue;
            }
            match (next.as_ref(), timer) {
                (Some((at, _)), t) if *at <= end && t.is_none_or(|t| *at <= t) => {
                    let (at, f) = next.take().expect("matched Some");
                    self.arrive(at, f);
                    next = frames.next();
                }
                (_, Some(t)) if t <= end => self.timer(Instant::from_nanos(t)),
                _ => break,
            }
        }
    }

    fn state(&self) -> State {
        self.ep.router(&key()).expect("router").state()
    }

    fn became_master_at(&self) -> Option<u64> {
        self.actions.iter().find_map(|(_, a)| match a {
            EndpointAction::Router(Action::StateChanged(t)) if t.to == State::Master => {
                Some(t.at.as_nanos())
            }
            _ => None,
        })
    }
}

/// Adverts from `src` at `priority` every 100 ms from `from` until `to`.
fn every_100ms(
    src: &'static str,
    priority: u8,
    from: u64,
    to: u64,
) -> impl Iterator<Item = (u64, Vec<u8>)> {
    (0..)
        .map(move |i| from + i * 100 * MS)
        .take_while(move |t| *t < to)
        .map(move |t| (t, advert_from(src, priority)))
}

/// A Backup of priority 150 with a 5 s preempt delay, started while a priority-100
/// Master sends every 100 ms, waits the delay before it preempts, on either datapath
/// (keepalived's preempt_delay); the kernel must not drop the lower-priority adverts the
/// delay depends on.
#[test]
fn preempt_delay_holds_while_a_lower_priority_master_is_heard() {
    for path in [Path::Raw, Path::Xdp(64)] {
        let mut w = World::new(endpoint(150, Duration::from_secs(5)), path);
        w.run(
            12_000 * MS,
            &mut every_100ms("192.0.2.11", 100, 1050 * MS, 20_000 * MS),
        );
        let at = w.became_master_at().expect("preempts in the end");
        // The delay starts at startup (1 s); the last advert accepted before it ends
        // arrives at 5.95 s, and the takeover comes one Master_Down_Interval later
        // (3 × 100 ms + (256 - 150) × 100 ms / 256).
        let mdi = 300 * MS + 106 * 100 * MS / 256;
        assert_eq!(at, 5950 * MS + mdi, "{path:?}: took over at {at} ns");
        assert_eq!(w.state(), State::Master, "{path:?}");
    }
}

#[test]
fn the_datapath_drops_lower_priorities_only_while_the_router_would() {
    let mut w = World::new(endpoint(150, Duration::from_secs(5)), Path::Xdp(64));
    let watch = |w: &World| w.kernel.watch[&key()];
    assert_eq!(
        watch(&w).flags & WATCH_DROP_LOWER,
        0,
        "preempt delay running"
    );
    assert_eq!(watch(&w).priority, 150);
    w.run(
        6_000 * MS,
        &mut every_100ms("192.0.2.11", 100, 1050 * MS, 20_000 * MS),
    );
    assert_eq!(w.state(), State::Backup);
    assert_ne!(watch(&w).flags & WATCH_DROP_LOWER, 0, "delay over");
    w.run(7_000 * MS, &mut std::iter::empty());
    assert_eq!(w.state(), State::Master);
    assert_eq!(
        watch(&w).flags & (WATCH_DROP_LOWER | WATCH_REPORT_ALL),
        WATCH_REPORT_ALL
    );
    // The local priority follows tracking.
    let now = Instant::from_nanos(7_000 * MS);
    w.ep.handle(
        now,
        EndpointInput::PriorityChanged {
            key: key(),
            priority: 120,
        },
    );
    w.collect();
    assert_eq!(watch(&w).priority, 120);
}

#[test]
fn without_a_preempt_delay_lower_priorities_die_in_the_kernel() {
    let mut w = World::new(endpoint(150, Duration::ZERO), Path::Xdp(64));
    assert_ne!(w.kernel.watch[&key()].flags & WATCH_DROP_LOWER, 0);
    let mut master = every_100ms("192.0.2.11", 100, 1050 * MS, 3_000 * MS);
    w.run(1_300 * MS, &mut master);
    let s = w.kernel.stats[&key()];
    assert_eq!(
        (s.received, s.ignored, s.reported, s.last_ns),
        (3, 3, 0, 0),
        "{s:?}"
    );
    w.run(3_000 * MS, &mut master);
    let mdi = 300 * MS + 106 * 100 * MS / 256;
    assert_eq!(w.became_master_at(), Some(1000 * MS + mdi));
}

/// A Backup that preempts a lower-priority Master whose adverts the kernel dropped says
/// so, not "no master heard".
#[test]
fn a_backup_preempting_a_master_the_kernel_silenced_names_it_in_the_reason() {
    for path in [Path::Raw, Path::Xdp(64)] {
        let mut w = World::new(endpoint(150, Duration::ZERO), path);
        w.run(
            3_000 * MS,
            &mut every_100ms("192.0.2.11", 100, 1050 * MS, 3_000 * MS),
        );
        let reason = w.actions.iter().find_map(|(_, a)| match a {
            EndpointAction::Router(Action::StateChanged(t)) if t.to == State::Master => {
                Some(t.reason.clone())
            }
            _ => None,
        });
        assert_eq!(
            reason,
            Some(crate::vrrp::Reason::PreemptLowerPriority {
                master: ip("192.0.2.11"),
                priority: 100,
                ours: 150
            }),
            "{path:?}"
        );
    }
}

/// A change event lost to a full ring must not make a Backup take over from a live
/// Master: the refeed comes from the kernel's own record of the last advert.
#[test]
fn a_lost_change_event_never_makes_a_backup_overthrow_a_live_master() {
    let mut w = World::new(endpoint(100, Duration::ZERO), Path::Xdp(1));
    // Master A (priority 200) is heard.
    w.run(
        1500 * MS,
        &mut every_100ms("192.0.2.11", 200, 1050 * MS, 1450 * MS),
    );
    assert_eq!(w.state(), State::Backup);
    // A stops; B (priority 200) takes over, and its first advert's report finds the
    // ring full (the agent is slow): one record is stuck in it.
    w.kernel.ring.push_back(AdvertEvent::zeroed());
    let first_b = advert_from("192.0.2.13", 200);
    w.kernel.receive(IFINDEX, 1500 * MS, &first_b);
    assert_eq!(w.kernel.stats[&key()].lost, 1);
    w.kernel.ring.clear();
    // B goes on; the ring has room again.
    w.run(
        5_000 * MS,
        &mut every_100ms("192.0.2.13", 200, 1600 * MS, 5_000 * MS),
    );
    assert_eq!(w.state(), State::Backup, "took over from a live master");
    assert_eq!(w.became_master_at(), None);
    assert_eq!(
        w.ep.router(&key()).and_then(|r| r.master()),
        Some(ip("192.0.2.13"))
    );
}

/// Two CPUs judging adverts of the old and the new master at once may leave either in
/// the map; whichever it is, the Backup follows the live master.
#[test]
fn racing_cpus_never_make_a_backup_overthrow_a_live_master() {
    let mut w = World::new(endpoint(100, Duration::ZERO), Path::Xdp(64));
    w.run(
        1500 * MS,
        &mut every_100ms("192.0.2.11", 200, 1050 * MS, 1450 * MS),
    );
    let (a, b) = (
        advert_from("192.0.2.11", 200),
        advert_from("192.0.2.13", 200),
    );
    w.kernel
        .receive_racing(IFINDEX, (1500 * MS, &b), (1500 * MS, &a));
    w.read_ring(Instant::from_nanos(1500 * MS));
    w.collect();
    w.run(
        5_000 * MS,
        &mut every_100ms("192.0.2.13", 200, 1600 * MS, 5_000 * MS),
    );
    assert_eq!(w.became_master_at(), None);
}

#[test]
fn a_master_that_answers_a_lower_priority_master_reports_a_rival() {
    let mut w = World::new(endpoint(150, Duration::ZERO), Path::Raw);
    w.run(1_500 * MS, &mut std::iter::empty());
    assert_eq!(w.state(), State::Master);
    w.arrive(1_600 * MS, advert_from("192.0.2.11", 100));
    assert!(
        w.actions.iter().any(|(_, a)| matches!(
            a,
            EndpointAction::Rival { source, priority: 100, .. } if *source == ip("192.0.2.11")
        )),
        "{:?}",
        w.actions
    );
}

#[test]
fn reconfigured_priority_is_advertised_without_a_goodbye_or_transition() {
    let mut w = World::new(endpoint(150, Duration::ZERO), Path::Raw);
    w.run(1_500 * MS, &mut std::iter::empty());
    assert_eq!(w.state(), State::Master);
    w.actions.clear();
    let mut cfg = w.ep.router(&key()).expect("router").config().clone();
    cfg.priority = 120;
    w.ep.handle(
        Instant::from_nanos(1_550 * MS),
        EndpointInput::Reconfigure {
            key: key(),
            config: cfg,
        },
    );
    w.collect();
    let router: Vec<&Action> = w
        .actions
        .iter()
        .filter_map(|(_, a)| match a {
            EndpointAction::Router(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(router, vec![&Action::SendAdvert { priority: 120 }]);
    assert_eq!(w.state(), State::Master);
    assert_eq!(w.ep.watch_entries()[0].1.priority, 120);
}

#[test]
fn a_second_router_on_the_same_key_is_refused() {
    let mut ep = endpoint(100, Duration::ZERO);
    let cfg = RouterConfig::new(51, Version::V3, 100, vec![vip()]);
    assert_eq!(
        ep.add(key(), cfg, local(), false),
        Err(AddError::Taken(key()))
    );
}

/// A tagged frame seen on the parent interface belongs to the VLAN's sub-interface: it
/// is never credited to the parent's virtual router of the same VRID.
#[test]
fn an_advert_on_a_vlan_is_never_credited_to_the_parents_vrid() {
    for path in [Path::Raw, Path::Xdp(64)] {
        let mut w = World::new(endpoint(100, Duration::ZERO), path);
        let mut tagged = (0..).map(|i| 1050 * MS + i * 100 * MS).map(|t| {
            let mut a = WireAdvert::v3(ip("192.0.2.11"), 51, 200, 10, vec![vip()]);
            a.vlan = Some(100);
            (t, a.frame())
        });
        w.run(3_000 * MS, &mut tagged);
        // It heard nobody: Master one Master_Down_Interval after startup.
        let mdi = 300 * MS + 156 * 100 * MS / 256;
        assert_eq!(w.became_master_at(), Some(1000 * MS + mdi), "{path:?}");
    }
}

/// With the kernel keeping the down timer, a Backup's agent is not woken while its
/// Master advertises (the kernel's timer re-arms itself), and takes over exactly one
/// Master_Down_Interval after the last advert, on the kernel's silence record.
#[test]
fn with_kernel_timers_a_backup_sleeps_while_the_master_lives_and_takes_over_on_time() {
    for kernel in [false, true] {
        let mut w = World::new(endpoint(100, Duration::ZERO), Path::Xdp(64));
        if kernel {
            w = w.with_kernel_timers();
        }
        let last = 1000 * MS + 99 * 100 * MS;
        w.run(
            last + 1000 * MS,
            &mut every_100ms("192.0.2.11", 150, 1000 * MS, last + MS),
        );
        // Master_Down_Interval at priority 100 with 100 ms adverts: 300 ms + 156/256 ×
        // 100 ms.
        let mdi = 360_937_500;
        assert_eq!(
            w.became_master_at(),
            Some(last + mdi),
            "kernel timers: {kernel}"
        );
        // Wake-ups of the agent's own timer while Backup (a Master wakes to advertise).
        let backup = w.wakeups.iter().filter(|t| **t < last + mdi).count();
        if kernel {
            // The silence record woke the agent; its own timer never did.
            assert_eq!(backup, 0, "agent wake-ups with the kernel's timer");
            assert_eq!(w.ep.kernel_timer(&key()).silences, 1);
        } else {
            assert!(
                backup >= 3,
                "only {backup} wake-ups of the agent's own timer"
            );
        }
    }
}

/// A late Master, whose adverts arrive up to 2.5 intervals apart (a busy machine), is as
/// quiet for a Backup's agent as a punctual one while the kernel keeps the down timer: no
/// record and no wake-up of its own timer until the real silence, which it takes over on
/// exactly one Master_Down_Interval after the last advert. Without kernel timers, the
/// agent's own timer keeps the deadline through the same gaps, and takes over on time.
#[test]
fn late_adverts_wake_no_backup_and_the_takeover_is_on_time() {
    // 100 ms adverts; every third one 250 ms after the one before it.
    let mut arrivals = vec![1000 * MS];
    for i in 0..60 {
        let gap = if i % 3 == 2 { 250 } else { 100 };
        arrivals.push(arrivals[i] + gap * MS);
    }
    let (first, last) = (arrivals[0], arrivals[arrivals.len() - 1]);
    // Master_Down_Interval at priority 100 with 100 ms adverts.
    let mdi = 360_937_500;
    for kernel in [false, true] {
        let mut w = World::new(endpoint(100, Duration::ZERO), Path::Xdp(64));
        if kernel {
            w = w.with_kernel_timers();
        }
        let mut frames = arrivals
            .iter()
            .map(|&t| (t, advert_from("192.0.2.11", 150)));
        w.run(last + 1000 * MS, &mut frames);
        assert_eq!(
            w.became_master_at(),
            Some(last + mdi),
            "kernel timers: {kernel}"
        );
        // Never Master before the real silence.
        let router = w.ep.router(&key()).expect("router");
        assert_eq!(
            router.counters().became_master,
            1,
            "kernel timers: {kernel}"
        );
        // After the first advert's report, what woke the agent before the takeover.
        let records = w
            .records
            .iter()
            .filter(|t| (first + 1..last + mdi).contains(*t));
        let own = w.wakeups.iter().filter(|t| **t < last + mdi).count();
        if kernel {
            assert_eq!(records.count(), 0, "records before the silence");
            assert_eq!(own, 0, "agent wake-ups with the kernel's timer");
            assert_eq!(w.ep.kernel_timer(&key()).silences, 1);
        } else {
            assert!(own >= 3, "only {own} wake-ups of the agent's own timer");
        }
    }
}

#[test]
fn many_masters_share_one_deadline_and_each_advertises_every_interval() {
    // 200 Masters on one interval: each advert round is one deadline, at which every
    // one of them sends exactly one advert, and the next deadline is one interval on.
    let mut ep = Endpoint::new();
    let interval = Duration::from_millis(10);
    let keys: Vec<VridKey> = (1..=200u8)
        .map(|vrid| {
            let k = key_of(IFINDEX, local(), vrid);
            let mut cfg = RouterConfig::new(vrid, Version::V3, 255, vec![vip()]);
            cfg.advert_interval = interval;
            ep.add(k, cfg, local(), false).expect("a free key");
            k
        })
        .collect();
    let start = Instant::from_nanos(1000 * MS);
    for &k in &keys {
        ep.handle(start, EndpointInput::Startup { key: k });
    }
    while ep.poll_action().is_some() {}
    let mut now = start;
    for round in 0..5 {
        let next = ep.poll_timeout().expect("Masters have an advert timer");
        assert_eq!(next, now + interval, "round {round}");
        assert_eq!(ep.due(next).len(), keys.len());
        now = next;
        ep.handle(now, EndpointInput::Timeout);
        let mut sent = Vec::new();
        while let Some((k, a)) = ep.poll_action() {
            match a {
                EndpointAction::Router(Action::SendAdvert { priority }) => {
                    assert_eq!(priority, 255);
                    sent.push(k);
                }
                other => panic!("a steady Master asked for {other:?}"),
            }
        }
        // One each, in key order.
        assert_eq!(sent, keys, "round {round}");
    }
}

/// A steady Master's Adver_Timer runs in the endpoint's hands between inputs: its adverts
/// go out at the times and priorities its own router's would, on time or late (RFC 5798
/// §6.4.3: the cadence is kept unless a whole interval late), and the router, handed
/// anything, is first given back the timer with every expiry counted.
#[test]
fn a_held_adver_timer_does_what_the_router_would() {
    let interval = Duration::from_millis(10);
    let mut cfg = RouterConfig::new(7, Version::V3, 255, vec![vip()]);
    cfg.advert_interval = interval;
    let k = key_of(IFINDEX, local(), 7);
    let mut ep = Endpoint::new();
    ep.add(k, cfg.clone(), local(), false).expect("a free key");
    let mut alone = VirtualRouter::new(cfg, local());
    let start = Instant::from_nanos(1000 * MS);
    ep.handle(start, EndpointInput::Startup { key: k });
    alone.handle(start, Input::Startup);
    while ep.poll_action().is_some() {}
    while alone.poll_action().is_some() {}
    // On time, then 25 ms late (a stalled agent), then on time again.
    let mut late = [0, 0, 0, 25, 0, 0, 0, 0].into_iter();
    let mut held = false;
    for round in 0..8 {
        let due = ep.poll_timeout().expect("a Master has an advert timer");
        assert_eq!(Some(due), alone.poll_timeout(), "round {round}");
        let now = due + Duration::from_millis(late.next().unwrap_or(0));
        ep.handle(now, EndpointInput::Timeout);
        alone.handle(now, Input::Timeout);
        let got: Vec<_> = std::iter::from_fn(|| ep.poll_action()).collect();
        let want: Vec<_> = std::iter::from_fn(|| alone.poll_action())
            .map(|a| (k, EndpointAction::Router(a)))
            .collect();
        assert_eq!(got, want, "round {round}");
        // The endpoint's router lags while its timer is held.
        let sent = ep.router(&k).map(|r| r.counters().adverts_sent);
        held |= sent < Some(alone.counters().adverts_sent);
    }
    assert!(held, "the steady Master's timer was never held");
    // Any input gives the timer back first: the counts and the deadline agree, and a new
    // priority is advertised at once.
    let now = ep.poll_timeout().expect("a Master has an advert timer") - Duration::from_millis(1);
    ep.handle(
        now,
        EndpointInput::PriorityChanged {
            key: k,
            priority: 200,
        },
    );
    alone.handle(now, Input::PriorityChanged(200));
    let router = ep.router(&k).expect("the router");
    assert_eq!(
        router.counters().adverts_sent,
        alone.counters().adverts_sent
    );
    assert_eq!(router.poll_timeout(), alone.poll_timeout());
    assert_eq!(ep.poll_timeout(), alone.poll_timeout());
    let adverts: Vec<_> = std::iter::from_fn(|| ep.poll_action())
        .filter_map(|(_, a)| match a {
            EndpointAction::Router(Action::SendAdvert { priority }) => Some(priority),
            _ => None,
        })
        .collect();
    assert_eq!(adverts, vec![200]);
}
