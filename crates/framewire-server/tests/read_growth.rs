//! The buffered read path (streams without readiness, such as TLS or a user's own stream):
//! a large frame from a fast peer gets room for the rest of it in one step, bounded; a peer
//! that stalls inside a frame does not.
//!
//! The server reads through a recording stream that hands out at most 16 KiB per read (as a
//! TLS stream does: one record) and notes the room each read offered.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use framewire_server::{Address, Connection, Server, ServerError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

/// Most bytes one read hands out: a TLS record's plaintext.
const RECORD: usize = 16 * 1024;

/// The largest read the server grows to (its `MAX_READ_SIZE`).
const MAX_READ: usize = 64 * 1024;

/// One read the server made: the room it offered, and what it got (`None`: pending).
#[derive(Clone, Copy, Debug)]
struct Read {
    room: usize,
    got: Option<usize>,
}

/// The server's end of a pipe, recording every read.
struct Recorded {
    io: DuplexStream,
    log: Arc<Mutex<Vec<Read>>>,
}

impl AsyncRead for Recorded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let room = buf.remaining();
        let mut tmp = vec![0u8; room.min(RECORD)];
        let mut small = ReadBuf::new(&mut tmp);
        let polled = Pin::new(&mut this.io).poll_read(cx, &mut small);
        let got = match &polled {
            Poll::Ready(Ok(())) => {
                buf.put_slice(small.filled());
                Some(small.filled().len())
            }
            _ => None,
        };
        this.log.lock().unwrap().push(Read { room, got });
        polled
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, b)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A server over one recorded pipe whose handler reports each frame's length; returns our
/// end of the pipe, the read log and the lengths.
fn serve_one_pipe() -> (
    DuplexStream,
    Arc<Mutex<Vec<Read>>>,
    tokio::sync::mpsc::UnboundedReceiver<usize>,
) {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let log = Arc::new(Mutex::new(Vec::new()));
    let recorded = Recorded {
        io: theirs,
        log: log.clone(),
    };
    let (conns, rx) = futures::channel::mpsc::unbounded();
    conns
        .unbounded_send(Ok((recorded, Address::Other("pipe".into()))))
        .unwrap();
    let server = Server::builder().incoming(rx, Address::Other("pipes".into()));
    let (lens_tx, lens) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |mut conn: Connection| {
        let lens_tx = lens_tx.clone();
        async move {
            while let Some(frame) = conn.recv().await? {
                let _ = lens_tx.send(frame.len());
            }
            Ok::<_, ServerError>(())
        }
    }));
    // Keep the stream of connections open (the server would stop accepting).
    std::mem::forget(conns);
    (ours, log, lens)
}

#[tokio::test]
async fn a_large_frame_from_a_fast_peer_gets_room_for_its_rest_bounded() {
    within(async {
        let (mut ours, log, mut lens) = serve_one_pipe();
        let len = 256 * 1024;
        let frames = 4;
        let mut frame = (len as u32).to_be_bytes().to_vec();
        frame.extend(vec![0xab; len]);
        for _ in 0..frames {
            ours.write_all(&frame).await.unwrap();
        }
        for _ in 0..frames {
            assert_eq!(lens.recv().await, Some(len));
        }
        // Walk the reads along the byte stream: for each, how much of the current frame was
        // missing before it.
        let log = log.lock().unwrap().clone();
        let frame_len = 4 + len;
        let mut at = 0usize; // bytes handed out so far
        let mut grown_reads = 0;
        for read in &log {
            let Some(got) = read.got else { continue };
            let in_frame = at % frame_len;
            // Payload bytes of the current frame still to come (the header first).
            let missing = frame_len - in_frame.max(4);
            at += got;
            if in_frame < 4 + RECORD {
                // The frame's first reads: the buffer may still be small.
                continue;
            }
            grown_reads += 1;
            assert!(
                read.room >= missing.min(MAX_READ),
                "a read {in_frame} bytes into a {frame_len}-byte frame offered {} bytes of \
                 room; expected room for the rest of the frame up to {MAX_READ} ({:?})",
                read.room,
                log
            );
            // Bounded by the frame, not more: the buffer of the previous frame may be reused
            // whole, and a reserve may round up to twice the capacity.
            assert!(
                read.room <= 2 * (frame_len + MAX_READ),
                "a read {in_frame} bytes into a {frame_len}-byte frame offered {} bytes of room",
                read.room
            );
        }
        assert_eq!(at, frames * frame_len);
        assert!(
            grown_reads >= frames * (len / RECORD - 2),
            "{grown_reads} reads"
        );
    })
    .await;
}

#[tokio::test]
async fn a_peer_stalling_inside_a_large_frame_keeps_a_small_buffer() {
    within(async {
        let (mut ours, log, _lens) = serve_one_pipe();
        // Announce 8 MiB, send 100 bytes of it, then nothing.
        let mut start = (8u32 << 20).to_be_bytes().to_vec();
        start.extend([0xcd; 100]);
        ours.write_all(&start).await.unwrap();
        // Wait (bounded) until the server has read those bytes and is waiting for more.
        let mut waited = 0;
        loop {
            let reads = log.lock().unwrap().clone();
            let got: usize = reads.iter().filter_map(|r| r.got).sum();
            if got == start.len() && reads.last().is_some_and(|r| r.got.is_none()) {
                break;
            }
            waited += 1;
            assert!(waited < 300, "the server did not read the bytes: {reads:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let reads = log.lock().unwrap().clone();
        let largest = reads.iter().map(|r| r.room).max().unwrap();
        assert!(
            largest < MAX_READ,
            "a stalled 8 MiB frame was offered {largest} bytes of room: {reads:?}"
        );
    })
    .await;
}
