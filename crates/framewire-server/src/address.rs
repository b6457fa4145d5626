//! Peer and local addresses, and the transports a server can serve.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll};

use framewire_codec::{Endpoint, EndpointError, IntoEndpoint};
use tokio::io::{AsyncRead, AsyncWrite};

/// The address of a peer or of the listening socket: TCP or (on Unix) a Unix-domain socket.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Address {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix-domain socket address (often unnamed for peers). Boxed: it is 110 bytes of
    /// `sockaddr_un`, and every connection holds its peer's address, TCP or not.
    #[cfg(unix)]
    Unix(Box<tokio::net::unix::SocketAddr>),
    /// A peer named by the application: the address given with a stream of its own (an SSH
    /// channel, an in-memory pipe; see [`ServerBuilder::incoming`](crate::ServerBuilder::incoming)).
    Other(String),
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
            Address::Other(_) => None,
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
            Address::Other(name) => f.write_str(name),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Tcp(a)
    }
}

/// The address a client connects to, to reach this one: a TCP address as it is, a named
/// Unix socket as `unix:/path`. An unnamed Unix socket (a peer's, usually) and an
/// [`Address::Other`] name nothing to connect to: [`EndpointError`].
///
/// ```
/// use framewire_server::{Address, Endpoint};
///
/// let addr = Address::Tcp("127.0.0.1:9999".parse().unwrap());
/// assert_eq!(Endpoint::try_from(&addr)?, Endpoint::Tcp("127.0.0.1:9999".into()));
/// # Ok::<(), framewire_server::EndpointError>(())
/// ```
impl TryFrom<&Address> for Endpoint {
    type Error = EndpointError;

    fn try_from(addr: &Address) -> Result<Endpoint, EndpointError> {
        match addr {
            Address::Tcp(a) => Ok(Endpoint::from(*a)),
            #[cfg(unix)]
            Address::Unix(a) => match a.as_pathname() {
                Some(path) => Ok(Endpoint::unix(path)),
                None => Err(EndpointError::new(
                    addr.to_string(),
                    "an unnamed unix socket cannot be connected to",
                )),
            },
            Address::Other(_) => Err(EndpointError::new(
                addr.to_string(),
                "an address named by the application cannot be connected to",
            )),
        }
    }
}

impl TryFrom<Address> for Endpoint {
    type Error = EndpointError;

    fn try_from(addr: Address) -> Result<Endpoint, EndpointError> {
        Endpoint::try_from(&addr)
    }
}

/// So a client connects to a server's [`local_addr`](crate::Server::local_addr) directly:
/// `Client::connect(server.local_addr())`.
impl IntoEndpoint for &Address {
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        Endpoint::try_from(self)
    }
}

impl IntoEndpoint for Address {
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        Endpoint::try_from(&self)
    }
}

#[cfg(unix)]
impl From<tokio::net::unix::SocketAddr> for Address {
    fn from(a: tokio::net::unix::SocketAddr) -> Self {
        Address::Unix(Box::new(a))
    }
}

/// A byte stream a [`Connection`](crate::Connection) can run on: implemented for
/// `TcpStream`, (on Unix) `UnixStream`, and `Box<dyn Transport>`. TLS (feature `tls`) and a
/// user's own streams ([`ServerBuilder::incoming`](crate::ServerBuilder::incoming)) are
/// wrapped into one by the server.
///
/// Beyond `AsyncRead + AsyncWrite`, a transport reports read readiness without reading, which
/// lets an idle connection wait for bytes without holding a read buffer.
///
/// # What each costs while idle
///
/// * TCP and Unix sockets: no read buffer; the connection waits for readiness and allocates
///   its read buffer only when bytes arrive.
/// * TLS over either: no framewire read buffer either (the connection waits on the socket's
///   readiness once a read found nothing buffered in rustls); rustls keeps its own state and
///   buffers for the session (see the README's TLS section for the measured figure).
/// * A user's own stream without readiness: the connection allocates its read buffer for each
///   read attempt and frees it when the read finds nothing, so an idle connection holds none
///   either; a stream that wakes its reader without data costs an allocation per wake-up.
pub trait Transport: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {
    /// Polls until the transport may have bytes to read (or end of stream, or an error).
    ///
    /// Contract: returns `Pending` (and wakes `cx` later) when no read could make progress.
    /// A transport that cannot tell returns `Ready` at once; the connection then tries a
    /// read, which registers the wake-up if it finds nothing.
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

impl Transport for Box<dyn Transport> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_read_ready(cx)
    }

    fn set_nodelay(&self) -> io::Result<()> {
        (**self).set_nodelay()
    }
}

/// The codec's read path ([`framewire_codec::FrameReader::poll_fill_ready`]) waits for
/// readiness through this, so an idle connection holds no read buffer.
impl framewire_codec::ReadReady for Box<dyn Transport> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Transport::poll_read_ready(&**self, cx)
    }
}
