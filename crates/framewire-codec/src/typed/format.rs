//! The [`Format`] trait and its implementations.

use std::cell::Cell;

use bytes::BytesMut;
use serde::{de::DeserializeOwned, Serialize};

use super::guard::{Ctx, Guard};
use super::TypedError;

/// A serde data format that turns one value into one frame's payload and back.
///
/// Implementations are zero-sized markers ([`Bincode`], and `Postcard` with the `postcard`
/// feature); the functions are associated functions so that a format is chosen by a type
/// parameter (`TypedFramed<S, In, Out, Postcard>`), at no run-time cost.
///
/// # Contract for implementors
///
/// * [`encode_into`](Format::encode_into) **appends** the encoding to `dst` and leaves what was
///   already there untouched, also on error (what it appended before failing may remain; the
///   callers in this module discard it).
/// * [`decode`](Format::decode) receives exactly one frame's payload. It must consume all of
///   it: bytes left after the value are [`TypedError::TrailingBytes`]. It must never read past
///   the slice, never panic, and must not allocate far more than the slice could describe (a
///   length prefix inside the payload that announces more than the payload holds is an error,
///   not an allocation).
pub trait Format {
    /// Short name used in error messages, such as `"bincode"`.
    const NAME: &'static str;

    /// Appends the encoding of `value` to `dst`.
    ///
    /// # Errors
    ///
    /// [`TypedError::Encode`] if the value cannot be represented in this format.
    fn encode_into<T: Serialize + ?Sized>(value: &T, dst: &mut BytesMut) -> Result<(), TypedError>;

    /// Decodes one value that occupies all of `src`, one frame's payload.
    ///
    /// # Errors
    ///
    /// [`TypedError::Decode`] if `src` is not a valid encoding of `T` (carrying `src.len()`),
    /// [`TypedError::TrailingBytes`] if a value decoded but did not use all of `src`.
    fn decode<T: DeserializeOwned>(src: &[u8]) -> Result<T, TypedError>;
}

/// bincode 2 through its serde API, with `bincode::config::standard()` (little-endian, varint
/// integers): the default format.
///
/// bincode is pinned to 2.x: 3.0 on crates.io is an empty crate that fails to compile, and
/// bincode is marked unmaintained (RUSTSEC-2025-0141). The 2.x line is complete and stable.
///
/// # Bounded decoding
///
/// Decoding reads from the frame's slice, so it can never read past the frame, and every
/// value passes through a guard (shared with `Postcard`) that enforces, at every level of
/// the value:
///
/// * **Strings and byte buffers**: the length prefix is checked against the bytes left in
///   the frame *before* bincode allocates the buffer. A frame of 12 bytes that announces a
///   2^60-byte string costs an error message, not an allocation.
/// * **Sequences and maps**: the length hint serde's visitors pre-allocate from is capped at
///   the bytes left in the frame, so a crafted `Vec<T>` length pre-allocates at most
///   `bytes left × size_of::<T>()` (and never more than serde's own 1 MiB cap); after that the
///   collection grows only with elements actually decoded.
/// * **Nesting**: at most [`MAX_DEPTH`](super::MAX_DEPTH) levels, so a crafted deeply nested
///   value of a recursive type cannot overflow the stack.
///
/// As a second line of defence bincode's own decode limit is set per frame: the limit is a
/// const generic in bincode, so it is picked from a ladder of powers of four, the smallest
/// step at least `16 ×` the frame length (at least 4 KiB; see [`bincode_decode_limit`]).
/// Sixteen is the largest ratio of in-memory size to encoded size bincode produces (a one-byte
/// varint decoding into a `u128`), so a value that really fits in its frame is never refused.
///
/// One case is not bounded: a sequence of zero-sized elements (`Vec<()>`) reads no bytes per
/// element, so a crafted length makes it loop (without allocating). Avoid zero-sized element
/// types in messages from untrusted peers.
///
/// # Examples
///
/// ```
/// use framewire_codec::typed::{self, Bincode};
///
/// let bytes = typed::encode::<Bincode, _>(&(7u64, "hi".to_string()))?;
/// assert_eq!(&bytes[..], &[7, 2, b'h', b'i']); // varint 7, length 2, "hi"
/// let back: (u64, String) = typed::decode::<Bincode, _>(&bytes)?;
/// assert_eq!(back, (7, "hi".to_string()));
/// # Ok::<(), framewire_codec::typed::TypedError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bincode;

