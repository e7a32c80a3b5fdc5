//! Single-hop BFD Control packets (RFC 5880, RFC 5881) as the XDP program receives them:
//! the stateless checks of RFC 5880 §6.8.6 and RFC 5881 §5, the per-session state the
//! kernel keeps, and the rule for when a packet is worth waking the agent for.
//!
//! Like [`crate::validate`] for VRRP, every decision here is a pure function with two
//! homes: the XDP program calls it on each frame, and the agent's socket path calls
//! [`check`] on each datagram when XDP is not there.
//!
//! # Sessions in the kernel
//!
//! The agent publishes, per session, its local discriminator with the interface, peer
//! and agreed detection time ([`BfdParams`], map `bfd_params`). A packet whose Your
//! Discriminator names such a session is recorded in [`BfdState`] (map `bfd_state`) and
//! consumed (`XDP_DROP`): the agent's socket never sees it. It reaches the agent through
//! the ring buffer only when [`must_report`] says so: the first packet, anything the peer
//! changed (state, diagnostic, flags, discriminator, intervals, multiplier), every Poll
//! and Final. A steady session costs the agent nothing. Packets that name no session
//! (Your Discriminator 0 while a peer starts, or a discriminator the agent never
//! published) and packets with authentication pass to the stack, where the agent's
//! socket (or another BFD daemon) judges them.
//!
//! A `bpf_timer` per session fires at the last arrival plus the detection time and
//! writes one [`EVENT_BFD_DOWN`] record; the agent's session state machine decides.
//!
//! # A timer that runs late
//!
//! A detection timer that fires well after its deadline says this host was not running
//! it: a stalled virtual machine, or a CPU that did not get to its timers or to its
//! receive queue. The peer's packets may be waiting in that queue, or — when the stall
//! froze the peer too, as for two guests of one busy hypervisor — be about to be sent.
//! Such an expiry does not show that the peer was silent for the detection time while
//! we listened, so [`expiry`] listens once more, for a whole detection time from the
//! late wake-up, before the session is declared down. Both homes use it: the kernel's
//! timer callback and the agent's own detection timer.

use crate::event::{FAMILY_V4, FAMILY_V6};
use crate::frame::Frame;

/// Name of the per-session parameters map, written by the agent.
pub const MAP_BFD_PARAMS: &str = "bfd_params";
/// Name of the per-session state map, written by the program.
pub const MAP_BFD_STATE: &str = "bfd_state";
/// Name of the per-session timers map (never written by the agent: a userspace update of
/// an element cancels its timer).
pub const MAP_BFD_TIMERS: &str = "bfd_timers";
/// Name of the per-interface BFD counters map.
pub const MAP_BFD_IFACE: &str = "bfd_iface";

/// Most BFD sessions the kernel keeps.
pub const MAX_BFD_SESSIONS: u32 = 1024;

/// UDP port of single-hop BFD Control packets (RFC 5881 §4).
pub const BFD_PORT: u16 = 3784;
/// Length of the mandatory section of a Control packet (RFC 5880 §4.1).
pub const BFD_HEADER_LEN: usize = 24;

/// [`crate::AdvertEvent::event`] of a [`BfdRecord`]: a packet the agent must see.
pub const EVENT_BFD_PACKET: u8 = 3;
/// [`crate::AdvertEvent::event`] of a [`BfdRecord`]: the session's detection time ran
/// out in the kernel; `ts_ns` is the last packet's arrival, `deadline_ns` the expiry.
pub const EVENT_BFD_DOWN: u8 = 4;
/// [`crate::AdvertEvent::event`] of a [`BfdRecord`]: the kernel could not arm the
/// session's timer; the agent keeps its detection time itself.
pub const EVENT_BFD_TIMER_ERROR: u8 = 5;

/// RFC 5880 §4.1 state codes.
pub const STATE_ADMIN_DOWN: u8 = 0;
/// Down.
pub const STATE_DOWN: u8 = 1;

const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_UDP: u8 = 17;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;

