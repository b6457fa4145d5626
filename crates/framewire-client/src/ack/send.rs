//! The sending half, [`AckSender`]: `send`/`feed`/`feed_all` with their window check and the
//! direct hand-over to the engine, `flush`, the half-close. Its receipts: `receipt.rs`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use framewire_codec::ack::AckError;
use framewire_codec::{Cause, EarlierError};
use tokio::sync::{mpsc, oneshot};

use super::receipt::Receipt;
use super::shared::{Cmd, SendCmd, Shared, Slot, Tracked};
use super::task_ended;
#[cfg(doc)]
use super::{AckClient, AckReceiver};
use crate::{ClientError, Endpoint};

/// The sending half of an [`AckClient`]. Cheap to clone; clones share the connection and the
/// window. Together with its [`AckReceiver`], from [`AckClient::split`]:
///
/// ```no_run
/// use framewire_client::{Client, ClientError};
///
/// # async fn run() -> Result<(), ClientError> {
/// let client = Client::builder().ack_window(64).connect_ack("127.0.0.1:9999").await?;
/// let (tx, mut rx) = client.split();
/// let receiver = tokio::spawn(async move {
///     // Each delivery is acknowledged when `recv` is called again: done with it.
///     while let Some(delivery) = rx.recv().await? {
///         println!("{}: {} bytes", delivery.seq, delivery.payload.len());
///     }
///     Ok::<_, ClientError>(())
/// });
/// for i in 0..100 {
///     tx.send(format!("message {i}")).await?; // waits while the window is full
/// }
/// tx.flush().await?; // all 100 acknowledged by the server's application
/// tx.close().await?;
/// receiver.await.expect("receiver task")?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AckSender {
    pub(super) cmds: mpsc::UnboundedSender<Cmd>,
    pub(super) shared: Arc<Shared>,
    pub(super) endpoint: Endpoint,
}

impl AckSender {
    /// Hands one message to the connection and returns once it fits in the peer's window:
    /// with `window` messages unacknowledged this waits for acks (backpressure), also while
    /// reconnecting. From then on the client owns the message: it is delivered, even across
    /// reconnects, unless the policy gives up, in which case it is handed back in
    /// [`ClientError::GaveUp`]. The returned [`Receipt`] resolves when the peer's application
    /// took it. Writing happens in the background; many sends in a row go out in few writes.
    ///
    /// # Errors
    ///
    /// [`ClientError::Ack`] with `PayloadTooLong` if the message exceeds the peer's maximum
    /// frame length (nothing was sent, the connection is unaffected);
    /// [`ClientError::NotSent`] (carrying the payload back) if the client has stopped.
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: if cancelled (while waiting for room), the message was not sent.
    ///
    /// # Payload type
    ///
    /// `impl Into<Bytes>`, where [`Client::send`](crate::Client::send) and the server's
    /// `Connection::send` take `impl AsRef<[u8]>`, on purpose: this client keeps every
    /// message until the peer acknowledges it (a reconnect resends it), and a [`Bytes`] is
    /// kept as it is, without a copy. `Bytes`, `Vec<u8>`, `String`, `Box<[u8]>`,
    /// `&'static str` and `&'static [u8]` convert without copying; copy a borrowed slice
    /// once yourself: `send(Bytes::copy_from_slice(buf))`. The plain senders copy into
    /// their write buffer anyway, and take a `Bytes` uncopied through `feed_bytes`.
    pub async fn send(&self, payload: impl Into<Bytes>) -> Result<Receipt, ClientError> {
        // Not an await on a shared async helper: that future would be built and moved (a
        // memcpy) on every call. The wait is a boxed future of its own for the same reason.
        let id = match self.try_accept_checked(payload.into()) {
            Ok(accepted) => accepted?,
            Err(payload) => Box::pin(self.wait_for_room(payload)).await?,
        };
        Ok(Receipt::new(id, Arc::clone(&self.shared)))
    }

