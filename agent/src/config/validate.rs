//! Semantic validation: raw spanned values → typed [`Config`], collecting every problem.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::ops::{Range, RangeInclusive};
use std::path::PathBuf;
use std::time::Duration;

use super::duration::RawDuration;
use super::error::{ConfigError, Errors, SourceText};
use super::raw::{
    RawConfig, RawGlobal, RawInstance, RawProcess, RawScript, RawSyncGroup, RawTrack, S,
};
use super::{
    BfdSession, BfdTimers, CommandMatch, Config, DEFAULT_BPF_PIN_DIR, DEFAULT_CONTROL_SOCKET,
    Family, Garp, Global, InitialState, Instance, Process, Script, SyncGroup, TrackBfd, TrackFile,
    TrackInterface, TrackProcess, TrackScript, Version, VirtualAddress, XdpMode, check_ifname,
    display_key,
};

/// Weights of scripts and interfaces, as keepalived allows.
const WEIGHT: RangeInclusive<i64> = -253..=253;
/// track_file weights are one wider in keepalived.
const FILE_WEIGHT: RangeInclusive<i64> = -254..=254;

pub(super) fn validate(src: &SourceText<'_>, mut raw: RawConfig) -> Result<Config, ConfigError> {
    let mut e = Errors::new(src);
    let raw_global = raw.global.take().map(S::into_inner).unwrap_or_default();
    let global = global(&mut e, &raw_global);

    let mut scripts = BTreeMap::new();
    for (name, s) in &raw.scripts {
        let path = format!("scripts.{}", display_key(name.get_ref()));
        if name.get_ref().trim().is_empty() {
            e.add(name.span(), &path, "script name is empty");
        }
        if let Some(script) = script(&mut e, &path, s.get_ref()) {
            scripts.insert(name.get_ref().clone(), script);
        }
    }

    let bfd_sessions = super::bfd::sessions(&mut e, &raw.bfd);
    let mut processes = BTreeMap::new();
    for (name, pr) in &raw.processes {
        let path = format!("processes.{}", display_key(name.get_ref()));
        if name.get_ref().trim().is_empty() {
            e.add(name.span(), &path, "process name is empty");
        }
        if let Some(p) = process(&mut e, &path, pr.get_ref()) {
            processes.insert(name.get_ref().clone(), p);
        }
    }

    let mut instances = BTreeMap::new();
    // (interface, family, vrid) → instance name, to refuse two routers on one wire id.
    let mut ids: HashMap<(String, Family, u8), String> = HashMap::new();
    // address → instance name, so one address is never managed twice.
    let mut owners: HashMap<IpAddr, String> = HashMap::new();
    // virtual MAC interface name → instance name.
    let mut vmacs: HashMap<String, String> = HashMap::new();
    // File order, so a clash is reported at the second of the two instances.
    let mut in_file_order: Vec<_> = raw.instances.iter().collect();
    in_file_order.sort_by_key(|(name, _)| name.span().start);
    for (name, inst) in in_file_order {
        let key = display_key(name.get_ref());
        let path = format!("instances.{key}");
        if name.get_ref().trim().is_empty() {
            e.add(name.span(), &path, "instance name is empty");
        }
        let Some(i) = instance(
            &mut e,
            &path,
            inst.get_ref(),
            &raw.scripts,
            &scripts,
            &global,
            Tracked {
                processes: &processes,
                bfd: &bfd_sessions,
            },
        ) else {
            continue;
        };
        let raw_i = inst.get_ref();
        let id = (i.interface.clone(), i.family(), i.vrid);
        if let Some(other) = ids.get(&id) {
            e.add(
                raw_i.vrid.span(),
                format!("{path}.vrid"),
                format!(
                    "instance `{other}` already uses VRID {} for {} on {}; each (interface, family, VRID) needs its own number",
                    i.vrid,
                    i.family(),
                    i.interface
                ),
            );
        } else {
            ids.insert(id, name.get_ref().clone());
        }
        if let Some(v) = &i.vmac {
            if let Some(other) = vmacs.get(&v.interface) {
                let span = raw_i.use_vmac.as_ref().map_or(raw_i.vrid.span(), S::span);
                e.add(
                    span,
                    format!("{path}.use_vmac"),
                    format!(
                        "instance `{other}` already uses the virtual MAC interface {}; set vmac_interface",
                        v.interface
                    ),
                );
            } else {
                vmacs.insert(v.interface.clone(), name.get_ref().clone());
            }
        }
        let spans = raw_i
            .virtual_addresses
            .get_ref()
            .iter()
            .map(|a| ("virtual_addresses", a.span()))
            .chain(
                raw_i
                    .excluded_addresses
                    .iter()
                    .map(|a| ("excluded_addresses", a.span())),
            );
        let all = i
            .virtual_addresses
            .iter()
            .chain(&i.excluded_addresses)
            .zip(spans);
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (va, (list, span)) in all {
            let n = *index.entry(list).and_modify(|k| *k += 1).or_insert(0);
            if let Some(other) = owners.get(&va.addr) {
                e.add(
                    span,
                    format!("{path}.{list}[{n}]"),
                    format!(
                        "{} is already a virtual address of instance `{other}`; an address belongs to one instance",
                        va.addr
                    ),
                );
            } else {
                owners.insert(va.addr, name.get_ref().clone());
            }
        }
        instances.insert(name.get_ref().clone(), i);
    }

    let sync_groups = sync_groups(
        &mut e,
        &raw,
        &mut instances,
        &raw.scripts,
        &scripts,
        &processes,
    );

    if e.is_empty() {
        Ok(Config {
            global,
            scripts,
            instances,
            bfd: bfd_sessions,
            processes,
            sync_groups,
        })
    } else {
        Err(e.into_error())
    }
}

