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

/// The floor: `get_u32` + `split_to` + `freeze` with no checks, state or configuration.
fn decode_by_hand(mut buf: BytesMut) -> usize {
    use bytes::Buf;
    let mut n = 0;
    while buf.len() >= 4 {
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if buf.len() < 4 + len {
            break;
        }
        buf.advance(4);
        black_box(buf.split_to(len).freeze());
        n += 1;
    }
    n
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for size in SIZES {
        let n = batch_len(size);
        let payload = Bytes::from(vec![0x5a; size]);
        group.throughput(Throughput::Elements(n as u64));
        // Both codecs take the same `Bytes` item (a refcount clone per frame), into a buffer
        // that already has room, so the comparison is of the encoders alone.
        let mut dst = BytesMut::with_capacity(n * (size + 4));
        group.bench_function(BenchmarkId::new("framewire", size), |b| {
            let mut codec = FrameCodec::new();
            b.iter(|| {
                dst.clear();
                for _ in 0..n {
                    codec.encode(payload.clone(), &mut dst).unwrap();
                }
                black_box(dst.len())
            })
        });
        group.bench_function(BenchmarkId::new("length_delimited", size), |b| {
            let mut codec = LengthDelimitedCodec::new();
            b.iter(|| {
                dst.clear();
                for _ in 0..n {
                    codec.encode(payload.clone(), &mut dst).unwrap();
                }
                black_box(dst.len())
            })
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

criterion_group!(benches, decode, encode);
criterion_main!(benches);
