//! Interface state: a one-shot query, a change stream from RTNLGRP_LINK (and word of
//! address changes from RTNLGRP_IPV4_IFADDR / IPV6_IFADDR), and the addresses adverts are
//! sent from (primary IPv4, IPv6 link-local).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{Stream, StreamExt, TryStreamExt};
use rtnetlink::MulticastGroup;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, State};
use rtnetlink::sys::SocketAddr;
use thiserror::Error;
use tokio::task::JoinHandle;

use super::{AddressError, Interface, Netlink, netlink_io};

/// RFC 2863 operational state, as the kernel reports it in IFLA_OPERSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperState {
    /// The driver does not report a state (loopback, some virtual devices).
    Unknown,
    /// A component is missing.
    NotPresent,
    /// Down.
    Down,
    /// Down because a lower device is down (no carrier, veth peer down).
    LowerLayerDown,
    /// In a test mode.
    Testing,
    /// Waiting for an external event (802.1X, for instance).
    Dormant,
    /// Up and able to pass packets.
    Up,
    /// A state newer than this code.
    Other(u8),
}

impl From<State> for OperState {
    fn from(s: State) -> Self {
        match s {
            State::Unknown => Self::Unknown,
            State::NotPresent => Self::NotPresent,
            State::Down => Self::Down,
            State::LowerLayerDown => Self::LowerLayerDown,
            State::Testing => Self::Testing,
            State::Dormant => Self::Dormant,
            State::Up => Self::Up,
            State::Other(n) => Self::Other(n),
            _ => Self::Other(u8::MAX),
        }
    }
}

/// The state of one interface at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// IFF_UP: administratively up (`ip link set dev X up`).
    pub admin_up: bool,
    /// IFF_RUNNING: operationally up (oper state Up or Unknown).
    pub running: bool,
    /// IFF_LOWER_UP: carrier present.
    pub lower_up: bool,
    /// IFLA_OPERSTATE.
    pub oper: OperState,
    /// Hardware address, when it is an Ethernet-style 6-byte one.
    pub mac: Option<[u8; 6]>,
}

impl LinkState {
    /// Whether the interface can carry VRRP: administratively up and running, which is
    /// keepalived's test too (IFF_UP and IFF_RUNNING).
    pub fn is_up(&self) -> bool {
        self.admin_up && self.running
    }

    /// The `Interface` (index and name) this state describes.
    pub fn interface(&self) -> Interface {
        Interface {
            index: self.index,
            name: self.name.clone(),
        }
    }

    fn from_message(msg: &LinkMessage) -> Self {
        let flags = msg.header.flags;
        let mut name = String::new();
        let mut oper = OperState::Unknown;
        let mut mac = None;
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => name.clone_from(n),
                LinkAttribute::OperState(s) => oper = (*s).into(),
                LinkAttribute::Address(a) => mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
                _ => {}
            }
        }
        Self {
            index: msg.header.index,
            name,
            admin_up: flags.contains(LinkFlags::Up),
            running: flags.contains(LinkFlags::Running),
            lower_up: flags.contains(LinkFlags::LowerUp),
            oper,
            mac,
        }
    }
}

/// A change seen by [`LinkMonitor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// An interface appeared, or its name, up/running/carrier flags or oper state changed.
    Changed(LinkState),
    /// An interface was deleted or left the namespace.
    Removed {
        /// Its index.
        index: u32,
        /// Its last name.
        name: String,
    },
    /// An address was added to or removed from an interface.
    Addresses {
        /// The interface's index.
        index: u32,
    },
}

