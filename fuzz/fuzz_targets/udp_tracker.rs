//! cargo-fuzz binary for the `udp_tracker` target; its body is `tessera_fuzz::targets::udp_tracker`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::udp_tracker::run(data));
