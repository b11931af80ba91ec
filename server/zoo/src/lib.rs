//! Spindle's model zoo: the seed's architectures written as real ONNX files, in Rust.
