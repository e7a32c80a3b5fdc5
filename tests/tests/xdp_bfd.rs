//! BFD's receive side in the XDP program, against FRR's bfdd over IPv4 and IPv6: the
//! session comes Up with the kernel receiving, a steady session wakes the agent for nothing
//! (the program records every packet and reports none), and when the peer stops, the
//! kernel's timer reports "down" one detection time after the last packet, by the kernel's
//! own timestamps. Without kernel timers the agent keeps the detection time from the
//! kernel's records; with `xdp = "off"` the same session runs on the agent's socket.
//!
//! 50 ms x 3, as in interop_bfd: a loaded test machine can starve a daemon for tens of
//! milliseconds.

use std::path::Path;
use std::time::Duration;

use vigil_tests::agent::{Vigil, global};
use vigil_tests::bpf::dump;
use vigil_tests::frr::Frr;
use vigil_tests::netns::monotonic_ns;
use vigil_tests::{Host, Lab, require_root, wait_for};

const INTERVAL_MS: u64 = 50;
const DETECT_NS: u64 = 3 * INTERVAL_MS * 1_000_000;
/// How late a timer callback and the agent's read of its record may be on a busy machine.
const SLACK_NS: u64 = 30_000_000;

/// The `bfd_iface` counters under `pin`, summed over interfaces and CPUs, by name, as an
/// operator reads them with bpftool.
fn iface_counters(
    host: &Host,
    pin: &Path,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let mut total = serde_json::Map::new();
    for entry in dump(host, &pin.join("bfd_iface"))? {
        for cpu in entry["values"].as_array().into_iter().flatten() {
            for (k, v) in cpu["value"].as_object().into_iter().flatten() {
                let sum =
                    total.get(k).and_then(|x| x.as_u64()).unwrap_or(0) + v.as_u64().unwrap_or(0);
                total.insert(k.clone(), sum.into());
            }
        }
    }
    Ok(total)
}

fn counter(c: &serde_json::Map<String, serde_json::Value>, name: &str) -> u64 {
    c.get(name).and_then(|v| v.as_u64()).unwrap_or(0)
}

/// The `bfd_state` entry of a session (by its local discriminator), read with bpftool.
fn session_state(host: &Host, pin: &Path, discriminator: u64) -> anyhow::Result<serde_json::Value> {
    dump(host, &pin.join("bfd_state"))?
        .into_iter()
        .find(|e| e["key"].as_u64() == Some(discriminator))
        .map(|e| e["value"].clone())
        .ok_or_else(|| anyhow::anyhow!("no session {discriminator} in bfd_state"))
}

#[test]
fn the_kernel_receives_stays_quiet_while_steady_and_reports_the_peers_silence() -> anyhow::Result<()>
{
    kernel_session("xbfd", false, true)
}

#[test]
fn the_same_over_ipv6() -> anyhow::Result<()> {
    kernel_session("xbfd6", true, true)
}

/// Where the kernel keeps no timers (`kernel_timers = false`, as on a kernel that refuses
/// bpf_timer), the program still records and consumes; the agent keeps the detection
/// time, reading the newest arrival from `bfd_state` when its deadline comes.
#[test]
fn without_kernel_timers_the_agent_keeps_the_detection_time() -> anyhow::Result<()> {
    kernel_session("xbfdnt", false, false)
}

