//! cargo-fuzz binary for the `http_response` target; its body is `tessera_fuzz::targets::http_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::http_response::run(data));
