//! The command line: the swarm mode's flags, and what every mode shares (the master seed,
//! the replay line of a failed run, sizes with suffixes). `main.rs` picks the mode.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use tessera_core::Duration;
use tessera_core::picker::Strategy;

use crate::payload::Mode;
use crate::scenario::{Adversary, Scenario};
use crate::world::World;

/// Parses a size: a number with an optional suffix (`K`, `KiB`, `M`, `MiB`, `G`, `GiB`;
/// all binary, as `64MiB`, `256KiB`, `1M`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (like 64MiB or 262144)"))?;
    let mult: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size suffix {other:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// The master seed: the `--seed` flag, else `$TESSERA_SIM_SEED`, else 1 (the simulator
/// never reads OS randomness).
pub fn master_seed(flag: Option<u64>) -> u64 {
    flag.unwrap_or_else(|| {
        std::env::var("TESSERA_SIM_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1)
    })
}

/// The command line that replays this run: the same arguments with `--seed` set to
/// `seed`.
pub fn replay_line(seed: u64) -> String {
    let mut replay: Vec<String> = vec!["tessera-sim".into()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--seed" {
            args.next();
        } else if !a.starts_with("--seed=") {
            replay.push(a);
        }
    }
    replay.push(format!("--seed {seed}"));
    replay.join(" ")
}

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
    /// Strictly the lowest-index piece (no look-ahead window).
    Sequential,
    /// What `--sequential` uses: in order within a window, rarest beyond it.
    Streaming,
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

fn parse_adversary(s: &str) -> Result<(Adversary, u32), String> {
    let (kind, n) = s.split_once('=').unwrap_or((s, "1"));
    let a = Adversary::parse(kind).ok_or_else(|| format!("unknown adversary {kind:?}"))?;
    let n = n.parse().map_err(|_| format!("bad count {n:?}"))?;
    Ok((a, n))
}

/// The swarm mode: a BitTorrent swarm of real sessions on a virtual network, run to
/// completion.
#[derive(Debug, Clone, Args)]
pub struct SwarmArgs {
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
    /// Do not decode and check every node's wire traffic (for large benchmarks).
    #[arg(long)]
    no_wire_check: bool,
    /// Leechers start from a magnet link and fetch the metadata from peers first.
    #[arg(long)]
    magnet: bool,
    /// Every session runs the DHT, bootstrapped from the seeders, and the torrent has no
    /// tracker: peers are found through the DHT alone.
    #[arg(long)]
    dht: bool,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

impl SwarmArgs {
    /// The scenario these flags describe, with master seed `seed`.
    pub fn scenario(&self, seed: u64) -> Result<Scenario, String> {
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
            Picker::Streaming => Strategy::streaming(piece_size),
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
        sc.check_wire = !self.no_wire_check;
        sc.magnet = self.magnet;
        sc.dht = self.dht;
        Ok(sc)
    }

    /// Runs the swarm and prints its report. Success only when every honest peer completed
    /// and no invariant broke; 2 for flags that describe no scenario.
    pub fn run(&self) -> ExitCode {
        let seed = master_seed(self.seed);
        let sc = match self.scenario(seed) {
            Ok(sc) => sc,
            Err(e) => {
                eprintln!("tessera-sim: {e}");
                return ExitCode::from(2);
            }
        };
        println!("tessera-sim: seed {seed}");
        let report = World::new(sc).run();
        print!("{}", report.text());
        let ok = report.ok();
        if !ok {
            println!("FAILED; replay with: {}", replay_line(seed));
        }
        if self.json {
            println!("{}", report.json());
        }
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(super::parse_size("256KiB"), Ok(256 << 10));
        assert_eq!(super::parse_size("1000"), Ok(1000));
        assert_eq!(super::parse_size("2G"), Ok(2 << 30));
        assert!(super::parse_size("12parsecs").is_err());
        assert!(super::parse_size("MiB").is_err());
    }
}
