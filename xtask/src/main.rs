//! `cargo xtask`: vigil's developer tasks.

mod bench;
mod demo;
mod setup;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

/// vigil's developer tasks.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing needs (idempotent).
    Setup,
    /// Build target/release/vigil with its XDP program inside.
    Build,
    /// Build, then run `vigil ARGS`.
    Run {
        /// Arguments for vigil.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then show lb01/lb02 failing over in namespaces, with measured times.
    Demo,
    /// Install what is missing, then run format, lint, unit and integration tests.
    Test {
        /// Only these tests (passed to cargo test as a filter).
        filter: Option<String>,
    },
    /// vigil against Debian's keepalived, side by side in one run: bench/results.md,
    /// bench/results.json, bench/detection.png. Fails only on errors, never on a goal.
    Bench {
        /// The CI smoke test: 3 trials, 2 s floods, one scale round (under 5 minutes
        /// after the build). Writes to target/bench-quick unless --out says otherwise.
        #[arg(long)]
        quick: bool,
        /// Where to write the results (default: bench/, or target/bench-quick with --quick).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only these parts, comma-separated: startup, detection, bfd, handover, flood, scale
        /// (to check a change to one of them without the whole run).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Write the man pages (vigil.1 and one per subcommand) into target/man.
    Man,
    /// The test topology for manual experiments.
    Lab {
        #[command(subcommand)]
        action: LabAction,
    },
}

#[derive(Subcommand)]
enum LabAction {
    /// Create hosts (namespaces) on one bridge.
    Up {
        /// Host names.
        #[arg(default_values = ["lb01", "lb02", "client"])]
        hosts: Vec<String>,
    },
    /// Remove every lab namespace.
    Down,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_owned()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn build_release() -> anyhow::Result<PathBuf> {
    setup::ensure()?;
    run(cargo().args(["build", "--release", "-p", "vigil"]))?;
    Ok(root().join("target/release/vigil"))
}

fn test(filter: Option<String>) -> anyhow::Result<()> {
    setup::ensure()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    run(cargo().args(["build", "-p", "vigil"]))?;
    let bin = root().join("target/debug/vigil");
    let mut cmd = cargo();
    // Every test binary runs even after a failure, so one run shows every problem.
    cmd.args([
        "test",
        "--no-fail-fast",
        "--workspace",
        "--exclude",
        "vigil-ebpf",
    ])
    .env("VIGIL_BIN", &bin);
    if let Some(f) = filter {
        cmd.arg(f);
    }
    eprintln!("xtask: {cmd:?}");
    // Pass the output through, adding up cargo's per-binary results into one closing
    // line (also kept in target/test-summary.txt for .ci/run to repeat at the very end).
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match what {
                    "passed" => passed += n,
                    "failed" => failed += n,
                    "ignored" => ignored += n,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait()?;
    let summary = format!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    println!("{summary}");
    let _ = std::fs::write(
        root().join("target/test-summary.txt"),
        format!("{summary}\n"),
    );
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn bench(quick: bool, out: Option<PathBuf>, only: Vec<String>) -> anyhow::Result<()> {
    let mut plan = bench::Plan::new(quick);
    for part in &only {
        if !bench::PARTS.contains(&part.as_str()) {
            anyhow::bail!(
                "--only {part}: no such part; the parts are {}",
                bench::PARTS.join(", ")
            );
        }
    }
    plan.only = only;
    let bin = build_release()?;
    let out =
        out.unwrap_or_else(|| root().join(if quick { "target/bench-quick" } else { "bench" }));
    bench::run(&root(), &bin, plan, out)
}

fn man() -> anyhow::Result<()> {
    let dir = root().join("target/man");
    // The pages come from the CLI definition itself (clap_mangen), so they cannot drift.
    run(cargo()
        .args([
            "run",
            "--quiet",
            "-p",
            "vigil",
            "--",
            "manpage",
            "--out-dir",
        ])
        .arg(&dir)
        .env("AYA_BUILD_SKIP", "1"))?;
    println!("man pages in {}", dir.display());
    Ok(())
}

fn lab(action: LabAction) -> anyhow::Result<()> {
    match action {
        LabAction::Up { hosts } => {
            let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
            let lab = vigil_tests::Lab::new("lab", &names)?;
            println!("lab up: hosts on bridge br0 in namespace {}", lab.switch());
            for h in &lab.hosts {
                println!(
                    "  {:<8} {:<14} {:<16} ip netns exec {} bash",
                    h.name, h.ipv4, h.ipv6, h.ns
                );
            }
            println!("remove it with: cargo xtask lab down");
            lab.keep();
            Ok(())
        }
        LabAction::Down => {
            let n = vigil_tests::Lab::remove_all("lab");
            println!("lab down: removed {n} namespaces");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Setup => setup::ensure(),
        Task::Build => build_release().map(|bin| println!("built {}", bin.display())),
        Task::Run { args } => build_release().and_then(|bin| run(Command::new(bin).args(args))),
        Task::Demo => demo::run(),
        Task::Test { filter } => test(filter),
        Task::Bench { quick, out, only } => bench(quick, out, only),
        Task::Lab { action } => lab(action),
        Task::Man => man(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
