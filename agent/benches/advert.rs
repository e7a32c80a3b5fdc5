//! Cost of one received advertisement in steady state: decode, then hand to a Backup.
//!
//! `cargo bench -p vigil --bench advert`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vigil::vrrp::packet::{
    Advertisement, Auth, ChecksumMode, VRRP_MULTICAST_V4, VRRP_MULTICAST_V6, Version,
};
use vigil::vrrp::{Input, Instant, RouterConfig, State, VirtualRouter};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11));
const MASTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);

fn master_advert(version: Version) -> Advertisement {
    Advertisement {
        version,
        vrid: 51,
        priority: 200,
        interval: Duration::from_secs(1),
        addresses: vec![VIP],
        auth: match version {
            Version::V2 => Auth::password(b"1111").expect("4 bytes fit the v2 password"),
            Version::V3 => Auth::None,
        },
    }
}

fn backup(version: Version, primary: IpAddr, vip: IpAddr) -> VirtualRouter {
    let mut cfg = RouterConfig::new(51, version, 100, vec![vip]);
    if version == Version::V2 {
        cfg.auth = Auth::password(b"1111").expect("4 bytes fit the v2 password");
    }
    let mut r = VirtualRouter::new(cfg, primary);
    r.handle(Instant::ZERO, Input::Startup);
    while r.poll_action().is_some() {}
    r
}

fn bench(c: &mut Criterion) {
    for version in [Version::V2, Version::V3] {
        let packet = master_advert(version)
            .encode_ipv4_packet(MASTER, VRRP_MULTICAST_V4, 1, ChecksumMode::PseudoHeader)
            .expect("the bench advert is encodable");

        c.bench_function(&format!("decode ipv4 packet {version}"), |b| {
            b.iter(|| {
                Advertisement::decode_ipv4_packet(black_box(&packet), ChecksumMode::PseudoHeader)
            })
        });

        let mut router = backup(version, ME, VIP);
        let mut now = Instant::ZERO;
        c.bench_function(&format!("decode + handle per advert {version} ipv4"), |b| {
            b.iter(|| {
                now += Duration::from_secs(1);
                let rx = Advertisement::decode_ipv4_packet(
                    black_box(&packet),
                    ChecksumMode::PseudoHeader,
                )
                .expect("the bench packet decodes");
                router.handle(
                    now,
                    Input::Advert {
                        source: rx.source.into(),
                        advert: rx.advert,
                    },
                );
                while let Some(a) = router.poll_action() {
                    black_box(a);
                }
            })
        });
        assert_eq!(router.state(), State::Backup, "steady state stays Backup");
    }

    let vip6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100));
    let me6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11));
    let master6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x12);
    let mut advert6 = master_advert(Version::V3);
    advert6.addresses = vec![vip6];
    let payload6 = advert6
        .encode(
            master6.into(),
            VRRP_MULTICAST_V6.into(),
            ChecksumMode::PseudoHeader,
        )
        .expect("the bench advert is encodable");
    let mut router6 = backup(Version::V3, me6, vip6);
    let mut now = Instant::ZERO;
    c.bench_function("decode + handle per advert VRRPv3 ipv6", |b| {
        b.iter(|| {
            now += Duration::from_secs(1);
            let advert = Advertisement::decode_ipv6_payload(
                black_box(&payload6),
                master6,
                VRRP_MULTICAST_V6,
                255,
            )
            .expect("the bench payload decodes");
            router6.handle(
                now,
                Input::Advert {
                    source: master6.into(),
                    advert,
                },
            );
            while let Some(a) = router6.poll_action() {
                black_box(a);
            }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
