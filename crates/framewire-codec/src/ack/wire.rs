//! Ack-mode frames: parsing and encoding of HELLO, DATA and ACK payloads.
//!
//! See the [module docs](super) for the byte layout.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::AckError;
use crate::{FrameCodec, FrameError};

/// The ack-mode protocol version this crate speaks.
///
/// Version 2 added the byte window, the session fields of HELLO, and the GOAWAY, PING and
/// PONG frames. A version 1 peer's HELLO is refused with [`AckError::VersionMismatch`] naming
/// both versions.
pub const VERSION: u8 = 2;

/// The four magic bytes after a HELLO's kind byte: `FWAK` (framewire ack).
///
/// They make a plain-mode message that happens to start with `0x01` very unlikely to pass for
/// a HELLO, so a plain-mode peer gets [`AckError::ExpectedHello`], not a confusing window.
pub const MAGIC: [u8; 4] = *b"FWAK";

/// Flag bit in a DATA frame's flags byte: this message may have been delivered before (the
/// sender is resending it on a new connection after losing the previous one).
pub const FLAG_REDELIVERY: u8 = 0x01;

/// Flag bit in a HELLO frame's flags byte: the sender resumes the session named in the HELLO.
///
/// From the connecting side: "I had this session before; `delivered through` is what I
/// delivered of it". From the accepting side, in answer: "I still have this session; my
/// `delivered through` is authoritative, resend only what follows it". An accepting side that
/// answers a resuming HELLO without this bit no longer has the session (restarted, linger
/// expired, another server): delivery falls back to at-least-once with stable message ids.
pub const FLAG_HELLO_RESUME: u8 = 0x01;

/// Length of a HELLO frame's payload: kind, magic, version, flags, window (messages), window
/// (bytes), max frame length, session id, delivered-through.
pub const HELLO_LEN: usize = 1 + 4 + 1 + 1 + 4 + 4 + 4 + 16 + 8;

/// Length of a DATA frame's header (before the application payload): kind, seq, flags.
pub const DATA_HEADER_LEN: usize = 1 + 8 + 1;

/// Length of an ACK frame's payload: kind, cumulative seq.
pub const ACK_LEN: usize = 1 + 8;

/// Length of a GOAWAY frame's payload: kind, reason, delivered-through.
pub const GOAWAY_LEN: usize = 1 + 1 + 8;

/// Length of a PING or PONG frame's payload: kind, token.
pub const PING_LEN: usize = 1 + 8;

/// The kind byte that starts every ack-mode frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// `0x01`: the handshake, sent once by each side before anything else.
    Hello,
    /// `0x02`: one application message.
    Data,
    /// `0x03`: cumulative acknowledgement.
    Ack,
    /// `0x04`: this side is going away (shutdown, restart, idle close): reconnect.
    GoAway,
    /// `0x05`: keepalive probe; the peer answers with PONG.
    Ping,
    /// `0x06`: answer to a PING.
    Pong,
}

impl FrameKind {
    /// The kind byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            FrameKind::Hello => 0x01,
            FrameKind::Data => 0x02,
            FrameKind::Ack => 0x03,
            FrameKind::GoAway => 0x04,
            FrameKind::Ping => 0x05,
            FrameKind::Pong => 0x06,
        }
    }

    /// The kind a byte stands for, if any.
    pub const fn from_byte(b: u8) -> Option<FrameKind> {
        match b {
            0x01 => Some(FrameKind::Hello),
            0x02 => Some(FrameKind::Data),
            0x03 => Some(FrameKind::Ack),
            0x04 => Some(FrameKind::GoAway),
            0x05 => Some(FrameKind::Ping),
            0x06 => Some(FrameKind::Pong),
            _ => None,
        }
    }

    /// The exact payload length of a fixed-size kind (`None` for DATA).
    const fn fixed_len(self) -> Option<usize> {
        match self {
            FrameKind::Hello => Some(HELLO_LEN),
            FrameKind::Data => None,
            FrameKind::Ack => Some(ACK_LEN),
            FrameKind::GoAway => Some(GOAWAY_LEN),
            FrameKind::Ping | FrameKind::Pong => Some(PING_LEN),
        }
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameKind::Hello => "HELLO",
            FrameKind::Data => "DATA",
            FrameKind::Ack => "ACK",
            FrameKind::GoAway => "GOAWAY",
            FrameKind::Ping => "PING",
            FrameKind::Pong => "PONG",
        })
    }
}

