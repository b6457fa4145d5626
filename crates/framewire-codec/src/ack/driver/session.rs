//! Sessions on the accepting side: tying the driver to a [`SessionHub`], answering a
//! HELLO that names a session (resume, takeover, fresh), accepting before the application's
//! first call, and detaching the session when the connection ends.

use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite};

use super::{AckDriver, Side};
use crate::ack::engine::AckState;
use crate::ack::session_hub::SessionHub;
use crate::ack::{AckConfig, AckError};
use crate::{Cause, EarlierError};

impl<T> AckDriver<T> {
    /// Accepting side: answers a HELLO that names a session from `hub` (resumed if kept,
    /// taken over from a live connection, or a fresh record), and lets
    /// [`detach_session`](Self::detach_session) keep it there when the connection ends.
    /// Without a hub, an [`accepting`](AckState::accepting) state answers every session
    /// request with [`start_session`](AckState::start_session).
    #[must_use]
    pub fn with_sessions(mut self, hub: &SessionHub) -> AckDriver<T> {
        self.sessions = Some(hub.attach());
        self
    }

    /// The connection is over: keeps its session (if it has one, from the hub given to
    /// [`with_sessions`](Self::with_sessions)) for the client to resume, with the last
    /// message handed out as delivered. The driver is unusable afterwards. Returns `true` if
    /// the session was kept (the store's caps may refuse it).
    pub fn detach_session(&mut self) -> bool {
        self.detach(true)
    }

    /// [`detach_session`](Self::detach_session) for an application that did not finish the
    /// last message handed out (it panicked, or was aborted): only the messages it was done
    /// with count as delivered, so the client resends that one on a resume, and it is
    /// delivered again flagged as a redelivery (the application may have acted on it).
    pub fn detach_session_unfinished(&mut self) -> bool {
        self.detach(false)
    }

    pub(super) fn detach(&mut self, finished: bool) -> bool {
        let Some(a) = self.sessions.as_mut() else {
            return false;
        };
        let delivered = if finished {
            self.yielded.max(self.state.taken_through())
        } else {
            self.state.handed_out_unfinished(self.yielded);
            self.state.taken_through()
        };
        let blank = AckState::with_config(AckConfig::new(), 0);
        let state = std::mem::replace(&mut self.state, blank);
        self.failed.get_or_insert_with(|| {
            EarlierError::new("the session was detached", Cause::Local, false)
        });
        a.detach(state, delivered, clock_now())
    }

    /// Accepting side: reads until the peer's HELLO has arrived and its session is settled,
    /// and writes this side's HELLO, so that a peer's handshake does not wait for the
    /// application's first call. Ready also once the driver failed or the peer closed (the
    /// next call reports why; a protocol error met here is returned by it as is).
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<()>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        if self.failed.is_some() || self.read_closed {
            return Poll::Ready(());
        }
        // The sending side's round: it parses every frame it reads (the HELLO included).
        let _ = self.register(Side::Send, cx);
        if let Err(e) = self.with_io_cx(|this, cx| this.progress(cx, Side::Send)) {
            self.record_deferred(e);
            return Poll::Ready(());
        }
        let settled = self.state.peer_hello().is_some() && self.state.session_request().is_none();
        if settled || self.read_closed {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Answers the peer's session request, if there is one (see
    /// [`with_sessions`](Self::with_sessions)). Pending while another live connection holds
    /// the session. Without a `waker` (a call that does not wait) a takeover is neither
    /// started nor waited for.
    pub(super) fn poll_session(&mut self, waker: Option<&Waker>) -> Poll<Result<(), AckError>> {
        if self.state.session_request().is_none() {
            return Poll::Ready(Ok(()));
        }
        match self.sessions.as_mut() {
            Some(a) => a.poll_resolve(&mut self.state, waker, clock_now()),
            None => Poll::Ready(self.state.start_session()),
        }
    }
}

/// Now on tokio's clock (paused in tests) when inside a runtime, else the system's.
pub(super) fn clock_now() -> std::time::Instant {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::time::Instant::now().into_std()
    } else {
        std::time::Instant::now()
    }
}
