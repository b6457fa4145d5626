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

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use framewire_codec::ack::{
    new_session_id, AckDriver, AckError, AckFramedBuilder, AckState, Delivery, GoAwayReason,
    MessageId, SessionId, SessionStatus,
};
use framewire_codec::{Cause, EarlierError, FrameCodecBuilder, FrameError};
use futures_util::task::AtomicWaker;
use futures_util::Stream;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::tls::ClientTls;
use crate::transport::{ByteStream, Endpoints, Open};
use crate::{ClientError, Endpoint, InFlight, ReconnectPolicy};

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

/// While resending after a reconnect, the acks that arrived are read after every this many
/// messages (without waiting): one read attempt per 32 resent messages.
const RESEND_READ_EVERY: usize = 32;

/// Everything needed to open (and re-open) an ack-mode connection.
#[derive(Debug, Clone)]
pub(crate) struct AckSettings {
    pub(crate) endpoints: Endpoints,
    pub(crate) connect_timeout: std::time::Duration,
    pub(crate) codec: FrameCodecBuilder,
    pub(crate) ack: AckFramedBuilder,
    pub(crate) policy: ReconnectPolicy,
    pub(crate) ack_timeout: Option<std::time::Duration>,
    pub(crate) deadlock_grace: Option<std::time::Duration>,
    pub(crate) tls: Option<ClientTls>,
}

