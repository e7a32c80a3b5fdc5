//! Health tracking with keepalived's semantics: scripts (`[scripts.NAME]`,
//! `track_scripts`), interfaces (`track_interfaces`), files (`track_files`) and processes
//! (`[processes.NAME]`, `track_processes`; counted in `procwatch`).
//!
//! Scripts and files are watched by tasks that only report back over a channel; the
//! daemon's loop applies the reports and turns each instance's [`Verdict`] (effective
//! priority, fault) into election inputs. Nothing here can hold up an election.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{self, Config};
use crate::exec::{self, CommandLine, RateLimit};
use crate::net::link::{LinkEvent, LinkState};

/// How often a tracked file is read again.
pub const FILE_POLL: Duration = Duration::from_millis(500);
/// keepalived: a track_file value × weight below this puts the instance in FAULT.
const FILE_FAULT_BELOW: i64 = -253;

/// A tracked script's standing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// No result yet.
    Unknown,
    /// Passing (after `rise` successes).
    Ok,
    /// Failing (after `fall` failures).
    Failing,
}

impl Health {
    fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Failing => "failing",
        }
    }
}

/// keepalived's rise/fall: the first result decides at once; after that it takes `rise`
/// successes in a row to pass again and `fall` failures in a row to fail.
#[derive(Clone, Copy, Debug)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
    health: Health,
    streak: u32,
}

impl RiseFall {
    /// A counter with no result yet.
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            health: Health::Unknown,
            streak: 0,
        }
    }

    /// Counts one result and returns the standing after it.
    pub fn record(&mut self, ok: bool) -> Health {
        match (self.health, ok) {
            (Health::Unknown, _) => {
                self.health = if ok { Health::Ok } else { Health::Failing };
                self.streak = 0;
            }
            (Health::Ok, true) | (Health::Failing, false) => self.streak = 0,
            (Health::Ok, false) => {
                self.streak += 1;
                if self.streak >= self.fall {
                    self.health = Health::Failing;
                    self.streak = 0;
                }
            }
            (Health::Failing, true) => {
                self.streak += 1;
                if self.streak >= self.rise {
                    self.health = Health::Ok;
                    self.streak = 0;
                }
            }
        }
        self.health
    }
}

/// What the watching tasks report to the daemon.
#[derive(Debug)]
pub enum TrackEvent {
    /// A script run finished.
    Script {
        /// Script name.
        name: String,
        /// Its standing after this run.
        health: Health,
        /// How the run ended, for status.
        last: String,
    },
    /// A tracked file's value changed (`None`: missing or unreadable, taken as 0).
    File {
        /// The file.
        path: PathBuf,
        /// Its integer.
        value: Option<i64>,
    },
    /// A tracked process definition's count or standing changed.
    Process {
        /// Definition name in `[processes]`.
        name: String,
        /// Matching processes now.
        count: u32,
        /// Running (within quorum, delays served); `None` before the first count.
        running: Option<bool>,
    },
}

/// One instance's tracking result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Configured priority plus the weights, in 1..=254 (255 for an owner, untouched).
    pub priority: u8,
    /// Why the instance must be in FAULT, if it must.
    pub fault: Option<String>,
    /// What moved the priority, for the log (`script check_web failing: -60`).
    pub why: Vec<String>,
}

impl Verdict {
    /// What an untracked instance gets: its configured priority, no fault.
    pub fn untracked(cfg: &config::Instance) -> Self {
        Self {
            priority: cfg.priority,
            fault: None,
            why: Vec::new(),
        }
    }
}

struct RunningScript {
    cfg: config::Script,
    user: Option<String>,
    task: JoinHandle<()>,
    health: Health,
    last: Option<String>,
    runs: u64,
}

struct WatchedFile {
    task: JoinHandle<()>,
    value: Option<i64>,
}

