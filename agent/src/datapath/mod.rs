//! Receive and transmit paths: XDP program, ring buffer, raw sockets.
pub mod transmit;
