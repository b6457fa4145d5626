//! Fuzz target bodies: each takes the fuzzer's bytes and checks invariants, panicking (the
//! fuzzer's signal) only when one is broken.
//!
//! This file is compiled twice: by the cargo-fuzz workspace in `fuzz/` (through `src/lib.rs`)
//! and by `crates/framewire-codec/tests/fuzz_corpus.rs` (through `#[path]`), which replays every
//! committed corpus file on stable Rust in CI. Keep it free of anything but `framewire_codec`,
//! `bytes`, `tokio_util` and `arbitrary`.
#![allow(dead_code)]

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use framewire_codec::{ByteOrder, FrameCodec, FrameError, OversizedFrame, GROWTH_STEP};
use tokio_util::codec::{Decoder, Encoder};

/// Codec settings chosen by the fuzzer.
#[derive(Debug, Arbitrary)]
struct Settings {
    /// Maximum frame length: small, so oversized frames are common, or the default.
    small_max: Option<u16>,
    little_endian: bool,
    discard: bool,
}

impl Settings {
    fn codec(&self) -> FrameCodec {
        FrameCodec::builder()
            .max_frame_len(
                self.small_max
                    .map_or(framewire_codec::DEFAULT_MAX_FRAME_LEN, usize::from),
            )
            .byte_order(if self.little_endian {
                ByteOrder::LittleEndian
            } else {
                ByteOrder::BigEndian
            })
            .oversized_frame(if self.discard {
                OversizedFrame::Discard
            } else {
                OversizedFrame::Error
            })
            .build()
    }
}

/// What decoding a byte stream produced: the frames, then how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<Vec<u8>>,
    end: Result<(), String>,
    discarded: (u64, u64),
}

/// Feeds `stream` to `codec` in chunks of the given sizes (cycled), then EOF, checking after
/// every chunk that the buffer's capacity tracks the bytes buffered, not the bytes announced.
/// Before each `decode` call, the next entry of `fast` (cycled; none if empty) says whether to
/// try the fast path `decode_buffered` first, as hand-written read loops do.
fn decode_in_chunks(mut codec: FrameCodec, stream: &[u8], sizes: &[u8], fast: &[bool]) -> Outcome {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut sizes = sizes.iter().map(|s| usize::from(*s).max(1)).cycle();
    let mut fast = fast.iter().copied().cycle();
    let end = loop {
        if rest.is_empty() {
            break loop {
                match codec.decode_eof(&mut buf) {
                    Ok(Some(f)) => frames.push(f.to_vec()),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e.to_string()),
                }
            };
        }
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        let peak = buf.len();
        let step = loop {
            if fast.next().unwrap_or(false) {
                if let Some(f) = codec.decode_buffered(&mut buf) {
                    frames.push(f.to_vec());
                    continue;
                }
            }
            match codec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f.to_vec()),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        // Memory follows bytes received: at most about twice what is buffered, plus one step.
        assert!(
            buf.capacity() <= 2 * peak + GROWTH_STEP + 64 * 1024,
            "capacity {} with {} bytes buffered",
            buf.capacity(),
            peak
        );
        if let Err(e) = step {
            assert!(e.is_peer_fault(), "decode produced a non-peer error: {e}");
            break Err(e.to_string());
        }
    };
    let d = codec.discarded();
    Outcome {
        frames,
        end,
        discarded: (d.frames, d.bytes),
    }
}

