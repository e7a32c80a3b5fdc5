//! The kernel-resident Master_Down_Timer: one `bpf_timer` per watched VRID.
//!
//! The packet path arms it at an advert's arrival for `arrival + Master_Down_Interval`
//! less a small lead (absolute CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns`; the lead
//! lets the agent be awake at the deadline, see `alarm_ns`) when it is idle, and again
//! whenever the advert is reported to the agent, so every advert the agent hears has
//! (re-)armed it. In the steady state the packet path only records `last_ns` in
//! `vrid_stats`; when the timer fires, the callback recomputes the deadline from the
//! newest arrival and re-arms itself for the remainder while the Master is alive, or
//! writes one ring event "silent since T, deadline D" and goes idle. The agent's election
//! decides what the silence means; the kernel only wakes it.
//!
//! The timers live in their own array, at the VRID's slot, that userspace writes only to
//! cancel a timer (an update of an element from userspace cancels its timer); the agent's
//! parameters live in `down_params` at the same slot. A VRID without parameters
//! (`adverts` 0) gets no kernel timer, and the agent keeps the deadline itself.

use core::ffi::c_void;
use core::ptr::addr_of;

use aya_ebpf::{
    Global,
    bindings::{BPF_F_TIMER_ABS, bpf_timer},
    btf_maps::Array,
    helpers::{bpf_ktime_get_ns, bpf_timer_init, bpf_timer_set_callback, bpf_timer_start},
    macros::btf_map,
};
use vigil_common::{
    DownParams, VridKey, VridStats, WatchEntry,
    down::{RETRY_NS, alarm_ns, deadline_ns, interval_ns},
    event::{EVENT_SILENCE, EVENT_TIMER_ERROR},
    maps::MAX_WATCHED,
    validate::{VERDICTS, WATCH_REPORT_ALL},
};

/// `bpf_timer_init` on a timer another CPU initialised first.
const EBUSY: i64 = -16;

/// CLOCK_MONOTONIC for `bpf_timer_init`: the clock of `bpf_ktime_get_ns`.
const CLOCK_MONOTONIC: u64 = 1;

/// Never initialised in this map's life.
const FRESH: u32 = 0;
/// Initialised, not armed.
const IDLE: u32 = 1;
/// Armed: the callback will run.
const ARMED: u32 = 2;

/// A VRID's kernel timer and whether it is armed.
#[repr(C)]
pub struct DownTimer {
    timer: bpf_timer,
    state: u32,
    /// The local priority its expiry was computed for: Skew_Time depends on it.
    priority: u32,
    /// The VRID it was initialised for: the callback finds its state by it.
    key: VridKey,
}

/// 1: the kernel keeps the down timers. The agent loads the program with 0 when the
/// kernel refuses timers (or they are turned off); the verifier then prunes every timer
/// call as dead code, so the same object loads where `bpf_timer` does not exist.
#[unsafe(no_mangle)]
pub(crate) static KERNEL_TIMERS: Global<u8> = Global::new(1);

#[btf_map(name = "down_timers")]
static DOWN_TIMERS: Array<DownTimer, { MAX_WATCHED as usize }> = Array::new();

#[btf_map(name = "down_params")]
static DOWN_PARAMS: Array<DownParams, { MAX_WATCHED as usize }> = Array::new();

