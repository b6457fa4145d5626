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
//! It is the same harness as `loadgen`: each server is a child process (this binary,
//! `compare serve KIND`) running one of the library's servers (what `loadgen serve` runs), and
//! each measurement is one of the library's modes, run in this process against the child's
//! pid, giving the same `Record`s as `loadgen`. The kinds:
//!
//! | kind | `loadgen serve` equivalent |
//! |---|---|
//! | `framed` (the baseline) | `--impl tokio-util` |
//! | `framed-framecodec` | `--impl codec` (tokio-util `Framed` over framewire's `FrameCodec`) |
//! | `framewire` | `--impl framewire` (defaults; no per-IP cap, no idle timeout) |
//! | `framewire-idle-timeout` | `--impl framewire --idle-timeout 600s` |
//! | `framewire-ack` | `--impl framewire-ack --window 64` |
//! | `framed-tls`, `framewire-tls` | `--impl tokio-util --tls DIR`, `--impl framewire --tls DIR` |
//!
//! `memory N` (at most 15,000): for each kind, after one warm-up connection, the `conns` mode
//! with the raw client (the ack client for `framewire-ack`): N connections (source addresses
//! spread over 127.0.0.1-8), held idle for a second, then each echoes one 16-byte frame;
//! the server's `VmRSS` growth divided by N, idle and after the echo. Linux only (`/proc`);
//! needs an open-files limit above N in both processes.
//!
//! `throughput`: for `framed`, `framewire` and `framed-framecodec` (to separate the codec's
//! buffer-growth policy from the connection's own read path), the `burst` mode with the raw
//! client: 4 connections each send 500,000 64-byte frames in 64 KiB writes while reading
//! every echo back, then 4,000 64 KiB frames; frames/s and MiB/s each way (median of 5
//! alternating rounds) and the ratio to the baseline.
//!
//! `tls`: the same over TLS, `framed-tls` against `framewire-tls`, with one rustls
//! configuration (ring provider, a certificate made at run time with rcgen and handed to the
//! children as PEM files): pipelined echo as above, and a one-way stream (`burst` into a sink
//! server: each connection sends its frames, half-closes and waits for the server to close).
//! Median of 5 alternating rounds, with the lowest and highest round, and the server's CPU
//! time per frame.
//!
//! `memory N tls`: the memory measurement for `framed-tls` and `framewire-tls` (every
//! connection does its TLS handshake and one echo).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use framewire_bench::args::{
    ClientKind, Mode, RunOpts, ServeOpts, ServerKind, ServerMode, DEFAULT_SERVE_LIFETIME, MAX_CONNS,
};
use framewire_bench::tls::TempCert;
use framewire_bench::{modes, run_server, Record};
use tokio::io::{AsyncBufReadExt, BufReader};

type Error = Box<dyn std::error::Error>;

const KINDS: [&str; 4] = [
    "framed",
    "framewire",
    "framewire-idle-timeout",
    "framewire-ack",
];

/// The TLS kinds: the baseline first.
const TLS_KINDS: [&str; 2] = ["framed-tls", "framewire-tls"];

const THROUGHPUT_KINDS: [&str; 3] = ["framed", "framewire", "framed-framecodec"];

/// Connections of the throughput runs.
const CONNS: usize = 4;
const ROUNDS: usize = 5;
/// (frame size, frames per connection) of the throughput runs.
const CASES: [(usize, u64); 2] = [(64, 500_000), (64 * 1024, 4_000)];
/// Payload of the memory runs' one echo per connection.
const MEMORY_FRAME: usize = 16;
/// The window of the ack-mode server (and of the ack client that measures it).
const ACK_WINDOW: u32 = 64;
/// The idle timeout of `framewire-idle-timeout`: armed, never reached.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

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
        /// Idle connections to open (at most 15000).
        #[arg(default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=MAX_CONNS as u64))]
        n: u64,
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
        /// Read and drop the frames (closing once the client has closed), instead of echoing.
        #[arg(long)]
        sink: bool,
        /// Serve TLS with DIR/cert.pem and DIR/key.pem (the TLS kinds need it).
        #[arg(long, value_name = "DIR")]
        tls: Option<PathBuf>,
    },
    /// The one-way TLS stream client alone, against `compare serve KIND --sink --tls DIR`
    /// (e.g. under a profiler); DIR holds cert.pem and key.pem for `localhost`.
    Stream(ClientArgs),
    /// The pipelined TLS echo client alone, against `compare serve KIND --tls DIR`.
    Echo(ClientArgs),
    /// The throughput client alone, against any echo server.
    Load {
        /// The server.
        addr: SocketAddr,
        /// Payload bytes per frame.
        #[arg(default_value_t = 64)]
        size: usize,
        /// Frames per connection.
        #[arg(default_value_t = 100_000)]
        count: u64,
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
    count: u64,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // The clients run alone report frames/s over their CONNS connections.
    let rec = match <Cli as clap::Parser>::parse() {
        Cli::Serve { kind, sink, tls } => {
            return Ok(run_server(&serve_opts(&kind, sink, tls)?).await?)
        }
        Cli::Memory { n, tls: Some(_) } => return memory_tls(n).await,
        Cli::Memory { n, tls: None } => return memory(n).await,
        Cli::Throughput => return throughput().await,
        Cli::Tls => return throughput_tls().await,
        Cli::Stream(a) => burst(a.addr, a.size, a.count, false, Some(&a.dir), None).await?,
        Cli::Echo(a) => burst(a.addr, a.size, a.count, true, Some(&a.dir), None).await?,
        Cli::Load { addr, size, count } => burst(addr, size, count, true, None, None).await?,
    };
    println!("{:.0} frames/s", rec.frames_per_s());
    Ok(())
}

