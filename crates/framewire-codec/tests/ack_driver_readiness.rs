//! `AckDriver::wait_readable`: over a transport that can tell readiness, polls of the read
//! path that would find nothing do not read (and so allocate no read buffer to try).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use framewire_codec::ack::AckFramedBuilder;
use framewire_codec::{FrameCodec, ReadReady};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP stream that counts the reads made on it (each one into a buffer the reader
/// allocated for it, if it had released its own).
struct Counted {
    inner: TcpStream,
    reads: Arc<AtomicUsize>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl ReadReady for Counted {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_read_ready(cx)
    }
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (a.unwrap(), b.unwrap().0)
}

#[tokio::test]
async fn a_driver_waiting_for_readability_reads_only_when_the_socket_has_bytes() {
    let (a, b) = tcp_pair().await;
    let reads = Arc::new(AtomicUsize::new(0));
    let builder = AckFramedBuilder::new().window(8);
    let mut a = builder.driver(a, FrameCodec::new());
    let mut b = builder.driver(
        Counted {
            inner: b,
            reads: Arc::clone(&reads),
        },
        FrameCodec::new(),
    );
    b.wait_readable();
    let (ha, hb) = tokio::join!(a.handshake(), b.handshake());
    ha.unwrap();
    hb.unwrap();

    // Nothing sent: polls of the receiving side find nothing. The first may still read (the
    // socket's readiness is cleared by a read that finds nothing); the others ask the socket
    // and read nothing. Without the probe, each of them makes a read (into a buffer
    // allocated for it and released again).
    let mut cx = Context::from_waker(Waker::noop());
    assert!(b.poll_recv(&mut cx).is_pending());
    let before = reads.load(Ordering::Relaxed);
    for _ in 0..10 {
        assert!(b.poll_recv(&mut cx).is_pending());
    }
    assert_eq!(
        reads.load(Ordering::Relaxed),
        before,
        "reads on a quiet socket"
    );

    // Bytes arrive: the probe lets the read through.
    a.send(Bytes::from_static(b"ping"), false).await.unwrap();
    let d = poll_fn(|cx| b.poll_recv(cx)).await.unwrap().unwrap();
    assert_eq!(d.payload, "ping");
    assert!(reads.load(Ordering::Relaxed) > before);
}
