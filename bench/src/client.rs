//! Client implementations, each a small adapter behind [`ClientImpl`].
//!
//! Every mode is written once against [`FrameTx`] (send `count` copies of the connection's
//! payload, then flush) and [`FrameRx`] (wait for whole reply frames and say how many). Adding an
//! implementation (for example the framewire client) is one type implementing [`ClientImpl`]
//! (`open` a connection as a `FrameTx` + `FrameRx` pair) plus one arm in
//! [`ClientKind`](super::ClientKind) and [`modes::run`](super::modes::run).

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use framewire_codec::FrameCodec;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::codec::{Decoder, Encoder, FramedRead, FramedWrite, LengthDelimitedCodec};

/// The sending half of a client connection.
pub trait FrameTx: Send + 'static {
    /// Sends `count` frames carrying this connection's payload, then flushes.
    ///
    /// Cancellation safety: not cancellation safe (frames may be partly written).
    fn send(&mut self, count: usize) -> impl Future<Output = io::Result<()>> + Send;

    /// Flushes and shuts down the write direction (the server sees end of stream).
    fn finish(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// The receiving half of a client connection.
pub trait FrameRx: Send + 'static {
    /// Waits for at least one whole reply frame and returns how many arrived; `Ok(0)` means the
    /// server closed the connection.
    ///
    /// Cancellation safety: cancellation safe for the framed implementations; the raw one may
    /// lose the count of bytes read by a cancelled call.
    fn recv(&mut self) -> impl Future<Output = io::Result<usize>> + Send;
}

/// A client implementation: how a connection is opened as a sending and a receiving half.
pub trait ClientImpl: Send + Sync + 'static {
    /// The sending half.
    type Tx: FrameTx;
    /// The receiving half.
    type Rx: FrameRx;
    /// Name shown in reports.
    const NAME: &'static str;
    /// Opens a connection to `to.addr`, from `to.source` if given (implementations that cannot
    /// bind a source address may ignore it); every frame it sends carries `to.payload`.
    ///
    /// Implementations that wrap a `TcpStream` call [`Target::connect`] and split the stream.
    fn open(to: Target) -> impl Future<Output = io::Result<(Self::Tx, Self::Rx)>> + Send;
}

/// What [`ClientImpl::open`] connects to, and what every frame of the connection carries.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server.
    pub addr: SocketAddr,
    /// The source address to bind, if any.
    pub source: Option<Ipv4Addr>,
    /// The payload of every frame.
    pub payload: Bytes,
    /// The settings only some implementations use (the others ignore them).
    pub opts: ConnOpts,
}

impl Target {
    /// A TCP connection to `addr` from `source`, with `TCP_NODELAY` set (see [`connect`]).
    ///
    /// # Errors
    /// As [`connect`].
    pub async fn connect(&self) -> io::Result<TcpStream> {
        connect(self.addr, self.source).await
    }
}

/// Per-connection settings that only some client implementations use.
#[derive(Debug, Clone)]
pub struct ConnOpts {
    /// Ack mode (`framewire-ack`): the window the client grants the server.
    pub window: u32,
    /// The server answers every frame (echo), so [`FrameTx::finish`] of a client whose
    /// half-close cannot acknowledge later replies (`framewire-ack`) waits for every reply
    /// before closing.
    pub echo: bool,
    /// [`FramewireAckClient`]: pass the payload as clones of one reference-counted `Bytes`
    /// rather than as a `'static` one (see `--shared-payload`).
    pub shared_payload: bool,
    /// [`FramewireAckClient`]: one `feed` per message rather than `feed_all` per batch (see
    /// `--feed-each`).
    pub feed_each: bool,
    /// [`RawTlsClient`]: the TLS client configuration (see [`tls`](super::tls)).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ConnOpts {
    fn default() -> Self {
        ConnOpts {
            window: super::args::DEFAULT_WINDOW,
            echo: true,
            shared_payload: false,
            feed_each: false,
            tls: None,
        }
    }
}

