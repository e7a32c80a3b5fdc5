//! vigil and Debian's keepalived in one virtual router, each in either role, for VRRPv2
//! with simple password, VRRPv3 over IPv4 and VRRPv3 over IPv6: the backup never takes
//! over wrongly, failover works both ways, and tshark finds nothing wrong with vigil's
//! adverts.

use std::time::Duration;

use vigil_tests::agent::{Keepalived, Vigil, global, has_address};
use vigil_tests::capture::Capture;
use vigil_tests::{Host, Lab, require_root};

/// One protocol flavour.
struct Flavour {
    tag: &'static str,
    vip: &'static str,
    prefix: u8,
    /// keepalived's instance lines (version, interval, auth).
    keepalived: &'static str,
    /// vigil's instance lines.
    vigil: &'static str,
    /// Down interval with margin for a loaded machine.
    down: Duration,
    /// tshark field of the source address.
    src_field: &'static str,
}

const V2: Flavour = Flavour {
    tag: "kav2",
    vip: "192.0.2.100",
    prefix: 24,
    keepalived: "version 2\n advert_int 1\n authentication {\n auth_type PASS\n auth_pass 1111\n }",
    vigil: "version = 2\nadvert_interval = 1\nauth_pass = \"1111\"",
    down: Duration::from_millis(5500),
    src_field: "ip.src",
};

const V3: Flavour = Flavour {
    tag: "kav3",
    vip: "192.0.2.100",
    prefix: 24,
    keepalived: "version 3\n advert_int 0.1",
    vigil: "version = 3\nadvert_interval = \"100ms\"",
    down: Duration::from_millis(1500),
    src_field: "ip.src",
};

const V3_IPV6: Flavour = Flavour {
    tag: "kav6",
    vip: "2001:db8::100",
    prefix: 64,
    keepalived: "version 3\n advert_int 0.1",
    vigil: "version = 3\nadvert_interval = \"100ms\"",
    down: Duration::from_millis(1500),
    src_field: "ipv6.src",
};

fn keepalived_conf(f: &Flavour, priority: u8, state: &str) -> String {
    format!(
        "global_defs {{\n router_id ka\n}}\nvrrp_instance web {{\n state {state}\n interface eth0\n \
         virtual_router_id 51\n priority {priority}\n {}\n virtual_ipaddress {{\n {}/{} dev eth0\n }}\n}}\n",
        f.keepalived, f.vip, f.prefix
    )
}

fn vigil_conf(
    f: &Flavour,
    host: &Host,
    lab: &Lab,
    bpffs: &std::path::Path,
    priority: u8,
) -> String {
    global(host, &lab.dir, bpffs, "")
        + &format!(
            "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n{}\n\
             virtual_addresses = [\"{}/{} dev eth0\"]\n",
            f.vigil, f.vip, f.prefix
        )
}

