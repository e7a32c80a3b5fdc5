//! vigil's XDP program.
//!
//! For every frame on the watched interface: parse Ethernet (+ one 802.1Q tag) → IPv4/IPv6
//! → protocol 112; anything else passes untouched and uncounted. A VRRP frame is judged by
//! `vigil_common::validate` — the same code the agent's raw-socket fallback runs — and
//! counted per interface by verdict. Invalid adverts are dropped (RFC 5798 §7.1: MUST
//! discard); valid ones pass on, so other daemons on the host still see them.
//!
//! # No per-packet wake-ups
//!
//! A Backup's election only needs to know that its Master is still there, and what it
//! says when that changes. So for a watched VRID the program keeps the last valid advert
//! in `vrid_stats` (arrival time, source, priority, interval) and writes a ring-buffer
//! event only when the election must see it:
//! - the source, priority, interval or version differs from the last advert;
//! - the priority is 0 (the Master is leaving);
//! - the advert ends a silence of more than two intervals;
//! - the agent asked for every advert (`WATCH_REPORT_ALL`, set while it is Master, where
//!   any advert from a peer is news).
//!
//! In the steady state nothing is written and the agent sleeps. When the agent's down
//! timer fires, it drains the ring buffer, then reads `last_ns` of the VRID from
//! `vrid_stats` and re-feeds the last advert to the election with that arrival time; if
//! the Master is alive the timer re-arms to `last_ns + Master_Down_Interval`, exactly as
//! if each advert had been delivered. Only true silence leads to a takeover.
//!
//! Where the kernel allows it, that down timer lives here instead (`timer.rs`): a
//! `bpf_timer` per VRID that wakes the agent only when the Master has gone silent.
#![no_std]
#![no_main]

mod rare;
mod timer;

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    helpers::bpf_ktime_get_ns,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use vigil_common::{
    AdvertEvent, Frame, IfaceStats, Settings, Verdict, VridKey, VridStats, WatchEntry,
    maps::{MAX_IFACES, MAX_WATCHED},
    validate::{self, Parsed, WATCH_PREEMPT, WATCH_REPORT_ALL},
};

#[btf_map(name = "watch")]
static WATCH: HashMap<VridKey, WatchEntry, { MAX_WATCHED as usize }> = HashMap::new();

#[btf_map(name = "vrid_stats")]
static VRID_STATS: HashMap<VridKey, VridStats, { MAX_WATCHED as usize }> = HashMap::new();

#[btf_map(name = "iface_stats")]
static IFACE_STATS: PerCpuHashMap<u32, IfaceStats, { MAX_IFACES as usize }> = PerCpuHashMap::new();

#[btf_map(name = "events")]
static EVENTS: RingBuf<AdvertEvent, { vigil_common::RING_BYTES as usize }> = RingBuf::new();

/// Per-CPU room for the parsed advert, which does not fit on the 512-byte eBPF stack.
#[btf_map(name = "scratch")]
static SCRATCH: PerCpuArray<validate::Advert, 1> = PerCpuArray::new();

#[btf_map(name = "settings")]
static SETTINGS: Array<Settings, 1> = Array::new();

/// Bounds-checked view of the XDP frame for the shared validation code.
struct Xdp<'a>(&'a XdpContext);

impl Frame for Xdp<'_> {
    #[inline(always)]
    fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let start = self.0.data();
        let end = self.0.data_end();
        // Offsets are below 4 KiB by construction; the mask makes that visible to the
        // verifier when it cannot follow the arithmetic.
        let p = start + (off & 0xfff);
        if p + N > end {
            return None;
        }
        // SAFETY: [p, p + N) lies inside the frame, checked just above.
        Some(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) })
    }
}

#[xdp]
pub fn vigil_xdp(ctx: XdpContext) -> u32 {
    judge(&ctx)
}

