//! `tessera-smol`: the Tessera BitTorrent client on smol (async-io sockets and timers, a
//! local executor with a task per connection).
//!
//! Everything but the loop itself (arguments, storage, disk threads, progress, the
//! offline commands, socket reads and writes) comes from `tessera-client`; the protocol
//! is `tessera-core`.

mod event_loop;

use std::process::ExitCode;

fn main() -> ExitCode {
    tessera_client::main("tessera-smol", event_loop::run)
}
