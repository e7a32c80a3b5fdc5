//! RFC 5798 §7.1 / RFC 3768 §7.1 receive validation of a VRRP frame.
//!
//! This one function runs in two places: inside the XDP program on every frame, and in
//! the agent's raw-socket fallback when XDP is unavailable. Both get the same verdicts.
//! It is written for the eBPF verifier as much as for people: every offset is bounded by
//! construction (header lengths are masked nibbles, loops have constant bounds) and there
//! is no recursion or allocation.

use crate::frame::Frame;
use crate::{IPPROTO_VRRP, event::FAMILY_V4, event::FAMILY_V6};

/// Largest VRRP message vigil accepts; checksum loops are bounded by it.
pub const MAX_VRRP_LEN: usize = 2048;
/// The IPv4 multicast group of VRRP, 224.0.0.18 (RFC 5798 §5.1.1.2).
pub const GROUP_V4: [u8; 4] = [224, 0, 0, 18];
/// The IPv6 multicast group of VRRP, ff02::12 (RFC 5798 §5.1.2.2).
pub const GROUP_V6: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12];

const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const IPV6_HLEN: usize = 40;

/// Why a frame was judged the way it was. The discriminant indexes [`crate::IfaceStats`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Valid advert for a virtual router this interface watches: recorded and passed.
    Accept = 0,
    /// Valid advert for a VRID vigil does not watch: counted and passed.
    Foreign = 1,
    /// IPv4 TTL or IPv6 hop limit is not 255 (RFC 5798 §7.1).
    Ttl = 2,
    /// VRRP version is neither 2 nor 3.
    Version = 3,
    /// VRRP type is not 1 (ADVERTISEMENT).
    Type = 4,
    /// The IP or VRRP length is shorter than the headers, or longer than vigil accepts.
    Length = 5,
    /// The VRRP length does not hold the advertised count of addresses.
    Count = 6,
    /// The VRRP checksum is wrong.
    Checksum = 7,
    /// v2 authentication type or password does not match the configuration.
    Auth = 8,
    /// IPv4 fragment: VRRP adverts are never fragmented.
    Fragment = 9,
    /// Malformed IPv4 header (IHL below 5).
    Header = 10,
    /// Destination is neither the VRRP group nor a unicast peer setup.
    Destination = 11,
    /// A watched VRID received an advert of the other VRRP version.
    VersionMismatch = 12,
    /// v2 adverts over IPv6 do not exist (RFC 3768 is IPv4 only).
    Family = 13,
    /// An advert interval of 0: no router can keep that promise, and a Backup that
    /// believed it would time out at once.
    Interval = 14,
}

/// Number of [`Verdict`] values.
pub const VERDICTS: usize = 15;

impl Verdict {
    /// The verdict for a code, if it is one.
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Accept,
            1 => Self::Foreign,
            2 => Self::Ttl,
            3 => Self::Version,
            4 => Self::Type,
            5 => Self::Length,
            6 => Self::Count,
            7 => Self::Checksum,
            8 => Self::Auth,
            9 => Self::Fragment,
            10 => Self::Header,
            11 => Self::Destination,
            12 => Self::VersionMismatch,
            13 => Self::Family,
            14 => Self::Interval,
            _ => return None,
        })
    }

    /// Whether the frame is passed on to the stack (valid adverts are; invalid ones are
    /// discarded as RFC 5798 §7.1 says MUST).
    pub const fn passes(self) -> bool {
        matches!(self, Self::Accept | Self::Foreign)
    }

    /// A short name for logs, `vigil trace` and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Accept => "accepted",
            Self::Foreign => "foreign_vrid",
            Self::Ttl => "ttl",
            Self::Version => "version",
            Self::Type => "type",
            Self::Length => "length",
            Self::Count => "count",
            Self::Checksum => "checksum",
            Self::Auth => "auth",
            Self::Fragment => "fragment",
            Self::Header => "header",
            Self::Destination => "destination",
            Self::VersionMismatch => "version_mismatch",
            Self::Family => "family",
            Self::Interval => "interval",
        }
    }
}