/// bincode's writer interface over a `BytesMut`, appending.
struct BytesMutWriter<'a>(&'a mut BytesMut);

impl bincode::enc::write::Writer for BytesMutWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// The smallest bincode decode limit used, in bytes.
const MIN_DECODE_LIMIT: usize = 4 * 1024;

/// Largest ratio of claimed (in-memory) bytes to encoded bytes in bincode 2's standard config.
const MAX_EXPANSION: usize = 16;

/// The decode limit bincode uses for a frame of `len` bytes (see [`Bincode`]).
///
/// The second line of defence behind the guard's length checks: even if a length prefix got
/// past them, bincode would refuse to allocate more than this for one value decoded from a
/// frame of `len` bytes. Always at least `16 × len`, so no real value is refused. Exposed for
/// tests and documentation.
pub fn bincode_decode_limit(len: usize) -> usize {
    let need = len.saturating_mul(MAX_EXPANSION).max(MIN_DECODE_LIMIT);
    let mut limit = MIN_DECODE_LIMIT;
    while limit < need {
        match limit.checked_mul(4) {
            Some(next) if next <= MAX_LADDER => limit = next,
            _ => return usize::MAX,
        }
    }
    limit
}

#[cfg(target_pointer_width = "64")]
const MAX_LADDER: usize = 1 << 36;
#[cfg(not(target_pointer_width = "64"))]
const MAX_LADDER: usize = 1 << 30;

/// A bincode `Reader` over the frame that publishes how far it has read, so the
/// [`Guard`](super::guard) can cap hints and check length prefixes against the bytes left.
struct TrackingReader<'a> {
    src: &'a [u8],
    pos: &'a Cell<usize>,
}

impl TrackingReader<'_> {
    fn rest(&self) -> &[u8] {
        self.src.get(self.pos.get()..).unwrap_or(&[])
    }
}

impl bincode::de::read::Reader for TrackingReader<'_> {
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), bincode::error::DecodeError> {
        let rest = self.rest();
        match rest.get(..bytes.len()) {
            Some(chunk) => {
                bytes.copy_from_slice(chunk);
                self.pos.set(self.pos.get() + bytes.len());
                Ok(())
            }
            None => Err(bincode::error::DecodeError::UnexpectedEnd {
                additional: bytes.len() - rest.len(),
            }),
        }
    }

    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.src.get(self.pos.get()..)?.get(..n)
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.rest().len());
        self.pos.set(self.pos.get() + n);
    }
}

/// Reads a bincode 2 standard-config varint length (a `u64`) at the start of `src`:
/// `(value, bytes used)`, or `None` if it is truncated or not a u64 varint.
fn bincode_varint_len(src: &[u8]) -> Option<(u64, usize)> {
    let (&first, rest) = src.split_first()?;
    match first {
        0..=250 => Some((u64::from(first), 1)),
        251 => Some((
            u64::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?)),
            3,
        )),
        252 => Some((
            u64::from(u32::from_le_bytes(rest.get(..4)?.try_into().ok()?)),
            5,
        )),
        253 => Some((u64::from_le_bytes(rest.get(..8)?.try_into().ok()?), 9)),
        _ => None,
    }
}