/// A session id: 128 bits naming a session that outlives connections (all zero: no
/// session). Made by [`new_session_id`](super::new_session_id) from the operating system's
/// random number generator, so it cannot be guessed: knowing it is what entitles a connection
/// to resume the session.
pub type SessionId = [u8; 16];

/// The contents of a HELLO frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hello {
    /// Protocol version; [`VERSION`] for this crate.
    pub version: u8,
    /// How many DATA frames the peer may have sent and not yet had acknowledged (at least 1).
    pub window: u32,
    /// How many payload bytes the peer may have sent and not yet had acknowledged (at least 1).
    /// The peer may send a DATA frame while fewer bytes than this are unacknowledged, so one
    /// frame may overshoot it.
    pub window_bytes: u32,
    /// The longest frame payload (ack-mode header included) the sender of this HELLO accepts.
    pub max_frame_len: u32,
    /// The session this connection belongs to (all zero: none).
    pub session: SessionId,
    /// For a resumed session: the highest seq of the session the sender of this HELLO has
    /// delivered to its application (0 without a session).
    pub delivered: u64,
    /// The [`FLAG_HELLO_RESUME`] bit: the sender resumes `session` (see there).
    pub resume: bool,
}

impl Hello {
    /// A HELLO of this crate's [`VERSION`], without a session.
    pub const fn new(window: u32, window_bytes: u32, max_frame_len: u32) -> Hello {
        Hello {
            version: VERSION,
            window,
            window_bytes,
            max_frame_len,
            session: [0; 16],
            delivered: 0,
            resume: false,
        }
    }

    /// The frame payload (without the length prefix): [`HELLO_LEN`] bytes.
    pub fn to_bytes(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0] = FrameKind::Hello.to_byte();
        b[1..5].copy_from_slice(&MAGIC);
        b[5] = self.version;
        b[6] = if self.resume { FLAG_HELLO_RESUME } else { 0 };
        b[7..11].copy_from_slice(&self.window.to_be_bytes());
        b[11..15].copy_from_slice(&self.window_bytes.to_be_bytes());
        b[15..19].copy_from_slice(&self.max_frame_len.to_be_bytes());
        b[19..35].copy_from_slice(&self.session);
        b[35..43].copy_from_slice(&self.delivered.to_be_bytes());
        b
    }
}

/// Why a peer sent GOAWAY: it is going away and the connection should be re-established
/// (possibly with another server), as opposed to a plain close, which means "the conversation
/// is over".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GoAwayReason {
    /// `0x01`: the server is shutting down (graceful shutdown, rolling restart).
    Shutdown,
    /// `0x02`: the connection was idle too long and is closed to save resources.
    Idle,
    /// Any other code (a newer peer's reason): treated like the others, reconnect.
    Other(u8),
}

impl GoAwayReason {
    /// The code on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            GoAwayReason::Shutdown => 0x01,
            GoAwayReason::Idle => 0x02,
            GoAwayReason::Other(b) => b,
        }
    }

    /// The reason a code stands for.
    pub const fn from_byte(b: u8) -> GoAwayReason {
        match b {
            0x01 => GoAwayReason::Shutdown,
            0x02 => GoAwayReason::Idle,
            other => GoAwayReason::Other(other),
        }
    }
}

impl fmt::Display for GoAwayReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GoAwayReason::Shutdown => f.write_str("the server is shutting down"),
            GoAwayReason::Idle => f.write_str("the connection was idle"),
            GoAwayReason::Other(b) => write!(f, "reason code 0x{b:02x}"),
        }
    }
}

