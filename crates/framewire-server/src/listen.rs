//! The listener [`Server::bind`](crate::Server::bind) opens: TCP, or a Unix socket for a
//! `unix:/path` address.

use std::fmt;
use std::io;
#[cfg(unix)]
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::net::Listener;

use crate::address::{Address, Transport};

/// What [`Server::bind`](crate::Server::bind) listens on: a TCP listener for a `host:port`
/// address, or (on Unix) a Unix-socket listener for `unix:/path`.
///
/// A Unix socket file created by `bind` is removed when this listener is dropped, that is
/// when [`serve`](crate::Server::serve) has closed its listener during shutdown (or when an
/// unused [`Server`](crate::Server) is dropped). A listener handed to
/// [`ServerBuilder::listener`](crate::ServerBuilder::listener) stays the application's: its
/// file is left alone.
pub struct BoundListener(Bound);

enum Bound {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix {
        listener: tokio::net::UnixListener,
        path: PathBuf,
    },
}

impl BoundListener {
    pub(crate) fn tcp(listener: TcpListener) -> Self {
        BoundListener(Bound::Tcp(listener))
    }

    /// Binds `path` with `backlog`. The file is ours from here on: removed on drop.
    #[cfg(unix)]
    pub(crate) fn unix(path: PathBuf, backlog: u32) -> io::Result<Self> {
        let socket = tokio::net::UnixSocket::new_stream()?;
        socket.bind(&path)?;
        let listener = match socket.listen(backlog) {
            Ok(listener) => listener,
            Err(e) => {
                remove_socket_file(&path);
                return Err(e);
            }
        };
        Ok(BoundListener(Bound::Unix { listener, path }))
    }
}

#[cfg(unix)]
fn remove_socket_file(path: &std::path::Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the unix socket file")
        }
    }
}

impl Drop for BoundListener {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Bound::Unix { path, .. } = &self.0 {
            remove_socket_file(path);
        }
    }
}

impl fmt::Debug for BoundListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Bound::Tcp(l) => f.debug_tuple("BoundListener").field(l).finish(),
            #[cfg(unix)]
            Bound::Unix { listener, .. } => f.debug_tuple("BoundListener").field(listener).finish(),
        }
    }
}

impl Listener for BoundListener {
    type Io = BoundStream;
    type Addr = Address;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(BoundStream, Address)>> {
        match &mut self.0 {
            Bound::Tcp(l) => l
                .poll_accept(cx)
                .map_ok(|(s, a)| (BoundStream(Stream::Tcp(s)), a.into())),
            #[cfg(unix)]
            Bound::Unix { listener, .. } => listener
                .poll_accept(cx)
                .map_ok(|(s, a)| (BoundStream(Stream::Unix(s)), a.into())),
        }
    }

    fn local_addr(&self) -> io::Result<Address> {
        match &self.0 {
            Bound::Tcp(l) => l.local_addr().map(Address::from),
            #[cfg(unix)]
            Bound::Unix { listener, .. } => listener.local_addr().map(Address::from),
        }
    }
}

/// A connection accepted by a [`BoundListener`]: a TCP or a Unix-socket stream.
#[derive(Debug)]
pub struct BoundStream(Stream);

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

/// Runs `$body` with `$s` bound to the inner stream, pinned.
macro_rules! each {
    ($self:expr, $s:ident => $body:expr) => {
        match &mut $self.get_mut().0 {
            Stream::Tcp(inner) => {
                let $s = Pin::new(inner);
                $body
            }
            #[cfg(unix)]
            Stream::Unix(inner) => {
                let $s = Pin::new(inner);
                $body
            }
        }
    };
}

impl AsyncRead for BoundStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for BoundStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            Stream::Tcp(s) => s.is_write_vectored(),
            #[cfg(unix)]
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}

impl Transport for BoundStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.0 {
            Stream::Tcp(s) => Transport::poll_read_ready(s, cx),
            #[cfg(unix)]
            Stream::Unix(s) => Transport::poll_read_ready(s, cx),
        }
    }

    fn set_nodelay(&self) -> io::Result<()> {
        match &self.0 {
            Stream::Tcp(s) => Transport::set_nodelay(s),
            #[cfg(unix)]
            Stream::Unix(s) => Transport::set_nodelay(s),
        }
    }
}
