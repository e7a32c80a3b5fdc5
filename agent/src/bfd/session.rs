//! One BFD session in asynchronous mode (RFC 5880), sans-IO like the VRRP router.
//!
//! [`Session::handle`] takes an [`Input`] and the time it happened (for a received
//! packet, its arrival time); [`Session::poll_action`] hands out packets to send and state
//! changes; [`Session::poll_timeout`] says when to come back with [`Input::Timeout`]. The
//! session owns no socket and reads no clock; transmit jitter comes from a generator
//! seeded in the configuration, so a run is reproducible.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::bfd::packet::{ControlPacket, Diagnostic, State, micros};
use crate::vrrp::Instant;
use vigil_common::bfd;

/// Transmit interval while a session is not Up (RFC 5880 §6.8.3: at least one second).
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// What a session is configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// bfd.LocalDiscr: non-zero, unique among this system's sessions (§6.8.1).
    pub local_discriminator: u32,
    /// bfd.DesiredMinTxInterval once Up.
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub required_min_rx: Duration,
    /// bfd.DetectMult.
    pub detect_mult: u8,
    /// Seed of the transmit jitter (§6.8.7); any value, 0 included.
    pub jitter_seed: u64,
}

impl SessionConfig {
    /// A session sending and expecting a packet every `interval`, down after `multiplier`
    /// missed ones.
    pub fn new(local_discriminator: u32, interval: Duration, multiplier: u8) -> SessionConfig {
        SessionConfig {
            local_discriminator,
            desired_min_tx: interval,
            required_min_rx: interval,
            detect_mult: multiplier,
            jitter_seed: u64::from(local_discriminator),
        }
    }
}

/// Something that happened to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Start the session (from Down), as at boot or when leaving AdminDown.
    Start,
    /// A Control packet that decoded and passed the transport's checks (TTL 255, port),
    /// with `now` its arrival time.
    Packet(ControlPacket),
    /// A deadline given by [`Session::poll_timeout`] passed.
    Timeout,
    /// Hold the session down (§6.8.16), telling the remote so.
    AdminDown,
    /// The datapath kept packets to itself that repeated the last one handed in: the
    /// newest arrived at `last_rx`. Only the detection time moves.
    Heard {
        /// Arrival of the newest such packet.
        last_rx: Instant,
    },
    /// The datapath's detection timer ran out with no packet after `last_rx` (which may
    /// be newer than the last packet handed in). The session still judges: it goes
    /// Down only if its own detection time has passed since then.
    DetectionExpired {
        /// Arrival of the newest packet the datapath saw.
        last_rx: Instant,
    },
    /// New timer parameters; a Poll Sequence announces them when Up (§6.8.3).
    Reconfigure {
        /// New bfd.DesiredMinTxInterval once Up.
        desired_min_tx: Duration,
        /// New bfd.RequiredMinRxInterval.
        required_min_rx: Duration,
        /// New bfd.DetectMult.
        detect_mult: u8,
    },
}

/// What a session asks its owner to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this packet to the peer now.
    Send(ControlPacket),
    /// The session changed state.
    StateChanged(Transition),
}

/// A change of session state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// bfd.LocalDiag after the change: why it went down, if it did.
    pub diag: Diagnostic,
    /// When it happened: for a detection timeout the moment the detection time ran out,
    /// not the moment the timeout was handled.
    pub at: Instant,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.from, self.to)?;
        if self.diag != Diagnostic::None {
            write!(f, ": {}", self.diag)?;
        }
        Ok(())
    }
}

/// Why a received packet was discarded by the session (RFC 5880 §6.8.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    /// The A bit is set and no authentication is configured.
    #[error("authentication present but not configured")]
    Authentication,
    /// Your Discriminator names another session.
    #[error("your discriminator {0} is not this session's")]
    YourDiscriminator(u32),
    /// Your Discriminator is zero while the sender is neither Down nor AdminDown.
    #[error("your discriminator 0 in state {0}")]
    ZeroYourDiscriminator(State),
    /// This session is AdminDown.
    #[error("session is administratively down")]
    AdminDown,
}

/// Packet counters of one session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets accepted.
    pub received: u64,
    /// Packets discarded by §6.8.6.
    pub discarded: u64,
    /// Packets handed out to send.
    pub sent: u64,
    /// Times the session went from Up to Down.
    pub downs: u64,
}

