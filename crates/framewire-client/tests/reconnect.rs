//! Reconnect under faults: a loopback proxy inside the test cuts the connection at random
//! points several times. Every message must arrive at least once and in order, repeats must
//! be flagged as redeliveries, none may be lost; when the policy gives up, the caller gets
//! exactly the unacknowledged messages back.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{
    check_in_order_at_least_once, spawn_ack_server, spawn_flaky_proxy, spawn_scripted, within,
    AckEcho,
};
use framewire_client::{Client, ClientError, ReconnectPolicy};
use framewire_codec::ack::AckFramed;
use futures::{SinkExt, StreamExt};

fn msgs(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(format!("message {i:05} {}", "x".repeat(i % 50))))
        .collect()
}

fn quick_policy(attempts: u32) -> ReconnectPolicy {
    ReconnectPolicy::default()
        .initial_delay(Duration::from_millis(5))
        .max_delay(Duration::from_millis(50))
        .max_attempts(Some(attempts))
}

#[tokio::test]
async fn nothing_is_lost_across_random_drops() {
    // Several seeds: different cut points each run of the loop, all deterministic.
    for (seed, window) in [(0x1234_5678u64, 8u32), (42, 1), (0xdead_beef, 64)] {
        within(async {
            let (server, log) = spawn_ack_server(AckEcho {
                window,
                echo: false,
                greeting: None,
            })
            .await;
            let drops = 5;
            let (proxy, cut) = spawn_flaky_proxy(server, drops, 40, 4000, seed).await;
            let client = Client::builder()
                .ack_window(window)
                .reconnect(quick_policy(20))
                .connect_ack(proxy)
                .await
                .unwrap();
            let sent = msgs(400);
            let mut receipts = Vec::new();
            for m in &sent {
                receipts.push(client.send(m.clone()).await.unwrap());
            }
            client.flush().await.unwrap();
            for (i, r) in receipts.into_iter().enumerate() {
                assert_eq!(r.await.unwrap().seq, i as u64 + 1);
            }
            let cuts = cut.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(
                cuts, drops,
                "seed {seed:#x}: the proxy cut {cuts} connections"
            );
            // A cut can also land while an attempt resends, which then counts as a failed
            // attempt rather than a reconnect.
            let reconnects = client.reconnects();
            assert!(
                (1..=drops as u64).contains(&reconnects),
                "seed {seed:#x}: {reconnects} reconnects for {drops} cuts"
            );
            let log = log.lock().unwrap().clone();
            assert_eq!(log.len(), drops + 1, "one server connection per attempt");
            let repeats = check_in_order_at_least_once(&log, &sent);
            // Every resend is flagged; the server may have seen fewer of them (cut in flight).
            assert!(repeats as u64 <= client.redeliveries());
            client.close().await.unwrap();
        })
        .await;
    }
}

#[tokio::test]
async fn echo_replies_continue_after_drops() {
    within(async {
        let (server, _log) = spawn_ack_server(AckEcho {
            window: 4,
            echo: true,
            greeting: None,
        })
        .await;
        let (proxy, cut) = spawn_flaky_proxy(server, 3, 30, 300, 7).await;
        let client = Client::builder()
            .ack_window(4)
            .reconnect(quick_policy(20))
            .connect_ack(proxy)
            .await
            .unwrap();
        // Replies must be read while sending: the server's replies need our acks.
        let (tx, mut rx) = client.split();
        let reader = tokio::spawn(async move {
            let mut replies = Vec::new();
            while let Some(d) = rx.recv().await.unwrap() {
                let done = d.payload == "last";
                replies.push(d.payload);
                if done {
                    break;
                }
            }
            replies
        });
        let sent = msgs(60);
        for m in &sent {
            tx.send(m.clone()).await.unwrap();
        }
        tx.flush().await.unwrap();
        assert_eq!(cut.load(std::sync::atomic::Ordering::SeqCst), 3);
        tx.send("last").await.unwrap();
        let replies = reader.await.unwrap();
        // A reply may be lost with a connection (the server's unacked replies die with it)
        // or come twice (its request was redelivered); each must echo a request, and the
        // conversation goes on after the drops.
        assert_eq!(replies.last().map(|b| &b[..]), Some(&b"last"[..]));
        for r in &replies[..replies.len() - 1] {
            assert!(sent.contains(r), "reply {r:?} echoes nothing that was sent");
        }
        assert!(
            (1..=3).contains(&tx.reconnects()),
            "{} reconnects",
            tx.reconnects()
        );
    })
    .await;
}

