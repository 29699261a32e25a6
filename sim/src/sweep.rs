//! The sweep mode: many seeds, each with a random scenario drawn from it (swarm size, torrent
//! and piece sizes, bandwidths, faults, adversaries, policies), run until the first seed
//! that fails; the failing seed's report and the command that replays it are printed (as
//! TigerBeetle's VOPR does). `--jobs J` spreads the seeds over J processes of this same
//! binary, each running chunks of consecutive seeds.

use std::io::{BufRead, BufReader};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;

use clap::Args;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng as _, SeedableRng};
use tessera_core::Duration;
use tessera_core::picker::Strategy;

use crate::payload::Mode;
use crate::scenario::{Adversary, Faults, Scenario};
use crate::world::World;

/// Seeds one child process runs before the parent hands out the next chunk.
const CHUNK: u64 = 25;
/// The line a child prints for a failing seed (the parent reads it back).
const FAILED: &str = "sweep: FAILED seed ";

/// `tessera-sim sweep`: random scenarios, one per seed.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// How many seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Processes running seeds at once.
    #[arg(long, default_value_t = 1)]
    jobs: u32,
    /// Print each seed's scenario and outcome.
    #[arg(long)]
    verbose: bool,
    /// Run every seed even after failures, and list the failing ones at the end.
    #[arg(long)]
    keep_going: bool,
}

/// A scenario drawn from `seed` alone: the same seed always gives the same scenario (and,
/// the simulator being deterministic, the same run).
pub fn scenario(seed: u64) -> Scenario {
    // The scenario's draws come from their own stream, apart from the run's.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5745_4550_5357_4545);
    let mut sc = Scenario::new(seed);
    let log_uniform = |rng: &mut ChaCha8Rng, lo: f64, hi: f64| {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (lo.ln() + u * (hi.ln() - lo.ln())).exp()
    };
    let below = |rng: &mut ChaCha8Rng, n: u64| rng.next_u64() % n.max(1);
    sc.peers = log_uniform(&mut rng, 2.0, 30.0).round() as u32;
    sc.seeders = 1 + below(&mut rng, 2) as u32;
    sc.free_riders = if below(&mut rng, 4) == 0 {
        1 + below(&mut rng, 3) as u32
    } else {
        0
    };
    sc.piece_size = (16 << 10) << below(&mut rng, 6);
    sc.size = log_uniform(&mut rng, 10_000.0, 8.0 * 1024.0 * 1024.0) as u64;
    sc.mode = if sc.size <= 1 << 20 && below(&mut rng, 2) == 0 {
        Mode::Real
    } else {
        Mode::Virtual
    };
    sc.strategy = if below(&mut rng, 4) == 0 {
        Strategy::Sequential
    } else {
        Strategy::RarestFirst
    };
    sc.endgame = below(&mut rng, 5) != 0;
    sc.up_min = log_uniform(&mut rng, 32.0 * 1024.0, 1024.0 * 1024.0);
    sc.up_max = sc.up_min * log_uniform(&mut rng, 1.0, 8.0);
    sc.seeder_up = log_uniform(&mut rng, 128.0 * 1024.0, 4.0 * 1024.0 * 1024.0);
    sc.latency_min = Duration::from_millis(1 + below(&mut rng, 20));
    sc.latency_max = sc.latency_min + Duration::from_millis(below(&mut rng, 80));
    sc.join_spread = Duration::from_secs(below(&mut rng, 10));
    sc.leave_on_complete = below(&mut rng, 4) == 0;
    sc.faults = match below(&mut rng, 4) {
        0 => Faults::none(),
        1 => Faults::churn(sc.peers),
        _ => Faults::all(sc.peers),
    };
    for kind in Adversary::ALL {
        if below(&mut rng, 3) == 0 {
            sc.adversaries.push((kind, 1 + below(&mut rng, 2) as u32));
        }
    }
    // Not drawn: `seeder_leaves_after`. The seeder counts a copy as uploaded once handed
    // to its links, so with small torrents it may leave before the last bytes arrive and
    // the run cannot complete: a scenario without a solution, not a failure.
    sc.tracker_interval = 30 + below(&mut rng, 600) as u32;
    sc.tracker_min_interval = below(&mut rng, 60) as u32;
    sc
}

