//! Ack mode against a hostile server that grants `u32::MAX` (messages and bytes), reads
//! everything and never acknowledges: `AckSender::send` blocks once the client's own cap on
//! unacknowledged bytes is reached, and the client's memory stays within that cap plus one
//! frame, with 64 KiB and 4 MiB frames.
//!
//! Memory is the live heap from a counting global allocator (`stats_alloc`, no `unsafe`
//! here). The client and the hostile server run in this process, so the figure is an upper
//! bound on the client's share. Run with `--nocapture` to see the figures.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::alloc::System;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use common::spawn_scripted;
use framewire_client::{Client, ReconnectPolicy};
use framewire_codec::ack::{AckConfig, Hello};
use framewire_codec::FrameCodec;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Encoder;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// One test at a time: the heap figure is per process.
static SERIAL: Mutex<()> = Mutex::new(());

fn heap() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// The client's cap on unacknowledged bytes in this test.
const CAP: u32 = 256 * 1024;

fn run_attack(frame_len: usize) {
    let _alone = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A server granting everything, reading into a small buffer, never acknowledging.
        let addr = spawn_scripted(|mut stream| async move {
            let mut hello = bytes::BytesMut::new();
            let greedy = Hello::new(u32::MAX, u32::MAX, u32::MAX);
            FrameCodec::new()
                .encode(Bytes::copy_from_slice(&greedy.to_bytes()), &mut hello)
                .unwrap();
            stream.write_all(&hello).await.unwrap();
            let mut sink = vec![0u8; 64 * 1024];
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        let config = AckConfig::new().max_unacked_bytes(CAP);
        let client = Client::builder()
            .max_frame_len(16 << 20)
            .ack_config(config)
            .reconnect(ReconnectPolicy::never())
            .connect_ack(addr)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let base = heap();
        let mut peak = base;
        let mut accepted = 0u64;
        let mut receipts = Vec::new();
        // Try to hand the client 256 MiB (v1 accepted it all: `send` never blocked).
        let target = 256u64 << 20;
        while accepted < target {
            let payload = Bytes::from(vec![0x5a; frame_len]);
            match tokio::time::timeout(Duration::from_millis(300), client.send(payload)).await {
                Ok(receipt) => {
                    receipts.push(receipt.unwrap());
                    accepted += frame_len as u64;
                }
                Err(_blocked) => break,
            }
            peak = peak.max(heap());
        }
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            peak = peak.max(heap());
        }
        let grown = peak - base;
        let frame = frame_len as i64;
        // The cap plus one frame kept unacknowledged, the write buffer the frames are encoded
        // into (at most the 64 KiB high-water mark, `write_buffer_limit`, plus one frame),
        // the payload being handed to `send` when it blocked, and the hostile server's 64 KiB
        // read buffer: 1 cap + 3 frames, and 512 KiB for the runtime, the receipts, the
        // sockets and the buffers.
        let bound = i64::from(CAP) + 3 * frame + 512 * 1024;
        println!(
            "frames of {frame_len} B: send accepted {} KiB before blocking; heap grew {} KiB \
             at most (bound {} KiB)",
            accepted / 1024,
            grown / 1024,
            bound / 1024
        );
        assert!(
            accepted <= u64::from(CAP) + frame_len as u64,
            "send accepted {accepted} bytes past the cap of {CAP}"
        );
        assert!(accepted > 0);
        assert!(grown <= bound, "heap grew {grown} bytes, bound {bound}");
        drop(receipts);
        drop(client);
    });
}

#[test]
fn a_server_granting_u32_max_and_never_acking_costs_the_clients_cap_64k_frames() {
    run_attack(64 * 1024);
}

#[test]
fn a_server_granting_u32_max_and_never_acking_costs_the_clients_cap_4m_frames() {
    run_attack(4 * 1024 * 1024);
}
