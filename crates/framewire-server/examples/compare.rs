//! Compares framewire-server with a tokio-util `Framed` + `LengthDelimitedCodec` echo server,
//! side by side in the same run: resident memory per idle connection, and echo throughput.
//!
//! ```text
//! cargo run --release -p framewire-server --example compare -- memory 10000
//! cargo run --release -p framewire-server --example compare -- throughput
//! ```
//!
//! `memory N`: for each server kind it starts the server as a child process (this same binary), reads the
//! child's `VmRSS` from `/proc/PID/status`, opens N connections from this process (source
//! addresses spread over 127.0.0.1-8), sends one 16-byte frame on each and waits for its echo
//! (so every connection was accepted and has done one round of work), lets them sit idle for a
//! second, reads `VmRSS` again, and prints (after - before) / N. Linux only (`/proc`); needs an
//! open-files limit above N in both processes.
//!
//! Kinds: `framed` (the baseline), `framewire` (defaults), `framewire-idle-timeout`
//! (an idle timeout armed on every connection), `framewire-ack` (ack mode, window 64; the
//! client does the handshake and one acknowledged round trip).
//!
//! `throughput`: for `framed`, `framewire` and `framed-framecodec` (tokio-util `Framed` over
//! framewire's `FrameCodec`, to separate the codec's buffer-growth policy from the
//! connection's own read path), each a child process echoing with `stream.forward(sink)` so
//! all batch their flushes the same way, 4 connections each send
//! 500,000 64-byte frames pipelined, then 4,000 64 KiB frames, and read every echo back; prints frames/s and
//! MiB/s each way (median of 5 alternating rounds) and the ratio to the baseline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use framewire_codec::ack::AckFramed;
use framewire_codec::FrameCodec;
use framewire_server::{Connection, Server, ServerError};
use futures::{SinkExt, StreamExt, TryStreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

const KINDS: [&str; 4] = [
    "framed",
    "framewire",
    "framewire-idle-timeout",
    "framewire-ack",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => {
            let kind = args.get(1).map(String::as_str).unwrap_or("framewire");
            serve(kind).await
        }
        Some("memory") => {
            let n = match args.get(1) {
                Some(s) => s.parse()?,
                None => 10_000,
            };
            memory(n).await
        }
        Some("throughput") => throughput().await,
        Some("load") => {
            // compare load ADDR SIZE COUNT: the throughput client alone, against any server.
            let addr: SocketAddr = args.get(1).ok_or("load needs ADDR")?.parse()?;
            let size = args.get(2).map_or(Ok(64), |s| s.parse())?;
            let count = args.get(3).map_or(Ok(100_000), |s| s.parse())?;
            let secs = run_load(addr, size, count).await?;
            println!("{:.0} frames/s", (CONNS * count) as f64 / secs);
            Ok(())
        }
        _ => Err("usage: compare memory [N] | compare throughput".into()),
    }
}