/// Every tracked thing's current state, and the tasks that watch scripts and files.
pub struct Tracker {
    tx: mpsc::UnboundedSender<TrackEvent>,
    scripts: BTreeMap<String, RunningScript>,
    files: BTreeMap<PathBuf, WatchedFile>,
    /// Interfaces by index (name, up): a renamed interface is the same interface under
    /// a new name, and the old name then names nothing (down, as a missing one is).
    links: HashMap<u32, (String, bool)>,
    /// `[bfd.NAME]` sessions: Up or not.
    bfd: HashMap<String, bool>,
    /// Definitions being watched, with the task that counts them.
    proc_task: Option<(BTreeMap<String, config::Process>, JoinHandle<()>)>,
    /// Count and standing of each watched process definition.
    procs: BTreeMap<String, (u32, Option<bool>)>,
}

impl Tracker {
    /// A tracker whose tasks report on `tx`; [`Tracker::configure`] starts them.
    pub fn new(tx: mpsc::UnboundedSender<TrackEvent>, links: &[LinkState]) -> Self {
        Self {
            tx,
            scripts: BTreeMap::new(),
            files: BTreeMap::new(),
            links: links
                .iter()
                .map(|l| (l.index, (l.name.clone(), l.is_up())))
                .collect(),
            bfd: HashMap::new(),
            proc_task: None,
            procs: BTreeMap::new(),
        }
    }

    /// Records a BFD session's standing; true when it changed.
    pub fn bfd(&mut self, name: &str, up: bool) -> bool {
        self.bfd.insert(name.to_owned(), up) != Some(up)
    }

    /// Starts what `config` tracks and stops what it no longer does. A script or file
    /// whose settings did not change keeps its task and its standing, so a reload does
    /// not reset weights (which could move mastership).
    pub fn configure(&mut self, config: &Config) {
        let mut wanted_scripts = BTreeMap::new();
        let mut wanted_files = std::collections::BTreeSet::new();
        for inst in config.instances.values() {
            for t in &inst.track_scripts {
                if let Some(s) = config.scripts.get(&t.script) {
                    wanted_scripts.insert(t.script.clone(), s.clone());
                }
            }
            for f in &inst.track_files {
                wanted_files.insert(f.path.clone());
            }
        }
        let wanted_procs: BTreeMap<String, config::Process> = config
            .instances
            .values()
            .flat_map(|i| &i.track_processes)
            .filter_map(|t| {
                config
                    .processes
                    .get(&t.process)
                    .map(|p| (t.process.clone(), p.clone()))
            })
            .collect();
        // One task counts every definition; it restarts only when they change.
        if self.proc_task.as_ref().map(|(d, _)| d) != Some(&wanted_procs) {
            if let Some((_, task)) = self.proc_task.take() {
                task.abort();
            }
            self.procs.retain(|n, _| wanted_procs.contains_key(n));
            if !wanted_procs.is_empty() {
                // Count now, so the first verdict already has the numbers (no FAULT at
                // start while the task gets going).
                let mut m = crate::procwatch::Matcher::new(wanted_procs.clone());
                crate::procwatch::scan(&mut m);
                let now = Instant::now();
                for (name, count) in m.counts() {
                    if let Some(d) = wanted_procs.get(&name) {
                        let mut s = crate::procwatch::Standing::new(d);
                        let running = s.observe(count, now);
                        self.procs.insert(name, (count, running));
                    }
                }
                let task = tokio::spawn(crate::procwatch::watch(
                    wanted_procs.clone(),
                    self.tx.clone(),
                ));
                self.proc_task = Some((wanted_procs, task));
            }
        }
        let user = config.global.script_user.clone();
        self.scripts.retain(|name, running| {
            let keep = wanted_scripts
                .get(name)
                .is_some_and(|s| *s == running.cfg && (s.user.is_some() || running.user == user));
            if !keep {
                running.task.abort();
                tracing::info!(script = %name, "script stopped");
            }
            keep
        });
        for (name, cfg) in wanted_scripts {
            if self.scripts.contains_key(&name) {
                continue;
            }
            let who = cfg.user.clone().or_else(|| user.clone());
            let task = tokio::spawn(script_task(name.clone(), cfg.clone(), who, self.tx.clone()));
            self.scripts.insert(
                name,
                RunningScript {
                    cfg,
                    user: user.clone(),
                    task,
                    health: Health::Unknown,
                    last: None,
                    runs: 0,
                },
            );
        }
        self.files.retain(|path, watched| {
            let keep = wanted_files.contains(path);
            if !keep {
                watched.task.abort();
            }
            keep
        });
        for path in wanted_files {
            if self.files.contains_key(&path) {
                continue;
            }
            // Read now, so the first verdict already has the value.
            let value = read_file(&path);
            let task = tokio::spawn(file_task(path.clone(), value, self.tx.clone()));
            self.files.insert(path, WatchedFile { task, value });
        }
    }

