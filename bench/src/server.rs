//! The in-binary servers of `loadgen serve` and `compare serve`: the baseline (`Framed` +
//! `LengthDelimitedCodec`), `Framed` + `FrameCodec`, raw TCP, and the framewire server in plain
//! and in ack mode, each as echo or sink, over TCP or (given a rustls configuration) TLS.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use framewire_codec::FrameCodec;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::codec::{Decoder, Encoder, Framed, FramedRead, LengthDelimitedCodec};

use super::args::{ServerKind, ServerMode};

/// Read buffer of the raw echo server.
const RAW_BUF: usize = 64 * 1024;
/// Read buffer of the raw sink server: large reads, few syscalls (the physical limit).
const RAW_SINK_BUF: usize = 256 * 1024;
/// Pause after a failed `accept` (for example too many open files) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// One server: its kind and mode, and the settings only some kinds use.
#[derive(Debug, Clone)]
pub struct ServerSetup {
    /// The implementation.
    pub kind: ServerKind,
    /// Echo or sink.
    pub mode: ServerMode,
    /// `framewire-ack`: the window granted to each client.
    pub window: u32,
    /// Serve TLS with this configuration (every kind: the TLS handshake comes first, then the
    /// kind's handler runs over the TLS stream; the framewire server uses its own
    /// `ServerBuilder::tls`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Framewire kinds: an idle timeout armed on every connection (none by default).
    pub idle_timeout: Option<Duration>,
}

impl ServerSetup {
    /// `kind` in `mode`, over TCP, with the default window and no idle timeout.
    pub fn new(kind: ServerKind, mode: ServerMode) -> Self {
        ServerSetup {
            kind,
            mode,
            window: super::args::DEFAULT_WINDOW,
            tls: None,
            idle_timeout: None,
        }
    }
}

/// Accepts connections on `listener` forever, one task per connection running `kind` in
/// `mode`. A failing connection ends only its own task. The ack-mode server grants the
/// default window ([`DEFAULT_WINDOW`](super::args::DEFAULT_WINDOW)); see [`serve_setup`].
///
/// # Errors
/// Never returns normally; errors of `accept` are retried after a short pause.
pub async fn serve(listener: TcpListener, kind: ServerKind, mode: ServerMode) -> io::Result<()> {
    serve_setup(listener, ServerSetup::new(kind, mode)).await
}

/// As [`serve`], with the window the ack-mode server (`framewire-ack`) grants each client
/// (ignored by the other servers).
///
/// # Errors
/// As [`serve_setup`].
pub async fn serve_with_window(
    listener: TcpListener,
    kind: ServerKind,
    mode: ServerMode,
    window: u32,
) -> io::Result<()> {
    let mut setup = ServerSetup::new(kind, mode);
    setup.window = window;
    serve_setup(listener, setup).await
}

/// Serves `setup` on `listener` until the task is dropped.
///
/// # Errors
/// For the framewire servers, a listener the server cannot adopt; the others never return
/// (errors of `accept` are retried after a short pause).
pub async fn serve_setup(listener: TcpListener, setup: ServerSetup) -> io::Result<()> {
    let ServerSetup {
        kind, mode, tls, ..
    } = setup.clone();
    if matches!(
        kind,
        ServerKind::Framewire | ServerKind::FramewireEach | ServerKind::FramewireAck
    ) {
        return framewire_serve(listener, setup).await;
    }
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Best effort: a socket that cannot take the option still works.
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // A connection's error (peer reset, bad frame, failed handshake) ends that
            // connection only.
            let _ = match acceptor {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => handle(tls, kind, mode).await,
                    Err(e) => Err(e),
                },
                None => handle(stream, kind, mode).await,
            };
        });
    }
}

/// Serves one connection until the peer closes it or an error occurs.
///
/// # Errors
/// I/O errors and (for the framed servers) framing errors, as `io::Error`.
pub async fn handle<S>(stream: S, kind: ServerKind, mode: ServerMode) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match (kind, mode) {
        (ServerKind::Raw, ServerMode::Echo) => raw_echo(stream).await,
        (ServerKind::Raw, ServerMode::Sink) => raw_sink(stream).await,
        (ServerKind::TokioUtil, ServerMode::Echo) => {
            framed_echo(Framed::new(stream, LengthDelimitedCodec::new())).await
        }
        (ServerKind::TokioUtil, ServerMode::Sink) => {
            framed_sink(FramedRead::new(stream, LengthDelimitedCodec::new())).await
        }
        (ServerKind::Codec, ServerMode::Echo) => {
            framed_echo(Framed::new(stream, FrameCodec::new())).await
        }
        (ServerKind::Codec, ServerMode::Sink) => {
            framed_sink(FramedRead::new(stream, FrameCodec::new())).await
        }
        // The framewire server runs its own accept loop, so it serves a listener (see `serve`),
        // never a single stream.
        (ServerKind::Framewire | ServerKind::FramewireEach | ServerKind::FramewireAck, _) => {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the framewire server serves a listener, not a single stream",
            ))
        }
    }
}

