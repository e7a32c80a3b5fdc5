//! vigil's monotonic time: nanoseconds on the CLOCK_MONOTONIC scale.
//!
//! The XDP program stamps each advertisement with `bpf_ktime_get_ns()`, which reads
//! CLOCK_MONOTONIC; [`Instant::from_nanos`] takes that value as it is, so a kernel arrival
//! time and the agent's own `clock_gettime(CLOCK_MONOTONIC)` share one scale without
//! conversion or loss. The election never reads a clock: time is an argument.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in CLOCK_MONOTONIC time, in nanoseconds since that clock's zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// CLOCK_MONOTONIC's zero.
    pub const ZERO: Instant = Instant(0);

    /// From nanoseconds, as `bpf_ktime_get_ns()` returns them.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    /// Nanoseconds since CLOCK_MONOTONIC's zero.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// From a duration since CLOCK_MONOTONIC's zero (as `clock_gettime` gives it);
    /// saturates after 584 years.
    pub fn from_duration(since_zero: Duration) -> Instant {
        Instant(duration_nanos(since_zero))
    }

    /// The duration since CLOCK_MONOTONIC's zero.
    pub const fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, or `None` past the end of the scale.
    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        u64::try_from(d.as_nanos())
            .ok()
            .and_then(|n| self.0.checked_add(n))
            .map(Instant)
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// Saturating rather than panicking: a clock value from outside (a corrupt ring-buffer
// record, say) must not be able to crash the election.
impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_nanos(d)))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(duration_nanos(d)))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}s",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_nanoseconds_round_trip_losslessly() {
        for ns in [0, 1, 999_999_999, 1_795_919_942_117_107_542, u64::MAX] {
            assert_eq!(Instant::from_nanos(ns).as_nanos(), ns);
            assert_eq!(
                Instant::from_duration(Instant::from_nanos(ns).as_duration()).as_nanos(),
                ns
            );
        }
    }

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let t = Instant::from_nanos(10);
        assert_eq!(t + Duration::from_nanos(5), Instant::from_nanos(15));
        assert_eq!(t - Duration::from_nanos(20), Instant::ZERO);
        assert_eq!(t - Instant::from_nanos(20), Duration::ZERO);
        assert_eq!(Instant::from_nanos(20) - t, Duration::from_nanos(10));
        assert_eq!(t + Duration::MAX, Instant::from_nanos(u64::MAX));
        assert_eq!(t.checked_add(Duration::MAX), None);
        assert!(Instant::from_nanos(1) < Instant::from_nanos(2));
        assert_eq!(
            Instant::from_nanos(1_500_000_000).to_string(),
            "1.500000000s"
        );
    }
}
