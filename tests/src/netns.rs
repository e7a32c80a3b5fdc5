//! Running code inside a network namespace from the test process.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{Context, bail};

/// CLOCK_MONOTONIC now, in ns: the clock of the XDP program's timestamps.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs `f` on a fresh thread that has joined namespace `ns`; the test's own threads
/// stay where they are.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        // SAFETY: valid fd of a namespace file; affects only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {path}: {}", std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread in {ns} panicked"))?
}

/// An AF_PACKET socket bound for sending on one interface of the calling thread's
/// namespace; closed on drop, so no early return leaks it.
struct PacketSocket {
    fd: i32,
    addr: libc::sockaddr_ll,
}

impl PacketSocket {
    /// Opens the socket for `iface`, which must exist in this thread's namespace.
    fn open(iface: &std::ffi::CStr) -> anyhow::Result<Self> {
        // SAFETY: plain syscalls on values we own; `Drop` closes the fd.
        unsafe {
            let index = libc::if_nametoindex(iface.as_ptr());
            if index == 0 {
                bail!("no interface {iface:?}");
            }
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            if fd < 0 {
                bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
            }
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = index as i32;
            addr.sll_halen = 6;
            Ok(Self { fd, addr })
        }
    }

    /// Sends one whole frame; returns the CLOCK_MONOTONIC time (ns) it was handed over.
    fn send(&self, frame: &[u8]) -> anyhow::Result<u64> {
        let at = monotonic_ns();
        if self.sendto(frame) < 0 {
            bail!("sendto: {}", std::io::Error::last_os_error());
        }
        Ok(at)
    }

    /// Sends one frame if the kernel takes it now; whether it did (a flood's send).
    fn try_send(&self, frame: &[u8]) -> bool {
        self.sendto(frame) > 0
    }

    fn sendto(&self, frame: &[u8]) -> isize {
        // SAFETY: `frame` and `addr` outlive the call; the fd is open until drop.
        unsafe {
            libc::sendto(
                self.fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&self.addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        }
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: the fd was opened by `open` and is closed once, here.
        unsafe { libc::close(self.fd) };
    }
}

/// Sends frames on `iface` in `ns` through an AF_PACKET socket, pausing `gap` after
/// each; returns the CLOCK_MONOTONIC time (ns) of each send.
pub fn send_frames(
    ns: &str,
    iface: &str,
    frames: &[Vec<u8>],
    gap: Duration,
) -> anyhow::Result<Vec<u64>> {
    let iface = std::ffi::CString::new(iface)?;
    let frames = frames.to_vec();
    in_netns(ns, move || {
        let socket = PacketSocket::open(&iface)?;
        let mut times = Vec::with_capacity(frames.len());
        for f in &frames {
            times.push(socket.send(f)?);
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
        }
        Ok(times)
    })
}

/// Sends frame `i` at `offsets[i]` after the start (from the start, so one late send
/// does not push the others back), from a thread at SCHED_FIFO where the kernel grants
/// it (a busy machine then stretches no gap by much); returns the CLOCK_MONOTONIC time
/// (ns) of each send.
pub fn send_frames_at(
    ns: &str,
    iface: &str,
    frames: &[Vec<u8>],
    offsets: &[Duration],
) -> anyhow::Result<Vec<u64>> {
    if frames.len() != offsets.len() {
        bail!("{} frames but {} send times", frames.len(), offsets.len());
    }
    let iface = std::ffi::CString::new(iface)?;
    let frames = frames.to_vec();
    let offsets = offsets.to_vec();
    in_netns(ns, move || {
        let param = libc::sched_param { sched_priority: 10 };
        // SAFETY: changes only this thread's scheduling. Best effort: without the
        // privilege the sender stays normal.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        let socket = PacketSocket::open(&iface)?;
        let start = std::time::Instant::now();
        let mut times = Vec::with_capacity(frames.len());
        for (f, at) in frames.iter().zip(&offsets) {
            if let Some(wait) = (start + *at).checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
            times.push(socket.send(f)?);
        }
        Ok(times)
    })
}

/// Sends frames as fast as one thread can for `duration`, cycling through `frames`;
/// returns how many were sent.
pub fn flood(ns: &str, iface: &str, frames: &[Vec<u8>], duration: Duration) -> anyhow::Result<u64> {
    let iface = std::ffi::CString::new(iface)?;
    let frames = frames.to_vec();
    in_netns(ns, move || {
        let socket = PacketSocket::open(&iface)?;
        let end = std::time::Instant::now() + duration;
        let mut sent = 0u64;
        let mut tries = 0u64;
        'outer: loop {
            for f in &frames {
                if socket.try_send(f) {
                    sent += 1;
                }
                // Count tries, not successes: a send that fails or blocks must not
                // stretch the flood past its end.
                tries += 1;
                if tries.is_multiple_of(1024) && std::time::Instant::now() >= end {
                    break 'outer;
                }
            }
        }
        Ok(sent)
    })
}
