//! PROXY protocol: original client addresses from trusted balancers, per-IP caps and the
//! accept filter on them, and hostile headers (each a clear error, counted, connection
//! closed, others served).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use framewire_server::{Connection, ProxyProtocol, Server, ServerBuilder, ServerError};
use futures::SinkExt;
use tokio::io::AsyncWriteExt;

/// The "balancer" in these tests: connections from 127.0.0.1 are trusted.
const BALANCER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// A direct client: 127.0.0.2 is not trusted.
const DIRECT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

const V2_SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

fn proxy_builder() -> ServerBuilder {
    Server::builder().proxy_protocol(
        ProxyProtocol::trusting(["127.0.0.1/32".parse().unwrap()])
            .header_timeout(Duration::from_millis(500)),
    )
}

/// Replies with the peer address it sees and the balancer's, then echoes.
async fn who(mut conn: Connection) -> Result<(), ServerError> {
    let via = conn
        .proxied_by()
        .and_then(|a| a.ip())
        .map_or_else(|| "-".to_string(), |ip| ip.to_string());
    conn.send(format!("{} via {via}", conn.peer_addr())).await?;
    echo(conn).await
}

fn v1(client: SocketAddr) -> Vec<u8> {
    format!(
        "PROXY TCP4 {} 127.0.0.1 {} 9999\r\n",
        client.ip(),
        client.port()
    )
    .into_bytes()
}

fn v2(client: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let IpAddr::V4(ip) = client.ip() else {
        panic!("IPv4 test addresses only")
    };
    let mut h = V2_SIG.to_vec();
    h.extend_from_slice(&[0x21, 0x11]);
    h.extend_from_slice(&u16::try_from(12 + tlvs.len()).unwrap().to_be_bytes());
    h.extend_from_slice(&ip.octets());
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&client.port().to_be_bytes());
    h.extend_from_slice(&9999u16.to_be_bytes());
    h.extend_from_slice(tlvs);
    h
}

/// A framed client from the balancer's address that first writes `header` (and, in the same
/// write, a first frame when `first` is set: the client's bytes coalesced with the header).
async fn through_balancer(addr: SocketAddr, header: &[u8], first: Option<&[u8]>) -> Client {
    let mut stream = raw_from(BALANCER, addr).await;
    let mut bytes = header.to_vec();
    if let Some(first) = first {
        bytes.extend_from_slice(&u32::try_from(first.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(first);
    }
    stream.write_all(&bytes).await.unwrap();
    framewire_codec::FrameCodec::new().framed(stream)
}

fn text(frame: Option<Bytes>) -> String {
    String::from_utf8(frame.expect("a frame").to_vec()).unwrap()
}

#[tokio::test]
async fn handlers_see_the_client_named_by_v1_and_v2_headers() {
    within(async {
        let server = spawn(proxy_builder(), who).await;
        let a: SocketAddr = "203.0.113.7:51234".parse().unwrap();
        let b: SocketAddr = "198.51.100.9:4000".parse().unwrap();

        let mut c1 = through_balancer(server.addr, &v1(a), None).await;
        assert_eq!(
            text(next_frame(&mut c1).await),
            format!("{a} via 127.0.0.1")
        );
        // Header and the client's first frame in one segment: nothing after the header is lost.
        let mut c2 = through_balancer(server.addr, &v2(b, &[0x04, 0, 2, 1, 2]), Some(b"x")).await;
        assert_eq!(
            text(next_frame(&mut c2).await),
            format!("{b} via 127.0.0.1")
        );
        assert_eq!(next_frame(&mut c2).await.as_deref(), Some(&b"x"[..]));
        c1.send(Bytes::from_static(b"y")).await.unwrap();
        assert_eq!(next_frame(&mut c1).await.as_deref(), Some(&b"y"[..]));

        // v2 LOCAL (HAProxy's health checks) and v1 UNKNOWN: the balancer itself.
        let mut local = V2_SIG.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        let mut c3 = through_balancer(server.addr, &local, None).await;
        assert!(text(next_frame(&mut c3).await).ends_with(" via -"));
        let mut c4 = through_balancer(server.addr, b"PROXY UNKNOWN\r\n", None).await;
        assert!(text(next_frame(&mut c4).await).starts_with("127.0.0.1:"));

        // A direct client (untrusted address, no header) is served as itself.
        let mut d = client_from(DIRECT, server.addr).await;
        assert!(text(next_frame(&mut d).await).starts_with("127.0.0.2:"));

        let stats = server.stop().await.stats;
        assert_eq!((stats.accepted, stats.errors.proxy), (5, 0));
    })
    .await;
}

#[tokio::test]
async fn per_ip_cap_and_accept_filter_act_on_the_original_client() {
    within(async {
        let builder = proxy_builder()
            .max_connections_per_ip(1)
            .accept_filter(|peer| peer.ip() != Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 66))));
        let server = spawn(builder, who).await;
        let a: SocketAddr = "203.0.113.7:1000".parse().unwrap();
        let a2: SocketAddr = "203.0.113.7:1001".parse().unwrap();
        let b: SocketAddr = "203.0.113.8:1000".parse().unwrap();
        let banned: SocketAddr = "192.0.2.66:1000".parse().unwrap();

        let mut first = through_balancer(server.addr, &v2(a, &[]), None).await;
        assert!(next_frame(&mut first).await.is_some());
        // Same client address, same balancer: over the per-IP cap.
        let mut second = through_balancer(server.addr, &v2(a2, &[]), None).await;
        assert!(closed_by_server(&mut second).await);
        // Another client through the same balancer (same socket address family and IP): served.
        let mut other = through_balancer(server.addr, &v1(b), None).await;
        assert_eq!(
            text(next_frame(&mut other).await),
            format!("{b} via 127.0.0.1")
        );
        let mut refused = through_balancer(server.addr, &v1(banned), None).await;
        assert!(closed_by_server(&mut refused).await);

        let stats = server.handle.stats();
        assert_eq!(
            (
                stats.accepted,
                stats.refused_per_ip,
                stats.refused_by_filter
            ),
            (2, 1, 1)
        );
        drop(first);
        server.stop().await;
    })
    .await;
}

