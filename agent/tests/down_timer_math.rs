//! Master_Down_Interval and Skew_Time have one home in the product
//! (`vigil_common::down`), used by the XDP program's down timer and by the election. This
//! test keeps an independent copy of the RFC's formulas on purpose and checks the
//! election against it for every priority, interval and `down_timer_adverts`: a wrong
//! shared formula would make the kernel and the agent agree on a wrong deadline.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use vigil::vrrp::{RouterConfig, Version, VirtualRouter};

fn router(version: Version, priority: u8, interval: Duration, adverts: u8) -> VirtualRouter {
    let addr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
    let mut cfg = RouterConfig::new(51, version, priority, vec![addr]);
    cfg.advert_interval = interval;
    cfg.down_timer_adverts = adverts;
    VirtualRouter::new(cfg, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 12)))
}

/// RFC 5798 §6.1: Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256;
/// RFC 3768 §6.1 (v2): (256 - Priority) / 256 seconds, whatever the interval.
fn skew_reference(v2: bool, priority: u8, interval_ns: u128) -> u128 {
    let base = if v2 { 1_000_000_000 } else { interval_ns };
    (256 - u128::from(priority)) * base / 256
}

#[test]
fn the_election_uses_the_rfc_formulas_for_every_priority_and_interval() {
    for (version, v2, intervals) in [
        (
            Version::V3,
            false,
            vec![10u64, 30, 100, 990, 1000, 4095 * 10],
        ),
        (Version::V2, true, vec![1000, 3000, 255_000]),
    ] {
        for interval_ms in intervals {
            let interval = Duration::from_millis(interval_ms);
            let ns = u128::from(interval_ms) * 1_000_000;
            for adverts in [1u8, 3, 100] {
                for priority in 1..=254u8 {
                    let r = router(version, priority, interval, adverts);
                    let skew = skew_reference(v2, priority, ns);
                    assert_eq!(
                        r.skew_time().as_nanos(),
                        skew,
                        "v2 {v2} priority {priority} interval {interval_ms} ms"
                    );
                    assert_eq!(
                        r.master_down_interval().as_nanos(),
                        u128::from(adverts) * ns + skew,
                        "v2 {v2} priority {priority} interval {interval_ms} ms × {adverts}"
                    );
                }
            }
        }
    }
}
