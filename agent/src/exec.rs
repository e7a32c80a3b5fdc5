//! Running outside commands — track scripts and notify scripts — without ever blocking
//! the election: each run is a child process in its own process group, as the configured
//! user, with a time limit after which the whole group is killed, and its output captured.

use std::fmt;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// Bytes of a run's output kept for the log; the rest is read and dropped so that a
/// chatty script never blocks on a full pipe.
const OUTPUT_KEEP: usize = 4096;
/// How long to wait for the output pipe to close after the process ended: a background
/// child the script left may hold it open forever.
const OUTPUT_GRACE: Duration = Duration::from_millis(100);

/// Characters that only a shell understands; a command with none of them is run directly.
const SHELL_META: &[char] = &[
    '|', '&', ';', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', '*', '?', '[', ']', '#', '~',
    '=', '%', '{', '}', '\n', '!',
];

/// A command line from the config, ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    text: String,
    argv: Vec<String>,
    shell: bool,
}

impl CommandLine {
    /// Splits `text` on whitespace, or hands it to `/bin/sh -c` when it needs a shell.
    pub fn parse(text: &str) -> Self {
        let text = text.trim().to_owned();
        let shell = text.contains(SHELL_META);
        let argv = if shell {
            Vec::new()
        } else {
            text.split_whitespace().map(str::to_owned).collect()
        };
        Self { text, argv, shell }
    }

    /// Whether it runs through `/bin/sh -c`.
    pub fn uses_shell(&self) -> bool {
        self.shell
    }

    /// Program and arguments, with `extra` appended (as keepalived appends notify's).
    fn program(&self, extra: &[String]) -> (String, Vec<String>) {
        if self.shell {
            // `"$@"` passes the extra arguments through untouched by the shell.
            let mut args = vec!["-c".to_owned()];
            if extra.is_empty() {
                args.push(self.text.clone());
            } else {
                args.push(format!("{} \"$@\"", self.text));
                args.push("sh".to_owned());
                args.extend(extra.iter().cloned());
            }
            ("/bin/sh".to_owned(), args)
        } else {
            let mut it = self.argv.iter().cloned();
            let program = it.next().unwrap_or_default();
            let mut args: Vec<String> = it.collect();
            args.extend(extra.iter().cloned());
            (program, args)
        }
    }
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The user a command runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

static ROOT_WARNED: AtomicBool = AtomicBool::new(false);

/// Resolves the user scripts run as: `Ok(None)` means as the agent itself (root), which
/// is warned about once per process, as keepalived's script security does.
pub fn run_as(user: Option<&str>) -> Result<Option<RunAs>, String> {
    let Some(name) = user else {
        if !ROOT_WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "scripts run as root: set global.script_user (or a script's `user`) to run them unprivileged"
            );
        }
        return Ok(None);
    };
    lookup_user(name).map(Some)
}

/// Looks a user up by name, or takes a numeric uid (its group from the password
/// database when it has an entry there, else a group of the same number).
pub fn lookup_user(name: &str) -> Result<RunAs, String> {
    let numeric = name.parse::<u32>().ok();
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids) to be written into.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = match numeric {
        // SAFETY: pwd, buf and result are valid for the call; buf's length is passed.
        Some(uid) => unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        },
        None => {
            let c = std::ffi::CString::new(name).map_err(|_| format!("bad user name {name:?}"))?;
            // SAFETY: as above; `c` is a valid NUL-terminated string for the call.
            unsafe {
                libc::getpwnam_r(
                    c.as_ptr(),
                    &mut pwd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut result,
                )
            }
        }
    };
    if rc == 0 && !result.is_null() {
        return Ok(RunAs {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        });
    }
    match numeric {
        Some(uid) => Ok(RunAs { uid, gid: uid }),
        None if rc != 0 => Err(format!(
            "cannot look up user {name:?}: {}",
            std::io::Error::from_raw_os_error(rc)
        )),
        None => Err(format!("no user {name:?}")),
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exited with this status.
    Exited(i32),
    /// Killed by this signal (not by us).
    Signalled(i32),
    /// Still running at the time limit: its process group was killed.
    TimedOut(Duration),
    /// Could not be started.
    SpawnFailed(String),
    /// Could not be started because the agent itself is short of file descriptors,
    /// processes or memory: this says nothing about what the script checks.
    Unavailable(String),
}

impl Outcome {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        *self == Outcome::Exited(0)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(c) => write!(f, "exit {c}"),
            Outcome::Signalled(s) => write!(f, "killed by signal {s}"),
            Outcome::TimedOut(t) => {
                write!(
                    f,
                    "timed out after {}, killed",
                    humantime::format_duration(*t)
                )
            }
            Outcome::SpawnFailed(e) => write!(f, "cannot start: {e}"),
            Outcome::Unavailable(e) => write!(f, "not run (agent out of resources): {e}"),
        }
    }
}

