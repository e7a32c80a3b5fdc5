//! Process tracking (`[processes.NAME]`, keepalived `vrrp_track_process`): how many
//! processes match each definition, kept current by the kernel's process events (the
//! netlink proc connector) after one scan of /proc at start.
//!
//! The proc connector exists only in the initial network namespace; an agent started in
//! another one opens its socket there from a short-lived thread (root may), so the same
//! code serves a node and a lab namespace. Where that is refused, /proc is scanned every
//! [`POLL_FALLBACK`] instead, and the log says so.
//!
//! Counting and the fork/terminate delays are pure ([`Matcher`], [`Standing`]); the task
//! only feeds them.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use crate::config;
use crate::track::TrackEvent;

/// How often /proc is scanned when the proc connector cannot be had.
pub const POLL_FALLBACK: Duration = Duration::from_millis(200);
/// After an exec or fork, when a process whose name matches is read again for a command
/// line it rewrote itself.
pub const RECHECK_AFTER: [Duration; 3] = [
    Duration::from_millis(20),
    Duration::from_millis(200),
    Duration::from_secs(1),
];

/// What is known of one process: its `comm`, the path of its program and its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    /// The kernel's short name (at most 15 bytes).
    pub comm: String,
    /// Command line, arguments joined by single spaces (empty for kernel threads).
    pub cmdline: String,
}

/// Does `p` match the definition `d`?
pub fn matches(d: &config::Process, p: &ProcInfo) -> bool {
    let name_ok = if d.name.contains('/') {
        p.cmdline.split(' ').next() == Some(d.name.as_str())
    } else {
        // comm is truncated to 15 bytes by the kernel; compare what it can hold.
        let want = truncate(&d.name, 15);
        p.comm == want
    };
    name_ok
        && d.command_line
            .as_ref()
            .is_none_or(|c| command_matches(d.command_match, c, &p.cmdline))
}

