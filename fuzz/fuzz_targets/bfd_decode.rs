//! Feeds arbitrary bytes to the BFD decoders: none may panic, whatever decodes must
//! survive an encode/decode round trip unchanged, and a session must take any decoded
//! packet without panicking.
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
    if let Some(deadline) = session.poll_timeout() {
        let _ = session.handle(deadline, Input::Timeout);
    }
}

fuzz_target!(|data: &[u8]| {
    // The bytes as a UDP payload, and as a whole IP packet.
    check(data);
    if let Ok(datagram) = Datagram::parse(data) {
        let _ = datagram.check_single_hop();
        check(datagram.payload);
    }
});