/// One ack-mode frame, parsed. `P` is the payload type of DATA frames: `&[u8]` from
/// [`AckFrame::parse`], [`Bytes`] (zero-copy) from [`AckFrame::parse_bytes`].
///
/// # Examples
///
/// ```
/// use framewire_codec::ack::AckFrame;
///
/// let frame = AckFrame::parse(&[0x03, 0, 0, 0, 0, 0, 0, 0, 0x2a])?;
/// assert_eq!(frame, AckFrame::Ack { through: 42 });
///
/// let data = AckFrame::parse(b"\x02\0\0\0\0\0\0\0\x07\x01hi")?;
/// assert_eq!(data, AckFrame::Data { seq: 7, redelivery: true, payload: &b"hi"[..] });
/// # Ok::<(), framewire_codec::ack::AckError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AckFrame<P = Bytes> {
    /// The handshake.
    Hello(Hello),
    /// One application message.
    Data {
        /// Sequence number: 1 for the first DATA in each direction of each connection.
        seq: u64,
        /// The [`FLAG_REDELIVERY`] bit.
        redelivery: bool,
        /// The application payload.
        payload: P,
    },
    /// Every DATA up to and including `through` was taken by the receiving application.
    Ack {
        /// The cumulative sequence number.
        through: u64,
    },
    /// The sender is going away: reconnect (see [`GoAwayReason`]).
    GoAway {
        /// Why.
        reason: GoAwayReason,
        /// The highest seq the sender's application took (what its last ACK says, or more).
        through: u64,
    },
    /// Keepalive probe: answer with a PONG carrying the same token.
    Ping {
        /// Chosen by the sender, echoed in the PONG.
        token: u64,
    },
    /// Answer to a PING.
    Pong {
        /// The PING's token.
        token: u64,
    },
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

