//! Fuzz target `v2_json`: see [`spindle_fuzz::v2_json`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spindle_fuzz::v2_json(data);
});
