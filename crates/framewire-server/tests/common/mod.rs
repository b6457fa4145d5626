//! Shared helpers for the loopback tests: start a server, connect raw framed clients, bound
//! every wait.
#![allow(dead_code, unreachable_pub)]

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
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind source");
    let stream = socket.connect(addr).await.expect("connect");
    FrameCodec::new().framed(stream)
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
