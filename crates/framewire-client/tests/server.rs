//! The client against the real framewire server on loopback: bytes, typed, call, split
//! halves, many concurrent clients, and the Python interop program.

mod common;
/// The handlers the examples run (`examples/handlers.rs`; this crate cannot depend on the
/// examples package).
#[path = "../../../examples/handlers.rs"]
#[allow(dead_code, unreachable_pub)]
mod handlers;

use bytes::Bytes;
use common::{ack_client, payloads, run_python, spawn_flaky_proxy, within, Echo};
use framewire_client::{Client, ReconnectPolicy};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Request {
    Ping(u64),
    Put { key: String, value: Vec<u8> },
}

#[tokio::test]
async fn tutorial_conversation_with_the_real_server() {
    within(async {
        let (addr, handle) = spawn_real_server(Echo::TUTORIAL).await;
        let mut client = Client::connect(addr).await.unwrap();
        assert_eq!(
            &client.recv().await.unwrap().unwrap()[..],
            "你好欢迎你".as_bytes()
        );
        for line in ["hello", "吃了吗", ""] {
            let reply = client.call(line).await.unwrap();
            assert_eq!(reply, Bytes::from(format!("{line}好")));
        }
        client.send("q").await.unwrap();
        assert!(client.close().await.unwrap().is_empty());
        let stats = handle.stats();
        assert_eq!(stats.frames_in, 4);
        assert_eq!(stats.frames_out, 4);
        handle.shutdown();
    })
    .await;
}

#[tokio::test]
async fn bytes_typed_and_split_with_the_real_server() {
    within(async {
        let (addr, handle) = spawn_real_server(Echo::MIRROR).await;
        let mut client = Client::connect(addr).await.unwrap();
        // Bytes, pipelined.
        let msgs = payloads(200);
        for m in &msgs {
            client.feed(m.clone()).await.unwrap();
        }
        client.flush().await.unwrap();
        for m in &msgs {
            assert_eq!(&client.recv().await.unwrap().unwrap(), m);
        }
        // Typed.
        let reqs = vec![
            Request::Ping(7),
            Request::Put {
                key: "k".into(),
                value: vec![0; 1000],
            },
        ];
        for r in &reqs {
            let back: Request = client.call_typed(r).await.unwrap();
            assert_eq!(&back, r);
        }
        // Split halves.
        let (mut tx, mut rx) = client.split();
        let writer = tokio::spawn(async move {
            for i in 0..1000u64 {
                tx.send_typed(&Request::Ping(i)).await.unwrap();
            }
            tx
        });
        for i in 0..1000u64 {
            assert_eq!(
                rx.recv_typed::<Request>().await.unwrap(),
                Some(Request::Ping(i))
            );
        }
        writer.await.unwrap().close().await.unwrap();
        assert!(rx.recv().await.unwrap().is_none());
        handle.shutdown();
    })
    .await;
}

