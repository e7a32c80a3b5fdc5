//! Single-hop BFD receive (RFC 5881) and detection in the kernel.
//!
//! A frame that is not VRRP is looked at once more: a UDP datagram to port 3784 is judged
//! by `vigil_common::bfd` (the checks the agent's socket path runs too). Invalid packets
//! are dropped (RFC 5880 §6.8.6: MUST be discarded). A valid packet whose Your
//! Discriminator names a session the agent published in `bfd_params` is recorded in
//! `bfd_state` and consumed (`XDP_DROP`): the agent has no use for it in its socket,
//! since the packets it must see reach it through the ring buffer — only the first, the
//! changed ones, and every Poll and Final. Everything else goes on to the stack.
//!
//! Each session with a detection time has a `bpf_timer` (map `bfd_timers`, never written
//! by the agent: a userspace write would cancel it). It is armed at the first recorded
//! packet for `arrival + detection time` and re-armed by every reported one, and by the
//! first packet after the agent published another detection time; in the steady state
//! the packet path only stores `last_ns`. When it fires, it re-arms itself
//! for `last_ns + detection time` while packets come, or writes one `EVENT_BFD_DOWN`
//! record and goes idle — unless it fired late, when it listens once more for a whole
//! detection time first (`vigil_common::bfd::expiry`).

use core::ffi::c_void;
use core::ptr::addr_of;

use aya_ebpf::{
    bindings::{BPF_F_TIMER_ABS, BPF_NOEXIST, bpf_timer, xdp_action},
    btf_maps::{HashMap, PerCpuArray, PerCpuHashMap},
    helpers::{bpf_ktime_get_ns, bpf_timer_init, bpf_timer_set_callback, bpf_timer_start},
    macros::btf_map,
    programs::XdpContext,
};
use vigil_common::bfd::{
    self, BFD_COUNT_DOWN, BFD_COUNT_RING_FULL, BFD_COUNTERS, BfdFrame, BfdIfaceStats, BfdParams,
    BfdRecord, BfdState, BfdVerdict, EVENT_BFD_DOWN, EVENT_BFD_PACKET, EVENT_BFD_TIMER_ERROR,
    Expiry, MAX_BFD_SESSIONS,
};
use vigil_common::maps::MAX_IFACES;

/// `bpf_timer_init` on a timer another CPU initialised first.
const EBUSY: i64 = -16;
/// CLOCK_MONOTONIC for `bpf_timer_init`: the clock of `bpf_ktime_get_ns`.
const CLOCK_MONOTONIC: u64 = 1;
/// Timer states, as in `timer.rs`.
const FRESH: u32 = 0;
const IDLE: u32 = 1;
const ARMED: u32 = 2;

/// A session's detection timer.
#[repr(C)]
pub struct BfdTimer {
    timer: bpf_timer,
    state: u32,
    _pad: u32,
    /// The detection time it was armed with: a new one (the agent agreed on other
    /// intervals) re-arms it at the next packet rather than at the old expiry.
    detect_ns: u64,
    /// `last_ns` of the silence it already listened past after running late (0: none).
    listened_for: u64,
}

#[btf_map(name = "bfd_params")]
static BFD_PARAMS: HashMap<u32, BfdParams, { MAX_BFD_SESSIONS as usize }> = HashMap::new();

#[btf_map(name = "bfd_state")]
static BFD_STATE: HashMap<u32, BfdState, { MAX_BFD_SESSIONS as usize }> = HashMap::new();

#[btf_map(name = "bfd_timers")]
static BFD_TIMERS: HashMap<u32, BfdTimer, { MAX_BFD_SESSIONS as usize }> = HashMap::new();

#[btf_map(name = "bfd_iface")]
static BFD_IFACE: PerCpuHashMap<u32, BfdIfaceStats, { MAX_IFACES as usize }> = PerCpuHashMap::new();

/// Per-CPU room for the parsed packet, off the 512-byte stack.
#[btf_map(name = "bfd_scratch")]
static BFD_SCRATCH: PerCpuArray<BfdFrame, 1> = PerCpuArray::new();

