//! The one IO driver of ack mode: [`AckState`] over any `AsyncRead + AsyncWrite` byte stream.
//!
//! Split as quinn splits `quinn-proto` from `quinn` and h2 splits `proto` from `share`: the
//! engine ([`AckState`]) owns the protocol and reads no clock; [`AckDriver`] owns everything
//! with a side effect (the socket, the read buffer, the write path, the tokio timer, the inbox
//! of received messages, the first error) and nothing else. The faces on top of it
//! ([`AckFramed`](super::AckFramed), the client's ack mode, the server's connection) add only
//! their own API.
//!
//! # Where things live
//!
//! * `mod.rs` (this file): [`AckDriver`] itself, its constructor and accessors, the error
//!   latch, and the one round of I/O every waiting poll runs (`guard`, `progress`).
//! * `send.rs`: the sending side (handshake, `start_send`, `poll_ready`, writes, waiting for
//!   acks, close) and the encoding of the engine's frames into the write buffer.
//! * `recv.rs`: the receiving side (`poll_recv`, `try_recv`, `release`) and the read path.
//! * `timers.rs`: the engine's timers on tokio's clock.
//! * `session.rs`: sessions on the accepting side (resume, takeover, detach).
//! * `io.rs`: the shared waker ([`Wakers`]) and the write path ([`WriteBuf`]).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;

use super::engine::{AckState, Delivery};
use super::session_hub::Attached;
#[cfg(doc)]
use super::session_hub::SessionHub;
use super::wire::{GoAwayReason, DATA_HEADER_LEN};
use super::AckError;
use crate::{EarlierError, FrameCodec, FrameReader, ReadReady, DEFAULT_READ_SIZE};

mod io;
mod recv;
mod send;
mod session;
mod timers;

use io::{Wakers, WriteBuf};

/// Which caller is polling: the receiving side (which takes whole DATA frames from the read
/// buffer itself) or the sending side, each with its own slot in [`Wakers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// The receiving side (`poll_recv`, `acknowledge`).
    Recv,
    /// The sending side (everything else).
    Send,
}

/// Ack mode over a byte stream: the engine ([`AckState`]), the socket, the read buffer, the
/// write path, the keepalive timer, the inbox of received messages and the first error.
///
/// Every face of ack mode drives the protocol through this type:
/// [`AckFramed`](super::AckFramed) (`Stream + Sink`), the client's ack mode and the server's
/// connection. It is poll-based and owns no task: whoever polls it does the I/O, so a sender
/// writes from its own task (no hop, no channel per message) and messages queued between two
/// polls go out in one write.
///
/// # What each poll does
///
/// Every poll that may wait runs one round of I/O before it decides: it writes what the
/// engine has to send (up to the write high-water mark), reads every frame the transport
/// has ready (ACKs settle, DATA goes to the inbox, at most the window this side granted),
/// runs the engine's timers (keepalive PING, peer timeout) on tokio's clock, acknowledges
/// what the application is done with when the reader has nothing more, and writes again.
///
/// # Done means acknowledged
///
/// A message returned by [`poll_recv`](Self::poll_recv) is *done*, and may be acknowledged,
/// once `poll_recv` is called again, [`release`](Self::release) is called, or the driver is
/// closed with [`poll_close`](Self::poll_close).
///
/// # Errors
///
/// The first error that is not local misuse (a protocol violation, a transport error, a
/// silent peer) is latched: every later call fails with [`AckError::Failed`] naming it.
///
/// # Timers
///
/// The engine's timers run on tokio's clock (so tokio's paused time drives them in tests):
/// inside a tokio runtime the driver needs the runtime's time driver
/// (`Builder::enable_time`) unless both [`AckConfig::keepalive`](super::AckConfig::keepalive)
/// and [`AckConfig::peer_timeout`](super::AckConfig::peer_timeout) are off. Outside a tokio
/// runtime no timer runs.
#[derive(Debug)]
pub struct AckDriver<T> {
    io: T,
    codec: FrameCodec,
    /// The read path: framewire's one plain reader ([`FrameReader`], shared with the server's
    /// and the client's plain mode), with its read-size policy (reads start at
    /// [`DEFAULT_READ_SIZE`] and grow with a fast peer) and its buffer release when idle.
    input: FrameReader,
    out: WriteBuf,
    high_water: usize,
    state: AckState,
    inbox: VecDeque<Delivery>,
    /// The transport's read half ended (end of stream) or failed.
    eof: bool,
    read_closed: bool,
    write_closed: bool,
    failed: Option<EarlierError>,
    /// The typed error behind `failed` when it was met inside a call that still succeeded:
    /// the next guarded poll returns it once, later ones `Failed`.
    pending: Option<AckError>,
    /// The seq of the last message `poll_recv` returned: done once it is polled again.
    yielded: u64,
    /// The engine's keepalive / peer-timeout timer (armed at the first poll).
    timer: Option<Pin<Box<Sleep>>>,
    timers_started: bool,
    /// Where the callers register (see [`Wakers`]).
    wakers: Arc<Wakers>,
    /// `wakers` as the waker the transport, the timer and the session hub are polled with.
    io_waker: Waker,
    /// The accepting side's tie to its [`SessionHub`], if it keeps sessions.
    sessions: Option<Attached>,
    /// The receiving side's polls do not write (see
    /// [`defer_receiver_writes`](Self::defer_receiver_writes)).
    defer_recv_writes: bool,
    /// The transport's readiness probe, if it has one (see
    /// [`wait_readable`](Self::wait_readable)).
    read_ready: Option<ReadyProbe<T>>,
}

