//! VRRP advertisement codec: version 2 (RFC 3768) and version 3 (RFC 5798), IPv4 and IPv6.
//!
//! Decoding is total: any byte string yields either an [`Advertisement`] or a
//! [`DecodeError`] naming the rule it breaks; nothing here panics or indexes out of
//! bounds. The checks are those of RFC 5798 §7.1 / RFC 3768 §7.1 that need only the packet
//! and its IP header, made by the datapath's own judge (`vigil_common::validate`), so
//! tools, fuzzing and tests exercise the rules production runs; the checks that need the virtual router's configuration (VRID
//! configured, address owner, interval match, authentication data) belong to
//! [`crate::vrrp::router`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use vigil_common::validate;

/// IP protocol number of VRRP (RFC 5798 §5.1.1.4, §5.1.2.4).
pub const IPPROTO_VRRP: u8 = 112;
/// TTL / hop limit every VRRP packet is sent with and must arrive with (RFC 5798 §5.1.1.3).
pub const VRRP_TTL: u8 = 255;
/// IPv4 multicast group of VRRP (RFC 5798 §5.1.1.2).
pub const VRRP_MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group of VRRP (RFC 5798 §5.1.2.2).
pub const VRRP_MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Priority a router sends when it stops being Master (RFC 5798 §5.2.4).
pub const PRIORITY_STOP: u8 = 0;
/// Priority of the router that owns the virtual addresses (RFC 5798 §5.2.4).
pub const PRIORITY_OWNER: u8 = 255;

/// The only VRRP packet type (RFC 5798 §5.2.2).
const TYPE_ADVERTISEMENT: u8 = 1;
/// Fixed part of every VRRP message (RFC 5798 §5.2, RFC 3768 §5.1).
const HEADER_LEN: usize = 8;
/// Length of the VRRPv2 authentication data field (RFC 3768 §5.3.10).
const AUTH_DATA_LEN: usize = 8;
/// v2 authentication types (RFC 3768 §5.3.6; type 1 from RFC 2338 §5.3.6).
const AUTH_TYPE_NONE: u8 = 0;
const AUTH_TYPE_SIMPLE: u8 = 1;
/// Largest v3 Max Adver Int: 12 bits of centiseconds (RFC 5798 §5.2.7).
const V3_MAX_INTERVAL_CS: u16 = 0x0fff;
const CENTISECOND: Duration = Duration::from_millis(10);

/// VRRP protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Version {
    /// VRRPv2, RFC 3768 (IPv4 only, interval in seconds, optional simple password).
    V2,
    /// VRRPv3, RFC 5798 (IPv4 and IPv6, interval in centiseconds).
    V3,
}

impl Version {
    /// The number carried in the packet's version nibble.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VRRPv{}", self.number())
    }
}

/// VRRPv2 authentication (RFC 3768 §5.3.6; the simple password is RFC 2338's type 1).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub enum Auth {
    /// Type 0: no authentication; the 8 data bytes are zero on send, ignored on receive.
    #[default]
    None,
    /// Type 1: a clear-text password of up to 8 bytes, zero padded.
    SimplePassword([u8; AUTH_DATA_LEN]),
}

impl Auth {
    /// A simple password (keepalived `auth_type PASS`); `None` if longer than 8 bytes.
    pub fn password(password: &[u8]) -> Option<Auth> {
        let mut data = [0u8; AUTH_DATA_LEN];
        data.get_mut(..password.len())?.copy_from_slice(password);
        Some(Auth::SimplePassword(data))
    }

    fn type_number(&self) -> u8 {
        match self {
            Auth::None => AUTH_TYPE_NONE,
            Auth::SimplePassword(_) => AUTH_TYPE_SIMPLE,
        }
    }

    fn data(&self) -> [u8; AUTH_DATA_LEN] {
        match self {
            Auth::None => [0; AUTH_DATA_LEN],
            Auth::SimplePassword(data) => *data,
        }
    }
}

// The password goes over the wire in clear, but logs are read by more people than sniff
// the VRRP segment: keep it out of Debug output.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::SimplePassword(_) => f.write_str("SimplePassword(..)"),
        }
    }
}

/// How the VRRPv3 checksum over IPv4 is computed; IPv6 always uses the pseudo-header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ChecksumMode {
    /// RFC 5798 §5.2.8: over the VRRP message and the IPv4 pseudo-header.
    #[default]
    PseudoHeader,
    /// Like VRRPv2, over the VRRP message alone, for peers that do so (keepalived's
    /// `v3_checksum_as_v2`). On receive, the RFC checksum is accepted too.
    AsV2,
}

/// Why a byte string is not an acceptable VRRP advertisement.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the fixed VRRP header.
    #[error("truncated: {len} bytes, a VRRP header needs 8 (RFC 5798 §5.2)")]
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// Version nibble neither 2 nor 3.
    #[error("version {0} is neither 2 nor 3 (RFC 5798 §5.2.1)")]
    Version(u8),
    /// VRRPv2 carried over IPv6.
    #[error("VRRPv2 over IPv6: RFC 3768 is IPv4 only")]
    V2OverIpv6,
    /// Type nibble is not 1 (Advertisement).
    #[error("type {0} is not 1 (Advertisement) (RFC 5798 §5.2.2)")]
    Type(u8),
    /// Virtual router id 0.
    #[error("VRID 0 is outside 1..=255 (RFC 5798 §5.2.3)")]
    Vrid,
    /// Advertisement interval of zero.
    #[error("advertisement interval 0 (RFC 5798 §5.2.7, RFC 3768 §5.3.7)")]
    Interval,
    /// Length disagrees with the address count.
    #[error(
        "{count} addresses need {expected} bytes but the message has {actual} (RFC 5798 §5.2.5, §7.1)"
    )]
    Count {
        /// The Count IPvX Addr field.
        count: u8,
        /// Length that count implies.
        expected: usize,
        /// Length received.
        actual: usize,
    },
    /// Checksum does not verify.
    #[error("checksum {found:#06x} does not verify (RFC 5798 §5.2.8, §7.1)")]
    Checksum {
        /// The checksum field as received.
        found: u16,
    },
    /// v2 authentication type this implementation does not speak.
    #[error(
        "authentication type {0} unsupported: 0 (none) and 1 (simple password) are (RFC 3768 §5.3.6)"
    )]
    AuthType(u8),
    /// IPv4 TTL not 255.
    #[error("TTL {0} is not 255 (RFC 5798 §5.1.1.3, §7.1)")]
    Ttl(u8),
    /// IPv6 hop limit not 255.
    #[error("hop limit {0} is not 255 (RFC 5798 §5.1.2.3, §7.1)")]
    HopLimit(u8),
    /// Not an IPv4 packet (raw IPv4 decode only).
    #[error("IP version {0}, not 4")]
    NotIpv4(u8),
    /// Bad IPv4 header length (raw IPv4 decode only).
    #[error("IPv4 header length {ihl} words does not fit {len} bytes")]
    Ipv4HeaderLength {
        /// The IHL field in 32-bit words.
        ihl: u8,
        /// Bytes available.
        len: usize,
    },
    /// IPv4 total length larger than the buffer or smaller than the header.
    #[error("IPv4 total length {total} does not fit {len} bytes")]
    Ipv4TotalLength {
        /// The Total Length field.
        total: u16,
        /// Bytes available.
        len: usize,
    },
    /// IPv4 header checksum wrong.
    #[error("IPv4 header checksum does not verify")]
    Ipv4HeaderChecksum,
    /// IPv4 fragment.
    #[error("IPv4 fragment: VRRP fits one packet")]
    Fragment,
    /// IP protocol not 112.
    #[error("IP protocol {0} is not 112 (RFC 5798 §5.1.1.4)")]
    Protocol(u8),
}

