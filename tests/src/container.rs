//! A real systemd (PID 1) in a systemd-nspawn container, for tests of the unit as
//! shipped: a root skeleton with the host's /usr overlaid (so installs into /usr stay in
//! the container), its own cgroup2 subtree, a private network with only `lo`, and a
//! staging directory bind-mounted read-only at /stage.
//!
//! Everything it makes is named `vg-<tag>-<pid>` (directory, cgroup, machine name), so a
//! crashed run's leftovers are recognised and removed by the next run of the same tag.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// PATH inside the container (nsenter starts with a clean environment).
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A booted container; powered off and removed on drop.
pub struct Container {
    /// Scratch directory: `root/` (the container's /), `upper/` (its /usr changes),
    /// `stage/` (its /stage).
    pub dir: PathBuf,
    cgroup: PathBuf,
    nspawn: Child,
    leader: i32,
    nspawn_run_dir_existed: bool,
}

/// Why the container cannot be booted on this machine, if it cannot.
pub fn unavailable() -> Option<String> {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root".to_owned());
    }
    if !Path::new("/usr/bin/systemd-nspawn").exists() {
        return Some(
            "systemd-nspawn is not installed (Debian package systemd-container; \
             `cargo xtask setup` installs it)"
                .to_owned(),
        );
    }
    if !Path::new("/usr/lib/systemd/systemd").exists() {
        return Some("no systemd to boot (/usr/lib/systemd/systemd)".to_owned());
    }
    if cgroup_parent().is_none() {
        return Some("no cgroup2 hierarchy to give the container".to_owned());
    }
    None
}

/// Says loudly, past the test harness's output capture, that a test did not run.
pub fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Where the container's cgroup2 subtree goes: the hybrid layout's unified mount, or
/// the root of a pure cgroup2 system.
fn cgroup_parent() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.max.depth").exists())
}

/// Kills everything in a cgroup this code made and removes it.
fn remove_cgroup(cgroup: &Path) {
    if !cgroup.exists() {
        return;
    }
    let _ = std::fs::write(cgroup.join("cgroup.kill"), "1");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        // Child cgroups (the container's own) go first, deepest first.
        let mut dirs = Vec::new();
        collect_dirs(cgroup, &mut dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in &dirs {
            let _ = std::fs::remove_dir(d);
        }
        if std::fs::remove_dir(cgroup).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                collect_dirs(&p, out);
                out.push(p);
            }
        }
    }
}

