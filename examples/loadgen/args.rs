//! Command-line parsing, by hand (no argument-parser dependency), with hard caps on every count
//! and duration so no invocation can run unbounded.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::error::LoadgenError;

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

/// The usage text printed by `loadgen help`.
pub const USAGE: &str = "\
loadgen: load generator for any u32 big-endian length-prefixed echo server

USAGE:
  loadgen ping     --addr HOST:PORT [--client C] [--size N] [--duration T] [--pid PID]
                   [--interval T]
  loadgen pipeline --addr HOST:PORT [--client C] [--size N] [--conns N] [--depth D] [--duration T]
  loadgen stream   --addr HOST:PORT [--client C] [--size N] [--duration T] [--echo] [--batch N]
  loadgen conns    --addr HOST:PORT [--client C] [--conns N] [--pid PID] [--sources K]
  loadgen flood    --addr HOST:PORT [--conns N] [--pid PID] [--sources K] [--announce N]
  loadgen zeros    --addr HOST:PORT [--conns N] [--duration T]
  loadgen setup    --addr HOST:PORT [--conns N] [--size N] [--duration T] [--sources K]
                   [--proxy-v2]
  loadgen serve    --impl tokio-util|raw|codec|framewire|framewire-each|framewire-ack --mode echo|sink
                   [--addr HOST:PORT] [--threads N] [--window N]

CLIENT (--client):  codec (Framed + FrameCodec), tokio-util (Framed + LengthDelimitedCodec, the
                    baseline), raw (pre-built bytes, replies counted by length: the physical
                    limit), framewire (framewire_client::Client), framewire-ack
                    (framewire_client::AckClient, ack mode, for `serve --impl framewire-ack`:
                    the window holds sends back; a run ends once every frame is acknowledged)
ACK MODE:  --window N     framewire-ack only (default 64, 1..=65536; 1 is stop-and-wait). For the
                          client: the window it grants the server (replies in flight); how many
                          of its own frames may be unacknowledged is the window the server grants,
                          so start the server with the same --window.
COMMON:  --label TEXT   free text stored in the CSV/JSON row (e.g. the server's name)
         --csv FILE     append one CSV row (header written when the file is new)
         --json FILE    write the result as one JSON object
         --threads N    runtime worker threads (default: the CPUs this process may use)
         --quiet        no progress lines
SIZES accept k/KiB and m/MiB suffixes (64k = 65536); DURATIONS accept ms/s suffixes (500ms, 3s).
stream without --echo expects a sink server (`serve --mode sink`); with --echo, an echo server.
ping --interval T pauses T between round trips (a client pinging every T). zeros opens N
connections (default 4) that pipeline zero-length frames into an echo server as fast as it takes
them (and read and drop the echoes) for T: run it next to a ping to see whether the server stays
fair (bench/fairness.sh runs it at nice 19 so the flood does not slow the pinging client).
--pid PID is the server's pid: conns/flood report its memory growth (/proc/PID/status), the
timed modes its CPU time (/proc/PID/stat) next to their own.
";

/// Which client implementation drives the connections (`--client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    fn parse(s: &str) -> Result<Self, LoadgenError> {
        match s {
            "codec" => Ok(ClientKind::Codec),
            "tokio-util" => Ok(ClientKind::TokioUtil),
            "raw" => Ok(ClientKind::Raw),
            "framewire" => Ok(ClientKind::Framewire),
            "framewire-ack" => Ok(ClientKind::FramewireAck),
            other => Err(LoadgenError::args(format!(
                "unknown --client {other:?}; expected codec, tokio-util, raw, framewire or \
                 framewire-ack"
            ))),
        }
    }
}

/// Which server implementation `loadgen serve` runs (`--impl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    fn parse(s: &str) -> Result<Self, LoadgenError> {
        match s {
            "tokio-util" => Ok(ServerKind::TokioUtil),
            "raw" => Ok(ServerKind::Raw),
            "codec" => Ok(ServerKind::Codec),
            "framewire" => Ok(ServerKind::Framewire),
            "framewire-each" => Ok(ServerKind::FramewireEach),
            "framewire-ack" => Ok(ServerKind::FramewireAck),
            other => Err(LoadgenError::args(format!(
                "unknown --impl {other:?}; expected tokio-util, raw, codec, framewire, \
                 framewire-each or framewire-ack"
            ))),
        }
    }
}

/// What a `loadgen serve` server does with the frames it receives (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// `ping` only: pause between round trips (none: back to back).
    pub interval: Option<Duration>,
    /// `setup` only: start each connection with a PROXY protocol v2 header naming the
    /// client's own address (what HAProxy's `send-proxy-v2` sends).
    pub proxy_v2: bool,
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
            interval: None,
            proxy_v2: false,
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
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Generate load.
    Run(RunOpts),
    /// Run an in-binary server.
    Serve(ServeOpts),
    /// Print [`USAGE`].
    Help,
}

