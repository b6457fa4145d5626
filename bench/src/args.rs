//! The command line (clap, derive), with hard caps on every count and duration so no
//! invocation can run unbounded.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Longest `--duration` accepted: runs are always bounded.
pub const MAX_DURATION: Duration = Duration::from_secs(120);
/// Default `--duration`: long enough to settle, short enough for a side-by-side table.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(3);
/// Most connections `conns` and `flood` open: the open-files limit here is 20,000 per process.
pub const MAX_CONNS: usize = 15_000;
/// Most connections `pipeline` drives.
pub const MAX_PIPELINE_CONNS: usize = 4_096;
/// Most frames in flight per connection in `pipeline`.
pub const MAX_DEPTH: usize = 4_096;
/// Largest frame payload: the default frame limit of both `LengthDelimitedCodec` and
/// `FrameCodec` (8 MiB).
pub const MAX_FRAME_SIZE: usize = 8 * 1024 * 1024;
/// Default payload size, in bytes.
pub const DEFAULT_FRAME_SIZE: usize = 64;
/// Default `pipeline` connection count.
pub const DEFAULT_PIPELINE_CONNS: usize = 64;
/// Default `pipeline` frames in flight per connection.
pub const DEFAULT_DEPTH: usize = 16;
/// Default connection count for `conns` and `flood`.
pub const DEFAULT_IDLE_CONNS: usize = 1_000;
/// Default number of 127.0.0.x source addresses connections are spread over (loopback targets
/// only): 8 x 28,000 ephemeral ports is far more than [`MAX_CONNS`].
pub const DEFAULT_SOURCES: u8 = 8;
/// Most frames written per flush in `stream`.
pub const MAX_BATCH: usize = 65_536;
/// Default length announced by each `flood` header: 8 MiB, the default limit, so a server that
/// reserves what is announced reserves the most it allows.
pub const DEFAULT_ANNOUNCE: u32 = 8 * 1024 * 1024;
/// Longest a `serve` process runs before exiting on its own.
pub const DEFAULT_SERVE_LIFETIME: Duration = Duration::from_secs(3600);
/// Default `--window` of the ack-mode client and server: the ack protocol's default window.
pub const DEFAULT_WINDOW: u32 = framewire_codec::ack::DEFAULT_WINDOW;
/// Longest `ping --interval`.
pub const MAX_INTERVAL: Duration = Duration::from_secs(1);
/// Default `zeros` connection count: the flood.
pub const DEFAULT_ZERO_FLOODERS: usize = 4;
/// Most `zeros` connections (each runs two threads).
pub const MAX_ZERO_FLOODERS: usize = 64;
/// Default `setup` concurrency: connections being set up at the same time.
pub const DEFAULT_SETUP_CONNS: usize = 8;
/// Most `setup` loops at once.
pub const MAX_SETUP_CONNS: usize = 256;
/// Largest `--window`: each side keeps up to a window of unacknowledged messages in memory.
pub const MAX_WINDOW: u32 = 65_536;
/// Default `burst` connection count.
pub const DEFAULT_BURST_CONNS: usize = 4;
/// Default `burst --count`: frames each connection sends.
pub const DEFAULT_BURST_COUNT: u64 = 100_000;
/// Most frames one `burst` connection sends.
pub const MAX_BURST_COUNT: u64 = 100_000_000;

/// What `loadgen --help` prints after the flags.
const AFTER_HELP: &str = "\
SIZES accept k/KiB and m/MiB suffixes (64k = 65536); DURATIONS accept ms/s suffixes (500ms, 3s).
Every run flag is accepted by every run command; those marked `ping only` and the like are
refused elsewhere. `loadgen COMMAND --help` shows the flags with their defaults.";

