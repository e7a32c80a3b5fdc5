//! Loads vigil's XDP program, attaches it to interfaces, pins its maps for people and
//! tools, and gives the agent its ring buffer and counters.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use vigil_common::bfd::{
    BfdIfaceStats, BfdParams, BfdState, MAP_BFD_IFACE, MAP_BFD_PARAMS, MAP_BFD_STATE,
};
use vigil_common::down::{GLOBAL_KERNEL_TIMERS, MAP_DOWN_PARAMS, MAP_DOWN_TIMERS};
use vigil_common::maps::{
    MAP_EVENTS, MAP_IFACE_STATS, MAP_IFACES, MAP_SETTINGS, MAP_VRID_STATS, MAP_WATCH, MAX_IFACES,
    MAX_WATCHED,
};
use vigil_common::{DownParams, IfaceStats, Settings, VridKey, VridStats, WatchEntry};

/// The XDP object built by agent/build.rs (empty when built with AYA_BUILD_SKIP=1).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vigil"));

/// Name of the XDP function in the object, as `bpftool net show` prints it.
pub const PROGRAM_NAME: &str = "vigil_xdp";

/// Names of the maps that are pinned. Not the timers: a pin would keep them (and the
/// program their callback belongs to) alive after the agent.
const PINNED: [&str; 9] = [
    MAP_WATCH,
    MAP_VRID_STATS,
    MAP_IFACE_STATS,
    MAP_IFACES,
    MAP_SETTINGS,
    MAP_DOWN_PARAMS,
    MAP_BFD_PARAMS,
    MAP_BFD_STATE,
    MAP_BFD_IFACE,
];

/// The program's state word of an armed down timer.
const DOWN_TIMER_ARMED: u32 = 2;

/// A `down_timers` element as the agent sees it: `struct bpf_timer` (16 opaque bytes),
/// the program's state word, the priority it was armed for, the VRID (ebpf/src/timer.rs).
type DownTimerValue = [u32; 8];

/// Who keeps a Backup's Master_Down_Timer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownTimers {
    /// A `bpf_timer` per VRID in the XDP program; the agent hears only of silence.
    Kernel,
    /// The agent's own timer (the kernel refused `bpf_timer`, or it was turned off); the
    /// reason says which.
    Agent(String),
}

impl DownTimers {
    /// "kernel", or "agent (reason)", for logs and `vigil status`.
    pub fn describe(&self) -> String {
        match self {
            Self::Kernel => "kernel".to_owned(),
            Self::Agent(why) => format!("agent ({why})"),
        }
    }
}

/// How to attach; `Auto` tries the driver first and falls back to generic (skb) mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Driver mode, then skb mode with a warning.
    Auto,
    /// Native (driver) mode only.
    Driver,
    /// Generic (skb) mode only.
    Skb,
}

