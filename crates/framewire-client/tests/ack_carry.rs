//! Review-1 M1: a server that, on every connection, fills the client's window and then sends
//! GOAWAY and closes, against a client that does not call `recv`. The client carries the
//! messages it received and not yet delivered to the next `recv`, and must not open another
//! connection (and take another window of messages) until they are taken: what it buffers
//! unread stays within one window, however often the server goes away.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::within;
use framewire_client::{Client, ReconnectPolicy};
use framewire_codec::ack::{AckFrame, GoAwayReason, Hello};
use framewire_codec::FrameCodec;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

/// The window the client grants: the most the server may send it unacknowledged.
const WINDOW: u32 = 16;
/// How many connections the server serves ("window + GOAWAY" each).
const ROUNDS: u64 = 50;

/// Serves `ROUNDS` connections: on each, answers the HELLO, sends `WINDOW` DATA frames, a
/// GOAWAY, and closes. Counts the connections accepted and the DATA frames written.
async fn spawn_window_and_goaway_server() -> (std::net::SocketAddr, Arc<AtomicU64>, Arc<AtomicU64>)
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, sent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (accepted2, sent2) = (Arc::clone(&accepted), Arc::clone(&sent));
    tokio::spawn(async move {
        for round in 0..ROUNDS {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            accepted2.fetch_add(1, Ordering::SeqCst);
            let mut framed = Framed::new(stream, FrameCodec::new());
            // The client's HELLO first.
            let Some(Ok(hello)) = framed.next().await else {
                continue;
            };
            let Ok(AckFrame::Hello(theirs)) = AckFrame::parse(&hello) else {
                panic!("expected the client's HELLO, got {hello:?}");
            };
            assert_eq!(theirs.window, WINDOW);
            let ours = Hello::new(64, 1 << 20, 1 << 20);
            framed
                .send(Bytes::copy_from_slice(&ours.to_bytes()))
                .await
                .unwrap();
            for i in 0..u64::from(WINDOW) {
                let data = AckFrame::Data {
                    seq: i + 1,
                    redelivery: false,
                    payload: Bytes::from(format!("round {round} message {i}")),
                };
                framed.feed(data.to_bytes()).await.unwrap();
                sent2.fetch_add(1, Ordering::SeqCst);
            }
            let goaway = AckFrame::<Bytes>::GoAway {
                reason: GoAwayReason::Shutdown,
                through: 0,
            };
            framed.send(goaway.to_bytes()).await.unwrap();
            // Close; the client's acks (if any) are not waited for.
            let _ = SinkExt::<Bytes>::close(&mut framed).await;
        }
    });
    (addr, accepted, sent)
}

#[tokio::test]
async fn carried_messages_stay_within_one_window_when_the_server_keeps_going_away() {
    within(async {
        let (addr, accepted, sent) = spawn_window_and_goaway_server().await;
        let client = Client::builder()
            .ack_window(WINDOW)
            .reconnect(
                ReconnectPolicy::default()
                    .initial_delay(Duration::from_millis(1))
                    .max_delay(Duration::from_millis(5))
                    .max_attempts(Some(1000)),
            )
            .connect_ack(addr)
            .await
            .unwrap();
        let (tx, mut rx) = client.split();

        // Nobody calls recv. The server sends its window and goes away; a client that
        // reconnected now (every 1-5 ms) would take another window each time. Give it many
        // chances: poll the counters 100 times, 5 ms apart.
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert_eq!(
                accepted.load(Ordering::SeqCst),
                1,
                "reconnected while carrying"
            );
            assert!(sent.load(Ordering::SeqCst) <= u64::from(WINDOW));
        }
        assert_eq!(tx.reconnects(), 0);
        assert_eq!(sent.load(Ordering::SeqCst), u64::from(WINDOW));

        // Now take everything, round after round. Before each recv, what the server sent and
        // the application has not taken (what the client holds: carried plus the current
        // connection's inbox) is at most one window.
        let mut taken = 0u64;
        for round in 0..ROUNDS {
            for i in 0..u64::from(WINDOW) {
                let held = sent.load(Ordering::SeqCst) - taken;
                assert!(
                    held <= u64::from(WINDOW),
                    "round {round}: the client holds {held} untaken messages (window {WINDOW})"
                );
                let d = rx.recv().await.unwrap().expect("a message");
                assert_eq!(d.payload, format!("round {round} message {i}"));
                taken += 1;
            }
        }
        assert_eq!(taken, ROUNDS * u64::from(WINDOW));
        assert_eq!(accepted.load(Ordering::SeqCst), ROUNDS);
        // One reconnect per GOAWAY that was followed by a recv draining the carry.
        assert_eq!(tx.reconnects(), ROUNDS - 1);
    })
    .await;
}
