//! A nanosecond-precise wake-up on CLOCK_MONOTONIC, the election's clock.
//!
//! tokio's timers round deadlines up to whole milliseconds; a down timer that fires up to
//! a millisecond late is a takeover a millisecond late. A timerfd armed at the absolute
//! deadline wakes the loop when the election asked, to the nanosecond the kernel manages.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use crate::vrrp::Instant;

/// A one-shot timer on CLOCK_MONOTONIC, re-armed for each wait.
pub struct MonoTimer {
    fd: AsyncFd<OwnedFd>,
}

impl MonoTimer {
    /// Creates the timerfd.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the fd is owned at once.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd nobody else owns; AsyncFd keeps it open while it lives.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the OwnedFd moves into the AsyncFd and stays open as long as it.
        Ok(Self {
            fd: unsafe { AsyncFd::register(fd)? },
        })
    }

    /// Waits until CLOCK_MONOTONIC reaches `deadline` (at once if it has).
    pub async fn sleep_until(&self, deadline: Instant) -> io::Result<()> {
        // An all-zero it_value disarms a timerfd; a deadline at 0 ns is long past anyway.
        let ns = deadline.as_nanos().max(1);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            },
        };
        let fd = self.fd.get_ref().as_raw_fd();
        // SAFETY: valid fd and a valid itimerspec; the old value is not asked for.
        if unsafe {
            libc::timerfd_settime(fd, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut())
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: reading 8 bytes into an 8-byte buffer from our own fd.
            let n = unsafe { libc::read(fd, expirations.as_mut_ptr().cast(), expirations.len()) };
            if n == 8 {
                // Read, the timerfd stays unreadable until it expires again: saying so
                // spares the next wait a read that would only find EAGAIN.
                guard.clear_ready();
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(err);
            }
            guard.clear_ready();
        }
    }
}

/// Keeps the CPU until CLOCK_MONOTONIC reaches `deadline`, for waits of a few ms at
/// most: a sleeping thread on an idle CPU wakes 0.1–0.5 ms late, now and then several ms.
pub fn spin_until(deadline: Instant) {
    while crate::clock::now() < deadline {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_at_the_deadline_not_before() {
        let timer = MonoTimer::new().expect("timerfd");
        let start = crate::clock::now();
        let deadline = start + std::time::Duration::from_micros(2500);
        timer.sleep_until(deadline).await.expect("wait");
        assert!(crate::clock::now() >= deadline);
        // A deadline in the past returns at once.
        timer.sleep_until(start).await.expect("wait");
    }

    #[test]
    fn spins_to_the_deadline_not_before() {
        let deadline = crate::clock::now() + std::time::Duration::from_micros(300);
        spin_until(deadline);
        assert!(crate::clock::now() >= deadline);
    }
}