/// What the program did with a BFD packet; the discriminant indexes [`BfdIfaceStats`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BfdVerdict {
    /// A known session's packet, recorded in the kernel and consumed, the agent not told.
    Recorded = 0,
    /// A known session's packet, recorded, consumed and reported through the ring buffer.
    Reported = 1,
    /// Valid, but for the stack: no session named (Your Discriminator 0 or unknown), or
    /// authentication present (the agent judges it).
    Passed = 2,
    /// TTL / hop limit not 255 (RFC 5881 §5).
    Ttl = 3,
    /// Version not 1 (RFC 5880 §6.8.6).
    Version = 4,
    /// Length field below 24 or beyond the UDP payload (RFC 5880 §6.8.6).
    Length = 5,
    /// Detect Mult of zero (RFC 5880 §6.8.6).
    DetectMult = 6,
    /// Multipoint bit set (RFC 5880 §6.8.6).
    Multipoint = 7,
    /// My Discriminator of zero (RFC 5880 §6.8.6).
    MyDiscriminator = 8,
    /// Your Discriminator zero while the sender is neither Down nor AdminDown
    /// (RFC 5880 §6.8.6).
    YourDiscriminator = 9,
    /// Your Discriminator names a session of another interface, family or peer.
    Mismatch = 10,
}

/// Number of [`BfdVerdict`] values.
pub const BFD_VERDICTS: usize = 11;
/// Index in [`BfdIfaceStats`] of the count of kernel detection timeouts.
pub const BFD_COUNT_DOWN: usize = BFD_VERDICTS;
/// Index in [`BfdIfaceStats`] of the count of records the full ring buffer refused.
pub const BFD_COUNT_RING_FULL: usize = BFD_VERDICTS + 1;

impl BfdVerdict {
    /// Whether the frame goes on to the stack.
    pub const fn passes(self) -> bool {
        matches!(self, Self::Passed)
    }

    /// A short name for status and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Recorded => "recorded",
            Self::Reported => "reported",
            Self::Passed => "passed",
            Self::Ttl => "ttl",
            Self::Version => "version",
            Self::Length => "length",
            Self::DetectMult => "detect_mult",
            Self::Multipoint => "multipoint",
            Self::MyDiscriminator => "my_discriminator",
            Self::YourDiscriminator => "your_discriminator",
            Self::Mismatch => "mismatch",
        }
    }

    /// Every verdict, in code order.
    pub const ALL: [BfdVerdict; BFD_VERDICTS] = [
        Self::Recorded,
        Self::Reported,
        Self::Passed,
        Self::Ttl,
        Self::Version,
        Self::Length,
        Self::DetectMult,
        Self::Multipoint,
        Self::MyDiscriminator,
        Self::YourDiscriminator,
        Self::Mismatch,
    ];
}

/// BFD counters of one interface, named for `bpftool map dump`: one per [`BfdVerdict`]
/// in its order, then kernel detection timeouts, then ring-full losses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BfdIfaceStats {
    /// Packets of known sessions recorded and consumed without waking the agent.
    pub recorded: u64,
    /// Packets of known sessions recorded, consumed and reported to the agent.
    pub reported: u64,
    /// Valid packets passed to the stack (no session named, or authentication).
    pub passed: u64,
    /// Dropped: TTL / hop limit not 255.
    pub ttl: u64,
    /// Dropped: version not 1.
    pub version: u64,
    /// Dropped: bad Length field.
    pub length: u64,
    /// Dropped: Detect Mult 0.
    pub detect_mult: u64,
    /// Dropped: multipoint bit set.
    pub multipoint: u64,
    /// Dropped: My Discriminator 0.
    pub my_discriminator: u64,
    /// Dropped: Your Discriminator 0 outside Down / AdminDown.
    pub your_discriminator: u64,
    /// Dropped: a session's discriminator from the wrong interface, family or peer.
    pub mismatch: u64,
    /// Detection timeouts the kernel's timers reported.
    pub down: u64,
    /// Records the full ring buffer refused.
    pub ring_full: u64,
}

/// Number of counters in [`BfdIfaceStats`].
pub const BFD_COUNTERS: usize = BFD_VERDICTS + 2;

const _: () = assert!(core::mem::size_of::<BfdIfaceStats>() == BFD_COUNTERS * 8);

impl BfdIfaceStats {
    /// The counters in index order.
    pub fn all(&self) -> [u64; BFD_COUNTERS] {
        [
            self.recorded,
            self.reported,
            self.passed,
            self.ttl,
            self.version,
            self.length,
            self.detect_mult,
            self.multipoint,
            self.my_discriminator,
            self.your_discriminator,
            self.mismatch,
            self.down,
            self.ring_full,
        ]
    }

