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
use framewire_server::{Connection, ErrorStats, Server, ServerError};
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
    connect_with_window(addr, resume, 8).await
}

/// [`connect`] granting the server a window of `window` messages.
async fn connect_with_window(
    addr: SocketAddr,
    resume: Option<u64>,
    window: u32,
) -> (Client, Hello) {
    let mut framed = client(addr).await;
    let mut hello = Hello::new(window, 1 << 20, 1 << 20);
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
        // Review-2 N2: a takeover is a reconnect, normal operation: the old handler's `recv`
        // ended the stream; nothing counted as an error (it was a handler error before).
        assert_eq!(server.handle.stats().errors, ErrorStats::default());
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

/// How the first connection's sending handler ended: messages sent, and the send error.
type Sent = Arc<Mutex<(u64, Option<String>)>>;

/// Waits for one message; if it says `stream`, only sends from then on (one message every
/// few ms, never receiving), and records how that ended. Otherwise receives until the end.
async fn stream_after_go(mut conn: Connection<Sent>) -> Result<(), ServerError> {
    let Some(first) = conn.recv().await? else {
        return Ok(());
    };
    if first != "stream" {
        while conn.recv().await?.is_some() {}
        return Ok(());
    }
    loop {
        if let Err(e) = conn.send(b"x").await {
            conn.state().lock().unwrap().1 = Some(e.to_string());
            return Ok(());
        }
        conn.state().lock().unwrap().0 += 1;
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
}

/// Review-2 S3: a takeover tripped the old connection, but a handler that only sends never
/// noticed: its sends succeeded (into a socket the client had left) until the client's
/// window filled, and the new connection's HELLO waited all that time. Its next send must
/// fail.
#[tokio::test]
async fn a_takeover_stops_a_handler_that_only_sends() {
    within(async {
        let sent: Sent = Arc::default();
        let server = spawn(
            Server::builder().ack_mode(8).state(Arc::clone(&sent)),
            stream_after_go,
        )
        .await;
        let window = 4096;
        let (mut a, _) = connect_with_window(server.addr, None, window).await;
        data(&mut a, 1, b"stream").await;
        // The handler streams; the client reads some and never acknowledges.
        for _ in 0..5 {
            next_frame(&mut a).await.unwrap();
        }
        // `a` stays open: the client reconnects and takes the session over.
        let (_b, hello) = connect_with_window(server.addr, Some(0), window).await;
        assert!(hello.resume, "taken over: {hello:?}");
        let (n, ended) = sent.lock().unwrap().clone();
        assert!(
            n < u64::from(window),
            "the old handler sent {n} messages (the whole window) before it stopped"
        );
        let ended = ended.expect("the old handler's send failed");
        assert!(ended.contains("closed"), "{ended}");
        drop(a);
        server.stop().await;
    })
    .await;
}

/// Receives one message, then holds the connection (and its session) without polling it,
/// until the server shuts down.
async fn receive_one_then_hold(mut conn: Connection<Log>) -> Result<(), ServerError> {
    if conn.recv().await?.is_some() {
        conn.shutdown_signal().await;
    }
    Ok(())
}

/// Review-2 S4: a takeover waits for the old handler to let go; with no idle timeout that
/// wait was unbounded when the old handler never polled its connection. It is bounded by the
/// stall timeout (the new connection's handshake is in progress), and the new connection is
/// closed then.
#[tokio::test]
async fn a_takeover_wait_is_bounded_by_the_stall_timeout_without_an_idle_timeout() {
    within(async {
        let server = spawn(
            Server::builder()
                .ack_mode(8)
                .idle_timeout(None)
                .stall_timeout(Some(Duration::from_millis(200)))
                .state(Log::default()),
            receive_one_then_hold,
        )
        .await;
        let (mut a, _) = connect(server.addr, None).await;
        data(&mut a, 1, b"one").await;
        let mut b = client(server.addr).await;
        let mut hello = Hello::new(8, 1 << 20, 1 << 20);
        hello.session = SESSION;
        hello.resume = true;
        b.send(Bytes::copy_from_slice(&hello.to_bytes()))
            .await
            .unwrap();
        assert!(closed_by_server(&mut b).await, "no HELLO, closed");
        let stats = wait_for(&server.handle, |s| s.errors.stall_timeout == 1).await;
        assert_eq!(stats.errors.idle_timeout, 0);
        drop(a);
        server.stop().await;
    })
    .await;
}
