//! BFD Control packet codec (RFC 5880 §4.1), the UDP payload of RFC 5881 single-hop BFD.
//!
//! Decoding is total: any byte string yields a [`ControlPacket`] or a [`DecodeError`]
//! naming the reception rule of RFC 5880 §6.8.6 it breaks. The rules that need a session
//! (discriminator lookup, authentication in use, state) belong to
//! [`crate::bfd::session`].

use std::fmt;
use std::time::Duration;

/// UDP destination port of single-hop BFD Control packets (RFC 5881 §4).
pub const BFD_CONTROL_PORT: u16 = 3784;
/// Lowest UDP source port a single-hop session may send from (RFC 5881 §4).
pub const SOURCE_PORT_MIN: u16 = 49152;
/// TTL / hop limit every single-hop packet is sent with and must arrive with (RFC 5881 §5).
pub const BFD_TTL: u8 = 255;
/// The protocol version this codec speaks (RFC 5880 §4.1).
pub const VERSION: u8 = 1;
/// Length of the mandatory section (RFC 5880 §4.1).
pub const HEADER_LEN: usize = 24;
/// Longest authentication section: Keyed SHA1 (RFC 5880 §4.4).
pub const MAX_AUTH_LEN: usize = 28;
/// Longest Control packet this codec reads or writes.
pub const MAX_LEN: usize = HEADER_LEN + MAX_AUTH_LEN;

/// Session state (RFC 5880 §4.1, the "Sta" field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// Held down by configuration (§6.8.16).
    AdminDown,
    /// No session, or it just failed.
    Down,
    /// The remote end is seen, the remote has not yet seen us.
    Init,
    /// Both ends see each other.
    Up,
}

impl State {
    fn from_bits(bits: u8) -> State {
        match bits & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    fn bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        })
    }
}

/// Why a session last left Up, or is not Up (RFC 5880 §4.1, the "Diag" field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Diagnostic {
    /// 0: no diagnostic.
    None,
    /// 1: the detection time passed without a packet.
    ControlDetectionTimeExpired,
    /// 2: echo function failed.
    EchoFunctionFailed,
    /// 3: the neighbor said Down (or AdminDown).
    NeighborSignaledSessionDown,
    /// 4: forwarding plane reset.
    ForwardingPlaneReset,
    /// 5: path down.
    PathDown,
    /// 6: concatenated path down.
    ConcatenatedPathDown,
    /// 7: administratively down.
    AdministrativelyDown,
    /// 8: reverse concatenated path down.
    ReverseConcatenatedPathDown,
    /// 9..=31: reserved values, kept as received.
    Reserved(u8),
}

impl Diagnostic {
    /// From the 5-bit field.
    pub fn from_code(code: u8) -> Diagnostic {
        match code & 0x1f {
            0 => Diagnostic::None,
            1 => Diagnostic::ControlDetectionTimeExpired,
            2 => Diagnostic::EchoFunctionFailed,
            3 => Diagnostic::NeighborSignaledSessionDown,
            4 => Diagnostic::ForwardingPlaneReset,
            5 => Diagnostic::PathDown,
            6 => Diagnostic::ConcatenatedPathDown,
            7 => Diagnostic::AdministrativelyDown,
            8 => Diagnostic::ReverseConcatenatedPathDown,
            other => Diagnostic::Reserved(other),
        }
    }

