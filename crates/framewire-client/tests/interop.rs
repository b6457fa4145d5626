//! Runs the Python interop program (`examples/interop/echo_client.py`, standard library only)
//! against a minimal echo server built on `FrameCodec` (tests/server.rs runs it against the
//! real framewire server): the wire format is language-neutral.
//!
//! Needs `python3` on `PATH`. If it is missing the test fails loudly instead of passing.

mod common;

use common::{run_python, spawn_echo, within, Echo};

#[tokio::test]
async fn python_client_against_tutorial_echo() {
    within(async {
        let addr = spawn_echo(Echo::TUTORIAL).await;
        let out = run_python(addr, false).await;
        assert!(out.contains("greeting: 你好欢迎你"), "{out}");
        // 4 single requests + 50 coalesced + 1 split.
        assert!(out.contains("55 replies checked, 0 failures"), "{out}");
    })
    .await;
}

#[tokio::test]
async fn python_client_against_mirror_echo() {
    within(async {
        let addr = spawn_echo(Echo::MIRROR).await;
        let out = run_python(addr, true).await;
        assert!(out.contains("55 replies checked, 0 failures"), "{out}");
    })
    .await;
}
