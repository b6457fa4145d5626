//! The sticky-packet problem (粘包), shown and solved, in one process on loopback.
//!
//! ```text
//! cargo run --release --example sticky_demo
//! ```
//!
//! A sender writes many small messages back-to-back over TCP. A naive reader that treats each
//! `read()` as one message sees them coalesced and split; the same traffic sent as framewire
//! frames arrives as exactly the messages that were sent. Exits 0 only if the framed side
//! received every message intact.

use std::process::ExitCode;
use std::time::Duration;

use framewire_codec::FrameCodec;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How many messages each side sends.
const MESSAGES: usize = 2_000;

/// The i-th message: varied lengths, so split messages are easy to spot.
fn message(i: usize) -> String {
    format!("msg-{i:04}:{}", "x".repeat(i % 23))
}

/// What the naive reader saw.
struct NaiveReport {
    reads: usize,
    intact: usize,
    /// Messages whose bytes were spread over more than one read.
    split: usize,
    mangled: Vec<String>,
}

/// Sends every message with one `write_all` each and no framing; the reader treats each `read()`
/// as a message, as the tutorial's `recv(1024)` loop does.
async fn naive(listener: &TcpListener) -> std::io::Result<NaiveReport> {
    let addr = listener.local_addr()?;
    let sender = tokio::spawn(async move {
        let mut sock = TcpStream::connect(addr).await?;
        for i in 0..MESSAGES {
            sock.write_all(message(i).as_bytes()).await?;
            if i % 97 == 0 {
                // Let some writes go out alone, as a real application's would.
                tokio::task::yield_now().await;
            }
        }
        sock.shutdown().await
    });
    let (mut sock, _) = listener.accept().await?;
    let expected: std::collections::HashSet<String> = (0..MESSAGES).map(message).collect();
    let mut report = NaiveReport {
        reads: 0,
        intact: 0,
        split: 0,
        mangled: Vec::new(),
    };
    // Where each message starts and ends in the byte stream, to count the ones a read
    // boundary cuts.
    let mut spans = (0..MESSAGES)
        .scan(0, |end, i| {
            let start = *end;
            *end += message(i).len();
            Some((start, *end))
        })
        .peekable();
    let mut offset = 0;
    let mut buf = vec![0u8; 1024];
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        report.reads += 1;
        offset += n;
        while spans.next_if(|(_, end)| *end <= offset).is_some() {}
        if matches!(spans.peek(), Some((start, _)) if *start < offset) {
            report.split += 1;
        }
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        if expected.contains(&got) {
            report.intact += 1;
        } else if report.mangled.len() < 3 {
            report.mangled.push(got);
        }
    }
    sender.await.map_err(std::io::Error::other)??;
    Ok(report)
}

/// Sends the same messages as framewire frames; the reader decodes frames.
async fn framed(listener: &TcpListener) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let addr = listener.local_addr()?;
    let sender = tokio::spawn(async move {
        let sock = TcpStream::connect(addr).await?;
        let mut out = FrameCodec::new().framed(sock);
        for i in 0..MESSAGES - 1 {
            // `feed` buffers without flushing: frames coalesce on the wire, as they would
            // under load.
            out.feed(message(i)).await?;
        }
        // `send` is `feed` + flush.
        out.send(message(MESSAGES - 1)).await?;
        Ok::<_, framewire_codec::FrameError>(())
    });
    let (sock, _) = listener.accept().await?;
    let mut frames = FrameCodec::new().framed(sock);
    let mut got = Vec::with_capacity(MESSAGES);
    while let Some(frame) = frames.next().await {
        got.push(String::from_utf8(frame?.to_vec())?);
    }
    sender.await??;
    Ok(got)
}

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "framewire sticky-packet demo: {MESSAGES} messages over loopback ({})\n",
        listener.local_addr()?
    );

    let naive = naive(&listener).await?;
    println!("1. Raw TCP, one read() = one message (the tutorial's recv loop):");
    println!(
        "   {MESSAGES} messages sent, {} reads, {} reads held exactly one message, \
         {} messages were split across two reads",
        naive.reads, naive.intact, naive.split
    );
    for m in &naive.mangled {
        let shown: String = m.chars().take(60).collect();
        println!("   a read that was not one message: {shown:?}...");
    }

    let got = framed(&listener).await?;
    let intact = got
        .iter()
        .enumerate()
        .filter(|(i, m)| **m == message(*i))
        .count();
    println!("\n2. The same traffic as framewire frames ([u32 length][payload]):");
    println!(
        "   {MESSAGES} messages sent, {} frames received, {intact} intact and in order",
        got.len()
    );
    let ok = got.len() == MESSAGES && intact == MESSAGES;
    println!(
        "\nresult: {}",
        if ok {
            "every framed message arrived intact"
        } else {
            "FRAMED MESSAGES WERE LOST OR DAMAGED"
        }
    );
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    match tokio::time::timeout(Duration::from_secs(30), run()).await {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => ExitCode::FAILURE,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("error: the demo did not finish within 30 s");
            ExitCode::FAILURE
        }
    }
}