    /// The 5-bit field.
    pub fn code(self) -> u8 {
        match self {
            Diagnostic::None => 0,
            Diagnostic::ControlDetectionTimeExpired => 1,
            Diagnostic::EchoFunctionFailed => 2,
            Diagnostic::NeighborSignaledSessionDown => 3,
            Diagnostic::ForwardingPlaneReset => 4,
            Diagnostic::PathDown => 5,
            Diagnostic::ConcatenatedPathDown => 6,
            Diagnostic::AdministrativelyDown => 7,
            Diagnostic::ReverseConcatenatedPathDown => 8,
            Diagnostic::Reserved(code) => code & 0x1f,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diagnostic::None => f.write_str("no diagnostic"),
            Diagnostic::ControlDetectionTimeExpired => {
                f.write_str("control detection time expired")
            }
            Diagnostic::EchoFunctionFailed => f.write_str("echo function failed"),
            Diagnostic::NeighborSignaledSessionDown => {
                f.write_str("neighbor signaled session down")
            }
            Diagnostic::ForwardingPlaneReset => f.write_str("forwarding plane reset"),
            Diagnostic::PathDown => f.write_str("path down"),
            Diagnostic::ConcatenatedPathDown => f.write_str("concatenated path down"),
            Diagnostic::AdministrativelyDown => f.write_str("administratively down"),
            Diagnostic::ReverseConcatenatedPathDown => {
                f.write_str("reverse concatenated path down")
            }
            Diagnostic::Reserved(code) => write!(f, "diagnostic {code}"),
        }
    }
}

/// The authentication section as received (RFC 5880 §4.2), kept opaque: vigil
/// authenticates nothing yet and drops any packet that carries one (§6.8.6).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthSection {
    /// Auth Type (1 simple password, 2/3 keyed MD5, 4/5 keyed SHA1).
    pub auth_type: u8,
    len: u8,
    bytes: [u8; MAX_AUTH_LEN],
}

impl AuthSection {
    /// A section of type `auth_type` carrying `data` after the type and length bytes;
    /// `None` if it would exceed the longest section.
    pub fn new(auth_type: u8, data: &[u8]) -> Option<AuthSection> {
        let len = data.len() + 2;
        if len > MAX_AUTH_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_AUTH_LEN];
        bytes[0] = auth_type;
        bytes[1] = len as u8;
        bytes[2..len].copy_from_slice(data);
        Some(AuthSection {
            auth_type,
            len: len as u8,
            bytes,
        })
    }

    /// The whole section, type and length bytes included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for AuthSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The data may hold a password: show its shape only.
        write!(
            f,
            "AuthSection(type {}, {} bytes)",
            self.auth_type, self.len
        )
    }
}

/// One BFD Control packet (RFC 5880 §4.1). Intervals are carried in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ControlPacket {
    /// Diag.
    pub diag: Diagnostic,
    /// Sta.
    pub state: State,
    /// P: the sender asks to confirm a parameter change.
    pub poll: bool,
    /// F: the answer to a Poll.
    pub final_: bool,
    /// C: the sender's BFD is independent of its control plane.
    pub control_plane_independent: bool,
    /// D: the sender wants Demand mode.
    pub demand: bool,
    /// Detect Mult.
    pub detect_mult: u8,
    /// My Discriminator.
    pub my_discriminator: u32,
    /// Your Discriminator.
    pub your_discriminator: u32,
    /// Desired Min TX Interval, microseconds.
    pub desired_min_tx_us: u32,
    /// Required Min RX Interval, microseconds.
    pub required_min_rx_us: u32,
    /// Required Min Echo RX Interval, microseconds.
    pub required_min_echo_rx_us: u32,
    /// The authentication section, present when the A bit is set.
    pub auth: Option<AuthSection>,
}

/// A rule of RFC 5880 §6.8.6 that a received packet breaks on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the mandatory section, or than its own Length field.
    #[error("truncated: {0} bytes")]
    Truncated(usize),
    /// Version other than 1.
    #[error("version {0}, not 1")]
    Version(u8),
    /// Length field below the minimum for the A bit.
    #[error("length field {0} below the minimum")]
    Length(u8),
    /// Detect Mult of zero.
    #[error("detect multiplier 0")]
    DetectMult,
    /// The M bit (reserved for multipoint) set.
    #[error("multipoint bit set")]
    Multipoint,
    /// My Discriminator of zero.
    #[error("my discriminator 0")]
    MyDiscriminator,
    /// An authentication section that does not fit its packet.
    #[error("malformed authentication section")]
    AuthSection,
}

