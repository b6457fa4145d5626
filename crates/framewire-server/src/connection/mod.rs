//! One client connection: socketserver's `self.request`, framed.
//!
//! # Where things live
//!
//! * `mod.rs` (this file): [`Connection`] itself (its fields, and the docs on memory,
//!   timeouts, fairness, ack mode, sessions and shutdown), its constructor and accessors,
//!   error counting, the timer helper the timeouts share, and the `Drop`, `Stream` and `Sink`
//!   impls.
//! * `recv.rs`: the receive API (`recv`, `try_recv`, typed, delivery and run forms).
//! * `read.rs`: the plain-mode read path under it (decoding, reading, idle and stall
//!   timeouts, shutdown between frames).
//! * `send.rs`: the send API (`send`, `feed`, typed, `Bytes` and run forms, `flush`,
//!   `wait_acked`, `close`).
//! * `write.rs`: the plain-mode write path under it (queueing, writing, write timeout).
//! * `ack.rs`: ack mode, over the codec's [`AckDriver`]: the server's policy around it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use framewire_codec::ack::{AckDriver, AckState, SessionId, SessionStatus};
use framewire_codec::{Cause, EarlierError, FrameCodec, FrameReader, FrameWriter};
use futures::{Sink, Stream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::address::{Address, Transport};
use crate::error::ServerError;
use crate::handle::{ServerHandle, ShutdownSignal};

mod ack;
mod read;
mod recv;
mod send;
mod write;

/// What [`ServerError::Closed`] names after the handler closed the sending side itself.
fn closed_by_handler() -> EarlierError {
    EarlierError::new("the handler closed the connection", Cause::Local, false)
}

/// One client connection, handed to the [`Handler`](crate::Handler): a [`Stream`] of incoming
/// frames and a [`Sink`] of outgoing ones, with [`recv`](Connection::recv) and
/// [`send`](Connection::send) helpers.
///
/// `S` is the server's shared state type (see [`state`](Connection::state)).
///
/// # Memory
///
/// The connection owns its read and write paths instead of wrapping a tokio-util `Framed`, so
/// that an idle connection holds no buffers: it waits for read readiness without a read
/// buffer, allocates [`read_buffer_size`](crate::ServerBuilder::read_buffer_size) bytes when
/// bytes arrive, and releases the buffer when a read would block with no unfinished frame in
/// it. While a peer keeps every read full, the reads grow (doubling, up to 64 KiB or the
/// configured size if larger), so a fast sender costs few system calls; the size is kept when
/// the buffer is released (a pipelining peer's next burst is read in one call) and halves
/// again, down to the configured size, after a read into an empty buffer that used less than a
/// quarter of it. The write buffer is allocated when a frame is queued (at least
/// 8 KiB) and kept while the connection is busy; it is released once everything queued is
/// written and the read side has found nothing more to read (between bursts, and while the
/// connection is idle), so a busy connection neither allocates it nor grows it by
/// reallocation for every write. A payload of 16 KiB or more sent with `feed`/`send` is
/// written from the handler's memory with vectored writes as far as the socket takes it, and
/// only the rest is copied into the write buffer (the `Sink` interface always copies). Decoding is [`FrameCodec`]'s, so the wire format and its
/// limits are the codec's.
///
/// In ack mode the ack driver reads instead, into a buffer of its own: it cannot wait for
/// readiness first, so a read that finds nothing has allocated the buffer; it releases it
/// there (and the write buffer, if nothing is queued) whenever nothing is half-read, so an
/// idle ack-mode connection holds no buffers either, at the cost of an allocation per burst.
///
/// # Timeouts
///
/// * Idle timeout: while the handler waits in `recv` with no unfinished frame, the clock
///   starts when the wait starts and stops when a frame is returned. A handler busy
///   elsewhere is never timed out for its own slowness.
/// * Stall timeout: once bytes of a frame have arrived and the handler waits in `recv` for
///   the rest, the frame must be finished within the stall timeout. Dripping one byte at a
///   time does not reset it. With a [minimum receive
///   rate](crate::ServerBuilder::min_receive_rate) (the default) the stall timeout is an
///   allowance across frames: waits inside frames use it up, bytes received earn it back at
///   that rate, so a peer dripping complete small frames runs out too.
/// * Write timeout: a flush that cannot write a single byte for this long fails.
///
/// A timeout is an error from `recv`/`send`; it closes that direction and is counted in
/// [`Stats::errors`](crate::Stats::errors).
///
/// # Fairness
///
/// Each frame taken from the read buffer (by `recv`, `try_recv` or the `Stream`) costs one
/// unit of the task's tokio cooperative budget ([`tokio::task::coop`], 128 units per
/// scheduling turn, shared with every socket read and write of the task). When the budget is
/// used up, `recv` yields to the runtime even though frames are buffered, and `try_recv`
/// returns `Ok(None)`. A peer pipelining zero-length frames therefore gets at most about 128
/// frames served per turn, however much it has sent, and cannot starve the other connections
/// of the runtime. A run of frames ([`recv_run`](Connection::recv_run)) costs one unit per
/// 16 frames (a run saves most of the per-frame work), so a forwarding handler gets at most
/// about 2,048 zero-length frames per turn. Outside a tokio task (or inside `tokio::task::coop::unconstrained`) there
/// is no budget and nothing yields.
///
/// # Ack mode
///
/// With [`ServerBuilder::ack_mode`](crate::ServerBuilder::ack_mode) the connection speaks
/// framewire's ack mode (wire format in [`framewire_codec::ack`]) through the codec's ack
/// driver ([`AckDriver`](framewire_codec::ack::AckDriver), the same one the client and
/// `AckFramed` use), which then owns the socket, the read and write buffers, the protocol
/// engine and its timers; the connection adds the server's timeouts, shutdown and stats:
///
/// * The server's HELLO answers the client's before the handler runs (the connection task
///   reads the client's HELLO and settles its [session](#sessions) first), so a client's
///   handshake never waits for the handler's first call. That read is bounded as the
///   handler's reads are: by the idle timeout until the HELLO's first byte, then by the
///   stall timeout (also while a [takeover](#sessions) waits); once it passed, the
///   handler's first `recv` returns the timeout.
/// * `recv` yields the payload of each DATA message, in order. A message is acknowledged when
///   the handler is *done* with it: when it calls `recv` (or `try_recv`) again, calls
///   [`wait_acked`](Connection::wait_acked), or returns. Merely returning it from `recv` is
///   not enough: a handler that panics or is aborted at the end of the shutdown grace
///   period has not acknowledged the message it was working on, and the peer gets it back
///   as unacknowledged (with a [session](#sessions), the resumed connection hands it out
///   again flagged as a redelivery: the handler may have acted on it before it failed). ACKs are cumulative and coalesced, written as soon as the reader has
///   nothing more buffered or half the window was taken.
/// * Memory is bounded by the [`AckConfig`](framewire_codec::ack::AckConfig) whatever the
///   peer does: the peer's window grant is clamped to this side's caps, and a peer sending
///   beyond the window granted to it is a protocol error.
/// * Keepalive: after the configured interval without hearing from the peer (15 s by
///   default) a PING goes out while the handler waits in `recv` or `send`; after the peer
///   timeout (60 s) that call fails with
///   [`AckError::PeerSilent`](framewire_codec::ack::AckError::PeerSilent).
/// * Going away: when the server shuts down (`recv` returns `Ok(None)` between messages) or
///   closes an idle connection (idle timeout), the peer first gets a GOAWAY, telling it to
///   reconnect; a handler that returns ends the conversation with a plain close.
/// * `send`/`feed` wait while the peer's window is full (reading the peer's ACKs meanwhile;
///   messages that arrive then are kept for `recv`); `flush` writes, it does not wait for
///   ACKs; [`wait_acked`](Connection::wait_acked) does.
/// * A peer that breaks the protocol (a plain-mode first frame, a DATA out of sequence, ...)
///   gets [`ServerError::Ack`] from `recv`, counted as a protocol error.
/// * [`take_unacked`](Connection::take_unacked) returns what the peer never acknowledged.
///
/// The `Stream` and `Sink` halves of [`split`](futures::StreamExt::split) may be used from
/// different tasks in ack mode too: both halves read and write the socket, which the
/// connection polls with one waker of its own that wakes every half waiting on it. A half
/// whose call finishes or is cancelled (a send under a timeout, a branch of `select!`) never
/// leaves the other one without a wake-up.
///
/// # Sessions
///
/// A framewire client opens a session at connect (a random 128-bit id) and resumes it on
/// every reconnect (see [Sessions](framewire_codec::ack#sessions) for the wire side). The
/// server keeps the session of a connection that dropped for the
/// [linger](crate::ServerBuilder::session_linger) (60 s), within its caps on
/// [sessions](crate::ServerBuilder::max_sessions) (10,000) and on their unacknowledged
/// [bytes](crate::ServerBuilder::max_session_bytes) (64 MiB). Past a cap, sessions that hold
/// nothing (a flood of HELLOs leaves only these) give way first, then those whose client
/// never resumed, so a returning client's session survives a flood of lesser ones (see
/// [eviction](framewire_codec::ack::SessionStore#eviction)).
///
/// | situation | what the handlers see |
/// |---|---|
/// | same server process keeps the session (cuts, resets, GOAWAY, idle close) | every message **exactly once**, in order, across connections, never flagged; both directions. The one exception: the message a handler panicked on, or was aborted with, is handled again by the resumed connection, flagged as a redelivery (same id) |
/// | session lost (server restarted, linger expired, evicted, another server) | **at least once**: the client resends what it saw no ack for, flagged as redeliveries, each with the same id as before (logged at INFO as a resume of a session this server no longer has) |
/// | a client without sessions (bare `AckFramed`) | at least once per connection, ids restart per connection |
///
/// *Acknowledged* means the handler is done with the message (it asked for the next one, or
/// returned); on a resume, what the client says it delivered counts as acknowledged too.
///
/// [`recv_delivery`](Connection::recv_delivery) gives each message with its
/// [`MessageId`](framewire_codec::ack::MessageId) (session + sequence number, the same on
/// every redelivery) and its redelivery flag; [`recv`](Connection::recv) gives the payload
/// alone. A handler that must act once on each message even across server restarts keeps
/// the ids it acted on where it acts (so they survive the restart with it) and skips a
/// repeat with one lookup:
///
/// ```no_run
/// use std::collections::HashSet;
/// use std::sync::{Arc, Mutex};
/// use framewire_codec::ack::MessageId;
/// use framewire_server::{Connection, ServerError};
///
/// type Done = Arc<Mutex<HashSet<MessageId>>>; // in a real service: the database acted on
///
/// async fn handler(mut conn: Connection<Done>) -> Result<(), ServerError> {
///     while let Some(d) = conn.recv_delivery().await? {
///         // Only a message flagged as a redelivery can be a repeat: look only those up.
///         let first = !d.redelivered || !conn.state().lock().unwrap().contains(&d.id());
///         if first {
///             // ... act on d.payload ...
///             conn.state().lock().unwrap().insert(d.id());
///         }
///     }
///     Ok(())
/// }
/// ```
///
/// A handler that sends a numbered stream continues it from
/// [`sent_in_session`](Connection::sent_in_session) after a resume: what the earlier
/// connections sent is delivered, or resent by the session, already.
///
/// **Takeover.** A client that reconnects before the server noticed its old connection was
/// gone resumes a session still attached to that live connection. The new connection does not
/// get a copy: the old connection is told to end. Its handler's next `recv` returns `Ok(None)`
/// (the end of the stream) and its next `send` fails with [`ServerError::Closed`], as when
/// the peer is gone, even with messages buffered or room in the window (the driver's error is
/// [`AckError::SessionTakenOver`](framewire_codec::ack::AckError::SessionTakenOver)). A
/// takeover is a reconnect, normal operation: it is logged at DEBUG and not counted as an
/// error. The new connection resumes the session once the old handler returned (or the old
/// connection dropped), so no message is handed to two handlers and none is lost. The new
/// connection's HELLO waits for that, within the stall timeout (its handshake is in
/// progress); a handler that neither receives nor sends for that long keeps its session,
/// and the new connection is closed (the client tries again).
///
/// # Shutdown
///
/// Once the server's shutdown is requested, `recv` still returns frames already buffered or
/// in progress, then returns `Ok(None)` (end of stream) between frames, so a plain
/// `while let Some(frame) = conn.recv().await?` loop ends by itself. Sending keeps working
/// until the handler returns or is aborted at the end of the grace period (in ack mode the
/// connection keeps reading the peer's ACKs for those sends).
///
/// When the connection is dropped (the handler returned), the socket is closed; frames queued
/// with [`feed`](Connection::feed) and not flushed are lost, as with `Framed`.
pub struct Connection<S = ()> {
    io: Box<dyn Transport>,
    codec: FrameCodec,
    /// The read buffer and its policy: framewire's one plain read path ([`FrameReader`]).
    input: FrameReader,
    /// Frames taken by the handler but not yet added to the server's shared `frames_in`
    /// counter (see `count_frame_in`).
    frames_in_unpublished: u64,
    /// Frames queued but not yet added to the server's shared `frames_out` counter (added
    /// when the write buffer is written).
    frames_out_unpublished: u64,
    /// The write queue: framewire's one plain write path ([`FrameWriter`]).
    out: FrameWriter,
    peer: Address,
    /// The load balancer that relayed this connection (PROXY protocol); boxed, as most
    /// connections have none.
    proxied_by: Option<Box<Address>>,
    server: ServerHandle<S>,
    eof: bool,
    read_closed: bool,
    /// `recv` ended because of a graceful shutdown; the transport is still read (ack mode:
    /// ACKs for the handler's last sends).
    recv_ended: bool,
    write_closed: bool,
    /// Why sending is over, once it is: the error that ended it, or the handler's close.
    /// Named by every later [`ServerError::Closed`].
    write_closed_why: Option<EarlierError>,
    /// Set by `poll_frame_slow::<true>` when it stops at a whole buffered frame for
    /// `poll_recv_run` to take as a run.
    run_ready: bool,
    idle_since: Option<Instant>,
    /// When the current wait inside an unfinished frame began.
    frame_since: Option<Instant>,
    /// What is left of the stall allowance when less than the whole stall timeout (see
    /// `account_stall`); `None`: all of it.
    stall_left: Option<Duration>,
    write_since: Option<Instant>,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    shutdown: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    ack: Option<Box<ack::AckConn<S>>>,
    #[cfg(feature = "tls")]
    tls: Option<Box<crate::tls::TlsInfo>>,
}

/// Most frames a connection takes before adding them to the server's `frames_in` counter (it
/// also does when its buffered bytes are used up).
const FRAMES_IN_BATCH: u64 = 64;

impl<S> fmt::Debug for Connection<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("proxied_by", &self.proxied_by)
            .field("buffered_in", &self.input.len())
            .field("buffered_out", &self.out.len())
            .field("read_closed", &self.read_closed)
            .field("write_closed", &self.write_closed)
            .field("ack_mode", &self.ack.is_some())
            .finish_non_exhaustive()
    }
}

