//! Fuzz target `criteo_rows`: see [`spindle_fuzz::criteo_rows`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spindle_fuzz::criteo_rows(data);
});