/// What the agent asks of one watched (interface, family, VRID); filled from config.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchEntry {
    /// Configured VRRP version, 2 or 3.
    pub version: u8,
    /// v2 authentication type: 0 none, 1 simple password.
    pub auth_type: u8,
    /// `WATCH_*` flags.
    pub flags: u8,
    /// The local effective priority: with `WATCH_DROP_LOWER`, adverts below it are
    /// ignored (RFC 5798 §6.4.2).
    pub priority: u8,
    /// Changed by the agent when it wants the next advert reported whatever it says
    /// (a router that starts listening must learn its master's interval).
    pub epoch: u8,
    /// Reserved, zero.
    pub _pad: [u8; 3],
    /// v2 simple password, zero padded.
    pub auth: [u8; 8],
}

/// Unicast adverts are expected (the instance has unicast peers).
pub const WATCH_UNICAST: u8 = 1;
/// The instance sends its v3 IPv4 checksum without the pseudo-header (keepalived
/// `v3_checksum_as_v2`). Receiving accepts both styles whatever the flag, as keepalived
/// does, so peers in mixed modes understand each other.
pub const WATCH_V3_CSUM_AS_V2: u8 = 2;
/// Report every accepted advert to the agent, not only changes (the instance is Master
/// or wants to see each advert).
pub const WATCH_REPORT_ALL: u8 = 4;
/// Drop adverts below `priority` (other than priority 0) in the datapath: set by the
/// agent only while the router is a Backup that preempts and no preempt delay runs, when
/// the election would discard them anyway (RFC 5798 §6.4.2), so they neither reset its
/// down timer nor reach the agent.
pub const WATCH_DROP_LOWER: u8 = 8;

/// The fields of a VRRP frame the election and the counters need.
///
/// The addresses come first, at 8-byte aligned offsets: the XDP program then clears and
/// copies them as words, where at odd offsets the compiler calls a byte-by-byte loop.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Advert {
    /// Source address (IPv4 in the first 4 bytes).
    pub src: [u8; 16],
    /// Destination address (IPv4 in the first 4 bytes).
    pub dst: [u8; 16],
    /// `event::FAMILY_V4` or `event::FAMILY_V6`.
    pub family: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// Offset of the VRRP header in the frame.
    pub vrrp_off: usize,
    /// Length of the VRRP message (IP payload).
    pub vrrp_len: usize,
    /// VRRP version.
    pub version: u8,
    /// VRRP type.
    pub kind: u8,
    /// Virtual router identifier.
    pub vrid: u8,
    /// Advertised priority.
    pub priority: u8,
    /// Count of addresses.
    pub addr_count: u8,
    /// v2 authentication type.
    pub auth_type: u8,
    /// Raw interval field (v3: centiseconds, 12 bits; v2: seconds).
    pub interval: u16,
    /// 1 when the frame carries an 802.1Q / 802.1ad tag.
    pub tagged: u8,
}

const _: () = assert!(
    core::mem::size_of::<Advert>().is_multiple_of(8) && core::mem::align_of::<Advert>() == 8
);

impl Advert {
    /// Sets every field to zero, a word at a time. The XDP program's copy lives in a map;
    /// the compiler would clear it with a call to a byte-by-byte loop.
    #[inline(always)]
    pub fn clear(&mut self) {
        let words = (self as *mut Self).cast::<u64>();
        let mut i = 0;
        while i < core::mem::size_of::<Self>() / 8 {
            // SAFETY: `self` is 8-aligned and a whole number of words long (asserted
            // above), so word `i` lies inside it; every field is an integer or a byte
            // array, for which all-zero is a valid value. Volatile, so the compiler
            // cannot merge the stores back into a `memset` call.
            unsafe { core::ptr::write_volatile(words.add(i), 0) };
            i += 1;
        }
    }
}

