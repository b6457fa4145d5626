//! Shared test helpers: a minimal echo server built on raw tokio + `FrameCodec`, and a timeout
//! wrapper so that no network test can hang.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use framewire_codec::FrameCodec;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// Upper bound for any single network test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `f`, panicking if it takes longer than [`TEST_TIMEOUT`].
pub async fn within<F: Future>(f: F) -> F::Output {
    match tokio::time::timeout(TEST_TIMEOUT, f).await {
        Ok(out) => out,
        Err(_) => panic!("test did not finish within {TEST_TIMEOUT:?}"),
    }
}

/// How the in-test echo server answers.
#[derive(Debug, Clone, Copy)]
pub struct Echo {
    /// Sent once when a client connects.
    pub greeting: Option<&'static str>,
    /// Appended to every echoed frame.
    pub suffix: &'static str,
    /// The frame `q` ends the conversation (no reply, the server closes).
    pub quit_on_q: bool,
}

impl Echo {
    /// The tutorial's server: greets with `你好欢迎你`, answers `frame + 好`, `q` quits.
    pub const TUTORIAL: Echo = Echo {
        greeting: Some("你好欢迎你"),
        suffix: "好",
        quit_on_q: true,
    };
    /// Echoes every frame byte for byte, no greeting.
    pub const MIRROR: Echo = Echo {
        greeting: None,
        suffix: "",
        quit_on_q: false,
    };
}

async fn serve_one<T: AsyncRead + AsyncWrite + Unpin>(io: T, echo: Echo) {
    let mut framed = FrameCodec::new().framed(io);
    if let Some(greeting) = echo.greeting {
        if framed
            .send(bytes::Bytes::copy_from_slice(greeting.as_bytes()))
            .await
            .is_err()
        {
            return;
        }
    }
    while let Some(Ok(frame)) = framed.next().await {
        if echo.quit_on_q && &frame[..] == b"q" {
            break;
        }
        let mut reply = BytesMut::with_capacity(frame.len() + echo.suffix.len());
        reply.extend_from_slice(&frame);
        reply.extend_from_slice(echo.suffix.as_bytes());
        // Flush lazily: only when no more input is already buffered, as a real server would.
        if framed.feed(reply.freeze()).await.is_err() {
            return;
        }
        if framed.read_buffer().is_empty() && SinkExt::<Bytes>::flush(&mut framed).await.is_err() {
            return;
        }
    }
    let _ = SinkExt::<Bytes>::flush(&mut framed).await;
}

/// Spawns an echo server on an ephemeral loopback port; returns its address.
pub async fn spawn_echo(echo: Echo) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_one(stream, echo));
        }
    });
    addr
}

/// Spawns an echo server on a Unix socket at `path`.
#[cfg(unix)]
pub fn spawn_echo_unix(path: &std::path::Path, echo: Echo) {
    let listener = tokio::net::UnixListener::bind(path).expect("bind unix socket");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_one(stream, echo));
        }
    });
}

/// A listener whose accepted connections are handed to `script`, for raw-peer tests.
pub async fn spawn_scripted<F, Fut>(script: F) -> SocketAddr
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        if let Ok((stream, _)) = listener.accept().await {
            script(stream).await;
        }
    });
    addr
}

/// Waits until `cond` holds, checking every 5 ms (bounded by the caller's [`within`]).
pub async fn wait_until(cond: impl Fn() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An ack-mode client to `addr` that grants `window` (`None`: the default) and never
/// reconnects, so a drop fails the test instead of being hidden by a resend.
pub async fn ack_client(addr: SocketAddr, window: Option<u32>) -> framewire_client::AckClient {
    let mut builder =
        framewire_client::Client::builder().reconnect(framewire_client::ReconnectPolicy::never());
    if let Some(w) = window {
        builder = builder.ack_window(w);
    }
    builder.connect_ack(addr).await.expect("ack-mode connect")
}

/// `n` short distinct messages `m00000`, `m00001`, ... in order.
pub fn msgs(n: usize) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(format!("m{i:05}"))).collect()
}

/// `n` distinct payloads of varied sizes (including empty), deterministic.
pub fn payloads(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            let len = match i % 7 {
                0 => 0,
                1 => 1,
                2 => 3,
                3 => 64,
                4 => 1000,
                5 => 5000,
                _ => 70_000,
            };
            let mut v = format!("msg-{i}-").into_bytes();
            v.resize(v.len() + len, (i % 251) as u8);
            Bytes::from(v)
        })
        .collect()
}

// ---------------------------------------------------------------- ack mode

use std::sync::{Arc, Mutex};

use framewire_codec::ack::AckFramed;

/// What an in-test ack-mode server received, per connection in accept order:
/// `(payload, redelivered)`.
pub type AckLog = Arc<Mutex<Vec<Vec<(Bytes, bool)>>>>;

/// How the in-test ack-mode server behaves.
#[derive(Debug, Clone, Copy)]
pub struct AckEcho {
    /// The window the server grants.
    pub window: u32,
    /// Answer every message with the same payload (otherwise only record it).
    pub echo: bool,
    /// Sent first on every connection.
    pub greeting: Option<&'static str>,
}