/// A compare kind as the options of the library's server (`loadgen serve`).
fn serve_opts(kind: &str, sink: bool, tls: Option<PathBuf>) -> Result<ServeOpts, Error> {
    let (server, idle_timeout, needs_tls) = match kind {
        "framed" => (ServerKind::TokioUtil, None, false),
        "framed-tls" => (ServerKind::TokioUtil, None, true),
        "framed-framecodec" => (ServerKind::Codec, None, false),
        "framewire" => (ServerKind::Framewire, None, false),
        "framewire-idle-timeout" => (ServerKind::Framewire, Some(IDLE_TIMEOUT), false),
        "framewire-ack" => (ServerKind::FramewireAck, None, false),
        "framewire-tls" => (ServerKind::Framewire, None, true),
        other => return Err(format!("unknown server kind {other}").into()),
    };
    if needs_tls != tls.is_some() {
        return Err(format!("{kind}: the TLS kinds and only they take --tls DIR").into());
    }
    Ok(ServeOpts {
        kind: server,
        mode: if sink {
            ServerMode::Sink
        } else {
            ServerMode::Echo
        },
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        threads: None,
        lifetime: DEFAULT_SERVE_LIFETIME,
        window: ACK_WINDOW,
        tls,
        idle_timeout,
    })
}

/// Starts `compare serve KIND [--sink] [--tls DIR]` and reads the address it prints.
async fn start_child(
    kind: &str,
    sink: bool,
    tls: Option<&Path>,
) -> Result<(tokio::process::Child, u32, SocketAddr), Error> {
    let mut child = tokio::process::Command::from({
        let mut c = Command::new(std::env::current_exe()?);
        c.args(["serve", kind]).stdout(Stdio::piped());
        if sink {
            c.arg("--sink");
        }
        if let Some(dir) = tls {
            c.arg("--tls").arg(dir);
        }
        c
    })
    .kill_on_drop(true)
    .spawn()?;
    let pid = child.id().ok_or("child has no pid")?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await?;
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .ok_or_else(|| format!("server {kind} did not start: {line:?}"))?;
    Ok((child, pid, addr.parse()?))
}

/// The options of a run of `mode` against `addr`: quiet, the raw client (over TLS given a
/// certificate directory).
fn run_opts(mode: Mode, addr: SocketAddr, tls: Option<&Path>) -> RunOpts {
    let mut o = RunOpts::new(mode, addr);
    o.client = ClientKind::Raw;
    o.tls = tls.map(Path::to_path_buf);
    o.progress = false;
    o
}

/// `burst`: CONNS connections each send `count` frames of `size` bytes (reading the echoes,
/// or into a sink); the record of the run.
async fn burst(
    addr: SocketAddr,
    size: usize,
    count: u64,
    echo: bool,
    tls: Option<&Path>,
    pid: Option<u32>,
) -> Result<Record, Error> {
    let mut o = run_opts(Mode::Burst, addr, tls);
    o.conns = CONNS;
    o.size = size;
    o.count = count;
    o.echo = echo;
    o.pid = pid;
    Ok(modes::run(&o).await?)
}

async fn memory(n: u64) -> Result<(), Error> {
    println!("idle connections: {n}");
    print_memory_header();
    let mut results = Vec::new();
    for kind in KINDS {
        results.push((kind, measure(kind, n, None).await?));
    }
    let base = results[0].1;
    for (kind, per_conn) in &results[1..] {
        println!("{kind}: {:.2}x the framed baseline", per_conn / base);
    }
    Ok(())
}

/// `memory N tls`: idle TLS connections, the baseline first.
async fn memory_tls(n: u64) -> Result<(), Error> {
    let cert = TempCert::new()?;
    println!("idle TLS connections: {n}");
    print_memory_header();
    let base = measure(TLS_KINDS[0], n, Some(cert.dir())).await?;
    let per_conn = measure(TLS_KINDS[1], n, Some(cert.dir())).await?;
    println!(
        "{}: {:.2}x the {} baseline",
        TLS_KINDS[1],
        per_conn / base,
        TLS_KINDS[0]
    );
    Ok(())
}

