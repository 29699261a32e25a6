//! What a `dht` run measured, as text and as one JSON object.

use std::fmt::Write as _;

use super::DhtAdversary;

/// The results of a run.
#[derive(Debug, Clone, Default)]
pub struct DhtReport {
    /// Master seed.
    pub seed: u64,
    /// Honest nodes at the start.
    pub nodes: usize,
    /// Lookups asked for.
    pub lookups: usize,
    /// Churn fraction.
    pub churn: f64,
    /// Hostile nodes.
    pub adversaries: Vec<(DhtAdversary, u32)>,
    /// Lookups started (a lookup finds no node to start from only in a broken network).
    pub started: usize,
    /// Lookups that found an announcer of their hash.
    pub succeeded: usize,
    /// Lookups still running at the end.
    pub unfinished: usize,
    /// Lookups that found no bootstrapped honest node to run on.
    pub not_started: usize,
    /// Hops to the first answer with peers, per successful lookup.
    pub hops: Vec<f64>,
    /// Seconds from start to end, per finished lookup.
    pub lookup_seconds: Vec<f64>,
    /// Seconds to the first announcer found, per successful lookup.
    pub first_peer_seconds: Vec<f64>,
    /// Queries sent, per finished lookup.
    pub queries: Vec<f64>,
    /// Lookups for the Sybil group's target, and how many found an announcer.
    pub sybil_target_lookups: usize,
    /// See `sybil_target_lookups`.
    pub sybil_target_found: usize,
    /// Nodes that joined (initial and churn), left, and bootstrapped.
    pub joined: usize,
    /// See `joined`.
    pub left: usize,
    /// See `joined`.
    pub bootstrapped: usize,
    /// Node ids changed after learning the external address.
    pub id_changes: usize,
    /// Announce lookups finished.
    pub announces: usize,
    /// Accepted announces whose token was checked.
    pub announces_checked: usize,
    /// Honest nodes up at the end, and their mean routing table size.
    pub live_nodes: usize,
    /// See `live_nodes`.
    pub mean_table_size: f64,
    /// Datagrams sent, lost (or to nobody), delivered.
    pub datagrams: u64,
    /// See `datagrams`.
    pub lost: u64,
    /// See `datagrams`.
    pub delivered: u64,
    /// Events processed.
    pub events: u64,
    /// Simulated and wall-clock seconds.
    pub sim_seconds: f64,
    /// See `sim_seconds`.
    pub wall_seconds: f64,
    /// Invariant violations, and the first few described.
    pub invariant_violations: usize,
    /// See `invariant_violations`.
    pub violations: Vec<String>,
    /// Fingerprint of the run.
    pub trace_hash: u64,
}

/// The `q` quantile (nearest rank) of `v`.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some(s[rank - 1])
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

impl DhtReport {
    /// Successful lookups over lookups started.
    pub fn success_rate(&self) -> f64 {
        if self.started == 0 {
            0.0
        } else {
            self.succeeded as f64 / self.started as f64
        }
    }

    /// No invariant broken.
    pub fn ok(&self) -> bool {
        self.invariant_violations == 0
    }

