//! `cargo xtask bench [--quick]`: vigil and Debian's keepalived side by side, in the
//! same run on the same machine, under the same VRRP settings; results as a table
//! (bench/results.md), raw data (bench/results.json) and a plot of detection times
//! (bench/detection.png). See bench/README.md-section for the latest run.
//!
//! Each implementation gets its own lab (namespaces on a bridge, TEST-NET addresses),
//! built fresh and removed at the end; the two labs run at the same time, and trials
//! alternate between them, so that whatever else loads the machine loads both. Goals
//! are evaluated but never fail the run: only errors do.

mod bfd_noise;
mod burst;
mod detection;
mod flood;
mod lab;
mod measure;
mod node;
mod plot;
mod report;
mod scale;
mod startup;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

/// The parts of a run, for `--only`.
pub const PARTS: [&str; 6] = ["startup", "detection", "bfd", "handover", "flood", "scale"];

/// How much to run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub quick: bool,
    /// Only these parts (all when empty).
    pub only: Vec<String>,
    /// Trials per detection configuration (≥ 10; quick: 3).
    pub detection_trials: usize,
    pub handover_trials: usize,
    pub startup_trials: usize,
    /// Seconds of each flood.
    pub flood_seconds: f64,
    /// Seconds of each junk flood at a pair running BFD.
    pub bfd_flood_seconds: f64,
    /// The junk kinds flooded at a pair running BFD (all when empty).
    pub bfd_flood_kinds: Vec<&'static str>,
    /// Seconds of 1 % loss at a pair running BFD.
    pub bfd_loss_seconds: f64,
    pub scale_rounds: usize,
    pub scale_settle: Duration,
    pub scale_window: Duration,
    /// Alternating MASTER and bare-sender windows at 200 instances, and their length.
    pub scale_pairs: usize,
    pub scale_pair_window: Duration,
}

impl Plan {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                only: Vec::new(),
                detection_trials: 3,
                handover_trials: 3,
                startup_trials: 3,
                flood_seconds: 2.0,
                bfd_flood_seconds: 1.0,
                // The cheapest and the dearest junk for the XDP program: CI time.
                bfd_flood_kinds: vec!["ttl", "low_priority"],
                bfd_loss_seconds: 2.0,
                scale_rounds: 1,
                scale_settle: Duration::from_secs(1),
                scale_window: Duration::from_secs(3),
                scale_pairs: 6,
                scale_pair_window: Duration::from_secs(2),
            }
        } else {
            Self {
                quick,
                only: Vec::new(),
                detection_trials: 10,
                handover_trials: 10,
                startup_trials: 10,
                flood_seconds: 10.0,
                bfd_flood_seconds: 10.0,
                bfd_flood_kinds: Vec::new(),
                bfd_loss_seconds: 30.0,
                scale_rounds: 3,
                scale_settle: Duration::from_secs(2),
                scale_window: Duration::from_secs(10),
                scale_pairs: 6,
                scale_pair_window: Duration::from_secs(4),
            }
        }
    }

    /// Whether this run includes `part`.
    pub fn runs(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

/// Facts about the run and the machine.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub keepalived: String,
    pub vigil_commit: String,
    pub vigil_datapath: String,
    pub load_start: String,
    pub load_end: String,
    pub elapsed_s: f64,
}

/// Everything a run measured.
pub struct Results {
    pub plan: Plan,
    pub meta: Meta,
    pub startup: startup::Startup,
    pub detection: Vec<detection::Detection>,
    pub detection_bfd: detection::BfdDetection,
    pub bfd_noise: bfd_noise::BfdNoise,
    pub handover: detection::Handover,
    pub flood: Vec<flood::Flood>,
    pub scale: Vec<scale::Scale>,
}

