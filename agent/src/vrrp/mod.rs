//! VRRP protocol core: packet codec and the sans-IO election.
//!
//! - [`packet`]: decode and encode VRRPv2 / VRRPv3 advertisements.
//! - [`router`]: [`VirtualRouter`], one virtual router's election, driven by
//!   [`Input`]s at [`Instant`]s and answering with [`Action`]s.
//! - [`reason`]: why a transition happened, in words.
//! - [`time`]: [`Instant`], CLOCK_MONOTONIC nanoseconds (the kernel's XDP timestamps).

#![warn(missing_docs)]

pub mod packet;
pub mod reason;
pub mod router;
pub mod time;

#[cfg(test)]
mod sim;

pub use packet::{Advertisement, Auth, ChecksumMode, DecodeError, EncodeError, Version};
pub use reason::{FaultKind, Reason};
pub use router::{
    Action, ConfigError, Counters, InitialState, Input, RouterConfig, State, Transition,
    VirtualRouter,
};
pub use time::Instant;
