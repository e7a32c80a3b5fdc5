//! How late a takeover's first advert leaves, stage by stage: the down deadline, the
//! kernel's timer writing its silence event, the agent's loop waking for it, the advert
//! sent. Logged at debug level (target `vigil::daemon::wake`), one line per takeover, so
//! a late takeover can be laid at the right door: a late kernel timer, a slow wake-up of
//! the agent (the scheduler), or work before the send.

use crate::vrrp::Instant;

/// What woke a Backup for its down deadline, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wake {
    /// The Master_Down_Timer's expiry.
    pub deadline: Instant,
    /// When the kernel's timer wrote its silence event; `None` when the agent's own
    /// timer kept the deadline.
    pub kernel: Option<Instant>,
    /// When the agent's loop woke and read it.
    pub woke: Instant,
    /// When the election's work was done and the advert went to the socket.
    pub sending: Option<Instant>,
}

/// Microseconds from `from` to `to`, negative when `to` is earlier.
fn micros(from: Instant, to: Instant) -> f64 {
    (to.as_nanos() as f64 - from.as_nanos() as f64) / 1e3
}

impl Wake {
    /// The stages after the deadline, µs: kernel event (if any), agent awake, advert
    /// handed to the socket (if known), advert sent.
    pub fn stages(&self, sent: Instant) -> (Option<f64>, f64, Option<f64>, f64) {
        (
            self.kernel.map(|k| micros(self.deadline, k)),
            micros(self.deadline, self.woke),
            self.sending.map(|s| micros(self.deadline, s)),
            micros(self.deadline, sent),
        )
    }

    /// Logs the stages of the takeover whose first advert left at `sent`.
    pub fn log(&self, instance: &str, sent: Instant) {
        let (kernel_us, woke_us, sending_us, sent_us) = self.stages(sent);
        let tenth = |us: f64| (us * 10.0).round() / 10.0;
        tracing::debug!(
            instance,
            timer = if self.kernel.is_some() {
                "kernel"
            } else {
                "agent"
            },
            kernel_us = kernel_us.map_or(-1.0, tenth),
            woke_us = tenth(woke_us),
            sending_us = sending_us.map_or(-1.0, tenth),
            sent_us = tenth(sent_us),
            "first advert as Master, after the down deadline"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_count_from_the_deadline() {
        let w = Wake {
            deadline: Instant::from_nanos(1_000_000),
            kernel: Some(Instant::from_nanos(1_012_000)),
            woke: Instant::from_nanos(1_040_000),
            sending: Some(Instant::from_nanos(1_090_000)),
        };
        assert_eq!(
            w.stages(Instant::from_nanos(1_100_500)),
            (Some(12.0), 40.0, Some(90.0), 100.5)
        );
        let early = Wake {
            kernel: None,
            woke: Instant::from_nanos(999_000),
            sending: None,
            ..w
        };
        assert_eq!(early.stages(Instant::from_nanos(999_500)).1, -1.0);
    }
}
