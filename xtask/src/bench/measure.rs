//! What the bench measures with: process CPU and memory from /proc, adverts from a
//! capture read while it is being written, and order statistics.

use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use vigil_tests::capture::{Capture, Packet};

/// CLOCK_REALTIME now, ns: the clock of capture timestamps.
pub fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn clk_tck() -> f64 {
    // SAFETY: plain libc call.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of a process (all its threads), in clock ticks.
fn ticks(pid: i32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces: count after the last ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let utime: u64 = f.get(11).context("no utime")?.parse()?;
    let stime: u64 = f.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Time on a CPU of every thread of a process, ns: the scheduler's own sum
/// (`/proc/PID/task/TID/schedstat`, first field), which counts user and kernel time
/// alike, to the nanosecond (utime + stime come in 10 ms ticks).
pub fn run_ns(pid: i32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("reading /proc/{pid}/task"))?
    {
        total += task_run_ns(&task?.path())?;
    }
    Ok(total)
}

/// Time on a CPU of one thread (`dir` is its /proc task directory), ns.
pub fn task_run_ns(dir: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(dir.join("schedstat"))
        .with_context(|| format!("reading {}/schedstat", dir.display()))?;
    Ok(text
        .split_whitespace()
        .next()
        .context("empty schedstat")?
        .parse()?)
}

/// Packets sent on `iface` in the network namespace of process `pid` (its
/// `/proc/PID/net/dev`).
pub fn tx_packets(pid: i32, iface: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .with_context(|| format!("reading /proc/{pid}/net/dev"))?;
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{iface}:")))
        .with_context(|| format!("no {iface} in /proc/{pid}/net/dev"))?;
    // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit:
    // bytes packets ...
    Ok(line
        .split_whitespace()
        .nth(9)
        .context("malformed /proc/net/dev")?
        .parse()?)
}

/// Context switches (voluntary + involuntary) of every thread of a process: each is the
/// process going to sleep or being put aside, so a sleeping agent's count stands still.
fn switches(pid: i32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("reading /proc/{pid}/task"))?
    {
        let status = std::fs::read_to_string(task?.path().join("status"))?;
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>()?;
            }
        }
    }
    Ok(total)
}

/// Wake-ups of a set of processes over a wall-clock window, from their context switches.
pub struct WakeMeter {
    pids: Vec<i32>,
    switches: u64,
    start: Instant,
}

impl WakeMeter {
    pub fn start(pids: &[i32]) -> anyhow::Result<Self> {
        if pids.is_empty() {
            bail!("no process to measure");
        }
        let switches = pids
            .iter()
            .map(|&p| switches(p))
            .sum::<anyhow::Result<u64>>()?;
        Ok(Self {
            pids: pids.to_vec(),
            switches,
            start: Instant::now(),
        })
    }

    /// Wake-ups per second since `start`.
    pub fn per_second(&self) -> anyhow::Result<f64> {
        let now = self
            .pids
            .iter()
            .map(|&p| switches(p))
            .sum::<anyhow::Result<u64>>()?;
        Ok(now.saturating_sub(self.switches) as f64 / self.start.elapsed().as_secs_f64())
    }
}

/// Resident memory of a process, KiB (VmRSS).
pub fn rss_kib(pid: i32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed VmRSS")?
        .parse()?)
}

/// Sum of VmRSS over processes, KiB.
pub fn rss_sum(pids: &[i32]) -> anyhow::Result<u64> {
    if pids.is_empty() {
        bail!("no process to measure");
    }
    pids.iter().map(|&p| rss_kib(p)).sum()
}

/// CPU time of a set of processes over a wall-clock window.
pub struct CpuMeter {
    pids: Vec<i32>,
    ticks: u64,
    start: Instant,
}

impl CpuMeter {
    pub fn start(pids: &[i32]) -> anyhow::Result<Self> {
        if pids.is_empty() {
            bail!("no process to measure");
        }
        let ticks = pids
            .iter()
            .map(|&p| ticks(p))
            .sum::<anyhow::Result<u64>>()?;
        Ok(Self {
            pids: pids.to_vec(),
            ticks,
            start: Instant::now(),
        })
    }

    /// Percent of one core used since `start`.
    pub fn percent(&self) -> anyhow::Result<f64> {
        let now = self
            .pids
            .iter()
            .map(|&p| ticks(p))
            .sum::<anyhow::Result<u64>>()?;
        let secs = self.start.elapsed().as_secs_f64();
        Ok(now.saturating_sub(self.ticks) as f64 / clk_tck() / secs * 100.0)
    }
}

