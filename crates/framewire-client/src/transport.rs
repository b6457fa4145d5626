//! Where to connect, and the byte streams a connection runs over: TCP, a Unix socket, TLS
//! over either (feature `tls`), or the application's own stream.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use framewire_codec::Endpoint;

use crate::tls::ClientTls;
use crate::ClientError;

/// Opening a byte stream to an [`Endpoint`] (the client's side of the shared address type).
pub(crate) trait Open {
    /// Opens a byte stream to this endpoint and, with `tls`, runs the TLS handshake over it,
    /// giving up after `timeout` for both together.
    ///
    /// TCP connections get `TCP_NODELAY`: framewire writes whole frames and flushes them on
    /// purpose, so Nagle's algorithm would only add latency to request/response traffic.
    ///
    /// # Errors
    ///
    /// [`ClientError::ConnectTimeout`] when `timeout` passes first, [`ClientError::Connect`]
    /// when the connection is refused or the name does not resolve (or the endpoint is
    /// [`Endpoint::Stream`]), [`ClientError::Tls`] when the TLS handshake fails.
    async fn open(
        &self,
        timeout: Duration,
        tls: Option<&ClientTls>,
    ) -> Result<ByteStream, ClientError>;
}

impl Open for Endpoint {
    async fn open(
        &self,
        timeout: Duration,
        tls: Option<&ClientTls>,
    ) -> Result<ByteStream, ClientError> {
        let attempt = async {
            let stream = match self {
                Endpoint::Tcp(addr) => {
                    async {
                        let stream = TcpStream::connect(addr.as_str()).await?;
                        stream.set_nodelay(true)?;
                        Ok::<_, io::Error>(ByteStream::Tcp(stream))
                    }
                    .await
                }
                #[cfg(unix)]
                Endpoint::Unix(path) => tokio::net::UnixStream::connect(path)
                    .await
                    .map(ByteStream::Unix),
                Endpoint::Stream => Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "a stream handed over by the application cannot be reopened",
                )),
                _ => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this kind of endpoint is not supported by this client",
                )),
            };
            let stream = stream.map_err(|source| ClientError::Connect {
                endpoint: self.to_string(),
                source,
            })?;
            match tls {
                Some(tls) => tls.handshake(stream, self).await,
                None => Ok(stream),
            }
        };
        within_connect_timeout(self, timeout, attempt).await
    }
}

/// Runs `attempt` (a connect, a TLS handshake or both) to `endpoint`, failing with
/// [`ClientError::ConnectTimeout`] once `timeout` has passed.
pub(crate) async fn within_connect_timeout<T>(
    endpoint: &Endpoint,
    timeout: Duration,
    attempt: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::ConnectTimeout {
            endpoint: endpoint.to_string(),
            timeout,
        }),
    }
}

/// The endpoints a client may connect to, in order, and which one it is on (failover).
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    /// Never empty (checked by `IntoEndpoints`).
    list: Vec<Endpoint>,
    current: usize,
}

impl Endpoints {
    pub(crate) fn new(list: Vec<Endpoint>) -> Self {
        Endpoints { list, current: 0 }
    }

    /// The endpoint connected last (the first one before any connection).
    pub(crate) fn current(&self) -> &Endpoint {
        // `current` is always an index into the non-empty list.
        &self.list[self.current % self.list.len().max(1)]
    }

    /// Runs `attempt` on each endpoint once, starting with the current one, until one
    /// succeeds; that one becomes current. With one endpoint its error is returned as is;
    /// with several, [`ClientError::NoEndpoint`] carries every endpoint's error.
    pub(crate) async fn first_answering<T, F, Fut>(
        &mut self,
        mut attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(&Endpoint) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let n = self.list.len();
        let mut errors = Vec::new();
        for i in 0..n {
            let index = (self.current + i) % n;
            match attempt(&self.list[index]).await {
                Ok(t) => {
                    self.current = index;
                    return Ok(t);
                }
                Err(e) if n == 1 => return Err(e),
                Err(e) => {
                    tracing::debug!(endpoint = %self.list[index], error = %e, "endpoint did not answer; trying the next");
                    errors.push(e);
                }
            }
        }
        Err(ClientError::NoEndpoint { errors })
    }
}

/// Anything a connection can run over besides TCP and Unix sockets: TLS sessions and the
/// application's own streams.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed [`Io`] (TLS over another [`ByteStream`], or the application's stream).
pub(crate) struct Boxed(pub(crate) Box<dyn Io>);