/// [`ReadReady::poll_read_ready`] for the transport type, kept as a function pointer so that
/// `AckDriver<T>` asks nothing more of `T` unless [`AckDriver::wait_readable`] is called.
type ReadyProbe<T> = fn(&T, &mut Context<'_>) -> Poll<std::io::Result<()>>;

impl<T> AckDriver<T> {
    /// A driver over `io`, framing with `codec` (whose maximum frame length goes into this
    /// side's HELLO as `state` says), with `read_buf` and `write_buf` as already buffered
    /// bytes (read bytes are parsed as ack-mode frames; written bytes go out first).
    pub fn from_parts(
        io: T,
        codec: FrameCodec,
        read_buf: BytesMut,
        write_buf: BytesMut,
        state: AckState,
        high_water: usize,
    ) -> AckDriver<T> {
        let wakers = Arc::new(Wakers::default());
        let mut input = FrameReader::with_read_size(DEFAULT_READ_SIZE);
        *input.buffer_mut() = read_buf;
        AckDriver {
            io,
            codec,
            input,
            out: WriteBuf::from_bytes(write_buf),
            high_water: high_water.max(1),
            state,
            inbox: VecDeque::new(),
            eof: false,
            read_closed: false,
            write_closed: false,
            failed: None,
            pending: None,
            yielded: 0,
            timer: None,
            timers_started: false,
            wakers: Arc::clone(&wakers),
            io_waker: Waker::from(wakers),
            sessions: None,
            defer_recv_writes: false,
            read_ready: None,
        }
    }

    /// For a transport that can tell whether a read would find bytes ([`ReadReady`]): while
    /// the read buffer is released (nothing of a frame buffered), a poll of the read path
    /// first asks the transport, and reads (allocating the buffer) only if it may find bytes.
    /// Without it, every poll that finds nothing allocates the buffer for the read and
    /// releases it again; with two callers polling the read path (the client's receiving
    /// half and its driver task), that was three allocations of the read buffer per ping-pong
    /// round trip. Off by default (any [`AsyncRead`](tokio::io::AsyncRead) transport).
    pub fn wait_readable(&mut self)
    where
        T: ReadReady,
    {
        self.read_ready = Some(<T as ReadReady>::poll_read_ready);
    }

    /// The protocol state (windows, counters, the peer's HELLO).
    pub fn state(&self) -> &AckState {
        &self.state
    }

    /// The transport.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The codec.
    pub fn codec(&self) -> &FrameCodec {
        &self.codec
    }

    /// The longest payload [`start_send`](Self::start_send) accepts: the peer's limit and this
    /// side's codec's, less the DATA header (0 before the peer's HELLO).
    pub fn max_payload_len(&self) -> usize {
        let ours = self.codec.max_frame_len().saturating_sub(DATA_HEADER_LEN);
        self.state.max_payload_len().min(ours)
    }

    /// The peer's highest cumulative acknowledgement.
    pub fn acked_through(&self) -> u64 {
        self.state.acked_through()
    }

    /// The sequence numbers acknowledged since the previous call, if any.
    pub fn poll_acked(&mut self) -> Option<std::ops::RangeInclusive<u64>> {
        self.state.poll_acked()
    }

    /// `true` once the peer closed its sending direction (or reading failed): no more frames
    /// will be read.
    pub fn is_read_closed(&self) -> bool {
        self.read_closed
    }

    /// `true` once [`poll_close`](Self::poll_close) completed.
    pub fn is_write_closed(&self) -> bool {
        self.write_closed
    }

    /// The first error, if the driver failed.
    pub fn failure(&self) -> Option<&EarlierError> {
        self.failed.as_ref()
    }

    /// Received messages parsed and not yet returned by [`poll_recv`](Self::poll_recv) (more
    /// may wait unparsed in the read buffer: see [`buffered_bytes`](Self::buffered_bytes)).
    pub fn buffered(&self) -> usize {
        self.inbox.len()
    }

    /// Bytes read from the transport and not yet parsed into frames.
    pub fn buffered_bytes(&self) -> usize {
        self.input.len()
    }

    /// `true` when no byte of an unfinished frame has been read (for idle versus stall
    /// timeouts).
    pub fn is_between_frames(&self) -> bool {
        self.input.is_between_frames(&self.codec)
    }

    /// For a face whose sending side is polled by a task of its own that the receiving side
    /// can wake (the client's ack mode): with `on`, the receiving side's polls
    /// ([`poll_recv`](Self::poll_recv), [`release`](Self::release)) write nothing. An ACK
    /// that becomes due there (and a PONG or keepalive PING queued while they read) waits in
    /// the engine for the sending side's next poll ([`poll_write`](Self::poll_write),
    /// [`poll_all_acked`](Self::poll_all_acked), [`poll_progress`](Self::poll_progress), ...),
    /// and goes out in one write with the DATA queued meanwhile, instead of a write of its
    /// own. What an ACK covers does not change (only what the application is done with).
    ///
    /// The caller must get the sending side polled soon whenever
    /// [`wants_write`](Self::wants_write) is `true` after a receiving poll (e.g. wake its
    /// task): that poll is what bounds the delay of the ACK. [`poll_release`](Self::poll_release)
    /// still writes at once. Off by default.
    pub fn defer_receiver_writes(&mut self, on: bool) {
        self.defer_recv_writes = on;
    }

    /// `true` when the engine has a frame to write (an ACK, a control frame, DATA not yet
    /// written) and the sending direction is open: a poll of the sending side would write.
    pub fn wants_write(&self) -> bool {
        !self.write_closed && self.failed.is_none() && self.state.has_transmit()
    }

    /// Wakes whoever waits in this driver (e.g. when a face decided that the connection is
    /// over for reasons of its own, such as a timeout).
    pub fn wake_all(&mut self) {
        self.wakers.wake_by_ref();
    }

    /// Queues a GOAWAY (this side is going away: the peer should reconnect), written with the
    /// next poll after what is queued.
    pub fn go_away(&mut self, reason: GoAwayReason) {
        self.state.go_away(reason);
    }

    /// The peer's GOAWAY reason, once one arrived.
    pub fn peer_going_away(&self) -> Option<GoAwayReason> {
        self.state.peer_going_away()
    }

    /// Removes and returns the payloads sent but not acknowledged, oldest first (for a resend
    /// on a new connection). Do not send on this driver afterwards.
    pub fn take_unacked(&mut self) -> Vec<Bytes> {
        self.state.take_unacked()
    }

    /// Consumes the driver: the transport, the codec, the unparsed read bytes, the unwritten
    /// write bytes, the engine and the messages received but not yet returned.
    pub fn into_parts(mut self) -> (T, FrameCodec, BytesMut, BytesMut, AckState, Vec<Delivery>) {
        self.parse_buffered();
        let read_buf = std::mem::take(self.input.buffer_mut());
        (
            self.io,
            self.codec,
            read_buf,
            self.out.into_inner(),
            self.state,
            self.inbox.into(),
        )
    }

    /// [`AckError::SessionTakenOver`] (latched) once a newer connection took this one's
    /// session over: checked where a call would otherwise succeed without I/O (the send and
    /// receive fast paths), so that a handler that only sends stops at once too.
    fn check_taken_over(&mut self) -> Result<(), AckError> {
        if !self.sessions.as_ref().is_some_and(Attached::is_superseded) {
            return Ok(());
        }
        if self.failed.is_none() {
            self.failed = Some(EarlierError::from(&AckError::SessionTakenOver));
            self.wake_all();
        }
        Err(AckError::SessionTakenOver)
    }

    fn check_failed(&self) -> Result<(), AckError> {
        match &self.failed {
            Some(first) => Err(AckError::Failed {
                first: first.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The error for "the connection closed while this side waited for acks".
    pub fn closed_error(&self) -> AckError {
        if self.state.is_established() {
            AckError::ClosedWithUnacked {
                unacked: self.state.unacked().len(),
                acked: self.state.acked_through(),
            }
        } else {
            AckError::ClosedBeforeHello
        }
    }

    /// Records an error met while the current call still succeeds (the first error wins).
    fn record_deferred(&mut self, e: AckError) {
        if self.failed.is_none() {
            self.failed = Some(EarlierError::from(&e));
            self.pending = Some(e);
            // Whoever waits must see it.
            self.wake_all();
        }
    }

    /// `Some` once the driver failed: the typed error once (if it was deferred), then
    /// `Failed`.
    fn take_failure(&mut self, side: Side) -> Option<AckError> {
        if let Some(e) = self.pending.take() {
            self.wakers.slot(side).take();
            return Some(e);
        }
        self.check_failed().err()
    }

    /// Runs `f` with a context whose waker is the driver's own ([`Wakers`]), so that whatever
    /// `f` polls (transport, timer, session hub) registers that one waker.
    fn with_io_cx<R>(&mut self, f: impl FnOnce(&mut Self, &mut Context<'_>) -> R) -> R {
        // Moved out and back rather than cloned: no reference count traffic per poll.
        let waker = std::mem::replace(&mut self.io_waker, Waker::noop().clone());
        let r = f(self, &mut Context::from_waker(&waker));
        self.io_waker = waker;
        r
    }

    /// Registers the caller of `side`, unless its waker is a no-op (a poll that does not
    /// wait, which must not displace a caller that does). Returns whether it registered.
    fn register(&self, side: Side, cx: &Context<'_>) -> bool {
        let waits = !cx.waker().will_wake(Waker::noop());
        if waits {
            self.wakers.slot(side).register(cx.waker());
        }
        waits
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AckDriver<T> {
    /// Runs `f` with the driver's own waker (see [`Wakers`]); latches a first error (so later
    /// calls fail fast); registers the caller's waker for its side, and clears it when the
    /// side completes.
    fn guard<R>(
        &mut self,
        side: Side,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Self, &mut Context<'_>) -> Poll<Result<R, AckError>>,
    ) -> Poll<Result<R, AckError>> {
        if let Some(e) = self.take_failure(side) {
            return Poll::Ready(Err(e));
        }
        // Registered before the I/O, so that an event between the I/O and the return is not
        // missed.
        let waits = self.register(side, cx);
        let r = self.with_io_cx(f);
        if let Poll::Ready(res) = &r {
            if waits {
                // Only a caller that registered clears its slot: a no-op poll that completes
                // must not drop the registration of a task waiting on the same side.
                self.wakers.slot(side).take();
            }
            if let Err(e) = res {
                if !e.is_connection_usable() && self.failed.is_none() {
                    self.failed = Some(EarlierError::from(e));
                    // The connection is over: the other side must not wait on it.
                    self.wake_all();
                }
            }
        }
        r
    }

    /// One round of I/O for a caller about to wait: write, read everything ready, run the
    /// timers, ack what was taken if the reader is idle or the caller is the sending side,
    /// write again. Registers the waker for reading (unless the transport is closed), for
    /// the timer, and, if writes are stuck, for writing.
    ///
    /// Returns `true` if the read is pending (a wake-up is registered). The receiving side's
    /// read stops early, without one, once a whole frame is buffered for it to take.
    fn progress(&mut self, cx: &mut Context<'_>, side: Side) -> Result<bool, AckError> {
        if self.sessions.as_ref().is_some_and(|a| a.superseded(cx)) {
            return Err(AckError::SessionTakenOver);
        }
        let writes = side == Side::Send || !self.defer_recv_writes;
        if writes {
            if let Poll::Ready(Err(e)) = self.poll_write_inner(cx) {
                return Err(e);
            }
        }
        let read = self.poll_read(cx, side);
        if let Poll::Ready(Err(e)) = read {
            return Err(e);
        }
        self.poll_timers(cx)?;
        // Acknowledge what was taken when the reader has nothing more, and always when the
        // sending side is about to wait: its application is not coming back for the buffered
        // messages until the send completes, and the peer may be waiting for this very ACK.
        if read.is_pending() && (side == Side::Send || self.inbox.is_empty()) {
            self.state.reader_idle();
        }
        if writes && self.state.has_transmit() {
            if let Poll::Ready(Err(e)) = self.poll_write_inner(cx) {
                return Err(e);
            }
        }
        Ok(read.is_pending())
    }
}
