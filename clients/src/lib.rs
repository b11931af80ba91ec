//! Spindle's client library: KServe v2 over HTTP with binary tensors.
