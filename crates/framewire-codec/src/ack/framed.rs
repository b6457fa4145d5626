//! The async `Stream + Sink` adapter that drives [`AckState`] over a `Framed` transport.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::{BufMut, Bytes};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use super::config::AckConfig;
use super::engine::{AckState, Delivery};
use super::wire::{GoAwayReason, Hello, DATA_HEADER_LEN};
use super::AckError;
use crate::{FrameCodec, HEADER_LEN};

/// Default write buffer high-water mark: 16 KiB.
///
/// Frames are encoded into the transport's write buffer until it holds this much, then the
/// buffer is written out before more is accepted. Twice `Framed`'s 8 KiB default, so that a
/// window of 64-byte messages goes out in one write; small enough that a connection never
/// holds much more than this in encoded-but-unsent bytes (a single larger message is still
/// accepted whole).
pub const DEFAULT_WRITE_HIGH_WATER: usize = 16 * 1024;

/// Spare read-buffer room `progress` tries to reclaim before reading: `Framed`'s initial
/// read buffer size.
const READ_ROOM: usize = 8 * 1024;

/// Which side of the adapter is polling: used to wake the other side when one side's read
/// registration may have replaced the other's (when `Stream` and `Sink` are used from two
/// tasks).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Stream,
    Sink,
}

/// Ack mode over a [`Framed`] transport: a [`Stream`] of [`Delivery`]s and a [`Sink`] of
/// [`Bytes`] whose flush means "acknowledged by the peer's application".
///
/// Built with [`AckFramed::builder`] (or [`AckFramed::new`] for the defaults). The transport
/// must use a plain [`FrameCodec`]; ack mode puts its own header inside each frame's payload
/// (see the [module docs](super) for the wire format).
///
/// # Handshake
///
/// Lazy: the first poll of anything (stream, sink, [`handshake`](Self::handshake)) writes this
/// side's HELLO, and the peer's HELLO is read as the first frame. Sending waits for the peer's
/// HELLO (its window is unknown before). Call [`handshake`](Self::handshake) to do it
/// explicitly, e.g. to fail early on a plain-mode peer.
///
/// # Sink
///
/// * `poll_ready` waits while the peer's window is full (backpressure), and while the write
///   buffer is above its high-water mark.
/// * `start_send` queues one DATA frame (seq 1, 2, 3, ...).
/// * `poll_flush` completes only when every message sent so far has been acknowledged, i.e.
///   the peer's application is done with it. It also counts every message the stream
///   yielded before it as done (waiting for the peer's acks while holding back ours would
///   deadlock two peers doing request/response). So `sink.send(m).await` is stop-and-wait, and
///   `feed` many then `flush` confirms a pipelined batch.
/// * `poll_close` flushes (waits for every ack), writes the acks for everything taken so far
///   and shuts the transport's write half; the peer's stream then ends. No ack can be written
///   after that, so close when done receiving too: messages the stream yields after `close`
///   stay unacknowledged (and come back to the peer as such). To confirm a batch and keep
///   talking, use `flush`.
///
/// For per-message confirmation use [`send_tracked`](Self::send_tracked) (returns the seq) and
/// [`wait_acked`](Self::wait_acked) / [`poll_acked`](Self::poll_acked); for a redelivery after
/// a reconnect, [`send_redelivery`](Self::send_redelivery).
///
/// While it waits, the sink keeps reading the transport: ACKs are processed and incoming DATA
/// is buffered for the stream (at most the window this side granted).
///
/// # Stream
///
/// Yields every received message in order, exactly once, as a [`Delivery`] (seq, payload,
/// redelivery flag). A message counts as *done* — and becomes eligible for acknowledgement —
/// when the stream is polled for the next one, when [`acknowledge`](Self::acknowledge) is
/// called, or when the sink is closed; merely yielding it is not enough (an application that
/// dies while working on a message has not acknowledged it). Acks are cumulative and coalesced: one is written when half the
/// granted window has been taken since the last, or when the reader has nothing more buffered.
/// The stream ends (`None`) when the peer closes its write half; after an error it yields that
/// error once and then ends.
///
/// Acks are written from within polls of this adapter. When the stream is polled again with
/// nothing more buffered and nothing ready on the transport, the ack goes out right away;
/// while more messages are buffered, the ack for those already done waits until half the
/// window has been taken or the buffer runs dry.
///
/// # Timers
///
/// The adapter reads no clock (this crate has no runtime): call
/// [`handle_timeout`](Self::handle_timeout) when [`poll_timeout`](Self::poll_timeout) has
/// passed (and once at start) to get keepalive PINGs and the peer timeout; without that, a
/// silent peer is not detected.
///
/// # Connection loss
///
/// Nothing is silently lost: after any error or end of stream, [`into_unacked`](Self::into_unacked)
/// returns every message sent but not acknowledged, in order, for a resend on a new connection.
///
/// # TCP
///
/// Ack mode writes small frames and waits for small replies: set `TCP_NODELAY` on the socket
/// (`TcpStream::set_nodelay(true)`), or Nagle's algorithm and delayed ACKs can add tens of
/// milliseconds per round trip.
///
/// # Cancellation safety
///
/// `StreamExt::next` is cancel-safe: frames read while the future was pending stay buffered.
/// [`wait_acked`](Self::wait_acked) and [`handshake`](Self::handshake) are cancel-safe.
/// [`send_tracked`](Self::send_tracked) / [`send_redelivery`](Self::send_redelivery) and
/// `SinkExt::send` / `flush` never lose a message when cancelled: cancelled while waiting for
/// room, nothing was queued; cancelled later, the message stays queued, is sent with the next
/// poll and shows in [`unacked`](Self::unacked) until acknowledged (its seq is then only
/// visible there).
///
/// # Examples
///
/// ```no_run
/// use futures::{SinkExt, StreamExt};
/// use bytes::Bytes;
/// use framewire_codec::ack::AckFramed;
/// use tokio::net::TcpStream;
///
/// # async fn run() -> Result<(), framewire_codec::ack::AckError> {
/// let stream = TcpStream::connect("127.0.0.1:9999").await.map_err(framewire_codec::FrameError::from)?;
/// stream.set_nodelay(true).map_err(framewire_codec::FrameError::from)?;
/// let mut conn = AckFramed::builder().window(8).new_framed(stream);
/// conn.send(Bytes::from_static(b"hello")).await?; // returns once the peer's app took it
/// if let Some(msg) = conn.next().await {
///     println!("got {:?}", msg?.payload);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AckFramed<T> {
    framed: Framed<T, FrameCodec>,
    state: AckState,
    inbox: VecDeque<Delivery>,
    read_closed: bool,
    needs_flush: bool,
    write_closed: bool,
    failed: Option<String>,
    /// The typed error behind `failed` when it was recorded outside a poll that could return
    /// it (in `after_take`): the next guarded poll returns it once, later ones `Failed`.
    pending: Option<AckError>,
    /// The seq of the last message the stream yielded: done once the stream is polled again.
    yielded: u64,
    error_reported: bool,
    high_water: usize,
    stream_waker: Option<Waker>,
    sink_waker: Option<Waker>,
}