/// Why an advertisement cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// More than 255 addresses.
    #[error("{0} addresses: Count IPvX Addr is one byte (RFC 5798 §5.2.5)")]
    TooManyAddresses(usize),
    /// An address of another family than the packet's source.
    #[error("address {0} is not of the packet's address family (RFC 5798 §5.2.9)")]
    AddressFamily(IpAddr),
    /// VRRPv2 over IPv6.
    #[error("VRRPv2 over IPv6: RFC 3768 is IPv4 only")]
    V2OverIpv6,
    /// Interval not representable in the packet.
    #[error(
        "interval {0:?} not representable: v2 takes whole seconds 1..=255, v3 centiseconds 1..=4095"
    )]
    Interval(Duration),
    /// VRID 0.
    #[error("VRID 0 is outside 1..=255 (RFC 5798 §5.2.3)")]
    Vrid,
    /// Authentication on a VRRPv3 packet.
    #[error("VRRPv3 has no authentication (RFC 5798 §9)")]
    AuthOnV3,
}

/// One VRRP advertisement, decoded or to be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertisement {
    /// Protocol version.
    pub version: Version,
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// Sender's priority: 0 stop, 1..=254 backup, 255 owner.
    pub priority: u8,
    /// Advertisement interval: v2 whole seconds, v3 centiseconds (Max Adver Int).
    pub interval: Duration,
    /// Virtual addresses, all of the family of the IP header carrying the message.
    pub addresses: Vec<IpAddr>,
    /// v2 authentication; always [`Auth::None`] for v3.
    pub auth: Auth,
}

/// The IPv4 header fields a raw-socket receiver needs next to the advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedIpv4 {
    /// Source address: the sender's primary address.
    pub source: Ipv4Addr,
    /// Destination address: 224.0.0.18 or a unicast peer.
    pub destination: Ipv4Addr,
    /// The advertisement.
    pub advert: Advertisement,
}

