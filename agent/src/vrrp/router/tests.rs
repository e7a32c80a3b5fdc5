//! One test per rule of RFC 5798 §6.4 / RFC 3768 §6.4 (and keepalived's departures),
//! named after the rule.

use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::vrrp::packet::{Advertisement, Auth, Version};

const ME: &str = "192.0.2.11";
const VIP: &str = "192.0.2.100";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test literal is an address")
}

fn ms(n: u64) -> Instant {
    Instant::from_nanos(n * 1_000_000)
}

fn cfg(version: Version, priority: u8) -> RouterConfig {
    RouterConfig::new(51, version, priority, vec![ip(VIP)])
}

fn advert(version: Version, priority: u8, interval: Duration) -> Advertisement {
    Advertisement {
        version,
        vrid: 51,
        priority,
        interval,
        addresses: vec![ip(VIP)],
        auth: Auth::None,
    }
}

fn from(source: &str, advert: Advertisement) -> Input {
    Input::Advert {
        source: ip(source),
        advert,
    }
}

fn v3(priority: u8) -> Advertisement {
    advert(Version::V3, priority, Duration::from_secs(1))
}

fn drain(r: &mut VirtualRouter) -> Vec<Action> {
    std::iter::from_fn(|| r.poll_action()).collect()
}

/// The non-transition actions, for comparing effects.
fn effects(actions: &[Action]) -> Vec<Action> {
    actions
        .iter()
        .filter(|a| !matches!(a, Action::StateChanged(_)))
        .cloned()
        .collect()
}

