//! Elections with peers we did not write, in one segment: vigil, Debian's keepalived and
//! FRR's vrrpd for the same VRID, judged on the wire (a capture on another host: which
//! sources advertise once things settle, and when a takeover's first advert went out).
//!
//! Three-way deaths and returns, non-preempting Backups, the learnt VRRPv3 interval,
//! equal-priority tie-breaks (IPv4 and IPv6, on a healed partition so both sides really
//! are Master at once), priority 0 meaning Skew_Time, VRRPv2 with vrrpd, the address
//! owner, differing address lists, BFD-assisted takeover from a keepalived Master with
//! FRR's bfdd answering, and `accept = false` against keepalived's `no_accept`.

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

/// The lab most tests here start from: `hosts`, then "watch" capturing every VRRP
/// advert on the segment; with the lab's bpffs, its directory, the capture and its file.
fn segment(tag: &str, hosts: &[&str]) -> anyhow::Result<(Lab, PathBuf, PathBuf, Capture, PathBuf)> {
    let mut names = hosts.to_vec();
    names.push("watch");
    let mut lab = Lab::new(tag, &names)?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let (cap, pcap) = capture(&lab, "watch")?;
    Ok((lab, bpffs, dir, cap, pcap))
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
    let (lab, bpffs, dir, cap, pcap) = segment("el3", &["lb01", "lb02", "lb03"])?;
    let [lb01, lb02, lb03] = lab.clone_hosts();
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
        .rfind(|(t, src, _)| *src == peer && *t < first.0)
        .ok_or_else(|| anyhow::anyhow!("no advert from {peer}"))?;
    Ok((Duration::from_nanos(first.0 - last.0), last.2))
}

/// vrrpd Master advertising every `frr_ms`, vigil Backup configured at `vigil_interval`:
/// vigil learns the Master's interval (RFC 5798 §6.4.2) and takes over after
/// 3 × that + Skew_Time once vrrpd dies; returns the gap on the wire.
fn learned_interval(tag: &str, frr_ms: u32, vigil_interval: &str) -> anyhow::Result<Duration> {
    let (lab, bpffs, dir, cap, pcap) = segment(tag, &["lb01", "lb02"])?;
    let [lb01, lb02] = lab.clone_hosts();
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
    let (lab, bpffs, dir, cap, pcap) = segment("eltie", &["lb01", "lb02", "lb03"])?;
    let [lb01, lb02, lb03] = lab.clone_hosts();
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
    // vigil (.12) joins: a Backup hearing an equal priority stays Backup, even from a
    // lower address (RFC 5798 §6.4.2 preempts only a lower priority).
    let v = start_vigil(&lb02, &dir, &bpffs, &vigil_instance(100, "100ms", ""))?;
    v.wait_state("web", "BACKUP", Duration::from_secs(2))?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        v.state("web")?,
        "BACKUP",
        "vigil preempted an equal priority"
    );
    // keepalived is partitioned off: vigil takes over; when the partition heals both
    // are Master and the higher address (vigil's) must stay.
    lab.set_partitioned("lb01", true)?;
    v.wait_state("web", "MASTER", Duration::from_secs(2))?;
    std::thread::sleep(Duration::from_millis(300));
    lab.set_partitioned("lb01", false)?;
    // The two Masters hear each other from here on.
    std::thread::sleep(Duration::from_millis(500));
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
    // vrrpd (.13) the same way: it joins as Backup, vigil is partitioned off, vrrpd
    // takes over, the partition heals and vrrpd (higher) stays Master; vigil yields.
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
    lab.set_partitioned("lb02", true)?;
    frr.wait_state(51, "v4", "Master", Duration::from_secs(2))?;
    std::thread::sleep(Duration::from_millis(300));
    lab.set_partitioned("lb02", false)?;
    // The two Masters hear each other from here on.
    std::thread::sleep(Duration::from_millis(500));
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
    let (lab, bpffs, dir, cap, pcap) = segment("elzero", &["lb01", "lb02", "lb03"])?;
    let [lb01, lb02, lb03] = lab.clone_hosts();
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
    frr.stop_vrrpd(libc::SIGTERM);
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
    let (lab, bpffs, dir, cap, pcap) = segment("elv2", &["lb01", "lb02"])?;
    let [lb01, lb02] = lab.clone_hosts();
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

