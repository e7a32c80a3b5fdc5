//! Interface state: a one-shot query, a change stream from RTNLGRP_LINK (and word of
//! address changes from RTNLGRP_IPV4_IFADDR / IPV6_IFADDR), and the addresses adverts are
//! sent from (primary IPv4, IPv6 link-local).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{Stream, StreamExt, TryStreamExt};
use rtnetlink::MulticastGroup;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, LinkXdp, State};
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

    /// The id of the XDP program attached to interface `index`, if any.
    pub async fn xdp_program(&self, index: u32) -> Result<Option<u32>, LinkError> {
        let mut links = self.handle.link().get().match_index(index).execute();
        let msg = match links.try_next().await.map_err(netlink_io) {
            Ok(Some(msg)) => msg,
            Ok(None) => return Err(LinkError::NoSuchIndex(index)),
            Err(err) if err.raw_os_error() == Some(libc::ENODEV) => {
                return Err(LinkError::NoSuchIndex(index));
            }
            Err(err) => return Err(LinkError::List(err)),
        };
        Ok(msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::Xdp(xdp) => xdp.iter().find_map(|x| match x {
                LinkXdp::ProgId(id) if *id != 0 => Some(*id),
                _ => None,
            }),
            _ => None,
        }))
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
type Seen<'a> = (&'a str, bool, bool, bool, OperState);

fn seen(s: &LinkState) -> Seen<'_> {
    (&s.name, s.admin_up, s.running, s.lower_up, s.oper)
}

type Unsolicited = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

type Dump = Pin<Box<dyn Future<Output = Result<Vec<LinkState>, LinkError>> + Send>>;

/// How long a failed re-subscription waits before the next try.
const RESUBSCRIBE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// A stream of [`LinkEvent`]s from the kernel's RTNLGRP_LINK multicast group.
///
/// Only real changes come out: repeated notifications with the same name, flags and oper
/// state are dropped. The stream never ends: when the kernel drops notifications (the
/// socket's buffer overran, ENOBUFS) every link is read again and the differences come out
/// as events; when the socket itself fails, the monitor subscribes again and does the same.
/// Dropping the monitor closes its socket.
pub struct LinkMonitor {
    messages: Unsolicited,
    handle: rtnetlink::Handle,
    last: HashMap<u32, LinkState>,
    driver: JoinHandle<()>,
    pending: VecDeque<LinkEvent>,
    dump: Option<Dump>,
    retry: Option<Pin<Box<tokio::time::Sleep>>>,
    resyncs: u64,
}

/// What the monitor subscribes to: links, and word of address changes.
const GROUPS: [MulticastGroup; 3] = [
    MulticastGroup::Link,
    MulticastGroup::Ipv4Ifaddr,
    MulticastGroup::Ipv6Ifaddr,
];

impl LinkMonitor {
    /// Subscribes to link notifications, then dumps the current state; returns the
    /// monitor and that snapshot. Subscribing first means no change falls between the
    /// snapshot and the first event. Must be called inside a tokio runtime.
    pub async fn start() -> Result<(Self, Vec<LinkState>), LinkError> {
        let (connection, handle, messages) =
            rtnetlink::new_multicast_connection(&GROUPS).map_err(LinkError::Subscribe)?;
        let driver = tokio::spawn(connection);
        let snapshot = dump_links(&handle).await;
        let snapshot = match snapshot {
            Ok(s) => s,
            Err(e) => {
                driver.abort();
                return Err(e);
            }
        };
        let last = snapshot.iter().map(|s| (s.index, s.clone())).collect();
        Ok((
            Self {
                messages,
                handle,
                last,
                driver,
                pending: VecDeque::new(),
                dump: None,
                retry: None,
                resyncs: 0,
            },
            snapshot,
        ))
    }

    /// How many times the monitor re-read every link after lost notifications.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    fn process(&mut self, msg: NetlinkMessage<RouteNetlinkMessage>) -> Option<LinkEvent> {
        match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                let state = LinkState::from_message(&link);
                if self.last.get(&state.index).map(seen) == Some(seen(&state)) {
                    return None;
                }
                self.last.insert(state.index, state.clone());
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
            NetlinkPayload::Overrun(_) => {
                tracing::warn!(
                    "link notifications lost (netlink buffer overrun): reading every link again"
                );
                self.start_dump();
                None
            }
            _ => None,
        }
    }

    fn start_dump(&mut self) {
        // Address notifications may have been lost too: say that something may have
        // changed (index 0: no interface in particular).
        self.pending.push_back(LinkEvent::Addresses { index: 0 });
        let handle = self.handle.clone();
        self.dump = Some(Box::pin(async move { dump_links(&handle).await }));
    }

    /// Replaces a socket that stopped delivering with a fresh subscription.
    fn resubscribe(&mut self) -> Result<(), LinkError> {
        let (connection, handle, messages) =
            rtnetlink::new_multicast_connection(&GROUPS).map_err(LinkError::Subscribe)?;
        self.driver.abort();
        self.driver = tokio::spawn(connection);
        self.handle = handle;
        self.messages = messages;
        self.start_dump();
        Ok(())
    }
}

/// The events that turn `last` into `now`, in index order; `last` becomes `now`.
fn diff(last: &mut HashMap<u32, LinkState>, now: Vec<LinkState>) -> Vec<LinkEvent> {
    let mut events = Vec::new();
    let mut gone: Vec<&LinkState> = last
        .values()
        .filter(|old| !now.iter().any(|n| n.index == old.index))
        .collect();
    gone.sort_by_key(|l| l.index);
    for old in gone {
        events.push(LinkEvent::Removed {
            index: old.index,
            name: old.name.clone(),
        });
    }
    let mut now = now;
    now.sort_by_key(|l| l.index);
    for state in &now {
        if last.get(&state.index).map(seen) != Some(seen(state)) {
            events.push(LinkEvent::Changed(state.clone()));
        }
    }
    *last = now.into_iter().map(|s| (s.index, s)).collect();
    events
}

