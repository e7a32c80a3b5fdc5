//! Flood: VRRP-shaped junk at the highest rate one sender thread reaches, unicast to
//! the BACKUP's MAC (a static entry on the bridge keeps it off the other ports), while
//! the pair runs at 100 ms adverts. Measured: false takeovers (runs of adverts from the
//! BACKUP in the capture), the BACKUP agent's CPU, and for vigil the XDP program's own
//! run time (kernel BPF statistics, switched on for the flood and restored after).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use vigil_tests::frames::Advert;
use vigil_tests::{Host, netns, run};

use super::lab::{
    BACKUP, BACKUP_PRIORITY, MASTER_PRIORITY, Side, Sides, master_down, settle_time, steady,
};
use super::measure::{CpuMeter, realtime_ns};
use super::node::{Impl, specs};

pub const INTERVAL_MS: u32 = 100;

/// Below this send rate (packets/s) a flood is repeated (the benchmark aims at ≥ 200k/s; on
/// a shared machine one sender thread does not always get there).
pub const MIN_RATE: f64 = 100_000.0;

/// The junk kinds, in the order: (key, description).
pub const KINDS: [(&str, &str); 4] = [
    ("ttl", "TTL 254"),
    ("checksum", "bad checksum"),
    ("foreign_vrid", "foreign VRID"),
    ("low_priority", "lower-priority noise"),
];

/// One flood against one implementation's BACKUP.
#[derive(Clone, Debug)]
pub struct FloodRun {
    pub sent: u64,
    /// Floods repeated because the sender fell below [`MIN_RATE`].
    pub retries: usize,
    pub seconds: f64,
    /// BACKUP agent CPU, % of one core.
    pub cpu: f64,
    /// Takeovers by the BACKUP during the flood and one Master_Down_Interval after.
    pub takeovers: usize,
    /// vigil only: the XDP program's run time, % of one core (None when the kernel
    /// gave no statistics).
    pub xdp_cpu: Option<f64>,
    /// vigil only: packets the XDP program ran on.
    pub xdp_packets: Option<u64>,
}

impl FloodRun {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.seconds
    }
}

#[derive(Clone, Debug)]
pub struct Flood {
    pub key: &'static str,
    pub label: &'static str,
    pub runs: BTreeMap<Impl, FloodRun>,
}

/// The junk frames of `kind`, from `gen` to the BACKUP's MAC.
pub(super) fn frames(kind: &str, gen_host: &Host, gen_mac: [u8; 6], to: [u8; 6]) -> Vec<Vec<u8>> {
    let mut a = Advert::v3(gen_host.ipv4, 1, 200);
    a.src_mac = gen_mac;
    a.interval = (INTERVAL_MS / 10) as u16;
    a.addresses = vec!["198.51.100.1".parse().expect("literal address")];
    match kind {
        "ttl" => a.ttl = 254,
        "checksum" => a.checksum_delta = 7,
        "foreign_vrid" => a.vrid = 77,
        _ => a.priority = 50,
    }
    let mut f = a.frame();
    f[..6].copy_from_slice(&to);
    vec![f]
}

/// Kernel BPF run-time statistics on for as long as this lives; the old setting after.
pub(super) struct BpfStats {
    old: Option<String>,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub(super) fn on() -> Self {
        let old = std::fs::read_to_string(BPF_STATS).ok();
        if old.as_deref().map(str::trim) != Some("1") && std::fs::write(BPF_STATS, "1").is_err() {
            eprintln!("bench: cannot enable BPF statistics; XDP run time not measured");
        }
        Self { old }
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            let _ = std::fs::write(BPF_STATS, old.trim());
        }
    }
}

/// (run_time_ns, run_cnt) of the XDP program on `host`'s eth0.
pub(super) fn xdp_stats(host: &Host) -> Option<(u64, u64)> {
    let out = host
        .exec(&["bpftool", "-j", "net", "show", "dev", "eth0"])
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let id = json[0]["xdp"][0]["id"].as_u64()?;
    let out = host
        .exec(&["bpftool", "-j", "prog", "show", "id", &id.to_string()])
        .ok()?;
    let prog: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    // bpftool leaves both out while they are zero (statistics just turned on).
    prog["id"].as_u64()?;
    Some((
        prog["run_time_ns"].as_u64().unwrap_or(0),
        prog["run_cnt"].as_u64().unwrap_or(0),
    ))
}

/// Runs of BACKUP adverts separated by more than two intervals: each is one takeover.
fn takeovers(ts: &[u64], interval: Duration) -> usize {
    let gap = 2 * interval.as_nanos() as u64;
    let mut runs = 0;
    let mut last: Option<u64> = None;
    for &t in ts {
        if last.is_none_or(|l| t.saturating_sub(l) > gap) {
            runs += 1;
        }
        last = Some(t);
    }
    runs
}