#[inline(always)]
fn judge(ctx: &XdpContext) -> u32 {
    let Some(a) = SCRATCH.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: entry 0 of a per-CPU array always exists and only this CPU's program run
    // touches it until it returns.
    let a = unsafe { &mut *a };
    let frame = Xdp(ctx);
    let parsed = validate::parse(&frame, a);
    if parsed == Parsed::NotVrrp {
        return xdp_action::XDP_PASS;
    }
    let ts = unsafe { bpf_ktime_get_ns() };
    let ifindex = ctx.ingress_ifindex() as u32;
    let key = VridKey {
        ifindex,
        family: a.family,
        vrid: a.vrid,
        _pad: 0,
    };
    // Pointers, not copies: stack space is scarce.
    let entry = match parsed {
        Parsed::Vrrp => WATCH.get_ptr(&key),
        _ => None,
    };
    let verdict = match parsed {
        Parsed::Broken(v) => v,
        // SAFETY: a map value pointer, valid for this program run.
        _ => validate::check(&frame, a, entry.map(|w| unsafe { &*w })),
    };
    count(ifindex, verdict as usize);

    let (trace_all, trace_valid) = match SETTINGS.get(0) {
        Some(s) => (s.trace_all != 0, s.trace_valid != 0),
        None => (false, false),
    };
    let mut report = trace_all || (trace_valid && verdict.passes());
    if let Some(w) = entry {
        // SAFETY: as above.
        let (flags, local) = unsafe { ((*w).flags, (*w).priority) };
        report |= track(&key, a, verdict, ts, flags, local);
    }
    if report {
        let digest = if verdict.passes() {
            validate::address_digest(&frame, a).unwrap_or(0)
        } else {
            0
        };
        emit(ts, ifindex, a, verdict, digest);
    }
    if verdict.passes() {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

/// Adds one to the interface's counter of `index` (a verdict, or `VERDICTS` for ring-full).
#[inline(always)]
fn count(ifindex: u32, index: usize) {
    // The agent creates the entry when it attaches: a zeroed 120-byte value would not
    // fit on the eBPF stack beside everything else.
    let Some(stats) = IFACE_STATS.get_ptr_mut(ifindex) else {
        return;
    };
    if index > validate::VERDICTS {
        return;
    }
    // SAFETY: IfaceStats is repr(C) of VERDICTS + 1 u64 counters (asserted in common),
    // index <= VERDICTS, and the map is per CPU, so nothing else writes this copy.
    unsafe {
        *(stats as *mut u64).add(index) += 1;
    }
}

/// Updates the per-VRID state; true when the election must hear of this advert.
#[inline(always)]
fn track(
    key: &VridKey,
    a: &validate::Advert,
    verdict: Verdict,
    ts: u64,
    flags: u8,
    local: u8,
) -> bool {
    let all = flags & WATCH_REPORT_ALL != 0;
    // Created by the agent together with the `watch` entry.
    let Some(stats) = VRID_STATS.get_ptr_mut(key) else {
        return verdict == Verdict::Accept;
    };
    // SAFETY: a map value pointer from the kernel, valid for this program run; racing
    // writers on other CPUs only make counters approximate, never unsafe.
    let s = unsafe { &mut *stats };
    if verdict != Verdict::Accept {
        s.dropped += 1;
        return false;
    }
    s.received += 1;
    // RFC 5798 §6.4.2: a preempting Backup discards adverts below its own priority, so
    // they must neither reset its down timer (last_ns) nor reach the agent.
    if !all && flags & WATCH_PREEMPT != 0 && a.priority != 0 && a.priority < local {
        s.ignored += 1;
        return false;
    }
    let interval_ns = if a.version == 3 {
        a.interval as u64 * 10_000_000
    } else {
        a.interval as u64 * 1_000_000_000
    };
    let changed = s.last_src != a.src
        || s.last_priority != a.priority
        || s.last_interval != a.interval
        || s.last_version != a.version;
    let silence = ts.saturating_sub(s.last_ns) > 2 * interval_ns;
    let report = all || changed || silence || a.priority == 0 || s.last_ns == 0;
    s.last_ns = ts;
    s.last_src = a.src;
    s.last_priority = a.priority;
    s.last_interval = a.interval;
    s.last_version = a.version;
    if report {
        s.reported += 1;
    }
    timer::arrival(key, ts, report, a.version, local);
    report
}

#[inline(always)]
fn emit(ts: u64, ifindex: u32, a: &validate::Advert, verdict: Verdict, digest: u32) {
    let Some(mut slot) = EVENTS.reserve(0) else {
        count(ifindex, validate::VERDICTS);
        rare::ring_full(a.vrid);
        return;
    };
    // Written field by field into the reserved slot, never built on the stack.
    let e = slot.as_mut_ptr();
    // SAFETY: `e` points to a reserved, writable AdvertEvent-sized slot.
    unsafe {
        (*e).ts_ns = ts;
        (*e).ifindex = ifindex;
        (*e).verdict = verdict as u8;
        (*e).family = a.family;
        (*e).ttl = a.ttl;
        (*e).version = a.version;
        (*e).kind = a.kind;
        (*e).vrid = a.vrid;
        (*e).priority = a.priority;
        (*e).addr_count = a.addr_count;
        (*e).interval = a.interval;
        (*e).auth_type = a.auth_type;
        (*e).event = vigil_common::event::EVENT_ADVERT;
        (*e).addr_digest = digest;
        (*e)._pad2 = 0;
        (*e).src = a.src;
        (*e).dst = a.dst;
        (*e).deadline_ns = 0;
    }
    slot.submit(0);
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
