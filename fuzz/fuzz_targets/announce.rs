//! cargo-fuzz binary for the `announce` target; its body is `tessera_fuzz::targets::announce`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::announce::run(data));
