//! keepalived.conf importer: keepalived's VRRP configuration → vigil TOML.
//!
//! Everything that is not carried over is reported as a [`Warning`] naming the file, line
//! and keyword; nothing is dropped silently. Where keepalived's defaults differ from
//! vigil's (keepalived speaks VRRPv2 unless told otherwise, vigil VRRPv3), the output
//! spells the keepalived behaviour out.

mod bfd;
pub mod keywords;
mod lexer;

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::config::{self, ConfigError, duration};
use lexer::{Loc, Node};

/// Something in the keepalived file that the output does not carry (or carries changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// File the keyword is in (an included file where it came from one).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The keepalived keyword concerned.
    pub keyword: String,
    /// What happened to it.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if !self.keyword.is_empty() {
            write!(f, "{}: ", self.keyword)?;
        }
        f.write_str(&self.message)
    }
}

/// The keepalived file could not be read or parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// File concerned.
    pub file: String,
    /// 1-based line; 0 when the whole file is concerned.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file, self.message)
        }
    }
}

impl std::error::Error for ImportError {}

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Import {
    /// vigil configuration (TOML text).
    pub toml: String,
    /// Everything not carried over, or carried over changed.
    pub warnings: Vec<Warning>,
    /// What `vigil check` finds wrong in `toml`; `None` when it passes.
    pub check: Option<ConfigError>,
}

/// Import a keepalived.conf file, following its `include`s.
pub fn import_file(path: &Path) -> Result<Import, ImportError> {
    import_file_for(path, None)
}

