//! The ack state machine driven as a pair of peers, without sockets, through random
//! interleavings of sends, transmissions, deliveries, takes and idle reports (proptest).
//!
//! Checked after every step: every message is delivered exactly once and in order, acks
//! never exceed what was sent (nor what the receiver took), the window is never exceeded,
//! and the unacknowledged messages are exactly the suffix the peer has not acknowledged (a
//! superset of what it has not taken). At the end, an abrupt close hands back everything
//! not acknowledged; or, after draining, everything was delivered and acknowledged.

// Helpers outside #[test] functions unwrap too: this is test code.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::VecDeque;

use bytes::Bytes;
use common::ack::message;
use framewire_codec::ack::{AckState, Delivery};
use proptest::prelude::*;

/// One direction's bookkeeping plus the sending machine's view.
struct Side {
    state: AckState,
    /// Everything this side's application sent, in order.
    sent: Vec<Bytes>,
    /// Frames in flight towards the peer (the "wire").
    wire: VecDeque<Bytes>,
    /// Messages received and not yet taken by this side's application.
    inbox: VecDeque<Delivery>,
    /// Everything this side's application took, in order.
    took: Vec<Bytes>,
}

impl Side {
    fn new(window: u32) -> Side {
        Side {
            state: AckState::new(window, 1 << 16),
            sent: Vec::new(),
            wire: VecDeque::new(),
            inbox: VecDeque::new(),
            took: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Send,
    Transmit,
    Deliver,
    Take,
    Idle,
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
        ],
    )
}

/// Applies `op` on side `me` (whose peer is `peer`).
fn step(me: &mut Side, peer: &mut Side, op: Op, counter: &mut usize) {
    match op {
        Op::Send => {
            if me.state.has_room() {
                let m = message(*counter);
                *counter += 1;
                let seq = me.state.send(m.clone(), false).unwrap();
                me.sent.push(m);
                assert_eq!(seq, me.sent.len() as u64);
            } else {
                assert!(me.state.send(Bytes::new(), false).is_err());
            }
        }
        Op::Transmit => {
            if let Some(f) = me.state.poll_transmit() {
                me.wire.push_back(f.to_bytes());
            }
        }
        Op::Deliver => {
            if let Some(f) = me.wire.pop_front() {
                if let Some(d) = peer.state.handle_frame(f).unwrap() {
                    peer.inbox.push_back(d);
                }
            }
        }
        Op::Take => {
            if let Some(d) = me.inbox.pop_front() {
                me.state.taken(d.seq).unwrap();
                me.took.push(d.payload);
                assert_eq!(d.seq, me.took.len() as u64, "in order, exactly once");
            }
        }
        Op::Idle => me.state.reader_idle(),
    }
}

/// Invariants for the direction `tx` -> `rx`.
fn check(tx: &Side, rx: &Side, rx_window: u32) {
    let acked = tx.state.acked_through();
    // Every message taken is the one that was sent with that seq.
    assert_eq!(&tx.sent[..rx.took.len()], &rx.took[..]);
    // Acks never exceed what was transmitted nor what the receiving app took.
    assert!(acked <= tx.state.transmitted_through());
    assert!(tx.state.transmitted_through() <= tx.sent.len() as u64);
    assert!(acked <= rx.took.len() as u64, "ack means the app took it");
    // The window is never exceeded.
    if tx.state.is_established() {
        assert!(tx.state.in_flight() <= u64::from(rx_window));
    }
    assert!(rx.state.received_through() <= rx.state.ack_sent_through() + u64::from(rx_window));
    // Unacked is exactly the unacknowledged suffix, and holds everything not yet taken.
    let unacked: Vec<Bytes> = tx.state.unacked().map(|m| m.payload.clone()).collect();
    assert_eq!(&unacked[..], &tx.sent[acked as usize..]);
    let undelivered = &tx.sent[rx.took.len()..];
    assert!(unacked.ends_with(undelivered));
}

fn hop(me: &mut Side, peer: &mut Side) {
    while let Some(f) = me.state.poll_transmit() {
        me.wire.push_back(f.to_bytes());
    }
    while let Some(f) = me.wire.pop_front() {
        if let Some(d) = peer.state.handle_frame(f).unwrap() {
            peer.inbox.push_back(d);
        }
    }
}

fn drain(a: &mut Side, b: &mut Side) {
    // Bounded: each round moves everything one hop; a handful of rounds always settles.
    for _ in 0..16 {
        hop(a, b);
        hop(b, a);
        for me in [&mut *a, &mut *b] {
            while let Some(d) = me.inbox.pop_front() {
                me.state.taken(d.seq).unwrap();
                me.took.push(d.payload);
            }
            me.state.reader_idle();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings(
        wa in 1u32..=8,
        wb in 1u32..=8,
        thresholds in (1u64..=8, 1u64..=8),
        ops in proptest::collection::vec(op(), 0..400),
        abrupt in any::<bool>(),
    ) {
        let mut a = Side::new(wa);
        let mut b = Side::new(wb);
        a.state.set_ack_threshold(thresholds.0);
        b.state.set_ack_threshold(thresholds.1);
        let mut counter = 0;
        for (a_acts, op) in ops {
            if a_acts {
                step(&mut a, &mut b, op, &mut counter);
            } else {
                step(&mut b, &mut a, op, &mut counter);
            }
            check(&a, &b, wb);
            check(&b, &a, wa);
        }
        if abrupt {
            // The connection dies here: whatever was not acknowledged comes back, in order,
            // and together with what was acknowledged it is everything that was sent.
            let took = [b.took.len(), a.took.len()];
            for (tx, took) in [(&mut a, took[0]), (&mut b, took[1])] {
                let acked = tx.state.acked_through() as usize;
                let back = tx.state.take_unacked();
                prop_assert_eq!(&back[..], &tx.sent[acked..]);
                prop_assert!(took >= acked);
            }
        } else {
            drain(&mut a, &mut b);
            for (tx, rx) in [(&a, &b), (&b, &a)] {
                prop_assert_eq!(&rx.took, &tx.sent);
                prop_assert!(tx.state.all_acked());
                prop_assert_eq!(tx.state.acked_through(), tx.sent.len() as u64);
            }
        }
    }
}
