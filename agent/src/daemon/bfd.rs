//! The BFD sessions of the agent, driven in their own task: a reader per socket stamps
//! each packet on arrival, a CLOCK_MONOTONIC timerfd wakes the task at the earliest
//! session deadline, and every packet due at one tick leaves in one `sendmmsg` per socket.
//! Session changes go out as [`BfdEvent`]s; a snapshot for `vigil status` is kept current.
//! Which sessions exist, and the caps on them, follow [`wants`]; a history of what
//! happened to them is kept for `vigil trace --bfd` ([`log`]).
//!
//! With the XDP program, the kernel receives: each session's parameters (local
//! discriminator, interface, peer, agreed detection time) are published in its maps, the
//! program consumes the session's packets and hands over only the first and the changed
//! ones, and its detection timer's expiry, as ring-buffer records the agent forwards here
//! ([`BfdService::record`]). The session state machine still decides everything. The
//! sockets stay: they send, and receive what the program leaves to the stack (a peer
//! that does not know our discriminator yet, interfaces without XDP).

pub mod judge;
pub mod log;
pub mod standby;
pub mod wants;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::bfd::packet::MAX_LEN;
use crate::bfd::{Action, ControlPacket, Input, Session, SessionConfig, State, Transition};
use crate::clock;
use crate::config::BfdTimers;
use crate::datapath::bfd::{BfdSockets, Family, Outgoing, Received};
use crate::datapath::xdp::BfdMaps;
use crate::timer::MonoTimer;
use crate::vrrp::Instant;
use wants::{Limits, Listening, View, Wants};

/// How often sessions nobody wants are looked for.
const SWEEP: Duration = Duration::from_secs(1);
use vigil_common::bfd::{
    BFD_HEADER_LEN, BfdFrame, BfdParams, BfdRecord, EVENT_BFD_DOWN, EVENT_BFD_PACKET,
    EVENT_BFD_TIMER_ERROR,
};
use vigil_common::event::{FAMILY_V4, FAMILY_V6};

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
    /// Interface of the session.
    pub interface: String,
    /// The peer.
    pub peer: IpAddr,
    /// What happened, stamped with when (a detection timeout at its deadline).
    pub transition: Transition,
    /// The peer said it took the session down (AdminDown): per RFC 5882 §3.2 not a
    /// failure of the path, so no takeover.
    pub remote_admin_down: bool,
}

impl BfdEvent {
    /// The event of `spec`'s session for transition `t`, with what the session heard
    /// last from the peer.
    pub fn of(spec: &SessionSpec, session: &Session, transition: Transition) -> BfdEvent {
        BfdEvent {
            name: spec.name.clone(),
            interface: spec.interface.clone(),
            peer: spec.peer,
            transition,
            remote_admin_down: session.remote_state() == State::AdminDown,
        }
    }
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
    /// Why it runs: `configured` (`[bfd.NAME]`), `learned` (an instance's peer) or
    /// `peer` (the peer started it).
    pub origin: &'static str,
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
    /// When it last left Up (the snapshot may be older than the question).
    #[serde(skip)]
    pub last_down_at: Option<Instant>,
    /// Packets accepted.
    pub received: u64,
    /// Packets discarded (TTL, decoding, §6.8.6).
    pub discarded: u64,
    /// Packets sent.
    pub sent: u64,
    /// Packets the standby transmitter repeated while the BFD thread was late (its CPU
    /// held): a count of this host's stalls that the peer did not see.
    pub standby_sent: u64,
    /// Times it went from Up to Down.
    pub downs: u64,
    /// Times it came Up.
    pub ups: u64,
    /// A Poll Sequence (new timers) waits for its Final.
    pub polling: bool,
    /// Being taken down (AdminDown sent, freed after a detection time).
    pub removing: bool,
    /// Where the last packet came from: "xdp" (recorded by the XDP program) or "socket".
    pub receive: &'static str,
    /// Who keeps the detection time: "kernel" (a bpf_timer) or "agent".
    pub detection: &'static str,
    /// Packets of this session the XDP program recorded, as of its last report.
    pub kernel_received: u64,
    /// The kernel's last detection timeout, CLOCK_MONOTONIC ns: the last packet's
    /// arrival, the expiry the timer fired at, and when the agent heard of it.
    pub kernel_down: Option<KernelDown>,
}

/// What `vigil status` shows of the BFD task.
#[derive(Debug, Default)]
struct Snapshot {
    sessions: Vec<SessionStatus>,
    /// Sessions refused at the caps, per interface.
    refused: BTreeMap<String, u64>,
    history: log::History,
}

/// A detection timeout reported by the XDP program.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct KernelDown {
    /// Arrival of the session's last packet.
    pub last_packet_ns: u64,
    /// Last packet + detection time (a timer that fired late listened one more detection
    /// time before it reported).
    pub deadline_ns: u64,
    /// When the agent read the record.
    pub heard_ns: u64,
}

/// The running BFD task.
pub struct BfdService {
    status: Arc<Mutex<Snapshot>>,
    commands: mpsc::UnboundedSender<Command>,
}