fn transitions(actions: &[Action]) -> Vec<Transition> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StateChanged(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// A started router at t = 0, actions drained.
fn started(cfg: RouterConfig) -> VirtualRouter {
    let mut r = VirtualRouter::new(cfg, ip(ME));
    r.handle(Instant::ZERO, Input::Startup);
    drain(&mut r);
    r
}

/// A router that became Master by its down timer, actions drained; returns the time.
fn master(cfg: RouterConfig) -> (VirtualRouter, Instant) {
    let mut r = started(cfg);
    let at = r.poll_timeout().expect("a Backup has a down timer");
    r.handle(at, Input::Timeout);
    assert_eq!(r.state(), State::Master);
    drain(&mut r);
    (r, at)
}

const MASTER_ENTRY: [Action; 3] = [
    Action::SendAdvert { priority: 100 },
    Action::AddAddresses,
    Action::Announce,
];

// ---- §6.1: timers -------------------------------------------------------------------

#[test]
fn rfc5798_6_1_skew_time_is_256_minus_priority_times_master_adver_interval_over_256() {
    let r = VirtualRouter::new(cfg(Version::V3, 100), ip(ME));
    assert_eq!(r.skew_time(), Duration::from_nanos(609_375_000));
    let mut c = cfg(Version::V3, 200);
    c.advert_interval = Duration::from_millis(10);
    let r = VirtualRouter::new(c, ip(ME));
    // (256 - 200) * 10 ms / 256 = 2.1875 ms
    assert_eq!(r.skew_time(), Duration::from_nanos(2_187_500));
}

#[test]
fn rfc3768_6_1_v2_skew_time_is_256_minus_priority_over_256_seconds() {
    let mut c = cfg(Version::V2, 100);
    c.advert_interval = Duration::from_secs(5);
    let r = VirtualRouter::new(c, ip(ME));
    // Independent of the interval in v2.
    assert_eq!(r.skew_time(), Duration::from_nanos(609_375_000));
    assert_eq!(
        r.master_down_interval(),
        Duration::from_secs(15) + Duration::from_nanos(609_375_000)
    );
}

#[test]
fn rfc5798_6_1_master_down_interval_is_three_intervals_plus_skew_time() {
    let r = VirtualRouter::new(cfg(Version::V3, 100), ip(ME));
    // keepalived measured: 3.61 s at 1 s.
    assert_eq!(
        r.master_down_interval(),
        Duration::from_nanos(3_609_375_000)
    );
    let mut c = cfg(Version::V3, 100);
    c.advert_interval = Duration::from_millis(10);
    let r = VirtualRouter::new(c, ip(ME));
    // keepalived measured: 36 ms at 10 ms.
    assert_eq!(r.master_down_interval(), Duration::from_nanos(36_093_750));
}

#[test]
fn keepalived_down_timer_adverts_scales_master_down_interval() {
    for (n, expect) in [
        (1, 1_609_375_000u64),
        (3, 3_609_375_000),
        (100, 100_609_375_000),
    ] {
        let mut c = cfg(Version::V3, 100);
        c.down_timer_adverts = n;
        let r = VirtualRouter::new(c, ip(ME));
        assert_eq!(
            r.master_down_interval(),
            Duration::from_nanos(expect),
            "n={n}"
        );
    }
    let mut c = cfg(Version::V3, 100);
    c.down_timer_adverts = 0;
    assert_eq!(c.validate(ip(ME)), Err(ConfigError::DownTimerAdverts(0)));
    assert_eq!(VirtualRouter::new(c, ip(ME)).config().down_timer_adverts, 1);
}

// ---- §6.4.1: Initialize -------------------------------------------------------------

#[test]
fn rfc5798_6_4_1_startup_priority_255_goes_master_at_once() {
    let mut r = VirtualRouter::new(cfg(Version::V3, 255), ip(ME));
    assert_eq!(r.state(), State::Initialize);
    assert_eq!(r.poll_timeout(), None);
    r.handle(ms(5), Input::Startup);
    let acts = drain(&mut r);
    assert_eq!(r.state(), State::Master);
    assert_eq!(
        transitions(&acts),
        vec![Transition {
            from: State::Initialize,
            to: State::Master,
            reason: Reason::Owner,
            at: ms(5)
        }]
    );
    assert_eq!(
        effects(&acts),
        vec![
            Action::SendAdvert { priority: 255 },
            Action::AddAddresses,
            Action::Announce
        ]
    );
    // Adver_Timer = Advertisement_Interval.
    assert_eq!(r.poll_timeout(), Some(ms(1005)));
}

#[test]
fn rfc5798_6_4_1_startup_below_255_goes_backup_with_master_down_timer() {
    let mut r = VirtualRouter::new(cfg(Version::V3, 100), ip(ME));
    r.handle(ms(5), Input::Startup);
    let acts = drain(&mut r);
    assert_eq!(r.state(), State::Backup);
    assert_eq!(effects(&acts), vec![]);
    assert_eq!(transitions(&acts)[0].reason, Reason::Startup);
    assert_eq!(r.master_adver_interval(), Duration::from_secs(1));
    assert_eq!(r.poll_timeout(), Some(ms(5) + r.master_down_interval()));
}

#[test]
fn keepalived_initial_state_master_below_255_starts_backup_and_forces_preempt() {
    let mut c = cfg(Version::V3, 100);
    c.initial_state = InitialState::Master;
    c.preempt = false;
    c.preempt_delay = Duration::from_secs(10);
    let mut r = started(c);
    assert_eq!(r.state(), State::Backup);
    assert!(r.config().preempt);
    assert_eq!(r.config().preempt_delay, Duration::ZERO);
    // With preemption forced on, a lower-priority master is discarded.
    r.handle(ms(100), from("192.0.2.12", v3(50)));
    assert_eq!(r.counters().discarded_lower_priority, 1);
}

#[test]
fn startup_while_faulted_enters_fault_and_startup_twice_is_ignored() {
    let mut r = VirtualRouter::new(cfg(Version::V3, 100), ip(ME));
    r.handle(ms(0), Input::LinkDown);
    assert_eq!(drain(&mut r), vec![]);
    r.handle(ms(1), Input::Startup);
    assert_eq!(r.state(), State::Fault);
    assert_eq!(r.poll_timeout(), None);
    drain(&mut r);
    r.handle(ms(2), Input::Startup);
    assert_eq!(drain(&mut r), vec![]);
}

// ---- §6.4.2: Backup -----------------------------------------------------------------

#[test]
fn rfc5798_6_4_2_backup_takes_over_when_master_down_timer_fires() {
    let mut r = started(cfg(Version::V3, 100));
    let deadline = r.poll_timeout().expect("Backup has a down timer");
    r.handle(deadline - Duration::from_nanos(1), Input::Timeout);
    assert_eq!(
        r.state(),
        State::Backup,
        "one nanosecond early changes nothing"
    );
    assert_eq!(drain(&mut r), vec![]);
    r.handle(deadline, Input::Timeout);
    let acts = drain(&mut r);
    assert_eq!(r.state(), State::Master);
    assert_eq!(effects(&acts), MASTER_ENTRY.to_vec());
    assert_eq!(
        transitions(&acts)[0].reason.to_string(),
        "master down timer expired: no master heard for 3 advert intervals"
    );
}

#[test]
fn rfc5798_6_4_2_backup_resets_master_down_timer_on_advert() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(ms(3000), from("192.0.2.12", v3(200)));
    let mdi = r.master_down_interval();
    assert_eq!(r.poll_timeout(), Some(ms(3000) + mdi));
    assert_eq!(r.master(), Some(ip("192.0.2.12")));
    assert_eq!(r.master_priority(), Some(200));
    r.handle(ms(3000) + mdi, Input::Timeout);
    let acts = drain(&mut r);
    assert_eq!(
        transitions(&acts)[0].reason.to_string(),
        "master down timer expired: 3 adverts missed from 192.0.2.12"
    );
}

#[test]
fn rfc5798_6_4_2_backup_learns_master_adver_interval() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(
        ms(10),
        from(
            "192.0.2.12",
            advert(Version::V3, 200, Duration::from_millis(250)),
        ),
    );
    assert_eq!(r.master_adver_interval(), Duration::from_millis(250));
    // 3 * 250 ms + (156 * 250 ms) / 256
    assert_eq!(
        r.poll_timeout(),
        Some(ms(10) + Duration::from_millis(750) + Duration::from_nanos(152_343_750))
    );
    // Our own advertising keeps our configured interval.
    assert_eq!(r.advertisement(100).interval, Duration::from_secs(1));
}

#[test]
fn rfc3768_6_4_2_v2_backup_keeps_its_own_interval() {
    let mut c = cfg(Version::V2, 100);
    c.advert_interval = Duration::from_secs(2);
    let mut r = started(c);
    r.handle(
        ms(10),
        from(
            "192.0.2.12",
            advert(Version::V2, 200, Duration::from_secs(2)),
        ),
    );
    assert_eq!(r.master_adver_interval(), Duration::from_secs(2));
    assert_eq!(
        r.poll_timeout(),
        Some(ms(10) + Duration::from_secs(6) + Duration::from_nanos(609_375_000))
    );
}

