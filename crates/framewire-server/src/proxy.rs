//! The PROXY protocol (HAProxy's, versions 1 and 2): the original client's address, from a
//! trusted load balancer.
//!
//! An L4 balancer (HAProxy with `send-proxy-v2`, Envoy, nginx stream, AWS NLB, ...) opens its
//! own TCP connection to the server, so the socket's peer address is the balancer's. With the
//! PROXY protocol the balancer first writes one header naming the client it relays:
//!
//! ```text
//! v1 (text, at most 107 bytes):
//!   "PROXY TCP4 203.0.113.7 192.0.2.1 51234 9999\r\n"
//!
//! v2 (binary):
//! +--------------------------------------+-----------+-----------+-------------+---------------+
//! | signature (12)                       | ver|cmd   | fam|proto | length: u16 | addresses,    |
//! | 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A  | 0x21/0x20 | 0x11 IPv4 | BE          | then TLVs     |
//! +--------------------------------------+-----------+-----------+-------------+---------------+
//! ```
//!
//! Parsing is done by the [`ppp`](https://docs.rs/ppp) crate (maintained, no dependencies
//! beyond `thiserror`, both versions, incremental: it tells an incomplete header from a broken
//! one, which is what reading from a socket needs). This module adds what a server needs
//! around it: who may send a header, a time limit and a size bound, and keeping the bytes that
//! follow the header.
//!
//! # Rules
//!
//! * A connection from a [trusted network](ProxyProtocol::trusting) must start with a header;
//!   no header, a malformed one (including malformed TLVs), one over the
//!   [size bound](ProxyProtocol::max_header_len), or one not complete within the
//!   [header timeout](ProxyProtocol::header_timeout) is a [`ProxyError`]: the connection is
//!   closed, logged and counted in [`ErrorStats::proxy`](crate::ErrorStats::proxy).
//! * A connection from anywhere else is a direct client and is served as one; if its first
//!   bytes are a PROXY signature (someone trying to claim another address), reading fails
//!   with [`ProxyError::Untrusted`], counted the same way. The protocol's own rule is that a
//!   receiver never guesses whether a header is there; framewire only guesses to refuse one.
//! * `PROXY UNKNOWN` (v1), the `LOCAL` command (v2, used by HAProxy's health checks) and
//!   address families other than IPv4/IPv6 keep the balancer's own address as the peer.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
pub use ipnet::IpNet;
use ppp::{v1, v2, PartialResult};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::address::Transport;
use crate::forward::forward_async_write;

/// Default [`ProxyProtocol::header_timeout`]: 3 seconds.
///
/// A balancer writes the header as soon as its connection to the server is up, so it arrives
/// within one round trip; the limit only matters for a peer that drips it. 3 s is far above a
/// loaded balancer's delay and still frees the connection slot quickly.
pub const DEFAULT_PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// Default [`ProxyProtocol::max_header_len`]: 1024 bytes.
///
/// A v1 header is at most 107 bytes; a v2 header is 16 bytes, at most 216 bytes of addresses
/// (Unix-socket paths) and the TLVs a balancer adds (HAProxy's unique id of at most 128 bytes,
/// ALPN, authority, AWS NLB's VPC endpoint id, a CRC). 1 KiB holds all of those together; the
/// protocol allows 65,551, which nobody needs a server to buffer per connection.
pub const DEFAULT_PROXY_HEADER_MAX_LEN: usize = 1024;

/// The smallest accepted [`ProxyProtocol::max_header_len`]: 232 bytes, the largest v2 header
/// without TLVs (16 + 216), which the protocol says a receiver must accept.
pub const MIN_PROXY_HEADER_MAX_LEN: usize = 232;

/// The v2 signature (12 bytes).
const V2_SIGNATURE: &[u8] = v2::PROTOCOL_PREFIX;

/// The bytes a v1 header starts with.
const V1_SIGNATURE: &[u8] = b"PROXY ";