/// What `loadgen <run command> --help` prints after the flags.
const RUN_AFTER_HELP: &str = "\
CLIENTS: codec (Framed + FrameCodec), tokio-util (Framed + LengthDelimitedCodec, the baseline),
raw (pre-built bytes, replies counted by length: the physical limit), framewire
(framewire_client::Client), framewire-ack (framewire_client::AckClient, ack mode, for `serve
--impl framewire-ack`: the window holds sends back; a run ends once every frame is acknowledged).
stream without --echo expects a sink server (`serve --mode sink`); with --echo, an echo server.
burst: each of --conns connections (default 4) sends --count frames (default 100000) in 64 KiB
writes; with --echo it reads every echo back, without it half-closes and waits for the sink
server to close; the time until every connection is done (what `compare` measures).
--tls DIR: the raw client speaks TLS to a server started with `serve --tls DIR`, trusting
DIR/cert.pem for the name `localhost`.
zeros opens N connections (default 4) that pipeline zero-length frames into an echo server as
fast as it takes them (and read and drop the echoes): run it next to a ping to see whether the
server stays fair (bench/fairness.sh runs it at nice 19 so the flood does not slow the pinging
client). --pid PID is the server's pid: conns/flood report its memory growth
(/proc/PID/status), the timed modes its CPU time (/proc/PID/stat) next to their own.";

/// Which client implementation drives the connections (`--client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// tokio-util `Framed` halves with framewire's `FrameCodec`.
    Codec,
    /// tokio-util `Framed` halves with `LengthDelimitedCodec`: the baseline.
    TokioUtil,
    /// Pre-built frames written with `write_all`, replies counted by length: the physical limit.
    Raw,
    /// The framewire client (`framewire_client::Client`).
    Framewire,
    /// The framewire client in ack mode (`framewire_client::AckClient`).
    FramewireAck,
}

impl ClientKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Codec => "codec",
            ClientKind::TokioUtil => "tokio-util",
            ClientKind::Raw => "raw",
            ClientKind::Framewire => "framewire",
            ClientKind::FramewireAck => "framewire-ack",
        }
    }
}

/// Which server implementation `loadgen serve` runs (`--impl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServerKind {
    /// tokio-util `Framed` + `LengthDelimitedCodec`: the baseline.
    TokioUtil,
    /// Bytes read and written back (or discarded) as they are: the physical limit.
    Raw,
    /// tokio-util `Framed` + framewire's `FrameCodec`.
    Codec,
    /// The framewire server (`framewire_server::Server`) with a mirror handler forwarding
    /// runs of frames (`framewire_examples::mirror`).
    Framewire,
    /// The same server with a mirror handler taking and forwarding frame by frame
    /// (`framewire_examples::mirror_each`).
    FramewireEach,
    /// The framewire server in ack mode (`ServerBuilder::ack_mode`), same handlers.
    FramewireAck,
}

impl ServerKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::TokioUtil => "tokio-util",
            ServerKind::Raw => "raw",
            ServerKind::Codec => "codec",
            ServerKind::Framewire => "framewire",
            ServerKind::FramewireEach => "framewire-each",
            ServerKind::FramewireAck => "framewire-ack",
        }
    }
}

/// What a `loadgen serve` server does with the frames it receives (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServerMode {
    /// Send every frame back.
    Echo,
    /// Count and drop every frame.
    Sink,
}

impl ServerMode {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ServerMode::Echo => "echo",
            ServerMode::Sink => "sink",
        }
    }
}

/// The load-generating modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One connection, one frame in flight: round trips per second and latency percentiles.
    Ping,
    /// N connections with D frames in flight each.
    Pipeline,
    /// One connection, frames sent as fast as possible into a sink (or, with `--echo`, an echo
    /// server whose replies are counted).
    Stream,
    /// N idle connections; each is then checked to still echo; server memory per connection.
    Conns,
    /// N connections each send one header announcing a large frame and nothing more; server
    /// memory growth per connection.
    Flood,
    /// N connections pipeline zero-length frames as fast as the server echoes them.
    Zeros,
    /// Connection setup rate: N loops each connect, (with `--proxy-v2`) write a PROXY v2
    /// header as a load balancer would, echo one frame, close; connections per second.
    Setup,
    /// N connections each send a fixed count of frames as fast as they can (reading the
    /// echoes, or then waiting for a sink server to close): the time until all are done.
    Burst,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Ping => "ping",
            Mode::Pipeline => "pipeline",
            Mode::Stream => "stream",
            Mode::Conns => "conns",
            Mode::Flood => "flood",
            Mode::Zeros => "zeros",
            Mode::Setup => "setup",
            Mode::Burst => "burst",
        }
    }
}

