//! Where start-up time goes: each phase from `vigil run` to READY logged at debug level
//! (`VIGIL_LOG=vigil=debug`), with its own duration and the time since the start.

use std::time::Instant;

/// A stopwatch over the start-up phases.
pub struct Phases {
    start: Instant,
    last: Instant,
}

impl Phases {
    /// Starts timing now.
    pub fn start() -> Self {
        let now = Instant::now();
        Self {
            start: now,
            last: now,
        }
    }

    /// Logs the phase that just ended.
    pub fn done(&mut self, phase: &'static str) {
        let now = Instant::now();
        tracing::debug!(
            phase,
            ms = ms(now - self.last),
            since_start_ms = ms(now - self.start),
            "start-up phase done"
        );
        self.last = now;
    }
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}
