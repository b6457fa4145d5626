//! The accepting side's engine state before its HELLO: while the peer's session request is
//! unanswered (a takeover wait, a shutdown or idle close meanwhile) nothing but that HELLO may
//! go out first; a GOAWAY or keepalive PING queued meanwhile follows it.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use framewire_codec::ack::{AckConfig, AckFrame, AckState, GoAwayReason, Hello};

fn config() -> AckConfig {
    AckConfig::new()
        .keepalive(Some(Duration::from_secs(5)))
        .peer_timeout(Some(Duration::from_secs(60)))
}

/// A client HELLO naming a session (resuming it).
fn hello() -> Bytes {
    let mut h = Hello::new(8, 4096, 1 << 16);
    h.session = [9; 16];
    h.resume = true;
    h.delivered = 0;
    AckFrame::<Bytes>::Hello(h).to_bytes()
}

fn kinds(s: &mut AckState) -> Vec<&'static str> {
    std::iter::from_fn(|| s.poll_transmit())
        .map(|f| match f {
            AckFrame::Hello(_) => "hello",
            AckFrame::Ack { .. } => "ack",
            AckFrame::Data { .. } => "data",
            AckFrame::Ping { .. } => "ping",
            AckFrame::Pong { .. } => "pong",
            AckFrame::GoAway { .. } => "goaway",
        })
        .collect()
}

/// Review-2 S1: a GOAWAY (shutdown or idle close during a takeover wait) and a keepalive
/// PING went out before the accepting side's HELLO, which every peer takes as a broken
/// handshake (`ExpectedHello`).
#[test]
fn nothing_goes_out_before_the_accepting_sides_hello() {
    let t0 = Instant::now();
    let mut s = AckState::accepting(config(), 1 << 16);
    s.handle_timeout(t0).unwrap();
    // Before the peer's HELLO: nothing, whatever is queued.
    s.go_away(GoAwayReason::Shutdown);
    assert_eq!(kinds(&mut s), Vec::<&str>::new());
    assert!(!s.has_transmit());

    let mut s = AckState::accepting(config(), 1 << 16);
    s.handle_timeout(t0).unwrap();
    assert!(s.handle_frame(hello()).unwrap().is_none());
    assert!(s.session_request().is_some());
    // The request waits (a takeover): the keepalive comes due, the server shuts down.
    s.handle_timeout(t0 + Duration::from_secs(1)).unwrap();
    s.handle_timeout(t0 + Duration::from_secs(7)).unwrap();
    s.go_away(GoAwayReason::Shutdown);
    assert_eq!(kinds(&mut s), Vec::<&str>::new(), "before the HELLO");
    assert!(!s.has_transmit());
    // Answered: the HELLO first, then what waited.
    s.start_session().unwrap();
    assert_eq!(kinds(&mut s), vec!["hello", "ping", "goaway"]);
}
