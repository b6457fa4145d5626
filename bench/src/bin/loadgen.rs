//! Load generator for any u32 big-endian length-prefixed echo server, with in-binary baseline
//! servers for side-by-side runs.
//!
//! ```text
//! cargo run --release --bin loadgen -- serve --impl tokio-util --mode echo --addr 127.0.0.1:7000
//! cargo run --release --bin loadgen -- ping --addr 127.0.0.1:7000 --size 64 --duration 3s
//! cargo run --release --bin loadgen -- pipeline --addr 127.0.0.1:7000 --conns 64 --depth 16
//! cargo run --release --bin loadgen -- serve --impl framewire-ack --mode sink --window 64 --addr 127.0.0.1:7001
//! cargo run --release --bin loadgen -- stream --addr 127.0.0.1:7001 --client framewire-ack --window 64
//! cargo run --release --bin loadgen -- --help
//! ```
//!
//! `loadgen COMMAND --help` lists a command's flags. `bench/compare.sh` runs every
//! implementation side by side and draws the chart.

use std::process::ExitCode;

fn main() -> ExitCode {
    framewire_bench::cli_main(std::env::args().skip(1))
}
