//! The echo server (`--mirror` form) with its counters exported to Prometheus: the server's
//! `metrics` cargo feature publishes its `Stats` through the `metrics` facade, and
//! `metrics-exporter-prometheus` renders them; this program serves that text at
//! `http://METRICS_ADDR/metrics` (any path answers) with a few lines of plain HTTP.
//!
//! ```text
//! cargo run --release --example metrics_server
//! cargo run --release --example metrics_server -- --addr 127.0.0.1:9999 --metrics-addr 127.0.0.1:9100
//! curl -s http://127.0.0.1:9100/metrics | grep framewire_server
//! ```
//!
//! In your own program: `framewire-server = { version = "0.1", features = ["metrics"] }`,
//! `metrics-exporter-prometheus`, then install its recorder before serving (its HTTP listener,
//! `PrometheusBuilder::with_http_listener`, does the serving for you if you enable its
//! `http-listener` feature). The metric names are listed in the server crate's docs
//! (`framewire_server::METRICS_INTERVAL` and the `metrics` feature).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use framewire_examples::mirror;
use framewire_server::{termination_signal, Server};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "metrics_server",
    version,
    about = "The echo server (mirror) with its counters served to Prometheus"
)]
struct Args {
    /// Where the echo server listens: HOST:PORT, or unix:/PATH.
    #[arg(long, default_value = "127.0.0.1:9999")]
    addr: String,
    /// Where /metrics is served.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9100")]
    metrics_addr: String,
}

/// Longest a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers one HTTP request (whatever it asks) with the rendered metrics.
async fn scrape(mut stream: TcpStream, prometheus: PrometheusHandle) {
    // Read the request head (bounded in size and time); its content does not matter.
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    });
    if !matches!(read.await, Ok(true)) {
        return;
    }
    let body = prometheus.render();
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let Args { addr, metrics_addr } = Args::parse();
    let prometheus = match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("metrics_server: cannot install the Prometheus recorder: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scrapes = match TcpListener::bind(&metrics_addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("metrics_server: cannot bind {metrics_addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::bind(addr.as_str()).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("metrics_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "metrics_server: echo (mirror) on {}, metrics on http://{metrics_addr}/metrics",
        server.local_addr()
    );
    let scraping = {
        let prometheus = prometheus.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = scrapes.accept().await {
                tokio::spawn(scrape(stream, prometheus.clone()));
            }
        })
    };
    let handler = mirror::<()>;
    let report = server.serve_until(handler, termination_signal()).await;
    scraping.abort();
    println!(
        "metrics_server stopped after {} connections; last figures:\n{}",
        report.stats.accepted,
        prometheus
            .render()
            .lines()
            .filter(|l| l.starts_with("framewire_server_frames_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    ExitCode::SUCCESS
}