fn global(e: &mut Errors<'_>, g: &RawGlobal) -> Global {
    let router_id = match &g.router_id {
        Some(r) => {
            let v = r.get_ref();
            // It becomes a directory name under bpf_pin_dir.
            if v.is_empty()
                || v == "."
                || v == ".."
                || v.len() > 64
                || v.chars()
                    .any(|c| c == '/' || c.is_whitespace() || c.is_control())
            {
                e.add(
                    r.span(),
                    "global.router_id",
                    format!(
                        "`{v}` is not usable as a name; allowed: 1 to 64 characters without `/` or whitespace (it names a directory under bpf_pin_dir)"
                    ),
                );
            }
            v.clone()
        }
        None => hostname(),
    };
    let control_socket = match &g.control_socket {
        Some(p) => {
            let v = p.get_ref();
            // sun_path holds 108 bytes including the NUL.
            if v.is_empty() || v.len() > 107 {
                e.add(
                    p.span(),
                    "global.control_socket",
                    "socket path must be 1 to 107 bytes long",
                );
            }
            PathBuf::from(v)
        }
        None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
    };
    let bpf_pin_dir = match &g.bpf_pin_dir {
        Some(p) => {
            if !p.get_ref().starts_with('/') {
                e.add(
                    p.span(),
                    "global.bpf_pin_dir",
                    "must be an absolute path on a bpf filesystem, e.g. \"/sys/fs/bpf/vigil\"",
                );
            }
            PathBuf::from(p.get_ref())
        }
        None => PathBuf::from(DEFAULT_BPF_PIN_DIR),
    };
    let xdp = match &g.xdp {
        None => XdpMode::Auto,
        Some(x) => match x.get_ref().as_str() {
            "auto" => XdpMode::Auto,
            "driver" => XdpMode::Driver,
            "skb" => XdpMode::Skb,
            "off" => XdpMode::Off,
            other => {
                e.add(
                    x.span(),
                    "global.xdp",
                    format!(
                        "unknown mode \"{other}\"; allowed: \"auto\", \"driver\", \"skb\", \"off\""
                    ),
                );
                XdpMode::Auto
            }
        },
    };
    let metrics = g.metrics.as_ref().and_then(|m| match m.get_ref().parse() {
        Ok(a) => Some(a),
        Err(_) => {
            e.add(
                m.span(),
                "global.metrics",
                format!(
                    "\"{}\" is not ADDR:PORT; e.g. \"127.0.0.1:9650\" or \"[::1]:9650\"",
                    m.get_ref()
                ),
            );
            None
        }
    });
    let script_user = g
        .script_user
        .as_ref()
        .map(|u| user_name(e, u, "global.script_user"));
    let garp = garp(
        e,
        "global",
        Garp::default(),
        GarpKeys {
            delay: &g.garp_master_delay,
            repeat: &g.garp_master_repeat,
            refresh: &g.garp_master_refresh,
            refresh_repeat: &g.garp_master_refresh_repeat,
            lower_prio_delay: &g.garp_lower_prio_delay,
            lower_prio_repeat: &g.garp_lower_prio_repeat,
        },
    );
    Global {
        router_id,
        control_socket,
        bpf_pin_dir,
        xdp,
        kernel_timers: g.kernel_timers.as_ref().is_none_or(|b| *b.get_ref()),
        realtime_priority: g
            .realtime_priority
            .as_ref()
            .and_then(|v| int_in(e, v, "global.realtime_priority", 0..=99))
            .map_or(super::DEFAULT_REALTIME_PRIORITY, |v| v as u8),
        metrics,
        nonlocal_bind: g.nonlocal_bind.as_ref().is_some_and(|b| *b.get_ref()),
        script_user,
        garp,
        bfd: g
            .bfd
            .as_ref()
            .map(|t| super::bfd::timers(e, "global.bfd", t.get_ref(), BfdTimers::default())),
        bfd_max_sessions: g
            .bfd_max_sessions
            .as_ref()
            .and_then(|v| int_in(e, v, "global.bfd_max_sessions", 1..=65_536))
            .map_or(super::bfd::DEFAULT_MAX_SESSIONS, |v| v as usize),
        bfd_max_sessions_per_interface: g
            .bfd_max_sessions_per_interface
            .as_ref()
            .and_then(|v| int_in(e, v, "global.bfd_max_sessions_per_interface", 1..=65_536))
            .map_or(super::bfd::DEFAULT_MAX_SESSIONS_PER_INTERFACE, |v| {
                v as usize
            }),
    }
}

/// The raw `garp_*` keys of one table (`[global]` or an instance).
struct GarpKeys<'a> {
    delay: &'a Option<S<RawDuration>>,
    repeat: &'a Option<S<i64>>,
    refresh: &'a Option<S<RawDuration>>,
    refresh_repeat: &'a Option<S<i64>>,
    lower_prio_delay: &'a Option<S<RawDuration>>,
    lower_prio_repeat: &'a Option<S<i64>>,
}