/// Longest [`FramewireAckTx::finish`] waits for the last replies before closing anyway.
pub const ACK_FINISH_WAIT: Duration = Duration::from_secs(10);

/// Connects to `addr`, from `source` if given, with `TCP_NODELAY` set.
///
/// # Errors
/// Socket creation, bind or connect failures.
pub async fn connect(addr: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip.into(), 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The source address for connection `index`: `127.0.0.(1 + index % sources)` for IPv4 loopback
/// targets when `sources > 0`, so many connections do not exhaust one address's ephemeral ports;
/// `None` (kernel's choice) otherwise.
pub fn source_addr(target: SocketAddr, index: usize, sources: u8) -> Option<Ipv4Addr> {
    match target {
        SocketAddr::V4(v4) if v4.ip().is_loopback() && sources > 0 => {
            let host = 1 + index % usize::from(sources);
            Some(Ipv4Addr::new(127, 0, 0, u8::try_from(host).unwrap_or(1)))
        }
        _ => None,
    }
}

fn to_io<E: std::error::Error + Send + Sync + 'static>(e: E) -> io::Error {
    io::Error::other(e)
}

/// A codec adapter over tokio-util's `FramedWrite`/`FramedRead` on the two socket halves.
/// Generic so `LengthDelimitedCodec` and `FrameCodec` share it.
#[derive(Debug)]
pub struct FramedClient<C>(PhantomData<C>);

/// Sending half of [`FramedClient`]: frames are `feed`-ed and flushed once per `send` call
/// (`FramedWrite` also flushes by itself whenever 8 KiB are buffered).
#[derive(Debug)]
pub struct FramedTx<C> {
    write: FramedWrite<OwnedWriteHalf, C>,
    payload: Bytes,
}

/// Receiving half of [`FramedClient`]: one `recv` counts the first frame and every further
/// frame that can be decoded without waiting.
#[derive(Debug)]
pub struct FramedRx<C> {
    read: FramedRead<OwnedReadHalf, C>,
}

impl<C> FrameTx for FramedTx<C>
where
    C: Encoder<Bytes> + Send + 'static,
    C::Error: std::error::Error + Send + Sync + 'static,
{
    async fn send(&mut self, count: usize) -> io::Result<()> {
        for _ in 0..count {
            self.write.feed(self.payload.clone()).await.map_err(to_io)?;
        }
        self.write.flush().await.map_err(to_io)
    }

    async fn finish(&mut self) -> io::Result<()> {
        self.write.close().await.map_err(to_io)
    }
}

impl<C> FrameRx for FramedRx<C>
where
    C: Decoder + Send + 'static,
    C::Error: std::error::Error + Send + Sync + 'static,
{
    async fn recv(&mut self) -> io::Result<usize> {
        match self.read.next().await {
            Some(Ok(_frame)) => {}
            Some(Err(e)) => return Err(to_io(e)),
            None => return Ok(0),
        }
        count_ready(&mut self.read)
    }
}

/// Most frames one [`FrameRx::recv`] call of the framed receivers counts without waiting.
const MAX_READY_FRAMES: usize = 1024;

/// After one frame arrived: counts it and the frames that are already decodable too (up to
/// [`MAX_READY_FRAMES`]), so a pipelined sender refills in batches (one flush per batch) rather
/// than one flush per reply. `next` is cancellation safe, so polling it once without waiting
/// loses nothing; end of stream is reported by the next call.
fn count_ready<S, T, E>(stream: &mut S) -> io::Result<usize>
where
    S: futures::Stream<Item = Result<T, E>> + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut frames = 1;
    while frames < MAX_READY_FRAMES {
        match stream.next().now_or_never() {
            Some(Some(Ok(_frame))) => frames += 1,
            Some(Some(Err(e))) => return Err(to_io(e)),
            Some(None) | None => break,
        }
    }
    Ok(frames)
}