/// An accepted advert counted as the Master's arrival at `ts` (after `stats`, the
/// VRID's state entry, holds it), under the VRID's watch entry `w`. `report`: the agent
/// is told of this advert, so the timer must run from it.
// Not inlined: the verifier then checks it once per call instead of along every path
// of the packet code that reaches it.
#[inline(never)]
pub fn arrival(key: &VridKey, stats: *mut VridStats, w: &WatchEntry, ts: u64, report: bool) {
    if KERNEL_TIMERS.load() == 0 {
        return;
    }
    let (version, local) = (w.version, w.priority);
    // SAFETY: a map value pointer, valid for this program run; `slot` is the agent's.
    let slot = u32::from(unsafe { (*stats).slot });
    let Some(t) = DOWN_TIMERS.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: a map value pointer, valid for this program run; a racing CPU can at worst
    // start the same timer twice, which only moves its expiry to the newer deadline.
    let t = unsafe { &mut *t };
    // The steady state of a Backup: the timer runs, armed at this local priority, and
    // this advert is a quiet repeat. Nothing to do (this runs for every advert).
    if t.state == ARMED && !report && t.priority == u32::from(local) {
        return;
    }
    let Some(params) = DOWN_PARAMS.get_ptr(slot) else {
        return;
    };
    // SAFETY: as above.
    let p = unsafe { &*params };
    if p.adverts == 0 {
        // The agent keeps this VRID's deadline.
        return;
    }
    // The agent believes the timer runs after a report, or while it was armed: a
    // failure then must reach it. A quiet arrival's failure is only logged (it would
    // otherwise flood the ring once per advert).
    let tell = report || t.state == ARMED;
    if t.state == FRESH {
        t.key = *key;
        // SAFETY: `t.timer` lives in a BTF array of timers; the map pointer is the map's
        // own.
        let rc = unsafe {
            bpf_timer_init(
                &mut t.timer,
                addr_of!(DOWN_TIMERS) as *mut c_void,
                CLOCK_MONOTONIC,
            )
        };
        // -EBUSY: another CPU initialised it first.
        if rc != 0 && rc != EBUSY {
            crate::rare::timer_failed(key.vrid, rc);
            if tell {
                event(key, stats, EVENT_TIMER_ERROR, ts);
            }
            return;
        }
        // A pointer to the function (never an integer cast) makes the loader emit the
        // relocation the verifier wants for a callback.
        // SAFETY: an initialised timer in its map.
        let rc = unsafe { bpf_timer_set_callback(&mut t.timer, fired as *mut c_void) };
        if rc != 0 {
            crate::rare::timer_failed(key.vrid, rc);
            if tell {
                event(key, stats, EVENT_TIMER_ERROR, ts);
            }
            return;
        }
        t.state = IDLE;
    }
    // SAFETY: as above.
    let s = unsafe { &*stats };
    let (_, alarm) = deadline_of(
        version,
        local,
        p,
        s.last_version,
        s.last_interval,
        ts,
        s.last_priority,
    );
    start(key, stats, t, alarm, local, tell);
}

/// The down deadline, and when the timer fires for it (a little ahead: [`alarm_ns`]).
#[inline(always)]
fn deadline_of(
    version: u8,
    local: u8,
    p: &DownParams,
    last_version: u8,
    last_interval: u16,
    last_ns: u64,
    last_priority: u8,
) -> (u64, u64) {
    let interval = if p.interval_ns != 0 {
        p.interval_ns
    } else {
        interval_ns(last_version, last_interval)
    };
    (
        deadline_ns(version, local, interval, p.adverts, last_ns, last_priority),
        alarm_ns(
            version,
            local,
            interval,
            p.adverts,
            last_ns,
            last_priority,
            p.lead_ns,
        ),
    )
}

/// Arms the timer for the absolute time `deadline` (the alarm's); a failure is logged and,
/// with `tell`, reported to the agent, which then keeps the down deadline itself.
#[inline(always)]
fn start(
    key: &VridKey,
    stats: *const VridStats,
    t: &mut DownTimer,
    deadline: u64,
    local: u8,
    tell: bool,
) {
    // SAFETY: an initialised timer in its map.
    let rc = unsafe { bpf_timer_start(&mut t.timer, deadline, BPF_F_TIMER_ABS as u64) };
    if rc == 0 {
        t.state = ARMED;
        t.priority = u32::from(local);
        return;
    }
    t.state = IDLE;
    crate::rare::timer_failed(key.vrid, rc);
    if tell {
        event(key, stats, EVENT_TIMER_ERROR, deadline);
    }
}

