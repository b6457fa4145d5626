//! Compares framewire-server with a tokio-util `Framed` + `LengthDelimitedCodec` echo server,
//! side by side in the same run: resident memory per idle connection, and echo throughput.
//!
//! ```text
//! cargo run --release --bin compare -- memory 10000
//! cargo run --release --bin compare -- throughput
//! cargo run --release --bin compare -- tls
//! cargo run --release --bin compare -- memory 10000 tls
//! cargo run --release --bin compare -- --help
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
//!
//! `tls`: the same over TLS, `framed-tls` (tokio-util `Framed` + `LengthDelimitedCodec` over
//! tokio-rustls, the baseline) against `framewire-tls` (`ServerBuilder::tls`), with one rustls
//! `ServerConfig` (ring provider, the certificate made at run time with rcgen and handed to
//! the children as PEM files): pipelined echo as above, and a one-way stream (4 connections
//! each send the frames, half-close, and the server answers with one frame carrying its
//! count). Median of 5 alternating rounds, with the lowest and highest round.
//!
//! `memory N tls`: the memory measurement for `framed-tls` and `framewire-tls` (every
//! connection does its TLS handshake and one echo, then sits idle).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use framewire_codec::ack::AckFramed;
use framewire_codec::FrameCodec;
use framewire_server::{Connection, Server, ServerError};
use futures::{SinkExt, StreamExt, TryStreamExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

const KINDS: [&str; 4] = [
    "framed",
    "framewire",
    "framewire-idle-timeout",
    "framewire-ack",
];

/// The TLS kinds: the baseline first.
const TLS_KINDS: [&str; 2] = ["framed-tls", "framewire-tls"];

/// A byte stream the parent holds or drives (TCP or TLS).
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The TLS material of one run: a self-signed certificate for `localhost` (made with rcgen,
/// never committed) as PEM files for the children, and the client side's connector.
struct Tls {
    dir: PathBuf,
    connector: tokio_rustls::TlsConnector,
    /// The directory was made by this run (and is removed with it).
    owned: bool,
}

impl Tls {
    fn new() -> Result<Tls, Box<dyn std::error::Error>> {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
        let dir = std::env::temp_dir().join(format!("framewire-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("cert.pem"), made.cert.pem())?;
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem())?;
        let mut tls = Tls::load(&dir)?;
        tls.owned = true;
        Ok(tls)
    }

    /// The client side for the certificate in `dir/cert.pem` (for `compare stream`).
    fn load(dir: &Path) -> Result<Tls, Box<dyn std::error::Error>> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(dir.join("cert.pem"))? {
            roots.add(cert?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls {
            dir: dir.to_path_buf(),
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            owned: false,
        })
    }

    async fn connect(&self, stream: TcpStream) -> std::io::Result<Box<dyn Io>> {
        let name =
            rustls::pki_types::ServerName::try_from("localhost").map_err(std::io::Error::other)?;
        Ok(Box::new(self.connector.connect(name, stream).await?))
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The one server config both TLS servers use, from the PEM files in `dir`.
fn server_config(dir: &Path) -> Result<Arc<rustls::ServerConfig>, Box<dyn std::error::Error>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs =
        CertificateDer::pem_file_iter(dir.join("cert.pem"))?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem"))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// The command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "compare",
    version,
    about = "framewire-server against a tokio-util Framed + LengthDelimitedCodec server, side by side"
)]
enum Cli {
    /// Resident memory per idle connection, each server a child process.
    Memory {
        /// Idle connections to open.
        #[arg(default_value_t = 10_000)]
        n: usize,
        /// `tls`: the TLS servers (framed-tls, framewire-tls).
        #[arg(value_parser = ["tls"])]
        tls: Option<String>,
    },
    /// Pipelined echo, 64 B and 64 KiB frames: frames/s and MiB/s, median of 5 rounds.
    Throughput,
    /// The same over TLS, and a one-way TLS stream.
    Tls,
    /// A server alone (what the measurements start as a child process).
    Serve {
        /// framed, framewire, framewire-idle-timeout, framewire-ack, framed-framecodec,
        /// framed-tls or framewire-tls.
        #[arg(default_value = "framewire")]
        kind: String,
        /// Count the frames and answer with the count at the end, instead of echoing.
        #[arg(long)]
        sink: bool,
        /// Serve TLS with DIR/cert.pem and DIR/key.pem.
        #[arg(long, value_name = "DIR")]
        tls: Option<PathBuf>,
    },
    /// The one-way TLS stream client alone, against `compare serve KIND --sink --tls DIR`
    /// (e.g. under a profiler); DIR holds cert.pem and key.pem for `localhost`.
    Stream(ClientArgs),
    /// The pipelined TLS echo client alone, against `compare serve KIND --tls DIR`.
    Echo(ClientArgs),
    /// The throughput client alone, against any server.
    Load {
        /// The server.
        addr: SocketAddr,
        /// Payload bytes per frame.
        #[arg(default_value_t = 64)]
        size: usize,
        /// Frames per connection.
        #[arg(default_value_t = 100_000)]
        count: usize,
    },
}

/// The arguments of the TLS clients run alone.
#[derive(Debug, clap::Args)]
struct ClientArgs {
    /// The server.
    addr: SocketAddr,
    /// The directory with cert.pem and key.pem.
    dir: PathBuf,
    /// Payload bytes per frame.
    #[arg(default_value_t = 64)]
    size: usize,
    /// Frames per connection.
    #[arg(default_value_t = 100_000)]
    count: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The clients run alone report frames/s over their CONNS connections.
    let (secs, count) = match <Cli as clap::Parser>::parse() {
        Cli::Serve { kind, sink, tls } => return serve(&kind, sink, tls).await,
        Cli::Memory { n, tls: Some(_) } => return memory_tls(n).await,
        Cli::Memory { n, tls: None } => return memory(n).await,
        Cli::Throughput => return throughput().await,
        Cli::Tls => return throughput_tls().await,
        Cli::Stream(a) => {
            let tls = Tls::load(&a.dir)?;
            (run_stream(a.addr, a.size, a.count, &tls).await?, a.count)
        }
        Cli::Echo(a) => {
            let tls = Tls::load(&a.dir)?;
            (
                run_load(a.addr, a.size, a.count, Some(&tls)).await?,
                a.count,
            )
        }
        Cli::Load { addr, size, count } => (run_load(addr, size, count, None).await?, count),
    };
    println!("{:.0} frames/s", (CONNS * count) as f64 / secs);
    Ok(())
}

async fn memory(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    println!("idle connections: {n}");
    println!(
        "{:<24} {:>12} {:>12} {:>14}",
        "server", "RSS before", "RSS after", "per connection"
    );
    let mut results = Vec::new();
    for kind in KINDS {
        let per_conn = measure(kind, n, None).await?;
        results.push((kind, per_conn));
    }
    let base = results[0].1;
    for (kind, per_conn) in &results[1..] {
        println!("{kind}: {:.2}x the framed baseline", per_conn / base);
    }
    Ok(())
}

/// `memory N tls`: idle TLS connections, the baseline first.
async fn memory_tls(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let tls = Tls::new()?;
    println!("idle TLS connections: {n}");
    println!(
        "{:<24} {:>12} {:>12} {:>14}",
        "server", "RSS before", "RSS after", "per connection"
    );
    let base = measure(TLS_KINDS[0], n, Some(&tls)).await?;
    let per_conn = measure(TLS_KINDS[1], n, Some(&tls)).await?;
    println!(
        "{}: {:.2}x the {} baseline",
        TLS_KINDS[1],
        per_conn / base,
        TLS_KINDS[0]
    );
    Ok(())
}

/// Runs one server kind in a child process and measures it.
async fn measure(
    kind: &str,
    n: usize,
    tls: Option<&Tls>,
) -> Result<f64, Box<dyn std::error::Error>> {
    let (mut child, pid, addr) = start_child(kind, false, tls).await?;

    // Warm up: one connection, so runtime threads and the first allocations exist.
    let ack = kind == "framewire-ack";
    let mut warm = connect_and_ping(addr, 0, ack, tls).await?;
    drop(warm.shutdown().await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = vm_rss_kib(pid)?;

    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        conns.push(connect_and_ping(addr, i, ack, tls).await?);
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

/// Starts `compare serve KIND [--sink] [--tls DIR]` and reads the address it prints.
async fn start_child(
    kind: &str,
    sink: bool,
    tls: Option<&Tls>,
) -> Result<(tokio::process::Child, u32, SocketAddr), Box<dyn std::error::Error>> {
    let mut child = tokio::process::Command::from({
        let mut c = Command::new(std::env::current_exe()?);
        c.args(["serve", kind]).stdout(Stdio::piped());
        if sink {
            c.arg("--sink");
        }
        if let Some(tls) = tls {
            c.arg("--tls").arg(&tls.dir);
        }
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
                let (mut child, _, addr) = start_child(kind, false, None).await?;
                let secs = run_load(addr, size, count, None).await?;
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

/// `tls`: pipelined echo and one-way stream over TLS, `framed-tls` against `framewire-tls`.
async fn throughput_tls() -> Result<(), Box<dyn std::error::Error>> {
    let tls = Tls::new()?;
    let cases = [(64usize, 500_000usize), (64 * 1024, 4_000)];
    println!(
        "TLS (rustls, ring, one ServerConfig), {CONNS} connections; median of {ROUNDS} alternating rounds [lowest - highest]"
    );
    for (what, sink) in [("pipelined echo", false), ("one-way stream", true)] {
        for (size, count) in cases {
            let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
            let mut cpu: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
            for _ in 0..ROUNDS {
                for (k, kind) in TLS_KINDS.into_iter().enumerate() {
                    let (mut child, pid, addr) = start_child(kind, sink, Some(&tls)).await?;
                    let cpu_before = cpu_secs(pid)?;
                    let secs = if sink {
                        run_stream(addr, size, count, &tls).await?
                    } else {
                        run_load(addr, size, count, Some(&tls)).await?
                    };
                    let cpu_used = cpu_secs(pid)? - cpu_before;
                    child.kill().await?;
                    rates[k].push((CONNS * count) as f64 / secs);
                    cpu[k].push(cpu_used * 1e9 / (CONNS * count) as f64);
                }
            }
            let mut medians = [0.0; 2];
            let mut cpu_medians = [0.0; 2];
            for (k, kind) in TLS_KINDS.into_iter().enumerate() {
                rates[k].sort_by(f64::total_cmp);
                cpu[k].sort_by(f64::total_cmp);
                let rate = rates[k][ROUNDS / 2];
                medians[k] = rate;
                cpu_medians[k] = cpu[k][ROUNDS / 2];
                println!(
                    "{what}, {kind:<14} {size:>6} B frames: {:>10.0} frames/s [{:.0} - {:.0}] {:>8.1} MiB/s; server CPU {:.0} ns/frame [{:.0} - {:.0}]",
                    rate,
                    rates[k][0],
                    rates[k][ROUNDS - 1],
                    rate * size as f64 / (1024.0 * 1024.0),
                    cpu_medians[k],
                    cpu[k][0],
                    cpu[k][ROUNDS - 1],
                );
            }
            println!(
                "{what} at {size} B: framewire-tls / framed-tls {:.2}x frames/s, {:.2}x less server CPU per frame",
                medians[1] / medians[0],
                cpu_medians[0] / cpu_medians[1]
            );
        }
    }
    Ok(())
}

/// Opens one load connection: TCP, or TLS over it.
async fn open(addr: SocketAddr, tls: Option<&Tls>) -> std::io::Result<Box<dyn Io>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    match tls {
        Some(tls) => tls.connect(stream).await,
        None => Ok(Box::new(stream)),
    }
}

/// A 64 KiB batch of frames of `size` bytes, how many frames it holds, and one frame's length.
fn batches(size: usize) -> (Vec<u8>, usize, usize) {
    let mut frame = vec![0xabu8; 4 + size];
    frame[..4].copy_from_slice(&(size as u32).to_be_bytes());
    let per_batch = (64 * 1024 / frame.len()).max(1);
    (frame.repeat(per_batch), per_batch, frame.len())
}

async fn write_frames<W: AsyncWrite + Unpin>(
    wr: &mut W,
    size: usize,
    count: usize,
) -> std::io::Result<()> {
    let (batch, per_batch, frame_len) = batches(size);
    let mut left = count;
    while left > 0 {
        let n = left.min(per_batch);
        wr.write_all(&batch[..n * frame_len]).await?;
        left -= n;
    }
    wr.flush().await
}

/// Each connection writes `count` frames of `size` bytes (in 64 KiB batches) while reading
/// the echoes back; returns the seconds until every echo arrived.
async fn run_load(
    addr: SocketAddr,
    size: usize,
    count: usize,
    tls: Option<&Tls>,
) -> std::io::Result<f64> {
    let start = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNS {
        // TCP splits into owned halves (no lock between them), TLS with `tokio::io::split`.
        match tls {
            None => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let (rd, wr) = stream.into_split();
                tasks.spawn(echo_load(rd, wr, size, count));
            }
            Some(_) => {
                let (rd, wr) = tokio::io::split(open(addr, tls).await?);
                tasks.spawn(echo_load(rd, wr, size, count));
            }
        }
    }
    while let Some(res) = tasks.join_next().await {
        res.map_err(std::io::Error::other)??;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// One connection of [`run_load`]: a writer task sends, this task reads every echo back.
async fn echo_load<R, W>(mut rd: R, mut wr: W, size: usize, count: usize) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let writer = tokio::spawn(async move {
        write_frames(&mut wr, size, count).await?;
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
}

/// One-way stream: each connection writes `count` frames, half-closes, and reads the
/// server's one reply frame (its count of frames received, 8 bytes big-endian); returns the
/// seconds until every connection's count arrived (and matched).
async fn run_stream(
    addr: SocketAddr,
    size: usize,
    count: usize,
    tls: &Tls,
) -> std::io::Result<f64> {
    let start = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNS {
        let mut io = open(addr, Some(tls)).await?;
        tasks.spawn(async move {
            write_frames(&mut io, size, count).await?;
            io.shutdown().await?;
            let mut reply = Vec::new();
            io.read_to_end(&mut reply).await?;
            let counted = reply
                .get(4..12)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            if counted != Some(count as u64) {
                return Err(std::io::Error::other(format!(
                    "server counted {counted:?}, sent {count}"
                )));
            }
            Ok(())
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.map_err(std::io::Error::other)??;
    }
    Ok(start.elapsed().as_secs_f64())
}

async fn connect_and_ping(
    addr: SocketAddr,
    i: usize,
    ack: bool,
    tls: Option<&Tls>,
) -> std::io::Result<Box<dyn Io>> {
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % 8) as u8));
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(addr).await?;
    let mut stream: Box<dyn Io> = match tls {
        Some(tls) => tls.connect(stream).await?,
        None => return ping(stream, ack).await,
    };
    ping_plain(&mut stream).await?;
    Ok(stream)
}

/// TCP: in ack mode the HELLO exchange and one acknowledged round trip, else one echo.
async fn ping(mut stream: TcpStream, ack: bool) -> std::io::Result<Box<dyn Io>> {
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
        return Ok(Box::new(framed.into_inner()));
    }
    ping_plain(&mut stream).await?;
    Ok(Box::new(stream))
}

/// One 16-byte frame and its echo.
async fn ping_plain<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> std::io::Result<()> {
    let mut frame = [0u8; 20];
    frame[3] = 16;
    stream.write_all(&frame).await?;
    stream.flush().await?;
    let mut echo = [0u8; 20];
    stream.read_exact(&mut echo).await?;
    Ok(())
}

/// The CPU time (user + system) process `pid` has used so far, in seconds (Linux `/proc`,
/// 10 ms resolution).
fn cpu_secs(pid: u32) -> std::io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is the first, utime the
    // 12th and stime the 13th, in clock ticks of 1/100 s.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => Ok((user + system) as f64 / 100.0),
        _ => Err(std::io::Error::other("bad /proc/PID/stat line")),
    }
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

/// Counts frames until the peer closes, then answers with the count (8 bytes, big-endian).
async fn sink(mut conn: Connection) -> Result<(), ServerError> {
    let mut n = 0u64;
    while conn.recv().await?.is_some() {
        n += 1;
    }
    conn.send(n.to_be_bytes()).await?;
    conn.close().await
}

/// The baseline over any stream: `Framed` + `LengthDelimitedCodec`, echo with `forward`, or
/// sink (count, answer, close).
async fn framed<T: AsyncRead + AsyncWrite + Unpin>(stream: T, sink_mode: bool) {
    let framed = Framed::new(stream, LengthDelimitedCodec::new());
    let (mut sink, mut stream) = framed.split();
    if !sink_mode {
        let _ = stream.map_ok(BytesMut::freeze).forward(sink).await;
        return;
    }
    let mut n = 0u64;
    while let Some(Ok(_)) = stream.next().await {
        n += 1;
    }
    let _ = sink.send(Bytes::copy_from_slice(&n.to_be_bytes())).await;
    let _ = sink.close().await;
}

async fn serve(
    kind: &str,
    sink_mode: bool,
    tls: Option<PathBuf>,
) -> Result<(), Box<dyn std::error::Error>> {
    let config = match &tls {
        Some(dir) => Some(server_config(dir)?),
        None => None,
    };
    match kind {
        "framed" | "framed-tls" => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            println!("{}", listener.local_addr()?);
            let acceptor = config.map(tokio_rustls::TlsAcceptor::from);
            loop {
                let (stream, _) = listener.accept().await?;
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            // As the framewire server does on accept.
                            let _ = stream.set_nodelay(true);
                            if let Ok(tls) = acceptor.accept(stream).await {
                                framed(tls, sink_mode).await;
                            }
                        }
                        None => framed(stream, sink_mode).await,
                    }
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
        "framewire" | "framewire-idle-timeout" | "framewire-ack" | "framewire-tls" => {
            // Thousands of connections from one address, idle on purpose: no per-IP cap, and
            // no idle timeout except in the kind that measures what one costs.
            let mut builder = Server::builder()
                .max_connections(1_000_000)
                .max_connections_per_ip(None)
                .idle_timeout(None);
            if kind == "framewire-idle-timeout" {
                builder = builder.idle_timeout(Duration::from_secs(600));
            }
            if kind == "framewire-ack" {
                builder = builder.ack_mode(64);
            }
            if let Some(config) = config {
                builder = builder.tls(config);
            }
            let server = builder.bind("127.0.0.1:0").await?;
            println!("{}", server.local_addr());
            if sink_mode {
                server.serve(sink).await;
            } else {
                server.serve(mirror).await;
            }
            Ok(())
        }
        other => Err(format!("unknown server kind {other}").into()),
    }
}
