//! Opening and re-opening connections: [`AckSettings`] (what a connection needs, and
//! [`AckSettings::open`] over the endpoints), the HELLO exchange ([`hello`]), a new session's
//! state ([`session_state`]), and the driver's reconnect loop ([`Driver::reconnect`]) with the
//! resend for servers without sessions ([`Driver::resend`]).

use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use framewire_codec::ack::{new_session_id, AckError, AckFramedBuilder, AckState, SessionId};
use framewire_codec::{EarlierError, FrameCodecBuilder, FrameError};

use super::driver::Driver;
use super::end::Stop;
use super::Conn;
use crate::tls::ClientTls;
use crate::transport::{ByteStream, Endpoints, Open};
use crate::{ClientError, Endpoint, ReconnectPolicy};

/// While resending after a reconnect, the acks that arrived are read after every this many
/// messages (without waiting): one read attempt per 32 resent messages.
pub(super) const RESEND_READ_EVERY: usize = 32;

/// Everything needed to open (and re-open) an ack-mode connection.
#[derive(Debug, Clone)]
pub(crate) struct AckSettings {
    pub(crate) endpoints: Endpoints,
    pub(crate) connect_timeout: std::time::Duration,
    pub(crate) codec: FrameCodecBuilder,
    pub(crate) ack: AckFramedBuilder,
    pub(crate) policy: ReconnectPolicy,
    pub(crate) ack_timeout: Option<std::time::Duration>,
    pub(crate) deadlock_grace: Option<std::time::Duration>,
    pub(crate) tls: Option<ClientTls>,
}