/// A change to what is wanted.
enum Command {
    /// The `[bfd.NAME]` sessions, all of them.
    Named(Vec<SessionSpec>),
    /// An instance (`owner`) wants a session to `peer` on `interface`.
    Learn {
        owner: String,
        interface: String,
        peer: IpAddr,
        timers: BfdTimers,
    },
    /// It no longer does.
    Forget {
        owner: String,
        interface: String,
        peer: IpAddr,
    },
    /// An instance stopped or lost `bfd`: it wants no session.
    ForgetOwner(String),
    /// Where peers may start sessions, all of it.
    Listen(BTreeMap<(String, Family), Listening>),
    /// The caps.
    Limits(Limits),
    /// The XDP program's session maps: the kernel receives from now on.
    Kernel(BfdMaps),
    /// A record of the XDP program about a session.
    Record(BfdRecord),
}

impl BfdService {
    /// Starts the task with no session; `events` hears every state change. The task
    /// runs on a thread of its own, at real-time priority when the agent may ask for
    /// it (`realtime_priority`, one above where allowed: a busy election loop must not
    /// hold it either): at 10 ms x 3 a peer declares the session down after 30 ms
    /// without a packet, and a busy host must not make the agent that late.
    pub fn start(events: mpsc::UnboundedSender<BfdEvent>, priority: u8) -> BfdService {
        let (commands, rx) = mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(Snapshot::default()));
        let shared = status.clone();
        let spawned = std::thread::Builder::new()
            .name("vigil-bfd".into())
            .spawn(move || {
                crate::sched::realtime_above("BFD thread", priority);
                let standby = standby::Standby::start(priority);
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(drive(rx, events, shared, standby)),
                    Err(e) => tracing::error!("BFD: no runtime: {e}"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!("BFD: no thread: {e}");
        }
        BfdService { status, commands }
    }

    /// The configured (`[bfd.NAME]`) sessions: new ones start, changed ones take their
    /// new timers in place, removed ones go unless something else wants them.
    pub fn set_named(&self, specs: Vec<SessionSpec>) {
        let _ = self.commands.send(Command::Named(specs));
    }

    /// Instance `owner` wants a session to `peer` on `interface` with `timers`.
    pub fn learn(&self, owner: &str, interface: &str, peer: IpAddr, timers: BfdTimers) {
        let _ = self.commands.send(Command::Learn {
            owner: owner.to_owned(),
            interface: interface.to_owned(),
            peer,
            timers,
        });
    }

    /// Instance `owner` no longer wants its session to `peer` on `interface`.
    pub fn forget(&self, owner: &str, interface: &str, peer: IpAddr) {
        let _ = self.commands.send(Command::Forget {
            owner: owner.to_owned(),
            interface: interface.to_owned(),
            peer,
        });
    }

    /// Instance `owner` wants no session any more.
    pub fn forget_owner(&self, owner: &str) {
        let _ = self.commands.send(Command::ForgetOwner(owner.to_owned()));
    }

    /// Where peers may start a session (the passive side of BFD-assisted takeover: a
    /// Master learns its Backups this way, as plain VRRP never tells it who they are).
    pub fn set_listening(&self, listening: BTreeMap<(String, Family), Listening>) {
        let _ = self.commands.send(Command::Listen(listening));
    }

    /// The session caps.
    pub fn set_limits(&self, limits: Limits) {
        let _ = self.commands.send(Command::Limits(limits));
    }

    /// Hands the XDP program's session maps to the task: the kernel receives and keeps
    /// the detection times from now on.
    pub fn kernel(&self, maps: BfdMaps) {
        let _ = self.commands.send(Command::Kernel(maps));
    }

    /// A BFD record from the XDP program's ring buffer.
    pub fn record(&self, record: BfdRecord) {
        let _ = self.commands.send(Command::Record(record));
    }

    /// The sessions as they stand.
    pub fn status(&self) -> Vec<SessionStatus> {
        let mut sessions = self
            .status
            .lock()
            .map(|s| s.sessions.clone())
            .unwrap_or_default();
        let now = clock::now();
        for s in &mut sessions {
            s.last_down_seconds_ago = s
                .last_down_at
                .map(|at| now.saturating_duration_since(at).as_secs_f64());
        }
        sessions
    }

    /// Sessions refused at the caps so far, per interface.
    pub fn refused(&self) -> BTreeMap<String, u64> {
        self.status
            .lock()
            .map(|s| s.refused.clone())
            .unwrap_or_default()
    }

    /// What happened to sessions after history entry `seq`, and the newest entry's number.
    pub fn history_since(&self, seq: u64) -> (Vec<log::Entry>, u64) {
        self.status
            .lock()
            .map(|s| s.history.since(seq))
            .unwrap_or_default()
    }
}

struct Running {
    session: Session,
    spec: SessionSpec,
    socket: (String, Family),
    /// Packets discarded before the session saw them (TTL, decoding).
    penalty: u64,
    /// When it last left Up (or started); `None` while Up.
    idle_since: Option<Instant>,
    /// Being taken down: AdminDown sent, freed once it went silent.
    removing: bool,
    /// Times it came Up.
    ups: u64,
    /// What the kernel knows of the session.
    kernel: KernelSide,
}

impl Running {
    fn view(&self) -> View {
        View {
            name: self.spec.name.clone(),
            interface: self.spec.interface.clone(),
            peer: self.spec.peer,
            state: self.session.state(),
            idle_since: self.idle_since,
            removing: self.removing,
            timers: self.spec.timers,
        }
    }

