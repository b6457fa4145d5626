//! Ack mode: backpressure, delivery receipts and lossless reconnect.
//!
//! An [`AckClient`] owns a background task (the *driver*) that owns the sending side of the
//! ack-mode connection ([`AckFramed`]), tracks receipts and reconnects. The handles share the
//! connection with it:
//!
//! * [`AckSender::send`] returns once the message fits in the peer's window (a full window is
//!   backpressure). It returns a [`Receipt`]: a future that resolves when the peer's
//!   *application* took the message. With the connection up and nothing waiting before it,
//!   `send` hands the message to the connection itself (one lock, no task hop); otherwise
//!   (reconnecting, or behind messages still waiting) it queues it for the driver. The driver
//!   writes in batches, woken once per batch.
//! * [`AckSender::flush`] resolves when every message accepted so far has been acknowledged.
//! * [`AckReceiver::recv`] polls the connection's receiving side itself and takes the next
//!   message from the peer; only then is it acknowledged.
//! * [`AckSender::close`] is a half-close: once every receipt resolved, the sending direction
//!   is shut, and the receiving half goes on delivering the peer's messages until the peer
//!   closes its side. [`AckClient::close`] closes both halves.
//!
//! When the connection drops, the driver reconnects according to the [`ReconnectPolicy`] and
//! resumes the client's *session* (see [Sessions](framewire_codec::ack#sessions)): the client
//! opens one at connect (a random 128-bit id), sequence numbers run per session, and on each
//! reconnect both sides say what their application already has, so only what follows is
//! resent. While the server keeps the session, no message reaches either application twice
//! and none is lost. A server that no longer has it (restarted, linger expired, another
//! server) gets the messages it may have missed again, flagged as redeliveries, each with the
//! same [`MessageId`] as before (at least once, with stable ids); the client logs it at WARN
//! and counts it in [`AckClient::sessions_lost`]. If the policy gives up,
//! every waiting call fails with [`ClientError::GaveUp`], which carries exactly the messages
//! that were accepted and never acknowledged, in order.
//!
//! A server without sessions (an older framewire, or a bare [`AckFramed`] peer: its first
//! HELLO does not name the client's session) gets the old behaviour: each connection numbers
//! its messages from 1, and every unacknowledged message is resent on the next one, flagged
//! as a redelivery.
//!
//! # Where things live
//!
//! * `mod.rs` (this file): [`AckClient`], which connects, starts the driver and hands out the
//!   two halves; the defaults.
//! * `send.rs`: [`AckSender`] (`send`, `flush`, the half-close) and [`Receipt`].
//! * `recv.rs`: [`AckReceiver`], which reads the connection itself.
//! * `shared.rs`: the state the handles share with the driver (counters, window, receipts'
//!   watermark, the slot holding the connection and the send queue, under one lock).
//! * `driver.rs`: the driver task's life (run, drop, reconnect or stop) and how it stops.
//! * `round.rs`: the driver's connected phase (one round: commands, queued sends, writes,
//!   reads, receipts, ack timeout, half-close).
//! * `connect.rs`: opening and re-opening connections (endpoints, HELLO, sessions), and the
//!   resend after a reconnect to a server without sessions.
//! * `end.rs`: how a connected phase ends ([`Outcome`](end::Outcome)) and how the client
//!   stops for good ([`Stop`](end::Stop)), with the errors the calls get.
//! * `tests.rs`: unit tests that need the internals.

mod connect;
mod driver;
mod end;
mod receipt;
mod recv;
mod round;
mod send;
mod shared;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use framewire_codec::ack::{AckDriver, Delivery};
#[cfg(doc)]
use framewire_codec::ack::{AckFramed, MessageId};
use framewire_codec::{Cause, EarlierError};
use tokio::sync::mpsc;

pub(crate) use connect::AckSettings;
use connect::{hello, session_state};
use driver::Driver;
pub use receipt::Receipt;
pub use recv::AckReceiver;
pub use send::AckSender;
use shared::Shared;

use crate::transport::ByteStream;
#[cfg(doc)]
use crate::ReconnectPolicy;
use crate::{ClientError, Endpoint};

type Conn = AckDriver<ByteStream>;

/// The default deadlock grace ([`ClientBuilder::ack_deadlock_grace`]): how long `send` or
/// `flush` waits with no acknowledgement, while the peer's messages fill this client's receive
/// window and nothing waits in `recv`, before failing with [`ClientError::Deadlock`] instead
/// of waiting forever: 2 s. Long enough that a peer that is merely slow to take messages (and
/// will acknowledge) is not mistaken for one that waits for its replies to be read; short
/// enough that the classic mistake (sending many messages to an echo server without reading
/// the replies) is an error with advice, not a hang.
///
/// [`ClientBuilder::ack_deadlock_grace`]: crate::ClientBuilder::ack_deadlock_grace
pub const DEFAULT_DEADLOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The reason of every call after the background task is gone (the runtime shut down).
fn task_ended() -> EarlierError {
    EarlierError::new("the client's background task ended", Cause::Local, false)
}

