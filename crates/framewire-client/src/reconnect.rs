//! The reconnect policy: exponential backoff with jitter, bounded by attempts and time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Delay before the first reconnect attempt: 50 ms. Long enough not to hammer a server that
/// is restarting, short enough that a single dropped connection costs little.
pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(50);

/// Largest delay between two attempts: 5 s. Backoff doubles up to here and stays; a server
/// that comes back is found within 5 s.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(5);

/// Factor by which the delay grows after each failed attempt: 2 (classic exponential backoff).
pub const DEFAULT_MULTIPLIER: u32 = 2;

/// Fraction of each delay that is randomised, in percent: 50. Each delay is drawn uniformly
/// from `[delay * (1 - 50%), delay]`, so many clients dropped at once (a server restart) do
/// not all come back in the same instant.
pub const DEFAULT_JITTER_PERCENT: u8 = 50;

/// Attempts after one drop before giving up: 10. With the defaults that is roughly 50 ms +
/// 100 ms + ... + 5 s, about 15-25 s of trying.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// When and how often an ack-mode client reconnects after its connection drops.
///
/// The delays grow exponentially from [`initial_delay`](ReconnectPolicy::initial_delay) by
/// [`multiplier`](ReconnectPolicy::multiplier), capped at
/// [`max_delay`](ReconnectPolicy::max_delay), each one shortened by a random part of up to
/// [`jitter_percent`](ReconnectPolicy::jitter_percent). The client gives up when
/// [`max_attempts`](ReconnectPolicy::max_attempts) attempts have failed or when the next delay
/// would end after [`max_elapsed`](ReconnectPolicy::max_elapsed), whichever comes first. The
/// budget applies per drop: after a successful reconnect it starts afresh. An attempt counts as
/// successful once it has made progress: the connection was established and the peer
/// acknowledged at least one message, even if the connection dropped again while the client was
/// still resending what was unacknowledged.
///
/// ```
/// use std::time::Duration;
/// use framewire_client::ReconnectPolicy;
///
/// let policy = ReconnectPolicy::default()
///     .initial_delay(Duration::from_millis(10))
///     .max_attempts(Some(5))
///     .max_elapsed(Some(Duration::from_secs(2)));
/// assert_eq!(policy.attempt_limit(), Some(5));
/// ```
///
/// # Timeouts and limits
///
/// One rule across framewire's builders: a timeout or limit that can be turned off takes
/// `impl Into<Option<_>>`, so pass the value itself (`Duration::from_secs(5)`, `100`) or
/// `None` for off; one that cannot be off (a connect, close, handshake or grace timeout)
/// takes the plain `Duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    initial_delay: Duration,
    max_delay: Duration,
    multiplier: u32,
    jitter_percent: u8,
    max_attempts: Option<u32>,
    max_elapsed: Option<Duration>,
}

impl Default for ReconnectPolicy {
    /// [`DEFAULT_INITIAL_DELAY`], [`DEFAULT_MAX_DELAY`], [`DEFAULT_MULTIPLIER`],
    /// [`DEFAULT_JITTER_PERCENT`], [`DEFAULT_MAX_ATTEMPTS`], no time limit.
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: DEFAULT_INITIAL_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            multiplier: DEFAULT_MULTIPLIER,
            jitter_percent: DEFAULT_JITTER_PERCENT,
            max_attempts: Some(DEFAULT_MAX_ATTEMPTS),
            max_elapsed: None,
        }
    }
}

impl ReconnectPolicy {
    /// Never reconnect: the first drop hands the unacknowledged messages back.
    pub fn never() -> Self {
        ReconnectPolicy::default().max_attempts(Some(0))
    }

    /// Delay before the first attempt.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Upper bound of any single delay.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Growth factor per failed attempt (1 means a constant delay; 0 acts as 1).
    pub fn multiplier(mut self, factor: u32) -> Self {
        self.multiplier = factor.max(1);
        self
    }

    /// Randomised share of each delay, in percent (clamped to 100).
    pub fn jitter_percent(mut self, percent: u8) -> Self {
        self.jitter_percent = percent.min(100);
        self
    }

    /// Give up after this many failed attempts (`None`: no limit on attempts).
    pub fn max_attempts(mut self, attempts: impl Into<Option<u32>>) -> Self {
        self.max_attempts = attempts.into();
        self
    }

    /// Give up once this much time has passed since the drop (`None`: no time limit).
    pub fn max_elapsed(mut self, limit: impl Into<Option<Duration>>) -> Self {
        self.max_elapsed = limit.into();
        self
    }