impl Advertisement {
    /// Decodes a VRRP message (the IP payload) that came from `source` to `destination`.
    ///
    /// The rules are production's: the message is framed as the datapath sees it and
    /// judged by [`vigil_common::validate::parse`] and [`vigil_common::validate::check`],
    /// whose verdicts map to [`DecodeError`]s; only what the judge does not read (VRID 0,
    /// the exact length, the address list, the authentication data) is checked here.
    /// Receiving accepts both v3 checksum styles over IPv4 whatever `mode` says, as the
    /// datapath does. Neither TTL nor hop limit is checked here: see
    /// [`Advertisement::decode_ipv4_packet`] and [`Advertisement::decode_ipv6_payload`].
    pub fn decode(
        msg: &[u8],
        source: IpAddr,
        destination: IpAddr,
        mode: ChecksumMode,
    ) -> Result<Advertisement, DecodeError> {
        let _ = mode;
        let header: &[u8; HEADER_LEN] = msg
            .first_chunk()
            .ok_or(DecodeError::Truncated { len: msg.len() })?;
        let [_, vrid, _, count, b4, _, c0, c1] = *header;
        let frame = judged_frame(msg, source, destination)?;
        let mut a = validate::Advert::default();
        match validate::parse(frame.as_slice(), &mut a) {
            validate::Parsed::Vrrp => {}
            validate::Parsed::Broken(v) => return Err(verdict_error(v, msg, source)),
            validate::Parsed::NotVrrp => return Err(DecodeError::Truncated { len: msg.len() }),
        }
        // The watch entry of a router configured as the packet speaks, so that only the
        // packet's own validity is judged; unicast allowed, since the destination is
        // the caller's business.
        let mut watch = validate::WatchEntry {
            version: a.version,
            auth_type: a.auth_type,
            flags: validate::WATCH_UNICAST,
            ..Default::default()
        };
        let addr_len = if source.is_ipv4() { 4 } else { 16 };
        let addr_bytes = usize::from(count) * addr_len;
        if let Some(pass) = msg.get(HEADER_LEN + addr_bytes..HEADER_LEN + addr_bytes + 8)
            && let Ok(p) = <[u8; 8]>::try_from(pass)
        {
            watch.auth = p;
        }
        match validate::check(frame.as_slice(), &a, Some(&watch)) {
            validate::Verdict::Accept => {}
            v => {
                return Err(match v {
                    validate::Verdict::Checksum => DecodeError::Checksum {
                        found: u16::from_be_bytes([c0, c1]),
                    },
                    v => verdict_error(v, msg, source),
                });
            }
        }
        let version = if a.version == 2 {
            Version::V2
        } else {
            Version::V3
        };
        // RFC 5798 §5.2.3: VRID is 1..=255.
        if vrid == 0 {
            return Err(DecodeError::Vrid);
        }
        // RFC 5798 §5.2.5 and §7.1: exactly `count` addresses (plus the v2 authentication
        // data, RFC 3768 §5.3.10); the judge only asks for at least as many bytes.
        let expected = expected_len(version, count, addr_len);
        if msg.len() != expected {
            return Err(DecodeError::Count {
                count,
                expected,
                actual: msg.len(),
            });
        }
        let interval = match version {
            // RFC 3768 §5.3.7: Adver Int in seconds.
            Version::V2 => Duration::from_secs(u64::from(a.interval)),
            // RFC 5798 §5.2.6–7: 4 reserved bits (ignored on receive), 12 bits of cs.
            Version::V3 => CENTISECOND * u32::from(a.interval & V3_MAX_INTERVAL_CS),
        };
        let body = msg.get(HEADER_LEN..).unwrap_or_default();
        let (addr_bytes, auth_bytes) = body.split_at(addr_bytes.min(body.len()));
        let addresses = if addr_len == 4 {
            addr_bytes
                .chunks_exact(4)
                .map(|c| IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])))
                .collect()
        } else {
            addr_bytes
                .chunks_exact(16)
                .filter_map(|c| <[u8; 16]>::try_from(c).ok())
                .map(|o| IpAddr::V6(Ipv6Addr::from(o)))
                .collect()
        };
        let auth_type = if version == Version::V2 {
            b4
        } else {
            AUTH_TYPE_NONE
        };
        let auth = match auth_type {
            AUTH_TYPE_NONE => Auth::None,
            AUTH_TYPE_SIMPLE => {
                let data = <[u8; AUTH_DATA_LEN]>::try_from(auth_bytes)
                    .map_err(|_| DecodeError::AuthType(AUTH_TYPE_SIMPLE))?;
                Auth::SimplePassword(data)
            }
            // RFC 3768 §5.3.6: type 2 (IP AH) is no longer part of VRRP, and an AH packet
            // would not be IP protocol 112 anyway; the rest are undefined.
            other => return Err(DecodeError::AuthType(other)),
        };
        Ok(Advertisement {
            version,
            vrid,
            priority: a.priority,
            interval,
            addresses,
            auth,
        })
    }

    /// Decodes a whole IPv4 packet as a raw `IPPROTO_VRRP` socket (or XDP, after the
    /// Ethernet header) delivers it: header checks, TTL 255, then the VRRP message.
    ///
    /// Bytes past the IPv4 Total Length (Ethernet padding) are ignored.
    pub fn decode_ipv4_packet(
        packet: &[u8],
        mode: ChecksumMode,
    ) -> Result<ReceivedIpv4, DecodeError> {
        let fixed: &[u8; 20] = packet.first_chunk().ok_or(DecodeError::Ipv4HeaderLength {
            ihl: packet.first().map_or(0, |b| b & 0x0f),
            len: packet.len(),
        })?;
        let version = fixed[0] >> 4;
        if version != 4 {
            return Err(DecodeError::NotIpv4(version));
        }
        let ihl = fixed[0] & 0x0f;
        let header_len = usize::from(ihl) * 4;
        if ihl < 5 || header_len > packet.len() {
            return Err(DecodeError::Ipv4HeaderLength {
                ihl,
                len: packet.len(),
            });
        }
        let total = u16::from_be_bytes([fixed[2], fixed[3]]);
        if usize::from(total) > packet.len() || usize::from(total) < header_len {
            return Err(DecodeError::Ipv4TotalLength {
                total,
                len: packet.len(),
            });
        }
        let header = packet.get(..header_len).unwrap_or_default();
        if internet_checksum(&[header]) != 0 {
            return Err(DecodeError::Ipv4HeaderChecksum);
        }
        let flags_frag = u16::from_be_bytes([fixed[6], fixed[7]]);
        // More Fragments set or a non-zero offset.
        if flags_frag & 0x3fff != 0 {
            return Err(DecodeError::Fragment);
        }
        if fixed[9] != IPPROTO_VRRP {
            return Err(DecodeError::Protocol(fixed[9]));
        }
        // RFC 5798 §7.1 / RFC 3768 §7.1: TTL must be 255, so the sender is on-link.
        if fixed[8] != VRRP_TTL {
            return Err(DecodeError::Ttl(fixed[8]));
        }
        let source = Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]);
        let destination = Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]);
        let msg = packet
            .get(header_len..usize::from(total))
            .unwrap_or_default();
        let advert = Advertisement::decode(msg, source.into(), destination.into(), mode)?;
        Ok(ReceivedIpv4 {
            source,
            destination,
            advert,
        })
    }

    /// Decodes the payload of an IPv6 packet, given the addresses and the hop limit
    /// (from `IPV6_RECVHOPLIMIT` ancillary data, or the header when XDP parsed it).
    pub fn decode_ipv6_payload(
        payload: &[u8],
        source: Ipv6Addr,
        destination: Ipv6Addr,
        hop_limit: u8,
    ) -> Result<Advertisement, DecodeError> {
        // RFC 5798 §7.1: hop limit must be 255.
        if hop_limit != VRRP_TTL {
            return Err(DecodeError::HopLimit(hop_limit));
        }
        Advertisement::decode(
            payload,
            source.into(),
            destination.into(),
            ChecksumMode::PseudoHeader,
        )
    }

    /// Length of the encoded VRRP message.
    pub fn encoded_len(&self) -> usize {
        let per_addr = match self.addresses.first() {
            Some(IpAddr::V6(_)) => 16,
            _ => 4,
        };
        let trailer = if self.version == Version::V2 {
            AUTH_DATA_LEN
        } else {
            0
        };
        HEADER_LEN + self.addresses.len() * per_addr + trailer
    }

    /// Encodes the VRRP message (the IP payload) sent from `source` to `destination`.
    pub fn encode(
        &self,
        source: IpAddr,
        destination: IpAddr,
        mode: ChecksumMode,
    ) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out, source, destination, mode)?;
        Ok(out)
    }

    /// Appends the encoded VRRP message to `out`; on error `out` is left as it was.
    pub fn encode_into(
        &self,
        out: &mut Vec<u8>,
        source: IpAddr,
        destination: IpAddr,
        mode: ChecksumMode,
    ) -> Result<(), EncodeError> {
        if self.vrid == 0 {
            return Err(EncodeError::Vrid);
        }
        let count = u8::try_from(self.addresses.len())
            .map_err(|_| EncodeError::TooManyAddresses(self.addresses.len()))?;
        if let Some(bad) = self
            .addresses
            .iter()
            .find(|a| a.is_ipv4() != source.is_ipv4())
        {
            return Err(EncodeError::AddressFamily(*bad));
        }
        let (b4, b5) = match self.version {
            Version::V2 => {
                if source.is_ipv6() {
                    return Err(EncodeError::V2OverIpv6);
                }
                // RFC 3768 §5.3.7: whole seconds in one byte.
                let secs = u8::try_from(self.interval.as_secs())
                    .ok()
                    .filter(|s| *s > 0 && self.interval.subsec_nanos() == 0)
                    .ok_or(EncodeError::Interval(self.interval))?;
                (self.auth.type_number(), secs)
            }
            Version::V3 => {
                if self.auth != Auth::None {
                    return Err(EncodeError::AuthOnV3);
                }
                let cs = interval_centiseconds(self.interval)
                    .ok_or(EncodeError::Interval(self.interval))?;
                let [hi, lo] = cs.to_be_bytes();
                (hi, lo)
            }
        };
        let start = out.len();
        out.extend_from_slice(&[
            (self.version.number() << 4) | TYPE_ADVERTISEMENT,
            self.vrid,
            self.priority,
            count,
            b4,
            b5,
            0,
            0,
        ]);
        for addr in &self.addresses {
            match addr {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        if self.version == Version::V2 {
            out.extend_from_slice(&self.auth.data());
        }
        let msg = out.get_mut(start..).unwrap_or_default();
        let sum = compute_checksum(msg, self.version, source, destination, mode);
        if let Some(field) = msg.get_mut(6..8) {
            field.copy_from_slice(&sum.to_be_bytes());
        }
        Ok(())
    }

    /// Encodes a whole IPv4 packet (TOS 0xc0, TTL 255, protocol 112, no options), as an
    /// `IP_HDRINCL` raw socket sends it.
    pub fn encode_ipv4_packet(
        &self,
        source: Ipv4Addr,
        destination: Ipv4Addr,
        id: u16,
        mode: ChecksumMode,
    ) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(20 + self.encoded_len());
        out.extend_from_slice(&[0u8; 20]);
        self.encode_into(&mut out, source.into(), destination.into(), mode)?;
        // Encoded VRRP messages are at most 8 + 255 * 4 + 8 bytes, far below 65515.
        let total = u16::try_from(out.len()).map_err(|_| EncodeError::TooManyAddresses(256))?;
        let [t0, t1] = total.to_be_bytes();
        let [i0, i1] = id.to_be_bytes();
        let s = source.octets();
        let d = destination.octets();
        let header = [
            0x45,
            0xc0,
            t0,
            t1,
            i0,
            i1,
            0,
            0,
            VRRP_TTL,
            IPPROTO_VRRP,
            0,
            0,
            s[0],
            s[1],
            s[2],
            s[3],
            d[0],
            d[1],
            d[2],
            d[3],
        ];
        let sum = internet_checksum(&[&header]);
        if let Some(h) = out.get_mut(..20) {
            h.copy_from_slice(&header);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        Ok(out)
    }
}

/// `interval` in v3 centiseconds, if it is a whole number of them in 1..=4095.
pub fn interval_centiseconds(interval: Duration) -> Option<u16> {
    let nanos = interval.as_nanos();
    let cs_nanos = CENTISECOND.as_nanos();
    if !nanos.is_multiple_of(cs_nanos) {
        return None;
    }
    u16::try_from(nanos / cs_nanos)
        .ok()
        .filter(|cs| (1..=V3_MAX_INTERVAL_CS).contains(cs))
}

/// Length of a message with `count` addresses of `addr_len` bytes.
fn expected_len(version: Version, count: u8, addr_len: usize) -> usize {
    let trailer = if version == Version::V2 {
        AUTH_DATA_LEN
    } else {
        0
    };
    HEADER_LEN + usize::from(count) * addr_len + trailer
}

/// `msg` as the datapath receives it: an Ethernet frame with the IP header the kernel
/// would have checked (hop limit 255, protocol 112), for the production judge.
fn judged_frame(msg: &[u8], source: IpAddr, destination: IpAddr) -> Result<Vec<u8>, DecodeError> {
    let too_long = DecodeError::Count {
        count: msg.get(3).copied().unwrap_or(0),
        expected: vigil_common::validate::MAX_VRRP_LEN,
        actual: msg.len(),
    };
    let len = u16::try_from(msg.len()).map_err(|_| too_long.clone())?;
    let mut f = vec![0u8; 12];
    match (source, destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let total = len.checked_add(20).ok_or(too_long)?;
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0, VRRP_TTL, IPPROTO_VRRP, 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&len.to_be_bytes());
            f.extend_from_slice(&[IPPROTO_VRRP, VRRP_TTL]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        // An IPv4 source with an IPv6 destination (or the reverse) is no IP packet.
        _ => return Err(DecodeError::Truncated { len: msg.len() }),
    }
    f.extend_from_slice(msg);
    Ok(f)
}

/// The decode error for a verdict of the production judge on `msg` from `source`.
fn verdict_error(v: validate::Verdict, msg: &[u8], source: IpAddr) -> DecodeError {
    use validate::Verdict as V;
    let ver_type = msg.first().copied().unwrap_or(0);
    let count = msg.get(3).copied().unwrap_or(0);
    let addr_len = if source.is_ipv4() { 4 } else { 16 };
    let count_error = || {
        let version = if ver_type >> 4 == 2 {
            Version::V2
        } else {
            Version::V3
        };
        DecodeError::Count {
            count,
            expected: expected_len(version, count, addr_len),
            actual: msg.len(),
        }
    };
    match v {
        V::Version => DecodeError::Version(ver_type >> 4),
        V::Family => DecodeError::V2OverIpv6,
        V::Type => DecodeError::Type(ver_type & 0x0f),
        V::Interval => DecodeError::Interval,
        V::Auth => DecodeError::AuthType(msg.get(4).copied().unwrap_or(0)),
        V::Ttl => DecodeError::Ttl(0),
        V::Fragment => DecodeError::Fragment,
        V::Length if msg.len() < HEADER_LEN => DecodeError::Truncated { len: msg.len() },
        V::Checksum => DecodeError::Checksum {
            found: msg
                .get(6..8)
                .map_or(0, |c| u16::from_be_bytes([c[0], c[1]])),
        },
        // Count, Length (odd or oversized), and verdicts a synthesized frame cannot get.
        V::Count
        | V::Length
        | V::Accept
        | V::Foreign
        | V::Header
        | V::Destination
        | V::VersionMismatch => count_error(),
    }
}

fn compute_checksum(
    msg: &[u8],
    version: Version,
    source: IpAddr,
    destination: IpAddr,
    mode: ChecksumMode,
) -> u16 {
    let as_v2 = mode == ChecksumMode::AsV2 && source.is_ipv4();
    sum_with_pseudo_header(msg, version, source, destination, as_v2)
}

fn sum_with_pseudo_header(
    msg: &[u8],
    version: Version,
    source: IpAddr,
    destination: IpAddr,
    as_v2: bool,
) -> u16 {
    // RFC 3768 §5.3.8: v2 covers the VRRP message only.
    if version == Version::V2 || as_v2 {
        return internet_checksum(&[msg]);
    }
    // A VRRP message is at most 8 + 255 * 16 bytes, so its length fits 16 bits.
    let len = u16::try_from(msg.len()).unwrap_or(u16::MAX);
    // RFC 5798 §5.2.8: the pseudo-header of RFC 768 (IPv4) / RFC 8200 §8.1 (IPv6).
    match (source, destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let [l0, l1] = len.to_be_bytes();
            let pseudo = [0, IPPROTO_VRRP, l0, l1];
            internet_checksum(&[&s.octets(), &d.octets(), &pseudo, msg])
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let [l0, l1] = len.to_be_bytes();
            let pseudo = [0, 0, l0, l1, 0, 0, 0, IPPROTO_VRRP];
            internet_checksum(&[&s.octets(), &d.octets(), &pseudo, msg])
        }
        // Mixed families cannot come off one IP header; make sure it never verifies.
        _ => 0xffff,
    }
}

