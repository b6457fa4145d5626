//! Client throughput on loopback, side by side in one run: 1000 pipelined 64-byte messages
//! echoed back, through
//!
//! * `Framed<TcpStream, LengthDelimitedCodec>` split into halves (the baseline),
//! * the plain-mode `Client` split into halves,
//! * the codec's `AckFramed` (window 64) used directly, sending and receiving from one task
//!   (the ack-mode baseline: what the client's background task and handles add on top),
//! * the ack-mode `AckClient` (window 64) split into halves, all 1000 acknowledged.
//!
//! ```text
//! cargo bench -p framewire-client --bench client -- --warm-up-time 1 --measurement-time 3
//! ```
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use framewire_client::Client;
use framewire_codec::ack::AckFramed;
use framewire_codec::FrameCodec;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

const MESSAGES: usize = 1000;
const WINDOW: u32 = 64;

async fn plain_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            sock.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut framed = FrameCodec::new().framed(sock);
                while let Some(Ok(frame)) = framed.next().await {
                    if framed.feed(frame).await.is_err() {
                        return;
                    }
                    if framed.read_buffer().is_empty()
                        && SinkExt::<Bytes>::flush(&mut framed).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn ack_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            sock.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut conn = AckFramed::builder().window(WINDOW).new_framed(sock);
                while let Some(Ok(d)) = conn.next().await {
                    if conn.feed(d.payload).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let payload = Bytes::from(vec![0x5a; 64]);
    let (plain_addr, ack_addr) = rt.block_on(async { (plain_echo().await, ack_echo().await) });

    let mut group = c.benchmark_group("echo_1000x64B");
    group.throughput(Throughput::Elements(MESSAGES as u64));

    let (mut base_tx, mut base_rx) = rt.block_on(async {
        let sock = TcpStream::connect(plain_addr).await.unwrap();
        sock.set_nodelay(true).unwrap();
        Framed::new(sock, LengthDelimitedCodec::new()).split()
    });
    group.bench_function("framed_length_delimited", |b| {
        b.iter(|| {
            rt.block_on(async {
                let p = payload.clone();
                let send = async {
                    for _ in 0..MESSAGES {
                        base_tx.feed(p.clone()).await.unwrap();
                    }
                    base_tx.flush().await.unwrap();
                };
                let recv = async {
                    for _ in 0..MESSAGES {
                        base_rx.next().await.unwrap().unwrap();
                    }
                };
                tokio::join!(send, recv);
            })
        })
    });

    let (mut tx, mut rx) =
        rt.block_on(async { Client::connect(plain_addr).await.unwrap().split() });
    group.bench_function("client_plain", |b| {
        b.iter(|| {
            rt.block_on(async {
                let send = async {
                    for _ in 0..MESSAGES {
                        tx.feed(payload.clone()).await.unwrap();
                    }
                    tx.flush().await.unwrap();
                };
                let recv = async {
                    for _ in 0..MESSAGES {
                        rx.recv().await.unwrap().unwrap();
                    }
                };
                tokio::join!(send, recv);
            })
        })
    });

    let mut raw_ack = rt.block_on(async {
        let sock = TcpStream::connect(ack_addr).await.unwrap();
        sock.set_nodelay(true).unwrap();
        let mut conn = AckFramed::builder().window(WINDOW).new_framed(sock);
        conn.handshake().await.unwrap();
        conn
    });
    group.bench_function("ackframed_window_64", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut sent = 0;
                let mut got = 0;
                while got < MESSAGES {
                    // Keep the window full, take echoes as they come, one task.
                    while sent < MESSAGES && raw_ack.state().has_room() {
                        raw_ack.start_send_flagged(payload.clone(), false).unwrap();
                        sent += 1;
                    }
                    raw_ack.next().await.unwrap().unwrap();
                    got += 1;
                }
                raw_ack.flush().await.unwrap();
            })
        })
    });

    let (atx, mut arx) = rt.block_on(async {
        Client::builder()
            .ack_window(WINDOW)
            .connect_ack(ack_addr)
            .await
            .unwrap()
            .split()
    });
    group.bench_function("client_ack_window_64", |b| {
        b.iter(|| {
            rt.block_on(async {
                let send = async {
                    for _ in 0..MESSAGES {
                        drop(atx.send(payload.clone()).await.unwrap());
                    }
                    atx.flush().await.unwrap();
                };
                let recv = async {
                    for _ in 0..MESSAGES {
                        arx.recv().await.unwrap().unwrap();
                    }
                };
                tokio::join!(send, recv);
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
