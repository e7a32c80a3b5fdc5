//! Scale: N instances at 10 ms adverts on one MASTER and one BACKUP; CPU of each (from
//! utime + stime deltas) and resident memory (VmRSS; keepalived's processes summed).
//! Only one implementation's pair runs at a time; rounds alternate between them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::lab::{BACKUP_PRIORITY, MASTER_PRIORITY, Sides};
use super::measure::{CpuMeter, rss_sum};
use super::node::{Impl, Node, specs};

pub const INTERVAL_MS: u32 = 10;

#[derive(Clone, Debug)]
pub struct ScaleRun {
    pub master_cpu: f64,
    pub backup_cpu: f64,
    pub master_rss_kib: u64,
    pub backup_rss_kib: u64,
    /// Every instance was in its expected state before and after the window.
    pub settled: bool,
}

#[derive(Clone, Debug)]
pub struct Scale {
    pub instances: u8,
    pub window_s: f64,
    pub runs: BTreeMap<Impl, Vec<ScaleRun>>,
}

fn settled(master: &Node, backup: &Node, n: usize) -> bool {
    master.count_in("MASTER") == n && backup.count_in("BACKUP") == n
}

pub fn scale(
    sides: &mut Sides,
    instances: u8,
    rounds: usize,
    settle: Duration,
    window: Duration,
) -> anyhow::Result<Scale> {
    let n = usize::from(instances);
    let mut out = Scale {
        instances,
        window_s: window.as_secs_f64(),
        runs: BTreeMap::new(),
    };
    for round in 0..rounds {
        for i in sides.order(round) {
            let side = &sides.0[i];
            let mut master = side.start(
                "lb01",
                &specs(instances, MASTER_PRIORITY, true, INTERVAL_MS, 3),
            )?;
            let mut backup = side.start(
                "lb02",
                &specs(instances, BACKUP_PRIORITY, false, INTERVAL_MS, 3),
            )?;
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut ok_before = false;
            while Instant::now() < deadline {
                if settled(&master, &backup, n) {
                    ok_before = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !ok_before {
                eprintln!(
                    "bench: scale {instances}, {}: not all instances settled in 30 s \
                     (MASTER {}, BACKUP {}); measuring anyway",
                    side.imp.name(),
                    master.count_in("MASTER"),
                    backup.count_in("BACKUP")
                );
            }
            std::thread::sleep(settle);
            let m = CpuMeter::start(&master.pids())?;
            let b = CpuMeter::start(&backup.pids())?;
            std::thread::sleep(window);
            let run = ScaleRun {
                master_cpu: m.percent()?,
                backup_cpu: b.percent()?,
                master_rss_kib: rss_sum(&master.pids())?,
                backup_rss_kib: rss_sum(&backup.pids())?,
                settled: ok_before && settled(&master, &backup, n),
            };
            eprintln!(
                "bench: scale {instances} × {INTERVAL_MS} ms round {}, {}: MASTER {:.1} % \
                 {} KiB, BACKUP {:.1} % {} KiB{}",
                round + 1,
                side.imp.name(),
                run.master_cpu,
                run.master_rss_kib,
                run.backup_cpu,
                run.backup_rss_kib,
                if run.settled { "" } else { " (NOT SETTLED)" }
            );
            out.runs.entry(side.imp).or_default().push(run);
            // BACKUP first, or it would take over every instance the MASTER releases.
            backup.stop();
            master.stop();
        }
    }
    Ok(out)
}
