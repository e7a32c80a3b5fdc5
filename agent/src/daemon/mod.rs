//! `vigil run`: the agent. Wires the datapath, the elections, the kernel actions, the
//! control socket and signals together in one tokio task, so that everything an
//! election sees and does happens in order.

pub mod bfd;
pub mod instance;
pub mod owned;
pub mod receive;
pub mod split;
mod takeover;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use vigil_common::VridKey;

use crate::clock;
use crate::config::{self, Config};
use crate::control;
use crate::net::{LinkMonitor, Netlink, link::LinkEvent, sysctl};
use crate::notify::NOTIFY_TIMEOUT;
use crate::track::{Tracker, Verdict};
use crate::vrrp::State;
use crate::vrrp::endpoint::{Datapath, Endpoint, EndpointAction, EndpointInput};
use instance::{Instance, router_config};
use owned::OwnedAddresses;
use receive::Receiver;

/// Why `vigil run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is unusable (exit 1).
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    /// Something failed at run time (exit 2).
    #[error("{0:#}")]
    Runtime(#[from] anyhow::Error),
}

/// The running agent.
struct Agent {
    config: Config,
    path: PathBuf,
    netlink: Netlink,
    instances: BTreeMap<String, Instance>,
    by_key: HashMap<VridKey, String>,
    /// Every election, and the seam between them and the datapath.
    endpoint: Endpoint,
    receiver: Receiver,
    owned: OwnedAddresses,
    tracker: Tracker,
    bfd: Option<bfd::BfdService>,
    started: std::time::Instant,
    /// Where the control socket, the address record and the SIGUSR dumps live.
    runtime_dir: PathBuf,
    /// Whether the last reload applied its file, and when it was tried.
    last_reload: Option<(bool, std::time::SystemTime)>,
    /// The last `STATUS=` line sent to systemd.
    status_line: String,
    /// Instances that cannot run yet, by name.
    waiting: BTreeMap<String, Waiting>,
}

/// An instance that cannot run yet: its interface is missing or went away, or has no
/// address to send adverts from yet (an IPv6 link-local still in duplicate address
/// detection). It counts as FAULT and is tried again on every link change and every
/// housekeeping tick, as keepalived's dynamic interfaces are.
struct Waiting {
    cfg: config::Instance,
    reason: String,
}

/// A reload to apply: its sequence number, the file as read, and who asked for an answer.
type LoadedConfig = (
    u64,
    Result<Config, config::ConfigError>,
    Option<tokio::sync::oneshot::Sender<serde_json::Value>>,
);

