//! Runs of whole frames kept as they arrived, for code that forwards frames (a relay, a
//! broker, an echo) without splitting and re-encoding each one.

use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::frame::ByteOrder;
use crate::{FrameCodec, HEADER_LEN};

/// One or more whole frames, headers included, exactly as they were on the wire.
///
/// A reader that forwards what it receives takes the frames buffered after one read as a
/// run ([`FrameCodec::decode_run`], or the server's `Connection::recv_run`), and a writer
/// queues the run as it is ([`FrameWriter::feed_run`](crate::FrameWriter::feed_run)): one
/// split of the read buffer and one copy (or none, for a run of at least
/// [`ZERO_COPY_MIN`](crate::ZERO_COPY_MIN) bytes) per run instead of a split, a reference
/// count and a copy per frame. Every frame in a run was checked against the decoder's
/// maximum frame length.
///
/// ```
/// use bytes::BytesMut;
/// use framewire_codec::FrameCodec;
///
/// let mut codec = FrameCodec::new();
/// let mut buf = BytesMut::from(&b"\x00\x00\x00\x02hi\x00\x00\x00\x03you\x00\x00\x00\x05wor"[..]);
/// let run = codec.decode_run(&mut buf, 64).expect("two whole frames");
/// assert_eq!(run.len(), 2);
/// assert_eq!(run.iter().collect::<Vec<_>>(), [&b"hi"[..], &b"you"[..]]);
/// assert_eq!(run.wire_len(), 4 + 2 + 4 + 3);
/// // The third frame is not whole yet: it stays in the buffer.
/// assert_eq!(buf.len(), 4 + 3);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct FrameRun {
    repr: Repr,
}

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    /// Whole frames as they were on the wire.
    Wire {
        wire: Bytes,
        frames: usize,
        /// The longest payload, checked against a writer's limit in one comparison.
        max_len: usize,
        order: ByteOrder,
    },
    /// One payload without its header (a frame that arrived in pieces, whose header the
    /// decoder consumed, or an ack-mode message).
    One(Bytes),
}

impl FrameRun {
    /// A run of one frame (no copy: the payload is written behind its own header).
    pub fn single(payload: Bytes) -> FrameRun {
        FrameRun {
            repr: Repr::One(payload),
        }
    }

    /// Number of frames in the run (at least 1).
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Wire { frames, .. } => *frames,
            Repr::One(_) => 1,
        }
    }

    /// Always `false`: a run holds at least one frame.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the run takes on the wire, headers included.
    pub fn wire_len(&self) -> usize {
        match &self.repr {
            Repr::Wire { wire, .. } => wire.len(),
            Repr::One(payload) => HEADER_LEN + payload.len(),
        }
    }

    /// The length of the longest payload in the run.
    pub fn max_payload_len(&self) -> usize {
        match &self.repr {
            Repr::Wire { max_len, .. } => *max_len,
            Repr::One(payload) => payload.len(),
        }
    }

    /// The payloads, in order.
    pub fn iter(&self) -> Payloads<'_> {
        match &self.repr {
            Repr::Wire { wire, order, .. } => Payloads {
                rest: wire,
                order: *order,
                one: None,
            },
            Repr::One(payload) => Payloads {
                rest: &[],
                order: ByteOrder::BigEndian,
                one: Some(payload),
            },
        }
    }

    /// The payloads as [`Bytes`] sharing the run's memory (no copy).
    pub fn into_frames(self) -> impl Iterator<Item = Bytes> {
        let (wire, order, mut one) = match self.repr {
            Repr::Wire { wire, order, .. } => (wire, order, None),
            Repr::One(payload) => (Bytes::new(), ByteOrder::BigEndian, Some(payload)),
        };
        let mut at = 0;
        std::iter::from_fn(move || {
            if let Some(payload) = one.take() {
                return Some(payload);
            }
            let len = payload_len(wire.get(at..)?, order)?;
            let start = at + HEADER_LEN;
            at = start + len;
            Some(wire.slice(start..at))
        })
    }

    /// The frames as they are on the wire, if the run holds them so (`None` for a run of
    /// one payload whose header was not kept), with the byte order of their headers.
    pub(crate) fn as_wire(&self) -> Result<(&Bytes, ByteOrder), &Bytes> {
        match &self.repr {
            Repr::Wire { wire, order, .. } => Ok((wire, *order)),
            Repr::One(payload) => Err(payload),
        }
    }
}

impl fmt::Debug for FrameRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameRun")
            .field("frames", &self.len())
            .field("wire_len", &self.wire_len())
            .finish()
    }
}

impl<'a> IntoIterator for &'a FrameRun {
    type Item = &'a [u8];
    type IntoIter = Payloads<'a>;

    fn into_iter(self) -> Payloads<'a> {
        self.iter()
    }
}

/// The payloads of a [`FrameRun`], from [`FrameRun::iter`].
#[derive(Debug, Clone)]
pub struct Payloads<'a> {
    rest: &'a [u8],
    order: ByteOrder,
    one: Option<&'a Bytes>,
}

