//! The results as a table with goals (Markdown), as JSON with every trial, and as the
//! README section.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::json;

use super::Results;
use super::burst;
use super::detection::Detection;
use super::flood::{self, Flood};
use super::measure::{Stats, stats};
use super::node::{BFD_INTERVAL_MS, BFD_MULTIPLIER, Impl};
use super::scale::{self, Scale};
use super::startup;

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub scenario: String,
    pub vigil: String,
    pub keepalived: String,
    pub rfc: String,
    pub ratio: String,
    pub goal: String,
    /// None: no goal for this row.
    pub met: Option<bool>,
    /// Why it was missed, or a remark.
    pub note: String,
}

fn ms(v: f64) -> String {
    if v.abs() < 100.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn ratio(v: f64, k: f64) -> String {
    if k > 0.0 && v.is_finite() {
        let r = v / k;
        if r == 0.0 {
            "0×".into()
        } else if r < 0.01 {
            format!("{r:.4}×")
        } else {
            format!("{r:.2}×")
        }
    } else {
        "—".into()
    }
}

fn med_p95(s: Option<&Stats>, failures: usize, total: usize) -> String {
    let mut t = match s {
        Some(s) => format!("{} / {}", ms(s.median), ms(s.p95)),
        None => "no result".into(),
    };
    if failures > 0 {
        let _ = write!(t, " ({failures} of {total} trials: no takeover)");
    }
    t
}

fn of(m: &BTreeMap<Impl, Vec<f64>>, imp: Impl) -> Option<Stats> {
    m.get(&imp).and_then(|v| stats(v))
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { s / n as f64 }
}

fn iv_label(ms: u32) -> String {
    if ms >= 1000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

fn detection_rows(d: &Detection, rows: &mut Vec<Row>) {
    let v = of(&d.trials, Impl::Vigil);
    let k = of(&d.trials, Impl::Keepalived);
    let fail = |imp| d.failures.get(&imp).copied().unwrap_or(0);
    let total = |imp| d.trials.get(&imp).map_or(0, Vec::len) + fail(imp);
    let (met, note) = match &v {
        Some(s) if fail(Impl::Vigil) == 0 => {
            let late = s.p95 - d.rfc_ms;
            let early = d.rfc_ms - s.min;
            if late > 0.5 {
                (false, format!("p95 is {late:.2} ms over the RFC value"))
            } else if early > 0.5 {
                (
                    false,
                    format!("a trial took over {early:.2} ms before the RFC value"),
                )
            } else {
                (true, String::new())
            }
        }
        _ => (false, "vigil missed takeovers".into()),
    };
    rows.push(Row {
        scenario: format!(
            "Detection, {} adverts, down_timer_adverts {}{}: median / p95",
            iv_label(d.interval_ms),
            d.down_adverts,
            if d.busy_loops > 0 {
                format!(", {} busy loops on the machine", d.busy_loops)
            } else {
                String::new()
            }
        ),
        vigil: med_p95(v.as_ref(), fail(Impl::Vigil), total(Impl::Vigil)),
        keepalived: med_p95(k.as_ref(), fail(Impl::Keepalived), total(Impl::Keepalived)),
        rfc: ms(d.rfc_ms),
        ratio: match (&v, &k) {
            (Some(v), Some(k)) => ratio(v.p95, k.p95),
            _ => "—".into(),
        },
        goal: "p95 within 0.5 ms of the RFC value (and never early)".into(),
        met: Some(met),
        note,
    });
}

/// BFD-assisted takeover: vigil with BFD against keepalived without, both from the cut.
fn bfd_row(d: &super::detection::BfdDetection, rows: &mut Vec<Row>) {
    let v = of(&d.trials, Impl::Vigil);
    let k = of(&d.trials, Impl::Keepalived);
    let fail = |imp| d.failures.get(&imp).copied().unwrap_or(0);
    let total = |imp| d.trials.get(&imp).map_or(0, Vec::len) + fail(imp);
    let goal_ms = 50.0;
    let (met, note) = match &v {
        Some(s) if fail(Impl::Vigil) == 0 && s.p95 <= goal_ms => (true, String::new()),
        Some(s) if fail(Impl::Vigil) == 0 => {
            (false, format!("p95 {} over the goal", ms(s.p95 - goal_ms)))
        }
        _ if total(Impl::Vigil) + total(Impl::Keepalived) == 0 => (false, "not run".into()),
        _ => (false, "vigil missed takeovers".into()),
    };
    rows.push(Row {
        scenario: format!(
            "Detection with BFD 10 ms × 3 (vigil; keepalived without BFD), {} adverts: MASTER's link cut → new MASTER's first advert, median / p95",
            iv_label(d.interval_ms)
        ),
        vigil: med_p95(v.as_ref(), fail(Impl::Vigil), total(Impl::Vigil)),
        keepalived: med_p95(k.as_ref(), fail(Impl::Keepalived), total(Impl::Keepalived)),
        rfc: ms(d.rfc_ms),
        ratio: match (&v, &k) {
            (Some(v), Some(k)) => ratio(v.p95, k.p95),
            _ => "—".into(),
        },
        goal: format!("vigil p95 ≤ {goal_ms:.0} ms"),
        // Not run (`--only` left the part out): no trial of either side, nothing judged.
        met: (total(Impl::Vigil) + total(Impl::Keepalived) > 0).then_some(met),
        note,
    });
}

/// "31.2 ms", "31.2 and 25.0 ms", "31.2, 25.0 and 40.1 ms".
fn ms_list(v: &[f64]) -> String {
    let each: Vec<String> = v.iter().map(|x| format!("{x:.1}")).collect();
    match each.split_last() {
        Some((last, [])) => format!("{last} ms"),
        Some((last, rest)) => format!("{} and {last} ms", rest.join(", ")),
        None => String::new(),
    }
}

/// One attempt of a BFD-under-noise step, as a cell says it.
fn noise_attempt(r: &super::bfd_noise::NoiseRun) -> String {
    let mut c = format!(
        "{} takeover{}",
        r.takeovers,
        if r.takeovers == 1 { "" } else { "s" }
    );
    if let Some(d) = r.session_downs {
        let _ = write!(c, ", {d} BFD session down{}", if d == 1 { "" } else { "s" });
    }
    if r.sent > 0 {
        let _ = write!(
            c,
            " at {:.0}k junk packets/s",
            r.sent as f64 / r.seconds / 1e3
        );
    }
    if let Some(n) = r.standby_sent.filter(|&n| n > 0) {
        let _ = write!(c, "; {n} packets from the standby transmitters");
    }
    if !r.down_reasons.is_empty() {
        let _ = write!(c, " (last down: {})", r.down_reasons.join("; "));
    }
    c
}

/// Why an implementation's step has no counted attempt.
fn noise_not_measured(attempts: &[super::bfd_noise::NoiseRun]) -> String {
    let stalls: Vec<f64> = attempts.iter().map(|r| r.machine_stall_ms).collect();
    format!(
        "not measured: the machine stopped every CPU for {} in each of {} attempts",
        ms_list(&stalls),
        attempts.len()
    )
}

fn bfd_noise_rows(n: &super::bfd_noise::BfdNoise, rows: &mut Vec<Row>) {
    for step in &n.steps {
        // Every attempt is shown; those the machine stopped are marked and not counted.
        let cell = |imp| match step.runs.get(&imp) {
            Some(attempts) if attempts.len() == 1 && !attempts[0].machine_stopped() => {
                noise_attempt(&attempts[0])
            }
            Some(attempts) => {
                let mut each: Vec<String> = attempts
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        if r.machine_stopped() {
                            format!(
                                "attempt {} (machine stopped every CPU for {:.1} ms: not \
                                 counted): {}",
                                i + 1,
                                r.machine_stall_ms,
                                noise_attempt(r)
                            )
                        } else {
                            format!("attempt {} (counted): {}", i + 1, noise_attempt(r))
                        }
                    })
                    .collect();
                if step.counted(imp).is_none() {
                    each.push(noise_not_measured(attempts));
                }
                each.join("; ")
            }
            None => "—".into(),
        };
        let v = step.counted(Impl::Vigil);
        let k = step.counted(Impl::Keepalived);
        let (met, note) = match v {
            Some(r) => {
                let mut why = Vec::new();
                if r.takeovers > 0 {
                    why.push(format!("{} false takeovers", r.takeovers));
                }
                match r.session_downs {
                    Some(0) => {}
                    Some(d) => why.push(format!("{d} BFD session downs")),
                    None => why.push("BFD sessions not read".into()),
                }
                let st = &r.stalls;
                if !why.is_empty() && st.one_over_20ms > 0 {
                    why.push(format!(
                        "meanwhile the machine stalled {} times for 20 ms or more on one CPU \
                         (longest {:.1} ms) and {} times on every CPU at once (longest \
                         {:.1} ms in this attempt's window); the detection time is {} ms",
                        st.one_over_20ms,
                        st.longest_one_ms,
                        st.all_over_20ms,
                        r.machine_stall_ms,
                        BFD_INTERVAL_MS * BFD_MULTIPLIER
                    ));
                }
                (why.is_empty(), why.join(", "))
            }
            None => match step.runs.get(&Impl::Vigil) {
                Some(attempts) => (false, noise_not_measured(attempts)),
                None => (false, "not measured".into()),
            },
        };
        rows.push(Row {
            scenario: format!(
                "BFD {BFD_INTERVAL_MS} ms × {BFD_MULTIPLIER} (vigil; keepalived plain VRRP), {} adverts, {}: false takeovers, BFD session downs",
                iv_label(super::bfd_noise::INTERVAL_MS),
                step.label
            ),
            vigil: cell(Impl::Vigil),
            keepalived: cell(Impl::Keepalived),
            rfc: "—".into(),
            ratio: match (v, k) {
                (Some(v), Some(k)) if k.takeovers > 0 => format!(
                    "takeovers {}",
                    ratio(v.takeovers as f64, k.takeovers as f64)
                ),
                _ => "—".into(),
            },
            goal: "0 takeovers, session never down".into(),
            met: Some(met),
            note,
        });
    }
}

