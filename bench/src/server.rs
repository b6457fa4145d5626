//! The in-binary servers of `loadgen serve`: the baseline (`Framed` + `LengthDelimitedCodec`),
//! `Framed` + `FrameCodec`, raw TCP, and the framewire server in plain and in ack mode, each as
//! echo or sink.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use framewire_codec::FrameCodec;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Decoder, Encoder, Framed, FramedRead, LengthDelimitedCodec};

use super::args::{ServerKind, ServerMode};

/// Read buffer of the raw echo server.
const RAW_BUF: usize = 64 * 1024;
/// Read buffer of the raw sink server: large reads, few syscalls (the physical limit).
const RAW_SINK_BUF: usize = 256 * 1024;
/// Pause after a failed `accept` (for example too many open files) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Accepts connections on `listener` forever, one task per connection running `kind` in
/// `mode`. A failing connection ends only its own task. The ack-mode server grants the
/// default window ([`DEFAULT_WINDOW`](super::args::DEFAULT_WINDOW)); see [`serve_with_window`].
///
/// # Errors
/// Never returns normally; errors of `accept` are retried after a short pause.
pub async fn serve(listener: TcpListener, kind: ServerKind, mode: ServerMode) -> io::Result<()> {
    serve_with_window(listener, kind, mode, super::args::DEFAULT_WINDOW).await
}

/// As [`serve`], with the window the ack-mode server (`framewire-ack`) grants each client
/// (ignored by the other servers).
///
/// # Errors
/// As [`serve`]; for the framewire servers, a listener the server cannot adopt.
pub async fn serve_with_window(
    listener: TcpListener,
    kind: ServerKind,
    mode: ServerMode,
    window: u32,
) -> io::Result<()> {
    match kind {
        ServerKind::Framewire => return framewire_serve(listener, mode, None, false).await,
        ServerKind::FramewireEach => return framewire_serve(listener, mode, None, true).await,
        ServerKind::FramewireAck => {
            return framewire_serve(listener, mode, Some(window), false).await
        }
        ServerKind::TokioUtil | ServerKind::Raw | ServerKind::Codec => {}
    }
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
        tokio::spawn(async move {
            // A connection's error (peer reset, bad frame) ends that connection only.
            let _ = handle(stream, kind, mode).await;
        });
    }
}

/// Serves one connection until the peer closes it or an error occurs.
///
/// # Errors
/// I/O errors and (for the framed servers) framing errors, as `io::Error`.
pub async fn handle(stream: TcpStream, kind: ServerKind, mode: ServerMode) -> io::Result<()> {
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
async fn framed_echo<C>(mut framed: Framed<TcpStream, C>) -> io::Result<()>
where
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

async fn framed_sink<C>(mut read: FramedRead<TcpStream, C>) -> io::Result<()>
where
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

async fn raw_echo(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; RAW_BUF];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

async fn raw_sink(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; RAW_SINK_BUF];
    while stream.read(&mut buf).await? != 0 {}
    Ok(())
}

/// Most connections the framewire server accepts here: above every count loadgen opens
/// (`MAX_CONNS` + the flood's extra connection), so the benchmark never hits the server's
/// default cap of 10,000.
const FRAMEWIRE_MAX_CONNECTIONS: usize = super::args::MAX_CONNS + 1_000;

/// The framewire server on `listener`, in ack mode with window `ack` if given: `echo` is the
/// mirror handler of `examples/echo_server.rs` (every decodable frame fed back, one flush per
/// batch), `sink` drops every frame. The handlers are the same in both modes: in ack mode
/// `recv` acknowledges what it returns and `feed` waits for room in the client's window.
async fn framewire_serve(
    listener: TcpListener,
    mode: ServerMode,
    ack: Option<u32>,
    frame_by_frame: bool,
) -> io::Result<()> {
    use framewire_server::{Connection, Server, ServerError};

    async fn sink(mut conn: Connection) -> Result<(), ServerError> {
        while conn.recv().await?.is_some() {}
        Ok(())
    }

    // The benchmarks open up to 15,000 connections from 8 loopback addresses and hold them
    // idle for a while: no per-IP cap here, and no idle timeout.
    let mut builder = Server::builder()
        .max_connections(FRAMEWIRE_MAX_CONNECTIONS)
        .max_connections_per_ip(None)
        .idle_timeout(None);
    if let Some(window) = ack {
        builder = builder.ack_mode(window);
    }
    let server = builder.listener(listener).map_err(to_io)?;
    match mode {
        ServerMode::Echo if frame_by_frame => {
            server.serve(framewire_examples::mirror_each::<()>).await
        }
        ServerMode::Echo => server.serve(framewire_examples::mirror::<()>).await,
        ServerMode::Sink => server.serve(sink).await,
    };
    Ok(())
}
