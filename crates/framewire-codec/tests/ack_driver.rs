//! Pair tests of the one ack-mode driver (`AckDriver`) over `tokio::io::duplex`: no sockets,
//! virtual time for the timers.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::future::poll_fn;
use std::time::Duration;

use bytes::Bytes;
use framewire_codec::ack::{AckConfig, AckDriver, AckError, AckFramedBuilder};
use framewire_codec::FrameCodec;
use tokio::io::DuplexStream;

fn pair(
    window: u32,
    config: Option<AckConfig>,
) -> (AckDriver<DuplexStream>, AckDriver<DuplexStream>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let mut builder = AckFramedBuilder::new();
    if let Some(c) = config {
        builder = builder.config(c);
    }
    let builder = builder.window(window);
    (
        builder.driver(a, FrameCodec::new()),
        builder.driver(b, FrameCodec::new()),
    )
}

async fn handshake(a: &mut AckDriver<DuplexStream>, b: &mut AckDriver<DuplexStream>) {
    let (ha, hb) = tokio::join!(a.handshake(), b.handshake());
    ha.unwrap();
    hb.unwrap();
}

async fn recv(d: &mut AckDriver<DuplexStream>) -> Result<Option<Bytes>, AckError> {
    poll_fn(|cx| d.poll_recv(cx))
        .await
        .map(|m| m.map(|d| d.payload))
}

#[tokio::test]
async fn thousands_of_messages_through_a_small_window_in_order() {
    let (mut a, mut b) = pair(8, None);
    let n = 5_000u32;
    let sender = tokio::spawn(async move {
        for i in 0..n {
            a.send(Bytes::from(i.to_be_bytes().to_vec()), false).await?;
            // Never more than the window unacknowledged.
            assert!(a.state().in_flight() <= 8);
        }
        poll_fn(|cx| a.poll_all_acked(cx)).await?;
        poll_fn(|cx| a.poll_close(cx)).await?;
        Ok::<_, AckError>(a.acked_through())
    });
    for i in 0..n {
        let m = recv(&mut b).await.unwrap().expect("a message");
        assert_eq!(m[..], i.to_be_bytes());
    }
    // The sender's last message is done once the receiver asks for the next one.
    assert_eq!(recv(&mut b).await.unwrap(), None);
    assert_eq!(sender.await.unwrap().unwrap(), u64::from(n));
}

#[tokio::test(start_paused = true)]
async fn a_message_is_acknowledged_only_once_the_receiver_is_done_with_it() {
    let (mut a, mut b) = pair(4, None);
    handshake(&mut a, &mut b).await;
    a.send(Bytes::from_static(b"one"), false).await.unwrap();
    a.send(Bytes::from_static(b"two"), false).await.unwrap();
    assert_eq!(recv(&mut b).await.unwrap().unwrap(), "one");
    assert_eq!(recv(&mut b).await.unwrap().unwrap(), "two");
    // The receiver holds "two" (it has not asked for more): however long the sender waits
    // (virtual time: every byte in flight is read first), "two" is not acknowledged.
    let waited =
        tokio::time::timeout(Duration::from_secs(1), poll_fn(|cx| a.poll_all_acked(cx))).await;
    assert!(waited.is_err(), "{waited:?}");
    assert!(a.acked_through() < 2, "acked through {}", a.acked_through());
    // Done with it: acknowledged.
    poll_fn(|cx| b.poll_release(cx)).await.unwrap();
    poll_fn(|cx| a.poll_all_acked(cx)).await.unwrap();
    assert_eq!(a.acked_through(), 2);
}

/// Polls `f` once with a waker that does nothing.
fn poll_once<R>(
    f: impl FnOnce(&mut std::task::Context<'_>) -> std::task::Poll<R>,
) -> std::task::Poll<R> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    f(&mut cx)
}

#[tokio::test]
async fn a_side_about_to_wait_for_its_window_acknowledges_what_it_took() {
    let (mut a, mut b) = pair(8, None); // ack threshold 4
    handshake(&mut a, &mut b).await;
    // b fills its window: a never takes these.
    for _ in 0..8 {
        b.send(Bytes::from_static(b"from b"), false).await.unwrap();
    }
    for m in ["one", "two", "three"] {
        a.send(Bytes::from_static(m.as_bytes()), false)
            .await
            .unwrap();
    }
    assert_eq!(recv(&mut b).await.unwrap().unwrap(), "one");
    assert_eq!(recv(&mut b).await.unwrap().unwrap(), "two"); // "one" is done
    assert_eq!(
        b.state().ack_sent_through(),
        0,
        "below the threshold, more buffered"
    );
    // b now waits to send (window full) with "three" still buffered: it will not take it
    // until the send completes, so what it took goes out now rather than never.
    assert!(poll_once(|cx| b.poll_ready(cx)).is_pending());
    assert_eq!(b.state().ack_sent_through(), 1);
}

