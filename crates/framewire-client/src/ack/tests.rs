//! Unit tests of the client's ack mode that need its internals.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use framewire_codec::ack::AckFramed;
use futures_util::StreamExt;

use super::shared::SendCmd;
use crate::ReconnectPolicy;

/// The ordering rule of [`Slot`](super::shared::Slot): while a message accepted earlier waits
/// in the queue (accepted during a reconnect, not yet handed to the new connection by the
/// driver), a send does not go straight into the engine ahead of it, but queues behind it.
#[tokio::test]
async fn a_send_does_not_overtake_a_queued_message() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut conn = AckFramed::builder().window(64).new_framed(stream);
        let mut got = Vec::new();
        while let Some(Ok(d)) = conn.next().await {
            got.push(d.payload);
        }
        got
    });
    let client = crate::Client::builder()
        .reconnect(ReconnectPolicy::never())
        .connect_ack(addr)
        .await
        .expect("connect");
    let shared = Arc::clone(&client.tx.shared);
    // The driver installs the connection when it first runs.
    while shared.slot().conn.is_none() {
        tokio::task::yield_now().await;
    }
    {
        // As `try_accept` queues a message while no connection is installed.
        let mut slot = shared.slot();
        let id = slot.next_id;
        slot.next_id += 1;
        slot.queue.push_back(SendCmd {
            id,
            payload: Bytes::from_static(b"queued"),
        });
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        shared.accepted_bytes.fetch_add(6, Ordering::Relaxed);
    }
    // The window has room: `send` returns without yielding, so the driver (on this
    // single-threaded runtime) has not run meanwhile.
    let receipt = client.send("direct").await.expect("send");
    {
        let slot = shared.slot();
        let in_engine = slot.conn.as_ref().map(|c| c.state().unacked().count());
        assert_eq!(
            in_engine,
            Some(0),
            "nothing went ahead of the queued message"
        );
        assert_eq!(slot.queue.len(), 2);
    }
    tokio::time::timeout(Duration::from_secs(10), receipt)
        .await
        .expect("receipt in time")
        .expect("acknowledged");
    client.close().await.expect("close");
    let got = server.await.expect("server task");
    assert_eq!(got, [&b"queued"[..], &b"direct"[..]]);
}

/// Counts its wakes.
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The receiving half's registration in the inbox (where the driver wakes it when a
/// connection is installed, messages are carried, or the client stops): a poll that does not
/// wait (a no-op waker, as `now_or_never` polls) leaves the waiting task's waker there, a poll
/// with the waker already registered keeps it without taking the inbox lock, and once the
/// driver took it (to wake it), the next poll registers it again.
#[tokio::test]
async fn recv_keeps_its_registration_until_the_driver_takes_it() {
    use futures_util::Stream;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut conn = AckFramed::builder().window(64).new_framed(stream);
        // Sends nothing; ends when the client closes.
        while let Some(Ok(_)) = conn.next().await {}
    });
    let mut client = crate::Client::builder()
        .reconnect(ReconnectPolicy::never())
        .connect_ack(addr)
        .await
        .expect("connect");
    let shared = Arc::clone(&client.tx.shared);
    while shared.slot().conn.is_none() {
        tokio::task::yield_now().await;
    }
    let counter = Arc::new(CountingWaker(std::sync::atomic::AtomicUsize::new(0)));
    let waker = Waker::from(Arc::clone(&counter));
    let registered = |shared: &super::shared::Shared| {
        shared
            .inbox()
            .recv_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(&waker))
    };
    let mut poll = |w: &Waker| Pin::new(&mut client.rx).poll_next(&mut Context::from_waker(w));

    assert!(poll(&waker).is_pending());
    assert!(registered(&shared));
    // A poll that does not wait does not displace the waker of the one that does.
    assert!(poll(Waker::noop()).is_pending());
    assert!(
        registered(&shared),
        "a no-op poll displaced the waiting waker"
    );
    assert!(poll(&waker).is_pending());
    assert!(registered(&shared));
    // The driver takes the waker to wake it (as it does after installing a connection):
    // the next poll must put it back, or the receiving half would sleep through the next
    // change.
    let taken = shared.take_recv_waker(&mut shared.inbox());
    assert!(taken.is_some_and(|w| w.will_wake(&waker)));
    assert!(!registered(&shared));
    assert!(matches!(poll(&waker), Poll::Pending));
    assert!(
        registered(&shared),
        "not registered again after the driver took it"
    );
    client.close().await.expect("close");
    server.await.expect("server task");
}
