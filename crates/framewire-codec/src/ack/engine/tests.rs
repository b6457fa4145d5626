//! The receiving fast path ([`AckState::take_and_receive`]) against the general path
//! ([`AckState::taken`] + [`AckState::handle_frame`]): the same outcome when it applies, and
//! no change at all when it does not.

use bytes::Bytes;

use super::AckState;
use crate::ack::wire::{AckFrame, Hello, DATA_HEADER_LEN};
use crate::ack::AckConfig;

/// Two established engines: `rx` (the side under test) has heard `tx`'s HELLO.
fn pair(window: u32) -> (AckState, AckState) {
    pair_with(AckConfig::new().window(window))
}

/// [`pair`], both built with `config`.
fn pair_with(config: AckConfig) -> (AckState, AckState) {
    let mut tx = AckState::with_config(config, 1 << 20);
    let mut rx = AckState::with_config(config, 1 << 20);
    let hello = tx.poll_transmit().expect("tx's HELLO");
    rx.handle_frame(hello.to_bytes()).expect("HELLO accepted");
    let hello = rx.poll_transmit().expect("rx's HELLO");
    tx.handle_frame(hello.to_bytes()).expect("HELLO accepted");
    (tx, rx)
}

fn data(seq: u64, redelivery: bool, len: usize) -> Bytes {
    AckFrame::Data {
        seq,
        redelivery,
        payload: Bytes::from(vec![7u8; len]),
    }
    .to_bytes()
}

/// Feeds `frame` to `rx` after the application is done with `done`, through the fast path if
/// it takes it (checked against the general path on a clone) and the general path if not
/// (checked that the fast path changed nothing). Returns whether the fast path took it.
fn feed(rx: &mut AckState, done: u64, frame: &Bytes) -> bool {
    try_feed(rx, done, frame).expect("the general path accepts it")
}

/// [`feed`], but `None` if the general path refused the frame (`rx` is then failed).
fn try_feed(rx: &mut AckState, done: u64, frame: &Bytes) -> Option<bool> {
    let before = format!("{rx:?}");
    let mut general = rx.clone();
    let expected = general
        .taken(done)
        .and_then(|()| general.handle_frame(frame.clone()));
    match rx.take_and_receive(done, frame, frame.len()) {
        Some((seq, redelivered)) => {
            let d = expected
                .expect("the general path accepts what the fast path took")
                .expect("a delivery");
            assert_eq!((seq, redelivered), (d.seq, d.redelivered));
            assert_eq!(&frame[DATA_HEADER_LEN..], &d.payload[..]);
            assert_eq!(format!("{rx:?}"), format!("{general:?}"));
            Some(true)
        }
        None => {
            assert_eq!(format!("{rx:?}"), before, "the fast path changed the state");
            let r = rx.taken(done).and_then(|()| rx.handle_frame(frame.clone()));
            assert_eq!(
                r.is_ok(),
                expected.is_ok(),
                "same outcome: {r:?} / {expected:?}"
            );
            let r = r.ok()?;
            assert_eq!(r, expected.expect("same outcome"));
            Some(false)
        }
    }
}

proptest::proptest! {
    /// Random traffic: in-order DATA mostly, sometimes out of order, a repeat, a PING or a
    /// short frame; the application done with the previous message, with none since the last
    /// step, or with some of those received before; ACKs written now and then; a byte window
    /// that is sometimes what limits. At every step the fast path agrees with the general
    /// path or stands aside, and the unacknowledged bytes are those of the messages received
    /// since the last ACK (counted here from every length fed).
    #[test]
    fn the_fast_path_agrees_with_the_general_path_on_random_traffic(
        window in 1u32..16,
        window_bytes in proptest::prop_oneof![1u32..600, proptest::strategy::Just(1 << 20)],
        steps in proptest::collection::vec((0u8..10, 0u8..4, proptest::bool::ANY, 0usize..200), 1..300),
    ) {
        let config = AckConfig::new().window(window).window_bytes(window_bytes);
        let (_tx, mut rx) = pair_with(config);
        // lens[s] is the payload length of seq s as received.
        let mut lens = vec![0u64];
        for (kind, take, write_acks, len) in steps {
            let next = rx.received_through() + 1;
            let frame = match kind {
                0 => data(next + 1, false, len),
                1 => data(next.saturating_sub(1), false, len),
                2 => AckFrame::<Bytes>::Ping { token: 9 }.to_bytes(),
                3 => data(next, false, len).slice(..DATA_HEADER_LEN - 1),
                4 => data(next, true, len),
                _ => data(next, false, len),
            };
            let (taken, received) = (rx.taken_through(), rx.received_through());
            let done = match take {
                0 => taken,
                1 => taken + (received - taken) / 2,
                _ => received,
            };
            if try_feed(&mut rx, done, &frame).is_none() {
                break;
            }
            if rx.received_through() == next {
                lens.push(len as u64);
            }
            if write_acks {
                while rx.poll_transmit().is_some() {}
            }
            let acked = usize::try_from(rx.ack_sent_through()).expect("small");
            proptest::prop_assert_eq!(
                rx.received_unacked_bytes(),
                lens[acked + 1..].iter().sum::<u64>()
            );
        }
    }
}

