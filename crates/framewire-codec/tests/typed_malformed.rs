//! Malformed payloads: truncated, trailing bytes, crafted length prefixes inside the payload,
//! arbitrary bytes. Each is an error for that payload, never a panic.
//!
//! How much memory the crafted prefixes cost is measured in `typed_alloc.rs`.

mod typed_common;

mod common;

use common::varint::postcard_varint;
use std::collections::BTreeMap;

use framewire_codec::typed::{self, Bincode, Format, Postcard, TypedError};
use proptest::collection::vec;
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use typed_common::{event, nested, Chat, Event, Nested};

/// Announced lengths to try: just past the frame, 4 GiB, 2^60, u64::MAX.
const CRAFTED: [u64; 4] = [1_000, 1 << 32, 1 << 60, u64::MAX];

/// bincode 2 standard varint of `n`.
fn bincode_varint(n: u64) -> Vec<u8> {
    match n {
        0..=250 => vec![n as u8],
        251..=0xffff => [&[251u8][..], &(n as u16).to_le_bytes()].concat(),
        0x1_0000..=0xffff_ffff => [&[252u8][..], &(n as u32).to_le_bytes()].concat(),
        _ => [&[253u8][..], &n.to_le_bytes()].concat(),
    }
}

fn assert_decode_error<F: Format, T: DeserializeOwned + std::fmt::Debug>(payload: &[u8]) {
    match typed::decode::<F, T>(payload) {
        Err(e @ TypedError::Decode { len, .. }) => {
            assert_eq!(len, payload.len());
            assert!(e.is_decode() && e.is_connection_usable());
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("frame of {} bytes", payload.len())),
                "{msg}"
            );
        }
        other => panic!("{payload:?}: expected a decode error, got {other:?}"),
    }
}

/// Every strict prefix of a valid encoding is a decode error (the formats are self-delimiting).
fn truncations_fail<F: Format, T: Serialize + DeserializeOwned + std::fmt::Debug>(
    value: &T,
) -> Result<(), TestCaseError> {
    let full = typed::encode::<F, T>(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for cut in 0..full.len() {
        match typed::decode::<F, T>(&full[..cut]) {
            Err(TypedError::Decode { len, .. }) => prop_assert_eq!(len, cut),
            other => prop_assert!(false, "prefix of {} bytes gave {:?}", cut, other),
        }
    }
    Ok(())
}

/// A valid encoding followed by more bytes is `TrailingBytes` with the exact counts.
fn trailing_fails<F: Format, T: Serialize + DeserializeOwned + std::fmt::Debug>(
    value: &T,
    extra: &[u8],
) -> Result<(), TestCaseError> {
    let full = typed::encode::<F, T>(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let padded = [&full[..], extra].concat();
    match typed::decode::<F, T>(&padded) {
        Err(e @ TypedError::TrailingBytes { .. }) => {
            prop_assert!(e.is_decode() && e.is_connection_usable());
            prop_assert_eq!(e.frame_len(), Some(padded.len()));
            if let TypedError::TrailingBytes { len, consumed, .. } = e {
                prop_assert_eq!(len, padded.len());
                prop_assert_eq!(consumed, full.len());
            }
        }
        other => prop_assert!(false, "expected TrailingBytes, got {:?}", other),
    }
    Ok(())
}

macro_rules! malformed_suite {
    ($module:ident, $format:ty) => {
        mod $module {
            use super::*;

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(64))]

                #[test]
                fn truncated_events(v in event()) { truncations_fail::<$format, Event>(&v)?; }

                #[test]
                fn truncated_nested(v in nested()) { truncations_fail::<$format, Nested>(&v)?; }

                #[test]
                fn trailing_bytes(v in event(), extra in vec(any::<u8>(), 1..10)) {
                    trailing_fails::<$format, Event>(&v, &extra)?;
                }

                #[test]
                fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..300)) {
                    // Any outcome but a panic is acceptable; an Ok must have used every byte.
                    if let Ok(v) = typed::decode::<$format, Nested>(&bytes) {
                        let again = typed::encode::<$format, Nested>(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert!(again.len() <= bytes.len());
                    }
                    let _ = typed::decode::<$format, Event>(&bytes);
                    let _ = typed::decode::<$format, Chat>(&bytes);
                }
            }

            #[test]
            fn trailing_after_unit_and_u8() {
                assert!(matches!(
                    typed::decode::<$format, ()>(&[0]),
                    Err(TypedError::TrailingBytes { len: 1, consumed: 0, .. })
                ));
                assert!(matches!(
                    typed::decode::<$format, u8>(&[1, 2, 3]),
                    Err(TypedError::TrailingBytes { len: 3, consumed: 1, .. })
                ));
            }

            #[test]
            fn empty_payload_is_an_error_unless_unit() {
                assert_decode_error::<$format, u8>(&[]);
                assert_decode_error::<$format, Chat>(&[]);
                assert!(typed::decode::<$format, ()>(&[]).is_ok());
            }
        }
    };
}

