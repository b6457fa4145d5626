//! Replays every committed fuzz corpus file through the fuzz targets' own functions, so CI
//! exercises them on stable without cargo-fuzz. The targets live in `fuzz/src/targets.rs`.

#![allow(clippy::unwrap_used)]

#[path = "../../../fuzz/src/targets.rs"]
#[allow(unreachable_pub)]
mod targets;

#[path = "../../../fuzz/src/session_targets.rs"]
#[allow(unreachable_pub)]
mod session_targets;

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    for file in corpus(target) {
        let data = std::fs::read(&file).unwrap();
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(
            result.is_ok(),
            "{target}: {} broke an invariant",
            file.display()
        );
    }
}

#[test]
fn plain_decode_corpus() {
    replay("plain_decode", targets::plain_decode);
}

#[test]
fn plain_roundtrip_corpus() {
    replay("plain_roundtrip", targets::plain_roundtrip);
}

#[test]
fn typed_decode_corpus() {
    replay("typed_decode", targets::typed_decode);
}

#[test]
fn ack_parse_corpus() {
    replay("ack_parse", targets::ack_parse);
}

#[test]
fn ack_machine_corpus() {
    replay("ack_machine", targets::ack_machine);
}

#[test]
fn ack_session_corpus() {
    replay("ack_session", session_targets::ack_session);
}
