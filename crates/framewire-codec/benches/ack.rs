//! Ack mode against plain mode on loopback TCP, 64-byte messages, in the same run.
//!
//! Each iteration sends a batch of `BATCH` messages from a client to a server over one
//! established connection and ends when the server's application has taken all of them:
//! plain mode feeds the batch, flushes and waits for a one-byte "done" frame the server sends
//! after counting `BATCH` frames; ack mode feeds the batch and flushes, which completes only
//! once every message is acknowledged. Windows 1 (stop-and-wait), 8, 64, 256 and 1024 with
//! the default ack threshold (an ACK per half window taken, or when the receiver runs dry),
//! and windows 64 and 256 with `ack_threshold(window)` (ACK only when the receiver runs dry).
//!
//! Run (short):
//!
//! ```text
//! cargo bench -p framewire-codec --bench ack -- --warm-up-time 1 --measurement-time 2
//! ```
//!
//! `FW_BENCH_RT=multi` runs both endpoints on a 2-worker multi-threaded runtime instead of one
//! current-thread runtime.
//!
//! `FW_BENCH_ONLY=CONFIG` skips criterion and runs one configuration for a fixed 500 batches
//! (1 M messages, after 20 batches of warm-up), for `perf record` / `strace -c -f` and for
//! repeated A/B runs on a noisy machine. `CONFIG` is `plain`, a window (`64`: default ack
//! threshold) or a window with an `i` suffix (`64i`: `ack_threshold(window)`, ACK only when
//! the receiver runs dry). It prints messages/s of wall-clock time and, on Linux, messages per
//! CPU-second of the thread running the current-thread runtime (both endpoints run on it, so
//! time stolen by other processes on a shared machine does not count):
//!
//! ```text
//! FW_BENCH_ONLY=64 cargo bench -p framewire-codec --bench ack
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use framewire_codec::ack::AckFramed;
use framewire_codec::FrameCodec;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

const BATCH: usize = 2_000;
const MSG: [u8; 64] = [0x5a; 64];

type Job = (u64, oneshot::Sender<Duration>);

fn runtime() -> Runtime {
    match std::env::var("FW_BENCH_RT").as_deref() {
        Ok("multi") => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    }
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, a) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (c, s) = (c.unwrap(), a.unwrap().0);
    c.set_nodelay(true).unwrap();
    s.set_nodelay(true).unwrap();
    (c, s)
}

/// Starts a plain-mode pair; returns the job queue of its client task.
async fn start_plain() -> mpsc::Sender<Job> {
    let (c, s) = tcp_pair().await;
    tokio::spawn(async move {
        let mut server = FrameCodec::new().framed(s);
        let mut n = 0;
        while let Some(frame) = server.next().await {
            std::hint::black_box(frame.unwrap());
            n += 1;
            if n == BATCH {
                n = 0;
                server
                    .send(bytes::Bytes::copy_from_slice(&b"d"[..]))
                    .await
                    .unwrap();
            }
        }
    });
    let (tx, mut rx) = mpsc::channel::<Job>(1);
    tokio::spawn(async move {
        let mut client = FrameCodec::new().framed(c);
        let msg = Bytes::from_static(&MSG);
        while let Some((iters, done)) = rx.recv().await {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..BATCH {
                    client.feed(msg.clone()).await.unwrap();
                }
                SinkExt::<Bytes>::flush(&mut client).await.unwrap();
                client.next().await.unwrap().unwrap();
            }
            let _ = done.send(start.elapsed());
        }
    });
    tx
}

/// Starts an ack-mode pair with `window`; returns the job queue of its client task.
async fn start_ack(window: u32, ack_threshold: Option<u64>) -> mpsc::Sender<Job> {
    let (c, s) = tcp_pair().await;
    tokio::spawn(async move {
        let mut builder = AckFramed::builder().window(window);
        if let Some(t) = ack_threshold {
            builder = builder.ack_threshold(t);
        }
        let mut server = builder.new_framed(s);
        while let Some(d) = server.next().await {
            std::hint::black_box(d.unwrap());
        }
    });
    let (tx, mut rx) = mpsc::channel::<Job>(1);
    tokio::spawn(async move {
        let mut client = AckFramed::builder().window(window).new_framed(c);
        client.handshake().await.unwrap();
        let msg = Bytes::from_static(&MSG);
        while let Some((iters, done)) = rx.recv().await {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..BATCH {
                    client.feed(msg.clone()).await.unwrap();
                }
                client.flush().await.unwrap();
            }
            let _ = done.send(start.elapsed());
        }
    });
    tx
}

fn run(rt: &Runtime, jobs: &mpsc::Sender<Job>, iters: u64) -> Duration {
    rt.block_on(async {
        let (tx, rx) = oneshot::channel();
        jobs.send((iters, tx)).await.unwrap();
        rx.await.unwrap()
    })
}

/// CPU time of the calling thread, if the OS reports it (Linux).
fn thread_cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// `FW_BENCH_ONLY`: one configuration, a fixed number of batches, outside criterion.
fn run_only(rt: &Runtime, config: &str) {
    let jobs = match (config, config.strip_suffix('i')) {
        ("plain", _) => rt.block_on(start_plain()),
        (_, Some(w)) => {
            let w: u32 = w.parse().unwrap();
            rt.block_on(start_ack(w, Some(u64::from(w))))
        }
        (w, None) => rt.block_on(start_ack(w.parse().unwrap(), None)),
    };
    const BATCHES: u64 = 500;
    run(rt, &jobs, 20);
    let cpu0 = thread_cpu_time();
    let wall = run(rt, &jobs, BATCHES);
    let msgs = (BATCHES * BATCH as u64) as f64;
    print!("{config}: {:.0} msg/s", msgs / wall.as_secs_f64());
    if let (Some(c0), Some(c1)) = (cpu0, thread_cpu_time()) {
        print!(", {:.0} msg per CPU-second", msgs / (c1 - c0).as_secs_f64());
    }
    println!();
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    if let Ok(config) = std::env::var("FW_BENCH_ONLY") {
        run_only(&rt, &config);
        return;
    }
    let mut group = c.benchmark_group("loopback_64B");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);

    let plain = rt.block_on(start_plain());
    group.bench_function("plain", |b| b.iter_custom(|iters| run(&rt, &plain, iters)));
    for window in [1u32, 8, 64, 256, 1024] {
        let jobs = rt.block_on(start_ack(window, None));
        group.bench_function(format!("ack_window_{window}"), |b| {
            b.iter_custom(|iters| run(&rt, &jobs, iters))
        });
    }
    // The receiver acks only when it runs dry (or the whole window was taken).
    for window in [64u32, 256] {
        let jobs = rt.block_on(start_ack(window, Some(u64::from(window))));
        group.bench_function(format!("ack_window_{window}_ack_when_idle"), |b| {
            b.iter_custom(|iters| run(&rt, &jobs, iters))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
