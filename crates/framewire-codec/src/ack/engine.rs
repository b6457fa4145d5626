//! The sans-IO ack-mode engine: the whole protocol of one connection, without any I/O.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Buf, Bytes};

use super::config::AckConfig;
use super::wire::{
    AckFrame, FrameKind, GoAwayReason, Hello, SessionId, DATA_HEADER_LEN, FLAG_REDELIVERY,
    HELLO_LEN, VERSION,
};
use super::{AckError, ERROR_PREFIX_LEN};

mod fast;
mod session;
#[cfg(test)]
mod tests;
mod transmit;

pub use session::{new_session_id, MessageId, SessionRequest, SessionStatus, MAX_RESUME_SEQ};

/// One message received by the application side, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delivery {
    /// The session it was sent in (all zero: none); with `seq`, its stable
    /// [`id`](Delivery::id).
    pub session: SessionId,
    /// Its sequence number in the session, or on this connection without one (1, 2, 3, ...).
    pub seq: u64,
    /// The application payload.
    pub payload: Bytes,
    /// The sender flagged it as a redelivery: it may already have been delivered before (the
    /// sender transmitted it on an earlier connection, saw no ack, and the receiving side no
    /// longer had the session). Never set while both sides keep the session.
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

/// Something the engine noticed, for drivers that wake waiters ([`AckState::poll_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckEvent {
    /// The peer acknowledged every message up to and including `through`.
    Acked {
        /// The new cumulative acknowledgement.
        through: u64,
    },
    /// The send window had no room and has some now.
    WindowOpened,
    /// The peer is going away: finish what is in flight, then reconnect.
    GoAway {
        /// Why.
        reason: GoAwayReason,
        /// The highest seq the peer's application took when it said so.
        through: u64,
    },
}

