//! Ack-mode half-close: after `AckSender::close` the receiving half still delivers what the
//! peer sends until the peer closes its side; `AckClient::close` ends in bounded time even
//! when the peer never closes.

mod common;

use bytes::Bytes;
use common::{ack_client, msgs, spawn_ack_server, spawn_scripted, within, AckEcho};
use framewire_client::ClientError;
use framewire_codec::ack::AckFramed;
use futures::{SinkExt, StreamExt};

/// The client sends N messages and closes its sending half before taking a single reply:
/// every echo still arrives, in order, then the end.
#[tokio::test]
async fn replies_after_the_sender_closed_are_delivered() {
    within(async {
        let (addr, log) = spawn_ack_server(AckEcho {
            window: 64,
            echo: true,
            greeting: None,
        })
        .await;
        let client = ack_client(addr, Some(64)).await;
        let (tx, mut rx) = client.split();
        let sent = msgs(50);
        for m in &sent {
            drop(tx.send(m.clone()).await.unwrap());
        }
        tx.close().await.unwrap();
        let mut got = Vec::new();
        while let Some(d) = rx.recv().await.unwrap() {
            assert!(!d.redelivered);
            got.push(d.payload);
        }
        assert_eq!(got, sent, "every echo arrives after the sender closed");
        assert_eq!(log.lock().unwrap()[0].len(), sent.len());
        assert!(rx.recv().await.unwrap().is_none(), "the end stays the end");
    })
    .await;
}

/// A peer that sends only once it saw the client's end of stream: those messages arrive,
/// then `Ok(None)` when the peer closes. Sends after close are refused with the payload back.
#[tokio::test]
async fn peer_messages_sent_after_our_fin_arrive() {
    within(async {
        let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<Vec<Bytes>>();
        let addr = spawn_scripted(|stream| async move {
            let mut conn = AckFramed::builder().window(8).new_framed(stream);
            let mut seen = Vec::new();
            while let Some(Ok(d)) = conn.next().await {
                seen.push(d.payload);
            }
            // The client's write half is closed: answer now.
            for i in 0..3 {
                if conn.feed(Bytes::from(format!("late {i}"))).await.is_err() {
                    return;
                }
            }
            // Flushing waits for acks that can no longer come (the client's write half is
            // shut): it fails, and dropping the connection closes it.
            let _ = SinkExt::<Bytes>::flush(&mut conn).await;
            let _ = seen_tx.send(seen);
        })
        .await;
        let client = ack_client(addr, Some(8)).await;
        let (tx, mut rx) = client.split();
        let other = tx.clone();
        tx.send("a").await.unwrap().await.unwrap();
        tx.send("b").await.unwrap();
        tx.close().await.unwrap();
        let err = other.send("after close").await.unwrap_err();
        assert!(
            matches!(&err, ClientError::NotSent { payload, .. } if payload == "after close"),
            "{err:?}"
        );
        other.flush().await.unwrap();
        let mut got = Vec::new();
        while let Some(d) = rx.recv().await.unwrap() {
            got.push(d.payload);
        }
        assert_eq!(got, ["late 0", "late 1", "late 2"]);
        assert_eq!(seen_rx.await.unwrap(), ["a", "b"]);
    })
    .await;
}

/// Messages taken before the sender closes are acknowledged before the FIN: the peer's
/// own close (which waits for every ack) succeeds.
#[tokio::test]
async fn messages_taken_before_close_are_acknowledged() {
    within(async {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let addr = spawn_scripted(|stream| async move {
            let mut conn = AckFramed::builder().window(8).new_framed(stream);
            for i in 0..5 {
                conn.feed(Bytes::from(format!("r{i}"))).await.unwrap();
            }
            let mut seen = 0;
            while let Some(Ok(_)) = conn.next().await {
                seen += 1;
            }
            let closed = SinkExt::<Bytes>::close(&mut conn).await;
            let _ = done_tx.send((seen, closed.map_err(|e| e.to_string())));
        })
        .await;
        let client = ack_client(addr, Some(8)).await;
        let (tx, mut rx) = client.split();
        for i in 0..5 {
            let d = rx.recv().await.unwrap().unwrap();
            assert_eq!(d.payload, format!("r{i}"));
        }
        tx.send("x").await.unwrap().await.unwrap();
        tx.close().await.unwrap();
        assert!(rx.recv().await.unwrap().is_none());
        let (seen, closed) = done_rx.await.unwrap();
        assert_eq!(seen, 1);
        assert_eq!(
            closed,
            Ok(()),
            "every reply taken before close was acknowledged"
        );
    })
    .await;
}

/// A peer that never closes: `AckSender::close` and `AckClient::close` still return.
#[tokio::test]
async fn close_does_not_wait_for_the_peer_to_close() {
    for split in [false, true] {
        within(async {
            let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
            let addr = spawn_scripted(|stream| async move {
                let mut conn = AckFramed::builder().window(8).new_framed(stream);
                while let Some(Ok(_)) = conn.next().await {}
                // Keep the connection open until the test ends.
                let _ = hold_rx.await;
                drop(conn);
            })
            .await;
            let client = ack_client(addr, None).await;
            client.send("one").await.unwrap();
            if split {
                let (tx, rx) = client.split();
                tx.close().await.unwrap();
                drop(rx);
            } else {
                client.close().await.unwrap();
            }
            drop(hold_tx);
        })
        .await;
    }
}
