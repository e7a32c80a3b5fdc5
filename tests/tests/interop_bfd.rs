//! BFD with a real peer: a vigil session reaches Up with FRR's bfdd and with keepalived's
//! bfd_instance, and each side sees the other stop within its detection time, measured on
//! a capture of the wire.
//!
//! The sessions run at 50 ms x 3: a shared, loaded test machine can starve a daemon for
//! tens of milliseconds, which would flap a 10 ms x 3 session before the test cuts it.
//! (The 10 ms x 3 takeover is agent_bfd_failover's.)

use std::net::Ipv4Addr;
use std::time::Duration;

use vigil_tests::agent::{Vigil, global};
use vigil_tests::capture::{Capture, Packet};
use vigil_tests::frr::Frr;
use vigil_tests::{Lab, require_root, wait_for};

/// A BFD Control packet seen on the wire.
#[derive(Debug, Clone, Copy)]
struct Seen {
    ts_ns: u64,
    src: Ipv4Addr,
    ttl: u8,
    state: u8,
    diag: u8,
}

/// Interval and multiplier of every session here.
const INTERVAL_MS: u64 = 50;
const MULT: u64 = 3;
const DETECT: Duration = Duration::from_millis(INTERVAL_MS * MULT);
/// Scheduling slack on a busy machine.
const SLACK: Duration = Duration::from_millis(15);

const DOWN: u8 = 1;
const UP: u8 = 3;

fn bfd_packets(packets: &[Packet]) -> Vec<Seen> {
    packets
        .iter()
        .filter_map(|p| {
            let d = &p.data;
            if d.len() < 14 + 20 + 8 + 24 || d[12..14] != [0x08, 0x00] || d[14 + 9] != 17 {
                return None;
            }
            let ihl = usize::from(d[14] & 0x0f) * 4;
            let udp = 14 + ihl;
            if u16::from_be_bytes([d[udp + 2], d[udp + 3]]) != 3784 {
                return None;
            }
            let bfd = &d[udp + 8..];
            Some(Seen {
                ts_ns: p.ts_ns,
                src: Ipv4Addr::new(d[26], d[27], d[28], d[29]),
                ttl: d[14 + 8],
                state: bfd[1] >> 6,
                diag: bfd[0] & 0x1f,
            })
        })
        .collect()
}

/// Time from `quiet`'s last packet to `watcher`'s first Down (diag 1, detection time
/// expired) after it.
fn detection_gap(seen: &[Seen], quiet: Ipv4Addr, watcher: Ipv4Addr, after_ns: u64) -> Duration {
    let down = seen
        .iter()
        .find(|s| s.ts_ns > after_ns && s.src == watcher && s.state == DOWN && s.diag == 1)
        .unwrap_or_else(|| panic!("{watcher} never said Down (detection time expired)"));
    let from_quiet: Vec<u64> = seen
        .iter()
        .filter(|s| s.src == quiet && s.ts_ns < down.ts_ns)
        .map(|s| s.ts_ns)
        .collect();
    let last = *from_quiet
        .last()
        .unwrap_or_else(|| panic!("nothing from {quiet} before {watcher}'s Down"));
    // The detection timer runs from the last packet that came in time. A peer that was
    // already late (silent for a whole detection time, then a burst) does not restart
    // a timer that has run out: measure from the packet before that silence. Without
    // such a silence the newest packet counts, and an early Down fails the check.
    let detect = DETECT.as_nanos() as u64;
    let from = if down.ts_ns - last >= detect {
        last
    } else {
        from_quiet
            .windows(2)
            .rev()
            .find(|w| w[1] - w[0] >= detect)
            .map_or(last, |w| w[0])
    };
    Duration::from_nanos(down.ts_ns - from)
}

fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn bfd_session(v: &Vigil) -> anyhow::Result<serde_json::Value> {
    Ok(v.status()?["bfd"][0].clone())
}