/// The watched virtual router a parsed frame on `ifindex` is credited to, or `None` for a
/// frame carrying a VLAN tag: that one belongs to the VLAN's sub-interface (where it
/// arrives again, untagged), never to a virtual router of the parent.
#[inline(always)]
pub fn watch_key(ifindex: u32, a: &Advert) -> Option<crate::VridKey> {
    if a.tagged != 0 {
        return None;
    }
    Some(crate::VridKey {
        ifindex,
        family: a.family,
        vrid: a.vrid,
        _pad: 0,
    })
}

/// Outcome of [`parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a VRRP frame at all (not IP, or not protocol 112): pass it, count nothing.
    NotVrrp,
    /// A VRRP frame whose headers were read into the `Advert`; [`check`] judges it.
    Vrrp,
    /// A VRRP frame with broken headers.
    Broken(Verdict),
}

/// Parses the Ethernet, IP and VRRP headers of `frame` into `a`.
///
/// The result is written through `a` rather than returned: in the XDP program `a` lives
/// in a per-CPU map, because the eBPF stack is too small for copies of it.
#[inline(always)]
pub fn parse<F: Frame + ?Sized>(frame: &F, a: &mut Advert) -> Parsed {
    match parse_inner(frame, a) {
        None => Parsed::NotVrrp,
        Some(Ok(())) => Parsed::Vrrp,
        Some(Err(v)) => Parsed::Broken(v),
    }
}

#[inline(always)]
fn parse_inner<F: Frame + ?Sized>(frame: &F, a: &mut Advert) -> Option<Result<(), Verdict>> {
    let mut ethertype = frame.u16_at(12)?;
    let mut l3 = ETH_HLEN;
    let mut tagged = 0;
    // One 802.1Q (or 802.1ad) tag.
    if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
        ethertype = frame.u16_at(16)?;
        l3 = ETH_HLEN + 4;
        tagged = 1;
    }
    a.clear();
    a.tagged = tagged;
    let ip_payload_len;
    if ethertype == ETHERTYPE_IPV4 {
        // Loaded in small pieces: the eBPF stack is 512 bytes for the whole program.
        let h: [u8; 10] = frame.load(l3)?;
        if h[0] >> 4 != 4 || h[9] != IPPROTO_VRRP {
            return None;
        }
        let ihl = ((h[0] & 0x0f) as usize) * 4;
        if ihl < 20 {
            return Some(Err(Verdict::Header));
        }
        let frag = u16::from_be_bytes([h[6], h[7]]);
        // More-fragments set or a non-zero offset (RFC 791).
        if frag & 0x3fff != 0 {
            return Some(Err(Verdict::Fragment));
        }
        let total = u16::from_be_bytes([h[2], h[3]]) as usize;
        if total < ihl + 8 {
            return Some(Err(Verdict::Length));
        }
        a.family = FAMILY_V4;
        a.ttl = h[8];
        let addrs: [u8; 8] = frame.load(l3 + 12)?;
        a.src[..4].copy_from_slice(&addrs[..4]);
        a.dst[..4].copy_from_slice(&addrs[4..]);
        a.vrrp_off = l3 + ihl;
        ip_payload_len = total - ihl;
    } else if ethertype == ETHERTYPE_IPV6 {
        let h: [u8; 8] = frame.load(l3)?;
        // Extension headers are not followed: VRRP adverts carry none.
        if h[0] >> 4 != 6 || h[6] != IPPROTO_VRRP {
            return None;
        }
        a.family = FAMILY_V6;
        a.ttl = h[7];
        // In 8-byte halves: a 16-byte load is a call to a byte-by-byte copy on eBPF.
        let halves: [[u8; 8]; 4] = [
            frame.load(l3 + 8)?,
            frame.load(l3 + 16)?,
            frame.load(l3 + 24)?,
            frame.load(l3 + 32)?,
        ];
        a.src[..8].copy_from_slice(&halves[0]);
        a.src[8..].copy_from_slice(&halves[1]);
        a.dst[..8].copy_from_slice(&halves[2]);
        a.dst[8..].copy_from_slice(&halves[3]);
        a.vrrp_off = l3 + IPV6_HLEN;
        ip_payload_len = u16::from_be_bytes([h[4], h[5]]) as usize;
    } else {
        return None;
    }
    // Every VRRP message is a whole number of 16-bit words (8-byte header, 4- or 16-byte
    // addresses, 8-byte v2 authentication), so an odd length is malformed; rejecting it
    // also keeps the checksum loop free of single-byte loads.
    if !(8..=MAX_VRRP_LEN).contains(&ip_payload_len) || ip_payload_len & 1 == 1 {
        return Some(Err(Verdict::Length));
    }
    a.vrrp_len = ip_payload_len;
    let Some(v) = frame.load::<8>(a.vrrp_off) else {
        return Some(Err(Verdict::Length));
    };
    a.version = v[0] >> 4;
    a.kind = v[0] & 0x0f;
    a.vrid = v[1];
    a.priority = v[2];
    a.addr_count = v[3];
    if a.version == 3 {
        a.interval = u16::from_be_bytes([v[4], v[5]]) & 0x0fff;
    } else {
        a.auth_type = v[4];
        a.interval = v[5] as u16;
    }
    Some(Ok(()))
}

