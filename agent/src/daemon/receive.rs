//! The receive side of the daemon: the XDP program and its ring buffer, or the raw-socket
//! fallback, behind one interface.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use vigil_common::{DownParams, VridKey, VridStats, WatchEntry};

use crate::config::{Global, XdpMode};
use crate::datapath::event::Record;
use crate::datapath::rawsock::{self, RawReceiver};
use crate::datapath::xdp;
use crate::vrrp::endpoint::Datapath;

/// Where adverts come from.
#[expect(
    clippy::large_enum_variant,
    reason = "one per agent, made once and never moved on a hot path"
)]
pub enum Receiver {
    /// The XDP program; the daemon reads its ring buffer directly.
    Xdp {
        /// The loaded program (detached and unpinned on drop).
        program: xdp::XdpProgram,
        /// Its ring buffer.
        ring: AsyncFd<RingBuf<MapData>>,
        /// Keeps the VRRP multicast MACs subscribed on each interface.
        _membership: Vec<OwnedFd>,
        /// "xdp (driver)" and the like, per interface.
        describe: String,
        /// Forwards the program's aya-log lines into the agent's log.
        logger: Option<JoinHandle<()>>,
        /// The attach mode asked for, for interfaces added later.
        mode: xdp::AttachMode,
    },
    /// Raw sockets, one task per interface; the endpoint judges their frames.
    Raw {
        /// Frames from the tasks.
        rx: mpsc::Receiver<Datapath>,
        /// The tasks.
        tasks: Vec<JoinHandle<()>>,
        /// Why XDP was not used when `xdp = "auto"` wanted it.
        fallback: Option<String>,
    },
}

/// The XDP program being loaded on a thread of its own, started before the agent's other
/// start-up work: the kernel's BTF parse and the verifier are most of the time to READY,
/// and need nothing the rest of start-up makes.
pub struct Preload(std::thread::JoinHandle<Result<xdp::XdpProgram, xdp::XdpError>>);

impl Preload {
    /// Starts loading the program `global` asks for; `None` when it asks for no XDP.
    pub fn start(global: &Global) -> Option<Self> {
        if global.xdp == XdpMode::Off {
            return None;
        }
        let pin = global.bpf_pin_dir.join(&global.router_id);
        let kernel_timers = global.kernel_timers;
        let spawned = std::thread::Builder::new()
            .name("xdp-load".into())
            .spawn(move || xdp::XdpProgram::load(Some(&pin), kernel_timers));
        match spawned {
            Ok(handle) => Some(Self(handle)),
            // Loaded in line then, when the datapath starts.
            Err(_) => None,
        }
    }

    fn wait(self) -> anyhow::Result<xdp::XdpProgram> {
        match self.0.join() {
            Ok(loaded) => Ok(loaded?),
            Err(_) => Err(anyhow::anyhow!("the XDP loading thread panicked")),
        }
    }
}

/// What an XDP datapath says before any instance's interface exists.
const NO_INTERFACE_YET: &str = "xdp (no interface yet)";

impl Receiver {
    /// Starts the datapath the config asks for on `ifaces`, watching `watch`, with the
    /// program `preload` began loading, if any.
    /// `xdp = "auto"` falls back to raw sockets when XDP cannot be had, and says why.
    pub fn start(
        global: &Global,
        ifaces: &BTreeMap<u32, String>,
        watch: &[(VridKey, WatchEntry)],
        preload: Option<Preload>,
    ) -> anyhow::Result<Self> {
        let mode = match global.xdp {
            XdpMode::Off => return Self::raw(ifaces, None),
            XdpMode::Auto => xdp::AttachMode::Auto,
            XdpMode::Driver => xdp::AttachMode::Driver,
            XdpMode::Skb => xdp::AttachMode::Skb,
        };
        match Self::xdp(global, mode, ifaces, watch, preload) {
            Ok(r) => Ok(r),
            Err(e) if global.xdp == XdpMode::Auto => {
                let why = format!("{e:#}");
                tracing::warn!(
                    "XDP unavailable ({why}); using the raw-socket receive path (junk adverts \
                     now reach the agent; set xdp = \"off\" to make this the intended path)"
                );
                Self::raw(ifaces, Some(why))
            }
            // Asked for by name: running without it would be a different agent than the
            // one configured.
            Err(e) => Err(e.context(format!(
                "xdp = \"{}\" cannot be had; use xdp = \"auto\" to fall back to raw sockets, \
                 or xdp = \"off\"",
                global.xdp
            ))),
        }
    }

