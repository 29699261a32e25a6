//! cargo-fuzz binary for the `bencode` target; its body is `tessera_fuzz::targets::bencode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::bencode::run(data));
