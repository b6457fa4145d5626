//! The socketserver tutorial's echo server, on framewire frames: on connect it sends
//! `你好欢迎你`, answers every frame with the frame plus `好`, and the frame `q` ends the
//! conversation. With `--mirror` it echoes every frame back byte for byte with no greeting
//! (the form that programs in other languages and benchmarks use).
//!
//! ```text
//! cargo run --release -p framewire-examples --example echo_server
//! cargo run --release -p framewire-examples --example echo_server -- --addr 127.0.0.1:9999 --mirror --max-connections 1000
//! cargo run --release -p framewire-examples --example echo_server -- --ack 1
//! cargo run --release -p framewire-examples --example echo_server -- --tls-cert cert.pem --tls-key key.pem
//! ```
//!
//! `--ack WINDOW` makes every connection speak ack mode (see `framewire_codec::ack`): each
//! reply is acknowledged once the handler took the message, and the server never has more
//! than the client's window of replies unacknowledged; `--ack 1` is the tutorial's
//! stop-and-wait, done by the protocol instead of by hand.
//!
//! Flags: `--addr ADDR` (default 127.0.0.1:9999), `--mirror`, `--ack WINDOW`,
//! `--max-frame-len BYTES`, `--max-connections N`, `--idle-timeout SECONDS` (default 60, the
//! server's `DEFAULT_IDLE_TIMEOUT`; 0 turns it off), `--max-per-ip N` (default 64, the
//! server's `DEFAULT_MAX_CONNECTIONS_PER_IP`; 0 lifts the cap), `--tls-cert FILE --tls-key FILE` (TLS with
//! this PEM certificate chain and private key; the README's TLS section makes a test pair with
//! `openssl`), `--tls-client-ca FILE` (with TLS: require client certificates signed by this PEM
//! CA, mTLS). It prints its listening address; ctrl-c or
//! SIGTERM shuts it down gracefully. Set `RUST_LOG=debug` for per-connection logs.
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

use framewire_examples::{mirror, tls, tutorial};
use framewire_server::{termination_signal, Server};

const USAGE: &str = "usage: echo_server [--addr ADDR] [--mirror] [--ack WINDOW] \
                     [--max-frame-len BYTES] [--max-connections N] [--idle-timeout SECONDS] \
                     [--max-per-ip N] [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]";

/// The command line.
#[derive(Debug)]
struct Args {
    addr: String,
    mirror: bool,
    ack: Option<u32>,
    max_frame_len: Option<usize>,
    max_connections: Option<usize>,
    /// `Some(0)`: no idle timeout.
    idle_timeout_s: Option<u64>,
    /// `Some(0)`: no per-IP cap.
    max_per_ip: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:9999".to_owned(),
        mirror: false,
        ack: None,
        max_frame_len: None,
        max_connections: None,
        idle_timeout_s: None,
        max_per_ip: None,
        tls_cert: None,
        tls_key: None,
        tls_client_ca: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = value("--addr")?,
            "--mirror" => args.mirror = true,
            "--ack" => args.ack = Some(number(&value("--ack")?, "--ack")?),
            "--max-frame-len" => {
                args.max_frame_len = Some(number(&value("--max-frame-len")?, "--max-frame-len")?)
            }
            "--max-connections" => {
                args.max_connections =
                    Some(number(&value("--max-connections")?, "--max-connections")?)
            }
            "--idle-timeout" => {
                args.idle_timeout_s = Some(number(&value("--idle-timeout")?, "--idle-timeout")?)
            }
            "--max-per-ip" => {
                args.max_per_ip = Some(number(&value("--max-per-ip")?, "--max-per-ip")?)
            }
            "--tls-cert" => args.tls_cert = Some(value("--tls-cert")?.into()),
            "--tls-key" => args.tls_key = Some(value("--tls-key")?.into()),
            "--tls-client-ca" => args.tls_client_ca = Some(value("--tls-client-ca")?.into()),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".to_owned());
    }
    if args.tls_client_ca.is_some() && args.tls_cert.is_none() {
        return Err("--tls-client-ca needs --tls-cert and --tls-key".to_owned());
    }
    Ok(args)
}

fn number<T: std::str::FromStr>(text: &str, flag: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag}: {text:?} is not a valid number"))
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
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("echo_server: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
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
    if let Some(secs) = args.idle_timeout_s {
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