    /// Attaches the XDP program to `name` and joins the VRRP groups there, unless it is
    /// attached already (XDP only: the raw path is rebuilt instead).
    pub fn ensure_interface(&mut self, index: u32, name: &str) -> anyhow::Result<()> {
        let Self::Xdp {
            program,
            _membership,
            describe,
            mode,
            ..
        } = self
        else {
            return Ok(());
        };
        if program.attached().any(|(i, _, _)| i == index) {
            return Ok(());
        }
        let used = program.attach(name, *mode)?;
        _membership.push(rawsock::multicast_membership(index)?);
        let more = format!("{name}: xdp {}", mode_name(used));
        tracing::info!("datapath: {more}");
        if describe == NO_INTERFACE_YET {
            *describe = more;
        } else {
            describe.push_str(", ");
            describe.push_str(&more);
        }
        Ok(())
    }

    /// The interfaces the XDP program should be on, with the program's kernel id; empty
    /// on the raw path.
    pub fn xdp_attachments(&self) -> (Option<u32>, Vec<(u32, String)>) {
        match self {
            Self::Xdp { program, .. } => (
                program.program_id(),
                program
                    .attached()
                    .map(|(i, name, _)| (i, name.to_owned()))
                    .collect(),
            ),
            Self::Raw { .. } => (None, Vec::new()),
        }
    }

