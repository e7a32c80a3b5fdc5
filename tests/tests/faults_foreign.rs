//! The fault matrix, someone else's hand on vigil's state: addresses removed from a Master
//! by `ip addr del` or `ip addr flush`, the virtual MAC interface deleted. "Nothing lost" as in `faults.rs`: after
//! convergence exactly one node holds the VIP at every sample, none is orphaned, no
//! instance is deaf. Pairs run 100 ms adverts.

use std::time::Duration;

use vigil_tests::agent::Vigil;
use vigil_tests::invariant::VipWatch;
use vigil_tests::{Host, Lab, require_root};

const VIP: &str = "192.0.2.100";
const HOLD: Duration = Duration::from_millis(1500);

fn instance_with(priority: u8, state: &str, extra: &str) -> String {
    format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         initial_state = \"{state}\"\nadvert_interval = \"100ms\"\n\
         virtual_addresses = [\"{VIP}/24 dev eth0\"]\n\
         virtual_routes = [\"198.51.100.0/24 via 192.0.2.1 dev eth0 table 100\"]\n{extra}"
    )
}

struct Pair {
    _lab: Lab,
    lb01: Host,
    lb02: Host,
    v1: Vigil,
    v2: Vigil,
}

/// lb01 (150) Master, lb02 (100) Backup.
fn pair(tag: &str) -> anyhow::Result<Pair> {
    pair_with(tag, "")
}

/// lb01 (150) Master, lb02 (100) Backup, with `extra` in both instances.
fn pair_with(tag: &str, extra: &str) -> anyhow::Result<Pair> {
    require_root();
    let mut lab = Lab::new(tag, &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let v1 = Vigil::start_with(
        &lb01,
        &dir,
        &bpffs,
        "",
        &instance_with(150, "master", extra),
    )?;
    let v2 = Vigil::start_with(
        &lb02,
        &dir,
        &bpffs,
        "",
        &instance_with(100, "backup", extra),
    )?;
    v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    Ok(Pair {
        _lab: lab,
        lb01,
        lb02,
        v1,
        v2,
    })
}

impl Pair {
    fn watch(&self) -> VipWatch {
        VipWatch::start(&[self.lb01.clone(), self.lb02.clone()], VIP)
    }
}

fn transitions(v: &Vigil) -> u64 {
    v.instance("web")
        .map(|i| {
            i["transitions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["count"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

fn has_route(h: &Host) -> anyhow::Result<bool> {
    let out = h.exec(&["ip", "route", "show", "table", "100"])?;
    Ok(String::from_utf8_lossy(&out.stdout).contains("198.51.100.0/24"))
}

/// `ip addr del` of the VIP on the Master, three times: vigil puts it back within a
/// second each time, says so, and nobody
/// changes state. Before, the VIP stayed gone while the Master kept advertising: held
/// by no node, for good.
#[test]
fn vip_deleted_on_the_master_is_put_back() -> anyhow::Result<()> {
    let p = pair("ff-del")?;
    let before = (transitions(&p.v1), transitions(&p.v2));
    let watch = p.watch();
    for round in 1..=3u64 {
        p.lb01
            .exec(&["ip", "addr", "del", &format!("{VIP}/24"), "dev", "eth0"])?;
        let from = watch.converged(Duration::from_secs(3))?;
        let n = watch.exactly_one_from(from, HOLD, "lb01")?;
        eprintln!("round {round}: {n} samples after convergence, only lb01 holding {VIP}");
        let i = p.v1.instance("web")?;
        assert_eq!(i["restored_while_master"], round, "{i}");
    }
    assert_eq!(
        (transitions(&p.v1), transitions(&p.v2)),
        before,
        "a node changed state"
    );
    let log = p.v1.log_text();
    assert!(
        log.contains("192.0.2.100/24 was removed from eth0 while this node is MASTER"),
        "{log}"
    );
    Ok(())
}

/// `ip addr flush dev eth0` on the Master takes its advert source with the VIP: it
/// cannot advertise, so it goes to FAULT and lb02 alone takes the VIP; when the address
/// is back, lb01 starts again and preempts. Before, lb01 stayed MASTER sending nothing
/// (a warning every advert interval) while lb02 took over, and when the address came
/// back lb02 yielded to lb01, which had no VIP: held by nobody.
#[test]
fn flush_on_the_master_fails_over_and_back() -> anyhow::Result<()> {
    let p = pair("ff-flush")?;
    let watch = p.watch();
    p.lb01.exec(&["ip", "addr", "flush", "dev", "eth0"])?;
    p.v1.wait_state("web", "FAULT", Duration::from_secs(3))?;
    p.v2.wait_state("web", "MASTER", Duration::from_secs(3))?;
    let from = watch.converged(Duration::from_secs(3))?;
    let n = watch.exactly_one_from(from, HOLD, "lb02")?;
    eprintln!("{n} samples with only lb02 holding {VIP} while lb01 has no address");
    assert!(
        p.v1.log_text()
            .contains("advert source 192.0.2.11 left eth0; waiting in FAULT"),
        "{}",
        p.v1.log_text()
    );
    p.lb01
        .exec(&["ip", "addr", "add", "192.0.2.11/24", "dev", "eth0"])?;
    p.v1.wait_state("web", "MASTER", Duration::from_secs(5))?;
    p.v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    let from = watch.converged(Duration::from_secs(3))?;
    let n = watch.exactly_one_from(from, HOLD, "lb01")?;
    eprintln!("{n} samples with only lb01 holding {VIP} after its address came back");
    assert!(has_route(&p.lb01)? && !has_route(&p.lb02)?);
    Ok(())
}

/// `ip link del vrrp.51` on the Master, the virtual MAC interface vigil made for
/// `use_vmac` and that holds the VIP: the instance goes to FAULT (lb02 takes over),
/// makes the interface again and preempts back. Before, it stayed MASTER without the
/// interface, its adverts failing, and could never hold the VIP again until restarted.
#[test]
fn vmac_interface_deleted_on_the_master_is_made_again() -> anyhow::Result<()> {
    let p = pair_with("ff-vmac", "use_vmac = true\n")?;
    let vmac_index = p.lb01.ifindex("vrrp.51")?;
    let watch = p.watch();
    p.lb01.exec(&["ip", "link", "del", "vrrp.51"])?;
    vigil_tests::wait_for("lb01 to park the instance", Duration::from_secs(3), || {
        p.v1.log_text()
            .contains("virtual MAC interface vrrp.51 was removed; waiting in FAULT")
            .then_some(())
    });
    p.v1.wait_state("web", "MASTER", Duration::from_secs(5))?;
    p.v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    let from = watch.converged(Duration::from_secs(3))?;
    let n = watch.exactly_one_from(from, HOLD, "lb01")?;
    eprintln!("{n} samples with only lb01 holding {VIP} after vrrp.51 was made again");
    let again = p.lb01.ifindex("vrrp.51")?;
    assert_ne!(again, vmac_index, "vrrp.51 is not a new interface");
    let out = p.lb01.exec(&["ip", "-br", "addr", "show", "vrrp.51"])?;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(VIP),
        "VIP not on the new vrrp.51"
    );
    // The VIP went with the interface: there was nothing to fail to remove.
    let log = p.v1.log_text();
    assert!(!log.contains("ERROR"), "{log}");
    Ok(())
}

/// The bpf_link ids that attach program `prog` (`bpftool link show`; links are not
/// per namespace, program ids are unique).
fn links_of(prog: u64) -> anyhow::Result<Vec<u64>> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "link", "show"])
        .output()?;
    let links: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(links
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["prog_id"].as_u64() == Some(prog))
        .filter_map(|l| l["id"].as_u64())
        .collect())
}

