//! The fault matrix, interfaces: missing at start, deleted and recreated (veth and
//! VLAN) while Backup and while Master, renamed, an IPv6 link-local still in duplicate
//! address detection at start, and a reload adding an instance on an interface the
//! datapath was not on (XDP and raw sockets). Each ends with "nothing lost": exactly one
//! holder of the VIP at every sample after convergence (a deaf Backup would be a second).

use std::time::Duration;

use vigil_tests::agent::{Vigil, has_address};
use vigil_tests::invariant::VipWatch;
use vigil_tests::{Host, Lab, require_root};

const HOLD: Duration = Duration::from_millis(1500);

fn instance(name: &str, vrid: u8, iface: &str, vip: &str, priority: u8, state: &str) -> String {
    format!(
        "[instances.{name}]\ninterface = \"{iface}\"\nvrid = {vrid}\npriority = {priority}\n\
         initial_state = \"{state}\"\nadvert_interval = \"100ms\"\n\
         virtual_addresses = [\"{vip} dev {iface}\"]\n"
    )
}

/// Whether the kernel can make VLAN devices (802.1Q built in or loadable).
fn have_vlan(h: &Host) -> bool {
    let probe = "ip link add link eth0 name vgprobe type vlan id 4000";
    let ok = h.exec(&["sh", "-c", probe]).is_ok();
    let _ = h.exec(&["ip", "link", "del", "vgprobe"]);
    ok
}

/// Adds VLAN `id` on eth0 as `vlan<id>` with 198.51.100.<n>/24. Where the kernel has no
/// 802.1Q (this project's CI kernel is built without it) the same stacked device is a
/// macvlan under that name: deleting and recreating it exercises the same path (an
/// upper device of eth0 that comes back with a new index), and the test says so.
fn add_vlan(h: &Host, id: u16, n: u8) -> anyhow::Result<()> {
    let name = format!("vlan{id}");
    let kind = if have_vlan(h) {
        format!("vlan id {id}")
    } else {
        eprintln!("no 802.1Q in this kernel: {name} is a macvlan on eth0 instead");
        "macvlan mode bridge".to_owned()
    };
    h.exec(&[
        "sh",
        "-c",
        &format!("ip link add link eth0 name {name} type {kind}"),
    ])?;
    h.exec(&[
        "ip",
        "addr",
        "add",
        &format!("198.51.100.{n}/24"),
        "dev",
        &name,
    ])?;
    h.exec(&["ip", "link", "set", &name, "up"])?;
    Ok(())
}

/// Makes a new eth0 on the bridge for a host whose eth0 was deleted (its bridge port
/// went with it), with the same address: a new interface index under the old name.
fn recreate_eth0(lab: &Lab, h: &Host, n: u8) -> anyhow::Result<()> {
    let sw = lab.switch().to_owned();
    vigil_tests::run(std::process::Command::new("ip").args([
        "-n", &sw, "link", "add", &h.port, "type", "veth", "peer", "name", "eth0", "netns", &h.ns,
    ]))?;
    vigil_tests::run(
        std::process::Command::new("ip")
            .args(["-n", &sw, "link", "set", &h.port, "master", "br0", "up"]),
    )?;
    h.exec(&[
        "ip",
        "addr",
        "add",
        &format!("192.0.2.{n}/24"),
        "dev",
        "eth0",
    ])?;
    h.exec(&["ip", "link", "set", "eth0", "up"])?;
    Ok(())
}

struct Two {
    lab: Lab,
    lb01: Host,
    lb02: Host,
    v1: Vigil,
    v2: Vigil,
    vip: &'static str,
}

impl Two {
    fn start(
        tag: &str,
        global_extra: &str,
        iface: &str,
        vip: &'static str,
        before: impl Fn(&Host, u8) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        require_root();
        let mut lab = Lab::new(tag, &["lb01", "lb02"])?;
        let bpffs = lab.bpffs()?;
        let dir = lab.dir.clone();
        let [lb01, lb02] = lab.clone_hosts();
        before(&lb01, 11)?;
        before(&lb02, 12)?;
        let v1 = Vigil::start_with(
            &lb01,
            &dir,
            &bpffs,
            global_extra,
            &instance("web", 51, iface, &format!("{vip}/24"), 150, "master"),
        )?;
        let v2 = Vigil::start_with(
            &lb02,
            &dir,
            &bpffs,
            global_extra,
            &instance("web", 51, iface, &format!("{vip}/24"), 100, "backup"),
        )?;
        Ok(Self {
            lab,
            lb01,
            lb02,
            v1,
            v2,
            vip,
        })
    }

