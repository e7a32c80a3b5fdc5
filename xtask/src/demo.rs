//! `cargo xtask demo`: the keepalived tutorial's lb01/lb02 nginx pair, run by vigil in
//! network namespaces, with a client that keeps asking the virtual IP who serves it.
//!
//! The demo is for someone who has never seen vigil: every step says in plain words what
//! it does and what to look for, every number it prints is measured (failover times from
//! a packet capture on the client, outages from the client's own requests) and set next
//! to what the RFC promises. It checks what it shows, so it doubles as a smoke test: a
//! failure says what went wrong, shows the agents' logs and exits non-zero. Whatever
//! happens, including Ctrl-C, the lab is removed before it exits.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use vigil_tests::capture::{Capture, read_pcap};
use vigil_tests::{Host, Lab};

/// Lab tag: namespaces are `vg-demo-<pid>-*`.
const TAG: &str = "demo";
/// The virtual address, TEST-NET-1 in place of the tutorial's 10.0.0.3.
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The tutorial's `advert_int 1`, in seconds (VRRPv2 counts whole seconds).
const ADVERT_INTERVAL: f64 = 1.0;
/// How often the client asks the VIP during a failover, and how long it waits.
const CURL_PERIOD: Duration = Duration::from_millis(100);
const CURL_TIMEOUT: Duration = Duration::from_millis(300);
/// Text width of the narration.
const WIDTH: usize = 92;

/// One load balancer: its host and the vigil running on it.
struct Node {
    name: &'static str,
    priority: u8,
    initial_state: &'static str,
    host: Host,
    config: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    vigil: Option<Proc>,
    nginx: Option<Proc>,
}

// ---------------------------------------------------------------------------------
// Ctrl-C: the lab lives in namespaces that outlive this process unless removed, so a
// signal only raises a flag; every wait in the demo checks it and unwinds through the
// normal error path, where the lab's Drop removes everything.

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn catch_signals() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, handler as libc::sighandler_t) };
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn check_interrupt() -> anyhow::Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps `d`, waking every 50 ms to notice Ctrl-C.
fn pause(d: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupt()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// Polls `cond` every 100 ms until it holds; fails with `what` after `timeout`.
fn wait_for(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        check_interrupt()?;
        if cond()? {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("{what}: not after {:.0} s", timeout.as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------
// Output.

/// Prints a paragraph wrapped to the narration width, indented by two spaces, after a
/// blank line.
fn say(text: &str) {
    println!();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > WIDTH - 2 {
            println!("  {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        println!("  {line}");
    }
}

fn section(n: u32, title: &str) {
    let head = format!("{n}. {title}");
    println!("\n\n{head}\n{}", "-".repeat(head.chars().count()));
}

/// `n` and the noun, plural when `n` is not 1.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Prints a command as typed at a prompt, then its output indented.
fn show(prompt: &str, command: &str, output: &str) {
    println!("    {prompt}$ {command}");
    for l in output.lines() {
        println!("      {l}");
    }
}

fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Seconds from `t0` to `t`, both CLOCK_REALTIME ns.
fn rel(t: u64, t0: u64) -> f64 {
    (t as f64 - t0 as f64) / 1e9
}

/// VRRP's Skew_Time for a priority (RFC 3768 §6.1: (256 - Priority) / 256 s).
fn skew(priority: u8) -> f64 {
    (256.0 - f64::from(priority)) / 256.0 * ADVERT_INTERVAL
}

/// VRRP's Master_Down_Interval (RFC 3768 §6.1: 3 × Advertisement_Interval + Skew_Time).
fn master_down(priority: u8) -> f64 {
    3.0 * ADVERT_INTERVAL + skew(priority)
}

// ---------------------------------------------------------------------------------
// Processes inside the lab.

/// A child process in its own process group (so Ctrl-C on the terminal reaches only
/// the demo, which then tears down in order), killed when dropped.
struct Proc {
    child: Child,
    what: String,
}

impl Proc {
    fn spawn(mut cmd: Command, log: &Path, what: &str) -> anyhow::Result<Self> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("creating log file {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Self {
            child,
            what: what.to_owned(),
        })
    }

    /// Fails if the process has already exited.
    fn alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!("{} exited ({status})", self.what),
            Err(e) => bail!("{}: {e}", self.what),
        }
    }

    /// SIGTERM, then waits up to `timeout` for it to exit.
    fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: plain syscall on our own child's pid, which it still is (not reaped).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > timeout {
                bail!(
                    "{} did not exit within {:.0} s of SIGTERM",
                    self.what,
                    timeout.as_secs_f64()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn vigil_config(node: &Node, bpffs: &Path) -> String {
    format!(
        r#"# {name}: the tutorial's keepalived.conf for {name}, in vigil's TOML,
# with the TEST-NET address 192.0.2.100 in place of 10.0.0.3.
[global]
router_id = "{name}"
control_socket = {socket}
bpf_pin_dir = {bpffs}
# nginx listens on the VIP on both nodes (tutorial section 4), also where it is absent.
nonlocal_bind = true

[instances.group01]
interface = "eth0"
vrid = 51
priority = {priority}
initial_state = "{initial}"
version = 2
advert_interval = 1
auth_pass = "1111"
virtual_addresses = ["{VIP}/24 dev eth0 label eth0:1"]
"#,
        name = node.name,
        socket = toml_str(&node.socket.to_string_lossy()),
        bpffs = toml_str(&bpffs.to_string_lossy()),
        priority = node.priority,
        initial = node.initial_state,
    )
}

/// nginx answering on the VIP with the node's name; every path in the lab directory so
/// it needs nothing of the system's nginx setup.
fn nginx_config(name: &str, dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
worker_processes 1;
pid {d}/{name}-nginx.pid;
error_log {d}/{name}-nginx.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/{name}-nginx-tmp/body;
    proxy_temp_path {d}/{name}-nginx-tmp/proxy;
    fastcgi_temp_path {d}/{name}-nginx-tmp/fastcgi;
    uwsgi_temp_path {d}/{name}-nginx-tmp/uwsgi;
    scgi_temp_path {d}/{name}-nginx-tmp/scgi;
    server {{
        listen {VIP}:80;
        default_type text/plain;
        location / {{ return 200 "{name}\n"; }}
    }}
}}
"#
    )
}

