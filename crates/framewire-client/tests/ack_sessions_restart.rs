//! The restart proof of issue 13: an ack-mode client streams 100,000 numbered messages to a
//! framewire server in a second process, which is restarted 3 times mid-stream (twice
//! gracefully, once with SIGKILL; then a new process on the same port). The new process does not have the client's
//! session: delivery falls back to at least once with stable ids. Asserted: 0 lost, every
//! receipt resolved, every delivery's id is the client's (session, seq) for that message, and
//! every message that reaches a handler again is flagged as a redelivery. Printed: how many
//! messages were delivered once but flagged: after the crash, the messages the client had
//! written to the dead process and saw no ack for are flagged on their resend whether or not
//! that process read them (their fate is unknowable); the graceful restarts flag none.
//!
//! The server process is this test binary itself, running the ignored test
//! `restart_child_server` (it prints `LISTENING addr` and one line per delivery, and shuts
//! down gracefully when its stdin closes).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use framewire_client::{Client, ReconnectPolicy};
use framewire_server::{Connection, Server, ServerError};

const MESSAGES: u64 = 100_000;
const RESTARTS: u64 = 3;
const AHEAD: u64 = 8_192;
/// The restart that is a crash (SIGKILL); the others are graceful.
const CRASH: u64 = 2;
const CHILD_ENV: &str = "FRAMEWIRE_RESTART_CHILD_ADDR";
/// Generous: the run takes seconds; this only stops a hang from blocking CI.
const PROOF_TIMEOUT: Duration = Duration::from_secs(300);

fn number(n: u64) -> Bytes {
    Bytes::from(format!("n{n:09}"))
}

/// The start of an error's message (a client error may carry 100,000 payloads).
fn short(e: &impl std::fmt::Display) -> String {
    e.to_string().chars().take(300).collect()
}

/// One delivery as the server process reported it: process, session (hex), seq, flag,
/// payload number.
type Line = (usize, String, u64, bool, u64);

async fn child_handler(mut conn: Connection) -> Result<(), ServerError> {
    while let Some(d) = conn.recv_delivery().await? {
        let id = d.id().to_string();
        let (session, seq) = id.split_once(':').unwrap();
        let n: u64 = std::str::from_utf8(&d.payload[1..])
            .unwrap()
            .parse()
            .unwrap();
        println!("D {session} {seq} {} {n}", u8::from(d.redelivered));
    }
    Ok(())
}

/// The server process (run by the proof through this binary; ignored otherwise).
#[tokio::test]
#[ignore = "the server process of restart_proof, started by it"]
async fn restart_child_server() {
    let Ok(addr) = std::env::var(CHILD_ENV) else {
        return;
    };
    let server = Server::builder()
        .ack_mode(framewire_codec::ack::DEFAULT_WINDOW)
        .bind(addr.as_str())
        .await
        .unwrap();
    println!("LISTENING {}", server.local_addr().tcp().unwrap());
    let handle = server.handle();
    // Shut down gracefully once the parent closes our stdin.
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        handle.shutdown();
    });
    server.serve(child_handler).await;
}

