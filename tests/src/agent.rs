//! Running real agents — vigil and Debian's keepalived — inside lab hosts.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{Host, vigil_bin};

/// A `vigil run` in a host.
pub struct Vigil {
    /// Host it runs in.
    pub host: Host,
    /// Its config file.
    pub config: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its log (stderr) file.
    pub log: PathBuf,
    /// Its `VIGIL_LOG` filter.
    filter: String,
    child: Option<Child>,
}

/// The `[global]` section of a test config: everything under `dir`, pins on `bpffs`.
pub fn global(host: &Host, dir: &Path, bpffs: &Path, extra: &str) -> String {
    format!(
        "[global]\nrouter_id = \"{name}\"\ncontrol_socket = \"{dir}/{name}.sock\"\nbpf_pin_dir = \"{pin}\"\n{extra}\n",
        name = host.name,
        dir = dir.display(),
        pin = bpffs.display(),
    )
}

impl Vigil {
    /// Starts `vigil run` in `host` with the test `[global]` section ([`global`], with
    /// `extra` in it) followed by `instances`.
    pub fn start_with(
        host: &Host,
        dir: &Path,
        bpffs: &Path,
        extra: &str,
        instances: &str,
    ) -> anyhow::Result<Self> {
        Self::start(host, dir, &(global(host, dir, bpffs, extra) + instances))
    }

    /// Writes `config` (TOML; its `control_socket` must be `<dir>/<host name>.sock`) and
    /// starts `vigil run` in `host`; returns once the control socket answers.
    pub fn start(host: &Host, dir: &Path, config: &str) -> anyhow::Result<Self> {
        Self::start_logging(host, dir, config, "info")
    }

    /// [`Vigil::start`] with `filter` as its `VIGIL_LOG` (e.g. debug lines of one target).
    pub fn start_logging(
        host: &Host,
        dir: &Path,
        config: &str,
        filter: &str,
    ) -> anyhow::Result<Self> {
        let path = dir.join(format!("{}.toml", host.name));
        std::fs::write(&path, config)?;
        let mut v = Self {
            host: host.clone(),
            socket: dir.join(format!("{}.sock", host.name)),
            log: dir.join(format!("{}.log", host.name)),
            config: path,
            filter: filter.to_owned(),
            child: None,
        };
        v.spawn()?;
        Ok(v)
    }