    /// Attaches the XDP program again to `index`, after someone detached it; the VRRP
    /// group membership there never left.
    pub fn reattach(&mut self, index: u32) -> anyhow::Result<&'static str> {
        let Self::Xdp { program, mode, .. } = self else {
            return Ok("raw");
        };
        Ok(mode_name(program.reattach(index, *mode)?))
    }

    /// Why XDP is not in use although `xdp = "auto"` wanted it.
    pub fn fallback(&self) -> Option<&str> {
        match self {
            Self::Raw { fallback, .. } => fallback.as_deref(),
            Self::Xdp { .. } => None,
        }
    }

    fn xdp(
        global: &Global,
        mode: xdp::AttachMode,
        ifaces: &BTreeMap<u32, String>,
        watch: &[(VridKey, WatchEntry)],
        preload: Option<Preload>,
    ) -> anyhow::Result<Self> {
        let pin = global.bpf_pin_dir.join(&global.router_id);
        let mut program = match preload {
            Some(p) => p.wait()?,
            None => xdp::XdpProgram::load(Some(&pin), global.kernel_timers)?,
        };
        // SAFETY: the logger owns its ring buffer's fd and keeps it open while it lives,
        // which is as long as the AsyncFd that owns it.
        let logger = program
            .take_logger()
            .and_then(|l| match unsafe { AsyncFd::register(l) } {
                Ok(fd) => Some(tokio::spawn(forward_log(fd))),
                Err(e) => {
                    tracing::warn!("the XDP program's log is not forwarded: {e}");
                    None
                }
            });
        let mut describe = Vec::new();
        let mut membership = Vec::new();
        let started = std::time::Instant::now();
        for (index, name) in ifaces {
            let used = program.attach(name, mode)?;
            describe.push(format!("{name}: xdp {}", mode_name(used)));
            membership.push(rawsock::multicast_membership(*index)?);
        }
        for (key, entry) in watch {
            program.watch(*key, *entry)?;
        }
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "XDP attached, multicast joined, VRIDs watched"
        );
        let ring = program.take_events()?;
        // SAFETY: the RingBuf owns its map fd and keeps it open while it lives, which is
        // as long as the AsyncFd that owns it.
        let ring = unsafe { AsyncFd::register(ring)? };
        let describe = if describe.is_empty() {
            NO_INTERFACE_YET.to_owned()
        } else {
            describe.join(", ")
        };
        tracing::info!(
            pins = %pin.display(),
            down_timers = %program.down_timers().describe(),
            "datapath: {describe}"
        );
        Ok(Self::Xdp {
            program,
            ring,
            _membership: membership,
            describe,
            logger,
            mode,
        })
    }

    fn raw(ifaces: &BTreeMap<u32, String>, fallback: Option<String>) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::channel(4096);
        let mut tasks = Vec::new();
        for (index, name) in ifaces {
            let r = RawReceiver::open(*index)
                .map_err(|e| anyhow::anyhow!("raw socket on {name}: {e}"))?;
            let tx = tx.clone();
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = r.forward(tx).await {
                    tracing::error!(iface = %name, "raw receive stopped: {e}");
                }
            }));
        }
        tracing::info!(
            "datapath: raw sockets on {}",
            ifaces.values().cloned().collect::<Vec<_>>().join(", ")
        );
        Ok(Self::Raw {
            rx,
            tasks,
            fallback,
        })
    }

    /// Which path is in use, for logs and `vigil status`.
    pub fn describe(&self) -> String {
        match self {
            Self::Xdp { describe, .. } => describe.clone(),
            Self::Raw {
                fallback: Some(_), ..
            } => "raw socket (XDP unavailable)".to_owned(),
            Self::Raw { .. } => "raw socket".to_owned(),
        }
    }

    /// Who keeps the Backups' Master_Down_Timers.
    pub fn down_timers(&self) -> xdp::DownTimers {
        match self {
            Self::Xdp { program, .. } => program.down_timers().clone(),
            Self::Raw { .. } => xdp::DownTimers::Agent("no XDP program".to_owned()),
        }
    }

    /// Hands a VRID's Master_Down_Timer to the kernel (kernel timers only); false when
    /// the agent keeps it.
    pub fn set_down_params(&mut self, key: VridKey, params: DownParams) -> bool {
        let Self::Xdp { program, .. } = self else {
            return false;
        };
        if *program.down_timers() != xdp::DownTimers::Kernel {
            return false;
        }
        match program.set_down_params(key, params) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("down timer of VRID {} stays in the agent: {e}", key.vrid);
                false
            }
        }
    }

    /// Waits for records (XDP) or frames (raw) and returns every one available.
    pub async fn next(&mut self) -> anyhow::Result<Vec<Datapath>> {
        match self {
            Self::Xdp { ring, .. } => {
                let mut guard = ring.readable_mut().await?;
                let out = drain(guard.get_inner_mut());
                guard.clear_ready();
                Ok(out)
            }
            Self::Raw { rx, .. } => {
                let Some(first) = rx.recv().await else {
                    anyhow::bail!("every raw receive task stopped");
                };
                let mut out = vec![first];
                while let Ok(r) = rx.try_recv() {
                    out.push(r);
                }
                Ok(out)
            }
        }
    }

    /// Records already waiting, without blocking (before a down timer is acted on).
    pub fn ready(&mut self) -> Vec<Datapath> {
        match self {
            Self::Xdp { ring, .. } => drain(ring.get_mut()),
            Self::Raw { rx, .. } => {
                let mut out = Vec::new();
                while let Ok(r) = rx.try_recv() {
                    out.push(r);
                }
                out
            }
        }
    }

    /// The program's state for a VRID (XDP only).
    pub fn vrid_stats(&self, key: &VridKey) -> Option<VridStats> {
        match self {
            Self::Xdp { program, .. } => program.vrid_stats(key),
            Self::Raw { .. } => None,
        }
    }

    /// Whether the kernel's down timer of a VRID is armed (XDP with kernel timers only).
    pub fn down_timer_armed(&self, key: &VridKey) -> bool {
        match self {
            Self::Xdp { program, .. } => program.down_timer_armed(key),
            Self::Raw { .. } => false,
        }
    }

    /// Sets or replaces a watch entry (XDP only; on the raw path the endpoint keeps them).
    pub fn watch(&mut self, key: VridKey, entry: WatchEntry) {
        if let Self::Xdp { program, .. } = self
            && let Err(e) = program.watch(key, entry)
        {
            tracing::error!("updating the XDP watch map: {e}");
        }
    }

    /// Removes a watch entry (XDP only).
    pub fn unwatch(&mut self, key: VridKey) {
        if let Self::Xdp { program, .. } = self
            && let Err(e) = program.unwatch(key)
        {
            tracing::error!("updating the XDP watch map: {e}");
        }
    }

    /// The XDP program's verdict counters per attached interface (empty without XDP).
    pub fn counters(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        if let Self::Xdp { program, .. } = self {
            for (index, name, _) in program.attached() {
                let Some(stats) = program.iface_stats(index) else {
                    continue;
                };
                let mut m = serde_json::Map::new();
                for code in 0..vigil_common::validate::VERDICTS as u8 {
                    if let Some(v) = vigil_common::Verdict::from_code(code) {
                        m.insert(v.name().to_owned(), stats.get(v).into());
                    }
                }
                m.insert("ring_full".to_owned(), stats.ring_full.into());
                if let Some(b) = program.bfd_iface_stats(index) {
                    m.insert("bfd".to_owned(), bfd_counters(&b).into());
                }
                out.insert(name.to_owned(), m.into());
            }
        }
        out
    }

    /// The BFD session maps, for the BFD task (XDP only, once).
    pub fn take_bfd_maps(&mut self) -> Option<xdp::BfdMaps> {
        match self {
            Self::Xdp { program, .. } => program.take_bfd_maps(),
            Self::Raw { .. } => None,
        }
    }

    /// Whether adverts arrive deduplicated (XDP) and timers need the map's help.
    pub fn is_xdp(&self) -> bool {
        matches!(self, Self::Xdp { .. })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        match self {
            Self::Raw { tasks, .. } => {
                for t in tasks {
                    t.abort();
                }
            }
            Self::Xdp {
                logger: Some(task), ..
            } => task.abort(),
            Self::Xdp { .. } => {}
        }
    }
}

