//! Fuzz target `store_file`: see `oncely_fuzz::store_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oncely_fuzz::store_file(data));
