//! Ack mode: windowed, cumulative acknowledgements on top of plain framing.
//!
//! In ack mode the sender learns that the receiving *application* is done with each message,
//! with up to a window of messages *and* of bytes unacknowledged at once. A window of 1 is stop-and-wait (send, wait for
//! the peer to confirm, send the next); larger windows pipeline. Acks are cumulative and
//! coalesced, so a large window costs little.
//!
//! The module has three layers:
//!
//! * [`AckFrame`]: parsing and encoding of the six frame kinds (this page is their spec).
//! * [`AckState`]: the sans-IO engine (sequence numbers, windows in messages and bytes, acks,
//!   keepalive timers, GOAWAY, sessions that outlive connections, protocol checks),
//!   configured by an [`AckConfig`]. No sockets,
//!   no runtime, no clock reads: drive it from any read/write path.
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
//! ## HELLO (kind `0x01`, 43 bytes)
//!
//! ```text
//! +------+-------------+---------+-------+------------------+------------------+
//! | 0x01 | 46 57 41 4b | version | flags | window: u32 BE   | window bytes:    |
//! |      | "FWAK"      | u8 = 2  | u8 = 0| (messages)       | u32 BE           |
//! +------+-------------+---------+-------+------------------+------------------+
//! | max frame length: u32 BE | session id: 16 bytes | delivered through: u64 BE |
//! +--------------------------+----------------------+---------------------------+
//! ```
//!
//! Each side sends HELLO as its first frame, without waiting for the peer's. `window` and
//! `window bytes` are how many DATA frames, and how many payload bytes, the *peer* may have
//! unacknowledged towards the sender of the HELLO (each at least 1); the peer may send a DATA
//! frame while fewer than both are unacknowledged, so one frame may overshoot the byte
//! window. Each side also caps what it keeps unacknowledged by its own settings, whatever the
//! peer grants ([`AckConfig`]). `max frame length` is the longest frame payload the sender
//! of the HELLO accepts, ack-mode header included. `flags` bit 0 (`0x01`,
//! [`FLAG_HELLO_RESUME`]) resumes a session (see [Sessions](#sessions)); the other bits must
//! be 0. `session id` (all zero: no session) names the session the connection belongs to and
//! `delivered through` is the highest seq of the peer's direction of that session the sender
//! handed to its application (0 without a session).
//!
//! A first frame that is not a valid HELLO is an error naming what arrived instead
//! ("expected HELLO, got a frame of 5 bytes starting 68 65 6c 6c 6f" for a plain-mode
//! `"hello"`); a HELLO of another `version` is an error naming both ("peer speaks ack-mode
//! version 1, this side speaks version 2"); a second HELLO is an error.
//!
//! Window 4,096 messages and 1 MiB, max frame length 8 MiB, no session, with its length
//! prefix:
//!
//! ```text
//! 00 00 00 2b  01  46 57 41 4b  02  00  00 00 10 00  00 10 00 00  00 80 00 00
//! 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00   session id (none)
//! 00 00 00 00 00 00 00 00                           delivered through
//! ```
//!
//! ```
//! use bytes::BytesMut;
//! use framewire_codec::{ack::{AckFrame, Hello}, FrameCodec};
//! use tokio_util::codec::Decoder;
//!
//! let mut bytes = vec![
//!     0x00, 0x00, 0x00, 0x2b, // length 43
//!     0x01, 0x46, 0x57, 0x41, 0x4b, 0x02, 0x00, // HELLO, "FWAK", version 2, flags 0
//!     0x00, 0x00, 0x10, 0x00, // window 4096 messages
//!     0x00, 0x10, 0x00, 0x00, // window 1 MiB
//!     0x00, 0x80, 0x00, 0x00, // max frame length 8 MiB
//! ];
//! bytes.extend_from_slice(&[0; 16]); // session id: none
//! bytes.extend_from_slice(&[0; 8]); // delivered through 0
//! let mut buf = BytesMut::from(&bytes[..]);
//! let frame = FrameCodec::new().decode(&mut buf)?.expect("one whole frame");
//! assert_eq!(
//!     AckFrame::parse(&frame)?,
//!     AckFrame::Hello(Hello::new(4096, 1024 * 1024, 8 * 1024 * 1024))
//! );
//!
//! // A version 1 peer's HELLO is refused, naming both versions.
//! let err = AckFrame::parse(b"\x01FWAK\x01\0\0\0\x40\0\x80\0\0").unwrap_err();
//! assert_eq!(err.to_string(), "peer speaks ack-mode version 1, this side speaks version 2");
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
//! `seq` is 1 for the first DATA in each direction of each connection (of each session, with
//! a [session](#sessions)) and grows by exactly 1.
//! `flags` bit 0 (`0x01`, [`FLAG_REDELIVERY`]) marks a message that may have been delivered
//! before (resent on a new connection after the old one died unacknowledged); the other bits
//! must be 0. A DATA frame out of sequence, beyond the last ACK sent plus the granted window,
//! or arriving while the whole granted byte window is unacknowledged, is an error.
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
//! The receiving application is done with every DATA up to and including `through` (not
//! merely received it: see [below](#when-a-message-is-acknowledged)). Cumulative: an ACK for
//! a seq never sent, or lower than an earlier ACK, is an error. A receiver sends one when half
//! the window it granted (messages or bytes) has been taken since its previous ACK, or when
//! it has nothing more buffered.
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
//! ## GOAWAY (kind `0x04`, 10 bytes)
//!
//! ```text
//! +------+------------+---------------------------+
//! | 0x04 | reason: u8 | delivered through: u64 BE |
//! +------+------------+---------------------------+
//! ```
//!
//! The sender is going away and the peer should reconnect (to it again, or to another
//! server): `0x01` shutdown (graceful shutdown, rolling restart), `0x02` idle close; other
//! codes are accepted and treated alike. `delivered through` is the highest seq the sender's
//! application took. The sender then writes what is queued and closes. This is distinct from
//! a close without GOAWAY, which means "the conversation is over" (a server handler
//! returned): a client reconnects after a GOAWAY, and ends after a plain close.
//!
//! Shutdown, application took through seq 5:
//!
//! ```text
//! 00 00 00 0a  04  01  00 00 00 00 00 00 00 05
//! ```
//!
//! ```
//! use bytes::BytesMut;
//! use framewire_codec::{ack::{AckFrame, GoAwayReason}, FrameCodec};
//! use tokio_util::codec::Decoder;
//!
//! let mut buf = BytesMut::from(&[0, 0, 0, 0x0a, 0x04, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x05][..]);
//! let frame = FrameCodec::new().decode(&mut buf)?.expect("one whole frame");
//! assert_eq!(
//!     AckFrame::parse(&frame)?,
//!     AckFrame::GoAway { reason: GoAwayReason::Shutdown, through: 5 }
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## PING (kind `0x05`) and PONG (kind `0x06`), 9 bytes each
//!
//! ```text
//! +------+-----------------+
//! | 0x05 | token: u64 BE   |   PING
//! +------+-----------------+
//! | 0x06 | token: u64 BE   |   PONG: the token of the PING it answers
//! +------+-----------------+
//! ```
//!
//! Keepalive: a side that received nothing for its keepalive interval (default 15 s) sends a
//! PING; the peer answers with a PONG as soon as it reads it. Any frame received counts as a
//! sign of life; a side that receives nothing for its peer timeout (default 60 s) closes the
//! connection with an error saying so.
//!
//! PING 7 and its PONG:
//!
//! ```text
//! 00 00 00 09  05  00 00 00 00 00 00 00 07
//! 00 00 00 09  06  00 00 00 00 00 00 00 07
//! ```
//!
//! ```
//! use bytes::BytesMut;
//! use framewire_codec::{ack::AckFrame, FrameCodec};
//! use tokio_util::codec::Decoder;
//!
//! let mut buf = BytesMut::from(&[
//!     0, 0, 0, 0x09, 0x05, 0, 0, 0, 0, 0, 0, 0, 0x07,
//!     0, 0, 0, 0x09, 0x06, 0, 0, 0, 0, 0, 0, 0, 0x07,
//! ][..]);
//! let mut codec = FrameCodec::new();
//! let ping = codec.decode(&mut buf)?.expect("frame 1");
//! let pong = codec.decode(&mut buf)?.expect("frame 2");
//! assert_eq!(AckFrame::parse(&ping)?, AckFrame::Ping { token: 7 });
//! assert_eq!(AckFrame::parse(&pong)?, AckFrame::Pong { token: 7 });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## A whole exchange
//!
//! A sends `"hi"` to B with window 1 (stop-and-wait; HELLOs shown without their 24 bytes of
//! session fields):
//!
//! ```text
//! A -> B  00 00 00 2b 01 46 57 41 4b 02 00 00 00 00 01 00 10 00 00 00 80 00 00 ..  HELLO window 1
//! B -> A  00 00 00 2b 01 46 57 41 4b 02 00 00 00 00 01 00 10 00 00 00 80 00 00 ..  HELLO window 1
//! A -> B  00 00 00 0c 02 00 00 00 00 00 00 00 01 00 68 69    DATA 1 "hi"
//! B -> A  00 00 00 09 03 00 00 00 00 00 00 00 01             ACK 1 (B's app is done with it)
//! ```
//!
//! ## When a message is acknowledged
//!
//! An ACK means the receiving application is *done* with the message: it asked for the next
//! one, or acknowledged it explicitly. Returning a message from `recv` is not enough: a
//! handler that is aborted while working on a message has not acknowledged it, and its
//! sender gets it back as unacknowledged.
//!
//! # Sessions
//!
//! Sequence numbers belong to a session that outlives connections. The connecting side opens
//! one with a random 128-bit id ([`new_session_id`]: the operating system's generator, so an
//! id cannot be guessed and holding it is what entitles a connection to the session) and
//! names it in its HELLO ([`AckState::with_session`]). After losing the connection it sends
//! the same id with the resume flag and, in `delivered through`, the highest seq of the
//! server's direction its application got ([`AckState::reconnect`]). The accepting side
//! ([`AckState::accepting`]) answers from its session store: with the resume flag and its own
//! `delivered through` if it still has the session ([`AckState::adopt`]), without it if not
//! ([`AckState::start_session`]). Each side then drops what the peer says it delivered,
//! resends only what follows, and drops any DATA at or below the point it announced.
//!
//! | situation | delivery to the application | redelivery flag | message id |
//! |---|---|---|---|
//! | no session | at least once per connection; the client resends unacknowledged messages | "may be a repeat" | seq restarts per connection |
//! | same process keeps the session (cuts, RST, FIN, GOAWAY, a reconnect that takes the session over from a connection the server still thinks is alive) | **exactly once**, in order, both directions; except a message the accepting application was handed and did not finish ([`AckDriver::detach_session_unfinished`]: it panicked): delivered again | never set, except on that message | session id + seq |
//! | session lost (server restarted, linger expired, another server) | **at least once**: messages sent and not acknowledged are resent | set only on messages transmitted on an earlier connection and not acknowledged | the same on every delivery |
//!
//! The accepting side's drivers share one [`SessionHub`] (a server's sessions: the
//! [`SessionStore`] of sessions whose connection dropped, and the sessions attached to live
//! connections, for takeover); the framewire server and client do all of this themselves
//! (see the server's `Connection` docs, "Sessions").
//!
//! After a *crash* of the accepting side, a message that was written to the dead process's
//! socket but never read by it is flagged on its resend although it reaches the application
//! once: its fate is unknowable to the sender. Repeats are always flagged.
//!
//! *Acknowledged* means the receiving application is done with the message ([below
//! ](#when-a-message-is-acknowledged)); on a resume, the peer's `delivered through` also
//! counts as an acknowledgement of everything up to it: the application has those messages.
//! Each [`Delivery`] carries its [`MessageId`] (session id + seq, [`Delivery::id`]). When the
//! session is lost, the accepting side continues the session's numbering from the first DATA
//! it receives and its own direction after the connecting side's `delivered through`, so ids
//! stay stable and are never reused for another message.
//!
//! A resuming HELLO (window 4,096 messages and 1 MiB, max frame length 8 MiB, session
//! `00112233445566778899aabbccddeeff`, delivered through 5):
//!
//! ```text
//! 00 00 00 2b  01  46 57 41 4b  02  01  00 00 10 00  00 10 00 00  00 80 00 00
//! 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff   session id
//! 00 00 00 00 00 00 00 05                           delivered through 5
//! ```
//!
//! ```
//! use bytes::BytesMut;
//! use framewire_codec::{ack::{AckFrame, Hello}, FrameCodec};
//! use tokio_util::codec::Decoder;
//!
//! let mut bytes = vec![
//!     0x00, 0x00, 0x00, 0x2b, 0x01, 0x46, 0x57, 0x41, 0x4b, 0x02,
//!     0x01, // flags: resume
//!     0x00, 0x00, 0x10, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00,
//!     0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
//!     0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, // session id
//! ];
//! bytes.extend_from_slice(&5u64.to_be_bytes()); // delivered through 5
//! let frame = FrameCodec::new().decode(&mut BytesMut::from(&bytes[..]))?.expect("a frame");
//! let mut expected = Hello::new(4096, 1024 * 1024, 8 * 1024 * 1024);
//! expected.session = [
//!     0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
//!     0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
//! ];
//! expected.delivered = 5;
//! expected.resume = true;
//! assert_eq!(AckFrame::parse(&frame)?, AckFrame::Hello(expected));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Worked example: a handler that deduplicates after a server restart
//!
//! While the server keeps the session nothing is repeated; after a restart a message may come
//! again, flagged, with the same id. A handler that must act once keeps the ids it acted on
//! (in the store it acts on, so they survive the restart with it) and skips a repeat with one
//! lookup. Here the two engines stand for the client and the server, without sockets:
//!
//! ```
//! use std::collections::{HashMap, HashSet};
//! use bytes::Bytes;
//! use framewire_codec::ack::{
//!     new_session_id, AckConfig, AckState, Delivery, MessageId, SessionId, SessionStatus,
//! };
//!
//! // Moves frames one way; the server answers session requests from its store.
//! fn pump(
//!     from: &mut AckState,
//!     to: &mut AckState,
//!     store: &mut HashMap<SessionId, AckState>,
//! ) -> Result<Vec<Delivery>, Box<dyn std::error::Error>> {
//!     let mut got = Vec::new();
//!     while let Some(frame) = from.poll_transmit() {
//!         got.extend(to.handle_frame(frame.to_bytes())?);
//!         if let Some(req) = to.session_request() {
//!             match store.remove(&req.id) {
//!                 Some(stored) => to.adopt(stored)?,
//!                 None => to.start_session()?,
//!             }
//!         }
//!     }
//!     Ok(got)
//! }
//!
//! let config = AckConfig::new();
//! let mut client = AckState::with_session(config, 1 << 20, new_session_id()?);
//! let mut server = AckState::accepting(config, 1 << 20);
//! let mut store = HashMap::new(); // the server process's session store
//! let mut done: HashSet<MessageId> = HashSet::new(); // the handler's durable record
//! let mut actions = 0;
//! let mut handle = |d: &Delivery, done: &mut HashSet<MessageId>| {
//!     if done.insert(d.id()) {
//!         actions += 1; // act on the message once
//!     }
//! };
//!
//! pump(&mut client, &mut server, &mut store)?; // HELLO: a new session
//! pump(&mut server, &mut client, &mut store)?;
//! client.send(Bytes::from_static(b"debit 10"), false)?;
//! for d in pump(&mut client, &mut server, &mut store)? {
//!     handle(&d, &mut done); // acted on, but the process dies before the ACK goes out
//! }
//!
//! // The server restarts: a new process, an empty store. The client resumes.
//! client.reconnect(client.received_through());
//! let mut server = AckState::accepting(config, 1 << 20);
//! let mut store = HashMap::new();
//! pump(&mut client, &mut server, &mut store)?;
//! pump(&mut server, &mut client, &mut store)?;
//! assert_eq!(client.session_status(), SessionStatus::Lost);
//! let again = pump(&mut client, &mut server, &mut store)?;
//! assert!(again[0].redelivered, "it may have reached the handler before");
//! handle(&again[0], &mut done); // the same id: skipped
//! assert_eq!(actions, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Driving the state machine yourself
//!
//! A server with its own read and write paths feeds [`AckState::handle_frame`] with every
//! frame payload its [`FrameCodec`](crate::FrameCodec) decodes, reports
//! [`AckState::taken`] when its handler is done with a message and [`AckState::reader_idle`] when its
//! read buffer is empty, queues messages with [`AckState::send`] while
//! [`AckState::has_room`], and writes whatever [`AckState::poll_transmit`] returns (with
//! [`AckFrame::encode`], or [`data_header`] for vectored writes). See [`AckState`] for a
//! complete two-peer example. It calls [`AckState::handle_timeout`] at start and whenever
//! [`AckState::poll_timeout`] has passed, so keepalive and the peer timeout work.

