//! TLS end to end: the framewire client against the framewire server, both over rustls, with
//! certificates made at run time. Plain mode, ack mode, mTLS accepted and refused, certificate
//! errors seen by the client, reconnect over TLS through a proxy that cuts connections, and
//! both ends over the application's own streams (`tokio::io::duplex`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;
#[path = "../../framewire-server/tests/common/tls.rs"]
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{check_in_order_at_least_once, payloads, spawn_flaky_proxy, within, AckLog};
use framewire_client::{Client, ClientBuilder, ClientError, Endpoint, ReconnectPolicy};
use framewire_server::{Address, Connection, Server, ServerBuilder, ServerError, ServerHandle};
use rustls::pki_types::ServerName;
use tls::{client_config, localhost, server_config, Ca, Leaf, Validity};

fn name(s: &'static str) -> ServerName<'static> {
    ServerName::try_from(s).unwrap()
}

/// A TLS client builder trusting `ca` for `localhost`.
fn tls_builder(ca: &Ca, cert: Option<&Leaf>) -> ClientBuilder {
    Client::builder().tls(client_config(ca, cert), name("localhost"))
}

/// Greets with what the handler learned of the TLS session, then echoes.
async fn tls_echo(mut conn: Connection) -> Result<(), ServerError> {
    let tls = conn.tls().expect("a TLS connection");
    let greeting = format!(
        "alpn={} sni={} certs={}",
        String::from_utf8_lossy(tls.alpn_protocol().unwrap_or(b"-")),
        tls.server_name().unwrap_or("-"),
        tls.peer_certificates().len()
    );
    conn.send(greeting).await?;
    while let Some(frame) = conn.recv().await? {
        conn.send(&frame).await?;
    }
    Ok(())
}

async fn spawn(builder: ServerBuilder) -> (SocketAddr, ServerHandle) {
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().tcp().unwrap();
    let handle = server.handle();
    tokio::spawn(server.serve(tls_echo));
    (addr, handle)
}

#[tokio::test]
async fn plain_mode_over_tls_echoes_every_size() {
    within(async {
        let (ca, leaf) = localhost();
        let (addr, handle) = spawn(Server::builder().tls(server_config(&leaf, None))).await;
        let mut client = tls_builder(&ca, None).connect(addr).await.unwrap();
        let greeting = client.recv().await.unwrap().unwrap();
        assert_eq!(&greeting[..], b"alpn=framewire/1 sni=localhost certs=0");
        // Sizes across the TLS record size (16 KiB) and the vectored-write threshold.
        let sent = payloads(60);
        for p in &sent {
            client.feed(p).await.unwrap();
        }
        client.flush().await.unwrap();
        for p in &sent {
            assert_eq!(&client.recv().await.unwrap().unwrap(), p);
        }
        assert!(client.close().await.unwrap().is_empty());
        let stats = handle.stats();
        assert_eq!(stats.errors.tls_handshake, 0);
        assert_eq!(stats.accepted, 1);
    })
    .await;
}

#[tokio::test]
async fn ack_mode_over_tls_delivers_and_echoes() {
    within(async {
        let (ca, leaf) = localhost();
        let builder = Server::builder()
            .ack_mode(8)
            .tls(server_config(&leaf, None));
        let (addr, _handle) = spawn(builder).await;
        let b = tls_builder(&ca, None).reconnect(ReconnectPolicy::never());
        let mut client = b.connect_ack(addr).await.unwrap();
        let greeting = client.recv().await.unwrap().unwrap();
        assert_eq!(
            &greeting.payload[..],
            b"alpn=framewire/1 sni=localhost certs=0"
        );
        let sent = payloads(40);
        for p in &sent {
            let reply = client.call(p.clone()).await.unwrap();
            assert_eq!(&reply.payload, p);
        }
        client.flush().await.unwrap();
        client.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn mtls_accepts_a_trusted_client_and_the_handler_sees_its_chain() {
    within(async {
        let (ca, leaf) = localhost();
        let client_ca = Ca::new("framewire client CA");
        let client_leaf = client_ca.client_leaf("client-7");
        let expected = client_leaf.chain[0].clone();
        let server = Server::builder()
            .tls(server_config(&leaf, Some(&client_ca)))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let addr = server.local_addr().tcp().unwrap();
        tokio::spawn(server.serve(|mut conn: Connection| async move {
            let chain = conn.tls().unwrap().peer_certificates().to_vec();
            conn.send(chain.first().map(|c| c.to_vec()).unwrap_or_default())
                .await
        }));
        let mut client = tls_builder(&ca, Some(&client_leaf))
            .connect(addr)
            .await
            .unwrap();
        let seen = client.recv().await.unwrap().unwrap();
        assert_eq!(
            &seen[..],
            &expected[..],
            "the handler saw the client's certificate"
        );
    })
    .await;
}

/// The client's view of a refused handshake: with TLS 1.3 the client finishes its side
/// before the server checks its certificate, so the refusal (the server's alert) can arrive
/// with the first read instead of at connect.
async fn refused(builder: &ClientBuilder, addr: SocketAddr) -> String {
    match builder.connect(addr).await {
        Err(e) => e.to_string(),
        Ok(mut client) => match client.recv().await {
            Err(e) => e.to_string(),
            Ok(frame) => panic!("the server accepted the connection: {frame:?}"),
        },
    }
}

#[tokio::test]
async fn mtls_refuses_an_untrusted_or_missing_client_certificate() {
    within(async {
        let (ca, leaf) = localhost();
        let client_ca = Ca::new("framewire client CA");
        let stranger = Ca::new("someone else").client_leaf("mallory");
        let (addr, handle) =
            spawn(Server::builder().tls(server_config(&leaf, Some(&client_ca)))).await;

        let untrusted = refused(&tls_builder(&ca, Some(&stranger)), addr).await;
        assert!(untrusted.contains("alert"), "{untrusted}");
        let missing = refused(&tls_builder(&ca, None), addr).await;
        assert!(missing.contains("alert"), "{missing}");
        common::wait_until(|| handle.stats().errors.tls_handshake >= 2).await;
        let stats = handle.stats();
        assert_eq!(stats.errors.tls_handshake, 2, "{stats:?}");
        assert_eq!(stats.frames_out, 0, "no handler ran");
    })
    .await;
}

#[tokio::test]
async fn the_client_refuses_expired_wrong_name_and_untrusted_server_certificates() {
    within(async {
        let ca = Ca::new("framewire test CA");
        let cases = [
            (ca.server_leaf(&["localhost"], Validity::Expired), "expired"),
            (
                ca.server_leaf(&["elsewhere.example"], Validity::Current),
                "not valid for name",
            ),
            (
                Ca::new("unknown CA").server_leaf(&["localhost"], Validity::Current),
                "UnknownIssuer",
            ),
        ];
        for (leaf, why) in cases {
            let (addr, handle) = spawn(Server::builder().tls(server_config(&leaf, None))).await;
            match tls_builder(&ca, None).connect(addr).await {
                Err(e @ ClientError::Tls { .. }) => {
                    let shown = e.to_string();
                    assert!(shown.contains(why), "{why}: {shown}");
                }
                Err(other) => panic!("{why}: not a TLS error: {other}"),
                Ok(_) => panic!("{why}: connected"),
            }
            // The server saw the client's alert: a failed handshake, counted.
            common::wait_until(|| handle.stats().errors.tls_handshake == 1).await;
            handle.shutdown();
        }
    })
    .await;
}

#[tokio::test]
async fn ack_mode_reconnects_over_tls_and_loses_nothing() {
    within(async {
        let (ca, leaf) = localhost();
        let log: AckLog = Arc::default();
        let server = Server::builder()
            .ack_mode(8)
            .tls(server_config(&leaf, None))
            .state(Arc::clone(&log))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let target = server.local_addr().tcp().unwrap();
        let handle = server.handle();
        tokio::spawn(server.serve(|mut conn: Connection<AckLog>| async move {
            let index = {
                let mut log = conn.state().lock().unwrap();
                log.push(Vec::new());
                log.len() - 1
            };
            while let Some(m) = conn.recv().await? {
                let again = conn.last_was_redelivery();
                conn.state().lock().unwrap()[index].push((m, again));
            }
            Ok::<_, ServerError>(())
        }));
        // Cuts the first 3 connections somewhere after their TLS handshakes (2-4 KiB in).
        let (proxy, cut) = spawn_flaky_proxy(target, 3, 2000, 6000, 0x5eed).await;
        let b = tls_builder(&ca, None).ack_window(8).reconnect(
            ReconnectPolicy::default()
                .initial_delay(Duration::from_millis(5))
                .max_delay(Duration::from_millis(50))
                .max_attempts(Some(20)),
        );
        let client = b.connect_ack(proxy).await.unwrap();
        let sent: Vec<Bytes> = (0..300)
            .map(|i| Bytes::from(format!("tls message {i:04} {}", "y".repeat(i % 40))))
            .collect();
        for m in &sent {
            client.send(m.clone()).await.unwrap();
        }
        client.flush().await.unwrap();
        client.close().await.unwrap();
        assert_eq!(cut.load(std::sync::atomic::Ordering::SeqCst), 3);
        let log = log.lock().unwrap().clone();
        assert!(log.len() >= 4, "{} connections", log.len());
        check_in_order_at_least_once(&log, &sent);
        assert_eq!(handle.stats().errors.tls_handshake, 0);
    })
    .await;
}

#[tokio::test]
async fn both_ends_run_over_the_applications_own_streams() {
    within(async {
        let (ca, leaf) = localhost();
        // Plain and TLS, each over an in-memory pipe.
        for with_tls in [false, true] {
            let (tx, rx) = futures::channel::mpsc::unbounded();
            let mut builder = Server::builder();
            if with_tls {
                builder = builder.tls(server_config(&leaf, None));
            }
            let server = builder.incoming(rx, Address::Other("pipes".into()));
            assert_eq!(server.local_addr().to_string(), "pipes");
            let handle = server.handle();
            tokio::spawn(server.serve(|mut conn: Connection| async move {
                conn.send(format!("hello {}", conn.peer_addr())).await?;
                while let Some(frame) = conn.recv().await? {
                    conn.send(&frame).await?;
                }
                Ok::<_, ServerError>(())
            }));
            for i in 0..3 {
                let (ours, theirs) = tokio::io::duplex(4096);
                tx.unbounded_send(Ok((theirs, Address::Other(format!("pipe {i}")))))
                    .unwrap();
                let builder = if with_tls {
                    tls_builder(&ca, None)
                } else {
                    Client::builder()
                };
                let mut client = builder.connect_stream(ours).await.unwrap();
                assert_eq!(client.endpoint(), &Endpoint::Stream);
                let hello = client.recv().await.unwrap().unwrap();
                assert_eq!(hello, Bytes::from(format!("hello pipe {i}")));
                for p in payloads(30) {
                    assert_eq!(client.call(&p).await.unwrap(), p);
                }
                client.close().await.unwrap();
            }
            common::wait_until(|| handle.stats().active == 0).await;
            assert_eq!(handle.stats().accepted, 3);
        }
    })
    .await;
}

#[tokio::test]
async fn ack_mode_over_the_applications_own_stream_hands_back_the_unacked_when_it_drops() {
    within(async {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let server = Server::builder()
            .ack_mode(4)
            .incoming(rx, Address::Other("pipes".into()));
        tokio::spawn(server.serve(|mut conn: Connection| async move {
            // Echo two messages, then drop the connection with the rest unacknowledged.
            for _ in 0..2 {
                let Some(m) = conn.recv().await? else { break };
                conn.send(&m).await?;
            }
            Ok::<_, ServerError>(())
        }));
        let (ours, theirs) = tokio::io::duplex(4096);
        tx.unbounded_send(Ok((theirs, Address::Other("pipe".into()))))
            .unwrap();
        let mut client = Client::builder().connect_ack_stream(ours).await.unwrap();
        for m in ["a", "b"] {
            assert_eq!(&client.call(m).await.unwrap().payload[..], m.as_bytes());
        }
        let receipt = client.send("c").await.unwrap();
        match client.flush().await {
            Err(ClientError::GaveUp { unacked, .. }) => {
                assert_eq!(unacked, vec![Bytes::from("c")]);
            }
            other => panic!("expected GaveUp, got {other:?}"),
        }
        assert!(receipt.await.is_err(), "\"c\" was never acknowledged");
    })
    .await;
}
