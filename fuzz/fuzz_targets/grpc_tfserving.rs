//! Fuzz target `grpc_tfserving`: see [`spindle_fuzz::grpc_tfserving`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spindle_fuzz::grpc_tfserving(data);
});
