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

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use vigil_common::VridKey;

use crate::datapath::transmit::{AdvertSender, Prepared, TransmitError};
use crate::vrrp::VirtualRouter;

/// Where one instance's adverts go and what they are.
struct Slot {
    key: VridKey,
    /// Instance name, for the rare warning.
    name: String,
    sender: Arc<AdvertSender>,
    /// The multicast group, or each unicast peer.
    dests: Vec<IpAddr>,
    /// The priority the adverts were encoded at, and one datagram per destination.
    encoded: Option<(u8, Vec<Prepared>)>,
    /// Adverts queued this round (each goes to every destination).
    queued: u32,
    /// Datagrams sent.
    sent: u64,
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
    slots: Vec<Option<Slot>>,
    index: KeyMap<usize>,
    /// Slots with adverts queued this round, in the order first queued.
    queued: Vec<usize>,
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
        let Some(slot) = self.slots[i].as_mut() else {
            return false;
        };
        if !matches!(&slot.encoded, Some((p, _)) if *p == priority) {
            return false;
        }
        if slot.queued == 0 {
            self.queued.push(i);
        }
        slot.queued += 1;
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
        if let Some(slot) = self.slots[i].as_mut() {
            // A reload in place may have changed the peers.
            slot.dests = destinations(&spec);
            slot.encoded = Some((priority, encode(slot, router, priority)));
        }
        self.queue(&key, priority);
    }

    fn insert(&mut self, key: VridKey, spec: &SlotSpec<'_>) -> usize {
        let slot = Slot {
            key,
            name: spec.name.to_owned(),
            sender: spec.sender.clone(),
            dests: destinations(spec),
            encoded: None,
            queued: 0,
            sent: 0,
        };
        let i = match self.slots.iter().position(Option::is_none) {
            Some(free) => {
                self.slots[free] = Some(slot);
                free
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.index.insert(key, i);
        i
    }

    /// Drops the encoded adverts of `key` (its election's configuration changed); the
    /// count of adverts sent stays.
    pub fn reencode(&mut self, key: &VridKey) {
        if let Some(slot) = self.slot_mut(key) {
            slot.encoded = None;
        }
    }

    /// Forgets `key`'s slot (its instance is gone), after sending what it queued.
    pub async fn forget(&mut self, key: &VridKey) {
        self.flush(key).await;
        if let Some(i) = self.index.remove(key) {
            self.slots[i] = None;
        }
    }

    /// Datagrams sent for `key`.
    pub fn sent(&self, key: &VridKey) -> u64 {
        self.index
            .get(key)
            .and_then(|&i| self.slots[i].as_ref())
            .map_or(0, |s| s.sent)
    }

    fn slot_mut(&mut self, key: &VridKey) -> Option<&mut Slot> {
        let i = *self.index.get(key)?;
        self.slots[i].as_mut()
    }

    /// Sends what `key` queued now (its addresses are about to move: RFC 5798 §6.4.1 and
    /// §6.4.3 want the advert out first; a takeover's first advert goes before its log
    /// line). Returns how many datagrams went out.
    pub async fn flush(&mut self, key: &VridKey) -> usize {
        let Some(&i) = self.index.get(key) else {
            return 0;
        };
        let Some(at) = self.queued.iter().position(|&q| q == i) else {
            return 0;
        };
        self.queued.remove(at);
        self.send_slots(&[i]).await
    }

    /// Sends every advert queued this round: one `sendmmsg` per shared socket.
    pub async fn send(&mut self) {
        if self.queued.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.queued);
        while !pending.is_empty() {
            let Some(first) = self.slots[pending[0]].as_ref() else {
                pending.remove(0);
                continue;
            };
            let sender = first.sender.clone();
            let (group, rest): (Vec<usize>, Vec<usize>) = pending.iter().partition(|&&i| {
                self.slots[i]
                    .as_ref()
                    .is_some_and(|s| Arc::ptr_eq(&s.sender, &sender))
            });
            self.send_slots(&group).await;
            pending = rest;
        }
        // Keeps the allocation for the next round.
        pending.clear();
        self.queued = pending;
    }

    /// Sends the queued adverts of `group`, slots that share one socket; returns how
    /// many datagrams went out.
    async fn send_slots(&mut self, group: &[usize]) -> usize {
        let Some(sender) = group
            .first()
            .and_then(|&i| self.slots[i].as_ref())
            .map(|s| s.sender.clone())
        else {
            return 0;
        };
        let mut messages: Vec<&Prepared> = Vec::new();
        for &i in group {
            if let Some(Slot {
                encoded: Some((_, datagrams)),
                queued,
                ..
            }) = &self.slots[i]
            {
                for _ in 0..*queued {
                    messages.extend(datagrams.iter());
                }
            }
        }
        let (total, error) = sender.send_prepared(&messages).await;
        drop(messages);
        let mut sent = total;
        // The first `sent` went out, in batch order.
        for &i in group {
            let Some(slot) = self.slots[i].as_mut() else {
                continue;
            };
            let mine = slot.encoded.as_ref().map_or(0, |(_, d)| d.len()) * slot.queued as usize;
            let ok = sent.min(mine);
            sent -= ok;
            slot.sent += ok as u64;
            slot.queued = 0;
            if ok < mine
                && let Some(e) = &error
            {
                tracing::warn!(instance = %slot.name, vrid = slot.key.vrid, "advert not sent: {e}");
            }
        }
        total
    }
}

/// The multicast group, or each unicast peer.
fn destinations(spec: &SlotSpec<'_>) -> Vec<IpAddr> {
    if spec.unicast_peers.is_empty() {
        vec![spec.sender.multicast_group()]
    } else {
        spec.unicast_peers.to_vec()
    }
}

/// The advert at `priority` for each of the slot's destinations.
fn encode(slot: &Slot, router: &VirtualRouter, priority: u8) -> Vec<Prepared> {
    let advert = router.advertisement(priority);
    let mode = router.config().checksum_mode();
    let source = slot.sender.source();
    let mut out = Vec::with_capacity(slot.dests.len());
    for &dest in &slot.dests {
        // The v3 checksum covers the destination, so each peer gets its own copy.
        let prepared = advert
            .encode(source, dest, mode)
            .map_err(|e| format!("cannot encode advert: {e}"))
            .and_then(|bytes| {
                slot.sender
                    .prepare(dest, &bytes)
                    .map_err(|e: TransmitError| e.to_string())
            });
        match prepared {
            Ok(p) => out.push(p),
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
