//! vigil and Debian's keepalived over unicast VRRPv3, IPv4 and IPv6, each in either role.
//! keepalived sends IPv6 unicast with the default hop limit, not 255: vigil accepts
//! unicast adverts whatever their TTL, as keepalived does (multicast keeps the 255 rule).

use std::time::Duration;

use vigil_tests::agent::{Keepalived, Vigil, global, has_address};
use vigil_tests::{Host, Lab, require_root};

const DOWN: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn tag(self) -> &'static str {
        match self {
            Family::V4 => "ku4",
            Family::V6 => "ku6",
        }
    }
    fn vip(self) -> &'static str {
        match self {
            Family::V4 => "192.0.2.100",
            Family::V6 => "2001:db8::100",
        }
    }
    fn prefix(self) -> u8 {
        match self {
            Family::V4 => 24,
            Family::V6 => 64,
        }
    }
    fn addr(self, h: &Host) -> String {
        match self {
            Family::V4 => h.ipv4.to_string(),
            Family::V6 => h.ipv6.to_string(),
        }
    }
}

fn keepalived_conf(f: Family, me: &Host, peer: &Host, priority: u8, state: &str) -> String {
    format!(
        "global_defs {{\n router_id ka\n}}\nvrrp_instance web {{\n state {state}\n interface eth0\n \
         virtual_router_id 51\n priority {priority}\n version 3\n advert_int 0.1\n \
         unicast_src_ip {}\n unicast_peer {{\n {}\n }}\n \
         virtual_ipaddress {{\n {}/{} dev eth0\n }}\n}}\n",
        f.addr(me),
        f.addr(peer),
        f.vip(),
        f.prefix()
    )
}

fn vigil_conf(
    f: Family,
    lab: &Lab,
    me: &Host,
    peer: &Host,
    priority: u8,
) -> anyhow::Result<String> {
    let bpffs = lab.dir.join("bpffs");
    Ok(global(me, &lab.dir, &bpffs, "")
        + &format!(
            "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
             version = 3\nadvert_interval = \"100ms\"\nunicast_src_ip = \"{}\"\n\
             unicast_peers = [\"{}\"]\nvirtual_addresses = [\"{}/{} dev eth0\"]\n",
            f.addr(me),
            f.addr(peer),
            f.vip(),
            f.prefix()
        ))
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

fn keepalived_master_vigil_backup(f: Family) -> anyhow::Result<()> {
    let mut lab = Lab::new(&format!("{}a", f.tag()), &["lb01", "lb02"])?;
    let _bpffs = lab.bpffs()?;
    let (lb01, lb02) = (lab.host("lb01").clone(), lab.host("lb02").clone());
    let _ka = Keepalived::start(
        &lb01,
        &lab.dir,
        &keepalived_conf(f, &lb01, &lb02, 150, "MASTER"),
    )?;
    wait_address(&lb01, f.vip(), true, DOWN * 3)?;
    let v = Vigil::start(&lb02, &lab.dir, &vigil_conf(f, &lab, &lb02, &lb01, 100)?)?;
    v.wait_state("web", "BACKUP", Duration::from_secs(2))?;
    std::thread::sleep(DOWN);
    assert_eq!(
        v.state("web")?,
        "BACKUP",
        "vigil took over from a live keepalived (unicast):\n{}",
        v.log_text()
    );
    assert!(!has_address(&lb02, f.vip()));
    lab.set_link("lb01", false)?;
    v.wait_state("web", "MASTER", DOWN)?;
    assert!(has_address(&lb02, f.vip()));
    Ok(())
}

fn vigil_master_keepalived_backup(f: Family) -> anyhow::Result<()> {
    let mut lab = Lab::new(&format!("{}b", f.tag()), &["lb01", "lb02"])?;
    let _bpffs = lab.bpffs()?;
    let (lb01, lb02) = (lab.host("lb01").clone(), lab.host("lb02").clone());
    let v = Vigil::start(&lb01, &lab.dir, &vigil_conf(f, &lab, &lb01, &lb02, 150)?)?;
    v.wait_state("web", "MASTER", DOWN * 2)?;
    let _ka = Keepalived::start(
        &lb02,
        &lab.dir,
        &keepalived_conf(f, &lb02, &lb01, 100, "BACKUP"),
    )?;
    std::thread::sleep(DOWN * 2);
    assert!(
        !has_address(&lb02, f.vip()),
        "keepalived took over from a live vigil (unicast)"
    );
    assert_eq!(v.state("web")?, "MASTER");
    lab.set_link("lb01", false)?;
    wait_address(&lb02, f.vip(), true, DOWN * 2)?;
    Ok(())
}

#[test]
fn unicast_ipv4_keepalived_master_vigil_backup() -> anyhow::Result<()> {
    require_root();
    keepalived_master_vigil_backup(Family::V4)
}

#[test]
fn unicast_ipv4_vigil_master_keepalived_backup() -> anyhow::Result<()> {
    require_root();
    vigil_master_keepalived_backup(Family::V4)
}

#[test]
fn unicast_ipv6_keepalived_master_vigil_backup() -> anyhow::Result<()> {
    require_root();
    keepalived_master_vigil_backup(Family::V6)
}

#[test]
fn unicast_ipv6_vigil_master_keepalived_backup() -> anyhow::Result<()> {
    require_root();
    vigil_master_keepalived_backup(Family::V6)
}