/// The GARP settings of one table over `defaults`. In `[global]` (where `defaults` is
/// [`Garp::default`]) the lower-priority pair falls back to the table's own
/// `garp_master_*`, as keepalived's global defaults do; an instance inherits
/// `[global]`'s values.
fn garp(e: &mut Errors<'_>, path: &str, defaults: Garp, keys: GarpKeys<'_>) -> Garp {
    let GarpKeys {
        delay,
        repeat,
        refresh,
        refresh_repeat,
        lower_prio_delay,
        lower_prio_repeat,
    } = keys;
    let global = path == "global";
    let max_delay = Duration::from_secs(1000);
    let master_delay = delay
        .as_ref()
        .and_then(|d| {
            duration_in(
                e,
                d,
                &format!("{path}.garp_master_delay"),
                Duration::ZERO,
                max_delay,
                "0 (no second burst) to 1000 s",
            )
        })
        .unwrap_or(defaults.master_delay);
    let master_repeat = repeat
        .as_ref()
        .and_then(|r| int_in(e, r, &format!("{path}.garp_master_repeat"), 1..=100))
        .map_or(defaults.master_repeat, |v| v as u32);
    let master_refresh = match refresh {
        None => defaults.master_refresh,
        Some(d) => duration_in(
            e,
            d,
            &format!("{path}.garp_master_refresh"),
            Duration::ZERO,
            Duration::from_secs(86_400),
            "0 (no refresh) to 1 day",
        )
        .filter(|d| !d.is_zero()),
    };
    let master_refresh_repeat = refresh_repeat
        .as_ref()
        .and_then(|r| int_in(e, r, &format!("{path}.garp_master_refresh_repeat"), 1..=100))
        .map_or(defaults.master_refresh_repeat, |v| v as u32);
    let lower_prio_delay = lower_prio_delay
        .as_ref()
        .and_then(|d| {
            duration_in(
                e,
                d,
                &format!("{path}.garp_lower_prio_delay"),
                Duration::ZERO,
                max_delay,
                "0 (no second burst) to 1000 s",
            )
        })
        .unwrap_or(if global {
            master_delay
        } else {
            defaults.lower_prio_delay
        });
    // Zero is allowed here: no announcement on a lower-priority advert, only the advert.
    let lower_prio_repeat = lower_prio_repeat
        .as_ref()
        .and_then(|r| int_in(e, r, &format!("{path}.garp_lower_prio_repeat"), 0..=100))
        .map_or(
            if global {
                master_repeat
            } else {
                defaults.lower_prio_repeat
            },
            |v| v as u32,
        );
    Garp {
        master_delay,
        master_repeat,
        master_refresh,
        master_refresh_repeat,
        lower_prio_delay,
        lower_prio_repeat,
    }
}

fn script(e: &mut Errors<'_>, path: &str, s: &RawScript) -> Option<Script> {
    let before = e.len();
    let command = s.command.get_ref().trim().to_string();
    if command.is_empty() {
        e.add(
            s.command.span(),
            format!("{path}.command"),
            "command is empty",
        );
    }
    let min = Duration::from_millis(10);
    let day = Duration::from_secs(86_400);
    let interval = s
        .interval
        .as_ref()
        .and_then(|d| duration_in(e, d, &format!("{path}.interval"), min, day, "10ms to 1 day"))
        .unwrap_or(Duration::from_secs(1));
    // keepalived: a script without a timeout may run for one interval.
    let timeout = s
        .timeout
        .as_ref()
        .and_then(|d| duration_in(e, d, &format!("{path}.timeout"), min, day, "10ms to 1 day"))
        .unwrap_or(interval);
    let weight = s
        .weight
        .as_ref()
        .and_then(|w| int_in(e, w, &format!("{path}.weight"), WEIGHT))
        .unwrap_or(0) as i32;
    let rise = s
        .rise
        .as_ref()
        .and_then(|w| int_in(e, w, &format!("{path}.rise"), 1..=1000))
        .unwrap_or(1) as u32;
    let fall = s
        .fall
        .as_ref()
        .and_then(|w| int_in(e, w, &format!("{path}.fall"), 1..=1000))
        .unwrap_or(1) as u32;
    let user = s
        .user
        .as_ref()
        .map(|u| user_name(e, u, &format!("{path}.user")));
    (e.len() == before).then_some(Script {
        command,
        interval,
        timeout,
        weight,
        rise,
        fall,
        user,
    })
}

/// Definitions besides scripts that instances refer to by name.
#[derive(Clone, Copy)]
struct Tracked<'a> {
    processes: &'a BTreeMap<String, Process>,
    bfd: &'a BTreeMap<String, BfdSession>,
}

