//! The tutorial's echo client: connects, prints the server's greeting, then sends every line
//! typed on stdin as one frame and prints the reply; `q` quits.
//!
//! Run the server in one terminal and the client in another:
//!
//! ```text
//! cargo run --example echo_server
//! cargo run --example echo_client                       # 127.0.0.1:9999, plain mode
//! cargo run --example echo_client -- --addr unix:/tmp/echo.sock
//! ```
//!
//! Flags: `--addr ADDR` (`host:port` or `unix:/path`, default `127.0.0.1:9999`).

use std::process::ExitCode;
use std::time::Duration;

use framewire_client::{Client, ClientError};
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long to wait for a greeting before assuming the server sends none (`--mirror` servers).
const GREETING_WAIT: Duration = Duration::from_secs(1);

struct Args {
    addr: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:9999".to_string(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--addr" => args.addr = it.next().ok_or("--addr needs a value")?,
            "-h" | "--help" => {
                return Err("usage: echo_client [--addr HOST:PORT|unix:PATH]".to_string())
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

async fn run(args: Args) -> Result<(), ClientError> {
    let mut client = Client::connect(args.addr.as_str()).await?;
    println!("connected to {} (plain mode)", client.endpoint());
    match tokio::time::timeout(GREETING_WAIT, client.recv()).await {
        Ok(Ok(Some(greeting))) => println!("server: {}", String::from_utf8_lossy(&greeting)),
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
        println!("server: {}", String::from_utf8_lossy(&reply));
    }
    for late in client.close().await? {
        println!("server: {}", String::from_utf8_lossy(&late));
    }
    println!("bye");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
