//! What a run simulates: the swarm, its bandwidths, the faults and the adversaries. Every
//! random choice is drawn from the master seed, in a fixed order, by [`crate::world`].

use tessera_core::Duration;
use tessera_core::picker::Strategy;

use crate::payload::Mode;

/// Which faults are switched on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Upload rates change during the run (factor 1/4..4, every few seconds somewhere).
    pub bandwidth_changes: bool,
    /// Partitions that cut a fifth of the hosts off, then heal.
    pub partitions: u32,
    /// Connections reset at random.
    pub resets: u32,
    /// Leechers that leave (dropping every connection) and rejoin later with their data.
    pub churn_leaves: u32,
    /// New leechers that join during the fault window.
    pub churn_joins: u32,
    /// Hosts that stop reading and sending for a while.
    pub stalls: u32,
    /// Nodes whose disk fails reads and writes for a while (restarted after a failure,
    /// as a user would restart a client).
    pub disk_faulty: u32,
    /// Probability of each disk operation failing on a faulty disk.
    pub disk_error_rate: f64,
}

impl Faults {
    pub fn none() -> Self {
        Faults::default()
    }

    /// Peers coming and going.
    pub fn churn(peers: u32) -> Self {
        Faults {
            churn_leaves: (peers / 5).max(1),
            churn_joins: (peers / 10).max(1),
            resets: peers / 2,
            ..Faults::default()
        }
    }

    /// Everything the network and the disks can do.
    pub fn all(peers: u32) -> Self {
        Faults {
            bandwidth_changes: true,
            partitions: 2,
            stalls: (peers / 10).max(1),
            disk_faulty: (peers / 10).max(1),
            disk_error_rate: 0.05,
            ..Faults::churn(peers)
        }
    }

    pub fn any(&self) -> bool {
        *self != Faults::default()
    }
}

/// Misbehaving peers. Scripted ones speak the wire protocol themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Adversary {
    /// A real session whose uploads are corrupt blocks.
    Corrupt,
    /// Claims every piece; answers requests with garbage.
    LiarGarbage,
    /// Claims every piece; never answers requests.
    LiarSilent,
    /// Sends garbage bytes after the handshake.
    Garbage,
    /// Sends a length prefix far beyond any message.
    Oversized,
    /// Floods requests.
    Flood,
}

impl Adversary {
    pub const ALL: [Adversary; 6] = [
        Adversary::Corrupt,
        Adversary::LiarGarbage,
        Adversary::LiarSilent,
        Adversary::Garbage,
        Adversary::Oversized,
        Adversary::Flood,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Adversary::Corrupt => "corrupt",
            Adversary::LiarGarbage => "liar-garbage",
            Adversary::LiarSilent => "liar-silent",
            Adversary::Garbage => "garbage",
            Adversary::Oversized => "oversized",
            Adversary::Flood => "flood",
        }
    }

    pub fn parse(s: &str) -> Option<Adversary> {
        Adversary::ALL.into_iter().find(|a| a.name() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    /// Leechers at the start (honest, reciprocating).
    pub peers: u32,
    pub seeders: u32,
    pub free_riders: u32,
    pub size: u64,
    pub piece_size: u32,
    pub mode: Mode,
    pub strategy: Strategy,
    pub endgame: bool,
    pub faults: Faults,
    pub adversaries: Vec<(Adversary, u32)>,
    /// Upload rates are drawn log-uniformly from this range (bytes/s); download rates are
    /// `down_factor` times the upload rate.
    pub up_min: f64,
    pub up_max: f64,
    pub down_factor: f64,
    pub seeder_up: f64,
    /// One-way access latency per host, uniform in this range.
    pub latency_min: Duration,
    pub latency_max: Duration,
    /// Leechers join uniformly over this much time from the start.
    pub join_spread: Duration,
    /// Faults happen within this window from the start; then everything heals.
    pub fault_window: Duration,
    /// The only seeder leaves once it has uploaded this many copies of the torrent.
    pub seeder_leaves_after: Option<f64>,
    /// Leechers (and free riders) leave as soon as they complete instead of seeding.
    pub leave_on_complete: bool,
    /// Give up after this much simulated time (`None`: the liveness bound plus a margin).
    pub time_limit: Option<Duration>,
    /// Tracker `interval` and `min interval`, seconds.
    pub tracker_interval: u32,
    pub tracker_min_interval: u32,
    /// Check the per-peer request bounds after every event (else at every sample).
    pub check_peers_every_event: bool,
    /// Decode what every node sends and receives and check it against the protocol
    /// (`tessera_core::testing::WireCheck`) after every event.
    pub check_wire: bool,
    /// Leechers start from a magnet link (the info hash, and the torrent's trackers if it
    /// has any) and fetch the metadata from peers first (BEP 9). A leecher that rejoins
    /// starts from the metadata it kept, as the client does.
    pub magnet: bool,
    /// Every session runs the DHT (BEP 5), bootstrapped from the seeders' nodes, and the
    /// torrent has no tracker: the DHT is the only way to find peers.
    pub dht: bool,
}

impl Scenario {
    pub fn new(seed: u64) -> Self {
        Scenario {
            seed,
            peers: 20,
            seeders: 1,
            free_riders: 0,
            size: 4 << 20,
            piece_size: 256 << 10,
            mode: Mode::Virtual,
            strategy: Strategy::RarestFirst,
            endgame: true,
            faults: Faults::none(),
            adversaries: Vec::new(),
            up_min: 256.0 * 1024.0,
            up_max: 2048.0 * 1024.0,
            down_factor: 4.0,
            seeder_up: 2048.0 * 1024.0,
            latency_min: Duration::from_millis(5),
            latency_max: Duration::from_millis(40),
            join_spread: Duration::from_secs(5),
            fault_window: Duration::from_secs(60),
            seeder_leaves_after: None,
            leave_on_complete: false,
            time_limit: None,
            tracker_interval: 300,
            tracker_min_interval: 30,
            check_peers_every_event: true,
            check_wire: true,
            magnet: false,
            dht: false,
        }
    }

    /// One adversary of each kind per 20 leechers (`--faults hostile`).
    pub fn hostile(peers: u32) -> Vec<(Adversary, u32)> {
        let per = (peers / 20).max(1);
        Adversary::ALL.iter().map(|&a| (a, per)).collect()
    }

    /// The `--faults` levels of the command line: `none`, `churn`, `hostile`, `all`.
    pub fn set_fault_level(&mut self, level: &str) -> Result<(), String> {
        match level {
            "none" => {}
            "churn" => self.faults = Faults::churn(self.peers),
            "hostile" => self.adversaries = Scenario::hostile(self.peers),
            "all" => {
                self.faults = Faults::all(self.peers);
                self.adversaries = Scenario::hostile(self.peers);
            }
            other => return Err(format!("unknown fault level {other:?}")),
        }
        Ok(())
    }

    pub fn adversary_count(&self) -> u32 {
        self.adversaries.iter().map(|a| a.1).sum()
    }
}
