//! `cargo xtask setup`: installs what building and testing vigil needs, and only what
//! is missing. Every other task runs [`ensure`] first, which is cheap when all is there.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// The dated nightly that builds the XDP program (the one the aya-ebpf pin is verified
/// with; see docs/architecture.md, "Toolchain").
pub const BPF_TOOLCHAIN: &str = "nightly-2026-05-20";
/// Its rustc commit; the image's plain `nightly` is this same build.
const BPF_TOOLCHAIN_COMMIT: &str = "e50aa6fba";
/// bpf-linker release built against that toolchain's LLVM.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages the tests and benchmarks use.
const PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip"),
    ("keepalived", "keepalived"),
    ("bpftool", "bpftool"),
    ("tcpdump", "tcpdump"),
    ("tshark", "tshark"),
    ("iputils-ping", "ping"),
    ("nginx", "nginx"),
    ("curl", "curl"),
    // The bench's plot reads its font at run time (no fontconfig needed).
    (
        "fonts-dejavu-core",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    ),
    ("procps", "pgrep"),
    // FRR's vrrpd: a second VRRP implementation that uses the virtual MAC.
    ("frr", "/usr/lib/frr/vrrpd"),
    // The systemd test boots systemd as PID 1 in a container.
    ("systemd-container", "systemd-nspawn"),
    // `systemd-analyze verify` resolves the unit's Documentation=man:vigil(1).
    ("man-db", "man"),
    // FRR's bfdd (with zebra) is the BFD interop peer.
    ("frr", "/usr/lib/frr/bfdd"),
    // The bench drops 1 % of a node's packets with the statistic match.
    ("iptables", "iptables-legacy"),
    // `accept = false` is enforced with an nftables table (as keepalived's no_accept).
    ("nftables", "nft"),
];

fn step(msg: &str) {
    eprintln!("setup: {msg}");
}

fn rustc_commit(toolchain: &str) -> Option<String> {
    let out = Command::new("rustup")
        .args(["run", toolchain, "rustc", "-vV"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("commit-hash: ").map(str::to_owned))
}

/// The installed toolchain that is the pinned eBPF nightly, if any.
pub fn bpf_toolchain() -> Option<String> {
    [BPF_TOOLCHAIN, "nightly"]
        .into_iter()
        .find(|t| rustc_commit(t).is_some_and(|c| c.starts_with(BPF_TOOLCHAIN_COMMIT)))
        .map(str::to_owned)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// A program on PATH or in /usr/sbin, or a file given by absolute path.
fn present(what: &str) -> bool {
    if what.starts_with('/') {
        return std::path::Path::new(what).exists();
    }
    have(what) || have(&format!("/usr/sbin/{what}"))
}

fn ensure_toolchain() -> anyhow::Result<String> {
    if let Some(t) = bpf_toolchain() {
        step(&format!(
            "eBPF toolchain: {t} (rustc {BPF_TOOLCHAIN_COMMIT}) ok"
        ));
        return Ok(t);
    }
    step(&format!(
        "installing {BPF_TOOLCHAIN}: the XDP program is built with this exact nightly"
    ));
    run(Command::new("rustup").args([
        "toolchain",
        "install",
        BPF_TOOLCHAIN,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
    .with_context(|| {
        format!(
            "could not install {BPF_TOOLCHAIN}; is the Rust distribution server reachable? \
             Install it by hand with `rustup toolchain install {BPF_TOOLCHAIN}`"
        )
    })?;
    Ok(BPF_TOOLCHAIN.to_owned())
}

fn ensure_rust_src(toolchain: &str) -> anyhow::Result<()> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", toolchain])
        .output()?;
    if String::from_utf8_lossy(&out.stdout).contains("rust-src") {
        step("rust-src: ok");
        return Ok(());
    }
    step(&format!(
        "adding rust-src to {toolchain}: build-std needs it for bpfel-unknown-none"
    ));
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", toolchain]))
}

fn sysroot(toolchain: &str) -> anyhow::Result<PathBuf> {
    let out = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--print", "sysroot"])
        .output()?;
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn llvm_major(toolchain: &str) -> anyhow::Result<String> {
    let out = Command::new("rustup")
        .args(["run", toolchain, "rustc", "-vV"])
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("rustc -vV names no LLVM version")?;
    Ok(version.split('.').next().unwrap_or(version).to_owned())
}

fn ensure_bpf_linker(toolchain: &str) -> anyhow::Result<()> {
    let works = Command::new("rustup")
        .args(["run", toolchain, "bpf-linker", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        step("bpf-linker: ok");
        return Ok(());
    }
    let major = llvm_major(toolchain)?;
    step(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against {toolchain}'s own LLVM {major} \
         (links the XDP program; about 5 minutes, once)"
    ));
    let lib = sysroot(toolchain)?.join("lib");
    let libllvm = std::fs::read_dir(&lib)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.") || n.starts_with("libLLVM-"))
        })
        .with_context(|| format!("no libLLVM in {}", lib.display()))?;
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    let prefix = home.join(".cache/vigil/llvm");
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)?;
    run(Command::new("rustup")
        .args([
            "run",
            toolchain,
            "cargo",
            "install",
            "bpf-linker",
            "--locked",
        ])
        .args(["--version", BPF_LINKER_VERSION, "--no-default-features"])
        .args(["--features", &format!("llvm-{major}")])
        .env("LLVM_PREFIX", &prefix))
    .context("building bpf-linker failed; is crates.io reachable?")
}

fn ensure_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, bin)| !present(bin))
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        step("Debian packages: ok");
        return Ok(());
    }
    step(&format!(
        "installing Debian packages {} (tests and benchmarks use them)",
        missing.join(" ")
    ));
    if !have("apt-get") {
        bail!("apt-get not found: install {} by hand", missing.join(" "));
    }
    run(Command::new("apt-get").args(["update", "-qq"]))
        .context("apt-get update failed; is the Debian mirror reachable?")?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Installs whatever is missing; says what and why for each thing it installs.
pub fn ensure() -> anyhow::Result<()> {
    let toolchain = ensure_toolchain()?;
    ensure_rust_src(&toolchain)?;
    ensure_bpf_linker(&toolchain)?;
    ensure_packages()?;
    Ok(())
}
