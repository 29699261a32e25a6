//! The bodies of the fuzz targets, one module per target, each with `pub fn run(data: &[u8])`
//! that feeds one input through the code under test and panics if a promise breaks.
//!
//! This directory is used twice: by the fuzz binaries in `fuzz/fuzz_targets/` (each a
//! one-line `fuzz_target!` calling its module's `run`), and, included by path, by the main
//! workspace's test command (`tests/tests/fuzz_corpus.rs`), which replays every file of
//! `fuzz/corpus/<target>/` through [`ALL`]. It may therefore use only `tessera-core`,
//! `bytes`, `sha1`, `arbitrary` and std, and reach its helpers as `super::split`, not
//! through the `tessera_fuzz` crate.
//!
//! A new target joins with its module file here and one line in the `targets!` list below
//! (its name is its module, its fuzz binary and its corpus directory); see fuzz/README.md.

pub mod split;

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(pub mod $name;)*

        /// Every target: its name (module, fuzz binary and corpus directory) and its body.
        pub const ALL: &[(&str, fn(&[u8]))] = &[$((stringify!($name), $name::run)),*];
    };
}

targets! {
    announce,
    bencode,
    dht_node,
    dht_state,
    extension,
    fast,
    http_response,
    krpc,
    magnet,
    metainfo,
    mse_responder,
    session,
    udp_tracker,
    ut_metadata,
    ut_pex,
    utp_packet,
    utp_socket,
    wire,
}
