//! `tessera-mio`: the Tessera BitTorrent client on a mio event loop.
//!
//! Everything but the loop itself (arguments, storage, disk threads, progress, the
//! offline commands) comes from `tessera-client`; the protocol is `tessera-core`.

mod event_loop;

use std::process::ExitCode;

use tessera_client::{Cli, Plan, logging, run_main, run_offline};

fn main() -> ExitCode {
    // Usage errors exit here with clap's message and code 2.
    let cli = Cli::parse_for("tessera-mio");
    logging::init(cli.verbose, cli.quiet);
    run_main(|| match Plan::from_cli(&cli) {
        Some(plan) => event_loop::run(&plan),
        None => run_offline(&cli),
    })
}
