//! Many concurrent clients, coalesced and byte-split writes, stats against the traffic,
//! the Stream + Sink interface, Unix sockets.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;
/// The handlers the examples run (`examples/handlers.rs`; this crate cannot depend on the
/// examples package).
#[path = "../../../examples/handlers.rs"]
#[allow(dead_code, unreachable_pub)]
mod handlers;

use bytes::{BufMut, BytesMut};
use common::*;
use framewire_codec::FrameCodec;
use framewire_server::{Connection, Server, ServerError};
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::{Encoder, FramedRead};

const CLIENTS: usize = 16;
const FRAMES: usize = 150;

fn payload(client: usize, i: usize) -> Vec<u8> {
    let len = (client * 31 + i * 17) % 300;
    (0..len).map(|k| (client + i * 7 + k) as u8).collect()
}

/// Sends every frame (all at once, or in 1..=7-byte pieces), reads the echoes concurrently,
/// checks them in order; returns (frames, wire bytes).
async fn run_client(addr: std::net::SocketAddr, id: usize, coalesced: bool) -> (u64, u64) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (rd, mut wr) = stream.into_split();
    let mut wire = BytesMut::new();
    let mut codec = FrameCodec::new();
    for i in 0..FRAMES {
        codec
            .encode(bytes::Bytes::from(payload(id, i)), &mut wire)
            .expect("encode");
    }
    let wire = wire.freeze();
    let total = wire.len() as u64;
    let writer = tokio::spawn(async move {
        if coalesced {
            wr.write_all(&wire).await.expect("write");
        } else {
            let mut rest = &wire[..];
            let mut k = 0;
            while !rest.is_empty() {
                let n = (1 + k % 7).min(rest.len());
                wr.write_all(&rest[..n]).await.expect("write");
                rest = &rest[n..];
                k += 1;
                if k % 4 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
        wr
    });
    let mut reader = FramedRead::new(rd, FrameCodec::new());
    for i in 0..FRAMES {
        let frame = reader.next().await.expect("echo").expect("valid frame");
        assert_eq!(&frame[..], &payload(id, i)[..], "client {id} frame {i}");
    }
    drop(writer.await.expect("writer"));
    (FRAMES as u64, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_coalesced_and_split_writes_echo_in_order() {
    within(async {
        let server = spawn(Server::builder(), echo).await;
        let mut clients = tokio::task::JoinSet::new();
        for id in 0..CLIENTS {
            clients.spawn(run_client(server.addr, id, id % 2 == 0));
        }
        let (mut frames, mut bytes) = (0, 0);
        while let Some(res) = clients.join_next().await {
            let (f, b) = res.expect("client task");
            frames += f;
            bytes += b;
        }
        // Stats agree with the traffic once every handler has seen its client leave.
        let stats = wait_for(&server.handle, |s| s.active == 0).await;
        assert_eq!(stats.accepted, CLIENTS as u64);
        assert_eq!(stats.refused, 0);
        assert_eq!(stats.frames_in, frames);
        assert_eq!(stats.frames_out, frames);
        assert_eq!(stats.bytes_in, bytes);
        assert_eq!(stats.bytes_out, bytes);
        assert_eq!(stats.errors, Default::default());
        let report = server.stop().await;
        assert_eq!(report.aborted, 0);
    })
    .await;
}

#[tokio::test]
async fn greeting_reply_and_quit_like_the_tutorial() {
    within(async {
        let server = spawn(Server::builder(), |mut conn: Connection| async move {
            conn.send("你好欢迎你").await?;
            while let Some(frame) = conn.recv().await? {
                if &frame[..] == b"q" {
                    break;
                }
                conn.send([&frame[..], "好".as_bytes()].concat()).await?;
            }
            Ok::<_, ServerError>(())
        })
        .await;
        let mut c = client(server.addr).await;
        assert_eq!(
            next_frame(&mut c).await.as_deref(),
            Some("你好欢迎你".as_bytes())
        );
        c.send(bytes::Bytes::from("吃了吗")).await.unwrap();
        assert_eq!(
            next_frame(&mut c).await.as_deref(),
            Some("吃了吗好".as_bytes())
        );
        c.send(bytes::Bytes::from("q")).await.unwrap();
        assert!(closed_by_server(&mut c).await);
        let stats = wait_for(&server.handle, |s| s.active == 0).await;
        // greeting 4+15, reply 4+12; in: 4+9 and 4+1
        assert_eq!((stats.frames_in, stats.frames_out), (2, 2));
        assert_eq!((stats.bytes_in, stats.bytes_out), (18, 35));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn connection_is_a_stream_and_a_sink() {
    within(async {
        // Forward the connection into itself with the Stream/Sink combinators.
        let server = spawn(Server::builder(), |conn: Connection| async move {
            let (mut sink, mut stream) = conn.split();
            while let Some(frame) = stream.next().await {
                let frame = frame?;
                let mut out = BytesMut::with_capacity(frame.len() + 1);
                out.put_slice(&frame);
                out.put_u8(b'!');
                sink.send(out).await?;
            }
            Ok::<_, ServerError>(())
        })
        .await;
        let mut c = client(server.addr).await;
        for msg in ["a", "", "hello"] {
            c.send(bytes::Bytes::copy_from_slice(msg.as_bytes()))
                .await
                .unwrap();
            let want = format!("{msg}!");
            assert_eq!(next_frame(&mut c).await.as_deref(), Some(want.as_bytes()));
        }
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn handlers_see_peer_addr_local_addr_and_shared_state() {
    use std::sync::atomic::{AtomicU64, Ordering};
    within(async {
        let builder = Server::builder().state(AtomicU64::new(0));
        let server = spawn(builder, |mut conn: Connection<AtomicU64>| async move {
            let n = conn.state().fetch_add(1, Ordering::SeqCst) + 1;
            let line = format!("{} {} {}", n, conn.peer_addr(), conn.server().local_addr());
            conn.send(line).await?;
            conn.recv().await.map(|_| ())
        })
        .await;
        let mut a = client(server.addr).await;
        let a_local = a.get_ref().local_addr().unwrap();
        let line = next_frame(&mut a).await.unwrap();
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            format!("1 {a_local} {}", server.addr)
        );
        let mut b = client(server.addr).await;
        let line = next_frame(&mut b).await.unwrap();
        assert!(line.starts_with(b"2 "), "{line:?}");
        assert_eq!(server.handle.state().load(Ordering::SeqCst), 2);
        server.stop().await;
    })
    .await;
}

#[cfg(unix)]
#[tokio::test]
async fn serves_unix_sockets_through_the_listener_trait() {
    within(async {
        let path =
            std::env::temp_dir().join(format!("framewire-server-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = Server::builder().listener(listener).unwrap();
        assert!(server.local_addr().to_string().starts_with("unix:"));
        let handle = server.handle();
        let task = tokio::spawn(server.serve(echo));
        let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut c = FrameCodec::new().framed(stream);
        c.send(bytes::Bytes::from("over unix")).await.unwrap();
        assert_eq!(c.next().await.unwrap().unwrap().as_ref(), b"over unix");
        drop(c);
        handle.shutdown();
        let report = task.await.unwrap();
        assert_eq!(report.stats.accepted, 1);
        let _ = std::fs::remove_file(&path);
    })
    .await;
}

/// Large frames (written from the handler's buffer with vectored writes) interleaved with small
/// queued ones arrive whole and in order, and are counted.
#[tokio::test]
async fn large_and_small_sends_interleave_in_order() {
    within(async {
        let sizes = [5usize, 20_000, 0, 300_000, 9, 16 * 1024];
        let server = spawn(Server::builder(), move |mut conn: Connection| async move {
            for (i, &n) in sizes.iter().enumerate() {
                conn.feed(vec![i as u8; n]).await?;
            }
            conn.flush().await?;
            Ok::<_, ServerError>(())
        })
        .await;
        let mut c = client(server.addr).await;
        for (i, &n) in sizes.iter().enumerate() {
            let frame = next_frame(&mut c).await.expect("a frame");
            assert_eq!(frame.len(), n, "frame {i}");
            assert!(frame.iter().all(|&b| b == i as u8), "frame {i} damaged");
        }
        assert!(closed_by_server(&mut c).await);
        let stats = wait_for(&server.handle, |s| s.active == 0).await;
        assert_eq!(stats.frames_out, sizes.len() as u64);
        let wire: usize = sizes.iter().map(|n| n + 4).sum();
        assert_eq!(stats.bytes_out, wire as u64);
        server.stop().await;
    })
    .await;
}

/// A peer pipelining large frames (sizes around the 16 KiB limited-read threshold and the
/// 64 KiB read size, a 64 KiB payload whose header makes it overflow a 64 KiB read, and two
/// above it) in one write, in 1-byte to 64 KiB pieces, gets every frame back whole and in
/// order from a mirror forwarding them with `feed_bytes`, and every frame and byte is
/// counted: the server's reads stop at the end of large frames, its buffer is reused or
/// replaced between them, and the echoes are written from it without a copy.
#[tokio::test]
async fn pipelined_large_frames_around_the_read_size_echo_whole_and_in_order() {
    let sizes = [
        65_536usize,
        16_383,
        16_384,
        65_532,
        65_540,
        70_000,
        3,
        200_000,
        65_536,
        20_000,
    ];
    within(async {
        let server = spawn(Server::builder(), handlers::mirror_each::<()>).await;
        pipelined_echo_is_whole_and_in_order(server, &sizes, 60).await;
    })
    .await;
}

/// The same, small and large frames mixed, with a mirror forwarding runs of frames
/// (`recv_run`/`feed_run`): small frames go back as runs of whole frames, large ones that
/// arrived in pieces as runs of one; every frame is counted once each way.
#[tokio::test]
async fn pipelined_frames_forwarded_as_runs_echo_whole_and_in_order() {
    let sizes = [
        0usize, 1, 63, 1023, 1024, 5, 65_536, 0, 7, 200_000, 64, 16_384,
    ];
    within(async {
        let server = spawn(Server::builder(), |mut conn: Connection| async move {
            while let Some(run) = conn.recv_run().await? {
                assert!(!run.is_empty() && run.len() <= 128, "run of {}", run.len());
                conn.feed_run(run).await?;
                while let Some(more) = conn.try_recv_run()? {
                    conn.feed_run(more).await?;
                }
                conn.flush().await?;
            }
            Ok::<_, ServerError>(())
        })
        .await;
        pipelined_echo_is_whole_and_in_order(server, &sizes, 600).await;
    })
    .await;
}

/// Sends `count` frames (sizes taken in turn from `sizes`) in pieces of varying length,
/// checks every echo, then the server's frame and byte counters.
async fn pipelined_echo_is_whole_and_in_order(server: Running<()>, sizes: &[usize], count: usize) {
    let frames: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let n = sizes[i % sizes.len()];
            (0..n).map(|k| (i * 13 + k / 251) as u8).collect()
        })
        .collect();
    let stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (rd, mut wr) = stream.into_split();
    let mut wire = BytesMut::new();
    for f in &frames {
        FrameCodec::new()
            .encode(bytes::Bytes::copy_from_slice(&f[..]), &mut wire)
            .expect("encode");
    }
    let writer = tokio::spawn(async move {
        let mut piece = 1usize;
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let n = piece.min(rest.len());
            wr.write_all(&rest[..n]).await.expect("write");
            rest = &rest[n..];
            piece = (piece * 7 + 3) % (64 * 1024) + 1;
        }
        wr
    });
    let mut echoes = FramedRead::new(rd, FrameCodec::new());
    for (i, f) in frames.iter().enumerate() {
        let got = echoes.next().await.expect("an echo").expect("a valid echo");
        assert_eq!(got.len(), f.len(), "frame {i}: length");
        assert!(got[..] == f[..], "frame {i} damaged");
    }
    drop(writer.await.expect("writer"));
    drop(echoes);
    let stats = wait_for(&server.handle, |s| s.active == 0).await;
    assert_eq!(stats.frames_in, frames.len() as u64);
    assert_eq!(stats.frames_out, frames.len() as u64);
    let wire: usize = frames.iter().map(|f| f.len() + 4).sum();
    assert_eq!(stats.bytes_out, wire as u64);
    server.stop().await;
}

/// A transport that hands the server one burst of bytes at a time: once a burst is read, a
/// read finds nothing (`Pending`) at least once, and until the server has echoed the whole
/// burst; then the next burst is there; after the last one, end of stream. Records how many reads returned bytes per burst.
struct Bursts {
    bursts: Vec<Vec<u8>>,
    /// The burst being read, and how much of it was read.
    current: usize,
    offset: usize,
    /// Echoed bytes not yet matched against a whole burst.
    echoed: usize,
    /// A read found nothing since the current burst was read whole.
    pended: bool,
    reads_per_burst: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
    reader: Option<std::task::Waker>,
}

impl tokio::io::AsyncRead for Bursts {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        let Some(burst) = this.bursts.get(this.current) else {
            return std::task::Poll::Ready(Ok(())); // end of stream
        };
        if this.offset == burst.len() {
            if this.pended && this.echoed >= burst.len() {
                // Echoed, and the reader has waited once: the next burst arrives.
                this.echoed -= burst.len();
                this.current += 1;
                this.offset = 0;
                this.pended = false;
                return self.poll_read(cx, buf);
            }
            // Nothing to read now (as a socket between a client's bursts).
            this.pended = true;
            if this.echoed >= burst.len() {
                cx.waker().wake_by_ref();
            } else {
                this.reader = Some(cx.waker().clone());
            }
            return std::task::Poll::Pending;
        }
        let n = buf.remaining().min(burst.len() - this.offset);
        buf.put_slice(&burst[this.offset..this.offset + n]);
        this.offset += n;
        this.reads_per_burst.lock().unwrap()[this.current] += 1;
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Bursts {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        this.echoed += data.len();
        if let Some(w) = this.reader.take() {
            w.wake();
        }
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A peer pipelining bursts larger than the read buffer size (16 frames of 1 KiB, as the
/// pipelined echo benchmark does) gets each burst read in one read once the reads have grown:
/// the learned read size survives the buffer's release between bursts (it used to start over
/// at 8 KiB, costing three reads, and three writes of the echo, per burst).
#[tokio::test]
async fn a_pipelining_peer_gets_each_burst_in_one_read_once_reads_have_grown() {
    within(async {
        const BURSTS: usize = 6;
        let mut codec = FrameCodec::new();
        let mut burst = BytesMut::new();
        for i in 0..16u8 {
            codec
                .encode(bytes::Bytes::from(vec![i; 1024]), &mut burst)
                .expect("encode");
        }
        let reads = std::sync::Arc::new(std::sync::Mutex::new(vec![0usize; BURSTS]));
        let transport = Bursts {
            bursts: vec![burst.to_vec(); BURSTS],
            current: 0,
            offset: 0,
            echoed: 0,
            pended: false,
            reads_per_burst: reads.clone(),
            reader: None,
        };
        let peer = framewire_server::Address::Other("bursts".into());
        let streams = futures::stream::iter([Ok((transport, peer.clone()))])
            .chain(futures::stream::pending());
        let server = Server::builder().incoming(streams, peer);
        let handle = server.handle();
        let serving = tokio::spawn(server.serve(|mut conn: Connection| async move {
            while let Some(frame) = conn.recv().await? {
                conn.feed(&frame).await?;
                while let Some(more) = conn.try_recv()? {
                    conn.feed(&more).await?;
                }
                conn.flush().await?;
            }
            Ok::<_, ServerError>(())
        }));
        let stats = wait_for(&handle, |s| {
            s.frames_out == 16 * BURSTS as u64 && s.active == 0
        })
        .await;
        assert_eq!(stats.frames_in, 16 * BURSTS as u64);
        let reads = reads.lock().unwrap().clone();
        println!("reads per burst of {} bytes: {reads:?}", burst.len());
        // The first bursts grow the reads from 8 KiB; the last ones take one read each.
        assert!(
            reads[0] > 1,
            "the first burst is larger than the first read: {reads:?}"
        );
        assert_eq!(reads[BURSTS - 2..], [1, 1], "reads per burst: {reads:?}");
        handle.shutdown();
        let _ = serving.await;
    })
    .await;
}