/// Options of a load-generating run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOpts {
    /// Which mode to run.
    pub mode: Mode,
    /// The server to load.
    pub addr: SocketAddr,
    /// The client implementation.
    pub client: ClientKind,
    /// Payload bytes per frame (the 4-byte header comes on top).
    pub size: usize,
    /// Connections (`pipeline`, `conns`, `flood`; 1 for `ping` and `stream`).
    pub conns: usize,
    /// Frames in flight per connection (`pipeline`; 1 for `ping`).
    pub depth: usize,
    /// How long frames are sent; for `conns` and `flood`, how long connections are held.
    pub duration: Duration,
    /// `stream` only: count echoed replies instead of frames sent into a sink.
    pub echo: bool,
    /// Most frames written per flush in `stream`; `None` picks about 256 KiB worth. Batches
    /// start smaller and shrink to fit the time left (see
    /// [`next_batch`](super::modes::next_batch)), so no batch overruns `duration` by much.
    pub batch: Option<usize>,
    /// The server's pid, for memory figures from `/proc/PID/status` (`conns`, `flood`) and CPU
    /// time from `/proc/PID/stat` (`ping`, `pipeline`, `stream`).
    pub pid: Option<u32>,
    /// How many 127.0.0.x source addresses to spread connections over (0: let the kernel pick;
    /// only used for IPv4 loopback targets).
    pub sources: u8,
    /// Length announced by each `flood` header.
    pub announce: u32,
    /// Free text stored with the result.
    pub label: String,
    /// Append a CSV row here.
    pub csv: Option<PathBuf>,
    /// Write a JSON object here.
    pub json: Option<PathBuf>,
    /// Print progress lines on long runs.
    pub progress: bool,
    /// Runtime worker threads; `None`: the CPUs this process may use.
    pub threads: Option<usize>,
    /// Ack mode (`framewire-ack` client): the window the client grants the server.
    pub window: u32,
    /// Ack mode (`framewire-ack` client): hand each message over as a clone of one
    /// reference-counted `Bytes` (an atomic increment, and a decrement once acknowledged)
    /// instead of a `'static` one (no count).
    pub shared_payload: bool,
    /// Ack mode (`framewire-ack` client): one `feed` call per message instead of
    /// `feed_all` per batch.
    pub feed_each: bool,
    /// `ping` only: pause between round trips (none: back to back).
    pub interval: Option<Duration>,
    /// `setup` only: start each connection with a PROXY protocol v2 header naming the
    /// client's own address (what HAProxy's `send-proxy-v2` sends).
    pub proxy_v2: bool,
    /// `burst` only: frames each connection sends.
    pub count: u64,
    /// Raw client only: speak TLS, trusting `DIR/cert.pem` (see [`tls`](super::tls)).
    pub tls: Option<PathBuf>,
}

impl RunOpts {
    /// Defaults for `mode` against `addr`.
    pub fn new(mode: Mode, addr: SocketAddr) -> Self {
        let (conns, depth) = match mode {
            Mode::Ping | Mode::Stream => (1, 1),
            Mode::Pipeline => (DEFAULT_PIPELINE_CONNS, DEFAULT_DEPTH),
            Mode::Conns | Mode::Flood => (DEFAULT_IDLE_CONNS, 1),
            Mode::Zeros => (DEFAULT_ZERO_FLOODERS, 1),
            Mode::Setup => (DEFAULT_SETUP_CONNS, 1),
            Mode::Burst => (DEFAULT_BURST_CONNS, 1),
        };
        RunOpts {
            mode,
            addr,
            client: ClientKind::TokioUtil,
            size: DEFAULT_FRAME_SIZE,
            conns,
            depth,
            duration: match mode {
                Mode::Conns | Mode::Flood => Duration::from_secs(1),
                _ => DEFAULT_DURATION,
            },
            echo: false,
            batch: None,
            pid: None,
            sources: DEFAULT_SOURCES,
            announce: DEFAULT_ANNOUNCE,
            label: String::new(),
            csv: None,
            json: None,
            progress: true,
            threads: None,
            window: DEFAULT_WINDOW,
            shared_payload: false,
            feed_each: false,
            interval: None,
            proxy_v2: false,
            count: DEFAULT_BURST_COUNT,
            tls: None,
        }
    }
}