fn command_text(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.trim().to_owned()
        })
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn meta(root: &std::path::Path) -> Meta {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_default();
    let mut commit = command_text(
        Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(root),
    );
    if !command_text(
        Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .current_dir(root),
    )
    .is_empty()
    {
        commit.push_str(" (with uncommitted changes)");
    }
    Meta {
        date: command_text(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        keepalived: command_text(Command::new("keepalived").arg("--version"))
            .lines()
            .next()
            .unwrap_or("keepalived (version unknown)")
            .to_owned(),
        vigil_commit: commit,
        vigil_datapath: String::new(),
        load_start: loadavg(),
        load_end: String::new(),
        elapsed_s: 0.0,
    }
}

/// The datapath vigil reports in `vigil status` (XDP mode or raw socket).
fn vigil_datapath(sides: &mut lab::Sides) -> anyhow::Result<String> {
    let side = sides
        .0
        .iter()
        .find(|s| s.imp == node::Impl::Vigil)
        .context("no vigil lab")?;
    let n = side.start("lb01", &node::specs(1, 150, true, 1000, 3))?;
    let s = n.status()?;
    Ok(s["datapath"].as_str().unwrap_or("unknown").to_owned())
}

/// Runs the bench and writes its files into `out` (a full run into bench/ also updates
/// the README's benchmark section).
pub fn run(
    root: &std::path::Path,
    vigil: &std::path::Path,
    plan: Plan,
    out: PathBuf,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut meta = meta(root);
    eprintln!(
        "bench: {} run; machine: {}, {} cores (shared with other work: figures are noisy, \
         compare the ratios)",
        if plan.quick { "quick" } else { "full" },
        meta.cpu,
        meta.cores
    );
    let mut sides = lab::Sides::new(vigil)?;
    meta.vigil_datapath = vigil_datapath(&mut sides)?;

    let startup = if plan.runs("startup") {
        eprintln!("bench: start-up");
        startup::startup(&mut sides, plan.startup_trials)?
    } else {
        startup::Startup::default()
    };
    let mut det = Vec::new();
    let intervals: &[u32] = if plan.runs("detection") {
        &[10, 100, 1000]
    } else {
        &[]
    };
    for &interval_ms in intervals {
        // The RFC's 3 and keepalived's 1 quiet; the RFC's 3 beside four busy loops.
        for (down_adverts, busy) in [(3, 0), (1, 0), (3, 4)] {
            eprintln!(
                "bench: detection, {interval_ms} ms adverts, down_timer_adverts {down_adverts}, \
                 {busy} busy loops"
            );
            det.push(detection::detection(
                &mut sides,
                interval_ms,
                down_adverts,
                busy,
                plan.detection_trials,
            )?);
        }
    }
    let detection_bfd = if plan.runs("bfd") {
        eprintln!("bench: detection with BFD, 1 s adverts");
        detection::detection_bfd(&mut sides, plan.detection_trials, plan.scale_window)?
    } else {
        detection::BfdDetection::empty()
    };
    let bfd_noise = if plan.runs("bfd") {
        eprintln!("bench: BFD under junk floods and packet loss, 1 s adverts");
        let started = Instant::now();
        let noise = bfd_noise::bfd_noise(
            &mut sides,
            &plan.bfd_flood_kinds,
            plan.bfd_flood_seconds,
            plan.bfd_loss_seconds,
        )?;
        eprintln!(
            "bench: BFD under noise took {:.0} s",
            started.elapsed().as_secs_f64()
        );
        noise
    } else {
        bfd_noise::BfdNoise::default()
    };
    let handover = if plan.runs("handover") {
        eprintln!("bench: graceful handover");
        detection::handover(&mut sides, 100, plan.handover_trials)?
    } else {
        detection::Handover::empty(100)
    };
    let flood = if plan.runs("flood") {
        eprintln!("bench: flood");
        flood::flood(&mut sides, plan.flood_seconds)?
    } else {
        Vec::new()
    };
    let mut scales = Vec::new();
    let sizes: &[u8] = if plan.runs("scale") {
        &[1, 50, 200]
    } else {
        &[]
    };
    for &n in sizes {
        eprintln!("bench: scale, {n} instances at 10 ms");
        scales.push(scale::scale(
            &mut sides,
            n,
            plan.scale_rounds,
            plan.scale_settle,
            plan.scale_window,
            plan.scale_pairs,
            plan.scale_pair_window,
        )?);
    }
    drop(sides);
    meta.load_end = loadavg();
    meta.elapsed_s = started.elapsed().as_secs_f64();

    let results = Results {
        plan,
        meta,
        startup,
        detection: det,
        detection_bfd,
        bfd_noise,
        handover,
        flood,
        scale: scales,
    };
    std::fs::create_dir_all(&out)?;
    let rows = report::rows(&results);
    std::fs::write(out.join("results.md"), report::markdown(&results, &rows))?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&report::json(&results, &rows))? + "\n",
    )?;
    plot::detection_png(
        &out.join("detection.png"),
        &results.detection,
        &report::subtitle(&results),
    )?;
    if !results.plan.quick && results.plan.only.is_empty() {
        let section = report::readme_section(&results, &rows);
        std::fs::write(out.join("README-section.md"), &section)?;
        // The README shows the latest full run into bench/: its section is replaced in
        // place (a run written elsewhere leaves it alone).
        let readme = root.join("README.md");
        if out == root.join("bench")
            && let Ok(text) = std::fs::read_to_string(&readme)
        {
            match splice_section(&text, &section) {
                Some(new) => std::fs::write(&readme, new)?,
                None => eprintln!(
                    "bench: {} has no \"{BENCH_HEADING}\" section; left as it was",
                    readme.display()
                ),
            }
        }
    }
    println!("{}", report::table(&rows));
    let missed = rows.iter().filter(|r| r.met == Some(false)).count();
    println!(
        "bench: {} goals met, {missed} missed; wrote {} in {:.0} s",
        rows.iter().filter(|r| r.met == Some(true)).count(),
        out.display(),
        results.meta.elapsed_s
    );
    Ok(())
}

