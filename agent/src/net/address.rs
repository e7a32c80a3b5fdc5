//! Virtual addresses on an interface, through rtnetlink: add, remove, list, look up.
//!
//! Add and remove are idempotent because the daemon replays them after crashes, reloads
//! and link flaps: the kernel's EEXIST and EADDRNOTAVAIL are answers, not failures, and the
//! `bool` each returns tells the caller whether this call changed the interface (which is
//! how the daemon learns that an address was already there "from elsewhere").

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::AddressMessageBuilder;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use rtnetlink::packet_route::link::LinkAttribute;
use thiserror::Error;

use super::{Interface, Netlink, netlink_io};

/// Longest interface name or IPv4 label the kernel stores (IFNAMSIZ less the NUL).
const IFNAME_MAX: usize = 15;

/// An address vigil manages: address, prefix length and optional IPv4 label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VirtualAddress {
    /// The address itself.
    pub addr: IpAddr,
    /// Prefix length (0..=32 for IPv4, 0..=128 for IPv6).
    pub prefix_len: u8,
    /// IPv4 label such as `eth0:1` (keepalived's `label`); must be `None` for IPv6.
    pub label: Option<String>,
}

impl VirtualAddress {
    /// An address with a prefix length and no label.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Self {
        Self {
            addr,
            prefix_len,
            label: None,
        }
    }

    /// The same address with an IPv4 label.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Checks what the kernel would otherwise reject with a bare EINVAL, so the error can
    /// say why; `ifname` is the interface the address is meant for.
    fn validate(&self, ifname: &str) -> Result<(), &'static str> {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix_len > max {
            return Err("prefix length too long for the address family");
        }
        if let Some(label) = &self.label {
            if self.addr.is_ipv6() {
                return Err("labels apply to IPv4 addresses only");
            }
            if label.len() > IFNAME_MAX {
                return Err("label longer than 15 bytes");
            }
            // iproute2's rule: tools that list aliases (ifconfig, SIOCGIFCONF) assume it.
            let aliased = label
                .strip_prefix(ifname)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'));
            if !aliased {
                return Err("label must be the interface name or start with \"<interface>:\"");
            }
        }
        Ok(())
    }
}

impl fmt::Display for VirtualAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)?;
        if let Some(label) = &self.label {
            write!(f, " label {label}")?;
        }
        Ok(())
    }
}

/// An address found on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    /// The local address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// IPv4 label, if the kernel reported one.
    pub label: Option<String>,
    /// IFA_F_SECONDARY: an IPv4 address inside the subnet of an earlier one.
    pub secondary: bool,
    /// IFA_F_TENTATIVE: IPv6 duplicate address detection has not finished.
    pub tentative: bool,
    /// IFA_F_NODAD: added without duplicate address detection.
    pub nodad: bool,
    /// IFA_F_DADFAILED: duplicate address detection found the address in use.
    pub dad_failed: bool,
    /// IFA_PROTO: who added it ([`VIGIL_ADDRESS_PROTO`] for vigil's virtual addresses).
    pub proto: u8,
}

/// The IFA_PROTO tag vigil puts on every virtual address it adds (112, the VRRP protocol
/// number; `ip addr` shows `proto 0x70`). The kernel keeps this record: an agent that
/// starts after a crash finds its predecessor's addresses by it even when the record
/// file is gone or unreadable, and never mistakes an address someone else added.
pub const VIGIL_ADDRESS_PROTO: u8 = 112;

impl InterfaceAddress {
    fn from_message(msg: &AddressMessage) -> Option<Self> {
        let mut local = None;
        let mut address = None;
        let mut label = None;
        // IFA_FLAGS carries all 32 bits; the header byte is its legacy low half.
        let mut flags = AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits()));
        let mut proto = 0;
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Local(a) => local = Some(*a),
                AddressAttribute::Address(a) => address = Some(*a),
                AddressAttribute::Label(l) => label = Some(l.clone()),
                AddressAttribute::Flags(f) => flags = *f,
                AddressAttribute::Protocol(p) => proto = u8::from(*p),
                _ => {}
            }
        }
        // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours when present.
        let addr = local.or(address)?;
        Some(Self {
            addr,
            prefix_len: msg.header.prefix_len,
            label,
            secondary: flags.contains(AddressFlags::Secondary),
            tentative: flags.contains(AddressFlags::Tentative),
            nodad: flags.contains(AddressFlags::Nodad),
            dad_failed: flags.contains(AddressFlags::Dadfailed),
            proto,
        })
    }
}

