//! Whole Ethernet frames of VRRP adverts for the tests and the simulator, built byte by
//! byte from RFC 5798 §5 / RFC 3768 §5 and RFC 791 / RFC 8200, with their own checksum
//! code: an encoder independent of the codec and of `vigil_common::validate`, so that a
//! mistake in either shows up as a disagreement.

use std::net::IpAddr;

/// How the v3 checksum is computed (v2 never has a pseudo-header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sum {
    /// RFC 5798 §5.2.8: with the IP pseudo-header.
    PseudoHeader,
    /// keepalived's `v3_checksum_as_v2`: over the VRRP message alone.
    MessageOnly,
}

/// One advert on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireAdvert {
    /// IP source.
    pub src: IpAddr,
    /// IP destination (the group, or a unicast peer).
    pub dst: IpAddr,
    /// VRRP version field.
    pub version: u8,
    /// VRID.
    pub vrid: u8,
    /// Priority.
    pub priority: u8,
    /// Raw interval field: v3 centiseconds, v2 seconds.
    pub interval: u16,
    /// Virtual addresses.
    pub addresses: Vec<IpAddr>,
    /// v2 simple password, if any.
    pub password: Option<[u8; 8]>,
    /// TTL / hop limit.
    pub ttl: u8,
    /// Checksum style.
    pub sum: Sum,
    /// 802.1Q tag, if the frame carries one.
    pub vlan: Option<u16>,
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn words(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
        .sum()
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

impl WireAdvert {
    /// A VRRPv3 advert with TTL 255 to the group, checksum with the pseudo-header.
    pub fn v3(src: IpAddr, vrid: u8, priority: u8, centis: u16, addresses: Vec<IpAddr>) -> Self {
        let dst: IpAddr = if src.is_ipv4() {
            "224.0.0.18".parse().expect("literal")
        } else {
            "ff02::12".parse().expect("literal")
        };
        Self {
            src,
            dst,
            version: 3,
            vrid,
            priority,
            interval: centis,
            addresses,
            password: None,
            ttl: 255,
            sum: Sum::PseudoHeader,
            vlan: None,
        }
    }

    /// The VRRP message.
    pub fn message(&self) -> Vec<u8> {
        let mut m = vec![
            (self.version << 4) | 1,
            self.vrid,
            self.priority,
            self.addresses.len() as u8,
        ];
        if self.version == 3 {
            m.extend_from_slice(&(self.interval & 0x0fff).to_be_bytes());
        } else {
            m.push(u8::from(self.password.is_some()));
            m.push(self.interval as u8);
        }
        m.extend_from_slice(&[0, 0]);
        for a in &self.addresses {
            m.extend_from_slice(&octets(*a));
        }
        if self.version == 2 {
            m.extend_from_slice(&self.password.unwrap_or([0; 8]));
        }
        let mut sum = words(&m);
        if self.version == 3 && self.sum == Sum::PseudoHeader {
            sum += words(&octets(self.src)) + words(&octets(self.dst));
            sum += m.len() as u32 + 112;
        }
        let c = fold(sum);
        m[6..8].copy_from_slice(&c.to_be_bytes());
        m
    }

    /// The whole Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        let m = self.message();
        let mut f = vec![0x01, 0, 0x5e, 0, 0, 0x12, 0x02, 0, 0, 0, 0, 1];
        if let Some(tag) = self.vlan {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&(tag & 0x0fff).to_be_bytes());
        }
        match self.src {
            IpAddr::V4(_) => {
                f.extend_from_slice(&[0x08, 0x00]);
                let mut ip = vec![0x45, 0];
                ip.extend_from_slice(&(20 + m.len() as u16).to_be_bytes());
                ip.extend_from_slice(&[0, 0, 0, 0, self.ttl, 112, 0, 0]);
                ip.extend_from_slice(&octets(self.src));
                ip.extend_from_slice(&octets(self.dst));
                let c = fold(words(&ip));
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
            }
            IpAddr::V6(_) => {
                f.extend_from_slice(&[0x86, 0xdd]);
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(m.len() as u16).to_be_bytes());
                f.extend_from_slice(&[112, self.ttl]);
                f.extend_from_slice(&octets(self.src));
                f.extend_from_slice(&octets(self.dst));
            }
        }
        f.extend_from_slice(&m);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_common::validate::{self, Advert, Parsed, WATCH_V3_CSUM_AS_V2, WatchEntry};

    fn judge(frame: &[u8], flags: u8) -> vigil_common::Verdict {
        let mut a = Advert::default();
        assert_eq!(validate::parse(frame, &mut a), Parsed::Vrrp);
        let w = WatchEntry {
            version: a.version,
            flags,
            ..WatchEntry::default()
        };
        validate::check(frame, &a, Some(&w))
    }

    #[test]
    fn the_validator_accepts_what_this_encoder_builds_in_each_checksum_style() {
        use vigil_common::Verdict::{Accept, Checksum};
        let v4 = WireAdvert::v3(
            "192.0.2.1".parse().expect("literal"),
            51,
            100,
            100,
            vec!["192.0.2.100".parse().expect("literal")],
        );
        let v6 = WireAdvert::v3(
            "2001:db8::1".parse().expect("literal"),
            51,
            100,
            100,
            vec!["2001:db8::100".parse().expect("literal")],
        );
        let as_v2 = WireAdvert {
            sum: Sum::MessageOnly,
            ..v4.clone()
        };
        assert_eq!(judge(&v4.frame(), 0), Accept);
        assert_eq!(judge(&v6.frame(), 0), Accept);
        // Either style is accepted over IPv4, whatever the local one.
        assert_eq!(judge(&as_v2.frame(), WATCH_V3_CSUM_AS_V2), Accept);
        assert_eq!(judge(&as_v2.frame(), 0), Accept);
        assert_eq!(judge(&v4.frame(), WATCH_V3_CSUM_AS_V2), Accept);
        // Not over IPv6, where keepalived has no such option.
        let v6_as_v2 = WireAdvert {
            sum: Sum::MessageOnly,
            ..v6
        };
        assert_eq!(judge(&v6_as_v2.frame(), WATCH_V3_CSUM_AS_V2), Checksum);
    }
}
