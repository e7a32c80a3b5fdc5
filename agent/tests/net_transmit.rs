//! Advert transmit on the wire: what leaves `AdvertSender` is captured in the peer
//! namespace and checked for TTL / hop limit 255, TOS / traffic class 0xc0, group or peer
//! destination, source and payload; plus typed errors and the send-only socket's receive
//! filter.

mod netns;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use netns::{Capture, IF_A, IF_B, Lab, LabOptions};
use vigil::datapath::transmit::{AdvertSender, TransmitError};
use vigil::net::{Interface, Netlink};

const PEER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// Shaped like a VRRPv3 advert (VRID 51, priority 150, 1 s, one address); the bytes are
/// opaque to the sender.
const PAYLOAD4: [u8; 12] = [
    0x31, 0x33, 0x96, 0x01, 0x00, 0x64, 0x00, 0x00, 192, 0, 2, 100,
];
const PAYLOAD6: [u8; 24] = [
    0x31, 0x34, 0x96, 0x01, 0x00, 0x64, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0x01, 0x00,
];

#[test]
fn adverts_leave_with_ttl_255_to_group_and_peers() {
    require_root!();
    let lab = Lab::new("tx", LabOptions { dad: false });
    lab.ip_a(&["addr", "add", "2001:db8::1/64", "dev", IF_A, "nodad"]);
    lab.ip_b(&["addr", "add", "2001:db8::2/64", "dev", IF_B, "nodad"]);
    let link_local = lab.wait_link_local(&lab.a, IF_A);
    let mut capture = Capture::start(&lab.b, IF_B, 4, "ip proto 112 or ip6 proto 112");

    let (src4, src6) = netns::block_on_in(&lab.a, || async {
        let nl = Netlink::connect().expect("rtnetlink socket opens as root");
        let iface = nl.interface(IF_A).await.expect("vg0 exists");
        let src4 = nl
            .primary_ipv4(&iface, &[])
            .await
            .expect("lookup")
            .expect("vg0 has 192.0.2.1");
        let src6 = nl
            .ipv6_link_local(&iface)
            .await
            .expect("lookup")
            .expect("vg0 has a link-local");
        let v4 = AdvertSender::ipv4(&iface, src4).expect("IPv4 sender");
        let v6 = AdvertSender::ipv6(&iface, src6).expect("IPv6 sender");
        assert_eq!(v4.source(), IpAddr::V4(src4));
        assert_eq!(
            v6.multicast_group(),
            "ff02::12".parse::<IpAddr>().expect("literal")
        );
        v4.send(&[], &PAYLOAD4).await.expect("IPv4 multicast");
        v4.send(&[IpAddr::V4(PEER4)], &PAYLOAD4)
            .await
            .expect("IPv4 unicast");
        v6.send(&[], &PAYLOAD6).await.expect("IPv6 multicast");
        v6.send(&[IpAddr::V6(PEER6)], &PAYLOAD6)
            .await
            .expect("IPv6 unicast");
        (src4, src6)
    });
    assert_eq!(src4, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(src6, link_local);

    let frames = capture.finish(Duration::from_secs(10));
    assert_eq!(frames.len(), 4, "captured {} VRRP frames", frames.len());
    let mut seen = Vec::new();
    for f in &frames {
        let d = &f.data;
        match u16::from_be_bytes([d[12], d[13]]) {
            0x0800 => {
                let ip = &d[14..];
                let ihl = usize::from(ip[0] & 0x0f) * 4;
                assert_eq!(ip[1], 0xc0, "TOS network control, as keepalived");
                assert_eq!(ip[8], 255, "TTL");
                assert_eq!(ip[9], 112, "protocol VRRP");
                assert_eq!(&ip[12..16], &src4.octets(), "source is the primary address");
                let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
                assert_eq!(&ip[ihl..], &PAYLOAD4, "payload intact");
                if dst == Ipv4Addr::new(224, 0, 0, 18) {
                    assert_eq!(&d[0..6], &[0x01, 0x00, 0x5e, 0, 0, 0x12], "multicast MAC");
                } else {
                    assert_eq!(dst, PEER4);
                }
                seen.push(IpAddr::V4(dst));
            }
            0x86dd => {
                let ip = &d[14..];
                assert_eq!(ip[6], 112, "next header VRRP");
                assert_eq!(ip[7], 255, "hop limit");
                let tclass = (u16::from_be_bytes([ip[0], ip[1]]) >> 4) & 0xff;
                assert_eq!(tclass, 0xc0, "traffic class network control, as keepalived");
                assert_eq!(&ip[8..24], &src6.octets(), "source is the link-local");
                let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).expect("16 bytes"));
                assert_eq!(&ip[40..], &PAYLOAD6, "payload intact");
                if dst == "ff02::12".parse::<Ipv6Addr>().expect("literal") {
                    assert_eq!(&d[0..6], &[0x33, 0x33, 0, 0, 0, 0x12], "multicast MAC");
                } else {
                    assert_eq!(dst, PEER6);
                }
                seen.push(IpAddr::V6(dst));
            }
            other => panic!("unexpected ethertype {other:#x}"),
        }
    }
    seen.sort();
    let mut want: Vec<IpAddr> = vec![
        "224.0.0.18".parse().expect("literal"),
        IpAddr::V4(PEER4),
        "ff02::12".parse().expect("literal"),
        IpAddr::V6(PEER6),
    ];
    want.sort();
    assert_eq!(seen, want);

    if let Some(rows) = netns::tshark_fields(
        capture.path(),
        "ip.proto == 112 || ipv6.nxt == 112",
        &["ip.ttl", "ipv6.hlim", "vrrp.version"],
    ) {
        assert_eq!(rows.len(), 4);
        for r in rows {
            assert!(
                r[0] == "255" || r[1] == "255",
                "tshark's TTL/hop limit: {r:?}"
            );
            assert_eq!(r[2], "3", "tshark decodes the bytes as VRRPv3: {r:?}");
        }
    }
}

