//! The Mainline DHT (BEP 5, with BEP 32 for IPv6, BEP 42 for node ids tied to addresses and
//! BEP 43 for read-only nodes): a node that finds peers of a torrent without a tracker.
//!
//! [`Dht`] is a sans-IO state machine in the manner of quinn-proto: datagrams and time go in,
//! datagrams and events come out, every random choice comes from the seed it was made with.
//! The order of calls:
//!
//! - **Construction**: [`Dht::new`] (an id, or one derived later from our external address;
//!   optionally the routing table [`Dht::save`]d by an earlier run).
//! - **Inputs**: [`Dht::handle_datagram`] for every datagram that arrived for the DHT,
//!   [`Dht::handle_timeout`] when the time [`Dht::poll_timeout`] named has come.
//! - **Requests**: [`Dht::bootstrap`], [`Dht::add_node`], [`Dht::find_node`],
//!   [`Dht::get_peers`], [`Dht::announce`].
//! - **Outputs**, drained after every input or request: [`Dht::poll_transmit`] (datagrams to
//!   send), [`Dht::poll_event`] (peers found, lookups finished, our external address), then
//!   [`Dht::poll_timeout`].
//!
//! Modules, by protocol concept: [`krpc`] (the messages), [`node_id`] (ids, XOR distance,
//! BEP 42), [`routing`] (the routing table), [`lookup`] (iterative lookups), [`token`]
//! (announce tokens), [`store`] (announced peers), [`rate_limit`] (queries we answer).
//!
//! Everything a stranger can make us keep is bounded: the routing table (k per bucket, 160
//! buckets, caches), the peer store, the per-source query counters, queries in flight, the
//! candidates of a lookup and the votes on our external address.

#![warn(missing_docs)]

mod driving;
pub mod krpc;
pub mod lookup;
pub mod node_id;
pub mod rate_limit;
pub mod routing;
mod saved;
mod server;
pub mod store;
#[cfg(test)]
mod tests;
pub mod token;

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use crate::id::InfoHash;
use crate::rng::Rng;
use crate::time::{Duration, Instant};

pub use krpc::{Body, Message, NodeInfo, Query, Response, Want};
pub use lookup::{LookupConfig, LookupId, LookupKind};
pub use node_id::NodeId;
pub use rate_limit::QueryLimits;
pub use routing::{IpLimit, RoutingConfig, RoutingTable};
pub use saved::SavedState;
pub use store::{PeerStore, StoreLimits};

use lookup::Lookup;
use node_id::{canonical, is_local};
use rate_limit::QueryLimiter;
use token::Tokens;

/// Our client version in the `v` key: "TS" and a version number.
pub const VERSION: [u8; 4] = *b"TS\x00\x01";
/// Most nodes kept per family in [`Dht::save`] and read back from it.
pub const MAX_SAVED_NODES: usize = 200;
/// Most bootstrap routers remembered.
pub const MAX_ROUTERS: usize = 32;
/// Votes on our external address remembered (one per voter).
pub const MAX_VOTES: usize = 32;