    /// Applies a report; true when it may change a verdict.
    pub fn apply(&mut self, event: TrackEvent) -> bool {
        match event {
            TrackEvent::Script { name, health, last } => {
                let Some(s) = self.scripts.get_mut(&name) else {
                    return false;
                };
                s.runs += 1;
                s.last = Some(last);
                let changed = s.health != health;
                if changed {
                    tracing::info!(script = %name, "script is now {} (was {})", health.as_str(), s.health.as_str());
                }
                s.health = health;
                changed
            }
            TrackEvent::File { path, value } => {
                let Some(f) = self.files.get_mut(&path) else {
                    return false;
                };
                let changed = f.value != value;
                if changed {
                    tracing::info!(file = %path.display(), "tracked file now holds {}", value.map_or("nothing (taken as 0)".to_owned(), |v| v.to_string()));
                }
                f.value = value;
                changed
            }
            TrackEvent::Process {
                name,
                count,
                running,
            } => {
                let slot = self.procs.entry(name.clone()).or_insert((0, None));
                let changed = slot.1 != running;
                if changed {
                    tracing::info!(process = %name, count, "tracked process is now {}", match running {
                        Some(true) => "running",
                        Some(false) => "not running",
                        None => "uncounted",
                    });
                }
                *slot = (count, running);
                changed
            }
        }
    }

    /// Applies a link change; true when a tracked interface changed.
    pub fn link(&mut self, event: &LinkEvent) -> bool {
        match event {
            LinkEvent::Changed(l) => {
                let now = (l.name.clone(), l.is_up());
                self.links.insert(l.index, now.clone()) != Some(now)
            }
            LinkEvent::Removed { index, .. } => self.links.remove(index).is_some(),
            LinkEvent::Addresses { .. } => false,
        }
    }

    /// Whether an interface called `name` exists and is up.
    fn link_up(&self, name: &str) -> bool {
        self.links.values().any(|(n, up)| n == name && *up)
    }

