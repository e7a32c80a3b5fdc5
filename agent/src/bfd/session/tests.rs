use std::time::Duration;

use super::testing::{Link, T0};
use super::*;
use crate::bfd::datagram::Datagram;
use crate::bfd::packet::AuthSection;

const MS: Duration = Duration::from_millis(1);

fn fast(discr: u32) -> SessionConfig {
    SessionConfig::new(discr, 10 * MS, 3)
}

#[test]
fn two_sessions_come_up_and_settle_at_the_agreed_rate() {
    let mut link = Link::new(fast(1), fast(2));
    link.run_until(T0 + Duration::from_secs(3));
    assert_eq!(link.a.state(), State::Up);
    assert_eq!(link.b.state(), State::Up);
    assert_eq!(link.a.remote_discriminator(), 2);
    assert_eq!(link.b.remote_discriminator(), 1);
    assert_eq!(link.a.detection_time(), Some(30 * MS));
    assert_eq!(link.a.transmit_interval(), Some(10 * MS));
    assert_eq!(link.discards, []);
    // Both Poll Sequences (slow to fast) were answered.
    assert!(!link.a.polling() && !link.b.polling());
    // Each side went Down -> Init -> Up or Down -> Up, nothing else.
    for (from_a, t) in &link.transitions {
        assert!(t.to != State::Down, "{from_a} {t}");
    }
    let up_at = link.transitions.iter().map(|t| t.1.at).max().unwrap();
    assert!(up_at < T0 + Duration::from_millis(1100), "{up_at:?}");
}

#[test]
fn slow_rate_while_not_up() {
    // A lone session: nobody answers, so it stays Down and sends at 1 s less jitter.
    let mut link = Link::new(fast(1), fast(2));
    link.b_to_a = false;
    link.run_until(T0 + Duration::from_secs(10));
    assert_eq!(link.a.state(), State::Down);
    let sent = link.sent_by(true, T0);
    assert!(sent.len() >= 9 && sent.len() <= 14, "{}", sent.len());
    for pair in sent.windows(2) {
        let gap = pair[1].0.saturating_duration_since(pair[0].0);
        assert!(gap >= 750 * MS && gap <= Duration::from_secs(1), "{gap:?}");
    }
    for (_, p) in &sent {
        assert_eq!(p.desired_min_tx(), Duration::from_secs(1));
        assert_eq!(p.required_min_rx(), 10 * MS);
    }
}

#[test]
fn transmit_jitter_is_up_to_a_quarter_and_never_the_same_gap() {
    let mut link = Link::new(fast(1), fast(2));
    link.run_until(T0 + Duration::from_secs(2));
    let start = link.now;
    link.run_until(start + Duration::from_secs(2));
    let gaps: Vec<Duration> = link
        .sent_by(true, start)
        .windows(2)
        .map(|w| w[1].0.saturating_duration_since(w[0].0))
        .collect();
    assert!(gaps.len() > 150, "{}", gaps.len());
    for gap in &gaps {
        assert!(
            *gap >= Duration::from_micros(7500) && *gap <= 10 * MS,
            "{gap:?}"
        );
    }
    let min = gaps.iter().min().unwrap();
    let max = gaps.iter().max().unwrap();
    assert!(*max - *min > 2 * MS, "jitter spread {min:?}..{max:?}");

    // Detect multiplier 1: 10-25 % shorter.
    let mut one = fast(3);
    one.detect_mult = 1;
    let mut link = Link::new(one, fast(4));
    link.run_until(T0 + Duration::from_secs(2));
    let start = link.now;
    link.run_until(start + Duration::from_secs(1));
    for w in link.sent_by(true, start).windows(2) {
        let gap = w[1].0.saturating_duration_since(w[0].0);
        assert!(gap >= Duration::from_micros(7500) && gap <= Duration::from_micros(9000));
    }
}

