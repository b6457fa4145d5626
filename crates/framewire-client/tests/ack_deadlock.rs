//! The README's old ack example, which hung: sending 1,000 messages to an echo server without
//! reading the replies. The replies fill the window the client granted, the server's handler
//! stops taking messages, both wait. Now `send` fails with advice; the split version (a task
//! receiving concurrently) delivers everything.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{serve_real, within};
use framewire_client::{Client, ClientError, DEFAULT_DEADLOCK_GRACE};
use framewire_server::Server;

#[tokio::test]
async fn sending_without_reading_the_replies_is_an_error_not_a_hang() {
    within(async {
        let (addr, handle, task) = stuck_echo_server().await;
        let client = Client::builder()
            .ack_window(16)
            .connect_ack(addr)
            .await
            .unwrap();
        let mut accepted = 0;
        let err = loop {
            match client.send(format!("message {accepted}")).await {
                Ok(_receipt) => accepted += 1,
                Err(e) => break e,
            }
            assert!(accepted < 1000, "never blocked");
        };
        let ClientError::Deadlock {
            op,
            payload,
            unread,
            window,
            ..
        } = &err
        else {
            panic!("expected Deadlock, got {err:?}");
        };
        assert_eq!(*op, "send");
        assert_eq!(
            payload.as_deref(),
            Some(format!("message {accepted}").as_bytes())
        );
        assert_eq!((*unread, *window), (16, 16));
        // 16 replies fill the client's window, the handler blocks on the 17th; the server's
        // window of 64 then fills with messages it does not take.
        assert!((64..=64 + 17).contains(&accepted), "{accepted} accepted");
        let text = err.to_string();
        assert!(text.contains("split the client"), "{text}");
        assert!(text.contains("16 of the peer's messages"), "{text}");
        handle.shutdown();
        drop(client);
        task.await.unwrap();
    })
    .await;
}

/// The same mistake with the check turned off (`ack_deadlock_grace(None)`): `send` waits for
/// room instead of erroring. Bounded by the test: `send` is polled until 3 x the default grace
/// has passed on tokio's clock (paused, so no real waiting), and must still be pending.
#[tokio::test]
async fn with_the_deadlock_check_off_send_waits_instead_of_erroring() {
    within(async {
        let (addr, handle, task) = stuck_echo_server().await;
        let client = Client::builder()
            .ack_window(16)
            .ack_deadlock_grace(None)
            .connect_ack(addr)
            .await
            .unwrap();
        // Fill the server's window: sends stop being accepted at some point (bounded loop).
        let mut accepted = 0;
        let blocked = loop {
            assert!(accepted < 1000, "never blocked");
            let send = client.send(format!("message {accepted}"));
            match tokio::time::timeout(std::time::Duration::from_millis(500), send).await {
                Ok(Ok(_receipt)) => accepted += 1,
                Ok(Err(e)) => panic!("send failed with the check off: {e:?}"),
                Err(_elapsed) => break accepted,
            }
        };
        assert!((64..=64 + 17).contains(&blocked), "{blocked} accepted");
        // Now the state the deadlock check reports: the client's window is full of unread
        // replies and the server's window is full. With the check on, `send` would fail after
        // DEFAULT_DEADLOCK_GRACE; with it off it keeps waiting. Advance tokio's clock well past
        // the grace (paused time: the runtime skips ahead instead of sleeping).
        tokio::time::pause();
        let waited =
            tokio::time::timeout(3 * DEFAULT_DEADLOCK_GRACE, client.send("one more")).await;
        tokio::time::resume();
        assert!(
            waited.is_err(),
            "send returned: {:?}",
            waited.map(|r| r.map(|_| ()))
        );
        // `flush` waits too.
        tokio::time::pause();
        let flushed = tokio::time::timeout(3 * DEFAULT_DEADLOCK_GRACE, client.flush()).await;
        tokio::time::resume();
        assert!(flushed.is_err(), "flush returned: {flushed:?}");
        handle.shutdown();
        drop(client);
        task.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_split_version_delivers_every_reply() {
    within(async {
        let (addr, handle, task) = serve_real(Server::builder().ack_mode(64), common_echo).await;
        let client = Client::builder()
            .ack_window(16)
            .connect_ack(addr)
            .await
            .unwrap();
        let (tx, mut rx) = client.split();
        let replies = tokio::spawn(async move {
            let mut n = 0;
            while n < 1000 {
                let d = rx.recv().await.unwrap().unwrap();
                assert_eq!(d.payload, format!("message {n}"));
                n += 1;
            }
            n
        });
        for i in 0..1000 {
            tx.send(format!("message {i}")).await.unwrap();
        }
        tx.flush().await.unwrap();
        assert_eq!(replies.await.unwrap(), 1000);
        handle.shutdown();
        task.await.unwrap();
    })
    .await;
}

/// An echo server with window 64 whose handler will end up blocked in `send` (the client does
/// not read): its grace period is short, so the end of the test aborts it soon.
async fn stuck_echo_server() -> (
    std::net::SocketAddr,
    framewire_server::ServerHandle,
    tokio::task::JoinHandle<framewire_server::ShutdownReport>,
) {
    serve_real(
        Server::builder()
            .ack_mode(64)
            .grace_period(std::time::Duration::from_millis(50)),
        common_echo,
    )
    .await
}

async fn common_echo(
    mut conn: framewire_server::Connection,
) -> Result<(), framewire_server::ServerError> {
    while let Some(m) = conn.recv().await? {
        conn.send(&m).await?;
    }
    Ok(())
}
