//! Fuzz target body for ack sessions: a connecting engine and an accepting engine with a
//! session store, cut, resumed, restarted and attacked in the order the fuzzer picks.
//!
//! Compiled twice like `targets.rs`: by the cargo-fuzz workspace (through `src/lib.rs`) and
//! by `crates/framewire-codec/tests/fuzz_corpus.rs` (through `#[path]`), which replays the
//! committed corpus on stable in CI. Keep it free of anything but `framewire_codec`, `bytes`
//! and `arbitrary`.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use framewire_codec::ack::{
    AckConfig, AckError, AckFrame, AckState, Delivery, Hello, MessageId, SessionId,
};

/// The session the honest client uses.
const SESSION: SessionId = [0x5e; 16];

/// One step, chosen by the fuzzer.
#[derive(Debug, Arbitrary)]
enum SessionOp {
    /// The client's (`true`) or the server's application sends a message of this length.
    Send(bool, u8),
    /// That side's engine hands its next frame to the wire.
    Transmit(bool),
    /// The next frame on the wire from that side arrives at the other.
    Deliver(bool),
    /// That side's application takes its next received message.
    Take(bool),
    /// That side's reader has nothing buffered.
    Idle(bool),
    /// The connection dies; the server keeps the session.
    Cut,
    /// The server process restarts: its sessions and its unread messages are gone.
    Restart,
    /// Another connection's HELLO names a session (the honest one's id if `steal`, else
    /// `id`) with arbitrary resume fields: it must never get the honest session without its
    /// id, and whatever it gets, the server stays within its rules.
    ForeignHello {
        steal: bool,
        id: [u8; 16],
        resume: bool,
        delivered: u64,
    },
    /// A server that answers the client's resuming HELLO with arbitrary fields: the client
    /// must refuse what does not fit what it sent, never panic.
    LyingServer { resume: bool, delivered: u64 },
}

/// One side of the pair (also used by `crates/framewire-codec/tests/ack_session_proptest.rs`):
/// its engine (the session lives in it), its application's view, and the wire to the peer.
pub struct Side {
    /// The engine.
    pub state: AckState,
    /// Payloads this side's application sent, by seq (seq = index + 1).
    pub sent: Vec<Bytes>,
    /// Frames in flight towards the peer.
    pub wire: VecDeque<Bytes>,
    /// Received, not yet handed to the application (lost on a cut).
    pub inbox: VecDeque<Delivery>,
    /// Everything handed to the application, in order.
    pub got: Vec<Delivery>,
    /// The last seq handed to the application.
    pub handed: u64,
}

impl Side {
    /// A side around `state`, nothing sent or received yet.
    pub fn new(state: AckState) -> Side {
        Side {
            state,
            sent: Vec::new(),
            wire: VecDeque::new(),
            inbox: VecDeque::new(),
            got: Vec::new(),
            handed: 0,
        }
    }
}

fn config(window: u32) -> AckConfig {
    AckConfig::new().window(window).window_bytes(512)
}

/// Answers an accepting state's session request from `store`, as a server driver does.
fn resolve(state: &mut AckState, store: &mut HashMap<SessionId, AckState>) -> Result<(), AckError> {
    let Some(req) = state.session_request() else {
        return Ok(());
    };
    match store.remove(&req.id) {
        Some(stored) => state.adopt(stored),
        None => state.start_session(),
    }
}

struct World {
    client: Side,
    server: Side,
    store: HashMap<SessionId, AckState>,
    server_window: u32,
    /// Everything earlier server processes handed to their applications.
    earlier_server_got: Vec<Delivery>,
    restarted: bool,
    counter: u64,
}

impl World {
    /// Delivers one frame from the wire of `from_client`'s side: an honest peer's frames are
    /// never refused.
    fn deliver(&mut self, from_client: bool) {
        let (from, to) = if from_client {
            (&mut self.client, &mut self.server)
        } else {
            (&mut self.server, &mut self.client)
        };
        let Some(f) = from.wire.pop_front() else {
            return;
        };
        match to.state.handle_frame(f) {
            Ok(Some(d)) => to.inbox.push_back(d),
            Ok(None) => {}
            Err(e) => panic!("an honest peer's frame was refused: {e}"),
        }
        if from_client {
            resolve(&mut self.server.state, &mut self.store).expect("honest session request");
        }
    }

    fn cut(&mut self, restart: bool) {
        for side in [&mut self.client, &mut self.server] {
            side.wire.clear();
            side.inbox.clear();
        }
        self.client.state.reconnect(self.client.handed);
        let fresh = AckState::accepting(config(self.server_window), 1024);
        let mut old = std::mem::replace(&mut self.server.state, fresh);
        if restart {
            self.store.clear();
            self.earlier_server_got.append(&mut self.server.got);
            self.server.sent.clear();
            self.server.handed = 0;
            self.restarted = true;
        } else if old.session_id() == SESSION {
            old.reconnect(self.server.handed);
            self.store.insert(SESSION, old);
        }
    }

