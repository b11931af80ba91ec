//! Spindle integration tests: real servers on port 0, real clients. The tests live in `tests/`.