/// The plain decoder on arbitrary bytes, with chunk boundaries (and, for one of the runs, calls
/// of the fast path `decode_buffered` mixed in) chosen by the input: the result must not depend
/// on the chunking or on the fast path, and memory must track bytes received.
pub fn plain_decode(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(settings) = Settings::arbitrary(&mut u) else {
        return;
    };
    let Ok(sizes) = <Vec<u8>>::arbitrary(&mut u) else {
        return;
    };
    let Ok(fast) = <Vec<bool>>::arbitrary(&mut u) else {
        return;
    };
    let stream = u.take_rest();
    let whole = decode_in_chunks(settings.codec(), stream, &[], &[]);
    let chunked = decode_in_chunks(settings.codec(), stream, &sizes, &fast);
    let bytewise = decode_in_chunks(settings.codec(), stream, &[1], &[]);
    assert_eq!(whole.frames, chunked.frames);
    assert_eq!(whole.end, chunked.end);
    assert_eq!(whole.frames, bytewise.frames);
    assert_eq!(whole.end, bytewise.end);
    assert_eq!(whole.discarded, chunked.discarded);
    assert_eq!(whole.discarded, bytewise.discarded);
}

/// Encode then decode an arbitrary list of frames: the same list comes back, whatever the
/// chunking; a frame over the limit is refused by the encoder and writes nothing.
pub fn plain_roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(settings) = Settings::arbitrary(&mut u) else {
        return;
    };
    let Ok(frames) = <Vec<Vec<u8>>>::arbitrary(&mut u) else {
        return;
    };
    let Ok(sizes) = <Vec<u8>>::arbitrary(&mut u) else {
        return;
    };
    let mut codec = settings.codec();
    let mut wire = BytesMut::new();
    let mut sent = Vec::new();
    for f in &frames {
        let before = wire.len();
        match codec.encode(bytes::Bytes::copy_from_slice(&f[..]), &mut wire) {
            Ok(()) => sent.push(f.clone()),
            Err(FrameError::OutgoingTooLong { len, max }) => {
                assert_eq!(len, f.len());
                assert!(len > max);
                assert_eq!(wire.len(), before, "a refused frame wrote bytes");
            }
            Err(e) => panic!("unexpected encode error: {e}"),
        }
    }
    // Through the fast path wherever it applies: the same frames must come back.
    let got = decode_in_chunks(settings.codec(), &wire, &sizes, &[true]);
    assert_eq!(got.end, Ok(()));
    assert_eq!(got.frames, sent);
}

/// Representative typed messages for the typed-decoding target.
pub mod typed_types {
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    /// A chat message: integers and strings.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct Chat {
        pub id: u64,
        pub user: String,
        pub text: String,
        pub at: i64,
    }

    /// An enum with unit, tuple and struct variants, bytes and options.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub enum Command {
        Ping,
        Join(String),
        Blob { data: Vec<u8>, tag: Option<u16> },
        Move(f32, f32),
    }

    /// Nested collections.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct Nested {
        pub rooms: BTreeMap<String, Vec<Chat>>,
        pub flags: Vec<Vec<bool>>,
        pub next: Option<Box<Nested>>,
    }
}

/// Decodes `data` as `T` with format `F`. On success, re-encoding and decoding again must give
/// the same value; on failure, the error must be a per-message error, never a fatal one.
fn typed_one<F, T>(data: &[u8])
where
    F: framewire_codec::typed::Format,
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    use framewire_codec::typed::{decode, encode};
    match decode::<F, T>(data) {
        Ok(value) => {
            let again = encode::<F, T>(&value).expect("a decoded value re-encodes");
            let back = decode::<F, T>(&again).expect("a re-encoded value decodes");
            // NaN != NaN: compare encodings instead of values.
            let twice = encode::<F, T>(&back).expect("re-encodes");
            assert_eq!(again, twice);
        }
        Err(e) => assert!(
            e.is_connection_usable(),
            "typed decode error marked unusable: {e}"
        ),
    }
}

/// Typed decoding of arbitrary bytes for a few representative types, in both formats.
pub fn typed_decode(data: &[u8]) {
    use framewire_codec::typed::{Bincode, Postcard};
    use typed_types::{Chat, Command, Nested};
    let Some((&which, data)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => typed_one::<Bincode, Chat>(data),
        1 => typed_one::<Bincode, Command>(data),
        2 => typed_one::<Bincode, Nested>(data),
        3 => typed_one::<Postcard, Chat>(data),
        4 => typed_one::<Postcard, Command>(data),
        _ => typed_one::<Postcard, Nested>(data),
    }
}

