//! A flood of VRRP-shaped junk at the Backup: every frame dies or is ignored in the
//! kernel, the agent hears nothing, and nobody takes over.

use std::collections::BTreeMap;
use std::time::Duration;

use vigil_tests::agent::start_pair;
use vigil_tests::bpf::{verdict_counters, vrid_stats};
use vigil_tests::frames::Advert;
use vigil_tests::netns::flood;
use vigil_tests::{Lab, require_root};

const FLOOD: Duration = Duration::from_secs(2);

fn instance(priority: u8, state: &str) -> String {
    format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         initial_state = \"{state}\"\nadvert_interval = \"100ms\"\n\
         virtual_addresses = [\"192.0.2.100/24\"]\n"
    )
}

#[test]
fn junk_flood_costs_no_event_and_no_takeover() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("flood", &["lb01", "lb02", "junk"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02, junk] = lab.clone_hosts();
    let (v1, v2) = start_pair(
        (&lb01, &lb02),
        &dir,
        &bpffs,
        (&instance(150, "master"), &instance(100, "backup")),
    )?;
    let pin = bpffs.join("lb02");
    let before_status = v2.status()?;
    let before = verdict_counters(&lb02, &pin)?;
    let before_vrid = vrid_stats(&lb02, &pin, 51)?;

    let mac = junk.mac("eth0")?;
    let kind = |f: &dyn Fn(&mut Advert)| {
        let mut a = Advert::v3(junk.ipv4, 51, 200);
        a.src_mac = mac;
        a.interval = 10;
        f(&mut a);
        vec![a.frame()]
    };
    let floods = [
        ("ttl", kind(&|a| a.ttl = 254)),
        ("checksum", kind(&|a| a.checksum_delta = 7)),
        ("foreign_vrid", kind(&|a| a.vrid = 77)),
        ("ignored", kind(&|a| a.priority = 50)),
    ];
    let mut sent = BTreeMap::new();
    for (name, frames) in &floods {
        let n = flood(&junk.ns, "eth0", frames, FLOOD)?;
        let rate = n as f64 / FLOOD.as_secs_f64();
        eprintln!("{name}: {n} frames, {rate:.0} frames/s");
        if rate < 200_000.0 {
            eprintln!(
                "note: {name} flood reached {rate:.0}/s, below the 200k/s aim (loaded machine?)"
            );
        }
        sent.insert(*name, n);
    }
    std::thread::sleep(Duration::from_millis(300));

    let after = verdict_counters(&lb02, &pin)?;
    let after_vrid = vrid_stats(&lb02, &pin, 51)?;
    let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    assert_eq!(
        delta("ttl"),
        sent["ttl"],
        "every TTL-254 frame dropped in the kernel"
    );
    assert_eq!(
        delta("checksum"),
        sent["checksum"],
        "every bad checksum dropped"
    );
    assert_eq!(
        delta("foreign_vrid"),
        sent["foreign_vrid"],
        "every foreign VRID counted and passed"
    );
    let ignored = after_vrid["value"]["ignored"].as_u64().unwrap_or(0)
        - before_vrid["value"]["ignored"].as_u64().unwrap_or(0);
    assert_eq!(
        ignored, sent["ignored"],
        "every low-priority advert ignored in the kernel"
    );
    // Reports to the agent: the junk caused none. (The master's own adverts may cause
    // one after a gap if the flood delayed them.)
    let reported = after_vrid["value"]["reported"].as_u64().unwrap_or(0)
        - before_vrid["value"]["reported"].as_u64().unwrap_or(0);
    assert!(reported <= 3, "the agent was woken {reported} times");
    assert_eq!(delta("ring_full"), 0);

    assert_eq!(
        v2.state("web")?,
        "BACKUP",
        "false takeover:\n{}",
        v2.log_text()
    );
    assert_eq!(v1.state("web")?, "MASTER");
    let after_status = v2.status()?;
    assert_eq!(
        before_status["instances"][0]["last_transition"]["reason"],
        after_status["instances"][0]["last_transition"]["reason"],
        "the backup changed state during the flood"
    );
    Ok(())
}
