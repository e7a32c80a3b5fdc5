//! The BFD sessions of the agent, driven in their own task: a reader per socket stamps
//! each packet on arrival, a CLOCK_MONOTONIC timerfd wakes the task at the earliest
//! session deadline, and every packet due at one tick leaves in one `sendmmsg` per socket.
//! Session changes go out as [`BfdEvent`]s; a snapshot for `vigil status` is kept current.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::bfd::packet::{BFD_TTL, MAX_LEN};
use crate::bfd::{Action, ControlPacket, Input, Session, SessionConfig, State, Transition};
use crate::clock;
use crate::config::BfdTimers;
use crate::datapath::bfd::{BfdSockets, Family, Outgoing};
use crate::timer::MonoTimer;
use crate::vrrp::Instant;

/// One session to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSpec {
    /// Name for logs, status and tracking (`[bfd.NAME]`).
    pub name: String,
    /// Interface the peer is on.
    pub interface: String,
    /// The peer.
    pub peer: IpAddr,
    /// Our address, if pinned.
    pub source: Option<IpAddr>,
    /// Timers.
    pub timers: BfdTimers,
}

/// A session changed state.
#[derive(Clone, Debug)]
pub struct BfdEvent {
    /// Session name.
    pub name: String,
    /// The peer.
    pub peer: IpAddr,
    /// What happened, stamped with when (a detection timeout at its deadline).
    pub transition: Transition,
}

/// What `vigil status` shows of a session.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SessionStatus {
    /// Session name.
    pub name: String,
    /// Interface.
    pub interface: String,
    /// Peer address.
    pub peer: IpAddr,
    /// Local state.
    pub state: String,
    /// The peer's state as last heard.
    pub remote_state: String,
    /// Our discriminator.
    pub local_discriminator: u32,
    /// The peer's (0 until heard).
    pub remote_discriminator: u32,
    /// Detection time in force, milliseconds.
    pub detection_time_ms: Option<f64>,
    /// Transmit interval in force before jitter, milliseconds.
    pub transmit_interval_ms: Option<f64>,
    /// Why the session last left Up.
    pub last_down_reason: Option<String>,
    /// Seconds since it last left Up.
    pub last_down_seconds_ago: Option<f64>,
    /// Packets accepted.
    pub received: u64,
    /// Packets discarded (TTL, decoding, §6.8.6).
    pub discarded: u64,
    /// Packets sent.
    pub sent: u64,
    /// Times it went from Up to Down.
    pub downs: u64,
}

/// The running BFD task.
pub struct BfdService {
    status: Arc<Mutex<Vec<SessionStatus>>>,
    task: JoinHandle<()>,
    readers: Vec<JoinHandle<()>>,
}

impl BfdService {
    /// Opens the sockets and starts the sessions; `events` hears every state change.
    pub fn start(
        specs: Vec<SessionSpec>,
        events: mpsc::UnboundedSender<BfdEvent>,
    ) -> anyhow::Result<BfdService> {
        let mut sockets: HashMap<(String, Family), Arc<BfdSockets>> = HashMap::new();
        let mut sessions = Vec::new();
        for spec in specs {
            let key = (spec.interface.clone(), Family::of(&spec.peer));
            if !sockets.contains_key(&key) {
                let s = BfdSockets::open(key.1, &spec.interface, spec.source).map_err(|e| {
                    anyhow::anyhow!("BFD sockets on {} ({:?}): {e}", spec.interface, key.1)
                })?;
                sockets.insert(key.clone(), Arc::new(s));
            }
            let mut discriminator = random_discriminator(sessions.len());
            while sessions
                .iter()
                .any(|r: &Running| r.session.config().local_discriminator == discriminator)
            {
                discriminator = random_discriminator(sessions.len() + 7);
            }
            let mut config =
                SessionConfig::new(discriminator, spec.timers.interval, spec.timers.multiplier);
            config.jitter_seed = u64::from(random_discriminator(sessions.len() + 1));
            sessions.push(Running {
                session: Session::new(config),
                socket: key,
                spec,
                penalty: 0,
            });
        }
        let (rx_tx, rx_rx) = mpsc::unbounded_channel();
        let readers = sockets
            .iter()
            .map(|(key, s)| tokio::spawn(reader(key.clone(), s.clone(), rx_tx.clone())))
            .collect();
        let status = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(drive(sessions, sockets, rx_rx, events, status.clone()));
        Ok(BfdService {
            status,
            task,
            readers,
        })
    }

