//! tract engine for Spindle: pure Rust, no native library.
