//! Issue 12, pipelined echo: how many writes the ack-mode client makes for a batch. A client
//! that takes a batch of replies and answers with a batch of requests writes once: the ACK
//! for the replies goes out with the requests (it used to take three writes: an ACK when the
//! last buffered reply was handed out, another at the next `recv`, then the requests). The
//! ACK still covers only what the application is done with, and still goes out when nothing
//! is sent to carry it.
//!
//! The client runs over one end of an in-memory duplex wrapped in a counter of successful
//! writes; the peer is raw frames (`AckFrame`) on the other end, so the test sees exactly
//! what the client wrote, in order.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use common::within;
use framewire_client::{AckReceiver, AckSender, Client};
use framewire_codec::ack::{AckFrame, Hello};
use framewire_codec::FrameCodec;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio_util::codec::Framed;

/// Replies in the batch, and requests sent in answer.
const BATCH: u64 = 16;
/// The window each side grants: larger than the batch, so that no ACK is due by count alone.
const WINDOW: u32 = 256;

/// A stream that counts the writes that moved bytes.
struct CountingIo {
    inner: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl AsyncRead for CountingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl CountingIo {
    fn count(&self, r: &Poll<io::Result<usize>>) {
        if matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl AsyncWrite for CountingIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.count(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.count(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type Peer = Framed<DuplexStream, FrameCodec>;

/// A connected client (split) over a counting duplex, its write counter, and the raw peer
/// after the HELLO exchange.
async fn connect() -> (AckSender, AckReceiver, Arc<AtomicUsize>, Peer) {
    connect_with(WINDOW).await
}

/// [`connect`] with both sides granting `window`.
async fn connect_with(window: u32) -> (AckSender, AckReceiver, Arc<AtomicUsize>, Peer) {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let writes = Arc::new(AtomicUsize::new(0));
    let io = CountingIo {
        inner: ours,
        writes: Arc::clone(&writes),
    };
    let peer = async move {
        let mut peer = Framed::new(theirs, FrameCodec::new());
        let hello = peer.next().await.unwrap().unwrap();
        assert!(matches!(
            AckFrame::parse(&hello).unwrap(),
            AckFrame::Hello(_)
        ));
        let ours = Hello::new(window, 1 << 20, 1 << 20);
        peer.send(Bytes::copy_from_slice(&ours.to_bytes()))
            .await
            .unwrap();
        peer
    };
    let builder = Client::builder().ack_window(window);
    let (client, peer) = tokio::join!(builder.connect_ack_stream(io), peer);
    let (tx, rx) = client.unwrap().split();
    (tx, rx, writes, peer)
}

/// The peer sends `BATCH` DATA frames (seq `first..`) in one write.
async fn send_batch(peer: &mut Peer, first: u64) {
    for seq in first..first + BATCH {
        let data = AckFrame::Data {
            seq,
            redelivery: false,
            payload: Bytes::from(format!("reply {seq}")),
        };
        peer.feed(data.to_bytes()).await.unwrap();
    }
    peer.flush().await.unwrap();
}

/// What the peer read from the client, frame by frame.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Ack(u64),
    Data(u64),
    Other,
}

async fn next_seen(peer: &mut Peer) -> Seen {
    let frame = peer.next().await.unwrap().unwrap();
    match AckFrame::parse(&frame).unwrap() {
        AckFrame::Ack { through } => Seen::Ack(through),
        AckFrame::Data { seq, .. } => Seen::Data(seq),
        _ => Seen::Other,
    }
}

#[tokio::test]
async fn a_pipelined_batch_is_answered_in_one_write_with_its_ack() {
    within(async {
        let (tx, mut rx, writes, mut peer) = connect().await;
        send_batch(&mut peer, 1).await;
        // The first reply arrives (waiting for it may read and write: not counted).
        let first = rx.recv().await.unwrap().unwrap();
        assert_eq!(first.seq, 1);
        let before = writes.load(Ordering::SeqCst);
        // The rest of the batch is buffered: taken without waiting, as is the next poll
        // that finds nothing (the application is done with the whole batch). Then the
        // answers, all within the window: nothing here yields to the driver task (this
        // runtime has one thread).
        take_batch_rest(&mut rx);
        for i in 0..BATCH {
            let sent = tx.send(format!("request {i}")).now_or_never();
            assert!(matches!(sent, Some(Ok(_))), "in the window: {sent:?}");
        }
        // The peer sees the ACK for the whole batch, then the requests.
        let mut seen = Vec::new();
        while seen.len() < 1 + BATCH as usize {
            seen.push(next_seen(&mut peer).await);
        }
        let mut expected = vec![Seen::Ack(BATCH)];
        expected.extend((1..=BATCH).map(Seen::Data));
        assert_eq!(seen, expected);
        assert_eq!(
            writes.load(Ordering::SeqCst) - before,
            1,
            "the ACK for a batch and the requests sent in answer go out in one write"
        );
        drop((tx, rx));
    })
    .await;
}

#[tokio::test]
async fn an_ack_goes_out_without_a_send_to_carry_it() {
    within(async {
        let (tx, mut rx, _writes, mut peer) = connect().await;
        send_batch(&mut peer, 1).await;
        let first = rx.recv().await.unwrap().unwrap();
        assert_eq!(first.seq, 1);
        take_batch_rest(&mut rx);
        // Nothing is sent; the receiving half waits in `recv` (here: the peer's read below
        // runs while a task waits in `recv`). The ACK for the whole batch still arrives (in
        // one ACK or more).
        let waiting = tokio::spawn(async move { rx.recv().await.map(|d| d.map(|d| d.seq)) });
        loop {
            match next_seen(&mut peer).await {
                Seen::Ack(BATCH) => break,
                Seen::Ack(through) if through < BATCH => {}
                other => panic!("expected ACKs up to {BATCH}, got {other:?}"),
            }
        }
        // And the next batch is delivered to the waiting `recv`.
        send_batch(&mut peer, BATCH + 1).await;
        assert_eq!(waiting.await.unwrap().unwrap(), Some(BATCH + 1));
        drop(tx);
    })
    .await;
}

#[tokio::test]
async fn the_message_handed_out_last_is_not_acknowledged_until_the_next_recv() {
    within(async {
        let (tx, mut rx, _writes, mut peer) = connect().await;
        send_batch(&mut peer, 1).await;
        let first = rx.recv().await.unwrap().unwrap();
        assert_eq!(first.seq, 1);
        // Take the rest, and no more polls: the application still holds the last one.
        for _ in 1..BATCH {
            let d = rx.recv().now_or_never();
            assert!(matches!(d, Some(Ok(Some(_)))), "buffered: {d:?}");
        }
        // The ones before it are done (the application asked for the next one): their ACK
        // goes out without another call, and it does not cover the last one.
        assert_eq!(next_seen(&mut peer).await, Seen::Ack(BATCH - 1));
        // Asking for the next message makes the last one done.
        let waiting = tokio::spawn(async move { rx.recv().await.map(|d| d.map(|d| d.seq)) });
        assert_eq!(next_seen(&mut peer).await, Seen::Ack(BATCH));
        send_batch(&mut peer, BATCH + 1).await;
        assert_eq!(waiting.await.unwrap().unwrap(), Some(BATCH + 1));
        drop(tx);
    })
    .await;
}

/// The rest of a batch whose first message was taken already, and one more poll.
fn take_batch_rest(rx: &mut AckReceiver) {
    for i in 1..BATCH {
        let d = rx.recv().now_or_never();
        assert!(
            matches!(d, Some(Ok(Some(_)))),
            "message {i} of the batch was not buffered: {d:?}"
        );
    }
    assert!(
        rx.recv().now_or_never().is_none(),
        "nothing more is buffered"
    );
}

/// As a pipelining client is written (loadgen's `pipeline`): one task takes the replies and
/// tells another, which sends the next requests. Taking the batch makes an ACK due and wakes
/// the driver task before the answering task is woken; the driver lets the answering task run
/// first (once), so the requests go out in the ACK's write. On this single-threaded runtime
/// the order of the tasks is deterministic.
#[tokio::test]
async fn an_answer_from_another_task_goes_out_with_the_ack() {
    within(async {
        let (tx, mut rx, writes, mut peer) = connect().await;
        let taken = Arc::new(tokio::sync::Notify::new());
        let answer = {
            let taken = Arc::clone(&taken);
            tokio::spawn(async move {
                taken.notified().await;
                for i in 0..BATCH {
                    let sent = tx.send(format!("request {i}")).now_or_never();
                    assert!(matches!(sent, Some(Ok(_))), "in the window: {sent:?}");
                }
                tx
            })
        };
        send_batch(&mut peer, 1).await;
        let before = Arc::new(AtomicUsize::new(0));
        let receiver = {
            let (writes, before) = (Arc::clone(&writes), Arc::clone(&before));
            tokio::spawn(async move {
                let first = rx.recv().await.unwrap().unwrap();
                assert_eq!(first.seq, 1);
                before.store(writes.load(Ordering::SeqCst), Ordering::SeqCst);
                take_batch_rest(&mut rx);
                taken.notify_one();
                rx
            })
        };
        let mut seen = Vec::new();
        while seen.len() < 1 + BATCH as usize {
            seen.push(next_seen(&mut peer).await);
        }
        let mut expected = vec![Seen::Ack(BATCH)];
        expected.extend((1..=BATCH).map(Seen::Data));
        assert_eq!(seen, expected);
        let (tx, rx) = (answer.await.unwrap(), receiver.await.unwrap());
        assert_eq!(
            writes.load(Ordering::SeqCst) - before.load(Ordering::SeqCst),
            1,
            "the ACK for a batch and the requests another task sent in answer go out in one write"
        );
        drop((tx, rx));
    })
    .await;
}

/// Ping-pong at window 1 (loadgen's `ping`): the peer's reply comes with its ACK of the
/// request, in one write; the application takes the reply, asks for the next one (the reply
/// is done: its ACK is due) and sends the next request. The window has room again as soon as
/// the send finds the request acknowledged (it settles it itself, not in the driver's next
/// round), so the ACK of the reply and the next request go out in one write (they took two:
/// the driver wrote the ACK alone, settled, and only then was the request accepted).
#[tokio::test]
async fn a_ping_pong_at_window_1_answers_with_one_write() {
    within(async {
        let (tx, mut rx, writes, mut peer) = connect_with(1).await;
        let first = tx.send("request 1").now_or_never();
        assert!(matches!(first, Some(Ok(_))), "an empty window: {first:?}");
        assert_eq!(next_seen(&mut peer).await, Seen::Data(1));
        for round in 1..=3u64 {
            // The peer's ACK of the request and its reply, in one write.
            peer.feed(AckFrame::<Bytes>::Ack { through: round }.to_bytes())
                .await
                .unwrap();
            let reply = AckFrame::Data {
                seq: round,
                redelivery: false,
                payload: Bytes::from(format!("reply {round}")),
            };
            peer.feed(reply.to_bytes()).await.unwrap();
            peer.flush().await.unwrap();
            // Nothing here yields to the driver task (this runtime has one thread): the
            // receiving half reads the ACK and the reply itself.
            let got = rx.recv().now_or_never();
            assert!(
                matches!(&got, Some(Ok(Some(d))) if d.seq == round),
                "{got:?}"
            );
            assert!(
                rx.recv().now_or_never().is_none(),
                "nothing more is buffered"
            );
            let before = writes.load(Ordering::SeqCst);
            let next = tx.send(format!("request {}", round + 1)).now_or_never();
            assert!(
                matches!(next, Some(Ok(_))),
                "the request was acknowledged, so the window (1) has room: {next:?}"
            );
            assert_eq!(next_seen(&mut peer).await, Seen::Ack(round));
            assert_eq!(next_seen(&mut peer).await, Seen::Data(round + 1));
            assert_eq!(
                writes.load(Ordering::SeqCst) - before,
                1,
                "the ACK of the reply and the next request go out in one write"
            );
        }
        drop((tx, rx));
    })
    .await;
}