/// One VRRP advert seen on the wire.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    pub ts: u64,
    pub src: IpAddr,
    pub prio: u8,
}

/// A tcpdump capture read incrementally while it runs.
pub struct Tail {
    cap: Option<Capture>,
    file: std::fs::File,
    buf: Vec<u8>,
    nano: Option<bool>,
    pub adverts: Vec<Seen>,
}

impl Tail {
    pub fn start(host: &vigil_tests::Host, path: &Path) -> anyhow::Result<Self> {
        let cap = Capture::start(host, "eth0", "ip proto 112", path)?;
        // tcpdump writes the file header once it is listening; give it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) < 24 {
            if Instant::now() > deadline {
                bail!("{}: tcpdump wrote no pcap header", path.display());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Self {
            cap: Some(cap),
            file: std::fs::File::open(path)?,
            buf: Vec::new(),
            nano: None,
            adverts: Vec::new(),
        })
    }

    /// Reads what tcpdump wrote since the last call.
    pub fn poll(&mut self) -> anyhow::Result<&[Seen]> {
        self.file.read_to_end(&mut self.buf)?;
        if self.nano.is_none() {
            if self.buf.len() < 24 {
                return Ok(&self.adverts);
            }
            let magic = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            self.nano = Some(match magic {
                0xa1b2_3c4d => true,
                0xa1b2_c3d4 => false,
                _ => bail!("unsupported pcap magic {magic:#x}"),
            });
            self.buf.drain(..24);
        }
        let nano = self.nano == Some(true);
        let mut packets = Vec::new();
        let mut off = 0;
        while off + 16 <= self.buf.len() {
            let b = &self.buf;
            let word = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
            let (sec, frac, caplen) = (word(off), word(off + 4), word(off + 8) as usize);
            if off + 16 + caplen > b.len() {
                break;
            }
            packets.push(Packet {
                ts_ns: u64::from(sec) * 1_000_000_000
                    + u64::from(frac) * if nano { 1 } else { 1000 },
                data: b[off + 16..off + 16 + caplen].to_vec(),
            });
            off += 16 + caplen;
        }
        self.buf.drain(..off);
        self.adverts.extend(
            vigil_tests::agent::adverts(&packets)
                .into_iter()
                .map(|(ts, src, prio)| Seen { ts, src, prio }),
        );
        Ok(&self.adverts)
    }

