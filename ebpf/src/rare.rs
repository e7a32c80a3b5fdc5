//! Rare events, told to the agent's log through aya-log: a full ring buffer, a timer that
//! would not start. Never per packet: each kind speaks at most once a second
//! per CPU, however often it happens (the counters in the maps count every one).
//!
//! Each reporter is a global (exported) function: the verifier checks a global function
//! once, on its own, from the types of its arguments, where a static one is checked
//! again for every state a call reaches it in. aya-log's record writing is long, and
//! reached from many paths of the packet code and the timer callback; verified per call
//! it was most of the program's verification.

use aya_ebpf::{btf_maps::PerCpuArray, helpers::bpf_ktime_get_ns, macros::btf_map};

/// Kinds of rare event, indexing `LOG_GATE`.
const RING_FULL: u32 = 0;
const TIMER_FAILED: u32 = 1;
const KINDS: usize = 2;
/// Quietest gap between two lines of one kind on one CPU.
const GAP_NS: u64 = 1_000_000_000;

/// When each kind last spoke on this CPU.
#[btf_map(name = "log_gate")]
static LOG_GATE: PerCpuArray<u64, KINDS> = PerCpuArray::new();

#[inline(always)]
fn may_speak(kind: u32) -> bool {
    let Some(last) = LOG_GATE.get_ptr_mut(kind) else {
        return false;
    };
    // SAFETY: a per-CPU array element; only this CPU's program touches it.
    let last = unsafe { &mut *last };
    // SAFETY: plain helper.
    let now = unsafe { bpf_ktime_get_ns() };
    if *last != 0 && now.saturating_sub(*last) < GAP_NS {
        return false;
    }
    *last = now;
    true
}

/// The ring buffer to the agent is full: the agent falls behind and an event was lost.
#[inline(always)]
pub fn ring_full(vrid: u8) {
    vigil_log_ring_full(u32::from(vrid));
}

/// `bpf_timer_init`, `bpf_timer_set_callback` or `bpf_timer_start` refused; the agent
/// keeps this VRID's deadline itself.
#[inline(always)]
pub fn timer_failed(vrid: u8, rc: i64) {
    vigil_log_timer_failed(u32::from(vrid), rc);
}

// Global functions must return a scalar; the value means nothing.

#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn vigil_log_ring_full(vrid: u32) -> i32 {
    if may_speak(RING_FULL) {
        aya_log_ebpf::warn!(
            &(),
            "ring buffer full: an event of VRID {} was lost (the agent is not reading)",
            vrid
        );
    }
    0
}

#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn vigil_log_timer_failed(vrid: u32, rc: i64) -> i32 {
    if may_speak(TIMER_FAILED) {
        aya_log_ebpf::error!(
            &(),
            "down timer of VRID {} could not be armed: error {}",
            vrid,
            rc
        );
    }
    0
}

/// A BFD session's detection timer could not be armed; the agent keeps its detection
/// time itself.
#[inline(always)]
pub fn bfd_timer_failed(discriminator: u32) {
    vigil_log_bfd_timer_failed(discriminator);
}

#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn vigil_log_bfd_timer_failed(discriminator: u32) -> i32 {
    if may_speak(TIMER_FAILED) {
        aya_log_ebpf::error!(
            &(),
            "BFD detection timer of session {} could not be armed",
            discriminator
        );
    }
    0
}
