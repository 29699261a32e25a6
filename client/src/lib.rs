//! # tessera-client
//!
//! Everything the command-line runtimes share that is not protocol: argument parsing
//! ([`cli`]), logging, files on disk ([`storage`]), the worker pool for disk and name
//! resolution ([`pool`]), the runtime-independent half of the event loop ([`driver`]),
//! socket work that is the same under every event loop ([`net`], [`signals`]), progress
//! output ([`ui`]) and the commands that need no network (`info`, `verify`, `create`).
//!
//! A runtime supplies a way to wait for sockets, timers and the pool's wake-up, and
//! implements [`Net`]; nothing here knows which event loop it runs under. Its `main` is
//! [`main`] with its loop as the argument.

pub mod cli;
pub mod create;
pub mod driver;
pub mod error;
pub mod exit;
pub mod info;
pub mod logging;
pub mod magnet;
pub mod net;
pub mod output;
pub mod pool;
pub mod resume;
pub mod select;
pub mod signals;
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
pub use net::{NetEvent, ReadBuf, SendQueue};
pub use pool::Wake;

use std::process::ExitCode;

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

/// The whole `main` of a runtime binary called `bin`: parses the arguments (usage errors
/// exit 2 with clap's message), sets up logging, then runs `download` and `seed` with the
/// runtime's `run_loop` and the other commands offline, turning the outcome into the exit
/// code and the one-line error (see [`run_main`]).
pub fn main(bin: &'static str, run_loop: impl FnOnce(&Plan) -> Result<Exit, Error>) -> ExitCode {
    let cli = Cli::parse_for(bin);
    logging::init(cli.verbose, cli.quiet);
    run_main(|| match Plan::from_cli(&cli) {
        Some(plan) => run_loop(&plan),
        None => run_offline(&cli),
    })
}
