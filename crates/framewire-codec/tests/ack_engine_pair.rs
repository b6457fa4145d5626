//! The ack engine driven as a pair on virtual time: no sockets, no clock reads. Keepalive,
//! the peer timeout, GOAWAY, events, and windows bounded in bytes (clamped to local caps).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::ack::pump;
use framewire_codec::ack::{
    data_header, AckConfig, AckError, AckEvent, AckFrame, AckState, GoAwayReason, Hello,
    DEFAULT_KEEPALIVE, DEFAULT_PEER_TIMEOUT,
};

/// Two engines with these configs, HELLOs exchanged, timers armed at `t0`.
fn pair(a: AckConfig, b: AckConfig, t0: Instant) -> (AckState, AckState) {
    let mut a = a.build(1 << 20);
    let mut b = b.build(1 << 20);
    a.handle_timeout(t0).unwrap();
    b.handle_timeout(t0).unwrap();
    assert!(pump(&mut a, &mut b).is_empty());
    assert!(pump(&mut b, &mut a).is_empty());
    (a, b)
}

fn kinds(frames: &[AckFrame<Bytes>]) -> Vec<String> {
    frames.iter().map(|f| f.kind().to_string()).collect()
}

fn drain(s: &mut AckState) -> Vec<AckFrame<Bytes>> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

#[test]
fn keepalive_ping_is_answered_and_keeps_the_connection_alive() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(AckConfig::new(), AckConfig::new(), t0);
    // Heard the HELLO: the next timer refreshes "last heard" without a PING.
    assert_eq!(a.poll_timeout(), Some(t0 + DEFAULT_KEEPALIVE));
    let mut now = t0;
    // Ten minutes of an idle connection in keepalive steps: PING, PONG, never a timeout.
    for _ in 0..40 {
        now += DEFAULT_KEEPALIVE;
        a.handle_timeout(now).unwrap();
        b.handle_timeout(now).unwrap();
        pump(&mut a, &mut b);
        pump(&mut b, &mut a);
        pump(&mut a, &mut b);
    }
    // Something was heard since the last tick: the timer is due now, and then re-armed ahead.
    let deadline = a.poll_timeout().unwrap();
    assert!(deadline >= now);
    a.handle_timeout(deadline).unwrap();
    assert!(a.poll_timeout().unwrap() > deadline);
    assert!(
        drain(&mut a).is_empty(),
        "no PING right after hearing from the peer"
    );
}

#[test]
fn silent_peer_times_out_with_the_reason() {
    let t0 = Instant::now();
    let (mut a, _b) = pair(AckConfig::new(), AckConfig::new(), t0);
    let mut pings = 0;
    let mut now;
    let err = loop {
        now = a.poll_timeout().unwrap();
        match a.handle_timeout(now) {
            Ok(()) => {
                pings += drain(&mut a)
                    .iter()
                    .filter(|f| matches!(f, AckFrame::Ping { .. }))
                    .count();
            }
            Err(e) => break e,
        }
        assert!(now - t0 < Duration::from_secs(600), "never timed out");
    };
    assert_eq!(pings, 1, "one PING per silence, not one per tick");
    assert!(matches!(err, AckError::PeerSilent { .. }), "{err:?}");
    // Heard at t0 (noted at the first tick, t0 + keepalive), timed out one peer timeout later.
    let expected = DEFAULT_KEEPALIVE + DEFAULT_PEER_TIMEOUT;
    assert_eq!(now - t0, expected);
    assert_eq!(
        err.to_string(),
        format!(
            "peer silent for {} ms (timeout {} ms; keepalive PING unanswered)",
            DEFAULT_PEER_TIMEOUT.as_millis(),
            DEFAULT_PEER_TIMEOUT.as_millis()
        )
    );
}

#[test]
fn timers_off_never_fire() {
    let config = AckConfig::new().keepalive(None).peer_timeout(None);
    let t0 = Instant::now();
    let (mut a, _b) = pair(config, config, t0);
    assert_eq!(a.poll_timeout(), None);
    a.handle_timeout(t0 + Duration::from_secs(86_400)).unwrap();
    assert!(drain(&mut a).is_empty());
}

#[test]
fn goaway_goes_after_the_data_and_is_an_event() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(AckConfig::new(), AckConfig::new(), t0);
    a.send(Bytes::from_static(b"last words"), false).unwrap();
    a.go_away(GoAwayReason::Shutdown);
    a.go_away(GoAwayReason::Idle); // only the first counts
    let frames = drain(&mut a);
    assert_eq!(kinds(&frames), ["DATA", "GOAWAY"]);
    for f in frames {
        b.handle_frame(f.to_bytes()).unwrap();
    }
    assert_eq!(b.peer_going_away(), Some(GoAwayReason::Shutdown));
    assert_eq!(
        b.poll_event(),
        Some(AckEvent::GoAway {
            reason: GoAwayReason::Shutdown,
            through: 0
        })
    );
    assert_eq!(b.poll_event(), None);
}

