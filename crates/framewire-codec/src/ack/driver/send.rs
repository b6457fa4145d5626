//! The sending side: the handshake, queueing messages (`start_send`), waiting for window
//! room, writing, waiting for acks, and closing the sending direction; with the internals
//! that encode the engine's frames into the write buffer and write it.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{AckDriver, Side};
use crate::ack::session_hub::Attached;
use crate::ack::wire::{AckFrame, Hello, DATA_HEADER_LEN};
use crate::ack::AckError;
use crate::FrameError;

impl<T> AckDriver<T> {
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
    /// [`try_start_send`](Self::try_start_send) (not a redelivery) for the messages at the
    /// front of `payloads`, in order, each popped once queued, while `admit(seq, len)` agrees
    /// (it is told the seq the message gets; once it returned `true` the message is queued).
    /// Stops at the first message `try_start_send` would refuse (window full, too long, the
    /// driver failed or closed) or `admit` refuses, left at the front: a caller that must know
    /// why calls `try_start_send` with it. Returns how many were queued. For a sender with
    /// many messages at hand: the checks that do not depend on the message are made once.
    pub fn start_send_from(
        &mut self,
        payloads: &mut VecDeque<Bytes>,
        admit: impl FnMut(u64, usize) -> bool,
    ) -> usize {
        if self.failed.is_some()
            || self.write_closed
            || self.sessions.as_ref().is_some_and(Attached::is_superseded)
        {
            return 0;
        }
        let ours = self.codec.max_frame_len().saturating_sub(DATA_HEADER_LEN);
        self.state.send_from(payloads, ours, admit)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AckDriver<T> {
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

    pub(super) fn poll_ready_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
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

    pub(super) fn poll_all_acked_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), AckError>> {
        self.progress(cx, Side::Send)?;
        if self.state.all_acked() && !self.state.has_transmit() && self.out.is_empty() {
            Poll::Ready(Ok(()))
        } else if self.read_closed && !self.state.all_acked() {
            Poll::Ready(Err(self.closed_error()))
        } else {
            Poll::Pending
        }
    }

    /// Encodes the engine's frames into the write buffer, up to the high-water mark.
    pub(super) fn encode(&mut self) -> Result<(), AckError> {
        if self.write_closed {
            // Nothing more can be written: acks for messages taken from now on are dropped
            // (the peer gets those messages back as unacknowledged).
            while self.state.poll_transmit_ref().is_some() {}
            return Ok(());
        }
        while self.out.len() < self.high_water {
            // A stream's DATA frames in one pass over the engine's queue, up to the
            // high-water mark; then whatever else is due (and the next round of DATA).
            let (out, codec, high_water) = (&mut self.out, &self.codec, self.high_water);
            let mut failed = None;
            self.state.transmit_data_with(|seq, redelivery, payload| {
                if out.len() >= high_water {
                    return false;
                }
                let frame = AckFrame::Data {
                    seq,
                    redelivery,
                    payload,
                };
                // A frame the writer refuses is not counted as transmitted (`poll_transmit`
                // counts it first): the same to the peer, as the driver fails either way.
                out.push(codec, frame).map_err(|e| failed = Some(e)).is_ok()
            });
            if let Some(e) = failed {
                return Err(e.into());
            }
            if self.out.len() >= self.high_water {
                break;
            }
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
    pub(super) fn poll_write_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AckError>> {
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
}
