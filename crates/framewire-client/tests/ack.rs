//! Ack-mode client: receipts, backpressure, flush, split halves, against an in-test ack-mode
//! server on loopback; scripted raw peers that break the protocol.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{ack_client, msgs, spawn_ack_server, spawn_scripted, within, AckEcho};
use framewire_client::{Client, ClientError, ReconnectPolicy};
use framewire_codec::ack::{AckError, AckFrame, AckFramed, Hello};
use framewire_codec::{FrameCodec, FrameError};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Encoder;

#[tokio::test]
async fn receipts_resolve_in_order() {
    within(async {
        let (addr, log) = sink_server(4).await;
        let client = ack_client(addr, None).await;
        let sent = msgs(20);
        let mut receipts = Vec::new();
        for m in &sent {
            receipts.push(client.send(m.clone()).await.unwrap());
        }
        for (i, r) in receipts.into_iter().enumerate() {
            assert_eq!(r.id().seq, i as u64 + 1);
            assert_eq!(r.await.unwrap().seq, i as u64 + 1);
        }
        let got = taken_on_one_connection(&log);
        assert_eq!(got, sent);
        let redelivered = log.lock().unwrap()[0].iter().any(|(_, r)| *r);
        assert!(!redelivered, "nothing was redelivered");
        client.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn fed_messages_are_delivered_in_order_and_flush_waits_for_them() {
    within(async {
        let (addr, log) = sink_server(4).await;
        let client = ack_client(addr, None).await;
        let sent = msgs(50);
        // Fed and sent messages share one numbering and one window (4: most of these wait).
        for (i, m) in sent.iter().enumerate() {
            if i == 25 {
                let receipt = client.send(m.clone()).await.unwrap();
                assert_eq!(receipt.id().seq, 26);
            } else {
                client.feed(m.clone()).await.unwrap();
            }
        }
        client.flush().await.unwrap();
        // Flushed: the server's application took every one of them, in order, once.
        let got = taken_on_one_connection(&log);
        assert_eq!(got, sent);
        client.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn feed_all_delivers_every_message_in_order_through_a_full_window() {
    within(async {
        let (addr, log) = sink_server(4).await;
        let client = ack_client(addr, None).await;
        // Runs of up to 64 meet the server's window of 4 again and again.
        let sent = msgs(301);
        assert_eq!(client.feed_all(sent[..150].to_vec()).await.unwrap(), 150);
        // One numbering with `send` and `feed`.
        let receipt = client.send(sent[150].clone()).await.unwrap();
        assert_eq!(receipt.id().seq, 151);
        assert_eq!(
            client
                .feed_all(sent[151..300].iter().cloned())
                .await
                .unwrap(),
            149
        );
        assert_eq!(client.feed_all(Vec::<Bytes>::new()).await.unwrap(), 0);
        // A batch of one takes `feed`'s path.
        assert_eq!(client.feed_all([sent[300].clone()]).await.unwrap(), 1);
        client.flush().await.unwrap();
        let got = taken_on_one_connection(&log);
        assert_eq!(got, sent);
        client.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn feed_all_stops_at_the_iterators_first_end() {
    within(async {
        let (addr, log) = sink_server(4).await;
        let client = ack_client(addr, None).await;
        // Ten messages, `None`, then more: an iterator that is not fused. The window of 4
        // makes runs wait for room, after which `feed_all` takes up the iterator again.
        let mut n = 0;
        let unfused = std::iter::from_fn(move || {
            n += 1;
            (n != 11).then(|| Bytes::from(format!("m{n}")))
        })
        .take(14);
        assert_eq!(client.feed_all(unfused).await.unwrap(), 10);
        client.flush().await.unwrap();
        let got = taken_on_one_connection(&log);
        let expected: Vec<_> = (1..=10).map(|i| Bytes::from(format!("m{i}"))).collect();
        assert_eq!(got, expected);
        client.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn echo_call_greeting_and_flush() {
    within(async {
        let (addr, _log) = spawn_ack_server(AckEcho {
            window: 1,
            echo: true,
            greeting: Some("你好欢迎你"),
        })
        .await;
        let mut client = Client::builder()
            .ack_window(1)
            .connect_ack(addr)
            .await
            .unwrap();
        let greeting = client.recv().await.unwrap().unwrap();
        assert_eq!(&greeting.payload[..], "你好欢迎你".as_bytes());
        assert!(!greeting.redelivered);
        for i in 0..10 {
            let reply = client.call(format!("call {i}")).await.unwrap();
            assert_eq!(reply.payload, format!("call {i}"));
        }
        client.flush().await.unwrap();
        assert_eq!(client.reconnects(), 0);
        client.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn split_halves_pipeline_with_windows() {
    for window in [1u32, 2, 64] {
        within(async {
            let (addr, _log) = spawn_ack_server(AckEcho {
                window,
                echo: true,
                greeting: None,
            })
            .await;
            let client = Client::builder()
                .ack_window(window)
                .connect_ack(addr)
                .await
                .unwrap();
            let (tx, mut rx) = client.split();
            let sent = msgs(300);
            let to_send = sent.clone();
            let writer = tokio::spawn(async move {
                for m in to_send {
                    tx.send(m).await.unwrap();
                }
                tx.flush().await.unwrap();
                tx
            });
            let mut got = Vec::new();
            while got.len() < sent.len() {
                got.push(rx.recv().await.unwrap().unwrap().payload);
            }
            assert_eq!(got, sent, "window {window}");
            writer.await.unwrap().close().await.unwrap();
            assert!(rx.next().await.is_none(), "stream ends after close");
        })
        .await;
    }
}

#[tokio::test]
async fn full_window_is_backpressure() {
    within(async {
        // A server that completes the handshake, then takes nothing until told to.
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let addr = spawn_scripted(|stream| async move {
            let mut conn = AckFramed::builder().window(2).new_framed(stream);
            conn.handshake().await.unwrap();
            let _ = go_rx.await;
            while let Some(Ok(_)) = conn.next().await {}
        })
        .await;
        let client = ack_client(addr, None).await;
        let r1 = client.send("one").await.unwrap();
        let _r2 = client.send("two").await.unwrap();
        // The window (2) is full: the third send must wait.
        let third = client.send("three");
        tokio::pin!(third);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut third)
                .await
                .is_err(),
            "third send completed with a full window"
        );
        go_tx.send(()).unwrap();
        let r3 = third.await.unwrap();
        assert_eq!(r1.await.unwrap().seq, 1);
        assert_eq!(r3.await.unwrap().seq, 3);
        client.flush().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn payload_too_long_is_refused_and_connection_survives() {
    within(async {
        let (addr, log) = sink_server(4).await;
        let client = Client::builder()
            .max_frame_len(100)
            .connect_ack(addr)
            .await
            .unwrap();
        let too_long = |err: &ClientError| {
            matches!(
                err,
                ClientError::Ack(AckError::PayloadTooLong { len: 200, .. })
            )
        };
        let err = client.send(vec![0u8; 200]).await.unwrap_err();
        assert!(too_long(&err), "{err:?}");
        client.send("fine").await.unwrap().await.unwrap();
        // `feed_all` stops at it: the messages before it are delivered, the rest not sent.
        let batch = [
            Bytes::from("a"),
            Bytes::from("b"),
            Bytes::from(vec![0u8; 200]),
            Bytes::from("never sent"),
        ];
        let err = client.feed_all(batch).await.unwrap_err();
        assert!(too_long(&err), "{err:?}");
        client.send("c").await.unwrap().await.unwrap();
        let got = taken_on_one_connection(&log);
        assert_eq!(got, ["fine", "a", "b", "c"].map(Bytes::from));
    })
    .await;
}

/// The payloads `sink_server`'s application took, in order, checking that they all came on
/// one connection.
fn taken_on_one_connection(log: &common::AckLog) -> Vec<Bytes> {
    let log = log.lock().expect("the server's log");
    assert_eq!(log.len(), 1, "one connection");
    log[0].iter().map(|(p, _)| p.clone()).collect()
}

/// An ack-mode server granting `window` that takes every message and answers none.
async fn sink_server(window: u32) -> (std::net::SocketAddr, common::AckLog) {
    spawn_ack_server(AckEcho {
        window,
        echo: false,
        greeting: None,
    })
    .await
}

// ------------------------------------------------------------ scripted raw peers

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    FrameCodec::new()
        .encode(bytes::Bytes::copy_from_slice(payload), &mut buf)
        .expect("small frame encodes");
    buf.to_vec()
}

fn hello_frame(version: u8) -> Vec<u8> {
    let mut hello = Hello::new(8, 1 << 20, 8 * 1024 * 1024).to_bytes();
    hello[5] = version;
    frame(&hello)
}

/// A peer that writes `bytes` on connect, then reads until the client goes away.
async fn raw_peer(bytes: Vec<u8>) -> std::net::SocketAddr {
    spawn_scripted(|mut stream| async move {
        let _ = stream.write_all(&bytes).await;
        let mut sink = [0u8; 1024];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
}

#[tokio::test]
async fn plain_peer_instead_of_hello() {
    within(async {
        let addr = raw_peer(frame(b"hello")).await;
        let err = Client::builder().connect_ack(addr).await.unwrap_err();
        let ClientError::Handshake { source, .. } = &err else {
            panic!("expected Handshake, got {err:?}");
        };
        assert!(
            matches!(source, AckError::ExpectedHello { len: 5, start } if start == b"hello"),
            "{source:?}"
        );
        assert!(
            err.to_string()
                .contains("expected HELLO, got a frame of 5 bytes starting 68 65 6c 6c 6f"),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn wrong_hello_version() {
    within(async {
        let addr = raw_peer(hello_frame(9)).await;
        let err = Client::builder().connect_ack(addr).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Handshake {
                    source: AckError::VersionMismatch { ours: 2, theirs: 9 },
                    ..
                }
            ),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn missing_hello_times_out_or_closes() {
    within(async {
        // Silent peer: no HELLO within the connect timeout.
        let addr = raw_peer(Vec::new()).await;
        let err = Client::builder()
            .connect_timeout(Duration::from_millis(300))
            .connect_ack(addr)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::HandshakeTimeout { timeout, .. }
                    if timeout == Duration::from_millis(300)
            ),
            "{err:?}"
        );
        // Peer that reads the client's HELLO, then closes without sending its own.
        let addr = spawn_scripted(|mut stream| async move {
            let mut hello = [0u8; 18];
            let _ = stream.read_exact(&mut hello).await;
            let _ = stream.shutdown().await;
            let _ = stream.read(&mut hello).await;
        })
        .await;
        let err = Client::builder().connect_ack(addr).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Handshake {
                    source: AckError::ClosedBeforeHello,
                    ..
                }
            ),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn stray_ack_is_a_protocol_error() {
    within(async {
        // HELLO; after the client's HELLO and first message (47 + 4 + 10 + 1 bytes), ACK 5.
        let addr = spawn_scripted(|mut stream| async move {
            stream
                .write_all(&hello_frame(framewire_codec::ack::VERSION))
                .await
                .unwrap();
            let mut buf = [0u8; 62];
            stream.read_exact(&mut buf).await.unwrap();
            let ack = frame(&AckFrame::<Bytes>::Ack { through: 5 }.to_bytes());
            stream.write_all(&ack).await.unwrap();
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        let client = ack_client(addr, None).await;
        client.send("x").await.unwrap();
        let err = client.flush().await.unwrap_err();
        let ClientError::Protocol { source, unacked } = &err else {
            panic!("expected Protocol, got {err:?}");
        };
        assert!(
            matches!(**source, AckError::AckForUnsent { ack: 5, sent: 1 }),
            "{source:?}"
        );
        assert_eq!(unacked, &vec![Bytes::from("x")]);
        assert!(
            err.to_string().contains("ACK 5 for a message never sent"),
            "{err}"
        );
        // Later sends get their payload back.
        let err = client.send("late").await.unwrap_err();
        assert!(
            matches!(&err, ClientError::NotSent { payload, .. } if payload == "late"),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn oversized_frame_is_a_protocol_error_with_unacked_back() {
    within(async {
        // HELLO, then (after the client's first message arrives) a 9,000,000-byte header.
        let addr = spawn_scripted(|mut stream| async move {
            stream
                .write_all(&hello_frame(framewire_codec::ack::VERSION))
                .await
                .unwrap();
            // The client's HELLO (47 bytes) and its DATA "never acked" (4 + 10 + 11 bytes).
            let mut buf = [0u8; 72];
            stream.read_exact(&mut buf).await.unwrap();
            stream.write_all(&9_000_000u32.to_be_bytes()).await.unwrap();
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        let mut client = Client::builder()
            .max_frame_len(1024 * 1024)
            .reconnect(ReconnectPolicy::never())
            .connect_ack(addr)
            .await
            .unwrap();
        let receipt = client.send("never acked").await.unwrap();
        let err = client.recv().await.unwrap_err();
        let ClientError::Protocol { source, unacked } = &err else {
            panic!("expected Protocol, got {err:?}");
        };
        assert!(
            matches!(
                **source,
                AckError::Frame(FrameError::IncomingTooLong {
                    len: 9_000_000,
                    max: 1_048_576
                })
            ),
            "{source:?}"
        );
        assert_eq!(unacked, &vec![Bytes::from("never acked")]);
        assert!(
            matches!(receipt.await, Err(ClientError::Undelivered { id: 1, .. })),
            "receipt must fail"
        );
        let flushed = client.flush().await.unwrap_err();
        assert!(
            matches!(&flushed, ClientError::Protocol { unacked, .. } if unacked.len() == 1),
            "{flushed:?}"
        );
    })
    .await;
}

#[cfg(unix)]
#[tokio::test]
async fn ack_mode_over_a_unix_socket() {
    within(async {
        let dir = std::env::temp_dir().join(format!("framewire-ack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ack.sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            if let Ok((stream, _)) = listener.accept().await {
                let mut conn = AckFramed::builder().window(4).new_framed(stream);
                while let Some(Ok(d)) = conn.next().await {
                    if futures::SinkExt::feed(&mut conn, d.payload).await.is_err() {
                        return;
                    }
                }
            }
        });
        let mut client = Client::builder()
            .ack_window(4)
            .connect_ack(format!("unix:{}", path.display()))
            .await
            .unwrap();
        for i in 0..20 {
            let reply = client.call(format!("unix {i}")).await.unwrap();
            assert_eq!(reply.payload, format!("unix {i}"));
        }
        client.flush().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test]
async fn cancelled_send_sends_nothing() {
    within(async {
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let (log_tx, mut log_rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let addr = spawn_scripted(|stream| async move {
            let mut conn = AckFramed::builder().window(1).new_framed(stream);
            conn.handshake().await.unwrap();
            let _ = go_rx.await;
            while let Some(Ok(d)) = conn.next().await {
                let _ = log_tx.send(d.payload);
            }
        })
        .await;
        let client = ack_client(addr, None).await;
        let first = client.send("first").await.unwrap();
        // The window (1) is full: this send waits, and is cancelled by the timeout.
        let cancelled =
            tokio::time::timeout(Duration::from_millis(100), client.send("cancelled")).await;
        assert!(cancelled.is_err(), "send should still be waiting for room");
        go_tx.send(()).unwrap();
        first.await.unwrap();
        client.send("third").await.unwrap().await.unwrap();
        assert_eq!(log_rx.recv().await.unwrap(), "first");
        assert_eq!(log_rx.recv().await.unwrap(), "third");
    })
    .await;
}

#[tokio::test]
async fn clean_close_by_the_peer_ends_the_client() {
    within(async {
        let addr = spawn_scripted(|stream| async move {
            let mut conn = AckFramed::builder().window(4).new_framed(stream);
            conn.next().await.unwrap().unwrap();
            // Let the ack go out, then close cleanly.
            futures::SinkExt::<Bytes>::close(&mut conn).await.unwrap();
        })
        .await;
        let mut client = ack_client(addr, None).await;
        client.send("only").await.unwrap().await.unwrap();
        assert!(client.recv().await.unwrap().is_none(), "end of stream");
        client.flush().await.unwrap();
        let err = client.send("after").await.unwrap_err();
        assert!(
            matches!(&err, ClientError::NotSent { payload, .. } if payload == "after"),
            "{err:?}"
        );
        assert!(err.to_string().contains("peer closed"), "{err}");
    })
    .await;
}