// ---------------------------------------------------------------------------------
// The client's view: curl against the VIP.

/// One request of the client to the VIP.
#[derive(Clone, Debug)]
struct Sample {
    /// When the request started, CLOCK_REALTIME ns.
    at: u64,
    /// The node that answered, or why there was no answer.
    answer: Result<String, String>,
}

fn describe(answer: &Result<String, String>) -> String {
    match answer {
        Ok(node) => format!("answered by {node}"),
        Err(why) => format!("no answer ({why})"),
    }
}

/// One `curl http://VIP/` from the client.
fn curl(client: &Host, timeout: Duration) -> Result<String, String> {
    let out = client
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            &format!("{:.1}", timeout.as_secs_f64()),
        ])
        .arg(format!("http://{VIP}/"))
        .stdin(Stdio::null())
        .process_group(0)
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    // curl's exit codes for what a failover can do to a request, in words.
    Err(match out.status.code() {
        Some(28) => format!("timed out after {} ms", timeout.as_millis()),
        Some(7) => "connection refused".to_owned(),
        Some(56) => "connection reset".to_owned(),
        _ => {
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            if msg.is_empty() {
                format!("curl {}", out.status)
            } else {
                msg
            }
        }
    })
}

/// The client asking the VIP every [`CURL_PERIOD`] on a thread, with the answers
/// printed as they change.
struct CurlLoop {
    stop: Arc<AtomicBool>,
    rx: mpsc::Receiver<Sample>,
    thread: Option<JoinHandle<()>>,
    samples: Vec<Sample>,
    /// The event the printed times count from; nothing is printed before it.
    t0: Option<u64>,
    last_printed: Option<Result<String, String>>,
}

impl CurlLoop {
    fn start(client: &Host) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (client, flag) = (client.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) && !interrupted() {
                let started = Instant::now();
                let at = realtime_ns();
                let answer = curl(&client, CURL_TIMEOUT);
                if tx.send(Sample { at, answer }).is_err() {
                    break;
                }
                std::thread::sleep(CURL_PERIOD.saturating_sub(started.elapsed()));
            }
        });
        Self {
            stop,
            rx,
            thread: Some(thread),
            samples: Vec::new(),
            t0: None,
            last_printed: None,
        }
    }

    /// Takes in new answers, printing each change once the event time is set.
    fn pump(&mut self) {
        while let Ok(s) = self.rx.try_recv() {
            self.take(s);
        }
    }

    fn take(&mut self, s: Sample) {
        if let Some(t0) = self.t0
            && self.last_printed.as_ref() != Some(&s.answer)
        {
            println!(
                "    {:+6.2} s  client: {}",
                rel(s.at, t0),
                describe(&s.answer)
            );
            self.last_printed = Some(s.answer.clone());
        }
        self.samples.push(s);
    }

    /// Sums up the answers before `t0`, then prints `event` as time zero of what follows
    /// (requests that started after `t0` but ended before this call print after it).
    fn mark(&mut self, t0: u64, event: &str) {
        let (before, after): (Vec<Sample>, Vec<Sample>) =
            self.rx.try_iter().partition(|s| s.at < t0);
        self.samples.extend(before);
        let n = self.samples.len();
        let mut answers: Vec<&Result<String, String>> = Vec::new();
        for s in &self.samples {
            if !answers.contains(&&s.answer) {
                answers.push(&s.answer);
            }
        }
        let list: Vec<String> = answers.iter().map(|a| describe(a)).collect();
        println!(
            "    {:>6}    client: {} so far, {}",
            "before",
            count(n, "request"),
            list.join(", ")
        );
        println!("    {:+6.2} s  {event}", 0.0);
        self.last_printed = self.samples.last().map(|s| s.answer.clone());
        self.t0 = Some(t0);
        for s in after {
            self.take(s);
        }
    }

    /// Waits up to `timeout` for an answer from `node` at or after `since`.
    fn wait_answer(&mut self, node: &str, since: u64, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("the client getting an answer from {node}");
        wait_for(timeout, &what, || {
            self.pump();
            Ok(self
                .samples
                .iter()
                .any(|s| s.at >= since && s.answer.as_deref() == Ok(node)))
        })
        .map(|_| ())
    }

    /// Keeps going for `d`, printing, then stops and returns every answer.
    fn finish(mut self, d: Duration) -> anyhow::Result<Vec<Sample>> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            check_interrupt()?;
            self.pump();
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.pump();
        println!(
            "    ({} in all, one every {} ms, each waiting at most {} ms)",
            count(self.samples.len(), "request"),
            CURL_PERIOD.as_millis(),
            CURL_TIMEOUT.as_millis()
        );
        Ok(std::mem::take(&mut self.samples))
    }
}

