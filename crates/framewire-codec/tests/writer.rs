//! `FrameWriter`: whatever mix of copied frames, payloads queued by reference, frames written
//! from the caller's memory and appended control bytes, and however little the transport takes
//! per call (vectored or not, pausing with `Pending`), the bytes that reach the transport are
//! exactly the frames in the order they were queued, and `len` + written = everything.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{BufMut, Bytes, BytesMut};
use framewire_codec::{FrameCodec, FrameError, FrameRun, FrameWriter, ZERO_COPY_MIN};
use tokio::io::AsyncWrite;

/// A transport taking at most `step` bytes per call (crossing part boundaries), returning
/// `Pending` every `pause`-th call, with or without vectored writes; records what it took and
/// how many parts its vectored calls carried.
struct Trickle {
    step: usize,
    pause: usize,
    calls: usize,
    vectored: bool,
    out: Vec<u8>,
    most_parts: usize,
}

impl Trickle {
    fn new(step: usize, pause: usize, vectored: bool) -> Self {
        Trickle {
            step,
            pause,
            calls: 0,
            vectored,
            out: Vec::new(),
            most_parts: 0,
        }
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.calls += 1;
        if this.calls % this.pause == 0 {
            return Poll::Pending;
        }
        this.most_parts = this.most_parts.max(bufs.len());
        let mut n = 0;
        for buf in bufs {
            for &b in buf.iter() {
                if n == this.step {
                    return Poll::Ready(Ok(n));
                }
                this.out.push(b);
                n += 1;
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i * 31 + k) as u8).collect()
}

fn frame(p: &[u8]) -> Vec<u8> {
    let mut f = (p.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(p);
    f
}

#[test]
fn every_mix_reaches_the_transport_whole_and_in_order() {
    let mut cx = Context::from_waker(Waker::noop());
    let codec = FrameCodec::new();
    let sizes = [
        0,
        5,
        ZERO_COPY_MIN - 1,
        ZERO_COPY_MIN,
        3000,
        20_000,
        1,
        70_000,
    ];
    for vectored in [true, false] {
        for (step, pause) in [(1, 7), (3, 2), (1000, 3), (100_000, 5), (7, 1_000_000)] {
            let mut io = Trickle::new(step, pause, vectored);
            let mut out = FrameWriter::new();
            let mut expected = Vec::new();
            let mut written = 0;
            for i in 0..120 {
                let p = payload(i, sizes[i % sizes.len()]);
                // A frame made of a head of its own and a payload: the payload's last part.
                let (head, tail) = p.split_at(p.len() / 3);
                match i % 5 {
                    0 if i % 2 == 1 => out.feed_headed(&codec, head, tail).unwrap(),
                    0 => out.feed(&codec, &p).unwrap(),
                    1 if i % 2 == 0 => out
                        .feed_bytes_headed(&codec, head, Bytes::copy_from_slice(tail))
                        .unwrap(),
                    3 => {
                        // A run of two whole frames as they arrived, fed as one piece.
                        let q = payload(i + 1, 3);
                        let mut wire = BytesMut::from(&frame(&p)[..]);
                        wire.extend_from_slice(&frame(&q));
                        let run = FrameCodec::new().decode_run(&mut wire, 8).unwrap();
                        assert_eq!(run.len(), 2);
                        out.feed_run(&codec, run).unwrap();
                        expected.extend_from_slice(&frame(&p));
                        expected.extend_from_slice(&frame(&q));
                        continue;
                    }
                    1 => out.feed_bytes(&codec, Bytes::from(p.clone())).unwrap(),
                    2 => out
                        .write_or_feed(&codec, &p, Pin::new(&mut io), &mut cx)
                        .unwrap(),
                    _ => {
                        // A caller's own frame appended to the buffer.
                        out.buffer_mut().put_slice(&frame(&p));
                    }
                }
                expected.extend_from_slice(&frame(&p));
                if i % 5 == 0 {
                    // A drain that may be interrupted by `Pending` (a dropped future).
                    let _ = out.poll_drain(Pin::new(&mut io), &mut cx);
                }
                if i % 11 == 0 {
                    out.write_now(Pin::new(&mut io), &mut cx).unwrap();
                }
                written += out.take_written();
                assert_eq!(
                    written,
                    io.out.len(),
                    "written counts what the transport took"
                );
                assert_eq!(
                    written + out.len(),
                    expected.len(),
                    "nothing lost or doubled"
                );
            }
            while !out.is_empty() {
                let _ = out.poll_drain(Pin::new(&mut io), &mut cx);
            }
            written += out.take_written();
            assert_eq!(written, expected.len());
            assert!(
                io.out == expected,
                "vectored {vectored}, step {step}: wire differs"
            );
            assert!(io.most_parts <= 64, "at most 64 parts per write");
            if !vectored {
                assert!(io.most_parts <= 1, "no vectored calls to a plain writer");
            }
            out.release();
            assert!(!out.holds_memory());
        }
    }
}

#[test]
fn large_bytes_are_written_from_their_own_memory() {
    let mut cx = Context::from_waker(Waker::noop());
    let codec = FrameCodec::new();
    let mut out = FrameWriter::new();
    let big = Bytes::from(vec![9u8; 64 * 1024]);
    out.feed(&codec, b"hi").unwrap();
    out.feed_bytes(&codec, big.clone()).unwrap();
    // The payload is held, not copied: the buffer holds only the two headers and "hi".
    assert_eq!(out.buffer_mut().len(), 0);
    assert_eq!(out.len(), 4 + 2 + 4 + big.len());
    let mut io = Trickle::new(usize::MAX, usize::MAX, true);
    assert!(out.poll_drain(Pin::new(&mut io), &mut cx).is_ready());
    assert_eq!(io.most_parts, 2, "one vectored write: head, payload");
    assert_eq!(&io.out[..10], b"\x00\x00\x00\x02hi\x00\x01\x00\x00");
}

#[test]
fn too_long_queues_nothing_and_a_failed_write_is_an_io_error() {
    let mut cx = Context::from_waker(Waker::noop());
    let codec = FrameCodec::builder().max_frame_len(10).build();
    let mut out = FrameWriter::new();
    out.feed(&codec, b"ok").unwrap();
    let long = vec![0u8; 11];
    assert!(matches!(
        out.feed(&codec, &long),
        Err(FrameError::OutgoingTooLong { .. })
    ));
    assert!(matches!(
        out.feed_bytes(&codec, Bytes::from(long.clone())),
        Err(FrameError::OutgoingTooLong { .. })
    ));
    let mut io = Trickle::new(1, usize::MAX, true);
    assert!(matches!(
        out.write_or_feed(&codec, &long, Pin::new(&mut io), &mut cx),
        Err(FrameError::OutgoingTooLong { .. })
    ));
    assert_eq!(out.len(), 6, "only the first frame is queued");
    assert!(io.out.is_empty(), "nothing written by a refused frame");

    struct Broken;
    impl AsyncWrite for Broken {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
    assert!(matches!(
        out.write_or_feed(&codec, b"abc", Pin::new(&mut Broken), &mut cx),
        Err(FrameError::Io(_))
    ));
    assert!(matches!(
        out.poll_drain(Pin::new(&mut Broken), &mut cx),
        Poll::Ready(Err(_))
    ));
}

#[test]
fn runs_are_checked_against_the_writer_s_limit_and_byte_order() {
    let mut cx = Context::from_waker(Waker::noop());
    let mut wire = BytesMut::new();
    for p in [&b"abc"[..], b"0123456789ab"] {
        wire.extend_from_slice(&frame(p));
    }
    let run = FrameCodec::new().decode_run(&mut wire, 8).unwrap();

    // A frame of the run over the writer's limit: an error, nothing queued.
    let small = FrameCodec::builder().max_frame_len(10).build();
    let mut out = FrameWriter::new();
    assert!(matches!(
        out.feed_run(&small, run.clone()),
        Err(FrameError::OutgoingTooLong { .. })
    ));
    assert!(out.is_empty());

    // A writer with the other byte order re-encodes every frame.
    let little = FrameCodec::builder().little_endian().build();
    out.feed_run(&little, run).unwrap();
    out.feed_run(&little, FrameRun::single(Bytes::from_static(b"z")))
        .unwrap();
    let mut io = Trickle::new(usize::MAX, usize::MAX, true);
    assert!(out.poll_drain(Pin::new(&mut io), &mut cx).is_ready());
    assert_eq!(
        io.out,
        b"\x03\0\0\0abc\x0c\0\0\x000123456789ab\x01\0\0\0z".to_vec()
    );
}

/// `take_queued` hands over exactly what was not written yet, payloads queued by reference
/// included, in order, and leaves the writer empty.
#[test]
fn take_queued_is_everything_not_yet_written() {
    let mut cx = Context::from_waker(Waker::noop());
    let codec = FrameCodec::new();
    for step in [1, 5, 3000, usize::MAX] {
        let mut out = FrameWriter::new();
        let mut expected = Vec::new();
        for (i, len) in [3, 4000, 10, 70_000, 0].into_iter().enumerate() {
            let p = payload(i, len);
            let (head, tail) = p.split_at(len / 2);
            out.feed_bytes_headed(&codec, head, Bytes::copy_from_slice(tail))
                .unwrap();
            expected.extend_from_slice(&frame(&p));
        }
        // One write of `step` bytes, then the writer is handed over.
        let mut io = Trickle::new(step, usize::MAX, true);
        let _ = out.poll_write_once(Pin::new(&mut io), &mut cx);
        let rest = out.take_queued();
        assert!(out.is_empty());
        assert_eq!([&io.out[..], &rest[..]].concat(), expected, "step {step}");
    }
}
