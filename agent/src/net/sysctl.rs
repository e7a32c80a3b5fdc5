//! `net.ipv4.ip_nonlocal_bind` and `net.ipv6.ip_nonlocal_bind`: let services bind a VIP
//! this node does not hold yet (`[global] nonlocal_bind`; a load balancer's nginx
//! listening on the VIP on both nodes needs it).
//!
//! Both are per network namespace: /proc/sys/net resolves against the namespace of the
//! thread that opens the file.

use std::fs;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl Family {
    fn nonlocal_bind_path(self) -> PathBuf {
        PathBuf::from(match self {
            Family::Ipv4 => "/proc/sys/net/ipv4/ip_nonlocal_bind",
            Family::Ipv6 => "/proc/sys/net/ipv6/ip_nonlocal_bind",
        })
    }
}

/// A sysctl could not be read, parsed or written.
#[derive(Debug, Error)]
pub enum SysctlError {
    /// Reading or writing the /proc/sys file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The file did not hold an integer.
    #[error("{path}: unexpected contents {contents:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held.
        contents: String,
    },
}

/// The current `ip_nonlocal_bind` of `family` in this thread's network namespace.
pub fn nonlocal_bind(family: Family) -> Result<bool, SysctlError> {
    read_flag(family.nonlocal_bind_path())
}

/// Sets `ip_nonlocal_bind` of `family` and returns the previous value, so the caller can
/// put it back on exit.
pub fn set_nonlocal_bind(family: Family, on: bool) -> Result<bool, SysctlError> {
    let path = family.nonlocal_bind_path();
    let previous = read_flag(path.clone())?;
    if previous != on {
        fs::write(&path, if on { "1\n" } else { "0\n" })
            .map_err(|source| SysctlError::Io { path, source })?;
    }
    Ok(previous)
}

fn read_flag(path: PathBuf) -> Result<bool, SysctlError> {
    let contents = match fs::read_to_string(&path) {
        Ok(c) => c,
        Err(source) => return Err(SysctlError::Io { path, source }),
    };
    match contents.trim().parse::<i64>() {
        Ok(n) => Ok(n != 0),
        Err(_) => Err(SysctlError::Parse { path, contents }),
    }
}

/// Whether `ifname` forwards IPv6 (`net.ipv6.conf.<ifname>.forwarding`): the NA router
/// flag should say so.
pub fn ipv6_forwarding(ifname: &str) -> Result<bool, SysctlError> {
    let path = PathBuf::from(format!("/proc/sys/net/ipv6/conf/{ifname}/forwarding"));
    if ifname.is_empty() || ifname.contains('/') || ifname == "." || ifname == ".." {
        return Err(SysctlError::Io {
            path,
            source: io::Error::from_raw_os_error(libc::ENODEV),
        });
    }
    read_flag(path)
}
