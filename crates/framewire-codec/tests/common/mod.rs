//! Helpers shared by the codec's integration tests.
#![allow(dead_code, unreachable_pub)]

use bytes::{Bytes, BytesMut};
use framewire_codec::{FrameCodec, FrameError};
use tokio_util::codec::{Decoder, Encoder};

/// The wire bytes of `frames`, encoded with `codec`.
pub fn encode_all(codec: &mut FrameCodec, frames: &[Vec<u8>]) -> BytesMut {
    let mut wire = BytesMut::new();
    for f in frames {
        codec
            .encode(bytes::Bytes::copy_from_slice(&f[..]), &mut wire)
            .expect("frame within limit");
    }
    wire
}

/// Feeds `chunks` to a fresh decoder one after another, decoding after each, then signals EOF.
/// Returns every frame decoded, or the first error.
pub fn decode_chunks<'a>(
    mut codec: FrameCodec,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Bytes>, FrameError> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(frame) = codec.decode(&mut buf)? {
            out.push(frame);
        }
    }
    while let Some(frame) = codec.decode_eof(&mut buf)? {
        out.push(frame);
    }
    Ok(out)
}

/// A few frames covering the edge cases: empty, one byte, 0xff bytes, a few KiB.
pub fn sample_frames() -> Vec<Vec<u8>> {
    vec![
        b"hello".to_vec(),
        Vec::new(),
        vec![0xff],
        "你好欢迎你".as_bytes().to_vec(),
        (0..3000u32).map(|i| (i % 251) as u8).collect(),
        Vec::new(),
        b"q".to_vec(),
    ]
}

/// Ack-mode helpers (loopback pairs, machine pumps, test messages).
pub mod ack;
pub mod varint;
