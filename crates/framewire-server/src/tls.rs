//! TLS through rustls (feature `tls`): the handshake each connection's task runs before its
//! handler, the transport over the TLS session, and what the handler learns of the session.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::{ProtocolVersion, SupportedCipherSuite};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::address::Transport;
use crate::error::ServerError;
use crate::forward::forward_async_write;

/// What a handler can learn of a connection's TLS session:
/// [`Connection::tls`](crate::Connection::tls).
#[derive(Clone)]
pub struct TlsInfo {
    alpn: Option<Vec<u8>>,
    peer_certificates: Vec<CertificateDer<'static>>,
    server_name: Option<String>,
    protocol_version: Option<ProtocolVersion>,
    cipher_suite: Option<SupportedCipherSuite>,
}

impl fmt::Debug for TlsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsInfo")
            .field("alpn", &self.alpn.as_deref().map(String::from_utf8_lossy))
            .field("peer_certificates", &self.peer_certificates.len())
            .field("server_name", &self.server_name)
            .field("protocol_version", &self.protocol_version)
            .field("cipher_suite", &self.cipher_suite.map(|c| c.suite()))
            .finish()
    }
}

impl TlsInfo {
    fn of(conn: &rustls::ServerConnection) -> Self {
        TlsInfo {
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            peer_certificates: conn
                .peer_certificates()
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            server_name: conn.server_name().map(str::to_string),
            protocol_version: conn.protocol_version(),
            cipher_suite: conn.negotiated_cipher_suite(),
        }
    }

    /// The application protocol agreed with ALPN (one of the server config's
    /// `alpn_protocols`), or `None` if the client offered none or the server configured none.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }

    /// The client's certificate chain, its own certificate first, as it presented it. Empty
    /// unless the server config asks for client certificates (mTLS) and the client sent one;
    /// with a verifier such as rustls' `WebPkiClientVerifier` it has been verified against
    /// the configured roots before the handler runs.
    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        &self.peer_certificates
    }

    /// The host name the client asked for (SNI), if it sent one.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The TLS version negotiated (TLS 1.3 or 1.2).
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.protocol_version
    }

    /// The cipher suite negotiated.
    pub fn cipher_suite(&self) -> Option<SupportedCipherSuite> {
        self.cipher_suite
    }
}

/// A server-side TLS session over a transport, as a [`Transport`].
///
/// Read readiness: when the last read returned `Pending`, rustls holds no plaintext and has
/// asked the socket for more, so the socket's readiness is the session's. Otherwise (just
/// after the handshake, which may have read the client's first records along with its
/// Finished; or after a read that filled the caller's buffer) rustls may hold plaintext, and
/// the transport reports ready so that the connection reads it.
pub(crate) struct Tls<T: Transport> {
    stream: TlsStream<T>,
    read_pending: bool,
}

impl<T: Transport> AsyncRead for Tls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        this.read_pending = polled.is_pending();
        polled
    }
}

forward_async_write!(
    impl<T: [Transport]> for Tls<T>,
    |this| Pin::new(&mut this.get_mut().stream),
    vectored: |this| this.stream.is_write_vectored(),
);

impl<T: Transport> Drop for Tls<T> {
    /// Sends the TLS close_notify if the handler did not close the connection itself: the
    /// connection ends when its handler returns, and without close_notify the peer cannot
    /// tell an orderly end from a cut (rustls reports `UnexpectedEof`). Best effort, without
    /// waiting: an alert of a few dozen bytes, which a socket with room takes at once.
    fn drop(&mut self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = Pin::new(&mut self.stream).poll_shutdown(&mut cx);
    }
}

impl<T: Transport> Transport for Tls<T> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.read_pending {
            self.stream.get_ref().0.poll_read_ready(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }
}

/// Runs the server side of a TLS handshake on `io`, within `timeout`.
///
/// # Errors
///
/// [`ServerError::TlsHandshake`] (what rustls or the socket said),
/// [`ServerError::TlsHandshakeTimeout`].
pub(crate) async fn accept<T: Transport>(
    acceptor: &TlsAcceptor,
    io: T,
    timeout: Duration,
) -> Result<(Tls<T>, TlsInfo), ServerError> {
    match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Ok(Ok(stream)) => {
            let info = TlsInfo::of(stream.get_ref().1);
            Ok((
                Tls {
                    stream,
                    read_pending: false,
                },
                info,
            ))
        }
        Ok(Err(source)) => Err(ServerError::TlsHandshake { source }),
        Err(_) => Err(ServerError::TlsHandshakeTimeout { timeout }),
    }
}
