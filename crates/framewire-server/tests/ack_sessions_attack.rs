//! Sessions under attack, at the server level: thousands of connections each send a HELLO
//! naming a random session id or a stolen-looking one (a real client's id with one bit
//! flipped), most with the resume flag, some send DATA (echoed back and never acknowledged,
//! so the sessions they leave hold bytes) and vanish, against a server with small
//! `max_sessions` / `max_session_bytes`. Meanwhile a real client streams numbered messages
//! in its session and cuts its connection again and again (dropping it, or taking the
//! session over from a connection the server still thinks alive).
//!
//! Checked: the sessions the server keeps never exceed either cap (sampled every
//! millisecond); no flood HELLO is answered as a resume (ids are 128 random bits; an id one
//! bit away is another session); every message of the real client is handled exactly once,
//! in order, unflagged, under its session id, and no other connection's message is handled
//! under it; every one of its resumes finds its session (the store's eviction ranks the
//! flood's sessions, empty or never resumed, below it); the live heap stays within a bound
//! set by the caps and the flood's concurrency.
//!
//! Memory is the live heap from a counting global allocator (`stats_alloc`, no `unsafe`
//! here); the flood and the real client run in this process, so it is an upper bound on the
//! server's share. Run with `--nocapture` to see the figures.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::alloc::System;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use framewire_codec::ack::{new_session_id, AckFrame, Hello, SessionId};
use framewire_codec::FrameCodec;
use framewire_server::{Connection, Server, ServerError};
use futures::SinkExt;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn heap() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// The server's caps in this test.
const MAX_SESSIONS: usize = 32;
const MAX_SESSION_BYTES: u64 = 64 * 1024;

/// Flood connections in all, and at once.
const FLOOD: usize = 3000;
const CONCURRENT: usize = 48;
/// Payload of each flood DATA (echoed back by the handler, never acknowledged).
const FLOOD_PAYLOAD: usize = 4 * 1024;

/// The real client: rounds of messages, a cut after each.
const ROUNDS: u64 = 40;
const PER_ROUND: u64 = 25;

/// What the handler saw: (session id, seq, redelivered, the payload's first 16 bytes).
type Log = Arc<Mutex<Vec<(SessionId, u64, bool, Bytes)>>>;

/// Records every delivery; echoes the flood's messages (so the sessions they leave behind
/// hold unacknowledged bytes), not the real client's.
async fn record_and_echo(mut conn: Connection<Log>) -> Result<(), ServerError> {
    while let Some(d) = conn.recv_delivery().await? {
        let flood = d.payload.starts_with(b"flood");
        conn.state().lock().unwrap().push((
            d.session,
            d.seq,
            d.redelivered,
            // The first bytes tell whose message it was; the log stays small.
            Bytes::copy_from_slice(&d.payload[..d.payload.len().min(16)]),
        ));
        if flood {
            conn.send(&d.payload).await?;
        }
    }
    Ok(())
}

/// Sends a HELLO naming `session` (resuming with `delivered` if `resume`) and returns the
/// stream and the server's answer.
async fn hello(addr: SocketAddr, session: SessionId, resume: bool) -> (Client, Hello) {
    let mut framed = client(addr).await;
    let mut h = Hello::new(8, 1 << 20, 1 << 20);
    h.session = session;
    h.resume = resume;
    framed
        .send(Bytes::copy_from_slice(&h.to_bytes()))
        .await
        .unwrap();
    let frame = next_frame(&mut framed).await.expect("the server's HELLO");
    match AckFrame::parse(&frame).unwrap() {
        AckFrame::Hello(theirs) => (framed, theirs),
        other => panic!("expected the server's HELLO, got {other:?}"),
    }
}

async fn data(framed: &mut Client, seq: u64, payload: &[u8], redelivery: bool) {
    let mut buf = BytesMut::new();
    AckFrame::Data {
        seq,
        redelivery,
        payload,
    }
    .encode(&mut FrameCodec::new(), &mut buf)
    .unwrap();
    framed.send(buf.split_off(4).freeze()).await.unwrap();
}

/// One flood connection: `i` picks the id (stolen-looking: the real id with bit `i % 128`
/// flipped, for the first 128; random otherwise), whether it resumes, and (`with_data`) how
/// many DATA frames it sends before vanishing.
async fn attacker(addr: SocketAddr, real: SessionId, i: usize, with_data: bool) {
    let id = if i < 128 {
        let mut id = real;
        id[i / 8] ^= 1 << (i % 8);
        id
    } else {
        new_session_id().unwrap()
    };
    let resume = i % 4 != 3;
    let (mut framed, theirs) = hello(addr, id, resume).await;
    assert_eq!(theirs.session, id, "flood {i}: answered for its own id");
    assert!(
        !theirs.resume,
        "flood {i}: resumed a session it never had: {theirs:?}"
    );
    let mut payload = vec![0x5a; FLOOD_PAYLOAD];
    payload[..5].copy_from_slice(b"flood");
    let frames = if with_data { (i % 3) as u64 } else { 0 };
    for seq in 1..=frames {
        data(&mut framed, seq, &payload, false).await;
    }
    // Some wait for their echoes (so the session holds them unacknowledged); all vanish.
    if frames > 0 && i % 2 == 0 {
        let _ = tokio::time::timeout(Duration::from_millis(20), next_frame(&mut framed)).await;
    }
}

