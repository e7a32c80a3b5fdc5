//! A Master's transmit path. In the steady state a Master's only work is its advert
//! every Advertisement_Interval (RFC 5798 §6.4.3), which the election asks for with
//! [`Action::SendAdvert`]; at hundreds of instances and 10 ms intervals that is tens of
//! thousands of adverts a second, so this path touches as little as it can.
//!
//! Each instance has a slot, found by its VRID key through one small hash map: the advert
//! encoded at the priority last sent (checksum included), already in the shape its socket
//! takes (frame built, socket address converted), once per destination. Queuing an
//! advert is a lookup and a push of the slot's index; the election is only asked to
//! encode again when the priority differs, and a reconfiguration drops the bytes. At the
//! end of a round the adverts queued by every instance sharing a socket leave in one
//! `sendmmsg` call, built from the slots' bytes in place.
//!
//! The kernel reads every datagram's bytes and socket address in that call, and a round
//! comes only every interval, when they are no longer in the CPU's caches: so what a
//! round reads is kept dense. The datagrams of every slot on one socket lie back to back
//! in that socket's buffer, each destination's socket address is kept once per socket
//! and shared, and what a round needs of a slot (its socket, datagrams, queue count and
//! priority) is a small record in one array apart from the rest.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use socket2::SockAddr;
use vigil_common::VridKey;

use crate::datapath::transmit::{AdvertSender, TransmitError};
use crate::vrrp::VirtualRouter;

/// What a round needs of one slot.
#[derive(Clone, Copy, Debug, Default)]
struct Hot {
    /// The priority its datagrams were encoded at; `None`: encode before sending.
    priority: Option<u8>,
    /// Its socket, an index into [`Adverts::sockets`].
    socket: u32,
    /// Its datagrams: `count` entries of the socket's table from `first`.
    first: u32,
    count: u32,
    /// Adverts queued this round (each goes to every destination).
    queued: u32,
    /// Datagrams sent.
    sent: u64,
}

/// The rest of a slot: who it is, where its adverts go.
struct Slot {
    key: VridKey,
    /// Instance name, for the rare warning.
    name: String,
    /// The multicast group, or each unicast peer.
    dests: Vec<IpAddr>,
}

/// One datagram in a socket's buffer.
#[derive(Clone, Copy, Debug)]
struct Datagram {
    offset: u32,
    len: u32,
    /// Its destination, an index into the socket's `names`.
    name: u32,
}

/// One socket and the datagrams of every slot that sends on it.
struct Socket {
    sender: Arc<AdvertSender>,
    /// Every datagram's bytes, back to back.
    bytes: Vec<u8>,
    datagrams: Vec<Datagram>,
    /// Each destination's socket address (`None`: a framing sender's, which carries the
    /// destination in the frame), once.
    names: Vec<(IpAddr, Option<SockAddr>)>,
    /// Slots with adverts queued this round, in the order first queued.
    queued: Vec<u32>,
    /// Bytes and table entries no slot uses any more (re-encoded at another length, or
    /// forgotten): the buffer is packed again when they outweigh the rest.
    dead_bytes: usize,
    dead_entries: usize,
}

/// Hashes a [`VridKey`] (eight bytes) with a multiply and a rotate: the keys are few and
/// the agent's own, so the default hasher's protection against chosen keys buys nothing
/// and costs more than the rest of a lookup.
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A map keyed by VRID key with [`KeyHasher`].
pub(super) type KeyMap<V> = HashMap<VridKey, V, BuildHasherDefault<KeyHasher>>;

/// Every instance's encoded adverts, and the adverts queued this round.
#[derive(Default)]
pub struct Adverts {
    hot: Vec<Hot>,
    slots: Vec<Option<Slot>>,
    index: KeyMap<u32>,
    sockets: Vec<Socket>,
    /// Sockets with adverts queued this round, in the order first queued.
    pending: Vec<u32>,
}

/// What a slot is made from: the instance's name, socket and destinations.
pub struct SlotSpec<'a> {
    /// Instance name.
    pub name: &'a str,
    /// Its socket.
    pub sender: &'a Arc<AdvertSender>,
    /// Unicast peers; empty: the sender's multicast group.
    pub unicast_peers: &'a [IpAddr],
}