    /// The counter of a verdict.
    pub fn get(&self, v: BfdVerdict) -> u64 {
        self.all()[v as usize]
    }

    /// Adds `other` counter by counter (summing per-CPU copies).
    pub fn add(&mut self, other: &BfdIfaceStats) {
        self.recorded += other.recorded;
        self.reported += other.reported;
        self.passed += other.passed;
        self.ttl += other.ttl;
        self.version += other.version;
        self.length += other.length;
        self.detect_mult += other.detect_mult;
        self.multipoint += other.multipoint;
        self.my_discriminator += other.my_discriminator;
        self.your_discriminator += other.your_discriminator;
        self.mismatch += other.mismatch;
        self.down += other.down;
        self.ring_full += other.ring_full;
    }
}

/// A received BFD packet's fields, as the checks need them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BfdFrame {
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// Reserved, zero.
    pub _pad: [u8; 2],
    /// Bytes of UDP payload the datagram holds.
    pub payload_len: u32,
    /// Source address (IPv4 in the first 4 bytes).
    pub src: [u8; 16],
    /// The mandatory section as received.
    pub header: [u8; BFD_HEADER_LEN],
}

impl BfdFrame {
    /// Version (3 bits).
    pub const fn version(&self) -> u8 {
        self.header[0] >> 5
    }
    /// Sta (2 bits).
    pub const fn state(&self) -> u8 {
        self.header[1] >> 6
    }
    /// The flags byte: Sta, P, F, C, A, D, M.
    pub const fn flags(&self) -> u8 {
        self.header[1]
    }
    /// P: the sender asks for a Final.
    pub const fn poll(&self) -> bool {
        self.header[1] & 0x20 != 0
    }
    /// F: the answer to a Poll.
    pub const fn final_(&self) -> bool {
        self.header[1] & 0x10 != 0
    }
    /// A: authentication present.
    pub const fn auth(&self) -> bool {
        self.header[1] & 0x04 != 0
    }
    /// M: multipoint (reserved, must be zero).
    pub const fn multipoint(&self) -> bool {
        self.header[1] & 0x01 != 0
    }
    /// Detect Mult.
    pub const fn detect_mult(&self) -> u8 {
        self.header[2]
    }
    /// Length field.
    pub const fn length(&self) -> u8 {
        self.header[3]
    }
    /// A 32-bit field of the header at `at`.
    pub const fn word(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.header[at],
            self.header[at + 1],
            self.header[at + 2],
            self.header[at + 3],
        ])
    }
    /// My Discriminator.
    pub const fn my_discriminator(&self) -> u32 {
        self.word(4)
    }
    /// Your Discriminator.
    pub const fn your_discriminator(&self) -> u32 {
        self.word(8)
    }
}

/// Reads Ethernet → IPv4/IPv6 → UDP to port 3784 → the first 24 bytes of the payload
/// into `f`. False when the frame is no single-hop BFD Control packet at all (then it is
/// none of BFD's business): not IP, not UDP, another port, an IPv4 fragment, a VLAN tag
/// (it belongs to the VLAN's interface), or a payload shorter than 24 bytes (which
/// [`check`] cannot judge: it goes to the stack).
#[inline(always)]
pub fn parse<F: Frame + ?Sized>(frame: &F, f: &mut BfdFrame) -> bool {
    parse_inner(frame, f).is_some()
}