/// Polls `timer` for `deadline`, arming it on first use.
///
/// The deadline moves later with every frame (idle clock) or write (write clock), so
/// re-arming the timer each time would cost a timer-wheel update per read. Instead, as Netty's
/// `IdleStateHandler` does, a timer armed for an earlier deadline is left alone: when it
/// fires, it is moved to the current deadline and polled again. Only a deadline earlier than
/// the armed one re-arms at once.
///
/// The deadline is `since + after`; one beyond what `Instant` can hold (a configured timeout of
/// `Duration::MAX`, say) is no deadline at all rather than an overflow panic.
fn poll_deadline(
    timer: &mut Option<Pin<Box<Sleep>>>,
    since: Instant,
    after: Duration,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let Some(deadline) = since.checked_add(after) else {
        return Poll::Pending;
    };
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline);
    }
    loop {
        ready!(timer.as_mut().poll(cx));
        if timer.deadline() >= deadline {
            return Poll::Ready(());
        }
        // Fired for an older deadline: the clock was restarted since.
        timer.as_mut().reset(deadline);
    }
}

impl<S> Connection<S> {
    pub(crate) fn new(io: Box<dyn Transport>, peer: Address, server: ServerHandle<S>) -> Self {
        let codec = server.connection_view().config.new_codec();
        // Ack mode: the codec's one ack driver owns the transport, its buffers and timers;
        // the plain-mode field keeps a stand-in.
        let (io, ack) = match server.connection_view().config.ack {
            Some(config) => {
                // Accepting: a HELLO naming a session is answered from the server's sessions.
                let state = AckState::accepting(config, codec.max_frame_len());
                let driver = AckDriver::from_parts(
                    ack::Counted::new(io, server.clone()),
                    codec.clone(),
                    BytesMut::new(),
                    BytesMut::new(),
                    state,
                    server.connection_view().config.write_buffer_limit,
                )
                .with_sessions(&server.connection_view().sessions);
                let detached: Box<dyn Transport> = Box::new(ack::Detached);
                (detached, Some(Box::new(ack::AckConn::new(driver))))
            }
            None => (io, None),
        };
        Connection {
            io,
            codec,
            input: FrameReader::with_read_size(server.connection_view().config.read_buffer_size),
            frames_in_unpublished: 0,
            frames_out_unpublished: 0,
            run_ready: false,
            out: FrameWriter::new(),
            peer,
            proxied_by: None,
            server,
            eof: false,
            read_closed: false,
            recv_ended: false,
            write_closed: false,
            write_closed_why: None,
            idle_since: None,
            frame_since: None,
            stall_left: None,
            write_since: None,
            read_timer: None,
            write_timer: None,
            shutdown: None,
            ack,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    #[cfg(feature = "tls")]
    pub(crate) fn set_tls(&mut self, info: crate::tls::TlsInfo) {
        self.tls = Some(Box::new(info));
    }

    /// The TLS session (feature `tls`, with [`ServerBuilder::tls`](crate::ServerBuilder::tls)):
    /// the negotiated ALPN protocol, the client's certificate chain (mTLS), SNI, version and
    /// cipher suite. `None` on a connection without TLS.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<&crate::tls::TlsInfo> {
        self.tls.as_deref()
    }

    /// Ack mode: writes the HELLO if the socket takes it right away (a fresh socket always
    /// does); otherwise it goes out with the first poll of `recv` or `send`.
    pub(crate) fn start(&mut self) {
        self.ack_start();
    }

    /// The peer's address: socketserver's `self.client_address`. Behind a load balancer
    /// speaking the [PROXY protocol](crate::ServerBuilder::proxy_protocol), the original
    /// client's address from the header.
    pub fn peer_addr(&self) -> &Address {
        &self.peer
    }

    /// The load balancer that relayed this connection with a PROXY header (the socket's own
    /// peer address), or `None` for a direct connection and for headers that name no client
    /// (`PROXY UNKNOWN`, v2 `LOCAL` as in health checks), whose peer address is the
    /// balancer's.
    pub fn proxied_by(&self) -> Option<&Address> {
        self.proxied_by.as_deref()
    }

    pub(crate) fn set_proxied_by(&mut self, balancer: Address) {
        self.proxied_by = Some(Box::new(balancer));
    }

    /// The server handle: socketserver's `self.server` (shutdown, stats, local address,
    /// shared state). Clone it to keep it beyond the connection.
    pub fn server(&self) -> &ServerHandle<S> {
        &self.server
    }

    /// The server's shared application state; shorthand for `self.server().state()`.
    pub fn state(&self) -> &S {
        self.server.state()
    }

    /// A future that completes when the server's shutdown is requested, for use in
    /// `select!` next to [`recv`](Connection::recv) or any other work. It does not borrow the
    /// connection: take it before the loop and select on `&mut signal` (see
    /// [`ShutdownSignal`] for the example).
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: it owns no data and can be re-created at any time.
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        self.server.shutdown_signal()
    }

