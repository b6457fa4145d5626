//! The session proof of issue 13: an ack-mode client and a framewire server exchange 100,000
//! numbered messages each way through a loopback proxy that cuts the connection 1,000 times,
//! at random with a reset (RST) or a close (FIN), wherever the byte count of the two
//! directions together runs out. The server keeps the client's session across the cuts, so
//! every message must reach each application exactly once, in order, with its sequence
//! number as its id and no redelivery flag, and every receipt must resolve with the id the
//! server's handler saw.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use framewire_client::{Client, ReconnectPolicy};
use framewire_codec::ack::{Delivery, SessionStatus};
use framewire_server::{Connection, Server, ServerError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const MESSAGES: u64 = 100_000;
const CUTS: usize = 1_000;
/// Generous: the run takes seconds; this only stops a hang from blocking CI.
const PROOF_TIMEOUT: Duration = Duration::from_secs(300);

fn number(n: u64) -> Bytes {
    Bytes::from(format!("n{n:09}"))
}

/// What the server's handlers received, over every connection, and how many connections
/// resumed the session.
#[derive(Default)]
struct ServerLog {
    received: Mutex<Vec<Delivery>>,
    resumed: AtomicUsize,
    connections: AtomicUsize,
}

/// Each connection: continue the session's numbered stream to the client from where the
/// session is, and record every message from the client.
async fn handler(mut conn: Connection<Arc<ServerLog>>) -> Result<(), ServerError> {
    let log = Arc::clone(conn.state());
    log.connections.fetch_add(1, Ordering::SeqCst);
    if conn.session().map(|(_, s)| s) == Some(SessionStatus::Resumed) {
        log.resumed.fetch_add(1, Ordering::SeqCst);
    }
    let mut next = conn.sent_in_session() + 1;
    loop {
        while let Some(d) = conn.try_recv_delivery()? {
            log.received.lock().unwrap().push(d);
        }
        if next <= MESSAGES {
            if conn.send(number(next)).await.is_err() {
                // The connection is gone; the session (and this message, if it was
                // queued) goes on with the next one.
                return Ok(());
            }
            next += 1;
        } else {
            match conn.recv_delivery().await {
                Ok(Some(d)) => log.received.lock().unwrap().push(d),
                Ok(None) | Err(_) => return Ok(()),
            }
        }
    }
}

/// One direction of a proxied connection: copies until end of stream, or until the shared
/// byte budget runs out (then cuts: counts it once and cancels the other direction).
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    budget: Arc<AtomicI64>,
    cut: CancellationToken,
    cuts: Arc<AtomicUsize>,
    reset: bool,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = tokio::select! {
            () = cut.cancelled() => break,
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
        };
        let before = budget.fetch_sub(n as i64, Ordering::SeqCst);
        // What is left of the budget goes through; the cut lands inside this chunk.
        let pass = n.min(usize::try_from(before.max(0)).unwrap_or(usize::MAX));
        tokio::select! {
            () = cut.cancelled() => break,
            r = to.write_all(&buf[..pass]) => if r.is_err() { return },
        }
        if before - (n as i64) <= 0 {
            if before > 0 {
                cuts.fetch_add(1, Ordering::SeqCst);
            }
            cut.cancel();
            break;
        }
    }
    if reset {
        // A reset when the halves are dropped, rather than an orderly close.
        let _ = from.as_ref().set_zero_linger();
    }
}

