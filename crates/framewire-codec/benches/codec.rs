//! Decode and encode throughput of `FrameCodec` against tokio-util's `LengthDelimitedCodec`,
//! on the same input in the same run.
//!
//! ```text
//! cargo bench -p framewire-codec --bench codec
//! ```
//!
//! Each iteration decodes (or encodes) a batch of frames so that per-frame costs dominate;
//! criterion reports throughput in frames per second ("elements").
#![allow(missing_docs, clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use framewire_codec::FrameCodec;
use std::hint::black_box;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

const SIZES: [usize; 4] = [16, 64, 1024, 64 * 1024];

/// Payload bytes for the encoders: as large as the largest size.
static PAYLOAD: [u8; 64 * 1024] = [0x5a; 64 * 1024];

/// Enough frames per batch to amortise setup, but at most ~4 MiB of wire.
fn batch_len(size: usize) -> usize {
    (4 * 1024 * 1024 / (size + 4)).clamp(16, 4096)
}

fn wire(size: usize, n: usize) -> Bytes {
    let mut buf = BytesMut::new();
    let payload = Bytes::from(vec![0x5a; size]);
    let mut codec = LengthDelimitedCodec::new();
    for _ in 0..n {
        codec.encode(payload.clone(), &mut buf).unwrap();
    }
    buf.freeze()
}

fn decode_all<D: Decoder>(codec: &mut D, mut buf: BytesMut) -> usize {
    let mut n = 0;
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        black_box(&frame);
        n += 1;
    }
    n
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for size in SIZES {
        let n = batch_len(size);
        let input = wire(size, n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("framewire", size), &input, |b, input| {
            let mut codec = FrameCodec::new();
            b.iter_batched(
                || BytesMut::from(&input[..]),
                |buf| assert_eq!(decode_all(&mut codec, buf), n),
                BatchSize::LargeInput,
            )
        });
        group.bench_with_input(
            BenchmarkId::new("length_delimited", size),
            &input,
            |b, input| {
                let mut codec = LengthDelimitedCodec::new();
                b.iter_batched(
                    || BytesMut::from(&input[..]),
                    |buf| assert_eq!(decode_all(&mut codec, buf), n),
                    BatchSize::LargeInput,
                )
            },
        );
        group.bench_with_input(
            BenchmarkId::new("hand_written", size),
            &input,
            |b, input| {
                b.iter_batched(
                    || BytesMut::from(&input[..]),
                    |buf| assert_eq!(decode_by_hand(buf), n),
                    BatchSize::LargeInput,
                )
            },
        );
    }
    group.finish();
}

/// The floor: read the length, `split_to` + `freeze` with no checks, state or configuration
/// (header and payload split off together, the header dropped from the frozen `Bytes`: one
/// out-of-line call into `bytes` per frame instead of two).
fn decode_by_hand(mut buf: BytesMut) -> usize {
    use bytes::Buf;
    let mut n = 0;
    while buf.len() >= 4 {
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if buf.len() < 4 + len {
            break;
        }
        let mut frame = buf.split_to(4 + len).freeze();
        frame.advance(4);
        black_box(frame);
        n += 1;
    }
    n
}

/// Encodes `n` clones of `payload` into `dst` (emptied first); returns the bytes written.
fn encode_batch<E>(codec: &mut E, payload: &Bytes, dst: &mut BytesMut, n: usize) -> usize
where
    E: Encoder<Bytes>,
    E::Error: std::fmt::Debug,
{
    dst.clear();
    for _ in 0..n {
        codec.encode(payload.clone(), dst).unwrap();
    }
    dst.len()
}

/// Both codecs, and for `sizes` the hand-written floor too, encoding `payload_of(size)`.
fn encode_group(c: &mut Criterion, name: &str, sizes: &[usize], payload_of: fn(usize) -> Bytes) {
    let mut group = c.benchmark_group(name);
    for &size in sizes {
        let n = batch_len(size);
        let payload = payload_of(size);
        group.throughput(Throughput::Elements(n as u64));
        // Into a buffer that already has room, so the comparison is of the encoders alone.
        let mut dst = BytesMut::with_capacity(n * (size + 4));
        group.bench_function(BenchmarkId::new("framewire", size), |b| {
            let mut codec = FrameCodec::new();
            b.iter(|| black_box(encode_batch(&mut codec, &payload, &mut dst, n)))
        });
        group.bench_function(BenchmarkId::new("length_delimited", size), |b| {
            let mut codec = LengthDelimitedCodec::new();
            b.iter(|| black_box(encode_batch(&mut codec, &payload, &mut dst, n)))
        });
        group.bench_function(BenchmarkId::new("hand_written", size), |b| {
            use bytes::BufMut;
            b.iter(|| {
                dst.clear();
                for _ in 0..n {
                    let p = payload.clone();
                    dst.put_u32(p.len() as u32);
                    dst.extend_from_slice(&p);
                }
                black_box(dst.len())
            })
        });
    }
    group.finish();
}

/// Both codecs take the same `Bytes` item. It is a static `Bytes`: cloning it per frame is a
/// copy, not the refcount round trip (an atomic increment in the loop, an atomic decrement
/// where the encoder drops it) that a shared `Bytes` adds to both codecs alike;
/// `encode_refcounted` measures that case.
fn encode(c: &mut Criterion) {
    encode_group(c, "encode", &SIZES, |size| {
        Bytes::from_static(&PAYLOAD[..size])
    });
}

/// Encoding a shared (refcounted) `Bytes`, 64 B only.
fn encode_refcounted(c: &mut Criterion) {
    encode_group(c, "encode_refcounted", &[64], |size| {
        Bytes::from(vec![0x5a; size])
    });
}

criterion_group!(benches, decode, encode, encode_refcounted);
criterion_main!(benches);