/// Configures an [`AckFramed`].
///
/// ```
/// use framewire_codec::ack::{AckFramed, DEFAULT_WINDOW};
///
/// let (a, _b) = tokio::io::duplex(1024);
/// let conn = AckFramed::builder().window(1).new_framed(a); // stop-and-wait
/// assert_eq!(conn.state().local_hello().window, 1);
/// assert_eq!(AckFramed::builder().build_state(1024).local_hello().window, DEFAULT_WINDOW);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AckFramedBuilder {
    config: AckConfig,
    high_water: usize,
}

impl Default for AckFramedBuilder {
    fn default() -> Self {
        AckFramedBuilder {
            config: AckConfig::default(),
            high_water: DEFAULT_WRITE_HIGH_WATER,
        }
    }
}

impl AckFramedBuilder {
    /// A builder holding the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every ack-mode setting at once (windows, caps, keepalive).
    pub fn config(&mut self, config: AckConfig) -> &mut Self {
        self.config = config;
        self
    }

    /// The window this side grants the peer: how many of its messages may be unacknowledged
    /// at once, and so how many received messages this side buffers at most (default
    /// [`DEFAULT_WINDOW`](super::DEFAULT_WINDOW); 1 is stop-and-wait; 0 is raised to 1).
    /// Shorthand for [`AckConfig::window`].
    pub fn window(&mut self, window: u32) -> &mut Self {
        self.config.window(window);
        self
    }

