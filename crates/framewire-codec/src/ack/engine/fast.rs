//! The receiving side's fast path: what a driver asks the engine for each message of a
//! stream when nothing but the common case happens ([`AckState::take_and_receive`]).

use super::AckState;
use crate::ack::wire::{FrameKind, SessionId, DATA_HEADER_LEN, FLAG_REDELIVERY};

impl AckState {
    /// The receiving side's common case in one step, for a driver's fast path: the
    /// application is done with `done` (as [`taken`](Self::taken)), and the next frame, whose
    /// payload starts with `head` (at least the DATA header) and is `frame_len` bytes long, is
    /// an in-order DATA frame within the window (as [`handle_frame`](Self::handle_frame)).
    /// Returns its seq and redelivery flag when that is *all* that happens: no ACK becomes due,
    /// nothing else is waiting to be transmitted, no session is being resolved and it is not
    /// a repeat. Otherwise `None`, with nothing changed: the caller takes the general path
    /// (`taken`, `handle_frame`), which handles every other case, errors included.
    #[inline]
    pub(crate) fn take_and_receive(
        &mut self,
        done: u64,
        head: &[u8],
        frame_len: usize,
    ) -> Option<(u64, bool)> {
        let [kind, s0, s1, s2, s3, s4, s5, s6, s7, flags, ..] = *head else {
            return None;
        };
        if kind != FrameKind::Data.to_byte()
            || flags & !FLAG_REDELIVERY != 0
            || self.peer.is_none()
            || self.has_transmit()
        {
            return None;
        }
        let seq = u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
        if seq != self.received.saturating_add(1)
            || seq > self.ack_sent.saturating_add(u64::from(self.local.window))
            || self.recv_unacked_bytes >= u64::from(self.local.window_bytes)
            || !self.data_is_plain(seq)
        {
            return None;
        }
        // `done` is the previous message at most, and the last one received: taking it takes
        // every byte received since the last ACK (see `recv_lens`), and must not make an ACK
        // due.
        let mut taken = self.taken;
        let mut taken_bytes = self.taken_unacked_bytes;
        if done > taken {
            if done != taken + 1 || done != self.received {
                return None;
            }
            taken = done;
            taken_bytes = self.recv_unacked_bytes;
            if done - self.ack_sent >= self.ack_threshold
                || taken_bytes >= u64::from(self.local.window_bytes / 2).max(1)
            {
                return None;
            }
        }
        let len = u32::try_from(frame_len.checked_sub(DATA_HEADER_LEN)?).ok()?;
        self.taken = taken;
        self.taken_unacked_bytes = taken_bytes;
        self.heard = true;
        self.note_received(seq, len);
        Some((
            seq,
            flags & FLAG_REDELIVERY != 0 || self.seen_unfinished(seq),
        ))
    }

    /// The session this side's messages are delivered in (all zero: none), as
    /// [`Delivery::session`] carries it.
    #[inline]
    pub(crate) fn delivery_session(&self) -> SessionId {
        self.local.session
    }
}
