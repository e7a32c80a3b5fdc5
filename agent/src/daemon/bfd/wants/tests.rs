use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal address")
}

fn at(ms: u64) -> Instant {
    Instant::from_nanos(ms * 1_000_000)
}

fn timers(ms: u64) -> BfdTimers {
    BfdTimers {
        interval: Duration::from_millis(ms),
        multiplier: 3,
    }
}

fn view(peer: &str, state: State, idle_since: Option<Instant>) -> View {
    View {
        name: format!("eth0/{peer}"),
        interface: "eth0".into(),
        peer: ip(peer),
        state,
        idle_since,
        removing: false,
        timers: timers(10),
    }
}

fn listening(only: Option<&[&str]>) -> Wants {
    let mut w = Wants::default();
    w.listening.insert(
        ("eth0".into(), Family::V4),
        Listening {
            timers: timers(10),
            linger: Duration::from_secs(4),
            only: only.map(|o| o.iter().map(|p| ip(p)).collect()),
        },
    );
    w
}

fn learn(w: &mut Wants, owner: &str, peer: &str, t: BfdTimers) {
    w.learned
        .entry(("eth0".into(), ip(peer)))
        .or_default()
        .insert(owner.into(), t);
}

#[test]
fn a_session_nobody_wants_is_taken_down_once() {
    let mut w = listening(None);
    learn(&mut w, "web", "192.0.2.11", timers(10));
    let mut s = vec![view("192.0.2.11", State::Up, None)];
    assert_eq!(w.plan(&s, at(10_000)), Plan::default());
    // The instance let the peer go; the peer still answers: kept while Up.
    w.learned.clear();
    assert_eq!(w.plan(&s, at(10_000)), Plan::default());
    // Down for less than the linger time: kept; longer: taken down, once.
    s[0].state = State::Down;
    s[0].idle_since = Some(at(10_000));
    assert_eq!(w.plan(&s, at(13_000)), Plan::default());
    let plan = w.plan(&s, at(14_001));
    assert_eq!(plan.take_down.len(), 1);
    assert_eq!(plan.take_down[0].0, 0);
    s[0].removing = true;
    assert_eq!(w.plan(&s, at(15_000)), Plan::default());
    // Not listening there any more: even an Up session goes.
    let mut s = vec![view("192.0.2.11", State::Up, None)];
    w.listening.clear();
    assert_eq!(w.plan(&s, at(0)).take_down.len(), 1);
    // Wanted again while it is being taken down: restarted.
    s[0].removing = true;
    learn(&mut w, "web", "192.0.2.11", timers(10));
    assert_eq!(w.plan(&s, at(0)).restart.len(), 1);
}

#[test]
fn unicast_peers_limit_who_may_start_a_session() {
    let w = listening(Some(&["192.0.2.11"]));
    assert!(w.admits("eth0", ip("192.0.2.11")).is_some());
    assert!(w.admits("eth0", ip("198.51.100.7")).is_none());
    assert!(w.admits("eth1", ip("192.0.2.11")).is_none());
    let s = vec![view("198.51.100.7", State::Up, None)];
    assert_eq!(w.plan(&s, at(0)).take_down.len(), 1);
}

#[test]
fn new_timers_retime_a_running_session() {
    let mut w = listening(None);
    learn(&mut w, "web", "192.0.2.11", timers(20));
    learn(&mut w, "api", "192.0.2.11", timers(50));
    let s = vec![view("192.0.2.11", State::Up, None)];
    let plan = w.plan(&s, at(0));
    assert_eq!(plan.retime.len(), 1);
    // The fastest any instance asks for.
    assert_eq!(plan.retime[0].1.timers, timers(20));
    // A configured session's own timers win over learned ones.
    w.named.insert(
        ("eth0".into(), ip("192.0.2.11")),
        SessionSpec {
            name: "to_lb01".into(),
            interface: "eth0".into(),
            peer: ip("192.0.2.11"),
            source: None,
            timers: timers(100),
        },
    );
    let plan = w.plan(&s, at(0));
    assert_eq!(plan.retime[0].1.name, "to_lb01");
    assert_eq!(plan.retime[0].1.timers, timers(100));
}

#[test]
fn caps_hold_configured_sessions_run_and_learned_ones_evict_junk() {
    let mut w = listening(None);
    w.limits = Limits {
        total: 8,
        per_interface: 2,
    };
    // Two sessions peers started; one Up (a real peer), one never Up (junk).
    let s = vec![
        view("192.0.2.13", State::Up, None),
        view("198.51.100.9", State::Init, Some(at(0))),
    ];
    assert!(!w.room(&s, "eth0"));
    assert!(w.room(&s, "eth1"));
    learn(&mut w, "web", "192.0.2.11", timers(10));
    let plan = w.plan(&s, at(100));
    assert_eq!(plan.evict, [1]);
    assert_eq!(plan.start.len(), 1);
    assert_eq!(plan.start[0].peer, ip("192.0.2.11"));
    // Nothing left to evict: the next learned peer is refused.
    let s = vec![
        view("192.0.2.13", State::Up, None),
        view("192.0.2.11", State::Up, None),
    ];
    learn(&mut w, "web", "192.0.2.14", timers(10));
    let plan = w.plan(&s, at(100));
    assert!(plan.start.is_empty() && plan.evict.is_empty());
    assert_eq!(plan.refused, [("eth0".to_owned(), ip("192.0.2.14"))]);
    // A configured session runs anyway.
    w.named.insert(
        ("eth0".into(), ip("192.0.2.15")),
        SessionSpec {
            name: "to_lb05".into(),
            interface: "eth0".into(),
            peer: ip("192.0.2.15"),
            source: None,
            timers: timers(100),
        },
    );
    let plan = w.plan(&s, at(100));
    assert_eq!(plan.start.len(), 1);
    assert_eq!(plan.start[0].name, "to_lb05");
}
