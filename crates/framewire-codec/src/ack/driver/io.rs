//! The driver's two I/O helpers: [`Wakers`], the one waker the driver polls the transport,
//! the timer and the session hub with (waking whichever of the receiving and the sending
//! caller is registered), and [`WriteBuf`], the write path over framewire's one write queue.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
#[cfg(doc)]
use std::task::Waker;
use std::task::{ready, Context, Poll, Wake};

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use tokio::io::AsyncWrite;

use super::Side;
use crate::ack::wire::{data_header, AckFrame};
use crate::{FrameCodec, FrameError, FrameWriter, ZERO_COPY_MIN};

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
pub(super) struct Wakers {
    pub(super) recv: AtomicWaker,
    pub(super) send: AtomicWaker,
}

impl Wakers {
    pub(super) fn slot(&self, side: Side) -> &AtomicWaker {
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
pub(super) struct WriteBuf {
    pub(super) w: FrameWriter,
}

impl WriteBuf {
    pub(super) fn from_bytes(buf: BytesMut) -> WriteBuf {
        let mut w = FrameWriter::new();
        *w.buffer_mut() = buf;
        WriteBuf { w }
    }

    #[inline]
    pub(super) fn len(&self) -> usize {
        self.w.len()
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.w.is_empty()
    }

    /// Queues one frame: length prefix, then the frame (ack header and payload).
    #[inline]
    pub(super) fn push(
        &mut self,
        codec: &FrameCodec,
        frame: AckFrame<&Bytes>,
    ) -> Result<(), FrameError> {
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
    pub(super) fn release(&mut self) {
        let _ = self.w.take_written();
        self.w.release();
    }

    /// Writes everything queued, then flushes the transport.
    pub(super) fn poll_drain<T: AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.w.poll_drain(Pin::new(&mut *io), cx))?;
        Pin::new(io).poll_flush(cx)
    }

    /// The bytes queued and not yet written.
    pub(super) fn into_inner(mut self) -> BytesMut {
        self.w.take_queued()
    }
}