impl Drop for CurlLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the client saw of a switch from one node to `new`: the last answer before the
/// first answer from `new`, and the requests that failed in between.
struct Gap {
    last_before: Sample,
    first_new: Sample,
    failed: usize,
    /// The first request that got no answer, if any did.
    first_failed: Option<Sample>,
}

impl Gap {
    /// How long the client went without an answer: from its first request that got none
    /// to its first answered by the new node. Its error is about one request's time.
    fn outage(&self) -> Option<f64> {
        let first = self.first_failed.as_ref()?;
        Some(rel(self.first_new.at, first.at))
    }
}

fn gap(samples: &[Sample], since: u64, new: &str) -> Option<Gap> {
    let first = samples
        .iter()
        .position(|s| s.at >= since && s.answer.as_deref() == Ok(new))?;
    let last_ok = samples[..first].iter().rposition(|s| s.answer.is_ok())?;
    Some(Gap {
        last_before: samples[last_ok].clone(),
        first_new: samples[first].clone(),
        failed: samples[last_ok + 1..first].len(),
        first_failed: samples
            .get(last_ok + 1)
            .filter(|_| last_ok + 1 < first)
            .cloned(),
    })
}

fn print_gap(g: &Gap, t0: u64) {
    if let (Some(secs), Some(first_failed)) = (g.outage(), &g.first_failed) {
        say(&format!(
            "The client could not reach the VIP for about {secs:.1} s: from its first \
             request that got no answer, at {:+.2} s, to the first one {}, at {:+.2} s; {} \
             failed. (It asks every {} ms and gives up after {} ms, so this is good to \
             about 0.3 s.)",
            rel(first_failed.at, t0),
            describe(&g.first_new.answer),
            rel(g.first_new.at, t0),
            count(g.failed, "request"),
            CURL_PERIOD.as_millis(),
            CURL_TIMEOUT.as_millis(),
        ));
    } else {
        say(&format!(
            "The client never went without an answer: {} at {:+.2} s, {} at {:+.2} s.",
            describe(&g.last_before.answer),
            rel(g.last_before.at, t0),
            describe(&g.first_new.answer),
            rel(g.first_new.at, t0),
        ));
    }
}

// ---------------------------------------------------------------------------------
// The wire's view: VRRP adverts in the client's capture.

/// One VRRP advertisement seen by the client.
#[derive(Clone, Copy, Debug)]
struct Advert {
    at: u64,
    src: Ipv4Addr,
    priority: u8,
}

/// VRRP adverts for our VRID in an Ethernet capture; anything else is skipped.
fn adverts(pcap: &Path) -> anyhow::Result<Vec<Advert>> {
    let mut out = Vec::new();
    for p in read_pcap(pcap)? {
        let d = &p.data;
        // Ethernet II with IPv4 (no VLAN on the lab bridge).
        if d.len() < 14 + 20 || d[12..14] != [0x08, 0x00] {
            continue;
        }
        let ihl = usize::from(d[14] & 0x0f) * 4;
        let vrrp = 14 + ihl;
        if d[14 + 9] != 112 || d.len() < vrrp + 3 || d[vrrp + 1] != 51 {
            continue;
        }
        out.push(Advert {
            at: p.ts_ns,
            src: Ipv4Addr::new(d[26], d[27], d[28], d[29]),
            priority: d[vrrp + 2],
        });
    }
    Ok(out)
}

fn print_advert(a: &Advert, t0: u64, name: &str, note: &str) {
    println!(
        "    {:+8.3} s  {} ({name}) -> 224.0.0.18  VRRPv2 vrid 51 priority {:<3}  {note}",
        rel(a.at, t0),
        a.src,
        a.priority
    );
}

// ---------------------------------------------------------------------------------
// The demo.

/// `cargo xtask demo`.
pub fn run() -> anyhow::Result<()> {
    // Said before the build, not after minutes of it.
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the demo needs root: it makes network namespaces and attaches XDP programs \
             (try `sudo -E cargo xtask demo`)"
        );
    }
    crate::setup::ensure()?;
    // --quiet: the agent's build script repeats the XDP program's build log as warnings
    // on every run, which would bury the demo's first lines.
    eprintln!(
        "xtask: building target/release/vigil (the first build takes several minutes, \
         later ones seconds)"
    );
    crate::run(crate::cargo().args(["build", "--release", "-p", "vigil", "--quiet"]))?;
    let bin = crate::root().join("target/release/vigil");
    for tool in ["nginx", "curl", "tcpdump", "ss"] {
        let found = Command::new("sh")
            .args([
                "-c",
                &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
            ])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            bail!("{tool} is missing; `cargo xtask setup` installs it");
        }
    }
    catch_signals();
    intro();
    // Lab::new also removes the namespaces of earlier demos that died without cleaning up.
    let mut lab = Lab::new(TAG, &["lb01", "lb02", "client"])
        .context("making the lab's namespaces (this needs root)")?;
    let prefix = lab
        .switch()
        .strip_suffix("-sw")
        .unwrap_or(lab.switch())
        .to_owned();
    let dir = lab.dir.clone();
    let result = play(&mut lab, &bin);
    if interrupted() {
        println!("\nInterrupted: removing the lab.");
    } else if let Err(e) = &result {
        println!("\nThe demo failed: {e:#}");
        print_logs(&dir);
    }
    cleanup(lab, &prefix)?;
    match result {
        Err(_) if interrupted() => bail!("interrupted; the lab has been removed"),
        r => r,
    }
}

