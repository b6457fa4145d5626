//! One client connection: socketserver's `self.request`, framed.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use framewire_codec::ack::{AckDriver, AckState, Delivery, GoAwayReason, SessionId, SessionStatus};
use framewire_codec::typed::{self, Bincode, Format};
use framewire_codec::{
    Cause, EarlierError, FrameCodec, FrameError, FrameReader, FrameRun, FrameWriter,
    VECTORED_WRITE_MIN,
};
use futures::{Sink, Stream};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::address::{Address, Transport};
use crate::error::ServerError;
use crate::handle::{ServerHandle, ShutdownSignal};
use crate::stats::bump;

mod ack;

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

/// Most frames one [`FrameRun`] from `recv_run` holds.
const RUN_MAX_FRAMES: usize = 128;

/// What [`Connection::feed_run`] has left to write.
enum FeedRun<I> {
    /// Plain mode: the whole run, written in one piece.
    Whole(FrameRun),
    /// Ack mode: the frames still to queue (how many, and the iterator over them).
    Frames(usize, I),
    /// Written.
    Done,
}

/// Frames of a run per unit of the task's cooperative budget: a handler forwarding runs does
/// about as much work per unit as one handling a frame (the per-frame costs a run saves are
/// most of a small frame's), and a flood of zero-length frames still yields within a turn.
const RUN_FRAMES_PER_UNIT: usize = 16;

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

    /// Receives the next message's payload: in plain mode the next frame, in ack mode the next
    /// DATA message (which counts as taken by the handler, and is acknowledged, when this
    /// returns it).
    ///
    /// Returns `Ok(None)` when the peer closed the connection between frames, or, once the
    /// server is shutting down, between frames (see [Shutdown](#shutdown)).
    ///
    /// # Errors
    ///
    /// [`ServerError::Frame`] for invalid framing (a header over the limit, end of stream
    /// inside a frame), [`ServerError::Ack`] for an ack-mode protocol violation,
    /// [`ServerError::Io`], [`ServerError::IdleTimeout`], [`ServerError::StallTimeout`]. After
    /// an error, `recv` returns `Ok(None)`.
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: if it is dropped before completing (for example the other branch of
    /// a `select!` won), no frame is lost; bytes already read stay buffered for the next call,
    /// and the idle and stall clocks keep running from where they started.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, ServerError> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Receives the next message and decodes it as a `T` with bincode (the default
    /// [`Format`]); see [`recv_typed_with`](Connection::recv_typed_with).
    ///
    /// A typed server: every frame is one `Order`, every reply one `Receipt`. A frame that does
    /// not decode fails this call only; the handler may skip it and carry on:
    ///
    /// ```no_run
    /// use framewire_server::{Connection, ErrorKind, Server, ServerError};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize)]
    /// struct Order {
    ///     id: u64,
    ///     item: String,
    /// }
    ///
    /// #[derive(Serialize)]
    /// struct Receipt {
    ///     id: u64,
    ///     accepted: bool,
    /// }
    ///
    /// async fn orders(mut conn: Connection) -> Result<(), ServerError> {
    ///     loop {
    ///         match conn.recv_typed::<Order>().await {
    ///             Ok(Some(order)) => {
    ///                 let accepted = !order.item.is_empty();
    ///                 conn.send_typed(&Receipt { id: order.id, accepted }).await?;
    ///             }
    ///             Ok(None) => return Ok(()),
    ///             Err(e) if matches!(e.kind(), ErrorKind::Decode) => {
    ///                 eprintln!("skipped a frame that is not an Order: {e}")
    ///             }
    ///             Err(e) => return Err(e),
    ///         }
    ///     }
    /// }
    ///
    /// # async fn run() -> Result<(), ServerError> {
    /// Server::bind("127.0.0.1:9999").await?.serve(orders).await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`recv_typed_with`](Connection::recv_typed_with).
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe, as [`recv`](Connection::recv).
    pub async fn recv_typed<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ServerError> {
        self.recv_typed_with::<Bincode, T>().await
    }

    /// Receives the next message and decodes it as a `T` with format `F`.
    ///
    /// # Errors
    ///
    /// Everything [`recv`](Connection::recv) returns, and [`ServerError::Typed`] for a message
    /// that does not decode as a `T`. That error is for that message only (counted in
    /// [`ErrorStats::decode`](crate::ErrorStats::decode)): the connection stays usable and the
    /// next call receives the next message.
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe, as [`recv`](Connection::recv).
    pub async fn recv_typed_with<F: Format, T: DeserializeOwned>(
        &mut self,
    ) -> Result<Option<T>, ServerError> {
        let Some(frame) = self.recv().await? else {
            return Ok(None);
        };
        typed::decode::<F, T>(&frame).map(Some).map_err(|e| {
            let err = ServerError::Typed(e);
            self.count_and_log(&err, "decode");
            err
        })
    }

    /// Returns the next message if it is already complete in the read buffer, without reading
    /// from the socket or waiting. `Ok(None)` means "nothing complete buffered" (not end of
    /// stream), or that the task has used up its cooperative budget for this turn (see
    /// [Fairness](Connection#fairness)): the next `recv` returns the frame after a yield. Lets a handler answer a burst of pipelined frames with one flush:
    ///
    /// ```no_run
    /// # async fn mirror(mut conn: framewire_server::Connection) -> Result<(), framewire_server::ServerError> {
    /// while let Some(frame) = conn.recv().await? {
    ///     conn.feed(&frame).await?;
    ///     while let Some(more) = conn.try_recv()? {
    ///         conn.feed(&more).await?;
    ///     }
    ///     conn.flush().await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// In ack mode, ACKs and other control frames that are buffered are processed on the way.
    ///
    /// # Errors
    ///
    /// [`ServerError::Frame`] or [`ServerError::Ack`] if the buffered bytes are invalid; the
    /// receive side is then closed, as with [`recv`](Connection::recv).
    pub fn try_recv(&mut self) -> Result<Option<Bytes>, ServerError> {
        if self.ack.is_some() {
            return self.try_recv_ack().map(|d| d.map(|d| d.payload));
        }
        if self.read_closed || self.recv_ended {
            return Ok(None);
        }
        if self.input.is_empty() {
            return Ok(None);
        }
        // The task's cooperative budget, as in `recv` (no waker to register here: the
        // caller's next `recv`, `flush` or other I/O yields).
        let mut no_waker = Context::from_waker(Waker::noop());
        let Poll::Ready(coop) = tokio::task::coop::poll_proceed(&mut no_waker) else {
            return Ok(None);
        };
        let frame = match self.input.next_frame(&mut self.codec) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.read_failed(e.into())),
        };
        coop.made_progress();
        self.idle_since = None;
        self.frame_since = None;
        self.count_frame_in();
        Ok(Some(frame))
    }

    /// Sends one message and flushes it (and anything queued before it) to the socket.
    ///
    /// In ack mode it first waits for room in the peer's window (reading the peer's ACKs
    /// meanwhile); it does not wait for this message's ACK (see
    /// [`wait_acked`](Connection::wait_acked)).
    ///
    /// # Errors
    ///
    /// [`ServerError::Frame`] (or [`ServerError::Ack`] in ack mode) if the payload is over
    /// the limit (nothing is sent; the connection stays usable), [`ServerError::Io`],
    /// [`ServerError::WriteTimeout`] (in ack mode also when the peer's window stays full for
    /// the write timeout), [`ServerError::Closed`] after an earlier send error or
    /// [`close`](Connection::close).
    ///
    /// # Cancellation safety
    ///
    /// Not cancellation safe: if dropped early the message may be queued but not yet written;
    /// the next `send` or `flush` writes it.
    pub async fn send(&mut self, frame: impl AsRef<[u8]>) -> Result<(), ServerError> {
        self.feed(frame).await?;
        self.flush().await
    }

    /// Encodes `value` with bincode (the default [`Format`]) and sends it as one message.
    ///
    /// # Errors
    ///
    /// As [`send_typed_with`](Connection::send_typed_with).
    pub async fn send_typed<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), ServerError> {
        self.send_typed_with::<Bincode, T>(value).await
    }

    /// Encodes `value` with format `F` and sends it as one message.
    ///
    /// # Errors
    ///
    /// [`ServerError::Typed`] if the value cannot be encoded (nothing is sent; counted in
    /// [`ErrorStats::encode`](crate::ErrorStats::encode)), and everything
    /// [`send`](Connection::send) returns.
    ///
    /// # Cancellation safety
    ///
    /// As [`send`](Connection::send).
    pub async fn send_typed_with<F: Format, T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), ServerError> {
        let payload = typed::encode::<F, T>(value).map_err(|e| {
            let err = ServerError::Typed(e);
            self.count_and_log(&err, "encode");
            err
        })?;
        self.send(payload).await
    }

    /// Queues one message without flushing. Writes first if
    /// [`write_buffer_limit`](crate::ServerBuilder::write_buffer_limit) bytes are already
    /// queued; in ack mode, waits for room in the peer's window. Use it to send many messages
    /// with one write, then [`flush`](Connection::flush).
    ///
    /// In plain mode a payload of at least
    /// [`VECTORED_WRITE_MIN`](framewire_codec::VECTORED_WRITE_MIN) bytes (16 KiB) is written
    /// at once from `frame`, behind what was queued before it, with vectored writes, as far as
    /// the socket takes it without waiting; only the rest is copied into the write buffer,
    /// where it counts toward the limit (so the next `feed` or `flush` waits for it). The
    /// `Sink` interface always copies (its `start_send` cannot write).
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    ///
    /// # Cancellation safety
    ///
    /// If dropped before completing, the message was not queued (the only wait is for room
    /// before the message is touched).
    pub async fn feed(&mut self, frame: impl AsRef<[u8]>) -> Result<(), ServerError> {
        let frame = frame.as_ref();
        poll_fn(|cx| self.poll_send_ready(cx)).await?;
        if frame.len() >= VECTORED_WRITE_MIN && self.ack.is_none() && self.io.is_write_vectored() {
            return poll_fn(|cx| Poll::Ready(self.write_or_queue(frame, cx))).await;
        }
        self.queue(frame)
    }

    /// Queues one message held in [`Bytes`] without flushing, without copying it if it is at
    /// least [`ZERO_COPY_MIN`](framewire_codec::ZERO_COPY_MIN) bytes (1 KiB): the payload is
    /// written from its own memory, behind its header, with vectored writes, when the queue
    /// is written. For forwarding what [`recv`](Connection::recv) returned (a mirror, a
    /// proxy): such a frame points into the connection's read buffer, which then stays
    /// allocated until the frame is written, so flush before waiting for more. Smaller
    /// payloads are copied, as with [`feed`](Connection::feed), since one write of many small
    /// frames costs less than gathering them.
    ///
    /// Otherwise as [`feed`](Connection::feed): writes first if the write buffer limit is
    /// reached (queued payloads count toward it), waits for window room in ack mode (where
    /// the message is copied).
    ///
    /// ```no_run
    /// # async fn mirror(mut conn: framewire_server::Connection) -> Result<(), framewire_server::ServerError> {
    /// while let Some(frame) = conn.recv().await? {
    ///     conn.feed_bytes(frame).await?;
    ///     while let Some(more) = conn.try_recv()? {
    ///         conn.feed_bytes(more).await?;
    ///     }
    ///     conn.flush().await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    ///
    /// # Cancellation safety
    ///
    /// As [`feed`](Connection::feed).
    pub async fn feed_bytes(&mut self, frame: Bytes) -> Result<(), ServerError> {
        poll_fn(|cx| self.poll_send_ready(cx)).await?;
        if self.ack.is_some() {
            return self.queue(&frame);
        }
        if self.write_closed {
            return Err(self.closed_for_sending());
        }
        match self.out.feed_bytes(&self.codec, frame) {
            Ok(()) => {
                self.frames_out_unpublished += 1;
                Ok(())
            }
            Err(e) => {
                // Nothing was queued; the stream is still in sync.
                let err = ServerError::from(e);
                self.count_and_log(&err, "send");
                Err(err)
            }
        }
    }

    /// Sends one message held in [`Bytes`] (without copying it, see
    /// [`feed_bytes`](Connection::feed_bytes)) and flushes it.
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    ///
    /// # Cancellation safety
    ///
    /// As [`send`](Connection::send).
    pub async fn send_bytes(&mut self, frame: Bytes) -> Result<(), ServerError> {
        self.feed_bytes(frame).await?;
        self.flush().await
    }

    /// Receives every whole frame buffered after the next read (at least one) as one
    /// [`FrameRun`], for a handler that forwards frames as they came (a mirror, a relay): with
    /// [`feed_run`](Connection::feed_run), the run is split off the read buffer once and
    /// written with one copy (or none, for a run of at least
    /// [`ZERO_COPY_MIN`](framewire_codec::ZERO_COPY_MIN) bytes), where
    /// [`recv`](Connection::recv) + [`feed_bytes`](Connection::feed_bytes) split, count and
    /// copy each frame. Each frame was checked against the maximum frame length, as with
    /// `recv`.
    ///
    /// A run holds at most 128 frames, and each 16 frames of it spend one unit of the task's
    /// cooperative budget (see [Fairness](Connection#fairness)). In ack mode a run is one
    /// message, taken as with `recv` (its id and redelivery flag are not in the run: use
    /// [`recv_delivery`](Connection::recv_delivery) for those).
    ///
    /// ```no_run
    /// # async fn mirror(mut conn: framewire_server::Connection) -> Result<(), framewire_server::ServerError> {
    /// while let Some(run) = conn.recv_run().await? {
    ///     conn.feed_run(run).await?;
    ///     while let Some(more) = conn.try_recv_run()? {
    ///         conn.feed_run(more).await?;
    ///     }
    ///     conn.flush().await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv).
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe, as [`recv`](Connection::recv).
    pub async fn recv_run(&mut self) -> Result<Option<FrameRun>, ServerError> {
        poll_fn(|cx| self.poll_recv_run(cx)).await
    }

    /// Polls for the next run of frames; the poll form of
    /// [`recv_run`](Connection::recv_run).
    pub fn poll_recv_run(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<FrameRun>, ServerError>> {
        if self.ack.is_some() {
            return self
                .poll_recv_ack(cx)
                .map_ok(|d| d.map(|d| FrameRun::single(d.payload)));
        }
        if !(self.read_closed || self.eof || self.recv_ended) {
            if let Some(run) = self.take_run(cx) {
                return Poll::Ready(Ok(Some(ready!(run))));
            }
        }
        let polled = ready!(self.poll_frame_slow::<true>(cx, true));
        if std::mem::take(&mut self.run_ready) {
            if let Some(run) = self.take_run(cx) {
                return Poll::Ready(Ok(Some(ready!(run))));
            }
        }
        Poll::Ready(polled.map(|frame| {
            frame.map(|frame| {
                self.count_frame_in();
                FrameRun::single(frame)
            })
        }))
    }

    /// Takes a run if a whole frame is buffered (`None` if not); `Pending` if the task's
    /// cooperative budget is spent.
    fn take_run(&mut self, cx: &mut Context<'_>) -> Option<Poll<FrameRun>> {
        if !self.input.has_buffered_frame(&self.codec) {
            return None;
        }
        let coop = match tokio::task::coop::poll_proceed(cx) {
            Poll::Ready(coop) => coop,
            Poll::Pending => return Some(Poll::Pending),
        };
        let run = self.input.next_run(&mut self.codec, RUN_MAX_FRAMES)?;
        coop.made_progress();
        // One unit per `RUN_FRAMES_PER_UNIT` frames; a budget spent meanwhile makes the
        // task's next wait yield (no waker to register here).
        let mut no_waker = Context::from_waker(Waker::noop());
        for _ in 1..run.len().div_ceil(RUN_FRAMES_PER_UNIT) {
            match tokio::task::coop::poll_proceed(&mut no_waker) {
                Poll::Ready(more) => more.made_progress(),
                Poll::Pending => break,
            }
        }
        self.idle_since = None;
        self.frame_since = None;
        self.frames_in_unpublished += run.len() as u64;
        if self.input.is_empty() || self.frames_in_unpublished >= FRAMES_IN_BATCH {
            self.publish_frames_in();
        }
        Some(Poll::Ready(run))
    }

    /// The run form of [`try_recv`](Connection::try_recv): the whole frames already
    /// buffered as one [`FrameRun`] (see [`recv_run`](Connection::recv_run)), or `Ok(None)`
    /// if none is (or the task's cooperative budget is spent). Never reads or waits.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Connection::try_recv).
    pub fn try_recv_run(&mut self) -> Result<Option<FrameRun>, ServerError> {
        if self.ack.is_none() && !(self.read_closed || self.recv_ended) {
            let mut no_waker = Context::from_waker(Waker::noop());
            match self.take_run(&mut no_waker) {
                Some(Poll::Ready(run)) => return Ok(Some(run)),
                Some(Poll::Pending) => return Ok(None),
                None => {}
            }
        }
        Ok(self.try_recv()?.map(FrameRun::single))
    }

    /// Queues a run of frames (from [`recv_run`](Connection::recv_run), on this connection or
    /// another) without flushing, as it is: copied in one piece if it is smaller than
    /// [`ZERO_COPY_MIN`](framewire_codec::ZERO_COPY_MIN), else written from its own memory.
    /// Writes first if the write buffer limit is reached. In ack mode each frame of the run
    /// is sent as one message, as with [`feed_bytes`](Connection::feed_bytes).
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send): a frame of the run over this connection's maximum
    /// frame length queues nothing of the run (plain mode).
    ///
    /// # Cancellation safety
    ///
    /// In plain mode the run is queued whole or not at all. In ack mode, if dropped while it
    /// waits for window room, the frames before the one waiting were queued and the others
    /// were not.
    pub fn feed_run(
        &mut self,
        run: FrameRun,
    ) -> impl Future<Output = Result<(), ServerError>> + '_ {
        // A poll_fn over a small state rather than an `async fn`: an async fn keeps its
        // argument twice (the parameter and its binding) and the futures it awaits on top,
        // and every handler future that holds a `feed_run` pays for that, so every idle
        // connection of a mirror does. Measured (size_of the future of
        // `framewire_examples::mirror`, release): 1,224 bytes as an async fn, 1,032 so.
        let mut feed = if self.ack.is_some() {
            // Ack mode numbers and tracks every message: queued one at a time.
            FeedRun::Frames(run.len(), run.into_frames())
        } else {
            FeedRun::Whole(run)
        };
        poll_fn(move |cx| loop {
            if let FeedRun::Frames(0, _) | FeedRun::Done = feed {
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_send_ready(cx))?;
            match std::mem::replace(&mut feed, FeedRun::Done) {
                FeedRun::Whole(run) => return Poll::Ready(self.feed_run_now(run)),
                FeedRun::Frames(left, mut frames) => {
                    let Some(frame) = frames.next() else {
                        return Poll::Ready(Ok(()));
                    };
                    self.queue(&frame)?;
                    feed = FeedRun::Frames(left - 1, frames);
                }
                FeedRun::Done => return Poll::Ready(Ok(())),
            }
        })
    }

    /// Plain mode: writes a whole run into the write buffer (room was checked).
    fn feed_run_now(&mut self, run: FrameRun) -> Result<(), ServerError> {
        if self.write_closed {
            return Err(self.closed_for_sending());
        }
        let frames = run.len() as u64;
        match self.out.feed_run(&self.codec, run) {
            Ok(()) => {
                self.frames_out_unpublished += frames;
                Ok(())
            }
            Err(e) => {
                let err = ServerError::from(e);
                self.count_and_log(&err, "send");
                Err(err)
            }
        }
    }

    /// Writes every queued message (and, in ack mode, pending ACKs) to the socket. In ack
    /// mode this does not wait for the peer's ACKs; see [`wait_acked`](Connection::wait_acked).
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: unwritten bytes stay queued for the next flush.
    pub async fn flush(&mut self) -> Result<(), ServerError> {
        poll_fn(|cx| self.poll_flush_all(cx)).await
    }

    /// Ack mode: acknowledges every message `recv` returned so far (the handler is done with
    /// them), flushes, then waits until the peer's application is done with (acknowledged)
    /// every message sent so far. Returns at once in plain mode.
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send); [`ServerError::Closed`] if the peer closed the
    /// connection first (the unacknowledged messages are in
    /// [`take_unacked`](Connection::take_unacked)).
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: messages read meanwhile stay buffered for `recv`.
    pub async fn wait_acked(&mut self) -> Result<(), ServerError> {
        // Waiting for the peer's acks while holding back ours could deadlock two peers doing
        // request/response: the messages received so far count as done.
        self.ack_release_now();
        self.flush().await?;
        poll_fn(|cx| self.poll_ack_all_acked(cx)).await
    }

    /// Ack mode: removes and returns the messages sent but not acknowledged, oldest first
    /// (for example after the peer disconnected), so that nothing is silently lost. Empty in
    /// plain mode. Do not send on the connection afterwards.
    pub fn take_unacked(&mut self) -> Vec<Bytes> {
        self.ack
            .as_mut()
            .map(|a| a.driver.take_unacked())
            .unwrap_or_default()
    }

    /// Flushes, then shuts down the sending direction (the peer sees end of stream). Later
    /// sends fail with [`ServerError::Closed`].
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    pub async fn close(&mut self) -> Result<(), ServerError> {
        poll_fn(|cx| self.poll_close_write(cx)).await
    }

    /// Polls for the next message; the poll form of [`recv`](Connection::recv).
    #[inline]
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, ServerError>> {
        if self.ack.is_none() {
            // Passed through as is, not unwrapped and rewrapped: rewrapping made the compiler
            // copy the frame through memory once more per call.
            let polled = self.poll_frame(cx, true);
            if let Poll::Ready(Ok(Some(_))) = &polled {
                self.count_frame_in();
            }
            return polled;
        }
        self.poll_recv_ack(cx).map_ok(|d| d.map(|d| d.payload))
    }

    /// Receives the next message with its id: in ack mode its [`MessageId`] (session +
    /// sequence number, the same on every redelivery) and redelivery flag (see
    /// [Sessions](Connection#sessions)); in plain mode the payload with seq 0, no session and
    /// no flag. Otherwise as [`recv`](Connection::recv), which returns the payload alone.
    ///
    /// [`MessageId`]: framewire_codec::ack::MessageId
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv).
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe, as [`recv`](Connection::recv).
    pub async fn recv_delivery(&mut self) -> Result<Option<Delivery>, ServerError> {
        poll_fn(|cx| self.poll_recv_delivery(cx)).await
    }

    /// Returns the next message with its id if it is already buffered, without waiting; as
    /// [`try_recv`](Connection::try_recv), with the id and flag of
    /// [`recv_delivery`](Connection::recv_delivery).
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Connection::try_recv).
    pub fn try_recv_delivery(&mut self) -> Result<Option<Delivery>, ServerError> {
        if self.ack.is_some() {
            return self.try_recv_ack();
        }
        Ok(self.try_recv()?.map(|payload| Delivery {
            session: [0; 16],
            seq: 0,
            payload,
            redelivered: false,
        }))
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

    /// Polls for the next message with its id; the poll form of
    /// [`recv_delivery`](Connection::recv_delivery).
    pub fn poll_recv_delivery(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Delivery>, ServerError>> {
        if self.ack.is_some() {
            return self.poll_recv_ack(cx);
        }
        self.poll_recv(cx).map_ok(|f| {
            f.map(|payload| Delivery {
                session: [0; 16],
                seq: 0,
                payload,
                redelivered: false,
            })
        })
    }

    /// The frame layer: decodes the next frame, reading as needed. With `for_recv` (the
    /// handler waits in `recv`, not a sender reading ACKs), a requested shutdown ends the
    /// stream between frames and the idle clock runs.
    ///
    /// The common case, a whole frame already buffered, is tried here, small and inlined, so
    /// the frame reaches the handler without a trip through memory per call level (see
    /// `FrameCodec::decode_buffered`); everything else is `poll_frame_slow`.
    #[inline]
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        for_recv: bool,
    ) -> Poll<Result<Option<Bytes>, ServerError>> {
        let open = !(self.read_closed || self.eof || (for_recv && self.recv_ended));
        if open && !self.input.is_empty() {
            // One unit of the task's cooperative budget per buffered frame (see
            // [Fairness](Connection#fairness)): once it is used up, the task yields here
            // and is polled again after the runtime's other tasks had their turn.
            let coop = ready!(tokio::task::coop::poll_proceed(cx));
            if let Some(frame) = self.input.next_buffered(&mut self.codec) {
                coop.made_progress();
                self.idle_since = None;
                self.frame_since = None;
                return Poll::Ready(Ok(Some(frame)));
            }
        }
        self.poll_frame_slow::<false>(cx, for_recv)
    }

    /// Reads until a frame can be returned. With `RUN`, it stops instead, setting
    /// `run_ready` and returning `Ok(None)`, as soon as a whole frame is buffered with its
    /// header (for `poll_recv_run` to take it and the frames behind it as one run); frames
    /// whose header the decoder already consumed are returned as with `RUN == false`.
    #[inline(never)]
    fn poll_frame_slow<const RUN: bool>(
        &mut self,
        cx: &mut Context<'_>,
        for_recv: bool,
    ) -> Poll<Result<Option<Bytes>, ServerError>> {
        // Once per read (or end of stream), not per frame.
        self.publish_frames_in();
        if self.read_closed || (for_recv && self.recv_ended) {
            return Poll::Ready(Ok(None));
        }
        loop {
            if !self.input.is_empty() || self.eof {
                if RUN && self.input.has_buffered_frame(&self.codec) {
                    self.run_ready = true;
                    return Poll::Ready(Ok(None));
                }
                match self.input.next_frame_or_end(&mut self.codec, self.eof) {
                    Ok(Some(frame)) => {
                        self.idle_since = None;
                        self.frame_since = None;
                        return Poll::Ready(Ok(Some(frame)));
                    }
                    Ok(None) if self.eof => {
                        tracing::debug!("peer closed the connection");
                        self.read_closed = true;
                        return Poll::Ready(Ok(None));
                    }
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Err(self.read_failed(e.into()))),
                }
            }
            if for_recv && self.between_frames() && self.poll_shutdown_requested(cx) {
                tracing::debug!("shutdown requested; ending the incoming stream");
                self.recv_ended = true;
                return Poll::Ready(Ok(None));
            }
            // The reader sizes the read, waits for readiness without a buffer while it holds
            // none, and releases its buffer when a read finds nothing between frames.
            match self
                .input
                .poll_fill_ready(&self.codec, Pin::new(&mut self.io), cx)
            {
                Poll::Pending => {
                    if !self.input.holds_memory() {
                        // Idle: the write buffer's memory too, if nothing waits in it.
                        self.out.release();
                    }
                    return self.poll_read_timeout(cx, for_recv);
                }
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(n)) => {
                    bump(&self.server.connection_view().counters.bytes_in, n as u64);
                    if self.frame_since.is_some() || self.stall_left.is_some() {
                        self.account_stall(n);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.read_failed(e.into()))),
            }
        }
    }

    /// Counts a frame the handler takes (plain mode). The shared counter is updated once the
    /// buffered bytes are used up or [`FRAMES_IN_BATCH`] frames were taken, and before every
    /// read: a handler taking a burst of small frames costs one atomic add per burst.
    #[inline]
    fn count_frame_in(&mut self) {
        self.frames_in_unpublished += 1;
        if self.input.is_empty() || self.frames_in_unpublished >= FRAMES_IN_BATCH {
            self.publish_frames_in();
        }
    }

    /// Adds the frames received since the last call to the server's `frames_in` counter.
    fn publish_frames_in(&mut self) {
        if self.frames_in_unpublished > 0 {
            bump(
                &self.server.connection_view().counters.frames_in,
                std::mem::take(&mut self.frames_in_unpublished),
            );
        }
    }

    /// Adds the frames queued since the last call to the server's `frames_out` counter.
    fn publish_frames_out(&mut self) {
        if self.frames_out_unpublished > 0 {
            bump(
                &self.server.connection_view().counters.frames_out,
                std::mem::take(&mut self.frames_out_unpublished),
            );
        }
    }

    fn between_frames(&self) -> bool {
        match &self.ack {
            // A HELLO whose session is not answered yet (a takeover wait) is a handshake in
            // progress: bounded by the stall timeout, as a frame is.
            Some(a) => a.driver.is_between_frames() && a.driver.state().session_request().is_none(),
            None => self.input.is_between_frames(&self.codec),
        }
    }

    /// Bytes read and not yet taken as frames.
    fn buffered_in(&self) -> usize {
        match &self.ack {
            Some(a) => a.driver.buffered_bytes(),
            None => self.input.len(),
        }
    }

    fn poll_shutdown_requested(&mut self, cx: &mut Context<'_>) -> bool {
        let token = &self.server.connection_view().shutdown;
        if token.is_cancelled() {
            return true;
        }
        let signal = self
            .shutdown
            .get_or_insert_with(|| Box::pin(token.clone().cancelled_owned()));
        signal.as_mut().poll(cx).is_ready()
    }

    /// Called when a read returned `Pending`: checks the idle or stall deadline. The idle
    /// clock runs only `for_recv` (a sender waiting for ACKs is bounded by the write timeout).
    fn poll_read_timeout<T>(
        &mut self,
        cx: &mut Context<'_>,
        for_recv: bool,
    ) -> Poll<Result<T, ServerError>> {
        let Some((since, after, err)) = self.read_deadline(for_recv) else {
            return Poll::Pending;
        };
        ready!(poll_deadline(&mut self.read_timer, since, after, cx));
        if matches!(err, ServerError::IdleTimeout { .. }) {
            // Ack mode: an idle close means "reconnect when you need me", not "the
            // conversation is over".
            self.ack_go_away(GoAwayReason::Idle, cx);
        }
        Poll::Ready(Err(self.read_failed(err)))
    }

    /// The idle or stall deadline of a read that found nothing (its clock starts now if it
    /// is not running): since when, for how long, and the error once it passed. `None`: no
    /// deadline applies.
    fn read_deadline(&mut self, for_recv: bool) -> Option<(Instant, Duration, ServerError)> {
        let config = &self.server.connection_view().config;
        let now = Instant::now();
        if self.between_frames() {
            self.frame_since = None;
            let t = config.idle_timeout.filter(|_| for_recv)?;
            let since = *self.idle_since.get_or_insert(now);
            Some((since, t, ServerError::IdleTimeout { timeout: t }))
        } else {
            let t = config.stall_timeout?;
            let since = *self.frame_since.get_or_insert(now);
            let err = ServerError::StallTimeout {
                timeout: t,
                buffered: self.buffered_in(),
            };
            Some((since, self.stall_left.unwrap_or(t), err))
        }
    }

    /// Ack mode, while the handshake is read before the handler runs: ready once the read
    /// deadline passed (the handler's first `recv` then reports it at once).
    fn poll_accept_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.read_deadline(true) {
            Some((since, after, _)) => poll_deadline(&mut self.read_timer, since, after, cx),
            None => Poll::Pending,
        }
    }

    /// Bytes arrived: with a minimum receive rate, the wait inside a frame that just ended is
    /// taken from the stall allowance and the bytes earn time back (see
    /// [`ServerBuilder::min_receive_rate`](crate::ServerBuilder::min_receive_rate)). Without
    /// one, the wait goes on until the frame is complete (the stall timeout bounds each frame).
    #[inline(never)]
    fn account_stall(&mut self, received: usize) {
        let config = &self.server.connection_view().config;
        let (Some(full), Some(rate)) = (config.stall_timeout, config.min_receive_rate) else {
            return;
        };
        let mut left = self.stall_left.unwrap_or(full);
        if let Some(since) = self.frame_since.take() {
            left = left.saturating_sub(since.elapsed());
        }
        let earned_ns = (received as u64).saturating_mul(1_000_000_000) / u64::from(rate);
        left = left.saturating_add(Duration::from_nanos(earned_ns));
        self.stall_left = (left < full).then_some(left);
    }

    fn read_failed(&mut self, err: ServerError) -> ServerError {
        self.publish_frames_in();
        self.read_closed = true;
        self.input.clear();
        self.read_timer = None;
        self.count_and_log(&err, "receive");
        if let Some(a) = self.ack.as_deref_mut() {
            // A sender waiting for ACKs (in another task) must learn that none will come.
            a.driver.wake_all();
        }
        err
    }

    fn write_failed(&mut self, err: ServerError) -> ServerError {
        self.write_closed = true;
        self.write_closed_why = Some(EarlierError::from(&err));
        self.out.clear();
        self.write_timer = None;
        self.count_and_log(&err, "send");
        err
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

    fn closed_for_sending(&self) -> ServerError {
        ServerError::Closed {
            earlier: self.write_closed_why.clone().unwrap_or_else(|| {
                EarlierError::new("the connection was closed", Cause::Transport, false)
            }),
        }
    }

    fn poll_send_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        if self.write_closed {
            return Poll::Ready(Err(self.closed_for_sending()));
        }
        if self.ack.is_some() {
            return self.poll_ack_ready(cx);
        }
        if self.out.len() >= self.server.connection_view().config.write_buffer_limit {
            ready!(self.poll_write_buf(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn queue(&mut self, frame: &[u8]) -> Result<(), ServerError> {
        if self.write_closed {
            return Err(self.closed_for_sending());
        }
        if self.ack.is_some() {
            self.queue_ack(frame)?;
            self.frames_out_unpublished += 1;
            return Ok(());
        }
        match self.out.feed(&self.codec, frame).map_err(ServerError::from) {
            Ok(()) => {
                // Added to the shared counter when the buffer is written (or the connection
                // dropped): one atomic add per write, not per frame.
                self.frames_out_unpublished += 1;
                Ok(())
            }
            Err(err) => {
                // Nothing was queued; the stream is still in sync.
                self.count_and_log(&err, "send");
                Err(err)
            }
        }
    }

    /// Writes the queued bytes.
    fn poll_write_buf(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        self.publish_frames_out();
        let result = self.out.poll_drain(Pin::new(&mut self.io), cx);
        self.account_written();
        match result {
            Poll::Pending => self.poll_write_timeout(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.write_failed(e.into()))),
            Poll::Ready(Ok(())) => {
                self.release_write_buf_if_idle();
                self.write_since = None;
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Counts the bytes the socket took; progress restarts the write timeout's clock.
    fn account_written(&mut self) {
        let n = self.out.take_written();
        if n > 0 {
            bump(&self.server.connection_view().counters.bytes_out, n as u64);
            self.write_since = None;
        }
    }

    /// Releases the (empty) write queue's memory if the connection is idle: the read side
    /// found nothing more to read and released its own buffer. While frames keep coming, the
    /// buffer is kept and reused, so a busy connection does not allocate it again and grow
    /// it by reallocation (copying what is queued) for every write; see also
    /// `poll_frame_slow`, which releases it when the connection starts waiting for bytes
    /// with nothing queued. A handler that never reads releases it after every write, as
    /// before.
    fn release_write_buf_if_idle(&mut self) {
        if !self.input.holds_memory() {
            self.out.release();
        }
    }

    fn poll_write_timeout(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        let Some(t) = self.server.connection_view().config.write_timeout else {
            return Poll::Pending;
        };
        let since = *self.write_since.get_or_insert_with(Instant::now);
        ready!(poll_deadline(&mut self.write_timer, since, t, cx));
        let err = match self.ack.as_deref() {
            // Ack mode with the peer's window full: nothing is waiting for the socket; the
            // peer's application is not taking messages.
            Some(a) if !a.driver.state().has_room() => ServerError::AckWindowFull {
                timeout: t,
                in_flight: a.driver.state().in_flight(),
                in_flight_bytes: a.driver.state().in_flight_bytes(),
            },
            _ => ServerError::WriteTimeout {
                timeout: t,
                pending: self.out.len(),
            },
        };
        Poll::Ready(Err(self.write_failed(err)))
    }

    /// Plain mode: writes one large frame from `payload` behind the queued bytes with
    /// vectored writes ([`FrameWriter::write_or_feed`]) as far as the socket takes it without
    /// waiting, and queues the rest; the part written is never copied.
    fn write_or_queue(&mut self, payload: &[u8], cx: &mut Context<'_>) -> Result<(), ServerError> {
        if self.write_closed {
            return Err(self.closed_for_sending());
        }
        self.publish_frames_out();
        let result = self
            .out
            .write_or_feed(&self.codec, payload, Pin::new(&mut self.io), cx);
        self.account_written();
        match result {
            Ok(()) => {
                self.frames_out_unpublished += 1;
                self.release_write_buf_if_idle();
                Ok(())
            }
            Err(FrameError::Io(e)) => Err(self.write_failed(e.into())),
            Err(e) => {
                // Nothing was queued; the stream is still in sync.
                let err = ServerError::from(e);
                self.count_and_log(&err, "send");
                Err(err)
            }
        }
    }

    fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        if self.write_closed {
            return Poll::Ready(Err(self.closed_for_sending()));
        }
        if self.ack.is_some() {
            return self.poll_ack_flush(cx);
        }
        ready!(self.poll_write_buf(cx))?;
        match ready!(Pin::new(&mut self.io).poll_flush(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(self.write_failed(e.into()))),
        }
    }

    fn poll_close_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        if self.ack.is_some() {
            return self.poll_ack_close(cx);
        }
        ready!(self.poll_flush_all(cx))?;
        let res = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
        self.write_closed = true;
        self.write_closed_why = Some(closed_by_handler());
        self.write_timer = None;
        Poll::Ready(res.map_err(ServerError::from))
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
