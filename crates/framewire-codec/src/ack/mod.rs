//! Ack mode: windowed, cumulative acknowledgements on top of plain framing.
//!
//! In ack mode the sender learns that the receiving *application* took each message, with up
//! to `window` messages unacknowledged at once. A window of 1 is stop-and-wait (send, wait for
//! the peer to confirm, send the next); larger windows pipeline. Acks are cumulative and
//! coalesced, so a large window costs little.
//!
//! The module has three layers:
//!
//! * [`AckFrame`]: parsing and encoding of the three frame kinds (this page is their spec).
//! * [`AckState`]: the sans-IO state machine (sequence numbers, windows, acks, protocol
//!   checks). No sockets, no runtime, no clock: drive it from any read/write path.
//! * [`AckFramed`]: an async `Stream + Sink` adapter over `Framed<T, FrameCodec>` that drives
//!   the machine.
//!
//! # Wire format
//!
//! Every ack-mode unit is an ordinary plain-mode frame (`u32` big-endian length, then the
//! payload; see the [crate docs](crate)) whose payload starts with a kind byte. A plain decoder
//! can always split the stream; only the meaning of the payload changes. All numbers are
//! fixed-width and big-endian.
//!
//! ## HELLO (kind `0x01`, 14 bytes)
//!
//! ```text
//! +------+-------------+---------+----------------+------------------------+
//! | 0x01 | 46 57 41 4b | version | window: u32 BE | max frame length: u32 BE|
//! |      | "FWAK"      | u8 = 1  |                |                        |
//! +------+-------------+---------+----------------+------------------------+
//! ```
//!
//! Each side sends HELLO as its first frame, without waiting for the peer's. `window` is how
//! many unacknowledged DATA frames the *peer* may have in flight towards the sender of the
//! HELLO (at least 1); `max frame length` is the longest frame payload the sender of the HELLO
//! accepts, ack-mode header included. A first frame that is not a valid HELLO is an error
//! naming what arrived instead ("expected HELLO, got a frame of 5 bytes starting 68 65 6c 6c
//! 6f" for a plain-mode `"hello"`); another `version` is a version mismatch; a second HELLO
//! is an error.
//!
//! Window 64, max frame length 8 MiB, with its length prefix:
//!
//! ```text
//! 00 00 00 0e  01  46 57 41 4b  01  00 00 00 40  00 80 00 00
//! ```
//!
//! ```
//! use bytes::BytesMut;
//! use framewire_codec::{ack::{AckFrame, Hello}, FrameCodec};
//! use tokio_util::codec::Decoder;
//!
//! let mut buf = BytesMut::from(&[
//!     0x00, 0x00, 0x00, 0x0e, // length 14
//!     0x01, 0x46, 0x57, 0x41, 0x4b, 0x01, // HELLO, "FWAK", version 1
//!     0x00, 0x00, 0x00, 0x40, // window 64
//!     0x00, 0x80, 0x00, 0x00, // max frame length 8 MiB
//! ][..]);
//! let frame = FrameCodec::new().decode(&mut buf)?.expect("one whole frame");
//! assert_eq!(
//!     AckFrame::parse(&frame)?,
//!     AckFrame::Hello(Hello { version: 1, window: 64, max_frame_len: 8 * 1024 * 1024 })
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## DATA (kind `0x02`, 10 bytes + payload)
//!
//! ```text
//! +------+----------------+-------+-------------------------------+
//! | 0x02 | seq: u64 BE    | flags | application payload           |
//! +------+----------------+-------+-------------------------------+
//! ```
//!
//! `seq` is 1 for the first DATA in each direction of each connection and grows by exactly 1.
//! `flags` bit 0 (`0x01`, [`FLAG_REDELIVERY`]) marks a message that may have been delivered
//! before (resent on a new connection after the old one died unacknowledged); the other bits
//! must be 0. A DATA frame out of sequence, or beyond the last ACK sent plus the granted
//! window, is an error.
//!
//! `"hi"` as seq 1, then again as a redelivery:
//!
//! ```text
//! 00 00 00 0c  02  00 00 00 00 00 00 00 01  00  68 69
//! 00 00 00 0c  02  00 00 00 00 00 00 00 01  01  68 69
//! ```
//!
//! ```
//! use bytes::BytesMut;
//! use framewire_codec::{ack::AckFrame, FrameCodec};
//! use tokio_util::codec::Decoder;
//!
//! let mut buf = BytesMut::from(&[
//!     0x00, 0x00, 0x00, 0x0c, 0x02, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0x68, 0x69,
//!     0x00, 0x00, 0x00, 0x0c, 0x02, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x01, 0x68, 0x69,
//! ][..]);
//! let mut codec = FrameCodec::new();
//! let first = codec.decode(&mut buf)?.expect("frame 1");
//! let second = codec.decode(&mut buf)?.expect("frame 2");
//! assert_eq!(
//!     AckFrame::parse(&first)?,
//!     AckFrame::Data { seq: 1, redelivery: false, payload: &b"hi"[..] }
//! );
//! assert_eq!(
//!     AckFrame::parse(&second)?,
//!     AckFrame::Data { seq: 1, redelivery: true, payload: &b"hi"[..] }
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## ACK (kind `0x03`, 9 bytes)
//!
//! ```text
//! +------+--------------------+
//! | 0x03 | through: u64 BE    |
//! +------+--------------------+
//! ```
//!
//! Every DATA up to and including `through` was taken by the receiving application (not
//! merely received). Cumulative: an ACK for a seq never sent, or lower than an earlier ACK, is
//! an error. A receiver sends one when half the window it granted has been taken since its
//! previous ACK, or when it has nothing more buffered.
//!
//! ```text
//! 00 00 00 09  03  00 00 00 00 00 00 00 01
//! ```
//!
//! ```
//! use bytes::BytesMut;
//! use framewire_codec::{ack::AckFrame, FrameCodec};
//! use tokio_util::codec::Decoder;
//!
//! let mut buf = BytesMut::from(&[0x00, 0x00, 0x00, 0x09, 0x03, 0, 0, 0, 0, 0, 0, 0, 0x01][..]);
//! let frame = FrameCodec::new().decode(&mut buf)?.expect("one whole frame");
//! assert_eq!(AckFrame::parse(&frame)?, AckFrame::Ack { through: 1 });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## A whole exchange
//!
//! A sends `"hi"` to B with window 1 (stop-and-wait):
//!
//! ```text
//! A -> B  00 00 00 0e 01 46 57 41 4b 01 00 00 00 01 00 80 00 00   HELLO window 1
//! B -> A  00 00 00 0e 01 46 57 41 4b 01 00 00 00 01 00 80 00 00   HELLO window 1
//! A -> B  00 00 00 0c 02 00 00 00 00 00 00 00 01 00 68 69         DATA 1 "hi"
//! B -> A  00 00 00 09 03 00 00 00 00 00 00 00 01                  ACK 1 (B's app took it)
//! ```
//!
//! # Driving the state machine yourself
//!
//! A server with its own read and write paths feeds [`AckState::handle_frame`] with every
//! frame payload its [`FrameCodec`](crate::FrameCodec) decodes, reports
//! [`AckState::taken`] when its handler took a message and [`AckState::reader_idle`] when its
//! read buffer is empty, queues messages with [`AckState::send`] while
//! [`AckState::has_room`], and writes whatever [`AckState::poll_transmit`] returns (with
//! [`AckFrame::encode`], or [`data_header`] for vectored writes). See [`AckState`] for a
//! complete two-peer example.

mod error;
mod framed;
mod machine;
mod wire;

pub use error::{AckError, ERROR_PREFIX_LEN};
pub use framed::{AckFramed, AckFramedBuilder, DEFAULT_WRITE_HIGH_WATER};
pub use machine::{AckState, Delivery, Outgoing, DEFAULT_WINDOW};
pub use wire::{
    ack_bytes, data_header, AckFrame, FrameKind, Hello, ACK_LEN, DATA_HEADER_LEN, FLAG_REDELIVERY,
    HELLO_LEN, MAGIC, VERSION,
};