/// Options of `loadgen serve`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeOpts {
    /// The server implementation.
    pub kind: ServerKind,
    /// Echo or sink.
    pub mode: ServerMode,
    /// Where to listen (port 0: any free port; the chosen address is printed).
    pub addr: SocketAddr,
    /// Runtime worker threads; `None`: the CPUs this process may use.
    pub threads: Option<usize>,
    /// The server exits on its own after this long.
    pub lifetime: Duration,
    /// Ack mode (`framewire-ack`): the window the server grants each client.
    pub window: u32,
    /// Serve TLS with `DIR/cert.pem` and `DIR/key.pem` (see [`tls`](super::tls)).
    pub tls: Option<PathBuf>,
    /// Framewire kinds: an idle timeout armed on every connection.
    pub idle_timeout: Option<Duration>,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Generate load.
    Run(RunOpts),
    /// Run an in-binary server.
    Serve(ServeOpts),
}

/// The command line as clap reads it; [`parse_args`] turns it into a [`Command`].
#[derive(Debug, clap::Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for any u32 big-endian length-prefixed echo server, with in-binary \
             baseline servers for side-by-side runs",
    after_help = AFTER_HELP,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// One connection, one frame in flight: round trips per second and latency percentiles.
    Ping(RunArgs),
    /// N connections with D frames in flight each.
    Pipeline(RunArgs),
    /// One connection, frames sent as fast as possible into a sink (with --echo, an echo server).
    Stream(RunArgs),
    /// N idle connections, each then checked to still echo; server memory per connection.
    Conns(RunArgs),
    /// N connections each send one header announcing a large frame and nothing more.
    Flood(RunArgs),
    /// N connections pipeline zero-length frames as fast as the server echoes them.
    Zeros(RunArgs),
    /// Connection setup rate: connect, (--proxy-v2) PROXY header, one echo, close.
    Setup(RunArgs),
    /// N connections each send --count frames as fast as they can: the time until all are done.
    Burst(RunArgs),
    /// Run an in-binary echo or sink server; prints its address and pid.
    Serve(ServeArgs),
}

