//! vigil under a real systemd (PID 1 in a systemd-nspawn container), installed by the
//! steps docs/operations.md gives, with the unit as shipped: READY and STATUS=, watchdog
//! pings, a watchdog kill whose restart removes the dead agent's VIP, a reload with a
//! broken file that fails before any SIGHUP, a reload of a new priority that keeps
//! MASTER without a priority-0 advert, SIGUSR1/SIGUSR2 dumps, a health check that runs
//! as `nobody` inside the sandbox, the election loop at SCHED_FIFO, journald priorities,
//! `systemd-analyze verify` and `security`, and a stop that removes the VIP.
//!
//! One container, one boot, every check in sequence: booting is the expensive part.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vigil_tests::capture::read_pcap;
use vigil_tests::container::{self, Container};

const VIP: &str = "192.0.2.100";

fn config(priority: u8) -> String {
    format!(
        "[global]\nrouter_id = \"lb01\"\nscript_user = \"nobody\"\nmetrics = \"127.0.0.1:9650\"\n\n\
         [scripts.sandbox]\ncommand = \"/stage/sandbox-check.sh\"\ninterval = \"200ms\"\n\
         timeout = 1\nweight = 0\n\n\
         [instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         initial_state = \"master\"\nadvert_interval = \"100ms\"\n\
         virtual_addresses = [\"{VIP}/24\"]\ntrack_scripts = [\"sandbox\"]\n"
    )
}

/// Passes only as `nobody`, with /etc read-only and a /tmp of its own: what
/// the unit's sandbox promises a health check.
const SANDBOX_CHECK: &str = "#!/bin/sh\n\
    [ \"$(id -un)\" = nobody ] || { echo \"running as $(id -un)\"; exit 1; }\n\
    touch /etc/vigil/probe 2>/dev/null && { echo '/etc is writable'; exit 1; }\n\
    [ -e /tmp/vg-marker ] && { echo 'PrivateTmp is off'; exit 1; }\n\
    exit 0\n";

/// The install steps of docs/operations.md ("Running under systemd"), verbatim.
fn documented_install() -> anyhow::Result<String> {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )?;
    let section = doc
        .split("## Running under systemd")
        .nth(1)
        .context("docs/operations.md has no \"Running under systemd\" section")?;
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .context("no ```sh block in \"Running under systemd\"")?;
    if !block.contains("vigil manpage") || !block.contains("systemctl enable --now vigil") {
        bail!("the documented install steps changed shape:\n{block}");
    }
    Ok(block.to_owned())
}

fn show(c: &Container, prop: &str) -> anyhow::Result<String> {
    Ok(c.sh_ok(&format!("systemctl show vigil -p {prop} --value"))?
        .trim()
        .to_owned())
}

fn status(c: &Container) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(&c.sh_ok("vigil status --json")?)?)
}

fn wait(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what}: not within {within:?}")
}

/// How many times the VIP is on the container's interfaces.
fn vip_count(c: &Container) -> anyhow::Result<usize> {
    let out = c.sh_ok("ip -o -4 addr show")?;
    Ok(out
        .split_whitespace()
        .filter(|w| w.split('/').next() == Some(VIP))
        .count())
}

fn journal(c: &Container) -> String {
    c.sh_ok("journalctl -u vigil --no-pager -o cat")
        .unwrap_or_default()
}

#[test]
fn vigil_under_systemd() -> anyhow::Result<()> {
    if let Some(why) = container::unavailable() {
        container::skip("vigil_under_systemd", &why);
        return Ok(());
    }
    let c = Container::boot("systemd")?;
    let result = checks(&c);
    if result.is_err() {
        eprintln!("journal of vigil.service:\n{}", journal(&c));
    }
    result
}

