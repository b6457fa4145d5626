//! Server-side sessions over raw frames: a resume after a drop continues exactly where the
//! handler was, a resume of a session the server does not have is answered as lost, and a
//! resume while the old connection is still alive takes the session over (the old
//! connection ends; nothing is handed out twice).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use framewire_codec::ack::{AckFrame, Hello, SessionId};
use framewire_codec::FrameCodec;
use framewire_server::{Connection, Server, ServerError};
use futures::{SinkExt, StreamExt};

type Log = Arc<Mutex<Vec<(u64, bool, Bytes)>>>;

async fn record(mut conn: Connection<Log>) -> Result<(), ServerError> {
    while let Some(d) = conn.recv_delivery().await? {
        conn.state()
            .lock()
            .unwrap()
            .push((d.seq, d.redelivered, d.payload));
    }
    Ok(())
}

const SESSION: SessionId = [7; 16];

/// Connects with a HELLO naming `SESSION` (resuming with `delivered`, or opening) and
/// returns the framed stream and the server's HELLO.
async fn connect(addr: SocketAddr, resume: Option<u64>) -> (Client, Hello) {
    let mut framed = client(addr).await;
    let mut hello = Hello::new(8, 1 << 20, 1 << 20);
    hello.session = SESSION;
    if let Some(d) = resume {
        hello.resume = true;
        hello.delivered = d;
    }
    framed
        .send(Bytes::copy_from_slice(&hello.to_bytes()))
        .await
        .unwrap();
    let frame = next_frame(&mut framed).await.unwrap();
    match AckFrame::parse(&frame).unwrap() {
        AckFrame::Hello(h) => (framed, h),
        other => panic!("expected the server's HELLO, got {other:?}"),
    }
}

async fn data(framed: &mut Client, seq: u64, payload: &'static [u8]) {
    let mut buf = BytesMut::new();
    AckFrame::Data {
        seq,
        redelivery: false,
        payload,
    }
    .encode(&mut FrameCodec::new(), &mut buf)
    .unwrap();
    framed.send(buf.split_off(4).freeze()).await.unwrap();
}

