//! The bench's labs: one per implementation, so that vigil's and keepalived's pairs run
//! side by side without hearing each other. Each lab is a bridge with four hosts:
//! `lb01` (MASTER, 192.0.2.11), `lb02` (BACKUP, 192.0.2.12), `obs` (captures what is on
//! the wire) and `gen` (sends the junk floods).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use vigil_tests::{Host, Lab};

use super::measure::{Seen, Tail, realtime_ns};
use super::node::{Impl, Node, Place, Spec};

pub const MASTER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11));
pub const BACKUP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 12));
pub const MASTER_PRIORITY: u8 = 150;
pub const BACKUP_PRIORITY: u8 = 100;

/// One implementation's lab.
pub struct Side {
    pub imp: Impl,
    pub lab: Lab,
    bpffs: PathBuf,
    vigil: PathBuf,
    captures: usize,
}

impl Side {
    pub fn new(imp: Impl, vigil: &Path) -> anyhow::Result<Self> {
        let tag = match imp {
            Impl::Vigil => "bench-vigil",
            Impl::Keepalived => "bench-ka",
        };
        let mut lab = Lab::new(tag, &["lb01", "lb02", "obs", "gen"])
            .with_context(|| format!("building the {} lab", imp.name()))?;
        let bpffs = match imp {
            Impl::Vigil => lab.bpffs()?,
            Impl::Keepalived => lab.dir.clone(),
        };
        Ok(Self {
            imp,
            lab,
            bpffs,
            vigil: vigil.to_owned(),
            captures: 0,
        })
    }

    pub fn host(&self, name: &str) -> Host {
        self.lab.host(name).clone()
    }

    pub fn place(&self, host: &str) -> Place {
        Place {
            host: self.host(host),
            dir: self.lab.dir.clone(),
            bpffs: self.bpffs.clone(),
            vigil: self.vigil.clone(),
        }
    }

    /// Starts this side's agent on `host`.
    pub fn start(&self, host: &str, specs: &[Spec]) -> anyhow::Result<Node> {
        Node::start(self.imp, &self.place(host), specs)
    }

    /// A capture of VRRP on `obs`, read as it runs.
    pub fn capture(&mut self, what: &str) -> anyhow::Result<Tail> {
        self.captures += 1;
        let path = self
            .lab
            .dir
            .join(format!("{}-{what}-{}.pcap", self.imp.name(), self.captures));
        Tail::start(self.lab.host("obs"), &path)
    }
}

/// Both labs, in the order trials alternate over.
pub struct Sides(pub Vec<Side>);

impl Sides {
    /// Both labs; `vigil` is the binary to run.
    pub fn new(vigil: &Path) -> anyhow::Result<Self> {
        // Namespaces of crashed bench runs go first (each Lab::new clears its own tag).
        vigil_tests::clear_stale("bench");
        Ok(Self(vec![
            Side::new(Impl::Vigil, vigil)?,
            Side::new(Impl::Keepalived, vigil)?,
        ]))
    }

    /// Side indexes for trial `t`: the order alternates so neither implementation is
    /// always first after a pause.
    pub fn order(&self, t: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.0.len()).collect();
        if t % 2 == 1 {
            v.reverse();
        }
        v
    }
}

/// The pair is settled: the MASTER advertises, the BACKUP has been silent for 1.5
/// intervals and has heard at least two adverts from the MASTER since it last spoke.
pub fn steady(adv: &[Seen], interval: Duration) -> bool {
    let now = realtime_ns();
    let iv = interval.as_nanos() as u64;
    let Some(last_m) = adv
        .iter()
        .rev()
        .find(|a| a.src == MASTER && a.prio != 0)
        .map(|a| a.ts)
    else {
        return false;
    };
    if now.saturating_sub(last_m) > 2 * iv + 50_000_000 {
        return false;
    }
    let last_b = adv.iter().rev().find(|a| a.src == BACKUP).map(|a| a.ts);
    let since = last_b.unwrap_or(0);
    let heard = adv
        .iter()
        .filter(|a| a.src == MASTER && a.prio != 0 && a.ts > since)
        .count();
    let quiet = last_b.is_none_or(|b| now.saturating_sub(b) > iv * 3 / 2 + 30_000_000);
    quiet && heard >= 2
}

/// How long to allow a pair to settle: a takeover by the preferred node can take a
/// whole Master_Down_Interval, and keepalived re-enters through BACKUP after a link
/// flap.
pub fn settle_time(interval: Duration, down_adverts: u8) -> Duration {
    interval * (u32::from(down_adverts) + 2) * 3 + Duration::from_secs(5)
}

/// RFC 5798 §6.1: Master_Down_Interval = n × Master_Adver_Interval + Skew_Time with
/// Skew_Time = (256 − Priority) × Master_Adver_Interval / 256 (n = 3 in the RFC,
/// keepalived's `down_timer_adverts` otherwise), for the BACKUP's priority.
pub fn master_down(interval: Duration, down_adverts: u8) -> Duration {
    master_down_at(interval, down_adverts, BACKUP_PRIORITY)
}

/// Master_Down_Interval for a router of `priority`.
pub fn master_down_at(interval: Duration, down_adverts: u8, priority: u8) -> Duration {
    interval * u32::from(down_adverts) + interval * (256 - u32::from(priority)) / 256
}

/// Skew_Time for the BACKUP's priority.
pub fn skew(interval: Duration) -> Duration {
    interval * (256 - u32::from(BACKUP_PRIORITY)) / 256
}
