//! Configuration: the TOML file, its validation and its errors.
//!
//! [`load`] / [`parse`] return a fully validated, typed [`Config`] or a [`ConfigError`]
//! listing every problem as `file:line:col: key.path: message`. Structural problems
//! (TOML syntax, unknown keys, wrong types, missing required keys) stop at the first one,
//! as serde does; every semantic problem (ranges, formats, cross references) is collected.

mod address;
mod bfd;
pub mod duration;
mod error;
mod raw;
pub mod route;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use address::{Family, VirtualAddress, check_ifname};
pub use bfd::{
    BfdSession, BfdTimers, DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_INTERFACE, TrackBfd,
};
pub use error::{ConfigError, Diagnostic};

use error::SourceText;

/// Default configuration file.
pub const DEFAULT_PATH: &str = "/etc/vigil/vigil.toml";
/// Default status socket.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/vigil/vigil.sock";
/// Default directory for pinned BPF maps (one subdirectory per router_id).
pub const DEFAULT_BPF_PIN_DIR: &str = "/sys/fs/bpf/vigil";

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[global]`.
    pub global: Global,
    /// `[scripts.NAME]`: health checks, by name.
    pub scripts: BTreeMap<String, Script>,
    /// `[instances.NAME]`: VRRP instances, by name.
    pub instances: BTreeMap<String, Instance>,
    /// `[bfd.NAME]`: BFD sessions that instances track, by name.
    pub bfd: BTreeMap<String, BfdSession>,
    /// `[processes.NAME]`: tracked processes (keepalived `vrrp_track_process`), by name.
    pub processes: BTreeMap<String, Process>,
    /// `[sync_groups.NAME]`: instances that fail over together, by name.
    pub sync_groups: BTreeMap<String, SyncGroup>,
}

/// `[processes.NAME]`: processes whose number decides a tracking verdict
/// (keepalived `vrrp_track_process`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Process name: the kernel's 15-character `comm`, or, when it holds a `/`, the full
    /// path of the program (`argv[0]`).
    pub name: String,
    /// When set, only processes whose whole command line (arguments joined by single
    /// spaces) equals this count.
    pub command_line: Option<String>,
    /// How `command_line` is compared with a process's command line.
    pub command_match: CommandMatch,
    /// Fewest matching processes that count as running (default 1).
    pub quorum: u32,
    /// Most matching processes that count as running (default: no limit).
    pub quorum_max: Option<u32>,
    /// keepalived semantics: > 0 added while running, < 0 subtracted while not, 0 → FAULT.
    pub weight: i32,
    /// After the count reaches the quorum, wait this long before counting it as running.
    pub fork_delay: Duration,
    /// After the count leaves the quorum, wait this long before counting it as failed.
    pub terminate_delay: Duration,
}

/// How a process's command line is compared with `command_line` (keepalived's
/// `param_match`); words are the arguments as the command line joins them, by spaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CommandMatch {
    /// The whole command line equals `command_line`.
    #[default]
    Exact,
    /// The command line begins with the words of `command_line`.
    Initial,
    /// The words of `command_line` appear in the command line, in order and next to
    /// each other.
    Partial,
}

/// `use_vmac`: the instance's addresses live on a macvlan with the virtual router MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vmac {
    /// Name of the macvlan (`vmac_interface`, default `vrrp.VRID`).
    pub interface: String,
    /// Send adverts from the parent interface and its MAC (`vmac_xmit_base`) instead of
    /// from the macvlan.
    pub xmit_base: bool,
}

/// A `track_processes` entry, with the weight resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackProcess {
    /// Name of the process in `[processes]`.
    pub process: String,
    /// Effective weight for this instance.
    pub weight: i32,
}

/// `[sync_groups.NAME]`: instances that are Master together or not at all (keepalived
/// `vrrp_sync_group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroup {
    /// Member instances, in the order given.
    pub instances: Vec<String>,
    /// Run when the group becomes Master.
    pub notify_master: Option<String>,
    /// Run when the group becomes Backup.
    pub notify_backup: Option<String>,
    /// Run when the group enters Fault.
    pub notify_fault: Option<String>,
    /// Run when the group stops.
    pub notify_stop: Option<String>,
    /// Run on every group transition with `GROUP <name> <state> <priority>`.
    pub notify: Option<String>,
}