/// Address and interface lookup failures, each naming the interface.
#[derive(Debug, Error)]
pub enum AddressError {
    /// The named interface does not exist in this network namespace.
    #[error("interface {0}: no such interface")]
    NoSuchInterface(String),
    /// The interface index does not exist (the interface went away).
    #[error("interface index {0}: no such interface")]
    NoSuchIndex(u32),
    /// The address cannot be put on this interface as written.
    #[error("{addr} on {interface}: {reason}")]
    Invalid {
        /// Interface name.
        interface: String,
        /// The address as configured.
        addr: VirtualAddress,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The kernel refused to add the address.
    #[error("adding {addr} on {interface}: {source}")]
    Add {
        /// Interface name.
        interface: String,
        /// The address as configured.
        addr: VirtualAddress,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The kernel refused to remove the address.
    #[error("removing {addr} from {interface}: {source}")]
    Remove {
        /// Interface name.
        interface: String,
        /// The address as configured.
        addr: VirtualAddress,
        /// The kernel's answer.
        source: io::Error,
    },
    /// Dumping the interface's addresses failed.
    #[error("listing addresses of {interface}: {source}")]
    List {
        /// Interface name.
        interface: String,
        /// The kernel's answer.
        source: io::Error,
    },
    /// Looking up an interface failed for a reason other than its absence.
    #[error("looking up interface {interface}: {source}")]
    Lookup {
        /// Interface name or index.
        interface: String,
        /// The kernel's answer.
        source: io::Error,
    },
}

impl Netlink {
    /// Resolves an interface name to its index (`ip link show dev NAME`).
    pub async fn interface(&self, name: &str) -> Result<Interface, AddressError> {
        if name.is_empty() || name.len() > IFNAME_MAX {
            return Err(AddressError::NoSuchInterface(name.to_owned()));
        }
        let mut links = self.handle.link().get().match_name(name).execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Interface {
                index: msg.header.index,
                name: name.to_owned(),
            }),
            Ok(None) => Err(AddressError::NoSuchInterface(name.to_owned())),
            Err(err) => {
                let err = netlink_io(err);
                if err.raw_os_error() == Some(libc::ENODEV) {
                    Err(AddressError::NoSuchInterface(name.to_owned()))
                } else {
                    Err(AddressError::Lookup {
                        interface: name.to_owned(),
                        source: err,
                    })
                }
            }
        }
    }

    /// Resolves an interface index to its current name.
    pub async fn interface_by_index(&self, index: u32) -> Result<Interface, AddressError> {
        let mut links = self.handle.link().get().match_index(index).execute();
        let msg = match links.try_next().await {
            Ok(Some(msg)) => msg,
            Ok(None) => return Err(AddressError::NoSuchIndex(index)),
            Err(err) => {
                let err = netlink_io(err);
                if err.raw_os_error() == Some(libc::ENODEV) {
                    return Err(AddressError::NoSuchIndex(index));
                }
                return Err(AddressError::Lookup {
                    interface: format!("index {index}"),
                    source: err,
                });
            }
        };
        let name = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        match name {
            Some(name) => Ok(Interface { index, name }),
            None => Err(AddressError::NoSuchIndex(index)),
        }
    }