#[test]
fn errors_name_the_interface() {
    require_root!();
    let lab = Lab::new("te", LabOptions { dad: false });
    netns::block_on_in(&lab.a, || async {
        let ghost = Interface {
            index: 999_999,
            name: "ghost0".into(),
        };
        let err = AdvertSender::ipv4(&ghost, Ipv4Addr::new(192, 0, 2, 1)).expect_err("no device");
        assert!(
            matches!(
                err,
                TransmitError::Setup {
                    step: "SO_BINDTODEVICE",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("ghost0"), "{err}");

        let nl = Netlink::connect().expect("rtnetlink socket opens as root");
        let iface = nl.interface(IF_A).await.expect("vg0 exists");
        let err = AdvertSender::ipv4(&iface, Ipv4Addr::new(198, 51, 100, 99))
            .expect_err("not a local address");
        assert!(
            matches!(err, TransmitError::Setup { step: "bind", .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("vg0"), "{err}");

        let v4 = AdvertSender::ipv4(&iface, Ipv4Addr::new(192, 0, 2, 1)).expect("sender");
        let err = v4
            .try_send_to(IpAddr::V6(PEER6), &PAYLOAD4)
            .expect_err("family mismatch");
        assert!(matches!(err, TransmitError::WrongFamily { .. }), "{err:?}");
    });
}

/// The `rx_queue` of the raw socket with inode `inode`, from this thread's namespace.
fn raw_rx_queue(inode: u64) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/thread-self/net/raw").expect("procfs");
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        let rx = cols.get(4)?.split(':').nth(1)?;
        u64::from_str_radix(rx, 16).ok()
    })
}

fn inode(fd: &impl AsFd) -> u64 {
    // SAFETY: fstat on a valid descriptor into a zeroed stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstat(fd.as_fd().as_raw_fd(), &mut st) };
    assert_eq!(rc, 0, "fstat: {}", std::io::Error::last_os_error());
    st.st_ino
}

#[test]
fn sender_socket_does_not_queue_received_adverts() {
    require_root!();
    let lab = Lab::new("rf", LabOptions { dad: false });
    let b = lab.b.clone();
    netns::block_on_in(&lab.a, move || async move {
        let nl = Netlink::connect().expect("rtnetlink socket opens as root");
        let iface = nl.interface(IF_A).await.expect("vg0 exists");
        let ours = AdvertSender::ipv4(&iface, Ipv4Addr::new(192, 0, 2, 1)).expect("sender");
        // A plain raw socket beside it shows that adverts do arrive.
        let control = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(112)),
        )
        .expect("raw socket as root");

        netns::block_on_in(&b, || async {
            let nl = Netlink::connect().expect("rtnetlink socket opens as root");
            let iface = nl.interface(IF_B).await.expect("vg1 exists");
            let peer = AdvertSender::ipv4(&iface, PEER4).expect("peer sender");
            for _ in 0..3 {
                peer.send(&["192.0.2.1".parse().expect("literal")], &PAYLOAD4)
                    .await
                    .expect("unicast advert to vg0");
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while raw_rx_queue(inode(&control)).unwrap_or(0) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "control socket got nothing"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            raw_rx_queue(inode(&ours)),
            Some(0),
            "sender queued received adverts"
        );
    });
}

#[test]
fn a_batch_leaves_in_one_sendmmsg_with_each_payload_to_its_destination() {
    require_root!();
    let lab = Lab::new("txb", LabOptions { dad: false });
    let mut capture = Capture::start(&lab.b, IF_B, 3, "ip proto 112");
    let (sent, pooled_once) = netns::block_on_in(&lab.a, || async {
        let nl = Netlink::connect().expect("rtnetlink socket opens as root");
        let iface = nl.interface(IF_A).await.expect("vg0 exists");
        let src4 = nl
            .primary_ipv4(&iface, &[])
            .await
            .expect("lookup")
            .expect("vg0 has 192.0.2.1");
        let mut pool = vigil::datapath::transmit::SenderPool::default();
        let a = pool.ipv4(&iface, src4).expect("IPv4 sender");
        let b = pool.ipv4(&iface, src4).expect("IPv4 sender");
        let pooled_once = std::sync::Arc::ptr_eq(&a, &b);
        let mut second = PAYLOAD4;
        second[2] = 0x64; // another priority: another instance's advert
        let messages: Vec<(IpAddr, std::sync::Arc<[u8]>)> = vec![
            ("224.0.0.18".parse().expect("literal"), PAYLOAD4.into()),
            ("224.0.0.18".parse().expect("literal"), second.into()),
            (IpAddr::V4(PEER4), PAYLOAD4.into()),
        ];
        let (sent, error) = a.send_batch(&messages).await;
        assert!(error.is_none(), "{error:?}");
        (sent, pooled_once)
    });
    assert!(pooled_once, "one socket per interface and source");
    assert_eq!(sent, 3);
    let frames = capture.finish(Duration::from_secs(10));
    let got: Vec<(Ipv4Addr, u8)> = frames
        .iter()
        .map(|f| {
            let ip = &f.data[14..];
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            assert_eq!(ip[8], 255, "TTL");
            (Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]), ip[ihl + 2])
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (Ipv4Addr::new(224, 0, 0, 18), 0x96),
            (Ipv4Addr::new(224, 0, 0, 18), 0x64),
            (PEER4, 0x96),
        ],
        "in order, each to its own destination"
    );
}
