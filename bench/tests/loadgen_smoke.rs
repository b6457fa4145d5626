//! Loopback smoke test: every load generator mode, very briefly, against the in-binary servers.
//! One test function, so memory figures read from this process are not disturbed by other tests.

use std::net::SocketAddr;
use std::time::Duration;

use framewire_bench::args::{ClientKind, Mode, RunOpts, ServerKind, ServerMode};
use framewire_bench::modes::run;
use framewire_bench::server::{serve_setup, serve_with_window, ServerSetup};
use framewire_bench::tls::TempCert;
use framewire_bench::{LoadgenError, Record};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Upper bound for the whole test; each mode is also bounded by the run's own hard limit.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);
const RUN: Duration = Duration::from_millis(150);

async fn start(
    kind: ServerKind,
    mode: ServerMode,
) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    start_setup(ServerSetup::new(kind, mode)).await
}

async fn start_setup(
    setup: ServerSetup,
) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((addr, tokio::spawn(serve_setup(listener, setup))))
}

fn opts(mode: Mode, addr: SocketAddr, client: ClientKind) -> RunOpts {
    let mut o = RunOpts::new(mode, addr);
    o.client = client;
    o.duration = RUN;
    o.progress = false;
    o
}

async fn all_modes() -> Result<(), LoadgenError> {
    let (tu_echo, h1) = start(ServerKind::TokioUtil, ServerMode::Echo).await?;
    let (codec_echo, h2) = start(ServerKind::Codec, ServerMode::Echo).await?;
    let (raw_echo, h3) = start(ServerKind::Raw, ServerMode::Echo).await?;
    let (raw_sink, h4) = start(ServerKind::Raw, ServerMode::Sink).await?;
    let (codec_sink, h5) = start(ServerKind::Codec, ServerMode::Sink).await?;
    let (tu_sink, h6) = start(ServerKind::TokioUtil, ServerMode::Sink).await?;
    let (fw_echo, h7) = start(ServerKind::Framewire, ServerMode::Echo).await?;
    let (fw_sink, h8) = start(ServerKind::Framewire, ServerMode::Sink).await?;

    // ping: every client against a different server.
    for (client, addr) in [
        (ClientKind::Codec, tu_echo),
        (ClientKind::TokioUtil, codec_echo),
        (ClientKind::Raw, raw_echo),
        (ClientKind::TokioUtil, fw_echo),
        (ClientKind::Framewire, fw_echo),
        (ClientKind::Framewire, tu_echo),
    ] {
        let r = run(&opts(Mode::Ping, addr, client)).await?;
        assert_eq!(
            (r.mode.as_str(), r.client.as_str()),
            ("ping", client.name())
        );
        assert!(r.frames > 0, "{r:?}");
        let lat = r
            .latency
            .ok_or_else(|| LoadgenError::Args("no latency".into()))?;
        assert_eq!(lat.samples, r.frames);
        assert!(lat.p50_us <= lat.p99_us && lat.p99_us <= lat.p999_us && lat.p999_us <= lat.max_us);
    }

    // pipeline: every reply that was asked for arrives (each connection drains to zero).
    for (client, addr) in [
        (ClientKind::Raw, codec_echo),
        (ClientKind::TokioUtil, raw_echo),
        (ClientKind::Raw, fw_echo),
        (ClientKind::Framewire, fw_echo),
    ] {
        let mut o = opts(Mode::Pipeline, addr, client);
        o.conns = 4;
        o.depth = 8;
        o.size = 100;
        let r = run(&o).await?;
        assert!(r.frames >= 32, "{r:?}");
        assert_eq!(r.latency.map(|l| l.samples), Some(r.frames));
    }

    // stream into sinks, and streaming echo (which checks every frame came back).
    for (client, addr, size) in [
        (ClientKind::TokioUtil, raw_sink, 16),
        (ClientKind::Codec, codec_sink, 1024),
        (ClientKind::Raw, tu_sink, 65_536),
        (ClientKind::Codec, fw_sink, 64),
        (ClientKind::Framewire, fw_sink, 64),
    ] {
        let mut o = opts(Mode::Stream, addr, client);
        o.size = size;
        o.pid = Some(std::process::id());
        let r: Record = run(&o).await?;
        assert!(r.frames > 0 && r.frames_per_s() > 0.0, "{r:?}");
        // Client and server are this process: both CPU figures are read and agree (up to a tick).
        assert!(
            matches!((r.client_cpu_s, r.server_cpu_s), (Some(c), Some(s)) if c >= 0.0 && (c - s).abs() <= 0.05),
            "{r:?}"
        );
    }
    for (client, addr) in [
        (ClientKind::Raw, tu_echo),
        (ClientKind::Codec, raw_echo),
        (ClientKind::TokioUtil, fw_echo),
    ] {
        let mut o = opts(Mode::Stream, addr, client);
        o.echo = true;
        o.size = 300;
        let r = run(&o).await?;
        assert!(r.frames > 0, "{r:?}");
    }

    // setup: connect, one echo (checked byte for byte), close, 4 at a time.
    let mut o = opts(Mode::Setup, fw_echo, ClientKind::Raw);
    o.conns = 4;
    let r = run(&o).await?;
    assert!(r.frames > 0, "{r:?}");
    assert_eq!(r.latency.map(|l| l.samples), Some(r.frames));
    // With a PROXY v2 header, against a framewire server that trusts the loopback sources.
    let (proxy_echo, h9) = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let server = framewire_server::Server::builder()
            .proxy_protocol(framewire_server::ProxyProtocol::trusting(["127.0.0.0/8"
                .parse()
                .map_err(|e| LoadgenError::Args(format!("{e}")))?]))
            .listener(TcpListener::from_std(listener)?)
            .map_err(|e| LoadgenError::Args(e.to_string()))?;
        let addr = server
            .local_addr()
            .tcp()
            .ok_or_else(|| LoadgenError::Args("tcp".into()))?;
        let handle = server.handle();
        let task = tokio::spawn(server.serve(framewire_examples::mirror::<()>));
        (addr, (handle, task))
    };
    o.addr = proxy_echo;
    o.proxy_v2 = true;
    let r = run(&o).await?;
    assert!(r.frames > 0, "{r:?}");
    h9.0.shutdown();
    let report = h9.1.await.map_err(|e| LoadgenError::Args(e.to_string()))?;
    assert_eq!(report.stats.errors.proxy, 0, "every PROXY header accepted");
    assert_eq!(report.stats.accepted, r.frames, "one connection per echo");

    // conns: 40 idle connections from 4 source addresses, all still echo; memory read from
    // this process (the server runs in it).
    let mut o = opts(Mode::Conns, codec_echo, ClientKind::TokioUtil);
    o.conns = 40;
    o.sources = 4;
    o.pid = Some(std::process::id());
    o.duration = Duration::from_millis(50);
    let r = run(&o).await?;
    assert_eq!((r.echo_ok, r.echo_failed), (Some(40), Some(0)), "{r:?}");
    let mem = r
        .memory
        .ok_or_else(|| LoadgenError::Args("no memory figures".into()))?;
    assert_eq!(mem.conns, 40);
    assert!(mem.echoed.is_some());
    // The same against the framewire server, with the framewire client.
    let mut o = opts(Mode::Conns, fw_echo, ClientKind::Framewire);
    o.conns = 40;
    o.duration = Duration::from_millis(50);
    let r = run(&o).await?;
    assert_eq!((r.echo_ok, r.echo_failed), (Some(40), Some(0)), "{r:?}");

    // flood: the baseline reserves the announced 8 MiB per connection, so address space grows by
    // megabytes per connection, and the server still answers a fresh connection.
    let mut o = opts(Mode::Flood, tu_echo, ClientKind::Raw);
    o.conns = 8;
    o.pid = Some(std::process::id());
    o.duration = Duration::from_millis(100);
    let r = run(&o).await?;
    assert_eq!(r.echo_ok, Some(1), "{r:?}");
    let mem = r
        .memory
        .ok_or_else(|| LoadgenError::Args("no memory figures".into()))?;
    assert!(mem.vm_per_conn_kib() > 4096.0, "{mem:?}");

    // A server that is not there is an error, not a hang.
    let gone = {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        l.local_addr()?
    };
    assert!(run(&opts(Mode::Ping, gone, ClientKind::Raw)).await.is_err());

    for h in [h1, h2, h3, h4, h5, h6, h7, h8] {
        h.abort();
    }
    Ok(())
}