    /// After how many taken messages an ACK is sent even though more received messages are
    /// still buffered (default: half the window). See [`AckState::set_ack_threshold`] for
    /// the trade-off; `ack_threshold(window)` acks only when the reader runs dry or the whole
    /// window has been taken, the fewest ACK writes: for a consumer that keeps up it measured
    /// 1.15x to 1.4x the messages/s of the default at window 64 (64-byte messages, loopback).
    pub fn ack_threshold(&mut self, threshold: u64) -> &mut Self {
        self.config.ack_threshold(threshold);
        self
    }

    /// The write buffer's high-water mark in bytes (default [`DEFAULT_WRITE_HIGH_WATER`]).
    pub fn write_high_water(&mut self, bytes: usize) -> &mut Self {
        self.high_water = bytes.max(1);
        self
    }

    /// A state machine with this window, for a peer that accepts frames of `max_frame_len`.
    pub fn build_state(&self, max_frame_len: usize) -> AckState {
        self.config.build(max_frame_len)
    }

    /// Wraps an existing plain-mode transport. Its codec's maximum frame length goes into
    /// this side's HELLO. Frames already buffered in `framed` are read as ack-mode frames.
    pub fn wrap<T>(&self, framed: Framed<T, FrameCodec>) -> AckFramed<T> {
        let state = self.build_state(framed.codec().max_frame_len());
        AckFramed {
            framed,
            state,
            inbox: VecDeque::new(),
            read_closed: false,
            needs_flush: false,
            write_closed: false,
            failed: None,
            pending: None,
            yielded: 0,
            error_reported: false,
            high_water: self.high_water,
            stream_waker: None,
            sink_waker: None,
        }
    }

    /// Wraps `io` in a `Framed` with a default [`FrameCodec`], then in ack mode.
    pub fn new_framed<T: AsyncRead + AsyncWrite>(&self, io: T) -> AckFramed<T> {
        self.wrap(Framed::new(io, FrameCodec::new()))
    }
}

impl AckFramed<()> {
    /// A builder (`AckFramed::builder()` works without naming the transport type).
    pub fn builder() -> AckFramedBuilder {
        AckFramedBuilder::new()
    }
}

impl<T> AckFramed<T> {
    /// Wraps `framed` with the defaults ([`AckConfig::default`]).
    pub fn new(framed: Framed<T, FrameCodec>) -> AckFramed<T> {
        AckFramedBuilder::new().wrap(framed)
    }

    /// The protocol state (windows, counters, the peer's HELLO).
    pub fn state(&self) -> &AckState {
        &self.state
    }

    /// The underlying I/O object (e.g. for `peer_addr`).
    pub fn get_ref(&self) -> &T {
        self.framed.get_ref()
    }

    /// The peer's highest cumulative acknowledgement: every message up to this seq was taken
    /// by the peer's application.
    pub fn acked_through(&self) -> u64 {
        self.state.acked_through()
    }

    /// The sequence numbers acknowledged since the previous call, if any (receipts for
    /// callers that track individual messages).
    pub fn poll_acked(&mut self) -> Option<RangeInclusive<u64>> {
        self.state.poll_acked()
    }

    /// Advances the engine's timers to `now` (see [`AckState::handle_timeout`]): queues a
    /// keepalive PING when due; written with the next poll.
    ///
    /// # Errors
    ///
    /// [`AckError::PeerSilent`] once nothing arrived for the peer timeout; the adapter is
    /// failed from then on.
    pub fn handle_timeout(&mut self, now: std::time::Instant) -> Result<(), AckError> {
        if let Some(first) = &self.failed {
            return Err(AckError::Failed {
                first: first.clone(),
            });
        }
        self.state.handle_timeout(now).inspect_err(|e| {
            self.failed = Some(e.to_string());
        })
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next.
    pub fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.state.poll_timeout()
    }

    /// Queues a GOAWAY (this side is going away: the peer should reconnect); it is written
    /// with the next poll, after what is queued. Then close the sink.
    pub fn go_away(&mut self, reason: GoAwayReason) {
        self.state.go_away(reason);
    }

    /// The peer's GOAWAY reason, once one arrived: reconnect rather than treat the end of the
    /// stream as the end of the conversation.
    pub fn peer_going_away(&self) -> Option<GoAwayReason> {
        self.state.peer_going_away()
    }

