//! Fuzz target `options`: see `oncely_fuzz::options`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oncely_fuzz::options(data));