fn wait_address(host: &Host, vip: &str, present: bool, within: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if has_address(host, vip) == present {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("{}: {vip} present={} after {within:?}", host.name, !present)
}

/// keepalived is Master, vigil Backup: vigil stays Backup, takes over when the master's
/// link is cut, and yields when it comes back.
fn keepalived_master_vigil_backup(f: &Flavour) -> anyhow::Result<()> {
    let mut lab = Lab::new(&format!("{}a", f.tag), &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let (lb01, lb02) = (lab.host("lb01").clone(), lab.host("lb02").clone());
    let _ka = Keepalived::start(&lb01, &lab.dir, &keepalived_conf(f, 150, "MASTER"))?;
    let v = Vigil::start(&lb02, &lab.dir, &vigil_conf(f, &lb02, &lab, &bpffs, 100))?;
    wait_address(&lb01, f.vip, true, f.down * 2)?;
    v.wait_state("web", "BACKUP", Duration::from_secs(2))?;
    std::thread::sleep(f.down);
    assert_eq!(
        v.state("web")?,
        "BACKUP",
        "vigil took over from a live keepalived:\n{}",
        v.log_text()
    );
    assert!(!has_address(&lb02, f.vip));

    lab.set_link("lb01", false)?;
    v.wait_state("web", "MASTER", f.down)?;
    assert!(has_address(&lb02, f.vip));
    lab.set_link("lb01", true)?;
    v.wait_state("web", "BACKUP", f.down)?;
    wait_address(&lb02, f.vip, false, Duration::from_secs(1))?;
    Ok(())
}

/// vigil is Master, keepalived Backup: keepalived stays quiet and takes over when vigil's
/// link is cut; vigil preempts back; tshark decodes vigil's adverts as good VRRP.
fn vigil_master_keepalived_backup(f: &Flavour) -> anyhow::Result<()> {
    let mut lab = Lab::new(&format!("{}b", f.tag), &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let (lb01, lb02) = (lab.host("lb01").clone(), lab.host("lb02").clone());
    let v = Vigil::start(&lb01, &lab.dir, &vigil_conf(f, &lb01, &lab, &bpffs, 150))?;
    let _ka = Keepalived::start(&lb02, &lab.dir, &keepalived_conf(f, 100, "BACKUP"))?;
    v.wait_state("web", "MASTER", f.down * 2)?;
    let cap = Capture::start(
        &lb02,
        "eth0",
        "ip proto 112 or ip6 proto 112",
        &lab.dir.join("peer.pcap"),
    )?;
    std::thread::sleep(f.down);
    assert!(
        !has_address(&lb02, f.vip),
        "keepalived took over from a live vigil"
    );
    assert_eq!(v.state("web")?, "MASTER");
    drop(cap.stop()?);

    // tshark: every advert vigil sent is VRRP with a good checksum, nothing malformed.
    let out = lab.host("lb02").exec(&[
        "tshark",
        "-r",
        &lab.dir.join("peer.pcap").to_string_lossy(),
        "-o",
        "vrrp.v3_checksum_as_v2:FALSE",
        "-T",
        "fields",
        "-e",
        f.src_field,
        "-e",
        "vrrp.checksum.status",
        "-e",
        "_ws.malformed",
        "-e",
        "_ws.expert",
    ]);
    let out = match out {
        Ok(o) => o,
        // Older tshark lacks the preference; read without it.
        Err(_) => lab.host("lb02").exec(&[
            "tshark",
            "-r",
            &lab.dir.join("peer.pcap").to_string_lossy(),
            "-T",
            "fields",
            "-e",
            f.src_field,
            "-e",
            "vrrp.checksum.status",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert",
        ])?,
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "too few adverts captured: {text}");
    for l in &lines {
        let cols: Vec<&str> = l.split('\t').collect();
        // Wireshark's checksum status: 0 bad, 1 good, 2 unverified.
        assert_eq!(
            cols.get(1).copied(),
            Some("1"),
            "checksum status not good in {l:?}"
        );
        assert!(cols.get(2).is_none_or(|c| c.is_empty()), "malformed: {l:?}");
        assert!(
            cols.get(3).is_none_or(|c| c.is_empty()),
            "expert info: {l:?}"
        );
    }

    lab.set_link("lb01", false)?;
    wait_address(&lb02, f.vip, true, f.down)?;
    lab.set_link("lb01", true)?;
    v.wait_state("web", "MASTER", f.down)?;
    wait_address(&lb02, f.vip, false, f.down)?;
    Ok(())
}

#[test]
fn v2_pass_keepalived_master_vigil_backup() -> anyhow::Result<()> {
    require_root();
    keepalived_master_vigil_backup(&V2)
}

#[test]
fn v2_pass_vigil_master_keepalived_backup() -> anyhow::Result<()> {
    require_root();
    vigil_master_keepalived_backup(&V2)
}

#[test]
fn v3_ipv4_keepalived_master_vigil_backup() -> anyhow::Result<()> {
    require_root();
    keepalived_master_vigil_backup(&V3)
}

#[test]
fn v3_ipv4_vigil_master_keepalived_backup() -> anyhow::Result<()> {
    require_root();
    vigil_master_keepalived_backup(&V3)
}

#[test]
fn v3_ipv6_keepalived_master_vigil_backup() -> anyhow::Result<()> {
    require_root();
    keepalived_master_vigil_backup(&V3_IPV6)
}

#[test]
fn v3_ipv6_vigil_master_keepalived_backup() -> anyhow::Result<()> {
    require_root();
    vigil_master_keepalived_backup(&V3_IPV6)
}
