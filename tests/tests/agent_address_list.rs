//! RFC 3768 §7.1: a VRRPv2 Backup drops an advert whose address list differs from its
//! own (unless the sender owns the addresses). With XDP the list reaches the election as
//! a digest the kernel computes; if the kernel's digest and the agent's ever disagreed,
//! the Backup would drop every advert of a live Master and take over. A Backup with the
//! same three addresses stays Backup; one whose list differs takes over.
//!
//! Both ways the down timer is kept: in the agent (`kernel_timers = false`), where every
//! expiry hands the election the kernel's last advert, digest included, so a wrong
//! digest shows as a takeover; and in the kernel, whose timer counts any valid advert as
//! the Master's — the agent must keep the deadline of a Backup whose election discards
//! them.

use std::time::Duration;

use vigil_tests::agent::{Vigil, global};
use vigil_tests::{Lab, require_root};

fn instance(priority: u8, last: u8) -> String {
    format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\nversion = 2\n\
         auth_pass = \"1111\"\nadvert_interval = 1\nvirtual_addresses = [\
         \"192.0.2.100/24 dev eth0\", \"198.51.100.7/24 dev eth0\", \"198.51.100.{last}/24 dev eth0\"]\n"
    )
}

#[test]
fn a_v2_backup_hears_a_master_whose_list_matches_and_not_one_whose_list_differs()
-> anyhow::Result<()> {
    require_root();
    for timers in ["kernel_timers = false", "kernel_timers = true"] {
        eprintln!("{timers}");
        lists(timers)?;
    }
    Ok(())
}

fn lists(timers: &str) -> anyhow::Result<()> {
    let mut lab = Lab::new("addrlist", &["lb01", "lb02", "lb03"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let hosts: Vec<_> = ["lb01", "lb02", "lb03"]
        .iter()
        .map(|h| lab.host(h).clone())
        .collect();
    let conf = |i: usize, priority: u8, last: u8| {
        global(
            &hosts[i],
            &dir,
            &bpffs,
            &format!("xdp = \"auto\"\n{timers}"),
        ) + &instance(priority, last)
    };
    let m = Vigil::start(&hosts[0], &dir, &conf(0, 150, 9))?;
    m.wait_state("web", "MASTER", Duration::from_secs(5))?;
    let same = Vigil::start(&hosts[1], &dir, &conf(1, 100, 9))?;
    let other = Vigil::start(&hosts[2], &dir, &conf(2, 90, 10))?;
    same.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    // Master_Down_Interval at 1 s is about 3.6 s: a deaf Backup would have taken over.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        same.state("web")?,
        "BACKUP",
        "the same list must be heard\n{}",
        same.log_text()
    );
    assert_eq!(
        other.state("web")?,
        "MASTER",
        "a different list is dropped (RFC 3768 §7.1), so this Backup hears no Master\n{}",
        other.log_text()
    );
    assert_eq!(m.state("web")?, "MASTER");
    Ok(())
}
