//! BFD-assisted takeover: a Backup told its critical session to the Master went down.

use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::vrrp::packet::{Advertisement, Auth, Version};

const ME: &str = "192.0.2.12";
const MASTER: &str = "192.0.2.11";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test literal is an address")
}

fn ms(n: u64) -> Instant {
    Instant::from_nanos(n * 1_000_000)
}

fn advert(priority: u8) -> Input {
    Input::Advert {
        source: ip(MASTER),
        advert: Advertisement {
            version: Version::V3,
            vrid: 51,
            priority,
            interval: Duration::from_secs(1),
            addresses: vec![ip("192.0.2.100")],
            auth: Auth::None,
        },
    }
}

/// A Backup (priority 100) hearing the Master (150) at 0 and 1000 ms.
fn backup() -> VirtualRouter {
    let mut r = VirtualRouter::new(
        RouterConfig::new(51, Version::V3, 100, vec![ip("192.0.2.100")]),
        ip(ME),
    );
    r.handle(Instant::ZERO, Input::Startup);
    r.handle(ms(0), advert(150));
    r.handle(ms(1000), advert(150));
    while r.poll_action().is_some() {}
    assert_eq!(r.state(), State::Backup);
    r
}

#[test]
fn the_session_going_down_takes_over_without_waiting_for_the_down_timer() {
    let mut r = backup();
    r.handle(
        ms(1035),
        Input::MasterUnreachable {
            master: ip(MASTER),
            at: ms(1030),
        },
    );
    assert_eq!(r.state(), State::Master);
    let actions: Vec<Action> = std::iter::from_fn(|| r.poll_action()).collect();
    match &actions[0] {
        Action::StateChanged(t) => {
            assert_eq!(t.reason, Reason::BfdDown { master: ip(MASTER) });
            assert_eq!(
                t.reason.to_string(),
                "BFD session to master 192.0.2.11 down"
            );
            assert_eq!(t.at, ms(1035));
        }
        other => panic!("expected the transition first, got {other:?}"),
    }
    // Then what becoming Master by the timer does: advert, addresses, announcements.
    assert_eq!(
        actions[1..],
        [
            Action::SendAdvert { priority: 100 },
            Action::AddAddresses,
            Action::Announce
        ]
    );
}

#[test]
fn an_advert_after_the_session_went_down_means_the_master_lives() {
    let mut r = backup();
    r.handle(ms(1040), advert(150));
    r.handle(
        ms(1045),
        Input::MasterUnreachable {
            master: ip(MASTER),
            at: ms(1030),
        },
    );
    assert_eq!(r.state(), State::Backup);
}

#[test]
fn a_session_to_someone_else_changes_nothing() {
    let mut r = backup();
    r.handle(
        ms(1035),
        Input::MasterUnreachable {
            master: ip("192.0.2.13"),
            at: ms(1030),
        },
    );
    assert_eq!(r.state(), State::Backup);
    // Nor does it matter to a Master or a router in Fault.
    let mut m = backup();
    m.handle(ms(1100), Input::Fault { reason: "x".into() });
    m.handle(
        ms(1135),
        Input::MasterUnreachable {
            master: ip(MASTER),
            at: ms(1130),
        },
    );
    assert_eq!(m.state(), State::Fault);
}

#[test]
fn without_the_session_the_rfc_timer_still_runs() {
    let mut r = backup();
    // Master_Down_Interval at priority 100, 1 s: 3 s + 0.609375 s after the last advert.
    assert_eq!(
        r.poll_timeout(),
        Some(ms(1000) + Duration::from_micros(3_609_375))
    );
    r.handle(ms(4609) + Duration::from_micros(375), Input::Timeout);
    assert_eq!(r.state(), State::Master);
}
