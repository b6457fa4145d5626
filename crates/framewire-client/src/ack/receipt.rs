//! [`Receipt`]: a message id checked against the client's shared acknowledged-through
//! watermark (no channel and no allocation per message).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};

use framewire_codec::ack::{AckError, MessageId};

use super::shared::Shared;
#[cfg(doc)]
use super::AckSender;
use crate::ClientError;

/// A delivery receipt: resolves with the message's id once the peer's application took the
/// message (ack mode).
///
/// Dropping a receipt does not cancel anything: the message is still delivered, and
/// [`AckSender::flush`] still waits for it.
///
/// ```no_run
/// use framewire_client::{Client, ClientError};
///
/// # async fn run() -> Result<(), ClientError> {
/// let client = Client::builder().connect_ack("127.0.0.1:9999").await?;
/// let receipt = client.send("order 17").await?; // in the window: on its way
/// let id = receipt.id(); // known at once, the same on every redelivery
/// let acked = receipt.await?; // the server's application took it
/// assert_eq!(acked, id);
/// client.close().await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`ClientError::Undelivered`] if the client stopped (the reconnect policy gave up, the peer
/// broke the protocol) before the message was acknowledged; the message itself is then among
/// the `unacked` of the [`ClientError::GaveUp`] / [`ClientError::Protocol`] error returned by
/// `flush`, `close` and `recv`.
///
/// # Cancellation safety
///
/// Cancellation safe: awaiting it again (it is `Unpin`) continues where it left off.
pub struct Receipt {
    id: u64,
    /// The receipt is the id checked against the client's acknowledged-through watermark:
    /// no channel and no allocation per message.
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receipt").field("id", &self.id).finish()
    }
}

impl Receipt {
    /// The receipt of the message accepted as `id`.
    pub(super) fn new(id: u64, shared: Arc<Shared>) -> Receipt {
        Receipt { id, shared }
    }

    /// The message's stable id, as the peer's application sees it
    /// ([`Delivery::id`](framewire_codec::ack::Delivery::id)): the client's session and the
    /// message's sequence number in it (1 for the first message accepted by this client, then
    /// 2, 3, ...), the same on every redelivery.
    ///
    /// With a server that does not keep sessions the session part is all zero and the seq
    /// counts this client's messages (the wire numbers restart per connection then). A
    /// message refused as too long by a server reached after a reconnect (one with a smaller
    /// frame limit) takes no sequence number: the messages accepted after it move down by
    /// one, so their ids are final once their receipts resolved.
    pub fn id(&self) -> MessageId {
        let session = *self
            .shared
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if session == [0; 16] {
            return MessageId {
                session,
                seq: self.id,
            };
        }
        let refused = self
            .shared
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(id, ..)| *id < self.id)
            .count() as u64;
        MessageId {
            session,
            seq: self.id - refused,
        }
    }

    fn check(&self) -> Option<Result<MessageId, ClientError>> {
        let shared = &self.shared;
        let settled = shared.acked_id.load(Ordering::Acquire) >= self.id;
        let stopped = settled || shared.inbox().end.is_some();
        if stopped {
            let refused = shared
                .refused
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(&(_, len, max)) = refused.iter().find(|(id, ..)| *id == self.id) {
                return Some(Err(ClientError::Ack(AckError::PayloadTooLong { len, max })));
            }
        }
        if settled {
            return Some(Ok(self.id()));
        }
        let inbox = shared.inbox();
        let end = inbox.end.as_ref()?;
        Some(Err(ClientError::Undelivered {
            id: self.id,
            reason: end.reason(),
        }))
    }
}

impl Future for Receipt {
    type Output = Result<MessageId, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(r) = this.check() {
            return Poll::Ready(r);
        }
        this.shared
            .receipt_wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(cx.waker().clone());
        // The watermark may have moved (or the client stopped) before the registration.
        match this.check() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}