    fn entry(&self, event: String) -> log::Entry {
        log::Entry {
            seq: 0,
            time: log::wall_clock(),
            session: self.spec.name.clone(),
            interface: self.spec.interface.clone(),
            peer: self.spec.peer,
            event,
            state: self.session.state().to_string(),
            detection_time_ms: self.session.detection_time().map(ms),
            local_discriminator: self.session.config().local_discriminator,
            remote_discriminator: self.session.remote_discriminator(),
        }
    }
}

/// A session's side in the XDP program.
#[derive(Default)]
struct KernelSide {
    /// Interface index of the session's interface (0: unknown).
    ifindex: u32,
    /// When `ifindex` was last looked up.
    resolved_at: Option<Instant>,
    /// The parameters last published.
    published: Option<BfdParams>,
    /// Bumped at each state change, so that the peer's next packet is reported.
    epoch: u8,
    /// The last packet came through the XDP program.
    via_kernel: bool,
    /// The kernel could not arm this session's timer: the agent keeps the detection time.
    timer_failed: bool,
    /// Packets recorded by the kernel, as of its last record.
    received: u64,
    /// The kernel's last detection timeout.
    last_down: Option<KernelDown>,
    /// When another detection time was published (CLOCK_MONOTONIC ns; 0: none pending).
    /// The kernel's timer runs to an expiry computed with the old one until its next
    /// packet, so the agent keeps the deadline until the kernel has recorded one since.
    detect_changed_ns: u64,
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

impl Arrival {
    fn new(key: &(String, Family), at: Instant, r: Received, buf: &[u8]) -> Arrival {
        let mut bytes = [0u8; MAX_LEN];
        let len = r.len.min(MAX_LEN).min(buf.len());
        bytes[..len].copy_from_slice(&buf[..len]);
        Arrival {
            socket: key.clone(),
            at,
            from: r.from.ip(),
            ttl: r.ttl,
            bytes,
            len,
            oversize: r.len > MAX_LEN,
        }
    }
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
                    if tx.send(Arrival::new(&key, clock::now(), r, &buf)).is_err() {
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

/// Sockets per (interface, family) and their reader tasks.
struct Sockets {
    open: HashMap<(String, Family), (Arc<BfdSockets>, JoinHandle<()>)>,
    /// Sockets that failed to open, logged once until they open.
    failed: std::collections::HashSet<(String, Family)>,
    arrivals: mpsc::UnboundedSender<Arrival>,
}

impl Sockets {
    fn ensure(&mut self, key: &(String, Family), source: Option<IpAddr>) -> bool {
        if self.open.contains_key(key) {
            return true;
        }
        match BfdSockets::open(key.1, &key.0, source) {
            Ok(s) => {
                let s = Arc::new(s);
                let reader = tokio::spawn(reader(key.clone(), s.clone(), self.arrivals.clone()));
                self.open.insert(key.clone(), (s, reader));
                self.failed.remove(key);
                true
            }
            Err(e) => {
                if self.failed.insert(key.clone()) {
                    tracing::error!(iface = %key.0, "BFD sockets ({:?}): {e}; tried again every second", key.1);
                }
                false
            }
        }
    }

    /// Closes the sockets no session, want or listener needs.
    fn close_unused(&mut self, sessions: &[Running], wants: &Wants) {
        self.open.retain(|key, (_, reader)| {
            let used = sessions.iter().any(|r| r.socket == *key)
                || wants.listening.contains_key(key)
                || wants
                    .named
                    .keys()
                    .chain(wants.learned.keys())
                    .any(|(i, p)| *i == key.0 && Family::of(p) == key.1);
            if !used {
                reader.abort();
                tracing::debug!(iface = %key.0, "BFD sockets ({:?}) closed", key.1);
            }
            used
        });
    }
}

impl Drop for Sockets {
    fn drop(&mut self) {
        for (_, reader) in self.open.values() {
            reader.abort();
        }
    }
}

fn new_session(sessions: &[Running], spec: SessionSpec, now: Instant) -> Running {
    let mut discriminator = random_discriminator(sessions.len());
    while sessions
        .iter()
        .any(|r| r.session.config().local_discriminator == discriminator)
    {
        discriminator = random_discriminator(sessions.len() + 7);
    }
    let mut config =
        SessionConfig::new(discriminator, spec.timers.interval, spec.timers.multiplier);
    config.jitter_seed = u64::from(random_discriminator(sessions.len() + 1));
    let mut session = Session::new(config);
    let _ = session.handle(now, Input::Start);
    Running {
        session,
        socket: (spec.interface.clone(), Family::of(&spec.peer)),
        kernel: KernelSide::default(),
        spec,
        penalty: 0,
        idle_since: Some(now),
        removing: false,
        ups: 0,
    }
}

/// Refusals at the caps, logged once per episode.
#[derive(Default)]
struct Refusals {
    counts: BTreeMap<String, u64>,
    /// Interfaces whose cap was hit and not yet relieved (logged already).
    full: std::collections::BTreeSet<String>,
    /// Learned sessions already counted as refused (counted once while they wait).
    waiting: std::collections::BTreeSet<(String, IpAddr)>,
}

impl Refusals {
    fn refuse(&mut self, interface: &str, peer: IpAddr, limits: Limits, who: &str) {
        *self.counts.entry(interface.to_owned()).or_default() += 1;
        if self.full.insert(interface.to_owned()) {
            tracing::warn!(
                iface = %interface,
                %peer,
                "BFD session cap reached ({} per interface, {} in all): {who} refused; \
                 further refusals are counted, not logged",
                limits.per_interface,
                limits.total
            );
        }
    }

    /// Re-arms the log for interfaces below the cap again.
    fn relieve(&mut self, sessions: &[Running], limits: Limits) {
        let total = sessions.len();
        self.full.retain(|iface| {
            total >= limits.total
                || sessions
                    .iter()
                    .filter(|r| r.spec.interface == *iface)
                    .count()
                    >= limits.per_interface
        });
    }
}

/// The task's state besides the sessions.
struct Task {
    wants: Wants,
    refusals: Refusals,
    /// History entries not yet handed to the snapshot.
    history: Vec<log::Entry>,
}

impl Task {
    /// Brings the sessions in line with what is wanted ([`Wants::plan`]).
    fn reconcile(&mut self, sessions: &mut Vec<Running>, sockets: &mut Sockets, now: Instant) {
        let views: Vec<View> = sessions.iter().map(Running::view).collect();
        let plan = self.wants.plan(&views, now);
        for (i, why) in &plan.take_down {
            let r = &mut sessions[*i];
            tracing::info!(session = %r.spec.name, peer = %r.spec.peer, iface = %r.spec.interface, "BFD session let go: {why}");
            // RFC 5880 §6.8.16: the peer hears AdminDown, diagnostic 7, for a
            // detection time; then the session is freed.
            let _ = r.session.handle(now, Input::AdminDown);
            r.removing = true;
            let e = r.entry(format!("let go: {why}"));
            self.history.push(e);
        }
        for (i, spec) in plan.restart {
            let r = &mut sessions[i];
            tracing::info!(session = %spec.name, peer = %spec.peer, iface = %spec.interface, "BFD session wanted again");
            r.removing = false;
            let _ = r.session.handle(now, Input::Start);
            retime(r, spec, now, &mut self.history);
        }
        for (i, spec) in plan.retime {
            retime(&mut sessions[i], spec, now, &mut self.history);
        }
        for (interface, peer) in plan.refused {
            if self.refusals.waiting.insert((interface.clone(), peer)) {
                self.refusals
                    .refuse(&interface, peer, self.wants.limits, "a learned peer");
                self.history.push(log::Entry {
                    seq: 0,
                    time: log::wall_clock(),
                    session: format!("{interface}/{peer}"),
                    interface,
                    peer,
                    event: "refused: session cap reached".into(),
                    state: "none".into(),
                    detection_time_ms: None,
                    local_discriminator: 0,
                    remote_discriminator: 0,
                });
            }
        }
        let mut evict = plan.evict;
        evict.sort_unstable();
        for i in evict.into_iter().rev() {
            let r = sessions.remove(i);
            tracing::info!(session = %r.spec.name, peer = %r.spec.peer, "BFD session dropped to make room for a learned peer");
            self.history
                .push(r.entry("dropped to make room for a learned peer".into()));
        }
        for spec in plan.start {
            let key = (spec.interface.clone(), Family::of(&spec.peer));
            if sockets.ensure(&key, spec.source) {
                self.refusals
                    .waiting
                    .remove(&(spec.interface.clone(), spec.peer));
                tracing::info!(session = %spec.name, peer = %spec.peer, iface = %spec.interface, "BFD session started");
                let r = new_session(sessions, spec, now);
                self.history.push(r.entry("started".into()));
                sessions.push(r);
            }
        }
        // Taken down and silent: freed.
        sessions.retain(|r| {
            let done = r.removing && r.session.poll_timeout().is_none();
            if done {
                tracing::debug!(session = %r.spec.name, "BFD session freed");
            }
            !done
        });
        let wants = &self.wants;
        self.refusals
            .waiting
            .retain(|(i, p)| wants.wanted(i, *p).is_some());
        self.refusals.relieve(sessions, wants.limits);
        // Listening needs the sockets open before any peer speaks.
        for key in wants.listening.keys() {
            sockets.ensure(key, None);
        }
        sockets.close_unused(sessions, wants);
    }

    fn origin(&self, r: &Running) -> &'static str {
        let key = (r.spec.interface.clone(), r.spec.peer);
        if self.wants.named.contains_key(&key) {
            "configured"
        } else if self.wants.learned.contains_key(&key) {
            "learned"
        } else {
            "peer"
        }
    }
}

/// New timers (a Poll Sequence when Up, RFC 5880 §6.8.3) or a new name.
fn retime(r: &mut Running, spec: SessionSpec, now: Instant, history: &mut Vec<log::Entry>) {
    if spec.timers != r.spec.timers {
        tracing::info!(
            session = %spec.name,
            peer = %spec.peer,
            "BFD session timers {:?} x {} -> {:?} x {}",
            r.spec.timers.interval,
            r.spec.timers.multiplier,
            spec.timers.interval,
            spec.timers.multiplier
        );
        let _ = r.session.handle(
            now,
            Input::Reconfigure {
                desired_min_tx: spec.timers.interval,
                required_min_rx: spec.timers.interval,
                detect_mult: spec.timers.multiplier,
            },
        );
        let event = format!(
            "timers {:?} x {} -> {:?} x {}",
            r.spec.timers.interval,
            r.spec.timers.multiplier,
            spec.timers.interval,
            spec.timers.multiplier
        );
        r.spec.timers = spec.timers;
        history.push(r.entry(event));
    }
    r.spec.name = spec.name;
}

async fn drive(
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<BfdEvent>,
    status: Arc<Mutex<Snapshot>>,
    standby: Option<standby::Standby>,
) {
    let timer = match MonoTimer::new() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("BFD: no timerfd: {e}");
            return;
        }
    };
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel();
    let mut sockets = Sockets {
        open: HashMap::new(),
        failed: std::collections::HashSet::new(),
        arrivals: arrivals_tx,
    };
    let mut task = Task {
        wants: Wants::default(),
        refusals: Refusals::default(),
        history: Vec::new(),
    };
    let mut sessions: Vec<Running> = Vec::new();
    let mut maps: Option<BfdMaps> = None;
    let mut outbox: BTreeMap<(String, Family), Vec<Outgoing>> = BTreeMap::new();
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = sessions
            .iter()
            .filter_map(|r| r.session.poll_timeout())
            .min();
        tokio::select! {
            // Packets first: a timeout handled before a packet already waiting would
            // declare a live peer down.
            biased;
            command = commands.recv() => {
                let Some(command) = command else { return };
                match command {
                    Command::Kernel(m) => {
                        tracing::info!(
                            detection = if m.kernel_timers { "kernel" } else { "agent" },
                            "BFD: the XDP program receives"
                        );
                        maps = Some(m);
                    }
                    Command::Record(record) => {
                        let timers = maps.as_ref().is_some_and(|m| m.kernel_timers);
                        kernel_record(&mut sessions, timers, &record);
                    }
                    other => {
                        task.command(other);
                        let before = discriminators(&sessions);
                        task.reconcile(&mut sessions, &mut sockets, clock::now());
                        withdraw_gone(maps.as_mut(), &before, &sessions);
                    }
                }
            }
            arrival = arrivals.recv() => {
                let Some(a) = arrival else { return };
                receive(&mut sessions, &mut task, a);
                // More may be queued: take them all before sending.
                while let Ok(a) = arrivals.try_recv() {
                    receive(&mut sessions, &mut task, a);
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
                // Whatever reached the sockets by now counts before any deadline does:
                // first what the readers stamped, then what they have not read yet (in
                // arrival order, so a later packet never hides an earlier one).
                while let Ok(a) = arrivals.try_recv() {
                    receive(&mut sessions, &mut task, a);
                }
                let open: Vec<_> = sockets.open.iter().map(|(k, (s, _))| (k.clone(), s.clone())).collect();
                for (key, s) in open {
                    let mut buf = [0u8; 512];
                    while let Ok(Some(r)) = s.try_recv(&mut buf) {
                        let arrival = Arrival::new(&key, clock::now(), r, &buf);
                        receive(&mut sessions, &mut task, arrival);
                    }
                }
                let now = clock::now();
                for r in sessions.iter_mut().filter(|r| r.session.poll_timeout().is_some_and(|t| t <= now)) {
                    if let Some(m) = &maps {
                        refresh(r, m, now);
                    }
                    let _ = r.session.handle(now, Input::Timeout);
                }
            }
            _ = sweep.tick() => {
                let before = discriminators(&sessions);
                task.reconcile(&mut sessions, &mut sockets, clock::now());
                withdraw_gone(maps.as_mut(), &before, &sessions);
                if let Some(sb) = &standby {
                    let steady: HashMap<u32, bool> = sessions
                        .iter()
                        .map(|r| (r.session.config().local_discriminator, r.session.steady_up()))
                        .collect();
                    sb.retain(
                        |d| steady.get(&d).copied().unwrap_or(false),
                        |d| steady.contains_key(&d),
                    );
                }
            }
        }
        let now = clock::now();
        for r in &mut sessions {
            while let Some(action) = r.session.poll_action() {
                match action {
                    Action::Send(packet) => {
                        let mut bytes = [0u8; MAX_LEN];
                        let Some(len) = packet.encode_into(&mut bytes) else {
                            continue;
                        };
                        if !offer(standby.as_ref(), r, &sockets, &packet, &bytes, len, now) {
                            continue;
                        }
                        outbox
                            .entry(r.socket.clone())
                            .or_default()
                            .push((r.spec.peer, bytes, len));
                    }
                    Action::StateChanged(t) => {
                        if t.from == State::Up
                            && let Some(sb) = &standby
                        {
                            sb.withdraw(r.session.config().local_discriminator);
                        }
                        log_transition(&r.spec, &t);
                        if t.to == State::Up {
                            r.ups += 1;
                            r.idle_since = None;
                        } else if t.from == State::Up || r.idle_since.is_none() {
                            r.idle_since = Some(t.at);
                        }
                        let e = r.entry(t.to_string());
                        task.history.push(e);
                        r.kernel.epoch = r.kernel.epoch.wrapping_add(1);
                        let _ = events.send(BfdEvent::of(&r.spec, &r.session, t));
                    }
                }
            }
        }
        if let Some(m) = &mut maps {
            let now = clock::now();
            for r in &mut sessions {
                publish(m, r, now);
            }
        }
        for (key, batch) in &mut outbox {
            if batch.is_empty() {
                continue;
            }
            if let Some((s, _)) = sockets.open.get(key) {
                let (_, error) = s.send_batch(batch);
                if let Some(e) = error {
                    tracing::debug!(iface = %key.0, "BFD send: {e}");
                }
            }
            batch.clear();
        }
        if let Ok(mut s) = status.lock() {
            let now = clock::now();
            let repeated = standby.as_ref().map(|sb| sb.sent()).unwrap_or_default();
            s.sessions = sessions
                .iter()
                .map(|r| {
                    let disc = r.session.config().local_discriminator;
                    let by_standby = repeated.get(&disc).copied().unwrap_or(0);
                    snapshot(r, task.origin(r), now, by_standby)
                })
                .collect();
            s.refused.clone_from(&task.refusals.counts);
            for e in task.history.drain(..) {
                s.history.push(e);
            }
        }
    }
}

/// Hands the standby transmitter a packet of `r` about to leave; whether it should
/// leave (see [`standby::Table::offer`]). Without a standby, always.
fn offer(
    standby: Option<&standby::Standby>,
    r: &Running,
    sockets: &Sockets,
    packet: &ControlPacket,
    bytes: &[u8; MAX_LEN],
    len: usize,
    now: Instant,
) -> bool {
    let Some(sb) = standby else {
        return true;
    };
    let disc = r.session.config().local_discriminator;
    match (r.session.transmit_interval(), sockets.open.get(&r.socket)) {
        (Some(interval), Some((socket, _))) if r.session.steady_up() => {
            sb.offer(disc, packet, socket, r.spec.peer, bytes, len, interval, now)
        }
        _ => {
            sb.withdraw(disc);
            true
        }
    }
}

impl Task {
    fn command(&mut self, command: Command) {
        let w = &mut self.wants;
        match command {
            Command::Named(specs) => {
                w.named = specs
                    .into_iter()
                    .map(|s| ((s.interface.clone(), s.peer), s))
                    .collect();
            }
            Command::Learn {
                owner,
                interface,
                peer,
                timers,
            } => {
                let key = (interface, peer);
                // A bound on what junk adverts can make the task remember.
                let on_iface = w.learned.keys().filter(|(i, _)| *i == key.0).count();
                if !w.learned.contains_key(&key) && on_iface >= 4 * w.limits.per_interface {
                    self.refusals
                        .refuse(&key.0, peer, w.limits, "a learned peer");
                    return;
                }
                w.learned.entry(key).or_default().insert(owner, timers);
            }
            Command::Forget {
                owner,
                interface,
                peer,
            } => {
                let key = (interface, peer);
                if let Some(owners) = w.learned.get_mut(&key) {
                    owners.remove(&owner);
                    if owners.is_empty() {
                        w.learned.remove(&key);
                    }
                }
            }
            Command::ForgetOwner(owner) => {
                w.learned.retain(|_, owners| {
                    owners.remove(&owner);
                    !owners.is_empty()
                });
            }
            Command::Listen(listening) => w.listening = listening,
            Command::Limits(limits) => w.limits = limits,
            // The kernel's maps and records go to the drive loop, which owns them.
            Command::Kernel(_) | Command::Record(_) => {}
        }
    }
}

/// The local discriminators of the sessions.
fn discriminators(sessions: &[Running]) -> Vec<u32> {
    sessions
        .iter()
        .map(|r| r.session.config().local_discriminator)
        .collect()
}

/// Takes the sessions freed since `before` out of the XDP program's maps.
fn withdraw_gone(maps: Option<&mut BfdMaps>, before: &[u32], sessions: &[Running]) {
    let Some(maps) = maps else {
        return;
    };
    let now = discriminators(sessions);
    for d in before.iter().filter(|d| !now.contains(d)) {
        maps.withdraw(*d);
    }
}

/// RFC 5881 §5 (TTL 255), the decoder's §6.8.6 checks, then the session by Your
/// Discriminator or, while that is 0, by interface and peer address.
fn receive(sessions: &mut Vec<Running>, task: &mut Task, a: Arrival) {
    let by_peer = |r: &&mut Running| r.socket == a.socket && r.spec.peer == a.from;
    // The XDP program's checks (RFC 5881 §5, RFC 5880 §6.8.6), the same code.
    let verdict = a
        .ttl
        .filter(|_| !a.oversize)
        .and_then(|ttl| socket_frame(&a, ttl))
        .map(|f| vigil_common::bfd::check(&f));
    if !matches!(verdict, Some(Ok(_))) {
        if let Some(r) = sessions.iter_mut().find(by_peer) {
            r.penalty += 1;
            tracing::debug!(session = %r.spec.name, "BFD packet dropped: {verdict:?}");
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
    let known = if packet.your_discriminator != 0 {
        sessions.iter().position(|r| {
            r.session.config().local_discriminator == packet.your_discriminator
                && r.socket == a.socket
        })
    } else {
        sessions
            .iter()
            .position(|r| r.socket == a.socket && r.spec.peer == a.from)
    };
    // RFC 5880 §6.8.6 has a packet for no session discarded; on a listening interface a
    // peer starting one (Down, Your Discriminator 0) gets a session instead, room
    // permitting.
    let known = known.or_else(|| {
        if packet.your_discriminator != 0 || packet.state != State::Down {
            return None;
        }
        let timers = task.wants.admits(&a.socket.0, a.from)?.timers;
        let on_interface = sessions
            .iter()
            .filter(|r| r.spec.interface == a.socket.0)
            .count();
        if !task.wants.room_for(sessions.len(), on_interface) {
            task.refusals.refuse(
                &a.socket.0,
                a.from,
                task.wants.limits,
                "a session a peer started",
            );
            return None;
        }
        let spec = SessionSpec {
            name: format!("{}/{}", a.socket.0, a.from),
            interface: a.socket.0.clone(),
            peer: a.from,
            source: None,
            timers,
        };
        tracing::info!(session = %spec.name, "BFD session started by the peer");
        let r = new_session(sessions, spec, a.at);
        task.history.push(r.entry("started by the peer".into()));
        sessions.push(r);
        Some(sessions.len() - 1)
    });
    let target = known.and_then(|i| sessions.get_mut(i));
    if let Some(r) = target {
        // Through the socket, so not through the kernel's timer either.
        r.kernel.via_kernel = false;
        r.session.set_external_detection(false);
        if let Err(d) = r.session.handle(a.at, Input::Packet(packet)) {
            tracing::debug!(session = %r.spec.name, "BFD packet discarded: {d}");
        }
    }
}

/// A datagram off the socket in the form the shared checks take; `None` when it is too
/// short to be judged (the decoder then says why).
fn socket_frame(a: &Arrival, ttl: u8) -> Option<BfdFrame> {
    let header: [u8; BFD_HEADER_LEN] = a.bytes.get(..BFD_HEADER_LEN)?.try_into().ok()?;
    if a.len < BFD_HEADER_LEN {
        return None;
    }
    Some(BfdFrame {
        family: if a.from.is_ipv4() {
            FAMILY_V4
        } else {
            FAMILY_V6
        },
        ttl,
        _pad: [0; 2],
        payload_len: a.len as u32,
        src: [0; 16],
        header,
    })
}

/// A record of the XDP program: a packet it wants the session to see, or its detection
/// timer's expiry. `kernel_timers`: the program keeps detection times.
fn kernel_record(sessions: &mut [Running], kernel_timers: bool, rec: &BfdRecord) {
    let Some(r) = sessions
        .iter_mut()
        .find(|r| r.session.config().local_discriminator == rec.local_discriminator)
    else {
        return;
    };
    let last_rx = Instant::from_nanos(rec.ts_ns);
    r.kernel.received = rec.received;
    match rec.event {
        EVENT_BFD_PACKET => {
            let packet = match ControlPacket::decode(&rec.header) {
                Ok(p) => p,
                Err(e) => {
                    r.penalty += 1;
                    tracing::debug!(session = %r.spec.name, "BFD packet dropped: {e}");
                    return;
                }
            };
            r.kernel.via_kernel = true;
            if r.kernel.detect_changed_ns != 0 && rec.ts_ns >= r.kernel.detect_changed_ns {
                r.kernel.detect_changed_ns = 0;
            }
            r.session.set_external_detection(
                kernel_timers && !r.kernel.timer_failed && r.kernel.detect_changed_ns == 0,
            );
            if let Err(d) = r.session.handle(last_rx, Input::Packet(packet)) {
                tracing::debug!(session = %r.spec.name, "BFD packet discarded: {d}");
            }
        }
        EVENT_BFD_DOWN => {
            r.kernel.last_down = Some(KernelDown {
                last_packet_ns: rec.ts_ns,
                deadline_ns: rec.deadline_ns,
                heard_ns: clock::now().as_nanos(),
            });
            tracing::debug!(
                session = %r.spec.name,
                last_ns = rec.ts_ns,
                deadline_ns = rec.deadline_ns,
                "BFD detection time expired in the kernel"
            );
            let _ = r
                .session
                .handle(clock::now(), Input::DetectionExpired { last_rx });
        }
        EVENT_BFD_TIMER_ERROR => {
            tracing::warn!(session = %r.spec.name, "BFD: the kernel could not arm the detection timer; the agent keeps it");
            r.kernel.timer_failed = true;
            r.session.set_external_detection(false);
            let _ = r.session.handle(clock::now(), Input::Heard { last_rx });
        }
        _ => {}
    }
}

/// Before the agent's own detection deadline counts (no kernel timer, or a kernel expiry
/// the session did not share): the packets the program kept to itself, through the
/// newest arrival it recorded.
fn refresh(r: &mut Running, maps: &BfdMaps, now: Instant) {
    if !r.kernel.via_kernel || !r.session.own_detection() {
        return;
    }
    let due = r
        .session
        .last_received()
        .zip(r.session.detection_time())
        .is_some_and(|(last, detect)| last + detect <= now);
    if !due {
        return;
    }
    if let Some(state) = maps.state(r.session.config().local_discriminator)
        && state.last_ns != 0
    {
        let _ = r.session.handle(
            now,
            Input::Heard {
                last_rx: Instant::from_nanos(state.last_ns),
            },
        );
        // A packet since the new detection time was published re-armed the kernel's
        // timer with it: the deadline is the kernel's again.
        if r.kernel.detect_changed_ns != 0 && state.last_ns >= r.kernel.detect_changed_ns {
            r.kernel.detect_changed_ns = 0;
            if maps.kernel_timers && !r.kernel.timer_failed {
                r.session.set_external_detection(true);
            }
        }
    }
}

/// Publishes a session's parameters when they changed: the detection time in force
/// (when the kernel keeps it), and the epoch after a state change.
fn publish(maps: &mut BfdMaps, r: &mut Running, now: Instant) {
    // An interface that appears later, or comes back with another index, is looked up
    // again while the session is not Up (at most once a second).
    let stale = r
        .kernel
        .resolved_at
        .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
    if r.session.state() != State::Up && stale {
        r.kernel.ifindex = crate::datapath::xdp::ifindex(&r.spec.interface).unwrap_or(0);
        r.kernel.resolved_at = Some(now);
    }
    if r.kernel.ifindex == 0 {
        return;
    }
    let detect_ns = if maps.kernel_timers && !r.kernel.timer_failed {
        r.session
            .detection_time()
            .map_or(0, |d| d.as_nanos() as u64)
    } else {
        0
    };
    let mut peer = [0u8; 16];
    let family = match r.spec.peer {
        IpAddr::V4(a) => {
            peer[..4].copy_from_slice(&a.octets());
            FAMILY_V4
        }
        IpAddr::V6(a) => {
            peer = a.octets();
            FAMILY_V6
        }
    };
    let wanted = BfdParams {
        ifindex: r.kernel.ifindex,
        family,
        epoch: r.kernel.epoch,
        _pad: [0; 2],
        peer,
        detect_ns,
    };
    if r.kernel.published == Some(wanted) {
        return;
    }
    let changed = r
        .kernel
        .published
        .is_some_and(|p| p.detect_ns != 0 && p.detect_ns != detect_ns);
    match maps.publish(r.session.config().local_discriminator, wanted) {
        Ok(()) => {
            r.kernel.published = Some(wanted);
            if changed && detect_ns != 0 {
                r.kernel.detect_changed_ns = now.as_nanos().max(1);
                r.session.set_external_detection(false);
            }
        }
        Err(e) => tracing::warn!(session = %r.spec.name, "BFD: the kernel does not receive: {e}"),
    }
}

fn snapshot(r: &Running, origin: &'static str, now: Instant, standby_sent: u64) -> SessionStatus {
    let s = &r.session;
    let c = s.counters();
    let down = s.last_down();
    SessionStatus {
        name: r.spec.name.clone(),
        interface: r.spec.interface.clone(),
        peer: r.spec.peer,
        origin,
        state: s.state().to_string(),
        remote_state: s.remote_state().to_string(),
        local_discriminator: s.config().local_discriminator,
        remote_discriminator: s.remote_discriminator(),
        detection_time_ms: s.detection_time().map(ms),
        transmit_interval_ms: s.transmit_interval().map(ms),
        last_down_reason: down.map(|t| t.diag.to_string()),
        last_down_seconds_ago: down.map(|t| now.saturating_duration_since(t.at).as_secs_f64()),
        last_down_at: down.map(|t| t.at),
        received: c.received,
        discarded: c.discarded + r.penalty,
        sent: c.sent,
        standby_sent,
        downs: c.downs,
        ups: r.ups,
        polling: s.polling(),
        removing: r.removing,
        receive: if r.kernel.via_kernel { "xdp" } else { "socket" },
        detection: if r.kernel.via_kernel && s.external_detection() {
            "kernel"
        } else {
            "agent"
        },
        kernel_received: r.kernel.received,
        kernel_down: r.kernel.last_down,
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
