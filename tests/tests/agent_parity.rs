//! keepalived features migrating configurations rely on, with real agents: a sync group
//! whose two VRIDs move together when one member loses its election (and back), and
//! process tracking that follows nginx through the kernel's process events.

use std::process::Child;
use std::time::{Duration, Instant};

use vigil_tests::agent::{Vigil, global, has_address};
use vigil_tests::capture::tshark;
use vigil_tests::{Lab, require_root};

const OUT_VIP: &str = "192.0.2.100";
const IN_VIP: &str = "192.0.2.101";
/// Moves with `inside` but is not advertised (the other family, as keepalived users
/// put it in virtual_ipaddress_excluded).
const EXCLUDED: &str = "2001:db8:5::1";
/// A route and a rule that move with `inside`.
const ROUTE: &str = "198.51.100.0/24";
/// The IPv6 VIP of the virtual-MAC tests.
const VIP6: &str = "2001:db8::100";

/// The (Ethernet source, IP source) pairs of the VRRP adverts in `pcap`, as tshark
/// decodes them.
fn advert_sources(
    pcap: &std::path::Path,
    ip_src: &str,
) -> anyhow::Result<std::collections::BTreeSet<(String, String)>> {
    Ok(tshark(pcap, "vrrp", &["eth.src", ip_src])?
        .into_iter()
        .filter_map(|row| Some((row.first()?.clone(), row.get(1)?.clone())))
        .collect())
}

fn sync_config(a_priority: u8, b_priority: u8, a_extra: &str) -> String {
    format!(
        "[instances.outside]\ninterface = \"eth0\"\nvrid = 51\npriority = {a_priority}\n\
         advert_interval = \"100ms\"\nvirtual_addresses = [\"{OUT_VIP}/24\"]\n{a_extra}\n\
         [instances.inside]\ninterface = \"eth0\"\nvrid = 52\npriority = {b_priority}\n\
         advert_interval = \"100ms\"\nvirtual_addresses = [\"{IN_VIP}/24\"]\n\
         excluded_addresses = [\"{EXCLUDED}/64\"]\n\
         virtual_routes = [\"{ROUTE} dev eth0 table 100\"]\n\
         virtual_rules = [\"from {IN_VIP}/32 priority 1000 table 100\"]\n\n\
         [sync_groups.router]\ninstances = [\"outside\", \"inside\"]\n"
    )
}

/// What the Master of the group holds: both VIPs, the excluded address, the route in
/// table 100 and the rule that points there.
fn holds_all(v: &Vigil) -> anyhow::Result<[bool; 5]> {
    // An empty table does not exist yet, and `ip` says so with an error.
    let routes = v
        .host
        .command("ip")
        .args(["route", "show", "table", "100"])
        .output()?;
    let rules = v.host.exec(&["ip", "rule", "show"])?;
    Ok([
        has_address(&v.host, OUT_VIP),
        has_address(&v.host, IN_VIP),
        has_address(&v.host, EXCLUDED),
        String::from_utf8_lossy(&routes.stdout).contains(ROUTE),
        String::from_utf8_lossy(&rules.stdout).contains(&format!("from {IN_VIP} lookup 100")),
    ])
}