#[test]
fn rfc3768_7_1_v2_interval_mismatch_is_discarded() {
    let mut r = started(cfg(Version::V2, 100));
    let before = r.poll_timeout();
    r.handle(
        ms(10),
        from(
            "192.0.2.12",
            advert(Version::V2, 200, Duration::from_secs(3)),
        ),
    );
    assert_eq!(r.counters().discarded_interval, 1);
    assert_eq!(r.poll_timeout(), before);
}

#[test]
fn rfc5798_6_4_2_priority_zero_sets_master_down_timer_to_skew_time() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(ms(500), from("192.0.2.12", v3(200)));
    r.handle(ms(900), from("192.0.2.12", v3(0)));
    let skew = r.skew_time();
    assert_eq!(r.poll_timeout(), Some(ms(900) + skew));
    r.handle(ms(900) + skew, Input::Timeout);
    let acts = drain(&mut r);
    assert_eq!(r.state(), State::Master);
    assert_eq!(
        transitions(&acts)[0].reason.to_string(),
        "priority 0 from master 192.0.2.12"
    );
    assert_eq!(r.counters().priority_zero_received, 1);
}

/// A Backup that heard a Master at 1 s and then only the priority-0 advert of another
/// one at 2 s (the adverts between were lost) staggers by 2 s, as the kernel's timer and
/// every Backup that heard the leaving Master do.
#[test]
fn rfc5798_6_4_2_priority_zero_skew_time_uses_the_leaving_masters_interval() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(ms(500), from("192.0.2.12", v3(200)));
    let two = Duration::from_secs(2);
    r.handle(ms(900), from("192.0.2.13", advert(Version::V3, 0, two)));
    assert_eq!(r.master_adver_interval(), two);
    // (256 - 100) * 2 s / 256.
    assert_eq!(
        r.poll_timeout(),
        Some(ms(900) + Duration::from_nanos(1_218_750_000))
    );
    // RFC 3768 has no learnt interval: v2 keeps its own.
    let mut r = started(cfg(Version::V2, 100));
    r.handle(
        ms(500),
        from(
            "192.0.2.12",
            advert(Version::V2, 200, Duration::from_secs(1)),
        ),
    );
    r.handle(
        ms(900),
        from("192.0.2.12", advert(Version::V2, 0, Duration::from_secs(1))),
    );
    assert_eq!(r.master_adver_interval(), Duration::from_secs(1));
}

#[test]
fn rfc5798_6_4_2_preempt_backup_discards_lower_priority_advert_and_takes_over() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(ms(100), from("192.0.2.12", v3(150)));
    let deadline = r.poll_timeout().expect("Backup");
    // The master's priority drops below ours: its adverts no longer reset the timer.
    r.handle(ms(1100), from("192.0.2.12", v3(50)));
    r.handle(ms(2100), from("192.0.2.12", v3(50)));
    assert_eq!(r.poll_timeout(), Some(deadline));
    assert_eq!(r.counters().discarded_lower_priority, 2);
    r.handle(deadline, Input::Timeout);
    let acts = drain(&mut r);
    assert_eq!(r.state(), State::Master);
    assert_eq!(
        transitions(&acts)[0].reason.to_string(),
        "preempting lower-priority master 192.0.2.12 (priority 50, ours 100)"
    );
}

#[test]
fn rfc5798_6_4_2_no_preempt_backup_accepts_lower_priority_advert() {
    let mut c = cfg(Version::V3, 100);
    c.preempt = false;
    let mut r = started(c);
    r.handle(ms(100), from("192.0.2.12", v3(50)));
    assert_eq!(r.poll_timeout(), Some(ms(100) + r.master_down_interval()));
    assert_eq!(r.master(), Some(ip("192.0.2.12")));
    assert_eq!(r.counters().discarded_lower_priority, 0);
}

#[test]
fn rfc5798_6_4_2_equal_priority_advert_is_accepted_by_backup_whatever_the_address() {
    let mut r = started(cfg(Version::V3, 100));
    // A lower address than ours, equal priority: the RFC's Backup still accepts it.
    r.handle(ms(100), from("192.0.2.2", v3(100)));
    assert_eq!(r.poll_timeout(), Some(ms(100) + r.master_down_interval()));
}

#[test]
fn keepalived_preempt_delay_holds_back_takeover_from_lower_priority_master() {
    let mut c = cfg(Version::V3, 100);
    c.preempt_delay = Duration::from_secs(5);
    let mut r = started(c);
    // The preempt delay runs from startup: until 5 s, lower adverts reset the timer.
    for s in 1..=5u64 {
        r.handle(ms(s * 1000 - 1), from("192.0.2.12", v3(50)));
    }
    assert_eq!(r.counters().discarded_lower_priority, 0);
    let deadline = ms(4999) + r.master_down_interval();
    assert_eq!(r.poll_timeout(), Some(deadline));
    // From 5 s on they are discarded and the timer runs out.
    r.handle(ms(5999), from("192.0.2.12", v3(50)));
    r.handle(ms(6999), from("192.0.2.12", v3(50)));
    assert_eq!(r.counters().discarded_lower_priority, 2);
    r.handle(deadline, Input::Timeout);
    assert_eq!(r.state(), State::Master);
}

