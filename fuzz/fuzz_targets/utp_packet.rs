//! cargo-fuzz binary for the `utp_packet` target; its body is `tessera_fuzz::targets::utp_packet`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::utp_packet::run(data));