/// Starts a server process on `addr` (port 0: any); returns it and its address once it
/// listens. Its deliveries go into `log`, tagged with `index`.
fn start_child(addr: &str, index: usize, log: &Arc<Mutex<Vec<Line>>>) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "restart_child_server",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = Arc::clone(log);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints the test's name first, on the same line.
            if let Some(i) = line.find("LISTENING ") {
                let _ = tx.send(line[i + "LISTENING ".len()..].to_string());
            } else if let Some(d) = line.strip_prefix("D ") {
                let f: Vec<&str> = d.split(' ').collect();
                log.lock().unwrap().push((
                    index,
                    f[0].to_string(),
                    f[1].parse().unwrap(),
                    f[2] == "1",
                    f[3].parse().unwrap(),
                ));
            }
        }
    });
    let listening = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    (child, listening)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_proof_three_server_restarts_lose_nothing_and_keep_ids() {
    let log: Arc<Mutex<Vec<Line>>> = Arc::default();
    let (mut child, addr) = start_child("127.0.0.1:0", 0, &log);
    let run = async {
        let client = Client::builder()
            .reconnect(
                ReconnectPolicy::default()
                    .initial_delay(Duration::from_millis(5))
                    .max_delay(Duration::from_millis(50))
                    .max_attempts(Some(400)),
            )
            .connect_ack(addr.as_str())
            .await
            .unwrap();
        // The sender runs at most `AHEAD` messages past each restart point until that restart
        // happened: every restart lands mid-stream, with messages in flight.
        let (restarted, mut restarts) = tokio::sync::watch::channel(0u64);
        let sending = tokio::spawn(async move {
            let mut receipts = Vec::with_capacity(MESSAGES as usize);
            for i in 1..=MESSAGES {
                let need = (i.saturating_sub(AHEAD) / (MESSAGES / (RESTARTS + 1))).min(RESTARTS);
                restarts.wait_for(|&done| done >= need).await.unwrap();
                match client.send(number(i)).await {
                    Ok(r) => receipts.push(r),
                    Err(e) => panic!("send {i}: {}", short(&e)),
                }
            }
            if let Err(e) = client.flush().await {
                panic!("flush: {}", short(&e));
            }
            let mut ids = Vec::with_capacity(receipts.len());
            for r in receipts {
                ids.push(r.await.unwrap());
            }
            (client, ids)
        });
        // Restart the server process each time it has handled another quarter.
        for k in 1..=RESTARTS {
            while (log.lock().unwrap().len() as u64) < k * MESSAGES / (RESTARTS + 1) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if k == CRASH {
                let _ = child.kill(); // SIGKILL: a crash
            } else {
                drop(child.stdin.take()); // graceful shutdown
            }
            let _ = tokio::task::block_in_place(|| child.wait());
            let (next, _) = tokio::task::block_in_place(|| start_child(&addr, k as usize, &log));
            child = next;
            restarted.send_replace(k);
        }
        let (client, ids) = sending.await.unwrap();
        let reconnects = client.reconnects();
        let redeliveries = client.redeliveries();
        // Every restart is a new process: the session is gone on the first connection to
        // each, and resumed on none.
        assert_eq!(client.sessions_lost(), RESTARTS, "sessions lost");
        client.close().await.unwrap();
        // Let the last process print what it handled.
        drop(child.stdin.take());
        let _ = tokio::task::block_in_place(|| child.wait());
        (ids, reconnects, redeliveries)
    };
    let (ids, reconnects, redeliveries) = match tokio::time::timeout(PROOF_TIMEOUT, run).await {
        Ok(r) => r,
        Err(_) => panic!("the restart proof did not finish within {PROOF_TIMEOUT:?}"),
    };
    let log = log.lock().unwrap().clone();
    let session = ids[0].to_string().split_once(':').unwrap().0.to_string();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(id.seq, i as u64 + 1, "receipt {i}");
    }
    let mut seen: HashMap<u64, Vec<bool>> = HashMap::new();
    let processes = log.iter().map(|l| l.0).max().unwrap_or(0) + 1;
    for (process, s, seq, flag, n) in &log {
        assert_eq!(
            s, &session,
            "process {process}: message {n} in another session"
        );
        assert_eq!(*seq, *n, "process {process}: message {n} carries seq {seq}");
        seen.entry(*n).or_default().push(*flag);
    }
    for n in 1..=MESSAGES {
        let flags = seen.get(&n).unwrap_or_else(|| panic!("message {n} lost"));
        for (k, flag) in flags.iter().enumerate().skip(1) {
            assert!(flag, "message {n}: repeat {k} not flagged");
        }
    }
    let repeats: usize = seen.values().map(|f| f.len() - 1).sum();
    let flagged_once = seen.values().filter(|f| f.len() == 1 && f[0]).count();
    assert_eq!(processes as u64, RESTARTS + 1, "server processes");
    println!(
        "{MESSAGES} messages, {RESTARTS} server restarts (restart {CRASH} a SIGKILL, the others \
         graceful; {processes} processes), \
         {reconnects} reconnects: 0 lost, {MESSAGES} receipts resolved, every id = (session, \
         seq); {repeats} messages reached a handler twice, all flagged, same id; {flagged_once} \
         delivered once but flagged; the client flagged {redeliveries}"
    );
}