#[test]
fn silence_is_detected_at_exactly_the_detection_time() {
    let mut link = Link::new(fast(1), fast(2));
    link.run_until(T0 + Duration::from_secs(2));
    link.b_to_a = false;
    let cut = link.now;
    let last_rx = link.a.last_received().unwrap();
    link.run_until(cut + Duration::from_millis(100));
    assert_eq!(link.a.state(), State::Down);
    let down = link.a.last_down().expect("went down");
    assert_eq!(down.diag, Diagnostic::ControlDetectionTimeExpired);
    // The transition is stamped at the deadline, not whenever it was handled.
    assert_eq!(down.at, last_rx + 30 * MS);
    assert_eq!(link.a.remote_discriminator(), 0);
    // What A sends now: Down, the diagnostic, your discriminator 0, the slow rate.
    let (_, after) = *link.sent_by(true, down.at).last().unwrap();
    assert_eq!(after.state, State::Down);
    assert_eq!(after.diag, Diagnostic::ControlDetectionTimeExpired);
    assert_eq!(after.your_discriminator, 0);
    assert_eq!(after.desired_min_tx(), Duration::from_secs(1));
    // B hears A's Down and follows with "neighbor signaled session down".
    assert_eq!(link.b.state(), State::Down);
    assert_eq!(
        link.b.last_down().unwrap().diag,
        Diagnostic::NeighborSignaledSessionDown
    );
    assert_eq!(link.a.counters().downs, 1);

    // Heal: they come back Up.
    link.b_to_a = true;
    link.run_until(link.now + Duration::from_secs(4));
    assert_eq!((link.a.state(), link.b.state()), (State::Up, State::Up));
}

#[test]
fn detection_time_is_remote_multiplier_times_the_slower_of_the_two() {
    let mut a = fast(1);
    a.required_min_rx = 10 * MS;
    let mut b = SessionConfig::new(2, 20 * MS, 5);
    b.required_min_rx = 40 * MS;
    let mut link = Link::new(a, b);
    link.run_until(T0 + Duration::from_secs(3));
    assert_eq!((link.a.state(), link.b.state()), (State::Up, State::Up));
    // A: B's multiplier 5 x max(A's rx 10, B's tx 20).
    assert_eq!(link.a.detection_time(), Some(100 * MS));
    // B: A's multiplier 3 x max(B's rx 40, A's tx 10).
    assert_eq!(link.b.detection_time(), Some(120 * MS));
    // A sends no faster than B asks for.
    assert_eq!(link.a.transmit_interval(), Some(40 * MS));
}

#[test]
fn admin_down_tells_the_remote_then_goes_quiet() {
    let mut link = Link::new(fast(1), fast(2));
    link.run_until(T0 + Duration::from_secs(2));
    let at = link.now;
    link.a.handle(at, Input::AdminDown).unwrap();
    link.run_until(at + Duration::from_secs(1));
    assert_eq!(link.a.state(), State::AdminDown);
    assert!(link.discards.iter().all(|d| *d == Discard::AdminDown));
    assert_eq!(link.b.state(), State::Down);
    assert_eq!(
        link.b.last_down().unwrap().diag,
        Diagnostic::NeighborSignaledSessionDown
    );
    let told: Vec<_> = link.sent_by(true, at);
    assert!(!told.is_empty());
    assert!(told.iter().all(|(_, p)| p.state == State::AdminDown
        && p.diag == Diagnostic::AdministrativelyDown));
    // Silent after one detection time of the remote (3 x 10 ms, with jitter).
    assert!(told.last().unwrap().0 <= at + 30 * MS);
    // And back.
    let again = link.now;
    link.a.handle(again, Input::Start).unwrap();
    link.run_until(again + Duration::from_secs(3));
    assert_eq!((link.a.state(), link.b.state()), (State::Up, State::Up));
}

/// Runs a session to Up against a scripted remote; returns it and the time.
fn up_against_script() -> (Session, Instant) {
    let mut s = Session::new(fast(7));
    s.handle(T0, Input::Start).unwrap();
    let mut remote = ControlPacket {
        diag: Diagnostic::None,
        state: State::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 99,
        your_discriminator: 0,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 10_000,
        required_min_echo_rx_us: 0,
        auth: None,
    };
    s.handle(T0 + MS, Input::Packet(remote)).unwrap();
    assert_eq!(s.state(), State::Init);
    remote.state = State::Up;
    remote.your_discriminator = 7;
    remote.desired_min_tx_us = 10_000;
    s.handle(T0 + 2 * MS, Input::Packet(remote)).unwrap();
    assert_eq!(s.state(), State::Up);
    (s, T0 + 2 * MS)
}

