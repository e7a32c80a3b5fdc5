//! BFD under noise: a pair with 1 s adverts — vigil with BFD 10 ms × 3 between lb01 and
//! lb02, keepalived plain (it has no BFD-assisted takeover) — through the four junk
//! floods of the flood part, then with 1 % of the packets each node sends dropped (an
//! iptables `statistic` rule in each namespace; BFD is most of what vigil's nodes send).
//! Measured: false takeovers (runs of BACKUP adverts on the capture) and, for vigil, BFD
//! sessions that left Up. The floods run one lab after the other (a flood takes a core;
//! two at once would measure the machine), the loss on both at once; the Master_Down_Interval
//! waited for late takeovers is shared.
//!
//! Both nodes are namespaces of one machine, so a stall of the machine (every CPU at
//! once: a virtual machine's host not running it) freezes the Master's transmit and the
//! Backup's receive together, which no pair of real hosts shares; and with two CPUs, a
//! stall of one holds whichever node's BFD thread is on it. Each step therefore also
//! measures the machine's own stalls ([`StallMeter`]), and the report gives them next to
//! the sessions that went down. An implementation's step whose window held a stall of
//! every CPU at once of [`MACHINE_STALL_LIMIT_MS`] or more measured the machine, not the
//! floods: it is repeated (at most [`ATTEMPTS`] in all), every attempt is reported, and
//! the verdict comes from the first attempt without such a stall.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use vigil_tests::{netns, run};

use super::flood::{self, KINDS};
use super::lab::{
    BACKUP, BACKUP_PRIORITY, MASTER_PRIORITY, Sides, master_down, settle_time, steady,
};
use super::measure::{StallMeter, Stalls, Tail, realtime_ns};
use super::node::{BFD_INTERVAL_MS, BFD_MULTIPLIER, Impl, Node, specs};

/// Advert interval of the pair.
pub const INTERVAL_MS: u32 = 1000;
/// Packet loss on each agent's link, percent.
pub const LOSS_PERCENT: f64 = 1.0;

/// A stall of every CPU at once this long freezes the Master's transmit and the Backup's
/// receive together for at least the detection time less one interval, ms: the packet
/// due during the freeze leaves only after it, and the Backup's detection timer
/// (RFC 5880 §6.8.4), restarted by the packet before, then has under one interval left
/// when the freeze ends, so no BFD of this configuration can survive it, whatever the
/// agent does. Two real hosts never freeze together, so an attempt with such a stall is
/// not a measurement of the agent.
pub const MACHINE_STALL_LIMIT_MS: f64 = (BFD_INTERVAL_MS * (BFD_MULTIPLIER - 1)) as f64;
/// Attempts of a step at most, while each has a machine stall of
/// [`MACHINE_STALL_LIMIT_MS`] or more.
pub const ATTEMPTS: usize = 3;

/// One attempt of one step (a flood, or the loss) for one implementation.
#[derive(Clone, Debug)]
pub struct NoiseRun {
    /// Junk packets sent (floods), 0 for the loss.
    pub sent: u64,
    pub seconds: f64,
    /// Takeovers by the BACKUP during the step and one Master_Down_Interval after.
    pub takeovers: usize,
    /// vigil: times a BFD session on either node left Up during the step.
    pub session_downs: Option<u64>,
    /// vigil: BFD packets the BACKUP received during the step.
    pub bfd_received: Option<u64>,
    /// vigil: packets the standby transmitters of both nodes repeated during the step
    /// (their BFD thread's CPU was held).
    pub standby_sent: Option<u64>,
    /// vigil: why sessions that went down did, as each node's status says
    /// (`node: reason`).
    pub down_reasons: Vec<String>,
    /// The longest stall of every CPU at once within this attempt's window (its step and
    /// the wait after it), ms.
    pub machine_stall_ms: f64,
    /// The machine's own stalls over the whole measurement this attempt was part of (the
    /// other implementation's step included when they ran together or one after the
    /// other).
    pub stalls: Stalls,
}

