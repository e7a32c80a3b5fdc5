//! `vigil run`: the agent. Wires the datapath, the elections, the kernel actions, the
//! control socket and signals together in one tokio task, so that everything an
//! election sees and does happens in order.

mod adverts;
pub mod bfd;
pub mod groups;
pub mod instance;
mod no_accept;
pub mod owned;
mod phases;
pub mod receive;
mod reload;
mod report;
pub mod split;
mod takeover;
mod waiting;
mod wake;
mod xdp_watch;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use vigil_common::VridKey;
use vigil_common::bfd::BfdRecord;

use crate::clock;
use crate::config::{self, Config};
use crate::control;
use crate::datapath::transmit::SenderPool;
use crate::net::{LinkMonitor, Netlink, link::LinkEvent, sysctl};
use crate::notify::NOTIFY_TIMEOUT;
use crate::track::{Tracker, Verdict};
use crate::vrrp::State;
use crate::vrrp::endpoint::{Datapath, Endpoint, EndpointAction, EndpointInput};
use adverts::Adverts;
use instance::{Instance, router_config};
use owned::OwnedAddresses;
pub(crate) use owned::remove_leftovers;
use receive::Receiver;
use reload::{LoadedConfig, start_reload};
use waiting::Waiting;

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
    /// Where the BFD task (started at once, or by the first reload that asks for BFD)
    /// reports session changes.
    bfd_events: mpsc::UnboundedSender<bfd::BfdEvent>,
    groups: groups::Groups,
    started: std::time::Instant,
    /// Where the control socket, the address record and the SIGUSR dumps live.
    runtime_dir: PathBuf,
    /// Whether the last reload applied its file, and when it was tried.
    last_reload: Option<(bool, std::time::SystemTime)>,
    /// The last `STATUS=` line sent to systemd.
    status_line: String,
    /// Whether something the `STATUS=` line shows may have changed.
    status_stale: bool,
    /// Instances that cannot run yet, by name.
    waiting: BTreeMap<String, Waiting>,
    /// An address changed on some interface since the last housekeeping round.
    addresses_changed: bool,
    /// Advert sockets, one per interface and source address.
    senders: SenderPool,
    /// Every instance's encoded adverts and those queued this round.
    adverts: Adverts,
    /// Whether the last round of actions held anything but adverts.
    eventful: bool,
    /// [`Agent::needs_housekeeping`], as of the last round that could change it.
    housekeeping_wanted: bool,
    /// Backups woken for their down deadline, by what and when: kept from the kernel's
    /// alarm until the deadline has passed.
    wakes: HashMap<VridKey, wake::Wake>,
    /// The latest down deadline a kernel alarm announced ahead of time: until it has
    /// passed, the loop keeps its CPU for deadlines up to it.
    alarm: Option<crate::vrrp::Instant>,
    /// The election loop's scheduling class, as the kernel granted it.
    scheduling: String,
    /// The addresses the nftables table of Accept_Mode False refuses, as last written.
    no_accept: Vec<std::net::IpAddr>,
    /// Takeovers whose first advert left in this round's batch, by instance name, with
    /// when: logged once the round's adverts are all out.
    wake_logs: Vec<(String, wake::Wake, crate::vrrp::Instant)>,
}

