//! Telling the segment that the virtual addresses moved: gratuitous ARP for IPv4,
//! unsolicited Neighbour Advertisement for IPv6, sent in keepalived's bursts.
//!
//! Frames are built whole (pure functions, unit-tested) and sent on an AF_PACKET socket
//! bound to nothing, so it never receives. The source MAC is the interface's own, as
//! keepalived does without `use_vmac`.
//!
//! Timing follows keepalived: a burst of `garp_master_repeat` rounds on becoming master, a
//! second burst `garp_master_delay` later, and, if `garp_master_refresh` is set, a round of
//! `garp_master_refresh_repeat` every refresh period while master. [`AnnounceSchedule`]
//! computes the send times without touching a clock; [`run_announcements`] sleeps to them.

use std::collections::VecDeque;
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};
use thiserror::Error;

use super::Interface;

const ETH_ALEN: usize = 6;
const ETH_HLEN: usize = 14;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const BROADCAST_MAC: [u8; ETH_ALEN] = [0xff; ETH_ALEN];
/// ff02::1, all nodes.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// 33:33 followed by the low 32 bits of ff02::1 (RFC 2464 §7).
const ALL_NODES_MAC: [u8; ETH_ALEN] = [0x33, 0x33, 0, 0, 0, 1];
const IPPROTO_ICMPV6: u8 = 58;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_OPT_TARGET_LL_ADDR: u8 = 2;
const NA_FLAG_ROUTER: u8 = 0x80;
const NA_FLAG_OVERRIDE: u8 = 0x20;
/// ICMPv6 NA: type, code, checksum, flags+reserved, target, one 8-byte option.
const NA_LEN: usize = 4 + 4 + 16 + 8;

/// Length of a gratuitous ARP frame (Ethernet header and ARP body, no padding: the NIC
/// pads to 60 bytes, as for keepalived's frames).
pub const GARP_FRAME_LEN: usize = ETH_HLEN + 28;
/// Length of an unsolicited Neighbour Advertisement frame.
pub const NA_FRAME_LEN: usize = ETH_HLEN + 40 + NA_LEN;

