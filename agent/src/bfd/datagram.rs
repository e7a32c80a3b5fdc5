//! The IP and UDP layers around a single-hop BFD Control packet (RFC 5881), for paths that
//! see whole packets (a raw socket, the fixtures) rather than a UDP socket's payload.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::bfd::packet::{BFD_CONTROL_PORT, BFD_TTL};

const IPPROTO_UDP: u8 = 17;
const IPV6_HEADER_LEN: usize = 40;
const UDP_HEADER_LEN: usize = 8;

/// A UDP datagram with the IP fields single-hop BFD checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// IP source.
    pub source: IpAddr,
    /// IP destination.
    pub destination: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// UDP source port.
    pub source_port: u16,
    /// UDP destination port.
    pub destination_port: u16,
    /// The UDP payload.
    pub payload: &'a [u8],
}

/// Why bytes are not a single-hop BFD datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// Not an IPv4 or IPv6 packet carrying a whole UDP datagram.
    #[error("not a UDP datagram in IPv4 or IPv6")]
    Malformed,
    /// A fragment: single-hop BFD packets are never fragmented.
    #[error("IP fragment")]
    Fragment,
    /// Not to the BFD control port.
    #[error("destination port {0}, not 3784")]
    Port(u16),
    /// TTL / hop limit other than 255: the sender is not on this link (RFC 5881 §5).
    #[error("TTL {0}, not 255")]
    Ttl(u8),
}

impl<'a> Datagram<'a> {
    /// Reads an IPv4 or IPv6 packet holding a UDP datagram (IPv6 without extension
    /// headers). Checks lengths only; the UDP checksum is left to whoever delivered it.
    pub fn parse(bytes: &'a [u8]) -> Result<Datagram<'a>, DatagramError> {
        let version = bytes.first().ok_or(DatagramError::Malformed)? >> 4;
        let (source, destination, ttl, udp) = match version {
            4 => {
                let ihl = usize::from(bytes[0] & 0x0f) * 4;
                let header = bytes.get(..ihl.max(20)).ok_or(DatagramError::Malformed)?;
                if ihl < 20 || header[9] != IPPROTO_UDP {
                    return Err(DatagramError::Malformed);
                }
                let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
                let fragment = u16::from_be_bytes([header[6], header[7]]);
                if fragment & 0x3fff != 0 {
                    return Err(DatagramError::Fragment);
                }
                let udp = bytes.get(ihl..total).ok_or(DatagramError::Malformed)?;
                let source = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
                let destination = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
                (source.into(), destination.into(), header[8], udp)
            }
            6 => {
                let header = bytes
                    .get(..IPV6_HEADER_LEN)
                    .ok_or(DatagramError::Malformed)?;
                if header[6] != IPPROTO_UDP {
                    return Err(DatagramError::Malformed);
                }
                let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
                let udp = bytes
                    .get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + payload_len)
                    .ok_or(DatagramError::Malformed)?;
                let address = |at: usize| {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(&header[at..at + 16]);
                    Ipv6Addr::from(octets)
                };
                (address(8).into(), address(24).into(), header[7], udp)
            }
            _ => return Err(DatagramError::Malformed),
        };
        let udp_header = udp.get(..UDP_HEADER_LEN).ok_or(DatagramError::Malformed)?;
        let udp_len = usize::from(u16::from_be_bytes([udp_header[4], udp_header[5]]));
        let payload = udp
            .get(UDP_HEADER_LEN..udp_len.max(UDP_HEADER_LEN))
            .ok_or(DatagramError::Malformed)?;
        Ok(Datagram {
            source,
            destination,
            ttl,
            source_port: u16::from_be_bytes([udp_header[0], udp_header[1]]),
            destination_port: u16::from_be_bytes([udp_header[2], udp_header[3]]),
            payload,
        })
    }

    /// RFC 5881 §4–5 on receive: to port 3784 with TTL / hop limit 255.
    pub fn check_single_hop(&self) -> Result<(), DatagramError> {
        if self.destination_port != BFD_CONTROL_PORT {
            return Err(DatagramError::Port(self.destination_port));
        }
        if self.ttl != BFD_TTL {
            return Err(DatagramError::Ttl(self.ttl));
        }
        Ok(())
    }
}