/// Spawns an ack-mode server on an ephemeral loopback port that records every delivery.
pub async fn spawn_ack_server(opts: AckEcho) -> (SocketAddr, AckLog) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let log: AckLog = Arc::default();
    let log2 = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let index = {
                let mut log = log2.lock().expect("log lock");
                log.push(Vec::new());
                log.len() - 1
            };
            let log = Arc::clone(&log2);
            tokio::spawn(async move {
                let mut conn = AckFramed::builder().window(opts.window).new_framed(stream);
                if let Some(g) = opts.greeting {
                    if conn.feed(Bytes::from_static(g.as_bytes())).await.is_err() {
                        return;
                    }
                }
                while let Some(Ok(d)) = conn.next().await {
                    log.lock().expect("log lock")[index].push((d.payload.clone(), d.redelivered));
                    if opts.echo && conn.feed(d.payload).await.is_err() {
                        return;
                    }
                }
                let _ = conn.close().await;
            });
        }
    });
    (addr, log)
}

/// A loopback TCP proxy that forwards to `target` and, for the first `drops` connections,
/// cuts both directions after a random number of client-to-server bytes (between `min` and
/// `max`). Returns its address and a counter of the connections it cut.
pub async fn spawn_flaky_proxy(
    target: SocketAddr,
    drops: usize,
    min: usize,
    max: usize,
    seed: u64,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let cut = Arc::new(AtomicUsize::new(0));
    let cut2 = Arc::clone(&cut);
    tokio::spawn(async move {
        let mut rng = seed | 1;
        let mut n = 0usize;
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let budget = if n < drops {
                Some(min + (rng as usize) % (max - min + 1))
            } else {
                None
            };
            n += 1;
            let cut = Arc::clone(&cut2);
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                });
                let mut buf = vec![0u8; 4096];
                let mut left = budget;
                loop {
                    let want = left.map_or(buf.len(), |l| l.min(buf.len()));
                    if want == 0 {
                        // Cut: drop both directions mid-stream.
                        cut.fetch_add(1, Ordering::SeqCst);
                        down.abort();
                        return;
                    }
                    match cr.read(&mut buf[..want]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            if sw.write_all(&buf[..k]).await.is_err() {
                                break;
                            }
                            if let Some(l) = left.as_mut() {
                                *l -= k;
                            }
                        }
                    }
                }
                let _ = sw.shutdown().await;
                let _ = down.await;
            });
        }
    });
    (addr, cut)
}

/// Checks the at-least-once, in-order contract over a server's log: reading the connections
/// in order, every message is either the next new one or a repeat of an earlier one, and
/// every repeat is flagged as a redelivery. Returns how many repeats there were.
pub fn check_in_order_at_least_once(log: &[Vec<(Bytes, bool)>], sent: &[Bytes]) -> usize {
    // Where each payload first appears in `sent`, so a repeat is checked in O(1) (the proof
    // test checks 100,000 messages).
    let mut first: std::collections::HashMap<&Bytes, usize> = std::collections::HashMap::new();
    for (i, s) in sent.iter().enumerate() {
        first.entry(s).or_insert(i);
    }
    let mut next = 0usize;
    let mut repeats = 0usize;
    for (c, conn) in log.iter().enumerate() {
        for (payload, redelivered) in conn {
            if next < sent.len() && payload == &sent[next] {
                next += 1;
            } else {
                let earlier = first.get(payload).is_some_and(|&i| i < next);
                assert!(
                    earlier,
                    "connection {c}: unexpected message {payload:?} (expected #{next})"
                );
                assert!(
                    *redelivered,
                    "connection {c}: repeat of {payload:?} not flagged as a redelivery"
                );
                repeats += 1;
            }
        }
    }
    assert_eq!(
        next,
        sent.len(),
        "only {next} of {} messages arrived",
        sent.len()
    );
    repeats
}

// ---------------------------------------------------------------- the Python interop program

/// Runs `examples/interop/echo_client.py` against `addr` and returns its output; panics (so
/// the test fails loudly) if `python3` is missing or the program reports a failure.
pub async fn run_python(addr: SocketAddr, mirror: bool) -> String {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/interop/echo_client.py");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(script).arg("--addr").arg(addr.to_string());
    if mirror {
        cmd.arg("--mirror");
    }
    cmd.kill_on_drop(true);
    let out = match cmd.output().await {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("python3 not found: the interop tests need it; install python3 ({e})")
        }
        Err(e) => panic!("could not run python3: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python interop failed with {}:\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// A real framewire server: `builder` bound to an ephemeral loopback port, serving `handler`
/// in a background task. Returns its address, its handle and the task (the shutdown report).
pub async fn serve_real<H: framewire_server::Handler<()>>(
    builder: framewire_server::ServerBuilder,
    handler: H,
) -> (
    SocketAddr,
    framewire_server::ServerHandle,
    tokio::task::JoinHandle<framewire_server::ShutdownReport>,
) {
    let server = builder.bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = server.local_addr().tcp().expect("a TCP address");
    let handle = server.handle();
    (addr, handle, tokio::spawn(server.serve(handler)))
}
