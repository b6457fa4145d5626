//! Ack mode against a hostile peer that grants `u32::MAX` (messages and bytes), reads every
//! echo and never acknowledges one: the server's memory stays within its own configured
//! budget (the peer's grant is clamped to the server's caps), with 64 KiB and 4 MiB frames.
//!
//! Memory is the live heap from a counting global allocator (`stats_alloc`, no `unsafe`
//! here). The server and the hostile peer run in this process, so the figure is an upper
//! bound on the server's share. Run with `--nocapture` to see the figures.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::alloc::System;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use framewire_codec::ack::{data_header, AckConfig, AckFrame, Hello};
use framewire_codec::FrameCodec;
use framewire_server::Server;
use futures::{SinkExt, StreamExt};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// One test at a time: the heap figure is per process.
static SERIAL: Mutex<()> = Mutex::new(());

fn heap() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// The server's budget in this test: 256 KiB granted (received, not taken) and 256 KiB kept
/// unacknowledged.
const BUDGET: u32 = 256 * 1024;

/// What the hostile peer managed, and the heap at its peak.
struct Outcome {
    uploaded: u64,
    echoed: u64,
    peak_heap: i64,
}

/// Connects as a hostile ack-mode peer: grants `u32::MAX`, sends `frame_len`-byte messages
/// as fast as the server's window allows (up to `target` bytes), reads every echo, never
/// acknowledges. Returns once the server has stopped giving it room for a while.
async fn hostile_peer(addr: std::net::SocketAddr, frame_len: usize, target: u64) -> Outcome {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let codec = FrameCodec::builder().max_frame_len(16 << 20).build();
    let mut framed = Framed::new(stream, codec);
    let greedy = Hello::new(u32::MAX, u32::MAX, 16 << 20);
    framed
        .send(Bytes::copy_from_slice(&greedy.to_bytes()))
        .await
        .unwrap();
    let first = framed.next().await.unwrap().unwrap();
    let AckFrame::Hello(theirs) = AckFrame::parse(&first).unwrap() else {
        panic!("expected the server's HELLO");
    };
    assert_eq!(
        theirs.window_bytes, BUDGET,
        "the server grants its own budget"
    );
    let (mut tx, mut rx) = framed.split();
    let acked = Arc::new(AtomicU64::new(0));
    let echoed = Arc::new(AtomicU64::new(0));
    let reader = {
        let (acked, echoed) = (Arc::clone(&acked), Arc::clone(&echoed));
        tokio::spawn(async move {
            while let Some(Ok(frame)) = rx.next().await {
                match AckFrame::parse(&frame).unwrap() {
                    AckFrame::Ack { through } => acked.store(through, Ordering::SeqCst),
                    AckFrame::Data { payload, .. } => {
                        echoed.fetch_add(payload.len() as u64, Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
        })
    };
    let payload = vec![0x5a; frame_len];
    let mut seq = 0u64;
    let mut peak_heap = heap();
    let mut stuck_for = 0;
    while seq * frame_len as u64 <= target && stuck_for < 60 {
        let unacked = seq - acked.load(Ordering::SeqCst);
        // The server's rule: send while fewer than its window's bytes are unacknowledged.
        if unacked * (frame_len as u64) < u64::from(theirs.window_bytes) {
            seq += 1;
            let mut frame = data_header(seq, false).to_vec();
            frame.extend_from_slice(&payload);
            tx.send(Bytes::from(frame)).await.unwrap();
            stuck_for = 0;
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            stuck_for += 1;
        }
        peak_heap = peak_heap.max(heap());
    }
    // Held: the server's window stays shut while the peer keeps reading and never acks.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        peak_heap = peak_heap.max(heap());
    }
    reader.abort();
    Outcome {
        uploaded: seq * frame_len as u64,
        echoed: echoed.load(Ordering::SeqCst),
        peak_heap,
    }
}

fn run_attack(frame_len: usize) {
    let _alone = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(within(async {
        let config = AckConfig::new()
            .window_bytes(BUDGET)
            .max_unacked_bytes(BUDGET);
        let builder = Server::builder()
            .max_frame_len(16 << 20)
            .ack_config(config)
            .write_timeout(None);
        let server = spawn(builder, echo).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let base = heap();
        // The peer tries to upload 256 MiB (v1 held it all: +2,690 MiB in 8 s was measured).
        let target = 256 << 20;
        let out = hostile_peer(server.addr, frame_len, target).await;
        let grown = out.peak_heap - base;
        let frame = frame_len as i64;
        // The server's budget: 256 KiB buffered + 256 KiB unacknowledged, one frame over
        // each; plus the handler's current message and the write buffer the echo is encoded
        // into (a frame each). The hostile peer runs in this process too: its read buffer, the
        // frame it builds and its write buffer (a frame each). 2 budgets + 7 frames, and
        // 512 KiB for the runtime and sockets.
        let bound = 2 * i64::from(BUDGET) + 7 * frame + 512 * 1024;
        println!(
            "frames of {frame_len} B: peer uploaded {} KiB, got {} KiB echoed; heap grew \
             {} KiB at most (bound {} KiB)",
            out.uploaded / 1024,
            out.echoed / 1024,
            grown / 1024,
            bound / 1024
        );
        assert!(
            out.uploaded < target / 8,
            "the server's window never closed: {} bytes uploaded",
            out.uploaded
        );
        assert!(
            out.echoed <= u64::from(BUDGET) + frame_len as u64,
            "the server kept sending past its own cap: {} bytes unacknowledged",
            out.echoed
        );
        assert!(grown <= bound, "heap grew {grown} bytes, bound {bound}");
        server.stop().await;
    }));
}

#[test]
fn a_peer_granting_u32_max_and_never_acking_costs_the_servers_budget_64k_frames() {
    run_attack(64 * 1024);
}

#[test]
fn a_peer_granting_u32_max_and_never_acking_costs_the_servers_budget_4m_frames() {
    run_attack(4 * 1024 * 1024);
}
