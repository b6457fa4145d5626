//! The tutorial's echo client: connects, prints the server's greeting, then sends every line
//! typed on stdin as one frame and prints the reply; `q` quits.
//!
//! Run the server in one terminal and the client in another:
//!
//! ```text
//! cargo run --release --example echo_server
//! cargo run --release --example echo_client                      # 127.0.0.1:9999, plain mode
//! cargo run --release --example echo_client -- --addr unix:/tmp/echo.sock
//!
//! cargo run --release --example echo_server -- --ack 8          # ack mode: both sides use it
//! cargo run --release --example echo_client -- --ack 8
//!
//! cargo run --release --example echo_server -- --tls-cert cert.pem --tls-key key.pem
//! cargo run --release --example echo_client -- --tls-ca cert.pem # TLS (docs/guide.md makes the pair)
//! cargo run --release --example echo_client -- --help
//! ```
//!
//! With `--ack WINDOW` each line is confirmed as taken by the server before its reply is
//! printed, and a dropped connection is re-established without losing a line. `--help` lists
//! every flag.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use framewire_client::rustls::pki_types::ServerName;
use framewire_client::{Client, ClientBuilder, ClientError, ReconnectPolicy};
use framewire_examples::tls;
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long to wait for a greeting before assuming the server sends none (`--mirror` servers).
const GREETING_WAIT: Duration = Duration::from_secs(1);

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "echo_client",
    version,
    about = "The tutorial's echo client: each line typed is one frame; q quits"
)]
struct Args {
    /// The server: HOST:PORT or unix:/PATH.
    #[arg(
        long,
        value_name = "HOST:PORT|unix:PATH",
        default_value = "127.0.0.1:9999"
    )]
    addr: String,
    /// Ack mode with this window: each line is confirmed as taken by the server before its
    /// reply is printed, and a dropped connection is re-established without losing a line.
    #[arg(long, value_name = "WINDOW")]
    ack: Option<u32>,
    /// TLS, trusting the PEM CA certificate(s) in FILE; the server's certificate must be valid
    /// for the host in --addr, or for --tls-name.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host of --addr).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    tls_name: Option<String>,
    /// Present this PEM client certificate (with --tls-key), for servers that require one.
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// The client certificate's PEM private key (with --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn show(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// The client settings: TLS from the `--tls-*` flags, if any.
fn builder(args: &Args) -> Result<ClientBuilder, String> {
    let builder = Client::builder();
    let Some(ca) = &args.tls_ca else {
        return Ok(builder);
    };
    let cert_and_key = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
    let config = tls::client_config(ca, cert_and_key)?;
    // The name the server's certificate must carry: --tls-name, or the host of --addr.
    let host = match &args.tls_name {
        Some(name) => name.clone(),
        None => match args.addr.rsplit_once(':') {
            Some((host, _)) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            None => args.addr.clone(),
        },
    };
    let name = ServerName::try_from(host.clone())
        .map_err(|e| format!("{host:?} is not a valid TLS server name: {e} (use --tls-name)"))?;
    Ok(builder.tls(config, name))
}

async fn run_ack(builder: ClientBuilder, addr: &str, window: u32) -> Result<(), ClientError> {
    let mut client = builder
        .ack_window(window)
        .reconnect(ReconnectPolicy::default())
        .connect_ack(addr)
        .await?;
    println!(
        "connected to {} (ack mode, window {window})",
        client.endpoint()
    );
    match tokio::time::timeout(GREETING_WAIT, client.recv()).await {
        Ok(Ok(Some(greeting))) => println!("server: {}", show(&greeting.payload)),
        Ok(Ok(None)) => {
            println!("server closed the connection");
            return Ok(());
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => println!("(no greeting within {} ms)", GREETING_WAIT.as_millis()),
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let receipt = client.send(line.clone()).await?;
        let id = receipt.await?.seq;
        if line == "q" {
            println!("(message {id} taken by the server; quitting)");
            break;
        }
        match client.recv().await? {
            Some(reply) => println!(
                "server: {}   (message {id} delivered{})",
                show(&reply.payload),
                if reply.redelivered {
                    ", reply redelivered"
                } else {
                    ""
                }
            ),
            None => {
                println!("server closed the connection");
                break;
            }
        }
    }
    if client.reconnects() > 0 {
        println!(
            "(reconnected {} times, {} messages redelivered)",
            client.reconnects(),
            client.redeliveries()
        );
    }
    client.close().await?;
    println!("bye");
    Ok(())
}

async fn run(args: Args, builder: ClientBuilder) -> Result<(), ClientError> {
    if let Some(window) = args.ack {
        return run_ack(builder, &args.addr, window).await;
    }
    let mut client = builder.connect(args.addr.as_str()).await?;
    println!("connected to {} (plain mode)", client.endpoint());
    match tokio::time::timeout(GREETING_WAIT, client.recv()).await {
        Ok(Ok(Some(greeting))) if greeting.starts_with(b"\x01FWAK") => {
            eprintln!("the server speaks ack mode (it sent a HELLO): run with --ack WINDOW");
            return client.close().await.map(drop);
        }
        Ok(Ok(Some(greeting))) => println!("server: {}", show(&greeting)),
        Ok(Ok(None)) => {
            println!("server closed the connection");
            return Ok(());
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => println!("(no greeting within {} ms)", GREETING_WAIT.as_millis()),
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line == "q" {
            client.send("q").await?;
            break;
        }
        let reply = client.call(line.as_bytes()).await?;
        println!("server: {}", show(&reply));
    }
    for late in client.close().await? {
        println!("server: {}", show(&late));
    }
    println!("bye");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let builder = match builder(&args) {
        Ok(builder) => builder,
        Err(msg) => {
            eprintln!("echo_client: {msg}");
            return ExitCode::FAILURE;
        }
    };
    match run(args, builder).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
