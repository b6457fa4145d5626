//! A serde `Deserializer` wrapper that enforces the typed layer's bounds whatever the format:
//!
//! * nesting depth at most [`MAX_DEPTH`], so a crafted deeply nested payload of a recursive
//!   type cannot overflow the stack;
//! * the length hint a sequence or map gives its visitor is at most the bytes left in the
//!   frame, so serde's pre-allocation follows the frame, not the announced length;
//! * optionally (bincode), a string or byte-buffer length prefix is checked against the bytes
//!   left in the frame before the format allocates the buffer.
//!
//! Every `deserialize_*` call, visitor, seed and access object is wrapped, so the bounds hold
//! at every level of the value.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// Deepest nesting of compound values (structs, enums, sequences, maps, options, newtypes)
/// accepted in one message. Like serde_json's recursion limit: deep enough for any real
/// message, shallow enough that even a debug build's stack holds it on a 2 MiB worker thread.
pub const MAX_DEPTH: usize = 128;

/// Reads a string/bytes length prefix at the start of a slice: `(length, prefix bytes)`.
pub(super) type PeekLen = fn(&[u8]) -> Option<(u64, usize)>;

/// Shared state of one decode.
pub(super) struct Ctx<'a> {
    depth: Cell<usize>,
    /// The frame's payload.
    src: &'a [u8],
    /// How many bytes of `src` the format has read so far, if it reports it.
    consumed: Option<&'a Cell<usize>>,
    /// Reads a string/bytes length prefix at the start of a slice: `(length, prefix bytes)`.
    peek_len: Option<PeekLen>,
    /// Why the guard refused the value, for formats whose errors drop custom messages.
    refusal: RefCell<Option<String>>,
}

impl<'a> Ctx<'a> {
    /// For a format that reports its position in `consumed` and whose string/bytes length
    /// prefix `peek_len` can read.
    pub(super) fn tracking(src: &'a [u8], consumed: &'a Cell<usize>, peek_len: PeekLen) -> Self {
        Ctx {
            depth: Cell::new(0),
            src,
            consumed: Some(consumed),
            peek_len: Some(peek_len),
            refusal: RefCell::new(None),
        }
    }

    /// For a format whose position is unknown: hints are capped at the whole frame.
    #[cfg_attr(not(feature = "postcard"), allow(dead_code))]
    pub(super) fn whole_frame(src: &'a [u8]) -> Self {
        Ctx {
            depth: Cell::new(0),
            src,
            consumed: None,
            peek_len: None,
            refusal: RefCell::new(None),
        }
    }

    /// The reason the guard refused the value, if it did.
    #[cfg_attr(not(feature = "postcard"), allow(dead_code))]
    pub(super) fn take_refusal(&self) -> Option<String> {
        self.refusal.borrow_mut().take()
    }

    fn refuse<E: de::Error>(&self, reason: String) -> E {
        let err = E::custom(&reason);
        *self.refusal.borrow_mut() = Some(reason);
        err
    }

    fn rest(&self) -> &'a [u8] {
        match self.consumed {
            Some(pos) => self.src.get(pos.get()..).unwrap_or(&[]),
            None => self.src,
        }
    }

    fn remaining(&self) -> usize {
        self.rest().len()
    }

    fn enter<E: de::Error>(&self) -> Result<(), E> {
        let depth = self.depth.get() + 1;
        if depth > MAX_DEPTH {
            return Err(self.refuse(format!("value nested deeper than {MAX_DEPTH} levels")));
        }
        self.depth.set(depth);
        Ok(())
    }

    fn leave(&self) {
        self.depth.set(self.depth.get().saturating_sub(1));
    }

    fn cap(&self, hint: Option<usize>) -> Option<usize> {
        hint.map(|n| n.min(self.remaining()))
    }

    /// Refuses a length-prefixed buffer that announces more bytes than the frame has left.
    fn check_len<E: de::Error>(&self) -> Result<(), E> {
        let Some(peek) = self.peek_len else {
            return Ok(());
        };
        let rest = self.rest();
        match peek(rest) {
            Some((len, prefix)) => {
                let left = rest.len().saturating_sub(prefix);
                if u64::try_from(left).is_ok_and(|left| len > left) {
                    Err(self.refuse(format!(
                        "a length prefix announces {len} bytes but only {left} are left in the frame"
                    )))
                } else {
                    Ok(())
                }
            }
            // Malformed or truncated prefix: let the format report it.
            None => Ok(()),
        }
    }
}

/// The wrapped deserializer.
pub(super) struct Guard<'c, D> {
    pub(super) inner: D,
    pub(super) ctx: &'c Ctx<'c>,
}

struct GuardVisitor<'c, V> {
    inner: V,
    ctx: &'c Ctx<'c>,
}

