//! FRR's zebra and bfdd (Debian's `frr`) as a real BFD peer inside a lab host.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{Host, run};

/// zebra + bfdd running in the foreground in one host; killed (by their own PIDs) on drop.
pub struct Frr {
    host: Host,
    dir: PathBuf,
    zebra: Option<Child>,
    bfdd: Option<Child>,
}

impl Frr {
    /// Starts zebra, waits for its socket, then bfdd with `bfdd_conf` (the text of
    /// bfdd.conf); state lives in `dir/frr-<host>`, owned by the `frr` user.
    pub fn start(host: &Host, dir: &Path, bfdd_conf: &str) -> anyhow::Result<Self> {
        let dir = dir.join(format!("frr-{}", host.name));
        std::fs::create_dir_all(&dir)?;
        let mut frr = Self {
            host: host.clone(),
            dir: dir.clone(),
            zebra: Some(start_zebra(host, &dir, "bfdd", bfdd_conf)?),
            bfdd: None,
        };
        frr.start_bfdd()?;
        Ok(frr)
    }

    fn daemon(&self, name: &str) -> anyhow::Result<Child> {
        spawn_daemon(&self.host, &self.dir, name)
    }

    /// Starts bfdd (again).
    pub fn start_bfdd(&mut self) -> anyhow::Result<()> {
        self.bfdd = Some(self.daemon("bfdd")?);
        wait_vtysh(&self.host, &self.dir, "show bfd peers json", "bfdd")
    }

    /// Runs one vtysh command against these daemons.
    pub fn vtysh(&self, command: &str) -> anyhow::Result<String> {
        vtysh_in(&self.host, &self.dir, command)
    }

    /// `show bfd peers json`.
    pub fn peers(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.vtysh("show bfd peers json")?)?)
    }

    /// Kills bfdd (SIGKILL: it says nothing on the wire) and reaps it.
    pub fn kill_bfdd(&mut self) {
        if let Some(mut c) = self.bfdd.take() {
            let pid = c.id();
            let _ = c.kill();
            let _ = c.wait();
            // A directory of crash records per daemon run.
            let _ = std::fs::remove_dir_all(format!("/var/tmp/frr/bfdd.{pid}"));
        }
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        self.kill_bfdd();
        if let Some(mut c) = self.zebra.take() {
            let pid = c.id();
            let _ = c.kill();
            let _ = c.wait();
            let _ = std::fs::remove_dir_all(format!("/var/tmp/frr/zebra.{pid}"));
        }
    }
}

/// Starts FRR's daemon `name` in `host` in the foreground, its configuration, PID file,
/// zebra socket and vty socket in `dir`, its output appended to `dir/<name>.log`.
pub(crate) fn spawn_daemon(host: &Host, dir: &Path, name: &str) -> anyhow::Result<Child> {
    let d = dir.display().to_string();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))?;
    host.command(&format!("/usr/lib/frr/{name}"))
        .args([
            "-f",
            &format!("{d}/{name}.conf"),
            "-i",
            &format!("{d}/{name}.pid"),
            "-z",
            &format!("{d}/zserv.api"),
            "--vty_socket",
            &d,
            "-P",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name} in {}", host.ns))
}

/// Runs one vtysh command against the daemons whose vty sockets are in `dir`.
pub(crate) fn vtysh_in(host: &Host, dir: &Path, command: &str) -> anyhow::Result<String> {
    let d = dir.display().to_string();
    let out = host.exec(&["vtysh", "--vty_socket", &d, "-c", command])?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits up to 10 s until daemon `name` answers `command` through vtysh.
pub(crate) fn wait_vtysh(host: &Host, dir: &Path, command: &str, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while vtysh_in(host, dir, command).is_err() {
        if Instant::now() > deadline {
            bail!("{name} does not answer vtysh");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Writes zebra's configuration and `daemon`'s (`conf`) into `dir`, gives `dir` to the
/// `frr` user, starts zebra and waits for its socket.
pub(crate) fn start_zebra(
    host: &Host,
    dir: &Path,
    daemon: &str,
    conf: &str,
) -> anyhow::Result<Child> {
    std::fs::write(dir.join("zebra.conf"), format!("hostname {}\n", host.name))?;
    std::fs::write(dir.join(format!("{daemon}.conf")), conf)?;
    run(std::process::Command::new("chown")
        .args(["-R", "frr:frr"])
        .arg(dir))?;
    let zebra = spawn_daemon(host, dir, "zebra")?;
    let zserv = dir.join("zserv.api");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !zserv.exists() {
        if Instant::now() > deadline {
            bail!("zebra made no socket in {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(zebra)
}
