//! The ack-mode state machine without sockets: each protocol violation produces its error,
//! plus the ack-coalescing and bookkeeping rules.

// Helpers outside #[test] functions unwrap too: this is test code.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::ack::{established, pump};
use framewire_codec::ack::{
    ack_bytes, data_header, AckError, AckFrame, AckState, FrameKind, Hello, HELLO_LEN, VERSION,
};

fn hello_bytes(version: u8, window: u32, max: u32) -> Bytes {
    let mut h = Hello::new(window, 1 << 20, max).to_bytes();
    h[5] = version;
    Bytes::copy_from_slice(&h)
}

fn data(seq: u64, payload: &[u8]) -> Bytes {
    let mut v = data_header(seq, false).to_vec();
    v.extend_from_slice(payload);
    Bytes::from(v)
}

fn ack(through: u64) -> Bytes {
    Bytes::copy_from_slice(&ack_bytes(through))
}

/// A machine that has received a valid HELLO from a peer granting `window`.
fn after_hello(local_window: u32, peer_window: u32) -> AckState {
    let mut s = AckState::new(local_window, 1 << 20);
    assert!(s
        .handle_frame(hello_bytes(VERSION, peer_window, 1 << 20))
        .unwrap()
        .is_none());
    s
}

#[test]
fn plain_peer_gets_expected_hello_naming_its_bytes() {
    let mut s = AckState::new(8, 1024);
    let err = s.handle_frame(Bytes::from_static(b"hello")).unwrap_err();
    assert!(
        matches!(err, AckError::ExpectedHello { len: 5, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "expected HELLO, got a frame of 5 bytes starting 68 65 6c 6c 6f"
    );
    assert!(err.is_peer_fault());
}

#[test]
fn long_non_hello_frame_shows_only_its_start() {
    let mut s = AckState::new(8, 1024);
    let err = s.handle_frame(data(1, b"0123456789")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected HELLO, got a frame of 20 bytes starting 02 00 00 00 00 00 00 00 ..."
    );
    // The same through the parsed-frame input.
    let err = s.handle(AckFrame::Ack { through: 3 }).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected HELLO, got a frame of 9 bytes starting 03 00 00 00 00 00 00 00 ..."
    );
    let err = s.handle_frame(Bytes::new()).unwrap_err();
    assert_eq!(err.to_string(), "expected HELLO, got a frame of 0 bytes");
}

#[test]
fn version_mismatch() {
    let mut s = AckState::new(8, 1024);
    // A version 1 peer (14-byte HELLO) is named as such.
    let err = s
        .handle_frame(Bytes::from_static(b"\x01FWAK\x01\0\0\0\x40\0\x80\0\0"))
        .unwrap_err();
    assert!(matches!(
        err,
        AckError::VersionMismatch { ours: 2, theirs: 1 }
    ));
    assert_eq!(
        err.to_string(),
        "peer speaks ack-mode version 1, this side speaks version 2"
    );
    let mut s = AckState::new(8, 1024);
    let err = s.handle_frame(hello_bytes(3, 8, 1024)).unwrap_err();
    assert!(matches!(
        err,
        AckError::VersionMismatch { ours: 2, theirs: 3 }
    ));
    // Also through the parsed input.
    let mut s = AckState::new(8, 1024);
    let h = Hello {
        version: 9,
        ..Hello::new(8, 1024, 1024)
    };
    assert!(matches!(
        s.handle(AckFrame::Hello(h)),
        Err(AckError::VersionMismatch { ours: 2, theirs: 9 })
    ));
}

#[test]
fn second_hello() {
    let mut s = after_hello(8, 8);
    let err = s.handle_frame(hello_bytes(VERSION, 3, 999)).unwrap_err();
    assert!(matches!(
        err,
        AckError::SecondHello {
            window: 3,
            max_frame_len: 999
        }
    ));
    assert!(err.to_string().contains("window 3"), "{err}");
}

#[test]
fn unusable_hellos() {
    let mut s = AckState::new(8, 1024);
    assert!(matches!(
        s.handle_frame(hello_bytes(VERSION, 0, 1024)),
        Err(AckError::ZeroWindow { unit: "messages" })
    ));
    let mut zero_bytes = Hello::new(4, 1024, 1024).to_bytes();
    zero_bytes[11..15].copy_from_slice(&[0; 4]);
    let err = AckState::new(8, 1024)
        .handle_frame(Bytes::copy_from_slice(&zero_bytes))
        .unwrap_err();
    assert_eq!(err.to_string(), "peer granted a window of 0 bytes");
    let mut flags = Hello::new(4, 1024, 1024).to_bytes();
    flags[6] = 0x80;
    let err = AckState::new(8, 1024)
        .handle_frame(Bytes::copy_from_slice(&flags))
        .unwrap_err();
    assert!(matches!(err, AckError::ExpectedHello { .. }), "{err}");
    assert!(matches!(
        AckFrame::parse(&flags),
        Err(AckError::UnknownHelloFlags { flags: 0x80 })
    ));
    let mut s = AckState::new(8, 1024);
    let err = s.handle_frame(hello_bytes(VERSION, 4, 3)).unwrap_err();
    assert!(matches!(
        err,
        AckError::PeerMaxTooSmall {
            max_frame_len: 3,
            min: HELLO_LEN
        }
    ));
}

#[test]
fn unknown_kind_after_hello() {
    let mut s = after_hello(8, 8);
    let err = s
        .handle_frame(Bytes::from_static(&[0x07, 1, 2, 3]))
        .unwrap_err();
    assert!(matches!(err, AckError::UnknownKind { kind: 7, len: 4 }));
    assert_eq!(
        err.to_string(),
        "unknown ack-mode frame kind 0x07 in a frame of 4 bytes"
    );
}

#[test]
fn malformed_frames() {
    let mut s = after_hello(8, 8);
    let err = s.handle_frame(Bytes::new()).unwrap_err();
    assert!(matches!(err, AckError::EmptyFrame));

    let err = s
        .handle_frame(Bytes::from_static(&[3, 0, 0, 1]))
        .unwrap_err();
    assert!(matches!(
        err,
        AckError::BadLength {
            kind: FrameKind::Ack,
            len: 4,
            expected: 9
        }
    ));
    assert_eq!(err.to_string(), "ACK frame of 4 bytes, expected 9 bytes");

    let err = s.handle_frame(Bytes::from_static(&[2, 0, 0])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "DATA frame of 3 bytes, expected at least 10 bytes"
    );

    let mut bad = data_header(1, false);
    bad[9] = 0x82;
    let err = s.handle_frame(Bytes::copy_from_slice(&bad)).unwrap_err();
    assert!(matches!(
        err,
        AckError::UnknownFlags {
            seq: 1,
            flags: 0x82
        }
    ));

    let err = AckFrame::parse(b"\x01FWAX\x01").unwrap_err();
    assert!(matches!(err, AckError::BadMagic { magic } if &magic == b"FWAX"));
    let err = AckFrame::parse(b"\x01FWAK\x02\0\0").unwrap_err();
    assert!(matches!(
        err,
        AckError::BadLength {
            kind: FrameKind::Hello,
            len: 8,
            expected: 43
        }
    ));
    for (kind, name, len) in [(4u8, "GOAWAY", 10), (5, "PING", 9), (6, "PONG", 9)] {
        let err = AckFrame::parse(&[kind, 0, 0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{name} frame of 3 bytes, expected {len} bytes")
        );
    }
}

#[test]
fn ack_for_a_seq_never_sent() {
    let mut s = after_hello(8, 8);
    let err = s.handle_frame(ack(1)).unwrap_err();
    assert!(matches!(err, AckError::AckForUnsent { ack: 1, sent: 0 }));
    assert_eq!(
        err.to_string(),
        "ACK 1 for a message never sent: only 0 DATA frames were transmitted"
    );

    // Queued but not yet transmitted does not count as sent.
    let mut s = after_hello(8, 8);
    while s.poll_transmit().is_some() {}
    s.send(Bytes::from_static(b"a"), false).unwrap();
    s.send(Bytes::from_static(b"b"), false).unwrap();
    assert!(matches!(
        s.poll_transmit(),
        Some(AckFrame::Data { seq: 1, .. })
    ));
    assert!(matches!(
        s.handle_frame(ack(2)),
        Err(AckError::AckForUnsent { ack: 2, sent: 1 })
    ));
}

#[test]
fn ack_going_backwards() {
    let mut s = after_hello(8, 8);
    while s.poll_transmit().is_some() {}
    for p in [&b"a"[..], b"b", b"c"] {
        s.send(Bytes::copy_from_slice(p), false).unwrap();
    }
    while s.poll_transmit().is_some() {}
    s.handle_frame(ack(2)).unwrap();
    s.handle_frame(ack(2)).unwrap(); // a duplicate is harmless
    let err = s.handle_frame(ack(1)).unwrap_err();
    assert!(matches!(
        err,
        AckError::AckBackwards {
            ack: 1,
            previous: 2
        }
    ));
    assert_eq!(err.to_string(), "ACK went backwards from 2 to 1");
}

#[test]
fn data_out_of_sequence() {
    let mut s = after_hello(8, 8);
    let err = s.handle_frame(data(2, b"x")).unwrap_err();
    assert!(matches!(
        err,
        AckError::DataOutOfSequence {
            expected: 1,
            got: 2
        }
    ));
    assert_eq!(err.to_string(), "DATA 2 out of sequence: expected 1");

    let mut s = after_hello(8, 8);
    s.handle_frame(data(1, b"x")).unwrap();
    assert!(matches!(
        s.handle_frame(data(1, b"x")),
        Err(AckError::DataOutOfSequence {
            expected: 2,
            got: 1
        })
    ));
}

#[test]
fn data_beyond_granted_window() {
    let mut s = after_hello(2, 8);
    while s.poll_transmit().is_some() {}
    s.handle_frame(data(1, b"x")).unwrap();
    s.handle_frame(data(2, b"y")).unwrap();
    let err = s.handle_frame(data(3, b"z")).unwrap_err();
    assert!(matches!(
        err,
        AckError::DataBeyondWindow {
            seq: 3,
            window: 2,
            acked: 0
        }
    ));
    assert_eq!(
        err.to_string(),
        "DATA 3 exceeds the granted window of 2 (acknowledged through 0, so at most 2 was allowed)"
    );

    // Taking opens the window only once the ACK has been transmitted.
    let mut s = after_hello(2, 8);
    while s.poll_transmit().is_some() {}
    s.handle_frame(data(1, b"x")).unwrap();
    s.handle_frame(data(2, b"y")).unwrap();
    s.taken(1).unwrap(); // threshold 1: ACK 1 queued, not yet transmitted
    assert!(matches!(
        s.handle_frame(data(3, b"z")),
        Err(AckError::DataBeyondWindow { acked: 0, .. })
    ));
}

#[test]
fn local_misuse_is_an_error_not_a_panic() {
    let mut s = AckState::new(8, 1024);
    assert!(matches!(
        s.send(Bytes::from_static(b"x"), false),
        Err(AckError::WindowFull {
            in_flight: 0,
            window: 0,
            ..
        })
    ));
    let mut s = after_hello(8, 1);
    s.send(Bytes::from_static(b"x"), false).unwrap();
    let err = s.send(Bytes::from_static(b"y"), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no room to send: 1 messages (1 bytes) unacknowledged, the window is 1 messages \
         (1048576 bytes)"
    );
    assert!(!err.is_peer_fault() && err.is_connection_usable() && err.is_retryable());

    let mut s = AckState::new(8, 1024);
    s.handle_frame(hello_bytes(VERSION, 8, 50)).unwrap();
    assert!(matches!(
        s.send(Bytes::from(vec![0u8; 41]), false),
        Err(AckError::PayloadTooLong { len: 41, max: 40 })
    ));
    assert_eq!(s.send(Bytes::from(vec![0u8; 40]), false).unwrap(), 1);

    assert!(matches!(
        s.taken(1),
        Err(AckError::TakenNotReceived {
            seq: 1,
            received: 0
        })
    ));
}

#[test]
fn hello_first_then_acks_then_data() {
    let mut s = AckState::new(4, 1024);
    assert_eq!(
        s.poll_transmit(),
        Some(AckFrame::Hello(Hello::new(
            4,
            framewire_codec::ack::DEFAULT_WINDOW_BYTES,
            1024
        )))
    );
    assert_eq!(s.poll_transmit(), None);
    assert!(!s.has_room(), "no room before the peer's HELLO");
}

#[test]
fn acks_are_coalesced_at_half_the_window_or_when_idle() {
    let (mut a, mut b) = established(8, 8);
    for i in 0..8u8 {
        a.send(Bytes::from(vec![i]), false).unwrap();
    }
    assert!(!a.has_room());
    let got = pump(&mut a, &mut b);
    assert_eq!(got.len(), 8);
    // Taking 3 of 8 queues no ack (threshold 4)...
    b.taken(3).unwrap();
    assert_eq!(b.poll_transmit(), None);
    // ...the 4th does: one cumulative ACK.
    b.taken(4).unwrap();
    assert_eq!(b.poll_transmit(), Some(AckFrame::Ack { through: 4 }));
    assert_eq!(b.poll_transmit(), None);
    // Taken but below the threshold: only an idle reader acks it.
    b.taken(6).unwrap();
    assert_eq!(b.poll_transmit(), None);
    b.reader_idle();
    assert_eq!(b.poll_transmit(), Some(AckFrame::Ack { through: 6 }));
    b.reader_idle();
    assert_eq!(b.poll_transmit(), None, "nothing new to ack");

    a.handle(AckFrame::Ack { through: 4 }).unwrap();
    a.handle(AckFrame::Ack { through: 6 }).unwrap();
    assert_eq!(a.poll_acked(), Some(1..=6));
    assert_eq!(a.poll_acked(), None);
    assert_eq!(a.room(), 6);
    let left: Vec<_> = a.unacked().map(|m| m.seq).collect();
    assert_eq!(left, [7, 8]);
    assert_eq!(
        a.take_unacked(),
        [Bytes::from(vec![6u8]), Bytes::from(vec![7u8])]
    );
}

#[test]
fn window_one_acks_every_message() {
    let (mut a, mut b) = established(1, 1);
    for i in 0..5u8 {
        let seq = a.send(Bytes::from(vec![i]), false).unwrap();
        assert!(!a.has_room());
        let got = pump(&mut a, &mut b);
        assert_eq!(got.len(), 1);
        b.taken(got[0].seq).unwrap();
        assert!(pump(&mut b, &mut a).is_empty());
        assert_eq!(a.acked_through(), seq);
        assert!(a.has_room());
    }
}

#[test]
fn redelivery_flag_travels() {
    let (mut a, mut b) = established(4, 4);
    a.send(Bytes::from_static(b"again"), true).unwrap();
    a.send(Bytes::from_static(b"new"), false).unwrap();
    let got = pump(&mut a, &mut b);
    assert!(got[0].redelivered);
    assert!(!got[1].redelivered);
    assert_eq!((got[0].seq, got[1].seq), (1, 2));
}

#[test]
fn ack_threshold_of_a_whole_window_still_acks_without_idle_reports() {
    let (mut a, mut b) = established(4, 4);
    b.set_ack_threshold(100); // clamped to the window, 4
    assert_eq!(b.ack_threshold(), 4);
    for round in 0..3u64 {
        for i in 0..4u8 {
            a.send(Bytes::from(vec![i]), false).unwrap();
        }
        assert!(!a.has_room());
        let got = pump(&mut a, &mut b);
        assert_eq!(got.len(), 4);
        b.taken(got[2].seq).unwrap();
        assert_eq!(b.poll_transmit(), None, "3 of 4 taken: no ack yet");
        // No reader_idle: taking the whole window is enough.
        b.taken(got[3].seq).unwrap();
        assert_eq!(
            b.poll_transmit(),
            Some(AckFrame::Ack {
                through: 4 * (round + 1)
            })
        );
        a.handle(AckFrame::Ack {
            through: 4 * (round + 1),
        })
        .unwrap();
        assert_eq!(a.room(), 4);
    }
    b.set_ack_threshold(0);
    assert_eq!(b.ack_threshold(), 1);
}
