//! The sans-IO ack-mode state machine.

use std::collections::VecDeque;
use std::ops::RangeInclusive;

use bytes::{Buf, Bytes};

use super::wire::{
    ack_bytes, data_header, AckFrame, FrameKind, Hello, DATA_HEADER_LEN, FLAG_REDELIVERY,
    HELLO_LEN, VERSION,
};
use super::{AckError, ERROR_PREFIX_LEN};

/// Default window: how many unacknowledged messages a peer may have in flight.
///
/// Throughput in ack mode is bounded by window / round-trip time, while the window is also
/// the most messages a receiver buffers without its application taking them (up to 64 max-size
/// frames). 64 lets the sender pipeline a round trip's worth of small messages (acks are
/// coalesced at half the window, so 32 messages of room come back per ack) while keeping
/// that buffer bounded.
///
/// Each window of messages costs a fixed amount on top of the per-message work: at least one
/// DATA write, one ACK write (two with the half-window threshold), a read on each side and a
/// wake-up of each side, 17-20 µs on loopback on the 2-core development machine, where a
/// single loopback write costs about 5 µs and plain mode moves a 64-byte message in about
/// 110 ns. With 64-byte messages that measured about a quarter of plain mode's messages/s at
/// window 64, about half at 256 and about 70% at 1024 (`benches/ack.rs`,
/// `docs/ack-performance.md`): raise it for bulk streams of small messages, lower it to bound
/// the memory held for large ones.
pub const DEFAULT_WINDOW: u32 = 64;

/// One message received by the application side, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delivery {
    /// Its sequence number on this connection (1, 2, 3, ...).
    pub seq: u64,
    /// The application payload.
    pub payload: Bytes,
    /// The sender flagged it as a redelivery: it may already have been delivered on an earlier
    /// connection (the sender lost that connection before the ack arrived).
    pub redelivered: bool,
}

/// One message sent and not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Outgoing {
    /// Its sequence number on this connection.
    pub seq: u64,
    /// The application payload.
    pub payload: Bytes,
    /// Whether it was sent flagged as a redelivery.
    pub redelivery: bool,
}

/// The ack-mode protocol state of one connection, without any I/O.
///
/// Feed it what happens and poll it for what to do, in the style of quinn-proto:
///
/// | input | method |
/// |---|---|
/// | a frame arrived | [`handle_frame`](Self::handle_frame) (raw payload) or [`handle`](Self::handle) (parsed) |
/// | the application took a received message | [`taken`](Self::taken) |
/// | the reader has nothing more buffered | [`reader_idle`](Self::reader_idle) |
/// | the application wants to send | [`send`](Self::send) |
///
/// | output | method |
/// |---|---|
/// | frames to transmit, in order | [`poll_transmit`](Self::poll_transmit) |
/// | room in the peer's window | [`room`](Self::room), [`has_room`](Self::has_room) |
/// | newly acknowledged sequence numbers | [`poll_acked`](Self::poll_acked), [`acked_through`](Self::acked_through) |
/// | sent but unacknowledged messages, in order | [`unacked`](Self::unacked), [`take_unacked`](Self::take_unacked) |
///
/// Nothing here reads a clock, owns a socket or needs a runtime; an error from any input is a
/// protocol violation (or local misuse) after which the connection should be closed.
///
/// # Acks
///
/// An ACK means the receiving *application* took the message, so acks follow
/// [`taken`](Self::taken), never mere arrival. They are cumulative and coalesced: an ACK is
/// queued when half the granted window (at least 1) has been taken since the last ACK, or when
/// the driver reports [`reader_idle`](Self::reader_idle). A window of 1 therefore acks every
/// message at once (stop-and-wait); a window of 64 sends about one ACK per 32 messages under
/// load.
///
/// # Example: two peers, no sockets
///
/// ```
/// use bytes::Bytes;
/// use framewire_codec::ack::{AckState, AckFrame};
///
/// let mut a = AckState::new(4, 1024);
/// let mut b = AckState::new(4, 1024);
/// // Move every pending frame from one side to the other (as bytes, like a socket would).
/// fn pump(from: &mut AckState, to: &mut AckState) -> Vec<framewire_codec::ack::Delivery> {
///     let mut got = Vec::new();
///     while let Some(frame) = from.poll_transmit() {
///         if let Some(d) = to.handle_frame(frame.to_bytes()).unwrap() {
///             got.push(d);
///         }
///     }
///     got
/// }
/// pump(&mut a, &mut b); // HELLO a -> b
/// pump(&mut b, &mut a); // HELLO b -> a
/// assert!(a.has_room());
///
/// let seq = a.send(Bytes::from_static(b"ping"), false)?;
/// let got = pump(&mut a, &mut b);
/// assert_eq!(got[0].payload, "ping");
/// b.taken(got[0].seq)?;
/// b.reader_idle();
/// pump(&mut b, &mut a); // ACK 1
/// assert_eq!(a.poll_acked(), Some(seq..=seq));
/// assert!(a.all_acked());
/// # Ok::<(), framewire_codec::ack::AckError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AckState {
    local: Hello,
    hello_pending: bool,
    peer: Option<Hello>,
    // Sending side. `unacked` holds seqs acked+1 ..= next_seq-1, contiguous.
    unacked: VecDeque<Outgoing>,
    next_seq: u64,
    transmitted: u64,
    acked: u64,
    reported_acked: u64,
    // Receiving side.
    received: u64,
    taken: u64,
    ack_sent: u64,
    ack_pending: bool,
    ack_threshold: u64,
}

