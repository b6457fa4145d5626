//! The async `Stream + Sink` face of ack mode over a byte stream: [`AckDriver`] does the work.

use std::future::poll_fn;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, FramedParts};

use super::config::AckConfig;
use super::driver::AckDriver;
use super::engine::{AckState, Delivery};
use super::wire::{GoAwayReason, Hello};
use super::AckError;
use crate::FrameCodec;

/// Default write buffer high-water mark: 16 KiB.
///
/// Frames are encoded into the transport's write buffer until it holds this much, then the
/// buffer is written out before more is accepted. Twice `Framed`'s 8 KiB default, so that a
/// window of 64-byte messages goes out in one write; small enough that a connection never
/// holds much more than this in encoded-but-unsent bytes (a single larger message is still
/// accepted whole).
pub const DEFAULT_WRITE_HIGH_WATER: usize = 16 * 1024;

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
/// The keepalive PING and the peer timeout run by themselves on tokio's clock (see
/// [`AckDriver`]'s "Timers": the runtime needs its time driver unless both are turned off in
/// the [`AckConfig`]); a silent peer fails the stream with [`AckError::PeerSilent`].
/// [`handle_timeout`](Self::handle_timeout) still advances them by hand.
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
    driver: AckDriver<T>,
    /// The stream yielded its error already: it ends.
    error_reported: bool,
}

