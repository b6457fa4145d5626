//! Shared helpers for the loopback tests: start a server, connect raw framed clients, bound
//! every wait.
#![allow(dead_code, unreachable_pub)]

pub mod tls;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use framewire_codec::FrameCodec;
use framewire_server::{
    Connection, Handler, ServerBuilder, ServerError, ServerHandle, ShutdownReport, Stats,
};
use futures::StreamExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

/// Upper bound for any single test body; a hang fails instead of blocking CI.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `fut`, failing the test if it takes longer than [`TEST_TIMEOUT`].
pub async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, fut)
        .await
        .expect("test timed out")
}

/// One test at a time, for suites whose memory figures are per process.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `body` alone (holding [`SERIAL`]) on a fresh two-worker runtime, within the test
/// timeout.
pub fn run_alone<F: Future<Output = ()>>(body: F) {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(2);
    run_alone_on(rt, within(body));
}

/// Runs `body` alone (holding [`SERIAL`]) on the runtime `rt` builds (with every driver
/// enabled). No timeout of its own: wrap `body` in [`within`] unless the runtime's clock is
/// paused (there, a 20 s timeout in virtual time would fire before the timeouts under test).
pub fn run_alone_on<F: Future<Output = ()>>(mut rt: tokio::runtime::Builder, body: F) {
    let _alone = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = rt.enable_all().build().expect("a runtime");
    rt.block_on(body);
}

/// A server running in a background task.
pub struct Running<S> {
    pub addr: SocketAddr,
    pub handle: ServerHandle<S>,
    pub task: JoinHandle<ShutdownReport>,
}

impl<S> Running<S> {
    /// Requests shutdown and waits for the report.
    pub async fn stop(self) -> ShutdownReport {
        self.handle.shutdown();
        self.task.await.expect("serve task panicked")
    }
}

/// Binds `builder` to an ephemeral loopback port and serves `handler` in the background.
pub async fn spawn<S, H>(builder: ServerBuilder<S>, handler: H) -> Running<S>
where
    S: Send + Sync + 'static,
    H: Handler<S>,
{
    let server = builder.bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr().tcp().expect("a TCP address");
    let handle = server.handle();
    let task = tokio::spawn(server.serve(handler));
    Running { addr, handle, task }
}

/// Echoes every frame back.
pub async fn echo<S>(mut conn: Connection<S>) -> Result<(), ServerError> {
    while let Some(frame) = conn.recv().await? {
        conn.send(&frame).await?;
    }
    Ok(())
}

/// A raw framed client (not the framewire client crate).
pub type Client = Framed<TcpStream, FrameCodec>;

pub async fn client(addr: SocketAddr) -> Client {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    FrameCodec::new().framed(stream)
}

/// A client whose socket is bound to `source` (any 127.0.0.x works on Linux loopback).
pub async fn client_from(source: IpAddr, addr: SocketAddr) -> Client {
    FrameCodec::new().framed(raw_from(source, addr).await)
}

/// A raw TCP stream (no delay) from the source address `source` (any 127.x address).
pub async fn raw_from(source: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind source");
    let stream = socket.connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Reads until the server closes the connection (end of stream or reset) and returns what
/// arrived. Bounded by the test timeout.
pub async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// A raw framed client over TLS, expecting the server's certificate to be valid for
/// `localhost`. Panics if the handshake fails.
pub async fn tls_client(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> Framed<tokio_rustls::client::TlsStream<TcpStream>, FrameCodec> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a server name");
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, stream)
        .await
        .expect("TLS handshake");
    FrameCodec::new().framed(tls)
}

/// The next frame, or `None` on end of stream or a connection error (reset).
pub async fn next_frame(client: &mut Client) -> Option<Bytes> {
    match client.next().await {
        Some(Ok(frame)) => Some(frame),
        _ => None,
    }
}

/// `true` if no frame arrives within `window` (the connection is still open and silent).
pub async fn silent_for(client: &mut Client, window: Duration) -> bool {
    tokio::time::timeout(window, client.next()).await.is_err()
}

/// `true` if the server closed the connection (end of stream or reset) before any frame.
pub async fn closed_by_server(client: &mut Client) -> bool {
    matches!(client.next().await, None | Some(Err(_)))
}

/// Polls the server's stats until `pred` holds (bounded: 500 polls, 10 ms apart).
pub async fn wait_for<S>(handle: &ServerHandle<S>, pred: impl Fn(&Stats) -> bool) -> Stats {
    for _ in 0..500 {
        let stats = handle.stats();
        if pred(&stats) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "stats never reached the expected state: {:?}",
        handle.stats()
    );
}

/// A well-behaved client that keeps sending frames and checking their echoes in a background
/// task, so a test can show that an attack on other connections does not disturb it.
///
/// Each round sends one frame whose length and bytes depend on the round number (every 64th
/// round, starting with the first, a 96 KiB frame, which spans several reads and writes; the
/// first round grows the client's buffers to their steady size) and checks the echo byte for
/// byte. A mismatch, an error or a closed connection ends the task with an error that
/// [`Witness::finish`] reports.
pub struct Witness {
    rounds: std::sync::Arc<std::sync::atomic::AtomicU64>,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<Result<u64, String>>,
}

