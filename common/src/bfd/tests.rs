use super::*;

/// A valid single-hop BFD packet over IPv4 from 192.0.2.2: Up, My Discriminator 7,
/// Your Discriminator 9, 10 ms both ways, multiplier 3.
fn v4() -> [u8; 14 + 20 + 8 + 24] {
    let mut f = [0u8; 66];
    f[12] = 0x08;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&52u16.to_be_bytes());
    f[22] = 255;
    f[23] = IPPROTO_UDP;
    f[26..30].copy_from_slice(&[192, 0, 2, 2]);
    f[30..34].copy_from_slice(&[192, 0, 2, 1]);
    f[34..36].copy_from_slice(&49152u16.to_be_bytes());
    f[36..38].copy_from_slice(&BFD_PORT.to_be_bytes());
    f[38..40].copy_from_slice(&32u16.to_be_bytes());
    f[42..66].copy_from_slice(&header(3, 7, 9));
    f
}

/// The same packet over IPv6 from 2001:db8::2.
fn v6() -> [u8; 14 + 40 + 8 + 24] {
    let mut f = [0u8; 86];
    f[12] = 0x86;
    f[13] = 0xdd;
    f[14] = 0x60;
    f[18..20].copy_from_slice(&32u16.to_be_bytes());
    f[20] = IPPROTO_UDP;
    f[21] = 255;
    f[22..24].copy_from_slice(&[0x20, 0x01]);
    f[24..26].copy_from_slice(&[0x0d, 0xb8]);
    f[37] = 2;
    f[54..56].copy_from_slice(&49152u16.to_be_bytes());
    f[56..58].copy_from_slice(&BFD_PORT.to_be_bytes());
    f[58..60].copy_from_slice(&32u16.to_be_bytes());
    f[62..86].copy_from_slice(&header(3, 7, 9));
    f
}

/// Version 1, state `sta`, multiplier 3, length 24, 10 ms intervals.
fn header(sta: u8, my: u32, your: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0] = 1 << 5;
    h[1] = sta << 6;
    h[2] = 3;
    h[3] = 24;
    h[4..8].copy_from_slice(&my.to_be_bytes());
    h[8..12].copy_from_slice(&your.to_be_bytes());
    h[12..16].copy_from_slice(&10_000u32.to_be_bytes());
    h[16..20].copy_from_slice(&10_000u32.to_be_bytes());
    h
}

fn parsed(bytes: &[u8]) -> Option<BfdFrame> {
    let mut f = BfdFrame::default();
    parse(bytes, &mut f).then_some(f)
}

fn valid() -> BfdFrame {
    parsed(&v4()).expect("the fixture is BFD")
}

#[test]
fn parses_ipv4_and_ipv6() {
    let f = valid();
    assert_eq!(f.family, FAMILY_V4);
    assert_eq!(f.ttl, 255);
    assert_eq!(f.payload_len, 24);
    assert_eq!(&f.src[..4], &[192, 0, 2, 2]);
    assert_eq!(
        (f.my_discriminator(), f.your_discriminator(), f.state()),
        (7, 9, 3)
    );
    let f6 = parsed(&v6()).expect("IPv6 fixture is BFD");
    assert_eq!(f6.family, FAMILY_V6);
    assert_eq!(f6.src[..2], [0x20, 0x01]);
    assert_eq!(f6.src[15], 2);
    assert_eq!(f6.header, f.header);
    assert_eq!(check(&f), Ok(true));
    assert_eq!(check(&f6), Ok(true));
}

#[test]
fn other_traffic_is_not_bfd() {
    let mut f = v4();
    f[36..38].copy_from_slice(&4784u16.to_be_bytes());
    assert!(parsed(&f).is_none(), "multihop port");
    let mut f = v4();
    f[23] = 6;
    assert!(parsed(&f).is_none(), "TCP");
    let mut f = v4();
    f[20] = 0x20;
    assert!(parsed(&f).is_none(), "a fragment");
    let mut f = v4();
    f[12] = 0x81;
    assert!(parsed(&f).is_none(), "VLAN-tagged");
    let mut f = v4();
    f[14] = 0x44;
    assert!(parsed(&f).is_none(), "IHL below 5");
    assert!(parsed(&v4()[..60]).is_none(), "truncated mandatory section");
    let mut f = v6();
    f[20] = 0;
    assert!(parsed(&f).is_none(), "IPv6 extension header");
    let mut f = v6();
    f[14] = 0x40;
    assert!(parsed(&f).is_none(), "IPv6 ethertype, IPv4 version");
    let mut f = v4();
    f[14] = 0x65;
    assert!(parsed(&f).is_none(), "IPv4 ethertype, IPv6 version");
    let mut f = v4();
    f[16..18].copy_from_slice(&10u16.to_be_bytes());
    assert!(parsed(&f).is_none(), "IP total length below the header");
    let mut f = v4();
    f[38..40].copy_from_slice(&4u16.to_be_bytes());
    assert!(parsed(&f).is_none(), "UDP length below the UDP header");
}

