//! Fuzz target `image`: see [`spindle_fuzz::image`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spindle_fuzz::image(data);
});