/// Builds a fresh codec for one connection.
pub trait NewCodec: Encoder<Bytes> + Decoder + Send + Sync + Sized + 'static {
    /// Name shown in reports.
    const NAME: &'static str;
    /// A codec with default settings.
    fn new_codec() -> Self;
}

impl NewCodec for LengthDelimitedCodec {
    const NAME: &'static str = "tokio-util";
    fn new_codec() -> Self {
        LengthDelimitedCodec::new()
    }
}

impl NewCodec for FrameCodec {
    const NAME: &'static str = "codec";
    fn new_codec() -> Self {
        FrameCodec::new()
    }
}

impl<C> ClientImpl for FramedClient<C>
where
    C: NewCodec,
    <C as Encoder<Bytes>>::Error: std::error::Error + Send + Sync + 'static,
    <C as Decoder>::Error: std::error::Error + Send + Sync + 'static,
{
    type Tx = FramedTx<C>;
    type Rx = FramedRx<C>;
    const NAME: &'static str = C::NAME;

    async fn open(to: Target) -> io::Result<(Self::Tx, Self::Rx)> {
        let (r, w) = to.connect().await?.into_split();
        Ok((
            FramedTx {
                write: FramedWrite::new(w, C::new_codec()),
                payload: to.payload,
            },
            FramedRx {
                read: FramedRead::new(r, C::new_codec()),
            },
        ))
    }
}

/// The baseline client: `Framed` halves with `LengthDelimitedCodec`.
pub type TokioUtilClient = FramedClient<LengthDelimitedCodec>;
/// `Framed` halves with framewire's `FrameCodec`.
pub type CodecClient = FramedClient<FrameCodec>;

/// The physical-limit client: frames are pre-built once, `send(n)` is one `write_all` of `n`
/// of them; replies are read as raw bytes and counted by length.
#[derive(Debug)]
pub struct RawClient;

/// The raw client over TLS ([`ConnOpts::tls`]): the same halves over `tokio::io::split` of a
/// rustls stream.
#[derive(Debug)]
pub struct RawTlsClient;

/// Sending half of [`RawClient`] and [`RawTlsClient`].
#[derive(Debug)]
pub struct RawTx<W> {
    write: W,
    /// One encoded frame.
    frame: Bytes,
    /// `frame` repeated; grown on demand to the largest batch asked for.
    batch: BytesMut,
}

/// Receiving half of [`RawClient`] and [`RawTlsClient`].
#[derive(Debug)]
pub struct RawRx<R> {
    read: R,
    frame_len: usize,
    /// Bytes of an unfinished frame already read.
    partial: usize,
    buf: Vec<u8>,
}

/// Read buffer of the raw receiver.
const RAW_READ_BUF: usize = 64 * 1024;

