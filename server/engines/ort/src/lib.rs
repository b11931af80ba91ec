//! ONNX Runtime engine for Spindle (crate ort, load-dynamic).
