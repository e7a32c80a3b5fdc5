//! Limits for the clients of the control socket and the metrics endpoint: at most
//! [`MAX_CLIENTS`] at a time per listener, each with [`READ_TIMEOUT`] to send its request
//! and [`CLIENT_TIMEOUT`] in all. Idle or slow clients (thousands of open TCP connections
//! to the metrics port, say) then cost a bounded number of file descriptors, and the
//! descriptors health checks and notify scripts need are never used up by them.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Clients served at once by one listener; more are closed as soon as accepted.
pub const MAX_CLIENTS: usize = 16;
/// Time a client has to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client may take in all (a reload waits for the new file to be applied).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest request line read.
pub const MAX_REQUEST: u64 = 4096;

/// Admission to one listener.
pub struct Admission {
    what: &'static str,
    slots: Arc<Semaphore>,
    refused: u64,
}

impl Admission {
    /// Admission for the listener called `what` in logs.
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            slots: Arc::new(Semaphore::new(MAX_CLIENTS)),
            refused: 0,
        }
    }

    /// A slot for a new client, or `None` when every slot is taken (the caller closes
    /// the connection at once).
    pub fn admit(&mut self) -> Option<OwnedSemaphorePermit> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                self.refused += 1;
                // One line for the first refusal and then one per thousand.
                if self.refused % 1000 == 1 {
                    tracing::warn!(
                        "{}: {MAX_CLIENTS} clients already connected; closing new connections \
                         ({} refused so far)",
                        self.what,
                        self.refused
                    );
                }
                None
            }
        }
    }
}

/// After a failed accept: out of descriptors (EMFILE, ENFILE) or memory the next accept
/// fails the same way at once, so wait a little instead of spinning.
pub async fn after_accept_error(what: &str, e: &io::Error) {
    tracing::debug!("{what}: accept: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
