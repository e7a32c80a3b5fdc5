//! Reads advert records from the XDP program's ring buffer in a tokio task.

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use super::event::Record;

/// Drains `ring` into `tx` until the receiver is gone.
///
/// The program wakes the fd when it writes; each wake-up drains everything there is,
/// so a burst costs one wake-up.
pub async fn forward(ring: RingBuf<MapData>, tx: mpsc::Sender<Record>) -> anyhow::Result<()> {
    // SAFETY: the RingBuf owns its map fd and keeps it open for as long as it lives,
    // which is as long as the AsyncFd that now owns it.
    let mut fd = unsafe { AsyncFd::register(ring)? };
    loop {
        let mut guard = fd.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            match Record::from_bytes(&item) {
                Some(record) => {
                    if tx.send(record).await.is_err() {
                        return Ok(());
                    }
                }
                None => tracing::warn!(len = item.len(), "ring buffer record of unexpected size"),
            }
        }
        guard.clear_ready();
    }
}
