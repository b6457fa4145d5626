//! Shared helpers for the framewire example programs (none yet).

#[path = "loadgen/mod.rs"]
pub mod loadgen;
