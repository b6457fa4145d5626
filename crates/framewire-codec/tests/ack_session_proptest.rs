//! Ack sessions driven as a pair of engines, without sockets: a connecting side
//! ([`AckState::with_session`]) and an accepting side ([`AckState::accepting`]) with a session
//! store, through random interleavings of sends, transmissions, deliveries, takes and
//! connection cuts (every frame in flight lost, each side's unread inbox dropped), then
//! resumed.
//!
//! While the accepting side keeps the session: every message reaches each application exactly
//! once, in order, never flagged as a redelivery, with the id (session, seq) its sender got
//! from `send`. When the accepting side loses it (a restart): nothing is lost, a message that
//! reaches the application twice has the same id and payload both times and is flagged the
//! second time.
//!
//! `cut_at_every_point` cuts a fixed exchange after each of its steps in turn.

// Helpers outside #[test] functions unwrap too: this is test code.
#![allow(clippy::unwrap_used)]

#[path = "../../../fuzz/src/session_targets.rs"]
#[allow(unreachable_pub)]
mod session_targets;

use std::collections::HashMap;

use bytes::Bytes;
use framewire_codec::ack::{AckConfig, AckState, Delivery, MessageId, SessionId, SessionStatus};
use proptest::prelude::*;
use session_targets::Side;

const SESSION: SessionId = [7; 16];

fn config(window: u32) -> AckConfig {
    AckConfig::new().window(window).window_bytes(64)
}

/// The accepting side's driver: a state per connection plus the store of detached sessions.
struct Pair {
    client: Side,
    server: Side,
    store: HashMap<SessionId, AckState>,
    server_window: u32,
    counter: usize,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Send,
    Transmit,
    Deliver,
    Take,
    Idle,
    Cut,
}

fn op() -> impl Strategy<Value = (bool, Op)> {
    (
        any::<bool>(),
        prop_oneof![
            3 => Just(Op::Send),
            3 => Just(Op::Transmit),
            3 => Just(Op::Deliver),
            2 => Just(Op::Take),
            1 => Just(Op::Idle),
            1 => Just(Op::Cut),
        ],
    )
}

impl Pair {
    fn new(client_window: u32, server_window: u32) -> Pair {
        Pair {
            client: Side::new(AckState::with_session(
                config(client_window),
                1 << 16,
                SESSION,
            )),
            server: Side::new(AckState::accepting(config(server_window), 1 << 16)),
            store: HashMap::new(),
            server_window,
            counter: 0,
        }
    }

    /// Hands one frame to the side `to_server` names; the server answers session requests at
    /// once, as its driver does.
    fn feed(&mut self, to_server: bool, frame: Bytes) {
        let rx = if to_server {
            &mut self.server
        } else {
            &mut self.client
        };
        if let Some(d) = rx.state.handle_frame(frame).unwrap() {
            rx.inbox.push_back(d);
        }
        if !to_server {
            return;
        }
        if let Some(req) = self.server.state.session_request() {
            assert_eq!(req.id, SESSION);
            match self.store.remove(&req.id) {
                Some(stored) => self.server.state.adopt(stored).unwrap(),
                None => self.server.state.start_session().unwrap(),
            }
        }
    }

    fn step(&mut self, client_acts: bool, op: Op) {
        match op {
            Op::Cut => self.cut(false),
            Op::Deliver => {
                let from = if client_acts {
                    &mut self.client
                } else {
                    &mut self.server
                };
                if let Some(f) = from.wire.pop_front() {
                    self.feed(client_acts, f);
                }
            }
            _ => {
                let me = if client_acts {
                    &mut self.client
                } else {
                    &mut self.server
                };
                local_step(me, op, &mut self.counter);
            }
        }
    }

    /// The connection dies: frames in flight and unread inboxes are lost. The server keeps
    /// the session in its store, unless `restart` (the process restarted: store gone, and
    /// with it what the server had not handed to its application).
    fn cut(&mut self, restart: bool) {
        for side in [&mut self.client, &mut self.server] {
            side.wire.clear();
            side.inbox.clear();
        }
        self.client.state.reconnect(self.client.handed);
        let fresh = AckState::accepting(config(self.server_window), 1 << 16);
        let mut old = std::mem::replace(&mut self.server.state, fresh);
        if restart {
            self.store.clear();
            self.server.sent.clear();
            self.server.handed = 0;
        } else if old.session_id() == SESSION {
            old.reconnect(self.server.handed);
            self.store.insert(SESSION, old);
        }
    }