impl Drop for Boxed {
    /// Shuts the stream down if the client was dropped without
    /// [`Client::close`](crate::Client::close): best effort, without waiting. For TLS this
    /// sends close_notify, so the server sees an orderly end rather than rustls'
    /// `UnexpectedEof`; for other streams it is what dropping them would do anyway.
    fn drop(&mut self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = Pin::new(&mut *self.0).poll_shutdown(&mut cx);
    }
}

impl fmt::Debug for Boxed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Boxed(..)")
    }
}

/// A connected byte stream: TCP, a Unix socket, or a boxed one (TLS, the application's).
///
/// TCP and Unix sockets split into owned halves with no lock between them; a boxed stream
/// splits with `tokio::io::split`, whose halves share the stream behind a lock (uncontended
/// unless a reader and a writer poll at the same instant).
#[derive(Debug)]
pub(crate) enum ByteStream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
    Boxed(Boxed),
}

impl ByteStream {
    /// Boxes any stream.
    pub(crate) fn boxed(io: impl Io) -> Self {
        ByteStream::Boxed(Boxed(Box::new(io)))
    }

    /// Splits into owned halves.
    pub(crate) fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            ByteStream::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            #[cfg(unix)]
            ByteStream::Unix(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Unix(r), WriteHalf::Unix(w))
            }
            ByteStream::Boxed(b) => {
                let (r, w) = tokio::io::split(b);
                (ReadHalf::Boxed(r), WriteHalf::Boxed(w))
            }
        }
    }
}

/// The reading half of a [`ByteStream`].
#[derive(Debug)]
pub(crate) enum ReadHalf {
    Tcp(tokio::net::tcp::OwnedReadHalf),
    #[cfg(unix)]
    Unix(tokio::net::unix::OwnedReadHalf),
    Boxed(tokio::io::ReadHalf<Boxed>),
}

/// The writing half of a [`ByteStream`].
#[derive(Debug)]
pub(crate) enum WriteHalf {
    Tcp(tokio::net::tcp::OwnedWriteHalf),
    #[cfg(unix)]
    Unix(tokio::net::unix::OwnedWriteHalf),
    Boxed(tokio::io::WriteHalf<Boxed>),
}

/// Evaluates `$body` with `$s` bound to the stream inside whichever variant (`Tcp`, `Unix` or
/// `Boxed`) of the enum `$ty` the value `$this` is.
macro_rules! dispatch {
    ($ty:ident, $this:expr, $s:ident => $body:expr) => {
        match $this {
            $ty::Tcp($s) => $body,
            #[cfg(unix)]
            $ty::Unix($s) => $body,
            $ty::Boxed($s) => $body,
        }
    };
}
/// Implements `AsyncRead` for a `Tcp`/`Unix`/`Boxed` enum by forwarding to the variant's stream.
macro_rules! impl_async_read {
    ($ty:ident) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                dispatch!($ty, self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
            }
        }
    };
}

/// Implements `AsyncWrite` for a `Tcp`/`Unix`/`Boxed` enum by forwarding to the variant's stream.
macro_rules! impl_async_write {
    ($ty:ident) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                dispatch!($ty, self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                dispatch!($ty, self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
            }

            fn is_write_vectored(&self) -> bool {
                dispatch!($ty, self, s => s.is_write_vectored())
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                dispatch!($ty, self.get_mut(), s => Pin::new(s).poll_flush(cx))
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                dispatch!($ty, self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
            }
        }
    };
}

impl_async_read!(ReadHalf);

/// The codec's read path waits for readiness through this, so an idle receiver holds no
/// read buffer ([`framewire_codec::FrameReader::poll_fill_ready`]).
impl framewire_codec::ReadReady for ReadHalf {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ReadHalf::Tcp(r) => framewire_codec::ReadReady::poll_read_ready(r, cx),
            #[cfg(unix)]
            ReadHalf::Unix(r) => framewire_codec::ReadReady::poll_read_ready(r, cx),
            // A boxed stream (TLS, a caller's own) cannot tell: the reader reads to find out.
            ReadHalf::Boxed(_) => Poll::Ready(Ok(())),
        }
    }
}
/// The ack driver's read path asks this before it reads into a released buffer
/// ([`framewire_codec::ack::AckDriver::wait_readable`]).
impl framewire_codec::ReadReady for ByteStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ByteStream::Tcp(s) => s.poll_read_ready(cx),
            #[cfg(unix)]
            ByteStream::Unix(s) => s.poll_read_ready(cx),
            // A boxed stream (TLS, a caller's own) cannot tell: the reader reads to find out.
            ByteStream::Boxed(_) => Poll::Ready(Ok(())),
        }
    }
}
impl_async_read!(ByteStream);
impl_async_write!(WriteHalf);
impl_async_write!(ByteStream);

impl AsyncRead for Boxed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Boxed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_shutdown(cx)
    }
}