/// Applies RFC 5798 §7.1 (and RFC 3768 §7.1 for v2) to a parsed advert.
///
/// `watch` is the configuration for (interface, family, VRID), if vigil watches it.
#[inline(always)]
pub fn check<F: Frame + ?Sized>(frame: &F, a: &Advert, watch: Option<&WatchEntry>) -> Verdict {
    let multicast = if a.family == FAMILY_V4 {
        a.dst[..4] == GROUP_V4
    } else {
        a.dst == GROUP_V6
    };
    if !multicast {
        match watch {
            // Unicast VRRP for a VRID vigil does not watch is another daemon's business:
            // passed untouched.
            None => return Verdict::Foreign,
            Some(w) if w.flags & WATCH_UNICAST == 0 => return Verdict::Destination,
            Some(_) => {}
        }
    }
    // §7.1: "MUST verify that the IPvX TTL/Hop Limit is 255" — for the multicast group.
    // Unicast adverts cross routers and keepalived sends IPv6 unicast with the default
    // hop limit, so, as keepalived does, any TTL is accepted there.
    if multicast && a.ttl != 255 {
        return Verdict::Ttl;
    }
    // §7.1: "MUST verify the VRRP version is 3" — vigil also speaks v2 (RFC 3768).
    if a.version != 2 && a.version != 3 {
        return Verdict::Version;
    }
    if a.version == 2 && a.family == FAMILY_V6 {
        return Verdict::Family;
    }
    if a.kind != 1 {
        return Verdict::Type;
    }
    // §7.1: "MUST verify that the received packet contains the complete VRRP packet
    // (including fixed fields, and IPvX address(es))".
    let addr_len = if a.family == FAMILY_V4 { 4 } else { 16 };
    let auth_len = if a.version == 2 { 8 } else { 0 };
    let need = 8 + (a.addr_count as usize) * addr_len + auth_len;
    // RFC 5798 §5.2.5: "The minimum value is 1".
    if a.addr_count == 0 || a.vrrp_len < need {
        return Verdict::Count;
    }
    // RFC 5798 §5.2.7 / RFC 3768 §5.3.7: an interval of 0 is no interval.
    if a.interval == 0 {
        return Verdict::Interval;
    }
    // §7.1: "MUST verify the VRRP checksum". v3 covers the pseudo-header (§5.2.8); v2
    // does not, and keepalived's `v3_checksum_as_v2` sends v3 over IPv4 without it.
    // Either style is accepted over IPv4, as keepalived does.
    let Some((message, pseudo)) = checksum(frame, a) else {
        return Verdict::Length;
    };
    let good = match (a.version, a.family) {
        (3, FAMILY_V4) => complement(message + pseudo) == 0 || complement(message) == 0,
        (3, _) => complement(message + pseudo) == 0,
        _ => complement(message) == 0,
    };
    if !good {
        return Verdict::Checksum;
    }
    let Some(w) = watch else {
        // §7.1: "MUST verify that the VRID is configured on the receiving interface";
        // other daemons may serve it, so it is passed on, not dropped.
        return Verdict::Foreign;
    };
    if a.version != w.version {
        return Verdict::VersionMismatch;
    }
    // RFC 3768 §7.1: the authentication type must match the local one; with simple
    // text authentication the password must match too.
    if a.version == 2 {
        if a.auth_type != w.auth_type {
            return Verdict::Auth;
        }
        if w.auth_type == 1 {
            let off = a.vrrp_off + 8 + (a.addr_count as usize) * 4;
            match frame.load::<8>(off) {
                Some(pass) if pass == w.auth => {}
                _ => return Verdict::Auth,
            }
        }
    }
    Verdict::Accept
}

