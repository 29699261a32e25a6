//! `tessera-sim dht`: many real core DHT nodes ([`tessera_core::dht::Dht`]) on a virtual
//! network with latency, loss and churn, some of them hostile; lookups for info hashes that
//! some nodes announced, measured.
//!
//! A run, all from one seed:
//! 1. **Join**: eight routers start knowing each other; the other nodes join at random times
//!    over [`DhtScenario::join_window`], each bootstrapping from three routers (as real
//!    clients do from the public routers), then refreshing their sparse buckets.
//! 2. **Announce**: after [`DhtScenario::warmup`], some honest nodes (never churned)
//!    announce info hashes, and again every 15 minutes.
//! 3. **Lookups**: `get_peers` lookups from random honest nodes for announced hashes,
//!    spread over [`DhtScenario::lookup_window`]. With churn, nodes leave and new nodes join
//!    (on fresh addresses, from the routers) over the same window. Adversaries turn hostile
//!    when the announce phase starts.
//!
//! A lookup succeeds when it finds at least one announcer of its hash. After every event the
//! node it touched is checked ([`Dht::check_invariants`]: routing-table bounds and bucket
//! order, one node per IP address, store bounds), and every `announce_peer` a node accepts
//! must carry a token the node would accept ([`Dht::token_is_valid`]). The trace hash covers
//! every datagram delivered and every lookup result.

pub mod adversary;
pub mod cli;
pub mod report;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use tessera_core::InfoHash;
use tessera_core::Rng;
use tessera_core::dht::{Config, Dht, DhtEvent, LookupId, NodeId};
use tessera_core::{Duration, Instant};

use crate::queue::Queue;
use crate::report::TraceHash;
pub use adversary::DhtAdversary;
pub use report::DhtReport;

/// What a `dht` run simulates.
#[derive(Debug, Clone)]
pub struct DhtScenario {
    /// Master seed: everything derives from it.
    pub seed: u64,
    /// Honest nodes at the start (routers included).
    pub nodes: u32,
    /// `get_peers` lookups to run.
    pub lookups: u32,
    /// Fraction of nodes that leave (and as many new ones that join) during the lookups.
    pub churn: f64,
    /// Hostile nodes by kind, in addition to `nodes`.
    pub adversaries: Vec<(DhtAdversary, u32)>,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// One-way delay from a node to the network core: each node's is drawn uniformly from
    /// this range, a datagram takes the sum of both ends' plus up to 10 % jitter.
    pub access_delay_ms: (u64, u64),
    /// Over how long the initial nodes join.
    pub join_window: Duration,
    /// Time after the last join before announces (tables fill and refresh).
    pub warmup: Duration,
    /// Over how long lookups (and churn) are spread.
    pub lookup_window: Duration,
    /// Honest nodes check BEP 42 ids (the core's default).
    pub enforce_node_id: bool,
    /// Check every node's invariants after each event touching it.
    pub check_every_event: bool,
}

impl DhtScenario {
    /// Defaults for `nodes` nodes and `lookups` lookups.
    pub fn new(seed: u64, nodes: u32, lookups: u32) -> DhtScenario {
        DhtScenario {
            seed,
            nodes,
            lookups,
            churn: 0.0,
            adversaries: Vec::new(),
            loss: 0.01,
            access_delay_ms: (5, 75),
            join_window: Duration::from_secs(600),
            warmup: Duration::from_secs(300),
            lookup_window: Duration::from_secs(600),
            enforce_node_id: true,
            check_every_event: true,
        }
    }
}

/// Number of routers (honest nodes that everyone bootstraps from; never churned).
pub const ROUTERS: usize = 8;
/// How often announcers announce again.
pub const REANNOUNCE: Duration = Duration::from_secs(15 * 60);

