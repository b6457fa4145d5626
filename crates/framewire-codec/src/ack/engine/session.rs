//! Sessions: sequence numbers that outlive connections, resume, and stable message ids.
//!
//! A session is the part of an [`AckState`] that survives a lost connection: its id, the
//! sequence numbers of both directions, the messages sent and not acknowledged, and how far
//! the application received. The connecting side opens one with [`AckState::with_session`];
//! after the connection is lost it calls [`AckState::reconnect`] and drives the same state
//! over the next connection. The accepting side builds each connection's state with
//! [`AckState::accepting`], answers the peer's [`SessionRequest`] with
//! [`AckState::start_session`] (a session it does not have) or [`AckState::adopt`] (a stored
//! one), and keeps the state in its session store while the session lingers.
//!
//! On a resumed connection each side's HELLO says, in `delivered through`, the highest seq of
//! the peer's direction it handed to its application; the peer resends only what follows, and
//! DATA at or below that point is dropped. While both sides keep the session every message
//! reaches the application exactly once. When the accepting side no longer has it, its HELLO
//! answers without the resume flag: the connecting side flags every message it had
//! transmitted on an earlier connection and not seen acknowledged as a redelivery, and the
//! accepting side continues the session's numbering from the first DATA it receives, so each
//! message keeps its [`MessageId`] (at-least-once with stable ids).

use std::fmt;

use super::{AckState, Delivery};
use crate::ack::wire::{Hello, SessionId};
use crate::ack::AckError;

/// The highest `delivered through` a peer may name when it resumes a session the accepting
/// side does not have (2^62): that side continues the numbering after it, and 2^62 leaves
/// more sequence numbers than any session can use, so the numbering never overflows.
pub const MAX_RESUME_SEQ: u64 = 1 << 62;

/// A new random session id, from the operating system's random number generator
/// (`getrandom`: `getrandom(2)` on Linux, `/dev/urandom` as fallback).
///
/// 128 random bits: a peer that wants to take over another client's session would have to
/// guess among 2^128 ids, so holding the id is what entitles a connection to the session. The
/// all-zero id means "no session" and is never returned.
///
/// # Errors
///
/// The operating system's generator failed (no entropy source available); the error says why.
pub fn new_session_id() -> std::io::Result<SessionId> {
    let mut id = [0u8; 16];
    getrandom::getrandom(&mut id)
        .map_err(|e| std::io::Error::other(format!("no random session id: {e}")))?;
    if id == [0; 16] {
        // Probability 2^-128; all zero means "no session", so never hand it out.
        id[15] = 1;
    }
    Ok(id)
}

/// The stable id of one message: the session it was sent in and its sequence number there.
///
/// The same message carries the same id on every delivery, over every connection, and after
/// the receiving side lost the session (a restarted server): an application that must not act
/// twice on a message keeps the ids it has acted on and skips a repeat with one lookup.
/// Without a session the id's session part is all zero and the seq restarts with each
/// connection, so the id is only unique within one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId {
    /// The session (all zero: none).
    pub session: SessionId,
    /// The sequence number within the session (from 1).
    pub seq: u64,
}

impl MessageId {
    /// The id as 24 bytes: the session id, then the seq as a big-endian u64 (for storing it).
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..16].copy_from_slice(&self.session);
        b[16..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }
}

/// `0123456789abcdef0123456789abcdef:42`: the session id in hex, a colon, the seq.
impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.session {
            write!(f, "{b:02x}")?;
        }
        write!(f, ":{}", self.seq)
    }
}

impl Delivery {
    /// The message's stable id (session + seq): the same on every redelivery.
    pub fn id(&self) -> MessageId {
        MessageId {
            session: self.session,
            seq: self.seq,
        }
    }
}

/// What happened to the session on the current connection ([`AckState::session_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    /// No session: sequence numbers belong to this connection alone.
    None,
    /// The handshake is not complete yet.
    Pending,
    /// A new session: this is its first connection.
    New,
    /// Resumed: the peer still had the session; delivery stays exactly-once.
    Resumed,
    /// The peer no longer had the session (restarted, linger expired, another server):
    /// messages this side transmitted before and saw no ack for are resent flagged as
    /// redeliveries, with their stable ids.
    Lost,
}

/// A connecting peer's HELLO names a session: the accepting side must answer with
/// [`AckState::start_session`] or [`AckState::adopt`] before its own HELLO goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionRequest {
    /// The session the peer names.
    pub id: SessionId,
    /// The peer resumes it (it had earlier connections) rather than opening it.
    pub resume: bool,
    /// The highest seq of this side's direction the peer delivered to its application.
    pub delivered: u64,
}

