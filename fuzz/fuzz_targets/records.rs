//! Fuzz target `records`: see `oncely_fuzz::records`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oncely_fuzz::records(data));
