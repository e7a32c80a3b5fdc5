//! The election loop runs at SCHED_FIFO (`realtime_priority`, default 10), so a busy host
//! does not delay a takeover's advert by a time slice; nothing it starts inherits the
//! class (a health-check script sees the normal class, or the instance would fault);
//! `realtime_priority = 0` leaves it normal; status and the start-up log say which.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use vigil_tests::agent::Vigil;
use vigil_tests::{Lab, require_root};

/// Passes only in the normal class: field 41 of /proc/PID/stat is the policy (0 is
/// SCHED_OTHER). `sh` has no space in its name, so the fields split cleanly.
const NORMAL_CLASS: &str = "#!/bin/sh\n[ \"$(cut -d' ' -f41 /proc/$$/stat)\" = 0 ] || { echo 'inherited a real-time class'; exit 1; }\n";

fn config(vrid: u8, script: &std::path::Path) -> String {
    format!(
        "[scripts.normal]\ncommand = \"{}\"\ninterval = \"100ms\"\n\n\
         [instances.web]\ninterface = \"eth0\"\nvrid = {vrid}\npriority = 150\n\
         initial_state = \"master\"\nadvert_interval = \"100ms\"\n\
         virtual_addresses = [\"192.0.2.{vrid}/24\"]\ntrack_scripts = [\"normal\"]\n",
        script.display()
    )
}

/// The policy and real-time priority of the agent's main thread (the election loop).
fn main_thread_class(agent: &Vigil) -> anyhow::Result<(u32, u32)> {
    let pid = agent
        .pid()
        .ok_or_else(|| anyhow::anyhow!("the agent is not running"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("unexpected stat: {stat}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u32> {
        Ok(fields
            .get(n - 3)
            .ok_or_else(|| anyhow::anyhow!("stat has no field {n}: {stat}"))?
            .parse()?)
    };
    // Field 40: rt_priority; field 41: policy.
    Ok((field(41)?, field(40)?))
}

#[test]
fn the_election_loop_is_realtime_and_what_it_starts_is_not() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("sched", &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let script = dir.join("normal-class.sh");
    std::fs::write(&script, NORMAL_CLASS)?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let [lb01, lb02] = lab.clone_hosts();

    let fifo = Vigil::start_with(&lb01, &dir, &bpffs, "", &config(51, &script))?;
    let normal = Vigil::start_with(
        &lb02,
        &dir,
        &bpffs,
        "realtime_priority = 0",
        &config(52, &script),
    )?;
    // MASTER only with the script passing: a script that inherited SCHED_FIFO fails, and
    // its instance (weight 0) goes to FAULT.
    for agent in [&fifo, &normal] {
        agent.wait_state("web", "MASTER", Duration::from_secs(5))?;
        std::thread::sleep(Duration::from_millis(500));
        let web = agent.instance("web")?;
        assert_eq!(web["state"], "MASTER", "{web}\n{}", agent.log_text());
        assert_eq!(
            web["tracking"]["scripts"][0]["status"],
            "ok",
            "{web}\n{}",
            agent.log_text()
        );
    }

    assert_eq!(fifo.status()?["scheduling"], "SCHED_FIFO priority 10");
    assert!(
        fifo.log_text()
            .contains("scheduling=SCHED_FIFO priority 10"),
        "{}",
        fifo.log_text()
    );
    assert_eq!(main_thread_class(&fifo)?, (libc::SCHED_FIFO as u32, 10));

    assert_eq!(
        normal.status()?["scheduling"],
        "normal priority (realtime_priority = 0)"
    );
    assert_eq!(main_thread_class(&normal)?, (libc::SCHED_OTHER as u32, 0));
    Ok(())
}