/// The reports of a better master's adverts were lost (a full ring): the delay that
/// startup began may have ended, and the lower run started it anew. It restarts from the
/// run, never ends earlier; a loss before the delay began changes nothing.
#[test]
fn keepalived_preempt_delay_restarts_from_a_run_after_lost_reports() {
    let mut c = cfg(Version::V3, 100);
    c.preempt_delay = Duration::from_secs(2);
    let mut r = started(c.clone());
    assert_eq!(r.preempt_delay_until(), Some(ms(2000)));
    // Lost at 0.5 s; the run of lower adverts began at 1.5 s and was heard.
    r.report_lost(ms(500), ms(1500), true);
    assert_eq!(r.preempt_delay_until(), Some(ms(3500)));
    // The run's own first advert lost: whatever came before it is unknown too.
    let mut r = started(c.clone());
    r.report_lost(ms(1200), ms(1200), false);
    assert_eq!(r.preempt_delay_until(), Some(ms(3200)));
    // A loss within a run the router heard from its start: nothing unheard before it.
    let mut r = started(c.clone());
    r.report_lost(ms(1500), ms(1200), true);
    assert_eq!(r.preempt_delay_until(), Some(ms(2000)));
    // A loss before the delay began (while in Fault, say) cannot have ended it.
    let mut r = VirtualRouter::new(c, ip(ME));
    r.handle(ms(1000), Input::Startup);
    r.report_lost(ms(500), ms(1500), true);
    assert_eq!(r.preempt_delay_until(), Some(ms(3000)));
}

#[test]
fn keepalived_preempt_delay_starts_at_first_lower_priority_advert_after_a_better_master() {
    let mut c = cfg(Version::V3, 100);
    c.preempt_delay = Duration::from_secs(2);
    let mut r = started(c);
    // A better master stops the delay that startup began.
    r.handle(ms(500), from("192.0.2.12", v3(200)));
    r.handle(ms(10_000), from("192.0.2.12", v3(200)));
    // Its priority falls: the first lower advert starts a fresh 2 s delay.
    r.handle(ms(11_000), from("192.0.2.12", v3(50)));
    r.handle(ms(12_000), from("192.0.2.12", v3(50)));
    assert_eq!(r.counters().discarded_lower_priority, 0);
    r.handle(ms(13_000), from("192.0.2.12", v3(50)));
    assert_eq!(r.counters().discarded_lower_priority, 1);
    let at = r.poll_timeout().expect("Backup");
    assert_eq!(at, ms(12_000) + r.master_down_interval());
}

#[test]
fn rfc5798_6_4_2_shutdown_in_backup_goes_initialize() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(ms(1), Input::Shutdown);
    let acts = drain(&mut r);
    assert_eq!(r.state(), State::Initialize);
    assert_eq!(effects(&acts), vec![]);
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(transitions(&acts)[0].reason, Reason::Shutdown);
}

// ---- §6.4.3: Master -----------------------------------------------------------------

#[test]
fn rfc5798_6_4_3_master_sends_advert_every_advertisement_interval() {
    let (mut r, at) = master(cfg(Version::V3, 100));
    assert_eq!(r.poll_timeout(), Some(at + Duration::from_secs(1)));
    r.handle(at + Duration::from_millis(999), Input::Timeout);
    assert_eq!(drain(&mut r), vec![]);
    r.handle(at + Duration::from_secs(1), Input::Timeout);
    assert_eq!(drain(&mut r), vec![Action::SendAdvert { priority: 100 }]);
    assert_eq!(r.poll_timeout(), Some(at + Duration::from_secs(2)));
    // Handled a little late, the cadence holds.
    r.handle(at + Duration::from_millis(2003), Input::Timeout);
    drain(&mut r);
    assert_eq!(r.poll_timeout(), Some(at + Duration::from_secs(3)));
}

#[test]
fn rfc5798_6_4_3_master_answers_priority_zero_with_advert() {
    let (mut r, at) = master(cfg(Version::V3, 100));
    let t = at + Duration::from_millis(300);
    r.handle(t, from("192.0.2.12", v3(0)));
    assert_eq!(drain(&mut r), vec![Action::SendAdvert { priority: 100 }]);
    assert_eq!(r.state(), State::Master);
    assert_eq!(r.poll_timeout(), Some(t + Duration::from_secs(1)));
}

#[test]
fn rfc5798_6_4_3_master_steps_down_for_higher_priority() {
    let (mut r, at) = master(cfg(Version::V3, 100));
    let t = at + Duration::from_millis(300);
    r.handle(
        t,
        from(
            "192.0.2.12",
            advert(Version::V3, 200, Duration::from_millis(500)),
        ),
    );
    let acts = drain(&mut r);
    assert_eq!(r.state(), State::Backup);
    assert_eq!(effects(&acts), vec![Action::RemoveAddresses]);
    assert_eq!(
        transitions(&acts)[0].reason.to_string(),
        "preempted by 192.0.2.12 priority 200"
    );
    // Learns the new master's interval and times it from the advert's arrival.
    assert_eq!(r.master_adver_interval(), Duration::from_millis(500));
    assert_eq!(r.poll_timeout(), Some(t + r.master_down_interval()));
}