/// What one steady BFD session costs: the agent and the XDP program apart.
fn bfd_cpu_row(d: &super::detection::BfdDetection, rows: &mut Vec<Row>) {
    let Some(c) = &d.cpu else {
        return;
    };
    let mut vigil = format!("agent {:.3} % of a core", c.agent_pct);
    match (c.xdp_pct, c.xdp_ns_per_run, c.xdp_runs_per_s) {
        (Some(x), Some(ns), Some(runs)) => {
            let _ = write!(
                vigil,
                "; XDP program {x:.4} % ({runs:.0} runs/s, {ns:.0} ns/run)"
            );
        }
        _ => vigil.push_str("; XDP program not measured (no BPF statistics)"),
    }
    rows.push(Row {
        scenario: format!(
            "CPU per BFD session at 10 ms × 3 (vigil Backup, steady, {:.0} s; keepalived runs no BFD here)",
            c.window_s
        ),
        vigil,
        keepalived: "—".into(),
        rfc: "—".into(),
        ratio: "—".into(),
        goal: "—".into(),
        met: None,
        note: String::new(),
    });
}

fn flood_row(f: &Flood, rows: &mut Vec<Row>) {
    let cell = |imp| match f.runs.get(&imp) {
        Some(r) => {
            let mut c = format!(
                "{} takeover{}, {:.2} % CPU",
                r.takeovers,
                if r.takeovers == 1 { "" } else { "s" },
                r.cpu
            );
            if let Some(x) = r.xdp_cpu {
                let _ = write!(c, " (+ XDP program {x:.2} % in the kernel)");
            }
            c
        }
        None => "—".into(),
    };
    let v = f.runs.get(&Impl::Vigil);
    let k = f.runs.get(&Impl::Keepalived);
    let (met, note) = match v {
        Some(r) => {
            let mut why = Vec::new();
            if r.takeovers > 0 {
                why.push(format!("{} false takeovers", r.takeovers));
            }
            if r.cpu >= 3.0 {
                why.push(format!("{:.2} % CPU", r.cpu));
            }
            (why.is_empty(), why.join(", "))
        }
        None => (false, "not measured".into()),
    };
    rows.push(Row {
        scenario: format!(
            "Flood to the BACKUP, {} ({} adverts): false takeovers, BACKUP CPU",
            f.label,
            iv_label(flood::INTERVAL_MS)
        ),
        vigil: cell(Impl::Vigil),
        keepalived: cell(Impl::Keepalived),
        rfc: "—".into(),
        ratio: match (v, k) {
            (Some(v), Some(k)) => format!("CPU {}", ratio(v.cpu, k.cpu)),
            _ => "—".into(),
        },
        goal: "0 takeovers at < 3 % CPU".into(),
        met: Some(met),
        note,
    });
}