/// The longest v1 header, CRLF included (the protocol's limit).
const V1_MAX_LEN: usize = 107;

/// Fixed part of a v2 header: signature, version/command, family/protocol, length.
const V2_FIXED_LEN: usize = 16;

/// How much a header read asks for at a time: memory follows bytes received.
const READ_CHUNK: usize = 256;

/// PROXY protocol settings, for [`ServerBuilder::proxy_protocol`](crate::ServerBuilder::proxy_protocol).
///
/// ```
/// use framewire_server::{IpNet, ProxyProtocol, Server};
///
/// # fn build() -> Result<(), Box<dyn std::error::Error>> {
/// let balancers: IpNet = "10.0.0.0/8".parse()?;
/// let builder = Server::builder().proxy_protocol(ProxyProtocol::trusting([balancers]));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ProxyProtocol {
    trusted: Vec<IpNet>,
    header_timeout: Duration,
    max_header_len: usize,
}

impl fmt::Debug for ProxyProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyProtocol")
            .field("trusted", &self.trusted)
            .field("header_timeout", &self.header_timeout)
            .field("max_header_len", &self.max_header_len)
            .finish()
    }
}

impl ProxyProtocol {
    /// Expects a PROXY header from every connection whose source address is in one of
    /// `networks` (your balancers), and from no one else. An IPv4 network also matches the
    /// same addresses written as IPv4-mapped IPv6 (`::ffff:10.0.0.1`).
    pub fn trusting(networks: impl IntoIterator<Item = IpNet>) -> Self {
        ProxyProtocol {
            trusted: networks.into_iter().collect(),
            header_timeout: DEFAULT_PROXY_HEADER_TIMEOUT,
            max_header_len: DEFAULT_PROXY_HEADER_MAX_LEN,
        }
    }

    /// How long a trusted connection has to deliver its whole header (default
    /// [`DEFAULT_PROXY_HEADER_TIMEOUT`]). The clock starts at accept and is not reset by
    /// arriving bytes, so dripping a header does not extend it.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// The largest header accepted, in bytes (default [`DEFAULT_PROXY_HEADER_MAX_LEN`]; values
    /// below [`MIN_PROXY_HEADER_MAX_LEN`] act as that). A v2 header announcing more is refused
    /// as soon as its length field arrives, before its body is read.
    pub fn max_header_len(mut self, max: usize) -> Self {
        self.max_header_len = max.max(MIN_PROXY_HEADER_MAX_LEN);
        self
    }

    /// Whether `ip` is in a trusted network.
    pub(crate) fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.header_timeout
    }

    pub(crate) fn max_len(&self) -> usize {
        self.max_header_len
    }
}

/// Why a PROXY header was refused. Each closes the connection and is counted in
/// [`ErrorStats::proxy`](crate::ErrorStats::proxy).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// A trusted source did not finish its header in time.
    #[error("no complete PROXY header within {} ms ({received} bytes received)", .timeout.as_millis())]
    Timeout {
        /// The configured header timeout.
        timeout: Duration,
        /// Header bytes received when it fired.
        received: usize,
    },
    /// A trusted source closed the connection before its header was complete.
    #[error("connection closed after {received} bytes, before a complete PROXY header")]
    Closed {
        /// Bytes received before the end of stream.
        received: usize,
    },
    /// A trusted source's first bytes are not a PROXY header.
    #[error("a trusted source sent no PROXY header (first bytes: {first:02x?})")]
    Missing {
        /// Up to the first 16 bytes it sent instead.
        first: Vec<u8>,
    },
    /// A v1 (text) header that does not parse.
    #[error("malformed PROXY v1 header: {0}")]
    V1(v1::BinaryParseError),
    /// A v2 (binary) header that does not parse, or whose TLVs do not.
    #[error("malformed PROXY v2 header: {0}")]
    V2(v2::ParseError),
    /// A header longer than the configured bound.
    #[error("PROXY header of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// The announced (v2) or received (v1) length.
        len: usize,
        /// The configured [`ProxyProtocol::max_header_len`].
        max: usize,
    },
    /// A source outside the trusted networks sent a PROXY header.
    #[error("PROXY header from an untrusted source (only the trusted networks may send one)")]
    Untrusted,
    /// The transport failed while the header was read.
    #[error("i/o error while reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// What a header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The original client, or `None` when the header says to use the connection's own
    /// endpoints (`UNKNOWN`, `LOCAL`, unspecified or Unix families).
    pub(crate) source: Option<SocketAddr>,
    /// The header's length in bytes (what follows it is the client's data).
    pub(crate) len: usize,
}

