//! Results: one flat [`Record`] per run, printed as a table and written as CSV or JSON, plus the
//! latency summary and the `/proc/PID/status` reader.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::Path;

use hdrhistogram::Histogram;

use super::error::LoadgenError;

/// Latency percentiles of one run, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    /// Number of recorded round trips.
    pub samples: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest recorded value.
    pub max_us: f64,
}

impl LatencySummary {
    /// Summarises a histogram of nanosecond values; `None` if it is empty.
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        Some(LatencySummary {
            samples: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        })
    }
}

/// A new latency histogram for nanosecond values from 1 ns to 60 s, 3 significant digits.
///
/// # Errors
/// Only if hdrhistogram rejects these constant bounds, which it does not.
pub fn new_histogram() -> Result<Histogram<u64>, LoadgenError> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| LoadgenError::args(format!("histogram bounds: {e}")))
}

/// Memory figures of a process, from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcMem {
    /// `VmSize`: address space.
    pub vm_kib: u64,
    /// `VmRSS`: resident memory.
    pub rss_kib: u64,
}

impl ProcMem {
    /// Parses the text of a `/proc/PID/status` file; `None` if `VmSize` or `VmRSS` is missing.
    pub fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(name)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
        };
        Some(ProcMem {
            vm_kib: field("VmSize")?,
            rss_kib: field("VmRSS")?,
        })
    }

    /// Reads `/proc/PID/status`.
    ///
    /// # Errors
    /// [`LoadgenError::Proc`] if the file cannot be read or lacks the fields.
    pub fn read(pid: u32) -> Result<Self, LoadgenError> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|source| LoadgenError::Proc { pid, source })?;
        Self::parse(&text).ok_or_else(|| LoadgenError::Proc {
            pid,
            source: io::Error::new(io::ErrorKind::InvalidData, "no VmSize/VmRSS lines"),
        })
    }
}

/// Clock ticks per second of `utime`/`stime` in `/proc/PID/stat` (`USER_HZ`, 100 on Linux).
pub const CLOCK_TICKS_PER_S: f64 = 100.0;

/// The CPU time (user + system, all threads) a process has used, in clock ticks, from the text
/// of its `/proc/PID/stat`; `None` if the text does not have the expected fields.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    utime.checked_add(stime)
}

/// CPU seconds process `pid` has used so far (user + system, all threads).
///
/// # Errors
/// [`LoadgenError::Proc`] if `/proc/PID/stat` cannot be read or parsed.
pub fn cpu_seconds(pid: u32) -> Result<f64, LoadgenError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|source| LoadgenError::Proc { pid, source })?;
    let ticks = parse_cpu_ticks(&text).ok_or_else(|| LoadgenError::Proc {
        pid,
        source: io::Error::new(io::ErrorKind::InvalidData, "no utime/stime fields"),
    })?;
    Ok(ticks as f64 / CLOCK_TICKS_PER_S)
}

/// CPU time used during a measured window, by this process and (given `--pid`) the server.
#[derive(Debug, Clone, Copy)]
pub struct CpuWindow {
    client_start: f64,
    server: Option<(u32, f64)>,
}

impl CpuWindow {
    /// Starts a window now.
    ///
    /// # Errors
    /// [`LoadgenError::Proc`] if `/proc` cannot be read.
    pub fn start(server_pid: Option<u32>) -> Result<Self, LoadgenError> {
        Ok(CpuWindow {
            client_start: cpu_seconds(std::process::id())?,
            server: server_pid
                .map(|pid| cpu_seconds(pid).map(|s| (pid, s)))
                .transpose()?,
        })
    }

    /// Ends the window: (client CPU seconds, server CPU seconds if known).
    ///
    /// # Errors
    /// [`LoadgenError::Proc`] if `/proc` cannot be read.
    pub fn end(&self) -> Result<(f64, Option<f64>), LoadgenError> {
        let client = cpu_seconds(std::process::id())? - self.client_start;
        let server = match self.server {
            Some((pid, start)) => Some(cpu_seconds(pid)? - start),
            None => None,
        };
        Ok((client, server))
    }
}

