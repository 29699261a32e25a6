//! cargo-fuzz binary for the `mse_responder` target; its body is `tessera_fuzz::targets::mse_responder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::mse_responder::run(data));
