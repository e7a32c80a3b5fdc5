//! The endpoint with the kernel keeping a Backup's down timer: no wake-up asked for while
//! the kernel's timer runs, a silence handled as the agent's own timer firing at the
//! kernel's deadline (the router judges), and the deadline handed back whenever the
//! kernel's timer cannot be trusted to run.

use std::net::IpAddr;
use std::time::Duration;

use vigil_common::event::{EVENT_ADVERT, EVENT_SILENCE, EVENT_TIMER_ERROR, FAMILY_V4};

use super::*;

const MS: u64 = 1_000_000;
/// Master_Down_Interval at priority 100 with 1 s adverts: 3 s + 156/256 s.
const MDI: u64 = 3_609_375_000;

fn key() -> VridKey {
    key_of(2, "192.0.2.12".parse().expect("literal"), 51)
}

/// A Backup of priority 100 (1 s adverts), started at 1 s; the kernel keeps its down
/// timer for adverts from `since` on, when given.
fn backup(since: Option<u64>) -> Endpoint {
    let vip: IpAddr = "192.0.2.100".parse().expect("literal");
    let cfg = RouterConfig::new(51, Version::V3, 100, vec![vip]);
    let mut ep = Endpoint::new();
    ep.add(key(), cfg, "192.0.2.12".parse().expect("literal"), false)
        .expect("a free key");
    let now = Instant::from_nanos(1000 * MS);
    ep.handle(now, EndpointInput::Startup { key: key() });
    if let Some(since_ns) = since {
        ep.handle(
            now,
            EndpointInput::KernelTimer {
                key: key(),
                since_ns,
            },
        );
    }
    while ep.poll_action().is_some() {}
    ep
}

/// A record of kind `event` from 192.0.2.11 at priority 150, 1 s interval.
fn record(event: u8, ts_ns: u64, deadline_ns: u64) -> AdvertEvent {
    let mut e = AdvertEvent::zeroed();
    e.ts_ns = ts_ns;
    e.ifindex = 2;
    e.family = FAMILY_V4;
    e.ttl = 255;
    e.version = 3;
    e.kind = 1;
    e.vrid = 51;
    e.priority = 150;
    e.addr_count = 1;
    e.interval = 100;
    e.event = event;
    e.src[..4].copy_from_slice(&[192, 0, 2, 11]);
    e.deadline_ns = deadline_ns;
    e
}

fn feed(ep: &mut Endpoint, e: AdvertEvent) {
    let now = Instant::from_nanos(e.ts_ns.max(e.deadline_ns));
    ep.handle(now, EndpointInput::Datapath(Datapath::Event(e)));
}

fn took_over_at(ep: &mut Endpoint) -> Option<Instant> {
    let mut at = None;
    while let Some((_, a)) = ep.poll_action() {
        if let EndpointAction::Router(Action::StateChanged(t)) = a
            && t.to == State::Master
        {
            at = Some(t.at);
        }
    }
    at
}

#[test]
fn a_backup_whose_timer_the_kernel_keeps_asks_for_no_wake_up() {
    let t = 1100 * MS;
    let mut kept = backup(Some(0));
    feed(&mut kept, record(EVENT_ADVERT, t, 0));
    assert_eq!(kept.poll_timeout(), None);
    assert!(kept.kernel_timer(&key()).armed);
    // Without kernel timers the agent wakes at the deadline itself.
    let mut own = backup(None);
    feed(&mut own, record(EVENT_ADVERT, t, 0));
    assert_eq!(own.poll_timeout(), Some(Instant::from_nanos(t + MDI)));
    assert!(!own.kernel_timer(&key()).armed);
}

#[test]
fn an_advert_before_the_kernel_had_the_parameters_arms_nothing() {
    let mut ep = backup(Some(2000 * MS));
    feed(&mut ep, record(EVENT_ADVERT, 1100 * MS, 0));
    assert_eq!(
        ep.poll_timeout(),
        Some(Instant::from_nanos(1100 * MS + MDI))
    );
}

