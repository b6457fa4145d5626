//! loadgen's ack-mode client measures the library, not a stall of its own: a batch of sends
//! returns once its messages fit in the window, without waiting for their acknowledgements
//! (plain mode's batch does not wait for the server either). When it waited, the pipe drained
//! once per `stream` batch and that stall was counted against ack mode.

use std::time::Duration;

use bytes::Bytes;
use framewire_bench::client::{ClientImpl, ConnOpts, FrameTx, FramewireAckClient, Target};
use framewire_codec::ack::AckFramedBuilder;
use framewire_codec::FrameCodec;
use tokio::net::TcpListener;

/// Only guards against a hang (the batch waiting for acks that never come); not a timing.
const HANG_GUARD: Duration = Duration::from_secs(10);

#[tokio::test]
async fn an_ack_batch_returns_without_waiting_for_its_acknowledgements() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    // A peer that completes the handshake, granting a window of 8, and then never takes a
    // message: nothing sent to it is ever acknowledged.
    let peer = tokio::spawn(async move {
        let (sock, _) = listener.accept().await?;
        let mut driver = AckFramedBuilder::new()
            .window(8)
            .driver(sock, FrameCodec::new());
        driver.handshake().await.map_err(std::io::Error::other)?;
        Ok::<_, std::io::Error>(driver)
    });
    let opts = ConnOpts {
        window: 8,
        echo: false,
        shared_payload: false,
        feed_each: false,
        tls: None,
    };
    let (mut tx, _rx) = FramewireAckClient::open(Target {
        addr,
        source: None,
        payload: Bytes::from_static(b"x"),
        opts,
    })
    .await
    .expect("connect");
    // Keeps the connection open, unpolled.
    let _peer = peer.await.expect("peer task").expect("peer handshake");
    // 8 messages fit in the window: the batch is handed over, and nothing is acknowledged.
    tokio::time::timeout(HANG_GUARD, tx.send(8))
        .await
        .expect("a batch of 8 within a window of 8 waited for acknowledgements")
        .expect("send");
}