    /// The sessions as they stand.
    pub fn status(&self) -> Vec<SessionStatus> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for BfdService {
    fn drop(&mut self) {
        self.task.abort();
        for r in &self.readers {
            r.abort();
        }
    }
}

struct Running {
    session: Session,
    spec: SessionSpec,
    socket: (String, Family),
    /// Packets discarded before the session saw them (TTL, decoding).
    penalty: u64,
}

/// A packet off a socket, stamped at arrival.
struct Arrival {
    socket: (String, Family),
    at: Instant,
    from: IpAddr,
    ttl: Option<u8>,
    bytes: [u8; MAX_LEN],
    len: usize,
    /// Longer than any Control packet we read.
    oversize: bool,
}

async fn reader(key: (String, Family), s: Arc<BfdSockets>, tx: mpsc::UnboundedSender<Arrival>) {
    let mut buf = [0u8; 512];
    loop {
        let Ok(mut guard) = s.readable().await else {
            return;
        };
        loop {
            match s.try_recv(&mut buf) {
                Ok(Some(r)) => {
                    let at = clock::now();
                    let mut bytes = [0u8; MAX_LEN];
                    let len = r.len.min(MAX_LEN);
                    bytes[..len].copy_from_slice(&buf[..len]);
                    let arrival = Arrival {
                        socket: key.clone(),
                        at,
                        from: r.from.ip(),
                        ttl: r.ttl,
                        bytes,
                        len,
                        oversize: r.len > MAX_LEN,
                    };
                    if tx.send(arrival).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(iface = %key.0, "BFD receive: {e}");
                    break;
                }
            }
        }
        guard.clear_ready();
    }
}

async fn drive(
    mut sessions: Vec<Running>,
    sockets: HashMap<(String, Family), Arc<BfdSockets>>,
    mut arrivals: mpsc::UnboundedReceiver<Arrival>,
    events: mpsc::UnboundedSender<BfdEvent>,
    status: Arc<Mutex<Vec<SessionStatus>>>,
) {
    let timer = match MonoTimer::new() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("BFD: no timerfd: {e}");
            return;
        }
    };
    let now = clock::now();
    for r in &mut sessions {
        let _ = r.session.handle(now, Input::Start);
    }
    let mut outbox: BTreeMap<(String, Family), Vec<Outgoing>> = BTreeMap::new();
    loop {
        let deadline = sessions
            .iter()
            .filter_map(|r| r.session.poll_timeout())
            .min();
        tokio::select! {
            arrival = arrivals.recv() => {
                let Some(a) = arrival else { return };
                receive(&mut sessions, a);
                // More may be queued: take them all before sending.
                while let Ok(a) = arrivals.try_recv() {
                    receive(&mut sessions, a);
                }
            }
            _ = async {
                match deadline {
                    Some(d) => {
                        if timer.sleep_until(d).await.is_err() {
                            tokio::time::sleep_until(clock::to_tokio(d)).await;
                        }
                    }
                    None => std::future::pending().await,
                }
            } => {
                let now = clock::now();
                for r in sessions.iter_mut().filter(|r| r.session.poll_timeout().is_some_and(|t| t <= now)) {
                    let _ = r.session.handle(now, Input::Timeout);
                }
            }
        }
        for r in &mut sessions {
            while let Some(action) = r.session.poll_action() {
                match action {
                    Action::Send(packet) => {
                        let mut bytes = [0u8; MAX_LEN];
                        if let Some(len) = packet.encode_into(&mut bytes) {
                            outbox.entry(r.socket.clone()).or_default().push((
                                r.spec.peer,
                                bytes,
                                len,
                            ));
                        }
                    }
                    Action::StateChanged(t) => {
                        log_transition(&r.spec, &t);
                        let _ = events.send(BfdEvent {
                            name: r.spec.name.clone(),
                            peer: r.spec.peer,
                            transition: t,
                        });
                    }
                }
            }
        }
        for (key, batch) in &mut outbox {
            if batch.is_empty() {
                continue;
            }
            if let Some(s) = sockets.get(key) {
                let (_, error) = s.send_batch(batch);
                if let Some(e) = error {
                    tracing::debug!(iface = %key.0, "BFD send: {e}");
                }
            }
            batch.clear();
        }
        if let Ok(mut s) = status.lock() {
            let now = clock::now();
            *s = sessions.iter().map(|r| snapshot(r, now)).collect();
        }
    }
}

