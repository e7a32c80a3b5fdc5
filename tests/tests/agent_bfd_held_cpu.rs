//! A CPU that stops running the BFD thread must not take the session down. Two vigils
//! with BFD at 10 ms x 3 (the peer gives up after 30 ms of silence); the CPU each one's
//! BFD thread is bound to is held, three times for 150 ms, by a real-time busy loop of a
//! higher priority, with the thread kept there (as the scheduler keeps a thread queued
//! on a CPU that stopped: it pulls a woken real-time thread elsewhere only from a CPU
//! running a higher priority, which a stalled host's CPU does not). The standby
//! transmitter on the other CPU must keep the packets flowing: no session goes down, no
//! takeover, and the standby's count says it did the sending.

use std::time::Duration;

use vigil_tests::agent::{Vigil, has_address, start_pair};
use vigil_tests::{Lab, require_root};

const VIP: &str = "192.0.2.100";
const HOLD: Duration = Duration::from_millis(150);

fn instance(priority: u8, state: &str) -> String {
    format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         initial_state = \"{state}\"\nadvert_interval = 1\n\
         virtual_addresses = [\"{VIP}/24\"]\nbfd = {{ interval = \"10ms\", multiplier = 3 }}\n"
    )
}

/// The thread of `pid` named `name`.
fn thread(pid: u32, name: &str) -> Option<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .find(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .and_then(|e| e.file_name().to_str()?.parse().ok())
}

fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: all-zero is an empty set; CPU_SET stays within CPU_SETSIZE (checked).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(c, &mut set);
        }
        set
    }
}

/// The CPUs thread `tid` may run on.
fn affinity(tid: i32) -> Vec<usize> {
    // SAFETY: all-zero is an empty set; plain syscall.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

fn bind(tid: i32, cpus: &[usize]) -> anyhow::Result<()> {
    let set = cpu_set(cpus);
    // SAFETY: plain syscall with a valid set.
    if unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        anyhow::bail!("binding thread {tid}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Holds `cpu` for `HOLD` with a SCHED_FIFO 50 busy loop.
fn hold(cpu: usize) -> anyhow::Result<()> {
    std::thread::spawn(move || -> anyhow::Result<()> {
        bind(0, &[cpu])?;
        let param = libc::sched_param { sched_priority: 50 };
        // SAFETY: plain syscall on this thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
            anyhow::bail!("SCHED_FIFO: {}", std::io::Error::last_os_error());
        }
        let end = std::time::Instant::now() + HOLD;
        while std::time::Instant::now() < end {
            std::hint::spin_loop();
        }
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("hold thread panicked"))?
}

fn session(v: &Vigil) -> serde_json::Value {
    v.status().map(|s| s["bfd"][0].clone()).unwrap_or_default()
}

#[test]
fn a_held_bfd_thread_does_not_take_the_session_down() -> anyhow::Result<()> {
    require_root();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: one CPU, nowhere for a standby transmitter");
        return Ok(());
    }
    let mut lab = Lab::new("bfdcpu", &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let (lb01, lb02) = (lab.host("lb01").clone(), lab.host("lb02").clone());
    let (v1, v2) = start_pair(
        (&lb01, &lb02),
        &dir,
        &bpffs,
        (&instance(150, "master"), &instance(100, "backup")),
    )?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(session(&v1)["state"] == "Up" && session(&v2)["state"] == "Up") {
        assert!(
            std::time::Instant::now() < deadline,
            "sessions not Up:\nlb01 {}\nlb02 {}",
            session(&v1),
            session(&v2)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Settled: the sessions' first packets are behind us.
    std::thread::sleep(Duration::from_millis(500));
    let mut cpus = Vec::new();
    for v in [&v1, &v2] {
        let pid = v.pid().ok_or_else(|| anyhow::anyhow!("no pid"))?;
        let tid = thread(pid, "vigil-bfd").ok_or_else(|| anyhow::anyhow!("no vigil-bfd"))?;
        let cpu = *affinity(tid)
            .first()
            .ok_or_else(|| anyhow::anyhow!("no affinity"))?;
        bind(tid, &[cpu])?;
        cpus.push(cpu);
    }
    cpus.dedup();
    let before = (session(&v1), session(&v2));
    for _ in 0..3 {
        for &cpu in &cpus {
            hold(cpu)?;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let (s1, s2) = (session(&v1), session(&v2));
    for (name, b, s) in [("lb01", &before.0, &s1), ("lb02", &before.1, &s2)] {
        assert_eq!(s["state"], "Up", "{name}: {s}");
        assert_eq!(s["downs"], b["downs"], "{name} went down: {s}");
        let repeated =
            s["standby_sent"].as_u64().unwrap_or(0) - b["standby_sent"].as_u64().unwrap_or(0);
        eprintln!("{name}: the standby sent {repeated} packets while its BFD thread was held");
        assert!(repeated > 0, "{name}: the standby never sent: {s}");
    }
    // Nothing lost: the Master kept its role and the VIP, the Backup did not take over.
    assert_eq!(v1.state("web")?, "MASTER");
    assert_eq!(v2.state("web")?, "BACKUP");
    assert!(has_address(&lb01, VIP) && !has_address(&lb02, VIP));
    Ok(())
}