impl AckState {
    /// A new connection's state. `window` is how many unacknowledged DATA frames this side
    /// lets the peer have in flight (0 is raised to 1); `max_frame_len` is the longest frame
    /// payload this side accepts (its codec's maximum; values above `u32::MAX` say
    /// `u32::MAX`). Both go into this side's HELLO, which is the first frame
    /// [`poll_transmit`](Self::poll_transmit) returns.
    pub fn new(window: u32, max_frame_len: usize) -> AckState {
        let max = u32::try_from(max_frame_len).unwrap_or(u32::MAX);
        let window = window.max(1);
        AckState {
            local: Hello::new(window, max),
            hello_pending: true,
            peer: None,
            unacked: VecDeque::new(),
            next_seq: 1,
            transmitted: 0,
            acked: 0,
            reported_acked: 0,
            received: 0,
            taken: 0,
            ack_sent: 0,
            ack_pending: false,
            ack_threshold: u64::from(window / 2).max(1),
        }
    }

    /// This side's HELLO.
    pub fn local_hello(&self) -> Hello {
        self.local
    }

    /// The peer's HELLO, once it has arrived.
    pub fn peer_hello(&self) -> Option<Hello> {
        self.peer
    }

    /// `true` once the peer's HELLO has arrived (sending is possible from then on).
    pub fn is_established(&self) -> bool {
        self.peer.is_some()
    }

    // ---------------------------------------------------------------- receiving

    /// Parses and handles one frame payload as decoded by [`FrameCodec`](crate::FrameCodec).
    ///
    /// Returns the message if it was a DATA frame; the caller hands it to the application and
    /// reports [`taken`](Self::taken) once the application has it.
    ///
    /// Before the peer's HELLO, anything that is not a valid HELLO is
    /// [`AckError::ExpectedHello`] naming the frame's length and first bytes ("expected HELLO,
    /// got a frame of 5 bytes starting 68 65 6c 6c 6f"), except a HELLO of another version,
    /// which is [`AckError::VersionMismatch`].
    ///
    /// # Errors
    ///
    /// Any parse error of [`AckFrame::parse`], and the violations listed at
    /// [`handle`](Self::handle).
    pub fn handle_frame(&mut self, frame: Bytes) -> Result<Option<Delivery>, AckError> {
        if self.peer.is_none() {
            return match AckFrame::parse(&frame) {
                Ok(AckFrame::Hello(h)) => self.handle(AckFrame::Hello(h)),
                Err(e @ AckError::VersionMismatch { .. }) => Err(e),
                _ => Err(AckError::expected_hello(&frame)),
            };
        }
        // Fast path for the frame that matters for throughput: a well-formed DATA frame is
        // checked and handled in place, with the same checks and errors as `parse` + `handle`.
        if let [kind, s0, s1, s2, s3, s4, s5, s6, s7, flags, ..] = frame[..] {
            if kind == FrameKind::Data.to_byte() && flags & !FLAG_REDELIVERY == 0 {
                let seq = u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
                let mut payload = frame;
                payload.advance(DATA_HEADER_LEN);
                return self
                    .handle_data(seq, flags & FLAG_REDELIVERY != 0, payload)
                    .map(Some);
            }
        }
        self.handle(AckFrame::parse_bytes(frame)?)
    }