/// RFC 5881 §5 (TTL 255), the decoder's §6.8.6 checks, then the session by Your
/// Discriminator or, while that is 0, by interface and peer address.
fn receive(sessions: &mut [Running], a: Arrival) {
    let by_peer = |r: &&mut Running| r.socket == a.socket && r.spec.peer == a.from;
    if a.ttl != Some(BFD_TTL) || a.oversize {
        if let Some(r) = sessions.iter_mut().find(by_peer) {
            r.penalty += 1;
        }
        return;
    }
    let packet = match ControlPacket::decode(&a.bytes[..a.len]) {
        Ok(p) => p,
        Err(e) => {
            if let Some(r) = sessions.iter_mut().find(by_peer) {
                r.penalty += 1;
                tracing::debug!(session = %r.spec.name, "BFD packet dropped: {e}");
            }
            return;
        }
    };
    let target = if packet.your_discriminator != 0 {
        sessions.iter_mut().find(|r| {
            r.session.config().local_discriminator == packet.your_discriminator
                && r.socket == a.socket
        })
    } else {
        sessions.iter_mut().find(by_peer)
    };
    if let Some(r) = target
        && let Err(d) = r.session.handle(a.at, Input::Packet(packet))
    {
        tracing::debug!(session = %r.spec.name, "BFD packet discarded: {d}");
    }
}

fn log_transition(spec: &SessionSpec, t: &Transition) {
    if t.from == State::Up {
        tracing::warn!(session = %spec.name, peer = %spec.peer, iface = %spec.interface, "BFD {t}");
    } else {
        tracing::info!(session = %spec.name, peer = %spec.peer, iface = %spec.interface, "BFD {t}");
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn snapshot(r: &Running, now: Instant) -> SessionStatus {
    let s = &r.session;
    let c = s.counters();
    let down = s.last_down();
    SessionStatus {
        name: r.spec.name.clone(),
        interface: r.spec.interface.clone(),
        peer: r.spec.peer,
        state: s.state().to_string(),
        remote_state: s.remote_state().to_string(),
        local_discriminator: s.config().local_discriminator,
        remote_discriminator: s.remote_discriminator(),
        detection_time_ms: s.detection_time().map(ms),
        transmit_interval_ms: s.transmit_interval().map(ms),
        last_down_reason: down.map(|t| t.diag.to_string()),
        last_down_seconds_ago: down.map(|t| now.saturating_duration_since(t.at).as_secs_f64()),
        received: c.received,
        discarded: c.discarded + r.penalty,
        sent: c.sent,
        downs: c.downs,
    }
}

/// A non-zero discriminator, random so that a restarted agent does not reuse the last
/// one (RFC 5880 §6.8.1 asks for uniqueness; randomness also keeps it unguessable).
fn random_discriminator(salt: usize) -> u32 {
    let mut bytes = [0u8; 4];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let value = if n == 4 {
        u32::from_ne_bytes(bytes)
    } else {
        // No entropy source: the clock will do for uniqueness.
        (clock::now().as_nanos() as u32) ^ (salt as u32).wrapping_mul(0x9e37_79b9)
    };
    value.max(1).wrapping_add(salt as u32).max(1)
}
