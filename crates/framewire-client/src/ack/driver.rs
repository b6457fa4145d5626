//! The driver task's life: [`Driver`] (what it owns), [`Driver::run`] (connected phase,
//! then drop, reconnect or stop, in a loop), handing a connection in and out of the slot
//! (`install`, `park`), and stopping for good (`stop`, `freeze_queue`). The connected phase
//! itself is in `round.rs`, reconnecting in `connect.rs`.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use framewire_codec::ack::{AckError, AckState, SessionStatus};
use framewire_codec::EarlierError;
use tokio::sync::{mpsc, oneshot};

use super::connect::AckSettings;
use super::end::{Outcome, Stop};
use super::shared::{Cmd, Shared};
#[cfg(doc)]
use super::AckSender;
use super::Conn;
use crate::ClientError;

pub(super) struct Driver {
    pub(super) settings: AckSettings,
    pub(super) shared: Arc<Shared>,
    pub(super) cmds: mpsc::UnboundedReceiver<Cmd>,
    /// Commands taken from the channel but not yet handled (after a clean close by the peer
    /// raced with new sends).
    pub(super) backlog: VecDeque<Cmd>,
    /// Without sessions, after a connection ended: the payloads of the tracked messages
    /// (refused ones aside) that no connection's engine holds, in order, waiting for the
    /// resend. They follow those still in the current connection's engine.
    pub(super) stash: VecDeque<Bytes>,
    pub(super) flushes: Vec<(u64, oneshot::Sender<Result<(), ClientError>>)>,
    /// `close` calls waiting (clones of the sender may each call it).
    pub(super) closing: Vec<oneshot::Sender<Result<(), ClientError>>>,
    pub(super) senders_gone: bool,
    /// When the current connection counts as dead if no ack arrives (with messages in
    /// flight and an ack timeout configured).
    pub(super) ack_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The connection's `acked_through` when the deadline was last reset.
    pub(super) deadline_acked: u64,
    /// The server keeps sessions: every connection drives the one session state, which
    /// waits here between connections. `false`: a new state per connection, and a resend.
    pub(super) sessions: bool,
    pub(super) state: Option<AckState>,
}

impl Driver {
    pub(super) async fn run(mut self, conn: Conn) {
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
                            {
                                let mut carry = self.shared.carry();
                                carry.extend(inbox);
                                self.shared.carried.store(true, Ordering::Release);
                            }
                            let waker = self.shared.take_recv_waker(&mut self.shared.inbox());
                            if let Some(w) = waker {
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
    pub(super) fn resumed(&mut self, conn: &Conn) {
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
    fn install(&mut self, mut conn: Conn) {
        // The receiving half's polls write nothing: an ACK due after a `recv` waits for this
        // task's next round (the receiving half wakes it), where it goes out in one write
        // with the messages sent meanwhile.
        conn.defer_receiver_writes(true);
        // Both this task and the receiving half poll the read path, mostly finding nothing:
        // those polls ask the socket first instead of allocating the read buffer to try.
        conn.wait_readable();
        {
            let mut slot = self.shared.slot();
            slot.conn = Some(conn);
            slot.reported = None;
        }
        let waker = self.shared.take_recv_waker(&mut self.shared.inbox());
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Without sessions, a connection ends: the payloads its engine holds go in front of the
    /// stash (they are older than what still waits there for the resend). Call after
    /// [`settle`](Self::settle), so that they match the tracked messages left.
    pub(super) fn stash_unacked(&mut self, conn: &mut Conn) {
        let mut older: VecDeque<Bytes> = conn.take_unacked().into();
        older.append(&mut self.stash);
        self.stash = older;
    }

    /// Every message accepted by `send` and not acknowledged, oldest first: in flight (in
    /// `conn`'s engine, or the session's state while disconnected), waiting for a resend,
    /// and still queued. Call after [`settle`](Self::settle), with `conn` out of the slot.
    pub(super) fn unacked_payloads(&self, conn: Option<&Conn>) -> Vec<Bytes> {
        let slot = self.shared.slot();
        let engine = conn.map(|c| c.state()).or(self.state.as_ref());
        engine
            .into_iter()
            .flat_map(|state| state.unacked().map(|m| m.payload.clone()))
            .chain(self.stash.iter().cloned())
            .chain(slot.queue.iter().map(|p| p.payload.clone()))
            .collect()
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

    /// [`freeze_queue`](Self::freeze_queue) because the sending half closes.
    /// Call with the slot's lock held (sends check `stopping` under it).
    pub(super) fn freeze_queue_for_close(&mut self) {
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
    pub(super) fn freeze_queue(&mut self) {
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
            self.shared.ended.store(true, Ordering::Release);
            if let Some(w) = self.shared.take_recv_waker(&mut inbox) {
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