#[test]
fn acked_and_window_opened_events_are_coalesced() {
    let cfg = AckConfig::new().window(2);
    let t0 = Instant::now();
    let (mut a, mut b) = pair(cfg, cfg, t0);
    a.send(Bytes::from_static(b"1"), false).unwrap();
    a.send(Bytes::from_static(b"2"), false).unwrap();
    assert!(!a.has_room());
    let got = pump(&mut a, &mut b);
    b.taken(got[0].seq).unwrap();
    pump(&mut b, &mut a); // ACK 1 (threshold 1)
    b.taken(got[1].seq).unwrap();
    pump(&mut b, &mut a); // ACK 2
    assert_eq!(a.poll_event(), Some(AckEvent::Acked { through: 2 }));
    assert_eq!(a.poll_event(), Some(AckEvent::WindowOpened));
    assert_eq!(a.poll_event(), None);
}

#[test]
fn a_grant_of_u32_max_is_clamped_to_the_local_caps() {
    let greedy = AckConfig::new().window(u32::MAX).window_bytes(u32::MAX);
    let careful = AckConfig::new().max_unacked(4).max_unacked_bytes(100);
    let t0 = Instant::now();
    let (mut a, _b) = pair(careful, greedy, t0);
    assert_eq!(a.peer_window(), u32::MAX);
    assert_eq!((a.send_window(), a.send_window_bytes()), (4, 100));
    let sixty = Bytes::from(vec![7u8; 60]);
    a.send(sixty.clone(), false).unwrap();
    a.send(sixty.clone(), false).unwrap(); // 60 < 100: one frame may overshoot
    let err = a.send(sixty, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no room to send: 2 messages (120 bytes) unacknowledged, the window is 4 messages \
         (100 bytes)"
    );
    assert_eq!(a.in_flight_bytes(), 120);
}

#[test]
fn a_message_larger_than_the_byte_window_goes_alone() {
    let small = AckConfig::new().window_bytes(10);
    let t0 = Instant::now();
    let (mut a, mut b) = pair(AckConfig::new(), small, t0);
    a.send(Bytes::from(vec![1u8; 1000]), false).unwrap();
    assert!(!a.has_room(), "nothing more until it is acknowledged");
    let got = pump(&mut a, &mut b);
    assert_eq!(got[0].payload.len(), 1000);
    b.taken(1).unwrap();
    b.reader_idle();
    pump(&mut b, &mut a);
    assert!(a.has_room());
    assert_eq!(a.in_flight_bytes(), 0);
}

#[test]
fn data_beyond_the_byte_window_is_refused_with_numbers() {
    let small = AckConfig::new().window_bytes(100);
    let t0 = Instant::now();
    // A hostile peer: sends HELLO, then DATA ignoring the byte window.
    let mut me = small.build(1 << 20);
    me.handle_timeout(t0).unwrap();
    me.handle_frame(Bytes::copy_from_slice(
        &Hello::new(8, 1 << 20, 1 << 20).to_bytes(),
    ))
    .unwrap();
    let data = |seq: u64, len: usize| {
        let mut v = data_header(seq, false).to_vec();
        v.resize(v.len() + len, 0);
        Bytes::from(v)
    };
    me.handle_frame(data(1, 60)).unwrap();
    me.handle_frame(data(2, 60)).unwrap(); // 60 < 100 before it: allowed, overshoots
    let err = me.handle_frame(data(3, 1)).unwrap_err();
    assert!(err.is_peer_fault());
    assert_eq!(
        err.to_string(),
        "DATA 3 of 1 bytes exceeds the granted window of 100 bytes: 120 bytes were already \
         unacknowledged"
    );
    assert_eq!(me.received_unacked_bytes(), 120);
}

#[test]
fn acks_free_the_byte_window_on_both_sides() {
    let cfg = AckConfig::new().window_bytes(100);
    let t0 = Instant::now();
    let (mut a, mut b) = pair(cfg, cfg, t0);
    let mut taken = 0;
    // 1,000 messages of 30 bytes through a 100-byte window: the window refills every time.
    for i in 0..1000u64 {
        while !a.has_room() {
            for d in pump(&mut a, &mut b) {
                taken = d.seq;
            }
            b.taken(taken).unwrap();
            b.reader_idle();
            pump(&mut b, &mut a);
        }
        assert_eq!(a.send(Bytes::from(vec![0u8; 30]), false).unwrap(), i + 1);
        assert!(a.in_flight_bytes() <= 100 + 30);
        assert!(b.received_unacked_bytes() <= 100 + 30);
    }
}
