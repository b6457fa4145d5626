//! The reconnect proof of issue 12: an ack-mode client streams 100,000 numbered messages
//! through a loopback proxy that cuts the connection 500 times. Nothing may be lost, every
//! receipt must resolve, and every repeat the server sees must be flagged as a redelivery.
//! The server here is a bare `AckFramed` peer, which keeps no sessions: the client takes its
//! path for such servers (a new numbering per connection and a resend), so delivery is
//! at-least-once and the duplicates are counted and printed, not asserted to be zero. The
//! exactly-once proof against a framewire server, which keeps sessions, is
//! `ack_sessions_proof.rs`. The server grants the default
//! window: this failed (the policy gave up) before the client read acks while resending.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::{check_in_order_at_least_once, spawn_ack_server, spawn_flaky_proxy, AckEcho};
use framewire_client::{Client, ReconnectPolicy};
use framewire_codec::ack::DEFAULT_WINDOW;

const MESSAGES: usize = 100_000;
const CUTS: usize = 500;
/// Generous: the run takes seconds; this only stops a hang from blocking CI.
const PROOF_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_messages_through_five_hundred_cuts_lose_nothing() {
    let run = async {
        // The server grants the default window (4,096 messages, about 100 KB of these): after
        // a cut the client resends the whole unacknowledged window, and the proxy cuts every
        // few KB, so most resends are cut too. The client reads acks while it resends and a
        // connection that got messages acknowledged restarts the policy's count; without
        // that, no attempt got through its own resend and the policy gave up (50 attempts).
        let window = DEFAULT_WINDOW;
        let (server, log) = spawn_ack_server(AckEcho {
            window,
            echo: false,
            greeting: None,
        })
        .await;
        // A DATA frame of these messages is 4 + 10 + 11 = 25 bytes; the stream is about
        // 2.5 MB plus resends. The proxy cuts after 2,000..6,000 client-to-server bytes, far
        // less than a full window (about 100 KB), and the 500 cuts all land before the stream
        // ends.
        let (proxy, cut) = spawn_flaky_proxy(server, CUTS, 2_000, 6_000, 0x5eed_1234).await;
        let client = Client::builder()
            .reconnect(
                ReconnectPolicy::default()
                    .initial_delay(Duration::from_millis(1))
                    .max_delay(Duration::from_millis(20))
                    .max_attempts(Some(50)),
            )
            .connect_ack(proxy)
            .await
            .unwrap();
        let sent: Vec<Bytes> = (0..MESSAGES)
            .map(|i| Bytes::from(format!("msg{i:08}")))
            .collect();
        let mut receipts = Vec::with_capacity(MESSAGES);
        for m in &sent {
            receipts.push(client.send(m.clone()).await.unwrap());
        }
        client.flush().await.unwrap();
        for (i, r) in receipts.into_iter().enumerate() {
            assert_eq!(r.await.unwrap().seq, i as u64 + 1, "receipt {i}");
        }
        let cuts = cut.load(Ordering::SeqCst);
        assert_eq!(cuts, CUTS, "the proxy cut {cuts} connections");
        let reconnects = client.reconnects();
        let redeliveries = client.redeliveries();
        client.close().await.unwrap();
        let log = log.lock().unwrap().clone();
        // Every message arrived, in order, each repeat flagged as a redelivery.
        let duplicates = check_in_order_at_least_once(&log, &sent);
        let delivered: usize = log.iter().map(Vec::len).sum();
        assert_eq!(delivered, MESSAGES + duplicates);
        assert!(duplicates as u64 <= redeliveries);
        println!(
            "{MESSAGES} messages, {cuts} cuts, {} server connections, {reconnects} reconnects: \
             0 lost, {MESSAGES} receipts resolved; the server saw {duplicates} duplicates \
             (at-least-once; the client resent {redeliveries} messages flagged as redeliveries)",
            log.len()
        );
    };
    match tokio::time::timeout(PROOF_TIMEOUT, run).await {
        Ok(()) => {}
        Err(_) => panic!("the proof run did not finish within {PROOF_TIMEOUT:?}"),
    }
}