/// How often the split-brain watch expires quiet peers and the seed's check looks for
/// virtual addresses on a Backup's interfaces.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(path: &Path) -> Result<(), RunError> {
    let config = config::load(path)?;
    raise_fd_limit();
    let netlink = Netlink::connect().map_err(anyhow::Error::from)?;
    if config.global.nonlocal_bind {
        for family in [sysctl::Family::Ipv4, sysctl::Family::Ipv6] {
            match sysctl::set_nonlocal_bind(family, true) {
                Ok(prev) => tracing::info!(
                    "{family:?} ip_nonlocal_bind set to 1 (was {})",
                    u8::from(prev)
                ),
                Err(e) => tracing::warn!("cannot set {family:?} ip_nonlocal_bind: {e}"),
            }
        }
    }
    let runtime_dir = config
        .global
        .control_socket
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("/run/vigil"));
    std::fs::create_dir_all(&runtime_dir).map_err(anyhow::Error::from)?;
    let owned_path = runtime_dir.join(format!("{}.addresses", config.global.router_id));
    remove_leftovers(&netlink, &owned_path).await;
    let owned = OwnedAddresses::new(owned_path);
    crate::panic::arm(&runtime_dir, &config.global.router_id);

    let mut instances = BTreeMap::new();
    let mut endpoint = Endpoint::new();
    let mut waiting = BTreeMap::new();
    let script_user = config.global.script_user.as_deref();
    for (name, cfg) in &config.instances {
        match Instance::new(name, cfg, &config.global.garp, script_user, &netlink).await {
            Ok(inst) => {
                endpoint
                    .add(inst.key, router_config(cfg), inst.primary, inst.unicast())
                    .map_err(|e| anyhow::anyhow!("instance {name}: {e}"))?;
                inst.remove_tagged(&netlink).await;
                instances.insert(name.clone(), inst);
            }
            Err(e) => {
                let reason = format!("{e:#}");
                tracing::warn!(instance = %name, "waiting in FAULT until it can start: {reason}");
                waiting.insert(
                    name.clone(),
                    Waiting {
                        cfg: cfg.clone(),
                        reason,
                    },
                );
            }
        }
    }
    let (ifaces, watch) = datapath_plan(&instances, &endpoint);
    let receiver = Receiver::start(&config.global, &ifaces, &watch)?;
    let (ctl_tx, mut ctl_rx) = mpsc::channel(16);
    let control = control::serve(&config.global.control_socket, ctl_tx.clone())?;
    let metrics = match config.global.metrics {
        Some(addr) => Some(crate::metrics::serve(addr, ctl_tx).await?),
        None => None,
    };
    let (mut links, snapshot) = LinkMonitor::start().await.map_err(anyhow::Error::from)?;
    let (track_tx, mut track_rx) = mpsc::unbounded_channel();
    let mut tracker = Tracker::new(track_tx, &snapshot);
    tracker.configure(&config);
    let (bfd_tx, mut bfd_rx) = mpsc::unbounded_channel();
    let bfd = start_bfd(&config, bfd_tx);

    let mut agent = Agent {
        by_key: instances
            .values()
            .map(|i| (i.key, i.name.clone()))
            .collect(),
        config,
        path: path.to_owned(),
        netlink,
        instances,
        endpoint,
        receiver,
        owned,
        tracker,
        bfd,
        started: std::time::Instant::now(),
        runtime_dir,
        last_reload: None,
        status_line: String::new(),
        waiting,
    };
    agent.bfd_setup();
    let now = clock::now();
    for inst in agent.instances.values_mut() {
        // Tracking first, so that an instance with a failed check starts in Fault and
        // one with weights starts at its effective priority.
        let v = agent.tracker.evaluate(&inst.cfg);
        apply_verdict(&mut agent.endpoint, inst, v, now);
        let key = inst.key;
        agent.endpoint.handle(now, EndpointInput::Startup { key });
        if snapshot
            .iter()
            .any(|l| l.index == inst.iface.index && !l.is_up())
        {
            agent.endpoint.handle(now, EndpointInput::LinkDown { key });
        }
    }
    agent.run_actions().await;

    let mut term = signal(SignalKind::terminate()).map_err(anyhow::Error::from)?;
    let mut int = signal(SignalKind::interrupt()).map_err(anyhow::Error::from)?;
    let mut hup = signal(SignalKind::hangup()).map_err(anyhow::Error::from)?;
    // keepalived's dump signals: without a handler their default action would kill the
    // agent and leave its addresses behind.
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(anyhow::Error::from)?;
    let mut usr2 = signal(SignalKind::user_defined2()).map_err(anyhow::Error::from)?;
    let (reload_tx, mut reload_rx) = mpsc::channel::<LoadedConfig>(4);
    let (mut reload_gen, mut reload_applied) = (0u64, 0u64);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watchdog_usec = 0;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec);
    let mut watchdog_tick = tokio::time::interval(if watchdog {
        Duration::from_micros(watchdog_usec / 2)
    } else {
        Duration::from_secs(3600)
    });
    let timer = crate::timer::MonoTimer::new().map_err(anyhow::Error::from)?;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    agent.notify_status();
    tracing::info!(
        instances = agent.instances.len(),
        datapath = %agent.receiver.describe(),
        "vigil running"
    );
    let mut fatal = None;

    loop {
        let deadline = agent.endpoint.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => {
                    if let Err(e) = timer.sleep_until(d).await {
                        // Never lose a timer: fall back to tokio's millisecond one.
                        tracing::warn!("timerfd: {e}");
                        tokio::time::sleep_until(clock::to_tokio(d)).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            records = agent.receiver.next() => {
                match records {
                    Ok(records) => agent.dispatch(records),
                    Err(e) => {
                        // Exit 2, so that systemd restarts the agent: an agent that hears
                        // nothing must not stay up, and must not look like a clean stop.
                        tracing::error!("receive path failed: {e:#}");
                        fatal = Some(e.context("receive path failed"));
                        break;
                    }
                }
            }
            _ = sleep => agent.timers(),
            Some(request) = ctl_rx.recv() => match request {
                control::Request::Status(reply) => {
                    let _ = reply.send(agent.status());
                }
                control::Request::Reload(reply) => {
                    reload_gen += 1;
                    start_reload(&agent.path, &reload_tx, reload_gen, Some(reply));
                }
                control::Request::Panic => panic!("panic requested over the control socket"),
            },
            Some(event) = links.next() => agent.link(event).await,
            Some(event) = bfd_rx.recv() => agent.bfd_event(event),
            Some(event) = track_rx.recv() => {
                if agent.tracker.apply(event) {
                    agent.retrack();
                }
            }
            _ = housekeeping.tick() => agent.housekeeping().await,
            _ = hup.recv() => {
                reload_gen += 1;
                start_reload(&agent.path, &reload_tx, reload_gen, None);
            }
            Some((generation, loaded, reply)) = reload_rx.recv() => {
                // Two quick reloads may finish out of order: the newest read wins.
                let answer = if generation > reload_applied {
                    reload_applied = generation;
                    agent.reload(loaded).await
                } else {
                    serde_json::json!({
                        "applied": false,
                        "error": "superseded by a newer reload",
                    })
                };
                if generation == reload_gen {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
                }
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
            _ = usr1.recv() => agent.dump("data", agent.status()),
            _ = usr2.recv() => agent.dump("stats", agent.stats()),
            _ = watchdog_tick.tick() => {
                if watchdog {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        agent.run_actions().await;
        agent.notify_status();
    }

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!("stopping: masters send priority 0, addresses are removed");
    let now = clock::now();
    let keys: Vec<VridKey> = agent.endpoint.keys().collect();
    for key in keys {
        agent.endpoint.handle(now, EndpointInput::Shutdown { key });
    }
    agent.run_actions().await;
    agent.owned.clear();
    // notify_stop (and `notify ... STOP`) run before the process ends, each within its
    // own time limit.
    let queues: Vec<_> = agent
        .instances
        .values_mut()
        .filter_map(|i| i.notifier.close())
        .collect();
    if !queues.is_empty()
        && tokio::time::timeout(
            NOTIFY_TIMEOUT + Duration::from_secs(2),
            futures::future::join_all(queues),
        )
        .await
        .is_err()
    {
        tracing::warn!("notify scripts still queued at exit were not run");
    }
    control.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    let _ = std::fs::remove_file(&agent.config.global.control_socket);
    crate::panic::disarm();
    match fatal {
        Some(e) => Err(RunError::Runtime(e)),
        None => Ok(()),
    }
}

/// Reads and validates the file off the agent's task, so adverts and timers keep their
/// pace during a reload; only the diff runs on it. systemd hears RELOADING=1 now and
/// READY=1 once the newest reload is applied or rejected.
fn start_reload(
    path: &Path,
    tx: &mpsc::Sender<LoadedConfig>,
    generation: u64,
    reply: Option<tokio::sync::oneshot::Sender<serde_json::Value>>,
) {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
    let (path, tx) = (path.to_owned(), tx.clone());
    tokio::task::spawn_blocking(move || {
        let _ = tx.blocking_send((generation, config::load(&path), reply));
    });
}

/// Raises the soft limit on open files to the hard one: idle clients are capped, but
/// scripts, sockets and maps for hundreds of instances still want more than the
/// customary 1024.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Interfaces to attach to and the watch entries of every instance.
fn datapath_plan(
    instances: &BTreeMap<String, Instance>,
    endpoint: &Endpoint,
) -> (
    BTreeMap<u32, String>,
    Vec<(VridKey, vigil_common::WatchEntry)>,
) {
    let ifaces = instances
        .values()
        .map(|i| (i.iface.index, i.iface.name.clone()))
        .collect();
    (ifaces, endpoint.watch_entries())
}

/// Hands an instance's tracking verdict to its election, when it changed.
fn apply_verdict(
    endpoint: &mut Endpoint,
    inst: &mut Instance,
    v: Verdict,
    now: crate::vrrp::Instant,
) {
    let key = inst.key;
    if v.priority != inst.tracked.priority {
        tracing::info!(
            instance = %inst.name,
            "effective priority {} -> {} (configured {}{}{})",
            inst.tracked.priority,
            v.priority,
            inst.cfg.priority,
            if v.why.is_empty() { "" } else { "; " },
            v.why.join(", ")
        );
        endpoint.handle(
            now,
            EndpointInput::PriorityChanged {
                key,
                priority: v.priority,
            },
        );
    }
    if v.fault != inst.tracked.fault {
        match &v.fault {
            Some(reason) => {
                tracing::warn!(instance = %inst.name, "tracked failure: {reason}");
                endpoint.handle(
                    now,
                    EndpointInput::Fault {
                        key,
                        reason: reason.clone(),
                    },
                );
            }
            None => {
                tracing::info!(instance = %inst.name, "tracked failures cleared");
                endpoint.handle(now, EndpointInput::FaultCleared { key });
            }
        }
    }
    inst.tracked = v;
}

/// Starts the BFD task with the `[bfd.NAME]` sessions, when any BFD is configured.
fn start_bfd(
    config: &Config,
    events: mpsc::UnboundedSender<bfd::BfdEvent>,
) -> Option<bfd::BfdService> {
    let wanted = !config.bfd.is_empty() || config.instances.values().any(|i| i.bfd.is_some());
    if !wanted {
        return None;
    }
    let service = bfd::BfdService::start(events);
    for (name, s) in &config.bfd {
        service.add(bfd::SessionSpec {
            name: name.clone(),
            interface: s.interface.clone(),
            peer: s.neighbor,
            source: s.source,
            timers: s.timers,
        });
    }
    Some(service)
}

/// Removes the addresses a vigil that did not exit cleanly left behind.
pub(crate) async fn remove_leftovers(netlink: &Netlink, path: &Path) {
    for a in OwnedAddresses::leftovers(path) {
        let Ok(iface) = netlink.interface(&a.interface).await else {
            continue;
        };
        let vip = crate::net::VirtualAddress::new(a.addr, a.prefix_len);
        match netlink.remove_address(&iface, &vip).await {
            Ok(true) => tracing::warn!(
                "removed {}/{} from {}: left by a vigil that did not exit cleanly",
                a.addr,
                a.prefix_len,
                a.interface
            ),
            Ok(false) => {}
            Err(e) => tracing::error!("removing leftover {}: {e}", a.addr),
        }
    }
    let _ = std::fs::remove_file(path);
}

impl Agent {
    fn dispatch(&mut self, records: Vec<Datapath>) {
        let now = clock::now();
        for r in records {
            self.endpoint.handle(now, EndpointInput::Datapath(r));
        }
    }

    /// Election timers. With XDP, a Backup hears only of changes, so before its down
    /// timer counts, the ring is drained and the VRID's state is read from the program's
    /// map for the endpoint to hand in its newest arrival.
    fn timers(&mut self) {
        let now = clock::now();
        let due = self.endpoint.due(now);
        if due.is_empty() {
            return;
        }
        if self.receiver.is_xdp() {
            let ready = self.receiver.ready();
            self.dispatch(ready);
            for key in due {
                if let Some(stats) = self.receiver.vrid_stats(&key) {
                    self.endpoint
                        .handle(now, EndpointInput::KernelState { key, stats });
                }
            }
        }
        self.endpoint.handle(now, EndpointInput::Timeout);
    }

    async fn link(&mut self, event: LinkEvent) {
        let now = clock::now();
        let (index, up) = match &event {
            LinkEvent::Changed(l) => (l.index, l.is_up()),
            LinkEvent::Removed { index, .. } => (*index, false),
        };
        for inst in self.instances.values_mut() {
            if let LinkEvent::Changed(l) = &event {
                inst.renamed(l.index, &l.name);
            }
            if inst.iface.index == index {
                tracing::info!(instance = %inst.name, iface = %inst.iface.name, up, "link changed");
                let key = inst.key;
                self.endpoint.handle(
                    now,
                    if up {
                        EndpointInput::LinkUp { key }
                    } else {
                        EndpointInput::LinkDown { key }
                    },
                );
            }
        }
        if let LinkEvent::Removed { index, name } = &event {
            self.park_instances_on(*index, name).await;
        }
        if self.tracker.link(&event) {
            self.retrack();
        }
        if matches!(event, LinkEvent::Changed(_)) && !self.waiting.is_empty() {
            self.start_waiting().await;
        }
    }

    /// An interface was deleted: its instances finish what the election asked (FAULT,
    /// notify_fault), lose their sockets and wait for an interface of that name to
    /// come back (a recreated VLAN or veth has a new index).
    async fn park_instances_on(&mut self, index: u32, name: &str) {
        let gone: Vec<String> = self
            .instances
            .values()
            .filter(|i| i.iface.index == index)
            .map(|i| i.name.clone())
            .collect();
        // What the elections asked for on the link going down (FAULT, notify_fault).
        self.run_actions().await;
        for n in gone {
            let Some(inst) = self.instances.remove(&n) else {
                continue;
            };
            inst.forget_addresses_on(index, &mut self.owned);
            self.by_key.remove(&inst.key);
            self.endpoint.remove(&inst.key);
            self.receiver.unwatch(inst.key);
            let reason = format!("interface {name} was removed");
            tracing::warn!(instance = %n, "{reason}; waiting in FAULT for it to come back");
            self.waiting.insert(
                n,
                Waiting {
                    cfg: inst.cfg.clone(),
                    reason,
                },
            );
        }
    }

    /// Tries to start every waiting instance; starts those that can, attaching the
    /// datapath to interfaces it was not on.
    async fn start_waiting(&mut self) {
        let names: Vec<String> = self.waiting.keys().cloned().collect();
        let mut started = 0;
        for name in names {
            let Some(w) = self.waiting.get(&name) else {
                continue;
            };
            let cfg = w.cfg.clone();
            let user = self.config.global.script_user.as_deref();
            match Instance::new(&name, &cfg, &self.config.global.garp, user, &self.netlink).await {
                Ok(inst) => {
                    tracing::info!(instance = %name, iface = %inst.iface.name, "can start now");
                    self.waiting.remove(&name);
                    match self.begin(inst).await {
                        Ok(()) => started += 1,
                        Err(e) => tracing::error!("{e:#}"),
                    }
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    if let Some(w) = self.waiting.get_mut(&name)
                        && w.reason != reason
                    {
                        tracing::info!(instance = %name, "still waiting: {reason}");
                        w.reason = reason;
                    }
                }
            }
        }
        if started > 0 {
            self.refresh_datapath(true);
        }
    }

    /// Gives an instance its election in the endpoint and starts it; the endpoint's
    /// first watch entry reaches the XDP map before the router starts.
    async fn begin(&mut self, mut inst: Instance) -> anyhow::Result<()> {
        self.endpoint
            .add(
                inst.key,
                router_config(&inst.cfg),
                inst.primary,
                inst.unicast(),
            )
            .map_err(|e| anyhow::anyhow!("instance {}: {e}", inst.name))?;
        self.run_actions().await;
        let now = clock::now();
        let verdict = self.tracker.evaluate(&inst.cfg);
        apply_verdict(&mut self.endpoint, &mut inst, verdict, now);
        let key = inst.key;
        self.endpoint.handle(now, EndpointInput::Startup { key });
        if let Ok(l) = self.netlink.link(inst.iface.index).await
            && !l.is_up()
        {
            self.endpoint.handle(now, EndpointInput::LinkDown { key });
        }
        self.by_key.insert(inst.key, inst.name.clone());
        let name = inst.name.clone();
        self.instances.insert(name.clone(), inst);
        self.bfd_enable(&name);
        Ok(())
    }

    /// Makes the datapath cover every running instance's interface: XDP attaches to new
    /// ones (and joins the VRRP group there); the raw path is rebuilt when `changed`.
    fn refresh_datapath(&mut self, changed: bool) {
        if self.receiver.is_xdp() {
            let ifaces: BTreeMap<u32, String> = self
                .instances
                .values()
                .map(|i| (i.iface.index, i.iface.name.clone()))
                .collect();
            for (index, name) in ifaces {
                if let Err(e) = self.receiver.ensure_interface(index, &name) {
                    tracing::error!(iface = %name, "cannot attach the datapath: {e:#}");
                }
            }
        } else if changed {
            let (ifaces, watch) = datapath_plan(&self.instances, &self.endpoint);
            match Receiver::start(&self.config.global, &ifaces, &watch) {
                Ok(r) => self.receiver = r,
                Err(e) => tracing::error!("raw receive path: {e:#}"),
            }
        }
    }

    /// Re-evaluates every instance's tracking and hands changes to the elections.
    fn retrack(&mut self) {
        let now = clock::now();
        for inst in self.instances.values_mut() {
            let v = self.tracker.evaluate(&inst.cfg);
            apply_verdict(&mut self.endpoint, inst, v, now);
        }
    }

    /// Split-brain expiry, and the seed's check for virtual addresses on a Backup.
    async fn housekeeping(&mut self) {
        if !self.waiting.is_empty() {
            self.start_waiting().await;
        }
        let now = clock::now();
        let state = |endpoint: &Endpoint, key: &VridKey| {
            endpoint
                .router(key)
                .map_or(State::Initialize, |r| r.state())
        };
        let keep: Vec<std::net::IpAddr> = self
            .instances
            .values()
            .filter(|i| state(&self.endpoint, &i.key) == State::Master)
            .flat_map(|i| i.vips().iter().map(|v| v.addr.addr))
            .collect();
        let mut seen = HashMap::new();
        for inst in self.instances.values_mut() {
            let s = state(&self.endpoint, &inst.key);
            inst.split.expire(
                &inst.name,
                now,
                s == State::Master,
                inst.cfg.advert_interval,
            );
            inst.check_addresses(s, &self.netlink, &mut self.owned, &mut seen, &keep)
                .await;
        }
    }

    /// Carries out what the elections asked for, in order.
    async fn run_actions(&mut self) {
        while let Some((key, action)) = self.endpoint.poll_action() {
            // A watch entry goes to the datapath even for an instance being removed.
            if let EndpointAction::Watch(entry) = action {
                self.receiver.watch(key, entry);
                continue;
            }
            let Some(inst) = self
                .by_key
                .get(&key)
                .and_then(|n| self.instances.get_mut(n))
            else {
                continue;
            };
            let Some(router) = self.endpoint.router(&key) else {
                continue;
            };
            match action {
                EndpointAction::Router(a) => {
                    inst.execute(a, router, &self.netlink, &mut self.owned)
                        .await;
                }
                EndpointAction::Rival {
                    source,
                    priority,
                    interval,
                    at,
                } => inst.rival(at, source, priority, interval, router.priority()),
                EndpointAction::Peer { address } => {
                    if let (Some(service), Some(timers)) = (&self.bfd, inst.cfg.bfd) {
                        service.add(takeover::spec(&inst.iface.name, address, timers));
                    }
                }
                EndpointAction::Watch(_) => {}
            }
        }
    }

    fn status(&self) -> serde_json::Value {
        let now = clock::now();
        serde_json::json!({
            "schema_version": control::STATUS_SCHEMA,
            "version": env!("CARGO_PKG_VERSION"),
            "router_id": self.config.global.router_id,
            "pid": std::process::id(),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "datapath": self.receiver.describe(),
            "datapath_fallback": self.receiver.fallback(),
            "last_reload": self.last_reload.map(|(success, at)| serde_json::json!({
                "success": success,
                "unix_time": unix_time(at),
            })),
            "datapath_counters": self.receiver.counters(),
            "config": self.path.display().to_string(),
            "instances": self.instances.values().filter_map(|i| {
                let router = self.endpoint.router(&i.key)?;
                let mut s = i.status(now, router, self.endpoint.fed(&i.key));
                s["tracking"] = self.tracker.status(&i.cfg);
                Some(s)
            }).chain(self.waiting.iter().map(|(name, w)| serde_json::json!({
                "instance": name,
                "interface": w.cfg.interface,
                "vrid": w.cfg.vrid,
                "version": w.cfg.version.number(),
                "state": State::Fault.to_string(),
                "priority": w.cfg.priority,
                "effective_priority": 0,
                "master": null,
                "last_transition": null,
                "adverts_rx": 0,
                "adverts_tx": 0,
                "transitions": [],
                "fault": w.reason,
                "waiting": true,
                "tracking": self.tracker.status(&w.cfg),
            }))).collect::<Vec<_>>(),
            "bfd": self.bfd.as_ref().map(|b| b.status()).unwrap_or_default(),
        })
    }

    /// Counters only (SIGUSR2), as keepalived's stats file has them.
    fn stats(&self) -> serde_json::Value {
        let status = self.status();
        serde_json::json!({
            "schema_version": control::STATUS_SCHEMA,
            "router_id": status["router_id"],
            "uptime_seconds": status["uptime_seconds"],
            "datapath": status["datapath"],
            "datapath_counters": status["datapath_counters"],
            "instances": status["instances"].as_array().into_iter().flatten().map(|i| serde_json::json!({
                "instance": i["instance"],
                "state": i["state"],
                "adverts_rx": i["adverts_rx"],
                "adverts_tx": i["adverts_tx"],
                "transitions": i["transitions"],
                "split_brain_adverts": i["split_brain_adverts"],
                "removed_while_backup": i["removed_while_backup"],
            })).collect::<Vec<_>>(),
        })
    }

    /// Writes `<runtime dir>/<router_id>.<what>` (mode 0600) for SIGUSR1 / SIGUSR2.
    fn dump(&self, what: &str, value: serde_json::Value) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self
            .runtime_dir
            .join(format!("{}.{what}", self.config.global.router_id));
        let result = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| {
                let text = serde_json::to_string_pretty(&value).map_err(std::io::Error::other)?;
                f.write_all(text.as_bytes())?;
                f.write_all(b"\n")
            });
        match result {
            Ok(()) => tracing::info!(path = %path.display(), "{what} written"),
            Err(e) => tracing::warn!(path = %path.display(), "cannot write {what}: {e}"),
        }
    }

    /// Tells systemd a one-line summary (`systemctl status` shows it) when it changed.
    fn notify_status(&mut self) {
        let mut counts: BTreeMap<State, usize> = BTreeMap::new();
        for inst in self.instances.values() {
            let state = self
                .endpoint
                .router(&inst.key)
                .map_or(State::Initialize, |r| r.state());
            *counts.entry(state).or_default() += 1;
        }
        if !self.waiting.is_empty() {
            *counts.entry(State::Fault).or_default() += self.waiting.len();
        }
        let states: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let mut line = format!(
            "{} instance(s): {}; datapath {}",
            self.instances.len() + self.waiting.len(),
            if states.is_empty() {
                "none".to_owned()
            } else {
                states.join(", ")
            },
            self.receiver.describe()
        );
        if let Some(why) = self.receiver.fallback() {
            line.push_str(&format!(": {why}"));
        }
        let line = line.replace('\n', " ");
        if line != self.status_line {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(&line)]);
            self.status_line = line;
        }
    }

    /// A reload (SIGHUP, `vigil reload`): unchanged instances keep state, timers and
    /// addresses; changed ones are rebuilt; removed ones release; new ones start in
    /// Backup. A bad file changes nothing. Returns what happened, for `vigil reload`.
    async fn reload(&mut self, loaded: Result<Config, config::ConfigError>) -> serde_json::Value {
        let started = std::time::Instant::now();
        let new = match loaded {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload rejected, running configuration kept:\n{e}");
                self.last_reload = Some((false, std::time::SystemTime::now()));
                return serde_json::json!({
                    "applied": false,
                    "config": self.path.display().to_string(),
                    "error": e.to_string(),
                });
            }
        };
        let mut warnings = Vec::new();
        let removed: Vec<String> = self
            .instances
            .keys()
            .filter(|n| !new.instances.contains_key(*n))
            .cloned()
            .collect();
        let changed: Vec<String> = self
            .instances
            .iter()
            .filter(|(n, i)| new.instances.get(*n).is_some_and(|c| *c != i.cfg))
            .map(|(n, _)| n.clone())
            .collect();
        let unchanged: Vec<String> = self
            .instances
            .iter()
            .filter(|(n, i)| new.instances.get(*n) == Some(&i.cfg))
            .map(|(n, _)| n.clone())
            .collect();
        let added_names: Vec<String> = new
            .instances
            .keys()
            .filter(|n| !self.instances.contains_key(*n))
            .cloned()
            .collect();
        // Scripts and files first: unchanged ones keep their task and standing, so the
        // verdicts of unchanged instances stay as they are.
        self.tracker.configure(&new);
        if new.global != self.config.global {
            tracing::warn!("reload: [global] changes take effect at the next restart");
            warnings.push("[global] changes take effect at the next restart".to_owned());
        }
        let now = clock::now();
        let mut stop = Vec::new();
        let mut in_place = Vec::new();
        let user = new.global.script_user.as_deref();
        let names: Vec<String> = self.instances.keys().cloned().collect();
        for name in names {
            let Some(cfg) = new.instances.get(&name) else {
                stop.push(name);
                continue;
            };
            let Some(inst) = self.instances.get_mut(&name) else {
                continue;
            };
            if *cfg == inst.cfg {
                continue;
            }
            if !changes_in_place(&inst.cfg, cfg) {
                stop.push(name);
                continue;
            }
            // The running election takes the new settings as inputs, not as a new
            // router: no priority-0 advert, no transition unless the new settings make
            // the election choose differently (RFC 5798 §6.4.3: a Master hears a better
            // peer; a Backup with preempt takes over from a worse one).
            let key = inst.key;
            let holding = self
                .endpoint
                .router(&key)
                .is_some_and(|r| r.state() == State::Master);
            if inst.cfg.virtual_addresses != cfg.virtual_addresses
                && let Err(e) = inst
                    .readdress(cfg, holding, &self.netlink, &mut self.owned)
                    .await
            {
                tracing::warn!(instance = %name, "reload: new addresses: {e:#}; restarting it");
                stop.push(name);
                continue;
            }
            if notify_of(&inst.cfg) != notify_of(cfg) {
                // Scripts already queued under the old settings still run.
                let _ = inst.notifier.close();
                inst.notifier = crate::notify::Notifier::new(&name, cfg, user);
            }
            inst.cfg = cfg.clone();
            // The router keeps the offset tracking gave; retrack (below) hands in the
            // new effective priority if the new weights change it.
            self.endpoint.handle(
                now,
                EndpointInput::Reconfigure {
                    key,
                    config: router_config(cfg),
                },
            );
            tracing::info!(instance = %name, "reload: changed in place");
            in_place.push(name);
        }
        for name in &stop {
            if let Some(inst) = self.instances.get(name) {
                let key = inst.key;
                self.endpoint.handle(now, EndpointInput::Shutdown { key });
            }
        }
        self.run_actions().await;
        for name in &stop {
            if let Some(inst) = self.instances.remove(name) {
                self.by_key.remove(&inst.key);
                self.endpoint.remove(&inst.key);
                self.receiver.unwatch(inst.key);
                tracing::info!(instance = %name, "reload: instance stopped");
            }
        }
        // Waiting instances take the new file's settings, or go with it.
        self.waiting
            .retain(|name, _| new.instances.contains_key(name));
        for (name, w) in self.waiting.iter_mut() {
            if let Some(cfg) = new.instances.get(name) {
                w.cfg = cfg.clone();
            }
        }
        let mut added = 0;
        for (name, cfg) in &new.instances {
            if self.instances.contains_key(name) || self.waiting.contains_key(name) {
                continue;
            }
            let user = new.global.script_user.as_deref();
            match Instance::new(name, cfg, &new.global.garp, user, &self.netlink).await {
                Ok(inst) => match self.begin(inst).await {
                    Ok(()) => added += 1,
                    Err(e) => {
                        tracing::error!("reload: {e:#}");
                        warnings.push(format!("{e:#}"));
                    }
                },
                Err(e) => {
                    let reason = format!("{e:#}");
                    tracing::warn!(instance = %name, "reload: waiting in FAULT until it can start: {reason}");
                    warnings.push(format!("instance {name} waits: {reason}"));
                    self.waiting.insert(
                        name.clone(),
                        Waiting {
                            cfg: cfg.clone(),
                            reason,
                        },
                    );
                }
            }
        }
        // A new instance may be on an interface the datapath is not on yet: without the
        // XDP program (or a raw socket) and the multicast membership there it would hear
        // nothing and make itself Master.
        self.refresh_datapath(added > 0 || !stop.is_empty());
        let kept = self.instances.len() - added;
        self.config = new;
        self.retrack();
        tracing::info!(
            kept,
            restarted_or_added = added,
            removed_or_restarted = stop.len(),
            applied_in_us = started.elapsed().as_micros() as u64,
            "reloaded"
        );
        self.last_reload = Some((true, std::time::SystemTime::now()));
        serde_json::json!({
            "applied": true,
            "config": self.path.display().to_string(),
            "changed": changed,
            "changed_in_place": in_place,
            "added": added_names,
            "removed": removed,
            "unchanged": unchanged,
            "warnings": warnings,
            "applied_in_us": started.elapsed().as_micros() as u64,
        })
    }
}