/// Configures an [`AckFramed`] (or an [`AckDriver`]).
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
    #[must_use = "a builder setter returns the changed builder"]
    pub fn config(mut self, config: AckConfig) -> Self {
        self.config = config;
        self
    }

    /// The window this side grants the peer: how many of its messages may be unacknowledged
    /// at once, and so how many received messages this side buffers at most (default
    /// [`DEFAULT_WINDOW`](super::DEFAULT_WINDOW); 1 is stop-and-wait; 0 is raised to 1).
    /// Shorthand for [`AckConfig::window`].
    #[must_use = "a builder setter returns the changed builder"]
    pub fn window(mut self, window: u32) -> Self {
        self.config = self.config.window(window);
        self
    }

    /// After how many taken messages an ACK is sent even though more received messages are
    /// still buffered (default: half the window). See [`AckState::set_ack_threshold`] for
    /// the trade-off; `ack_threshold(window)` acks only when the reader runs dry or the whole
    /// window has been taken, the fewest ACK writes: for a consumer that keeps up it measured
    /// 1.15x to 1.4x the messages/s of the default at window 64 (64-byte messages, loopback).
    #[must_use = "a builder setter returns the changed builder"]
    pub fn ack_threshold(mut self, threshold: u64) -> Self {
        self.config = self.config.ack_threshold(threshold);
        self
    }

    /// The write buffer's high-water mark in bytes (default [`DEFAULT_WRITE_HIGH_WATER`]).
    #[must_use = "a builder setter returns the changed builder"]
    pub fn write_high_water(mut self, bytes: usize) -> Self {
        self.high_water = bytes.max(1);
        self
    }

    /// The ack settings (window, caps, timers) this builder gives each state.
    pub fn ack_config(&self) -> AckConfig {
        self.config
    }

    /// An [`AckDriver`] over `io` framing with `codec`, driving `state` (e.g. a session's
    /// state carried over from an earlier connection, see [`AckState::reconnect`]).
    pub fn driver_with_state<T>(&self, io: T, codec: FrameCodec, state: AckState) -> AckDriver<T> {
        AckDriver::from_parts(
            io,
            codec,
            BytesMut::new(),
            BytesMut::new(),
            state,
            self.high_water,
        )
    }

    /// A state machine with this window, for a peer that accepts frames of `max_frame_len`.
    pub fn build_state(&self, max_frame_len: usize) -> AckState {
        self.config.build(max_frame_len)
    }

    /// An [`AckDriver`] over `io` framing with `codec` (whose maximum frame length goes into
    /// this side's HELLO).
    pub fn driver<T>(&self, io: T, codec: FrameCodec) -> AckDriver<T> {
        self.driver_with_buffers(io, codec, BytesMut::new(), BytesMut::new())
    }

    fn driver_with_buffers<T>(
        &self,
        io: T,
        codec: FrameCodec,
        read_buf: BytesMut,
        write_buf: BytesMut,
    ) -> AckDriver<T> {
        let state = self.build_state(codec.max_frame_len());
        AckDriver::from_parts(io, codec, read_buf, write_buf, state, self.high_water)
    }

    /// Wraps an existing plain-mode transport. Its codec's maximum frame length goes into
    /// this side's HELLO. Frames already buffered in `framed` are read as ack-mode frames.
    pub fn wrap<T>(&self, framed: Framed<T, FrameCodec>) -> AckFramed<T> {
        let parts = framed.into_parts();
        AckFramed {
            driver: self.driver_with_buffers(
                parts.io,
                parts.codec,
                parts.read_buf,
                parts.write_buf,
            ),
            error_reported: false,
        }
    }

    /// Wraps `io` with a default [`FrameCodec`] in ack mode.
    pub fn new_framed<T: AsyncRead + AsyncWrite>(&self, io: T) -> AckFramed<T> {
        AckFramed {
            driver: self.driver(io, FrameCodec::new()),
            error_reported: false,
        }
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

    /// The driver underneath.
    pub fn driver(&mut self) -> &mut AckDriver<T> {
        &mut self.driver
    }

    /// The protocol state (windows, counters, the peer's HELLO).
    pub fn state(&self) -> &AckState {
        self.driver.state()
    }

    /// The underlying I/O object (e.g. for `peer_addr`).
    pub fn get_ref(&self) -> &T {
        self.driver.get_ref()
    }

    /// The peer's highest cumulative acknowledgement: every message up to this seq was taken
    /// by the peer's application.
    pub fn acked_through(&self) -> u64 {
        self.driver.acked_through()
    }

    /// The sequence numbers acknowledged since the previous call, if any (receipts for
    /// callers that track individual messages).
    pub fn poll_acked(&mut self) -> Option<RangeInclusive<u64>> {
        self.driver.poll_acked()
    }

    /// Advances the engine's timers to `now` by hand (see [`AckState::handle_timeout`]);
    /// the adapter also runs them itself on tokio's clock.
    ///
    /// # Errors
    ///
    /// [`AckError::PeerSilent`] once nothing arrived for the peer timeout; the adapter is
    /// failed from then on.
    pub fn handle_timeout(&mut self, now: std::time::Instant) -> Result<(), AckError> {
        self.driver.handle_timeout(now)
    }

    /// When the engine's timers are due next.
    pub fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.driver.poll_timeout()
    }

    /// Queues a GOAWAY (this side is going away: the peer should reconnect); it is written
    /// with the next poll, after what is queued. Then close the sink.
    pub fn go_away(&mut self, reason: GoAwayReason) {
        self.driver.go_away(reason);
    }

    /// The peer's GOAWAY reason, once one arrived: reconnect rather than treat the end of the
    /// stream as the end of the conversation.
    pub fn peer_going_away(&self) -> Option<GoAwayReason> {
        self.driver.peer_going_away()
    }

    /// Copies of the payloads sent and not yet acknowledged, oldest first.
    pub fn unacked(&self) -> Vec<Bytes> {
        self.state().unacked().map(|m| m.payload.clone()).collect()
    }

    /// Consumes the adapter and returns the payloads sent but not acknowledged, oldest first.
    /// After the connection died, resend them on a new connection with
    /// [`send_redelivery`](Self::send_redelivery), or report them lost.
    pub fn into_unacked(mut self) -> Vec<Bytes> {
        self.driver.take_unacked()
    }

    /// Consumes the adapter and returns the transport, the state machine and the messages
    /// received but not yet yielded by the stream.
    pub fn into_parts(self) -> (Framed<T, FrameCodec>, AckState, Vec<Delivery>) {
        let (io, codec, read_buf, write_buf, state, inbox) = self.driver.into_parts();
        let mut parts = FramedParts::new::<Bytes>(io, codec);
        parts.read_buf = read_buf;
        parts.write_buf = write_buf;
        (Framed::from_parts(parts), state, inbox)
    }

    /// `true` once the peer closed its sending direction (or the connection failed): no
    /// more frames will be read.
    pub fn is_read_closed(&self) -> bool {
        self.driver.is_read_closed()
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
        self.driver.handshake().await
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
        self.driver.send(payload.into(), false).await
    }

    /// Like [`send_tracked`](Self::send_tracked), with the DATA frame's redelivery flag set:
    /// for messages resent on a new connection because the previous one died before they
    /// were acknowledged. The receiver sees [`Delivery::redelivered`].
    ///
    /// # Errors
    ///
    /// As [`send_tracked`](Self::send_tracked).
    pub async fn send_redelivery(&mut self, payload: impl Into<Bytes>) -> Result<u64, AckError> {
        self.driver.send(payload.into(), true).await
    }

    /// Waits until the peer acknowledged every message up to and including `seq` (drives the
    /// transport meanwhile). Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`AckError::ClosedWithUnacked`] if the connection closes first; protocol and
    /// transport errors.
    pub async fn wait_acked(&mut self, seq: u64) -> Result<(), AckError> {
        poll_fn(|cx| self.driver.poll_acked_through(seq, cx)).await
    }

    /// Writes what is queued and reads (acks, and messages for the stream) until every
    /// message sent is acknowledged: `poll_flush` without counting what the stream yielded as
    /// done. For a driver that shares the adapter with a task consuming the stream, where
    /// only that task knows when it is done with a message.
    pub fn poll_deliver(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        self.driver.poll_all_acked(cx)
    }

    /// Acknowledges every message the stream has yielded so far (the application is done
    /// with them) and writes the ACK, without waiting for the next poll of the stream.
    /// Cancel-safe.
    ///
    /// # Errors
    ///
    /// Protocol and transport errors.
    pub async fn acknowledge(&mut self) -> Result<(), AckError> {
        poll_fn(|cx| self.driver.poll_release(cx)).await
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
        self.driver.start_send(payload, redelivery)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Stream for AckFramed<T> {
    type Item = Result<Delivery, AckError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.error_reported && this.driver.failure().is_some() {
            // The error was reported once; the stream is over.
            return Poll::Ready(None);
        }
        match this.driver.poll_recv(cx) {
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
        self.get_mut().driver.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Bytes) -> Result<(), AckError> {
        self.get_mut().driver.start_send(item, false).map(|_| ())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        self.get_mut().driver.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        self.get_mut().driver.poll_close(cx)
    }
}