fn intro() {
    println!("\nvigil demo: the keepalived tutorial's load-balancer pair, run by vigil");
    println!("{}", "=".repeat(70));
    say(
        "Two load balancers, lb01 and lb02, share one virtual IP address (the VIP), \
         192.0.2.100; clients only ever talk to the VIP. vigil runs on both. At any moment \
         one of them, the MASTER, holds the VIP and says so every second with a VRRP \
         advertisement (a multicast packet to 224.0.0.18). The other, the BACKUP, listens; \
         when the adverts stop, it takes the VIP over.",
    );
    say(
        "This demo builds that setup in network namespaces on this machine, then breaks it \
         on purpose (a cut cable, a stopped agent) while a client keeps asking the VIP who \
         answers, and measures how long each failover took, with and without BFD. It takes \
         about a minute and removes everything it made when it ends, also on Ctrl-C.",
    );
}

fn play(lab: &mut Lab, bin: &Path) -> anyhow::Result<()> {
    section(1, "Setting up");
    let bpffs = lab.bpffs().context("mounting a bpffs for vigil's maps")?;
    let dir = lab.dir.clone();
    say(
        "Three hosts, each a network namespace with one interface, eth0, plugged into a \
         shared bridge that plays the switch:",
    );
    for h in &lab.hosts {
        println!("    {:<7} {:<13} namespace {}", h.name, h.ipv4, h.ns);
    }
    say(&format!(
        "Configs, logs, control sockets and the packet capture go to {} (called $LAB \
         below). Commands shown as `lb01$ ...` run inside lb01's namespace, i.e. `ip \
         netns exec <namespace> ...`.",
        dir.display()
    ));

    let mut nodes = Vec::new();
    for (name, priority, initial_state) in [("lb01", 150, "master"), ("lb02", 100, "backup")] {
        nodes.push(Node {
            name,
            priority,
            initial_state,
            host: lab.host(name).clone(),
            config: dir.join(format!("{name}.toml")),
            socket: dir.join(format!("{name}.sock")),
            log: dir.join(format!("{name}.log")),
            vigil: None,
            nginx: None,
        });
    }
    let client = lab.host("client").clone();
    for n in &nodes {
        std::fs::write(&n.config, vigil_config(n, &bpffs))
            .with_context(|| format!("writing {}", n.config.display()))?;
        let out = Command::new(bin)
            .args(["check", "-c"])
            .arg(&n.config)
            .output()
            .context("running vigil check")?;
        if !out.status.success() {
            bail!(
                "vigil check rejects {}: {}{}",
                n.config.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    say(
        "lb01's configuration ($LAB/lb01.toml) is the tutorial's keepalived.conf for lb01, \
         written in vigil's TOML: instance group01, VRID 51, VRRP version 2 with password \
         1111, an advert every second, priority 150:",
    );
    let text = std::fs::read_to_string(&nodes[0].config)?;
    for l in text.lines() {
        println!("    | {l}");
    }
    say(
        "lb02's ($LAB/lb02.toml) differs only in router_id = \"lb02\", priority = 100 and \
         initial_state = \"backup\". `vigil check` accepts both.",
    );

    say(
        "Starting tcpdump on the client, capturing VRRP only: the failover times below are \
         read from it, as the wire saw them.",
    );
    let pcap = dir.join("client-vrrp.pcap");
    let capture = Capture::start(&client, "eth0", "vrrp", &pcap)?;

    say(&format!(
        "Starting `vigil run` on lb01 and lb02 (logs in $LAB/lb01.log and $LAB/lb02.log). \
         Both begin as BACKUP and wait for a master for 3 advert intervals plus a skew \
         that is shorter the higher the priority: lb01 waits {:.2} s, lb02 {:.2} s. So \
         lb01 becomes MASTER first, and lb02, hearing it, stays BACKUP.",
        master_down(150),
        master_down(100)
    ));
    for n in nodes.iter_mut() {
        let mut cmd = n.host.command(&bin.to_string_lossy());
        cmd.args(["run", "-c"]).arg(&n.config);
        n.vigil = Some(Proc::spawn(cmd, &n.log, &format!("vigil on {}", n.name))?);
    }
    let started = Instant::now();
    wait_for(
        Duration::from_secs(10),
        "lb01 MASTER and lb02 BACKUP",
        || {
            for n in nodes.iter_mut() {
                if let Some(p) = n.vigil.as_mut() {
                    p.alive()?;
                }
            }
            let lb01 = nodes[0].host.ipv4.to_string();
            // lb02 counts as settled once it names lb01 as its master, as step 2 says.
            Ok(state(bin, &mut nodes[0]).is_ok_and(|s| s.0 == "MASTER")
                && state(bin, &mut nodes[1])
                    .is_ok_and(|s| s.0 == "BACKUP" && s.1.as_deref() == Some(lb01.as_str())))
        },
    )?;
    say(&format!(
        "lb01 is MASTER {:.1} s after the start, and lb02 is BACKUP.",
        started.elapsed().as_secs_f64()
    ));

    say(
        "Starting nginx on both load balancers. As in the tutorial (section 4) it listens \
         on the VIP, 192.0.2.100:80, on both nodes, which works on the node without the VIP \
         because vigil's `nonlocal_bind = true` set net.ipv4.ip_nonlocal_bind. Each nginx \
         answers with its node's name, so the client's curl shows which node served it.",
    );
    for n in nodes.iter_mut() {
        let conf = dir.join(format!("{}-nginx.conf", n.name));
        std::fs::write(&conf, nginx_config(n.name, &dir))?;
        std::fs::create_dir_all(dir.join(format!("{}-nginx-tmp", n.name)))?;
        let log = dir.join(format!("{}-nginx.out", n.name));
        let mut cmd = n.host.command("nginx");
        // -e: the early error log, before the config is read, also stays in the lab.
        cmd.arg("-e")
            .arg(dir.join(format!("{}-nginx.log", n.name)))
            .arg("-c")
            .arg(&conf);
        n.nginx = Some(Proc::spawn(cmd, &log, &format!("nginx on {}", n.name))?);
    }
    for n in nodes.iter_mut() {
        let what = format!("nginx on {} listening on {VIP}:80", n.name);
        let host = n.host.clone();
        wait_for(Duration::from_secs(5), &what, || {
            if let Some(p) = n.nginx.as_mut() {
                p.alive()?;
            }
            let out = host.exec(&["ss", "-Hltn"])?;
            Ok(String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}:80")))
        })?;
    }

    section(2, "Normal operation: lb01 holds the VIP");
    show_status(bin, &nodes)?;
    say(
        "lb01 is MASTER (its last transition says why); lb02 is BACKUP and names lb01, \
         192.0.2.11, as the master it hears. RX and TX count adverts received and sent.",
    );
    show_addresses(&nodes, Some("lb01"))?;
    say(
        "The VIP is on lb01's eth0 only, with the tutorial's label eth0:1 (what ifconfig \
         shows as an alias).",
    );
    let answer = curl(&client, Duration::from_secs(2));
    show(
        "client",
        &format!("curl http://{VIP}/"),
        answer.as_deref().unwrap_or_else(|e| e),
    );
    if answer.as_deref() != Ok("lb01") {
        bail!("the client should reach lb01 on the VIP; got {answer:?}");
    }
    say("The client reaches the VIP, and lb01 answers.");

    section(3, "lb01 loses its network: lb02 takes over");
    say(&format!(
        "The client now asks the VIP every {} ms. Then lb01's cable is cut: its port on the \
         switch goes down. lb02 stops hearing lb01's adverts; after Master_Down_Interval \
         = 3 × 1 s + (256 - 100)/256 s = {:.2} s of silence it becomes MASTER, adds the \
         VIP and announces it with gratuitous ARP, so the client's traffic goes to lb02. \
         (lb01 sees its link down too, goes to FAULT and drops the VIP itself.)",
        CURL_PERIOD.as_millis(),
        master_down(100)
    ));
    let mut requests = CurlLoop::start(&client);
    pause(Duration::from_secs(1))?;
    let cut = realtime_ns();
    lab.set_link("lb01", false)?;
    requests.mark(cut, "lb01's switch port goes down");
    requests.wait_answer("lb02", cut, Duration::from_secs(10))?;
    wait_for(Duration::from_secs(3), "lb02 MASTER", || {
        Ok(state(bin, &mut nodes[1])?.0 == "MASTER")
    })?;
    let samples = requests.finish(Duration::from_secs(1))?;
    println!();
    show_status(bin, &nodes)?;
    show_addresses(&nodes, Some("lb02"))?;
    say(
        "lb02 is MASTER and holds the VIP; lb01, cut off, is in FAULT (link down) and has \
         removed the VIP from its own interface, so it will not claim it when the link \
         returns.",
    );
    let ads = adverts(&pcap)?;
    let first_new = ads
        .iter()
        .find(|a| a.at >= cut && a.src == nodes[1].host.ipv4 && a.priority > 0)
        .copied()
        .context("the capture has no advert from lb02 after the cut")?;
    let last_old = ads
        .iter()
        .rfind(|a| a.at < first_new.at && a.src == nodes[0].host.ipv4)
        .copied()
        .context("the capture has no advert from lb01 before lb02's")?;
    let takeover_cut = rel(first_new.at, last_old.at);
    say("From the client's capture:");
    print_advert(&last_old, cut, "lb01", "lb01's last advert before the cut");
    print_advert(&first_new, cut, "lb02", "lb02's first advert: it is MASTER");
    verdict(
        "lb02 took over",
        "after lb01's last advert",
        takeover_cut,
        master_down(100),
        "3 × 1 s + (256 - 100)/256 s",
    );
    say(&format!(
        "lb02's timer counts from lb01's last advert, which went out {:.3} s before the \
         cut, so lb02 took over {:.3} s after the cut itself.",
        -rel(last_old.at, cut),
        rel(first_new.at, cut)
    ));
    let gap_cut = gap(&samples, cut, "lb02");
    if let Some(g) = &gap_cut {
        print_gap(g, cut);
    }

    section(4, "lb01's link comes back: lb01 preempts");
    say(&format!(
        "lb01's switch port comes back up. lb01 leaves FAULT as BACKUP and hears lb02's \
         adverts, but with priority 100 < 150 and preemption on (the default, as in \
         keepalived) it ignores them. After its own Master_Down_Interval, {:.2} s, it \
         becomes MASTER again; lb02 hears the higher priority and steps back to BACKUP.",
        master_down(150)
    ));
    let mut requests = CurlLoop::start(&client);
    pause(Duration::from_millis(500))?;
    let heal = realtime_ns();
    lab.set_link("lb01", true)?;
    requests.mark(heal, "lb01's switch port comes back up");
    requests.wait_answer("lb01", heal, Duration::from_secs(10))?;
    wait_for(
        Duration::from_secs(3),
        "lb01 MASTER and lb02 BACKUP",
        || Ok(state(bin, &mut nodes[0])?.0 == "MASTER" && state(bin, &mut nodes[1])?.0 == "BACKUP"),
    )?;
    let samples = requests.finish(Duration::from_secs(1))?;
    println!();
    show_status(bin, &nodes)?;
    show_addresses(&nodes, Some("lb01"))?;
    let answer = curl(&client, Duration::from_secs(2));
    show(
        "client",
        &format!("curl http://{VIP}/"),
        answer.as_deref().unwrap_or_else(|e| e),
    );
    if answer.as_deref() != Ok("lb01") {
        bail!("after preemption the client should reach lb01; got {answer:?}");
    }
    let ads = adverts(&pcap)?;
    let back = ads
        .iter()
        .find(|a| a.at >= heal && a.src == nodes[0].host.ipv4 && a.priority > 0)
        .copied()
        .context("the capture has no advert from lb01 after the link came back")?;
    say("From the client's capture:");
    print_advert(
        &back,
        heal,
        "lb01",
        "lb01's first advert after the link came back",
    );
    let preempt = rel(back.at, heal);
    say(&format!(
        "lb01 took the VIP back {preempt:.2} s after its link came up: its {:.2} s \
         Master_Down_Interval plus the moment the kernel took to report the link up.",
        master_down(150)
    ));
    let gap_heal = gap(&samples, heal, "lb01");
    if let Some(g) = &gap_heal {
        print_gap(g, heal);
        if g.failed > 0 {
            say(
                "A request in flight while the VIP moves can fail: its TCP connection was \
                 with lb02's nginx, and lb01, the new holder, resets a connection it knows \
                 nothing of. The next request goes to lb01, which announced the VIP with \
                 gratuitous ARP.",
            );
        }
    }

    section(
        5,
        "lb01 is stopped (SIGTERM): lb02 takes over after Skew_Time",
    );
    say(&format!(
        "Now the planned case, e.g. lb01 going down for maintenance: `systemctl stop vigil` \
         sends SIGTERM. vigil on lb01 sends a last advert with priority 0 (\"I am leaving\") \
         and removes the VIP. lb02 does not wait for three missed adverts then, only its \
         Skew_Time, (256 - 100)/256 s = {:.2} s.",
        skew(100)
    ));
    let mut requests = CurlLoop::start(&client);
    pause(Duration::from_millis(500))?;
    let stop = realtime_ns();
    let status = nodes[0]
        .vigil
        .as_mut()
        .context("vigil on lb01 is not running")?
        .terminate(Duration::from_secs(5))?;
    let exited = realtime_ns();
    if !status.success() {
        bail!("vigil on lb01 should exit 0 after SIGTERM; it exited with {status}");
    }
    requests.mark(
        stop,
        &format!(
            "SIGTERM to vigil on lb01 (it exited, status 0, within {:.2} s)",
            rel(exited, stop)
        ),
    );
    requests.wait_answer("lb02", stop, Duration::from_secs(5))?;
    wait_for(Duration::from_secs(3), "lb02 MASTER", || {
        Ok(state(bin, &mut nodes[1])?.0 == "MASTER")
    })?;
    let samples = requests.finish(Duration::from_secs(1))?;
    println!();
    show_status(bin, &nodes[1..])?;
    show_addresses(&nodes, Some("lb02"))?;
    let ads = adverts(&pcap)?;
    let bye = ads
        .iter()
        .find(|a| a.at >= stop && a.src == nodes[0].host.ipv4 && a.priority == 0)
        .copied()
        .context("the capture has no priority-0 advert from lb01 after SIGTERM")?;
    let first = ads
        .iter()
        .find(|a| a.at > bye.at && a.src == nodes[1].host.ipv4 && a.priority > 0)
        .copied()
        .context("the capture has no advert from lb02 after lb01's priority 0")?;
    say("From the client's capture:");
    print_advert(&bye, stop, "lb01", "lb01's goodbye: priority 0");
    print_advert(&first, stop, "lb02", "lb02's first advert: it is MASTER");
    let takeover_stop = rel(first.at, bye.at);
    verdict(
        "lb02 took over",
        "after lb01's priority-0 advert",
        takeover_stop,
        skew(100),
        "Skew_Time (256 - 100)/256 s",
    );
    let gap_stop = gap(&samples, stop, "lb02");
    if let Some(g) = &gap_stop {
        print_gap(g, stop);
    }

    section(
        6,
        "The same cable cut with BFD: lb02 takes over in tens of milliseconds",
    );
    say(&format!(
        "Adverts stay at one a second, plain VRRP on the wire. Each node's instance gets one \
         more line, `bfd = {{ interval = \"10ms\", multiplier = 3 }}`: lb02 learns lb01 from \
         its adverts and runs a BFD session to it (UDP port 3784, a packet every 10 ms each \
         way). When 3 in a row are missing (30 ms), lb02, the Backup that would win, takes \
         over at once instead of waiting out the {:.2} s Master_Down_Interval. Restarting \
         both agents with that line:",
        master_down(100)
    ));
    nodes[1]
        .vigil
        .as_mut()
        .context("vigil on lb02 is not running")?
        .terminate(Duration::from_secs(5))?;
    for n in nodes.iter_mut() {
        let text = vigil_config(n, &bpffs) + "bfd = { interval = \"10ms\", multiplier = 3 }\n";
        std::fs::write(&n.config, text)?;
        let mut cmd = n.host.command(&bin.to_string_lossy());
        cmd.args(["run", "-c"]).arg(&n.config);
        n.vigil = Some(Proc::spawn(cmd, &n.log, &format!("vigil on {}", n.name))?);
    }
    wait_for(
        Duration::from_secs(15),
        "lb01 MASTER, lb02 BACKUP, BFD sessions Up",
        || {
            for n in nodes.iter_mut() {
                if let Some(p) = n.vigil.as_mut() {
                    p.alive()?;
                }
            }
            Ok(state(bin, &mut nodes[0]).is_ok_and(|s| s.0 == "MASTER")
                && state(bin, &mut nodes[1]).is_ok_and(|s| s.0 == "BACKUP")
                && bfd_up(bin, &nodes[0])
                && bfd_up(bin, &nodes[1]))
        },
    )?;
    show_status(bin, &nodes)?;
    say(
        "Both sessions are Up with a 30 ms detection time (3 × 10 ms). Cutting lb01's cable \
         again, the client asking the VIP as before:",
    );
    let mut requests = CurlLoop::start(&client);
    pause(Duration::from_secs(1))?;
    let cut_bfd = realtime_ns();
    lab.set_link("lb01", false)?;
    requests.mark(cut_bfd, "lb01's switch port goes down");
    requests.wait_answer("lb02", cut_bfd, Duration::from_secs(10))?;
    wait_for(Duration::from_secs(3), "lb02 MASTER", || {
        Ok(state(bin, &mut nodes[1])?.0 == "MASTER")
    })?;
    let samples = requests.finish(Duration::from_secs(1))?;
    println!();
    show_status(bin, &nodes[1..])?;
    let ads = adverts(&pcap)?;
    let first_bfd = ads
        .iter()
        .find(|a| a.at >= cut_bfd && a.src == nodes[1].host.ipv4 && a.priority > 0)
        .copied()
        .context("the capture has no advert from lb02 after the second cut")?;
    say("From the client's capture:");
    print_advert(
        &first_bfd,
        cut_bfd,
        "lb02",
        "lb02's first advert: it is MASTER",
    );
    let takeover_bfd = rel(first_bfd.at, cut_bfd);
    say(&format!(
        "lb02 took over {:.0} ms after the cut, against {:.2} s for the RFC's timer with \
         the same 1 s adverts: its session's 30 ms detection time, plus up to one 10 ms \
         packet interval (the cut falls between two packets).",
        takeover_bfd * 1000.0,
        master_down(100)
    ));
    if takeover_bfd > 0.2 {
        bail!(
            "BFD-assisted takeover took {takeover_bfd:.3} s; it should take tens of milliseconds"
        );
    }
    let gap_bfd = gap(&samples, cut_bfd, "lb02");
    if let Some(g) = &gap_bfd {
        print_gap(g, cut_bfd);
    }
    lab.set_link("lb01", true)?;

    section(7, "Summary");
    let outage = |g: &Option<Gap>| match g.as_ref().map(Gap::outage) {
        Some(Some(secs)) => format!("about {secs:.1} s"),
        Some(None) => "never".to_owned(),
        None => "not measured".to_owned(),
    };
    println!(
        "    {:<14} {:<11} {:<31} {:<10} client had no answer",
        "what happened", "new MASTER", "took over after", "RFC timer"
    );
    let rows = [
        (
            "cable cut",
            "lb02",
            format!("{takeover_cut:.3} s (lb01's last advert)"),
            format!("{:.3} s", master_down(100)),
            outage(&gap_cut),
        ),
        (
            "cut, with BFD",
            "lb02",
            format!("{takeover_bfd:.3} s (the cut)"),
            format!("{:.3} s", master_down(100)),
            outage(&gap_bfd),
        ),
        (
            "link restored",
            "lb01",
            format!("{preempt:.3} s (link up)"),
            format!("{:.3} s", master_down(150)),
            outage(&gap_heal),
        ),
        (
            "SIGTERM",
            "lb02",
            format!("{takeover_stop:.3} s (lb01's priority 0)"),
            format!("{:.3} s", skew(100)),
            outage(&gap_stop),
        ),
    ];
    for (what, who, after, rfc, client) in rows {
        println!("    {what:<14} {who:<11} {after:<31} {rfc:<10} {client}");
    }
    say(
        "To run this pair for real, see packaging/examples/lb01.toml and lb02.toml, and \
         `vigil import-keepalived` to convert an existing keepalived.conf.",
    );

    section(8, "Cleaning up");
    let status = nodes[1]
        .vigil
        .as_mut()
        .context("vigil on lb02 is not running")?
        .terminate(Duration::from_secs(5))?;
    if !status.success() {
        bail!("vigil on lb02 should exit 0 after SIGTERM; it exited with {status}");
    }
    let _ = capture.stop();
    say("vigil on lb02 stopped (SIGTERM, exit 0), nginx and tcpdump stopped.");
    Ok(())
}

/// Whether every BFD session of a node is Up, from `vigil status --json`.
fn bfd_up(bin: &Path, node: &Node) -> bool {
    let Ok(out) = node
        .host
        .command(&bin.to_string_lossy())
        .args(["status", "--json", "--socket"])
        .arg(&node.socket)
        .output()
    else {
        return false;
    };
    let Ok(status) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return false;
    };
    status["bfd"]
        .as_array()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|b| b["state"] == "Up"))
}

