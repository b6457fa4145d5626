//! max_connections in both modes, the per-IP cap, the accept filter.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::*;
use framewire_server::{AtCapacity, Connection, Server, ServerError};
use futures::SinkExt;

/// Greets, then echoes: a client knows it was accepted when the greeting arrives.
async fn greet_then_echo(mut conn: Connection) -> Result<(), ServerError> {
    conn.send("hi").await?;
    echo(conn).await
}

const SILENCE: Duration = Duration::from_millis(300);

#[tokio::test]
async fn at_capacity_wait_holds_new_peers_until_a_slot_frees() {
    within(async {
        let builder = Server::builder()
            .max_connections(2)
            .at_capacity(AtCapacity::Wait);
        let server = spawn(builder, greet_then_echo).await;
        let mut a = client(server.addr).await;
        let mut b = client(server.addr).await;
        assert_eq!(next_frame(&mut a).await.as_deref(), Some(&b"hi"[..]));
        assert_eq!(next_frame(&mut b).await.as_deref(), Some(&b"hi"[..]));
        // The third peer completes the TCP handshake (backlog) but gets no handler yet.
        let mut c = client(server.addr).await;
        c.send(bytes::Bytes::from("queued")).await.unwrap();
        assert!(
            silent_for(&mut c, SILENCE).await,
            "third connection was served over the cap"
        );
        assert_eq!(server.handle.stats().active, 2);
        drop(a);
        assert_eq!(next_frame(&mut c).await.as_deref(), Some(&b"hi"[..]));
        assert_eq!(next_frame(&mut c).await.as_deref(), Some(&b"queued"[..]));
        let stats = server.handle.stats();
        assert_eq!((stats.accepted, stats.refused), (3, 0));
        drop(b);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn at_capacity_refuse_closes_new_peers_at_once() {
    within(async {
        let builder = Server::builder()
            .max_connections(2)
            .at_capacity(AtCapacity::Refuse);
        let server = spawn(builder, greet_then_echo).await;
        let mut a = client(server.addr).await;
        let mut b = client(server.addr).await;
        assert!(next_frame(&mut a).await.is_some());
        assert!(next_frame(&mut b).await.is_some());
        let mut c = client(server.addr).await;
        assert!(closed_by_server(&mut c).await);
        let stats = wait_for(&server.handle, |s| s.refused == 1).await;
        assert_eq!(stats.refused_at_capacity, 1);
        assert_eq!(stats.accepted, 2);
        // A slot frees: the next peer is served.
        drop(a);
        wait_for(&server.handle, |s| s.active == 1).await;
        let mut d = client(server.addr).await;
        assert_eq!(next_frame(&mut d).await.as_deref(), Some(&b"hi"[..]));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn per_ip_cap_refuses_only_that_address() {
    within(async {
        let builder = Server::builder().max_connections_per_ip(2);
        let server = spawn(builder, greet_then_echo).await;
        let one = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let two = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let mut a = client_from(one, server.addr).await;
        let mut b = client_from(one, server.addr).await;
        assert!(next_frame(&mut a).await.is_some());
        assert!(next_frame(&mut b).await.is_some());
        let mut c = client_from(one, server.addr).await;
        assert!(closed_by_server(&mut c).await);
        let mut d = client_from(two, server.addr).await;
        assert_eq!(next_frame(&mut d).await.as_deref(), Some(&b"hi"[..]));
        let stats = server.handle.stats();
        assert_eq!(
            (stats.refused_per_ip, stats.refused, stats.accepted),
            (1, 1, 3)
        );
        // Closing one of 127.0.0.1's connections frees a slot for that address.
        drop(a);
        wait_for(&server.handle, |s| s.active == 2).await;
        let mut e = client_from(one, server.addr).await;
        assert_eq!(next_frame(&mut e).await.as_deref(), Some(&b"hi"[..]));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn accept_filter_refuses_what_it_rejects() {
    within(async {
        let banned = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        let builder = Server::builder().accept_filter(move |peer| peer.ip() != Some(banned));
        let server = spawn(builder, greet_then_echo).await;
        let mut bad = client_from(banned, server.addr).await;
        assert!(closed_by_server(&mut bad).await);
        let mut good = client(server.addr).await;
        assert_eq!(next_frame(&mut good).await.as_deref(), Some(&b"hi"[..]));
        good.send(bytes::Bytes::from("still here")).await.unwrap();
        assert_eq!(
            next_frame(&mut good).await.as_deref(),
            Some(&b"still here"[..])
        );
        let stats = server.handle.stats();
        assert_eq!(
            (stats.refused_by_filter, stats.refused, stats.accepted),
            (1, 1, 1)
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn filter_refusals_do_not_use_up_a_waiting_slot() {
    within(async {
        let banned = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        let builder = Server::builder()
            .max_connections(1)
            .accept_filter(move |peer| peer.ip() != Some(banned));
        let server = spawn(builder, greet_then_echo).await;
        for _ in 0..3 {
            let mut bad = client_from(banned, server.addr).await;
            assert!(closed_by_server(&mut bad).await);
        }
        let mut good = client(server.addr).await;
        assert_eq!(next_frame(&mut good).await.as_deref(), Some(&b"hi"[..]));
        server.stop().await;
    })
    .await;
}