/// The README's heading of the benchmark section, which a full run replaces.
const BENCH_HEADING: &str = "## Benchmark: vigil against keepalived";

/// `readme` with its benchmark section (from [`BENCH_HEADING`] to the next `## `
/// heading) replaced by `section`; `None` when it has no such section.
fn splice_section(readme: &str, section: &str) -> Option<String> {
    let start = readme
        .match_indices(BENCH_HEADING)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || readme[..i].ends_with('\n'))?;
    let after = start + BENCH_HEADING.len();
    let end = readme[after..]
        .find("\n## ")
        .map_or(readme.len(), |i| after + i + 1);
    let mut out = String::with_capacity(readme.len() + section.len());
    out.push_str(&readme[..start]);
    out.push_str(section.trim_end());
    out.push_str("\n\n");
    out.push_str(&readme[end..]);
    Some(out)
}

#[cfg(test)]
mod readme_tests {
    use super::{BENCH_HEADING, splice_section};

    #[test]
    fn the_benchmark_section_is_replaced_and_the_rest_kept() {
        let readme = format!(
            "# vigil\n\nintro\n\n{BENCH_HEADING}\n\nold table\n\n## Requirements\n\nLinux\n"
        );
        let new = splice_section(&readme, &format!("{BENCH_HEADING}\n\nnew table\n"))
            .expect("has the section");
        assert_eq!(
            new,
            format!(
                "# vigil\n\nintro\n\n{BENCH_HEADING}\n\nnew table\n\n## Requirements\n\nLinux\n"
            )
        );
        // Last section of the file.
        let last = format!("intro\n{BENCH_HEADING}\nold\n");
        assert_eq!(
            splice_section(&last, &format!("{BENCH_HEADING}\nnew")),
            Some(format!("intro\n{BENCH_HEADING}\nnew\n\n"))
        );
        assert_eq!(splice_section("# vigil\n", "x"), None);
    }
}
