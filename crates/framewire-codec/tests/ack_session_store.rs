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
    AckConfig::new().window(8).window_bytes(4096)
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
    // Full by one cap or the other (the byte cap evicts only sessions holding bytes).
    assert!(
        store.len() == 100 || store.bytes() + 150 > 10_000,
        "{} sessions, {} bytes",
        store.len(),
        store.bytes()
    );
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
    assert!(err.is_peer_fault());
    assert!(store.is_empty());
}

/// A server state for a new session `id` that delivered `n` messages of the client's.
fn session_with_delivered(id: SessionId, n: u64, now: Instant) -> AckState {
    let mut store = SessionStore::new();
    let mut s = accept(&mut store, hello(id, false, 0), now);
    for seq in 1..=n {
        let data = AckFrame::Data {
            seq,
            redelivery: false,
            payload: Bytes::from_static(b"m"),
        };
        assert!(s.handle_frame(data.to_bytes()).unwrap().is_some());
    }
    s
}

/// The eviction policy: sessions that hold nothing give way first and never evict one that
/// holds state; sessions that never resumed never evict one that has; the byte cap evicts
/// only sessions holding bytes.
#[test]
fn eviction_protects_sessions_with_state_from_floods_of_lesser_ones() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut store = SessionStore::new();
    store.set_max_sessions(4).set_max_bytes(1_000);

    // A real client: 3 messages delivered, then kept; it resumes (delivered through 0 of
    // the server's direction) and drops again: a resumed session holding state.
    let real = [0x42; 16];
    assert!(store.keep(session_with_delivered(real, 3, t0), 3, t0));
    let back = accept(&mut store, hello(real, true, 0), at(1));
    assert_eq!(back.session_status(), SessionStatus::Resumed);
    assert!(store.keep(back, 3, at(1)));
    // Another client, holding state, never resumed.
    let other = [0x43; 16];
    assert!(store.keep(session_with_delivered(other, 1, at(2)), 1, at(2)));

    // A flood of HELLOs (empty sessions): they evict each other, never the two above.
    for (i, id) in ids(200, 7).into_iter().enumerate() {
        let now = at(10 + i as u64);
        let s = accept(&mut store, hello(id, i % 2 == 0, 5), now);
        store.keep(s, 0, now);
        assert!(store.len() <= 4);
    }
    assert_eq!(store.len(), 4);
    // A flood of sessions that deliver a message and never resume: they evict each other
    // and the other client (the oldest of their rank), never the resumed one.
    for (i, id) in ids(200, 11).into_iter().enumerate() {
        let now = at(1_000 + i as u64);
        assert!(store.keep(session_with_delivered(id, 1, now), 1, now));
        assert!(store.len() <= 4);
    }
    // Now the store holds the resumed session and 3 stateful ones: an empty session is not
    // kept, and evicts nothing.
    let evicted = store.evicted();
    let empty = accept(&mut store, hello([0x99; 16], false, 0), at(2_000));
    assert!(!store.keep(empty, 0, at(2_000)));
    assert_eq!((store.len(), store.evicted()), (4, evicted + 1));

    let r = accept(&mut store, hello(real, true, 0), at(2_001));
    assert_eq!(
        r.session_status(),
        SessionStatus::Resumed,
        "the real client"
    );
    assert_eq!(r.received_through(), 3);
    let o = accept(&mut store, hello(other, true, 0), at(2_001));
    assert_eq!(
        o.session_status(),
        SessionStatus::Lost,
        "evicted by its own rank"
    );

    // The byte cap: a session holding 600 bytes evicts the oldest one holding bytes, not an
    // older one holding none.
    let mut store = SessionStore::new();
    store.set_max_bytes(1_000);
    assert!(store.keep(session_with_delivered([1; 16], 1, t0), 1, t0));
    assert!(store.keep(session_with_unacked([2; 16], 1, 600, at(1)), 0, at(1)));
    assert!(store.keep(session_with_unacked([3; 16], 1, 600, at(2)), 0, at(2)));
    assert_eq!((store.len(), store.bytes()), (2, 600));
    let kept = accept(&mut store, hello([1; 16], true, 0), at(3));
    assert_eq!(kept.session_status(), SessionStatus::Resumed);
}