    /// Polls until `pred` holds on the adverts seen so far, or `within` passes.
    pub fn wait_for(
        &mut self,
        within: Duration,
        mut pred: impl FnMut(&[Seen]) -> bool,
    ) -> anyhow::Result<bool> {
        let deadline = Instant::now() + within;
        loop {
            if pred(self.poll()?) {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops tcpdump; the adverts read so far stay.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(c) = self.cap.take() {
            c.stop()?;
        }
        self.poll()?;
        Ok(())
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        if let Some(c) = self.cap.take() {
            let _ = c.stop();
        }
    }
}

/// Order statistics of a sample.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub p95: f64,
    pub max: f64,
}

/// Median (mean of the middle two for even n) and p95 by nearest rank (with 10 values
/// the largest).
pub fn stats(values: &[f64]) -> Option<Stats> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
    Some(Stats {
        n,
        min: v[0],
        median,
        p95: v[rank - 1],
        max: v[n - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_p95_and_median() {
        let s = stats(&[5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0]).expect("stats");
        assert_eq!((s.min, s.median, s.p95, s.max), (1.0, 5.5, 10.0, 10.0));
        let s = stats(&(1..=100).map(f64::from).collect::<Vec<_>>()).expect("stats");
        assert_eq!(s.p95, 95.0);
        assert_eq!(stats(&[2.0]).expect("stats").median, 2.0);
        assert!(stats(&[]).is_none());
    }
}

/// How far late a 1 ms sleep may wake before it counts as a stall.
const STALL_SLACK_NS: u64 = 2_000_000;

/// The machine's own stalls over a window: one SCHED_FIFO thread per CPU sleeps 1 ms at
/// a time and notes when it woke late. A stall of every CPU at once freezes both nodes of
/// a lab (namespaces of one machine), their timers and their packets alike.
pub struct StallMeter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<(u64, u64)>>>,
}

/// What a [`StallMeter`] saw.
#[derive(Clone, Debug, Default)]
pub struct Stalls {
    /// The longest time one CPU ran nothing of real-time priority 20, ms.
    pub longest_one_ms: f64,
    /// The longest time every CPU did so at once, ms.
    pub longest_all_ms: f64,
    /// Stalls of every CPU at once of 20 ms or more.
    pub all_over_20ms: usize,
    /// Stalls of one CPU of 20 ms or more (a node's BFD thread, or the softirq carrying
    /// its packets, may be on that CPU).
    pub one_over_20ms: usize,
    /// Every stall of every CPU at once, (start, end) in monotonic ns.
    pub all_spans: Vec<(u64, u64)>,
}

impl Stalls {
    /// The longest stall of every CPU at once within monotonic `[from, to]`, ms.
    pub fn longest_all_within_ms(&self, from: u64, to: u64) -> f64 {
        self.all_spans
            .iter()
            .map(|&(a, b)| b.min(to).saturating_sub(a.max(from)))
            .max()
            .unwrap_or(0) as f64
            / 1e6
    }
}

impl StallMeter {
    /// Starts one thread per CPU (real-time priority when allowed: then only the kernel
    /// and the host can hold it back).
    pub fn start() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..cpus)
            .map(|cpu| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    pin_realtime(cpu);
                    let mut stalls = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let t0 = vigil_tests::netns::monotonic_ns();
                        std::thread::sleep(Duration::from_millis(1));
                        let t1 = vigil_tests::netns::monotonic_ns();
                        if t1 - t0 > 1_000_000 + STALL_SLACK_NS {
                            stalls.push((t0 + 1_000_000, t1));
                        }
                    }
                    stalls
                })
            })
            .collect();
        Self { stop, threads }
    }

    pub fn stop(self) -> Stalls {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let per_cpu: Vec<Vec<(u64, u64)>> = self
            .threads
            .into_iter()
            .map(|t| t.join().unwrap_or_default())
            .collect();
        let longest = |v: &[(u64, u64)]| v.iter().map(|(a, b)| b - a).max().unwrap_or(0);
        let one = per_cpu.iter().map(|v| longest(v)).max().unwrap_or(0);
        // Every CPU at once: the intersection of all CPUs' stalls.
        let all = per_cpu
            .iter()
            .skip(1)
            .fold(per_cpu.first().cloned().unwrap_or_default(), |acc, v| {
                intersect(&acc, v)
            });
        Stalls {
            longest_one_ms: one as f64 / 1e6,
            longest_all_ms: longest(&all) as f64 / 1e6,
            all_over_20ms: all.iter().filter(|(a, b)| b - a >= 20_000_000).count(),
            one_over_20ms: per_cpu
                .iter()
                .flatten()
                .filter(|(a, b)| b - a >= 20_000_000)
                .count(),
            all_spans: all,
        }
    }
}

/// The calling thread on `cpu`, at SCHED_FIFO 20 if allowed.
fn pin_realtime(cpu: usize) {
    // SAFETY: plain syscalls on the calling thread with valid arguments.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        let param = libc::sched_param { sched_priority: 20 };
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &param);
    }
}

/// Overlaps of two sorted lists of intervals.
fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let lo = a[i].0.max(b[j].0);
        let hi = a[i].1.min(b[j].1);
        if lo < hi {
            out.push((lo, hi));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod stall_tests {
    use super::intersect;

    #[test]
    fn only_overlaps_count() {
        let a = [(0, 10), (20, 50), (60, 70)];
        let b = [(5, 25), (30, 40), (65, 100)];
        assert_eq!(
            intersect(&a, &b),
            vec![(5, 10), (20, 25), (30, 40), (65, 70)]
        );
        assert!(intersect(&a, &[]).is_empty());
    }

    #[test]
    fn stalls_within_a_window_are_clipped_to_it() {
        let s = super::Stalls {
            all_spans: vec![(0, 30_000_000), (100_000_000, 125_000_000)],
            ..Default::default()
        };
        // The first stall only partly in the window, the second not at all.
        assert_eq!(s.longest_all_within_ms(20_000_000, 90_000_000), 10.0);
        assert_eq!(s.longest_all_within_ms(0, 200_000_000), 30.0);
        assert_eq!(s.longest_all_within_ms(40_000_000, 90_000_000), 0.0);
    }
}
