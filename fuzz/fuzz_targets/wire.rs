//! cargo-fuzz binary for the `wire` target; its body is `tessera_fuzz::targets::wire`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::wire::run(data));
