//! A second BFD transmitter, bound to another CPU than the BFD thread, that repeats a
//! steady session's last packet when the BFD thread has not sent it in time.
//!
//! At 10 ms × 3 the peer declares the session down after 30 ms without a packet. A
//! CPU can stop running anything else for longer than that: on a virtual machine its
//! host may not run it, and on a kernel without full preemption a task in a long kernel
//! path holds it. A thread queued on such a CPU, or whose timer is armed there, waits
//! with it whatever its class, since the scheduler only pulls a woken real-time thread
//! to another CPU when the one it waits on runs a higher priority. Traced under the
//! bench's junk floods beside compiler builds (2 CPUs): the BFD thread, woken for its
//! next packet, ran 25–190 ms later, and the peer's session went down each time.
//!
//! So the BFD thread is bound to every allowed CPU but one, and this thread to that
//! one: a stall of one CPU holds only one of them. The BFD thread still sends every
//! packet ([`Standby::offer`]); this thread only repeats the last one of a session that
//! is Up and steady (no Poll, no Final: RFC 5880 §6.8.7's periodic packet, the same
//! bytes each time), once the session's transmit interval plus a quarter has passed
//! without a packet, and again at that pace while the BFD thread stays silent. When
//! the BFD thread comes back, it skips a periodic packet that would follow the
//! standby's sooner than the 75 % that §6.8.7 allows between two packets.
//!
//! [`Table`] is the rule, without threads or sockets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::bfd::packet::MAX_LEN;
use crate::bfd::{ControlPacket, State};
use crate::clock;
use crate::datapath::bfd::BfdSockets;
use crate::vrrp::Instant;

/// The standby sends once the interval plus 1/`LATE_SHARE` of it passed without a
/// packet: later than any packet of a BFD thread on time (§6.8.7: at most the interval).
pub const LATE_SHARE: u32 = 4;

/// One session's packet to repeat, and where.
struct Repeat<S> {
    socket: S,
    peer: IpAddr,
    bytes: [u8; MAX_LEN],
    len: usize,
    interval: Duration,
    /// The last packet of the session, whoever sent it.
    last: Instant,
    /// The standby sent it.
    by_standby: bool,
}

impl<S> Repeat<S> {
    fn due(&self) -> Instant {
        self.last + self.interval + self.interval / LATE_SHARE
    }
}

/// A packet the standby sends: socket, peer, bytes, length.
pub type Resend<S> = (S, IpAddr, [u8; MAX_LEN], usize);

/// The sessions the standby watches, keyed by local discriminator.
pub struct Table<S> {
    repeats: HashMap<u32, Repeat<S>>,
    /// Packets the standby sent, per session, since it started.
    sent: HashMap<u32, u64>,
}

impl<S> Default for Table<S> {
    fn default() -> Self {
        Self {
            repeats: HashMap::new(),
            sent: HashMap::new(),
        }
    }
}

/// Whether the standby may repeat `p`: the periodic packet of a session that is Up.
pub fn repeatable(p: &ControlPacket) -> bool {
    p.state == State::Up && !p.poll && !p.final_
}

impl<S: Clone> Table<S> {
    /// The BFD thread is about to send `bytes` of session `disc` at `now`, a session
    /// sending periodically every `interval`. Returns whether to send it: not when it
    /// is periodic and the standby sent the session's packet less than 3/4 of the
    /// interval ago (§6.8.7). A packet the standby may not repeat stops the repeats.
    #[expect(
        clippy::too_many_arguments,
        reason = "one packet's socket, peer, bytes and pace, as the BFD thread holds them"
    )]
    pub fn offer(
        &mut self,
        disc: u32,
        packet: &ControlPacket,
        socket: &S,
        peer: IpAddr,
        bytes: &[u8; MAX_LEN],
        len: usize,
        interval: Duration,
        now: Instant,
    ) -> bool {
        if !repeatable(packet) {
            self.repeats.remove(&disc);
            return true;
        }
        if let Some(r) = self.repeats.get(&disc)
            && r.by_standby
            && now < r.last + interval * 3 / 4
        {
            return false;
        }
        self.repeats.insert(
            disc,
            Repeat {
                socket: socket.clone(),
                peer,
                bytes: *bytes,
                len,
                interval,
                last: now,
                by_standby: false,
            },
        );
        true
    }

    /// Stops repeating session `disc`.
    pub fn withdraw(&mut self, disc: u32) {
        self.repeats.remove(&disc);
    }

    /// Keeps only the sessions `keep` says are still steady (the counts of sessions
    /// `exists` says are gone are dropped too).
    pub fn retain(
        &mut self,
        mut keep: impl FnMut(u32) -> bool,
        mut exists: impl FnMut(u32) -> bool,
    ) {
        self.repeats.retain(|&d, _| keep(d));
        self.sent.retain(|&d, _| exists(d));
    }

    /// Packets the standby sent per session.
    pub fn sent(&self) -> &HashMap<u32, u64> {
        &self.sent
    }

    /// The packets due at `now` (each marked sent by the standby now), and when the
    /// next one falls due.
    pub fn due(&mut self, now: Instant) -> (Vec<Resend<S>>, Option<Instant>) {
        let mut out = Vec::new();
        for (&d, r) in self.repeats.iter_mut().filter(|(_, r)| r.due() <= now) {
            r.last = now;
            r.by_standby = true;
            out.push((r.socket.clone(), r.peer, r.bytes, r.len));
            *self.sent.entry(d).or_default() += 1;
        }
        (out, self.repeats.values().map(Repeat::due).min())
    }

    /// Whether session `disc` is watched.
    pub fn watches(&self, disc: u32) -> bool {
        self.repeats.contains_key(&disc)
    }
}

