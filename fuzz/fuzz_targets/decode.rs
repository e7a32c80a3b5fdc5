//! Feeds arbitrary bytes to every VRRP decoder: none may panic, and whatever decodes must
//! survive an encode/decode round trip unchanged.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use vigil::vrrp::packet::{Advertisement, ChecksumMode, VRRP_MULTICAST_V4, VRRP_MULTICAST_V6};

fn round_trip(advert: &Advertisement, source: IpAddr, destination: IpAddr, mode: ChecksumMode) {
    let msg = advert
        .encode(source, destination, mode)
        .expect("a decoded advertisement is encodable");
    let again = Advertisement::decode(&msg, source, destination, mode)
        .expect("an encoded advertisement decodes");
    assert_eq!(&again, advert);
}

fuzz_target!(|data: &[u8]| {
    let (mode, bytes) = match data.split_first() {
        Some((flags, rest)) if flags & 1 == 1 => (ChecksumMode::AsV2, rest),
        Some((_, rest)) => (ChecksumMode::PseudoHeader, rest),
        None => (ChecksumMode::PseudoHeader, data),
    };

    if let Ok(rx) = Advertisement::decode_ipv4_packet(bytes, mode) {
        round_trip(&rx.advert, rx.source.into(), rx.destination.into(), mode);
    }

    let v4_src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11));
    let v4_dst = IpAddr::V4(VRRP_MULTICAST_V4);
    if let Ok(advert) = Advertisement::decode(bytes, v4_src, v4_dst, mode) {
        round_trip(&advert, v4_src, v4_dst, mode);
    }

    let v6_src = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11);
    if let Ok(advert) = Advertisement::decode_ipv6_payload(bytes, v6_src, VRRP_MULTICAST_V6, 255) {
        round_trip(
            &advert,
            v6_src.into(),
            VRRP_MULTICAST_V6.into(),
            ChecksumMode::PseudoHeader,
        );
    }
});
