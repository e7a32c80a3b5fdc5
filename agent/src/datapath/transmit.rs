//! Advertisement transmit: one raw IP socket (protocol 112) per interface and family.
//!
//! The kernel writes the IP header: TTL / hop limit 255 (RFC 5798 §5.1.1.3, receivers
//! drop anything else), TOS / traffic class 0xc0 (as keepalived sends), protocol 112, and
//! source = the address the socket is bound to (the interface's primary IPv4 address, or
//! its IPv6 link-local). The caller hands over the encoded VRRP payload; for VRRPv3 its
//! checksum covers a pseudo-header with that source, which [`AdvertSender::source`]
//! exposes.
//!
//! Sockets are non-blocking and registered with tokio: a small datagram goes out at once,
//! and [`AdvertSender::send_to`] waits for room only in the rare case the send queue is
//! full.
//!
//! Instances on one interface with one source address share a sender ([`SenderPool`]),
//! so the adverts of many instances due in the same tick leave in one `sendmmsg` call
//! ([`AdvertSender::send_batch`]) instead of one system call each.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::{Arc, Weak};

use socket2::{Domain, Protocol, SockAddr, SockFilter, Socket, Type};
use thiserror::Error;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::net::{Family, Interface};

/// IANA protocol number of VRRP.
pub const IPPROTO_VRRP: i32 = 112;
/// 224.0.0.18, the VRRP IPv4 multicast group.
pub const VRRP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// ff02::12, the VRRP IPv6 multicast group.
pub const VRRP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The only TTL / hop limit a VRRP receiver accepts.
const VRRP_TTL: u32 = 255;
/// TOS / traffic class "network control" (precedence 6, DSCP CS6), as keepalived marks
/// adverts, so queues that honour it keep adverts ahead of bulk traffic on a busy link.
pub const VRRP_TOS: u32 = 0xc0;

/// Transmit failures, each naming the interface.
#[derive(Debug, Error)]
pub enum TransmitError {
    /// The raw socket could not be opened (missing CAP_NET_RAW, for instance).
    #[error("opening VRRP socket on {interface}: {source}")]
    Open {
        /// Interface name.
        interface: String,
        /// Why.
        source: io::Error,
    },
    /// A socket option or the bind to the source address failed.
    #[error("setting up VRRP socket on {interface} ({step}): {source}")]
    Setup {
        /// Interface name.
        interface: String,
        /// Which option or call.
        step: &'static str,
        /// Why.
        source: io::Error,
    },
    /// The destination's family is not the socket's.
    #[error("VRRP socket on {interface} is {family:?}, cannot send to {dest}")]
    WrongFamily {
        /// Interface name.
        interface: String,
        /// The socket's family.
        family: Family,
        /// The destination asked for.
        dest: IpAddr,
    },
    /// The kernel refused the datagram.
    #[error("sending advert on {interface} to {dest}: {source}")]
    Send {
        /// Interface name.
        interface: String,
        /// Destination.
        dest: IpAddr,
        /// Why.
        source: io::Error,
    },
}

/// Sends VRRP advertisements on one interface for one address family.
#[derive(Debug)]
pub struct AdvertSender {
    socket: AsyncFd<Socket>,
    iface: Interface,
    source: IpAddr,
}

impl AdvertSender {
    /// An IPv4 sender on `iface` whose adverts come from `source`, the interface's
    /// primary address. Must be called inside a tokio runtime.
    pub fn ipv4(iface: &Interface, source: Ipv4Addr) -> Result<Self, TransmitError> {
        let s = Setup::new(iface, Domain::IPV4)?;
        s.step("IP_TTL", |sock| sock.set_ttl_v4(VRRP_TTL))?;
        s.step("IP_TOS", |sock| sock.set_tos_v4(VRRP_TOS))?;
        s.step("IP_MULTICAST_TTL", |sock| {
            sock.set_multicast_ttl_v4(VRRP_TTL)
        })?;
        s.step("IP_MULTICAST_LOOP", |sock| {
            sock.set_multicast_loop_v4(false)
        })?;
        s.step("IP_MULTICAST_IF", |sock| {
            set_multicast_if_v4_index(sock, iface.index)
        })?;
        s.step("bind", |sock| {
            sock.bind(&SockAddr::from(SocketAddrV4::new(source, 0)))
        })?;
        s.finish(IpAddr::V4(source))
    }

