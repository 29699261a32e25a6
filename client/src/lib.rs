//! # tessera-client
//!
//! Everything the command-line runtimes share that is not protocol: argument parsing
//! ([`cli`]), logging, files on disk ([`storage`]), the worker pool for disk and name
//! resolution ([`pool`]), the runtime-independent half of the event loop ([`driver`]),
//! progress output ([`ui`]) and the commands that need no network (`info`, `verify`,
//! `create`).
//!
//! A runtime supplies sockets and a way to wake its loop; nothing here knows which event
//! loop it runs under.

pub mod cli;
pub mod create;
pub mod driver;
pub mod error;
pub mod exit;
pub mod info;
pub mod logging;
pub mod pool;
pub mod storage;
pub mod torrent;
pub mod ui;
pub mod verify;

#[cfg(test)]
pub(crate) mod testutil;

pub use cli::{Cli, Command};
pub use driver::{Core, Driver, Mode, Net, Plan};
pub use error::Error;
pub use exit::{Exit, run_main};
pub use pool::Wake;

/// Runs a command that needs no network: `info`, `verify` or `create`. (`download` and
/// `seed` need a runtime: build a [`Driver`] from [`Plan::from_cli`].)
pub fn run_offline(cli: &Cli) -> Result<Exit, Error> {
    match &cli.command {
        Command::Info(args) => info::run(args),
        Command::Verify(args) => verify::run(args, cli.quiet),
        Command::Create(args) => create::run(args, cli.quiet),
        Command::Download(_) | Command::Seed(_) => Err(Error::other(
            "internal error: download and seed need a runtime",
        )),
    }
}