/// The session bookkeeping inside [`AckState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SessionBook {
    /// This state accepts connections: its HELLO waits for the peer's.
    accepting: bool,
    /// The peer's request, until the driver answers it.
    request: Option<SessionRequest>,
    /// The peer's grant, clamped, held back while the request is unanswered.
    held_window: (u32, u32),
    /// The highest seq transmitted on an earlier connection of the session.
    sent_before: u64,
    /// DATA at or below this seq is a repeat of what the application already has: dropped.
    resume_point: u64,
    /// The peer's numbering is unknown (it resumed a session this side did not have): the
    /// first DATA's seq is taken as the start.
    baseline_open: bool,
    /// The connecting side heard the peer's HELLO on some connection of the session: the
    /// next HELLO resumes it (before that, it opens it again).
    opened: bool,
    /// The accepting side released its HELLO on this connection: until then nothing else
    /// may be transmitted.
    answered: bool,
    /// The application was handed the peer's messages through this seq and did not finish
    /// them (it panicked): when they come again they are flagged as redeliveries.
    unfinished: u64,
    status: SessionStatus,
    duplicates_dropped: u64,
}

impl SessionBook {
    pub(super) const fn new() -> SessionBook {
        SessionBook {
            accepting: false,
            request: None,
            held_window: (0, 0),
            sent_before: 0,
            resume_point: 0,
            baseline_open: false,
            opened: false,
            answered: false,
            unfinished: 0,
            status: SessionStatus::None,
            duplicates_dropped: 0,
        }
    }
}

impl AckState {
    /// A connecting side's state that opens session `id` (from [`new_session_id`]).
    ///
    /// After the connection is lost, call [`reconnect`](Self::reconnect) and drive the same
    /// state over the next connection: the session resumes where it was.
    pub fn with_session(
        config: crate::ack::AckConfig,
        max_frame_len: usize,
        id: SessionId,
    ) -> AckState {
        let mut state = AckState::with_config(config, max_frame_len);
        state.local.session = id;
        if id != [0; 16] {
            state.session.status = SessionStatus::Pending;
        }
        state
    }

    /// An accepting side's state: its HELLO is sent once the peer's has arrived. If the peer
    /// names a session, [`session_request`](Self::session_request) says which, and the HELLO
    /// waits until [`start_session`](Self::start_session) or [`adopt`](Self::adopt) answers
    /// it; a peer without a session is answered at once, as by [`with_config`](Self::with_config).
    pub fn accepting(config: crate::ack::AckConfig, max_frame_len: usize) -> AckState {
        let mut state = AckState::with_config(config, max_frame_len);
        state.hello_pending = false;
        state.session.accepting = true;
        state
    }

    /// The session this state belongs to (all zero: none).
    pub fn session_id(&self) -> SessionId {
        self.local.session
    }

    /// What happened to the session on the current connection.
    pub fn session_status(&self) -> SessionStatus {
        self.session.status
    }

    /// DATA frames dropped because the application already had them (a peer that resent
    /// at or below the `delivered through` this side announced).
    pub fn duplicates_dropped(&self) -> u64 {
        self.session.duplicates_dropped
    }

    /// The peer's unanswered session request (accepting side): answer it with
    /// [`start_session`](Self::start_session) or [`adopt`](Self::adopt) before feeding the
    /// next frame.
    pub fn session_request(&self) -> Option<SessionRequest> {
        self.session.request
    }

    /// Answers the peer's [`SessionRequest`] with a session this side does not have: a new
    /// one, or (if the peer resumes) a fresh record that continues the peer's numbering, so
    /// its messages keep their ids; the HELLO then says the session was not resumed. Does
    /// nothing without a request.
    ///
    /// # Errors
    ///
    /// [`AckError::ResumeSeqTooLarge`] if the peer resumes naming a `delivered through`
    /// above [`MAX_RESUME_SEQ`].
    pub fn start_session(&mut self) -> Result<(), AckError> {
        let Some(req) = self.session.request.take() else {
            return Ok(());
        };
        self.local.session = req.id;
        if req.resume {
            if req.delivered > MAX_RESUME_SEQ {
                return Err(AckError::ResumeSeqTooLarge {
                    delivered: req.delivered,
                    max: MAX_RESUME_SEQ,
                });
            }
            // This side's direction continues after what the peer has, so ids it already
            // delivered are never reused; the peer's first DATA sets where its direction is.
            self.next_seq = req.delivered + 1;
            self.transmitted = req.delivered;
            self.acked = req.delivered;
            self.reported_acked = req.delivered;
            self.session.sent_before = req.delivered;
            self.session.baseline_open = true;
            self.session.status = SessionStatus::Lost;
        } else {
            self.session.status = SessionStatus::New;
        }
        self.release_hello();
        Ok(())
    }