/// What can go wrong with the XDP datapath.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// This binary carries no XDP object.
    #[error(
        "this vigil was built without its XDP program (AYA_BUILD_SKIP); run `cargo xtask setup` and rebuild"
    )]
    NotBuilt,
    /// The kernel refused the object.
    #[error("loading the XDP program: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program operation failed.
    #[error("XDP program on {iface}: {source}")]
    Program {
        /// Interface concerned.
        iface: String,
        /// Cause.
        #[source]
        source: ProgramError,
    },
    /// Every slot of a map indexed by slot is taken.
    #[error("XDP map {0} is full")]
    Full(&'static str),
    /// A map operation failed.
    #[error("XDP map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Cause.
        #[source]
        source: aya::maps::MapError,
    },
    /// The object lacks something the agent needs.
    #[error("XDP object has no {0}")]
    Missing(&'static str),
    /// No such interface.
    #[error("no interface named {0}")]
    NoInterface(String),
    /// A live owner's program is attached already.
    #[error(
        "{0} already has an XDP program attached by a running process (a vigil agent, or another \
         vigil trace); `vigil trace --mode off` watches without XDP"
    )]
    Busy(String),
    /// Pinning failed.
    #[error("pinning maps under {path}: {source}")]
    Pin {
        /// Pin path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// The loaded program with its maps.
pub struct XdpProgram {
    ebpf: Ebpf,
    timers: DownTimers,
    pin_dir: Option<PathBuf>,
    attached: BTreeMap<u32, (String, XdpMode)>,
    /// Each watched VRID's slot in the arrays `watch`, `down_params` and `down_timers`.
    slots: Slots<VridKey>,
    /// Each interface's slot in `iface_stats`, as published in `ifaces`.
    iface_slots: Slots<u32>,
}

/// Small numbers handed out to keys, the indexes of the program's arrays. A freed number
/// is handed out again only after every other one: a program run that looked the old
/// owner up just before it left finds nothing of a new owner there.
struct Slots<K> {
    of: BTreeMap<K, u32>,
    used: Vec<bool>,
    next: u32,
}

impl<K: Ord + Copy> Slots<K> {
    fn new(capacity: u32) -> Self {
        Self {
            of: BTreeMap::new(),
            used: vec![false; capacity as usize],
            next: 0,
        }
    }

    fn get(&self, key: &K) -> Option<u32> {
        self.of.get(key).copied()
    }

    /// The key's slot, taking a free one when it has none yet (`None`: all taken).
    fn take(&mut self, key: K) -> Option<u32> {
        if let Some(s) = self.get(&key) {
            return Some(s);
        }
        let n = self.used.len() as u32;
        let slot = (0..n)
            .map(|i| (self.next + i) % n)
            .find(|&i| !self.used[i as usize])?;
        self.used[slot as usize] = true;
        self.next = (slot + 1) % n;
        self.of.insert(key, slot);
        Some(slot)
    }

    fn free(&mut self, key: &K) -> Option<u32> {
        let slot = self.of.remove(key)?;
        self.used[slot as usize] = false;
        Some(slot)
    }
}

/// Interface index for a name.
pub fn ifindex(name: &str) -> Result<u32, XdpError> {
    let c = CString::new(name).map_err(|_| XdpError::NoInterface(name.to_owned()))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(XdpError::NoInterface(name.to_owned()));
    }
    Ok(index)
}

impl XdpProgram {
    /// Loads the program into the kernel (the verifier runs here). With `pin_dir`, the
    /// maps are pinned there, replacing pins a crashed vigil left behind. With
    /// `kernel_timers`, the program keeps the down timers if the kernel accepts it; if not,
    /// it is loaded again without them and [`XdpProgram::down_timers`] says why.
    pub fn load(pin_dir: Option<&Path>, kernel_timers: bool) -> Result<Self, XdpError> {
        if OBJECT.is_empty() {
            return Err(XdpError::NotBuilt);
        }
        let (ebpf, timers) = if kernel_timers {
            match load_object(true) {
                Ok(ebpf) => (ebpf, DownTimers::Kernel),
                Err(e) => {
                    let why = format!("the kernel refused bpf_timer: {}", chain(&e));
                    tracing::warn!("down timers stay in the agent: {why}");
                    (load_object(false)?, DownTimers::Agent(why))
                }
            }
        } else {
            (
                load_object(false)?,
                DownTimers::Agent("kernel_timers = false".to_owned()),
            )
        };
        let mut this = Self {
            ebpf,
            timers,
            pin_dir: None,
            attached: BTreeMap::new(),
            slots: Slots::new(MAX_WATCHED),
            iface_slots: Slots::new(MAX_IFACES),
        };
        if let Some(dir) = pin_dir {
            let started = std::time::Instant::now();
            this.pin(dir)?;
            tracing::debug!(
                ms = started.elapsed().as_secs_f64() * 1e3,
                "XDP maps pinned"
            );
        }
        Ok(this)
    }

    /// Who keeps the Backups' down timers with this program.
    pub fn down_timers(&self) -> &DownTimers {
        &self.timers
    }

