//! The socketserver tutorial's echo server, on framewire frames: on connect it sends
//! `你好欢迎你`, answers every frame with the frame plus `好`, and the frame `q` ends the
//! conversation. With `--mirror` it echoes every frame back byte for byte with no greeting
//! (the form that programs in other languages and benchmarks use).
//!
//! ```text
//! cargo run --release --example echo_server
//! cargo run --release --example echo_server -- --addr 127.0.0.1:9999 --mirror --max-connections 1000
//! cargo run --release --example echo_server -- --ack 1
//! cargo run --release --example echo_server -- --tls-cert cert.pem --tls-key key.pem
//! cargo run --release --example echo_server -- --help
//! ```
//!
//! `--ack WINDOW` makes every connection speak ack mode (see `framewire_codec::ack`): each
//! reply is acknowledged once the handler took the message, and the server never has more
//! than the client's window of replies unacknowledged; `--ack 1` is the tutorial's
//! stop-and-wait, done by the protocol instead of by hand.
//!
//! `--help` lists every flag (`--tls-cert`/`--tls-key` take PEM files; docs/guide.md makes a
//! test pair with `openssl`). It prints its listening address; ctrl-c or SIGTERM shuts it
//! down gracefully. Set `RUST_LOG=debug` for per-connection logs.
//!
//! Talk to it from Python (4-byte big-endian length, then the payload):
//!
//! ```text
//! python3 -c "import socket,struct; s=socket.create_connection(('127.0.0.1',9999)); \
//!   r=lambda: s.recv(struct.unpack('>I', s.recv(4))[0]).decode(); print(r()); \
//!   m='吃了吗'.encode(); s.sendall(struct.pack('>I',len(m))+m); print(r())"
//! ```

use std::process::ExitCode;
use std::time::Duration;

use std::path::PathBuf;

use clap::Parser;
use framewire_examples::{mirror, tls, tutorial};
use framewire_server::{termination_signal, Server};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "echo_server",
    version,
    about = "The socketserver tutorial's echo server, on framewire frames"
)]
struct Args {
    /// Where to listen: HOST:PORT, or unix:/PATH.
    #[arg(long, default_value = "127.0.0.1:9999")]
    addr: String,
    /// Echo every frame back byte for byte, with no greeting (instead of the tutorial).
    #[arg(long)]
    mirror: bool,
    /// Ack mode with this window (1: the tutorial's stop-and-wait).
    #[arg(long, value_name = "WINDOW")]
    ack: Option<u32>,
    /// Largest frame accepted, in bytes (default: the server's).
    #[arg(long, value_name = "BYTES")]
    max_frame_len: Option<usize>,
    /// Most connections at once (default: the server's).
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Close connections idle this long (default 60, the server's DEFAULT_IDLE_TIMEOUT; 0
    /// turns it off).
    #[arg(long, value_name = "SECONDS")]
    idle_timeout: Option<u64>,
    /// Most connections per client IP (default 64, the server's
    /// DEFAULT_MAX_CONNECTIONS_PER_IP; 0 lifts the cap).
    #[arg(long, value_name = "N")]
    max_per_ip: Option<usize>,
    /// TLS: this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS: this PEM private key (with --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With TLS: require client certificates signed by this PEM CA (mTLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in logs piped to a file or another program.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut builder = Server::builder();
    if let Some(max) = args.max_frame_len {
        builder = builder.max_frame_len(max);
    }
    if let Some(max) = args.max_connections {
        builder = builder.max_connections(max);
    }
    if let Some(window) = args.ack {
        builder = builder.ack_mode(window);
    }
    if let Some(secs) = args.idle_timeout {
        builder = builder.idle_timeout((secs > 0).then(|| Duration::from_secs(secs)));
    }
    if let Some(max) = args.max_per_ip {
        builder = builder.max_connections_per_ip((max > 0).then_some(max));
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        match tls::server_config(cert, key, args.tls_client_ca.as_deref()) {
            Ok(config) => builder = builder.tls(config),
            Err(e) => {
                eprintln!("echo_server: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let server = match builder.bind(args.addr.as_str()).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("echo_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ack = match args.ack {
        Some(window) => format!(", ack mode with window {window}"),
        None => String::new(),
    };
    let tls = match (&args.tls_cert, &args.tls_client_ca) {
        (None, _) => "",
        (Some(_), None) => ", TLS",
        (Some(_), Some(_)) => ", TLS with client certificates",
    };
    println!(
        "echo_server listening on {} ({} mode{ack}{tls})",
        server.local_addr(),
        if args.mirror { "mirror" } else { "tutorial" }
    );
    let report = if args.mirror {
        let handler = mirror::<()>;
        server.serve_until(handler, termination_signal()).await
    } else {
        server
            .serve_until(tutorial::<()>, termination_signal())
            .await
    };
    let s = report.stats;
    println!(
        "echo_server stopped: {} connections served, {} frames in, {} frames out, {} aborted at shutdown",
        s.accepted, s.frames_in, s.frames_out, report.aborted
    );
    ExitCode::SUCCESS
}