/// Whether the differences between `old` and `new` are all ones the running router
/// and its instance take without restarting: priority, advert interval, preemption,
/// `down_timer_adverts`, authentication, the checksum style, the virtual addresses (in
/// the same family), tracking, notify scripts and the initial state (used only at
/// start). The interface, VRID, version, unicast setup, accept mode and GARP timing make
/// another router.
fn changes_in_place(old: &config::Instance, new: &config::Instance) -> bool {
    if old.family() != new.family() {
        return false;
    }
    let mut same = new.clone();
    same.priority = old.priority;
    same.advert_interval = old.advert_interval;
    same.preempt = old.preempt;
    same.preempt_delay = old.preempt_delay;
    same.down_timer_adverts = old.down_timer_adverts;
    same.auth_pass.clone_from(&old.auth_pass);
    same.v3_checksum_as_v2 = old.v3_checksum_as_v2;
    same.virtual_addresses.clone_from(&old.virtual_addresses);
    same.initial_state = old.initial_state;
    same.track_scripts.clone_from(&old.track_scripts);
    same.track_interfaces.clone_from(&old.track_interfaces);
    same.track_files.clone_from(&old.track_files);
    same.notify_master.clone_from(&old.notify_master);
    same.notify_backup.clone_from(&old.notify_backup);
    same.notify_fault.clone_from(&old.notify_fault);
    same.notify_stop.clone_from(&old.notify_stop);
    same.notify.clone_from(&old.notify);
    same == *old
}

/// The notify scripts of an instance, to tell whether its queue needs rebuilding.
fn notify_of(c: &config::Instance) -> [&Option<String>; 5] {
    [
        &c.notify_master,
        &c.notify_backup,
        &c.notify_fault,
        &c.notify_stop,
        &c.notify,
    ]
}

/// Seconds since the Unix epoch, for status and metrics.
fn unix_time(at: std::time::SystemTime) -> f64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
