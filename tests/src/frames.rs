//! Crafted VRRP frames, right and deliberately wrong, built independently of vigil's
//! own codec so that tests check vigil against the RFC, not against itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What to put in a crafted advert; every field can be set to a wrong value on purpose.
#[derive(Clone, Debug)]
pub struct Advert {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Source address (its family picks IPv4 or IPv6).
    pub src: IpAddr,
    /// Destination; the VRRP group of the family when `None`.
    pub dst: Option<IpAddr>,
    /// TTL / hop limit (255 is right).
    pub ttl: u8,
    /// VRRP version (2 or 3).
    pub version: u8,
    /// VRRP type (1 is right).
    pub kind: u8,
    /// VRID.
    pub vrid: u8,
    /// Priority.
    pub priority: u8,
    /// Interval: v3 centiseconds, v2 seconds.
    pub interval: u16,
    /// Virtual addresses carried.
    pub addresses: Vec<IpAddr>,
    /// v2 auth type and password (8 bytes).
    pub auth: (u8, [u8; 8]),
    /// Added to the correct checksum (0 keeps it right).
    pub checksum_delta: u16,
    /// Address count field override (for count/length mismatches).
    pub count_override: Option<u8>,
    /// One 802.1Q tag with this VLAN id.
    pub vlan: Option<u16>,
    /// IPv4 flags+fragment offset field (0 is right).
    pub frag: u16,
    /// IPv4 total length / IPv6 payload length override.
    pub ip_len_override: Option<u16>,
    /// IPv4 header length in words (5 is right).
    pub ihl: u8,
    /// Bytes after the addresses (and v2 authentication), inside the VRRP length and the
    /// checksum: RFC 5798 §7.1 only needs the message to hold what the header announces.
    pub trailer: Vec<u8>,
}

impl Advert {
    /// A valid VRRPv3 IPv4 advert from `src` for `vrid` at `priority`, 1 s interval.
    pub fn v3(src: Ipv4Addr, vrid: u8, priority: u8) -> Self {
        Self {
            src_mac: [0x02, 0, 0, 0, 0, 1],
            src: IpAddr::V4(src),
            dst: None,
            ttl: 255,
            version: 3,
            kind: 1,
            vrid,
            priority,
            interval: 100,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))],
            auth: (0, [0; 8]),
            checksum_delta: 0,
            count_override: None,
            vlan: None,
            frag: 0,
            ip_len_override: None,
            ihl: 5,
            trailer: Vec::new(),
        }
    }

    /// A valid VRRPv2 advert with simple password `pass`, 1 s interval.
    pub fn v2(src: Ipv4Addr, vrid: u8, priority: u8, pass: &str) -> Self {
        let mut auth = [0u8; 8];
        for (d, s) in auth.iter_mut().zip(pass.bytes()) {
            *d = s;
        }
        Self {
            version: 2,
            interval: 1,
            auth: (1, auth),
            ..Self::v3(src, vrid, priority)
        }
    }

    /// A valid VRRPv3 IPv6 advert from link-local `src`.
    pub fn v3_ipv6(src: Ipv6Addr, vrid: u8, priority: u8) -> Self {
        Self {
            src: IpAddr::V6(src),
            addresses: vec![IpAddr::V6(
                "2001:db8::100".parse().expect("literal address"),
            )],
            ..Self::v3(Ipv4Addr::UNSPECIFIED, vrid, priority)
        }
    }

    /// The VRRP message (with a right checksum unless `checksum_delta` says otherwise).
    pub fn vrrp(&self) -> Vec<u8> {
        let mut m = vec![
            (self.version << 4) | (self.kind & 0x0f),
            self.vrid,
            self.priority,
            self.count_override.unwrap_or(self.addresses.len() as u8),
        ];
        if self.version == 3 {
            m.extend_from_slice(&(self.interval & 0x0fff).to_be_bytes());
        } else {
            m.push(self.auth.0);
            m.push(self.interval as u8);
        }
        m.extend_from_slice(&[0, 0]);
        for a in &self.addresses {
            match a {
                IpAddr::V4(a) => m.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => m.extend_from_slice(&a.octets()),
            }
        }
        if self.version == 2 {
            m.extend_from_slice(&self.auth.1);
        }
        m.extend_from_slice(&self.trailer);
        let mut sum: u32 = 0;
        if self.version == 3 {
            let (s, d) = (octets(self.src), octets(self.dst()));
            for w in s.chunks(2).chain(d.chunks(2)) {
                sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
            }
            sum += m.len() as u32 + 112;
        }
        for w in m.chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let csum = (!(sum as u16)).wrapping_add(self.checksum_delta);
        m[6..8].copy_from_slice(&csum.to_be_bytes());
        m
    }

    /// Destination address.
    pub fn dst(&self) -> IpAddr {
        self.dst.unwrap_or(match self.src {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)),
            IpAddr::V6(_) => IpAddr::V6("ff02::12".parse().expect("literal address")),
        })
    }

    /// The whole Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        let vrrp = self.vrrp();
        let dst = self.dst();
        let mut f = Vec::new();
        let dst_mac = match dst {
            IpAddr::V4(a) if a.is_multicast() => {
                let o = a.octets();
                [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
            }
            IpAddr::V6(a) if a.is_multicast() => {
                let o = a.octets();
                [0x33, 0x33, o[12], o[13], o[14], o[15]]
            }
            _ => [0xff; 6],
        };
        f.extend_from_slice(&dst_mac);
        f.extend_from_slice(&self.src_mac);
        if let Some(vlan) = self.vlan {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
        }
        match (self.src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&[0x08, 0x00]);
                let mut h = vec![0x40 | (self.ihl & 0x0f), 0xc0];
                let len = self.ip_len_override.unwrap_or((20 + vrrp.len()) as u16);
                h.extend_from_slice(&len.to_be_bytes());
                h.extend_from_slice(&[0, 0]);
                h.extend_from_slice(&self.frag.to_be_bytes());
                h.extend_from_slice(&[self.ttl, 112, 0, 0]);
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                let mut sum: u32 = h
                    .chunks(2)
                    .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                    .sum();
                while sum >> 16 != 0 {
                    sum = (sum & 0xffff) + (sum >> 16);
                }
                h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
                f.extend_from_slice(&h);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&[0x86, 0xdd]);
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                let len = self.ip_len_override.unwrap_or(vrrp.len() as u16);
                f.extend_from_slice(&len.to_be_bytes());
                f.extend_from_slice(&[112, self.ttl]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            _ => panic!("source and destination of different families"),
        }
        f.extend_from_slice(&vrrp);
        f
    }
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}
