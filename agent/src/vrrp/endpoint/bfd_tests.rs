//! BFD-assisted takeover through the endpoint: peers learned from frames, and the
//! critical session's loss handed only to the Backup that would win.

use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::vrrp::wire::WireAdvert;

const IFINDEX: u32 = 2;
const MS: u64 = 1_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal address")
}

fn key() -> VridKey {
    key_of(IFINDEX, ip("192.0.2.12"), 51)
}

fn at(ms: u64) -> Instant {
    Instant::from_nanos(ms * MS)
}

/// A Backup (priority 100, 1 s adverts) with BFD, `peers` configured, that heard the
/// Master 192.0.2.11 (priority 150) on the raw path at 1000 ms.
fn backup(peers: &[IpAddr]) -> (Endpoint, Vec<EndpointAction>) {
    let vip = ip("192.0.2.100");
    let mut ep = Endpoint::new();
    ep.add(
        key(),
        RouterConfig::new(51, Version::V3, 100, vec![vip]),
        ip("192.0.2.12"),
        false,
    )
    .expect("a free key");
    ep.enable_bfd(key(), peers, Duration::from_millis(30));
    ep.handle(at(0), EndpointInput::Startup { key: key() });
    let frame = WireAdvert::v3(ip("192.0.2.11"), 51, 150, 100, vec![vip]).frame();
    ep.handle(
        at(1000),
        EndpointInput::Datapath(Datapath::Frame {
            ifindex: IFINDEX,
            ts_ns: 1000 * MS,
            bytes: frame,
        }),
    );
    let actions = std::iter::from_fn(|| ep.poll_action())
        .map(|(_, a)| a)
        .collect();
    (ep, actions)
}

fn unreachable(ep: &mut Endpoint, now_ms: u64, down_ms: u64) {
    ep.handle(
        at(now_ms),
        EndpointInput::MasterUnreachable {
            ifindex: IFINDEX,
            master: ip("192.0.2.11"),
            at: at(down_ms),
        },
    );
}

#[test]
fn a_new_peer_heard_is_announced_once() {
    let (ep, actions) = backup(&[]);
    let peers: Vec<_> = actions
        .iter()
        .filter(|a| matches!(a, EndpointAction::Peer { .. }))
        .collect();
    assert_eq!(
        peers,
        [&EndpointAction::Peer {
            address: ip("192.0.2.11")
        }]
    );
    assert_eq!(ep.bfd_candidates(IFINDEX, ip("192.0.2.11")), [key()]);
    assert!(ep.bfd_candidates(IFINDEX + 1, ip("192.0.2.11")).is_empty());
}

#[test]
fn the_backup_that_would_win_takes_over_at_once() {
    let (mut ep, _) = backup(&[]);
    unreachable(&mut ep, 1035, 1030);
    let router = ep.router(&key()).expect("router");
    assert_eq!(router.state(), State::Master);
    let actions: Vec<_> = std::iter::from_fn(|| ep.poll_action())
        .map(|(_, a)| a)
        .collect();
    assert!(
        actions.contains(&EndpointAction::Router(Action::SendAdvert {
            priority: 100
        }))
    );
}

#[test]
fn a_backup_that_may_be_outranked_keeps_the_rfc_timer() {
    // A third router configured, never heard: it may have a higher priority.
    let (mut ep, actions) = backup(&[ip("192.0.2.11"), ip("192.0.2.13")]);
    assert!(actions.contains(&EndpointAction::Peer {
        address: ip("192.0.2.13")
    }));
    unreachable(&mut ep, 1035, 1030);
    let router = ep.router(&key()).expect("router");
    assert_eq!(router.state(), State::Backup);
    // The RFC timer still runs from the last advert: 3 s + Skew_Time.
    assert_eq!(
        ep.poll_timeout(),
        Some(at(1000) + Duration::from_micros(3_609_375))
    );
}

#[test]
fn an_advert_the_datapath_kept_after_the_session_fell_keeps_the_master() {
    let (mut ep, _) = backup(&[]);
    // The datapath's state says the Master spoke at 1040 ms, after the session fell at
    // 1030 ms (an advert suppressed in the kernel, never reported).
    let mut stats = *ep.datapath_state(&key()).expect("state");
    stats.last_ns = 1040 * MS;
    ep.handle(
        at(1045),
        EndpointInput::KernelState {
            key: key(),
            stats,
            timer_armed: None,
        },
    );
    unreachable(&mut ep, 1045, 1030);
    assert_eq!(ep.router(&key()).expect("router").state(), State::Backup);
}

fn gone(ep: &mut Endpoint) -> Vec<IpAddr> {
    std::iter::from_fn(|| ep.poll_action())
        .filter_map(|(_, a)| match a {
            EndpointAction::PeerGone { address } => Some(address),
            _ => None,
        })
        .collect()
}

#[test]
fn the_master_followed_is_never_let_go_a_silent_former_one_is() {
    let (mut ep, _) = backup(&[ip("192.0.2.11")]);
    // Following 192.0.2.11, whose steady adverts the datapath keeps to itself.
    ep.expire_bfd_peers(at(60_000));
    assert!(gone(&mut ep).is_empty());

    // Learned only from adverts this time: after the takeover it is a former Master.
    let (mut ep, _) = backup(&[]);
    unreachable(&mut ep, 1035, 1030);
    assert_eq!(ep.router(&key()).expect("router").state(), State::Master);
    // Master_Down_Interval (3 x 1 s + Skew_Time 609.375 ms) + detection 30 ms after
    // its last advert at 1000 ms: still wanted just before, let go just after.
    ep.expire_bfd_peers(at(1000 + 3609 + 30));
    assert!(gone(&mut ep).is_empty());
    ep.expire_bfd_peers(at(1000 + 3610 + 30));
    assert_eq!(gone(&mut ep), [ip("192.0.2.11")]);
    ep.expire_bfd_peers(at(9000));
    assert!(gone(&mut ep).is_empty(), "announced once");
    // Its rank is kept: a higher-priority peer forgotten is still a peer.
    assert!(
        ep.bfd_peers(&key())
            .is_some_and(|t| t.addresses().count() == 1)
    );
}