/// One BFD session's state (RFC 5880 §6.8.1 variables).
#[derive(Clone, Debug)]
pub struct Session {
    config: SessionConfig,
    started: bool,
    state: State,
    local_diag: Diagnostic,
    remote_discr: u32,
    remote_state: State,
    remote_demand: bool,
    remote_min_rx: Duration,
    remote_desired_tx: Duration,
    remote_mult: u8,
    /// Values carried in our packets.
    advertised_tx: Duration,
    advertised_rx: Duration,
    /// Values our own timing uses; they trail the advertised ones while a Poll Sequence
    /// announcing a slower transmit or a faster receive is unanswered (§6.8.3).
    active_tx: Duration,
    active_rx: Duration,
    polling: bool,
    poll_again: bool,
    /// The datapath keeps the detection time (see [`Session::set_external_detection`]).
    external_detection: bool,
    /// The datapath said the detection time ran out; until the next packet the session
    /// keeps its own deadline again.
    detection_woken: bool,
    last_rx: Option<Instant>,
    detect_deadline: Option<Instant>,
    /// `last_rx` of the silence already listened past after a late wake-up.
    listened_for: Option<Instant>,
    next_tx: Option<Instant>,
    admin_down_until: Option<Instant>,
    last_down: Option<Transition>,
    rng: u64,
    counters: Counters,
    actions: VecDeque<Action>,
}

impl Session {
    /// A session in Down, not yet started.
    pub fn new(config: SessionConfig) -> Session {
        let slow = config.desired_min_tx.max(SLOW_TX);
        Session {
            config,
            started: false,
            state: State::Down,
            local_diag: Diagnostic::None,
            remote_discr: 0,
            remote_state: State::Down,
            remote_demand: false,
            // §6.8.1: RemoteMinRxInterval starts at 1 µs, so the first packets go out.
            remote_min_rx: Duration::from_micros(1),
            remote_desired_tx: Duration::ZERO,
            remote_mult: 0,
            advertised_tx: slow,
            advertised_rx: config.required_min_rx,
            active_tx: slow,
            active_rx: config.required_min_rx,
            polling: false,
            poll_again: false,
            external_detection: false,
            detection_woken: false,
            last_rx: None,
            detect_deadline: None,
            listened_for: None,
            next_tx: None,
            admin_down_until: None,
            last_down: None,
            // splitmix-style mixing so that nearby seeds give unrelated sequences.
            rng: config.jitter_seed ^ 0x9e37_79b9_7f4a_7c15,
            counters: Counters::default(),
            actions: VecDeque::new(),
        }
    }

