//! Typed messages: one serde value per frame.
//!
//! A typed message is an ordinary frame whose payload is one value encoded with a serde
//! [`Format`] ([`Bincode`], bincode 2, by default; `Postcard` with the `postcard` feature).
//! Nothing is added to the wire: no type tag, no version byte. A peer in another language only
//! needs to speak the same format.
//!
//! ```text
//! +----------------------+------------------------------------------+
//! | length: u32, BE      | payload: one value in the chosen format  |
//! +----------------------+------------------------------------------+
//!   (7u64, "hi") in bincode: 00 00 00 04 07 02 68 69
//! ```
//!
//! The layer has two parts:
//!
//! * Free functions [`encode`], [`encode_into`] and [`decode`] for code that handles frames
//!   itself (the server's and client's typed helpers use these).
//! * [`TypedFramed`], a `Stream + Sink` adapter over any stream of frames such as
//!   `Framed<T, FrameCodec>`: it yields `Result<In, TypedError>` and accepts `Out`.
//!
//! # Errors are per message
//!
//! Deserialization happens *above* the frame decoder, never inside it. A frame that does not
//! decode is yielded as [`TypedError::Decode`] (or [`TypedError::TrailingBytes`]) carrying the
//! frame length and the reason, and the stream goes on: the next frame decodes normally.
//! (tokio-util's `Framed` ends the stream after any `Decoder` error, which is why this is not a
//! `Decoder`.) Only errors that are not
//! [`TypedError::is_connection_usable`] mean the connection is gone.
//!
//! # Untrusted input
//!
//! Every decode reads from the frame's own slice, so it cannot read past the frame; a value
//! that leaves bytes unused is an error; and a length prefix *inside* the payload cannot make
//! the decoder allocate the announced size. See [`Bincode`] for the exact bounds.
//!
//! # Example
//!
//! ```
//! use framewire_codec::{typed::TypedFramed, FrameCodec};
//! use futures::{SinkExt, StreamExt};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Chat {
//!     id: u64,
//!     user: String,
//!     text: String,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), framewire_codec::typed::TypedError> {
//! let (a, b) = tokio::io::duplex(1024);
//! let mut tx = TypedFramed::<_, Chat, Chat>::new(FrameCodec::new().framed(a));
//! let mut rx = TypedFramed::<_, Chat, Chat>::new(FrameCodec::new().framed(b));
//!
//! let msg = Chat { id: 1, user: "ana".into(), text: "hello".into() };
//! tx.send_ref(&msg).await?;
//! assert_eq!(rx.next().await.transpose()?, Some(msg));
//! # Ok(())
//! # }
//! ```

mod error;
mod format;
mod framed;
mod guard;

use bytes::{Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};

pub use error::TypedError;
#[cfg(feature = "postcard")]
pub use format::Postcard;
pub use format::{bincode_decode_limit, Bincode, Format};
pub use framed::TypedFramed;
pub use guard::MAX_DEPTH;

/// Encodes `value` with format `F` into a new buffer: one frame's payload.
///
/// The frame header is not included; send the result through a [`FrameCodec`](crate::FrameCodec)
/// (which checks it against the maximum frame length).
///
/// # Errors
///
/// [`TypedError::Encode`] if the value cannot be represented in `F`.
///
/// # Examples
///
/// ```
/// use framewire_codec::typed::{self, Bincode};
///
/// let payload = typed::encode::<Bincode, _>(&vec![1u8, 2, 3])?;
/// assert_eq!(&payload[..], &[3, 1, 2, 3]);
/// # Ok::<(), framewire_codec::typed::TypedError>(())
/// ```
pub fn encode<F: Format, T: Serialize + ?Sized>(value: &T) -> Result<Bytes, TypedError> {
    let mut buf = BytesMut::new();
    F::encode_into(value, &mut buf)?;
    Ok(buf.freeze())
}

/// Appends the encoding of `value` with format `F` to `dst`, for callers that reuse a buffer
/// or put their own bytes in front of the value.
///
/// On error `dst` is truncated back to its length on entry, so nothing half-encoded is left.
///
/// # Errors
///
/// [`TypedError::Encode`] if the value cannot be represented in `F`.
pub fn encode_into<F: Format, T: Serialize + ?Sized>(
    value: &T,
    dst: &mut BytesMut,
) -> Result<(), TypedError> {
    let start = dst.len();
    F::encode_into(value, dst).inspect_err(|_| dst.truncate(start))
}

/// Decodes one value of type `T` with format `F` from a whole frame's payload.
///
/// The value must use all of `src`. Never reads past `src`, never panics, and a length prefix
/// inside the payload cannot cause an allocation of the size it announces (see [`Bincode`]).
///
/// # Errors
///
/// [`TypedError::Decode`] (with `src.len()` and the reason) if `src` is not a valid `T`;
/// [`TypedError::TrailingBytes`] if bytes are left after the value. Both concern this payload
/// only.
///
/// # Examples
///
/// ```
/// use framewire_codec::typed::{self, Bincode, TypedError};
///
/// let n: u32 = typed::decode::<Bincode, _>(&[42])?;
/// assert_eq!(n, 42);
///
/// let err = typed::decode::<Bincode, u32>(&[42, 0]).unwrap_err();
/// assert!(matches!(err, TypedError::TrailingBytes { len: 2, consumed: 1, .. }));
/// # Ok::<(), TypedError>(())
/// ```
pub fn decode<F: Format, T: DeserializeOwned>(src: &[u8]) -> Result<T, TypedError> {
    F::decode(src)
}
