//! The fault matrix, datapath and control: XDP that cannot be had is an error when asked
//! for by mode (exit 2, with the reason) and a loud fallback under `xdp = "auto"` (log,
//! `vigil status`, metrics); `vigil reload` of a broken file says why and exits 1.

use std::process::Stdio;
use std::time::{Duration, Instant};

use vigil_tests::agent::{Vigil, global};
use vigil_tests::{Lab, require_root, vigil_bin};

fn instance(iface: &str, vip: &str) -> String {
    format!(
        "[instances.web]\ninterface = \"{iface}\"\nvrid = 51\npriority = 150\n\
         initial_state = \"master\"\nadvert_interval = \"100ms\"\n\
         virtual_addresses = [\"{vip} dev {iface}\"]\n"
    )
}

/// `xdp = "driver"` on a macvlan (no native XDP there): vigil does not start, exits 2
/// and says what cannot be had and what to set instead.
#[test]
fn xdp_driver_that_cannot_be_had_exits_2() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("fd-driver", &["lb01"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let lb01 = lab.host("lb01").clone();
    lb01.exec(&[
        "sh",
        "-c",
        "ip link add link eth0 name mv0 type macvlan mode bridge && \
         ip addr add 198.51.100.11/24 dev mv0 && ip link set mv0 up",
    ])?;
    let cfg = dir.join("lb01.toml");
    std::fs::write(
        &cfg,
        global(&lb01, &dir, &bpffs, "xdp = \"driver\"") + &instance("mv0", "198.51.100.100/24"),
    )?;
    let out = lb01
        .command(&vigil_bin().to_string_lossy())
        .args(["run", "-c"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("xdp = \"driver\" cannot be had") && stderr.contains("xdp = \"auto\""),
        "{stderr}"
    );
    Ok(())
}

/// Without CAP_BPF (as in a container that refuses bpf()), `xdp = "auto"` falls back to
/// raw sockets and says so in the log, in `vigil status` and in the metrics.
#[test]
fn xdp_auto_fallback_is_reported_everywhere() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("fd-auto", &["lb01"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let lb01 = lab.host("lb01").clone();
    let cfg = dir.join("lb01.toml");
    let socket = dir.join("lb01.sock");
    std::fs::write(
        &cfg,
        global(&lb01, &dir, &bpffs, "metrics = \"127.0.0.1:9650\"")
            + &instance("eth0", "192.0.2.100/24"),
    )?;
    let log = dir.join("lb01.log");
    let file = std::fs::File::create(&log)?;
    let child = lb01
        .command("setpriv")
        .args(["--bounding-set=-bpf,-perfmon,-sys_admin", "--"])
        .arg(vigil_bin())
        .args(["run", "-c"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()?;
    lab.adopt(child);
    let status = |()| -> anyhow::Result<serde_json::Value> {
        let out = lb01.exec(&[
            &vigil_bin().to_string_lossy(),
            "status",
            "--json",
            "--socket",
            &socket.to_string_lossy(),
        ])?;
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let s = loop {
        if let Ok(s) = status(()) {
            break s;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "vigil did not answer:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(s["datapath"], "raw socket (XDP unavailable)", "{s}");
    assert!(s["datapath_fallback"].is_string(), "{s}");
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains("WARN") && text.contains("XDP unavailable"),
        "{text}"
    );
    let metrics = lb01.exec(&["curl", "-s", "http://127.0.0.1:9650/metrics"])?;
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics
            .contains("vigil_datapath{mode=\"raw socket (XDP unavailable)\",fallback=\"true\"} 1"),
        "{metrics}"
    );
    Ok(())
}

/// `vigil reload` of a broken file: the errors, exit 1, the running configuration kept,
/// and the metrics say the last reload failed.
#[test]
fn vigil_reload_of_a_broken_file_says_why() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("fd-reload", &["lb01"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let lb01 = lab.host("lb01").clone();
    let v = Vigil::start_with(
        &lb01,
        &dir,
        &bpffs,
        "metrics = \"127.0.0.1:9650\"",
        &instance("eth0", "192.0.2.100/24"),
    )?;
    v.wait_state("web", "MASTER", Duration::from_secs(3))?;
    let good = std::fs::read_to_string(&v.config)?;
    std::fs::write(&v.config, good.replace("priority = 150", "priority = 300"))?;
    let out = lb01
        .command(&vigil_bin().to_string_lossy())
        .args(["reload", "--socket"])
        .arg(&v.socket)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("reload rejected") && stderr.contains("priority"),
        "{stderr}"
    );
    assert_eq!(v.state("web")?, "MASTER");
    let metrics = lb01.exec(&["curl", "-s", "http://127.0.0.1:9650/metrics"])?;
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(metrics.contains("vigil_last_reload_success 0"), "{metrics}");
    // And a good one prints what changed.
    std::fs::write(&v.config, good.replace("priority = 150", "priority = 140"))?;
    let out = lb01
        .command(&vigil_bin().to_string_lossy())
        .args(["reload", "--socket"])
        .arg(&v.socket)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("changed web"), "{stdout}");
    assert_eq!(v.state("web")?, "MASTER");
    Ok(())
}
