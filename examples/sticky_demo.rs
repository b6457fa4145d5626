//! The sticky-packet problem (粘包), shown and solved, in one process on loopback.
//!
//! ```text
//! cargo run --release --example sticky_demo
//! ```
//!
//! A sender writes many small messages back-to-back over TCP. A naive reader that treats each
//! `read()` as one message sees them coalesced and split; the same traffic sent as framewire
//! frames arrives as exactly the messages that were sent. Then a framewire server with
//! concurrent framewire clients, first with coalesced writes, then with every frame written in
//! tiny split pieces. Exits 0 only if every framed message arrived intact and in order.
//! `ack_demo` runs the same server in ack mode, with delivery receipts.

use std::process::ExitCode;

use bytes::Bytes;
use framewire_client::Client;
use framewire_codec::FrameCodec;
use framewire_examples::mirror;
use framewire_server::Server;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How many messages each side sends.
const MESSAGES: usize = 2_000;

/// Concurrent framewire clients in part 3.
const CLIENTS: usize = 8;

/// Messages per client in part 3.
const PER_CLIENT: usize = 500;

/// Clients writing split frames in part 4, and their messages each.
const SPLIT_CLIENTS: usize = 4;
const PER_SPLIT_CLIENT: usize = 200;

/// Client `c`'s `i`-th message.
fn client_message(c: usize, i: usize) -> Bytes {
    Bytes::from(format!(
        "client-{c}-msg-{i:04}:{}",
        "y".repeat((i * 7 + c) % 31)
    ))
}

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
            out.feed(bytes::Bytes::from(message(i))).await?;
        }
        // `send` is `feed` + flush.
        out.send(bytes::Bytes::from(message(MESSAGES - 1))).await?;
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

/// Errors that cross task boundaries.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How one part of the demo went.
struct Outcome {
    sent: usize,
    intact: usize,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.sent == self.intact
    }
}

/// Part 3: `CLIENTS` framewire clients at once, each pipelining `PER_CLIENT` messages
/// (`feed` buffers them, so many frames go out in one write) while it reads the echoes.
async fn concurrent_plain(
    addr: std::net::SocketAddr,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = Client::connect(addr).await?.split();
            let writer = tokio::spawn(async move {
                for i in 0..PER_CLIENT {
                    tx.feed(client_message(c, i)).await?;
                }
                tx.flush().await?;
                Ok::<_, framewire_client::ClientError>(tx)
            });
            let mut intact = 0;
            for i in 0..PER_CLIENT {
                match rx.recv().await? {
                    Some(echo) if echo == client_message(c, i) => intact += 1,
                    Some(_) => {}
                    None => break,
                }
            }
            writer.await??.close().await?;
            Ok::<_, BoxError>(intact)
        }));
    }
    let mut intact = 0;
    for t in tasks {
        intact += t.await?.map_err(|e| e.to_string())?;
    }
    Ok(Outcome {
        sent: CLIENTS * PER_CLIENT,
        intact,
    })
}

/// Part 4: raw sockets that write every frame in pieces of 1 to 7 bytes (each its own
/// `write`, Nagle off), the opposite of coalescing; the server must still see whole frames.
async fn split_writes(
    addr: std::net::SocketAddr,
) -> Result<(Outcome, usize), Box<dyn std::error::Error>> {
    let mut tasks = Vec::new();
    for c in 0..SPLIT_CLIENTS {
        tasks.push(tokio::spawn(async move {
            let sock = TcpStream::connect(addr).await?;
            sock.set_nodelay(true)?;
            let (read, mut write) = sock.into_split();
            let mut wire = bytes::BytesMut::new();
            let mut codec = FrameCodec::new();
            for i in 0..PER_SPLIT_CLIENT {
                tokio_util::codec::Encoder::encode(&mut codec, client_message(c, i), &mut wire)?;
            }
            let writer = tokio::spawn(async move {
                let mut writes = 0usize;
                let mut rest = &wire[..];
                while !rest.is_empty() {
                    let n = (writes % 7 + 1).min(rest.len());
                    write.write_all(&rest[..n]).await?;
                    rest = &rest[n..];
                    writes += 1;
                    if writes % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                write.shutdown().await?;
                Ok::<_, std::io::Error>(writes)
            });
            let mut echoes = FrameCodec::builder().new_read(read);
            let mut intact = 0;
            let mut i = 0;
            while let Some(echo) = echoes.next().await {
                if echo? == client_message(c, i) {
                    intact += 1;
                }
                i += 1;
            }
            let writes = writer.await.map_err(std::io::Error::other)??;
            Ok::<_, BoxError>((intact, writes))
        }));
    }
    let (mut intact, mut writes) = (0, 0);
    for t in tasks {
        let (i, w) = t.await?.map_err(|e| e.to_string())?;
        intact += i;
        writes += w;
    }
    Ok((
        Outcome {
            sent: SPLIT_CLIENTS * PER_SPLIT_CLIENT,
            intact,
        },
        writes,
    ))
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
    let mut ok = got.len() == MESSAGES && intact == MESSAGES;

    // A framewire server (mirror handler) on another ephemeral port.
    let server = Server::bind("127.0.0.1:0").await?;
    let server_addr: std::net::SocketAddr = server.local_addr().to_string().parse()?;
    let handle = server.handle();
    let serving = tokio::spawn(server.serve(mirror::<()>));

    let plain = concurrent_plain(server_addr).await?;
    println!(
        "\n3. A framewire server and {CLIENTS} concurrent framewire clients, writes coalesced:"
    );
    println!(
        "   {CLIENTS} clients x {PER_CLIENT} messages = {} sent, {} echoed intact and in order",
        plain.sent, plain.intact
    );
    ok &= plain.ok();

    let (split, writes) = split_writes(server_addr).await?;
    println!(
        "\n4. {SPLIT_CLIENTS} clients writing every frame in pieces of 1 to 7 bytes (split writes):"
    );
    println!(
        "   {} messages sent in {writes} writes, {} echoed intact and in order",
        split.sent, split.intact
    );
    ok &= split.ok();

    let stats = handle.stats();
    println!(
        "   server: {} connections, {} frames in, {} frames out, {} connection errors",
        stats.accepted,
        stats.frames_in,
        stats.frames_out,
        stats.errors.io + stats.errors.protocol + stats.errors.handler
    );
    handle.shutdown();
    let _ = serving.await;

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
    framewire_examples::demo_exit(run()).await
}