    /// [`send`](Self::send) without a [`Receipt`], for a stream of messages whose delivery
    /// is confirmed all at once by [`flush`](Self::flush) (or [`close`](Self::close)): the
    /// same window, backpressure, ordering, resends and errors, and the message is delivered
    /// just the same. A receipt is a counted reference to the client's shared state; not
    /// making one saves an atomic increment and decrement per message (`bench/compare.sh`'s
    /// ack stream feeds).
    ///
    /// ```no_run
    /// use framewire_client::{Client, ClientError};
    ///
    /// # async fn run() -> Result<(), ClientError> {
    /// let client = Client::builder().connect_ack("127.0.0.1:9999").await?;
    /// for i in 0..1_000 {
    ///     client.feed(format!("reading {i}")).await?; // waits while the window is full
    /// }
    /// client.flush().await?; // all 1,000 taken by the server's application
    /// client.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    ///
    /// # Cancellation safety
    ///
    /// As [`send`](Self::send).
    pub async fn feed(&self, payload: impl Into<Bytes>) -> Result<(), ClientError> {
        match self.try_accept_checked(payload.into()) {
            Ok(accepted) => accepted.map(drop),
            Err(payload) => Box::pin(self.wait_for_room(payload)).await.map(drop),
        }
    }

    /// [`feed`](Self::feed) for many messages: each is its own message (its own frame, id
    /// and acknowledgement), accepted in order, with the same window, backpressure and
    /// resends. Returns how many were accepted (all of them, on `Ok`).
    ///
    /// Cheaper per message than calling `feed` in a loop: the messages are taken from the
    /// iterator in runs of up to 64 and each run is handed to the connection under one lock
    /// and with one wake-up of the client's driver, instead of one of each per message. The
    /// iterator runs outside the lock (it may do anything, even use this client), and a run
    /// that meets a full window waits for room, as `feed` does, then goes on.
    ///
    /// ```no_run
    /// use framewire_client::{Client, ClientError};
    ///
    /// # async fn run() -> Result<(), ClientError> {
    /// let client = Client::builder().connect_ack("127.0.0.1:9999").await?;
    /// let readings = (0..1_000).map(|i| format!("reading {i}"));
    /// assert_eq!(client.feed_all(readings).await?, 1_000);
    /// client.flush().await?; // all 1,000 taken by the server's application
    /// client.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`feed`](Self::feed), for the first message that fails: the messages before it
    /// were accepted (and are delivered, as with `feed`), that one and the rest of the
    /// iterator were not (`NotSent` carries the one that failed). The error does not say how
    /// many were accepted: after the client stopped, [`flush`](Self::flush)'s `GaveUp` or
    /// `Protocol` error hands back every accepted message not acknowledged, these included;
    /// a caller that must know the exact point of failure feeds one message at a time.
    ///
    /// # Cancellation safety
    ///
    /// Not cancellation safe as a whole: if cancelled while waiting for room, the messages
    /// taken from the iterator and not yet accepted (at most 64) are dropped unsent. Use
    /// [`feed`](Self::feed) where that matters.
    pub async fn feed_all<I>(&self, payloads: I) -> Result<u64, ClientError>
    where
        I: IntoIterator,
        I::Item: Into<Bytes>,
    {
        const RUN: usize = 64;
        // Fused: once the iterator said it is done, it is not asked again (a run that waited
        // for room would otherwise ask it once more, and an iterator may yield after `None`).
        let mut payloads = payloads.into_iter().fuse();
        // One message (a ping-pong's batch): `feed`'s path, without the run's allocation.
        let Some(first) = payloads.next() else {
            return Ok(0);
        };
        let Some(second) = payloads.next() else {
            return self.feed(first).await.map(|()| 1);
        };
        let room = payloads.size_hint().0.saturating_add(2).min(RUN);
        let mut run: VecDeque<Bytes> = VecDeque::with_capacity(room);
        run.extend([first.into(), second.into()]);
        let mut fed = 0;
        loop {
            let more = RUN - run.len();
            run.extend(payloads.by_ref().take(more).map(Into::into));
            if run.is_empty() {
                return Ok(fed);
            }
            let (accepted, waiting, failed) = self.accept_run(&mut run);
            fed += accepted;
            if let Some(e) = failed {
                return Err(e);
            }
            if let Some(payload) = waiting {
                Box::pin(self.wait_for_room(payload)).await?;
                fed += 1;
            }
        }
    }