struct GuardSeed<'c, S> {
    inner: S,
    ctx: &'c Ctx<'c>,
}

struct GuardAccess<'c, A> {
    inner: A,
    ctx: &'c Ctx<'c>,
}

impl<'c, V> GuardVisitor<'c, V> {
    fn new(inner: V, ctx: &'c Ctx<'c>) -> Self {
        GuardVisitor { inner, ctx }
    }
}

macro_rules! forward_plain {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.inner.$method(GuardVisitor::new(visitor, self.ctx))
            }
        )*
    };
}

macro_rules! forward_nested {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.ctx.enter::<D::Error>()?;
                let out = self.inner.$method(GuardVisitor::new(visitor, self.ctx));
                self.ctx.leave();
                out
            }
        )*
    };
}

macro_rules! forward_len_checked {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.ctx.check_len::<D::Error>()?;
                self.inner.$method(GuardVisitor::new(visitor, self.ctx))
            }
        )*
    };
}

impl<'de, 'c, D: Deserializer<'de>> Deserializer<'de> for Guard<'c, D> {
    type Error = D::Error;

    forward_plain!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_unit,
        deserialize_identifier,
    );

    forward_len_checked!(
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
    );

    forward_nested!(
        deserialize_any,
        deserialize_option,
        deserialize_seq,
        deserialize_map,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_unit_struct(name, GuardVisitor::new(visitor, self.ctx))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.ctx.enter::<D::Error>()?;
        let out = self
            .inner
            .deserialize_newtype_struct(name, GuardVisitor::new(visitor, self.ctx));
        self.ctx.leave();
        out
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.ctx.enter::<D::Error>()?;
        let out = self
            .inner
            .deserialize_tuple(len, GuardVisitor::new(visitor, self.ctx));
        self.ctx.leave();
        out
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.ctx.enter::<D::Error>()?;
        let out =
            self.inner
                .deserialize_tuple_struct(name, len, GuardVisitor::new(visitor, self.ctx));
        self.ctx.leave();
        out
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.ctx.enter::<D::Error>()?;
        let out = self
            .inner
            .deserialize_struct(name, fields, GuardVisitor::new(visitor, self.ctx));
        self.ctx.leave();
        out
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.ctx.enter::<D::Error>()?;
        let out = self
            .inner
            .deserialize_enum(name, variants, GuardVisitor::new(visitor, self.ctx));
        self.ctx.leave();
        out
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! visit_plain {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, 'c, V: Visitor<'de>> Visitor<'de> for GuardVisitor<'c, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    visit_plain!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
        self.inner.visit_some(Guard {
            inner: d,
            ctx: self.ctx,
        })
    }

    fn visit_newtype_struct<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
        self.inner.visit_newtype_struct(Guard {
            inner: d,
            ctx: self.ctx,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_seq(GuardAccess {
            inner: seq,
            ctx: self.ctx,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(GuardAccess {
            inner: map,
            ctx: self.ctx,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(GuardAccess {
            inner: data,
            ctx: self.ctx,
        })
    }
}

impl<'de, 'c, S: DeserializeSeed<'de>> DeserializeSeed<'de> for GuardSeed<'c, S> {
    type Value = S::Value;

    fn deserialize<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
        self.inner.deserialize(Guard {
            inner: d,
            ctx: self.ctx,
        })
    }
}

impl<'de, 'c, A: SeqAccess<'de>> SeqAccess<'de> for GuardAccess<'c, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(GuardSeed {
            inner: seed,
            ctx: self.ctx,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.ctx.cap(self.inner.size_hint())
    }
}

impl<'de, 'c, A: MapAccess<'de>> MapAccess<'de> for GuardAccess<'c, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(GuardSeed {
            inner: seed,
            ctx: self.ctx,
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(GuardSeed {
            inner: seed,
            ctx: self.ctx,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.ctx.cap(self.inner.size_hint())
    }
}

impl<'de, 'c, A: EnumAccess<'de>> EnumAccess<'de> for GuardAccess<'c, A> {
    type Error = A::Error;
    type Variant = GuardAccess<'c, A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let ctx = self.ctx;
        let (value, variant) = self.inner.variant_seed(GuardSeed { inner: seed, ctx })?;
        Ok((
            value,
            GuardAccess {
                inner: variant,
                ctx,
            },
        ))
    }
}

impl<'de, 'c, A: VariantAccess<'de>> VariantAccess<'de> for GuardAccess<'c, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(GuardSeed {
            inner: seed,
            ctx: self.ctx,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner
            .tuple_variant(len, GuardVisitor::new(visitor, self.ctx))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner
            .struct_variant(fields, GuardVisitor::new(visitor, self.ctx))
    }
}
