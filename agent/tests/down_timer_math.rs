//! The kernel's down timer and the election compute Master_Down_Interval and Skew_Time
//! separately (the XDP program cannot call the agent); they must agree to the nanosecond,
//! or the kernel would wake the agent early (harmless, but a wake-up) or late (a late
//! takeover).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use vigil::vrrp::{RouterConfig, Version, VirtualRouter};
use vigil_common::down::{master_down_ns, skew_ns};

fn router(version: Version, priority: u8, interval: Duration, adverts: u8) -> VirtualRouter {
    let addr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
    let mut cfg = RouterConfig::new(51, version, priority, vec![addr]);
    cfg.advert_interval = interval;
    cfg.down_timer_adverts = adverts;
    VirtualRouter::new(cfg, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 12)))
}

#[test]
fn kernel_and_election_agree_on_every_priority_and_interval() {
    for (version, number, intervals) in [
        (Version::V3, 3u8, vec![10u64, 30, 100, 990, 1000, 4095 * 10]),
        (Version::V2, 2u8, vec![1000, 3000, 255_000]),
    ] {
        for interval_ms in intervals {
            let interval = Duration::from_millis(interval_ms);
            let ns = interval_ms * 1_000_000;
            for adverts in [1u8, 3, 100] {
                for priority in 1..=254u8 {
                    let r = router(version, priority, interval, adverts);
                    assert_eq!(
                        u128::from(master_down_ns(number, priority, ns, u32::from(adverts))),
                        r.master_down_interval().as_nanos(),
                        "v{number} priority {priority} interval {interval_ms} ms × {adverts}"
                    );
                    assert_eq!(
                        u128::from(skew_ns(number, priority, ns)),
                        r.skew_time().as_nanos(),
                        "v{number} priority {priority} interval {interval_ms} ms"
                    );
                }
            }
        }
    }
}
