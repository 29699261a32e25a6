//! `tessera-sim`: runs a simulated swarm to completion and reports what happened.

use std::process::ExitCode;

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

use clap::{Parser, ValueEnum};
use tessera_core::Duration;
use tessera_core::picker::Strategy;
use tessera_sim::{Adversary, Mode, Scenario, parse_size};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FaultLevel {
    None,
    Churn,
    Hostile,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Picker {
    Rarest,
    Sequential,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Payload {
    Real,
    Virtual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// Deterministic BitTorrent swarm simulator: real tessera-core sessions on a virtual
/// network. The same seed gives the same run (and the same trace hash).
#[derive(Debug, Parser)]
#[command(name = "tessera-sim", version)]
struct Args {
    /// Leechers (honest, reciprocating peers).
    #[arg(long, default_value_t = 20)]
    peers: u32,
    /// Seeders at the start.
    #[arg(long, default_value_t = 1)]
    seeders: u32,
    /// Torrent size (suffixes: KiB, MiB, GiB).
    #[arg(long, default_value = "4MiB", value_parser = parse_size)]
    size: u64,
    /// Piece size, a multiple of 16 KiB.
    #[arg(long, default_value = "256KiB", value_parser = parse_size)]
    piece_size: u64,
    /// Master seed [default: $TESSERA_SIM_SEED, else 1].
    #[arg(long)]
    seed: Option<u64>,
    /// none; churn (leaves, joins, resets); hostile (one adversary of each kind per 20
    /// peers); all (churn, partitions, stalls, bandwidth changes, disk errors, adversaries).
    #[arg(long, value_enum, default_value_t = FaultLevel::None)]
    faults: FaultLevel,
    /// Peers that download but never upload.
    #[arg(long, default_value_t = 0)]
    free_riders: u32,
    #[arg(long, value_enum, default_value_t = Picker::Rarest)]
    picker: Picker,
    /// Real bytes and SHA-1, or stamped virtual blocks (for large swarms).
    #[arg(long, value_enum, default_value_t = Payload::Virtual)]
    payload: Payload,
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    endgame: OnOff,
    /// Extra adversaries, KIND=COUNT (corrupt, liar-garbage, liar-silent, garbage,
    /// oversized, flood); repeatable.
    #[arg(long = "adversary", value_parser = parse_adversary)]
    adversaries: Vec<(Adversary, u32)>,
    /// The (only) seeder leaves after uploading this many copies of the torrent.
    #[arg(long)]
    seeder_leaves_after: Option<f64>,
    /// Lowest and highest upload rate of leechers, per second (log-uniform between).
    #[arg(long, default_value = "256KiB", value_parser = parse_size)]
    up_min: u64,
    #[arg(long, default_value = "2MiB", value_parser = parse_size)]
    up_max: u64,
    /// Seeders' upload rate, per second.
    #[arg(long, default_value = "2MiB", value_parser = parse_size)]
    seeder_up: u64,
    /// Leechers and free riders leave as soon as they complete (no seeding).
    #[arg(long)]
    leave_on_complete: bool,
    /// Give up after this many simulated seconds [default: the liveness bound].
    #[arg(long)]
    time_limit: Option<f64>,
    /// Check per-peer request bounds once per simulated second instead of after every
    /// event (for large benchmarks).
    #[arg(long)]
    sampled_checks: bool,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

fn parse_adversary(s: &str) -> Result<(Adversary, u32), String> {
    let (kind, n) = s.split_once('=').unwrap_or((s, "1"));
    let a = Adversary::parse(kind).ok_or_else(|| format!("unknown adversary {kind:?}"))?;
    let n = n.parse().map_err(|_| format!("bad count {n:?}"))?;
    Ok((a, n))
}

impl Args {
    fn scenario(&self, seed: u64) -> Result<Scenario, String> {
        let piece_size = u32::try_from(self.piece_size).map_err(|_| "piece size too large")?;
        if piece_size < 16384 || piece_size % 16384 != 0 {
            return Err("--piece-size must be a multiple of 16 KiB".into());
        }
        if self.size == 0 {
            return Err("--size must be positive".into());
        }
        let mut sc = Scenario::new(seed);
        sc.peers = self.peers;
        sc.seeders = self.seeders;
        sc.free_riders = self.free_riders;
        sc.size = self.size;
        sc.piece_size = piece_size;
        sc.mode = match self.payload {
            Payload::Real => Mode::Real,
            Payload::Virtual => Mode::Virtual,
        };
        sc.strategy = match self.picker {
            Picker::Rarest => Strategy::RarestFirst,
            Picker::Sequential => Strategy::Sequential,
        };
        sc.endgame = self.endgame == OnOff::On;
        sc.set_fault_level(match self.faults {
            FaultLevel::None => "none",
            FaultLevel::Churn => "churn",
            FaultLevel::Hostile => "hostile",
            FaultLevel::All => "all",
        })?;
        sc.adversaries.extend(self.adversaries.iter().copied());
        sc.seeder_leaves_after = self.seeder_leaves_after;
        sc.leave_on_complete = self.leave_on_complete;
        sc.up_min = self.up_min as f64;
        sc.up_max = self.up_max.max(self.up_min) as f64;
        sc.seeder_up = self.seeder_up as f64;
        sc.time_limit = self.time_limit.map(Duration::from_secs_f64);
        sc.check_peers_every_event = !self.sampled_checks;
        Ok(sc)
    }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("dht") {
        return tessera_sim::dht::cli::main(std::env::args().skip(1));
    }
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::env::var("TESSERA_SIM_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1)
    });
    let sc = match args.scenario(seed) {
        Ok(sc) => sc,
        Err(e) => {
            eprintln!("tessera-sim: {e}");
            return ExitCode::from(2);
        }
    };
    println!("tessera-sim: seed {seed}");
    let report = tessera_sim::run(sc);
    print!("{}", report.text());
    let ok = report.ok();
    if !ok {
        let mut replay: Vec<String> = vec!["tessera-sim".into()];
        let mut skip = false;
        for a in std::env::args().skip(1) {
            if skip {
                skip = false;
                continue;
            }
            if a == "--seed" {
                skip = true;
                continue;
            }
            if a.starts_with("--seed=") {
                continue;
            }
            replay.push(a);
        }
        replay.push(format!("--seed {seed}"));
        println!("FAILED; replay with: {}", replay.join(" "));
    }
    if args.json {
        println!("{}", report.json());
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
