//! The plain-mode write path under the send API: the write queue ([`FrameWriter`]), room
//! before a frame is queued, writing it to the socket (vectored for large payloads), the
//! `frames_out` and `bytes_out` counters, the write timeout, and closing the sending side.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use framewire_codec::{Cause, EarlierError, FrameCodec, FrameError, FrameWriter};
use tokio::io::AsyncWrite;
use tokio::time::Instant;

use super::{closed_by_handler, poll_deadline, Connection};
use crate::error::ServerError;
use crate::stats::bump;

impl<S> Connection<S> {
    pub(super) fn write_failed(&mut self, err: ServerError) -> ServerError {
        self.write_closed = true;
        self.write_closed_why = Some(EarlierError::from(&err));
        self.out.clear();
        self.write_timer = None;
        self.count_and_log(&err, "send");
        err
    }

    pub(super) fn closed_for_sending(&self) -> ServerError {
        ServerError::Closed {
            earlier: self.write_closed_why.clone().unwrap_or_else(|| {
                EarlierError::new("the connection was closed", Cause::Transport, false)
            }),
        }
    }

    pub(super) fn poll_send_ready(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), ServerError>> {
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

    pub(super) fn queue(&mut self, frame: &[u8]) -> Result<(), ServerError> {
        if self.ack.is_none() {
            return self.feed_plain(1, |out, codec| out.feed(codec, frame));
        }
        if self.write_closed {
            return Err(self.closed_for_sending());
        }
        self.queue_ack(frame)?;
        self.frames_out_unpublished += 1;
        Ok(())
    }

    /// Plain mode: queues `frames` frames with `feed` (the writer's `feed`, `feed_bytes` or
    /// `feed_run`; room was checked), unless sending is over. The frames are added to the
    /// shared `frames_out` counter when the buffer is written (or the connection dropped):
    /// one atomic add per write, not per frame. On an error nothing was queued (the stream
    /// is still in sync); the error is counted and returned.
    #[inline]
    pub(super) fn feed_plain(
        &mut self,
        frames: u64,
        feed: impl FnOnce(&mut FrameWriter, &FrameCodec) -> Result<(), FrameError>,
    ) -> Result<(), ServerError> {
        if self.write_closed {
            return Err(self.closed_for_sending());
        }
        match feed(&mut self.out, &self.codec) {
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

    /// Writes the queued bytes.
    pub(super) fn poll_write_buf(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
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
    pub(super) fn account_written(&mut self) {
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
    pub(super) fn release_write_buf_if_idle(&mut self) {
        if !self.input.holds_memory() {
            self.out.release();
        }
    }

    pub(super) fn poll_write_timeout(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), ServerError>> {
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
    pub(super) fn write_or_queue(
        &mut self,
        payload: &[u8],
        cx: &mut Context<'_>,
    ) -> Result<(), ServerError> {
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

    pub(super) fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
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

    pub(super) fn poll_close_write(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), ServerError>> {
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
