//! The receiving side: taking messages (`poll_recv`, `try_recv`, the fast path over whole
//! frames in the read buffer), counting them as done and acknowledging them (`release`), and
//! the read path that fills the read buffer and parses frames into the engine.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{AckDriver, Side};
#[cfg(doc)]
use crate::ack::engine::AckState;
use crate::ack::engine::Delivery;
use crate::ack::session_hub::Attached;
use crate::ack::wire::DATA_HEADER_LEN;
use crate::ack::AckError;
use crate::{EarlierError, FrameError};

/// Unacknowledged bytes from which a quiet connection keeps its write buffer (16 KiB): a
/// stream in flight between two ACKs, not an idle connection whose last reply is unacked.
const KEEP_WRITE_BUFFER_IN_FLIGHT: u64 = 16 * 1024;

impl<T> AckDriver<T> {
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

    pub(super) fn try_recv_inner(&mut self) -> Result<Option<Delivery>, AckError> {
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

    /// The messages received but not yet returned, taken out (e.g. to deliver them after the
    /// connection is gone).
    pub fn take_buffered(&mut self) -> Vec<Delivery> {
        self.parse_buffered();
        self.inbox.drain(..).collect()
    }

    /// Moves every whole frame left in the read buffer through the engine (DATA into the
    /// inbox): the receiving side parses lazily, so frames may wait there. Stops at the first
    /// error (the connection is being taken apart; the frame stays unparsed).
    pub(super) fn parse_buffered(&mut self) {
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

    pub(super) fn take_delivery(&mut self) -> Option<Delivery> {
        let d = self.inbox.pop_front()?;
        self.yielded = d.seq;
        Some(d)
    }

    /// The next whole frame in the read buffer, if any (at end of stream, a truncated frame
    /// is an error).
    pub(super) fn decode(&mut self) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = self.input.next_buffered(&mut self.codec) {
            return Ok(Some(frame));
        }
        self.input.next_frame_or_end(&mut self.codec, self.eof)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AckDriver<T> {
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
    pub(super) fn recv_fast(&mut self) -> Option<Delivery> {
        let (seq, payload, redelivered) = self.recv_fast_parts()?;
        Some(Delivery {
            session: self.state.delivery_session(),
            seq,
            payload,
            redelivered,
        })
    }

    /// [`recv_fast`](Self::recv_fast)'s delivery in parts: seq, payload, redelivery flag.
    #[inline]
    fn recv_fast_parts(&mut self) -> Option<(u64, Bytes, bool)> {
        if self.eof || !self.inbox.is_empty() {
            return None;
        }
        let (len, head) = self.input.peek_buffered::<DATA_HEADER_LEN>(&self.codec)?;
        let (seq, redelivered) = self.state.take_and_receive(self.yielded, head, len)?;
        self.yielded = seq;
        Some((
            seq,
            self.input.take_peeked(len, DATA_HEADER_LEN),
            redelivered,
        ))
    }

    /// [`poll_recv`](Self::poll_recv)'s common case for a caller that wants the payload alone
    /// (and its redelivery flag): the previous message counts as done and the next one is
    /// taken whole from the read buffer, with no I/O unless it was the last one buffered and
    /// that made an ACK due. `None`, with nothing changed, whenever anything else would
    /// happen (a failure to report, a session to resolve, a frame not whole, an ACK due,
    /// anything but an in-order DATA frame): `poll_recv` then does the rest.
    #[inline]
    pub fn recv_buffered_payload(&mut self) -> Option<(Bytes, bool)> {
        if self.failed.is_some()
            || self.pending.is_some()
            || self.sessions.as_ref().is_some_and(Attached::is_superseded)
        {
            return None;
        }
        let (_, payload, redelivered) = self.recv_fast_parts()?;
        if self.input.is_empty() {
            // That was the last one buffered (see `after_take`).
            self.with_io_cx(|this, cx| this.after_take(cx));
        }
        Some((payload, redelivered))
    }

    /// The next message if one is buffered (in the inbox, or whole in the read buffer),
    /// after counting the previous one as done; `None` without touching anything otherwise.
    pub(super) fn recv_buffered(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Result<Option<Delivery>, AckError> {
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
    pub(super) fn next_buffered(&mut self) -> Result<Option<Delivery>, AckError> {
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

    pub(super) fn poll_recv_inner(
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

    /// Reads every frame the transport has ready into the engine (DATA into the inbox).
    /// Ready on end of stream; Pending (waker registered) when nothing more is ready.
    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        side: Side,
    ) -> Poll<Result<(), AckError>> {
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
            // While the buffer is released, a transport that can tell (see `wait_readable`)
            // is asked first: a poll that finds nothing then allocates nothing.
            let probe = match self.read_ready {
                Some(ready) if !self.input.holds_memory() => ready(&self.io, cx),
                _ => Poll::Ready(Ok(())),
            };
            // One read, sized and grown by the one read path's policy (see `FrameReader`).
            let filled = match probe {
                Poll::Ready(Ok(())) => {
                    self.input
                        .poll_fill(&self.codec, Pin::new(&mut self.io), cx)
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
            match filled {
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(_)) => read_any = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(FrameError::from(e).into())),
                Poll::Pending => {
                    if !self.input.holds_memory()
                        && self.out.is_empty()
                        && self.state.in_flight_bytes() < KEEP_WRITE_BUFFER_IN_FLIGHT
                    {
                        // The peer is quiet, no frame is half-read and little (if anything)
                        // sent waits for its ACK: the reader gave its buffer back (keeping the
                        // read size it learned), so the write buffer goes too and an idle
                        // ack-mode connection holds none (as the plain server's connections
                        // do). The next read allocates again: once per burst. A sender with a
                        // stream in flight keeps its buffer: between two ACKs it is not idle,
                        // and growing the buffer again (by reallocation, copying what is
                        // queued) cost the streaming client ~90 instructions per message.
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

    /// A message was just handed out. If it was the last one buffered, acknowledge those the
    /// application is done with now (the ones before it), not at its next poll: it may not
    /// poll again soon. Written if the transport takes it without waiting (unless the
    /// receiving side's writes are deferred); an error is reported by the next call.
    pub(super) fn after_take(&mut self, cx: &mut Context<'_>) {
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
    pub(super) fn release_yielded(&mut self, cx: &mut Context<'_>) -> Result<(), AckError> {
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
