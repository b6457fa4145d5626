//! The load-generating modes, each written once against [`ClientImpl`].

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::task::{JoinHandle, JoinSet};

use super::args::{ClientKind, Mode, RunOpts};
use super::client::{
    connect, source_addr, ClientImpl, CodecClient, ConnOpts, FrameRx, FrameTx, FramewireAckClient,
    FramewireClient, RawClient, RawTlsClient, Target, TokioUtilClient,
};
use super::error::LoadgenError;
use super::report::{new_histogram, CpuWindow, LatencySummary, MemoryGrowth, ProcMem, Record};

/// Extra time a run may take beyond `--duration` (connection set-up, draining, memory
/// settling) before it is abandoned as hung.
pub const HARD_GRACE: Duration = Duration::from_secs(90);
/// How long the one-way stream waits for the server to drain and close after the client
/// finished sending.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection's echo check in `conns`/`flood` may take.
pub const ECHO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections being opened (or checked) at the same time in `conns` and `flood`; well below
/// the listen backlog of 1024 so no SYN is dropped and retried a second later.
pub const CONNECT_CONCURRENCY: usize = 64;
/// Progress lines start after this long, then come once a second.
pub const PROGRESS_AFTER: Duration = Duration::from_secs(3);
/// Pause after `conns` echoed on every connection, before reading the server's memory again.
const ECHO_SETTLE: Duration = Duration::from_millis(300);
/// About this many bytes of frames are written per flush in `stream` by default: large writes,
/// so the raw client is the physical limit and not a syscall-per-frame limit.
const STREAM_BATCH_BYTES: usize = 256 * 1024;

/// Runs one load-generating mode with the client implementation `opts.client`, bounded by
/// `opts.duration` plus [`HARD_GRACE`].
///
/// # Errors
/// Connection failures, a server that closes early or misbehaves, [`LoadgenError::Timeout`] if
/// the run hangs, [`LoadgenError::Proc`] if `--pid` cannot be read.
pub async fn run(opts: &RunOpts) -> Result<Record, LoadgenError> {
    let limit = opts.duration + HARD_GRACE;
    let c = conn_opts(opts)?;
    let fut = async {
        match opts.client {
            ClientKind::Codec => run_with::<CodecClient>(opts, &c).await,
            ClientKind::TokioUtil => run_with::<TokioUtilClient>(opts, &c).await,
            ClientKind::Raw if c.tls.is_some() => run_with::<RawTlsClient>(opts, &c).await,
            ClientKind::Raw => run_with::<RawClient>(opts, &c).await,
            ClientKind::Framewire => run_with::<FramewireClient>(opts, &c).await,
            ClientKind::FramewireAck => run_with::<FramewireAckClient>(opts, &c).await,
        }
    };
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| LoadgenError::Timeout {
            millis: limit.as_millis(),
            what: "the whole run",
        })?
}

async fn run_with<C: ClientImpl>(o: &RunOpts, c: &ConnOpts) -> Result<Record, LoadgenError> {
    let mut rec = match o.mode {
        Mode::Ping => ping::<C>(o, c).await?,
        Mode::Pipeline => pipeline::<C>(o, c).await?,
        Mode::Stream => stream::<C>(o, c).await?,
        Mode::Conns => conns::<C>(o, c).await?,
        Mode::Flood => flood::<C>(o, c).await?,
        Mode::Zeros => zeros(o).await?,
        Mode::Setup => setup(o).await?,
        Mode::Burst => burst::<C>(o, c).await?,
    };
    rec.label = o.label.clone();
    rec.mode = o.mode.name().to_owned();
    rec.client = C::NAME.to_owned();
    rec.addr = o.addr.to_string();
    rec.frame_size = o.size as u64;
    rec.window = (o.client == ClientKind::FramewireAck).then_some(o.window);
    Ok(rec)
}

