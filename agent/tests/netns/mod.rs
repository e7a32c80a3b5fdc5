//! Test labs in network namespaces: two namespaces joined by a veth pair, removed on drop
//! (stale ones from crashed runs on start), plus a tcpdump capture and a pcap reader.
//!
//! Namespaces are `vgnet-<pid>-<tag>-a|b`, so test binaries can run side by side; a
//! namespace whose pid is gone is stale. Only TEST-NET addresses are used.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// In lab namespace `a`.
pub const IF_A: &str = "vg0";
/// In lab namespace `b`.
pub const IF_B: &str = "vg1";

/// Whether the tests can run at all: they need root for namespaces and raw sockets.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Skips the calling test (returns early) when not root, saying so.
#[macro_export]
macro_rules! require_root {
    () => {
        if !netns::is_root() {
            eprintln!("skipped: needs root (network namespaces, raw sockets)");
            return;
        }
    };
}

/// Runs a command, panicking with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = output(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and returns its output whatever its exit status.
pub fn output(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes `vgnet-*` namespaces left by test processes that no longer run.
pub fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("vgnet-") else {
            continue;
        };
        let owner = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if owner.is_some_and(pid_alive) {
            continue;
        }
        let _ = output("ip", &["netns", "del", &name]);
    }
}

/// Lab options.
#[derive(Clone, Copy, Debug)]
pub struct LabOptions {
    /// Leave IPv6 duplicate address detection on (the kernel default). Off makes
    /// link-local addresses usable at once.
    pub dad: bool,
}

/// Two namespaces, `a` and `b`, joined by veth `vg0` (in a) — `vg1` (in b), both up,
/// with 192.0.2.1/24 and 192.0.2.2/24.
pub struct Lab {
    /// Namespace a.
    pub a: String,
    /// Namespace b.
    pub b: String,
}

impl Lab {
    /// Builds the lab; `tag` must be unique among the tests of one binary.
    pub fn new(tag: &str, opts: LabOptions) -> Lab {
        remove_stale();
        let pid = std::process::id();
        let lab = Lab {
            a: format!("vgnet-{pid}-{tag}-a"),
            b: format!("vgnet-{pid}-{tag}-b"),
        };
        for ns in [&lab.a, &lab.b] {
            let _ = output("ip", &["netns", "del", ns]);
            run("ip", &["netns", "add", ns]);
            // ip_nonlocal_bind and friends start from the kernel defaults in a new netns;
            // only DAD is tuned here.
            if !opts.dad {
                run(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        ns,
                        "sysctl",
                        "-qw",
                        "net.ipv6.conf.all.accept_dad=0",
                        "net.ipv6.conf.default.accept_dad=0",
                    ],
                );
            }
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        run(
            "ip",
            &[
                "-n", &lab.a, "link", "add", IF_A, "type", "veth", "peer", "name", IF_B, "netns",
                &lab.b,
            ],
        );
        lab.ip_a(&["addr", "add", "192.0.2.1/24", "dev", IF_A]);
        lab.ip_b(&["addr", "add", "192.0.2.2/24", "dev", IF_B]);
        lab.ip_a(&["link", "set", IF_A, "up"]);
        lab.ip_b(&["link", "set", IF_B, "up"]);
        lab
    }

    /// `ip -n a ARGS`.
    pub fn ip_a(&self, args: &[&str]) -> String {
        ip_in(&self.a, args)
    }

    /// `ip -n b ARGS`.
    pub fn ip_b(&self, args: &[&str]) -> String {
        ip_in(&self.b, args)
    }

    /// `ip netns exec NS PROGRAM ARGS`, output whatever the status.
    pub fn exec(&self, ns: &str, program: &str, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", ns, program];
        full.extend_from_slice(args);
        output("ip", &full)
    }

    /// The MAC address of `ifname` in namespace `ns`.
    pub fn mac(&self, ns: &str, ifname: &str) -> [u8; 6] {
        let text = ip_in(ns, &["-o", "link", "show", "dev", ifname]);
        let after = text
            .split("link/ether ")
            .nth(1)
            .unwrap_or_else(|| panic!("no link/ether in {text:?}"));
        parse_mac(&after[..17])
    }