/// The settings of a [`Dht`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Run a routing table for IPv4 nodes.
    pub ipv4: bool,
    /// Run a routing table for IPv6 nodes (BEP 32): when the node has an IPv6 address.
    pub ipv6: bool,
    /// The routing tables' settings.
    pub routing: RoutingConfig,
    /// Lookups' settings.
    pub lookup: LookupConfig,
    /// How long a query may go unanswered before it counts as failed.
    pub query_timeout: Duration,
    /// Read-only (BEP 43): answer no query, and ask others not to keep us in their tables.
    pub read_only: bool,
    /// Keep nodes whose id does not follow BEP 42 for their address out of the routing table
    /// and out of lookups (local and private addresses are exempt, as the BEP says).
    pub enforce_node_id: bool,
    /// Take nodes and peers at loopback, private and link-local addresses (tests on one
    /// machine, a LAN); otherwise they are ignored.
    pub allow_local_addresses: bool,
    /// When a majority of nodes report an external address our id does not match (BEP 42),
    /// take a new id derived from it.
    pub secure_id: bool,
    /// Reports of the same external address, from different nodes, needed to believe it.
    pub external_address_votes: usize,
    /// The peer store's bounds.
    pub store: StoreLimits,
    /// Limits on the queries we answer.
    pub query_limits: QueryLimits,
    /// Most queries in flight at once.
    pub max_outstanding: usize,
    /// Most pings in flight to nodes that queried us (to verify them before they enter the
    /// table).
    pub max_verify_pings: usize,
    /// How often the table is looked after: a questionable node pinged, a stale bucket
    /// refreshed.
    pub maintenance_interval: Duration,
    /// Most peers in one `get_peers` reply.
    pub max_values: usize,
    /// The port announced beside `implied_port` (ignored by the receiver).
    pub implied_port_hint: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ipv4: true,
            ipv6: false,
            routing: RoutingConfig::default(),
            lookup: LookupConfig::default(),
            query_timeout: Duration::from_secs(3),
            read_only: false,
            enforce_node_id: true,
            allow_local_addresses: false,
            secure_id: true,
            external_address_votes: 3,
            store: StoreLimits::default(),
            query_limits: QueryLimits::default(),
            max_outstanding: 512,
            max_verify_pings: 16,
            maintenance_interval: Duration::from_secs(5),
            max_values: 50,
            implied_port_hint: 1,
        }
    }
}

impl Config {
    /// Settings for tests among nodes on one machine: loopback addresses accepted, many
    /// nodes per address, no BEP 42 enforcement.
    pub fn loopback() -> Config {
        Config {
            routing: RoutingConfig {
                ip_limit: IpLimit::None,
                ..RoutingConfig::default()
            },
            lookup: LookupConfig {
                one_per_ip: false,
                ..LookupConfig::default()
            },
            enforce_node_id: false,
            allow_local_addresses: true,
            secure_id: false,
            ..Config::default()
        }
    }
}

/// How a lookup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupDone {
    /// Its handle.
    pub lookup: LookupId,
    /// What it was for.
    pub kind: LookupKind,
    /// The target (info hash or node id).
    pub target: NodeId,
    /// Distinct peers found (all reported in [`DhtEvent::Peers`] before this).
    pub peers: usize,
    /// The closest nodes that answered, closest first (k per address family).
    pub closest: Vec<NodeInfo>,
    /// Queries sent (not counting announces).
    pub queries: usize,
    /// Answers received.
    pub responses: usize,
    /// Hops to the closest node that answered (1: a node from our own table).
    pub hops: Option<u8>,
    /// Hops to the first answer that carried peers.
    pub hops_to_peers: Option<u8>,
    /// `announce_peer` queries sent (announce lookups).
    pub announced: usize,
    /// Time from start to end.
    pub elapsed: Duration,
}

/// What the DHT tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtEvent {
    /// Peers of `info_hash` found by a `get_peers` or announce lookup (each reported once
    /// per lookup).
    Peers {
        /// The lookup that found them.
        lookup: LookupId,
        /// The torrent.
        info_hash: InfoHash,
        /// Their addresses.
        peers: Vec<SocketAddr>,
    },
    /// A lookup started by [`Dht::find_node`], [`Dht::get_peers`] or [`Dht::announce`]
    /// ended.
    LookupDone(LookupDone),
    /// Several nodes agree on the address they see us at (the `ip` key of BEP 42).
    ExternalAddress {
        /// Our external address.
        ip: IpAddr,
        /// Our node id changed to follow BEP 42 for it.
        id_changed: bool,
    },
    /// The bootstrap lookup ended with nodes in the routing table.
    Bootstrapped {
        /// Nodes in the routing tables.
        nodes: usize,
    },
}

