//! Fuzz target `features_toml`: see [`spindle_fuzz::features_toml`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spindle_fuzz::features_toml(data);
});
