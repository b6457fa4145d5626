//! Server-wide counters.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::ErrorKind;

/// A snapshot of the server's counters, from [`ServerHandle::stats`](crate::ServerHandle::stats).
///
/// All counters only grow, except `active`. Bytes are wire bytes, headers included: a client
/// that sends the frame `"hi"` adds 6 to `bytes_in` and 1 to `frames_in`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections holding a slot now: reading a PROXY header, in the TLS handshake, or
    /// with a running handler (the slot is taken when the connection is admitted).
    pub active: u64,
    /// Connections admitted (past the accept filter and the caps) since the server started:
    /// handed to a handler or, with TLS, to the handshake first.
    pub accepted: u64,
    /// Connections accepted from the operating system and closed at once, for any reason
    /// (the sum of the three `refused_*` counters).
    pub refused: u64,
    /// Refused by the accept filter.
    pub refused_by_filter: u64,
    /// Refused because `max_connections` was reached (only with
    /// [`AtCapacity::Refuse`](crate::AtCapacity::Refuse)).
    pub refused_at_capacity: u64,
    /// Refused because the peer's IP address already had `max_connections_per_ip`.
    pub refused_per_ip: u64,
    /// Frames received and handed to handlers (in ack mode: DATA messages; HELLO and ACK
    /// frames are not counted here, but their bytes are in `bytes_in`). In plain mode a
    /// connection adds its frames in batches, so while a handler works through a burst of
    /// buffered frames this may trail by up to 63 frames per connection; it is exact once the
    /// connection's buffered bytes are used up, it reads again, its receiving side failed or
    /// it has closed.
    pub frames_in: u64,
    /// Frames handlers sent (in ack mode: DATA messages). A connection adds up its frames
    /// and publishes the count when it next writes (or closes), so a frame queued with `feed`
    /// and not yet flushed may not be counted yet.
    pub frames_out: u64,
    /// Bytes read from connections.
    pub bytes_in: u64,
    /// Bytes written to connections.
    pub bytes_out: u64,
    /// Errors, by kind.
    pub errors: ErrorStats,
}

/// Error counters, by kind. Part of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorStats {
    /// Transport errors on connections (reset, broken pipe, ...).
    pub io: u64,
    /// Invalid framing from peers (oversized header, end of stream inside a frame), and
    /// ack-mode protocol violations.
    pub protocol: u64,
    /// Handlers that tried to send a frame over the limit.
    pub outgoing_too_long: u64,
    /// Typed messages that did not decode (per message; the connection stays open).
    pub decode: u64,
    /// Values handlers could not encode as typed messages (nothing was sent).
    pub encode: u64,
    /// Idle timeouts.
    pub idle_timeout: u64,
    /// Stall timeouts.
    pub stall_timeout: u64,
    /// Write timeouts.
    pub write_timeout: u64,
    /// Handlers that returned an error. A handler that returns a connection error it got from
    /// `recv` or `send` is counted here *and* under that error's kind.
    pub handler: u64,
    /// Handlers that panicked.
    pub panic: u64,
    /// Handlers aborted because they were still running when the grace period of a graceful
    /// shutdown ran out.
    pub aborted: u64,
    /// Errors from `accept` (for example too many open files); the accept loop backs off.
    pub accept: u64,
    /// TLS handshakes that failed (not TLS, untrusted or rejected certificates, no common
    /// version or cipher suite, the peer went away). Those connections are counted in
    /// [`Stats::accepted`] (they hold a connection slot during the handshake) but never reach
    /// a handler.
    pub tls_handshake: u64,
    /// TLS handshakes that did not finish within the handshake timeout.
    pub tls_handshake_timeout: u64,
    /// PROXY protocol refusals: a trusted source's header missing, malformed, too long or too
    /// slow, or a header from an untrusted source (see
    /// [`ProxyProtocol`](crate::ProxyProtocol)). A refused header closes the connection.
    /// A trusted source's refused header is counted here before admission, so not in
    /// [`Stats::accepted`]; a direct (untrusted) client caught sending a PROXY header was
    /// admitted first, so it is counted in both.
    pub proxy: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) active: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused_by_filter: AtomicU64,
    pub(crate) refused_at_capacity: AtomicU64,
    pub(crate) refused_per_ip: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) err_io: AtomicU64,
    pub(crate) err_protocol: AtomicU64,
    pub(crate) err_outgoing: AtomicU64,
    pub(crate) err_decode: AtomicU64,
    pub(crate) err_encode: AtomicU64,
    pub(crate) err_idle: AtomicU64,
    pub(crate) err_stall: AtomicU64,
    pub(crate) err_write: AtomicU64,
    pub(crate) err_handler: AtomicU64,
    pub(crate) err_panic: AtomicU64,
    pub(crate) err_aborted: AtomicU64,
    pub(crate) err_accept: AtomicU64,
    pub(crate) err_tls: AtomicU64,
    pub(crate) err_tls_timeout: AtomicU64,
    pub(crate) err_proxy: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn count_error(&self, kind: ErrorKind) {
        let counter = match kind {
            ErrorKind::Io => &self.err_io,
            ErrorKind::Protocol => &self.err_protocol,
            ErrorKind::OutgoingTooLong => &self.err_outgoing,
            ErrorKind::Decode => &self.err_decode,
            ErrorKind::Encode => &self.err_encode,
            ErrorKind::IdleTimeout => &self.err_idle,
            ErrorKind::StallTimeout => &self.err_stall,
            ErrorKind::WriteTimeout => &self.err_write,
            ErrorKind::TlsHandshake => &self.err_tls,
            ErrorKind::TlsHandshakeTimeout => &self.err_tls_timeout,
            ErrorKind::Proxy => &self.err_proxy,
            ErrorKind::Bind | ErrorKind::Closed | ErrorKind::Usage => return,
        };
        bump(counter, 1);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let refused_by_filter = get(&self.refused_by_filter);
        let refused_at_capacity = get(&self.refused_at_capacity);
        let refused_per_ip = get(&self.refused_per_ip);
        Stats {
            active: get(&self.active),
            accepted: get(&self.accepted),
            refused: refused_by_filter + refused_at_capacity + refused_per_ip,
            refused_by_filter,
            refused_at_capacity,
            refused_per_ip,
            frames_in: get(&self.frames_in),
            frames_out: get(&self.frames_out),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            errors: ErrorStats {
                io: get(&self.err_io),
                protocol: get(&self.err_protocol),
                outgoing_too_long: get(&self.err_outgoing),
                decode: get(&self.err_decode),
                encode: get(&self.err_encode),
                idle_timeout: get(&self.err_idle),
                stall_timeout: get(&self.err_stall),
                write_timeout: get(&self.err_write),
                handler: get(&self.err_handler),
                panic: get(&self.err_panic),
                aborted: get(&self.err_aborted),
                accept: get(&self.err_accept),
                tls_handshake: get(&self.err_tls),
                tls_handshake_timeout: get(&self.err_tls_timeout),
                proxy: get(&self.err_proxy),
            },
        }
    }
}
