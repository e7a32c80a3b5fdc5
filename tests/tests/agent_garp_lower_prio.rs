//! A split brain heals: the higher-priority Master hears the other one's lower-priority
//! adverts and re-announces its address on the `garp_lower_prio_*` schedule, so that a
//! host whose ARP cache followed the other Master comes back to it.

use std::time::Duration;

use vigil_tests::agent::{Vigil, has_address};
use vigil_tests::capture::{Capture, mac_text};
use vigil_tests::{Host, Lab, require_root};

const VIP: &str = "192.0.2.100";

fn instance(priority: u8, state: &str) -> String {
    format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 52\npriority = {priority}\n\
         initial_state = \"{state}\"\nadvert_interval = \"100ms\"\n\
         virtual_addresses = [\"{VIP}/24 dev eth0\"]\n\
         garp_master_repeat = 5\ngarp_master_delay = 0\n\
         garp_lower_prio_repeat = 2\ngarp_lower_prio_delay = 1\n"
    )
}

/// The MAC the client's neighbour table holds for the VIP, if any.
fn cached_mac(client: &Host) -> anyhow::Result<Option<String>> {
    let out = client.exec(&["ip", "neigh", "show", VIP, "dev", "eth0"])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    Ok(words
        .by_ref()
        .find(|w| *w == "lladdr")
        .and_then(|_| words.next())
        .map(str::to_owned))
}

#[test]
fn keepalived_garp_lower_prio_a_healed_split_brain_brings_the_hosts_back_to_the_winner()
-> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("lprio", &["lb01", "lb02", "client"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02, client] = lab.clone_hosts();
    let (mac1, mac2) = (lb01.mac("eth0")?, lb02.mac("eth0")?);
    let v1 = Vigil::start_with(&lb01, &dir, &bpffs, "", &instance(150, "master"))?;
    v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    let v2 = Vigil::start_with(&lb02, &dir, &bpffs, "", &instance(100, "backup"))?;
    v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;

    // The switch stops flooding multicast to both routers: neither hears the other.
    let switch = lab.switch().to_owned();
    let flood = |port: &str, on: &str| {
        vigil_tests::run(std::process::Command::new("ip").args([
            "-n",
            &switch,
            "link",
            "set",
            "dev",
            port,
            "type",
            "bridge_slave",
            "mcast_flood",
            on,
        ]))
    };
    flood(&lb01.port, "off")?;
    flood(&lb02.port, "off")?;
    v2.wait_state("web", "MASTER", Duration::from_secs(3))?;
    assert_eq!(v1.state("web")?, "MASTER");
    // The client follows lb02, as lb02's own GARPs make it do; pinned here so that the
    // start does not depend on which burst the kernel's lock time let through.
    client.exec(&[
        "ip",
        "neigh",
        "replace",
        VIP,
        "lladdr",
        &mac_text(mac2),
        "dev",
        "eth0",
        "nud",
        "stale",
    ])?;
    assert_eq!(cached_mac(&client)?, Some(mac_text(mac2)));
    // Past the neighbour lock time (1 s), so that the next GARP may update the entry.
    std::thread::sleep(Duration::from_millis(1500));

    let cap = Capture::start(&client, "eth0", "arp", &dir.join("garp.pcap"))?;
    // Heal towards lb01 first: it hears lb02's lower-priority adverts while lb02 still
    // cannot hear it, so the re-announcement is lb01's answer to a lower priority.
    flood(&lb01.port, "on")?;
    std::thread::sleep(Duration::from_millis(2000));
    flood(&lb02.port, "on")?;
    v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    std::thread::sleep(Duration::from_millis(500));
    let packets = cap.stop()?;

    // Gratuitous ARPs for the VIP from lb01 (sender MAC and sender IP in the ARP body).
    let vip: std::net::Ipv4Addr = VIP.parse()?;
    let garps: Vec<u64> = packets
        .iter()
        .filter(|p| {
            let d = &p.data;
            d.len() >= 42
                && d[12..14] == [0x08, 0x06]
                && d[22..28] == mac1
                && d[28..32] == vip.octets()
                && d[38..42] == vip.octets()
        })
        .map(|p| p.ts_ns)
        .collect();
    eprintln!("GARPs from lb01 after the heal at (ns): {garps:?}");
    // garp_lower_prio_repeat = 2 at once, and 2 more garp_lower_prio_delay = 1 s later;
    // not garp_master_repeat's 5, and once only while the other one persists.
    assert_eq!(garps.len(), 4, "{garps:?}");
    let gap = Duration::from_nanos(garps[2] - garps[1]);
    assert!(
        gap >= Duration::from_millis(900) && gap <= Duration::from_millis(1500),
        "second burst {gap:?} after the first"
    );
    assert!(Duration::from_nanos(garps[1] - garps[0]) < Duration::from_millis(100));

    // The host is back with the winner; exactly one node holds the VIP.
    assert_eq!(cached_mac(&client)?, Some(mac_text(mac1)));
    assert_eq!(v1.state("web")?, "MASTER");
    assert!(has_address(&lb01, VIP) && !has_address(&lb02, VIP));
    drop((v1, v2));
    Ok(())
}
