//! The classic keepalived load-balancer pair end to end (the configurations in
//! agent/tests/golden/): two load balancers running Debian's nginx on the VIP through
//! nonlocal bind, a backend serving a page, check_web as a track script, a client
//! curling through the VIP; then the dual-master pair.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vigil_tests::agent::{Vigil, global, has_address};
use vigil_tests::{Host, Lab, require_root};

const VIP1: &str = "192.0.2.100";
const VIP2: &str = "192.0.2.101";

/// nginx in a lab host, in its own process group so that "kill nginx" kills the master
/// and its workers at once.
struct Nginx {
    child: Option<Child>,
}

impl Nginx {
    /// Starts nginx in `host` with `http` as the body of its `http {}` block; every
    /// path it writes is under `dir`.
    fn start(host: &Host, dir: &Path, http: &str, port: u16) -> anyhow::Result<Self> {
        let name = &host.name;
        let tmp = dir.join(format!("{name}-nginx"));
        std::fs::create_dir_all(&tmp)?;
        let t = tmp.display();
        let conf = format!(
            "worker_processes 1;\npid {t}/nginx.pid;\nerror_log {t}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  default_type text/plain;\n\
             client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n\
             fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n\
             scgi_temp_path {t}/scgi;\n{http}\n}}\n"
        );
        let path = tmp.join("nginx.conf");
        std::fs::write(&path, conf)?;
        let log = std::fs::File::create(tmp.join("stderr.log"))?;
        let child = host
            .command("nginx")
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg(tmp.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting nginx")?;
        let mut n = Self { child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = host.exec(&["ss", "-ltnH", &format!("sport = :{port}")])?;
            if !out.stdout.is_empty() {
                return Ok(n);
            }
            if let Some(c) = &mut n.child
                && let Some(st) = c.try_wait()?
            {
                bail!(
                    "nginx in {name} exited with {st}: {}",
                    std::fs::read_to_string(tmp.join("error.log")).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("nginx in {name} does not listen on :{port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL to the master and its workers.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain syscall on our child's process group.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The reverse proxy, with a header naming the balancer that answered.
fn lb_http(name: &str, backend: &Host, vips: &[&str]) -> String {
    let listen: String = vips
        .iter()
        .map(|v| format!("    listen {v}:80;\n"))
        .collect();
    format!(
        "  upstream noble {{ server {}:8080; }}\n  server {{\n{listen}    server_name www.noble.org;\n\
         \x20   add_header X-LB {name};\n    location / {{\n      proxy_pass http://noble;\n\
         \x20     proxy_set_header host $host;\n      proxy_set_header X-Forwarded-For $remote_addr;\n\
         \x20   }}\n  }}",
        backend.ipv4
    )
}

/// The backend: a page from a file.
fn start_backend(web: &Host, dir: &Path) -> anyhow::Result<Nginx> {
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("index.html"), "hello from web01\n")?;
    std::fs::set_permissions(&www, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    Nginx::start(
        web,
        dir,
        &format!(
            "  server {{ listen {}:8080; root {}; index index.html; }}",
            web.ipv4,
            www.display()
        ),
        8080,
    )
}

/// check_web: nginx alive → exit 0. The original counts `ps -ef | grep
/// [n]ginx`; every lab namespace shares one process table, so this node's nginx is
/// found by its pid file instead.
fn check_web(dir: &Path, name: &str, pid_file: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}-check_web.sh"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\npid=$(cat {} 2>/dev/null) || exit 1\nkill -0 \"$pid\" 2>/dev/null\n",
            pid_file.display()
        ),
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// One `curl` through a VIP from the client: the balancer that answered, if the page came.
fn curl(client: &Host, vip: &str) -> Option<String> {
    let out = client
        .command("curl")
        .args([
            "-s",
            "-i",
            "--connect-timeout",
            "0.5",
            "-m",
            "1",
            &format!("http://{vip}/"),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("hello from web01") {
        return None;
    }
    text.lines()
        .find_map(|l| l.strip_prefix("X-LB: "))
        .map(|s| s.trim().to_owned())
}

/// One request through the VIP: when it started, and which balancer answered.
type Sample = (Instant, Option<String>);

/// Timers of one run of the scenario.
struct Timers {
    version: u8,
    advert: &'static str,
    check_interval: &'static str,
}

fn nginx_failover(tag: &str, t: &Timers) -> anyhow::Result<Duration> {
    require_root();
    let mut lab = Lab::new(tag, &["lb01", "lb02", "web01", "client"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02, web01, client] = lab.clone_hosts();
    let _backend = start_backend(&web01, &dir)?;
    let pid = |h: &Host| dir.join(format!("{}-nginx/nginx.pid", h.name));
    let auth = if t.version == 2 {
        "auth_pass = \"1111\"\n"
    } else {
        ""
    };
    let config = |h: &Host, priority: u8, state: &str| -> anyhow::Result<String> {
        let check = check_web(&dir, &h.name, &pid(h))?;
        Ok(global(h, &dir, &bpffs, "nonlocal_bind = true")
            + &format!(
                "[scripts.check_web]\ncommand = \"{}\"\ninterval = \"{}\"\nweight = -60\n\
                 [instances.gorup01]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
                 initial_state = \"{state}\"\nversion = {}\nadvert_interval = \"{}\"\n{auth}\
                 virtual_addresses = [\"{VIP1}/24 dev eth0 label eth0:1\"]\n\
                 track_scripts = [\"check_web\"]\n",
                check.display(),
                t.check_interval,
                t.version,
                t.advert
            ))
    };
    // vigil first: it sets ip_nonlocal_bind in its namespace, so nginx can bind the VIP
    // on the node that does not hold it.
    let v1 = Vigil::start(&lb01, &dir, &config(&lb01, 150, "master")?)?;
    let v2 = Vigil::start(&lb02, &dir, &config(&lb02, 100, "backup")?)?;
    for h in [&lb01, &lb02] {
        let out = h.exec(&["cat", "/proc/sys/net/ipv4/ip_nonlocal_bind"])?;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "1",
            "{}",
            h.name
        );
    }
    let mut nginx1 = Nginx::start(&lb01, &dir, &lb_http("lb01", &web01, &[VIP1]), 80)?;
    let _nginx2 = Nginx::start(&lb02, &dir, &lb_http("lb02", &web01, &[VIP1]), 80)?;
    assert!(
        !has_address(&lb02, VIP1),
        "lb02's nginx listens on a VIP it does not hold"
    );
    v1.wait_instance("gorup01", "MASTER at 150", Duration::from_secs(8), |i| {
        i["state"] == "MASTER" && i["effective_priority"] == 150
    })?;
    v2.wait_state("gorup01", "BACKUP", Duration::from_secs(3))?;
    assert_eq!(curl(&client, VIP1).as_deref(), Some("lb01"));

    // The client keeps asking through the VIP while nginx dies on the master.
    let results: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let curler = {
        let (results, stop, client) = (results.clone(), stop.clone(), client.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                let r = curl(&client, VIP1);
                if let Ok(mut v) = results.lock() {
                    v.push((at, r));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    nginx1.kill();
    v2.wait_state("gorup01", "MASTER", Duration::from_secs(15))?;
    let moved = killed.elapsed();
    v1.wait_instance("gorup01", "BACKUP at 90", Duration::from_secs(3), |i| {
        i["state"] == "BACKUP" && i["effective_priority"] == 90
    })?;
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    curler.join().map_err(|_| anyhow::anyhow!("curl thread"))?;
    let results = results.lock().map_err(|_| anyhow::anyhow!("lock"))?.clone();

    // The outage: from the first failed request to the first one answered again.
    let first_fail = results
        .iter()
        .position(|r| r.1.is_none())
        .context("no request failed at all")?;
    let back = results[first_fail..]
        .iter()
        .position(|r| r.1.is_some())
        .map(|p| p + first_fail)
        .context("the VIP never answered again")?;
    let outage = results[back].0.duration_since(results[first_fail].0);
    let failed = results.iter().filter(|r| r.1.is_none()).count();
    let before = results[..first_fail]
        .iter()
        .all(|r| r.1.as_deref() == Some("lb01"));
    let after = results[back..]
        .iter()
        .all(|r| r.1.as_deref() == Some("lb02"));
    eprintln!(
        "seed nginx failover (VRRPv{} adverts {}, check_web every {}): VIP moved {moved:?} \
         after nginx died; curl through the VIP failed for {outage:?} ({failed} of {} requests \
         failed, all within that window)",
        t.version,
        t.advert,
        t.check_interval,
        results.len()
    );
    assert!(
        before,
        "a request failed or went elsewhere before nginx was killed"
    );
    assert!(after, "requests failed or went to lb01 after the VIP moved");
    assert_eq!(failed, back - first_fail, "failures outside one window");
    assert!(results[first_fail].0 >= killed - Duration::from_millis(100));
    assert!(has_address(&lb02, VIP1) && !has_address(&lb01, VIP1));
    Ok(outage)
}

#[test]
fn seed_nginx_failover_with_the_seeds_timers() -> anyhow::Result<()> {
    // §2/§5: VRRPv2, PASS 1111, advert_int 1, check_web every 2 s.
    let outage = nginx_failover(
        "seedslow",
        &Timers {
            version: 2,
            advert: "1s",
            check_interval: "2s",
        },
    )?;
    // Detection (≤ one check interval) + Master_Down_Interval (3 × 1 s + skew) + slack.
    assert!(outage < Duration::from_secs(7), "{outage:?}");
    Ok(())
}

#[test]
fn seed_nginx_failover_at_100ms() -> anyhow::Result<()> {
    let outage = nginx_failover(
        "seedfast",
        &Timers {
            version: 3,
            advert: "100ms",
            check_interval: "100ms",
        },
    )?;
    assert!(outage < Duration::from_millis(1500), "{outage:?}");
    Ok(())
}

#[test]
fn seed_dual_master_one_vip_per_node_and_the_survivor_holds_both() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("seeddual", &["lb01", "lb02", "web01", "client"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02, web01, client] = lab.clone_hosts();
    let _backend = start_backend(&web01, &dir)?;
    // §6: each node master of one group, backup of the other.
    let group = |name: &str, vrid: u8, priority: u8, state: &str, vip: &str| {
        format!(
            "[instances.{name}]\ninterface = \"eth0\"\nvrid = {vrid}\npriority = {priority}\n\
             initial_state = \"{state}\"\nversion = 2\nadvert_interval = 1\nauth_pass = \"1111\"\n\
             virtual_addresses = [\"{vip}/24 dev eth0 label eth0:1\"]\n"
        )
    };
    let v1 = Vigil::start(
        &lb01,
        &dir,
        &(global(&lb01, &dir, &bpffs, "nonlocal_bind = true")
            + &group("gorup01", 51, 150, "master", VIP1)
            + &group("gorup02", 52, 100, "backup", VIP2)),
    )?;
    let v2 = Vigil::start(
        &lb02,
        &dir,
        &(global(&lb02, &dir, &bpffs, "nonlocal_bind = true")
            + &group("gorup01", 51, 100, "backup", VIP1)
            + &group("gorup02", 52, 150, "master", VIP2)),
    )?;
    let _n1 = Nginx::start(&lb01, &dir, &lb_http("lb01", &web01, &[VIP1, VIP2]), 80)?;
    let _n2 = Nginx::start(&lb02, &dir, &lb_http("lb02", &web01, &[VIP1, VIP2]), 80)?;
    v1.wait_state("gorup01", "MASTER", Duration::from_secs(8))?;
    v2.wait_state("gorup02", "MASTER", Duration::from_secs(8))?;
    v1.wait_state("gorup02", "BACKUP", Duration::from_secs(3))?;
    v2.wait_state("gorup01", "BACKUP", Duration::from_secs(3))?;
    assert!(has_address(&lb01, VIP1) && !has_address(&lb01, VIP2));
    assert!(has_address(&lb02, VIP2) && !has_address(&lb02, VIP1));
    assert_eq!(curl(&client, VIP1).as_deref(), Some("lb01"));
    assert_eq!(curl(&client, VIP2).as_deref(), Some("lb02"));

    // Cut lb01 off: lb02 holds both, and both VIPs answer through it.
    lab.set_link("lb01", false)?;
    let t0 = Instant::now();
    v2.wait_state("gorup01", "MASTER", Duration::from_secs(8))?;
    eprintln!(
        "dual master: lb02 took gorup01 over {:?} after lb01 was cut",
        t0.elapsed()
    );
    assert!(has_address(&lb02, VIP1) && has_address(&lb02, VIP2));
    let deadline = Instant::now() + Duration::from_secs(5);
    while curl(&client, VIP1).as_deref() != Some("lb02") {
        if Instant::now() > deadline {
            bail!("VIP1 does not answer through lb02");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(curl(&client, VIP2).as_deref(), Some("lb02"));

    // Back: lb01 preempts its group again, lb02 keeps its own.
    lab.set_link("lb01", true)?;
    v2.wait_state("gorup01", "BACKUP", Duration::from_secs(8))?;
    v1.wait_state("gorup01", "MASTER", Duration::from_secs(3))?;
    assert_eq!(v2.state("gorup02")?, "MASTER");
    assert!(has_address(&lb01, VIP1) && has_address(&lb02, VIP2) && !has_address(&lb02, VIP1));
    Ok(())
}
