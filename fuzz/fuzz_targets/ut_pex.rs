//! cargo-fuzz binary for the `ut_pex` target; its body is `tessera_fuzz::targets::ut_pex`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::ut_pex::run(data));