type Shared = (Mutex<(Table<Arc<BfdSockets>>, bool)>, Condvar);

/// The standby thread; it stops when this is dropped.
pub struct Standby {
    shared: Arc<Shared>,
}

impl Standby {
    /// Binds the calling thread (the BFD thread) to every allowed CPU but the last and
    /// starts the standby on that one, at the BFD thread's real-time priority (one
    /// above `priority` where allowed). `None` with a single CPU, or when the kernel refuses a binding.
    pub fn start(priority: u8) -> Option<Standby> {
        let cpus = crate::sched::allowed_cpus();
        let (&last, rest) = cpus.split_last()?;
        if rest.is_empty() {
            return None;
        }
        let shared: Arc<Shared> = Arc::new((Mutex::new((Table::default(), false)), Condvar::new()));
        let theirs = shared.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("vigil-bfd-standby".into())
            .spawn(move || {
                let pinned = crate::sched::pin(&[last]);
                let ok = pinned.is_ok();
                let _ = ready_tx.send(pinned);
                if ok {
                    crate::sched::realtime_above("BFD standby thread", priority);
                    run(&theirs);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("BFD: no standby transmitter: {e}");
            return None;
        }
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!("BFD: no standby transmitter (CPU {last}: {e})");
                return None;
            }
            Err(_) => return None,
        }
        if let Err(e) = crate::sched::pin(rest) {
            tracing::warn!("BFD: no standby transmitter (BFD thread binding: {e})");
            stop(&shared);
            return None;
        }
        tracing::debug!(cpu = last, "BFD: standby transmitter started");
        Some(Standby { shared })
    }

    /// [`Table::offer`], waking the standby when it watches a new session.
    #[expect(
        clippy::too_many_arguments,
        reason = "one packet's socket, peer, bytes and pace, as the BFD thread holds them"
    )]
    pub fn offer(
        &self,
        disc: u32,
        packet: &ControlPacket,
        socket: &Arc<BfdSockets>,
        peer: IpAddr,
        bytes: &[u8; MAX_LEN],
        len: usize,
        interval: Duration,
        now: Instant,
    ) -> bool {
        let (lock, wake) = &*self.shared;
        let Ok(mut g) = lock.lock() else {
            return true;
        };
        let new = !g.0.watches(disc);
        let send =
            g.0.offer(disc, packet, socket, peer, bytes, len, interval, now);
        if new && g.0.watches(disc) {
            wake.notify_one();
        }
        send
    }

    /// [`Table::withdraw`].
    pub fn withdraw(&self, disc: u32) {
        if let Ok(mut g) = self.shared.0.lock() {
            g.0.withdraw(disc);
        }
    }

    /// [`Table::retain`].
    pub fn retain(&self, keep: impl FnMut(u32) -> bool, exists: impl FnMut(u32) -> bool) {
        if let Ok(mut g) = self.shared.0.lock() {
            g.0.retain(keep, exists);
        }
    }

    /// [`Table::sent`], copied.
    pub fn sent(&self) -> HashMap<u32, u64> {
        self.shared
            .0
            .lock()
            .map(|g| g.0.sent().clone())
            .unwrap_or_default()
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        stop(&self.shared);
    }
}

fn stop(shared: &Shared) {
    if let Ok(mut g) = shared.0.lock() {
        g.1 = true;
    }
    shared.1.notify_one();
}

