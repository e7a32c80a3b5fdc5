//! One agent — vigil or Debian's keepalived — on one lab host, with the same VRRP
//! settings written in each one's own configuration language.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vigil_tests::Host;

/// BFD transmit interval of a spec with BFD, ms.
pub const BFD_INTERVAL_MS: u32 = 10;
/// BFD detect multiplier of a spec with BFD.
pub const BFD_MULTIPLIER: u32 = 3;

/// Which implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Impl {
    Vigil,
    Keepalived,
}

impl Impl {
    pub fn name(self) -> &'static str {
        match self {
            Impl::Vigil => "vigil",
            Impl::Keepalived => "keepalived",
        }
    }
}

/// One virtual router as both agents are told about it.
#[derive(Clone, Debug)]
pub struct Spec {
    pub vrid: u8,
    pub priority: u8,
    pub master: bool,
    /// Advertisement interval, ms (a multiple of 10).
    pub interval_ms: u32,
    /// keepalived's `down_timer_adverts` (3 is the RFC's).
    pub down_adverts: u8,
    /// vigil only: BFD-assisted takeover at 10 ms x 3 (keepalived has no counterpart).
    pub bfd: bool,
}

impl Spec {
    fn name(&self) -> String {
        format!("vr{}", self.vrid)
    }

    /// The virtual address: TEST-NET-2, one per VRID.
    fn vip(&self) -> String {
        format!("{}/24", self.vip_addr())
    }

    /// The instance's virtual address.
    pub fn vip_addr(&self) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(198, 51, 100, self.vrid)
    }
}

/// `count` instances, VRIDs 1..=count, all with the same settings.
pub fn specs(
    count: u8,
    priority: u8,
    master: bool,
    interval_ms: u32,
    down_adverts: u8,
) -> Vec<Spec> {
    (1..=count)
        .map(|vrid| Spec {
            vrid,
            priority,
            master,
            interval_ms,
            down_adverts,
            bfd: false,
        })
        .collect()
}

/// Where a lab keeps things an agent needs.
#[derive(Clone, Debug)]
pub struct Place {
    pub host: Host,
    pub dir: PathBuf,
    /// The lab's bpffs (vigil pins its maps there).
    pub bpffs: PathBuf,
    /// The vigil binary.
    pub vigil: PathBuf,
}

/// A running agent.
pub struct Node {
    pub imp: Impl,
    pub host: Host,
    pub log: PathBuf,
    socket: PathBuf,
    vrrp_pid: PathBuf,
    config_path: PathBuf,
    notify: Option<PathBuf>,
    vigil: PathBuf,
    child: Option<Child>,
}

fn vigil_config(place: &Place, specs: &[Spec]) -> String {
    let mut s = vigil_tests::agent::global(&place.host, &place.dir, &place.bpffs, "xdp = \"auto\"");
    for sp in specs {
        s += &format!(
            "\n[instances.{name}]\ninterface = \"eth0\"\nvrid = {vrid}\npriority = {prio}\n\
             initial_state = \"{state}\"\nversion = 3\nadvert_interval = \"{iv}ms\"\n\
             down_timer_adverts = {dta}\nvirtual_addresses = [\"{vip} dev eth0\"]\n",
            name = sp.name(),
            vrid = sp.vrid,
            prio = sp.priority,
            state = if sp.master { "master" } else { "backup" },
            iv = sp.interval_ms,
            dta = sp.down_adverts,
            vip = sp.vip(),
        );
        if sp.bfd {
            s += &format!(
                "bfd = {{ interval = \"{BFD_INTERVAL_MS}ms\", multiplier = {BFD_MULTIPLIER} }}\n"
            );
        }
    }
    s
}

fn keepalived_config(place: &Place, specs: &[Spec]) -> String {
    let mut s = format!("global_defs {{\n router_id {}\n}}\n", place.host.name);
    for sp in specs {
        s += &format!(
            "vrrp_instance {name} {{\n state {state}\n interface eth0\n virtual_router_id {vrid}\n \
             priority {prio}\n version 3\n advert_int {iv}\n down_timer_adverts {dta}\n \
             virtual_ipaddress {{\n  {vip} dev eth0\n }}\n}}\n",
            name = sp.name(),
            state = if sp.master { "MASTER" } else { "BACKUP" },
            vrid = sp.vrid,
            prio = sp.priority,
            iv = f64::from(sp.interval_ms) / 1000.0,
            dta = sp.down_adverts,
            vip = sp.vip(),
        );
    }
    s
}

impl Node {
    /// Writes the config and starts the agent without waiting for it; `notify` is the
    /// NOTIFY_SOCKET to give it.
    pub fn spawn(
        imp: Impl,
        place: &Place,
        specs: &[Spec],
        notify: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let name = &place.host.name;
        let (config, config_path) = match imp {
            Impl::Vigil => (
                vigil_config(place, specs),
                place.dir.join(format!("{name}.toml")),
            ),
            Impl::Keepalived => (
                keepalived_config(place, specs),
                place.dir.join(format!("{name}-keepalived.conf")),
            ),
        };
        std::fs::write(&config_path, config)?;
        let mut node = Self {
            imp,
            host: place.host.clone(),
            log: place.dir.join(format!("{name}-{}.log", imp.name())),
            socket: place.dir.join(format!("{name}.sock")),
            vrrp_pid: place.dir.join(format!("{name}-keepalived-vrrp.pid")),
            config_path,
            notify: notify.map(Path::to_owned),
            vigil: place.vigil.clone(),
            child: None,
        };
        node.respawn()?;
        Ok(node)
    }

