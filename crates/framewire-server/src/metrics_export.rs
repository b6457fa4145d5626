//! The `metrics` feature: the server's [`Stats`] published through the
//! [`metrics`](https://docs.rs/metrics) facade, so that any recorder (for example
//! `metrics-exporter-prometheus`) sees them.
//!
//! A task started by [`Server::serve`](crate::Server::serve) publishes a snapshot every
//! [`METRICS_INTERVAL`], and the server publishes one last snapshot when it stops; nothing is
//! added to the per-frame paths. Every metric carries the label `server` (the listening
//! address). Counters (monotonic, set to the server's totals):
//!
//! | metric | labels | from [`Stats`] |
//! |---|---|---|
//! | `framewire_server_connections_accepted_total` | | `accepted` |
//! | `framewire_server_connections_refused_total` | `reason`: `filter`, `capacity`, `per_ip` | `refused_by_filter`, `refused_at_capacity`, `refused_per_ip` |
//! | `framewire_server_frames_total` | `direction`: `in`, `out` | `frames_in`, `frames_out` |
//! | `framewire_server_bytes_total` | `direction`: `in`, `out` | `bytes_in`, `bytes_out` |
//! | `framewire_server_errors_total` | `kind`: `io`, `protocol`, `outgoing_too_long`, `decode`, `encode`, `idle_timeout`, `stall_timeout`, `write_timeout`, `handler`, `panic`, `aborted`, `accept`, `tls_handshake`, `tls_handshake_timeout`, `proxy` | [`ErrorStats`](crate::ErrorStats) |
//!
//! Gauge: `framewire_server_connections_active` (`active`).

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};

use crate::handle::Shared;
use crate::stats::Stats;

/// How often a server built with the `metrics` feature publishes its counters: every second.
/// Prometheus scrapes every 15 s or more by default, so a scrape sees figures at most a
/// second old, for one snapshot (two dozen atomic loads) a second.
pub const METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// Publishes `stats` under the label `server`.
pub(crate) fn publish(stats: &Stats, server: &str) {
    counter!("framewire_server_connections_accepted_total", "server" => server.to_owned())
        .absolute(stats.accepted);
    for (reason, n) in [
        ("filter", stats.refused_by_filter),
        ("capacity", stats.refused_at_capacity),
        ("per_ip", stats.refused_per_ip),
    ] {
        counter!("framewire_server_connections_refused_total", "server" => server.to_owned(), "reason" => reason)
            .absolute(n);
    }
    for (direction, frames, bytes) in [
        ("in", stats.frames_in, stats.bytes_in),
        ("out", stats.frames_out, stats.bytes_out),
    ] {
        counter!("framewire_server_frames_total", "server" => server.to_owned(), "direction" => direction)
            .absolute(frames);
        counter!("framewire_server_bytes_total", "server" => server.to_owned(), "direction" => direction)
            .absolute(bytes);
    }
    let e = &stats.errors;
    for (kind, n) in [
        ("io", e.io),
        ("protocol", e.protocol),
        ("outgoing_too_long", e.outgoing_too_long),
        ("decode", e.decode),
        ("encode", e.encode),
        ("idle_timeout", e.idle_timeout),
        ("stall_timeout", e.stall_timeout),
        ("write_timeout", e.write_timeout),
        ("handler", e.handler),
        ("panic", e.panic),
        ("aborted", e.aborted),
        ("accept", e.accept),
        ("tls_handshake", e.tls_handshake),
        ("tls_handshake_timeout", e.tls_handshake_timeout),
        ("proxy", e.proxy),
    ] {
        counter!("framewire_server_errors_total", "server" => server.to_owned(), "kind" => kind)
            .absolute(n);
    }
    // Connection counts are far below 2^52: exact as an f64.
    gauge!("framewire_server_connections_active", "server" => server.to_owned())
        .set(stats.active as f64);
}

/// Publishes a snapshot every [`METRICS_INTERVAL`]; the server aborts it when it stops, then
/// publishes the last snapshot itself.
pub(crate) async fn publish_every_interval<S>(shared: Arc<Shared<S>>) {
    let server = shared.local_addr.to_string();
    let mut tick = tokio::time::interval(METRICS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        publish(&shared.conn.counters.snapshot(), &server);
    }
}
