//! TLS for the benchmark servers and the raw client: the examples' rustls configurations (ring
//! provider, safe default protocol versions) on both sides, with a self-signed certificate for
//! `localhost` kept as PEM files in a directory (`DIR/cert.pem`, `DIR/key.pem`), so a server in
//! a child process and a client in this one use the same certificate.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::error::LoadgenError;

/// The name the certificate is made for, and the one the client checks.
pub const SERVER_NAME: &str = "localhost";

/// A certificate made for this run (rcgen, never committed) in a fresh temporary directory,
/// removed when this is dropped.
#[derive(Debug)]
pub struct TempCert {
    dir: PathBuf,
}

impl TempCert {
    /// Makes a self-signed certificate for [`SERVER_NAME`] and writes `cert.pem` and `key.pem`.
    ///
    /// # Errors
    /// Certificate generation or file errors.
    pub fn new() -> Result<TempCert, LoadgenError> {
        let made = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
            .map_err(|e| LoadgenError::args(format!("making a certificate: {e}")))?;
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("framewire-bench-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let cert = TempCert { dir };
        std::fs::write(cert.dir.join("cert.pem"), made.cert.pem())?;
        std::fs::write(cert.dir.join("key.pem"), made.signing_key.serialize_pem())?;
        Ok(cert)
    }

    /// The directory holding `cert.pem` and `key.pem`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TempCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server side: `DIR/cert.pem` and `DIR/key.pem` (loaded as the examples' `--tls-cert`
/// and `--tls-key` are).
///
/// # Errors
/// Missing or unreadable files, or a key rustls does not take.
pub fn server_config(dir: &Path) -> Result<Arc<rustls::ServerConfig>, LoadgenError> {
    framewire_examples::tls::server_config(&dir.join("cert.pem"), &dir.join("key.pem"), None)
        .map(Arc::new)
        .map_err(LoadgenError::Args)
}

/// The client side, trusting `DIR/cert.pem` (for [`SERVER_NAME`]).
///
/// # Errors
/// A missing or unreadable certificate.
pub fn client_config(dir: &Path) -> Result<Arc<rustls::ClientConfig>, LoadgenError> {
    framewire_examples::tls::client_config(&dir.join("cert.pem"), None)
        .map(Arc::new)
        .map_err(LoadgenError::Args)
}

/// The TLS handshake over a connected stream, for [`SERVER_NAME`].
///
/// # Errors
/// A failed handshake.
pub async fn connect(
    config: &Arc<rustls::ClientConfig>,
    stream: TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = ServerName::try_from(SERVER_NAME).map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, stream)
        .await
}
