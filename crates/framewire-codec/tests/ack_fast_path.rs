//! `AckState::handle_frame` has a fast path for well-formed DATA frames. It must behave
//! exactly like parsing with `AckFrame::parse_bytes` and handling with `AckState::handle`:
//! same deliveries, same errors, same state afterwards, for valid and invalid frames alike
//! (proptest: random frames near the expected sequence, with valid and unknown flags, kinds
//! and lengths, interleaved with takes, idle reports and ACK transmissions).

// Helpers outside #[test] functions unwrap too: this is test code.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::ack::established;
use framewire_codec::ack::{AckFrame, AckState};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// A DATA-kind frame: seq relative to the next expected one, flags byte, payload length,
    /// and how many bytes of the 10-byte header to keep (10 = all).
    Data {
        seq_delta: i8,
        flags: u8,
        payload_len: usize,
        header_keep: usize,
    },
    /// Arbitrary bytes as a frame.
    Raw(Vec<u8>),
    /// The application takes everything received, the reader goes idle, the ACK goes out.
    TakeAll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (
            -2i8..=2,
            prop_oneof![4 => Just(0u8), 2 => Just(1u8), 1 => any::<u8>()],
            0usize..24,
            prop_oneof![8 => Just(10usize), 1 => 0usize..10],
        )
            .prop_map(|(seq_delta, flags, payload_len, header_keep)| Op::Data {
                seq_delta,
                flags,
                payload_len,
                header_keep,
            }),
        1 => proptest::collection::vec(any::<u8>(), 0..24).prop_map(Op::Raw),
        2 => Just(Op::TakeAll),
    ]
}

fn data_frame(state: &AckState, seq_delta: i8, flags: u8, len: usize, keep: usize) -> Bytes {
    let expected = state.received_through() + 1;
    let seq = expected.saturating_add_signed(i64::from(seq_delta));
    let mut b = BytesMut::new();
    b.put_u8(0x02);
    b.put_u64(seq);
    b.put_u8(flags);
    b.truncate(keep);
    if keep == 10 {
        b.extend((0..len).map(|i| i as u8));
    }
    b.freeze()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn handle_frame_equals_parse_then_handle(
        window in 1u32..8,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        // Two copies of one receiver (granting `window`); frames are made up here.
        let (_, mut fast) = established(4, window);
        let mut slow = fast.clone();
        for op in ops {
            let frame = match op {
                Op::Data { seq_delta, flags, payload_len, header_keep } => {
                    data_frame(&fast, seq_delta, flags, payload_len, header_keep)
                }
                Op::Raw(bytes) => Bytes::from(bytes),
                Op::TakeAll => {
                    let through = fast.received_through();
                    fast.taken(through).unwrap();
                    slow.taken(through).unwrap();
                    fast.reader_idle();
                    slow.reader_idle();
                    let a = fast.poll_transmit().map(|f| f.to_bytes());
                    let b = slow.poll_transmit().map(|f| f.to_bytes());
                    prop_assert_eq!(a, b);
                    continue;
                }
            };
            let got_fast = fast.handle_frame(frame.clone());
            let got_slow = AckFrame::parse_bytes(frame).and_then(|f| slow.handle(f));
            prop_assert_eq!(format!("{got_fast:?}"), format!("{got_slow:?}"));
            prop_assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
            if got_fast.is_err() {
                // The connection would be closed here.
                break;
            }
        }
    }
}

#[test]
fn fast_path_keeps_the_payload_and_flags() {
    let (mut a, mut b) = established(4, 4);
    a.send(Bytes::from_static(b"hello"), true).unwrap();
    let frame = a.poll_transmit().unwrap().to_bytes();
    let d = b.handle_frame(frame).unwrap().unwrap();
    assert_eq!(d.seq, 1);
    assert_eq!(d.payload, "hello");
    assert!(d.redelivered);
    assert_eq!(b.received_through(), 1);
}
