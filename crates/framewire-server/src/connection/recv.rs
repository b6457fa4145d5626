//! The handler's receive API: `recv` and its typed, `try_`, poll, delivery (with id) and
//! run forms, and the `Stream` item they share. In plain mode they take frames from the read
//! path (`read.rs`); in ack mode they go through `ack.rs`.

use std::future::poll_fn;
use std::task::{ready, Context, Poll, Waker};

use bytes::Bytes;
use framewire_codec::ack::Delivery;
use framewire_codec::typed::{self, Bincode, Format};
use framewire_codec::FrameRun;
use serde::de::DeserializeOwned;

use super::{Connection, FRAMES_IN_BATCH};
use crate::error::ServerError;

/// Most frames one [`FrameRun`] from `recv_run` holds.
const RUN_MAX_FRAMES: usize = 128;

/// Frames of a run per unit of the task's cooperative budget: a handler forwarding runs does
/// about as much work per unit as one handling a frame (the per-frame costs a run saves are
/// most of a small frame's), and a flood of zero-length frames still yields within a turn.
const RUN_FRAMES_PER_UNIT: usize = 16;

impl<S> Connection<S> {
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
    pub(super) fn take_run(&mut self, cx: &mut Context<'_>) -> Option<Poll<FrameRun>> {
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
        if let Some(polled) = self.poll_recv_ack_buffered(cx) {
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
}
