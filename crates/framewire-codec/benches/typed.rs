//! Typed messages vs raw bytes of the same size, both through `FrameCodec`, in one run.
//!
//! Each iteration encodes one frame into a reused buffer and decodes it again:
//!
//! * `raw`: a `Bytes` payload as long as the encoded chat message, `FrameCodec` encode + decode.
//! * `typed/bincode`, `typed/postcard`: serialize the chat message into the frame,
//!   `FrameCodec` encode + decode, deserialize it (two `String` allocations).
//! * `unguarded/bincode`: as `typed/bincode` but decoding with bincode's slice decoder directly,
//!   without the typed layer's guard: the cost of the guard.
//!
//! Run: `cargo bench -p framewire-codec --bench typed -- --warm-up-time 1 --measurement-time 2`

// criterion_group! generates an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use framewire_codec::typed::{self, Bincode, Format, Postcard};
use framewire_codec::FrameCodec;
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder};

/// The benchmark's small struct: a chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Chat {
    id: u64,
    user: String,
    text: String,
    timestamp: u64,
}

fn message() -> Chat {
    Chat {
        id: 1_234_567,
        user: "alice".to_string(),
        text: "see you at the station at nine, the train leaves at 9:12".to_string(),
        timestamp: 1_764_190_000_123,
    }
}

fn typed_round_trip<F: Format>(
    codec: &mut FrameCodec,
    buf: &mut BytesMut,
    scratch: &mut BytesMut,
    msg: &Chat,
) -> Chat {
    scratch.clear();
    typed::encode_into::<F, _>(msg, scratch).expect("encodes");
    codec
        .encode(bytes::Bytes::copy_from_slice(&scratch[..]), buf)
        .expect("frame fits");
    let frame = codec.decode(buf).expect("valid").expect("whole frame");
    typed::decode::<F, Chat>(&frame).expect("decodes")
}

fn bench(c: &mut Criterion) {
    let msg = message();
    let encoded_len = typed::encode::<Bincode, _>(&msg).expect("encodes").len();
    let raw_payload = Bytes::from(vec![0x5a; encoded_len]);
    println!(
        "chat message: bincode {encoded_len} bytes, postcard {} bytes",
        typed::encode::<Postcard, _>(&msg).expect("encodes").len()
    );

    let mut group = c.benchmark_group("typed_vs_raw");
    group.throughput(Throughput::Elements(1));

    group.bench_function("raw", |b| {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::with_capacity(256);
        b.iter(|| {
            codec
                .encode(black_box(raw_payload.clone()), &mut buf)
                .expect("frame fits");
            let frame = codec.decode(&mut buf).expect("valid").expect("whole frame");
            black_box(frame)
        })
    });

    group.bench_function("typed/bincode", |b| {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::with_capacity(256);
        let mut scratch = BytesMut::with_capacity(256);
        b.iter(|| {
            black_box(typed_round_trip::<Bincode>(
                &mut codec,
                &mut buf,
                &mut scratch,
                black_box(&msg),
            ))
        })
    });

    group.bench_function("typed/postcard", |b| {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::with_capacity(256);
        let mut scratch = BytesMut::with_capacity(256);
        b.iter(|| {
            black_box(typed_round_trip::<Postcard>(
                &mut codec,
                &mut buf,
                &mut scratch,
                black_box(&msg),
            ))
        })
    });

    // For comparison only: bincode's own slice decoder without the typed layer's guard
    // (not safe for untrusted input; shows what the guard costs).
    group.bench_function("unguarded/bincode", |b| {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::with_capacity(256);
        let mut scratch = BytesMut::with_capacity(256);
        b.iter(|| {
            scratch.clear();
            typed::encode_into::<Bincode, _>(black_box(&msg), &mut scratch).expect("encodes");
            codec
                .encode(bytes::Bytes::copy_from_slice(&scratch[..]), &mut buf)
                .expect("frame fits");
            let frame = codec.decode(&mut buf).expect("valid").expect("whole frame");
            let config = bincode::config::standard().with_limit::<4096>();
            let (chat, _): (Chat, usize) =
                bincode::serde::decode_from_slice(&frame, config).expect("decodes");
            black_box(chat)
        })
    });

    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