/// Parses a header at the start of `buf`: `Ok(None)` while it is incomplete.
///
/// # Errors
///
/// A [`ProxyError`] once `buf` cannot become a valid header with more bytes, or is over
/// `max` bytes.
pub(crate) fn parse(buf: &[u8], max: usize) -> Result<Option<Header>, ProxyError> {
    if buf.len() >= V2_FIXED_LEN && buf.starts_with(V2_SIGNATURE) {
        let len = V2_FIXED_LEN + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if len > max {
            return Err(ProxyError::TooLong { len, max });
        }
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        let header = v2::Header::try_from(buf);
        if header.is_incomplete() {
            return incomplete(buf, max);
        }
        let header = header.map_err(ProxyError::V2)?;
        if let Some(Err(e)) = header.tlvs().find(Result::is_err) {
            return Err(ProxyError::V2(e));
        }
        let source = match (header.command, header.addresses) {
            (v2::Command::Local, _) => None,
            (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            (v2::Command::Proxy, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => None,
        };
        return Ok(Some(Header {
            source,
            len: header.len(),
        }));
    }
    if !starts_like_header(buf)
        || (buf.len() >= V1_SIGNATURE.len() && !buf.starts_with(V1_SIGNATURE))
    {
        return Err(ProxyError::Missing {
            first: buf[..buf.len().min(16)].to_vec(),
        });
    }
    // ppp's v1 parser is not incremental at every cut (a header cut inside its last port
    // parses as complete), so it only sees whole lines.
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyError::TooLong {
                len: buf.len(),
                max: V1_MAX_LEN,
            });
        }
        return incomplete(buf, max);
    };
    let header = v1::Header::try_from(&buf[..=end]).map_err(ProxyError::V1)?;
    let source = match header.addresses {
        v1::Addresses::Tcp4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        v1::Addresses::Tcp6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        v1::Addresses::Unknown => None,
    };
    Ok(Some(Header {
        source,
        len: header.header.len(),
    }))
}

/// An incomplete header: wait for more bytes, unless `max` are already here.
fn incomplete(buf: &[u8], max: usize) -> Result<Option<Header>, ProxyError> {
    if buf.len() >= max {
        return Err(ProxyError::TooLong {
            len: buf.len(),
            max,
        });
    }
    Ok(None)
}

/// Whether `buf` begins like a v1 header ("PROXY", or the start of it).
fn starts_like_header(buf: &[u8]) -> bool {
    let n = buf.len().min(V1_SIGNATURE.len() - 1);
    buf[..n] == V1_SIGNATURE[..n]
}

/// Reads a header from `io` into `buf` (which the caller keeps, to report how much arrived
/// if it gives up waiting). Returns the header and the bytes that followed it.
///
/// # Cancellation safety
///
/// Cancelling loses nothing that matters: the connection is dropped when the caller gives up.
pub(crate) async fn read_header<T: AsyncRead + Unpin>(
    io: &mut T,
    buf: &mut BytesMut,
    max: usize,
) -> Result<(Header, Bytes), ProxyError> {
    loop {
        if let Some(header) = parse(buf, max)? {
            buf.advance(header.len);
            return Ok((header, buf.split().freeze()));
        }
        buf.reserve(READ_CHUNK.min(max.saturating_sub(buf.len())).max(1));
        let room = buf.capacity() - buf.len();
        let n = io.read_buf(&mut (&mut *buf).limit(room)).await?;
        if n == 0 {
            return Err(ProxyError::Closed {
                received: buf.len(),
            });
        }
    }
}

