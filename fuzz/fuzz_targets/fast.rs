//! cargo-fuzz binary for the `fast` target; its body is `tessera_fuzz::targets::fast`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::fast::run(data));
