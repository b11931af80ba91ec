//! Spindle's load generator: closed-loop concurrency sweeps with HDR latency histograms.