const VIP6: &str = "2001:db8::100";

/// Equal priorities over IPv6: the higher link-local source wins (RFC 5798 §6.4.3), with
/// `peer` ("keepalived" or "vrrpd") on lb01 and vigil on lb02.
fn ipv6_tie(tag: &str, peer: &str) -> anyhow::Result<()> {
    let (lab, bpffs, dir, cap, pcap) = segment(tag, &["lb01", "lb02"])?;
    let [lb01, lb02] = lab.clone_hosts();
    let _ka;
    let _frr;
    if peer == "keepalived" {
        _ka = Keepalived::start(
            &lb01,
            &dir,
            &ka_conf(100, "").replace(&format!("{VIP}/24"), &format!("{VIP6}/64")),
        )?;
    } else {
        _frr = Vrrpd::start(
            &lb01,
            &dir,
            51,
            true,
            &[&format!("{VIP6}/64")],
            " vrrp 51 version 3\n vrrp 51 priority 100\n vrrp 51 advertisement-interval 100\n vrrp 51 ipv6 2001:db8::100\n",
        )?;
    }
    // The peer alone becomes Master; its source on the wire.
    let deadline = Instant::now() + Duration::from_secs(10);
    let peer_src = loop {
        if let Some((_, s, _)) = seen(&pcap).last() {
            break *s;
        }
        anyhow::ensure!(Instant::now() < deadline, "{peer} never advertised");
        std::thread::sleep(Duration::from_millis(100));
    };
    let inst =
        vigil_instance(100, "100ms", "").replace(&format!("{VIP}/24"), &format!("{VIP6}/64"));
    let v = start_vigil(&lb02, &dir, &bpffs, &inst)?;
    let mine: IpAddr = lb02.link_local()?.into();
    println!("{peer} at {peer_src}, vigil at {mine}");
    v.wait_state("web", "BACKUP", Duration::from_secs(2))?;
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        v.state("web")?,
        "BACKUP",
        "vigil preempted an equal priority"
    );
    // Both Master for a moment: the higher source stays.
    lab.set_partitioned("lb01", true)?;
    v.wait_state("web", "MASTER", Duration::from_secs(2))?;
    std::thread::sleep(Duration::from_millis(300));
    lab.set_partitioned("lb01", false)?;
    // The two Masters hear each other from here on.
    std::thread::sleep(Duration::from_millis(500));
    let winner = peer_src.max(mine);
    let r = settled_on(
        &pcap,
        winner,
        100,
        Duration::from_millis(600),
        Duration::from_secs(4),
        Duration::from_secs(1),
    );
    if r.is_err() {
        let tail: Vec<_> = seen(&pcap).into_iter().rev().take(60).collect();
        for t in tail.iter().rev() {
            println!("{t:?}");
        }
        println!("{}", v.log_text());
        println!(
            "{}",
            std::fs::read_to_string(dir.join("lb01-keepalived.log")).unwrap_or_default()
        );
    }
    r?;
    let want = if winner == mine { "MASTER" } else { "BACKUP" };
    assert_eq!(v.state("web")?, want);
    drop(cap.stop()?);
    Ok(())
}

#[test]
fn ipv6_equal_priorities_with_keepalived() -> anyhow::Result<()> {
    require_root();
    ipv6_tie("eltie6k", "keepalived")
}

#[test]
fn ipv6_equal_priorities_with_vrrpd() -> anyhow::Result<()> {
    require_root();
    ipv6_tie("eltie6f", "vrrpd")
}

