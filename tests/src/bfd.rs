//! BFD Control packets (RFC 5880 §4.1) on the wire, for tests: read from captures and
//! crafted for floods, independently of vigil's own codec.

use std::net::Ipv4Addr;

use crate::capture::Packet;

/// Session states as the wire has them (RFC 5880 §4.1).
pub const ADMIN_DOWN: u8 = 0;
/// Down.
pub const DOWN: u8 = 1;
/// Init.
pub const INIT: u8 = 2;
/// Up.
pub const UP: u8 = 3;
/// Diagnostic "Administratively Down".
pub const DIAG_ADMIN_DOWN: u8 = 7;

/// One IPv4 BFD Control packet seen in a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Capture time, CLOCK_REALTIME ns.
    pub ts_ns: u64,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// State field.
    pub state: u8,
    /// Diagnostic.
    pub diag: u8,
    /// Poll bit.
    pub poll: bool,
    /// Final bit.
    pub final_: bool,
    /// Detect Mult.
    pub mult: u8,
    /// Desired Min TX Interval, µs.
    pub desired_tx_us: u32,
    /// Required Min RX Interval, µs.
    pub required_rx_us: u32,
}

/// The IPv4 BFD Control packets (UDP destination port 3784) of a capture.
pub fn packets(captured: &[Packet]) -> Vec<Seen> {
    captured
        .iter()
        .filter_map(|p| {
            let d = &p.data;
            if d.len() < 14 + 20 || d[12..14] != [0x08, 0x00] || d[14 + 9] != 17 {
                return None;
            }
            let ihl = usize::from(d[14] & 0x0f) * 4;
            let udp = 14 + ihl;
            if d.len() < udp + 8 + 24 || u16::from_be_bytes([d[udp + 2], d[udp + 3]]) != 3784 {
                return None;
            }
            let b = &d[udp + 8..];
            let word = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            Some(Seen {
                ts_ns: p.ts_ns,
                src: Ipv4Addr::new(d[26], d[27], d[28], d[29]),
                dst: Ipv4Addr::new(d[30], d[31], d[32], d[33]),
                state: b[1] >> 6,
                diag: b[0] & 0x1f,
                poll: b[1] & 0x20 != 0,
                final_: b[1] & 0x10 != 0,
                mult: b[2],
                desired_tx_us: word(12),
                required_rx_us: word(16),
            })
        })
        .collect()
}

/// An Ethernet frame carrying a BFD Control packet in state Down with Your
/// Discriminator 0 (a peer starting a session), TTL 255, from `src` to `dst`.
pub fn start_frame(
    (src_mac, dst_mac): ([u8; 6], [u8; 6]),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    my_discriminator: u32,
) -> Vec<u8> {
    let mut bfd = vec![0x20, DOWN << 6, 3, 24];
    bfd.extend_from_slice(&my_discriminator.to_be_bytes());
    bfd.extend_from_slice(&0u32.to_be_bytes());
    bfd.extend_from_slice(&1_000_000u32.to_be_bytes());
    bfd.extend_from_slice(&1_000_000u32.to_be_bytes());
    bfd.extend_from_slice(&0u32.to_be_bytes());
    let mut udp = Vec::new();
    udp.extend_from_slice(&49152u16.to_be_bytes());
    udp.extend_from_slice(&3784u16.to_be_bytes());
    udp.extend_from_slice(&((8 + bfd.len()) as u16).to_be_bytes());
    // Checksum 0: none, allowed over IPv4.
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&bfd);
    let mut ip = vec![0x45, 0xc0];
    ip.extend_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 255, 17, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}
