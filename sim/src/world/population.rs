//! The population: every logical peer of a run (a [`Record`], kept across its lives on
//! different hosts), drawn from the plan stream when the run is built, and the liveness
//! bound that follows from their links.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::Rng as _;
use tessera_core::{Bitfield, Duration, Instant};

use super::draw::{between, uniform};
use super::event::Ev;
use crate::disk::Disk;
use crate::net::Iface;
use crate::queue::Queue;
use crate::scenario::{Adversary, Scenario};

/// Port every node listens on.
pub const PEER_PORT: u16 = 6881;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Seeder,
    Leecher,
    FreeRider,
    Adversary(Adversary),
}

impl Class {
    pub fn honest(self) -> bool {
        !matches!(self, Class::Adversary(_))
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Seeder => "seeder",
            Class::Leecher => "leecher",
            Class::FreeRider => "free-rider",
            Class::Adversary(a) => a.name(),
        }
    }

    /// Played by a script rather than a real session.
    pub fn scripted(self) -> bool {
        matches!(self, Class::Adversary(a) if a != Adversary::Corrupt)
    }
}

/// One logical peer, across restarts.
#[derive(Debug)]
pub struct Record {
    pub class: Class,
    pub ip: Ipv4Addr,
    seed: [u8; 32],
    pub up: f64,
    pub down: f64,
    access: Duration,
    pub joined_at: Option<Instant>,
    pub completed_at: Option<Instant>,
    /// When its verified pieces first covered the first tenth of the torrent without a
    /// gap (a player could start).
    pub playable_at: Option<Instant>,
    /// The host it runs on, while it is up.
    pub host: Option<usize>,
    /// Kept while the peer is down.
    disk: Option<Disk>,
    have: Option<Bitfield>,
    pub lives: u8,
    /// Payload bytes uploaded in earlier lives.
    pub uploaded: u64,
    /// Left for good.
    pub gone: bool,
    pub must_complete: bool,
    /// When its disk fails operations (at the scenario's rate).
    pub disk_faulty: Option<(Instant, Instant)>,
}

/// What a peer starts a life with.
#[derive(Debug)]
pub struct Life {
    pub class: Class,
    pub ip: Ipv4Addr,
    /// The session's seed (the record's, varied by the life's number).
    pub seed: [u8; 32],
    /// The have-set and disk of its last life.
    pub resume: Option<Bitfield>,
    pub disk: Option<Disk>,
    pub first: bool,
}

/// Every peer of the run.
#[derive(Debug, Default)]
pub struct Population {
    pub records: Vec<Record>,
    by_ip: BTreeMap<Ipv4Addr, usize>,
    /// Joins scheduled and not yet happened.
    pub pending_joins: u32,
    /// Peers that must complete and have not.
    pub remaining: u32,
}

fn ip_of(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8)
}

impl Population {
    /// The peers present from the start: seeders at once, then leechers, free riders and
    /// adversaries joining over the scenario's join spread.
    pub fn plan(sc: &Scenario, rng: &mut ChaCha8Rng, q: &mut Queue<Ev>) -> Population {
        let mut pop = Population::default();
        let t0 = Instant::ZERO;
        for _ in 0..sc.seeders {
            pop.add(sc, Class::Seeder, rng, t0, q);
        }
        let classes = std::iter::repeat_n(Class::Leecher, sc.peers as usize)
            .chain(std::iter::repeat_n(
                Class::FreeRider,
                sc.free_riders as usize,
            ))
            .chain(
                sc.adversaries
                    .iter()
                    .flat_map(|&(a, n)| std::iter::repeat_n(Class::Adversary(a), n as usize)),
            );
        for class in classes {
            let at = t0 + between(rng, Duration::ZERO, sc.join_spread);
            pop.add(sc, class, rng, at, q);
        }
        pop
    }

    /// A new peer of `class` joining at `join`; its index.
    pub fn add(
        &mut self,
        sc: &Scenario,
        class: Class,
        rng: &mut ChaCha8Rng,
        join: Instant,
        q: &mut Queue<Ev>,
    ) -> usize {
        let i = self.records.len();
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let up = match class {
            Class::Seeder => sc.seeder_up,
            _ => (uniform(rng, sc.up_min.ln(), sc.up_max.ln())).exp(),
        };
        let access = between(rng, sc.latency_min, sc.latency_max);
        let must_complete = matches!(class, Class::Leecher | Class::FreeRider);
        let ip = ip_of(i + 1);
        self.records.push(Record {
            class,
            ip,
            seed,
            up,
            down: up * sc.down_factor,
            access,
            joined_at: None,
            completed_at: None,
            playable_at: None,
            host: None,
            disk: None,
            have: None,
            lives: 0,
            uploaded: 0,
            gone: false,
            must_complete,
            disk_faulty: None,
        });
        self.by_ip.insert(ip, i);
        if must_complete {
            self.remaining += 1;
        }
        self.pending_joins += 1;
        q.at(join, Ev::Join { rec: i as u32 });
        i
    }

    /// Indices of the leechers.
    pub fn leechers(&self) -> Vec<usize> {
        (0..self.records.len())
            .filter(|&i| self.records[i].class == Class::Leecher)
            .collect()
    }

