//! vigil: a VRRP high-availability agent with an XDP fast path.
//!
//! Data flows one way: wire → XDP (`datapath`) → ring buffer → election (`vrrp`) →
//! actions → kernel (`net`).

pub mod bfd;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod exec;
pub mod keepalived;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod panic;
pub mod procwatch;
pub mod sched;
pub mod timer;
pub mod trace;
pub mod track;
pub mod vrrp;