    /// The effective priority and fault of an instance, with keepalived's semantics.
    pub fn evaluate(&self, cfg: &config::Instance) -> Verdict {
        let owner = cfg.is_address_owner();
        let mut total: i64 = 0;
        let mut faults = Vec::new();
        let mut why = Vec::new();
        // keepalived ignores weights for an address owner: a failure means FAULT.
        let weight = |w: i32| if owner { 0 } else { i64::from(w) };
        for t in &cfg.track_scripts {
            let health = self
                .scripts
                .get(&t.script)
                .map_or(Health::Unknown, |s| s.health);
            match (weight(t.weight), health) {
                (0, Health::Failing) => faults.push(format!("script {} failing", t.script)),
                // keepalived starts a weight-0 script as failed until it passes.
                (0, Health::Unknown) => {
                    faults.push(format!("script {} has not passed yet", t.script))
                }
                (w, Health::Ok) if w > 0 => {
                    total += w;
                    why.push(format!("script {} ok: +{w}", t.script));
                }
                (w, Health::Failing) if w < 0 => {
                    total += w;
                    why.push(format!("script {} failing: {w}", t.script));
                }
                _ => {}
            }
        }
        for t in &cfg.track_interfaces {
            // An interface that does not exist counts as down, as in keepalived.
            let up = self.link_up(&t.interface);
            match weight(t.weight) {
                0 if !up => faults.push(format!("interface {} down", t.interface)),
                w if w > 0 && up => {
                    total += w;
                    why.push(format!("interface {} up: +{w}", t.interface));
                }
                w if w < 0 && !up => {
                    total += w;
                    why.push(format!("interface {} down: {w}", t.interface));
                }
                _ => {}
            }
        }
        for t in &cfg.track_bfd {
            // A session not yet Up counts as down, as in keepalived.
            let up = self.bfd.get(&t.session).copied().unwrap_or(false);
            match weight(t.weight) {
                0 if !up => faults.push(format!("BFD session {} down", t.session)),
                w if w > 0 && up => {
                    total += w;
                    why.push(format!("BFD session {} up: +{w}", t.session));
                }
                w if w < 0 && !up => {
                    total += w;
                    why.push(format!("BFD session {} down: {w}", t.session));
                }
                _ => {}
            }
        }
        for t in &cfg.track_files {
            let value = self.files.get(&t.path).and_then(|f| f.value).unwrap_or(0);
            let w = weight(t.weight);
            if w == 0 {
                if value != 0 {
                    faults.push(format!("file {} holds {value}", t.path.display()));
                }
                continue;
            }
            let moved = value.saturating_mul(w);
            if moved < FILE_FAULT_BELOW {
                faults.push(format!(
                    "file {} holds {value} (× {w} = {moved})",
                    t.path.display()
                ));
            } else if moved != 0 {
                total += moved;
                why.push(format!(
                    "file {} = {value} × {w}: {moved:+}",
                    t.path.display()
                ));
            }
        }
        for t in &cfg.track_processes {
            let running = self.procs.get(&t.process).and_then(|p| p.1);
            let count = self.procs.get(&t.process).map_or(0, |p| p.0);
            match (weight(t.weight), running) {
                (0, Some(false)) => {
                    faults.push(format!("process {} not running ({count})", t.process))
                }
                (0, None) => faults.push(format!("process {} not counted yet", t.process)),
                (w, Some(true)) if w > 0 => {
                    total += w;
                    why.push(format!("process {} running: +{w}", t.process));
                }
                (w, Some(false)) if w < 0 => {
                    total += w;
                    why.push(format!("process {} not running: {w}", t.process));
                }
                _ => {}
            }
        }
        let priority = if owner {
            cfg.priority
        } else {
            // In 1..=254 after the clamp.
            (i64::from(cfg.priority) + total).clamp(1, 254) as u8
        };
        Verdict {
            priority,
            fault: (!faults.is_empty()).then(|| faults.join(", ")),
            why,
        }
    }

    /// The tracked items of an instance, for `vigil status`.
    pub fn status(&self, cfg: &config::Instance) -> serde_json::Value {
        let scripts: Vec<_> = cfg
            .track_scripts
            .iter()
            .map(|t| {
                let s = self.scripts.get(&t.script);
                serde_json::json!({
                    "script": t.script,
                    "weight": t.weight,
                    "status": s.map_or(Health::Unknown, |s| s.health).as_str(),
                    "last_result": s.and_then(|s| s.last.clone()),
                    "runs": s.map_or(0, |s| s.runs),
                })
            })
            .collect();
        let interfaces: Vec<_> = cfg
            .track_interfaces
            .iter()
            .map(|t| {
                let up = self.link_up(&t.interface);
                serde_json::json!({
                    "interface": t.interface,
                    "weight": t.weight,
                    "status": if up { "up" } else { "down" },
                })
            })
            .collect();
        let files: Vec<_> = cfg
            .track_files
            .iter()
            .map(|t| {
                serde_json::json!({
                    "path": t.path.display().to_string(),
                    "weight": t.weight,
                    "value": self.files.get(&t.path).and_then(|f| f.value),
                })
            })
            .collect();
        let bfd: Vec<_> = cfg
            .track_bfd
            .iter()
            .map(|t| {
                let up = self.bfd.get(&t.session).copied().unwrap_or(false);
                serde_json::json!({
                    "bfd": t.session,
                    "weight": t.weight,
                    "status": if up { "up" } else { "down" },
                })
            })
            .collect();
        let processes: Vec<_> = cfg
            .track_processes
            .iter()
            .map(|t| {
                let p = self.procs.get(&t.process);
                serde_json::json!({
                    "process": t.process,
                    "weight": t.weight,
                    "count": p.map_or(0, |p| p.0),
                    "status": match p.and_then(|p| p.1) {
                        Some(true) => "running",
                        Some(false) => "not running",
                        None => "unknown",
                    },
                })
            })
            .collect();
        serde_json::json!({ "scripts": scripts, "interfaces": interfaces, "files": files, "processes": processes, "bfd": bfd })
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for s in self.scripts.values() {
            s.task.abort();
        }
        for f in self.files.values() {
            f.task.abort();
        }
        if let Some((_, task)) = &self.proc_task {
            task.abort();
        }
    }
}