#[test]
fn payload_length_is_the_smaller_of_udp_and_ip() {
    let mut f = v4();
    f[38..40].copy_from_slice(&100u16.to_be_bytes());
    assert_eq!(parsed(&f).map(|f| f.payload_len), Some(24));
    let mut f = v4();
    f[16..18].copy_from_slice(&50u16.to_be_bytes());
    assert_eq!(parsed(&f).map(|f| f.payload_len), Some(22));
    assert_eq!(check(&parsed(&f).expect("BFD")), Err(BfdVerdict::Length));
}

#[test]
fn every_stateless_rule() {
    let mut f = valid();
    f.ttl = 254;
    assert_eq!(check(&f), Err(BfdVerdict::Ttl));

    let mut f = valid();
    f.header[0] = 2 << 5;
    assert_eq!(check(&f), Err(BfdVerdict::Version));

    let mut f = valid();
    f.header[3] = 23;
    assert_eq!(check(&f), Err(BfdVerdict::Length));

    let mut f = valid();
    f.header[3] = 25;
    assert_eq!(check(&f), Err(BfdVerdict::Length), "beyond the payload");

    let mut f = valid();
    f.header[1] |= 0x04;
    f.header[3] = 24;
    f.payload_len = 30;
    assert_eq!(
        check(&f),
        Err(BfdVerdict::Length),
        "26 is the minimum with A"
    );
    f.header[3] = 26;
    assert_eq!(check(&f), Ok(false), "authentication is the agent's");

    let mut f = valid();
    f.header[2] = 0;
    assert_eq!(check(&f), Err(BfdVerdict::DetectMult));

    let mut f = valid();
    f.header[1] |= 0x01;
    assert_eq!(check(&f), Err(BfdVerdict::Multipoint));

    let mut f = valid();
    f.header[4..8].copy_from_slice(&[0; 4]);
    assert_eq!(check(&f), Err(BfdVerdict::MyDiscriminator));

    for (sta, ok) in [(0, true), (1, true), (2, false), (3, false)] {
        let mut f = valid();
        f.header = header(sta, 7, 0);
        let want = if ok {
            Ok(true)
        } else {
            Err(BfdVerdict::YourDiscriminator)
        };
        assert_eq!(check(&f), want, "state {sta} with Your Discriminator 0");
    }
}

fn params() -> BfdParams {
    let mut peer = [0u8; 16];
    peer[..4].copy_from_slice(&[192, 0, 2, 2]);
    BfdParams {
        ifindex: 5,
        family: FAMILY_V4,
        epoch: 0,
        _pad: [0; 2],
        peer,
        detect_ns: 30_000_000,
    }
}

#[test]
fn demultiplexing() {
    let f = valid();
    let p = params();
    assert_eq!(demux(&f, Some(&p), 5), BfdVerdict::Recorded);
    assert_eq!(demux(&f, None, 5), BfdVerdict::Passed, "unknown session");
    assert_eq!(demux(&f, Some(&p), 6), BfdVerdict::Mismatch, "interface");
    let mut other = p;
    other.peer[3] = 3;
    assert_eq!(demux(&f, Some(&other), 5), BfdVerdict::Mismatch, "peer");
    let mut six = p;
    six.family = FAMILY_V6;
    assert_eq!(demux(&f, Some(&six), 5), BfdVerdict::Mismatch, "family");
    let mut starting = f;
    starting.header = header(1, 7, 0);
    assert_eq!(
        demux(&starting, Some(&p), 5),
        BfdVerdict::Passed,
        "no discriminator yet"
    );
    let f6 = parsed(&v6()).expect("BFD");
    let mut p6 = p;
    p6.family = FAMILY_V6;
    p6.peer = f6.src;
    assert_eq!(demux(&f6, Some(&p6), 5), BfdVerdict::Recorded);
    p6.peer[15] = 9;
    assert_eq!(demux(&f6, Some(&p6), 5), BfdVerdict::Mismatch);
}

#[test]
fn reports_only_changes() {
    let f = valid();
    let mut s = BfdState::default();
    assert!(must_report(&s, &f, 0), "first packet");
    record(&mut s, &f, 100, 0, true, true);
    assert_eq!((s.received, s.reported, s.last_ns), (1, 1, 100));
    assert!(!must_report(&s, &f, 0), "steady");
    record(&mut s, &f, 110, 0, false, false);
    assert_eq!((s.received, s.reported, s.last_ns), (2, 1, 110));
    assert!(must_report(&s, &f, 1), "new epoch");

    // Each field the agent cares about, one at a time.
    for (at, value) in [
        (0usize, 0x21u8), // diagnostic
        (1, 0x80),        // state Init
        (1, 0xc2),        // Demand bit
        (2, 4),           // multiplier
        (5, 1),           // My Discriminator
        (13, 1),          // Desired Min TX
        (17, 1),          // Required Min RX
        (21, 1),          // Required Min Echo RX
    ] {
        let mut g = f;
        g.header[at] = value;
        assert!(must_report(&s, &g, 0), "byte {at} changed");
    }
    let mut poll = f;
    poll.header[1] |= 0x20;
    assert!(must_report(&s, &poll, 0), "Poll");
    record(&mut s, &poll, 120, 0, true, true);
    assert!(must_report(&s, &poll, 0), "every Poll asks for a Final");
    let mut fin = f;
    fin.header[1] |= 0x10;
    assert!(must_report(&s, &fin, 0), "Final");
}