/// vigil as the address owner (255) against keepalived (254): it takes over at once on
/// start, and its goodbye hands over after keepalived's Skew_Time.
#[test]
fn owner_against_keepalived() -> anyhow::Result<()> {
    require_root();
    let (lab, bpffs, dir, cap, pcap) = segment("elown", &["lb01", "lb02"])?;
    let [lb01, lb02] = lab.clone_hosts();
    let _ka = Keepalived::start(&lb02, &dir, &ka_conf(254, ""))?;
    settled_on(
        &pcap,
        lb02.ipv4.into(),
        254,
        Duration::from_millis(600),
        Duration::from_secs(8),
        Duration::from_millis(500),
    )?;
    let mark = realtime_ns();
    let mut v = start_vigil(&lb01, &dir, &bpffs, &vigil_instance(255, "100ms", ""))?;
    settled_on(
        &pcap,
        lb01.ipv4.into(),
        255,
        Duration::from_millis(600),
        Duration::from_secs(3),
        Duration::from_secs(1),
    )?;
    let first = seen(&pcap)
        .into_iter()
        .find(|(t, s, _)| *t >= mark && *s == IpAddr::from(lb01.ipv4));
    println!(
        "owner first advert {:?} after mark",
        first.map(|f| Duration::from_nanos(f.0 - mark))
    );
    assert!(!has_address(&lb02, VIP));
    v.signal(libc::SIGTERM);
    v.wait()?;
    settled_on(
        &pcap,
        lb02.ipv4.into(),
        254,
        Duration::from_millis(600),
        Duration::from_secs(3),
        Duration::from_secs(1),
    )?;
    v.spawn()?;
    settled_on(
        &pcap,
        lb01.ipv4.into(),
        255,
        Duration::from_millis(600),
        Duration::from_secs(3),
        Duration::from_secs(1),
    )?;
    drop(cap.stop()?);
    Ok(())
}

/// VIP lists that differ (vigil [A, B], keepalived [A]) in VRRPv3. RFC 5798 §7.1 asks
/// only for a log line, and vigil takes such adverts: under keepalived it stays Backup,
/// without a transition. keepalived 2.2.7 discards them ("unexpected ip number count"):
/// started below vigil it takes over after its Master_Down_Interval, sends one advert,
/// then stays silent in MASTER holding the address (a peer fault, seen in its log and on
/// the wire). vigil stays Master and the only advertiser through it: no flapping.
#[test]
fn differing_vip_lists_with_keepalived_elect_one_master() -> anyhow::Result<()> {
    require_root();
    let (lab, bpffs, dir, cap, pcap) = segment("elvips", &["lb01", "lb02"])?;
    let [lb01, lb02] = lab.clone_hosts();
    let window = Duration::from_millis(600);
    let ka = Keepalived::start(&lb02, &dir, &ka_conf(200, ""))?;
    settled_on(
        &pcap,
        lb02.ipv4.into(),
        200,
        window,
        Duration::from_secs(8),
        Duration::from_millis(500),
    )?;
    let inst = vigil_instance(100, "100ms", "").replace(
        &format!("[\"{VIP}/24 dev eth0\"]"),
        &format!("[\"{VIP}/24 dev eth0\", \"192.0.2.101/24 dev eth0\"]"),
    );
    let v = start_vigil(&lb01, &dir, &bpffs, &inst)?;
    v.wait_state("web", "BACKUP", Duration::from_secs(2))?;
    settled_on(
        &pcap,
        lb02.ipv4.into(),
        200,
        window,
        Duration::from_secs(2),
        Duration::from_secs(2),
    )?;
    assert_eq!(transitions(&v)?, Some(1), "vigil flapped");
    assert!(!has_address(&lb01, VIP));
    // keepalived leaves and comes back below vigil: vigil Master, keepalived quiet.
    drop(ka);
    v.wait_state("web", "MASTER", Duration::from_secs(2))?;
    let _ka = Keepalived::start(&lb02, &dir, &ka_conf(50, ""))?;
    std::thread::sleep(Duration::from_secs(1));
    settled_on(
        &pcap,
        lb01.ipv4.into(),
        100,
        window,
        Duration::from_secs(2),
        Duration::from_secs(2),
    )?;
    assert_eq!(v.state("web")?, "MASTER");
    assert_eq!(transitions(&v)?, Some(2), "vigil flapped: {}", v.log_text());
    drop(cap.stop()?);
    Ok(())
}