/// Import a keepalived.conf file as keepalived started with `-i CONFIG_ID` reads it: the
/// `@CONFIG_ID` lines apply and other `@id` lines are left out. Without an id every `@id`
/// line is warned about and left out.
pub fn import_file_for(path: &Path, config_id: Option<&str>) -> Result<Import, ImportError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ImportError {
        file: name.clone(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    let mut warnings = Vec::new();
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            warnings.push(Warning {
                file: name.clone(),
                line: 0,
                keyword: String::new(),
                message: "not UTF-8 text; invalid bytes replaced".to_string(),
            });
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let (tree, lex_warnings) = lexer::parse(&lexer::RealFiles, &text, &name, dir, config_id)?;
    warnings.extend(lex_warnings);
    Ok(convert(&tree, warnings, &file_name(path)))
}

/// Import keepalived.conf text; `origin` names it in warnings. `include`s are reported,
/// not followed.
pub fn import_str(text: &str, origin: &str) -> Result<Import, ImportError> {
    let (tree, warnings) = lexer::parse(&lexer::NoFiles, text, origin, None, None)?;
    Ok(convert(&tree, warnings, origin))
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[derive(Default)]
struct Garp {
    delay: Option<Duration>,
    repeat: Option<i64>,
    refresh: Option<Duration>,
    refresh_repeat: Option<i64>,
    lower_prio_delay: Option<Duration>,
    lower_prio_repeat: Option<i64>,
}

#[derive(Default)]
struct Global {
    router_id: Option<String>,
    script_user: Option<String>,
    garp: Garp,
    /// keepalived `vrrp_version`: the default for instances without `version`.
    version: Option<i64>,
    /// keepalived `vrrp_down_timer_adverts`.
    down_timer_adverts: Option<i64>,
    /// keepalived `vrrp_strict`: instances default to no_accept.
    strict: bool,
    /// keepalived `vrrp_rt_priority`: vigil's `realtime_priority`.
    rt_priority: Option<i64>,
}

struct Script {
    name: String,
    loc: Loc,
    command: Option<String>,
    interval: Option<Duration>,
    timeout: Option<Duration>,
    weight: Option<i64>,
    rise: Option<i64>,
    fall: Option<i64>,
    user: Option<String>,
}

/// keepalived `track_file NAME { file PATH; weight W }`.
struct TrackFileDef {
    path: Option<String>,
    weight: Option<i64>,
}

/// keepalived `vrrp_track_process NAME { ... }`.
struct ProcessDef {
    name: String,
    loc: Loc,
    process: Option<String>,
    args: Option<String>,
    /// `param_match initial` / `partial` (None: exact).
    param_match: Option<&'static str>,
    full_command: bool,
    quorum: Option<i64>,
    quorum_max: Option<i64>,
    weight: Option<i64>,
    delay: Option<Duration>,
    fork_delay: Option<Duration>,
    terminate_delay: Option<Duration>,
}

/// keepalived `vrrp_sync_group NAME { group { ... } ... }`.
struct SyncGroupDef {
    name: String,
    loc: Loc,
    members: Vec<String>,
    track_scripts: Vec<String>,
    track_interfaces: Vec<String>,
    track_files: Vec<(String, Loc)>,
    track_processes: Vec<String>,
    notify: Vec<(&'static str, String)>,
}

struct Instance {
    name: String,
    loc: Loc,
    interface: Option<String>,
    vrid: Option<i64>,
    priority: Option<i64>,
    /// `state`: "master" or "backup", and where it was set.
    state: Option<(&'static str, Loc)>,
    version: Option<(i64, Loc)>,
    advert_int: Option<(f64, Loc)>,
    auth_type: Option<(String, Loc)>,
    auth_pass: Option<(String, Loc)>,
    vips: Vec<(String, Option<IpAddr>)>,
    excluded: Vec<(String, Option<IpAddr>)>,
    routes: Vec<String>,
    rules: Vec<String>,
    /// `use_vmac [NAME]`: Some(name given, if any).
    vmac: Option<(Option<String>, Loc)>,
    vmac_xmit_base: bool,
    preempt: Option<(bool, Loc)>,
    preempt_delay: Option<(Duration, Loc)>,
    down_timer_adverts: Option<(i64, Loc)>,
    /// `strict_mode [on|off]` on the instance; `None`: global `vrrp_strict` decides.
    strict: Option<bool>,
    unicast_src_ip: Option<String>,
    unicast_peers: Vec<String>,
    accept: Option<bool>,
    old_checksum: bool,
    track_scripts: Vec<(String, Option<i64>)>,
    track_interfaces: Vec<(String, Option<i64>)>,
    /// Names of keepalived track_file definitions, resolved after the whole file is read.
    track_files: Vec<(String, Option<i64>, Loc)>,
    /// keepalived `track_bfd` entries.
    track_bfd: Vec<(String, Option<i64>)>,
    track_processes: Vec<(String, Option<i64>)>,
    notify: Vec<(&'static str, String)>,
    garp: Garp,
}

struct Conv {
    warnings: Vec<Warning>,
    global: Global,
    scripts: Vec<Script>,
    instances: Vec<Instance>,
    track_files: HashMap<String, TrackFileDef>,
    processes: Vec<ProcessDef>,
    sync_groups: Vec<SyncGroupDef>,
    /// Names of the converted scripts, to check track_script references against.
    script_names: Vec<String>,
    /// Their weights (0 when not given), for the address owner's tracking.
    script_weights: HashMap<String, i64>,
    /// keepalived `bfd_instance` blocks.
    bfds: Vec<bfd::BfdDef>,
    /// Names of the converted process definitions, likewise.
    process_names: Vec<String>,
}

/// keepalived logs "Unknown keyword" and goes on; so does the importer.
const UNKNOWN: &str =
    "unknown keyword (keepalived ignores it with a warning too); not carried over";

fn convert(tree: &[Node], warnings: Vec<Warning>, origin: &str) -> Import {
    let mut c = Conv {
        warnings,
        global: Global::default(),
        scripts: Vec::new(),
        instances: Vec::new(),
        track_files: HashMap::new(),
        processes: Vec::new(),
        sync_groups: Vec::new(),
        script_names: Vec::new(),
        script_weights: HashMap::new(),
        bfds: Vec::new(),
        process_names: Vec::new(),
    };
    // Pass 1: definitions other blocks depend on, wherever they are in the file.
    for n in tree {
        match n.keyword() {
            "global_defs" => c.global_defs(n),
            "track_file" | "vrrp_track_file" if !n.args().is_empty() => c.track_file_def(n),
            _ => {}
        }
    }
    // Pass 2: scripts, instances and everything else.
    for n in tree {
        match n.keyword() {
            "global_defs" => {}
            "track_file" | "vrrp_track_file" if !n.args().is_empty() => {}
            "vrrp_script" => c.vrrp_script(n),
            "vrrp_instance" => c.vrrp_instance(n),
            "bfd_instance" => c.bfd_instance(n),
            "vrrp_sync_group" => c.vrrp_sync_group(n),
            "vrrp_track_process" => c.vrrp_track_process(n),
            "track_script" | "track_interface" | "track_file" | "virtual_ipaddress" => c.warn(
                n,
                "outside a vrrp_instance (keepalived rejects it here); not carried over: move it into the vrrp_instance it belongs to",
            ),
            "" => c.warn(n, "block without a keyword; not carried over"),
            kw => match keywords::dropped(keywords::Block::Top, kw) {
                // One warning per section, naming it: `virtual_server 192.0.2.1 80`.
                Some(why) if !n.args().is_empty() => {
                    let section = n.words.join(" ");
                    c.warn(n, format!("section `{section}` not carried over: {why}"))
                }
                Some(why) => c.warn(n, format!("not carried over: {why}")),
                None => c.warn(n, UNKNOWN),
            },
        }
    }
    let toml = c.emit(origin);
    let check = config::parse(&toml, "<import-keepalived output>").err();
    Import {
        toml,
        warnings: c.warnings,
        check,
    }
}

impl Conv {
    fn warn_at(&mut self, loc: &Loc, keyword: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            file: loc.file.to_string(),
            line: loc.line,
            keyword: keyword.to_string(),
            message: message.into(),
        });
    }

    fn warn(&mut self, n: &Node, message: impl Into<String>) {
        let kw = n.keyword().to_string();
        self.warn_at(&n.loc, &kw, message);
    }

    /// The name of a named section (`vrrp_instance NAME { … }`), or `None`, warned, when it
    /// has none or an earlier section of its kind took the name (keepalived keeps the first).
    fn section_name(&mut self, n: &Node, taken: impl Fn(&Self, &str) -> bool) -> Option<String> {
        let kind = n.keyword().to_string();
        let Some(name) = n.args().first().cloned() else {
            self.warn(n, format!("{kind} without a name; not carried over"));
            return None;
        };
        if n.args().len() > 1 {
            self.warn(
                n,
                format!("extra words `{}` not carried over", n.args()[1..].join(" ")),
            );
        }
        if taken(self, &name) {
            self.warn(
                n,
                format!("{kind} `{name}` defined twice; the second is not carried over"),
            );
            return None;
        }
        Some(name)
    }

    /// The single argument of `keyword VALUE`; extra words and a missing value are warned.
    fn one_arg(&mut self, n: &Node) -> Option<String> {
        let args = n.args();
        let Some(first) = args.first() else {
            self.warn(n, "needs a value; not carried over");
            return None;
        };
        if args.len() > 1 {
            let extra = args[1..].join(" ");
            self.warn(n, format!("extra words `{extra}` not carried over"));
        }
        self.no_block(n);
        Some(first.clone())
    }

    fn int_arg(&mut self, n: &Node) -> Option<i64> {
        let v = self.one_arg(n)?;
        match v.parse::<i64>() {
            Ok(i) => Some(i),
            Err(_) => {
                self.warn(n, format!("`{v}` is not a whole number; not carried over"));
                None
            }
        }
    }

    /// keepalived times are seconds, possibly fractional.
    fn secs_arg(&mut self, n: &Node) -> Option<Duration> {
        let v = self.one_arg(n)?;
        match v.parse::<f64>() {
            Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => {
                Some(Duration::from_micros((s * 1e6).round() as u64))
            }
            _ => {
                self.warn(
                    n,
                    format!("`{v}` is not a number of seconds; not carried over"),
                );
                None
            }
        }
    }

    /// A keyword keepalived reads in whole seconds: as `strtoul` does, the digits before
    /// anything else count (`0.5` is 0, `2.9` is 2), with a warning when more was written.
    fn whole_secs_arg(&mut self, n: &Node) -> Option<Duration> {
        let v = self.one_arg(n)?;
        let digits = v.len() - v.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let Ok(secs) = v[..digits].parse::<u64>() else {
            self.warn(
                n,
                format!("`{v}` is not a whole number of seconds; not carried over"),
            );
            return None;
        };
        if digits < v.len() {
            self.warn(
                n,
                format!("`{v}`: keepalived reads whole seconds only, so it uses {secs} s; so does the output"),
            );
        }
        Some(Duration::from_secs(secs.min(86_400)))
    }

    /// A unicast address as keepalived reads it: anything from a `/` or `-` on (a prefix
    /// or range) is dropped, with a warning.
    fn bare_address(&mut self, n: &Node, keyword: &str, text: String) -> String {
        match text.find(['/', '-']) {
            Some(cut) => {
                let addr = text[..cut].to_string();
                self.warn_at(
                    &n.loc,
                    keyword,
                    format!("`{text}`: keepalived ignores `{}` on a unicast address and uses {addr}; so does the output", &text[cut..]),
                );
                addr
            }
            None => text,
        }
    }

    /// `keyword [on|off|true|false|yes|no]`: a bare keyword means on.
    fn flag(&mut self, n: &Node) -> Option<bool> {
        self.no_block(n);
        let args = n.args();
        let v = match args.first().map(String::as_str) {
            None => Some(true),
            Some("on" | "true" | "yes") => Some(true),
            Some("off" | "false" | "no") => Some(false),
            Some(other) => {
                let msg = format!("`{other}` is not on/off/true/false/yes/no; not carried over");
                self.warn(n, msg);
                None
            }
        };
        if args.len() > 1 {
            let extra = args[1..].join(" ");
            self.warn(n, format!("extra words `{extra}` not carried over"));
        }
        v
    }

    /// A keyword of `block` the importer does not carry: the table's reason, or unknown.
    fn dropped(&mut self, n: &Node, block: keywords::Block, kw: &str) {
        // A section inside another is most often a `}` missing above it.
        if block != keywords::Block::Top
            && n.block.is_some()
            && keywords::lookup(keywords::Block::Top, kw).is_some()
            && keywords::lookup(block, kw).is_none()
        {
            self.warn(
                n,
                format!("`{}` inside {} (is a `}}` missing above it?): keepalived does not read it there, and neither does the import; nothing in it is carried over", n.words.join(" "), block.title()),
            );
            return;
        }
        match keywords::dropped(block, kw) {
            Some(why) => self.warn(n, format!("not carried over: {why}")),
            None => self.warn(n, UNKNOWN),
        }
    }

    fn no_block(&mut self, n: &Node) {
        if n.block.is_some() {
            self.warn(
                n,
                "unexpected `{ ... }` block after this keyword; its contents are not carried over",
            );
        }
    }

    fn block<'n>(&mut self, n: &'n Node) -> &'n [Node] {
        match &n.block {
            Some(b) => b,
            None => {
                self.warn(n, "expected a `{ ... }` block; nothing carried over");
                &[]
            }
        }
    }

    fn set<T>(&mut self, slot: &mut Option<T>, value: Option<T>, n: &Node) {
        if let Some(v) = value {
            if slot.is_some() {
                self.warn(
                    n,
                    "given again; the later value is used (as keepalived does)",
                );
            }
            *slot = Some(v);
        }
    }

    fn global_defs(&mut self, n: &Node) {
        for item in self.block(n) {
            match item.keyword() {
                "router_id" => {
                    let v = self.one_arg(item);
                    let mut slot = self.global.router_id.take();
                    self.set(&mut slot, v, item);
                    self.global.router_id = slot;
                }
                "script_user" => {
                    let args = item.args();
                    if args.len() > 1 {
                        self.warn(
                            item,
                            format!(
                                "group `{}` not carried over: scripts run with the user's primary group",
                                args[1..].join(" ")
                            ),
                        );
                    }
                    match args.first() {
                        Some(u) => self.global.script_user = Some(u.clone()),
                        None => self.warn(item, "needs a user name; not carried over"),
                    }
                }
                "enable_script_security" => self.warn(
                    item,
                    "not carried over: vigil runs scripts as script_user but does not check the permissions of script files",
                ),
                "vrrp_version" => {
                    let v = self.int_arg(item);
                    let mut slot = self.global.version.take();
                    self.set(&mut slot, v, item);
                    self.global.version = slot;
                }
                "vrrp_down_timer_adverts" => {
                    let v = self.int_arg(item);
                    let mut slot = self.global.down_timer_adverts.take();
                    self.set(&mut slot, v, item);
                    self.global.down_timer_adverts = slot;
                }
                "vrrp_rt_priority" => {
                    let v = match self.int_arg(item) {
                        Some(p) if !(1..=99).contains(&p) => {
                            self.warn(item, format!("{p} is not a priority of 1 to 99; not carried over"));
                            None
                        }
                        v => v,
                    };
                    let mut slot = self.global.rt_priority.take();
                    self.set(&mut slot, v, item);
                    self.global.rt_priority = slot;
                }
                "vrrp_garp_master_delay" => {
                    self.global.garp.delay = self.whole_secs_arg(item).or(self.global.garp.delay)
                }
                "vrrp_garp_master_repeat" => {
                    self.global.garp.repeat = self.int_arg(item).or(self.global.garp.repeat)
                }
                "vrrp_garp_master_refresh" => {
                    self.global.garp.refresh =
                        self.whole_secs_arg(item).or(self.global.garp.refresh)
                }
                "vrrp_garp_master_refresh_repeat" => {
                    self.global.garp.refresh_repeat =
                        self.int_arg(item).or(self.global.garp.refresh_repeat)
                }
                "vrrp_garp_lower_prio_delay" => {
                    self.global.garp.lower_prio_delay =
                        self.whole_secs_arg(item).or(self.global.garp.lower_prio_delay)
                }
                "vrrp_garp_lower_prio_repeat" => {
                    self.global.garp.lower_prio_repeat =
                        self.int_arg(item).or(self.global.garp.lower_prio_repeat)
                }
                "vrrp_min_garp" => {
                    if self.flag(item) == Some(true) {
                        // keepalived: one GARP/NA, no second burst.
                        self.global.garp.repeat = Some(1);
                        self.global.garp.delay = Some(Duration::ZERO);
                    }
                }
                "vrrp_strict" => {
                    self.no_block(item);
                    self.global.strict = true;
                    self.warn(
                        item,
                        "vigil has no strict mode; what it changes in keepalived is written out on each instance (accept = false below priority 255, no authentication, no second GARP burst, initial state by ownership); the checks of received adverts it adds are not",
                    );
                }
                "notification_email" | "notification_email_from" | "smtp_server"
                | "smtp_helo_name" | "smtp_connect_timeout" | "smtp_alert" | "smtp_alert_vrrp"
                | "smtp_alert_checker" | "email_faults" => {
                    self.warn(item, "e-mail alerts are not supported (use notify scripts); not carried over")
                }
                kw => self.dropped(item, keywords::Block::GlobalDefs, kw),
            }
        }
    }

    fn track_file_def(&mut self, n: &Node) {
        let name = n.args()[0].clone();
        if n.args().len() > 1 {
            self.warn(
                n,
                format!("extra words `{}` not carried over", n.args()[1..].join(" ")),
            );
        }
        let mut def = TrackFileDef {
            path: None,
            weight: None,
        };
        for item in self.block(n) {
            match item.keyword() {
                "file" => def.path = self.one_arg(item),
                "weight" => def.weight = self.weight(item, &item.words),
                "init_file" => self.warn(
                    item,
                    "not carried over: vigil does not create or initialise tracked files",
                ),
                kw => self.dropped(item, keywords::Block::TrackFile, kw),
            }
        }
        if self.track_files.insert(name.clone(), def).is_some() {
            self.warn(
                n,
                format!("track_file `{name}` defined again; the later one is used"),
            );
        }
    }

    /// `weight N [reverse|noreverse|no_reverse]`; `words` starts at `weight`.
    fn weight(&mut self, n: &Node, words: &[String]) -> Option<i64> {
        let Some(v) = words.get(1) else {
            self.warn(n, "`weight` needs a number; not carried over");
            return None;
        };
        let w = match v.parse::<i64>() {
            Ok(w) => w,
            Err(_) => {
                self.warn(
                    n,
                    format!("weight `{v}` is not a whole number; not carried over"),
                );
                return None;
            }
        };
        for extra in words.get(2..).unwrap_or(&[]) {
            match extra.as_str() {
                "reverse" => self.warn(
                    n,
                    "`reverse` is not supported; not carried over: the weight applies in the normal direction, review it",
                ),
                "noreverse" | "no_reverse" => {}
                other => self.warn(n, format!("`{other}` not carried over")),
            }
        }
        Some(w)
    }

    fn vrrp_script(&mut self, n: &Node) {
        let Some(name) = self.section_name(n, |c, name| c.scripts.iter().any(|s| s.name == name))
        else {
            return;
        };
        let mut s = Script {
            name,
            loc: n.loc.clone(),
            command: None,
            interval: None,
            timeout: None,
            weight: None,
            rise: None,
            fall: None,
            user: None,
        };
        for item in self.block(n) {
            match item.keyword() {
                "script" => {
                    self.no_block(item);
                    if item.args().is_empty() {
                        self.warn(item, "needs a command; not carried over");
                    } else {
                        // Unquoted words are the command line, as keepalived reads them.
                        let cmd = item.args().join(" ");
                        self.shell_difference(item, &cmd);
                        self.set(&mut s.command, Some(cmd), item);
                    }
                }
                // keepalived reads both in whole seconds and raises 0 to 1.
                "interval" | "timeout" => {
                    let v = self.whole_secs_arg(item).map(|d| {
                        if d.is_zero() {
                            self.warn(item, "0 s: keepalived uses 1 s, and so does the output");
                            Duration::from_secs(1)
                        } else {
                            d
                        }
                    });
                    let slot = if item.keyword() == "interval" {
                        &mut s.interval
                    } else {
                        &mut s.timeout
                    };
                    let mut cur = slot.take();
                    self.set(&mut cur, v, item);
                    if item.keyword() == "interval" {
                        s.interval = cur;
                    } else {
                        s.timeout = cur;
                    }
                }
                "weight" => {
                    let v = self.weight(item, &item.words);
                    self.set(&mut s.weight, v, item);
                }
                "rise" => {
                    let v = self.int_arg(item);
                    self.set(&mut s.rise, v, item);
                }
                "fall" => {
                    let v = self.int_arg(item);
                    self.set(&mut s.fall, v, item);
                }
                "user" => {
                    let args = item.args();
                    if args.len() > 1 {
                        self.warn(
                            item,
                            format!(
                                "group `{}` not carried over: the script runs with the user's primary group",
                                args[1..].join(" ")
                            ),
                        );
                    }
                    match args.first() {
                        Some(u) => s.user = Some(u.clone()),
                        None => self.warn(item, "needs a user name; not carried over"),
                    }
                }
                "init_fail" => self.warn(
                    item,
                    "not carried over: vigil scripts start neither failed nor OK, and count rise/fall from the first run",
                ),
                kw => self.dropped(item, keywords::Block::Script, kw),
            }
        }
        if s.command.is_none() {
            self.warn(
                n,
                "vrrp_script without `script`; the output needs a command",
            );
        }
        self.scripts.push(s);
    }

    /// keepalived runs a check with no shell: a first word that is shell syntax is no
    /// program, so keepalived disables the check; shell operators after a program are
    /// arguments to it. vigil hands such a command to `/bin/sh -c`: warn.
    fn shell_difference(&mut self, n: &Node, cmd: &str) {
        if !crate::exec::CommandLine::parse(cmd).uses_shell() {
            return;
        }
        let first = cmd.split_whitespace().next().unwrap_or("");
        let program = first
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || "/._[".contains(c))
            && !first.contains(['<', '>', '|', ';', '&', '(', '$', '`', '=']);
        let operators = cmd
            .split_whitespace()
            .skip(1)
            .any(|w| w.starts_with(['|', ';', '&', '<', '>', '`', '$']));
        if !program {
            self.warn(
                n,
                format!("keepalived runs checks without a shell, and `{first}` is no program, so keepalived disables this check (it never changes the priority); vigil runs it with /bin/sh, so it takes effect: review its weight"),
            );
        } else if operators {
            self.warn(
                n,
                format!("keepalived runs checks without a shell and passes the shell operators to `{first}` as arguments; vigil runs the command with /bin/sh, so it may succeed or fail differently: review it"),
            );
        }
    }

    fn vrrp_track_process(&mut self, n: &Node) {
        let Some(name) = self.section_name(n, |c, name| c.processes.iter().any(|p| p.name == name))
        else {
            return;
        };
        let mut p = ProcessDef {
            name,
            loc: n.loc.clone(),
            process: None,
            args: None,
            param_match: None,
            full_command: false,
            quorum: None,
            quorum_max: None,
            weight: None,
            delay: None,
            fork_delay: None,
            terminate_delay: None,
        };
        for item in self.block(n) {
            match item.keyword() {
                "process" => {
                    self.no_block(item);
                    match item.args().split_first() {
                        None => self.warn(item, "needs a process name; not carried over"),
                        Some((name, rest)) => {
                            p.process = Some(name.clone());
                            p.args = (!rest.is_empty()).then(|| rest.join(" "));
                        }
                    }
                }
                "param_match" => match item.args().first().map(String::as_str) {
                    None => p.full_command = true,
                    Some("exact") => p.param_match = None,
                    Some("initial") => p.param_match = Some("initial"),
                    Some("partial") => p.param_match = Some("partial"),
                    Some(other) => self.warn(
                        item,
                        format!("`{other}` is not a param_match type (keepalived ignores it too); the arguments are matched exactly"),
                    ),
                },
                "full_command" => {
                    self.no_block(item);
                    p.full_command = true;
                }
                "weight" => {
                    let v = self.weight(item, &item.words);
                    self.set(&mut p.weight, v, item);
                }
                "quorum" => {
                    let v = self.int_arg(item);
                    self.set(&mut p.quorum, v, item);
                }
                "quorum_max" => {
                    let v = self.int_arg(item);
                    self.set(&mut p.quorum_max, v, item);
                }
                "delay" => {
                    let v = self.secs_arg(item);
                    self.set(&mut p.delay, v, item);
                }
                "fork_delay" => {
                    let v = self.secs_arg(item);
                    self.set(&mut p.fork_delay, v, item);
                }
                "terminate_delay" => {
                    let v = self.secs_arg(item);
                    self.set(&mut p.terminate_delay, v, item);
                }
                kw => self.dropped(item, keywords::Block::TrackProcess, kw),
            }
        }
        if p.process.is_none() {
            self.warn(
                n,
                "vrrp_track_process without `process`; the output needs a name",
            );
        }
        self.processes.push(p);
    }

    fn vrrp_sync_group(&mut self, n: &Node) {
        let Some(name) =
            self.section_name(n, |c, name| c.sync_groups.iter().any(|g| g.name == name))
        else {
            return;
        };
        let mut g = SyncGroupDef {
            name,
            loc: n.loc.clone(),
            members: Vec::new(),
            track_scripts: Vec::new(),
            track_interfaces: Vec::new(),
            track_files: Vec::new(),
            track_processes: Vec::new(),
            notify: Vec::new(),
        };
        for item in self.block(n) {
            match item.keyword() {
                "group" => {
                    for m in self.block(item) {
                        self.no_block(m);
                        // keepalived allows several names on one line.
                        for w in &m.words {
                            g.members.push(w.clone());
                        }
                    }
                }
                kw @ ("track_script" | "track_interface" | "track_file" | "track_process") => {
                    for t in self.block(item) {
                        if t.args().first().is_some_and(|a| a == "weight") {
                            self.warn(t, "weight not carried over: a sync group's tracking is FAULT-only in vigil (as in keepalived without sync_group_tracking_weight)");
                        } else if !t.args().is_empty() {
                            self.warn(t, format!("`{}` not carried over", t.args().join(" ")));
                        }
                        let name = t.keyword().to_string();
                        match kw {
                            "track_script" => g.track_scripts.push(name),
                            "track_interface" => g.track_interfaces.push(name),
                            "track_file" => g.track_files.push((name, t.loc.clone())),
                            _ => g.track_processes.push(name),
                        }
                    }
                }
                kw @ ("notify_master" | "notify_backup" | "notify_fault" | "notify_stop"
                | "notify") => {
                    if let Some(cmd) = self.notify_arg(item) {
                        let key = notify_key(kw);
                        g.notify.retain(|(k, _)| *k != key);
                        g.notify.push((key, cmd));
                    }
                }
                kw => self.dropped(item, keywords::Block::SyncGroup, kw),
            }
        }
        self.sync_groups.push(g);
    }

    /// The command of a notify keyword; a user/group after it is warned.
    fn notify_arg(&mut self, item: &Node) -> Option<String> {
        self.no_block(item);
        let args = item.args();
        match args.first() {
            None => {
                self.warn(item, "needs a command; not carried over");
                None
            }
            Some(cmd) => {
                if args.len() > 1 {
                    self.warn(
                        item,
                        format!(
                            "user/group `{}` not carried over: notify commands run as global.script_user",
                            args[1..].join(" ")
                        ),
                    );
                }
                Some(cmd.clone())
            }
        }
    }

    fn vrrp_instance(&mut self, n: &Node) {
        let Some(name) = self.section_name(n, |c, name| c.instances.iter().any(|i| i.name == name))
        else {
            return;
        };
        let mut i = Instance {
            name,
            loc: n.loc.clone(),
            interface: None,
            vrid: None,
            priority: None,
            state: None,
            version: None,
            advert_int: None,
            auth_type: None,
            auth_pass: None,
            vips: Vec::new(),
            excluded: Vec::new(),
            routes: Vec::new(),
            rules: Vec::new(),
            vmac: None,
            vmac_xmit_base: false,
            preempt: None,
            preempt_delay: None,
            down_timer_adverts: None,
            strict: None,
            unicast_src_ip: None,
            unicast_peers: Vec::new(),
            accept: None,
            old_checksum: false,
            track_scripts: Vec::new(),
            track_interfaces: Vec::new(),
            track_files: Vec::new(),
            track_bfd: Vec::new(),
            track_processes: Vec::new(),
            notify: Vec::new(),
            garp: Garp::default(),
        };
        for item in self.block(n) {
            self.instance_item(&mut i, item);
        }
        self.instances.push(i);
    }

    fn instance_item(&mut self, i: &mut Instance, item: &Node) {
        match item.keyword() {
            "state" => {
                // keepalived compares in upper case only, and a BACKUP after a MASTER is
                // ignored; anything else is BACKUP.
                let state = match self.one_arg(item).as_deref() {
                    Some("MASTER") => Some("master"),
                    Some("BACKUP") if i.state.as_ref().is_some_and(|(s, _)| *s == "master") => {
                        self.warn(item, "state MASTER was given before; BACKUP is ignored, as keepalived ignores it");
                        None
                    }
                    Some("BACKUP") => Some("backup"),
                    Some(other) => {
                        self.warn(item, format!("state `{other}` is not MASTER or BACKUP (keepalived matches them in upper case only): keepalived starts it as BACKUP, and so does the output"));
                        Some("backup")
                    }
                    None => None,
                };
                let state = state.map(|s| (s, item.loc.clone()));
                self.set(&mut i.state, state, item);
            }
            "interface" => {
                let v = self.one_arg(item);
                self.set(&mut i.interface, v, item);
            }
            "virtual_router_id" => {
                let v = self.int_arg(item);
                self.set(&mut i.vrid, v, item);
            }
            "priority" => {
                // keepalived falls back to 100 for anything but a whole number of 1 to 255.
                let v = self.one_arg(item).map(|v| match v.parse::<i64>() {
                    Ok(p) if (1..=255).contains(&p) => p,
                    _ => {
                        self.warn(item, format!("`{v}` is not a priority of 1 to 255: keepalived uses its default 100, and so does the output"));
                        100
                    }
                });
                self.set(&mut i.priority, v, item);
            }
            "advert_int" => {
                let v = self.one_arg(item);
                let v = match v.as_deref().map(str::parse::<f64>) {
                    // keepalived reads 0.01 to 255 s and ignores anything else.
                    Some(Ok(s)) if s.is_finite() && !(0.01..=255.0).contains(&s) && s > 0.0 => {
                        self.warn(item, "outside keepalived's 0.01 to 255 s: keepalived ignores it and advertises every second; not carried over");
                        None
                    }
                    Some(Ok(s)) if s.is_finite() && s > 0.0 => Some((s, item.loc.clone())),
                    Some(_) => {
                        self.warn(item, "not a positive number of seconds; not carried over");
                        None
                    }
                    None => None,
                };
                self.set(&mut i.advert_int, v, item);
            }
            "version" => {
                let v = self.int_arg(item).map(|v| (v, item.loc.clone()));
                self.set(&mut i.version, v, item);
            }
            "authentication" => {
                for a in self.block(item) {
                    match a.keyword() {
                        "auth_type" => {
                            let v = self.one_arg(a).map(|v| (v, a.loc.clone()));
                            self.set(&mut i.auth_type, v, a);
                        }
                        "auth_pass" => {
                            let v = self.one_arg(a).map(|v| (v, a.loc.clone()));
                            self.set(&mut i.auth_pass, v, a);
                        }
                        kw => self.dropped(a, keywords::Block::Instance, kw),
                    }
                }
            }
            "virtual_ipaddress" => {
                for a in self.block(item) {
                    if let Some(v) = self.vip(a)
                        && !self.duplicate_vip(i, &v, a, false)
                    {
                        i.vips.push(v);
                    }
                }
            }
            "nopreempt" | "no_preempt" => {
                self.no_block(item);
                i.preempt = Some((false, item.loc.clone()));
            }
            "preempt" => {
                self.no_block(item);
                i.preempt = Some((true, item.loc.clone()));
            }
            "preempt_delay" => {
                let v = self.secs_arg(item).map(|d| (d, item.loc.clone()));
                self.set(&mut i.preempt_delay, v, item);
            }
            "down_timer_adverts" => {
                let v = self.int_arg(item).map(|v| (v, item.loc.clone()));
                self.set(&mut i.down_timer_adverts, v, item);
            }
            "strict_mode" => {
                if let Some(on) = self.flag(item) {
                    i.strict = Some(on);
                }
            }
            "unicast_src_ip" | "mcast_src_ip" => {
                let v = self
                    .one_arg(item)
                    .map(|a| self.bare_address(item, item.keyword(), a));
                self.set(&mut i.unicast_src_ip, v, item);
            }
            "unicast_peer" => {
                for p in self.block(item) {
                    let peer = self.bare_address(p, "unicast_peer", p.keyword().to_string());
                    if !p.args().is_empty() {
                        self.warn_at(
                            &p.loc,
                            "unicast_peer",
                            format!(
                                "`{}` after {peer} not carried over (vigil checks TTL 255)",
                                p.args().join(" ")
                            ),
                        );
                    }
                    if i.unicast_peers.contains(&peer) {
                        self.warn_at(
                            &p.loc,
                            "unicast_peer",
                            format!("{peer} is listed twice; keepalived ignores the second, and so does the output"),
                        );
                    } else {
                        i.unicast_peers.push(peer);
                    }
                }
            }
            "accept" => {
                self.no_block(item);
                i.accept = Some(true);
            }
            "no_accept" => {
                self.no_block(item);
                i.accept = Some(false);
            }
            "v3_checksum_as_v2" => {
                if self.flag(item) == Some(true) {
                    i.old_checksum = true;
                }
            }
            "virtual_ipaddress_excluded" => {
                for a in self.block(item) {
                    if let Some(v) = self.vip(a)
                        && !self.duplicate_vip(i, &v, a, true)
                    {
                        i.excluded.push(v);
                    }
                }
            }
            "use_vmac" => {
                self.no_block(item);
                i.vmac = Some((item.args().first().cloned(), item.loc.clone()));
            }
            "vmac_xmit_base" => {
                self.no_block(item);
                i.vmac_xmit_base = true;
            }
            "virtual_routes" => {
                for r in self.block(item) {
                    self.no_block(r);
                    if let Some(route) = self.route(r) {
                        i.routes.push(route);
                    }
                }
            }
            "virtual_rules" => {
                for r in self.block(item) {
                    self.no_block(r);
                    let text = r.words.join(" ");
                    match text.parse::<config::route::VirtualRule>() {
                        Ok(rule) => i.rules.push(rule.to_string()),
                        Err(e) => self.warn_at(
                            &r.loc,
                            "virtual_rules",
                            format!("`{text}` not carried over: {e}"),
                        ),
                    }
                }
            }
            "track_process" => {
                for t in self.block(item) {
                    let w = self.track_weight(t);
                    i.track_processes.push((t.keyword().to_string(), w));
                }
            }
            "old_unicast_checksum" => {
                self.no_block(item);
                if item.args().first().is_some_and(|a| a == "never") {
                    self.warn(item, "`never` (no auto-detection) is vigil's only behaviour; nothing to carry over");
                } else {
                    i.old_checksum = true;
                }
            }
            "track_script" => {
                for t in self.block(item) {
                    let w = self.track_weight(t);
                    i.track_scripts.push((t.keyword().to_string(), w));
                }
            }
            "track_interface" => {
                for t in self.block(item) {
                    let w = self.track_weight(t);
                    i.track_interfaces.push((t.keyword().to_string(), w));
                }
            }
            "track_bfd" => self.track_bfd(i, item),
            "track_file" => {
                for t in self.block(item) {
                    let w = self.track_weight(t);
                    i.track_files
                        .push((t.keyword().to_string(), w, t.loc.clone()));
                }
            }
            kw
            @ ("notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify") => {
                self.no_block(item);
                let key: &'static str = match kw {
                    "notify_master" => "notify_master",
                    "notify_backup" => "notify_backup",
                    "notify_fault" => "notify_fault",
                    "notify_stop" => "notify_stop",
                    _ => "notify",
                };
                let args = item.args();
                match args.first() {
                    None => self.warn(item, "needs a command; not carried over"),
                    Some(cmd) => {
                        if args.len() > 1 {
                            self.warn(
                                item,
                                format!(
                                    "user/group `{}` not carried over: notify commands run as global.script_user",
                                    args[1..].join(" ")
                                ),
                            );
                        }
                        if i.notify.iter().any(|(k, _)| *k == key) {
                            self.warn(
                                item,
                                "given again; the later value is used (as keepalived does)",
                            );
                            i.notify.retain(|(k, _)| *k != key);
                        }
                        i.notify.push((key, cmd.clone()));
                    }
                }
            }
            "garp_master_delay" => {
                let v = self.whole_secs_arg(item);
                self.set(&mut i.garp.delay, v, item);
            }
            "garp_master_repeat" => {
                let v = self.int_arg(item);
                self.set(&mut i.garp.repeat, v, item);
            }
            "garp_master_refresh" => {
                let v = self.whole_secs_arg(item);
                self.set(&mut i.garp.refresh, v, item);
            }
            "garp_master_refresh_repeat" => {
                let v = self.int_arg(item);
                self.set(&mut i.garp.refresh_repeat, v, item);
            }
            "garp_lower_prio_delay" => {
                let v = self.whole_secs_arg(item);
                self.set(&mut i.garp.lower_prio_delay, v, item);
            }
            "garp_lower_prio_repeat" => {
                let v = self.int_arg(item);
                self.set(&mut i.garp.lower_prio_repeat, v, item);
            }
            kw => self.dropped(item, keywords::Block::Instance, kw),
        }
    }

    /// Whether `v` repeats an address the instance already has, warned: keepalived ignores
    /// the repeat. A virtual address repeats any earlier one, and an excluded one on the
    /// same device; an excluded address repeats any earlier one on the same device.
    fn duplicate_vip(
        &mut self,
        i: &Instance,
        v: &(String, Option<IpAddr>),
        a: &Node,
        excluded: bool,
    ) -> bool {
        let Some(ip) = v.1 else {
            return false;
        };
        let dev = vip_dev(&v.0);
        let same_dev = |o: &(String, Option<IpAddr>)| o.1 == Some(ip) && vip_dev(&o.0) == dev;
        let repeats = if excluded {
            i.vips.iter().chain(&i.excluded).any(same_dev)
        } else {
            i.vips.iter().any(|o| o.1 == Some(ip)) || i.excluded.iter().any(same_dev)
        };
        if repeats {
            let kw = if excluded {
                "virtual_ipaddress_excluded"
            } else {
                "virtual_ipaddress"
            };
            self.warn_at(
                &a.loc,
                kw,
                format!("{ip} is already an address of this instance; keepalived 2.3.3 and later ignore `{}`, and so does the output. Older keepalived keeps it and advertises the address twice: its Backups drop adverts with fewer addresses, so a vigil Master would not be heard by a keepalived 2.2 node with this file (remove the repeat there too)", v.0),
            );
        }
        repeats
    }

    /// `NAME [weight N [reverse]]` in a track_* block.
    fn track_weight(&mut self, t: &Node) -> Option<i64> {
        self.no_block(t);
        let args = t.args();
        match args.first().map(String::as_str) {
            None => None,
            Some("weight") => self.weight(t, args),
            Some(_) => {
                self.warn(t, format!("`{}` not carried over", args.join(" ")));
                None
            }
        }
    }

    /// One `virtual_routes` line in vigil's form: keepalived's optional `to` dropped,
    /// `default` spelled as a prefix, `gw` as `via`; what vigil cannot do is warned.
    fn route(&mut self, r: &Node) -> Option<String> {
        let mut words: Vec<String> = Vec::new();
        let mut it = r.words.iter().peekable();
        let mut src = None;
        while let Some(w) = it.next() {
            match w.as_str() {
                "to" => {}
                "src" => src = it.next().cloned(),
                "default" => words.push(
                    if r.words.iter().any(|x| x.contains(':')) {
                        "::/0"
                    } else {
                        "0.0.0.0/0"
                    }
                    .to_string(),
                ),
                _ => words.push(w.clone()),
            }
        }
        if let Some(s) = src {
            words.push("src".to_string());
            words.push(s);
        }
        let text = words.join(" ");
        match text.parse::<config::route::VirtualRoute>() {
            Ok(route) => Some(route.to_string()),
            Err(e) => {
                self.warn_at(
                    &r.loc,
                    "virtual_routes",
                    format!("`{}` not carried over: {e}", r.words.join(" ")),
                );
                None
            }
        }
    }

    /// One `virtual_ipaddress` line: `ADDR[/PREFIX] [dev X] [label Y] [other options]`.
    fn vip(&mut self, a: &Node) -> Option<(String, Option<IpAddr>)> {
        self.no_block(a);
        let addr = a.keyword().to_string();
        let ip = addr
            .split('/')
            .next()
            .and_then(|s| s.parse::<IpAddr>().ok());
        if ip.is_none() {
            // keepalived logs "parsed invalid IP ... skipping IP".
            self.warn_at(
                &a.loc,
                "virtual_ipaddress",
                format!(
                    "`{addr}` is not an IP address: keepalived skips it, and so does the output"
                ),
            );
            return None;
        }
        let mut out = addr.clone();
        let args = a.args();
        let mut k = 0;
        while k < args.len() {
            let word = args[k].as_str();
            let value = args.get(k + 1);
            match word {
                "dev" | "label" => {
                    if let Some(v) = value {
                        let _ = write!(out, " {word} {v}");
                    } else {
                        self.warn_at(
                            &a.loc,
                            "virtual_ipaddress",
                            format!("`{word}` without a value after {addr}"),
                        );
                    }
                    k += 2;
                }
                "brd" | "broadcast" | "scope" | "peer" | "preferred_lft" | "track_group" => {
                    let shown = value.map_or(String::new(), |v| format!(" {v}"));
                    self.warn_at(
                        &a.loc,
                        "virtual_ipaddress",
                        format!("option `{word}{shown}` of {addr} not carried over (vigil adds the address with its prefix, device and label only)"),
                    );
                    k += 2;
                }
                _ => {
                    self.warn_at(
                        &a.loc,
                        "virtual_ipaddress",
                        format!("option `{word}` of {addr} not carried over"),
                    );
                    k += 1;
                }
            }
        }
        Some((out, ip))
    }

    /// The TOML text, resolving defaults that depend on the whole file.
    fn emit(&mut self, origin: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# vigil configuration converted from {origin} by `vigil import-keepalived`.\n\
             # Review the warnings it printed, then run `vigil check -c FILE`."
        );

        let g = &self.global;
        let mut global = String::new();
        if let Some(r) = &g.router_id {
            let _ = writeln!(global, "router_id = {}", q(r));
        }
        if let Some(u) = &g.script_user {
            let _ = writeln!(global, "script_user = {}", q(u));
        }
        if let Some(p) = g.rt_priority {
            // keepalived's VRRP process at SCHED_RR; vigil's election loop and BFD thread
            // at SCHED_FIFO, the same priority.
            let _ = writeln!(global, "realtime_priority = {p}");
        }
        emit_garp(&mut global, &g.garp);
        if !global.is_empty() {
            let _ = write!(out, "\n[global]\n{global}");
        }

        let scripts = std::mem::take(&mut self.scripts);
        self.script_names = scripts.iter().map(|s| s.name.clone()).collect();
        self.script_weights = scripts
            .iter()
            .map(|s| (s.name.clone(), s.weight.unwrap_or(0)))
            .collect();
        // keepalived's default script user is not vigil's: say so where scripts exist.
        let first_script = scripts.first().map(|s| (s.loc.clone(), "vrrp_script"));
        let first_notify = self
            .instances
            .iter()
            .find(|i| !i.notify.is_empty())
            .map(|i| (i.loc.clone(), "vrrp_instance"));
        if self.global.script_user.is_none()
            && let Some((loc, kw)) = first_script.or(first_notify)
        {
            self.warn_at(
                    &loc,
                    kw,
                    "no script_user in global_defs: keepalived runs scripts as `keepalived_script` if that user exists, else as root; vigil runs them as root (with a warning) unless global.script_user is set",
                );
        }
        for s in &scripts {
            let _ = writeln!(out, "\n[scripts.{}]", key(&s.name));
            if let Some(c) = &s.command {
                let _ = writeln!(out, "command = {}", q(c));
            }
            if let Some(d) = s.interval {
                let _ = writeln!(out, "interval = {}", duration::to_toml(d));
            }
            if let Some(d) = s.timeout {
                let _ = writeln!(out, "timeout = {}", duration::to_toml(d));
            }
            for (k, v) in [("weight", s.weight), ("rise", s.rise), ("fall", s.fall)] {
                if let Some(v) = v {
                    let _ = writeln!(out, "{k} = {v}");
                }
            }
            if let Some(u) = &s.user {
                let _ = writeln!(out, "user = {}", q(u));
            }
        }

        let processes = std::mem::take(&mut self.processes);
        self.process_names = processes
            .iter()
            .filter(|p| p.process.is_some())
            .map(|p| p.name.clone())
            .collect();
        for p in processes.into_iter().filter(|p| p.process.is_some()) {
            let _ = writeln!(out, "\n[processes.{}]", key(&p.name));
            let name = p.process.clone().unwrap_or_default();
            if p.full_command && !name.contains('/') && p.args.is_none() {
                // keepalived compares argv[0]; vigil compares a name without `/` with the
                // kernel's process name.
                self.warn_at(
                    &p.loc,
                    "full_command",
                    format!("`{name}` has no `/`: vigil matches it against the process name, not argv[0]; give the program's path to match argv[0]"),
                );
            }
            let _ = writeln!(out, "name = {}", q(&name));
            match (&p.args, p.param_match) {
                // keepalived compares the arguments only (the name is matched apart): a
                // run of them anywhere is a run of words in the command line.
                (Some(a), Some("partial")) => {
                    let _ = writeln!(out, "command_line = {}", q(a));
                    let _ = writeln!(out, "command_match = \"partial\"");
                }
                (Some(a), Some(m)) => {
                    let _ = writeln!(out, "command_line = {}", q(&format!("{name} {a}")));
                    let _ = writeln!(out, "command_match = {}", q(m));
                }
                (Some(a), None) => {
                    let _ = writeln!(out, "command_line = {}", q(&format!("{name} {a}")));
                }
                (None, Some(m)) => self.warn_at(
                    &p.loc,
                    "param_match",
                    format!("`{m}` with no arguments after the process name: nothing to match, any `{name}` counts"),
                ),
                (None, None) => {}
            }
            for (k, v) in [
                ("quorum", p.quorum),
                ("quorum_max", p.quorum_max),
                ("weight", p.weight),
            ] {
                if let Some(v) = v {
                    let _ = writeln!(out, "{k} = {v}");
                }
            }
            for (k, v) in [
                ("delay", p.delay),
                ("fork_delay", p.fork_delay),
                ("terminate_delay", p.terminate_delay),
            ] {
                if let Some(d) = v {
                    let _ = writeln!(out, "{k} = {}", duration::to_toml(d));
                }
            }
        }

        let instances = std::mem::take(&mut self.instances);
        for i in &instances {
            self.emit_instance(&mut out, i);
        }
        self.emit_bfd(&mut out, &instances);
        for g in std::mem::take(&mut self.sync_groups) {
            self.emit_sync_group(&mut out, &g, &instances);
        }
        out
    }

    fn emit_sync_group(&mut self, out: &mut String, g: &SyncGroupDef, instances: &[Instance]) {
        let kw = "vrrp_sync_group";
        let mut members = Vec::new();
        for m in &g.members {
            if !instances.iter().any(|i| i.name == *m) {
                self.warn_at(
                    &g.loc,
                    kw,
                    format!(
                        "`{}`: no vrrp_instance named `{m}`; left out of the group",
                        g.name
                    ),
                );
            } else if members.contains(m) {
                self.warn_at(&g.loc, kw, format!("`{}`: `{m}` listed twice", g.name));
            } else {
                members.push(m.clone());
            }
        }
        if members.len() < 2 {
            self.warn_at(&g.loc, kw, format!("`{}` has fewer than two instances; not carried over (a group of one is just its instance)", g.name));
            return;
        }
        let weighted = instances
            .iter()
            .filter(|i| members.contains(&i.name))
            .any(|i| {
                !i.track_scripts.is_empty()
                    || i.track_interfaces
                        .iter()
                        .any(|t| t.1.is_some_and(|w| w != 0))
                    || i.track_files.iter().any(|t| t.1.is_some_and(|w| w != 0))
                    || !i.track_processes.is_empty()
            });
        if weighted {
            self.warn_at(&g.loc, kw, format!("`{}`: its members' tracking weights are ignored, as keepalived does in a sync group: a tracked failure puts the whole group in FAULT", g.name));
        }
        let _ = writeln!(out, "\n[sync_groups.{}]", key(&g.name));
        let _ = writeln!(out, "instances = {}", str_array(&members));
        if !g.track_scripts.is_empty() {
            let _ = writeln!(out, "track_scripts = {}", str_array(&g.track_scripts));
        }
        if !g.track_interfaces.is_empty() {
            let _ = writeln!(out, "track_interfaces = {}", str_array(&g.track_interfaces));
        }
        let mut files = Vec::new();
        for (name, loc) in &g.track_files {
            match self.track_files.get(name).and_then(|d| d.path.clone()) {
                Some(p) => files.push(p),
                None => self.warn_at(
                    loc,
                    "track_file",
                    format!("no track_file named `{name}` with a `file`; not carried over"),
                ),
            }
        }
        if !files.is_empty() {
            let _ = writeln!(out, "track_files = {}", str_array(&files));
        }
        let procs: Vec<String> = g
            .track_processes
            .iter()
            .filter(|n| self.process_names.contains(n))
            .cloned()
            .collect();
        for n in g.track_processes.iter().filter(|n| !procs.contains(n)) {
            self.warn_at(
                &g.loc,
                "track_process",
                format!("no vrrp_track_process named `{n}`; not carried over"),
            );
        }
        if !procs.is_empty() {
            let _ = writeln!(out, "track_processes = {}", str_array(&procs));
        }
        for (k, v) in &g.notify {
            let _ = writeln!(out, "{k} = {}", q(v));
        }
    }

    fn emit_instance(&mut self, out: &mut String, i: &Instance) {
        let kw = "vrrp_instance";
        let _ = writeln!(out, "\n[instances.{}]", key(&i.name));
        match &i.interface {
            Some(v) => {
                let _ = writeln!(out, "interface = {}", q(v));
            }
            None => self.warn_at(
                &i.loc,
                kw,
                format!(
                    "`{}` has no interface; vigil needs one (add `interface = \"...\"`)",
                    i.name
                ),
            ),
        }
        match i.vrid {
            Some(v) => {
                let _ = writeln!(out, "vrid = {v}");
            }
            None => self.warn_at(&i.loc, kw, format!("`{}` has no virtual_router_id", i.name)),
        }
        let strict = i.strict.unwrap_or(self.global.strict);
        // keepalived derives a missing priority from the state: MASTER means the address
        // owner (255), anything else 100.
        let wants_master = i.state.as_ref().is_some_and(|(s, _)| *s == "master");
        let priority = match i.priority {
            Some(p) => p,
            None if wants_master => {
                let loc = i.state.as_ref().map_or(&i.loc, |(_, l)| l).clone();
                self.warn_at(&loc, "priority", "state MASTER without a priority: keepalived makes the instance the address owner (priority 255); written as priority = 255");
                255
            }
            None => 100,
        };
        if i.priority.is_some() || priority != 100 {
            let _ = writeln!(out, "priority = {priority}");
        }
        let owner = priority == 255;
        let mut state = i.state.as_ref().map(|(s, _)| *s);
        // RFC 5798 §6.4.1: strict mode makes the initial state follow address ownership.
        if strict && wants_master && !owner {
            let loc = i.state.as_ref().map_or(&i.loc, |(_, l)| l).clone();
            self.warn_at(&loc, "state", "strict mode: keepalived starts an instance that is not the address owner as BACKUP; so does the output");
            state = Some("backup");
        }
        if let Some(v) = state {
            let _ = writeln!(out, "initial_state = {}", q(v));
        }

        // keepalived's default is VRRPv2 (or global vrrp_version), vigil's is v3: always
        // write the version, and do as keepalived does for IPv6 (always v3).
        // keepalived takes the family from the first address.
        let ipv6 = i
            .vips
            .iter()
            .find_map(|(_, ip)| *ip)
            .is_some_and(|a| a.is_ipv6());
        let mut version = i
            .version
            .as_ref()
            .map(|(v, _)| *v)
            .or(self.global.version)
            .unwrap_or(2);
        if version == 2 && ipv6 {
            let loc = i.version.as_ref().map_or(i.loc.clone(), |(_, l)| l.clone());
            self.warn_at(&loc, "version", "IPv6 addresses: keepalived runs VRRPv3 for them, and so does the output (version = 3)");
            version = 3;
        }
        let _ = writeln!(out, "version = {version}");

        if let Some((secs, loc)) = &i.advert_int {
            let d = if version == 2 && secs.fract() != 0.0 {
                let whole = secs.round().max(1.0);
                self.warn_at(
                    loc,
                    "advert_int",
                    format!(
                        "{secs} s is not whole seconds, which VRRPv2 needs; written as {whole}"
                    ),
                );
                Duration::from_secs(whole as u64)
            } else {
                // RFC 5798 §5.2.7: 12 bits of centiseconds; keepalived clamps to 40.95 s.
                let cs = (secs * 100.0).round();
                if cs > 4095.0 {
                    self.warn_at(
                        loc,
                        "advert_int",
                        format!("{secs} s is more than VRRPv3's 40.95 s: keepalived uses 40.95 s, and so does the output"),
                    );
                }
                let cs = cs.min(4095.0);
                if (cs / 100.0 - secs).abs() > 1e-9 {
                    self.warn_at(
                        loc,
                        "advert_int",
                        format!(
                            "{secs} s rounded to {} s (VRRPv3 counts centiseconds)",
                            cs / 100.0
                        ),
                    );
                }
                Duration::from_millis(cs as u64 * 10)
            };
            let _ = writeln!(out, "advert_interval = {}", duration::to_toml(d));
        }

        match (&i.auth_type, &i.auth_pass) {
            (None, None) => {}
            (_, Some((_, loc))) if strict => {
                self.warn_at(
                    loc,
                    "auth_pass",
                    "strict mode: keepalived ignores authentication; not carried over",
                );
            }
            (Some((t, loc)), _) if !t.eq_ignore_ascii_case("PASS") => {
                self.warn_at(
                    loc,
                    "auth_type",
                    format!("`{t}` authentication is not supported (only PASS); not carried over"),
                );
            }
            (None, Some((_, loc))) => {
                self.warn_at(loc, "auth_pass", "no `auth_type PASS`, so keepalived does not use the password; not carried over");
            }
            (Some((_, loc)), None) => {
                self.warn_at(loc, "auth_type", "PASS without auth_pass; not carried over");
            }
            (Some(_), Some((pass, loc))) => {
                if version != 2 {
                    self.warn_at(
                        loc,
                        "auth_pass",
                        "keepalived ignores authentication with VRRPv3; not carried over",
                    );
                } else {
                    let mut p = pass.clone();
                    if p.len() > 8 {
                        let mut end = 8;
                        while !p.is_char_boundary(end) {
                            end -= 1;
                        }
                        p.truncate(end);
                        self.warn_at(
                            loc,
                            "auth_pass",
                            format!(
                                "keepalived uses only the first 8 bytes; written as {}",
                                q(&p)
                            ),
                        );
                    }
                    let _ = writeln!(out, "auth_pass = {}", q(&p));
                }
            }
        }

        // keepalived takes the family from the first address and ignores addresses of the
        // other family with a warning; they go to excluded_addresses here.
        let family_v6 = i
            .vips
            .iter()
            .find_map(|(_, ip)| *ip)
            .is_some_and(|a| a.is_ipv6());
        let mut vips: Vec<String> = Vec::new();
        let mut excluded: Vec<String> = i.excluded.iter().map(|(v, _)| v.clone()).collect();
        for (v, ip) in &i.vips {
            if ip.is_some_and(|a| a.is_ipv6() != family_v6) {
                self.warn_at(
                    &i.loc,
                    "virtual_ipaddress",
                    format!("{v} is not of the instance's family: keepalived ignores it; written to excluded_addresses, so vigil adds it while Master without advertising it"),
                );
                excluded.push(v.clone());
            } else {
                vips.push(v.clone());
            }
        }
        let _ = writeln!(out, "virtual_addresses = {}", str_array(&vips));
        if !excluded.is_empty() {
            let _ = writeln!(out, "excluded_addresses = {}", str_array(&excluded));
        }
        if !i.routes.is_empty() {
            let _ = writeln!(out, "virtual_routes = {}", str_array(&i.routes));
        }
        match &i.vmac {
            Some((name, _)) => {
                let _ = writeln!(out, "use_vmac = true");
                if let Some(n) = name {
                    let _ = writeln!(out, "vmac_interface = {}", q(n));
                }
                if i.vmac_xmit_base {
                    let _ = writeln!(out, "vmac_xmit_base = true");
                }
            }
            None if i.vmac_xmit_base => self.warn_at(
                &i.loc,
                "vmac_xmit_base",
                "without use_vmac keepalived ignores it; not carried over",
            ),
            None => {}
        }
        if !i.rules.is_empty() {
            let _ = writeln!(out, "virtual_rules = {}", str_array(&i.rules));
        }
        if vips.is_empty() {
            self.warn_at(
                &i.loc,
                kw,
                format!(
                    "`{}` has no virtual_ipaddress; vigil needs at least one",
                    i.name
                ),
            );
        }

        // keepalived clears nopreempt for the address owner and for state MASTER, and
        // preempt_delay for state MASTER, with nopreempt and in strict mode.
        let mut preempt = i.preempt.as_ref().map(|(p, _)| *p);
        if let Some((false, loc)) = &i.preempt {
            let why = if owner {
                Some("priority 255 (the address owner)")
            } else if state == Some("master") {
                Some("state MASTER")
            } else {
                None
            };
            if let Some(why) = why {
                self.warn_at(loc, "nopreempt", format!("keepalived clears nopreempt with {why}; not carried over (the instance preempts)"));
                preempt = Some(true);
            }
        }
        if let Some(p) = preempt {
            let _ = writeln!(out, "preempt = {p}");
        }
        if let Some((d, loc)) = &i.preempt_delay {
            let why = if state == Some("master") {
                Some("state MASTER")
            } else if preempt == Some(false) {
                Some("nopreempt")
            } else if strict {
                Some("strict mode")
            } else {
                None
            };
            match why {
                Some(why) if !d.is_zero() => self.warn_at(
                    loc,
                    "preempt_delay",
                    format!("keepalived clears preempt_delay with {why}; not carried over"),
                ),
                _ => {
                    let _ = writeln!(out, "preempt_delay = {}", duration::to_toml(*d));
                }
            }
        }
        match (&i.down_timer_adverts, self.global.down_timer_adverts) {
            (Some((v, loc)), _) if strict && *v != 3 => self.warn_at(
                loc,
                "down_timer_adverts",
                "strict mode: keepalived resets it to 3; not carried over",
            ),
            (Some((v, _)), _) => {
                let _ = writeln!(out, "down_timer_adverts = {v}");
            }
            (None, Some(v)) if !strict => {
                let _ = writeln!(out, "down_timer_adverts = {v}");
            }
            (None, _) => {}
        }
        if let Some(v) = &i.unicast_src_ip {
            let _ = writeln!(out, "unicast_src_ip = {}", q(v));
        }
        if !i.unicast_peers.is_empty() {
            let _ = writeln!(out, "unicast_peers = {}", str_array(&i.unicast_peers));
        }
        // keepalived: accept unless strict mode, where only the address owner accepts, and
        // an explicit accept is refused with VRRPv2.
        let accept = match i.accept {
            Some(true) if strict && !owner && version == 2 => {
                self.warn_at(&i.loc, "accept", "strict mode: keepalived refuses accept mode with VRRPv2 (RFC 3768); written as accept = false");
                Some(false)
            }
            Some(a) => Some(a),
            None if strict && !owner => Some(false),
            None => None,
        };
        if let Some(a) = accept {
            let _ = writeln!(out, "accept = {a}");
        }
        if strict && !i.unicast_peers.is_empty() {
            self.warn_at(&i.loc, "unicast_peer", "strict mode: keepalived refuses unicast peers on an interface that does multicast, and does not run this instance; vigil runs it with them");
        }
        if i.old_checksum {
            let _ = writeln!(out, "v3_checksum_as_v2 = true");
        }

        // keepalived never moves the address owner's priority: it drops weighted tracked
        // scripts, interfaces, files and BFD sessions, and makes an unweighted file FAULT-only.
        let mut track_scripts = i.track_scripts.clone();
        let mut track_interfaces = i.track_interfaces.clone();
        let mut track_files = i.track_files.clone();
        let mut track_bfd = i.track_bfd.clone();
        if owner {
            let why = "ignored by keepalived for the address owner (priority 255), whose priority never changes; not carried over";
            let mut dropped = Vec::new();
            track_scripts.retain(|(name, w)| {
                let weight = w.or(self.script_weights.get(name).copied()).unwrap_or(0);
                let keep = weight == 0;
                if !keep {
                    dropped.push(("track_script", format!("`{name}` (weight {weight})")));
                }
                keep
            });
            track_interfaces.retain(|(name, w)| {
                let keep = w.is_none_or(|w| w == 0);
                if !keep {
                    dropped.push(("track_interface", format!("`{name}` (weighted)")));
                }
                keep
            });
            let defs = &self.track_files;
            for (name, w, _) in &mut track_files {
                if w.is_none() && defs.get(name.as_str()).is_some_and(|d| d.weight.is_none()) {
                    // keepalived: weight 0, a non-zero value means FAULT.
                    *w = Some(0);
                }
            }
            track_files.retain(|(name, w, _)| {
                let weight = w.or(defs.get(name.as_str()).and_then(|d| d.weight));
                let keep = weight.is_none_or(|w| w == 0);
                if !keep {
                    dropped.push(("track_file", format!("`{name}` (weighted)")));
                }
                keep
            });
            let bfd_weights: HashMap<String, i64> = track_bfd
                .iter()
                .map(|(name, _)| (name.clone(), self.bfd_weight(name)))
                .collect();
            track_bfd.retain(|(name, w)| {
                let keep = w.or(bfd_weights.get(name).copied()).unwrap_or(0) == 0;
                if !keep {
                    dropped.push(("track_bfd", format!("`{name}` (weighted)")));
                }
                keep
            });
            for (kw, what) in dropped {
                self.warn_at(&i.loc, kw, format!("{what} {why}"));
            }
        }
        // keepalived ignores a reference to a script it does not have ("track script
        // ... not found, ignoring").
        let mut unknown = Vec::new();
        track_scripts.retain(|(name, _)| {
            let known = self.script_names.iter().any(|s| s == name);
            if !known {
                unknown.push(name.clone());
            }
            known
        });
        for name in unknown {
            self.warn_at(
                &i.loc,
                "track_script",
                format!("no vrrp_script named `{name}`: keepalived ignores the reference, and so does the output"),
            );
        }
        let scripts = track_array("script", &track_scripts);
        if !track_scripts.is_empty() {
            let _ = writeln!(out, "track_scripts = {scripts}");
        }
        if !track_interfaces.is_empty() {
            let _ = writeln!(
                out,
                "track_interfaces = {}",
                track_array("interface", &track_interfaces)
            );
        }
        let mut files = Vec::new();
        for (name, weight, loc) in &track_files {
            match self.track_files.get(name) {
                Some(TrackFileDef {
                    path: Some(p),
                    weight: w,
                }) => {
                    files.push((p.clone(), weight.or(*w)));
                }
                Some(TrackFileDef { path: None, .. }) => {
                    self.warn_at(
                        loc,
                        "track_file",
                        format!("track_file `{name}` has no `file`; not carried over"),
                    );
                }
                None => {
                    self.warn_at(
                        loc,
                        "track_file",
                        format!("no track_file named `{name}` is defined; not carried over"),
                    );
                }
            }
        }
        if !files.is_empty() {
            let _ = writeln!(out, "track_files = {}", track_array("path", &files));
        }
        bfd::emit_track_bfd(out, &track_bfd);
        let procs: Vec<(String, Option<i64>)> = i
            .track_processes
            .iter()
            .filter(|(name, _)| {
                let known = self.process_names.contains(name);
                if !known {
                    self.warn_at(
                        &i.loc,
                        "track_process",
                        format!("no vrrp_track_process named `{name}` with a `process`; not carried over"),
                    );
                }
                known
            })
            .cloned()
            .collect();
        if !procs.is_empty() {
            let _ = writeln!(out, "track_processes = {}", track_array("process", &procs));
        }
        for (k, v) in &i.notify {
            let _ = writeln!(out, "{k} = {}", q(v));
        }
        let mut garp = Garp {
            delay: i.garp.delay,
            repeat: i.garp.repeat,
            refresh: i.garp.refresh,
            refresh_repeat: i.garp.refresh_repeat,
            lower_prio_delay: i.garp.lower_prio_delay,
            lower_prio_repeat: i.garp.lower_prio_repeat,
        };
        if strict {
            // keepalived's strict mode sends no second burst after a lower-priority advert.
            if garp.lower_prio_repeat.is_some_and(|r| r != 0)
                || garp.lower_prio_delay.is_some_and(|d| !d.is_zero())
            {
                self.warn_at(&i.loc, "garp_lower_prio_repeat", "strict mode: keepalived sends no GARP/NA burst after a lower-priority advert; written as 0");
            }
            garp.lower_prio_repeat = Some(0);
            garp.lower_prio_delay = Some(Duration::ZERO);
        }
        emit_garp(out, &garp);
    }
}

