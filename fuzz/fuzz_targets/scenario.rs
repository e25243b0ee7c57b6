//! Fuzz target `scenario`: see `oncely_fuzz::scenario`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oncely_fuzz::scenario(data));
