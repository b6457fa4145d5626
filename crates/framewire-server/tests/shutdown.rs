//! Graceful shutdown: in-flight handlers finish, the rest are aborted and counted; shutdown
//! from a handler; serving until a signal.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use framewire_server::{Connection, Server, ServerError};
use futures::SinkExt;
use tokio::sync::{oneshot, Notify};

#[derive(Default)]
struct Gates {
    /// Released by the test after shutdown was requested.
    reply: Notify,
}

/// `"busy"`: wait for the gate, then reply (in flight across the shutdown);
/// `"stuck"`: never finish; `"polite"`: wait for the shutdown signal, then say goodbye;
/// anything else: echo.
async fn worker(mut conn: Connection<Arc<Gates>>) -> Result<(), ServerError> {
    while let Some(frame) = conn.recv().await? {
        match &frame[..] {
            b"busy" => {
                conn.state().reply.notified().await;
                conn.send("done").await?;
            }
            b"stuck" => std::future::pending::<()>().await,
            b"polite" => {
                conn.shutdown_signal().await;
                conn.send("bye").await?;
                return Ok(());
            }
            _ => conn.send(&frame).await?,
        }
    }
    Ok(())
}

#[tokio::test]
async fn in_flight_replies_complete_and_the_rest_are_aborted_and_counted() {
    within(async {
        let gates = Arc::new(Gates::default());
        let builder = Server::builder()
            .grace_period(Duration::from_millis(500))
            .state(Arc::clone(&gates));
        let server = spawn(builder, worker).await;
        let mut idle = client(server.addr).await;
        let mut busy = client(server.addr).await;
        let mut stuck = client(server.addr).await;
        let mut polite = client(server.addr).await;
        idle.send(bytes::Bytes::from("warm-up")).await.unwrap();
        assert!(next_frame(&mut idle).await.is_some());
        busy.send(bytes::Bytes::from("busy")).await.unwrap();
        stuck.send(bytes::Bytes::from("stuck")).await.unwrap();
        polite.send(bytes::Bytes::from("polite")).await.unwrap();
        wait_for(&server.handle, |s| s.frames_in == 4).await;

        server.handle.shutdown();
        assert!(server.handle.is_shutting_down());
        gates.reply.notify_one(); // stores a permit if the handler is not waiting yet

        // The in-flight reply arrives, then the handler's recv ends: a clean close.
        assert_eq!(next_frame(&mut busy).await.as_deref(), Some(&b"done"[..]));
        assert!(closed_by_server(&mut busy).await);
        // The handler selecting on the shutdown signal says goodbye.
        assert_eq!(next_frame(&mut polite).await.as_deref(), Some(&b"bye"[..]));
        // The idle handler's recv ends at once.
        assert!(closed_by_server(&mut idle).await);
        // The stuck one is aborted after the grace period.
        assert!(closed_by_server(&mut stuck).await);

        let report = server.task.await.unwrap();
        assert_eq!(report.aborted, 1);
        assert_eq!(report.finished, 3);
        assert_eq!(report.stats.errors.aborted, 1);
        assert_eq!(report.stats.active, 0);
        // The listener is closed.
        assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn a_handler_can_shut_the_server_down_without_deadlock() {
    within(async {
        let server = spawn(Server::builder(), |mut conn: Connection| async move {
            while let Some(frame) = conn.recv().await? {
                if &frame[..] == b"stop" {
                    conn.server().shutdown();
                    conn.send("stopping").await?;
                }
            }
            Ok::<_, ServerError>(())
        })
        .await;
        let stopped = server.handle.stopped();
        let mut c = client(server.addr).await;
        c.send(bytes::Bytes::from("stop")).await.unwrap();
        assert_eq!(next_frame(&mut c).await.as_deref(), Some(&b"stopping"[..]));
        let report = server.task.await.unwrap();
        stopped.await;
        assert_eq!((report.finished, report.aborted), (1, 0));
    })
    .await;
}

#[tokio::test]
async fn serve_until_stops_when_the_signal_completes() {
    within(async {
        let server = Server::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().tcp().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve_until(echo, async {
            let _ = rx.await;
        }));
        let mut c = client(addr).await;
        c.send(bytes::Bytes::from("x")).await.unwrap();
        assert!(next_frame(&mut c).await.is_some());
        tx.send(()).unwrap();
        assert!(closed_by_server(&mut c).await);
        let report = task.await.unwrap();
        assert_eq!((report.finished, report.aborted), (1, 0));
        assert_eq!(report.stats.frames_in, 1);
    })
    .await;
}

#[tokio::test]
async fn shutdown_from_another_thread_is_safe() {
    within(async {
        let server = spawn(Server::builder(), echo).await;
        let handle = server.handle.clone();
        std::thread::spawn(move || handle.shutdown())
            .join()
            .unwrap();
        let report = server.task.await.unwrap();
        assert_eq!(report.aborted, 0);
    })
    .await;
}
