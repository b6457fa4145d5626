//! The receiving half: [`AckReceiver`], which polls the connection's receiving side itself
//! (a message is acknowledged only once taken here), after the messages carried over from a
//! connection that ended.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use framewire_codec::ack::Delivery;
use futures_util::Stream;

use super::end::{classify, Outcome};
use super::shared::Shared;
#[cfg(doc)]
use super::{AckClient, AckSender};
use crate::ClientError;

/// The receiving half of an [`AckClient`]. Also a `Stream` of `Result<Delivery, ClientError>`.
///
/// Receive in its own task while another sends, as in [`AckSender`]'s example: an echo
/// server's replies fill the window this client granted unless something takes them.
#[derive(Debug)]
pub struct AckReceiver {
    pub(super) shared: Arc<Shared>,
    /// The stream yielded its end (or its error) already.
    pub(super) ended: bool,
    /// The waker this half last put in `Inbox::recv_waker` (see `register`).
    pub(super) registered: Option<Waker>,
    /// What this half last stored in `Shared::receiving`.
    pub(super) waiting: bool,
}

impl AckReceiver {
    /// The next message from the peer, with its sequence number and redelivery flag. The
    /// message is acknowledged to the peer once taken here: `recv` reads the connection
    /// itself, so an ack never covers a message the application has not asked for. While the
    /// client reconnects, `recv` waits for the new connection. `Ok(None)` when the connection
    /// ended cleanly: the peer closed with nothing unacknowledged, or, after
    /// [`AckSender::close`], the peer closed its side too (messages the peer sends after that
    /// close are still delivered, see there).
    ///
    /// # Errors
    ///
    /// [`ClientError::GaveUp`] / [`ClientError::Protocol`] when the client stopped;
    /// [`ClientError::Stopped`] if, after [`AckSender::close`], the connection failed before
    /// the peer closed its side (the peer may not have sent everything).
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: a message that arrives after cancellation waits for the next call.
    pub async fn recv(&mut self) -> Result<Option<Delivery>, ClientError> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Delivery>, ClientError>> {
        let r = self.poll_recv_inner(cx);
        let waiting = r.is_pending();
        if waiting != self.waiting {
            self.waiting = waiting;
            self.shared.receiving.store(waiting, Ordering::SeqCst);
        }
        r
    }

    /// Registers `cx`'s waker in the inbox, where the driver wakes the receiving half when
    /// what it waits for changes (a connection installed, messages carried, the end), unless
    /// it is there already (the common case: one atomic load, no lock) or a no-op (a poll
    /// that does not wait must not displace the waker of one that does).
    fn register(&mut self, cx: &Context<'_>) {
        let waker = cx.waker();
        if waker.will_wake(Waker::noop()) {
            return;
        }
        // Only this half registers, and the driver clears `recv_registered` whenever it takes
        // the waker (to wake it): while the flag is set, the inbox holds `self.registered`.
        // A waker taken just after this check is woken after the change that took it.
        if self.shared.recv_registered.load(Ordering::Acquire)
            && self.registered.as_ref().is_some_and(|w| w.will_wake(waker))
        {
            return;
        }
        let mut inbox = self.shared.inbox();
        inbox.recv_waker = Some(waker.clone());
        self.shared.recv_registered.store(true, Ordering::Release);
        drop(inbox);
        self.registered = Some(waker.clone());
    }

    /// Counts one message taken (only this half writes the counter: no read-modify-write).
    fn count_received(&self) {
        let received = &self.shared.received;
        received.store(received.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    fn poll_recv_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Delivery>, ClientError>> {
        // Register first: a connection installed (or a stop) after the checks below wakes us.
        self.register(cx);
        if self.shared.ended.load(Ordering::Acquire) {
            if let Some(end) = &self.shared.inbox().end {
                return Poll::Ready(end.recv_result());
            }
        }
        if self.shared.carried.load(Ordering::Acquire) {
            let carried = {
                let mut carry = self.shared.carry();
                let d = carry.pop_front();
                if carry.is_empty() {
                    self.shared.carried.store(false, Ordering::Release);
                }
                d.map(|d| (d, carry.is_empty()))
            };
            if let Some((d, now_empty)) = carried {
                self.count_received();
                if now_empty {
                    // The driver waits for this before reconnecting.
                    if let Some(w) = self.shared.inbox().driver_waker.take() {
                        w.wake();
                    }
                }
                return Poll::Ready(Ok(Some(d)));
            }
        }
        let mut slot = self.shared.slot();
        if slot.reported.is_some() {
            // The driver is about to act on what ended this connection.
            return Poll::Pending;
        }
        let Some(conn) = slot.conn.as_mut() else {
            // Reconnecting.
            return Poll::Pending;
        };
        let polled = conn.poll_recv(cx);
        // The connection's receiving side writes nothing (see `Driver::install`): an ACK that
        // became due waits for the driver's next round, which writes it with whatever the
        // sending half queued meanwhile. Wake the driver for it (once per round, as a send
        // does), marked as a wake for an ACK (see `Slot::ack_kick`).
        if conn.wants_write() && !slot.kicked {
            slot.kicked = true;
            slot.ack_kick = true;
            self.shared.driver_task.wake();
        }
        let outcome = match polled {
            Poll::Ready(Ok(Some(delivery))) => {
                drop(slot);
                self.count_received();
                return Poll::Ready(Ok(Some(delivery)));
            }
            Poll::Ready(Err(e)) => classify(e),
            Poll::Ready(Ok(None)) => Outcome::EndOfStream,
            Poll::Pending => return Poll::Pending,
        };
        slot.reported = Some(outcome);
        drop(slot);
        if let Some(w) = self.shared.inbox().driver_waker.take() {
            w.wake();
        }
        Poll::Pending
    }
}

impl Stream for AckReceiver {
    type Item = Result<Delivery, ClientError>;

    /// Yields messages until the end; an error is yielded once, then the stream ends.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let item = std::task::ready!(this.poll_recv(cx)).transpose();
        if !matches!(item, Some(Ok(_))) {
            this.ended = true;
        }
        Poll::Ready(item)
    }
}

impl Drop for AckReceiver {
    fn drop(&mut self) {
        let mut inbox = self.shared.inbox();
        inbox.receiver_dropped = true;
        if let Some(w) = inbox.driver_waker.take() {
            w.wake();
        }
    }
}
