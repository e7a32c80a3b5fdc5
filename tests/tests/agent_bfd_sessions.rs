//! The life of BFD sessions in a vigil pair (1 s adverts, BFD-assisted takeover):
//! new timers on reload go through a Poll Sequence with the sessions Up and no VRRP
//! transition; a session let go says AdminDown (diagnostic 7) and the peer does not take
//! over for it; a former Master's session is let go and freed; junk from many source
//! addresses cannot make an agent open more sessions than its caps, and the real sessions
//! stay Up through it; `vigil trace --bfd` shows a session fall and be let go. Checked on
//! the wire and in status.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use vigil_tests::agent::{Vigil, has_address, start_pair};
use vigil_tests::bfd::{self, ADMIN_DOWN, DIAG_ADMIN_DOWN, UP};
use vigil_tests::capture::Capture;
use vigil_tests::{Host, Lab, require_root, wait_for};

const VIP: &str = "192.0.2.100";

fn instance(priority: u8, state: &str, bfd: &str) -> String {
    format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         initial_state = \"{state}\"\nadvert_interval = 1\n\
         virtual_addresses = [\"{VIP}/24\"]\n{bfd}"
    )
}

fn timers(ms: u32) -> String {
    format!("bfd = {{ interval = \"{ms}ms\", multiplier = 3 }}\n")
}

/// The sessions of an agent's status.
fn sessions(v: &Vigil) -> Vec<serde_json::Value> {
    v.status()
        .ok()
        .and_then(|s| s["bfd"].as_array().cloned())
        .unwrap_or_default()
}

/// The session to `peer`, if any.
fn session_to(v: &Vigil, peer: Ipv4Addr) -> Option<serde_json::Value> {
    sessions(v)
        .into_iter()
        .find(|s| s["peer"] == peer.to_string())
}

/// Waits until the session to `peer` is Up with detection time `detect_ms`.
fn wait_up(v: &Vigil, peer: Ipv4Addr, detect_ms: f64, within: Duration) {
    wait_for(
        &format!("{}: session to {peer} Up at {detect_ms} ms", v.host.name),
        within,
        || {
            session_to(v, peer)
                .filter(|s| s["state"] == "Up" && s["detection_time_ms"] == detect_ms)
                .map(drop)
        },
    );
}