    /// Waits until `ifname` in `ns` has a non-tentative link-local address and returns it.
    pub fn wait_link_local(&self, ns: &str, ifname: &str) -> std::net::Ipv6Addr {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = ip_in(
                ns,
                &["-6", "-o", "addr", "show", "dev", ifname, "scope", "link"],
            );
            for line in text.lines() {
                if line.contains("tentative") {
                    continue;
                }
                if let Some(rest) = line.split("inet6 ").nth(1) {
                    let addr = rest.split('/').next().unwrap_or_default();
                    if let Ok(a) = addr.parse() {
                        return a;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no link-local on {ifname} in {ns}: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = output("ip", &["netns", "del", ns]);
        }
    }
}

/// `ip -n NS ARGS`, panicking on failure.
pub fn ip_in(ns: &str, args: &[&str]) -> String {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    assert_eq!(parts.len(), 6, "not a MAC: {s:?}");
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).unwrap_or_else(|_| panic!("not a MAC: {s:?}"));
    }
    mac
}

/// Runs `f` on a new thread that has joined network namespace `ns`; re-raises its panic.
pub fn in_netns<R: Send + 'static>(ns: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = format!("/run/netns/{ns}");
    let thread = std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: a valid namespace fd; setns only changes this thread's namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    });
    match thread.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs the future made by `f` to completion on a current-thread tokio runtime inside `ns`,
/// so every socket and spawned task belongs to that namespace.
pub fn block_on_in<R, Fut>(ns: &str, f: impl FnOnce() -> Fut + Send + 'static) -> R
where
    R: Send + 'static,
    Fut: std::future::Future<Output = R>,
{
    in_netns(ns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds on any Linux")
            .block_on(f())
    })
}

/// A tcpdump capture running in a namespace, writing a pcap file.
pub struct Capture {
    child: Child,
    path: PathBuf,
}

/// One captured frame with its capture timestamp.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Seconds since the epoch, as tcpdump stamped it.
    pub time: f64,
    /// The bytes from the Ethernet header on.
    pub data: Vec<u8>,
}

impl Capture {
    /// Starts `tcpdump -i IFNAME -c COUNT -w FILE FILTER` in `ns` and waits until it
    /// listens.
    pub fn start(ns: &str, ifname: &str, count: usize, filter: &str) -> Capture {
        let path = std::env::temp_dir().join(format!("{ns}-{ifname}-{}.pcap", unique()));
        let count = count.to_string();
        let path_s = path.to_string_lossy().into_owned();
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", ns, "tcpdump", "-n", "-i", ifname, "-U", "-c", &count,
            ])
            .args(["-w", &path_s, filter])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run tcpdump: {e}"));
        let stderr = child.stderr.take().expect("stderr was piped just above");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr).lines();
            let mut ready = false;
            let mut log = String::new();
            for line in lines.by_ref().map_while(Result::ok) {
                log.push_str(&line);
                log.push('\n');
                if !ready && line.contains("listening on") {
                    ready = true;
                    let _ = tx.send(Ok(()));
                }
            }
            if !ready {
                let _ = tx.send(Err(log));
            }
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(log)) => panic!("tcpdump did not start: {log}"),
            Err(_) => {
                let _ = child.kill();
                panic!("tcpdump did not start within 10 s");
            }
        }
        Capture { child, path }
    }

    /// Waits for tcpdump to reach its count (at most `timeout`, then stops it) and returns
    /// what it captured.
    pub fn finish(&mut self, timeout: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    // SIGINT makes tcpdump flush and close the file cleanly.
                    // SAFETY: signalling our own child by its pid.
                    unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        read_pcap(&self.path)
    }

    /// The pcap file (for tshark).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Reads a classic pcap file (either byte order, micro- or nanosecond stamps).
pub fn read_pcap(path: &Path) -> Vec<Frame> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if bytes.len() < 24 {
        return Vec::new();
    }
    let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let (le, nanos) = match magic {
        0xa1b2_c3d4 => (true, false),
        0xa1b2_3c4d => (true, true),
        0xd4c3_b2a1 => (false, false),
        0x4d3c_b2a1 => (false, true),
        other => panic!("not a pcap file: magic {other:#x}"),
    };
    let word = |at: usize| {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let sec = f64::from(word(at));
        let frac = f64::from(word(at + 4)) / if nanos { 1e9 } else { 1e6 };
        let len = word(at + 8) as usize;
        at += 16;
        if at + len > bytes.len() {
            break;
        }
        frames.push(Frame {
            time: sec + frac,
            data: bytes[at..at + len].to_vec(),
        });
        at += len;
    }
    frames
}

/// Runs tshark on `path` printing `fields` comma-separated, one line per frame; `None`
/// when tshark is not installed.
pub fn tshark_fields(path: &Path, filter: &str, fields: &[&str]) -> Option<Vec<Vec<String>>> {
    let path = path.to_string_lossy();
    let mut args = vec![
        "-r",
        &path,
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "separator=,",
    ];
    for f in fields {
        args.push("-e");
        args.push(f);
    }
    let out = Command::new("tshark")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect(),
    )
}