/// Prints how a measured time compares with the RFC's.
fn verdict(what: &str, after: &str, measured: f64, bound: f64, formula: &str) {
    let diff_ms = (measured - bound) * 1000.0;
    let judgement = if diff_ms.abs() <= 50.0 {
        format!("the protocol's timer to within {:.0} ms", diff_ms.abs())
    } else if diff_ms < 0.0 {
        format!("{:.0} ms earlier than the protocol's timer", -diff_ms)
    } else {
        format!("LATE: {diff_ms:.0} ms after the protocol's timer (a busy machine?)")
    };
    say(&format!(
        "{what} {measured:.3} s {after}. The RFC's timer: {formula} = {bound:.3} s. \
         That is {judgement}.",
    ));
}

/// State and master of group01 on a node, from `vigil status --json`; first checks
/// that its vigil still runs, which says more than a refused connection would.
fn state(bin: &Path, node: &mut Node) -> anyhow::Result<(String, Option<String>)> {
    if let Some(p) = node.vigil.as_mut() {
        p.alive()?;
    }
    let out = vigil_tests::run(
        Command::new(bin)
            .args(["status", "--json", "--socket"])
            .arg(&node.socket),
    )?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("vigil status of {} is not JSON", node.name))?;
    let inst = v["instances"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["instance"] == "group01"))
        .with_context(|| format!("vigil status of {} has no group01", node.name))?;
    Ok((
        inst["state"].as_str().unwrap_or("?").to_owned(),
        inst["master"].as_str().map(str::to_owned),
    ))
}

