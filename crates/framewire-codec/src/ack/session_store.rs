//! The accepting side's store of sessions whose connection dropped: bounded in time, count
//! and bytes.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::engine::AckState;
use super::wire::SessionId;
use super::AckError;

/// Default time a session is kept after its connection dropped: 60 s.
///
/// A client with the default reconnect settings (50 ms doubling to 5 s, 10 attempts, up to 50%
/// jitter) tries for at most about 32 s; 60 s covers that whole schedule with room for a slow
/// accept queue, and is the same as the server's default idle timeout, so a session never
/// outlives by much what an idle connection would have cost.
pub const DEFAULT_SESSION_LINGER: Duration = Duration::from_secs(60);

/// Default cap on sessions kept at once: 10,000, the server's default connection cap, so a
/// server full of connections that all drop at once (a network blip) keeps every session.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;

/// Default cap on the payload bytes kept in stored sessions (their unacknowledged outgoing
/// messages): 64 MiB. One session holds at most its unacknowledged byte cap (1 MiB by
/// default), so 64 full windows, or any number of idle sessions (which hold a few hundred
/// bytes of bookkeeping each), fit; past it the sessions that dropped longest ago go first.
pub const DEFAULT_MAX_SESSION_BYTES: u64 = 64 * 1024 * 1024;

/// Sessions whose connection dropped, kept for their clients to resume (see
/// [Sessions](super#sessions)).
///
/// Bounded three ways: a session is kept for [`linger`](Self::linger) after its connection
/// dropped, at most [`max_sessions`](Self::max_sessions) are kept, and together they hold at
/// most [`max_bytes`](Self::max_bytes) of unacknowledged payload. When a new session would
/// break a cap, the sessions that dropped longest ago are evicted first; their clients fall
/// back to at-least-once delivery with stable ids, as after a restart. A session is only ever
/// handed to a connection whose HELLO names its id ([`resolve`](Self::resolve)).
///
/// No clock reads: every call takes `now`.
///
/// ```
/// use std::time::{Duration, Instant};
/// use framewire_codec::ack::{AckConfig, AckState, SessionStore};
///
/// let mut store = SessionStore::new();
/// store.set_linger(Duration::from_secs(5));
/// let now = Instant::now();
/// let sessionless = AckState::accepting(AckConfig::new(), 1024);
/// assert!(!store.keep(sessionless, 0, now), "only states with a session are kept");
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Debug)]
pub struct SessionStore {
    linger: Duration,
    max_sessions: usize,
    max_bytes: u64,
    entries: HashMap<SessionId, Entry>,
    /// Detach time and a tie-breaker -> id, oldest first (for expiry and eviction).
    order: BTreeMap<(Instant, u64), SessionId>,
    next_tie: u64,
    bytes: u64,
    evicted: u64,
    expired: u64,
}

#[derive(Debug)]
struct Entry {
    state: AckState,
    key: (Instant, u64),
    bytes: u64,
}

impl Default for SessionStore {
    fn default() -> SessionStore {
        SessionStore::new()
    }
}

impl SessionStore {
    /// An empty store with [`DEFAULT_SESSION_LINGER`], [`DEFAULT_MAX_SESSIONS`] and
    /// [`DEFAULT_MAX_SESSION_BYTES`].
    pub fn new() -> SessionStore {
        SessionStore {
            linger: DEFAULT_SESSION_LINGER,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_bytes: DEFAULT_MAX_SESSION_BYTES,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_tie: 0,
            bytes: 0,
            evicted: 0,
            expired: 0,
        }
    }

    /// Sets how long a session is kept after its connection dropped.
    pub fn set_linger(&mut self, linger: Duration) -> &mut SessionStore {
        self.linger = linger;
        self
    }

    /// Sets the cap on sessions kept (0 keeps none: every resume falls back to at-least-once).
    pub fn set_max_sessions(&mut self, max: usize) -> &mut SessionStore {
        self.max_sessions = max;
        self
    }

    /// Sets the cap on unacknowledged payload bytes kept across all sessions.
    pub fn set_max_bytes(&mut self, max: u64) -> &mut SessionStore {
        self.max_bytes = max;
        self
    }

    /// How long a session is kept after its connection dropped.
    pub fn linger(&self) -> Duration {
        self.linger
    }

    /// The cap on sessions kept.
    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// The cap on payload bytes kept.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Sessions kept now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` if no session is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Unacknowledged payload bytes held by the sessions kept now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Sessions evicted to make room, since the store was made.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Sessions dropped because their linger time passed, since the store was made.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// The connection of `state` dropped: keep its session for the client to resume.
    /// `delivered_through` is the highest seq the handler got (see [`AckState::reconnect`]).
    ///
    /// Returns `false` (and drops the state) if it has no session, or if it alone holds more
    /// than [`max_bytes`](Self::max_bytes) or the cap on sessions is 0. Evicts the sessions
    /// that dropped longest ago while a cap would be exceeded. A session kept under the same
    /// id before (a second connection naming it) is replaced.
    pub fn keep(&mut self, mut state: AckState, delivered_through: u64, now: Instant) -> bool {
        self.expire(now);
        let id = state.session_id();
        if id == [0; 16] {
            return false;
        }
        self.remove(&id);
        state.reconnect(delivered_through);
        let bytes = state.session_bytes();
        if bytes > self.max_bytes || self.max_sessions == 0 {
            self.evicted += 1;
            return false;
        }
        while self.entries.len() >= self.max_sessions || self.bytes + bytes > self.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes -= e.bytes;
                self.evicted += 1;
            }
        }
        let key = (now, self.next_tie);
        self.next_tie += 1;
        self.order.insert(key, id);
        self.bytes += bytes;
        self.entries.insert(id, Entry { state, key, bytes });
        true
    }

    /// Answers `state`'s [`SessionRequest`](super::SessionRequest), if it has one: with the
    /// session kept under exactly the requested id, if its linger time has not passed
    /// ([`AckState::adopt`]), else with a fresh record ([`AckState::start_session`]). After
    /// it, [`AckState::session_status`] says which.
    ///
    /// # Errors
    ///
    /// Those of [`AckState::adopt`] and [`AckState::start_session`]: a HELLO whose `delivered
    /// through` does not fit the session (the kept session is dropped then).
    pub fn resolve(&mut self, state: &mut AckState, now: Instant) -> Result<(), AckError> {
        self.expire(now);
        let Some(req) = state.session_request() else {
            return Ok(());
        };
        match self.remove(&req.id) {
            Some(stored) => state.adopt(stored),
            None => state.start_session(),
        }
    }

    /// Drops the sessions whose linger time has passed at `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some((&(since, _), _)) = self.order.first_key_value() {
            if now.saturating_duration_since(since) < self.linger {
                break;
            }
            if let Some((_, id)) = self.order.pop_first() {
                if let Some(e) = self.entries.remove(&id) {
                    self.bytes -= e.bytes;
                }
            }
            n += 1;
        }
        self.expired += n as u64;
        n
    }

    /// When the next kept session's linger time passes (for a driver's timer), if any.
    pub fn next_expiry(&self) -> Option<Instant> {
        let (&(since, _), _) = self.order.first_key_value()?;
        since.checked_add(self.linger)
    }

    fn remove(&mut self, id: &SessionId) -> Option<AckState> {
        let e = self.entries.remove(id)?;
        self.order.remove(&e.key);
        self.bytes -= e.bytes;
        Some(e.state)
    }
}
