//! Single-hop BFD sockets (RFC 5881) on one interface and address family: one socket
//! receiving on UDP 3784 that reports each packet's TTL / hop limit, and one sending from
//! a port in 49152–65535 with TTL / hop limit 255, many packets per `sendmmsg`.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use crate::bfd::packet::{BFD_CONTROL_PORT, BFD_TTL, MAX_LEN, SOURCE_PORT_MIN};

/// Address family of a socket pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: &IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// A received datagram: sender, TTL / hop limit, payload length in the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Sender address and port.
    pub from: SocketAddr,
    /// TTL or hop limit the packet arrived with (`None` if the kernel did not say).
    pub ttl: Option<u8>,
    /// Bytes written into the buffer.
    pub len: usize,
}

/// One packet to send: the peer, the encoded packet and its length.
pub type Outgoing = (IpAddr, [u8; MAX_LEN], usize);

/// The two sockets of one (interface, family).
pub struct BfdSockets {
    rx: AsyncFd<OwnedFd>,
    tx: OwnedFd,
    family: Family,
    /// The source port every packet of this interface's sessions goes from.
    pub source_port: u16,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn setsockopt_int(fd: libc::c_int, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the option value is a valid c_int for its length.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as u32,
        )
    })
    .map(drop)
}

fn udp_socket(family: Family, ifname: &str) -> io::Result<OwnedFd> {
    let domain = match family {
        Family::V4 => libc::AF_INET,
        Family::V6 => libc::AF_INET6,
    };
    // SAFETY: plain syscall; the fd is owned at once.
    let raw = check(unsafe {
        libc::socket(
            domain,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: `raw` is a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if family == Family::V6 {
        setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    // Several interfaces' receive sockets share port 3784, one per device.
    setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    // SAFETY: the name is a valid buffer of its length.
    check(unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            ifname.as_ptr().cast(),
            ifname.len() as u32,
        )
    })?;
    // RFC 5881 §5: everything we send leaves with TTL / hop limit 255.
    match family {
        Family::V4 => setsockopt_int(raw, libc::IPPROTO_IP, libc::IP_TTL, i32::from(BFD_TTL))?,
        Family::V6 => setsockopt_int(
            raw,
            libc::IPPROTO_IPV6,
            libc::IPV6_UNICAST_HOPS,
            i32::from(BFD_TTL),
        )?,
    }
    Ok(fd)
}

fn bind(fd: &OwnedFd, addr: SocketAddr) -> io::Result<()> {
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
    .map(drop)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            (storage, size_of::<libc::sockaddr_in>() as u32)
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            (storage, size_of::<libc::sockaddr_in6>() as u32)
        }
    }
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                0,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

impl BfdSockets {
    /// Opens the pair on interface `ifname`; `source` (optional) pins the sending address.
    /// The sending port is the first free one from a per-interface starting point in
    /// 49152–65535 (RFC 5881 §4).
    pub fn open(family: Family, ifname: &str, source: Option<IpAddr>) -> io::Result<BfdSockets> {
        let rx = udp_socket(family, ifname)?;
        let any: IpAddr = match family {
            Family::V4 => Ipv4Addr::UNSPECIFIED.into(),
            Family::V6 => Ipv6Addr::UNSPECIFIED.into(),
        };
        bind(&rx, SocketAddr::new(any, BFD_CONTROL_PORT))?;
        match family {
            Family::V4 => setsockopt_int(rx.as_raw_fd(), libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?,
            Family::V6 => setsockopt_int(
                rx.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVHOPLIMIT,
                1,
            )?,
        }
        let tx = udp_socket(family, ifname)?;
        let span = u32::from(u16::MAX - SOURCE_PORT_MIN) + 1;
        let start = ifname
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % span;
        let mut bound = None;
        for i in 0..span {
            let port = SOURCE_PORT_MIN + ((start + i) % span) as u16;
            if bind(&tx, SocketAddr::new(source.unwrap_or(any), port)).is_ok() {
                bound = Some(port);
                break;
            }
        }
        let source_port = bound.ok_or_else(|| {
            io::Error::new(io::ErrorKind::AddrInUse, "no free UDP port in 49152-65535")
        })?;
        Ok(BfdSockets {
            // SAFETY: the OwnedFd moves into the AsyncFd and stays open as long as it.
            rx: unsafe { AsyncFd::register(rx)? },
            tx,
            family,
            source_port,
        })
    }

    /// The family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Waits for the receive socket to be readable.
    pub async fn readable(&self) -> io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>> {
        self.rx.readable().await
    }

    /// Reads one datagram without blocking; `Ok(None)` when none is waiting.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        // SAFETY: all-zero is valid for these plain C structs.
        let mut from: libc::sockaddr_storage = unsafe { zeroed() };
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr; the pointers set below outlive the call.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 8]>();
        // SAFETY: `msg` points at live buffers of the stated sizes.
        let n = unsafe { libc::recvmsg(self.rx.get_ref().as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(err)
            };
        }
        let mut ttl = None;
        // SAFETY: CMSG_* walk the control buffer the kernel filled, within msg_controllen.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let c = &*cmsg;
                let is_ttl = (c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_TTL)
                    || (c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_HOPLIMIT);
                if is_ttl {
                    let value = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
                    ttl = u8::try_from(value).ok();
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        let Some(from) = from_sockaddr(&from) else {
            return Ok(None);
        };
        Ok(Some(Received {
            from,
            ttl,
            len: n as usize,
        }))
    }

    /// Sends every `(peer, packet)` in as few `sendmmsg` calls as the kernel takes.
    /// A packet the kernel refuses (no route to a peer, say) is skipped, not the rest:
    /// returns how many went out and the first error.
    pub fn send_batch(&self, batch: &[Outgoing]) -> (usize, Option<io::Error>) {
        let mut addrs: Vec<(libc::sockaddr_storage, libc::socklen_t)> = batch
            .iter()
            .map(|(peer, _, _)| sockaddr(SocketAddr::new(*peer, BFD_CONTROL_PORT)))
            .collect();
        let mut iovs: Vec<libc::iovec> = batch
            .iter()
            .map(|(_, bytes, len)| libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: *len,
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = addrs
            .iter_mut()
            .zip(iovs.iter_mut())
            .map(|((storage, len), iov)| {
                // SAFETY: all-zero is a valid msghdr.
                let mut hdr: libc::msghdr = unsafe { zeroed() };
                hdr.msg_name = (storage as *mut libc::sockaddr_storage).cast();
                hdr.msg_namelen = *len;
                hdr.msg_iov = iov;
                hdr.msg_iovlen = 1;
                libc::mmsghdr {
                    msg_hdr: hdr,
                    msg_len: 0,
                }
            })
            .collect();
        let (mut at, mut sent, mut first_error) = (0, 0, None);
        while at < msgs.len() {
            // SAFETY: every header points at an address and an iovec alive in this frame.
            let n = unsafe {
                libc::sendmmsg(
                    self.tx.as_raw_fd(),
                    msgs[at..].as_mut_ptr(),
                    (msgs.len() - at) as u32,
                    0,
                )
            };
            if n <= 0 {
                // The message at `at` failed: note why, skip it, go on with the rest.
                first_error.get_or_insert_with(io::Error::last_os_error);
                at += 1;
                continue;
            }
            at += n as usize;
            sent += n as usize;
        }
        (sent, first_error)
    }
}