    /// Copies of the payloads sent and not yet acknowledged, oldest first.
    pub fn unacked(&self) -> Vec<Bytes> {
        self.state.unacked().map(|m| m.payload.clone()).collect()
    }

    /// Consumes the adapter and returns the payloads sent but not acknowledged, oldest first.
    /// After the connection died, resend them on a new connection with
    /// [`send_redelivery`](Self::send_redelivery), or report them lost.
    pub fn into_unacked(mut self) -> Vec<Bytes> {
        self.state.take_unacked()
    }

    /// Consumes the adapter and returns the transport, the state machine and the messages
    /// received but not yet yielded by the stream.
    pub fn into_parts(self) -> (Framed<T, FrameCodec>, AckState, Vec<Delivery>) {
        (self.framed, self.state, self.inbox.into())
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AckFramed<T> {
    /// Sends this side's HELLO (if not yet sent) and waits for the peer's.
    ///
    /// Optional: every other operation does the handshake lazily. Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`AckError::ExpectedHello`] (a plain-mode peer), [`AckError::VersionMismatch`],
    /// [`AckError::ClosedBeforeHello`], transport errors.
    pub async fn handshake(&mut self) -> Result<Hello, AckError> {
        poll_fn(|cx| {
            self.guard(Side::Sink, cx, |this, cx| {
                this.progress(cx, Side::Sink)?;
                match this.state.peer_hello() {
                    Some(h) => Poll::Ready(Ok(h)),
                    None if this.read_closed => Poll::Ready(Err(AckError::ClosedBeforeHello)),
                    None => Poll::Pending,
                }
            })
        })
        .await
    }

    /// Waits for room in the window, queues `payload`, writes it to the transport and returns
    /// its sequence number. Does not wait for the acknowledgement: use
    /// [`wait_acked`](Self::wait_acked), [`poll_acked`](Self::poll_acked) or `flush` for that.
    ///
    /// Cancellation: while waiting for room, nothing has been queued; once queued (while the
    /// frame is being written) the message stays queued, goes out with the next poll and is
    /// part of [`unacked`](Self::unacked) until acknowledged, so it is never silently lost.
    ///
    /// # Errors
    ///
    /// [`AckError::PayloadTooLong`], protocol and transport errors, and
    /// [`AckError::ClosedWithUnacked`] if the connection closed while waiting for room.
    pub async fn send_tracked(&mut self, payload: impl Into<Bytes>) -> Result<u64, AckError> {
        self.send_flagged(payload.into(), false).await
    }

    /// Like [`send_tracked`](Self::send_tracked), with the DATA frame's redelivery flag set:
    /// for messages resent on a new connection because the previous one died before they
    /// were acknowledged. The receiver sees [`Delivery::redelivered`].
    ///
    /// # Errors
    ///
    /// As [`send_tracked`](Self::send_tracked).
    pub async fn send_redelivery(&mut self, payload: impl Into<Bytes>) -> Result<u64, AckError> {
        self.send_flagged(payload.into(), true).await
    }

    async fn send_flagged(&mut self, payload: Bytes, redelivery: bool) -> Result<u64, AckError> {
        poll_fn(|cx| Pin::new(&mut *self).poll_ready(cx)).await?;
        let seq = self.start_send_flagged(payload, redelivery)?;
        poll_fn(|cx| self.guard(Side::Sink, cx, |this, cx| this.poll_write(cx))).await?;
        Ok(seq)
    }

    /// Waits until the peer acknowledged every message up to and including `seq` (drives the
    /// transport meanwhile). Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`AckError::ClosedWithUnacked`] if the connection closes first; protocol and
    /// transport errors.
    pub async fn wait_acked(&mut self, seq: u64) -> Result<(), AckError> {
        poll_fn(|cx| {
            self.guard(Side::Sink, cx, |this, cx| {
                this.progress(cx, Side::Sink)?;
                if this.state.acked_through() >= seq.min(this.state.last_sent()) {
                    Poll::Ready(Ok(()))
                } else if this.read_closed {
                    Poll::Ready(Err(this.closed_error()))
                } else {
                    Poll::Pending
                }
            })
        })
        .await
    }

    /// Writes what is queued and reads (acks, and messages for the stream) until every
    /// message sent is acknowledged: `poll_flush` without counting what the stream yielded as
    /// done. For a driver that shares the adapter with a task consuming the stream, where
    /// only that task knows when it is done with a message.
    pub fn poll_deliver(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        self.guard(Side::Sink, cx, |this, cx| this.poll_all_acked(cx))
    }

    /// `true` once the peer closed its sending direction (or the connection failed): no
    /// more frames will be read.
    pub fn is_read_closed(&self) -> bool {
        self.read_closed
    }

    /// Acknowledges every message the stream has yielded so far (the application is done
    /// with them) and writes the ACK, without waiting for the next poll of the stream.
    /// Cancel-safe.
    ///
    /// # Errors
    ///
    /// Protocol and transport errors.
    pub async fn acknowledge(&mut self) -> Result<(), AckError> {
        poll_fn(|cx| {
            self.guard(Side::Stream, cx, |this, cx| {
                this.release_yielded(cx)?;
                this.state.reader_idle();
                this.poll_write(cx)
            })
        })
        .await
    }

    /// Queues one message, as `Sink::start_send` does, with an explicit redelivery flag, and
    /// returns its sequence number. Call only after `poll_ready` returned `Ready(Ok(()))`.
    ///
    /// # Errors
    ///
    /// [`AckError::WindowFull`] without a successful `poll_ready`,
    /// [`AckError::PayloadTooLong`] if the payload exceeds the peer's or this side's maximum
    /// frame length. Nothing is queued then.
    pub fn start_send_flagged(
        &mut self,
        payload: Bytes,
        redelivery: bool,
    ) -> Result<u64, AckError> {
        self.check_failed()?;
        let codec_max = self
            .framed
            .codec()
            .max_frame_len()
            .saturating_sub(DATA_HEADER_LEN);
        if payload.len() > codec_max {
            return Err(AckError::PayloadTooLong {
                len: payload.len(),
                max: codec_max,
            });
        }
        self.state.send(payload, redelivery)
    }

    // ------------------------------------------------------------------ internals

    fn check_failed(&self) -> Result<(), AckError> {
        match &self.failed {
            Some(first) => Err(AckError::Failed {
                first: first.clone(),
            }),
            None => Ok(()),
        }
    }

    fn closed_error(&self) -> AckError {
        if self.state.is_established() {
            AckError::ClosedWithUnacked {
                unacked: self.state.unacked().len(),
                acked: self.state.acked_through(),
            }
        } else {
            AckError::ClosedBeforeHello
        }
    }

    /// Runs `f`; records a first error (so later calls fail fast), stores the waker of a
    /// pending side, and clears it when the side completes.
    fn guard<R>(
        &mut self,
        side: Side,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Self, &mut Context<'_>) -> Poll<Result<R, AckError>>,
    ) -> Poll<Result<R, AckError>> {
        if let Some(e) = self.pending.take() {
            *match side {
                Side::Stream => &mut self.stream_waker,
                Side::Sink => &mut self.sink_waker,
            } = None;
            return Poll::Ready(Err(e));
        }
        if let Err(e) = self.check_failed() {
            return Poll::Ready(Err(e));
        }
        let r = f(self, cx);
        let slot = match side {
            Side::Stream => &mut self.stream_waker,
            Side::Sink => &mut self.sink_waker,
        };
        match &r {
            Poll::Pending => match slot {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            },
            Poll::Ready(res) => {
                *slot = None;
                if let Err(e) = res {
                    if !e.is_local_misuse() {
                        self.failed = Some(e.to_string());
                    }
                }
            }
        }
        r
    }

    /// Encodes the machine's frames into the write buffer, up to the high-water mark.
    fn encode_transmits(&mut self) -> Result<(), AckError> {
        while self.framed.write_buffer().len() < self.high_water {
            // Borrowed, not cloned: the payload is copied into the write buffer right away.
            let Some(frame) = self.state.poll_transmit_ref() else {
                break;
            };
            let header = self.framed.codec().header(frame.len())?;
            let buf = self.framed.write_buffer_mut();
            buf.reserve(HEADER_LEN + frame.len());
            buf.put_slice(&header);
            frame.write_payload(buf);
            self.needs_flush = true;
        }
        Ok(())
    }

    /// Writes everything the machine has to send. Ready when all of it reached the transport.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        if self.write_closed {
            // After `close`, nothing more can be written: acks for messages taken from now on
            // are not sent (the peer gets those messages back as unacknowledged).
            while self.state.poll_transmit().is_some() {}
            return Poll::Ready(Ok(()));
        }
        loop {
            self.encode_transmits()?;
            if !self.needs_flush {
                return Poll::Ready(Ok(()));
            }
            ready!(<Framed<T, FrameCodec> as Sink<Bytes>>::poll_flush(
                Pin::new(&mut self.framed),
                cx
            ))?;
            self.needs_flush = false;
            if !self.state.has_transmit() {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Reads every frame the transport has ready into the machine (DATA into the inbox).
    /// Ready on end of stream; Pending (waker registered) when nothing more is ready.
    fn poll_read(&mut self, cx: &mut Context<'_>, side: Side) -> Poll<Result<(), AckError>> {
        if self.read_closed {
            return Poll::Ready(Ok(()));
        }
        let r = loop {
            match Pin::new(&mut self.framed).poll_next(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(d) = self.state.handle_frame(frame)? {
                        self.inbox.push_back(d);
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.into())),
                Poll::Ready(None) => {
                    self.read_closed = true;
                    break Poll::Ready(Ok(()));
                }
                Poll::Pending => break Poll::Pending,
            }
        };
        // This poll replaced the transport's read waker: wake the other side (if it is
        // another task) so it re-registers and sees what was read.
        let other = match side {
            Side::Stream => self.sink_waker.take(),
            Side::Sink => self.stream_waker.take(),
        };
        if let Some(w) = other {
            if !w.will_wake(cx.waker()) {
                w.wake();
            }
        }
        r
    }

    /// One round of I/O for a side that is about to wait: write, read everything ready, ack
    /// what was taken if the reader is idle, write again. Registers the waker for reading
    /// (unless the transport is closed) and, if writes are stuck, for writing.
    fn progress(&mut self, cx: &mut Context<'_>, side: Side) -> Result<(), AckError> {
        if let Poll::Ready(Err(e)) = self.poll_write(cx) {
            return Err(e);
        }
        if self.inbox.is_empty() {
            // `Framed` reads into whatever spare room its buffer has left, so after a few
            // batches a read can fill that room exactly and cost a second read syscall. Once
            // every frame handed out has been dropped, take the whole allocation back (no
            // allocation, no copy) so the next read has its full room again.
            let buf = self.framed.read_buffer_mut();
            if buf.is_empty() && buf.capacity() < READ_ROOM {
                // `false` (a frame is still held): leave it, `Framed` allocates when it must.
                let _ = buf.try_reclaim(READ_ROOM);
            }
        }
        let read = self.poll_read(cx, side);
        if let Poll::Ready(Err(e)) = read {
            return Err(e);
        }
        if read.is_pending() && self.inbox.is_empty() {
            self.state.reader_idle();
        }
        if self.state.has_transmit() {
            if let Poll::Ready(Err(e)) = self.poll_write(cx) {
                return Err(e);
            }
        }
        Ok(())
    }

    fn poll_ready_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        if self.write_closed {
            return Poll::Ready(Err(AckError::SinkClosed));
        }
        self.encode_transmits()?;
        if self.state.has_room() && self.framed.write_buffer().len() < self.high_water {
            return Poll::Ready(Ok(()));
        }
        // Window full, no HELLO yet, or the write buffer is full: push out what is queued and
        // read acks.
        self.progress(cx, Side::Sink)?;
        if self.state.has_room() && self.framed.write_buffer().len() < self.high_water {
            Poll::Ready(Ok(()))
        } else if self.read_closed {
            Poll::Ready(Err(self.closed_error()))
        } else {
            Poll::Pending
        }
    }

    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        // Waiting for the peer's acks while holding back ours could deadlock two peers doing
        // request/response: what the stream yielded before this flush counts as done.
        self.release_yielded(cx)?;
        self.poll_all_acked(cx)
    }