#[test]
fn rfc5798_6_4_3_master_steps_down_for_equal_priority_higher_address() {
    let (mut r, at) = master(cfg(Version::V3, 100));
    r.handle(at, from("192.0.2.12", v3(100)));
    let acts = drain(&mut r);
    assert_eq!(r.state(), State::Backup);
    assert_eq!(
        transitions(&acts)[0].reason.to_string(),
        "preempted by 192.0.2.12 priority 100 (equal priority, higher address)"
    );
}

#[test]
fn rfc5798_6_4_3_master_keeps_mastership_against_equal_priority_lower_address() {
    let (mut r, at) = master(cfg(Version::V3, 100));
    r.handle(at, from("192.0.2.10", v3(100)));
    assert_eq!(r.state(), State::Master);
    // Answered, and the addresses announced again (keepalived's garp_lower_prio).
    assert_eq!(
        drain(&mut r),
        vec![Action::SendAdvert { priority: 100 }, Action::Reannounce]
    );
}

#[test]
fn keepalived_master_answers_lower_priority_advert_at_once_and_keeps_mastership() {
    let (mut r, at) = master(cfg(Version::V3, 100));
    let next = r.poll_timeout();
    r.handle(at + Duration::from_millis(10), from("192.0.2.12", v3(50)));
    assert_eq!(r.state(), State::Master);
    assert_eq!(
        drain(&mut r),
        vec![Action::SendAdvert { priority: 100 }, Action::Reannounce]
    );
    // The regular cadence is untouched.
    assert_eq!(r.poll_timeout(), next);
}

#[test]
fn rfc5798_6_4_3_shutdown_sends_priority_zero_and_removes_addresses() {
    let (mut r, at) = master(cfg(Version::V3, 100));
    r.handle(at + Duration::from_millis(1), Input::Shutdown);
    let acts = drain(&mut r);
    assert_eq!(r.state(), State::Initialize);
    assert_eq!(
        effects(&acts),
        vec![Action::SendAdvert { priority: 0 }, Action::RemoveAddresses]
    );
    assert_eq!(r.poll_timeout(), None);
}

// ---- §7.1: receive checks -----------------------------------------------------------

#[test]
fn rfc5798_7_1_address_owner_discards_adverts() {
    let mut r = started(cfg(Version::V3, 255));
    r.handle(ms(1), from("192.0.2.12", v3(254)));
    r.handle(ms(2), from("192.0.2.12", v3(0)));
    assert_eq!(r.counters().discarded_owner, 2);
    assert_eq!(r.state(), State::Master);
}

#[test]
fn rfc5798_7_1_other_vrid_and_other_version_are_discarded() {
    let mut r = started(cfg(Version::V3, 100));
    let before = r.poll_timeout();
    let mut other = v3(200);
    other.vrid = 52;
    r.handle(ms(1), from("192.0.2.12", other));
    r.handle(
        ms(1),
        from(
            "192.0.2.12",
            advert(Version::V2, 200, Duration::from_secs(1)),
        ),
    );
    assert_eq!(r.counters().discarded_vrid, 1);
    assert_eq!(r.counters().discarded_version, 1);
    assert_eq!(r.poll_timeout(), before);
}

#[test]
fn rfc3768_7_1_authentication_mismatch_is_discarded() {
    let mut c = cfg(Version::V2, 100);
    c.auth = Auth::password(b"1111").expect("fits");
    let mut r = started(c);
    let before = r.poll_timeout();
    let mut a = advert(Version::V2, 200, Duration::from_secs(1));
    a.auth = Auth::password(b"2222").expect("fits");
    r.handle(ms(1), from("192.0.2.12", a.clone()));
    a.auth = Auth::None;
    r.handle(ms(1), from("192.0.2.12", a.clone()));
    assert_eq!(r.counters().discarded_auth, 2);
    assert_eq!(r.poll_timeout(), before);
    a.auth = Auth::password(b"1111").expect("fits");
    r.handle(ms(1), from("192.0.2.12", a));
    assert_eq!(r.master(), Some(ip("192.0.2.12")));
}

#[test]
fn rfc3768_7_1_address_list_mismatch_is_dropped_in_v2_and_counted_in_v3() {
    let mut r = started(cfg(Version::V2, 100));
    let mut a = advert(Version::V2, 200, Duration::from_secs(1));
    a.addresses = vec![ip("192.0.2.200")];
    r.handle(ms(1), from("192.0.2.12", a.clone()));
    assert_eq!(r.counters().address_list_mismatch, 1);
    assert_eq!(r.master(), None);
    // ...unless the sender is the owner.
    a.priority = 255;
    r.handle(ms(2), from("192.0.2.12", a));
    assert_eq!(r.master(), Some(ip("192.0.2.12")));

    let mut r = started(cfg(Version::V3, 100));
    let mut a = v3(200);
    a.addresses = vec![ip("192.0.2.200")];
    r.handle(ms(1), from("192.0.2.12", a));
    assert_eq!(r.counters().address_list_mismatch, 1);
    assert_eq!(r.master(), Some(ip("192.0.2.12")));
}

#[test]
fn advert_from_own_primary_address_is_ignored() {
    let (mut r, at) = master(cfg(Version::V3, 100));
    r.handle(at, from(ME, v3(100)));
    assert_eq!(r.counters().discarded_own, 1);
    assert_eq!(drain(&mut r), vec![]);
}

// ---- time semantics -----------------------------------------------------------------

