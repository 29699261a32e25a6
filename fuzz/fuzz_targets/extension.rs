//! cargo-fuzz binary for the `extension` target; its body is `tessera_fuzz::targets::extension`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::extension::run(data));