/// A gratuitous ARP request for `vip` from `mac`, byte for byte what keepalived sends:
/// broadcast, sender and target protocol address both `vip`, target hardware address
/// broadcast.
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; GARP_FRAME_LEN] {
    let mut f = [0u8; GARP_FRAME_LEN];
    f[0..6].copy_from_slice(&BROADCAST_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let arp = &mut f[ETH_HLEN..];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    arp[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    arp[4] = 6;
    arp[5] = 4;
    arp[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    arp[8..14].copy_from_slice(&mac);
    arp[14..18].copy_from_slice(&vip.octets());
    arp[18..24].copy_from_slice(&BROADCAST_MAC);
    arp[24..28].copy_from_slice(&vip.octets());
    f
}

/// An unsolicited Neighbour Advertisement for `target` to ff02::1 (RFC 4861 §7.2.6):
/// override flag set, solicited clear, router flag as given, target link-layer address
/// option `mac`, hop limit 255, from `source`, ICMPv6 checksum filled in.
pub fn unsolicited_na_frame(
    mac: [u8; 6],
    source: Ipv6Addr,
    target: Ipv6Addr,
    router: bool,
) -> [u8; NA_FRAME_LEN] {
    let mut f = [0u8; NA_FRAME_LEN];
    f[0..6].copy_from_slice(&ALL_NODES_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let ip = &mut f[ETH_HLEN..ETH_HLEN + 40];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(NA_LEN as u16).to_be_bytes());
    ip[6] = IPPROTO_ICMPV6;
    ip[7] = 255; // RFC 4861 §7.1.2: receivers drop NAs with any other hop limit
    ip[8..24].copy_from_slice(&source.octets());
    ip[24..40].copy_from_slice(&ALL_NODES.octets());
    let na = &mut f[ETH_HLEN + 40..];
    na[0] = ND_NEIGHBOR_ADVERT;
    na[4] = NA_FLAG_OVERRIDE | if router { NA_FLAG_ROUTER } else { 0 };
    na[8..24].copy_from_slice(&target.octets());
    na[24] = ND_OPT_TARGET_LL_ADDR;
    na[25] = 1; // option length in units of 8 bytes
    na[26..32].copy_from_slice(&mac);
    let sum = icmpv6_checksum(source, ALL_NODES, na);
    na[2..4].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The ICMPv6 checksum over the IPv6 pseudo-header and `body` (checksum field zero).
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, body: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |b| u32::from(*b));
            sum += hi | lo;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(body.len() as u32).to_be_bytes());
    add(&[0, 0, 0, IPPROTO_ICMPV6]);
    add(body);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// keepalived's gratuitous ARP / NA timing options, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceTiming {
    /// `garp_master_delay`: when the second burst follows the first; zero means no second
    /// burst. Default 5 s.
    pub delay: Duration,
    /// `garp_master_repeat`: rounds per burst. Default 5.
    pub repeat: u32,
    /// `garp_master_refresh`: period of refresh rounds while master; zero means none.
    /// Default 0.
    pub refresh: Duration,
    /// `garp_master_refresh_repeat`: rounds per refresh. Default 1.
    pub refresh_repeat: u32,
    /// `garp_interval` / `gna_interval`: pause between rounds of one burst. Default 0.
    pub interval: Duration,
}

impl Default for AnnounceTiming {
    fn default() -> Self {
        Self {
            delay: Duration::from_secs(5),
            repeat: 5,
            refresh: Duration::ZERO,
            refresh_repeat: 1,
            interval: Duration::ZERO,
        }
    }
}

/// The send times of one master term's announcements, earliest first, as an iterator of
/// instants; each instant is one round (one frame per virtual address).
///
/// Finite unless refresh is on, in which case it goes on for as long as it is polled: the
/// caller stops it when the router leaves master.
#[derive(Debug, Clone)]
pub struct AnnounceSchedule {
    bursts: VecDeque<Instant>,
    timing: AnnounceTiming,
    start: Instant,
    refresh_period: u32,
    refresh_round: u32,
}

impl AnnounceSchedule {
    /// The schedule for a master term that began at `start`.
    pub fn new(timing: AnnounceTiming, start: Instant) -> Self {
        let mut bursts: Vec<Instant> = (0..timing.repeat)
            .map(|k| start + timing.interval * k)
            .collect();
        if !timing.delay.is_zero() {
            bursts.extend((0..timing.repeat).map(|k| start + timing.delay + timing.interval * k));
        }
        bursts.sort();
        Self {
            bursts: bursts.into(),
            timing,
            start,
            refresh_period: 1,
            refresh_round: 0,
        }
    }

    fn next_refresh(&self) -> Option<Instant> {
        if self.timing.refresh.is_zero() || self.timing.refresh_repeat == 0 {
            return None;
        }
        let at = self.timing.refresh.checked_mul(self.refresh_period)?
            + self.timing.interval.checked_mul(self.refresh_round)?;
        self.start.checked_add(at)
    }

    fn advance_refresh(&mut self) {
        self.refresh_round += 1;
        if self.refresh_round >= self.timing.refresh_repeat {
            self.refresh_round = 0;
            self.refresh_period = self.refresh_period.saturating_add(1);
        }
    }
}

impl Iterator for AnnounceSchedule {
    type Item = Instant;

    fn next(&mut self) -> Option<Instant> {
        match (self.bursts.front().copied(), self.next_refresh()) {
            (Some(b), Some(r)) if r < b => {
                self.advance_refresh();
                Some(r)
            }
            (Some(_), _) => self.bursts.pop_front(),
            (None, Some(r)) => {
                self.advance_refresh();
                Some(r)
            }
            (None, None) => None,
        }
    }
}

/// Announcement failures, each naming the interface.
#[derive(Debug, Error)]
pub enum AnnounceError {
    /// The AF_PACKET socket could not be opened.
    #[error("opening packet socket for {interface}: {source}")]
    Open {
        /// Interface name.
        interface: String,
        /// Why.
        source: io::Error,
    },
    /// A frame could not be sent.
    #[error("announcing {addr} on {interface}: {source}")]
    Send {
        /// Interface name.
        interface: String,
        /// The virtual address announced.
        addr: IpAddr,
        /// Why.
        source: io::Error,
    },
}

/// Sends gratuitous ARPs and unsolicited NAs on one interface.
#[derive(Debug)]
pub struct Announcer {
    socket: Socket,
    iface: Interface,
    mac: [u8; 6],
    ipv6_source: Option<Ipv6Addr>,
    router: bool,
}

impl Announcer {
    /// Opens the sending socket for `iface`, whose own MAC is `mac`; `ipv6_source` is the
    /// interface's link-local address, the NA source (when `None`, the NA is sent from
    /// the virtual address itself, as keepalived and the kernel do).
    pub fn new(
        iface: &Interface,
        mac: [u8; 6],
        ipv6_source: Option<Ipv6Addr>,
    ) -> Result<Self, AnnounceError> {
        // Protocol 0: the socket is never attached to the receive path, so it costs
        // nothing per received packet.
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|source| AnnounceError::Open {
                interface: iface.name.clone(),
                source,
            })?;
        Ok(Self {
            socket,
            iface: iface.clone(),
            mac,
            ipv6_source,
            router: false,
        })
    }

    /// Sets the NA router flag; set it when the interface forwards IPv6, or hosts drop
    /// this node from their default router lists (RFC 4861 §7.2.5).
    pub fn with_router_flag(mut self, router: bool) -> Self {
        self.router = router;
        self
    }

    /// The interface this announcer sends on.
    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    /// Sends one gratuitous ARP (IPv4) or unsolicited NA (IPv6) for `addr`.
    pub fn send(&self, addr: IpAddr) -> Result<(), AnnounceError> {
        let result = match addr {
            IpAddr::V4(vip) => {
                self.send_frame(&garp_frame(self.mac, vip), ETHERTYPE_ARP, BROADCAST_MAC)
            }
            IpAddr::V6(vip) => {
                let source = self.ipv6_source.unwrap_or(vip);
                let frame = unsolicited_na_frame(self.mac, source, vip, self.router);
                self.send_frame(&frame, ETHERTYPE_IPV6, ALL_NODES_MAC)
            }
        };
        result.map_err(|source| AnnounceError::Send {
            interface: self.iface.name.clone(),
            addr,
            source,
        })
    }

    fn send_frame(&self, frame: &[u8], ethertype: u16, dst: [u8; 6]) -> io::Result<()> {
        let mut storage = SockAddrStorage::zeroed();
        // SAFETY: sockaddr_ll is a sockaddr type of this platform and fits the storage.
        let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_protocol = ethertype.to_be();
        ll.sll_ifindex = i32::try_from(self.iface.index)
            .map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
        ll.sll_halen = ETH_ALEN as u8;
        ll.sll_addr[..ETH_ALEN].copy_from_slice(&dst);
        // SAFETY: the storage holds an initialised sockaddr_ll of exactly this length.
        let addr =
            unsafe { SockAddr::new(storage, size_of::<libc::sockaddr_ll>() as libc::socklen_t) };
        let sent = self.socket.send_to(frame, &addr)?;
        if sent != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short packet write",
            ));
        }
        Ok(())
    }
}