fn bincode_decode<T: DeserializeOwned>(
    src: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    use bincode::config::standard;
    use bincode::serde::OwnedSerdeDecoder;
    let limit = bincode_decode_limit(src.len());
    let pos = Cell::new(0);
    let ctx = Ctx::tracking(src, &pos, bincode_varint_len);
    macro_rules! run {
        ($config:expr) => {{
            let reader = TrackingReader { src, pos: &pos };
            let mut decoder = OwnedSerdeDecoder::from_reader(reader, $config);
            let value = T::deserialize(Guard {
                inner: decoder.as_deserializer(),
                ctx: &ctx,
            })?;
            return Ok((value, pos.get()));
        }};
    }
    macro_rules! ladder {
        ($($n:literal),*) => {
            $( if limit == 1usize << $n {
                run!(standard().with_limit::<{ 1usize << $n }>());
            } )*
        };
    }
    ladder!(12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    #[cfg(target_pointer_width = "64")]
    {
        ladder!(32, 34, 36);
    }
    // Frames beyond the ladder (only with a max frame length over 4 GiB / 16).
    run!(standard().with_limit::<{ usize::MAX }>())
}

impl Format for Bincode {
    const NAME: &'static str = "bincode";

    fn encode_into<T: Serialize + ?Sized>(value: &T, dst: &mut BytesMut) -> Result<(), TypedError> {
        bincode::serde::encode_into_writer(value, BytesMutWriter(dst), bincode::config::standard())
            .map_err(|e| TypedError::Encode {
                format: Self::NAME,
                reason: e.to_string(),
            })
    }

    fn decode<T: DeserializeOwned>(src: &[u8]) -> Result<T, TypedError> {
        match bincode_decode(src) {
            Ok((value, consumed)) if consumed == src.len() => Ok(value),
            Ok((_, consumed)) => Err(TypedError::TrailingBytes {
                len: src.len(),
                consumed,
                format: Self::NAME,
            }),
            Err(bincode::error::DecodeError::LimitExceeded) => Err(TypedError::Decode {
                len: src.len(),
                format: Self::NAME,
                reason: format!(
                    "the value claims more than {} bytes of memory, the limit for this frame",
                    bincode_decode_limit(src.len())
                ),
            }),
            Err(bincode::error::DecodeError::OtherString(reason)) => Err(TypedError::Decode {
                len: src.len(),
                format: Self::NAME,
                reason,
            }),
            Err(e) => Err(TypedError::Decode {
                len: src.len(),
                format: Self::NAME,
                reason: e.to_string(),
            }),
        }
    }
}

/// [postcard](https://docs.rs/postcard) 1.x: a compact, `no_std`-friendly serde format
/// (varint integers, no field names). Enabled by the `postcard` cargo feature of
/// `framewire-codec`.
///
/// Choose it when the peer is an embedded device or another postcard user; otherwise the
/// default [`Bincode`] is as compact for typical messages. Postcard checks every string and
/// byte-buffer length against the bytes left in the frame before allocating; the same guard as
/// for [`Bincode`] caps sequence pre-allocation (at the frame length here) and nesting depth.
///
/// # Examples
///
/// ```
/// use framewire_codec::typed::{self, Postcard};
///
/// let bytes = typed::encode::<Postcard, _>(&(7u64, "hi".to_string()))?;
/// let back: (u64, String) = typed::decode::<Postcard, _>(&bytes)?;
/// assert_eq!(back, (7, "hi".to_string()));
/// # Ok::<(), framewire_codec::typed::TypedError>(())
/// ```
#[cfg(feature = "postcard")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Postcard;

/// postcard's output flavor over a `BytesMut`, appending.
#[cfg(feature = "postcard")]
struct BytesMutFlavor<'a>(&'a mut BytesMut);

#[cfg(feature = "postcard")]
impl postcard::ser_flavors::Flavor for BytesMutFlavor<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.extend_from_slice(&[data]);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

#[cfg(feature = "postcard")]
impl Format for Postcard {
    const NAME: &'static str = "postcard";

    fn encode_into<T: Serialize + ?Sized>(value: &T, dst: &mut BytesMut) -> Result<(), TypedError> {
        postcard::serialize_with_flavor(value, BytesMutFlavor(dst)).map_err(|e| {
            TypedError::Encode {
                format: Self::NAME,
                reason: e.to_string(),
            }
        })
    }

    fn decode<T: DeserializeOwned>(src: &[u8]) -> Result<T, TypedError> {
        let ctx = Ctx::whole_frame(src);
        let mut de = postcard::Deserializer::from_bytes(src);
        let decoded = T::deserialize(Guard {
            inner: &mut de,
            ctx: &ctx,
        })
        .and_then(|value| Ok((value, de.finalize()?)));
        match decoded {
            Ok((value, [])) => Ok(value),
            Ok((_, rest)) => Err(TypedError::TrailingBytes {
                len: src.len(),
                consumed: src.len() - rest.len(),
                format: Self::NAME,
            }),
            Err(e) => Err(TypedError::Decode {
                len: src.len(),
                format: Self::NAME,
                reason: ctx.take_refusal().unwrap_or_else(|| e.to_string()),
            }),
        }
    }
}