/// The id of the XDP program on `host`'s eth0.
fn xdp_prog_id(host: &Host) -> anyhow::Result<Option<u64>> {
    let out = host.exec(&["ip", "-j", "-d", "link", "show", "dev", "eth0"])?;
    let link: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(link[0]["xdp"]["prog"]["id"].as_u64())
}

/// `bpftool link detach` of the Backup's XDP link (the kernel refuses `ip link set xdp
/// off` on a bpf_link, not this): vigil finds its program gone within a second and
/// attaches it again; the Backup hears the Master again and stays (or goes back to)
/// Backup. Before, it was deaf for good: it took the VIP as well and kept it.
#[test]
fn xdp_link_detached_on_the_backup_is_attached_again() -> anyhow::Result<()> {
    let p = pair("ff-xdpdet")?;
    let prog = xdp_prog_id(&p.lb02)?.ok_or_else(|| anyhow::anyhow!("no XDP on lb02"))?;
    let links = links_of(prog)?;
    assert_eq!(links.len(), 1, "links of program {prog}: {links:?}");
    let watch = p.watch();
    let out = std::process::Command::new("bpftool")
        .args(["link", "detach", "id", &links[0].to_string()])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        xdp_prog_id(&p.lb02)?,
        None,
        "detach left the program on eth0"
    );
    vigil_tests::wait_for("lb02 to attach again", Duration::from_secs(3), || {
        (xdp_prog_id(&p.lb02).ok().flatten() == Some(prog)).then_some(())
    });
    p.v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    p.v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    let from = watch.converged(Duration::from_secs(3))?;
    let n = watch.exactly_one_from(from, HOLD, "lb01")?;
    eprintln!("{n} samples with only lb01 holding {VIP} after lb02's XDP came back");
    assert!(
        p.v2.log_text().contains(
            "vigil's XDP program was detached from eth0 (no program there now): attached again"
        ),
        "{}",
        p.v2.log_text()
    );
    Ok(())
}