/// An interface's BFD counters by name: what the program recorded and kept, reported,
/// passed to the stack, dropped by rule, and its detection timeouts.
fn bfd_counters(
    b: &vigil_common::bfd::BfdIfaceStats,
) -> serde_json::Map<String, serde_json::Value> {
    use vigil_common::bfd::BfdVerdict;
    let mut m = serde_json::Map::new();
    for v in BfdVerdict::ALL {
        m.insert(v.name().to_owned(), b.get(v).into());
    }
    m.insert("down".to_owned(), b.down.into());
    m.insert("ring_full".to_owned(), b.ring_full.into());
    m
}

/// Hands the program's log records (rare events only) to the agent's log as they come.
async fn forward_log(mut fd: AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>) {
    loop {
        let Ok(mut guard) = fd.readable_mut().await else {
            return;
        };
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}

fn drain(ring: &mut RingBuf<MapData>) -> Vec<Datapath> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        match Record::from_bytes(&item) {
            Some(r) => out.push(Datapath::Event(r.raw)),
            None => tracing::warn!(len = item.len(), "ring buffer record of unexpected size"),
        }
    }
    out
}

fn mode_name(m: aya::programs::XdpMode) -> &'static str {
    match m {
        aya::programs::XdpMode::Driver => "driver",
        aya::programs::XdpMode::Skb => "skb",
        aya::programs::XdpMode::Hardware => "hardware",
        aya::programs::XdpMode::Default => "default",
    }
}
