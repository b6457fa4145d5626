//! Fuzz target bodies: each takes the fuzzer's bytes and checks invariants, panicking (the
//! fuzzer's signal) only when one is broken.
//!
//! This file is compiled twice: by the cargo-fuzz workspace in `fuzz/` (through `src/lib.rs`)
//! and by `crates/framewire-codec/tests/fuzz_corpus.rs` (through `#[path]`), which replays every
//! committed corpus file on stable Rust in CI. Keep it free of anything but `framewire_codec`,
//! `bytes`, `tokio_util` and `arbitrary`.
#![allow(dead_code)]

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use framewire_codec::{ByteOrder, FrameCodec, FrameError, OversizedFrame, GROWTH_STEP};
use tokio_util::codec::{Decoder, Encoder};

/// Codec settings chosen by the fuzzer.
#[derive(Debug, Arbitrary)]
struct Settings {
    /// Maximum frame length: small, so oversized frames are common, or the default.
    small_max: Option<u16>,
    little_endian: bool,
    discard: bool,
}

impl Settings {
    fn codec(&self) -> FrameCodec {
        FrameCodec::builder()
            .max_frame_len(
                self.small_max
                    .map_or(framewire_codec::DEFAULT_MAX_FRAME_LEN, usize::from),
            )
            .byte_order(if self.little_endian {
                ByteOrder::LittleEndian
            } else {
                ByteOrder::BigEndian
            })
            .oversized_frame(if self.discard {
                OversizedFrame::Discard
            } else {
                OversizedFrame::Error
            })
            .build()
    }
}

/// What decoding a byte stream produced: the frames, then how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<Vec<u8>>,
    end: Result<(), String>,
    discarded: (u64, u64),
}

/// Feeds `stream` to `codec` in chunks of the given sizes (cycled), then EOF, checking after
/// every chunk that the buffer's capacity tracks the bytes buffered, not the bytes announced.
fn decode_in_chunks(mut codec: FrameCodec, stream: &[u8], sizes: &[u8]) -> Outcome {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut sizes = sizes.iter().map(|s| usize::from(*s).max(1)).cycle();
    let end = loop {
        if rest.is_empty() {
            break loop {
                match codec.decode_eof(&mut buf) {
                    Ok(Some(f)) => frames.push(f.to_vec()),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e.to_string()),
                }
            };
        }
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        let peak = buf.len();
        let step = loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f.to_vec()),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        // Memory follows bytes received: at most about twice what is buffered, plus one step.
        assert!(
            buf.capacity() <= 2 * peak + GROWTH_STEP + 64 * 1024,
            "capacity {} with {} bytes buffered",
            buf.capacity(),
            peak
        );
        if let Err(e) = step {
            assert!(e.is_peer_error(), "decode produced a non-peer error: {e}");
            break Err(e.to_string());
        }
    };
    let d = codec.discarded();
    Outcome {
        frames,
        end,
        discarded: (d.frames, d.bytes),
    }
}

/// The plain decoder on arbitrary bytes, with chunk boundaries chosen by the input: the result
/// must not depend on the chunking, and memory must track bytes received.
pub fn plain_decode(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(settings) = Settings::arbitrary(&mut u) else {
        return;
    };
    let Ok(sizes) = <Vec<u8>>::arbitrary(&mut u) else {
        return;
    };
    let stream = u.take_rest();
    let whole = decode_in_chunks(settings.codec(), stream, &[]);
    let chunked = decode_in_chunks(settings.codec(), stream, &sizes);
    let bytewise = decode_in_chunks(settings.codec(), stream, &[1]);
    assert_eq!(whole.frames, chunked.frames);
    assert_eq!(whole.end, chunked.end);
    assert_eq!(whole.frames, bytewise.frames);
    assert_eq!(whole.end, bytewise.end);
    assert_eq!(whole.discarded, chunked.discarded);
    assert_eq!(whole.discarded, bytewise.discarded);
}

/// Encode then decode an arbitrary list of frames: the same list comes back, whatever the
/// chunking; a frame over the limit is refused by the encoder and writes nothing.
pub fn plain_roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(settings) = Settings::arbitrary(&mut u) else {
        return;
    };
    let Ok(frames) = <Vec<Vec<u8>>>::arbitrary(&mut u) else {
        return;
    };
    let Ok(sizes) = <Vec<u8>>::arbitrary(&mut u) else {
        return;
    };
    let mut codec = settings.codec();
    let mut wire = BytesMut::new();
    let mut sent = Vec::new();
    for f in &frames {
        let before = wire.len();
        match codec.encode(&f[..], &mut wire) {
            Ok(()) => sent.push(f.clone()),
            Err(FrameError::OutgoingTooLong { len, max }) => {
                assert_eq!(len, f.len());
                assert!(len > max);
                assert_eq!(wire.len(), before, "a refused frame wrote bytes");
            }
            Err(e) => panic!("unexpected encode error: {e}"),
        }
    }
    let got = decode_in_chunks(settings.codec(), &wire, &sizes);
    assert_eq!(got.end, Ok(()));
    assert_eq!(got.frames, sent);
}

/// Representative typed messages for the typed-decoding target.
pub mod typed_types {
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    /// A chat message: integers and strings.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct Chat {
        pub id: u64,
        pub user: String,
        pub text: String,
        pub at: i64,
    }

    /// An enum with unit, tuple and struct variants, bytes and options.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub enum Command {
        Ping,
        Join(String),
        Blob { data: Vec<u8>, tag: Option<u16> },
        Move(f32, f32),
    }

    /// Nested collections.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct Nested {
        pub rooms: BTreeMap<String, Vec<Chat>>,
        pub flags: Vec<Vec<bool>>,
        pub next: Option<Box<Nested>>,
    }
}

/// Decodes `data` as `T` with format `F`. On success, re-encoding and decoding again must give
/// the same value; on failure, the error must be a per-message error, never a fatal one.
fn typed_one<F, T>(data: &[u8])
where
    F: framewire_codec::typed::Format,
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    use framewire_codec::typed::{decode, encode};
    match decode::<F, T>(data) {
        Ok(value) => {
            let again = encode::<F, T>(&value).expect("a decoded value re-encodes");
            let back = decode::<F, T>(&again).expect("a re-encoded value decodes");
            // NaN != NaN: compare encodings instead of values.
            let twice = encode::<F, T>(&back).expect("re-encodes");
            assert_eq!(again, twice);
        }
        Err(e) => assert!(!e.is_fatal(), "typed decode error marked fatal: {e}"),
    }
}

/// Typed decoding of arbitrary bytes for a few representative types, in both formats.
pub fn typed_decode(data: &[u8]) {
    use framewire_codec::typed::{Bincode, Postcard};
    use typed_types::{Chat, Command, Nested};
    let Some((&which, data)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => typed_one::<Bincode, Chat>(data),
        1 => typed_one::<Bincode, Command>(data),
        2 => typed_one::<Bincode, Nested>(data),
        3 => typed_one::<Postcard, Chat>(data),
        4 => typed_one::<Postcard, Command>(data),
        _ => typed_one::<Postcard, Nested>(data),
    }
}
