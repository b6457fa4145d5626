//! Client failover without a balancer: three endpoints, some down from the start, one dying
//! in the middle of an ack-mode stream.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{msgs, within};
use framewire_client::{Client, ClientError, ReconnectPolicy};
use framewire_server::{Connection, Server, ServerError};
use tokio::task::JoinHandle;

/// A loopback address nothing listens on: a socket bound to it but not listening, so a connect
/// is refused, and no other process can take the port while the returned socket lives (a
/// port bound and released could be reused by a parallel test run, which would then answer).
fn dead_endpoint() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// What one server's handlers received, in arrival order.
type Log = Arc<Mutex<Vec<Bytes>>>;

/// A framewire server (ack mode if `window` is set) that greets with its `name`, then
/// records every message and, in plain mode, echoes it. Aborting the returned task kills it
/// the hard way: listener and every connection dropped at once, as in a crash.
async fn server(name: &'static str, window: Option<u32>) -> (SocketAddr, Log, JoinHandle<()>) {
    let mut builder = Server::builder().state(Log::default());
    if let Some(w) = window {
        builder = builder.ack_mode(w);
    }
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().tcp().unwrap();
    let log = Arc::clone(server.handle().state());
    let task = tokio::spawn(async move {
        server
            .serve(move |mut conn: Connection<Log>| async move {
                conn.send(name).await?;
                while let Some(m) = conn.recv().await? {
                    conn.state().lock().unwrap().push(m.clone());
                    if !conn.is_ack_mode() {
                        conn.send(m).await?;
                    }
                }
                Ok::<_, ServerError>(())
            })
            .await;
    });
    (addr, log, task)
}

#[tokio::test]
async fn plain_client_connects_to_the_first_endpoint_that_answers() {
    within(async {
        let (up, _log, task) = server("third", None).await;
        let (_held1, dead1) = dead_endpoint();
        let (_held2, dead2) = dead_endpoint();
        let list = [dead1, dead2, up];
        let mut client = Client::connect(list).await.unwrap();
        assert_eq!(client.endpoint().to_string(), up.to_string());
        assert_eq!(client.recv().await.unwrap().as_deref(), Some(&b"third"[..]));
        assert_eq!(&client.call("ping").await.unwrap()[..], b"ping");
        client.close().await.unwrap();

        // The same list as strings; and when every endpoint is down, each one's error.
        let strings: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert!(Client::connect(strings.clone()).await.is_ok());
        task.abort();
        let _ = task.await;
        match Client::connect(strings).await {
            Err(ClientError::NoEndpoint { errors }) => {
                assert_eq!(errors.len(), 3);
                assert!(errors
                    .iter()
                    .all(|e| matches!(e, ClientError::Connect { .. })));
            }
            other => panic!("expected NoEndpoint, got {other:?}"),
        }
        let empty: Vec<SocketAddr> = Vec::new();
        assert!(matches!(
            Client::connect(empty).await,
            Err(ClientError::InvalidEndpoint { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn ack_client_fails_over_when_its_server_dies_mid_stream() {
    within(async {
        let (_held, dead) = dead_endpoint();
        let (second, log2, task2) = server("second", Some(16)).await;
        let (third, log3, task3) = server("third", Some(16)).await;
        let client = Client::builder()
            .ack_window(16)
            .reconnect(
                ReconnectPolicy::default()
                    .initial_delay(Duration::from_millis(5))
                    .max_delay(Duration::from_millis(50))
                    .max_attempts(Some(20)),
            )
            .connect_ack([dead, second, third])
            .await
            .unwrap();
        // The first endpoint is down: the client is on the second.
        assert_eq!(client.endpoint().to_string(), second.to_string());
        let (tx, mut rx) = client.split();
        let greetings = tokio::spawn(async move {
            let mut names = Vec::new();
            while let Ok(Some(d)) = rx.recv().await {
                names.push(String::from_utf8(d.payload.to_vec()).unwrap());
            }
            names
        });

        let sent = msgs(2000);
        let mut receipts = Vec::new();
        for (i, m) in sent.iter().enumerate() {
            if i == 500 {
                // Crash the second server once it has taken messages: the client must move
                // on to the third (the first is still down).
                for _ in 0..500 {
                    if !log2.lock().unwrap().is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                assert!(
                    !log2.lock().unwrap().is_empty(),
                    "the second server took nothing"
                );
                task2.abort();
            }
            receipts.push(tx.send(m.clone()).await.unwrap());
        }
        tx.flush().await.unwrap();
        for r in receipts {
            r.await.unwrap();
        }
        assert!(tx.reconnects() >= 1, "the client never reconnected");

        // Every message reached a server at least once; the third took over the stream.
        let on2 = log2.lock().unwrap().clone();
        let on3 = log3.lock().unwrap().clone();
        let seen: HashSet<&Bytes> = on2.iter().chain(on3.iter()).collect();
        assert_eq!(seen.len(), sent.len(), "messages lost in the failover");
        assert!(
            !on2.is_empty() && on3.len() >= 1500,
            "{} on the second, {} on the third",
            on2.len(),
            on3.len()
        );
        assert_eq!(on3.last(), sent.last(), "the third server ends the stream");

        tx.close().await.unwrap();
        task3.abort();
        let names = greetings.await.unwrap();
        assert_eq!(names.first().map(String::as_str), Some("second"));
        assert!(names.iter().any(|n| n == "third"), "greetings: {names:?}");
    })
    .await;
}
