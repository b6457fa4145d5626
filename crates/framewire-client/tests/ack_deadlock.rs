//! The README's old ack example, which hung: sending 1,000 messages to an echo server without
//! reading the replies. The replies fill the window the client granted, the server's handler
//! stops taking messages, both wait. Now `send` fails with advice; the split version (a task
//! receiving concurrently) delivers everything.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{serve_real, within};
use framewire_client::{Client, ClientError};
use framewire_server::Server;

#[tokio::test]
async fn sending_without_reading_the_replies_is_an_error_not_a_hang() {
    within(async {
        let (addr, handle, task) = serve_real(
            Server::builder()
                .ack_mode(64)
                // The handler stays blocked in `send`: abort it soon at the end of the test.
                .grace_period(std::time::Duration::from_millis(50)),
            common_echo,
        )
        .await;
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

async fn common_echo(
    mut conn: framewire_server::Connection,
) -> Result<(), framewire_server::ServerError> {
    while let Some(m) = conn.recv().await? {
        conn.send(&m).await?;
    }
    Ok(())
}