/// The flags of every load-generating command (defaults depend on the command).
#[derive(Debug, clap::Args)]
#[command(after_help = RUN_AFTER_HELP)]
struct RunArgs {
    /// The server to load.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_addr)]
    addr: SocketAddr,
    /// The client implementation (default tokio-util).
    #[arg(long, value_enum, value_name = "CLIENT")]
    client: Option<ClientKind>,
    /// Payload bytes per frame (default 64; at most 8 MiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_frame_size)]
    size: Option<usize>,
    /// Connections (pipeline 64, conns/flood 1000, zeros 4, setup 8, burst 4; ping and stream: 1).
    #[arg(long, value_name = "N")]
    conns: Option<usize>,
    /// Frames in flight per connection, pipeline only (default 16).
    #[arg(long, value_name = "N", value_parser = ranged::<1, MAX_DEPTH>)]
    depth: Option<usize>,
    /// How long frames are sent; conns/flood: how long connections are held (default 3s,
    /// conns/flood 1s; at most 120s).
    #[arg(long, value_name = "DURATION", value_parser = parse_run_duration)]
    duration: Option<Duration>,
    /// stream only: count echoed replies from an echo server instead of feeding a sink.
    #[arg(long)]
    echo: bool,
    /// stream only: most frames written per flush (default: about 256 KiB worth).
    #[arg(long, value_name = "N", value_parser = ranged::<1, MAX_BATCH>)]
    batch: Option<usize>,
    /// The server's pid: memory growth (conns, flood) and CPU time (timed modes) from /proc.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// How many 127.0.0.x source addresses to spread connections over (default 8; 0: the
    /// kernel picks; loopback IPv4 targets only).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u8).range(0..=254))]
    sources: Option<u8>,
    /// flood only: the length each header announces (default 8 MiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_announce)]
    announce: Option<u32>,
    /// framewire-ack client only: the window it grants the server, 1..=65536 (default 64; 1 is
    /// stop-and-wait). Start the server with the same --window.
    #[arg(long, value_name = "N", value_parser = parse_window)]
    window: Option<u32>,
    /// framewire-ack client only: send each message as a clone of one reference-counted
    /// `Bytes` (two atomic operations per message: the clone and its release once
    /// acknowledged). Default: a `'static` `Bytes`, which the client keeps until acknowledged
    /// without a count, as the plain clients borrow one payload without a count.
    #[arg(long)]
    shared_payload: bool,
    /// framewire-ack client only: hand messages over with one `feed` call each (default:
    /// `feed_all` for each batch, which takes the connection's lock once per run of 64).
    #[arg(long)]
    feed_each: bool,
    /// ping only: pause between round trips (at most 1s).
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    interval: Option<Duration>,
    /// setup only: start each connection with a PROXY protocol v2 header, as HAProxy's
    /// send-proxy-v2 does.
    #[arg(long)]
    proxy_v2: bool,
    /// burst only: frames each connection sends (default 100000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_BURST_COUNT))]
    count: Option<u64>,
    /// raw client only: speak TLS to a `serve --tls DIR` server, trusting DIR/cert.pem.
    #[arg(long, value_name = "DIR")]
    tls: Option<PathBuf>,
    /// Free text stored in the CSV/JSON row (e.g. the server's name).
    #[arg(long, value_name = "TEXT", default_value = "")]
    label: String,
    /// Append one CSV row (header written when the file is new).
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Write the result as one JSON object.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Runtime worker threads, 1..=64 (default: the CPUs this process may use).
    #[arg(long, value_name = "N", value_parser = ranged::<1, 64>)]
    threads: Option<usize>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

/// The flags of `loadgen serve`.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The server implementation.
    #[arg(long = "impl", value_enum, value_name = "IMPL")]
    kind: ServerKind,
    /// Echo every frame back, or count and drop it.
    #[arg(long, value_enum, default_value = "echo")]
    mode: ServerMode,
    /// Where to listen (port 0: any free port; the chosen address is printed).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_addr, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Runtime worker threads, 1..=64 (default: the CPUs this process may use).
    #[arg(long, value_name = "N", value_parser = ranged::<1, 64>)]
    threads: Option<usize>,
    /// The server exits on its own after this long (default and most: 3600s).
    #[arg(long, value_name = "DURATION", value_parser = parse_lifetime)]
    lifetime: Option<Duration>,
    /// framewire-ack only: the window granted to each client, 1..=65536 (default 64).
    #[arg(long, value_name = "N", value_parser = parse_window)]
    window: Option<u32>,
    /// Serve TLS with DIR/cert.pem and DIR/key.pem (a certificate for `localhost`).
    #[arg(long, value_name = "DIR")]
    tls: Option<PathBuf>,
    /// framewire kinds only: arm an idle timeout on every connection (default: none).
    #[arg(long, value_name = "DURATION", value_parser = parse_lifetime)]
    idle_timeout: Option<Duration>,
}

/// Parses a byte count: a plain number or one with a `k`/`KiB`/`m`/`MiB` suffix
/// (binary multiples): `"64k"` is 65,536.
///
/// # Errors
/// A message for anything else, or on overflow.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (digits, mult) = if let Some(d) = strip_any(&lower, &["kib", "k"]) {
        (d, 1024usize)
    } else if let Some(d) = strip_any(&lower, &["mib", "m"]) {
        (d, 1024 * 1024)
    } else {
        (lower.strip_suffix('b').unwrap_or(&lower), 1)
    };
    digits
        .trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("cannot read {s:?} as a byte count"))
}