/// The session of the tests above, over IPv4 or IPv6, with or without kernel timers.
fn kernel_session(tag: &str, v6: bool, timers: bool) -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new(tag, &["lb01", "frr"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, frr_host] = lab.clone_hosts();
    let pin = bpffs.join("lb01");
    let (vigil_ip, frr_ip) = if v6 {
        (lb01.ipv6.to_string(), frr_host.ipv6.to_string())
    } else {
        (lb01.ipv4.to_string(), frr_host.ipv4.to_string())
    };

    // The instance puts the XDP program on eth0; the session rides along.
    let extra = if timers { "" } else { "kernel_timers = false" };
    let config = global(&lb01, &dir, &bpffs, extra)
        + &format!(
            "[bfd.to_frr]\nneighbor = \"{}\"\ninterface = \"eth0\"\n\
             interval = \"{INTERVAL_MS}ms\"\nmultiplier = 3\n\n\
             [instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = 150\n\
             advert_interval = 1\nvirtual_addresses = [\"192.0.2.100/24\"]\n",
            frr_ip
        );
    let vigil = Vigil::start(&lb01, &dir, &config)?;
    let mut frr = Frr::start(
        &frr_host,
        &dir,
        &format!(
            "bfd\n peer {} interface eth0\n  receive-interval {INTERVAL_MS}\n  \
             transmit-interval {INTERVAL_MS}\n  detect-multiplier 3\n !\n!\n",
            vigil_ip
        ),
    )?;

    // Up, with the packets coming through the XDP program and the kernel keeping the
    // detection time.
    let session = wait_for("session Up in the kernel", Duration::from_secs(15), || {
        let s = vigil.status().ok()?["bfd"][0].clone();
        (s["state"] == "Up"
            && s["detection_time_ms"] == (DETECT_NS / 1_000_000) as f64
            && s["receive"] == "xdp"
            && s["detection"] == if timers { "kernel" } else { "agent" })
        .then_some(s)
    });
    let discriminator = session["local_discriminator"]
        .as_u64()
        .expect("a discriminator");
    let published = dump(&lb01, &pin.join("bfd_params"))?
        .into_iter()
        .find(|e| e["key"].as_u64() == Some(discriminator))
        .expect("the session's parameters are published");
    let published_detect = if timers { DETECT_NS } else { 0 };
    assert_eq!(
        published["value"]["detect_ns"], published_detect,
        "{published}"
    );
    assert_eq!(
        published["value"]["family"],
        if v6 { 6 } else { 4 },
        "{published}"
    );

    // Steady: the kernel records every packet and reports none; the agent's session
    // handles none. The window is counted in packets, not seconds: a loaded machine can
    // slow bfdd's sending (8 packets in 2 s was seen), and what is judged is what the
    // kernel did with each packet that came, however many came in a given time.
    std::thread::sleep(Duration::from_millis(500));
    let (c0, s0, a0) = (
        iface_counters(&lb01, &pin)?,
        session_state(&lb01, &pin, discriminator)?,
        vigil.status()?["bfd"][0]["received"].as_u64().unwrap_or(0),
    );
    let started = std::time::Instant::now();
    // 2 s of packets at 50 ms; at most 30 s for them, so a program that stopped
    // recording (or a session that stopped receiving) still fails.
    const STEADY_PACKETS: u64 = 40;
    let c1 = loop {
        // bpftool per read: a slower poll than `wait_for`'s leaves the machine to bfdd.
        std::thread::sleep(Duration::from_millis(250));
        let c = iface_counters(&lb01, &pin)?;
        let recorded = counter(&c, "recorded") - counter(&c0, "recorded");
        if recorded >= STEADY_PACKETS {
            break c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "recorded {recorded} in 30 s: {c:?}; the session now: {}",
            vigil.status()?["bfd"][0]
        );
    };
    let (s1, a1) = (
        session_state(&lb01, &pin, discriminator)?,
        vigil.status()?["bfd"][0]["received"].as_u64().unwrap_or(0),
    );
    let recorded = counter(&c1, "recorded") - counter(&c0, "recorded");
    let reported = counter(&c1, "reported") - counter(&c0, "reported");
    eprintln!(
        "{tag}: steady window of {:.1} s: {recorded} packets recorded in the kernel, {reported} reported",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        reported,
        0,
        "no ring event while steady: {c0:?} -> {c1:?}; the session now: {}",
        vigil.status()?["bfd"][0]
    );
    assert_eq!(a1, a0, "the agent's session handled packets while steady");
    let per_session = s1["received"].as_u64().unwrap_or(0) - s0["received"].as_u64().unwrap_or(0);
    // The two maps are read a moment apart: a packet may fall between the reads.
    assert!(
        per_session.abs_diff(recorded) <= 1,
        "{recorded} vs {s0} -> {s1}"
    );
    assert_eq!(s1["reported"], s0["reported"]);
    assert_eq!(counter(&c1, "down"), 0);
    assert!(
        counter(&c1, "reported") >= 1,
        "the first packet was reported: {c1:?}"
    );

    // The peer stops without a word: the kernel's timer reports it.
    let killed = monotonic_ns();
    frr.kill_bfdd();
    let s = wait_for("session Down", Duration::from_secs(3), || {
        let s = vigil.status().ok()?["bfd"][0].clone();
        (s["state"] == "Down").then_some(s)
    });
    assert_eq!(
        s["last_down_reason"], "control detection time expired",
        "{s}"
    );
    if !timers {
        // The agent's own timer judged, from the kernel's newest arrival.
        assert!(s["kernel_down"].is_null(), "{s}");
        assert_eq!(counter(&iface_counters(&lb01, &pin)?, "down"), 0);
        return Ok(());
    }
    let down = &s["kernel_down"];
    let last = down["last_packet_ns"]
        .as_u64()
        .expect("the kernel reported the down");
    let deadline = down["deadline_ns"].as_u64().expect("a deadline");
    let heard = down["heard_ns"].as_u64().expect("heard");
    eprintln!(
        "{tag}: peer killed at {killed}; last packet {} ms before; kernel down after {:.3} ms of \
         silence; agent heard {:.3} ms after the deadline",
        killed.saturating_sub(last) as f64 / 1e6,
        (deadline - last) as f64 / 1e6,
        heard.saturating_sub(deadline) as f64 / 1e6
    );
    // The timer runs from the last packet the kernel saw, which came before the kill.
    assert!(last <= killed, "last packet {last} after the kill {killed}");
    assert!(killed - last <= INTERVAL_MS * 1_000_000 + SLACK_NS);
    assert_eq!(
        deadline - last,
        DETECT_NS,
        "down exactly one detection time after the last packet"
    );
    assert!(
        heard >= deadline && heard - deadline <= SLACK_NS,
        "heard {heard}, deadline {deadline}"
    );
    let c2 = iface_counters(&lb01, &pin)?;
    assert_eq!(counter(&c2, "down"), 1, "{c2:?}");
    let s2 = session_state(&lb01, &pin, discriminator)?;
    assert_eq!(s2["downs"], 1, "{s2}");
    assert_eq!(s2["last_ns"].as_u64(), Some(last), "{s2}");

    // The peer comes back: its first packets reach the agent again and the session
    // returns to Up.
    frr.start_bfdd()?;
    wait_for("session Up again", Duration::from_secs(15), || {
        let s = vigil.status().ok()?["bfd"][0].clone();
        (s["state"] == "Up").then_some(())
    });
    drop(frr);
    drop(vigil);
    Ok(())
}

