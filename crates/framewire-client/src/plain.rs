//! Plain mode: frames go out and come in, with no acknowledgements.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use framewire_codec::ack::{FrameKind, HELLO_LEN, MAGIC};
use framewire_codec::{FrameCodec, FrameCodecBuilder, FrameError, FrameReader};
use futures_util::{Stream, StreamExt};

use crate::transport::{ByteStream, ReadHalf};
use crate::writer::{FrameWriter, WriteError};
use crate::{ClientBuilder, ClientError, Endpoint, InFlight, IntoEndpoints};

/// How many payload bytes of late frames [`Client::close`] keeps at most (16 MiB, twice the
/// default maximum frame length), plus the one frame that crosses it.
///
/// While closing, the client reads the replies still on their way so that they are not lost;
/// a peer that keeps streaming until the close timeout would otherwise make it buffer
/// everything that arrives in that time. Once this much has arrived, `close` stops reading and
/// returns what it has; the rest is discarded unread with the connection.
pub const CLOSE_MAX_LATE_BYTES: usize = 16 * 1024 * 1024;

/// Traffic counters shared by the two halves of a connection.
#[derive(Debug, Default)]
struct Counters {
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    frames_received: AtomicU64,
    /// `frames_sent` when the last frame was received.
    sent_at_last_reply: AtomicU64,
    /// `bytes_sent` when the last frame was received.
    bytes_at_last_reply: AtomicU64,
}

/// Adds `n` to a counter that only one half of the connection writes: a load and a store,
/// without the locked read-modify-write of `fetch_add` on every frame.
#[inline]
fn add(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).saturating_add(n),
        Ordering::Relaxed,
    );
}