    /// Takes the reader of the program's aya-log records (once); `None` if the object
    /// has no log map.
    pub fn take_logger(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        match aya_log::EbpfLogger::init(&mut self.ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!("the XDP program's log is not forwarded: {e}");
                None
            }
        }
    }

    /// Publishes a VRID's down-timer parameters (kernel timers only): from the next
    /// advert on, the kernel keeps its Master_Down_Timer.
    pub fn set_down_params(&mut self, key: VridKey, params: DownParams) -> Result<(), XdpError> {
        let slot = self.slot(key)?;
        self.set_at(MAP_DOWN_PARAMS, slot, params)
    }

    /// The VRID's slot, taken now if it has none.
    fn slot(&mut self, key: VridKey) -> Result<u32, XdpError> {
        self.slots.take(key).ok_or(XdpError::Full(MAP_WATCH))
    }

    /// The interface's counters slot, taken and published in `ifaces` if it has none.
    fn iface_slot(&mut self, ifindex: u32) -> Result<u32, XdpError> {
        if let Some(s) = self.iface_slots.get(&ifindex) {
            return Ok(s);
        }
        let slot = self
            .iface_slots
            .take(ifindex)
            .ok_or(XdpError::Full(MAP_IFACE_STATS))?;
        let map_err = |source| XdpError::Map {
            map: MAP_IFACES,
            source,
        };
        let mut ifaces: HashMap<&mut MapData, u32, u32> =
            HashMap::try_from(self.map_mut(MAP_IFACES)?).map_err(map_err)?;
        ifaces.insert(ifindex, slot, 0).map_err(map_err)?;
        Ok(slot)
    }

    /// Writes `value` at `index` of the array `name`.
    fn set_at<V: aya::Pod>(
        &mut self,
        name: &'static str,
        index: u32,
        value: V,
    ) -> Result<(), XdpError> {
        let map_err = |source| XdpError::Map { map: name, source };
        let mut array: Array<&mut MapData, V> =
            Array::try_from(self.map_mut(name)?).map_err(map_err)?;
        array.set(index, value, 0).map_err(map_err)
    }

    fn pin(&mut self, dir: &Path) -> Result<(), XdpError> {
        let err = |source| XdpError::Pin {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        for name in PINNED {
            let path = dir.join(name);
            // A crashed vigil leaves its pins; they belong to nobody now.
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed stale pin"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(e)),
            }
            let map = self.ebpf.map(name).ok_or(XdpError::Missing(name))?;
            map.pin(&path)
                .map_err(|e| err(io::Error::other(e.to_string())))?;
        }
        self.pin_dir = Some(dir.to_owned());
        Ok(())
    }

    /// Attaches to `iface`, replacing a vigil program a crashed agent left there.
    /// Returns the mode in use.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<XdpMode, XdpError> {
        let index = ifindex(iface)?;
        let modes: &[XdpMode] = match mode {
            AttachMode::Auto => &[XdpMode::Driver, XdpMode::Skb],
            AttachMode::Driver => &[XdpMode::Driver],
            AttachMode::Skb => &[XdpMode::Skb],
        };
        let mut last = None;
        for &m in modes {
            let started = std::time::Instant::now();
            match self.try_attach(iface, index, m) {
                Ok(()) => {
                    tracing::debug!(
                        iface,
                        ms = started.elapsed().as_secs_f64() * 1e3,
                        "XDP program attached"
                    );
                    if m == XdpMode::Skb && mode == AttachMode::Auto {
                        tracing::warn!(
                            iface,
                            "driver-mode XDP unavailable; attached in generic (skb) mode"
                        );
                    }
                    self.attached.insert(index, (iface.to_owned(), m));
                    self.init_iface(index)?;
                    return Ok(m);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(XdpError::NoInterface(iface.to_owned())))
    }

    fn try_attach(&mut self, iface: &str, index: u32, mode: XdpMode) -> Result<(), XdpError> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(XdpError::Missing("program vigil_xdp"))?
            .try_into()
            .map_err(|source| XdpError::Program {
                iface: iface.into(),
                source,
            })?;
        match program.attach_to_if_index(index, mode) {
            Ok(_) => Ok(()),
            Err(e) if is_busy(&e) => {
                if !remove_stale(iface) {
                    return Err(XdpError::Busy(iface.into()));
                }
                program
                    .attach_to_if_index(index, mode)
                    .map(|_| ())
                    .map_err(|source| XdpError::Program {
                        iface: iface.into(),
                        source,
                    })
            }
            Err(source) => Err(XdpError::Program {
                iface: iface.into(),
                source,
            }),
        }
    }

    fn init_iface(&mut self, index: u32) -> Result<(), XdpError> {
        self.init_bfd_iface(index)?;
        // The counters start at zero with the map, and a slot is never given to another
        // interface.
        self.iface_slot(index).map(|_| ())
    }

    /// Zeroed BFD counters for an interface: the program only adds to an entry.
    fn init_bfd_iface(&mut self, index: u32) -> Result<(), XdpError> {
        let map_err = |source| XdpError::Map {
            map: MAP_BFD_IFACE,
            source,
        };
        let mut stats: PerCpuHashMap<&mut MapData, u32, BfdIfaceStats> =
            PerCpuHashMap::try_from(self.map_mut(MAP_BFD_IFACE)?).map_err(map_err)?;
        if stats.get(&index, 0).is_ok() {
            return Ok(());
        }
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| {
            map_err(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "nr_cpus",
                io_error: e,
            }))
        })?;
        let zero = aya::maps::PerCpuValues::try_from(vec![BfdIfaceStats::default(); cpus])
            .map_err(|e| {
                map_err(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                    call: "per-cpu values",
                    io_error: e,
                }))
            })?;
        stats.insert(index, zero, 0).map_err(map_err)
    }

    /// BFD counters of an interface, summed over CPUs.
    pub fn bfd_iface_stats(&self, ifindex: u32) -> Option<BfdIfaceStats> {
        let map = self.ebpf.map(MAP_BFD_IFACE)?;
        let stats: PerCpuHashMap<&MapData, u32, BfdIfaceStats> =
            PerCpuHashMap::try_from(map).ok()?;
        let per_cpu = stats.get(&ifindex, 0).ok()?;
        let mut total = BfdIfaceStats::default();
        for v in per_cpu.iter() {
            total.add(v);
        }
        Some(total)
    }

    /// Hands the BFD session maps to their owner, the BFD task (once).
    pub fn take_bfd_maps(&mut self) -> Option<BfdMaps> {
        let params = self.ebpf.take_map(MAP_BFD_PARAMS)?;
        let state = self.ebpf.take_map(MAP_BFD_STATE)?;
        Some(BfdMaps {
            params: HashMap::try_from(params).ok()?,
            state: HashMap::try_from(state).ok()?,
            kernel_timers: self.timers == DownTimers::Kernel,
        })
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, XdpError> {
        self.ebpf.map_mut(name).ok_or(XdpError::Missing(name))
    }

    /// Starts watching (interface, family, VRID) with its configuration, or changes it.
    pub fn watch(&mut self, key: VridKey, entry: WatchEntry) -> Result<(), XdpError> {
        let slot = self.slot(key)?;
        // The configuration first: the program takes the VRID for watched from the
        // moment its state entry exists.
        self.set_at(MAP_WATCH, slot, entry)?;
        let map_err = |source| XdpError::Map {
            map: MAP_VRID_STATS,
            source,
        };
        if self.vrid_stats(&key).is_some() {
            return Ok(());
        }
        let iface = self.iface_slot(key.ifindex)?;
        let fresh = VridStats {
            slot: slot as u16,
            iface: iface as u16,
            ..VridStats::default()
        };
        let mut stats: HashMap<&mut MapData, VridKey, VridStats> =
            HashMap::try_from(self.map_mut(MAP_VRID_STATS)?).map_err(map_err)?;
        stats.insert(key, fresh, 0).map_err(map_err)
    }

    /// Stops watching a virtual router.
    pub fn unwatch(&mut self, key: VridKey) -> Result<(), XdpError> {
        let map_err = |source| XdpError::Map {
            map: MAP_VRID_STATS,
            source,
        };
        // The state entry first: from then on the program takes the VRID for foreign,
        // and a firing timer finds no state and goes quiet.
        let mut stats: HashMap<&mut MapData, VridKey, VridStats> =
            HashMap::try_from(self.map_mut(MAP_VRID_STATS)?).map_err(map_err)?;
        match stats.remove(&key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(source) => return Err(map_err(source)),
        }
        let Some(slot) = self.slots.free(&key) else {
            return Ok(());
        };
        // Writing the timer's element from here cancels its timer.
        self.set_at(MAP_DOWN_PARAMS, slot, DownParams::default())?;
        self.set_at(MAP_DOWN_TIMERS, slot, DownTimerValue::default())?;
        self.set_at(MAP_WATCH, slot, WatchEntry::default())
    }

    /// Sets the program's global switches.
    pub fn set_settings(&mut self, settings: Settings) -> Result<(), XdpError> {
        let mut array: aya::maps::Array<&mut MapData, Settings> =
            aya::maps::Array::try_from(self.map_mut(MAP_SETTINGS)?).map_err(|source| {
                XdpError::Map {
                    map: MAP_SETTINGS,
                    source,
                }
            })?;
        array.set(0, settings, 0).map_err(|source| XdpError::Map {
            map: MAP_SETTINGS,
            source,
        })
    }

    /// Takes the ring buffer of advert events (once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, XdpError> {
        let map = self
            .ebpf
            .take_map(MAP_EVENTS)
            .ok_or(XdpError::Missing("events ring buffer"))?;
        RingBuf::try_from(map).map_err(|source| XdpError::Map {
            map: MAP_EVENTS,
            source,
        })
    }

    /// The per-VRID state the program keeps (`None` if not watched).
    pub fn vrid_stats(&self, key: &VridKey) -> Option<VridStats> {
        let map = self.ebpf.map(MAP_VRID_STATS)?;
        let stats: HashMap<&MapData, VridKey, VridStats> = HashMap::try_from(map).ok()?;
        stats.get(key, 0).ok()
    }

    /// Whether the kernel's down timer of a VRID is armed (reading an element, unlike
    /// writing it, leaves its timer alone).
    pub fn down_timer_armed(&self, key: &VridKey) -> bool {
        let (Some(slot), Some(map)) = (self.slots.get(key), self.ebpf.map(MAP_DOWN_TIMERS)) else {
            return false;
        };
        let Ok(timers) = Array::<&MapData, DownTimerValue>::try_from(map) else {
            return false;
        };
        timers.get(&slot, 0).is_ok_and(|v| v[4] == DOWN_TIMER_ARMED)
    }

    /// Verdict counters of an interface, summed over CPUs.
    pub fn iface_stats(&self, ifindex: u32) -> Option<IfaceStats> {
        let slot = self.iface_slots.get(&ifindex)?;
        let map = self.ebpf.map(MAP_IFACE_STATS)?;
        let stats: PerCpuArray<&MapData, IfaceStats> = PerCpuArray::try_from(map).ok()?;
        let per_cpu = stats.get(&slot, 0).ok()?;
        Some(sum(per_cpu.iter()))
    }

    /// The kernel's id of the loaded program, as `ip link` and netlink report it on the
    /// interfaces that run it.
    pub fn program_id(&self) -> Option<u32> {
        let program = self.ebpf.program(PROGRAM_NAME)?;
        program.info().ok().map(|i| i.id())
    }

    /// Attaches again to an interface someone detached the program from (`bpftool link
    /// detach`), in the mode asked for; its counters and slot stay as they were.
    pub fn reattach(&mut self, index: u32, mode: AttachMode) -> Result<XdpMode, XdpError> {
        // The entry stays: a failed attempt is tried again at the next check.
        let Some((name, _)) = self.attached.get(&index).cloned() else {
            return Err(XdpError::NoInterface(format!("index {index}")));
        };
        self.attach(&name, mode)
    }

    /// Interfaces the program is attached to, with the mode.
    pub fn attached(&self) -> impl Iterator<Item = (u32, &str, XdpMode)> {
        self.attached
            .iter()
            .map(|(i, (name, mode))| (*i, name.as_str(), *mode))
    }
}