#[tokio::test]
async fn many_concurrent_clients() {
    within(async {
        let (addr, handle) = spawn_real_server(Echo::MIRROR).await;
        let clients = 16;
        let per_client = 200;
        let mut tasks = Vec::new();
        for c in 0..clients {
            tasks.push(tokio::spawn(async move {
                let (mut tx, mut rx) = Client::connect(addr).await.unwrap().split();
                let sent: Vec<Bytes> = (0..per_client)
                    .map(|i| Bytes::from(format!("client {c} message {i} {}", "z".repeat(i % 40))))
                    .collect();
                let to_send = sent.clone();
                let writer = tokio::spawn(async move {
                    for m in to_send {
                        tx.feed(m).await.unwrap();
                    }
                    tx.flush().await.unwrap();
                    tx
                });
                for m in &sent {
                    assert_eq!(&rx.recv().await.unwrap().unwrap(), m, "client {c}");
                }
                writer.await.unwrap().close().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let stats = handle.stats();
        assert_eq!(stats.accepted, clients);
        assert_eq!(stats.frames_in, clients * per_client as u64);
        handle.shutdown();
    })
    .await;
}

/// Starts the real framewire server (plain mode) on an ephemeral loopback port.
async fn spawn_real_server(echo: Echo) -> (SocketAddr, framewire_server::ServerHandle) {
    spawn_real_server_with(echo, None).await
}

/// Starts the real server, in ack mode with the given window if `ack` is set.
async fn spawn_real_server_with(
    echo: Echo,
    ack: Option<u32>,
) -> (SocketAddr, framewire_server::ServerHandle) {
    let mut builder = framewire_server::Server::builder();
    if let Some(window) = ack {
        builder = builder.ack_mode(window);
    }
    let server = builder.bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = server
        .local_addr()
        .to_string()
        .parse()
        .expect("a TCP address");
    let handle = server.handle();
    if echo.greeting.is_some() {
        tokio::spawn(server.serve(handlers::tutorial::<()>));
    } else {
        tokio::spawn(server.serve(handlers::mirror_each::<()>));
    }
    (addr, handle)
}

#[tokio::test]
async fn python_client_against_the_real_server() {
    within(async {
        let (addr, handle) = spawn_real_server(Echo::TUTORIAL).await;
        let out = run_python(addr, false).await;
        assert!(out.contains("greeting: 你好欢迎你"), "{out}");
        assert!(out.contains("55 replies checked, 0 failures"), "{out}");
        // 55 frames checked plus the closing `q`.
        assert_eq!(handle.stats().frames_in, 56);
        handle.shutdown();
    })
    .await;
}

#[tokio::test]
async fn python_client_against_the_real_server_mirror() {
    within(async {
        let (addr, handle) = spawn_real_server(Echo::MIRROR).await;
        let out = run_python(addr, true).await;
        assert!(out.contains("55 replies checked, 0 failures"), "{out}");
        handle.shutdown();
    })
    .await;
}

// ---------------------------------------------------------------- ack mode

#[tokio::test]
async fn ack_receipts_with_the_real_server() {
    within(async {
        let (addr, handle) = spawn_real_server_with(Echo::MIRROR, Some(8)).await;
        let client = Client::builder()
            .ack_window(8)
            .connect_ack(addr)
            .await
            .unwrap();
        let (tx, mut rx) = client.split();
        let sent = payloads(300);
        let to_send = sent.clone();
        let writer = tokio::spawn(async move {
            let mut receipts = Vec::new();
            for m in to_send {
                receipts.push(tx.send(m).await.unwrap());
            }
            tx.flush().await.unwrap();
            for (i, r) in receipts.into_iter().enumerate() {
                assert_eq!(r.await.unwrap().seq, i as u64 + 1);
            }
            tx
        });
        for (i, m) in sent.iter().enumerate() {
            let echo = rx.recv().await.unwrap().expect("an echo");
            assert_eq!(&echo.payload, m, "echo {i}");
            assert!(!echo.redelivered);
            assert_eq!(echo.seq, i as u64 + 1);
        }
        let tx = writer.await.unwrap();
        assert_eq!(tx.reconnects(), 0);
        tx.close().await.unwrap();
        assert_eq!(handle.stats().frames_in, 300);
        handle.shutdown();
    })
    .await;
}

#[tokio::test]
async fn ack_tutorial_with_the_real_server() {
    within(async {
        let (addr, handle) = spawn_real_server_with(Echo::TUTORIAL, Some(1)).await;
        let mut client = Client::builder()
            .ack_window(1)
            .connect_ack(addr)
            .await
            .unwrap();
        let greeting = client.recv().await.unwrap().unwrap();
        assert_eq!(&greeting.payload[..], "你好欢迎你".as_bytes());
        for line in ["hello", "吃了吗"] {
            let reply = client.call(line).await.unwrap();
            assert_eq!(reply.payload, format!("{line}好"));
        }
        // `q`: taken by the handler (receipt), which then ends the conversation.
        client.send("q").await.unwrap().await.unwrap();
        assert!(client.recv().await.unwrap().is_none(), "server closed");
        assert_eq!(client.reconnects(), 0);
        client.close().await.unwrap();
        handle.shutdown();
    })
    .await;
}

#[tokio::test]
async fn ack_typed_with_the_real_server() {
    within(async {
        let (addr, handle) = spawn_real_server_with(Echo::MIRROR, Some(4)).await;
        let mut client = Client::builder()
            .ack_window(4)
            .connect_ack(addr)
            .await
            .unwrap();
        for i in 0..20u64 {
            let receipt = client.send_typed(&Request::Ping(i)).await.unwrap();
            let back = client.recv_typed::<Request>().await.unwrap().unwrap();
            assert_eq!(back.value, Request::Ping(i));
            receipt.await.unwrap();
        }
        client.close().await.unwrap();
        handle.shutdown();
    })
    .await;
}

/// Every message per connection (accept order), with the server's redelivery flag.
type Log = Arc<Mutex<Vec<Vec<(Bytes, bool)>>>>;

/// Records every message per connection (accept order), replies nothing.
async fn recording(
    mut conn: framewire_server::Connection<Log>,
) -> Result<(), framewire_server::ServerError> {
    let index = {
        let mut log = conn.state().lock().expect("log lock");
        log.push(Vec::new());
        log.len() - 1
    };
    while let Some(m) = conn.recv().await? {
        let redelivered = conn.last_was_redelivery();
        conn.state().lock().expect("log lock")[index].push((m, redelivered));
    }
    Ok(())
}

#[tokio::test]
async fn ack_reconnect_to_the_real_server_through_a_flaky_proxy() {
    within(async {
        let log: Log = Arc::default();
        let server = framewire_server::Server::builder()
            .state(Arc::clone(&log))
            .ack_mode(8)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let addr: SocketAddr = server.local_addr().to_string().parse().unwrap();
        let handle = server.handle();
        tokio::spawn(server.serve(recording));
        let drops = 4;
        let (proxy, cut) = spawn_flaky_proxy(addr, drops, 60, 3000, 0x5eed).await;
        let client = Client::builder()
            .ack_window(8)
            .reconnect(
                ReconnectPolicy::default()
                    .initial_delay(Duration::from_millis(5))
                    .max_attempts(Some(20)),
            )
            .connect_ack(proxy)
            .await
            .unwrap();
        let sent = payloads(300);
        for m in &sent {
            client.send(m.clone()).await.unwrap();
        }
        client.flush().await.unwrap();
        assert_eq!(cut.load(std::sync::atomic::Ordering::SeqCst), drops);
        assert!(client.reconnects() >= 1);
        // At least once and in order: reading the connections in order, each message is the
        // next new one or a repeat of an earlier one, and the server saw every repeat flagged
        // as a redelivery.
        let log = log.lock().unwrap().clone();
        let mut next = 0;
        let mut repeats = 0;
        for (m, redelivered) in log.iter().flatten() {
            if next < sent.len() && *m == sent[next] {
                next += 1;
            } else {
                assert!(sent[..next].contains(m), "unexpected {m:?} at #{next}");
                assert!(redelivered, "repeat of {m:?} not flagged as a redelivery");
                repeats += 1;
            }
        }
        assert_eq!(next, sent.len(), "every message arrived");
        eprintln!("{repeats} repeats, all flagged as redeliveries");
        handle.shutdown();
    })
    .await;
}

#[tokio::test]
async fn ack_half_close_with_the_real_server() {
    within(async {
        let (addr, handle) = spawn_real_server_with(Echo::MIRROR, Some(64)).await;
        let client = ack_client(addr, Some(64)).await;
        let (tx, mut rx) = client.split();
        // 60 messages fit in the window the client grants: the server can echo them all
        // without an ack from the client.
        let sent = payloads(60);
        for m in &sent {
            drop(tx.send(m.clone()).await.unwrap());
        }
        tx.close().await.unwrap();
        let mut got = Vec::new();
        while let Some(d) = rx.recv().await.unwrap() {
            got.push(d.payload);
        }
        assert_eq!(
            got.len(),
            sent.len(),
            "every echo arrives after the sender closed"
        );
        assert!(got == sent, "echoes in order");
        assert_eq!(handle.stats().frames_in, 60);
        handle.shutdown();
    })
    .await;
}