impl<'a> AckFrame<&'a [u8]> {
    /// Parses one frame payload (what [`FrameCodec`] decoded, without the length prefix).
    ///
    /// Checks everything that can be checked without state: the kind byte, the exact length
    /// of every fixed-size kind, the minimum length of DATA, HELLO's magic, version and flags,
    /// and that no unknown DATA flag bit is set. Never panics.
    ///
    /// # Errors
    ///
    /// [`AckError::EmptyFrame`], [`AckError::UnknownKind`], [`AckError::BadLength`],
    /// [`AckError::BadMagic`], [`AckError::VersionMismatch`], [`AckError::UnknownFlags`],
    /// [`AckError::UnknownHelloFlags`].
    pub fn parse(frame: &'a [u8]) -> Result<AckFrame<&'a [u8]>, AckError> {
        let Some(&kind_byte) = frame.first() else {
            return Err(AckError::EmptyFrame);
        };
        let Some(kind) = FrameKind::from_byte(kind_byte) else {
            return Err(AckError::UnknownKind {
                kind: kind_byte,
                len: frame.len(),
            });
        };
        let bad_len = |expected| AckError::BadLength {
            kind,
            len: frame.len(),
            expected,
        };
        if kind == FrameKind::Hello {
            if frame.len() < 5 {
                return Err(bad_len(HELLO_LEN));
            }
            let magic = [frame[1], frame[2], frame[3], frame[4]];
            if magic != MAGIC {
                return Err(AckError::BadMagic { magic });
            }
            // The version comes before the length check: another version has another HELLO
            // length, and "version mismatch" is the useful message then.
            if let Some(&version) = frame.get(5) {
                if version != VERSION {
                    return Err(AckError::VersionMismatch {
                        ours: VERSION,
                        theirs: version,
                    });
                }
            }
        }
        match kind.fixed_len() {
            Some(n) if frame.len() != n => return Err(bad_len(n)),
            None if frame.len() < DATA_HEADER_LEN => return Err(bad_len(DATA_HEADER_LEN)),
            _ => {}
        }
        Ok(match kind {
            FrameKind::Hello => {
                if frame[6] & !FLAG_HELLO_RESUME != 0 {
                    return Err(AckError::UnknownHelloFlags { flags: frame[6] });
                }
                let mut session = [0u8; 16];
                session.copy_from_slice(&frame[19..35]);
                AckFrame::Hello(Hello {
                    version: frame[5],
                    window: be_u32(&frame[7..11]),
                    window_bytes: be_u32(&frame[11..15]),
                    max_frame_len: be_u32(&frame[15..19]),
                    session,
                    delivered: be_u64(&frame[35..43]),
                    resume: frame[6] & FLAG_HELLO_RESUME != 0,
                })
            }
            FrameKind::Data => {
                let seq = be_u64(&frame[1..9]);
                let flags = frame[9];
                if flags & !FLAG_REDELIVERY != 0 {
                    return Err(AckError::UnknownFlags { seq, flags });
                }
                AckFrame::Data {
                    seq,
                    redelivery: flags & FLAG_REDELIVERY != 0,
                    payload: &frame[DATA_HEADER_LEN..],
                }
            }
            FrameKind::Ack => AckFrame::Ack {
                through: be_u64(&frame[1..9]),
            },
            FrameKind::GoAway => AckFrame::GoAway {
                reason: GoAwayReason::from_byte(frame[1]),
                through: be_u64(&frame[2..10]),
            },
            FrameKind::Ping => AckFrame::Ping {
                token: be_u64(&frame[1..9]),
            },
            FrameKind::Pong => AckFrame::Pong {
                token: be_u64(&frame[1..9]),
            },
        })
    }
}

impl AckFrame<Bytes> {
    /// Like [`AckFrame::parse`], but a DATA payload is a zero-copy slice of `frame`.
    ///
    /// # Errors
    ///
    /// As [`AckFrame::parse`].
    pub fn parse_bytes(mut frame: Bytes) -> Result<AckFrame<Bytes>, AckError> {
        Ok(match AckFrame::parse(&frame)? {
            AckFrame::Data {
                seq, redelivery, ..
            } => {
                // `advance` rather than `slice`: no reference-count round trip per message.
                frame.advance(DATA_HEADER_LEN);
                AckFrame::Data {
                    seq,
                    redelivery,
                    payload: frame,
                }
            }
            other => other.map_payload(|_| Bytes::new()),
        })
    }
}

impl<P> AckFrame<P> {
    /// The same frame with the DATA payload converted by `f` (other kinds carry none).
    pub fn map_payload<Q>(self, f: impl FnOnce(P) -> Q) -> AckFrame<Q> {
        match self {
            AckFrame::Hello(h) => AckFrame::Hello(h),
            AckFrame::Data {
                seq,
                redelivery,
                payload,
            } => AckFrame::Data {
                seq,
                redelivery,
                payload: f(payload),
            },
            AckFrame::Ack { through } => AckFrame::Ack { through },
            AckFrame::GoAway { reason, through } => AckFrame::GoAway { reason, through },
            AckFrame::Ping { token } => AckFrame::Ping { token },
            AckFrame::Pong { token } => AckFrame::Pong { token },
        }
    }
}

impl<P: AsRef<[u8]>> AckFrame<P> {
    /// The frame's kind.
    pub fn kind(&self) -> FrameKind {
        match self {
            AckFrame::Hello(_) => FrameKind::Hello,
            AckFrame::Data { .. } => FrameKind::Data,
            AckFrame::Ack { .. } => FrameKind::Ack,
            AckFrame::GoAway { .. } => FrameKind::GoAway,
            AckFrame::Ping { .. } => FrameKind::Ping,
            AckFrame::Pong { .. } => FrameKind::Pong,
        }
    }

    /// Length of the frame payload (what the length prefix will say).
    pub fn len(&self) -> usize {
        match self {
            AckFrame::Data { payload, .. } => {
                DATA_HEADER_LEN.saturating_add(payload.as_ref().len())
            }
            other => other.kind().fixed_len().unwrap_or(0),
        }
    }

