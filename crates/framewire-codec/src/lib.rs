//! Length-prefixed message framing for TCP.
//!
//! TCP is a byte stream: two writes can arrive as one read (coalescing, the "sticky packet"
//! problem, 粘包) and one write can arrive split over many reads. framewire sends every message
//! as a *frame* whose length is known before its body, so message boundaries survive any
//! coalescing or splitting.
//!
//! # Wire format (plain mode)
//!
//! ```text
//! +----------------------+-------------------------------+
//! | length: u32, BE      | payload: `length` bytes       |
//! +----------------------+-------------------------------+
//! ```
//!
//! * `length` is an unsigned 32-bit integer, big-endian by default (little-endian on request,
//!   see [`ByteOrder`]). It counts the payload only, not itself.
//! * Zero-length frames are valid: `00 00 00 00` is one empty message.
//! * A frame longer than the receiver's maximum ([`DEFAULT_MAX_FRAME_LEN`], 8 MiB, by default)
//!   is an error ([`FrameError::IncomingTooLong`]) unless the receiver chose
//!   [`OversizedFrame::Discard`].
//! * There is no other header, no magic number and no padding.
//!
//! Worked example: the messages `"hello"` and `""` followed by `"hi"`:
//!
//! ```text
//! 00 00 00 05 68 65 6c 6c 6f   "hello"
//! 00 00 00 00                  ""
//! 00 00 00 02 68 69            "hi"
//! ```
//!
//! Decoding exactly those bytes:
//!
//! ```
//! use bytes::BytesMut;
//! use framewire_codec::FrameCodec;
//! use tokio_util::codec::Decoder;
//!
//! let mut codec = FrameCodec::new();
//! let mut buf = BytesMut::from(&[
//!     0x00, 0x00, 0x00, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f, // "hello"
//!     0x00, 0x00, 0x00, 0x00, //                               ""
//!     0x00, 0x00, 0x00, 0x02, 0x68, 0x69, //                   "hi"
//! ][..]);
//! assert_eq!(codec.decode(&mut buf)?.as_deref(), Some(&b"hello"[..]));
//! assert_eq!(codec.decode(&mut buf)?.as_deref(), Some(&b""[..]));
//! assert_eq!(codec.decode(&mut buf)?.as_deref(), Some(&b"hi"[..]));
//! assert_eq!(codec.decode(&mut buf)?, None); // nothing left
//! # Ok::<(), framewire_codec::FrameError>(())
//! ```
//!
//! This is byte-for-byte what tokio-util's `LengthDelimitedCodec` (default settings), Netty's
//! `LengthFieldPrepender(4)` + `LengthFieldBasedFrameDecoder(max, 0, 4, 0, 4)` and Python's
//! `struct.pack('>I', len(payload)) + payload` produce, so programs in other languages can talk
//! to framewire with a dozen lines.
//!
//! # Use with tokio-util
//!
//! [`FrameCodec`] implements `Decoder` and `Encoder`, so it plugs into `Framed`,
//! `FramedRead` and `FramedWrite`:
//!
//! ```no_run
//! use futures::{SinkExt, StreamExt};
//! use framewire_codec::FrameCodec;
//! use tokio::net::TcpStream;
//!
//! # async fn run() -> Result<(), framewire_codec::FrameError> {
//! let stream = TcpStream::connect("127.0.0.1:9999").await?;
//! let mut framed = FrameCodec::new().framed(stream);
//! framed.send("hello".into()).await?; // the Sink's item is `Bytes`
//! framed.feed(bytes::Bytes::from(vec![1, 2, 3])).await?;
//! framed.flush().await?; // one item type: nothing to annotate
//! while let Some(frame) = framed.next().await {
//!     println!("got {} bytes", frame?.len());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Memory
//!
//! The decoder never reserves the length a header announces. It grows the read buffer as
//! payload actually arrives, in steps of at most [`GROWTH_STEP`], so a peer that announces an
//! 8 MiB frame and then sends nothing costs a few KiB. Every number read from the wire goes
//! through checked conversions; no input makes the codec panic.
//!
//! # Ack mode
//!
//! The [`ack`] module adds an optional mode in which the sender learns that the receiving
//! application took each message: every frame's payload starts with a kind byte (HELLO, DATA
//! with a sequence number, cumulative ACK), up to a granted window of messages may be
//! unacknowledged (1 is stop-and-wait), and the messages still unacknowledged when a
//! connection dies are handed back in order. It is a sans-IO state machine ([`ack::AckState`])
//! plus a `Stream + Sink` adapter ([`ack::AckFramed`]); its module docs are the wire spec.
//!
//! # Typed messages
//!
//! The [`typed`] module sends one serde value per frame (bincode 2 by default, postcard with the
//! `postcard` feature): [`typed::encode`] / [`typed::decode`] for single payloads and
//! [`typed::TypedFramed`], a `Stream + Sink` of values over `Framed<T, FrameCodec>`. A frame that
//! does not deserialize is an error for that message only; the stream goes on.

#![forbid(unsafe_code)]

pub mod ack;
mod endpoint;
mod error;
mod frame;
mod reader;
mod run;
pub mod typed;
mod vectored;
mod writer;

pub use endpoint::{Endpoint, EndpointError, IntoEndpoint, IntoEndpoints};
pub use error::{Cause, EarlierError, FrameError};
pub use frame::{
    ByteOrder, Discarded, FrameCodec, FrameCodecBuilder, OversizedFrame, DEFAULT_MAX_FRAME_LEN,
    GROWTH_STEP, HEADER_LEN,
};
pub use reader::{FrameReader, ReadReady, DEFAULT_READ_SIZE, MAX_READ_SIZE};
pub use run::{FrameRun, Payloads};
// VectoredFrame: the writers' internal step, public for the property test in
// tests/vectored.rs only.
#[doc(hidden)]
pub use vectored::VectoredFrame;
pub use vectored::VECTORED_WRITE_MIN;
pub use writer::{FrameWriter, DEFAULT_WRITE_BUFFER_LIMIT, ZERO_COPY_MIN};
