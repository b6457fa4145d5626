//! Connection settings.

use std::time::Duration;

use framewire_codec::{FrameCodecBuilder, IntoEndpoints, DEFAULT_MAX_FRAME_LEN};

use framewire_codec::ack::{AckConfig, AckFramedBuilder};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::ack::AckSettings;
use crate::tls::ClientTls;
use crate::transport::{within_connect_timeout, ByteStream, Endpoints, Open};
use crate::writer::DEFAULT_WRITE_BUFFER_LIMIT;
use crate::{AckClient, Client, ClientError, Endpoint, ReconnectPolicy, DEFAULT_DEADLOCK_GRACE};

/// How long connecting may take by default: 10 s. Long enough for a slow handshake across a
/// real network, short enough that an address that silently drops packets is reported soon.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Client::close`] may take by default (flush, shutdown and waiting for the peer to
/// close its side, under one deadline): 5 s. A
/// well-behaved peer closes within a round trip; one that never does must not hold the caller.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings for a client connection, with named defaults.
///
/// ```no_run
/// use std::time::Duration;
/// use framewire_client::Client;
///
/// # async fn run() -> Result<(), framewire_client::ClientError> {
/// let client = Client::builder()
///     .connect_timeout(Duration::from_secs(2))
///     .max_frame_len(64 * 1024)
///     .connect("127.0.0.1:9999")
///     .await?;
/// # Ok(())
/// # }
/// ```
///
/// # Timeouts and limits
///
/// One rule across framewire's builders: a timeout or limit that can be turned off takes
/// `impl Into<Option<_>>`, so pass the value itself (`Duration::from_secs(5)`, `100`) or
/// `None` for off; one that cannot be off (a connect, close, handshake or grace timeout)
/// takes the plain `Duration`.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    pub(crate) connect_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) codec: FrameCodecBuilder,
    pub(crate) ack: AckConfig,
    pub(crate) policy: ReconnectPolicy,
    pub(crate) ack_timeout: Option<Duration>,
    pub(crate) deadlock_grace: Option<Duration>,
    pub(crate) write_buffer_limit: usize,
    pub(crate) tls: Option<ClientTls>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientBuilder {
    /// The defaults: [`DEFAULT_CONNECT_TIMEOUT`], [`DEFAULT_CLOSE_TIMEOUT`], and the codec's
    /// defaults ([`DEFAULT_MAX_FRAME_LEN`], big-endian).
    pub fn new() -> Self {
        let codec = FrameCodecBuilder::new().max_frame_len(DEFAULT_MAX_FRAME_LEN);
        ClientBuilder {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            codec,
            ack: AckConfig::new(),
            policy: ReconnectPolicy::default(),
            ack_timeout: None,
            deadlock_grace: Some(DEFAULT_DEADLOCK_GRACE),
            write_buffer_limit: DEFAULT_WRITE_BUFFER_LIMIT,
            tls: None,
        }
    }

    /// Maximum time for one connection attempt (name resolution + handshake).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Maximum time [`Client::close`] may take in all: flushing, shutting down, and waiting for
    /// the peer to close its side.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Maximum frame payload length in both directions (default [`DEFAULT_MAX_FRAME_LEN`]).
    pub fn max_frame_len(mut self, max: usize) -> Self {
        self.codec = self.codec.max_frame_len(max);
        self
    }

    /// Plain mode: the most bytes of frames fed without a flush that are buffered before the
    /// next `feed` writes them out (default [`DEFAULT_WRITE_BUFFER_LIMIT`], 64 KiB; values
    /// below 1 act as 1). A batch's first write goes out at 16 KiB (or this limit, if lower),
    /// each further one at twice as much, up to this limit. Payloads of at least
    /// [`VECTORED_WRITE_MIN`](crate::VECTORED_WRITE_MIN) bytes are written from the caller's
    /// memory as far as the socket takes them at once; only the rest is copied.
    ///
    /// Ack mode: the write buffer's high-water mark. Frames are encoded into it until it
    /// holds this much; it is then written out before more is accepted.
    pub fn write_buffer_limit(mut self, limit: usize) -> Self {
        self.write_buffer_limit = limit.max(1);
        self
    }

    /// The full codec configuration (byte order, oversized-frame policy, ...), for peers that
    /// need more than the defaults.
    pub fn codec(mut self, codec: FrameCodecBuilder) -> Self {
        self.codec = codec;
        self
    }

    /// Ack mode: the window this client grants the server (how many of the server's messages
    /// may be unacknowledged at once; default `DEFAULT_WINDOW` of `framewire_codec::ack`,
    /// 4,096; 1 is stop-and-wait). How many of *this* client's messages may be in flight is
    /// the window the server grants in its HELLO, clamped to this client's own caps (see
    /// [`ack_config`](Self::ack_config)). Shorthand for `AckConfig::window`.
    pub fn ack_window(mut self, window: u32) -> Self {
        self.ack = self.ack.window(window);
        self
    }

    /// Ack mode: every setting at once (see `AckConfig` in `framewire_codec::ack`): the
    /// windows this client grants in messages and bytes, the caps on what it keeps
    /// unacknowledged whatever the server grants (1 MiB by default: a server granting
    /// `u32::MAX` does not make `send` buffer without limit), keepalive (PING after 15 s of
    /// silence) and the peer timeout (60 s, then the client reconnects).
    pub fn ack_config(mut self, config: AckConfig) -> Self {
        self.ack = config;
        self
    }

    /// Ack mode: when to reconnect after a drop (default [`ReconnectPolicy::default`];
    /// [`ReconnectPolicy::never`] hands the unacknowledged messages back at the first drop).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Ack mode: treat the connection as dropped (and reconnect) when messages are in flight
    /// and no ack has arrived for `timeout`. Off by default: a peer that vanished without
    /// closing is already detected by the keepalive (see [`ack_config`](Self::ack_config)),
    /// and an ack means the peer's *application* is done with the message, so a slow consumer
    /// would also trip this and then see redeliveries; choose a timeout well above the peer's
    /// longest pause.
    pub fn ack_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.ack_timeout = timeout.into();
        self
    }

    /// Ack mode: how long [`AckSender::send`](crate::AckSender::send) or
    /// [`flush`](crate::AckSender::flush) may wait with no acknowledgement, while the
    /// server's messages fill the window this client granted and nothing waits in
    /// [`recv`](crate::AckReceiver::recv), before failing with [`ClientError::Deadlock`]
    /// (default [`DEFAULT_DEADLOCK_GRACE`], 2 s). That situation is usually the classic
    /// mistake (sending to an echo server without reading its replies): both sides would wait
    /// forever. But it is a wall-clock heuristic: a receiving task that is alive and spends
    /// longer than the grace on one message (a slow database write) looks the same while it
    /// works. Choose a grace above your receiver's longest pause, or `None` to turn the check
    /// off: `send` and `flush` then wait for room (or acks) for as long as it takes.
    pub fn ack_deadlock_grace(mut self, grace: impl Into<Option<Duration>>) -> Self {
        self.deadlock_grace = grace.into();
        self
    }

    /// TLS (feature `tls`): every connection, and every reconnect in ack mode, runs a TLS
    /// handshake with this rustls configuration, and the server's certificate must be valid
    /// for `server_name`. The handshake counts toward the
    /// [connect timeout](ClientBuilder::connect_timeout); a failed one is
    /// [`ClientError::Tls`].
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use framewire_client::Client;
    /// use rustls::pki_types::{CertificateDer, ServerName};
    ///
    /// # async fn run(ca: CertificateDer<'static>) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut roots = rustls::RootCertStore::empty();
    /// roots.add(ca)?;
    /// let provider = Arc::new(rustls::crypto::ring::default_provider());
    /// let config = rustls::ClientConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let mut client = Client::builder()
    ///     .tls(config, ServerName::try_from("localhost")?)
    ///     .connect("127.0.0.1:9443")
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(
        mut self,
        config: impl Into<std::sync::Arc<rustls::ClientConfig>>,
        server_name: rustls::pki_types::ServerName<'static>,
    ) -> Self {
        self.tls = Some(ClientTls::new(config.into(), server_name));
        self
    }

    fn ack_settings(&self, endpoints: Endpoints) -> AckSettings {
        // As the server's ack mode does: frames are encoded until this much is buffered, then
        // written (a stream of small messages costs one write per 64 KiB, not per 16 KiB).
        let ack = AckFramedBuilder::new()
            .config(self.ack)
            .write_high_water(self.write_buffer_limit);
        AckSettings {
            endpoints,
            connect_timeout: self.connect_timeout,
            codec: self.codec,
            ack,
            policy: self.policy,
            ack_timeout: self.ack_timeout,
            deadlock_grace: self.deadlock_grace,
            tls: self.tls.clone(),
        }
    }

    /// Connects in ack mode: connects, exchanges HELLOs (within the connect timeout), and
    /// starts the background task that drives the connection.
    ///
    /// The first connection is not retried; the reconnect policy applies to drops after it.
    /// Must be called within a tokio runtime.
    ///
    /// With several endpoints (failover), the first that answers with a HELLO is used, as in
    /// [`connect`](Self::connect). After a drop each reconnect attempt of the
    /// [`ReconnectPolicy`] tries every endpoint once, starting with the one that was
    /// connected: a backend that is down costs one refused connection, and the client moves
    /// on to the next. On another server the ack-mode session is new, so messages resent
    /// there are delivered at least once (see the README's "Running many servers").
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), and [`ClientError::Handshake`] (the peer answered
    /// without a valid HELLO: a plain-mode peer, another version) or
    /// [`ClientError::HandshakeTimeout`] (no HELLO at all).
    pub async fn connect_ack(
        &self,
        endpoints: impl IntoEndpoints,
    ) -> Result<AckClient, ClientError> {
        let endpoints = Endpoints::new(endpoints.into_endpoints()?);
        AckClient::connect(self.ack_settings(endpoints), None).await
    }

    /// Connects in plain mode.
    ///
    /// `endpoints` is one endpoint or a list (see [`IntoEndpoints`]). A list is tried in
    /// order, each endpoint with the connect timeout, and the first that accepts the
    /// connection is used ([`Client::endpoint`] says which). A plain-mode client does not
    /// reconnect by itself; connecting again with the same list starts again from the
    /// first endpoint (put a server you know is down last, or leave it out).
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidEndpoint`], [`ClientError::Connect`],
    /// [`ClientError::ConnectTimeout`], [`ClientError::Tls`]; with several endpoints, when
    /// none answered, [`ClientError::NoEndpoint`] with each one's error.
    pub async fn connect(&self, endpoints: impl IntoEndpoints) -> Result<Client, ClientError> {
        let mut endpoints = Endpoints::new(endpoints.into_endpoints()?);
        let timeout = self.connect_timeout;
        let tls = self.tls.clone();
        let transport = endpoints
            .first_answering(|e| {
                let e = e.clone();
                let tls = tls.clone();
                async move { e.open(timeout, tls.as_ref()).await }
            })
            .await?;
        Ok(self.client(transport, endpoints.current().clone()))
    }

    fn client(&self, transport: ByteStream, endpoint: Endpoint) -> Client {
        Client::from_transport(
            transport,
            &self.codec,
            endpoint,
            self.close_timeout,
            self.write_buffer_limit,
        )
    }

    /// Runs the TLS handshake over `stream` if TLS is configured (within the connect
    /// timeout).
    async fn secure(&self, stream: ByteStream) -> Result<ByteStream, ClientError> {
        let Some(tls) = &self.tls else {
            return Ok(stream);
        };
        let endpoint = Endpoint::Stream;
        let handshake = tls.handshake(stream, &endpoint);
        within_connect_timeout(&endpoint, self.connect_timeout, handshake).await
    }

    /// Plain mode over a stream the application connected itself: anything
    /// `AsyncRead + AsyncWrite + Unpin + Send` (an SSH channel, one end of
    /// `tokio::io::duplex`, a socket type this crate does not know). With
    #[cfg_attr(
        feature = "tls",
        doc = " [`tls`](ClientBuilder::tls), the TLS handshake runs over it first."
    )]
    #[cfg_attr(
        not(feature = "tls"),
        doc = " `tls` (feature `tls`), the TLS handshake runs over it first."
    )]
    /// [`Client::endpoint`] is [`Endpoint::Stream`].
    ///
    /// Cost: the stream is boxed, and its reading and writing halves share it behind a lock
    /// (TCP and Unix sockets split without one).
    ///
    /// ```
    /// use framewire_client::Client;
    ///
    /// # async fn run() -> Result<(), framewire_client::ClientError> {
    /// let (ours, theirs) = tokio::io::duplex(64 * 1024);
    /// # drop(theirs);
    /// let client = Client::builder().connect_stream(ours).await?;
    /// # drop(client);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// With TLS: [`ClientError::Tls`], [`ClientError::ConnectTimeout`]. Without TLS it does
    /// not fail.
    pub async fn connect_stream(
        &self,
        stream: impl AsyncRead + AsyncWrite + Send + Unpin + 'static,
    ) -> Result<Client, ClientError> {
        let transport = self.secure(ByteStream::boxed(stream)).await?;
        Ok(self.client(transport, Endpoint::Stream))
    }

    /// Ack mode over a stream the application connected itself (see
    /// [`connect_stream`](ClientBuilder::connect_stream)): exchanges HELLOs over it and starts
    /// the driver. The stream cannot be reopened, so there is no reconnect: when it drops,
    /// waiting calls fail with [`ClientError::GaveUp`], which hands back the unacknowledged
    /// messages (the [reconnect policy](ClientBuilder::reconnect) is not used).
    ///
    /// # Errors
    ///
    /// As [`connect_stream`](ClientBuilder::connect_stream), and [`ClientError::Handshake`]
    /// or [`ClientError::HandshakeTimeout`] as in [`connect_ack`](ClientBuilder::connect_ack).
    pub async fn connect_ack_stream(
        &self,
        stream: impl AsyncRead + AsyncWrite + Send + Unpin + 'static,
    ) -> Result<AckClient, ClientError> {
        let transport = self.secure(ByteStream::boxed(stream)).await?;
        let mut settings = self.ack_settings(Endpoints::new(vec![Endpoint::Stream]));
        settings.policy = ReconnectPolicy::never();
        AckClient::connect(settings, Some(transport)).await
    }
}
