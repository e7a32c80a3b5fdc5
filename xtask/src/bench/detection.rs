//! Detection (the MASTER's link is cut) and graceful handover (SIGTERM on the MASTER),
//! both timed from a capture on a third host: the MASTER's last advert (or SIGTERM) to
//! the new MASTER's first advert.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;

use super::flood::{BpfStats, xdp_stats};
use super::lab::{
    BACKUP, BACKUP_PRIORITY, MASTER, MASTER_PRIORITY, Sides, master_down, settle_time, skew, steady,
};
use super::measure::{CpuMeter, Seen, Tail, realtime_ns};
use super::node::{Impl, Node, specs};

/// Detection for one interval and `down_timer_adverts`.
#[derive(Clone, Debug)]
pub struct Detection {
    pub interval_ms: u32,
    pub down_adverts: u8,
    /// Busy loops (one process each, never sleeping) running on the machine meanwhile.
    pub busy_loops: usize,
    /// The RFC's Master_Down_Interval, ms.
    pub rfc_ms: f64,
    /// Per implementation: one detection time (ms) per trial that took over.
    pub trials: BTreeMap<Impl, Vec<f64>>,
    /// Per implementation: trials where no takeover was seen in time.
    pub failures: BTreeMap<Impl, usize>,
    /// Per implementation: takeovers the cut did not cause (repeated, not counted).
    pub flaps: BTreeMap<Impl, usize>,
}

/// Graceful handover at one interval.
#[derive(Clone, Debug)]
pub struct Handover {
    pub interval_ms: u32,
    /// Skew_Time, ms: the RFC's bound from the priority-0 advert.
    pub skew_ms: f64,
    /// SIGTERM → new MASTER's first advert, ms.
    pub from_signal: BTreeMap<Impl, Vec<f64>>,
    /// Priority-0 advert → new MASTER's first advert, ms.
    pub from_zero: BTreeMap<Impl, Vec<f64>>,
    pub failures: BTreeMap<Impl, usize>,
}

/// Takeover at 1 s adverts measured from the cut itself (the MASTER's last advert may be
/// up to a second older): vigil with BFD 10 ms x 3, keepalived without (it has no
/// BFD-assisted takeover).
#[derive(Clone, Debug)]
pub struct BfdDetection {
    pub interval_ms: u32,
    /// The RFC's Master_Down_Interval, ms.
    pub rfc_ms: f64,
    /// Per implementation: link cut → new MASTER's first advert, ms, per trial.
    pub trials: BTreeMap<Impl, Vec<f64>>,
    /// Per implementation: trials without a takeover in time.
    pub failures: BTreeMap<Impl, usize>,
    /// vigil's cost of one steady BFD session, before the trials.
    pub cpu: Option<BfdCpu>,
}

/// What one steady BFD session at 10 ms × 3 costs the Backup's host: the agent (its
/// process) and the XDP program (kernel BPF statistics), measured over the same window.
/// The Backup runs exactly one session; its VRRP at 1 s adverts is noise beside it.
#[derive(Clone, Debug)]
pub struct BfdCpu {
    /// Seconds measured.
    pub window_s: f64,
    /// The agent, % of one core.
    pub agent_pct: f64,
    /// The XDP program, % of one core (None: BPF statistics unavailable).
    pub xdp_pct: Option<f64>,
    /// XDP program runs per second (every frame on the interface, BFD and VRRP).
    pub xdp_runs_per_s: Option<f64>,
    /// Mean run time of the XDP program, ns.
    pub xdp_ns_per_run: Option<f64>,
}