impl AckSettings {
    /// Connects to the first endpoint that answers, starting with the current one, and
    /// completes the HELLO exchange (and, with TLS, the TLS handshake before it); both within
    /// the connect timeout, per endpoint. With `state` (the session's, after
    /// [`AckState::reconnect`]) the connection resumes the session; the state is handed back
    /// if no endpoint answered.
    async fn open(
        &mut self,
        state: Option<AckState>,
    ) -> (Result<Conn, ClientError>, Option<AckState>) {
        let (timeout, codec, ack) = (self.connect_timeout, self.codec, self.ack);
        let tls = self.tls.clone();
        let kept = Mutex::new(state);
        let r = self
            .endpoints
            .first_answering(|endpoint| {
                let endpoint = endpoint.clone();
                let tls = tls.clone();
                let kept = &kept;
                async move {
                    let transport = endpoint.open(timeout, tls.as_ref()).await?;
                    let state = kept.lock().unwrap_or_else(PoisonError::into_inner).take();
                    match hello(ack, codec, timeout, &endpoint, transport, state).await {
                        Ok(conn) => Ok(conn),
                        Err((e, state)) => {
                            *kept.lock().unwrap_or_else(PoisonError::into_inner) = state;
                            Err(e)
                        }
                    }
                }
            })
            .await;
        (r, kept.into_inner().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Completes the HELLO exchange over a connected stream, within `timeout`; driving `state`
/// if given (a session), else a new connection-scoped state. On failure the state is handed
/// back, ready for the next attempt.
async fn hello(
    ack: AckFramedBuilder,
    codec: FrameCodecBuilder,
    timeout: std::time::Duration,
    endpoint: &Endpoint,
    transport: ByteStream,
    state: Option<AckState>,
) -> Result<Conn, (ClientError, Option<AckState>)> {
    let with_state = state.is_some();
    let mut conn = match state {
        Some(state) => ack.driver_with_state(transport, codec.build(), state),
        None => ack.driver(transport, codec.build()),
    };
    let e = match tokio::time::timeout(timeout, conn.handshake()).await {
        Ok(Ok(_hello)) => return Ok(conn),
        // The peer's HELLO arrived and the session resumed; what failed came after it (the
        // connection dropped while the peer resent): a connection like any other that
        // dropped, whose messages received meanwhile are still delivered.
        Ok(Err(_)) if with_state && conn.state().peer_hello().is_some() => return Ok(conn),
        Ok(Err(source)) => ClientError::Handshake {
            endpoint: endpoint.to_string(),
            source,
        },
        Err(_) => ClientError::HandshakeTimeout {
            endpoint: endpoint.to_string(),
            timeout,
        },
    };
    let state = with_state.then(|| {
        // Messages received but not handed out are dropped with the connection: the peer
        // resends them.
        let (.., mut state, dropped) = conn.into_parts();
        let delivered = state.received_through() - dropped.len() as u64;
        state.reconnect(delivered);
        state
    });
    Err((e, state))
}

/// A new session's state for `ack`'s settings and `codec`'s frame limit.
fn session_state(
    ack: &AckFramedBuilder,
    codec: &FrameCodecBuilder,
) -> Result<(SessionId, AckState), ClientError> {
    let id = new_session_id().map_err(|e| ClientError::Frame(FrameError::Io(e)))?;
    let max = codec.build().max_frame_len();
    Ok((id, AckState::with_session(ack.ack_config(), max, id)))
}

/// The reason of every call after the background task is gone (the runtime shut down).
fn task_ended() -> EarlierError {
    EarlierError::new("the client's background task ended", Cause::Local, false)
}

/// Why the driver stopped for good.
#[derive(Debug, Clone)]
enum Stop {
    /// The peer closed cleanly with nothing unacknowledged.
    PeerClosed,
    /// [`AckSender::close`] completed and then the peer closed its side too (or the receiving
    /// half was dropped).
    Closed,
    /// After [`AckSender::close`], the connection failed while the receiving half was still
    /// reading the peer's messages. Nothing of ours was unacknowledged.
    LostAfterClose { reason: EarlierError },
    /// The reconnect policy gave up.
    GaveUp {
        attempts: u32,
        elapsed: Duration,
        last_error: EarlierError,
        unacked: Vec<Bytes>,
    },
    /// The peer broke the protocol (no reconnect: the peer is wrong, not the network).
    Protocol {
        error: Arc<AckError>,
        unacked: Vec<Bytes>,
    },
}

impl Stop {
    fn reason(&self) -> EarlierError {
        match self {
            Stop::PeerClosed => {
                EarlierError::new("the peer closed the connection", Cause::Transport, true)
            }
            Stop::Closed => EarlierError::new("the client was closed", Cause::Local, false),
            Stop::LostAfterClose { reason } => EarlierError::new(
                format!("the connection failed after the sending half closed: {reason}"),
                reason.cause(),
                reason.is_retryable(),
            ),
            other => EarlierError::from(&other.error()),
        }
    }

    /// The error for calls that wait on delivery (flush, close) and for the receiver.
    fn error(&self) -> ClientError {
        match self {
            Stop::PeerClosed | Stop::Closed | Stop::LostAfterClose { .. } => ClientError::Stopped {
                reason: self.reason(),
            },
            Stop::GaveUp {
                attempts,
                elapsed,
                last_error,
                unacked,
            } => ClientError::GaveUp {
                attempts: *attempts,
                elapsed: *elapsed,
                last_error: last_error.clone(),
                unacked: unacked.clone(),
            },
            Stop::Protocol { error, unacked } => ClientError::Protocol {
                source: Arc::clone(error),
                unacked: unacked.clone(),
            },
        }
    }

    /// What `flush`/`close` return once stopped: nothing is unacknowledged after a clean end.
    fn flush_result(&self) -> Result<(), ClientError> {
        match self {
            Stop::PeerClosed | Stop::Closed | Stop::LostAfterClose { .. } => Ok(()),
            _ => Err(self.error()),
        }
    }

    /// What `recv` returns once the queue is empty.
    fn recv_result(&self) -> Result<Option<Delivery>, ClientError> {
        match self {
            Stop::PeerClosed | Stop::Closed => Ok(None),
            _ => Err(self.error()),
        }
    }
}

/// State shared by the handles and the driver.
#[derive(Debug)]
struct Shared {
    inbox: Mutex<Inbox>,
    /// The current connection. The driver polls its sink side; the receiving half polls its
    /// stream side directly, so a message is taken (and acknowledged) exactly when `recv`
    /// returns it.
    slot: Mutex<Slot>,
    /// Messages accepted by `send` (queued or in flight).
    accepted: AtomicU64,
    /// Messages acknowledged (or given up on); `accepted - settled` is what the window holds.
    settled: AtomicU64,
    /// Payload bytes of the messages accepted, and of those settled: the byte window.
    accepted_bytes: AtomicU64,
    settled_bytes: AtomicU64,
    received: AtomicU64,
    reconnects: AtomicU64,
    redeliveries: AtomicU64,
    /// Reconnects on which the server no longer had the session (see `sessions_lost`).
    sessions_lost: AtomicU64,
    /// The window the current peer granted, clamped to this client's caps, in messages and
    /// in bytes.
    window: AtomicU64,
    window_bytes: AtomicU64,
    /// Messages received on a connection that ended (the peer went away) and not yet taken
    /// by `recv`: delivered before anything from the next connection.
    carry: Mutex<VecDeque<Delivery>>,
    /// The longest payload the current peer (and this side's codec) accepts.
    max_payload: AtomicUsize,
    /// Notified when the window gains room or the client stops.
    room: Notify,
    /// Every id up to this one is settled (acknowledged, or refused): the receipts'
    /// watermark.
    acked_id: AtomicU64,
    /// Receipts waiting for the watermark to move (woken, and emptied, at each move).
    receipt_wakers: Mutex<Vec<Waker>>,
    /// Ids refused as too long by the peer of the time, with the payload length and limit.
    refused: Mutex<Vec<(u64, usize, usize)>>,
    /// Mirrors `Inbox::stopping` (set under the slot lock with it), so that `send` checks it
    /// without taking the inbox lock.
    stopping: std::sync::atomic::AtomicBool,
    /// `true` while the receiving half waits in `recv` (for the deadlock check).
    receiving: std::sync::atomic::AtomicBool,
    /// How long `send`/`flush` wait with no ack before the deadlock check; `None`: never.
    deadlock_grace: Option<std::time::Duration>,
    /// The driver task, woken by the first send after each of its rounds (see
    /// `Slot::kicked`; registered at each of its polls: no lock per message).
    driver_task: AtomicWaker,
    /// The client's session; all zero with a server that does not keep sessions.
    session: Mutex<SessionId>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            inbox: Mutex::default(),
            slot: Mutex::default(),
            accepted: AtomicU64::default(),
            settled: AtomicU64::default(),
            accepted_bytes: AtomicU64::default(),
            settled_bytes: AtomicU64::default(),
            received: AtomicU64::default(),
            reconnects: AtomicU64::default(),
            redeliveries: AtomicU64::default(),
            sessions_lost: AtomicU64::default(),
            window: AtomicU64::default(),
            window_bytes: AtomicU64::default(),
            carry: Mutex::default(),
            max_payload: AtomicUsize::default(),
            room: Notify::new(),
            receiving: std::sync::atomic::AtomicBool::new(false),
            deadlock_grace: Some(DEFAULT_DEADLOCK_GRACE),
            stopping: std::sync::atomic::AtomicBool::new(false),
            acked_id: AtomicU64::default(),
            receipt_wakers: Mutex::default(),
            refused: Mutex::default(),
            driver_task: AtomicWaker::new(),
            session: Mutex::new([0; 16]),
        }
    }
}

impl Shared {
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        // A panic while holding this lock leaves only plain data behind; keep going.
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every receipt waiting for the watermark (it moved, or the client stopped).
    fn wake_receipts(&self) {
        let wakers = std::mem::take(
            &mut *self
                .receipt_wakers
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for w in wakers {
            w.wake();
        }
    }

    fn carry(&self) -> MutexGuard<'_, VecDeque<Delivery>> {
        self.carry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the current connection's limits.
    fn set_limits(&self, conn: &Conn) {
        let state = conn.state();
        self.window
            .store(u64::from(state.send_window()), Ordering::Relaxed);
        self.window_bytes
            .store(u64::from(state.send_window_bytes()), Ordering::Relaxed);
        self.max_payload
            .store(conn.max_payload_len(), Ordering::Relaxed);
        self.room.notify_waiters();
    }

    /// The deadlock check: `Some` with the error when nothing waits in `recv` and the peer's
    /// messages fill the receive window this client granted (the peer cannot send more).
    fn deadlock(
        &self,
        op: &'static str,
        payload: Option<Bytes>,
        waited: Duration,
    ) -> Option<ClientError> {
        if self.receiving.load(Ordering::SeqCst) {
            return None;
        }
        let slot = self.slot();
        let state = slot.conn.as_ref()?.state();
        let local = state.local_hello();
        let unread = state.received_through() - state.ack_sent_through();
        let unread_bytes = state.received_unacked_bytes();
        let full =
            unread >= u64::from(local.window) || unread_bytes >= u64::from(local.window_bytes);
        full.then_some(ClientError::Deadlock {
            op,
            payload,
            waited,
            unread,
            unread_bytes,
            window: local.window,
            window_bytes: local.window_bytes,
        })
    }

    fn in_flight(&self) -> InFlight {
        let accepted = self.accepted.load(Ordering::Relaxed);
        let delivered = self.settled.load(Ordering::Relaxed);
        InFlight {
            frames_sent: accepted,
            bytes_sent: 0,
            frames_received: self.received.load(Ordering::Relaxed),
            sent_since_last_reply: accepted.saturating_sub(delivered),
            bytes_since_last_reply: 0,
        }
    }
}

/// The connection the handles share, what the receiving half saw end it, and the messages
/// accepted by `send` and not yet acknowledged: one lock for a send.
///
/// Ordering rule: a send hands its message straight to the connection's engine only while
/// `queue` is empty (and a connection is installed, with nothing reported against it), so a
/// message sent directly never overtakes one accepted before it: messages queued while
/// reconnecting, or while the engine's window was full, go to the engine first, in order.
/// Without sessions the resend after a reconnect runs before the new connection is
/// installed, so nothing is sent directly meanwhile. `tracked` follows id order because every
/// push to it (by a send or by the driver) happens under this lock, in the order the messages
/// reach the engine.
#[derive(Debug, Default)]
struct Slot {
    /// `None` while reconnecting and after the client stopped.
    conn: Option<Conn>,
    /// Set by the receiving half when its poll ended the connection; the driver acts on it.
    reported: Option<Outcome>,
    /// The id the next accepted message gets.
    next_id: u64,
    /// Messages accepted by `send` that wait for the driver to hand them to a connection (no
    /// connection, its window full, or behind others that wait), in id order.
    queue: VecDeque<SendCmd>,
    /// Messages handed to a connection (or refused by it) and not yet acknowledged, in id
    /// order.
    tracked: VecDeque<Tracked>,
    /// A send woke the driver since its last connected round began: later sends need not
    /// (one wake-up per round, not per message). Cleared by the driver under this lock at
    /// the start of each round, before it writes.
    kicked: bool,
}

/// How the handles learn that the client stopped, and the wakers between them.
#[derive(Debug, Default)]
struct Inbox {
    end: Option<Stop>,
    /// Set (under the slot lock) when the driver stops accepting sends.
    stopping: bool,
    /// Set with `stopping` when it is because of [`AckSender::close`].
    sender_closed: bool,
    recv_waker: Option<Waker>,
    driver_waker: Option<Waker>,
    receiver_dropped: bool,
}

/// One message accepted by `send` while it could not go to the connection at once, on its
/// way to the driver (no channel, no allocation of its own: the sending task pushes it onto
/// `Slot::queue`).
#[derive(Debug)]
struct SendCmd {
    id: u64,
    payload: Bytes,
}

enum Cmd {
    /// Completes once every id up to the first field is settled.
    Flush(u64, oneshot::Sender<Result<(), ClientError>>),
    Close(oneshot::Sender<Result<(), ClientError>>),
}

/// One accepted, not yet acknowledged message. Its payload is not kept here: the
/// connection's engine holds it until it is acknowledged (and, between connections without
/// sessions, `Driver::stash`).
#[derive(Debug)]
struct Tracked {
    id: u64,
    /// Its seq on the current connection (`u64::MAX` while not yet resent on it; 0 for a
    /// message refused as too long, which is settled as soon as it is at the front).
    seq: u64,
    /// Its payload's length (for the byte window).
    len: usize,
    /// Refused by the peer of the time as too long: never sent, never resent.
    refused: bool,
}

/// How a connected phase ended.
#[derive(Debug)]
enum Outcome {
    /// Transport failure, close with messages unacknowledged, or no ack within the ack
    /// timeout: reconnect. Carries the reason.
    Drop(EarlierError),
    /// Protocol violation by the peer: stop.
    Violation(AckError),
    /// Clean close by the peer, nothing unacknowledged: stop.
    PeerClosed,
    /// The receiving half saw the end of the stream: the driver decides between
    /// `PeerClosed` and `Drop`.
    EndOfStream,
    /// Every handle is gone and nothing is unacknowledged.
    Done,
    /// `AckSender::close` shut the sending direction: the receiving half may still read.
    SenderClosed,
    /// Shutting the sending direction failed (everything was acknowledged before).
    CloseFailed(EarlierError),
}

/// The peer said it is going away (shutdown, restart, idle close): reconnect, whatever is in
/// flight, unlike a plain close, which ends the conversation.
fn going_away(reason: GoAwayReason) -> Outcome {
    Outcome::Drop(EarlierError::new(
        format!("the server is going away ({reason}); reconnecting"),
        Cause::Transport,
        true,
    ))
}

fn classify(e: AckError) -> Outcome {
    match &e {
        AckError::Frame(
            FrameError::Io(_)
            | FrameError::TruncatedFrame { .. }
            | FrameError::TruncatedHeader { .. },
        )
        | AckError::ClosedWithUnacked { .. }
        | AckError::ClosedBeforeHello
        | AckError::PeerSilent { .. }
        | AckError::Failed { .. } => Outcome::Drop(EarlierError::from(&e)),
        _ => Outcome::Violation(e),
    }
}

struct Driver {
    settings: AckSettings,
    shared: Arc<Shared>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    /// Commands taken from the channel but not yet handled (after a clean close by the peer
    /// raced with new sends).
    backlog: VecDeque<Cmd>,
    /// Without sessions, after a connection ended: the payloads of the tracked messages
    /// (refused ones aside) that no connection's engine holds, in order, waiting for the
    /// resend. They follow those still in the current connection's engine.
    stash: VecDeque<Bytes>,
    flushes: Vec<(u64, oneshot::Sender<Result<(), ClientError>>)>,
    /// `close` calls waiting (clones of the sender may each call it).
    closing: Vec<oneshot::Sender<Result<(), ClientError>>>,
    senders_gone: bool,
    /// When the current connection counts as dead if no ack arrives (with messages in
    /// flight and an ack timeout configured).
    ack_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The connection's `acked_through` when the deadline was last reset.
    deadline_acked: u64,
    /// The server keeps sessions: every connection drives the one session state, which
    /// waits here between connections. `false`: a new state per connection, and a resend.
    sessions: bool,
    state: Option<AckState>,
}

impl Driver {
    async fn run(mut self, conn: Conn) {
        self.install(conn);
        loop {
            let outcome = poll_fn(|cx| self.poll_connected(cx)).await;
            let outcome = match outcome {
                Outcome::SenderClosed => {
                    // The connection stays in the slot for the receiving half.
                    let stop = poll_fn(|cx| self.poll_half_closed(cx)).await;
                    self.shared.slot().conn = None;
                    self.stop(stop).await;
                    return;
                }
                Outcome::CloseFailed(reason) => {
                    // Nothing of ours is unacknowledged: no reconnect.
                    self.shared.slot().conn = None;
                    self.stop(Stop::LostAfterClose { reason }).await;
                    return;
                }
                other => other,
            };
            let conn = self.shared.slot().conn.take();
            match outcome {
                Outcome::Done | Outcome::SenderClosed | Outcome::CloseFailed(_) => {
                    self.stop(Stop::Closed).await;
                    return;
                }
                Outcome::PeerClosed | Outcome::EndOfStream => {
                    // Sends queued meanwhile still need a connection: treat it as a drop.
                    if self.stop_accepting_if_idle() {
                        self.stop(Stop::PeerClosed).await;
                        return;
                    }
                    let queued = {
                        let slot = self.shared.slot();
                        slot.tracked.len() + slot.queue.len()
                    };
                    let why = EarlierError::from(&AckError::ClosedWithUnacked {
                        unacked: queued,
                        acked: conn.as_ref().map_or(0, |c| c.acked_through()),
                    });
                    if let Some(conn) = conn {
                        self.park(conn);
                    }
                    if !self.reconnect_or_stop(why).await {
                        return;
                    }
                }
                Outcome::Violation(error) => {
                    tracing::warn!(%error, "ack-mode protocol violation by the peer");
                    self.freeze_queue();
                    if let Some(conn) = &conn {
                        self.settle_now(conn);
                    }
                    let unacked = self.unacked_payloads(conn.as_ref());
                    self.stop(Stop::Protocol {
                        error: Arc::new(error),
                        unacked,
                    })
                    .await;
                    return;
                }
                Outcome::Drop(error) => {
                    if let Some(mut conn) = conn {
                        self.settle_now(&conn);
                        // Messages received and not yet taken are still delivered, first.
                        let inbox = conn.take_buffered();
                        if !inbox.is_empty() {
                            self.shared.carry().extend(inbox);
                            if let Some(w) = self.shared.inbox().recv_waker.take() {
                                w.wake();
                            }
                            // No new connection (and no new window of the peer's messages)
                            // until `recv` took these: what the client buffers unread stays
                            // within one window, however often the peer goes away.
                            poll_fn(|cx| self.poll_carry_taken(cx)).await;
                        }
                        self.park(conn);
                    }
                    tracing::info!(
                        %error,
                        unacked = self.shared.slot().tracked.len(),
                        "connection dropped; reconnecting"
                    );
                    if !self.reconnect_or_stop(error).await {
                        return;
                    }
                }
            }
        }
    }

