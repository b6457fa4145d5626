//! The hostile-input suite for TLS: attacks on a real TLS server over loopback, each while a
//! well-behaved TLS client (a [`Witness`]) keeps getting correct echoes.
//!
//! Each attack must end in a failed handshake that is counted
//! ([`ErrorStats::tls_handshake`](framewire_server::ErrorStats) or `tls_handshake_timeout`),
//! the attacker's connection closed, no handler run, the witness served throughout, and the
//! live heap back near its baseline afterwards. Client-side refusals (expired, wrong-name,
//! untrusted server certificates) must also give the client a precise reason.
//!
//! Memory: live heap from a counting global allocator (`stats_alloc`; no `unsafe` here). The
//! server, the attackers and the witness all run in this process, so the figure is an upper
//! bound on the server's share. Tests run one at a time (a lock) so that no other test's
//! allocations are counted. `cargo test -p framewire-server --test hostile_tls -- --nocapture`
//! prints the figures.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::alloc::System;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::tls::{client_config, localhost, provider, server_config, Ca, Leaf, Validity};
use common::*;
use framewire_server::Server;
use rustls::pki_types::ServerName;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Runs `body` alone (the memory figures are per process) on a fresh runtime.
fn run<F: Future<Output = ()>>(body: F) {
    run_alone(body);
}

const KIB: i64 = 1024;

/// Live heap bytes.
fn heap() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// The lowest live heap of 20 samples 2 ms apart (leaves out a witness round in flight).
async fn settled_heap() -> i64 {
    let mut low = heap();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        low = low.min(heap());
    }
    low
}

/// A raw TCP connection.
async fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// The bytes of a real ClientHello (what a TLS client sends first).
fn client_hello(ca: &Ca) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(client_config(ca, None)), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// Presents the expired certificate to clients asking for `expired.test` (SNI) and the good
/// one (`localhost`, 127.0.0.1) to everyone else, so one server can show both failures while
/// the witness is served.
#[derive(Debug)]
struct BySni {
    good: Arc<CertifiedKey>,
    expired: Arc<CertifiedKey>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(if hello.server_name() == Some("expired.test") {
            Arc::clone(&self.expired)
        } else {
            Arc::clone(&self.good)
        })
    }
}

fn certified(leaf: &Leaf) -> Arc<CertifiedKey> {
    let key = provider()
        .key_provider
        .load_private_key(leaf.key())
        .unwrap();
    Arc::new(CertifiedKey::new(leaf.chain.clone(), key))
}

/// A client's attempt with `config`, asking for `name`: the handshake's error, or (with TLS
/// 1.3, where a client certificate is judged after the client's side is done) the error of
/// the first read.
async fn refused(addr: SocketAddr, config: rustls::ClientConfig, name: &'static str) -> String {
    let stream = raw(addr).await;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match connector
        .connect(ServerName::try_from(name).unwrap(), stream)
        .await
    {
        Err(e) => e.to_string(),
        Ok(mut tls) => {
            let _ = tls.write_all(b"\0\0\0\x02hi").await;
            let mut buf = [0u8; 64];
            match tls.read(&mut buf).await {
                Err(e) => e.to_string(),
                Ok(n) => panic!("the server answered {n} bytes instead of refusing"),
            }
        }
    }
}

