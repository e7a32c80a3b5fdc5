//! The kernel keeps a Backup's Master_Down_Timer (a `bpf_timer` in the XDP program): the
//! Backup agent sleeps while its Master lives, late adverts included, yet takes over at
//! the RFC deadline when the Master dies (timed from a capture). Forced off, the agent keeps the timer itself and
//! says so. A ring buffer the agent does not read fills, and the program says so in the
//! agent's log through aya-log.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use vigil_tests::agent::{Vigil, adverts, global};
use vigil_tests::capture::Capture;
use vigil_tests::frames::Advert;
use vigil_tests::{Host, Lab, require_root};

const VIP: &str = "192.0.2.100";
const MASTER_IP: &str = "192.0.2.11";
const BACKUP_IP: &str = "192.0.2.12";
/// How long the Backup is watched for wake-ups.
const QUIET: Duration = Duration::from_secs(10);

fn instance(priority: u8, state: &str, interval_ms: u64) -> String {
    format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         initial_state = \"{state}\"\nadvert_interval = \"{interval_ms}ms\"\n\
         virtual_addresses = [\"{VIP}/24 dev eth0 label eth0:1\"]\n"
    )
}

/// Master_Down_Interval for `interval_ms` adverts at `priority` (RFC 5798 §6.1).
fn master_down(priority: u8, interval_ms: u64) -> Duration {
    let skew = Duration::from_nanos((256 - u64::from(priority)) * interval_ms * 1_000_000 / 256);
    Duration::from_millis(3 * interval_ms) + skew
}

/// The sleeping Backup's Master advertises every 50 ms: 20 adverts a second, and a
/// Master_Down_Interval (180 ms) that a loaded test machine's scheduling hiccups do not
/// reach as easily as 36 ms.
const SLEEP_MS: u64 = 50;
/// The forced fallback runs at 10 ms, where the agent's own timer wakes it often.
const FAST_MS: u64 = 10;

/// Context switches (voluntary + involuntary) of each thread of `pid`, by thread name
/// and id: each is the thread going to sleep or being put aside, so a sleeping agent's
/// count stands still.
fn switches(pid: u64) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let mut out = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?;
        let status = std::fs::read_to_string(task.path().join("status"))?;
        let mut name = String::new();
        let mut total = 0;
        for line in status.lines() {
            if let Some(n) = line.strip_prefix("Name:") {
                name = n.trim().to_owned();
            }
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>()?;
            }
        }
        out.insert(
            format!("{name}/{}", task.file_name().to_string_lossy()),
            total,
        );
    }
    Ok(out)
}

/// Wake-ups per second of the agent over `over` (every thread), with the threads that
/// woke.
fn wakeups_per_second(agent: &Vigil, over: Duration) -> anyhow::Result<f64> {
    let pid = agent.status()?["pid"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("status has no pid"))?;
    // The status request itself wakes the agent; let that settle first.
    std::thread::sleep(Duration::from_millis(500));
    let before = switches(pid)?;
    std::thread::sleep(over);
    let after = switches(pid)?;
    let mut total = 0;
    for (thread, n) in &after {
        let d = n - before.get(thread).copied().unwrap_or(0);
        if d > 0 {
            eprintln!("  {thread}: {d} context switches");
        }
        total += d;
    }
    Ok(total as f64 / over.as_secs_f64())
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal address")
}

fn start(host: &Host, dir: &Path, bpffs: &Path, extra: &str, inst: &str) -> anyhow::Result<Vigil> {
    Vigil::start(host, dir, &(global(host, dir, bpffs, extra) + inst))
}

/// Lets the Master die (`dies` returns once it has stopped advertising) and returns how
/// long after its last advert the Backup's first one went out, from a capture on the
/// client.
fn takeover_time(
    lab: &Lab,
    backup: &Vigil,
    dir: &Path,
    dies: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let client = lab.host("client").clone();
    let cap = Capture::start(&client, "eth0", "ip proto 112", &dir.join("cut.pcap"))?;
    std::thread::sleep(Duration::from_millis(250));
    dies()?;
    backup.wait_state("web", "MASTER", Duration::from_secs(3))?;
    std::thread::sleep(Duration::from_millis(100));
    let seen = adverts(&cap.stop()?);
    let last_master = seen
        .iter()
        .rev()
        .find(|a| a.1 == ip(MASTER_IP))
        .ok_or_else(|| anyhow::anyhow!("no adverts from the master in the capture"))?
        .0;
    // After the master's last advert: on a loaded machine a stalled master may have
    // let the backup take over (and be preempted back) before the cut.
    let first_backup = seen
        .iter()
        .find(|a| a.1 == ip(BACKUP_IP) && a.0 > last_master)
        .ok_or_else(|| anyhow::anyhow!("no adverts from the backup in the capture"))?
        .0;
    Ok(Duration::from_nanos(
        first_backup.saturating_sub(last_master),
    ))
}

