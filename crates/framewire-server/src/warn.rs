//! Rate-limited warnings about connections, so that a flood of failing or refused connections
//! cannot flood the log.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most warnings about connections written per [`WARN_WINDOW`]: 10.
///
/// Enough to show what is going on (the first failures of a burst, each with its peer), few
/// enough that a peer failing thousands of connections a second writes a dozen lines a second,
/// not thousands. The rest are counted and reported in one line (see [`WarnLimit`]); every
/// failure is still counted in [`Stats`](crate::Stats).
pub(crate) const WARN_BURST: u32 = 10;

/// The window [`WARN_BURST`] applies to: one second.
pub(crate) const WARN_WINDOW: Duration = Duration::from_secs(1);

/// A budget of [`WARN_BURST`] warnings per [`WARN_WINDOW`], shared by the whole server.
#[derive(Debug, Default)]
pub(crate) struct WarnLimit {
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    start: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl WarnLimit {
    /// Whether one more warning may be written now. The first call in a new window first
    /// writes one warning saying how many were suppressed in the window before, if any.
    pub(crate) fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    /// [`allow`](Self::allow) at a given time (tests drive the clock).
    fn allow_at(&self, now: Instant) -> bool {
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if w.start
            .is_none_or(|start| now.duration_since(start) >= WARN_WINDOW)
        {
            report(w.suppressed);
            *w = Window {
                start: Some(now),
                written: 0,
                suppressed: 0,
            };
        }
        if w.written < WARN_BURST {
            w.written += 1;
            true
        } else {
            w.suppressed += 1;
            false
        }
    }

    /// Writes the count of warnings suppressed since the last report, if any (at shutdown).
    pub(crate) fn flush(&self) {
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        report(std::mem::take(&mut w.suppressed));
    }
}

fn report(suppressed: u64) {
    if suppressed > 0 {
        tracing::warn!(
            suppressed,
            "{suppressed} more connection warnings suppressed (at most {WARN_BURST} a second are written; Stats counts every one)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_per_window_then_suppresses() {
        let limit = WarnLimit::default();
        let now = Instant::now();
        // 100 calls at the same instant: the burst, then nothing.
        let allowed = (0..100).filter(|_| limit.allow_at(now)).count();
        assert_eq!(allowed, WARN_BURST as usize);
        let w = limit.window.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(w.suppressed, 100 - u64::from(WARN_BURST));
    }

    #[test]
    fn a_new_window_allows_again() {
        let limit = WarnLimit::default();
        let now = Instant::now();
        for _ in 0..20 {
            limit.allow_at(now);
        }
        assert!(!limit.allow_at(now + WARN_WINDOW / 2), "same window");
        assert!(limit.allow_at(now + WARN_WINDOW));
        let w = limit.window.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!((w.written, w.suppressed), (1, 0));
    }
}