/// The maps of the kernel's BFD sessions, owned by the BFD task: it publishes each
/// session's parameters and reads what the program recorded.
pub struct BfdMaps {
    params: HashMap<MapData, u32, BfdParams>,
    state: HashMap<MapData, u32, BfdState>,
    /// The program keeps detection times in `bpf_timer`s.
    pub kernel_timers: bool,
}

impl BfdMaps {
    /// Publishes a session's parameters under its local discriminator, creating its
    /// (zeroed) state first: the program only records into an entry that exists.
    pub fn publish(&mut self, discriminator: u32, params: BfdParams) -> Result<(), XdpError> {
        if self.state.get(&discriminator, 0).is_err() {
            self.state
                .insert(discriminator, BfdState::default(), 0)
                .map_err(|source| XdpError::Map {
                    map: MAP_BFD_STATE,
                    source,
                })?;
        }
        self.params
            .insert(discriminator, params, 0)
            .map_err(|source| XdpError::Map {
                map: MAP_BFD_PARAMS,
                source,
            })
    }

    /// Removes a session that was let go: the program no longer records its packets,
    /// and deleting its state entry cancels its timer.
    pub fn withdraw(&mut self, discriminator: u32) {
        let _ = self.params.remove(&discriminator);
        let _ = self.state.remove(&discriminator);
    }