/// Without XDP the same session runs on the agent's socket and timer, and the peer's
/// silence is still detected (by the agent).
#[test]
fn without_xdp_the_socket_and_the_agents_timer_do_it() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("xbfdoff", &["lb01", "frr"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, frr_host] = lab.clone_hosts();
    let config = global(&lb01, &dir, &bpffs, "xdp = \"off\"")
        + &format!(
            "[bfd.to_frr]\nneighbor = \"{}\"\ninterface = \"eth0\"\n\
             interval = \"{INTERVAL_MS}ms\"\nmultiplier = 3\n\n\
             [instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = 150\n\
             advert_interval = 1\nvirtual_addresses = [\"192.0.2.100/24\"]\n",
            frr_host.ipv4
        );
    let vigil = Vigil::start(&lb01, &dir, &config)?;
    let mut frr = Frr::start(
        &frr_host,
        &dir,
        &format!(
            "bfd\n peer {} interface eth0\n  receive-interval {INTERVAL_MS}\n  \
             transmit-interval {INTERVAL_MS}\n  detect-multiplier 3\n !\n!\n",
            lb01.ipv4
        ),
    )?;
    wait_for("session Up on the socket", Duration::from_secs(15), || {
        let s = vigil.status().ok()?["bfd"][0].clone();
        (s["state"] == "Up" && s["detection_time_ms"] == (DETECT_NS / 1_000_000) as f64)
            .then_some(())
    });
    // Steady: every packet reaches the agent's session.
    let s0 = vigil.status()?["bfd"][0].clone();
    std::thread::sleep(Duration::from_secs(1));
    let s1 = vigil.status()?["bfd"][0].clone();
    assert_eq!(
        (&s1["receive"], &s1["detection"]),
        (&"socket".into(), &"agent".into()),
        "{s1}"
    );
    let handled = s1["received"].as_u64().unwrap_or(0) - s0["received"].as_u64().unwrap_or(0);
    assert!(
        handled >= 10,
        "the agent's session handled {handled} packets in 1 s"
    );

    frr.kill_bfdd();
    let s = wait_for("session Down", Duration::from_secs(3), || {
        let s = vigil.status().ok()?["bfd"][0].clone();
        (s["state"] == "Down").then_some(s)
    });
    assert_eq!(
        s["last_down_reason"], "control detection time expired",
        "{s}"
    );
    assert!(s["kernel_down"].is_null(), "{s}");
    drop(frr);
    drop(vigil);
    Ok(())
}
