//! GOAWAY against the real server: a server going away (idle close, graceful shutdown and
//! restart) makes the client reconnect even while its only task waits in `recv`; a handler
//! that returns ends the conversation instead.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{serve_real, within};
use framewire_client::{Client, ReconnectPolicy};
use framewire_server::{Connection, Server, ServerError};

/// Greets, then echoes until the peer closes; "q" ends the conversation.
async fn greet_and_echo(mut conn: Connection) -> Result<(), ServerError> {
    conn.send("hello").await?;
    while let Some(m) = conn.recv().await? {
        if &m[..] == b"q" {
            break;
        }
        conn.send(&m).await?;
    }
    Ok(())
}

fn patient_policy() -> ReconnectPolicy {
    ReconnectPolicy::default()
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(50))
        .max_attempts(Some(200))
}

#[tokio::test]
async fn a_pending_recv_reconnects_after_the_server_closes_idle_connections() {
    within(async {
        let (addr, handle, task) = serve_real(
            Server::builder()
                .ack_mode(8)
                .idle_timeout(Duration::from_millis(150)),
            greet_and_echo,
        )
        .await;

        let client = Client::builder()
            .reconnect(patient_policy())
            .connect_ack(addr)
            .await
            .unwrap();
        let (tx, mut rx) = client.split();
        assert_eq!(&rx.recv().await.unwrap().unwrap().payload[..], b"hello");
        // The only task waits in `recv` while the server closes the idle connection with a
        // GOAWAY: the client reconnects and the new connection's greeting arrives here.
        let again = rx.recv().await.unwrap().unwrap();
        assert_eq!(&again.payload[..], b"hello");
        assert_eq!(tx.reconnects(), 1);
        // And the new connection works both ways.
        let receipt = tx.send("after").await.unwrap();
        assert_eq!(&rx.recv().await.unwrap().unwrap().payload[..], b"after");
        receipt.await.unwrap();
        assert!(handle.stats().errors.idle_timeout >= 1);
        handle.shutdown();
        task.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_pending_recv_reconnects_after_a_server_restart() {
    within(async {
        let (addr, handle, task) = serve_real(Server::builder().ack_mode(8), greet_and_echo).await;

        let client = Client::builder()
            .reconnect(patient_policy())
            .connect_ack(addr)
            .await
            .unwrap();
        let (tx, mut rx) = client.split();
        assert_eq!(&rx.recv().await.unwrap().unwrap().payload[..], b"hello");
        let pending = tokio::spawn(async move {
            let next = rx.recv().await;
            (rx, next)
        });
        // Graceful shutdown: the handler's `recv` ends, the client gets a GOAWAY first.
        handle.shutdown();
        let report = task.await.unwrap();
        assert_eq!((report.finished, report.aborted), (1, 0));
        // A new server process on the same address (SO_REUSEADDR).
        let second = Server::builder().ack_mode(8).bind(addr).await.unwrap();
        let handle = second.handle();
        let task = tokio::spawn(second.serve(greet_and_echo));

        let (mut rx, next) = pending.await.unwrap();
        assert_eq!(&next.unwrap().unwrap().payload[..], b"hello");
        assert_eq!(tx.reconnects(), 1);
        tx.send("still here").await.unwrap();
        assert_eq!(
            &rx.recv().await.unwrap().unwrap().payload[..],
            b"still here"
        );
        handle.shutdown();
        task.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_handler_that_returns_ends_the_conversation() {
    within(async {
        let (addr, handle, task) = serve_real(Server::builder().ack_mode(8), greet_and_echo).await;
        let client = Client::builder()
            .reconnect(patient_policy())
            .connect_ack(addr)
            .await
            .unwrap();
        let (tx, mut rx) = client.split();
        assert_eq!(&rx.recv().await.unwrap().unwrap().payload[..], b"hello");
        // "q": the handler returns, done with the message, so "q" is acknowledged and the
        // plain close that follows means "conversation over": no reconnect.
        let receipt = tx.send("q").await.unwrap();
        receipt.await.unwrap();
        assert!(rx.recv().await.unwrap().is_none());
        assert_eq!(tx.reconnects(), 0);
        handle.shutdown();
        task.await.unwrap();
    })
    .await;
}