#[test]
fn timeout_before_its_deadline_is_ignored() {
    let (mut r, at) = master(cfg(Version::V3, 100));
    r.handle(at, Input::Timeout);
    assert_eq!(drain(&mut r), vec![]);
    let mut b = started(cfg(Version::V3, 100));
    b.handle(ms(1), Input::Timeout);
    assert_eq!(b.state(), State::Backup);
}

#[test]
fn master_down_timer_runs_from_arrival_not_from_handling() {
    let mut r = started(cfg(Version::V3, 100));
    // Handled "late": a timeout at 2 s is ignored, then an advert that arrived at 1.5 s.
    r.handle(ms(2000), Input::Timeout);
    r.handle(ms(1500), from("192.0.2.12", v3(200)));
    assert_eq!(r.poll_timeout(), Some(ms(1500) + r.master_down_interval()));
}

#[test]
fn refeeding_the_latest_advert_with_its_arrival_time_rearms_the_timer_without_transition() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(ms(1000), from("192.0.2.12", v3(200)));
    drain(&mut r);
    let first_deadline = r.poll_timeout().expect("Backup");
    // The datapath saw more adverts (the last at 3.4 s) without waking the agent; when
    // the timer fires it hands in that last one with its arrival time, then the timeout.
    r.handle(ms(3400), from("192.0.2.12", v3(200)));
    r.handle(first_deadline, Input::Timeout);
    assert_eq!(r.state(), State::Backup);
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.poll_timeout(), Some(ms(3400) + r.master_down_interval()));
    // Handing the same advert in twice is harmless.
    r.handle(ms(3400), from("192.0.2.12", v3(200)));
    assert_eq!(r.poll_timeout(), Some(ms(3400) + r.master_down_interval()));
}

#[test]
fn advert_older_than_the_one_the_timer_runs_from_changes_nothing() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(ms(2000), from("192.0.2.12", v3(0)));
    let deadline = r.poll_timeout();
    // An older normal advert handled after the priority-0 one must not undo it.
    r.handle(ms(1900), from("192.0.2.12", v3(200)));
    assert_eq!(r.poll_timeout(), deadline);
    assert_eq!(r.counters().discarded_stale, 1);
}

// ---- effective priority -------------------------------------------------------------

#[test]
fn priority_change_on_master_advertises_at_once() {
    let (mut r, at) = master(cfg(Version::V3, 100));
    let t = at + Duration::from_millis(400);
    r.handle(t, Input::PriorityChanged(90));
    assert_eq!(r.priority(), 90);
    assert_eq!(drain(&mut r), vec![Action::SendAdvert { priority: 90 }]);
    assert_eq!(r.poll_timeout(), Some(t + Duration::from_secs(1)));
    r.handle(t, Input::PriorityChanged(90));
    assert_eq!(drain(&mut r), vec![], "no change, no advert");
}

#[test]
fn priority_raised_above_master_with_preempt_takes_over_at_down_timer() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(ms(1000), from("192.0.2.12", v3(150)));
    r.handle(ms(1500), Input::PriorityChanged(200));
    // Skew_Time follows the new priority.
    let deadline = ms(1000) + r.master_down_interval();
    assert_eq!(r.poll_timeout(), Some(deadline));
    r.handle(ms(2000), from("192.0.2.12", v3(150)));
    assert_eq!(r.poll_timeout(), Some(deadline));
    r.handle(deadline, Input::Timeout);
    let acts = drain(&mut r);
    assert_eq!(r.state(), State::Master);
    assert_eq!(
        effects(&acts),
        vec![
            Action::SendAdvert { priority: 200 },
            Action::AddAddresses,
            Action::Announce
        ]
    );
}

#[test]
fn effective_priority_stays_in_range() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(ms(1), Input::PriorityChanged(255));
    assert_eq!(
        r.priority(),
        254,
        "tracking never makes a non-owner the owner"
    );
    r.handle(ms(1), Input::PriorityChanged(0));
    assert_eq!(r.priority(), 1, "0 is reserved for stopping");
}

#[test]
fn owner_priority_restored_in_backup_goes_master_at_once() {
    let mut r = started(cfg(Version::V3, 255));
    r.handle(ms(1), Input::PriorityChanged(200));
    let mut a = v3(250);
    a.vrid = 51;
    // Now below the other router: step down.
    r.handle(ms(2), from("192.0.2.12", a));
    assert_eq!(r.state(), State::Backup);
    r.handle(ms(3), Input::PriorityChanged(255));
    let acts = drain(&mut r);
    assert_eq!(r.state(), State::Master);
    assert_eq!(r.last_transition().map(|t| &t.reason), Some(&Reason::Owner));
    assert!(effects(&acts).contains(&Action::AddAddresses));
}

// ---- Fault --------------------------------------------------------------------------

