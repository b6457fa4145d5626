//! Waiting for the operating system's request to stop.

/// Completes when the process is asked to terminate: ctrl-c (SIGINT) or, on Unix, SIGTERM.
/// Made for [`Server::serve_until`](crate::Server::serve_until):
///
/// ```no_run
/// # async fn run(server: framewire_server::Server) {
/// # let handler = |_conn: framewire_server::Connection| async {};
/// server.serve_until(handler, framewire_server::termination_signal()).await;
/// # }
/// ```
///
/// If a signal handler cannot be installed, the error is logged and that signal is ignored
/// (the future then waits for the other, or forever); the server can still be stopped with
/// [`ServerHandle::shutdown`](crate::ServerHandle::shutdown).
///
/// # Cancellation safety
///
/// Cancellation safe; dropping it uninstalls nothing that matters (tokio keeps its signal
/// handlers for the life of the process).
pub async fn termination_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