#[test]
fn a_silence_takes_over_at_the_kernels_deadline_and_the_router_decides() {
    let mut ep = backup(Some(0));
    let t = 1100 * MS;
    feed(&mut ep, record(EVENT_ADVERT, t, 0));
    while ep.poll_action().is_some() {}
    feed(&mut ep, record(EVENT_SILENCE, t, t + MDI));
    assert_eq!(took_over_at(&mut ep), Some(Instant::from_nanos(t + MDI)));
    assert_eq!(ep.kernel_timer(&key()).silences, 1);
    assert_eq!(
        ep.router(&key()).map(VirtualRouter::state),
        Some(State::Master)
    );
}

#[test]
fn the_takeovers_advert_is_next_after_the_transition() {
    let mut ep = backup(Some(0));
    let t = 1100 * MS;
    feed(&mut ep, record(EVENT_ADVERT, t, 0));
    while ep.poll_action().is_some() {}
    feed(&mut ep, record(EVENT_SILENCE, t, t + MDI));
    // Nothing stands before the transition to Master; the advert is right behind it,
    // so the daemon can send it before it logs the transition.
    assert_eq!(ep.next_advert(&key()), None);
    match ep.poll_action() {
        Some((k, EndpointAction::Router(Action::StateChanged(tr)))) => {
            assert_eq!(k, key());
            assert_eq!(tr.to, State::Master);
        }
        other => panic!("expected the transition first, got {other:?}"),
    }
    assert_eq!(ep.next_advert(&key()), Some(100));
    let other = key_of(2, "192.0.2.12".parse().expect("literal"), 52);
    assert_eq!(ep.next_advert(&other), None);
    assert!(matches!(
        ep.poll_action(),
        Some((
            _,
            EndpointAction::Router(Action::SendAdvert { priority: 100 })
        ))
    ));
    assert_eq!(ep.next_advert(&key()), None);
}

#[test]
fn a_silence_the_router_finds_early_hands_the_deadline_back() {
    let mut ep = backup(Some(0));
    let t = 1100 * MS;
    feed(&mut ep, record(EVENT_ADVERT, t, 0));
    while ep.poll_action().is_some() {}
    // A deadline the router does not agree with: it stays Backup, and the agent's own
    // timer keeps the real deadline.
    feed(&mut ep, record(EVENT_SILENCE, t, t + MDI - MS));
    assert_eq!(took_over_at(&mut ep), None);
    assert_eq!(ep.poll_timeout(), Some(Instant::from_nanos(t + MDI)));
    assert!(!ep.kernel_timer(&key()).armed);
}

#[test]
fn a_stale_silence_after_a_newer_report_is_ignored() {
    let mut ep = backup(Some(0));
    feed(&mut ep, record(EVENT_ADVERT, 1100 * MS, 0));
    feed(&mut ep, record(EVENT_ADVERT, 5000 * MS, 0));
    while ep.poll_action().is_some() {}
    // Decided by the kernel before the advert at 5 s armed the timer again.
    feed(&mut ep, record(EVENT_SILENCE, 1100 * MS, 1100 * MS + MDI));
    assert_eq!(took_over_at(&mut ep), None);
    assert!(ep.kernel_timer(&key()).armed);
    assert_eq!(ep.kernel_timer(&key()).silences, 0);
}

#[test]
fn a_timer_the_kernel_could_not_arm_hands_the_deadline_back() {
    let mut ep = backup(Some(0));
    let t = 1100 * MS;
    feed(&mut ep, record(EVENT_ADVERT, t, 0));
    feed(&mut ep, record(EVENT_TIMER_ERROR, t, t + MDI));
    assert_eq!(ep.poll_timeout(), Some(Instant::from_nanos(t + MDI)));
}

