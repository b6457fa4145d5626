//! Cut to first new delivery: how long after a connection is cut the server's handler gets
//! the next message of the same session, on loopback.
//!
//! An `AckClient` talks to a framewire server (ack mode, sessions on) through a proxy that
//! this program can cut (it closes both sockets: the client and the server see FIN). Each
//! round: the client sends a message and waits until the handler has it; the proxy cuts
//! the connection (t0); the client at once sends the next message, which finds the
//! connection gone, reconnects, resumes the session and resends it; the handler's receive
//! time of that message is t1. Prints the median, p99 and max of t1 - t0 over the rounds,
//! for the default reconnect policy (first attempt after up to 50 ms, jittered) and for one
//! that retries at once. Every resume must find the session (checked).
//!
//! Run: `cargo run --release -p framewire-client --example resume_latency -- [ROUNDS]`
//! (default 200 rounds per policy).

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use framewire_client::{Client, ReconnectPolicy};
use framewire_codec::ack::SessionStatus;
use framewire_server::{Connection, Server, ServerError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the handler reports: (seq, resumed connection, receive time).
type Seen = mpsc::UnboundedSender<(u64, bool, Instant)>;

async fn handler(mut conn: Connection<Seen>) -> Result<(), ServerError> {
    let resumed = conn.session().map(|(_, s)| s) == Some(SessionStatus::Resumed);
    while let Some(d) = conn.recv_delivery().await? {
        let _ = conn.state().send((d.seq, resumed, Instant::now()));
    }
    Ok(())
}

/// A proxy to `target` whose current connection can be cut (both sockets closed).
#[derive(Clone, Default)]
struct Proxy {
    current: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Proxy {
    async fn spawn(target: SocketAddr) -> (SocketAddr, Proxy) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Proxy::default();
        let p = proxy.clone();
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                down.set_nodelay(true).unwrap();
                let Ok(mut up) = TcpStream::connect(target).await else {
                    continue;
                };
                up.set_nodelay(true).unwrap();
                let task = tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                });
                if let Some(old) = p.current.lock().unwrap().replace(task) {
                    old.abort();
                }
            }
        });
        (addr, proxy)
    }

    /// Closes the current connection's two sockets (dropped with the aborted task).
    fn cut(&self) {
        if let Some(task) = self.current.lock().unwrap().take() {
            task.abort();
        }
    }
}

fn payload(n: u64) -> Bytes {
    Bytes::from(format!("m{n:09}"))
}

async fn run(name: &str, policy: ReconnectPolicy, rounds: usize) {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let server = Server::builder()
        .ack_mode(framewire_codec::ack::DEFAULT_WINDOW)
        .state(seen_tx)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let target = server.local_addr().tcp().unwrap();
    let handle = server.handle();
    let serving = tokio::spawn(server.serve(handler));
    let (addr, proxy) = Proxy::spawn(target).await;
    let client = Client::builder()
        .reconnect(policy)
        .connect_ack(addr)
        .await
        .unwrap();

    let mut seq = 0u64;
    // Waits for the handler to get `want`; returns when, and whether on a resumed connection.
    async fn wait_for(
        seen: &mut mpsc::UnboundedReceiver<(u64, bool, Instant)>,
        want: u64,
    ) -> (bool, Instant) {
        loop {
            let (s, resumed, at) = seen.recv().await.expect("the server runs");
            assert!(s <= want, "message {s} arrived before {want}");
            if s == want {
                return (resumed, at);
            }
        }
    }
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        seq += 1;
        let _receipt = client.send(payload(seq)).await.unwrap();
        client.flush().await.unwrap();
        wait_for(&mut seen, seq).await;
        let t0 = Instant::now();
        proxy.cut();
        seq += 1;
        let _receipt = client.send(payload(seq)).await.unwrap();
        client.flush().await.unwrap();
        let (resumed, t1) = wait_for(&mut seen, seq).await;
        assert!(resumed, "message {seq}: the session was not resumed");
        samples.push(t1 - t0);
    }
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    println!(
        "{name}: {rounds} cuts (FIN), cut -> first new delivery: median {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms; client reconnects {}",
        pct(50).as_secs_f64() * 1e3,
        pct(99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
        client.reconnects(),
    );
    client.close().await.ok();
    handle.shutdown();
    let _ = serving.await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = std::env::args()
        .nth(1)
        .map_or(200, |a| a.parse().expect("ROUNDS is a number"));
    run(
        "default reconnect policy",
        ReconnectPolicy::default(),
        rounds,
    )
    .await;
    run(
        "initial_delay 0",
        ReconnectPolicy::default().initial_delay(Duration::ZERO),
        rounds,
    )
    .await;
}
