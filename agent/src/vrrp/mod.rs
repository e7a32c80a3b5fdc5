//! VRRP protocol core: packet codec and the sans-IO election.
//!
//! - [`endpoint`]: [`endpoint::Endpoint`], every router of the agent behind one seam to
//!   the datapath.
//! - [`packet`]: decode and encode VRRPv2 / VRRPv3 advertisements.
//! - [`router`]: [`VirtualRouter`], one virtual router's election, driven by
//!   [`Input`]s at [`Instant`]s and answering with [`Action`]s.
//! - [`reason`]: why a transition happened, in words.
//! - [`time`]: [`Instant`], CLOCK_MONOTONIC nanoseconds (the kernel's XDP timestamps).
//!
//! Driving one virtual router (what the daemon does, minus the sockets):
//!
//! ```
//! use std::net::IpAddr;
//! use vigil::vrrp::{Action, Advertisement, ChecksumMode, Input, Instant, RouterConfig,
//!                   State, Version, VirtualRouter};
//!
//! let primary: IpAddr = "192.0.2.11".parse().unwrap();
//! let vip: IpAddr = "192.0.2.100".parse().unwrap();
//! let mut router = VirtualRouter::new(RouterConfig::new(51, Version::V3, 100, vec![vip]), primary);
//! router.handle(Instant::from_nanos(1_000_000_000), Input::Startup);
//!
//! // Nobody else speaks: at the deadline poll_timeout gives, the Backup takes over.
//! let deadline = router.poll_timeout().unwrap();
//! router.handle(deadline, Input::Timeout);
//! assert_eq!(router.state(), State::Master);
//! while let Some(action) = router.poll_action() {
//!     match action {
//!         Action::StateChanged(t) => println!("{t}"), // "BACKUP -> MASTER: master down timer expired: ..."
//!         Action::SendAdvert { priority } => {
//!             let bytes = router
//!                 .advertisement(priority)
//!                 .encode(primary, "224.0.0.18".parse().unwrap(), router.config().checksum_mode())
//!                 .unwrap();
//!             assert_eq!(bytes.len(), 12);
//!         }
//!         Action::AddAddresses
//!         | Action::RemoveAddresses
//!         | Action::Announce
//!         | Action::Reannounce => {}
//!     }
//! }
//!
//! // A received packet: decode, then hand in with its (kernel) arrival time.
//! # let packet = Advertisement { version: Version::V3, vrid: 51, priority: 200,
//! #     interval: std::time::Duration::from_secs(1), addresses: vec![vip],
//! #     auth: vigil::vrrp::Auth::None }
//! #     .encode_ipv4_packet("192.0.2.12".parse().unwrap(), "224.0.0.18".parse().unwrap(), 1,
//! #                         ChecksumMode::PseudoHeader).unwrap();
//! let rx = Advertisement::decode_ipv4_packet(&packet, ChecksumMode::PseudoHeader).unwrap();
//! router.handle(deadline + std::time::Duration::from_millis(300),
//!               Input::Advert { source: rx.source.into(), advert: rx.advert });
//! assert_eq!(router.state(), State::Backup); // preempted by 192.0.2.12 priority 200
//! ```

#![warn(missing_docs)]

pub mod endpoint;
pub mod packet;
pub mod reason;
pub mod router;
pub mod sync;
pub mod time;

#[cfg(test)]
mod kernel_model;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod wire;

pub use packet::{Advertisement, Auth, ChecksumMode, DecodeError, EncodeError, Version};
pub use reason::{FaultKind, Reason};
pub use router::{
    Action, ConfigError, Counters, InitialState, Input, ReconfigureError, RouterConfig, State,
    Transition, VirtualRouter,
};
pub use time::Instant;
