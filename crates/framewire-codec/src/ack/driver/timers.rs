//! The engine's timers (keepalive PING, peer timeout) on tokio's clock, and by hand.

use std::future::Future;
use std::task::Context;

use tokio::io::{AsyncRead, AsyncWrite};

use super::AckDriver;
use crate::ack::AckError;
use crate::EarlierError;

/// How many timer rounds one poll runs at most (each round moves the deadline forward; the
/// bound only guards against a clock that does not move).
pub(super) const TIMER_ROUNDS: usize = 4;

impl<T> AckDriver<T> {
    /// Advances the engine's timers to `now` by hand (the driver also runs them itself).
    ///
    /// # Errors
    ///
    /// [`AckError::PeerSilent`]; the driver is failed from then on.
    pub fn handle_timeout(&mut self, now: std::time::Instant) -> Result<(), AckError> {
        self.check_failed()?;
        self.timers_started = true;
        let r = self.state.handle_timeout(now);
        if let Err(e) = &r {
            self.failed = Some(EarlierError::from(e));
        }
        r
    }

    /// When the engine's timers are due next.
    pub fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.state.poll_timeout()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AckDriver<T> {
    /// Runs the engine's timers on tokio's clock: arms them at the first call, queues a
    /// keepalive PING when due, fails with [`AckError::PeerSilent`] after the peer timeout.
    pub(super) fn poll_timers(&mut self, cx: &mut Context<'_>) -> Result<(), AckError> {
        if !self.timers_started {
            if tokio::runtime::Handle::try_current().is_err() {
                return Ok(());
            }
            self.timers_started = true;
            self.state
                .handle_timeout(tokio::time::Instant::now().into_std())?;
        }
        for _ in 0..TIMER_ROUNDS {
            let Some(deadline) = self.state.poll_timeout() else {
                self.timer = None;
                return Ok(());
            };
            let deadline = tokio::time::Instant::from_std(deadline);
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            self.state
                .handle_timeout(tokio::time::Instant::now().into_std())?;
        }
        Ok(())
    }
}