/// Pins the BACKUP's (lb02's) MAC to its bridge port: junk to it never floods other
/// ports, whether or not the bridge has learned the address (a BACKUP sends nothing).
pub fn pin_backup_mac(side: &Side) -> anyhow::Result<[u8; 6]> {
    let lb02 = side.host("lb02");
    let mac = lb02.mac("eth0")?;
    let mac_s = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    run(std::process::Command::new("bridge").args([
        "-n",
        side.lab.switch(),
        "fdb",
        "replace",
        &mac_s,
        "dev",
        &lb02.port,
        "master",
        "static",
    ]))
    .context("pinning the BACKUP's MAC on the bridge")?;
    Ok(mac)
}

pub fn flood(sides: &mut Sides, seconds: f64) -> anyhow::Result<Vec<Flood>> {
    let interval = Duration::from_millis(u64::from(INTERVAL_MS));
    let duration = Duration::from_secs_f64(seconds);
    let mut pairs = Vec::new();
    for side in sides.0.iter_mut() {
        let tail = side.capture("flood")?;
        let master = side.start("lb01", &specs(1, MASTER_PRIORITY, true, INTERVAL_MS, 3))?;
        let backup = side.start("lb02", &specs(1, BACKUP_PRIORITY, false, INTERVAL_MS, 3))?;
        let mac = pin_backup_mac(side)?;
        pairs.push((master, backup, tail, mac));
    }
    let _stats = BpfStats::on();
    let mut out = Vec::new();
    for (k, (key, label)) in KINDS.iter().enumerate() {
        let mut runs = BTreeMap::new();
        for i in sides.order(k) {
            let side = &sides.0[i];
            let (_master, backup, tail, mac) = &mut pairs[i];
            let within = settle_time(interval, 3);
            if !tail.wait_for(within, |a| steady(a, interval))? {
                bail!(
                    "{}: the pair did not settle before the flood",
                    side.imp.name()
                );
            }
            let gen_host = side.host("gen");
            let junk = frames(key, &gen_host, gen_host.mac("eth0")?, *mac);
            let lb02 = side.host("lb02");
            let xdp0 = (side.imp == Impl::Vigil)
                .then(|| xdp_stats(&lb02))
                .flatten();
            // A flood that reached too low a rate (the sender starved, or its sends
            // failed) says nothing; it is repeated, at most twice.
            let mut retries = 0;
            let (meter, t0, sent, secs) = loop {
                let meter = CpuMeter::start(&backup.pids())?;
                let t0 = realtime_ns();
                let started = std::time::Instant::now();
                let sent = netns::flood(&gen_host.ns, "eth0", &junk, duration)?;
                let secs = started.elapsed().as_secs_f64();
                let rate = sent as f64 / secs;
                if rate >= MIN_RATE || retries == 2 {
                    break (meter, t0, sent, secs);
                }
                retries += 1;
                eprintln!(
                    "bench: flood {label}, {}: only {rate:.0} packets/s; again",
                    side.imp.name()
                );
                std::thread::sleep(master_down(interval, 3) + interval);
                if !tail.wait_for(within, |a| steady(a, interval))? {
                    bail!(
                        "{}: the pair did not settle before the flood",
                        side.imp.name()
                    );
                }
            };
            let cpu = meter.percent()?;
            let xdp1 = (side.imp == Impl::Vigil)
                .then(|| xdp_stats(&lb02))
                .flatten();
            // A takeover the flood caused may show up to one Master_Down_Interval later.
            std::thread::sleep(master_down(interval, 3) + interval);
            tail.poll()?;
            let t1 = realtime_ns();
            let ts: Vec<u64> = tail
                .adverts
                .iter()
                .filter(|a| a.src == BACKUP && a.ts >= t0 && a.ts <= t1)
                .map(|a| a.ts)
                .collect();
            let (xdp_cpu, xdp_packets) = match (xdp0, xdp1) {
                (Some((ns0, c0)), Some((ns1, c1))) if ns1 > ns0 => (
                    Some(ns1.saturating_sub(ns0) as f64 / 1e9 / secs * 100.0),
                    Some(c1.saturating_sub(c0)),
                ),
                _ => (None, None),
            };
            let r = FloodRun {
                sent,
                retries,
                seconds: secs,
                cpu,
                takeovers: takeovers(&ts, interval),
                xdp_cpu,
                xdp_packets,
            };
            eprintln!(
                "bench: flood {label}, {}: {:.0} packets/s, BACKUP CPU {:.2} %, {} takeovers{}",
                side.imp.name(),
                r.rate(),
                r.cpu,
                r.takeovers,
                r.xdp_cpu
                    .map_or(String::new(), |x| format!(", XDP program {x:.2} %"))
            );
            runs.insert(side.imp, r);
        }
        out.push(Flood { key, label, runs });
    }
    for (_, _, tail, _) in &mut pairs {
        tail.stop()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takeover_runs_are_split_by_silence() {
        let iv = Duration::from_millis(100);
        let ms = |v: &[u64]| v.iter().map(|x| x * 1_000_000).collect::<Vec<_>>();
        assert_eq!(takeovers(&[], iv), 0);
        assert_eq!(takeovers(&ms(&[0, 100, 200]), iv), 1);
        assert_eq!(takeovers(&ms(&[0, 100, 900, 1000, 1500]), iv), 3);
    }
}