/// The ack-mode protocol state of one connection, without any I/O.
///
/// Feed it what happens and poll it for what to do, in the style of quinn-proto:
///
/// | input | method |
/// |---|---|
/// | a frame arrived | [`handle_frame`](Self::handle_frame) (raw payload) or [`handle`](Self::handle) (parsed) |
/// | the application is done with a received message | [`taken`](Self::taken) |
/// | the reader has nothing more buffered | [`reader_idle`](Self::reader_idle) |
/// | the application wants to send | [`send`](Self::send) |
/// | time passed | [`handle_timeout`](Self::handle_timeout) |
/// | this side is going away | [`go_away`](Self::go_away) |
///
/// | output | method |
/// |---|---|
/// | frames to transmit, in order | [`poll_transmit`](Self::poll_transmit) |
/// | when to call `handle_timeout` next | [`poll_timeout`](Self::poll_timeout) |
/// | acknowledged through N, window opened, GOAWAY | [`poll_event`](Self::poll_event) |
/// | room in the peer's window | [`room`](Self::room), [`has_room`](Self::has_room) |
/// | newly acknowledged sequence numbers | [`poll_acked`](Self::poll_acked), [`acked_through`](Self::acked_through) |
/// | sent but unacknowledged messages, in order | [`unacked`](Self::unacked), [`take_unacked`](Self::take_unacked) |
///
/// Nothing here reads a clock, owns a socket or needs a runtime; an error from any input is a
/// protocol violation (or local misuse, or a silent peer) after which the connection should
/// be closed.
///
/// # Windows and memory
///
/// Each side's HELLO grants a window in messages and in bytes. The window this side sends
/// with is the peer's grant clamped to its own caps ([`AckConfig::max_unacked`],
/// [`AckConfig::max_unacked_bytes`]): a peer granting `u32::MAX` does not make this side
/// keep more. A DATA frame may be sent while fewer messages and fewer bytes than the window
/// are unacknowledged, so one frame may overshoot the byte window (a message larger than the
/// whole window still goes through, alone). The receiving side checks the same rule against
/// the ACKs it transmitted and refuses a DATA beyond its grant
/// ([`AckError::DataBeyondWindow`], [`AckError::DataBeyondByteWindow`]). So what a
/// connection holds is bounded by this side's own settings plus one frame each way.
///
/// # Acks
///
/// An ACK means the receiving *application* is done with the message, so acks follow
/// [`taken`](Self::taken), never mere arrival: drivers report a message taken when the
/// application asks for the next one or acknowledges it explicitly. They are cumulative and
/// coalesced: an ACK is queued when half the granted window (messages or bytes) has been
/// taken since the last ACK, or when the driver reports [`reader_idle`](Self::reader_idle).
/// A window of 1 therefore acks every message at once (stop-and-wait).
///
/// # Timers
///
/// Call [`handle_timeout`](Self::handle_timeout) once when the connection starts (it arms the
/// timers) and then whenever [`poll_timeout`](Self::poll_timeout)'s instant has passed. After
/// [`AckConfig::keepalive`] without receiving anything the engine queues a PING (the peer's
/// engine answers with PONG); after [`AckConfig::peer_timeout`] without receiving anything
/// `handle_timeout` fails with [`AckError::PeerSilent`]. Arrival is noted at the next timer,
/// so silence is measured to within one keepalive interval.
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
/// b.taken(got[0].seq)?; // b's application is done with it
/// b.reader_idle();
/// pump(&mut b, &mut a); // ACK 1
/// assert_eq!(a.poll_acked(), Some(seq..=seq));
/// assert!(a.all_acked());
/// # Ok::<(), framewire_codec::ack::AckError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AckState {
    config: AckConfig,
    local: Hello,
    hello_pending: bool,
    peer: Option<Hello>,
    // Sending side. `unacked` holds seqs acked+1 ..= next_seq-1, contiguous.
    unacked: VecDeque<Outgoing>,
    unacked_bytes: u64,
    /// The peer's grant clamped to this side's caps (0 before its HELLO).
    send_window: u32,
    send_window_bytes: u32,
    next_seq: u64,
    transmitted: u64,
    acked: u64,
    reported_acked: u64,
    // Receiving side. `recv_lens` holds the payload lengths of the seqs received and not taken
    // but the last, taken+1 ..= received-1 (empty when received <= taken + 1); `last_len` is
    // the length of seq `received`. Taking through `received` needs no length (every byte
    // received since the last ACK is taken then), nor does an ACK (it covers exactly the
    // taken bytes): on a stream taken in order the lengths cost no queue operation at all.
    received: u64,
    taken: u64,
    ack_sent: u64,
    ack_pending: bool,
    ack_threshold: u64,
    recv_lens: VecDeque<u32>,
    last_len: u32,
    recv_unacked_bytes: u64,
    taken_unacked_bytes: u64,
    // Control frames and events.
    pong_pending: Option<u64>,
    ping_pending: Option<u64>,
    goaway_pending: Option<GoAwayReason>,
    goaway_sent: bool,
    peer_goaway: Option<(GoAwayReason, u64)>,
    events: VecDeque<AckEvent>,
    // Timers.
    heard: bool,
    last_heard: Option<Instant>,
    ping_outstanding: bool,
    ping_token: u64,
    // Sessions (engine/session.rs).
    session: session::SessionBook,
}

impl AckState {
    /// A new connection's state with the [`AckConfig`] defaults but a window of `window`
    /// messages (0 is raised to 1). `max_frame_len` is the longest frame payload this side
    /// accepts (its codec's maximum; values above `u32::MAX` say `u32::MAX`). The HELLO is the
    /// first frame [`poll_transmit`](Self::poll_transmit) returns.
    pub fn new(window: u32, max_frame_len: usize) -> AckState {
        let config = AckConfig::new().window(window);
        AckState::with_config(config, max_frame_len)
    }

