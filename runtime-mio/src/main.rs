//! `tessera-mio`: the Tessera BitTorrent client on a mio event loop.
//!
//! Everything but the loop itself (arguments, storage, disk threads, progress, the
//! offline commands, socket reads and writes) comes from `tessera-client`; the protocol
//! is `tessera-core`.

mod event_loop;

use std::process::ExitCode;

fn main() -> ExitCode {
    tessera_client::main("tessera-mio", event_loop::run)
}
