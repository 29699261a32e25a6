//! The `dht` subcommand's command line.

use std::process::ExitCode;

use clap::Args;
use tessera_core::Duration;

use super::{DhtAdversary, DhtScenario};

/// Simulates a DHT of real core nodes and measures get_peers lookups. The same seed gives the
/// same run (and the same trace hash).
#[derive(Debug, Clone, Args)]
pub struct DhtArgs {
    /// Honest nodes (eight of them are the routers everyone bootstraps from).
    #[arg(long, default_value_t = 1000)]
    pub nodes: u32,
    /// get_peers lookups, for info hashes that some nodes announced.
    #[arg(long, default_value_t = 100)]
    pub lookups: u32,
    /// Fraction of the nodes that leave, and as many new nodes that join, during the lookups.
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// Master seed [default: $TESSERA_SIM_SEED, else 1].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Hostile nodes, KIND=COUNT (garbage, silent, self-only, far-away, sybil); repeatable
    /// or comma-separated.
    #[arg(long = "adversaries", value_parser = parse_adversaries)]
    pub adversaries: Vec<Vec<(DhtAdversary, u32)>>,
    /// Probability that a datagram is lost.
    #[arg(long, default_value_t = 0.01)]
    pub loss: f64,
    /// Seconds over which the initial nodes join.
    #[arg(long, default_value_t = 600.0)]
    pub join_seconds: f64,
    /// Seconds over which lookups (and churn) are spread.
    #[arg(long, default_value_t = 600.0)]
    pub lookup_seconds: f64,
    /// Honest nodes take nodes whose ids do not follow BEP 42 (to see a Sybil attack work).
    #[arg(long)]
    pub no_enforce_node_id: bool,
    /// Check invariants once at the end of each node's handling only when this is not set
    /// (for large benchmarks: skips the per-event checks).
    #[arg(long)]
    pub skip_checks: bool,
    /// Print one JSON object as the last line.
    #[arg(long)]
    pub json: bool,
}

fn parse_adversaries(s: &str) -> Result<Vec<(DhtAdversary, u32)>, String> {
    s.split(',')
        .map(|part| {
            let (kind, n) = part.split_once('=').unwrap_or((part, "1"));
            let k =
                DhtAdversary::parse(kind).ok_or_else(|| format!("unknown adversary {kind:?}"))?;
            let n = n.parse().map_err(|_| format!("bad count {n:?}"))?;
            Ok((k, n))
        })
        .collect()
}

impl DhtArgs {
    /// The scenario these arguments describe.
    pub fn scenario(&self, seed: u64) -> Result<DhtScenario, String> {
        if !(0.0..=1.0).contains(&self.churn) {
            return Err("--churn must be between 0 and 1".into());
        }
        if !(0.0..1.0).contains(&self.loss) {
            return Err("--loss must be at least 0 and below 1".into());
        }
        if self.nodes < 16 {
            return Err("--nodes must be at least 16".into());
        }
        let mut sc = DhtScenario::new(seed, self.nodes, self.lookups);
        sc.churn = self.churn;
        sc.adversaries = self.adversaries.iter().flatten().copied().collect();
        sc.loss = self.loss;
        sc.join_window = Duration::from_secs_f64(self.join_seconds.max(1.0));
        sc.lookup_window = Duration::from_secs_f64(self.lookup_seconds.max(1.0));
        sc.enforce_node_id = !self.no_enforce_node_id;
        sc.check_every_event = !self.skip_checks;
        Ok(sc)
    }
}

impl DhtArgs {
    /// Runs the mode: prints the seed, the report (and the JSON line with `--json`); exit
    /// status 0 unless an invariant broke.
    pub fn run(&self) -> ExitCode {
        let seed = crate::cli::master_seed(self.seed);
        let sc = match self.scenario(seed) {
            Ok(sc) => sc,
            Err(e) => {
                eprintln!("tessera-sim dht: {e}");
                return ExitCode::from(2);
            }
        };
        println!("tessera-sim dht: seed {seed}");
        let report = super::run(sc);
        print!("{}", report.text());
        if !report.ok() {
            println!("FAILED; replay with: {}", crate::cli::replay_line(seed));
        }
        if self.json {
            println!("{}", report.json());
        }
        if report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}