#[test]
fn a_poll_is_answered_at_once_with_a_final_and_our_poll_ends_with_theirs() {
    let (mut s, now) = up_against_script();
    while s.poll_action().is_some() {}
    // Going Up changed our Desired Min TX (1 s to 10 ms): we poll.
    assert!(s.polling());
    assert!(s.packet().poll);
    let mut remote = ControlPacket {
        poll: true,
        ..s.packet()
    };
    remote.my_discriminator = 99;
    remote.your_discriminator = 7;
    s.handle(now + MS, Input::Packet(remote)).unwrap();
    let reply = match s.poll_action() {
        Some(Action::Send(p)) => p,
        other => panic!("expected an immediate Final, got {other:?}"),
    };
    assert!(reply.final_ && !reply.poll);
    // Their Final ends our Poll Sequence.
    remote.poll = false;
    remote.final_ = true;
    s.handle(now + 2 * MS, Input::Packet(remote)).unwrap();
    assert!(!s.polling());
    assert!(!s.packet().poll);
}

#[test]
fn a_slower_transmit_waits_for_the_final() {
    let (mut s, now) = up_against_script();
    let remote = ControlPacket {
        final_: true,
        my_discriminator: 99,
        your_discriminator: 7,
        ..s.packet()
    };
    s.handle(now + MS, Input::Packet(remote)).unwrap();
    assert!(!s.polling());
    assert_eq!(s.transmit_interval(), Some(10 * MS));
    s.handle(
        now + 2 * MS,
        Input::Reconfigure {
            desired_min_tx: 50 * MS,
            required_min_rx: 5 * MS,
            detect_mult: 3,
        },
    )
    .unwrap();
    // Announced at once, used only once the remote confirms (§6.8.3).
    assert!(s.polling());
    assert_eq!(s.packet().desired_min_tx(), 50 * MS);
    assert_eq!(s.transmit_interval(), Some(10 * MS));
    assert_eq!(s.detection_time(), Some(30 * MS));
    s.handle(now + 3 * MS, Input::Packet(remote)).unwrap();
    assert!(!s.polling());
    assert_eq!(s.transmit_interval(), Some(50 * MS));
    // Our receive got faster: detection is 3 x max(5 ms, remote's 10 ms).
    assert_eq!(s.detection_time(), Some(30 * MS));
}

#[test]
fn discards_what_the_session_must_not_accept() {
    let (mut s, now) = up_against_script();
    let good = ControlPacket {
        my_discriminator: 99,
        your_discriminator: 7,
        ..s.packet()
    };
    let with_auth = ControlPacket {
        auth: AuthSection::new(1, b"\x01pw"),
        ..good
    };
    assert_eq!(
        s.handle(now, Input::Packet(with_auth)),
        Err(Discard::Authentication)
    );
    let other = ControlPacket {
        your_discriminator: 8,
        ..good
    };
    assert_eq!(
        s.handle(now, Input::Packet(other)),
        Err(Discard::YourDiscriminator(8))
    );
    let zero_up = ControlPacket {
        your_discriminator: 0,
        ..good
    };
    assert_eq!(
        s.handle(now, Input::Packet(zero_up)),
        Err(Discard::ZeroYourDiscriminator(State::Up))
    );
    assert_eq!(s.counters().discarded, 3);
    assert_eq!(s.state(), State::Up);
}

#[test]
fn a_late_packet_does_not_pull_detection_back() {
    let (mut s, now) = up_against_script();
    let good = ControlPacket {
        my_discriminator: 99,
        your_discriminator: 7,
        ..s.packet()
    };
    s.handle(now + 20 * MS, Input::Packet(good)).unwrap();
    let deadline = s.poll_timeout();
    s.handle(now + 5 * MS, Input::Packet(good)).unwrap();
    assert_eq!(s.last_received(), Some(now + 20 * MS));
    assert!(s.poll_timeout() >= deadline);
}

#[test]
fn no_periodic_packets_when_the_remote_wants_none() {
    let mut s = Session::new(fast(7));
    s.handle(T0, Input::Start).unwrap();
    s.handle(T0, Input::Timeout).unwrap();
    let remote = ControlPacket {
        required_min_rx_us: 0,
        my_discriminator: 99,
        your_discriminator: 0,
        ..s.packet()
    };
    s.handle(T0 + MS, Input::Packet(remote)).unwrap();
    while s.poll_action().is_some() {}
    s.handle(T0 + Duration::from_secs(5), Input::Timeout)
        .unwrap();
    assert!(
        !std::iter::from_fn(|| s.poll_action()).any(|a| matches!(a, Action::Send(_))),
        "sent although the remote's Required Min RX is 0"
    );
}

