//! The record the XDP program writes to the ring buffer for each advert it reports.

/// Address family tag for IPv4 in [`AdvertEvent::family`].
pub const FAMILY_V4: u8 = 4;
/// Address family tag for IPv6 in [`AdvertEvent::family`].
pub const FAMILY_V6: u8 = 6;

/// [`AdvertEvent::event`]: an advert, as the program saw it arrive.
pub const EVENT_ADVERT: u8 = 0;
/// [`AdvertEvent::event`]: the kernel's down timer of a VRID found silence. `ts_ns` is the
/// arrival of the last advert (silent since), `deadline_ns` the Master_Down_Timer expiry
/// it fired at; source, priority, interval and version are the last advert's.
pub const EVENT_SILENCE: u8 = 1;
/// [`AdvertEvent::event`]: the kernel could not arm the VRID's down timer; the agent keeps
/// that deadline itself. `deadline_ns` is the one that could not be armed.
pub const EVENT_TIMER_ERROR: u8 = 2;

/// One VRRP advert as seen at the driver, timestamped on arrival, or a down-timer event
/// of a watched VRID ([`AdvertEvent::event`] says which).
///
/// Addresses are stored in 16 bytes; IPv4 uses the first 4.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdvertEvent {
    /// `bpf_ktime_get_ns()` at arrival: CLOCK_MONOTONIC, nanoseconds.
    pub ts_ns: u64,
    /// Interface the frame arrived on.
    pub ifindex: u32,
    /// Verdict code (0 = accepted; otherwise a drop or pass reason).
    pub verdict: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// VRRP version (high nibble of the first byte).
    pub version: u8,
    /// VRRP type (low nibble of the first byte).
    pub kind: u8,
    /// Virtual router identifier.
    pub vrid: u8,
    /// Advertised priority.
    pub priority: u8,
    /// Count of addresses in the advert.
    pub addr_count: u8,
    /// Raw interval field: v3 centiseconds (12 bits), v2 the advert interval in seconds.
    pub interval: u16,
    /// v2 authentication type (0 for v3).
    pub auth_type: u8,
    /// What this record is: [`EVENT_ADVERT`], [`EVENT_SILENCE`] or [`EVENT_TIMER_ERROR`].
    pub event: u8,
    /// [`crate::validate::address_digest`] of the advert's address list, so the agent can
    /// compare it with its own without the list itself crossing the ring buffer.
    pub addr_digest: u32,
    /// Reserved, zero.
    pub _pad2: u32,
    /// Source address of the IP header.
    pub src: [u8; 16],
    /// Destination address of the IP header.
    pub dst: [u8; 16],
    /// Adverts: arrival time of the first advert of the run this one belongs to (see
    /// `crate::suppress`), earlier than `ts_ns` when the reports of the run's first
    /// adverts were lost. Down-timer events: when the kernel wrote the event
    /// (CLOCK_MONOTONIC ns), so the agent can tell how late its timer fired and how long
    /// the event took to wake it.
    pub first_ns: u64,
    /// Down-timer events: the Master_Down_Timer expiry, CLOCK_MONOTONIC ns (0 for adverts).
    pub deadline_ns: u64,
}

impl AdvertEvent {
    /// An all-zero record.
    pub const fn zeroed() -> Self {
        Self {
            ts_ns: 0,
            ifindex: 0,
            verdict: 0,
            family: 0,
            ttl: 0,
            version: 0,
            kind: 0,
            vrid: 0,
            priority: 0,
            addr_count: 0,
            interval: 0,
            auth_type: 0,
            event: EVENT_ADVERT,
            addr_digest: 0,
            _pad2: 0,
            src: [0; 16],
            dst: [0; 16],
            first_ns: 0,
            deadline_ns: 0,
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), only integers and byte arrays, no padding holes (checked by the size test).
unsafe impl aya::Pod for AdvertEvent {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_has_no_padding() {
        assert_eq!(
            core::mem::size_of::<AdvertEvent>(),
            8 + 4 + 8 + 4 + 8 + 32 + 8 + 8
        );
        assert_eq!(core::mem::align_of::<AdvertEvent>(), 8);
    }

    #[test]
    fn field_offsets_are_stable() {
        // The kernel writes these offsets and the agent reads them: a reordering must be
        // deliberate on both sides.
        assert_eq!(core::mem::offset_of!(AdvertEvent, ts_ns), 0);
        assert_eq!(core::mem::offset_of!(AdvertEvent, ifindex), 8);
        assert_eq!(core::mem::offset_of!(AdvertEvent, vrid), 17);
        assert_eq!(core::mem::offset_of!(AdvertEvent, interval), 20);
        assert_eq!(core::mem::offset_of!(AdvertEvent, event), 23);
        assert_eq!(core::mem::offset_of!(AdvertEvent, addr_digest), 24);
        assert_eq!(core::mem::offset_of!(AdvertEvent, src), 32);
        assert_eq!(core::mem::offset_of!(AdvertEvent, dst), 48);
        assert_eq!(core::mem::offset_of!(AdvertEvent, first_ns), 64);
        assert_eq!(core::mem::offset_of!(AdvertEvent, deadline_ns), 72);
        assert_eq!(AdvertEvent::zeroed().event, EVENT_ADVERT);
    }
}
