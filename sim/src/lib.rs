//! # tessera-sim
//!
//! A deterministic swarm simulator: many real `tessera-core` sessions on a virtual network
//! with a virtual clock, every run reproducible from one seed.
//!
//! Modules, named after what they model: [`queue`] (the clock and event queue), [`net`]
//! (links, bandwidth, latency, TCP-like streams), [`tracker`] (the HTTP tracker),
//! [`payload`] (the torrent's content, real or virtual), [`disk`] (a node's in-memory disk),
//! [`adversary`] (scripted misbehaving peers), [`invariants`], [`scenario`] (what a run
//! simulates), [`world`] (the simulation itself) and [`report`]; [`dht`] is the
//! `tessera-sim dht` run, a network of DHT nodes.

pub mod adversary;
pub mod dht;
pub mod disk;
pub mod invariants;
pub mod net;
pub mod payload;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod tracker;
pub mod world;

pub use payload::Mode;
pub use report::Report;
pub use scenario::{Adversary, Faults, Scenario};
pub use world::World;

/// Runs a scenario to its end.
pub fn run(scenario: Scenario) -> Report {
    World::new(scenario).run()
}

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
