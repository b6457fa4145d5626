//! framewire's fuzz targets. The logic is in `targets.rs`, shared with the corpus replay test.
#![forbid(unsafe_code)]

pub mod targets;
pub mod session_targets;