    /// Handles one parsed frame. Returns the message if it was a DATA frame.
    ///
    /// # Errors
    ///
    /// * [`AckError::ExpectedHello`]: anything before the peer's HELLO.
    /// * [`AckError::VersionMismatch`], [`AckError::ZeroWindow`],
    ///   [`AckError::PeerMaxTooSmall`]: an unusable HELLO.
    /// * [`AckError::SecondHello`]: a HELLO after the first.
    /// * [`AckError::AckForUnsent`]: an ACK beyond the last DATA transmitted.
    /// * [`AckError::AckBackwards`]: an ACK below an earlier one (an equal ACK is ignored).
    /// * [`AckError::DataOutOfSequence`]: a DATA whose seq is not the previous one plus 1.
    /// * [`AckError::DataBeyondWindow`]: a DATA beyond the last ACK transmitted plus the window
    ///   this side granted.
    pub fn handle(&mut self, frame: AckFrame<Bytes>) -> Result<Option<Delivery>, AckError> {
        let Some(_) = self.peer else {
            let AckFrame::Hello(h) = frame else {
                return Err(describe_unexpected(&frame));
            };
            if h.version != VERSION {
                return Err(AckError::VersionMismatch {
                    ours: VERSION,
                    theirs: h.version,
                });
            }
            if h.window == 0 {
                return Err(AckError::ZeroWindow);
            }
            if (h.max_frame_len as usize) < HELLO_LEN {
                return Err(AckError::PeerMaxTooSmall {
                    max_frame_len: h.max_frame_len,
                    min: HELLO_LEN,
                });
            }
            self.peer = Some(h);
            return Ok(None);
        };
        match frame {
            AckFrame::Hello(h) => Err(AckError::SecondHello {
                window: h.window,
                max_frame_len: h.max_frame_len,
            }),
            AckFrame::Ack { through } => {
                if through > self.transmitted {
                    return Err(AckError::AckForUnsent {
                        ack: through,
                        sent: self.transmitted,
                    });
                }
                if through < self.acked {
                    return Err(AckError::AckBackwards {
                        ack: through,
                        previous: self.acked,
                    });
                }
                while self.unacked.front().is_some_and(|m| m.seq <= through) {
                    self.unacked.pop_front();
                }
                self.acked = through;
                Ok(None)
            }
            AckFrame::Data {
                seq,
                redelivery,
                payload,
            } => self.handle_data(seq, redelivery, payload).map(Some),
        }
    }

    /// A DATA frame after the handshake: sequence and window checks.
    fn handle_data(
        &mut self,
        seq: u64,
        redelivery: bool,
        payload: Bytes,
    ) -> Result<Delivery, AckError> {
        let expected = self.received.saturating_add(1);
        if seq != expected {
            return Err(AckError::DataOutOfSequence { expected, got: seq });
        }
        if seq > self.ack_sent.saturating_add(u64::from(self.local.window)) {
            return Err(AckError::DataBeyondWindow {
                seq,
                window: self.local.window,
                acked: self.ack_sent,
            });
        }
        self.received = seq;
        Ok(Delivery {
            seq,
            payload,
            redelivered: redelivery,
        })
    }

