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
/// node's allocations closer together. A large swarm's sessions spread over hundreds of MiB
/// that every event touches at random: with `MIMALLOC_ALLOW_LARGE_OS_PAGES=1` in the
/// environment mimalloc asks for transparent huge pages, which saves most TLB misses, and
/// with `MIMALLOC_PURGE_DELAY=-1` it keeps freed memory instead of returning it to the OS
/// after 10 ms (which splits huge pages and faults them in again). `bench/sim.sh` sets both:
/// 1000 peers take about 25 % less time, for 2 % more memory. (The allocator reads its
/// options before `main`, so the simulator cannot set them itself without unsafe code.)
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    match cli.command.unwrap_or(Command::Swarm(cli.swarm)) {
        Command::Swarm(args) => args.run(),
        Command::Dht(args) => args.run(),
        Command::Sweep(args) => args.run(),
    }
}
