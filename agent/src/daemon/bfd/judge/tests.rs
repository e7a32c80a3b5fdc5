//! Real sessions, driven against each other, produce the changes judged here: the
//! events are built from them exactly as the BFD task builds them.

use std::time::Duration;

use super::*;
use crate::bfd::{Action, ControlPacket, Input, Session, SessionConfig};
use crate::config::BfdTimers;
use crate::daemon::bfd::SessionSpec;
use crate::vrrp::Instant;

const MS: Duration = Duration::from_millis(1);
const T0: Instant = Instant::from_nanos(1_000_000_000);

/// lb01 (the Master) and lb02 (the Backup that would win) with a session each.
struct Pair {
    master: Session,
    backup: Session,
    /// The master's packets reach the backup, and the other way round.
    to_backup: bool,
    to_master: bool,
    flight: Vec<(Instant, bool, ControlPacket)>,
    /// The backup's session changes, as events.
    events: Vec<BfdEvent>,
    now: Instant,
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

impl Pair {
    fn up() -> Pair {
        let mut p = Pair {
            master: Session::new(SessionConfig::new(11, 10 * MS, 3)),
            backup: Session::new(SessionConfig::new(12, 10 * MS, 3)),
            to_backup: true,
            to_master: true,
            flight: Vec::new(),
            events: Vec::new(),
            now: T0,
        };
        p.master.handle(T0, Input::Start).expect("start");
        p.backup.handle(T0, Input::Start).expect("start");
        p.run(Duration::from_secs(3));
        assert_eq!((p.master.state(), p.backup.state()), (State::Up, State::Up));
        p
    }

    /// What the sessions asked for: packets into flight, the backup's changes as events.
    fn drain(&mut self) {
        while let Some(a) = self.master.poll_action() {
            if let Action::Send(packet) = a
                && self.to_backup
            {
                self.flight.push((self.now + MS / 10, true, packet));
            }
        }
        while let Some(a) = self.backup.poll_action() {
            match a {
                Action::Send(packet) => {
                    if self.to_master {
                        self.flight.push((self.now + MS / 10, false, packet));
                    }
                }
                Action::StateChanged(t) => {
                    self.events.push(BfdEvent::of(&spec(), &self.backup, t));
                }
            }
        }
    }

    fn run(&mut self, span: Duration) {
        let until = self.now + span;
        loop {
            self.drain();
            let next = [
                self.master.poll_timeout(),
                self.backup.poll_timeout(),
                self.flight.iter().map(|f| f.0).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|n| *n <= until) else {
                self.now = until;
                return;
            };
            self.now = next;
            if let Some(i) = self.flight.iter().position(|f| f.0 == next) {
                let (at, to_backup, packet) = self.flight.remove(i);
                let s = if to_backup {
                    &mut self.backup
                } else {
                    &mut self.master
                };
                let _ = s.handle(at, Input::Packet(packet));
                continue;
            }
            for s in [&mut self.master, &mut self.backup] {
                if s.poll_timeout() == Some(next) {
                    s.handle(next, Input::Timeout).expect("timeout");
                }
            }
        }
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
    p.to_backup = false;
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
    p.to_master = false;
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
    let now = p.now;
    p.master.handle(now, Input::AdminDown).expect("admin down");
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
    let now = p.now;
    p.backup.handle(now, Input::AdminDown).expect("admin down");
    p.drain();
    assert_eq!(p.events[from].transition.to, State::AdminDown);
    assert_eq!(p.judged(from), vec![Judgement::Administrative]);
}