/// Measures [`BfdCpu`] on a steady pair: `backup` on `host`, for `window`.
fn bfd_cpu(backup: &Node, host: &vigil_tests::Host, window: Duration) -> anyhow::Result<BfdCpu> {
    let _stats = BpfStats::on();
    let x0 = xdp_stats(host);
    let meter = CpuMeter::start(&backup.pids())?;
    let started = std::time::Instant::now();
    std::thread::sleep(window);
    let agent_pct = meter.percent()?;
    let x1 = xdp_stats(host);
    let secs = started.elapsed().as_secs_f64();
    let (xdp_pct, xdp_runs_per_s, xdp_ns_per_run) = match (x0, x1) {
        (Some((ns0, c0)), Some((ns1, c1))) if c1 > c0 => {
            let ns = ns1.saturating_sub(ns0) as f64;
            let runs = (c1 - c0) as f64;
            (
                Some(ns / 1e9 / secs * 100.0),
                Some(runs / secs),
                Some(ns / runs),
            )
        }
        _ => (None, None, None),
    };
    Ok(BfdCpu {
        window_s: secs,
        agent_pct,
        xdp_pct,
        xdp_runs_per_s,
        xdp_ns_per_run,
    })
}

/// One running pair and the capture watching it.
struct Pair {
    master: Node,
    backup: Node,
    tail: Tail,
}

fn start_pairs(
    sides: &mut Sides,
    what: &str,
    interval_ms: u32,
    down_adverts: u8,
) -> anyhow::Result<Vec<Pair>> {
    start_pairs_with(sides, what, interval_ms, down_adverts, false)
}

fn start_pairs_with(
    sides: &mut Sides,
    what: &str,
    interval_ms: u32,
    down_adverts: u8,
    bfd: bool,
) -> anyhow::Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for side in sides.0.iter_mut() {
        let tail = side.capture(what)?;
        let with_bfd = |mut s: Vec<super::node::Spec>| {
            for sp in &mut s {
                sp.bfd = bfd;
            }
            s
        };
        let master = side.start(
            "lb01",
            &with_bfd(specs(1, MASTER_PRIORITY, true, interval_ms, down_adverts)),
        )?;
        let backup = side.start(
            "lb02",
            &with_bfd(specs(1, BACKUP_PRIORITY, false, interval_ms, down_adverts)),
        )?;
        pairs.push(Pair {
            master,
            backup,
            tail,
        });
    }
    Ok(pairs)
}

fn wait_steady(pair: &mut Pair, interval: Duration, down_adverts: u8) -> anyhow::Result<()> {
    let within = settle_time(interval, down_adverts);
    if !pair.tail.wait_for(within, |a| steady(a, interval))? {
        bail!(
            "{}: the pair did not settle (MASTER advertising, BACKUP quiet) within {within:?}\n\
             lb01 log:\n{}\nlb02 log:\n{}",
            pair.master.imp.name(),
            pair.master.log_text(),
            pair.backup.log_text()
        );
    }
    Ok(())
}