/// Counters, for tests, the simulator and a status display.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Nodes in the IPv4 and IPv6 routing tables.
    pub nodes: [usize; 2],
    /// Nodes waiting in replacement caches, per family.
    pub replacements: [usize; 2],
    /// Queries sent.
    pub queries_sent: u64,
    /// Answers (or errors) received to our queries.
    pub responses_received: u64,
    /// Errors received to our queries.
    pub errors_received: u64,
    /// Queries that went unanswered.
    pub timeouts: u64,
    /// Queries received.
    pub queries_received: u64,
    /// Queries answered (with a reply or an error).
    pub queries_answered: u64,
    /// Queries ignored by the per-source limit.
    pub rate_limited: u64,
    /// Datagrams that were not KRPC or were malformed.
    pub invalid: u64,
    /// Replies matching no query in flight (late, spoofed, or from another address).
    pub unmatched: u64,
    /// `announce_peer` queries accepted (valid token).
    pub announces_accepted: u64,
    /// `announce_peer` queries refused (bad token).
    pub announces_refused: u64,
    /// Queries in flight now.
    pub outstanding: usize,
    /// Lookups running now.
    pub lookups: usize,
    /// Info hashes in the store.
    pub stored_hashes: usize,
    /// Peers in the store.
    pub stored_peers: usize,
}

/// Why a query is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Lookup(LookupId),
    Announce,
    Ping,
    /// A ping to a node that queried us, to verify it before it enters the table.
    Verify,
}

#[derive(Debug, Clone)]
struct Outstanding {
    addr: SocketAddr,
    expected: Option<NodeId>,
    sent: Instant,
    slow: bool,
    purpose: Purpose,
}

#[derive(Debug, Clone, Default)]
struct Bootstrap {
    routers: Vec<SocketAddr>,
    saved: [Vec<NodeInfo>; 2],
    lookup: Option<LookupId>,
    attempts: u32,
    retry_at: Option<Instant>,
    done: bool,
}

/// A DHT node. See the [module documentation](self) for the order of calls.
#[derive(Debug)]
pub struct Dht {
    config: Config,
    rng: Rng,
    ids: [NodeId; 2],
    tables: [Option<RoutingTable>; 2],
    tokens: Tokens,
    store: PeerStore,
    limiter: QueryLimiter,
    outstanding: BTreeMap<u16, Outstanding>,
    lookups: BTreeMap<LookupId, Lookup>,
    next_lookup: u64,
    bootstrap: Bootstrap,
    refresh: Option<LookupId>,
    next_maintenance: Instant,
    votes: Vec<(IpAddr, IpAddr)>,
    external: Option<IpAddr>,
    transmits: VecDeque<(SocketAddr, Bytes)>,
    events: VecDeque<DhtEvent>,
    stats: Stats,
}

/// 0 for IPv4, 1 for IPv6.
fn family(addr: &SocketAddr) -> usize {
    usize::from(addr.is_ipv6())
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(addr.ip()), addr.port())
}

