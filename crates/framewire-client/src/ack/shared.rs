//! The state the handles ([`AckSender`], [`AckReceiver`], [`Receipt`]) share with the
//! driver task: [`Shared`] (counters, window, receipts' watermark, wakers), [`Slot`] (the
//! current connection and the send queue, under one lock: the ordering rule is stated there),
//! [`Inbox`] (how the handles learn that the client stopped), and the small records that
//! travel between them ([`SendCmd`], [`Cmd`], [`Tracked`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::Duration;

use bytes::Bytes;
use framewire_codec::ack::{Delivery, SessionId};
use futures_util::task::AtomicWaker;
use tokio::sync::{oneshot, Notify};

use super::end::{Outcome, Stop};
#[cfg(doc)]
use super::{AckReceiver, AckSender, Receipt};
use super::{Conn, DEFAULT_DEADLOCK_GRACE};
use crate::{ClientError, InFlight};

/// State shared by the handles and the driver.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) inbox: Mutex<Inbox>,
    /// The current connection. The driver polls its sink side; the receiving half polls its
    /// stream side directly, so a message is taken (and acknowledged) exactly when `recv`
    /// returns it.
    pub(super) slot: Mutex<Slot>,
    /// Messages accepted by `send` (queued or in flight).
    pub(super) accepted: AtomicU64,
    /// Messages acknowledged (or given up on); `accepted - settled` is what the window holds.
    pub(super) settled: AtomicU64,
    /// Payload bytes of the messages accepted, and of those settled: the byte window.
    pub(super) accepted_bytes: AtomicU64,
    pub(super) settled_bytes: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) redeliveries: AtomicU64,
    /// Reconnects on which the server no longer had the session (see `sessions_lost`).
    pub(super) sessions_lost: AtomicU64,
    /// The window the current peer granted, clamped to this client's caps, in messages and
    /// in bytes.
    pub(super) window: AtomicU64,
    pub(super) window_bytes: AtomicU64,
    /// Messages received on a connection that ended (the peer went away) and not yet taken
    /// by `recv`: delivered before anything from the next connection.
    pub(super) carry: Mutex<VecDeque<Delivery>>,
    /// The longest payload the current peer (and this side's codec) accepts.
    pub(super) max_payload: AtomicUsize,
    /// Notified when the window gains room or the client stops.
    pub(super) room: Notify,
    /// Every id up to this one is settled (acknowledged, or refused): the receipts'
    /// watermark.
    pub(super) acked_id: AtomicU64,
    /// Receipts waiting for the watermark to move (woken, and emptied, at each move).
    pub(super) receipt_wakers: Mutex<Vec<Waker>>,
    /// Ids refused as too long by the peer of the time, with the payload length and limit.
    pub(super) refused: Mutex<Vec<(u64, usize, usize)>>,
    /// Mirrors `Inbox::stopping` (set under the slot lock with it), so that `send` checks it
    /// without taking the inbox lock.
    pub(super) stopping: std::sync::atomic::AtomicBool,
    /// `true` while the receiving half waits in `recv` (for the deadlock check).
    pub(super) receiving: std::sync::atomic::AtomicBool,
    /// How long `send`/`flush` wait with no ack before the deadlock check; `None`: never.
    pub(super) deadlock_grace: Option<std::time::Duration>,
    /// The driver task, woken by the first send after each of its rounds (see
    /// `Slot::kicked`; registered at each of its polls: no lock per message).
    pub(super) driver_task: AtomicWaker,
    /// The client's session; all zero with a server that does not keep sessions.
    pub(super) session: Mutex<SessionId>,
    /// Mirrors `Inbox::end.is_some()` (set under the inbox lock with it), so that `recv`
    /// checks it without taking the lock.
    pub(super) ended: AtomicBool,
    /// `true` while `carry` holds messages (changed under the carry lock), so that `recv`
    /// looks there only when it does.
    pub(super) carried: AtomicBool,
    /// `true` while `Inbox::recv_waker` holds the waker the receiving half registered last
    /// (set under the inbox lock by the receiving half, cleared by
    /// [`take_recv_waker`](Self::take_recv_waker)): a `recv` polled again with the same waker
    /// need not register it again.
    pub(super) recv_registered: AtomicBool,
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
            ended: AtomicBool::new(false),
            carried: AtomicBool::new(false),
            recv_registered: AtomicBool::new(false),
        }
    }
}