/// keepalived's `param_match`, on words: the whole line, its first words, or a run of
/// words anywhere in it.
fn command_matches(how: config::CommandMatch, want: &str, cmdline: &str) -> bool {
    let want: Vec<&str> = want.split(' ').filter(|w| !w.is_empty()).collect();
    let have: Vec<&str> = cmdline.split(' ').filter(|w| !w.is_empty()).collect();
    match how {
        config::CommandMatch::Exact => have == want,
        config::CommandMatch::Initial => have.starts_with(&want),
        config::CommandMatch::Partial => {
            want.is_empty() || have.windows(want.len()).any(|run| run == want.as_slice())
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The matching processes of every definition, by process id.
#[derive(Default)]
pub struct Matcher {
    defs: BTreeMap<String, config::Process>,
    /// pid → names of the definitions it matches.
    pids: HashMap<u32, Vec<String>>,
}

impl Matcher {
    /// A matcher for these definitions, matching nothing yet.
    pub fn new(defs: BTreeMap<String, config::Process>) -> Self {
        Self {
            defs,
            pids: HashMap::new(),
        }
    }

    /// A process appeared or changed (exec, comm change): match it again.
    pub fn update(&mut self, pid: u32, info: &ProcInfo) {
        let names: Vec<String> = self
            .defs
            .iter()
            .filter(|(_, d)| matches(d, info))
            .map(|(n, _)| n.clone())
            .collect();
        if names.is_empty() {
            self.pids.remove(&pid);
        } else {
            self.pids.insert(pid, names);
        }
    }

    /// Whether `info` has the name of a definition that also checks the command line:
    /// such a process may rewrite its command line after exec (nginx, postgres do,
    /// without a kernel event), so it is read again a little later.
    pub fn wants_recheck(&self, info: &ProcInfo) -> bool {
        self.defs.values().any(|d| {
            d.command_line.is_some()
                && matches(
                    &config::Process {
                        command_line: None,
                        ..d.clone()
                    },
                    info,
                )
        })
    }

    /// A process exited.
    pub fn remove(&mut self, pid: u32) {
        self.pids.remove(&pid);
    }

    /// Forgets every process (before a full rescan).
    pub fn clear(&mut self) {
        self.pids.clear();
    }

    /// Matching processes per definition (every definition listed, 0 included).
    pub fn counts(&self) -> BTreeMap<String, u32> {
        let mut c: BTreeMap<String, u32> = self.defs.keys().map(|k| (k.clone(), 0)).collect();
        for names in self.pids.values() {
            for n in names {
                if let Some(v) = c.get_mut(n) {
                    *v += 1;
                }
            }
        }
        c
    }
}

/// keepalived's verdict for one definition: running while the count is within
/// [quorum, quorum_max], with `fork_delay` before a gain counts and `terminate_delay`
/// before a loss does. The first count decides at once.
#[derive(Clone, Debug)]
pub struct Standing {
    quorum: u32,
    quorum_max: Option<u32>,
    fork_delay: Duration,
    terminate_delay: Duration,
    running: Option<bool>,
    pending: Option<(bool, Instant)>,
    /// Last count observed.
    pub count: u32,
}

impl Standing {
    /// No count yet.
    pub fn new(d: &config::Process) -> Self {
        Self {
            quorum: d.quorum,
            quorum_max: d.quorum_max,
            fork_delay: d.fork_delay,
            terminate_delay: d.terminate_delay,
            running: None,
            pending: None,
            count: 0,
        }
    }

    fn in_quorum(&self, count: u32) -> bool {
        count >= self.quorum && self.quorum_max.is_none_or(|m| count <= m)
    }

    /// Counts observed at `now`; returns the new standing when it changed at once.
    pub fn observe(&mut self, count: u32, now: Instant) -> Option<bool> {
        self.count = count;
        let want = self.in_quorum(count);
        match self.running {
            None => {
                self.running = Some(want);
                Some(want)
            }
            Some(r) if r == want => {
                self.pending = None;
                None
            }
            Some(_) => {
                let delay = if want {
                    self.fork_delay
                } else {
                    self.terminate_delay
                };
                if delay.is_zero() {
                    self.pending = None;
                    self.running = Some(want);
                    return Some(want);
                }
                // A pending change of the same direction keeps its deadline.
                if self.pending.is_none_or(|(w, _)| w != want) {
                    self.pending = Some((want, now + delay));
                }
                None
            }
        }
    }

    /// When a delayed change falls due.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.map(|(_, at)| at)
    }

    /// Applies a delayed change that is due; returns the new standing.
    pub fn poll(&mut self, now: Instant) -> Option<bool> {
        match self.pending {
            Some((want, at)) if at <= now => {
                self.pending = None;
                self.running = Some(want);
                Some(want)
            }
            _ => None,
        }
    }

    /// The standing, once decided.
    pub fn running(&self) -> Option<bool> {
        self.running
    }
}

/// Reads a process's comm and command line; `None` once it is gone.
pub fn read_proc(pid: u32) -> Option<ProcInfo> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    Some(ProcInfo {
        comm: comm.trim_end_matches('\n').to_string(),
        cmdline,
    })
}

/// Every process in /proc (threads are not listed there at the top level).
pub fn scan(m: &mut Matcher) {
    m.clear();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(info) = read_proc(pid) {
            m.update(pid, &info);
        }
    }
}

const NETLINK_CONNECTOR: libc::c_int = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXEC: u32 = 0x2;
const PROC_EVENT_COMM: u32 = 0x200;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
const NLMSG_DONE: u16 = 3;

/// One process event, as far as counting needs it.
#[derive(Debug, PartialEq, Eq)]
pub enum ProcEvent {
    /// A new process (not a thread): `pid` is its id.
    Fork(u32),
    /// A process ran a new program or renamed itself.
    Changed(u32),
    /// A process ended.
    Exit(u32),
    /// Events were lost (receive buffer overrun): rescan.
    Lost,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parses one datagram from the proc connector into events.
pub fn parse_events(buf: &[u8]) -> Vec<ProcEvent> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let Some(len) = u32_at(buf, off).map(|l| l as usize) else {
            break;
        };
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            break;
        }
        let msg = &buf[off..off + len];
        // struct proc_event: what, cpu, timestamp_ns (u64), then the event data.
        let ev = NLMSG_HDRLEN + CN_MSG_LEN;
        let data = ev + 16;
        if let Some(what) = u32_at(msg, ev) {
            let pid_tgid = |at: usize| Some((u32_at(msg, at)?, u32_at(msg, at + 4)?));
            match what {
                PROC_EVENT_FORK => {
                    // parent pid/tgid, then child pid/tgid; a thread has pid != tgid.
                    if let Some((pid, tgid)) = pid_tgid(data + 8)
                        && pid == tgid
                    {
                        out.push(ProcEvent::Fork(pid));
                    }
                }
                PROC_EVENT_EXEC | PROC_EVENT_COMM => {
                    if let Some((pid, tgid)) = pid_tgid(data)
                        && pid == tgid
                    {
                        out.push(ProcEvent::Changed(pid));
                    }
                }
                PROC_EVENT_EXIT => {
                    if let Some((pid, tgid)) = pid_tgid(data)
                        && pid == tgid
                    {
                        out.push(ProcEvent::Exit(pid));
                    }
                }
                _ => {}
            }
        }
        off += (len + 3) & !3;
    }
    out
}