/// Folds one address (IPv4 in the first 4 bytes, the rest zero) into 32 bits.
#[inline(always)]
pub fn mix_address(a: &[u8; 16]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < 4 {
        let w = u32::from_be_bytes([a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]]);
        h = (h ^ w).wrapping_mul(0x0100_0193);
        h ^= h >> 15;
        i += 1;
    }
    h
}

/// An order-independent digest of the advert's address list: the wrapping sum of
/// [`mix_address`] over the addresses. `None` when the list runs past the frame.
#[inline(always)]
pub fn address_digest<F: Frame + ?Sized>(frame: &F, a: &Advert) -> Option<u32> {
    let v4 = a.family == FAMILY_V4;
    let mut sum: u32 = 0;
    let mut i: usize = 0;
    while i < 255 {
        if i >= a.addr_count as usize {
            break;
        }
        let mut addr = [0u8; 16];
        if v4 {
            let b: [u8; 4] = frame.load(a.vrrp_off + 8 + 4 * i)?;
            addr[..4].copy_from_slice(&b);
        } else {
            addr = frame.load(a.vrrp_off + 8 + 16 * i)?;
        }
        sum = sum.wrapping_add(mix_address(&addr));
        i += 1;
    }
    Some(sum)
}

/// The 32-bit sums of the VRRP message's 16-bit words and of its pseudo-header (RFC
/// 5798 §5.2.8 via RFC 2460 §8.1 / RFC 768: source, destination, length, protocol), one
/// pass over the message for both checksum styles. `None` when the message runs past
/// the frame.
#[inline(always)]
fn checksum<F: Frame + ?Sized>(frame: &F, a: &Advert) -> Option<(u32, u32)> {
    let mut pseudo: u32 = 0;
    let n = if a.family == FAMILY_V4 { 2 } else { 8 };
    let mut i = 0;
    while i < 8 {
        if i < n {
            pseudo += u16::from_be_bytes([a.src[2 * i], a.src[2 * i + 1]]) as u32;
            pseudo += u16::from_be_bytes([a.dst[2 * i], a.dst[2 * i + 1]]) as u32;
        }
        i += 1;
    }
    pseudo += a.vrrp_len as u32 + IPPROTO_VRRP as u32;
    let sum = frame.word_sum(a.vrrp_off, a.vrrp_len)?;
    Some((sum as u32, pseudo))
}

