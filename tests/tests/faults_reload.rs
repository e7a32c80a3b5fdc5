//! The fault matrix, reloads that move virtual addresses from one instance to another on
//! a Master: "nothing lost" means each address stays on the node at every sample, and
//! is never deleted on the way (`ip monitor` sees every deletion, however brief).

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use vigil_tests::agent::Vigil;
use vigil_tests::invariant::VipWatch;
use vigil_tests::{Host, Lab, require_root};

const A: &str = "192.0.2.100";
const B: &str = "192.0.2.101";

fn instances(a: &[&str], b: Option<&[&str]>) -> String {
    let list = |v: &[&str]| {
        v.iter()
            .map(|x| format!("\"{x}/24\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!(
        "[instances.a]\ninterface = \"eth0\"\nvrid = 51\npriority = 150\n\
         advert_interval = \"100ms\"\nvirtual_addresses = [{}]\n",
        list(a)
    );
    if let Some(b) = b {
        s += &format!(
            "[instances.b]\ninterface = \"eth0\"\nvrid = 52\npriority = 150\n\
             advert_interval = \"100ms\"\nvirtual_addresses = [{}]\n",
            list(b)
        );
    }
    s
}

fn transitions(v: &Vigil, name: &str) -> u64 {
    v.instance(name)
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

/// Two Master instances swap their addresses in one reload, then one is removed and
/// its address moves to the other: each address stays on the node throughout (never
/// deleted, not even for a millisecond), and neither instance changes state. Before,
/// the instance that gave an address up removed it after the one that took it had
/// "added" it (already there, so a no-op): the address was gone until something put
/// it back; removing first and adding after still left a gap of about a millisecond.
#[test]
fn addresses_moving_between_instances_on_reload_stay_put() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("fr-move", &["lb01"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01] = lab.clone_hosts();
    let v = Vigil::start_with(&lb01, &dir, &bpffs, "", &instances(&[A], Some(&[B])))?;
    v.wait_state("a", "MASTER", Duration::from_secs(3))?;
    v.wait_state("b", "MASTER", Duration::from_secs(3))?;
    let (wa, wb) = (
        VipWatch::start(std::slice::from_ref(&lb01), A),
        VipWatch::start(std::slice::from_ref(&lb01), B),
    );
    let before = transitions(&v, "a");
    // Every address deletion in lb01, however brief (the samples below are 10-20 ms
    // apart; a removal followed by the addition a millisecond later falls between them).
    let monitor_log = dir.join("monitor.txt");
    let mut monitor = monitor_addresses(&lb01, &monitor_log)?;
    std::thread::sleep(Duration::from_millis(200));
    let from = Instant::now();
    let cfg = dir.join("lb01.toml");
    let head = std::fs::read_to_string(&cfg)?;
    let head = &head[..head.find("[instances.a]").unwrap_or(head.len())];
    std::fs::write(&cfg, format!("{head}{}", instances(&[B], Some(&[A]))))?;
    let reply = v.request("reload")?;
    assert!(reply.contains("\"applied\":true"), "{reply}");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&cfg, format!("{head}{}", instances(&[B, A], None)))?;
    let reply = v.request("reload")?;
    assert!(reply.contains("\"applied\":true"), "{reply}");
    for w in [&wa, &wb] {
        let n = w.exactly_one_from(from, Duration::from_millis(1500), "lb01")?;
        eprintln!("{n} samples, every one with the address on lb01");
    }
    let _ = monitor.kill();
    let _ = monitor.wait();
    let events = std::fs::read_to_string(&monitor_log)?;
    let deleted: Vec<&str> = events
        .lines()
        .filter(|l| l.starts_with("Deleted") && (l.contains(A) || l.contains(B)))
        .collect();
    assert!(deleted.is_empty(), "removed on the way: {deleted:?}");
    v.wait_state("a", "MASTER", Duration::from_secs(1))?;
    assert_eq!(transitions(&v, "a"), before, "instance a changed state");
    let a = v.instance("a")?;
    assert_eq!(a["restored_while_master"], 0, "{a}");
    Ok(())
}

/// Starts `ip -o monitor address` in `host`, its output in `log`.
fn monitor_addresses(host: &Host, log: &std::path::Path) -> anyhow::Result<Child> {
    let out = std::fs::File::create(log)?;
    Ok(host
        .command("ip")
        .args(["-o", "monitor", "address"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()?)
}