impl Stream for LinkMonitor {
    type Item = LinkEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LinkEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Poll::Ready(Some(event));
            }
            if let Some(sleep) = self.retry.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.retry = None;
                if let Err(e) = self.resubscribe() {
                    tracing::error!("link monitor: {e}; trying again");
                    self.retry = Some(Box::pin(tokio::time::sleep(RESUBSCRIBE_RETRY)));
                }
                continue;
            }
            if let Some(dump) = self.dump.as_mut() {
                match dump.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(links)) => {
                        self.dump = None;
                        self.resyncs += 1;
                        let this = &mut *self;
                        let events = diff(&mut this.last, links);
                        tracing::info!(changes = events.len(), "links read again");
                        this.pending.extend(events);
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::error!("link monitor: {e}; subscribing again");
                        self.dump = None;
                        self.retry = Some(Box::pin(tokio::time::sleep(RESUBSCRIBE_RETRY)));
                    }
                }
                continue;
            }
            match self.messages.poll_next_unpin(cx) {
                Poll::Ready(Some((msg, _))) => {
                    if let Some(event) = self.process(msg) {
                        return Poll::Ready(Some(event));
                    }
                }
                Poll::Ready(None) => {
                    // Monitoring must never stop quietly: an agent that misses a link
                    // going down would stay Master on a dead interface.
                    tracing::warn!("link notifications ended: subscribing again");
                    if let Err(e) = self.resubscribe() {
                        tracing::error!("link monitor: {e}; trying again");
                        self.retry = Some(Box::pin(tokio::time::sleep(RESUBSCRIBE_RETRY)));
                    }
                }
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

    fn state(index: u32, name: &str, up: bool) -> LinkState {
        LinkState {
            index,
            name: name.to_owned(),
            admin_up: up,
            running: up,
            lower_up: up,
            oper: if up { OperState::Up } else { OperState::Down },
            mac: None,
        }
    }

    #[test]
    fn a_dump_after_lost_notifications_yields_every_difference() {
        let mut last: HashMap<u32, LinkState> = [
            (1, state(1, "lo", true)),
            (2, state(2, "eth0", true)),
            (3, state(3, "vlan10", true)),
        ]
        .into_iter()
        .collect();
        // eth0 went down, vlan10 was deleted and recreated with a new index, eth1 renamed.
        let now = vec![
            state(1, "lo", true),
            state(2, "eth0", false),
            state(7, "vlan10", true),
        ];
        let events = diff(&mut last, now);
        assert_eq!(
            events,
            vec![
                LinkEvent::Removed {
                    index: 3,
                    name: "vlan10".to_owned()
                },
                LinkEvent::Changed(state(2, "eth0", false)),
                LinkEvent::Changed(state(7, "vlan10", true)),
            ]
        );
        assert_eq!(last.len(), 3);
        assert!(
            diff(
                &mut last,
                vec![
                    state(1, "lo", true),
                    state(2, "eth0", false),
                    state(7, "vlan10", true)
                ]
            )
            .is_empty()
        );
        let renamed = diff(
            &mut last,
            vec![
                state(1, "lo", true),
                state(2, "wan0", false),
                state(7, "vlan10", true),
            ],
        );
        assert_eq!(renamed, vec![LinkEvent::Changed(state(2, "wan0", false))]);
    }

    /// When the notification stream ends, the monitor subscribes again and goes on:
    /// a link change after that is still seen. Runs in a network namespace of its own
    /// (made for this thread, gone with it), where only `lo` exists.
    #[test]
    fn an_ended_stream_is_replaced_and_monitoring_goes_on() {
        // SAFETY: plain syscalls on this thread only.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root for a network namespace");
            return;
        }
        std::thread::spawn(|| {
            // SAFETY: moves only this thread into a new, empty network namespace.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let (mut monitor, snapshot) = LinkMonitor::start().await.expect("subscribe");
                assert!(snapshot.iter().any(|l| l.name == "lo" && !l.admin_up));
                // The socket's stream ends, as when netlink-proto gives up on an error.
                let (tx, rx) = futures::channel::mpsc::unbounded();
                drop(tx);
                monitor.messages = rx;
                let up = std::process::Command::new("ip")
                    .args(["link", "set", "lo", "up"])
                    .status()
                    .expect("ip");
                assert!(up.success());
                // A re-read after a lost stream also says addresses may have changed;
                // the link change must follow.
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
                let event = loop {
                    let e = tokio::time::timeout_at(deadline, monitor.next())
                        .await
                        .expect("an event after the stream ended");
                    if !matches!(e, Some(LinkEvent::Addresses { .. })) {
                        break e;
                    }
                };
                match event {
                    Some(LinkEvent::Changed(l)) => assert!(l.name == "lo" && l.admin_up, "{l:?}"),
                    other => panic!("unexpected {other:?}"),
                }
                assert_eq!(monitor.resyncs(), 1);
            });
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn link_local_prefix() {
        assert!(is_link_local("fe80::1".parse().expect("literal")));
        assert!(is_link_local("febf::1".parse().expect("literal")));
        assert!(!is_link_local("fec0::1".parse().expect("literal")));
        assert!(!is_link_local("2001:db8::1".parse().expect("literal")));
    }
}
