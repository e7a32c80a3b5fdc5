//! An address owner started while its link is down adds nothing: it goes to FAULT, and
//! to MASTER only when the link comes up.

use std::time::Duration;

use vigil_tests::agent::{Vigil, global, has_address};
use vigil_tests::{Lab, require_root};

const VIP: &str = "192.0.2.100";

#[test]
fn an_address_owner_started_with_its_link_down_adds_nothing_before_the_link_is_up()
-> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("linkdown", &["lb01"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let lb01 = lab.host("lb01").clone();
    lab.set_link("lb01", false)?;
    std::thread::sleep(Duration::from_millis(200));
    let config = global(&lb01, &dir, &bpffs, "")
        + "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = 255\n\
           advert_interval = \"100ms\"\nvirtual_addresses = [\"192.0.2.100/24 dev eth0\"]\n";
    let v = Vigil::start(&lb01, &dir, &config)?;
    v.wait_state("web", "FAULT", Duration::from_secs(3))?;
    std::thread::sleep(Duration::from_millis(300));
    let web = v.instance("web")?;
    let to_master = web["transitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["to"] == "MASTER")
        .count();
    assert_eq!(
        to_master,
        0,
        "became MASTER on a down link: {web}\n{}",
        v.log_text()
    );
    assert!(!has_address(&lb01, VIP), "the VIP was added on a down link");
    lab.set_link("lb01", true)?;
    v.wait_state("web", "MASTER", Duration::from_secs(3))?;
    assert!(has_address(&lb01, VIP));
    Ok(())
}
