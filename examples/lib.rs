//! Shared helpers for the framewire example programs (none yet).