#[tokio::test(start_paused = true)]
async fn keepalive_keeps_a_quiet_pair_alive_for_ten_minutes() {
    let (mut a, mut b) = pair(4, None);
    let peer = tokio::spawn(async move { recv(&mut b).await });
    // Nothing to receive for ten virtual minutes (timeout 60 s): PINGs and PONGs flow.
    let waited = tokio::time::timeout(Duration::from_secs(600), recv(&mut a)).await;
    assert!(
        waited.is_err(),
        "a quiet but live peer ended the wait: {waited:?}"
    );
    assert!(a.failure().is_none());
    peer.abort();
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_fails_the_driver_after_the_peer_timeout() {
    let config = AckConfig::new()
        .keepalive(Some(Duration::from_secs(5)))
        .peer_timeout(Some(Duration::from_secs(20)));
    let (mut a, mut b) = pair(4, Some(config));
    // The handshake completes, then the peer stops reading (and so never answers a PING).
    handshake(&mut a, &mut b).await;
    let r = tokio::time::timeout(Duration::from_secs(120), recv(&mut a))
        .await
        .expect("the driver's own timer ends the wait");
    assert!(
        matches!(
            r,
            Err(AckError::PeerSilent {
                timeout_ms: 20_000,
                ..
            })
        ),
        "{r:?}"
    );
    // The error is latched.
    assert!(matches!(recv(&mut a).await, Err(AckError::Failed { .. })));
    drop(b);
}

#[tokio::test]
async fn a_peer_closing_with_messages_unacknowledged_is_an_error_for_the_sender() {
    let (mut a, mut b) = pair(4, None);
    handshake(&mut a, &mut b).await;
    a.send(Bytes::from_static(b"lost?"), false).await.unwrap();
    assert_eq!(recv(&mut b).await.unwrap().unwrap(), "lost?");
    // The receiver goes away without asking for more: "lost?" was never done.
    drop(b);
    let r = poll_fn(|cx| a.poll_all_acked(cx)).await;
    assert!(
        matches!(
            r,
            Err(AckError::ClosedWithUnacked {
                unacked: 1,
                acked: 0
            })
        ),
        "{r:?}"
    );
    assert_eq!(a.take_unacked(), vec![Bytes::from_static(b"lost?")]);
}

#[tokio::test]
async fn the_local_payload_limit_refuses_before_anything_is_queued() {
    let (x, y) = tokio::io::duplex(1024);
    let small = FrameCodec::builder().max_frame_len(100).build();
    let builder = AckFramedBuilder::new();
    let mut a = builder.driver(x, small);
    let mut b = builder.driver(y, FrameCodec::new());
    handshake(&mut a, &mut b).await;
    let too_long = a.start_send(Bytes::from(vec![0; 100]), false);
    assert!(
        matches!(too_long, Err(AckError::PayloadTooLong { len: 100, .. })),
        "{too_long:?}"
    );
    assert_eq!(a.state().last_sent(), 0);
    // The peer's limit (100 here) binds the other way.
    assert!(b.max_payload_len() < 100);
    assert!(matches!(
        b.start_send(Bytes::from(vec![0; 100]), false),
        Err(AckError::PayloadTooLong { .. })
    ));
    // Within both limits it goes through.
    a.send(Bytes::from(vec![7; 50]), false).await.unwrap();
    assert_eq!(recv(&mut b).await.unwrap().unwrap().len(), 50);
}

/// A transport whose peer always has more to send (it fills every read it is offered, as a
/// fast sender does), recording where each read started in the stream and how much it took;
/// writes are accepted and dropped.
struct FastPeer {
    wire: Vec<u8>,
    at: usize,
    reads: Vec<(usize, usize)>,
}

impl tokio::io::AsyncRead for FastPeer {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let n = buf.remaining().min(this.wire.len() - this.at);
        buf.put_slice(&this.wire[this.at..this.at + n]);
        this.reads.push((this.at, n));
        this.at += n;
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for FastPeer {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The driver reads through framewire's one read path (`FrameReader`), so a large message
/// from a fast peer gets its policy: a read inside a frame of 16 KiB or more stops at the
/// frame's end (the next frame then starts on an empty buffer instead of being copied when it
/// needs room), as in plain mode.
#[tokio::test]
async fn a_read_inside_a_large_message_stops_at_its_end() {
    use framewire_codec::ack::{AckFrame, Hello};

    let mut codec = FrameCodec::new();
    let mut wire = bytes::BytesMut::new();
    AckFrame::<&[u8]>::Hello(Hello::new(8, 1 << 20, 8 << 20))
        .encode(&mut codec, &mut wire)
        .unwrap();
    let large = vec![7u8; 200 * 1024];
    AckFrame::Data {
        seq: 1,
        redelivery: false,
        payload: &large[..],
    }
    .encode(&mut codec, &mut wire)
    .unwrap();
    let large_end = wire.len();
    for seq in 2..=3 {
        AckFrame::Data {
            seq,
            redelivery: false,
            payload: &b"small"[..],
        }
        .encode(&mut codec, &mut wire)
        .unwrap();
    }
    let total = wire.len();
    let io = FastPeer {
        wire: wire.to_vec(),
        at: 0,
        reads: Vec::new(),
    };
    let mut d = AckFramedBuilder::new()
        .window(8)
        .driver(io, FrameCodec::new());

    let got: Vec<Bytes> = {
        let mut got = Vec::new();
        for _ in 0..3 {
            let m = poll_fn(|cx| d.poll_recv(cx))
                .await
                .unwrap()
                .expect("a message");
            got.push(m.payload);
        }
        got
    };
    assert_eq!(got[0][..], large[..]);
    assert_eq!((&got[1][..], &got[2][..]), (&b"small"[..], &b"small"[..]));

    let reads = &d.get_ref().reads;
    assert_eq!(reads.iter().map(|r| r.1).sum::<usize>(), total, "{reads:?}");
    // Every read that started inside the large frame's payload (its header decoded) ended at
    // or before the frame's end.
    let first_inside = reads[0].0 + reads[0].1;
    for &(start, n) in reads {
        if start >= first_inside && start < large_end {
            assert!(
                start + n <= large_end,
                "a read inside the large frame ran past its end at {large_end}: {reads:?}"
            );
        }
    }
    assert!(
        reads.iter().any(|&(start, _)| start == large_end),
        "the next frame starts a read: {reads:?}"
    );
}

/// A large DATA payload is queued by reference to the engine's copy, not copied into the
/// write buffer; `into_parts` still hands over every byte not yet written, in order (the
/// frames a new owner of the transport must write first).
#[tokio::test]
async fn into_parts_hands_over_a_large_message_queued_by_reference() {
    use framewire_codec::ack::{AckFrame, Hello};
    use tokio::io::AsyncReadExt;
    use tokio_util::codec::Decoder;

    let mut codec = FrameCodec::new();
    let mut peer_hello = bytes::BytesMut::new();
    AckFrame::<&[u8]>::Hello(Hello::new(8, 1 << 20, 8 << 20))
        .encode(&mut codec, &mut peer_hello)
        .unwrap();
    // The peer reads nothing: the transport takes 100 bytes, then waits.
    let (ours, mut peer) = tokio::io::duplex(100);
    let builder = AckFramedBuilder::new().window(8);
    let state = builder.build_state(8 << 20);
    let mut d = AckDriver::from_parts(
        ours,
        FrameCodec::new(),
        peer_hello,
        bytes::BytesMut::new(),
        state,
        64 * 1024,
    );
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(d.poll_handshake(&mut cx).is_ready());
    let big = Bytes::from(vec![9u8; 8 * 1024]);
    assert_eq!(d.start_send(big.clone(), false).unwrap(), 1);
    assert!(d.poll_write(&mut cx).is_pending());

    let (.., write_buf, _, _) = d.into_parts();
    let mut wire = vec![0u8; 100];
    peer.read_exact(&mut wire).await.unwrap();
    let mut wire = bytes::BytesMut::from(&[&wire[..], &write_buf[..]].concat()[..]);
    let hello = codec.decode(&mut wire).unwrap().expect("our HELLO");
    assert!(matches!(
        AckFrame::parse(&hello).unwrap(),
        AckFrame::Hello(_)
    ));
    let data = codec
        .decode(&mut wire)
        .unwrap()
        .expect("the DATA frame, whole");
    assert_eq!(
        AckFrame::parse(&data).unwrap(),
        AckFrame::Data {
            seq: 1,
            redelivery: false,
            payload: &big[..]
        }
    );
    assert!(wire.is_empty());
}
