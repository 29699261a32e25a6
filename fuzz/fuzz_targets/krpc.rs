//! cargo-fuzz binary for the `krpc` target; its body is `tessera_fuzz::targets::krpc`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::krpc::run(data));
