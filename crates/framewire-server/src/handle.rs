//! The cloneable server handle: socketserver's `self.server`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::address::Address;
use crate::config::{ConnectionConfig, ServerConfig};
use crate::stats::{Counters, Stats};
use crate::warn::WarnLimit;

/// What every connection of one server shares.
pub(crate) struct Shared<S> {
    pub(crate) state: S,
    /// The part a connection sees (see [`ServerHandle::connection_view`]).
    pub(crate) conn: ConnectionShared,
    /// The accept loop's settings.
    pub(crate) config: ServerConfig,
    pub(crate) local_addr: Address,
    pub(crate) stopped: CancellationToken,
    pub(crate) per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Rate limit of the warnings about connections.
    pub(crate) warn_limit: WarnLimit,
}

/// A connection's narrow view of its server: its own settings, the counters it adds to, the
/// shutdown it watches, and ack mode's sessions. The accept loop's settings, the per-IP map
/// and the other server-wide state are not in it.
pub(crate) struct ConnectionShared {
    pub(crate) config: ConnectionConfig,
    pub(crate) counters: Counters,
    pub(crate) shutdown: CancellationToken,
    /// Set just before the handlers still running after the grace period are aborted: an
    /// aborted handler is not done with the messages it received (ack mode acknowledges
    /// nothing more from then on).
    pub(crate) aborting: std::sync::atomic::AtomicBool,
    /// Ack mode's sessions: kept after their connection dropped, and attached to live ones.
    pub(crate) sessions: framewire_codec::ack::SessionHub,
}

/// A cloneable handle to a running (or not yet running) server: socketserver's `self.server`.
///
/// Get one from [`Server::handle`](crate::Server::handle) before serving, or from
/// [`Connection::server`](crate::Connection::server) inside a handler. All methods are cheap
/// and non-blocking; [`shutdown`](ServerHandle::shutdown) may be called from any task or
/// thread, including a handler, and never deadlocks (unlike socketserver's `shutdown()` called
/// from the serving thread).
///
/// ```no_run
/// use framewire_server::{Connection, Server, ServerError};
/// use std::time::Duration;
///
/// # async fn run() -> Result<(), ServerError> {
/// let server = Server::bind("127.0.0.1:9999").await?;
/// let handle = server.handle(); // taken before `serve` consumes the server
/// tokio::spawn(async move {
///     tokio::time::sleep(Duration::from_secs(60)).await;
///     let stats = handle.stats();
///     println!("{} connections so far, shutting down", stats.accepted);
///     handle.shutdown(); // `serve` returns once the handlers finished or the grace period ran out
/// });
/// let report = server
///     .serve(|mut conn: Connection| async move {
///         while let Some(frame) = conn.recv().await? {
///             conn.send(frame).await?;
///         }
///         Ok::<_, ServerError>(())
///     })
///     .await;
/// println!("{} handlers aborted", report.aborted);
/// # Ok(())
/// # }
/// ```
pub struct ServerHandle<S = ()> {
    shared: Arc<Shared<S>>,
}

impl<S> ServerHandle<S> {
    pub(crate) fn new(shared: Arc<Shared<S>>) -> Self {
        ServerHandle { shared }
    }

    /// All a [`Connection`](crate::Connection) reaches of its server besides this handle's
    /// public methods.
    pub(crate) fn connection_view(&self) -> &ConnectionShared {
        &self.shared.conn
    }
}

impl<S> Clone for ServerHandle<S> {
    fn clone(&self) -> Self {
        ServerHandle::new(Arc::clone(&self.shared))
    }
}