/// Median, least and greatest of the pairs' ratios, of the MASTER's and of the bare
/// sender's CPU time per advert; and how many pairs.
type PerAdvert = (Spread, Spread, Spread, usize);

/// Median, least and greatest.
type Spread = Option<(f64, f64, f64)>;

/// Picks one figure out of a scale run.
type Figure = fn(&scale::ScaleRun) -> f64;

fn scale_rows(s: &Scale, rows: &mut Vec<Row>) {
    let runs = |imp| s.runs.get(&imp).cloned().unwrap_or_default();
    let avg = |imp, f: Figure| mean(runs(imp).iter().map(f));
    let big = s.instances >= 200;
    let unsettled: usize = [Impl::Vigil, Impl::Keepalived]
        .iter()
        .map(|&i| runs(i).iter().filter(|r| !r.settled).count())
        .sum();
    let pairs = |imp| s.pairs.get(&imp).cloned().unwrap_or_default();
    let label = |what: &str| {
        format!(
            "Scale, {} instances × {} ms: {what}",
            s.instances,
            scale::INTERVAL_MS
        )
    };
    let unsettled_note = |mut note: Vec<String>| {
        if unsettled > 0 {
            note.push(format!("{unsettled} runs not fully settled"));
        }
        note.join("; ")
    };

    // BACKUP wake-ups: the agent should sleep while its Master lives.
    let (v, k) = (
        avg(Impl::Vigil, |r| r.backup_wakeups),
        avg(Impl::Keepalived, |r| r.backup_wakeups),
    );
    rows.push(Row {
        scenario: label("BACKUP wake-ups per second (context switches, all threads)"),
        vigil: format!("{v:.2}"),
        keepalived: format!("{k:.2}"),
        rfc: "—".into(),
        ratio: ratio(v, k),
        goal: "≤ 1 /s".into(),
        met: Some(v <= 1.0),
        note: unsettled_note(Vec::new()),
    });

    // MASTER CPU, beside keepalived's.
    let (v, k) = (
        avg(Impl::Vigil, |r| r.master_cpu),
        avg(Impl::Keepalived, |r| r.master_cpu),
    );
    rows.push(Row {
        scenario: label("MASTER CPU (% of a core)"),
        vigil: format!("{v:.2} %"),
        keepalived: format!("{k:.2} %"),
        rfc: "—".into(),
        ratio: ratio(v, k),
        goal: "—".into(),
        met: None,
        note: unsettled_note(Vec::new()),
    });

    // MASTER CPU per advert, against what the kernel charges any sender of these
    // adverts: a bare sender in the MASTER's place, in alternating windows.
    let per_advert = |imp| {
        let p: Vec<scale::Pair> = pairs(imp)
            .into_iter()
            .filter(scale::Pair::comparable)
            .collect();
        let r = scale::spread(p.iter().map(scale::Pair::ratio));
        let m = scale::spread(p.iter().map(|p| p.master.us_per_advert()));
        let f = scale::spread(p.iter().map(|p| p.floor.us_per_advert()));
        (r, m, f, p.len())
    };
    let cell = |(r, m, f, n): PerAdvert| match (r, m, f) {
        (Some((r, lo, hi)), Some((m, ..)), Some((f, ..))) => format!(
            "{r:.3}× the bare sender ({lo:.3}–{hi:.3}× over {n} pairs): {m:.2} µs against {f:.2} µs an advert"
        ),
        _ => "—".into(),
    };
    // With no comparable pair, what the MASTER sent against the bare sender.
    let shortfall = |imp, cell: String| {
        let all = pairs(imp);
        match (
            scale::spread(all.iter().map(|p| p.master.rate())),
            scale::spread(all.iter().map(|p| p.floor.rate())),
        ) {
            (Some((_, lo, hi)), Some((f, ..))) if all.iter().all(|p| !p.comparable()) => {
                format!(
                    "no comparable pair: the MASTER sent {lo:.0}–{hi:.0} adverts/s against \
                     the bare sender's {f:.0}/s"
                )
            }
            _ => cell,
        }
    };
    let (pv, pk) = (per_advert(Impl::Vigil), per_advert(Impl::Keepalived));
    let median_ratio = pv.0.map(|(r, ..)| r);
    rows.push(Row {
        scenario: label(
            "MASTER CPU time per advert ÷ a bare sender's (median of alternating windows)",
        ),
        vigil: shortfall(Impl::Vigil, cell(pv)),
        keepalived: shortfall(Impl::Keepalived, cell(pk)),
        rfc: "—".into(),
        ratio: match (pv.1, pk.1) {
            (Some((v, ..)), Some((k, ..))) => format!("per advert {}", ratio(v, k)),
            _ => "—".into(),
        },
        goal: if big {
            "≤ 1.1× the bare sender".into()
        } else {
            "—".into()
        },
        met: if big {
            median_ratio.map(|r| r <= 1.1)
        } else {
            None
        },
        note: unsettled_note(vec![format!(
            "each pair is a {w:.0} s window of the MASTER and one of a bare sender in its place \
             (the MASTER stopped; a raw socket with the agent's options sending the same \
             adverts, all of an interval in one sendmmsg, nothing else), taken one after the \
             other in alternating order with the same BACKUP listening: on veth and a bridge \
             the sender pays the kernel's transmit and the delivery to the BACKUP's XDP \
             program or socket in its own context, so the bare sender's cost is the floor of \
             any MASTER's. CPU time is the scheduler's run time of every thread, divided by \
             the packets leaving lb01's eth0; the figure is the median of the pairs' ratios, \
             least–greatest in brackets; a pair whose MASTER sent under 95 % of the bare \
             sender's adverts is left out ({left})",
            w = s.pair_window_s,
            left = [Impl::Vigil, Impl::Keepalived]
                .iter()
                .map(|&i| format!(
                    "{}: {} of {}",
                    i.name(),
                    pairs(i).iter().filter(|p| !p.comparable()).count(),
                    pairs(i).len()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )]),
    });

    // BACKUP CPU: the agent, and the XDP program beside it.
    let (v, k) = (
        avg(Impl::Vigil, |r| r.backup_cpu),
        avg(Impl::Keepalived, |r| r.backup_cpu),
    );
    let xdp = mean(runs(Impl::Vigil).iter().filter_map(|r| r.backup_xdp_cpu));
    let mut vigil = format!("{v:.2} %");
    if xdp.is_finite() {
        let _ = write!(vigil, " + XDP program {xdp:.2} %");
    }
    let both = v + if xdp.is_finite() { xdp } else { 0.0 };
    rows.push(Row {
        scenario: label("BACKUP CPU (% of a core): agent + XDP program"),
        vigil,
        keepalived: format!("{k:.2} %"),
        rfc: "—".into(),
        ratio: format!("agent {}, with program {}", ratio(v, k), ratio(both, k)),
        goal: if big {
            "agent ≤ 1/20 of keepalived's, agent + program ≤ 1/10".into()
        } else {
            "—".into()
        },
        met: big.then_some(k > 0.0 && v / k <= 0.05 && both / k <= 0.10),
        note: unsettled_note(if xdp.is_finite() {
            Vec::new()
        } else {
            vec!["XDP program time not measured".into()]
        }),
    });
    // Every instance taking over at once: each one's first advert after its own
    // deadline, not after the other instances' address work.
    if !s.burst.is_empty() {
        let figures = |imp| {
            s.burst.get(&imp).map(|b| {
                (
                    burst::quantile(&b.delays_ms, 0.95),
                    burst::quantile(&b.delays_ms, 1.0),
                    b.delays_ms.len(),
                    b.missed,
                )
            })
        };
        let cell = |imp| match figures(imp) {
            Some((Some(p95), Some(max), n, missed)) => {
                let mut c = format!("p95 {p95:.2} ms, max {max:.2} ms ({n} takeovers");
                if missed > 0 {
                    let _ = write!(c, ", {missed} not seen");
                }
                c + ")"
            }
            _ => "—".into(),
        };
        let (v, k) = (figures(Impl::Vigil), figures(Impl::Keepalived));
        let p95 = |f: Option<(Option<f64>, Option<f64>, usize, usize)>| {
            f.and_then(|f| f.0).unwrap_or(f64::NAN)
        };
        rows.push(Row {
            scenario: label("all take over at once, first advert after each one's deadline"),
            vigil: cell(Impl::Vigil),
            keepalived: cell(Impl::Keepalived),
            rfc: "0 (Master_Down_Interval)".into(),
            ratio: format!("p95 {}", ratio(p95(v), p95(k))),
            goal: "every one within 0.5 ms".into(),
            met: v.map(|v| v.1.is_some_and(|max| max <= 0.5) && v.3 == 0),
            note: [Impl::Vigil, Impl::Keepalived]
                .iter()
                .filter_map(|&i| {
                    let n = s.burst.get(&i).map_or(0, |b| b.unsettled);
                    (n > 0).then(|| format!("{}: {n} cuts not settled", i.name()))
                })
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    let rss_rows: [(&str, Figure); 2] = [
        ("MASTER", |r| r.master_rss_kib as f64),
        ("BACKUP", |r| r.backup_rss_kib as f64),
    ];
    for (role, f) in rss_rows {
        let (v, k) = (avg(Impl::Vigil, f), avg(Impl::Keepalived, f));
        rows.push(Row {
            scenario: format!(
                "Scale, {} instances × {} ms: {role} RSS",
                s.instances,
                scale::INTERVAL_MS
            ),
            vigil: mib(v),
            keepalived: mib(k),
            rfc: "—".into(),
            ratio: ratio(v, k),
            goal: "≤ 2× keepalived's".into(),
            met: Some(v / k <= 2.0),
            note: String::new(),
        });
    }
}

/// The table's rows, in scenario order.
pub fn rows(r: &Results) -> Vec<Row> {
    let mut rows = Vec::new();
    for d in &r.detection {
        detection_rows(d, &mut rows);
    }
    bfd_row(&r.detection_bfd, &mut rows);
    bfd_cpu_row(&r.detection_bfd, &mut rows);
    bfd_noise_rows(&r.bfd_noise, &mut rows);
    let h = &r.handover;
    let hf = |imp| h.failures.get(&imp).copied().unwrap_or(0);
    let ht = |imp| h.from_signal.get(&imp).map_or(0, Vec::len) + hf(imp);
    for (what, m, rfc) in [
        ("SIGTERM on the MASTER", &h.from_signal, "—".to_owned()),
        (
            "its priority-0 advert",
            &h.from_zero,
            format!("Skew_Time {}", ms(h.skew_ms)),
        ),
    ] {
        let (v, k) = (of(m, Impl::Vigil), of(m, Impl::Keepalived));
        rows.push(Row {
            scenario: format!(
                "Graceful handover, {} adverts: {what} → new MASTER's first advert, median / p95",
                iv_label(h.interval_ms)
            ),
            vigil: med_p95(v.as_ref(), hf(Impl::Vigil), ht(Impl::Vigil)),
            keepalived: med_p95(k.as_ref(), hf(Impl::Keepalived), ht(Impl::Keepalived)),
            rfc,
            ratio: match (&v, &k) {
                (Some(v), Some(k)) => ratio(v.median, k.median),
                _ => "—".into(),
            },
            goal: "—".into(),
            met: None,
            note: String::new(),
        });
    }
    for f in &r.flood {
        flood_row(f, &mut rows);
    }
    for s in &r.scale {
        scale_rows(s, &mut rows);
    }
    let st = &r.startup;
    let mdi = super::lab::master_down_at(
        std::time::Duration::from_millis(u64::from(startup::INTERVAL_MS)),
        3,
        super::lab::MASTER_PRIORITY,
    )
    .as_secs_f64()
        * 1e3;
    for (what, m, rfc) in [
        ("READY", &st.ready, "—".to_owned()),
        (
            "first advert",
            &st.advert,
            format!("start + Master_Down_Interval {}", ms(mdi)),
        ),
    ] {
        let (v, k) = (of(m, Impl::Vigil), of(m, Impl::Keepalived));
        rows.push(Row {
            scenario: format!(
                "Start-up (1 instance, {} adverts, initial MASTER, no peer): spawn → {what}, median / p95",
                iv_label(startup::INTERVAL_MS)
            ),
            vigil: med_p95(v.as_ref(), 0, 0),
            keepalived: med_p95(k.as_ref(), 0, 0),
            rfc,
            ratio: match (&v, &k) {
                (Some(v), Some(k)) => ratio(v.median, k.median),
                _ => "—".into(),
            },
            goal: "—".into(),
            met: None,
            note: String::new(),
        });
    }
    rows
}

fn met_cell(r: &Row) -> String {
    match r.met {
        None => "—".into(),
        Some(true) => "yes".into(),
        Some(false) if r.note.is_empty() => "**NO**".into(),
        Some(false) => format!("**NO**: {}", r.note),
    }
}

/// The main table as Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| Scenario | vigil | keepalived | RFC bound | ratio (vigil / keepalived) | goal | met? |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.vigil,
            r.keepalived,
            r.rfc,
            r.ratio,
            r.goal,
            met_cell(r)
        );
    }
    s
}

/// One line naming the run, for captions.
pub fn subtitle(r: &Results) -> String {
    format!(
        "{} · {} trials per bar · {}, {} cores (shared) · vigil {} vs {}",
        r.meta.date,
        r.plan.detection_trials,
        r.meta.cpu,
        r.meta.cores,
        r.meta.vigil_commit,
        r.meta.keepalived
    )
}

fn machine(r: &Results) -> String {
    format!(
        "{}, {} cores, {} RAM, Linux {}; the machine was shared with other engineers' builds \
         and tests while the bench ran (load average {} at the start, {} at the end)",
        r.meta.cpu, r.meta.cores, r.meta.memory, r.meta.kernel, r.meta.load_start, r.meta.load_end
    )
}

fn shortfalls(rows: &[Row]) -> String {
    let missed: Vec<&Row> = rows.iter().filter(|r| r.met == Some(false)).collect();
    if missed.is_empty() {
        return "Every goal was met in this run.\n".into();
    }
    let mut s = String::new();
    for r in missed {
        let _ = writeln!(
            s,
            "- {}: vigil {}, keepalived {}; goal {}{}",
            r.scenario,
            r.vigil,
            r.keepalived,
            r.goal,
            if r.note.is_empty() {
                String::new()
            } else {
                format!(" — {}", r.note)
            }
        );
    }
    s
}

fn method(r: &Results) -> String {
    let p = &r.plan;
    format!(
        "\
- Each implementation has its own lab (network namespaces on a bridge: MASTER lb01
  priority {mp}, BACKUP lb02 priority {bp}, an observer, a junk sender; TEST-NET
  addresses). Both labs run at once and trials alternate between them, so load from
  elsewhere falls on both; the ratios are the figures to compare, not the absolute values.
- Same settings for both, each in its own language: VRRPv3 over IPv4, one virtual
  address per instance, preempt on (the default), nothing else tuned.
- Detection: the MASTER's switch port goes down; the time is from the MASTER's last
  advert to the new MASTER's first, both as captured (kernel timestamps, tcpdump) on the
  observer. RFC value: down_timer_adverts × interval + Skew_Time, Skew_Time =
  (256 − {bp}) / 256 × interval. {dt} trials per configuration; p95 by nearest rank
  (with 10 trials, the largest). The goal counts as met when the p95 is at most 1 ms
  over the RFC value and no trial is more than 1 ms under it.
- Graceful handover: SIGTERM to the MASTER; {ht} trials.
- Flood: one sender thread (AF_PACKET) sends one junk frame over and over for {fs} s
  (a flood below {minrate:.0}k packets/s is repeated, at most twice)
  to the BACKUP's MAC (pinned on the bridge so nothing else receives it): TTL 254; a bad
  checksum; a valid advert for VRID 77, which neither agent watches; a valid advert with
  priority 50 from a third address (below the BACKUP's {bp}: a preempting BACKUP ignores
  it). All but the third carry priority 200. Adverts every {fi}. False takeovers are runs
  of the BACKUP's adverts in the capture during the flood and one Master_Down_Interval
  after it. CPU is the agent's processes (utime + stime); for vigil the XDP program's own
  run time (kernel BPF statistics) is listed apart: it runs in the kernel's receive path,
  as does keepalived's socket delivery, and neither is in the agent's figure.
- BFD under noise: a pair with {bi} adverts, vigil with BFD 10 ms × 3 (keepalived plain
  VRRP), through the junk floods above ({bfs} s each) and {bls} s of 1 % loss on what each
  node sends. A session down is one that left Up on either node; the goal is none, and
  no false takeover. Both nodes are namespaces of this one machine, so when the machine
  stalls (every CPU at once, as a virtual machine does when its host does not run it)
  the Master's transmit and the Backup's receive stop together, which two real hosts
  never share; and a stall of one of the two CPUs holds whichever node's BFD thread is on
  it, as a stalled Master would. One SCHED_FIFO thread per CPU sleeps 1 ms at a time
  through each step and notes how late it woke; a step that missed its goal gives the
  stalls of 20 ms or more, of one CPU and of every CPU at once. A stall of every CPU at
  once of {lim:.0} ms or more (the detection time less one interval) in an
  implementation's step or the wait after it freezes both nodes past what any
  {bfd_iv} ms × {bfd_mult} session survives, so that attempt measured the machine: the
  step is repeated for that implementation, at most {att} attempts in all, every attempt
  is listed, and the row counts the first without such a stall (none: not measured, and
  the goal not met). vigil's detection timers listen a whole detection time more when they fire
  late (by over 1.875 ms at 30 ms), which covers a stall that ends after the deadline;
  one that ends just before it, or within 2 ms after it
  (the peer not yet sending again) still takes a 30 ms session down.
- Scale: one implementation's pair at a time, {sr} rounds alternating, each settled
  (every instance MASTER on lb01 and BACKUP on lb02), {ss} s of rest, then {sw} s measured.
  CPU from /proc/PID/stat utime + stime; RSS from /proc/PID/status VmRSS (keepalived:
  parent and VRRP child summed). BPF maps are kernel memory and not in vigil's RSS.
  A sending process pays the kernel's transmit path, and on veth and a bridge also the
  delivery to every other port (the receiver's XDP program or socket included), in its
  own context; so after each pair's window a bare sender takes the MASTER's place with
  the same BACKUP listening (a raw socket sending the same adverts, all of an interval
  in one sendmmsg, nothing else; the MASTER stopped with SIGSTOP meanwhile, so that the
  BACKUP hears the same adverts from the same address throughout) and its CPU time per
  advert is that MASTER's floor. At {sp_n} instances, {sp} pairs of {spw} s windows
  (MASTER then sender, sender then MASTER, and so on, each after 0.5 s of the one
  sending) give one ratio each, CPU time (scheduler run time, /proc/PID/task/*/schedstat)
  per packet out of lb01's eth0; the row gives their median, least and greatest.
  At 200 instances each round then cuts the MASTER's link with everything settled, so
  that every instance of the BACKUP takes over at once: from a capture on obs, each
  VRID's first advert from the BACKUP against its own deadline (the MASTER's last advert
  for that VRID plus the BACKUP's Master_Down_Interval), every round's cut pooled.
- Start-up: one instance, initial state MASTER, no peer. READY is vigil's READY=1 on
  NOTIFY_SOCKET; keepalived sends READY=1 only when its parent is systemd, so for it the
  bench takes its \"Startup complete\" log line, written at the same point: by the
  parent, once it has started its VRRP process. Both
  follow RFC 5798 §6.4.1 with an initial MASTER state below priority 255: start as
  BACKUP and advertise after one Master_Down_Interval of silence (3 × 1 s + Skew_Time
  for priority {mp}), so the first advert comes that long after start-up.
",
        mp = super::lab::MASTER_PRIORITY,
        bp = super::lab::BACKUP_PRIORITY,
        dt = p.detection_trials,
        ht = p.handover_trials,
        fs = p.flood_seconds,
        bi = iv_label(super::bfd_noise::INTERVAL_MS),
        bfs = p.bfd_flood_seconds,
        bls = p.bfd_loss_seconds,
        lim = super::bfd_noise::MACHINE_STALL_LIMIT_MS,
        att = super::bfd_noise::ATTEMPTS,
        bfd_iv = BFD_INTERVAL_MS,
        bfd_mult = BFD_MULTIPLIER,
        fi = iv_label(flood::INTERVAL_MS),
        minrate = flood::MIN_RATE / 1000.0,
        sr = p.scale_rounds,
        ss = p.scale_settle.as_secs(),
        sw = p.scale_window.as_secs(),
        sp = p.scale_pairs,
        sp_n = 200,
        spw = p.scale_pair_window.as_secs(),
    )
}

fn flood_details(r: &Results) -> String {
    let mut s = String::from(
        "| Junk | implementation | packets/s reached | repeated for a low rate | BACKUP agent CPU | XDP program CPU | false takeovers |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for f in &r.flood {
        for (imp, run) in &f.runs {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {:.2} % | {} | {} |",
                f.label,
                imp.name(),
                run.rate(),
                run.retries,
                run.cpu,
                match run.xdp_cpu {
                    Some(x) => format!("{x:.2} %"),
                    None if *imp == Impl::Vigil => "not measured".into(),
                    None => "—".into(),
                },
                run.takeovers
            );
        }
    }
    s
}

fn detection_details(r: &Results) -> String {
    let mut s = String::from(
        "| Interval, down_timer_adverts | implementation | trials | no takeover | flaps (repeated) | min | median | p95 | max | RFC |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for d in &r.detection {
        for imp in [Impl::Vigil, Impl::Keepalived] {
            let st = of(&d.trials, imp).unwrap_or_default();
            let _ = writeln!(
                s,
                "| {}, {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                iv_label(d.interval_ms),
                d.down_adverts,
                if d.busy_loops > 0 {
                    format!(", {} busy loops", d.busy_loops)
                } else {
                    String::new()
                },
                imp.name(),
                st.n,
                d.failures.get(&imp).copied().unwrap_or(0),
                d.flaps.get(&imp).copied().unwrap_or(0),
                ms(st.min),
                ms(st.median),
                ms(st.p95),
                ms(st.max),
                ms(d.rfc_ms)
            );
        }
    }
    s
}

fn scale_details(r: &Results) -> String {
    let mut s = String::from(
        "| Instances | implementation | round | MASTER CPU | BACKUP CPU | MASTER RSS | BACKUP RSS | settled |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for sc in &r.scale {
        for (imp, pairs) in &sc.pairs {
            for (i, p) in pairs.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "| {} | {} MASTER, then a bare sender in its place ({:.0} and {:.0} adverts/s), pair {} | — | {:.3} µs / {:.3} µs an advert ({:.3}×) | — | — | — | — |",
                    sc.instances,
                    imp.name(),
                    p.master.rate(),
                    p.floor.rate(),
                    i + 1,
                    p.master.us_per_advert(),
                    p.floor.us_per_advert(),
                    p.ratio(),
                );
            }
        }
        for (imp, runs) in &sc.runs {
            for (i, run) in runs.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.2} % | {:.2} %{} ({:.1} wake-ups/s) | {} | {} | {} |",
                    sc.instances,
                    imp.name(),
                    i + 1,
                    run.master_cpu,
                    run.backup_cpu,
                    run.backup_xdp_cpu
                        .map_or(String::new(), |x| format!(" + XDP {x:.2} %")),
                    run.backup_wakeups,
                    mib(run.master_rss_kib as f64),
                    mib(run.backup_rss_kib as f64),
                    if run.settled { "yes" } else { "no" }
                );
            }
        }
    }
    s
}

/// bench/results.md.
pub fn markdown(r: &Results, rows: &[Row]) -> String {
    format!(
        "# vigil vs keepalived: `cargo xtask bench{quick}`\n\n\
         {date}; {machine}. vigil {commit} (datapath: {dp}) against {ka}. The run took \
         {mins:.1} minutes.\n\n\
         {table}\n\
         ![Detection times](detection.png)\n\n\
         ## Goals missed\n\n{short}\n\
         ## How it was measured\n\n{method}\n\
         ## Detection, every configuration\n\n{dd}\n\
         ## Flood, per kind of junk\n\n{fd}\n\
         ## Scale, every round\n\n{sd}\n\
         Every trial is in results.json.\n",
        quick = if r.plan.quick { " --quick" } else { "" },
        date = r.meta.date,
        machine = machine(r),
        commit = r.meta.vigil_commit,
        dp = r.meta.vigil_datapath,
        ka = r.meta.keepalived,
        mins = r.meta.elapsed_s / 60.0,
        table = table(rows),
        short = shortfalls(rows),
        method = method(r),
        dd = detection_details(r),
        fd = flood_details(r),
        sd = scale_details(r),
    )
}

/// bench/README-section.md: what the README shows of the latest full run.
pub fn readme_section(r: &Results, rows: &[Row]) -> String {
    format!(
        "## Benchmark: vigil against keepalived\n\n\
         `cargo xtask bench` runs vigil and Debian's keepalived side by side in network \
         namespaces, in the same run and under the same VRRP settings, and writes \
         [bench/results.md](bench/results.md) (with the method and every detail), \
         [bench/results.json](bench/results.json) and the plot below. \
         `cargo xtask bench --quick` is the CI smoke test (3 trials, short floods; it fails \
         only on errors, never on a missed goal).\n\n\
         Latest run: {date}, on {machine}. vigil {commit} ({dp}), {ka}. \
         Absolute figures from a shared machine are noisy; the ratios are what to compare.\n\n\
         {table}\n\
         ![Detection times: vigil and keepalived against the RFC value](bench/detection.png)\n\n\
         Goals missed in this run:\n\n{short}",
        date = r.meta.date,
        machine = machine(r),
        commit = r.meta.vigil_commit,
        dp = r.meta.vigil_datapath,
        ka = r.meta.keepalived,
        table = table(rows),
        short = shortfalls(rows),
    )
}

fn by_impl<T>(m: &BTreeMap<Impl, T>, f: impl Fn(&T) -> serde_json::Value) -> serde_json::Value {
    serde_json::Value::Object(m.iter().map(|(k, v)| (k.name().to_owned(), f(v))).collect())
}

/// bench/results.json.
pub fn json(r: &Results, rows: &[Row]) -> serde_json::Value {
    let m = &r.meta;
    json!({
        "mode": if r.plan.quick { "quick" } else { "full" },
        "date": m.date,
        "machine": {
            "cpu": m.cpu, "cores": m.cores, "memory": m.memory, "kernel": m.kernel,
            "shared": true, "load_start": m.load_start, "load_end": m.load_end,
        },
        "vigil": { "commit": m.vigil_commit, "datapath": m.vigil_datapath },
        "keepalived": m.keepalived,
        "elapsed_seconds": m.elapsed_s,
        "table": rows.iter().map(|row| json!({
            "scenario": row.scenario, "vigil": row.vigil, "keepalived": row.keepalived,
            "rfc_bound": row.rfc, "ratio": row.ratio, "goal": row.goal, "met": row.met,
            "note": row.note,
        })).collect::<Vec<_>>(),
        "detection": r.detection.iter().map(|d| json!({
            "interval_ms": d.interval_ms,
            "down_timer_adverts": d.down_adverts,
            "busy_loops": d.busy_loops,
            "rfc_ms": d.rfc_ms,
            "trials_ms": by_impl(&d.trials, |v| json!(v)),
            "no_takeover": by_impl(&d.failures, |v| json!(v)),
            "flaps": by_impl(&d.flaps, |v| json!(v)),
        })).collect::<Vec<_>>(),
        "detection_bfd": {
            "interval_ms": r.detection_bfd.interval_ms,
            "rfc_ms": r.detection_bfd.rfc_ms,
            "cut_to_first_advert_ms": by_impl(&r.detection_bfd.trials, |v| json!(v)),
            "no_takeover": by_impl(&r.detection_bfd.failures, |v| json!(v)),
            "cpu_per_session": r.detection_bfd.cpu.as_ref().map(|c| json!({
                "window_s": c.window_s,
                "agent_pct": c.agent_pct,
                "xdp_pct": c.xdp_pct,
                "xdp_runs_per_s": c.xdp_runs_per_s,
                "xdp_ns_per_run": c.xdp_ns_per_run,
            })),
        },
        "bfd_noise": r.bfd_noise.steps.iter().map(|s| json!({
            "step": s.key,
            "label": s.label,
            "interval_ms": super::bfd_noise::INTERVAL_MS,
            "machine_stall_limit_every_cpu_ms": super::bfd_noise::MACHINE_STALL_LIMIT_MS,
            "counted_attempt": by_impl(&s.runs, |a| json!(
                a.iter().position(|x| !x.machine_stopped()).map(|i| i + 1)
            )),
            "runs": by_impl(&s.runs, |a| json!(a.iter().enumerate().map(|(i, x)| json!({
                "attempt": i + 1,
                "counted": a.iter().position(|x| !x.machine_stopped()) == Some(i),
                "machine_stall_every_cpu_in_window_ms": x.machine_stall_ms,
                "machine_stall_longest_one_cpu_ms": x.stalls.longest_one_ms,
                "machine_stall_longest_every_cpu_ms": x.stalls.longest_all_ms,
                "machine_stalls_every_cpu_over_20ms": x.stalls.all_over_20ms,
                "machine_stalls_one_cpu_over_20ms": x.stalls.one_over_20ms,
                "packets_sent": x.sent,
                "seconds": x.seconds,
                "false_takeovers": x.takeovers,
                "bfd_session_downs": x.session_downs,
                "bfd_received_by_backup": x.bfd_received,
                "bfd_standby_sent": x.standby_sent,
                "bfd_last_down_reasons": x.down_reasons,
            })).collect::<Vec<_>>())),
        })).collect::<Vec<_>>(),
        "handover": {
            "interval_ms": r.handover.interval_ms,
            "skew_ms": r.handover.skew_ms,
            "sigterm_to_first_advert_ms": by_impl(&r.handover.from_signal, |v| json!(v)),
            "priority0_to_first_advert_ms": by_impl(&r.handover.from_zero, |v| json!(v)),
            "no_takeover": by_impl(&r.handover.failures, |v| json!(v)),
        },
        "flood": r.flood.iter().map(|f| json!({
            "kind": f.key,
            "label": f.label,
            "interval_ms": flood::INTERVAL_MS,
            "runs": by_impl(&f.runs, |x| json!({
                "packets_sent": x.sent,
                "seconds": x.seconds,
                "packets_per_second": x.rate(),
                "repeated_for_low_rate": x.retries,
                "backup_cpu_percent": x.cpu,
                "false_takeovers": x.takeovers,
                "xdp_cpu_percent": x.xdp_cpu,
                "xdp_packets": x.xdp_packets,
            })),
        })).collect::<Vec<_>>(),
        "scale": r.scale.iter().map(|s| json!({
            "instances": s.instances,
            "interval_ms": scale::INTERVAL_MS,
            "window_seconds": s.window_s,
            "pair_window_seconds": s.pair_window_s,
            "master_against_bare_sender": by_impl(&s.pairs, |pairs| json!(pairs.iter().map(|p| json!({
                "master_us_per_advert": p.master.us_per_advert(),
                "master_adverts_per_second": p.master.rate(),
                "master_cpu_percent": p.master.percent(),
                "bare_sender_us_per_advert": p.floor.us_per_advert(),
                "bare_sender_adverts_per_second": p.floor.rate(),
                "bare_sender_cpu_percent": p.floor.percent(),
                "ratio": p.ratio(),
            })).collect::<Vec<_>>())),
            "burst_first_advert_after_deadline_ms": by_impl(&s.burst, |b| json!({
                "delays_ms": b.delays_ms,
                "missed": b.missed,
                "unsettled_cuts": b.unsettled,
            })),
            "runs": by_impl(&s.runs, |runs| json!(runs.iter().map(|x| json!({
                "master_cpu_percent": x.master_cpu,
                "backup_cpu_percent": x.backup_cpu,
                "master_rss_kib": x.master_rss_kib,
                "backup_rss_kib": x.backup_rss_kib,
                "backup_wakeups_per_second": x.backup_wakeups,
                "backup_xdp_cpu_percent": x.backup_xdp_cpu,
                "settled": x.settled,
            })).collect::<Vec<_>>())),
        })).collect::<Vec<_>>(),
        "startup": {
            "interval_ms": startup::INTERVAL_MS,
            "ready_ms": by_impl(&r.startup.ready, |v| json!(v)),
            "first_advert_ms": by_impl(&r.startup.advert, |v| json!(v)),
        },
    })
}

#[cfg(test)]
mod bfd_noise_tests {
    use super::super::bfd_noise::{
        BfdNoise,
        tests::{attempt, step},
    };
    use super::bfd_noise_rows;

    #[test]
    fn attempts_the_machine_stopped_are_shown_and_not_counted() {
        let n = BfdNoise {
            steps: vec![
                step(vec![attempt(31.0, 2), attempt(3.0, 0)]),
                step(vec![attempt(3.0, 1)]),
                step(vec![attempt(31.0, 0), attempt(25.0, 0), attempt(40.0, 0)]),
            ],
        };
        let mut rows = Vec::new();
        bfd_noise_rows(&n, &mut rows);
        // A down in a stopped attempt does not count; the clean attempt after it does.
        assert_eq!(rows[0].met, Some(true));
        assert!(
            rows[0]
                .vigil
                .contains("attempt 1 (machine stopped every CPU for 31.0 ms")
        );
        assert!(rows[0].vigil.contains("2 BFD session downs"));
        assert!(
            rows[0]
                .vigil
                .contains("attempt 2 (counted): 0 takeovers, 0 BFD")
        );
        // A down in an attempt without such a stall fails as before.
        assert_eq!(rows[1].met, Some(false));
        assert_eq!(rows[2].met, Some(false));
        assert_eq!(
            rows[2].note,
            "not measured: the machine stopped every CPU for 31.0, 25.0 and 40.0 ms in each \
             of 3 attempts"
        );
    }
}

#[cfg(test)]
mod bfd_detection_tests {
    use super::super::detection::BfdDetection;
    use super::super::node::Impl;
    use super::bfd_row;

    #[test]
    fn a_part_left_out_is_not_judged_but_a_missed_takeover_is() {
        let mut rows = Vec::new();
        bfd_row(&BfdDetection::empty(), &mut rows);
        assert_eq!(rows[0].met, None);
        assert_eq!(rows[0].note, "not run");
        let mut missed = BfdDetection::empty();
        missed.failures.insert(Impl::Vigil, 1);
        bfd_row(&missed, &mut rows);
        assert_eq!(rows[1].met, Some(false));
        assert_eq!(rows[1].note, "vigil missed takeovers");
    }
}
