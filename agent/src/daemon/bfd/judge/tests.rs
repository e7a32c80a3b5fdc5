//! Real sessions, driven against each other, produce the changes judged here: the
//! events are built from them exactly as the BFD task builds them.

use std::time::Duration;

use super::*;
use crate::bfd::session::testing::Link;
use crate::bfd::{Input, Session, SessionConfig, Transition};
use crate::config::BfdTimers;
use crate::daemon::bfd::SessionSpec;

const MS: Duration = Duration::from_millis(1);

/// lb01 (the Master, `link.a`) and lb02 (the Backup that would win, `link.b`) with a
/// session each.
struct Pair {
    link: Link,
    /// The backup's session changes, as events.
    events: Vec<BfdEvent>,
}

fn spec() -> SessionSpec {
    SessionSpec {
        name: "eth0/192.0.2.11".into(),
        interface: "eth0".into(),
        peer: "192.0.2.11".parse().expect("literal address"),
        source: None,
        timers: BfdTimers {
            interval: 10 * MS,
            multiplier: 3,
        },
    }
}

/// Turns the backup's (`b`'s) changes into events, as the BFD task builds them.
fn backup_events(events: &mut Vec<BfdEvent>) -> impl FnMut(bool, &Session, Transition) + '_ {
    let spec = spec();
    move |from_a, session, t| {
        if !from_a {
            events.push(BfdEvent::of(&spec, session, t));
        }
    }
}

impl Pair {
    fn up() -> Pair {
        let link = Link::starting(
            SessionConfig::new(11, 10 * MS, 3),
            SessionConfig::new(12, 10 * MS, 3),
            Duration::ZERO,
        );
        let mut p = Pair {
            link,
            events: Vec::new(),
        };
        p.run(Duration::from_secs(3));
        assert_eq!((p.link.a.state(), p.link.b.state()), (State::Up, State::Up));
        p
    }

    /// Runs for `span`; the backup's changes become events.
    fn run(&mut self, span: Duration) {
        let until = self.link.now + span;
        let mut observe = backup_events(&mut self.events);
        self.link.run_until_with(until, &mut observe);
    }

    /// What the sessions asked for: packets into flight, the backup's changes as events.
    fn drain(&mut self) {
        let mut observe = backup_events(&mut self.events);
        self.link.drain(&mut observe);
    }

    /// Judgements of the backup's changes from event `from` on.
    fn judged(&self, from: usize) -> Vec<Judgement> {
        self.events[from..].iter().map(judge).collect()
    }
}

#[test]
fn coming_up_is_not_a_loss() {
    let p = Pair::up();
    let j = p.judged(0);
    assert!(j.contains(&Judgement::StillUp), "{j:?}");
    assert!(
        j.iter()
            .all(|j| matches!(j, Judgement::StillUp | Judgement::NotUp)),
        "{j:?}"
    );
}

/// The Master went silent: the only change that may be a takeover.
#[test]
fn the_masters_silence_is_a_loss() {
    let mut p = Pair::up();
    let from = p.events.len();
    p.link.a_to_b = false;
    p.run(Duration::from_millis(100));
    let first = &p.events[from];
    assert_eq!(
        first.transition.diag,
        Diagnostic::ControlDetectionTimeExpired
    );
    assert_eq!(p.judged(from)[0], Judgement::Silent);
}

/// The Master stopped hearing the Backup and said so (state Down, diagnostic 1 on its
/// side): the Backup's session goes down with diagnostic 3, and the Master is alive.
#[test]
fn the_master_signalling_down_is_not_a_loss() {
    let mut p = Pair::up();
    let from = p.events.len();
    p.link.b_to_a = false;
    p.run(Duration::from_millis(100));
    let first = &p.events[from];
    assert_eq!(
        (first.transition.from, first.transition.to),
        (State::Up, State::Down)
    );
    assert_eq!(
        first.transition.diag,
        Diagnostic::NeighborSignaledSessionDown
    );
    assert!(!first.remote_admin_down);
    assert_eq!(p.judged(from)[0], Judgement::PeerSpoke);
    // Nothing after it is a loss either: the session is no longer Up when its own
    // detection time would run out.
    assert!(
        !p.judged(from).contains(&Judgement::Silent),
        "{:?}",
        p.judged(from)
    );
}

/// The Master took its session down on purpose (AdminDown): not a failure of the path.
#[test]
fn the_masters_admin_down_is_not_a_loss() {
    let mut p = Pair::up();
    let from = p.events.len();
    let now = p.link.now;
    p.link.a.handle(now, Input::AdminDown).expect("admin down");
    p.run(Duration::from_millis(200));
    let first = &p.events[from];
    assert_eq!(
        first.transition.diag,
        Diagnostic::NeighborSignaledSessionDown
    );
    assert!(first.remote_admin_down);
    let j = p.judged(from);
    assert_eq!(j[0], Judgement::Administrative);
    assert!(!j.contains(&Judgement::Silent), "{j:?}");
}

/// The Backup let its session go: administrative.
#[test]
fn our_own_admin_down_is_not_a_loss() {
    let mut p = Pair::up();
    let from = p.events.len();
    let now = p.link.now;
    p.link.b.handle(now, Input::AdminDown).expect("admin down");
    p.drain();
    assert_eq!(p.events[from].transition.to, State::AdminDown);
    assert_eq!(p.judged(from), vec![Judgement::Administrative]);
}
