//! Real-time scheduling for the agent's threads whose wake-ups are deadlines: the
//! election loop (it reads the kernel's silence events and sends the takeover's first
//! advert) and the BFD thread.
//!
//! Under the normal scheduler a thread that wakes on a CPU running busy tasks waits for
//! the running one's time slice, milliseconds on a loaded host; a Master_Down_Interval
//! of 16 ms (10 ms adverts, `down_timer_adverts = 1`) has no room for that. SCHED_FIFO
//! runs the woken thread at once. The agent sleeps between deadlines, so the class costs
//! other tasks nothing in the steady state.
//!
//! It is asked for, never required: without CAP_SYS_NICE (or with systemd's
//! `RestrictRealtime=yes`) the thread stays normal and the log says so once.
//! `SCHED_RESET_ON_FORK` keeps the class to the thread itself: scripts and helper
//! threads it starts run at normal priority.

/// What became of a request for real-time scheduling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The thread runs at SCHED_FIFO with this priority.
    Realtime(i32),
    /// `realtime_priority = 0`: the thread runs at normal priority by choice.
    Off,
    /// The kernel refused (the error); the thread runs at normal priority.
    Refused(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Realtime(p) => write!(f, "SCHED_FIFO priority {p}"),
            Self::Off => write!(f, "normal priority (realtime_priority = 0)"),
            Self::Refused(why) => write!(f, "normal priority (SCHED_FIFO refused: {why})"),
        }
    }
}

/// Puts the calling thread in SCHED_FIFO at `priority` (1–99; 0 asks for nothing), and
/// logs what became of it for `thread`.
pub fn realtime(thread: &str, priority: u8) -> Outcome {
    let outcome = set_fifo(priority);
    match &outcome {
        Outcome::Refused(_) => tracing::info!("{thread} at {outcome}"),
        _ => tracing::debug!("{thread} at {outcome}"),
    }
    outcome
}

/// As [`realtime`], one priority above `priority` where the kernel allows it (the
/// threads whose deadlines are tighter than the election loop's: a busy loop at
/// `priority`, on the CPU they wait for, would otherwise hold them), else at `priority`.
pub fn realtime_above(thread: &str, priority: u8) -> Outcome {
    if priority == 0 {
        return realtime(thread, 0);
    }
    match set_fifo(priority.saturating_add(1).min(99)) {
        outcome @ Outcome::Realtime(_) => {
            tracing::debug!("{thread} at {outcome}");
            outcome
        }
        _ => realtime(thread, priority),
    }
}

fn set_fifo(priority: u8) -> Outcome {
    if priority == 0 {
        return Outcome::Off;
    }
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: plain syscall on the calling thread (0) with a valid parameter.
    let ret = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if ret == 0 {
        Outcome::Realtime(i32::from(priority))
    } else {
        Outcome::Refused(std::io::Error::last_os_error().to_string())
    }
}

/// The calling thread's scheduling policy, without the reset-on-fork flag.
pub fn policy() -> i32 {
    // SAFETY: plain syscall on the calling thread.
    unsafe { libc::sched_getscheduler(0) & !libc::SCHED_RESET_ON_FORK }
}

/// The CPUs the calling thread may run on, in ascending order (empty if the kernel
/// does not say).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: all-zero is an empty CPU set; plain syscall on the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Binds the calling thread to `cpus`.
pub fn pin(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: all-zero is an empty CPU set; CPU_SET stays within it (indices checked);
    // plain syscall on the calling thread.
    let ret = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread of its own, so the test runner's thread keeps its class.
    fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().expect("test thread")
    }

    #[test]
    fn pinned_thread_runs_only_where_pinned() {
        let (before, after) = on_thread(|| {
            let before = allowed_cpus();
            let first = before.first().copied();
            if let Some(c) = first {
                pin(&[c]).expect("pinning to an allowed CPU");
            }
            (before, allowed_cpus())
        });
        assert!(!before.is_empty(), "a thread runs somewhere");
        assert_eq!(after, vec![before[0]]);
    }

    #[test]
    fn above_is_one_higher_where_allowed_and_never_off_by_choice() {
        let (outcome, mine) = on_thread(|| (realtime_above("test", 10), policy()));
        match outcome {
            Outcome::Realtime(p) => {
                // 11 when allowed; 10 under an RLIMIT_RTPRIO of 10 without CAP_SYS_NICE.
                assert!(p == 11 || p == 10, "{p}");
                assert_eq!(mine, libc::SCHED_FIFO);
            }
            Outcome::Refused(_) => assert_eq!(mine, libc::SCHED_OTHER),
            Outcome::Off => panic!("priority 10 is a request"),
        }
        let (off, policy) = on_thread(|| (realtime_above("test", 0), policy()));
        assert_eq!(off, Outcome::Off);
        assert_eq!(policy, libc::SCHED_OTHER);
    }

    #[test]
    fn zero_asks_for_nothing() {
        let (outcome, policy) = on_thread(|| (realtime("test", 0), policy()));
        assert_eq!(outcome, Outcome::Off);
        assert_eq!(policy, libc::SCHED_OTHER);
    }

    #[test]
    fn fifo_when_allowed_and_not_inherited() {
        let (outcome, mine, child) = on_thread(|| {
            let outcome = realtime("test", 10);
            let mine = policy();
            let child = std::thread::spawn(policy).join().expect("child thread");
            (outcome, mine, child)
        });
        match outcome {
            Outcome::Realtime(p) => {
                assert_eq!(p, 10);
                assert_eq!(mine, libc::SCHED_FIFO);
            }
            // Without CAP_SYS_NICE (or under RLIMIT_RTPRIO 0) the thread stays normal.
            Outcome::Refused(_) => assert_eq!(mine, libc::SCHED_OTHER),
            Outcome::Off => panic!("priority 10 is a request"),
        }
        // Threads (and processes) started from it run at normal priority.
        assert_eq!(child, libc::SCHED_OTHER);
    }
}