/// Server memory before and after connections were opened (and, for `conns`, after each echoed
/// once).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryGrowth {
    /// The server's pid.
    pub pid: u32,
    /// Before any connection was opened.
    pub before: ProcMem,
    /// After all connections were opened (`conns`) or all headers sent (`flood`), and a pause.
    pub opened: ProcMem,
    /// `conns` only: after every connection echoed one frame.
    pub echoed: Option<ProcMem>,
    /// Connections the growth is divided by.
    pub conns: u64,
}

impl MemoryGrowth {
    fn per_conn(&self, before: u64, after: u64) -> f64 {
        if self.conns == 0 {
            return 0.0;
        }
        (after as f64 - before as f64) / self.conns as f64
    }

    /// RSS growth per connection after opening, in KiB.
    pub fn rss_per_conn_kib(&self) -> f64 {
        self.per_conn(self.before.rss_kib, self.opened.rss_kib)
    }

    /// Address-space growth per connection after opening, in KiB.
    pub fn vm_per_conn_kib(&self) -> f64 {
        self.per_conn(self.before.vm_kib, self.opened.vm_kib)
    }

    /// RSS growth per connection after every connection echoed once, in KiB.
    pub fn rss_echoed_per_conn_kib(&self) -> Option<f64> {
        self.echoed
            .map(|e| self.per_conn(self.before.rss_kib, e.rss_kib))
    }
}

/// The result of one run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// Free text from `--label`.
    pub label: String,
    /// Mode name.
    pub mode: String,
    /// Client implementation name.
    pub client: String,
    /// Server address.
    pub addr: String,
    /// Payload bytes per frame.
    pub frame_size: u64,
    /// Connections.
    pub conns: u64,
    /// Frames in flight per connection.
    pub depth: u64,
    /// Wall-clock seconds the measured part took.
    pub elapsed_s: f64,
    /// Frames counted (sent into a sink, or replies received).
    pub frames: u64,
    /// Latency percentiles (`ping`, `pipeline`).
    pub latency: Option<LatencySummary>,
    /// Server memory growth (`conns`, `flood` with `--pid`).
    pub memory: Option<MemoryGrowth>,
    /// Connections that echoed correctly (`conns`, `flood`).
    pub echo_ok: Option<u64>,
    /// Connections that failed to echo (`conns`, `flood`).
    pub echo_failed: Option<u64>,
    /// CPU seconds this process used in the measured time (`ping`, `pipeline`, `stream`).
    pub client_cpu_s: Option<f64>,
    /// CPU seconds the server used in the measured time (given `--pid`).
    pub server_cpu_s: Option<f64>,
    /// Ack mode (`framewire-ack` client): the window the client granted.
    pub window: Option<u32>,
}

/// One value of a [`Record`] column.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// Text.
    Str(String),
    /// A count.
    Int(u64),
    /// A measurement.
    Float(f64),
    /// Not applicable to this mode.
    Empty,
}

impl Field {
    fn text(&self) -> String {
        match self {
            Field::Str(s) => s.clone(),
            Field::Int(n) => n.to_string(),
            Field::Float(x) => format_float(*x),
            Field::Empty => String::new(),
        }
    }
}