    fn watch(&self) -> VipWatch {
        VipWatch::start(&[self.lb01.clone(), self.lb02.clone()], self.vip)
    }

    fn settled(&self, watch: &VipWatch, within: Duration) -> anyhow::Result<()> {
        self.v1.wait_state("web", "MASTER", within)?;
        self.v2.wait_state("web", "BACKUP", within)?;
        let from = watch.converged(within)?;
        watch.exactly_one_from(from, HOLD, "lb01")?;
        Ok(())
    }
}

#[test]
fn interface_missing_at_start_waits_in_fault_until_it_appears() -> anyhow::Result<()> {
    // lb01's instance names lan0, which is eth0 under another name: missing at start.
    let p = Two::start("fl-missing", "", "lan0", "192.0.2.100", |h, _| {
        if h.name == "lb02" {
            h.exec(&["ip", "link", "set", "eth0", "down"])?;
            h.exec(&["ip", "link", "set", "eth0", "name", "lan0"])?;
            h.exec(&["ip", "link", "set", "lan0", "up"])?;
        }
        Ok(())
    })?;
    let i = p.v1.instance("web")?;
    assert_eq!(i["state"], "FAULT", "{i}");
    assert!(i["fault"].as_str().unwrap_or("").contains("lan0"), "{i}");
    p.v2.wait_state("web", "MASTER", Duration::from_secs(3))?;
    let watch = p.watch();
    p.lb01.exec(&["ip", "link", "set", "eth0", "down"])?;
    p.lb01
        .exec(&["ip", "link", "set", "eth0", "name", "lan0"])?;
    p.lb01.exec(&["ip", "link", "set", "lan0", "up"])?;
    p.settled(&watch, Duration::from_secs(4))?;
    assert!(
        p.lb01.xdp_program("lan0")?.is_some(),
        "no XDP program on lan0"
    );
    Ok(())
}

fn delete_and_recreate(tag: &str, vlan: bool, victim_is_master: bool) -> anyhow::Result<()> {
    let (iface, vip) = if vlan {
        ("vlan10", "198.51.100.100")
    } else {
        ("eth0", "192.0.2.100")
    };
    let p = Two::start(tag, "", iface, vip, |h, n| {
        if vlan {
            add_vlan(h, 10, n)?;
        }
        Ok(())
    })?;
    p.v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    p.v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    let watch = p.watch();
    let (host, v, n) = if victim_is_master {
        (&p.lb01, &p.v1, 11)
    } else {
        (&p.lb02, &p.v2, 12)
    };
    if vlan {
        host.exec(&["ip", "link", "del", "vlan10"])?;
    } else {
        host.exec(&["ip", "link", "del", "eth0"])?;
    }
    v.wait_state("web", "FAULT", Duration::from_secs(2))?;
    if victim_is_master {
        p.v2.wait_state("web", "MASTER", Duration::from_secs(2))?;
    }
    std::thread::sleep(Duration::from_millis(300));
    if vlan {
        add_vlan(host, 10, n)?;
    } else {
        recreate_eth0(&p.lab, host, n)?;
    }
    p.settled(&watch, Duration::from_secs(5))?;
    assert!(
        has_address(&p.lb01, vip) && !has_address(&p.lb02, vip),
        "VIP not on the Master alone"
    );
    Ok(())
}

#[test]
fn veth_deleted_and_recreated_while_backup() -> anyhow::Result<()> {
    delete_and_recreate("fl-vethb", false, false)
}

#[test]
fn veth_deleted_and_recreated_while_master() -> anyhow::Result<()> {
    delete_and_recreate("fl-vethm", false, true)
}

#[test]
fn vlan_deleted_and_recreated_while_backup() -> anyhow::Result<()> {
    delete_and_recreate("fl-vlanb", true, false)
}

