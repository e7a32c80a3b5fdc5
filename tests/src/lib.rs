//! The test lab: hosts as network namespaces on one bridge, and the tools tests need
//! around them (commands inside a namespace, crafted frames, captures).
//!
//! Every lab has its own name prefix (`vg-<tag>-<pid>-`), clears what a crashed run of
//! the same tag left behind, and removes everything it made when dropped. Addresses are
//! TEST-NET only: 192.0.2.0/24 and 2001:db8::/64.

pub mod agent;
pub mod bfd;
pub mod bpf;
pub mod capture;
pub mod container;
pub mod frames;
pub mod frr;
pub mod invariant;
pub mod netns;
pub mod vrrpd;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub use netns::{in_netns, monotonic_ns};

/// One host of the lab: a namespace with `eth0` on the lab's bridge.
#[derive(Clone, Debug)]
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// Short name given by the test (`lb01`, `client`, ...).
    pub name: String,
    /// IPv4 address of eth0 (a /24 in 192.0.2.0/24).
    pub ipv4: Ipv4Addr,
    /// IPv6 address of eth0 (a /64 in 2001:db8::/64).
    pub ipv6: Ipv6Addr,
    /// Name of the bridge port (in the switch namespace) this host hangs on.
    pub port: String,
}

/// A set of hosts on one bridge, torn down on drop.
pub struct Lab {
    prefix: String,
    switch: String,
    /// The hosts, in the order they were asked for.
    pub hosts: Vec<Host>,
    children: Vec<Child>,
    mounts: Vec<PathBuf>,
    /// A scratch directory for configs, captures and logs; removed on drop.
    pub dir: PathBuf,
}

/// Polls `f` every 20 ms until it gives a value, and returns it; panics naming `what`
/// if it gives none within `within`.
pub fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command and fails with its stderr when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

fn ip(args: &[&str]) -> anyhow::Result<Output> {
    run(Command::new("ip").args(args))
}

/// Names of the existing network namespaces.
pub fn namespaces() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn delete_namespace(ns: &str) {
    // Processes left inside keep a namespace's interfaces alive; end them first.
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: plain syscall on a pid number.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = Command::new("ip").args(["netns", "delete", ns]).status();
}

/// Removes namespaces of earlier runs of `tag` whose process is gone.
pub fn clear_stale(tag: &str) {
    let start = format!("vg-{tag}-");
    for ns in namespaces() {
        let Some(rest) = ns.strip_prefix(&start) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive || pid == Some(std::process::id() as i32) {
            delete_namespace(&ns);
        }
    }
}