impl<'a> Iterator for Payloads<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if let Some(payload) = self.one.take() {
            return Some(payload);
        }
        let len = payload_len(self.rest, self.order)?;
        let (frame, rest) = self.rest.split_at(HEADER_LEN + len);
        self.rest = rest;
        Some(&frame[HEADER_LEN..])
    }
}

/// The payload length in the header at the front of `wire` (which holds whole frames only).
fn payload_len(wire: &[u8], order: ByteOrder) -> Option<usize> {
    let header: [u8; HEADER_LEN] = wire.get(..HEADER_LEN)?.try_into().ok()?;
    let len = match order {
        ByteOrder::BigEndian => u32::from_be_bytes(header),
        ByteOrder::LittleEndian => u32::from_le_bytes(header),
    };
    usize::try_from(len).ok()
}

impl FrameCodec {
    /// Splits off the whole frames at the front of `src`, at most `max_frames` of them, as one
    /// [`FrameRun`] (one split of the buffer however many frames it holds).
    ///
    /// Like [`decode_buffered`](Self::decode_buffered), this is a fast path: it returns `None`
    /// and leaves everything as it was unless the codec is between frames and at least the
    /// first frame is whole and within the limit. The run stops before the first frame that
    /// is not whole or is over the limit, which [`decode`](tokio_util::codec::Decoder::decode)
    /// then handles (waits for the rest, reports the error or discards).
    pub fn decode_run(&mut self, src: &mut BytesMut, max_frames: usize) -> Option<FrameRun> {
        if !self.is_between_frames() {
            return None;
        }
        let order = self.byte_order();
        let limit = self.max_frame_len();
        let (mut end, mut frames, mut max_len) = (0, 0, 0);
        while frames < max_frames {
            let Some(len) = payload_len(&src[end..], order) else {
                break;
            };
            if len > limit || src.len() - end - HEADER_LEN < len {
                break;
            }
            end += HEADER_LEN + len;
            frames += 1;
            max_len = max_len.max(len);
        }
        if frames == 0 {
            return None;
        }
        Some(FrameRun {
            repr: Repr::Wire {
                wire: src.split_to(end).freeze(),
                frames,
                max_len,
                order,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::codec::Encoder;

    fn encoded(codec: &mut FrameCodec, payloads: &[&[u8]]) -> BytesMut {
        let mut buf = BytesMut::new();
        for p in payloads {
            codec
                .encode(bytes::Bytes::copy_from_slice(p), &mut buf)
                .unwrap();
        }
        buf
    }

    #[test]
    fn a_run_takes_whole_frames_up_to_the_cap_and_leaves_the_rest() {
        let mut codec = FrameCodec::new();
        let payloads: [&[u8]; 4] = [b"", b"a", b"bcd", b"efgh"];
        let mut buf = encoded(&mut codec, &payloads);
        let run = codec.decode_run(&mut buf, 3).unwrap();
        assert_eq!(run.len(), 3);
        assert_eq!(run.max_payload_len(), 3);
        assert_eq!(run.iter().collect::<Vec<_>>(), payloads[..3]);
        let frames: Vec<Bytes> = run.clone().into_frames().collect();
        assert_eq!(frames, payloads[..3]);
        let rest = codec.decode_run(&mut buf, 3).unwrap();
        assert_eq!(rest.iter().collect::<Vec<_>>(), [&b"efgh"[..]]);
        assert!(buf.is_empty());
        assert_eq!(codec.decode_run(&mut buf, 3), None);
    }

    #[test]
    fn a_run_never_takes_a_partial_or_oversized_frame() {
        let mut codec = FrameCodec::builder().max_frame_len(4).build();
        let mut buf = encoded(&mut codec, &[b"ok"]);
        // An oversized header after a good frame: the run stops before it...
        buf.extend_from_slice(&[0, 0, 0, 5, 1, 2, 3, 4, 5]);
        let run = codec.decode_run(&mut buf, 10).unwrap();
        assert_eq!(run.len(), 1);
        // ... and leaves it to `decode`, which reports it.
        assert_eq!(codec.decode_run(&mut buf, 10), None);
        assert!(tokio_util::codec::Decoder::decode(&mut codec, &mut buf).is_err());

        // Every cut of a frame: no run until the frame is whole.
        let whole = encoded(&mut FrameCodec::new(), &[b"abcd"]);
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(FrameCodec::new().decode_run(&mut part, 10), None);
            assert_eq!(part.len(), cut);
        }
    }

    #[test]
    fn a_run_keeps_the_byte_order_it_was_read_with() {
        let mut codec = FrameCodec::builder().little_endian().build();
        let mut buf = encoded(&mut codec, &[b"xy"]);
        let run = codec.decode_run(&mut buf, 1).unwrap();
        assert_eq!(run.as_wire().unwrap().0[..4], [2, 0, 0, 0]);
        assert_eq!(run.as_wire().unwrap().1, ByteOrder::LittleEndian);
        assert_eq!(run.iter().next(), Some(&b"xy"[..]));
        let one = FrameRun::single(Bytes::from_static(b"xy"));
        assert_eq!((one.len(), one.wire_len()), (1, 6));
        assert_eq!(one.iter().collect::<Vec<_>>(), [&b"xy"[..]]);
        assert_eq!(one.into_frames().collect::<Vec<_>>(), [&b"xy"[..]]);
    }
}