    /// Reconnects after a drop (`why` says what ended the old connection) and installs the
    /// new connection; or, when the policy gives up, stops the client. Returns `false` once
    /// stopped.
    async fn reconnect_or_stop(&mut self, why: EarlierError) -> bool {
        match self.reconnect(why).await {
            Ok(new) => {
                self.install(new);
                self.ack_deadline = None;
                self.deadline_acked = 0;
                self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(stop) => {
                tracing::warn!(reason = %stop.reason(), "reconnect gave up");
                self.stop(stop).await;
                false
            }
        }
    }

    /// The connection is gone: with sessions, keeps its state for the next one (what the
    /// application got, or will get from the carry, counts as delivered); without, keeps the
    /// payloads of its unacknowledged messages for the resend.
    fn park(&mut self, mut conn: Conn) {
        self.settle_now(&conn);
        if !self.sessions {
            self.stash_unacked(&mut conn);
            return;
        }
        let (.., mut state, dropped) = conn.into_parts();
        let delivered = state.received_through() - dropped.len() as u64;
        state.reconnect(delivered);
        self.state = Some(state);
    }

    /// After the handshake on a new connection: the session's fate, logged and counted.
    fn resumed(&mut self, conn: &Conn) {
        let state = conn.state();
        if state.session_status() == SessionStatus::Lost {
            self.shared.sessions_lost.fetch_add(1, Ordering::Relaxed);
            let flagged = state.unacked().filter(|m| m.redelivery).count();
            self.shared
                .redeliveries
                .fetch_add(flagged as u64, Ordering::Relaxed);
            tracing::warn!(
                flagged,
                "the server no longer had this client's session (restarted, expired or \
                 another server): {flagged} messages it may have seen are resent flagged as \
                 redeliveries, with their ids; at-least-once delivery for them"
            );
        }
    }

    /// Makes `conn` the current connection and wakes the receiving half.
    fn install(&mut self, conn: Conn) {
        {
            let mut slot = self.shared.slot();
            slot.conn = Some(conn);
            slot.reported = None;
        }
        if let Some(w) = self.shared.inbox().recv_waker.take() {
            w.wake();
        }
    }

    /// Without sessions, a connection ends: the payloads its engine holds go in front of the
    /// stash (they are older than what still waits there for the resend). Call after
    /// [`settle`](Self::settle), so that they match the tracked messages left.
    fn stash_unacked(&mut self, conn: &mut Conn) {
        let mut older: VecDeque<Bytes> = conn.take_unacked().into();
        older.append(&mut self.stash);
        self.stash = older;
    }

    /// Every message accepted by `send` and not acknowledged, oldest first: in flight (in
    /// `conn`'s engine, or the session's state while disconnected), waiting for a resend,
    /// and still queued. Call after [`settle`](Self::settle), with `conn` out of the slot.
    fn unacked_payloads(&self, conn: Option<&Conn>) -> Vec<Bytes> {
        let slot = self.shared.slot();
        let engine = conn.map(|c| c.state()).or(self.state.as_ref());
        engine
            .into_iter()
            .flat_map(|state| state.unacked().map(|m| m.payload.clone()))
            .chain(self.stash.iter().cloned())
            .chain(slot.queue.iter().map(|p| p.payload.clone()))
            .collect()
    }

    /// Reconnects per the policy and resends every unacknowledged message, flagged.
    async fn reconnect(&mut self, first: EarlierError) -> Result<Conn, Stop> {
        let mut started = Instant::now();
        let mut backoff = self.settings.policy.backoff();
        let mut last_error = first;
        loop {
            let Some(delay) = backoff.next_delay(started.elapsed()) else {
                self.freeze_queue();
                return Err(Stop::GaveUp {
                    attempts: backoff.attempts(),
                    elapsed: started.elapsed(),
                    last_error,
                    unacked: self.unacked_payloads(None),
                });
            };
            tokio::time::sleep(delay).await;
            let state = if self.sessions {
                match self.state.take() {
                    Some(state) => Some(state),
                    // Not kept (cannot happen while connected): a new session, as after a
                    // restart of this client.
                    None => Some(
                        session_state(&self.settings.ack, &self.settings.codec)
                            .map_err(|e| Stop::GaveUp {
                                attempts: backoff.attempts(),
                                elapsed: started.elapsed(),
                                last_error: EarlierError::from(&e),
                                unacked: self.unacked_payloads(None),
                            })?
                            .1,
                    ),
                }
            } else {
                None
            };
            let (opened, state) = self.settings.open(state).await;
            self.state = state;
            let mut conn = match opened {
                Ok(conn) => {
                    self.shared.set_limits(&conn);
                    if self.sessions {
                        // The engine resends what the server does not have.
                        self.resumed(&conn);
                        return Ok(conn);
                    }
                    conn
                }
                Err(e) => {
                    tracing::debug!(error = %e, attempt = backoff.attempts(), "reconnect failed");
                    last_error = EarlierError::from(&e);
                    continue;
                }
            };
            match self.resend(&mut conn).await {
                Ok(()) => return Ok(conn),
                Err(e) => {
                    // The policy bounds failures in a row: a connection on which the peer
                    // acknowledged messages made progress, so the count starts over (a long
                    // resend cut again and again still gets through, a piece per connection).
                    if self.settle_now(&conn) {
                        backoff = self.settings.policy.backoff();
                        started = Instant::now();
                    }
                    self.stash_unacked(&mut conn);
                    last_error = EarlierError::from(&e);
                }
            }
        }
    }

    /// Without sessions: sends every tracked message again, flagged, from the stash. On an
    /// error the payloads not yet handed to `conn` stay in the stash (the caller moves those
    /// `conn` holds back in front of them).
    ///
    /// No connection is installed meanwhile, so no send touches `tracked` (they queue).
    async fn resend(&mut self, conn: &mut Conn) -> Result<(), AckError> {
        let count = {
            let mut slot = self.shared.slot();
            for t in slot.tracked.iter_mut() {
                t.seq = u64::MAX;
            }
            slot.tracked.len()
        };
        for i in 0..count {
            {
                let mut slot = self.shared.slot();
                if slot.tracked[i].refused {
                    slot.tracked[i].seq = 0;
                    continue;
                }
            }
            poll_fn(|cx| conn.poll_ready(cx)).await?;
            let Some(payload) = self.stash.pop_front() else {
                // Cannot happen: the stash holds one payload per tracked message not refused.
                break;
            };
            let seq = match conn.try_start_send(payload, true) {
                Ok(seq) => seq,
                Err((e, payload)) => {
                    self.stash.push_front(payload);
                    return Err(e);
                }
            };
            poll_fn(|cx| conn.poll_write(cx)).await?;
            self.shared.slot().tracked[i].seq = seq;
            self.shared.redeliveries.fetch_add(1, Ordering::Relaxed);
            if i % RESEND_READ_EVERY == RESEND_READ_EVERY - 1 {
                // Read the acks that arrived meanwhile: if this connection is cut before the
                // resend ends, what the peer took is settled, not resent once more.
                poll_fn(|cx| conn.poll_progress(cx)).await?;
            }
        }
        Ok(())
    }

    /// [`settle`](Self::settle) for a connection out of the slot (taking the slot's lock).
    fn settle_now(&mut self, conn: &Conn) -> bool {
        let shared = Arc::clone(&self.shared);
        let mut slot = shared.slot();
        self.settle(&mut slot.tracked, conn)
    }

    /// Resolves the receipts of every message the current connection acknowledged
    /// (`tracked` is the slot's, whose lock the caller holds).
    fn settle(&mut self, tracked: &mut VecDeque<Tracked>, conn: &Conn) -> bool {
        let through = conn.acked_through();
        let mut any = false;
        let mut settled = 0;
        let mut settled_bytes = 0;
        let mut last = None;
        while tracked.front().is_some_and(|t| t.seq <= through) {
            if let Some(t) = tracked.pop_front() {
                settled += 1;
                settled_bytes += t.len as u64;
                last = Some(t.id);
            }
        }
        if let Some(id) = last {
            self.shared.settled.fetch_add(settled, Ordering::Relaxed);
            self.shared
                .settled_bytes
                .fetch_add(settled_bytes, Ordering::Relaxed);
            self.shared.acked_id.store(id, Ordering::Release);
            self.shared.room.notify_waiters();
            self.shared.wake_receipts();
            any = true;
        }
        // A flush waiting for ids up to `target` completes once all of them are settled.
        let acked_id = self.shared.acked_id.load(Ordering::Acquire);
        let mut i = 0;
        while i < self.flushes.len() {
            if self.flushes[i].0 <= acked_id {
                let (_, done) = self.flushes.swap_remove(i);
                let _ = done.send(Ok(()));
                any = true;
            } else {
                i += 1;
            }
        }
        any
    }

    /// With an ack timeout configured and messages in flight: ready (with the reason) once
    /// no ack has arrived for that long.
    fn poll_ack_timeout(
        &mut self,
        conn: &Conn,
        unacked: usize,
        cx: &mut Context<'_>,
    ) -> Poll<EarlierError> {
        let Some(timeout) = self.settings.ack_timeout else {
            return Poll::Pending;
        };
        if unacked == 0 {
            self.ack_deadline = None;
            return Poll::Pending;
        }
        let acked = conn.acked_through();
        if self.ack_deadline.is_none() || acked != self.deadline_acked {
            self.deadline_acked = acked;
            self.ack_deadline = Some(Box::pin(tokio::time::sleep(timeout)));
        }
        match self.ack_deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(EarlierError::new(
                format!(
                    "no ack within {} ms with {} messages unacknowledged (acknowledged through {acked})",
                    timeout.as_millis(),
                    unacked
                ),
                Cause::Timeout,
                true,
            )),
            _ => Poll::Pending,
        }
    }