/// Removes what crashed earlier runs of `tag` left: their cgroups (and the container
/// processes in them) and their directories.
fn clear_stale(tag: &str, parent: &Path) {
    let start = format!("vg-{tag}-");
    let dead = |name: &str| {
        name.strip_prefix(&start)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    for base in [parent.to_owned(), std::env::temp_dir()] {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !dead(&name) {
                continue;
            }
            if base == parent {
                remove_cgroup(&e.path());
            } else {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

impl Container {
    /// Builds the root skeleton and boots systemd in it; returns once it is running.
    pub fn boot(tag: &str) -> anyhow::Result<Self> {
        let parent = cgroup_parent().context("no cgroup2 hierarchy")?;
        clear_stale(tag, &parent);
        let name = format!("vg-{tag}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        for d in [
            "etc/systemd/system",
            "usr",
            "var",
            "tmp",
            "run",
            "root",
            "proc",
            "sys",
            "dev",
        ] {
            std::fs::create_dir_all(root.join(d))?;
        }
        std::fs::create_dir_all(dir.join("upper"))?;
        std::fs::create_dir_all(dir.join("stage"))?;
        for l in ["bin", "sbin", "lib", "lib64"] {
            std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l))?;
        }
        // An empty /etc makes systemd-firstboot prompt and leaves no `nobody` user.
        for f in [
            "os-release",
            "passwd",
            "group",
            "nsswitch.conf",
            "manpath.config",
        ] {
            let src = std::fs::canonicalize(Path::new("/etc").join(f))
                .with_context(|| format!("/etc/{f}"))?;
            std::fs::copy(&src, root.join("etc").join(f))?;
        }
        let id = crate::run(Command::new("systemd-id128").arg("new"))?;
        std::fs::write(root.join("etc/machine-id"), &id.stdout)?;

        let cgroup = parent.join(&name);
        std::fs::create_dir_all(&cgroup)?;
        let nspawn_run_dir_existed = Path::new("/run/systemd/nspawn").exists();
        let log = std::fs::File::create(dir.join("boot.log"))?;
        // The shell moves itself into the new cgroup and becomes nspawn, so only the
        // container lives there.
        let script = format!(
            "echo $$ > {procs} && exec systemd-nspawn -q -D {root} -M {machine} --register=no \
             --keep-unit --private-network --capability=CAP_BPF,CAP_PERFMON \
             --system-call-filter='bpf perf_event_open' --overlay=/usr:{upper}:/usr \
             --bind-ro={stage}:/stage --link-journal=no --resolv-conf=off --timezone=off \
             --console=read-only -b -- systemd.unit=multi-user.target",
            procs = cgroup.join("cgroup.procs").display(),
            root = root.display(),
            // Machine names are host names: at most 64 characters, no underscores.
            machine = name.replace('_', "-"),
            upper = dir.join("upper").display(),
            stage = dir.join("stage").display(),
        );
        let nspawn = Command::new("setsid")
            .args(["sh", "-c", &script])
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting systemd-nspawn")?;
        let mut c = Self {
            dir,
            cgroup,
            nspawn,
            leader: 0,
            nspawn_run_dir_existed,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.leader == 0 {
            if let Some(st) = c.nspawn.try_wait()? {
                bail!("systemd-nspawn exited with {st}:\n{}", c.boot_log());
            }
            c.leader = c.find_leader().unwrap_or(0);
            if Instant::now() > deadline {
                bail!("no systemd in the container after 20 s:\n{}", c.boot_log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Until systemd listens on its socket, systemctl fails at once rather than wait.
        // "degraded" is fine: units this skeleton lacks the means for may fail.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = c.sh("timeout 30 systemctl is-system-running --wait")?;
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if state == "running" || state == "degraded" {
                return Ok(c);
            }
            if Instant::now() > deadline {
                bail!(
                    "systemd in the container is {state:?} ({}):\n{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    c.boot_log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The container's console output so far.
    pub fn boot_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("boot.log")).unwrap_or_default()
    }

    /// The container's systemd: the `systemd` child of the nspawn process.
    fn find_leader(&self) -> Option<i32> {
        let pid = self.nspawn.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "systemd")
            })
    }

    /// Runs a shell script inside the container (every namespace, clean environment).
    pub fn sh(&self, script: &str) -> anyhow::Result<Output> {
        Command::new("nsenter")
            .args([
                "-t",
                &self.leader.to_string(),
                "-a",
                "env",
                "-i",
                PATH,
                "sh",
                "-c",
            ])
            .arg(script)
            .stdin(Stdio::null())
            .output()
            .context("nsenter")
    }

    /// Runs a shell script inside the container (`set -e`); fails with its output when
    /// it fails, else returns its stdout.
    pub fn sh_ok(&self, script: &str) -> anyhow::Result<String> {
        let out = self.sh(&format!("set -e\n{script}"))?;
        if !out.status.success() {
            bail!(
                "in the container, {script:?} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A file of the container's root as seen from the host (not under /run, /tmp or
    /// /usr, which are mounts of their own inside).
    pub fn path(&self, inside: &str) -> PathBuf {
        self.dir.join("root").join(inside.trim_start_matches('/'))
    }

    /// Writes a file into the staging directory (the container's /stage).
    pub fn stage(&self, rel: &str, contents: &[u8], mode: u32) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.join("stage").join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, contents)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // A clean poweroff first, so the container's units stop as on a real machine.
        if self.leader != 0 {
            let _ = self.sh("systemctl poweroff --no-block");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.nspawn.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        remove_cgroup(&self.cgroup);
        let _ = std::fs::remove_dir_all(&self.dir);
        // nspawn leaves its bookkeeping behind on a host without systemd; remove it only
        // if this run made it and no other container uses it now.
        if !self.nspawn_run_dir_existed {
            for d in ["/run/systemd/nspawn/propagate", "/run/systemd/nspawn/locks"] {
                let _ = std::fs::remove_dir(d);
            }
            let _ = std::fs::remove_dir("/run/systemd/nspawn");
        }
    }
}
