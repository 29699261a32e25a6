//! # tessera-client
//!
//! Everything the command-line runtimes share that is not protocol: argument parsing
//! ([`cli`]), logging, files on disk ([`storage`]), the worker pool for disk and name
//! resolution ([`pool`]), the runtime-independent half of the event loop ([`driver`]),
//! socket work that is the same under every event loop ([`net`], [`signals`]), progress
//! output ([`ui`]), the commands that need no network (`info`, `verify`, `create`,
//! `completions`) and the [`demo`].
//!
//! A runtime supplies a way to wait for sockets, timers and the pool's wake-up, and
//! implements [`Net`]; nothing here knows which event loop it runs under. Its `main` is
//! [`main`] with its loop as the argument: a function that runs every node of a [`Run`]
//! (one for `download` and `seed`, several for `demo`; see [`fleet`]) to the end.

pub mod cli;
pub mod create;
pub mod demo;
pub mod dht;
pub mod driver;
pub mod error;
pub mod exit;
pub mod fleet;
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
pub use driver::{Core, Driver, Mode, Net, Plan, Run, Source};
pub use error::Error;
pub use exit::{Exit, run_main};
pub use fleet::{Fleet, Node};
pub use net::{NetEvent, ReadBuf, SendQueue};
pub use pool::Wake;
pub use ui::Board;

use std::process::ExitCode;

/// Runs a command that needs no network: `info`, `verify`, `create` or `completions`.
/// (`download`, `seed` and `demo` need a runtime: see [`main`].)
pub fn run_offline(cli: &Cli, bin: &str) -> Result<Exit, Error> {
    match &cli.command {
        Command::Info(args) => info::run(args),
        Command::Verify(args) => verify::run(args, cli.quiet),
        Command::Create(args) => create::run(args, cli.quiet),
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut command, bin, &mut script);
            output::text(&String::from_utf8_lossy(&script));
            Ok(Exit::Success)
        }
        Command::Download(_) | Command::Seed(_) | Command::Demo(_) => Err(Error::other(
            "internal error: download, seed and demo need a runtime",
        )),
    }
}

/// The whole `main` of a runtime binary called `bin`: parses the arguments (usage errors
/// exit 2 with clap's message), sets up logging, then runs `download`, `seed` and `demo`
/// with the runtime's `run_loop` (which runs every node of a [`Run`] on one event loop and
/// returns how each ended) and the other commands offline, turning the outcome into the
/// exit code and the one-line error (see [`run_main`]).
pub fn main(
    bin: &'static str,
    run_loop: impl FnOnce(&Run) -> Result<Vec<Exit>, Error>,
) -> ExitCode {
    let cli = Cli::parse_for(bin);
    logging::init(cli.verbose, cli.quiet);
    run_main(|| {
        let board = Board::new(cli.quiet);
        if let Command::Demo(args) = &cli.command {
            return demo::run(args, &board, run_loop);
        }
        match Plan::from_cli(&cli)? {
            Some(plan) => {
                let exits = run_loop(&Run::single(plan, board))?;
                Ok(exits.into_iter().next().unwrap_or(Exit::Interrupted))
            }
            None => run_offline(&cli, bin),
        }
    })
}