    /// The configured attempt limit.
    pub fn attempt_limit(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The configured time limit.
    pub fn elapsed_limit(&self) -> Option<Duration> {
        self.max_elapsed
    }

    /// A fresh schedule of delays for one drop, with jitter seeded from the clock.
    pub(crate) fn backoff(&self) -> Backoff {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.backoff_seeded(nanos)
    }

    /// A fresh schedule of delays with a fixed jitter seed (for reproducible tests).
    pub(crate) fn backoff_seeded(&self, seed: u64) -> Backoff {
        Backoff {
            policy: *self,
            attempts: 0,
            next_base: self.initial_delay,
            rng: splitmix64(seed),
        }
    }
}

/// One splitmix64 step: spreads nearby seeds (clock readings) apart and never returns the
/// all-zero state that xorshift cannot leave.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).max(1)
}

/// The delays of one reconnect episode, from [`ReconnectPolicy::backoff`].
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: ReconnectPolicy,
    attempts: u32,
    next_base: Duration,
    rng: u64,
}

impl Backoff {
    /// The delay to wait before the next attempt, or `None` if the policy gives up.
    ///
    /// `elapsed` is the time since the connection dropped (the caller reads the clock, so this
    /// type stays deterministic). The policy gives up when the attempt limit is reached or
    /// when waiting the delay would pass the time limit.
    pub(crate) fn next_delay(&mut self, elapsed: Duration) -> Option<Duration> {
        if let Some(max) = self.policy.max_attempts {
            if self.attempts >= max {
                return None;
            }
        }
        let base = self.next_base.min(self.policy.max_delay);
        let delay = base.saturating_sub(self.jitter(base));
        if let Some(limit) = self.policy.max_elapsed {
            if elapsed.saturating_add(delay) > limit {
                return None;
            }
        }
        self.attempts += 1;
        self.next_base = base
            .saturating_mul(self.policy.multiplier)
            .min(self.policy.max_delay);
        Some(delay)
    }

    /// Attempts handed out so far.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// A random part of `base`, at most `jitter_percent` of it.
    fn jitter(&mut self, base: Duration) -> Duration {
        // xorshift64: plenty for spreading reconnects, no dependency.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let span = base.as_nanos() * u128::from(self.policy.jitter_percent) / 100;
        if span == 0 {
            return Duration::ZERO;
        }
        let nanos = u128::from(x) % (span + 1);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_cap_and_stay_within_jitter() {
        let policy = ReconnectPolicy::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(1000))
            .jitter_percent(25)
            .max_attempts(Some(8));
        for seed in 0..50 {
            let mut b = policy.backoff_seeded(seed);
            let mut base = Duration::from_millis(100);
            for _ in 0..8 {
                let d = b.next_delay(Duration::ZERO).expect("under the limit");
                assert!(d <= base, "{d:?} > {base:?}");
                assert!(d >= base * 3 / 4, "{d:?} < 75% of {base:?}");
                base = (base * 2).min(Duration::from_millis(1000));
            }
            assert_eq!(b.next_delay(Duration::ZERO), None);
            assert_eq!(b.attempts(), 8);
        }
    }

    #[test]
    fn jitter_actually_varies() {
        let policy = ReconnectPolicy::default().initial_delay(Duration::from_secs(1));
        let delays: std::collections::HashSet<_> = (0..20)
            .map(|s| policy.backoff_seeded(s).next_delay(Duration::ZERO))
            .collect();
        assert!(delays.len() > 10, "only {} distinct delays", delays.len());
    }

    #[test]
    fn zero_jitter_is_exact() {
        let policy = ReconnectPolicy::default()
            .initial_delay(Duration::from_millis(10))
            .multiplier(3)
            .jitter_percent(0);
        let mut b = policy.backoff_seeded(7);
        let got: Vec<_> = (0..3).map(|_| b.next_delay(Duration::ZERO)).collect();
        assert_eq!(
            got,
            vec![
                Some(Duration::from_millis(10)),
                Some(Duration::from_millis(30)),
                Some(Duration::from_millis(90))
            ]
        );
    }

    #[test]
    fn time_limit_gives_up() {
        let policy = ReconnectPolicy::default()
            .initial_delay(Duration::from_millis(100))
            .jitter_percent(0)
            .max_attempts(None)
            .max_elapsed(Some(Duration::from_millis(250)));
        let mut b = policy.backoff_seeded(1);
        assert_eq!(
            b.next_delay(Duration::ZERO),
            Some(Duration::from_millis(100))
        );
        // 100 ms passed; the next delay (200 ms) would end at 300 ms > 250 ms.
        assert_eq!(b.next_delay(Duration::from_millis(100)), None);
    }

    #[test]
    fn never_never_tries() {
        assert_eq!(
            ReconnectPolicy::never()
                .backoff_seeded(3)
                .next_delay(Duration::ZERO),
            None
        );
    }

    #[test]
    fn unlimited_attempts_do_not_overflow() {
        let policy = ReconnectPolicy::default()
            .max_attempts(None)
            .max_delay(Duration::from_secs(60));
        let mut b = policy.backoff_seeded(9);
        for _ in 0..200 {
            let d = b.next_delay(Duration::ZERO).expect("unlimited");
            assert!(d <= Duration::from_secs(60));
        }
    }
}