fn instance(
    e: &mut Errors<'_>,
    path: &str,
    r: &RawInstance,
    raw_scripts: &BTreeMap<S<String>, S<RawScript>>,
    scripts: &BTreeMap<String, Script>,
    global: &Global,
    tracked: Tracked<'_>,
) -> Option<Instance> {
    let Tracked {
        processes,
        bfd: bfd_sessions,
    } = tracked;
    let before = e.len();
    let p = |key: &str| format!("{path}.{key}");

    let interface = r.interface.get_ref().clone();
    if let Err(m) = check_ifname(&interface) {
        e.add(r.interface.span(), p("interface"), m);
    }
    let vrid = int_in(e, &r.vrid, &p("vrid"), 1..=255).unwrap_or(1) as u8;
    let priority = match &r.priority {
        None => 100,
        Some(pr) => match *pr.get_ref() {
            1..=255 => *pr.get_ref() as u8,
            0 => {
                e.add(
                    pr.span(),
                    p("priority"),
                    "0 is reserved for a master that is leaving; allowed: 1..=254, or 255 for the address owner",
                );
                100
            }
            v => {
                e.add(
                    pr.span(),
                    p("priority"),
                    format!("{v} is out of range; allowed: 1..=254, or 255 for the address owner"),
                );
                100
            }
        },
    };
    let initial_state = match &r.initial_state {
        None => InitialState::Backup,
        Some(s) => match s.get_ref().as_str() {
            "master" => InitialState::Master,
            "backup" => InitialState::Backup,
            other => {
                let hint = if other.eq_ignore_ascii_case("master")
                    || other.eq_ignore_ascii_case("backup")
                {
                    format!(
                        " (write it in lower case: \"{}\")",
                        other.to_ascii_lowercase()
                    )
                } else {
                    String::new()
                };
                e.add(
                    s.span(),
                    p("initial_state"),
                    format!("unknown state \"{other}\"; allowed: \"master\", \"backup\"{hint}"),
                );
                InitialState::Backup
            }
        },
    };
    let version = match &r.version {
        None => Version::V3,
        Some(v) => match *v.get_ref() {
            2 => Version::V2,
            3 => Version::V3,
            other => {
                e.add(
                    v.span(),
                    p("version"),
                    format!("VRRP version {other} does not exist; allowed: 2, 3"),
                );
                Version::V3
            }
        },
    };

    let advert_interval = match &r.advert_interval {
        None => Duration::from_secs(1),
        Some(d) => advert_interval(e, d, &p("advert_interval"), version),
    };

    let auth_pass = r.auth_pass.as_ref().map(|a| {
        let v = a.get_ref();
        if version != Version::V2 {
            e.add(
                a.span(),
                p("auth_pass"),
                "only with version = 2 (VRRPv3 has no authentication)",
            );
        } else if v.is_empty() || v.len() > 8 {
            e.add(
                a.span(),
                p("auth_pass"),
                format!(
                    "password is {} bytes; allowed: 1 to 8 bytes (VRRPv2 carries 8)",
                    v.len()
                ),
            );
        }
        v.clone()
    });

    // Virtual addresses: parse each, then one family, no duplicates.
    let mut virtual_addresses = Vec::new();
    let mut family: Option<(Family, usize)> = None;
    if r.virtual_addresses.get_ref().is_empty() {
        e.add(
            r.virtual_addresses.span(),
            p("virtual_addresses"),
            "at least one address is required, e.g. [\"192.0.2.100/24\"]",
        );
    }
    for (n, a) in r.virtual_addresses.get_ref().iter().enumerate() {
        let ap = format!("{path}.virtual_addresses[{n}]");
        let va: VirtualAddress = match a.get_ref().parse() {
            Ok(v) => v,
            Err(m) => {
                e.add(a.span(), ap, m);
                continue;
            }
        };
        match family {
            None => family = Some((va.family(), n)),
            Some((f, first)) if f != va.family() => e.add(
                a.span(),
                &ap,
                format!(
                    "{} is {} but virtual_addresses[{first}] is {f}; one family per instance (make a second instance for the other family)",
                    va.addr,
                    va.family()
                ),
            ),
            _ => {}
        }
        if virtual_addresses
            .iter()
            .any(|o: &VirtualAddress| o.addr == va.addr)
        {
            e.add(a.span(), &ap, format!("{} is listed twice", va.addr));
        }
        if let Some(label) = &va.label {
            let dev = va.device(&interface);
            if !label.starts_with(dev) {
                e.add(
                    a.span(),
                    &ap,
                    format!(
                        "label `{label}` must begin with the device name `{dev}` (as `ip addr add` requires), e.g. `{dev}:1`"
                    ),
                );
            }
        }
        virtual_addresses.push(va);
    }
    let family = family.map(|(f, _)| f);
    if version == Version::V2 && family == Some(Family::Ipv6) {
        let span = r
            .version
            .as_ref()
            .map_or(r.virtual_addresses.span(), S::span);
        e.add(
            span,
            p("version"),
            "VRRPv2 is IPv4 only; use version = 3 for IPv6 addresses",
        );
    }

    let preempt = r.preempt.as_ref().is_none_or(|b| *b.get_ref());
    let preempt_delay = r
        .preempt_delay
        .as_ref()
        .and_then(|d| {
            duration_in(
                e,
                d,
                &p("preempt_delay"),
                Duration::ZERO,
                Duration::from_secs(1000),
                "0 to 1000 s",
            )
        })
        .unwrap_or(Duration::ZERO);
    let down_timer_adverts = r
        .down_timer_adverts
        .as_ref()
        .and_then(|d| int_in(e, d, &p("down_timer_adverts"), 1..=100))
        .unwrap_or(3) as u8;

    let unicast_src_ip = r
        .unicast_src_ip
        .as_ref()
        .and_then(|a| peer_addr(e, a, &p("unicast_src_ip"), family));
    let mut unicast_peers: Vec<IpAddr> = Vec::new();
    for (n, a) in r.unicast_peers.iter().enumerate() {
        let ap = format!("{path}.unicast_peers[{n}]");
        let Some(addr) = peer_addr(e, a, &ap, family) else {
            continue;
        };
        if unicast_peers.contains(&addr) {
            e.add(a.span(), &ap, format!("{addr} is listed twice"));
        } else if Some(addr) == unicast_src_ip {
            e.add(
                a.span(),
                &ap,
                format!("{addr} is this node's unicast_src_ip; list the other nodes"),
            );
        } else {
            unicast_peers.push(addr);
        }
    }

    let accept = r.accept.as_ref().is_none_or(|b| *b.get_ref());
    let v3_checksum_as_v2 = match &r.v3_checksum_as_v2 {
        None => false,
        Some(b) => {
            if *b.get_ref() && (version != Version::V3 || family == Some(Family::Ipv6)) {
                e.add(
                    b.span(),
                    p("v3_checksum_as_v2"),
                    "applies only to version = 3 over IPv4",
                );
            }
            *b.get_ref()
        }
    };

    let track_scripts = track_list(e, path, "track_scripts", "script", &r.track_scripts)
        .into_iter()
        .filter_map(|(name, span, weight)| {
            let Some(script) = scripts.get(&name) else {
                // A script that failed its own validation is reported there already.
                if !raw_scripts.keys().any(|k| *k.get_ref() == name) {
                    let known: Vec<String> = raw_scripts
                        .keys()
                        .map(|k| format!("`{}`", k.get_ref()))
                        .collect();
                    let allowed = if known.is_empty() {
                        "no [scripts.NAME] tables are defined".to_string()
                    } else {
                        format!("defined: {}", known.join(", "))
                    };
                    e.add(
                        span.0,
                        span.1,
                        format!("no script named `{name}`; {allowed}"),
                    );
                }
                return None;
            };
            Some(TrackScript {
                weight: weight.map_or(script.weight, |w| w as i32),
                script: name,
            })
        })
        .collect::<Vec<_>>();
    let track_interfaces = track_list(
        e,
        path,
        "track_interfaces",
        "interface",
        &r.track_interfaces,
    )
    .into_iter()
    .filter_map(|(name, span, weight)| {
        if let Err(m) = check_ifname(&name) {
            e.add(span.0, span.1, m);
            return None;
        }
        Some(TrackInterface {
            interface: name,
            weight: weight.unwrap_or(0) as i32,
        })
    })
    .collect::<Vec<_>>();
    let track_files = track_list(e, path, "track_files", "path", &r.track_files)
        .into_iter()
        .filter_map(|(name, span, weight)| {
            if !name.starts_with('/') {
                e.add(
                    span.0,
                    span.1,
                    format!("`{name}` is not an absolute path; track_files takes absolute paths"),
                );
                return None;
            }
            Some(TrackFile {
                path: PathBuf::from(name),
                weight: weight.unwrap_or(1) as i32,
            })
        })
        .collect::<Vec<_>>();

    let track_processes = track_processes(e, path, &r.track_processes, processes);
    let excluded_addresses = excluded_addresses(e, path, &r.excluded_addresses, &interface);
    let virtual_routes = parsed_list(e, path, "virtual_routes", &r.virtual_routes);
    let virtual_rules = parsed_list(e, path, "virtual_rules", &r.virtual_rules);
    let vmac = vmac(e, path, r, vrid);

    let notify_master = notify(e, &r.notify_master, &p("notify_master"));
    let notify_backup = notify(e, &r.notify_backup, &p("notify_backup"));
    let notify_fault = notify(e, &r.notify_fault, &p("notify_fault"));
    let notify_stop = notify(e, &r.notify_stop, &p("notify_stop"));
    let notify_any = notify(e, &r.notify, &p("notify"));

    let garp = garp(
        e,
        path,
        global.garp,
        GarpKeys {
            delay: &r.garp_master_delay,
            repeat: &r.garp_master_repeat,
            refresh: &r.garp_master_refresh,
            refresh_repeat: &r.garp_master_refresh_repeat,
            lower_prio_delay: &r.garp_lower_prio_delay,
            lower_prio_repeat: &r.garp_lower_prio_repeat,
        },
    );

    let bfd = match &r.bfd {
        Some(t) => Some(super::bfd::timers(
            e,
            &p("bfd"),
            t.get_ref(),
            global.bfd.unwrap_or_default(),
        )),
        None => global.bfd,
    };
    let track_bfd = track_list(e, path, "track_bfd", "bfd", &r.track_bfd)
        .into_iter()
        .filter_map(|(name, span, weight)| {
            let Some(session) = bfd_sessions.get(&name) else {
                e.add(span.0, span.1, format!("no BFD session `{name}` in [bfd]"));
                return None;
            };
            Some(TrackBfd {
                weight: weight.map_or(session.weight, |w| w as i32),
                session: name,
            })
        })
        .collect::<Vec<_>>();

    (e.len() == before).then_some(Instance {
        interface,
        vrid,
        priority,
        initial_state,
        version,
        advert_interval,
        auth_pass,
        virtual_addresses,
        preempt,
        preempt_delay,
        down_timer_adverts,
        unicast_src_ip,
        unicast_peers,
        accept,
        v3_checksum_as_v2,
        track_scripts,
        track_interfaces,
        track_files,
        track_processes,
        excluded_addresses,
        virtual_routes,
        virtual_rules,
        vmac,
        notify_master,
        notify_backup,
        notify_fault,
        notify_stop,
        notify: notify_any,
        garp,
        bfd,
        track_bfd,
    })
}