impl<W: AsyncWrite + Unpin + Send + 'static> FrameTx for RawTx<W> {
    async fn send(&mut self, count: usize) -> io::Result<()> {
        let need = self.frame.len().saturating_mul(count);
        while self.batch.len() < need {
            self.batch.extend_from_slice(&self.frame);
        }
        self.write.write_all(&self.batch[..need]).await?;
        // Nothing for TCP; TLS may hold the last record.
        self.write.flush().await
    }

    async fn finish(&mut self) -> io::Result<()> {
        self.write.shutdown().await
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> FrameRx for RawRx<R> {
    async fn recv(&mut self) -> io::Result<usize> {
        loop {
            let n = match self.read.read(&mut self.buf).await {
                Ok(n) => n,
                // A TLS server that closes without close_notify (the baseline drops its stream).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(0);
            }
            let total = self.partial + n;
            let frames = total / self.frame_len;
            self.partial = total % self.frame_len;
            if frames > 0 {
                return Ok(frames);
            }
        }
    }
}

/// The raw halves over `r` and `w`: every frame carries `payload`.
fn raw_halves<R, W>(r: R, w: W, payload: &[u8]) -> (RawTx<W>, RawRx<R>) {
    let mut frame = BytesMut::with_capacity(4 + payload.len());
    // Payloads are capped at 8 MiB by argument parsing, so the length always fits.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    let frame = frame.freeze();
    let frame_len = frame.len();
    (
        RawTx {
            write: w,
            frame,
            batch: BytesMut::new(),
        },
        RawRx {
            read: r,
            frame_len,
            partial: 0,
            buf: vec![0; RAW_READ_BUF],
        },
    )
}

impl ClientImpl for RawClient {
    type Tx = RawTx<OwnedWriteHalf>;
    type Rx = RawRx<OwnedReadHalf>;
    const NAME: &'static str = "raw";

    async fn open(to: Target) -> io::Result<(Self::Tx, Self::Rx)> {
        let (r, w) = to.connect().await?.into_split();
        Ok(raw_halves(r, w, &to.payload))
    }
}

/// The TLS stream of [`RawTlsClient`].
type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

impl ClientImpl for RawTlsClient {
    type Tx = RawTx<WriteHalf<ClientTls>>;
    type Rx = RawRx<ReadHalf<ClientTls>>;
    const NAME: &'static str = "raw-tls";

    async fn open(to: Target) -> io::Result<(Self::Tx, Self::Rx)> {
        let config = to.opts.tls.as_ref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the TLS client needs --tls DIR",
            )
        })?;
        let stream = super::tls::connect(config, to.connect().await?).await?;
        let (r, w) = tokio::io::split(stream);
        Ok(raw_halves(r, w, &to.payload))
    }
}

/// The framewire client: `framewire_client::Client`, split into its halves. It connects by
/// itself, so the source address is not chosen (all connections come from the kernel's pick).
#[derive(Debug)]
pub struct FramewireClient;

/// Sending half of [`FramewireClient`]: `feed` per frame, one `flush` per `send` call.
#[derive(Debug)]
pub struct FramewireTx {
    tx: Option<framewire_client::ClientSender>,
    payload: Bytes,
}

/// Receiving half of [`FramewireClient`]: one `recv` counts the first reply and every further
/// one already decodable.
#[derive(Debug)]
pub struct FramewireRx {
    rx: framewire_client::ClientReceiver,
}

impl FrameTx for FramewireTx {
    async fn send(&mut self, count: usize) -> io::Result<()> {
        let tx = self
            .tx
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "sending half closed"))?;
        for _ in 0..count {
            tx.feed(&self.payload[..]).await.map_err(to_io)?;
        }
        tx.flush().await.map_err(to_io)
    }

    async fn finish(&mut self) -> io::Result<()> {
        match self.tx.take() {
            Some(tx) => tx.close().await.map_err(to_io),
            None => Ok(()),
        }
    }
}

impl FrameRx for FramewireRx {
    async fn recv(&mut self) -> io::Result<usize> {
        if self.rx.recv().await.map_err(to_io)?.is_none() {
            return Ok(0);
        }
        count_ready(&mut self.rx)
    }
}

impl ClientImpl for FramewireClient {
    type Tx = FramewireTx;
    type Rx = FramewireRx;
    const NAME: &'static str = "framewire";

    async fn open(to: Target) -> io::Result<(Self::Tx, Self::Rx)> {
        let client = framewire_client::Client::connect(to.addr)
            .await
            .map_err(to_io)?;
        let (tx, rx) = client.split();
        Ok((
            FramewireTx {
                tx: Some(tx),
                payload: to.payload,
            },
            FramewireRx { rx },
        ))
    }
}