impl Counters {
    /// Written by the sending half only.
    #[inline]
    fn sent(&self, bytes: usize) {
        add(&self.frames_sent, 1);
        add(&self.bytes_sent, u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// Written by the receiving half only.
    #[inline]
    fn received(&self) {
        add(&self.frames_received, 1);
        self.sent_at_last_reply
            .store(self.frames_sent.load(Ordering::Relaxed), Ordering::Relaxed);
        self.bytes_at_last_reply
            .store(self.bytes_sent.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn snapshot(&self) -> InFlight {
        let frames_sent = self.frames_sent.load(Ordering::Relaxed);
        let bytes_sent = self.bytes_sent.load(Ordering::Relaxed);
        InFlight {
            frames_sent,
            bytes_sent,
            frames_received: self.frames_received.load(Ordering::Relaxed),
            sent_since_last_reply: frames_sent
                .saturating_sub(self.sent_at_last_reply.load(Ordering::Relaxed)),
            bytes_since_last_reply: bytes_sent
                .saturating_sub(self.bytes_at_last_reply.load(Ordering::Relaxed)),
        }
    }

    /// Maps a write-path error to the client error (see [`Counters::error`]).
    fn write_error(&self, err: WriteError) -> ClientError {
        match err {
            WriteError::Frame(source) => self.error(source),
            WriteError::Io(source) => self.error(FrameError::Io(source)),
        }
    }

    /// Maps a codec error to the client error: I/O and truncation end the connection and say
    /// what was in flight; an oversized outgoing frame is the caller's mistake and changes
    /// nothing.
    fn error(&self, source: FrameError) -> ClientError {
        match source {
            FrameError::OutgoingTooLong { .. } => ClientError::Frame(source),
            source => ClientError::ConnectionLost {
                in_flight: self.snapshot(),
                source,
            },
        }
    }
}

/// A plain-mode framewire connection: send and receive length-prefixed frames.
///
/// Every [`send`](Client::send) writes one frame (`[u32 length][payload]`) and every
/// [`recv`](Client::recv) returns one whole frame's payload, however TCP coalesced or split
/// the bytes. There are no acknowledgements in plain mode: a successful `send` means the frame
/// reached the operating system, not the peer. When the connection drops, the error says how
/// many frames were sent since the last one received ([`InFlight`]); for delivery receipts
/// use ack mode.
///
/// # Examples
///
/// ```no_run
/// use framewire_client::Client;
///
/// # async fn run() -> Result<(), framewire_client::ClientError> {
/// let mut client = Client::connect("127.0.0.1:9999").await?;
/// let greeting = client.recv().await?;
/// let reply = client.call("hello").await?;
/// println!("{greeting:?} {reply:?}");
/// client.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Client {
    tx: ClientSender,
    rx: ClientReceiver,
    endpoint: Endpoint,
    close_timeout: Duration,
    close_linger: Option<Duration>,
    /// Set while a `call` waits for its reply; still set afterwards only if that call was
    /// cancelled, which makes later calls and receives fail ([`ClientError::CallAbandoned`]).
    call_open: bool,
}

impl Client {
    /// Connects with the default settings (see [`ClientBuilder`]).
    ///
    /// `endpoints` is a `"host:port"` string, `"unix:/path"`, a `SocketAddr` or an
    /// [`Endpoint`], or a list of them tried in order (see [`ClientBuilder::connect`]).
    ///
    /// # Errors
    ///
    /// As [`ClientBuilder::connect`].
    pub async fn connect(endpoints: impl IntoEndpoints) -> Result<Client, ClientError> {
        ClientBuilder::new().connect(endpoints).await
    }

    /// A builder for the connection settings.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    pub(crate) fn from_transport(
        transport: ByteStream,
        codec: &FrameCodecBuilder,
        endpoint: Endpoint,
        (close_timeout, close_linger): (Duration, Option<Duration>),
        write_buffer_limit: usize,
    ) -> Client {
        let (read, write) = transport.into_split();
        let counters = Arc::new(Counters::default());
        Client {
            tx: ClientSender {
                write: FrameWriter::new(write, codec.build(), write_buffer_limit),
                counters: Arc::clone(&counters),
            },
            rx: ClientReceiver {
                io: read,
                codec: codec.build(),
                input: FrameReader::new(),
                counters,
                first: true,
                ack_peer: None,
                eof: false,
                done: false,
            },
            endpoint,
            close_timeout,
            close_linger,
            call_open: false,
        }
    }

    /// Where this client is connected.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends one frame and flushes it to the operating system.
    ///
    /// # Errors
    ///
    /// [`ClientError::Frame`] if the payload is longer than the maximum frame length (nothing
    /// was sent, the connection is intact); [`ClientError::ConnectionLost`] if writing failed.
    ///
    /// # Cancellation safety
    ///
    /// Not cancellation safe: if cancelled, the frame may be buffered but not yet flushed; a
    /// later `send` or [`flush`](Client::flush) writes it.
    pub async fn send(&mut self, payload: impl AsRef<[u8]>) -> Result<(), ClientError> {
        self.tx.send(payload).await
    }

    /// Buffers one frame without flushing. Frames wait for [`flush`](Client::flush) or
    /// [`send`](Client::send), except that a long batch is written as it builds up: once
    /// 16 KiB are buffered, then at twice as much, and so on, whatever the socket takes at that
    /// moment; `feed` waits for the socket only when
    /// [`ClientBuilder::write_buffer_limit`] bytes (64 KiB by default) are buffered. Use it to
    /// send a batch with few system calls.
    ///
    /// A payload of at least [`VECTORED_WRITE_MIN`](crate::VECTORED_WRITE_MIN) bytes is not
    /// copied first: it is written at once, behind what was buffered, with one vectored write,
    /// as far as the socket takes it without waiting; only the rest is buffered.
    ///
    /// # Errors
    ///
    /// As [`send`](Client::send).
    ///
    /// # Cancellation safety
    ///
    /// If dropped before completing, the frame was not buffered (the only wait is for a full
    /// buffer to be written before the frame is touched).
    pub async fn feed(&mut self, payload: impl AsRef<[u8]>) -> Result<(), ClientError> {
        self.tx.feed(payload).await
    }

    /// Buffers one frame held in [`Bytes`] without flushing, as [`feed`](Client::feed), but a
    /// payload of at least [`ZERO_COPY_MIN`](crate::ZERO_COPY_MIN) bytes (1 KiB) is not
    /// copied: it is queued by reference and written from its own memory with vectored
    /// writes. For forwarding frames received elsewhere.
    ///
    /// # Errors
    ///
    /// As [`send`](Client::send).
    ///
    /// # Cancellation safety
    ///
    /// As [`feed`](Client::feed).
    pub async fn feed_bytes(&mut self, payload: Bytes) -> Result<(), ClientError> {
        self.tx.feed_bytes(payload).await
    }

    /// Writes every buffered frame to the operating system.
    ///
    /// # Errors
    ///
    /// [`ClientError::ConnectionLost`] if writing failed.
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: what is not written yet stays buffered for the next flush.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.tx.flush().await
    }

    /// Receives the next frame. `Ok(None)` means the peer closed the connection cleanly
    /// between two frames.
    ///
    /// # Errors
    ///
    /// [`ClientError::ConnectionLost`] if the connection failed or closed inside a frame, or
    /// the peer announced a frame over the maximum length.
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: a frame is either returned whole or stays buffered for the next call.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, ClientError> {
        self.check_no_abandoned_call()?;
        self.rx.recv().await
    }

    fn check_no_abandoned_call(&self) -> Result<(), ClientError> {
        if self.call_open {
            return Err(ClientError::CallAbandoned);
        }
        Ok(())
    }

    /// Sends one frame and waits for the next incoming one (request/response).
    ///
    /// # Errors
    ///
    /// As [`send`](Client::send) and [`recv`](Client::recv), and
    /// [`ClientError::ClosedByPeer`] if the peer closes before replying.
    ///
    /// # Cancellation safety
    ///
    /// Not cancellation safe, but never wrong: a cancelled call's reply could arrive at the next
    /// `recv` or `call`, so after a cancelled call (a timeout wrapped around it, a `select!`
    /// that took another branch) every later `call` and `recv` fails with
    /// [`ClientError::CallAbandoned`] instead of returning it. For a deadline, use
    /// [`call_timeout`](Client::call_timeout).
    pub async fn call(&mut self, payload: impl AsRef<[u8]>) -> Result<Bytes, ClientError> {
        self.check_no_abandoned_call()?;
        self.call_open = true;
        let result = self.send_and_wait(payload.as_ref()).await;
        self.call_open = false;
        result
    }

    async fn send_and_wait(&mut self, payload: &[u8]) -> Result<Bytes, ClientError> {
        self.tx.send(payload).await?;
        match self.rx.recv().await? {
            Some(reply) => Ok(reply),
            None => Err(ClientError::ClosedByPeer {
                in_flight: self.rx.in_flight(),
            }),
        }
    }

    /// [`call`](Client::call) with a deadline: sends one frame and waits at most `timeout`
    /// for the next incoming one.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use framewire_client::{Client, ClientError};
    ///
    /// # async fn run() -> Result<(), ClientError> {
    /// let mut client = Client::connect("127.0.0.1:9999").await?;
    /// match client.call_timeout("ping", Duration::from_secs(2)).await {
    ///     Ok(reply) => println!("{reply:?}"),
    ///     // The late reply could be taken for the next request's: this client is done.
    ///     Err(ClientError::CallTimeout { .. }) => client = Client::connect("127.0.0.1:9999").await?,
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`call`](Client::call), and [`ClientError::CallTimeout`] when `timeout` passes
    /// first. After a timeout the reply may still arrive, so every later `call` and `recv`
    /// on this client fails with [`ClientError::CallAbandoned`]: connect again.
    pub async fn call_timeout(
        &mut self,
        payload: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<Bytes, ClientError> {
        match tokio::time::timeout(timeout, self.call(payload)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::CallTimeout { timeout }),
        }
    }