async fn memory(n: usize) -> Result<(), Box<dyn std::error::Error>> {
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
    let (mut child, pid, addr) = start_child(kind).await?;

    // Warm up: one connection, so runtime threads and the first allocations exist.
    let ack = kind == "framewire-ack";
    let mut warm = connect_and_ping(addr, 0, ack).await?;
    drop(warm.shutdown().await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = vm_rss_kib(pid)?;

    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        conns.push(connect_and_ping(addr, i, ack).await?);
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

/// Starts `compare serve KIND` and reads the address it prints.
async fn start_child(
    kind: &str,
) -> Result<(tokio::process::Child, u32, SocketAddr), Box<dyn std::error::Error>> {
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
    Ok((child, pid, line.trim().parse()?))
}

const CONNS: usize = 4;
const ROUNDS: usize = 5;
const THROUGHPUT_KINDS: [&str; 3] = ["framed", "framewire", "framed-framecodec"];

async fn throughput() -> Result<(), Box<dyn std::error::Error>> {
    // (frame size, frames per connection)
    let cases = [(64usize, 500_000usize), (64 * 1024, 4_000)];
    println!("{CONNS} connections, pipelined echo, forward() on every server; median of {ROUNDS} alternating rounds");
    for (size, count) in cases {
        let mut rates: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            for (k, kind) in THROUGHPUT_KINDS.into_iter().enumerate() {
                let (mut child, _, addr) = start_child(kind).await?;
                let secs = run_load(addr, size, count).await?;
                child.kill().await?;
                rates[k].push((CONNS * count) as f64 / secs);
            }
        }
        let mut medians = [0.0; 3];
        for (k, kind) in THROUGHPUT_KINDS.into_iter().enumerate() {
            rates[k].sort_by(f64::total_cmp);
            let rate = rates[k][ROUNDS / 2];
            medians[k] = rate;
            println!(
                "{kind:<10} {size:>6} B frames: {:>10.0} frames/s {:>8.1} MiB/s each way",
                rate,
                rate * size as f64 / (1024.0 * 1024.0)
            );
        }
        println!(
            "at {size} B: framewire / framed {:.2}x, framed-framecodec / framed {:.2}x",
            medians[1] / medians[0],
            medians[2] / medians[0]
        );
    }
    Ok(())
}

/// Each connection writes `count` frames of `size` bytes (in 64 KiB batches) while reading
/// the echoes back; returns the seconds until every echo arrived.
async fn run_load(addr: SocketAddr, size: usize, count: usize) -> std::io::Result<f64> {
    let start = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNS {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut rd, mut wr) = stream.into_split();
        tasks.spawn(async move {
            let mut frame = vec![0xabu8; 4 + size];
            frame[..4].copy_from_slice(&(size as u32).to_be_bytes());
            let per_batch = (64 * 1024 / frame.len()).max(1);
            let batch: Vec<u8> = frame.repeat(per_batch);
            let writer = tokio::spawn(async move {
                let mut left = count;
                while left > 0 {
                    let n = left.min(per_batch);
                    wr.write_all(&batch[..n * frame.len()]).await?;
                    left -= n;
                }
                Ok::<_, std::io::Error>(wr)
            });
            let mut remaining = (count * (4 + size)) as u64;
            let mut buf = vec![0u8; 256 * 1024];
            while remaining > 0 {
                let n = rd.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::other("server closed early"));
                }
                remaining = remaining.saturating_sub(n as u64);
            }
            drop(writer.await.map_err(std::io::Error::other)??);
            Ok(())
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.map_err(std::io::Error::other)??;
    }
    Ok(start.elapsed().as_secs_f64())
}

async fn connect_and_ping(addr: SocketAddr, i: usize, ack: bool) -> std::io::Result<TcpStream> {
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % 8) as u8));
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let mut stream = socket.connect(addr).await?;
    if ack {
        // Ack mode: HELLO, one DATA (acknowledged by the server's handler taking it), its echo
        // (acknowledged by us taking it); then keep only the socket.
        stream.set_nodelay(true)?;
        let mut conn = AckFramed::builder().window(8).new_framed(stream);
        conn.send(Bytes::from_static(&[0u8; 16]))
            .await
            .map_err(std::io::Error::other)?;
        match conn.next().await {
            Some(Ok(_)) => {}
            _ => return Err(std::io::Error::other("no echo")),
        }
        let (framed, _, _) = conn.into_parts();
        return Ok(framed.into_inner());
    }
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

async fn mirror(conn: Connection) -> Result<(), ServerError> {
    let (sink, stream) = conn.split();
    stream.forward(sink).await
}

async fn serve(kind: &str) -> Result<(), Box<dyn std::error::Error>> {
    match kind {
        "framed" => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            println!("{}", listener.local_addr()?);
            loop {
                let (stream, _) = listener.accept().await?;
                tokio::spawn(async move {
                    let (sink, stream) = Framed::new(stream, LengthDelimitedCodec::new()).split();
                    let _ = stream.map_ok(BytesMut::freeze).forward(sink).await;
                });
            }
        }
        "framed-framecodec" => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            println!("{}", listener.local_addr()?);
            loop {
                let (stream, _) = listener.accept().await?;
                tokio::spawn(async move {
                    let (sink, stream) = FrameCodec::new().framed(stream).split();
                    let _ = stream.forward(sink).await;
                });
            }
        }
        "framewire" | "framewire-idle-timeout" | "framewire-ack" => {
            let mut builder = Server::builder().max_connections(1_000_000);
            if kind == "framewire-idle-timeout" {
                builder = builder.idle_timeout(Duration::from_secs(600));
            }
            if kind == "framewire-ack" {
                builder = builder.ack_mode(64);
            }
            let server = builder.bind("127.0.0.1:0").await?;
            println!("{}", server.local_addr());
            server.serve(mirror).await;
            Ok(())
        }
        other => Err(format!("unknown server kind {other}").into()),
    }
}
