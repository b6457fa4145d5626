//! The hostile-input suite: attacks on a real server over loopback, each while a well-behaved
//! client keeps getting correct echoes.
//!
//! Every test starts a server and a [`Witness`] (a well-behaved client in its own task that
//! sends frames and checks each echo byte for byte), takes a memory baseline, runs the attack,
//! requires the witness to make progress while the attack is in effect, waits until the
//! server's stats count the attack, and checks that memory is back near the baseline. The
//! witness must never see an error.
//!
//! Memory figures:
//! * `heap`: live heap bytes from a counting global allocator (`stats_alloc`; no `unsafe`
//!   here). Exact for this process; the server, the attackers' sockets and the witness all run
//!   in it, so it is an upper bound on the server's share.
//! * `rss`, `vm`: `VmRSS` and `VmSize` from `/proc/self/status`.
//!
//! What is asserted: per-connection bounds while an attack holds connections open (heap,
//! RSS and VmSize for the header-only flood; heap for half-received frames and for peers that
//! never read), and live heap back within 64 KiB of the baseline once the attack is over. RSS
//! is printed but not asserted afterwards: the allocator keeps freed pages for reuse, so RSS
//! does not return to its baseline (after the header-only flood it stays about 4.5 MiB up).
//!
//! The tests take a lock and run one at a time, so no other test's allocations are counted.
//! Run `cargo test -p framewire-server --test hostile -- --nocapture` to see the figures; the
//! README's Reliability table collects them.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::alloc::System;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use framewire_codec::ack::{AckFrame, Hello};
use framewire_codec::DEFAULT_MAX_FRAME_LEN;
use framewire_server::{
    AtCapacity, Connection, ErrorKind, Server, ServerError, ServerHandle, Stats,
    DEFAULT_MAX_CONNECTIONS_PER_IP, DEFAULT_WRITE_BUFFER_LIMIT,
};
use futures::SinkExt;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Runs `body` alone (the memory figures are per process) on a fresh runtime.
fn run<F: Future<Output = ()>>(body: F) {
    run_alone(body);
}

/// As [`run_on_one_thread`], with tokio's clock paused: timers fire as soon as every task
/// waits, so the shipped timeouts (a minute) run in virtual time. Sockets are real: before
/// moving the clock, the runtime takes in what the loopback sockets already hold.
fn run_paused<F: Future<Output = ()>>(body: F) {
    let mut rt = tokio::runtime::Builder::new_current_thread();
    rt.start_paused(true);
    run_alone_on(rt, body);
}

/// As [`run`], on a current-thread runtime: every task takes its turns on one thread, so how
/// many turns other tasks get while one waits does not depend on how the OS schedules threads.
fn run_on_one_thread<F: Future<Output = ()>>(body: F) {
    run_alone_on(tokio::runtime::Builder::new_current_thread(), within(body));
}

const KIB: i64 = 1024;
const MIB: i64 = 1024 * 1024;

/// A memory snapshot: live heap, VmRSS, VmSize, in bytes.
#[derive(Debug, Clone, Copy)]
struct Mem {
    heap: i64,
    rss: i64,
    vm: i64,
}

impl Mem {
    fn now() -> Mem {
        let s = GLOBAL.stats();
        // stats_alloc already counts a realloc's growth in `bytes_allocated` and its shrinking
        // in `bytes_deallocated` (`bytes_reallocated` is the same net change again).
        let heap = s.bytes_allocated as i64 - s.bytes_deallocated as i64;
        let (rss, vm) = proc_memory();
        Mem {
            heap,
            rss: rss as i64,
            vm: vm as i64,
        }
    }

    /// The lowest of 20 samples 2 ms apart: leaves out the transient buffers of a witness
    /// round in flight (the witness pauses 1 ms between rounds).
    async fn settled() -> Mem {
        let mut low = Mem::now();
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let m = Mem::now();
            low = Mem {
                heap: low.heap.min(m.heap),
                rss: low.rss.min(m.rss),
                vm: low.vm.min(m.vm),
            };
        }
        low
    }

    fn since(self, base: Mem) -> Mem {
        Mem {
            heap: self.heap - base.heap,
            rss: self.rss - base.rss,
            vm: self.vm - base.vm,
        }
    }

    fn max(self, other: Mem) -> Mem {
        Mem {
            heap: self.heap.max(other.heap),
            rss: self.rss.max(other.rss),
            vm: self.vm.max(other.vm),
        }
    }

    fn per(self, n: usize) -> Mem {
        let n = n as i64;
        Mem {
            heap: self.heap / n,
            rss: self.rss / n,
            vm: self.vm / n,
        }
    }
}

impl std::fmt::Display for Mem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = |b: i64| b as f64 / 1024.0;
        write!(
            f,
            "heap {:+.1} KiB, rss {:+.1} KiB, vm {:+.1} KiB",
            k(self.heap),
            k(self.rss),
            k(self.vm)
        )
    }
}

/// Samples [`Mem::now`] every 2 ms in a task and keeps the highest value of each field.
struct Peak {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Mem>,
}