impl NoiseRun {
    /// The machine froze every CPU long enough to take any session down: not a
    /// measurement of the agent.
    pub fn machine_stopped(&self) -> bool {
        self.machine_stall_ms >= MACHINE_STALL_LIMIT_MS
    }
}

/// One step for both implementations.
#[derive(Clone, Debug)]
pub struct NoiseStep {
    pub key: &'static str,
    pub label: String,
    /// Every attempt, in order.
    pub runs: BTreeMap<Impl, Vec<NoiseRun>>,
}

impl NoiseStep {
    /// The attempt that counts for `imp`: the first the machine did not stop.
    pub fn counted(&self, imp: Impl) -> Option<&NoiseRun> {
        self.runs.get(&imp)?.iter().find(|r| !r.machine_stopped())
    }
}

/// All steps.
#[derive(Clone, Debug, Default)]
pub struct BfdNoise {
    pub steps: Vec<NoiseStep>,
}

struct Pair {
    master: Node,
    backup: Node,
    tail: Tail,
}

/// `node: last down reason` of each session of a vigil node, and for the kernel's last
/// timeout how long after its deadline the agent read it (a timer that fired late
/// listened one more detection time first).
fn down_reasons(n: &Node) -> Vec<String> {
    n.status()
        .ok()
        .and_then(|s| s["bfd"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|x| {
            let r = x["last_down_reason"].as_str()?;
            let k = &x["kernel_down"];
            let kernel = match (k["deadline_ns"].as_u64(), k["heard_ns"].as_u64()) {
                (Some(d), Some(h)) => format!(
                    " [kernel timeout read {:.1} ms after its deadline]",
                    h.saturating_sub(d) as f64 / 1e6
                ),
                _ => String::new(),
            };
            Some(format!("{}: {r}{kernel}", n.host.name))
        })
        .collect()
}

/// (session downs, packets received, packets the standby sent) summed over a vigil
/// node's BFD sessions.
fn bfd_counts(n: &Node) -> Option<(u64, u64, u64)> {
    if n.imp != Impl::Vigil {
        return None;
    }
    let s = n.status().ok()?;
    let sessions = s["bfd"].as_array()?;
    let sum = |k: &str| sessions.iter().filter_map(|x| x[k].as_u64()).sum::<u64>();
    Some((sum("downs"), sum("received"), sum("standby_sent")))
}

fn bfd_up(n: &Node) -> bool {
    n.imp != Impl::Vigil
        || n.status().is_ok_and(|s| {
            s["bfd"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["state"] == "Up"))
        })
}

/// Runs of BACKUP adverts separated by more than two intervals.
fn takeovers(tail: &mut Tail, from: u64, to: u64) -> anyhow::Result<usize> {
    tail.poll()?;
    let gap = 2 * u64::from(INTERVAL_MS) * 1_000_000;
    let mut runs = 0;
    let mut last: Option<u64> = None;
    for a in tail
        .adverts
        .iter()
        .filter(|a| a.src == BACKUP && a.ts >= from && a.ts <= to)
    {
        if last.is_none_or(|l| a.ts.saturating_sub(l) > gap) {
            runs += 1;
        }
        last = Some(a.ts);
    }
    Ok(runs)
}