    /// A new connection's state with `config` (see [`AckConfig::build`]).
    pub fn with_config(config: AckConfig, max_frame_len: usize) -> AckState {
        let max = u32::try_from(max_frame_len).unwrap_or(u32::MAX);
        let local = Hello::new(config.window, config.window_bytes, max);
        let mut state = AckState {
            config,
            local,
            hello_pending: true,
            peer: None,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            send_window: 0,
            send_window_bytes: 0,
            next_seq: 1,
            transmitted: 0,
            acked: 0,
            reported_acked: 0,
            received: 0,
            taken: 0,
            ack_sent: 0,
            ack_pending: false,
            ack_threshold: 1,
            recv_lens: VecDeque::new(),
            last_len: 0,
            recv_unacked_bytes: 0,
            taken_unacked_bytes: 0,
            pong_pending: None,
            ping_pending: None,
            goaway_pending: None,
            goaway_sent: false,
            peer_goaway: None,
            events: VecDeque::new(),
            heard: false,
            last_heard: None,
            ping_outstanding: false,
            ping_token: 0,
            session: session::SessionBook::new(),
        };
        state.set_ack_threshold(config.ack_threshold.unwrap_or(u64::from(config.window / 2)));
        state
    }

    /// The settings this state was built with.
    pub fn config(&self) -> &AckConfig {
        &self.config
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
    /// reports [`taken`](Self::taken) once the application is done with it.
    ///
    /// Before the peer's HELLO, anything that is not a valid HELLO is
    /// [`AckError::ExpectedHello`] naming the frame's length and first bytes ("expected HELLO,
    /// got a frame of 5 bytes starting 68 65 6c 6c 6f"), except a HELLO of another version,
    /// which is [`AckError::VersionMismatch`] naming both versions.
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
                return self.handle_data(seq, flags & FLAG_REDELIVERY != 0, payload);
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
    /// * [`AckError::DataBeyondWindow`], [`AckError::DataBeyondByteWindow`]: a DATA beyond
    ///   the window (messages or bytes) this side granted, counted from the last ACK it
    ///   transmitted.
    pub fn handle(&mut self, frame: AckFrame<Bytes>) -> Result<Option<Delivery>, AckError> {
        self.heard = true;
        let Some(_) = self.peer else {
            let AckFrame::Hello(h) = frame else {
                return Err(describe_unexpected(&frame));
            };
            return self.handle_hello(h).map(|()| None);
        };
        match frame {
            AckFrame::Hello(h) => Err(AckError::SecondHello {
                window: h.window,
                max_frame_len: h.max_frame_len,
            }),
            AckFrame::Ack { through } => self.handle_ack(through).map(|()| None),
            AckFrame::Data {
                seq,
                redelivery,
                payload,
            } => self.handle_data(seq, redelivery, payload),
            AckFrame::GoAway { reason, through } => {
                if self.peer_goaway.is_none() {
                    self.peer_goaway = Some((reason, through));
                    self.events.push_back(AckEvent::GoAway { reason, through });
                }
                Ok(None)
            }
            AckFrame::Ping { token } => {
                self.pong_pending = Some(token);
                Ok(None)
            }
            AckFrame::Pong { .. } => Ok(None),
        }
    }

    fn handle_hello(&mut self, h: Hello) -> Result<(), AckError> {
        if h.version != VERSION {
            return Err(AckError::VersionMismatch {
                ours: VERSION,
                theirs: h.version,
            });
        }
        if h.window == 0 {
            return Err(AckError::ZeroWindow { unit: "messages" });
        }
        if h.window_bytes == 0 {
            return Err(AckError::ZeroWindow { unit: "bytes" });
        }
        if (h.max_frame_len as usize) < HELLO_LEN {
            return Err(AckError::PeerMaxTooSmall {
                max_frame_len: h.max_frame_len,
                min: HELLO_LEN,
            });
        }
        // The peer's grant is clamped to this side's own caps: never trusted beyond them.
        self.send_window = h.window.min(self.config.max_unacked);
        self.send_window_bytes = h.window_bytes.min(self.config.max_unacked_bytes);
        self.peer = Some(h);
        self.session_hello(&h)
    }

    fn handle_ack(&mut self, through: u64) -> Result<(), AckError> {
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
        if through == self.acked {
            return Ok(());
        }
        let had_room = self.has_room();
        while self.unacked.front().is_some_and(|m| m.seq <= through) {
            if let Some(m) = self.unacked.pop_front() {
                self.unacked_bytes -= m.payload.len() as u64;
            }
        }
        self.acked = through;
        match self
            .events
            .iter_mut()
            .find(|e| matches!(e, AckEvent::Acked { .. }))
        {
            Some(AckEvent::Acked { through: t }) => *t = through,
            _ => self.events.push_back(AckEvent::Acked { through }),
        }
        if !had_room && self.has_room() && !self.events.contains(&AckEvent::WindowOpened) {
            self.events.push_back(AckEvent::WindowOpened);
        }
        Ok(())
    }

    /// A DATA frame after the handshake: sequence and window checks. `None` for a repeat
    /// of what the application already has (see `session_data`).
    fn handle_data(
        &mut self,
        seq: u64,
        redelivery: bool,
        payload: Bytes,
    ) -> Result<Option<Delivery>, AckError> {
        self.heard = true;
        if self.session_data(seq)? {
            return Ok(None);
        }
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
        if self.recv_unacked_bytes >= u64::from(self.local.window_bytes) {
            return Err(AckError::DataBeyondByteWindow {
                seq,
                len: payload.len(),
                unacked_bytes: self.recv_unacked_bytes,
                window_bytes: self.local.window_bytes,
            });
        }
        // A frame is at most u32::MAX bytes long, so its payload length fits.
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        self.note_received(seq, len);
        Ok(Some(Delivery {
            session: self.local.session,
            seq,
            payload,
            redelivered: redelivery || self.seen_unfinished(seq),
        }))
    }

    /// Seq `seq` (the next one), `len` payload bytes, is received: its length is kept until
    /// it is taken (see `recv_lens`).
    #[inline]
    fn note_received(&mut self, seq: u64, len: u32) {
        if self.received > self.taken {
            self.recv_lens.push_back(self.last_len);
        }
        self.last_len = len;
        self.recv_unacked_bytes += u64::from(len);
        self.received = seq;
    }

    /// The application is done with every received message up to and including `seq`.
    ///
    /// Cumulative; reporting a seq at or below an earlier one does nothing. Queues an ACK once
    /// half the granted window (messages or bytes; at least 1 message) has been taken since
    /// the last ACK.
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
            if seq == self.received {
                // Everything received since the last ACK is taken.
                self.taken_unacked_bytes = self.recv_unacked_bytes;
                self.recv_lens.clear();
            } else {
                // `recv_lens` starts at seq taken + 1 and goes on past `seq`.
                for _ in self.taken..seq {
                    let len = self.recv_lens.pop_front().unwrap_or(0);
                    self.taken_unacked_bytes += u64::from(len);
                }
            }
            self.taken = seq;
            if self.taken - self.ack_sent >= self.ack_threshold
                || self.taken_unacked_bytes >= u64::from(self.local.window_bytes / 2).max(1)
            {
                self.ack_pending = true;
            }
        }
        Ok(())
    }

    /// The reader has nothing more buffered (the transport has no further frame ready and the
    /// application is done with everything delivered): queue an ACK for whatever was taken
    /// and not yet acknowledged. Cheap to call often; queues nothing when there is nothing
    /// to ack.
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
    /// frames, each a write and a wake-up on the peer. The window itself means "ack only when
    /// idle or when the whole window has been taken", the fewest writes for a consumer that
    /// keeps up. Half the window (the default) never makes a sender whose window is full wait
    /// for a consumer that is still working through a long batch. Never deadlocks: the
    /// sender cannot send more than the window, so the whole window being taken always
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

    /// Payload bytes received and not yet covered by a transmitted ACK.
    pub fn received_unacked_bytes(&self) -> u64 {
        self.recv_unacked_bytes
    }

    /// The peer's GOAWAY, once it arrived: it is going away, reconnect.
    pub fn peer_going_away(&self) -> Option<GoAwayReason> {
        self.peer_goaway.map(|(r, _)| r)
    }
}

/// `ExpectedHello` for a parsed frame: its length and first bytes as they were on the wire.
fn describe_unexpected(frame: &AckFrame<Bytes>) -> AckError {
    let mut start = frame.to_bytes().to_vec();
    start.truncate(ERROR_PREFIX_LEN);
    AckError::ExpectedHello {
        len: frame.len(),
        start,
    }
}