/// The per-connection settings of `o` (the TLS configuration read once, here).
fn conn_opts(o: &RunOpts) -> Result<ConnOpts, LoadgenError> {
    Ok(ConnOpts {
        window: o.window,
        // Only the one-way stream and burst run against a sink.
        echo: !matches!(o.mode, Mode::Stream | Mode::Burst) || o.echo,
        shared_payload: o.shared_payload,
        feed_each: o.feed_each,
        tls: o
            .tls
            .as_deref()
            .map(super::tls::client_config)
            .transpose()?,
    })
}

/// Opens connection `index` of a run with client `C`, every frame carrying `body`.
async fn open_conn<C: ClientImpl>(
    o: &RunOpts,
    c: &ConnOpts,
    index: usize,
    body: Bytes,
) -> io::Result<(C::Tx, C::Rx)> {
    C::open(Target {
        addr: o.addr,
        source: source_addr(o.addr, index, o.sources),
        payload: body,
        opts: c.clone(),
    })
    .await
}

/// A payload of `size` bytes with a recognisable pattern.
pub fn payload(size: usize) -> Bytes {
    (0..size)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Frames in the first `stream` batch (or fewer, if the batch is smaller): small, so a slow
/// client (ack mode with window 1 waits one round trip per frame) does not overrun a short
/// `--duration` before its speed is known. Batches then double up to the full batch.
pub const FIRST_STREAM_BATCH: usize = 16;

/// The next `stream` batch after one of `batch` frames took `took` with `remaining` left before
/// the end: double the last one, at most `max_batch`, and no more frames than fit in
/// `remaining` at the speed just measured (at least one). So every client's last batch ends
/// about when the duration does, however slow each frame is.
pub fn next_batch(batch: usize, max_batch: usize, took: Duration, remaining: Duration) -> usize {
    let grown = batch.saturating_mul(2).min(max_batch);
    let per_frame = took.as_nanos() / batch.max(1) as u128;
    if per_frame == 0 {
        return grown.max(1);
    }
    let fit = usize::try_from(remaining.as_nanos() / per_frame).unwrap_or(usize::MAX);
    grown.min(fit).max(1)
}

/// Frames per `stream` flush by default: about 256 KiB worth, at least one.
pub fn default_batch(size: usize) -> usize {
    (STREAM_BATCH_BYTES / (size + 4)).clamp(1, super::args::MAX_BATCH)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Prints a progress line every second once a run has lasted [`PROGRESS_AFTER`].
fn progress(enabled: bool, counter: Arc<AtomicU64>, what: &'static str) -> Option<JoinHandle<()>> {
    if !enabled {
        return None;
    }
    Some(tokio::spawn(async move {
        let start = Instant::now();
        tokio::time::sleep(PROGRESS_AFTER).await;
        let mut last = counter.load(Ordering::Relaxed);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = counter.load(Ordering::Relaxed);
            eprintln!(
                "  [{:>5.1} s] {now} {what} ({} in the last second)",
                start.elapsed().as_secs_f64(),
                now.saturating_sub(last)
            );
            last = now;
        }
    }))
}

struct ProgressGuard(Option<JoinHandle<()>>);

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// Receives until `want` replies arrived; returns how many arrived (at least `want`).
async fn expect_replies<R: FrameRx>(
    rx: &mut R,
    want: u64,
    conn: usize,
    done: u64,
    progress: Option<&AtomicU64>,
) -> Result<u64, LoadgenError> {
    let mut got = 0u64;
    while got < want {
        let n = rx.recv().await?;
        if n == 0 {
            return Err(LoadgenError::Closed {
                conn,
                frames: done + got,
                expected: want - got,
            });
        }
        got += n as u64;
        if let Some(counter) = progress {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    Ok(got)
}

async fn ping<C: ClientImpl>(o: &RunOpts, c: &ConnOpts) -> Result<Record, LoadgenError> {
    let (mut tx, mut rx) = open_conn::<C>(o, c, 0, payload(o.size)).await?;
    let mut hist = new_histogram()?;
    let counter = Arc::new(AtomicU64::new(0));
    let _progress = ProgressGuard(progress(o.progress, counter.clone(), "round trips"));
    let cpu = CpuWindow::start(o.pid)?;
    let start = Instant::now();
    let end = start + o.duration;
    let mut frames = 0u64;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        tx.send(1).await?;
        expect_replies(&mut rx, 1, 0, frames, None).await?;
        hist.saturating_record(nanos(t0.elapsed()));
        frames += 1;
        counter.store(frames, Ordering::Relaxed);
        if let Some(pause) = o.interval {
            tokio::time::sleep(pause).await;
        }
    }
    let rec = measured(start, &cpu, 1, 1, frames, &hist)?;
    tx.finish().await?;
    Ok(rec)
}

async fn pipeline<C: ClientImpl>(o: &RunOpts, c: &ConnOpts) -> Result<Record, LoadgenError> {
    let body = payload(o.size);
    let mut conns = Vec::with_capacity(o.conns);
    for i in 0..o.conns {
        conns.push(open_conn::<C>(o, c, i, body.clone()).await?);
    }
    let counter = Arc::new(AtomicU64::new(0));
    let _progress = ProgressGuard(progress(o.progress, counter.clone(), "replies"));
    let cpu = CpuWindow::start(o.pid)?;
    let start = Instant::now();
    let end = start + o.duration;
    let mut tasks = JoinSet::new();
    for (i, (tx, rx)) in conns.into_iter().enumerate() {
        tasks.spawn(pipeline_conn(i, tx, rx, o.depth, end, counter.clone()));
    }
    timed_record(tasks, start, cpu, o.conns, o.depth).await
}

/// Joins tasks that each return a count and a latency histogram, and makes the record of a
/// run that started at `start`.
async fn timed_record(
    mut tasks: JoinSet<Result<(u64, Histogram<u64>), LoadgenError>>,
    start: Instant,
    cpu: CpuWindow,
    conns: usize,
    depth: usize,
) -> Result<Record, LoadgenError> {
    let mut frames = 0u64;
    let mut hist = new_histogram()?;
    while let Some(joined) = tasks.join_next().await {
        let (n, h) = joined.map_err(|e| io::Error::other(e.to_string()))??;
        frames += n;
        hist.add(&h)
            .map_err(|e| LoadgenError::args(format!("histogram merge: {e}")))?;
    }
    measured(start, &cpu, conns, depth, frames, &hist)
}

/// The record of a timed run that started at `start` and ends now: `frames` over the time
/// since, the latency percentiles of `hist` (none if it is empty), and the CPU time of `cpu`.
fn measured(
    start: Instant,
    cpu: &CpuWindow,
    conns: usize,
    depth: usize,
    frames: u64,
    hist: &Histogram<u64>,
) -> Result<Record, LoadgenError> {
    let elapsed = start.elapsed();
    let (client_cpu, server_cpu) = cpu.end()?;
    Ok(Record {
        conns: conns as u64,
        depth: depth as u64,
        elapsed_s: elapsed.as_secs_f64(),
        frames,
        latency: LatencySummary::from_histogram(hist),
        client_cpu_s: Some(client_cpu),
        server_cpu_s: server_cpu,
        ..Record::default()
    })
}

/// One pipelined connection: `depth` frames in flight until `end`, then drained.
async fn pipeline_conn<T: FrameTx, R: FrameRx>(
    conn: usize,
    mut tx: T,
    mut rx: R,
    depth: usize,
    end: Instant,
    counter: Arc<AtomicU64>,
) -> Result<(u64, Histogram<u64>), LoadgenError> {
    let mut hist = new_histogram()?;
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(depth);
    let now = Instant::now();
    tx.send(depth).await?;
    sent_at.extend(std::iter::repeat_n(now, depth));
    let mut done = 0u64;
    while !sent_at.is_empty() {
        let n = rx.recv().await?;
        if n == 0 {
            return Err(LoadgenError::Closed {
                conn,
                frames: done,
                expected: sent_at.len() as u64,
            });
        }
        let now = Instant::now();
        // More replies than requests would be the server's bug; they are counted, not timed.
        for _ in 0..n {
            if let Some(t) = sent_at.pop_front() {
                hist.saturating_record(nanos(now - t));
            }
        }
        done += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
        if now < end {
            tx.send(n).await?;
            sent_at.extend(std::iter::repeat_n(now, n));
        }
    }
    tx.finish().await?;
    Ok((done, hist))
}

async fn stream<C: ClientImpl>(o: &RunOpts, c: &ConnOpts) -> Result<Record, LoadgenError> {
    let (mut tx, mut rx) = open_conn::<C>(o, c, 0, payload(o.size)).await?;
    let max_batch = o.batch.unwrap_or_else(|| default_batch(o.size));
    let sent_counter = Arc::new(AtomicU64::new(0));
    let recv_counter = Arc::new(AtomicU64::new(0));
    let shown = if o.echo { &recv_counter } else { &sent_counter };
    let _progress = ProgressGuard(progress(
        o.progress,
        shown.clone(),
        if o.echo {
            "frames echoed"
        } else {
            "frames sent"
        },
    ));
    // Replies are always drained, so a one-way run against an echo server cannot deadlock.
    let rc = recv_counter.clone();
    let reader = tokio::spawn(async move {
        loop {
            let n = rx.recv().await?;
            if n == 0 {
                return Ok::<Instant, io::Error>(Instant::now());
            }
            rc.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    let cpu = CpuWindow::start(o.pid)?;
    let start = Instant::now();
    let end = start + o.duration;
    let mut sent = 0u64;
    let mut batch = max_batch.min(FIRST_STREAM_BATCH);
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        tx.send(batch).await?;
        sent += batch as u64;
        sent_counter.store(sent, Ordering::Relaxed);
        let now = Instant::now();
        batch = next_batch(
            batch,
            max_batch,
            now - t0,
            end.saturating_duration_since(now),
        );
    }
    tx.finish().await?;
    let sent_done = Instant::now();
    // The server closes once it has read (sink) or echoed (echo) everything; that moment ends
    // the measurement, so bytes still in socket buffers are not counted as delivered.
    let closed_at = match tokio::time::timeout(DRAIN_TIMEOUT, reader).await {
        Ok(joined) => Some(joined.map_err(|e| io::Error::other(e.to_string()))??),
        Err(_) if o.echo => {
            return Err(LoadgenError::Timeout {
                millis: DRAIN_TIMEOUT.as_millis(),
                what: "the echo server to return the last frames and close",
            })
        }
        Err(_) => None,
    };
    let frames = if o.echo {
        recv_counter.load(Ordering::Relaxed)
    } else {
        sent
    };
    if o.echo && frames != sent {
        return Err(LoadgenError::Closed {
            conn: 0,
            frames,
            expected: sent.saturating_sub(frames),
        });
    }
    let elapsed = match closed_at {
        Some(t) => t - start,
        None => {
            eprintln!(
                "warning: the sink did not close after end of stream; timing to the last send"
            );
            sent_done - start
        }
    };
    let (client_cpu, server_cpu) = cpu.end()?;
    Ok(Record {
        conns: 1,
        depth: max_batch as u64,
        elapsed_s: elapsed.as_secs_f64(),
        frames,
        client_cpu_s: Some(client_cpu),
        server_cpu_s: server_cpu,
        ..Record::default()
    })
}

/// Opens `o.conns` connections with `open(index)`, `CONNECT_CONCURRENCY` at a time.
async fn open_many<T, F, Fut>(o: &RunOpts, open: F) -> Result<Vec<T>, LoadgenError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let counter = Arc::new(AtomicU64::new(0));
    let _progress = ProgressGuard(progress(o.progress, counter.clone(), "connections open"));
    let results: Vec<io::Result<T>> = futures::stream::iter(0..o.conns)
        .map(|i| {
            let counter = counter.clone();
            let opening = open(i);
            async move {
                let conn = opening.await?;
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(conn)
            }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let mut conns = Vec::with_capacity(results.len());
    let mut first_err = None;
    let mut failed = 0usize;
    for r in results {
        match r {
            Ok(c) => conns.push(c),
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        None => Ok(conns),
        Some(e) => Err(LoadgenError::Io(io::Error::new(
            e.kind(),
            format!(
                "{failed} of {} connections failed to open; first error: {e}",
                o.conns
            ),
        ))),
    }
}

fn read_mem(pid: Option<u32>) -> Result<Option<ProcMem>, LoadgenError> {
    pid.map(ProcMem::read).transpose()
}

/// Sends one frame on a connection and waits for it to come back; returns whether it did, and
/// the halves (kept so the connection stays open).
async fn echo_once<T: FrameTx, R: FrameRx>(
    (mut tx, mut rx): (T, R),
    conn: usize,
) -> (bool, (T, R)) {
    let ok = tokio::time::timeout(ECHO_TIMEOUT, async {
        tx.send(1).await?;
        expect_replies(&mut rx, 1, conn, 0, None).await?;
        Ok::<(), LoadgenError>(())
    })
    .await;
    (matches!(ok, Ok(Ok(()))), (tx, rx))
}

async fn conns<C: ClientImpl>(o: &RunOpts, c: &ConnOpts) -> Result<Record, LoadgenError> {
    let before = read_mem(o.pid)?;
    let start = Instant::now();
    let body = payload(o.size);
    let idle = open_many(o, |i| open_conn::<C>(o, c, i, body.clone())).await?;
    let open_time = start.elapsed();
    // Let the server accept and set up every connection before reading its memory.
    tokio::time::sleep(o.duration).await;
    let opened = read_mem(o.pid)?;
    let checked: Vec<(bool, _)> = futures::stream::iter(idle)
        .enumerate()
        .map(|(i, halves)| echo_once(halves, i))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    tokio::time::sleep(ECHO_SETTLE).await;
    let echoed = read_mem(o.pid)?;
    let ok = checked.iter().filter(|(ok, _)| *ok).count() as u64;
    let memory = match (o.pid, before, opened) {
        (Some(pid), Some(before), Some(opened)) => Some(MemoryGrowth {
            pid,
            before,
            opened,
            echoed,
            conns: o.conns as u64,
        }),
        _ => None,
    };
    drop(checked);
    Ok(Record {
        conns: o.conns as u64,
        depth: 1,
        elapsed_s: open_time.as_secs_f64(),
        frames: ok,
        memory,
        echo_ok: Some(ok),
        echo_failed: Some(o.conns as u64 - ok),
        ..Record::default()
    })
}

async fn flood<C: ClientImpl>(o: &RunOpts, c: &ConnOpts) -> Result<Record, LoadgenError> {
    let before = read_mem(o.pid)?;
    let header = o.announce.to_be_bytes();
    let start = Instant::now();
    let streams = open_many(o, |i| async move {
        let mut s = connect(o.addr, source_addr(o.addr, i, o.sources)).await?;
        s.write_all(&header).await?;
        Ok(s)
    })
    .await?;
    let open_time = start.elapsed();
    tokio::time::sleep(o.duration).await;
    let opened = read_mem(o.pid)?;
    // Does the server still serve a well-behaved client while flooded?
    // A refused connection counts as "no", not as a failed run.
    let ok = match open_conn::<C>(o, c, o.conns, payload(o.size)).await {
        Ok(halves) => echo_once(halves, o.conns).await.0,
        Err(_) => false,
    };
    drop(streams);
    let memory = match (o.pid, before, opened) {
        (Some(pid), Some(before), Some(opened)) => Some(MemoryGrowth {
            pid,
            before,
            opened,
            echoed: None,
            conns: o.conns as u64,
        }),
        _ => None,
    };
    Ok(Record {
        conns: o.conns as u64,
        depth: 1,
        elapsed_s: open_time.as_secs_f64(),
        frames: o.conns as u64,
        memory,
        echo_ok: Some(u64::from(ok)),
        echo_failed: Some(u64::from(!ok)),
        ..Record::default()
    })
}

/// Bytes of frames per write in `burst` (whole frames, at least one).
pub const BURST_WRITE_BYTES: usize = 64 * 1024;

/// `burst`: `o.conns` connections each send `o.count` frames, in writes of about
/// [`BURST_WRITE_BYTES`], as fast as the server takes them. With `o.echo` every connection
/// reads every echo back while it sends (a task of its own writes); without, it half-closes
/// after the last frame and waits for the sink server to close (which it does once it has read
/// everything). The time is from the first write to the last connection done; connecting is
/// not timed.
async fn burst<C: ClientImpl>(o: &RunOpts, c: &ConnOpts) -> Result<Record, LoadgenError> {
    let body = payload(o.size);
    let mut conns = Vec::with_capacity(o.conns);
    for i in 0..o.conns {
        conns.push(open_conn::<C>(o, c, i, body.clone()).await?);
    }
    let per_write = (BURST_WRITE_BYTES / (o.size + 4)).max(1);
    let counter = Arc::new(AtomicU64::new(0));
    let _progress = ProgressGuard(progress(o.progress, counter.clone(), "frames"));
    let cpu = CpuWindow::start(o.pid)?;
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (i, (tx, rx)) in conns.into_iter().enumerate() {
        let count = o.count;
        let (echo, counter) = (o.echo, counter.clone());
        tasks.spawn(burst_conn(i, tx, rx, count, per_write, echo, counter));
    }
    timed_record(tasks, start, cpu, o.conns, per_write).await
}

/// One `burst` connection: the frames it sent, once every echo came in (or the sink closed),
/// and an empty latency histogram (a burst times no round trips).
async fn burst_conn<T: FrameTx, R: FrameRx>(
    conn: usize,
    mut tx: T,
    mut rx: R,
    count: u64,
    per_write: usize,
    echo: bool,
    counter: Arc<AtomicU64>,
) -> Result<(u64, Histogram<u64>), LoadgenError> {
    let writer = tokio::spawn(async move {
        let mut left = count;
        while left > 0 {
            let n = usize::try_from(left).map_or(per_write, |l| l.min(per_write));
            tx.send(n).await?;
            left -= n as u64;
        }
        if !echo {
            tx.finish().await?;
        }
        Ok::<T, io::Error>(tx)
    });
    if !echo {
        // Every frame written and the write side shut down; the sink closes once it has read
        // them all. It sends nothing: a reply would be the server's bug, and is not counted.
        writer
            .await
            .map_err(|e| io::Error::other(e.to_string()))??;
        while rx.recv().await? != 0 {}
        counter.fetch_add(count, Ordering::Relaxed);
        return Ok((count, new_histogram()?));
    }
    expect_replies(&mut rx, count, conn, 0, Some(&counter)).await?;
    let mut tx = writer
        .await
        .map_err(|e| io::Error::other(e.to_string()))??;
    tx.finish().await?;
    Ok((count, new_histogram()?))
}

/// `zeros`: `o.conns` [`Flooder`]s for `o.duration`.
async fn zeros(o: &RunOpts) -> Result<Record, LoadgenError> {
    let flooders = (0..o.conns)
        .map(|_| Flooder::start(o.addr))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    tokio::time::sleep(o.duration).await;
    let elapsed = start.elapsed();
    for flooder in flooders {
        flooder.stop()?;
    }
    Ok(Record {
        conns: o.conns as u64,
        elapsed_s: elapsed.as_secs_f64(),
        ..Record::default()
    })
}

/// One `zeros` connection: a thread writes zero-length frames (64 KiB of zero bytes per
/// write, 16,384 frames) as fast as the server takes them, another reads and drops the echoes.
/// Plain blocking threads, so the flood does not share the pinging task's runtime.
struct Flooder {
    stream: std::net::TcpStream,
    threads: [std::thread::JoinHandle<()>; 2],
}

impl Flooder {
    fn start(addr: std::net::SocketAddr) -> Result<Flooder, LoadgenError> {
        use std::io::{Read, Write};
        let stream = std::net::TcpStream::connect(addr)?;
        let mut writer = stream.try_clone()?;
        let mut reader = stream.try_clone()?;
        let write = std::thread::spawn(move || {
            let zeros = vec![0u8; 64 * 1024];
            // Ends at the first error: `stop` shuts the socket down.
            while writer.write_all(&zeros).is_ok() {}
        });
        let read = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
        });
        Ok(Flooder {
            stream,
            threads: [write, read],
        })
    }

    /// Shuts the connection down, which ends both threads.
    fn stop(self) -> Result<(), LoadgenError> {
        // Already closed by the server: the threads end by themselves.
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        for t in self.threads {
            if t.join().is_err() {
                return Err(io::Error::other("a zeros flood thread panicked").into());
            }
        }
        Ok(())
    }
}

/// `setup`: `o.conns` loops, each opening a connection (from the next 127.0.0.x source, so
/// TIME_WAIT entries spread over the sources' port ranges), writing the optional PROXY v2
/// header and one frame in one write, reading the echo and closing; until `o.duration`.
/// Raw sockets: what is measured is the server's per-connection cost (accept, header, first
/// frame, close), not a client library's. A frame is counted per connection completed.
async fn setup(o: &RunOpts) -> Result<Record, LoadgenError> {
    let counter = Arc::new(AtomicU64::new(0));
    let _progress = ProgressGuard(progress(o.progress, counter.clone(), "connections"));
    let cpu = CpuWindow::start(o.pid)?;
    let start = Instant::now();
    let end = start + o.duration;
    let body = payload(o.size);
    let mut tasks = JoinSet::new();
    for lane in 0..o.conns {
        let (o, body, counter) = (o.clone(), body.clone(), counter.clone());
        tasks.spawn(async move {
            let mut hist = new_histogram()?;
            let mut done = 0u64;
            let mut index = lane;
            while Instant::now() < end {
                let t0 = Instant::now();
                setup_once(&o, index, &body).await?;
                hist.saturating_record(nanos(t0.elapsed()));
                done += 1;
                index += o.conns;
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, LoadgenError>((done, hist))
        });
    }
    timed_record(tasks, start, cpu, o.conns, 1).await
}

/// One `setup` connection: connect, [PROXY v2 header +] frame, echo, close.
async fn setup_once(o: &RunOpts, index: usize, body: &Bytes) -> Result<(), LoadgenError> {
    use tokio::io::AsyncReadExt;

    let mut stream = connect(o.addr, source_addr(o.addr, index, o.sources)).await?;
    let mut out = Vec::with_capacity(28 + 4 + body.len());
    if o.proxy_v2 {
        out.extend_from_slice(&proxy_v2_header(stream.local_addr()?, o.addr));
    }
    // Payloads are capped at 8 MiB by argument parsing, so the length always fits.
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(body);
    stream.write_all(&out).await?;
    let mut reply = vec![0u8; 4 + body.len()];
    tokio::time::timeout(ECHO_TIMEOUT, stream.read_exact(&mut reply))
        .await
        .map_err(|_| LoadgenError::args(format!("no echo within {ECHO_TIMEOUT:?}")))??;
    if reply[4..] != body[..] {
        return Err(LoadgenError::Io(io::Error::other(
            "echo differs from the frame sent",
        )));
    }
    Ok(())
}

/// A PROXY protocol v2 header for a TCP connection from `source` to `dest` (IPv4 only; other
/// families get a LOCAL header, which names no client).
pub fn proxy_v2_header(source: std::net::SocketAddr, dest: std::net::SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    match (source, dest) {
        (std::net::SocketAddr::V4(s), std::net::SocketAddr::V4(d)) => {
            h.extend_from_slice(&[0x21, 0x11, 0, 12]);
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
            h.extend_from_slice(&s.port().to_be_bytes());
            h.extend_from_slice(&d.port().to_be_bytes());
        }
        _ => h.extend_from_slice(&[0x20, 0x00, 0, 0]),
    }
    h
}
