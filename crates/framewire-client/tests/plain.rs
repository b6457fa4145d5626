//! Plain-mode client against an in-test echo server and scripted raw peers on loopback.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{payloads, spawn_echo, spawn_scripted, within, Echo};
use framewire_client::{Client, ClientError};
use framewire_codec::{FrameCodec, FrameError};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn tutorial_conversation() {
    within(async {
        let addr = spawn_echo(Echo::TUTORIAL).await;
        let mut client = Client::connect(addr).await.unwrap();
        let greeting = client.recv().await.unwrap().unwrap();
        assert_eq!(&greeting[..], "你好欢迎你".as_bytes());
        let reply = client.call("hello").await.unwrap();
        assert_eq!(&reply[..], "hello好".as_bytes());
        let reply = client.call("").await.unwrap();
        assert_eq!(&reply[..], "好".as_bytes());
        let counters = client.in_flight();
        assert_eq!(counters.frames_sent, 2);
        assert_eq!(counters.frames_received, 3);
        assert_eq!(counters.sent_since_last_reply, 0);
        // `q` ends the conversation: the server closes and close() sees no late frames.
        client.send("q").await.unwrap();
        assert_eq!(client.close().await.unwrap(), Vec::<Bytes>::new());
    })
    .await;
}

#[tokio::test]
async fn batch_of_varied_frames_arrives_in_order() {
    within(async {
        let addr = spawn_echo(Echo::MIRROR).await;
        let mut client = Client::connect(addr.to_string()).await.unwrap();
        let msgs = payloads(300);
        for m in &msgs {
            client.feed(m.clone()).await.unwrap();
        }
        client.flush().await.unwrap();
        for (i, m) in msgs.iter().enumerate() {
            let got = client.recv().await.unwrap().expect("a frame");
            assert_eq!(&got, m, "frame {i}");
        }
        let counters = client.in_flight();
        assert_eq!(counters.frames_sent, 300);
        assert_eq!(counters.frames_received, 300);
        let bytes: usize = msgs.iter().map(Bytes::len).sum();
        assert_eq!(counters.bytes_sent, bytes as u64);
        client.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn split_halves_work_concurrently() {
    within(async {
        let addr = spawn_echo(Echo::MIRROR).await;
        let client = Client::connect(addr).await.unwrap();
        let (mut tx, mut rx) = client.split();
        let msgs = payloads(500);
        let sent = msgs.clone();
        let writer = tokio::spawn(async move {
            for m in sent {
                tx.send(m).await.unwrap();
            }
            tx
        });
        let mut got = Vec::new();
        while got.len() < msgs.len() {
            got.push(rx.recv().await.unwrap().expect("a frame"));
        }
        assert_eq!(got, msgs);
        let tx = writer.await.unwrap();
        assert_eq!(tx.in_flight().frames_received, 500);
        // Closing the sending half ends the stream cleanly once the server closes.
        tx.close().await.unwrap();
        assert!(rx.next().await.is_none());
    })
    .await;
}

#[cfg(unix)]
#[tokio::test]
async fn unix_socket() {
    within(async {
        let dir = std::env::temp_dir().join(format!("framewire-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("echo.sock");
        let _ = std::fs::remove_file(&path);
        common::spawn_echo_unix(&path, Echo::TUTORIAL);
        let mut client = Client::connect(format!("unix:{}", path.display()))
            .await
            .unwrap();
        assert_eq!(
            &client.recv().await.unwrap().unwrap()[..],
            "你好欢迎你".as_bytes()
        );
        assert_eq!(&client.call("unix").await.unwrap()[..], "unix好".as_bytes());
        client.close().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test]
async fn connection_refused_names_the_endpoint() {
    within(async {
        // Bind, learn the port, then free it: nothing listens there now.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = Client::connect(addr).await.unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    })
    .await;
}

#[tokio::test]
async fn invalid_endpoint() {
    let err = Client::connect("").await.unwrap_err();
    assert!(
        matches!(err, ClientError::InvalidEndpoint { .. }),
        "{err:?}"
    );
    let err = Client::connect("unix:").await.unwrap_err();
    assert!(
        matches!(err, ClientError::InvalidEndpoint { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn drop_mid_frame_says_what_was_in_flight() {
    within(async {
        // Replies to two frames, reads three more, then sends half a frame and drops.
        let addr = spawn_scripted(|stream| async move {
            let mut framed = FrameCodec::new().framed(stream);
            for _ in 0..2 {
                let f = framed.next().await.unwrap().unwrap();
                framed.send(f).await.unwrap();
            }
            for _ in 0..3 {
                framed.next().await.unwrap().unwrap();
            }
            let mut stream = framed.into_inner();
            stream.write_all(&[0, 0, 0, 10, b'x', b'y']).await.unwrap();
        })
        .await;
        let mut client = Client::connect(addr).await.unwrap();
        client.call("one").await.unwrap();
        client.call("two").await.unwrap();
        for m in ["three", "four", "five!"] {
            client.send(m).await.unwrap();
        }
        let err = client.recv().await.unwrap_err();
        let ClientError::ConnectionLost { in_flight, source } = &err else {
            panic!("expected ConnectionLost, got {err:?}");
        };
        assert_eq!(in_flight.frames_sent, 5);
        assert_eq!(in_flight.frames_received, 2);
        assert_eq!(in_flight.sent_since_last_reply, 3);
        assert_eq!(in_flight.bytes_since_last_reply, 14);
        assert!(
            matches!(
                source,
                FrameError::TruncatedFrame {
                    received: 2,
                    expected: 10
                }
            ),
            "{source:?}"
        );
        let text = err.to_string();
        assert!(text.contains("3 frames (14 bytes)"), "{text}");
        assert!(text.contains("2 of 10 payload bytes"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn call_on_clean_close_is_closed_by_peer() {
    within(async {
        let addr = spawn_scripted(|stream| async move {
            let mut framed = FrameCodec::new().framed(stream);
            framed.next().await.unwrap().unwrap();
            // Close without replying.
        })
        .await;
        let mut client = Client::connect(addr).await.unwrap();
        let err = client.call("anyone?").await.unwrap_err();
        let ClientError::ClosedByPeer { in_flight } = err else {
            panic!("expected ClosedByPeer, got {err:?}");
        };
        assert_eq!(in_flight.sent_since_last_reply, 1);
        assert_eq!(in_flight.bytes_since_last_reply, 7);
    })
    .await;
}

#[tokio::test]
async fn oversized_incoming_frame_is_a_precise_error() {
    within(async {
        let addr = spawn_scripted(|mut stream| async move {
            // Announce 9,000,000 bytes; the client's limit is 1 MiB.
            stream.write_all(&9_000_000u32.to_be_bytes()).await.unwrap();
            stream.write_all(b"abc").await.unwrap();
            let mut sink = [0u8; 16];
            let _ = stream.read(&mut sink).await;
        })
        .await;
        let mut client = Client::builder()
            .max_frame_len(1024 * 1024)
            .connect(addr)
            .await
            .unwrap();
        let err = client.recv().await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::ConnectionLost {
                    source: FrameError::IncomingTooLong {
                        len: 9_000_000,
                        max: 1_048_576
                    },
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("9000000"), "{err}");
    })
    .await;
}

/// The receiver reads through the codec's `FrameReader`: frames dribbled a byte at a time, and
/// frames larger than any read, pipelined behind small ones, arrive whole and in order.
#[tokio::test]
async fn dribbled_and_large_frames_arrive_whole_and_in_order() {
    within(async {
        let big = vec![0x5A; 300 * 1024];
        let frames: Vec<Vec<u8>> = vec![
            b"one".to_vec(),
            Vec::new(),
            big.clone(),
            b"after".to_vec(),
            big,
        ];
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend_from_slice(&u32::try_from(f.len()).unwrap().to_be_bytes());
            wire.extend_from_slice(f);
        }
        let script = wire.clone();
        let addr = spawn_scripted(|mut stream| async move {
            // The first two frames a byte at a time, each byte its own write.
            for b in &script[..4 + 3 + 4] {
                stream.write_all(&[*b]).await.unwrap();
                stream.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            stream.write_all(&script[4 + 3 + 4..]).await.unwrap();
        })
        .await;
        let mut client = Client::connect(addr).await.unwrap();
        for (i, expected) in frames.iter().enumerate() {
            let got = client.recv().await.unwrap().unwrap();
            assert_eq!(&got[..], &expected[..], "frame {i}");
        }
        assert_eq!(client.recv().await.unwrap(), None, "clean end of stream");
        assert_eq!(client.in_flight().frames_received, 5);
    })
    .await;
}

#[tokio::test]
async fn oversized_outgoing_frame_is_refused_and_connection_survives() {
    within(async {
        let addr = spawn_echo(Echo::MIRROR).await;
        let mut client = Client::builder()
            .max_frame_len(100)
            .connect(addr)
            .await
            .unwrap();
        let err = client.send(vec![0u8; 101]).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Frame(FrameError::OutgoingTooLong { len: 101, max: 100 })
            ),
            "{err:?}"
        );
        assert_eq!(client.in_flight().frames_sent, 0);
        assert_eq!(&client.call("still here").await.unwrap()[..], b"still here");
    })
    .await;
}

#[tokio::test]
async fn close_returns_replies_still_on_their_way() {
    within(async {
        // A slow echo: waits a little before answering each frame, closes on end of stream.
        let addr = spawn_scripted(|stream| async move {
            let mut framed = FrameCodec::new().framed(stream);
            while let Some(Ok(f)) = framed.next().await {
                tokio::time::sleep(Duration::from_millis(20)).await;
                framed.send(f).await.unwrap();
            }
        })
        .await;
        let mut client = Client::connect(addr).await.unwrap();
        client.send("a").await.unwrap();
        client.send("b").await.unwrap();
        let late = client.close().await.unwrap();
        assert_eq!(late, vec![Bytes::from("a"), Bytes::from("b")]);
    })
    .await;
}

/// A peer that answers, then keeps its side open after the client's FIN (it never closes):
/// `close` returns the reply once the peer has been quiet for the close linger, not after the
/// whole close timeout. Paused clock: the times compared are tokio's, not the wall clock's.
#[tokio::test(start_paused = true)]
async fn close_returns_after_the_linger_to_a_peer_that_keeps_its_side_open() {
    let addr = spawn_scripted(|stream| async move {
        let mut framed = FrameCodec::new().framed(stream);
        while let Some(Ok(f)) = framed.next().await {
            framed.send(f).await.unwrap();
        }
        // End of stream from the client: keep the connection open anyway.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(framed);
    })
    .await;
    let mut client = Client::connect(addr).await.unwrap();
    client.send("a").await.unwrap();
    let start = tokio::time::Instant::now();
    let late = client.close().await.unwrap();
    let took = start.elapsed();
    assert_eq!(late, vec![Bytes::from("a")]);
    assert!(
        took >= framewire_client::DEFAULT_CLOSE_LINGER
            && took < framewire_client::DEFAULT_CLOSE_TIMEOUT,
        "close took {took:?}"
    );
}

#[tokio::test]
async fn close_timeout_bounds_the_flush_to_a_peer_that_never_reads() {
    // Far more than loopback socket buffers hold, all buffered in the client (small frames
    // and a write buffer limit above the total, so `feed` never writes).
    const FRAME: usize = 8 * 1024;
    const FRAMES: usize = 1024;
    within(close_to_a_peer_that_never_reads(
        FRAMES,
        FRAME,
        2 * FRAMES * (FRAME + 4),
    ))
    .await;
}

/// A large frame fed to a peer that never reads is partly written and partly buffered; `feed`
/// does not wait for the peer, and `close` gives up within its close timeout.
#[tokio::test]
async fn close_timeout_bounds_a_fed_large_frame() {
    within(close_to_a_peer_that_never_reads(
        1,
        8 * 1024 * 1024 - 1,
        64 * 1024,
    ))
    .await;
}

/// Feeds `frames` frames of `size` bytes to a peer that accepts and never reads, then closes:
/// `close` must fail with `CloseTimeout` within its timeout, counting everything fed.
async fn close_to_a_peer_that_never_reads(frames: usize, size: usize, limit: usize) {
    let addr = spawn_scripted(|stream| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(stream);
    })
    .await;
    let close_timeout = Duration::from_millis(300);
    let mut client = Client::builder()
        .close_timeout(close_timeout)
        .write_buffer_limit(limit)
        .connect(addr)
        .await
        .unwrap();
    let payload = vec![7u8; size];
    for _ in 0..frames {
        client.feed(&payload).await.unwrap();
    }
    // A hang guard, far above the close timeout: close() must give up by itself.
    let closed = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
    let err = closed
        .expect("close() must give up within its close timeout")
        .unwrap_err();
    match err {
        ClientError::CloseTimeout { timeout, in_flight } => {
            assert_eq!(timeout, close_timeout);
            assert_eq!(in_flight.frames_sent, frames as u64);
            assert_eq!(in_flight.bytes_sent, (frames * size) as u64);
        }
        other => panic!("expected CloseTimeout, got {other:?}"),
    }
}

#[tokio::test]
async fn close_keeps_at_most_the_late_reply_cap() {
    within(async {
        // Streams 1 MiB frames (a bounded number, far more than the cap) and never closes.
        const FRAME: usize = 1024 * 1024;
        const FRAMES: usize = 64;
        let addr = spawn_scripted(|stream| async move {
            let mut framed = FrameCodec::new().framed(stream);
            let frame = Bytes::from(vec![1u8; FRAME]);
            for _ in 0..FRAMES {
                if framed.send(frame.clone()).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        })
        .await;
        let mut client = Client::builder()
            .close_timeout(Duration::from_secs(5))
            .connect(addr)
            .await
            .unwrap();
        // Wait for the first frame so the peer is streaming when close() starts.
        let first = client.recv().await.unwrap().expect("a frame");
        assert_eq!(first.len(), FRAME);
        let late = client.close().await.unwrap();
        let total: usize = late.iter().map(Bytes::len).sum();
        assert!(!late.is_empty());
        assert!(
            total < framewire_client::CLOSE_MAX_LATE_BYTES + FRAME,
            "kept {total} bytes in {} late frames",
            late.len()
        );
        assert!(late.iter().all(|f| f.len() == FRAME));
    })
    .await;
}

/// Frame limit of the large-frame tests: room for more than loopback socket buffers hold.
const BIG_FRAME_MAX: usize = 64 << 20;

/// Reads `n` frames from `stream` with framewire's codec (limit [`BIG_FRAME_MAX`]).
async fn read_frames(stream: tokio::net::TcpStream, n: usize) -> Vec<Bytes> {
    let codec = FrameCodec::builder().max_frame_len(BIG_FRAME_MAX).build();
    let mut framed = tokio_util::codec::FramedRead::new(stream, codec);
    let mut frames = Vec::with_capacity(n);
    while frames.len() < n {
        match framed.next().await {
            Some(Ok(frame)) => frames.push(frame),
            Some(Err(e)) => panic!("the peer read a broken stream: {e}"),
            None => break,
        }
    }
    frames
}

/// Small and large payloads (the large ones are written from the caller's memory with a
/// vectored write) interleaved: every frame arrives whole and in order.
#[tokio::test]
async fn large_payloads_are_written_in_order_with_buffered_frames() {
    within(async {
        let sizes = [
            3,
            framewire_client::VECTORED_WRITE_MIN,
            0,
            1 << 20,
            17,
            framewire_client::VECTORED_WRITE_MIN - 1,
            300_000,
        ];
        let sent: Vec<Bytes> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Bytes::from(vec![i as u8 + 1; n]))
            .collect();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let n = sent.len();
        let addr = spawn_scripted(move |stream| async move {
            let _ = tx.send(read_frames(stream, n).await);
        })
        .await;
        let mut client = Client::connect(addr).await.unwrap();
        for payload in &sent {
            client.feed(payload).await.unwrap();
        }
        client.flush().await.unwrap();
        let received = rx.await.unwrap();
        assert_eq!(received, sent);
        assert_eq!(client.in_flight().frames_sent, n as u64);
    })
    .await;
}

/// A large `feed` to a peer that is not reading (the socket fills up) writes what the socket
/// takes and buffers the rest without waiting; after a flush the peer gets every frame whole.
#[tokio::test]
async fn large_feed_to_a_full_socket_buffers_the_rest() {
    within(async {
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let addr = spawn_scripted(move |stream| async move {
            // Read nothing until the client has fed its big frame.
            let _ = go_rx.await;
            let _ = tx.send(read_frames(stream, 3).await);
        })
        .await;
        let mut client = Client::builder()
            .max_frame_len(BIG_FRAME_MAX)
            .connect(addr)
            .await
            .unwrap();
        let first = Bytes::from_static(b"before");
        // Much more than loopback socket buffers take without a reader.
        let big = Bytes::from(vec![0xab; BIG_FRAME_MAX]);
        let last = Bytes::from_static(b"after");
        client.feed(&first).await.unwrap();
        client.feed(&big).await.unwrap();
        go_tx.send(()).unwrap();
        client.feed(&last).await.unwrap();
        client.flush().await.unwrap();
        let counters = client.in_flight();
        assert_eq!(counters.frames_sent, 3);
        assert_eq!(
            counters.bytes_sent,
            (first.len() + big.len() + last.len()) as u64
        );
        let received = rx.await.unwrap();
        assert_eq!(received.len(), 3);
        assert_eq!(received[0], first);
        assert!(received[1] == big, "the big frame arrived damaged");
        assert_eq!(received[2], last);
    })
    .await;
}
