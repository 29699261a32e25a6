//! # tessera-sim
//!
//! A deterministic swarm simulator: many real `tessera-core` sessions on a virtual network
//! with a virtual clock, every run reproducible from one seed.
//!
//! Modules, named after what they model: [`queue`] (the clock and event queue), [`net`]
//! (links, bandwidth, latency, TCP-like streams), [`tracker`] (the HTTP tracker),
//! [`payload`] (the torrent's content, real or virtual), [`disk`] (a node's in-memory disk),
//! [`adversary`] (scripted misbehaving peers), [`invariants`], [`scenario`] (what a run
//! simulates), [`world`] (the simulation itself: population, transport, faults, nodes) and
//! [`report`]; [`sweep`] runs random scenarios over many seeds; [`cli`] is the command line's swarm mode and what all modes share; [`dht`] is
//! the `tessera-sim dht` mode, a network of DHT nodes.

pub mod adversary;
pub mod cli;
pub mod dht;
pub mod disk;
pub mod invariants;
pub mod net;
pub mod payload;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod sweep;
pub mod tracker;
pub mod world;

pub use cli::parse_size;
pub use payload::Mode;
pub use report::Report;
pub use scenario::{Adversary, Faults, Scenario};
pub use world::World;

/// Runs a scenario to its end.
pub fn run(scenario: Scenario) -> Report {
    World::new(scenario).run()
}