/// Default `realtime_priority`: above every normal task, below the kernel's own
/// real-time threads (which run at 50 and above).
pub const DEFAULT_REALTIME_PRIORITY: u8 = 10;

/// `[global]`: settings for the whole agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// Name of this node, used in logs and in the BPF pin path (default: the hostname).
    pub router_id: String,
    /// Status socket path.
    pub control_socket: PathBuf,
    /// Directory for pinned BPF maps.
    pub bpf_pin_dir: PathBuf,
    /// How to attach the XDP program.
    pub xdp: XdpMode,
    /// Let the XDP program keep each Backup's Master_Down_Timer as a kernel timer
    /// (`bpf_timer`) when the kernel allows it; `false` keeps every timer in the agent.
    pub kernel_timers: bool,
    /// SCHED_FIFO priority of the election loop and the BFD thread (1–99), asked for at
    /// start when the agent may have it; 0 keeps them at normal priority.
    pub realtime_priority: u8,
    /// Prometheus endpoint, if any.
    pub metrics: Option<SocketAddr>,
    /// Set net.ipv4.ip_nonlocal_bind (and the IPv6 twin) at start.
    pub nonlocal_bind: bool,
    /// User that scripts run as; `None` means root (the daemon warns, like keepalived).
    pub script_user: Option<String>,
    /// Defaults for the per-instance gratuitous ARP / NA settings.
    pub garp: Garp,
    /// Default BFD timers for instances (BFD-assisted takeover); `None`: no BFD unless an
    /// instance asks.
    pub bfd: Option<BfdTimers>,
    /// Most BFD sessions learned from adverts or started by peers, all interfaces
    /// together; `[bfd.NAME]` sessions always run but count.
    pub bfd_max_sessions: usize,
    /// Most such sessions on one interface.
    pub bfd_max_sessions_per_interface: usize,
}

/// How to attach the XDP program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Driver mode if the driver supports it, else generic (skb) mode, else the raw-socket
    /// fallback.
    Auto,
    /// Native driver mode only.
    Driver,
    /// Generic (skb) mode only.
    Skb,
    /// No XDP: the raw-socket fallback does the validation in userspace.
    Off,
}

/// Gratuitous ARP / unsolicited NA after becoming master (keepalived's `garp_master_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Garp {
    /// Delay before the second burst (keepalived default 5 s); zero means no second burst.
    pub master_delay: Duration,
    /// Messages per burst (keepalived default 5).
    pub master_repeat: u32,
    /// Period of refresh bursts while master; `None` (keepalived default) means none.
    pub master_refresh: Option<Duration>,
    /// Messages per refresh burst (keepalived default 1).
    pub master_refresh_repeat: u32,
    /// Delay before the second burst after a lower-priority advert while master; zero means
    /// no second burst (default: `[global]`'s `garp_master_delay`).
    pub lower_prio_delay: Duration,
    /// Messages per burst after a lower-priority advert while master; zero means none
    /// (default: `[global]`'s `garp_master_repeat`).
    pub lower_prio_repeat: u32,
}

impl Default for Garp {
    fn default() -> Self {
        Garp {
            master_delay: Duration::from_secs(5),
            master_repeat: 5,
            master_refresh: None,
            master_refresh_repeat: 1,
            lower_prio_delay: Duration::from_secs(5),
            lower_prio_repeat: 5,
        }
    }
}

/// `[scripts.NAME]`: a health check (keepalived `vrrp_script`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Command line; run without a shell unless it needs one.
    pub command: String,
    /// Time between runs (default 1 s).
    pub interval: Duration,
    /// A run still going after this is killed and counts as a failure (default: interval).
    pub timeout: Duration,
    /// keepalived semantics: > 0 added while OK, < 0 subtracted while failing, 0 → FAULT.
    pub weight: i32,
    /// Consecutive successes to become OK (default 1).
    pub rise: u32,
    /// Consecutive failures to become failing (default 1).
    pub fall: u32,
    /// User to run as, overriding `global.script_user`.
    pub user: Option<String>,
}

// The election's own vocabulary: one enum for each, whether read from a file or run.
pub use crate::vrrp::{InitialState, Version};

/// A `track_scripts` entry, with the weight resolved (override or the script's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackScript {
    /// Name of the script in `[scripts]`.
    pub script: String,
    /// Effective weight for this instance.
    pub weight: i32,
}