fn show_status(bin: &Path, nodes: &[Node]) -> anyhow::Result<()> {
    for n in nodes {
        let out = vigil_tests::run(
            Command::new(bin)
                .args(["status", "--socket"])
                .arg(&n.socket),
        )
        .with_context(|| format!("vigil status on {}", n.name))?;
        show(
            n.name,
            &format!("vigil status --socket $LAB/{}.sock", n.name),
            &String::from_utf8_lossy(&out.stdout),
        );
    }
    Ok(())
}

/// Shows eth0's IPv4 addresses on each node and checks the VIP is on `holder` only.
fn show_addresses(nodes: &[Node], holder: Option<&str>) -> anyhow::Result<()> {
    for n in nodes {
        let out = n.host.exec(&["ip", "-4", "addr", "show", "dev", "eth0"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let inet: String = text
            .lines()
            .filter(|l| l.trim_start().starts_with("inet "))
            .fold(String::new(), |mut acc, l| {
                let _ = writeln!(acc, "{}", l.trim());
                acc
            });
        show(n.name, "ip -4 addr show dev eth0 | grep inet", &inet);
        let has = inet.contains(&format!("inet {VIP}/"));
        if has != (holder == Some(n.name)) {
            bail!(
                "the VIP should be on {} only, but {} {} it",
                holder.unwrap_or("no node"),
                n.name,
                if has { "has" } else { "lacks" }
            );
        }
    }
    Ok(())
}

fn print_logs(dir: &Path) {
    for name in ["lb01.log", "lb02.log", "lb01-nginx.log", "lb02-nginx.log"] {
        let Ok(text) = std::fs::read_to_string(dir.join(name)) else {
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        println!("\n  last lines of $LAB/{name}:");
        for l in &lines[lines.len().saturating_sub(15)..] {
            println!("    {l}");
        }
    }
}

/// Drops the lab (every process in it, its namespaces, bpffs and files) and checks that
/// nothing of it is left.
fn cleanup(lab: Lab, prefix: &str) -> anyhow::Result<()> {
    let dir = lab.dir.clone();
    drop(lab);
    let left: Vec<String> = vigil_tests::namespaces()
        .into_iter()
        .filter(|ns| ns.starts_with(prefix))
        .collect();
    if !left.is_empty() || dir.exists() {
        bail!(
            "cleanup incomplete: namespaces {left:?} left, lab directory {} {}",
            dir.display(),
            if dir.exists() { "left" } else { "removed" }
        );
    }
    say(&format!(
        "Removed the lab: its namespaces ({prefix}-*, as `ip netns list` confirms), the \
         bpffs mount and {}.",
        dir.display()
    ));
    Ok(())
}