/// The payload of witness round `i`: its number, then a pattern that depends on it.
pub fn witness_payload(i: u64) -> Vec<u8> {
    let len = if i % 64 == 0 {
        96 * 1024
    } else {
        1 + (i as usize * 7919) % 2048
    };
    let mut payload = i.to_be_bytes().to_vec();
    payload.extend((0..len).map(|j| (j as u64).wrapping_mul(31).wrapping_add(i) as u8));
    payload
}

/// Upper bound on witness rounds, so that a witness nobody stops still ends.
const WITNESS_MAX_ROUNDS: u64 = 1_000_000;

/// The connection a [`Witness`] runs its rounds on.
enum WitnessClient {
    Plain(Client),
    Ack(Box<framewire_codec::ack::AckFramed<TcpStream>>),
    Tls(Box<Framed<tokio_rustls::client::TlsStream<TcpStream>, FrameCodec>>),
}

/// Sends `frame` on a plain-mode framed stream and returns the next frame.
async fn plain_round<T>(
    c: &mut Framed<T, FrameCodec>,
    frame: Bytes,
) -> Option<Result<Bytes, String>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures::SinkExt;
    if let Err(e) = c.send(frame).await {
        return Some(Err(format!("send: {e}")));
    }
    c.next().await.map(|r| r.map_err(|e| e.to_string()))
}

impl WitnessClient {
    /// Sends `frame` and checks that its echo comes back unchanged.
    async fn round(&mut self, frame: Bytes) -> Result<(), String> {
        use futures::SinkExt;
        let echo = match self {
            WitnessClient::Plain(c) => plain_round(c, frame.clone()).await,
            WitnessClient::Tls(c) => plain_round(c, frame.clone()).await,
            WitnessClient::Ack(c) => {
                c.send(frame.clone())
                    .await
                    .map_err(|e| format!("send: {e}"))?;
                c.next()
                    .await
                    .map(|r| r.map(|d| d.payload).map_err(|e| e.to_string()))
            }
        };
        match echo {
            Some(Ok(echo)) if echo == frame => Ok(()),
            Some(Ok(echo)) => Err(format!(
                "wrong echo: {} bytes instead of {}",
                echo.len(),
                frame.len()
            )),
            Some(Err(e)) => Err(format!("receive: {e}")),
            None => Err("the server closed the connection".to_string()),
        }
    }
}

impl Witness {
    /// Starts a plain-mode witness against an echo server at `addr`.
    pub async fn plain(addr: SocketAddr) -> Witness {
        Witness::start(WitnessClient::Plain(client(addr).await))
    }

    /// Starts a plain-mode witness over TLS (server name `localhost`) against a TLS echo
    /// server at `addr`.
    pub async fn tls(addr: SocketAddr, config: rustls::ClientConfig) -> Witness {
        Witness::start(WitnessClient::Tls(Box::new(tls_client(addr, config).await)))
    }

    /// Starts an ack-mode witness (window `window`) against an ack-mode echo server.
    pub async fn ack(addr: SocketAddr, window: u32) -> Witness {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let c = framewire_codec::ack::AckFramed::builder()
            .window(window)
            .new_framed(stream);
        Witness::start(WitnessClient::Ack(Box::new(c)))
    }

    fn start(mut client: WitnessClient) -> Witness {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let rounds = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (rounds, sent, stop) = (rounds.clone(), sent.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && i < WITNESS_MAX_ROUNDS {
                    let payload = witness_payload(i);
                    // Counted before sending: `sent` is never below what the server received.
                    sent.fetch_add(4 + payload.len() as u64, Ordering::SeqCst);
                    client
                        .round(Bytes::from(payload))
                        .await
                        .map_err(|e| format!("witness round {i}: {e}"))?;
                    i += 1;
                    rounds.store(i, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Ok(i)
            })
        };
        Witness {
            rounds,
            sent,
            stop,
            task,
        }
    }

    /// Rounds completed so far.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Plain mode: frame bytes (headers included) the witness has started sending, never less
    /// than what the server has received from it. (In ack mode it leaves out the DATA headers,
    /// the HELLO and the ACKs.)
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until `n` more rounds have completed (bounded: at most 2000 polls 5 ms apart).
    /// Panics if the witness stopped or made no such progress.
    pub async fn progress(&self, n: u64) {
        let target = self.rounds() + n;
        for _ in 0..2000 {
            if self.rounds() >= target {
                return;
            }
            assert!(!self.task.is_finished(), "the witness stopped early");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "the witness made no progress: {} rounds, wanted {target}",
            self.rounds()
        );
    }

    /// Stops the witness and returns its round count; panics with the witness's error if it
    /// saw one.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match self.task.await {
            Ok(Ok(rounds)) => rounds,
            Ok(Err(e)) => panic!("the well-behaved client saw an error: {e}"),
            Err(e) => panic!("the witness task failed: {e}"),
        }
    }
}

/// `VmRSS` and `VmSize` of this process (the server runs in it), in bytes, from
/// `/proc/self/status`; `(0, 0)` where that file does not exist.
pub fn proc_memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmSize:"))
}