malformed_suite!(bincode, Bincode);
malformed_suite!(postcard, Postcard);

/// Crafted length prefixes inside a payload, for every shape that reads a length.
fn crafted_lengths<F: Format>(varint: fn(u64) -> Vec<u8>) {
    for n in CRAFTED {
        let len = varint(n);
        let with_tail = [&len[..], b"abc"].concat();
        assert_decode_error::<F, String>(&with_tail);
        assert_decode_error::<F, Vec<u8>>(&with_tail);
        assert_decode_error::<F, Vec<u64>>(&with_tail);
        assert_decode_error::<F, Vec<String>>(&with_tail);
        assert_decode_error::<F, Vec<Vec<u8>>>(&with_tail);
        assert_decode_error::<F, BTreeMap<String, Vec<u8>>>(&with_tail);
        // Inside a struct: id 1, then a user name claiming n bytes.
        let chat = [&[1u8][..], &len[..], b"xyz"].concat();
        assert_decode_error::<F, Chat>(&chat);
        // Nested: an outer Vec of one element whose inner Vec claims n elements.
        let nested = [&varint(1)[..], &len[..], &[7u8][..]].concat();
        assert_decode_error::<F, Vec<Vec<u64>>>(&nested);
        // An enum variant holding a blob (Event::Blob is variant 5).
        let blob = [&varint(5)[..], &len[..], &[0u8; 8][..]].concat();
        assert_decode_error::<F, Event>(&blob);
    }
}

#[test]
fn bincode_crafted_lengths_are_errors() {
    crafted_lengths::<Bincode>(bincode_varint);
}

#[test]
fn postcard_crafted_lengths_are_errors() {
    crafted_lengths::<Postcard>(postcard_varint);
}

#[test]
fn bincode_limit_error_names_the_numbers() {
    let payload = [&bincode_varint(1 << 60)[..], b"abc"].concat();
    let err = typed::decode::<Bincode, String>(&payload).expect_err("crafted length");
    let msg = err.to_string();
    assert_eq!(
        msg,
        "frame of 12 bytes does not decode as bincode: a length prefix announces \
         1152921504606846976 bytes but only 3 are left in the frame"
    );
}

/// A recursive type: one byte per nesting level in both formats.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Expr {
    Lit(u8),
    Neg(Box<Expr>),
}

fn nested_expr(levels: usize) -> Vec<u8> {
    // `levels - 1` Neg tags, then Lit(5): variant indices are one-byte varints in both formats.
    let mut bytes = vec![1u8; levels - 1];
    bytes.extend([0, 5]);
    bytes
}

fn depth_is_bounded<F: Format>() {
    use framewire_codec::typed::MAX_DEPTH;
    // Exactly MAX_DEPTH levels decode ...
    let ok: Expr = typed::decode::<F, _>(&nested_expr(MAX_DEPTH)).expect("at the limit");
    let again = typed::encode::<F, _>(&ok).expect("encodes");
    assert_eq!(&again[..], &nested_expr(MAX_DEPTH)[..]);
    // ... one more is an error, and a million levels are an error rather than a stack overflow.
    for levels in [MAX_DEPTH + 1, 1_000_000] {
        let payload = nested_expr(levels);
        assert_decode_error::<F, Expr>(&payload);
        let err = typed::decode::<F, Expr>(&payload).expect_err("too deep");
        assert!(err.to_string().contains("deeper than 128 levels"), "{err}");
    }
}

#[test]
fn bincode_nesting_depth_is_bounded() {
    depth_is_bounded::<Bincode>();
}

#[test]
fn postcard_nesting_depth_is_bounded() {
    depth_is_bounded::<Postcard>();
}

#[test]
fn bincode_decode_limit_ladder() {
    use framewire_codec::typed::bincode_decode_limit;
    assert_eq!(bincode_decode_limit(0), 4096);
    assert_eq!(bincode_decode_limit(256), 4096);
    assert_eq!(bincode_decode_limit(257), 16384);
    for len in [1usize, 100, 4097, 65_536, 1 << 20, 8 << 20, (1 << 32) - 1] {
        let limit = bincode_decode_limit(len);
        assert!(limit >= len * 16, "{len}: {limit}");
        assert!(limit <= (len * 64).max(4096), "{len}: {limit}");
    }
}

/// A value that really fills its frame with the worst expansion bincode has (one-byte
/// varints decoding into u128) is not refused by the limit.
#[test]
fn bincode_limit_never_refuses_a_real_value() {
    for n in [10usize, 255, 256, 1000, 100_000] {
        let value = vec![1u128; n];
        let bytes = typed::encode::<Bincode, _>(&value).expect("encodes");
        let back: Vec<u128> = typed::decode::<Bincode, _>(&bytes).expect("decodes");
        assert_eq!(back, value);
        let value = vec![Some(7u64); n];
        let bytes = typed::encode::<Bincode, _>(&value).expect("encodes");
        let back: Vec<Option<u64>> = typed::decode::<Bincode, _>(&bytes).expect("decodes");
        assert_eq!(back, value);
    }
}