/// How often the split-brain watch expires quiet peers and the classic check looks for
/// virtual addresses on a Backup's interfaces, while there is something to look at (see
/// [`Agent::needs_housekeeping`]): an idle agent does not wake for it.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// How often, at most, the XDP program's attachments are checked (see `xdp_watch`):
/// at the first wake-up of the agent after this much time.
const XDP_CHECK: Duration = Duration::from_secs(1);

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(path: &Path) -> Result<(), RunError> {
    let mut phases = phases::Phases::start();
    let config = config::load(path)?;
    phases.done("config parsed");
    // The XDP program loads (kernel BTF parse, verifier) while the rest starts up.
    let preload = receive::Preload::start(&config.global);
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
    phases.done("netlink connected, leftover addresses removed");

    let mut instances = BTreeMap::new();
    let mut endpoint = Endpoint::new();
    let mut waiting = BTreeMap::new();
    let mut senders = SenderPool::default();
    let script_user = config.global.script_user.as_deref();
    for (name, cfg) in &config.instances {
        match Instance::new(name, cfg, script_user, &netlink, &mut senders).await {
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
    phases.done("instances created");
    let (ifaces, watch) = datapath_plan(&instances, &endpoint);
    let mut receiver = Receiver::start(&config.global, &ifaces, &watch, preload)?;
    for inst in instances.values() {
        publish_down_params(&mut receiver, &mut endpoint, inst);
    }
    phases.done("datapath loaded and attached");
    let (ctl_tx, mut ctl_rx) = mpsc::channel(16);
    let control = control::serve(&config.global.control_socket, ctl_tx.clone())?;
    let metrics = match config.global.metrics {
        Some(addr) => Some(crate::metrics::serve(addr, ctl_tx).await?),
        None => None,
    };
    phases.done("control socket and metrics listening");
    let (mut links, snapshot) = LinkMonitor::start().await.map_err(anyhow::Error::from)?;
    phases.done("link monitor started (netlink link dump)");
    let (track_tx, mut track_rx) = mpsc::unbounded_channel();
    let mut tracker = Tracker::new(track_tx, &snapshot);
    tracker.configure(&config);
    let (bfd_events, mut bfd_rx) = mpsc::unbounded_channel();

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
        bfd: None,
        bfd_events,
        groups: groups::Groups::default(),
        started: std::time::Instant::now(),
        runtime_dir,
        last_reload: None,
        status_line: String::new(),
        status_stale: true,
        waiting,
        // The first round looks at what was there before vigil started.
        addresses_changed: true,
        senders,
        adverts: Adverts::default(),
        eventful: true,
        housekeeping_wanted: true,
        wakes: HashMap::new(),
        alarm: None,
        scheduling: String::new(),
        no_accept: Vec::new(),
        wake_logs: Vec::new(),
    };
    let config = agent.config.clone();
    agent.bfd_configure(&config);
    agent.bfd_setup();
    agent.groups.configure(&agent.config);
    let now = clock::now();
    for inst in agent.instances.values_mut() {
        // Tracking first, so that an instance with a failed check starts in Fault and
        // one with weights starts at its effective priority.
        let v = agent.tracker.evaluate(&inst.cfg);
        apply_verdict(&mut agent.endpoint, &agent.receiver, inst, v, now);
        let key = inst.key;
        // The link state first: an address owner started on a down link must go to
        // FAULT, not add its addresses and send a priority 0 right after.
        if snapshot
            .iter()
            .any(|l| l.index == inst.iface.index && !l.is_up())
        {
            agent.endpoint.handle(now, EndpointInput::LinkDown { key });
        }
        agent.endpoint.handle(now, EndpointInput::Startup { key });
    }
    agent.groups.apply(
        &mut agent.endpoint,
        &agent.receiver,
        &mut agent.instances,
        now,
    );
    phases.done("tracking evaluated, elections started");
    // Before the first actions: an address owner adds its addresses in them.
    agent.sync_no_accept(true).await;
    agent.run_actions().await;
    phases.done("first actions run");

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
    let mut bfd_tick = tokio::time::interval(Duration::from_secs(1));
    bfd_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut xdp_checked = std::time::Instant::now();
    let timer = crate::timer::MonoTimer::new().map_err(anyhow::Error::from)?;
    // This thread reads the kernel's silence events and sends the takeover's first
    // advert: a busy host must not keep it waiting for a time slice.
    let scheduling = crate::sched::realtime("election loop", agent.config.global.realtime_priority);
    agent.scheduling = scheduling.to_string();
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    phases.done("READY sent");
    agent.notify_status();
    tracing::info!(
        instances = agent.instances.len(),
        datapath = %agent.receiver.describe(),
        down_timers = %agent.receiver.down_timers().describe(),
        %scheduling,
        "vigil running"
    );
    let mut fatal = None;
    let mut ticked = false;

    loop {
        // Never a wake-up of its own: an idle Backup sleeps through its Master's adverts
        // (the kernel keeps its timer). A Backup made deaf by a detach takes over and
        // from then on wakes for its own adverts, which is when this finds it.
        if agent.receiver.is_xdp() && xdp_checked.elapsed() >= XDP_CHECK {
            xdp_checked = std::time::Instant::now();
            agent.check_xdp().await;
        }
        // A round of nothing but a Master's adverts cannot change what housekeeping
        // looks at; only other rounds pay for asking every instance.
        if agent.eventful || !ticked {
            agent.housekeeping_wanted = agent.needs_housekeeping();
        }
        ticked = false;
        let deadline = agent.endpoint.poll_timeout();
        let spin = deadline.is_some_and(|d| agent.keeps_cpu_for(d));
        let early = deadline.filter(|d| !spin && agent.wakes_early_for(*d));
        let sleep = async {
            match deadline {
                // Woken by the kernel's alarm ahead of a down deadline: an idle CPU is
                // slow to wake again, and the takeover's advert must leave on time.
                Some(d) if spin => crate::timer::spin_until(d),
                Some(d) => {
                    let d = early.map_or(d, |_| d - down_lead());
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
            _ = sleep => match early {
                Some(d) => agent.wake_early(d),
                None => {
                    agent.timers();
                    ticked = true;
                }
            },
            Some(request) = ctl_rx.recv() => match request {
                control::Request::Status(reply) => {
                    let _ = reply.send(agent.status());
                }
                control::Request::Reload(reply) => {
                    reload_gen += 1;
                    start_reload(&agent.path, &reload_tx, reload_gen, Some(reply));
                }
                control::Request::BfdHistory(seq, reply) => {
                    let (entries, newest) = agent
                        .bfd
                        .as_ref()
                        .map(|b| b.history_since(seq))
                        .unwrap_or_default();
                    let _ = reply.send(serde_json::json!({
                        "entries": entries,
                        "newest": newest,
                        "sessions": agent.bfd.as_ref().map(|b| b.status()).unwrap_or_default(),
                    }));
                }
                control::Request::Panic => panic!("panic requested over the control socket"),
            },
            Some(event) = links.next() => agent.link(event).await,
            Some(event) = bfd_rx.recv() => agent.bfd_event(event),
            _ = bfd_tick.tick(), if agent.bfd.is_some() => agent.bfd_sweep(),
            Some(event) = track_rx.recv() => {
                if agent.tracker.apply(event) {
                    agent.retrack();
                }
            }
            _ = housekeeping.tick(), if agent.housekeeping_wanted => agent.housekeeping().await,
            _ = hup.recv() => {
                reload_gen += 1;
                start_reload(&agent.path, &reload_tx, reload_gen, None);
            }
            Some((generation, loaded, reply)) = reload_rx.recv() => {
                // Two quick reloads may finish out of order: the newest read wins.
                let answer = if generation > reload_applied {
                    reload_applied = generation;
                    let answer = agent.reload(loaded).await;
                    agent.sync_no_accept(false).await;
                    answer
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
        agent.groups.apply(
            &mut agent.endpoint,
            &agent.receiver,
            &mut agent.instances,
            clock::now(),
        );
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
    for inst in agent.instances.values_mut() {
        inst.close(&agent.netlink).await;
    }
    agent.owned.clear();
    agent.clear_no_accept().await;
    // notify_stop (and `notify ... STOP`) run before the process ends, each within its
    // own time limit.
    let mut queues: Vec<_> = agent
        .instances
        .values_mut()
        .filter_map(|i| i.notifier.close())
        .collect();
    queues.extend(agent.groups.close());
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

/// How far ahead of a down deadline the agent is woken, at most (the kernel's alarm, or
/// its own early wake-up).
fn down_lead() -> Duration {
    Duration::from_nanos(u64::from(vigil_common::down::ALARM_LEAD_NS))
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

/// Hands an instance's tracking verdict (with any fault its sync group imposes) to its
/// election, when it changed.
fn apply_verdict(
    endpoint: &mut Endpoint,
    receiver: &Receiver,
    inst: &mut Instance,
    own: Verdict,
    now: crate::vrrp::Instant,
) {
    let key = inst.key;
    inst.own = own.clone();
    let mut v = own;
    if v.fault.is_none() {
        v.fault = inst.sync_fault.clone();
    }
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
        // The adverts the kernel kept quiet count at the old priority.
        if let Some(stats) = receiver.vrid_stats(&key) {
            endpoint.handle(
                now,
                EndpointInput::KernelState {
                    key,
                    stats,
                    timer_armed: None,
                },
            );
        }
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

impl Agent {
    fn dispatch(&mut self, records: Vec<Datapath>) {
        let now = clock::now();
        for r in records {
            // BFD shares the ring: its records go to the BFD task.
            if let Datapath::Event(e) = &r
                && BfdRecord::is_bfd(e.event)
            {
                if let Some(service) = &self.bfd {
                    service.record(BfdRecord::from_advert(e));
                }
                continue;
            }
            if let Datapath::Event(e) = &r
                && e.event == vigil_common::event::EVENT_SILENCE
            {
                let key = VridKey {
                    ifindex: e.ifindex,
                    family: e.family,
                    vrid: e.vrid,
                    _pad: 0,
                };
                let deadline = crate::vrrp::Instant::from_nanos(e.deadline_ns);
                self.wakes.insert(
                    key,
                    wake::Wake {
                        deadline,
                        kernel: Some(crate::vrrp::Instant::from_nanos(e.first_ns)),
                        woke: now,
                        sending: None,
                    },
                );
                if deadline > now {
                    self.alarm = self.alarm.max(Some(deadline));
                }
            }
            self.endpoint.handle(now, EndpointInput::Datapath(r));
        }
    }

    /// Election timers. With XDP, a Backup hears only of changes, so before its down
    /// timer counts, the ring is drained and the VRID's state is read from the program's
    /// map for the endpoint to hand in its newest arrival.
    fn timers(&mut self) {
        let now = clock::now();
        if self.endpoint.poll_timeout().is_none_or(|d| d > now) {
            return;
        }
        // Only a Backup's down timer needs the kernel's view and a record of the wake;
        // a Master's advert timer does not (two map reads per advert would be a Master's
        // main cost).
        let mut backups = Vec::new();
        self.endpoint.due_backups_into(now, &mut backups);
        for key in &backups {
            let router = self.endpoint.router(key);
            if let Some(deadline) = router
                .filter(|r| r.state() == State::Backup && !self.endpoint.kernel_timer(key).armed)
                .and_then(|r| r.poll_timeout())
            {
                // The kernel's alarm, if it woke the loop for this deadline, stays on record.
                self.wakes.entry(*key).or_insert(wake::Wake {
                    deadline,
                    kernel: None,
                    woke: now,
                    sending: None,
                });
            }
        }
        if self.receiver.is_xdp() {
            let ready = self.receiver.ready();
            self.dispatch(ready);
            self.endpoint.due_backups_into(now, &mut backups);
            for key in backups {
                self.read_kernel_state(now, key);
            }
        }
        self.endpoint.handle(now, EndpointInput::Timeout);
    }

    async fn link(&mut self, event: LinkEvent) {
        let now = clock::now();
        let (index, up) = match &event {
            LinkEvent::Changed(l) => (l.index, l.is_up()),
            LinkEvent::Removed { index, .. } => (*index, false),
            LinkEvent::Addresses { .. } => {
                self.addresses_changed = true;
                return;
            }
        };
        for inst in self.instances.values_mut() {
            if let LinkEvent::Changed(l) = &event {
                inst.renamed(l.index, &l.name);
            }
            // A deleted virtual MAC interface takes the instance's addresses and
            // adverts with it: a fault, as its own interface going.
            let vmac_removed = matches!(event, LinkEvent::Removed { .. }) && inst.is_vmac(index);
            if inst.iface.index == index || vmac_removed {
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

    /// Re-evaluates every instance's tracking and hands changes to the elections.
    fn retrack(&mut self) {
        let now = clock::now();
        for inst in self.instances.values_mut() {
            let v = self.tracker.evaluate(&inst.cfg);
            apply_verdict(&mut self.endpoint, &self.receiver, inst, v, now);
        }
    }

    /// Split-brain expiry, a Master's lost addresses put back, and the classic check for
    /// virtual addresses on a Backup.
    async fn housekeeping(&mut self) {
        let addresses_changed = std::mem::take(&mut self.addresses_changed);
        if addresses_changed {
            self.park_instances_without_source().await;
        }
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
            // Only an address change can take a Master's addresses away.
            if addresses_changed && s == State::Master {
                inst.restore_addresses(&self.netlink, &mut self.owned, &mut seen)
                    .await;
            }
            inst.check_addresses(s, &self.netlink, &mut self.owned, &mut seen, &keep)
                .await;
        }
    }

    /// Carries out what the elections asked for, in order.
    async fn run_actions(&mut self) {
        let mut reannounced = Vec::new();
        self.eventful = false;
        let mut firsts_sent = false;
        loop {
            if self.endpoint.next_is_slow() {
                // Slow work yields to a down deadline that is due, or so close that the
                // loop would keep its CPU for it: the Backups that take over there (their
                // Master's adverts arrived a little after those of this round) join the
                // round's first adverts instead of waiting for its address work.
                if self.down_deadline_due() {
                    self.timers();
                    firsts_sent = false;
                }
                // The round's first adverts leave together before any address work.
                if !firsts_sent {
                    firsts_sent = true;
                    self.send_first_adverts().await;
                }
            }
            let Some((key, action)) = self.endpoint.poll_action() else {
                break;
            };
            // A Master's every tick: its advert's bytes are ready; nothing else is
            // looked up.
            if let EndpointAction::Router(crate::vrrp::Action::SendAdvert { priority }) = action
                && self.adverts.queue(&key, priority)
            {
                continue;
            }
            self.eventful = true;
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
                    let mut router = router;
                    if let crate::vrrp::Action::StateChanged(t) = &a {
                        self.status_stale = true;
                        if t.to == State::Master {
                            let mut wake = self.wakes.remove(&key);
                            // RFC 5798 §6.4.1 / §6.4.2: the takeover's advert is sent, then
                            // the router is Master. It leaves before the transition's log
                            // line and notify scripts: a slow log (a busy journal) must
                            // not delay a takeover.
                            if let Some(priority) = self.endpoint.next_advert(&key) {
                                self.endpoint.poll_action();
                                let Some(r) = self.endpoint.router(&key) else {
                                    continue;
                                };
                                inst.queue_advert(r, priority, &mut self.adverts).await;
                                if let Some(w) = &mut wake {
                                    w.sending = Some(clock::now());
                                }
                                if self.adverts.flush(&key).await > 0
                                    && let Some(w) = wake
                                {
                                    w.log(&inst.name, clock::now());
                                }
                                router = r;
                            }
                        }
                    }
                    if matches!(a, crate::vrrp::Action::Reannounce) {
                        reannounced.push(inst.name.clone());
                    }
                    inst.execute(a, router, &self.netlink, &mut self.owned, &mut self.adverts)
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
                        service.learn(&inst.name, &inst.iface.name, address, timers);
                    }
                }
                EndpointAction::PeerGone { address } => {
                    if let Some(service) = &self.bfd {
                        tracing::info!(instance = %inst.name, peer = %address, "BFD peer silent; its session is let go");
                        service.forget(&inst.name, &inst.iface.name, address);
                    }
                }
                EndpointAction::Watch(_) => {}
            }
        }
        self.reannounce_groups(&reannounced).await;
        self.adverts.send().await;
        for (name, wake, sent) in self.wake_logs.drain(..) {
            wake.log(&name, sent);
        }
        let now = clock::now();
        self.wakes.retain(|_, w| w.deadline > now);
        if self.alarm.is_some_and(|a| a <= now) {
            self.alarm = None;
        }
    }

    /// Whether a deadline is due now, after keeping the CPU until it if an alarm
    /// announced it and it is close ([`Agent::keeps_cpu_for`]).
    fn down_deadline_due(&self) -> bool {
        let Some(d) = self.endpoint.poll_timeout() else {
            return false;
        };
        if d <= clock::now() {
            return true;
        }
        if self.keeps_cpu_for(d) {
            crate::timer::spin_until(d);
            return true;
        }
        false
    }

    /// Sends, in one batch (a `sendmmsg` per socket), the advert of every router that
    /// must advertise this round ahead of its address work: takeovers, a sync group's
    /// members, Masters answering a rival, priority 0 on a stop. Many routers taking
    /// over at once each advertise at their own deadline, not after the netlink changes
    /// and announcements of those queued before them (RFC 5798 §6.4.2: the advert, then
    /// the addresses and announcements, which follow in order). Adverts queued earlier
    /// in the round leave with them.
    async fn send_first_adverts(&mut self) {
        let mut first = Vec::new();
        self.endpoint.take_first_adverts(&mut first);
        if first.is_empty() {
            return;
        }
        let mut takeovers = Vec::new();
        for f in &first {
            if f.takeover
                && let Some(w) = self.wakes.remove(&f.key)
            {
                takeovers.push((f.key, w, self.adverts.sent(&f.key)));
            }
            if self.adverts.queue(&f.key, f.priority) {
                continue;
            }
            let (Some(inst), Some(router)) = (
                self.by_key.get(&f.key).and_then(|n| self.instances.get(n)),
                self.endpoint.router(&f.key),
            ) else {
                continue;
            };
            inst.queue_advert(router, f.priority, &mut self.adverts)
                .await;
        }
        let sending = clock::now();
        self.adverts.send().await;
        let sent = clock::now();
        for (key, mut wake, before) in takeovers {
            if self.adverts.sent(&key) > before
                && let Some(name) = self.by_key.get(&key)
            {
                wake.sending = Some(sending);
                // Logged at the end of the round: a Backup due next must not wait for
                // these lines.
                self.wake_logs.push((name.clone(), wake, sent));
            }
        }
    }

    /// Whether the loop should keep its CPU until `deadline` instead of sleeping: an
    /// alarm (the kernel's, or the agent's own early wake-up) announced a down deadline
    /// at or after it, and it is close.
    fn keeps_cpu_for(&self, deadline: crate::vrrp::Instant) -> bool {
        self.alarm.is_some_and(|a| deadline <= a)
            && deadline.saturating_duration_since(clock::now()) <= down_lead()
    }

    /// Whether the loop should wake a little ahead of `deadline`, as the kernel's alarm
    /// does: it is the down deadline of a Backup whose timer the agent keeps (no kernel
    /// timers, or a deadline handed back), on XDP, where the VRID's newest arrival can be
    /// read at any moment. Not on the raw-socket path: its frames come through tasks of
    /// this thread, which a loop keeping its CPU would hold back.
    fn wakes_early_for(&self, deadline: crate::vrrp::Instant) -> bool {
        if !self.receiver.is_xdp()
            || deadline.saturating_duration_since(clock::now()) <= down_lead()
        {
            return false;
        }
        let mut due = Vec::new();
        self.endpoint.due_backups_into(deadline, &mut due);
        !due.is_empty()
    }

    /// Hands the endpoint a VRID's state and its kernel timer, read from the program's
    /// maps; false when the VRID has no state there.
    fn read_kernel_state(&mut self, now: crate::vrrp::Instant, key: VridKey) -> bool {
        let Some(stats) = self.receiver.vrid_stats(&key) else {
            return false;
        };
        let timer_armed = Some(self.receiver.down_timer_armed(&key));
        self.endpoint.handle(
            now,
            EndpointInput::KernelState {
                key,
                stats,
                timer_armed,
            },
        );
        true
    }

    /// Woken a little ahead of `deadline` for Backups whose down timer the agent keeps:
    /// each is handed the VRID's newest arrival, which moves the deadline of a Backup
    /// whose Master is alive; the deadlines that stand are kept on the CPU, as after the
    /// kernel's alarm.
    fn wake_early(&mut self, deadline: crate::vrrp::Instant) {
        let now = clock::now();
        let ready = self.receiver.ready();
        self.dispatch(ready);
        let mut due = Vec::new();
        self.endpoint.due_backups_into(deadline, &mut due);
        for &key in &due {
            if self.read_kernel_state(now, key) {
                self.endpoint.handle(now, EndpointInput::Refresh { key });
            }
        }
        due.clear();
        let horizon = now + down_lead();
        self.endpoint.due_backups_into(horizon, &mut due);
        for key in &due {
            if let Some(d) = self
                .endpoint
                .router(key)
                .filter(|r| r.state() == State::Backup)
                .and_then(|r| r.poll_timeout())
            {
                self.wakes.entry(*key).or_insert(wake::Wake {
                    deadline: d,
                    kernel: None,
                    woke: now,
                    sending: None,
                });
            }
        }
        if !due.is_empty() {
            self.alarm = self.alarm.max(Some(horizon));
        }
    }

    /// keepalived's rule for a sync group: when one Master member answers a
    /// lower-priority advert and announces its addresses again, every other member that
    /// is Master does the same (an advert at its priority, then its own
    /// `garp_lower_prio_*` schedule), so hosts learn the group's addresses back together.
    async fn reannounce_groups(&mut self, reannounced: &[String]) {
        let mut followers: Vec<String> = Vec::new();
        for name in reannounced {
            let Some(group) = self.groups.members_with(name) else {
                continue;
            };
            for m in group {
                if !reannounced.contains(&m) && !followers.contains(&m) {
                    followers.push(m);
                }
            }
        }
        // Every member's advert leaves before any member's announcements start.
        followers.retain(|name| {
            self.instances
                .get(name)
                .and_then(|i| self.endpoint.router(&i.key))
                .is_some_and(|r| r.state() == State::Master)
        });
        for name in &followers {
            if let Some(inst) = self.instances.get(name)
                && let Some(router) = self.endpoint.router(&inst.key)
            {
                inst.queue_advert(router, router.priority(), &mut self.adverts)
                    .await;
            }
        }
        self.adverts.send().await;
        for name in followers {
            if let Some(inst) = self.instances.get_mut(&name) {
                tracing::info!(instance = %name, "announcing again with its sync group");
                inst.restart_reannouncements();
            }
        }
    }

    /// Whether a housekeeping round has work: a split-brain episode to expire, an
    /// address change to look at, an instance waiting to start, or an address vigil
    /// added still on a node that is not Master (a removal to retry).
    fn needs_housekeeping(&self) -> bool {
        self.addresses_changed
            || !self.waiting.is_empty()
            || self.instances.values().any(|i| {
                let master = self
                    .endpoint
                    .router(&i.key)
                    .is_some_and(|r| r.state() == State::Master);
                i.split.episode.is_some() || (!master && i.holds_owned(&self.owned))
            })
    }
}

/// Hands an instance's Master_Down_Timer to the kernel, when the datapath keeps timers.
fn publish_down_params(receiver: &mut Receiver, endpoint: &mut Endpoint, inst: &Instance) {
    if receiver.set_down_params(inst.key, instance::down_params(&inst.cfg)) {
        // Adverts stamped from now on found the parameters in the map.
        let now = clock::now();
        endpoint.handle(
            now,
            EndpointInput::KernelTimer {
                key: inst.key,
                since_ns: now.as_nanos(),
            },
        );
    }
}