fn notify(e: &mut Errors<'_>, v: &Option<S<String>>, path: &str) -> Option<String> {
    v.as_ref().map(|s| {
        let cmd = s.get_ref().trim().to_string();
        if cmd.is_empty() {
            e.add(
                s.span(),
                path,
                "command is empty; leave the key out instead",
            );
        }
        cmd
    })
}

fn process(e: &mut Errors<'_>, path: &str, r: &RawProcess) -> Option<Process> {
    let before = e.len();
    let p = |key: &str| format!("{path}.{key}");
    let name = r.name.get_ref().clone();
    if name.is_empty() || name.contains('\0') {
        e.add(
            r.name.span(),
            p("name"),
            "needs a process name, e.g. \"nginx\"",
        );
    }
    let command_line = r.command_line.as_ref().map(|c| {
        if c.get_ref().trim().is_empty() {
            e.add(
                c.span(),
                p("command_line"),
                "empty; leave the key out to match by name only",
            );
        }
        c.get_ref().clone()
    });
    let command_match = match &r.command_match {
        None => CommandMatch::Exact,
        Some(m) => {
            if command_line.is_none() {
                e.add(
                    m.span(),
                    p("command_match"),
                    "only with command_line (it says how command_line is compared)",
                );
            }
            match m.get_ref().as_str() {
                "exact" => CommandMatch::Exact,
                "initial" => CommandMatch::Initial,
                "partial" => CommandMatch::Partial,
                other => {
                    e.add(
                        m.span(),
                        p("command_match"),
                        format!("`{other}`: expected exact, initial or partial"),
                    );
                    CommandMatch::Exact
                }
            }
        }
    };
    let quorum = r
        .quorum
        .as_ref()
        .and_then(|q| int_in(e, q, &p("quorum"), 1..=65_535))
        .unwrap_or(1) as u32;
    let quorum_max = r
        .quorum_max
        .as_ref()
        .and_then(|q| int_in(e, q, &p("quorum_max"), 1..=65_535))
        .map(|q| q as u32);
    if let (Some(max), Some(q)) = (quorum_max, &r.quorum_max)
        && max < quorum
    {
        e.add(
            q.span(),
            p("quorum_max"),
            format!("{max} is below quorum ({quorum}); no count could satisfy both"),
        );
    }
    let weight = r
        .weight
        .as_ref()
        .and_then(|w| int_in(e, w, &p("weight"), WEIGHT))
        .unwrap_or(0) as i32;
    let delay = |e: &mut Errors<'_>, d: &Option<S<RawDuration>>, key: &str| {
        d.as_ref().and_then(|d| {
            duration_in(
                e,
                d,
                &p(key),
                Duration::ZERO,
                Duration::from_secs(3600),
                "0 to 3600 s",
            )
        })
    };
    let both = delay(e, &r.delay, "delay").unwrap_or(Duration::ZERO);
    let fork_delay = delay(e, &r.fork_delay, "fork_delay").unwrap_or(both);
    let terminate_delay = delay(e, &r.terminate_delay, "terminate_delay").unwrap_or(both);
    (e.len() == before).then_some(Process {
        name,
        command_line,
        command_match,
        quorum,
        quorum_max,
        weight,
        fork_delay,
        terminate_delay,
    })
}

