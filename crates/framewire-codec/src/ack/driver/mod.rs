//! The one IO driver of ack mode: [`AckState`] over any `AsyncRead + AsyncWrite` byte stream.
//!
//! Split as quinn splits `quinn-proto` from `quinn` and h2 splits `proto` from `share`: the
//! engine ([`AckState`]) owns the protocol and reads no clock; [`AckDriver`] owns everything
//! with a side effect (the socket, the read buffer, the write path, the tokio timer, the inbox
//! of received messages, the first error) and nothing else. The faces on top of it
//! ([`AckFramed`](super::AckFramed), the client's ack mode, the server's connection) add only
//! their own API.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Wake, Waker};

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;

use super::engine::{AckState, Delivery};
use super::session_hub::{Attached, SessionHub};
use super::wire::{data_header, AckFrame, GoAwayReason, Hello, DATA_HEADER_LEN};
use super::AckError;
use crate::{
    Cause, EarlierError, FrameCodec, FrameError, FrameReader, FrameWriter, DEFAULT_READ_SIZE,
    ZERO_COPY_MIN,
};

/// How many timer rounds one poll runs at most (each round moves the deadline forward; the
/// bound only guards against a clock that does not move).
const TIMER_ROUNDS: usize = 4;

/// Which caller is polling: the receiving side (which takes whole DATA frames from the read
/// buffer itself) or the sending side, each with its own slot in [`Wakers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// The receiving side (`poll_recv`, `acknowledge`).
    Recv,
    /// The sending side (everything else).
    Send,
}

/// Where the two callers of a driver (a receiving task and a sending task, e.g. the halves of
/// a split connection) register, and, as a [`Waker`], the one waker the driver polls the
/// transport, the timer and the session hub with.
///
/// A socket and a timer keep one waker each. Polled with each caller's own waker, the
/// callers would keep replacing each other's registration: a caller that then finished (or
/// whose future was dropped) would leave the registration with a task no longer waiting, and
/// the other caller would never be woken. Polled with this one waker, whose clones all
/// `will_wake` each other, the registration never changes hands, and a readiness event wakes
/// every caller registered here once. A caller that left costs at most one spurious wake.
#[derive(Debug, Default)]
struct Wakers {
    recv: AtomicWaker,
    send: AtomicWaker,
}

impl Wakers {
    fn slot(&self, side: Side) -> &AtomicWaker {
        match side {
            Side::Recv => &self.recv,
            Side::Send => &self.send,
        }
    }
}

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.recv.wake();
        self.send.wake();
    }
}

/// The driver's write path: framewire's one write queue ([`FrameWriter`], shared with plain
/// mode). Control frames and small DATA frames are encoded into its buffer whole (length
/// prefix, ack header and payload: one copy), a DATA payload of at least [`ZERO_COPY_MIN`]
/// bytes is queued by reference to the engine's own copy (no copy; the engine keeps it until
/// it is acknowledged anyway), and everything goes out in as few (vectored) writes as the
/// transport allows.
#[derive(Debug, Default)]
struct WriteBuf {
    w: FrameWriter,
}

impl WriteBuf {
    fn from_bytes(buf: BytesMut) -> WriteBuf {
        let mut w = FrameWriter::new();
        *w.buffer_mut() = buf;
        WriteBuf { w }
    }

    #[inline]
    fn len(&self) -> usize {
        self.w.len()
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.w.is_empty()
    }

    /// Queues one frame: length prefix, then the frame (ack header and payload).
    #[inline]
    fn push(&mut self, codec: &FrameCodec, frame: AckFrame<&Bytes>) -> Result<(), FrameError> {
        match frame {
            AckFrame::Data {
                seq,
                redelivery,
                payload,
            } if payload.len() >= ZERO_COPY_MIN => {
                self.w
                    .feed_bytes_headed(codec, &data_header(seq, redelivery), payload.clone())
            }
            // The frame a stream is made of: copied (no reference count traffic), so that a
            // window of small messages goes out in one write.
            AckFrame::Data {
                seq,
                redelivery,
                payload,
            } => self
                .w
                .feed_headed(codec, &data_header(seq, redelivery), payload),
            // A control frame is all head.
            control => self.w.feed(codec, control.parts().0.as_slice()),
        }
    }