    /// Answers the peer's [`SessionRequest`] with `stored`, the state this side kept for the
    /// session (after [`reconnect`](Self::reconnect)): `stored` becomes this connection's
    /// state. Also for an opening (not resuming) request naming a stored session: the peer
    /// never heard this side's first answer, and holding the id is what entitles it. Messages the peer says it delivered count as acknowledged; the rest are resent.
    ///
    /// # Errors
    ///
    /// [`AckError::ResumeBeyondSent`] or [`AckError::ResumeBehindAck`] if the peer's
    /// `delivered through` does not fit what this side sent and saw acknowledged.
    pub fn adopt(&mut self, mut stored: AckState) -> Result<(), AckError> {
        let (Some(req), Some(peer)) = (self.session.request.take(), self.peer) else {
            return Ok(());
        };
        stored.peer = Some(peer);
        stored.session.request = None;
        stored.session.accepting = true;
        stored.session.held_window = self.session.held_window;
        stored.apply_peer_delivered(req.delivered)?;
        // Authoritative only if this side knows where the peer's direction stands.
        stored.local.resume = !stored.session.baseline_open;
        stored.session.status = if stored.local.resume {
            SessionStatus::Resumed
        } else {
            SessionStatus::Lost
        };
        stored.release_hello();
        // `stored` went through `reconnect`, which clears what belongs to a connection: the
        // live one's timers (the driver armed them on this state, once), the keepalive and
        // a PING or GOAWAY queued while the request waited carry over.
        stored.heard = self.heard;
        stored.last_heard = self.last_heard;
        stored.ping_outstanding = self.ping_outstanding;
        stored.ping_token = self.ping_token;
        stored.ping_pending = self.ping_pending;
        stored.pong_pending = self.pong_pending;
        stored.goaway_pending = self.goaway_pending;
        *self = stored;
        Ok(())
    }

    /// The connection is gone; the session goes on. Prepares this state for the next
    /// connection: the HELLO goes out again, resuming the session, and every message not
    /// acknowledged is transmitted again once the peer's HELLO says what it delivered.
    ///
    /// `delivered_through` is the highest received seq the application actually got (a
    /// driver that drops its inbox of received-but-not-handed-out messages passes the last
    /// one it handed out; clamped to between [`taken_through`](Self::taken_through) and
    /// [`received_through`](Self::received_through)): the peer resends what follows. Messages
    /// the application got but was not done with count as acknowledged from here on: the
    /// application has them.
    ///
    /// For a state without a session this resets the connection all the same, but a peer
    /// expects seq 1 on a new connection then: build a new state instead.
    pub fn reconnect(&mut self, delivered_through: u64) {
        let d = delivered_through.clamp(self.taken, self.received);
        self.received = d;
        self.taken = d;
        self.ack_sent = d;
        self.ack_pending = false;
        self.recv_lens.clear();
        self.last_len = 0;
        self.recv_unacked_bytes = 0;
        self.taken_unacked_bytes = 0;
        self.session.sent_before = self.session.sent_before.max(self.transmitted);
        self.transmitted = self.acked;
        self.session.resume_point = d;
        self.session.request = None;
        self.session.answered = false;
        self.peer = None;
        self.send_window = 0;
        self.send_window_bytes = 0;
        self.pong_pending = None;
        self.ping_pending = None;
        self.goaway_pending = None;
        self.goaway_sent = false;
        self.peer_goaway = None;
        self.events.clear();
        self.heard = false;
        self.last_heard = None;
        self.ping_outstanding = false;
        let has_session = self.local.session != [0; 16];
        self.local.resume = has_session && !self.session.accepting && self.session.opened;
        self.local.delivered = if has_session { d } else { 0 };
        self.session.status = if has_session {
            SessionStatus::Pending
        } else {
            SessionStatus::None
        };
        // The accepting side's HELLO waits for the peer's; the connecting side speaks first.
        self.hello_pending = !self.session.accepting;
    }

    /// The application was handed the peer's messages through `seq` but did not finish them
    /// (it panicked, or was aborted): call before [`reconnect`](Self::reconnect), which then
    /// gets the point the application did finish. The peer resends those messages, and they
    /// are delivered flagged as redeliveries, since the application may have acted on them
    /// before it failed.
    pub fn handed_out_unfinished(&mut self, seq: u64) {
        self.session.unfinished = self.session.unfinished.max(seq.min(self.received));
    }