    /// One run of [`feed_all`](Self::feed_all) under the slot's lock: accepts messages from
    /// the front of `run` until it is empty, the window is full (that message is handed back
    /// to wait for room) or one fails (its error); wakes the driver once. Returns how many
    /// were accepted.
    fn accept_run(&self, run: &mut VecDeque<Bytes>) -> (u64, Option<Bytes>, Option<ClientError>) {
        let max = self.shared.max_payload.load(Ordering::Relaxed);
        let mut guard = self.shared.slot();
        let mut accepted = self.accept_direct(&mut guard, run, max);
        let mut wake = accepted > 0 && !std::mem::replace(&mut guard.kicked, true);
        let mut waiting = None;
        let mut failed = None;
        while let Some(payload) = run.pop_front() {
            if payload.len() > max {
                let len = payload.len();
                failed = Some(ClientError::Ack(AckError::PayloadTooLong { len, max }));
                break;
            }
            match self.accept_locked(&mut guard, payload) {
                Ok(Ok(_)) => {
                    accepted += 1;
                    wake |= !std::mem::replace(&mut guard.kicked, true);
                }
                Ok(Err(e)) => {
                    failed = Some(e);
                    break;
                }
                Err((payload, settled)) => {
                    wake |= settled;
                    waiting = Some(payload);
                    break;
                }
            }
        }
        drop(guard);
        if wake {
            self.shared.driver_task.wake();
        }
        (accepted, waiting, failed)
    }

    /// The start of [`send`](Self::send) and [`feed`](Self::feed): refuses a payload over the
    /// peer's limit, then [`try_accept`](Self::try_accept). Most sends find room: they try
    /// before registering with `room` (registering and unregistering a waiter takes the
    /// Notify's lock twice).
    fn try_accept_checked(&self, payload: Bytes) -> Result<Result<u64, ClientError>, Bytes> {
        let max = self.shared.max_payload.load(Ordering::Relaxed);
        if payload.len() > max {
            return Ok(Err(ClientError::Ack(AckError::PayloadTooLong {
                len: payload.len(),
                max,
            })));
        }
        self.try_accept(payload)
    }

