//! Gratuitous ARP and unsolicited NA on the wire: captured with tcpdump in the peer
//! namespace, decoded field by field (and by tshark), timed per burst, and shown to update
//! the peer's neighbour cache.

mod netns;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use netns::{Capture, Frame, IF_A, IF_B, Lab, LabOptions};
use vigil::net::announce::icmpv6_checksum;
use vigil::net::{AnnounceSchedule, AnnounceTiming, Announcer, Netlink, VirtualAddress};

const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
/// A locally administered MAC planted in the peer's neighbour cache as the "old master".
const OLD_MAC: &str = "02:00:00:00:00:99";

fn check_garp(f: &[u8], mac: [u8; 6]) {
    assert_eq!(f.len(), 42, "GARP frame length");
    assert_eq!(&f[0..6], &[0xff; 6], "Ethernet broadcast");
    assert_eq!(&f[6..12], &mac, "Ethernet source is the interface MAC");
    assert_eq!(&f[12..14], &[0x08, 0x06], "ethertype ARP");
    let arp = &f[14..];
    assert_eq!(
        &arp[0..8],
        &[0, 1, 8, 0, 6, 4, 0, 1],
        "Ethernet/IPv4 ARP request"
    );
    assert_eq!(&arp[8..14], &mac, "sender hardware address");
    assert_eq!(
        &arp[14..18],
        &VIP4.octets(),
        "sender protocol address is the VIP"
    );
    assert_eq!(
        &arp[18..24],
        &[0xff; 6],
        "target hardware address (as keepalived)"
    );
    assert_eq!(
        &arp[24..28],
        &VIP4.octets(),
        "target protocol address is the VIP"
    );
}

fn check_na(f: &[u8], mac: [u8; 6], source: Ipv6Addr) {
    assert_eq!(f.len(), 86, "NA frame length");
    assert_eq!(
        &f[0..6],
        &[0x33, 0x33, 0, 0, 0, 1],
        "Ethernet all-nodes multicast"
    );
    assert_eq!(&f[6..12], &mac);
    assert_eq!(&f[12..14], &[0x86, 0xdd], "ethertype IPv6");
    let ip = &f[14..54];
    assert_eq!(ip[0] >> 4, 6);
    assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 32, "payload length");
    assert_eq!(ip[6], 58, "next header ICMPv6");
    assert_eq!(ip[7], 255, "hop limit");
    assert_eq!(&ip[8..24], &source.octets(), "source is the link-local");
    let all_nodes: Ipv6Addr = "ff02::1".parse().expect("literal");
    assert_eq!(&ip[24..40], &all_nodes.octets(), "destination ff02::1");
    let icmp = &f[54..];
    assert_eq!(icmp[0], 136, "Neighbor Advertisement");
    assert_eq!(icmp[1], 0, "code");
    assert_eq!(icmp[4], 0x20, "override only: not solicited, not router");
    assert_eq!(&icmp[8..24], &VIP6.octets(), "target is the VIP");
    assert_eq!(&icmp[24..26], &[2, 1], "target link-layer address option");
    assert_eq!(&icmp[26..32], &mac);
    assert_eq!(
        icmpv6_checksum(source, all_nodes, icmp),
        0,
        "checksum verifies"
    );
}

fn neigh_mac(lab: &Lab, addr: &str) -> String {
    lab.ip_b(&["neigh", "show", addr, "dev", IF_B])
}

