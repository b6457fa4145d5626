//! Idle, stall (slowloris) and write timeouts.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::*;
use framewire_server::{Connection, ErrorKind, Server, ServerError};
use futures::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

const T: Duration = Duration::from_millis(200);

#[tokio::test]
async fn idle_timeout_closes_a_silent_peer_but_not_an_active_one() {
    within(async {
        let builder = Server::builder().idle_timeout(T);
        let server = spawn(builder, echo).await;
        let mut silent = client(server.addr).await;
        let mut active = client(server.addr).await;
        // The active peer sends a frame every T/4 for 2T: never idle for T.
        for i in 0..8u8 {
            active.send(bytes::Bytes::from(vec![i])).await.unwrap();
            assert_eq!(next_frame(&mut active).await.as_deref(), Some(&[i][..]));
            tokio::time::sleep(T / 4).await;
        }
        assert!(closed_by_server(&mut silent).await);
        let stats = wait_for(&server.handle, |s| s.errors.idle_timeout == 1).await;
        assert_eq!(stats.errors.stall_timeout, 0);
        active.send(bytes::Bytes::from("alive")).await.unwrap();
        assert_eq!(
            next_frame(&mut active).await.as_deref(),
            Some(&b"alive"[..])
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn stall_timeout_closes_a_slowloris_peer() {
    within(async {
        let builder = Server::builder().stall_timeout(Some(T));
        let server = spawn(builder, echo).await;
        let mut other = client(server.addr).await;
        let mut slow = client(server.addr).await;
        // Announce 100 bytes, then drip one byte every T/4: progress never finishes the frame.
        let io = slow.get_mut();
        io.write_all(&[0, 0, 0, 100, 1]).await.unwrap();
        for _ in 0..12 {
            tokio::time::sleep(T / 4).await;
            if io.write_all(&[1]).await.is_err() {
                break;
            }
        }
        assert!(closed_by_server(&mut slow).await);
        let stats = wait_for(&server.handle, |s| s.errors.stall_timeout == 1).await;
        assert_eq!(stats.errors.idle_timeout, 0);
        // The other peer, idle the whole time (no idle timeout configured), still works.
        other.send(bytes::Bytes::from("ok")).await.unwrap();
        assert_eq!(next_frame(&mut other).await.as_deref(), Some(&b"ok"[..]));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn stall_timeout_does_not_fire_for_a_half_header_that_completes_in_time() {
    within(async {
        let builder = Server::builder().stall_timeout(Some(Duration::from_secs(5)));
        let server = spawn(builder, echo).await;
        let mut c = client(server.addr).await;
        let io = c.get_mut();
        io.write_all(&[0, 0]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        io.write_all(&[0, 2, b'o']).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        io.write_all(b"k").await.unwrap();
        assert_eq!(next_frame(&mut c).await.as_deref(), Some(&b"ok"[..]));
        assert_eq!(server.handle.stats().errors.stall_timeout, 0);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn write_timeout_fails_sends_to_a_peer_that_stopped_reading() {
    // 64 KiB frames go out with vectored writes straight from the handler's buffer.
    write_timeout_with_frames_of(64 * 1024).await;
}

#[tokio::test]
async fn write_timeout_fails_buffered_sends_to_a_peer_that_stopped_reading() {
    // 1 KiB frames are copied into the write buffer first.
    write_timeout_with_frames_of(1024).await;
}

async fn write_timeout_with_frames_of(size: usize) {
    within(async {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let builder = Server::builder().write_timeout(Some(T)).state(tx);
        let server = spawn(
            builder,
            move |mut conn: Connection<mpsc::UnboundedSender<ErrorKind>>| async move {
                let chunk = vec![7u8; size];
                // Bounded: 256 MiB is far more than any socket buffer pair holds.
                for _ in 0..(256 << 20) / size {
                    if let Err(e) = conn.send(&chunk).await {
                        let _ = conn.state().send(e.kind());
                        return Err(e);
                    }
                }
                Ok::<_, ServerError>(())
            },
        )
        .await;
        // Connect and never read.
        let c = client(server.addr).await;
        let kind = rx.recv().await.expect("the handler reports its error");
        assert_eq!(kind, ErrorKind::WriteTimeout);
        let stats = wait_for(&server.handle, |s| s.active == 0).await;
        assert_eq!(stats.errors.write_timeout, 1);
        assert_eq!(stats.errors.handler, 1);
        assert!(stats.bytes_out > 0);
        drop(c);
        server.stop().await;
    })
    .await;
}

/// Timeouts too large for a deadline (`Duration::MAX`) mean "never", not an overflow panic in
/// the connection task (review-1 N6): a frame dripped in halves and a peer idle between frames
/// are served as with no timeout at all.
#[tokio::test]
async fn the_largest_timeouts_never_fire_and_never_panic() {
    within(async {
        let builder = Server::builder()
            .idle_timeout(Duration::MAX)
            .stall_timeout(Some(Duration::MAX))
            .write_timeout(Some(Duration::MAX));
        let server = spawn(builder, echo).await;
        let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        // Half a header, then a pause: the stall clock is polled mid-frame.
        raw.write_all(&[0, 0]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        raw.write_all(&[0, 2, b'h', b'i']).await.unwrap();
        let mut framed = framewire_codec::FrameCodec::new().framed(raw);
        assert_eq!(next_frame(&mut framed).await.as_deref(), Some(&b"hi"[..]));
        // Idle between frames: the idle clock is polled.
        tokio::time::sleep(Duration::from_millis(50)).await;
        framed.send(bytes::Bytes::from("again")).await.unwrap();
        assert_eq!(
            next_frame(&mut framed).await.as_deref(),
            Some(&b"again"[..])
        );
        let stats = server.stop().await.stats;
        assert_eq!(stats.errors.panic, 0);
    })
    .await;
}

/// Review-2 S4: in ack mode the handshake is read before the handler runs, and that read was
/// bounded by the idle timeout alone: without one, a peer that sent part of a HELLO and
/// stopped held its connection slot forever. It is bounded as a frame is: by the stall
/// timeout.
#[tokio::test]
async fn ack_mode_a_partial_hello_is_closed_at_the_stall_timeout_without_an_idle_timeout() {
    within(async {
        let builder = Server::builder()
            .ack_mode(8)
            .idle_timeout(None)
            .stall_timeout(Some(T));
        let server = spawn(builder, echo).await;
        let mut slow = client(server.addr).await;
        // The length prefix and the first byte of a HELLO, then nothing.
        slow.get_mut().write_all(&[0, 0, 0, 43, 1]).await.unwrap();
        assert!(closed_by_server(&mut slow).await);
        let stats = wait_for(&server.handle, |s| s.errors.stall_timeout == 1).await;
        assert_eq!(stats.errors.idle_timeout, 0);
        server.stop().await;
    })
    .await;
}
