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
//! For a watched VRID, what to report, what a preempting Backup drops, and what the
//! per-VRID state becomes are `vigil_common::suppress`'s decisions (shared with the
//! raw-socket path and the simulator; its module documentation is the contract). Here
//! they are only wired to the maps: the state lives in `vrid_stats`, reports go to the
//! `events` ring buffer, and a report the full ring refused is marked in the state.
//!
//! # One hash lookup per advert
//!
//! The frame's (interface, family, VRID) finds its `vrid_stats` entry in a hash map;
//! that entry names the VRID's slot and its interface's slot, and everything else —
//! configuration (`watch`), down timer (`down_timers`) and its parameters
//! (`down_params`), verdict counters (`iface_stats`, per CPU) — sits in arrays at those
//! slots, whose lookups the kernel turns into an address computation. A frame no
//! watched VRID claims finds its interface's slot in `ifaces`.
//!
//! Single-hop BFD Control packets (UDP 3784) are the other thing it reads: `bfd.rs`
//! records them per session, wakes the agent only on change, and keeps each session's
//! detection time in a `bpf_timer`.
//!
//! Where the kernel allows it, a Backup's Master_Down_Timer lives here too (`timer.rs`):
//! a `bpf_timer` per VRID, armed from the arrivals the state records, that wakes the
//! agent only when the Master has gone silent.
#![no_std]
#![no_main]

mod bfd;
mod csum;
mod digest;
mod rare;
mod timer;
mod verdict;

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, HashMap, PerCpuArray, RingBuf},
    helpers::bpf_ktime_get_ns,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use vigil_common::{
    AdvertEvent, Frame, IfaceStats, Settings, Verdict, VridKey, VridStats, WatchEntry,
    maps::{MAX_IFACES, MAX_WATCHED},
    suppress, validate,
};

/// What makes a VRID watched, and its state: the one hash lookup of a frame.
#[btf_map(name = "vrid_stats")]
pub(crate) static VRID_STATS: HashMap<VridKey, VridStats, { MAX_WATCHED as usize }> =
    HashMap::new();

/// The watched VRIDs' configuration, by the slot their `vrid_stats` entry names.
#[btf_map(name = "watch")]
pub(crate) static WATCH: Array<WatchEntry, { MAX_WATCHED as usize }> = Array::new();

/// Verdict counters by interface slot.
#[btf_map(name = "iface_stats")]
static IFACE_STATS: PerCpuArray<IfaceStats, { MAX_IFACES as usize }> = PerCpuArray::new();

/// Interface index to interface slot, for frames no watched VRID claims.
#[btf_map(name = "ifaces")]
static IFACES: HashMap<u32, u32, { MAX_IFACES as usize }> = HashMap::new();

#[btf_map(name = "events")]
pub(crate) static EVENTS: RingBuf<AdvertEvent, { vigil_common::RING_BYTES as usize }> =
    RingBuf::new();

/// Per-CPU room for the parsed advert, which does not fit on the 512-byte eBPF stack.
#[btf_map(name = "scratch")]
pub(crate) static SCRATCH: PerCpuArray<validate::Advert, 1> = PerCpuArray::new();

#[btf_map(name = "settings")]
static SETTINGS: Array<Settings, 1> = Array::new();