/// The framewire client in ack mode: `framewire_client::AckClient`, split into its halves.
/// Like [`FramewireClient`] it connects by itself (no source address). It never reconnects
/// ([`ReconnectPolicy::never`](framewire_client::ReconnectPolicy::never)): a dropped
/// connection fails the run instead of being hidden by a resend.
///
/// * [`FrameTx::send`]`(n)` hands `n` messages to the client (each returns once it fits in the
///   window the server granted) and drops their receipts at once. It does not wait for their
///   acknowledgements: the window is the backpressure, so memory is bounded by the window,
///   not by the batch, and the pipe does not drain between two batches (plain mode's `send`
///   does not wait for the server either). A `stream` run still counts only acknowledged
///   frames: it ends once [`FrameTx::finish`] saw every frame acknowledged and the server
///   closed.
/// * [`FrameTx::finish`] flushes (waits until every frame sent is acknowledged), then closes
///   the connection. After `AckSender::close` the
///   receiving half still gets the peer's messages but can no longer acknowledge them (ACKs
///   travel in the direction just closed), so an echo server would stall once its window of
///   unacknowledged replies is full; against an echo server ([`ConnOpts::echo`]) `finish`
///   therefore first waits, at most [`ACK_FINISH_WAIT`], until a reply to every frame sent
///   has been taken.
/// * The receiving half runs in a task of its own that takes (and so acknowledges) every
///   reply as it arrives and publishes a running count; [`FrameRx::recv`] waits for that count
///   to grow. Replies are taken even while the mode's task waits in `send` for acks: with the
///   echo server, whose replies wait for room in the window this client grants, a `pipeline`
///   deeper than that window would otherwise deadlock (the server waits for acks of its
///   replies, the client for acks of its requests).
#[derive(Debug)]
pub struct FramewireAckClient;

/// Sending half of [`FramewireAckClient`].
#[derive(Debug)]
pub struct FramewireAckTx {
    tx: Option<framewire_client::AckSender>,
    payload: AckPayload,
    /// One `feed` per message instead of `feed_all` (`--feed-each`).
    feed_each: bool,
    /// Frames accepted by the client.
    sent: u64,
    /// Against an echo server: the receiving task's count, which `finish` waits on.
    replies: Option<tokio::sync::watch::Receiver<AckRxState>>,
}

/// The payload [`FramewireAckTx`] sends, in the form `--shared-payload` chose.
#[derive(Debug)]
enum AckPayload {
    /// Each message a `Bytes::from_static` of it: no reference count (the default).
    Static(&'static [u8]),
    /// Each message a clone of this `Bytes`: counted.
    Shared(Bytes),
}

/// What the receiving task of [`FramewireAckClient`] publishes.
#[derive(Debug, Clone, Default)]
struct AckRxState {
    /// Replies taken so far.
    total: u64,
    /// Set once the receiver ended: `Ok` for a clean end, else the error's text.
    end: Option<Result<(), String>>,
}

/// Receiving half of [`FramewireAckClient`]: counts published by its receiving task.
#[derive(Debug)]
pub struct FramewireAckRx {
    state: tokio::sync::watch::Receiver<AckRxState>,
    /// Replies already returned by `recv`.
    seen: u64,
}

impl FrameTx for FramewireAckTx {
    async fn send(&mut self, count: usize) -> io::Result<()> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "sending half closed"))?;
        // No receipts: `finish` waits for every acknowledgement (`flush`), and the window
        // holds back `feed_all` meanwhile.
        if self.feed_each {
            for _ in 0..count {
                match &self.payload {
                    AckPayload::Static(p) => tx.feed(*p).await,
                    AckPayload::Shared(p) => tx.feed(p.clone()).await,
                }
                .map_err(to_io)?;
                self.sent += 1;
            }
            return Ok(());
        }
        self.sent += match &self.payload {
            AckPayload::Static(p) => tx.feed_all(std::iter::repeat_n(*p, count)).await,
            AckPayload::Shared(p) => tx.feed_all(std::iter::repeat_n(p.clone(), count)).await,
        }
        .map_err(to_io)?;
        Ok(())
    }

    async fn finish(&mut self) -> io::Result<()> {
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        tx.flush().await.map_err(to_io)?;
        if let Some(replies) = &mut self.replies {
            let sent = self.sent;
            // Missing replies are the caller's to report (it counts them); close either way.
            let _ = tokio::time::timeout(
                ACK_FINISH_WAIT,
                replies.wait_for(|s| s.total >= sent || s.end.is_some()),
            )
            .await;
        }
        tx.close().await.map_err(to_io)
    }
}

