//! A server's sessions, shared by its connections: the [`SessionStore`] of sessions whose
//! connection dropped, and the sessions attached to a live connection (for takeover).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use super::engine::{AckState, SessionStatus};
use super::session_store::SessionStore;
use super::wire::SessionId;
use super::AckError;

/// The sessions of one accepting side (a server), shared by all its connections' drivers
/// ([`AckDriver::with_sessions`](super::AckDriver::with_sessions)). Cloning it shares it.
///
/// - A connection whose HELLO names a session gets it from the [`SessionStore`] if it was
///   kept ([`SessionStatus::Resumed`]: exactly once), or a fresh record otherwise
///   ([`SessionStatus::Lost`]: at least once, stable ids).
/// - When the connection ends, the server calls
///   [`AckDriver::detach_session`](super::AckDriver::detach_session): the session is kept in
///   the store (bounded by its linger, count and byte caps).
/// - **Takeover.** A HELLO naming a session that is still attached to a live connection (the
///   client reconnected before the server noticed the old connection was gone) does not get
///   a copy: the old connection is told to end (its driver fails with
///   [`AckError::SessionTakenOver`] at its next call, a send or a buffered receive
///   included), and the new connection's HELLO waits until the old one has detached the
///   session, then resumes it from the store. No message is handed to the application twice,
///   and nothing is lost. The wait lasts until the old connection's application calls the
///   driver again (or ends); a client whose handshake times out meanwhile simply tries
///   again.
#[derive(Debug, Clone, Default)]
pub struct SessionHub {
    inner: Arc<Mutex<HubInner>>,
}

#[derive(Debug, Default)]
struct HubInner {
    store: SessionStore,
    live: HashMap<SessionId, Live>,
    next_token: u64,
    taken_over: u64,
    lost: u64,
}

#[derive(Debug)]
struct Live {
    token: u64,
    flag: Arc<Superseded>,
    /// New connections waiting for this one to detach.
    waiters: Vec<Waker>,
}

/// Set when a newer connection wants the session; the holder's driver ends then.
#[derive(Debug, Default)]
pub(super) struct Superseded {
    set: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Superseded {
    fn trip(&self) {
        self.set.store(true, Ordering::SeqCst);
        if let Some(w) = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            w.wake();
        }
    }
}

/// One driver's tie to the hub: its token and, once its HELLO was answered, the session it
/// holds. Dropping it releases the session without keeping it.
#[derive(Debug)]
pub(super) struct Attached {
    hub: SessionHub,
    token: u64,
    held: Option<(SessionId, Arc<Superseded>)>,
}