#[derive(Debug)]
enum Ev {
    /// A datagram reaches node `to`.
    Deliver {
        to: u32,
        from: SocketAddr,
        bytes: Bytes,
    },
    /// Node `node`'s DHT deadline.
    Timer { node: u32 },
    /// Node `node` comes up and bootstraps.
    Join { node: u32 },
    /// A random churnable node leaves.
    Leave,
    /// Announcer `node` announces hash `hash`.
    Announce { node: u32, hash: u32 },
    /// Lookup number `lookup` starts.
    Lookup { lookup: u32 },
    /// Adversaries turn hostile.
    Attack,
}

/// A node slot.
#[derive(Debug)]
struct Slot {
    addr: SocketAddr,
    dht: Option<Box<Dht>>,
    adversary: Option<DhtAdversary>,
    /// The deadline a Timer event is queued for.
    timer_at: Instant,
    announcer: bool,
    /// Lookups this node runs now (it does not leave meanwhile).
    busy: u32,
}

#[derive(Debug, Clone)]
struct LookupRecord {
    node: u32,
    hash: u32,
    started: Instant,
    id: Option<LookupId>,
    found: bool,
    first_peer: Option<Duration>,
    hops: Option<u8>,
    queries: usize,
    elapsed: Option<Duration>,
}

/// The simulation.
pub struct DhtWorld {
    sc: DhtScenario,
    q: Queue<Ev>,
    rng: Rng,
    slots: Vec<Slot>,
    delay: Vec<u64>,
    hashes: Vec<InfoHash>,
    /// Peer addresses announced per hash.
    announced: Vec<Vec<SocketAddr>>,
    lookups: Vec<LookupRecord>,
    by_lookup: BTreeMap<(u32, LookupId), u32>,
    /// Node indices that may leave.
    churnable: Vec<u32>,
    attacking: bool,
    sybil_target: Option<NodeId>,
    trace: TraceHash,
    report: DhtReport,
    end: Instant,
}

impl std::fmt::Debug for DhtWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhtWorld")
            .field("now", &self.q.now())
            .field("nodes", &self.slots.len())
            .finish()
    }
}

/// A distinct public-looking IPv4 address for slot `i` (nothing is ever sent anywhere: the
/// network is virtual).
fn slot_addr(i: usize) -> SocketAddr {
    let base = u32::from(Ipv4Addr::new(11, 0, 0, 1));
    let ip = Ipv4Addr::from(base + u32::try_from(i * 3).unwrap_or(0));
    SocketAddr::new(IpAddr::V4(ip), 6881)
}

impl DhtWorld {
    /// Sets up a run of `sc`.
    pub fn new(sc: DhtScenario) -> DhtWorld {
        let mut rng = Rng::from_u64(sc.seed);
        let honest = sc.nodes.max(ROUTERS as u32 + 1) as usize;
        let adversaries: usize = sc.adversaries.iter().map(|(_, n)| *n as usize).sum();
        let leaves = (sc.churn * honest as f64).round() as usize;
        let total = honest + adversaries + leaves;
        let mut slots = Vec::with_capacity(total);
        let mut delay = Vec::with_capacity(total);
        for i in 0..total {
            slots.push(Slot {
                addr: slot_addr(i),
                dht: None,
                adversary: None,
                timer_at: Instant::FAR_FUTURE,
                announcer: false,
                busy: 0,
            });
            let (lo, hi) = sc.access_delay_ms;
            delay.push(lo + rng.below(hi.saturating_sub(lo).max(1)));
        }
        let mut i = honest;
        for (kind, n) in &sc.adversaries {
            for _ in 0..*n {
                slots[i].adversary = Some(*kind);
                i += 1;
            }
        }
        let hash_count = (sc.lookups / 10).clamp(1, 100) as usize;
        let hashes: Vec<InfoHash> = (0..hash_count)
            .map(|_| InfoHash(NodeId::random(&mut rng).0))
            .collect();
        let sybil_target = sc
            .adversaries
            .iter()
            .any(|(k, n)| *k == DhtAdversary::Sybil && *n > 0)
            .then(|| NodeId::from(hashes[0]));
        let report = DhtReport {
            seed: sc.seed,
            nodes: honest,
            lookups: sc.lookups as usize,
            churn: sc.churn,
            adversaries: sc.adversaries.clone(),
            ..DhtReport::default()
        };
        let mut w = DhtWorld {
            q: Queue::default(),
            rng,
            slots,
            delay,
            hashes,
            announced: vec![Vec::new(); hash_count],
            lookups: Vec::new(),
            by_lookup: BTreeMap::new(),
            churnable: Vec::new(),
            attacking: false,
            sybil_target,
            trace: TraceHash::default(),
            report,
            end: Instant::ZERO,
            sc,
        };
        w.schedule(honest, adversaries, leaves);
        w
    }

