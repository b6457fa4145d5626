//! The ack-mode half of [`Connection`]: a face over the codec's one ack driver
//! ([`AckDriver`]), which owns the transport, the buffers, the engine, its timers and the
//! inbox. What stays here is the server's own policy around it: the idle, stall and write
//! timeouts, graceful shutdown (GOAWAY), the cooperative budget, stats and error counting.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::Bytes;
use framewire_codec::ack::{AckDriver, AckError, Delivery, GoAwayReason, SessionStatus};
use framewire_codec::{EarlierError, FrameError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Connection;
use crate::address::Transport;
use crate::error::ServerError;
use crate::handle::ServerHandle;
use crate::stats::bump;

/// Ack-mode state of one connection.
pub(super) struct AckConn<S> {
    pub(super) driver: AckDriver<Counted<S>>,
    /// Whether the message most recently handed to the handler was flagged as a redelivery.
    pub(super) last_redelivered: bool,
    /// The session's fate on this connection was logged.
    session_noted: bool,
    /// The peer's acknowledgement and the bytes written when the write clock last restarted:
    /// either moving means the peer is taking what this side sends.
    acked_seen: u64,
    written_seen: u64,
    /// Bytes read as of the last stall accounting.
    read_seen: u64,
}

impl<S> AckConn<S> {
    pub(super) fn new(driver: AckDriver<Counted<S>>) -> AckConn<S> {
        AckConn {
            driver,
            last_redelivered: false,
            session_noted: false,
            acked_seen: 0,
            written_seen: 0,
            read_seen: 0,
        }
    }
}

impl<S> std::fmt::Debug for AckConn<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckConn")
            .field("state", self.driver.state())
            .finish_non_exhaustive()
    }
}

/// The transport as the ack driver sees it: the connection's own, counting wire bytes into
/// the server's stats.
pub(super) struct Counted<S> {
    pub(super) io: Box<dyn Transport>,
    pub(super) server: ServerHandle<S>,
    read: u64,
    written: u64,
}

impl<S> Counted<S> {
    pub(super) fn new(io: Box<dyn Transport>, server: ServerHandle<S>) -> Counted<S> {
        Counted {
            io,
            server,
            read: 0,
            written: 0,
        }
    }
}

impl<S> std::fmt::Debug for Counted<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counted")
            .field("read", &self.read)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl<S> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let n = (buf.filled().len() - before) as u64;
        this.read += n;
        bump(&this.server.connection_view().counters.bytes_in, n);
        Poll::Ready(Ok(()))
    }
}

impl<S> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
        this.written += n as u64;
        bump(&this.server.connection_view().counters.bytes_out, n as u64);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Stands in for the transport in [`Connection`]'s plain-mode field once the ack driver owns
/// it: never read or written in ack mode.
pub(super) struct Detached;

impl AsyncRead for Detached {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Detached {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Transport for Detached {
    fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Logs, once per connection, a client that resumed a session this server no longer has
/// (restarted, linger expired, evicted, or another server): delivery on it is at least once
/// from here, with stable message ids.
fn note_session<S>(a: &AckConn<S>) {
    let state = a.driver.state();
    if state.session_status() == SessionStatus::Lost {
        let id = framewire_codec::ack::MessageId {
            session: state.session_id(),
            seq: 0,
        };
        tracing::info!(
            session = %id,
            "client resumed a session this server no longer has (restarted, expired or \
             evicted): at-least-once delivery on it from here; repeats keep their message ids"
        );
    }
}

/// How a driver error reads as a server error: transport and framing errors as in plain mode.
fn server_error(e: AckError) -> ServerError {
    match e {
        AckError::Frame(FrameError::Io(e)) => ServerError::Io(e),
        AckError::Frame(e) => ServerError::Frame(e),
        e => ServerError::Ack(e),
    }
}

/// Errors that say "this connection is already over" rather than what ended it (that was
/// counted and returned when it happened), and a takeover: the client resumed its session on
/// a newer connection, which is normal operation (a reconnect), not an error of this one.
fn already_over(e: &AckError) -> bool {
    if matches!(e, AckError::SessionTakenOver) {
        tracing::debug!("the client's session was taken over by a newer connection");
        return true;
    }
    matches!(
        e,
        AckError::Failed { .. }
            | AckError::SinkClosed
            | AckError::ClosedWithUnacked { .. }
            | AckError::ClosedBeforeHello
    )
}

impl<S> Connection<S> {
    fn ack_conn(&mut self) -> Option<&mut AckConn<S>> {
        self.ack.as_deref_mut()
    }