/// Parses a duration: seconds (`"3"`, `"3s"`, `"0.5"`) or milliseconds (`"500ms"`).
///
/// # Errors
/// A message for anything else, negative or non-finite values.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(ms) = t.strip_suffix("ms") {
        (ms, 1e-3)
    } else {
        (t.strip_suffix('s').unwrap_or(t), 1.0)
    };
    let bad = || format!("cannot read {s:?} as a duration");
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    let secs = v * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn strip_any<'a>(s: &'a str, suffixes: &[&str]) -> Option<&'a str> {
    suffixes.iter().find_map(|suf| s.strip_suffix(suf))
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| format!("cannot resolve {s:?} as HOST:PORT"))
}

/// A count in `LO..=HI`.
fn ranged<const LO: usize, const HI: usize>(s: &str) -> Result<usize, String> {
    let v: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    in_range(v, LO, HI)
}

fn in_range(v: usize, lo: usize, hi: usize) -> Result<usize, String> {
    if v < lo || v > hi {
        return Err(format!("{v} is out of range {lo}..={hi}"));
    }
    Ok(v)
}

fn parse_frame_size(s: &str) -> Result<usize, String> {
    in_range(parse_size(s)?, 0, MAX_FRAME_SIZE)
}

fn parse_announce(s: &str) -> Result<u32, String> {
    let n = parse_size(s)?;
    u32::try_from(n).map_err(|_| format!("{n} does not fit a u32 header"))
}

/// An ack-mode window: 1 ..= [`MAX_WINDOW`].
fn parse_window(s: &str) -> Result<u32, String> {
    let w = ranged::<1, { MAX_WINDOW as usize }>(s)?;
    // In range, so it fits.
    Ok(u32::try_from(w).unwrap_or(MAX_WINDOW))
}

/// A duration no longer than `cap`.
fn capped(s: &str, cap: Duration) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > cap {
        return Err(format!(
            "{} ms exceeds the cap of {} ms",
            d.as_millis(),
            cap.as_millis()
        ));
    }
    Ok(d)
}

fn parse_run_duration(s: &str) -> Result<Duration, String> {
    capped(s, MAX_DURATION)
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    capped(s, MAX_INTERVAL)
}

fn parse_lifetime(s: &str) -> Result<Duration, String> {
    capped(s, DEFAULT_SERVE_LIFETIME)
}

/// An error in clap's format, with the usage of the command `sub`, for a rule that spans
/// flags (or a flag and the command).
fn usage_error(sub: &str, msg: String) -> clap::Error {
    let kind = clap::error::ErrorKind::ArgumentConflict;
    let mut cli = <Cli as clap::CommandFactory>::command();
    // Building sets each subcommand's bin name ("loadgen ping") for its usage line.
    cli.build();
    match cli.find_subcommand_mut(sub) {
        Some(cmd) => cmd.error(kind, msg),
        None => cli.error(kind, msg),
    }
}

impl RunArgs {
    fn into_opts(self, mode: Mode) -> Result<RunOpts, clap::Error> {
        let mut o = RunOpts::new(mode, self.addr);
        if let Some(conns) = self.conns {
            let max = match mode {
                Mode::Pipeline => MAX_PIPELINE_CONNS,
                Mode::Conns | Mode::Flood => MAX_CONNS,
                Mode::Zeros => MAX_ZERO_FLOODERS,
                Mode::Setup => MAX_SETUP_CONNS,
                Mode::Burst => MAX_PIPELINE_CONNS,
                Mode::Ping | Mode::Stream => 1,
            };
            o.conns = in_range(conns, 1, max).map_err(|e| {
                usage_error(mode.name(), format!("--conns {e} for {}", mode.name()))
            })?;
        }
        let refuse = |flag: &str, scope: &str, got: &str| {
            let msg = format!("{flag} applies to {scope} only, not {got}");
            Err(usage_error(mode.name(), msg))
        };
        if self.interval.is_some() && mode != Mode::Ping {
            return refuse("--interval", "ping", mode.name());
        }
        if self.proxy_v2 && mode != Mode::Setup {
            return refuse("--proxy-v2", "setup", mode.name());
        }
        if self.count.is_some() && mode != Mode::Burst {
            return refuse("--count", "burst", mode.name());
        }
        let client = self.client.unwrap_or(o.client);
        if self.window.is_some() && client != ClientKind::FramewireAck {
            return refuse("--window", "--client framewire-ack", client.name());
        }
        if self.shared_payload && client != ClientKind::FramewireAck {
            return refuse("--shared-payload", "--client framewire-ack", client.name());
        }
        if self.feed_each && client != ClientKind::FramewireAck {
            return refuse("--feed-each", "--client framewire-ack", client.name());
        }
        if self.tls.is_some() && client != ClientKind::Raw {
            return refuse("--tls", "--client raw", client.name());
        }
        o.client = client;
        o.size = self.size.unwrap_or(o.size);
        o.depth = self.depth.unwrap_or(o.depth);
        o.duration = self.duration.unwrap_or(o.duration);
        o.echo = self.echo;
        o.batch = self.batch;
        o.pid = self.pid;
        o.sources = self.sources.unwrap_or(o.sources);
        o.announce = self.announce.unwrap_or(o.announce);
        o.window = self.window.unwrap_or(o.window);
        o.shared_payload = self.shared_payload;
        o.feed_each = self.feed_each;
        o.interval = self.interval;
        o.proxy_v2 = self.proxy_v2;
        o.count = self.count.unwrap_or(o.count);
        o.tls = self.tls;
        o.label = self.label;
        o.csv = self.csv;
        o.json = self.json;
        o.progress = !self.quiet;
        o.threads = self.threads;
        Ok(o)
    }
}

