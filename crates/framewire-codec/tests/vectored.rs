//! `VectoredFrame`: what reaches the writer plus what is left in the queue is always exactly
//! the queued bytes followed by the whole frame, however much the writer takes.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use framewire_codec::{FrameCodec, FrameError, VectoredFrame};
use tokio::io::AsyncWrite;

/// A writer that takes at most `budget` bytes in all, then reports `Pending` (or, with
/// `fail`, an error).
struct Budget {
    budget: usize,
    fail: bool,
    out: Vec<u8>,
}

impl Budget {
    fn new(budget: usize, fail: bool) -> Self {
        Budget {
            budget,
            fail,
            out: Vec::new(),
        }
    }
}

impl AsyncWrite for Budget {
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
        if this.budget == 0 {
            if this.fail {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone")));
            }
            return Poll::Pending;
        }
        // Like a socket: takes at most 3 bytes per call, to cross slice boundaries often.
        let mut n = 0;
        for buf in bufs {
            for &b in buf.iter() {
                if this.budget == 0 || n == 3 {
                    return Poll::Ready(Ok(n));
                }
                this.out.push(b);
                this.budget -= 1;
                n += 1;
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const QUEUED: &[u8] = b"\x00\x00\x00\x02hi";
const PAYLOAD: &[u8] = b"0123456789abcdef";

/// The bytes that must reach the peer: the queued frame, then the new one.
fn whole_wire() -> Vec<u8> {
    let mut wire = QUEUED.to_vec();
    wire.extend_from_slice(&(PAYLOAD.len() as u32).to_be_bytes());
    wire.extend_from_slice(PAYLOAD);
    wire
}

#[test]
fn write_or_queue_at_every_budget() {
    let mut cx = Context::from_waker(Waker::noop());
    let codec = FrameCodec::new();
    let wire = whole_wire();
    for budget in 0..=wire.len() + 2 {
        let mut io = Budget::new(budget, false);
        let mut queue = BytesMut::from(QUEUED);
        let written = {
            let mut frame = VectoredFrame::new(&codec, PAYLOAD, &mut queue).unwrap();
            frame.write_or_queue(Pin::new(&mut io), &mut cx).unwrap()
        };
        assert_eq!(written, budget.min(wire.len()), "budget {budget}");
        assert_eq!(io.out, &wire[..written], "budget {budget}");
        assert_eq!(
            &queue[..],
            &wire[written..],
            "budget {budget}: the rest, queued"
        );
    }
}

#[test]
fn dropped_part_way_queues_exactly_the_rest() {
    let mut cx = Context::from_waker(Waker::noop());
    let codec = FrameCodec::new();
    let wire = whole_wire();
    for budget in 0..=wire.len() {
        for fail in [false, true] {
            let mut io = Budget::new(budget, fail);
            let mut queue = BytesMut::from(QUEUED);
            {
                let mut frame = VectoredFrame::new(&codec, PAYLOAD, &mut queue).unwrap();
                // Drive it by hand until the writer stops taking bytes, then give up.
                while !frame.is_written() {
                    match frame.poll_write(Pin::new(&mut io), &mut cx) {
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(_)) | Poll::Pending => break,
                    }
                }
            }
            let written = io.out.len();
            assert_eq!(io.out, &wire[..written]);
            if written <= QUEUED.len() {
                // Nothing of the new frame went out: it was simply not sent.
                assert_eq!(&queue[..], &wire[written..QUEUED.len()], "budget {budget}");
            } else {
                // Started: the rest of it is queued, so a flush completes it.
                assert_eq!(&queue[..], &wire[written..], "budget {budget}");
            }
        }
    }
}

#[test]
fn oversized_payload_is_refused_before_anything_happens() {
    let codec = FrameCodec::builder().max_frame_len(4).build();
    let mut queue = BytesMut::from(QUEUED);
    let err = VectoredFrame::new(&codec, PAYLOAD, &mut queue).unwrap_err();
    assert!(matches!(
        err,
        FrameError::OutgoingTooLong { len: 16, max: 4 }
    ));
    assert_eq!(&queue[..], QUEUED);
}

/// A writer that claims to have written more than it was given is not believed.
#[test]
fn a_writer_overclaiming_cannot_corrupt_the_count() {
    struct Liar;
    impl AsyncWrite for Liar {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(usize::MAX))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
    let mut cx = Context::from_waker(Waker::noop());
    let codec = FrameCodec::new();
    let mut queue = BytesMut::from(QUEUED);
    let mut frame = VectoredFrame::new(&codec, PAYLOAD, &mut queue).unwrap();
    let n = frame.write_or_queue(Pin::new(&mut Liar), &mut cx).unwrap();
    assert_eq!(n, whole_wire().len());
    assert!(frame.is_written());
    assert_eq!(frame.unwritten(), 0);
}

/// After a write error, `written` still says how much went out, and `abandon` leaves the
/// queue without the rest of the frame (the connection is closing).
#[test]
fn error_reports_bytes_written_and_abandon_queues_nothing() {
    let mut cx = Context::from_waker(Waker::noop());
    let codec = FrameCodec::new();
    let wire = whole_wire();
    for budget in 0..=wire.len() - 1 {
        let mut io = Budget::new(budget, true);
        let mut queue = BytesMut::from(QUEUED);
        let mut frame = VectoredFrame::new(&codec, PAYLOAD, &mut queue).unwrap();
        assert!(frame.write_or_queue(Pin::new(&mut io), &mut cx).is_err());
        assert_eq!(frame.written(), budget, "budget {budget}");
        frame.abandon();
        // Only queued bytes not yet written remain; nothing of the new frame was appended.
        assert_eq!(
            &queue[..],
            &QUEUED[budget.min(QUEUED.len())..],
            "budget {budget}"
        );
    }
}
