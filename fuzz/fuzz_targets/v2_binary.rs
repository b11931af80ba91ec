//! Fuzz target `v2_binary`: see [`spindle_fuzz::v2_binary`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spindle_fuzz::v2_binary(data);
});