/// The standby's loop: sleep until the next packet falls due (or a new session is
/// watched), send what is due, outside the lock.
fn run(shared: &Shared) {
    let (lock, wake) = shared;
    let Ok(mut g) = lock.lock() else { return };
    loop {
        if g.1 {
            return;
        }
        let now = clock::now();
        let (sends, next) = g.0.due(now);
        if !sends.is_empty() {
            drop(g);
            for (socket, peer, bytes, len) in &sends {
                let (_, error) = socket.send_batch(&[(*peer, *bytes, *len)]);
                if let Some(e) = error {
                    tracing::debug!("BFD standby send: {e}");
                }
            }
            g = match lock.lock() {
                Ok(g) => g,
                Err(_) => return,
            };
            continue;
        }
        g = match next {
            Some(t) => match wake.wait_timeout(g, t.saturating_duration_since(now)) {
                Ok((g, _)) => g,
                Err(_) => return,
            },
            None => match wake.wait(g) {
                Ok(g) => g,
                Err(_) => return,
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bfd::Diagnostic;

    const MS: Duration = Duration::from_millis(1);
    const DISC: u32 = 7;

    fn packet(state: State, poll: bool, final_: bool) -> ControlPacket {
        ControlPacket {
            diag: Diagnostic::None,
            state,
            poll,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: DISC,
            your_discriminator: 9,
            desired_min_tx_us: 10_000,
            required_min_rx_us: 10_000,
            required_min_echo_rx_us: 0,
            auth: None,
        }
    }

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(1_000_000_000 + ms * 1_000_000)
    }

    fn offer(t: &mut Table<u8>, p: &ControlPacket, now: Instant) -> bool {
        let mut bytes = [0u8; MAX_LEN];
        bytes[0] = u8::from(p.poll);
        t.offer(
            DISC,
            p,
            &1,
            "192.0.2.1".parse().expect("literal"),
            &bytes,
            24,
            10 * MS,
            now,
        )
    }

    #[test]
    fn silent_while_the_bfd_thread_sends_on_time() {
        let mut t = Table::default();
        let up = packet(State::Up, false, false);
        // §6.8.7: a packet every 75–100 % of the interval.
        for ms in [0, 10, 17, 27, 35, 45] {
            assert!(offer(&mut t, &up, at(ms)));
            let (sends, next) = t.due(at(ms + 10));
            assert!(
                sends.is_empty(),
                "nothing due 10 ms after a packet at {ms} ms"
            );
            assert_eq!(next, Some(at(ms) + 12_500 * Duration::from_micros(1)));
        }
    }

    #[test]
    fn repeats_the_last_packet_while_the_bfd_thread_is_held() {
        let mut t = Table::default();
        assert!(offer(&mut t, &packet(State::Up, false, false), at(0)));
        assert!(t.due(at(12)).0.is_empty());
        let (sends, next) = t.due(at(13));
        assert_eq!(sends.len(), 1);
        assert_eq!(sends[0].3, 24);
        // And again at the same pace: the peer (30 ms detection) never sees 30 ms of
        // silence.
        assert_eq!(next, Some(at(13) + 12_500 * Duration::from_micros(1)));
        assert_eq!(t.due(at(26)).0.len(), 1);
        assert_eq!(t.due(at(39)).0.len(), 1);
        assert_eq!(t.sent().get(&DISC), Some(&3));
    }

    #[test]
    fn the_bfd_thread_back_skips_a_packet_too_close_to_the_standby() {
        let mut t = Table::default();
        let up = packet(State::Up, false, false);
        assert!(offer(&mut t, &up, at(0)));
        assert_eq!(t.due(at(13)).0.len(), 1);
        // 7 ms after the standby's packet: under 75 % of 10 ms.
        assert!(!offer(&mut t, &up, at(20)));
        // 8 ms after: allowed, and the BFD thread has the session again.
        assert!(offer(&mut t, &up, at(21)));
        assert!(
            offer(&mut t, &up, at(22)),
            "its own pace is its own business"
        );
        assert!(t.due(at(34)).0.is_empty());
    }

    #[test]
    fn never_repeats_a_poll_a_final_or_a_session_not_up() {
        for p in [
            packet(State::Up, true, false),
            packet(State::Up, false, true),
            packet(State::Down, false, false),
            packet(State::Init, false, false),
            packet(State::AdminDown, false, false),
        ] {
            let mut t = Table::default();
            assert!(offer(&mut t, &packet(State::Up, false, false), at(0)));
            // Sent whatever the standby did, and the repeats stop.
            assert!(offer(&mut t, &p, at(1)));
            assert!(!t.watches(DISC), "{p:?}");
            assert_eq!(t.due(at(100)), (Vec::new(), None));
        }
    }

    #[test]
    fn a_poll_goes_out_even_right_after_the_standby() {
        let mut t = Table::default();
        assert!(offer(&mut t, &packet(State::Up, false, false), at(0)));
        assert_eq!(t.due(at(13)).0.len(), 1);
        assert!(offer(&mut t, &packet(State::Up, true, false), at(14)));
    }

    #[test]
    fn withdrawn_and_unretained_sessions_are_not_repeated() {
        let mut t = Table::default();
        assert!(offer(&mut t, &packet(State::Up, false, false), at(0)));
        t.retain(|d| d != DISC, |_| true);
        assert_eq!(t.due(at(100)), (Vec::new(), None));
        assert!(offer(&mut t, &packet(State::Up, false, false), at(100)));
        t.withdraw(DISC);
        assert_eq!(t.due(at(200)), (Vec::new(), None));
    }
}