    /// The application took every received message up to and including `seq`.
    ///
    /// Cumulative; reporting a seq at or below an earlier one does nothing. Queues an ACK once
    /// half the granted window (at least 1) has been taken since the last ACK.
    ///
    /// # Errors
    ///
    /// [`AckError::TakenNotReceived`] if `seq` has not been received.
    pub fn taken(&mut self, seq: u64) -> Result<(), AckError> {
        if seq > self.received {
            return Err(AckError::TakenNotReceived {
                seq,
                received: self.received,
            });
        }
        if seq > self.taken {
            self.taken = seq;
            if self.taken - self.ack_sent >= self.ack_threshold() {
                self.ack_pending = true;
            }
        }
        Ok(())
    }

    /// The reader has nothing more buffered (the transport has no further frame ready and the
    /// application has taken everything delivered): queue an ACK for whatever was taken and
    /// not yet acknowledged. Cheap to call often; queues nothing when there is nothing to ack.
    pub fn reader_idle(&mut self) {
        if self.taken > self.ack_sent {
            self.ack_pending = true;
        }
    }

    /// How many taken messages an ACK waits for before being queued without
    /// [`reader_idle`](Self::reader_idle): by default half the granted window, at least 1.
    pub fn ack_threshold(&self) -> u64 {
        self.ack_threshold
    }

    /// Sets the [`ack_threshold`](Self::ack_threshold), clamped to `1..=window`.
    ///
    /// Lower values ack sooner (the sender refills its window while this side is still
    /// working through the first messages: good for slow consumers) at the cost of more ACK
    /// frames, each a write and a wake-up on the peer. The window itself (this side's HELLO
    /// window) means "ack only when idle or when the whole window has been taken", about one
    /// ACK per read, which costs the fewest writes for a consumer that keeps up.
    ///
    /// Why half the window is the default: it is the threshold that never makes a sender
    /// whose window is full wait for a consumer that is still working through a long batch
    /// (the sender gets half its window back while the second half is being processed), and
    /// callers rely on it (an ACK arrives after half the window is taken even if the
    /// application then stops reading). The price for a fast consumer is one extra ACK write
    /// per window: on loopback with 64-byte messages, `set_ack_threshold(window)` measured
    /// 1.15x to 1.4x the messages/s of the default at window 64 (about a third of plain mode
    /// instead of a quarter; `benches/ack.rs`, `docs/ack-performance.md`). Never deadlocks:
    /// the sender cannot send more than the window, so the whole window being taken always
    /// triggers an ACK.
    pub fn set_ack_threshold(&mut self, threshold: u64) {
        self.ack_threshold = threshold.clamp(1, u64::from(self.local.window));
    }

    /// The highest seq received.
    pub fn received_through(&self) -> u64 {
        self.received
    }

    /// The highest seq the application took.
    pub fn taken_through(&self) -> u64 {
        self.taken
    }

    /// The highest cumulative ACK transmitted (handed out by `poll_transmit`).
    pub fn ack_sent_through(&self) -> u64 {
        self.ack_sent
    }

    // ---------------------------------------------------------------- sending

    /// The window the peer granted (0 until its HELLO arrives).
    pub fn peer_window(&self) -> u32 {
        self.peer.map_or(0, |h| h.window)
    }

