//! A concurrent framed TCP server: Python's `socketserver.ThreadingTCPServer`, in async Rust,
//! on framewire's length-prefixed frames.
//!
//! socketserver gives each connection a handler whose `handle()` sees `self.request`,
//! `self.client_address` and `self.server`. Here:
//!
//! | socketserver | framewire-server |
//! |---|---|
//! | `ThreadingTCPServer(addr, Handler)` | [`Server::bind`], [`ServerBuilder::bind`], [`ServerBuilder::listener`] (TCP or Unix) |
//! | `BaseRequestHandler.handle()` | [`Handler::handle`], or any `Fn(Connection) -> impl Future` |
//! | `self.request` | [`Connection`]: a `Stream` of frames and a `Sink` of frames, with [`Connection::recv`] / [`Connection::send`] and the typed [`Connection::recv_typed`] / [`Connection::send_typed`] (serde, bincode by default) |
//! | `self.client_address` | [`Connection::peer_addr`]; behind a load balancer speaking the PROXY protocol ([`ServerBuilder::proxy_protocol`]) the original client's, with the balancer's in [`Connection::proxied_by`] |
//! | `self.server` | [`Connection::server`]: a [`ServerHandle`] (shutdown, stats, local address, shared state) |
//! | `serve_forever()` | [`Server::serve`] |
//! | `shutdown()` | [`ServerHandle::shutdown`] from anywhere; [`Server::serve_until`] a signal |
//! | `server_close()`, `block_on_close` | graceful shutdown with a [grace period](ServerBuilder::grace_period), then abort, counted in [`ShutdownReport`] |
//! | `verify_request()` | [`ServerBuilder::accept_filter`] |
//! | `handle_error()` | errors are logged with `tracing` (a span per connection with the peer address) and counted in [`Stats`] |
//! | `timeout`, `handle_timeout()` | [idle](ServerBuilder::idle_timeout), [stall](ServerBuilder::stall_timeout) and [write](ServerBuilder::write_timeout) timeouts |
//! | `request_queue_size` | [`ServerBuilder::backlog`] |
//! | none | [`ServerBuilder::max_connections`] with [`AtCapacity`], [`ServerBuilder::max_connections_per_ip`] |
//! | none | ack mode: [`ServerBuilder::ack_mode`], every connection speaks ack mode with the configured window ([`Connection`#ack-mode](Connection#ack-mode)) |
//! | none | [`ServerHandle::stats`] |
// The `tls` methods exist only with the feature: link to them only then.
#![cfg_attr(
    feature = "tls",
    doc = " | `ssl.SSLContext.wrap_socket(server_side=True)` | [`ServerBuilder::tls`] (feature `tls`: rustls with the ring provider), [`Connection::tls`] for ALPN and the client's certificates |"
)]
#![cfg_attr(
    not(feature = "tls"),
    doc = " | `ssl.SSLContext.wrap_socket(server_side=True)` | `ServerBuilder::tls` (feature `tls`: rustls with the ring provider), `Connection::tls` for ALPN and the client's certificates |"
)]
//! | none | [`ServerBuilder::incoming`]: serve the application's own byte streams (any `AsyncRead + AsyncWrite`) |
//!
//! # Example: the tutorial's echo server
//!
//! ```no_run
//! use framewire_server::{Connection, Server, ServerError};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), ServerError> {
//!     let server = Server::bind("127.0.0.1:9999").await?;
//!     server
//!         .serve(|mut conn: Connection| async move {
//!             conn.send("你好欢迎你").await?;
//!             while let Some(frame) = conn.recv().await? {
//!                 if &frame[..] == b"q" {
//!                     break;
//!                 }
//!                 conn.send([&frame[..], "好".as_bytes()].concat()).await?;
//!             }
//!             Ok::<_, ServerError>(())
//!         })
//!         .await;
//!     Ok(())
//! }
//! ```
//!
//! # Memory
//!
//! An idle connection holds no read or write buffer (see [`Connection`]); what remains is the
//! tokio task, the socket registration and the connection struct.

#![forbid(unsafe_code)]

mod address;
mod builder;
mod config;
mod connection;
mod error;
mod forward;
mod handle;
mod incoming;
mod listen;
#[cfg(feature = "metrics")]
mod metrics_export;
mod proxy;
mod server;
mod signal;
mod stats;
#[cfg(feature = "tls")]
mod tls;
mod warn;

pub use address::{Address, Transport};
pub use builder::ServerBuilder;
#[cfg(feature = "tls")]
pub use config::DEFAULT_TLS_HANDSHAKE_TIMEOUT;
pub use config::{
    AtCapacity, ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, DEFAULT_BACKLOG, DEFAULT_GRACE_PERIOD,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_MIN_RECEIVE_RATE, DEFAULT_READ_BUFFER_SIZE, DEFAULT_STALL_TIMEOUT,
    DEFAULT_WRITE_BUFFER_LIMIT, DEFAULT_WRITE_TIMEOUT,
};
pub use connection::Connection;
pub use error::{ErrorKind, ServerError};
pub use framewire_codec::{Cause, EarlierError, Endpoint, EndpointError, IntoEndpoint};
pub use handle::{ServerHandle, ShutdownSignal};
pub use incoming::Incoming;
pub use listen::{BoundListener, BoundStream};
#[cfg(feature = "metrics")]
pub use metrics_export::METRICS_INTERVAL;
pub use proxy::{
    IpNet, ProxyError, ProxyProtocol, DEFAULT_PROXY_HEADER_MAX_LEN, DEFAULT_PROXY_HEADER_TIMEOUT,
    MIN_PROXY_HEADER_MAX_LEN,
};
#[cfg(feature = "tls")]
pub use rustls;
pub use server::{Handler, HandlerOutput, Server, ShutdownReport};
pub use signal::termination_signal;
pub use stats::{ErrorStats, Stats};
#[cfg(feature = "tls")]
pub use tls::TlsInfo;
