//! Real vigil agents in namespaces: election, failover timed from a capture, graceful
//! handover, preemption, three nodes, crash and restart.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vigil_tests::agent::{Vigil, adverts, global, has_address, start_pair};
use vigil_tests::capture::Capture;
use vigil_tests::{Lab, require_root};

const VIP: &str = "192.0.2.100";

fn instance(priority: u8, state: &str) -> String {
    format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         initial_state = \"{state}\"\nadvert_interval = \"100ms\"\n\
         virtual_addresses = [\"{VIP}/24 dev eth0 label eth0:1\"]\n"
    )
}

/// Master_Down_Interval for 100 ms adverts at `priority` (RFC 5798 §6.1).
fn master_down(priority: u8) -> Duration {
    let skew = Duration::from_nanos((256 - u64::from(priority)) * 100_000_000 / 256);
    Duration::from_millis(300) + skew
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal address")
}

#[test]
fn two_nodes_fail_over_on_time_hand_over_on_sigterm_and_preempt_back() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("failover", &["lb01", "lb02", "client"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02, client] = lab.clone_hosts();
    let (mut v1, v2) = start_pair(
        (&lb01, &lb02),
        &dir,
        &bpffs,
        (&instance(150, "master"), &instance(100, "backup")),
    )?;
    assert!(
        has_address(&lb01, VIP) && !has_address(&lb02, VIP),
        "VIP on the master only"
    );
    client.exec(&["ping", "-c", "1", "-W", "1", VIP])?;

    // Cut the master's link: the backup takes over one Master_Down_Interval after the
    // last advert that reached it.
    let cap = Capture::start(&client, "eth0", "ip proto 112", &dir.join("cut.pcap"))?;
    std::thread::sleep(Duration::from_millis(250));
    lab.set_link("lb01", false)?;
    v2.wait_state("web", "MASTER", Duration::from_secs(3))?;
    std::thread::sleep(Duration::from_millis(200));
    let packets = cap.stop()?;
    let seen = adverts(&packets);
    eprintln!("captured {} frames, {} adverts", packets.len(), seen.len());
    let last_01 = seen
        .iter()
        .rev()
        .find(|a| a.1 == ip("192.0.2.11"))
        .expect("adverts from lb01")
        .0;
    let first_02 = seen
        .iter()
        .find(|a| a.1 == ip("192.0.2.12"))
        .expect("adverts from lb02")
        .0;
    let took = Duration::from_nanos(first_02.saturating_sub(last_01));
    let bound = master_down(100);
    eprintln!("takeover after {took:?}; Master_Down_Interval {bound:?}");
    assert!(
        took + Duration::from_millis(3) >= bound,
        "took over early: {took:?} < {bound:?}"
    );
    assert!(
        took <= bound + Duration::from_millis(60),
        "took over late: {took:?} > {bound:?}"
    );
    client.exec(&["ping", "-c", "1", "-W", "1", VIP])?;
    assert!(has_address(&lb02, VIP));

    // Heal: lb01 (150) preempts lb02 (100).
    lab.set_link("lb01", true)?;
    v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    assert!(has_address(&lb01, VIP) && !has_address(&lb02, VIP));

    // SIGTERM on the master: priority 0, and the backup takes over within Skew_Time;
    // the VIP is never on both nodes meanwhile.
    let both = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (both, stop, a, b) = (both.clone(), stop.clone(), lb01.clone(), lb02.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if has_address(&a, VIP) && has_address(&b, VIP) {
                    both.store(true, Ordering::Relaxed);
                }
            }
        })
    };
    let cap = Capture::start(&client, "eth0", "ip proto 112", &dir.join("term.pcap"))?;
    std::thread::sleep(Duration::from_millis(250));
    v1.signal(libc::SIGTERM);
    assert_eq!(v1.wait()?, Some(0), "vigil exits 0 on SIGTERM");
    v2.wait_state("web", "MASTER", Duration::from_secs(2))?;
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher thread");
    let seen = adverts(&cap.stop()?);
    let zero = seen
        .iter()
        .find(|a| a.1 == ip("192.0.2.11") && a.2 == 0)
        .expect("priority-0 advert from lb01")
        .0;
    let first_02 = seen
        .iter()
        .find(|a| a.1 == ip("192.0.2.12"))
        .expect("adverts from lb02")
        .0;
    let took = Duration::from_nanos(first_02.saturating_sub(zero));
    let skew = master_down(100) - Duration::from_millis(300);
    eprintln!("handover after {took:?}; Skew_Time {skew:?}");
    assert!(
        took <= skew + Duration::from_millis(60),
        "handover took {took:?}"
    );
    assert!(!both.load(Ordering::Relaxed), "the VIP was on both nodes");
    assert!(
        !has_address(&lb01, VIP),
        "a stopped agent leaves no VIP behind"
    );
    Ok(())
}

#[test]
fn three_nodes_elect_the_highest_priority_and_the_next_one_on_failure() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("three", &["n1", "n2", "n3"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let hosts: Vec<_> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| lab.host(n).clone())
        .collect();
    let mut agents = Vec::new();
    for (h, prio) in hosts.iter().zip([100u8, 200, 150]) {
        agents.push(Vigil::start(
            h,
            &dir,
            &(global(h, &dir, &bpffs, "") + &instance(prio, "backup")),
        )?);
    }
    agents[1].wait_state("web", "MASTER", Duration::from_secs(3))?;
    agents[0].wait_state("web", "BACKUP", Duration::from_secs(1))?;
    agents[2].wait_state("web", "BACKUP", Duration::from_secs(1))?;
    lab.set_link("n2", false)?;
    agents[2].wait_state("web", "MASTER", Duration::from_secs(3))?;
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        agents[0].state("web")?,
        "BACKUP",
        "priority 100 must not win over 150"
    );
    assert!(has_address(&hosts[2], VIP) && !has_address(&hosts[0], VIP));
    Ok(())
}

#[test]
fn a_crashed_agent_restarts_without_leaving_a_duplicate_address() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("crash", &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let (mut v1, v2) = start_pair(
        (&lb01, &lb02),
        &dir,
        &bpffs,
        (&instance(150, "master"), &instance(100, "backup")),
    )?;

    v1.signal(libc::SIGKILL);
    v1.wait()?;
    v2.wait_state("web", "MASTER", Duration::from_secs(3))?;
    assert!(
        has_address(&lb01, VIP),
        "a killed agent cannot remove its VIP"
    );
    // A program another vigil left on eth0 must not stop the restart ("busy").
    v1.spawn()?;
    v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    assert!(has_address(&lb01, VIP) && !has_address(&lb02, VIP));
    assert!(
        v1.log_text()
            .contains("left by a vigil that did not exit cleanly"),
        "the restart must say it removed the leftover: {}",
        v1.log_text()
    );
    Ok(())
}

#[test]
fn an_address_put_there_by_someone_else_is_never_removed() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("foreign", &["lb01"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let lb01 = lab.host("lb01").clone();
    lb01.exec(&["ip", "addr", "add", &format!("{VIP}/24"), "dev", "eth0"])?;
    let mut v1 = Vigil::start_with(&lb01, &dir, &bpffs, "", &instance(150, "master"))?;
    v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    v1.signal(libc::SIGTERM);
    assert_eq!(v1.wait()?, Some(0));
    assert!(
        has_address(&lb01, VIP),
        "vigil removed an address it did not add"
    );
    Ok(())
}