    fn step(&mut self, op: SessionOp) {
        match op {
            SessionOp::Send(on_client, len) => {
                // After a restart only the client sends: the server's messages die with it.
                if !on_client && self.restarted {
                    return;
                }
                let me = self.side(on_client);
                if me.state.has_room() {
                    let payload = Bytes::from(vec![(self.counter % 251) as u8; usize::from(len)]);
                    self.counter += 1;
                    let me = self.side(on_client);
                    let seq = me.state.send(payload.clone(), false).expect("room");
                    me.sent.push(payload);
                    assert_eq!(seq, me.sent.len() as u64, "seqs run per session");
                }
            }
            SessionOp::Transmit(on_client) => {
                let me = self.side(on_client);
                if let Some(f) = me.state.poll_transmit() {
                    me.wire.push_back(f.to_bytes());
                }
            }
            SessionOp::Deliver(from_client) => self.deliver(from_client),
            SessionOp::Take(on_client) => {
                let me = self.side(on_client);
                if let Some(d) = me.inbox.pop_front() {
                    me.handed = d.seq;
                    me.state.taken(d.seq).expect("taking a delivered message");
                    me.got.push(d);
                }
            }
            SessionOp::Idle(on_client) => self.side(on_client).state.reader_idle(),
            SessionOp::Cut => self.cut(false),
            SessionOp::Restart => self.cut(true),
            SessionOp::ForeignHello {
                steal,
                id,
                resume,
                delivered,
            } => self.foreign_hello(if steal { SESSION } else { id }, resume, delivered),
            SessionOp::LyingServer { resume, delivered } => self.lying_server(resume, delivered),
        }
    }

    fn side(&mut self, client: bool) -> &mut Side {
        if client {
            &mut self.client
        } else {
            &mut self.server
        }
    }

    /// A second connection arrives with its own HELLO. It gets the honest session only by
    /// naming its id; any other id leaves the stored session untouched.
    fn foreign_hello(&mut self, id: SessionId, resume: bool, delivered: u64) {
        let stored_before = self.store.get(&SESSION).map(AckState::last_sent);
        let mut hello = Hello::new(4, 512, 1024);
        hello.session = id;
        hello.resume = resume;
        hello.delivered = delivered;
        let mut state = AckState::accepting(config(self.server_window), 1024);
        let frame = AckFrame::<Bytes>::Hello(hello).to_bytes();
        state.handle_frame(frame).expect("a well-formed HELLO");
        let mut store = std::mem::take(&mut self.store);
        let result = resolve(&mut state, &mut store);
        if id != SESSION {
            assert_eq!(
                store.get(&SESSION).map(AckState::last_sent),
                stored_before,
                "another id never touches the honest session"
            );
            assert_ne!(state.session_id(), SESSION);
        }
        if let Err(e) = result {
            assert!(e.is_peer_fault(), "a bad HELLO is the peer's fault: {e}");
        }
        if id == SESSION {
            // The thief had the id: it may have spent the honest client's stored session (as
            // a server restart would), which the invariants below then allow for.
            self.restarted = true;
        }
        self.store = store;
    }

    /// A fake server answers a clone of the client's resuming state.
    fn lying_server(&mut self, resume: bool, delivered: u64) {
        let mut c = self.client.state.clone();
        c.reconnect(self.client.handed);
        let mut hello = Hello::new(4, 512, 1024);
        hello.session = SESSION;
        hello.resume = resume;
        hello.delivered = delivered;
        let acked = c.acked_through();
        let sent = c.last_sent();
        match c.handle(AckFrame::Hello(hello)) {
            Ok(_) => {
                if resume {
                    assert!(
                        delivered >= acked && delivered <= sent,
                        "accepted {delivered}"
                    );
                    assert_eq!(c.acked_through(), delivered.max(acked));
                }
            }
            Err(e) => {
                assert!(
                    resume,
                    "only a resuming answer is checked against the session"
                );
                assert!(
                    matches!(
                        e,
                        AckError::ResumeBeyondSent { .. } | AckError::ResumeBehindAck { .. }
                    ),
                    "{e}"
                );
            }
        }
    }

    /// While the session lives: exactly once, in order, never flagged. After a restart:
    /// nothing from the client is repeated without the flag, and an id names one message.
    fn check(&self) {
        if !self.restarted {
            for (tx, rx) in [(&self.client, &self.server), (&self.server, &self.client)] {
                assert!(rx.got.len() <= tx.sent.len());
                for (i, d) in rx.got.iter().enumerate() {
                    assert_eq!(
                        d.id(),
                        MessageId {
                            session: SESSION,
                            seq: i as u64 + 1
                        }
                    );
                    assert_eq!(d.payload, tx.sent[i]);
                    assert!(!d.redelivered, "flagged while the session lived");
                }
            }
            return;
        }
        let mut seen: HashMap<MessageId, &Bytes> = HashMap::new();
        for d in self.earlier_server_got.iter().chain(&self.server.got) {
            let i = usize::try_from(d.seq - 1).expect("small seq");
            assert_eq!(&d.payload, &self.client.sent[i], "an id names one message");
            if seen.insert(d.id(), &d.payload).is_some() {
                assert!(d.redelivered, "a repeat is flagged");
            }
        }
    }
}

/// Sessions through cuts, restarts, foreign HELLOs and lying servers.
pub fn ack_session(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(wc), Ok(ws)) = (u.int_in_range(1u32..=6), u.int_in_range(1u32..=6)) else {
        return;
    };
    let mut w = World {
        client: Side::new(AckState::with_session(config(wc), 1024, SESSION)),
        server: Side::new(AckState::accepting(config(ws), 1024)),
        store: HashMap::new(),
        server_window: ws,
        earlier_server_got: Vec::new(),
        restarted: false,
        counter: 0,
    };
    for _ in 0..10_000 {
        if u.is_empty() {
            return;
        }
        let Ok(op) = SessionOp::arbitrary(&mut u) else {
            return;
        };
        w.step(op);
        w.check();
    }
}