    /// Gives the memory back if nothing is queued. The driver does not use the writer's
    /// count of bytes written (the transport counts them), so it goes too.
    fn release(&mut self) {
        let _ = self.w.take_written();
        self.w.release();
    }

    /// Writes everything queued, then flushes the transport.
    fn poll_drain<T: AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.w.poll_drain(Pin::new(&mut *io), cx))?;
        Pin::new(io).poll_flush(cx)
    }

    /// The bytes queued and not yet written.
    fn into_inner(mut self) -> BytesMut {
        self.w.take_queued()
    }
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
}

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
        }
    }

    /// Accepting side: answers a HELLO that names a session from `hub` (resumed if kept,
    /// taken over from a live connection, or a fresh record), and lets
    /// [`detach_session`](Self::detach_session) keep it there when the connection ends.
    /// Without a hub, an [`accepting`](AckState::accepting) state answers every session
    /// request with [`start_session`](AckState::start_session).
    #[must_use]
    pub fn with_sessions(mut self, hub: &SessionHub) -> AckDriver<T> {
        self.sessions = Some(hub.attach());
        self
    }

    /// The connection is over: keeps its session (if it has one, from the hub given to
    /// [`with_sessions`](Self::with_sessions)) for the client to resume, with the last
    /// message handed out as delivered. The driver is unusable afterwards. Returns `true` if
    /// the session was kept (the store's caps may refuse it).
    pub fn detach_session(&mut self) -> bool {
        self.detach(true)
    }

    /// [`detach_session`](Self::detach_session) for an application that did not finish the
    /// last message handed out (it panicked, or was aborted): only the messages it was done
    /// with count as delivered, so the client resends that one on a resume, and it is
    /// delivered again flagged as a redelivery (the application may have acted on it).
    pub fn detach_session_unfinished(&mut self) -> bool {
        self.detach(false)
    }

    fn detach(&mut self, finished: bool) -> bool {
        let Some(a) = self.sessions.as_mut() else {
            return false;
        };
        let delivered = if finished {
            self.yielded.max(self.state.taken_through())
        } else {
            self.state.handed_out_unfinished(self.yielded);
            self.state.taken_through()
        };
        let blank = AckState::with_config(super::AckConfig::new(), 0);
        let state = std::mem::replace(&mut self.state, blank);
        self.failed.get_or_insert_with(|| {
            EarlierError::new("the session was detached", Cause::Local, false)
        });
        a.detach(state, delivered, clock_now())
    }

    /// Accepting side: reads until the peer's HELLO has arrived and its session is settled,
    /// and writes this side's HELLO, so that a peer's handshake does not wait for the
    /// application's first call. Ready also once the driver failed or the peer closed (the
    /// next call reports why; a protocol error met here is returned by it as is).
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<()>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        if self.failed.is_some() || self.read_closed {
            return Poll::Ready(());
        }
        // The sending side's round: it parses every frame it reads (the HELLO included).
        let _ = self.register(Side::Send, cx);
        if let Err(e) = self.with_io_cx(|this, cx| this.progress(cx, Side::Send)) {
            self.record_deferred(e);
            return Poll::Ready(());
        }
        let settled = self.state.peer_hello().is_some() && self.state.session_request().is_none();
        if settled || self.read_closed {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Answers the peer's session request, if there is one (see
    /// [`with_sessions`](Self::with_sessions)). Pending while another live connection holds
    /// the session. Without a `waker` (a call that does not wait) a takeover is neither
    /// started nor waited for.
    fn poll_session(&mut self, waker: Option<&Waker>) -> Poll<Result<(), AckError>> {
        if self.state.session_request().is_none() {
            return Poll::Ready(Ok(()));
        }
        match self.sessions.as_mut() {
            Some(a) => a.poll_resolve(&mut self.state, waker, clock_now()),
            None => Poll::Ready(self.state.start_session()),
        }
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

    /// The next received message if one is already buffered (in the inbox, or whole in the
    /// read buffer), without any I/O; counts the previous one as done, as
    /// [`poll_recv`](Self::poll_recv) does. The ACK goes out with the next poll.
    ///
    /// # Errors
    ///
    /// Protocol errors in the buffered bytes; the driver is failed from then on.
    pub fn try_recv(&mut self) -> Result<Option<Delivery>, AckError> {
        if let Some(e) = self.take_failure(Side::Recv) {
            return Err(e);
        }
        let r = self.try_recv_inner();
        if let Err(e) = &r {
            if !e.is_connection_usable() && self.failed.is_none() {
                self.failed = Some(EarlierError::from(e));
            }
        }
        r
    }

    fn try_recv_inner(&mut self) -> Result<Option<Delivery>, AckError> {
        if self.yielded > self.state.taken_through() {
            self.state.taken(self.yielded)?;
        }
        while self.inbox.is_empty() && !self.read_closed {
            if self.poll_session(None)?.is_pending() {
                break;
            }
            let Some(frame) = self.decode()? else { break };
            if let Some(d) = self.state.handle_frame(frame)? {
                self.inbox.push_back(d);
            }
        }
        if self.inbox.is_empty() && self.input.is_empty() {
            self.state.reader_idle();
        }
        Ok(self.take_delivery())
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

    /// Advances the engine's timers to `now` by hand (the driver also runs them itself).
    ///
    /// # Errors
    ///
    /// [`AckError::PeerSilent`]; the driver is failed from then on.
    pub fn handle_timeout(&mut self, now: std::time::Instant) -> Result<(), AckError> {
        self.check_failed()?;
        self.timers_started = true;
        let r = self.state.handle_timeout(now);
        if let Err(e) = &r {
            self.failed = Some(EarlierError::from(e));
        }
        r
    }

    /// When the engine's timers are due next.
    pub fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.state.poll_timeout()
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

    /// The messages received but not yet returned, taken out (e.g. to deliver them after the
    /// connection is gone).
    pub fn take_buffered(&mut self) -> Vec<Delivery> {
        self.parse_buffered();
        self.inbox.drain(..).collect()
    }

    /// Moves every whole frame left in the read buffer through the engine (DATA into the
    /// inbox): the receiving side parses lazily, so frames may wait there. Stops at the first
    /// error (the connection is being taken apart; the frame stays unparsed).
    fn parse_buffered(&mut self) {
        while self.state.session_request().is_none() {
            let Some(frame) = self.input.next_buffered(&mut self.codec) else {
                break;
            };
            match self.state.handle_frame(frame) {
                Ok(Some(d)) => self.inbox.push_back(d),
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }

    /// Queues one message as the next DATA frame and returns its sequence number; it is
    /// written by the next poll (or [`poll_write`](Self::poll_write)). Call after
    /// [`poll_ready`](Self::poll_ready) returned `Ready(Ok(()))`.
    ///
    /// # Errors
    ///
    /// [`AckError::WindowFull`] without room, [`AckError::PayloadTooLong`] over this side's
    /// codec limit or the peer's; nothing is queued then. [`AckError::Failed`] after an
    /// error.
    pub fn start_send(&mut self, payload: Bytes, redelivery: bool) -> Result<u64, AckError> {
        self.try_start_send(payload, redelivery).map_err(|(e, _)| e)
    }

    /// As [`start_send`](Self::start_send), but an error hands the payload back: for a caller
    /// that keeps no copy of a message once the engine holds it (the engine keeps it until
    /// it is acknowledged, see [`take_unacked`](Self::take_unacked)).
    ///
    /// # Errors
    ///
    /// As [`start_send`](Self::start_send), with the payload.
    pub fn try_start_send(
        &mut self,
        payload: Bytes,
        redelivery: bool,
    ) -> Result<u64, (AckError, Bytes)> {
        if let Err(e) = self.check_failed() {
            return Err((e, payload));
        }
        if let Err(e) = self.check_taken_over() {
            return Err((e, payload));
        }
        if self.write_closed {
            return Err((AckError::SinkClosed, payload));
        }
        let ours = self.codec.max_frame_len().saturating_sub(DATA_HEADER_LEN);
        if payload.len() > ours {
            let len = payload.len();
            return Err((AckError::PayloadTooLong { len, max: ours }, payload));
        }
        self.state.try_send(payload, redelivery)
    }

    fn take_delivery(&mut self) -> Option<Delivery> {
        let d = self.inbox.pop_front()?;
        self.yielded = d.seq;
        Some(d)
    }

    /// The next whole frame in the read buffer, if any (at end of stream, a truncated frame
    /// is an error).
    fn decode(&mut self) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = self.input.next_buffered(&mut self.codec) {
            return Ok(Some(frame));
        }
        self.input.next_frame_or_end(&mut self.codec, self.eof)
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

    // ------------------------------------------------------------------ public polls

    /// Writes this side's HELLO (if not yet written) and waits for the peer's.
    ///
    /// # Errors
    ///
    /// [`AckError::ExpectedHello`] (a plain-mode peer), [`AckError::VersionMismatch`],
    /// [`AckError::ClosedBeforeHello`], transport errors.
    pub fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<Result<Hello, AckError>> {
        self.guard(Side::Send, cx, |this, cx| {
            this.progress(cx, Side::Send)?;
            match this.state.peer_hello() {
                Some(h) => Poll::Ready(Ok(h)),
                None if this.read_closed => Poll::Ready(Err(AckError::ClosedBeforeHello)),
                None => Poll::Pending,
            }
        })
    }

    /// Ready when [`start_send`](Self::start_send) accepts a message: the peer's window has
    /// room and the write buffer is below its high-water mark. Reads acks while it waits.
    ///
    /// # Errors
    ///
    /// [`AckError::ClosedWithUnacked`] if the connection closed while waiting; protocol and
    /// transport errors; [`AckError::SinkClosed`] after [`poll_close`](Self::poll_close).
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        if self.failed.is_none()
            && self.pending.is_none()
            && !self.write_closed
            && self.state.has_room()
            && self.out.len() < self.high_water
            && !self.sessions.as_ref().is_some_and(Attached::is_superseded)
        {
            return Poll::Ready(Ok(()));
        }
        self.guard(Side::Send, cx, |this, cx| this.poll_ready_inner(cx))
    }

    /// Writes everything queued (frames of the engine, then the buffer) without waiting for
    /// acks. Ready when all of it reached the transport.
    ///
    /// # Errors
    ///
    /// Transport errors.
    pub fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        self.guard(Side::Send, cx, |this, cx| this.poll_write_inner(cx))
    }

    /// Writes what is queued and reads until every message sent is acknowledged, without
    /// counting anything received as done (for a sender sharing the driver with a receiving
    /// task, which alone knows when it is done with a message).
    ///
    /// # Errors
    ///
    /// [`AckError::ClosedWithUnacked`] if the connection closes first; protocol and transport
    /// errors.
    pub fn poll_all_acked(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        self.guard(Side::Send, cx, |this, cx| this.poll_all_acked_inner(cx))
    }

    /// [`poll_all_acked`](Self::poll_all_acked) after counting every message
    /// [`poll_recv`](Self::poll_recv) returned as done (waiting for the peer's acks while
    /// holding back ours would deadlock two peers doing request/response).
    ///
    /// # Errors
    ///
    /// As [`poll_all_acked`](Self::poll_all_acked).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        self.guard(Side::Send, cx, |this, cx| {
            this.release_yielded(cx)?;
            this.poll_all_acked_inner(cx)
        })
    }

    /// Waits until the peer acknowledged every message up to and including `seq`.
    ///
    /// # Errors
    ///
    /// As [`poll_all_acked`](Self::poll_all_acked).
    pub fn poll_acked_through(
        &mut self,
        seq: u64,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), AckError>> {
        self.guard(Side::Send, cx, |this, cx| {
            this.progress(cx, Side::Send)?;
            if this.state.acked_through() >= seq.min(this.state.last_sent()) {
                Poll::Ready(Ok(()))
            } else if this.read_closed {
                Poll::Ready(Err(this.closed_error()))
            } else {
                Poll::Pending
            }
        })
    }

    /// One round of I/O without waiting: writes what is queued, reads what the transport has
    /// ready (acks settle, messages go to the inbox), runs the timers. Always ready unless
    /// the driver failed.
    ///
    /// # Errors
    ///
    /// Protocol and transport errors.
    pub fn poll_progress(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        self.guard(Side::Send, cx, |this, cx| {
            this.progress(cx, Side::Send)?;
            Poll::Ready(Ok(()))
        })
    }

    /// Counts every message [`poll_recv`](Self::poll_recv) returned as done and writes the
    /// ACK now, without waiting for the next `poll_recv`.
    ///
    /// # Errors
    ///
    /// Protocol and transport errors.
    pub fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        self.guard(Side::Recv, cx, |this, cx| {
            this.release_yielded(cx)?;
            this.state.reader_idle();
            this.poll_write_inner(cx)
        })
    }

    /// Counts every message [`poll_recv`](Self::poll_recv) returned as done; the ACK goes out
    /// with the next poll (or at once if the socket takes it now).
    pub fn release(&mut self, _cx: &mut Context<'_>) {
        if let Err(e) = self.with_io_cx(Self::release_yielded) {
            self.record_deferred(e);
        }
    }

    /// The next received message, in order (`Ok(None)`: the peer closed its sending
    /// direction). Polling again counts the previous one as done.
    ///
    /// # Errors
    ///
    /// Protocol and transport errors, [`AckError::ClosedBeforeHello`], [`AckError::PeerSilent`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Delivery>, AckError>> {
        if self.failed.is_none()
            && self.pending.is_none()
            && !self.sessions.as_ref().is_some_and(Attached::is_superseded)
        {
            if let Some(d) = self.recv_fast() {
                if self.input.is_empty() {
                    // That was the last one buffered (see `after_take`).
                    self.with_io_cx(|this, cx| this.after_take(cx));
                }
                return Poll::Ready(Ok(Some(d)));
            }
            // Fast path: a buffered message, no I/O unless an ACK became due. A registration
            // left by an earlier wait stays: at most one spurious wake, and no atomic
            // operation per message.
            match self.with_io_cx(|this, cx| this.recv_buffered(cx)) {
                Ok(None) => {}
                Ok(Some(d)) => return Poll::Ready(Ok(Some(d))),
                Err(e) => {
                    if !e.is_connection_usable() {
                        self.failed = Some(EarlierError::from(&e));
                    }
                    return Poll::Ready(Err(e));
                }
            }
        }
        self.guard(Side::Recv, cx, |this, cx| this.poll_recv_inner(cx))
    }

    /// The receive path's common case in one step ([`AckState::take_and_receive`]): the
    /// previous message is done and the next frame, whole in the read buffer, is an in-order
    /// DATA frame, and nothing else happens (no ACK becomes due, nothing else to write or
    /// resolve). `None`, with nothing changed, in every other case: the general path
    /// (`recv_buffered`, `poll_recv_inner`) handles it. The caller checked that the driver
    /// has not failed.
    #[inline]
    fn recv_fast(&mut self) -> Option<Delivery> {
        if self.eof || !self.inbox.is_empty() {
            return None;
        }
        let (len, head) = self.input.peek_buffered::<DATA_HEADER_LEN>(&self.codec)?;
        let (seq, redelivered) = self.state.take_and_receive(self.yielded, head, len)?;
        self.yielded = seq;
        Some(Delivery {
            session: self.state.delivery_session(),
            seq,
            payload: self.input.take_peeked(len, DATA_HEADER_LEN),
            redelivered,
        })
    }

    /// The next message if one is buffered (in the inbox, or whole in the read buffer),
    /// after counting the previous one as done; `None` without touching anything otherwise.
    fn recv_buffered(&mut self, cx: &mut Context<'_>) -> Result<Option<Delivery>, AckError> {
        if self.inbox.is_empty() && !self.input.has_buffered_frame(&self.codec) {
            return Ok(None);
        }
        self.release_yielded(cx)?;
        let d = self.next_buffered()?;
        if d.is_some() {
            self.after_take(cx);
        }
        Ok(d)
    }

    /// The next message in the inbox, else the next one whole in the read buffer, parsed in
    /// place (the receiving side leaves DATA in the read buffer until it is asked for: no
    /// trip through the inbox). Control frames met on the way are handled.
    fn next_buffered(&mut self) -> Result<Option<Delivery>, AckError> {
        if let Some(d) = self.take_delivery() {
            return Ok(Some(d));
        }
        // A HELLO naming a session is resolved (`poll_session`, on the reading path) before
        // anything after it is parsed.
        while self.state.session_request().is_none() {
            let Some(frame) = self.input.next_buffered(&mut self.codec) else {
                break;
            };
            if let Some(d) = self.state.handle_frame(frame)? {
                self.yielded = d.seq;
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// Closes the sending direction: waits until every message sent is acknowledged, writes
    /// the acks for everything received so far (counted as done) and shuts the transport's
    /// write half. Messages received afterwards cannot be acknowledged.
    ///
    /// # Errors
    ///
    /// As [`poll_flush`](Self::poll_flush), and transport errors while shutting down.
    pub fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        self.guard(Side::Send, cx, |this, cx| {
            if this.write_closed {
                return Poll::Ready(Ok(()));
            }
            this.release_yielded(cx)?;
            this.state.reader_idle();
            ready!(this.poll_all_acked_inner(cx))?;
            ready!(this.out.poll_drain(&mut this.io, cx)).map_err(FrameError::from)?;
            ready!(Pin::new(&mut this.io).poll_shutdown(cx)).map_err(FrameError::from)?;
            this.write_closed = true;
            Poll::Ready(Ok(()))
        })
    }

    /// Writes what is queued (without waiting for acks) and shuts the transport's write half.
    /// Acks for messages taken from then on cannot be sent.
    ///
    /// # Errors
    ///
    /// Transport errors.
    pub fn poll_shutdown_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        self.guard(Side::Send, cx, |this, cx| {
            if this.write_closed {
                return Poll::Ready(Ok(()));
            }
            ready!(this.poll_write_inner(cx))?;
            ready!(Pin::new(&mut this.io).poll_shutdown(cx)).map_err(FrameError::from)?;
            this.write_closed = true;
            Poll::Ready(Ok(()))
        })
    }

    /// Waits for room, queues `payload` (flagged as a redelivery if asked), writes it and
    /// returns its sequence number. Does not wait for its acknowledgement.
    ///
    /// # Errors
    ///
    /// As [`poll_ready`](Self::poll_ready) and [`start_send`](Self::start_send).
    pub async fn send(&mut self, payload: Bytes, redelivery: bool) -> Result<u64, AckError> {
        poll_fn(|cx| self.poll_ready(cx)).await?;
        let seq = self.start_send(payload, redelivery)?;
        poll_fn(|cx| self.poll_write(cx)).await?;
        Ok(seq)
    }

    /// Writes this side's HELLO and waits for the peer's (see
    /// [`poll_handshake`](Self::poll_handshake)).
    ///
    /// # Errors
    ///
    /// As [`poll_handshake`](Self::poll_handshake).
    pub async fn handshake(&mut self) -> Result<Hello, AckError> {
        poll_fn(|cx| self.poll_handshake(cx)).await
    }

    // ------------------------------------------------------------------ internals

    fn poll_ready_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        if self.write_closed {
            return Poll::Ready(Err(AckError::SinkClosed));
        }
        self.check_taken_over()?;
        self.encode()?;
        if self.state.has_room() && self.out.len() < self.high_water {
            return Poll::Ready(Ok(()));
        }
        // Window full, no HELLO yet, or the write buffer is full: write, and read acks.
        self.progress(cx, Side::Send)?;
        if self.state.has_room() && self.out.len() < self.high_water {
            Poll::Ready(Ok(()))
        } else if self.read_closed {
            Poll::Ready(Err(self.closed_error()))
        } else {
            Poll::Pending
        }
    }

    fn poll_all_acked_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        self.progress(cx, Side::Send)?;
        if self.state.all_acked() && !self.state.has_transmit() && self.out.is_empty() {
            Poll::Ready(Ok(()))
        } else if self.read_closed && !self.state.all_acked() {
            Poll::Ready(Err(self.closed_error()))
        } else {
            Poll::Pending
        }
    }

    fn poll_recv_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Delivery>, AckError>> {
        self.check_taken_over()?;
        self.release_yielded(cx)?;
        loop {
            if let Some(d) = self.next_buffered()? {
                self.after_take(cx);
                return Poll::Ready(Ok(Some(d)));
            }
            if self.read_closed {
                break;
            }
            // Nothing buffered: one round of I/O. Pending with a wake-up registered, or
            // bytes to parse (the read stopped at a whole frame, or at the end of stream).
            if self.progress(cx, Side::Recv)? && self.inbox.is_empty() {
                if let Some(d) = self.next_buffered()? {
                    self.after_take(cx);
                    return Poll::Ready(Ok(Some(d)));
                }
                break;
            }
        }
        if self.read_closed {
            if !self.state.is_established() {
                return Poll::Ready(Err(AckError::ClosedBeforeHello));
            }
            return Poll::Ready(Ok(None));
        }
        Poll::Pending
    }

    /// Encodes the engine's frames into the write buffer, up to the high-water mark.
    fn encode(&mut self) -> Result<(), AckError> {
        if self.write_closed {
            // Nothing more can be written: acks for messages taken from now on are dropped
            // (the peer gets those messages back as unacknowledged).
            while self.state.poll_transmit_ref().is_some() {}
            return Ok(());
        }
        while self.out.len() < self.high_water {
            // Borrowed, not cloned: a small payload is copied into the write buffer right
            // away, only a large one is referenced.
            let Some(frame) = self.state.poll_transmit_shared() else {
                break;
            };
            self.out.push(&self.codec, frame)?;
        }
        Ok(())
    }

    /// Writes everything the engine has to send. Ready when all of it reached the transport.
    fn poll_write_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
        if self.write_closed {
            self.encode()?;
            return Poll::Ready(Ok(()));
        }
        loop {
            self.encode()?;
            if self.out.is_empty() {
                return Poll::Ready(Ok(()));
            }
            ready!(self.out.poll_drain(&mut self.io, cx)).map_err(FrameError::from)?;
            if !self.state.has_transmit() {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Reads every frame the transport has ready into the engine (DATA into the inbox).
    /// Ready on end of stream; Pending (waker registered) when nothing more is ready.
    fn poll_read(&mut self, cx: &mut Context<'_>, side: Side) -> Poll<Result<(), AckError>> {
        if self.read_closed {
            return Poll::Ready(Ok(()));
        }
        let mut read_any = false;
        let r = loop {
            match self.poll_session(Some(cx.waker())) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            }
            if side == Side::Recv && !self.eof && self.input.has_buffered_frame(&self.codec) {
                // The receiving side takes whole frames from the read buffer itself.
                break Poll::Ready(Ok(()));
            }
            if let Some(frame) = self.decode()? {
                if let Some(d) = self.state.handle_frame(frame)? {
                    self.inbox.push_back(d);
                }
                continue;
            }
            if self.eof {
                self.read_closed = true;
                break Poll::Ready(Ok(()));
            }
            // One read, sized and grown by the one read path's policy (see `FrameReader`).
            match self
                .input
                .poll_fill(&self.codec, Pin::new(&mut self.io), cx)
            {
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(_)) => read_any = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(FrameError::from(e).into())),
                Poll::Pending => {
                    if !self.input.holds_memory() && self.out.is_empty() && self.state.all_acked() {
                        // The peer is quiet, no frame is half-read and nothing sent waits for
                        // its ACK: the reader gave its buffer back (keeping the read size it
                        // learned), so the write buffer goes too and an idle ack-mode
                        // connection holds none (as the plain server's connections do). The
                        // next read allocates again: once per burst. A sender with messages
                        // in flight keeps its buffer: between two ACKs it is not idle, and
                        // growing the buffer again (by reallocation, copying what is queued)
                        // cost the streaming client ~90 instructions per message.
                        self.out.release();
                    }
                    break Poll::Pending;
                }
            }
        };
        // What this read parsed may be what the other side waits for (an ACK, a message):
        // wake it (if it is another task) to look. The transport's registration is the
        // driver's own waker (see `Wakers`) and stays put whoever polls, so a read that found
        // nothing wakes nobody, and two sides waiting on a quiet transport stay asleep.
        if read_any || self.eof {
            let other = match side {
                Side::Recv => Side::Send,
                Side::Send => Side::Recv,
            };
            self.wakers.slot(other).wake();
        }
        r
    }

    /// Runs the engine's timers on tokio's clock: arms them at the first call, queues a
    /// keepalive PING when due, fails with [`AckError::PeerSilent`] after the peer timeout.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Result<(), AckError> {
        if !self.timers_started {
            if tokio::runtime::Handle::try_current().is_err() {
                return Ok(());
            }
            self.timers_started = true;
            self.state
                .handle_timeout(tokio::time::Instant::now().into_std())?;
        }
        for _ in 0..TIMER_ROUNDS {
            let Some(deadline) = self.state.poll_timeout() else {
                self.timer = None;
                return Ok(());
            };
            let deadline = tokio::time::Instant::from_std(deadline);
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            self.state
                .handle_timeout(tokio::time::Instant::now().into_std())?;
        }
        Ok(())
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

    /// A message was just handed out. If it was the last one buffered, acknowledge those the
    /// application is done with now (the ones before it), not at its next poll: it may not
    /// poll again soon. Written if the transport takes it without waiting (unless the
    /// receiving side's writes are deferred); an error is reported by the next call.
    fn after_take(&mut self, cx: &mut Context<'_>) {
        if self.inbox.is_empty() && self.input.is_empty() {
            self.state.reader_idle();
        }
        if !self.defer_recv_writes && self.state.has_transmit() {
            if let Poll::Ready(Err(e)) = self.poll_write_inner(cx) {
                self.record_deferred(e);
            }
        }
    }

    /// The application is done with what `poll_recv` returned: report it to the engine and
    /// write the ack if one became due.
    fn release_yielded(&mut self, cx: &mut Context<'_>) -> Result<(), AckError> {
        if self.yielded <= self.state.taken_through() {
            return Ok(());
        }
        self.state.taken(self.yielded)?;
        // With the next frame whole in the read buffer the reader is not idle, and reading
        // would stop right there (see `poll_read`): skip it (once per message on a stream).
        let frame_ready = !self.eof && self.input.has_buffered_frame(&self.codec);
        if self.inbox.is_empty() && !self.read_closed && !frame_ready {
            // Everything buffered was taken: if the transport has nothing more either, the
            // reader is idle and what was taken is acknowledged now rather than at the next
            // poll (the application may not poll again soon). An error here is recorded and
            // reported by the next call.
            match self.poll_read(cx, Side::Recv) {
                Poll::Pending if self.inbox.is_empty() => self.state.reader_idle(),
                Poll::Ready(Err(e)) => self.record_deferred(e),
                _ => {}
            }
        }
        if !self.defer_recv_writes && self.state.has_transmit() {
            // An ack became due: write it now if the transport takes it without waiting
            // (deferred: the sending side's next poll writes it; a sending caller of this
            // function writes right after).
            if let Poll::Ready(Err(e)) = self.poll_write_inner(cx) {
                self.record_deferred(e);
            }
        }
        Ok(())
    }
}

/// Now on tokio's clock (paused in tests) when inside a runtime, else the system's.
fn clock_now() -> std::time::Instant {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::time::Instant::now().into_std()
    } else {
        std::time::Instant::now()
    }
}