/// Non-preempting Backups above the Master (vigil `preempt = false` at 200, keepalived
/// `nopreempt` at 150, vrrpd Master at 100) stay Backup (RFC 5798 §6.4.2: Preempt_Mode
/// false takes a lower priority's adverts); when the Master dies the highest of them
/// takes over; vrrpd back stays Backup; vigil killed and restarted does not take the
/// Master role back from keepalived.
#[test]
fn non_preempting_backups_above_the_master_wait_for_it_to_die() -> anyhow::Result<()> {
    require_root();
    let (lab, bpffs, dir, cap, pcap) = segment("elnopre", &["lb01", "lb02", "lb03"])?;
    let [lb01, lb02, lb03] = lab.clone_hosts();
    let (a1, a2, a3) = (
        IpAddr::from(lb01.ipv4),
        IpAddr::from(lb02.ipv4),
        IpAddr::from(lb03.ipv4),
    );
    let window = Duration::from_millis(600);
    let hold = Duration::from_millis(1500);
    let mut frr = Vrrpd::start(
        &lb03,
        &dir,
        51,
        false,
        &[&format!("{VIP}/24")],
        &frr_lines(100, 100, ""),
    )?;
    frr.wait_state(51, "v4", "Master", Duration::from_secs(8))?;
    let _ka = Keepalived::start(&lb02, &dir, &ka_conf(150, "nopreempt"))?;
    let mut v = start_vigil(
        &lb01,
        &dir,
        &bpffs,
        &vigil_instance(200, "100ms", "preempt = false"),
    )?;
    v.wait_state("web", "BACKUP", Duration::from_secs(2))?;
    settled_on(&pcap, a3, 100, window, Duration::from_secs(2), hold)?;
    assert_eq!(transitions(&v)?, Some(1), "{}", v.log_text());
    assert!(!has_address(&lb01, VIP) && !has_address(&lb02, VIP));

    frr.stop_vrrpd(libc::SIGKILL);
    settled_on(&pcap, a1, 200, window, Duration::from_secs(3), hold)?;
    v.wait_state("web", "MASTER", Duration::from_millis(100))?;
    assert!(!has_address(&lb02, VIP));
    frr.start_vrrpd()?;
    frr.wait_state(51, "v4", "Backup", Duration::from_secs(8))?;
    settled_on(&pcap, a1, 200, window, Duration::from_secs(2), hold)?;

    v.signal(libc::SIGKILL);
    v.wait()?;
    settled_on(&pcap, a2, 150, window, Duration::from_secs(3), hold)?;
    v.spawn()?;
    v.wait_state("web", "BACKUP", Duration::from_secs(2))?;
    settled_on(&pcap, a2, 150, window, Duration::from_secs(2), hold)?;
    assert_eq!(v.state("web")?, "BACKUP");
    assert!(
        !has_address(&lb01, VIP),
        "the restarted vigil kept its old VIP"
    );
    drop(cap.stop()?);
    Ok(())
}