fn frr(bytes: &[u8]) -> ControlPacket {
    ControlPacket::decode(Datagram::parse(bytes).unwrap().payload).unwrap()
}

#[test]
fn frr_handshake_brings_a_session_up() {
    // Our session plays 192.0.2.12 of the capture, whose discriminator FRR shared.
    let mut s = Session::new(SessionConfig::new(0x86f7_0465, 50 * MS, 3));
    s.handle(T0, Input::Start).unwrap();
    s.handle(
        T0,
        Input::Packet(frr(include_bytes!("../fixtures/ipv4_down.bin"))),
    )
    .unwrap();
    assert_eq!(s.state(), State::Init);
    // FRR's Up with Poll: we go Up and answer with a Final at once.
    s.handle(
        T0 + MS,
        Input::Packet(frr(include_bytes!("../fixtures/ipv4_up_poll.bin"))),
    )
    .unwrap();
    assert_eq!(s.state(), State::Up);
    let finals: Vec<_> = std::iter::from_fn(|| s.poll_action())
        .filter_map(|a| match a {
            Action::Send(p) if p.final_ => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].your_discriminator, 0x86f7_0465);
    assert_eq!(s.detection_time(), Some(150 * MS));
    // FRR's AdminDown: Down, neighbor signaled.
    s.handle(
        T0 + 2 * MS,
        Input::Packet(frr(include_bytes!("../fixtures/ipv4_admin_down.bin"))),
    )
    .unwrap();
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.diagnostic(), Diagnostic::NeighborSignaledSessionDown);
}

/// With the kernel keeping the detection time, the session sets no deadline of its own;
/// the kernel's expiry report still goes through the session's judgement.
#[test]
fn external_detection_waits_for_the_datapath_and_still_judges() {
    let (mut s, up_at) = up_against_script();
    while s.poll_action().is_some() {}
    assert_eq!(s.detection_time(), Some(30 * MS));
    let own = s.poll_timeout().expect("a deadline");
    assert!(s.own_detection());
    s.set_external_detection(true);
    assert!(!s.own_detection());
    let without = s.poll_timeout();
    assert!(
        without.is_none_or(|t| t != up_at + 30 * MS),
        "the detection deadline is left out: {own:?} vs {without:?}"
    );
    // Transmit timeouts past the deadline do not judge the detection time.
    s.handle(up_at + 35 * MS, Input::Timeout).unwrap();
    assert_eq!(s.state(), State::Up);
    // Steady packets the kernel kept: the newest came 25 ms later.
    s.handle(
        up_at + 40 * MS,
        Input::Heard {
            last_rx: up_at + 25 * MS,
        },
    )
    .unwrap();
    assert_eq!(s.last_received(), Some(up_at + 25 * MS));
    // An older arrival moves nothing.
    s.handle(
        up_at + 40 * MS,
        Input::Heard {
            last_rx: up_at + 5 * MS,
        },
    )
    .unwrap();
    assert_eq!(s.last_received(), Some(up_at + 25 * MS));

    // A kernel report whose deadline the session does not share (its detection time
    // runs from a newer packet) does not bring it down, but arms its own deadline.
    s.handle(
        up_at + 50 * MS,
        Input::DetectionExpired {
            last_rx: up_at + 25 * MS,
        },
    )
    .unwrap();
    assert_eq!(s.state(), State::Up);
    assert!(s.poll_timeout().is_some_and(|t| t <= up_at + 55 * MS));
    assert!(
        s.own_detection(),
        "until the next packet, the session's deadline counts"
    );

    // The real one: silent for the detection time since the newest packet.
    s.handle(
        up_at + 60 * MS,
        Input::DetectionExpired {
            last_rx: up_at + 30 * MS,
        },
    )
    .unwrap();
    assert_eq!(s.state(), State::Down);
    let down = s.last_down().expect("went down");
    assert_eq!(down.diag, Diagnostic::ControlDetectionTimeExpired);
    assert_eq!(down.at, up_at + 60 * MS);
}

