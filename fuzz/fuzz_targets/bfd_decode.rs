//! Feeds arbitrary bytes to the BFD decoders: none may panic, whatever decodes must
//! survive an encode/decode round trip unchanged, and a session must take any decoded
//! packet, and the timeouts after it, on time or late, without panicking. The same bytes as an Ethernet frame go through the XDP
//! program's checks, which may never accept what the agent's decoder refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::bfd::{ControlPacket, Datagram, Input, Session, SessionConfig};
use vigil::vrrp::Instant;

fn check(bytes: &[u8]) {
    let Ok(packet) = ControlPacket::decode(bytes) else {
        return;
    };
    let wire = packet.encode();
    assert_eq!(ControlPacket::decode(&wire), Ok(packet));
    let mut session = Session::new(SessionConfig::new(
        packet.your_discriminator.max(1),
        std::time::Duration::from_millis(10),
        3,
    ));
    let now = Instant::from_nanos(1_000_000_000);
    let _ = session.handle(now, Input::Start);
    let _ = session.handle(now, Input::Packet(packet));
    let _ = session.handle(now, Input::Timeout);
    while session.poll_action().is_some() {}
    // A host that stalls: the same session woken late, twice (it listens once more,
    // then judges), whatever timers the packet asked for.
    let mut stalled = session.clone();
    if let Some(deadline) = stalled.poll_timeout() {
        let late = deadline + std::time::Duration::from_millis(u64::from(bytes[0]) + 1);
        let _ = stalled.handle(late, Input::Timeout);
        if let Some(next) = stalled.poll_timeout() {
            let _ = stalled.handle(next.max(late), Input::Timeout);
        }
    }
    if let Some(deadline) = session.poll_timeout() {
        let _ = session.handle(deadline, Input::Timeout);
    }
    // The kernel's reports: newer arrivals, then its detection timeout.
    session.set_external_detection(true);
    let later = Instant::from_nanos(1_005_000_000);
    let _ = session.handle(later, Input::Heard { last_rx: later });
    let _ = session.handle(later, Input::DetectionExpired { last_rx: now });
}

/// The bytes as a frame, judged as the XDP program judges it.
fn kernel(bytes: &[u8]) {
    let mut f = vigil_common::bfd::BfdFrame::default();
    if !vigil_common::bfd::parse(bytes, &mut f) {
        return;
    }
    if let Ok(true) = vigil_common::bfd::check(&f) {
        // Accepted for the kernel with a Length of exactly the mandatory section: the
        // agent's decoder must take the same header.
        if f.length() == 24 {
            assert!(ControlPacket::decode(&f.header).is_ok(), "{f:?}");
        }
        let mut s = vigil_common::bfd::BfdState::default();
        let _ = vigil_common::bfd::must_report(&s, &f, 0);
        vigil_common::bfd::record(&mut s, &f, 1, 0, false, false);
        assert!(!vigil_common::bfd::must_report(&s, &f, 0) || f.poll() || f.final_());
    }
}

fuzz_target!(|data: &[u8]| {
    // The bytes as a UDP payload, and as a whole IP packet.
    check(data);
    kernel(data);
    if let Ok(datagram) = Datagram::parse(data) {
        let _ = datagram.check_single_hop();
        check(datagram.payload);
    }
});