/// Ack-mode frame parsing: arbitrary bytes never panic, and whatever parses re-encodes to
/// exactly the bytes it was parsed from (the layout has one encoding per frame).
pub fn ack_parse(data: &[u8]) {
    use framewire_codec::ack::AckFrame;
    if let Ok(frame) = AckFrame::parse(data) {
        let owned = AckFrame::parse_bytes(bytes::Bytes::copy_from_slice(data))
            .expect("parse_bytes agrees with parse");
        assert_eq!(&owned.to_bytes()[..], data);
        assert_eq!(&frame.to_bytes()[..], data);
    }
}

/// One step of the ack state machine pair, chosen by the fuzzer.
#[derive(Debug, Arbitrary)]
enum AckOp {
    /// The side's application sends a message of this length.
    Send(u8),
    /// The side's machine hands its next frame to the wire.
    Transmit,
    /// The next frame on the wire towards the side's peer arrives there.
    Deliver,
    /// The side's application takes its next received message.
    Take,
    /// The side's reader reports it has nothing buffered.
    Idle,
    /// Arbitrary bytes arrive at the side as a frame (a hostile or broken peer).
    Garbage(Vec<u8>),
    /// Virtual time advances by this many seconds at the side (keepalive, peer timeout).
    Tick(u8),
    /// The side is going away (GOAWAY).
    GoAway,
}

struct AckSide {
    state: framewire_codec::ack::AckState,
    window: u32,
    window_bytes: u32,
    now: std::time::Instant,
    sent: Vec<bytes::Bytes>,
    wire: std::collections::VecDeque<bytes::Bytes>,
    inbox: std::collections::VecDeque<framewire_codec::ack::Delivery>,
    took: Vec<bytes::Bytes>,
}

impl AckSide {
    fn new(window: u32, window_bytes: u32, cap_bytes: u32, start: std::time::Instant) -> AckSide {
        let config = framewire_codec::ack::AckConfig::new()
            .window(window)
            .window_bytes(window_bytes)
            .max_unacked_bytes(cap_bytes);
        let mut state = config.build(1024);
        state.handle_timeout(start).expect("arming the timers");
        AckSide {
            state,
            window,
            window_bytes,
            now: start,
            sent: Vec::new(),
            wire: Default::default(),
            inbox: Default::default(),
            took: Vec::new(),
        }
    }
}

/// Invariants of the direction `tx` -> `rx`.
fn ack_invariants(tx: &AckSide, rx: &AckSide) {
    let acked = tx.state.acked_through();
    assert_eq!(
        &tx.sent[..rx.took.len()],
        &rx.took[..],
        "delivered in order, exactly once"
    );
    assert!(acked <= tx.state.transmitted_through());
    assert!(tx.state.transmitted_through() <= tx.sent.len() as u64);
    assert!(
        acked <= rx.took.len() as u64,
        "an ack means the application took it"
    );
    if tx.state.is_established() {
        assert!(
            tx.state.in_flight() <= u64::from(rx.window),
            "window exceeded"
        );
        // One frame (at most 255 bytes here) may overshoot the byte window, no more; and the
        // sender's own cap holds whatever the peer granted.
        let cap = u64::from(tx.state.config().get_max_unacked_bytes());
        assert!(
            tx.state.in_flight_bytes() <= u64::from(rx.window_bytes).min(cap) + 255,
            "byte window exceeded: {} bytes in flight",
            tx.state.in_flight_bytes()
        );
        assert!(rx.state.received_unacked_bytes() <= u64::from(rx.window_bytes) + 255);
    }
    let unacked: Vec<bytes::Bytes> = tx.state.unacked().map(|m| m.payload.clone()).collect();
    assert_eq!(
        &unacked[..],
        &tx.sent[acked as usize..],
        "unacked is the unacked suffix"
    );
}

