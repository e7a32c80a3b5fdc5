//! Virtual MAC interfaces (`use_vmac`): a macvlan on the instance's interface carrying
//! the virtual router MAC of RFC 5798 §7.3, 00:00:5e:00:01:VRID, so hosts and switches
//! see one MAC for the virtual addresses whichever node is Master.
//!
//! The macvlan is in private mode and answers ARP only for its own addresses
//! (arp_ignore 1), and so does its parent, which also asks with its own address
//! (arp_announce 2), so no host learns a virtual address with the parent's MAC. A
//! Backup's macvlan must send nothing, or switches would learn the virtual MAC on the
//! Backup's port: IPv6 is off on it for an IPv4 instance, and for an IPv6 one it gets no
//! link-local address: its Master's adverts are framed by vigil with the virtual MAC
//! and the parent's link-local address (see `datapath::transmit`).

use std::io;

use netlink_packet_route::link::{LinkAttribute, MacVlanMode};
use rtnetlink::LinkMacVlan;

use super::{Interface, Netlink, netlink_io};

/// The virtual router MAC for an IPv4 VRID (RFC 5798 §7.3).
pub fn ipv4_mac(vrid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x01, vrid]
}

/// The virtual router MAC for an IPv6 VRID (RFC 5798 §7.3).
pub fn ipv6_mac(vrid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x02, vrid]
}

/// The default name of an instance's virtual MAC interface (keepalived's).
pub fn default_name(vrid: u8) -> String {
    format!("vrrp.{vrid}")
}

fn write_sysctl(path: &str, value: &str) -> io::Result<()> {
    std::fs::write(path, value).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

impl Netlink {
    /// Creates (or takes over, if one with the same MAC is already there) the macvlan
    /// `name` on `parent` with `mac`, up, with the ARP settings above.
    pub async fn ensure_vmac(
        &self,
        name: &str,
        parent: &Interface,
        mac: [u8; 6],
        ipv6: bool,
    ) -> io::Result<Interface> {
        if let Ok(existing) = self.interface(name).await {
            let state = self
                .link(existing.index)
                .await
                .map_err(|e| io::Error::other(e.to_string()))?;
            if state.mac != Some(mac) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{name} exists and is not a virtual MAC interface for this VRID; rename it or set vmac_interface"
                    ),
                ));
            }
        } else {
            let msg = LinkMacVlan::new(name, parent.index, MacVlanMode::Private)
                .address(mac.to_vec())
                .build();
            self.handle
                .link()
                .add(msg)
                .execute()
                .await
                .map_err(netlink_io)?;
        }
        let iface = self
            .interface(name)
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
        let v4 = |ifname: &str, key: &str, value: &str| {
            write_sysctl(&format!("/proc/sys/net/ipv4/conf/{ifname}/{key}"), value)
        };
        let v6 = |key: &str, value: &str| {
            write_sysctl(&format!("/proc/sys/net/ipv6/conf/{name}/{key}"), value)
        };
        if ipv6 {
            // No link-local address, no router solicitation, no DAD of its own: a
            // Backup's macvlan stays silent, and a Master's speaks only for its virtual
            // addresses (neighbour advertisements, the multicast reports they need).
            v6("addr_gen_mode", "1")?;
            v6("accept_ra", "0")?;
            v6("autoconf", "0")?;
            v6("accept_dad", "0")?;
        } else {
            v6("disable_ipv6", "1")?;
        }
        // The macvlan answers ARP only for the addresses on it, and hears its peers.
        v4(name, "arp_ignore", "1")?;
        v4(name, "accept_local", "1")?;
        v4(name, "rp_filter", "0")?;
        // The parent answers only for its own addresses, and asks with them: a reply
        // from a virtual address leaves through the parent, and an ARP request naming
        // the virtual address with the parent's MAC would undo the virtual MAC in every
        // host that hears it.
        v4(&parent.name, "arp_ignore", "1")?;
        v4(&parent.name, "arp_filter", "1")?;
        v4(&parent.name, "arp_announce", "2")?;
        let mut up = rtnetlink::LinkUnspec::new_with_index(iface.index)
            .up()
            .build();
        up.attributes
            .retain(|a| !matches!(a, LinkAttribute::IfName(_)));
        self.handle
            .link()
            .set(up)
            .execute()
            .await
            .map_err(netlink_io)?;
        Ok(iface)
    }

    /// Removes a virtual MAC interface; `Ok(false)` if it was already gone.
    pub async fn remove_vmac(&self, iface: &Interface) -> io::Result<bool> {
        match self
            .handle
            .link()
            .del(iface.index)
            .execute()
            .await
            .map_err(netlink_io)
        {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