/// RFC 1071 Internet checksum over the concatenation of `parts` (each of even length
/// except possibly the last).
fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u64::from(u16::from_be_bytes([*last, 0]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The fold above leaves at most 16 bits.
    !(u16::try_from(sum).unwrap_or(u16::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_PASS: &[u8] = include_bytes!("fixtures/v2_pass_ipv4.bin");
    const V2_PASS_PRIO0: &[u8] = include_bytes!("fixtures/v2_pass_ipv4_prio0.bin");
    const V3_IPV4: &[u8] = include_bytes!("fixtures/v3_ipv4.bin");
    const V3_IPV4_PRIO0: &[u8] = include_bytes!("fixtures/v3_ipv4_prio0.bin");
    const V3_IPV6: &[u8] = include_bytes!("fixtures/v3_ipv6.bin");
    const V3_IPV6_PRIO0: &[u8] = include_bytes!("fixtures/v3_ipv6_prio0.bin");

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().expect("test literal is an IPv4 address"))
    }
    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().expect("test literal is an IPv6 address"))
    }

    /// Splits an IPv6 fixture into (source, destination, hop limit, payload).
    fn ipv6_parts(pkt: &[u8]) -> (Ipv6Addr, Ipv6Addr, u8, &[u8]) {
        let src: [u8; 16] = pkt[8..24].try_into().expect("fixture has an IPv6 header");
        let dst: [u8; 16] = pkt[24..40].try_into().expect("fixture has an IPv6 header");
        (src.into(), dst.into(), pkt[7], &pkt[40..])
    }

    #[test]
    fn keepalived_v2_pass_fixture_decodes() {
        let rx = Advertisement::decode_ipv4_packet(V2_PASS, ChecksumMode::PseudoHeader)
            .expect("keepalived's packet is valid");
        assert_eq!(rx.source, Ipv4Addr::new(192, 0, 2, 11));
        assert_eq!(rx.destination, VRRP_MULTICAST_V4);
        let a = rx.advert;
        assert_eq!(a.version, Version::V2);
        assert_eq!(a.vrid, 51);
        assert_eq!(a.priority, 150);
        assert_eq!(a.interval, Duration::from_secs(1));
        assert_eq!(a.addresses, vec![v4("192.0.2.100"), v4("192.0.2.101")]);
        assert_eq!(a.auth, Auth::password(b"1111").expect("4 bytes fit"));
    }

    #[test]
    fn keepalived_v2_pass_priority_zero_fixture_decodes() {
        let rx = Advertisement::decode_ipv4_packet(V2_PASS_PRIO0, ChecksumMode::PseudoHeader)
            .expect("keepalived's packet is valid");
        assert_eq!(rx.advert.priority, PRIORITY_STOP);
        assert_eq!(rx.advert.vrid, 51);
    }

    #[test]
    fn keepalived_v3_ipv4_fixture_decodes() {
        let rx = Advertisement::decode_ipv4_packet(V3_IPV4, ChecksumMode::PseudoHeader)
            .expect("keepalived's packet is valid");
        let a = rx.advert;
        assert_eq!(a.version, Version::V3);
        assert_eq!(a.vrid, 52);
        assert_eq!(a.priority, 200);
        assert_eq!(a.interval, Duration::from_millis(500));
        assert_eq!(
            a.addresses,
            vec![v4("192.0.2.100"), v4("192.0.2.101"), v4("192.0.2.102")]
        );
        assert_eq!(a.auth, Auth::None);
        let rx0 = Advertisement::decode_ipv4_packet(V3_IPV4_PRIO0, ChecksumMode::PseudoHeader)
            .expect("keepalived's packet is valid");
        assert_eq!(rx0.advert.priority, 0);
    }

    #[test]
    fn keepalived_v3_ipv6_fixture_decodes() {
        for (pkt, prio) in [(V3_IPV6, 100), (V3_IPV6_PRIO0, 0)] {
            let (src, dst, hop, payload) = ipv6_parts(pkt);
            assert_eq!(dst, VRRP_MULTICAST_V6);
            let a = Advertisement::decode_ipv6_payload(payload, src, dst, hop)
                .expect("keepalived's packet is valid");
            assert_eq!(a.version, Version::V3);
            assert_eq!(a.vrid, 53);
            assert_eq!(a.priority, prio);
            assert_eq!(a.interval, Duration::from_secs(1));
            assert_eq!(a.addresses, vec![v6("2001:db8::100"), v6("2001:db8::101")]);
        }
    }

    #[test]
    fn keepalived_ipv4_fixtures_round_trip_byte_for_byte() {
        for pkt in [V2_PASS, V2_PASS_PRIO0, V3_IPV4, V3_IPV4_PRIO0] {
            let rx = Advertisement::decode_ipv4_packet(pkt, ChecksumMode::PseudoHeader)
                .expect("keepalived's packet is valid");
            let id = u16::from_be_bytes([pkt[4], pkt[5]]);
            let again = rx
                .advert
                .encode_ipv4_packet(rx.source, rx.destination, id, ChecksumMode::PseudoHeader)
                .expect("decoded advert re-encodes");
            assert_eq!(again, pkt);
        }
    }

    #[test]
    fn keepalived_ipv6_fixtures_round_trip_byte_for_byte() {
        for pkt in [V3_IPV6, V3_IPV6_PRIO0] {
            let (src, dst, hop, payload) = ipv6_parts(pkt);
            let a = Advertisement::decode_ipv6_payload(payload, src, dst, hop)
                .expect("keepalived's packet is valid");
            let again = a
                .encode(src.into(), dst.into(), ChecksumMode::PseudoHeader)
                .expect("decoded advert re-encodes");
            assert_eq!(again, payload);
        }
    }

    #[test]
    fn rfc5798_7_1_ttl_other_than_255_is_rejected() {
        let mut pkt = V3_IPV4.to_vec();
        pkt[8] = 254;
        // Fix the header checksum so only the TTL is wrong.
        pkt[10] = 0;
        pkt[11] = 0;
        let sum = internet_checksum(&[&pkt[..20]]);
        pkt[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(
            Advertisement::decode_ipv4_packet(&pkt, ChecksumMode::PseudoHeader),
            Err(DecodeError::Ttl(254))
        );
    }

    #[test]
    fn rfc5798_7_1_hop_limit_other_than_255_is_rejected() {
        let (src, dst, _, payload) = ipv6_parts(V3_IPV6);
        assert_eq!(
            Advertisement::decode_ipv6_payload(payload, src, dst, 1),
            Err(DecodeError::HopLimit(1))
        );
    }

    #[test]
    fn rfc5798_7_1_bad_checksum_is_rejected() {
        let mut pkt = V3_IPV4.to_vec();
        pkt[20 + 7] ^= 0x01;
        assert!(matches!(
            Advertisement::decode_ipv4_packet(&pkt, ChecksumMode::PseudoHeader),
            Err(DecodeError::Checksum { .. })
        ));
    }

    #[test]
    fn rfc5798_5_2_8_v3_checksum_covers_the_pseudo_header() {
        // Same message, another destination: the pseudo-header changes, so must the sum.
        let msg = &V3_IPV4[20..];
        let err = Advertisement::decode(
            msg,
            v4("192.0.2.11"),
            v4("192.0.2.12"),
            ChecksumMode::PseudoHeader,
        );
        assert!(matches!(err, Err(DecodeError::Checksum { .. })));
        let (src, dst, _, payload) = ipv6_parts(V3_IPV6);
        let other_src: Ipv6Addr = "2001:db8::99".parse().expect("literal");
        assert!(matches!(
            Advertisement::decode_ipv6_payload(payload, other_src, dst, 255),
            Err(DecodeError::Checksum { .. })
        ));
        assert!(Advertisement::decode_ipv6_payload(payload, src, dst, 255).is_ok());
    }

    #[test]
    fn v3_checksum_as_v2_round_trips_and_every_receiver_takes_both_styles() {
        let rx = Advertisement::decode_ipv4_packet(V3_IPV4, ChecksumMode::PseudoHeader)
            .expect("fixture valid");
        let (s, d) = (IpAddr::from(rx.source), IpAddr::from(rx.destination));
        let msg = rx
            .advert
            .encode(s, d, ChecksumMode::AsV2)
            .expect("encodable");
        assert_eq!(internet_checksum(&[&msg]), 0, "sum over the message alone");
        assert_eq!(
            Advertisement::decode(&msg, s, d, ChecksumMode::AsV2).as_ref(),
            Ok(&rx.advert)
        );
        // As the datapath does (and keepalived): peers in mixed modes understand each
        // other.
        assert_eq!(
            Advertisement::decode(&msg, s, d, ChecksumMode::PseudoHeader).as_ref(),
            Ok(&rx.advert)
        );
        // A sum right in neither style is still wrong.
        let mut bad = msg.clone();
        bad[6] ^= 0x01;
        assert!(matches!(
            Advertisement::decode(&bad, s, d, ChecksumMode::AsV2),
            Err(DecodeError::Checksum { .. })
        ));
        // A receiver set to AsV2 still takes RFC checksums (keepalived auto-detects).
        assert!(
            Advertisement::decode(&V3_IPV4[20..], s, d, ChecksumMode::AsV2).is_ok(),
            "RFC checksum accepted in AsV2 mode"
        );
    }

    #[test]
    fn v2_checksum_ignores_the_pseudo_header() {
        let msg = &V2_PASS[20..];
        // Any addresses: RFC 3768 §5.3.8 sums the VRRP message alone.
        assert!(
            Advertisement::decode(
                msg,
                v4("192.0.2.1"),
                v4("192.0.2.2"),
                ChecksumMode::PseudoHeader
            )
            .is_ok()
        );
    }

    fn sample_v3() -> Advertisement {
        Advertisement {
            version: Version::V3,
            vrid: 7,
            priority: 100,
            interval: Duration::from_millis(10),
            addresses: vec![v4("192.0.2.50")],
            auth: Auth::None,
        }
    }

    fn enc(a: &Advertisement) -> Vec<u8> {
        a.encode(
            v4("192.0.2.1"),
            IpAddr::V4(VRRP_MULTICAST_V4),
            ChecksumMode::PseudoHeader,
        )
        .expect("sample is encodable")
    }

    fn dec(msg: &[u8]) -> Result<Advertisement, DecodeError> {
        Advertisement::decode(
            msg,
            v4("192.0.2.1"),
            IpAddr::V4(VRRP_MULTICAST_V4),
            ChecksumMode::PseudoHeader,
        )
    }

    /// Re-computes the checksum after a test has edited a field.
    fn fix_sum(msg: &mut [u8]) {
        msg[6] = 0;
        msg[7] = 0;
        let sum = sum_with_pseudo_header(
            msg,
            if msg[0] >> 4 == 2 {
                Version::V2
            } else {
                Version::V3
            },
            v4("192.0.2.1"),
            IpAddr::V4(VRRP_MULTICAST_V4),
            false,
        );
        msg[6..8].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn rfc5798_5_2_1_version_other_than_2_or_3_is_rejected() {
        let mut m = enc(&sample_v3());
        m[0] = 0x41;
        fix_sum(&mut m);
        assert_eq!(dec(&m), Err(DecodeError::Version(4)));
    }

    #[test]
    fn rfc5798_5_2_2_type_other_than_advertisement_is_rejected() {
        let mut m = enc(&sample_v3());
        m[0] = 0x32;
        fix_sum(&mut m);
        assert_eq!(dec(&m), Err(DecodeError::Type(2)));
    }

    #[test]
    fn rfc5798_5_2_3_vrid_zero_is_rejected() {
        let mut m = enc(&sample_v3());
        m[1] = 0;
        fix_sum(&mut m);
        assert_eq!(dec(&m), Err(DecodeError::Vrid));
    }

    #[test]
    fn rfc5798_5_2_5_count_must_match_length() {
        let mut m = enc(&sample_v3());
        m[3] = 2;
        fix_sum(&mut m);
        assert_eq!(
            dec(&m),
            Err(DecodeError::Count {
                count: 2,
                expected: 16,
                actual: 12
            })
        );
        let mut long = enc(&sample_v3());
        long.extend_from_slice(&[0, 0, 0, 0]);
        fix_sum(&mut long);
        assert!(matches!(dec(&long), Err(DecodeError::Count { .. })));
    }

    #[test]
    fn rfc5798_5_2_7_interval_is_12_bits_of_centiseconds() {
        let mut a = sample_v3();
        a.interval = Duration::from_millis(40_950);
        let mut m = enc(&a);
        assert_eq!(&m[4..6], &[0x0f, 0xff]);
        assert_eq!(
            dec(&m).map(|d| d.interval),
            Ok(Duration::from_millis(40_950))
        );
        // The 4 reserved bits are ignored on receive.
        m[4] |= 0xf0;
        fix_sum(&mut m);
        assert_eq!(
            dec(&m).map(|d| d.interval),
            Ok(Duration::from_millis(40_950))
        );
        a.interval = Duration::from_millis(40_960);
        assert!(matches!(
            a.encode(
                v4("192.0.2.1"),
                v4("224.0.0.18"),
                ChecksumMode::PseudoHeader
            ),
            Err(EncodeError::Interval(_))
        ));
        a.interval = Duration::from_millis(15);
        assert!(matches!(
            a.encode(
                v4("192.0.2.1"),
                v4("224.0.0.18"),
                ChecksumMode::PseudoHeader
            ),
            Err(EncodeError::Interval(_))
        ));
    }

    #[test]
    fn rfc3768_5_3_7_v2_interval_is_whole_seconds() {
        let mut a = sample_v3();
        a.version = Version::V2;
        a.interval = Duration::from_secs(3);
        let m = enc(&a);
        assert_eq!(m[5], 3);
        assert_eq!(dec(&m).map(|d| d.interval), Ok(Duration::from_secs(3)));
        a.interval = Duration::from_millis(1500);
        assert!(matches!(
            a.encode(
                v4("192.0.2.1"),
                v4("224.0.0.18"),
                ChecksumMode::PseudoHeader
            ),
            Err(EncodeError::Interval(_))
        ));
    }

    #[test]
    fn zero_interval_is_rejected() {
        let mut m = enc(&sample_v3());
        m[4] = 0;
        m[5] = 0;
        fix_sum(&mut m);
        assert_eq!(dec(&m), Err(DecodeError::Interval));
    }

    #[test]
    fn rfc3768_5_3_6_auth_types_0_and_1_decode_2_and_up_do_not() {
        let mut a = sample_v3();
        a.version = Version::V2;
        a.interval = Duration::from_secs(1);
        let m = enc(&a);
        assert_eq!(m[4], 0);
        assert_eq!(&m[m.len() - 8..], &[0; 8]);
        assert_eq!(dec(&m).map(|d| d.auth), Ok(Auth::None));

        a.auth = Auth::password(b"secret").expect("6 bytes fit");
        let mut m = enc(&a);
        assert_eq!(m[4], 1);
        assert_eq!(&m[m.len() - 8..], b"secret\0\0");
        assert_eq!(dec(&m).map(|d| d.auth), Ok(a.auth.clone()));

        m[4] = 2;
        fix_sum(&mut m);
        assert_eq!(dec(&m), Err(DecodeError::AuthType(2)));
        m[4] = 9;
        fix_sum(&mut m);
        assert_eq!(dec(&m), Err(DecodeError::AuthType(9)));
    }

    #[test]
    fn password_longer_than_8_bytes_is_refused() {
        assert!(Auth::password(b"12345678").is_some());
        assert!(Auth::password(b"123456789").is_none());
        assert_eq!(
            format!("{:?}", Auth::password(b"x").expect("fits")),
            "SimplePassword(..)"
        );
    }

    #[test]
    fn v2_over_ipv6_is_rejected_both_ways() {
        let mut a = sample_v3();
        a.version = Version::V2;
        a.interval = Duration::from_secs(1);
        a.addresses = vec![v6("2001:db8::1")];
        assert_eq!(
            a.encode(
                v6("2001:db8::2"),
                v6("ff02::12"),
                ChecksumMode::PseudoHeader
            ),
            Err(EncodeError::V2OverIpv6)
        );
        let m = [0x21, 1, 100, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            Advertisement::decode(
                &m,
                v6("2001:db8::2"),
                v6("ff02::12"),
                ChecksumMode::PseudoHeader
            ),
            Err(DecodeError::V2OverIpv6)
        );
    }

    #[test]
    fn encode_refuses_mixed_families_and_too_many_addresses() {
        let mut a = sample_v3();
        a.addresses.push(v6("2001:db8::1"));
        assert_eq!(
            a.encode(
                v4("192.0.2.1"),
                v4("224.0.0.18"),
                ChecksumMode::PseudoHeader
            ),
            Err(EncodeError::AddressFamily(v6("2001:db8::1")))
        );
        let mut b = sample_v3();
        b.addresses = vec![v4("192.0.2.9"); 256];
        assert_eq!(
            b.encode(
                v4("192.0.2.1"),
                v4("224.0.0.18"),
                ChecksumMode::PseudoHeader
            ),
            Err(EncodeError::TooManyAddresses(256))
        );
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        for len in 0..V3_IPV4.len() {
            assert!(
                Advertisement::decode_ipv4_packet(&V3_IPV4[..len], ChecksumMode::PseudoHeader)
                    .is_err()
            );
        }
        assert_eq!(dec(&[0x31, 1]), Err(DecodeError::Truncated { len: 2 }));
    }

    #[test]
    fn ipv4_header_errors_are_named() {
        let mut p = V3_IPV4.to_vec();
        p[0] = 0x65;
        assert_eq!(
            Advertisement::decode_ipv4_packet(&p, ChecksumMode::PseudoHeader),
            Err(DecodeError::NotIpv4(6))
        );
        let mut p = V3_IPV4.to_vec();
        p[9] = 17;
        assert_eq!(
            Advertisement::decode_ipv4_packet(&p, ChecksumMode::PseudoHeader),
            Err(DecodeError::Ipv4HeaderChecksum)
        );
        let mut p = V3_IPV4.to_vec();
        p[6] = 0x20; // More Fragments
        p[10] = 0;
        p[11] = 0;
        let sum = internet_checksum(&[&p[..20]]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(
            Advertisement::decode_ipv4_packet(&p, ChecksumMode::PseudoHeader),
            Err(DecodeError::Fragment)
        );
        // Ethernet padding after Total Length is ignored.
        let mut padded = V3_IPV4.to_vec();
        padded.extend_from_slice(&[0; 6]);
        assert!(Advertisement::decode_ipv4_packet(&padded, ChecksumMode::PseudoHeader).is_ok());
    }

    #[test]
    fn v3_ipv6_encode_decode_round_trip() {
        let a = Advertisement {
            version: Version::V3,
            vrid: 200,
            priority: 254,
            interval: Duration::from_millis(30),
            addresses: vec![v6("2001:db8::a"), v6("2001:db8::b"), v6("2001:db8::c")],
            auth: Auth::None,
        };
        let s = v6("2001:db8::1");
        let d = IpAddr::V6(VRRP_MULTICAST_V6);
        let m = a
            .encode(s, d, ChecksumMode::PseudoHeader)
            .expect("encodable");
        assert_eq!(m.len(), a.encoded_len());
        assert_eq!(
            Advertisement::decode(&m, s, d, ChecksumMode::PseudoHeader),
            Ok(a)
        );
    }

    #[test]
    fn rfc5798_5_2_5_zero_addresses_are_rejected() {
        // "The minimum value is 1": the datapath's judge drops such adverts, so the
        // codec does too.
        let mut a = sample_v3();
        a.addresses.clear();
        let m = enc(&a);
        assert!(matches!(dec(&m), Err(DecodeError::Count { count: 0, .. })));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn any_advert() -> impl Strategy<Value = (Advertisement, IpAddr, IpAddr)> {
            (
                any::<bool>(),
                any::<bool>(),
                1u8..=255,
                any::<u8>(),
                1u16..=4095,
                proptest::collection::vec(any::<[u8; 16]>(), 1..20),
                proptest::option::of(any::<[u8; 8]>()),
            )
                .prop_map(|(v3, ipv6, vrid, priority, cs, raw, pass)| {
                    let ipv6 = v3 && ipv6;
                    let addresses = raw
                        .iter()
                        .map(|o| {
                            if ipv6 {
                                IpAddr::V6(Ipv6Addr::from(*o))
                            } else {
                                IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
                            }
                        })
                        .collect();
                    let (version, interval, auth) = if v3 {
                        (Version::V3, CENTISECOND * u32::from(cs), Auth::None)
                    } else {
                        let secs = u64::from(cs % 255 + 1);
                        let auth = pass.map_or(Auth::None, Auth::SimplePassword);
                        (Version::V2, Duration::from_secs(secs), auth)
                    };
                    let (src, dst) = if ipv6 {
                        (v6("2001:db8::1"), IpAddr::V6(VRRP_MULTICAST_V6))
                    } else {
                        (v4("192.0.2.1"), IpAddr::V4(VRRP_MULTICAST_V4))
                    };
                    let advert = Advertisement {
                        version,
                        vrid,
                        priority,
                        interval,
                        addresses,
                        auth,
                    };
                    (advert, src, dst)
                })
        }

        proptest! {
            #[test]
            fn any_bytes_decode_to_a_value_or_an_error_never_a_panic(
                bytes in proptest::collection::vec(any::<u8>(), 0..200),
            ) {
                let _ = Advertisement::decode_ipv4_packet(&bytes, ChecksumMode::AsV2);
                let _ = Advertisement::decode(
                    &bytes, v4("192.0.2.1"), v4("224.0.0.18"), ChecksumMode::PseudoHeader,
                );
                let _ = Advertisement::decode_ipv6_payload(
                    &bytes, Ipv6Addr::LOCALHOST, VRRP_MULTICAST_V6, 255,
                );
            }

            #[test]
            fn every_encodable_advert_decodes_to_itself(
                (advert, src, dst) in any_advert(),
                as_v2 in any::<bool>(),
            ) {
                let mode = if as_v2 { ChecksumMode::AsV2 } else { ChecksumMode::PseudoHeader };
                let bytes = advert.encode(src, dst, mode).expect("strategy makes encodable adverts");
                prop_assert_eq!(bytes.len(), advert.encoded_len());
                prop_assert_eq!(Advertisement::decode(&bytes, src, dst, mode), Ok(advert));
            }
        }
    }
}