mod config;
mod driver;
mod engine;
mod error;
mod framed;
mod session_hub;
mod session_store;
mod wire;

pub use config::{
    AckConfig, DEFAULT_KEEPALIVE, DEFAULT_MAX_UNACKED, DEFAULT_MAX_UNACKED_BYTES,
    DEFAULT_PEER_TIMEOUT, DEFAULT_WINDOW, DEFAULT_WINDOW_BYTES,
};
pub use driver::AckDriver;
pub use engine::{
    new_session_id, AckEvent, AckState, Delivery, MessageId, Outgoing, SessionRequest,
    SessionStatus, MAX_RESUME_SEQ,
};
pub use error::{AckError, ERROR_PREFIX_LEN};
pub use framed::{AckFramed, AckFramedBuilder, DEFAULT_WRITE_HIGH_WATER};
pub use session_hub::SessionHub;
pub use session_store::{
    SessionStore, DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSION_BYTES, DEFAULT_SESSION_LINGER,
};
pub use wire::{
    ack_bytes, data_header, AckFrame, FrameKind, GoAwayReason, Hello, SessionId, ACK_LEN,
    DATA_HEADER_LEN, FLAG_HELLO_RESUME, FLAG_REDELIVERY, GOAWAY_LEN, HELLO_LEN, MAGIC, PING_LEN,
    VERSION,
};
