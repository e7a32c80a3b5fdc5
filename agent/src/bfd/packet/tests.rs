use std::net::IpAddr;

use super::*;
use crate::bfd::datagram::{Datagram, DatagramError};

/// A fixture captured from FRR's bfdd: the datagram, checked as a single-hop packet,
/// and its decoded Control packet.
fn fixture(bytes: &'static [u8]) -> (Datagram<'static>, ControlPacket) {
    let datagram = Datagram::parse(bytes).expect("fixture is an IP/UDP packet");
    datagram.check_single_hop().expect("fixture is single hop");
    assert!(datagram.source_port >= SOURCE_PORT_MIN);
    let packet = ControlPacket::decode(datagram.payload).expect("fixture decodes");
    // Whatever FRR sent, we encode back byte for byte.
    assert_eq!(packet.encode(), datagram.payload);
    (datagram, packet)
}

macro_rules! fixture {
    ($name:literal) => {
        fixture(include_bytes!(concat!("../fixtures/", $name, ".bin")))
    };
}

const DISCR_V4: u32 = 0x86f7_0465;
const DISCR_V6: u32 = 0x887c_02b4;

#[test]
fn frr_handshake_ipv4() {
    let (dg, down) = fixture!("ipv4_down");
    assert_eq!(dg.source, "192.0.2.11".parse::<IpAddr>().unwrap());
    assert_eq!(dg.destination, "192.0.2.12".parse::<IpAddr>().unwrap());
    assert_eq!((dg.ttl, dg.destination_port), (255, BFD_CONTROL_PORT));
    assert_eq!(down.state, State::Down);
    assert_eq!(down.diag, Diagnostic::None);
    assert_eq!(down.detect_mult, 3);
    assert_eq!(down.my_discriminator, DISCR_V4);
    assert_eq!(down.your_discriminator, 0);
    assert_eq!(down.desired_min_tx(), Duration::from_secs(1));
    assert_eq!(down.required_min_rx(), Duration::from_secs(1));
    assert_eq!(down.required_min_echo_rx_us, 50_000);
    assert!(!down.poll && !down.final_ && !down.demand && down.auth.is_none());

    let (_, init) = fixture!("ipv4_init");
    assert_eq!(init.state, State::Init);
    assert_eq!(init.your_discriminator, DISCR_V4);

    let (_, poll) = fixture!("ipv4_up_poll");
    assert_eq!(poll.state, State::Up);
    assert!(poll.poll && !poll.final_);
    assert_eq!(poll.desired_min_tx(), Duration::from_millis(50));

    let (_, fin) = fixture!("ipv4_up_final");
    assert!(fin.final_ && !fin.poll);

    let (_, up) = fixture!("ipv4_up");
    assert_eq!(up.state, State::Up);
    assert!(!up.poll && !up.final_);
}

#[test]
fn frr_going_down_ipv4() {
    let (_, admin) = fixture!("ipv4_admin_down");
    assert_eq!(admin.state, State::AdminDown);
    let (_, down) = fixture!("ipv4_down_neighbor");
    assert_eq!(down.state, State::Down);
    assert_eq!(down.diag, Diagnostic::NeighborSignaledSessionDown);
    assert_eq!(down.your_discriminator, 0);
}

#[test]
fn frr_ipv6() {
    let (dg, down) = fixture!("ipv6_down");
    assert_eq!(dg.source, "2001:db8::11".parse::<IpAddr>().unwrap());
    assert_eq!(dg.ttl, 255);
    assert_eq!(down.my_discriminator, DISCR_V6);
    assert_eq!(fixture!("ipv6_init").1.state, State::Init);
    assert!(fixture!("ipv6_up_poll").1.poll);
    assert!(fixture!("ipv6_up_final").1.final_);
    assert_eq!(fixture!("ipv6_up").1.state, State::Up);
    let (_, expired) = fixture!("ipv6_down_expired");
    assert_eq!(expired.diag, Diagnostic::ControlDetectionTimeExpired);
}

fn up_bytes() -> Vec<u8> {
    let bytes = include_bytes!("../fixtures/ipv4_up.bin");
    Datagram::parse(bytes).unwrap().payload.to_vec()
}