    /// The traffic counters so far (see [`InFlight`]).
    pub fn in_flight(&self) -> InFlight {
        self.rx.in_flight()
    }

    /// Splits into a sending half and a receiving half that can be used from different tasks.
    /// Both halves share the traffic counters. Frames already received but not yet returned
    /// stay with the receiving half.
    pub fn split(self) -> (ClientSender, ClientReceiver) {
        (self.tx, self.rx)
    }

    /// Closes gracefully: flushes every buffered frame, tells the peer no more frames are
    /// coming (TCP FIN / socket shutdown), then keeps reading until the peer closes too, or
    /// until nothing has arrived for the close linger ([`ClientBuilder::close_linger`], 1 s by
    /// default): a peer that keeps its side open after the FIN costs the linger, not the whole
    /// close timeout. One deadline, the close timeout ([`ClientBuilder::close_timeout`]),
    /// covers all of it, so a peer that stops reading or keeps sending cannot hold the caller
    /// longer. The frames that arrived meanwhile (replies that were still on their way) are
    /// returned; the connection is then dropped (the peer sees end of stream, or a reset if it
    /// sends more).
    ///
    /// At most [`CLOSE_MAX_LATE_BYTES`] of late frames are kept (plus the one frame that
    /// crosses the cap): once that much has arrived, reading stops, the frames received so
    /// far are returned and the connection is dropped, so whatever else the peer sends is
    /// discarded unread, as when the timeout expires during the drain.
    ///
    /// # Errors
    ///
    /// [`ClientError::CloseTimeout`] if flushing and shutting down did not finish within the
    /// close timeout (the peer is not reading; some buffered frames may not have been written);
    /// [`ClientError::ConnectionLost`] if flushing failed or the connection failed while
    /// draining. If the peer does not close within the timeout after the shutdown, the frames
    /// received so far are returned and the connection is dropped.
    pub async fn close(self) -> Result<Vec<Bytes>, ClientError> {
        let Client {
            tx,
            mut rx,
            close_timeout,
            close_linger,
            ..
        } = self;
        // A close timeout too large for `Instant` (`Duration::MAX`) means "wait as long as it
        // takes": about 30 years, as tokio's own `sleep` does, instead of an overflow panic.
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(close_timeout)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400));
        let counters = Arc::clone(&tx.counters);
        match tokio::time::timeout_at(deadline, tx.close()).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(ClientError::CloseTimeout {
                    timeout: close_timeout,
                    in_flight: counters.snapshot(),
                })
            }
        }
        let mut late = Vec::new();
        let mut late_bytes = 0usize;
        let drain = async {
            while late_bytes < CLOSE_MAX_LATE_BYTES {
                let next = match close_linger {
                    Some(linger) => match tokio::time::timeout(linger, rx.recv()).await {
                        Ok(next) => next?,
                        // Quiet for the linger: the peer keeps its side open; stop here.
                        Err(_) => break,
                    },
                    None => rx.recv().await?,
                };
                let Some(frame) = next else {
                    break;
                };
                late_bytes = late_bytes.saturating_add(frame.len());
                late.push(frame);
            }
            Ok::<(), ClientError>(())
        };
        match tokio::time::timeout_at(deadline, drain).await {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) | Err(_) => Ok(late),
        }
    }
}

