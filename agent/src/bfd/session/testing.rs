//! Two BFD sessions driven against each other over a simulated link, for the tests of
//! the session and of what the daemon makes of its changes.

use std::time::Duration;

use super::{Action, Discard, Input, Session, SessionConfig, Transition};
use crate::bfd::packet::{ControlPacket, State};
use crate::vrrp::Instant;

const MS: Duration = Duration::from_millis(1);
/// Where the simulated clock starts.
pub(crate) const T0: Instant = Instant::from_nanos(1_000_000_000);

/// Two sessions on a link with a fixed delay; either direction can be cut.
pub(crate) struct Link {
    pub(crate) a: Session,
    pub(crate) b: Session,
    /// How long a packet is in flight.
    pub(crate) delay: Duration,
    /// Whether `a`'s packets reach `b`.
    pub(crate) a_to_b: bool,
    /// Whether `b`'s packets reach `a`.
    pub(crate) b_to_a: bool,
    /// (arrival, to_b, packet)
    pub(crate) flight: Vec<(Instant, bool, ControlPacket)>,
    /// (time, from_a, packet) of everything sent.
    pub(crate) sent: Vec<(Instant, bool, ControlPacket)>,
    /// (from_a, change) of every state change, in order.
    pub(crate) transitions: Vec<(bool, Transition)>,
    /// Packets a session refused.
    pub(crate) discards: Vec<Discard>,
    /// The simulated clock.
    pub(crate) now: Instant,
}

impl Link {
    /// `a` started at T0 and `b` 3 ms later, 100 µs apart, both directions open.
    pub(crate) fn new(a: SessionConfig, b: SessionConfig) -> Link {
        Self::starting(a, b, 3 * MS)
    }

    /// `a` started at T0 and `b` `b_after` later.
    pub(crate) fn starting(a: SessionConfig, b: SessionConfig, b_after: Duration) -> Link {
        let mut link = Link {
            a: Session::new(a),
            b: Session::new(b),
            delay: Duration::from_micros(100),
            a_to_b: true,
            b_to_a: true,
            flight: Vec::new(),
            sent: Vec::new(),
            transitions: Vec::new(),
            discards: Vec::new(),
            now: T0,
        };
        link.a.handle(T0, Input::Start).unwrap();
        link.b.handle(T0 + b_after, Input::Start).unwrap();
        link
    }

    /// Puts what the sessions asked for in flight and records their changes, telling
    /// `on_change` of each with the session as it stands right after it.
    pub(crate) fn drain(&mut self, on_change: &mut dyn FnMut(bool, &Session, Transition)) {
        for from_a in [true, false] {
            let session = if from_a { &mut self.a } else { &mut self.b };
            while let Some(action) = session.poll_action() {
                match action {
                    Action::Send(packet) => {
                        self.sent.push((self.now, from_a, packet));
                        let open = if from_a { self.a_to_b } else { self.b_to_a };
                        if open {
                            self.flight.push((self.now + self.delay, from_a, packet));
                        }
                    }
                    Action::StateChanged(t) => {
                        on_change(from_a, session, t);
                        self.transitions.push((from_a, t));
                    }
                }
            }
        }
    }

    /// Runs events until `until`.
    pub(crate) fn run_until(&mut self, until: Instant) {
        self.run_until_with(until, &mut |_, _, _| {});
    }

    /// Runs events until `until`, telling `on_change` of every state change.
    pub(crate) fn run_until_with(
        &mut self,
        until: Instant,
        on_change: &mut dyn FnMut(bool, &Session, Transition),
    ) {
        loop {
            self.drain(on_change);
            let next_flight = self.flight.iter().map(|f| f.0).min();
            let next = [self.a.poll_timeout(), self.b.poll_timeout(), next_flight]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|n| *n <= until) else {
                self.now = until;
                return;
            };
            self.now = next;
            if let Some(i) = self.flight.iter().position(|f| f.0 == next) {
                let (at, to_b, packet) = self.flight.remove(i);
                let session = if to_b { &mut self.b } else { &mut self.a };
                if let Err(discard) = session.handle(at, Input::Packet(packet)) {
                    self.discards.push(discard);
                }
                continue;
            }
            if self.a.poll_timeout() == Some(next) {
                self.a.handle(next, Input::Timeout).unwrap();
            }
            if self.b.poll_timeout() == Some(next) {
                self.b.handle(next, Input::Timeout).unwrap();
            }
        }
    }

    /// Freezes both ends until `until`, as a stalled host running both does: nothing
    /// runs meanwhile; at `until` both sessions' timers run, late, before the packets
    /// that reached them meanwhile are read.
    pub(crate) fn stall(&mut self, until: Instant) {
        self.drain(&mut |_, _, _| {});
        self.now = until;
        for s in [&mut self.a, &mut self.b] {
            if s.poll_timeout().is_some_and(|t| t <= until) {
                s.handle(until, Input::Timeout).unwrap();
            }
        }
        for f in &mut self.flight {
            f.0 = f.0.max(until);
        }
        self.run_until(until);
    }

    /// How many times a session left Up.
    pub(crate) fn downs(&self) -> usize {
        self.transitions
            .iter()
            .filter(|(_, t)| t.from == State::Up)
            .count()
    }

    /// What `a` (or `b`) sent from `after` on.
    pub(crate) fn sent_by(&self, a: bool, after: Instant) -> Vec<(Instant, ControlPacket)> {
        self.sent
            .iter()
            .filter(|s| s.1 == a && s.0 >= after)
            .map(|s| (s.0, s.2))
            .collect()
    }
}
