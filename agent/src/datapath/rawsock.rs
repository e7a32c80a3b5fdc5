//! The raw-socket receive path, for when XDP is off or unavailable.
//!
//! An AF_PACKET socket on the interface, with a classic BPF filter that lets only IP
//! protocol 112 through, hands whole Ethernet frames to the agent — the same bytes the
//! XDP program sees — and `vigil_common::validate` judges them exactly as the program
//! does. Records come out in the same shape as the ring buffer's.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use vigil_common::suppress;
use vigil_common::validate::{self, Advert, Parsed};
use vigil_common::{AdvertEvent, IfaceStats, Verdict, VridKey, WatchEntry};

use super::event::Record;
use crate::vrrp::endpoint::Datapath;

const ETH_P_ALL: u16 = 0x0003;
const PACKET_OUTGOING: u8 = 4;

/// Classic BPF: accept IPv4/IPv6 (optionally behind one 802.1Q tag) with protocol 112.
const FILTER: [libc::sock_filter; 17] = [
    op(0x28, 0, 0, 12),     // 0: ldh [12]
    op(0x15, 0, 2, 0x0800), // 1: jeq IPv4 ? 2 : 4
    op(0x30, 0, 0, 23),     // 2: ldb [23]
    op(0x15, 11, 12, 112),  // 3: jeq 112 ? accept : reject
    op(0x15, 0, 2, 0x86dd), // 4: jeq IPv6 ? 5 : 7
    op(0x30, 0, 0, 20),     // 5: ldb [20]
    op(0x15, 8, 9, 112),    // 6: jeq 112 ? accept : reject
    op(0x15, 0, 8, 0x8100), // 7: jeq VLAN ? 8 : reject
    op(0x28, 0, 0, 16),     // 8: ldh [16]
    op(0x15, 0, 2, 0x0800), // 9: jeq IPv4 ? 10 : 12
    op(0x30, 0, 0, 27),     // 10: ldb [27]
    op(0x15, 3, 4, 112),    // 11: jeq 112 ? accept : reject
    op(0x15, 0, 3, 0x86dd), // 12: jeq IPv6 ? 13 : reject
    op(0x30, 0, 0, 24),     // 13: ldb [24]
    op(0x15, 0, 1, 112),    // 14: jeq 112 ? accept : reject
    op(0x06, 0, 0, 0xffff), // 15: accept
    op(0x06, 0, 0, 0),      // 16: reject
];

const fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// A raw receive socket on one interface, with the validation state of the XDP program.
pub struct RawReceiver {
    fd: AsyncFd<OwnedFd>,
    /// What the XDP program would know: watch entries, counters, trace switches.
    pub judge: Judge,
}

/// The userspace twin of the XDP program's state for one interface.
pub struct Judge {
    /// Interface index.
    pub ifindex: u32,
    /// Watched virtual routers of this interface.
    pub watch: HashMap<VridKey, WatchEntry>,
    /// Verdict counters, as the program keeps them.
    pub stats: IfaceStats,
    /// Report valid adverts of unwatched VRIDs (`vigil trace`).
    pub trace_valid: bool,
    /// Report everything, dropped frames included (`vigil trace --all`).
    pub trace_all: bool,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens an AF_PACKET socket bound to `ifindex` that receives only what `filter` accepts,
/// and subscribes the interface to the VRRP multicast MACs (so a NIC's filter lets
/// adverts in, for this socket and for XDP alike).
pub fn packet_socket(ifindex: u32, filter: &[libc::sock_filter]) -> io::Result<OwnedFd> {
    // SAFETY: plain syscalls with valid pointers to local values; the fd is owned at once.
    unsafe {
        // Protocol 0 until the bind: a socket opened with ETH_P_ALL is hooked on every
        // interface at once, and binding it to one then unhooks it, which waits for an
        // RCU grace period (milliseconds of start-up).
        let raw = check(libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        ))?;
        let fd = OwnedFd::from_raw_fd(raw);
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        check(libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as u32,
        ))?;
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = ifindex as i32;
        check(libc::bind(
            raw,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        ))?;
        join_vrrp_groups(&fd, ifindex)?;
        let on: libc::c_int = 1;
        check(libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        ))?;
        Ok(fd)
    }
}

/// Subscribes the packet socket `fd` to the VRRP multicast MACs (IPv4 and IPv6) on
/// `ifindex`, for as long as it is open.
fn join_vrrp_groups(fd: &OwnedFd, ifindex: u32) -> io::Result<()> {
    for mac in [[0x01, 0x00, 0x5e, 0, 0, 0x12], [0x33, 0x33, 0, 0, 0, 0x12]] {
        // SAFETY: a plain syscall with a pointer to a local value of the size given.
        unsafe {
            let mut mreq: libc::packet_mreq = std::mem::zeroed();
            mreq.mr_ifindex = ifindex as i32;
            mreq.mr_type = libc::PACKET_MR_MULTICAST as u16;
            mreq.mr_alen = 6;
            mreq.mr_address[..6].copy_from_slice(&mac);
            check(libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mreq as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as u32,
            ))?;
        }
    }
    Ok(())
}

