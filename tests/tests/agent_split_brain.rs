//! Split brain: one-way loss makes two masters; the one that still hears the other
//! counts, warns and shows it in `vigil status`. The classic shell check: a virtual
//! address on a Backup that vigil did not add is reported and left alone.

use std::time::Duration;

use vigil_tests::agent::{has_address, start_pair};
use vigil_tests::{Lab, require_root};

const VIP: &str = "192.0.2.100";

fn instance(priority: u8, state: &str) -> String {
    format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         initial_state = \"{state}\"\nadvert_interval = \"100ms\"\n\
         virtual_addresses = [\"{VIP}/24 dev eth0\"]\n"
    )
}

#[test]
fn one_way_loss_shows_as_split_brain_and_a_foreign_vip_on_a_backup_is_left_alone()
-> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("split", &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let (v1, v2) = start_pair(
        (&lb01, &lb02),
        &dir,
        &bpffs,
        (&instance(150, "master"), &instance(100, "backup")),
    )?;
    assert!(v1.instance("web")?["split_brain"].is_null());

    // One-way loss: the switch stops flooding multicast to lb02's port, so lb02 no
    // longer hears lb01, while lb01 still hears lb02.
    let port = lb02.port.clone();
    let switch = lab.switch().to_owned();
    let flood = |on: &str| {
        vigil_tests::run(std::process::Command::new("ip").args([
            "-n",
            &switch,
            "link",
            "set",
            "dev",
            &port,
            "type",
            "bridge_slave",
            "mcast_flood",
            on,
        ]))
    };
    flood("off")?;
    v2.wait_state("web", "MASTER", Duration::from_secs(3))?;
    let i = v1.wait_instance("web", "split brain", Duration::from_secs(3), |i| {
        !i["split_brain"].is_null()
    })?;
    assert_eq!(i["state"], "MASTER");
    assert_eq!(i["split_brain"]["peer"], "192.0.2.12");
    assert_eq!(i["split_brain"]["peer_priority"], 100);
    assert!(i["split_brain_adverts"].as_u64().unwrap_or(0) >= 3);
    assert!(has_address(&lb01, VIP) && has_address(&lb02, VIP));
    let table = v1.status_table()?;
    eprintln!("{table}");
    assert!(
        table.contains("split brain suspected since") && table.contains("peer 192.0.2.12"),
        "{table}"
    );
    assert!(v1.log_text().contains("split brain suspected"));

    // Heal: lb02 hears 150 and gives way; the suspicion ends.
    flood("on")?;
    v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    v1.wait_instance("web", "clear of split brain", Duration::from_secs(3), |i| {
        i["split_brain"].is_null()
    })?;
    assert!(v1.log_text().contains("split brain over"));
    assert!(!has_address(&lb02, VIP), "lb02 released what it had added");

    // Someone puts the VIP on the Backup: reported, never removed by vigil.
    lb02.exec(&["ip", "addr", "add", &format!("{VIP}/24"), "dev", "eth0"])?;
    let i = v2.wait_instance("web", "reporting the VIP", Duration::from_secs(3), |i| {
        i["addresses_while_backup"][0] == VIP
    })?;
    assert_eq!(i["removed_while_backup"], 0);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        has_address(&lb02, VIP),
        "vigil removed an address it did not add"
    );
    assert!(v2.log_text().contains("vigil did not add it: left alone"));
    assert!(
        v2.status_table()?
            .contains("not added by vigil (left alone): 192.0.2.100")
    );
    lb02.exec(&["ip", "addr", "del", &format!("{VIP}/24"), "dev", "eth0"])?;
    v2.wait_instance("web", "clear", Duration::from_secs(3), |i| {
        i["addresses_while_backup"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    })?;
    Ok(())
}
