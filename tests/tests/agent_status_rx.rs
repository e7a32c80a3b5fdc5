//! `vigil status` counts every valid advert the datapath accepted for a VRID, though the
//! XDP program hands the election only the ones that change something.

use std::time::Duration;

use vigil_tests::agent::Vigil;
use vigil_tests::{Lab, require_root};

fn instance(priority: u8) -> String {
    format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         advert_interval = \"100ms\"\nvirtual_addresses = [\"192.0.2.100/24 dev eth0\"]\n"
    )
}

fn rx_counts_what_the_datapath_accepted(tag: &str, datapath: &str) -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new(tag, &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let m = Vigil::start_with(&lb01, &dir, &bpffs, datapath, &instance(150))?;
    m.wait_state("web", "MASTER", Duration::from_secs(3))?;
    let b = Vigil::start_with(&lb02, &dir, &bpffs, datapath, &instance(100))?;
    b.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    let before = b.instance("web")?["adverts_rx"].as_u64().unwrap_or(0);
    std::thread::sleep(Duration::from_secs(2));
    let after = b.instance("web")?["adverts_rx"].as_u64().unwrap_or(0);
    // Ten adverts a second for two seconds; allow for scheduling.
    eprintln!("{datapath}: adverts_rx {before} -> {after}");
    assert!(
        after - before >= 15,
        "adverts_rx rose by {} over 2 s of 100 ms adverts",
        after - before
    );
    Ok(())
}

#[test]
fn status_rx_counts_every_advert_the_kernel_accepted() -> anyhow::Result<()> {
    rx_counts_what_the_datapath_accepted("rx-xdp", "xdp = \"auto\"")
}

#[test]
fn status_rx_counts_every_advert_the_raw_path_accepted() -> anyhow::Result<()> {
    rx_counts_what_the_datapath_accepted("rx-raw", "xdp = \"off\"")
}