impl Dht {
    /// A node that knows nobody yet. `id`: our node id (else the saved one, else random; with
    /// [`Config::secure_id`] it is replaced once our external address is known, if it does
    /// not follow BEP 42). `state`: what [`Dht::save`] returned in an earlier run (its nodes
    /// are asked first by [`Dht::bootstrap`]; unreadable state is ignored).
    pub fn new(
        config: Config,
        now: Instant,
        seed: [u8; 32],
        id: Option<NodeId>,
        state: Option<&[u8]>,
    ) -> Dht {
        let mut rng = Rng::from_seed(seed);
        let saved = state.and_then(SavedState::decode).unwrap_or_default();
        let id4 = id.or(saved.id).unwrap_or_else(|| NodeId::random(&mut rng));
        let id6 = id.or(saved.id6).unwrap_or_else(|| NodeId::random(&mut rng));
        let ids = [id4, id6];
        let tables = [
            config
                .ipv4
                .then(|| RoutingTable::new(id4, config.routing, now)),
            config
                .ipv6
                .then(|| RoutingTable::new(id6, config.routing, now)),
        ];
        let tokens = Tokens::new(now, &mut rng);
        let store = PeerStore::new(now, config.store);
        let limiter = QueryLimiter::new(config.query_limits);
        let next_maintenance = now + config.maintenance_interval;
        let bootstrap = Bootstrap {
            saved: [saved.nodes, saved.nodes6],
            ..Bootstrap::default()
        };
        Dht {
            config,
            rng,
            ids,
            tables,
            tokens,
            store,
            limiter,
            outstanding: BTreeMap::new(),
            lookups: BTreeMap::new(),
            next_lookup: 1,
            bootstrap,
            refresh: None,
            next_maintenance,
            votes: Vec::new(),
            external: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    // ---- getters ----

    /// Our node id for IPv4 (or IPv6 when only that is enabled).
    pub fn id(&self) -> NodeId {
        if self.tables[0].is_none() && self.tables[1].is_some() {
            self.ids[1]
        } else {
            self.ids[0]
        }
    }

    /// Our node id for one family.
    pub fn id_for(&self, ipv6: bool) -> NodeId {
        self.ids[usize::from(ipv6)]
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The routing table of one family, if enabled.
    pub fn routing_table(&self, ipv6: bool) -> Option<&RoutingTable> {
        self.tables[usize::from(ipv6)].as_ref()
    }

    /// The announced peers we hold.
    pub fn store(&self) -> &PeerStore {
        &self.store
    }

    /// Our external address, once enough nodes agreed on it.
    pub fn external_ip(&self) -> Option<IpAddr> {
        self.external
    }

    /// Whether the bootstrap lookup ended with nodes in the table.
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrap.done
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        for f in 0..2 {
            if let Some(t) = &self.tables[f] {
                s.nodes[f] = t.len();
                s.replacements[f] = t.replacements();
            }
        }
        s.outstanding = self.outstanding.len();
        s.lookups = self.lookups.len();
        s.stored_hashes = self.store.hashes();
        s.stored_peers = self.store.peers();
        s
    }

    /// Whether `token` is one we would accept from a querier at `ip` now (for checks from
    /// outside, as the simulator's invariants).
    pub fn token_is_valid(&self, ip: IpAddr, token: &[u8]) -> bool {
        self.tokens.is_valid(ip, token)
    }

    /// Checks every bound and structure; a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        for t in self.tables.iter().flatten() {
            t.check_invariants()?;
        }
        self.store.check_invariants()?;
        self.limiter.check_invariants()?;
        if self.outstanding.len() > self.config.max_outstanding {
            return Err(format!("{} queries in flight", self.outstanding.len()));
        }
        if self.votes.len() > MAX_VOTES {
            return Err(format!("{} address votes", self.votes.len()));
        }
        for l in self.lookups.values() {
            for t in l.traversals.iter().flatten() {
                if t.candidates().len() > self.config.lookup.max_candidates {
                    return Err(format!("lookup with {} candidates", t.candidates().len()));
                }
            }
        }
        Ok(())
    }

    // ---- requests ----

    /// Joins the network: a `find_node` lookup for our own id, starting from the nodes of the
    /// saved state, the routing table and `routers` (asked all at once, again after a lost
    /// datagram, and the whole lookup again after 1, 2, 4... up to 60 s while nobody
    /// answers). Once it ends with nodes, sparse buckets are refreshed one after another.
    pub fn bootstrap(&mut self, now: Instant, routers: &[SocketAddr]) {
        for r in routers {
            let r = canonical_addr(*r);
            if !self.bootstrap.routers.contains(&r) && self.bootstrap.routers.len() < MAX_ROUTERS {
                self.bootstrap.routers.push(r);
            }
        }
        self.start_bootstrap(now);
    }

    /// Pings a node known only by its address; if it answers, it enters the routing table.
    pub fn add_node(&mut self, now: Instant, addr: SocketAddr) {
        let addr = canonical_addr(addr);
        if self.tables[family(&addr)].is_some() {
            let id = self.ids[family(&addr)];
            self.send_query(now, addr, None, Purpose::Ping, Query::Ping { id });
        }
    }

    /// Starts a `find_node` lookup for `target`.
    pub fn find_node(&mut self, now: Instant, target: NodeId) -> LookupId {
        self.start_lookup(now, LookupKind::FindNode, target, false, [true, true])
    }

    /// Starts a `get_peers` lookup for `info_hash`: [`DhtEvent::Peers`] as peers come in,
    /// then [`DhtEvent::LookupDone`].
    pub fn get_peers(&mut self, now: Instant, info_hash: InfoHash) -> LookupId {
        self.start_lookup(
            now,
            LookupKind::GetPeers,
            info_hash.into(),
            false,
            [true, true],
        )
    }

