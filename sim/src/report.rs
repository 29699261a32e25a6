//! What a run measured: completion times, the trace hash, violations; printed as text or
//! as one JSON object.

use std::fmt::Write as _;

use crate::invariants::Violation;

/// The trace hash: one multiply per 64-bit word, `h = (rotl(h, 23) ^ x) * K` with K the
/// 64-bit golden ratio (fixed, unkeyed: the same run gives the same hash on every machine).
/// A fingerprint of the run, not a defence against anyone: the rotation carries every bit
/// of a word into the low bits of the next product. (Byte-wise FNV-1a, used before, took
/// eight dependent multiplies per word, about 3 % of the simulator's instructions.)
#[derive(Debug, Clone, Copy)]
pub struct TraceHash(pub u64);

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHash {
    pub fn mix(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(23) ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Completion times of one class of peers, seconds from joining.
#[derive(Debug, Clone, Default)]
pub struct ClassTimes {
    pub name: String,
    pub total: usize,
    pub times: Vec<f64>,
    /// Payload bytes the class uploaded.
    pub uploaded: u64,
}

impl ClassTimes {
    fn sorted(&self) -> Vec<f64> {
        let mut t = self.times.clone();
        t.sort_by(f64::total_cmp);
        t
    }

    /// The `q` quantile (nearest rank), if any completed.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let t = self.sorted();
        if t.is_empty() {
            return None;
        }
        let rank = ((q * t.len() as f64).ceil() as usize).clamp(1, t.len());
        Some(t[rank - 1])
    }

    pub fn max(&self) -> Option<f64> {
        self.sorted().last().copied()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seed: u64,
    pub peers: u32,
    pub mode: String,
    pub picker: String,
    pub endgame: bool,
    pub faults: String,
    /// Honest peers that had to complete, and how many did.
    pub honest: usize,
    /// Seconds from joining until each honest peer's verified pieces first covered the
    /// first tenth of the torrent without a gap (a player could start).
    pub playable: ClassTimes,
    pub completed: usize,
    pub sim_seconds: f64,
    pub wall_seconds: f64,
    pub events: u64,
    pub inputs: u64,
    /// Inputs by kind: -, timeout, connected, received, sent, closed, disk, datagram.
    pub input_kinds: [u64; 8],
    pub trace_hash: u64,
    pub invariant_violations: u64,
    pub liveness_violations: u64,
    pub violations: Vec<Violation>,
    pub classes: Vec<ClassTimes>,
    /// Seconds of simulated time by which every honest peer had to complete.
    pub liveness_bound: f64,
    pub faults_healed_at: f64,
    pub hash_failures: u64,
    pub disk_errors: u64,
    pub tracker_announces: u64,
    /// DHT datagrams sent between nodes (runs with the DHT).
    pub dht_datagrams: u64,
    /// Leechers that started from a magnet link, and the seconds from joining to the
    /// metadata of those that got it, sorted.
    pub magnet_links: usize,
    pub metadata_seconds: Vec<f64>,
    /// Rare-piece metrics (the early-leaving seeder experiment).
    pub seeder_left_at: Option<f64>,
    pub pieces_lost: u32,
    pub max_pieces_zero_copies: u32,
    pub one_copy_seconds: f64,
    pub stuck: bool,
    /// Closes of adversaries by honest peers: (adversary, reason, count).
    pub adversary_closes: Vec<(String, String, u32)>,
    /// Leechers' unchoke slots, sampled each second, by class of the peer holding them:
    /// (class, slot-seconds, of which the peer was interested).
    pub unchoke_slots: Vec<(String, u64, u64)>,
    /// Why honest peers closed connections: (reason, count).
    pub close_reasons: Vec<(String, u64)>,
    /// Adversary connections honest peers made (handshakes completed).
    pub adversary_connections: Vec<(String, u32)>,
    /// Connections honest peers closed as "both seeding": how many, how many of them the
    /// closer had dialled, between how many distinct pairs of peers, and the most between
    /// one pair; and how many dials peers made once they had completed.
    pub both_seeding: BothSeeding,
}

/// See [`Report::both_seeding`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BothSeeding {
    /// Dials by peers that had completed.
    pub seed_dials: u64,
    pub closes: u64,
    pub dialled: u64,
    pub pairs: u64,
    pub most_per_pair: u32,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.completed == self.honest
            && self.invariant_violations == 0
            && self.liveness_violations == 0
    }

    /// Completion times of all honest leechers (every class but seeders and adversaries).
    pub fn all_honest(&self) -> ClassTimes {
        let mut all = ClassTimes {
            name: "honest".into(),
            ..ClassTimes::default()
        };
        for c in &self.classes {
            if c.name == "leecher" || c.name == "free-rider" {
                all.total += c.total;
                all.times.extend_from_slice(&c.times);
            }
        }
        all
    }

    pub fn class(&self, name: &str) -> Option<&ClassTimes> {
        self.classes.iter().find(|c| c.name == name)
    }

    /// Closes of adversary `name` whose reason contains `needle`.
    pub fn closes_of(&self, name: &str, needle: &str) -> u32 {
        self.adversary_closes
            .iter()
            .filter(|(a, r, _)| a == name && r.contains(needle))
            .map(|c| c.2)
            .sum()
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "seed {}: {}/{} honest peers completed in {:.1} s simulated ({:.2} s wall, {} events, {:.0} events/s), trace {:016x}",
            self.seed,
            self.completed,
            self.honest,
            self.sim_seconds,
            self.wall_seconds,
            self.events,
            self.events as f64 / self.wall_seconds.max(1e-9),
            self.trace_hash
        );
        let k = self.input_kinds;
        let _ = writeln!(
            s,
            "  inputs: {} (timeout {}, connected {}, received {}, sent {}, closed {}, disk {})",
            self.inputs, k[1], k[2], k[3], k[4], k[5], k[6]
        );
        for c in &self.classes {
            if c.total == 0 {
                continue;
            }
            let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
            let _ = writeln!(
                s,
                "  {:<14} {:>5} of {:<5} completed; median {} s, p95 {} s, max {} s; uploaded {:.1} MiB",
                c.name,
                c.times.len(),
                c.total,
                f(c.quantile(0.5)),
                f(c.quantile(0.95)),
                f(c.max()),
                c.uploaded as f64 / 1048576.0
            );
        }
        if let Some(t) = self.seeder_left_at {
            let _ = writeln!(
                s,
                "  seeder left at {t:.1} s; afterwards some piece had one copy for {:.0} s, at most {} pieces had none; lost at the end: {}",
                self.one_copy_seconds, self.max_pieces_zero_copies, self.pieces_lost
            );
        }
        let reasons: Vec<String> = self
            .close_reasons
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        if self.magnet_links > 0 {
            let m = &self.metadata_seconds;
            let median = m.get(m.len() / 2).copied().unwrap_or(f64::NAN);
            let max = m.last().copied().unwrap_or(f64::NAN);
            let _ = writeln!(
                s,
                "  magnet links: {} of {} got the metadata; median {median:.1} s, max {max:.1} s after joining",
                m.len(),
                self.magnet_links
            );
        }
        if self.dht_datagrams > 0 {
            let _ = writeln!(s, "  DHT datagrams: {}", self.dht_datagrams);
        }
        let _ = writeln!(s, "  closes by honest peers: {}", reasons.join(", "));
        let b = self.both_seeding;
        if b.closes > 0 {
            let _ = writeln!(
                s,
                "  both seeding: {} closes ({} by the dialler) between {} pairs of peers, at most {} for one pair; {} dials by seeds",
                b.closes, b.dialled, b.pairs, b.most_per_pair, b.seed_dials
            );
        }
        if !self.unchoke_slots.is_empty() {
            let slots: Vec<String> = self
                .unchoke_slots
                .iter()
                .map(|(c, n, i)| format!("{c} {n} ({i} interested)"))
                .collect();
            let _ = writeln!(
                s,
                "  leechers' unchoke slot-seconds by holder: {}",
                slots.join(", ")
            );
        }
        for (a, r, n) in &self.adversary_closes {
            let _ = writeln!(s, "  {a} closed by honest peers {n}x: {r}");
        }
        let _ = writeln!(
            s,
            "  invariant violations: {}, liveness violations: {} (bound {:.0} s, faults healed at {:.0} s)",
            self.invariant_violations,
            self.liveness_violations,
            self.liveness_bound,
            self.faults_healed_at
        );
        for v in &self.violations {
            let _ = writeln!(
                s,
                "  VIOLATION at {:.3} s on {}: {}",
                v.at.since_epoch().as_secs_f64(),
                v.node,
                v.what
            );
        }
        s
    }

    pub fn json(&self) -> String {
        let mut s = String::from("{");
        let num = |s: &mut String, k: &str, v: f64| {
            let _ = write!(s, "\"{k}\":{},", if v.is_finite() { v } else { -1.0 });
        };
        let opt = |s: &mut String, k: &str, v: Option<f64>| match v {
            Some(v) => {
                let _ = write!(s, "\"{k}\":{v:.3},");
            }
            None => {
                let _ = write!(s, "\"{k}\":null,");
            }
        };
        let _ = write!(s, "\"seed\":{},", self.seed);
        let _ = write!(s, "\"peers\":{},", self.peers);
        let _ = write!(s, "\"honest\":{},", self.honest);
        let _ = write!(s, "\"completed\":{},", self.completed);
        let _ = write!(s, "\"ok\":{},", self.ok());
        let _ = write!(s, "\"mode\":\"{}\",", self.mode);
        let _ = write!(s, "\"picker\":\"{}\",", self.picker);
        let _ = write!(s, "\"endgame\":{},", self.endgame);
        let _ = write!(s, "\"faults\":\"{}\",", self.faults);
        num(&mut s, "sim_seconds", self.sim_seconds);
        num(&mut s, "wall_seconds", self.wall_seconds);
        let _ = write!(s, "\"events\":{},", self.events);
        let _ = write!(s, "\"inputs\":{},", self.inputs);
        num(
            &mut s,
            "events_per_second",
            (self.events as f64 / self.wall_seconds.max(1e-9)).round(),
        );
        let _ = write!(s, "\"trace_hash\":\"{:016x}\",", self.trace_hash);
        let _ = write!(s, "\"invariant_violations\":{},", self.invariant_violations);
        let _ = write!(s, "\"liveness_violations\":{},", self.liveness_violations);
        num(&mut s, "liveness_bound", self.liveness_bound);
        num(&mut s, "faults_healed_at", self.faults_healed_at);
        let all = self.all_honest();
        opt(&mut s, "median_completion", all.quantile(0.5));
        opt(&mut s, "median_playable_10pct", self.playable.quantile(0.5));
        opt(&mut s, "max_playable_10pct", self.playable.max());
        opt(&mut s, "p95_completion", all.quantile(0.95));
        opt(&mut s, "max_completion", all.max());
        s.push_str("\"classes\":{");
        for (i, c) in self.classes.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                "\"{}\":{{\"total\":{},\"completed\":{},\"uploaded\":{},",
                c.name,
                c.total,
                c.times.len(),
                c.uploaded
            );
            opt(&mut s, "median", c.quantile(0.5));
            opt(&mut s, "p95", c.quantile(0.95));
            opt(&mut s, "max", c.max());
            s.pop();
            s.push('}');
        }
        s.push_str("},");
        let _ = write!(s, "\"hash_failures\":{},", self.hash_failures);
        let _ = write!(s, "\"disk_errors\":{},", self.disk_errors);
        let _ = write!(s, "\"tracker_announces\":{},", self.tracker_announces);
        let _ = write!(s, "\"dht_datagrams\":{},", self.dht_datagrams);
        let _ = write!(s, "\"magnet_links\":{},", self.magnet_links);
        opt(
            &mut s,
            "metadata_median_seconds",
            self.metadata_seconds
                .get(self.metadata_seconds.len() / 2)
                .copied(),
        );
        opt(&mut s, "seeder_left_at", self.seeder_left_at);
        let _ = write!(s, "\"pieces_lost\":{},", self.pieces_lost);
        let _ = write!(
            s,
            "\"max_pieces_zero_copies\":{},",
            self.max_pieces_zero_copies
        );
        num(&mut s, "one_copy_seconds", self.one_copy_seconds);
        let _ = write!(s, "\"stuck\":{},", self.stuck);
        s.push_str("\"unchoke_slots\":{");
        for (i, (c, n, _)) in self.unchoke_slots.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "\"{c}\":{n}");
        }
        s.push_str("},");
        s.push_str("\"adversary_closes\":[");
        for (i, (a, r, n)) in self.adversary_closes.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                "{{\"adversary\":\"{a}\",\"reason\":\"{}\",\"count\":{n}}}",
                r.replace('\\', "\\\\").replace('"', "\\\"")
            );
        }
        s.push_str("]}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_nearest_rank() {
        let c = ClassTimes {
            name: "x".into(),
            total: 4,
            times: vec![4.0, 1.0, 3.0, 2.0],
            uploaded: 0,
        };
        assert_eq!(c.quantile(0.5), Some(2.0));
        assert_eq!(c.quantile(0.95), Some(4.0));
        assert_eq!(c.max(), Some(4.0));
        let mut h = TraceHash::default();
        h.mix(1);
        let a = h.0;
        h.mix(2);
        assert_ne!(a, h.0);
    }
}
