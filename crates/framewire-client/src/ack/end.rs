//! How things end: [`Outcome`], how one connected phase of the driver ended (and what the
//! driver does next: reconnect or stop), [`classify`] of an engine error into one, and
//! [`Stop`], why the client stopped for good, with the error each waiting call gets.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use framewire_codec::ack::{AckError, Delivery, GoAwayReason};
use framewire_codec::{Cause, EarlierError, FrameError};

#[cfg(doc)]
use super::{AckClient, AckSender};
use crate::ClientError;

/// Why the driver stopped for good.
#[derive(Debug, Clone)]
pub(super) enum Stop {
    /// The peer closed cleanly with nothing unacknowledged.
    PeerClosed,
    /// [`AckSender::close`] completed and then the peer closed its side too (or the receiving
    /// half was dropped).
    Closed,
    /// After [`AckSender::close`], the connection failed while the receiving half was still
    /// reading the peer's messages. Nothing of ours was unacknowledged.
    LostAfterClose { reason: EarlierError },
    /// The reconnect policy gave up.
    GaveUp {
        attempts: u32,
        elapsed: Duration,
        last_error: EarlierError,
        unacked: Vec<Bytes>,
    },
    /// The peer broke the protocol (no reconnect: the peer is wrong, not the network).
    Protocol {
        error: Arc<AckError>,
        unacked: Vec<Bytes>,
    },
}

impl Stop {
    pub(super) fn reason(&self) -> EarlierError {
        match self {
            Stop::PeerClosed => {
                EarlierError::new("the peer closed the connection", Cause::Transport, true)
            }
            Stop::Closed => EarlierError::new("the client was closed", Cause::Local, false),
            Stop::LostAfterClose { reason } => EarlierError::new(
                format!("the connection failed after the sending half closed: {reason}"),
                reason.cause(),
                reason.is_retryable(),
            ),
            other => EarlierError::from(&other.error()),
        }
    }

    /// The error for calls that wait on delivery (flush, close) and for the receiver.
    pub(super) fn error(&self) -> ClientError {
        match self {
            Stop::PeerClosed | Stop::Closed | Stop::LostAfterClose { .. } => ClientError::Stopped {
                reason: self.reason(),
            },
            Stop::GaveUp {
                attempts,
                elapsed,
                last_error,
                unacked,
            } => ClientError::GaveUp {
                attempts: *attempts,
                elapsed: *elapsed,
                last_error: last_error.clone(),
                unacked: unacked.clone(),
            },
            Stop::Protocol { error, unacked } => ClientError::Protocol {
                source: Arc::clone(error),
                unacked: unacked.clone(),
            },
        }
    }

    /// What `flush`/`close` return once stopped: nothing is unacknowledged after a clean end.
    pub(super) fn flush_result(&self) -> Result<(), ClientError> {
        match self {
            Stop::PeerClosed | Stop::Closed | Stop::LostAfterClose { .. } => Ok(()),
            _ => Err(self.error()),
        }
    }

    /// What `recv` returns once the queue is empty.
    pub(super) fn recv_result(&self) -> Result<Option<Delivery>, ClientError> {
        match self {
            Stop::PeerClosed | Stop::Closed => Ok(None),
            _ => Err(self.error()),
        }
    }
}

/// How a connected phase ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Transport failure, close with messages unacknowledged, or no ack within the ack
    /// timeout: reconnect. Carries the reason.
    Drop(EarlierError),
    /// Protocol violation by the peer: stop.
    Violation(AckError),
    /// Clean close by the peer, nothing unacknowledged: stop.
    PeerClosed,
    /// The receiving half saw the end of the stream: the driver decides between
    /// `PeerClosed` and `Drop`.
    EndOfStream,
    /// Every handle is gone and nothing is unacknowledged.
    Done,
    /// `AckSender::close` shut the sending direction: the receiving half may still read.
    SenderClosed,
    /// Shutting the sending direction failed (everything was acknowledged before).
    CloseFailed(EarlierError),
}

/// The peer said it is going away (shutdown, restart, idle close): reconnect, whatever is in
/// flight, unlike a plain close, which ends the conversation.
pub(super) fn going_away(reason: GoAwayReason) -> Outcome {
    Outcome::Drop(EarlierError::new(
        format!("the server is going away ({reason}); reconnecting"),
        Cause::Transport,
        true,
    ))
}

pub(super) fn classify(e: AckError) -> Outcome {
    match &e {
        AckError::Frame(
            FrameError::Io(_)
            | FrameError::TruncatedFrame { .. }
            | FrameError::TruncatedHeader { .. },
        )
        | AckError::ClosedWithUnacked { .. }
        | AckError::ClosedBeforeHello
        | AckError::PeerSilent { .. }
        | AckError::Failed { .. } => Outcome::Drop(EarlierError::from(&e)),
        _ => Outcome::Violation(e),
    }
}