    /// Liveness bound: after the faults heal, four times the ideal time plus a minute of
    /// slack. The ideal is the longest of three times no honest swarm can beat: the torrent
    /// at the slowest honest download rate; every leecher's copy at the swarm's total upload
    /// rate; and one copy at the seeders' upload rate (at the start only the seeders hold
    /// valid data, so every byte of it leaves a seeder at least once before the first peer
    /// completes).
    pub fn liveness_bound(&self, healed: Instant, size: u64) -> Instant {
        let size = size as f64;
        let honest: Vec<&Record> = self.records.iter().filter(|r| r.class.honest()).collect();
        let min_down = honest.iter().map(|r| r.down).fold(f64::INFINITY, f64::min);
        let total_up: f64 = honest
            .iter()
            .filter(|r| r.class != Class::FreeRider)
            .map(|r| r.up)
            .sum();
        let seeders_up: f64 = honest
            .iter()
            .filter(|r| r.class == Class::Seeder)
            .map(|r| r.up)
            .sum();
        let copies = honest.iter().filter(|r| r.must_complete).count() as f64;
        let ideal = (size / min_down)
            .max(copies * size / total_up.max(1.0))
            .max(size / seeders_up.max(1.0));
        healed + Duration::from_secs(60) + Duration::from_secs_f64(4.0 * ideal)
    }

    /// Peer `rec`'s one-way access latency.
    pub fn latency(&self, rec: usize) -> Duration {
        self.records[rec].access
    }

    /// The addresses of the seeders' DHT nodes (every node's UDP socket is on its peer
    /// port), the bootstrap nodes of a run with the DHT.
    pub fn seeder_nodes(&self) -> Vec<SocketAddr> {
        self.records
            .iter()
            .filter(|r| r.class == Class::Seeder)
            .map(|r| SocketAddr::new(IpAddr::V4(r.ip), PEER_PORT))
            .collect()
    }

    /// A peer's name in reports: class and index.
    pub fn name(&self, rec: usize) -> String {
        format!("{}#{}", self.records[rec].class.name(), rec)
    }

    /// The peer at `addr`, if one has ever joined there.
    pub fn at(&self, addr: IpAddr) -> Option<usize> {
        let IpAddr::V4(ip) = addr else {
            return None;
        };
        let &rec = self.by_ip.get(&ip)?;
        self.records[rec].joined_at.is_some().then_some(rec)
    }

    /// Peer `rec` starts a new life on host `h`, unless it is up already or gone.
    pub fn begin_life(&mut self, rec: usize, now: Instant, h: usize) -> Option<Life> {
        let r = &mut self.records[rec];
        if r.host.is_some() || r.gone {
            return None;
        }
        r.joined_at.get_or_insert(now);
        r.lives = r.lives.wrapping_add(1);
        let mut seed = r.seed;
        seed[31] = seed[31].wrapping_add(r.lives);
        r.host = Some(h);
        Some(Life {
            class: r.class,
            ip: r.ip,
            seed,
            resume: r.have.take(),
            disk: r.disk.take(),
            first: r.lives == 1,
        })
    }

    /// Peer `rec`'s network interface: its links at their base rates.
    pub fn iface(&self, rec: usize) -> Iface {
        let r = &self.records[rec];
        Iface::new(r.up, r.down, r.access)
    }

    /// Peer `rec`'s host went down; a session's have-set, upload and disk are kept for
    /// its next life.
    pub fn end_life(&mut self, rec: usize, kept: Option<(Option<Bitfield>, u64, Disk)>) {
        let r = &mut self.records[rec];
        r.host = None;
        if let Some((have, uploaded, disk)) = kept {
            r.have = have;
            r.uploaded += uploaded;
            r.disk = Some(disk);
        }
    }

    /// Peer `rec` completed at `now`; true the first time for a peer that must complete.
    pub fn complete(&mut self, rec: usize, now: Instant) -> bool {
        let r = &mut self.records[rec];
        if r.completed_at.is_some() {
            return false;
        }
        r.completed_at = Some(now);
        if r.must_complete && !r.gone {
            self.remaining -= 1;
        }
        r.must_complete
    }

    /// Where the honest peers that are up listen.
    pub fn honest_up(&self) -> Vec<SocketAddr> {
        self.records
            .iter()
            .filter(|r| r.class.honest() && r.host.is_some())
            .map(|r| SocketAddr::new(IpAddr::V4(r.ip), PEER_PORT))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::rand_core::SeedableRng;

    use super::*;

    fn bound_secs(sc: &Scenario) -> f64 {
        let mut q = Queue::default();
        let pop = Population::plan(sc, &mut ChaCha8Rng::seed_from_u64(1), &mut q);
        pop.liveness_bound(Instant::ZERO, sc.size)
            .since_epoch()
            .as_secs_f64()
    }

    #[test]
    fn the_bound_leaves_time_for_one_copy_at_the_seeders_rate() {
        // Ten fast leechers and one slow seeder: the leechers could spread the torrent in
        // about two seconds, but the seeder needs 84 s to send it once.
        let mut sc = Scenario::new(1);
        sc.peers = 10;
        sc.size = 8 << 20;
        sc.up_min = 4e6;
        sc.up_max = 4e6;
        sc.seeder_up = 100e3;
        let one_copy = sc.size as f64 / sc.seeder_up;
        let slow = bound_secs(&sc);
        assert!(slow >= 60.0 + 4.0 * one_copy, "{slow} s");
        // A fast seeder: the leechers' links set the bound again.
        sc.seeder_up = 100e6;
        let fast = bound_secs(&sc);
        assert!(fast < 70.0, "{fast} s");
    }
}