#[tokio::test]
async fn gave_up_hands_back_exactly_the_unacked() {
    within(async {
        // The server takes (and acks) 3 messages, then stops reading; when told, it drops the
        // connection, and since it accepted only one connection, every reconnect is refused.
        let (cut_tx, cut_rx) = tokio::sync::oneshot::channel::<()>();
        let (took_tx, took_rx) = tokio::sync::oneshot::channel::<()>();
        let addr = spawn_scripted(|stream| async move {
            let mut conn = AckFramed::builder().window(16).new_framed(stream);
            for _ in 0..3 {
                conn.next().await.unwrap().unwrap();
            }
            // Lets the ack for the three go out (the reader is idle now).
            SinkExt::<Bytes>::flush(&mut conn).await.unwrap();
            let _ = took_tx.send(());
            let _ = cut_rx.await;
            drop(conn);
        })
        .await;
        let client = Client::builder()
            .reconnect(quick_policy(3))
            .connect_ack(addr)
            .await
            .unwrap();
        let sent = msgs(10);
        for m in &sent[..3] {
            client.send(m.clone()).await.unwrap();
        }
        client.flush().await.unwrap();
        took_rx.await.unwrap();
        let mut receipts = Vec::new();
        for m in &sent[3..] {
            receipts.push(client.send(m.clone()).await.unwrap());
        }
        cut_tx.send(()).unwrap();
        let err = client.flush().await.unwrap_err();
        let ClientError::GaveUp {
            attempts,
            unacked,
            last_error,
            ..
        } = &err
        else {
            panic!("expected GaveUp, got {err:?}");
        };
        assert_eq!(*attempts, 3);
        // Every reconnect was refused: a transport failure, worth retrying later.
        assert_eq!(
            last_error.cause(),
            framewire_client::Cause::Transport,
            "{last_error}"
        );
        assert!(last_error.is_retryable() && err.is_retryable(), "{err}");
        assert_eq!(
            unacked,
            &sent[3..].to_vec(),
            "exactly the unacked, in order"
        );
        assert!(
            err.to_string().contains("7 messages unacknowledged"),
            "{err}"
        );
        for r in receipts {
            let undelivered = r.await.unwrap_err();
            assert!(matches!(undelivered, ClientError::Undelivered { .. }));
            // The client stopped because reconnecting gave up: as retryable as that.
            assert!(undelivered.is_retryable(), "{undelivered}");
        }
        let err = client.send("after").await.unwrap_err();
        assert!(matches!(&err, ClientError::NotSent { payload, .. } if payload == "after"));
        assert!(!err.is_connection_usable() && err.is_retryable(), "{err}");
    })
    .await;
}

#[tokio::test]
async fn never_policy_gives_up_at_the_first_drop() {
    within(async {
        let (server, _log) = spawn_ack_server(AckEcho {
            window: 1000,
            echo: false,
            greeting: None,
        })
        .await;
        // The proxy cuts after 200 client bytes: some messages are acked, the rest come back.
        let (proxy, _cut) = spawn_flaky_proxy(server, 1, 200, 200, 1).await;
        let client = Client::builder()
            .reconnect(ReconnectPolicy::never())
            .connect_ack(proxy)
            .await
            .unwrap();
        let sent = msgs(100);
        for m in &sent {
            if client.send(m.clone()).await.is_err() {
                break;
            }
        }
        let err = client.flush().await.unwrap_err();
        let ClientError::GaveUp {
            attempts, unacked, ..
        } = &err
        else {
            panic!("expected GaveUp, got {err:?}");
        };
        assert_eq!(*attempts, 0);
        // The unacked messages are a suffix of what was accepted, in order.
        assert!(!unacked.is_empty());
        let start = sent.iter().position(|m| m == &unacked[0]).unwrap();
        assert_eq!(unacked[..], sent[start..start + unacked.len()]);
    })
    .await;
}

#[tokio::test]
async fn ack_timeout_detects_a_silent_peer() {
    within(async {
        // The first connection completes the handshake, then goes silent (no reads, no acks,
        // no close); later connections echo normally.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (log_tx, mut log_rx) = tokio::sync::mpsc::unbounded_channel::<(Bytes, bool)>();
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((stream, _)) = listener.accept().await {
                let silent = std::mem::take(&mut first);
                let log_tx = log_tx.clone();
                tokio::spawn(async move {
                    let mut conn = AckFramed::builder().window(8).new_framed(stream);
                    conn.handshake().await.unwrap();
                    if silent {
                        std::future::pending::<()>().await;
                    }
                    while let Some(Ok(d)) = conn.next().await {
                        let _ = log_tx.send((d.payload, d.redelivered));
                    }
                });
            }
        });
        let client = Client::builder()
            .ack_timeout(Some(Duration::from_millis(200)))
            .reconnect(quick_policy(3))
            .connect_ack(addr)
            .await
            .unwrap();
        let sent = msgs(5);
        for m in &sent {
            client.send(m.clone()).await.unwrap();
        }
        client.flush().await.unwrap();
        assert_eq!(client.reconnects(), 1);
        for m in &sent {
            let (got, redelivered) = log_rx.recv().await.unwrap();
            assert_eq!(&got, m);
            assert!(
                redelivered,
                "resent after the silent connection was abandoned"
            );
        }
    })
    .await;
}