impl FrameRx for FramewireAckRx {
    /// Cancellation safe: the count is taken only when it is returned.
    async fn recv(&mut self) -> io::Result<usize> {
        loop {
            let (total, end) = {
                let s = self.state.borrow_and_update();
                (s.total, s.end.clone())
            };
            if total > self.seen {
                let n = total - self.seen;
                self.seen = total;
                return Ok(usize::try_from(n).unwrap_or(usize::MAX));
            }
            match end {
                Some(Ok(())) => return Ok(0),
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => {}
            }
            if self.state.changed().await.is_err() {
                // The task ended without a final state (it was aborted): report what it left.
                let total = self.state.borrow().total;
                if total > self.seen {
                    let n = total - self.seen;
                    self.seen = total;
                    return Ok(usize::try_from(n).unwrap_or(usize::MAX));
                }
                return Err(io::Error::other(
                    "the receiving task of the ack client ended",
                ));
            }
        }
    }
}

/// Takes every message from `rx` and publishes the running count, until the client ends or
/// every [`FramewireAckRx`] is gone.
async fn ack_receive(
    mut rx: framewire_client::AckReceiver,
    state: tokio::sync::watch::Sender<AckRxState>,
) {
    let mut total = 0u64;
    let end = loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            () = state.closed() => return,
        };
        match first {
            Ok(Some(_delivery)) => {}
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.to_string()),
        }
        // `recv` is cancellation safe, so `count_ready` loses nothing.
        match count_ready(&mut rx) {
            Ok(n) => total += n as u64,
            Err(e) => break Err(e.to_string()),
        }
        state.send_modify(|s| s.total = total);
    };
    state.send_modify(|s| {
        s.total = total;
        s.end = Some(end);
    });
}

/// `payload` as a `'static` slice, which becomes a [`Bytes`] that clones and drops without a
/// reference count: the ack-mode client keeps every message until it is acknowledged, and a
/// counted `Bytes` would cost two atomic operations per message that the plain clients, which
/// borrow one payload, do not pay. Leaked once per distinct payload of the process (one per
/// run).
fn static_payload(payload: &Bytes) -> &'static [u8] {
    static LEAKED: std::sync::Mutex<Vec<&'static [u8]>> = std::sync::Mutex::new(Vec::new());
    let mut leaked = LEAKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let kept = match leaked.iter().find(|p| **p == &payload[..]) {
        Some(p) => *p,
        None => {
            let p: &'static [u8] = Box::leak(payload.to_vec().into_boxed_slice());
            leaked.push(p);
            p
        }
    };
    kept
}

impl ClientImpl for FramewireAckClient {
    type Tx = FramewireAckTx;
    type Rx = FramewireAckRx;
    const NAME: &'static str = "framewire-ack";

    async fn open(to: Target) -> io::Result<(Self::Tx, Self::Rx)> {
        let client = framewire_client::Client::builder()
            .ack_window(to.opts.window)
            .reconnect(framewire_client::ReconnectPolicy::never())
            .connect_ack(to.addr)
            .await
            .map_err(to_io)?;
        let (tx, rx) = client.split();
        let (state_tx, state_rx) = tokio::sync::watch::channel(AckRxState::default());
        tokio::spawn(ack_receive(rx, state_tx));
        Ok((
            FramewireAckTx {
                tx: Some(tx),
                payload: if to.opts.shared_payload {
                    AckPayload::Shared(to.payload)
                } else {
                    AckPayload::Static(static_payload(&to.payload))
                },
                feed_each: to.opts.feed_each,
                sent: 0,
                replies: to.opts.echo.then(|| state_rx.clone()),
            },
            FramewireAckRx {
                state: state_rx,
                seen: 0,
            },
        ))
    }
}