/// An ack-mode framewire client: sends with backpressure and delivery receipts, reconnects
/// without losing a message.
///
/// Built with [`ClientBuilder::connect_ack`](crate::ClientBuilder::connect_ack). Both sides
/// open with a HELLO; every message then travels as a DATA frame with a sequence number, and
/// the peer acknowledges what its application took (see `framewire_codec::ack`).
///
/// * [`send`](Self::send) returns once the message fits in the peer's window, with a
///   [`Receipt`] to await its acknowledgement; [`flush`](Self::flush) waits for all of them.
/// * [`recv`](Self::recv) returns the next message with its redelivery flag; it is
///   acknowledged once the application is done with it: when `recv` is called again (or the
///   client is closed).
/// * Against a peer that replies, receive concurrently ([`split`](Self::split) and `recv`
///   in another task): replies that are never taken fill the window this client granted,
///   and a peer that waits for its replies to be read stops taking messages. `send` and
///   `flush` then fail with [`ClientError::Deadlock`] after the
///   [deadlock grace](crate::ClientBuilder::ack_deadlock_grace) ([`DEFAULT_DEADLOCK_GRACE`]
///   by default) instead of waiting forever.
/// * After a drop (I/O error, reset, close with messages unacknowledged, or no ack within the
///   [ack timeout](crate::ClientBuilder::ack_timeout) if one is set) the client
///   reconnects per its [`ReconnectPolicy`], resends every unacknowledged message in order
///   flagged as a redelivery, then carries on: nothing accepted by `send` is lost. If the
///   policy gives up, `flush`, `close` and `recv` fail with [`ClientError::GaveUp`] carrying
///   exactly the unacknowledged messages, in order.
/// * A clean close by the peer with nothing unacknowledged ends the client ([`recv`](Self::recv)
///   returns `Ok(None)`) when it is noticed with nothing in flight (the client only reads while
///   a `recv` waits or messages are unacknowledged); a message sent after an unnoticed close
///   finds the connection dead and is delivered over a new one. A protocol violation by the peer ends it with
///   [`ClientError::Protocol`] (no reconnect: the peer, not the network, is at fault).
///
/// * [`close`](Self::close) waits for every receipt and closes both halves. After
///   [`split`](Self::split), [`AckSender::close`] is a half-close: the receiving half keeps
///   delivering the peer's messages until the peer closes its side.
///
/// The first connection is not retried: [`connect_ack`](crate::ClientBuilder::connect_ack)
/// reports its failure directly. A message counts as delivered at least once: a message
/// whose ack was lost with the connection is delivered again, flagged, so the receiving side
/// can tell.
///
/// # Examples
///
/// ```no_run
/// use framewire_client::{Client, ReconnectPolicy};
///
/// # async fn run() -> Result<(), framewire_client::ClientError> {
/// let client = Client::builder()
///     .ack_window(16)
///     .reconnect(ReconnectPolicy::default())
///     .connect_ack("127.0.0.1:9999")
///     .await?;
/// // A server that replies (an echo server) needs a concurrent `recv`: its replies would
/// // otherwise fill the window this client granted and stop it (see
/// // `ClientError::Deadlock`).
/// let (tx, mut rx) = client.split();
/// let replies = tokio::spawn(async move {
///     let mut n = 0;
///     while n < 101 && rx.recv().await?.is_some() {
///         n += 1; // a reply is acknowledged when `recv` is called again
///     }
///     Ok::<_, framewire_client::ClientError>(n)
/// });
/// let receipt = tx.send("hello").await?; // fits in the window
/// receipt.await?; // the server's application is done with it
/// for i in 0..100 {
///     tx.send(format!("message {i}")).await?;
/// }
/// tx.flush().await?; // all 100 acknowledged
/// println!("{} replies", replies.await.expect("receiver task")?);
/// tx.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AckClient {
    tx: AckSender,
    rx: AckReceiver,
}

impl AckClient {
    /// Connects (or, given `first`, runs over that stream) and starts the driver.
    pub(crate) async fn connect(
        mut settings: AckSettings,
        first: Option<ByteStream>,
    ) -> Result<AckClient, ClientError> {
        let (session, state) = session_state(&settings.ack, &settings.codec)?;
        let conn = match first {
            Some(stream) => {
                let endpoint = settings.endpoints.current().clone();
                let (ack, codec) = (settings.ack, settings.codec);
                let timeout = settings.connect_timeout;
                hello(ack, codec, timeout, &endpoint, stream, Some(state))
                    .await
                    .map_err(|(e, _)| e)?
            }
            None => settings.open(Some(state)).await.0?,
        };
        // The server keeps sessions if its HELLO names ours; otherwise every connection is
        // numbered on its own, and unacknowledged messages are resent on the next one.
        let sessions = conn
            .state()
            .peer_hello()
            .is_some_and(|h| h.session == session);
        let shared = Arc::new(Shared {
            deadlock_grace: settings.deadlock_grace,
            ..Shared::default()
        });
        shared.slot().next_id = 1;
        if sessions {
            *shared
                .session
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = session;
        }
        shared.set_limits(&conn);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let endpoint = settings.endpoints.current().clone();
        let driver = Driver {
            settings,
            shared: Arc::clone(&shared),
            cmds: cmd_rx,
            backlog: VecDeque::new(),
            stash: VecDeque::new(),
            flushes: Vec::new(),
            closing: Vec::new(),
            senders_gone: false,
            ack_deadline: None,
            deadline_acked: 0,
            sessions,
            state: None,
        };
        tokio::spawn(driver.run(conn));
        Ok(AckClient {
            tx: AckSender {
                cmds: cmd_tx,
                shared: Arc::clone(&shared),
                endpoint,
            },
            rx: AckReceiver {
                shared,
                ended: false,
                registered: None,
                waiting: false,
            },
        })
    }

