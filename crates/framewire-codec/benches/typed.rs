//! Typed-message benchmark (placeholder, filled in next).

fn main() {}