/// One seed: whether it passed; a failure prints the report and the replay command.
fn run_seed(seed: u64, verbose: bool) -> bool {
    let sc = scenario(seed);
    if verbose {
        println!(
            "seed {seed}: {} peers, {} seeders, {} bytes in {} byte pieces, adversaries {:?}, faults {}",
            sc.peers,
            sc.seeders,
            sc.size,
            sc.piece_size,
            sc.adversaries,
            sc.faults.any()
        );
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| World::new(sc).run()));
    match outcome {
        Ok(report) if report.ok() => {
            if verbose {
                println!("{}", report.text());
            }
            true
        }
        Ok(report) => {
            print!("{}", report.text());
            println!("{FAILED}{seed}; replay with: tessera-sim sweep --from {seed} --seeds 1");
            false
        }
        Err(_) => {
            println!(
                "{FAILED}{seed} (panicked); replay with: tessera-sim sweep --from {seed} --seeds 1"
            );
            false
        }
    }
}

impl SweepArgs {
    /// Runs the sweep; success when every seed passed.
    pub fn run(&self) -> ExitCode {
        let end = self.from.saturating_add(self.seeds);
        let mut failed = if self.jobs <= 1 {
            let mut failed = Vec::new();
            for seed in self.from..end {
                if !run_seed(seed, self.verbose) {
                    failed.push(seed);
                    if !self.keep_going {
                        break;
                    }
                }
            }
            failed
        } else {
            match self.run_parallel(end) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("tessera-sim sweep: {e}");
                    return ExitCode::from(2);
                }
            }
        };
        failed.sort_unstable();
        if self.keep_going && !failed.is_empty() {
            let list: Vec<String> = failed.iter().map(u64::to_string).collect();
            println!(
                "sweep: {} of {} seeds from {} failed: {}",
                failed.len(),
                self.seeds,
                self.from,
                list.join(" ")
            );
        }
        match failed.first().copied() {
            None => {
                println!(
                    "sweep: {} seeds from {} passed ({} processes)",
                    self.seeds,
                    self.from,
                    self.jobs.max(1)
                );
                ExitCode::SUCCESS
            }
            Some(seed) => {
                println!(
                    "sweep: seed {seed} failed; replay with: tessera-sim sweep --from {seed} --seeds 1"
                );
                ExitCode::FAILURE
            }
        }
    }

    /// Hands out chunks of seeds to `jobs` child processes; the lowest failing seed of the
    /// chunks run (no new chunk starts after a failure; the running ones finish).
    fn run_parallel(&self, end: u64) -> Result<Vec<u64>, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let (tx, rx) = mpsc::channel::<(u64, bool, String)>();
        let mut next = self.from;
        let mut running = 0usize;
        let mut failed: Vec<u64> = Vec::new();
        loop {
            let go_on = failed.is_empty() || self.keep_going;
            while go_on && next < end && running < self.jobs as usize {
                let count = CHUNK.min(end - next);
                let mut command = Command::new(&exe);
                if self.keep_going {
                    command.arg("sweep").arg("--keep-going");
                } else {
                    command.arg("sweep");
                }
                let child = command
                    .args(["--jobs", "1", "--from"])
                    .arg(next.to_string())
                    .arg("--seeds")
                    .arg(count.to_string())
                    .stdout(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
                let start = next;
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let (ok, text) = collect(child);
                    let _ = tx.send((start, ok, text));
                });
                running += 1;
                next += count;
            }
            if running == 0 {
                break;
            }
            let (start, ok, text) = rx
                .recv()
                .map_err(|_| "a sweep process vanished".to_string())?;
            running -= 1;
            if !ok {
                let mut seeds: Vec<u64> = text
                    .lines()
                    .filter_map(|l| l.strip_prefix(FAILED))
                    .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                    .filter_map(|s| s.parse().ok())
                    .collect();
                if seeds.is_empty() {
                    seeds.push(start);
                }
                if !self.keep_going {
                    print!("{text}");
                }
                failed.extend(seeds);
            } else if self.verbose {
                println!("sweep: seeds from {start} passed");
            }
        }
        Ok(failed)
    }
}

/// Reads a child's output to its end and waits for it: (success, output).
fn collect(mut child: Child) -> (bool, String) {
    let mut text = String::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let ok = child.wait().is_ok_and(|s| s.success());
    (ok, text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_seed_always_draws_the_same_scenario() {
        let a = super::scenario(42);
        let b = super::scenario(42);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        let c = super::scenario(43);
        assert_ne!(format!("{a:?}"), format!("{c:?}"));
        for seed in 0..200 {
            let sc = super::scenario(seed);
            assert!(sc.peers >= 2 && sc.peers <= 30, "{seed}");
            assert!(sc.piece_size.is_multiple_of(16 << 10), "{seed}");
            assert!(sc.size > 0 && sc.up_max >= sc.up_min, "{seed}");
        }
    }
}
