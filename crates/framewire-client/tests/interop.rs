//! Runs the Python interop program (`examples/interop/echo_client.py`, standard library only)
//! against an echo server on loopback: the wire format is language-neutral.
//!
//! Needs `python3` on `PATH`. If it is missing the test fails loudly instead of passing.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use common::{spawn_echo, within, Echo};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/interop/echo_client.py")
}

async fn run_python(addr: SocketAddr, mirror: bool) -> String {
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(script()).arg("--addr").arg(addr.to_string());
    if mirror {
        cmd.arg("--mirror");
    }
    cmd.kill_on_drop(true);
    let out = match cmd.output().await {
        Ok(out) => out,
        Err(e) => panic!("could not run python3 (is it on PATH? the interop test needs it): {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python interop failed with {}:\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

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
