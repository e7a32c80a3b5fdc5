//! The election's clock: CLOCK_MONOTONIC, the clock of the XDP program's timestamps.

use std::time::Duration;

use crate::vrrp::Instant;

/// Now on CLOCK_MONOTONIC.
pub fn now() -> Instant {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Instant::from_nanos(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// The tokio instant at which the monotonic `deadline` falls.
pub fn to_tokio(deadline: Instant) -> tokio::time::Instant {
    let left: Duration = deadline.saturating_duration_since(now());
    tokio::time::Instant::now() + left
}
