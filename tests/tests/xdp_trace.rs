//! The XDP program reports exactly the VRRP adverts on the wire, with kernel arrival times.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use vigil_tests::frames::Advert;
use vigil_tests::{Lab, require_root, vigil_bin};

#[test]
fn trace_reports_each_advert_with_its_fields_and_kernel_time() -> anyhow::Result<()> {
    require_root();
    let lab = Lab::new("trace", &["a", "b"])?;
    let (a, b) = (lab.host("a"), lab.host("b"));
    let bin = vigil_bin().to_string_lossy().into_owned();
    let mut trace = b.spawn(&[&bin, "trace", "-i", "eth0", "--json", "--duration", "8s"])?;
    let stdout = trace.stdout.take().expect("piped stdout");
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });

    // The program is attached once bpftool lists it on eth0 of B.
    let mut attached = false;
    for _ in 0..100 {
        if b.xdp_program("eth0")?.as_deref() == Some("vigil_xdp") {
            attached = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(attached, "bpftool net show dev eth0 never listed vigil_xdp");

    a.exec(&["ping", "-c", "2", "-i", "0.2", &b.ipv4.to_string()])?;
    let mac = a.mac("eth0")?;
    let mut frames = Vec::new();
    for i in 0..5u8 {
        let mut v3 = Advert::v3(a.ipv4, 51, 150);
        v3.src_mac = mac;
        v3.interval = 100 + u16::from(i);
        frames.push(v3.frame());
    }
    for _ in 0..5 {
        let mut v2 = Advert::v2(a.ipv4, 51, 150, "1111");
        v2.src_mac = mac;
        frames.push(v2.frame());
    }
    let sent = a.send_frames_paced("eth0", &frames, Duration::from_millis(20))?;
    a.exec(&["ping", "-c", "2", "-i", "0.2", &b.ipv4.to_string()])?;

    let status = trace.wait()?;
    assert!(status.success(), "vigil trace exited with {status}");
    let records: Vec<serde_json::Value> = lines
        .join()
        .expect("reader thread")
        .iter()
        .map(|l| serde_json::from_str(l))
        .collect::<Result<_, _>>()?;
    assert_eq!(records.len(), 10, "records: {records:#?}");
    let mut last_ts = 0u64;
    for (i, r) in records.iter().enumerate() {
        let v3 = i < 5;
        assert_eq!(r["source"], a.ipv4.to_string());
        assert_eq!(r["destination"], "224.0.0.18");
        assert_eq!(r["vrid"], 51);
        assert_eq!(r["priority"], 150);
        assert_eq!(r["ttl"], 255);
        assert_eq!(
            r["verdict"], "foreign_vrid",
            "trace watches no VRID, so all are foreign"
        );
        assert_eq!(r["version"], if v3 { 3 } else { 2 });
        assert_eq!(r["addr_count"], 1);
        let interval = if v3 { 1000 + 10 * i as u64 } else { 1000 };
        assert_eq!(r["interval_ms"], interval);
        let ts = r["ts_ns"].as_u64().expect("ts_ns is a number");
        assert!(ts > last_ts, "timestamps must strictly increase");
        last_ts = ts;
        let delta = ts.abs_diff(sent[i]);
        assert!(
            delta < 50_000_000,
            "record {i}: kernel time {ts} is {delta} ns from the send time {}",
            sent[i]
        );
    }
    Ok(())
}

#[test]
fn a_live_program_is_never_replaced() -> anyhow::Result<()> {
    require_root();
    let lab = Lab::new("live", &["a", "b"])?;
    let (a, b) = (lab.host("a"), lab.host("b"));
    let bin = vigil_bin().to_string_lossy().into_owned();
    let first = b.spawn(&[&bin, "trace", "-i", "eth0", "--json", "--duration", "4s"])?;
    let mut attached = false;
    for _ in 0..100 {
        if b.xdp_program("eth0")?.as_deref() == Some("vigil_xdp") {
            attached = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(attached, "the first trace never attached");
    let second = b
        .command(&bin)
        .args(["trace", "-i", "eth0", "--duration", "1s"])
        .output()?;
    assert_eq!(second.status.code(), Some(2), "a second attach must fail");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("running process"), "unexpected error: {err}");

    // The first one still sees adverts.
    let mut adv = Advert::v3(a.ipv4, 51, 150);
    adv.src_mac = a.mac("eth0")?;
    a.send_frames("eth0", &[adv.frame()])?;
    let out = first.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "first trace output: {text}");
    Ok(())
}