/// Runs a script every interval and reports each result.
async fn script_task(
    name: String,
    cfg: config::Script,
    user: Option<String>,
    tx: mpsc::UnboundedSender<TrackEvent>,
) {
    let cmd = CommandLine::parse(&cfg.command);
    let who = format!("script {name}");
    let run_as = exec::run_as(user.as_deref());
    if let Err(e) = &run_as {
        // Never fall back to root: the script fails until the user exists.
        tracing::error!(script = %name, "{e}; the script counts as failing");
    }
    let mut counter = RiseFall::new(cfg.rise, cfg.fall);
    let mut log = RateLimit::new(10, Duration::from_secs(60));
    let mut ticker = tokio::time::interval(cfg.interval);
    // A run longer than the interval delays the next one rather than bunching them up.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_outcome = String::new();
    loop {
        ticker.tick().await;
        let (ok, last) = match &run_as {
            Ok(user) => {
                let f = exec::run(&cmd, &[], *user, cfg.timeout).await;
                if let exec::Outcome::Unavailable(e) = &f.outcome {
                    // A check that could not run has no result: the standing stays as it
                    // is, so the agent's own shortage (say, every file descriptor taken)
                    // never lowers the priority and fails the node over.
                    tracing::warn!(script = %name, "{cmd} not run, standing kept: {e}");
                    continue;
                }
                exec::log_output(&who, &f.output, &mut log);
                let text = f.outcome.to_string();
                if matches!(f.outcome, exec::Outcome::TimedOut(_)) || text != last_outcome {
                    let level_warn = !f.outcome.success();
                    if level_warn {
                        tracing::warn!(script = %name, "{cmd}: {text}");
                    } else {
                        tracing::info!(script = %name, "{cmd}: {text}");
                    }
                }
                last_outcome.clone_from(&text);
                (f.outcome.success(), text)
            }
            Err(e) => (false, e.clone()),
        };
        let health = counter.record(ok);
        if tx
            .send(TrackEvent::Script {
                name: name.clone(),
                health,
                last,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Reads a tracked file every [`FILE_POLL`] and reports changes.
async fn file_task(path: PathBuf, mut value: Option<i64>, tx: mpsc::UnboundedSender<TrackEvent>) {
    let mut ticker = tokio::time::interval(FILE_POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = Instant::now().checked_sub(Duration::from_secs(3600));
    loop {
        ticker.tick().await;
        let p = path.clone();
        // File reads can block (NFS, a FUSE mount): keep them off the agent's thread.
        let now: Option<i64> = tokio::task::spawn_blocking(move || read_file(&p))
            .await
            .unwrap_or_default();
        if now.is_none() && warned.is_none_or(|w| w.elapsed() > Duration::from_secs(60)) {
            tracing::warn!(file = %path.display(), "tracked file missing or not an integer; taken as 0");
            warned = Some(Instant::now());
        }
        if now != value {
            value = now;
            if tx
                .send(TrackEvent::File {
                    path: path.clone(),
                    value,
                })
                .is_err()
            {
                return;
            }
        }
    }
}

/// The integer at the start of a file, as keepalived reads it (`strtol`): leading
/// whitespace and a sign allowed, anything after the digits ignored.
pub fn read_file(path: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_leading_int(&text)
}

fn parse_leading_int(text: &str) -> Option<i64> {
    let t = text.trim_start();
    let (sign, digits) = match t.as_bytes().first() {
        Some(b'-') => (-1, &t[1..]),
        Some(b'+') => (1, &t[1..]),
        _ => (1, t),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    digits[..end].parse::<i64>().ok().map(|v| v * sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(text: &str) -> (Config, config::Instance) {
        let toml = format!(
            "[scripts.up]\ncommand = \"true\"\nweight = 20\n\
             [scripts.down]\ncommand = \"false\"\nweight = -60\n\
             [scripts.must]\ncommand = \"true\"\n\
             [instances.web]\ninterface = \"eth0\"\nvrid = 51\nvirtual_addresses = [\"192.0.2.100/24\"]\n{text}"
        );
        let c = config::parse(&toml, "t.toml").expect("valid test config");
        let i = c.instances["web"].clone();
        (c, i)
    }

    fn tracker() -> Tracker {
        let (tx, _rx) = mpsc::unbounded_channel();
        Tracker::new(tx, &[])
    }

    fn set_script(t: &mut Tracker, c: &Config, name: &str, health: Health) {
        t.scripts.insert(
            name.to_owned(),
            RunningScript {
                cfg: c.scripts[name].clone(),
                user: None,
                task: tokio::spawn(async {}),
                health,
                last: None,
                runs: 1,
            },
        );
    }

    #[test]
    fn rise_and_fall_follow_keepalived() {
        let mut r = RiseFall::new(2, 3);
        assert_eq!(
            r.record(false),
            Health::Failing,
            "first result decides at once"
        );
        assert_eq!(r.record(true), Health::Failing);
        assert_eq!(r.record(true), Health::Ok, "rise 2");
        assert_eq!(r.record(false), Health::Ok);
        assert_eq!(r.record(false), Health::Ok);
        assert_eq!(
            r.record(true),
            Health::Ok,
            "a success resets the fall count"
        );
        assert_eq!(r.record(false), Health::Ok);
        assert_eq!(r.record(false), Health::Ok);
        assert_eq!(r.record(false), Health::Failing, "fall 3");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn script_weights_add_while_ok_subtract_while_failing_and_zero_faults() {
        let (c, i) = instance(
            "priority = 150\ntrack_scripts = [\"up\", \"down\", { script = \"must\", weight = 0 }]\n",
        );
        let mut t = tracker();
        let v = t.evaluate(&i);
        assert_eq!(
            v.priority, 150,
            "unknown weighted scripts count for nothing"
        );
        assert_eq!(v.fault.as_deref(), Some("script must has not passed yet"));
        set_script(&mut t, &c, "up", Health::Ok);
        set_script(&mut t, &c, "down", Health::Failing);
        set_script(&mut t, &c, "must", Health::Ok);
        let v = t.evaluate(&i);
        assert_eq!(v.priority, 150 + 20 - 60);
        assert_eq!(v.fault, None);
        set_script(&mut t, &c, "up", Health::Failing);
        set_script(&mut t, &c, "down", Health::Ok);
        set_script(&mut t, &c, "must", Health::Failing);
        let v = t.evaluate(&i);
        assert_eq!(v.priority, 150);
        assert_eq!(v.fault.as_deref(), Some("script must failing"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn per_instance_weight_overrides_and_priority_is_clamped() {
        let (c, i) =
            instance("priority = 240\ntrack_scripts = [{ script = \"up\", weight = 100 }]\n");
        let mut t = tracker();
        set_script(&mut t, &c, "up", Health::Ok);
        assert_eq!(t.evaluate(&i).priority, 254);
        let (c, i) =
            instance("priority = 10\ntrack_scripts = [{ script = \"down\", weight = -100 }]\n");
        set_script(&mut t, &c, "down", Health::Failing);
        assert_eq!(t.evaluate(&i).priority, 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_owner_keeps_255_and_a_weighted_failure_means_fault() {
        let (c, i) = instance("priority = 255\ntrack_scripts = [\"down\"]\n");
        let mut t = tracker();
        set_script(&mut t, &c, "down", Health::Failing);
        let v = t.evaluate(&i);
        assert_eq!(v.priority, 255);
        assert_eq!(v.fault.as_deref(), Some("script down failing"));
    }

    #[test]
    fn interfaces_fault_or_weigh() {
        let (_, i) = instance(
            "priority = 100\ntrack_interfaces = [\"eth1\", { interface = \"eth2\", weight = -30 }, { interface = \"eth3\", weight = 10 }]\n",
        );
        let mut t = tracker();
        let v = t.evaluate(&i);
        assert_eq!(v.priority, 70, "missing interfaces are down");
        assert_eq!(v.fault.as_deref(), Some("interface eth1 down"));
        for (index, n) in [(11, "eth1"), (12, "eth2"), (13, "eth3")] {
            t.links.insert(index, (n.to_owned(), true));
        }
        let v = t.evaluate(&i);
        assert_eq!(v.priority, 110);
        assert_eq!(v.fault, None);
        // eth1 renamed: the configured name names nothing now.
        let renamed = LinkState {
            index: 11,
            name: "wan0".to_owned(),
            admin_up: true,
            running: true,
            lower_up: true,
            oper: crate::net::OperState::Up,
            mac: None,
        };
        assert!(t.link(&LinkEvent::Changed(renamed)));
        assert_eq!(t.evaluate(&i).fault.as_deref(), Some("interface eth1 down"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn files_multiply_and_fault_like_keepalived() {
        let (_, i) = instance(
            "priority = 100\ntrack_files = [{ path = \"/a\", weight = 5 }, { path = \"/b\", weight = 0 }]\n",
        );
        let mut t = tracker();
        let watched = |v| WatchedFile {
            task: tokio::spawn(async {}),
            value: Some(v),
        };
        t.files.insert("/a".into(), watched(-4));
        t.files.insert("/b".into(), watched(0));
        let v = t.evaluate(&i);
        assert_eq!((v.priority, v.fault), (80, None));
        t.files.insert("/b".into(), watched(1));
        assert_eq!(t.evaluate(&i).fault.as_deref(), Some("file /b holds 1"));
        t.files.insert("/b".into(), watched(0));
        t.files.insert("/a".into(), watched(-51));
        assert!(t.evaluate(&i).fault.is_some(), "-255 < -253 means fault");
    }

    #[test]
    fn bfd_sessions_fault_or_weigh() {
        let c = config::parse(
            "[bfd.a]\nneighbor = \"192.0.2.12\"\ninterface = \"eth0\"\n\
             [bfd.b]\nneighbor = \"192.0.2.13\"\ninterface = \"eth0\"\nweight = -30\n\
             [bfd.c]\nneighbor = \"192.0.2.14\"\ninterface = \"eth0\"\nweight = 10\n\
             [instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = 100\n\
             virtual_addresses = [\"192.0.2.100/24\"]\ntrack_bfd = [\"a\", \"b\", \"c\"]\n",
            "t.toml",
        )
        .expect("valid test config");
        let i = &c.instances["web"];
        let mut t = tracker();
        let v = t.evaluate(i);
        assert_eq!(v.priority, 70, "sessions not yet Up count as down");
        assert_eq!(v.fault.as_deref(), Some("BFD session a down"));
        assert!(t.bfd("a", true));
        assert!(!t.bfd("a", true), "no change, no re-evaluation");
        t.bfd("b", true);
        t.bfd("c", true);
        let v = t.evaluate(i);
        assert_eq!((v.priority, v.fault), (110, None));
        t.bfd("b", false);
        assert_eq!(t.evaluate(i).priority, 80);
        assert_eq!(t.status(i)["bfd"][1]["status"], "down");
    }

    #[test]
    fn leading_integers_parse_like_strtol() {
        assert_eq!(parse_leading_int("  42\n"), Some(42));
        assert_eq!(parse_leading_int("-7 apples"), Some(-7));
        assert_eq!(parse_leading_int("+3"), Some(3));
        assert_eq!(parse_leading_int("x"), None);
        assert_eq!(parse_leading_int(""), None);
    }
}