#[test]
fn vlan_deleted_and_recreated_while_master() -> anyhow::Result<()> {
    delete_and_recreate("fl-vlanm", true, true)
}

/// The Backup's interface is renamed: the instance follows it by index and keeps
/// hearing the Master.
#[test]
fn renamed_interface_is_followed_by_index() -> anyhow::Result<()> {
    let p = Two::start("fl-rename", "", "eth0", "192.0.2.100", |_, _| Ok(()))?;
    p.v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    p.v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    let watch = p.watch();
    p.lb02.exec(&["ip", "link", "set", "eth0", "down"])?;
    p.lb02
        .exec(&["ip", "link", "set", "eth0", "name", "lan0"])?;
    p.lb02.exec(&["ip", "link", "set", "lan0", "up"])?;
    p.settled(&watch, Duration::from_secs(4))?;
    assert_eq!(p.v2.instance("web")?["interface"], "lan0");
    Ok(())
}

/// An IPv6 instance whose link-local address is still tentative at start waits in
/// FAULT and starts once duplicate address detection is done.
#[test]
fn ipv6_link_local_in_dad_at_start() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("fl-dad", &["lb01"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let lb01 = lab.host("lb01").clone();
    lb01.exec(&["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=1"])?;
    lb01.exec(&["sysctl", "-qw", "net.ipv6.conf.eth0.dad_transmits=4"])?;
    // Down and up: the link-local address is new and tentative for about four seconds.
    lb01.exec(&["ip", "link", "set", "eth0", "down"])?;
    lb01.exec(&["ip", "link", "set", "eth0", "up"])?;
    let v = Vigil::start_with(
        &lb01,
        &dir,
        &bpffs,
        "",
        &instance("web", 51, "eth0", "2001:db8::100/64", 150, "master"),
    )?;
    let i = v.instance("web")?;
    assert_eq!(i["state"], "FAULT", "{i}");
    assert!(
        i["fault"].as_str().unwrap_or("").contains("link-local"),
        "{i}"
    );
    v.wait_state("web", "MASTER", Duration::from_secs(8))?;
    assert!(has_address(&lb01, "2001:db8::100"));
    Ok(())
}

fn reload_adds_instance_on_new_interface(tag: &str, global_extra: &str) -> anyhow::Result<()> {
    let p = Two::start(tag, global_extra, "eth0", "192.0.2.100", |_, _| Ok(()))?;
    p.v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    p.v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    let vip2 = "198.51.100.100";
    for (h, v, n, prio, state) in [
        (&p.lb01, &p.v1, 11, 150, "master"),
        (&p.lb02, &p.v2, 12, 100, "backup"),
    ] {
        add_vlan(h, 20, n)?;
        let text = std::fs::read_to_string(&v.config)?
            + &instance("vlan", 52, "vlan20", &format!("{vip2}/24"), prio, state);
        std::fs::write(&v.config, text)?;
    }
    // The Backup first: a Backup that hears nothing on vlan20 would be Master there.
    p.v2.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(100));
    p.v1.signal(libc::SIGHUP);
    p.v1.wait_state("vlan", "MASTER", Duration::from_secs(3))?;
    p.v2.wait_state("vlan", "BACKUP", Duration::from_secs(3))?;
    let watch = VipWatch::start(&[p.lb01.clone(), p.lb02.clone()], vip2);
    let from = watch.converged(Duration::from_secs(2))?;
    watch.exactly_one_from(from, HOLD, "lb01")?;
    if !global_extra.contains("xdp = \"off\"") {
        assert!(
            p.lb02.xdp_program("vlan20")?.is_some(),
            "no XDP program on the new interface"
        );
    }
    Ok(())
}

#[test]
fn reload_adds_an_instance_on_a_new_interface_xdp() -> anyhow::Result<()> {
    reload_adds_instance_on_new_interface("fl-addxdp", "")
}

#[test]
fn reload_adds_an_instance_on_a_new_interface_raw() -> anyhow::Result<()> {
    reload_adds_instance_on_new_interface("fl-addraw", "xdp = \"off\"")
}