/// Judges a frame that is not VRRP; passes anything that is not single-hop BFD.
// Not inlined: its stack and its paths are verified apart from the VRRP code.
#[inline(never)]
pub fn judge(ctx: &XdpContext) -> u32 {
    let Some(f) = BFD_SCRATCH.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: entry 0 of a per-CPU array always exists; only this CPU's run touches it.
    let f = unsafe { &mut *f };
    if !bfd::parse(&crate::Xdp(ctx), f) {
        return xdp_action::XDP_PASS;
    }
    let ifindex = ctx.ingress_ifindex() as u32;
    match bfd::check(f) {
        Err(v) => {
            count(ifindex, v as usize);
            return xdp_action::XDP_DROP;
        }
        Ok(false) => {
            count(ifindex, BfdVerdict::Passed as usize);
            return xdp_action::XDP_PASS;
        }
        Ok(true) => {}
    }
    let disc = f.your_discriminator();
    let params = if disc != 0 {
        BFD_PARAMS.get_ptr(disc)
    } else {
        None
    };
    // SAFETY: a map value pointer, valid for this program run.
    let verdict = bfd::demux(f, params.map(|p| unsafe { &*p }), ifindex);
    let Some(p) = params.filter(|_| verdict == BfdVerdict::Recorded) else {
        count(ifindex, verdict as usize);
        return if verdict.passes() {
            xdp_action::XDP_PASS
        } else {
            xdp_action::XDP_DROP
        };
    };
    // Created by the agent with the parameters.
    let Some(s) = BFD_STATE.get_ptr_mut(disc) else {
        count(ifindex, BfdVerdict::Passed as usize);
        return xdp_action::XDP_PASS;
    };
    // SAFETY: map value pointers, valid for this run; another CPU recording the same
    // session at once can only make the state approximate (the agent reads it again).
    let (s, p) = unsafe { (&mut *s, &*p) };
    // SAFETY: plain helper.
    let ts = unsafe { bpf_ktime_get_ns() };
    let report = bfd::must_report(s, f, p.epoch);
    let written = report && emit_packet(ts, ifindex, disc, f, s.received + 1);
    bfd::record(s, f, ts, p.epoch, report, written);
    count(
        ifindex,
        if report {
            BfdVerdict::Reported as usize
        } else {
            BfdVerdict::Recorded as usize
        },
    );
    if p.detect_ns != 0 {
        arrival(disc, ts, p.detect_ns, report);
    }
    // Recorded in the kernel, and reported if the agent needs it: the socket would only
    // see it twice.
    xdp_action::XDP_DROP
}

/// Adds one to an interface's BFD counter `index`.
#[inline(always)]
fn count(ifindex: u32, index: usize) {
    let Some(stats) = BFD_IFACE.get_ptr_mut(ifindex) else {
        return;
    };
    if index >= BFD_COUNTERS {
        return;
    }
    // SAFETY: BfdIfaceStats is repr(C) of BFD_COUNTERS u64 counters (asserted in
    // common), index is below that, and the map is per CPU: nothing else writes this copy.
    unsafe {
        *(stats as *mut u64).add(index) += 1;
    }
}

#[inline(always)]
fn emit_packet(ts: u64, ifindex: u32, disc: u32, f: &BfdFrame, received: u64) -> bool {
    let Some(mut slot) = crate::EVENTS.reserve_untyped::<BfdRecord>(0) else {
        count(ifindex, BFD_COUNT_RING_FULL);
        return false;
    };
    // SAFETY: the slot is a reserved, writable BfdRecord-sized region, filled in place.
    unsafe {
        (*slot.as_mut_ptr()).fill(
            EVENT_BFD_PACKET,
            ts,
            ifindex,
            disc,
            f.family,
            &f.src,
            &f.header,
            received,
            0,
        );
    }
    slot.submit(0);
    true
}

/// A recorded packet of session `disc` at `ts`: the timer runs from it. `report`: the
/// agent heard of it, so the timer is restarted whatever its state.
#[inline(never)]
fn arrival(disc: u32, ts: u64, detect_ns: u64, report: bool) {
    if crate::timer::KERNEL_TIMERS.load() == 0 {
        return;
    }
    let Some(t) = slot(disc) else {
        return;
    };
    // SAFETY: a map value pointer, valid for this run.
    let t = unsafe { &mut *t };
    if t.state == ARMED && !report && t.detect_ns == detect_ns {
        return;
    }
    if t.state == FRESH {
        // SAFETY: `t.timer` lives in a BTF hash map of timers; the map pointer is its own.
        let rc = unsafe {
            bpf_timer_init(
                &mut t.timer,
                addr_of!(BFD_TIMERS) as *mut c_void,
                CLOCK_MONOTONIC,
            )
        };
        if rc != 0 && rc != EBUSY {
            timer_error(disc, ts);
            return;
        }
        // SAFETY: an initialised timer in its map; a function pointer, as the verifier
        // wants for a callback.
        let rc = unsafe { bpf_timer_set_callback(&mut t.timer, fired as *mut c_void) };
        if rc != 0 {
            timer_error(disc, ts);
            return;
        }
        t.state = IDLE;
    }
    t.detect_ns = detect_ns;
    start(disc, t, ts + detect_ns);
}

