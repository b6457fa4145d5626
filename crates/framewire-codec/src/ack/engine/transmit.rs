//! The engine's sending side, timers and output: what [`AckState`] transmits, and when.

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::time::Instant;

use bytes::Bytes;

use super::{AckEvent, AckState, Outgoing};
use crate::ack::wire::{AckFrame, GoAwayReason, DATA_HEADER_LEN};
use crate::ack::AckError;

impl AckState {
    // ---------------------------------------------------------------- sending

    /// The window the peer granted, in messages (0 until its HELLO arrives), before clamping.
    pub fn peer_window(&self) -> u32 {
        self.peer.map_or(0, |h| h.window)
    }

    /// The window this side sends with, in messages: the peer's grant clamped to
    /// [`AckConfig::max_unacked`](crate::ack::AckConfig::max_unacked) (0 until the peer's HELLO arrives).
    pub fn send_window(&self) -> u32 {
        self.send_window
    }

    /// The window this side sends with, in bytes: the peer's grant clamped to
    /// [`AckConfig::max_unacked_bytes`](crate::ack::AckConfig::max_unacked_bytes) (0 until the peer's HELLO arrives).
    pub fn send_window_bytes(&self) -> u32 {
        self.send_window_bytes
    }

    /// Messages sent (accepted by [`send`](Self::send)) and not yet acknowledged.
    #[inline]
    pub fn in_flight(&self) -> u64 {
        self.unacked.len() as u64
    }

    /// Payload bytes of the messages in flight.
    pub fn in_flight_bytes(&self) -> u64 {
        self.unacked_bytes
    }

    /// How many more messages the window takes now, by count alone (0 before the peer's
    /// HELLO, and 0 while the byte window is used up).
    #[inline]
    pub fn room(&self) -> u64 {
        if self.unacked_bytes >= u64::from(self.send_window_bytes) {
            return 0;
        }
        u64::from(self.send_window).saturating_sub(self.in_flight())
    }

    /// `true` if [`send`](Self::send) accepts a message now: fewer messages and fewer bytes
    /// than the window are unacknowledged.
    #[inline]
    pub fn has_room(&self) -> bool {
        self.room() > 0
    }

    /// The longest application payload the peer accepts in one DATA frame (0 before its
    /// HELLO).
    #[inline]
    pub fn max_payload_len(&self) -> usize {
        self.peer.map_or(0, |h| {
            (h.max_frame_len as usize).saturating_sub(DATA_HEADER_LEN)
        })
    }

    /// Queues `payload` as the next DATA frame and returns its sequence number.
    ///
    /// `redelivery` sets the frame's redelivery flag: the message may have been delivered
    /// before, on an earlier connection. The payload is kept (a cheap `Bytes` clone) until it
    /// is acknowledged.
    ///
    /// # Errors
    ///
    /// [`AckError::WindowFull`] if there is no [`room`](Self::room) (including before the
    /// peer's HELLO), [`AckError::PayloadTooLong`] if it exceeds
    /// [`max_payload_len`](Self::max_payload_len). Nothing is queued then.
    pub fn send(&mut self, payload: Bytes, redelivery: bool) -> Result<u64, AckError> {
        self.try_send(payload, redelivery).map_err(|(e, _)| e)
    }

