//! Limits for the clients of the control socket and the metrics endpoint: at most
//! [`MAX_CLIENTS`] at a time per listener, each with [`READ_TIMEOUT`] to send its request
//! and [`CLIENT_TIMEOUT`] in all. Idle or slow clients (thousands of open TCP connections
//! to the metrics port, say) then cost a bounded number of file descriptors, and the
//! descriptors health checks and notify scripts need are never used up by them.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

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

/// A listening socket whose clients [`serve`] answers.
pub trait Listener: Send + 'static {
    /// One client's connection.
    type Stream: Send + 'static;
    /// The next client.
    fn next(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    async fn next(&self) -> io::Result<TcpStream> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    async fn next(&self) -> io::Result<UnixStream> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// Answers each client of `listener` on a task of its own, within [`MAX_CLIENTS`] and
/// [`CLIENT_TIMEOUT`]; `what` names the listener in logs.
pub fn serve<L, F, Fut>(what: &'static str, listener: L, answer: F) -> JoinHandle<()>
where
    L: Listener,
    F: Fn(L::Stream) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut admission = Admission::new(what);
    tokio::spawn(async move {
        loop {
            let stream = match listener.next().await {
                Ok(stream) => stream,
                Err(e) => {
                    after_accept_error(what, &e).await;
                    continue;
                }
            };
            let Some(permit) = admission.admit() else {
                continue;
            };
            let served = tokio::time::timeout(CLIENT_TIMEOUT, answer(stream));
            tokio::spawn(async move {
                let _permit = permit;
                match served.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!("{what} client: {e}"),
                    Err(_) => tracing::debug!("{what} client: too slow, closed"),
                }
            });
        }
    })
}