    /// An IPv6 sender on `iface` whose adverts come from `link_local`, the interface's
    /// link-local address (RFC 5798 §5.1.2.1). Must be called inside a tokio runtime.
    pub fn ipv6(iface: &Interface, link_local: Ipv6Addr) -> Result<Self, TransmitError> {
        let s = Setup::new(iface, Domain::IPV6)?;
        s.step("IPV6_UNICAST_HOPS", |sock| {
            sock.set_unicast_hops_v6(VRRP_TTL)
        })?;
        s.step("IPV6_TCLASS", |sock| sock.set_tclass_v6(VRRP_TOS))?;
        s.step("IPV6_MULTICAST_HOPS", |sock| {
            sock.set_multicast_hops_v6(VRRP_TTL)
        })?;
        s.step("IPV6_MULTICAST_LOOP", |sock| {
            sock.set_multicast_loop_v6(false)
        })?;
        s.step("IPV6_MULTICAST_IF", |sock| {
            sock.set_multicast_if_v6(iface.index)
        })?;
        s.step("bind", |sock| {
            let scope = if is_link_local(link_local) {
                iface.index
            } else {
                0
            };
            sock.bind(&SockAddr::from(SocketAddrV6::new(link_local, 0, 0, scope)))
        })?;
        s.finish(IpAddr::V6(link_local))
    }

    /// The source address of every advert this sender sends.
    pub fn source(&self) -> IpAddr {
        self.source
    }