/// Parses a byte count: a plain number or one with a `k`/`KiB`/`m`/`MiB` suffix
/// (binary multiples): `"64k"` is 65,536.
///
/// # Errors
/// [`LoadgenError::Args`] for anything else, or on overflow.
pub fn parse_size(s: &str) -> Result<usize, LoadgenError> {
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
        .ok_or_else(|| LoadgenError::args(format!("cannot read {s:?} as a byte count")))
}

/// Parses a duration: seconds (`"3"`, `"3s"`, `"0.5"`) or milliseconds (`"500ms"`).
///
/// # Errors
/// [`LoadgenError::Args`] for anything else, negative or non-finite values.
pub fn parse_duration(s: &str) -> Result<Duration, LoadgenError> {
    let t = s.trim();
    let (num, scale) = if let Some(ms) = t.strip_suffix("ms") {
        (ms, 1e-3)
    } else {
        (t.strip_suffix('s').unwrap_or(t), 1.0)
    };
    let bad = || LoadgenError::args(format!("cannot read {s:?} as a duration"));
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

fn parse_addr(s: &str) -> Result<SocketAddr, LoadgenError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| LoadgenError::args(format!("cannot resolve {s:?} as HOST:PORT")))
}

fn parse_num<T: std::str::FromStr>(flag: &str, s: &str) -> Result<T, LoadgenError> {
    s.trim()
        .parse()
        .map_err(|_| LoadgenError::args(format!("{flag} expects a number, got {s:?}")))
}

/// Parses an ack-mode `--window`: 1 ..= [`MAX_WINDOW`].
fn parse_window(s: &str) -> Result<u32, LoadgenError> {
    let w = check_range(
        "--window",
        parse_num("--window", s)?,
        1,
        MAX_WINDOW as usize,
    )?;
    // In range, so it fits.
    Ok(u32::try_from(w).unwrap_or(MAX_WINDOW))
}

fn check_range(flag: &str, v: usize, lo: usize, hi: usize) -> Result<usize, LoadgenError> {
    if v < lo || v > hi {
        return Err(LoadgenError::args(format!(
            "{flag} {v} is out of range {lo}..={hi}"
        )));
    }
    Ok(v)
}