#[test]
fn fault_from_master_sends_priority_zero_and_removes_addresses() {
    let (mut r, at) = master(cfg(Version::V3, 100));
    r.handle(
        at,
        Input::Fault {
            reason: "script check_web failed".into(),
        },
    );
    let acts = drain(&mut r);
    assert_eq!(r.state(), State::Fault);
    assert_eq!(
        effects(&acts),
        vec![Action::SendAdvert { priority: 0 }, Action::RemoveAddresses]
    );
    assert_eq!(
        transitions(&acts)[0].reason.to_string(),
        "fault: script check_web failed"
    );
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn fault_ignores_adverts_and_clears_only_when_every_cause_has() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(ms(1), Input::LinkDown);
    r.handle(ms(2), Input::Fault { reason: "x".into() });
    r.handle(ms(3), from("192.0.2.12", v3(200)));
    assert_eq!(r.counters().discarded_not_listening, 1);
    r.handle(ms(4), Input::LinkUp);
    assert_eq!(r.state(), State::Fault, "the tracked fault still holds");
    r.handle(ms(5), Input::FaultCleared);
    assert_eq!(r.state(), State::Backup);
    assert_eq!(r.poll_timeout(), Some(ms(5) + r.master_down_interval()));
    let ts = transitions(&drain(&mut r));
    assert_eq!(
        ts.iter().map(|t| t.to).collect::<Vec<_>>(),
        vec![State::Fault, State::Backup]
    );
    assert_eq!(ts[1].reason, Reason::FaultCleared);
}

#[test]
fn owner_leaving_fault_goes_master_at_once() {
    let mut r = started(cfg(Version::V3, 255));
    r.handle(ms(1), Input::LinkDown);
    r.handle(ms(2), Input::LinkUp);
    assert_eq!(r.state(), State::Master);
}

#[test]
fn shutdown_from_fault_goes_initialize_and_startup_works_again() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(ms(1), Input::LinkDown);
    r.handle(ms(2), Input::Shutdown);
    assert_eq!(r.state(), State::Initialize);
    r.handle(ms(3), Input::LinkUp);
    r.handle(ms(4), Input::Startup);
    assert_eq!(r.state(), State::Backup);
}

// ---- configuration ------------------------------------------------------------------

#[test]
fn config_validation_names_what_the_protocol_cannot_carry() {
    let p = ip(ME);
    assert_eq!(cfg(Version::V3, 100).validate(p), Ok(()));
    let mut c = cfg(Version::V3, 0);
    assert_eq!(c.validate(p), Err(ConfigError::Priority));
    c = cfg(Version::V2, 100);
    c.advert_interval = Duration::from_millis(500);
    assert_eq!(
        c.validate(p),
        Err(ConfigError::Interval(Duration::from_millis(500)))
    );
    c = cfg(Version::V3, 100);
    c.advert_interval = Duration::from_millis(15);
    assert!(matches!(c.validate(p), Err(ConfigError::Interval(_))));
    c = cfg(Version::V3, 100);
    c.auth = Auth::password(b"x").expect("fits");
    assert_eq!(c.validate(p), Err(ConfigError::AuthOnV3));
    c = cfg(Version::V3, 100);
    c.virtual_addresses.push(ip("2001:db8::1"));
    assert_eq!(
        c.validate(p),
        Err(ConfigError::AddressFamily(ip("2001:db8::1")))
    );
    assert_eq!(
        cfg(Version::V2, 100).validate(ip("2001:db8::1")),
        Err(ConfigError::V2OverIpv6)
    );
    let mut z = cfg(Version::V3, 100);
    z.vrid = 0;
    assert_eq!(z.validate(p), Err(ConfigError::Vrid));
}

#[test]
fn accept_mode_is_carried() {
    let mut c = cfg(Version::V3, 100);
    c.accept_mode = true;
    assert!(VirtualRouter::new(c, ip(ME)).accept_mode());
}

#[test]
fn advertisement_builds_what_send_advert_asks_for() {
    let mut c = cfg(Version::V2, 100);
    c.auth = Auth::password(b"1111").expect("fits");
    let r = VirtualRouter::new(c, ip(ME));
    let a = r.advertisement(0);
    assert_eq!(a.priority, 0);
    assert_eq!(a.vrid, 51);
    assert_eq!(a.version, Version::V2);
    assert_eq!(a.addresses, vec![ip(VIP)]);
    assert_eq!(a.auth, Auth::password(b"1111").expect("fits"));
    let bytes = a
        .encode(ip(ME), ip("224.0.0.18"), r.config().checksum_mode())
        .expect("encodable");
    assert_eq!(bytes.len(), 20);
}

#[test]
fn ipv6_router_elects_on_ipv6_addresses() {
    let c = RouterConfig::new(9, Version::V3, 100, vec![ip("2001:db8::100")]);
    let mut r = VirtualRouter::new(c, ip("2001:db8::11"));
    r.handle(Instant::ZERO, Input::Startup);
    let mut a = v3(100);
    a.vrid = 9;
    a.addresses = vec![ip("2001:db8::100")];
    r.handle(ms(1), from("2001:db8::12", a.clone()));
    assert_eq!(r.master(), Some(ip("2001:db8::12")));
    // An IPv4 sender for an IPv6 router is another family.
    r.handle(ms(2), from("192.0.2.12", a));
    assert_eq!(r.counters().discarded_family, 1);
}

#[test]
fn sync_hold_keeps_a_backup_whose_timer_fired_and_release_makes_it_master() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(Instant::ZERO, Input::SyncHold { reason: "g".into() });
    let deadline = r.poll_timeout().expect("a Backup has a deadline");
    r.handle(deadline, Input::Timeout);
    assert_eq!(r.state(), State::Backup);
    assert!(r.wants_master());
    assert!(drain(&mut r).is_empty(), "held: no advert, no addresses");
    // The deadline moves on rather than firing again at once.
    assert!(r.poll_timeout().expect("still Backup") > deadline);
    r.handle(deadline, Input::SyncRelease { reason: "g".into() });
    assert_eq!(r.state(), State::Master);
    let actions = drain(&mut r);
    assert!(effects(&actions).contains(&Action::AddAddresses));
}

