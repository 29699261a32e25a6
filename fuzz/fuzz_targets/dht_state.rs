//! cargo-fuzz binary for the `dht_state` target; its body is `tessera_fuzz::targets::dht_state`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::dht_state::run(data));