    /// Bytes arrived since the last look: the idle clock restarts, the stall clock restarts
    /// when a frame was finished, and with a minimum receive rate the bytes earn time back.
    fn ack_note_reads(&mut self) {
        let Some(a) = self.ack.as_deref_mut() else {
            return;
        };
        let read = a.driver.get_ref().read;
        let n = read - a.read_seen;
        if n == 0 {
            return;
        }
        a.read_seen = read;
        let between = a.driver.is_between_frames();
        self.idle_since = None;
        if self.frame_since.is_some() || self.stall_left.is_some() {
            self.account_stall(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if between {
            self.frame_since = None;
        }
    }

    /// A receive error from the driver: counted (unless it only says the connection is over)
    /// and the receiving side closed.
    fn ack_recv_failed<T>(&mut self, e: AckError) -> Poll<Result<Option<T>, ServerError>> {
        self.read_closed = true;
        self.publish_frames_in();
        if already_over(&e) {
            return Poll::Ready(Ok(None));
        }
        let err = server_error(e);
        self.count_and_log(&err, "receive");
        Poll::Ready(Err(err))
    }

    /// A send error from the driver: counted unless it only says the connection is over
    /// (then [`ServerError::Closed`]).
    fn ack_send_failed(&mut self, e: AckError) -> ServerError {
        if already_over(&e) {
            if self.write_closed_why.is_none() {
                // Over for a reason met elsewhere (a receive error, a takeover): name it.
                self.write_closed_why = Some(match e {
                    AckError::Failed { first } => first,
                    e => EarlierError::from(&e),
                });
            }
            return self.closed_for_sending();
        }
        let usable = e.is_connection_usable();
        let err = server_error(e);
        if !usable {
            // The driver is failed: both directions are over.
            self.read_closed = true;
            self.write_closed = true;
            self.write_closed_why = Some(EarlierError::from(&err));
        }
        self.count_and_log(&err, "send");
        err
    }

    /// Ack mode's `poll_recv`: the next message, or the end of the stream.
    pub(super) fn poll_recv_ack(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Delivery>, ServerError>> {
        if self.read_closed || self.recv_ended {
            // Asking again: the handler is done with what it had.
            if let Some(a) = self.ack_conn() {
                a.driver.release(cx);
            }
            return Poll::Ready(Ok(None));
        }
        // One unit of the cooperative budget per message (see [Fairness](Connection#fairness)).
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let Some(a) = self.ack.as_deref_mut() else {
            return Poll::Ready(Ok(None));
        };
        let polled = a.driver.poll_recv(cx);
        self.ack_note_reads();
        match polled {
            Poll::Ready(Ok(Some(d))) => {
                coop.made_progress();
                self.idle_since = None;
                self.frame_since = None;
                let Some(a) = self.ack.as_deref_mut() else {
                    return Poll::Ready(Ok(None));
                };
                a.last_redelivered = d.redelivered;
                if !a.session_noted {
                    a.session_noted = true;
                    note_session(a);
                }
                let drained = a.driver.buffered() == 0 && a.driver.buffered_bytes() == 0;
                self.frames_in_unpublished += 1;
                if drained || self.frames_in_unpublished >= super::FRAMES_IN_BATCH {
                    self.publish_frames_in();
                }
                Poll::Ready(Ok(Some(d)))
            }
            Poll::Ready(Ok(None)) => {
                tracing::debug!("peer closed the connection");
                self.ack_recv_failed(AckError::ClosedBeforeHello)
            }
            Poll::Ready(Err(e)) => self.ack_recv_failed(e),
            Poll::Pending => {
                self.publish_frames_in();
                if self.between_frames() && self.poll_shutdown_requested(cx) {
                    tracing::debug!("shutdown requested; ending the incoming stream");
                    self.recv_ended = true;
                    // The peer learns that the server is going away (reconnect), not that
                    // the conversation is over.
                    self.ack_go_away(GoAwayReason::Shutdown, cx);
                    return Poll::Ready(Ok(None));
                }
                self.poll_read_timeout(cx, true)
            }
        }
    }

    /// Ack mode's `poll_recv` for the payload alone, in the common case: the next message
    /// whole in the read buffer and nothing else to do (the driver's
    /// [`recv_buffered_payload`](AckDriver::recv_buffered_payload)). Small and inlined, as
    /// plain mode's `poll_frame` is; `None` whenever [`poll_recv_ack`](Self::poll_recv_ack)
    /// has more to do (the first message, a closed stream, anything the driver's fast path
    /// leaves to it). No byte is read here, so there is no read to account for.
    #[inline]
    pub(super) fn poll_recv_ack_buffered(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Option<Poll<Result<Option<Bytes>, ServerError>>> {
        if self.read_closed || self.recv_ended {
            return None;
        }
        let a = self.ack.as_deref_mut()?;
        if !a.session_noted || a.driver.buffered_bytes() == 0 {
            return None;
        }
        // One unit of the cooperative budget per message, as in `poll_recv_ack`.
        let coop = match tokio::task::coop::poll_proceed(cx) {
            Poll::Ready(coop) => coop,
            Poll::Pending => return Some(Poll::Pending),
        };
        let (payload, redelivered) = a.driver.recv_buffered_payload()?;
        coop.made_progress();
        a.last_redelivered = redelivered;
        // Nothing else is in the inbox (the fast path takes from the read buffer only).
        let drained = a.driver.buffered_bytes() == 0;
        self.idle_since = None;
        self.frame_since = None;
        self.frames_in_unpublished += 1;
        if drained || self.frames_in_unpublished >= super::FRAMES_IN_BATCH {
            self.publish_frames_in();
        }
        Some(Poll::Ready(Ok(Some(payload))))
    }

    /// Ack mode's `try_recv`: a message already buffered, without I/O.
    pub(super) fn try_recv_ack(&mut self) -> Result<Option<Delivery>, ServerError> {
        if self.read_closed || self.recv_ended {
            return Ok(None);
        }
        // The task's cooperative budget, as in `recv` (no waker to register here).
        let mut no_waker = Context::from_waker(Waker::noop());
        let Poll::Ready(coop) = tokio::task::coop::poll_proceed(&mut no_waker) else {
            return Ok(None);
        };
        let Some(a) = self.ack.as_deref_mut() else {
            return Ok(None);
        };
        match a.driver.try_recv() {
            Ok(Some(d)) => {
                coop.made_progress();
                a.last_redelivered = d.redelivered;
                if !a.session_noted {
                    a.session_noted = true;
                    note_session(a);
                }
                self.idle_since = None;
                self.frame_since = None;
                self.frames_in_unpublished += 1;
                Ok(Some(d))
            }
            Ok(None) => {
                self.publish_frames_in();
                Ok(None)
            }
            Err(e) => match self.ack_recv_failed::<Delivery>(e) {
                Poll::Ready(Err(err)) => Err(err),
                _ => Ok(None),
            },
        }
    }

    /// Ack mode: a sender waits with the write clock running; acks or written bytes restart
    /// it (the peer is taking what this side sends).
    fn poll_ack_write_timeout<T>(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, ServerError>> {
        self.ack_note_reads();
        if let Some(a) = self.ack.as_deref_mut() {
            let acked = a.driver.acked_through();
            let written = a.driver.get_ref().written;
            if acked != a.acked_seen || written != a.written_seen {
                a.acked_seen = acked;
                a.written_seen = written;
                self.write_since = None;
            }
        }
        ready!(self.poll_write_timeout(cx))?;
        Poll::Pending
    }

    /// Ack mode's `poll_ready`: room in the peer's window (reading its ACKs meanwhile).
    pub(super) fn poll_ack_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        let Some(a) = self.ack.as_deref_mut() else {
            return Poll::Ready(Ok(()));
        };
        match a.driver.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                self.write_since = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.ack_send_failed(e))),
            // The peer's window stays full: that is the write timeout's business.
            Poll::Pending => self.poll_ack_write_timeout(cx),
        }
    }

    /// Ack mode: queues one message (copied: the handler keeps its buffer).
    pub(super) fn queue_ack(&mut self, frame: &[u8]) -> Result<(), ServerError> {
        let Some(a) = self.ack.as_deref_mut() else {
            return Ok(());
        };
        match a.driver.start_send(Bytes::copy_from_slice(frame), false) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.ack_send_failed(e)),
        }
    }