#[test]
fn sync_hold_makes_a_master_step_down_with_priority_zero() {
    let (mut r, t) = master(cfg(Version::V3, 100));
    r.handle(
        t,
        Input::SyncHold {
            reason: "g: in cannot be MASTER".into(),
        },
    );
    assert_eq!(r.state(), State::Backup);
    assert!(!r.wants_master());
    let actions = drain(&mut r);
    assert_eq!(
        effects(&actions),
        vec![Action::SendAdvert { priority: 0 }, Action::RemoveAddresses]
    );
    assert_eq!(transitions(&actions)[0].reason.kind(), "sync_group");
}

#[test]
fn a_better_master_heard_while_held_cancels_the_wish_to_take_over() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(Instant::ZERO, Input::SyncHold { reason: "g".into() });
    let deadline = r.poll_timeout().expect("Backup");
    r.handle(deadline, Input::Timeout);
    assert!(r.wants_master());
    r.handle(
        deadline + Duration::from_millis(10),
        from("192.0.2.12", v3(200)),
    );
    assert!(!r.wants_master());
    r.handle(deadline, Input::SyncRelease { reason: "g".into() });
    assert_eq!(r.state(), State::Backup);
}

#[test]
fn reconfigure_a_backup_priority_changes_nothing_but_the_timer() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(ms(500), from("192.0.2.12", v3(200)));
    drain(&mut r);
    let before = r.poll_timeout();
    let mut c = r.config().clone();
    c.priority = 50;
    assert_eq!(r.reconfigure(ms(600), c), Ok(()));
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!((r.state(), r.priority()), (State::Backup, 50));
    // Skew_Time grows with a lower priority: the deadline moves later.
    assert!(r.poll_timeout() > before);
}

#[test]
fn reconfigure_a_master_priority_advertises_it_without_priority_zero() {
    let (mut r, at) = master(cfg(Version::V3, 150));
    let mut c = r.config().clone();
    c.priority = 120;
    assert_eq!(r.reconfigure(at + Duration::from_millis(10), c), Ok(()));
    assert_eq!(drain(&mut r), vec![Action::SendAdvert { priority: 120 }]);
    assert_eq!(r.state(), State::Master);
}

#[test]
fn reconfigure_to_the_owner_priority_makes_a_backup_master_at_once() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(ms(500), from("192.0.2.12", v3(200)));
    drain(&mut r);
    let mut c = r.config().clone();
    c.priority = 255;
    assert_eq!(r.reconfigure(ms(600), c), Ok(()));
    let t = transitions(&drain(&mut r));
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].to, &t[0].reason), (State::Master, &Reason::Owner));
}

#[test]
fn reconfigure_keeps_the_tracking_offset_of_the_effective_priority() {
    let mut r = started(cfg(Version::V3, 100));
    r.handle(ms(10), Input::PriorityChanged(90));
    let mut c = r.config().clone();
    c.priority = 150;
    assert_eq!(r.reconfigure(ms(20), c), Ok(()));
    assert_eq!(r.priority(), 140);
}

#[test]
fn reconfigure_a_shorter_interval_brings_the_next_advert_forward() {
    let (mut r, at) = master(cfg(Version::V3, 150));
    let mut c = r.config().clone();
    c.advert_interval = Duration::from_millis(100);
    assert_eq!(r.reconfigure(at + Duration::from_millis(10), c), Ok(()));
    assert_eq!(r.poll_timeout(), Some(at + Duration::from_millis(110)));
}

#[test]
fn reconfigure_refuses_another_vrid_or_version() {
    let mut r = started(cfg(Version::V3, 100));
    let mut c = r.config().clone();
    c.vrid = 52;
    assert_eq!(r.reconfigure(ms(1), c), Err(ReconfigureError::Vrid));
    let mut c = r.config().clone();
    c.version = Version::V2;
    assert_eq!(r.reconfigure(ms(1), c), Err(ReconfigureError::Version));
    assert_eq!(r.config().vrid, 51);
}

#[test]
fn keepalived_garp_lower_prio_a_master_that_hears_a_lower_priority_master_announces_again() {
    let (mut r, at) = master(cfg(Version::V3, 150));
    let t = at + Duration::from_millis(100);
    r.handle(t, from("192.0.2.12", v3(100)));
    assert_eq!(
        drain(&mut r),
        vec![Action::SendAdvert { priority: 150 }, Action::Reannounce]
    );
    // Not again while the gap runs, however often the other one speaks.
    r.handle(t + Duration::from_secs(1), from("192.0.2.12", v3(100)));
    assert_eq!(drain(&mut r), vec![Action::SendAdvert { priority: 150 }]);
    r.handle(t + LOWER_PRIORITY_ANNOUNCE_GAP, from("192.0.2.12", v3(100)));
    assert_eq!(
        drain(&mut r),
        vec![Action::SendAdvert { priority: 150 }, Action::Reannounce]
    );
    // A goodbye is no rival: answered, not announced against.
    r.handle(
        t + LOWER_PRIORITY_ANNOUNCE_GAP * 3,
        from("192.0.2.12", v3(0)),
    );
    assert_eq!(drain(&mut r), vec![Action::SendAdvert { priority: 150 }]);
}
