//! A TLS client nobody here wrote: Python's standard `ssl` module (through
//! `examples/interop/echo_client.py --tls-ca`) against the TLS echo server, verifying the
//! server's certificate against a CA made at run time, through the tutorial exchange
//! (greeting, 50 frames in one write each answered with 好 appended, a frame split into
//! one-byte writes, `q` closes, and the server's close_notify ends the stream cleanly).
//!
//! The server is the one `echo_server --tls-cert --tls-key` runs: the same handler
//! (`framewire_examples::tutorial`) and the same PEM loading (`framewire_examples::tls`), from
//! PEM files written here.
//!
//! Needs `python3` on `PATH`; if it is missing the test fails with a message saying so.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "../../crates/framewire-server/tests/common/tls.rs"]
mod tls;

use std::path::{Path, PathBuf};
use std::time::Duration;

use framewire_examples::{mirror, tutorial};
use framewire_server::{Server, ServerHandle};

/// A fresh directory for this test's PEM files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("framewire-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a CA and a `localhost`/127.0.0.1 server certificate as PEM files; returns the
/// paths of the CA certificate, the server certificate and its key.
fn pem_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (ca, leaf) = tls::localhost();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, &leaf.cert_pem).unwrap();
    std::fs::write(&paths.2, &leaf.key_pem).unwrap();
    paths
}

/// What a failed start of `python3` says: missing is the common case, so it says what to do.
fn python3_failed(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        format!("python3 not found: the interop tests need it; install python3 ({e})")
    } else {
        format!("could not run python3: {e}")
    }
}

/// Runs the Python client; fails loudly if `python3` is missing or the client reports a
/// failure.
async fn python(args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/echo_client.py");
    let run = tokio::process::Command::new("python3")
        .arg(script)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(Duration::from_secs(30), run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("{}", python3_failed(e)),
        Err(_) => panic!("the Python TLS client did not finish within 30 s"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python TLS interop failed with {}:\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

async fn serve(cert: &Path, key: &Path, mirror_mode: bool) -> (String, ServerHandle) {
    let config = framewire_examples::tls::server_config(cert, key, None).unwrap();
    let server = Server::builder()
        .tls(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let handle = server.handle();
    if mirror_mode {
        tokio::spawn(server.serve(mirror::<()>));
    } else {
        tokio::spawn(server.serve(tutorial::<()>));
    }
    (addr, handle)
}

#[tokio::test]
async fn python_ssl_client_through_the_tutorial_exchange() {
    let dir = scratch("tls-python");
    let (ca, cert, key) = pem_files(&dir);
    let (addr, handle) = serve(&cert, &key, false).await;
    let ca = ca.to_str().unwrap();
    let out = python(&["--addr", &addr, "--tls-ca", ca, "--tls-name", "localhost"]).await;
    assert!(out.contains("TLS: TLSv1.3"), "{out}");
    assert!(out.contains("greeting: 你好欢迎你"), "{out}");
    assert!(
        out.contains("50 frames in one write: 50 replies ok"),
        "{out}"
    );
    // 4 single requests + 50 coalesced + 1 split; `q` closed the connection cleanly.
    assert!(out.contains("55 replies checked, 0 failures"), "{out}");

    // Mirror mode, verified by IP address this time, and closed with close_notify both ways.
    let (addr, mirror_handle) = serve(&cert, &key, true).await;
    let out = python(&["--addr", &addr, "--mirror", "--tls-ca", ca]).await;
    assert!(out.contains("55 replies checked, 0 failures"), "{out}");

    for h in [handle, mirror_handle] {
        let stats = h.stats();
        assert_eq!(stats.errors.tls_handshake, 0, "{stats:?}");
        assert_eq!(stats.errors.io, 0, "{stats:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn python_ssl_client_refuses_a_certificate_from_another_ca() {
    let dir = scratch("tls-python-untrusted");
    let (_, cert, key) = pem_files(&dir);
    // Trust a different CA than the one that signed the server's certificate.
    let other = dir.join("other-ca.pem");
    std::fs::write(&other, tls::Ca::new("another CA").pem()).unwrap();
    let (addr, handle) = serve(&cert, &key, false).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/echo_client.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .args(["--addr", &addr, "--tls-ca", other.to_str().unwrap()])
        .args(["--tls-name", "localhost"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}", python3_failed(e)));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "python accepted an untrusted certificate"
    );
    assert!(stderr.contains("CERTIFICATE_VERIFY_FAILED"), "{stderr}");
    // The server saw the client's alert: one failed handshake, counted.
    for _ in 0..500 {
        if handle.stats().errors.tls_handshake == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(handle.stats().errors.tls_handshake, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