    /// Ack mode's flush: writes what is queued (and pending ACKs); does not wait for ACKs.
    pub(super) fn poll_ack_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        self.publish_frames_out();
        let Some(a) = self.ack.as_deref_mut() else {
            return Poll::Ready(Ok(()));
        };
        match a.driver.poll_write(cx) {
            Poll::Ready(Ok(())) => {
                self.write_since = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.ack_send_failed(e))),
            Poll::Pending => self.poll_ack_write_timeout(cx),
        }
    }

    /// Ack mode's `wait_acked` after the flush: every message sent acknowledged.
    pub(super) fn poll_ack_all_acked(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), ServerError>> {
        let Some(a) = self.ack.as_deref_mut() else {
            return Poll::Ready(Ok(()));
        };
        match a.driver.poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.write_since = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.ack_send_failed(e))),
            Poll::Pending => self.poll_ack_write_timeout(cx),
        }
    }

    /// Ack mode's close: writes what is queued, then shuts the sending direction.
    pub(super) fn poll_ack_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        let Some(a) = self.ack.as_deref_mut() else {
            return Poll::Ready(Ok(()));
        };
        match a.driver.poll_shutdown_write(cx) {
            Poll::Ready(Ok(())) => {
                self.write_closed = true;
                self.write_closed_why = Some(super::closed_by_handler());
                self.write_timer = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                let err = self.ack_send_failed(e);
                self.write_closed = true;
                self.write_closed_why = Some(EarlierError::from(&err));
                Poll::Ready(Err(err))
            }
            Poll::Pending => self.poll_ack_write_timeout(cx),
        }
    }

    /// Ack mode: counts every message handed to the handler as done; the ACK goes out now if
    /// the socket takes it.
    pub(super) fn ack_release_now(&mut self) {
        if let Some(a) = self.ack_conn() {
            let mut cx = Context::from_waker(Waker::noop());
            let _ = a.driver.poll_release(&mut cx);
        }
    }

    /// Ack mode: tells the peer this side is going away (it should reconnect), written now
    /// if the socket takes it.
    pub(super) fn ack_go_away(&mut self, reason: GoAwayReason, cx: &mut Context<'_>) {
        if let Some(a) = self.ack_conn() {
            a.driver.go_away(reason);
            let _ = a.driver.poll_write(cx);
        }
    }

    /// Ack mode, before the handler runs: reads the peer's HELLO, settles its session (resumed
    /// from the server's sessions, taken over from a live connection, or new) and writes the
    /// server's HELLO, so that the peer's handshake never waits for the handler's first call.
    ///
    /// Bounded as a frame read by the handler is: by the idle timeout until the HELLO's first
    /// byte, then by the stall timeout (with the minimum receive rate), which also bounds a
    /// takeover wait; and by shutdown. After either (or an error) the handler gets the
    /// connection as it is, and its first `recv` reports the timeout (or error).
    pub(crate) async fn ack_accept(&mut self) {
        let shutdown = self.server.connection_view().shutdown.clone();
        let accept = std::future::poll_fn(|cx| {
            let Some(a) = self.ack.as_deref_mut() else {
                return Poll::Ready(());
            };
            if a.driver.poll_accept(cx).is_ready() {
                return Poll::Ready(());
            }
            self.ack_note_reads();
            self.poll_accept_deadline(cx)
        });
        tokio::select! {
            () = accept => {}
            () = shutdown.cancelled() => {}
        }
        self.ack_note_reads();
    }

    /// Ack mode: writes the HELLO if the socket takes it right away.
    pub(super) fn ack_start(&mut self) {
        if let Some(a) = self.ack_conn() {
            let mut cx = Context::from_waker(Waker::noop());
            let _ = a.driver.poll_write(&mut cx);
        }
    }
}
