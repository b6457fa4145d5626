//! Ack-mode frames: parsing and encoding of HELLO, DATA and ACK payloads.
//!
//! See the [module docs](super) for the byte layout.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::AckError;
use crate::{FrameCodec, FrameError};

/// The ack-mode protocol version this crate speaks.
pub const VERSION: u8 = 1;

/// The four magic bytes after a HELLO's kind byte: `FWAK` (framewire ack).
///
/// They make a plain-mode message that happens to start with `0x01` very unlikely to pass for
/// a HELLO, so a plain-mode peer gets [`AckError::ExpectedHello`], not a confusing window.
pub const MAGIC: [u8; 4] = *b"FWAK";

/// Flag bit in a DATA frame's flags byte: this message may have been delivered before (the
/// sender is resending it on a new connection after losing the previous one).
pub const FLAG_REDELIVERY: u8 = 0x01;

/// Length of a HELLO frame's payload: kind, magic, version, window, max frame length.
pub const HELLO_LEN: usize = 1 + 4 + 1 + 4 + 4;

/// Length of a DATA frame's header (before the application payload): kind, seq, flags.
pub const DATA_HEADER_LEN: usize = 1 + 8 + 1;

/// Length of an ACK frame's payload: kind, cumulative seq.
pub const ACK_LEN: usize = 1 + 8;

/// The kind byte that starts every ack-mode frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// `0x01`: the handshake, sent once by each side before anything else.
    Hello,
    /// `0x02`: one application message.
    Data,
    /// `0x03`: cumulative acknowledgement.
    Ack,
}

impl FrameKind {
    /// The kind byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            FrameKind::Hello => 0x01,
            FrameKind::Data => 0x02,
            FrameKind::Ack => 0x03,
        }
    }

    /// The kind a byte stands for, if any.
    pub const fn from_byte(b: u8) -> Option<FrameKind> {
        match b {
            0x01 => Some(FrameKind::Hello),
            0x02 => Some(FrameKind::Data),
            0x03 => Some(FrameKind::Ack),
            _ => None,
        }
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameKind::Hello => "HELLO",
            FrameKind::Data => "DATA",
            FrameKind::Ack => "ACK",
        })
    }
}

/// The contents of a HELLO frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hello {
    /// Protocol version; [`VERSION`] for this crate.
    pub version: u8,
    /// How many DATA frames the peer may have sent and not yet had acknowledged.
    pub window: u32,
    /// The longest frame payload (ack-mode header included) the sender of this HELLO accepts.
    pub max_frame_len: u32,
}

impl Hello {
    /// A HELLO of this crate's [`VERSION`].
    pub const fn new(window: u32, max_frame_len: u32) -> Hello {
        Hello {
            version: VERSION,
            window,
            max_frame_len,
        }
    }

    /// The frame payload (without the length prefix): [`HELLO_LEN`] bytes.
    pub fn to_bytes(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0] = FrameKind::Hello.to_byte();
        b[1..5].copy_from_slice(&MAGIC);
        b[5] = self.version;
        b[6..10].copy_from_slice(&self.window.to_be_bytes());
        b[10..14].copy_from_slice(&self.max_frame_len.to_be_bytes());
        b
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
    /// of HELLO and ACK, the minimum length of DATA, HELLO's magic and version, and that no
    /// unknown DATA flag bit is set. Never panics.
    ///
    /// # Errors
    ///
    /// [`AckError::EmptyFrame`], [`AckError::UnknownKind`], [`AckError::BadLength`],
    /// [`AckError::BadMagic`], [`AckError::VersionMismatch`], [`AckError::UnknownFlags`].
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
        match kind {
            FrameKind::Hello => {
                if frame.len() < 5 {
                    return Err(bad_len(HELLO_LEN));
                }
                let magic = [frame[1], frame[2], frame[3], frame[4]];
                if magic != MAGIC {
                    return Err(AckError::BadMagic { magic });
                }
                // The version comes before the length check: a future version may have a
                // longer HELLO, and "version mismatch" is the useful message then.
                if let Some(&version) = frame.get(5) {
                    if version != VERSION {
                        return Err(AckError::VersionMismatch {
                            ours: VERSION,
                            theirs: version,
                        });
                    }
                }
                if frame.len() != HELLO_LEN {
                    return Err(bad_len(HELLO_LEN));
                }
                Ok(AckFrame::Hello(Hello {
                    version: frame[5],
                    window: be_u32(&frame[6..10]),
                    max_frame_len: be_u32(&frame[10..14]),
                }))
            }
            FrameKind::Data => {
                if frame.len() < DATA_HEADER_LEN {
                    return Err(bad_len(DATA_HEADER_LEN));
                }
                let seq = be_u64(&frame[1..9]);
                let flags = frame[9];
                if flags & !FLAG_REDELIVERY != 0 {
                    return Err(AckError::UnknownFlags { seq, flags });
                }
                Ok(AckFrame::Data {
                    seq,
                    redelivery: flags & FLAG_REDELIVERY != 0,
                    payload: &frame[DATA_HEADER_LEN..],
                })
            }
            FrameKind::Ack => {
                if frame.len() != ACK_LEN {
                    return Err(bad_len(ACK_LEN));
                }
                Ok(AckFrame::Ack {
                    through: be_u64(&frame[1..9]),
                })
            }
        }
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
            AckFrame::Hello(h) => AckFrame::Hello(h),
            AckFrame::Ack { through } => AckFrame::Ack { through },
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
        })
    }
}

impl<P: AsRef<[u8]>> AckFrame<P> {
    /// The frame's kind.
    pub fn kind(&self) -> FrameKind {
        match self {
            AckFrame::Hello(_) => FrameKind::Hello,
            AckFrame::Data { .. } => FrameKind::Data,
            AckFrame::Ack { .. } => FrameKind::Ack,
        }
    }

    /// Length of the frame payload (what the length prefix will say).
    pub fn len(&self) -> usize {
        match self {
            AckFrame::Hello(_) => HELLO_LEN,
            AckFrame::Data { payload, .. } => {
                DATA_HEADER_LEN.saturating_add(payload.as_ref().len())
            }
            AckFrame::Ack { .. } => ACK_LEN,
        }
    }

    /// Always `false`: every ack-mode frame has at least a kind byte. (For clippy's
    /// `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        false
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
        match self {
            AckFrame::Hello(h) => codec.encode_parts(&[&h.to_bytes()], dst),
            AckFrame::Ack { through } => codec.encode_parts(&[&ack_bytes(*through)], dst),
            AckFrame::Data {
                seq,
                redelivery,
                payload,
            } => codec.encode_parts(&[&data_header(*seq, *redelivery), payload.as_ref()], dst),
        }
    }

    /// Appends the frame payload *without* the length prefix to `dst` (for callers that frame
    /// it themselves).
    pub fn write_payload(&self, dst: &mut BytesMut) {
        match self {
            AckFrame::Hello(h) => dst.put_slice(&h.to_bytes()),
            AckFrame::Ack { through } => dst.put_slice(&ack_bytes(*through)),
            AckFrame::Data {
                seq,
                redelivery,
                payload,
            } => {
                dst.reserve(self.len());
                dst.put_slice(&data_header(*seq, *redelivery));
                dst.put_slice(payload.as_ref());
            }
        }
    }

    /// The frame payload without the length prefix, as a new buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.len());
        self.write_payload(&mut b);
        b.freeze()
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