    fn hop(&mut self, client_to_server: bool) {
        let from = if client_to_server {
            &mut self.client
        } else {
            &mut self.server
        };
        while let Some(f) = from.state.poll_transmit() {
            from.wire.push_back(f.to_bytes());
        }
        let frames: Vec<Bytes> = from.wire.drain(..).collect();
        for f in frames {
            self.feed(client_to_server, f);
        }
    }

    /// Runs the connection until nothing moves: every message delivered and acknowledged.
    fn drain(&mut self) {
        // Bounded: each round moves everything one hop; a handful of rounds settles.
        for _ in 0..16 {
            self.hop(true);
            self.hop(false);
            for me in [&mut self.client, &mut self.server] {
                while !me.inbox.is_empty() {
                    local_step(me, Op::Take, &mut 0);
                }
                me.state.reader_idle();
            }
        }
    }
}

fn local_step(me: &mut Side, op: Op, counter: &mut usize) {
    match op {
        Op::Send => {
            if me.state.has_room() {
                let m = Bytes::from(format!("m{counter}"));
                *counter += 1;
                let seq = me.state.send(m.clone(), false).unwrap();
                // Sequence numbers run per session: the next one after everything sent.
                assert_eq!(seq, me.sent.len() as u64 + 1);
                me.sent.push(m);
            }
        }
        Op::Transmit => {
            if let Some(f) = me.state.poll_transmit() {
                me.wire.push_back(f.to_bytes());
            }
        }
        Op::Take => {
            if let Some(d) = me.inbox.pop_front() {
                me.handed = d.seq;
                me.state.taken(d.seq).unwrap();
                me.got.push(d);
            }
        }
        Op::Idle => me.state.reader_idle(),
        Op::Deliver | Op::Cut => unreachable!("handled by Pair::step"),
    }
}

