//! FRR's zebra and vrrpd (Debian's `frr`) as a real VRRP peer inside a lab host.
//!
//! vrrpd wants one macvlan per virtual router and family on the parent, named
//! `vrrp4-eth0-<vrid>` / `vrrp6-eth0-<vrid>`, with the virtual MAC and the virtual
//! addresses; it toggles the macvlan's protodown with its state. A Backup's macvlan keeps
//! the addresses, so "who holds the VIP" is vrrpd's state (or the wire), not `ip addr`.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::Host;

/// zebra + vrrpd in one host; killed (by their own PIDs) on drop.
pub struct Vrrpd {
    host: Host,
    /// State directory (config, pid files, vty and zserv sockets), owned by `frr`.
    pub dir: PathBuf,
    zebra: Option<Child>,
    vrrpd: Option<Child>,
}

/// The macvlan vrrpd drives for `vrid` in `family` (`v6` or not) on eth0, and its MAC.
pub fn macvlan(vrid: u8, v6: bool) -> (String, String) {
    if v6 {
        (
            format!("vrrp6-eth0-{vrid}"),
            format!("00:00:5e:00:02:{vrid:02x}"),
        )
    } else {
        (
            format!("vrrp4-eth0-{vrid}"),
            format!("00:00:5e:00:01:{vrid:02x}"),
        )
    }
}

impl Vrrpd {
    /// Makes the macvlan for `vrid` holding `addresses` (with prefix), then starts zebra
    /// and vrrpd with `interface eth0` followed by `lines` (each ` vrrp <vrid> ...`).
    pub fn start(
        host: &Host,
        dir: &Path,
        vrid: u8,
        v6: bool,
        addresses: &[&str],
        lines: &str,
    ) -> anyhow::Result<Self> {
        let dir = dir.join(format!("vrrpd-{}", host.name));
        std::fs::create_dir_all(&dir)?;
        // A Backup keeps the addresses on its macvlan: the parent must not answer ARP
        // for them.
        host.exec(&[
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ])?;
        let (link, mac) = macvlan(vrid, v6);
        host.exec(&[
            "ip", "link", "add", &link, "link", "eth0", "address", &mac, "type", "macvlan", "mode",
            "bridge",
        ])?;
        if v6 {
            host.exec(&["ip", "link", "set", "dev", &link, "addrgenmode", "random"])?;
        }
        for a in addresses {
            host.exec(&["ip", "addr", "add", a, "dev", &link])?;
        }
        host.exec(&["ip", "link", "set", &link, "up"])?;
        let conf = format!("interface eth0\n{lines}");
        let mut v = Self {
            host: host.clone(),
            dir: dir.clone(),
            zebra: Some(crate::frr::start_zebra(host, &dir, "vrrpd", &conf)?),
            vrrpd: None,
        };
        v.start_vrrpd()?;
        Ok(v)
    }

    fn daemon(&self, name: &str) -> anyhow::Result<Child> {
        crate::frr::spawn_daemon(&self.host, &self.dir, name)
    }

    /// Starts vrrpd (again) and waits until it answers vtysh.
    pub fn start_vrrpd(&mut self) -> anyhow::Result<()> {
        self.vrrpd = Some(self.daemon("vrrpd")?);
        crate::frr::wait_vtysh(&self.host, &self.dir, "show vrrp json", "vrrpd")
    }

    /// Runs one vtysh command against these daemons.
    pub fn vtysh(&self, command: &str) -> anyhow::Result<String> {
        crate::frr::vtysh_in(&self.host, &self.dir, command)
    }

    /// Runs configuration lines (`interface eth0` context) through vtysh.
    pub fn configure(&self, lines: &[&str]) -> anyhow::Result<()> {
        let d = self.dir.display().to_string();
        let mut argv = vec![
            "vtysh",
            "--vty_socket",
            &d,
            "-c",
            "configure terminal",
            "-c",
            "interface eth0",
        ];
        for l in lines {
            argv.push("-c");
            argv.push(l);
        }
        self.host.exec(&argv)?;
        Ok(())
    }

    /// vrrpd's state of `vrid` in `family` ("v4" or "v6"): "Master", "Backup",
    /// "Initialize", or "" when it does not answer.
    pub fn state(&self, vrid: u8, family: &str) -> String {
        let Ok(text) = self.vtysh(&format!("show vrrp {vrid} json")) else {
            return String::new();
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let vr = if v.is_array() { &v[0] } else { &v };
        vr[family]["status"].as_str().unwrap_or("").to_owned()
    }

    /// Waits until vrrpd's state of `vrid` in `family` is `want`.
    pub fn wait_state(
        &self,
        vrid: u8,
        family: &str,
        want: &str,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let s = self.state(vrid, family);
            if s == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: vrrpd is {s:?}, not {want}, after {within:?}",
                    self.host.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends vrrpd with `signal` and reaps it (SIGKILL: it says nothing on the wire).
    pub fn stop_vrrpd(&mut self, signal: i32) {
        if let Some(mut c) = self.vrrpd.take() {
            let pid = c.id();
            // SAFETY: plain syscall on our child's pid.
            unsafe { libc::kill(pid as i32, signal) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && !matches!(c.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
            // A directory of crash records per daemon run.
            let _ = std::fs::remove_dir_all(format!("/var/tmp/frr/vrrpd.{pid}"));
        }
    }
}

impl Drop for Vrrpd {
    fn drop(&mut self) {
        self.stop_vrrpd(libc::SIGKILL);
        if let Some(mut c) = self.zebra.take() {
            let pid = c.id();
            let _ = c.kill();
            let _ = c.wait();
            let _ = std::fs::remove_dir_all(format!("/var/tmp/frr/zebra.{pid}"));
        }
    }
}