/// BFD-assisted takeover from a Master vigil did not write: keepalived is Master at 1 s
/// adverts with FRR's bfdd beside it answering vigil's session (50 ms x 3). When
/// keepalived's host is partitioned off (carriers up, so only BFD or silence can tell),
/// vigil takes over on the session's detection time, not the 3.61 s of
/// Master_Down_Interval; when the partition heals keepalived (higher) takes it back.
#[test]
fn bfd_to_a_keepalived_master_through_frr_bfdd_speeds_up_the_takeover() -> anyhow::Result<()> {
    require_root();
    let (lab, bpffs, dir, cap, pcap) = segment("elbfd", &["lb01", "lb02"])?;
    let [lb01, lb02] = lab.clone_hosts();
    let _ka = Keepalived::start(
        &lb02,
        &dir,
        &ka_conf(200, "").replace("advert_int 0.1", "advert_int 1"),
    )?;
    let frr = vigil_tests::frr::Frr::start(
        &lb02,
        &dir,
        &format!(
            "bfd\n peer {} interface eth0\n  receive-interval 50\n  \
             transmit-interval 50\n  detect-multiplier 3\n !\n!\n",
            lb01.ipv4
        ),
    )?;
    let v = start_vigil(
        &lb01,
        &dir,
        &bpffs,
        &vigil_instance(100, "1s", "bfd = { interval = \"50ms\", multiplier = 3 }"),
    )?;
    settled_on(
        &pcap,
        lb02.ipv4.into(),
        200,
        Duration::from_millis(2500),
        Duration::from_secs(10),
        Duration::from_millis(1500),
    )?;
    v.wait_state("web", "BACKUP", Duration::from_secs(1))?;
    vigil_tests::wait_for(
        "vigil's session to the Master Up",
        Duration::from_secs(10),
        || {
            let s = v.status().ok()?;
            (s["bfd"][0]["state"] == "Up" && s["bfd"][0]["peer"] == lb02.ipv4.to_string())
                .then_some(())
        },
    );
    vigil_tests::wait_for("bfdd's peer up", Duration::from_secs(5), || {
        let p = frr.peers().ok()?;
        (p[0]["status"] == "up").then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    let cut = realtime_ns();
    lab.set_partitioned("lb02", true)?;
    v.wait_state("web", "MASTER", Duration::from_secs(5))?;
    std::thread::sleep(Duration::from_millis(200));
    let first = seen(&pcap)
        .into_iter()
        .find(|(t, s, p)| *t > cut && *s == IpAddr::from(lb01.ipv4) && *p == 100)
        .ok_or_else(|| anyhow::anyhow!("no advert from vigil after the cut"))?;
    let took = Duration::from_nanos(first.0 - cut);
    println!("partition -> vigil's first advert: {took:?} (Master_Down_Interval 3.61 s)");
    // Detection 150 ms after the last packet, which may precede the cut by 50 ms.
    assert!(
        took <= Duration::from_millis(400),
        "{took:?}\n{}",
        v.log_text()
    );
    let t = &v.instance("web")?["last_transition"];
    assert_eq!(
        t["reason"],
        format!("BFD session to master {} down", lb02.ipv4),
        "{t}"
    );
    lab.set_partitioned("lb02", false)?;
    std::thread::sleep(Duration::from_millis(500));
    settled_on(
        &pcap,
        lb02.ipv4.into(),
        200,
        Duration::from_millis(2500),
        Duration::from_secs(5),
        Duration::from_secs(1),
    )?;
    v.wait_state("web", "BACKUP", Duration::from_secs(1))?;
    assert!(!has_address(&lb01, VIP));
    drop(cap.stop()?);
    Ok(())
}

/// How many transitions instance `web` has made.
fn transitions(v: &Vigil) -> anyhow::Result<Option<u64>> {
    Ok(v.instance("web")?["transitions"]
        .as_array()
        .map(|t| t.iter().filter_map(|x| x["count"].as_u64()).sum()))
}

/// The client's neighbour entry for `addr` after a ping: the MAC it resolved to, if any.
fn neighbour_mac(client: &Host, addr: &str) -> Option<String> {
    let out = client.exec(&["ip", "neigh", "show", addr]).ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_owned)
}

/// Whether `addr` answers one ping from `client`, its neighbour entry flushed first.
fn answers(client: &Host, addr: &str) -> anyhow::Result<bool> {
    let _ = client.exec(&["ip", "neigh", "flush", "to", addr]);
    let out = client
        .command("ping")
        .args(["-c", "1", "-W", "1", addr])
        .output()?;
    Ok(out.status.success())
}

/// `accept = false` refuses traffic to and from the virtual addresses while Master, as
/// keepalived's `no_accept` does (RFC 5798 §6.4.3), both families, while ARP and
/// Neighbor Discovery still resolve them to the Master; a reload to `accept = true`
/// lets traffic in, and the rules leave with the agent.
#[test]
fn accept_false_refuses_traffic_to_the_vip_as_keepalived_no_accept_does() -> anyhow::Result<()> {
    require_root();
    let mut lab = Lab::new("elacc", &["lb01", "lb02", "client"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02, client] = lab.clone_hosts();
    let mac =
        |h: &Host| -> anyhow::Result<String> { Ok(vigil_tests::capture::mac_text(h.mac("eth0")?)) };

    // The peer's behaviour, for reference.
    let ka = Keepalived::start(&lb02, &dir, &ka_conf(200, "no_accept"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_address(&lb02, VIP) {
        anyhow::ensure!(Instant::now() < deadline, "keepalived never Master");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !answers(&client, VIP)?,
        "keepalived's no_accept VIP answered a ping"
    );
    assert_eq!(neighbour_mac(&client, VIP), Some(mac(&lb02)?));
    drop(ka);

    let instances = |accept: bool| {
        vigil_instance(200, "100ms", &format!("accept = {accept}"))
            + &vigil_instance(200, "100ms", &format!("accept = {accept}"))
                .replace("[instances.web]", "[instances.web6]")
                .replace(&format!("{VIP}/24"), &format!("{VIP6}/64"))
    };
    let v = start_vigil(&lb01, &dir, &bpffs, &instances(false))?;
    v.wait_state("web", "MASTER", Duration::from_secs(5))?;
    v.wait_state("web6", "MASTER", Duration::from_secs(5))?;
    assert!(has_address(&lb01, VIP) && has_address(&lb01, VIP6));
    for vip in [VIP, VIP6] {
        assert!(
            !answers(&client, vip)?,
            "{vip} answered a ping with accept = false"
        );
        assert_eq!(
            neighbour_mac(&client, vip),
            Some(mac(&lb01)?),
            "{vip} did not resolve to the Master"
        );
    }
    // Reloaded with accept = true: the instances restart and answer once Master.
    std::fs::write(
        &v.config,
        global(&lb01, &dir, &bpffs, "") + &instances(true),
    )?;
    let reply: serde_json::Value = serde_json::from_str(&v.request("reload")?)?;
    assert_eq!(reply["applied"], true, "{reply}");
    v.wait_state("web", "MASTER", Duration::from_secs(5))?;
    v.wait_state("web6", "MASTER", Duration::from_secs(5))?;
    for vip in [VIP, VIP6] {
        assert!(
            answers(&client, vip)?,
            "{vip} refused a ping with accept = true"
        );
    }
    // Back to accept = false, then the agent stops: its table goes with it.
    std::fs::write(
        &v.config,
        global(&lb01, &dir, &bpffs, "") + &instances(false),
    )?;
    let reply: serde_json::Value = serde_json::from_str(&v.request("reload")?)?;
    assert_eq!(reply["applied"], true, "{reply}");
    v.wait_state("web", "MASTER", Duration::from_secs(5))?;
    assert!(
        !answers(&client, VIP)?,
        "a reload to accept = false let traffic in"
    );
    let tables = |h: &Host| -> anyhow::Result<String> {
        Ok(String::from_utf8_lossy(&h.exec(&["nft", "list", "tables"])?.stdout).into_owned())
    };
    assert!(tables(&lb01)?.contains("inet vigil"));
    let mut v = v;
    v.signal(libc::SIGTERM);
    assert_eq!(v.wait()?, Some(0));
    assert!(!tables(&lb01)?.contains("inet vigil"), "{}", tables(&lb01)?);
    // A killed agent leaves its table; the next start without accept = false clears it.
    v.spawn()?;
    v.wait_state("web", "MASTER", Duration::from_secs(5))?;
    assert!(tables(&lb01)?.contains("inet vigil"));
    v.signal(libc::SIGKILL);
    v.wait()?;
    assert!(tables(&lb01)?.contains("inet vigil"));
    std::fs::write(
        &v.config,
        global(&lb01, &dir, &bpffs, "") + &instances(true),
    )?;
    v.spawn()?;
    assert!(!tables(&lb01)?.contains("inet vigil"), "{}", tables(&lb01)?);
    v.wait_state("web", "MASTER", Duration::from_secs(5))?;
    assert!(
        answers(&client, VIP)?,
        "the stale table still refuses traffic"
    );
    Ok(())
}
