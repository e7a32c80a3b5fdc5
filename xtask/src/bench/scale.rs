//! Scale: N instances at 10 ms adverts on one MASTER and one BACKUP; CPU of each (from
//! utime + stime deltas), the BACKUP's wake-ups (context switches), vigil's XDP program
//! time on the BACKUP (kernel BPF statistics, apart from the agent's CPU), and resident
//! memory (VmRSS; keepalived's processes summed).
//! Only one implementation's pair runs at a time; rounds alternate between them. After
//! each pair's window a bare sender of the same adverts takes the MASTER's place for
//! another window, with the same BACKUP listening: the kernel's share of the MASTER's
//! work, the floor of the MASTER's CPU.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::bail;
use vigil_tests::Host;
use vigil_tests::frames::Advert;

use super::flood::{BpfStats, xdp_stats};
use super::lab::{BACKUP_PRIORITY, MASTER_PRIORITY, Sides};
use super::measure::{CpuMeter, WakeMeter, rss_sum};
use super::node::{Impl, Node, specs};

pub const INTERVAL_MS: u32 = 10;

#[derive(Clone, Debug)]
pub struct ScaleRun {
    pub master_cpu: f64,
    pub backup_cpu: f64,
    pub master_rss_kib: u64,
    pub backup_rss_kib: u64,
    /// The BACKUP's wake-ups per second (context switches of all its threads).
    pub backup_wakeups: f64,
    /// vigil: CPU % of its XDP program on the BACKUP (packet path; timer callbacks are
    /// not in the kernel's per-program statistics).
    pub backup_xdp_cpu: Option<f64>,
    /// vigil: mean run time of its XDP program on the BACKUP, ns per frame.
    pub backup_xdp_ns: Option<f64>,
    /// Every instance was in its expected state before and after the window.
    pub settled: bool,
}

#[derive(Clone, Debug)]
pub struct Scale {
    pub instances: u8,
    pub window_s: f64,
    pub runs: BTreeMap<Impl, Vec<ScaleRun>>,
    /// The kernel's share of a MASTER's work: CPU % of a bare sender of the same
    /// adverts from lb01 to each implementation's BACKUP (one per round), and the rate
    /// it reached.
    pub floor: BTreeMap<Impl, Vec<(f64, f64)>>,
}