/// One hostile connection from the balancer's address: it must be closed and counted, and a
/// good client through the balancer must still be served.
async fn refused(server: &Running<()>, n: u64, bytes: &[u8], then_close: bool) {
    let mut stream = raw_from(BALANCER, server.addr).await;
    stream.write_all(bytes).await.unwrap();
    if then_close {
        stream.shutdown().await.unwrap();
    }
    let mut framed = framewire_codec::FrameCodec::new().framed(stream);
    assert!(
        closed_by_server(&mut framed).await,
        "a connection that sent {bytes:02x?} was served"
    );
    let stats = wait_for(&server.handle, |s| s.errors.proxy == n).await;
    assert_eq!(stats.accepted, n - 1, "only the good clients are admitted");
    let good: SocketAddr = format!("203.0.113.{n}:7").parse().unwrap();
    let mut c = through_balancer(server.addr, &v2(good, &[]), Some(b"ok")).await;
    assert_eq!(
        text(next_frame(&mut c).await),
        format!("{good} via 127.0.0.1")
    );
    assert_eq!(next_frame(&mut c).await.as_deref(), Some(&b"ok"[..]));
}

#[tokio::test]
async fn hostile_headers_are_refused_counted_and_closed_while_others_are_served() {
    within(async {
        let server = spawn(proxy_builder(), who).await;
        let client: SocketAddr = "203.0.113.7:1".parse().unwrap();
        let good_v1 = v1(client);
        let good_v2 = v2(client, &[]);
        let mut cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("truncated v1", good_v1[..20].to_vec(), true),
            ("truncated v2", good_v2[..20].to_vec(), true),
            (
                "malformed v1",
                b"PROXY TCP4 1.2.3.999 1.2.3.4 1 2\r\n".to_vec(),
                false,
            ),
            (
                "v1 without end of line",
                [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat(),
                false,
            ),
            (
                "missing header (a plain frame)",
                b"\0\0\0\x05hello".to_vec(),
                false,
            ),
            // A TLV announcing 100 bytes with 2 present.
            ("malformed v2 TLV", v2(client, &[0x04, 0, 100, 1, 2]), false),
            // 4 KiB of TLVs: over the 1 KiB bound, refused at the length field.
            (
                "oversized v2 TLVs",
                v2(
                    client,
                    &[[0x04u8, 0x0f, 0xfd].as_slice(), &[0; 4093]].concat(),
                ),
                false,
            ),
        ];
        let mut bad_version = good_v2.clone();
        bad_version[12] = 0x11;
        cases.push(("v2 version 1", bad_version, false));
        for (n, (what, bytes, close)) in cases.into_iter().enumerate() {
            eprintln!("case: {what}");
            refused(&server, n as u64 + 1, &bytes, close).await;
        }
        let stats = server.stop().await.stats;
        assert_eq!(stats.errors.proxy, 8);
        assert_eq!(stats.accepted, 8, "exactly the good clients were admitted");
    })
    .await;
}