/// A `track_interfaces` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInterface {
    /// Interface whose link state is watched.
    pub interface: String,
    /// 0: link down → FAULT; otherwise keepalived semantics (+ while up, − while down).
    pub weight: i32,
}

/// A `track_files` entry (keepalived `track_file`): integer in the file × weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackFile {
    /// File holding an integer.
    pub path: PathBuf,
    /// Multiplier (default 1); 0 means a non-zero value → FAULT.
    pub weight: i32,
}

/// `[instances.NAME]`: one virtual router (keepalived `vrrp_instance`).
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Interface the adverts are sent and received on.
    pub interface: String,
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// 1..=254, or 255 for the address owner.
    pub priority: u8,
    /// State at start.
    pub initial_state: InitialState,
    /// Protocol version.
    pub version: Version,
    /// Advertisement interval.
    pub advert_interval: Duration,
    /// VRRPv2 simple password (at most 8 bytes).
    pub auth_pass: Option<String>,
    /// The addresses that move, all of one family; at least one.
    pub virtual_addresses: Vec<VirtualAddress>,
    /// Whether a higher-priority backup takes over from a lower-priority master.
    pub preempt: bool,
    /// Extra delay before preempting.
    pub preempt_delay: Duration,
    /// Master_Down_Interval in adverts (keepalived `down_timer_adverts`), 1..=100.
    pub down_timer_adverts: u8,
    /// Source address for adverts; `None`: the interface's primary (IPv4) or link-local
    /// (IPv6) address.
    pub unicast_src_ip: Option<IpAddr>,
    /// Unicast peers; empty means multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// Accept mode: answer traffic to the virtual addresses while master (default true,
    /// as keepalived without strict mode).
    pub accept: bool,
    /// VRRPv3 over IPv4: compute the checksum without the pseudo-header, as VRRPv2 and old
    /// keepalived (`old_unicast_checksum`) do.
    pub v3_checksum_as_v2: bool,
    /// Health scripts, weights resolved.
    pub track_scripts: Vec<TrackScript>,
    /// Interfaces whose link state is tracked.
    pub track_interfaces: Vec<TrackInterface>,
    /// Files whose integer value adjusts the priority.
    pub track_files: Vec<TrackFile>,
    /// Processes whose count adjusts the priority.
    pub track_processes: Vec<TrackProcess>,
    /// Addresses added while Master but not carried in adverts (keepalived
    /// `virtual_ipaddress_excluded`); any family.
    pub excluded_addresses: Vec<VirtualAddress>,
    /// Routes added while Master, removed on leaving it (keepalived `virtual_routes`).
    pub virtual_routes: Vec<route::VirtualRoute>,
    /// Policy rules added while Master, removed on leaving it (keepalived `virtual_rules`).
    pub virtual_rules: Vec<route::VirtualRule>,
    /// Virtual MAC interface (keepalived `use_vmac`), if used.
    pub vmac: Option<Vmac>,
    /// Run on becoming master.
    pub notify_master: Option<String>,
    /// Run on becoming backup.
    pub notify_backup: Option<String>,
    /// Run on entering fault.
    pub notify_fault: Option<String>,
    /// Run when the instance stops.
    pub notify_stop: Option<String>,
    /// Run on every transition with `INSTANCE <name> <state> <priority>`.
    pub notify: Option<String>,
    /// Gratuitous ARP / NA settings (global defaults, overridden per instance).
    pub garp: Garp,
    /// BFD-assisted takeover with each peer: these timers (the instance's, else the
    /// global default); `None`: the RFC's Master_Down_Interval only.
    pub bfd: Option<BfdTimers>,
    /// `[bfd.NAME]` sessions whose state faults or re-weights this instance.
    pub track_bfd: Vec<TrackBfd>,
}

impl Instance {
    /// Address family (all virtual addresses share it).
    pub fn family(&self) -> Family {
        self.virtual_addresses
            .first()
            .map_or(Family::Ipv4, VirtualAddress::family)
    }

    /// True when priority is 255: this node owns the addresses (RFC 5798 §3).
    pub fn is_address_owner(&self) -> bool {
        self.priority == 255
    }

