//! The `AckFramed` adapter over loopback TCP: windows 1, 2 and 64, stop-and-wait and
//! pipelined batches, split stream/sink tasks, per-message receipts, a plain-mode peer, and
//! unacknowledged messages handed back after the peer drops the socket.

// Helpers outside #[test] functions unwrap too: this is test code.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::ack::{message, tcp_pair, NET_TIMEOUT};
use framewire_codec::ack::{AckError, AckFramed};
use framewire_codec::FrameCodec;
use futures::{SinkExt, StreamExt};
use tokio::time::timeout;

const N: usize = 300;

/// Client sends N messages (first 10 stop-and-wait, then pipelined batches of 25); server
/// takes them in order; every flush returns only once the server took everything.
async fn one_way(window: u32, ack_threshold: Option<u64>) {
    let (c, s) = tcp_pair().await;
    let server = tokio::spawn(async move {
        let mut builder = AckFramed::builder().window(window);
        if let Some(t) = ack_threshold {
            builder = builder.ack_threshold(t);
        }
        let mut conn = builder.new_framed(s);
        let mut got = Vec::new();
        while let Some(d) = conn.next().await {
            let d = d.unwrap();
            assert_eq!(d.seq, got.len() as u64 + 1);
            assert!(!d.redelivered);
            got.push(d.payload);
        }
        got
    });
    let mut conn = AckFramed::builder().window(window).new_framed(c);
    let peer = conn.handshake().await.unwrap();
    assert_eq!(peer.window, window);
    for i in 0..10 {
        conn.send(message(i)).await.unwrap();
        assert_eq!(
            conn.acked_through(),
            i as u64 + 1,
            "send() is stop-and-wait"
        );
    }
    let mut i = 10;
    while i < N {
        let end = (i + 25).min(N);
        for j in i..end {
            conn.feed(message(j)).await.unwrap();
            assert!(conn.state().in_flight() <= u64::from(window));
        }
        conn.flush().await.unwrap();
        assert_eq!(conn.acked_through(), end as u64);
        assert!(conn.unacked().is_empty());
        i = end;
    }
    conn.close().await.unwrap();
    let got = server.await.unwrap();
    let want: Vec<Bytes> = (0..N).map(message).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn one_way_window_1() {
    timeout(NET_TIMEOUT, one_way(1, None)).await.unwrap();
}

#[tokio::test]
async fn one_way_window_2() {
    timeout(NET_TIMEOUT, one_way(2, None)).await.unwrap();
}

#[tokio::test]
async fn one_way_window_64_ack_when_idle() {
    timeout(NET_TIMEOUT, one_way(64, Some(64))).await.unwrap();
}

#[tokio::test]
async fn one_way_window_64() {
    timeout(NET_TIMEOUT, one_way(64, None)).await.unwrap();
}

/// Echo server (stop-and-wait replies); the client's sink and stream halves run in two
/// tasks on a multi-threaded runtime, so each side's reads wake the other.
async fn echo_split(window: u32) {
    let (c, s) = tcp_pair().await;
    let server = tokio::spawn(async move {
        let mut conn = AckFramed::builder().window(window).new_framed(s);
        let mut n = 0;
        while let Some(d) = conn.next().await {
            let d = d.unwrap();
            conn.send(d.payload).await.unwrap();
            n += 1;
        }
        n
    });
    let conn = AckFramed::builder().window(window).new_framed(c);
    let (mut sink, mut stream) = conn.split();
    let sender = tokio::spawn(async move {
        for i in 0..N {
            sink.feed(message(i)).await.unwrap();
            if i % 16 == 15 {
                sink.flush().await.unwrap();
            }
        }
        sink.flush().await.unwrap();
        sink
    });
    for i in 0..N {
        let d = stream.next().await.unwrap().unwrap();
        assert_eq!(d.seq, i as u64 + 1);
        assert_eq!(d.payload, message(i));
    }
    let sink = sender.await.unwrap();
    let mut conn = sink.reunite(stream).unwrap();
    // Done both ways: close writes the ack for the last echo, then ends the server's stream.
    conn.close().await.unwrap();
    assert_eq!(server.await.unwrap(), N);
    assert!(matches!(
        conn.send(Bytes::new()).await,
        Err(AckError::SinkClosed)
    ));
    // Refusing a send does not break the connection: the stream still ends cleanly.
    assert!(conn.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_split_tasks_window_1() {
    timeout(NET_TIMEOUT, echo_split(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_split_tasks_window_2() {
    timeout(NET_TIMEOUT, echo_split(2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_split_tasks_window_64() {
    timeout(NET_TIMEOUT, echo_split(64)).await.unwrap();
}

#[tokio::test]
async fn per_message_receipts() {
    timeout(NET_TIMEOUT, async {
        let (c, s) = tcp_pair().await;
        // `true`: take the next message; `false`: acknowledge what was taken.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bool>(1);
        let server = tokio::spawn(async move {
            let mut conn = AckFramed::builder().window(8).new_framed(s);
            // The handshake is lazy: without a poll this side's HELLO would not go out.
            conn.handshake().await.unwrap();
            // Take one message per permit, so the client can watch acks arrive one by one.
            let mut got = Vec::new();
            while let Some(take) = rx.recv().await {
                if take {
                    got.push(conn.next().await.unwrap().unwrap().seq);
                } else {
                    conn.acknowledge().await.unwrap();
                }
            }
            got
        });
        let mut conn = AckFramed::builder().window(8).new_framed(c);
        let mut seqs = Vec::new();
        for i in 0..5 {
            seqs.push(conn.send_tracked(message(i)).await.unwrap());
        }
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        assert_eq!(conn.acked_through(), 0, "nothing taken yet");
        // A message is done when the next one is asked for: taking the 5th makes 4 done, and
        // the server grants window 8, so it acks after 4 done while more is buffered...
        for _ in 0..5 {
            tx.send(true).await.unwrap();
        }
        conn.wait_acked(4).await.unwrap();
        assert_eq!(conn.poll_acked(), Some(1..=4));
        assert_eq!(conn.poll_acked(), None);
        assert_eq!(conn.unacked(), [message(4)]);
        // ...and the 5th once the server acknowledges it explicitly.
        tx.send(false).await.unwrap();
        conn.wait_acked(5).await.unwrap();
        assert_eq!(conn.poll_acked(), Some(5..=5));
        assert!(conn.unacked().is_empty());
        drop(tx);
        assert_eq!(server.await.unwrap(), [1, 2, 3, 4, 5]);
    })
    .await
    .unwrap();
}

/// The server takes 5 messages and drops the socket without reading more. The client's
/// flush fails, and every message not acknowledged comes back in order; resent as
/// redeliveries on a new connection they arrive flagged, numbered from 1 again.
#[tokio::test]
async fn unacked_handed_back_after_abrupt_close() {
    timeout(NET_TIMEOUT, async {
        let (c, s) = tcp_pair().await;
        let server = tokio::spawn(async move {
            let mut conn = AckFramed::builder().window(64).new_framed(s);
            let mut took = Vec::new();
            for _ in 0..5 {
                took.push(conn.next().await.unwrap().unwrap().payload);
            }
            drop(conn); // abrupt: unread data in the socket, no close handshake of ours
            took
        });
        let sent: Vec<Bytes> = (0..40).map(message).collect();
        let mut conn = AckFramed::builder().window(64).new_framed(c);
        for m in &sent {
            conn.feed(m.clone()).await.unwrap();
        }
        let err = conn.flush().await.unwrap_err();
        assert!(
            matches!(err, AckError::ClosedWithUnacked { .. } | AckError::Frame(_)),
            "{err:?}"
        );
        // Later calls fail fast and say why.
        let again = conn.flush().await.unwrap_err();
        assert!(matches!(again, AckError::Failed { .. }), "{again:?}");
        let took = server.await.unwrap();
        assert_eq!(took, &sent[..5]);

        let acked = conn.acked_through() as usize;
        assert!(acked <= 5, "acked {acked} but the server took only 5");
        let back = conn.into_unacked();
        assert_eq!(back, &sent[acked..], "nothing lost, in order");

        // Reconnect and redeliver.
        let (c, s) = tcp_pair().await;
        let n = back.len();
        let server = tokio::spawn(async move {
            let mut conn = AckFramed::new(FrameCodec::new().framed(s));
            let mut got = Vec::new();
            while let Some(d) = conn.next().await {
                let d = d.unwrap();
                assert!(d.redelivered);
                assert_eq!(d.seq, got.len() as u64 + 1);
                got.push(d.payload);
            }
            got
        });
        let mut conn = AckFramed::new(FrameCodec::new().framed(c));
        for m in back.clone() {
            conn.send_redelivery(m).await.unwrap();
        }
        conn.close().await.unwrap();
        let got = server.await.unwrap();
        assert_eq!(got.len(), n);
        assert_eq!(got, back);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn peer_closing_before_hello() {
    timeout(NET_TIMEOUT, async {
        let (c, s) = tcp_pair().await;
        drop(s);
        let mut conn = AckFramed::new(FrameCodec::new().framed(c));
        let err = conn.handshake().await.unwrap_err();
        assert!(
            matches!(err, AckError::ClosedBeforeHello | AckError::Frame(_)),
            "{err:?}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn plain_mode_peer_is_named() {
    timeout(NET_TIMEOUT, async {
        let (c, s) = tcp_pair().await;
        let server = tokio::spawn(async move {
            let mut plain = FrameCodec::new().framed(s);
            plain.send(bytes::Bytes::from("hello")).await.unwrap();
            // Keep the socket open until the client has judged the frame.
            let _ = plain.next().await;
        });
        let mut conn = AckFramed::new(FrameCodec::new().framed(c));
        let err = conn.next().await.unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected HELLO, got a frame of 5 bytes starting 68 65 6c 6c 6f"
        );
        assert!(
            conn.next().await.is_none(),
            "the stream ends after an error"
        );
        drop(conn);
        server.await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn oversized_payload_is_refused_before_queueing() {
    timeout(NET_TIMEOUT, async {
        let (c, s) = tcp_pair().await;
        let server = tokio::spawn(async move {
            let mut conn = AckFramed::new(FrameCodec::builder().max_frame_len(100).new_framed(s));
            conn.next().await.map(|r| r.unwrap().payload)
        });
        let mut conn = AckFramed::new(FrameCodec::new().framed(c));
        let err = conn.send_tracked(vec![0u8; 91]).await.unwrap_err();
        assert!(
            matches!(err, AckError::PayloadTooLong { len: 91, max: 90 }),
            "{err:?}"
        );
        assert!(conn.unacked().is_empty());
        drop(conn);
        assert_eq!(server.await.unwrap(), None);
    })
    .await
    .unwrap();
}

/// The scenario of review 3, M1: the two halves of a split `AckFramed` (this side, `config`)
/// in two tasks. The sink sends `x` and waits for its ACK, then parks holding the sink. The
/// peer sends `early`, acknowledges `x` 50 ms later, then sends `later` 50 ms after that
/// (`then_later`) or goes silent with its socket open. The sink's last flush used to read
/// (finding nothing) with its own waker, which took the socket's and the timer's
/// registrations from the stream half: nothing woke the stream half again. Returns what the
/// stream half got after `early`, with the tasks to abort.
async fn split_sink_parked_after_a_flush(
    config: framewire_codec::ack::AckConfig,
    then_later: bool,
) -> (
    Option<Result<framewire_codec::ack::Delivery, AckError>>,
    [tokio::task::JoinHandle<()>; 2],
) {
    use std::time::Duration;
    let (c, s) = tcp_pair().await;
    let peer = tokio::spawn(async move {
        let mut b = AckFramed::builder().window(16).new_framed(c);
        b.handshake().await.unwrap();
        assert_eq!(&b.next().await.unwrap().unwrap().payload[..], b"x");
        b.send_tracked(Bytes::from_static(b"early")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        b.acknowledge().await.unwrap(); // the ACK for `x`
        if then_later {
            tokio::time::sleep(Duration::from_millis(50)).await;
            b.send_tracked(Bytes::from_static(b"later")).await.unwrap();
            while let Some(Ok(_)) = b.next().await {}
        } else {
            // Silent (not polled, so no keepalive either), the socket kept open.
            tokio::time::sleep(NET_TIMEOUT).await;
        }
    });
    let mut a = AckFramed::builder().config(config).new_framed(s);
    a.handshake().await.unwrap();
    let (mut sink, mut stream) = a.split();
    let receiver = tokio::spawn(async move {
        let first = stream.next().await;
        assert_eq!(&first.unwrap().unwrap().payload[..], b"early");
        stream.next().await
    });
    let sender = tokio::spawn(async move {
        sink.send(Bytes::from_static(b"x")).await.unwrap(); // the flush waits for the ACK
        std::future::pending::<()>().await;
        drop(sink);
    });
    let got = timeout(NET_TIMEOUT, receiver)
        .await
        .expect("the stream half was never woken after the sink's flush")
        .unwrap();
    (got, [peer, sender])
}

/// The stream half gets the message sent after the sink's flush finished.
#[tokio::test(flavor = "current_thread")]
async fn split_stream_half_is_woken_after_the_sink_finished_a_flush() {
    let config = framewire_codec::ack::AckConfig::default().window(16);
    let (got, tasks) = split_sink_parked_after_a_flush(config, true).await;
    assert_eq!(&got.unwrap().unwrap().payload[..], b"later");
    tasks.iter().for_each(tokio::task::JoinHandle::abort);
}

/// The stream half is woken by the peer timeout after the sink's flush finished (the timer
/// used to wake the parked sink task instead).
#[tokio::test(flavor = "current_thread")]
async fn split_stream_half_gets_the_peer_timeout_after_the_sink_finished_a_flush() {
    let config = framewire_codec::ack::AckConfig::default()
        .window(16)
        .keepalive(None)
        .peer_timeout(Some(std::time::Duration::from_millis(300)));
    let (got, tasks) = split_sink_parked_after_a_flush(config, false).await;
    match got {
        Some(Err(AckError::PeerSilent { .. })) => {}
        other => panic!("expected the peer-silent error, got {other:?}"),
    }
    tasks.iter().for_each(tokio::task::JoinHandle::abort);
}
