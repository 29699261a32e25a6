//! cargo-fuzz binary for the `magnet` target; its body is `tessera_fuzz::targets::magnet`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::magnet::run(data));