#[tokio::test]
async fn a_dripped_header_times_out_and_is_closed() {
    within(async {
        let server = spawn(proxy_builder(), who).await;
        let header = v1("203.0.113.7:1".parse().unwrap());
        let mut slow = raw_from(BALANCER, server.addr).await;
        let drip = tokio::spawn(async move {
            // One byte each 100 ms: 4.7 s for the header, far beyond the 500 ms timeout.
            for b in header {
                if slow.write_all(&[b]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        });
        // Meanwhile others are accepted and served.
        let good: SocketAddr = "203.0.113.8:2".parse().unwrap();
        let mut c = through_balancer(server.addr, &v2(good, &[]), None).await;
        assert_eq!(
            text(next_frame(&mut c).await),
            format!("{good} via 127.0.0.1")
        );
        let stats = wait_for(&server.handle, |s| s.errors.proxy == 1).await;
        assert_eq!(stats.accepted, 1);
        assert!(
            drip.await.unwrap(),
            "the dripping connection was never closed"
        );
        server.stop().await;
    })
    .await;
}

/// A header that never completes must not hold up anyone else. The header timeout here is
/// far longer than the whole test may run (`within`), so if the header were read inline in the
/// accept loop, the good client could not be served before the test timed out.
#[tokio::test]
async fn a_stalled_header_does_not_block_accept() {
    within(async {
        let patient = Server::builder().proxy_protocol(
            ProxyProtocol::trusting(["127.0.0.1/32".parse().unwrap()])
                .header_timeout(Duration::from_secs(3600)),
        );
        let server = spawn(patient, who).await;
        let header = v1("203.0.113.7:1".parse().unwrap());
        let mut stalled = raw_from(BALANCER, server.addr).await;
        stalled.write_all(&header[..5]).await.unwrap();
        let good: SocketAddr = "203.0.113.8:2".parse().unwrap();
        let mut c = through_balancer(server.addr, &v2(good, &[]), None).await;
        assert_eq!(
            text(next_frame(&mut c).await),
            format!("{good} via 127.0.0.1")
        );
        let stats = server.handle.stats();
        assert_eq!(stats.errors.proxy, 0, "the stalled header is still pending");
        assert_eq!(stats.accepted, 1);
        // The stalled peer gives up: its truncated header is an error, counted.
        drop(stalled);
        wait_for(&server.handle, |s| s.errors.proxy == 1).await;
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_untrusted_source_sending_a_header_is_refused() {
    within(async {
        let server = spawn(proxy_builder(), who).await;
        for header in [
            v1("10.9.9.9:1".parse().unwrap()),
            v2("10.9.9.9:1".parse().unwrap(), &[]),
        ] {
            let mut stream = raw_from(DIRECT, server.addr).await;
            stream.write_all(&header).await.unwrap();
            let mut framed = framewire_codec::FrameCodec::new().framed(stream);
            // Accepted as a direct client (greeted), then closed on reading the signature.
            assert!(text(next_frame(&mut framed).await).starts_with("127.0.0.2:"));
            assert!(closed_by_server(&mut framed).await);
        }
        let stats = wait_for(&server.handle, |s| s.errors.proxy == 2).await;
        assert_eq!(
            stats.errors.io, 0,
            "counted as PROXY refusals, not transport errors"
        );
        // A direct client without a header, its first bytes dripped: served.
        let mut d = raw_from(DIRECT, server.addr).await;
        for b in [0u8, 0, 0, 2, b'o', b'k'] {
            d.write_all(&[b]).await.unwrap();
        }
        let mut d = framewire_codec::FrameCodec::new().framed(d);
        assert!(text(next_frame(&mut d).await).starts_with("127.0.0.2:"));
        assert_eq!(next_frame(&mut d).await.as_deref(), Some(&b"ok"[..]));
        server.stop().await;
    })
    .await;
}
