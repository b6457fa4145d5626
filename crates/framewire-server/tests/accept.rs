//! Accept errors back off and never stop the server; the listen backlog.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use framewire_server::Server;
use futures::SinkExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::net::Listener;

/// A listener that fails every accept with EMFILE ("too many open files") while `failing`
/// is set, counting the failures.
struct FlakyListener {
    inner: TcpListener,
    failing: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
}

impl Listener for FlakyListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        if self.failing.load(Ordering::SeqCst) {
            self.failures.fetch_add(1, Ordering::SeqCst);
            // EMFILE: what accept(2) says when the process is out of descriptors.
            return Poll::Ready(Err(io::Error::from_raw_os_error(24)));
        }
        self.inner.poll_accept(cx)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

#[tokio::test]
async fn accept_errors_back_off_and_serving_resumes() {
    within(async {
        let failing = Arc::new(AtomicBool::new(true));
        let failures = Arc::new(AtomicUsize::new(0));
        let listener = FlakyListener {
            inner: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            failing: Arc::clone(&failing),
            failures: Arc::clone(&failures),
        };
        let server = Server::builder().listener(listener).unwrap();
        let addr = server.local_addr().tcp().unwrap();
        let handle = server.handle();
        let task = tokio::spawn(server.serve(echo));

        tokio::time::sleep(Duration::from_millis(300)).await;
        let failed = failures.load(Ordering::SeqCst);
        // Backoff 10, 20, 40, 80, 160 ms: about 5 attempts in 300 ms. A loop that retried
        // at once would make hundreds of thousands; 20 leaves room for a slow machine.
        assert!(
            (1..=20).contains(&failed),
            "{failed} accept attempts in 300 ms"
        );
        assert_eq!(handle.stats().errors.accept as usize, failed);

        failing.store(false, Ordering::SeqCst);
        // The backoff is at most ACCEPT_BACKOFF_MAX (1 s); the connection waits in the backlog.
        let mut c = client(addr).await;
        c.send(bytes::Bytes::from("back")).await.unwrap();
        assert_eq!(next_frame(&mut c).await.as_deref(), Some(&b"back"[..]));
        handle.shutdown();
        let report = task.await.unwrap();
        assert_eq!(report.stats.accepted, 1);
    })
    .await;
}

#[tokio::test]
async fn bind_uses_the_backlog_and_reports_bind_errors_with_the_address() {
    within(async {
        let server = Server::builder()
            .backlog(16)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let taken = server.local_addr().tcp().unwrap();
        // Binding the same port again fails (SO_REUSEADDR does not allow two listeners).
        let err = Server::builder().bind(taken).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&taken.to_string()) && msg.contains("backlog 1024"),
            "{msg}"
        );
    })
    .await;
}