    /// The rest of [`send`](Self::send) and [`feed`](Self::feed) when the window was full:
    /// waits for room (or for the deadlock check to fire), then queues `payload`.
    async fn wait_for_room(&self, payload: Bytes) -> Result<u64, ClientError> {
        let mut payload = payload;
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Room may have come between the check and the registration.
            payload = match self.try_accept(payload) {
                Ok(accepted) => return accepted,
                Err(payload) => payload,
            };
            let Some(grace) = self.shared.deadlock_grace else {
                notified.await;
                continue;
            };
            let settled = self.shared.settled.load(Ordering::Relaxed);
            if tokio::time::timeout(grace, notified).await.is_err()
                && self.shared.settled.load(Ordering::Relaxed) == settled
            {
                let waited = grace;
                let payload = Some(payload.clone());
                if let Some(e) = self.shared.deadlock("send", payload, waited) {
                    return Err(e);
                }
            }
        }
    }

    /// Accepts `payload` if the window has room (`Ok` with the outcome: the message's id, or
    /// `NotSent` if the client stopped); hands it back if the window is full.
    ///
    /// Under the slot's one lock: with a connection installed and nothing queued before it,
    /// the message goes straight into the connection's engine and is tracked for its receipt
    /// (the driver writes it in its next round, woken once per round, not per message);
    /// otherwise it is queued for the driver, behind the ones already waiting.
    fn try_accept(&self, payload: Bytes) -> Result<Result<u64, ClientError>, Bytes> {
        let mut guard = self.shared.slot();
        let outcome = self.accept_locked(&mut guard, payload);
        let wake = match &outcome {
            Ok(Ok(_)) => !std::mem::replace(&mut guard.kicked, true),
            Ok(Err(_)) => false,
            Err((_, settled)) => *settled,
        };
        drop(guard);
        if wake {
            self.shared.driver_task.wake();
        }
        outcome.map_err(|(payload, _)| payload)
    }

    /// The common case of [`accept_run`](Self::accept_run): a connection installed, nothing
    /// queued before the run, room in both windows. Hands the messages at the front of `run`
    /// straight to the connection's engine, as [`accept_locked`](Self::accept_locked) does
    /// one by one, with its checks that do not depend on the message made once; stops (the
    /// message left at the front, for `accept_locked` to deal with) wherever `accept_locked`
    /// would do anything else: a full window, a message too long, the engine refusing.
    fn accept_direct(&self, slot: &mut Slot, run: &mut VecDeque<Bytes>, max: usize) -> u64 {
        let shared = &*self.shared;
        if !slot.queue.is_empty() || slot.reported.is_some() || self.stopped_reason().is_some() {
            return 0;
        }
        let Slot {
            conn: Some(conn),
            next_id,
            tracked,
            ..
        } = slot
        else {
            return 0;
        };
        let mut accepted = shared.accepted.load(Ordering::Relaxed);
        let mut accepted_bytes = shared.accepted_bytes.load(Ordering::Relaxed);
        // `settled*` move only under the slot's lock, which this sender holds; the windows
        // (set per connection) are read once per run.
        let settled = shared.settled.load(Ordering::Relaxed);
        let settled_bytes = shared.settled_bytes.load(Ordering::Relaxed);
        let window = shared.window.load(Ordering::Relaxed);
        let window_bytes = shared.window_bytes.load(Ordering::Relaxed);
        let queued = conn.start_send_from(run, |seq, len| {
            let full = accepted.saturating_sub(settled) >= window
                || accepted_bytes.saturating_sub(settled_bytes) >= window_bytes;
            if full || len > max {
                return false;
            }
            tracked.push_back(Tracked {
                id: *next_id,
                seq,
                len,
                refused: false,
            });
            *next_id += 1;
            accepted += 1;
            accepted_bytes += len as u64;
            true
        });
        shared.accepted.store(accepted, Ordering::Relaxed);
        shared
            .accepted_bytes
            .store(accepted_bytes, Ordering::Relaxed);
        queued as u64
    }

    /// [`try_accept`](Self::try_accept)'s work under the slot's lock, without waking the
    /// driver: the caller wakes it once (after one message, or after a run of them). A full
    /// window hands the payload back with `true` if acks were settled meanwhile (a flush
    /// waiting for them completes in the driver's round: wake it).
    fn accept_locked(
        &self,
        slot: &mut Slot,
        payload: Bytes,
    ) -> Result<Result<u64, ClientError>, (Bytes, bool)> {
        let shared = &*self.shared;
        if let Some(reason) = self.stopped_reason() {
            return Ok(Err(ClientError::NotSent { payload, reason }));
        }
        // Only senders holding the slot's lock write `accepted*`: plain loads and stores.
        let accepted = shared.accepted.load(Ordering::Relaxed);
        let accepted_bytes = shared.accepted_bytes.load(Ordering::Relaxed);
        // As on the wire: a message is accepted while fewer messages and fewer bytes than the
        // window are unacknowledged, so what the client holds is bounded by its byte cap plus
        // one message, whatever the server grants.
        let full = || {
            accepted.saturating_sub(shared.settled.load(Ordering::Relaxed))
                >= shared.window.load(Ordering::Relaxed)
                || accepted_bytes.saturating_sub(shared.settled_bytes.load(Ordering::Relaxed))
                    >= shared.window_bytes.load(Ordering::Relaxed)
        };
        if full() {
            // The connection may hold acks the driver has not settled yet (the receiving half
            // read them with a reply): settle them here, or a ping-pong at window 1 would wait
            // for the driver's round, which then writes the ACK of the reply alone and the
            // next request in a second write.
            let settled = slot
                .conn
                .as_ref()
                .is_some_and(|conn| shared.settle_tracked(&mut slot.tracked, conn.acked_through()));
            if !settled || full() {
                return Err((payload, settled));
            }
        }
        let len = payload.len();
        let id = slot.next_id;
        slot.next_id += 1;
        shared.accepted.store(accepted + 1, Ordering::Relaxed);
        shared
            .accepted_bytes
            .store(accepted_bytes + len as u64, Ordering::Relaxed);
        let direct = match slot.conn.as_mut() {
            Some(conn) if slot.queue.is_empty() && slot.reported.is_none() => {
                // The engine keeps the payload until it is acknowledged; on any error (its
                // window is full, the connection failed) it hands it back and the message
                // is queued for the driver, which deals with the error.
                conn.try_start_send(payload, false)
            }
            _ => Err((AckError::SinkClosed, payload)),
        };
        match direct {
            Ok(seq) => slot.tracked.push_back(Tracked {
                id,
                seq,
                len,
                refused: false,
            }),
            Err((_, payload)) => slot.queue.push_back(SendCmd { id, payload }),
        }
        Ok(Ok(id))
    }

    /// `Some(reason)` once the client stopped accepting sends.
    fn stopped_reason(&self) -> Option<EarlierError> {
        if !self.shared.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let inbox = self.shared.inbox();
        if !inbox.stopping {
            return None;
        }
        Some(match &inbox.end {
            Some(end) => end.reason(),
            None if inbox.sender_closed => {
                EarlierError::new("the sending half was closed", Cause::Local, false)
            }
            None => EarlierError::new("the client is stopping", Cause::Local, false),
        })
    }

    /// Waits until every message accepted by [`send`](Self::send) before this call has been
    /// acknowledged (across reconnects).
    ///
    /// # Errors
    ///
    /// [`ClientError::GaveUp`] or [`ClientError::Protocol`], both carrying the unacknowledged
    /// messages in order. After a clean end (peer closed, client closed) nothing is
    /// unacknowledged and this returns `Ok`.
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: nothing is lost; a later `flush` waits again.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (tx, mut rx) = oneshot::channel();
        // Everything accepted before this call: ids up to the last one handed out.
        let target = self.shared.slot().next_id.saturating_sub(1);
        self.cmds
            .send(Cmd::Flush(target, tx))
            .map_err(|_| Self::gone())?;
        let Some(grace) = self.shared.deadlock_grace else {
            return rx.await.unwrap_or_else(|_| Err(Self::gone()));
        };
        loop {
            let settled = self.shared.settled.load(Ordering::Relaxed);
            match tokio::time::timeout(grace, &mut rx).await {
                Ok(done) => return done.unwrap_or_else(|_| Err(Self::gone())),
                Err(_) if self.shared.settled.load(Ordering::Relaxed) == settled => {
                    let waited = grace;
                    if let Some(e) = self.shared.deadlock("flush", None, waited) {
                        return Err(e);
                    }
                }
                Err(_) => {}
            }
        }
    }

    fn gone() -> ClientError {
        ClientError::Stopped {
            reason: task_ended(),
        }
    }

    /// Half-close: waits for every receipt (as [`flush`](Self::flush)), then shuts the
    /// connection's sending direction (the peer's stream ends; a FIN on TCP) and returns,
    /// without waiting for the peer. From then on every [`send`](Self::send), from any
    /// clone, fails with [`ClientError::NotSent`] (sends accepted before the close still
    /// go out first), and `flush`/`close` return `Ok`.
    ///
    /// The [`AckReceiver`] keeps delivering what the peer sends until the peer closes its
    /// side, then returns `Ok(None)`; dropping it ends the connection early. The acks for
    /// every message it took before the close go out before the FIN. Messages it takes after
    /// the close cannot be acknowledged (acks travel on the direction that is now shut): they
    /// are delivered, but the peer sees them as unacknowledged, and since the peer can have
    /// at most the window this client granted unacknowledged, at most that many arrive after
    /// the close. Without a receiving half (dropped, or [`AckClient::close`]) the connection
    /// is closed right after the FIN.
    ///
    /// # Errors
    ///
    /// As [`flush`](Self::flush), and transport errors while shutting the sending direction.
    pub async fn close(self) -> Result<(), ClientError> {
        self.request(Cmd::Close).await
    }

    /// How many times the connection was re-established.
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// How many messages were resent as redeliveries.
    pub fn redeliveries(&self) -> u64 {
        self.shared.redeliveries.load(Ordering::Relaxed)
    }

    /// How many reconnects found the session gone on the server; see
    /// [`AckClient::sessions_lost`].
    pub fn sessions_lost(&self) -> u64 {
        self.shared.sessions_lost.load(Ordering::Relaxed)
    }

    async fn request(
        &self,
        make: fn(oneshot::Sender<Result<(), ClientError>>) -> Cmd,
    ) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        let gone = || ClientError::Stopped {
            reason: task_ended(),
        };
        self.cmds.send(make(tx)).map_err(|_| gone())?;
        rx.await.unwrap_or_else(|_| Err(gone()))
    }
}
