//! `uniffi-bindgen`: uniffi's own command line, pinned to the uniffi version of `oncely-ffi`
//! (the generated sources must come from the same uniffi as the library's scaffolding).
//! Used in library mode: `uniffi-bindgen generate --library liboncely_ffi.so --language kotlin`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