/// Opens the proc connector in the initial network namespace and subscribes: the
/// namespace of process 1, or, where that cannot be read (a sandbox), of the process that
/// started vigil (`ip netns exec` from the host's shell). A namespace without the
/// connector refuses the subscription, and the next is tried.
fn open_connector() -> std::io::Result<OwnedFd> {
    let here = std::fs::read_link("/proc/thread-self/ns/net")?;
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    let mut last = std::io::Error::other("no namespace to try");
    for path in [
        "/proc/1/ns/net".to_string(),
        format!("/proc/{parent}/ns/net"),
    ] {
        let there = match std::fs::read_link(&path) {
            Ok(t) => t,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let result = if there == here {
            connector_socket()
        } else {
            // setns affects only the calling thread: do it on one that ends right after.
            let p = path.clone();
            std::thread::spawn(move || -> std::io::Result<OwnedFd> {
                let ns = std::fs::File::open(&p)?;
                // SAFETY: setns on a valid namespace fd; it changes only this thread.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                connector_socket()
            })
            .join()
            .map_err(|_| std::io::Error::other("proc connector thread panicked"))?
        };
        match result {
            Ok(fd) => return Ok(fd),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn connector_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right after.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            NETLINK_CONNECTOR,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    sa.nl_groups = CN_IDX_PROC;
    // SAFETY: sa is a valid sockaddr_nl of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(sa).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut msg = Vec::with_capacity(NLMSG_HDRLEN + CN_MSG_LEN + 4);
    let total = (NLMSG_HDRLEN + CN_MSG_LEN + 4) as u32;
    msg.extend_from_slice(&total.to_ne_bytes());
    msg.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&std::process::id().to_ne_bytes());
    for v in [CN_IDX_PROC, CN_VAL_PROC, 0, 0] {
        msg.extend_from_slice(&v.to_ne_bytes());
    }
    msg.extend_from_slice(&4u16.to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    // SAFETY: msg is a valid buffer of msg.len() bytes.
    let n = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

fn recv(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Watches the defined processes until aborted, reporting each standing change (and
/// count change) as [`TrackEvent::Process`].
pub async fn watch(defs: BTreeMap<String, config::Process>, tx: mpsc::UnboundedSender<TrackEvent>) {
    let mut standings: BTreeMap<String, Standing> = defs
        .iter()
        .map(|(n, d)| (n.clone(), Standing::new(d)))
        .collect();
    let mut matcher = Matcher::new(defs);
    // SAFETY: the OwnedFd moves into the AsyncFd and stays open as long as it.
    let conn = match open_connector()
        .and_then(|fd| unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from))
    {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::warn!(
                "process tracking: no kernel process events ({e}); scanning /proc every {} ms instead",
                POLL_FALLBACK.as_millis()
            );
            None
        }
    };
    // Subscribed first, scanned second: nothing that happens in between is missed.
    scan(&mut matcher);
    let mut buf = vec![0u8; 16 * 1024];
    let mut rechecks: Vec<(Instant, u32)> = Vec::new();
    loop {
        let now = Instant::now();
        for (name, count) in matcher.counts() {
            let Some(s) = standings.get_mut(&name) else {
                continue;
            };
            let before = s.count;
            let changed = s.observe(count, now);
            if changed.is_some() || before != count {
                let _ = tx.send(TrackEvent::Process {
                    name: name.clone(),
                    count,
                    running: s.running(),
                });
            }
        }
        let next = standings
            .values()
            .filter_map(Standing::deadline)
            .chain(rechecks.iter().map(|(at, _)| *at))
            .min();
        let wake = async {
            match next {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ready = async {
                match &conn {
                    Some(fd) => fd.readable().await.map(Some),
                    None => {
                        tokio::time::sleep(POLL_FALLBACK).await;
                        Ok(None)
                    }
                }
            } => {
                match ready {
                    Ok(Some(mut guard)) => {
                        let fd = guard.get_inner();
                        loop {
                            match recv(fd, &mut buf) {
                                Ok(n) => apply(&mut matcher, parse_events(&buf[..n]), &mut rechecks),
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                    guard.clear_ready();
                                    break;
                                }
                                Err(e) => {
                                    // ENOBUFS: events were dropped; the truth is in /proc.
                                    tracing::debug!("process events: {e}; rescanning /proc");
                                    apply(&mut matcher, vec![ProcEvent::Lost], &mut rechecks);
                                    break;
                                }
                            }
                        }
                    }
                    Ok(None) => scan(&mut matcher),
                    Err(e) => {
                        tracing::warn!("process events: {e}");
                        tokio::time::sleep(POLL_FALLBACK).await;
                        scan(&mut matcher);
                    }
                }
            }
            _ = wake => {}
        }
        let now = Instant::now();
        rechecks.retain(|(at, pid)| {
            if *at > now {
                return true;
            }
            match read_proc(*pid) {
                Some(info) => matcher.update(*pid, &info),
                None => matcher.remove(*pid),
            }
            false
        });
        for (name, s) in standings.iter_mut() {
            if s.poll(now).is_some() {
                let _ = tx.send(TrackEvent::Process {
                    name: name.clone(),
                    count: s.count,
                    running: s.running(),
                });
            }
        }
    }
}

fn apply(m: &mut Matcher, events: Vec<ProcEvent>, rechecks: &mut Vec<(Instant, u32)>) {
    for ev in events {
        match ev {
            ProcEvent::Fork(pid) | ProcEvent::Changed(pid) => match read_proc(pid) {
                Some(info) => {
                    if m.wants_recheck(&info) {
                        let now = Instant::now();
                        rechecks.extend(RECHECK_AFTER.iter().map(|d| (now + *d, pid)));
                    }
                    m.update(pid, &info);
                }
                None => m.remove(pid),
            },
            ProcEvent::Exit(pid) => m.remove(pid),
            ProcEvent::Lost => scan(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str) -> config::Process {
        config::Process {
            name: name.to_string(),
            command_line: None,
            command_match: config::CommandMatch::Exact,
            quorum: 1,
            quorum_max: None,
            weight: 0,
            fork_delay: Duration::ZERO,
            terminate_delay: Duration::ZERO,
        }
    }

    fn info(comm: &str, cmdline: &str) -> ProcInfo {
        ProcInfo {
            comm: comm.into(),
            cmdline: cmdline.into(),
        }
    }

    #[test]
    fn names_match_comm_paths_match_argv0_and_command_lines_match_whole() {
        assert!(matches(
            &def("nginx"),
            &info("nginx", "nginx: master process")
        ));
        assert!(!matches(&def("nginx"), &info("nginx-debug", "x")));
        // comm holds 15 bytes: a longer name matches its truncation.
        assert!(matches(
            &def("a_very_long_process_name"),
            &info("a_very_long_pro", "")
        ));
        assert!(matches(
            &def("/usr/sbin/nginx"),
            &info("nginx", "/usr/sbin/nginx -g daemon off;")
        ));
        assert!(!matches(
            &def("/usr/sbin/nginx"),
            &info("nginx", "nginx -g x")
        ));
        let mut d = def("sleep");
        d.command_line = Some("sleep 100".into());
        assert!(matches(&d, &info("sleep", "sleep 100")));
        assert!(!matches(&d, &info("sleep", "sleep 1000")));
        assert!(!matches(&d, &info("sleep", "sleep 100 200")));
    }

    #[test]
    fn initial_matches_the_first_words_and_partial_a_run_of_words_anywhere() {
        let mut d = def("haproxy");
        d.command_line = Some("haproxy -f /etc/haproxy.cfg".into());
        d.command_match = config::CommandMatch::Initial;
        let full = info("haproxy", "haproxy -f /etc/haproxy.cfg -p /run/haproxy.pid");
        assert!(matches(&d, &full));
        assert!(matches(&d, &info("haproxy", "haproxy -f /etc/haproxy.cfg")));
        // A word is a word: `-f /etc/haproxy.cfg.bak` is not `-f /etc/haproxy.cfg`.
        assert!(!matches(
            &d,
            &info("haproxy", "haproxy -f /etc/haproxy.cfg.bak")
        ));
        assert!(!matches(
            &d,
            &info("haproxy", "haproxy -p /run/haproxy.pid -f /etc/haproxy.cfg")
        ));
        d.command_line = Some("-f /etc/haproxy.cfg".into());
        assert!(!matches(&d, &full), "initial compares from argv[0]");
        d.command_match = config::CommandMatch::Partial;
        assert!(matches(&d, &full));
        assert!(matches(
            &d,
            &info("haproxy", "haproxy -p /run/haproxy.pid -f /etc/haproxy.cfg")
        ));
        // In order and next to each other.
        assert!(!matches(
            &d,
            &info("haproxy", "haproxy /etc/haproxy.cfg -f")
        ));
        assert!(!matches(
            &d,
            &info("haproxy", "haproxy -f -p /etc/haproxy.cfg")
        ));
        d.command_match = config::CommandMatch::Exact;
        assert!(!matches(&d, &full));
    }

    #[test]
    fn counts_follow_updates_and_exits() {
        let mut defs = BTreeMap::new();
        defs.insert("web".to_string(), def("nginx"));
        defs.insert("db".to_string(), def("postgres"));
        let mut m = Matcher::new(defs);
        m.update(10, &info("nginx", "nginx"));
        m.update(11, &info("nginx", "nginx"));
        m.update(12, &info("bash", "bash"));
        assert_eq!(m.counts()["web"], 2);
        assert_eq!(m.counts()["db"], 0);
        // exec into another program stops matching.
        m.update(11, &info("sh", "sh -c x"));
        assert_eq!(m.counts()["web"], 1);
        m.remove(10);
        assert_eq!(m.counts()["web"], 0);
    }

    #[test]
    fn a_process_that_may_still_rewrite_its_command_line_is_read_again() {
        let mut with_line = def("nginx");
        with_line.command_line = Some("nginx: master process /usr/sbin/nginx".into());
        let mut defs = BTreeMap::new();
        defs.insert("web".to_string(), with_line);
        defs.insert("db".to_string(), def("postgres"));
        let m = Matcher::new(defs);
        // Just exec'd, title not set yet: same name, other command line.
        assert!(m.wants_recheck(&info("nginx", "/usr/sbin/nginx")));
        // A name-only definition never needs it, nor does another name.
        assert!(!m.wants_recheck(&info("postgres", "postgres -D x")));
        assert!(!m.wants_recheck(&info("bash", "bash")));
    }

    #[test]
    fn quorum_bounds_and_delays_as_keepalived() {
        let mut d = def("x");
        d.quorum = 2;
        d.quorum_max = Some(3);
        d.terminate_delay = Duration::from_secs(2);
        d.fork_delay = Duration::from_secs(1);
        let t0 = Instant::now();
        let mut s = Standing::new(&d);
        // The first count decides at once, delays or not.
        assert_eq!(s.observe(2, t0), Some(true));
        // Falling below quorum waits terminate_delay.
        assert_eq!(s.observe(1, t0), None);
        assert_eq!(s.deadline(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(s.poll(t0 + Duration::from_secs(1)), None);
        // A recovery in time cancels it.
        assert_eq!(s.observe(2, t0 + Duration::from_secs(1)), None);
        assert_eq!(s.deadline(), None);
        // Above quorum_max is a loss too.
        assert_eq!(s.observe(4, t0), None);
        assert_eq!(s.poll(t0 + Duration::from_secs(2)), Some(false));
        assert_eq!(s.running(), Some(false));
        // Regaining waits fork_delay.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(s.observe(3, t1), None);
        assert_eq!(s.poll(t1 + Duration::from_secs(1)), Some(true));
    }

    fn nl_event(what: u32, data: &[u32]) -> Vec<u8> {
        let mut b = Vec::new();
        let len = (NLMSG_HDRLEN + CN_MSG_LEN + 16 + data.len() * 4) as u32;
        b.extend_from_slice(&len.to_ne_bytes());
        b.extend_from_slice(&[0u8; 12]);
        b.extend_from_slice(&[0u8; CN_MSG_LEN]);
        b.extend_from_slice(&what.to_ne_bytes());
        b.extend_from_slice(&[0u8; 12]);
        for d in data {
            b.extend_from_slice(&d.to_ne_bytes());
        }
        b
    }

    #[test]
    fn events_parse_and_threads_are_skipped() {
        let mut buf = nl_event(PROC_EVENT_FORK, &[1, 1, 50, 50]);
        buf.extend(nl_event(PROC_EVENT_FORK, &[50, 50, 51, 50]));
        buf.extend(nl_event(PROC_EVENT_EXEC, &[50, 50]));
        buf.extend(nl_event(PROC_EVENT_EXIT, &[50, 50, 0, 9, 1, 1]));
        buf.extend(nl_event(PROC_EVENT_EXIT, &[51, 50, 0, 0, 1, 1]));
        assert_eq!(
            parse_events(&buf),
            vec![
                ProcEvent::Fork(50),
                ProcEvent::Changed(50),
                ProcEvent::Exit(50)
            ]
        );
        // Truncated input ends the walk without panicking.
        assert!(parse_events(&buf[..10]).is_empty());
    }
}
