//! The simulation: hosts (real sessions, scripted adversaries, the tracker) on the network
//! of `net`, driven by the event queue of `queue`, with the faults of the scenario, the
//! invariants checked as events touch nodes, and a report at the end.
//!
//! Determinism: one clock, events ordered by (time, sequence); every random draw comes from
//! ChaCha streams derived from the master seed in a fixed order; every map is a `BTreeMap`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng as _, SeedableRng};
use tessera_core::picker::Strategy;
use tessera_core::{
    Action, Bitfield, Config, ConnId, DiskError, DiskErrorKind, DiskResult, Duration, Event, Input,
    Instant, OpId, Output, Session, Target, TorrentId, TorrentOptions,
};

use crate::adversary::{Script, ScriptOut};
use crate::disk::Disk;
use crate::invariants::{self, Violations};
use crate::net::{ConnTable, EndState, Iface, Link, NetConfig, transfer_time};
use crate::payload::{Mode, Payload, Variant};
use crate::queue::Queue;
use crate::report::{ClassTimes, Report, TraceHash};
use crate::scenario::{Adversary, Scenario};
use crate::tracker::{Reply, Tracker};

/// Port every node listens on.
pub const PEER_PORT: u16 = 6881;
const TRACKER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
const TRACKER_PORT: u16 = 6969;
/// Time a disk operation takes.
const DISK_LATENCY: Duration = Duration::from_micros(200);
/// A node whose disk failed is restarted (with its resume data) after this long.
const RESTART_DELAY: Duration = Duration::from_secs(5);
/// How often the copy counts are sampled.
const SAMPLE: Duration = Duration::from_secs(1);
/// Control-only bytes sent are reported (`Input::Sent`) once this many add up, or with the
/// next segment that carries blocks.
const REPORT_CONTROL: usize = 16 * 1024;

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

    fn scripted(self) -> bool {
        matches!(self, Class::Adversary(a) if a != Adversary::Corrupt)
    }
}

/// One logical peer, across restarts.
#[derive(Debug)]
struct Record {
    class: Class,
    ip: Ipv4Addr,
    seed: [u8; 32],
    up: f64,
    down: f64,
    access: Duration,
    joined_at: Option<Instant>,
    completed_at: Option<Instant>,
    host: Option<usize>,
    /// Kept while the peer is down.
    disk: Option<Disk>,
    have: Option<Bitfield>,
    lives: u8,
    /// Payload bytes uploaded in earlier lives.
    uploaded: u64,
    /// Left for good.
    gone: bool,
    must_complete: bool,
    disk_faulty: Option<(Instant, Instant)>,
}

#[derive(Debug)]
struct Node {
    session: Session,
    torrent: TorrentId,
    disk: Disk,
    rec: usize,
    deadline: Instant,
    timer_gen: u64,
    timer_at: Option<Instant>,
    prev_have: Vec<u64>,
    prev_requests: BTreeMap<ConnId, usize>,
    serve: Variant,
    /// Pieces counted in the swarm's copy counts.
    counted: Bitfield,
}

#[derive(Debug)]
enum Kind {
    Tracker(Box<Tracker>),
    Node(Box<Node>),
    Script(Box<Script>),
    Dead,
}

#[derive(Debug)]
struct Host {
    ip: Ipv4Addr,
    port: u16,
    iface: Iface,
    conns: ConnTable,
    kind: Kind,
    rec: Option<usize>,
    next_local: u64,
    next_port: u16,
    kick_pending: bool,
    sent_bytes: u64,
}

impl Host {
    fn alive(&self) -> bool {
        !matches!(self.kind, Kind::Dead)
    }
}

/// Why a dial failed (kept small: every event is copied around the queue's heap).
#[derive(Debug, Clone, Copy)]
enum DialError {
    TimedOut,
    CannotResolve,
}

impl DialError {
    fn text(self) -> &'static str {
        match self {
            DialError::TimedOut => "connection timed out",
            DialError::CannotResolve => "cannot resolve host names",
        }
    }
}

/// No rejoin after a `Leave`.
const NO_REJOIN: u64 = u64::MAX;

/// `Leave`'s rejoin delay as nanoseconds, [`NO_REJOIN`] for none.
fn rejoin_nanos(after: Option<Duration>) -> u64 {
    after.map_or(NO_REJOIN, |d| {
        u64::try_from(d.as_nanos()).unwrap_or(NO_REJOIN - 1)
    })
}

/// An event. Host, record and link indices are `u32` and directions `u8` so that an event
/// is 16 bytes: the queue's heap moves events around on every push and pop.
#[derive(Debug)]
enum Ev {
    Join {
        rec: u32,
    },
    Leave {
        rec: u32,
        /// Nanoseconds until the peer rejoins; [`NO_REJOIN`]: never.
        rejoin: u64,
    },
    Timer {
        host: u32,
        epoch: u64,
    },
    UplinkDone {
        host: u32,
    },
    UplinkKick {
        host: u32,
    },
    Deliver {
        link: u32,
        dir: u8,
    },
    Fin {
        link: u32,
        dir: u8,
    },
    Reset {
        link: u32,
        side: u8,
    },
    ConnectArrive {
        link: u32,
    },
    ConnectReply {
        link: u32,
        ok: bool,
    },
    ConnectFail {
        link: u32,
        error: DialError,
    },
    DiskDone {
        host: u32,
        done: Box<(OpId, DiskResult)>,
    },
    ScriptTick {
        host: u32,
    },
    Partition {
        until: Instant,
    },
    Heal,
    RandomReset,
    Stall {
        rec: u32,
        until: Instant,
    },
    Bandwidth,
    Sample,
}

const _: () = assert!(std::mem::size_of::<Ev>() <= 16);

/// The whole simulated world.
#[derive(Debug)]
pub struct World {
    sc: Scenario,
    q: Queue<Ev>,
    /// Network jitter, tracker samples, fault targets at run time.
    rng: ChaCha8Rng,
    payload: Arc<Payload>,
    net: NetConfig,
    hosts: Vec<Host>,
    links: Vec<Link>,
    by_ip: BTreeMap<Ipv4Addr, usize>,
    records: Vec<Record>,
    trace: TraceHash,
    events: u64,
    inputs: u64,
    input_kinds: [u64; 8],
    inv: Violations,
    copies: Vec<u32>,
    at_zero: u32,
    at_one: u32,
    partition_until: Instant,
    heal_at: Instant,
    bound: Instant,
    pending_joins: u32,
    remaining: u32,
    hash_failures: u64,
    disk_errors: u64,
    seeder_left_at: Option<Instant>,
    max_zero: u32,
    one_copy_secs: f64,
    adversary_closes: BTreeMap<(Adversary, String), u32>,
    adversary_conns: BTreeMap<Adversary, u32>,
    /// Why honest nodes closed connections (to anyone), by reason.
    close_reasons: BTreeMap<String, u64>,
    /// Sampled each second when free riders exist: leechers' unchoke slots held by peers of
    /// each class, and how many of those peers were interested.
    slots_by_class: BTreeMap<Class, (u64, u64)>,
    /// The buffers of the segment being delivered (kept to reuse the allocation).
    buffers: Vec<Bytes>,
}

/// Close reasons that blame the peer: an honest peer must never get one.
const MISBEHAVIOUR: &[&str] = &[
    "banned",
    "protocol error",
    "too many invalid requests",
    "requests queued",
    "nobody asked for",
    "bitfield after",
    "have-all after",
    "have for piece",
    "unknown message",
    "not a block we ask for",
];

/// A close reason without its numbers (so that reasons group).
fn short_reason(reason: &str) -> String {
    reason
        .split(|c: char| c.is_ascii_digit() || c == '(' || c == ':')
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

fn ip_of(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8)
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
}

fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
}

fn between(rng: &mut ChaCha8Rng, lo: Duration, hi: Duration) -> Duration {
    Duration::from_secs_f64(uniform(rng, lo.as_secs_f64(), hi.as_secs_f64()))
}

fn stream(master: &mut ChaCha8Rng) -> ChaCha8Rng {
    let mut s = [0u8; 32];
    master.fill_bytes(&mut s);
    ChaCha8Rng::from_seed(s)
}

impl World {
    pub fn new(sc: Scenario) -> World {
        let mut master = ChaCha8Rng::seed_from_u64(sc.seed);
        let mut plan = stream(&mut master);
        let rng = stream(&mut master);
        let mut content = stream(&mut master);
        let corrupt = sc
            .adversaries
            .iter()
            .any(|a| a.0 == Adversary::Corrupt && a.1 > 0);
        let payload = Arc::new(Payload::new(
            sc.mode,
            sc.size,
            sc.piece_size,
            corrupt,
            &mut content,
        ));
        let tracker_host = Host {
            ip: TRACKER_IP,
            port: TRACKER_PORT,
            iface: Iface::new(100e6, 100e6, Duration::from_millis(1)),
            conns: ConnTable::new(),
            kind: Kind::Tracker(Box::new(Tracker::new(
                sc.tracker_interval,
                sc.tracker_min_interval,
            ))),
            rec: None,
            next_local: 1,
            next_port: 0,
            kick_pending: false,
            sent_bytes: 0,
        };
        let mut w = World {
            q: Queue::default(),
            rng,
            net: NetConfig::default(),
            hosts: vec![tracker_host],
            links: Vec::new(),
            by_ip: BTreeMap::from([(TRACKER_IP, 0)]),
            records: Vec::new(),
            trace: TraceHash::default(),
            events: 0,
            inputs: 0,
            input_kinds: [0; 8],
            inv: Violations::default(),
            copies: vec![0; payload.num_pieces() as usize],
            at_zero: payload.num_pieces(),
            at_one: 0,
            partition_until: Instant::ZERO,
            heal_at: Instant::ZERO,
            bound: Instant::ZERO,
            pending_joins: 0,
            remaining: 0,
            hash_failures: 0,
            disk_errors: 0,
            seeder_left_at: None,
            max_zero: 0,
            one_copy_secs: 0.0,
            adversary_closes: BTreeMap::new(),
            adversary_conns: BTreeMap::new(),
            close_reasons: BTreeMap::new(),
            slots_by_class: BTreeMap::new(),
            buffers: Vec::new(),
            payload,
            sc,
        };
        w.plan(&mut plan);
        w
    }

    fn add_record(&mut self, class: Class, rng: &mut ChaCha8Rng, join: Instant) -> usize {
        let i = self.records.len();
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let up = match class {
            Class::Seeder => self.sc.seeder_up,
            _ => (uniform(rng, self.sc.up_min.ln(), self.sc.up_max.ln())).exp(),
        };
        let access = between(rng, self.sc.latency_min, self.sc.latency_max);
        let must_complete = matches!(class, Class::Leecher | Class::FreeRider);
        self.records.push(Record {
            class,
            ip: ip_of(i + 1),
            seed,
            up,
            down: up * self.sc.down_factor,
            access,
            joined_at: None,
            completed_at: None,
            host: None,
            disk: None,
            have: None,
            lives: 0,
            uploaded: 0,
            gone: false,
            must_complete,
            disk_faulty: None,
        });
        if must_complete {
            self.remaining += 1;
        }
        self.pending_joins += 1;
        self.q.at(join, Ev::Join { rec: i as u32 });
        i
    }

    /// Draws the whole scenario: peers, their links, when they join, and the faults.
    fn plan(&mut self, rng: &mut ChaCha8Rng) {
        let t0 = Instant::ZERO;
        for _ in 0..self.sc.seeders {
            self.add_record(Class::Seeder, rng, t0);
        }
        let spread = self.sc.join_spread;
        for _ in 0..self.sc.peers {
            let at = t0 + between(rng, Duration::ZERO, spread);
            self.add_record(Class::Leecher, rng, at);
        }
        for _ in 0..self.sc.free_riders {
            let at = t0 + between(rng, Duration::ZERO, spread);
            self.add_record(Class::FreeRider, rng, at);
        }
        for (a, n) in self.sc.adversaries.clone() {
            for _ in 0..n {
                let at = t0 + between(rng, Duration::ZERO, spread);
                self.add_record(Class::Adversary(a), rng, at);
            }
        }
        let f = self.sc.faults.clone();
        let window = self.sc.fault_window;
        let mut heal = t0;
        let leechers: Vec<usize> = (0..self.records.len())
            .filter(|&i| self.records[i].class == Class::Leecher)
            .collect();
        let pick = |rng: &mut ChaCha8Rng, from: &[usize]| -> Option<usize> {
            (!from.is_empty()).then(|| from[(rng.next_u64() % from.len() as u64) as usize])
        };
        for _ in 0..f.churn_leaves {
            let Some(rec) = pick(rng, &leechers) else {
                break;
            };
            let at = t0 + between(rng, Duration::from_secs(5), window);
            let down = between(rng, Duration::from_secs(5), Duration::from_secs(40));
            heal = heal.max(at + down);
            self.q.at(
                at,
                Ev::Leave {
                    rec: rec as u32,
                    rejoin: rejoin_nanos(Some(down)),
                },
            );
        }
        for _ in 0..f.churn_joins {
            let at = t0 + between(rng, Duration::from_secs(5), window);
            heal = heal.max(at);
            self.add_record(Class::Leecher, rng, at);
        }
        for _ in 0..f.resets {
            let at = t0 + between(rng, Duration::from_secs(2), window);
            heal = heal.max(at);
            self.q.at(at, Ev::RandomReset);
        }
        for _ in 0..f.stalls {
            let Some(rec) = pick(rng, &leechers) else {
                break;
            };
            let at = t0 + between(rng, Duration::from_secs(2), window);
            let until = at + between(rng, Duration::from_secs(3), Duration::from_secs(20));
            heal = heal.max(until);
            self.q.at(
                at,
                Ev::Stall {
                    rec: rec as u32,
                    until,
                },
            );
        }
        for k in 0..f.partitions {
            // Partitions one after another, each healing before the next.
            let slot = window / f.partitions.max(1);
            let at = t0 + slot * k + between(rng, Duration::ZERO, slot / 2);
            let until = at + between(rng, Duration::from_secs(3), slot / 2);
            heal = heal.max(until);
            self.q.at(at, Ev::Partition { until });
        }
        for _ in 0..f.disk_faulty {
            let Some(rec) = pick(rng, &leechers) else {
                break;
            };
            let from = t0 + between(rng, Duration::ZERO, window / 2);
            let until = from + between(rng, Duration::from_secs(5), window / 2);
            heal = heal.max(until);
            self.records[rec].disk_faulty = Some((from, until));
        }
        if f.bandwidth_changes {
            let mut at = t0 + Duration::from_secs(2);
            while at < t0 + window {
                self.q.at(at, Ev::Bandwidth);
                at += between(rng, Duration::from_secs(1), Duration::from_secs(4));
            }
            heal = heal.max(t0 + window);
        }
        self.heal_at = heal;
        // Liveness bound: after the faults heal, four times the ideal time (the torrent at
        // the slowest honest download rate, or every leecher's copy at the swarm's total
        // upload rate, whichever is longer) plus a minute of slack.
        let size = self.payload.size() as f64;
        let honest: Vec<&Record> = self.records.iter().filter(|r| r.class.honest()).collect();
        let min_down = honest.iter().map(|r| r.down).fold(f64::INFINITY, f64::min);
        let total_up: f64 = honest
            .iter()
            .filter(|r| r.class != Class::FreeRider)
            .map(|r| r.up)
            .sum();
        let copies = honest.iter().filter(|r| r.must_complete).count() as f64;
        let ideal = (size / min_down).max(copies * size / total_up.max(1.0));
        self.bound = heal + Duration::from_secs(60) + Duration::from_secs_f64(4.0 * ideal);
        self.q.at(t0 + SAMPLE, Ev::Sample);
    }