    /// The interface this sender sends on.
    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    /// The address family of this sender.
    pub fn family(&self) -> Family {
        match self.source {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    /// The VRRP multicast group of this sender's family (224.0.0.18 or ff02::12).
    pub fn multicast_group(&self) -> IpAddr {
        match self.source {
            IpAddr::V4(_) => IpAddr::V4(VRRP_GROUP_V4),
            IpAddr::V6(_) => IpAddr::V6(VRRP_GROUP_V6),
        }
    }

    /// Sends `payload` to the multicast group when `peers` is empty, else to each unicast
    /// peer; tries every peer and returns the first failure.
    pub async fn send(&self, peers: &[IpAddr], payload: &[u8]) -> Result<(), TransmitError> {
        if peers.is_empty() {
            return self.send_to(self.multicast_group(), payload).await;
        }
        let mut first_error = None;
        for peer in peers {
            if let Err(err) = self.send_to(*peer, payload).await {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Sends `payload` to `dest`, waiting only if the socket's send queue is full.
    pub async fn send_to(&self, dest: IpAddr, payload: &[u8]) -> Result<(), TransmitError> {
        let addr = self.sockaddr(dest)?;
        loop {
            let mut guard = self
                .socket
                .writable()
                .await
                .map_err(|source| self.send_error(dest, source))?;
            match guard.try_io(|s| s.get_ref().send_to(payload, &addr)) {
                Ok(result) => return self.check_sent(dest, payload, result),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends `payload` to `dest` without waiting; a full send queue is an error
    /// (`WouldBlock`).
    pub fn try_send_to(&self, dest: IpAddr, payload: &[u8]) -> Result<(), TransmitError> {
        let addr = self.sockaddr(dest)?;
        let result = self.socket.get_ref().send_to(payload, &addr);
        self.check_sent(dest, payload, result)
    }

    /// Sends every `(destination, payload)` with as few `sendmmsg` calls as the kernel
    /// allows (one, unless the send queue fills), waiting for room when it is full.
    /// Returns how many went out before the first failure, and that failure.
    pub async fn send_batch(&self, messages: &[Outgoing]) -> (usize, Option<TransmitError>) {
        let mut addrs = Vec::with_capacity(messages.len());
        for (dest, _) in messages {
            match self.sockaddr(*dest) {
                Ok(a) => addrs.push(a),
                Err(e) => return (0, Some(e)),
            }
        }
        let mut done = 0;
        while done < messages.len() {
            match self.sendmmsg(&messages[done..], &addrs[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.socket.writable().await {
                        Ok(mut guard) => guard.clear_ready(),
                        Err(e) => return (done, Some(self.send_error(messages[done].0, e))),
                    }
                }
                Err(e) => return (done, Some(self.send_error(messages[done].0, e))),
            }
        }
        (done, None)
    }

    /// One `sendmmsg` call; the number of datagrams the kernel took.
    fn sendmmsg(&self, messages: &[Outgoing], addrs: &[SockAddr]) -> io::Result<usize> {
        // At most UIO_MAXIOV datagrams per call; the caller loops for the rest.
        let n = messages.len().min(1024);
        let mut iov: Vec<libc::iovec> = messages[..n]
            .iter()
            .map(|(_, p)| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .zip(addrs)
            .map(|(v, a)| {
                // SAFETY: an all-zero msghdr is valid (no control data, no flags).
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_name = a.as_ptr() as *mut libc::c_void;
                h.msg_namelen = a.len();
                h.msg_iov = v;
                h.msg_iovlen = 1;
                libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                }
            })
            .collect();
        // SAFETY: `headers` holds `n` valid mmsghdr whose names and buffers (`addrs`,
        // `iov`, the payloads) outlive the call; the socket is ours and non-blocking.
        let rc = unsafe {
            libc::sendmmsg(
                self.socket.get_ref().as_raw_fd(),
                headers.as_mut_ptr(),
                headers.len() as libc::c_uint,
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    fn check_sent(
        &self,
        dest: IpAddr,
        payload: &[u8],
        result: io::Result<usize>,
    ) -> Result<(), TransmitError> {
        match result {
            Ok(n) if n == payload.len() => Ok(()),
            Ok(_) => Err(self.send_error(
                dest,
                io::Error::new(io::ErrorKind::WriteZero, "short datagram write"),
            )),
            Err(source) => Err(self.send_error(dest, source)),
        }
    }

    fn send_error(&self, dest: IpAddr, source: io::Error) -> TransmitError {
        TransmitError::Send {
            interface: self.iface.name.clone(),
            dest,
            source,
        }
    }

    fn sockaddr(&self, dest: IpAddr) -> Result<SockAddr, TransmitError> {
        let addr = match (self.source, dest) {
            (IpAddr::V4(_), IpAddr::V4(d)) => SocketAddr::V4(SocketAddrV4::new(d, 0)),
            (IpAddr::V6(_), IpAddr::V6(d)) => {
                // Link-scoped destinations (ff02::12, fe80:: peers) name their link.
                let scoped = is_link_local(d) || d.segments()[0] & 0xff0f == 0xff02;
                let scope = if scoped { self.iface.index } else { 0 };
                SocketAddr::V6(SocketAddrV6::new(d, 0, 0, scope))
            }
            _ => {
                return Err(TransmitError::WrongFamily {
                    interface: self.iface.name.clone(),
                    family: self.family(),
                    dest,
                });
            }
        };
        Ok(SockAddr::from(addr))
    }
}

/// An encoded advert and where it goes.
pub type Outgoing = (IpAddr, Arc<[u8]>);

/// One sender per (interface, source address), shared by the instances that send from it.
#[derive(Debug, Default)]
pub struct SenderPool {
    senders: HashMap<(u32, IpAddr), Weak<AdvertSender>>,
}

impl SenderPool {
    /// The IPv4 sender on `iface` from `source`, opened on first use.
    pub fn ipv4(
        &mut self,
        iface: &Interface,
        source: Ipv4Addr,
    ) -> Result<Arc<AdvertSender>, TransmitError> {
        self.get(iface, IpAddr::V4(source), || {
            AdvertSender::ipv4(iface, source)
        })
    }

    /// The IPv6 sender on `iface` from `link_local`, opened on first use.
    pub fn ipv6(
        &mut self,
        iface: &Interface,
        link_local: Ipv6Addr,
    ) -> Result<Arc<AdvertSender>, TransmitError> {
        self.get(iface, IpAddr::V6(link_local), || {
            AdvertSender::ipv6(iface, link_local)
        })
    }

    fn get(
        &mut self,
        iface: &Interface,
        source: IpAddr,
        open: impl FnOnce() -> Result<AdvertSender, TransmitError>,
    ) -> Result<Arc<AdvertSender>, TransmitError> {
        // Interfaces can be renamed or recreated under the same index: the name is
        // part of what the socket is bound to.
        let key = (iface.index, source);
        if let Some(s) = self.senders.get(&key).and_then(Weak::upgrade)
            && s.iface.name == iface.name
        {
            return Ok(s);
        }
        let s = Arc::new(open()?);
        self.senders.retain(|_, w| w.strong_count() > 0);
        self.senders.insert(key, Arc::downgrade(&s));
        Ok(s)
    }
}

impl AsFd for AdvertSender {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.get_ref().as_fd()
    }
}

fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// Builds one sender's socket, naming the interface and the failing step in errors.
struct Setup<'a> {
    iface: &'a Interface,
    socket: Socket,
}

impl<'a> Setup<'a> {
    fn new(iface: &'a Interface, domain: Domain) -> Result<Self, TransmitError> {
        let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_VRRP))).map_err(
            |source| TransmitError::Open {
                interface: iface.name.clone(),
                source,
            },
        )?;
        let s = Self { iface, socket };
        s.step("O_NONBLOCK", |sock| sock.set_nonblocking(true))?;
        s.step("SO_BINDTODEVICE", |sock| {
            sock.bind_device(Some(iface.name.as_bytes()))
        })?;
        // A raw socket gets a copy of every VRRP packet that arrives; this one only
        // sends, so a one-instruction filter ("return 0") drops them before they queue.
        s.step("SO_ATTACH_FILTER", |sock| {
            sock.attach_filter(&[SockFilter::new(0x06, 0, 0, 0)])
        })?;
        Ok(s)
    }

    fn step(
        &self,
        step: &'static str,
        f: impl FnOnce(&Socket) -> io::Result<()>,
    ) -> Result<(), TransmitError> {
        f(&self.socket).map_err(|source| TransmitError::Setup {
            interface: self.iface.name.clone(),
            step,
            source,
        })
    }

    fn finish(self, source: IpAddr) -> Result<AdvertSender, TransmitError> {
        let iface = self.iface.clone();
        // SAFETY: the Socket owns its descriptor, and the AsyncFd owns the Socket until
        // both drop, so the descriptor stays open and the same for the registration's life.
        let registered =
            unsafe { AsyncFd::register_with_interest(self.socket, Interest::WRITABLE) };
        let socket = registered.map_err(|err| TransmitError::Setup {
            interface: iface.name.clone(),
            step: "tokio registration",
            source: err.into(),
        })?;
        Ok(AdvertSender {
            socket,
            iface,
            source,
        })
    }
}

/// IP_MULTICAST_IF by interface index (struct ip_mreqn): socket2 only offers the by-address
/// form, which is ambiguous when two interfaces share an address.
fn set_multicast_if_v4_index(sock: &Socket, index: u32) -> io::Result<()> {
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: i32::try_from(index)
            .map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?,
    };
    // SAFETY: mreqn is a valid ip_mreqn that outlives the call; the length matches it.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            std::ptr::from_ref(&mreqn).cast(),
            std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