#[test]
fn garp_and_na_bursts_on_the_wire() {
    require_root!();
    let lab = Lab::new("an", LabOptions { dad: false });
    lab.ip_b(&["addr", "add", "2001:db8::2/64", "dev", IF_B, "nodad"]);
    let mac = lab.mac(&lab.a, IF_A);
    let link_local = lab.wait_link_local(&lab.a, IF_A);
    for vip in ["192.0.2.100", "2001:db8::100"] {
        lab.ip_b(&[
            "neigh", "replace", vip, "lladdr", OLD_MAC, "dev", IF_B, "nud", "stale",
        ]);
    }
    let mac_s: String = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let filter = format!("ether src {mac_s} and (arp or (icmp6 and ip6[40] == 136))");
    let mut capture = Capture::start(&lab.b, IF_B, 8, &filter);

    let started = Instant::now();
    let sent = netns::block_on_in(&lab.a, move || async move {
        let nl = Netlink::connect().expect("rtnetlink socket opens as root");
        let iface = nl.interface(IF_A).await.expect("vg0 exists");
        for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
            let len = if vip.is_ipv4() { 24 } else { 64 };
            assert!(
                nl.add_address(&iface, &VirtualAddress::new(vip, len))
                    .await
                    .expect("add")
            );
        }
        let announcer = Announcer::new(&iface, mac, Some(link_local)).expect("packet socket");
        let timing = AnnounceTiming {
            delay: Duration::from_millis(500),
            repeat: 2,
            ..AnnounceTiming::default()
        };
        let schedule = AnnounceSchedule::new(timing, Instant::now());
        vigil::net::run_announcements(&announcer, &[IpAddr::V4(VIP4), IpAddr::V6(VIP6)], schedule)
            .await
    });
    assert_eq!(sent, 8, "2 bursts x 2 rounds x 2 addresses");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "second burst waited"
    );

    let frames: Vec<Frame> = capture.finish(Duration::from_secs(5));
    assert_eq!(frames.len(), 8, "captured {} frames", frames.len());
    let (mut garps, mut nas) = (0, 0);
    for f in &frames {
        match &f.data[12..14] {
            [0x08, 0x06] => {
                check_garp(&f.data, mac);
                garps += 1;
            }
            _ => {
                check_na(&f.data, mac, link_local);
                nas += 1;
            }
        }
    }
    assert_eq!((garps, nas), (4, 4));
    let first_burst = frames[3].time - frames[0].time;
    let gap = frames[4].time - frames[3].time;
    assert!(
        first_burst < 0.25,
        "first burst spread over {first_burst:.3} s"
    );
    assert!(
        (0.4..2.0).contains(&gap),
        "second burst {gap:.3} s after the first"
    );

    if let Some(rows) = netns::tshark_fields(
        capture.path(),
        "arp",
        &["arp.opcode", "arp.isgratuitous", "arp.src.proto_ipv4"],
    ) {
        assert_eq!(rows.len(), 4);
        for r in rows {
            assert_eq!(r, ["1", "1", "192.0.2.100"], "tshark's reading of a GARP");
        }
    }
    if let Some(rows) = netns::tshark_fields(
        capture.path(),
        "icmpv6.type == 136",
        &[
            "icmpv6.checksum.status",
            "icmpv6.nd.na.flag.o",
            "icmpv6.nd.na.flag.s",
            "icmpv6.nd.na.target_address",
            "ipv6.hlim",
        ],
    ) {
        assert_eq!(rows.len(), 4);
        for r in rows {
            // checksum.status 1 = "Good"; booleans print as 1/0 (True/False in some builds).
            assert_eq!(r[0], "1", "tshark says the checksum is good: {r:?}");
            assert!(matches!(r[1].as_str(), "1" | "True"), "{r:?}");
            assert!(matches!(r[2].as_str(), "0" | "False"), "{r:?}");
            assert_eq!(r[3], "2001:db8::100");
            assert_eq!(r[4], "255");
        }
    }

    // The point of it all: the peer now sends to this node's MAC.
    for vip in ["192.0.2.100", "2001:db8::100"] {
        let entry = neigh_mac(&lab, vip);
        assert!(
            entry.contains(&mac_s),
            "{vip} not moved to {mac_s}: {entry:?}"
        );
    }
}

#[test]
fn na_without_link_local_comes_from_the_vip() {
    require_root!();
    let lab = Lab::new("nv", LabOptions { dad: false });
    let mac = lab.mac(&lab.a, IF_A);
    let mut capture = Capture::start(&lab.b, IF_B, 1, "icmp6 and ip6[40] == 136");
    netns::block_on_in(&lab.a, move || async move {
        let nl = Netlink::connect().expect("rtnetlink socket opens as root");
        let iface = nl.interface(IF_A).await.expect("vg0 exists");
        let announcer = Announcer::new(&iface, mac, None)
            .expect("packet socket")
            .with_router_flag(true);
        announcer.send(IpAddr::V6(VIP6)).expect("send");
    });
    let frames = capture.finish(Duration::from_secs(5));
    assert_eq!(frames.len(), 1);
    let f = &frames[0].data;
    assert_eq!(&f[22..38], &VIP6.octets(), "source is the VIP itself");
    assert_eq!(f[54 + 4], 0xa0, "router and override flags");
}