fn first_after(adv: &[Seen], src: std::net::IpAddr, after: u64) -> Option<&Seen> {
    adv.iter()
        .filter(|a| a.src == src && a.ts > after)
        .min_by_key(|a| a.ts)
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// What one cut of the MASTER's link gave.
enum Cut {
    /// The new MASTER's first advert this long (ms) after the old one's last.
    Took(f64),
    /// No takeover within twice the RFC bound plus a second.
    Missed,
    /// The BACKUP took over on its own, not because of the cut: the MASTER had been
    /// silent for a Master_Down_Interval before its link went down (it was starved of
    /// CPU), or the BACKUP spoke between settling and the cut. Not a detection; the
    /// trial is repeated and the flap counted.
    Flap,
}

fn detect_once(
    side: &super::lab::Side,
    pair: &mut Pair,
    interval: Duration,
    down_adverts: u8,
) -> anyhow::Result<Cut> {
    wait_steady(pair, interval, down_adverts)?;
    let cut = realtime_ns();
    side.lab.set_link("lb01", false)?;
    let bound = master_down(interval, down_adverts);
    let within = bound * 2 + Duration::from_secs(1);
    let took = pair
        .tail
        .wait_for(within, |a| first_after(a, BACKUP, cut).is_some())?;
    side.lab.set_link("lb01", true)?;
    if !took {
        return Ok(Cut::Missed);
    }
    let adv = &pair.tail.adverts;
    let Some(first) = first_after(adv, BACKUP, cut).map(|a| a.ts) else {
        return Ok(Cut::Missed);
    };
    // In time order: the capture's lines need not be (two interfaces, one capture).
    let mut masters: Vec<u64> = adv
        .iter()
        .filter(|a| a.src == MASTER && a.prio != 0 && a.ts < first)
        .map(|a| a.ts)
        .collect();
    masters.sort_unstable();
    let Some(&last) = masters.last() else {
        bail!("no advert from the MASTER before the takeover");
    };
    // The MASTER's own silence before its last advert: a whole Master_Down_Interval
    // means the BACKUP's timer ran out before the cut mattered.
    let gap = masters
        .len()
        .checked_sub(2)
        .map_or(0, |i| last - masters[i]);
    let slack = 1_000_000;
    if gap + slack >= bound.as_nanos() as u64 && first - last + slack < bound.as_nanos() as u64 {
        return Ok(Cut::Flap);
    }
    Ok(Cut::Took(ms(first - last)))
}

/// The BACKUP's own account of its last takeover, from its debug log line: when the
/// kernel's timer wrote its event, when the agent woke, when the advert left (µs after
/// the down deadline), and which timer kept the deadline.
fn takeover_stages(backup: &Node) -> Option<String> {
    let log = backup.log_text();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("first advert as Master, after the down deadline"))?;
    let field = |name: &str| {
        let at = line.find(&format!("{name}="))? + name.len() + 1;
        line[at..]
            .split_whitespace()
            .next()
            .map(|v| v.trim_matches('"').to_owned())
    };
    // Signed: the kernel's alarm and the agent's wake-up come ahead of the deadline.
    let signed = |name: &str| {
        let v = field(name)?;
        Some(v.parse::<f64>().map_or(v, |x| format!("{x:+}")))
    };
    Some(format!(
        "{} timer, event {} µs, awake {} µs, to the socket {} µs, sent {} µs",
        field("timer")?,
        signed("kernel_us")?,
        signed("woke_us")?,
        signed("sending_us")?,
        signed("sent_us")?
    ))
}

/// Processes that spin on the CPU for as long as this lives.
struct BusyLoops(Vec<std::process::Child>);

impl BusyLoops {
    fn start(n: usize) -> anyhow::Result<Self> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(
                std::process::Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()?,
            );
        }
        Ok(Self(v))
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn detection(
    sides: &mut Sides,
    interval_ms: u32,
    down_adverts: u8,
    busy_loops: usize,
    trials: usize,
) -> anyhow::Result<Detection> {
    let interval = Duration::from_millis(u64::from(interval_ms));
    let mut pairs = start_pairs(
        sides,
        &format!("detect-{interval_ms}ms-{down_adverts}-busy{busy_loops}"),
        interval_ms,
        down_adverts,
    )?;
    // The agents under test share the machine with loops that never yield: the down
    // timer must still fire on time.
    let _busy = BusyLoops::start(busy_loops)?;
    let mut out = Detection {
        interval_ms,
        down_adverts,
        busy_loops,
        rfc_ms: master_down(interval, down_adverts).as_secs_f64() * 1e3,
        trials: BTreeMap::new(),
        failures: BTreeMap::new(),
        flaps: BTreeMap::new(),
    };
    for t in 0..trials {
        for i in sides.order(t) {
            let side = &sides.0[i];
            // A flap is retried, at most `trials` times per configuration.
            loop {
                let r = detect_once(side, &mut pairs[i], interval, down_adverts)?;
                let what = match r {
                    Cut::Took(v) => {
                        out.trials.entry(side.imp).or_default().push(v);
                        let stages = match side.imp {
                            Impl::Vigil => takeover_stages(&pairs[i].backup)
                                .map_or(String::new(), |s| format!("; after the deadline: {s}")),
                            Impl::Keepalived => String::new(),
                        };
                        format!("{v:.2} ms (RFC {:.2}){stages}", out.rfc_ms)
                    }
                    Cut::Missed => {
                        *out.failures.entry(side.imp).or_default() += 1;
                        "no takeover".into()
                    }
                    Cut::Flap => {
                        *out.flaps.entry(side.imp).or_default() += 1;
                        "flap: the BACKUP took over before the cut mattered; again".into()
                    }
                };
                eprintln!(
                    "bench: detection {interval_ms} ms × {down_adverts}, {busy_loops} busy loops, \
                     trial {}, {}: {what}",
                    t + 1,
                    side.imp.name(),
                );
                if !matches!(r, Cut::Flap)
                    || out.flaps.get(&side.imp).copied().unwrap_or(0) > trials
                {
                    break;
                }
            }
        }
    }
    for p in &mut pairs {
        p.tail.stop()?;
    }
    Ok(out)
}