impl ServeArgs {
    fn into_opts(self) -> Result<ServeOpts, clap::Error> {
        if self.window.is_some() && self.kind != ServerKind::FramewireAck {
            return Err(usage_error(
                "serve",
                format!(
                    "--window applies to --impl framewire-ack only, not {}",
                    self.kind.name()
                ),
            ));
        }
        let framewire = matches!(
            self.kind,
            ServerKind::Framewire | ServerKind::FramewireEach | ServerKind::FramewireAck
        );
        if self.idle_timeout.is_some() && !framewire {
            return Err(usage_error(
                "serve",
                format!(
                    "--idle-timeout applies to the framewire kinds only, not {}",
                    self.kind.name()
                ),
            ));
        }
        Ok(ServeOpts {
            kind: self.kind,
            mode: self.mode,
            addr: self.addr,
            threads: self.threads,
            lifetime: self.lifetime.unwrap_or(DEFAULT_SERVE_LIFETIME),
            window: self.window.unwrap_or(DEFAULT_WINDOW),
            tls: self.tls,
            idle_timeout: self.idle_timeout,
        })
    }
}

/// Parses the arguments after the program name.
///
/// # Errors
/// A [`clap::Error`] naming the offending flag or value (every count and duration is checked
/// against its cap, `MAX_*`), or, for `--help`, `--version` and no arguments at all, the text
/// to print (kinds [`DisplayHelp`](clap::error::ErrorKind::DisplayHelp),
/// [`DisplayVersion`](clap::error::ErrorKind::DisplayVersion) and
/// [`DisplayHelpOnMissingArgumentOrSubcommand`](clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand)).
/// [`clap::Error::exit_code`] says how to exit: 0 for help and version, 2 for a usage error.
pub fn parse_args<I, S>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let argv = std::iter::once("loadgen".to_owned()).chain(args.into_iter().map(Into::into));
    let cli = <Cli as clap::Parser>::try_parse_from(argv)?;
    match cli.command {
        Sub::Ping(a) => a.into_opts(Mode::Ping).map(Command::Run),
        Sub::Pipeline(a) => a.into_opts(Mode::Pipeline).map(Command::Run),
        Sub::Stream(a) => a.into_opts(Mode::Stream).map(Command::Run),
        Sub::Conns(a) => a.into_opts(Mode::Conns).map(Command::Run),
        Sub::Flood(a) => a.into_opts(Mode::Flood).map(Command::Run),
        Sub::Zeros(a) => a.into_opts(Mode::Zeros).map(Command::Run),
        Sub::Setup(a) => a.into_opts(Mode::Setup).map(Command::Run),
        Sub::Burst(a) => a.into_opts(Mode::Burst).map(Command::Run),
        Sub::Serve(a) => a.into_opts().map(Command::Serve),
    }
}
