//! A virtual MAC instance with unicast peers sends its adverts from the parent
//! interface and its own MAC in both families, as keepalived does (it forces
//! `vmac_xmit_base` with `unicast_peer`): a peer whose own private macvlan carries the
//! same virtual MAC takes every broadcast from that MAC, so an ARP request from the
//! virtual MAC for the peer's address would go unanswered and the peer would hear
//! nothing. Checked on the wire by tshark, and by the peer, which must hear the adverts
//! and stay Backup.

use std::collections::BTreeSet;
use std::time::Duration;

use vigil_tests::agent::Vigil;
use vigil_tests::capture::{Capture, mac_text, tshark};
use vigil_tests::{Host, Lab, require_root};

const VIP4: &str = "192.0.2.100";
const VIP6: &str = "2001:db8::100";

fn config(peer: &Host, priority: u8) -> String {
    format!(
        "[instances.web4]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         advert_interval = \"100ms\"\nvirtual_addresses = [\"{VIP4}/24\"]\nuse_vmac = true\n\
         unicast_peers = [\"{peer4}\"]\n\
         [instances.web6]\ninterface = \"eth0\"\nvrid = 52\npriority = {priority}\n\
         advert_interval = \"100ms\"\nvirtual_addresses = [\"{VIP6}/64\"]\nuse_vmac = true\n\
         unicast_peers = [\"{peer6}\"]\n",
        peer4 = peer.ipv4,
        peer6 = peer.ipv6,
    )
}

/// The distinct rows of `fields` over the adverts matching `filter`.
fn rows(
    pcap: &std::path::Path,
    filter: &str,
    fields: &[&str],
) -> anyhow::Result<BTreeSet<Vec<String>>> {
    Ok(tshark(pcap, filter, fields)?.into_iter().collect())
}

#[test]
fn unicast_adverts_of_a_virtual_mac_instance_leave_from_the_parent_in_both_families()
-> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("vmacuni", &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let v1 = Vigil::start_with(&lb01, &dir, &bpffs, "", &config(&lb02, 150))?;
    let v2 = Vigil::start_with(&lb02, &dir, &bpffs, "", &config(&lb01, 100))?;
    for name in ["web4", "web6"] {
        v1.wait_state(name, "MASTER", Duration::from_secs(5))?;
        v2.wait_state(name, "BACKUP", Duration::from_secs(5))?;
    }
    // The Master's own eth0 sees every frame it puts on the wire, whatever the Backup's
    // XDP program does with them on arrival.
    let pcap = dir.join("unicast.pcap");
    let cap = Capture::start(&lb01, "eth0", "ip proto 112 or ip6 proto 112", &pcap)?;
    // Ten Master_Down_Intervals: a Backup that missed the adverts would have taken over.
    std::thread::sleep(Duration::from_millis(3000));
    cap.stop()?;
    for name in ["web4", "web6"] {
        assert_eq!(v1.state(name)?, "MASTER", "{}", v1.log_text());
        assert_eq!(v2.state(name)?, "BACKUP", "{name}: {}", v2.log_text());
        let status = v2.instance(name)?;
        let took_over = status["transitions"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["to"] == "MASTER"));
        assert!(!took_over, "{name} on lb02: {status}");
    }
    // The addresses still live on the macvlans, with the virtual MACs.
    for (vif, vip) in [("vrrp.51", VIP4), ("vrrp.52", VIP6)] {
        let out = lb01.exec(&["ip", "-o", "addr", "show", "dev", vif])?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(vip), "{vif}: {text}");
    }
    let (mine, peer) = (mac_text(lb01.mac("eth0")?), mac_text(lb02.mac("eth0")?));
    let fields4 = ["eth.src", "eth.dst", "ip.src", "ip.dst", "ip.ttl"];
    let want4: BTreeSet<Vec<String>> = [vec![
        mine.clone(),
        peer.clone(),
        lb01.ipv4.to_string(),
        lb02.ipv4.to_string(),
        "255".to_owned(),
    ]]
    .into();
    assert_eq!(rows(&pcap, "vrrp && ip", &fields4)?, want4, "IPv4 adverts");
    let fields6 = ["eth.src", "eth.dst", "ipv6.src", "ipv6.dst", "ipv6.hlim"];
    let want6: BTreeSet<Vec<String>> = [vec![
        mine,
        peer,
        lb01.link_local()?.to_string(),
        lb02.ipv6.to_string(),
        "255".to_owned(),
    ]]
    .into();
    assert_eq!(
        rows(&pcap, "vrrp && ipv6", &fields6)?,
        want6,
        "IPv6 adverts"
    );
    // About ten a second in each family: none lost.
    let count = |filter: &str| tshark(&pcap, filter, &["frame.number"]).map(|r| r.len());
    let (n4, n6) = (count("vrrp && ip")?, count("vrrp && ipv6")?);
    assert!(
        n4 >= 20 && n6 >= 20,
        "{n4} IPv4 and {n6} IPv6 adverts in 3 s"
    );
    Ok(())
}
