//! The record the XDP program writes to the ring buffer for each advert it reports.

/// Address family tag for IPv4 in [`AdvertEvent::family`].
pub const FAMILY_V4: u8 = 4;
/// Address family tag for IPv6 in [`AdvertEvent::family`].
pub const FAMILY_V6: u8 = 6;

/// One VRRP advert as seen at the driver, timestamped on arrival.
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
    /// Reserved, zero.
    pub _pad: u8,
    /// [`crate::validate::address_digest`] of the advert's address list, so the agent can
    /// compare it with its own without the list itself crossing the ring buffer.
    pub addr_digest: u32,
    /// Reserved, zero.
    pub _pad2: u32,
    /// Source address of the IP header.
    pub src: [u8; 16],
    /// Destination address of the IP header.
    pub dst: [u8; 16],
    /// Arrival time of the first advert of the run this one belongs to (see
    /// `crate::suppress`): earlier than `ts_ns` when the reports of the run's first
    /// adverts were lost.
    pub first_ns: u64,
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
            _pad: 0,
            addr_digest: 0,
            _pad2: 0,
            src: [0; 16],
            dst: [0; 16],
            first_ns: 0,
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
            8 + 4 + 8 + 4 + 8 + 32 + 8
        );
        assert_eq!(core::mem::align_of::<AdvertEvent>(), 8);
    }
}