#[inline(always)]
fn parse_inner<F: Frame + ?Sized>(frame: &F, f: &mut BfdFrame) -> Option<()> {
    let ethertype = frame.u16_at(12)?;
    let udp;
    let ip_payload;
    if ethertype == ETHERTYPE_IPV4 {
        let h: [u8; 10] = frame.load(ETH_HLEN)?;
        if h[0] >> 4 != 4 || h[9] != IPPROTO_UDP {
            return None;
        }
        let ihl = ((h[0] & 0x0f) as usize) * 4;
        let frag = u16::from_be_bytes([h[6], h[7]]);
        if ihl < 20 || frag & 0x3fff != 0 {
            return None;
        }
        let total = u16::from_be_bytes([h[2], h[3]]) as usize;
        ip_payload = total.checked_sub(ihl)?;
        f.family = FAMILY_V4;
        f.ttl = h[8];
        let src: [u8; 4] = frame.load(ETH_HLEN + 12)?;
        f.src = [0; 16];
        f.src[..4].copy_from_slice(&src);
        udp = ETH_HLEN + ihl;
    } else if ethertype == ETHERTYPE_IPV6 {
        let h: [u8; 8] = frame.load(ETH_HLEN)?;
        // Extension headers are not followed: RFC 5881 packets carry none.
        if h[0] >> 4 != 6 || h[6] != IPPROTO_UDP {
            return None;
        }
        ip_payload = u16::from_be_bytes([h[4], h[5]]) as usize;
        f.family = FAMILY_V6;
        f.ttl = h[7];
        f.src = frame.load(ETH_HLEN + 8)?;
        udp = ETH_HLEN + IPV6_HLEN;
    } else {
        return None;
    }
    let u: [u8; 8] = frame.load(udp)?;
    if u16::from_be_bytes([u[2], u[3]]) != BFD_PORT {
        return None;
    }
    let udp_len = u16::from_be_bytes([u[4], u[5]]) as usize;
    // The UDP length, bounded by what the IP header says is there.
    let len = if udp_len < ip_payload {
        udp_len
    } else {
        ip_payload
    };
    f.payload_len = len.checked_sub(UDP_HLEN)? as u32;
    f.header = frame.load(udp + UDP_HLEN)?;
    Some(())
}

/// RFC 5881 §5 and the checks of RFC 5880 §6.8.6 that need no session, in the RFC's
/// order. `Ok(true)`: valid and for the kernel to demultiplex; `Ok(false)`: valid but
/// the agent's (the A bit is set: authentication is the agent's business).
#[inline(always)]
pub fn check(f: &BfdFrame) -> Result<bool, BfdVerdict> {
    // RFC 5881 §5: single hop means TTL / hop limit 255.
    if f.ttl != 255 {
        return Err(BfdVerdict::Ttl);
    }
    if f.version() != 1 {
        return Err(BfdVerdict::Version);
    }
    // "If the Length field is less than the minimum correct value (24 if the A bit is
    // clear, or 26 if the A bit is set), the packet MUST be discarded."
    let min = if f.auth() { 26 } else { 24 };
    if (f.length() as u32) < min || f.length() as u32 > f.payload_len {
        return Err(BfdVerdict::Length);
    }
    if f.detect_mult() == 0 {
        return Err(BfdVerdict::DetectMult);
    }
    if f.multipoint() {
        return Err(BfdVerdict::Multipoint);
    }
    if f.my_discriminator() == 0 {
        return Err(BfdVerdict::MyDiscriminator);
    }
    if f.your_discriminator() == 0 && f.state() != STATE_DOWN && f.state() != STATE_ADMIN_DOWN {
        return Err(BfdVerdict::YourDiscriminator);
    }
    Ok(!f.auth())
}

/// What the agent publishes for one session, keyed by its local discriminator.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BfdParams {
    /// Interface the session runs on.
    pub ifindex: u32,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
    /// Bumped by the agent when it wants the next packet reported whatever it says.
    pub epoch: u8,
    /// Reserved, zero.
    pub _pad: [u8; 2],
    /// The peer's address (IPv4 in the first 4 bytes).
    pub peer: [u8; 16],
    /// The agreed detection time (RFC 5880 §6.8.4) in ns; 0: no timer in the kernel.
    pub detect_ns: u64,
}

/// What the kernel knows of one session: the peer's last packet and counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BfdState {
    /// Arrival of the last recorded packet, CLOCK_MONOTONIC ns.
    pub last_ns: u64,
    /// Packets recorded.
    pub received: u64,
    /// Packets reported to the agent.
    pub reported: u64,
    /// Reports the full ring buffer refused.
    pub lost: u64,
    /// Detection timeouts the kernel reported.
    pub downs: u64,
    /// The last packet's mandatory section.
    pub header: [u8; BFD_HEADER_LEN],
    /// [`BfdParams::epoch`] when the last packet was recorded.
    pub last_epoch: u8,
    /// 1 when the next packet must be reported whatever it says (the timer fired, or a
    /// report was lost).
    pub stale: u8,
    /// Reserved, zero.
    pub _pad: [u8; 6],
}

const _: () = assert!(core::mem::size_of::<BfdState>() == 72);

impl BfdState {
    /// Peer state of the last packet.
    pub const fn peer_state(&self) -> u8 {
        self.header[1] >> 6
    }
}

