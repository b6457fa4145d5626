//! A framewire echo server made to run behind a load balancer: it trusts PROXY headers from
//! the balancer's network, can cap connections per (original) client IP, and greets each
//! connection with the address it sees, so a test or a person can check what the balancer
//! passed on. The HAProxy tests (`examples/tests/haproxy.rs`) and the load-balancer benchmark
//! (`bench/haproxy.sh`) start it as a separate process.
//!
//! ```text
//! cargo run --release --bin lb_backend -- --addr 127.0.0.1:7001 --trust 127.0.0.1/32 --greet
//! cargo run --release --bin lb_backend -- --help
//! ```
//!
//! `--help` lists every flag. With `--record`, instead of echoing it prints a line
//! `c STATUS` per connection, `STATUS` being what became of the client's ack session there
//! (`New`, `Resumed`, `Lost` or `None`), and each message received as a line
//! `m PAYLOAD REDELIVERED ID` on stdout before taking the next one, so what a killed process had
//! acknowledged is still in the pipe; `ID` is the message id, session hex `:` seq. With
//! `--stall-at PAYLOAD` it never asks for the message after `PAYLOAD` (unless that one is a
//! redelivery), so it stays taken but unacknowledged until the process is killed: for tests
//! that kill a backend with a message in its handler. Prints `listening on ADDR` once bound;
//! SIGTERM or ctrl-c shuts it down gracefully (in ack mode clients are told to go elsewhere
//! first).

use std::process::ExitCode;

use clap::Parser;
use framewire_server::{termination_signal, Connection, IpNet, ProxyProtocol, Server, ServerError};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "lb_backend",
    version,
    about = "A framewire echo server made to run behind a load balancer"
)]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: String,
    /// Expect PROXY headers from this network (repeatable).
    #[arg(long, value_name = "NET")]
    trust: Vec<IpNet>,
    /// Most connections per client IP.
    #[arg(long, value_name = "N")]
    per_ip: Option<usize>,
    /// Ack mode with this window.
    #[arg(long, value_name = "WINDOW")]
    ack: Option<u32>,
    /// The name in the greeting.
    #[arg(long, default_value = "backend")]
    name: String,
    /// Send `NAME PEER VIA` first (VIA: the balancer's address, or -).
    #[arg(long)]
    greet: bool,
    /// Instead of echoing, print `c STATUS` per connection and `m PAYLOAD REDELIVERED ID` per
    /// message on stdout.
    #[arg(long)]
    record: bool,
    /// With --record: after recording this payload (not a redelivery), never ask for the next
    /// message, so it stays taken but unacknowledged until the process is killed.
    #[arg(long, value_name = "PAYLOAD")]
    stall_at: Option<String>,
}

/// What each connection runs: an optional greeting, then a byte-for-byte echo or a record of
/// every message.
struct Backend {
    name: String,
    greet: bool,
    record: bool,
    stall_at: Option<String>,
}

impl framewire_server::Handler for Backend {
    type Output = Result<(), ServerError>;

    async fn handle(&self, mut conn: Connection) -> Self::Output {
        if self.greet {
            let via = conn
                .proxied_by()
                .map_or_else(|| "-".to_owned(), ToString::to_string);
            let greeting = format!("{} {} {via}", self.name, conn.peer_addr());
            conn.send(greeting).await?;
        }
        if !self.record {
            return framewire_examples::mirror(conn).await;
        }
        if let Some((_, status)) = conn.session() {
            println!("c {status:?}");
        }
        // Printed before the next `recv_delivery`, which is what acknowledges it in ack mode:
        // every message a client saw acknowledged is on stdout.
        while let Some(d) = conn.recv_delivery().await? {
            let payload = String::from_utf8_lossy(&d.payload);
            println!("m {payload} {} {}", u8::from(d.redelivered), d.id());
            if !d.redelivered && self.stall_at.as_deref() == Some(&*payload) {
                // Taken, recorded, never acknowledged: wait for the kill.
                std::future::pending::<()>().await;
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs (warnings by default, RUST_LOG to change) go to stderr; stdout is for the test.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(filter)
        .init();
    let args = Args::parse();
    let builder = Server::builder();
    let builder = match args.trust {
        nets if nets.is_empty() => builder,
        nets => builder.proxy_protocol(ProxyProtocol::trusting(nets)),
    };
    let builder = match args.ack {
        Some(window) => builder.ack_mode(window),
        None => builder,
    };
    let builder = match args.per_ip {
        Some(max) => builder.max_connections_per_ip(max),
        None => builder,
    };
    let bound = builder.bind(args.addr.as_str()).await;
    let Ok(server) = bound.map_err(|e| eprintln!("lb_backend: {e}")) else {
        return ExitCode::FAILURE;
    };
    println!("listening on {}", server.local_addr());
    let handler = Backend {
        name: args.name,
        greet: args.greet,
        record: args.record,
        stall_at: args.stall_at,
    };
    let report = server.serve_until(handler, termination_signal()).await;
    let s = report.stats;
    println!(
        "stopped: accepted {} refused_per_ip {} proxy_errors {} frames_in {}",
        s.accepted, s.refused_per_ip, s.errors.proxy, s.frames_in
    );
    ExitCode::SUCCESS
}