    /// What the program recorded for a session.
    pub fn state(&self, discriminator: u32) -> Option<BfdState> {
        self.state.get(&discriminator, 0).ok()
    }
}

/// Loads the object with or without kernel timers and runs the verifier on its program.
fn load_object(kernel_timers: bool) -> Result<Ebpf, XdpError> {
    let flag = u8::from(kernel_timers);
    let started = std::time::Instant::now();
    // aya's loader parses the kernel's BTF when it is made, and its load first probes the
    // kernel's features (a few dozen bpf() calls): the probes run beside the parse.
    let probes = std::thread::spawn(|| {
        aya::features();
    });
    let mut loader = EbpfLoader::new();
    tracing::debug!(
        ms = started.elapsed().as_secs_f64() * 1e3,
        "kernel BTF parsed"
    );
    let _ = probes.join();
    let mut ebpf = loader
        .override_global(GLOBAL_KERNEL_TIMERS, &flag, true)
        .load(OBJECT)?;
    tracing::debug!(
        ms = started.elapsed().as_secs_f64() * 1e3,
        "XDP object parsed, BTF loaded, maps created"
    );
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or(XdpError::Missing("program vigil_xdp"))?
        .try_into()
        .map_err(|source| XdpError::Program {
            iface: "-".into(),
            source,
        })?;
    let started = std::time::Instant::now();
    program.load().map_err(|source| XdpError::Program {
        iface: "-".into(),
        source,
    })?;
    // The verifier runs inside the load: the larger part of start-up. Its instruction
    // count is deterministic (the time is not) and says what a program change costs.
    let verified = program
        .info()
        .ok()
        .and_then(|i| i.verified_instruction_count());
    tracing::debug!(
        kernel_timers,
        verified_insns = verified,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "XDP program loaded and verified"
    );
    Ok(ebpf)
}