impl Lab {
    /// Builds a lab named after `tag` with one host per name, addressed 192.0.2.11,
    /// .12, ... and 2001:db8::11, ::12, ... in order.
    pub fn new(tag: &str, names: &[&str]) -> anyhow::Result<Self> {
        if names.len() > 80 {
            bail!("at most 80 hosts");
        }
        clear_stale(tag);
        let prefix = format!("vg-{tag}-{}", std::process::id());
        let switch = format!("{prefix}-sw");
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir)?;
        let mut lab = Self {
            prefix: prefix.clone(),
            switch: switch.clone(),
            hosts: Vec::new(),
            children: Vec::new(),
            mounts: Vec::new(),
            dir,
        };
        ip(&["netns", "add", &switch])?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        // No STP delay, no multicast snooping: a plain hub-like switch.
        ip(&[
            "-n",
            &switch,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for (i, name) in names.iter().enumerate() {
            let n = 11 + i as u8;
            let ns = format!("{prefix}-{name}");
            let port = format!("p{i}");
            ip(&["netns", "add", &ns])?;
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])?;
            let v4 = Ipv4Addr::new(192, 0, 2, n);
            let v6: Ipv6Addr = format!("2001:db8::{n}").parse()?;
            // Tentative addresses would make the first seconds of a test flaky.
            let _ = run(Command::new("ip").args([
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ]));
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{v4}/24"), "dev", "eth0"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                "eth0",
                "nodad",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            lab.hosts.push(Host {
                ns,
                name: (*name).to_owned(),
                ipv4: v4,
                ipv6: v6,
                port,
            });
        }
        // Wait for link-local addresses to leave the tentative state.
        let deadline = Instant::now() + Duration::from_secs(5);
        for h in &lab.hosts {
            loop {
                let out = h.exec(&[
                    "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
                ])?;
                let text = String::from_utf8_lossy(&out.stdout);
                if text.contains("fe80") && !text.contains("tentative") {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{}: no usable IPv6 link-local address", h.name);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(lab)
    }

    /// The host with this short name.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in lab {}", self.prefix))
    }

    /// Cuts (`up = false`) or restores a host's link at the switch: the host's own eth0
    /// stays up, as when a cable or switch port fails.
    pub fn set_link(&self, name: &str, up: bool) -> anyhow::Result<()> {
        let port = self.host(name).port.clone();
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &port,
            if up { "up" } else { "down" },
        ])?;
        Ok(())
    }

    /// Cuts (`cut = true`) or heals a host off the switch while every link stays up: the
    /// port leaves the bridge (and joins it again), so no agent sees a carrier change and
    /// each side goes on as if the other had died. A partition, not an unplugged cable: a
    /// router that sees its link go enters Fault and comes back Backup, one that is
    /// partitioned stays Master, and both are Master when the partition heals.
    pub fn set_partitioned(&self, name: &str, cut: bool) -> anyhow::Result<()> {
        let port = self.host(name).port.clone();
        if cut {
            ip(&["-n", &self.switch, "link", "set", &port, "nomaster"])?;
        } else {
            ip(&["-n", &self.switch, "link", "set", &port, "master", "br0"])?;
        }
        Ok(())
    }

    /// Leaves the lab in place after this process ends (for `cargo xtask lab up`).
    pub fn keep(mut self) {
        self.children.clear();
        self.hosts.clear();
        self.switch.clear();
        self.dir = PathBuf::new();
    }

    /// Removes every namespace of labs tagged `tag`, whoever made them.
    pub fn remove_all(tag: &str) -> usize {
        let start = format!("vg-{tag}-");
        let mut n = 0;
        for ns in namespaces().iter().filter(|ns| ns.starts_with(&start)) {
            delete_namespace(ns);
            n += 1;
        }
        n
    }

    /// Mounts a fresh bpffs under the lab's directory (unmounted on drop) and returns
    /// its path: `ip netns exec` hides /sys/fs/bpf, a mount elsewhere is seen everywhere.
    pub fn bpffs(&mut self) -> anyhow::Result<PathBuf> {
        let path = self.dir.join("bpffs");
        std::fs::create_dir_all(&path)?;
        run(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&path))?;
        self.mounts.push(path.clone());
        Ok(path)
    }

    /// The first `N` hosts, cloned, in the order they were asked for:
    /// `let [lb01, lb02] = lab.clone_hosts();`.
    pub fn clone_hosts<const N: usize>(&self) -> [Host; N] {
        std::array::from_fn(|i| self.hosts[i].clone())
    }

    /// Name of the switch namespace holding the bridge.
    pub fn switch(&self) -> &str {
        &self.switch
    }

    /// Keeps a child process to be killed when the lab is dropped.
    pub fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        for h in &self.hosts {
            delete_namespace(&h.ns);
        }
        if !self.switch.is_empty() {
            delete_namespace(&self.switch);
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Host {
    /// A command that runs inside this host's namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }

    /// Runs `argv` inside the namespace and returns its output; fails if it fails.
    pub fn exec(&self, argv: &[&str]) -> anyhow::Result<Output> {
        let (program, args) = argv.split_first().context("empty command")?;
        run(self.command(program).args(args))
    }

    /// Starts `argv` inside the namespace with stdout and stderr piped.
    pub fn spawn(&self, argv: &[&str]) -> anyhow::Result<Child> {
        let (program, args) = argv.split_first().context("empty command")?;
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {argv:?} in {}", self.ns))
    }

    /// The name of the XDP program `bpftool net show dev IFACE` lists on `iface`, if any.
    pub fn xdp_program(&self, iface: &str) -> anyhow::Result<Option<String>> {
        let out = self.exec(&["bpftool", "-j", "net", "show", "dev", iface])?;
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let Some(id) = json[0]["xdp"][0]["id"].as_u64() else {
            return Ok(None);
        };
        let out = self.exec(&["bpftool", "-j", "prog", "show", "id", &id.to_string()])?;
        let prog: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(prog["name"].as_str().map(str::to_owned))
    }

    /// The interface index of `iface` inside the namespace.
    pub fn ifindex(&self, iface: &str) -> anyhow::Result<u32> {
        let out = self.exec(&["cat", &format!("/sys/class/net/{iface}/ifindex")])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    }

    /// The MAC address of `iface`.
    pub fn mac(&self, iface: &str) -> anyhow::Result<[u8; 6]> {
        let out = self.exec(&["cat", &format!("/sys/class/net/{iface}/address")])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut mac = [0u8; 6];
        for (i, part) in text.trim().split(':').enumerate().take(6) {
            mac[i] = u8::from_str_radix(part, 16)?;
        }
        Ok(mac)
    }

    /// The IPv6 link-local address of eth0.
    pub fn link_local(&self) -> anyhow::Result<Ipv6Addr> {
        let out = self.exec(&[
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
        ])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let addr = text
            .split_whitespace()
            .find(|w| w.starts_with("fe80"))
            .and_then(|w| w.split('/').next())
            .context("no link-local address")?;
        Ok(addr.parse()?)
    }

    /// Sends raw Ethernet frames out of `iface`; returns the CLOCK_MONOTONIC time (ns)
    /// just before each send.
    pub fn send_frames(&self, iface: &str, frames: &[Vec<u8>]) -> anyhow::Result<Vec<u64>> {
        netns::send_frames(&self.ns, iface, frames, Duration::ZERO)
    }

    /// Sends frame `i` at `offsets[i]` after the start, at SCHED_FIFO where allowed;
    /// returns the CLOCK_MONOTONIC time (ns) of each send.
    pub fn send_frames_at(
        &self,
        iface: &str,
        frames: &[Vec<u8>],
        offsets: &[Duration],
    ) -> anyhow::Result<Vec<u64>> {
        netns::send_frames_at(&self.ns, iface, frames, offsets)
    }

    /// Like [`Host::send_frames`], pausing `gap` between frames.
    pub fn send_frames_paced(
        &self,
        iface: &str,
        frames: &[Vec<u8>],
        gap: Duration,
    ) -> anyhow::Result<Vec<u64>> {
        netns::send_frames(&self.ns, iface, frames, gap)
    }
}

/// Path of the vigil binary under test: `$VIGIL_BIN`, else the workspace's debug build.
pub fn vigil_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_BIN") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/vigil")
}

/// Whether the tests can make namespaces and load BPF (root); tests that cannot run
/// say so loudly rather than pass quietly.
pub fn require_root() {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this integration test needs root (network namespaces, XDP)");
    }
}
