//! Peer and local addresses, and the transports a server can serve.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

/// The address of a peer or of the listening socket: TCP or (on Unix) a Unix-domain socket.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Address {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix-domain socket address (often unnamed for peers).
    #[cfg(unix)]
    Unix(tokio::net::unix::SocketAddr),
}

impl Address {
    /// The IP address, for TCP.
    pub fn ip(&self) -> Option<IpAddr> {
        self.tcp().map(|a| a.ip())
    }

    /// The TCP socket address, if this is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Address::Tcp(a) => Some(*a),
            #[cfg(unix)]
            Address::Unix(_) => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => a.fmt(f),
            #[cfg(unix)]
            Address::Unix(a) => match a.as_pathname() {
                Some(path) => write!(f, "unix:{}", path.display()),
                None => f.write_str("unix:(unnamed)"),
            },
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Tcp(a)
    }
}

#[cfg(unix)]
impl From<tokio::net::unix::SocketAddr> for Address {
    fn from(a: tokio::net::unix::SocketAddr) -> Self {
        Address::Unix(a)
    }
}

/// A byte stream a [`Connection`](crate::Connection) can run on: implemented for
/// `TcpStream` and (on Unix) `UnixStream`.
///
/// Beyond `AsyncRead + AsyncWrite`, a transport reports read readiness without reading, which
/// lets an idle connection wait for bytes without holding a read buffer.
pub trait Transport: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {
    /// Polls until the transport may have bytes to read (or end of stream, or an error).
    ///
    /// Contract: returns `Pending` (and wakes `cx` later) when no read could make progress.
    /// A spurious `Ready` is allowed but must not repeat forever: after a read returned
    /// `Pending`, the next call must return `Pending` until new bytes arrive.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Turns off any write coalescing delay (Nagle's algorithm), called once when the
    /// connection is accepted. framewire writes whole frames and flushes them on purpose, so a
    /// delay only adds latency: in ack mode an ACK followed by a reply in a second write would
    /// wait for the peer's delayed ACK (measured: about 45 ms per exchange instead of 2.4 ms).
    /// The default does nothing (for transports without such a delay).
    fn set_nodelay(&self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for tokio::net::TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }

    fn set_nodelay(&self) -> io::Result<()> {
        tokio::net::TcpStream::set_nodelay(self, true)
    }
}

#[cfg(unix)]
impl Transport for tokio::net::UnixStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::UnixStream::poll_read_ready(self, cx)
    }
}