/// Whether `demux` finds the session `p` for a packet from `f` on `ifindex`: the
/// interface, family and source must be the session's (RFC 5881 §3: a session is bound
/// to its interface and peer).
#[inline(always)]
pub fn matches(p: &BfdParams, f: &BfdFrame, ifindex: u32) -> bool {
    if p.ifindex != ifindex || p.family != f.family {
        return false;
    }
    if f.family == FAMILY_V4 {
        p.peer[..4] == f.src[..4]
    } else {
        p.family == FAMILY_V6 && p.peer == f.src
    }
}

/// Whether a packet of a known session wakes the agent: its first packet, the first
/// after a detection timeout or a lost report, a new epoch, every Poll and Final
/// (RFC 5880 §6.8.6 answers each Poll; a Final ends a Poll Sequence), or a change of
/// anything but the discriminator the agent already knows: state, diagnostic, version,
/// flags, multiplier, length, My Discriminator and the three intervals.
#[inline(always)]
pub fn must_report(s: &BfdState, f: &BfdFrame, epoch: u8) -> bool {
    if s.received == 0 || s.stale != 0 || s.last_epoch != epoch {
        return true;
    }
    if f.poll() || f.final_() {
        return true;
    }
    // Bytes 0–7 (diag, flags, mult, length, My Discriminator) and 12–23 (intervals);
    // 8–11 is Your Discriminator, which found this session and so cannot differ. Three
    // word compares without branches: the verifier walks one path, not 24.
    let w = |h: &[u8; BFD_HEADER_LEN], at: usize| {
        u64::from_ne_bytes([
            h[at],
            h[at + 1],
            h[at + 2],
            h[at + 3],
            h[at + 4],
            h[at + 5],
            h[at + 6],
            h[at + 7],
        ])
    };
    let your = u64::from_ne_bytes([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    let diff = (w(&s.header, 0) ^ w(&f.header, 0))
        | ((w(&s.header, 8) ^ w(&f.header, 8)) & !your)
        | (w(&s.header, 16) ^ w(&f.header, 16));
    diff != 0
}

/// Records a packet that arrived at `ts` into the session's state; `reported`: its
/// report reached the ring buffer (a lost one leaves the state stale, so the next packet
/// is reported whatever it says).
#[inline(always)]
pub fn record(s: &mut BfdState, f: &BfdFrame, ts: u64, epoch: u8, report: bool, written: bool) {
    s.last_ns = ts;
    s.received += 1;
    s.header = f.header;
    s.last_epoch = epoch;
    if report {
        if written {
            s.reported += 1;
            s.stale = 0;
        } else {
            s.lost += 1;
            s.stale = 1;
        }
    }
}

/// A detection timer is late when it fires more than this share of the detection time
/// after its deadline ([`expiry`]).
pub const LATE_SHARE: u64 = 16;

/// ...and more than this, whatever the detection time: a timer on a healthy host runs
/// within tens of microseconds of its deadline, and well under a millisecond late on a
/// host under load.
pub const LATE_MIN_NS: u64 = 1_000_000;

/// What a session's detection timer decides when it runs out ([`expiry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The peer was silent for the detection time: the session goes down
    /// (RFC 5880 §6.8.4).
    Down,
    /// The timer ran late: listen until this time (CLOCK_MONOTONIC ns) before judging.
    Listen(u64),
}

/// Whether a timer that fired at `now_ns`, after a last packet whose deadline was
/// `deadline_ns`, is late: more than [`LATE_MIN_NS`] and more than 1/[`LATE_SHARE`] of
/// the detection time `detect_ns` past the deadline.
#[inline(always)]
pub fn late(now_ns: u64, deadline_ns: u64, detect_ns: u64) -> bool {
    let by = now_ns.saturating_sub(deadline_ns);
    by > LATE_MIN_NS && by > detect_ns / LATE_SHARE
}

/// RFC 5880 §6.8.4 as the detection timer applies it, at `now_ns`, to a session whose
/// last packet's deadline (arrival plus the detection time `detect_ns`) was
/// `deadline_ns`. On time, the session goes down. Late (see the module's notes), it
/// listens for a whole detection time from now — once per silence: `listened` says it
/// already did since the last packet, and then the session goes down, so a host that
/// keeps stalling still detects a dead peer, within twice the detection time plus the
/// stalls.
#[inline(always)]
pub fn expiry(now_ns: u64, deadline_ns: u64, detect_ns: u64, listened: bool) -> Expiry {
    if !listened && late(now_ns, deadline_ns, detect_ns) {
        Expiry::Listen(now_ns.saturating_add(detect_ns))
    } else {
        Expiry::Down
    }
}

/// The kernel's verdict on a valid packet of the session `params` (if the agent
/// published one under its Your Discriminator).
#[inline(always)]
pub fn demux(f: &BfdFrame, params: Option<&BfdParams>, ifindex: u32) -> BfdVerdict {
    if f.your_discriminator() == 0 {
        return BfdVerdict::Passed;
    }
    match params {
        None => BfdVerdict::Passed,
        Some(p) if !matches(p, f, ifindex) => BfdVerdict::Mismatch,
        Some(_) => BfdVerdict::Recorded,
    }
}

/// The ring-buffer record of a BFD packet or detection timeout: the same 80 bytes as
/// [`crate::AdvertEvent`], with `event` at the same offset, so one ring carries both.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BfdRecord {
    /// Packet arrival (for a timeout: the last packet's), CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// Interface.
    pub ifindex: u32,
    /// The session's local discriminator.
    pub local_discriminator: u32,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
    /// TTL / hop limit of the packet.
    pub ttl: u8,
    /// Reserved, zero.
    pub _pad: [u8; 5],
    /// [`EVENT_BFD_PACKET`], [`EVENT_BFD_DOWN`] or [`EVENT_BFD_TIMER_ERROR`].
    pub event: u8,
    /// The packet's mandatory section (for a timeout: the last packet's).
    pub header: [u8; BFD_HEADER_LEN],
    /// Source address.
    pub src: [u8; 16],
    /// Packets of the session recorded in the kernel so far.
    pub received: u64,
    /// Timeouts: the expiry the timer fired at (0 for packets).
    pub deadline_ns: u64,
}

