//! Message types and proptest strategies shared by the typed-message tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// The chat message of the benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chat {
    pub id: u64,
    pub user: String,
    pub text: String,
    pub timestamp: u64,
}

/// An enum with unit, newtype, tuple and struct variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Ping,
    Leave(u32),
    Move(i16, i64),
    Join { user: String, admin: bool },
    Msg(Chat),
    Blob(Vec<u8>),
}

/// Nested collections, options, wide integers, floats and chars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nested {
    pub map: BTreeMap<String, Vec<Option<i64>>>,
    pub lists: Vec<Vec<u8>>,
    pub events: Vec<Event>,
    pub wide: (u128, i128),
    pub ratio: f64,
    pub letter: char,
    pub maybe: Option<Box<Nested>>,
}

pub fn chat() -> impl Strategy<Value = Chat> {
    (any::<u64>(), ".{0,40}", ".{0,200}", any::<u64>()).prop_map(|(id, user, text, timestamp)| {
        Chat {
            id,
            user,
            text,
            timestamp,
        }
    })
}

pub fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::Ping),
        any::<u32>().prop_map(Event::Leave),
        (any::<i16>(), any::<i64>()).prop_map(|(a, b)| Event::Move(a, b)),
        (".{0,20}", any::<bool>()).prop_map(|(user, admin)| Event::Join { user, admin }),
        chat().prop_map(Event::Msg),
        vec(any::<u8>(), 0..300).prop_map(Event::Blob),
    ]
}

fn nested_leaf() -> impl Strategy<Value = Nested> {
    (
        btree_map(".{0,8}", vec(any::<Option<i64>>(), 0..6), 0..5),
        vec(vec(any::<u8>(), 0..20), 0..5),
        vec(event(), 0..4),
        (any::<u128>(), any::<i128>()),
        -1e300f64..1e300,
        any::<char>(),
    )
        .prop_map(|(map, lists, events, wide, ratio, letter)| Nested {
            map,
            lists,
            events,
            wide,
            ratio,
            letter,
            maybe: None,
        })
}

pub fn nested() -> impl Strategy<Value = Nested> {
    (nested_leaf(), proptest::option::of(nested_leaf())).prop_map(|(mut outer, inner)| {
        outer.maybe = inner.map(Box::new);
        outer
    })
}