/// The timer callback: re-arm for the remainder while adverts arrive, else report silence.
#[inline(never)]
unsafe extern "C" fn fired(_map: *mut c_void, slot: *mut u32, t: *mut DownTimer) -> i32 {
    // SAFETY: the kernel passes the element's index and value, valid during the callback.
    let (slot, t) = unsafe { (*slot, &mut *t) };
    let key = t.key;
    let Some(stats) = crate::VRID_STATS.get_ptr(&key) else {
        // No longer watched.
        t.state = IDLE;
        return 0;
    };
    // SAFETY: map value pointers, valid during the callback.
    let s = unsafe { &*stats };
    if u32::from(s.slot) != slot {
        // The slot was given to another VRID since; this timer belongs to nobody.
        t.state = IDLE;
        return 0;
    }
    let (Some(w), Some(p)) = (crate::WATCH.get_ptr(slot), DOWN_PARAMS.get_ptr(slot)) else {
        t.state = IDLE;
        return 0;
    };
    // SAFETY: as above.
    let (w, p) = unsafe { (&*w, &*p) };
    if p.adverts == 0 {
        // The agent took the deadline back.
        t.state = IDLE;
        return 0;
    }
    if w.flags & WATCH_REPORT_ALL != 0 {
        // Master: it hears every advert, and its own advert timer is the agent's.
        t.state = IDLE;
        return 0;
    }
    let (deadline, alarm) = deadline_of(
        w.version,
        w.priority,
        p,
        s.last_version,
        s.last_interval,
        s.last_ns,
        s.last_priority,
    );
    // SAFETY: plain helper.
    let now = unsafe { bpf_ktime_get_ns() };
    if now < alarm {
        start(&key, stats, t, alarm, w.priority, true);
        return 0;
    }
    // RFC 5798 §6.4.2: the Master_Down_Timer is about to fire, or fired. The event names
    // the deadline; the agent, awake by then, waits it out and its election decides.
    t.state = IDLE;
    if !event(&key, stats, EVENT_SILENCE, deadline) {
        // The ring is full: try again shortly rather than lose the one wake-up.
        start(&key, stats, t, now + RETRY_NS, w.priority, true);
    }
    0
}

/// Writes a down-timer event for `key` with the last advert's fields; false when the ring
/// buffer had no room.
#[inline(always)]
fn event(key: &VridKey, stats: *const VridStats, kind: u8, deadline: u64) -> bool {
    vigil_down_event(key, stats, u32::from(kind), deadline) != 0
}

// A global function: the verifier checks it once, from its argument types, instead of at
// each of its four callers. Returns 1 when the record was written.
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn vigil_down_event(
    key: *const VridKey,
    stats: *const VridStats,
    kind: u32,
    deadline: u64,
) -> i32 {
    // SAFETY: the callers pass a key and a state entry valid for this run; the verifier
    // knows them only as possibly null.
    let Some(key) = (unsafe { key.as_ref() }) else {
        return 1;
    };
    if stats.is_null() {
        return 1;
    }
    let kind = kind as u8;
    let Some(mut slot) = crate::EVENTS.reserve(0) else {
        // SAFETY: a map value pointer, valid for this program run or callback.
        let iface = u32::from(unsafe { (*stats).iface });
        crate::count(iface, VERDICTS);
        crate::rare::ring_full(key.vrid);
        return 0;
    };
    // SAFETY: plain helper.
    let written = unsafe { bpf_ktime_get_ns() };
    let e = slot.as_mut_ptr();
    // SAFETY: `e` is a reserved, writable event slot; `stats` a map value pointer.
    unsafe {
        let s = &*stats;
        (*e).ts_ns = s.last_ns;
        (*e).first_ns = written;
        (*e).ifindex = key.ifindex;
        (*e).verdict = 0;
        (*e).family = key.family;
        (*e).ttl = 255;
        (*e).version = s.last_version;
        (*e).kind = 1;
        (*e).vrid = key.vrid;
        (*e).priority = s.last_priority;
        (*e).addr_count = s.last_addr_count;
        (*e).interval = s.last_interval;
        (*e).auth_type = 0;
        (*e).event = kind;
        (*e).addr_digest = s.last_digest;
        (*e)._pad2 = 0;
        (*e).src = s.last_src;
        (*e).dst = [0; 16];
        (*e).deadline_ns = deadline;
    }
    slot.submit(0);
    1
}