    /// Messages sent (accepted by [`send`](Self::send)) and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.unacked.len() as u64
    }

    /// How many more messages [`send`](Self::send) accepts now: the peer's window minus the
    /// messages in flight, 0 before the peer's HELLO.
    pub fn room(&self) -> u64 {
        u64::from(self.peer_window()).saturating_sub(self.in_flight())
    }

    /// `room() > 0`.
    pub fn has_room(&self) -> bool {
        self.room() > 0
    }

    /// The longest application payload the peer accepts in one DATA frame (0 before its
    /// HELLO).
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
        if !self.has_room() {
            return Err(AckError::WindowFull {
                in_flight: self.in_flight(),
                window: self.peer_window(),
            });
        }
        let max = self.max_payload_len();
        if payload.len() > max {
            return Err(AckError::PayloadTooLong {
                len: payload.len(),
                max,
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked.push_back(Outgoing {
            seq,
            payload,
            redelivery,
        });
        Ok(seq)
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
    pub fn acked_through(&self) -> u64 {
        self.acked
    }

    /// `true` when every message sent has been acknowledged.
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

    /// The sent but unacknowledged messages, oldest first (transmitted or not).
    pub fn unacked(&self) -> impl ExactSizeIterator<Item = &Outgoing> + '_ {
        self.unacked.iter()
    }

    /// Removes and returns the payloads of every sent but unacknowledged message, oldest
    /// first. For when the connection is gone: resend them (flagged as redeliveries) on a new
    /// connection, or report them lost. The state should not be used for sending afterwards.
    pub fn take_unacked(&mut self) -> Vec<Bytes> {
        self.unacked.drain(..).map(|m| m.payload).collect()
    }

    // ---------------------------------------------------------------- output

    /// `true` if [`poll_transmit`](Self::poll_transmit) would return a frame.
    pub fn has_transmit(&self) -> bool {
        self.hello_pending || self.ack_pending || self.transmitted < self.next_seq - 1
    }

    /// The next frame to transmit, if any: this side's HELLO first, then a pending ACK (one
    /// cumulative ACK however many messages it covers), then DATA frames in seq order.
    ///
    /// Handing a frame out counts as transmitting it; the caller must write it to the
    /// transport in the order returned.
    pub fn poll_transmit(&mut self) -> Option<AckFrame<Bytes>> {
        Some(match self.poll_transmit_ref()? {
            AckFrame::Hello(h) => AckFrame::Hello(h),
            AckFrame::Ack { through } => AckFrame::Ack { through },
            AckFrame::Data {
                seq, redelivery, ..
            } => {
                // `poll_transmit_ref` returned the message at `seq`, which is still unacked.
                let payload = self.unacked_payload(seq).unwrap_or_default();
                AckFrame::Data {
                    seq,
                    redelivery,
                    payload,
                }
            }
        })
    }

    /// [`poll_transmit`](Self::poll_transmit) with a DATA payload borrowed from the unacked
    /// queue rather than cloned: for drivers that copy the frame into a write buffer at once.
    pub(crate) fn poll_transmit_ref(&mut self) -> Option<AckFrame<&[u8]>> {
        if self.hello_pending {
            self.hello_pending = false;
            return Some(AckFrame::Hello(self.local));
        }
        if self.ack_pending {
            self.ack_pending = false;
            self.ack_sent = self.taken;
            return Some(AckFrame::Ack {
                through: self.taken,
            });
        }
        let front = self.unacked.front()?.seq;
        let idx = usize::try_from((self.transmitted + 1).checked_sub(front)?).ok()?;
        let m = self.unacked.get(idx)?;
        self.transmitted = m.seq;
        Some(AckFrame::Data {
            seq: m.seq,
            redelivery: m.redelivery,
            payload: &m.payload[..],
        })
    }

    /// The payload of the unacked message `seq`, if it is still unacked.
    fn unacked_payload(&self, seq: u64) -> Option<Bytes> {
        let front = self.unacked.front()?.seq;
        let idx = usize::try_from(seq.checked_sub(front)?).ok()?;
        self.unacked.get(idx).map(|m| m.payload.clone())
    }
}

/// `ExpectedHello` for a parsed frame: its length and first bytes as they were on the wire.
fn describe_unexpected(frame: &AckFrame<Bytes>) -> AckError {
    let mut start = Vec::with_capacity(ERROR_PREFIX_LEN);
    match frame {
        AckFrame::Hello(h) => start.extend_from_slice(&h.to_bytes()),
        AckFrame::Ack { through } => start.extend_from_slice(&ack_bytes(*through)),
        AckFrame::Data {
            seq,
            redelivery,
            payload,
        } => {
            start.extend_from_slice(&data_header(*seq, *redelivery));
            start.extend_from_slice(&payload[..payload.len().min(ERROR_PREFIX_LEN)]);
        }
    }
    start.truncate(ERROR_PREFIX_LEN);
    AckError::ExpectedHello {
        len: frame.len(),
        start,
    }
}