    /// Where this client's first connection went (with several endpoints, the first that
    /// answered); after a failover the connection may be to another of them.
    pub fn endpoint(&self) -> &Endpoint {
        &self.tx.endpoint
    }

    /// See [`AckSender::send`] (which also says why the payload is `impl Into<Bytes>`).
    ///
    /// # Errors
    ///
    /// As [`AckSender::send`].
    pub async fn send(&self, payload: impl Into<Bytes>) -> Result<Receipt, ClientError> {
        self.tx.send(payload).await
    }

    /// See [`AckSender::feed`]: [`send`](Self::send) without a receipt.
    ///
    /// # Errors
    ///
    /// As [`AckSender::send`].
    pub async fn feed(&self, payload: impl Into<Bytes>) -> Result<(), ClientError> {
        self.tx.feed(payload).await
    }

    /// See [`AckSender::feed_all`]: [`feed`](Self::feed) for many messages, in runs that
    /// take the connection's lock once.
    ///
    /// # Errors
    ///
    /// As [`AckSender::feed_all`].
    pub async fn feed_all<I>(&self, payloads: I) -> Result<u64, ClientError>
    where
        I: IntoIterator,
        I::Item: Into<Bytes>,
    {
        self.tx.feed_all(payloads).await
    }

    /// See [`AckSender::flush`].
    ///
    /// # Errors
    ///
    /// As [`AckSender::flush`].
    pub async fn flush(&self) -> Result<(), ClientError> {
        self.tx.flush().await
    }

    /// See [`AckReceiver::recv`].
    ///
    /// # Errors
    ///
    /// As [`AckReceiver::recv`].
    pub async fn recv(&mut self) -> Result<Option<Delivery>, ClientError> {
        self.rx.recv().await
    }

    /// Sends one message and waits for the next incoming one (request/response). Does not
    /// wait for the receipt: a reply implies the request was taken.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send) and [`recv`](Self::recv), and [`ClientError::ClosedByPeer`]
    /// if the peer closes cleanly before replying.
    pub async fn call(&mut self, payload: impl Into<Bytes>) -> Result<Delivery, ClientError> {
        self.tx.feed(payload).await?;
        match self.rx.recv().await? {
            Some(reply) => Ok(reply),
            None => Err(ClientError::ClosedByPeer {
                in_flight: self.tx.shared.in_flight(),
            }),
        }
    }

    /// How many times the connection was re-established.
    pub fn reconnects(&self) -> u64 {
        self.tx.reconnects()
    }

    pub(crate) fn sender(&self) -> &AckSender {
        &self.tx
    }

    pub(crate) fn receiver(&mut self) -> &mut AckReceiver {
        &mut self.rx
    }

    /// How many messages were resent as redeliveries.
    pub fn redeliveries(&self) -> u64 {
        self.tx.redeliveries()
    }

    /// How many reconnects found the session gone on the server (restarted, linger expired,
    /// evicted, or another server behind a balancer): from each of those on, the messages
    /// in flight were resent flagged and delivery for them is at-least-once with stable ids
    /// (see the module docs). 0 while every reconnect resumed the session exactly.
    pub fn sessions_lost(&self) -> u64 {
        self.tx.sessions_lost()
    }

    /// Splits into a sending half (cloneable) and a receiving half.
    pub fn split(self) -> (AckSender, AckReceiver) {
        (self.tx, self.rx)
    }

    /// Closes both halves: waits for every receipt (as [`flush`](Self::flush)), then shuts
    /// the connection without waiting for the peer to close its side, so it takes as long as
    /// the acks do (bounded by the [ack timeout](crate::ClientBuilder::ack_timeout) and the
    /// [`ReconnectPolicy`] when messages are unacknowledged), not longer. Messages from the
    /// peer that were not taken with [`recv`](Self::recv) are not acknowledged, so the peer
    /// still holds them as unacknowledged (see [`AckSender::close`] for a half-close that
    /// keeps receiving).
    ///
    /// # Errors
    ///
    /// As [`AckSender::close`].
    pub async fn close(self) -> Result<(), ClientError> {
        let AckClient { tx, rx } = self;
        // Nobody receives any more: the connection ends as soon as the FIN is out.
        drop(rx);
        tx.close().await
    }
}
