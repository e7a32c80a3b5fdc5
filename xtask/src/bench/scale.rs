//! Scale: N instances at 10 ms adverts on one MASTER and one BACKUP; CPU of each (from
//! utime + stime deltas), the BACKUP's wake-ups (context switches), vigil's XDP program
//! time on the BACKUP (kernel BPF statistics, apart from the agent's CPU), and resident
//! memory (VmRSS; keepalived's processes summed).
//! Only one implementation's pair runs at a time; rounds alternate between them. After
//! each pair's window, a bare sender of the same adverts and the MASTER take turns
//! (the MASTER stopped while the sender runs), with the same BACKUP listening: the
//! sender's CPU time per advert is the kernel's share of the MASTER's work, the floor of
//! the MASTER's. The windows alternate so that the machine's load, which drifts on a
//! shared machine, weighs on both alike; each pair gives a ratio.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vigil_tests::Host;
use vigil_tests::frames::Advert;

use super::burst::{Burst, burst, quantile};
use super::flood::{BpfStats, xdp_stats};
use super::lab::{BACKUP_PRIORITY, MASTER_PRIORITY, Sides};
use super::measure::{CpuMeter, WakeMeter, rss_sum, run_ns, task_run_ns, tx_packets};
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
    /// The MASTER against the kernel's share of its work: CPU time per advert of the
    /// MASTER and of a bare sender of the same adverts in its place, in windows taken
    /// alternately with each implementation's BACKUP listening.
    pub pairs: BTreeMap<Impl, Vec<Pair>>,
    /// Seconds of each of those windows.
    pub pair_window_s: f64,
    /// At 200 instances: every instance taking over at once, each VRID's first advert
    /// after its own deadline (every round's cut pooled).
    pub burst: BTreeMap<Impl, Burst>,
}

/// One window of the MASTER, or of the bare sender in its place: CPU time over the
/// window and adverts sent in it (packets out of lb01's eth0).
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub cpu_ns: u64,
    pub adverts: u64,
    pub seconds: f64,
}

impl Window {
    /// CPU time per advert sent, µs.
    pub fn us_per_advert(&self) -> f64 {
        self.cpu_ns as f64 / 1000.0 / self.adverts.max(1) as f64
    }

    /// CPU, % of a core.
    pub fn percent(&self) -> f64 {
        self.cpu_ns as f64 / 1e9 / self.seconds * 100.0
    }

    /// Adverts a second.
    pub fn rate(&self) -> f64 {
        self.adverts as f64 / self.seconds
    }
}

/// A MASTER window and a bare-sender window taken one right after the other (in either
/// order), with the same BACKUP listening.
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    pub master: Window,
    pub floor: Window,
}

impl Pair {
    /// The MASTER's CPU time per advert over the bare sender's.
    pub fn ratio(&self) -> f64 {
        self.master.us_per_advert() / self.floor.us_per_advert()
    }

    /// Whether the MASTER sent what the bare sender did (within 5 %): a MASTER that
    /// sent fewer adverts (an instance lost, a sender stalled) did other work than the
    /// bare sender, and its window compares nothing.
    pub fn comparable(&self) -> bool {
        self.master.rate() >= 0.95 * self.floor.rate()
    }
}

/// A bare sender standing in for the MASTER: the adverts the MASTER sends (VRIDs
/// 1..=`instances` at MASTER_PRIORITY, each with its virtual address, right checksums)
/// from `host` through a raw IP socket (protocol 112, TTL 255, TOS 0xc0, no multicast
/// loop, 224.0.0.18 out of eth0), as a MASTER with nothing else to do sends them: every
/// advert interval, all of them in one `sendmmsg`, from a thread that does nothing else.
/// On veth and a bridge a sender pays the kernel's transmit path and the delivery to
/// every other port (the BACKUP's XDP program or socket included) in its own context, so
/// its thread's CPU is the floor any MASTER of these adverts pays here.
struct BareSender {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    /// The sending thread's /proc task directory.
    task: std::path::PathBuf,
}

