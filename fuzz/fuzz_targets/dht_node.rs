//! cargo-fuzz binary for the `dht_node` target; its body is `tessera_fuzz::targets::dht_node`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::dht_node::run(data));
