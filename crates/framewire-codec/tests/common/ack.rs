//! Helpers shared by the ack-mode integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use framewire_codec::ack::{AckState, Delivery};
use tokio::net::{TcpListener, TcpStream};

/// Upper bound for any network test: generous, only there so that a bug cannot hang CI.
pub const NET_TIMEOUT: Duration = Duration::from_secs(20);

/// A connected loopback TCP pair (client, server) with `TCP_NODELAY` set on both.
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let client = client.unwrap();
    let (server, _) = accepted.unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

/// Moves every frame `from` wants to transmit into `to` (as bytes, the way a socket would),
/// returning the messages `to` received. Panics on any protocol error.
pub fn pump(from: &mut AckState, to: &mut AckState) -> Vec<Delivery> {
    let mut got = Vec::new();
    while let Some(frame) = from.poll_transmit() {
        if let Some(d) = to.handle_frame(frame.to_bytes()).unwrap() {
            got.push(d);
        }
    }
    got
}

/// Two machines that have exchanged HELLOs, with the given windows.
pub fn established(window_a: u32, window_b: u32) -> (AckState, AckState) {
    let mut a = AckState::new(window_a, 1 << 20);
    let mut b = AckState::new(window_b, 1 << 20);
    assert!(pump(&mut a, &mut b).is_empty());
    assert!(pump(&mut b, &mut a).is_empty());
    assert!(a.is_established() && b.is_established());
    (a, b)
}

/// The `i`-th test message: distinct, of varying length (0..=40 bytes).
pub fn message(i: usize) -> Bytes {
    let len = i % 41;
    Bytes::from(format!("{i:08}-{}", "x".repeat(len)).into_bytes())
}