/// The sending half of a [`Client`], from [`Client::split`].
#[derive(Debug)]
pub struct ClientSender {
    write: FrameWriter,
    counters: Arc<Counters>,
}

impl ClientSender {
    /// Sends one frame and flushes it. See [`Client::send`].
    ///
    /// # Errors
    ///
    /// As [`Client::send`].
    ///
    /// # Cancellation safety
    ///
    /// Not cancellation safe, as [`Client::send`].
    pub async fn send(&mut self, payload: impl AsRef<[u8]>) -> Result<(), ClientError> {
        self.feed(payload).await?;
        self.flush().await
    }

    /// Buffers one frame without flushing. See [`Client::feed`].
    ///
    /// # Errors
    ///
    /// As [`Client::send`].
    ///
    /// # Cancellation safety
    ///
    /// If dropped before completing, the frame was not buffered (as [`Client::feed`]).
    pub async fn feed(&mut self, payload: impl AsRef<[u8]>) -> Result<(), ClientError> {
        let payload = payload.as_ref();
        self.write
            .feed(payload)
            .await
            .map_err(|e| self.counters.write_error(e))?;
        self.counters.sent(payload.len());
        Ok(())
    }

    /// Buffers one frame held in [`Bytes`], without copying it from
    /// [`ZERO_COPY_MIN`](crate::ZERO_COPY_MIN) bytes on. See [`Client::feed_bytes`].
    ///
    /// # Errors
    ///
    /// As [`Client::send`].
    ///
    /// # Cancellation safety
    ///
    /// As [`Client::feed`].
    pub async fn feed_bytes(&mut self, payload: Bytes) -> Result<(), ClientError> {
        let len = payload.len();
        self.write
            .feed_bytes(payload)
            .await
            .map_err(|e| self.counters.write_error(e))?;
        self.counters.sent(len);
        Ok(())
    }

