//! cargo-fuzz binary for the `metainfo` target; its body is `tessera_fuzz::targets::metainfo`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::metainfo::run(data));