/// Every VRRP transition an agent's instance made so far.
/// lb01 (Master, 150) and lb02 (Backup, 100) with 50 ms x 3 BFD on their instance, both
/// sessions Up; the lab goes with them.
fn pair_up(tag: &str) -> anyhow::Result<(Lab, Host, Host, Vigil, Vigil)> {
    let mut lab = Lab::new(tag, &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let (v1, v2) = start_pair(
        (&lb01, &lb02),
        &dir,
        &bpffs,
        (
            &instance(150, "master", &timers(50)),
            &instance(100, "backup", &timers(50)),
        ),
    )?;
    wait_up(&v1, lb02.ipv4, 150.0, Duration::from_secs(10));
    wait_up(&v2, lb01.ipv4, 150.0, Duration::from_secs(10));
    Ok((lab, lb01, lb02, v1, v2))
}

fn transitions(v: &Vigil) -> u64 {
    v.instance("web").map_or(0, |i| {
        i["transitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["count"].as_u64())
            .sum()
    })
}

fn rewrite(v: &Vigil, from: &str, to: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&v.config)?;
    assert!(
        text.contains(from),
        "{from:?} not in {}",
        v.config.display()
    );
    std::fs::write(&v.config, text.replace(from, to))?;
    Ok(())
}

fn reload(v: &Vigil) -> anyhow::Result<serde_json::Value> {
    let answer: serde_json::Value = serde_json::from_str(&v.request("reload")?)?;
    assert_eq!(answer["applied"], true, "{answer}");
    Ok(answer)
}

/// A Poll from `from` announcing `interval_us`, answered by a Final from `to`.
fn poll_then_final(seen: &[bfd::Seen], from: Ipv4Addr, to: Ipv4Addr, interval_us: u32) -> bool {
    let Some(poll) = seen
        .iter()
        .position(|p| p.src == from && p.poll && p.desired_tx_us == interval_us)
    else {
        return false;
    };
    seen[poll..].iter().any(|p| p.src == to && p.final_)
}

/// What both hosts send, each captured where it leaves: the XDP program drops a
/// session's packets on arrival once recorded, so a host's capture misses what its peer
/// sends.
struct Both {
    hosts: [(std::net::Ipv4Addr, Capture); 2],
}

impl Both {
    fn start(
        a: &vigil_tests::Host,
        b: &vigil_tests::Host,
        dir: &std::path::Path,
        name: &str,
    ) -> anyhow::Result<Self> {
        let start = |h: &vigil_tests::Host| {
            let file = dir.join(format!("{name}-{}.pcap", h.ipv4));
            Capture::start(h, "eth0", "udp port 3784", &file).map(|c| (h.ipv4, c))
        };
        Ok(Self {
            hosts: [start(a)?, start(b)?],
        })
    }

    fn stop(self) -> anyhow::Result<Vec<bfd::Seen>> {
        let mut seen = Vec::new();
        for (ip, c) in self.hosts {
            seen.extend(bfd::packets(&c.stop()?).into_iter().filter(|p| p.src == ip));
        }
        seen.sort_by_key(|p| p.ts_ns);
        Ok(seen)
    }
}

#[test]
fn new_timers_on_reload_poll_with_the_session_up_and_a_session_let_go_is_not_a_failure()
-> anyhow::Result<()> {
    require_root();
    let (lab, lb01, lb02, v1, v2) = pair_up("bfdrl")?;
    let dir = lab.dir.clone();
    let before = (transitions(&v1), transitions(&v2));

    // 50 ms -> 20 ms on both, one after the other, while Up.
    let capture = Both::start(&lb01, &lb02, &dir, "poll")?;
    for v in [&v2, &v1] {
        rewrite(v, "\"50ms\"", "\"20ms\"")?;
        let answer = reload(v)?;
        assert_eq!(
            answer["changed_in_place"],
            serde_json::json!(["web"]),
            "{answer}"
        );
    }
    wait_up(&v1, lb02.ipv4, 60.0, Duration::from_secs(5));
    wait_up(&v2, lb01.ipv4, 60.0, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    let seen = capture.stop()?;
    assert!(
        poll_then_final(&seen, lb02.ipv4, lb01.ipv4, 20_000),
        "no Poll from lb02 answered by lb01: {seen:?}"
    );
    assert!(
        poll_then_final(&seen, lb01.ipv4, lb02.ipv4, 20_000),
        "no Poll from lb01 answered by lb02: {seen:?}"
    );
    // The session never left Up on the wire nor in either agent's counters.
    assert!(seen.iter().all(|p| p.state == UP), "{seen:?}");
    for (v, peer) in [(&v1, lb02.ipv4), (&v2, lb01.ipv4)] {
        let s = session_to(v, peer).expect("session");
        assert_eq!(
            (s["downs"].as_u64(), s["ups"].as_u64()),
            (Some(0), Some(1)),
            "{s}"
        );
    }
    // No VRRP transition, the VIP where it was.
    assert_eq!((transitions(&v1), transitions(&v2)), before);
    assert_eq!(v1.state("web")?, "MASTER");
    assert_eq!(v2.state("web")?, "BACKUP");
    assert!(has_address(&lb01, VIP) && !has_address(&lb02, VIP));

    // The Master loses `bfd`: it lets its session go with AdminDown, and the Backup,
    // whose critical session that was, does not take it for the Master's loss.
    let capture = Both::start(&lb01, &lb02, &dir, "admin")?;
    rewrite(&v1, &timers(20), "")?;
    reload(&v1)?;
    wait_for("lb01 frees its session", Duration::from_secs(5), || {
        sessions(&v1).is_empty().then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let seen = capture.stop()?;
    assert!(
        seen.iter()
            .any(|p| p.src == lb01.ipv4 && p.state == ADMIN_DOWN && p.diag == DIAG_ADMIN_DOWN),
        "no AdminDown from lb01: {seen:?}"
    );
    assert_eq!(v2.state("web")?, "BACKUP", "{}", v2.log_text());
    assert_eq!(v1.state("web")?, "MASTER");
    assert_eq!((transitions(&v1), transitions(&v2)), before);
    let s = session_to(&v2, lb01.ipv4).expect("lb02 still wants its session to its Master");
    assert_eq!(
        s["last_down_reason"], "neighbor signaled session down",
        "{s}"
    );
    assert!(has_address(&lb01, VIP) && !has_address(&lb02, VIP));
    Ok(())
}

#[test]
fn a_former_masters_session_is_let_go_and_freed_then_learned_again() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("bfdgc", &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let (v1, v2) = start_pair(
        (&lb01, &lb02),
        &dir,
        &bpffs,
        (
            &instance(150, "master", &timers(50)),
            &instance(100, "backup", &timers(50)),
        ),
    )?;
    wait_up(&v2, lb01.ipv4, 150.0, Duration::from_secs(10));
    // `vigil trace --bfd` follows it all from lb02's side.
    let bin = vigil_tests::vigil_bin();
    let socket = v2.socket.to_string_lossy().into_owned();
    let trace = lb02.spawn(&[
        &bin.to_string_lossy(),
        "trace",
        "-i",
        "eth0",
        "--bfd",
        "--json",
        "--socket",
        &socket,
        "--duration",
        "25s",
    ])?;
    std::thread::sleep(Duration::from_millis(300));
    lab.set_link("lb01", false)?;
    v2.wait_state("web", "MASTER", Duration::from_secs(5))?;
    // Silent for Master_Down_Interval + detection (3.76 s): let go; down as long again:
    // taken down and freed.
    let started = Instant::now();
    wait_for(
        "lb02 frees its session to the lost Master",
        Duration::from_secs(20),
        || session_to(&v2, lb01.ipv4).is_none().then_some(()),
    );
    eprintln!("session freed {:?} after the takeover", started.elapsed());
    let history: serde_json::Value = serde_json::from_str(&v2.request("bfd-history 0")?)?;
    let events: Vec<String> = history["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["peer"] == lb01.ipv4.to_string())
        .filter_map(|e| e["event"].as_str().map(str::to_owned))
        .collect();
    assert!(events.iter().any(|e| e.starts_with("let go")), "{events:?}");
    assert!(v2.log_text().contains("BFD session let go"));
    // The trace printed the session as it stood, then the fall, the letting go and the
    // rest, with the peer, state and detection time.
    // SAFETY: plain syscall on our child's pid.
    unsafe { libc::kill(trace.id() as i32, libc::SIGTERM) };
    let out = trace.wait_with_output()?;
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let first = &lines.first().expect("trace printed something")["session"];
    assert_eq!(first["peer"], lb01.ipv4.to_string(), "{lines:?}");
    assert_eq!(first["state"], "Up", "{lines:?}");
    assert_eq!(first["detection_time_ms"], 150.0, "{lines:?}");
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    let fell = events
        .iter()
        .position(|e| *e == "Up -> Down: control detection time expired");
    let let_go = events.iter().position(|e| e.starts_with("let go"));
    assert!(
        fell.is_some() && let_go.is_some() && fell < let_go,
        "{events:?}"
    );

    // lb01 back: it preempts, lb02 hears it as Master again and runs a new session.
    lab.set_link("lb01", true)?;
    v1.wait_state("web", "MASTER", Duration::from_secs(5))?;
    v2.wait_state("web", "BACKUP", Duration::from_secs(5))?;
    wait_up(&v2, lb01.ipv4, 150.0, Duration::from_secs(10));
    assert!(has_address(&lb01, VIP) && !has_address(&lb02, VIP));
    Ok(())
}

/// BFD "start a session" packets from `count` TEST-NET-2 addresses to `to`.
fn junk(gen_host: &Host, to: &Host, count: u8) -> anyhow::Result<Vec<Vec<u8>>> {
    let macs = (gen_host.mac("eth0")?, to.mac("eth0")?);
    Ok((1..=count)
        .map(|i| {
            bfd::start_frame(
                macs,
                Ipv4Addr::new(198, 51, 100, i),
                to.ipv4,
                0x7000_0000 | u32::from(i),
            )
        })
        .collect())
}

#[test]
fn junk_from_many_addresses_meets_the_session_caps_and_the_pair_stays_up() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("bfdcap", &["lb01", "lb02", "gen"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02, gen_host] = lab.clone_hosts();
    let caps = "bfd_max_sessions = 8\nbfd_max_sessions_per_interface = 4\n";
    let global = |h: &Host| vigil_tests::agent::global(h, &dir, &bpffs, caps);
    let v1 = Vigil::start(
        &lb01,
        &dir,
        &(global(&lb01) + &instance(150, "master", &timers(50))),
    )?;
    let v2 = Vigil::start(
        &lb02,
        &dir,
        &(global(&lb02) + &instance(100, "backup", &timers(50))),
    )?;
    // Below 255 even `initial_state = "master"` waits one Master_Down_Interval.
    v1.wait_state("web", "MASTER", Duration::from_secs(6))?;
    v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    wait_up(&v1, lb02.ipv4, 150.0, Duration::from_secs(10));
    wait_up(&v2, lb01.ipv4, 150.0, Duration::from_secs(10));
    let before = (transitions(&v1), transitions(&v2));

    // 200 would-be peers at each agent, every 50 ms for 3 s (about 16k packets/s).
    let mut frames = junk(&gen_host, &lb01, 200)?;
    frames.extend(junk(&gen_host, &lb02, 200)?);
    let end = Instant::now() + Duration::from_secs(3);
    let mut most = (0, 0);
    while Instant::now() < end {
        gen_host.send_frames("eth0", &frames)?;
        std::thread::sleep(Duration::from_millis(50));
        most.0 = most.0.max(sessions(&v1).len());
        most.1 = most.1.max(sessions(&v2).len());
    }
    std::thread::sleep(Duration::from_millis(500));
    eprintln!("most sessions seen: lb01 {}, lb02 {}", most.0, most.1);
    for (v, peer, n) in [(&v1, lb02.ipv4, most.0), (&v2, lb01.ipv4, most.1)] {
        let s = v.status()?;
        let name = &v.host.name;
        assert!(n <= 4, "{name}: {n} sessions");
        let refused = s["bfd_refused"]["eth0"].as_u64().unwrap_or(0);
        assert!(refused > 0, "{name}: nothing refused: {s}");
        // The real session never went down.
        let real = session_to(v, peer).expect("the real session");
        assert_eq!(real["state"], "Up", "{name}: {real}");
        assert_eq!(real["downs"], 0, "{name}: {real}");
        // Logged once, counted ever after.
        let logged = v.log_text().matches("BFD session cap reached").count();
        assert_eq!(logged, 1, "{name}: cap logged {logged} times");
    }
    assert_eq!((transitions(&v1), transitions(&v2)), before);
    assert_eq!(v1.state("web")?, "MASTER");
    assert_eq!(v2.state("web")?, "BACKUP");
    assert!(has_address(&lb01, VIP) && !has_address(&lb02, VIP));
    Ok(())
}

/// Drops what `host` sends to UDP port 3784 while it lives.
struct MuteBfd(Host);

impl MuteBfd {
    fn rule(&self, op: &str) -> anyhow::Result<()> {
        self.0
            .exec(&[
                "iptables-legacy",
                op,
                "OUTPUT",
                "-p",
                "udp",
                "--dport",
                "3784",
                "-j",
                "DROP",
            ])
            .map(drop)
    }
}

impl Drop for MuteBfd {
    fn drop(&mut self) {
        let _ = self.rule("-D");
    }
}

#[test]
fn a_master_that_says_it_lost_the_backup_is_alive_and_keeps_its_role() -> anyhow::Result<()> {
    require_root();
    let (_lab, lb01, lb02, v1, v2) = pair_up("bfdsig")?;
    let before = (transitions(&v1), transitions(&v2));
    // lb02's BFD packets no longer reach lb01: lb01's detection time runs out and it
    // tells lb02 so (Down, diagnostic 1). lb02 hears lb01 all along.
    let mute = MuteBfd(lb02.clone());
    mute.rule("-A")?;
    wait_for(
        "lb02 hears lb01 say the session is down",
        Duration::from_secs(5),
        || {
            session_to(&v2, lb01.ipv4)
                .filter(|s| s["last_down_reason"] == "neighbor signaled session down")
                .map(drop)
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(v2.state("web")?, "BACKUP", "{}", v2.log_text());
    assert_eq!(v1.state("web")?, "MASTER");
    assert_eq!((transitions(&v1), transitions(&v2)), before);
    assert!(has_address(&lb01, VIP) && !has_address(&lb02, VIP));
    drop(mute);
    // Healed: Up again, still no transition.
    wait_up(&v2, lb01.ipv4, 150.0, Duration::from_secs(10));
    assert_eq!((transitions(&v1), transitions(&v2)), before);
    Ok(())
}