/// Runs `schedule`, sending one round for every address in `addrs` at each of its times;
/// returns the number of frames sent once a finite schedule ends.
///
/// A failed send is logged and the run goes on: the next round may well succeed (a
/// carrier blip), and announcements are best effort anyway. Cancel by dropping the
/// future (abort its task) when the router leaves master.
pub async fn run_announcements(
    announcer: &Announcer,
    addrs: &[IpAddr],
    schedule: AnnounceSchedule,
) -> u64 {
    run_announcements_on(&[(announcer, addrs)], schedule).await
}

/// [`run_announcements`] for addresses on several interfaces: each group goes out
/// through its own announcer, on the same schedule.
pub async fn run_announcements_on(
    groups: &[(&Announcer, &[IpAddr])],
    schedule: AnnounceSchedule,
) -> u64 {
    let mut sent = 0;
    for at in schedule {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        for (announcer, addrs) in groups {
            for addr in *addrs {
                match announcer.send(*addr) {
                    Ok(()) => sent += 1,
                    Err(err) => tracing::warn!(%err, "announcement not sent"),
                }
            }
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x1a, 0x45, 0x04, 0x29, 0x79, 0x60];

    /// keepalived 2.2.7's GARP for 192.0.2.100, captured with tcpdump in a namespace.
    #[test]
    fn garp_matches_keepalived_capture() {
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1a, 0x45, 0x04, 0x29, 0x79, 0x60, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x1a, 0x45, 0x04, 0x29, 0x79, 0x60,
            0xc0, 0x00, 0x02, 0x64, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0, 0x00, 0x02, 0x64,
        ];
        assert_eq!(garp_frame(MAC, Ipv4Addr::new(192, 0, 2, 100)), expected);
    }

    /// keepalived 2.2.7's NA for 2001:db8::100 (sent from the VIP itself), captured with
    /// tcpdump in a namespace; tcpdump called its checksum correct.
    #[test]
    fn na_matches_keepalived_capture() {
        let expected: [u8; 86] = [
            0x33, 0x33, 0x00, 0x00, 0x00, 0x01, 0x1a, 0x45, 0x04, 0x29, 0x79, 0x60, 0x86, 0xdd,
            0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0xff, 0x02, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0x00,
            0x61, 0x5f, 0x20, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x01, 0x1a, 0x45, 0x04, 0x29,
            0x79, 0x60,
        ];
        let vip: Ipv6Addr = "2001:db8::100".parse().expect("literal");
        assert_eq!(unsolicited_na_frame(MAC, vip, vip, false), expected);
    }

    #[test]
    fn na_router_flag_and_checksum_verify() {
        let src: Ipv6Addr = "fe80::1845:4ff:fe29:7960".parse().expect("literal");
        let vip: Ipv6Addr = "2001:db8::100".parse().expect("literal");
        let f = unsolicited_na_frame(MAC, src, vip, true);
        let body = &f[ETH_HLEN + 40..];
        assert_eq!(body[4], NA_FLAG_ROUTER | NA_FLAG_OVERRIDE);
        // A correct checksum sums (with itself in place) to all ones, i.e. verifies to 0.
        assert_eq!(icmpv6_checksum(src, ALL_NODES, body), 0);
        assert_eq!(&f[ETH_HLEN + 8..ETH_HLEN + 24], &src.octets());
    }

    fn offsets(s: AnnounceSchedule, start: Instant) -> Vec<Duration> {
        s.map(|t| t - start).collect()
    }

    #[test]
    fn default_schedule_is_two_bursts_of_five() {
        let start = Instant::now();
        let got = offsets(
            AnnounceSchedule::new(AnnounceTiming::default(), start),
            start,
        );
        let mut want = vec![Duration::ZERO; 5];
        want.extend([Duration::from_secs(5); 5]);
        assert_eq!(got, want);
    }

    #[test]
    fn zero_delay_means_one_burst() {
        let start = Instant::now();
        let timing = AnnounceTiming {
            delay: Duration::ZERO,
            repeat: 3,
            ..AnnounceTiming::default()
        };
        assert_eq!(
            offsets(AnnounceSchedule::new(timing, start), start),
            vec![Duration::ZERO; 3]
        );
    }

    #[test]
    fn interval_spaces_rounds_within_a_burst() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let timing = AnnounceTiming {
            delay: ms(1000),
            repeat: 3,
            interval: ms(100),
            ..AnnounceTiming::default()
        };
        assert_eq!(
            offsets(AnnounceSchedule::new(timing, start), start),
            vec![ms(0), ms(100), ms(200), ms(1000), ms(1100), ms(1200)]
        );
    }

    #[test]
    fn refresh_interleaves_with_bursts_and_goes_on() {
        let start = Instant::now();
        let s = Duration::from_secs;
        let timing = AnnounceTiming {
            delay: s(5),
            repeat: 2,
            refresh: s(3),
            refresh_repeat: 2,
            interval: Duration::ZERO,
        };
        let got: Vec<Duration> = AnnounceSchedule::new(timing, start)
            .take(12)
            .map(|t| t - start)
            .collect();
        assert_eq!(
            got,
            vec![
                s(0),
                s(0),
                s(3),
                s(3),
                s(5),
                s(5),
                s(6),
                s(6),
                s(9),
                s(9),
                s(12),
                s(12)
            ]
        );
    }

    #[test]
    fn zero_repeat_sends_nothing() {
        let timing = AnnounceTiming {
            repeat: 0,
            ..AnnounceTiming::default()
        };
        assert_eq!(AnnounceSchedule::new(timing, Instant::now()).count(), 0);
    }
}