    /// Announces that we download `info_hash` on `port` (`None`: on the source port of our
    /// datagrams, `implied_port`): a `get_peers` lookup (its peers reported too), then
    /// `announce_peer` to the closest nodes that gave a token. Announces expire after 30
    /// minutes on the nodes that took them: announce again before.
    pub fn announce(&mut self, now: Instant, info_hash: InfoHash, port: Option<u16>) -> LookupId {
        self.start_lookup(
            now,
            LookupKind::Announce { port },
            info_hash.into(),
            false,
            [true, true],
        )
    }

    /// Abandons a lookup (no event for it; its answers are still used for the routing table).
    pub fn cancel(&mut self, lookup: LookupId) {
        self.lookups.remove(&lookup);
    }

    /// The routing table to keep for next time ([`Dht::new`]'s `state`): our ids and up to
    /// [`MAX_SAVED_NODES`] nodes per family that are not bad.
    pub fn save(&self) -> Vec<u8> {
        let nodes = |f: usize| -> Vec<NodeInfo> {
            self.tables[f]
                .as_ref()
                .map(|t| {
                    let max_failures = t.config().max_failures;
                    let mut v: Vec<&routing::Node> =
                        t.nodes().filter(|n| n.failures < max_failures).collect();
                    v.sort_by_key(|n| std::cmp::Reverse(n.last_response));
                    v.iter().take(MAX_SAVED_NODES).map(|n| n.info()).collect()
                })
                .unwrap_or_default()
        };
        SavedState {
            id: self.tables[0].as_ref().map(|_| self.ids[0]),
            id6: self.tables[1].as_ref().map(|_| self.ids[1]),
            nodes: nodes(0),
            nodes6: nodes(1),
        }
        .encode()
    }

    // ---- inputs ----

    /// A datagram arrived from `from`. Anything that is not a valid KRPC message is counted
    /// and dropped (a malformed query gets error 203).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let from = canonical_addr(from);
        if self.tables[family(&from)].is_none() {
            return;
        }
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(krpc::DecodeError::Invalid {
                transaction: Some(t),
                query: true,
                reason,
            }) => {
                self.stats.invalid += 1;
                if !self.config.read_only && self.limiter.allow(now, from.ip()) {
                    self.reply_error(from, t, krpc::error_code::PROTOCOL, reason);
                }
                return;
            }
            Err(_) => {
                self.stats.invalid += 1;
                return;
            }
        };
        let Message {
            transaction,
            requester,
            read_only,
            body,
            ..
        } = msg;
        match body {
            Body::Query(q) => self.handle_query(now, from, transaction, read_only, q),
            Body::Response(r) => self.handle_response(now, from, &transaction, requester, Some(r)),
            Body::Error { .. } => self.handle_response(now, from, &transaction, requester, None),
        }
    }

    /// Time has come (at least the instant [`Dht::poll_timeout`] named): time-outs of
    /// queries, retries, the table's upkeep, token rotation, expiry of stored peers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_queries(now);
        self.tokens.handle_timeout(now, &mut self.rng);
        self.store.handle_timeout(now);
        if self.bootstrap.retry_at.is_some_and(|t| t <= now) {
            self.bootstrap.retry_at = None;
            self.start_bootstrap(now);
        }
        if now >= self.next_maintenance {
            self.next_maintenance = now + self.config.maintenance_interval;
            self.maintain(now);
        }
    }

    // ---- outputs ----

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.events.pop_front()
    }

    /// When to call [`Dht::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self
            .next_maintenance
            .min(self.tokens.next_rotation())
            .min(self.store.next_sweep());
        if let Some(r) = self.bootstrap.retry_at {
            t = t.min(r);
        }
        for o in self.outstanding.values() {
            t = t.min(self.deadline(o));
        }
        Some(t)
    }

    // ---- internals ----

    fn addr_ok(&self, addr: &SocketAddr) -> bool {
        let ip = addr.ip();
        addr.port() != 0
            && !ip.is_unspecified()
            && !ip.is_multicast()
            && ip != IpAddr::from([255, 255, 255, 255])
            && (self.config.allow_local_addresses || !is_local(ip))
    }

    fn node_ok(&self, n: &NodeInfo) -> bool {
        self.addr_ok(&n.addr)
            && n.id != self.ids[family(&n.addr)]
            && (!self.config.enforce_node_id || n.id.valid_for(n.addr.ip()))
    }
}
