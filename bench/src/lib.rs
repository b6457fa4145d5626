//! The benchmark harness: one set of client and server drivers, modes and reports behind both
//! binaries. `loadgen` (`src/bin/loadgen.rs`) runs one mode or one server per invocation (the
//! `bench/*.sh` scripts drive it); `compare` (`src/bin/compare.rs`) runs the servers of this
//! library as child processes (`compare serve`) and measures them with this library's modes
//! ([`Mode::Conns`] for memory per connection, [`Mode::Burst`] for throughput, over TCP or
//! TLS), reading the same [`Record`]s. A library, so tests can drive every mode in-process.
//!
//! It speaks plain u32 big-endian length-prefixed frames and so loads any such echo server,
//! framewire or not. `loadgen --help` describes the command line ([`args`]).
//!
//! * [`modes::run`] runs one mode (`ping`, `pipeline`, `stream`, `conns`, `flood`, `zeros`,
//!   `setup`, `burst`) and returns a [`report::Record`].
//! * [`client::ClientImpl`] is the adapter a client implementation provides (`codec`,
//!   `tokio-util`, `raw`, `framewire`, `framewire-ack`).
//! * [`server::serve_setup`] runs an in-binary echo or sink server (`tokio-util`, `raw`,
//!   `codec`, `framewire`, `framewire-each`, `framewire-ack`), over TCP or TLS ([`tls`]).
//!
//! # Adding an implementation
//!
//! * Client: a type implementing [`client::ClientImpl`] (`open` a connection as a
//!   [`client::FrameTx`] that sends `n` frames and flushes, and a [`client::FrameRx`] that waits
//!   for replies and counts them), a [`ClientKind`] variant with its name, and one arm in
//!   [`modes::run`]. [`client::FramewireClient`] is an example.
//! * Server: a [`ServerKind`] variant with its name, and one arm per mode in [`server::handle`]
//!   (or, for a server with its own accept loop such as framewire's, a branch in
//!   [`server::serve`]).
//! * Benchmarks: add the name to `IMPLS` at the top of `bench/compare.sh` and `bench/memory.sh`.

pub mod args;
pub mod client;
pub mod error;
pub mod modes;
pub mod report;
pub mod server;
pub mod tls;

use std::io::Write as _;
use std::process::ExitCode;

pub use args::{parse_args, ClientKind, Command, Mode, RunOpts, ServeOpts, ServerKind, ServerMode};
pub use error::LoadgenError;
pub use report::Record;

/// Runs `loadgen serve`: binds, prints one line with the address and pid, serves until
/// `opts.lifetime` has passed.
///
/// # Errors
/// Bind failure.
pub async fn run_server(opts: &ServeOpts) -> Result<(), LoadgenError> {
    let listener = tokio::net::TcpListener::bind(opts.addr).await?;
    let local = listener.local_addr()?;
    let mut setup = server::ServerSetup::new(opts.kind, opts.mode);
    setup.window = opts.window;
    setup.idle_timeout = opts.idle_timeout;
    setup.tls = opts.tls.as_deref().map(tls::server_config).transpose()?;
    let mut extra = match opts.kind {
        ServerKind::FramewireAck => format!(" window={}", opts.window),
        _ => String::new(),
    };
    if setup.tls.is_some() {
        extra.push_str(" tls");
    }
    if let Some(t) = opts.idle_timeout {
        extra = format!("{extra} idle-timeout={}ms", t.as_millis());
    }
    println!(
        "loadgen serve impl={} mode={}{extra} addr={} pid={}",
        opts.kind.name(),
        opts.mode.name(),
        local,
        std::process::id()
    );
    std::io::stdout().flush()?;
    // Serving ends only when the lifetime runs out (or the process is killed).
    let serving = server::serve_setup(listener, setup);
    if let Ok(result) = tokio::time::timeout(opts.lifetime, serving).await {
        result?;
    }
    Ok(())
}

/// A runtime with `threads` workers, by default as many as the CPUs this process may use (so
/// `taskset -c 1` gives one). With one, a current-thread runtime: every task runs on the main
/// thread, with no hand-offs between threads sharing the core.
fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let n = threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if n <= 1 {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(n)
        .enable_all()
        .build()
}

fn run_command(cmd: Command) -> Result<(), LoadgenError> {
    match cmd {
        Command::Serve(opts) => runtime(opts.threads)?.block_on(run_server(&opts)),
        Command::Run(opts) => {
            let rec = runtime(opts.threads)?.block_on(modes::run(&opts))?;
            println!(
                "loadgen {} ({} client) against {}",
                opts.mode.name(),
                rec.client,
                rec.addr
            );
            print!("{}", rec.table());
            if let Some(path) = &opts.csv {
                rec.append_csv(path)?;
            }
            if let Some(path) = &opts.json {
                std::fs::write(path, rec.json() + "\n")?;
            }
            Ok(())
        }
    }
}

/// The whole program: parses `args` (without the program name), runs, reports. Exit code 2 on
/// bad arguments (with clap's message), 0 after `--help` or `--version`, 1 on a failed run.
pub fn cli_main<I, S>(args: I) -> ExitCode
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let cmd = match parse_args(args) {
        Ok(cmd) => cmd,
        Err(e) => {
            // Help and version go to stdout, errors to stderr, as clap's own `exit` does.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match run_command(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
