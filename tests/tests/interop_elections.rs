//! Elections with peers we did not write, in one segment: vigil, Debian's keepalived and
//! FRR's vrrpd for the same VRID, judged on the wire (a capture on a fourth host: which
//! sources advertise once things settle).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vigil_tests::agent::{Keepalived, Vigil, adverts, global, has_address};
use vigil_tests::capture::{Capture, read_pcap};
use vigil_tests::vrrpd::Vrrpd;
use vigil_tests::{Host, Lab, require_root};

const VIP: &str = "192.0.2.100";

fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// (time, source, priority) of every VRRP advert the capture at `pcap` holds so far.
fn seen(pcap: &Path) -> Vec<(u64, IpAddr, u8)> {
    read_pcap(pcap).map(|p| adverts(&p)).unwrap_or_default()
}

/// The (source, priority) pairs advertised since `from` (realtime ns).
fn sources_since(pcap: &Path, from: u64) -> BTreeSet<(IpAddr, u8)> {
    seen(pcap)
        .into_iter()
        .filter(|(t, _, _)| *t >= from)
        .map(|(_, s, p)| (s, p))
        .collect()
}

/// Waits until, over the last `window`, only `master` advertised (at `priority`), then
/// holds for `hold` and checks that nobody else advertised in it: exactly one Master on
/// the wire at this settled point.
fn settled_on(
    pcap: &Path,
    master: IpAddr,
    priority: u8,
    window: Duration,
    within: Duration,
    hold: Duration,
) -> anyhow::Result<()> {
    let want: BTreeSet<(IpAddr, u8)> = [(master, priority)].into();
    let deadline = Instant::now() + within;
    loop {
        let from = realtime_ns().saturating_sub(window.as_nanos() as u64);
        let got = sources_since(pcap, from);
        if got == want {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not settled on {master} at {priority} within {within:?}: last {window:?} saw {got:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let from = realtime_ns();
    std::thread::sleep(hold);
    let got = sources_since(pcap, from);
    anyhow::ensure!(
        got == want,
        "settled on {master}, then in {hold:?} the wire saw {got:?}"
    );
    Ok(())
}

fn ka_conf(priority: u8, extra: &str) -> String {
    format!(
        "global_defs {{\n router_id ka\n}}\nvrrp_instance web {{\n state BACKUP\n interface eth0\n \
         virtual_router_id 51\n priority {priority}\n version 3\n advert_int 0.1\n {extra}\n \
         virtual_ipaddress {{\n {VIP}/24 dev eth0\n }}\n}}\n"
    )
}

fn vigil_instance(priority: u8, interval: &str, extra: &str) -> String {
    format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         version = 3\nadvert_interval = \"{interval}\"\n{extra}\n\
         virtual_addresses = [\"{VIP}/24 dev eth0\"]\n"
    )
}

fn frr_lines(priority: u8, interval_ms: u32, extra: &str) -> String {
    format!(
        " vrrp 51 version 3\n vrrp 51 priority {priority}\n \
         vrrp 51 advertisement-interval {interval_ms}\n vrrp 51 ip {VIP}\n{extra}"
    )
}

fn start_vigil(host: &Host, dir: &Path, bpffs: &Path, instance: &str) -> anyhow::Result<Vigil> {
    Vigil::start(host, dir, &(global(host, dir, bpffs, "") + instance))
}

fn capture(lab: &Lab, host: &str) -> anyhow::Result<(Capture, PathBuf)> {
    let path = lab.dir.join(format!("{host}.pcap"));
    let c = Capture::start(
        lab.host(host),
        "eth0",
        "ip proto 112 or ip6 proto 112",
        &path,
    )?;
    Ok((c, path))
}

/// vigil (200), keepalived (150) and vrrpd (100) for VRID 51: the highest is Master; it
/// dies and the next takes over, then the next; each comes back and preempts in turn;
/// at every settled point exactly one of them advertises.
#[test]
fn three_implementations_elect_one_master_through_deaths_and_returns() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("el3", &["lb01", "lb02", "lb03", "watch"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02, lb03] = lab.clone_hosts();
    let (cap, pcap) = capture(&lab, "watch")?;
    let frr = Vrrpd::start(
        &lb03,
        &dir,
        51,
        false,
        &[&format!("{VIP}/24")],
        &frr_lines(100, 100, ""),
    )?;
    let ka = Keepalived::start(&lb02, &dir, &ka_conf(150, ""))?;
    let mut v = start_vigil(&lb01, &dir, &bpffs, &vigil_instance(200, "100ms", ""))?;
    let (a1, a2, a3) = (
        IpAddr::from(lb01.ipv4),
        IpAddr::from(lb02.ipv4),
        IpAddr::from(lb03.ipv4),
    );
    let hold = Duration::from_millis(1000);
    let window = Duration::from_millis(600);
    settled_on(&pcap, a1, 200, window, Duration::from_secs(8), hold)?;
    assert!(has_address(&lb01, VIP) && !has_address(&lb02, VIP));
    frr.wait_state(51, "v4", "Backup", Duration::from_secs(1))?;

    // vigil dies without a word: keepalived takes over.
    v.signal(libc::SIGKILL);
    v.wait()?;
    settled_on(&pcap, a2, 150, window, Duration::from_secs(3), hold)?;
    frr.wait_state(51, "v4", "Backup", Duration::from_secs(1))?;
    assert!(has_address(&lb02, VIP));
    // keepalived's link goes: vrrpd takes over.
    lab.set_link("lb02", false)?;
    settled_on(&pcap, a3, 100, window, Duration::from_secs(3), hold)?;
    frr.wait_state(51, "v4", "Master", Duration::from_secs(1))?;
    // keepalived comes back and preempts vrrpd.
    lab.set_link("lb02", true)?;
    settled_on(&pcap, a2, 150, window, Duration::from_secs(3), hold)?;
    frr.wait_state(51, "v4", "Backup", Duration::from_secs(1))?;
    // vigil restarts (it left its address behind when killed) and preempts keepalived.
    v.spawn()?;
    settled_on(&pcap, a1, 200, window, Duration::from_secs(6), hold)?;
    v.wait_state("web", "MASTER", Duration::from_secs(1))?;
    assert!(has_address(&lb01, VIP));
    assert!(!has_address(&lb02, VIP), "keepalived kept the VIP");
    frr.wait_state(51, "v4", "Backup", Duration::from_secs(1))?;
    drop(ka);
    drop(cap.stop()?);
    Ok(())
}

/// The gap on the wire between `peer`'s last advert before `mark` plus slack and the
/// first advert from `taker` after it.
fn takeover_gap(
    pcap: &Path,
    peer: IpAddr,
    taker: IpAddr,
    after: u64,
) -> anyhow::Result<(Duration, u8)> {
    let s = seen(pcap);
    let first = s
        .iter()
        .find(|(t, src, p)| *t >= after && *src == taker && *p != 0)
        .ok_or_else(|| anyhow::anyhow!("no advert from {taker} after the peer stopped: {s:?}"))?;
    let last = s
        .iter()
        .filter(|(t, src, _)| *src == peer && *t < first.0)
        .last()
        .ok_or_else(|| anyhow::anyhow!("no advert from {peer}"))?;
    Ok((Duration::from_nanos(first.0 - last.0), last.2))
}

/// vrrpd Master advertising every `frr_ms`, vigil Backup configured at `vigil_interval`:
/// vigil learns the Master's interval (RFC 5798 §6.4.2) and takes over after
/// 3 × that + Skew_Time once vrrpd dies; returns the gap on the wire.
fn learned_interval(tag: &str, frr_ms: u32, vigil_interval: &str) -> anyhow::Result<Duration> {
    let mut lab = Lab::new(tag, &["lb01", "lb02", "watch"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let (cap, pcap) = capture(&lab, "watch")?;
    let mut frr = Vrrpd::start(
        &lb02,
        &dir,
        51,
        false,
        &[&format!("{VIP}/24")],
        &frr_lines(200, frr_ms, ""),
    )?;
    frr.wait_state(51, "v4", "Master", Duration::from_secs(8))?;
    let v = start_vigil(
        &lb01,
        &dir,
        &bpffs,
        &vigil_instance(100, vigil_interval, ""),
    )?;
    v.wait_state("web", "BACKUP", Duration::from_secs(2))?;
    // Long past any Master_Down_Interval vigil could compute from its own interval.
    std::thread::sleep(Duration::from_millis(u64::from(frr_ms) * 5).max(Duration::from_secs(3)));
    assert_eq!(v.state("web")?, "BACKUP", "{}", v.log_text());
    let st = v.instance("web")?;
    println!("status: {st}");
    let mark = realtime_ns();
    frr.stop_vrrpd(libc::SIGKILL);
    v.wait_state(
        "web",
        "MASTER",
        Duration::from_millis(u64::from(frr_ms) * 5),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    drop(cap.stop()?);
    let (gap, _) = takeover_gap(&pcap, lb02.ipv4.into(), lb01.ipv4.into(), mark)?;
    println!("{tag}: takeover gap {gap:?}");
    Ok(gap)
}

#[test]
fn a_backup_at_100ms_learns_a_1s_master_interval() -> anyhow::Result<()> {
    require_root();
    let gap = learned_interval("ellrn1", 1000, "100ms")?;
    // 3 × 1 s + (256 - 100) / 256 × 1 s = 3.609 s.
    assert!(
        gap >= Duration::from_millis(3550) && gap <= Duration::from_millis(3900),
        "{gap:?}"
    );
    Ok(())
}

#[test]
fn a_backup_at_1s_learns_a_100ms_master_interval() -> anyhow::Result<()> {
    require_root();
    let gap = learned_interval("ellrn2", 100, "1s")?;
    // 3 × 100 ms + 156/256 × 100 ms = 360.9 ms.
    assert!(
        gap >= Duration::from_millis(340) && gap <= Duration::from_millis(600),
        "{gap:?}"
    );
    Ok(())
}

/// Equal priorities: the higher primary address wins (RFC 5798 §6.4.3).
#[test]
fn equal_priorities_the_higher_address_wins_against_keepalived_and_vrrpd() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("eltie", &["lb01", "lb02", "lb03", "watch"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02, lb03] = lab.clone_hosts();
    let (cap, pcap) = capture(&lab, "watch")?;
    let hold = Duration::from_millis(1000);
    let window = Duration::from_millis(600);
    // keepalived (.11) first: Master alone.
    let ka = Keepalived::start(&lb01, &dir, &ka_conf(100, ""))?;
    settled_on(
        &pcap,
        lb01.ipv4.into(),
        100,
        window,
        Duration::from_secs(8),
        hold,
    )?;
    // vigil (.12) comes as Master-to-be? No: a Backup hearing an equal priority stays Backup.
    let v = start_vigil(&lb02, &dir, &bpffs, &vigil_instance(100, "100ms", ""))?;
    v.wait_state("web", "BACKUP", Duration::from_secs(2))?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        v.state("web")?,
        "BACKUP",
        "vigil preempted an equal priority"
    );
    // keepalived's link goes: vigil takes over; when the link comes back both are
    // Master for a moment and the higher address (vigil's) must stay.
    lab.set_link("lb01", false)?;
    v.wait_state("web", "MASTER", Duration::from_secs(2))?;
    lab.set_link("lb01", true)?;
    settled_on(
        &pcap,
        lb02.ipv4.into(),
        100,
        window,
        Duration::from_secs(3),
        hold,
    )?;
    assert!(!has_address(&lb01, VIP));
    // keepalived leaves, so that vrrpd alone races vigil.
    drop(ka);
    // vrrpd (.13) the same way: it comes as Backup, vigil's link goes, vrrpd takes over,
    // the link comes back and vrrpd (higher) stays Master; vigil yields.
    let frr = Vrrpd::start(
        &lb03,
        &dir,
        51,
        false,
        &[&format!("{VIP}/24")],
        &frr_lines(100, 100, ""),
    )?;
    frr.wait_state(51, "v4", "Backup", Duration::from_secs(8))?;
    std::thread::sleep(Duration::from_secs(1));
    settled_on(
        &pcap,
        lb02.ipv4.into(),
        100,
        window,
        Duration::from_secs(3),
        hold,
    )?;
    lab.set_link("lb02", false)?;
    frr.wait_state(51, "v4", "Master", Duration::from_secs(2))?;
    lab.set_link("lb02", true)?;
    settled_on(
        &pcap,
        lb03.ipv4.into(),
        100,
        window,
        Duration::from_secs(3),
        hold,
    )?;
    v.wait_state("web", "BACKUP", Duration::from_secs(1))?;
    assert!(!has_address(&lb02, VIP));
    drop(cap.stop()?);
    Ok(())
}

/// A Master leaving says priority 0: the Backup takes over after Skew_Time, not
/// Master_Down_Interval (RFC 5798 §6.4.2). At 1 s adverts and priority 100 that is
/// 0.609 s against 3.609 s.
#[test]
fn priority_zero_from_keepalived_and_vrrpd_means_skew_time() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("elzero", &["lb01", "lb02", "lb03", "watch"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02, lb03] = lab.clone_hosts();
    let (cap, pcap) = capture(&lab, "watch")?;
    let ka = Keepalived::start(
        &lb02,
        &dir,
        &ka_conf(200, "").replace("advert_int 0.1", "advert_int 1"),
    )?;
    let v = start_vigil(&lb01, &dir, &bpffs, &vigil_instance(100, "1s", ""))?;
    v.wait_state("web", "BACKUP", Duration::from_secs(2))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_address(&lb02, VIP) {
        anyhow::ensure!(Instant::now() < deadline, "keepalived never Master");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let mark = realtime_ns();
    drop(ka); // SIGTERM: keepalived sends priority 0.
    v.wait_state("web", "MASTER", Duration::from_secs(5))?;
    std::thread::sleep(Duration::from_millis(300));
    let (gap, last_prio) = takeover_gap(&pcap, lb02.ipv4.into(), lb01.ipv4.into(), mark)?;
    println!("keepalived priority 0 -> vigil: {gap:?} (last prio {last_prio})");
    assert_eq!(last_prio, 0);
    assert!(
        gap >= Duration::from_millis(560) && gap <= Duration::from_millis(900),
        "{gap:?}"
    );

    // vrrpd as Master (priority 200, 1 s), vigil Backup again.
    drop(v);
    let mut frr = Vrrpd::start(
        &lb03,
        &dir,
        51,
        false,
        &[&format!("{VIP}/24")],
        &frr_lines(200, 1000, ""),
    )?;
    frr.wait_state(51, "v4", "Master", Duration::from_secs(8))?;
    let v = start_vigil(&lb01, &dir, &bpffs, &vigil_instance(100, "1s", ""))?;
    v.wait_state("web", "BACKUP", Duration::from_secs(2))?;
    std::thread::sleep(Duration::from_millis(1500));
    let mark = realtime_ns();
    frr.configure(&["vrrp 51 shutdown"])?;
    v.wait_state("web", "MASTER", Duration::from_secs(5))?;
    std::thread::sleep(Duration::from_millis(300));
    let (gap, last_prio) = takeover_gap(&pcap, lb03.ipv4.into(), lb01.ipv4.into(), mark)?;
    println!("vrrpd shutdown -> vigil: {gap:?} (last prio {last_prio})");
    let _ = frr.stop_vrrpd(libc::SIGTERM);
    drop(cap.stop()?);
    assert_eq!(last_prio, 0);
    assert!(
        gap >= Duration::from_millis(560) && gap <= Duration::from_millis(900),
        "{gap:?}"
    );
    Ok(())
}

/// VRRPv2 with vrrpd (`vrrp 51 version 2`), each in either role.
#[test]
fn vrrpv2_with_vrrpd_both_ways() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("elv2", &["lb01", "lb02", "watch"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let (cap, pcap) = capture(&lab, "watch")?;
    let lines = |p: u8| frr_lines(p, 1000, "").replace("version 3", "version 2");
    let inst = |p: u8| vigil_instance(p, "1s", "").replace("version = 3", "version = 2");
    let mut frr = Vrrpd::start(&lb02, &dir, 51, false, &[&format!("{VIP}/24")], &lines(200))?;
    frr.wait_state(51, "v4", "Master", Duration::from_secs(8))?;
    let v = start_vigil(&lb01, &dir, &bpffs, &inst(100))?;
    v.wait_state("web", "BACKUP", Duration::from_secs(2))?;
    settled_on(
        &pcap,
        lb02.ipv4.into(),
        200,
        Duration::from_millis(2500),
        Duration::from_secs(3),
        Duration::from_secs(5),
    )?;
    assert_eq!(v.state("web")?, "BACKUP", "{}", v.log_text());
    println!("{}", v.instance("web")?);
    frr.stop_vrrpd(libc::SIGKILL);
    v.wait_state("web", "MASTER", Duration::from_secs(5))?;
    // vrrpd comes back and preempts (200 over 100): vigil yields.
    frr.start_vrrpd()?;
    frr.wait_state(51, "v4", "Master", Duration::from_secs(8))?;
    v.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    settled_on(
        &pcap,
        lb02.ipv4.into(),
        200,
        Duration::from_millis(2500),
        Duration::from_secs(3),
        Duration::from_secs(3),
    )?;
    assert!(!has_address(&lb01, VIP));
    drop(cap.stop()?);
    Ok(())
}