impl AckSettings {
    /// Connects to the first endpoint that answers, starting with the current one, and
    /// completes the HELLO exchange (and, with TLS, the TLS handshake before it); both within
    /// the connect timeout, per endpoint. With `state` (the session's, after
    /// [`AckState::reconnect`]) the connection resumes the session; the state is handed back
    /// if no endpoint answered.
    pub(super) async fn open(
        &mut self,
        state: Option<AckState>,
    ) -> (Result<Conn, ClientError>, Option<AckState>) {
        let (timeout, codec, ack) = (self.connect_timeout, self.codec, self.ack);
        let tls = self.tls.clone();
        let kept = Mutex::new(state);
        let r = self
            .endpoints
            .first_answering(|endpoint| {
                let endpoint = endpoint.clone();
                let tls = tls.clone();
                let kept = &kept;
                async move {
                    let transport = endpoint.open(timeout, tls.as_ref()).await?;
                    let state = kept.lock().unwrap_or_else(PoisonError::into_inner).take();
                    match hello(ack, codec, timeout, &endpoint, transport, state).await {
                        Ok(conn) => Ok(conn),
                        Err((e, state)) => {
                            *kept.lock().unwrap_or_else(PoisonError::into_inner) = state;
                            Err(e)
                        }
                    }
                }
            })
            .await;
        (r, kept.into_inner().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Completes the HELLO exchange over a connected stream, within `timeout`; driving `state`
/// if given (a session), else a new connection-scoped state. On failure the state is handed
/// back, ready for the next attempt.
pub(super) async fn hello(
    ack: AckFramedBuilder,
    codec: FrameCodecBuilder,
    timeout: std::time::Duration,
    endpoint: &Endpoint,
    transport: ByteStream,
    state: Option<AckState>,
) -> Result<Conn, (ClientError, Option<AckState>)> {
    let with_state = state.is_some();
    let mut conn = match state {
        Some(state) => ack.driver_with_state(transport, codec.build(), state),
        None => ack.driver(transport, codec.build()),
    };
    let e = match tokio::time::timeout(timeout, conn.handshake()).await {
        Ok(Ok(_hello)) => return Ok(conn),
        // The peer's HELLO arrived and the session resumed; what failed came after it (the
        // connection dropped while the peer resent): a connection like any other that
        // dropped, whose messages received meanwhile are still delivered.
        Ok(Err(_)) if with_state && conn.state().peer_hello().is_some() => return Ok(conn),
        Ok(Err(source)) => ClientError::Handshake {
            endpoint: endpoint.to_string(),
            source,
        },
        Err(_) => ClientError::HandshakeTimeout {
            endpoint: endpoint.to_string(),
            timeout,
        },
    };
    let state = with_state.then(|| {
        // Messages received but not handed out are dropped with the connection: the peer
        // resends them.
        let (.., mut state, dropped) = conn.into_parts();
        let delivered = state.received_through() - dropped.len() as u64;
        state.reconnect(delivered);
        state
    });
    Err((e, state))
}

/// A new session's state for `ack`'s settings and `codec`'s frame limit.
pub(super) fn session_state(
    ack: &AckFramedBuilder,
    codec: &FrameCodecBuilder,
) -> Result<(SessionId, AckState), ClientError> {
    let id = new_session_id().map_err(|e| ClientError::Frame(FrameError::Io(e)))?;
    let max = codec.build().max_frame_len();
    Ok((id, AckState::with_session(ack.ack_config(), max, id)))
}

impl Driver {
    /// Reconnects per the policy and resends every unacknowledged message, flagged.
    pub(super) async fn reconnect(&mut self, first: EarlierError) -> Result<Conn, Stop> {
        let mut started = Instant::now();
        let mut backoff = self.settings.policy.backoff();
        let mut last_error = first;
        loop {
            let Some(delay) = backoff.next_delay(started.elapsed()) else {
                self.freeze_queue();
                return Err(Stop::GaveUp {
                    attempts: backoff.attempts(),
                    elapsed: started.elapsed(),
                    last_error,
                    unacked: self.unacked_payloads(None),
                });
            };
            tokio::time::sleep(delay).await;
            let state = if self.sessions {
                match self.state.take() {
                    Some(state) => Some(state),
                    // Not kept (cannot happen while connected): a new session, as after a
                    // restart of this client.
                    None => Some(
                        session_state(&self.settings.ack, &self.settings.codec)
                            .map_err(|e| Stop::GaveUp {
                                attempts: backoff.attempts(),
                                elapsed: started.elapsed(),
                                last_error: EarlierError::from(&e),
                                unacked: self.unacked_payloads(None),
                            })?
                            .1,
                    ),
                }
            } else {
                None
            };
            let (opened, state) = self.settings.open(state).await;
            self.state = state;
            let mut conn = match opened {
                Ok(conn) => {
                    self.shared.set_limits(&conn);
                    if self.sessions {
                        // The engine resends what the server does not have.
                        self.resumed(&conn);
                        return Ok(conn);
                    }
                    conn
                }
                Err(e) => {
                    tracing::debug!(error = %e, attempt = backoff.attempts(), "reconnect failed");
                    last_error = EarlierError::from(&e);
                    continue;
                }
            };
            match self.resend(&mut conn).await {
                Ok(()) => return Ok(conn),
                Err(e) => {
                    // The policy bounds failures in a row: a connection on which the peer
                    // acknowledged messages made progress, so the count starts over (a long
                    // resend cut again and again still gets through, a piece per connection).
                    if self.settle_now(&conn) {
                        backoff = self.settings.policy.backoff();
                        started = Instant::now();
                    }
                    self.stash_unacked(&mut conn);
                    last_error = EarlierError::from(&e);
                }
            }
        }
    }

    /// Without sessions: sends every tracked message again, flagged, from the stash. On an
    /// error the payloads not yet handed to `conn` stay in the stash (the caller moves those
    /// `conn` holds back in front of them).
    ///
    /// No connection is installed meanwhile, so no send touches `tracked` (they queue).
    async fn resend(&mut self, conn: &mut Conn) -> Result<(), AckError> {
        let count = {
            let mut slot = self.shared.slot();
            for t in slot.tracked.iter_mut() {
                t.seq = u64::MAX;
            }
            slot.tracked.len()
        };
        for i in 0..count {
            {
                let mut slot = self.shared.slot();
                if slot.tracked[i].refused {
                    slot.tracked[i].seq = 0;
                    continue;
                }
            }
            poll_fn(|cx| conn.poll_ready(cx)).await?;
            let Some(payload) = self.stash.pop_front() else {
                // Cannot happen: the stash holds one payload per tracked message not refused.
                break;
            };
            let seq = match conn.try_start_send(payload, true) {
                Ok(seq) => seq,
                Err((e, payload)) => {
                    self.stash.push_front(payload);
                    return Err(e);
                }
            };
            poll_fn(|cx| conn.poll_write(cx)).await?;
            self.shared.slot().tracked[i].seq = seq;
            self.shared.redeliveries.fetch_add(1, Ordering::Relaxed);
            if i % RESEND_READ_EVERY == RESEND_READ_EVERY - 1 {
                // Read the acks that arrived meanwhile: if this connection is cut before the
                // resend ends, what the peer took is settled, not resent once more.
                poll_fn(|cx| conn.poll_progress(cx)).await?;
            }
        }
        Ok(())
    }
}