impl SessionHub {
    /// A hub around `store` (its caps and linger apply).
    pub fn new(store: SessionStore) -> SessionHub {
        SessionHub {
            inner: Arc::new(Mutex::new(HubInner {
                store,
                ..HubInner::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the store (e.g. to read its counters or change its caps).
    pub fn with_store<R>(&self, f: impl FnOnce(&mut SessionStore) -> R) -> R {
        f(&mut self.lock().store)
    }

    /// Sessions attached to a live connection now.
    pub fn live(&self) -> usize {
        self.lock().live.len()
    }

    /// New connections waiting now for a live connection to let go of their session (a
    /// takeover in progress).
    pub fn waiting(&self) -> usize {
        self.lock().live.values().map(|l| l.waiters.len()).sum()
    }

    /// Sessions taken over from a live connection by a newer one, since the hub was made.
    pub fn taken_over(&self) -> u64 {
        self.lock().taken_over
    }

    /// Resuming HELLOs that named a session this side no longer had (answered as
    /// [`SessionStatus::Lost`]), since the hub was made.
    pub fn lost(&self) -> u64 {
        self.lock().lost
    }

    /// Drops the kept sessions whose linger time passed; returns when the next one expires.
    pub fn expire(&self, now: Instant) -> Option<Instant> {
        let mut inner = self.lock();
        inner.store.expire(now);
        inner.store.next_expiry()
    }

    pub(super) fn attach(&self) -> Attached {
        let mut inner = self.lock();
        inner.next_token += 1;
        Attached {
            hub: self.clone(),
            token: inner.next_token,
            held: None,
        }
    }
}

impl Attached {
    /// Answers `state`'s session request, if any. Pending while the session is attached to
    /// another live connection; with a `waker` (a caller about to wait), that connection is
    /// told to end and the waker is kept (once) to be woken when it has let go. Without one
    /// (a call that does not wait, such as `try_recv`) nothing is registered or tripped.
    pub(super) fn poll_resolve(
        &mut self,
        state: &mut AckState,
        waker: Option<&Waker>,
        now: Instant,
    ) -> Poll<Result<(), AckError>> {
        let Some(req) = state.session_request() else {
            return Poll::Ready(Ok(()));
        };
        let mut inner = self.hub.lock();
        let busy = match inner.live.get_mut(&req.id) {
            Some(live) if live.token != self.token => Some(waker.is_some_and(|w| {
                let first = !live.flag.set.load(Ordering::SeqCst);
                if first {
                    live.flag.trip();
                }
                if !live.waiters.iter().any(|old| old.will_wake(w)) {
                    live.waiters.push(w.clone());
                }
                first
            })),
            _ => None,
        };
        if let Some(first) = busy {
            if first {
                inner.taken_over += 1;
            }
            return Poll::Pending;
        }
        inner.store.resolve(state, now)?;
        if req.resume && state.session_status() == SessionStatus::Lost {
            inner.lost += 1;
        }
        let flag = Arc::new(Superseded::default());
        inner.live.insert(
            req.id,
            Live {
                token: self.token,
                flag: Arc::clone(&flag),
                waiters: Vec::new(),
            },
        );
        self.held = Some((req.id, flag));
        Poll::Ready(Ok(()))
    }

    /// `true` once a newer connection wants this driver's session (one atomic load; no
    /// waker registered). Inlined: the receive and send fast paths check it per message.
    #[inline]
    pub(super) fn is_superseded(&self) -> bool {
        self.held
            .as_ref()
            .is_some_and(|(_, flag)| flag.set.load(Ordering::SeqCst))
    }

    /// `true` once a newer connection wants this driver's session; otherwise registers `cx`
    /// to be woken when one does.
    pub(super) fn superseded(&self, cx: &mut Context<'_>) -> bool {
        let Some((_, flag)) = &self.held else {
            return false;
        };
        if flag.set.load(Ordering::SeqCst) {
            return true;
        }
        let mut w = flag.waker.lock().unwrap_or_else(PoisonError::into_inner);
        match &*w {
            Some(old) if old.will_wake(cx.waker()) => {}
            _ => *w = Some(cx.waker().clone()),
        }
        drop(w);
        flag.set.load(Ordering::SeqCst)
    }

    /// The connection is over: keeps `state` (the session) in the store, with
    /// `delivered_through` as the last seq handed to the application, and wakes a connection
    /// waiting to take it over. Returns `true` if it was kept.
    pub(super) fn detach(&mut self, state: AckState, delivered_through: u64, now: Instant) -> bool {
        let Some((id, _)) = self.held.take() else {
            return false;
        };
        let mut inner = self.hub.lock();
        let waiters = match inner.live.get(&id) {
            Some(live) if live.token == self.token => inner
                .live
                .remove(&id)
                .map(|l| l.waiters)
                .unwrap_or_default(),
            _ => return false,
        };
        let kept = inner.store.keep(state, delivered_through, now);
        drop(inner);
        for w in waiters {
            w.wake();
        }
        kept
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let Some((id, _)) = self.held.take() else {
            return;
        };
        let mut inner = self.hub.lock();
        let waiters = match inner.live.get(&id) {
            Some(live) if live.token == self.token => inner
                .live
                .remove(&id)
                .map(|l| l.waiters)
                .unwrap_or_default(),
            _ => return,
        };
        drop(inner);
        for w in waiters {
            w.wake();
        }
    }
}