/// Folds a sum of at most about 1100 words to 16 bits and complements it: zero means the
/// checksum is right. Two folds always suffice, and a fixed count keeps the verifier
/// happy.
#[inline(always)]
fn complement(sum: u32) -> u16 {
    let mut sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid VRRPv3 advert from 192.0.2.1 for VRID 51, priority 100, 1 s, one address.
    fn frame() -> [u8; 14 + 20 + 12] {
        let mut f = [0u8; 46];
        f[12] = 0x08;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&32u16.to_be_bytes());
        f[22] = 255;
        f[23] = 112;
        f[26..30].copy_from_slice(&[192, 0, 2, 1]);
        f[30..34].copy_from_slice(&GROUP_V4);
        f[34..46].copy_from_slice(&[0x31, 51, 100, 1, 0, 100, 0, 0, 192, 0, 2, 100]);
        seal(&mut f);
        f
    }

    /// Writes the v3 checksum (with the pseudo-header) of an IPv4 frame with a 20-byte
    /// header.
    fn seal(f: &mut [u8]) {
        f[40..42].copy_from_slice(&[0, 0]);
        let mut sum: u32 = 0;
        for w in f[26..34].chunks(2).chain(f[34..].chunks(2)) {
            sum += u16::from_be_bytes([w[0], w[1]]) as u32;
        }
        sum += (f.len() - 34) as u32 + 112;
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        f[40..42].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }

    fn judge(f: &[u8], watch: Option<&WatchEntry>) -> Verdict {
        let mut a = Advert::default();
        match parse(f, &mut a) {
            Parsed::NotVrrp => panic!("not VRRP"),
            Parsed::Broken(v) => v,
            Parsed::Vrrp => check(f, &a, watch),
        }
    }

    const V3: WatchEntry = WatchEntry {
        version: 3,
        auth_type: 0,
        flags: 0,
        priority: 100,
        epoch: 0,
        _pad: [0; 3],
        auth: [0; 8],
    };

    #[test]
    fn valid_advert_is_accepted_when_watched_and_foreign_otherwise() {
        let f = frame();
        assert_eq!(judge(&f, Some(&V3)), Verdict::Accept);
        assert_eq!(judge(&f, None), Verdict::Foreign);
    }

    #[test]
    fn ihl_below_five_is_a_header_error() {
        let mut f = frame();
        f[14] = 0x44;
        assert_eq!(judge(&f, Some(&V3)), Verdict::Header);
    }

    #[test]
    fn ttl_must_be_255() {
        let mut f = frame();
        f[22] = 64;
        assert_eq!(judge(&f, Some(&V3)), Verdict::Ttl);
    }

    /// The advert of `frame()`, sent to 192.0.2.12 by unicast.
    fn unicast_frame() -> [u8; 46] {
        let mut f = frame();
        f[30..34].copy_from_slice(&[192, 0, 2, 12]);
        seal(&mut f);
        f
    }

    const V3_UNICAST: WatchEntry = WatchEntry {
        flags: WATCH_UNICAST,
        ..V3
    };

    #[test]
    fn unicast_adverts_are_accepted_whatever_their_ttl() {
        let mut f = unicast_frame();
        for ttl in [255, 64, 1] {
            f[22] = ttl;
            assert_eq!(judge(&f, Some(&V3_UNICAST)), Verdict::Accept, "TTL {ttl}");
        }
    }

    #[test]
    fn multicast_adverts_still_need_ttl_255() {
        let mut f = frame();
        f[22] = 64;
        assert_eq!(judge(&f, Some(&V3_UNICAST)), Verdict::Ttl);
    }

    #[test]
    fn unicast_vrrp_for_a_vrid_not_watched_passes_untouched() {
        let mut f = unicast_frame();
        f[22] = 64;
        let v = judge(&f, None);
        assert_eq!(v, Verdict::Foreign);
        assert!(v.passes());
        // Unicast to a watched VRID that expects multicast is still dropped.
        assert_eq!(judge(&unicast_frame(), Some(&V3)), Verdict::Destination);
    }

    #[test]
    fn a_tagged_frame_seen_on_the_parent_is_never_the_parents() {
        let plain = frame();
        let mut tagged = [0u8; 50];
        tagged[..12].copy_from_slice(&plain[..12]);
        tagged[12..16].copy_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        tagged[16..].copy_from_slice(&plain[12..]);
        let mut a = Advert::default();
        assert_eq!(parse(&plain[..], &mut a), Parsed::Vrrp);
        assert!(watch_key(2, &a).is_some_and(|k| k.ifindex == 2 && k.vrid == 51));
        assert_eq!(parse(&tagged[..], &mut a), Parsed::Vrrp);
        assert_eq!(watch_key(2, &a), None);
        // Unwatched, it passes on untouched to the sub-interface.
        assert_eq!(check(&tagged[..], &a, None), Verdict::Foreign);
    }

    #[test]
    fn odd_length_is_malformed() {
        let mut f = [0u8; 47];
        f[..46].copy_from_slice(&frame());
        f[16..18].copy_from_slice(&33u16.to_be_bytes());
        assert_eq!(judge(&f, Some(&V3)), Verdict::Length);
    }

    #[test]
    fn truncated_frame_is_a_length_error_not_a_panic() {
        let f = frame();
        for n in 34..f.len() {
            let v = judge(&f[..n], Some(&V3));
            assert!(!v.passes(), "{n} bytes passed as {v:?}");
        }
    }

    #[test]
    fn checksum_covers_the_pseudo_header() {
        let mut f = frame();
        f[29] = 2; // another source: the same VRRP bytes no longer sum right
        assert_eq!(judge(&f, Some(&V3)), Verdict::Checksum);
    }

    /// keepalived's `v3_checksum_as_v2`: the same advert with the checksum over the
    /// message alone.
    fn frame_as_v2() -> [u8; 46] {
        let mut f = frame();
        f[40..42].copy_from_slice(&[0, 0]);
        let mut sum: u32 = 0;
        for w in f[34..46].chunks(2) {
            sum += u16::from_be_bytes([w[0], w[1]]) as u32;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        f[40..42].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        f
    }

    #[test]
    fn v3_checksum_as_v2_accepts_both_checksum_styles_whatever_the_local_setting() {
        let csum_as_v2 = WatchEntry {
            flags: WATCH_V3_CSUM_AS_V2,
            ..V3
        };
        for w in [&V3, &csum_as_v2] {
            assert_eq!(judge(&frame(), Some(w)), Verdict::Accept, "{w:?}");
            assert_eq!(judge(&frame_as_v2(), Some(w)), Verdict::Accept, "{w:?}");
        }
        let mut bad = frame_as_v2();
        bad[41] ^= 1;
        assert_eq!(judge(&bad, Some(&V3)), Verdict::Checksum);
    }

    #[test]
    fn rfc5798_5_2_5_an_address_count_of_zero_is_rejected() {
        // The same advert without its address: 8 bytes of VRRP, count 0.
        let mut f = [0u8; 42];
        f[..42].copy_from_slice(&frame()[..42]);
        f[16..18].copy_from_slice(&28u16.to_be_bytes());
        f[37] = 0;
        seal(&mut f);
        assert_eq!(judge(&f, Some(&V3)), Verdict::Count);
    }

    #[test]
    fn rfc5798_5_2_7_an_advert_interval_of_zero_is_rejected() {
        let mut f = frame();
        f[38..40].copy_from_slice(&[0, 0]);
        seal(&mut f);
        assert_eq!(judge(&f, Some(&V3)), Verdict::Interval);
        assert_eq!(judge(&f, None), Verdict::Interval);
    }

    #[test]
    fn every_verdict_code_round_trips() {
        for code in 0..VERDICTS as u8 {
            let v = Verdict::from_code(code).expect("code in range");
            assert_eq!(v as u8, code);
        }
        assert_eq!(Verdict::from_code(VERDICTS as u8), None);
    }
}