/// Everything on `on`, nothing on `off`, for `hold` (polled): a split would show.
fn held_together(on: &Vigil, off: &Vigil, hold: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + hold;
    loop {
        let (a, b) = (holds_all(on)?, holds_all(off)?);
        anyhow::ensure!(
            a == [true; 5] && b == [false; 5],
            "not all on {} alone (VIPs, excluded, route, rule): {a:?} / {b:?}\n{}\n{}",
            on.host.name,
            on.status_table()?,
            off.status_table()?
        );
        if Instant::now() > end {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_sync_group_moves_both_vrids_together_and_back() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("sync", &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    // lb01 wins both legs (200 to 100) while its uplink check passes; the check fails
    // when the file it watches is gone, and only the outside leg tracks it.
    let flag = dir.join("lb01-uplink");
    std::fs::write(&flag, "")?;
    let track = format!(
        "track_scripts = [\"uplink\"]\n[scripts.uplink]\ncommand = \"test -f {}\"\ninterval = \"100ms\"\n",
        flag.display()
    );
    let v1 = Vigil::start_with(&lb01, &dir, &bpffs, "", &sync_config(200, 200, &track))?;
    let v2 = Vigil::start_with(&lb02, &dir, &bpffs, "", &sync_config(100, 100, ""))?;
    for name in ["outside", "inside"] {
        v1.wait_state(name, "MASTER", Duration::from_secs(5))?;
        v2.wait_state(name, "BACKUP", Duration::from_secs(5))?;
    }
    held_together(&v1, &v2, Duration::from_millis(500))?;
    let status = v1.status()?;
    assert_eq!(status["sync_groups"][0]["group"], "router");
    assert_eq!(status["sync_groups"][0]["state"], "MASTER");
    assert!(
        v1.status_table()?.contains("router"),
        "{}",
        v1.status_table()?
    );

    // The outside leg fails on lb01; the inside leg, healthy and better, follows it.
    std::fs::remove_file(&flag)?;
    let t0 = Instant::now();
    for name in ["outside", "inside"] {
        v2.wait_state(name, "MASTER", Duration::from_secs(5))?;
        v1.wait_state(name, "FAULT", Duration::from_secs(5))?;
    }
    eprintln!("both legs on lb02 {:?} after the file went", t0.elapsed());
    held_together(&v2, &v1, Duration::from_secs(1))?;
    let inside = v1.wait_instance("inside", "FAULT", Duration::from_secs(1), |i| {
        i["state"] == "FAULT"
    })?;
    assert_eq!(
        inside["sync_fault"], "sync group router: outside is FAULT",
        "{inside}"
    );
    assert_eq!(v2.status()?["sync_groups"][0]["state"], "MASTER");
    assert_eq!(v1.status()?["sync_groups"][0]["state"], "FAULT");

    // Back: the check passes, the group leaves FAULT, and lb01 takes both legs again.
    std::fs::write(&flag, "")?;
    for name in ["outside", "inside"] {
        v1.wait_state(name, "MASTER", Duration::from_secs(5))?;
        v2.wait_state(name, "BACKUP", Duration::from_secs(5))?;
    }
    held_together(&v1, &v2, Duration::from_secs(1))?;
    Ok(())
}

/// nginx in `host` with its own configuration (and so its own command line) in `dir`.
fn start_nginx(lab: &Lab, host: &str, dir: &std::path::Path) -> anyhow::Result<Child> {
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx.err;\nworker_processes 1;\n\
             events {{}}\nhttp {{ access_log off; server {{ listen 127.0.0.1:18080; }} }}\n",
            d = dir.display()
        ),
    )?;
    let child = lab
        .host(host)
        .spawn(&["/usr/sbin/nginx", "-c", &conf.to_string_lossy()])?;
    Ok(child)
}

#[test]
fn killing_nginx_on_the_master_moves_the_vip_within_an_interval_plus_the_delay()
-> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("proc", &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let mut nginx = start_nginx(&lab, "lb01", &dir)?;
    // nginx rewrites its command line; the master's names this lab's configuration, so
    // no other nginx on the machine can count.
    let command_line = format!(
        "nginx: master process /usr/sbin/nginx -c {}",
        dir.join("nginx.conf").display()
    );
    let interval = Duration::from_millis(500);
    let delay = Duration::from_millis(300);
    let instance = |priority: u8, state: &str, extra: &str| {
        format!(
            "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
             initial_state = \"{state}\"\nadvert_interval = \"{}ms\"\n\
             virtual_addresses = [\"{OUT_VIP}/24\"]\n{extra}\n",
            interval.as_millis()
        )
    };
    let processes = format!(
        "[processes.nginx]\nname = \"nginx\"\ncommand_line = \"{command_line}\"\n\
         terminate_delay = \"{}ms\"\n",
        delay.as_millis()
    );
    let v1 = Vigil::start(
        &lb01,
        &dir,
        &(global(&lb01, &dir, &bpffs, "")
            + &processes
            + &instance(150, "master", "track_processes = [\"nginx\"]")),
    )?;
    let v2 = Vigil::start_with(&lb02, &dir, &bpffs, "", &instance(100, "backup", ""))?;
    v1.wait_instance(
        "web",
        "MASTER with nginx counted",
        Duration::from_secs(5),
        |i| i["state"] == "MASTER" && i["tracking"]["processes"][0]["status"] == "running",
    )?;
    v2.wait_state("web", "BACKUP", Duration::from_secs(5))?;
    assert!(
        !v1.log_text().contains("no kernel process events"),
        "the proc connector was not used:\n{}",
        v1.log_text()
    );

    // SIGTERM: nginx's fast shutdown, master and worker gone.
    // SAFETY: plain syscall on the pid of the child this test started.
    unsafe { libc::kill(nginx.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    nginx.wait()?;
    v2.wait_state("web", "MASTER", interval + delay + Duration::from_secs(2))?;
    let took = t0.elapsed();
    eprintln!(
        "VIP moved {took:?} after nginx was killed (interval {interval:?} + delay {delay:?})"
    );
    // Fault sends priority 0, so lb02 takes over after Skew_Time, well inside an
    // interval; 150 ms covers the status polling.
    assert!(
        took <= interval + delay + Duration::from_millis(150),
        "took {took:?}"
    );
    assert!(took >= delay, "moved before terminate_delay: {took:?}");
    let i = v1.wait_instance("web", "FAULT", Duration::from_secs(1), |i| {
        i["state"] == "FAULT"
    })?;
    assert!(
        i["fault"]
            .as_str()
            .is_some_and(|f| f.contains("process nginx")),
        "{i}"
    );
    assert!(has_address(&lb02, OUT_VIP) && !has_address(&lb01, OUT_VIP));

    // nginx back: lb01 leaves FAULT and preempts.
    let mut nginx = start_nginx(&lab, "lb01", &dir)?;
    let back = v1.wait_state("web", "MASTER", Duration::from_secs(5));
    // SAFETY: as above.
    unsafe { libc::kill(nginx.id() as i32, libc::SIGTERM) };
    let _ = nginx.wait();
    back?;
    v2.wait_state("web", "BACKUP", Duration::from_secs(2))?;
    Ok(())
}

/// The client's neighbour entry for `vip` (its MAC), after a ping makes one.
fn client_mac_for(client: &vigil_tests::Host, vip: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let _ = client
            .command("ping")
            .args(["-c", "1", "-W", "1", vip])
            .output();
        let out = client.exec(&["ip", "neigh", "show", vip])?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut words = text.split_whitespace();
        if words.any(|w| w == "lladdr")
            && let Some(mac) = words.next()
            && (text.contains("REACHABLE") || text.contains("STALE") || text.contains("DELAY"))
        {
            return Ok(mac.to_string());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no neighbour entry for {vip}: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_virtual_mac_answers_for_the_vip_on_whichever_node_is_master() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("vmac", &["lb01", "lb02", "client"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02, client] = lab.clone_hosts();
    let instance = |priority: u8| {
        format!(
            "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
             advert_interval = \"100ms\"\nvirtual_addresses = [\"{OUT_VIP}/24\"]\nuse_vmac = true\n"
        )
    };
    let capture_path = dir.join("client.pcap");
    let capture =
        vigil_tests::capture::Capture::start(&client, "eth0", "ip proto 112", &capture_path)?;
    let v1 = Vigil::start_with(&lb01, &dir, &bpffs, "", &instance(150))?;
    let mut v2 = Vigil::start_with(&lb02, &dir, &bpffs, "", &instance(100))?;
    v1.wait_state("web", "MASTER", Duration::from_secs(5))?;
    v2.wait_state("web", "BACKUP", Duration::from_secs(5))?;
    // The macvlan exists on both, the VIP only on the Master's, XDP still on eth0.
    for h in [&lb01, &lb02] {
        let link = h.exec(&["ip", "-o", "link", "show", "vrrp.51"])?;
        assert!(
            String::from_utf8_lossy(&link.stdout).contains("00:00:5e:00:01:33"),
            "{}",
            String::from_utf8_lossy(&link.stdout)
        );
        assert!(
            h.xdp_program("eth0")?.is_some(),
            "no XDP program on {}'s eth0",
            h.name
        );
    }
    let addrs = lb01.exec(&["ip", "-o", "addr", "show", "dev", "vrrp.51"])?;
    assert!(String::from_utf8_lossy(&addrs.stdout).contains(OUT_VIP));

    const VMAC: &str = "00:00:5e:00:01:33";
    assert_eq!(client_mac_for(&client, OUT_VIP)?, VMAC);

    // Failover: lb01 stops; the client's entry is still right without learning anew.
    drop(v1);
    v2.wait_state("web", "MASTER", Duration::from_secs(5))?;
    assert!(has_address(&lb02, OUT_VIP));
    let out = client.exec(&["ping", "-c", "1", "-W", "2", OUT_VIP])?;
    assert!(out.status.success());
    assert_eq!(client_mac_for(&client, OUT_VIP)?, VMAC);

    // Adverts came from the virtual MAC (RFC 5798 §7.3), from both nodes in turn.
    std::thread::sleep(Duration::from_millis(300));
    let packets = capture.stop()?;
    let sources: std::collections::BTreeSet<[u8; 6]> = packets
        .iter()
        .filter(|p| p.data.len() > 14)
        .map(|p| {
            let mut m = [0u8; 6];
            m.copy_from_slice(&p.data[6..12]);
            m
        })
        .collect();
    assert_eq!(
        sources.into_iter().collect::<Vec<_>>(),
        vec![[0x00, 0x00, 0x5e, 0x00, 0x01, 0x33]],
        "advert source MACs"
    );
    // tshark agrees: every advert from the virtual MAC, each node from its own address.
    let decoded = advert_sources(&capture_path, "ip.src")?;
    let want: std::collections::BTreeSet<(String, String)> = [&lb01, &lb02]
        .iter()
        .map(|h| (VMAC.to_string(), h.ipv4.to_string()))
        .collect();
    assert_eq!(decoded, want, "adverts as tshark decodes them");

    // vigil removes the interface it made.
    v2.signal(libc::SIGTERM);
    assert_eq!(v2.wait()?, Some(0));
    let gone = lb02
        .command("ip")
        .args(["link", "show", "vrrp.51"])
        .output()?;
    assert!(!gone.status.success(), "vrrp.51 left behind on lb02");
    Ok(())
}

/// FRR's daemons, killed by their PIDs when dropped, with the files they leave in
/// /var/tmp/frr removed.
struct Frr {
    dir: std::path::PathBuf,
    daemons: Vec<(&'static str, Child)>,
}

impl Drop for Frr {
    fn drop(&mut self) {
        for (name, c) in &mut self.daemons {
            let _ = c.kill();
            let _ = c.wait();
            let _ = std::fs::remove_dir_all(format!("/var/tmp/frr/{name}.{}", c.id()));
        }
    }
}

/// FRR's zebra and vrrpd in `host`, configured for VRID 51 at `priority`, the way FRR
/// wants it: its own macvlan `vrrp4-eth0-51` with the virtual MAC holding the address.
fn start_frr(lab: &Lab, host: &vigil_tests::Host, priority: u8) -> anyhow::Result<Frr> {
    start_frr_family(lab, host, priority, false)
}

/// Like [`start_frr`], for IPv4 or (`v6`) IPv6: the macvlan `vrrp6-eth0-51` with
/// 00:00:5e:00:02:33 and a random link-local address of its own, holding the IPv6 VIP.
fn start_frr_family(
    lab: &Lab,
    host: &vigil_tests::Host,
    priority: u8,
    v6: bool,
) -> anyhow::Result<Frr> {
    let dir = lab.dir.join(format!("frr-{}", host.name));
    std::fs::create_dir_all(&dir)?;
    vigil_tests::run(
        std::process::Command::new("chown")
            .args(["frr:frr"])
            .arg(&dir),
    )?;
    for (k, v) in [
        ("net.ipv4.conf.all.arp_ignore", "1"),
        ("net.ipv4.conf.all.arp_announce", "2"),
    ] {
        host.exec(&["sysctl", "-qw", &format!("{k}={v}")])?;
    }
    let (link, mac, vip, prefix, keyword) = if v6 {
        ("vrrp6-eth0-51", "00:00:5e:00:02:33", VIP6, 64, "ipv6")
    } else {
        ("vrrp4-eth0-51", "00:00:5e:00:01:33", OUT_VIP, 24, "ip")
    };
    host.exec(&[
        "ip", "link", "add", link, "link", "eth0", "address", mac, "type", "macvlan", "mode",
        "bridge",
    ])?;
    if v6 {
        host.exec(&["ip", "link", "set", "dev", link, "addrgenmode", "random"])?;
    }
    host.exec(&["ip", "addr", "add", &format!("{vip}/{prefix}"), "dev", link])?;
    host.exec(&["ip", "link", "set", link, "up"])?;
    std::fs::write(dir.join("zebra.conf"), "")?;
    std::fs::write(
        dir.join("vrrpd.conf"),
        format!(
            "interface eth0\n vrrp 51 version 3\n vrrp 51 priority {priority}\n \
             vrrp 51 advertisement-interval 100\n vrrp 51 {keyword} {vip}\n"
        ),
    )?;
    let d = dir.display().to_string();
    let z = format!("{d}/zserv.api");
    let mut frr = Frr {
        dir: dir.clone(),
        daemons: Vec::new(),
    };
    let zebra = host.spawn(&[
        "/usr/lib/frr/zebra",
        "-f",
        &format!("{d}/zebra.conf"),
        "-i",
        &format!("{d}/zebra.pid"),
        "-z",
        &z,
        "--vty_socket",
        &d,
        "-P",
        "0",
    ])?;
    frr.daemons.push(("zebra", zebra));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::path::Path::new(&z).exists() {
        anyhow::ensure!(Instant::now() < deadline, "zebra did not open {z}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let vrrpd = host.spawn(&[
        "/usr/lib/frr/vrrpd",
        "-f",
        &format!("{d}/vrrpd.conf"),
        "-i",
        &format!("{d}/vrrpd.pid"),
        "-z",
        &z,
        "--vty_socket",
        &d,
        "-P",
        "0",
    ])?;
    frr.daemons.push(("vrrpd", vrrpd));
    Ok(frr)
}

/// vrrpd's state for VRID 51 over IPv4 ("Master", "Backup", ...).
fn frr_state(host: &vigil_tests::Host, dir: &std::path::Path) -> String {
    frr_state_of(host, dir, "v4")
}

/// vrrpd's state for VRID 51 in `family` ("v4" or "v6").
fn frr_state_of(host: &vigil_tests::Host, dir: &std::path::Path, family: &str) -> String {
    let out = host
        .command("vtysh")
        .args([
            "--vty_socket",
            &dir.to_string_lossy(),
            "-c",
            "show vrrp 51 json",
        ])
        .output();
    let Ok(out) = out else {
        return String::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let vr = if v.is_array() { &v[0] } else { &v };
    vr[family]["status"].as_str().unwrap_or("").to_string()
}

#[test]
fn frr_vrrpd_and_vigil_share_the_virtual_mac_across_failover() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("frrvmac", &["lb01", "lb02", "client"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02, client] = lab.clone_hosts();
    let frr = start_frr(&lab, &lb02, 100)?;
    let config = format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = 200\n\
         advert_interval = \"100ms\"\nvirtual_addresses = [\"{OUT_VIP}/24\"]\nuse_vmac = true\n"
    );
    let v1 = Vigil::start_with(&lb01, &dir, &bpffs, "", &config)?;
    v1.wait_state("web", "MASTER", Duration::from_secs(5))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while frr_state(&lb02, &frr.dir) != "Backup" {
        anyhow::ensure!(
            Instant::now() < deadline,
            "vrrpd is {:?}, not Backup, with vigil Master",
            frr_state(&lb02, &frr.dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    const VMAC: &str = "00:00:5e:00:01:33";
    assert_eq!(client_mac_for(&client, OUT_VIP)?, VMAC);

    // vigil leaves (priority 0): vrrpd takes over, and the client keeps the same MAC.
    v1.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while frr_state(&lb02, &frr.dir) != "Master" {
        anyhow::ensure!(Instant::now() < deadline, "vrrpd did not take over");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = client.exec(&["ping", "-c", "1", "-W", "2", OUT_VIP])?;
    assert!(out.status.success());
    assert_eq!(client_mac_for(&client, OUT_VIP)?, VMAC);
    Ok(())
}

#[test]
fn an_ipv6_virtual_mac_answers_neighbour_solicitations_across_failover() -> anyhow::Result<()> {
    ipv6_virtual_mac_failover("vmac6", "")
}

/// The same on the raw-socket path: a Backup's private macvlan with the virtual MAC
/// takes the Master's adverts (same source MAC) away from the parent's stack, but the
/// AF_PACKET receive socket on the parent sees them first; no node is deaf.
#[test]
fn an_ipv6_virtual_mac_fails_over_on_the_raw_socket_path_too() -> anyhow::Result<()> {
    ipv6_virtual_mac_failover("vmac6raw", "xdp = \"off\"")
}

fn ipv6_virtual_mac_failover(tag: &str, global_extra: &str) -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new(tag, &["lb01", "lb02", "client"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02, client] = lab.clone_hosts();
    let instance = |priority: u8| {
        format!(
            "[instances.web6]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
             advert_interval = \"100ms\"\nvirtual_addresses = [\"{VIP6}/64\"]\nuse_vmac = true\n"
        )
    };
    let capture_path = dir.join("client6.pcap");
    let capture =
        vigil_tests::capture::Capture::start(&client, "eth0", "ip6 proto 112", &capture_path)?;
    let v1 = Vigil::start_with(&lb01, &dir, &bpffs, global_extra, &instance(150))?;
    let mut v2 = Vigil::start_with(&lb02, &dir, &bpffs, global_extra, &instance(100))?;
    v1.wait_state("web6", "MASTER", Duration::from_secs(5))?;
    v2.wait_state("web6", "BACKUP", Duration::from_secs(5))?;
    // Well past Master_Down_Interval: the Backup hears the Master's adverts.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(v2.state("web6")?, "BACKUP", "{}", v2.log_text());
    assert_eq!(v1.state("web6")?, "MASTER");
    const VMAC6: &str = "00:00:5e:00:02:33";
    // The Backup's macvlan has no link-local address: it cannot speak for itself.
    let ll = lb02.exec(&["ip", "-6", "-o", "addr", "show", "dev", "vrrp.51"])?;
    assert!(
        String::from_utf8_lossy(&ll.stdout).trim().is_empty(),
        "{}",
        String::from_utf8_lossy(&ll.stdout)
    );
    assert_eq!(client_mac_for(&client, VIP6)?, VMAC6);
    drop(v1);
    v2.wait_state("web6", "MASTER", Duration::from_secs(5))?;
    let out = client.exec(&["ping", "-c", "1", "-W", "2", VIP6])?;
    assert!(out.status.success());
    assert_eq!(client_mac_for(&client, VIP6)?, VMAC6);
    // RFC 5798 §7.2: adverts from the virtual MAC, on both nodes in turn, each from its
    // parent's link-local address (keepalived's choice for a virtual MAC).
    std::thread::sleep(Duration::from_millis(300));
    capture.stop()?;
    let decoded = advert_sources(&capture_path, "ipv6.src")?;
    let want: std::collections::BTreeSet<(String, String)> = [&lb01, &lb02]
        .iter()
        .map(|h| Ok((VMAC6.to_string(), h.link_local()?.to_string())))
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(decoded, want, "adverts as tshark decodes them");
    v2.signal(libc::SIGTERM);
    assert_eq!(v2.wait()?, Some(0));
    Ok(())
}

#[test]
fn frr_vrrpd_hears_ipv6_adverts_from_the_virtual_mac_and_takes_over() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("frrvmac6", &["lb01", "lb02", "client"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02, client] = lab.clone_hosts();
    for h in [&lb02, &client] {
        h.exec(&["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"])?;
    }
    let frr = start_frr_family(&lab, &lb02, 100, true)?;
    let capture_path = dir.join("frr6.pcap");
    let capture =
        vigil_tests::capture::Capture::start(&client, "eth0", "ip6 proto 112", &capture_path)?;
    let config = format!(
        "[instances.web6]\ninterface = \"eth0\"\nvrid = 51\npriority = 200\n\
         advert_interval = \"100ms\"\nvirtual_addresses = [\"{VIP6}/64\"]\nuse_vmac = true\n"
    );
    let v1 = Vigil::start_with(&lb01, &dir, &bpffs, "", &config)?;
    v1.wait_state("web6", "MASTER", Duration::from_secs(5))?;
    // vrrpd hears vigil's adverts (from the virtual MAC) and stays Backup.
    let deadline = Instant::now() + Duration::from_secs(10);
    while frr_state_of(&lb02, &frr.dir, "v6") != "Backup" {
        anyhow::ensure!(
            Instant::now() < deadline,
            "vrrpd is {:?}, not Backup, with vigil Master",
            frr_state_of(&lb02, &frr.dir, "v6")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(frr_state_of(&lb02, &frr.dir, "v6"), "Backup");
    assert_eq!(v1.state("web6")?, "MASTER");
    const VMAC6: &str = "00:00:5e:00:02:33";
    assert_eq!(client_mac_for(&client, VIP6)?, VMAC6);

    // vigil leaves (priority 0): vrrpd takes over; the client keeps the same MAC.
    v1.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while frr_state_of(&lb02, &frr.dir, "v6") != "Master" {
        anyhow::ensure!(Instant::now() < deadline, "vrrpd did not take over");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!has_address(&lb01, VIP6), "vigil left its VIP behind");
    let out = client.exec(&["ping", "-c", "1", "-W", "2", VIP6])?;
    assert!(out.status.success());
    assert_eq!(client_mac_for(&client, VIP6)?, VMAC6);
    std::thread::sleep(Duration::from_millis(300));
    capture.stop()?;
    // vigil's adverts on the wire: the virtual MAC, lb01's link-local address.
    let decoded = advert_sources(&capture_path, "ipv6.src")?;
    let vigil_ll = lb01.link_local()?.to_string();
    assert!(
        decoded.contains(&(VMAC6.to_string(), vigil_ll.clone())),
        "no advert from {VMAC6} / {vigil_ll}: {decoded:?}"
    );
    assert!(
        decoded.iter().all(|(mac, _)| mac == VMAC6),
        "an advert from another MAC: {decoded:?}"
    );
    Ok(())
}

#[test]
fn a_lower_priority_advert_makes_the_whole_sync_group_announce_again() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("syncgarp", &["lb01", "client"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, client] = lab.clone_hosts();
    let instance = |name: &str, vrid: u8, vip: &str| {
        format!(
            "[instances.{name}]\ninterface = \"eth0\"\nvrid = {vrid}\npriority = 200\n\
             advert_interval = \"100ms\"\nvirtual_addresses = [\"{vip}/24\"]\n\
             garp_master_repeat = 1\ngarp_master_delay = 0\n\
             garp_lower_prio_repeat = 2\ngarp_lower_prio_delay = 0\n"
        )
    };
    let config = global(&lb01, &dir, &bpffs, "")
        + &instance("outside", 51, OUT_VIP)
        + &instance("inside", 52, IN_VIP)
        + "[sync_groups.router]\ninstances = [\"outside\", \"inside\"]\n";
    let v1 = Vigil::start(&lb01, &dir, &config)?;
    for name in ["outside", "inside"] {
        v1.wait_state(name, "MASTER", Duration::from_secs(5))?;
    }
    // Past the Master's own announcements.
    std::thread::sleep(Duration::from_millis(1000));
    let pcap = dir.join("garp.pcap");
    let cap = vigil_tests::capture::Capture::start(&client, "eth0", "arp", &pcap)?;
    // A router that still thinks itself Master of VRID 51 only, at a lower priority.
    let mut advert = vigil_tests::frames::Advert::v3(client.ipv4, 51, 50);
    advert.src_mac = client.mac("eth0")?;
    advert.addresses = vec![OUT_VIP.parse()?];
    client.send_frames("eth0", &[advert.frame()])?;
    std::thread::sleep(Duration::from_millis(700));
    cap.stop()?;
    // Gratuitous ARPs (sender = target = the VIP) from lb01, per VIP.
    let garps = tshark(
        &pcap,
        "arp && arp.src.proto_ipv4 == arp.dst.proto_ipv4",
        &["arp.src.proto_ipv4"],
    )?;
    let count = |vip: &str| garps.iter().filter(|r| r[0] == vip).count();
    eprintln!("GARPs after the lower-priority advert: {garps:?}");
    // garp_lower_prio_repeat = 2 for the member that heard it, and for its group mate.
    assert_eq!(count(OUT_VIP), 2, "{garps:?}");
    assert_eq!(count(IN_VIP), 2, "{garps:?}");
    for name in ["outside", "inside"] {
        assert_eq!(v1.state(name)?, "MASTER");
    }
    assert!(has_address(&lb01, OUT_VIP) && has_address(&lb01, IN_VIP));
    Ok(())
}

/// One instance holding `IN_VIP`; with `extras`, also the excluded address, the route
/// and the rule of [`holds_all`]'s check.
fn routed(priority: u8, extras: bool) -> String {
    let more = if extras {
        format!(
            "excluded_addresses = [\"{EXCLUDED}/64\"]\n\
             virtual_routes = [\"{ROUTE} dev eth0 table 100\"]\n\
             virtual_rules = [\"from {IN_VIP}/32 priority 1000 table 100\"]\n"
        )
    } else {
        String::new()
    };
    format!(
        "[instances.inside]\ninterface = \"eth0\"\nvrid = 52\npriority = {priority}\n\
         advert_interval = \"100ms\"\nvirtual_addresses = [\"{IN_VIP}/24\"]\n{more}"
    )
}

/// What [`routed`] with extras puts on a Master: the VIP, the excluded address, the
/// route, the rule.
fn holds_routed(v: &Vigil) -> anyhow::Result<[bool; 4]> {
    let [_, vip, excluded, route, rule] = holds_all(v)?;
    Ok([vip, excluded, route, rule])
}

/// The number of transitions `instance` made so far, from its status.
fn transitions(v: &Vigil, instance: &str) -> anyhow::Result<u64> {
    let i = v.instance(instance)?;
    Ok(i["transitions"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["count"].as_u64()).sum())
        .unwrap_or(0))
}

#[test]
fn a_master_killed_with_routes_and_rules_leaves_none_of_them_once_it_restarts_as_backup()
-> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("crashroute", &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let mut v1 = Vigil::start_with(&lb01, &dir, &bpffs, "", &routed(200, true))?;
    let v2 = Vigil::start_with(&lb02, &dir, &bpffs, "", &routed(100, true))?;
    v1.wait_state("inside", "MASTER", Duration::from_secs(5))?;
    v2.wait_state("inside", "BACKUP", Duration::from_secs(5))?;
    assert_eq!(holds_routed(&v1)?, [true; 4]);
    assert_eq!(holds_routed(&v2)?, [false; 4]);

    // The Master dies without a word: everything it added stays in lb01's kernel.
    v1.signal(libc::SIGKILL);
    v1.wait()?;
    v2.wait_state("inside", "MASTER", Duration::from_secs(5))?;
    assert_eq!(holds_routed(&v1)?, [true; 4], "the kill removed something");

    // It comes back lower, as Backup: its record says what it left, and it goes.
    let v1 = Vigil::start_with(&lb01, &dir, &bpffs, "", &routed(50, true))?;
    v1.wait_state("inside", "BACKUP", Duration::from_secs(5))?;
    // Nothing lost: everything on lb02 alone, for a while.
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        let (a, b) = (holds_routed(&v2)?, holds_routed(&v1)?);
        assert!(
            a == [true; 4] && b == [false; 4],
            "VIP, excluded, route, rule: lb02 {a:?}, lb01 {b:?}\n{}",
            v1.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(v1.log_text().contains("removed route"), "{}", v1.log_text());
    Ok(())
}

#[test]
fn a_reload_adds_and_removes_excluded_addresses_routes_and_rules_on_a_master_without_a_transition()
-> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("reloadroute", &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let g1 = global(&lb01, &dir, &bpffs, "");
    let v1 = Vigil::start(&lb01, &dir, &(g1.clone() + &routed(200, false)))?;
    let v2 = Vigil::start_with(&lb02, &dir, &bpffs, "", &routed(100, false))?;
    v1.wait_state("inside", "MASTER", Duration::from_secs(5))?;
    v2.wait_state("inside", "BACKUP", Duration::from_secs(5))?;
    assert_eq!(holds_routed(&v1)?, [true, false, false, false]);
    let (t1, t2) = (transitions(&v1, "inside")?, transitions(&v2, "inside")?);

    for (extras, want) in [(true, [true; 4]), (false, [true, false, false, false])] {
        std::fs::write(&v1.config, g1.clone() + &routed(200, extras))?;
        let reply: serde_json::Value = serde_json::from_str(&v1.request("reload")?)?;
        assert_eq!(
            reply["changed_in_place"],
            serde_json::json!(["inside"]),
            "{reply}"
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        while holds_routed(&v1)? != want {
            anyhow::ensure!(
                Instant::now() < deadline,
                "after the reload lb01 holds {:?}, not {want:?}\n{}",
                holds_routed(&v1)?,
                v1.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        // No transition on either node: the Master stayed Master throughout.
        assert_eq!(v1.state("inside")?, "MASTER");
        assert_eq!(v2.state("inside")?, "BACKUP");
        assert_eq!(transitions(&v1, "inside")?, t1, "{}", v1.log_text());
        assert_eq!(transitions(&v2, "inside")?, t2, "{}", v2.log_text());
        assert_eq!(holds_routed(&v2)?, [false; 4]);
    }
    // use_vmac is not applied in place: the instance restarts, and the reply and the
    // log say so.
    std::fs::write(
        &v1.config,
        g1.clone() + &routed(200, false) + "use_vmac = true\n",
    )?;
    let reply: serde_json::Value = serde_json::from_str(&v1.request("reload")?)?;
    assert_eq!(reply["changed_in_place"], serde_json::json!([]), "{reply}");
    assert!(
        reply["warnings"].to_string().contains("use_vmac changed"),
        "{reply}"
    );
    assert!(v1.log_text().contains("use_vmac changed"));
    v1.wait_state("inside", "MASTER", Duration::from_secs(5))?;
    Ok(())
}

/// A child process killed (by its handle) and reaped when dropped, whatever the test did.
struct Reaped(Child);

impl Reaped {
    fn end(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        self.end();
    }
}

#[test]
fn a_reload_adding_process_tracking_to_a_master_applies_it_without_a_transition()
-> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("reloadproc", &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    // A process with a name of its own: a copy of sleep.
    let program = dir.join("vgtrk-reload");
    std::fs::copy("/bin/sleep", &program)?;
    let mut tracked = Reaped(std::process::Command::new(&program).arg("600").spawn()?);
    let g1 = global(&lb01, &dir, &bpffs, "");
    let v1 = Vigil::start(&lb01, &dir, &(g1.clone() + &routed(200, false)))?;
    let v2 = Vigil::start_with(&lb02, &dir, &bpffs, "", &routed(100, false))?;
    v1.wait_state("inside", "MASTER", Duration::from_secs(5))?;
    v2.wait_state("inside", "BACKUP", Duration::from_secs(5))?;
    let (t1, t2) = (transitions(&v1, "inside")?, transitions(&v2, "inside")?);

    std::fs::write(
        &v1.config,
        g1.clone()
            + &routed(200, false)
            + "track_processes = [{ process = \"p\", weight = 10 }]\n\
               [processes.p]\nname = \"vgtrk-reload\"\n",
    )?;
    let reply: serde_json::Value = serde_json::from_str(&v1.request("reload")?)?;
    let checked = (|| {
        assert_eq!(
            reply["changed_in_place"],
            serde_json::json!(["inside"]),
            "{reply}"
        );
        // The running process counts: 200 + 10, on the same election.
        v1.wait_instance("inside", "priority 210", Duration::from_secs(3), |i| {
            i["effective_priority"] == 210
        })?;
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(v1.state("inside")?, "MASTER");
        assert_eq!(v2.state("inside")?, "BACKUP");
        assert_eq!(transitions(&v1, "inside")?, t1, "{}", v1.log_text());
        assert_eq!(transitions(&v2, "inside")?, t2, "{}", v2.log_text());
        anyhow::Ok(())
    })();
    tracked.end();
    checked?;
    // It goes: the weight goes with it, still without a transition.
    v1.wait_instance("inside", "priority 200", Duration::from_secs(3), |i| {
        i["effective_priority"] == 200
    })?;
    assert_eq!(v1.state("inside")?, "MASTER");
    assert_eq!(transitions(&v1, "inside")?, t1);
    Ok(())
}