    /// Adds `addr` to `iface`; `Ok(true)` if added, `Ok(false)` if it was already there.
    ///
    /// IPv6 addresses are added with IFA_F_NODAD so they are usable at once: a VIP that
    /// sat tentative for a second after failover would blackhole traffic.
    pub async fn add_address(
        &self,
        iface: &Interface,
        addr: &VirtualAddress,
    ) -> Result<bool, AddressError> {
        addr.validate(&iface.name)
            .map_err(|reason| AddressError::Invalid {
                interface: iface.name.clone(),
                addr: addr.clone(),
                reason,
            })?;
        let mut request = self
            .handle
            .address()
            .add(iface.index, addr.addr, addr.prefix_len);
        let msg = request.message_mut();
        if let Some(label) = &addr.label {
            msg.attributes.push(AddressAttribute::Label(label.clone()));
        }
        msg.attributes
            .push(AddressAttribute::Protocol(VIGIL_ADDRESS_PROTO.into()));
        if addr.addr.is_ipv6() {
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await.map_err(netlink_io) {
            Ok(()) => Ok(true),
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(err) if err.raw_os_error() == Some(libc::ENODEV) => {
                Err(AddressError::NoSuchInterface(iface.name.clone()))
            }
            Err(source) => Err(AddressError::Add {
                interface: iface.name.clone(),
                addr: addr.clone(),
                source,
            }),
        }
    }

    /// Removes `addr` (matched by address and prefix length) from `iface`; `Ok(true)` if
    /// removed, `Ok(false)` if it was not there.
    pub async fn remove_address(
        &self,
        iface: &Interface,
        addr: &VirtualAddress,
    ) -> Result<bool, AddressError> {
        let message = match addr.addr {
            IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(iface.index)
                .address(a, addr.prefix_len)
                .build(),
            IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(iface.index)
                .address(a, addr.prefix_len)
                .build(),
        };
        match self
            .handle
            .address()
            .del(message)
            .execute()
            .await
            .map_err(netlink_io)
        {
            Ok(()) => Ok(true),
            Err(err) if err.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(false),
            Err(err) if err.raw_os_error() == Some(libc::ENODEV) => {
                Err(AddressError::NoSuchInterface(iface.name.clone()))
            }
            Err(source) => Err(AddressError::Remove {
                interface: iface.name.clone(),
                addr: addr.clone(),
                source,
            }),
        }
    }

    /// Lists the addresses of `iface`, both families, in the kernel's order.
    pub async fn addresses(
        &self,
        iface: &Interface,
    ) -> Result<Vec<InterfaceAddress>, AddressError> {
        let messages: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(iface.index)
            .execute()
            .try_collect()
            .await
            .map_err(|err| AddressError::List {
                interface: iface.name.clone(),
                source: netlink_io(err),
            })?;
        Ok(messages
            .iter()
            .filter_map(InterfaceAddress::from_message)
            .collect())
    }

    /// Whether `addr` is on `iface`, with any prefix length or label.
    pub async fn has_address(&self, iface: &Interface, addr: IpAddr) -> Result<bool, AddressError> {
        Ok(self.addresses(iface).await?.iter().any(|a| a.addr == addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str, len: u8) -> VirtualAddress {
        VirtualAddress::new(s.parse().expect("test literal is an address"), len)
    }

    #[test]
    fn label_rules_follow_iproute2() {
        assert!(
            v4("192.0.2.10", 24)
                .with_label("eth0:1")
                .validate("eth0")
                .is_ok()
        );
        assert!(
            v4("192.0.2.10", 24)
                .with_label("eth0")
                .validate("eth0")
                .is_ok()
        );
        assert!(
            v4("192.0.2.10", 24)
                .with_label("eth1:1")
                .validate("eth0")
                .is_err()
        );
        assert!(
            v4("192.0.2.10", 24)
                .with_label("eth00")
                .validate("eth0")
                .is_err()
        );
        assert!(
            v4("192.0.2.10", 24)
                .with_label("eth0:123456789012")
                .validate("eth0")
                .is_err()
        );
    }

    #[test]
    fn prefix_and_family_rules() {
        assert!(v4("192.0.2.10", 33).validate("eth0").is_err());
        let v6 = VirtualAddress::new("2001:db8::1".parse().expect("literal"), 64);
        assert!(v6.validate("eth0").is_ok());
        assert!(v6.clone().with_label("eth0:1").validate("eth0").is_err());
        assert!(
            VirtualAddress::new("2001:db8::1".parse().expect("literal"), 129)
                .validate("eth0")
                .is_err()
        );
    }

    #[test]
    fn display_reads_like_the_config() {
        assert_eq!(
            v4("192.0.2.10", 24).with_label("eth0:1").to_string(),
            "192.0.2.10/24 label eth0:1"
        );
    }
}
