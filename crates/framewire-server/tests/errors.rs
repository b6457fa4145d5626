//! Handler errors and panics, and bad input, affect only their own connection.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;

use common::*;
use framewire_server::{Connection, Server, ServerError};
use futures::SinkExt;
use tokio::io::AsyncWriteExt;

/// `"panic"` panics, `"error"` returns an error, anything else is echoed.
async fn fragile(mut conn: Connection) -> Result<(), String> {
    while let Some(frame) = conn.recv().await.map_err(|e| e.to_string())? {
        match &frame[..] {
            b"panic" => panic!("asked to panic"),
            b"error" => return Err("asked to fail".to_string()),
            _ => conn.send(&frame).await.map_err(|e| e.to_string())?,
        }
    }
    Ok(())
}

async fn check_echo(c: &mut Client, msg: &str) {
    c.send(bytes::Bytes::from(msg.to_owned())).await.unwrap();
    assert_eq!(next_frame(c).await.as_deref(), Some(msg.as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_panicking_handler_affects_only_its_connection() {
    within(async {
        let server = spawn(Server::builder(), fragile).await;
        let mut bystander = client(server.addr).await;
        check_echo(&mut bystander, "before").await;
        let mut p = client(server.addr).await;
        p.send(bytes::Bytes::from("panic")).await.unwrap();
        assert!(closed_by_server(&mut p).await);
        let mut e = client(server.addr).await;
        e.send(bytes::Bytes::from("error")).await.unwrap();
        assert!(closed_by_server(&mut e).await);
        check_echo(&mut bystander, "after").await;
        let mut newcomer = client(server.addr).await;
        check_echo(&mut newcomer, "new").await;
        let stats = wait_for(&server.handle, |s| s.active == 2).await;
        assert_eq!((stats.errors.panic, stats.errors.handler), (1, 1));
        assert_eq!(stats.accepted, 4);
        server.stop().await;
    })
    .await;
}

async fn bad_input_case(bytes: &[u8], shut_write: bool) {
    let builder = Server::builder().max_frame_len(1024);
    let server = spawn(builder, echo).await;
    let mut good = client(server.addr).await;
    check_echo(&mut good, "first").await;
    let mut bad = client(server.addr).await;
    bad.get_mut().write_all(bytes).await.unwrap();
    if shut_write {
        bad.get_mut().shutdown().await.unwrap();
    }
    assert!(closed_by_server(&mut bad).await);
    let stats = wait_for(&server.handle, |s| s.errors.protocol == 1).await;
    assert_eq!(stats.active, 1);
    check_echo(&mut good, "second").await;
    let mut newcomer = client(server.addr).await;
    check_echo(&mut newcomer, "third").await;
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_header_closes_only_that_client() {
    within(bad_input_case(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3], false)).await;
}

#[tokio::test]
async fn a_header_just_over_the_limit_closes_only_that_client() {
    within(bad_input_case(&1025u32.to_be_bytes(), false)).await;
}

#[tokio::test]
async fn eof_mid_frame_closes_only_that_client() {
    within(bad_input_case(&[0, 0, 0, 10, b'a', b'b'], true)).await;
}

#[tokio::test]
async fn eof_mid_header_closes_only_that_client() {
    within(bad_input_case(&[0, 0], true)).await;
}

#[tokio::test]
async fn an_oversized_send_fails_without_closing_the_connection() {
    within(oversized_send_case(8, 9)).await;
}

/// A large send (written with vectored writes) over the limit fails like a small one.
#[tokio::test]
async fn an_oversized_large_send_fails_without_closing_the_connection() {
    within(oversized_send_case(1024, 20_000)).await;
}

/// Every frame received makes the handler send `size` bytes (over the limit `max`), which
/// must fail with nothing written, then echo the frame: the connection stays usable and in
/// sync.
async fn oversized_send_case(max: usize, size: usize) {
    let builder = Server::builder().max_frame_len(max);
    let server = spawn(builder, move |mut conn: Connection| async move {
        while let Some(frame) = conn.recv().await? {
            let reply = match conn.send(vec![0u8; size]).await {
                Err(ServerError::Frame(_)) => frame,
                _ => "unexpected".into(),
            };
            conn.send(&reply).await?;
        }
        Ok::<_, ServerError>(())
    })
    .await;
    let mut c = client(server.addr).await;
    check_echo(&mut c, "ok").await;
    check_echo(&mut c, "in sync").await;
    assert_eq!(server.handle.stats().errors.outgoing_too_long, 2);
    server.stop().await;
}

#[tokio::test]
async fn the_server_keeps_running_when_every_client_misbehaves() {
    within(async {
        let server = spawn(Server::builder().max_frame_len(16), echo).await;
        let addr: SocketAddr = server.addr;
        for _ in 0..20 {
            let mut bad = client(addr).await;
            bad.get_mut().write_all(&[0, 0, 1, 0]).await.unwrap();
            assert!(closed_by_server(&mut bad).await);
        }
        let stats = wait_for(&server.handle, |s| s.errors.protocol == 20).await;
        assert_eq!(stats.active, 0);
        let mut c = client(addr).await;
        check_echo(&mut c, "fine").await;
        server.stop().await;
    })
    .await;
}

/// Frames a handler took before the bytes behind them turned out to be bad are counted in
/// `frames_in` while the handler is still running, not only when the connection is dropped.
#[tokio::test]
async fn frames_taken_before_a_receive_error_are_counted() {
    within(async {
        let builder = Server::builder().max_frame_len(16);
        let server = spawn(builder, |mut conn: Connection| async move {
            loop {
                match conn.recv().await {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => {
                        // Keep the connection alive until the test is done looking.
                        conn.shutdown_signal().await;
                        break;
                    }
                }
            }
            Ok::<_, ServerError>(())
        })
        .await;
        let mut c = client(server.addr).await;
        // Two good frames and an oversized header, in one write.
        c.get_mut()
            .write_all(b"\x00\x00\x00\x01a\x00\x00\x00\x01b\x00\x00\x01\x00")
            .await
            .unwrap();
        let stats = wait_for(&server.handle, |s| s.errors.protocol == 1).await;
        assert_eq!(stats.frames_in, 2);
        assert_eq!(stats.active, 1);
        server.stop().await;
    })
    .await;
}
