//! Builds the XDP program (crate vigil-ebpf) for bpfel-unknown-none with the pinned
//! nightly and bpf-linker, and leaves the object in OUT_DIR for `include_bytes!`.
//!
//! `AYA_BUILD_SKIP=1` skips it (an empty object is embedded; `vigil` then says so and
//! uses its raw-socket datapath). `cargo xtask setup` installs what this needs.

use std::{env, fs, path::PathBuf, process::Command};

/// The eBPF toolchain every machine uses; see docs/architecture.md, "Toolchain".
const BPF_TOOLCHAIN: &str = "nightly-2026-05-20";
/// Commit of that nightly: the image's plain `nightly` is this very build.
const BPF_TOOLCHAIN_COMMIT: &str = "e50aa6fba";

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

/// The named dated nightly when installed, else `nightly` if it is the same build.
fn bpf_toolchain() -> anyhow::Result<String> {
    if let Ok(t) = env::var("VIGIL_BPF_TOOLCHAIN") {
        return Ok(t);
    }
    for candidate in [BPF_TOOLCHAIN, "nightly"] {
        if rustc_commit(candidate).is_some_and(|c| c.starts_with(BPF_TOOLCHAIN_COMMIT)) {
            return Ok(candidate.to_owned());
        }
    }
    anyhow::bail!(
        "the eBPF toolchain {BPF_TOOLCHAIN} (rustc {BPF_TOOLCHAIN_COMMIT}) is not installed; \
         run `cargo xtask setup`, or build without XDP with AYA_BUILD_SKIP=1"
    )
}

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    println!("cargo:rerun-if-env-changed=VIGIL_BPF_TOOLCHAIN");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        fs::write(out.join("vigil"), [])?;
        return Ok(());
    }
    let toolchain = bpf_toolchain()?;
    let ebpf = aya_build::Package {
        name: "vigil-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::Custom(&toolchain))?;
    // The program depends on the shared validation code too.
    println!(
        "cargo:rerun-if-changed={}",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../common/src")
    );
    Ok(())
}