const _: () = assert!(core::mem::size_of::<BfdRecord>() == 80);
const _: () = assert!(core::mem::offset_of!(BfdRecord, event) == 23);

impl BfdRecord {
    /// Fills a record in place (in the XDP program, a reserved ring slot).
    #[expect(
        clippy::too_many_arguments,
        reason = "the program fills a reserved slot in place; a struct would be a copy on its 512-byte stack"
    )]
    #[inline(always)]
    pub fn fill(
        &mut self,
        event: u8,
        ts: u64,
        ifindex: u32,
        local_discriminator: u32,
        f_family: u8,
        src: &[u8; 16],
        header: &[u8; BFD_HEADER_LEN],
        received: u64,
        deadline_ns: u64,
    ) {
        self.ts_ns = ts;
        self.ifindex = ifindex;
        self.local_discriminator = local_discriminator;
        self.family = f_family;
        self.ttl = 255;
        self._pad = [0; 5];
        self.event = event;
        self.header = *header;
        self.src = *src;
        self.received = received;
        self.deadline_ns = deadline_ns;
    }

    /// Whether an [`crate::AdvertEvent::event`] code is a BFD record's.
    pub const fn is_bfd(event: u8) -> bool {
        matches!(
            event,
            EVENT_BFD_PACKET | EVENT_BFD_DOWN | EVENT_BFD_TIMER_ERROR
        )
    }

    /// The record behind ring-buffer bytes read as an advert event.
    pub fn from_advert(e: &crate::AdvertEvent) -> BfdRecord {
        // SAFETY: both are repr(C) plain data of 80 bytes and alignment 8 (asserted),
        // every bit pattern is valid for either.
        unsafe { core::mem::transmute_copy(e) }
    }
}

const _: () = assert!(
    core::mem::size_of::<BfdRecord>() == core::mem::size_of::<crate::AdvertEvent>()
        && core::mem::align_of::<BfdRecord>() == core::mem::align_of::<crate::AdvertEvent>()
);

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all): repr(C), integers and byte arrays only, no implicit padding.
    unsafe impl aya::Pod for super::BfdParams {}
    unsafe impl aya::Pod for super::BfdState {}
    unsafe impl aya::Pod for super::BfdIfaceStats {}
    unsafe impl aya::Pod for super::BfdRecord {}
}

#[cfg(test)]
mod tests;