#[test]
fn rejects_what_section_6_8_6_discards() {
    let good = up_bytes();
    let mut bad = good.clone();
    bad[0] = (2 << 5) | (bad[0] & 0x1f);
    assert_eq!(ControlPacket::decode(&bad), Err(DecodeError::Version(2)));

    let mut bad = good.clone();
    bad[3] = 23;
    assert_eq!(ControlPacket::decode(&bad), Err(DecodeError::Length(23)));

    let mut bad = good.clone();
    bad[3] = 25;
    assert_eq!(ControlPacket::decode(&bad), Err(DecodeError::Truncated(24)));

    let mut bad = good.clone();
    bad[2] = 0;
    assert_eq!(ControlPacket::decode(&bad), Err(DecodeError::DetectMult));

    let mut bad = good.clone();
    bad[1] |= 0x01;
    assert_eq!(ControlPacket::decode(&bad), Err(DecodeError::Multipoint));

    let mut bad = good.clone();
    bad[4..8].fill(0);
    assert_eq!(
        ControlPacket::decode(&bad),
        Err(DecodeError::MyDiscriminator)
    );

    // A bit set: the length must leave room for an authentication section.
    let mut bad = good.clone();
    bad[1] |= 0x04;
    assert_eq!(ControlPacket::decode(&bad), Err(DecodeError::Length(24)));

    assert_eq!(
        ControlPacket::decode(&good[..23]),
        Err(DecodeError::Truncated(23))
    );
    // Bytes past the Length field are not the packet's.
    let mut longer = good.clone();
    longer.extend_from_slice(&[0xaa; 4]);
    assert_eq!(ControlPacket::decode(&longer), ControlPacket::decode(&good));
}

#[test]
fn authentication_section_round_trips() {
    let mut packet = ControlPacket::decode(&up_bytes()).unwrap();
    packet.auth = AuthSection::new(1, b"\x01secret");
    let wire = packet.encode();
    assert_eq!(wire.len(), 24 + 2 + 7);
    assert_eq!(wire[3], 33);
    assert_eq!(wire[1] & 0x04, 0x04);
    assert_eq!(ControlPacket::decode(&wire), Ok(packet));
    assert!(!format!("{packet:?}").contains("secret"));

    // An Auth Len that disagrees with the packet's Length.
    let mut bad = wire.clone();
    bad[25] = 8;
    assert_eq!(ControlPacket::decode(&bad), Err(DecodeError::AuthSection));
    assert!(AuthSection::new(4, &[0; 27]).is_none());
}

#[test]
fn diagnostics_round_trip() {
    for code in 0..32 {
        assert_eq!(Diagnostic::from_code(code).code(), code);
    }
}

#[test]
fn single_hop_rules() {
    let mut bytes = include_bytes!("../fixtures/ipv4_up.bin").to_vec();
    bytes[8] = 254; // TTL
    let dg = Datagram::parse(&bytes).unwrap();
    assert_eq!(dg.check_single_hop(), Err(DatagramError::Ttl(254)));

    let mut bytes = include_bytes!("../fixtures/ipv6_up.bin").to_vec();
    bytes[7] = 1; // hop limit
    assert_eq!(
        Datagram::parse(&bytes).unwrap().check_single_hop(),
        Err(DatagramError::Ttl(1))
    );
    bytes[7] = 255;
    bytes[42..44].copy_from_slice(&3785u16.to_be_bytes()); // echo port
    assert_eq!(
        Datagram::parse(&bytes).unwrap().check_single_hop(),
        Err(DatagramError::Port(3785))
    );

    let mut bytes = include_bytes!("../fixtures/ipv4_up.bin").to_vec();
    bytes[6] = 0x20; // more fragments
    assert_eq!(Datagram::parse(&bytes), Err(DatagramError::Fragment));
    let bytes = include_bytes!("../fixtures/ipv4_up.bin");
    assert_eq!(Datagram::parse(&bytes[..30]), Err(DatagramError::Malformed));
    assert_eq!(Datagram::parse(&[]), Err(DatagramError::Malformed));
}