    /// Starts (again) with the same config.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = self
            .host
            .command(&vigil_bin().to_string_lossy())
            .args(["run", "-c"])
            .arg(&self.config)
            .env("VIGIL_LOG", &self.filter)
            // Lets the fault tests ask for a panic over the control socket.
            .env("VIGIL_TEST_FAULTS", "1")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting vigil run")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(status) = self.status() {
                // Tests of the XDP path must not pass quietly on the fallback.
                let datapath = status["datapath"].as_str().unwrap_or("");
                let config = std::fs::read_to_string(&self.config).unwrap_or_default();
                if !datapath.contains("xdp") && !config.contains("xdp = \"off\"") {
                    bail!("vigil fell back to {datapath}:\n{}", self.log_text());
                }
                return Ok(());
            }
            if let Some(c) = &mut self.child
                && let Some(status) = c.try_wait()?
            {
                bail!("vigil run exited with {status}: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "vigil run did not answer on {}: {}",
            self.socket.display(),
            self.log_text()
        )
    }

    /// The agent's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `vigil status --json`.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let out = self.host.exec(&[
            &vigil_bin().to_string_lossy(),
            "status",
            "--json",
            "--socket",
            &self.socket.to_string_lossy(),
        ])?;
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// The status object of instance `name`.
    pub fn instance(&self, name: &str) -> anyhow::Result<serde_json::Value> {
        let s = self.status()?;
        s["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["instance"] == name)
            .cloned()
            .with_context(|| format!("no instance {name} in {s}"))
    }

    /// Waits until `check` holds for instance `name`'s status object.
    pub fn wait_instance(
        &self,
        name: &str,
        what: &str,
        within: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = Instant::now() + within;
        let mut last = serde_json::Value::Null;
        while Instant::now() < deadline {
            if let Ok(i) = self.instance(name) {
                if check(&i) {
                    return Ok(i);
                }
                last = i;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "{}: {name}: not {what} after {within:?}: {last}\n{}",
            self.host.name,
            self.log_text()
        )
    }

    /// `vigil status` as a table.
    pub fn status_table(&self) -> anyhow::Result<String> {
        let out = self.host.exec(&[
            &vigil_bin().to_string_lossy(),
            "status",
            "--socket",
            &self.socket.to_string_lossy(),
        ])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// State of instance `name` ("MASTER", "BACKUP", ...).
    pub fn state(&self, name: &str) -> anyhow::Result<String> {
        let s = self.status()?;
        s["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["instance"] == name)
            .and_then(|i| i["state"].as_str().map(str::to_owned))
            .with_context(|| format!("no instance {name} in {s}"))
    }

    /// Waits until instance `name` is in `state`.
    pub fn wait_state(&self, name: &str, state: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        while Instant::now() < deadline {
            last = self.state(name).unwrap_or_else(|e| e.to_string());
            if last == state {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "{}: {name} is {last}, not {state}, after {within:?}\n{}",
            self.host.name,
            self.log_text()
        )
    }

    /// Sends a signal to the agent.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: plain syscall on our child's pid.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// The agent's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends one request line to the control socket and returns the reply, if any (a
    /// request that ends the agent gets none).
    pub fn request(&self, line: &str) -> anyhow::Result<String> {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(format!("{line}\n").as_bytes())?;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        Ok(out)
    }

    /// Waits for the agent to exit; returns its exit code.
    pub fn wait(&mut self) -> anyhow::Result<Option<i32>> {
        match self.child.take() {
            Some(mut c) => Ok(c.wait()?.code()),
            None => Ok(None),
        }
    }
}

impl Drop for Vigil {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether `host` has `addr` on any interface.
pub fn has_address(host: &Host, addr: &str) -> bool {
    host.exec(&["ip", "-o", "addr", "show"])
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .any(|w| w.split('/').next() == Some(addr))
        })
        .unwrap_or(false)
}

/// Debian's keepalived running in a host.
pub struct Keepalived {
    child: Child,
}

impl Keepalived {
    /// Writes `conf` and starts keepalived (VRRP only, in the foreground, logging to a
    /// file in `dir`).
    pub fn start(host: &Host, dir: &Path, conf: &str) -> anyhow::Result<Self> {
        Self::start_as(host, dir, conf, None)
    }

    /// As [`Keepalived::start`], with keepalived's config id (`-i`), which picks the
    /// `@id` lines of the file; `None` leaves keepalived's default (the host name).
    pub fn start_as(
        host: &Host,
        dir: &Path,
        conf: &str,
        config_id: Option<&str>,
    ) -> anyhow::Result<Self> {
        let path = dir.join(format!("{}-keepalived.conf", host.name));
        std::fs::write(&path, conf)?;
        let log = std::fs::File::create(dir.join(format!("{}-keepalived.log", host.name)))?;
        let pid = dir.join(format!("{}-keepalived.pid", host.name));
        let vrrp_pid = dir.join(format!("{}-keepalived-vrrp.pid", host.name));
        let child = host
            .command("keepalived")
            .args(["--dont-fork", "--log-console", "--vrrp", "--use-file"])
            .arg(&path)
            .args(config_id.map(|id| format!("--config-id={id}")))
            .arg("--pid")
            .arg(&pid)
            .arg("--vrrp_pid")
            .arg(&vrrp_pid)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting keepalived")?;
        Ok(Self { child })
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        // SAFETY: plain syscall on our child's pid; SIGTERM lets it release its VIPs.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VRRP adverts in a capture: (time ns, source, priority), from the Ethernet frames.
pub fn adverts(packets: &[crate::capture::Packet]) -> Vec<(u64, std::net::IpAddr, u8)> {
    let mut out = Vec::new();
    for p in packets {
        let d = &p.data;
        if d.len() < 14 {
            continue;
        }
        let (ethertype, l3) = match u16::from_be_bytes([d[12], d[13]]) {
            0x8100 if d.len() >= 18 => (u16::from_be_bytes([d[16], d[17]]), 18),
            t => (t, 14),
        };
        match ethertype {
            0x0800 if d.len() >= l3 + 20 => {
                let ihl = usize::from(d[l3] & 0x0f) * 4;
                if d[l3 + 9] != 112 || d.len() < l3 + ihl + 3 {
                    continue;
                }
                let src = std::net::Ipv4Addr::new(d[l3 + 12], d[l3 + 13], d[l3 + 14], d[l3 + 15]);
                out.push((p.ts_ns, src.into(), d[l3 + ihl + 2]));
            }
            0x86dd if d.len() >= l3 + 43 => {
                if d[l3 + 6] != 112 {
                    continue;
                }
                let mut s = [0u8; 16];
                s.copy_from_slice(&d[l3 + 8..l3 + 24]);
                out.push((p.ts_ns, std::net::Ipv6Addr::from(s).into(), d[l3 + 42]));
            }
            _ => {}
        }
    }
    out
}

/// Starts vigil on `master` and `backup` with their `[instances.web]` sections (pins on
/// `bpffs`, files in `dir`) and waits until they are MASTER and BACKUP.
pub fn start_pair(
    (master, backup): (&Host, &Host),
    dir: &Path,
    bpffs: &Path,
    (master_instance, backup_instance): (&str, &str),
) -> anyhow::Result<(Vigil, Vigil)> {
    let m = Vigil::start(
        master,
        dir,
        &(global(master, dir, bpffs, "") + master_instance),
    )?;
    let b = Vigil::start(
        backup,
        dir,
        &(global(backup, dir, bpffs, "") + backup_instance),
    )?;
    // Below priority 255 even `initial_state = "master"` waits one Master_Down_Interval
    // (3.61 s at 1 s adverts) from its start.
    m.wait_state("web", "MASTER", Duration::from_secs(6))?;
    b.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    Ok((m, b))
}