    /// `true` once the server's shutdown has been requested.
    pub fn is_shutting_down(&self) -> bool {
        self.server.is_shutting_down()
    }

    /// The codec (for its limit and byte order).
    pub fn codec(&self) -> &FrameCodec {
        &self.codec
    }

    /// `true` if the message most recently returned by [`recv`](Connection::recv) (or
    /// [`try_recv`](Connection::try_recv), or the typed and `Stream` forms) was flagged by the
    /// peer as a redelivery: a message it sent on an earlier connection that was not
    /// acknowledged before that connection dropped, so this handler (or an earlier one) may
    /// already have seen it. Lets a handler deduplicate. Always `false` in plain mode.
    pub fn last_was_redelivery(&self) -> bool {
        self.ack.as_ref().is_some_and(|a| a.last_redelivered)
    }

    /// `true` if the server runs in ack mode (see [Ack mode](#ack-mode)).
    pub fn is_ack_mode(&self) -> bool {
        self.ack.is_some()
    }

    /// Ack mode: the client's session on this connection (all zero: the client opened none)
    /// and what became of it ([`SessionStatus::Resumed`]: it continues exactly where the
    /// last connection left it). `None` in plain mode.
    ///
    /// [`SessionStatus::Resumed`]: framewire_codec::ack::SessionStatus::Resumed
    pub fn session(&self) -> Option<(SessionId, SessionStatus)> {
        let state = self.ack.as_ref()?.driver.state();
        Some((state.session_id(), state.session_status()))
    }