/// The transport a [`Connection`](crate::Connection) gets on a server that speaks the PROXY
/// protocol: bytes already read from the socket are served first, then the socket.
///
/// * After a header from a trusted balancer, the front bytes are those that arrived with the
///   header (often the client's first frame).
/// * On a direct (untrusted) connection it *sniffs*: it reads the first bytes into `front`
///   and fails with [`ProxyError::Untrusted`] if they are a PROXY signature. It holds back at
///   most the 12 bytes needed to decide. A real client is usually told apart at its first
///   byte (a big-endian length below 16 MiB starts with 0); with a little-endian codec the
///   first bytes may match the signature's (a 13-byte frame starts with 0x0D), and a later
///   byte decides.
pub(crate) struct Front<T> {
    inner: T,
    front: Bytes,
    sniffing: bool,
}

impl<T> Front<T> {
    /// `front` first, then `inner`.
    pub(crate) fn prefixed(front: Bytes, inner: T) -> Self {
        Front {
            inner,
            front,
            sniffing: false,
        }
    }

    /// A direct connection that must not start with a PROXY header.
    pub(crate) fn sniffing(inner: T) -> Self {
        Front {
            inner,
            front: Bytes::new(),
            sniffing: true,
        }
    }
}

/// What the first bytes of a direct connection say.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// A whole PROXY signature.
    Header,
    /// Could still become one.
    Undecided,
    /// Cannot be one.
    Data,
}

fn verdict(first: &[u8]) -> Verdict {
    for sig in [V1_SIGNATURE, V2_SIGNATURE] {
        let n = first.len().min(sig.len());
        if first[..n] == sig[..n] {
            return if n == sig.len() {
                Verdict::Header
            } else {
                Verdict::Undecided
            };
        }
    }
    Verdict::Data
}

impl<T: AsyncRead + Unpin> Front<T> {
    /// Reads until the first bytes decide; they end up in `front`.
    fn poll_sniff(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut held = [0u8; V2_SIGNATURE.len()];
        let mut len = self.front.len();
        held[..len].copy_from_slice(&self.front);
        while self.sniffing {
            let mut rb = ReadBuf::new(&mut held[len..]);
            let read = Pin::new(&mut self.inner).poll_read(cx, &mut rb);
            let n = rb.filled().len();
            len += n;
            self.front = Bytes::copy_from_slice(&held[..len]);
            std::task::ready!(read)?;
            match verdict(&held[..len]) {
                Verdict::Header => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        ProxyError::Untrusted,
                    )))
                }
                // End of stream before a decision: hand on what came.
                Verdict::Undecided if n > 0 => {}
                Verdict::Undecided | Verdict::Data => self.sniffing = false,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Front<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.sniffing {
            std::task::ready!(self.poll_sniff(cx))?;
        }
        if self.front.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.front.len().min(buf.remaining());
        buf.put_slice(&self.front[..n]);
        self.front.advance(n);
        Poll::Ready(Ok(()))
    }
}

forward_async_write!(
    impl<T: [AsyncWrite + Unpin]> for Front<T>,
    |this| Pin::new(&mut this.get_mut().inner),
    vectored: |this| this.inner.is_write_vectored(),
);