/// The timer element of `disc`, created on first use.
#[inline(always)]
fn slot(disc: u32) -> Option<*mut BfdTimer> {
    if let Some(t) = BFD_TIMERS.get_ptr_mut(disc) {
        return Some(t);
    }
    let fresh = BfdTimer {
        timer: bpf_timer { __opaque: [0; 2] },
        state: FRESH,
        _pad: 0,
        detect_ns: 0,
        listened_for: 0,
    };
    // Another CPU may have created it meanwhile: NOEXIST keeps its timer.
    let _ = BFD_TIMERS.insert(disc, &fresh, BPF_NOEXIST as u64);
    BFD_TIMERS.get_ptr_mut(disc)
}

#[inline(always)]
fn start(disc: u32, t: &mut BfdTimer, deadline: u64) {
    // SAFETY: an initialised timer in its map.
    let rc = unsafe { bpf_timer_start(&mut t.timer, deadline, BPF_F_TIMER_ABS as u64) };
    if rc == 0 {
        t.state = ARMED;
    } else {
        t.state = IDLE;
        timer_error(disc, deadline);
    }
}

/// The timer callback: re-arm while packets come, else report the detection timeout.
#[inline(never)]
unsafe extern "C" fn fired(_map: *mut c_void, key: *mut u32, t: *mut BfdTimer) -> i32 {
    // SAFETY: the kernel passes the element's key and value, valid during the callback.
    let (disc, t) = unsafe { (*key, &mut *t) };
    let (Some(p), Some(s)) = (BFD_PARAMS.get_ptr(disc), BFD_STATE.get_ptr_mut(disc)) else {
        // The agent removed the session.
        t.state = IDLE;
        return 0;
    };
    // SAFETY: map value pointers, valid during the callback.
    let (p, s) = unsafe { (&*p, &mut *s) };
    if p.detect_ns == 0 {
        t.state = IDLE;
        return 0;
    }
    let deadline = s.last_ns + p.detect_ns;
    t.detect_ns = p.detect_ns;
    // SAFETY: plain helper.
    let now = unsafe { bpf_ktime_get_ns() };
    if now < deadline {
        start(disc, t, deadline);
        return 0;
    }
    // Fired late: this host was not running its timers, so perhaps not its receive
    // queue either; listen a whole detection time before judging, once per silence.
    if let Expiry::Listen(until) =
        bfd::expiry(now, deadline, p.detect_ns, t.listened_for == s.last_ns)
    {
        t.listened_for = s.last_ns;
        start(disc, t, until);
        return 0;
    }
    // RFC 5880 §6.8.4: the detection time passed without a packet. The agent's session
    // decides; the next packet is reported whatever it says.
    t.state = IDLE;
    s.stale = 1;
    s.downs += 1;
    count(p.ifindex, BFD_COUNT_DOWN);
    emit_state(EVENT_BFD_DOWN, disc, p, s, deadline);
    0
}

/// Tells the agent the timer of `disc` could not be armed: it keeps the detection time.
#[inline(always)]
fn timer_error(disc: u32, deadline: u64) {
    vigil_bfd_timer_error(disc, deadline);
}

// A global function: the verifier checks it once, from its argument types, instead of
// again for every state each of its callers reaches it in.
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn vigil_bfd_timer_error(disc: u32, deadline: u64) -> i32 {
    crate::rare::bfd_timer_failed(disc);
    let (Some(p), Some(s)) = (BFD_PARAMS.get_ptr(disc), BFD_STATE.get_ptr(disc)) else {
        return 0;
    };
    // SAFETY: map value pointers, valid for this run.
    let (p, s) = unsafe { (&*p, &*s) };
    emit_state(EVENT_BFD_TIMER_ERROR, disc, p, s, deadline);
    0
}

#[inline(always)]
fn emit_state(event: u8, disc: u32, p: &BfdParams, s: &BfdState, deadline: u64) {
    let Some(mut slot) = crate::EVENTS.reserve_untyped::<BfdRecord>(0) else {
        count(p.ifindex, BFD_COUNT_RING_FULL);
        return;
    };
    // SAFETY: a reserved, writable BfdRecord-sized slot, filled in place.
    unsafe {
        (*slot.as_mut_ptr()).fill(
            event, s.last_ns, p.ifindex, disc, p.family, &p.peer, &s.header, s.received, deadline,
        );
    }
    slot.submit(0);
}