impl Shared {
    pub(super) fn inbox(&self) -> MutexGuard<'_, Inbox> {
        // A panic while holding this lock leaves only plain data behind; keep going.
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every receipt waiting for the watermark (it moved, or the client stopped).
    /// Resolves the receipts of the messages in `tracked` (the slot's, whose lock the caller
    /// holds) that the connection acknowledged through seq `through`: counts them settled
    /// (room in the client's window), moves the receipt watermark, wakes waiters. Returns
    /// whether any was.
    pub(super) fn settle_tracked(&self, tracked: &mut VecDeque<Tracked>, through: u64) -> bool {
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
        let Some(id) = last else {
            return false;
        };
        self.settled.fetch_add(settled, Ordering::Relaxed);
        self.settled_bytes
            .fetch_add(settled_bytes, Ordering::Relaxed);
        self.acked_id.store(id, Ordering::Release);
        self.room.notify_waiters();
        self.wake_receipts();
        true
    }

    pub(super) fn wake_receipts(&self) {
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

    /// Takes the receiving half's waker out of `inbox` (this `Shared`'s, locked by the
    /// caller) to wake it: whoever changes what `recv` waits for (a connection installed,
    /// messages carried, the end) wakes the receiving half through this, after the change.
    pub(super) fn take_recv_waker(&self, inbox: &mut Inbox) -> Option<Waker> {
        self.recv_registered.store(false, Ordering::Release);
        inbox.recv_waker.take()
    }

    pub(super) fn carry(&self) -> MutexGuard<'_, VecDeque<Delivery>> {
        self.carry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the current connection's limits.
    pub(super) fn set_limits(&self, conn: &Conn) {
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
    pub(super) fn deadlock(
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

    pub(super) fn in_flight(&self) -> InFlight {
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
pub(super) struct Slot {
    /// `None` while reconnecting and after the client stopped.
    pub(super) conn: Option<Conn>,
    /// Set by the receiving half when its poll ended the connection; the driver acts on it.
    pub(super) reported: Option<Outcome>,
    /// The id the next accepted message gets.
    pub(super) next_id: u64,
    /// Messages accepted by `send` that wait for the driver to hand them to a connection (no
    /// connection, its window full, or behind others that wait), in id order.
    pub(super) queue: VecDeque<SendCmd>,
    /// Messages handed to a connection (or refused by it) and not yet acknowledged, in id
    /// order.
    pub(super) tracked: VecDeque<Tracked>,
    /// A send woke the driver since its last connected round began: later sends need not
    /// (one wake-up per round, not per message). Cleared by the driver under this lock at
    /// the start of each round, before it writes.
    pub(super) kicked: bool,
    /// The receiving half woke the driver for an ACK (see `AckReceiver::poll_recv`): before
    /// its round the driver lets the tasks woken with it run first, so that what they send
    /// goes out in the ACK's write. The ACK itself is written by the driver (the receiving
    /// half's polls write nothing), in one write with the messages sent meanwhile.
    pub(super) ack_kick: bool,
}

/// How the handles learn that the client stopped, and the wakers between them.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    pub(super) end: Option<Stop>,
    /// Set (under the slot lock) when the driver stops accepting sends.
    pub(super) stopping: bool,
    /// Set with `stopping` when it is because of [`AckSender::close`].
    pub(super) sender_closed: bool,
    pub(super) recv_waker: Option<Waker>,
    pub(super) driver_waker: Option<Waker>,
    pub(super) receiver_dropped: bool,
}

/// One message accepted by `send` while it could not go to the connection at once, on its
/// way to the driver (no channel, no allocation of its own: the sending task pushes it onto
/// `Slot::queue`).
#[derive(Debug)]
pub(super) struct SendCmd {
    pub(super) id: u64,
    pub(super) payload: Bytes,
}

pub(super) enum Cmd {
    /// Completes once every id up to the first field is settled.
    Flush(u64, oneshot::Sender<Result<(), ClientError>>),
    Close(oneshot::Sender<Result<(), ClientError>>),
}

/// One accepted, not yet acknowledged message. Its payload is not kept here: the
/// connection's engine holds it until it is acknowledged (and, between connections without
/// sessions, `Driver::stash`).
#[derive(Debug)]
pub(super) struct Tracked {
    pub(super) id: u64,
    /// Its seq on the current connection (`u64::MAX` while not yet resent on it; 0 for a
    /// message refused as too long, which is settled as soon as it is at the front).
    pub(super) seq: u64,
    /// Its payload's length (for the byte window).
    pub(super) len: usize,
    /// Refused by the peer of the time as too long: never sent, never resent.
    pub(super) refused: bool,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Flush(target, _) => write!(f, "Flush({target})"),
            Cmd::Close(_) => f.write_str("Close"),
        }
    }
}