    fn adversaries_text(&self) -> String {
        if self.adversaries.is_empty() {
            return "none".into();
        }
        self.adversaries
            .iter()
            .map(|(k, n)| format!("{}={n}", k.name()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}"));
        let mut s = String::new();
        let _ = writeln!(
            s,
            "dht: {} nodes, {} lookups, churn {:.0} %, adversaries {}",
            self.nodes,
            self.lookups,
            self.churn * 100.0,
            self.adversaries_text()
        );
        let _ = writeln!(
            s,
            "lookups: {} started, {} found an announcer ({:.2} %), {} unfinished, {} not started",
            self.started,
            self.succeeded,
            self.success_rate() * 100.0,
            self.unfinished,
            self.not_started
        );
        let _ = writeln!(
            s,
            "hops to peers: median {}, p95 {}; lookup seconds: median {}, p95 {}; first peer: median {} s",
            f(quantile(&self.hops, 0.5)),
            f(quantile(&self.hops, 0.95)),
            f(quantile(&self.lookup_seconds, 0.5)),
            f(quantile(&self.lookup_seconds, 0.95)),
            f(quantile(&self.first_peer_seconds, 0.5)),
        );
        let _ = writeln!(
            s,
            "queries per lookup: mean {}, p95 {}",
            f(mean(&self.queries)),
            f(quantile(&self.queries, 0.95))
        );
        if self.sybil_target_lookups > 0 {
            let _ = writeln!(
                s,
                "sybil target: {} of {} lookups found an announcer",
                self.sybil_target_found, self.sybil_target_lookups
            );
        }
        let _ = writeln!(
            s,
            "nodes: {} joined, {} left, {} bootstrapped, {} up at the end with {:.1} nodes in their tables on average, {} id changes",
            self.joined,
            self.left,
            self.bootstrapped,
            self.live_nodes,
            self.mean_table_size,
            self.id_changes
        );
        let _ = writeln!(
            s,
            "datagrams: {} sent, {} lost, {} delivered; {} announce lookups, {} accepted announces checked",
            self.datagrams, self.lost, self.delivered, self.announces, self.announces_checked
        );
        let _ = writeln!(
            s,
            "{} events in {:.0} simulated s, {:.2} s wall; trace hash {:016x}",
            self.events, self.sim_seconds, self.wall_seconds, self.trace_hash
        );
        let _ = writeln!(s, "invariant violations: {}", self.invariant_violations);
        for v in &self.violations {
            let _ = writeln!(s, "  {v}");
        }
        s
    }

    /// One JSON object.
    pub fn json(&self) -> String {
        let mut s = String::from("{");
        let opt = |s: &mut String, k: &str, v: Option<f64>| match v {
            Some(v) => {
                let _ = write!(s, "\"{k}\":{v:.4},");
            }
            None => {
                let _ = write!(s, "\"{k}\":null,");
            }
        };
        let _ = write!(s, "\"seed\":{},", self.seed);
        let _ = write!(s, "\"nodes\":{},", self.nodes);
        let _ = write!(s, "\"lookups\":{},", self.lookups);
        let _ = write!(s, "\"churn\":{},", self.churn);
        let _ = write!(s, "\"adversaries\":\"{}\",", self.adversaries_text());
        let _ = write!(s, "\"lookups_started\":{},", self.started);
        let _ = write!(s, "\"lookups_succeeded\":{},", self.succeeded);
        let _ = write!(s, "\"lookup_success_rate\":{:.4},", self.success_rate());
        opt(&mut s, "median_hops", quantile(&self.hops, 0.5));
        opt(&mut s, "p95_hops", quantile(&self.hops, 0.95));
        opt(
            &mut s,
            "median_lookup_seconds",
            quantile(&self.lookup_seconds, 0.5),
        );
        opt(
            &mut s,
            "p95_lookup_seconds",
            quantile(&self.lookup_seconds, 0.95),
        );
        opt(
            &mut s,
            "median_first_peer_seconds",
            quantile(&self.first_peer_seconds, 0.5),
        );
        opt(&mut s, "queries_per_lookup", mean(&self.queries));
        if self.sybil_target_lookups > 0 {
            let _ = write!(
                s,
                "\"sybil_target_success_rate\":{:.4},",
                self.sybil_target_found as f64 / self.sybil_target_lookups as f64
            );
        }
        let _ = write!(s, "\"mean_table_size\":{:.2},", self.mean_table_size);
        let _ = write!(s, "\"datagrams\":{},", self.datagrams);
        let _ = write!(s, "\"events\":{},", self.events);
        let _ = write!(s, "\"sim_seconds\":{:.1},", self.sim_seconds);
        let _ = write!(s, "\"wall_seconds\":{:.3},", self.wall_seconds);
        let _ = write!(s, "\"trace_hash\":\"{:016x}\",", self.trace_hash);
        let _ = write!(s, "\"invariant_violations\":{}", self.invariant_violations);
        s.push('}');
        s
    }
}
