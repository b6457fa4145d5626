//! A user's own byte streams as connections: [`Incoming`], the listener
//! [`ServerBuilder::incoming`](crate::ServerBuilder::incoming) serves.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::net::Listener;

use crate::address::{Address, Transport};
use crate::forward::forward_async_write;

/// A user's stream as a [`Transport`]. It cannot report read readiness, so
/// `poll_read_ready` is always ready and the connection reads to find out (see
/// [`Transport`]'s cost notes).
///
/// The `Mutex` only makes the stream `Sync` (which `Transport` asks for, so that a
/// `Connection` can be shared by reference) without asking it of the user's type: every use
/// goes through `&mut self` and `Mutex::get_mut`, which never locks.
struct UserStream<T>(Mutex<T>);

impl<T> UserStream<T> {
    fn inner(self: Pin<&mut Self>) -> Pin<&mut T>
    where
        T: Unpin,
    {
        let inner = self.get_mut().0.get_mut();
        // A poisoned lock cannot happen (it is never locked), but a panic must not follow.
        Pin::new(inner.unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for UserStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.inner().poll_read(cx, buf)
    }
}

forward_async_write!(
    impl<T: [AsyncWrite + Unpin]> for UserStream<T>,
    |this| this.inner(),
    // Asked once per large frame; locking here is uncontended (nothing else locks).
    vectored: |this| this.0.lock().map(|s| s.is_write_vectored()).unwrap_or(false),
);

impl<T> Transport for UserStream<T>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Boxes a user's stream as a [`Transport`].
pub(crate) fn user_stream<T>(stream: T) -> Box<dyn Transport>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    Box::new(UserStream(Mutex::new(stream)))
}

/// The listener behind [`ServerBuilder::incoming`](crate::ServerBuilder::incoming): a
/// `Stream` of the application's own connections, each a byte stream and the peer's
/// [`Address`].
///
/// An `Err` item is an accept error (logged and counted in
/// [`ErrorStats::accept`](crate::ErrorStats::accept); the server backs off and carries on).
/// When the stream ends, the server accepts nothing more and keeps serving the connections it
/// has until it is shut down.
pub struct Incoming<St> {
    streams: Option<St>,
    local: Address,
}

impl<St> fmt::Debug for Incoming<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("local", &self.local)
            .field("ended", &self.streams.is_none())
            .finish_non_exhaustive()
    }
}

impl<St> Incoming<St> {
    pub(crate) fn new(streams: St, local: Address) -> Self {
        Incoming {
            streams: Some(streams),
            local,
        }
    }
}

impl<St, T> Listener for Incoming<St>
where
    St: Stream<Item = io::Result<(T, Address)>> + Unpin,
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Io = Box<dyn Transport>;
    type Addr = Address;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Io, Address)>> {
        let Some(streams) = self.streams.as_mut() else {
            return Poll::Pending;
        };
        match Pin::new(streams).poll_next(cx) {
            Poll::Ready(Some(Ok((stream, peer)))) => Poll::Ready(Ok((user_stream(stream), peer))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Err(e)),
            Poll::Ready(None) => {
                tracing::debug!("the stream of incoming connections ended");
                self.streams = None;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn local_addr(&self) -> io::Result<Address> {
        Ok(self.local.clone())
    }
}