/// An error with its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Sums per-CPU counters.
pub fn sum<'a>(values: impl Iterator<Item = &'a IfaceStats>) -> IfaceStats {
    let mut total = IfaceStats::default();
    for v in values {
        // Field by field through the repr(C) layout of u64 counters.
        let add = |t: &mut IfaceStats, v: &IfaceStats| {
            // SAFETY: IfaceStats is repr(C) and made only of u64 fields (asserted in common).
            let t = unsafe {
                std::slice::from_raw_parts_mut(
                    (t as *mut IfaceStats).cast::<u64>(),
                    std::mem::size_of::<IfaceStats>() / 8,
                )
            };
            // SAFETY: as above.
            let v = unsafe {
                std::slice::from_raw_parts(
                    (v as *const IfaceStats).cast::<u64>(),
                    std::mem::size_of::<IfaceStats>() / 8,
                )
            };
            for (a, b) in t.iter_mut().zip(v) {
                *a += b;
            }
        };
        add(&mut total, v);
    }
    total
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        // Links detach when the Ebpf drops; the pins would outlive us, so remove them.
        if let Some(dir) = &self.pin_dir {
            for name in PINNED {
                let _ = std::fs::remove_file(dir.join(name));
            }
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn is_busy(e: &ProgramError) -> bool {
    matches!(e, ProgramError::SyscallError(s) if matches!(s.io_error.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)))
}

/// Detaches an XDP program left on `iface` by a vigil that died, if that is what is
/// there. A program of anyone else is left alone. True when something was removed.
fn remove_stale(iface: &str) -> bool {
    let Ok(out) = Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", iface])
        .output()
    else {
        return false;
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return false;
    };
    let name = &json[0]["xdp"]["prog"]["name"];
    if name.as_str() != Some(PROGRAM_NAME) {
        tracing::error!(iface, program = %name, "another XDP program is attached; not replacing it");
        return false;
    }
    // Attached through a bpf_link, the program lives exactly as long as its owner: a link
    // that still exists means a live vigil. Only a netlink attachment outlives its owner.
    let id = json[0]["xdp"]["prog"]["id"].as_u64();
    let live = aya::programs::loaded_links()
        .filter_map(Result::ok)
        .any(|l| Some(u64::from(l.program_id())) == id);
    if live {
        return false;
    }
    tracing::warn!(
        iface,
        "replacing the XDP program of a vigil that did not exit cleanly"
    );
    Command::new("ip")
        .args(["link", "set", "dev", iface, "xdp", "off"])
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::Slots;

    #[test]
    fn a_key_keeps_its_slot_and_a_freed_slot_comes_back_last() {
        let mut s = Slots::new(3);
        assert_eq!((s.take('a'), s.take('b')), (Some(0), Some(1)));
        assert_eq!(s.take('a'), Some(0), "asked again, the same slot");
        assert_eq!(s.free(&'a'), Some(0));
        assert_eq!(s.get(&'a'), None);
        // Slot 0 is free again, but 2 has not been handed out since.
        assert_eq!(s.take('c'), Some(2));
        assert_eq!(s.take('d'), Some(0));
        assert_eq!(s.take('e'), None, "all three taken");
        assert_eq!(s.free(&'z'), None);
    }
}