impl Handover {
    /// No trials (the part was not run).
    pub fn empty(interval_ms: u32) -> Self {
        Self {
            interval_ms,
            skew_ms: skew(Duration::from_millis(u64::from(interval_ms))).as_secs_f64() * 1e3,
            from_signal: BTreeMap::new(),
            from_zero: BTreeMap::new(),
            failures: BTreeMap::new(),
        }
    }
}

impl BfdDetection {
    /// No trials (the part was not run).
    pub fn empty() -> Self {
        Self {
            interval_ms: 1000,
            rfc_ms: master_down(Duration::from_secs(1), 3).as_secs_f64() * 1e3,
            trials: BTreeMap::new(),
            failures: BTreeMap::new(),
            cpu: None,
        }
    }
}

/// BFD-assisted takeover at 1 s adverts: the MASTER's link cut → the new MASTER's first
/// advert, on the capture.
pub fn detection_bfd(
    sides: &mut Sides,
    trials: usize,
    cpu_window: Duration,
) -> anyhow::Result<BfdDetection> {
    let interval_ms = 1000;
    let interval = Duration::from_millis(u64::from(interval_ms));
    let mut pairs = start_pairs_with(sides, "detect-bfd", interval_ms, 3, true)?;
    let mut out = BfdDetection {
        interval_ms,
        rfc_ms: master_down(interval, 3).as_secs_f64() * 1e3,
        trials: BTreeMap::new(),
        failures: BTreeMap::new(),
        cpu: None,
    };
    for (i, side) in sides.0.iter().enumerate() {
        if side.imp != Impl::Vigil {
            continue;
        }
        let pair = &mut pairs[i];
        wait_steady(pair, interval, 3)?;
        // Session Up and past its Poll Sequence (see below), then the steady window.
        std::thread::sleep(Duration::from_secs(3));
        let cpu = bfd_cpu(&pair.backup, &side.host("lb02"), cpu_window)?;
        eprintln!(
            "bench: CPU per BFD session at 10 ms x 3 (vigil Backup): agent {:.3} %, XDP {}",
            cpu.agent_pct,
            cpu.xdp_pct
                .map_or("not measured".into(), |x| format!("{x:.4} % of a core")),
        );
        out.cpu = Some(cpu);
    }
    for t in 0..trials {
        for i in sides.order(t) {
            let side = &sides.0[i];
            let pair = &mut pairs[i];
            wait_steady(pair, interval, 3)?;
            // The BFD session comes Up within about two seconds of the Backup hearing
            // the Master (slow start at 1 s, then the Poll to 10 ms).
            std::thread::sleep(Duration::from_secs(3));
            // What the Backup's session looked like just before the cut, for a trial
            // that fell back to the RFC timer.
            let before = (side.imp == Impl::Vigil)
                .then(|| pair.backup.status().ok())
                .flatten()
                .map(|st| st["bfd"].clone());
            let cut = realtime_ns();
            side.lab.set_link("lb01", false)?;
            let within = master_down(interval, 3) * 2;
            let took = pair
                .tail
                .wait_for(within, |a| first_after(a, BACKUP, cut).is_some())?;
            side.lab.set_link("lb01", true)?;
            let first = first_after(&pair.tail.adverts, BACKUP, cut).map(|a| a.ts);
            let what = match (took, first) {
                (true, Some(f)) => {
                    let v = ms(f - cut);
                    out.trials.entry(side.imp).or_default().push(v);
                    match &before {
                        Some(b) if v > 1000.0 => {
                            format!("{v:.2} ms after the cut; the Backup's BFD before it: {b}")
                        }
                        _ => format!("{v:.2} ms after the cut"),
                    }
                }
                _ => {
                    *out.failures.entry(side.imp).or_default() += 1;
                    "no takeover".into()
                }
            };
            eprintln!(
                "bench: detection with BFD (vigil only), 1 s adverts, trial {}, {}: {what}",
                t + 1,
                side.imp.name()
            );
        }
    }
    for p in &mut pairs {
        p.tail.stop()?;
    }
    Ok(out)
}