/// The ack-mode client against the ack-mode server, with small windows: every frame is
/// acknowledged (stream into a sink: each batch ends with a flush that waits for every ack)
/// or comes back (echo).
async fn ack_mode() -> Result<(), LoadgenError> {
    // Window 2 on both sides: the server may have 2 replies unacknowledged, the client 2
    // requests; deeper pipelines must still drain (the client takes replies while it waits for
    // acks of its requests).
    const WINDOW: u32 = 2;
    let start_ack = |mode| async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve_with_window(
            listener,
            ServerKind::FramewireAck,
            mode,
            WINDOW,
        ));
        Ok::<_, std::io::Error>((addr, task))
    };
    let (echo, h1) = start_ack(ServerMode::Echo).await?;
    let (sink, h2) = start_ack(ServerMode::Sink).await?;
    let ack_opts = |mode, addr| {
        let mut o = opts(mode, addr, ClientKind::FramewireAck);
        o.window = WINDOW;
        o
    };

    let r = run(&ack_opts(Mode::Ping, echo)).await?;
    assert_eq!(
        (r.client.as_str(), r.window),
        ("framewire-ack", Some(WINDOW))
    );
    assert!(r.frames > 0, "{r:?}");
    assert_eq!(r.latency.map(|l| l.samples), Some(r.frames));

    // 4 connections x 8 in flight, 4 times the window: each connection drains to zero.
    let mut o = ack_opts(Mode::Pipeline, echo);
    o.conns = 4;
    o.depth = 8;
    let r = run(&o).await?;
    assert!(r.frames >= 32, "{r:?}");
    assert_eq!(r.latency.map(|l| l.samples), Some(r.frames));

    // One-way stream: counted frames are acknowledged ones.
    let mut o = ack_opts(Mode::Stream, sink);
    o.size = 64;
    let r = run(&o).await?;
    assert!(r.frames > 0 && r.frames_per_s() > 0.0, "{r:?}");
    // Streaming echo: the run fails unless every frame sent came back.
    o.addr = echo;
    o.echo = true;
    let r = run(&o).await?;
    assert!(r.frames > 0, "{r:?}");

    // Stop-and-wait (window 1 on the client) works too.
    let mut o = ack_opts(Mode::Pipeline, echo);
    o.window = 1;
    o.conns = 2;
    o.depth = 4;
    let r = run(&o).await?;
    assert!(r.frames >= 8, "{r:?}");

    for h in [h1, h2] {
        h.abort();
    }
    Ok(())
}

