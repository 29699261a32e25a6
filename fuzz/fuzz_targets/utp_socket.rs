//! cargo-fuzz binary for the `utp_socket` target; its body is `tessera_fuzz::targets::utp_socket`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::targets::utp_socket::run(data));