/// Exactly once, in order, with the sender's ids, never flagged: `rx` got a prefix of what
/// `tx` sent.
fn check_exactly_once(tx: &Side, rx: &Side) {
    assert!(rx.got.len() <= tx.sent.len());
    for (i, d) in rx.got.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_eq!(
            d.id(),
            MessageId {
                session: SESSION,
                seq
            }
        );
        assert_eq!(d.payload, tx.sent[i], "message {seq}");
        assert!(
            !d.redelivered,
            "message {seq} flagged while the session lived"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random interleavings with cuts anywhere; the server keeps the session throughout.
    #[test]
    fn resume_after_random_cuts(
        wc in 1u32..=6,
        ws in 1u32..=6,
        ops in proptest::collection::vec(op(), 0..400),
    ) {
        let mut p = Pair::new(wc, ws);
        for (client_acts, op) in ops {
            p.step(client_acts, op);
            check_exactly_once(&p.client, &p.server);
            check_exactly_once(&p.server, &p.client);
        }
        p.drain();
        for (tx, rx) in [(&p.client, &p.server), (&p.server, &p.client)] {
            check_exactly_once(tx, rx);
            prop_assert_eq!(rx.got.len(), tx.sent.len(), "everything delivered");
            prop_assert!(tx.state.all_acked());
            prop_assert_eq!(tx.state.acked_through(), tx.sent.len() as u64);
        }
        prop_assert_eq!(p.client.state.duplicates_dropped(), 0);
    }

    /// The same, with the server restarting (losing every session) at random points:
    /// client -> server messages are never lost; a repeat has the first delivery's id and
    /// payload and is flagged as a redelivery; ids never name two different messages.
    #[test]
    fn restart_falls_back_to_at_least_once(
        wc in 1u32..=6,
        ws in 1u32..=6,
        ops in proptest::collection::vec((op(), 0u8..20), 0..400),
    ) {
        let mut p = Pair::new(wc, ws);
        // Everything the server's applications (one per process) got, across restarts.
        let mut server_got: Vec<Delivery> = Vec::new();
        for ((client_acts, op), dice) in ops {
            if dice == 0 {
                server_got.append(&mut p.server.got);
                p.cut(true);
            } else if client_acts || !matches!(op, Op::Send) {
                // Only the client's application sends: the server's messages die with it.
                p.step(client_acts, op);
            }
        }
        p.drain();
        server_got.append(&mut p.server.got);
        let mut first: HashMap<MessageId, Bytes> = HashMap::new();
        for d in &server_got {
            prop_assert_eq!(d.id().session, SESSION);
            let seq = usize::try_from(d.seq).unwrap();
            prop_assert_eq!(&d.payload, &p.client.sent[seq - 1], "id names its message");
            if let Some(earlier) = first.insert(d.id(), d.payload.clone()) {
                prop_assert_eq!(&earlier, &d.payload);
                prop_assert!(d.redelivered, "a repeat of {} is flagged", d.id());
            }
        }
        for seq in 1..=p.client.sent.len() as u64 {
            let id = MessageId { session: SESSION, seq };
            prop_assert!(first.contains_key(&id), "message {} lost", seq);
        }
        prop_assert!(p.client.state.all_acked());
    }
}

/// One fixed exchange (3 messages each way, windows of 2), replayed from scratch and cut
/// after each of its steps in turn, then resumed and drained: exactly once both ways every
/// time, and the resumed connection reports the session resumed.
#[test]
fn cut_at_every_point() {
    let script: Vec<(bool, Op)> = [Op::Send, Op::Send, Op::Send]
        .into_iter()
        .flat_map(|o| [(true, o), (false, o)])
        .chain(
            std::iter::repeat_n(
                [
                    (true, Op::Transmit),
                    (false, Op::Transmit),
                    (true, Op::Deliver),
                    (false, Op::Deliver),
                    (true, Op::Take),
                    (false, Op::Take),
                    (true, Op::Idle),
                    (false, Op::Idle),
                    (true, Op::Send),
                    (false, Op::Send),
                ],
                8,
            )
            .flatten(),
        )
        .collect();
    let mut resumed = 0;
    for cut_at in 0..=script.len() {
        let mut p = Pair::new(2, 2);
        for &(who, op) in &script[..cut_at] {
            p.step(who, op);
        }
        let established = p.client.state.is_established();
        p.cut(false);
        for &(who, op) in &script[cut_at..] {
            p.step(who, op);
        }
        p.drain();
        for (tx, rx) in [(&p.client, &p.server), (&p.server, &p.client)] {
            check_exactly_once(tx, rx);
            assert_eq!(rx.got.len(), tx.sent.len(), "cut after step {cut_at}");
            assert!(tx.state.all_acked(), "cut after step {cut_at}");
        }
        if established {
            assert_eq!(p.client.state.session_status(), SessionStatus::Resumed);
            assert_eq!(p.server.state.session_status(), SessionStatus::Resumed);
            resumed += 1;
        }
    }
    assert!(
        resumed > 40,
        "most cut points fall after the handshake: {resumed}"
    );
}

/// A resuming HELLO is answered with the resume flag and the server's `delivered through`;
/// the client resends only what follows, and a repeat at or below that point is dropped.
#[test]
fn resume_resends_only_what_follows() {
    let mut p = Pair::new(4, 4);
    p.hop(true); // client HELLO
    p.hop(false); // server HELLO
    for _ in 0..3 {
        local_step(&mut p.client, Op::Send, &mut p.counter);
    }
    assert_eq!(p.client.sent.len(), 3);
    p.hop(true); // 3 DATA
    for _ in 0..2 {
        local_step(&mut p.server, Op::Take, &mut 0);
    }
    p.cut(false);
    let hello = p.client.state.poll_transmit().unwrap();
    let framewire_codec::ack::AckFrame::Hello(h) = hello else {
        panic!("HELLO first, got {hello:?}")
    };
    assert!(h.resume);
    assert_eq!(h.session, SESSION);
    p.feed(true, hello.to_bytes());
    let answer = p.server.state.poll_transmit().unwrap();
    let framewire_codec::ack::AckFrame::Hello(sh) = answer else {
        panic!("server HELLO, got {answer:?}")
    };
    assert!(sh.resume, "the server still has the session");
    assert_eq!(sh.delivered, 2, "the server's application got 1 and 2");
    p.feed(false, answer.to_bytes());
    assert_eq!(p.client.state.acked_through(), 2);
    let resent = p.client.state.poll_transmit().unwrap();
    assert!(
        matches!(
            resent,
            framewire_codec::ack::AckFrame::Data {
                seq: 3,
                redelivery: false,
                ..
            }
        ),
        "{resent:?}"
    );
    assert!(p.client.state.poll_transmit().is_none());
}