    /// Ack mode: the sequence number of the last message sent to the client in its session,
    /// over every connection of the session (0: none yet). A handler that produces a
    /// numbered stream continues it from here after a resume: the messages sent before are
    /// delivered (or resent by the session) already. 0 in plain mode.
    pub fn sent_in_session(&self) -> u64 {
        self.ack
            .as_ref()
            .map_or(0, |a| a.driver.state().last_sent())
    }

    /// Counts the error; logs it at DEBUG only: the handler returns it (or decides it is
    /// harmless), and the server logs a handler's error once, at WARN, with the peer.
    fn count_and_log(&self, err: &ServerError, what: &str) {
        self.server
            .connection_view()
            .counters
            .count_error(err.kind());
        tracing::debug!(peer = %self.peer, error = %err, "{what} failed");
    }
}

impl<S> Drop for Connection<S> {
    fn drop(&mut self) {
        self.publish_frames_in();
        // Ack mode: a handler that returned is done with every message it received: write
        // their ACK now if the socket takes it (the socket closes right after). A handler
        // that panicked, or was aborted after the shutdown grace period, is not.
        let aborted = self
            .server
            .connection_view()
            .aborting
            .load(std::sync::atomic::Ordering::SeqCst);
        let unfinished = std::thread::panicking() || aborted;
        if self.ack.is_some() && !unfinished && !self.write_closed {
            self.ack_release_now();
        }
        // Ack mode: the client may reconnect and resume its session (kept for the linger).
        // The message a panicking or aborted handler held is not delivered: the client
        // resends it, and it comes back flagged as a redelivery.
        if let Some(a) = self.ack.as_deref_mut() {
            if unfinished {
                a.driver.detach_session_unfinished();
            } else {
                a.driver.detach_session();
            }
        }
        self.publish_frames_out();
    }
}

impl<S> Stream for Connection<S> {
    type Item = Result<Bytes, ServerError>;

    /// Same as [`Connection::poll_recv`], with `Ok(None)` as the end of the stream.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx).map(Result::transpose)
    }
}

impl<S, T: AsRef<[u8]>> Sink<T> for Connection<S> {
    type Error = ServerError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        self.get_mut().poll_send_ready(cx)
    }

    /// Queues the message, copying it into the write buffer (unlike
    /// [`feed`](Connection::feed), which writes large payloads from their own memory).
    fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), ServerError> {
        self.get_mut().queue(item.as_ref())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        self.get_mut().poll_flush_all(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        self.get_mut().poll_close_write(cx)
    }
}