impl ControlPacket {
    /// Decodes the UDP payload of a BFD Control packet (RFC 5880 §6.8.6, the checks that
    /// need no session). Bytes after the Length field's end are ignored.
    pub fn decode(bytes: &[u8]) -> Result<ControlPacket, DecodeError> {
        let header: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(DecodeError::Truncated(bytes.len()))?;
        let version = header[0] >> 5;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let flags = header[1];
        let auth_present = flags & 0x04 != 0;
        let length = header[3];
        let min_len = if auth_present {
            HEADER_LEN + 2
        } else {
            HEADER_LEN
        };
        if usize::from(length) < min_len {
            return Err(DecodeError::Length(length));
        }
        if usize::from(length) > bytes.len() {
            return Err(DecodeError::Truncated(bytes.len()));
        }
        let detect_mult = header[2];
        if detect_mult == 0 {
            return Err(DecodeError::DetectMult);
        }
        if flags & 0x01 != 0 {
            return Err(DecodeError::Multipoint);
        }
        let word = |at: usize| {
            u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let my_discriminator = word(4);
        if my_discriminator == 0 {
            return Err(DecodeError::MyDiscriminator);
        }
        let auth = if auth_present {
            let section = &bytes[HEADER_LEN..usize::from(length)];
            let auth_len = usize::from(section[1]);
            if auth_len < 2 || auth_len != section.len() || auth_len > MAX_AUTH_LEN {
                return Err(DecodeError::AuthSection);
            }
            let mut stored = [0u8; MAX_AUTH_LEN];
            stored[..auth_len].copy_from_slice(section);
            Some(AuthSection {
                auth_type: section[0],
                len: section[1],
                bytes: stored,
            })
        } else {
            None
        };
        Ok(ControlPacket {
            diag: Diagnostic::from_code(header[0]),
            state: State::from_bits(flags >> 6),
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            control_plane_independent: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult,
            my_discriminator,
            your_discriminator: word(8),
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
            required_min_echo_rx_us: word(20),
            auth,
        })
    }

    /// Length of the encoded packet.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.auth.map_or(0, |a| usize::from(a.len))
    }

    /// Writes the packet into `out`, returning its length; `out` must hold [`MAX_LEN`]
    /// bytes (a shorter buffer gets `None`).
    pub fn encode_into(&self, out: &mut [u8]) -> Option<usize> {
        let len = self.encoded_len();
        let out = out.get_mut(..len)?;
        out[0] = (VERSION << 5) | self.diag.code();
        out[1] = (self.state.bits() << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.control_plane_independent) << 3)
            | (u8::from(self.auth.is_some()) << 2)
            | (u8::from(self.demand) << 1);
        out[2] = self.detect_mult;
        out[3] = len as u8;
        for (at, value) in [
            (4, self.my_discriminator),
            (8, self.your_discriminator),
            (12, self.desired_min_tx_us),
            (16, self.required_min_rx_us),
            (20, self.required_min_echo_rx_us),
        ] {
            out[at..at + 4].copy_from_slice(&value.to_be_bytes());
        }
        if let Some(auth) = &self.auth {
            out[HEADER_LEN..len].copy_from_slice(auth.as_bytes());
        }
        Some(len)
    }

    /// The encoded packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = [0u8; MAX_LEN];
        let len = self
            .encode_into(&mut out)
            .expect("MAX_LEN holds every packet");
        out[..len].to_vec()
    }

    /// Desired Min TX Interval as a duration.
    pub fn desired_min_tx(&self) -> Duration {
        Duration::from_micros(u64::from(self.desired_min_tx_us))
    }

    /// Required Min RX Interval as a duration.
    pub fn required_min_rx(&self) -> Duration {
        Duration::from_micros(u64::from(self.required_min_rx_us))
    }
}

/// A duration in whole microseconds for an interval field, saturating at the field's
/// largest value (71 minutes).
pub fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
