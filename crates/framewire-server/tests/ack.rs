//! Ack mode: every connection speaks ack mode with the configured window.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;
/// The handlers the examples run (`examples/handlers.rs`; this crate cannot depend on the
/// examples package).
#[path = "../../../examples/handlers.rs"]
#[allow(dead_code, unreachable_pub)]
mod handlers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use framewire_codec::ack::{AckFrame, AckFramed, Hello};
use framewire_codec::FrameCodec;
use framewire_server::{Connection, Server, ServerError};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::codec::Encoder;

async fn ack_client(addr: SocketAddr, window: u32) -> AckFramed<TcpStream> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    AckFramed::builder().window(window).new_framed(stream)
}

async fn next_payload(c: &mut AckFramed<TcpStream>) -> Option<Bytes> {
    match c.next().await {
        Some(Ok(d)) => Some(d.payload),
        _ => None,
    }
}

#[tokio::test]
async fn the_tutorial_in_stop_and_wait_ack_mode() {
    within(async {
        let server = spawn(Server::builder().ack_mode(1), handlers::tutorial::<()>).await;
        let mut c = ack_client(server.addr, 1).await;
        assert_eq!(
            next_payload(&mut c).await.as_deref(),
            Some("你好欢迎你".as_bytes())
        );
        // `send` on the ack client returns once the server's handler took the message.
        c.send(Bytes::from("吃了吗")).await.unwrap();
        assert_eq!(
            next_payload(&mut c).await.as_deref(),
            Some("吃了吗好".as_bytes())
        );
        c.send(Bytes::from_static(b"q")).await.unwrap();
        assert!(next_payload(&mut c).await.is_none());
        assert!(c.into_unacked().is_empty());
        let stats = wait_for(&server.handle, |s| s.active == 0).await;
        assert_eq!((stats.frames_in, stats.frames_out), (2, 2));
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_ack_clients_pipeline_with_large_windows() {
    many_ack_clients_pipeline(echo).await;
}

/// The same through a mirror forwarding runs (`recv_run`/`feed_run`): in ack mode each run
/// is one message, sent back as one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_ack_clients_pipeline_through_a_run_mirror() {
    many_ack_clients_pipeline(|mut conn: Connection| async move {
        while let Some(run) = conn.recv_run().await? {
            assert_eq!(run.len(), 1, "one message per run in ack mode");
            conn.feed_run(run).await?;
            while let Some(more) = conn.try_recv_run()? {
                conn.feed_run(more).await?;
            }
            conn.flush().await?;
        }
        Ok::<_, ServerError>(())
    })
    .await;
}

async fn many_ack_clients_pipeline(handler: impl framewire_server::Handler<()>) {
    within(async {
        let server = spawn(Server::builder().ack_mode(16), handler).await;
        let mut tasks = tokio::task::JoinSet::new();
        for id in 0..8u32 {
            let addr = server.addr;
            tasks.spawn(async move {
                // Write and read at once: the server's echo waits for our ACKs (we take its
                // messages) before it takes more of ours.
                let (mut up, mut down) = ack_client(addr, 16).await.split();
                let writer = async {
                    for i in 0..200u32 {
                        up.feed(Bytes::from(format!("{id}:{i}"))).await.unwrap();
                    }
                    up.flush().await.unwrap(); // every message taken by the server's handler
                };
                let reader = async {
                    for i in 0..200u32 {
                        let want = format!("{id}:{i}");
                        let got = down.next().await.unwrap().unwrap();
                        assert_eq!(got.payload, want.as_bytes());
                    }
                };
                tokio::join!(writer, reader);
            });
        }
        while let Some(res) = tasks.join_next().await {
            res.unwrap();
        }
        let stats = wait_for(&server.handle, |s| s.active == 0).await;
        assert_eq!((stats.frames_in, stats.frames_out), (1600, 1600));
        assert_eq!(stats.errors.protocol, 0);
        server.stop().await;
    })
    .await;
}

/// A hand-driven ack-mode peer over raw frames.
struct RawPeer {
    framed: Client,
}

impl RawPeer {
    async fn connect(addr: SocketAddr, window: u32) -> RawPeer {
        let mut framed = client(addr).await;
        framed
            .send(Bytes::copy_from_slice(
                &Hello::new(window, 1 << 20, 1 << 20).to_bytes(),
            ))
            .await
            .unwrap();
        let mut peer = RawPeer { framed };
        let hello = peer.next().await.unwrap();
        assert!(matches!(
            AckFrame::parse(&hello).unwrap(),
            AckFrame::Hello(_)
        ));
        peer
    }

    async fn next(&mut self) -> Option<Bytes> {
        next_frame(&mut self.framed).await
    }

    async fn send_frame(&mut self, frame: AckFrame<&[u8]>) {
        let mut buf = BytesMut::new();
        frame.encode(&mut FrameCodec::new(), &mut buf).unwrap();
        // Strip our own length prefix: the framed sink adds it.
        self.framed.send(buf.split_off(4).freeze()).await.unwrap();
    }

    /// DATA frames that arrive within `window` of silence, as seqs.
    async fn data_until_silent(&mut self, quiet: Duration) -> Vec<u64> {
        let mut seqs = Vec::new();
        while let Ok(Some(Ok(frame))) = tokio::time::timeout(quiet, self.framed.next()).await {
            match AckFrame::parse(&frame).unwrap() {
                AckFrame::Data { seq, .. } => seqs.push(seq),
                other => panic!("unexpected {other:?}"),
            }
            assert!(seqs.len() <= 100, "runaway sender");
        }
        seqs
    }
}

#[tokio::test]
async fn handler_sends_respect_the_peers_window() {
    within(async {
        let server = spawn(
            Server::builder().ack_mode(8),
            |mut conn: Connection| async move {
                for i in 0..10u8 {
                    conn.send([i]).await?;
                }
                conn.wait_acked().await?;
                conn.send("all acked").await?;
                Ok::<_, ServerError>(())
            },
        )
        .await;
        let mut peer = RawPeer::connect(server.addr, 4).await;
        let quiet = Duration::from_millis(200);
        assert_eq!(peer.data_until_silent(quiet).await, vec![1, 2, 3, 4]);
        peer.send_frame(AckFrame::Ack { through: 3 }).await;
        assert_eq!(peer.data_until_silent(quiet).await, vec![5, 6, 7]);
        peer.send_frame(AckFrame::Ack { through: 7 }).await;
        assert_eq!(peer.data_until_silent(quiet).await, vec![8, 9, 10]);
        peer.send_frame(AckFrame::Ack { through: 10 }).await;
        let last = peer.next().await.unwrap();
        assert_eq!(
            AckFrame::parse(&last).unwrap(),
            AckFrame::Data {
                seq: 11,
                redelivery: false,
                payload: &b"all acked"[..]
            }
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn messages_are_acknowledged_when_the_handler_is_done_with_them() {
    within(async {
        let gate = Arc::new(Semaphore::new(0));
        let builder = Server::builder().ack_mode(8).state(Arc::clone(&gate));
        let server = spawn(builder, |mut conn: Connection<Arc<Semaphore>>| async move {
            loop {
                // Take a message only when the test allows it.
                conn.state().acquire().await.unwrap().forget();
                if conn.recv().await?.is_none() {
                    return Ok::<_, ServerError>(());
                }
            }
        })
        .await;
        let mut peer = RawPeer::connect(server.addr, 8).await;
        for seq in 1..=3u64 {
            peer.send_frame(AckFrame::Data {
                seq,
                redelivery: false,
                payload: &b"m"[..],
            })
            .await;
        }
        // Received by the server, not taken: no ACK.
        let quiet = Duration::from_millis(200);
        assert!(silent_for(&mut peer.framed, quiet).await);
        // The handler takes all three; it is done with 1 and 2 (it asked for the next one),
        // still working on 3.
        gate.add_permits(3);
        let ack = |frame: Bytes| match AckFrame::parse(&frame).unwrap() {
            AckFrame::Ack { through } => through,
            other => panic!("unexpected {other:?}"),
        };
        let mut through = 0;
        while through < 2 {
            through = ack(peer.next().await.unwrap());
        }
        assert_eq!(through, 2, "taken is not done: 3 is not acknowledged");
        assert!(silent_for(&mut peer.framed, quiet).await);
        assert_eq!(server.handle.stats().frames_in, 3);
        // Asking for the next message makes 3 done.
        gate.add_permits(1);
        assert_eq!(ack(peer.next().await.unwrap()), 3);
        gate.add_permits(1);
        drop(peer);
        server.stop().await;
    })
    .await;
}

/// A peer that completes the handshake, then sends DATA 7 where 1 is expected.
async fn out_of_sequence_peer(addr: SocketAddr) -> RawPeer {
    let mut rogue = RawPeer::connect(addr, 4).await;
    rogue
        .send_frame(AckFrame::Data {
            seq: 7,
            redelivery: false,
            payload: &b"x"[..],
        })
        .await;
    rogue
}

#[tokio::test]
async fn garbage_in_ack_mode_closes_only_that_client() {
    within(async {
        let server = spawn(Server::builder().ack_mode(4), echo).await;
        let mut good = ack_client(server.addr, 4).await;
        good.send(Bytes::from_static(b"one")).await.unwrap();
        assert_eq!(next_payload(&mut good).await.as_deref(), Some(&b"one"[..]));

        // A plain-mode client: its first frame is not a HELLO.
        let mut plain = client(server.addr).await;
        plain.send(bytes::Bytes::from("hello")).await.unwrap();
        // It gets the server's HELLO, then the connection closes.
        let mut frames = 0;
        while next_frame(&mut plain).await.is_some() {
            frames += 1;
            assert!(frames <= 1);
        }
        // A DATA out of sequence after a proper handshake.
        let mut rogue = out_of_sequence_peer(server.addr).await;
        assert!(rogue.next().await.is_none());
        // Bytes that are not even a valid frame kind.
        let mut junk = RawPeer::connect(server.addr, 4).await;
        let mut raw = BytesMut::new();
        FrameCodec::new()
            .encode(bytes::Bytes::copy_from_slice(&[0x7fu8, 1, 2][..]), &mut raw)
            .unwrap();
        junk.framed.send(raw.split_off(4).freeze()).await.unwrap();
        assert!(junk.next().await.is_none());

        let stats = wait_for(&server.handle, |s| s.errors.protocol == 3).await;
        assert_eq!(stats.active, 1);
        good.send(Bytes::from_static(b"two")).await.unwrap();
        assert_eq!(next_payload(&mut good).await.as_deref(), Some(&b"two"[..]));
        server.stop().await;
    })
    .await;
}

/// A send refused because the driver failed on the receiving side names that failure, and
/// classifies as it did (before: "since: the connection was closed", no cause).
#[tokio::test]
async fn a_send_after_a_receive_error_names_the_receive_error() {
    within(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(ServerError, ServerError)>();
        let builder = Server::builder().ack_mode(4).state(tx);
        let handler = |mut conn: Connection<_>| async move {
            let received = conn.recv().await.expect_err("the DATA is out of sequence");
            let sent = conn
                .send(b"reply")
                .await
                .expect_err("the driver has failed");
            let tx: &tokio::sync::mpsc::UnboundedSender<_> = conn.state();
            tx.send((received, sent)).unwrap();
            Ok::<_, ServerError>(())
        };
        let server = spawn(builder, handler).await;
        let _rogue = out_of_sequence_peer(server.addr).await;
        let (received, sent) = rx.recv().await.unwrap();
        assert_eq!(received.to_string(), "DATA 7 out of sequence: expected 1");
        assert_eq!(
            sent.to_string(),
            "the connection is closed for sending, since: DATA 7 out of sequence: expected 1"
        );
        assert!(sent.is_peer_fault() && !sent.is_connection_usable() && !sent.is_retryable());
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_in_two_tasks_in_ack_mode() {
    within(async {
        let server = spawn(
            Server::builder().ack_mode(2),
            |conn: Connection| async move {
                let (mut sink, mut stream) = conn.split();
                let pusher = tokio::spawn(async move {
                    for i in 0..50u32 {
                        sink.send(format!("push {i}")).await?;
                    }
                    Ok::<_, ServerError>(sink)
                });
                let mut taken = 0u32;
                while let Some(m) = stream.next().await {
                    m?;
                    taken += 1;
                }
                let _sink = pusher
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))??;
                assert_eq!(taken, 20);
                Ok::<_, ServerError>(())
            },
        )
        .await;
        // Window 2 for the server's pushes: its sink half must read our ACKs while the stream
        // half (another task) also reads.
        let c = ack_client(server.addr, 2).await;
        let (mut up, mut down) = c.split();
        let reader = async {
            for i in 0..50u32 {
                let d = down.next().await.unwrap().unwrap();
                assert_eq!(d.payload, format!("push {i}"));
            }
        };
        let writer = async {
            for _ in 0..20 {
                up.send(Bytes::from_static(b"up")).await.unwrap();
            }
        };
        tokio::join!(reader, writer);
        let mut c = up.reunite(down).unwrap();
        c.close().await.unwrap();
        let stats = wait_for(&server.handle, |s| s.active == 0).await;
        assert_eq!((stats.frames_in, stats.frames_out), (20, 50));
        assert_eq!((stats.errors.handler, stats.errors.panic), (0, 0));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn at_shutdown_a_handler_can_still_send_and_wait_for_acks() {
    within(async {
        let server = spawn(
            Server::builder().ack_mode(4),
            |mut conn: Connection| async move {
                while let Some(m) = conn.recv().await? {
                    conn.send(&m).await?;
                }
                // recv ended: the server is shutting down. Say goodbye, reliably.
                conn.send("bye 1").await?;
                conn.send("bye 2").await?; // needs the peer's ACK for "bye 1" (window 1)
                conn.wait_acked().await?;
                Ok::<_, ServerError>(())
            },
        )
        .await;
        let mut c = ack_client(server.addr, 1).await;
        c.send(Bytes::from_static(b"hi")).await.unwrap();
        assert_eq!(next_payload(&mut c).await.as_deref(), Some(&b"hi"[..]));
        server.handle.shutdown();
        assert_eq!(next_payload(&mut c).await.as_deref(), Some(&b"bye 1"[..]));
        assert_eq!(next_payload(&mut c).await.as_deref(), Some(&b"bye 2"[..]));
        // The client is done with "bye 2": the handler's `wait_acked` returns.
        c.acknowledge().await.unwrap();
        let report = server.task.await.unwrap();
        assert_eq!((report.finished, report.aborted), (1, 0));
        assert_eq!(report.stats.errors.handler, 0);
        assert_eq!(report.stats.frames_out, 3);
    })
    .await;
}

#[tokio::test]
async fn the_handler_sees_which_messages_are_redeliveries() {
    within(async {
        let server = spawn(
            Server::builder().ack_mode(4),
            |mut conn: Connection| async move {
                assert!(!conn.last_was_redelivery());
                while let Some(frame) = conn.recv().await? {
                    let mark: &[u8] = if conn.last_was_redelivery() {
                        b"R:"
                    } else {
                        b"N:"
                    };
                    conn.send([mark, &frame[..]].concat()).await?;
                }
                Ok::<_, ServerError>(())
            },
        )
        .await;
        let mut c = ack_client(server.addr, 4).await;
        c.send_redelivery("old").await.unwrap();
        assert_eq!(next_payload(&mut c).await.as_deref(), Some(&b"R:old"[..]));
        c.send_tracked("new").await.unwrap();
        assert_eq!(next_payload(&mut c).await.as_deref(), Some(&b"N:new"[..]));
        c.send_redelivery("again").await.unwrap();
        assert_eq!(next_payload(&mut c).await.as_deref(), Some(&b"R:again"[..]));
        server.stop().await;
    })
    .await;
}

/// Messages that arrive together (read at once, so `recv` takes all but the first straight
/// from the read buffer) keep their own redelivery flags, and `frames_in` counts each.
#[tokio::test]
async fn a_burst_keeps_each_messages_redelivery_flag() {
    within(async {
        const N: usize = 24;
        let gate = Arc::new(Semaphore::new(0));
        let server = spawn(
            Server::builder()
                .ack_mode(N as u32)
                .state(Arc::clone(&gate)),
            {
                |mut conn: Connection<Arc<Semaphore>>| async move {
                    // Wait until the whole burst is written, so that it is read together.
                    let _ = conn.state().acquire().await;
                    let mut marks = Vec::new();
                    for _ in 0..N {
                        let Some(frame) = conn.recv().await? else {
                            break;
                        };
                        marks.push(if conn.last_was_redelivery() {
                            b'R'
                        } else {
                            b'N'
                        });
                        marks.extend_from_slice(&frame);
                    }
                    conn.send(marks).await?;
                    conn.wait_acked().await?;
                    Ok::<_, ServerError>(())
                }
            },
        )
        .await;
        let mut c = ack_client(server.addr, N as u32).await;
        let mut expected = Vec::new();
        for i in 0..N {
            // Redeliveries in runs of different lengths, between new messages.
            let redelivery = matches!(i % 7, 1 | 3 | 4);
            let payload = Bytes::from(vec![b'a' + (i % 26) as u8; i % 5]);
            expected.push(if redelivery { b'R' } else { b'N' });
            expected.extend_from_slice(&payload);
            futures::future::poll_fn(|cx| c.poll_ready_unpin(cx))
                .await
                .unwrap();
            c.start_send_flagged(payload, redelivery).unwrap();
        }
        // Written, not flushed: `flush` would wait for the ACKs.
        futures::future::poll_fn(|cx| c.driver().poll_write(cx))
            .await
            .unwrap();
        gate.add_permits(1);
        assert_eq!(next_payload(&mut c).await.as_deref(), Some(&expected[..]));
        c.acknowledge().await.unwrap();
        let report = server.stop().await;
        assert_eq!(report.stats.frames_in, N as u64);
    })
    .await;
}

/// A handler waiting for ACKs from a slow but steady consumer is making progress: every ACK
/// starts the write timeout over, so `wait_acked` succeeds even though the whole batch takes
/// longer than the timeout to be acknowledged.
#[tokio::test]
async fn steady_acks_keep_the_write_timeout_from_firing() {
    within(async {
        const N: usize = 12;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let builder = Server::builder()
            .ack_mode(N as u32)
            .write_timeout(Some(Duration::from_millis(300)))
            .state(tx);
        let server = spawn(
            builder,
            |mut conn: Connection<tokio::sync::mpsc::UnboundedSender<String>>| async move {
                for i in 0..N {
                    conn.send(format!("m{i}")).await?;
                }
                let outcome = conn.wait_acked().await;
                let _ = conn.state().send(format!("{outcome:?}"));
                outcome
            },
        )
        .await;
        let stream = TcpStream::connect(server.addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut c = AckFramed::builder()
            .window(N as u32)
            .ack_threshold(1)
            .new_framed(stream);
        // Take one message every 50 ms: the batch takes about 600 ms to be acknowledged,
        // twice the write timeout, while no gap between ACKs comes near it.
        for i in 0..N {
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(
                next_payload(&mut c).await.as_deref(),
                Some(format!("m{i}").as_bytes())
            );
        }
        // Keep polling so the last ACK goes out, until the handler reports.
        let outcome = tokio::select! {
            outcome = rx.recv() => outcome.unwrap(),
            _ = c.next() => rx.recv().await.unwrap(),
        };
        assert_eq!(outcome, "Ok(())");
        assert_eq!(server.handle.stats().errors.write_timeout, 0);
        server.stop().await;
    })
    .await;
}

/// Both halves of a split ack-mode connection, in two tasks, waiting on a quiet socket (the
/// sink half for window room the peer never grants, the stream half for a message that never
/// comes) sleep: neither wakes the other. They used to hand the socket's read wake-up back
/// and forth after every poll, a full core between them (review 2, M1: over 100,000 polls of
/// the stream half in 500 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_waiting_on_a_quiet_connection_do_not_wake_each_other() {
    use std::sync::atomic::{AtomicU64, Ordering};
    within(async {
        let polls = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&polls);
        let server = spawn(Server::builder().ack_mode(16), move |conn: Connection| {
            let counted = Arc::clone(&counted);
            async move {
                let (mut sink, mut stream) = conn.split();
                // The peer grants a window of 1 and never acknowledges: the second send waits.
                let pusher = tokio::spawn(async move {
                    sink.send("one").await?;
                    sink.send("two").await?;
                    Ok::<_, ServerError>(())
                });
                let next = std::future::poll_fn(|cx| {
                    counted.fetch_add(1, Ordering::Relaxed);
                    stream.poll_next_unpin(cx)
                })
                .await;
                pusher.abort();
                drop(next);
                Ok::<_, ServerError>(())
            }
        })
        .await;
        let mut peer = RawPeer::connect(server.addr, 1).await;
        let first = peer.next().await.unwrap();
        assert!(matches!(
            AckFrame::parse(&first).unwrap(),
            AckFrame::Data { .. }
        ));
        // Both halves are waiting now; give a spinning pair time to show itself.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = polls.load(Ordering::Relaxed);
        println!("stream half polled {seen} times while both halves waited");
        assert!(seen < 100, "the halves woke each other: {seen} polls");
        drop(peer);
        server.stop().await;
    })
    .await;
}

/// A split ack-mode connection whose sink task gives up on a send (a timeout while the peer's
/// window is full) and then waits on something else, holding the sink: the stream half must
/// still get the peer's next message. The cancelled send had polled the socket with its own
/// waker last, so the socket woke a task no longer waiting and the stream half slept for
/// ever (review 3, M1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_send_on_the_split_sink_does_not_strand_the_stream_half() {
    within(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let server = spawn(Server::builder().ack_mode(16), move |conn: Connection| {
            let tx = tx.clone();
            async move {
                let (mut sink, mut stream) = conn.split();
                let pusher = tokio::spawn(async move {
                    sink.send("one").await?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    // The window (1) is full: this send waits, and is cancelled.
                    let r =
                        tokio::time::timeout(Duration::from_millis(200), sink.send("two")).await;
                    assert!(r.is_err(), "the second send should have waited for room");
                    std::future::pending::<()>().await;
                    drop(sink);
                    Ok::<_, ServerError>(())
                });
                while let Some(m) = stream.next().await {
                    tx.send(String::from_utf8_lossy(&m?).into_owned()).unwrap();
                }
                pusher.abort();
                Ok::<_, ServerError>(())
            }
        })
        .await;
        let sock = TcpStream::connect(server.addr).await.unwrap();
        let mut c = AckFramed::builder().window(1).new_framed(sock);
        c.handshake().await.unwrap();
        // Taken, not acknowledged yet: the server's window stays full.
        assert_eq!(&c.next().await.unwrap().unwrap().payload[..], b"one");
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.send_tracked(Bytes::from_static(b"hello")).await.unwrap();
        let got = rx.recv().await;
        assert_eq!(got.as_deref(), Some("hello"));
        server.stop().await;
    })
    .await;
}
