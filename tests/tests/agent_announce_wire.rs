//! What vigil's announcements look like on the wire, decoded by tshark: unsolicited
//! Neighbor Advertisements carry the Router flag exactly when the interface forwards IPv6
//! (RFC 4861 §7.2.5, §4.4), and a virtual address with its own `dev` is announced on that
//! device, from that device's MAC.

use std::time::Duration;

use vigil_tests::agent::{Vigil, global};
use vigil_tests::capture::{Capture, mac_text, tshark};
use vigil_tests::{Host, Lab, require_root};

/// A tshark flag field as a bool (tshark prints `1`/`0` or `True`/`False` by version).
fn flag(s: &str) -> bool {
    matches!(s, "1" | "True" | "true")
}

fn v6_instance(vip: &str) -> String {
    format!(
        "[instances.v6]\ninterface = \"eth0\"\nvrid = 61\npriority = 100\nversion = 3\n\
         initial_state = \"master\"\nadvert_interval = \"100ms\"\n\
         virtual_addresses = [\"{vip}/64 dev eth0\"]\n\
         garp_master_repeat = 2\ngarp_master_delay = 0\n"
    )
}

#[test]
fn rfc4861_7_2_5_unsolicited_na_sets_the_router_flag_only_when_the_interface_forwards()
-> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("nar", &["lb01", "lb02", "client"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02, client] = lab.clone_hosts();
    // lb01 routes IPv6 on eth0; lb02 is a plain host.
    lb01.exec(&["sysctl", "-qw", "net.ipv6.conf.eth0.forwarding=1"])?;
    lb02.exec(&["sysctl", "-qw", "net.ipv6.conf.eth0.forwarding=0"])?;
    let pcap = dir.join("na.pcap");
    let cap = Capture::start(&client, "eth0", "icmp6 and ip6[40] == 136", &pcap)?;
    // Each alone on its own VRID, so both are Master and both announce.
    let v1 = Vigil::start_with(&lb01, &dir, &bpffs, "", &v6_instance("2001:db8::100"))?;
    let v2 = Vigil::start_with(
        &lb02,
        &dir,
        &bpffs,
        "",
        &v6_instance("2001:db8::200").replace("vrid = 61", "vrid = 62"),
    )?;
    v1.wait_state("v6", "MASTER", Duration::from_secs(3))?;
    v2.wait_state("v6", "MASTER", Duration::from_secs(3))?;
    std::thread::sleep(Duration::from_millis(500));
    cap.stop()?;

    let rows = tshark(
        &pcap,
        "icmpv6.type == 136",
        &[
            "eth.src",
            "icmpv6.nd.na.target_address",
            "icmpv6.nd.na.flag.r",
            "icmpv6.nd.na.flag.s",
            "icmpv6.nd.na.flag.o",
            "ipv6.dst",
            "ipv6.hlim",
        ],
    )?;
    eprintln!("{rows:#?}");
    let (mac1, mac2) = (mac_text(lb01.mac("eth0")?), mac_text(lb02.mac("eth0")?));
    let of = |mac: &str, target: &str| -> Vec<&Vec<String>> {
        rows.iter()
            .filter(|r| r.len() == 7 && r[0] == mac && r[1] == target)
            .collect()
    };
    let forwarding = of(&mac1, "2001:db8::100");
    let host = of(&mac2, "2001:db8::200");
    assert!(
        forwarding.len() >= 2,
        "lb01 sent no NA for its address: {rows:?}"
    );
    assert!(host.len() >= 2, "lb02 sent no NA for its address: {rows:?}");
    for r in &forwarding {
        assert!(
            flag(&r[2]),
            "forwarding interface, Router flag clear: {r:?}"
        );
    }
    for r in &host {
        assert!(
            !flag(&r[2]),
            "non-forwarding interface, Router flag set: {r:?}"
        );
    }
    // Unsolicited (RFC 4861 §7.2.6): Solicited clear, Override set, to all-nodes, hop
    // limit 255.
    for r in forwarding.iter().chain(&host) {
        assert!(!flag(&r[3]) && flag(&r[4]), "flags: {r:?}");
        assert_eq!((r[5].as_str(), r[6].as_str()), ("ff02::1", "255"), "{r:?}");
    }
    drop((v1, v2));
    Ok(())
}