/// Floats with enough digits to be useful and no more: 3 decimals below 1000, 1 above.
pub fn format_float(x: f64) -> String {
    if !x.is_finite() {
        return String::new();
    }
    if x.abs() >= 1000.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// The CSV columns, in order; every record has all of them (empty where not applicable), so
/// rows of different modes can share one file.
pub const COLUMNS: &[&str] = &[
    "label",
    "mode",
    "client",
    "addr",
    "frame_size",
    "conns",
    "depth",
    "elapsed_s",
    "frames",
    "frames_per_s",
    "mib_per_s",
    "p50_us",
    "p99_us",
    "p999_us",
    "max_us",
    "server_pid",
    "rss_before_kib",
    "rss_opened_kib",
    "rss_echoed_kib",
    "vm_before_kib",
    "vm_opened_kib",
    "rss_per_conn_kib",
    "rss_echoed_per_conn_kib",
    "vm_per_conn_kib",
    "echo_ok",
    "echo_failed",
    "client_cpu_s",
    "server_cpu_s",
    "window",
];

impl Record {
    /// Frames per second over the measured time.
    pub fn frames_per_s(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.frames as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    /// Payload MiB per second (headers not counted).
    pub fn mib_per_s(&self) -> f64 {
        self.frames_per_s() * self.frame_size as f64 / (1024.0 * 1024.0)
    }

    /// The values, in [`COLUMNS`] order.
    pub fn fields(&self) -> Vec<Field> {
        use Field::{Empty, Float, Int, Str};
        let lat =
            |f: fn(&LatencySummary) -> f64| self.latency.as_ref().map_or(Empty, |l| Float(f(l)));
        let mem = |f: fn(&MemoryGrowth) -> Field| self.memory.as_ref().map_or(Empty, f);
        let timed = matches!(
            self.mode.as_str(),
            "ping" | "pipeline" | "stream" | "setup" | "burst"
        );
        vec![
            Str(self.label.clone()),
            Str(self.mode.clone()),
            Str(self.client.clone()),
            Str(self.addr.clone()),
            Int(self.frame_size),
            Int(self.conns),
            Int(self.depth),
            Float(self.elapsed_s),
            Int(self.frames),
            if timed {
                Float(self.frames_per_s())
            } else {
                Empty
            },
            if timed {
                Float(self.mib_per_s())
            } else {
                Empty
            },
            lat(|l| l.p50_us),
            lat(|l| l.p99_us),
            lat(|l| l.p999_us),
            lat(|l| l.max_us),
            mem(|m| Int(u64::from(m.pid))),
            mem(|m| Int(m.before.rss_kib)),
            mem(|m| Int(m.opened.rss_kib)),
            mem(|m| m.echoed.map_or(Empty, |e| Int(e.rss_kib))),
            mem(|m| Int(m.before.vm_kib)),
            mem(|m| Int(m.opened.vm_kib)),
            mem(|m| Float(m.rss_per_conn_kib())),
            mem(|m| m.rss_echoed_per_conn_kib().map_or(Empty, Float)),
            mem(|m| Float(m.vm_per_conn_kib())),
            self.echo_ok.map_or(Empty, Int),
            self.echo_failed.map_or(Empty, Int),
            self.client_cpu_s.map_or(Empty, Float),
            self.server_cpu_s.map_or(Empty, Float),
            self.window.map_or(Empty, |w| Int(u64::from(w))),
        ]
    }

    /// The CSV header line (no newline).
    pub fn csv_header() -> String {
        COLUMNS.join(",")
    }

    /// This record as one CSV line (no newline); text is quoted when it needs to be (RFC 4180).
    pub fn csv_row(&self) -> String {
        self.fields()
            .iter()
            .map(|f| csv_escape(&f.text()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// This record as one JSON object; empty fields are `null`.
    pub fn json(&self) -> String {
        let mut out = String::from("{");
        for (i, (name, field)) in COLUMNS.iter().zip(self.fields()).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let value = match field {
                Field::Str(s) => json_string(&s),
                Field::Int(n) => n.to_string(),
                Field::Float(x) if x.is_finite() => format_float(x),
                Field::Float(_) | Field::Empty => "null".to_owned(),
            };
            let _ = write!(out, "{}: {}", json_string(name), value);
        }
        out.push('}');
        out
    }

    /// A two-column, human-readable table of the non-empty fields.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for (name, field) in COLUMNS.iter().zip(self.fields()) {
            if field == Field::Empty || field == Field::Str(String::new()) {
                continue;
            }
            let _ = writeln!(out, "  {name:<24} {}", field.text());
        }
        out
    }

    /// Appends [`Record::csv_row`] to `path`, writing the header first if the file is new or
    /// empty.
    ///
    /// # Errors
    /// File I/O errors; [`io::ErrorKind::InvalidData`] if the file starts with another header
    /// (written by an older loadgen with other columns), so rows never land under the wrong
    /// columns.
    pub fn append_csv(&self, path: &Path) -> io::Result<()> {
        let fresh = std::fs::metadata(path)
            .map(|m| m.len() == 0)
            .unwrap_or(true);
        if !fresh {
            let mut first = String::new();
            io::BufRead::read_line(
                &mut io::BufReader::new(std::fs::File::open(path)?),
                &mut first,
            )?;
            if first.trim_end() != Self::csv_header() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} has other CSV columns (an older loadgen?); write to a new file",
                        path.display()
                    ),
                ));
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        if fresh {
            writeln!(f, "{}", Self::csv_header())?;
        }
        writeln!(f, "{}", self.csv_row())
    }
}

/// Quotes a CSV field if it contains a comma, quote or line break, doubling inner quotes.
pub fn csv_escape(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A JSON string literal for `s`.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