impl<T: Transport> Transport for Front<T> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.sniffing || self.front.is_empty() {
            self.inner.poll_read_ready(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn set_nodelay(&self) -> io::Result<()> {
        self.inner.set_nodelay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &[u8] = b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 9999\r\n";

    fn v2_ipv4(tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x21);
        h.push(0x11);
        let len = u16::try_from(12 + tlvs.len()).expect("test header fits");
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(&[203, 0, 113, 7, 192, 0, 2, 1]);
        h.extend_from_slice(&51234u16.to_be_bytes());
        h.extend_from_slice(&9999u16.to_be_bytes());
        h.extend_from_slice(tlvs);
        h
    }

    fn client() -> Option<SocketAddr> {
        Some(SocketAddr::from(([203, 0, 113, 7], 51234)))
    }

    #[test]
    fn both_versions_split_at_every_index() {
        for header in [V1.to_vec(), v2_ipv4(&[]), v2_ipv4(&[0x04, 0, 2, 1, 2])] {
            let mut input = header.clone();
            input.extend_from_slice(b"\x00\x00\x00\x02hi");
            for cut in 0..header.len() {
                assert!(
                    matches!(parse(&input[..cut], 1024), Ok(None)),
                    "prefix of {cut} bytes of {header:02x?} must be incomplete"
                );
            }
            for cut in header.len()..=input.len() {
                let parsed = parse(&input[..cut], 1024)
                    .expect("complete")
                    .expect("a header");
                assert_eq!(parsed.source, client());
                assert_eq!(parsed.len, header.len());
            }
        }
    }

    #[test]
    fn local_and_unknown_keep_the_connection_address() {
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        let h = parse(&local, 1024).expect("valid").expect("complete");
        assert_eq!((h.source, h.len), (None, 16));
        let h = parse(b"PROXY UNKNOWN\r\n", 1024)
            .expect("valid")
            .expect("complete");
        assert_eq!((h.source, h.len), (None, 15));
    }

    #[test]
    fn refusals_are_precise() {
        let missing = parse(b"\x00\x00\x00\x05hello", 1024);
        assert!(matches!(missing, Err(ProxyError::Missing { ref first }) if first.len() == 9));
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3.999 1.2.3.4 1 2\r\n", 1024),
            Err(ProxyError::V1(_))
        ));
        let mut bad_version = v2_ipv4(&[]);
        bad_version[12] = 0x31;
        assert!(matches!(
            parse(&bad_version, 1024),
            Err(ProxyError::V2(v2::ParseError::Version(0x30)))
        ));
        // A TLV announcing 100 bytes with 2 present.
        let bad_tlv = v2_ipv4(&[0x04, 0, 100, 1, 2]);
        assert!(matches!(parse(&bad_tlv, 1024), Err(ProxyError::V2(_))));
        // Refused at the length field, before the body.
        let big = v2_ipv4(&vec![0; 2000]);
        assert!(matches!(
            parse(&big[..16], 1024),
            Err(ProxyError::TooLong {
                len: 2028,
                max: 1024
            })
        ));
        // v1 without an end of line within 107 bytes.
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(
            parse(&long, 1024),
            Err(ProxyError::TooLong { len: 131, max: 107 })
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n", 1024),
            Err(ProxyError::V1(_))
        ));
        assert!(matches!(
            parse(b"PROXYZ", 1024),
            Err(ProxyError::Missing { .. })
        ));
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(b""), Verdict::Undecided);
        assert_eq!(verdict(b"PROX"), Verdict::Undecided);
        assert_eq!(verdict(b"PROXY "), Verdict::Header);
        assert_eq!(verdict(&V2_SIGNATURE[..11]), Verdict::Undecided);
        assert_eq!(verdict(V2_SIGNATURE), Verdict::Header);
        assert_eq!(verdict(b"\x00"), Verdict::Data);
        assert_eq!(verdict(b"PROXI"), Verdict::Data);
    }

    #[test]
    fn trusted_networks_match_mapped_addresses() {
        let p = ProxyProtocol::trusting(["10.0.0.0/8".parse().expect("net")]);
        assert!(p.is_trusted("10.1.2.3".parse().expect("ip")));
        assert!(p.is_trusted("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!p.is_trusted("11.1.2.3".parse().expect("ip")));
    }
}