/// Link query and monitor failures.
#[derive(Debug, Error)]
pub enum LinkError {
    /// Opening or subscribing the rtnetlink socket failed.
    #[error("subscribing to link notifications: {0}")]
    Subscribe(#[source] io::Error),
    /// Dumping the interfaces failed.
    #[error("listing interfaces: {0}")]
    List(#[source] io::Error),
    /// The interface index does not exist.
    #[error("interface index {0}: no such interface")]
    NoSuchIndex(u32),
}

impl Netlink {
    /// The state of every interface in this namespace (`ip link show`).
    pub async fn links(&self) -> Result<Vec<LinkState>, LinkError> {
        dump_links(&self.handle).await
    }

    /// The state of one interface.
    pub async fn link(&self, index: u32) -> Result<LinkState, LinkError> {
        let mut links = self.handle.link().get().match_index(index).execute();
        match links.try_next().await.map_err(netlink_io) {
            Ok(Some(msg)) => Ok(LinkState::from_message(&msg)),
            Ok(None) => Err(LinkError::NoSuchIndex(index)),
            Err(err) if err.raw_os_error() == Some(libc::ENODEV) => {
                Err(LinkError::NoSuchIndex(index))
            }
            Err(err) => Err(LinkError::List(err)),
        }
    }

    /// The interface's primary IPv4 address: the first one that is not secondary and not in
    /// `exclude`, which should hold the virtual addresses, so a VIP left from an earlier
    /// run (or in another subnet, hence primary too) is never taken as the advert source.
    pub async fn primary_ipv4(
        &self,
        iface: &Interface,
        exclude: &[Ipv4Addr],
    ) -> Result<Option<Ipv4Addr>, AddressError> {
        Ok(self
            .addresses(iface)
            .await?
            .iter()
            .filter(|a| !a.secondary)
            .find_map(|a| match a.addr {
                IpAddr::V4(v4) if !exclude.contains(&v4) => Some(v4),
                _ => None,
            }))
    }

    /// The interface's usable IPv6 link-local address: fe80::/10, DAD finished and passed.
    /// `None` while the only one is still tentative (for about a second after link up).
    pub async fn ipv6_link_local(
        &self,
        iface: &Interface,
    ) -> Result<Option<Ipv6Addr>, AddressError> {
        Ok(self
            .addresses(iface)
            .await?
            .iter()
            .filter(|a| !a.tentative && !a.dad_failed)
            .find_map(|a| match a.addr {
                IpAddr::V6(v6) if is_link_local(v6) => Some(v6),
                _ => None,
            }))
    }
}

fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

async fn dump_links(handle: &rtnetlink::Handle) -> Result<Vec<LinkState>, LinkError> {
    let messages: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| LinkError::List(netlink_io(e)))?;
    Ok(messages.iter().map(LinkState::from_message).collect())
}

/// What the monitor compares to decide whether a notification is a change: the kernel
/// also sends RTM_NEWLINK for MTU, statistics-free attribute and promiscuity changes.
type Seen = (String, bool, bool, bool, OperState);

fn seen(s: &LinkState) -> Seen {
    (s.name.clone(), s.admin_up, s.running, s.lower_up, s.oper)
}

type Unsolicited = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

/// A stream of [`LinkEvent`]s from the kernel's RTNLGRP_LINK multicast group.
///
/// Only real changes come out: repeated notifications with the same name, flags and oper
/// state are dropped. Dropping the monitor closes its socket.
pub struct LinkMonitor {
    messages: Unsolicited,
    last: HashMap<u32, Seen>,
    driver: JoinHandle<()>,
}

impl LinkMonitor {
    /// Subscribes to link notifications, then dumps the current state; returns the
    /// monitor and that snapshot. Subscribing first means no change falls between the
    /// snapshot and the first event. Must be called inside a tokio runtime.
    pub async fn start() -> Result<(Self, Vec<LinkState>), LinkError> {
        let (connection, handle, messages) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
        ])
        .map_err(LinkError::Subscribe)?;
        let driver = tokio::spawn(connection);
        let snapshot = dump_links(&handle).await;
        let snapshot = match snapshot {
            Ok(s) => s,
            Err(e) => {
                driver.abort();
                return Err(e);
            }
        };
        let last = snapshot.iter().map(|s| (s.index, seen(s))).collect();
        Ok((
            Self {
                messages,
                last,
                driver,
            },
            snapshot,
        ))
    }

    fn process(&mut self, msg: NetlinkMessage<RouteNetlinkMessage>) -> Option<LinkEvent> {
        match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                let state = LinkState::from_message(&link);
                let now = seen(&state);
                if self.last.get(&state.index) == Some(&now) {
                    return None;
                }
                self.last.insert(state.index, now);
                Some(LinkEvent::Changed(state))
            }
            NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewAddress(a) | RouteNetlinkMessage::DelAddress(a),
            ) => Some(LinkEvent::Addresses {
                index: a.header.index,
            }),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                let state = LinkState::from_message(&link);
                self.last.remove(&state.index);
                Some(LinkEvent::Removed {
                    index: state.index,
                    name: state.name,
                })
            }
            _ => None,
        }
    }
}

impl Stream for LinkMonitor {
    type Item = LinkEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LinkEvent>> {
        loop {
            match self.messages.poll_next_unpin(cx) {
                Poll::Ready(Some((msg, _))) => {
                    if let Some(event) = self.process(msg) {
                        return Poll::Ready(Some(event));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for LinkMonitor {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_prefix() {
        assert!(is_link_local("fe80::1".parse().expect("literal")));
        assert!(is_link_local("febf::1".parse().expect("literal")));
        assert!(!is_link_local("fec0::1".parse().expect("literal")));
        assert!(!is_link_local("2001:db8::1".parse().expect("literal")));
    }
}