#[test]
fn a_lost_report_makes_the_next_packet_report() {
    let f = valid();
    let mut s = BfdState::default();
    record(&mut s, &f, 100, 0, true, false);
    assert_eq!((s.lost, s.stale), (1, 1));
    assert!(must_report(&s, &f, 0));
    record(&mut s, &f, 110, 0, true, true);
    assert_eq!(s.stale, 0);
    assert!(!must_report(&s, &f, 0));
}

#[test]
fn record_layout_matches_advert_event() {
    let mut r = BfdRecord::from_advert(&crate::AdvertEvent::zeroed());
    let f = valid();
    r.fill(EVENT_BFD_PACKET, 5, 6, 9, f.family, &f.src, &f.header, 1, 0);
    // SAFETY: same size, alignment and plain data (asserted in the module).
    let e: crate::AdvertEvent = unsafe { core::mem::transmute_copy(&r) };
    assert_eq!(e.event, EVENT_BFD_PACKET);
    assert_eq!(e.ts_ns, 5);
    assert_eq!(e.ifindex, 6);
    assert!(BfdRecord::is_bfd(e.event));
    assert!(!BfdRecord::is_bfd(crate::event::EVENT_SILENCE));
    assert_eq!(BfdRecord::from_advert(&e), r);
    assert_eq!(BfdVerdict::ALL.len(), BFD_VERDICTS);
    for (i, v) in BfdVerdict::ALL.iter().enumerate() {
        assert_eq!(*v as usize, i);
    }
    assert!(BfdVerdict::Passed.passes() && !BfdVerdict::Recorded.passes());
}

#[test]
fn interface_counters_follow_verdict_order() {
    let mut c = BfdIfaceStats::default();
    for (i, v) in BfdVerdict::ALL.iter().enumerate() {
        let mut one = BfdIfaceStats::default();
        // SAFETY: repr(C) of BFD_COUNTERS u64 fields, as the program writes it.
        unsafe { *(&mut one as *mut BfdIfaceStats as *mut u64).add(i) = 1 };
        assert_eq!(one.get(*v), 1, "{v:?} at index {i}");
        assert_eq!(one.all().iter().sum::<u64>(), 1);
        c.add(&one);
    }
    let mut down = BfdIfaceStats::default();
    // SAFETY: as above.
    unsafe { *(&mut down as *mut BfdIfaceStats as *mut u64).add(BFD_COUNT_DOWN) = 1 };
    assert_eq!(down.down, 1);
    let mut full = BfdIfaceStats::default();
    // SAFETY: as above.
    unsafe { *(&mut full as *mut BfdIfaceStats as *mut u64).add(BFD_COUNT_RING_FULL) = 1 };
    assert_eq!(full.ring_full, 1);
    c.add(&down);
    assert_eq!(c.all().iter().sum::<u64>(), BFD_VERDICTS as u64 + 1);
}

#[test]
fn a_timer_on_time_takes_the_session_down() {
    let detect = 30_000_000;
    // Within a millisecond of the deadline, or early: the peer was silent.
    assert_eq!(
        expiry(100_000_000, 100_000_000, detect, false),
        Expiry::Down
    );
    assert_eq!(
        expiry(100_900_000, 100_000_000, detect, false),
        Expiry::Down
    );
    assert_eq!(expiry(90_000_000, 100_000_000, detect, false), Expiry::Down);
}

#[test]
fn a_late_timer_listens_one_detection_time_from_its_wake_up() {
    let detect = 30_000_000;
    // 3 ms late (a stalled host): listen until now + 30 ms.
    assert_eq!(
        expiry(103_000_000, 100_000_000, detect, false),
        Expiry::Listen(133_000_000)
    );
    // Once per silence: the second expiry without a packet goes down, late or not.
    assert_eq!(expiry(140_000_000, 100_000_000, detect, true), Expiry::Down);
}

#[test]
fn lateness_scales_with_the_detection_time() {
    // 900 ms detection: 1/16 is 56.25 ms; 10 ms late is a loaded host, not a stall.
    let detect = 900_000_000;
    assert!(!late(1_010_000_000, 1_000_000_000, detect));
    assert!(late(1_060_000_000, 1_000_000_000, detect));
    // 3 ms detection (1 ms x 3): the floor of 1 ms holds.
    assert!(!late(1_000_900_000, 1_000_000_000, 3_000_000));
    assert!(late(1_001_100_000, 1_000_000_000, 3_000_000));
}