fn real_seqs(log: &Log, real: SessionId) -> Vec<(u64, bool)> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(s, ..)| *s == real)
        .map(|(_, seq, f, _)| (*seq, *f))
        .collect()
}

async fn handled(log: &Log, real: SessionId, n: usize) {
    while real_seqs(log, real).len() < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// What the real client saw: messages sent, and its resumes that found the session kept
/// or (evicted by the flood while the client was away) lost.
struct RealOutcome {
    sent: u64,
    resumed: u64,
    lost_rounds: Vec<u64>,
}

/// The real client: `ROUNDS` rounds of `PER_ROUND` messages; after each, a cut: odd rounds
/// drop the connection and reconnect, even rounds reconnect first (the server still thinks
/// the old connection alive: takeover) and then drop the old one. Every reconnect resumes
/// and resends the last message of the round before: a resumed session must drop it; a
/// session the server evicted meanwhile (the caps at work) is answered as lost, and the
/// resend goes out flagged as a redelivery, as `AckClient` does.
async fn real_client(
    addr: SocketAddr,
    real: SessionId,
    log: Log,
    resumed_once: Arc<tokio::sync::Notify>,
) -> RealOutcome {
    let (mut conn, theirs) = hello(addr, real, false).await;
    assert_eq!(theirs.session, real);
    let mut out = RealOutcome {
        sent: 0,
        resumed: 0,
        lost_rounds: Vec::new(),
    };
    let mut expected = 0;
    for round in 0..ROUNDS {
        let sent = out.sent;
        if round > 0 {
            let old = if round % 2 == 1 {
                drop(conn);
                None
            } else {
                Some(conn)
            };
            let (next, theirs) = hello(addr, real, true).await;
            drop(old);
            conn = next;
            assert_eq!(
                theirs.session, real,
                "round {round}: answered for another id"
            );
            if theirs.resume {
                out.resumed += 1;
                resumed_once.notify_one();
                assert_eq!(theirs.delivered, sent, "round {round}: delivered-through");
                data(&mut conn, sent, format!("real {sent}").as_bytes(), false).await;
            } else {
                out.lost_rounds.push(sent);
                data(&mut conn, sent, format!("real {sent}").as_bytes(), true).await;
                expected += 1;
            }
        }
        for _ in 0..PER_ROUND {
            out.sent += 1;
            let seq = out.sent;
            data(&mut conn, seq, format!("real {seq}").as_bytes(), false).await;
        }
        expected += PER_ROUND as usize;
        handled(&log, real, expected).await;
    }
    drop(conn);
    out
}

/// HELLOs only: the sessions the flood leaves hold no bytes, so the count cap is the one
/// that binds.
#[test]
fn a_hello_flood_of_random_and_stolen_looking_ids_stays_within_the_session_cap() {
    flood(false);
}

/// HELLOs and DATA echoed back unacknowledged: the byte cap binds (and the count cap).
#[test]
fn a_flood_leaving_unacknowledged_bytes_stays_within_the_byte_cap() {
    flood(true);
}

fn flood(with_data: bool) {
    run_alone(async {
        let log: Log = Arc::default();
        let builder = Server::builder()
            .ack_mode(8)
            .max_sessions(MAX_SESSIONS)
            .max_session_bytes(MAX_SESSION_BYTES)
            .max_connections_per_ip(None)
            .state(Arc::clone(&log));
        let server = spawn(builder, record_and_echo).await;
        let addr = server.addr;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let base = heap();
        let real = new_session_id().unwrap();

        // Sample the store and the heap every millisecond while the flood runs.
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (handle, done) = (server.handle.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                let (mut most, mut most_bytes, mut peak) = (0usize, 0u64, 0i64);
                while !done.load(Ordering::SeqCst) {
                    let (kept, bytes, _) = handle.kept_sessions();
                    most = most.max(kept);
                    most_bytes = most_bytes.max(bytes);
                    peak = peak.max(heap());
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (most, most_bytes, peak)
            })
        };

        let resumed_once = Arc::new(tokio::sync::Notify::new());
        let real_task = tokio::spawn(real_client(
            addr,
            real,
            Arc::clone(&log),
            Arc::clone(&resumed_once),
        ));
        let flood = tokio::spawn(async move {
            if with_data {
                // Sessions that deliver messages rank with the real client's until it has
                // resumed once (then above them): this flood starts after that, the HELLO
                // flood at once.
                resumed_once.notified().await;
            }
            let mut next = 0;
            let mut running = tokio::task::JoinSet::new();
            while next < FLOOD || !running.is_empty() {
                while next < FLOOD && running.len() < CONCURRENT {
                    running.spawn(attacker(addr, real, next, with_data));
                    next += 1;
                }
                running.join_next().await.unwrap().unwrap();
            }
        });
        flood.await.unwrap();
        let real_out = real_task.await.unwrap();
        let sent = real_out.sent;
        // Let the last connections end and keep their sessions.
        tokio::time::sleep(Duration::from_millis(100)).await;
        done.store(true, Ordering::SeqCst);
        let (most, most_bytes, peak) = sampler.await.unwrap();
        let (kept, bytes, lost) = server.handle.kept_sessions();
        let after = heap() - base;
        let grown = peak - base;

        // Memory: the kept sessions (the byte cap, plus a record each), and the flood's
        // concurrent connections (each: its buffers, a few echoes of 4 KiB, its task), plus
        // 1 MiB for the runtime, sockets and the log. Measured well below this (--nocapture).
        let per_session = 8 * 1024;
        let per_conn = 64 * 1024;
        let log_bytes = (FLOOD * 2 * 128) as i64;
        let retained_bound =
            MAX_SESSION_BYTES as i64 + (MAX_SESSIONS * per_session) as i64 + log_bytes + (1 << 20);
        let peak_bound = retained_bound + ((CONCURRENT + 1) * per_conn) as i64;
        println!(
            "{FLOOD} flood connections ({CONCURRENT} at a time, DATA: {with_data}), {lost} resumes answered as \
             lost; kept at most {most} sessions / {most_bytes} B (caps {MAX_SESSIONS} / \
             {MAX_SESSION_BYTES}), {kept} / {bytes} B at the end; heap grew {} KiB at peak \
             (bound {} KiB), {} KiB retained (bound {} KiB, of which the handler's log {} \
             KiB); real client: {sent} messages, {} cuts, {} resumed, {} lost (evicted while away)",
            grown / 1024,
            peak_bound / 1024,
            after / 1024,
            retained_bound / 1024,
            log_bytes / 1024,
            ROUNDS - 1,
            real_out.resumed,
            real_out.lost_rounds.len(),
        );

        assert!(
            most <= MAX_SESSIONS && kept <= MAX_SESSIONS,
            "kept {most} sessions (cap {MAX_SESSIONS})"
        );
        assert!(
            most_bytes <= MAX_SESSION_BYTES && bytes <= MAX_SESSION_BYTES,
            "kept sessions held {most_bytes} B (cap {MAX_SESSION_BYTES})"
        );
        assert!(
            if with_data {
                most_bytes + FLOOD_PAYLOAD as u64 > MAX_SESSION_BYTES
            } else {
                most == MAX_SESSIONS
            },
            "the flood did not reach the cap it tests: {most} sessions, {most_bytes} B"
        );
        // The flood's resumes were all answered as lost (the server never had those ids).
        assert!(
            lost >= (FLOOD * 3 / 4) as u64 - 1,
            "{lost} flood resumes answered as lost"
        );

        // The real client: in order, under its own id only; exactly once while its session
        // was kept; after a resume answered as lost, the one resent message is handled again,
        // flagged, with the same id.
        let mut expected = Vec::new();
        for s in 1..=sent {
            expected.push((s, false));
            if s % PER_ROUND == 0 && real_out.lost_rounds.contains(&s) {
                expected.push((s, true));
            }
        }
        assert_eq!(
            real_seqs(&log, real),
            expected,
            "the real client's messages"
        );
        // The store's eviction policy: a flood of sessions that hold nothing (HELLOs) cannot
        // evict a session holding delivered state, and one of sessions that hold state but
        // never resumed (DATA, started after the real client's first resume) cannot evict a
        // session that has resumed. Every resume finds the session.
        assert_eq!(
            (real_out.resumed, real_out.lost_rounds.as_slice()),
            (ROUNDS - 1, &[][..]),
            "the real client's resumes (resumed, rounds answered as lost)"
        );
        for (session, seq, _, payload) in log.lock().unwrap().iter() {
            let is_real = payload.starts_with(b"real");
            assert_eq!(
                is_real,
                *session == real,
                "message {seq} handled under the wrong session: {payload:?}"
            );
        }

        assert!(
            grown <= peak_bound,
            "heap grew {grown} B, bound {peak_bound}"
        );
        assert!(
            after <= retained_bound,
            "heap kept {after} B after the flood, bound {retained_bound}"
        );
        server.stop().await;
    });
}
