//! Kernel-facing actions: addresses, announcements, links.
//!
//! One rtnetlink connection, [`Netlink`], serves both `address` and `link`; each of those
//! modules adds its own `impl Netlink` block, so the address code lives in `address.rs`
//! and the link code in `link.rs`.

pub mod address;
pub mod announce;
pub mod link;
pub mod no_accept;
pub mod route;
pub mod sysctl;
pub mod vmac;

use std::io;

use thiserror::Error;

pub use address::{AddressError, InterfaceAddress, VirtualAddress};
pub use announce::{AnnounceError, AnnounceSchedule, AnnounceTiming, Announcer, run_announcements};
pub use link::{LinkError, LinkEvent, LinkMonitor, LinkState, OperState};
pub use sysctl::{Family, SysctlError, ipv6_forwarding, nonlocal_bind, set_nonlocal_bind};

/// A network interface as the kernel names it: index and name, resolved together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Interface {
    /// Interface index (`ifindex`).
    pub index: u32,
    /// Interface name (`ifname`), for logs and errors.
    pub name: String,
}

impl std::fmt::Display for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Failure to open the rtnetlink socket.
#[derive(Debug, Error)]
#[error("opening rtnetlink socket: {0}")]
pub struct ConnectError(#[from] pub io::Error);

/// A cloneable handle to one rtnetlink connection, for address and link requests.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

impl Netlink {
    /// Opens an rtnetlink connection and spawns its driver on the current tokio runtime.
    ///
    /// Must be called from inside a tokio runtime; the socket belongs to the network
    /// namespace of the calling thread.
    pub fn connect() -> Result<Self, ConnectError> {
        let (connection, handle, _unsolicited) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// The underlying rtnetlink handle, for requests this module does not wrap.
    pub fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }
}

/// Turns an rtnetlink error into an `io::Error`, so a kernel refusal reads as its errno
/// ("File exists (os error 17)") and callers can match on `raw_os_error`.
pub(crate) fn netlink_io(err: rtnetlink::Error) -> io::Error {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other),
    }
}