/// Not TLS at all, malformed TLS, and certificates the client refuses: each a failed
/// handshake, counted, the connection closed, the witness served throughout.
#[test]
fn non_tls_malformed_and_refused_handshakes_close_only_the_attacker() {
    run(async {
        let ca = Ca::new("framewire test CA");
        let good = ca.server_leaf(&["localhost", "127.0.0.1"], Validity::Current);
        let expired = ca.server_leaf(&["expired.test"], Validity::Expired);
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(BySni {
                good: certified(&good),
                expired: certified(&expired),
            }));
        config.alpn_protocols = vec![b"framewire/1".to_vec()];
        let server = spawn(Server::builder().tls(config), echo).await;
        let witness = Witness::tls(server.addr, client_config(&ca, None)).await;
        witness.progress(5).await;
        let base = settled_heap().await;

        // Bytes that are not a TLS handshake, written on a fresh connection each.
        let mut garbage = vec![0u8; 4096];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for b in garbage.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let mut bogus_hello = vec![0x16, 0x03, 0x01, 0x00, 0x24, 0x01, 0x00, 0x00, 0x20];
        bogus_hello.extend_from_slice(&[0xee; 32]);
        let raw_attacks: [(&str, Vec<u8>); 5] = [
            ("a plain framewire frame", b"\0\0\0\x05hello".to_vec()),
            (
                "an HTTP request",
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ),
            ("4 KiB of random bytes", garbage),
            // A handshake record header claiming 65535 bytes (over the record limit).
            (
                "an oversized record",
                vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00],
            ),
            ("a ClientHello full of junk", bogus_hello),
        ];
        let mut failed = 0u64;
        for (what, bytes) in raw_attacks {
            let mut s = raw(server.addr).await;
            s.write_all(&bytes).await.unwrap();
            let reply = read_until_closed(&mut s).await;
            failed += 1;
            let stats = wait_for(&server.handle, |s| s.errors.tls_handshake == failed).await;
            // At most a TLS alert came back (record type 21), never application data.
            assert!(
                reply.is_empty() || reply[0] == 21,
                "{what}: the server sent {reply:?}"
            );
            println!(
                "{what}: closed ({} bytes of alert), failed handshakes counted: {}",
                reply.len(),
                stats.errors.tls_handshake
            );
            witness.progress(2).await;
        }

        // Certificates the client refuses: it says why, and the server counts its alert.
        let client_refusals = [
            (
                "an expired certificate",
                client_config(&ca, None),
                "expired.test",
                "expired",
            ),
            (
                "a wrong-name certificate",
                client_config(&ca, None),
                "wrong.test",
                "not valid for name",
            ),
            (
                "a certificate from an unknown CA",
                client_config(&Ca::new("someone else"), None),
                "localhost",
                "UnknownIssuer",
            ),
        ];
        for (what, config, name, why) in client_refusals {
            let err = refused(server.addr, config, name).await;
            assert!(err.contains(why), "{what}: {err}");
            failed += 1;
            wait_for(&server.handle, |s| s.errors.tls_handshake == failed).await;
            println!("{what}: the client said {err:?}");
            witness.progress(2).await;
        }

        let stats = server.handle.stats();
        assert_eq!(stats.errors.tls_handshake, 8, "{stats:?}");
        assert_eq!(stats.errors.tls_handshake_timeout, 0);
        assert_eq!(stats.active, 1, "only the witness is left: {stats:?}");
        let after = settled_heap().await - base;
        println!("heap after the attacks: {:+.1} KiB", after as f64 / 1024.0);
        assert!(after < 64 * KIB, "heap not back near baseline: {after} B");
        let rounds = witness.finish().await;
        println!("witness: {rounds} correct echoes over TLS, no error");
        server.stop().await;
    });
}

/// mTLS: a client certificate from an untrusted CA, and none at all, are refused and counted;
/// the witness, with a trusted certificate, is served throughout.
#[test]
fn untrusted_or_missing_client_certificates_are_refused() {
    run(async {
        let (ca, leaf) = localhost();
        let client_ca = Ca::new("framewire client CA");
        let trusted = client_ca.client_leaf("witness");
        let stranger = Ca::new("someone else").client_leaf("mallory");
        let server = spawn(
            Server::builder().tls(server_config(&leaf, Some(&client_ca))),
            echo,
        )
        .await;
        let witness = Witness::tls(server.addr, client_config(&ca, Some(&trusted))).await;
        witness.progress(5).await;
        let untrusted = refused(
            server.addr,
            client_config(&ca, Some(&stranger)),
            "localhost",
        )
        .await;
        assert!(untrusted.contains("alert"), "{untrusted}");
        witness.progress(2).await;
        let missing = refused(server.addr, client_config(&ca, None), "localhost").await;
        assert!(missing.contains("CertificateRequired"), "{missing}");
        let stats = wait_for(&server.handle, |s| s.errors.tls_handshake == 2).await;
        println!(
            "untrusted: {untrusted:?}; missing: {missing:?}; counted: {}",
            stats.errors.tls_handshake
        );
        witness.progress(5).await;
        assert_eq!(server.handle.stats().active, 1);
        witness.finish().await;
        server.stop().await;
    });
}

