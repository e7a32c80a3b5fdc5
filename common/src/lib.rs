//! Types shared by vigil's XDP program and its agent.
//!
//! Everything here is `#[repr(C)]` plain data: the kernel writes these records into maps
//! and the ring buffer, the agent reads them back byte for byte. The feature `user` adds
//! `aya::Pod` so the agent can use them as map keys and values.
#![no_std]

pub mod bfd;
pub mod down;
pub mod event;
pub mod frame;
pub mod maps;
pub mod suppress;
pub mod validate;

pub use down::DownParams;
pub use event::AdvertEvent;
pub use frame::Frame;
pub use maps::{IfaceStats, Settings, VridKey, VridStats};
pub use validate::{Verdict, WatchEntry};

/// IP protocol number of VRRP (RFC 5798 §5.1.1.4).
pub const IPPROTO_VRRP: u8 = 112;

/// Size of the ring buffer between the XDP program and the agent, in bytes.
pub const RING_BYTES: u32 = 256 * 1024;