    /// As [`send`](Self::send), but an error hands the payload back, for a caller that must
    /// not lose it (and keeps no copy of its own meanwhile).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), with the payload.
    #[inline]
    pub fn try_send(&mut self, payload: Bytes, redelivery: bool) -> Result<u64, (AckError, Bytes)> {
        if !self.has_room() {
            let e = AckError::WindowFull {
                in_flight: self.in_flight(),
                in_flight_bytes: self.unacked_bytes,
                window: self.send_window,
                window_bytes: self.send_window_bytes,
            };
            return Err((e, payload));
        }
        let max = self.max_payload_len();
        if payload.len() > max {
            let len = payload.len();
            return Err((AckError::PayloadTooLong { len, max }, payload));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked_bytes += payload.len() as u64;
        self.unacked.push_back(Outgoing {
            seq,
            payload,
            redelivery,
        });
        Ok(seq)
    }

    /// [`try_send`](Self::try_send) (not a redelivery) for the messages at the front of
    /// `payloads`, in order, each popped once queued, while the window has room, the
    /// message's length is at most `max` and [`max_payload_len`](Self::max_payload_len), and
    /// `admit(seq, len)` agrees (it is told the seq the message gets; once it returned
    /// `true` the message is queued). Stops at the first message it does not queue, left at
    /// the front. Returns how many were queued. The same outcome as `try_send` one by one,
    /// with the checks that do not depend on the message made once.
    pub(crate) fn send_from(
        &mut self,
        payloads: &mut VecDeque<Bytes>,
        max: usize,
        mut admit: impl FnMut(u64, usize) -> bool,
    ) -> usize {
        let max = max.min(self.max_payload_len());
        let mut room = self.room();
        let mut queued = 0;
        while room > 0 && self.unacked_bytes < u64::from(self.send_window_bytes) {
            let Some(len) = payloads.front().map(Bytes::len) else {
                break;
            };
            if len > max || !admit(self.next_seq, len) {
                break;
            }
            let Some(payload) = payloads.pop_front() else {
                break;
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            self.unacked_bytes += len as u64;
            self.unacked.push_back(Outgoing {
                seq,
                payload,
                redelivery: false,
            });
            room -= 1;
            queued += 1;
        }
        queued
    }

    /// The highest seq accepted by [`send`](Self::send) (0 before the first).
    pub fn last_sent(&self) -> u64 {
        self.next_seq - 1
    }

    /// The highest seq handed out by [`poll_transmit`](Self::poll_transmit).
    pub fn transmitted_through(&self) -> u64 {
        self.transmitted
    }

    /// The peer's highest cumulative ACK.
    #[inline]
    pub fn acked_through(&self) -> u64 {
        self.acked
    }

    /// `true` when every message sent has been acknowledged.
    #[inline]
    pub fn all_acked(&self) -> bool {
        self.unacked.is_empty()
    }

    /// The sequence numbers acknowledged since the previous call, if any.
    pub fn poll_acked(&mut self) -> Option<RangeInclusive<u64>> {
        if self.acked > self.reported_acked {
            let r = self.reported_acked + 1..=self.acked;
            self.reported_acked = self.acked;
            Some(r)
        } else {
            None
        }
    }

    /// The next thing the engine noticed (at most one pending event of each kind: acks are
    /// coalesced into the latest).
    pub fn poll_event(&mut self) -> Option<AckEvent> {
        self.events.pop_front()
    }

    /// The sent but unacknowledged messages, oldest first (transmitted or not).
    pub fn unacked(&self) -> impl ExactSizeIterator<Item = &Outgoing> + '_ {
        self.unacked.iter()
    }

    /// Removes and returns the payloads of every sent but unacknowledged message, oldest
    /// first. For when the connection is gone: resend them (flagged as redeliveries) on a new
    /// connection, or report them lost. The state should not be used for sending afterwards.
    pub fn take_unacked(&mut self) -> Vec<Bytes> {
        self.unacked_bytes = 0;
        self.unacked.drain(..).map(|m| m.payload).collect()
    }

    /// This side is going away (shutdown, restart, idle close): queues a GOAWAY, sent after
    /// the frames already queued. The peer should reconnect rather than take the close that
    /// follows as the end of the conversation. Only the first call queues one.
    pub fn go_away(&mut self, reason: GoAwayReason) {
        if !self.goaway_sent && self.goaway_pending.is_none() {
            self.goaway_pending = Some(reason);
        }
    }

    // ---------------------------------------------------------------- timers

    /// Advances the timers to `now`. The first call arms them. Queues a keepalive PING after
    /// [`AckConfig::keepalive`](crate::ack::AckConfig::keepalive) without receiving anything.
    ///
    /// # Errors
    ///
    /// [`AckError::PeerSilent`] after [`AckConfig::peer_timeout`](crate::ack::AckConfig::peer_timeout) without receiving anything.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), AckError> {
        let Some(last) = self.last_heard.filter(|_| !self.heard) else {
            self.heard = false;
            self.last_heard = Some(now);
            self.ping_outstanding = false;
            return Ok(());
        };
        let silent = now.saturating_duration_since(last);
        if let Some(t) = self.config.peer_timeout {
            if silent >= t {
                return Err(AckError::PeerSilent {
                    silent_ms: u64::try_from(silent.as_millis()).unwrap_or(u64::MAX),
                    timeout_ms: u64::try_from(t.as_millis()).unwrap_or(u64::MAX),
                });
            }
        }
        if let Some(k) = self.config.keepalive {
            if silent >= k && !self.ping_outstanding {
                self.ping_outstanding = true;
                self.ping_token = self.ping_token.wrapping_add(1);
                self.ping_pending = Some(self.ping_token);
            }
        }
        Ok(())
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next (`None` before
    /// its first call, or with neither keepalive nor peer timeout configured).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let last = self.last_heard?;
        let keepalive = self
            .config
            .keepalive
            .filter(|_| !self.ping_outstanding || self.heard)
            .and_then(|k| last.checked_add(k));
        let timeout = self.config.peer_timeout.and_then(|t| last.checked_add(t));
        match (keepalive, timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---------------------------------------------------------------- output

    /// `true` if [`poll_transmit`](Self::poll_transmit) would return a frame.
    #[inline]
    pub fn has_transmit(&self) -> bool {
        self.hello_pending
            || (!self.hello_held()
                && (self.ack_pending
                    || self.pong_pending.is_some()
                    || self.ping_pending.is_some()
                    || self.goaway_pending.is_some()
                    || (self.transmitted < self.next_seq - 1 && self.peer.is_some())))
    }

    /// The next frame to transmit, if any: this side's HELLO first, then a pending ACK (one
    /// cumulative ACK however many messages it covers), PONG, PING, DATA frames in seq order,
    /// and a GOAWAY last. On the accepting side nothing goes out before its HELLO, which
    /// waits for the peer's (and for the answer to the peer's session request).
    ///
    /// Handing a frame out counts as transmitting it; the caller must write it to the
    /// transport in the order returned.
    pub fn poll_transmit(&mut self) -> Option<AckFrame<Bytes>> {
        Some(self.poll_transmit_shared()?.map_payload(Bytes::clone))
    }

    /// [`poll_transmit`](Self::poll_transmit) with a DATA payload borrowed from the unacked
    /// queue rather than cloned: for drivers that copy the frame into a write buffer at once.
    #[inline]
    pub fn poll_transmit_ref(&mut self) -> Option<AckFrame<&[u8]>> {
        Some(self.poll_transmit_shared()?.map_payload(|p| &p[..]))
    }

    /// [`poll_transmit`](Self::poll_transmit) with a DATA payload borrowed from the unacked
    /// queue as the [`Bytes`] the engine holds: the driver copies a small one and queues a
    /// large one by reference.
    #[inline]
    pub(crate) fn poll_transmit_shared(&mut self) -> Option<AckFrame<&Bytes>> {
        if self.hello_pending {
            self.hello_pending = false;
            return Some(AckFrame::Hello(self.local));
        }
        if self.hello_held() {
            // Accepting side: its HELLO (which waits for the peer's) goes out first.
            return None;
        }
        if self.ack_pending {
            self.ack_pending = false;
            // The bytes the ACK covers (every byte taken since the last one) are room the
            // peer may use again.
            self.recv_unacked_bytes -= self.taken_unacked_bytes;
            self.taken_unacked_bytes = 0;
            self.ack_sent = self.taken;
            return Some(AckFrame::Ack {
                through: self.taken,
            });
        }
        if let Some(token) = self.pong_pending.take() {
            return Some(AckFrame::Pong { token });
        }
        if let Some(token) = self.ping_pending.take() {
            return Some(AckFrame::Ping { token });
        }
        // DATA waits for the peer's HELLO: on a resumed session it says what to skip.
        if self.transmitted < self.next_seq - 1 && self.peer.is_some() {
            let seq = self.transmitted + 1;
            self.transmitted = seq;
            let m = self.unacked_get(seq)?;
            return Some(AckFrame::Data {
                seq,
                redelivery: m.redelivery,
                payload: &m.payload,
            });
        }
        let reason = self.goaway_pending.take()?;
        self.goaway_sent = true;
        Some(AckFrame::GoAway {
            reason,
            through: self.taken,
        })
    }

    /// Hands the DATA frames [`poll_transmit`](Self::poll_transmit) would return next, when
    /// nothing else comes before them, to `f` (seq, redelivery flag, payload) in order, each
    /// counted as transmitted once `f` returned `true`, until `f` returns `false` or none is
    /// left. Does nothing if another frame (HELLO, ACK, PONG, PING) must go first. The same
    /// frames as `poll_transmit` one by one, without its checks per frame.
    pub(crate) fn transmit_data_with(&mut self, mut f: impl FnMut(u64, bool, &Bytes) -> bool) {
        let data_next = !self.hello_pending
            && !self.hello_held()
            && !self.ack_pending
            && self.pong_pending.is_none()
            && self.ping_pending.is_none()
            && self.peer.is_some();
        if !data_next {
            return;
        }
        let Some(front) = self.unacked.front().map(|m| m.seq) else {
            return;
        };
        let Some(start) = (self.transmitted + 1)
            .checked_sub(front)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return;
        };
        for m in self.unacked.range(start.min(self.unacked.len())..) {
            if !f(m.seq, m.redelivery, &m.payload) {
                break;
            }
            self.transmitted = m.seq;
        }
    }

    /// The unacked message `seq`, if it is still unacked.
    fn unacked_get(&self, seq: u64) -> Option<&Outgoing> {
        let front = self.unacked.front()?.seq;
        let idx = usize::try_from(seq.checked_sub(front)?).ok()?;
        self.unacked.get(idx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use bytes::Bytes;

    use crate::ack::wire::AckFrame;
    use crate::ack::{AckConfig, AckState};

    /// A sender whose peer granted `window` messages and `window_bytes` bytes, with a frame
    /// limit of `max_frame_len`, and `sent` messages of 10 bytes already in flight.
    fn sender(window: u32, window_bytes: u32, max_frame_len: usize, sent: usize) -> AckState {
        let config = AckConfig::new().window(window).window_bytes(window_bytes);
        let mut tx = config.build(max_frame_len);
        let mut rx = config.build(max_frame_len);
        let hello = tx.poll_transmit().expect("tx's HELLO");
        rx.handle_frame(hello.to_bytes()).expect("HELLO accepted");
        let hello = rx.poll_transmit().expect("rx's HELLO");
        tx.handle_frame(hello.to_bytes()).expect("HELLO accepted");
        for _ in 0..sent {
            tx.send(Bytes::from(vec![1u8; 10]), false).expect("room");
        }
        tx
    }

    /// `send_from` queues exactly what `try_send` one by one would, in the same state, and
    /// leaves the first message it does not queue at the front.
    #[test]
    fn send_from_matches_try_send_one_by_one() {
        let lens = [5usize, 0, 40, 7, 200, 3, 3, 3, 60, 1];
        for (window, window_bytes, max_frame_len, sent, max, admit_until) in [
            (64, 1 << 20, 1 << 20, 0, usize::MAX, u64::MAX), // everything fits
            (4, 1 << 20, 1 << 20, 1, usize::MAX, u64::MAX),  // the message window fills
            (64, 60, 1 << 20, 2, usize::MAX, u64::MAX),      // the byte window fills
            (64, 1 << 20, 100, 0, usize::MAX, u64::MAX),     // 200 B is over the peer's limit
            (64, 1 << 20, 1 << 20, 0, 100, u64::MAX),        // ... or over the caller's
            (64, 1 << 20, 1 << 20, 3, usize::MAX, 6),        // `admit` refuses seq 6
            (1, 1 << 20, 1 << 20, 1, usize::MAX, u64::MAX),  // no room at all
        ] {
            let case = (window, window_bytes, max_frame_len, sent, max, admit_until);
            let base = sender(window, window_bytes, max_frame_len, sent);
            let mut payloads: VecDeque<Bytes> =
                lens.iter().map(|&n| Bytes::from(vec![2u8; n])).collect();

            let mut one_by_one = base.clone();
            let mut expected = Vec::new();
            for p in &payloads {
                let seq = one_by_one.last_sent() + 1;
                if p.len() > max || seq > admit_until {
                    break;
                }
                match one_by_one.try_send(p.clone(), false) {
                    Ok(seq) => expected.push((seq, p.len())),
                    Err(_) => break,
                }
            }

            let mut run = base.clone();
            let mut admitted = Vec::new();
            let queued = run.send_from(&mut payloads, max, |seq, len| {
                let ok = seq <= admit_until;
                if ok {
                    admitted.push((seq, len));
                }
                ok
            });
            assert_eq!(queued, expected.len(), "{case:?}");
            assert_eq!(admitted, expected, "{case:?}");
            assert_eq!(payloads.len(), lens.len() - queued, "{case:?}");
            assert_eq!(format!("{run:?}"), format!("{one_by_one:?}"), "{case:?}");
        }
    }

    /// `transmit_data_with` hands out the DATA frames `poll_transmit` would, in order, counts
    /// as transmitted only those `f` accepted, and stands aside when another frame is due.
    #[test]
    fn transmit_data_with_matches_poll_transmit() {
        for (sent, take_first, stop_after) in [(0, 0, 9), (5, 0, 9), (5, 2, 9), (8, 1, 3)] {
            let case = (sent, take_first, stop_after);
            let mut base = sender(64, 1 << 20, 1 << 20, sent);
            for _ in 0..take_first {
                base.poll_transmit().expect("a DATA frame");
            }
            let mut general = base.clone();
            let mut expected = Vec::new();
            while expected.len() < stop_after {
                match general.poll_transmit() {
                    Some(AckFrame::Data {
                        seq,
                        redelivery,
                        payload,
                    }) => expected.push((seq, redelivery, payload)),
                    Some(other) => panic!("{case:?}: {other:?} before the DATA"),
                    None => break,
                }
            }
            let mut run = base.clone();
            let mut got = Vec::new();
            run.transmit_data_with(|seq, redelivery, payload| {
                if got.len() == stop_after {
                    return false;
                }
                got.push((seq, redelivery, payload.clone()));
                true
            });
            assert_eq!(got, expected, "{case:?}");
            assert_eq!(format!("{run:?}"), format!("{general:?}"), "{case:?}");
        }
        // An ACK due goes first: nothing is handed out.
        let mut tx = sender(64, 1 << 20, 1 << 20, 3);
        tx.handle_frame(
            AckFrame::Data {
                seq: 1,
                redelivery: false,
                payload: Bytes::from_static(b"x"),
            }
            .to_bytes(),
        )
        .expect("DATA accepted")
        .expect("delivered");
        tx.taken(1).expect("taken");
        tx.reader_idle();
        assert!(matches!(
            tx.clone().poll_transmit(),
            Some(AckFrame::Ack { .. })
        ));
        let mut called = false;
        tx.transmit_data_with(|_, _, _| {
            called = true;
            true
        });
        assert!(!called, "DATA went before the ACK due");
    }
}
