//! How much memory a crafted length prefix inside a payload makes the decoder allocate.
//!
//! A counting global allocator (`stats_alloc`, so no `unsafe` in this workspace) records every
//! byte allocated while one decode runs. `bytes_allocated` over a region counts every
//! allocation and every growing `realloc`, so it is an upper bound on the peak extra memory of
//! that decode. Everything runs in one `#[test]` so no other test thread allocates meanwhile.
//!
//! The first check shows the counter sees a large allocation: bincode used directly *without*
//! a limit, given a 12-byte payload that announces a 64 MiB string, allocates the 64 MiB. The
//! typed layer's decode of such payloads must stay under 1 KiB plus, for sequences, the bytes
//! left in the frame times the element size.
//!
//! Run with `cargo test -p framewire-codec --test typed_alloc -- --nocapture` to see the figures.

mod common;

use common::varint::postcard_varint;
use std::alloc::System;
use std::collections::BTreeMap;

use framewire_codec::typed::{self, Bincode, Format, Postcard};
use serde::de::DeserializeOwned;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// (type name, decode that must fail returning bytes allocated, bound)
type Case = (&'static str, fn(&[u8]) -> usize, usize);

/// Bookkeeping allowance: the error value and its message.
const SLACK: usize = 1024;

fn bincode_varint(n: u64) -> Vec<u8> {
    [&[253u8][..], &n.to_le_bytes()].concat()
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

    // 2. Through the typed layer every crafted length costs only the error message, in
    //    both formats: strings and byte buffers are checked against the bytes left before
    //    allocating; sequence pre-allocation is capped at (bytes left x element size).
    for n in [64u64 << 20, 1 << 32, 1 << 60, u64::MAX] {
        for (name, prefix) in [
            ("bincode", bincode_varint(n)),
            ("postcard", postcard_varint(n)),
        ] {
            let payload = [&prefix[..], b"abc"].concat();
            let left = 3;
            let run: [Case; 6] = if name == "bincode" {
                [
                    (
                        "String",
                        allocated_by_failed_decode::<Bincode, String>,
                        SLACK,
                    ),
                    (
                        "Vec<u8>",
                        allocated_by_failed_decode::<Bincode, Vec<u8>>,
                        SLACK + left,
                    ),
                    (
                        "Vec<u64>",
                        allocated_by_failed_decode::<Bincode, Vec<u64>>,
                        SLACK + 8 * left,
                    ),
                    (
                        "Vec<[u64; 32]>",
                        allocated_by_failed_decode::<Bincode, Vec<[u64; 32]>>,
                        SLACK + 256 * left,
                    ),
                    (
                        "BTreeMap<String, u8>",
                        allocated_by_failed_decode::<Bincode, BTreeMap<String, u8>>,
                        SLACK,
                    ),
                    (
                        "Vec<Vec<u64>>",
                        allocated_by_failed_decode::<Bincode, Vec<Vec<u64>>>,
                        SLACK + 24 * left,
                    ),
                ]
            } else {
                [
                    (
                        "String",
                        allocated_by_failed_decode::<Postcard, String>,
                        SLACK,
                    ),
                    (
                        "Vec<u8>",
                        allocated_by_failed_decode::<Postcard, Vec<u8>>,
                        SLACK + payload.len(),
                    ),
                    (
                        "Vec<u64>",
                        allocated_by_failed_decode::<Postcard, Vec<u64>>,
                        SLACK + 8 * payload.len(),
                    ),
                    (
                        "Vec<[u64; 32]>",
                        allocated_by_failed_decode::<Postcard, Vec<[u64; 32]>>,
                        SLACK + 256 * payload.len(),
                    ),
                    (
                        "BTreeMap<String, u8>",
                        allocated_by_failed_decode::<Postcard, BTreeMap<String, u8>>,
                        SLACK,
                    ),
                    (
                        "Vec<Vec<u64>>",
                        allocated_by_failed_decode::<Postcard, Vec<Vec<u64>>>,
                        SLACK + 24 * payload.len(),
                    ),
                ]
            };
            for (ty, decode, bound) in run {
                let allocated = decode(&payload);
                report(
                    &format!("{name} {ty} claiming {n}"),
                    payload.len(),
                    allocated,
                    bound,
                );
            }
        }
    }

    // A struct field in the middle of a message.
    let chat = [&[1u8][..], &bincode_varint(1 << 60)[..], b"xyz"].concat();
    let allocated = allocated_by_failed_decode::<Bincode, (u64, String, String, u64)>(&chat);
    report(
        "bincode chat tuple, user claiming 2^60",
        chat.len(),
        allocated,
        SLACK,
    );
}