    /// Always `false`: every ack-mode frame has at least a kind byte. (For clippy's
    /// `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The frame's bytes before the DATA payload (the whole frame for other kinds), and the
    /// DATA payload (empty for other kinds).
    pub(crate) fn parts(&self) -> (ControlBytes, &[u8]) {
        let mut c = ControlBytes {
            buf: [0u8; HELLO_LEN],
            len: 0,
        };
        let mut put = |bytes: &[u8]| {
            c.buf[..bytes.len()].copy_from_slice(bytes);
            c.len = bytes.len();
        };
        let payload: &[u8] = match self {
            AckFrame::Hello(h) => {
                put(&h.to_bytes());
                &[]
            }
            AckFrame::Data {
                seq,
                redelivery,
                payload,
            } => {
                put(&data_header(*seq, *redelivery));
                payload.as_ref()
            }
            AckFrame::Ack { through } => {
                put(&ack_bytes(*through));
                &[]
            }
            AckFrame::GoAway { reason, through } => {
                put(&goaway_bytes(*reason, *through));
                &[]
            }
            AckFrame::Ping { token } => {
                put(&ping_bytes(FrameKind::Ping, *token));
                &[]
            }
            AckFrame::Pong { token } => {
                put(&ping_bytes(FrameKind::Pong, *token));
                &[]
            }
        };
        (c, payload)
    }

    /// Encodes the frame with `codec` (length prefix included) onto `dst`.
    ///
    /// The application payload is copied once, straight into `dst`.
    ///
    /// # Errors
    ///
    /// [`FrameError::OutgoingTooLong`] if the frame exceeds the codec's maximum.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use framewire_codec::{ack::AckFrame, FrameCodec};
    ///
    /// let mut dst = BytesMut::new();
    /// AckFrame::<&[u8]>::Ack { through: 1 }.encode(&mut FrameCodec::new(), &mut dst)?;
    /// assert_eq!(&dst[..], [0, 0, 0, 9, 3, 0, 0, 0, 0, 0, 0, 0, 1]);
    /// # Ok::<(), framewire_codec::FrameError>(())
    /// ```
    pub fn encode(&self, codec: &mut FrameCodec, dst: &mut BytesMut) -> Result<(), FrameError> {
        let (head, payload) = self.parts();
        codec.encode_parts(&[head.as_slice(), payload], dst)
    }

    /// Appends the frame payload *without* the length prefix to `dst` (for callers that frame
    /// it themselves).
    pub fn write_payload(&self, dst: &mut BytesMut) {
        let (head, payload) = self.parts();
        dst.reserve(head.len + payload.len());
        dst.put_slice(head.as_slice());
        dst.put_slice(payload);
    }

    /// The frame payload without the length prefix, as a new buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.len());
        self.write_payload(&mut b);
        b.freeze()
    }
}

/// The bytes of a control frame (or a DATA header), on the stack.
pub(crate) struct ControlBytes {
    buf: [u8; HELLO_LEN],
    len: usize,
}

impl ControlBytes {
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The [`DATA_HEADER_LEN`] bytes that precede a DATA frame's application payload. For
/// vectored writes: length prefix, this header, then the payload.
pub fn data_header(seq: u64, redelivery: bool) -> [u8; DATA_HEADER_LEN] {
    let mut b = [0u8; DATA_HEADER_LEN];
    b[0] = FrameKind::Data.to_byte();
    b[1..9].copy_from_slice(&seq.to_be_bytes());
    b[9] = if redelivery { FLAG_REDELIVERY } else { 0 };
    b
}

/// The [`ACK_LEN`] bytes of an ACK frame's payload.
pub fn ack_bytes(through: u64) -> [u8; ACK_LEN] {
    let mut b = [0u8; ACK_LEN];
    b[0] = FrameKind::Ack.to_byte();
    b[1..9].copy_from_slice(&through.to_be_bytes());
    b
}

/// The [`GOAWAY_LEN`] bytes of a GOAWAY frame's payload.
fn goaway_bytes(reason: GoAwayReason, through: u64) -> [u8; GOAWAY_LEN] {
    let mut b = [0u8; GOAWAY_LEN];
    b[0] = FrameKind::GoAway.to_byte();
    b[1] = reason.to_byte();
    b[2..10].copy_from_slice(&through.to_be_bytes());
    b
}

/// The [`PING_LEN`] bytes of a PING or PONG frame's payload.
fn ping_bytes(kind: FrameKind, token: u64) -> [u8; PING_LEN] {
    let mut b = [0u8; PING_LEN];
    b[0] = kind.to_byte();
    b[1..9].copy_from_slice(&token.to_be_bytes());
    b
}
