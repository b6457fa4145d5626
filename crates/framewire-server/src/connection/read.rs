//! The plain-mode read path under the receive API: decoding frames from the read buffer
//! ([`FrameReader`]), reading the socket, the `frames_in` counter, graceful shutdown between
//! frames, and the idle and stall timeouts (with the minimum receive rate's allowance).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use framewire_codec::ack::GoAwayReason;
#[cfg(doc)]
use framewire_codec::FrameReader;
use tokio::time::Instant;

use super::{poll_deadline, Connection, FRAMES_IN_BATCH};
use crate::error::ServerError;
use crate::stats::bump;

impl<S> Connection<S> {
    /// The frame layer: decodes the next frame, reading as needed. With `for_recv` (the
    /// handler waits in `recv`, not a sender reading ACKs), a requested shutdown ends the
    /// stream between frames and the idle clock runs.
    ///
    /// The common case, a whole frame already buffered, is tried here, small and inlined, so
    /// the frame reaches the handler without a trip through memory per call level (see
    /// `FrameCodec::decode_buffered`); everything else is `poll_frame_slow`.
    #[inline]
    pub(super) fn poll_frame(
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
    pub(super) fn poll_frame_slow<const RUN: bool>(
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
    pub(super) fn count_frame_in(&mut self) {
        self.frames_in_unpublished += 1;
        if self.input.is_empty() || self.frames_in_unpublished >= FRAMES_IN_BATCH {
            self.publish_frames_in();
        }
    }

    /// Adds the frames received since the last call to the server's `frames_in` counter.
    pub(super) fn publish_frames_in(&mut self) {
        if self.frames_in_unpublished > 0 {
            bump(
                &self.server.connection_view().counters.frames_in,
                std::mem::take(&mut self.frames_in_unpublished),
            );
        }
    }

    /// Adds the frames queued since the last call to the server's `frames_out` counter.
    pub(super) fn publish_frames_out(&mut self) {
        if self.frames_out_unpublished > 0 {
            bump(
                &self.server.connection_view().counters.frames_out,
                std::mem::take(&mut self.frames_out_unpublished),
            );
        }
    }

    pub(super) fn between_frames(&self) -> bool {
        match &self.ack {
            // A HELLO whose session is not answered yet (a takeover wait) is a handshake in
            // progress: bounded by the stall timeout, as a frame is.
            Some(a) => a.driver.is_between_frames() && a.driver.state().session_request().is_none(),
            None => self.input.is_between_frames(&self.codec),
        }
    }

    /// Bytes read and not yet taken as frames.
    pub(super) fn buffered_in(&self) -> usize {
        match &self.ack {
            Some(a) => a.driver.buffered_bytes(),
            None => self.input.len(),
        }
    }

    pub(super) fn poll_shutdown_requested(&mut self, cx: &mut Context<'_>) -> bool {
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
    pub(super) fn poll_read_timeout<T>(
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
    pub(super) fn read_deadline(
        &mut self,
        for_recv: bool,
    ) -> Option<(Instant, Duration, ServerError)> {
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
    pub(super) fn poll_accept_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
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
    pub(super) fn account_stall(&mut self, received: usize) {
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

    pub(super) fn read_failed(&mut self, err: ServerError) -> ServerError {
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
}