#[test]
fn the_fast_path_agrees_with_the_general_path_and_stands_aside_otherwise() {
    let (_tx, mut rx) = pair(8);
    let mut fast = 0;
    // In order, each one done when the next arrives: the fast path takes them until taking
    // the previous one makes an ACK due (half the window, 4).
    for seq in 1..=4 {
        fast += usize::from(feed(&mut rx, seq - 1, &data(seq, seq == 2, 16)));
    }
    assert_eq!(fast, 4, "seqs 1-4 (taking 1-3 makes no ACK due)");
    // Taking 4 makes the ACK due: the general path queues it.
    assert!(!feed(&mut rx, 4, &data(5, false, 16)));
    assert!(rx.has_transmit());
    // With an ACK waiting to be written, the fast path stands aside.
    assert!(!feed(&mut rx, 5, &data(6, false, 16)));
    while rx.poll_transmit().is_some() {}
    assert_eq!(rx.ack_sent_through(), 5);
    assert!(feed(&mut rx, 6, &data(7, false, 16)));
    // Out of sequence, a repeat, a frame that is not DATA, a DATA shorter than its header:
    // the general path reports or handles them.
    assert_eq!(try_feed(&mut rx.clone(), 7, &data(9, false, 16)), None);
    assert_eq!(try_feed(&mut rx.clone(), 7, &data(7, false, 16)), None);
    let ping = AckFrame::<Bytes>::Ping { token: 3 }.to_bytes();
    assert!(rx.take_and_receive(7, &ping, ping.len()).is_none());
    assert!(rx.take_and_receive(7, &data(8, false, 0)[..4], 4).is_none());
}

#[test]
fn the_fast_path_refuses_data_beyond_the_window() {
    let (_tx, mut rx) = pair(2);
    assert!(feed(&mut rx, 0, &data(1, false, 4)));
    // Window 2: taking 1 makes the ACK due (threshold 1), so the fast path stands aside; the
    // general path takes 2 without the ACK written yet.
    assert!(!feed(&mut rx, 1, &data(2, false, 4)));
    // Seq 3 would be beyond the window counted from the last ACK transmitted (none): refused
    // by both paths (the general one with DataBeyondWindow).
    let mut general = rx.clone();
    assert!(rx
        .take_and_receive(1, &data(3, false, 4), 4 + DATA_HEADER_LEN)
        .is_none());
    assert!(general.handle_frame(data(3, false, 4)).is_err());
}

#[test]
fn the_fast_path_stands_aside_for_a_resumed_session() {
    // An accepting side that no longer has the session the peer resumes: the peer's first
    // DATA sets where its numbering is (the general path's baseline), not the fast path.
    let mut rx = AckState::accepting(crate::ack::AckConfig::new().window(8), 1 << 20);
    let mut hello = Hello::new(8, 1 << 20, 1 << 20);
    hello.session = [7; 16];
    hello.resume = true;
    rx.handle_frame(Bytes::copy_from_slice(&hello.to_bytes()))
        .expect("HELLO accepted");
    // Unanswered: DATA must wait for the answer, whichever path.
    assert!(rx
        .take_and_receive(0, &data(1, false, 4), 4 + DATA_HEADER_LEN)
        .is_none());
    rx.start_session().expect("answered");
    while rx.poll_transmit().is_some() {}
    assert!(
        !feed(&mut rx, 0, &data(1, false, 4)),
        "the baseline is the general path's"
    );
    assert!(feed(&mut rx, 1, &data(2, false, 4)));
}