fn to_io<E: std::error::Error + Send + Sync + 'static>(e: E) -> io::Error {
    io::Error::other(e)
}

/// Echo over one `Framed`: every frame already decodable is fed back, then one flush (the
/// batching of `SinkExt::send_all`), so pipelined clients are not answered one syscall per frame.
async fn framed_echo<S, C>(mut framed: Framed<S, C>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: Decoder + Encoder<Bytes>,
    <C as Decoder>::Item: Into<Bytes>,
    <C as Decoder>::Error: std::error::Error + Send + Sync + 'static,
    <C as Encoder<Bytes>>::Error: std::error::Error + Send + Sync + 'static,
{
    while let Some(frame) = framed.next().await {
        framed
            .feed(frame.map_err(to_io)?.into())
            .await
            .map_err(to_io)?;
        // `next` is cancellation safe, so polling it once without waiting loses nothing.
        while let Some(Some(frame)) = framed.next().now_or_never() {
            framed
                .feed(frame.map_err(to_io)?.into())
                .await
                .map_err(to_io)?;
        }
        framed.flush().await.map_err(to_io)?;
    }
    Ok(())
}

async fn framed_sink<S, C>(mut read: FramedRead<S, C>) -> io::Result<()>
where
    S: AsyncRead + Unpin,
    C: Decoder,
    C::Error: std::error::Error + Send + Sync + 'static,
{
    let mut frames = 0u64;
    while let Some(frame) = read.next().await {
        frame.map_err(to_io)?;
        frames += 1;
    }
    std::hint::black_box(frames);
    Ok(())
}

async fn raw_echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    let mut buf = vec![0u8; RAW_BUF];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

async fn raw_sink<S: AsyncRead + Unpin>(mut stream: S) -> io::Result<()> {
    let mut buf = vec![0u8; RAW_SINK_BUF];
    while stream.read(&mut buf).await? != 0 {}
    Ok(())
}

/// Most connections the framewire server accepts here: above every count loadgen opens
/// (`MAX_CONNS` + the flood's extra connection), so the benchmark never hits the server's
/// default cap of 10,000.
const FRAMEWIRE_MAX_CONNECTIONS: usize = super::args::MAX_CONNS + 1_000;

/// The framewire server on `listener` as `setup` says (ack mode with `setup.window` for
/// `framewire-ack`): `echo` is the mirror handler of `examples/echo_server.rs` (every decodable
/// frame fed back, one flush per batch; `framewire-each` takes and feeds frame by frame),
/// `sink` drops every frame. The handlers are the same in both modes: in ack mode `recv`
/// acknowledges what it returns and `feed` waits for room in the client's window.
async fn framewire_serve(listener: TcpListener, setup: ServerSetup) -> io::Result<()> {
    use framewire_server::{Connection, Server, ServerError};

    async fn sink(mut conn: Connection) -> Result<(), ServerError> {
        while conn.recv().await?.is_some() {}
        Ok(())
    }

    // The benchmarks open up to 15,000 connections from 8 loopback addresses and hold them
    // idle for a while: no per-IP cap here, and no idle timeout unless asked for.
    let mut builder = Server::builder()
        .max_connections(FRAMEWIRE_MAX_CONNECTIONS)
        .max_connections_per_ip(None)
        .idle_timeout(setup.idle_timeout);
    if setup.kind == ServerKind::FramewireAck {
        builder = builder.ack_mode(setup.window);
    }
    if let Some(config) = setup.tls {
        builder = builder.tls(config);
    }
    let server = builder.listener(listener).map_err(to_io)?;
    match setup.mode {
        ServerMode::Echo if setup.kind == ServerKind::FramewireEach => {
            server.serve(framewire_examples::mirror_each::<()>).await
        }
        ServerMode::Echo => server.serve(framewire_examples::mirror::<()>).await,
        ServerMode::Sink => server.serve(sink).await,
    };
    Ok(())
}