    fn schedule(&mut self, honest: usize, adversaries: usize, leaves: usize) {
        let t0 = Instant::ZERO;
        let join = self.sc.join_window;
        for i in 0..honest + adversaries {
            let at = if i < ROUTERS {
                t0
            } else {
                t0 + Duration::from_nanos(self.rng.below(join.as_nanos() as u64 + 1))
            };
            self.q.at(at, Ev::Join { node: i as u32 });
        }
        let announce_at = t0 + join + self.sc.warmup;
        self.q.at(
            t0 + announce_at
                .saturating_duration_since(t0)
                .saturating_sub(Duration::from_secs(60)),
            Ev::Attack,
        );
        // Announcers: up to three per hash among honest non-routers.
        let mut candidates: Vec<u32> = (ROUTERS as u32..honest as u32).collect();
        self.rng.shuffle(&mut candidates);
        let mut next = 0;
        for h in 0..self.hashes.len() {
            let n = 1 + self.rng.index(3);
            for _ in 0..n {
                let Some(&node) = candidates.get(next) else {
                    break;
                };
                next += 1;
                self.slots[node as usize].announcer = true;
                let at = announce_at + Duration::from_millis(self.rng.below(10_000));
                self.q.at(
                    at,
                    Ev::Announce {
                        node,
                        hash: h as u32,
                    },
                );
            }
        }
        self.churnable = (ROUTERS as u32..honest as u32)
            .filter(|i| !self.slots[*i as usize].announcer)
            .collect();
        let window = self.sc.lookup_window;
        let lookups_at = announce_at + Duration::from_secs(60);
        for l in 0..self.sc.lookups {
            let at = lookups_at + Duration::from_nanos(self.rng.below(window.as_nanos() as u64));
            let hash = self.rng.index(self.hashes.len()) as u32;
            self.lookups.push(LookupRecord {
                node: 0,
                hash,
                started: at,
                id: None,
                found: false,
                first_peer: None,
                hops: None,
                queries: 0,
                elapsed: None,
            });
            self.q.at(at, Ev::Lookup { lookup: l });
        }
        // Churn over the announce and lookup phases: leaves, and as many new nodes joining.
        let churn_span = window + Duration::from_secs(60);
        for k in 0..leaves {
            let at =
                announce_at + Duration::from_nanos(self.rng.below(churn_span.as_nanos() as u64));
            self.q.at(at, Ev::Leave);
            let at =
                announce_at + Duration::from_nanos(self.rng.below(churn_span.as_nanos() as u64));
            self.q.at(
                at,
                Ev::Join {
                    node: (honest + adversaries + k) as u32,
                },
            );
        }
        self.end = lookups_at + window + Duration::from_secs(90);
    }

    fn dht_seed(&mut self) -> [u8; 32] {
        let mut s = [0u8; 32];
        self.rng.fill(&mut s);
        s
    }

    fn config(&self) -> Config {
        Config {
            enforce_node_id: self.sc.enforce_node_id,
            ..Config::default()
        }
    }