    /// `true` if the peer's message `seq` was handed to the application before without being
    /// finished ([`handed_out_unfinished`](Self::handed_out_unfinished)).
    pub(super) fn seen_unfinished(&self, seq: u64) -> bool {
        seq <= self.session.unfinished
    }

    /// Hook from `handle_hello`, after the peer's HELLO was validated and stored.
    pub(super) fn session_hello(&mut self, h: &Hello) -> Result<(), AckError> {
        if self.session.accepting {
            if h.session == [0; 16] {
                self.release_hello();
                return Ok(());
            }
            self.session.request = Some(SessionRequest {
                id: h.session,
                resume: h.resume,
                delivered: h.delivered,
            });
            self.session.held_window = (self.send_window, self.send_window_bytes);
            self.send_window = 0;
            self.send_window_bytes = 0;
            return Ok(());
        }
        if self.local.session == [0; 16] {
            return Ok(());
        }
        self.session.opened = true;
        if h.resume && h.session == self.local.session {
            // The peer kept the session (an opening HELLO finds it too when the peer's answer
            // to the first one was lost): its `delivered through` is authoritative.
            self.apply_peer_delivered(h.delivered)?;
            self.session.status = if self.local.resume {
                SessionStatus::Resumed
            } else {
                SessionStatus::New
            };
        } else if !self.local.resume {
            self.session.status = SessionStatus::New;
        } else {
            // The peer lost the session: whatever it may have received before is unknown.
            let sent_before = self.session.sent_before;
            for m in self.unacked.iter_mut().filter(|m| m.seq <= sent_before) {
                m.redelivery = true;
            }
            self.session.status = SessionStatus::Lost;
        }
        Ok(())
    }

    /// `true` if DATA `seq` is an ordinary one for [`session_data`](Self::session_data): no
    /// request unanswered, no baseline to set, not a repeat (the fast path's check).
    #[inline]
    pub(super) fn data_is_plain(&self, seq: u64) -> bool {
        self.session.request.is_none()
            && !self.session.baseline_open
            && !(seq >= 1 && seq <= self.session.resume_point)
    }

    /// Hook from `handle_data`: `Ok(true)` if the DATA is a repeat of what the application
    /// already has (drop it), `Ok(false)` to check and deliver it.
    pub(super) fn session_data(&mut self, seq: u64) -> Result<bool, AckError> {
        if self.session.request.is_some() {
            // The driver feeds frames only after answering; a peer's DATA before this
            // side's HELLO is out of sequence anyway.
            return Err(AckError::DataOutOfSequence {
                expected: self.received.saturating_add(1),
                got: seq,
            });
        }
        if self.session.baseline_open && seq > 0 {
            self.session.baseline_open = false;
            self.received = seq - 1;
            self.taken = seq - 1;
            self.ack_sent = seq - 1;
            self.session.resume_point = seq - 1;
            return Ok(false);
        }
        if seq >= 1 && seq <= self.session.resume_point {
            self.session.duplicates_dropped += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// The peer says it delivered this side's direction through `p`: those count as
    /// acknowledged, and only what follows is transmitted again.
    fn apply_peer_delivered(&mut self, p: u64) -> Result<(), AckError> {
        let sent = self.last_sent();
        if p > sent {
            return Err(AckError::ResumeBeyondSent { delivered: p, sent });
        }
        if p < self.acked {
            return Err(AckError::ResumeBehindAck {
                delivered: p,
                acked: self.acked,
            });
        }
        self.transmitted = self.transmitted.max(p);
        self.handle_ack(p)
    }

    /// Sends this side's HELLO (now that the session is settled) and opens the window.
    fn release_hello(&mut self) {
        if self.session.accepting && self.peer.is_some() {
            if self.session.held_window != (0, 0) {
                (self.send_window, self.send_window_bytes) = self.session.held_window;
                self.session.held_window = (0, 0);
            }
            self.local.delivered = if self.local.resume { self.received } else { 0 };
            self.hello_pending = true;
            self.session.answered = true;
        }
    }

    /// The accepting side has not released its HELLO on this connection yet (the peer's has
    /// not arrived, or its session request is unanswered): the HELLO must be the first frame
    /// out, so a GOAWAY, PING or PONG queued meanwhile waits for it.
    pub(super) fn hello_held(&self) -> bool {
        self.session.accepting && !self.session.answered
    }

    /// Payload bytes this state holds for its session while no connection carries it:
    /// the messages sent and not acknowledged (what a session store counts against its cap).
    pub fn session_bytes(&self) -> u64 {
        self.in_flight_bytes()
    }
}
