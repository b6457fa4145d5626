//! Any chunking of any sequence of frames decodes to exactly those frames.

mod common;

use common::{decode_chunks, encode_all};
use framewire_codec::FrameCodec;
use proptest::prelude::*;

const MAX: usize = 512;

fn frames() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let frame = prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => Just(Vec::new()),
        1 => proptest::collection::vec(any::<u8>(), MAX..=MAX),
    ];
    proptest::collection::vec(frame, 0..12)
}

/// Cut points into a stream of `len` bytes, derived from arbitrary fractions.
fn cuts(len: usize, fractions: &[u16]) -> Vec<usize> {
    let mut cuts: Vec<usize> = fractions
        .iter()
        .map(|f| (usize::from(*f) * (len + 1)) / (usize::from(u16::MAX) + 1))
        .collect();
    cuts.sort_unstable();
    cuts
}

proptest! {
    #[test]
    fn any_chunking_decodes_the_same_frames(
        frames in frames(),
        fractions in proptest::collection::vec(any::<u16>(), 0..20),
    ) {
        let codec = || FrameCodec::builder().max_frame_len(MAX).build();
        let wire = encode_all(&mut codec(), &frames);
        let cuts = cuts(wire.len(), &fractions);
        let mut chunks = Vec::new();
        let mut prev = 0;
        for c in cuts {
            chunks.push(&wire[prev..c]);
            prev = c;
        }
        chunks.push(&wire[prev..]);
        let got = decode_chunks(codec(), chunks).unwrap();
        let got: Vec<Vec<u8>> = got.into_iter().map(|b| b.to_vec()).collect();
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_agree_across_chunkings(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        size in 1usize..17,
    ) {
        // Whatever the input, decoding it whole or in chunks gives the same result.
        let codec = || FrameCodec::builder().max_frame_len(64).build();
        let whole = decode_chunks(codec(), [&bytes[..]]).map_err(|e| e.to_string());
        let chunked = decode_chunks(codec(), bytes.chunks(size)).map_err(|e| e.to_string());
        prop_assert_eq!(whole, chunked);
    }
}
