//! The keepalived.conf files in agent/tests/golden/, converted by `vigil import-keepalived`, elect the
//! same way as keepalived itself: the same node ends up holding each virtual address,
//! whether both nodes run keepalived, both run vigil, or one of each.

use std::collections::BTreeMap;
use std::time::Duration;

use vigil_tests::agent::{Keepalived, Vigil, has_address};
use vigil_tests::{Host, Lab, require_root, vigil_bin};

/// Their VIPs are 10.0.0.3 and 10.0.0.4; the lab uses TEST-NET instead.
const VIPS: [(&str, &str); 2] = [("10.0.0.3", "192.0.2.100"), ("10.0.0.4", "192.0.2.101")];

fn seed(name: &str) -> anyhow::Result<String> {
    let path = format!(
        "{}/../agent/tests/golden/{name}.conf",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut text = std::fs::read_to_string(&path)?;
    for (from, to) in VIPS {
        text = text.replace(from, to);
    }
    Ok(text)
}

/// `vigil import-keepalived` of `conf`, with the test's control socket and pin dir.
fn import(host: &Host, lab: &Lab, bpffs: &std::path::Path, conf: &str) -> anyhow::Result<String> {
    let path = lab.dir.join(format!("{}-import.conf", host.name));
    std::fs::write(&path, conf)?;
    let out = host.exec(&[
        &vigil_bin().to_string_lossy(),
        "import-keepalived",
        &path.to_string_lossy(),
    ])?;
    let toml = String::from_utf8(out.stdout)?;
    let ours = format!(
        "control_socket = \"{}/{}.sock\"\nbpf_pin_dir = \"{}\"\n",
        lab.dir.display(),
        host.name,
        bpffs.display()
    );
    Ok(if toml.contains("[global]\n") {
        toml.replacen("[global]\n", &format!("[global]\n{ours}"), 1)
    } else {
        format!("[global]\n{ours}\n{toml}")
    })
}

/// Which host holds each VIP once the election has settled.
fn holders(hosts: &[&Host]) -> BTreeMap<&'static str, Vec<String>> {
    // Both start as Backup (or keepalived's `state MASTER` below 255 waits too): the
    // slowest Master_Down_Interval at 1 s adverts is 3 + 156/256 s; wait past it.
    std::thread::sleep(Duration::from_millis(5500));
    VIPS.iter()
        .map(|(_, vip)| {
            let on = hosts
                .iter()
                .filter(|h| has_address(h, vip))
                .map(|h| h.name.clone())
                .collect();
            (*vip, on)
        })
        .collect()
}

fn elect(
    tag: &str,
    confs: [&str; 2],
    vigil_on: [bool; 2],
) -> anyhow::Result<BTreeMap<&'static str, Vec<String>>> {
    let mut lab = Lab::new(tag, &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let hosts = [lab.host("lb01").clone(), lab.host("lb02").clone()];
    // Held until the result is read; dropping stops them.
    let (mut vigils, mut keepaliveds) = (Vec::new(), Vec::new());
    for ((host, conf), vigil) in hosts.iter().zip(confs).zip(vigil_on) {
        let text = seed(conf)?;
        if vigil {
            vigils.push(Vigil::start(
                host,
                &lab.dir,
                &import(host, &lab, &bpffs, &text)?,
            )?);
        } else {
            keepaliveds.push(Keepalived::start(host, &lab.dir, &text)?);
        }
    }
    let result = holders(&[&hosts[0], &hosts[1]]);
    drop((vigils, keepaliveds));
    Ok(result)
}

fn same_everywhere(tag: &str, confs: [&str; 2]) -> anyhow::Result<()> {
    let keepalived = elect(&format!("{tag}k"), confs, [false, false])?;
    assert!(
        keepalived.values().any(|h| h.len() == 1),
        "keepalived elected nobody: {keepalived:?}"
    );
    for mix in [[true, true], [true, false], [false, true]] {
        let got = elect(&format!("{tag}v"), confs, mix)?;
        assert_eq!(
            got, keepalived,
            "vigil on {mix:?} elected differently from keepalived"
        );
    }
    Ok(())
}

#[test]
fn imported_seed_pair_elects_like_keepalived() -> anyhow::Result<()> {
    require_root();
    same_everywhere("imp", ["lb01", "lb02"])
}

#[test]
fn imported_seed_dual_master_elects_like_keepalived() -> anyhow::Result<()> {
    require_root();
    same_everywhere("impd", ["dual-master-lb01", "dual-master-lb02"])
}