#[test]
fn an_armed_timer_read_at_the_agents_timeout_hands_the_deadline_to_the_kernel() {
    // Started Backup: no report yet, so the agent keeps the start-up deadline.
    let mut ep = backup(Some(0));
    let first = ep.poll_timeout().expect("a Backup has a down deadline");
    // Adverts arrived quietly (the kernel armed its timer); at the deadline the agent
    // reads the state and the armed timer.
    let mut stats = VridStats::default();
    let last = first.as_nanos() - 100 * MS;
    vigil_common::suppress::commit(
        &mut stats,
        &vigil_common::validate::Advert {
            family: FAMILY_V4,
            ttl: 255,
            version: 3,
            kind: 1,
            vrid: 51,
            priority: 150,
            addr_count: 1,
            interval: 100,
            src: [192, 0, 2, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ..Default::default()
        },
        last,
        0,
        Some(0),
    );
    ep.handle(
        first,
        EndpointInput::KernelState {
            key: key(),
            stats,
            timer_armed: Some(true),
        },
    );
    ep.handle(first, EndpointInput::Timeout);
    assert_eq!(took_over_at(&mut ep), None);
    assert_eq!(ep.poll_timeout(), None, "the kernel keeps the deadline now");
    // Not armed: the agent keeps it.
    let mut ep = backup(Some(0));
    ep.handle(
        first,
        EndpointInput::KernelState {
            key: key(),
            stats,
            timer_armed: Some(false),
        },
    );
    ep.handle(first, EndpointInput::Timeout);
    assert_eq!(
        ep.poll_timeout(),
        Some(Instant::from_nanos(last) + Duration::from_nanos(MDI))
    );
}

/// The kernel's silence event found the ring full: the program tries again a moment
/// later instead of losing the one wake-up (the agent runs no timer of its own while the
/// kernel keeps the deadline), and the Backup takes over once the ring has room.
#[test]
fn a_silence_lost_to_a_full_ring_is_written_again() {
    use crate::vrrp::kernel_model::KernelModel;
    use crate::vrrp::wire::WireAdvert;
    let vip: IpAddr = "192.0.2.100".parse().expect("literal");
    let mut ep = Endpoint::new();
    let cfg = RouterConfig::new(51, Version::V3, 100, vec![vip]);
    ep.add(key(), cfg, "192.0.2.12".parse().expect("literal"), false)
        .expect("a free key");
    let start = Instant::from_nanos(1000 * MS);
    ep.handle(start, EndpointInput::Startup { key: key() });
    ep.handle(
        start,
        EndpointInput::KernelTimer {
            key: key(),
            since_ns: 0,
        },
    );
    let mut kernel = KernelModel::new(1);
    kernel.down.insert(
        key(),
        vigil_common::DownParams {
            adverts: 3,
            ..Default::default()
        },
    );
    let apply = |ep: &mut Endpoint, kernel: &mut KernelModel| {
        while let Some((k, a)) = ep.poll_action() {
            kernel.apply(k, &a);
        }
    };
    apply(&mut ep, &mut kernel);
    let master: IpAddr = "192.0.2.11".parse().expect("literal");
    let frame = WireAdvert::v3(master, 51, 150, 100, vec![vip]).frame();
    let t = 1100 * MS;
    kernel.receive(2, t, &frame);
    for r in kernel.drain() {
        ep.handle(Instant::from_nanos(t), EndpointInput::Datapath(r));
    }
    apply(&mut ep, &mut kernel);
    assert_eq!(ep.poll_timeout(), None, "the kernel keeps the deadline");
    // The agent falls behind: the ring is full when the timer fires.
    kernel.capacity = 0;
    let due = kernel.next_timer().expect("armed by the reported advert");
    assert_eq!(due, t + MDI);
    kernel.fire(due);
    assert!(kernel.drain().is_empty());
    let retry = kernel.next_timer().expect("the timer tries again");
    assert_eq!(retry, due + vigil_common::down::RETRY_NS);
    kernel.capacity = 1;
    kernel.fire(retry);
    for r in kernel.drain() {
        ep.handle(Instant::from_nanos(retry), EndpointInput::Datapath(r));
    }
    assert_eq!(took_over_at(&mut ep), Some(Instant::from_nanos(t + MDI)));
}

/// A Backup whose kernel model keeps its down timer with the daemon's alarm lead, after
/// one reported advert from the Master at `t`; returns it, the model and the frame.
fn backup_with_alarm(t: u64) -> (Endpoint, crate::vrrp::kernel_model::KernelModel, Vec<u8>) {
    use crate::vrrp::kernel_model::KernelModel;
    use crate::vrrp::wire::WireAdvert;
    let vip: IpAddr = "192.0.2.100".parse().expect("literal");
    let mut ep = Endpoint::new();
    let cfg = RouterConfig::new(51, Version::V3, 100, vec![vip]);
    ep.add(key(), cfg, "192.0.2.12".parse().expect("literal"), false)
        .expect("a free key");
    let start = Instant::from_nanos(1000 * MS);
    ep.handle(start, EndpointInput::Startup { key: key() });
    ep.handle(
        start,
        EndpointInput::KernelTimer {
            key: key(),
            since_ns: 0,
        },
    );
    let mut kernel = KernelModel::new(8);
    kernel.down.insert(
        key(),
        vigil_common::DownParams {
            adverts: 3,
            lead_ns: vigil_common::down::ALARM_LEAD_NS,
            interval_ns: 0,
        },
    );
    // The watch entry, as the daemon writes it.
    while let Some((k, a)) = ep.poll_action() {
        kernel.apply(k, &a);
    }
    let master: IpAddr = "192.0.2.11".parse().expect("literal");
    let frame = WireAdvert::v3(master, 51, 150, 100, vec![vip]).frame();
    kernel.receive(2, t, &frame);
    for r in kernel.drain() {
        ep.handle(Instant::from_nanos(t), EndpointInput::Datapath(r));
    }
    while let Some((k, a)) = ep.poll_action() {
        kernel.apply(k, &a);
    }
    assert_eq!(ep.poll_timeout(), None, "the kernel keeps the deadline");
    (ep, kernel, frame)
}

/// What the daemon does at a Backup's deadline: read the VRID's state and timer, then
/// the timeout.
fn at_deadline(ep: &mut Endpoint, kernel: &crate::vrrp::kernel_model::KernelModel, now: u64) {
    let now = Instant::from_nanos(now);
    for r in ep.due(now) {
        let stats = kernel.stats.get(&r).copied().expect("watched");
        ep.handle(
            now,
            EndpointInput::KernelState {
                key: r,
                stats,
                timer_armed: Some(kernel.timers.contains_key(&r)),
            },
        );
    }
    ep.handle(now, EndpointInput::Timeout);
}

/// The kernel's timer fires a little ahead of the deadline so that the agent is awake
/// for it; the router still takes over at the deadline, not at the alarm.
#[test]
fn an_alarm_ahead_of_the_deadline_takes_over_at_the_deadline() {
    let t = 1100 * MS;
    let (mut ep, mut kernel, _) = backup_with_alarm(t);
    let alarm = kernel.next_timer().expect("armed by the report");
    assert_eq!(
        alarm,
        t + MDI - u64::from(vigil_common::down::ALARM_LEAD_NS)
    );
    kernel.fire(alarm);
    let events = kernel.drain();
    assert_eq!(events.len(), 1, "one silence event at the alarm");
    for r in events {
        ep.handle(Instant::from_nanos(alarm), EndpointInput::Datapath(r));
    }
    assert_eq!(took_over_at(&mut ep), None, "not before the deadline");
    assert!(!ep.kernel_timer(&key()).armed);
    // The agent's own timer keeps the deadline until it comes.
    assert_eq!(ep.poll_timeout(), Some(Instant::from_nanos(t + MDI)));
    at_deadline(&mut ep, &kernel, t + MDI);
    assert_eq!(took_over_at(&mut ep), Some(Instant::from_nanos(t + MDI)));
}

/// The Master speaks between the alarm and the deadline: the Backup stays, and the
/// kernel's timer, re-armed by that advert, keeps the deadline again.
#[test]
fn a_master_heard_after_the_alarm_keeps_the_backup() {
    let t = 1100 * MS;
    let (mut ep, mut kernel, frame) = backup_with_alarm(t);
    let alarm = kernel.next_timer().expect("armed by the report");
    kernel.fire(alarm);
    for r in kernel.drain() {
        ep.handle(Instant::from_nanos(alarm), EndpointInput::Datapath(r));
    }
    // A quiet repeat: the program re-arms its idle timer, reports nothing.
    let late = t + MDI - MS;
    kernel.receive(2, late, &frame);
    assert!(kernel.drain().is_empty(), "a repeat is not reported");
    at_deadline(&mut ep, &kernel, t + MDI);
    assert_eq!(took_over_at(&mut ep), None);
    assert_eq!(
        ep.router(&key()).map(VirtualRouter::state),
        Some(State::Backup)
    );
    assert_eq!(
        ep.poll_timeout(),
        None,
        "the kernel keeps the deadline again"
    );
    assert_eq!(
        kernel.next_timer(),
        Some(late + MDI - u64::from(vigil_common::down::ALARM_LEAD_NS))
    );
}

/// The VRID's state after a quiet advert from the Master at `last` (ns).
fn state_after(last: u64) -> VridStats {
    let mut stats = VridStats::default();
    vigil_common::suppress::commit(
        &mut stats,
        &vigil_common::validate::Advert {
            family: FAMILY_V4,
            ttl: 255,
            version: 3,
            kind: 1,
            vrid: 51,
            priority: 150,
            addr_count: 1,
            interval: 100,
            src: [192, 0, 2, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ..Default::default()
        },
        last,
        0,
        Some(0),
    );
    stats
}

/// The agent keeps the deadline (no kernel timers) and wakes a little ahead of it: a
/// Master heard since moves the deadline, and nothing is judged early.
#[test]
fn a_refresh_ahead_of_the_deadline_moves_it_for_a_live_master() {
    let mut ep = backup(None);
    let t = 1100 * MS;
    feed(&mut ep, record(EVENT_ADVERT, t, 0));
    while ep.poll_action().is_some() {}
    let early = Instant::from_nanos(t + MDI - MS);
    let last = t + 2000 * MS;
    ep.handle(
        early,
        EndpointInput::KernelState {
            key: key(),
            stats: state_after(last),
            timer_armed: Some(false),
        },
    );
    ep.handle(early, EndpointInput::Refresh { key: key() });
    assert_eq!(took_over_at(&mut ep), None);
    assert_eq!(ep.poll_timeout(), Some(Instant::from_nanos(last + MDI)));
    // Silent since: a refresh changes nothing, the deadline stands for the timeout.
    let mut ep = backup(None);
    feed(&mut ep, record(EVENT_ADVERT, t, 0));
    while ep.poll_action().is_some() {}
    ep.handle(
        early,
        EndpointInput::KernelState {
            key: key(),
            stats: state_after(t),
            timer_armed: Some(false),
        },
    );
    ep.handle(early, EndpointInput::Refresh { key: key() });
    assert_eq!(took_over_at(&mut ep), None, "never before the deadline");
    assert_eq!(ep.poll_timeout(), Some(Instant::from_nanos(t + MDI)));
}

/// An early refresh that finds the kernel's timer armed from the live Master's adverts
/// hands the deadline back to the kernel, as a timeout would: the agent must not go on
/// waking for a deadline the kernel keeps.
#[test]
fn a_refresh_that_finds_the_kernels_timer_armed_hands_the_deadline_back() {
    let mut ep = backup(Some(0));
    let first = ep.poll_timeout().expect("a Backup has a down deadline");
    let early = Instant::from_nanos(first.as_nanos() - MS);
    ep.handle(
        early,
        EndpointInput::KernelState {
            key: key(),
            stats: state_after(first.as_nanos() - 100 * MS),
            timer_armed: Some(true),
        },
    );
    ep.handle(early, EndpointInput::Refresh { key: key() });
    assert_eq!(took_over_at(&mut ep), None);
    assert_eq!(ep.poll_timeout(), None, "the kernel keeps the deadline now");
}
