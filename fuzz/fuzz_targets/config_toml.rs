//! Fuzz target `config_toml`: see [`spindle_fuzz::config_toml`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spindle_fuzz::config_toml(data);
});
