//! Fuzz target `grpc_v2`: see [`spindle_fuzz::grpc_v2`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spindle_fuzz::grpc_v2(data);
});
