//! The load generator's error type.

use std::io;

/// Everything that can stop a load generator run.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// The command line could not be understood.
    #[error("bad arguments: {0}")]
    Args(String),
    /// A socket or file operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The server closed a connection while replies were still expected.
    #[error(
        "connection {conn} closed by the server after {frames} replies, {expected} more expected"
    )]
    Closed {
        /// Index of the connection (0-based).
        conn: usize,
        /// Replies received on it before it closed.
        frames: u64,
        /// Replies still outstanding.
        expected: u64,
    },
    /// A run or a step of it did not finish in time.
    #[error("timed out after {millis} ms waiting for {what}")]
    Timeout {
        /// How long was waited, in milliseconds.
        millis: u128,
        /// What was being waited for.
        what: &'static str,
    },
    /// `/proc/PID/status` could not be read or parsed.
    #[error("cannot read the memory figures of pid {pid}: {source}")]
    Proc {
        /// The process id given with `--pid`.
        pid: u32,
        /// Why reading failed.
        source: io::Error,
    },
}

impl LoadgenError {
    /// Shorthand for an [`LoadgenError::Args`] error.
    pub(crate) fn args(msg: impl Into<String>) -> Self {
        LoadgenError::Args(msg.into())
    }
}