/// A socket that receives nothing but keeps the VRRP multicast MACs subscribed on the
/// interface while the XDP path is in use. Protocol 0 and never bound: the kernel hooks
/// it nowhere, so no frame is ever queued to it.
pub fn multicast_membership(ifindex: u32) -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall; the fd is owned at once.
    let fd = unsafe {
        OwnedFd::from_raw_fd(check(libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        ))?)
    };
    join_vrrp_groups(&fd, ifindex)?;
    Ok(fd)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl RawReceiver {
    /// Opens the socket on `ifindex`.
    pub fn open(ifindex: u32) -> io::Result<Self> {
        let fd = packet_socket(ifindex, &FILTER)?;
        Ok(Self {
            // SAFETY: the OwnedFd moves into the AsyncFd and stays open as long as it.
            fd: unsafe { AsyncFd::register(fd)? },
            judge: Judge {
                ifindex,
                watch: HashMap::new(),
                stats: IfaceStats::default(),
                trace_valid: false,
                trace_all: false,
            },
        })
    }

    /// Forwards every frame, unjudged, until the receiver of `tx` is gone: the agent's
    /// endpoint judges them as the XDP program would.
    pub async fn forward(self, tx: mpsc::Sender<Datapath>) -> io::Result<()> {
        let ifindex = self.judge.ifindex;
        let mut buf = vec![0u8; 9216];
        loop {
            let mut guard = self.fd.readable().await?;
            loop {
                match recv_frame(guard.get_inner(), &mut buf) {
                    Ok(Some((ts_ns, n))) => {
                        let frame = Datapath::Frame {
                            ifindex,
                            ts_ns,
                            bytes: buf[..n].to_vec(),
                        };
                        if tx.send(frame).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(None) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        guard.clear_ready();
                        break;
                    }
                    // See `run`: a link going down is reported once; keep listening.
                    Err(e) if transient(&e) => {
                        tracing::info!(ifindex, "raw receive: {e}; still listening");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Receives, judges and forwards frames until the receiver of `tx` is gone (for
    /// `vigil trace`, which reports every frame).
    pub async fn run(mut self, tx: mpsc::Sender<Record>) -> io::Result<()> {
        let mut buf = vec![0u8; 9216];
        loop {
            let mut guard = self.fd.readable().await?;
            loop {
                match recv_frame(guard.get_inner(), &mut buf) {
                    Ok(Some((ts, n))) => {
                        if let Some(record) = self.judge.judge(&buf[..n], ts)
                            && tx.send(record).await.is_err()
                        {
                            return Ok(());
                        }
                    }
                    Ok(None) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        guard.clear_ready();
                        break;
                    }
                    // The kernel reports a link going down once, as a pending socket
                    // error; the socket stays bound and delivers again after link up.
                    // Ending here would leave the instances on this link deaf.
                    Err(e) if transient(&e) => {
                        tracing::info!(
                            ifindex = self.judge.ifindex,
                            "raw receive: {e}; still listening"
                        );
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// Errors a packet socket reports for a moment of the link's life (down, carrier lost,
/// a frame that could not be delivered), not for the socket itself.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENETDOWN | libc::ENOBUFS | libc::ENOMEM | libc::EINTR | libc::ENXIO)
    )
}

/// Receives one frame: (kernel arrival time on CLOCK_MONOTONIC, length), skipping frames
/// this host sent.
fn recv_frame(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<(u64, usize)>> {
    {
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        // SAFETY: msghdr points at live local buffers of the stated sizes.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            let n = libc::recvmsg(fd.as_raw_fd(), &mut msg, 0);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            // The skb timestamp is CLOCK_REALTIME; map it onto CLOCK_MONOTONIC, the
            // election's clock, through the current offset of the two.
            let mut ts_real = None;
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    let ts =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                    ts_real = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            let mono = clock_ns(libc::CLOCK_MONOTONIC);
            let real = clock_ns(libc::CLOCK_REALTIME);
            let ts = ts_real.map_or(mono, |t| mono.saturating_sub(real.saturating_sub(t)));
            (n as usize, ts)
        };
        if from.sll_pkttype == PACKET_OUTGOING {
            return Ok(None);
        }
        Ok(Some((n.1, n.0)))
    }
}

impl Judge {
    /// Judges one frame like the XDP program; returns the record to report, if any.
    pub fn judge(&mut self, frame: &[u8], ts_ns: u64) -> Option<Record> {
        let mut a = Advert::default();
        let verdict = match validate::parse(frame, &mut a) {
            Parsed::NotVrrp => return None,
            Parsed::Broken(v) => v,
            Parsed::Vrrp => {
                let entry = validate::watch_key(self.ifindex, &a).and_then(|k| self.watch.get(&k));
                validate::check(frame, &a, entry)
            }
        };
        self.stats.count(verdict);
        let report =
            self.trace_all || verdict == Verdict::Accept || (self.trace_valid && verdict.passes());
        let addr_digest = if verdict.passes() {
            validate::address_digest(frame, &a).unwrap_or(0)
        } else {
            0
        };
        report.then(|| {
            let mut raw = AdvertEvent::zeroed();
            suppress::fill(
                &mut raw,
                ts_ns,
                ts_ns,
                self.ifindex,
                &a,
                verdict,
                addr_digest,
            );
            Record { raw }
        })
    }
}