    /// Ready once `recv` has taken every carried message, or the receiving half is gone (the
    /// carried messages are then dropped: nobody will take them).
    fn poll_carry_taken(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut inbox = self.shared.inbox();
            if !inbox.receiver_dropped {
                match &inbox.driver_waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => inbox.driver_waker = Some(cx.waker().clone()),
                }
            }
            if inbox.receiver_dropped {
                drop(inbox);
                self.shared.carry().clear();
                return Poll::Ready(());
            }
        }
        if self.shared.carry().is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn poll_connected(&mut self, cx: &mut Context<'_>) -> Poll<Outcome> {
        let shared = Arc::clone(&self.shared);
        let receiver_dropped = {
            let mut inbox = shared.inbox();
            match &inbox.driver_waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => inbox.driver_waker = Some(cx.waker().clone()),
            }
            inbox.receiver_dropped
        };
        let mut guard = shared.slot();
        let slot = &mut *guard;
        // This round writes whatever sends put into the engine so far: the next send after it
        // wakes the driver again.
        slot.kicked = false;
        match slot.reported.take() {
            Some(Outcome::EndOfStream) => {
                if let Some(reason) = slot.conn.as_ref().and_then(|c| c.peer_going_away()) {
                    return Poll::Ready(going_away(reason));
                }
                return Poll::Ready(if slot.tracked.is_empty() {
                    Outcome::PeerClosed
                } else {
                    Outcome::Drop(EarlierError::from(&AckError::ClosedWithUnacked {
                        unacked: slot.tracked.len(),
                        acked: slot.conn.as_ref().map_or(0, |c| c.acked_through()),
                    }))
                });
            }
            Some(outcome) => return Poll::Ready(outcome),
            None => {}
        }
        let Slot {
            conn,
            queue,
            tracked,
            ..
        } = slot;
        let Some(conn) = conn.as_mut() else {
            return Poll::Ready(Outcome::Done);
        };
        // Woken by the first send after this round. The connection keeps the driver's and
        // the receiving half's wakers apart (it polls the socket with a waker of its own that
        // wakes both), so both poll it with their own.
        shared.driver_task.register(cx.waker());
        loop {
            let mut progress = false;

            // 1. Commands (once per round, not per message: polling the channel registers
            // the waker each time), then the queued sends as the peer's window allows (sends
            // that found the window open and nothing queued went to the engine directly).
            loop {
                let cmd = match self.backlog.pop_front() {
                    Some(cmd) => Poll::Ready(Some(cmd)),
                    None if self.senders_gone => Poll::Pending,
                    None => self.cmds.poll_recv(cx),
                };
                match cmd {
                    Poll::Ready(Some(Cmd::Flush(target, done))) => {
                        self.flushes.push((target, done));
                        progress = true;
                    }
                    Poll::Ready(Some(Cmd::Close(done))) => {
                        self.closing.push(done);
                        progress = true;
                    }
                    Poll::Ready(None) => self.senders_gone = true,
                    Poll::Pending => break,
                }
            }
            // Once `poll_ready` said yes, only the window can change while messages are
            // handed over (nothing is written meanwhile): one poll per round, not per message.
            let mut ready = false;
            while !queue.is_empty() {
                let polled = if ready && conn.state().has_room() {
                    Poll::Ready(Ok(()))
                } else {
                    conn.poll_ready(cx)
                };
                ready = polled.is_ready();
                match polled {
                    Poll::Ready(Ok(())) => {
                        let Some(s) = queue.pop_front() else { break };
                        let (id, len) = (s.id, s.payload.len());
                        // The engine keeps the payload until it is acknowledged: no copy here.
                        match conn.try_start_send(s.payload, false) {
                            Ok(seq) => tracked.push_back(Tracked {
                                id,
                                seq,
                                len,
                                refused: false,
                            }),
                            Err((e @ AckError::PayloadTooLong { .. }, _)) => {
                                // Checked by `send` against the peer of the time; a peer
                                // reached after a reconnect may accept less.
                                if let AckError::PayloadTooLong { len, max } = e {
                                    self.shared
                                        .refused
                                        .lock()
                                        .unwrap_or_else(PoisonError::into_inner)
                                        .push((id, len, max));
                                }
                                // Settled (as refused) once it reaches the front.
                                tracked.push_back(Tracked {
                                    id,
                                    seq: 0,
                                    len,
                                    refused: true,
                                });
                            }
                            Err((e, payload)) => {
                                queue.push_front(SendCmd { id, payload });
                                return Poll::Ready(classify(e));
                            }
                        }
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(classify(e)),
                    Poll::Pending => break,
                }
            }

            // 2. Write what is queued, and keep reading: acks, keepalive, and a GOAWAY the
            // client acts on whatever its tasks are doing (a message read meanwhile waits in
            // the connection for `recv`; only `recv` marks it done).
            if let Poll::Ready(Err(e)) = conn.poll_all_acked(cx) {
                return Poll::Ready(classify(e));
            }
            progress |= self.settle(tracked, conn);
            if conn.is_read_closed() {
                if let Some(reason) = conn.peer_going_away() {
                    return Poll::Ready(going_away(reason));
                }
            }
            if let Poll::Ready(reason) = self.poll_ack_timeout(conn, tracked.len(), cx) {
                return Poll::Ready(Outcome::Drop(reason));
            }

            // 3. Close the sending direction once everything is acknowledged.
            if !self.closing.is_empty()
                && tracked.is_empty()
                && self.backlog.is_empty()
                && queue.is_empty()
            {
                if !self.shared.inbox().sender_closed {
                    // From now on `send` refuses (it checks under the slot lock, held here);
                    // sends accepted before that (from other clones) still go out first.
                    self.freeze_queue_for_close();
                    if !self.backlog.is_empty() {
                        continue;
                    }
                }
                if let Poll::Ready(r) = conn.poll_close(cx) {
                    // The FIN is out (after the acks for everything the receiving half took);
                    // the receiving half goes on reading until the peer closes its side.
                    let outcome = match &r {
                        Ok(()) => Outcome::SenderClosed,
                        Err(e) => Outcome::CloseFailed(EarlierError::from(e)),
                    };
                    let mut r = r.map_err(ClientError::Ack);
                    for done in self.closing.drain(..) {
                        let _ = done.send(std::mem::replace(&mut r, Ok(())));
                    }
                    return Poll::Ready(outcome);
                }
            }

            // 4. Nobody left to serve.
            if self.senders_gone && receiver_dropped && tracked.is_empty() && queue.is_empty() {
                return Poll::Ready(Outcome::Done);
            }

            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// After a clean close by the peer: if no accepted send waits or is in flight (one may
    /// have gone to the engine after the driver decided), stops accepting sends (atomically
    /// with the check) and returns `true`; otherwise keeps the queued commands in the backlog
    /// and returns `false`.
    fn stop_accepting_if_idle(&mut self) -> bool {
        let slot = self.shared.slot();
        while let Ok(cmd) = self.cmds.try_recv() {
            self.backlog.push_back(cmd);
        }
        if !slot.queue.is_empty() || !slot.tracked.is_empty() {
            return false;
        }
        self.shared.inbox().stopping = true;
        self.shared.stopping.store(true, Ordering::SeqCst);
        true
    }

    /// After the sending half closed: answers commands (nothing of ours is unacknowledged)
    /// until the receiving half saw the end of the connection, or was dropped. Ready with
    /// how the client ends.
    fn poll_half_closed(&mut self, cx: &mut Context<'_>) -> Poll<Stop> {
        {
            let mut inbox = self.shared.inbox();
            if inbox.receiver_dropped {
                return Poll::Ready(Stop::Closed);
            }
            match &inbox.driver_waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => inbox.driver_waker = Some(cx.waker().clone()),
            }
        }
        match self.shared.slot().reported.take() {
            Some(Outcome::Violation(error)) => {
                return Poll::Ready(Stop::Protocol {
                    error: Arc::new(error),
                    unacked: Vec::new(),
                })
            }
            Some(Outcome::Drop(reason)) => return Poll::Ready(Stop::LostAfterClose { reason }),
            Some(_) => return Poll::Ready(Stop::Closed),
            None => {}
        }
        while !self.senders_gone {
            match self.cmds.poll_recv(cx) {
                Poll::Ready(Some(Cmd::Flush(_, done) | Cmd::Close(done))) => {
                    let _ = done.send(Ok(()));
                }
                Poll::Ready(None) => self.senders_gone = true,
                Poll::Pending => break,
            }
        }
        Poll::Pending
    }

    /// [`freeze_queue`](Self::freeze_queue) because the sending half closes.
    /// Call with the slot's lock held (sends check `stopping` under it).
    fn freeze_queue_for_close(&mut self) {
        {
            let mut inbox = self.shared.inbox();
            inbox.stopping = true;
            self.shared.stopping.store(true, Ordering::SeqCst);
            inbox.sender_closed = true;
        }
        while let Ok(cmd) = self.cmds.try_recv() {
            self.backlog.push_back(cmd);
        }
    }

    /// Marks the client stopped (no send is accepted from now on) and moves every queued
    /// command into the backlog, so that the unacked list is final.
    fn freeze_queue(&mut self) {
        // Under the slot's lock: no send slips in after this.
        let _slot = self.shared.slot();
        self.shared.inbox().stopping = true;
        self.shared.stopping.store(true, Ordering::SeqCst);
        while let Ok(cmd) = self.cmds.try_recv() {
            self.backlog.push_back(cmd);
        }
    }

    /// Fails or completes everything still waiting, tells the handles, and answers later
    /// commands until every sender is gone.
    async fn stop(&mut self, stop: Stop) {
        self.freeze_queue();
        // Receipts of everything not settled now fail (they see `end` below).
        {
            let mut slot = self.shared.slot();
            slot.tracked.clear();
            slot.queue.clear();
        }
        self.stash.clear();
        for (_, done) in self.flushes.drain(..) {
            let _ = done.send(stop.flush_result());
        }
        for done in self.closing.drain(..) {
            let _ = done.send(stop.flush_result());
        }
        {
            let mut inbox = self.shared.inbox();
            inbox.end = Some(stop.clone());
            if let Some(w) = inbox.recv_waker.take() {
                w.wake();
            }
        }
        self.shared.room.notify_waiters();
        self.shared.wake_receipts();
        let answer = |cmd: Cmd| match cmd {
            Cmd::Flush(_, done) | Cmd::Close(done) => {
                let _ = done.send(stop.flush_result());
            }
        };
        for cmd in self.backlog.drain(..) {
            answer(cmd);
        }
        if self.senders_gone {
            return;
        }
        while let Some(cmd) = self.cmds.recv().await {
            answer(cmd);
        }
    }
}

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
        let _receipt = self.tx.send(payload).await?;
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
    cmds: mpsc::UnboundedSender<Cmd>,
    shared: Arc<Shared>,
    endpoint: Endpoint,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Flush(target, _) => write!(f, "Flush({target})"),
            Cmd::Close(_) => f.write_str("Close"),
        }
    }
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
        let payload = payload.into();
        let max = self.shared.max_payload.load(Ordering::Relaxed);
        if payload.len() > max {
            return Err(ClientError::Ack(AckError::PayloadTooLong {
                len: payload.len(),
                max,
            }));
        }
        // Most sends find room: try before registering with `room` (registering and
        // unregistering a waiter takes the Notify's lock twice). The wait is a boxed future
        // of its own, so this one stays small (it is moved on every call).
        match self.try_accept(payload) {
            Ok(accepted) => accepted,
            Err(payload) => Box::pin(self.wait_for_room(payload)).await,
        }
    }

    /// The rest of [`send`](Self::send) when the window was full: waits for room (or for
    /// the deadlock check to fire), then queues `payload`.
    async fn wait_for_room(&self, payload: Bytes) -> Result<Receipt, ClientError> {
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

    /// Accepts `payload` if the window has room (`Ok` with the outcome: a receipt, or
    /// `NotSent` if the client stopped); hands it back if the window is full.
    ///
    /// Under the slot's one lock: with a connection installed and nothing queued before it,
    /// the message goes straight into the connection's engine and is tracked for its receipt
    /// (the driver writes it in its next round, woken once per round, not per message);
    /// otherwise it is queued for the driver, behind the ones already waiting.
    fn try_accept(&self, payload: Bytes) -> Result<Result<Receipt, ClientError>, Bytes> {
        let shared = &*self.shared;
        let mut guard = shared.slot();
        if let Some(reason) = self.stopped_reason() {
            return Ok(Err(ClientError::NotSent { payload, reason }));
        }
        // Only senders holding the slot's lock write `accepted*`: plain loads and stores.
        let accepted = shared.accepted.load(Ordering::Relaxed);
        let accepted_bytes = shared.accepted_bytes.load(Ordering::Relaxed);
        let in_window = accepted.saturating_sub(shared.settled.load(Ordering::Relaxed));
        let in_window_bytes =
            accepted_bytes.saturating_sub(shared.settled_bytes.load(Ordering::Relaxed));
        // As on the wire: a message is accepted while fewer messages and fewer bytes than the
        // window are unacknowledged, so what the client holds is bounded by its byte cap plus
        // one message, whatever the server grants.
        if in_window >= shared.window.load(Ordering::Relaxed)
            || in_window_bytes >= shared.window_bytes.load(Ordering::Relaxed)
        {
            return Err(payload);
        }
        let len = payload.len();
        let slot = &mut *guard;
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
        let wake = !slot.kicked;
        slot.kicked = true;
        drop(guard);
        if wake {
            shared.driver_task.wake();
        }
        Ok(Ok(Receipt {
            id,
            shared: Arc::clone(&self.shared),
        }))
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

/// The receiving half of an [`AckClient`]. Also a `Stream` of `Result<Delivery, ClientError>`.
///
/// Receive in its own task while another sends, as in [`AckSender`]'s example: an echo
/// server's replies fill the window this client granted unless something takes them.
#[derive(Debug)]
pub struct AckReceiver {
    shared: Arc<Shared>,
    /// The stream yielded its end (or its error) already.
    ended: bool,
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
        self.shared
            .receiving
            .store(r.is_pending(), Ordering::SeqCst);
        r
    }

    fn poll_recv_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Delivery>, ClientError>> {
        // Register first: a connection installed (or a stop) after the checks below wakes us.
        {
            let mut inbox = self.shared.inbox();
            if let Some(end) = &inbox.end {
                return Poll::Ready(end.recv_result());
            }
            match &inbox.recv_waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => inbox.recv_waker = Some(cx.waker().clone()),
            }
        }
        let carried = {
            let mut carry = self.shared.carry();
            carry.pop_front().map(|d| (d, carry.is_empty()))
        };
        if let Some((d, now_empty)) = carried {
            self.shared.received.fetch_add(1, Ordering::Relaxed);
            if now_empty {
                // The driver waits for this before reconnecting.
                if let Some(w) = self.shared.inbox().driver_waker.take() {
                    w.wake();
                }
            }
            return Poll::Ready(Ok(Some(d)));
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
        let outcome = match conn.poll_recv(cx) {
            Poll::Ready(Ok(Some(delivery))) => {
                self.shared.received.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use framewire_codec::ack::AckFramed;
    use futures_util::StreamExt;

    /// The ordering rule of [`Slot`]: while a message accepted earlier waits in the queue
    /// (accepted during a reconnect, not yet handed to the new connection by the driver), a
    /// send does not go straight into the engine ahead of it, but queues behind it.
    #[tokio::test]
    async fn a_send_does_not_overtake_a_queued_message() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut conn = AckFramed::builder().window(64).new_framed(stream);
            let mut got = Vec::new();
            while let Some(Ok(d)) = conn.next().await {
                got.push(d.payload);
            }
            got
        });
        let client = crate::Client::builder()
            .reconnect(ReconnectPolicy::never())
            .connect_ack(addr)
            .await
            .expect("connect");
        let shared = Arc::clone(&client.tx.shared);
        // The driver installs the connection when it first runs.
        while shared.slot().conn.is_none() {
            tokio::task::yield_now().await;
        }
        {
            // As `try_accept` queues a message while no connection is installed.
            let mut slot = shared.slot();
            let id = slot.next_id;
            slot.next_id += 1;
            slot.queue.push_back(SendCmd {
                id,
                payload: Bytes::from_static(b"queued"),
            });
            shared.accepted.fetch_add(1, Ordering::Relaxed);
            shared.accepted_bytes.fetch_add(6, Ordering::Relaxed);
        }
        // The window has room: `send` returns without yielding, so the driver (on this
        // single-threaded runtime) has not run meanwhile.
        let receipt = client.send("direct").await.expect("send");
        {
            let slot = shared.slot();
            let in_engine = slot.conn.as_ref().map(|c| c.state().unacked().count());
            assert_eq!(
                in_engine,
                Some(0),
                "nothing went ahead of the queued message"
            );
            assert_eq!(slot.queue.len(), 2);
        }
        tokio::time::timeout(Duration::from_secs(10), receipt)
            .await
            .expect("receipt in time")
            .expect("acknowledged");
        client.close().await.expect("close");
        let got = server.await.expect("server task");
        assert_eq!(got, [&b"queued"[..], &b"direct"[..]]);
    }
}
