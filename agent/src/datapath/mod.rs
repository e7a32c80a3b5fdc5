//! Receive and transmit paths: XDP program, ring buffer, raw sockets.

pub mod bfd;
pub mod event;
pub mod rawsock;
pub mod ring;
pub mod transmit;
pub mod xdp;