    /// One line for `vigil check`.
    pub fn summary(&self, name: &str) -> String {
        let addrs: Vec<String> = self
            .virtual_addresses
            .iter()
            .map(ToString::to_string)
            .collect();
        format!(
            "{name}: interface {} vrid {} v{} priority {}{} interval {} addresses {}",
            self.interface,
            self.vrid,
            self.version.number(),
            self.priority,
            if self.is_address_owner() {
                " (owner)"
            } else {
                ""
            },
            humantime::format_duration(self.advert_interval),
            addrs.join(", ")
        )
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Auto => "auto",
            XdpMode::Driver => "driver",
            XdpMode::Skb => "skb",
            XdpMode::Off => "off",
        })
    }
}

/// Read and validate a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => parse(&text, &name),
            Err(e) => Err(ConfigError {
                diagnostics: vec![Diagnostic {
                    file: name,
                    line: 0,
                    column: 0,
                    path: String::new(),
                    message: format!("not UTF-8 text ({e})"),
                }],
            }),
        },
        Err(e) => Err(ConfigError {
            diagnostics: vec![Diagnostic {
                file: name,
                line: 0,
                column: 0,
                path: String::new(),
                message: format!("cannot read: {e}"),
            }],
        }),
    }
}

/// Parse and validate configuration text; `origin` names it in messages (a file name).
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let src = SourceText::new(origin, text);
    let raw: raw::RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => return Err(structural_error(&src, &e)),
    };
    validate::validate(&src, raw)
}

/// Turn serde/toml's single error into a diagnostic with position and key path.
fn structural_error(src: &SourceText<'_>, e: &toml::de::Error) -> ConfigError {
    let span = e.span().unwrap_or(0..0);
    let mut path = key_path_at(src.text, span.start);
    let mut message = e.message().trim().to_string();
    // serde says "missing field `vrid`" at the enclosing table; name the key instead.
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(field);
        message = "required key is missing".to_string();
    } else if let Some(rest) = message.strip_prefix("unknown field `") {
        // The path walk may go past the unknown key into its value; stop at the key.
        if let Some(field) = rest.split('`').next() {
            let shown = display_key(field);
            let parts: Vec<&str> = path.split('.').collect();
            if let Some(at) = parts.iter().rposition(|p| *p == shown) {
                path = parts[..=at].join(".");
            }
        }
        message = message.replacen("unknown field", "unknown key", 1);
    }
    ConfigError {
        diagnostics: vec![src.diagnostic(span, path, message)],
    }
}

/// The dotted key path of the value (or key) at a byte offset, found by walking the
/// spanned parse tree. Empty when the text does not parse (a syntax error) or the offset
/// is outside every key and value.
fn key_path_at(text: &str, offset: usize) -> String {
    use toml::de::{DeTable, DeValue};
    // Header tables (`[instances.a]`) span only their header, so containment cannot prune
    // the search: visit everything and keep the deepest entry that covers the offset.
    fn walk(value: &DeValue<'_>, offset: usize, path: &mut Vec<String>, best: &mut Vec<String>) {
        let covers =
            |r: std::ops::Range<usize>| r.start <= offset && offset < r.end.max(r.start + 1);
        match value {
            DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    path.push(display_key(k.get_ref()));
                    if (covers(k.span()) || covers(v.span())) && path.len() > best.len() {
                        *best = path.clone();
                    }
                    walk(v.get_ref(), offset, path, best);
                    path.pop();
                }
            }
            DeValue::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    let Some(last) = path.last().cloned() else {
                        continue;
                    };
                    if let Some(slot) = path.last_mut() {
                        *slot = format!("{last}[{i}]");
                    }
                    if covers(v.span()) && path.len() >= best.len() {
                        *best = path.clone();
                    }
                    walk(v.get_ref(), offset, path, best);
                    if let Some(slot) = path.last_mut() {
                        *slot = last;
                    }
                }
            }
            _ => {}
        }
    }
    let Ok(root) = DeTable::parse(text) else {
        return String::new();
    };
    let (mut path, mut best) = (Vec::new(), Vec::new());
    walk(
        &DeValue::Table(root.into_inner()),
        offset,
        &mut path,
        &mut best,
    );
    best.join(".")
}

/// A key as it would be written in a path: bare when possible, quoted otherwise.
pub(crate) fn display_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

#[cfg(test)]
mod tests;
