//! The fault matrix: one test per fault, each asserting "nothing lost" — after
//! convergence exactly one node holds the VIP at every sampled instant, no VIP is
//! orphaned, and no instance is deaf (a deaf Backup would take the VIP as well and fail
//! the same check). Pairs run 100 ms adverts so each fault plays out in seconds.
//! docs/operations.md has the table of faults and outcomes.

use std::time::{Duration, Instant};

use vigil_tests::agent::{Vigil, global, has_address};
use vigil_tests::invariant::VipWatch;
use vigil_tests::{Host, Lab, require_root};

const VIP: &str = "192.0.2.100";
/// How long "exactly one holder" is checked after convergence.
const HOLD: Duration = Duration::from_millis(1500);

fn instance(priority: u8, state: &str, extra: &str) -> String {
    format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         initial_state = \"{state}\"\nadvert_interval = \"100ms\"\n\
         virtual_addresses = [\"{VIP}/24 dev eth0\"]\n{extra}"
    )
}

struct Pair {
    lab: Lab,
    lb01: Host,
    lb02: Host,
    v1: Vigil,
    v2: Vigil,
}

/// lb01 (150) Master and lb02 (100) Backup, with `global_extra` in both `[global]`s and
/// `extra` in both instances.
fn pair(tag: &str, global_extra: &str, extra: &str) -> anyhow::Result<Pair> {
    require_root();
    let mut lab = Lab::new(tag, &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let v1 = Vigil::start_with(
        &lb01,
        &dir,
        &bpffs,
        global_extra,
        &instance(150, "master", extra),
    )?;
    let v2 = Vigil::start_with(
        &lb02,
        &dir,
        &bpffs,
        global_extra,
        &instance(100, "backup", extra),
    )?;
    v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    Ok(Pair {
        lab,
        lb01,
        lb02,
        v1,
        v2,
    })
}

impl Pair {
    fn watch(&self) -> VipWatch {
        VipWatch::start(&[self.lb01.clone(), self.lb02.clone()], VIP)
    }

    /// lb01 Master, lb02 Backup, and from then on only lb01 holds the VIP.
    fn settled(&self, watch: &VipWatch, within: Duration) -> anyhow::Result<()> {
        self.v1.wait_state("web", "MASTER", within)?;
        self.v2.wait_state("web", "BACKUP", within)?;
        let from = watch.converged(within)?;
        let n = watch.exactly_one_from(from, HOLD, "lb01")?;
        eprintln!("{n} samples after convergence, every one with only lb01 holding {VIP}");
        Ok(())
    }

    fn record(&self) -> std::path::PathBuf {
        self.lab.dir.join("lb01.addresses")
    }
}

fn transitions(v: &Vigil) -> u64 {
    v.instance("web")
        .map(|i| {
            i["transitions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["count"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

enum Crash {
    Signal(i32),
    Panic,
}

/// The Master dies without cleanup; lb02 takes over; lb01 restarts with the same runtime
/// directory (as systemd keeps it), removes what the dead agent left, and preempts back.
fn crash_and_restart(tag: &str, crash: Crash, record: Option<&[u8]>) -> anyhow::Result<()> {
    // No core files from SIGABRT in the test's directory.
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscall on a valid struct; children inherit it.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    let mut p = pair(tag, "", "")?;
    let watch = p.watch();
    match crash {
        Crash::Signal(sig) => p.v1.signal(sig),
        Crash::Panic => {
            let _ = p.v1.request("panic");
        }
    }
    let code = p.v1.wait()?;
    eprintln!("lb01 exited with {code:?}");
    assert_ne!(code, Some(0), "a crash must not look like a clean stop");
    if matches!(crash, Crash::Panic) {
        // The panic hook removed the address before the process ended.
        assert!(!has_address(&p.lb01, VIP), "VIP left behind by a panic");
        assert!(
            p.v1.log_text()
                .contains("panic: removing the virtual addresses")
        );
    } else {
        assert!(
            has_address(&p.lb01, VIP),
            "the dead agent's VIP should still be there"
        );
    }
    p.v2.wait_state("web", "MASTER", Duration::from_secs(2))?;
    match record {
        Some(b"") => std::fs::remove_file(p.record())?,
        Some(bytes) => std::fs::write(p.record(), bytes)?,
        None => {}
    }
    p.v1.spawn()?;
    p.settled(&watch, Duration::from_secs(4))?;
    let log = p.v1.log_text();
    if !matches!(crash, Crash::Panic) {
        let by_record = "left by a vigil that did not exit cleanly";
        let by_tag = "found by its kernel tag";
        assert!(
            log.contains(if record.is_some() { by_tag } else { by_record }),
            "the restarted agent did not say it removed the dead one's VIP:\n{log}"
        );
    }
    Ok(())
}

#[test]
fn sigkill_of_the_master_then_restart() -> anyhow::Result<()> {
    crash_and_restart("f-kill", Crash::Signal(libc::SIGKILL), None)
}

#[test]
fn sigabrt_of_the_master_then_restart() -> anyhow::Result<()> {
    crash_and_restart("f-abrt", Crash::Signal(libc::SIGABRT), None)
}

#[test]
fn panic_of_the_master_removes_its_vip_then_restart() -> anyhow::Result<()> {
    crash_and_restart("f-panic", Crash::Panic, None)
}

#[test]
fn crash_record_missing() -> anyhow::Result<()> {
    crash_and_restart("f-norec", Crash::Signal(libc::SIGKILL), Some(b""))
}

#[test]
fn crash_record_corrupt() -> anyhow::Result<()> {
    crash_and_restart(
        "f-badrec",
        Crash::Signal(libc::SIGKILL),
        Some(b"{\"not\": [a list"),
    )
}

/// Link down and up on the raw-socket path: the receive task survives ENETDOWN, the
/// agent keeps running, and the flapped Backup hears the Master again (a deaf one would
/// take the VIP after 0.3 s).
#[test]
fn link_down_up_on_the_raw_socket_path() -> anyhow::Result<()> {
    let p = pair("f-rawlink", "xdp = \"off\"", "")?;
    let watch = p.watch();
    for (host, v) in [(&p.lb02, &p.v2), (&p.lb01, &p.v1)] {
        host.exec(&["ip", "link", "set", "eth0", "down"])?;
        v.wait_state("web", "FAULT", Duration::from_secs(2))?;
        std::thread::sleep(Duration::from_millis(300));
        host.exec(&["ip", "link", "set", "eth0", "up"])?;
        p.settled(&watch, Duration::from_secs(4))?;
    }
    for v in [&p.v1, &p.v2] {
        assert!(v.status().is_ok(), "an agent exited:\n{}", v.log_text());
        assert!(!v.log_text().contains("raw receive stopped"));
    }
    Ok(())
}

/// keepalived's SIGUSR1 (data) and SIGUSR2 (stats) write dumps; nothing dies or moves.
#[test]
fn sigusr1_and_sigusr2_write_dumps_and_kill_nothing() -> anyhow::Result<()> {
    let p = pair("f-usr", "", "")?;
    let watch = p.watch();
    let before = (transitions(&p.v1), transitions(&p.v2));
    for v in [&p.v1, &p.v2] {
        v.signal(libc::SIGUSR1);
        v.signal(libc::SIGUSR2);
    }
    let from = watch.converged(Duration::from_secs(1))?;
    watch.exactly_one_from(from, HOLD, "lb01")?;
    for (v, name) in [(&p.v1, "lb01"), (&p.v2, "lb02")] {
        assert!(v.status().is_ok(), "{name} died:\n{}", v.log_text());
        let data: serde_json::Value =
            serde_json::from_slice(&std::fs::read(p.lab.dir.join(format!("{name}.data")))?)?;
        assert_eq!(data["router_id"], name);
        let stats: serde_json::Value =
            serde_json::from_slice(&std::fs::read(p.lab.dir.join(format!("{name}.stats")))?)?;
        assert!(stats["instances"][0]["adverts_tx"].is_u64(), "{stats}");
    }
    assert_eq!((transitions(&p.v1), transitions(&p.v2)), before);
    Ok(())
}

/// 2,000 idle TCP connections to the Master's metrics port, then its file descriptor
/// limit cut to just above what it uses while more clients come: elections and health
/// checks go on, no failover, no lowered priority.
#[test]
fn idle_metrics_connections_and_the_fd_limit_cause_no_failover() -> anyhow::Result<()> {
    let check = "[scripts.up]\ncommand = \"true\"\ninterval = \"100ms\"\nweight = -60\n";
    let p = pair(
        "f-fds",
        &format!("metrics = \"127.0.0.1:9650\"\n{check}"),
        "track_scripts = [\"up\"]\n",
    )?;
    p.v1.wait_instance("web", "script ok", Duration::from_secs(2), |i| {
        i["tracking"]["scripts"][0]["status"] == "ok"
    })?;
    let watch = p.watch();
    let before = (transitions(&p.v1), transitions(&p.v2));
    let ns = p.lb01.ns.clone();
    // Phase 1: 2,000 idle clients (the connection cap closes all but a few at once).
    let held = vigil_tests::in_netns(&ns, || {
        let mut conns = Vec::new();
        for _ in 0..2000 {
            let addr = ([127, 0, 0, 1], 9650).into();
            if let Ok(c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                conns.push(c);
            }
        }
        std::thread::sleep(Duration::from_millis(1500));
        Ok(conns.len())
    })?;
    eprintln!("{held} idle connections held for 1.5 s");
    assert!(held >= 1900, "only {held} of 2000 connections");
    // Phase 2: room for a few descriptors and not much else; once they are taken,
    // accept() and the health check's pipe() fail with EMFILE.
    let pid = p.v1.pid().expect("running");
    // The agent's descriptors at rest: the fewest seen across a few health-check runs
    // (a run holds its pipes for a moment; counting one would leave room for it).
    let mut fds = usize::MAX;
    for _ in 0..12 {
        fds = fds.min(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count());
        std::thread::sleep(Duration::from_millis(23));
    }
    vigil_tests::run(std::process::Command::new("prlimit").args([
        "--pid",
        &pid.to_string(),
        &format!("--nofile={}:{}", fds + 4, fds + 4),
    ]))?;
    let conns = vigil_tests::in_netns(&ns, || {
        let mut conns = Vec::new();
        for _ in 0..200 {
            let addr = ([127, 0, 0, 1], 9650).into();
            if let Ok(c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(50)) {
                conns.push(c);
            }
        }
        Ok(conns)
    })?;
    // Held until the health check has met the shortage (or 5 s).
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while !p.v1.log_text().contains("standing kept") && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(conns);
    let from = watch.converged(Duration::from_secs(1))?;
    watch.exactly_one_from(from, HOLD, "lb01")?;
    assert_eq!((transitions(&p.v1), transitions(&p.v2)), before);
    let i = p.v1.instance("web")?;
    assert_eq!(i["effective_priority"], 150, "{i}");
    let log = p.v1.log_text();
    assert!(
        log.contains("clients already connected"),
        "the connection cap was never reached:\n{log}"
    );
    assert!(
        log.contains("standing kept"),
        "the fd limit was never reached:\n{log}"
    );
    Ok(())
}

/// A burst of link events in the Master's namespace (more than the netlink socket
/// buffers): link monitoring goes on, so the tracked interface going down is seen.
#[test]
fn netlink_overrun_keeps_link_monitoring() -> anyhow::Result<()> {
    let p = pair("f-overrun", "", "track_interfaces = [\"eth0\"]\n")?;
    let watch = p.watch();
    // Each change is a ~1 KiB RTM_NEWLINK to every subscriber: 3,000 of them outrun
    // the socket's buffer while the agent's one thread is busy elsewhere.
    let mut batch = String::new();
    for i in 0..3000 {
        batch += &format!("link set dev lo mtu {}\n", 2000 + i % 1000);
    }
    batch += "link set dev lo mtu 65536\n";
    let file = p.lab.dir.join("burst.batch");
    std::fs::write(&file, batch)?;
    p.lb01.exec(&["ip", "-batch", &file.to_string_lossy()])?;
    std::thread::sleep(Duration::from_millis(500));
    let resynced = p.v1.log_text().contains("links read again");
    eprintln!("overrun seen and links re-read: {resynced}");
    let from = watch.converged(Duration::from_secs(1))?;
    watch.exactly_one_from(from, Duration::from_millis(500), "lb01")?;
    // Still monitoring: the tracked interface going down is a fault at once.
    let t0 = Instant::now();
    p.lb01.exec(&["ip", "link", "set", "eth0", "down"])?;
    p.v1.wait_state("web", "FAULT", Duration::from_secs(2))?;
    eprintln!("FAULT {:?} after eth0 went down", t0.elapsed());
    p.v2.wait_state("web", "MASTER", Duration::from_secs(2))?;
    p.lb01.exec(&["ip", "link", "set", "eth0", "up"])?;
    p.settled(&watch, Duration::from_secs(4))?;
    Ok(())
}

/// 100 flaps in about 10 s with a notify script slower than the flaps: only the newest
/// state's script follows the one running, so the last to run is for the state the
/// instance ends in, and the scripts finish moments after the storm, not minutes.
#[test]
fn a_notify_storm_runs_only_the_newest_state() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("f-notify", &["lb01"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let lb01 = lab.host("lb01").clone();
    let log = dir.join("notify.log");
    let script = dir.join("notify.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$3\" >> {}\nsleep 0.3\n", log.display()),
    )?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let v = Vigil::start(
        &lb01,
        &dir,
        &(global(&lb01, &dir, &bpffs, "")
            + &instance(
                150,
                "master",
                &format!("notify = \"{}\"\n", script.display()),
            )),
    )?;
    v.wait_state("web", "MASTER", Duration::from_secs(3))?;
    let t0 = Instant::now();
    lb01.exec(&[
        "sh",
        "-c",
        "for i in $(seq 100); do ip link set eth0 down; sleep 0.05; ip link set eth0 up; sleep 0.05; done",
    ])?;
    let storm = t0.elapsed();
    v.wait_state("web", "MASTER", Duration::from_secs(3))?;
    let flaps = transitions(&v);
    // The queue drains within a script or two of the storm's end.
    std::thread::sleep(Duration::from_millis(1000));
    let ran = std::fs::read_to_string(&log)?;
    let lines: Vec<&str> = ran.lines().collect();
    eprintln!(
        "{flaps} transitions in {storm:?}; {} notify runs: {:?}",
        lines.len(),
        lines
    );
    assert!(flaps >= 100, "only {flaps} transitions");
    assert!(
        lines.len() < 60,
        "{} notify runs for {flaps} transitions",
        lines.len()
    );
    assert_eq!(lines.last(), Some(&"MASTER"), "{lines:?}");
    // Nothing runs late.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        std::fs::read_to_string(&log)?,
        ran,
        "a stale notify ran late"
    );
    Ok(())
}

/// Reloads on a Master that change its priority, advert interval, addresses, health
/// checks and notify script: each is taken in place — no priority-0 advert on the wire,
/// no transition on either node, the VIP never leaves, a new address comes at once.
#[test]
fn reloads_on_a_master_change_it_in_place() -> anyhow::Result<()> {
    let p = pair("f-reload", "", "")?;
    let watch = p.watch();
    let cap = vigil_tests::capture::Capture::start(
        &p.lb02,
        "eth0",
        "ip proto 112",
        &p.lab.dir.join("reload.pcap"),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let before = (transitions(&p.v1), transitions(&p.v2));
    let head = std::fs::read_to_string(&p.v1.config)?;
    let head = head
        .split("[instances.web]")
        .next()
        .unwrap_or_default()
        .to_owned();
    let vip2 = "192.0.2.101";
    let notify = p.lab.dir.join("notify.sh");
    std::fs::write(&notify, "#!/bin/sh\nexit 0\n")?;
    std::fs::set_permissions(&notify, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    // Each step keeps the earlier ones' changes.
    let at_200ms = |t: String| t.replace("\"100ms\"", "\"200ms\"");
    let two_vips = |t: String| {
        t.replace(
            &format!("[\"{VIP}/24 dev eth0\"]"),
            &format!("[\"{VIP}/24 dev eth0\", \"{vip2}/24 dev eth0\"]"),
        )
    };
    let tracked = format!(
        "track_scripts = [\"up\"]\nnotify = \"{}\"\n",
        notify.display()
    );
    let steps = [
        ("priority", instance(160, "master", "")),
        ("advert interval", at_200ms(instance(160, "master", ""))),
        ("addresses", two_vips(at_200ms(instance(160, "master", "")))),
        (
            "scripts and notify",
            format!(
                "[scripts.up]\ncommand = \"true\"\ninterval = \"100ms\"\nweight = 5\n\n{}",
                two_vips(at_200ms(instance(160, "master", &tracked)))
            ),
        ),
    ];
    for (what, inst) in steps {
        std::fs::write(&p.v1.config, format!("{head}{inst}"))?;
        let reply: serde_json::Value = serde_json::from_str(&p.v1.request("reload")?)?;
        assert_eq!(reply["applied"], true, "{what}: {reply}");
        assert_eq!(reply["changed_in_place"][0], "web", "{what}: {reply}");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(p.v1.state("web")?, "MASTER", "{what}");
        assert_eq!(p.v2.state("web")?, "BACKUP", "{what}");
    }
    assert!(
        has_address(&p.lb01, vip2),
        "the new address is not on the Master"
    );
    assert!(!has_address(&p.lb02, vip2));
    p.v1.wait_instance("web", "at 165", Duration::from_secs(2), |i| {
        i["effective_priority"] == 165
    })?;
    let from = watch.converged(Duration::from_secs(1))?;
    watch.exactly_one_from(from, Duration::from_millis(500), "lb01")?;
    assert_eq!((transitions(&p.v1), transitions(&p.v2)), before);
    let adverts = vigil_tests::agent::adverts(&cap.stop()?);
    let lb01: std::net::IpAddr = p.lb01.ipv4.into();
    let mine: Vec<u8> = adverts
        .iter()
        .filter(|(_, src, _)| *src == lb01)
        .map(|(_, _, prio)| *prio)
        .collect();
    assert!(!mine.is_empty());
    assert!(!mine.contains(&0), "priority 0 on the wire: {mine:?}");
    assert!(mine.contains(&150) && mine.contains(&160) && mine.contains(&165));
    for w in adverts.windows(2) {
        let gap = w[1].0.saturating_sub(w[0].0);
        assert!(gap < 500_000_000, "adverts paused {gap} ns");
    }
    Ok(())
}

fn clock(id: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts
}

fn ns(ts: libc::timespec) -> i128 {
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Sets CLOCK_REALTIME to `ns` since the epoch (what `date -s` does).
fn set_realtime(ns: i128) -> anyhow::Result<()> {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: plain syscall on a valid timespec.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
        anyhow::bail!("clock_settime: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The wall clock stepped back and then forward by two minutes, as `date -s` does:
/// elections and timers run on CLOCK_MONOTONIC, so nothing moves. The wall clock is
/// machine-wide (no namespace has its own), so each step lasts one second and the clock
/// is put back from CLOCK_MONOTONIC, to the nanosecond it would have read; set
/// VIGIL_TEST_NO_CLOCK_STEP=1 to skip this on a machine where even that is unwelcome.
#[test]
fn a_wall_clock_step_moves_nothing() -> anyhow::Result<()> {
    if std::env::var_os("VIGIL_TEST_NO_CLOCK_STEP").is_some() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED a_wall_clock_step_moves_nothing: VIGIL_TEST_NO_CLOCK_STEP is set"
        );
        return Ok(());
    }
    let p = pair("f-clock", "", "")?;
    let watch = p.watch();
    let before = (transitions(&p.v1), transitions(&p.v2));
    let (real0, mono0) = (
        ns(clock(libc::CLOCK_REALTIME)),
        ns(clock(libc::CLOCK_MONOTONIC)),
    );
    let restore = || set_realtime(real0 + ns(clock(libc::CLOCK_MONOTONIC)) - mono0);
    let stepped = (|| -> anyhow::Result<()> {
        for step in [-120_000_000_000i128, 120_000_000_000] {
            set_realtime(real0 + ns(clock(libc::CLOCK_MONOTONIC)) - mono0 + step)?;
            std::thread::sleep(Duration::from_secs(1));
            restore()?;
        }
        Ok(())
    })();
    restore()?;
    stepped?;
    let from = watch.converged(Duration::from_secs(1))?;
    watch.exactly_one_from(from, Duration::from_millis(500), "lb01")?;
    let all = watch.samples();
    assert!(
        all.iter().all(|(_, h)| h.len() == 1 && h[0] == "lb01"),
        "the VIP moved during a clock step"
    );
    assert_eq!((transitions(&p.v1), transitions(&p.v2)), before);
    Ok(())
}
