//! Typed messages survive encode + decode unchanged, alone and through the frame codec, in
//! every format.

mod typed_common;

use std::fmt::Debug;

use bytes::BytesMut;
use framewire_codec::typed::{self, Bincode, Format};
use framewire_codec::FrameCodec;
use proptest::collection::vec;
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::{Decoder, Encoder};
use typed_common::{chat, event, nested};

/// Encode, decode, compare; then the same through one FrameCodec frame.
fn round_trip<F: Format, T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let payload = typed::encode::<F, T>(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: T =
        typed::decode::<F, T>(&payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, value);

    let mut codec = FrameCodec::new();
    let mut wire = BytesMut::new();
    codec
        .encode(payload.clone(), &mut wire)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let frame = codec
        .decode(&mut wire)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let frame = frame.ok_or_else(|| TestCaseError::fail("no frame"))?;
    let back: T = typed::decode::<F, T>(&frame).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, value);
    prop_assert!(wire.is_empty());
    Ok(())
}

/// `encode_into` appends after existing bytes and equals `encode`.
fn appends<F: Format, T: Serialize>(value: &T) -> Result<(), TestCaseError> {
    let alone = typed::encode::<F, T>(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut buf = BytesMut::from(&b"prefix"[..]);
    typed::encode_into::<F, T>(value, &mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&buf[..6], b"prefix");
    prop_assert_eq!(&buf[6..], &alone[..]);
    Ok(())
}

macro_rules! format_suite {
    ($module:ident, $format:ty) => {
        mod $module {
            use super::*;

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(200))]

                #[test]
                fn chats(v in chat()) { round_trip::<$format, _>(&v)?; appends::<$format, _>(&v)?; }

                #[test]
                fn events(v in event()) { round_trip::<$format, _>(&v)?; }

                #[test]
                fn nested_values(v in nested()) { round_trip::<$format, _>(&v)?; appends::<$format, _>(&v)?; }

                #[test]
                fn strings(v in ".{0,500}") { round_trip::<$format, String>(&v)?; }

                #[test]
                fn byte_buffers(v in vec(any::<u8>(), 0..2000)) { round_trip::<$format, Vec<u8>>(&v)?; }

                #[test]
                fn nested_collections(v in vec(vec(proptest::option::of(".{0,5}"), 0..5), 0..10)) {
                    round_trip::<$format, Vec<Vec<Option<String>>>>(&v)?;
                }

                #[test]
                fn integers(a in any::<u64>(), b in any::<i32>(), c in any::<u128>()) {
                    round_trip::<$format, (u64, i32, u128)>(&(a, b, c))?;
                }
            }

            #[test]
            fn unit_and_empty() {
                assert!(round_trip::<$format, ()>(&()).is_ok());
                assert!(round_trip::<$format, String>(&String::new()).is_ok());
                assert!(round_trip::<$format, Vec<u8>>(&Vec::new()).is_ok());
            }
        }
    };
}

format_suite!(bincode, Bincode);
#[cfg(feature = "postcard")]
format_suite!(postcard, framewire_codec::typed::Postcard);

/// The bytes bincode 2 (standard config) puts on the wire, pinned so a format change is noticed.
#[test]
fn bincode_wire_bytes_are_stable() {
    let chat = typed_common::Chat {
        id: 300,
        user: "al".into(),
        text: "hi!".into(),
        timestamp: 5,
    };
    let bytes = typed::encode::<Bincode, _>(&chat).expect("encodes");
    // varint 300 = 251 (u16 marker), 300 LE; "al"; "hi!"; 5
    assert_eq!(
        &bytes[..],
        &[251, 0x2c, 0x01, 2, b'a', b'l', 3, b'h', b'i', b'!', 5]
    );
}