fn track_processes(
    e: &mut Errors<'_>,
    path: &str,
    items: &[S<RawTrack>],
    processes: &BTreeMap<String, Process>,
) -> Vec<TrackProcess> {
    track_list(e, path, "track_processes", "process", items)
        .into_iter()
        .filter_map(|(name, span, weight)| {
            let Some(p) = processes.get(&name) else {
                let known: Vec<String> = processes.keys().map(|k| format!("`{k}`")).collect();
                let allowed = if known.is_empty() {
                    "no [processes.NAME] tables are defined (or they have errors)".to_string()
                } else {
                    format!("defined: {}", known.join(", "))
                };
                e.add(
                    span.0,
                    span.1,
                    format!("no process named `{name}`; {allowed}"),
                );
                return None;
            };
            Some(TrackProcess {
                weight: weight.map_or(p.weight, |w| w as i32),
                process: name,
            })
        })
        .collect()
}

fn vmac(e: &mut Errors<'_>, path: &str, r: &RawInstance, vrid: u8) -> Option<super::Vmac> {
    let on = r.use_vmac.as_ref().is_some_and(|b| *b.get_ref());
    if !on {
        for (key, span) in [
            ("vmac_interface", r.vmac_interface.as_ref().map(S::span)),
            ("vmac_xmit_base", r.vmac_xmit_base.as_ref().map(S::span)),
        ] {
            if let Some(span) = span {
                e.add(span, format!("{path}.{key}"), "only with use_vmac = true");
            }
        }
        return None;
    }
    let interface = match &r.vmac_interface {
        Some(n) => {
            if let Err(m) = check_ifname(n.get_ref()) {
                e.add(n.span(), format!("{path}.vmac_interface"), m);
            }
            n.get_ref().clone()
        }
        None => crate::net::vmac::default_name(vrid),
    };
    Some(super::Vmac {
        interface,
        xmit_base: r.vmac_xmit_base.as_ref().is_some_and(|b| *b.get_ref()),
    })
}

/// Each string parsed as `T`, duplicates refused.
fn parsed_list<T: std::str::FromStr<Err = String> + PartialEq>(
    e: &mut Errors<'_>,
    path: &str,
    list: &str,
    items: &[S<String>],
) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for (n, a) in items.iter().enumerate() {
        let ap = format!("{path}.{list}[{n}]");
        match a.get_ref().parse::<T>() {
            Ok(v) if out.contains(&v) => e.add(a.span(), ap, "listed twice"),
            Ok(v) => out.push(v),
            Err(m) => e.add(a.span(), ap, m),
        }
    }
    out
}

fn excluded_addresses(
    e: &mut Errors<'_>,
    path: &str,
    items: &[S<String>],
    interface: &str,
) -> Vec<VirtualAddress> {
    let mut out: Vec<VirtualAddress> = Vec::new();
    for (n, a) in items.iter().enumerate() {
        let ap = format!("{path}.excluded_addresses[{n}]");
        let va: VirtualAddress = match a.get_ref().parse() {
            Ok(v) => v,
            Err(m) => {
                e.add(a.span(), ap, m);
                continue;
            }
        };
        if out.iter().any(|o| o.addr == va.addr) {
            e.add(a.span(), &ap, format!("{} is listed twice", va.addr));
            continue;
        }
        if let Some(label) = &va.label {
            let dev = va.device(interface);
            if !label.starts_with(dev) {
                e.add(
                    a.span(),
                    &ap,
                    format!(
                        "label `{label}` must begin with the device name `{dev}`, e.g. `{dev}:1`"
                    ),
                );
            }
        }
        out.push(va);
    }
    out
}

