//! The accepting side's session store on virtual time: linger, caps on sessions and bytes, and
//! sessions under attack (a flood of HELLOs naming random ids, more sessions than the cap):
//! the store stays within its bounds and hands a session only to a HELLO naming its id.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use framewire_codec::ack::{
    AckConfig, AckFrame, AckState, Hello, SessionId, SessionStatus, SessionStore,
};

fn config() -> AckConfig {
    let mut c = AckConfig::new();
    c.window(8).window_bytes(4096);
    c
}

/// A client HELLO naming `id`.
fn hello(id: SessionId, resume: bool, delivered: u64) -> Bytes {
    let mut h = Hello::new(8, 4096, 1 << 16);
    h.session = id;
    h.resume = resume;
    h.delivered = delivered;
    AckFrame::<Bytes>::Hello(h).to_bytes()
}

/// A server connection state after the client's HELLO, answered from `store`.
fn accept(store: &mut SessionStore, hello: Bytes, now: Instant) -> AckState {
    let mut s = AckState::accepting(config(), 1 << 16);
    assert!(s.handle_frame(hello).unwrap().is_none());
    store.resolve(&mut s, now).unwrap();
    s
}

/// A server state for session `id` holding `unacked` messages of `len` bytes each.
fn session_with_unacked(id: SessionId, unacked: usize, len: usize, now: Instant) -> AckState {
    let mut store = SessionStore::new();
    let mut s = accept(&mut store, hello(id, false, 0), now);
    assert_eq!(s.session_status(), SessionStatus::New);
    for _ in 0..unacked {
        s.send(Bytes::from(vec![0u8; len]), false).unwrap();
    }
    s
}

/// Deterministic pseudo-random ids (xorshift): the attacker's guesses.
fn ids(n: usize, mut x: u64) -> Vec<SessionId> {
    (0..n)
        .map(|_| {
            let mut id = [0u8; 16];
            for chunk in id.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_be_bytes());
            }
            id
        })
        .collect()
}

#[test]
fn kept_session_resumes_only_under_its_id_and_until_linger_ends() {
    let t0 = Instant::now();
    let mut store = SessionStore::new();
    store.set_linger(Duration::from_secs(10));
    let id = [0xab; 16];
    let s = session_with_unacked(id, 3, 10, t0);
    assert!(store.keep(s, 0, t0));
    assert_eq!((store.len(), store.bytes()), (1, 30));

    // A HELLO naming another id gets a fresh session; the kept one is untouched.
    let other = accept(&mut store, hello([0xac; 16], true, 0), t0);
    assert_eq!(other.session_id(), [0xac; 16]);
    assert_eq!(other.session_status(), SessionStatus::Lost);
    assert_eq!(other.in_flight(), 0);
    assert_eq!(store.len(), 1);

    // The right id resumes it, with its 3 unacknowledged messages, before the linger ends.
    let resumed = accept(&mut store, hello(id, true, 0), t0 + Duration::from_secs(9));
    assert_eq!(resumed.session_status(), SessionStatus::Resumed);
    assert_eq!(resumed.in_flight(), 3);
    assert!(store.is_empty());

    // Kept again; after the linger time it is gone and a resume falls back.
    assert!(store.keep(resumed, 0, t0 + Duration::from_secs(9)));
    assert_eq!(store.next_expiry(), Some(t0 + Duration::from_secs(19)));
    let late = accept(&mut store, hello(id, true, 0), t0 + Duration::from_secs(19));
    assert_eq!(late.session_status(), SessionStatus::Lost);
    assert_eq!(late.in_flight(), 0);
    assert_eq!((store.len(), store.bytes(), store.expired()), (0, 0, 1));
}

#[test]
fn flood_of_random_ids_stays_within_the_caps() {
    let t0 = Instant::now();
    let mut store = SessionStore::new();
    store.set_max_sessions(100).set_max_bytes(10_000);
    // The honest client's session, kept first.
    let honest = [0x42; 16];
    assert!(store.keep(session_with_unacked(honest, 2, 100, t0), 0, t0));

    // 5,000 attacking connections, each naming a random id (resuming or not), then dropping:
    // each is kept (it had a session), so older ones are evicted.
    for (i, id) in ids(5_000, 0x9e37_79b9_7f4a_7c15).into_iter().enumerate() {
        let now = t0 + Duration::from_millis(i as u64);
        let mut s = accept(&mut store, hello(id, i % 2 == 0, i as u64), now);
        assert_eq!(s.session_id(), id, "an attacker only ever gets its own id");
        assert_ne!(s.session_id(), honest);
        for _ in 0..(i % 4) {
            if s.has_room() {
                s.send(Bytes::from(vec![1u8; 50]), false).unwrap();
            }
        }
        store.keep(s, 0, now);
        assert!(store.len() <= 100, "{} sessions kept", store.len());
        assert!(store.bytes() <= 10_000, "{} bytes kept", store.bytes());
    }
    assert_eq!(store.len(), 100);
    assert!(store.evicted() >= 4_900, "{} evicted", store.evicted());
    // The honest session was the oldest: evicted, so its client falls back to at-least-once
    // (never handed to anyone else).
    let back = accept(
        &mut store,
        hello(honest, true, 0),
        t0 + Duration::from_secs(6),
    );
    assert_eq!(back.session_status(), SessionStatus::Lost);
    assert_eq!(back.in_flight(), 0);
}

#[test]
fn byte_cap_evicts_oldest_and_refuses_a_session_larger_than_the_cap() {
    let t0 = Instant::now();
    let mut store = SessionStore::new();
    store.set_max_bytes(1_000);
    assert!(store.keep(session_with_unacked([1; 16], 4, 200, t0), 0, t0));
    assert!(store.keep(session_with_unacked([2; 16], 1, 200, t0), 0, t0));
    assert_eq!(store.bytes(), 1_000);
    // 400 more bytes: the oldest (800 bytes) goes.
    assert!(store.keep(session_with_unacked([3; 16], 2, 200, t0), 0, t0));
    assert_eq!((store.len(), store.bytes(), store.evicted()), (2, 600, 1));
    // One session over the whole cap is not kept at all.
    assert!(!store.keep(session_with_unacked([4; 16], 6, 200, t0), 0, t0));
    assert_eq!((store.len(), store.bytes()), (2, 600));
}

#[test]
fn bad_resume_numbers_are_refused_and_drop_the_session() {
    let t0 = Instant::now();
    let mut store = SessionStore::new();
    let id = [9; 16];
    assert!(store.keep(session_with_unacked(id, 2, 10, t0), 0, t0));
    let mut s = AckState::accepting(config(), 1 << 16);
    s.handle_frame(hello(id, true, 3)).unwrap();
    let err = store.resolve(&mut s, t0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "peer resumes the session saying it delivered through message 3, but only 2 were sent"
    );
    assert!(err.is_peer_error());
    assert!(store.is_empty());
}