fn print_memory_header() {
    println!(
        "{:<24} {:>12} {:>12} {:>14} {:>14}",
        "server", "RSS before", "RSS echoed", "idle per conn", "after echo"
    );
}

/// Runs one server kind in a child process and measures it with the `conns` mode; returns
/// the RSS growth per connection after every connection echoed once, in KiB.
async fn measure(kind: &str, n: u64, tls: Option<&Path>) -> Result<f64, Error> {
    let (mut child, pid, addr) = start_child(kind, false, tls).await?;
    let mut o = run_opts(Mode::Conns, addr, tls);
    if kind == "framewire-ack" {
        o.client = ClientKind::FramewireAck;
        o.window = ACK_WINDOW;
    }
    o.size = MEMORY_FRAME;

    // Warm up: one connection and its echo, so runtime threads and the first allocations
    // exist before the memory is first read.
    let mut warm = o.clone();
    warm.conns = 1;
    warm.duration = Duration::ZERO;
    modes::run(&warm).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    o.conns = usize::try_from(n)?;
    o.duration = Duration::from_secs(1);
    o.pid = Some(pid);
    let rec = modes::run(&o).await?;
    child.kill().await?;
    let mem = rec.memory.ok_or("the conns run read no memory figures")?;
    if rec.echo_failed != Some(0) {
        return Err(format!("{kind}: {:?} connections did not echo", rec.echo_failed).into());
    }
    let echoed = mem
        .rss_echoed_per_conn_kib()
        .ok_or("no memory figure after the echo")?;
    println!(
        "{kind:<24} {:>8} KiB {:>8} KiB {:>10.2} KiB {:>10.2} KiB",
        mem.before.rss_kib,
        mem.echoed.map_or(0, |e| e.rss_kib),
        mem.rss_per_conn_kib(),
        echoed
    );
    Ok(echoed)
}

/// The median, lowest and highest of `v` (sorted here).
fn spread(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn mib_per_s(rate: f64, size: usize) -> f64 {
    rate * size as f64 / (1024.0 * 1024.0)
}

async fn throughput() -> Result<(), Error> {
    println!(
        "{CONNS} connections, pipelined echo (loadgen burst, raw client); median of {ROUNDS} alternating rounds"
    );
    for (size, count) in CASES {
        let mut rates: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            for (k, kind) in THROUGHPUT_KINDS.into_iter().enumerate() {
                let (mut child, pid, addr) = start_child(kind, false, None).await?;
                let rec = burst(addr, size, count, true, None, Some(pid)).await?;
                child.kill().await?;
                rates[k].push(rec.frames_per_s());
            }
        }
        let mut medians = [0.0; 3];
        for (k, kind) in THROUGHPUT_KINDS.into_iter().enumerate() {
            let (rate, _, _) = spread(&mut rates[k]);
            medians[k] = rate;
            println!(
                "{kind:<18} {size:>6} B frames: {rate:>10.0} frames/s {:>8.1} MiB/s each way",
                mib_per_s(rate, size)
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
async fn throughput_tls() -> Result<(), Error> {
    let cert = TempCert::new()?;
    println!(
        "TLS (rustls, ring, one ServerConfig), {CONNS} connections; median of {ROUNDS} alternating rounds [lowest - highest]"
    );
    for (what, sink) in [("pipelined echo", false), ("one-way stream", true)] {
        for (size, count) in CASES {
            let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
            let mut cpu: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
            for _ in 0..ROUNDS {
                for (k, kind) in TLS_KINDS.into_iter().enumerate() {
                    let (mut child, pid, addr) = start_child(kind, sink, Some(cert.dir())).await?;
                    let rec = burst(addr, size, count, !sink, Some(cert.dir()), Some(pid)).await?;
                    child.kill().await?;
                    let server_cpu = rec.server_cpu_s.ok_or("no server CPU time")?;
                    rates[k].push(rec.frames_per_s());
                    cpu[k].push(server_cpu * 1e9 / rec.frames as f64);
                }
            }
            let mut medians = [0.0; 2];
            let mut cpu_medians = [0.0; 2];
            for (k, kind) in TLS_KINDS.into_iter().enumerate() {
                let (rate, low, high) = spread(&mut rates[k]);
                let (ns, ns_low, ns_high) = spread(&mut cpu[k]);
                medians[k] = rate;
                cpu_medians[k] = ns;
                println!(
                    "{what}, {kind:<14} {size:>6} B frames: {rate:>10.0} frames/s [{low:.0} - {high:.0}] {:>8.1} MiB/s; server CPU {ns:.0} ns/frame [{ns_low:.0} - {ns_high:.0}]",
                    mib_per_s(rate, size),
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