/// `burst` (what `compare` measures) with the raw client, echo and sink, over TCP and TLS
/// against the servers `compare` starts; `conns` over TLS.
async fn burst_and_tls() -> Result<(), LoadgenError> {
    let cert = TempCert::new()?;
    let config = framewire_bench::tls::server_config(cert.dir())?;
    let start = |kind, mode, tls: bool| {
        let mut setup = ServerSetup::new(kind, mode);
        setup.tls = tls.then(|| config.clone());
        start_setup(setup)
    };
    for (kind, tls) in [
        (ServerKind::TokioUtil, false),
        (ServerKind::Codec, false),
        (ServerKind::Framewire, false),
        (ServerKind::TokioUtil, true),
        (ServerKind::Framewire, true),
    ] {
        let (echo, h1) = start(kind, ServerMode::Echo, tls).await?;
        let (sink, h2) = start(kind, ServerMode::Sink, tls).await?;
        let mut o = opts(Mode::Burst, echo, ClientKind::Raw);
        o.conns = 3;
        o.count = 2_000;
        o.size = 100;
        o.echo = true;
        o.tls = tls.then(|| cert.dir().to_path_buf());
        // Fails (or times out) unless every echo comes back.
        let r = run(&o).await?;
        let client = if tls { "raw-tls" } else { "raw" };
        assert_eq!((r.mode.as_str(), r.client.as_str()), ("burst", client));
        assert_eq!(r.frames, 6_000, "{r:?}");
        assert!(r.elapsed_s > 0.0, "{r:?}");
        // Into the sink: ends once the server closed after reading everything.
        o.addr = sink;
        o.echo = false;
        let r = run(&o).await?;
        assert_eq!(r.frames, 6_000, "{r:?}");
        if tls {
            let mut o = opts(Mode::Conns, echo, ClientKind::Raw);
            o.conns = 10;
            o.duration = Duration::from_millis(50);
            o.tls = Some(cert.dir().to_path_buf());
            let r = run(&o).await?;
            assert_eq!((r.echo_ok, r.echo_failed), (Some(10), Some(0)), "{r:?}");
        }
        for h in [h1, h2] {
            h.abort();
        }
    }
    // A TLS client against a plain server fails instead of hanging.
    let (plain, h) = start(ServerKind::TokioUtil, ServerMode::Echo, false).await?;
    let mut o = opts(Mode::Burst, plain, ClientKind::Raw);
    o.count = 10;
    o.tls = Some(cert.dir().to_path_buf());
    assert!(run(&o).await.is_err());
    h.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_runs_against_the_in_binary_servers() {
    match tokio::time::timeout(TEST_TIMEOUT, all_modes()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("loadgen run failed: {e}"),
        Err(_) => panic!("smoke test did not finish in {TEST_TIMEOUT:?}"),
    }
    // Run after the others (not as a test of its own running in parallel), so the memory and
    // CPU figures read above are this process's alone.
    match tokio::time::timeout(TEST_TIMEOUT, ack_mode()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("ack-mode loadgen run failed: {e}"),
        Err(_) => panic!("ack-mode smoke test did not finish in {TEST_TIMEOUT:?}"),
    }
    match tokio::time::timeout(TEST_TIMEOUT, burst_and_tls()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("burst/TLS loadgen run failed: {e}"),
        Err(_) => panic!("burst/TLS smoke test did not finish in {TEST_TIMEOUT:?}"),
    }
}