/// A bare sender standing in for the MASTER: the adverts the MASTER sends (VRIDs
/// 1..=`instances` at MASTER_PRIORITY, each with its virtual address, right checksums)
/// from `host` through a raw IP socket (protocol 112, TTL 255, TOS 0xc0, no multicast
/// loop, 224.0.0.18 out of eth0), as a MASTER with nothing else to do sends them: every advert interval, all
/// of them in one `sendmmsg`. It runs while the implementation's BACKUP listens, as the
/// MASTER did: on veth and a bridge a sender pays the kernel's transmit path and the
/// delivery to every other port (the BACKUP's XDP program or socket included) in its
/// own context, so its thread's CPU is the floor any MASTER of these adverts pays here.
/// Sends for `settle` unmeasured (the BACKUP hears its Master again), then for `window`.
/// Returns (CPU %, adverts/s).
fn floor(
    host: &Host,
    instances: u8,
    settle: Duration,
    window: Duration,
) -> anyhow::Result<(f64, f64)> {
    let src = host.ipv4;
    let adverts: Vec<Vec<u8>> = specs(instances, MASTER_PRIORITY, true, INTERVAL_MS, 3)
        .iter()
        .map(|sp| {
            Advert {
                // VRRPv3's interval is in centiseconds.
                interval: (INTERVAL_MS / 10) as u16,
                addresses: vec![IpAddr::V4(sp.vip_addr())],
                ..Advert::v3(src, sp.vrid, MASTER_PRIORITY)
            }
            .vrrp()
        })
        .collect();
    let ifname = std::ffi::CString::new("eth0")?;
    vigil_tests::in_netns(&host.ns, move || {
        // SAFETY: plain socket calls on an fd this closure owns and closes; every pointer
        // passed points at a live local of the size given, and the message headers point
        // into `adverts`, `iov` and `dst`, which outlive every call.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, 112);
            if fd < 0 {
                bail!("raw socket: {}", std::io::Error::last_os_error());
            }
            let int = |v: libc::c_int| v;
            let index = libc::if_nametoindex(ifname.as_ptr());
            let mreq = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr { s_addr: 0 },
                imr_address: libc::in_addr {
                    s_addr: u32::from(src).to_be(),
                },
                imr_ifindex: index as libc::c_int,
            };
            let set = |opt, value: *const libc::c_void, len: usize| {
                libc::setsockopt(fd, libc::IPPROTO_IP, opt, value, len as libc::socklen_t) == 0
            };
            // The agent's own socket options: no copy looped back to the sender.
            let (ttl, tos, no_loop) = (int(255), int(0xc0), int(0));
            let size = std::mem::size_of::<libc::c_int>();
            let ok = set(
                libc::IP_MULTICAST_TTL,
                (&ttl as *const libc::c_int).cast(),
                size,
            ) && set(libc::IP_TOS, (&tos as *const libc::c_int).cast(), size)
                && set(
                    libc::IP_MULTICAST_LOOP,
                    (&no_loop as *const libc::c_int).cast(),
                    size,
                )
                && set(
                    libc::IP_MULTICAST_IF,
                    (&mreq as *const libc::ip_mreqn).cast(),
                    std::mem::size_of::<libc::ip_mreqn>(),
                );
            if !ok {
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                bail!("raw socket options: {e}");
            }
            let mut dst = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(std::net::Ipv4Addr::new(224, 0, 0, 18)).to_be(),
                },
                sin_zero: [0; 8],
            };
            let mut iov: Vec<libc::iovec> = adverts
                .iter()
                .map(|a| libc::iovec {
                    iov_base: a.as_ptr() as *mut libc::c_void,
                    iov_len: a.len(),
                })
                .collect();
            let mut headers: Vec<libc::mmsghdr> = iov
                .iter_mut()
                .map(|v| {
                    let mut h: libc::msghdr = std::mem::zeroed();
                    h.msg_name = (&mut dst as *mut libc::sockaddr_in).cast();
                    h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                    h.msg_iov = v;
                    h.msg_iovlen = 1;
                    libc::mmsghdr {
                        msg_hdr: h,
                        msg_len: 0,
                    }
                })
                .collect();
            let cpu = || {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
                ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
            };
            let interval = Duration::from_millis(u64::from(INTERVAL_MS));
            let start = Instant::now();
            let mut cpu0 = None;
            let mut sent = 0u64;
            let mut tick = 0u32;
            loop {
                let elapsed = start.elapsed();
                if elapsed >= settle + window {
                    break;
                }
                if cpu0.is_none() && elapsed >= settle {
                    cpu0 = Some((cpu(), Instant::now(), sent));
                }
                let n = libc::sendmmsg(fd, headers.as_mut_ptr(), headers.len() as libc::c_uint, 0);
                if n > 0 {
                    sent += n as u64;
                }
                tick += 1;
                if let Some(wait) = (start + interval * tick).checked_duration_since(Instant::now())
                {
                    std::thread::sleep(wait);
                }
            }
            let used = cpu();
            libc::close(fd);
            let Some((cpu0, t0, sent0)) = cpu0 else {
                bail!("the bare sender never reached its window");
            };
            let secs = t0.elapsed().as_secs_f64();
            if sent == sent0 {
                bail!("the bare sender sent nothing");
            }
            Ok(((used - cpu0) / secs * 100.0, (sent - sent0) as f64 / secs))
        }
    })
}

fn settled(master: &Node, backup: &Node, n: usize) -> bool {
    master.count_in("MASTER") == n && backup.count_in("BACKUP") == n
}

