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
        if framed.send(greeting).await.is_err() {
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
