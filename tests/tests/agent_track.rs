//! Health tracking and notify scripts with real agents: a script weight moves
//! mastership, a hanging script is killed at its timeout while the election goes on,
//! tracked interfaces and files, notify scripts in order with keepalived's arguments.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use vigil_tests::agent::{Vigil, global, has_address};
use vigil_tests::{Lab, require_root};

const VIP: &str = "192.0.2.100";

fn instance(priority: u8, state: &str, extra: &str) -> String {
    format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         initial_state = \"{state}\"\nadvert_interval = \"100ms\"\n\
         virtual_addresses = [\"{VIP}/24 dev eth0 label eth0:1\"]\n{extra}"
    )
}

fn write_script(path: &Path, body: &str) -> anyhow::Result<()> {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[test]
fn a_failing_script_weight_moves_mastership_and_back() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("weight", &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let ok = dir.join("lb01-ok");
    std::fs::write(&ok, "")?;
    // No metacharacters: run directly, without a shell.
    let script = format!(
        "[scripts.check]\ncommand = \"test -f {}\"\ninterval = \"100ms\"\nweight = -60\n",
        ok.display()
    );
    let v1 = Vigil::start(
        &lb01,
        &dir,
        &(global(&lb01, &dir, &bpffs, "")
            + &script
            + &instance(150, "master", "track_scripts = [\"check\"]\n")),
    )?;
    let v2 = Vigil::start_with(&lb02, &dir, &bpffs, "", &instance(100, "backup", ""))?;
    v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;

    // 150 - 60 = 90 < 100: lb02 preempts.
    std::fs::remove_file(&ok)?;
    let t0 = Instant::now();
    v2.wait_state("web", "MASTER", Duration::from_secs(3))?;
    eprintln!(
        "lb02 took over {:?} after the check began failing",
        t0.elapsed()
    );
    let i = v1.wait_instance("web", "BACKUP at 90", Duration::from_secs(2), |i| {
        i["state"] == "BACKUP" && i["effective_priority"] == 90
    })?;
    assert_eq!(i["tracking"]["scripts"][0]["status"], "failing");
    assert!(has_address(&lb02, VIP) && !has_address(&lb01, VIP));

    // Passing again: 150 > 100, lb01 preempts back.
    std::fs::write(&ok, "")?;
    v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    assert_eq!(v1.instance("web")?["effective_priority"], 150);
    assert!(
        v1.log_text().contains("effective priority 150 -> 90"),
        "{}",
        v1.log_text()
    );
    Ok(())
}

#[test]
fn a_hanging_script_is_killed_at_its_timeout_and_the_election_goes_on() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("hang", &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    // The shell forks `sleep`: killing only the shell would leave the sleep behind, so
    // this also checks that the whole process group goes.
    let script = "[scripts.hang]\ncommand = \"sleep 31.7; true\"\ninterval = \"500ms\"\n\
                  timeout = \"300ms\"\nweight = -60\n";
    let v1 = Vigil::start(
        &lb01,
        &dir,
        &(global(&lb01, &dir, &bpffs, "")
            + script
            + &instance(150, "master", "track_scripts = [\"hang\"]\n")),
    )?;
    let v2 = Vigil::start_with(&lb02, &dir, &bpffs, "", &instance(100, "backup", ""))?;
    // A timeout is a failure: 90 < 100.
    v2.wait_state("web", "MASTER", Duration::from_secs(5))?;
    let i = v1.wait_instance("web", "BACKUP at 90", Duration::from_secs(2), |i| {
        i["state"] == "BACKUP" && i["effective_priority"] == 90
    })?;
    let last = i["tracking"]["scripts"][0]["last_result"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(last, "timed out after 300ms, killed");
    // The agent kept answering and electing while scripts hung: the status answers
    // quickly, and after several runs at most the current one is alive.
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let runs = v1.instance("web")?["tracking"]["scripts"][0]["runs"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "status was slow: {:?}",
        t.elapsed()
    );
    assert!(runs >= 4, "only {runs} runs");
    let out = std::process::Command::new("pgrep")
        // The sleep itself, not the shell around it: at most the current run's.
        .args(["-c", "-f", "^sleep 31\\.7$"])
        .output()?;
    let alive: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        alive <= 1,
        "{alive} hung scripts still alive after {runs} runs"
    );
    assert!(
        v1.log_text().contains("timed out after 300ms, killed"),
        "{}",
        v1.log_text()
    );
    Ok(())
}

#[test]
fn tracked_interfaces_and_files_fault_or_weigh() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("trackif", &["lb01"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let lb01 = lab.host("lb01").clone();
    // veth pairs inside the namespace (this kernel has no dummy driver).
    for name in ["uplink", "backend"] {
        let peer = format!("{name}-p");
        lb01.exec(&[
            "ip", "link", "add", name, "type", "veth", "peer", "name", &peer,
        ])?;
        lb01.exec(&["ip", "link", "set", &peer, "up"])?;
        lb01.exec(&["ip", "link", "set", name, "up"])?;
    }
    let file = dir.join("lb01-weight");
    std::fs::write(&file, "0\n")?;
    let track = format!(
        "track_interfaces = [\"uplink\", {{ interface = \"backend\", weight = -30 }}]\n\
         track_files = [{{ path = \"{}\", weight = -5 }}]\n",
        file.display()
    );
    let v1 = Vigil::start_with(&lb01, &dir, &bpffs, "", &instance(150, "master", &track))?;
    v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    assert_eq!(v1.instance("web")?["effective_priority"], 150);

    // Weighted interface down: 150 - 30.
    lb01.exec(&["ip", "link", "set", "backend", "down"])?;
    v1.wait_instance("web", "at 120", Duration::from_secs(2), |i| {
        i["effective_priority"] == 120 && i["state"] == "MASTER"
    })?;
    // File value × weight: 4 × -5 = -20 more.
    std::fs::write(&file, "4\n")?;
    v1.wait_instance("web", "at 100", Duration::from_secs(3), |i| {
        i["effective_priority"] == 100
    })?;
    // A weight-0 interface down: FAULT, and the address goes.
    lb01.exec(&["ip", "link", "set", "uplink", "down"])?;
    let i = v1.wait_instance("web", "FAULT", Duration::from_secs(2), |i| {
        i["state"] == "FAULT"
    })?;
    assert_eq!(i["fault"], "interface uplink down");
    assert!(!has_address(&lb01, VIP));
    lb01.exec(&["ip", "link", "set", "uplink", "up"])?;
    lb01.exec(&["ip", "link", "set", "backend", "up"])?;
    std::fs::write(&file, "0\n")?;
    v1.wait_instance("web", "MASTER at 150", Duration::from_secs(3), |i| {
        i["state"] == "MASTER" && i["effective_priority"] == 150
    })?;
    // keepalived: value × weight below -253 is a fault too.
    std::fs::write(&file, "51\n")?;
    v1.wait_instance("web", "FAULT by file", Duration::from_secs(3), |i| {
        i["state"] == "FAULT"
    })?;
    Ok(())
}

#[test]
fn notify_scripts_run_in_order_with_keepalived_arguments_as_script_user() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("notify", &["lb01"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let lb01 = lab.host("lb01").clone();
    let log = dir.join("notify.log");
    std::fs::write(&log, "")?;
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666))?;
    let script = dir.join("notify.sh");
    // notify_backup is slow: what comes after it must still come after it.
    write_script(
        &script,
        &format!(
            "[ \"$1\" = backup ] && sleep 0.4\necho \"$* uid=$(id -u)\" >> {}",
            log.display()
        ),
    )?;
    let fault = dir.join("lb01-fault");
    std::fs::write(&fault, "0")?;
    let s = script.display();
    let notify = format!(
        "notify_master = \"{s} master\"\nnotify_backup = \"{s} backup\"\n\
         notify_fault = \"{s} fault\"\nnotify_stop = \"{s} stop\"\nnotify = \"{s}\"\n\
         track_files = [{{ path = \"{}\", weight = 0 }}]\n",
        fault.display()
    );
    let mut v1 = Vigil::start_with(
        &lb01,
        &dir,
        &bpffs,
        "script_user = \"nobody\"",
        &instance(150, "backup", &notify),
    )?;
    // The queue keeps only the newest state whose scripts have not started: wait for
    // each state's scripts to have run before the next change, so that every one runs.
    let ran = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= n) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        anyhow::bail!(
            "fewer than {n} notify runs: {:?}",
            std::fs::read_to_string(&log)
        )
    };
    // Alone, it goes Backup, then Master after Master_Down_Interval.
    v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    ran(4)?;
    std::fs::write(&fault, "1")?;
    v1.wait_state("web", "FAULT", Duration::from_secs(3))?;
    ran(6)?;
    std::fs::write(&fault, "0")?;
    v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    ran(10)?;
    v1.signal(libc::SIGTERM);
    assert_eq!(v1.wait()?, Some(0));
    let text = std::fs::read_to_string(&log)?;
    let lines: Vec<&str> = text.lines().collect();
    let expected = [
        "backup",
        "INSTANCE web BACKUP 150",
        "master",
        "INSTANCE web MASTER 150",
        "fault",
        "INSTANCE web FAULT 150",
        "backup",
        "INSTANCE web BACKUP 150",
        "master",
        "INSTANCE web MASTER 150",
        "stop",
        "INSTANCE web STOP 150",
    ];
    let want: Vec<String> = expected.iter().map(|e| format!("{e} uid=65534")).collect();
    assert_eq!(lines, want, "notify log:\n{text}");
    Ok(())
}
