//! cargo-fuzz binary for the `ut_metadata` target; its body is `tessera_fuzz::targets::ut_metadata`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::ut_metadata::run(data));