/// Sync groups: each member exists and is in one group; a group's own tracking is added
/// to every member as a FAULT-only entry (weight 0), as keepalived does.
fn sync_groups(
    e: &mut Errors<'_>,
    raw: &RawConfig,
    instances: &mut BTreeMap<String, Instance>,
    raw_scripts: &BTreeMap<S<String>, S<RawScript>>,
    scripts: &BTreeMap<String, Script>,
    processes: &BTreeMap<String, Process>,
) -> BTreeMap<String, SyncGroup> {
    let mut out = BTreeMap::new();
    let mut member_of: HashMap<String, String> = HashMap::new();
    for (name, g) in &raw.sync_groups {
        let path = format!("sync_groups.{}", display_key(name.get_ref()));
        let g: &RawSyncGroup = g.get_ref();
        let before = e.len();
        if name.get_ref().trim().is_empty() {
            e.add(name.span(), &path, "group name is empty");
        }
        let mut members: Vec<String> = Vec::new();
        if g.instances.get_ref().len() < 2 {
            e.add(
                g.instances.span(),
                format!("{path}.instances"),
                "a sync group needs at least two instances",
            );
        }
        for (n, m) in g.instances.get_ref().iter().enumerate() {
            let ip = format!("{path}.instances[{n}]");
            let m_name = m.get_ref();
            if !raw.instances.keys().any(|k| k.get_ref() == m_name) {
                let known: Vec<String> = raw
                    .instances
                    .keys()
                    .map(|k| format!("`{}`", k.get_ref()))
                    .collect();
                e.add(
                    m.span(),
                    ip,
                    format!(
                        "no instance named `{m_name}`; defined: {}",
                        known.join(", ")
                    ),
                );
                continue;
            }
            if members.contains(m_name) {
                e.add(m.span(), ip, format!("`{m_name}` is listed twice"));
                continue;
            }
            if let Some(other) = member_of.get(m_name) {
                e.add(
                    m.span(),
                    ip,
                    format!("`{m_name}` is already in sync group `{other}`; an instance belongs to one group"),
                );
                continue;
            }
            member_of.insert(m_name.clone(), name.get_ref().clone());
            members.push(m_name.clone());
        }
        // The group's tracking, as FAULT-only entries.
        let t_scripts: Vec<TrackScript> =
            track_list(e, &path, "track_scripts", "script", &g.track_scripts)
                .into_iter()
                .filter_map(|(n, span, _)| {
                    if scripts.contains_key(&n) {
                        Some(TrackScript {
                            script: n,
                            weight: 0,
                        })
                    } else {
                        if !raw_scripts.keys().any(|k| *k.get_ref() == n) {
                            e.add(span.0, span.1, format!("no script named `{n}`"));
                        }
                        None
                    }
                })
                .collect();
        let t_ifaces: Vec<TrackInterface> = track_list(
            e,
            &path,
            "track_interfaces",
            "interface",
            &g.track_interfaces,
        )
        .into_iter()
        .filter_map(|(n, span, _)| match check_ifname(&n) {
            Ok(()) => Some(TrackInterface {
                interface: n,
                weight: 0,
            }),
            Err(m) => {
                e.add(span.0, span.1, m);
                None
            }
        })
        .collect();
        let t_files: Vec<TrackFile> = track_list(e, &path, "track_files", "path", &g.track_files)
            .into_iter()
            .filter_map(|(n, span, _)| {
                if n.starts_with('/') {
                    Some(TrackFile {
                        path: PathBuf::from(n),
                        weight: 0,
                    })
                } else {
                    e.add(span.0, span.1, format!("`{n}` is not an absolute path"));
                    None
                }
            })
            .collect();
        let t_procs: Vec<TrackProcess> = track_processes(e, &path, &g.track_processes, processes)
            .into_iter()
            .map(|t| TrackProcess { weight: 0, ..t })
            .collect();
        let p = |key: &str| format!("{path}.{key}");
        let group = SyncGroup {
            instances: members.clone(),
            notify_master: notify(e, &g.notify_master, &p("notify_master")),
            notify_backup: notify(e, &g.notify_backup, &p("notify_backup")),
            notify_fault: notify(e, &g.notify_fault, &p("notify_fault")),
            notify_stop: notify(e, &g.notify_stop, &p("notify_stop")),
            notify: notify(e, &g.notify, &p("notify")),
        };
        if e.len() != before {
            continue;
        }
        for m in &members {
            let Some(i) = instances.get_mut(m) else {
                continue;
            };
            // As keepalived (without sync_group_tracking_weight): a member's own tracking
            // weights are ignored and a tracked failure means FAULT, which the group then
            // spreads. Weights that only moved one member's priority could leave the
            // group Master on one node for one VRID and wanted on the other for another.
            for t in &mut i.track_scripts {
                t.weight = 0;
            }
            for t in &mut i.track_interfaces {
                t.weight = 0;
            }
            for t in &mut i.track_files {
                t.weight = 0;
            }
            for t in &mut i.track_processes {
                t.weight = 0;
            }
            for t in &t_scripts {
                if !i.track_scripts.iter().any(|x| x.script == t.script) {
                    i.track_scripts.push(t.clone());
                }
            }
            for t in &t_ifaces {
                if !i
                    .track_interfaces
                    .iter()
                    .any(|x| x.interface == t.interface)
                {
                    i.track_interfaces.push(t.clone());
                }
            }
            for t in &t_files {
                if !i.track_files.iter().any(|x| x.path == t.path) {
                    i.track_files.push(t.clone());
                }
            }
            for t in &t_procs {
                if !i.track_processes.iter().any(|x| x.process == t.process) {
                    i.track_processes.push(t.clone());
                }
            }
        }
        out.insert(name.get_ref().clone(), group);
    }
    out
}

