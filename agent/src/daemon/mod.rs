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
use crate::vrrp::{Input, State, Transition};
use instance::{Instance, watch_entry};
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
    receiver: Receiver,
    owned: OwnedAddresses,
    tracker: Tracker,
    bfd: Option<bfd::BfdService>,
    /// Per instance with `bfd`: the peers known, for BFD-assisted takeover.
    peers: HashMap<String, crate::bfd::PeerTable>,
    started: std::time::Instant,
}

/// How often the split-brain watch expires quiet peers and the seed's check looks for
/// virtual addresses on a Backup's interfaces.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(path: &Path) -> Result<(), RunError> {
    let config = config::load(path)?;
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

    let mut instances = BTreeMap::new();
    let script_user = config.global.script_user.as_deref();
    for (name, cfg) in &config.instances {
        let inst = Instance::new(name, cfg, &config.global.garp, script_user, &netlink).await?;
        instances.insert(name.clone(), inst);
    }
    let (ifaces, watch) = datapath_plan(&instances);
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
        receiver,
        owned,
        tracker,
        bfd,
        peers: HashMap::new(),
        started: std::time::Instant::now(),
    };
    agent.bfd_setup();
    let now = clock::now();
    for inst in agent.instances.values_mut() {
        // Tracking first, so that an instance with a failed check starts in Fault and
        // one with weights starts at its effective priority.
        apply_verdict(inst, agent.tracker.evaluate(&inst.cfg), now);
        inst.router.handle(now, Input::Startup);
        if snapshot
            .iter()
            .any(|l| l.index == inst.iface.index && !l.is_up())
        {
            inst.router.handle(now, Input::LinkDown);
        }
    }
    agent.run_actions().await;

    let mut term = signal(SignalKind::terminate()).map_err(anyhow::Error::from)?;
    let mut int = signal(SignalKind::interrupt()).map_err(anyhow::Error::from)?;
    let mut hup = signal(SignalKind::hangup()).map_err(anyhow::Error::from)?;
    let (reload_tx, mut reload_rx) = mpsc::channel(4);
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
    tracing::info!(
        instances = agent.instances.len(),
        datapath = %agent.receiver.describe(),
        "vigil running"
    );

    loop {
        let deadline = agent
            .instances
            .values()
            .filter_map(|i| i.router.poll_timeout())
            .min();
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
                    Ok(records) => agent.dispatch(&records),
                    Err(e) => {
                        tracing::error!("receive path failed: {e:#}");
                        break;
                    }
                }
            }
            _ = sleep => agent.timers(),
            Some(reply) = ctl_rx.recv() => {
                let _ = reply.send(agent.status());
            }
            Some(event) = links.next() => agent.link(event),
            Some(event) = track_rx.recv() => {
                if agent.tracker.apply(event) {
                    agent.retrack();
                }
            }
            Some(event) = bfd_rx.recv() => agent.bfd_event(event),
            _ = housekeeping.tick() => agent.housekeeping().await,
            _ = hup.recv() => {
                // Reading and validating the file happens off this task, so adverts
                // and timers keep their pace during a reload; only the diff runs here.
                reload_gen += 1;
                let (path, tx, generation) = (agent.path.clone(), reload_tx.clone(), reload_gen);
                tokio::task::spawn_blocking(move || {
                    let _ = tx.blocking_send((generation, config::load(&path)));
                });
            }
            Some((generation, loaded)) = reload_rx.recv() => {
                // Two quick SIGHUPs may finish out of order: the newest read wins.
                if generation > reload_applied {
                    reload_applied = generation;
                    agent.reload(loaded).await;
                }
            }
            _ = watchdog_tick.tick() => {
                if watchdog {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        agent.run_actions().await;
    }

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!("stopping: masters send priority 0, addresses are removed");
    let now = clock::now();
    for inst in agent.instances.values_mut() {
        inst.router.handle(now, Input::Shutdown);
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
    Ok(())
}

/// Interfaces to attach to and the watch entries of every instance.
fn datapath_plan(
    instances: &BTreeMap<String, Instance>,
) -> (
    BTreeMap<u32, String>,
    Vec<(VridKey, vigil_common::WatchEntry)>,
) {
    let ifaces = instances
        .values()
        .map(|i| (i.iface.index, i.iface.name.clone()))
        .collect();
    let watch = instances
        .values()
        .map(|i| (i.key, watch_entry(&i.cfg, false, i.cfg.priority)))
        .collect();
    (ifaces, watch)
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

/// Hands an instance's tracking verdict to its election, when it changed.
fn apply_verdict(inst: &mut Instance, v: Verdict, now: crate::vrrp::Instant) {
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
        inst.router.handle(now, Input::PriorityChanged(v.priority));
    }
    if v.fault != inst.tracked.fault {
        match &v.fault {
            Some(reason) => {
                tracing::warn!(instance = %inst.name, "tracked failure: {reason}");
                inst.router.handle(
                    now,
                    Input::Fault {
                        reason: reason.clone(),
                    },
                );
            }
            None => {
                tracing::info!(instance = %inst.name, "tracked failures cleared");
                inst.router.handle(now, Input::FaultCleared);
            }
        }
    }
    inst.tracked = v;
}

/// Removes the addresses a vigil that did not exit cleanly left behind.
async fn remove_leftovers(netlink: &Netlink, path: &Path) {
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
    fn dispatch(&mut self, records: &[crate::datapath::event::Record]) {
        for r in records {
            if r.verdict() != Some(vigil_common::Verdict::Accept) {
                continue;
            }
            let key = VridKey {
                ifindex: r.raw.ifindex,
                family: r.raw.family,
                vrid: r.raw.vrid,
                _pad: 0,
            };
            if let Some(inst) = self
                .by_key
                .get(&key)
                .and_then(|n| self.instances.get_mut(n))
            {
                inst.receive(r);
                if inst.cfg.bfd.is_some() {
                    let name = inst.name.clone();
                    self.bfd_learn(&name, r.source(), r.raw.priority);
                }
            }
        }
    }

    /// Down and advert timers. With XDP, a Backup hears only of changes, so before its
    /// down timer counts, the ring is drained and the newest arrival time is taken from
    /// the program's map.
    fn timers(&mut self) {
        let now = clock::now();
        let due: Vec<String> = self
            .instances
            .values()
            .filter(|i| i.router.poll_timeout().is_some_and(|t| t <= now))
            .map(|i| i.name.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        if self.receiver.is_xdp() {
            let ready = self.receiver.ready();
            self.dispatch(&ready);
        }
        for name in due {
            let Some(inst) = self.instances.get_mut(&name) else {
                continue;
            };
            if inst.router.state() == State::Backup
                && let Some(stats) = self.receiver.vrid_stats(&inst.key)
                && let Some((source, _)) = &inst.last_advert
            {
                let src = *source;
                let same_source = match src {
                    std::net::IpAddr::V4(a) => stats.last_src[..4] == a.octets(),
                    std::net::IpAddr::V6(a) => stats.last_src == a.octets(),
                };
                if same_source {
                    inst.refeed(stats.last_ns, src, stats.last_priority);
                }
            }
            inst.router.handle(now, Input::Timeout);
        }
    }

    fn link(&mut self, event: LinkEvent) {
        let now = clock::now();
        let (index, up) = match &event {
            LinkEvent::Changed(l) => (l.index, l.is_up()),
            LinkEvent::Removed { index, .. } => (*index, false),
        };
        for inst in self.instances.values_mut() {
            if inst.iface.index == index {
                tracing::info!(instance = %inst.name, iface = %inst.iface.name, up, "link changed");
                inst.router
                    .handle(now, if up { Input::LinkUp } else { Input::LinkDown });
            }
        }
        if self.tracker.link(&event) {
            self.retrack();
        }
    }

    /// Re-evaluates every instance's tracking and hands changes to the elections.
    fn retrack(&mut self) {
        let now = clock::now();
        for inst in self.instances.values_mut() {
            let v = self.tracker.evaluate(&inst.cfg);
            apply_verdict(inst, v, now);
        }
    }

    /// Split-brain expiry, and the seed's check for virtual addresses on a Backup.
    async fn housekeeping(&mut self) {
        let now = clock::now();
        let keep: Vec<std::net::IpAddr> = self
            .instances
            .values()
            .filter(|i| i.router.state() == State::Master)
            .flat_map(|i| i.vips().iter().map(|v| v.addr.addr))
            .collect();
        let mut seen = HashMap::new();
        for inst in self.instances.values_mut() {
            let master = inst.router.state() == State::Master;
            inst.split
                .expire(&inst.name, now, master, inst.cfg.advert_interval);
            inst.check_addresses(&self.netlink, &mut self.owned, &mut seen, &keep)
                .await;
        }
    }

    async fn run_actions(&mut self) {
        for inst in self.instances.values_mut() {
            // Most instances have nothing to do on most wake-ups (with hundreds of them,
            // one advert timer fires at a time).
            if inst.router.has_pending_actions() {
                let _transitions: Vec<Transition> =
                    inst.run_actions(&self.netlink, &mut self.owned).await;
            }
            // A Master must hear every advert from a peer, a Backup only changes and
            // nothing below its own priority: keep the program's view current.
            if let Some(entry) = inst.watch_update() {
                self.receiver.watch(inst.key, entry);
            }
        }
    }

    fn status(&self) -> serde_json::Value {
        let now = clock::now();
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "router_id": self.config.global.router_id,
            "pid": std::process::id(),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "datapath": self.receiver.describe(),
            "datapath_counters": self.receiver.counters(),
            "config": self.path.display().to_string(),
            "instances": self.instances.values().map(|i| {
                let mut s = i.status(now);
                s["tracking"] = self.tracker.status(&i.cfg);
                s
            }).collect::<Vec<_>>(),
            "bfd": self.bfd.as_ref().map(|b| b.status()).unwrap_or_default(),
        })
    }

    /// SIGHUP: unchanged instances keep state, timers and addresses; changed ones are
    /// rebuilt; removed ones release; new ones start in Backup. A bad file changes nothing.
    async fn reload(&mut self, loaded: Result<Config, config::ConfigError>) {
        let started = std::time::Instant::now();
        let new = match loaded {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload rejected, running configuration kept:\n{e}");
                return;
            }
        };
        // Scripts and files first: unchanged ones keep their task and standing, so the
        // verdicts of unchanged instances stay as they are.
        self.tracker.configure(&new);
        if new.global != self.config.global {
            tracing::warn!("reload: [global] changes take effect at the next restart");
        }
        let now = clock::now();
        let mut stop = Vec::new();
        for (name, inst) in &self.instances {
            if new.instances.get(name) != Some(&inst.cfg) {
                stop.push(name.clone());
            }
        }
        for name in &stop {
            if let Some(inst) = self.instances.get_mut(name) {
                inst.router.handle(now, Input::Shutdown);
            }
        }
        self.run_actions().await;
        for name in &stop {
            if let Some(inst) = self.instances.remove(name) {
                self.by_key.remove(&inst.key);
                self.receiver.unwatch(inst.key);
                tracing::info!(instance = %name, "reload: instance stopped");
            }
        }
        let mut added = 0;
        for (name, cfg) in &new.instances {
            if self.instances.contains_key(name) {
                continue;
            }
            let user = new.global.script_user.as_deref();
            match Instance::new(name, cfg, &new.global.garp, user, &self.netlink).await {
                Ok(mut inst) => {
                    if self.receiver.is_xdp() {
                        self.receiver
                            .watch(inst.key, watch_entry(cfg, false, cfg.priority));
                    }
                    let now = clock::now();
                    apply_verdict(&mut inst, self.tracker.evaluate(cfg), now);
                    inst.router.handle(now, Input::Startup);
                    self.by_key.insert(inst.key, name.clone());
                    self.instances.insert(name.clone(), inst);
                    added += 1;
                }
                Err(e) => tracing::error!(instance = %name, "reload: cannot start: {e:#}"),
            }
        }
        if !self.receiver.is_xdp() && (added > 0 || !stop.is_empty()) {
            let (ifaces, watch) = datapath_plan(&self.instances);
            match Receiver::start(&new.global, &ifaces, &watch) {
                Ok(r) => self.receiver = r,
                Err(e) => tracing::error!("reload: raw receive path: {e:#}"),
            }
        }
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
    }
}
