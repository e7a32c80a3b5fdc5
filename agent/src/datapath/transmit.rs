//! Advertisement transmit: one raw IP socket (protocol 112) per interface and family.
//!
//! The kernel writes the IP header: TTL / hop limit 255 (RFC 5798 §5.1.1.3, receivers
//! drop anything else), TOS / traffic class 0xc0 (as keepalived sends), protocol 112, and
//! source = the address the socket is bound to (the interface's primary IPv4 address, or
//! its IPv6 link-local). The caller hands over the encoded VRRP payload; for VRRPv3 its
//! checksum covers a pseudo-header with that source, which [`AdvertSender::source`]
//! exposes.
//!
//! Sockets are non-blocking: a small datagram goes out at once, and a sender waits for
//! room only in the rare case the send queue is full. Only then is the socket registered
//! with tokio, for that wait: while it is registered, every datagram the kernel frees
//! wakes the socket's wait queue, where the runtime's epoll entry sits, a cost per
//! advert that a socket nobody waits on does not pay.
//!
//! With a virtual MAC (`use_vmac`), IPv6 adverts are built whole — Ethernet header with
//! the virtual router MAC 00:00:5e:00:02:VRID as source (RFC 5798 §7.2), IPv6 header
//! from the parent's link-local address — and sent on an AF_PACKET socket
//! ([`AdvertSender::ipv6_framed`]): the macvlan has no link-local address of its own, so
//! that a Backup's macvlan stays silent, and the kernel would otherwise pick the
//! parent's MAC. (IPv4 adverts leave through the macvlan itself, which has the virtual
//! MAC. Adverts to unicast peers, of either family, leave from the parent and its MAC:
//! the peer's own macvlan with the same virtual MAC would swallow the resolution.)
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
    socket: Socket,
    iface: Interface,
    source: IpAddr,
    /// Source MAC of the frames this sender builds itself (AF_PACKET); `None`: the
    /// kernel builds them (a raw IP socket).
    frame_mac: Option<[u8; 6]>,
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

    /// An IPv6 sender on `iface` whose adverts come from `link_local` and, on the wire,
    /// from the MAC `mac` (a virtual router MAC): it builds the Ethernet and IPv6 headers
    /// itself (RFC 5798 §5.1.2: hop limit 255; traffic class as the raw socket's) and
    /// sends multicast only. Must be called inside a tokio runtime.
    pub fn ipv6_framed(
        iface: &Interface,
        link_local: Ipv6Addr,
        mac: [u8; 6],
    ) -> Result<Self, TransmitError> {
        // Protocol 0: the socket receives nothing, it only sends.
        let socket =
            Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0))).map_err(|source| {
                TransmitError::Open {
                    interface: iface.name.clone(),
                    source,
                }
            })?;
        let s = Setup { iface, socket };
        s.step("O_NONBLOCK", |sock| sock.set_nonblocking(true))?;
        s.step("bind", |sock| bind_packet(sock, iface.index))?;
        let mut sender = s.finish(IpAddr::V6(link_local))?;
        sender.frame_mac = Some(mac);
        Ok(sender)
    }

    /// The MAC the frames leave from when this sender builds them itself.
    pub fn frame_mac(&self) -> Option<[u8; 6]> {
        self.frame_mac
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
        let datagram = self.datagram(dest, payload)?;
        loop {
            let result = match &addr {
                Some(a) => self.socket.send_to(&datagram, a),
                None => self.socket.send(&datagram),
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self
                    .writable()
                    .await
                    .map_err(|source| self.send_error(dest, source))?,
                result => return self.check_sent(dest, &datagram, result),
            }
        }
    }

    /// Sends `payload` to `dest` without waiting; a full send queue is an error
    /// (`WouldBlock`).
    pub fn try_send_to(&self, dest: IpAddr, payload: &[u8]) -> Result<(), TransmitError> {
        let addr = self.sockaddr(dest)?;
        let datagram = self.datagram(dest, payload)?;
        let result = match &addr {
            Some(a) => self.socket.send_to(&datagram, a),
            None => self.socket.send(&datagram),
        };
        self.check_sent(dest, &datagram, result)
    }

    /// What goes to the socket for `payload` to `dest`: the payload itself, or, when
    /// this sender builds frames, the whole Ethernet frame around it.
    fn datagram<'p>(
        &self,
        dest: IpAddr,
        payload: &'p [u8],
    ) -> Result<std::borrow::Cow<'p, [u8]>, TransmitError> {
        let (Some(mac), IpAddr::V6(src), IpAddr::V6(dst)) = (self.frame_mac, self.source, dest)
        else {
            return Ok(std::borrow::Cow::Borrowed(payload));
        };
        if !dst.is_multicast() {
            // A unicast peer needs its MAC, which only the kernel's neighbour table
            // knows; instances with unicast peers are not given a framing sender.
            return Err(self.send_error(
                dest,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "virtual-MAC adverts go to the multicast group only",
                ),
            ));
        }
        Ok(std::borrow::Cow::Owned(ipv6_frame(mac, src, dst, payload)))
    }

    /// Sends every `(destination, payload)` with as few `sendmmsg` calls as the kernel
    /// allows (one, unless the send queue fills), waiting for room when it is full.
    /// Returns how many went out before the first failure, and that failure.
    pub async fn send_batch(&self, messages: &[Outgoing]) -> (usize, Option<TransmitError>) {
        let mut addrs = Vec::with_capacity(messages.len());
        let mut datagrams = Vec::with_capacity(messages.len());
        for (dest, payload) in messages {
            match (self.sockaddr(*dest), self.datagram(*dest, payload)) {
                (Ok(a), Ok(d)) => {
                    addrs.push(a);
                    datagrams.push(d);
                }
                (Err(e), _) | (_, Err(e)) => return (0, Some(e)),
            }
        }
        let mut done = 0;
        while done < messages.len() {
            match self.sendmmsg(&datagrams[done..], &addrs[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.writable().await {
                        return (done, Some(self.send_error(messages[done].0, e)));
                    }
                }
                Err(e) => return (done, Some(self.send_error(messages[done].0, e))),
            }
        }
        (done, None)
    }

    /// `payload` to `dest` as this sender hands it to the kernel — the datagram (the
    /// whole frame for a framing sender) and its socket address — built once, so that
    /// sending it again costs no encoding, no allocation and no address conversion.
    pub fn prepare(&self, dest: IpAddr, payload: &[u8]) -> Result<Prepared, TransmitError> {
        Ok(Prepared {
            addr: self.sockaddr(dest)?,
            bytes: self.datagram(dest, payload)?.into_owned(),
            dest,
        })
    }

    /// Sends datagrams as [`AdvertSender::prepare`] made them, taken apart
    /// ([`Prepared::into_parts`]): bytes, socket address, and the destination (for the
    /// error), with as few `sendmmsg` calls as the kernel allows, waiting for room when
    /// the send queue is full. Returns how many went out before the first failure, and
    /// that failure.
    pub async fn send_datagrams(
        &self,
        messages: &[(&[u8], Option<&SockAddr>, IpAddr)],
    ) -> (usize, Option<TransmitError>) {
        let mut done = 0;
        while done < messages.len() {
            let rest = &messages[done..];
            let n = rest.len().min(1024);
            let mut iov: Vec<libc::iovec> = rest[..n]
                .iter()
                .map(|(bytes, _, _)| libc::iovec {
                    iov_base: bytes.as_ptr() as *mut libc::c_void,
                    iov_len: bytes.len(),
                })
                .collect();
            let headers: Vec<libc::mmsghdr> = iov
                .iter_mut()
                .zip(rest)
                .map(|(v, (_, addr, _))| mmsghdr(v, *addr))
                .collect();
            match self.sendmmsg_raw(headers) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.writable().await {
                        return (done, Some(self.send_error(messages[done].2, e)));
                    }
                }
                Err(e) => return (done, Some(self.send_error(messages[done].2, e))),
            }
        }
        (done, None)
    }

    /// Waits until the send queue has room: the socket is registered with the runtime
    /// for this wait only (see the module's notes). Another wait on the same socket
    /// already holds the registration: then it polls again after a millisecond.
    async fn writable(&self) -> io::Result<()> {
        let fd = RawSocket(self.socket.as_raw_fd());
        // SAFETY: the descriptor belongs to `self.socket`, which `&self` keeps open; the
        // registration ends when `registered` drops, before this borrow does.
        let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::WRITABLE) };
        match registered.map_err(io::Error::from) {
            Ok(fd) => {
                let mut guard = fd.writable().await?;
                guard.clear_ready();
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// One `sendmmsg` call; the number of datagrams the kernel took.
    fn sendmmsg_raw(&self, mut headers: Vec<libc::mmsghdr>) -> io::Result<usize> {
        // SAFETY: every header's name and buffer point into memory the caller keeps
        // alive and unmoved for this call (see `mmsghdr`); the socket is ours and
        // non-blocking.
        let rc = unsafe {
            libc::sendmmsg(
                self.socket.as_raw_fd(),
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

    /// One `sendmmsg` call; the number of datagrams the kernel took.
    fn sendmmsg(
        &self,
        datagrams: &[std::borrow::Cow<'_, [u8]>],
        addrs: &[Option<SockAddr>],
    ) -> io::Result<usize> {
        // At most UIO_MAXIOV datagrams per call; the caller loops for the rest.
        let n = datagrams.len().min(1024);
        let mut iov: Vec<libc::iovec> = datagrams[..n]
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        let headers = iov
            .iter_mut()
            .zip(addrs)
            .map(|(v, a)| mmsghdr(v, a.as_ref()))
            .collect();
        self.sendmmsg_raw(headers)
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

    /// The socket address `dest` is sent to; `None` for a framing sender, which is bound
    /// to its interface and carries the destination in the frame.
    fn sockaddr(&self, dest: IpAddr) -> Result<Option<SockAddr>, TransmitError> {
        if self.frame_mac.is_some() {
            return match (self.source, dest) {
                (IpAddr::V6(_), IpAddr::V6(_)) => Ok(None),
                _ => Err(TransmitError::WrongFamily {
                    interface: self.iface.name.clone(),
                    family: self.family(),
                    dest,
                }),
            };
        }
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
        Ok(Some(SockAddr::from(addr)))
    }
}

/// An Ethernet frame carrying `payload` as VRRP over IPv6 from `src` to the multicast
/// `dst`, from the MAC `mac` (RFC 5798 §5.1.2: hop limit 255, next header 112;
/// RFC 2464 §7: the multicast MAC 33:33 + the group's last four bytes).
pub fn ipv6_frame(mac: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let d = dst.octets();
    let mut f = Vec::with_capacity(14 + 40 + payload.len());
    f.extend_from_slice(&[0x33, 0x33, d[12], d[13], d[14], d[15]]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x86, 0xdd]);
    // Version 6, traffic class VRRP_TOS, flow label 0.
    let tclass = VRRP_TOS as u8;
    f.extend_from_slice(&[0x60 | (tclass >> 4), tclass << 4, 0, 0]);
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&[IPPROTO_VRRP as u8, VRRP_TTL as u8]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&d);
    f.extend_from_slice(payload);
    f
}

/// Binds an AF_PACKET socket to interface `index` (struct sockaddr_ll): socket2 has no
/// constructor for link-layer addresses.
fn bind_packet(sock: &Socket, index: u32) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_ll is valid; the fields set below make it a bind to
    // one interface for every protocol (0: send only).
    let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_ifindex =
        i32::try_from(index).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    // SAFETY: `ll` is a valid sockaddr_ll that outlives the call; the length matches it.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            std::ptr::from_ref(&ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An encoded advert and where it goes.
pub type Outgoing = (IpAddr, Arc<[u8]>);

/// A datagram ready for one sender's socket: its bytes as the socket takes them and the
/// socket address they go to ([`AdvertSender::prepare`]).
#[derive(Clone, Debug)]
pub struct Prepared {
    addr: Option<SockAddr>,
    bytes: Vec<u8>,
    dest: IpAddr,
}

impl Prepared {
    /// Where it goes.
    pub fn dest(&self) -> IpAddr {
        self.dest
    }

    /// Its socket address and bytes, to keep elsewhere and send with
    /// [`AdvertSender::send_datagrams`].
    pub fn into_parts(self) -> (Option<SockAddr>, Vec<u8>) {
        (self.addr, self.bytes)
    }
}

/// A message header for `sendmmsg` over one buffer `v` to `addr` (none: a bound
/// AF_PACKET socket sends on its interface). Its pointers borrow `v` and `addr`, which
/// must stay alive and unmoved until the call returns.
fn mmsghdr(v: &mut libc::iovec, addr: Option<&SockAddr>) -> libc::mmsghdr {
    // SAFETY: an all-zero msghdr is valid (no control data, no flags).
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    if let Some(a) = addr {
        h.msg_name = a.as_ptr() as *mut libc::c_void;
        h.msg_namelen = a.len();
    }
    h.msg_iov = v;
    h.msg_iovlen = 1;
    libc::mmsghdr {
        msg_hdr: h,
        msg_len: 0,
    }
}

/// One sender per (interface, source address), shared by the instances that send from it.
#[derive(Debug, Default)]
pub struct SenderPool {
    senders: HashMap<SenderKey, Weak<AdvertSender>>,
}

/// A sender's interface index, source address and, for a framing sender, source MAC.
type SenderKey = (u32, IpAddr, Option<[u8; 6]>);

impl SenderPool {
    /// The IPv4 sender on `iface` from `source`, opened on first use.
    pub fn ipv4(
        &mut self,
        iface: &Interface,
        source: Ipv4Addr,
    ) -> Result<Arc<AdvertSender>, TransmitError> {
        self.get(iface, IpAddr::V4(source), None, || {
            AdvertSender::ipv4(iface, source)
        })
    }

    /// The IPv6 sender on `iface` from `link_local`, opened on first use.
    pub fn ipv6(
        &mut self,
        iface: &Interface,
        link_local: Ipv6Addr,
    ) -> Result<Arc<AdvertSender>, TransmitError> {
        self.get(iface, IpAddr::V6(link_local), None, || {
            AdvertSender::ipv6(iface, link_local)
        })
    }

    /// The IPv6 sender on `iface` from `link_local` whose frames come from `mac`,
    /// opened on first use.
    pub fn ipv6_framed(
        &mut self,
        iface: &Interface,
        link_local: Ipv6Addr,
        mac: [u8; 6],
    ) -> Result<Arc<AdvertSender>, TransmitError> {
        self.get(iface, IpAddr::V6(link_local), Some(mac), || {
            AdvertSender::ipv6_framed(iface, link_local, mac)
        })
    }

    fn get(
        &mut self,
        iface: &Interface,
        source: IpAddr,
        mac: Option<[u8; 6]>,
        open: impl FnOnce() -> Result<AdvertSender, TransmitError>,
    ) -> Result<Arc<AdvertSender>, TransmitError> {
        // Interfaces can be renamed or recreated under the same index: the name is
        // part of what the socket is bound to.
        let key = (iface.index, source, mac);
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
        self.socket.as_fd()
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
        Ok(AdvertSender {
            socket: self.socket,
            iface: self.iface.clone(),
            source,
            frame_mac: None,
        })
    }
}

/// A sender's descriptor, borrowed for one registration with the runtime while a send
/// waits for room; the sender owns and closes it.
struct RawSocket(std::os::fd::RawFd);

impl AsRawFd for RawSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_mac_frames_carry_the_vrrp_group_mac_hop_limit_255_and_the_payload() {
        let src: Ipv6Addr = "fe80::1".parse().expect("literal");
        let mac = [0x00, 0x00, 0x5e, 0x00, 0x02, 0x33];
        let payload = [0x31, 0x33, 0x64, 0x01, 0x00, 0x0a, 0xab, 0xcd];
        let f = ipv6_frame(mac, src, VRRP_GROUP_V6, &payload);
        assert_eq!(f.len(), 14 + 40 + payload.len());
        // RFC 2464 §7: 33:33 and the group's last four bytes; then the virtual MAC.
        assert_eq!(f[..6], [0x33, 0x33, 0, 0, 0, 0x12]);
        assert_eq!(f[6..12], mac);
        assert_eq!(f[12..14], [0x86, 0xdd]);
        let ip = &f[14..54];
        // Version 6, traffic class 0xc0, flow label 0.
        assert_eq!(ip[..4], [0x6c, 0x00, 0, 0]);
        assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), payload.len() as u16);
        assert_eq!((ip[6], ip[7]), (112, 255));
        assert_eq!(ip[8..24], src.octets());
        assert_eq!(ip[24..40], VRRP_GROUP_V6.octets());
        assert_eq!(f[54..], payload);
    }
}