    fn join(&mut self, node: u32) {
        let now = self.q.now();
        let i = node as usize;
        let addr = self.slots[i].addr;
        let id = match (self.slots[i].adversary, self.sybil_target) {
            (Some(DhtAdversary::Sybil), Some(target)) => adversary::sybil_id(target, &mut self.rng),
            _ => NodeId::secure(addr.ip(), &mut self.rng),
        };
        let seed = self.dht_seed();
        let mut config = self.config();
        if self.slots[i].adversary == Some(DhtAdversary::Sybil) {
            // Sybils keep the ids they chose.
            config.secure_id = false;
        }
        let mut dht = Dht::new(config, now, seed, Some(id), None);
        let routers: Vec<SocketAddr> = if i < ROUTERS {
            (0..ROUTERS)
                .filter(|r| *r != i)
                .map(|r| self.slots[r].addr)
                .collect()
        } else {
            let mut r: Vec<usize> = (0..ROUTERS).collect();
            self.rng.shuffle(&mut r);
            r[..3].iter().map(|r| self.slots[*r].addr).collect()
        };
        dht.bootstrap(now, &routers);
        self.slots[i].dht = Some(Box::new(dht));
        self.slots[i].timer_at = Instant::FAR_FUTURE;
        if i >= ROUTERS && self.slots[i].adversary.is_none() && !self.slots[i].announcer {
            self.churnable.push(node);
        }
        self.report.joined += 1;
        self.after(node);
    }

    fn leave(&mut self) {
        // A random churnable node that is up and runs no lookup.
        for _ in 0..16 {
            if self.churnable.is_empty() {
                return;
            }
            let k = self.rng.index(self.churnable.len());
            let node = self.churnable[k];
            let s = &mut self.slots[node as usize];
            if s.dht.is_none() || s.busy > 0 {
                continue;
            }
            s.dht = None;
            s.timer_at = Instant::FAR_FUTURE;
            self.churnable.swap_remove(k);
            self.report.left += 1;
            return;
        }
    }

    /// Sends what node `node` wants sent, takes its events, checks it, re-arms its timer.
    fn after(&mut self, node: u32) {
        let now = self.q.now();
        let i = node as usize;
        let Some(mut dht) = self.slots[i].dht.take() else {
            return;
        };
        let from = self.slots[i].addr;
        while let Some((to, bytes)) = dht.poll_transmit() {
            self.send(from, to, bytes);
        }
        while let Some(e) = dht.poll_event() {
            self.event(node, e);
        }
        if self.sc.check_every_event
            && let Err(e) = dht.check_invariants()
        {
            self.violation(format!("node {node}: {e}"));
        }
        let next = dht.poll_timeout().unwrap_or(Instant::FAR_FUTURE).max(now);
        self.slots[i].dht = Some(dht);
        if next < self.slots[i].timer_at {
            self.slots[i].timer_at = next;
            self.q.at(next, Ev::Timer { node });
        }
    }

