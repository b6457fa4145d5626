//! Shared code of the framewire examples and programs: the tutorial and mirror handlers
//! ([`handlers`]), the PEM loading behind the `--tls-*` flags ([`tls`]) and the demos'
//! [`demo_exit`]. The load generator and the other benchmark programs are in `bench/` (the
//! `framewire-bench` package).

pub mod handlers;
pub use handlers::{mirror, mirror_each, tutorial};

/// Runs a demo (`sticky_demo`, `ack_demo`) for at most 30 s, so a hang fails instead of
/// blocking CI: exit code 0 only if `run` returned `Ok(true)`; an error or the timeout is
/// printed to stderr.
pub async fn demo_exit<E: std::fmt::Display>(
    run: impl std::future::Future<Output = Result<bool, E>>,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    match tokio::time::timeout(std::time::Duration::from_secs(30), run).await {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => ExitCode::FAILURE,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("error: the demo did not finish within 30 s");
            ExitCode::FAILURE
        }
    }
}

/// rustls configurations from PEM files, for the programs' `--tls-*` flags. Both use the
/// ring provider explicitly (the one framewire's `tls` feature compiles in), so they never
/// depend on a process-wide default provider.
pub mod tls {
    use std::path::Path;
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::server::WebPkiClientVerifier;
    use rustls::{ClientConfig, RootCertStore, ServerConfig};

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// Every certificate in a PEM file (a chain: the leaf first).
    fn certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "{flag} {}: no CERTIFICATE in the file",
                path.display()
            ));
        }
        Ok(certs)
    }

    fn key(path: &Path, flag: &str) -> Result<PrivateKeyDer<'static>, String> {
        PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
    }

    fn roots(path: &Path, flag: &str) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        for cert in certs(path, flag)? {
            roots
                .add(cert)
                .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
        }
        Ok(roots)
    }

    /// A server config presenting `cert` (PEM chain) with `key` (PEM private key); with
    /// `client_ca`, clients must present a certificate signed by it (mTLS).
    pub fn server_config(
        cert: &Path,
        key_file: &Path,
        client_ca: Option<&Path>,
    ) -> Result<ServerConfig, String> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match client_ca {
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca, "--tls-client-ca")?),
                    provider(),
                )
                .build()
                .map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        builder
            .with_single_cert(certs(cert, "--tls-cert")?, key(key_file, "--tls-key")?)
            .map_err(|e| format!("--tls-cert/--tls-key: {e}"))
    }

    /// A client config trusting the CA certificates in `ca`; with `cert_and_key`, it presents
    /// that client certificate (mTLS).
    pub fn client_config(
        ca: &Path,
        cert_and_key: Option<(&Path, &Path)>,
    ) -> Result<ClientConfig, String> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots(ca, "--tls-ca")?);
        match cert_and_key {
            Some((cert, key_file)) => builder
                .with_client_auth_cert(certs(cert, "--tls-cert")?, key(key_file, "--tls-key")?)
                .map_err(|e| format!("--tls-cert/--tls-key: {e}")),
            None => Ok(builder.with_no_client_auth()),
        }
    }
}