/// Cuts the Master's link: [`takeover_time`] for a Master that dies with its link.
fn cut_and_time(lab: &Lab, backup: &Vigil, dir: &Path) -> anyhow::Result<Duration> {
    takeover_time(lab, backup, dir, || lab.set_link("lb01", false))
}

#[test]
fn backup_sleeps_while_the_master_lives_and_takes_over_at_the_deadline() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("ktimer", &["lb01", "lb02", "client"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let master = start(&lb01, &dir, &bpffs, "", &instance(150, "master", SLEEP_MS))?;
    let backup = start(&lb02, &dir, &bpffs, "", &instance(100, "backup", SLEEP_MS))?;
    master.wait_state("web", "MASTER", Duration::from_secs(3))?;
    backup.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    // Let start-up and the first adverts settle.
    std::thread::sleep(Duration::from_secs(1));

    let status = backup.status()?;
    assert_eq!(status["down_timers"], "kernel", "{status}");
    assert_eq!(backup.instance("web")?["down_timer"], "kernel");
    assert!(
        backup.log_text().contains("down_timers=kernel"),
        "the start-up log says who keeps the timers:\n{}",
        backup.log_text()
    );

    // 20 adverts a second from a live Master, and the Backup agent does not wake for
    // them (an idle agent has no periodic work either).
    let rate = wakeups_per_second(&backup, QUIET)?;
    eprintln!("backup agent: {rate:.2} wake-ups/s over {QUIET:?} of a live {SLEEP_MS} ms master");
    assert!(rate <= 1.0, "backup agent woke {rate:.2} times a second");
    let web = backup.instance("web")?;
    assert_eq!(web["state"], "BACKUP", "{web}\n{}", backup.log_text());
    // A silence the election judged too short (a late advert) wakes the agent once; it
    // must not have turned into a takeover.
    let silences = web["kernel_silences"].as_u64().unwrap_or(0);
    eprintln!("silences before the cut: {silences}\n{}", backup.log_text());

    let took = cut_and_time(&lab, &backup, &dir)?;
    let bound = master_down(100, SLEEP_MS);
    assert_on_time(took, bound);
    // The kernel's silence event woke the agent, and the election took over.
    let web = backup.instance("web")?;
    let after = web["kernel_silences"].as_u64().unwrap_or(0);
    assert!(after > silences, "no silence from the kernel: {web}");
    assert_eq!(web["last_transition"]["to"], "MASTER");
    assert!(vigil_tests::agent::has_address(&lb02, VIP));
    Ok(())
}

/// How late the late Master's every third advert comes: more than two intervals after
/// the one before, less than the Backup's Master_Down_Interval (180 ms at 50 ms).
const LATE_MS: u64 = 130;

/// A Master on a busy machine: its adverts arrive late, further apart than two intervals
/// yet within Master_Down_Interval. That is no news for the election, so the Backup's
/// agent must not wake for it; and when the Master dies the Backup still takes over at
/// the RFC deadline. The Master is the test itself, sending every 50 ms but every third
/// advert 130 ms after the one before (from a SCHED_FIFO thread, so a loaded machine does
/// not stretch the gaps into a real silence).
#[test]
fn late_adverts_do_not_wake_the_backup_and_it_takes_over_at_the_deadline() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("ktimerlate", &["lb01", "lb02", "client"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let backup = start(&lb02, &dir, &bpffs, "", &instance(100, "backup", SLEEP_MS))?;
    backup.wait_state("web", "BACKUP", Duration::from_secs(3))?;

    // 11 s of adverts: settling, the measured window, and the capture before the end.
    let mut advert = Advert::v3(Ipv4Addr::new(192, 0, 2, 11), 51, 150);
    advert.interval = u16::try_from(SLEEP_MS / 10)?;
    let mut offsets = Vec::new();
    let mut at = Duration::ZERO;
    while at < Duration::from_secs(11) {
        offsets.push(at);
        let late = offsets.len() % 3 == 0;
        at += Duration::from_millis(if late { LATE_MS } else { SLEEP_MS });
    }
    let frames = vec![advert.frame(); offsets.len()];
    let master = std::thread::spawn(move || lb01.send_frames_at("eth0", &frames, &offsets));

    std::thread::sleep(Duration::from_millis(1500));
    let web = backup.instance("web")?;
    assert_eq!(web["state"], "BACKUP", "{web}\n{}", backup.log_text());
    assert_eq!(web["down_timer"], "kernel", "{web}");
    let silences = web["kernel_silences"].as_u64().unwrap_or(0);

    let rate = wakeups_per_second(&backup, Duration::from_secs(5))?;
    eprintln!("backup agent: {rate:.2} wake-ups/s over 5 s of a late {SLEEP_MS} ms master");
    assert!(rate <= 1.0, "backup agent woke {rate:.2} times a second");
    let web = backup.instance("web")?;
    assert_eq!(web["state"], "BACKUP", "{web}\n{}", backup.log_text());
    assert_eq!(
        web["kernel_silences"].as_u64().unwrap_or(0),
        silences,
        "a gap reached Master_Down_Interval: {web}\n{}",
        backup.log_text()
    );

    let mut sent = Vec::new();
    let took = takeover_time(&lab, &backup, &dir, || {
        sent = master
            .join()
            .map_err(|_| anyhow::anyhow!("the master's thread panicked"))??;
        Ok(())
    })?;
    // The gaps the Backup slept through were there: more than two intervals.
    let two = 2 * SLEEP_MS * 1_000_000;
    let late = sent.windows(2).filter(|w| w[1] - w[0] > two).count();
    assert!(late >= 30, "only {late} gaps of more than two intervals");
    let bound = master_down(100, SLEEP_MS);
    assert_on_time(took, bound);
    let web = backup.instance("web")?;
    assert!(
        web["kernel_silences"].as_u64().unwrap_or(0) > silences,
        "{web}"
    );
    assert_eq!(web["last_transition"]["to"], "MASTER");
    Ok(())
}

#[test]
fn forced_off_the_agent_keeps_the_timers_and_says_so() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("ktimeroff", &["lb01", "lb02", "client"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let master = start(&lb01, &dir, &bpffs, "", &instance(150, "master", FAST_MS))?;
    let backup = start(
        &lb02,
        &dir,
        &bpffs,
        "kernel_timers = false",
        &instance(100, "backup", FAST_MS),
    )?;
    master.wait_state("web", "MASTER", Duration::from_secs(3))?;
    backup.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    std::thread::sleep(Duration::from_secs(1));

    let status = backup.status()?;
    assert_eq!(
        status["down_timers"], "agent (kernel_timers = false)",
        "{status}"
    );
    assert_eq!(backup.instance("web")?["down_timer"], "agent");
    assert!(
        backup
            .log_text()
            .contains("down_timers=agent (kernel_timers = false)"),
        "{}",
        backup.log_text()
    );
    // The agent's own down timer wakes it about once per Master_Down_Interval (36 ms):
    // the wake-up count of the other test measures something that does move.
    let rate = wakeups_per_second(&backup, Duration::from_secs(3))?;
    eprintln!("backup agent without kernel timers: {rate:.2} wake-ups/s");
    assert!(
        rate >= 10.0,
        "only {rate:.2} wake-ups/s with the agent's own timers"
    );

    let took = cut_and_time(&lab, &backup, &dir)?;
    let bound = master_down(100, FAST_MS);
    eprintln!("takeover after {took:?}; Master_Down_Interval {bound:?}");
    assert!(took + Duration::from_millis(1) >= bound, "early: {took:?}");
    assert!(took <= bound + Duration::from_millis(10), "late: {took:?}");
    assert_eq!(backup.instance("web")?["kernel_silences"], 0);
    Ok(())
}

#[test]
fn a_full_ring_buffer_is_told_in_the_agents_log() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("ktimerlog", &["lb01", "peer"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, peer] = lab.clone_hosts();
    // A lone Master hears of every advert from a peer, so each one is a ring event.
    let master = start(&lb01, &dir, &bpffs, "", &instance(150, "master", FAST_MS))?;
    master.wait_state("web", "MASTER", Duration::from_secs(3))?;

    // Stop the agent so nothing reads the ring, and overfill it: 256 KiB holds about
    // 3,200 events.
    master.signal(libc::SIGSTOP);
    let frame = Advert::v3(Ipv4Addr::new(192, 0, 2, 99), 51, 100).frame();
    let frames = vec![frame; 6000];
    let sent = peer.send_frames("eth0", &frames);
    master.signal(libc::SIGCONT);
    sent?;

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline && !master.log_text().contains("ring buffer full") {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = master.log_text();
    assert!(
        log.contains("ring buffer full: an event of VRID 51 was lost"),
        "no ring-full line in the agent's log:\n{log}"
    );
    // Once a second per CPU at most, not once per lost event.
    let lines = log.matches("ring buffer full").count();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        lines <= 2 * cpus,
        "{lines} ring-full lines for one burst:\n{log}"
    );
    let counters = master.status()?["datapath_counters"]["eth0"].clone();
    assert!(
        counters["ring_full"].as_u64().unwrap_or(0) > 1000,
        "{counters}"
    );
    Ok(())
}

/// A takeover `took` after the Master's last advert is at the RFC deadline `bound`:
/// never more than 0.5 ms early (capture timestamps), at most 10 ms late.
fn assert_on_time(took: Duration, bound: Duration) {
    eprintln!("takeover after {took:?}; Master_Down_Interval {bound:?}");
    // The kernel's alarm runs up to 2 ms ahead of the deadline: a takeover at the alarm,
    // not at the deadline, fails here (the capture's own jitter is tens of µs).
    assert!(
        took + Duration::from_micros(500) >= bound,
        "took over early: {took:?} < {bound:?}"
    );
    assert!(
        took <= bound + Duration::from_millis(10),
        "took over late: {took:?} > {bound:?}"
    );
}