fn settle(sides: &Sides, pairs: &mut [Pair]) -> anyhow::Result<()> {
    let interval = Duration::from_millis(u64::from(INTERVAL_MS));
    for (side, pair) in sides.0.iter().zip(pairs.iter_mut()) {
        if !pair
            .tail
            .wait_for(settle_time(interval, 3), |a| steady(a, interval))?
        {
            bail!("{}: the pair did not settle", side.imp.name());
        }
        // The Backup's session comes Up within about two seconds of hearing the Master.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(bfd_up(&pair.master) && bfd_up(&pair.backup)) {
            if std::time::Instant::now() > deadline {
                bail!("{}: BFD sessions not Up", side.imp.name());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// How a step runs: its key, label, and either together on every side or one side after
/// the other in the order of turn `turn` (alternating, as the other parts do).
struct How {
    key: &'static str,
    label: String,
    together: bool,
    turn: usize,
}

/// Measures a step as `how` says, again (at most [`ATTEMPTS`] in all) for each side whose
/// attempt the machine stopped.
fn measure_step(
    sides: &Sides,
    pairs: &mut [Pair],
    how: How,
    step: impl Fn(usize) -> anyhow::Result<u64> + Sync,
) -> anyhow::Result<NoiseStep> {
    let mut runs: BTreeMap<Impl, Vec<NoiseRun>> = BTreeMap::new();
    let mut which: Vec<usize> = (0..sides.0.len()).collect();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            eprintln!(
                "bench: BFD under noise, {}: attempt {attempt} for {} (the machine stopped \
                 every CPU for {MACHINE_STALL_LIMIT_MS:.0} ms or more)",
                how.label,
                which
                    .iter()
                    .map(|&i| sides.0[i].imp.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let got = measure(sides, pairs, &how, &which, &step)?;
        which.clear();
        for (i, r) in got {
            if r.machine_stopped() {
                which.push(i);
            }
            runs.entry(sides.0[i].imp).or_default().push(r);
        }
        if which.is_empty() {
            break;
        }
    }
    Ok(NoiseStep {
        key: how.key,
        label: how.label,
        runs,
    })
}

/// Runs `step` on the sides `which` as `how` says, then waits one Master_Down_Interval
/// for late takeovers and counts them.
fn measure(
    sides: &Sides,
    pairs: &mut [Pair],
    how: &How,
    which: &[usize],
    step: &(impl Fn(usize) -> anyhow::Result<u64> + Sync),
) -> anyhow::Result<Vec<(usize, NoiseRun)>> {
    let interval = Duration::from_millis(u64::from(INTERVAL_MS));
    settle(sides, pairs)?;
    let before: Vec<_> = pairs
        .iter()
        .map(|p| (bfd_counts(&p.master), bfd_counts(&p.backup)))
        .collect();
    let meter = StallMeter::start();
    let timed = |i: usize| {
        let t0 = realtime_ns();
        let mono0 = vigil_tests::netns::monotonic_ns();
        let started = std::time::Instant::now();
        let sent = step(i);
        (t0, mono0, started.elapsed().as_secs_f64(), sent)
    };
    let How {
        label,
        together,
        turn,
        ..
    } = how;
    let (together, turn) = (*together, *turn);
    let order: Vec<usize> = if together {
        which.to_vec()
    } else {
        sides
            .order(turn)
            .into_iter()
            .filter(|i| which.contains(i))
            .collect()
    };
    let done: Vec<(u64, u64, f64, anyhow::Result<u64>)> = if together {
        std::thread::scope(|s| {
            let handles: Vec<_> = order
                .iter()
                .map(|&i| {
                    let timed = &timed;
                    s.spawn(move || timed(i))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        (0, 0, 0.0, Err(anyhow::anyhow!("step thread panicked")))
                    })
                })
                .collect()
        })
    } else {
        order.iter().map(|&i| timed(i)).collect()
    };
    std::thread::sleep(master_down(interval, 3) + interval / 4);
    let t1 = realtime_ns();
    let mono1 = vigil_tests::netns::monotonic_ns();
    let stalls = meter.stop();
    eprintln!(
        "bench: BFD under noise, {label}: the machine stalled up to {:.1} ms on one CPU \
         ({} stalls of 20 ms or more), {:.1} ms on every CPU at once ({} of 20 ms or more)",
        stalls.longest_one_ms, stalls.one_over_20ms, stalls.longest_all_ms, stalls.all_over_20ms
    );
    let mut runs = Vec::new();
    for (i, (t0, mono0, seconds, sent)) in order.into_iter().zip(done) {
        let side = &sides.0[i];
        let sent = sent.map_err(|e| anyhow::anyhow!("{}: {e:#}", side.imp.name()))?;
        let pair = &mut pairs[i];
        let after = (bfd_counts(&pair.master), bfd_counts(&pair.backup));
        let (downs, received, standby_sent) = match (before[i], after) {
            ((Some(m0), Some(b0)), (Some(m1), Some(b1))) => (
                Some(m1.0.saturating_sub(m0.0) + b1.0.saturating_sub(b0.0)),
                Some(b1.1.saturating_sub(b0.1)),
                Some(m1.2.saturating_sub(m0.2) + b1.2.saturating_sub(b0.2)),
            ),
            _ => (None, None, None),
        };
        let down_reasons = if downs.is_some_and(|d| d > 0) {
            let mut r = down_reasons(&pair.master);
            r.extend(down_reasons(&pair.backup));
            r
        } else {
            Vec::new()
        };
        let r = NoiseRun {
            sent,
            seconds,
            takeovers: takeovers(&mut pair.tail, t0, t1)?,
            session_downs: downs,
            bfd_received: received,
            standby_sent,
            down_reasons,
            machine_stall_ms: stalls.longest_all_within_ms(mono0, mono1),
            stalls: stalls.clone(),
        };
        eprintln!(
            "bench: BFD under noise, {label}, {}: {:.0} packets/s, {} takeovers{}{}{}; \
             every CPU stopped at most {:.1} ms in its window{}",
            side.imp.name(),
            r.sent as f64 / r.seconds.max(1e-9),
            r.takeovers,
            r.session_downs
                .map_or(String::new(), |d| format!(", {d} BFD session downs")),
            r.standby_sent.map_or(String::new(), |n| format!(
                ", {n} packets sent by the standby transmitters"
            )),
            if r.down_reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.down_reasons.join("; "))
            },
            r.machine_stall_ms,
            if r.machine_stopped() {
                " (not counted)"
            } else {
                ""
            }
        );
        runs.push((i, r));
    }
    Ok(runs)
}