impl<S> fmt::Debug for ServerHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.shared.local_addr)
            .field("shutting_down", &self.shared.conn.shutdown.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl<S> ServerHandle<S> {
    /// Requests a graceful shutdown: the accept loop stops accepting, handlers are signalled
    /// (their [`shutdown_signal`](ServerHandle::shutdown_signal) futures complete and
    /// `recv` ends between frames), and after the grace period the handlers still running are
    /// aborted. Returns at once; await [`stopped`](ServerHandle::stopped) to wait for the end.
    /// Calling it again does nothing.
    pub fn shutdown(&self) {
        self.shared.conn.shutdown.cancel();
    }

    /// `true` once [`shutdown`](ServerHandle::shutdown) was called (or the `serve_until`
    /// signal fired).
    pub fn is_shutting_down(&self) -> bool {
        self.shared.conn.shutdown.is_cancelled()
    }

    /// A future that completes when shutdown is requested: something a handler can
    /// `select!` on.
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: dropping it loses nothing, and a new one completes at once if
    /// shutdown was already requested.
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        ShutdownSignal::new(self.shared.conn.shutdown.clone())
    }

    /// A future that completes once `serve` has finished its graceful shutdown (every handler
    /// finished or aborted).
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe, as [`shutdown_signal`](ServerHandle::shutdown_signal).
    pub fn stopped(&self) -> ShutdownSignal {
        ShutdownSignal::new(self.shared.stopped.clone())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.conn.counters.snapshot()
    }

    /// Ack mode: the sessions kept now for clients to resume (count, unacknowledged payload
    /// bytes they hold), and the resuming HELLOs answered as lost so far. For tests that
    /// check the `max_sessions` / `max_session_bytes` caps; not a stable API.
    #[doc(hidden)]
    pub fn kept_sessions(&self) -> (usize, u64, u64) {
        let (len, bytes) = self
            .shared
            .conn
            .sessions
            .with_store(|s| (s.len(), s.bytes()));
        (len, bytes, self.shared.conn.sessions.lost())
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> &Address {
        &self.shared.local_addr
    }

    /// The shared application state set with
    /// [`ServerBuilder::state`](crate::ServerBuilder::state).
    pub fn state(&self) -> &S {
        &self.shared.state
    }
}

/// Completes when a server's shutdown is requested (or, from
/// [`ServerHandle::stopped`], when it has stopped).
///
/// It owns its state (it borrows neither the [`Connection`](crate::Connection) nor the
/// [`ServerHandle`] it came from), it can be cloned, and once the event has happened it
/// completes again every time it is polled. So take it once, before a loop, and `select!` on
/// `&mut signal` next to [`Connection::recv`](crate::Connection::recv), which borrows the
/// connection mutably:
///
/// ```
/// use framewire_server::{Connection, ServerError};
///
/// async fn handle(mut conn: Connection) -> Result<(), ServerError> {
///     let mut shutdown = conn.shutdown_signal();
///     loop {
///         tokio::select! {
///             frame = conn.recv() => match frame? {
///                 Some(frame) => conn.send(frame).await?,
///                 None => break,
///             },
///             () = &mut shutdown => {
///                 conn.send("server shutting down").await?;
///                 break;
///             }
///         }
///     }
///     Ok(())
/// }
/// ```
///
/// # Cancellation safety
///
/// Cancellation safe: it holds no data; drop it and ask for a new one at any time.
pub struct ShutdownSignal {
    token: CancellationToken,
    inner: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl ShutdownSignal {
    fn new(token: CancellationToken) -> Self {
        ShutdownSignal {
            inner: Box::pin(token.clone().cancelled_owned()),
            token,
        }
    }
}

impl Clone for ShutdownSignal {
    fn clone(&self) -> Self {
        ShutdownSignal::new(self.token.clone())
    }
}

impl fmt::Debug for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownSignal").finish_non_exhaustive()
    }
}

impl Future for ShutdownSignal {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_signal_is_cloneable_and_completes_again_after_completing() {
        let token = CancellationToken::new();
        let mut signal = ShutdownSignal::new(token.clone());
        let early = signal.clone();
        token.cancel();
        (&mut signal).await;
        // A loop that selected on `&mut signal` and went round again polls it once more.
        (&mut signal).await;
        early.await;
    }
}
