//! The accepting side's store of sessions whose connection dropped: bounded in time, count
//! and bytes.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::engine::{AckState, SessionStatus};
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
/// bytes of bookkeeping each), fit; past it sessions holding bytes are evicted as the
/// [store](SessionStore#eviction) says.
pub const DEFAULT_MAX_SESSION_BYTES: u64 = 64 * 1024 * 1024;

/// Sessions whose connection dropped, kept for their clients to resume (see
/// [Sessions](super#sessions)).
///
/// Bounded three ways: a session is kept for [`linger`](Self::linger) after its connection
/// dropped, at most [`max_sessions`](Self::max_sessions) are kept, and together they hold at
/// most [`max_bytes`](Self::max_bytes) of unacknowledged payload. A session is only ever
/// handed to a connection whose HELLO names its id ([`resolve`](Self::resolve)).
///
/// # Eviction
///
/// When a new session would break a cap, kept sessions make room for it by rank, and a
/// session evicted (or not kept) means its client falls back to at-least-once delivery with
/// stable ids, as after a restart. Ranks, lowest first:
///
/// 0. **Empty**: nothing a client would lose: none of its messages delivered in the session
///    and none of this side's unacknowledged. A HELLO alone (a flood of random ids) leaves
///    only these.
/// 1. **Holding state**: messages delivered (the store remembers how far, to drop repeats)
///    or unacknowledged (kept to resend).
/// 2. **Resumed and holding state**: the session's client came back before (its last
///    connection resumed it): a proven returning client.
///
/// A new session evicts only sessions of its own rank or lower: the lowest rank first, and
/// within a rank the one that dropped longest ago (for the byte cap, only sessions holding
/// bytes, since evicting others frees none). If that cannot make room, the new session is
/// not kept (counted as evicted) and nothing is evicted. So a flood of HELLOs cannot evict a
/// session that holds state, and a flood of sessions that deliver messages cannot evict a
/// client that has resumed; an attacker that delivers messages *and* resumes its sessions
/// still can, at two connections per session. Memory stays within both caps either way.
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
    /// Per [`Tier`] (rank, holds bytes): detach time and a tie-breaker -> id, oldest first
    /// (for expiry and eviction).
    order: [BTreeMap<(Instant, u64), SessionId>; TIERS],
    /// Payload bytes per tier.
    tier_bytes: [u64; TIERS],
    next_tie: u64,
    bytes: u64,
    evicted: u64,
    expired: u64,
}

#[derive(Debug)]
struct Entry {
    state: AckState,
    key: (Instant, u64),
    tier: usize,
    bytes: u64,
}

/// Ranks (see [Eviction](SessionStore#eviction)) times "holds bytes or not".
const TIERS: usize = 6;

/// A kept session's tier: `2 * rank + holds_bytes`, for a state just through `reconnect`.
/// `resumed`: its last connection resumed it.
fn tier(state: &AckState, resumed: bool) -> usize {
    let holds_bytes = state.session_bytes() > 0;
    let holds_state = holds_bytes || state.in_flight() > 0 || state.received_through() > 0;
    let rank = match (holds_state, resumed) {
        (false, _) => 0,
        (true, false) => 1,
        (true, true) => 2,
    };
    2 * rank + usize::from(holds_bytes)
}

/// The rank of a tier.
fn rank(tier: usize) -> usize {
    tier / 2
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
            order: Default::default(),
            tier_bytes: [0; TIERS],
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

    /// Sessions evicted to make room, or not kept for want of it, since the store was made.
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
    /// Returns `false` (and drops the state) if it has no session, if it alone holds more
    /// than [`max_bytes`](Self::max_bytes) or the cap on sessions is 0, or if the caps
    /// would be exceeded and evicting sessions of its rank or lower cannot make room (see
    /// [Eviction](SessionStore#eviction)). A session kept under the same id before (a second
    /// connection naming it) is replaced.
    pub fn keep(&mut self, mut state: AckState, delivered_through: u64, now: Instant) -> bool {
        self.expire(now);
        let id = state.session_id();
        if id == [0; 16] {
            return false;
        }
        self.remove(&id);
        let resumed = state.session_status() == SessionStatus::Resumed;
        state.reconnect(delivered_through);
        let bytes = state.session_bytes();
        let tier = tier(&state, resumed);
        if bytes > self.max_bytes || self.max_sessions == 0 || !self.can_make_room(tier, bytes) {
            self.evicted += 1;
            return false;
        }
        // Bytes first (only sessions holding bytes free any), then the count.
        while self.bytes + bytes > self.max_bytes && self.evict_one(tier, true) {}
        while self.entries.len() >= self.max_sessions && self.evict_one(tier, false) {}
        let key = (now, self.next_tie);
        self.next_tie += 1;
        self.order[tier].insert(key, id);
        self.tier_bytes[tier] += bytes;
        self.bytes += bytes;
        self.entries.insert(
            id,
            Entry {
                state,
                key,
                tier,
                bytes,
            },
        );
        true
    }

    /// `true` if evicting sessions of `tier`'s rank or lower makes room for one more holding
    /// `bytes`.
    fn can_make_room(&self, tier: usize, bytes: u64) -> bool {
        let evictable = |t: usize| rank(t) <= rank(tier);
        let count: usize = (0..TIERS)
            .filter(|&t| evictable(t))
            .map(|t| self.order[t].len())
            .sum();
        let freed: u64 = (0..TIERS)
            .filter(|&t| evictable(t))
            .map(|t| self.tier_bytes[t])
            .sum();
        self.entries.len() - count < self.max_sessions
            && self.bytes - freed + bytes <= self.max_bytes
    }

    /// Evicts the session that dropped longest ago among those of the lowest rank up to
    /// `tier`'s (only those holding bytes if `for_bytes`). `false` if there is none.
    fn evict_one(&mut self, tier: usize, for_bytes: bool) -> bool {
        for r in 0..=rank(tier) {
            let oldest = [2 * r, 2 * r + 1]
                .into_iter()
                .filter(|&t| !for_bytes || t % 2 == 1)
                .filter_map(|t| self.order[t].first_key_value().map(|(k, id)| (*k, *id)))
                .min();
            if let Some((_, id)) = oldest {
                self.remove(&id);
                self.evicted += 1;
                return true;
            }
        }
        false
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
        for t in 0..TIERS {
            while let Some((&(since, _), &id)) = self.order[t].first_key_value() {
                if now.saturating_duration_since(since) < self.linger {
                    break;
                }
                self.remove(&id);
                n += 1;
            }
        }
        self.expired += n as u64;
        n
    }

    /// When the next kept session's linger time passes (for a driver's timer), if any.
    pub fn next_expiry(&self) -> Option<Instant> {
        let since = self
            .order
            .iter()
            .filter_map(|o| o.first_key_value().map(|(&(since, _), _)| since))
            .min()?;
        since.checked_add(self.linger)
    }

    fn remove(&mut self, id: &SessionId) -> Option<AckState> {
        let e = self.entries.remove(id)?;
        self.order[e.tier].remove(&e.key);
        self.tier_bytes[e.tier] -= e.bytes;
        self.bytes -= e.bytes;
        Some(e.state)
    }
}