fn checks(c: &Container) -> anyhow::Result<()> {
    // What the documented steps install from: a source tree's layout, the test's config
    // in place of the example (TEST-NET addresses on the container's own veth).
    let bin = std::fs::read(vigil_tests::vigil_bin())?;
    c.stage("target/release/vigil", &bin, 0o755)?;
    c.stage(
        "packaging/vigil.service",
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/vigil.service"),
        )?,
        0o644,
    )?;
    c.stage(
        "packaging/examples/lb01.toml",
        config(150).as_bytes(),
        0o644,
    )?;
    c.stage("sandbox-check.sh", SANDBOX_CHECK.as_bytes(), 0o755)?;

    // Like a host's systemd at boot: a bpffs on /sys/fs/bpf. A veth pair for the VIP,
    // captured on its far end.
    c.sh_ok(
        "mount -o remount,bind,rw /sys; mkdir -p /sys/fs/bpf\n\
         mount -t bpf -o nosuid,nodev,noexec,mode=700 bpf /sys/fs/bpf\n\
         mount -o remount,bind,ro /sys\n\
         ip link add eth0 type veth peer name eth1\n\
         ip addr add 192.0.2.11/24 dev eth0\n\
         ip link set eth0 up; ip link set eth1 up\n\
         touch /tmp/vg-marker",
    )?;
    // The only change to the unit: a watchdog of 2 s instead of 10, so that its pings and
    // its kill take seconds here; no core files from the kill.
    c.sh_ok(
        "mkdir -p /etc/systemd/system/vigil.service.d\n\
         printf '[Service]\\nWatchdogSec=2\\nLimitCORE=0\\n' \
           > /etc/systemd/system/vigil.service.d/test.conf",
    )?;
    c.sh_ok(&format!("cd /stage\n{}", documented_install()?))?;

    // READY=1 (Type=notify: `active` only after it), and a one-line STATUS=.
    wait("vigil MASTER", Duration::from_secs(5), || {
        show(c, "StatusText").is_ok_and(|s| s.contains("1 MASTER"))
    })?;
    assert_eq!(show(c, "ActiveState")?, "active");
    let status_text = show(c, "StatusText")?;
    assert!(status_text.contains("datapath eth0: xdp"), "{status_text}");
    assert_eq!(vip_count(c)?, 1);

    // The unit as shipped is clean and tight.
    let verify = c.sh("systemd-analyze verify vigil.service")?;
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = c.sh_ok("systemd-analyze security vigil.service --no-pager | tail -n 1")?;
    let exposure: f64 = security
        .split("vigil.service:")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no exposure level in {security:?}"))?;
    eprintln!("systemd-analyze security: {}", security.trim());
    assert!(exposure <= 3.5, "systemd-analyze security: {security}");

    // The health check ran as nobody inside the sandbox and passed.
    let s = status(c)?;
    let script = &s["instances"][0]["tracking"]["scripts"][0];
    assert_eq!(script["status"], "ok", "{s}");
    assert_eq!(s["schema_version"], 1);
    // The unit lets the election loop have SCHED_FIFO at the default realtime_priority,
    // and the BFD threads one above, without CAP_SYS_NICE: LimitRTPRIO=11,
    // RestrictRealtime=no.
    assert_eq!(show(c, "LimitRTPRIO")?, "11");
    assert_eq!(show(c, "RestrictRealtime")?, "no");
    // systemd raises the service's RLIMIT_RTPRIO above its own hard limit only with
    // CAP_SYS_RESOURCE (else it keeps the closest value, silently); a container
    // without it, as in some CI sandboxes, gives the agent 0, and the agent must then
    // run at normal priority and say why.
    let effective = c.sh_ok("sed -n 's/^CapEff:[[:space:]]*//p' /proc/1/status")?;
    let sys_resource = u64::from_str_radix(effective.trim(), 16)? & (1 << 24) != 0;
    if sys_resource {
        assert_eq!(s["scheduling"], "SCHED_FIFO priority 10", "{}", journal(c));
    } else {
        eprintln!("systemd has no CAP_SYS_RESOURCE here: LimitRTPRIO cannot take effect");
        let refused = s["scheduling"].as_str().unwrap_or_default();
        assert!(
            refused.starts_with("normal priority (SCHED_FIFO refused: "),
            "{s}"
        );
        assert!(
            journal(c).contains("election loop at normal priority (SCHED_FIFO refused"),
            "{}",
            journal(c)
        );
    }

    // Watchdog pings every second (half of WatchdogSec).
    let ping1: u64 = show(c, "WatchdogTimestampMonotonic")?.parse()?;
    std::thread::sleep(Duration::from_millis(1300));
    let ping2: u64 = show(c, "WatchdogTimestampMonotonic")?.parse()?;
    assert!(
        ping2 > ping1,
        "no watchdog ping in 1.3 s ({ping1} then {ping2})"
    );

    // journald files warnings as warnings.
    let warnings = c.sh_ok("journalctl -u vigil -p warning --no-pager -o cat")?;
    assert!(warnings.contains("has not passed yet"), "{warnings}");
    assert!(!warnings.contains("vigil running"), "{warnings}");

    // Prometheus: the content type of what is served, and the build.
    let metrics = c.sh_ok("curl -si http://127.0.0.1:9650/metrics")?;
    assert!(
        metrics.contains("Content-Type: application/openmetrics-text"),
        "{metrics}"
    );
    assert!(metrics.contains("vigil_build_info{version="), "{metrics}");

    // SIGUSR1 / SIGUSR2 write dumps and kill nothing.
    let pid = show(c, "MainPID")?;
    c.sh_ok("systemctl kill --kill-whom=main -s USR1 vigil; systemctl kill --kill-whom=main -s USR2 vigil")?;
    wait("dumps written", Duration::from_secs(3), || {
        c.sh("test -s /run/vigil/lb01.data && test -s /run/vigil/lb01.stats")
            .is_ok_and(|o| o.status.success())
    })?;
    let data: serde_json::Value = serde_json::from_str(&c.sh_ok("cat /run/vigil/lb01.data")?)?;
    assert_eq!(data["instances"][0]["state"], "MASTER");
    assert_eq!(show(c, "MainPID")?, pid);
    assert_eq!(show(c, "NRestarts")?, "0");

    // A broken file: `systemctl reload` fails, and vigil never hears of it.
    c.sh_ok("printf '[global]\\nrouter_id = 7\\n' > /etc/vigil/vigil.toml")?;
    let bad = c.sh("systemctl reload vigil")?;
    assert!(!bad.status.success(), "reload of a broken file succeeded");
    std::thread::sleep(Duration::from_millis(200));
    let log = journal(c);
    assert!(
        !log.contains("reload rejected"),
        "vigil got a SIGHUP:\n{log}"
    );
    assert_eq!(show(c, "ActiveState")?, "active");

    // A new priority on a Master: no priority-0 advert, no transition, MASTER kept.
    let transitions = |s: &serde_json::Value| -> u64 {
        s["instances"][0]["transitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["count"].as_u64())
            .sum()
    };
    let before = transitions(&status(c)?);
    c.sh_ok(
        "tcpdump -i eth1 -U -w /root/reload.pcap 'ip proto 112' >/dev/null 2>&1 &\n\
         echo $! > /root/tcpdump.pid",
    )?;
    std::thread::sleep(Duration::from_millis(600));
    std::fs::write(c.path("/etc/vigil/vigil.toml"), config(200).as_bytes())?;
    c.sh_ok("systemctl reload vigil")?;
    wait("effective priority 200", Duration::from_secs(3), || {
        status(c).is_ok_and(|s| s["instances"][0]["effective_priority"] == 200)
    })?;
    std::thread::sleep(Duration::from_millis(500));
    c.sh_ok("kill $(cat /root/tcpdump.pid); sleep 0.2")?;
    let s = status(c)?;
    assert_eq!(s["instances"][0]["state"], "MASTER", "{s}");
    assert_eq!(transitions(&s), before, "a transition on reload: {s}");
    assert_eq!(s["last_reload"]["success"], true, "{s}");
    let adverts = vigil_tests::agent::adverts(&read_pcap(&c.path("/root/reload.pcap"))?);
    assert!(!adverts.is_empty(), "no adverts captured");
    assert!(
        adverts.iter().all(|(_, _, p)| *p != 0),
        "priority 0 on the wire during a reload: {adverts:?}"
    );
    assert!(adverts.iter().any(|(_, _, p)| *p == 150));
    assert!(adverts.iter().any(|(_, _, p)| *p == 200));
    for w in adverts.windows(2) {
        let gap = w[1].0.saturating_sub(w[0].0);
        assert!(
            gap < 300_000_000,
            "adverts paused {gap} ns during the reload"
        );
    }

    // Watchdog kill: a hung agent is killed (SIGABRT); the restarted one removes the VIP
    // the dead one left, then takes it again as the only router.
    let pid = show(c, "MainPID")?;
    c.sh_ok(&format!("kill -STOP {pid}"))?;
    wait("restart after the watchdog", Duration::from_secs(8), || {
        show(c, "NRestarts").is_ok_and(|n| n == "1")
            && show(c, "MainPID").is_ok_and(|p| p != pid && p != "0")
            && show(c, "StatusText").is_ok_and(|s| s.contains("1 MASTER"))
    })?;
    let log = journal(c);
    assert!(
        log.contains("Watchdog timeout"),
        "no watchdog timeout:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "removed {VIP}/24 from eth0: left by a vigil that did not exit cleanly"
        )),
        "the restarted agent did not remove the dead one's VIP:\n{log}"
    );
    assert_eq!(vip_count(c)?, 1);

    // Stop: the VIP goes, and the exit is a clean one.
    c.sh_ok("systemctl stop vigil")?;
    assert_eq!(vip_count(c)?, 0, "VIP left after stop");
    assert_eq!(show(c, "ExecMainStatus")?, "0");
    assert!(!c.sh("test -e /run/vigil/lb01.addresses")?.status.success());
    Ok(())
}