/// Bounds-checked view of the XDP frame for the shared validation code.
pub(crate) struct Xdp<'a>(pub(crate) &'a XdpContext);

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

    #[inline(always)]
    fn word_sum(&self, off: usize, len: usize) -> Option<u16> {
        csum::word_sum(self.0.ctx, off, len)
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
    let parsed = verdict::parse(ctx);
    if parsed == verdict::NOT_VRRP {
        return bfd::judge(ctx);
    }
    let ts = unsafe { bpf_ktime_get_ns() };
    let ifindex = ctx.ingress_ifindex() as u32;
    // A tagged frame belongs to the VLAN's sub-interface, not to this one's routers.
    let key = validate::watch_key(ifindex, a).unwrap_or(VridKey {
        ifindex: 0,
        family: 0,
        vrid: 0,
        _pad: 0,
    });
    // Pointers, not copies: stack space is scarce. The state entry is the only hash
    // lookup; the configuration is in an array at the slot it names.
    let stats = match parsed {
        verdict::PARSED if key.ifindex != 0 => VRID_STATS.get_ptr_mut(&key),
        _ => None,
    };
    // SAFETY: a map value pointer, valid for this program run; `slot` and `iface` are
    // written by the agent before the entry exists and never change.
    let (entry, iface) = match stats {
        Some(s) => unsafe {
            (
                WATCH.get_ptr(u32::from((*s).slot)),
                Some(u32::from((*s).iface)),
            )
        },
        None => (None, None),
    };
    let verdict = match parsed {
        verdict::PARSED => verdict::check(ctx, entry),
        code => Verdict::from_code(code as u8).unwrap_or(Verdict::Length),
    };
    count(iface_slot(ifindex, iface), verdict as usize);

    let (trace_all, trace_valid) = match SETTINGS.get(0) {
        Some(s) => (s.trace_all != 0, s.trace_valid != 0),
        None => (false, false),
    };
    let mut report = trace_all || (trace_valid && verdict.passes());
    let mut tracked = None;
    let mut first = ts;
    if let (Some(w), Some(stats)) = (entry, stats) {
        // SAFETY: map value pointers, valid for this program run; racing writers on
        // other CPUs can only make the state approximate, and the agent re-reads it
        // (see `suppress`).
        let w = unsafe { &*w };
        let fate = suppress::judge(unsafe { &mut *stats }, a, verdict, w);
        report |= fate == Some(suppress::Fate::Report);
        if report {
            // SAFETY: as above.
            first = suppress::run_start(unsafe { &*stats }, a, ts, w.epoch);
        }
        tracked = Some((stats, w, fate));
    }
    // One place writes records, so the address loop is in the program once.
    let attempt = if report {
        let digest = if verdict.passes() {
            digest::address_digest(a).unwrap_or(0)
        } else {
            0
        };
        let written = emit(ts, first, ifindex, iface, a, verdict, digest);
        Some(suppress::Attempt { digest, written })
    } else {
        None
    };
    if let Some((stats, w, fate)) = tracked {
        // SAFETY: as above.
        suppress::settle(unsafe { &mut *stats }, a, ts, w, fate, attempt);
        // The state now holds this arrival: the down timer runs from it. A written
        // report always restarts it, so every advert the agent hears has armed it.
        let arrived = match fate {
            Some(suppress::Fate::Quiet) => Some(false),
            Some(suppress::Fate::Report) => Some(attempt.is_some_and(|t| t.written)),
            _ => None,
        };
        if let Some(reported) = arrived {
            timer::arrival(&key, stats, w, ts, reported);
        }
    }
    if verdict.passes() {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

/// The counters' slot of a frame's interface: `watched`, the one its VRID's state names,
/// else looked up (`MAX_IFACES`, out of range, for an interface the agent did not attach).
#[inline(always)]
pub(crate) fn iface_slot(ifindex: u32, watched: Option<u32>) -> u32 {
    match watched {
        Some(s) => s,
        None => match IFACES.get_ptr(&ifindex) {
            // SAFETY: a map value pointer, valid for this program run.
            Some(s) => unsafe { *s },
            None => MAX_IFACES,
        },
    }
}

/// Adds one to the counter of `index` (a verdict, or `VERDICTS` for ring-full) of the
/// interface in slot `slot`.
#[inline(always)]
pub(crate) fn count(slot: u32, index: usize) {
    let Some(stats) = IFACE_STATS.get_ptr_mut(slot) else {
        return;
    };
    if index > validate::VERDICTS {
        return;
    }
    // The compiler knows a verdict's range and drops the check above; the verifier,
    // handed the verdict by a global function, does not. VERDICTS + 1 counters are a
    // power of two, so a mask shows it the same bound; the volatile read keeps the
    // compiler from dropping the mask too.
    const _: () = assert!((validate::VERDICTS + 1).is_power_of_two());
    // SAFETY: a read of a local.
    let index = unsafe { core::ptr::read_volatile(&index) } & validate::VERDICTS;
    // SAFETY: IfaceStats is repr(C) of VERDICTS + 1 u64 counters (asserted in common),
    // index <= VERDICTS, and the map is per CPU, so nothing else writes this copy.
    unsafe {
        *(stats as *mut u64).add(index) += 1;
    }
}

/// Writes one record to the ring buffer; false (and counted) when it is full.
#[inline(always)]
fn emit(
    ts: u64,
    first: u64,
    ifindex: u32,
    iface: Option<u32>,
    a: &validate::Advert,
    verdict: Verdict,
    digest: u32,
) -> bool {
    let Some(mut slot) = EVENTS.reserve(0) else {
        count(iface_slot(ifindex, iface), validate::VERDICTS);
        rare::ring_full(a.vrid);
        return false;
    };
    // SAFETY: the slot is a reserved, writable AdvertEvent-sized region; it is filled
    // in place, never built on the stack.
    suppress::fill(
        unsafe { &mut *slot.as_mut_ptr() },
        ts,
        first,
        ifindex,
        a,
        verdict,
        digest,
    );
    slot.submit(0);
    true
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