impl Adverts {
    /// Queues one advert at `priority` for `key` if its bytes are ready; `false` when
    /// the slot must be made or encoded again first ([`Adverts::queue_encoding`]).
    pub fn queue(&mut self, key: &VridKey, priority: u8) -> bool {
        let Some(&i) = self.index.get(key) else {
            return false;
        };
        let hot = &mut self.hot[i as usize];
        if hot.priority != Some(priority) {
            return false;
        }
        if hot.queued == 0 {
            let socket = &mut self.sockets[hot.socket as usize];
            if socket.queued.is_empty() {
                self.pending.push(hot.socket);
            }
            socket.queued.push(i);
        }
        hot.queued += 1;
        true
    }

    /// Queues one advert at `priority` for `key`, making its slot from `spec` and
    /// encoding the advert with `router` as needed. Adverts it queued at another
    /// priority leave first, as they were.
    pub async fn queue_encoding(
        &mut self,
        key: VridKey,
        priority: u8,
        spec: SlotSpec<'_>,
        router: &VirtualRouter,
    ) {
        if self.queue(&key, priority) {
            return;
        }
        self.flush(&key).await;
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => self.insert(key, &spec),
        };
        self.encode(i, &spec, router, priority);
        self.queue(&key, priority);
    }

    fn insert(&mut self, key: VridKey, spec: &SlotSpec<'_>) -> u32 {
        let slot = Slot {
            key,
            name: spec.name.to_owned(),
            dests: destinations(spec),
        };
        let hot = Hot {
            socket: self.socket_of(spec.sender),
            ..Hot::default()
        };
        let i = match self.slots.iter().position(Option::is_none) {
            Some(free) => {
                self.slots[free] = Some(slot);
                self.hot[free] = hot;
                free
            }
            None => {
                self.slots.push(Some(slot));
                self.hot.push(hot);
                self.slots.len() - 1
            }
        };
        let i = u32::try_from(i).expect("fewer slots than instances, which fit in u32");
        self.index.insert(key, i);
        i
    }

    /// The index of `sender`'s socket, added on first use.
    fn socket_of(&mut self, sender: &Arc<AdvertSender>) -> u32 {
        let at = match self
            .sockets
            .iter()
            .position(|s| Arc::ptr_eq(&s.sender, sender))
        {
            Some(at) => at,
            None => {
                self.sockets.push(Socket {
                    sender: sender.clone(),
                    bytes: Vec::new(),
                    datagrams: Vec::new(),
                    names: Vec::new(),
                    queued: Vec::new(),
                    dead_bytes: 0,
                    dead_entries: 0,
                });
                self.sockets.len() - 1
            }
        };
        u32::try_from(at).expect("fewer sockets than instances, which fit in u32")
    }

    /// Encodes slot `i`'s advert at `priority` with `router` for each destination, into
    /// its socket's buffer: in place when the sizes are those of before (a new
    /// priority), else at the end.
    fn encode(&mut self, i: u32, spec: &SlotSpec<'_>, router: &VirtualRouter, priority: u8) {
        let Some(slot) = self.slots[i as usize].as_mut() else {
            return;
        };
        // A reload in place may have changed the peers, or the socket.
        slot.dests = destinations(spec);
        let socket = self.socket_of(spec.sender);
        let hot = self.hot[i as usize];
        if socket != hot.socket {
            self.release(i);
            self.hot[i as usize] = Hot {
                socket,
                sent: hot.sent,
                ..Hot::default()
            };
        }
        let Some(slot) = self.slots[i as usize].as_ref() else {
            return;
        };
        let made = encode(slot, spec.sender, router, priority);
        let hot = &mut self.hot[i as usize];
        let s = &mut self.sockets[hot.socket as usize];
        let old = span(&s.datagrams, hot);
        let same_shape = old.len() == made.len()
            && old
                .iter()
                .zip(&made)
                .all(|(d, (_, _, bytes))| d.len as usize == bytes.len());
        if same_shape {
            for (k, (dest, addr, bytes)) in made.into_iter().enumerate() {
                let name = name_of(&mut s.names, dest, addr);
                let d = &mut s.datagrams[hot.first as usize + k];
                let at = d.offset as usize;
                s.bytes[at..at + bytes.len()].copy_from_slice(&bytes);
                d.name = name;
            }
        } else {
            s.dead_entries += hot.count as usize;
            s.dead_bytes += old.iter().map(|d| d.len as usize).sum::<usize>();
            hot.first = u32::try_from(s.datagrams.len()).unwrap_or(u32::MAX);
            hot.count = u32::try_from(made.len()).unwrap_or(0);
            for (dest, addr, bytes) in made {
                let name = name_of(&mut s.names, dest, addr);
                s.datagrams.push(Datagram {
                    offset: u32::try_from(s.bytes.len()).unwrap_or(u32::MAX),
                    len: u32::try_from(bytes.len()).unwrap_or(0),
                    name,
                });
                s.bytes.extend_from_slice(&bytes);
            }
        }
        hot.priority = Some(priority);
        let socket = hot.socket;
        self.pack(socket);
    }

    /// Marks slot `i`'s datagrams unused in its socket (it leaves the socket).
    fn release(&mut self, i: u32) {
        let hot = &mut self.hot[i as usize];
        let s = &mut self.sockets[hot.socket as usize];
        let old = span(&s.datagrams, hot);
        s.dead_entries += old.len();
        s.dead_bytes += old.iter().map(|d| d.len as usize).sum::<usize>();
        hot.count = 0;
        hot.priority = None;
        let socket = hot.socket;
        self.pack(socket);
    }

    /// Packs socket `socket`'s buffer and table when the unused part outweighs the rest.
    fn pack(&mut self, socket: u32) {
        let s = &self.sockets[socket as usize];
        if s.dead_bytes <= s.bytes.len() / 2 + 4096 && s.dead_entries <= s.datagrams.len() / 2 {
            return;
        }
        let s = &mut self.sockets[socket as usize];
        let (mut bytes, mut datagrams) = (Vec::new(), Vec::new());
        for (i, hot) in self.hot.iter_mut().enumerate() {
            if hot.socket != socket || hot.count == 0 || self.slots[i].is_none() {
                continue;
            }
            let first = u32::try_from(datagrams.len()).unwrap_or(u32::MAX);
            for d in span(&s.datagrams, hot) {
                let at = d.offset as usize;
                datagrams.push(Datagram {
                    offset: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
                    ..*d
                });
                bytes.extend_from_slice(&s.bytes[at..at + d.len as usize]);
            }
            hot.first = first;
        }
        s.bytes = bytes;
        s.datagrams = datagrams;
        s.dead_bytes = 0;
        s.dead_entries = 0;
    }

    /// Drops the encoded adverts of `key` (its election's configuration changed); the
    /// count of adverts sent stays.
    pub fn reencode(&mut self, key: &VridKey) {
        if let Some(&i) = self.index.get(key) {
            self.hot[i as usize].priority = None;
        }
    }

    /// Forgets `key`'s slot (its instance is gone), after sending what it queued.
    pub async fn forget(&mut self, key: &VridKey) {
        self.flush(key).await;
        if let Some(i) = self.index.remove(key) {
            self.release(i);
            self.slots[i as usize] = None;
            self.hot[i as usize] = Hot::default();
        }
    }

    /// Datagrams sent for `key`.
    pub fn sent(&self, key: &VridKey) -> u64 {
        self.index
            .get(key)
            .map_or(0, |&i| self.hot[i as usize].sent)
    }

    /// Sends what `key` queued now (its addresses are about to move: RFC 5798 §6.4.1 and
    /// §6.4.3 want the advert out first; a takeover's first advert goes before its log
    /// line). Returns how many datagrams went out.
    pub async fn flush(&mut self, key: &VridKey) -> usize {
        let Some(&i) = self.index.get(key) else {
            return 0;
        };
        let socket = self.hot[i as usize].socket;
        let s = &mut self.sockets[socket as usize];
        let Some(at) = s.queued.iter().position(|&q| q == i) else {
            return 0;
        };
        s.queued.remove(at);
        if s.queued.is_empty() {
            self.pending.retain(|&p| p != socket);
        }
        self.send_slots(socket, &[i]).await
    }

    /// Sends every advert queued this round: one `sendmmsg` per shared socket.
    pub async fn send(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        for &socket in &pending {
            let queued = std::mem::take(&mut self.sockets[socket as usize].queued);
            self.send_slots(socket, &queued).await;
            // Keeps the allocation for the next round.
            let mut queued = queued;
            queued.clear();
            self.sockets[socket as usize].queued = queued;
        }
        pending.clear();
        self.pending = pending;
    }

    /// Sends the queued adverts of `group`, slots of socket `socket`; returns how many
    /// datagrams went out.
    async fn send_slots(&mut self, socket: u32, group: &[u32]) -> usize {
        let s = &self.sockets[socket as usize];
        let mut messages = Vec::new();
        for &i in group {
            let hot = &self.hot[i as usize];
            if hot.priority.is_none() {
                continue;
            }
            let mine = span(&s.datagrams, hot);
            for _ in 0..hot.queued {
                messages.extend(mine.iter().map(|d| {
                    let (dest, addr) = &s.names[d.name as usize];
                    let at = d.offset as usize;
                    (&s.bytes[at..at + d.len as usize], addr.as_ref(), *dest)
                }));
            }
        }
        let (total, error) = s.sender.send_datagrams(&messages).await;
        drop(messages);
        let mut sent = total;
        // The first `sent` went out, in batch order.
        for &i in group {
            let hot = &mut self.hot[i as usize];
            let mine = if hot.priority.is_some() {
                hot.count as usize * hot.queued as usize
            } else {
                0
            };
            let ok = sent.min(mine);
            sent -= ok;
            hot.sent += ok as u64;
            hot.queued = 0;
            if ok < mine
                && let Some(e) = &error
                && let Some(slot) = &self.slots[i as usize]
            {
                tracing::warn!(instance = %slot.name, vrid = slot.key.vrid, "advert not sent: {e}");
            }
        }
        total
    }
}