    /// Handles `input` at `now`. A received packet that §6.8.6 discards returns why.
    pub fn handle(&mut self, now: Instant, input: Input) -> Result<(), Discard> {
        match input {
            Input::Start => {
                if !self.started || self.state == State::AdminDown {
                    self.started = true;
                    self.admin_down_until = None;
                    if self.state == State::AdminDown {
                        self.set_state(now, State::Down, Diagnostic::None);
                    }
                    self.next_tx = Some(now);
                }
            }
            Input::Packet(packet) => {
                let result = self.receive(now, &packet);
                match result {
                    Ok(()) => self.counters.received += 1,
                    Err(_) => self.counters.discarded += 1,
                }
                result?;
            }
            Input::Timeout => self.timeout(now, true),
            Input::AdminDown => self.admin_down(now),
            Input::Heard { last_rx } => self.heard(last_rx),
            Input::DetectionExpired { last_rx } => {
                self.heard(last_rx);
                self.detection_woken = true;
                // The datapath's timer already listened past its own lateness; the
                // agent's delay in hearing of it says nothing about the peer.
                self.timeout(now, false);
            }
            Input::Reconfigure {
                desired_min_tx,
                required_min_rx,
                detect_mult,
            } => self.reconfigure(now, desired_min_tx, required_min_rx, detect_mult),
        }
        Ok(())
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to come back with [`Input::Timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let detect = self.detect_deadline.filter(|_| self.own_detection());
        [self.next_tx, detect, self.admin_down_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// bfd.SessionState.
    pub fn state(&self) -> State {
        self.state
    }

    /// bfd.LocalDiag.
    pub fn diagnostic(&self) -> Diagnostic {
        self.local_diag
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// bfd.RemoteDiscr (0 until the remote is heard).
    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discr
    }

    /// bfd.RemoteSessionState.
    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    /// The detection time in force (§6.8.4): the remote's multiplier times the larger of
    /// our Required Min RX and its Desired Min TX; `None` before the remote is heard.
    pub fn detection_time(&self) -> Option<Duration> {
        (self.remote_mult > 0)
            .then(|| self.active_rx.max(self.remote_desired_tx) * u32::from(self.remote_mult))
    }

    /// The interval between our periodic packets before jitter (§6.8.7), `None` when the
    /// remote asks for none.
    pub fn transmit_interval(&self) -> Option<Duration> {
        (!self.remote_min_rx.is_zero()).then(|| self.active_tx.max(self.remote_min_rx))
    }

    /// Whether the session is Up and sends periodic packets (not stopped by the remote's
    /// Demand mode, §6.6, nor asked for none): the packets a second transmitter may
    /// repeat.
    pub fn steady_up(&self) -> bool {
        self.started
            && self.state == State::Up
            && !self.demand_active()
            && self.transmit_interval().is_some()
    }

    /// The last time the session left Up, and why.
    pub fn last_down(&self) -> Option<Transition> {
        self.last_down
    }

    /// Packet counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The arrival time of the latest accepted packet.
    pub fn last_received(&self) -> Option<Instant> {
        self.last_rx
    }

    /// A Poll Sequence is waiting for its Final.
    pub fn polling(&self) -> bool {
        self.polling
    }

    /// With `on`, the detection time is the datapath's to keep (a kernel timer that
    /// reports [`Input::DetectionExpired`]): [`Session::poll_timeout`] leaves it out, as
    /// packets the datapath keeps to itself would not move it here.
    pub fn set_external_detection(&mut self, on: bool) {
        self.external_detection = on;
    }

    /// Whether the datapath keeps the detection time.
    pub fn external_detection(&self) -> bool {
        self.external_detection
    }

    /// Whether the session's own detection deadline counts now: always without external
    /// detection, and with it after the datapath reported an expiry the session did not
    /// share, until the next packet.
    pub fn own_detection(&self) -> bool {
        !self.external_detection || self.detection_woken
    }

    fn heard(&mut self, last_rx: Instant) {
        if self.last_rx.is_some_and(|l| last_rx > l) {
            self.last_rx = Some(last_rx);
            self.arm_detection();
            self.detection_woken = false;
        }
    }

    /// §6.8.6, the session half.
    fn receive(&mut self, now: Instant, packet: &ControlPacket) -> Result<(), Discard> {
        if packet.auth.is_some() {
            return Err(Discard::Authentication);
        }
        if packet.your_discriminator != 0
            && packet.your_discriminator != self.config.local_discriminator
        {
            return Err(Discard::YourDiscriminator(packet.your_discriminator));
        }
        if packet.your_discriminator == 0 && !matches!(packet.state, State::Down | State::AdminDown)
        {
            return Err(Discard::ZeroYourDiscriminator(packet.state));
        }
        if self.state == State::AdminDown {
            return Err(Discard::AdminDown);
        }
        // A packet that arrived before one already handled updates nothing: the later
        // one speaks for the remote.
        if self.last_rx.is_some_and(|last| now < last) {
            return Ok(());
        }

        self.detection_woken = false;
        self.remote_discr = packet.my_discriminator;
        self.remote_state = packet.state;
        self.remote_demand = packet.demand;
        if packet.final_ && self.polling {
            self.finish_poll();
        }
        let old_interval = self.transmit_interval();
        self.remote_min_rx = packet.required_min_rx();
        self.remote_desired_tx = packet.desired_min_tx();
        self.remote_mult = packet.detect_mult;
        self.last_rx = Some(now);
        self.arm_detection();
        if self.transmit_interval() != old_interval {
            self.reschedule(now);
        }

        // The state machine of §6.2 / §6.8.6.
        match (self.state, packet.state) {
            (State::Init | State::Up, State::AdminDown) => {
                self.set_state(now, State::Down, Diagnostic::NeighborSignaledSessionDown)
            }
            (State::Down, State::Down) => self.set_state(now, State::Init, Diagnostic::None),
            (State::Down, State::Init) => self.set_state(now, State::Up, Diagnostic::None),
            (State::Init, State::Init | State::Up) => {
                self.set_state(now, State::Up, Diagnostic::None)
            }
            (State::Up, State::Down) => {
                self.set_state(now, State::Down, Diagnostic::NeighborSignaledSessionDown)
            }
            _ => {}
        }

        // §6.8.6: a remote in Demand mode, both Up: stop periodic transmission.
        if self.demand_active() {
            self.next_tx = None;
        } else if self.next_tx.is_none() && self.started && self.admin_down_until.is_none() {
            self.reschedule(now);
        }

        // §6.8.6: answer a Poll with a Final at once, outside the periodic schedule.
        if packet.poll {
            let mut reply = self.packet();
            reply.poll = false;
            reply.final_ = true;
            self.send(reply);
        }
        Ok(())
    }

    /// `own_timer`: woken by the deadline of [`Session::poll_timeout`], so a late wake-up
    /// is this host's stall ([`vigil_common::bfd::expiry`]).
    fn timeout(&mut self, now: Instant, own_timer: bool) {
        // With the datapath keeping the detection time, only its report counts: the
        // packets it kept to itself never moved this deadline.
        let judged = self.own_detection();
        if let Some(deadline) = self.detect_deadline.filter(|d| judged && *d <= now)
            && let Some(listen) = self.listen_late(now, deadline, own_timer)
        {
            self.detect_deadline = Some(listen);
        } else if let Some(deadline) = self.detect_deadline.filter(|d| judged && *d <= now) {
            // Listened past a late wake-up: the silence dates from the last packet.
            let deadline = self
                .last_rx
                .zip(self.detection_time())
                .map_or(deadline, |(last, detect)| (last + detect).min(deadline));
            self.detect_deadline = None;
            // §6.8.1: RemoteDiscr goes back to 0 when the detection time passes.
            self.remote_discr = 0;
            self.remote_state = State::Down;
            if matches!(self.state, State::Init | State::Up) {
                self.set_state(
                    deadline,
                    State::Down,
                    Diagnostic::ControlDetectionTimeExpired,
                );
            }
        }
        if self.admin_down_until.is_some_and(|u| u <= now) {
            // Told the remote long enough; go silent.
            self.admin_down_until = None;
            self.next_tx = None;
        }
        if self.next_tx.is_some_and(|t| t <= now) {
            let packet = self.packet();
            self.send(packet);
            self.next_tx = None;
            self.reschedule(now);
        }
    }

    /// A timer that woke more than a little after `deadline` (this host stalled): the
    /// deadline to listen until instead of going down, once per silence.
    fn listen_late(&mut self, now: Instant, deadline: Instant, own_timer: bool) -> Option<Instant> {
        let detect = self.detection_time()?;
        if !own_timer || !matches!(self.state, State::Init | State::Up) {
            return None;
        }
        let listened = self.listened_for.is_some() && self.listened_for == self.last_rx;
        match bfd::expiry(
            now.as_nanos(),
            deadline.as_nanos(),
            detect.as_nanos() as u64,
            listened,
        ) {
            bfd::Expiry::Down => None,
            bfd::Expiry::Listen(until) => {
                self.listened_for = self.last_rx;
                Some(Instant::from_nanos(until))
            }
        }
    }

    fn admin_down(&mut self, now: Instant) {
        if self.state == State::AdminDown {
            return;
        }
        let interval = self.transmit_interval().unwrap_or(self.active_tx);
        self.set_state(now, State::AdminDown, Diagnostic::AdministrativelyDown);
        self.detect_deadline = None;
        // §6.8.16: keep telling the remote for as long as it takes it to notice.
        self.admin_down_until = Some(now + interval * u32::from(self.config.detect_mult.max(1)));
        let packet = self.packet();
        self.send(packet);
        self.next_tx = None;
        self.reschedule(now);
    }

    fn reconfigure(&mut self, now: Instant, tx: Duration, rx: Duration, mult: u8) {
        let changed = tx != self.config.desired_min_tx || rx != self.config.required_min_rx;
        self.config.desired_min_tx = tx;
        self.config.required_min_rx = rx;
        self.config.detect_mult = mult.max(1);
        if !changed {
            return;
        }
        self.advertised_rx = rx;
        if self.state == State::Up {
            self.advertised_tx = tx;
            // §6.8.3: a slower transmit waits for the Final, a faster one starts now;
            // a shorter detection waits for the Final, a longer one starts now.
            self.active_tx = self.active_tx.min(tx);
            self.active_rx = self.active_rx.max(rx);
            self.start_poll();
        } else {
            self.advertised_tx = tx.max(SLOW_TX);
            self.active_tx = self.advertised_tx;
            self.active_rx = rx;
        }
        self.arm_detection();
        self.reschedule(now);
    }

    fn set_state(&mut self, at: Instant, to: State, diag: Diagnostic) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.local_diag = diag;
        let transition = Transition { from, to, diag, at };
        if from == State::Up {
            self.counters.downs += 1;
            self.last_down = Some(transition);
        }
        if to == State::Up {
            // §6.8.3: leave the slow rate; announce it with a Poll Sequence.
            self.advertised_tx = self.config.desired_min_tx;
            self.active_tx = self.active_tx.min(self.advertised_tx);
            self.advertised_rx = self.config.required_min_rx;
            self.start_poll();
            self.reschedule(at);
        } else {
            // §6.8.3: never faster than one packet a second while not Up.
            self.advertised_tx = self.config.desired_min_tx.max(SLOW_TX);
            self.active_tx = self.advertised_tx;
            self.active_rx = self.advertised_rx;
            self.polling = false;
            self.poll_again = false;
        }
        self.actions.push_back(Action::StateChanged(transition));
    }

    fn start_poll(&mut self) {
        if self.polling {
            // §6.8.3: one Poll Sequence at a time; the change waits for the next.
            self.poll_again = true;
        } else {
            self.polling = true;
        }
    }

    fn finish_poll(&mut self) {
        self.polling = false;
        self.active_tx = self.advertised_tx;
        self.active_rx = self.advertised_rx;
        self.arm_detection();
        if std::mem::take(&mut self.poll_again) {
            self.polling = true;
        }
    }

    fn arm_detection(&mut self) {
        if let (Some(last), Some(detect)) = (self.last_rx, self.detection_time()) {
            self.detect_deadline = Some(last + detect);
        }
    }

    fn demand_active(&self) -> bool {
        self.remote_demand && self.state == State::Up && self.remote_state == State::Up
    }

    /// Schedules the next periodic packet no later than one jittered interval from `now`.
    fn reschedule(&mut self, now: Instant) {
        if !self.started || self.demand_active() {
            return;
        }
        if self.state == State::AdminDown && self.admin_down_until.is_none() {
            return;
        }
        let Some(interval) = self.transmit_interval() else {
            self.next_tx = None;
            return;
        };
        let at = now + self.jittered(interval);
        self.next_tx = Some(self.next_tx.map_or(at, |t| t.min(at)));
    }

    /// §6.8.7: each interval shortened by a random 0–25 %, or 10–25 % when the detect
    /// multiplier is 1.
    fn jittered(&mut self, interval: Duration) -> Duration {
        // xorshift64*: tiny, and good enough to de-synchronise senders.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11; // 53 bits
        let fraction = r as f64 / (1u64 << 53) as f64;
        let cut = if self.config.detect_mult == 1 {
            0.10 + 0.15 * fraction
        } else {
            0.25 * fraction
        };
        interval.mul_f64(1.0 - cut)
    }

    /// The packet this session sends now (§6.8.7).
    pub fn packet(&self) -> ControlPacket {
        ControlPacket {
            diag: self.local_diag,
            state: self.state,
            poll: self.polling,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.config.detect_mult,
            my_discriminator: self.config.local_discriminator,
            your_discriminator: self.remote_discr,
            desired_min_tx_us: micros(self.advertised_tx),
            required_min_rx_us: micros(self.advertised_rx),
            required_min_echo_rx_us: 0,
            auth: None,
        }
    }

    fn send(&mut self, packet: ControlPacket) {
        self.counters.sent += 1;
        self.actions.push_back(Action::Send(packet));
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
