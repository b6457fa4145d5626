//! How much memory a crafted length prefix inside a payload makes the decoder allocate.
//!
//! A counting global allocator (`stats_alloc`, so no `unsafe` in this workspace) records every
//! byte allocated while one decode runs. `bytes_allocated` over a region counts every
//! allocation and every growing `realloc`, so it is an upper bound on the peak extra memory of
//! that decode. Everything runs in one `#[test]` so no other test thread allocates meanwhile.
//!
//! The first check shows the counter sees a large allocation: bincode *without* a limit,
//! given a 12-byte payload that announces a 64 MiB string, allocates the 64 MiB. The typed
//! layer's decode of the same bytes must stay under its documented bound.
//!
//! Run with `cargo test -p framewire-codec --test typed_alloc -- --nocapture` to see the figures.

use std::alloc::System;
use std::collections::BTreeMap;

use framewire_codec::typed::{self, bincode_decode_limit, Bincode, Format, Postcard};
use serde::de::DeserializeOwned;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bookkeeping allowance: error strings, the error value, formatting.
const SLACK: usize = 4 * 1024;

/// serde pre-allocates at most this much for a sequence whatever its announced length
/// (serde's `size_hint::cautious`).
const SERDE_PREALLOC_CAP: usize = 1024 * 1024;

fn bincode_varint(n: u64) -> Vec<u8> {
    [&[253u8][..], &n.to_le_bytes()].concat()
}

fn postcard_varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Bytes allocated while decoding `payload` as `T` with `F`; the decode must fail.
fn allocated_by_failed_decode<F: Format, T: DeserializeOwned>(payload: &[u8]) -> usize {
    let region = Region::new(GLOBAL);
    let result = typed::decode::<F, T>(payload);
    let allocated = region.change().bytes_allocated;
    assert!(result.is_err(), "a crafted payload decoded");
    drop(result);
    allocated
}

fn report(what: &str, payload_len: usize, allocated: usize, bound: usize) {
    println!("{what:<48} frame {payload_len:>3} B  allocated {allocated:>8} B  (bound {bound} B)");
    assert!(
        allocated <= bound,
        "{what}: allocated {allocated} bytes for a {payload_len}-byte frame, bound {bound}"
    );
}

#[test]
fn crafted_lengths_allocate_near_the_frame_not_the_announcement() {
    // 1. The counter works: unlimited bincode allocates what the payload announces.
    let announce_64m = [&bincode_varint(64 << 20)[..], b"abc"].concat();
    let region = Region::new(GLOBAL);
    let unlimited =
        bincode::serde::decode_from_slice::<String, _>(&announce_64m, bincode::config::standard());
    let allocated = region.change().bytes_allocated;
    assert!(unlimited.is_err());
    println!(
        "{:<48} frame {:>3} B  allocated {allocated:>8} B",
        "bincode without limit, String of 64 MiB",
        announce_64m.len()
    );
    assert!(allocated >= 64 << 20, "counter missed the allocation");

    // 2. bincode through the typed layer: strings and byte buffers are bounded by the
    //    per-frame limit, sequences by serde's pre-allocation cap.
    for n in [64u64 << 20, 1 << 32, 1 << 60, u64::MAX] {
        let payload = [&bincode_varint(n)[..], b"abc"].concat();
        let limit = bincode_decode_limit(payload.len());
        let a = allocated_by_failed_decode::<Bincode, String>(&payload);
        report(
            &format!("bincode String claiming {n}"),
            payload.len(),
            a,
            SLACK,
        );
        let a = allocated_by_failed_decode::<Bincode, (u8, String)>(
            &[&[1u8][..], &payload[..]].concat(),
        );
        report(
            &format!("bincode (u8, String) claiming {n}"),
            payload.len() + 1,
            a,
            limit + SLACK,
        );
        let a = allocated_by_failed_decode::<Bincode, Vec<u64>>(&payload);
        report(
            &format!("bincode Vec<u64> claiming {n}"),
            payload.len(),
            a,
            SERDE_PREALLOC_CAP + SLACK,
        );
        let a = allocated_by_failed_decode::<Bincode, BTreeMap<String, u8>>(&payload);
        report(
            &format!("bincode BTreeMap claiming {n}"),
            payload.len(),
            a,
            SERDE_PREALLOC_CAP + SLACK,
        );
    }

    // A string claiming just under the limit for its frame: allocated, then the read fails.
    // This is the worst case for strings and shows the bound is the limit, not the frame.
    let payload = [&bincode_varint(4000)[..], b"abc"].concat();
    let a = allocated_by_failed_decode::<Bincode, String>(&payload);
    report(
        "bincode String claiming 4000 (under the limit)",
        payload.len(),
        a,
        bincode_decode_limit(payload.len()) + SLACK,
    );

    // 3. postcard checks string lengths against the frame before allocating.
    for n in [64u64 << 20, 1 << 32, 1 << 60, u64::MAX] {
        let payload = [&postcard_varint(n)[..], b"abc"].concat();
        let a = allocated_by_failed_decode::<Postcard, String>(&payload);
        report(
            &format!("postcard String claiming {n}"),
            payload.len(),
            a,
            SLACK,
        );
        let a = allocated_by_failed_decode::<Postcard, Vec<u64>>(&payload);
        report(
            &format!("postcard Vec<u64> claiming {n}"),
            payload.len(),
            a,
            SERDE_PREALLOC_CAP + SLACK,
        );
    }
}
