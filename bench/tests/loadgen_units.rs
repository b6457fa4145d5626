//! Unit tests of the load generator's pure parts: argument parsing, latency summary, memory
//! figures, CSV and JSON formatting.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use framewire_bench::args::{
    parse_args, parse_duration, parse_size, ClientKind, Command, Mode, ServerKind, ServerMode,
    DEFAULT_DEPTH, DEFAULT_PIPELINE_CONNS, DEFAULT_WINDOW, MAX_CONNS,
};
use framewire_bench::client::source_addr;
use framewire_bench::modes::{default_batch, next_batch, FIRST_STREAM_BATCH};
use framewire_bench::report::{
    cpu_seconds, csv_escape, json_string, new_histogram, parse_cpu_ticks, LatencySummary,
    MemoryGrowth, ProcMem, Record, COLUMNS,
};
use framewire_bench::LoadgenError;

fn run_opts(args: &[&str]) -> framewire_bench::RunOpts {
    match parse_args(args.iter().copied()) {
        Ok(Command::Run(o)) => o,
        other => panic!("expected a run for {args:?}, got {other:?}"),
    }
}

/// The message of a usage error (exit code 2, not help or version).
fn parse_err(args: &[&str]) -> String {
    match parse_args(args.iter().copied()) {
        Err(e)
            if e.exit_code() == 2
                && e.kind() != ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.to_string()
        }
        other => panic!("expected an argument error for {args:?}, got {other:?}"),
    }
}