/// Slowloris on the handshake: connections that send part of a ClientHello (or nothing, or
/// one byte at a time) are ended by the handshake timeout, counted; while they are held,
/// the witness is served and new TLS clients are accepted (the handshakes run in their own
/// tasks, not in the accept loop), and each costs a bounded amount of memory.
#[test]
fn stalled_and_dripping_handshakes_are_ended_by_the_handshake_timeout() {
    const STALLED: usize = 100;
    run(async {
        let (ca, leaf) = localhost();
        let server = spawn(
            Server::builder()
                .tls(server_config(&leaf, None))
                // Long enough that 100 connects on a loaded CI box finish well within it; the
                // dripper (a byte every 50 ms) still cannot finish its ClientHello in time.
                .tls_handshake_timeout(Duration::from_secs(3))
                // All 100 attackers come from 127.0.0.1: lift the default per-IP cap (64).
                .max_connections_per_ip(None),
            echo,
        )
        .await;
        let witness = Witness::tls(server.addr, client_config(&ca, None)).await;
        witness.progress(5).await;
        let base = settled_heap().await;
        let hello = client_hello(&ca);
        let mut attackers = Vec::new();
        for i in 0..STALLED {
            let mut s = raw(server.addr).await;
            // Half a ClientHello, or (every 4th) a record header claiming 16 KiB and 16 bytes
            // of it, or (every 10th) nothing at all.
            match i % 10 {
                0 => {}
                1 | 5 => {
                    s.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00]).await.unwrap();
                    s.write_all(&hello[5..21]).await.unwrap();
                }
                _ => s.write_all(&hello[..hello.len() / 2]).await.unwrap(),
            }
            attackers.push(s);
        }
        // One drips a ClientHello a byte every 50 ms: bytes arriving do not extend the
        // deadline.
        let drip_hello = hello.clone();
        let addr = server.addr;
        let dripper = tokio::spawn(async move {
            let mut s = raw(addr).await;
            for b in drip_hello {
                if s.write_all(&[b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            read_until_closed(&mut s).await
        });
        // Every attacker and the dripper hold a slot (plus the witness), none timed out yet.
        let stats = wait_for(&server.handle, |s| s.active == STALLED as u64 + 2).await;
        assert_eq!(stats.errors.tls_handshake_timeout, 0, "{stats:?}");
        let held = heap() - base;
        let per = held / (STALLED as i64 + 1);
        println!(
            "{} stalled handshakes held: heap {:+.1} KiB, {:.1} KiB each",
            STALLED + 1,
            held as f64 / 1024.0,
            per as f64 / 1024.0
        );
        assert!(per < 48 * KIB, "heap per stalled handshake: {per} B");
        // Accepting goes on: a new TLS client is served while they stall.
        let mut fresh = tls_client(server.addr, client_config(&ca, None)).await;
        futures::SinkExt::send(&mut fresh, bytes::Bytes::from_static(b"still serving"))
            .await
            .unwrap();
        let echo = futures::StreamExt::next(&mut fresh).await.unwrap().unwrap();
        assert_eq!(&echo[..], b"still serving");
        witness.progress(5).await;

        // The timeout ends every one of them, and only them.
        let stats = wait_for(&server.handle, |s| {
            s.errors.tls_handshake_timeout == STALLED as u64 + 1
        })
        .await;
        for s in attackers.iter_mut() {
            let reply = read_until_closed(s).await;
            assert!(reply.is_empty() || reply[0] == 21, "{reply:?}");
        }
        dripper.await.unwrap();
        assert_eq!(stats.errors.tls_handshake, 0, "{stats:?}");
        witness.progress(5).await;
        drop(fresh);
        drop(attackers);
        wait_for(&server.handle, |s| s.active == 1).await;
        let after = settled_heap().await - base;
        println!("heap after the timeouts: {:+.1} KiB", after as f64 / 1024.0);
        assert!(after < 64 * KIB, "heap not back near baseline: {after} B");
        witness.finish().await;
        server.stop().await;
    });
}