    fn violation(&mut self, what: String) {
        self.report.invariant_violations += 1;
        if self.report.violations.len() < 10 {
            self.report.violations.push(what);
        }
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, bytes: Bytes) {
        self.report.datagrams += 1;
        let Some(j) = self.index_of(to) else {
            self.report.lost += 1;
            return;
        };
        if self.rng.chance(self.sc.loss) {
            self.report.lost += 1;
            return;
        }
        let Some(i) = self.index_of(from) else {
            return;
        };
        let base = self.delay[i] + self.delay[j];
        let jitter = self.rng.below(base / 10 + 1);
        let at = self.q.now() + Duration::from_millis(base + jitter);
        self.q.at(
            at,
            Ev::Deliver {
                to: j as u32,
                from,
                bytes,
            },
        );
    }

    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        let IpAddr::V4(ip) = addr.ip() else {
            return None;
        };
        let off = u32::from(ip).checked_sub(u32::from(Ipv4Addr::new(11, 0, 0, 1)))?;
        if off % 3 != 0 || addr.port() != 6881 {
            return None;
        }
        let i = (off / 3) as usize;
        (i < self.slots.len()).then_some(i)
    }

    fn event(&mut self, node: u32, e: DhtEvent) {
        let now = self.q.now();
        match e {
            DhtEvent::Peers { lookup, peers, .. } => {
                if let Some(&l) = self.by_lookup.get(&(node, lookup)) {
                    let rec = &mut self.lookups[l as usize];
                    let wanted = &self.announced[rec.hash as usize];
                    if peers.iter().any(|p| wanted.contains(p)) && !rec.found {
                        rec.found = true;
                        rec.first_peer = Some(now.saturating_duration_since(rec.started));
                    }
                }
            }
            DhtEvent::LookupDone(d) => {
                self.trace.mix(d.lookup.0);
                self.trace.mix(d.queries as u64);
                self.trace.mix(d.peers as u64);
                if let Some(l) = self.by_lookup.remove(&(node, d.lookup)) {
                    let rec = &mut self.lookups[l as usize];
                    rec.hops = d.hops_to_peers;
                    rec.queries = d.queries;
                    rec.elapsed = Some(d.elapsed);
                    self.slots[node as usize].busy =
                        self.slots[node as usize].busy.saturating_sub(1);
                } else if d.announced > 0 {
                    self.report.announces += 1;
                }
            }
            DhtEvent::Bootstrapped { .. } => self.report.bootstrapped += 1,
            DhtEvent::ExternalAddress { id_changed, .. } => {
                if id_changed {
                    self.report.id_changes += 1;
                }
            }
        }
    }

    fn deliver(&mut self, to: u32, from: SocketAddr, bytes: Bytes) {
        let now = self.q.now();
        self.trace.mix(now.as_nanos());
        self.trace.mix(u64::from(to));
        self.trace.mix(u64::from(u32::from(match from.ip() {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        })));
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.trace.mix(u64::from_le_bytes(w));
        }
        let i = to as usize;
        if self.slots[i].dht.is_none() {
            return;
        }
        self.report.delivered += 1;
        if self.attacking
            && let Some(kind) = self.slots[i].adversary
        {
            let own = self.slots[i].addr;
            let id = self.slots[i]
                .dht
                .as_ref()
                .map(|d| d.id())
                .unwrap_or_default();
            let reply = adversary::respond(kind, &bytes, own, id, self);
            if let Some(reply) = reply {
                self.send(own, from, reply);
            }
            return;
        }
        let announce = self.slots[i].adversary.is_none() && contains(&bytes, b"13:announce_peer");
        let Some(dht) = self.slots[i].dht.as_mut() else {
            return;
        };
        let accepted = if announce {
            dht.stats().announces_accepted
        } else {
            0
        };
        dht.handle_datagram(now, from, &bytes);
        if announce && dht.stats().announces_accepted > accepted {
            // Every announce a node accepts carries a token it gave out.
            let token_ok = match tessera_core::dht::Message::decode(&bytes) {
                Ok(m) => match m.body {
                    tessera_core::dht::Body::Query(tessera_core::dht::Query::AnnouncePeer {
                        token,
                        ..
                    }) => dht.token_is_valid(from.ip(), &token),
                    _ => false,
                },
                Err(_) => false,
            };
            self.report.announces_checked += 1;
            if !token_ok {
                self.violation(format!("node {to} accepted an announce with a bad token"));
            }
        }
        self.after(to);
    }

    fn timer(&mut self, node: u32) {
        let now = self.q.now();
        let i = node as usize;
        if self.slots[i].timer_at != now {
            return;
        }
        self.slots[i].timer_at = Instant::FAR_FUTURE;
        if let Some(dht) = self.slots[i].dht.as_mut() {
            dht.handle_timeout(now);
            self.after(node);
        }
    }

    fn announce(&mut self, node: u32, hash: u32) {
        let now = self.q.now();
        let i = node as usize;
        let port = 40_000 + (node % 20_000) as u16;
        let peer = SocketAddr::new(self.slots[i].addr.ip(), port);
        if !self.announced[hash as usize].contains(&peer) {
            self.announced[hash as usize].push(peer);
        }
        let info_hash = self.hashes[hash as usize];
        if let Some(dht) = self.slots[i].dht.as_mut() {
            dht.announce(now, info_hash, Some(port));
            self.after(node);
        }
        if now + REANNOUNCE < self.end {
            self.q.at(now + REANNOUNCE, Ev::Announce { node, hash });
        }
    }

    fn start_lookup(&mut self, l: u32) {
        let now = self.q.now();
        let hash = self.lookups[l as usize].hash;
        let info_hash = self.hashes[hash as usize];
        // A random honest node that is up and bootstrapped.
        for _ in 0..64 {
            let i = self.rng.index(self.slots.len());
            let s = &self.slots[i];
            if s.adversary.is_some() || s.announcer {
                continue;
            }
            let Some(dht) = self.slots[i].dht.as_mut() else {
                continue;
            };
            if !dht.is_bootstrapped() {
                continue;
            }
            let id = dht.get_peers(now, info_hash);
            let rec = &mut self.lookups[l as usize];
            rec.node = i as u32;
            rec.id = Some(id);
            rec.started = now;
            self.by_lookup.insert((i as u32, id), l);
            self.slots[i].busy += 1;
            self.after(i as u32);
            return;
        }
        self.report.not_started += 1;
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> DhtReport {
        let wall = std::time::Instant::now();
        let mut events = 0u64;
        while let Some(ev) = self.q.pop(self.end) {
            events += 1;
            match ev {
                Ev::Deliver { to, from, bytes } => self.deliver(to, from, bytes),
                Ev::Timer { node } => self.timer(node),
                Ev::Join { node } => self.join(node),
                Ev::Leave => self.leave(),
                Ev::Announce { node, hash } => self.announce(node, hash),
                Ev::Lookup { lookup } => self.start_lookup(lookup),
                Ev::Attack => self.attacking = true,
            }
        }
        self.report.events = events;
        self.report.sim_seconds = self.q.now().since_epoch().as_secs_f64();
        self.report.wall_seconds = wall.elapsed().as_secs_f64();
        self.finish()
    }

    fn finish(mut self) -> DhtReport {
        let mut r = std::mem::take(&mut self.report);
        for rec in &self.lookups {
            if rec.id.is_none() {
                continue;
            }
            r.started += 1;
            if rec.found {
                r.succeeded += 1;
                if let Some(h) = rec.hops {
                    r.hops.push(f64::from(h));
                }
                if let Some(t) = rec.first_peer {
                    r.first_peer_seconds.push(t.as_secs_f64());
                }
            }
            if let Some(t) = rec.elapsed {
                r.lookup_seconds.push(t.as_secs_f64());
                r.queries.push(rec.queries as f64);
            } else {
                r.unfinished += 1;
            }
            if let Some(target) = self.sybil_target
                && NodeId::from(self.hashes[rec.hash as usize]) == target
            {
                r.sybil_target_lookups += 1;
                if rec.found {
                    r.sybil_target_found += 1;
                }
            }
        }
        let live: Vec<&Dht> = self
            .slots
            .iter()
            .filter(|s| s.adversary.is_none())
            .filter_map(|s| s.dht.as_deref())
            .collect();
        r.live_nodes = live.len();
        if !live.is_empty() {
            let total: usize = live.iter().map(|d| d.stats().nodes[0]).sum();
            r.mean_table_size = total as f64 / live.len() as f64;
        }
        r.trace_hash = self.trace.0;
        r
    }
}

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Runs a scenario to its end.
pub fn run(sc: DhtScenario) -> DhtReport {
    DhtWorld::new(sc).run()
}
