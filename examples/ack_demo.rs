//! Ack mode, in one process on loopback: a framewire server in ack mode and concurrent
//! clients, each `send` waiting for room in the window and each message confirmed by a
//! delivery receipt once the server's handler took it.
//!
//! ```text
//! cargo run --release --example ack_demo
//! ```
//!
//! The server runs the mirror handler (`framewire_examples::mirror`) with
//! `Server::builder().ack_mode(WINDOW)`; each client connects with
//! `Client::builder().ack_window(WINDOW).connect_ack(..)`, sends its messages, waits for every
//! receipt and checks the echoes. Exits 0 only if every message was confirmed and echoed
//! intact, in order and not redelivered. `sticky_demo` shows the same server in plain mode.

use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use framewire_client::{Client, ClientError};
use framewire_examples::mirror;
use framewire_server::Server;

/// Concurrent clients.
const CLIENTS: usize = 8;

/// Messages per client.
const PER_CLIENT: usize = 500;

/// The window: at most this many unacknowledged messages per client, each way.
const WINDOW: u32 = 8;

/// Errors that cross task boundaries.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Client `c`'s `i`-th message: varied lengths.
fn client_message(c: usize, i: usize) -> Bytes {
    Bytes::from(format!(
        "client-{c}-msg-{i:04}:{}",
        "y".repeat((i * 7 + c) % 31)
    ))
}

/// One client: a writer task sends every message (each `send` returns once the message fits
/// in the window) and then awaits the receipts, while this task reads the echoes. Returns the
/// echoes that came back intact and the receipts confirmed.
async fn client(addr: SocketAddr, c: usize) -> Result<(usize, usize), BoxError> {
    let client = Client::builder()
        .ack_window(WINDOW)
        .connect_ack(addr)
        .await?;
    let (tx, mut rx) = client.split();
    let writer = tokio::spawn(async move {
        let mut receipts = Vec::with_capacity(PER_CLIENT);
        for i in 0..PER_CLIENT {
            receipts.push(tx.send(client_message(c, i)).await?);
        }
        // Returns once the server's handler took every message.
        tx.flush().await?;
        let mut confirmed = 0;
        for receipt in receipts {
            receipt.await?;
            confirmed += 1;
        }
        Ok::<_, ClientError>((tx, confirmed))
    });
    let mut intact = 0;
    for i in 0..PER_CLIENT {
        match rx.recv().await? {
            Some(echo) if echo.payload == client_message(c, i) && !echo.redelivered => intact += 1,
            Some(_) => {}
            None => break,
        }
    }
    let (tx, confirmed) = writer.await??;
    tx.close().await?;
    Ok((intact, confirmed))
}

async fn run() -> Result<bool, BoxError> {
    let server = Server::builder()
        .ack_mode(WINDOW)
        .bind("127.0.0.1:0")
        .await?;
    let addr: SocketAddr = server.local_addr().to_string().parse()?;
    let handle = server.handle();
    let serving = tokio::spawn(server.serve(mirror::<()>));
    println!("framewire ack-mode demo: a mirror server on {addr}, window {WINDOW}");

    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(client(addr, c)))
        .collect();
    let (mut intact, mut confirmed) = (0, 0);
    for task in tasks {
        let (i, c) = task.await??;
        intact += i;
        confirmed += c;
    }
    handle.shutdown();
    let report = serving.await?;
    let sent = CLIENTS * PER_CLIENT;
    println!("{CLIENTS} clients x {PER_CLIENT} messages, each send waits for room in the window:");
    println!(
        "   {sent} messages sent, {confirmed} delivery receipts confirmed, {intact} echoed intact and in order"
    );
    println!(
        "   server: {} connections, {} messages in, {} messages out",
        report.stats.accepted, report.stats.frames_in, report.stats.frames_out
    );
    let ok = intact == sent && confirmed == sent;
    println!(
        "\nresult: {}",
        if ok {
            "every message was confirmed and echoed intact"
        } else {
            "MESSAGES WERE LOST, DAMAGED OR UNCONFIRMED"
        }
    );
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    framewire_examples::demo_exit(run()).await
}
