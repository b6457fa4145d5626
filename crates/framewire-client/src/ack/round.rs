//! The driver's connected phase: [`Driver::poll_connected`], one round of commands, queued
//! sends handed to the engine, writes, reads, receipts settled ([`Driver::settle`]), the ack
//! timeout, and the half-close; then [`Driver::poll_half_closed`] while only the receiving
//! half reads.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};

use framewire_codec::ack::AckError;
use framewire_codec::{Cause, EarlierError};

use super::driver::Driver;
use super::end::{classify, going_away, Outcome, Stop};
use super::shared::{Cmd, SendCmd, Slot, Tracked};
#[cfg(doc)]
use super::AckSender;
use super::Conn;
use crate::ClientError;

impl Driver {
    /// [`settle`](Self::settle) for a connection out of the slot (taking the slot's lock).
    pub(super) fn settle_now(&mut self, conn: &Conn) -> bool {
        let shared = Arc::clone(&self.shared);
        let mut slot = shared.slot();
        self.settle(&mut slot.tracked, conn)
    }

    /// Resolves the receipts of every message the current connection acknowledged
    /// (`tracked` is the slot's, whose lock the caller holds).
    pub(super) fn settle(&mut self, tracked: &mut VecDeque<Tracked>, conn: &Conn) -> bool {
        let mut any = self.shared.settle_tracked(tracked, conn.acked_through());
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
    pub(super) fn poll_carry_taken(&mut self, cx: &mut Context<'_>) -> Poll<()> {
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
                let mut carry = self.shared.carry();
                carry.clear();
                self.shared.carried.store(false, Ordering::Release);
                return Poll::Ready(());
            }
        }
        if self.shared.carry().is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    pub(super) fn poll_connected(&mut self, cx: &mut Context<'_>) -> Poll<Outcome> {
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
        if slot.ack_kick {
            // Woken by the receiving half for an ACK: the task that took the messages has
            // likely just woken the task that answers them (as a pipelining client does, or a
            // ping-pong loop). Yield once, as `tokio::task::yield_now` does: the runtime wakes
            // this task again once it has run what was already woken, the runtime's
            // `block_on` future included (a wake-up of its own would put it back in the run
            // queue ahead of that future: measured, loadgen's ping then wrote the ACK and the
            // next request separately), so that what the answering task sends goes out in the
            // same write as the ACK. Bounded: one pass of the scheduler; `kicked` stays set
            // meanwhile (sends need not wake, and the receiving half cannot ask for a second
            // yield before this round).
            slot.ack_kick = false;
            drop(guard);
            let yielded = std::pin::pin!(tokio::task::yield_now()).poll(cx);
            debug_assert!(yielded.is_pending(), "a fresh yield_now is pending once");
            return Poll::Pending;
        }
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

    /// After the sending half closed: answers commands (nothing of ours is unacknowledged)
    /// until the receiving half saw the end of the connection, or was dropped. Ready with
    /// how the client ends.
    pub(super) fn poll_half_closed(&mut self, cx: &mut Context<'_>) -> Poll<Stop> {
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
}