pub fn handover(sides: &mut Sides, interval_ms: u32, trials: usize) -> anyhow::Result<Handover> {
    let interval = Duration::from_millis(u64::from(interval_ms));
    let mut pairs = start_pairs(sides, &format!("handover-{interval_ms}ms"), interval_ms, 3)?;
    let mut out = Handover {
        interval_ms,
        skew_ms: skew(interval).as_secs_f64() * 1e3,
        from_signal: BTreeMap::new(),
        from_zero: BTreeMap::new(),
        failures: BTreeMap::new(),
    };
    for t in 0..trials {
        for i in sides.order(t) {
            let imp = sides.0[i].imp;
            let pair = &mut pairs[i];
            wait_steady(pair, interval, 3)?;
            let sent = realtime_ns();
            pair.master.signal(libc::SIGTERM);
            let took = pair.tail.wait_for(Duration::from_secs(5), |a| {
                first_after(a, BACKUP, sent).is_some()
            })?;
            if !pair.master.wait_exit(Duration::from_secs(5)) {
                bail!("{} did not exit on SIGTERM", imp.name());
            }
            let adv = &pair.tail.adverts;
            let first = first_after(adv, BACKUP, sent).map(|a| a.ts);
            let zero = adv
                .iter()
                .find(|a| a.src == MASTER && a.prio == 0 && a.ts > sent)
                .map(|a| a.ts);
            match (took, first) {
                (true, Some(f)) => {
                    out.from_signal
                        .entry(imp)
                        .or_default()
                        .push(ms(f.saturating_sub(sent)));
                    if let Some(z) = zero {
                        out.from_zero
                            .entry(imp)
                            .or_default()
                            .push(ms(f.saturating_sub(z)));
                    }
                    eprintln!(
                        "bench: handover trial {}, {}: {:.2} ms after SIGTERM{}",
                        t + 1,
                        imp.name(),
                        ms(f.saturating_sub(sent)),
                        zero.map_or(", no priority-0 advert seen".into(), |z| format!(
                            ", {:.2} ms after the priority-0 advert",
                            ms(f.saturating_sub(z))
                        ))
                    );
                }
                _ => {
                    *out.failures.entry(imp).or_default() += 1;
                    eprintln!(
                        "bench: handover trial {}, {}: no takeover",
                        t + 1,
                        imp.name()
                    );
                }
            }
            pair.master.respawn()?;
            pair.master.wait_up(Duration::from_secs(15))?;
        }
    }
    for p in &mut pairs {
        p.tail.stop()?;
    }
    Ok(out)
}
