//! `tessera-sim`: runs a simulation and reports what happened. Each mode is a subcommand;
//! without one, the flags are the swarm mode's (`tessera-sim --peers 50` is
//! `tessera-sim swarm --peers 50`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tessera_sim::cli::SwarmArgs;
use tessera_sim::dht::cli::DhtArgs;
use tessera_sim::sweep::SweepArgs;

/// Thousands of sessions allocate and free small buffers all the time: mimalloc's
/// size-segregated thread-local pages are faster than the system allocator and keep a
/// node's allocations closer together.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocator's options the simulator runs with unless the environment names any of
/// them. A large swarm's sessions spread over hundreds of MiB that every event touches at
/// random: with large OS pages allowed mimalloc asks for transparent huge pages, which
/// saves most TLB misses, and with purging off it keeps freed memory instead of returning
/// it to the OS (which splits huge pages and faults them in again).
const ALLOCATOR_OPTIONS: [(&str, &str); 2] = [
    ("MIMALLOC_ALLOW_LARGE_OS_PAGES", "1"),
    ("MIMALLOC_PURGE_DELAY", "-1"),
];

/// mimalloc reads its options from the environment before `main`, and setting them
/// through its C interface would take unsafe code: so the simulator runs itself again,
/// once, with them in its environment (when the environment names none of them; a user's
/// choice stands). Returns only if that cannot be done, and the run goes on as it is.
#[cfg(unix)]
fn with_allocator_options() {
    use std::os::unix::process::CommandExt;
    if ALLOCATOR_OPTIONS
        .iter()
        .any(|(k, _)| std::env::var_os(k).is_some())
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    cmd.args(args).envs(ALLOCATOR_OPTIONS);
    // `exec` returns only on failure.
    let _ = cmd.exec();
}

#[cfg(not(unix))]
fn with_allocator_options() {}

/// Deterministic BitTorrent simulator: real tessera-core sessions on a virtual network.
/// The same seed gives the same run (and the same trace hash).
#[derive(Debug, Parser)]
#[command(name = "tessera-sim", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand: the swarm mode.
    #[command(flatten)]
    swarm: SwarmArgs,
}

/// The modes.
#[derive(Debug, Subcommand)]
enum Command {
    /// A BitTorrent swarm of real sessions, run to completion (the default).
    Swarm(SwarmArgs),
    /// A DHT of real core nodes: get_peers lookups under latency, loss, churn and hostile
    /// nodes.
    Dht(DhtArgs),
    /// Random scenarios, one per seed (sizes, peers, faults and adversaries drawn from it),
    /// over many seeds and processes; stops at the first failing seed and prints the
    /// command that replays it.
    Sweep(SweepArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    with_allocator_options();
    match cli.command.unwrap_or(Command::Swarm(cli.swarm)) {
        Command::Swarm(args) => args.run(),
        Command::Dht(args) => args.run(),
        Command::Sweep(args) => args.run(),
    }
}
