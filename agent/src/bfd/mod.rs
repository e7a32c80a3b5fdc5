//! BFD (RFC 5880 asynchronous mode, RFC 5881 single hop), sans-IO like the VRRP core.
//!
//! - [`packet`]: decode and encode Control packets, with the checks of RFC 5880 §6.8.6 that
//!   need no session.
//! - [`datagram`]: the IP/UDP layers around them and RFC 5881's TTL 255 rule, for paths
//!   that see whole packets.
//! - [`session`]: [`Session`], one session's state machine, driven by [`Input`]s at
//!   [`Instant`](crate::vrrp::Instant)s and answering with [`Action`]s.
//!
//! Two sessions talking to each other, with time as an argument:
//!
//! ```
//! use std::time::Duration;
//! use vigil::bfd::{Action, ControlPacket, Input, Session, SessionConfig, State};
//! use vigil::vrrp::Instant;
//!
//! /// Runs `from`'s timers at `now` and delivers what it sends to `to` at once.
//! fn exchange(from: &mut Session, to: &mut Session, now: Instant) {
//!     from.handle(now, Input::Timeout).unwrap();
//!     while let Some(action) = from.poll_action() {
//!         if let Action::Send(packet) = action {
//!             let wire = packet.encode();
//!             let rx = ControlPacket::decode(&wire).unwrap();
//!             to.handle(now, Input::Packet(rx)).unwrap();
//!         }
//!     }
//! }
//!
//! let ms = Duration::from_millis(10);
//! let mut a = Session::new(SessionConfig::new(1, ms, 3));
//! let mut b = Session::new(SessionConfig::new(2, ms, 3));
//! let mut now = Instant::from_nanos(1_000_000_000);
//! a.handle(now, Input::Start).unwrap();
//! b.handle(now, Input::Start).unwrap();
//! for _ in 0..100 {
//!     exchange(&mut a, &mut b, now);
//!     exchange(&mut b, &mut a, now);
//!     now = a.poll_timeout().min(b.poll_timeout()).unwrap();
//! }
//! assert_eq!((a.state(), b.state()), (State::Up, State::Up));
//! assert_eq!(a.detection_time(), Some(ms * 3));
//! ```

#![warn(missing_docs)]

pub mod datagram;
pub mod packet;
pub mod peers;
pub mod session;

pub use datagram::{Datagram, DatagramError};
pub use packet::{ControlPacket, DecodeError, Diagnostic, State};
pub use peers::PeerTable;
pub use session::{Action, Discard, Input, Session, SessionConfig, Transition};
