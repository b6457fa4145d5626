//! Shared helpers for the framewire programs that are not copy-from examples (the load
//! generator, `lb_backend`).

#[path = "loadgen/mod.rs"]
pub mod loadgen;

use framewire_server::{Connection, ServerError};

/// Byte-for-byte echo on a framewire server connection; a burst of pipelined frames is
/// answered with one write (as `examples/echo_server.rs --mirror` does).
pub async fn mirror<S>(conn: &mut Connection<S>) -> Result<(), ServerError> {
    while let Some(frame) = conn.recv().await? {
        conn.feed(&frame).await?;
        while let Some(more) = conn.try_recv()? {
            conn.feed(&more).await?;
        }
        conn.flush().await?;
    }
    Ok(())
}