    fn poll_all_acked(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        self.progress(cx, Side::Sink)?;
        if self.state.all_acked() && !self.state.has_transmit() && !self.needs_flush {
            Poll::Ready(Ok(()))
        } else if self.read_closed && !self.state.all_acked() {
            Poll::Ready(Err(self.closed_error()))
        } else {
            Poll::Pending
        }
    }

    fn take_delivery(&mut self) -> Option<Delivery> {
        let d = self.inbox.pop_front()?;
        self.yielded = d.seq;
        Some(d)
    }

    /// The application is done with what the stream yielded (it polls for the next one, or
    /// acknowledges, or closes): report it to the machine and write the ack if one is due.
    fn release_yielded(&mut self, cx: &mut Context<'_>) -> Result<(), AckError> {
        if self.yielded > self.state.taken_through() {
            self.after_take(self.yielded, cx)?;
        }
        Ok(())
    }

    /// The application took the delivery `seq` (just popped from the inbox): report it to the
    /// machine and write the ack if one became due.
    fn after_take(&mut self, seq: u64, cx: &mut Context<'_>) -> Result<(), AckError> {
        self.state.taken(seq)?;
        if self.inbox.is_empty() && !self.read_closed {
            // The application has everything that was buffered: if the transport has nothing
            // more either, the reader is idle and what was taken gets acknowledged now rather
            // than at the next poll (the application may not poll again soon). An error here
            // is recorded and reported by the next call; this message is still delivered.
            match self.poll_read(cx, Side::Stream) {
                Poll::Pending if self.inbox.is_empty() => self.state.reader_idle(),
                Poll::Ready(Err(e)) => self.record_deferred(e),
                _ => {}
            }
        }
        if self.state.has_transmit() {
            // An ack became due: write it now if the transport takes it without waiting.
            if let Poll::Ready(Err(e)) = self.poll_write(cx) {
                self.record_deferred(e);
            }
        }
        Ok(())
    }