/// Returns `false` once the side's machine reported a protocol error (the connection is over).
fn ack_step(me: &mut AckSide, peer: &mut AckSide, op: AckOp, counter: &mut u64) -> bool {
    match op {
        AckOp::Send(len) => {
            let payload = bytes::Bytes::from(vec![(*counter % 251) as u8; usize::from(len)]);
            let room = me.state.has_room();
            match me.state.send(payload.clone(), false) {
                Ok(seq) => {
                    assert!(room, "send succeeded without room");
                    *counter += 1;
                    me.sent.push(payload);
                    assert_eq!(seq, me.sent.len() as u64);
                }
                Err(e) => assert!(!room, "send refused with room: {e}"),
            }
        }
        AckOp::Transmit => {
            if let Some(f) = me.state.poll_transmit() {
                me.wire.push_back(f.to_bytes());
            }
        }
        AckOp::Deliver => {
            if let Some(f) = me.wire.pop_front() {
                match peer.state.handle_frame(f) {
                    Ok(Some(d)) => peer.inbox.push_back(d),
                    Ok(None) => {}
                    Err(e) => panic!("a well-behaved peer's frame was rejected: {e}"),
                }
            }
        }
        AckOp::Take => {
            if let Some(d) = me.inbox.pop_front() {
                me.state.taken(d.seq).expect("taking a delivered message");
                me.took.push(d.payload);
                assert_eq!(d.seq, me.took.len() as u64);
            }
        }
        AckOp::Idle => me.state.reader_idle(),
        AckOp::Tick(secs) => {
            me.now += std::time::Duration::from_secs(u64::from(secs));
            if let Err(e) = me.state.handle_timeout(me.now) {
                assert!(
                    matches!(e, framewire_codec::ack::AckError::PeerSilent { .. }),
                    "a timer may only fail with PeerSilent: {e}"
                );
                return false;
            }
        }
        AckOp::GoAway => me
            .state
            .go_away(framewire_codec::ack::GoAwayReason::Shutdown),
        AckOp::Garbage(bytes) => {
            // A hostile frame may be accepted only if it is well-formed; any error ends the
            // connection, and must carry a message.
            match me.state.handle_frame(bytes::Bytes::from(bytes)) {
                Ok(_) => return false,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    return false;
                }
            }
        }
    }
    true
}

/// The ack state machine pair driven by arbitrary operation sequences, checking its invariants
/// after every step; garbage from a hostile peer yields an error, never a panic.
pub fn ack_machine(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(wa), Ok(wb)) = (u.int_in_range(1u32..=8), u.int_in_range(1u32..=8)) else {
        return;
    };
    // Byte windows and caps from 1 byte (every message alone) to "never binding".
    let (Ok(ba), Ok(bb), Ok(ca), Ok(cb)) = (
        u.int_in_range(1u32..=2048),
        u.int_in_range(1u32..=2048),
        u.int_in_range(1u32..=u32::MAX),
        u.int_in_range(1u32..=u32::MAX),
    ) else {
        return;
    };
    let start = std::time::Instant::now();
    let mut a = AckSide::new(wa, ba, ca, start);
    let mut b = AckSide::new(wb, bb, cb, start);
    let mut counter = 0;
    // `arbitrary` keeps producing default values once the input runs out: stop there, and
    // bound the number of steps regardless.
    for _ in 0..10_000 {
        if u.is_empty() {
            return;
        }
        let Ok((on_a, op)) = <(bool, AckOp)>::arbitrary(&mut u) else {
            return;
        };
        let ok = if on_a {
            ack_step(&mut a, &mut b, op, &mut counter)
        } else {
            ack_step(&mut b, &mut a, op, &mut counter)
        };
        if !ok {
            return;
        }
        ack_invariants(&a, &b);
        ack_invariants(&b, &a);
    }
}