/// A loopback proxy to `target` that cuts each of its first `drops` connections after
/// `min..=max` bytes (both directions together), with a reset or a close at random.
async fn spawn_cutting_proxy(
    target: SocketAddr,
    drops: usize,
    min: i64,
    max: i64,
    seed: u64,
) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cuts = Arc::new(AtomicUsize::new(0));
    let resets = Arc::new(AtomicUsize::new(0));
    let (cuts2, resets2) = (Arc::clone(&cuts), Arc::clone(&resets));
    tokio::spawn(async move {
        let mut rng = seed | 1;
        let mut n = 0usize;
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let budget = if n < drops {
                min + (rng % (max - min + 1) as u64) as i64
            } else {
                i64::MAX
            };
            let reset = n < drops && (rng >> 32) & 1 == 1;
            if reset {
                resets2.fetch_add(1, Ordering::SeqCst);
            }
            n += 1;
            let budget = Arc::new(AtomicI64::new(budget));
            let cut = CancellationToken::new();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let up = pipe(
                cr,
                sw,
                Arc::clone(&budget),
                cut.clone(),
                Arc::clone(&cuts2),
                reset,
            );
            let down = pipe(sr, cw, budget, cut, Arc::clone(&cuts2), reset);
            tokio::spawn(async move {
                tokio::join!(up, down);
            });
        }
    });
    (addr, cuts, resets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_messages_each_way_through_a_thousand_cuts_arrive_exactly_once() {
    let run = async {
        let log = Arc::new(ServerLog::default());
        let server = Server::builder()
            .ack_mode(framewire_codec::ack::DEFAULT_WINDOW)
            .state(Arc::clone(&log))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let target = server.local_addr().tcp().unwrap();
        let handle = server.handle();
        tokio::spawn(server.serve(handler));
        // A DATA frame of these messages is 4 + 10 + 10 = 24 bytes: about 2.4 MB each way.
        // The proxy cuts after 1,000..5,000 bytes of the two directions together, so the
        // 1,000 cuts (about 3 MB) all land before the exchange ends.
        let (proxy, cuts, resets) =
            spawn_cutting_proxy(target, CUTS, 1_000, 5_000, 0x5e55_1013).await;
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
        let (tx, mut rx) = client.split();
        let receiving = tokio::spawn(async move {
            let mut got = Vec::with_capacity(MESSAGES as usize);
            while (got.len() as u64) < MESSAGES {
                match rx.recv().await {
                    Ok(Some(d)) => got.push(d),
                    Ok(None) => break,
                    Err(e) => panic!("recv: {}", &e.to_string()[..300.min(e.to_string().len())]),
                }
            }
            (got, rx)
        });
        let mut receipts = Vec::with_capacity(MESSAGES as usize);
        for i in 1..=MESSAGES {
            match tx.send(number(i)).await {
                Ok(r) => receipts.push(r),
                Err(e) => panic!(
                    "send {i}: {}",
                    &e.to_string()[..300.min(e.to_string().len())]
                ),
            }
        }
        tx.flush().await.unwrap();
        let (got, rx) = receiving.await.unwrap();

        // Client -> server: every message once, in order, its seq as its id, never flagged;
        // every receipt resolved with the id the handler saw.
        let received = log.received.lock().unwrap().clone();
        assert_eq!(
            received.len() as u64,
            MESSAGES,
            "server handled each message once"
        );
        let session = received[0].session;
        assert_ne!(session, [0; 16], "the client opened a session");
        for (i, d) in received.iter().enumerate() {
            let n = i as u64 + 1;
            assert_eq!(d.payload, number(n), "server: message {n} in order");
            assert_eq!(
                (d.session, d.seq),
                (session, n),
                "server: id of message {n}"
            );
            assert!(!d.redelivered, "server: message {n} flagged");
        }
        for (i, r) in receipts.into_iter().enumerate() {
            let id = r.await.unwrap();
            assert_eq!((id.session, id.seq), (session, i as u64 + 1), "receipt {i}");
        }
        // Server -> client: the same.
        assert_eq!(got.len() as u64, MESSAGES, "client got each message once");
        for (i, d) in got.iter().enumerate() {
            let n = i as u64 + 1;
            assert_eq!(d.payload, number(n), "client: message {n} in order");
            assert_eq!(
                (d.session, d.seq),
                (session, n),
                "client: id of message {n}"
            );
            assert!(!d.redelivered, "client: message {n} flagged");
        }
        let cuts = cuts.load(Ordering::SeqCst);
        assert_eq!(cuts, CUTS, "the proxy cut {cuts} connections");
        let connections = log.connections.load(Ordering::SeqCst);
        let resumed = log.resumed.load(Ordering::SeqCst);
        assert!(resumed > 0, "no connection resumed the session");
        assert_eq!(tx.sessions_lost(), 0, "a reconnect found the session gone");
        println!(
            "{MESSAGES} messages each way, {cuts} cuts ({} resets), {connections} server \
             connections ({resumed} resumed the session), {} client reconnects: each message \
             handled exactly once, in order, on both sides; {MESSAGES} receipts resolved",
            resets.load(Ordering::SeqCst),
            tx.reconnects(),
        );
        drop(rx);
        drop(tx);
        handle.shutdown();
    };
    match tokio::time::timeout(PROOF_TIMEOUT, run).await {
        Ok(()) => {}
        Err(_) => panic!("the proof run did not finish within {PROOF_TIMEOUT:?}"),
    }
}