impl BareSender {
    /// Starts sending; returns once the first interval's adverts are out.
    fn start(host: &Host, instances: u8) -> anyhow::Result<Self> {
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
        let stop = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let ns = host.ns.clone();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            vigil_tests::in_netns(&ns, move || send_until(src, &adverts, &flag, &started_tx))
        });
        match started_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(tid) => Ok(Self {
                stop,
                thread: Some(thread),
                task: format!("/proc/self/task/{tid}").into(),
            }),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                match thread.join() {
                    Ok(Err(e)) => Err(e),
                    _ => bail!("the bare sender did not start"),
                }
            }
        }
    }

    fn cpu_ns(&self) -> anyhow::Result<u64> {
        task_run_ns(&self.task)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => bail!("the bare sender panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for BareSender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The bare sender's loop, in lb01's namespace: sends `adverts` every interval until
/// `stop`, from `src`; says its thread id on `started` after the first interval's
/// adverts are out.
fn send_until(
    src: std::net::Ipv4Addr,
    adverts: &[Vec<u8>],
    stop: &AtomicBool,
    started: &std::sync::mpsc::Sender<i32>,
) -> anyhow::Result<()> {
    let ifname = std::ffi::CString::new("eth0")?;
    // SAFETY: plain socket calls on an fd this function owns and closes; every pointer
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
        let interval = Duration::from_millis(u64::from(INTERVAL_MS));
        let start = Instant::now();
        let mut tick = 0u32;
        while !stop.load(Ordering::Relaxed) {
            libc::sendmmsg(fd, headers.as_mut_ptr(), headers.len() as libc::c_uint, 0);
            if tick == 0 {
                let _ = started.send(libc::gettid());
            }
            tick += 1;
            if let Some(wait) = (start + interval * tick).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        libc::close(fd);
        Ok(())
    }
}

/// Sends `sig` to every process of `node`.
fn signal_all(node: &Node, sig: libc::c_int) {
    for p in node.pids() {
        // SAFETY: plain syscall on our own child's pid.
        unsafe { libc::kill(p, sig) };
    }
}

/// The MASTER's CPU time and adverts sent over `window`.
fn master_window(master: &Node, window: Duration) -> anyhow::Result<Window> {
    let pids = master.pids();
    let lb01 = *pids.first().context("no MASTER process")?;
    let cpu = || -> anyhow::Result<u64> { pids.iter().map(|&p| run_ns(p)).sum() };
    let (c0, t0, w0) = (cpu()?, tx_packets(lb01, "eth0")?, Instant::now());
    std::thread::sleep(window);
    let (c1, t1) = (cpu()?, tx_packets(lb01, "eth0")?);
    Ok(Window {
        cpu_ns: c1.saturating_sub(c0),
        adverts: t1.saturating_sub(t0),
        seconds: w0.elapsed().as_secs_f64(),
    })
}

/// The bare sender's window: it starts sending, the MASTER is stopped (SIGSTOP: the
/// BACKUP hears the same adverts from the same address throughout, so nothing changes
/// for it), and after `settle` its CPU time and the adverts leaving lb01's eth0 (now
/// its alone) are taken over `window`; then the MASTER continues and the sender stops.
fn floor_window(
    master: &Node,
    host: &Host,
    instances: u8,
    settle: Duration,
    window: Duration,
) -> anyhow::Result<Window> {
    let lb01 = master.pid().context("no MASTER process")?;
    let sender = BareSender::start(host, instances)?;
    signal_all(master, libc::SIGSTOP);
    let measured = (|| -> anyhow::Result<Window> {
        std::thread::sleep(settle);
        let (c0, t0, w0) = (sender.cpu_ns()?, tx_packets(lb01, "eth0")?, Instant::now());
        std::thread::sleep(window);
        let (c1, t1) = (sender.cpu_ns()?, tx_packets(lb01, "eth0")?);
        Ok(Window {
            cpu_ns: c1.saturating_sub(c0),
            adverts: t1.saturating_sub(t0),
            seconds: w0.elapsed().as_secs_f64(),
        })
    })();
    signal_all(master, libc::SIGCONT);
    let stopped = sender.stop();
    let w = measured?;
    stopped?;
    Ok(w)
}

/// `pairs` MASTER and bare-sender windows, alternating (MASTER first in odd pairs, the
/// sender first in even ones, so that a drift in the machine's load weighs on both
/// alike), each after `settle` of the one sending.
fn compare(
    master: &Node,
    host: &Host,
    instances: u8,
    pairs: usize,
    settle: Duration,
    window: Duration,
) -> anyhow::Result<Vec<Pair>> {
    let mut out = Vec::new();
    for i in 0..pairs {
        let m = |()| {
            std::thread::sleep(settle);
            master_window(master, window)
        };
        let f = |()| floor_window(master, host, instances, settle, window);
        let pair = if i % 2 == 0 {
            let master = m(())?;
            Pair {
                master,
                floor: f(())?,
            }
        } else {
            let floor = f(())?;
            Pair {
                master: m(())?,
                floor,
            }
        };
        out.push(pair);
    }
    Ok(out)
}

/// Median, least and greatest of `v`.
pub fn spread(v: impl IntoIterator<Item = f64>) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((median, v[0], v[n - 1]))
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
    pairs: usize,
    pair_window: Duration,
) -> anyhow::Result<Scale> {
    let n = usize::from(instances);
    let _stats = BpfStats::on();
    let mut out = Scale {
        instances,
        window_s: window.as_secs_f64(),
        runs: BTreeMap::new(),
        pairs: BTreeMap::new(),
        pair_window_s: pair_window.as_secs_f64(),
        burst: BTreeMap::new(),
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
            // MASTER's place in windows alternating with the MASTER's own.
            let pairs = compare(
                &master,
                &side.host("lb01"),
                instances,
                if instances >= 200 { pairs } else { 1 },
                Duration::from_millis(500),
                pair_window,
            )?;
            let heard = backup.count_in("BACKUP") == n && master.count_in("MASTER") == n;
            for (i, p) in pairs.iter().enumerate() {
                eprintln!(
                    "bench: scale {instances} × {INTERVAL_MS} ms round {}, {} pair {}: MASTER \
                     {:.3} µs/advert ({:.0}/s), bare sender {:.3} µs/advert ({:.0}/s): {:.3}×{}",
                    round + 1,
                    side.imp.name(),
                    i + 1,
                    p.master.us_per_advert(),
                    p.master.rate(),
                    p.floor.us_per_advert(),
                    p.floor.rate(),
                    p.ratio(),
                    if p.comparable() {
                        ""
                    } else {
                        " (MASTER SENT LESS: left out)"
                    },
                );
            }
            if !heard {
                eprintln!(
                    "bench: scale {instances}, {}: NOT SETTLED after the bare sender's windows",
                    side.imp.name()
                );
            }
            out.pairs.entry(side.imp).or_default().extend(pairs);
            if instances >= 200 {
                let until = Instant::now() + Duration::from_secs(5);
                while !settled(&master, &backup, n) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let was_settled = settled(&master, &backup, n);
                let mut b = burst(side, instances, round)?;
                b.unsettled = usize::from(!was_settled);
                eprintln!(
                    "bench: scale {instances} round {}, {}: all take over at once, first advert \
                     after each deadline p50 {:.3} ms, p95 {:.3} ms, max {:.3} ms ({} missed){}",
                    round + 1,
                    side.imp.name(),
                    quantile(&b.delays_ms, 0.5).unwrap_or(f64::NAN),
                    quantile(&b.delays_ms, 0.95).unwrap_or(f64::NAN),
                    quantile(&b.delays_ms, 1.0).unwrap_or(f64::NAN),
                    b.missed,
                    if was_settled {
                        ""
                    } else {
                        " (NOT SETTLED at the cut)"
                    },
                );
                let all = out.burst.entry(side.imp).or_default();
                all.delays_ms.extend(b.delays_ms);
                all.missed += b.missed;
                all.unsettled += b.unsettled;
            }
            master.stop();
            backup.stop();
        }
    }
    Ok(out)
}