fn advert_interval(
    e: &mut Errors<'_>,
    d: &S<RawDuration>,
    path: &str,
    version: Version,
) -> Duration {
    let fallback = Duration::from_secs(1);
    let value = match d.get_ref().to_duration() {
        Ok(v) => v,
        Err(m) => {
            e.add(d.span(), path, m);
            return fallback;
        }
    };
    let shown = humantime::format_duration(value);
    match version {
        Version::V2 => {
            if value.subsec_nanos() != 0 || !(1..=255).contains(&value.as_secs()) {
                e.add(
                    d.span(),
                    path,
                    format!(
                        "{shown} is not valid for version = 2; allowed: whole seconds 1 to 255 (use version = 3 for shorter intervals)"
                    ),
                );
                return fallback;
            }
        }
        Version::V3 => {
            let nanos = value.as_nanos();
            let cs = 10_000_000u128;
            if nanos % cs != 0 || !(1..=4095).contains(&(nanos / cs)) {
                e.add(
                    d.span(),
                    path,
                    format!(
                        "{shown} is not valid for version = 3; allowed: 10ms to 40.95s in steps of 10ms"
                    ),
                );
                return fallback;
            }
        }
    }
    value
}

/// Entries of a track list as (name, (span, path), weight override), after checking the
/// table key, the weight range and duplicates.
#[allow(clippy::type_complexity)]
fn track_list(
    e: &mut Errors<'_>,
    path: &str,
    list: &str,
    name_key: &str,
    items: &[S<RawTrack>],
) -> Vec<(String, (Range<usize>, String), Option<i64>)> {
    let range = if list == "track_files" {
        FILE_WEIGHT
    } else {
        WEIGHT
    };
    let mut out: Vec<(String, (Range<usize>, String), Option<i64>)> = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let ip = format!("{path}.{list}[{n}]");
        let t = item.get_ref();
        let name_span = t.name_span.clone().unwrap_or(item.span());
        if let Some(key) = t.key
            && key != name_key
        {
            e.add(
                name_span,
                format!("{ip}.{key}"),
                format!("{list} entries name their item with `{name_key} = `"),
            );
            continue;
        }
        let weight = match &t.weight {
            None => None,
            Some(w) => match int_in(e, w, &format!("{ip}.weight"), range.clone()) {
                Some(v) => Some(v),
                None => continue,
            },
        };
        if t.name.is_empty() {
            e.add(name_span, ip, "empty name");
            continue;
        }
        if out.iter().any(|(o, _, _)| *o == t.name) {
            e.add(name_span, ip, format!("`{}` is listed twice", t.name));
            continue;
        }
        out.push((t.name.clone(), (name_span, ip), weight));
    }
    out
}

pub(super) fn peer_addr(
    e: &mut Errors<'_>,
    a: &S<String>,
    path: &str,
    family: Option<Family>,
) -> Option<IpAddr> {
    let addr: IpAddr = match a.get_ref().trim().parse() {
        Ok(v) => v,
        Err(_) => {
            e.add(
                a.span(),
                path,
                format!("\"{}\" is not an IPv4 or IPv6 address", a.get_ref()),
            );
            return None;
        }
    };
    if addr.is_unspecified() || addr.is_multicast() {
        e.add(a.span(), path, format!("{addr} is not a unicast address"));
        return None;
    }
    if let Some(f) = family
        && Family::of(&addr) != f
    {
        e.add(
            a.span(),
            path,
            format!(
                "{addr} is {} but the virtual addresses are {f}; one family per instance",
                Family::of(&addr)
            ),
        );
        return None;
    }
    Some(addr)
}

fn user_name(e: &mut Errors<'_>, u: &S<String>, path: &str) -> String {
    let v = u.get_ref();
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c == ':' || c.is_control())
    {
        e.add(
            u.span(),
            path,
            format!("`{v}` is not a user name; allowed: a name or a numeric uid, no spaces or `:`"),
        );
    }
    v.clone()
}

pub(super) fn int_in(
    e: &mut Errors<'_>,
    v: &S<i64>,
    path: &str,
    range: RangeInclusive<i64>,
) -> Option<i64> {
    let x = *v.get_ref();
    if range.contains(&x) {
        Some(x)
    } else {
        e.add(
            v.span(),
            path,
            format!(
                "{x} is out of range; allowed: {}..={}",
                range.start(),
                range.end()
            ),
        );
        None
    }
}

pub(super) fn duration_in(
    e: &mut Errors<'_>,
    d: &S<RawDuration>,
    path: &str,
    min: Duration,
    max: Duration,
    allowed: &str,
) -> Option<Duration> {
    match d.get_ref().to_duration() {
        Ok(v) if v >= min && v <= max => Some(v),
        Ok(v) => {
            e.add(
                d.span(),
                path,
                format!(
                    "{} is out of range; allowed: {allowed}",
                    humantime::format_duration(v)
                ),
            );
            None
        }
        Err(m) => {
            e.add(d.span(), path, m);
            None
        }
    }
}

/// The kernel's host name, the default router_id.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success
    // when the name fits, and we stop at the first NUL or the end either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "vigil".to_string();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if name.is_empty() {
        "vigil".to_string()
    } else {
        name
    }
}