/// A veth named `eth1` between the two hosts, addressed from 198.51.100.0/24.
fn second_link(a: &Host, b: &Host) -> anyhow::Result<()> {
    vigil_tests::run(std::process::Command::new("ip").args([
        "link", "add", "eth1", "netns", &a.ns, "type", "veth", "peer", "name", "eth1", "netns",
        &b.ns,
    ]))?;
    for (h, addr) in [(a, "198.51.100.11/24"), (b, "198.51.100.13/24")] {
        h.exec(&["ip", "addr", "add", addr, "dev", "eth1"])?;
        h.exec(&["ip", "link", "set", "eth1", "up"])?;
    }
    Ok(())
}

#[test]
fn an_address_with_its_own_dev_is_announced_on_that_device() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("gdev", &["lb01", "client"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, client] = lab.clone_hosts();
    second_link(&lb01, &client)?;
    let (eth0_mac, eth1_mac) = (mac_text(lb01.mac("eth0")?), mac_text(lb01.mac("eth1")?));
    assert_ne!(eth0_mac, eth1_mac);
    let (p0, p1) = (dir.join("eth0.pcap"), dir.join("eth1.pcap"));
    let cap0 = Capture::start(&client, "eth0", "arp", &p0)?;
    let cap1 = Capture::start(&client, "eth1", "arp", &p1)?;
    let v = Vigil::start(
        &lb01,
        &dir,
        &(global(&lb01, &dir, &bpffs, "")
            + "[instances.web]\ninterface = \"eth0\"\nvrid = 63\npriority = 100\n\
               initial_state = \"master\"\nadvert_interval = \"100ms\"\n\
               virtual_addresses = [\"192.0.2.100/24 dev eth0\", \"198.51.100.100/24 dev eth1\"]\n\
               garp_master_repeat = 2\ngarp_master_delay = 0\n"),
    )?;
    v.wait_state("web", "MASTER", Duration::from_secs(3))?;
    std::thread::sleep(Duration::from_millis(500));
    cap0.stop()?;
    cap1.stop()?;

    let fields = [
        "eth.src",
        "eth.dst",
        "arp.opcode",
        "arp.src.hw_mac",
        "arp.src.proto_ipv4",
        "arp.dst.proto_ipv4",
    ];
    let on0 = tshark(&p0, "arp", &fields)?;
    let on1 = tshark(&p1, "arp", &fields)?;
    eprintln!("eth0: {on0:#?}\neth1: {on1:#?}");
    // A gratuitous ARP for `vip`: broadcast, sender and target both the address.
    let garps = |rows: &[Vec<String>], vip: &str| -> Vec<Vec<String>> {
        rows.iter()
            .filter(|r| r.len() == 6 && r[4] == vip && r[5] == vip)
            .cloned()
            .collect()
    };
    let eth0_own = garps(&on0, "192.0.2.100");
    let eth1_own = garps(&on1, "198.51.100.100");
    assert!(
        eth0_own.len() >= 2,
        "no GARP for 192.0.2.100 on eth0: {on0:?}"
    );
    assert!(
        eth1_own.len() >= 2,
        "no GARP for 198.51.100.100 on eth1: {on1:?}"
    );
    for (rows, mac) in [(&eth0_own, &eth0_mac), (&eth1_own, &eth1_mac)] {
        for r in rows {
            assert_eq!(&r[0], mac, "sent from another device's MAC: {r:?}");
            assert_eq!(&r[3], mac, "ARP sender MAC: {r:?}");
            assert_eq!(r[1], "ff:ff:ff:ff:ff:ff", "{r:?}");
        }
    }
    // Nothing announced on the wrong device.
    assert!(garps(&on0, "198.51.100.100").is_empty(), "{on0:?}");
    assert!(garps(&on1, "192.0.2.100").is_empty(), "{on1:?}");
    drop(v);
    Ok(())
}