/// The iptables rule that drops [`LOSS_PERCENT`] of what a namespace sends.
fn loss_rule(op: &str) -> Vec<String> {
    [
        "iptables-legacy",
        op,
        "OUTPUT",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        &(LOSS_PERCENT / 100.0).to_string(),
        "-j",
        "DROP",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Loss on what namespace `ns` sends, for as long as this lives.
struct Loss {
    ns: String,
}

impl Loss {
    fn on(ns: &str) -> anyhow::Result<Self> {
        run(std::process::Command::new("ip")
            .args(["netns", "exec", ns])
            .args(loss_rule("-A")))
        .context("iptables statistic rule (`cargo xtask setup` installs iptables)")?;
        Ok(Self { ns: ns.to_owned() })
    }
}

impl Drop for Loss {
    fn drop(&mut self) {
        let _ = run(std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(loss_rule("-D")));
    }
}

/// A quiet baseline, the floods of `kinds` (keys of [`KINDS`]; all when empty) for
/// `flood_seconds` each, then `loss_seconds` of 1 % loss.
pub fn bfd_noise(
    sides: &mut Sides,
    kinds: &[&str],
    flood_seconds: f64,
    loss_seconds: f64,
) -> anyhow::Result<BfdNoise> {
    let mut pairs = Vec::new();
    let mut macs = Vec::new();
    for side in sides.0.iter_mut() {
        let tail = side.capture("bfd-noise")?;
        let with_bfd = |mut s: Vec<super::node::Spec>| {
            for sp in &mut s {
                sp.bfd = true;
            }
            s
        };
        let master = side.start(
            "lb01",
            &with_bfd(specs(1, MASTER_PRIORITY, true, INTERVAL_MS, 3)),
        )?;
        let backup = side.start(
            "lb02",
            &with_bfd(specs(1, BACKUP_PRIORITY, false, INTERVAL_MS, 3)),
        )?;
        let mac = flood::pin_backup_mac(side)?;
        macs.push(mac);
        pairs.push(Pair {
            master,
            backup,
            tail,
        });
    }
    let duration = Duration::from_secs_f64(flood_seconds);
    let mut out = BfdNoise::default();
    // The same wait with nothing sent: what the machine alone does to the sessions.
    let quiet = How {
        key: "quiet",
        label: "no flood (baseline)".into(),
        together: true,
        turn: 0,
    };
    out.steps.push(measure_step(sides, &mut pairs, quiet, |_| {
        std::thread::sleep(duration);
        Ok(0)
    })?);
    let chosen = KINDS
        .into_iter()
        .filter(|(k, _)| kinds.is_empty() || kinds.contains(k));
    for (turn, (key, label)) in chosen.enumerate() {
        let junk: Vec<(String, Vec<Vec<u8>>)> = sides
            .0
            .iter()
            .zip(&macs)
            .map(|(side, mac)| {
                let gen_host = side.host("gen");
                let frames = flood::frames(key, &gen_host, gen_host.mac("eth0")?, *mac);
                Ok((gen_host.ns.clone(), frames))
            })
            .collect::<anyhow::Result<_>>()?;
        let step = measure_step(
            sides,
            &mut pairs,
            How {
                key,
                label: format!("flood {label}"),
                together: false,
                turn,
            },
            |i| {
                let (ns, frames) = &junk[i];
                netns::flood(ns, "eth0", frames, duration)
            },
        )?;
        out.steps.push(step);
    }
    let hosts: Vec<(String, String)> = sides
        .0
        .iter()
        .map(|s| (s.host("lb01").ns, s.host("lb02").ns))
        .collect();
    let loss_for = Duration::from_secs_f64(loss_seconds);
    let step = measure_step(
        sides,
        &mut pairs,
        How {
            key: "loss",
            label: format!("{LOSS_PERCENT} % of sent packets lost"),
            together: true,
            turn: 0,
        },
        |i| {
            let (a, b) = &hosts[i];
            let _on = (Loss::on(a)?, Loss::on(b)?);
            std::thread::sleep(loss_for);
            Ok(0)
        },
    )?;
    out.steps.push(step);
    for p in &mut pairs {
        p.tail.stop()?;
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn attempt(machine_stall_ms: f64, downs: u64) -> NoiseRun {
        NoiseRun {
            sent: 0,
            seconds: 1.0,
            takeovers: 0,
            session_downs: Some(downs),
            bfd_received: None,
            standby_sent: None,
            down_reasons: Vec::new(),
            machine_stall_ms,
            stalls: Stalls::default(),
        }
    }

    pub(crate) fn step(v: Vec<NoiseRun>) -> NoiseStep {
        NoiseStep {
            key: "quiet",
            label: String::new(),
            runs: BTreeMap::from([(Impl::Vigil, v)]),
        }
    }

    #[test]
    fn limit_is_detection_time_less_one_interval() {
        assert_eq!(MACHINE_STALL_LIMIT_MS, 20.0);
    }

    #[test]
    fn the_first_attempt_the_machine_did_not_stop_counts() {
        let s = step(vec![attempt(31.0, 2), attempt(19.9, 1), attempt(0.0, 0)]);
        let c = s.counted(Impl::Vigil).expect("the second attempt counts");
        assert_eq!(c.session_downs, Some(1));
        let s = step(vec![attempt(20.0, 2), attempt(25.0, 0), attempt(40.0, 0)]);
        assert!(s.counted(Impl::Vigil).is_none());
        assert!(s.counted(Impl::Keepalived).is_none());
    }
}