/// Without external detection, `Heard` moves the session's own deadline.
#[test]
fn heard_moves_the_agents_own_deadline() {
    let (mut s, up_at) = up_against_script();
    while s.poll_action().is_some() {}
    s.handle(
        up_at + 20 * MS,
        Input::Heard {
            last_rx: up_at + 20 * MS,
        },
    )
    .unwrap();
    s.handle(up_at + 35 * MS, Input::Timeout).unwrap();
    assert_eq!(s.state(), State::Up, "the deadline moved to 50 ms");
    s.handle(up_at + 50 * MS, Input::Timeout).unwrap();
    assert_eq!(s.state(), State::Down);
}

/// A detection timer that wakes late (this host stalled) listens one more detection
/// time from the wake-up before the session goes down; a packet meanwhile keeps it Up.
#[test]
fn a_late_wake_up_listens_once_more_before_going_down() {
    let (mut s, last) = up_against_script();
    while s.poll_action().is_some() {}
    // 5 ms past the 30 ms deadline: late.
    s.handle(last + 35 * MS, Input::Timeout).unwrap();
    assert_eq!(s.state(), State::Up);
    // Still silent a detection time after the wake-up: down, dated from the last packet.
    while s.poll_timeout().is_some_and(|t| t < last + 65 * MS) {
        let t = s.poll_timeout().unwrap();
        s.handle(t, Input::Timeout).unwrap();
        assert_eq!(s.state(), State::Up, "at {t:?}");
    }
    s.handle(last + 66 * MS, Input::Timeout).unwrap();
    assert_eq!(s.state(), State::Down);
    let down = s.last_down().expect("went down");
    assert_eq!(down.diag, Diagnostic::ControlDetectionTimeExpired);
    assert_eq!(down.at, last + 30 * MS);
}

/// On time (within the lateness allowed), the session goes down at once, and a second
/// late wake-up in one silence does not listen again.
#[test]
fn on_time_or_late_twice_the_session_goes_down() {
    let (mut s, last) = up_against_script();
    while s.poll_action().is_some() {}
    s.handle(last + 30 * MS + MS / 2, Input::Timeout).unwrap();
    assert_eq!(s.state(), State::Down);

    let (mut s, last) = up_against_script();
    while s.poll_action().is_some() {}
    s.handle(last + 40 * MS, Input::Timeout).unwrap();
    assert_eq!(s.state(), State::Up);
    s.handle(last + 80 * MS, Input::Timeout).unwrap();
    assert_eq!(s.state(), State::Down);
}

/// The datapath's expiry report is judged on its deadline, however late the agent
/// hears of it: the kernel's timer did the listening.
#[test]
fn a_late_report_of_the_datapaths_expiry_is_not_listened_past() {
    let (mut s, last) = up_against_script();
    while s.poll_action().is_some() {}
    s.set_external_detection(true);
    s.handle(last + 90 * MS, Input::DetectionExpired { last_rx: last })
        .unwrap();
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.last_down().unwrap().at, last + 30 * MS);
}

/// Both ends on one host that stalls for longer than the detection time (the bench's
/// lab: two namespaces of one virtual machine): when it runs again, both timers are
/// late and both peers speak at once; no session goes down.
#[test]
fn a_stall_of_the_host_running_both_ends_takes_no_session_down() {
    let mut link = Link::new(fast(1), fast(2));
    link.run_until(T0 + Duration::from_secs(2));
    assert_eq!((link.a.state(), link.b.state()), (State::Up, State::Up));
    for stall in [32, 45, 60, 90] {
        let from = link.now;
        link.stall(from + stall * MS);
        link.run_until(link.now + Duration::from_millis(500));
        assert_eq!(
            (link.a.state(), link.b.state(), link.downs()),
            (State::Up, State::Up, 0),
            "after a {stall} ms stall"
        );
    }
}

/// A peer that died during a stall is still found: one detection time after the host
/// runs again.
#[test]
fn a_peer_that_died_during_a_stall_is_down_a_detection_time_after_it() {
    let mut link = Link::new(fast(1), fast(2));
    link.run_until(T0 + Duration::from_secs(2));
    let from = link.now;
    let last = link.b.last_received().unwrap();
    link.a_to_b = false;
    let resumed = from + 50 * MS;
    link.stall(resumed);
    link.run_until(resumed + 29 * MS);
    assert_eq!(link.b.state(), State::Up);
    link.run_until(resumed + 31 * MS);
    assert_eq!(link.b.state(), State::Down);
    let down = link.b.last_down().unwrap();
    assert_eq!(down.diag, Diagnostic::ControlDetectionTimeExpired);
    assert_eq!(down.at, last + 30 * MS);
}