impl Peak {
    fn start() -> Peak {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut peak = Mem::now();
            // Bounded: 10,000 samples.
            for _ in 0..10_000 {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                peak = peak.max(Mem::now());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            peak.max(Mem::now())
        });
        Peak { stop, task }
    }

    async fn stop(self) -> Mem {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// A raw TCP connection to the server.
async fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Waits until the server has read at least `n` bytes besides the witness's (bounded: 1000
/// polls, 10 ms apart).
async fn wait_attack_bytes<S>(handle: &ServerHandle<S>, witness: &Witness, n: u64) -> Stats {
    for _ in 0..1000 {
        // Stats first: the witness's count, read afterwards, is at least what the server had
        // received from it when the stats were taken.
        let stats = handle.stats();
        if stats.bytes_in >= witness.bytes_sent() + n {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the server never read the attackers' {n} bytes");
}

/// Oversized length headers: rejected before any allocation, only that connection closes.
#[test]
fn oversized_length_headers_close_only_the_attacker() {
    run(async {
        let server = spawn(Server::builder(), echo).await;
        let witness = Witness::plain(server.addr).await;
        witness.progress(10).await;
        let base = Mem::settled().await;
        let peak = Peak::start();
        let max = DEFAULT_MAX_FRAME_LEN as u32;
        let headers = [max + 1, 0x8000_0000, u32::MAX];
        let mut attacks = 0u64;
        let mut announced = 0u64;
        for round in 0..10 {
            for len in headers {
                let mut s = raw(server.addr).await;
                let _ = s.write_all(&len.to_be_bytes()).await;
                if round % 2 == 1 {
                    // Some follow the header with payload bytes, as if the frame were real.
                    let _ = s.write_all(&[0xab; 64 * 1024]).await;
                }
                read_until_closed(&mut s).await;
                attacks += 1;
                announced += u64::from(len);
            }
            witness.progress(1).await;
        }
        let stats = wait_for(&server.handle, |s| {
            s.errors.protocol == attacks && s.active == 1
        })
        .await;
        witness.progress(10).await;
        let peak = peak.stop().await.since(base);
        let after = Mem::settled().await.since(base);
        println!(
            "oversized headers: {attacks} attackers announced {} MiB in total; peak growth {peak}; after: {after}",
            announced >> 20
        );
        assert_eq!(stats.accepted, attacks + 1);
        assert_eq!(stats.errors.io + stats.errors.stall_timeout, 0);
        // Nothing of the announced sizes is ever allocated: the peak is the witness's own
        // frames (up to 96 KiB each way) and the attackers' sockets.
        assert!(peak.heap < 2 * MIB, "peak heap growth {peak}");
        assert!(
            after.heap < 64 * KIB,
            "heap not back near baseline: {after}"
        );
        let rounds = witness.finish().await;
        println!("  witness: {rounds} correct echoes, no error");
        server.stop().await;
    });
}

/// Many connections each announce a maximal frame and send nothing more: each costs what it
/// sent (a read buffer), not what it announced.
#[test]
fn header_only_flood_costs_bytes_received_not_bytes_announced() {
    const FLOOD: usize = 400;
    run(async {
        // No stall timeout: the attackers stay until they leave (the slowloris test shows the
        // timeout ending such connections). No per-IP cap: all 400 come from 127.0.0.1.
        let builder = Server::builder()
            .stall_timeout(None)
            .max_connections_per_ip(None);
        let server = spawn(builder, echo).await;
        let witness = Witness::plain(server.addr).await;
        witness.progress(10).await;
        let mut attackers = Vec::with_capacity(FLOOD);
        let base = Mem::settled().await;
        let announced = DEFAULT_MAX_FRAME_LEN as u32;
        for i in 0..FLOOD {
            let mut s = raw(server.addr).await;
            s.write_all(&announced.to_be_bytes()).await.unwrap();
            attackers.push(s);
            if i % 50 == 49 {
                witness.progress(1).await;
            }
        }
        wait_attack_bytes(&server.handle, &witness, 4 * FLOOD as u64).await;
        // Let the last handlers finish the poll that read their header.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let held = Mem::now().since(base);
        let stats = server.handle.stats();
        assert_eq!(stats.active, FLOOD as u64 + 1, "{stats:?}");
        let per = held.per(FLOOD);
        println!(
            "header-only flood: {FLOOD} connections announcing {} MiB each ({} GiB in total)",
            announced >> 20,
            (u64::from(announced) * FLOOD as u64) >> 30
        );
        println!("  held while open: {held}");
        println!("  per connection:  {per}");
        // Generous bound: 64 KiB per connection, against 8 MiB announced.
        for (what, v) in [("heap", per.heap), ("rss", per.rss), ("vm", per.vm)] {
            assert!(v < 64 * KIB, "{what} per connection {v} B: {per}");
        }
        witness.progress(20).await;
        // The attackers leave (end of stream inside a frame: a protocol error each).
        drop(attackers);
        let stats = wait_for(&server.handle, |s| {
            s.active == 1 && s.errors.protocol == FLOOD as u64
        })
        .await;
        witness.progress(10).await;
        let after = Mem::settled().await.since(base);
        println!("  after they left: {after}");
        assert_eq!(stats.errors.io, 0);
        // Heap back near baseline (tokio keeps a few small structures sized for the peak).
        assert!(
            after.heap < 64 * KIB,
            "heap not back near baseline: {after}"
        );
        let rounds = witness.finish().await;
        println!("  witness: {rounds} correct echoes, no error");
        server.stop().await;
    });
}

/// Slowloris peers (one byte per interval), half headers and idle hogs are ended by the stall
/// and idle timeouts.
#[test]
fn slowloris_and_idle_hogs_are_ended_by_the_stall_and_idle_timeouts() {
    const DRIP: usize = 20;
    const HALF_HEADER: usize = 10;
    const IDLE: usize = 20;
    run(async {
        let builder = Server::builder()
            .stall_timeout(Some(Duration::from_millis(300)))
            .idle_timeout(Duration::from_millis(400));
        let server = spawn(builder, echo).await;
        let witness = Witness::plain(server.addr).await;
        witness.progress(10).await;
        let base = Mem::settled().await;
        let closed = Arc::new(AtomicU64::new(0));
        let mut attacks = JoinSet::new();
        for _ in 0..DRIP {
            let (addr, closed) = (server.addr, Arc::clone(&closed));
            attacks.spawn(async move {
                // Announce 1000 bytes, then drip one byte every 50 ms; bounded at 2 s of drips,
                // far beyond the 300 ms stall timeout.
                let (mut r, mut w) = raw(addr).await.into_split();
                let _ = w.write_all(&[0, 0, 3, 0xe8, 1]).await;
                let mut buf = [0u8; 64];
                for _ in 0..40 {
                    tokio::select! {
                        _ = r.read(&mut buf) => break,
                        () = tokio::time::sleep(Duration::from_millis(50)) => {
                            if w.write_all(&[1]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                if tokio::time::timeout(Duration::from_millis(100), r.read(&mut buf))
                    .await
                    .is_ok()
                {
                    closed.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for _ in 0..HALF_HEADER {
            let (addr, closed) = (server.addr, Arc::clone(&closed));
            attacks.spawn(async move {
                let mut s = raw(addr).await;
                s.write_all(&[0, 0]).await.unwrap();
                read_until_closed(&mut s).await;
                closed.fetch_add(1, Ordering::Relaxed);
            });
        }
        for _ in 0..IDLE {
            let (addr, closed) = (server.addr, Arc::clone(&closed));
            attacks.spawn(async move {
                let mut s = raw(addr).await;
                read_until_closed(&mut s).await;
                closed.fetch_add(1, Ordering::Relaxed);
            });
        }
        wait_for(&server.handle, |s| s.active as usize > DRIP + IDLE).await;
        witness.progress(20).await;
        while let Some(res) = attacks.join_next().await {
            res.unwrap();
        }
        let stats = wait_for(&server.handle, |s| {
            s.errors.stall_timeout == (DRIP + HALF_HEADER) as u64
                && s.errors.idle_timeout == IDLE as u64
                && s.active == 1
        })
        .await;
        witness.progress(10).await;
        let after = Mem::settled().await.since(base);
        println!(
            "slowloris: {DRIP} drippers + {HALF_HEADER} half headers ended by the stall timeout, \
             {IDLE} idle hogs by the idle timeout; after: {after}"
        );
        assert_eq!(
            closed.load(Ordering::Relaxed),
            (DRIP + HALF_HEADER + IDLE) as u64
        );
        assert_eq!(stats.errors.protocol + stats.errors.io, 0);
        assert!(
            after.heap < 64 * KIB,
            "heap not back near baseline: {after}"
        );
        let rounds = witness.finish().await;
        println!("  witness: {rounds} correct echoes, no error");
        server.stop().await;
    });
}

/// Peers that close (FIN) or reset (RST, `SO_LINGER` 0) in the middle of a frame; the memory
/// a half-received frame held is released.
#[test]
fn disconnects_and_resets_mid_frame_release_what_they_held() {
    const FIN: usize = 20;
    const RST: usize = 16;
    const PARTIAL: usize = 1024 * 1024;
    run(async {
        let server = spawn(Server::builder().stall_timeout(None), echo).await;
        let witness = Witness::plain(server.addr).await;
        witness.progress(10).await;
        let base = Mem::settled().await;

        // FIN inside the header, and inside the payload.
        for i in 0..FIN {
            let mut s = raw(server.addr).await;
            if i % 2 == 0 {
                s.write_all(&[0, 0]).await.unwrap();
            } else {
                s.write_all(&[0, 0, 1, 0]).await.unwrap();
                s.write_all(&[7; 100]).await.unwrap();
            }
            s.shutdown().await.unwrap();
            read_until_closed(&mut s).await;
            if i % 5 == 4 {
                witness.progress(1).await;
            }
        }
        wait_for(&server.handle, |s| s.errors.protocol == FIN as u64).await;
        witness.progress(10).await;

        // RST after 1 MiB of an announced 8 MiB frame: the server holds what arrived.
        let mut resetters = Vec::new();
        let chunk = vec![0x5a; PARTIAL];
        for _ in 0..RST {
            let mut s = raw(server.addr).await;
            s.write_all(&(DEFAULT_MAX_FRAME_LEN as u32).to_be_bytes())
                .await
                .unwrap();
            s.write_all(&chunk).await.unwrap();
            resetters.push(s);
            witness.progress(1).await;
        }
        drop(chunk);
        wait_attack_bytes(&server.handle, &witness, (RST * (4 + PARTIAL)) as u64).await;
        let held = Mem::now().since(base);
        witness.progress(10).await;
        for s in &resetters {
            s.set_zero_linger().unwrap();
        }
        drop(resetters);
        let stats = wait_for(&server.handle, |s| {
            s.errors.protocol + s.errors.io == (FIN + RST) as u64 && s.active == 1
        })
        .await;
        witness.progress(10).await;
        let after = Mem::settled().await.since(base);
        println!(
            "disconnects: {FIN} FIN mid-frame (protocol errors), {RST} RST after {} KiB of a \
             frame (io {} / protocol {} errors)",
            PARTIAL / 1024,
            stats.errors.io,
            stats.errors.protocol - FIN as u64
        );
        println!(
            "  held with {RST} half-received frames: {held} ({} KiB heap per connection)",
            held.heap / RST as i64 / KIB
        );
        println!("  after the resets: {after}");
        // What a half-received frame holds follows the bytes received: the 1 MiB that arrived,
        // in a buffer grown by doubling (at most 2 MiB), never the 8 MiB announced.
        assert!(
            held.heap / (RST as i64) < 2 * MIB + 64 * KIB,
            "held {held} for {RST} connections"
        );
        assert!(
            held.heap / (RST as i64) >= PARTIAL as i64 / 2,
            "the server should hold the bytes it received: {held}"
        );
        assert!(
            after.heap < 64 * KIB,
            "heap not back near baseline: {after}"
        );
        let rounds = witness.finish().await;
        println!("  witness: {rounds} correct echoes, no error");
        server.stop().await;
    });
}

/// 64 KiB, shared: what the pump handler sends.
static CHUNK: [u8; 64 * 1024] = [7; 64 * 1024];

/// Echoes, except that a connection whose first frame is `pump` gets 64 KiB frames until a
/// send fails (bounded: 4096 frames, 256 MiB, far more than any socket buffers hold).
async fn echo_or_pump(mut conn: Connection) -> Result<(), ServerError> {
    let Some(first) = conn.recv().await? else {
        return Ok(());
    };
    if &first[..] == b"pump" {
        for _ in 0..4096 {
            conn.send(&CHUNK[..]).await?;
        }
        return Ok(());
    }
    conn.send(&first).await?;
    echo(conn).await
}

/// Peers that never read while the server writes to them: the write timeout ends them, the
/// memory for each stays bounded by the write buffer limit, other clients are unaffected.
#[test]
fn a_peer_that_never_reads_is_ended_by_the_write_timeout() {
    const STUCK: usize = 8;
    const RESET: usize = 4;
    run(async {
        let builder = Server::builder().write_timeout(Some(Duration::from_millis(500)));
        let server = spawn(builder, echo_or_pump).await;
        let witness = Witness::plain(server.addr).await;
        witness.progress(10).await;
        let base = Mem::settled().await;
        let peak = Peak::start();
        let mut stuck = Vec::new();
        for _ in 0..STUCK + RESET {
            let mut c = client(server.addr).await;
            c.send(bytes::Bytes::from("pump")).await.unwrap();
            stuck.push(c);
        }
        // While the server pushes into full socket buffers, the witness carries on.
        witness.progress(20).await;
        // Some peers reset while the server is (or soon will be) blocked writing to them.
        for c in stuck.drain(STUCK..) {
            c.get_ref().set_zero_linger().unwrap();
        }
        let stats = wait_for(&server.handle, |s| {
            s.errors.write_timeout + s.errors.io == (STUCK + RESET) as u64
        })
        .await;
        witness.progress(20).await;
        let peak = peak.stop().await.since(base);
        drop(stuck);
        let stats_after = wait_for(&server.handle, |s| s.active == 1).await;
        let after = Mem::settled().await.since(base);
        let limit = DEFAULT_WRITE_BUFFER_LIMIT as i64;
        println!(
            "never-reading peers: {STUCK} + {RESET} reset mid-write; write timeouts {}, io errors {}, {} MiB written before they stalled",
            stats.errors.write_timeout,
            stats.errors.io,
            stats.bytes_out >> 20
        );
        println!(
            "  peak growth {peak} ({} KiB heap per stuck connection; write buffer limit {} KiB)",
            peak.heap / (STUCK + RESET) as i64 / KIB,
            limit / KIB
        );
        println!("  after: {after}");
        // Per stuck connection: the queued frames (at most the limit plus one 64 KiB frame,
        // in a buffer that may double), a read buffer, bookkeeping.
        let bound = 2 * (limit + CHUNK.len() as i64) + 32 * KIB;
        assert!(
            peak.heap < (STUCK + RESET) as i64 * bound + 2 * MIB,
            "peak {peak}, bound {bound} B per connection"
        );
        assert!(stats.errors.write_timeout >= STUCK as u64, "{stats:?}");
        assert_eq!(stats_after.errors.handler, (STUCK + RESET) as u64);
        assert_eq!(stats_after.errors.protocol, 0);
        assert!(
            after.heap < 64 * KIB,
            "heap not back near baseline: {after}"
        );
        let rounds = witness.finish().await;
        println!("  witness: {rounds} correct echoes, no error");
        server.stop().await;
    });
}

/// A connection flood beyond `max_connections` with the default [`AtCapacity::Refuse`]: the
/// excess is accepted and closed at once, counted, and the witness (already connected)
/// carries on. The flood comes from 10 addresses (127.0.1.1-10, 20 each), under the default
/// per-IP cap.
#[test]
fn connection_flood_at_capacity_refuse() {
    const CAP: usize = 20;
    const FLOOD: usize = 200;
    run(async {
        let builder = Server::builder().max_connections(CAP);
        let server = spawn(builder, echo).await;
        let witness = Witness::plain(server.addr).await;
        witness.progress(10).await;
        let base = Mem::settled().await;
        let mut flood = Vec::with_capacity(FLOOD);
        for i in 0..FLOOD {
            let source = std::net::Ipv4Addr::new(127, 0, 1, 1 + (i / 20) as u8);
            flood.push(raw_from(source.into(), server.addr).await);
            if i % 20 == 19 {
                witness.progress(1).await;
            }
        }
        let refused = (FLOOD - (CAP - 1)) as u64;
        let stats = wait_for(&server.handle, |s| {
            s.refused_at_capacity == refused && s.active == CAP as u64
        })
        .await;
        let held = Mem::now().since(base);
        witness.progress(20).await;
        // The refused ones were closed at once; the admitted ones are still open.
        let mut closed = 0;
        for s in &mut flood {
            let mut b = [0u8; 1];
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(20), s.read(&mut b)).await {
                assert!(!matches!(r, Ok(1)), "a flooder got data");
                closed += 1;
            }
        }
        drop(flood);
        wait_for(&server.handle, |s| s.active == 1).await;
        witness.progress(10).await;
        let after = Mem::settled().await.since(base);
        println!(
            "connection flood (refuse): {FLOOD} beyond a cap of {CAP}: {} refused, {closed} saw the close; held {held}; after {after}",
            stats.refused_at_capacity
        );
        assert_eq!(closed, refused);
        assert_eq!(stats.accepted, CAP as u64);
        // A newcomer is served once the flood is gone.
        let mut c = client(server.addr).await;
        c.send(bytes::Bytes::from("after")).await.unwrap();
        assert_eq!(next_frame(&mut c).await.as_deref(), Some(&b"after"[..]));
        assert!(
            after.heap < 64 * KIB,
            "heap not back near baseline: {after}"
        );
        let rounds = witness.finish().await;
        println!("  witness: {rounds} correct echoes, no error");
        server.stop().await;
    });
}

/// A connection flood beyond `max_connections` with [`AtCapacity::Wait`]: the excess waits in
/// the listen backlog, idle hogs that got a slot are ended by the idle timeout, and every
/// flooder is eventually served and timed out in turn; the witness carries on throughout.
#[test]
fn connection_flood_at_capacity_wait() {
    const CAP: usize = 20;
    const FLOOD: usize = 100;
    run(async {
        let builder = Server::builder()
            .max_connections(CAP)
            .at_capacity(AtCapacity::Wait)
            .max_connections_per_ip(None)
            .idle_timeout(Duration::from_millis(300));
        let server = spawn(builder, echo).await;
        let witness = Witness::plain(server.addr).await;
        witness.progress(10).await;
        let base = Mem::settled().await;
        let mut flood = JoinSet::new();
        for _ in 0..FLOOD {
            let addr = server.addr;
            flood.spawn(async move {
                let mut s = raw(addr).await;
                read_until_closed(&mut s).await;
            });
        }
        wait_for(&server.handle, |s| s.active == CAP as u64).await;
        witness.progress(20).await;
        while let Some(res) = flood.join_next().await {
            res.unwrap();
            if flood.len() % 25 == 0 {
                witness.progress(1).await;
            }
        }
        let stats = wait_for(&server.handle, |s| {
            s.errors.idle_timeout == FLOOD as u64 && s.active == 1
        })
        .await;
        witness.progress(10).await;
        let after = Mem::settled().await.since(base);
        println!(
            "connection flood (wait): {FLOOD} beyond a cap of {CAP}: all {} accepted in turn, {} idle timeouts; after {after}",
            stats.accepted - 1,
            stats.errors.idle_timeout
        );
        assert_eq!(stats.accepted, FLOOD as u64 + 1);
        assert_eq!(stats.refused, 0);
        assert!(
            after.heap < 64 * KIB,
            "heap not back near baseline: {after}"
        );
        let rounds = witness.finish().await;
        println!("  witness: {rounds} correct echoes, no error");
        server.stop().await;
    });
}

fn hello(window: u32) -> Bytes {
    Bytes::copy_from_slice(&Hello::new(window, 1 << 20, 1 << 20).to_bytes())
}

fn data(seq: u64) -> Bytes {
    AckFrame::Data {
        seq,
        redelivery: false,
        payload: &b"x"[..],
    }
    .to_bytes()
}

fn ack(through: u64) -> Bytes {
    AckFrame::<&[u8]>::Ack { through }.to_bytes()
}

/// One ack-mode attack: the frame payloads the attacker sends, in order.
fn ack_attack(kind: usize) -> (&'static str, Vec<Bytes>) {
    match kind {
        0 => ("plain frame instead of HELLO", vec![Bytes::from("hello")]),
        1 => (
            "bogus ACK for a message never sent",
            vec![hello(4), ack(99)],
        ),
        2 => ("DATA out of sequence", vec![hello(4), data(7)]),
        // Our window of 1 and no ACKs: the server's echo of 2 waits for room, takes nothing
        // more, and DATA beyond its granted window of 4 arrives.
        3 => ("window overrun", {
            let mut v = vec![hello(1)];
            v.extend((1..=12).map(data));
            v
        }),
        4 => ("second HELLO", vec![hello(4), hello(4)]),
        5 => ("HELLO granting a window of 0", vec![hello(0)]),
        6 => (
            "unknown frame kind",
            vec![hello(4), Bytes::from_static(&[0x7f, 1, 2])],
        ),
        _ => (
            "ACK going backwards",
            vec![hello(4), data(1), ack(1), ack(0)],
        ),
    }
}

/// Ack-mode protocol violations close only the violator; a peer that never sends its HELLO is
/// ended by the idle timeout, one that never acknowledges by the write timeout.
#[test]
fn ack_mode_violations_close_only_the_violator() {
    const EACH: usize = 5;
    const KINDS: usize = 8;
    run(async {
        let builder = Server::builder()
            .ack_mode(4)
            .idle_timeout(Duration::from_millis(400))
            .write_timeout(Some(Duration::from_millis(400)));
        let server = spawn(builder, echo).await;
        let witness = Witness::ack(server.addr, 4).await;
        witness.progress(10).await;
        let base = Mem::settled().await;
        for round in 0..EACH {
            for kind in 0..KINDS {
                let (what, frames) = ack_attack(kind);
                let mut c = client(server.addr).await;
                for f in frames {
                    if c.feed(f).await.is_err() {
                        break;
                    }
                }
                let _ = SinkExt::<Bytes>::flush(&mut c).await;
                // The server's HELLO (and echoes) may come first; then the close.
                let mut frames_seen = 0;
                while next_frame(&mut c).await.is_some() {
                    frames_seen += 1;
                    assert!(frames_seen <= 16, "{what}: the server kept talking");
                }
                if round == 0 {
                    println!("  {what}: closed after {frames_seen} frames from the server");
                }
            }
            witness.progress(1).await;
        }
        let violations = (EACH * KINDS) as u64;
        // Silent peers: no HELLO ever (idle timeout); HELLO and a message, never an ACK for
        // the echoes (write timeout: the window stays full).
        let mut silent = Vec::new();
        let mut no_acks = Vec::new();
        for _ in 0..EACH {
            silent.push(client(server.addr).await);
            let mut c = client(server.addr).await;
            c.send(hello(1)).await.unwrap();
            c.send(data(1)).await.unwrap();
            c.send(data(2)).await.unwrap();
            no_acks.push(c);
        }
        witness.progress(20).await;
        for c in silent.iter_mut().chain(no_acks.iter_mut()) {
            while next_frame(c).await.is_some() {}
        }
        drop((silent, no_acks));
        let stats = wait_for(&server.handle, |s| {
            s.errors.protocol == violations
                && s.errors.idle_timeout == EACH as u64
                && s.errors.write_timeout == EACH as u64
                && s.active == 1
        })
        .await;
        witness.progress(10).await;
        let after = Mem::settled().await.since(base);
        println!(
            "ack-mode violations: {violations} protocol errors, {} idle timeouts (no HELLO), {} write timeouts (no ACKs); after {after}",
            stats.errors.idle_timeout, stats.errors.write_timeout
        );
        assert_eq!(stats.errors.io, 0);
        assert!(
            after.heap < 64 * KIB,
            "heap not back near baseline: {after}"
        );
        let rounds = witness.finish().await;
        println!("  witness: {rounds} correct echoes, no error");
        server.stop().await;
    });
}

/// Regression: in ack mode, a handler waiting in `send` for room in the peer's window read the
/// socket with the idle clock running, so a peer that never acknowledged got an idle timeout
/// (and, with an idle timeout shorter than the write timeout, the send failed with
/// `IdleTimeout`). The idle clock runs only while the handler waits in `recv`; a full window
/// is the write timeout's business, as documented on `Connection::send`.
#[test]
fn ack_send_waiting_for_window_room_gets_the_write_timeout_not_the_idle_timeout() {
    run(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let builder = Server::builder()
            .ack_mode(4)
            .idle_timeout(Duration::from_millis(100))
            .write_timeout(Some(Duration::from_millis(500)))
            .state(tx);
        let server = spawn(
            builder,
            |mut conn: Connection<tokio::sync::mpsc::UnboundedSender<ErrorKind>>| async move {
                for i in 0..3u8 {
                    if let Err(e) = conn.send([i]).await {
                        let _ = conn.state().send(e.kind());
                        return Err(e);
                    }
                }
                Ok::<_, ServerError>(())
            },
        )
        .await;
        // HELLO granting a window of 1, then silence: no ACK ever.
        let mut c = client(server.addr).await;
        c.send(hello(1)).await.unwrap();
        let kind = rx.recv().await.expect("the handler reports its error");
        assert_eq!(kind, ErrorKind::WriteTimeout);
        let stats = wait_for(&server.handle, |s| s.active == 0).await;
        assert_eq!(
            (stats.errors.write_timeout, stats.errors.idle_timeout),
            (1, 0)
        );
        drop(c);
        server.stop().await;
    });
}

/// `echo_server --mirror`'s handler (a burst answered with one flush), counting the
/// zero-length frames it serves in the server state.
async fn counting_mirror(mut conn: Connection<Arc<AtomicU64>>) -> Result<(), ServerError> {
    let served = Arc::clone(conn.state());
    while let Some(frame) = conn.recv().await? {
        let mut empty = u64::from(frame.is_empty());
        conn.feed(&frame).await?;
        while let Some(more) = conn.try_recv()? {
            empty += u64::from(more.is_empty());
            conn.feed(&more).await?;
        }
        served.fetch_add(empty, Ordering::Relaxed);
        conn.flush().await?;
    }
    Ok(())
}

/// `counting_mirror` forwarding runs of frames (`recv_run`/`feed_run`).
async fn counting_run_mirror(mut conn: Connection<Arc<AtomicU64>>) -> Result<(), ServerError> {
    let served = Arc::clone(conn.state());
    let empty =
        |run: &framewire_codec::FrameRun| run.iter().filter(|f| f.is_empty()).count() as u64;
    while let Some(run) = conn.recv_run().await? {
        let mut n = empty(&run);
        conn.feed_run(run).await?;
        while let Some(more) = conn.try_recv_run()? {
            n += empty(&more);
            conn.feed_run(more).await?;
        }
        served.fetch_add(n, Ordering::Relaxed);
        conn.flush().await?;
    }
    Ok(())
}

/// One flooding connection: a thread writes zero-length frames (64 KiB of zero bytes per
/// write: 16,384 frames) as fast as the socket takes them, another reads and discards the
/// echoes. Both end when the returned stream is shut down.
fn zero_length_flooder(
    addr: SocketAddr,
) -> (std::net::TcpStream, [std::thread::JoinHandle<()>; 2]) {
    use std::io::{Read, Write};
    let stream = std::net::TcpStream::connect(addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = stream.try_clone().unwrap();
    let write = std::thread::spawn(move || {
        let zeros = vec![0u8; 64 * 1024];
        // Bounded: ends at the first error (the test shuts the socket down), or after 1 TiB.
        for _ in 0..(1u64 << 24) {
            if writer.write_all(&zeros).is_err() {
                break;
            }
        }
    });
    let read = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    (stream, [write, read])
}

/// Fairness: while 4 connections pipeline zero-length frames as fast as they can, a
/// well-behaved client's round trips still get through, and between the start and the end of
/// each round trip the server serves only a bounded number of flood frames. The bound is
/// structural (frames, not time): each connection takes at most 128 frames per scheduling
/// turn (tokio's cooperative budget), so a round trip, which needs a few turns of the
/// runtime, sees at most a few turns of each flooder. Without the budget a flooder's turn
/// lasts as long as it has bytes buffered (one 64 KiB read alone holds 16,384 frames).
///
/// The server, the witness and the flooders' server-side tasks share one runtime thread, so
/// the count depends on the scheduler's turns only, not on how the OS schedules threads.
///
/// The bound (8,192, measured 1,016) also rests on a tokio detail: the current-thread
/// scheduler defers a task that used up its budget behind the next IO poll. A tokio upgrade
/// that changes how yielded tasks are requeued could move the measured figure; the 8x margin
/// is there for that, and a failure here after such an upgrade means "look at the scheduler"
/// before "the read loop lost its budget".
#[test]
fn zero_length_flood_does_not_starve_a_well_behaved_client() {
    // Flood frames the server may serve during one witness round trip: 4 flooders x 128
    // frames per turn x 16 turns each. Measured here: 1,016 in every round (two turns of
    // each flooder, 127 frames a turn) with the budget; without it the witness did not get a
    // single round trip through within the test timeout (on two worker threads: a median of
    // about 600,000 flood frames per round trip).
    zero_length_flood_with(counting_mirror, FLOODERS as u64 * 128 * 16);
}

#[test]
fn zero_length_flood_forwarded_as_runs_does_not_starve_a_well_behaved_client() {
    // With runs, one unit of the budget covers 16 frames: 4 flooders x 128 units per turn x
    // 16 frames x 4 turns each. Measured here: a median of 16,384 and at most 16,408 per
    // round trip (two turns of each flooder); with each run charged as one unit instead,
    // runs of 128 frames make it 131,072; never yielding, the witness waits for the flood.
    zero_length_flood_with(counting_run_mirror, FLOODERS as u64 * 128 * 16 * 4);
}

const FLOODERS: usize = 4;

fn zero_length_flood_with<H, F>(handler: H, bound: u64)
where
    H: Fn(Connection<Arc<AtomicU64>>) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Result<(), ServerError>> + Send + 'static,
{
    const ROUNDS: usize = 200;
    run_on_one_thread(async move {
        let served = Arc::new(AtomicU64::new(0));
        let server = spawn(Server::builder().state(Arc::clone(&served)), handler).await;
        let flooders: Vec<_> = (0..FLOODERS)
            .map(|_| zero_length_flooder(server.addr))
            .collect();
        // The flood is on: many turns' worth of frames served before the witness starts.
        for _ in 0..1000 {
            if served.load(Ordering::Relaxed) >= 1_000_000 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let flood_start = served.load(Ordering::Relaxed);
        assert!(
            flood_start >= 1_000_000,
            "the flood did not get going: {flood_start} frames"
        );
        let mut witness = client(server.addr).await;
        let mut during = Vec::with_capacity(ROUNDS);
        for i in 0..ROUNDS {
            let ping = Bytes::from(vec![i as u8; 100]);
            let before = served.load(Ordering::Relaxed);
            witness.send(ping.clone()).await.unwrap();
            assert_eq!(next_frame(&mut witness).await, Some(ping), "round {i}");
            during.push(served.load(Ordering::Relaxed) - before);
        }
        let flood_total = served.load(Ordering::Relaxed) - flood_start;
        for (stream, _) in &flooders {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        for (_, threads) in flooders {
            for t in threads {
                t.join().unwrap();
            }
        }
        server.stop().await;
        during.sort_unstable();
        let worst = during[ROUNDS - 1];
        println!(
            "zero-length flood, {FLOODERS} flooders: {flood_total} flood frames served during {ROUNDS} witness round trips; flood frames per round trip: median {}, p99 {}, worst {worst} (bound {bound})",
            during[ROUNDS / 2],
            during[ROUNDS * 99 / 100],
        );
        // The flood was served all along, not shut out in the witness's favour.
        assert!(
            flood_total >= ROUNDS as u64,
            "the flood stalled: {flood_total} frames"
        );
        assert!(
            worst <= bound,
            "a round trip waited for {worst} flood frames (bound {bound})"
        );
    });
}

/// The open-files soft limit of this process (`/proc/self/limits`), if it can be read.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The shipped defaults against an idle flood from one address: 10,000 connections from
/// 127.0.0.1 that send nothing (fewer if the open-files limit is lower: the test process holds
/// the client ends too). The default per-IP cap admits 64 of them and refuses the rest at
/// once; a newcomer from 127.0.0.2 is served, and one more from 127.0.0.1 is refused at once
/// (end of stream, not silence).
#[test]
fn defaults_an_idle_flood_from_one_address_does_not_lock_out_a_newcomer() {
    const WANTED: usize = 10_000;
    // Room for the server's ends of the admitted connections and the test's own descriptors:
    // 1,000 spare, or half the limit where it is low (a desktop's usual soft limit of 1,024
    // still floods with 512, well above the 64 the per-IP cap admits).
    let flood = open_files_limit().map_or(WANTED, |limit| {
        WANTED.min(limit.saturating_sub(1_000.min(limit / 2)))
    });
    assert!(
        flood > 2 * DEFAULT_MAX_CONNECTIONS_PER_IP,
        "open-files limit too low: {flood}"
    );
    run(async move {
        let server = spawn(Server::builder(), echo).await;
        let addr = server.addr;
        let one = std::net::IpAddr::from([127, 0, 0, 1]);
        let mut idle = Vec::with_capacity(flood);
        let mut connecting = JoinSet::new();
        // 64 connects at a time: well below the listen backlog, so no SYN is dropped.
        for i in 0..flood {
            if connecting.len() >= 64 {
                idle.push(connecting.join_next().await.unwrap().unwrap());
            }
            connecting.spawn(raw_from(one, addr));
            if i % 1000 == 999 {
                tokio::task::yield_now().await;
            }
        }
        while let Some(s) = connecting.join_next().await {
            idle.push(s.unwrap());
        }
        let refused = (flood - DEFAULT_MAX_CONNECTIONS_PER_IP) as u64;
        let stats = wait_for(&server.handle, |s| s.refused_per_ip == refused).await;
        assert_eq!(stats.accepted, DEFAULT_MAX_CONNECTIONS_PER_IP as u64);
        assert_eq!(stats.active, DEFAULT_MAX_CONNECTIONS_PER_IP as u64);
        // A newcomer from another address is served.
        let mut newcomer = client_from([127, 0, 0, 2].into(), addr).await;
        newcomer.send(Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(
            next_frame(&mut newcomer).await.as_deref(),
            Some(&b"hello"[..])
        );
        // One more from the flooding address gets a prompt refusal: end of stream.
        let mut late = client_from(one, addr).await;
        assert!(closed_by_server(&mut late).await);
        let stats = server.handle.stats();
        println!(
            "defaults, idle flood: {flood} connections from 127.0.0.1 (wanted {WANTED}): {} admitted, {} refused at once; a newcomer from 127.0.0.2 was served",
            DEFAULT_MAX_CONNECTIONS_PER_IP, stats.refused_per_ip
        );
        assert_eq!(stats.refused_per_ip, refused + 1);
        drop(idle);
        server.stop().await;
    });
}

/// The shipped defaults against drips, in virtual time: a peer sending complete 5-byte frames
/// (header + 1 byte) at 1 byte per second gets each frame echoed, yet spends 4 s of every 5
/// inside a frame, below the default minimum receive rate; it runs out of the 30 s stall
/// allowance after about 7 frames and is closed with a stall timeout. A silent peer is closed
/// by the default idle timeout. (Without the minimum rate the dripping peer was never
/// closed: each frame alone finishes well within the stall timeout.)
#[test]
fn defaults_close_a_peer_dripping_complete_frames_and_a_silent_one() {
    run_paused(async {
        let server = spawn(Server::builder(), echo).await;
        let mut silent = raw(server.addr).await;
        let mut dripper = raw(server.addr).await;
        let frame = [0, 0, 0, 1, b'x'];
        let mut echoed = 0u64;
        let mut buf = [0u8; 64];
        let mut pending = 0usize;
        // Bounded: 60 frames would be 300 s of dripping; the server closes it long before.
        'drip: for _ in 0..60 {
            for &byte in &frame {
                if dripper.write_all(&[byte]).await.is_err() {
                    break 'drip;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                // Count the echoes that arrived meanwhile; stop at end of stream or reset.
                loop {
                    match tokio::time::timeout(Duration::ZERO, dripper.read(&mut buf)).await {
                        Err(_) => break,
                        Ok(Ok(0)) | Ok(Err(_)) => break 'drip,
                        Ok(Ok(n)) => {
                            pending += n;
                            echoed += (pending / frame.len()) as u64;
                            pending %= frame.len();
                        }
                    }
                }
            }
        }
        wait_for(&server.handle, |s| s.errors.stall_timeout == 1).await;
        println!("defaults, dripping complete 5-byte frames at 1 byte/s: closed by the stall allowance after {echoed} frames echoed");
        assert!(
            (5..=9).contains(&echoed),
            "{echoed} frames echoed before the close"
        );
        read_until_closed(&mut silent).await;
        let stats = wait_for(&server.handle, |s| s.errors.idle_timeout == 1).await;
        assert_eq!(stats.errors.stall_timeout, 1, "{stats:?}");
        assert_eq!(stats.frames_in, echoed, "{stats:?}");
        server.stop().await;
    });
}