/// The datagrams of a slot in its socket's table.
fn span<'a>(datagrams: &'a [Datagram], hot: &Hot) -> &'a [Datagram] {
    let first = hot.first as usize;
    datagrams
        .get(first..first + hot.count as usize)
        .unwrap_or_default()
}

/// The index of `dest`'s socket address in `names`, added on first use.
fn name_of(
    names: &mut Vec<(IpAddr, Option<SockAddr>)>,
    dest: IpAddr,
    addr: Option<SockAddr>,
) -> u32 {
    let at = names
        .iter()
        .position(|(d, _)| *d == dest)
        .unwrap_or_else(|| {
            names.push((dest, addr));
            names.len() - 1
        });
    u32::try_from(at).unwrap_or(0)
}

/// The multicast group, or each unicast peer.
fn destinations(spec: &SlotSpec<'_>) -> Vec<IpAddr> {
    if spec.unicast_peers.is_empty() {
        vec![spec.sender.multicast_group()]
    } else {
        spec.unicast_peers.to_vec()
    }
}

/// The advert at `priority` for each of the slot's destinations, as `sender` takes it:
/// destination, socket address, bytes.
fn encode(
    slot: &Slot,
    sender: &AdvertSender,
    router: &VirtualRouter,
    priority: u8,
) -> Vec<(IpAddr, Option<SockAddr>, Vec<u8>)> {
    let advert = router.advertisement(priority);
    let mode = router.config().checksum_mode();
    let source = sender.source();
    let mut out = Vec::with_capacity(slot.dests.len());
    for &dest in &slot.dests {
        // The v3 checksum covers the destination, so each peer gets its own copy.
        let prepared = advert
            .encode(source, dest, mode)
            .map_err(|e| format!("cannot encode advert: {e}"))
            .and_then(|bytes| {
                sender
                    .prepare(dest, &bytes)
                    .map_err(|e: TransmitError| e.to_string())
            });
        match prepared {
            Ok(p) => {
                let (addr, bytes) = p.into_parts();
                out.push((dest, addr, bytes));
            }
            Err(e) => tracing::error!(instance = %slot.name, "{e}"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn keys_that_differ_in_any_field_hash_apart() {
        let build = BuildHasherDefault::<KeyHasher>::default();
        let key = |ifindex, family, vrid| VridKey {
            ifindex,
            family,
            vrid,
            _pad: 0,
        };
        let mut seen = std::collections::HashSet::new();
        for ifindex in 1..4 {
            for family in [2, 10] {
                for vrid in 1..=255 {
                    let k = key(ifindex, family, vrid);
                    assert!(seen.insert(build.hash_one(k)), "{k:?} collides");
                }
            }
        }
    }
}