async fn handled(log: &Log, n: usize) {
    while log.lock().unwrap().len() < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn seqs(log: &Log) -> Vec<(u64, bool)> {
    log.lock()
        .unwrap()
        .iter()
        .map(|(s, f, _)| (*s, *f))
        .collect()
}

#[tokio::test]
async fn a_resume_after_a_drop_continues_exactly_where_the_handler_was() {
    within(async {
        let log: Log = Arc::default();
        let server = spawn(
            Server::builder().ack_mode(8).state(Arc::clone(&log)),
            record,
        )
        .await;
        let (mut a, hello) = connect(server.addr, None).await;
        assert_eq!(
            hello.session, SESSION,
            "the server answers naming the session"
        );
        assert!(!hello.resume);
        for (seq, p) in [(1, &b"one"[..]), (2, b"two"), (3, b"three")] {
            data(&mut a, seq, p).await;
        }
        handled(&log, 3).await;
        drop(a);
        // The server keeps the session once that connection ended.
        let (mut b, hello) = connect(server.addr, Some(0)).await;
        assert!(hello.resume, "the session was kept: {hello:?}");
        assert_eq!(hello.delivered, 3, "the handler had 1..=3");
        // A resend of 3 is dropped; 4 is new.
        data(&mut b, 3, b"three").await;
        data(&mut b, 4, b"four").await;
        handled(&log, 4).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            seqs(&log),
            vec![(1, false), (2, false), (3, false), (4, false)]
        );
        drop(b);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_resume_of_a_session_the_server_does_not_have_is_answered_as_lost() {
    within(async {
        let log: Log = Arc::default();
        let server = spawn(
            Server::builder().ack_mode(8).state(Arc::clone(&log)),
            record,
        )
        .await;
        let (mut b, hello) = connect(server.addr, Some(41)).await;
        assert!(!hello.resume, "not resumed: the server never had it");
        assert_eq!(hello.session, SESSION);
        // The client's numbering continues; the id stays the client's.
        let mut buf = BytesMut::new();
        AckFrame::Data {
            seq: 42,
            redelivery: true,
            payload: &b"again"[..],
        }
        .encode(&mut FrameCodec::new(), &mut buf)
        .unwrap();
        b.send(buf.split_off(4).freeze()).await.unwrap();
        handled(&log, 1).await;
        assert_eq!(seqs(&log), vec![(42, true)]);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_resume_while_the_old_connection_lives_takes_the_session_over() {
    within(async {
        let log: Log = Arc::default();
        let server = spawn(
            Server::builder().ack_mode(8).state(Arc::clone(&log)),
            record,
        )
        .await;
        let (mut a, _) = connect(server.addr, None).await;
        data(&mut a, 1, b"one").await;
        data(&mut a, 2, b"two").await;
        handled(&log, 2).await;
        // `a` is still open: the server thinks that connection is alive.
        let (mut b, hello) = connect(server.addr, Some(0)).await;
        assert!(hello.resume, "taken over, not lost: {hello:?}");
        assert_eq!(hello.delivered, 2);
        // The old connection was ended by the server.
        let mut ended = false;
        while let Ok(frame) = tokio::time::timeout(Duration::from_secs(5), a.next()).await {
            if !matches!(frame, Some(Ok(_))) {
                ended = true;
                break;
            }
        }
        assert!(ended, "the old connection is closed");
        data(&mut b, 2, b"two").await;
        data(&mut b, 3, b"three").await;
        handled(&log, 3).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(seqs(&log), vec![(1, false), (2, false), (3, false)]);
        assert!(
            server.handle.stats().errors.handler >= 1,
            "the old handler saw the takeover"
        );
        server.stop().await;
    })
    .await;
}

/// Records every delivery; panics the first time it gets `boom` (before it is done with it).
async fn record_and_panic(mut conn: Connection<Log>) -> Result<(), ServerError> {
    while let Some(d) = conn.recv_delivery().await? {
        let first_boom = {
            let mut log = conn.state().lock().unwrap();
            let again = log.iter().any(|(_, _, p)| p == &d.payload);
            log.push((d.seq, d.redelivered, d.payload.clone()));
            d.payload == "boom" && !again
        };
        assert!(!first_boom, "the handler panics on its first boom");
    }
    Ok(())
}

/// Review-2 M3: with a session, the message a panicking handler held was counted as
/// delivered when the connection kept its session, so the resume acknowledged it and it was
/// never handled again. It must come back, flagged as a possible repeat (the handler may
/// have acted on it before it panicked), with the same id.
#[tokio::test]
async fn the_message_a_panicking_handler_held_comes_back_flagged_after_a_resume() {
    within(async {
        let log: Log = Arc::default();
        let server = spawn(
            Server::builder().ack_mode(8).state(Arc::clone(&log)),
            record_and_panic,
        )
        .await;
        let (mut a, _) = connect(server.addr, None).await;
        data(&mut a, 1, b"one").await;
        data(&mut a, 2, b"boom").await;
        // The handler panics on 2: its connection ends (the client reads until the close).
        while next_frame(&mut a).await.is_some() {}
        assert_eq!(seqs(&log), vec![(1, false), (2, false)]);
        let (mut b, hello) = connect(server.addr, Some(0)).await;
        assert!(hello.resume, "the session was kept: {hello:?}");
        assert_eq!(hello.delivered, 1, "the handler never finished 2");
        // The client resends what follows the server's delivered-through.
        data(&mut b, 2, b"boom").await;
        data(&mut b, 3, b"three").await;
        handled(&log, 4).await;
        assert_eq!(
            seqs(&log),
            vec![(1, false), (2, false), (2, true), (3, false)]
        );
        drop(b);
        server.stop().await;
    })
    .await;
}