/// Parses the arguments after the program name.
///
/// # Errors
/// [`LoadgenError::Args`] naming the offending flag or value; every count and duration is
/// checked against its cap (`MAX_*`).
pub fn parse_args<I, S>(args: I) -> Result<Command, LoadgenError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut it = args.into_iter().map(Into::into);
    let sub = match it.next() {
        None => return Ok(Command::Help),
        Some(s) => s,
    };
    let mode = match sub.as_str() {
        "help" | "-h" | "--help" => return Ok(Command::Help),
        "serve" => return parse_serve(it),
        "ping" => Mode::Ping,
        "pipeline" => Mode::Pipeline,
        "stream" => Mode::Stream,
        "conns" => Mode::Conns,
        "flood" => Mode::Flood,
        "zeros" => Mode::Zeros,
        "setup" => Mode::Setup,
        other => {
            return Err(LoadgenError::args(format!(
                "unknown command {other:?}; expected ping, pipeline, stream, conns, flood, zeros, setup, serve or help"
            )))
        }
    };
    let placeholder = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut o = RunOpts::new(mode, placeholder);
    let mut addr = None;
    let mut window_given = false;
    while let Some(flag) = it.next() {
        window_given |= flag == "--window";
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| LoadgenError::args(format!("{name} needs a value")))
        };
        match flag.as_str() {
            "--addr" => addr = Some(parse_addr(&value("--addr")?)?),
            "--client" => o.client = ClientKind::parse(&value("--client")?)?,
            "--size" => {
                o.size = check_range("--size", parse_size(&value("--size")?)?, 0, MAX_FRAME_SIZE)?
            }
            "--conns" => {
                let max = match mode {
                    Mode::Pipeline => MAX_PIPELINE_CONNS,
                    Mode::Conns | Mode::Flood => MAX_CONNS,
                    Mode::Zeros => MAX_ZERO_FLOODERS,
                    Mode::Setup => MAX_SETUP_CONNS,
                    Mode::Ping | Mode::Stream => 1,
                };
                o.conns = check_range("--conns", parse_num("--conns", &value("--conns")?)?, 1, max)?
            }
            "--depth" => {
                o.depth = check_range(
                    "--depth",
                    parse_num("--depth", &value("--depth")?)?,
                    1,
                    MAX_DEPTH,
                )?
            }
            "--duration" => {
                let d = parse_duration(&value("--duration")?)?;
                if d > MAX_DURATION {
                    return Err(LoadgenError::args(format!(
                        "--duration {} s exceeds the cap of {} s",
                        d.as_secs_f64(),
                        MAX_DURATION.as_secs()
                    )));
                }
                o.duration = d;
            }
            "--echo" => o.echo = true,
            "--batch" => {
                o.batch = Some(check_range(
                    "--batch",
                    parse_num("--batch", &value("--batch")?)?,
                    1,
                    MAX_BATCH,
                )?)
            }
            "--pid" => o.pid = Some(parse_num("--pid", &value("--pid")?)?),
            "--sources" => {
                let k: usize = parse_num("--sources", &value("--sources")?)?;
                // 127.0.0.1 ..= 127.0.0.254
                o.sources = u8::try_from(check_range("--sources", k, 0, 254)?).unwrap_or(1);
            }
            "--announce" => {
                let n = parse_size(&value("--announce")?)?;
                o.announce = u32::try_from(n).map_err(|_| {
                    LoadgenError::args(format!("--announce {n} does not fit a u32 header"))
                })?;
            }
            "--window" => o.window = parse_window(&value("--window")?)?,
            "--interval" => {
                let d = parse_duration(&value("--interval")?)?;
                if d > MAX_INTERVAL {
                    return Err(LoadgenError::args(format!(
                        "--interval {} ms exceeds the cap of {} ms",
                        d.as_millis(),
                        MAX_INTERVAL.as_millis()
                    )));
                }
                o.interval = Some(d);
            }
            "--proxy-v2" => o.proxy_v2 = true,
            "--label" => o.label = value("--label")?,
            "--csv" => o.csv = Some(PathBuf::from(value("--csv")?)),
            "--json" => o.json = Some(PathBuf::from(value("--json")?)),
            "--quiet" => o.progress = false,
            "--threads" => {
                o.threads = Some(check_range(
                    "--threads",
                    parse_num("--threads", &value("--threads")?)?,
                    1,
                    64,
                )?)
            }
            other => return Err(LoadgenError::args(format!("unknown flag {other:?}"))),
        }
    }
    o.addr = addr.ok_or_else(|| LoadgenError::args(format!("{} needs --addr", mode.name())))?;
    if mode != Mode::Ping && o.interval.is_some() {
        return Err(LoadgenError::args(format!(
            "--interval applies to ping only, not {}",
            mode.name()
        )));
    }
    if o.proxy_v2 && mode != Mode::Setup {
        return Err(LoadgenError::args(format!(
            "--proxy-v2 applies to setup only, not {}",
            mode.name()
        )));
    }
    if window_given && o.client != ClientKind::FramewireAck {
        return Err(LoadgenError::args(format!(
            "--window applies to --client framewire-ack only, not {}",
            o.client.name()
        )));
    }
    Ok(Command::Run(o))
}

fn parse_serve(mut it: impl Iterator<Item = String>) -> Result<Command, LoadgenError> {
    let mut kind = None;
    let mut mode = ServerMode::Echo;
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut threads = None;
    let mut lifetime = DEFAULT_SERVE_LIFETIME;
    let mut window = None;
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| LoadgenError::args(format!("{name} needs a value")))
        };
        match flag.as_str() {
            "--impl" => kind = Some(ServerKind::parse(&value("--impl")?)?),
            "--mode" => {
                mode = match value("--mode")?.as_str() {
                    "echo" => ServerMode::Echo,
                    "sink" => ServerMode::Sink,
                    other => {
                        return Err(LoadgenError::args(format!(
                            "unknown --mode {other:?}; expected echo or sink"
                        )))
                    }
                }
            }
            "--addr" => addr = parse_addr(&value("--addr")?)?,
            "--threads" => {
                threads = Some(check_range(
                    "--threads",
                    parse_num("--threads", &value("--threads")?)?,
                    1,
                    64,
                )?)
            }
            "--lifetime" => {
                let d = parse_duration(&value("--lifetime")?)?;
                if d > DEFAULT_SERVE_LIFETIME {
                    return Err(LoadgenError::args(format!(
                        "--lifetime is capped at {} s",
                        DEFAULT_SERVE_LIFETIME.as_secs()
                    )));
                }
                lifetime = d;
            }
            "--window" => window = Some(parse_window(&value("--window")?)?),
            other => return Err(LoadgenError::args(format!("unknown flag {other:?}"))),
        }
    }
    let kind = kind.ok_or_else(|| {
        LoadgenError::args(
            "serve needs --impl tokio-util|raw|codec|framewire|framewire-each|framewire-ack",
        )
    })?;
    if window.is_some() && kind != ServerKind::FramewireAck {
        return Err(LoadgenError::args(format!(
            "--window applies to --impl framewire-ack only, not {}",
            kind.name()
        )));
    }
    Ok(Command::Serve(ServeOpts {
        kind,
        mode,
        addr,
        threads,
        lifetime,
        window: window.unwrap_or(DEFAULT_WINDOW),
    }))
}