pub fn scale(
    sides: &mut Sides,
    instances: u8,
    rounds: usize,
    settle: Duration,
    window: Duration,
) -> anyhow::Result<Scale> {
    let n = usize::from(instances);
    let _stats = BpfStats::on();
    let mut out = Scale {
        instances,
        window_s: window.as_secs_f64(),
        runs: BTreeMap::new(),
        floor: BTreeMap::new(),
    };
    for round in 0..rounds {
        for i in sides.order(round) {
            let side = &sides.0[i];
            let mut master = side.start(
                "lb01",
                &specs(instances, MASTER_PRIORITY, true, INTERVAL_MS, 3),
            )?;
            let mut backup = side.start(
                "lb02",
                &specs(instances, BACKUP_PRIORITY, false, INTERVAL_MS, 3),
            )?;
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut ok_before = false;
            while Instant::now() < deadline {
                if settled(&master, &backup, n) {
                    ok_before = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !ok_before {
                eprintln!(
                    "bench: scale {instances}, {}: not all instances settled in 30 s \
                     (MASTER {}, BACKUP {}); measuring anyway",
                    side.imp.name(),
                    master.count_in("MASTER"),
                    backup.count_in("BACKUP")
                );
            }
            std::thread::sleep(settle);
            let lb02 = side.host("lb02");
            let xdp0 = (side.imp == Impl::Vigil)
                .then(|| xdp_stats(&lb02))
                .flatten();
            let m = CpuMeter::start(&master.pids())?;
            let b = CpuMeter::start(&backup.pids())?;
            let w = WakeMeter::start(&backup.pids())?;
            let started = Instant::now();
            std::thread::sleep(window);
            let backup_wakeups = w.per_second()?;
            let xdp1 = (side.imp == Impl::Vigil)
                .then(|| xdp_stats(&lb02))
                .flatten();
            let elapsed_ns = started.elapsed().as_nanos() as f64;
            let run = ScaleRun {
                master_cpu: m.percent()?,
                backup_cpu: b.percent()?,
                backup_wakeups,
                backup_xdp_cpu: match (xdp0, xdp1) {
                    (Some((t0, _)), Some((t1, _))) => {
                        Some(t1.saturating_sub(t0) as f64 / elapsed_ns * 100.0)
                    }
                    _ => None,
                },
                backup_xdp_ns: match (xdp0, xdp1) {
                    (Some((t0, n0)), Some((t1, n1))) if n1 > n0 => {
                        Some(t1.saturating_sub(t0) as f64 / (n1 - n0) as f64)
                    }
                    _ => None,
                },
                master_rss_kib: rss_sum(&master.pids())?,
                backup_rss_kib: rss_sum(&backup.pids())?,
                settled: ok_before && settled(&master, &backup, n),
            };
            eprintln!(
                "bench: scale {instances} × {INTERVAL_MS} ms round {}, {}: MASTER {:.1} % \
                 {} KiB, BACKUP {:.1} % {} KiB, {:.1} wake-ups/s{}{}",
                round + 1,
                side.imp.name(),
                run.master_cpu,
                run.master_rss_kib,
                run.backup_cpu,
                run.backup_rss_kib,
                run.backup_wakeups,
                match (run.backup_xdp_cpu, run.backup_xdp_ns) {
                    (Some(x), Some(ns)) => format!(", XDP program {x:.2} % ({ns:.0} ns a frame)"),
                    (Some(x), None) => format!(", XDP program {x:.2} %"),
                    _ => String::new(),
                },
                if run.settled { "" } else { " (NOT SETTLED)" }
            );
            out.runs.entry(side.imp).or_default().push(run);
            // The floor, with the same BACKUP listening: the bare sender takes the
            // MASTER's place (the BACKUP may take over in between; the sender's
            // priority wins each instance back during the settling time).
            master.stop();
            let f = floor(
                &side.host("lb01"),
                instances,
                settle + Duration::from_secs(1),
                window,
            )?;
            let heard = backup.count_in("BACKUP") == n;
            eprintln!(
                "bench: scale {instances} × {INTERVAL_MS} ms round {}, bare sender to {}'s BACKUP: \
                 {:.1} % at {:.0} adverts/s{}",
                round + 1,
                side.imp.name(),
                f.0,
                f.1,
                if heard { "" } else { " (BACKUP NOT SETTLED)" }
            );
            out.floor.entry(side.imp).or_default().push(f);
            backup.stop();
        }
    }
    Ok(out)
}