#[test]
fn frr_bfdd_session_comes_up_and_each_side_detects_the_others_stop() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("bfdfrr", &["lb01", "frr"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, frr_host] = lab.clone_hosts();
    // On the peer's side: vigil's XDP program consumes the peer's packets before a
    // capture on lb01 could see them.
    let capture = Capture::start(&frr_host, "eth0", "udp port 3784", &dir.join("bfd.pcap"))?;

    let config = global(&lb01, &dir, &bpffs, "")
        + "[bfd.to_frr]\nneighbor = \"192.0.2.12\"\ninterface = \"eth0\"\n\
           interval = \"50ms\"\nmultiplier = 3\n\n\
           [instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = 150\n\
           advert_interval = 1\nvirtual_addresses = [\"192.0.2.100/24\"]\n\
           track_bfd = [{ bfd = \"to_frr\", weight = 0 }]\n";
    let mut vigil = Vigil::start(&lb01, &dir, &config)?;
    let mut frr = Frr::start(
        &frr_host,
        &dir,
        "bfd\n peer 192.0.2.11 interface eth0\n  receive-interval 50\n  \
         transmit-interval 50\n  detect-multiplier 3\n !\n!\n",
    )?;

    wait_for("vigil's session Up", Duration::from_secs(10), || {
        let s = bfd_session(&vigil).ok()?;
        (s["state"] == "Up").then_some(())
    });
    wait_for("FRR's peer up", Duration::from_secs(5), || {
        let p = frr.peers().ok()?;
        (p[0]["status"] == "up").then_some(())
    });
    let s = bfd_session(&vigil)?;
    assert_eq!(s["detection_time_ms"], 150.0, "{s}");
    assert_eq!(s["transmit_interval_ms"], 50.0, "{s}");
    let p = frr.peers()?;
    assert_eq!(p[0]["remote-detect-multiplier"], 3, "{p}");
    assert_eq!(p[0]["remote-transmit-interval"], 50, "{p}");
    // The tracked session is up: the instance is out of FAULT.
    vigil.wait_instance("web", "not FAULT", Duration::from_secs(5), |i| {
        i["state"] != "FAULT"
    })?;

    // FRR stops without a word: vigil must see it within its detection time.
    let downs = bfd_session(&vigil)?["downs"].as_u64().unwrap_or(0);
    let frr_killed = realtime_ns();
    frr.kill_bfdd();
    wait_for("vigil's session Down", Duration::from_secs(3), || {
        let s = bfd_session(&vigil).ok()?;
        (s["state"] == "Down" && s["downs"] == downs + 1).then_some(s)
    });
    let s = bfd_session(&vigil)?;
    assert_eq!(
        s["last_down_reason"], "control detection time expired",
        "{s}"
    );
    vigil.wait_instance("web", "FAULT", Duration::from_secs(2), |i| {
        i["state"] == "FAULT"
    })?;

    // Back up, then vigil stops without a word: FRR must see it.
    frr.start_bfdd()?;
    wait_for("vigil's session Up again", Duration::from_secs(10), || {
        let s = bfd_session(&vigil).ok()?;
        (s["state"] == "Up").then_some(())
    });
    wait_for("FRR's peer up again", Duration::from_secs(5), || {
        let p = frr.peers().ok()?;
        (p[0]["status"] == "up").then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let before_kill = realtime_ns();
    vigil.signal(libc::SIGKILL);
    let _ = vigil.wait();
    wait_for("FRR's peer down", Duration::from_secs(3), || {
        let p = frr.peers().ok()?;
        (p[0]["status"] == "down").then_some(())
    });
    std::thread::sleep(Duration::from_millis(100));
    let seen = bfd_packets(&capture.stop()?);

    let vigil_ip = lb01.ipv4;
    let frr_ip = frr_host.ipv4;
    assert!(
        seen.iter().all(|s| s.ttl == 255),
        "a BFD packet without TTL 255"
    );
    assert!(seen.iter().any(|s| s.src == vigil_ip && s.state == UP));
    assert!(seen.iter().any(|s| s.src == frr_ip && s.state == UP));

    // Detection counts from the last packet; vigil's first Down packet goes out at its
    // next transmit tick after detection (at most one interval later).
    let vigil_saw = detection_gap(&seen, frr_ip, vigil_ip, frr_killed);
    eprintln!("vigil saw FRR stop after {vigil_saw:?} (detection time {DETECT:?})");
    assert!(
        vigil_saw >= DETECT && vigil_saw <= DETECT + Duration::from_millis(INTERVAL_MS) + SLACK,
        "{vigil_saw:?}"
    );
    // FRR says Down as soon as it detects.
    let frr_saw = detection_gap(&seen, vigil_ip, frr_ip, before_kill);
    eprintln!("FRR saw vigil stop after {frr_saw:?} (detection time {DETECT:?})");
    assert!(
        frr_saw >= DETECT - Duration::from_millis(1) && frr_saw <= DETECT + SLACK,
        "{frr_saw:?}"
    );
    drop(frr);
    Ok(())
}

/// keepalived with only its BFD process, in the foreground; its BFD child's PID comes
/// from the pid file it writes.
struct KeepalivedBfd {
    child: std::process::Child,
    bfd_pid: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl KeepalivedBfd {
    fn start(host: &vigil_tests::Host, dir: &std::path::Path, conf: &str) -> anyhow::Result<Self> {
        let path = dir.join("keepalived-bfd.conf");
        std::fs::write(&path, conf)?;
        let log = dir.join("keepalived-bfd.log");
        let out = std::fs::File::create(&log)?;
        let bfd_pid = dir.join("keepalived-bfd.bfd.pid");
        let child = host
            .command("keepalived")
            .args(["--dont-fork", "--log-console", "--log-detail"])
            .arg(format!("--use-file={}", path.display()))
            .arg(format!(
                "--pid={}",
                dir.join("keepalived-bfd.pid").display()
            ))
            .arg(format!("--bfd_pid={}", bfd_pid.display()))
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(Self {
            child,
            bfd_pid,
            log,
        })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The BFD child's PID, as keepalived wrote it.
    fn bfd_child(&self) -> Option<i32> {
        std::fs::read_to_string(&self.bfd_pid)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for KeepalivedBfd {
    fn drop(&mut self) {
        if let Some(pid) = self.bfd_child() {
            // SAFETY: plain syscall; the PID is keepalived's BFD child, stopped by us.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        // SAFETY: plain syscall on our own child's PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

#[test]
fn keepalived_bfd_instance_comes_up_and_each_side_detects_the_others_stop() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("bfdka", &["lb01", "ka"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, ka_host] = lab.clone_hosts();
    // On the peer's side, as in the FRR test.
    let capture = Capture::start(&ka_host, "eth0", "udp port 3784", &dir.join("bfd.pcap"))?;

    let config = global(&lb01, &dir, &bpffs, "")
        + "[bfd.to_ka]\nneighbor = \"192.0.2.12\"\ninterface = \"eth0\"\n\
           interval = \"50ms\"\nmultiplier = 3\n\n\
           [instances.web]\ninterface = \"eth0\"\nvrid = 51\n\
           virtual_addresses = [\"192.0.2.100/24\"]\n";
    let mut vigil = Vigil::start(&lb01, &dir, &config)?;
    let ka = KeepalivedBfd::start(
        &ka_host,
        &dir,
        "bfd_instance to_vigil {\n  neighbor_ip 192.0.2.11\n  source_ip 192.0.2.12\n  \
         min_rx 50\n  min_tx 50\n  multiplier 3\n}\n",
    )?;

    let up = |v: &Vigil| bfd_session(v).is_ok_and(|s| s["state"] == "Up");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !up(&vigil) {
        assert!(
            std::time::Instant::now() < deadline,
            "vigil's session not Up: {}\nkeepalived:\n{}",
            bfd_session(&vigil)?,
            ka.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !(ka.log_text().contains("(to_vigil) Entering Up state")
        && ka.log_text().contains("Detection time is 150000 us"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "keepalived's session not Up:\n{}",
            ka.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = bfd_session(&vigil)?;
    assert_eq!(s["detection_time_ms"], 150.0, "{s}");

    // keepalived's BFD process freezes: vigil must notice.
    let child = ka
        .bfd_child()
        .expect("keepalived wrote its BFD child's PID");
    let downs = bfd_session(&vigil)?["downs"].as_u64().unwrap_or(0);
    let ka_stopped = realtime_ns();
    // SAFETY: plain syscall on the PID keepalived gave for its BFD process.
    unsafe { libc::kill(child, libc::SIGSTOP) };
    wait_for("vigil's session Down", Duration::from_secs(3), || {
        let s = bfd_session(&vigil).ok()?;
        (s["state"] == "Down" && s["downs"] == downs + 1).then_some(())
    });
    assert_eq!(
        bfd_session(&vigil)?["last_down_reason"],
        "control detection time expired"
    );
    // SAFETY: as above.
    unsafe { libc::kill(child, libc::SIGCONT) };
    wait_for("vigil's session Up again", Duration::from_secs(10), || {
        let s = bfd_session(&vigil).ok()?;
        (s["state"] == "Up").then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let before_kill = realtime_ns();
    vigil.signal(libc::SIGKILL);
    let _ = vigil.wait();
    std::thread::sleep(Duration::from_millis(500));
    let seen = bfd_packets(&capture.stop()?);
    let log = ka.log_text();
    drop(ka);

    let (vigil_ip, ka_ip) = (lb01.ipv4, ka_host.ipv4);
    assert!(
        seen.iter().all(|s| s.ttl == 255),
        "a BFD packet without TTL 255"
    );
    assert!(
        seen.iter().any(|s| s.src == ka_ip && s.state == UP),
        "{log}"
    );
    let interval = Duration::from_millis(INTERVAL_MS);
    let vigil_saw = detection_gap(&seen, ka_ip, vigil_ip, ka_stopped);
    eprintln!("vigil saw keepalived stop after {vigil_saw:?} (detection time {DETECT:?})");
    assert!(
        vigil_saw >= DETECT && vigil_saw <= DETECT + interval + SLACK,
        "{vigil_saw:?}"
    );
    // keepalived says Down on a later transmit tick, not at once (seen: 36-41 ms at
    // 10 ms x 3, 216 ms at 50 ms x 3): the wire shows when it told, not when it knew.
    let ka_saw = detection_gap(&seen, vigil_ip, ka_ip, before_kill);
    eprintln!("keepalived saw vigil stop after {ka_saw:?} (detection time {DETECT:?})");
    assert!(
        ka_saw >= DETECT - Duration::from_millis(1) && ka_saw <= DETECT + 2 * interval + SLACK,
        "{ka_saw:?}\n{log}"
    );
    Ok(())
}