    /// Writes every buffered frame. See [`Client::flush`].
    ///
    /// # Errors
    ///
    /// [`ClientError::ConnectionLost`] if writing failed.
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: what is not written yet stays buffered for the next flush.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.write
            .flush()
            .await
            .map_err(|e| self.counters.write_error(WriteError::Io(e)))
    }

    /// The traffic counters so far (shared with the receiving half).
    pub fn in_flight(&self) -> InFlight {
        self.counters.snapshot()
    }

    /// Flushes and shuts down the sending direction (the peer reads end of stream). The
    /// receiving half keeps working until the peer closes.
    ///
    /// # Errors
    ///
    /// [`ClientError::ConnectionLost`] if flushing or shutting down failed.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.write
            .close()
            .await
            .map_err(|e| self.counters.write_error(WriteError::Io(e)))
    }
}

/// The receiving half of a [`Client`], from [`Client::split`].
///
/// Also a `Stream` of `Result<Bytes, ClientError>` that ends when the peer closes cleanly.
///
/// It reads through the codec's [`FrameReader`], the read path the server's connections use:
/// reads grow while the peer keeps them full, and between frames the receiver waits for
/// bytes without holding a read buffer (over TCP and Unix sockets; over TLS it releases the
/// buffer whenever a read finds nothing between frames).
#[derive(Debug)]
pub struct ClientReceiver {
    io: ReadHalf,
    codec: FrameCodec,
    input: FrameReader,
    counters: Arc<Counters>,
    /// No frame received yet: the first one is checked for an ack-mode HELLO.
    first: bool,
    /// The ack-mode version of the HELLO the peer sent first, if it did: every receive fails.
    ack_peer: Option<u8>,
    /// The peer closed its side: what is buffered is decoded, then the stream ends.
    eof: bool,
    /// The stream ended (cleanly or with an error): every later poll returns `None`, as
    /// tokio-util's `FramedRead` does after an error.
    done: bool,
}

impl ClientReceiver {
    /// Receives the next frame; `Ok(None)` when the peer closed cleanly. See
    /// [`Client::recv`].
    ///
    /// # Errors
    ///
    /// As [`Client::recv`].
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, ClientError> {
        self.next().await.transpose()
    }

    /// The traffic counters so far (shared with the sending half).
    pub fn in_flight(&self) -> InFlight {
        self.counters.snapshot()
    }

    /// The next frame, reading as needed; `Ok(None)` at the end of the stream.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, FrameError>> {
        if let Some(frame) = self.input.next_buffered(&mut self.codec) {
            return Poll::Ready(Ok(Some(frame)));
        }
        loop {
            if self.done {
                return Poll::Ready(Ok(None));
            }
            match self.input.next_frame_or_end(&mut self.codec, self.eof) {
                Ok(Some(frame)) => return Poll::Ready(Ok(Some(frame))),
                Ok(None) if self.eof => {
                    self.done = true;
                    return Poll::Ready(Ok(None));
                }
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(self.fail(e))),
            }
            let io = Pin::new(&mut self.io);
            match ready!(self.input.poll_fill_ready(&self.codec, io, cx)) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(self.fail(FrameError::Io(e)))),
            }
        }
    }

    /// Ends the stream after an error (the bytes after it cannot be framed).
    fn fail(&mut self, err: FrameError) -> FrameError {
        self.done = true;
        self.input.clear();
        err
    }
}

/// The protocol version, if `frame` is an ack-mode HELLO: [`HELLO_LEN`] bytes, the HELLO kind
/// byte, then the magic `FWAK`. A plain-mode application message of exactly that shape is
/// the price of the check (43 bytes starting `01 46 57 41 4B`).
fn ack_hello_version(frame: &[u8]) -> Option<u8> {
    let is_hello = frame.len() == HELLO_LEN
        && frame.first() == Some(&FrameKind::Hello.to_byte())
        && frame.get(1..5) == Some(&MAGIC[..]);
    is_hello.then(|| frame[5])
}

impl Stream for ClientReceiver {
    type Item = Result<Bytes, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(version) = this.ack_peer {
            return Poll::Ready(Some(Err(ClientError::PeerSpeaksAckMode { version })));
        }
        match this.poll_frame(cx) {
            Poll::Ready(Ok(Some(frame))) => {
                if std::mem::take(&mut this.first) {
                    if let Some(version) = ack_hello_version(&frame) {
                        this.ack_peer = Some(version);
                        return Poll::Ready(Some(Err(ClientError::PeerSpeaksAckMode { version })));
                    }
                }
                this.counters.received();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(this.counters.error(e)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