    /// Starts the agent again with the same config (after [`Node::stop`]).
    pub fn respawn(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("{} on {} is still running", self.imp.name(), self.host.name);
        }
        // A fresh log per start: readiness and state are read from it.
        let log = std::fs::File::create(&self.log)?;
        let mut cmd = match self.imp {
            Impl::Vigil => {
                let mut c = self.host.command(&self.vigil.to_string_lossy());
                c.args(["run", "-c"])
                    .arg(&self.config_path)
                    // The takeover's stages (kernel timer, wake-up, send) at debug level:
                    // the detection part reports them beside each trial.
                    .env("VIGIL_LOG", "info,vigil::daemon::wake=debug");
                c
            }
            Impl::Keepalived => {
                let mut c = self.host.command("keepalived");
                c.args(["--dont-fork", "--log-console", "--vrrp", "--use-file"])
                    .arg(&self.config_path)
                    .arg("--pid")
                    .arg(self.log.with_extension("pid"))
                    .arg("--vrrp_pid")
                    .arg(&self.vrrp_pid);
                c
            }
        };
        match &self.notify {
            Some(p) => cmd.env("NOTIFY_SOCKET", p),
            None => cmd.env_remove("NOTIFY_SOCKET"),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} on {}", self.imp.name(), self.host.name))?;
        self.child = Some(child);
        Ok(())
    }

    /// Starts and waits until the agent is up (vigil: control socket answers;
    /// keepalived: its VRRP process has started).
    pub fn start(imp: Impl, place: &Place, specs: &[Spec]) -> anyhow::Result<Self> {
        let mut n = Self::spawn(imp, place, specs, None)?;
        n.wait_up(Duration::from_secs(15))?;
        Ok(n)
    }

    /// Waits until the agent is up.
    pub fn wait_up(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let up = match self.imp {
                Impl::Vigil => self.status().is_ok(),
                Impl::Keepalived => {
                    self.log_text().contains("Startup complete") && self.vrrp_child().is_some()
                }
            };
            if up {
                return Ok(());
            }
            if let Some(c) = &mut self.child
                && let Some(st) = c.try_wait()?
            {
                self.child = None;
                bail!(
                    "{} on {} exited with {st}: {}",
                    self.imp.name(),
                    self.host.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!(
            "{} on {} not up after {within:?}: {}",
            self.imp.name(),
            self.host.name,
            self.log_text()
        )
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// vigil's status JSON, read straight from the control socket.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let mut s = UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"status\n")?;
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }

    fn vrrp_child(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(&self.vrrp_pid)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // Only a keepalived in this host's namespace: a pid file can outlive its process.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let ours = comm.trim() == "keepalived" && same_netns(pid, &self.host.ns);
        ours.then_some(pid)
    }

    /// The agent's processes (keepalived: the parent and its VRRP child).
    pub fn pids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.child.iter().map(|c| c.id() as i32).collect();
        if self.imp == Impl::Keepalived
            && let Some(p) = self.vrrp_child()
        {
            v.push(p);
        }
        v
    }

    /// The main process id.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Instance name → state ("MASTER", "BACKUP", ...).
    pub fn states(&self) -> anyhow::Result<BTreeMap<String, String>> {
        match self.imp {
            Impl::Vigil => {
                let s = self.status()?;
                Ok(s["instances"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| {
                        Some((
                            i["instance"].as_str()?.to_owned(),
                            i["state"].as_str()?.to_uppercase(),
                        ))
                    })
                    .collect())
            }
            Impl::Keepalived => {
                // "... (vr1) Entering MASTER STATE"; the last line per instance wins.
                let mut m = BTreeMap::new();
                for line in self.log_text().lines() {
                    let Some(open) = line.find(") Entering ") else {
                        continue;
                    };
                    let Some(start) = line[..open].rfind('(') else {
                        continue;
                    };
                    let name = &line[start + 1..open];
                    let state = line[open + ") Entering ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("");
                    m.insert(name.to_owned(), state.to_owned());
                }
                Ok(m)
            }
        }
    }

    /// How many instances are in `state`.
    pub fn count_in(&self, state: &str) -> usize {
        self.states()
            .map(|m| m.values().filter(|s| *s == state).count())
            .unwrap_or(0)
    }

    /// Sends a signal to the main process.
    pub fn signal(&self, sig: i32) {
        if let Some(p) = self.pid() {
            // SAFETY: plain syscall on our own child's pid.
            unsafe { libc::kill(p, sig) };
        }
    }

    /// Waits up to `within` for the agent to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.child.as_mut().map(Child::try_wait) {
                None | Some(Ok(Some(_))) | Some(Err(_)) => {
                    self.child = None;
                    return true;
                }
                Some(Ok(None)) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        false
    }

    /// SIGTERM (masters step down, addresses removed), SIGKILL if that takes > 5 s.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.signal(libc::SIGTERM);
        if !self.wait_exit(Duration::from_secs(5))
            && let Some(mut c) = self.child.take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        // keepalived's VRRP child follows its parent; make sure.
        if let Some(p) = self.vrrp_child() {
            // SAFETY: plain syscall on a pid keepalived wrote for its own child.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
}

/// Whether process `pid` lives in network namespace `ns`.
fn same_netns(pid: i32, ns: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(format!("/run/netns/{ns}")) else {
        return false;
    };
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .is_ok_and(|l| l.to_string_lossy() == format!("net:[{}]", meta.ino()))
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}