    /// Records an error met while the current call still succeeds: later calls fail fast,
    /// and the next guarded poll returns this typed error once (then `Failed`). The first
    /// error wins.
    fn record_deferred(&mut self, e: AckError) {
        if self.failed.is_none() {
            self.failed = Some(e.to_string());
            self.pending = Some(e);
        }
    }

    fn poll_next_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Delivery>, AckError>> {
        self.release_yielded(cx)?;
        if let Some(d) = self.take_delivery() {
            return Poll::Ready(Ok(Some(d)));
        }
        self.progress(cx, Side::Stream)?;
        if let Some(d) = self.take_delivery() {
            return Poll::Ready(Ok(Some(d)));
        }
        if self.read_closed {
            if !self.state.is_established() {
                return Poll::Ready(Err(AckError::ClosedBeforeHello));
            }
            return Poll::Ready(Ok(None));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Stream for AckFramed<T> {
    type Item = Result<Delivery, AckError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.failed.is_some() {
            // The error was reported once (here or by the sink); the stream is over.
            if this.error_reported {
                return Poll::Ready(None);
            }
        } else if this.pending.is_none() && !this.inbox.is_empty() {
            // Fast path, same as `guard` + `poll_next_inner` with a buffered message, without
            // moving the delivery through their nested results.
            if let Err(e) = this.release_yielded(cx) {
                if !e.is_local_misuse() {
                    this.failed = Some(e.to_string());
                }
                this.error_reported = true;
                return Poll::Ready(Some(Err(e)));
            }
            if let Some(d) = this.take_delivery() {
                this.stream_waker = None;
                return Poll::Ready(Some(Ok(d)));
            }
        }
        match this.guard(Side::Stream, cx, |this, cx| this.poll_next_inner(cx)) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(item)) => Poll::Ready(item.map(Ok)),
            Poll::Ready(Err(e)) => {
                this.error_reported = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Sink<Bytes> for AckFramed<T> {
    type Error = AckError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        self.get_mut()
            .guard(Side::Sink, cx, |this, cx| this.poll_ready_inner(cx))
    }

    fn start_send(self: Pin<&mut Self>, item: Bytes) -> Result<(), AckError> {
        self.get_mut().start_send_flagged(item, false).map(|_| ())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        self.get_mut()
            .guard(Side::Sink, cx, |this, cx| this.poll_flush_inner(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        let this = self.get_mut();
        this.guard(Side::Sink, cx, |this, cx| {
            if this.write_closed {
                return Poll::Ready(Ok(()));
            }
            // Closing: the application is done with everything the stream yielded.
            this.release_yielded(cx)?;
            this.state.reader_idle();
            ready!(this.poll_flush_inner(cx))?;
            ready!(<Framed<T, FrameCodec> as Sink<Bytes>>::poll_close(
                Pin::new(&mut this.framed),
                cx
            ))?;
            this.write_closed = true;
            Poll::Ready(Ok(()))
        })
    }
}
