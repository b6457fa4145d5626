//! Measures the server's resident memory per idle connection, side by side with a tokio-util
//! `Framed` + `LengthDelimitedCodec` echo server, in the same run.
//!
//! ```text
//! cargo run --release -p framewire-server --example idle_memory -- 10000
//! ```
//!
//! For each server kind it starts the server as a child process (this same binary), reads the
//! child's `VmRSS` from `/proc/PID/status`, opens N connections from this process (source
//! addresses spread over 127.0.0.1-8), sends one 16-byte frame on each and waits for its echo
//! (so every connection was accepted and has done one round of work), lets them sit idle for a
//! second, reads `VmRSS` again, and prints (after - before) / N. Linux only (`/proc`); needs an
//! open-files limit above N in both processes.
//!
//! Kinds: `framed` (the baseline), `framewire` (defaults), `framewire-idle-timeout`
//! (an idle timeout armed on every connection).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use framewire_server::{Connection, Server, ServerError};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

const KINDS: [&str; 3] = ["framed", "framewire", "framewire-idle-timeout"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        let kind = args.get(1).map(String::as_str).unwrap_or("framewire");
        return serve(kind).await;
    }
    let n: usize = match args.first() {
        Some(s) => s.parse()?,
        None => 10_000,
    };
    println!("idle connections: {n}");
    println!(
        "{:<24} {:>12} {:>12} {:>14}",
        "server", "RSS before", "RSS after", "per connection"
    );
    let mut results = Vec::new();
    for kind in KINDS {
        let per_conn = measure(kind, n).await?;
        results.push((kind, per_conn));
    }
    let base = results[0].1;
    for (kind, per_conn) in &results[1..] {
        println!("{kind}: {:.2}x the framed baseline", per_conn / base);
    }
    Ok(())
}

/// Runs one server kind in a child process and measures it.
async fn measure(kind: &str, n: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let mut child = tokio::process::Command::from({
        let mut c = Command::new(std::env::current_exe()?);
        c.args(["serve", kind]).stdout(Stdio::piped());
        c
    })
    .kill_on_drop(true)
    .spawn()?;
    let pid = child.id().ok_or("child has no pid")?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await?;
    let addr: SocketAddr = line.trim().parse()?;

    // Warm up: one connection, so runtime threads and the first allocations exist.
    let mut warm = connect_and_ping(addr, 0).await?;
    drop(warm.shutdown().await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = vm_rss_kib(pid)?;

    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        conns.push(connect_and_ping(addr, i).await?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = vm_rss_kib(pid)?;
    let per_conn = (after as f64 - before as f64) / n as f64;
    println!(
        "{kind:<24} {:>9} KiB {:>9} KiB {:>10.2} KiB",
        before, after, per_conn
    );
    drop(conns);
    child.kill().await?;
    Ok(per_conn)
}

async fn connect_and_ping(addr: SocketAddr, i: usize) -> std::io::Result<TcpStream> {
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % 8) as u8));
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let mut stream = socket.connect(addr).await?;
    let mut frame = [0u8; 20];
    frame[3] = 16;
    stream.write_all(&frame).await?;
    let mut echo = [0u8; 20];
    stream.read_exact(&mut echo).await?;
    Ok(stream)
}

fn vm_rss_kib(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| std::io::Error::other("no VmRSS line"))?;
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad VmRSS line"))
}

async fn mirror(mut conn: Connection) -> Result<(), ServerError> {
    while let Some(frame) = conn.recv().await? {
        conn.send(&frame).await?;
    }
    Ok(())
}

async fn serve(kind: &str) -> Result<(), Box<dyn std::error::Error>> {
    match kind {
        "framed" => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            println!("{}", listener.local_addr()?);
            loop {
                let (stream, _) = listener.accept().await?;
                tokio::spawn(async move {
                    let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
                    while let Some(Ok(frame)) = framed.next().await {
                        if framed.send(frame.freeze()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        }
        "framewire" | "framewire-idle-timeout" => {
            let mut builder = Server::builder().max_connections(1_000_000);
            if kind == "framewire-idle-timeout" {
                builder = builder.idle_timeout(Duration::from_secs(600));
            }
            let server = builder.bind("127.0.0.1:0").await?;
            println!("{}", server.local_addr());
            server.serve(mirror).await;
            Ok(())
        }
        other => Err(format!("unknown server kind {other}").into()),
    }
}
