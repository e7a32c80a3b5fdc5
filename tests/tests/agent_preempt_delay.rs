//! keepalived's `preempt_delay` with real agents: a Backup of priority 150 with a 5 s
//! delay, started while a priority-100 Master sends every 100 ms, waits the 5 s before it
//! preempts — on the XDP datapath (where the kernel must not drop the lower-priority
//! adverts the delay depends on) and on raw sockets.

use std::time::{Duration, Instant};

use vigil_tests::agent::{Vigil, has_address};
use vigil_tests::{Lab, require_root};

const VIP: &str = "192.0.2.100";

fn instance(priority: u8, extra: &str) -> String {
    format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         advert_interval = \"100ms\"\nvirtual_addresses = [\"{VIP}/24 dev eth0\"]\n{extra}\n"
    )
}

fn preempt_delay_holds(tag: &str, datapath: &str) -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new(tag, &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let m = Vigil::start_with(&lb01, &dir, &bpffs, datapath, &instance(100, ""))?;
    m.wait_state("web", "MASTER", Duration::from_secs(3))?;

    let started = Instant::now();
    let b = Vigil::start_with(
        &lb02,
        &dir,
        &bpffs,
        datapath,
        &instance(150, "preempt_delay = 5"),
    )?;
    b.wait_state("web", "BACKUP", Duration::from_secs(2))?;
    // Until the delay is over the Backup must hear the lower-priority Master and stay.
    while started.elapsed() < Duration::from_millis(4700) {
        let state = b.state("web")?;
        assert_eq!(
            state,
            "BACKUP",
            "{}: took over {:?} after start, inside the 5 s preempt delay\n{}",
            lb02.name,
            started.elapsed(),
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The delay runs from the agent's own start, which a loaded machine (the XDP
    // verifier) can put seconds after the spawn: wait generously for the end of it.
    b.wait_state("web", "MASTER", Duration::from_secs(10))?;
    let took = started.elapsed();
    eprintln!("{datapath}: preempted {took:?} after start");
    assert!(took >= Duration::from_secs(5), "preempted after {took:?}");
    m.wait_state("web", "BACKUP", Duration::from_secs(2))?;
    assert!(has_address(&lb02, VIP) && !has_address(&lb01, VIP));
    let why = b.instance("web")?["last_transition"]["reason"].clone();
    eprintln!("reason: {why}");
    Ok(())
}

#[test]
fn preempt_delay_holds_on_the_xdp_datapath() -> anyhow::Result<()> {
    preempt_delay_holds("pdelay-xdp", "xdp = \"auto\"")
}

#[test]
fn preempt_delay_holds_on_raw_sockets() -> anyhow::Result<()> {
    preempt_delay_holds("pdelay-raw", "xdp = \"off\"")
}