    // ---- the loop ---------------------------------------------------------------------

    pub fn run(mut self) -> Report {
        let started = std::time::Instant::now();
        let limit = match self.sc.time_limit {
            Some(l) => Instant::ZERO + l,
            None => self.bound,
        };
        let mut stuck = false;
        let mut done = false;
        while let Some(ev) = self.q.pop(limit) {
            self.events += 1;
            self.handle(ev);
            if self.remaining == 0 && self.pending_joins == 0 {
                done = true;
                break;
            }
            if self.is_stuck() {
                stuck = true;
                break;
            }
        }
        let wall = started.elapsed().as_secs_f64();
        // Out of events before the limit, or at it: the limit counts as reached.
        let end = if done || stuck { self.q.now() } else { limit };
        self.finish(wall, stuck, end)
    }

    /// No seeder is left, nobody is joining, and some piece has no copy: nothing can finish.
    fn is_stuck(&self) -> bool {
        self.at_zero > 0
            && self.seeder_left_at.is_some()
            && self.pending_joins == 0
            && self.q.now() > self.heal_at
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Join { rec } => {
                self.pending_joins -= 1;
                self.join(rec as usize);
            }
            Ev::Leave { rec, rejoin } => {
                if let Some(h) = self.records[rec as usize].host {
                    self.kill(h);
                }
                if rejoin != NO_REJOIN {
                    self.pending_joins += 1;
                    let at = self.q.now() + Duration::from_nanos(rejoin);
                    self.q.at(at, Ev::Join { rec });
                }
            }
            Ev::Timer { host, epoch } => self.on_timer(host as usize, epoch),
            Ev::UplinkDone { host } => self.uplink_done(host as usize),
            Ev::UplinkKick { host } => {
                let host = host as usize;
                self.hosts[host].kick_pending = false;
                self.kick(host);
            }
            Ev::Deliver { link, dir } => self.deliver(link as usize, usize::from(dir)),
            Ev::Fin { link, dir } => self.fin(link as usize, usize::from(dir)),
            Ev::Reset { link, side } => {
                let (link, side) = (link as usize, usize::from(side));
                if matches!(
                    self.links[link].ends[side].state,
                    EndState::Open | EndState::Dialling
                ) {
                    self.close_end(link, side, Some("connection reset by peer"));
                }
            }
            Ev::ConnectArrive { link } => self.connect_arrive(link as usize),
            Ev::ConnectReply { link, ok } => self.connect_reply(link as usize, ok),
            Ev::ConnectFail { link, error } => {
                let link = link as usize;
                if self.links[link].ends[0].state == EndState::Dialling {
                    self.links[link].dead = true;
                    self.close_end(link, 0, Some(error.text()));
                }
            }
            Ev::DiskDone { host, done } => {
                let now = self.q.now();
                let (op, result) = *done;
                self.feed(host as usize, Input::Disk { now, op, result });
            }
            Ev::ScriptTick { host } => {
                let now = self.q.now();
                let host = host as usize;
                let outs = match &mut self.hosts[host].kind {
                    Kind::Script(s) => s.on_timer(now),
                    _ => return,
                };
                self.script_outs(host, outs);
                self.q.at(
                    now + Duration::from_secs(1),
                    Ev::ScriptTick { host: host as u32 },
                );
            }
            Ev::Partition { until } => self.partition(until),
            Ev::Heal => {
                for h in &mut self.hosts {
                    h.iface.group = 0;
                }
            }
            Ev::RandomReset => self.random_reset(),
            Ev::Stall { rec, until } => {
                if let Some(h) = self.records[rec as usize].host {
                    self.hosts[h].iface.stalled_until = until;
                    self.q.at(until, Ev::UplinkKick { host: h as u32 });
                    self.hosts[h].kick_pending = true;
                }
            }
            Ev::Bandwidth => self.change_bandwidth(),
            Ev::Sample => self.sample(),
        }
    }

    // ---- nodes ------------------------------------------------------------------------

    fn config_for(&self, class: Class) -> Config {
        let mut c = Config {
            listen_port: PEER_PORT,
            ..Config::default()
        };
        c.picker.strategy = self.sc.strategy;
        if !self.sc.endgame {
            c.picker.endgame_max_requesters = 1;
        }
        if class == Class::FreeRider {
            c.unchoke_slots = 0;
            c.optimistic_unchoke = false;
        }
        c
    }

    fn node_name(&self, rec: usize) -> String {
        format!("{}#{}", self.records[rec].class.name(), rec)
    }

    fn join(&mut self, rec: usize) {
        let now = self.q.now();
        if self.records[rec].host.is_some() || self.records[rec].gone {
            return;
        }
        let r = &mut self.records[rec];
        r.joined_at.get_or_insert(now);
        r.lives = r.lives.wrapping_add(1);
        let class = r.class;
        let mut seed = r.seed;
        seed[31] = seed[31].wrapping_add(r.lives);
        let iface = Iface::new(r.up, r.down, r.access);
        let ip = r.ip;
        let h = self.hosts.len();
        r.host = Some(h);
        let resume = r.have.take();
        let disk = r.disk.take();
        let first_life = r.lives == 1;
        self.hosts.push(Host {
            ip,
            port: PEER_PORT,
            iface,
            conns: ConnTable::new(),
            kind: Kind::Dead,
            rec: Some(rec),
            next_local: 1,
            next_port: 49152,
            kick_pending: false,
            sent_bytes: 0,
        });
        self.by_ip.insert(ip, h);
        if class.scripted() {
            let Class::Adversary(kind) = class else {
                return;
            };
            let script = Script::new(
                kind,
                seed[..20].try_into().expect("20 bytes"),
                self.payload.meta.info_hash,
                self.payload.num_pieces(),
                self.sc.piece_size,
                ChaCha8Rng::from_seed(seed),
            );
            self.hosts[h].kind = Kind::Script(Box::new(script));
            if first_life && let Kind::Tracker(t) = &mut self.hosts[0].kind {
                t.register(
                    self.payload.meta.info_hash.0,
                    SocketAddr::new(IpAddr::V4(ip), PEER_PORT),
                );
            }
            // Dial a few of the peers already there.
            let targets: Vec<SocketAddr> = self
                .records
                .iter()
                .filter(|r| r.class.honest() && r.host.is_some())
                .map(|r| SocketAddr::new(IpAddr::V4(r.ip), PEER_PORT))
                .collect();
            for _ in 0..targets.len().min(8) {
                let t = targets[(self.rng.next_u64() % targets.len() as u64) as usize];
                let local = self.hosts[h].next_local;
                self.hosts[h].next_local += 1;
                self.dial(h, local, t);
            }
            self.q.at(
                now + Duration::from_secs(1),
                Ev::ScriptTick { host: h as u32 },
            );
            return;
        }
        let seeder = class == Class::Seeder;
        let disk = disk.unwrap_or_else(|| {
            if seeder {
                Disk::full(&self.payload)
            } else {
                Disk::empty(&self.payload)
            }
        });
        let n = self.payload.num_pieces() as usize;
        let options = TorrentOptions {
            have: if seeder {
                None
            } else {
                Some(resume.unwrap_or_else(|| Bitfield::new(n)))
            },
            seed: true,
            files: None,
        };
        let mut session = Session::new(self.config_for(class), now, seed);
        let torrent = session
            .add_torrent(now, self.payload.meta.clone(), options)
            .expect("a new session holds no torrent");
        let serve = if class == Class::Adversary(Adversary::Corrupt) {
            Variant::Corrupt
        } else {
            Variant::Valid
        };
        self.hosts[h].kind = Kind::Node(Box::new(Node {
            session,
            torrent,
            disk,
            rec,
            deadline: now,
            timer_gen: 0,
            timer_at: None,
            prev_have: Vec::new(),
            prev_requests: BTreeMap::new(),
            serve,
            counted: Bitfield::new(n),
        }));
        self.count_have(h);
        self.drain(h);
        self.check(h, true);
    }

    /// Brings the copy counts up to date with the node's have-set (honest nodes only).
    fn count_have(&mut self, h: usize) {
        let Kind::Node(node) = &mut self.hosts[h].kind else {
            return;
        };
        if !self.records[node.rec].class.honest() {
            return;
        }
        let Some(have) = node.session.have(node.torrent) else {
            return;
        };
        let new: Vec<usize> = have.ones().filter(|&p| !node.counted.get(p)).collect();
        for p in new {
            node.counted.set(p);
            Self::bump(
                &mut self.copies,
                &mut self.at_zero,
                &mut self.at_one,
                p,
                true,
            );
        }
    }

    fn bump(copies: &mut [u32], zero: &mut u32, one: &mut u32, p: usize, up: bool) {
        let c = &mut copies[p];
        let before = *c;
        *c = if up {
            before + 1
        } else {
            before.saturating_sub(1)
        };
        let after = *c;
        for (v, d) in [(before, -1i64), (after, 1)] {
            match v {
                0 => *zero = (i64::from(*zero) + d) as u32,
                1 => *one = (i64::from(*one) + d) as u32,
                _ => {}
            }
        }
    }

    /// The host dies: its connections reset on the other side, its data kept on disk.
    fn kill(&mut self, h: usize) {
        let now = self.q.now();
        let conns: Vec<(usize, usize)> = self.hosts[h].conns.values().copied().collect();
        for (l, side) in conns {
            let link = &mut self.links[l];
            link.ends[side].state = EndState::Closed;
            let other = 1 - side;
            let lat = link.latency;
            match link.ends[other].state {
                EndState::Open | EndState::Dialling => {
                    self.q.at(
                        now + lat,
                        Ev::Reset {
                            link: l as u32,
                            side: other as u8,
                        },
                    );
                }
                EndState::Unborn => link.dead = true,
                EndState::Closed => {}
            }
            for d in link.dirs() {
                d.drop_queue();
                d.inflight.clear();
                d.inflight_bytes = 0;
            }
            link.retire_if_finished();
        }
        self.hosts[h].conns.clear();
        self.hosts[h].iface.rr.clear();
        let kind = std::mem::replace(&mut self.hosts[h].kind, Kind::Dead);
        let Some(rec) = self.hosts[h].rec else {
            return;
        };
        self.records[rec].host = None;
        if let Kind::Node(node) = kind {
            for p in node.counted.ones() {
                Self::bump(
                    &mut self.copies,
                    &mut self.at_zero,
                    &mut self.at_one,
                    p,
                    false,
                );
            }
            self.records[rec].have = node.session.have(node.torrent).cloned();
            self.records[rec].uploaded +=
                node.session.stats(node.torrent).map_or(0, |s| s.uploaded);
            self.records[rec].disk = Some(node.disk);
        }
    }

    fn on_timer(&mut self, h: usize, epoch: u64) {
        let now = self.q.now();
        let Kind::Node(node) = &mut self.hosts[h].kind else {
            return;
        };
        if node.timer_gen != epoch {
            return;
        }
        node.timer_at = None;
        if node.deadline <= now {
            self.feed(h, Input::Timeout { now });
        } else {
            let at = node.deadline;
            self.arm(h, at);
        }
    }

    fn arm(&mut self, h: usize, at: Instant) {
        let Kind::Node(node) = &mut self.hosts[h].kind else {
            return;
        };
        node.deadline = at;
        if at == Instant::FAR_FUTURE || node.timer_at.is_some_and(|t| t <= at) {
            return;
        }
        node.timer_gen += 1;
        node.timer_at = Some(at);
        let epoch = node.timer_gen;
        self.q.at(
            at,
            Ev::Timer {
                host: h as u32,
                epoch,
            },
        );
    }

    /// Hands one input to a node's session, then carries out what it asks for.
    fn feed(&mut self, h: usize, input: Input) {
        let (kind, len, conn) = match &input {
            Input::Timeout { .. } => (1, 0, 0),
            Input::Connected { conn, .. } => (2, 0, conn.0),
            Input::Received { conn, data, .. } => (3, data.len(), conn.0),
            Input::Sent { conn, bytes, .. } => (4, *bytes, conn.0),
            Input::Closed { conn, .. } => (5, 0, conn.0),
            Input::Disk { op, .. } => (6, 0, op.0),
            Input::Datagram { data, .. } => (7, data.len(), 0),
        };
        let Kind::Node(node) = &mut self.hosts[h].kind else {
            return;
        };
        self.trace.mix(kind);
        self.trace.mix(h as u64);
        self.trace.mix(input.now().as_nanos());
        self.trace.mix(len as u64);
        self.trace.mix(conn);
        self.inputs += 1;
        self.input_kinds[kind as usize] += 1;
        node.session.handle_input(input);
        self.drain(h);
        // `Sent` only moves the upload side (the request bounds are state: a breach still
        // shows at the node's next other input).
        self.check(h, kind != 4);
    }

    fn drain(&mut self, h: usize) {
        loop {
            let out = match &mut self.hosts[h].kind {
                Kind::Node(n) => n.session.poll_output(),
                _ => return,
            };
            match out {
                Output::Timeout(t) => {
                    self.arm(h, t);
                    return;
                }
                Output::Event(e) => self.on_event(h, e),
                Output::Action(a) => self.on_action(h, a),
            }
        }
    }

    fn violation(&mut self, h: usize, what: String) {
        let name = match self.hosts[h].rec {
            Some(r) => self.node_name(r),
            None => "tracker".into(),
        };
        let now = self.q.now();
        self.inv.report(now, name, what);
    }

    fn on_action(&mut self, h: usize, a: Action) {
        let now = self.q.now();
        let code = match &a {
            Action::Connect { .. } => 11,
            Action::Send { .. } => 12,
            Action::Close { .. } => 13,
            Action::Write { .. } => 14,
            Action::Verify { .. } => 15,
            Action::Read { .. } => 16,
            Action::SendDatagram { .. } => 17,
        };
        self.trace.mix(code);
        self.trace.mix(h as u64);
        match a {
            Action::Connect { conn, target } => match target {
                Target::Addr(addr) => self.dial(h, conn.0, addr),
                Target::Host { .. } => {
                    let l = self.links.len();
                    self.links
                        .push(Link::new(h, conn.0, usize::MAX, Duration::ZERO));
                    self.hosts[h].conns.insert(conn.0, (l, 0));
                    self.q.at(
                        now,
                        Ev::ConnectFail {
                            link: l as u32,
                            error: DialError::CannotResolve,
                        },
                    );
                }
            },
            Action::Send { conn, data } => match self.hosts[h].conns.get(&conn.0).copied() {
                None => self.violation(h, format!("send on closed connection {conn:?}")),
                Some((l, side)) => {
                    if self.links[l].ends[side].state != EndState::Open {
                        self.violation(h, format!("send on {conn:?} before it was connected"));
                        return;
                    }
                    self.app_send(h, l, side, data);
                    let limit = match &self.hosts[h].kind {
                        Kind::Node(n) => n.session.config().max_send_buffer + (1 << 20),
                        _ => usize::MAX,
                    };
                    let queued = self.links[l].dir(side).queued;
                    if queued > limit {
                        self.violation(
                            h,
                            format!("{queued} bytes queued on {conn:?}: send buffer overrun"),
                        );
                    }
                }
            },
            Action::Close { conn } => {
                if !self.hosts[h].conns.contains_key(&conn.0) {
                    self.violation(h, format!("close of closed connection {conn:?}"));
                }
                self.app_close(h, conn.0);
            }
            Action::Write {
                op,
                piece,
                offset,
                data,
                expected,
                ..
            } => {
                let result = if self.disk_fails(h) {
                    self.disk_error("write failed")
                } else {
                    match &mut self.hosts[h].kind {
                        Kind::Node(n) => {
                            n.disk.write(&self.payload, piece, offset, &data, expected)
                        }
                        _ => return,
                    }
                };
                self.disk_done(h, op, result);
            }
            Action::Verify {
                op,
                piece,
                expected,
                ..
            } => {
                let result = match &self.hosts[h].kind {
                    Kind::Node(n) => n.disk.verify(&self.payload, piece, expected),
                    _ => return,
                };
                self.disk_done(h, op, result);
            }
            Action::Read {
                op,
                piece,
                offset,
                len,
                ..
            } => {
                let result = if self.disk_fails(h) {
                    self.disk_error("read failed")
                } else {
                    match &self.hosts[h].kind {
                        Kind::Node(n) => DiskResult::Data(n.disk.read(
                            &self.payload,
                            piece,
                            offset,
                            len,
                            n.serve,
                        )),
                        _ => return,
                    }
                };
                self.disk_done(h, op, result);
            }
            Action::SendDatagram { .. } => {}
        }
    }

    /// Answers a disk action of host `h` after the disk's latency.
    fn disk_done(&mut self, h: usize, op: OpId, result: DiskResult) {
        let at = self.q.now() + DISK_LATENCY;
        self.q.at(
            at,
            Ev::DiskDone {
                host: h as u32,
                done: Box::new((op, result)),
            },
        );
    }

    fn disk_fails(&mut self, h: usize) -> bool {
        let now = self.q.now();
        let Some(rec) = self.hosts[h].rec else {
            return false;
        };
        match self.records[rec].disk_faulty {
            Some((from, until)) if from <= now && now < until => {
                let p = self.sc.faults.disk_error_rate;
                chance(&mut self.rng, p)
            }
            _ => false,
        }
    }

    fn disk_error(&mut self, message: &str) -> DiskResult {
        self.disk_errors += 1;
        DiskResult::Error(DiskError {
            kind: DiskErrorKind::Other,
            message: format!("simulated: {message}"),
        })
    }

    fn on_event(&mut self, h: usize, e: Event) {
        let now = self.q.now();
        let Kind::Node(node) = &self.hosts[h].kind else {
            return;
        };
        let rec = node.rec;
        match e {
            Event::PieceVerified { piece, .. } => {
                if !node.disk.piece_valid(&self.payload, piece) {
                    self.violation(h, format!("piece {piece} verified but its data is wrong"));
                }
                self.count_have(h);
            }
            Event::Checked { .. } => {
                let bad = node.session.have(node.torrent).and_then(|b| {
                    b.ones()
                        .find(|&p| !node.disk.piece_valid(&self.payload, p as u32))
                });
                if let Some(p) = bad {
                    self.violation(h, format!("piece {p} found at the check but wrong"));
                }
                self.count_have(h);
            }
            Event::Complete { .. } => {
                let r = &mut self.records[rec];
                if r.completed_at.is_none() {
                    r.completed_at = Some(now);
                    if r.must_complete && !r.gone {
                        self.remaining -= 1;
                    }
                    if r.must_complete && self.sc.leave_on_complete {
                        self.q.at(
                            now,
                            Ev::Leave {
                                rec: rec as u32,
                                rejoin: NO_REJOIN,
                            },
                        );
                    }
                }
            }
            Event::HashFailed { .. } => self.hash_failures += 1,
            Event::PeerClosed { addr, reason, .. } => {
                let reason = reason.to_string();
                let IpAddr::V4(ip) = addr.ip() else {
                    return;
                };
                let Some(&other_host) = self.by_ip.get(&ip) else {
                    return;
                };
                let Some(other) = self.hosts[other_host].rec else {
                    return;
                };
                let class = self.records[other].class;
                if !self.records[rec].class.honest() {
                    return;
                }
                *self.close_reasons.entry(short_reason(&reason)).or_default() += 1;
                if class.honest() && MISBEHAVIOUR.iter().any(|m| reason.contains(m)) {
                    let who = self.node_name(other);
                    self.violation(
                        h,
                        format!("honest peer {who} closed as misbehaving: {reason}"),
                    );
                }
                if let Class::Adversary(a) = class {
                    *self
                        .adversary_closes
                        .entry((a, short_reason(&reason)))
                        .or_default() += 1;
                }
            }
            Event::PeerConnected { addr, .. } => {
                if let IpAddr::V4(ip) = addr.ip()
                    && let Some(&oh) = self.by_ip.get(&ip)
                    && let Some(other) = self.hosts[oh].rec
                    && let Class::Adversary(a) = self.records[other].class
                {
                    *self.adversary_conns.entry(a).or_default() += 1;
                }
            }
            Event::DiskError { .. } => {
                if self.records[rec].class.honest() {
                    self.q.at(
                        now,
                        Ev::Leave {
                            rec: rec as u32,
                            rejoin: rejoin_nanos(Some(RESTART_DELAY)),
                        },
                    );
                }
            }
            Event::Tracker { .. } | Event::Stopped => {}
        }
    }

    /// The invariants of one node, after an event touched it.
    fn check(&mut self, h: usize, peers: bool) {
        let every = self.sc.check_peers_every_event && peers;
        let Kind::Node(node) = &mut self.hosts[h].kind else {
            return;
        };
        let mut problems = Vec::new();
        if let Some(have) = node.session.have(node.torrent)
            && let Err(e) = invariants::have_grows(&mut node.prev_have, have)
        {
            problems.push(e);
        }
        if every {
            let peers = node.session.peers(node.torrent);
            invariants::request_bounds(
                &mut node.prev_requests,
                &peers,
                node.session.config(),
                &mut problems,
            );
        }
        for p in problems {
            self.violation(h, p);
        }
    }

    // ---- the network ------------------------------------------------------------------

    fn dial(&mut self, h: usize, local: u64, addr: SocketAddr) {
        let now = self.q.now();
        let target = match addr.ip() {
            IpAddr::V4(ip) => self.by_ip.get(&ip).copied(),
            IpAddr::V6(_) => None,
        }
        .filter(|&t| self.hosts[t].alive() && self.hosts[t].port == addr.port() && t != h);
        let lat = match target {
            Some(t) => self.hosts[h].iface.access + self.hosts[t].iface.access,
            None => Duration::ZERO,
        };
        let l = self.links.len();
        self.links
            .push(Link::new(h, local, target.unwrap_or(usize::MAX), lat));
        self.hosts[h].conns.insert(local, (l, 0));
        match target {
            Some(t) if self.hosts[t].iface.group == self.hosts[h].iface.group => {
                self.q.at(now + lat, Ev::ConnectArrive { link: l as u32 });
            }
            _ => self.q.at(
                now + self.net.connect_timeout,
                Ev::ConnectFail {
                    link: l as u32,
                    error: DialError::TimedOut,
                },
            ),
        }
    }

    fn connect_arrive(&mut self, l: usize) {
        let now = self.q.now();
        let link = &self.links[l];
        if link.dead || link.ends[0].state != EndState::Dialling {
            return;
        }
        let (from, to) = (link.ends[0].host, link.ends[1].host);
        let lat = link.latency;
        if !self.hosts[to].alive() || self.hosts[to].iface.group != self.hosts[from].iface.group {
            let left = self.net.connect_timeout.saturating_sub(lat);
            self.q.at(
                now + left,
                Ev::ConnectFail {
                    link: l as u32,
                    error: DialError::TimedOut,
                },
            );
            return;
        }
        let port = {
            let f = &mut self.hosts[from];
            let p = f.next_port;
            f.next_port = if p == u16::MAX { 49152 } else { p + 1 };
            p
        };
        let remote = SocketAddr::new(IpAddr::V4(self.hosts[from].ip), port);
        let local = match &mut self.hosts[to].kind {
            Kind::Node(n) => n.session.accept(now, remote).map(|c| c.0),
            Kind::Script(_) | Kind::Tracker(_) => {
                let k = self.hosts[to].next_local;
                self.hosts[to].next_local += 1;
                Some(k)
            }
            Kind::Dead => None,
        };
        self.trace.mix(21);
        self.trace.mix(to as u64);
        let Some(local) = local else {
            self.links[l].dead = true;
            self.q.at(
                now + lat,
                Ev::ConnectReply {
                    link: l as u32,
                    ok: false,
                },
            );
            return;
        };
        let link = &mut self.links[l];
        link.ends[1].local = local;
        link.ends[1].state = EndState::Open;
        self.hosts[to].conns.insert(local, (l, 1));
        self.q.at(
            now + lat,
            Ev::ConnectReply {
                link: l as u32,
                ok: true,
            },
        );
        match &mut self.hosts[to].kind {
            Kind::Node(_) => {
                self.drain(to);
                self.check(to, true);
            }
            Kind::Script(s) => {
                let outs = s.on_open(now, local);
                self.script_outs(to, outs);
            }
            _ => {}
        }
    }

    fn connect_reply(&mut self, l: usize, ok: bool) {
        let now = self.q.now();
        if self.links[l].ends[0].state != EndState::Dialling {
            return;
        }
        if !ok {
            self.close_end(l, 0, Some("connection refused"));
            return;
        }
        self.links[l].ends[0].state = EndState::Open;
        let End0 { host, local } = End0::of(&self.links[l]);
        match &mut self.hosts[host].kind {
            Kind::Node(_) => self.feed(
                host,
                Input::Connected {
                    now,
                    conn: ConnId(local),
                },
            ),
            Kind::Script(s) => {
                let outs = s.on_open(now, local);
                self.script_outs(host, outs);
            }
            _ => {}
        }
    }

    /// An application queues bytes on its side of a link.
    fn app_send(&mut self, h: usize, l: usize, side: usize, data: Bytes) {
        let window = self.net.window;
        let dir = self.links[l].dir(side);
        dir.push(data, &self.payload);
        if !dir.in_rr && dir.inflight_bytes < window {
            dir.in_rr = true;
            self.hosts[h].iface.rr.push_back((l, side));
        }
        self.kick(h);
    }

    /// An application closes its side of a link.
    fn app_close(&mut self, h: usize, local: u64) {
        let now = self.q.now();
        let Some((l, side)) = self.hosts[h].conns.remove(&local) else {
            return;
        };
        let link = &mut self.links[l];
        link.ends[side].state = EndState::Closed;
        link.dir(side).drop_queue();
        let other = 1 - side;
        match link.ends[other].state {
            EndState::Open | EndState::Dialling => {
                let at = (now + link.latency).max(link.dir(side).last_arrival);
                self.q.at(
                    at,
                    Ev::Fin {
                        link: l as u32,
                        dir: side as u8,
                    },
                );
            }
            EndState::Unborn => link.dead = true,
            EndState::Closed => {}
        }
        link.retire_if_finished();
    }

    fn fin(&mut self, l: usize, dir: usize) {
        let r = 1 - dir;
        let link = &mut self.links[l];
        if link.dead || !matches!(link.ends[r].state, EndState::Open | EndState::Dialling) {
            return;
        }
        if link.dir(dir).inflight.is_empty() {
            self.close_end(l, r, None);
        } else {
            link.dir(dir).fin = true;
        }
    }

    /// End `side` of a link is closed under its application, which is told.
    fn close_end(&mut self, l: usize, side: usize, error: Option<&str>) {
        let now = self.q.now();
        let link = &mut self.links[l];
        link.ends[side].state = EndState::Closed;
        link.dir(side).drop_queue();
        if link.ends[1 - side].state == EndState::Closed {
            for d in link.dirs() {
                d.inflight.clear();
                d.inflight_bytes = 0;
            }
        }
        link.retire_if_finished();
        let (host, local) = (link.ends[side].host, link.ends[side].local);
        if host == usize::MAX || !self.hosts[host].alive() {
            return;
        }
        if self.hosts[host].conns.get(&local) != Some(&(l, side)) {
            return;
        }
        self.hosts[host].conns.remove(&local);
        match &mut self.hosts[host].kind {
            Kind::Node(_) => self.feed(
                host,
                Input::Closed {
                    now,
                    conn: ConnId(local),
                    error: error.map(str::to_string),
                },
            ),
            Kind::Script(s) => s.on_closed(local),
            Kind::Tracker(t) => t.closed(local),
            Kind::Dead => {}
        }
    }

    /// Starts the next segment on a host's uplink if it is free.
    fn kick(&mut self, h: usize) {
        let now = self.q.now();
        let host = &mut self.hosts[h];
        if !host.alive() || host.iface.busy.is_some() {
            return;
        }
        if self.q.position() < host.iface.busy_until {
            if !host.kick_pending {
                host.kick_pending = true;
                let (at, seq) = host.iface.busy_until;
                self.q
                    .at_reserved(at, seq, Ev::UplinkKick { host: h as u32 });
            }
            return;
        }
        if host.iface.stalled_until > now {
            if !host.kick_pending {
                host.kick_pending = true;
                let at = host.iface.stalled_until;
                self.q.at(at, Ev::UplinkKick { host: h as u32 });
            }
            return;
        }
        let window = self.net.window;
        while let Some((l, d)) = self.hosts[h].iface.rr.pop_front() {
            let link = &mut self.links[l];
            if link.dead || link.ends[d].state != EndState::Open {
                if !link.finished() {
                    link.dir(d).in_rr = false;
                }
                continue;
            }
            let dir = link.dir(d);
            if dir.queued == 0 || dir.inflight_bytes >= window {
                dir.in_rr = false;
                continue;
            }
            let seg = dir.take(self.net.quantum, &self.payload);
            let len = seg.len;
            let wire = seg.wire;
            let up = self.hosts[h].iface.up_rate;
            let t_end = now + transfer_time(len, up);
            let jitter = if self.net.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_nanos(self.rng.next_u64() % self.net.jitter.as_nanos() as u64)
            };
            let lat = link.latency + jitter;
            let dst = link.ends[1 - d].host;
            let down = &mut self.hosts[dst].iface;
            let receiving = (now + lat).max(down.down_free) + transfer_time(len, down.down_rate);
            let mut arrival = (t_end + lat).max(receiving);
            down.down_free = arrival;
            let dir = self.links[l].dir(d);
            arrival = arrival.max(dir.last_arrival);
            dir.last_arrival = arrival;
            dir.inflight.push_back(seg);
            dir.inflight_bytes += len;
            let again = dir.queued > 0 && dir.inflight_bytes < window;
            dir.in_rr = again;
            self.q.at(
                arrival,
                Ev::Deliver {
                    link: l as u32,
                    dir: d as u8,
                },
            );
            // A control-only segment that completes nothing to report, with no other
            // direction waiting, needs no event at its end: its bytes are counted now (they
            // are reported with a later segment, as at the end), and anything queued
            // meanwhile waits for `busy_until` (see `Iface`), which keeps the order of
            // events exactly as if the `UplinkDone` had been scheduled.
            let report_due = wire || dir.unreported + len >= REPORT_CONTROL;
            let host = &mut self.hosts[h];
            if again {
                host.iface.rr.push_back((l, d));
            }
            host.sent_bytes += len as u64;
            if !report_due && host.iface.rr.is_empty() && self.sc.seeder_leaves_after.is_none() {
                self.links[l].dir(d).unreported += len;
                host.iface.busy_until = (t_end, self.q.reserve());
                return;
            }
            host.iface.busy = Some((l, d, len, wire));
            self.q.at(t_end, Ev::UplinkDone { host: h as u32 });
            return;
        }
    }

    fn uplink_done(&mut self, h: usize) {
        let now = self.q.now();
        let Some((l, d, len, wire)) = self.hosts[h].iface.busy.take() else {
            return;
        };
        if !self.hosts[h].alive() {
            return;
        }
        let end = self.links[l].ends[d];
        // Control-only segments are reported with the next segment that carries blocks (or
        // once 16 KiB of them add up): the core's flow control is about upload data, and a
        // `Sent` per `have` message would double the inputs of a large swarm. (Nothing is
        // reported once the end is closed, so nothing is counted either.)
        let (report, len) = if end.state == EndState::Open {
            let dir = self.links[l].dir(d);
            dir.unreported += len;
            let report = wire || dir.unreported >= REPORT_CONTROL;
            (
                report,
                if report {
                    std::mem::take(&mut dir.unreported)
                } else {
                    0
                },
            )
        } else {
            (false, 0)
        };
        if report && matches!(self.hosts[h].kind, Kind::Node(_)) {
            self.feed(
                h,
                Input::Sent {
                    now,
                    conn: ConnId(end.local),
                    bytes: len,
                },
            );
        }
        if let (Some(copies), Some(rec)) = (self.sc.seeder_leaves_after, self.hosts[h].rec)
            && self.records[rec].class == Class::Seeder
            && self.hosts[h].sent_bytes as f64 >= copies * self.payload.size() as f64
            && self.seeder_left_at.is_none()
        {
            self.seeder_left_at = Some(now);
            self.records[rec].gone = true;
            self.kill(h);
            self.max_zero = self.max_zero.max(self.at_zero);
            return;
        }
        self.kick(h);
    }

    fn deliver(&mut self, l: usize, dir: usize) {
        let now = self.q.now();
        let r = 1 - dir;
        let link = &mut self.links[l];
        if link.dead || link.finished() {
            return;
        }
        let (src, dst) = (link.ends[dir].host, link.ends[r].host);
        let Some(seg) = link.dir(dir).inflight.pop_front() else {
            return;
        };
        let hold = {
            let (a, b) = (&self.hosts[src].iface, &self.hosts[dst].iface);
            if b.stalled_until > now {
                Some(b.stalled_until)
            } else if a.group != b.group {
                Some(self.partition_until.max(now + Duration::from_millis(1)))
            } else if link.ends[r].state == EndState::Dialling {
                Some(now + Duration::from_millis(1))
            } else {
                None
            }
        };
        if let Some(at) = hold {
            link.dir(dir).inflight.push_front(seg);
            self.q.at(
                at,
                Ev::Deliver {
                    link: l as u32,
                    dir: dir as u8,
                },
            );
            return;
        }
        link.dir(dir).inflight_bytes -= seg.len;
        let local = link.ends[r].local;
        if link.ends[r].state == EndState::Open {
            let mut buffers = std::mem::take(&mut self.buffers);
            seg.into_buffers(&mut buffers);
            let remote = IpAddr::V4(self.hosts[src].ip);
            match &mut self.hosts[dst].kind {
                Kind::Node(_) => {
                    for data in buffers.drain(..) {
                        if self.links[l].ends[r].state != EndState::Open {
                            break;
                        }
                        self.feed(
                            dst,
                            Input::Received {
                                now,
                                conn: ConnId(local),
                                data,
                            },
                        );
                    }
                }
                Kind::Script(s) => {
                    let mut outs = Vec::new();
                    for data in buffers.drain(..) {
                        outs.extend(s.on_data(local, data));
                    }
                    self.trace.mix(22);
                    self.script_outs(dst, outs);
                }
                Kind::Tracker(t) => {
                    let mut reply = Reply::Wait;
                    for data in buffers.drain(..) {
                        reply = t.on_data(local, remote, &data, &mut self.rng);
                    }
                    self.trace.mix(23);
                    if let Reply::Answer(bytes) = reply {
                        self.app_send(dst, l, r, bytes);
                        self.app_close(dst, local);
                    }
                }
                Kind::Dead => {}
            }
            buffers.clear();
            self.buffers = buffers;
        }
        let link = &mut self.links[l];
        if link.finished() {
            return;
        }
        if link.dir(dir).fin
            && link.dir(dir).inflight.is_empty()
            && matches!(link.ends[r].state, EndState::Open | EndState::Dialling)
        {
            link.dir(dir).fin = false;
            self.close_end(l, r, None);
            return;
        }
        let link = &mut self.links[l];
        let open = link.ends[dir].state == EndState::Open;
        let d = link.dir(dir);
        if open && !d.in_rr && d.queued > 0 && d.inflight_bytes < self.net.window {
            d.in_rr = true;
            self.hosts[src].iface.rr.push_back((l, dir));
            self.kick(src);
        }
    }

    fn script_outs(&mut self, h: usize, outs: Vec<ScriptOut>) {
        for o in outs {
            match o {
                ScriptOut::Send(local, data) => {
                    if let Some(&(l, side)) = self.hosts[h].conns.get(&local)
                        && self.links[l].ends[side].state == EndState::Open
                    {
                        self.app_send(h, l, side, data);
                    }
                }
                ScriptOut::Close(local) => {
                    if let Kind::Script(s) = &mut self.hosts[h].kind {
                        s.on_closed(local);
                    }
                    self.app_close(h, local);
                }
            }
        }
    }

    // ---- faults -----------------------------------------------------------------------

    fn partition(&mut self, until: Instant) {
        self.partition_until = until;
        let n = self.hosts.len();
        for h in 1..n {
            if chance(&mut self.rng, 0.2) {
                self.hosts[h].iface.group = 1;
            }
        }
        self.q.at(until, Ev::Heal);
    }

    fn random_reset(&mut self) {
        let now = self.q.now();
        for _ in 0..32 {
            if self.links.is_empty() {
                return;
            }
            let l = (self.rng.next_u64() % self.links.len() as u64) as usize;
            let link = &self.links[l];
            if link.dead
                || link.ends[0].state != EndState::Open
                || link.ends[1].state != EndState::Open
            {
                continue;
            }
            for d in self.links[l].dirs() {
                d.inflight.clear();
                d.inflight_bytes = 0;
            }
            self.q.at(
                now,
                Ev::Reset {
                    link: l as u32,
                    side: 0,
                },
            );
            self.q.at(
                now,
                Ev::Reset {
                    link: l as u32,
                    side: 1,
                },
            );
            return;
        }
    }

    fn change_bandwidth(&mut self) {
        let n = self.records.len();
        if n == 0 {
            return;
        }
        let rec = (self.rng.next_u64() % n as u64) as usize;
        let factor = uniform(&mut self.rng, 0.25f64.ln(), 4f64.ln()).exp();
        let r = &self.records[rec];
        let up = (r.up * factor).clamp(self.sc.up_min / 4.0, self.sc.up_max * 4.0);
        if let Some(h) = r.host {
            self.hosts[h].iface.up_rate = up;
        }
    }

    fn sample(&mut self) {
        let now = self.q.now();
        if self.seeder_left_at.is_some() {
            self.max_zero = self.max_zero.max(self.at_zero);
            if self.at_one > 0 {
                self.one_copy_secs += SAMPLE.as_secs_f64();
            }
        }
        if self.sc.free_riders > 0 {
            self.sample_slots();
        }
        if !self.sc.check_peers_every_event {
            for h in 0..self.hosts.len() {
                let Kind::Node(node) = &mut self.hosts[h].kind else {
                    continue;
                };
                let peers = node.session.peers(node.torrent);
                let mut problems = Vec::new();
                // Sampled: only the absolute bounds (the depth may have shrunk since).
                invariants::absolute_request_bounds(&peers, node.session.config(), &mut problems);
                for p in problems {
                    self.violation(h, p);
                }
            }
        }
        self.q.at(now + SAMPLE, Ev::Sample);
    }

    /// Counts who holds the leechers' unchoke slots (the tit-for-tat experiment).
    fn sample_slots(&mut self) {
        for h in 0..self.hosts.len() {
            let Kind::Node(node) = &self.hosts[h].kind else {
                continue;
            };
            if self.records[node.rec].class != Class::Leecher {
                continue;
            }
            for p in node.session.peers(node.torrent) {
                if p.am_choking {
                    continue;
                }
                let IpAddr::V4(ip) = p.addr.ip() else {
                    continue;
                };
                let Some(other) = self.by_ip.get(&ip).and_then(|&o| self.hosts[o].rec) else {
                    continue;
                };
                let e = self
                    .slots_by_class
                    .entry(self.records[other].class)
                    .or_default();
                e.0 += 1;
                e.1 += u64::from(p.peer_interested);
            }
        }
    }

    // ---- the end ----------------------------------------------------------------------

    fn finish(mut self, wall: f64, stuck: bool, now: Instant) -> Report {
        for host in &self.hosts {
            if let (Kind::Node(node), Some(rec)) = (&host.kind, host.rec) {
                self.records[rec].uploaded +=
                    node.session.stats(node.torrent).map_or(0, |s| s.uploaded);
            }
        }
        let mut liveness = 0;
        let mut honest = 0;
        let mut completed = 0;
        let mut classes: BTreeMap<Class, ClassTimes> = BTreeMap::new();
        let mut late = Vec::new();
        for (i, r) in self.records.iter().enumerate() {
            let c = classes.entry(r.class).or_insert_with(|| ClassTimes {
                name: r.class.name().into(),
                ..ClassTimes::default()
            });
            c.total += 1;
            c.uploaded += r.uploaded;
            if let (Some(j), Some(d)) = (r.joined_at, r.completed_at) {
                c.times.push((d - j).as_secs_f64());
            }
            if !r.must_complete || r.gone {
                continue;
            }
            honest += 1;
            match r.completed_at {
                Some(t) if t <= self.bound => completed += 1,
                Some(_) => {
                    completed += 1;
                    liveness += 1;
                    late.push(i);
                }
                None => {
                    if now >= self.bound || stuck {
                        liveness += 1;
                        late.push(i);
                    }
                }
            }
        }
        if !stuck {
            for i in late {
                let name = self.node_name(i);
                let bound = self.bound;
                let r = &self.records[i];
                let state = match r.host.map(|h| &self.hosts[h].kind) {
                    Some(Kind::Node(n)) => {
                        let st = n.session.stats(n.torrent).unwrap_or_default();
                        let peers = n.session.peers(n.torrent);
                        let unchoked_by = peers.iter().filter(|p| !p.peer_choking).count();
                        let interested = peers.iter().filter(|p| p.am_interested).count();
                        let asking: Vec<String> = peers
                            .iter()
                            .filter(|p| p.requests_out > 0)
                            .map(|p| {
                                let who = match p.addr.ip() {
                                    IpAddr::V4(ip) => self
                                        .by_ip
                                        .get(&ip)
                                        .and_then(|&h| self.hosts[h].rec)
                                        .map_or("?".into(), |o| self.node_name(o)),
                                    IpAddr::V6(_) => "?".into(),
                                };
                                format!(
                                    "{who} x{}{}",
                                    p.requests_out,
                                    if p.snubbed { " (snubbed)" } else { "" }
                                )
                            })
                            .collect();
                        format!(
                            "up, {}/{} pieces, {} peers ({} unchoke us, we want from {}), requests to [{}], {} lives",
                            st.pieces_have,
                            st.pieces_total,
                            st.peers,
                            unchoked_by,
                            interested,
                            asking.join(", "),
                            r.lives
                        )
                    }
                    _ => format!("down, {} lives", r.lives),
                };
                self.inv.list.push(crate::invariants::Violation {
                    at: now,
                    node: name,
                    what: format!(
                        "liveness: not complete by the bound ({:.0} s): {state}",
                        bound.since_epoch().as_secs_f64()
                    ),
                });
            }
        }
        let pieces_lost = if self.seeder_left_at.is_some() {
            self.at_zero
        } else {
            0
        };
        let tracker_announces = match &self.hosts[0].kind {
            Kind::Tracker(t) => t.announces,
            _ => 0,
        };
        Report {
            seed: self.sc.seed,
            peers: self.sc.peers,
            mode: match self.sc.mode {
                Mode::Real => "real".into(),
                Mode::Virtual => "virtual".into(),
            },
            picker: match self.sc.strategy {
                Strategy::RarestFirst => "rarest".into(),
                Strategy::Sequential => "sequential".into(),
            },
            endgame: self.sc.endgame,
            faults: if self.sc.faults.any() { "on" } else { "none" }.into(),
            honest,
            completed,
            sim_seconds: now.since_epoch().as_secs_f64(),
            wall_seconds: wall,
            events: self.events,
            inputs: self.inputs,
            input_kinds: self.input_kinds,
            trace_hash: self.trace.0,
            invariant_violations: self.inv.count,
            liveness_violations: if stuck { 0 } else { liveness },
            violations: self.inv.list,
            classes: classes.into_values().collect(),
            liveness_bound: self.bound.since_epoch().as_secs_f64(),
            faults_healed_at: self.heal_at.since_epoch().as_secs_f64(),
            hash_failures: self.hash_failures,
            disk_errors: self.disk_errors,
            tracker_announces,
            seeder_left_at: self.seeder_left_at.map(|t| t.since_epoch().as_secs_f64()),
            pieces_lost,
            max_pieces_zero_copies: self.max_zero,
            one_copy_seconds: self.one_copy_secs,
            stuck,
            adversary_closes: self
                .adversary_closes
                .into_iter()
                .map(|((a, r), n)| (a.name().to_string(), r, n))
                .collect(),
            close_reasons: self.close_reasons.into_iter().collect(),
            unchoke_slots: self
                .slots_by_class
                .into_iter()
                .map(|(c, (n, i))| (c.name().to_string(), n, i))
                .collect(),
            adversary_connections: self
                .adversary_conns
                .into_iter()
                .map(|(a, n)| (a.name().to_string(), n))
                .collect(),
        }
    }
}

/// The dialler's end of a link.
struct End0 {
    host: usize,
    local: u64,
}

impl End0 {
    fn of(link: &Link) -> End0 {
        End0 {
            host: link.ends[0].host,
            local: link.ends[0].local,
        }
    }
}