#[test]
fn sizes_accept_binary_suffixes() {
    assert_eq!(parse_size("16").ok(), Some(16));
    assert_eq!(parse_size("64B").ok(), Some(64));
    assert_eq!(parse_size("1k").ok(), Some(1024));
    assert_eq!(parse_size("1KiB").ok(), Some(1024));
    assert_eq!(parse_size("64k").ok(), Some(65_536));
    assert_eq!(parse_size("8MiB").ok(), Some(8 * 1024 * 1024));
    assert_eq!(parse_size("8m").ok(), Some(8 * 1024 * 1024));
    for bad in ["", "k", "-1", "1.5k", "12x", "99999999999999999999k"] {
        assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn durations_accept_seconds_and_milliseconds() {
    assert_eq!(parse_duration("3").ok(), Some(Duration::from_secs(3)));
    assert_eq!(parse_duration("3s").ok(), Some(Duration::from_secs(3)));
    assert_eq!(parse_duration("0.5").ok(), Some(Duration::from_millis(500)));
    assert_eq!(
        parse_duration("250ms").ok(),
        Some(Duration::from_millis(250))
    );
    for bad in ["", "s", "-1", "NaN", "inf", "3h"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn ping_defaults() {
    let o = run_opts(&["ping", "--addr", "127.0.0.1:7000"]);
    assert_eq!(o.mode, Mode::Ping);
    assert_eq!(o.addr, SocketAddr::from(([127, 0, 0, 1], 7000)));
    assert_eq!(o.client, ClientKind::TokioUtil);
    assert_eq!((o.conns, o.depth, o.size), (1, 1, 64));
    assert_eq!(o.duration, Duration::from_secs(3));
    assert!(o.progress);
    assert_eq!(o.csv, None);
}

#[test]
fn pipeline_flags_are_read() {
    let o = run_opts(&[
        "pipeline",
        "--addr",
        "127.0.0.1:1",
        "--client",
        "raw",
        "--size",
        "1k",
        "--conns",
        "8",
        "--depth",
        "4",
        "--duration",
        "500ms",
        "--label",
        "x,y",
        "--csv",
        "out.csv",
        "--json",
        "out.json",
        "--quiet",
        "--threads",
        "1",
    ]);
    assert_eq!(o.mode, Mode::Pipeline);
    assert_eq!(o.client, ClientKind::Raw);
    assert_eq!((o.size, o.conns, o.depth), (1024, 8, 4));
    assert_eq!(o.duration, Duration::from_millis(500));
    assert_eq!(o.label, "x,y");
    assert_eq!(o.csv.as_deref(), Some(std::path::Path::new("out.csv")));
    assert_eq!(o.json.as_deref(), Some(std::path::Path::new("out.json")));
    assert!(!o.progress);
    assert_eq!(o.threads, Some(1));
    let d = run_opts(&["pipeline", "--addr", "127.0.0.1:1"]);
    assert_eq!((d.conns, d.depth), (DEFAULT_PIPELINE_CONNS, DEFAULT_DEPTH));
}

#[test]
fn stream_conns_and_flood_flags() {
    let s = run_opts(&[
        "stream",
        "--addr",
        "127.0.0.1:1",
        "--echo",
        "--batch",
        "7",
        "--client",
        "codec",
    ]);
    assert!(s.echo);
    assert_eq!(s.batch, Some(7));
    assert_eq!(s.client, ClientKind::Codec);
    let f = run_opts(&["ping", "--addr", "127.0.0.1:1", "--client", "framewire"]);
    assert_eq!(f.client, ClientKind::Framewire);
    let c = run_opts(&[
        "conns",
        "--addr",
        "127.0.0.1:1",
        "--conns",
        "10000",
        "--pid",
        "42",
        "--sources",
        "4",
    ]);
    assert_eq!(
        (c.mode, c.conns, c.pid, c.sources),
        (Mode::Conns, 10_000, Some(42), 4)
    );
    let f = run_opts(&["flood", "--addr", "127.0.0.1:1", "--announce", "1m"]);
    assert_eq!((f.mode, f.announce), (Mode::Flood, 1024 * 1024));
}

#[test]
fn serve_flags_are_read() {
    let cmd = parse_args([
        "serve",
        "--impl",
        "raw",
        "--mode",
        "sink",
        "--addr",
        "127.0.0.1:9",
        "--threads",
        "1",
    ]);
    match cmd {
        Ok(Command::Serve(s)) => {
            assert_eq!(s.kind, ServerKind::Raw);
            assert_eq!(s.mode, ServerMode::Sink);
            assert_eq!(s.addr, SocketAddr::from(([127, 0, 0, 1], 9)));
            assert_eq!(s.threads, Some(1));
        }
        other => panic!("expected serve, got {other:?}"),
    }
    match parse_args(["serve", "--impl", "framewire", "--mode", "sink"]) {
        Ok(Command::Serve(s)) => {
            assert_eq!((s.kind, s.mode), (ServerKind::Framewire, ServerMode::Sink))
        }
        other => panic!("expected serve, got {other:?}"),
    }
    match parse_args(["serve", "--impl", "codec"]) {
        Ok(Command::Serve(s)) => {
            assert_eq!((s.kind, s.mode), (ServerKind::Codec, ServerMode::Echo))
        }
        other => panic!("expected serve, got {other:?}"),
    }
    assert!(parse_err(&["serve"]).contains("--impl"));
    assert!(parse_err(&["serve", "--impl", "nginx"]).contains("nginx"));
    assert!(parse_err(&["serve", "--impl", "raw", "--mode", "mirror"]).contains("mirror"));
}

#[test]
fn burst_tls_and_idle_timeout_flags() {
    let o = run_opts(&[
        "burst",
        "--addr",
        "127.0.0.1:1",
        "--client",
        "raw",
        "--count",
        "500",
        "--echo",
        "--tls",
        "/tmp/certs",
    ]);
    assert_eq!(
        (o.mode, o.conns, o.count, o.echo, o.tls),
        (Mode::Burst, 4, 500, true, Some(PathBuf::from("/tmp/certs")))
    );
    assert!(parse_err(&["ping", "--addr", "127.0.0.1:1", "--count", "5"]).contains("burst only"));
    // The default client is the baseline, which does not speak TLS here.
    assert!(parse_err(&["burst", "--addr", "127.0.0.1:1", "--tls", "d"]).contains("--client raw"));
    assert!(parse_err(&["burst", "--addr", "127.0.0.1:1", "--count", "0"]).contains('0'));
    match parse_args([
        "serve",
        "--impl",
        "framewire",
        "--tls",
        "/tmp/certs",
        "--idle-timeout",
        "600s",
    ]) {
        Ok(Command::Serve(s)) => assert_eq!(
            (s.tls, s.idle_timeout),
            (
                Some(PathBuf::from("/tmp/certs")),
                Some(Duration::from_secs(600))
            )
        ),
        other => panic!("expected serve, got {other:?}"),
    }
    assert!(
        parse_err(&["serve", "--impl", "raw", "--idle-timeout", "1s"]).contains("framewire kinds")
    );
}

#[test]
fn ack_client_and_server_flags() {
    let o = run_opts(&[
        "stream",
        "--addr",
        "127.0.0.1:1",
        "--client",
        "framewire-ack",
    ]);
    assert_eq!(
        (o.client, o.window),
        (ClientKind::FramewireAck, DEFAULT_WINDOW)
    );
    assert_eq!(DEFAULT_WINDOW, framewire_codec::ack::DEFAULT_WINDOW);
    assert_eq!(ClientKind::FramewireAck.name(), "framewire-ack");
    // --window may come before --client.
    let o = run_opts(&[
        "pipeline",
        "--window",
        "1",
        "--addr",
        "127.0.0.1:1",
        "--client",
        "framewire-ack",
    ]);
    assert_eq!((o.client, o.window), (ClientKind::FramewireAck, 1));
    let ack = ["ping", "--addr", "127.0.0.1:1", "--client", "framewire-ack"];
    assert!(parse_err(&[&ack[..], &["--window", "0"]].concat()).contains("'0' for '--window"));
    assert!(parse_err(&[&ack[..], &["--window", "65537"]].concat()).contains("1..=65536"));
    assert!(parse_err(&[&ack[..], &["--window", "many"]].concat()).contains("many"));
    // Only the ack client has a window.
    assert!(
        parse_err(&["ping", "--addr", "127.0.0.1:1", "--window", "8"]).contains("framewire-ack")
    );

    match parse_args([
        "serve",
        "--impl",
        "framewire-ack",
        "--mode",
        "sink",
        "--window",
        "256",
    ]) {
        Ok(Command::Serve(s)) => assert_eq!(
            (s.kind, s.mode, s.window),
            (ServerKind::FramewireAck, ServerMode::Sink, 256)
        ),
        other => panic!("expected serve, got {other:?}"),
    }
    match parse_args(["serve", "--impl", "framewire-ack"]) {
        Ok(Command::Serve(s)) => assert_eq!(
            (s.kind, s.mode, s.window),
            (ServerKind::FramewireAck, ServerMode::Echo, DEFAULT_WINDOW)
        ),
        other => panic!("expected serve, got {other:?}"),
    }
    assert!(
        parse_err(&["serve", "--impl", "framewire", "--window", "8"]).contains("framewire-ack")
    );
    assert!(
        parse_err(&["serve", "--impl", "framewire-ack", "--window", "0"]).contains("1..=65536")
    );
}

#[test]
fn stream_batches_fit_the_time_left() {
    let ms = Duration::from_millis;
    // Fast frames: double up to the full batch.
    assert_eq!(next_batch(16, 3855, ms(0), ms(900)), 32);
    assert_eq!(next_batch(2048, 3855, ms(1), ms(900)), 3855);
    assert_eq!(next_batch(3855, 3855, ms(1), ms(900)), 3855);
    // Slow frames (1 ms each, as stop-and-wait over a slow link): no more than fit.
    assert_eq!(next_batch(16, 3855, ms(16), ms(100)), 32);
    assert_eq!(next_batch(64, 3855, ms(64), ms(40)), 40);
    // Out of time: one frame (the loop stops before sending it once the end has passed).
    assert_eq!(next_batch(64, 3855, ms(64), ms(0)), 1);
    // Never zero, never above the maximum.
    assert_eq!(next_batch(0, 3855, ms(0), ms(0)), 1);
    assert_eq!(next_batch(1, 1, ms(0), ms(500)), 1);
    assert!(FIRST_STREAM_BATCH <= default_batch(64));
}

#[test]
fn help_and_errors() {
    // No arguments: the help, as a usage error (exit code 2); asked for: exit code 0.
    let kind_and_code = |args: &[&str]| match parse_args(args.iter().copied()) {
        Err(e) => (e.kind(), e.exit_code()),
        Ok(cmd) => panic!("expected help or version for {args:?}, got {cmd:?}"),
    };
    assert_eq!(
        kind_and_code(&[]),
        (ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand, 2)
    );
    assert_eq!(kind_and_code(&["--help"]), (ErrorKind::DisplayHelp, 0));
    assert_eq!(kind_and_code(&["help"]), (ErrorKind::DisplayHelp, 0));
    assert_eq!(
        kind_and_code(&["ping", "--help"]),
        (ErrorKind::DisplayHelp, 0)
    );
    assert_eq!(
        kind_and_code(&["--version"]),
        (ErrorKind::DisplayVersion, 0)
    );
    match parse_args(["help", "serve"]) {
        Err(e) => assert!(e.to_string().contains("--impl"), "{e}"),
        Ok(cmd) => panic!("expected the serve help, got {cmd:?}"),
    }
    assert!(parse_err(&["ping"]).contains("--addr"));
    assert!(parse_err(&["bogus"]).contains("bogus"));
    assert!(parse_err(&["ping", "--addr", "127.0.0.1:1", "--frobnicate"]).contains("--frobnicate"));
    assert!(parse_err(&["ping", "--addr"]).contains("a value is required for '--addr"));
    assert!(parse_err(&["ping", "--addr", "127.0.0.1:1", "--client", "grpc"]).contains("grpc"));
    // Caps: counts and durations are always bounded.
    let too_many = (MAX_CONNS + 1).to_string();
    assert!(
        parse_err(&["conns", "--addr", "127.0.0.1:1", "--conns", &too_many]).contains(&too_many)
    );
    assert!(parse_err(&["ping", "--addr", "127.0.0.1:1", "--conns", "2"]).contains("1..=1"));
    assert!(parse_err(&["ping", "--addr", "127.0.0.1:1", "--duration", "1000"]).contains("cap"));
    assert!(parse_err(&["ping", "--addr", "127.0.0.1:1", "--size", "9m"]).contains("9437184"));
    assert!(
        parse_err(&["pipeline", "--addr", "127.0.0.1:1", "--depth", "0"])
            .contains("'0' for '--depth")
    );
}

#[test]
fn latency_summary_reads_percentiles() -> Result<(), LoadgenError> {
    let mut h = new_histogram()?;
    assert_eq!(LatencySummary::from_histogram(&h), None);
    // 1..=1000 microseconds, one sample each.
    for us in 1..=1000u64 {
        h.saturating_record(us * 1000);
    }
    let s = LatencySummary::from_histogram(&h).ok_or_else(|| LoadgenError::Args("empty".into()))?;
    assert_eq!(s.samples, 1000);
    let close = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
    assert!(close(s.p50_us, 500.0), "p50 {}", s.p50_us);
    assert!(close(s.p99_us, 990.0), "p99 {}", s.p99_us);
    assert!(close(s.p999_us, 999.0), "p99.9 {}", s.p999_us);
    assert!(close(s.max_us, 1000.0), "max {}", s.max_us);
    Ok(())
}

#[test]
fn proc_status_is_parsed() {
    let text = "Name:\tloadgen\nVmPeak:\t  200000 kB\nVmSize:\t  150000 kB\nVmHWM:\t 9000 kB\nVmRSS:\t    8123 kB\nThreads:\t3\n";
    assert_eq!(
        ProcMem::parse(text),
        Some(ProcMem {
            vm_kib: 150_000,
            rss_kib: 8_123
        })
    );
    assert_eq!(ProcMem::parse("Name:\tx\nVmSize:\t1 kB\n"), None);
    // This process exists, so its own figures can be read.
    let me = ProcMem::read(std::process::id()).map_err(|e| e.to_string());
    assert!(
        matches!(me, Ok(m) if m.rss_kib > 0 && m.vm_kib >= m.rss_kib),
        "{me:?}"
    );
}

#[test]
fn memory_growth_is_divided_per_connection() {
    let g = MemoryGrowth {
        pid: 1,
        before: ProcMem {
            vm_kib: 1000,
            rss_kib: 100,
        },
        opened: ProcMem {
            vm_kib: 9000,
            rss_kib: 500,
        },
        echoed: Some(ProcMem {
            vm_kib: 9000,
            rss_kib: 900,
        }),
        conns: 100,
    };
    assert_eq!(g.vm_per_conn_kib(), 80.0);
    assert_eq!(g.rss_per_conn_kib(), 4.0);
    assert_eq!(g.rss_echoed_per_conn_kib(), Some(8.0));
    let shrunk = MemoryGrowth {
        opened: ProcMem {
            vm_kib: 500,
            rss_kib: 50,
        },
        ..g
    };
    assert_eq!(shrunk.rss_per_conn_kib(), -0.5);
}

fn sample_record() -> Record {
    Record {
        label: "tokio-util, \"baseline\"".into(),
        mode: "ping".into(),
        client: "raw".into(),
        addr: "127.0.0.1:7000".into(),
        frame_size: 64,
        conns: 1,
        depth: 1,
        elapsed_s: 2.0,
        frames: 5000,
        latency: Some(LatencySummary {
            samples: 5000,
            p50_us: 40.0,
            p99_us: 90.5,
            p999_us: 120.25,
            max_us: 3000.0,
        }),
        memory: None,
        echo_ok: None,
        echo_failed: None,
        client_cpu_s: Some(1.5),
        server_cpu_s: None,
        window: None,
    }
}

#[test]
fn csv_rows_match_the_header() {
    let r = sample_record();
    assert_eq!(r.frames_per_s(), 2500.0);
    assert_eq!(Record::csv_header().split(',').count(), COLUMNS.len());
    assert_eq!(r.fields().len(), COLUMNS.len());
    let row = r.csv_row();
    assert!(
        row.starts_with(
            "\"tokio-util, \"\"baseline\"\"\",ping,raw,127.0.0.1:7000,64,1,1,2.000,5000,2500.0,"
        ),
        "{row}"
    );
    assert!(row.contains(",40.000,90.500,120.250,3000.0,"), "{row}");
    // Memory and echo columns are empty for ping; so are server CPU and the ack window.
    assert!(row.ends_with(",,,,,,,,,,,1.500,,"), "{row}");
    let ack = Record {
        window: Some(8),
        ..r.clone()
    };
    assert!(ack.csv_row().ends_with(",1.500,,8"), "{}", ack.csv_row());
    assert_eq!(COLUMNS.last(), Some(&"window"));
    assert_eq!(csv_escape("plain"), "plain");
    assert_eq!(csv_escape("a,b"), "\"a,b\"");
    assert_eq!(csv_escape("line\nbreak"), "\"line\nbreak\"");
}

#[test]
fn csv_file_gets_one_header() -> std::io::Result<()> {
    let path = std::env::temp_dir().join(format!("loadgen-units-{}.csv", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let r = sample_record();
    r.append_csv(&path)?;
    r.append_csv(&path)?;
    let text = std::fs::read_to_string(&path)?;
    std::fs::remove_file(&path)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], Record::csv_header());
    assert_eq!(lines[1], r.csv_row());
    assert_eq!(lines[1], lines[2]);
    Ok(())
}

#[test]
fn csv_file_with_other_columns_is_refused() -> std::io::Result<()> {
    let path = std::env::temp_dir().join(format!("loadgen-units-old-{}.csv", std::process::id()));
    // A file written before the `window` column existed.
    let old_header = COLUMNS[..COLUMNS.len() - 1].join(",");
    std::fs::write(&path, format!("{old_header}\n"))?;
    let err = sample_record().append_csv(&path);
    let text = std::fs::read_to_string(&path)?;
    std::fs::remove_file(&path)?;
    assert_eq!(
        err.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::InvalidData)
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    Ok(())
}

#[test]
fn json_object_has_every_column() {
    let j = sample_record().json();
    assert!(
        j.starts_with("{\"label\": \"tokio-util, \\\"baseline\\\"\", \"mode\": \"ping\""),
        "{j}"
    );
    assert!(j.contains("\"frames\": 5000"), "{j}");
    assert!(j.contains("\"p99_us\": 90.500"), "{j}");
    assert!(j.contains("\"echo_ok\": null"), "{j}");
    assert_eq!(j.matches(": ").count(), COLUMNS.len());
    assert_eq!(json_string("a\\b\n\u{1}"), "\"a\\\\b\\n\\u0001\"");
}

#[test]
fn connections_spread_over_loopback_sources() {
    let lo = SocketAddr::from(([127, 0, 0, 1], 7000));
    assert_eq!(source_addr(lo, 0, 8), Some(Ipv4Addr::new(127, 0, 0, 1)));
    assert_eq!(source_addr(lo, 7, 8), Some(Ipv4Addr::new(127, 0, 0, 8)));
    assert_eq!(source_addr(lo, 8, 8), Some(Ipv4Addr::new(127, 0, 0, 1)));
    assert_eq!(source_addr(lo, 5, 0), None);
    assert_eq!(
        source_addr(SocketAddr::from(([10, 0, 0, 1], 7000)), 5, 8),
        None
    );
    assert_eq!(
        source_addr(SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], 7000)), 5, 8),
        None
    );
}

#[test]
fn default_stream_batch_is_bounded() {
    assert_eq!(default_batch(65_536), 3);
    assert_eq!(default_batch(8 * 1024 * 1024), 1);
    assert_eq!(default_batch(0), 65_536);
    assert_eq!(default_batch(16), 256 * 1024 / 20);
}

#[test]
fn proc_stat_cpu_ticks_are_parsed() {
    // Field 2 may contain spaces and parentheses; utime (14) = 250, stime (15) = 50.
    let stat = "4242 (tokio (x) y) S 1 4242 4242 0 -1 4194304 10 0 0 0 250 50 0 0 20 0 3 0 100 0";
    assert_eq!(parse_cpu_ticks(stat), Some(300));
    assert_eq!(parse_cpu_ticks("4242 (short) S 1 2"), None);
    assert_eq!(parse_cpu_ticks("no parenthesis"), None);
    let me = cpu_seconds(std::process::id()).map_err(|e| e.to_string());
    assert!(matches!(me, Ok(s) if s >= 0.0), "{me:?}");
}

/// Every command line the bench/*.sh scripts run (with their default variables filled in)
/// still parses, to the options they mean.
#[test]
fn the_bench_scripts_command_lines_parse() {
    let parse = |line: &str| parse_args(line.split_whitespace());
    let run = |line: &str| match parse(line) {
        Ok(Command::Run(o)) => o,
        other => panic!("expected a run for {line:?}, got {other:?}"),
    };
    // bench/common.sh `start_server`
    let serve =
        "serve --impl framewire-ack --mode sink --window 64 --addr 127.0.0.1:0 --lifetime 600s";
    match parse(serve) {
        Ok(Command::Serve(s)) => assert_eq!(
            (s.kind, s.mode, s.window, s.lifetime),
            (
                ServerKind::FramewireAck,
                ServerMode::Sink,
                64,
                Duration::from_secs(600)
            )
        ),
        other => panic!("expected serve, got {other:?}"),
    }
    // bench/compare.sh `client`
    let common = "--duration 1s --pid 7 --quiet --csv out.csv";
    let o = run(&format!(
        "stream --addr 127.0.0.1:1 --client framewire-ack --window 64 --size 64 --label x {common}"
    ));
    assert_eq!(
        (o.mode, o.client, o.window, o.size, o.pid, o.progress),
        (
            Mode::Stream,
            ClientKind::FramewireAck,
            64,
            64,
            Some(7),
            false
        )
    );
    let o = run(&format!(
        "pipeline --addr 127.0.0.1:1 --client raw --size 1k --conns 64 --depth 16 --label x {common}"
    ));
    assert_eq!((o.conns, o.depth, o.size), (64, 16, 1024));
    // bench/memory.sh: conns and flood take --client raw too.
    let o = run("flood --addr 127.0.0.1:1 --conns 10000 --pid 7 --client raw --duration 1s --label x --csv out.csv");
    assert_eq!(
        (o.mode, o.conns, o.client),
        (Mode::Flood, 10_000, ClientKind::Raw)
    );
    // bench/fairness.sh
    let o = run("zeros --addr 127.0.0.1:1 --conns 4 --duration 5s --quiet");
    assert_eq!((o.mode, o.conns), (Mode::Zeros, 4));
    let o = run("ping --addr 127.0.0.1:1 --client raw --size 64 --interval 10ms --duration 3s --pid 7 --quiet --label x --csv out.csv");
    assert_eq!(o.interval, Some(Duration::from_millis(10)));
    // bench/haproxy.sh
    let o = run("setup --addr 127.0.0.1:1 --proxy-v2 --sources 64 --duration 3s --quiet --label x --csv out.csv");
    assert_eq!((o.mode, o.proxy_v2, o.sources), (Mode::Setup, true, 64));
    // The rules that span flags still hold.
    assert!(
        parse_err(&["pipeline", "--addr", "127.0.0.1:1", "--interval", "1ms"])
            .contains("ping only")
    );
    assert!(parse_err(&["ping", "--addr", "127.0.0.1:1", "--proxy-v2"]).contains("setup only"));
}