/// The `dev` of a virtual address line as the importer writes it.
fn vip_dev(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == "dev")?;
    words.next()
}

fn notify_key(kw: &str) -> &'static str {
    match kw {
        "notify_master" => "notify_master",
        "notify_backup" => "notify_backup",
        "notify_fault" => "notify_fault",
        "notify_stop" => "notify_stop",
        _ => "notify",
    }
}

fn emit_garp(out: &mut String, g: &Garp) {
    if let Some(d) = g.delay {
        let _ = writeln!(out, "garp_master_delay = {}", duration::to_toml(d));
    }
    if let Some(v) = g.repeat {
        let _ = writeln!(out, "garp_master_repeat = {v}");
    }
    if let Some(d) = g.refresh {
        let _ = writeln!(out, "garp_master_refresh = {}", duration::to_toml(d));
    }
    if let Some(v) = g.refresh_repeat {
        let _ = writeln!(out, "garp_master_refresh_repeat = {v}");
    }
    if let Some(d) = g.lower_prio_delay {
        let _ = writeln!(out, "garp_lower_prio_delay = {}", duration::to_toml(d));
    }
    if let Some(v) = g.lower_prio_repeat {
        let _ = writeln!(out, "garp_lower_prio_repeat = {v}");
    }
}

/// A TOML basic string.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when possible.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        s.to_string()
    } else {
        q(s)
    }
}

fn str_array(items: &[String]) -> String {
    match items {
        [] => "[]".to_string(),
        [one] => format!("[{}]", q(one)),
        many => {
            let mut s = String::from("[\n");
            for i in many {
                let _ = writeln!(s, "    {},", q(i));
            }
            s.push(']');
            s
        }
    }
}

fn track_array(name_key: &str, items: &[(String, Option<i64>)]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|(n, w)| match w {
            None => q(n),
            Some(w) => format!("{{ {name_key} = {}, weight = {w} }}", q(n)),
        })
        .collect();
    if parts.len() <= 1 {
        format!("[{}]", parts.join(""))
    } else {
        let mut s = String::from("[\n");
        for p in parts {
            let _ = writeln!(s, "    {p},");
        }
        s.push(']');
        s
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod semantics_tests;
