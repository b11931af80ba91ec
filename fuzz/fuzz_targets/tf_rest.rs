//! Fuzz target `tf_rest`: see [`spindle_fuzz::tf_rest`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spindle_fuzz::tf_rest(data);
});
