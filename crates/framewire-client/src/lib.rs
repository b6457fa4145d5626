//! The framewire client: the other half of the pair.
//!
//! Connects to a framewire server (or anything that speaks u32 length-prefixed frames, see
//! [`framewire_codec`]) over TCP or a Unix socket, and sends and receives whole messages,
//! however TCP coalesces or splits the bytes.
//!
//! * [`Client`]: plain mode. [`send`](Client::send), [`recv`](Client::recv),
//!   [`call`](Client::call) (request/response), [`split`](Client::split) into a
//!   [`ClientSender`] and a [`ClientReceiver`] for concurrent use, and a graceful
//!   [`close`](Client::close). Plain mode has no acknowledgements: when the connection drops,
//!   [`ClientError::ConnectionLost`] says how many frames were sent since the last one was
//!   received ([`InFlight`]), which is all plain mode can know.
//! * [`AckClient`]: ack mode. [`send`](AckClient::send) returns once the message fits in the
//!   peer's window, with a [`Receipt`] that resolves when the peer's application took it;
//!   [`flush`](AckClient::flush) waits for every receipt; after a drop the client reconnects
//!   per its [`ReconnectPolicy`] and resends every unacknowledged message, in order, flagged
//!   as a redelivery. If the policy gives up, [`ClientError::GaveUp`] hands back exactly the
//!   unacknowledged messages.
//! * Typed messages on both: `send_typed` / `recv_typed` encode one serde value per frame with
//!   bincode 2 (`framewire_codec::typed`); a frame that does not decode is
//!   [`ClientError::Typed`] for that message only, and the next one decodes normally.
//! * [`ReconnectPolicy`]: exponential backoff with jitter, bounded by attempts and time.
// The `tls` method exists only with the feature: link to it only then (`cargo doc` without it).
#![cfg_attr(
    feature = "tls",
    doc = " * TLS (feature `tls`, rustls with the ring provider): [`ClientBuilder::tls`], in plain"
)]
#![cfg_attr(
    not(feature = "tls"),
    doc = " * TLS (feature `tls`, rustls with the ring provider): `ClientBuilder::tls`, in plain"
)]
//!   and ack mode, on every reconnect too.
//! * Any byte stream: [`ClientBuilder::connect_stream`] and
//!   [`ClientBuilder::connect_ack_stream`] run a connection over a stream the application
//!   opened itself (anything `AsyncRead + AsyncWrite + Unpin + Send`).
//! * Failover: both connect to the first of several endpoints that answers
//!   ([`IntoEndpoints`]); an ack-mode reconnect moves on to the next endpoint when one is
//!   down.
//!
//! ```no_run
//! use framewire_client::Client;
//!
//! # async fn run() -> Result<(), framewire_client::ClientError> {
//! let mut client = Client::connect("127.0.0.1:9999").await?;
//! if let Some(greeting) = client.recv().await? {
//!     println!("server says {}", String::from_utf8_lossy(&greeting));
//! }
//! let reply = client.call("hello").await?;
//! println!("reply: {}", String::from_utf8_lossy(&reply));
//! client.close().await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod ack;
mod builder;
mod error;
mod plain;
mod reconnect;
mod tls;
mod transport;
mod typed;
mod writer;

pub use ack::{AckClient, AckReceiver, AckSender, Receipt, DEFAULT_DEADLOCK_GRACE};
pub use builder::{ClientBuilder, DEFAULT_CLOSE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT};
pub use error::{ClientError, InFlight};
pub use framewire_codec::ack::Delivery;
pub use framewire_codec::{
    Cause, EarlierError, Endpoint, EndpointError, IntoEndpoint, IntoEndpoints,
};
pub use framewire_codec::{VECTORED_WRITE_MIN, ZERO_COPY_MIN};
pub use plain::{Client, ClientReceiver, ClientSender, CLOSE_MAX_LATE_BYTES};
pub use reconnect::{
    ReconnectPolicy, DEFAULT_INITIAL_DELAY, DEFAULT_JITTER_PERCENT, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_DELAY, DEFAULT_MULTIPLIER,
};
#[cfg(feature = "tls")]
pub use rustls;
pub use typed::TypedDelivery;
pub use writer::DEFAULT_WRITE_BUFFER_LIMIT;

/// The README's Rust examples, compiled as doctests of this crate: its dev-dependencies
/// include the server, `futures`, `serde` and tokio's macros, so every block in the README
/// builds here, and a README example that no longer compiles fails `cargo test --workspace`.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// The Rust examples of `docs/guide.md`, compiled as doctests for the same reason.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/guide.md")]
struct GuideDoctests;

/// The Rust example of `docs/load-balancing.md`, compiled as a doctest for the same reason.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/load-balancing.md")]
struct LoadBalancingDoctests;

/// The Rust example of `docs/errors.md`, compiled as a doctest for the same reason.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/errors.md")]
struct ErrorsDoctests;