/// A finished run.
#[derive(Clone, Debug)]
pub struct Finished {
    /// How it ended.
    pub outcome: Outcome,
    /// Its stdout and stderr, interleaved, at most [`OUTPUT_KEEP`] bytes.
    pub output: String,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Runs `cmd` with `extra` arguments as `user`, killing its process group at `timeout`.
pub async fn run(
    cmd: &CommandLine,
    extra: &[String],
    user: Option<RunAs>,
    timeout: Duration,
) -> Finished {
    let start = Instant::now();
    let finished = |outcome: Outcome| Finished {
        outcome,
        output: String::new(),
        elapsed: start.elapsed(),
    };
    let failed = |e: String| finished(Outcome::SpawnFailed(e));
    // Out of file descriptors, processes or memory: the agent's trouble, not the script's.
    let io_failed = |what: String, e: std::io::Error| {
        let text = format!("{what}: {e}");
        if matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM)
        ) {
            finished(Outcome::Unavailable(text))
        } else {
            finished(Outcome::SpawnFailed(text))
        }
    };
    let (program, args) = cmd.program(extra);
    if program.is_empty() {
        return failed("empty command".to_owned());
    }
    let (read_end, write_end) = match pipe() {
        Ok(p) => p,
        Err(e) => return io_failed("pipe".to_owned(), e),
    };
    let mut child = {
        let write2 = match write_end.try_clone() {
            Ok(w) => w,
            Err(e) => return io_failed("pipe".to_owned(), e),
        };
        let mut c = tokio::process::Command::new(&program);
        c.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(write_end))
            .stderr(Stdio::from(write2))
            // Its own group, so a timeout kills whatever it started too.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(u) = user {
            c.uid(u.uid).gid(u.gid);
        }
        // The command (and with it our copies of the pipe's write end) is dropped once
        // spawned, so the read end sees EOF when the child's copies close.
        match spawn_off_loop(c).await {
            Ok(child) => child,
            Err(e) => return io_failed(program.clone(), e),
        }
    };
    let mut reader = match tokio::net::unix::pipe::Receiver::from_owned_fd(read_end) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::debug!("script output not captured: {e}");
            None
        }
    };
    let mut buf = Vec::new();
    let outcome = {
        let read = read_capped(reader.as_mut(), &mut buf);
        tokio::pin!(read);
        let limit = tokio::time::sleep(timeout);
        tokio::pin!(limit);
        let mut read_done = false;
        let status = loop {
            tokio::select! {
                st = child.wait() => break Some(st),
                () = &mut read, if !read_done => read_done = true,
                () = &mut limit => break None,
            }
        };
        let outcome = match status {
            Some(Ok(st)) => {
                use std::os::unix::process::ExitStatusExt;
                match (st.code(), st.signal()) {
                    (Some(c), _) => Outcome::Exited(c),
                    (None, Some(s)) => Outcome::Signalled(s),
                    (None, None) => Outcome::Exited(-1),
                }
            }
            Some(Err(e)) => Outcome::SpawnFailed(format!("wait: {e}")),
            None => {
                if let Some(pid) = child.id() {
                    // SAFETY: plain syscall; the child is not reaped yet, so its pid (the
                    // group id) cannot have been reused.
                    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                }
                let _ = child.wait().await;
                Outcome::TimedOut(timeout)
            }
        };
        if !read_done {
            let _ = tokio::time::timeout(OUTPUT_GRACE, &mut read).await;
        }
        outcome
    };
    Finished {
        outcome,
        output: String::from_utf8_lossy(&buf).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// Starts `cmd` on a helper thread, never on the calling one. Spawning blocks the parent
/// thread until the child has called exec (the child shares its memory until then, and
/// std waits to report an exec failure), and the child runs at normal priority (the
/// election loop's SCHED_RESET_ON_FORK): on a busy host it waits for a time slice, tens
/// of milliseconds, and a SCHED_FIFO election loop waiting with it would miss its adverts
/// (a Backup with 10 ms adverts takes over after 36 ms). The helper thread is normal
/// priority too, so only it waits.
async fn spawn_off_loop(
    mut cmd: tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    match tokio::task::spawn_blocking(move || cmd.spawn()).await {
        Ok(spawned) => spawned,
        Err(e) => Err(std::io::Error::other(format!("spawning thread: {e}"))),
    }
}

/// Reads until EOF, keeping the first [`OUTPUT_KEEP`] bytes.
async fn read_capped(reader: Option<&mut tokio::net::unix::pipe::Receiver>, out: &mut Vec<u8>) {
    let Some(reader) = reader else {
        return;
    };
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = OUTPUT_KEEP.saturating_sub(out.len());
                out.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Lets through at most `burst` log lines per `window`, and counts the rest.
#[derive(Debug)]
pub struct RateLimit {
    burst: u32,
    window: Duration,
    started: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl RateLimit {
    /// `burst` lines per `window`.
    pub fn new(burst: u32, window: Duration) -> Self {
        Self {
            burst,
            window,
            started: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be logged at `now`; when a new window opens, also how many
    /// lines the last one suppressed (to say so once).
    pub fn allow(&mut self, now: Instant) -> (bool, u64) {
        let mut reported = 0;
        if self
            .started
            .is_none_or(|s| now.duration_since(s) >= self.window)
        {
            self.started = Some(now);
            self.used = 0;
            reported = std::mem::take(&mut self.suppressed);
        }
        if self.used < self.burst {
            self.used += 1;
            (true, reported)
        } else {
            self.suppressed += 1;
            (false, reported)
        }
    }
}

/// Logs a run's output line by line, within `limit`; `who` names the script.
pub fn log_output(who: &str, output: &str, limit: &mut RateLimit) {
    for line in output.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        let (ok, suppressed) = limit.allow(Instant::now());
        if suppressed > 0 {
            tracing::info!("{who}: {suppressed} line(s) of output suppressed");
        }
        if ok {
            tracing::info!("{who}: {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_commands_run_without_a_shell() {
        let c = CommandLine::parse("/usr/bin/test -f /tmp/x");
        assert!(!c.uses_shell());
        assert_eq!(
            c.program(&["a".into()]),
            (
                "/usr/bin/test".to_owned(),
                vec!["-f".into(), "/tmp/x".into(), "a".into()]
            )
        );
    }

    #[test]
    fn metacharacters_need_a_shell_and_extra_args_pass_through() {
        let c = CommandLine::parse("ps -ef | grep [n]ginx");
        assert!(c.uses_shell());
        let (p, args) = c.program(&["INSTANCE".into(), "web".into()]);
        assert_eq!(p, "/bin/sh");
        assert_eq!(args[1], "ps -ef | grep [n]ginx \"$@\"");
        assert_eq!(&args[2..], ["sh", "INSTANCE", "web"]);
    }

    #[test]
    fn rate_limit_counts_what_it_drops() {
        let mut r = RateLimit::new(2, Duration::from_secs(60));
        let t = Instant::now();
        assert_eq!(r.allow(t), (true, 0));
        assert_eq!(r.allow(t), (true, 0));
        assert_eq!(r.allow(t), (false, 0));
        assert_eq!(r.allow(t + Duration::from_secs(61)), (true, 1));
    }

    #[test]
    fn numeric_and_named_users_resolve() {
        assert_eq!(lookup_user("0"), Ok(RunAs { uid: 0, gid: 0 }));
        assert_eq!(lookup_user("root"), Ok(RunAs { uid: 0, gid: 0 }));
        assert!(lookup_user("no-such-user-vigil").is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_hanging_command_is_killed_with_its_children_at_the_timeout() {
        let c = CommandLine::parse("echo started; sleep 30; echo never");
        let f = run(&c, &[], None, Duration::from_millis(200)).await;
        assert_eq!(f.outcome, Outcome::TimedOut(Duration::from_millis(200)));
        assert!(f.elapsed < Duration::from_secs(2), "{:?}", f.elapsed);
        assert_eq!(f.output.trim(), "started");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn exit_status_and_output_are_reported() {
        let c = CommandLine::parse("sh -c exit");
        assert!(!c.uses_shell());
        let f = run(&c, &[], None, Duration::from_secs(5)).await;
        assert_eq!(f.outcome, Outcome::Exited(0));
        let c = CommandLine::parse("echo out; echo err >&2; exit 3");
        let f = run(&c, &[], None, Duration::from_secs(5)).await;
        assert_eq!(f.outcome, Outcome::Exited(3));
        assert!(f.output.contains("out") && f.output.contains("err"));
        let f = run(
            &CommandLine::parse("/nonexistent/x"),
            &[],
            None,
            Duration::from_secs(1),
        )
        .await;
        assert!(matches!(f.outcome, Outcome::SpawnFailed(_)));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_calling_thread_keeps_running_while_a_child_is_slow_to_start() {
        // A child that takes 300 ms between fork and exec, as one waiting for the CPU on
        // a busy host does: the spawn must not hold the calling (election loop) thread
        // for it, so a 10 ms task on the same thread keeps its pace meanwhile.
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(10));
                loop {
                    every.tick().await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        tokio::task::yield_now().await;
        let mut cmd = tokio::process::Command::new("true");
        // SAFETY: the closure only sleeps (nanosleep), which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            });
        }
        let before = ticks.load(Ordering::Relaxed);
        let mut child = spawn_off_loop(cmd).await.expect("spawn true");
        let during = ticks.load(Ordering::Relaxed) - before;
        ticker.abort();
        assert!(child.wait().await.expect("wait").success());
        // 30 ticks when nothing else runs; a loaded test machine may delay some.
        assert!(
            during >= 10,
            "{during} ticks in 300 ms: the spawn held the thread"
        );
    }
}
