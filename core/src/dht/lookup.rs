//! Iterative lookups (BEP 5, Kademlia): ask the nodes closest to a target for nodes closer
//! still, [`LookupConfig::alpha`] queries in flight, until the [`LookupConfig::k`] closest
//! nodes heard of have all answered.
//!
//! A [`Traversal`] is that walk over one address family; it decides whom to ask next and when
//! it is finished, and knows nothing of messages or sockets. A [`Lookup`] is what the node
//! was asked to do (find nodes, get peers, announce): one traversal per routing table, the
//! peers collected from `values`, and the numbers a caller may want (queries, hops).
//!
//! A query unanswered after [`LookupConfig::slow_after`] no longer holds one of the α slots
//! (another node is asked beside it), but the lookup still waits for its answer or its
//! time-out before it calls a node among the k closest unreachable. Bootstrap routers (nodes
//! known only by address) are all asked at once, outside α, and asked again when a query to
//! them times out, so that one lost datagram costs seconds, not minutes.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::krpc::NodeInfo;
use super::node_id::{Distance, NodeId, canonical};
use crate::id::InfoHash;
use crate::time::Instant;

/// Most peers one lookup collects (further `values` are ignored).
pub const MAX_LOOKUP_PEERS: usize = 2000;

/// Settings of a traversal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupConfig {
    /// The number of closest nodes to converge on.
    pub k: usize,
    /// Queries in flight at once (not counting slow ones).
    pub alpha: usize,
    /// Candidates kept (the closest ones).
    pub max_candidates: usize,
    /// Most queries one traversal sends.
    pub max_queries: usize,
    /// Times a router is asked before giving up on it.
    pub router_attempts: u8,
    /// Accept only one candidate per IP address.
    pub one_per_ip: bool,
    /// How long a query may stay unanswered before another node is asked beside it.
    pub slow_after: crate::time::Duration,
}

impl Default for LookupConfig {
    fn default() -> Self {
        LookupConfig {
            k: super::routing::K,
            alpha: 3,
            max_candidates: 64,
            max_queries: 160,
            router_attempts: 3,
            one_per_ip: true,
            slow_after: crate::time::Duration::from_secs(1),
        }
    }
}

/// Where a candidate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateState {
    /// Not asked yet.
    New,
    /// Asked, no answer yet; `slow` once past [`LookupConfig::slow_after`].
    InFlight {
        /// The query no longer holds an α slot.
        slow: bool,
    },
    /// Answered.
    Responded,
    /// Did not answer, answered with an error, or answered with another id.
    Failed,
}

/// A node the traversal heard of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its id and address.
    pub node: NodeInfo,
    /// Its XOR distance to the target.
    pub distance: Distance,
    /// Where it stands.
    pub state: CandidateState,
    /// The token it gave with its answer (`get_peers`).
    pub token: Option<Vec<u8>>,
    /// Hops from our routing table: 0 for a node we knew, 1 for a node one of those named...
    pub depth: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Router {
    addr: SocketAddr,
    attempts: u8,
    in_flight: bool,
    done: bool,
}

/// What the traversal wants sent next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    /// Where to send the query.
    pub addr: SocketAddr,
    /// The id the answer should carry (`None` for a router).
    pub id: Option<NodeId>,
}

/// An iterative walk towards one target over one address family.
#[derive(Debug, Clone)]
pub struct Traversal {
    target: NodeId,
    config: LookupConfig,
    /// Sorted by distance, closest first.
    candidates: Vec<Candidate>,
    routers: Vec<Router>,
    /// Addresses ever taken as candidates (so that a dropped far candidate is not re-added).
    seen: BTreeSet<SocketAddr>,
    queries: usize,
    responses: usize,
}

impl Traversal {
    /// A traversal towards `target`, not started.
    pub fn new(target: NodeId, config: LookupConfig) -> Traversal {
        Traversal {
            target,
            config,
            candidates: Vec::new(),
            routers: Vec::new(),
            seen: BTreeSet::new(),
            queries: 0,
            responses: 0,
        }
    }

    /// The target.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// Queries sent so far.
    pub fn queries(&self) -> usize {
        self.queries
    }

    /// Answers received so far.
    pub fn responses(&self) -> usize {
        self.responses
    }

    /// The candidates, closest first.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// A node to ask, at `depth` hops from our table. Returns whether it was taken (not a
    /// duplicate, not too far).
    pub fn add(&mut self, node: NodeInfo, depth: u8) -> bool {
        if self.seen.contains(&node.addr) || self.candidates.iter().any(|c| c.node.id == node.id) {
            // A shorter path to a known candidate counts.
            if let Some(c) = self
                .candidates
                .iter_mut()
                .find(|c| c.node.id == node.id && c.node.addr == node.addr)
            {
                c.depth = c.depth.min(depth);
            }
            return false;
        }
        if self.config.one_per_ip {
            let ip = canonical(node.addr.ip());
            if self
                .candidates
                .iter()
                .any(|c| canonical(c.node.addr.ip()) == ip)
            {
                return false;
            }
        }
        let distance = node.id.distance(&self.target);
        let at = self.candidates.partition_point(|c| c.distance < distance);
        if at >= self.config.max_candidates {
            return false;
        }
        self.seen.insert(node.addr);
        self.candidates.insert(
            at,
            Candidate {
                node,
                distance,
                state: CandidateState::New,
                token: None,
                depth,
            },
        );
        self.candidates.truncate(self.config.max_candidates);
        true
    }

    /// A router, known only by address, to ask first.
    pub fn add_router(&mut self, addr: SocketAddr) {
        if !self.routers.iter().any(|r| r.addr == addr) {
            self.routers.push(Router {
                addr,
                attempts: 0,
                in_flight: false,
                done: false,
            });
        }
    }

    fn active(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| c.state == CandidateState::InFlight { slow: false })
            .count()
    }

    /// The next query to send, if the traversal wants one now (the caller sends it and
    /// reports the outcome with [`Traversal::on_response`], [`Traversal::on_slow`] or
    /// [`Traversal::on_failure`]).
    pub fn next_query(&mut self) -> Option<Next> {
        if let Some(r) = self
            .routers
            .iter_mut()
            .find(|r| !r.done && !r.in_flight && r.attempts < self.config.router_attempts)
        {
            r.in_flight = true;
            r.attempts += 1;
            self.queries += 1;
            return Some(Next {
                addr: r.addr,
                id: None,
            });
        }
        if self.queries >= self.config.max_queries || self.active() >= self.config.alpha {
            return None;
        }
        let k = self.config.k;
        let c = self
            .candidates
            .iter_mut()
            .filter(|c| c.state != CandidateState::Failed)
            .take(k)
            .find(|c| c.state == CandidateState::New)?;
        c.state = CandidateState::InFlight { slow: false };
        self.queries += 1;
        Some(Next {
            addr: c.node.addr,
            id: Some(c.node.id),
        })
    }

    /// Whether the traversal is over: the k closest candidates that did not fail have all
    /// answered (or the query budget is spent and nothing is in flight), and some node
    /// answered or every router gave up.
    pub fn is_done(&self) -> bool {
        // Routers hold the traversal only while nobody at all has answered: once nodes
        // answer, a dead router must not delay the end.
        let routers_pending = self
            .routers
            .iter()
            .any(|r| r.in_flight || (!r.done && r.attempts < self.config.router_attempts));
        if routers_pending && self.responses == 0 {
            return false;
        }
        if self.queries >= self.config.max_queries {
            return !self
                .candidates
                .iter()
                .any(|c| matches!(c.state, CandidateState::InFlight { .. }));
        }
        self.candidates
            .iter()
            .filter(|c| c.state != CandidateState::Failed)
            .take(self.config.k)
            .all(|c| c.state == CandidateState::Responded)
    }

    /// The query `to` (as [`Traversal::next_query`] gave it) was answered with id `id`,
    /// naming `nodes`; `token` for `get_peers`. Returns the depth of the answering node (0
    /// for a node from our table, or a router), or `None` when the answer does not count (no
    /// such query in flight, or another id than the one asked).
    pub fn on_response(
        &mut self,
        to: Next,
        id: NodeId,
        token: Option<Vec<u8>>,
        nodes: &[NodeInfo],
    ) -> Option<u8> {
        let depth;
        match to.id {
            None => {
                let r = self
                    .routers
                    .iter_mut()
                    .find(|r| r.addr == to.addr && r.in_flight)?;
                r.in_flight = false;
                r.done = true;
                depth = 0;
                self.responses += 1;
                // The router is a node too: it may be among the closest.
                let known = self
                    .candidates
                    .iter()
                    .position(|c| c.node.addr == to.addr && c.node.id == id);
                let at = match known {
                    Some(i) => Some(i),
                    None => {
                        self.add(NodeInfo { id, addr: to.addr }, 0);
                        self.candidates
                            .iter()
                            .position(|c| c.node.addr == to.addr && c.node.id == id)
                    }
                };
                if let Some(c) = at.map(|i| &mut self.candidates[i])
                    && c.state == CandidateState::New
                {
                    c.state = CandidateState::Responded;
                    c.token = token;
                }
            }
            Some(expected) => {
                let c = self.candidates.iter_mut().find(|c| {
                    c.node.addr == to.addr
                        && c.node.id == expected
                        && matches!(c.state, CandidateState::InFlight { .. })
                })?;
                if expected != id {
                    c.state = CandidateState::Failed;
                    return None;
                }
                c.state = CandidateState::Responded;
                c.token = token;
                depth = c.depth;
                self.responses += 1;
            }
        }
        for n in nodes {
            self.add(*n, depth.saturating_add(1));
        }
        Some(depth)
    }

    fn in_flight(&mut self, to: Next) -> Option<&mut Candidate> {
        let expected = to.id?;
        self.candidates.iter_mut().find(|c| {
            c.node.addr == to.addr
                && c.node.id == expected
                && matches!(c.state, CandidateState::InFlight { .. })
        })
    }

    /// The query `to` is past [`LookupConfig::slow_after`]: it frees its α slot.
    pub fn on_slow(&mut self, to: Next) {
        if let Some(c) = self.in_flight(to) {
            c.state = CandidateState::InFlight { slow: true };
        }
    }

    /// The query `to` timed out or drew an error.
    pub fn on_failure(&mut self, to: Next) {
        if to.id.is_none() {
            if let Some(r) = self
                .routers
                .iter_mut()
                .find(|r| r.addr == to.addr && r.in_flight)
            {
                r.in_flight = false;
            }
            return;
        }
        if let Some(c) = self.in_flight(to) {
            c.state = CandidateState::Failed;
        }
    }

    /// The k closest nodes that answered, closest first.
    pub fn closest_responded(&self) -> Vec<&Candidate> {
        self.candidates
            .iter()
            .filter(|c| c.state == CandidateState::Responded)
            .take(self.config.k)
            .collect()
    }
}

/// A lookup's handle, unique within one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LookupId(pub u64);

/// What a lookup is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    /// `find_node`: the nodes closest to the target.
    FindNode,
    /// `get_peers`: peers of the target info hash.
    GetPeers,
    /// `get_peers`, then `announce_peer` to the closest nodes that gave a token; `port`
    /// `None` announces with `implied_port` (the source port of our datagrams).
    Announce {
        /// The port to announce.
        port: Option<u16>,
    },
}

/// A lookup in progress: one traversal per address family, and what it found.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// Its handle.
    pub id: LookupId,
    /// What it is for.
    pub kind: LookupKind,
    /// The target (node id or info hash).
    pub target: NodeId,
    /// When it started.
    pub started: Instant,
    /// Traversals by family (index 0: IPv4, 1: IPv6).
    pub traversals: [Option<Traversal>; 2],
    /// Peers found (`values`), at most [`MAX_LOOKUP_PEERS`].
    pub peers: BTreeSet<SocketAddr>,
    /// Hops to the first answer with peers (1: a node of our own table).
    pub hops_to_peers: Option<u8>,
    /// The lookup is internal (bootstrap, bucket refresh): no event for it.
    pub internal: bool,
}

impl Lookup {
    /// A lookup of `kind` towards `target` over the families that have a traversal.
    pub fn new(
        id: LookupId,
        kind: LookupKind,
        target: NodeId,
        started: Instant,
        traversals: [Option<Traversal>; 2],
        internal: bool,
    ) -> Lookup {
        Lookup {
            id,
            kind,
            target,
            started,
            traversals,
            peers: BTreeSet::new(),
            hops_to_peers: None,
            internal,
        }
    }

    /// The info hash, for peer lookups.
    pub fn info_hash(&self) -> InfoHash {
        self.target.into()
    }

    /// Whether every traversal is over.
    pub fn is_done(&self) -> bool {
        self.traversals.iter().flatten().all(Traversal::is_done)
    }

    /// Queries sent by all traversals.
    pub fn queries(&self) -> usize {
        self.traversals
            .iter()
            .flatten()
            .map(Traversal::queries)
            .sum()
    }

    /// Answers received by all traversals.
    pub fn responses(&self) -> usize {
        self.traversals
            .iter()
            .flatten()
            .map(Traversal::responses)
            .sum()
    }

    /// Hops to the closest node that answered (1: a node of our table), over all families.
    pub fn hops_to_closest(&self) -> Option<u8> {
        self.traversals
            .iter()
            .flatten()
            .filter_map(|t| t.closest_responded().first().map(|c| c.depth + 1))
            .min()
    }

    /// Adds `values` from a node at `depth`; returns the peers not seen before.
    pub fn add_peers(&mut self, values: &[SocketAddr], depth: u8) -> Vec<SocketAddr> {
        let mut fresh = Vec::new();
        for v in values {
            if self.peers.len() >= MAX_LOOKUP_PEERS {
                break;
            }
            if self.peers.insert(*v) {
                fresh.push(*v);
            }
        }
        if !values.is_empty() && self.hops_to_peers.is_none() {
            self.hops_to_peers = Some(depth.saturating_add(1));
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn node(rng: &mut Rng, i: u32) -> NodeInfo {
        NodeInfo {
            id: NodeId::random(rng),
            addr: SocketAddr::from((i.to_be_bytes(), 1)),
        }
    }

    #[test]
    fn asks_alpha_at_a_time_closest_first_and_ends_on_the_k_closest() {
        let mut rng = Rng::from_u64(1);
        let target = NodeId::random(&mut rng);
        let mut t = Traversal::new(target, LookupConfig::default());
        let seeds: Vec<NodeInfo> = (1..=20).map(|i| node(&mut rng, i)).collect();
        for s in &seeds {
            assert!(t.add(*s, 0));
        }
        assert!(!t.add(seeds[0], 0), "duplicates are ignored");
        let mut sorted = seeds.clone();
        sorted.sort_by_key(|n| n.id.distance(&target));
        let first: Vec<Next> = std::iter::from_fn(|| t.next_query()).collect();
        assert_eq!(first.len(), 3);
        for (q, n) in first.iter().zip(&sorted) {
            assert_eq!(q.addr, n.addr);
        }
        // A slow query frees its slot; a failed one drops out of the k closest.
        t.on_slow(first[0]);
        assert_eq!(t.next_query().map(|q| q.addr), Some(sorted[3].addr));
        t.on_failure(first[0]);
        // Answer everything without new nodes: the traversal ends on the next 8.
        let mut rounds = 0;
        loop {
            let in_flight: Vec<SocketAddr> = t
                .candidates()
                .iter()
                .filter(|c| matches!(c.state, CandidateState::InFlight { .. }))
                .map(|c| c.node.addr)
                .collect();
            for a in in_flight {
                let id = t
                    .candidates()
                    .iter()
                    .find(|c| c.node.addr == a)
                    .unwrap()
                    .node
                    .id;
                t.on_response(
                    Next {
                        addr: a,
                        id: Some(id),
                    },
                    id,
                    None,
                    &[],
                );
            }
            while t.next_query().is_some() {}
            if t.is_done() {
                break;
            }
            rounds += 1;
            assert!(rounds < 20);
        }
        let closest: Vec<SocketAddr> = t.closest_responded().iter().map(|c| c.node.addr).collect();
        let expected: Vec<SocketAddr> = sorted[1..9].iter().map(|n| n.addr).collect();
        assert_eq!(closest, expected);
    }

    #[test]
    fn routers_are_asked_at_once_and_again_after_a_loss() {
        let mut rng = Rng::from_u64(2);
        let mut t = Traversal::new(NodeId::random(&mut rng), LookupConfig::default());
        let r1: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let r2: SocketAddr = "10.0.0.2:1".parse().unwrap();
        t.add_router(r1);
        t.add_router(r2);
        let asked: Vec<SocketAddr> = std::iter::from_fn(|| t.next_query())
            .map(|n| n.addr)
            .collect();
        assert_eq!(asked, vec![r1, r2]);
        assert!(!t.is_done());
        t.on_failure(Next { addr: r1, id: None });
        assert_eq!(t.next_query().map(|n| n.addr), Some(r1), "asked again");
        let found = node(&mut rng, 7);
        let rid = NodeId::random(&mut rng);
        assert_eq!(
            t.on_response(Next { addr: r2, id: None }, rid, None, &[found]),
            Some(0)
        );
        // The second attempt at r1 is lost too: a third and last one.
        t.on_failure(Next { addr: r1, id: None });
        assert_eq!(t.next_query().map(|n| n.addr), Some(r1));
        // The router that answered is a candidate.
        assert!(
            t.candidates()
                .iter()
                .any(|c| c.node.id == rid && c.state == CandidateState::Responded)
        );
        let next = t.next_query().unwrap();
        assert_eq!(next.addr, found.addr);
        assert_eq!(
            t.candidates()
                .iter()
                .find(|c| c.node.addr == found.addr)
                .unwrap()
                .depth,
            1
        );
    }

    #[test]
    fn a_router_named_by_another_router_is_not_asked_twice_and_the_traversal_ends() {
        let mut rng = Rng::from_u64(4);
        let config = LookupConfig {
            one_per_ip: false,
            ..LookupConfig::default()
        };
        let mut t = Traversal::new(NodeId::random(&mut rng), config);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let (ida, idb) = (NodeId::random(&mut rng), NodeId::random(&mut rng));
        t.add_router(a);
        t.add_router(b);
        while t.next_query().is_some() {}
        // a names b, b names a: each already asked as a router.
        t.on_response(
            Next { addr: a, id: None },
            ida,
            None,
            &[NodeInfo { id: idb, addr: b }],
        );
        t.on_response(
            Next { addr: b, id: None },
            idb,
            None,
            &[NodeInfo { id: ida, addr: a }],
        );
        assert_eq!(t.next_query(), None);
        assert!(t.is_done());
        assert_eq!(t.closest_responded().len(), 2);
    }

    #[test]
    fn an_answer_with_another_id_is_a_failure_and_candidates_are_bounded() {
        let mut rng = Rng::from_u64(3);
        let config = LookupConfig {
            max_candidates: 10,
            ..LookupConfig::default()
        };
        let mut t = Traversal::new(NodeId::random(&mut rng), config);
        for i in 0..100 {
            t.add(node(&mut rng, i), 0);
        }
        assert_eq!(t.candidates().len(), 10);
        let q = t.next_query().unwrap();
        assert_eq!(t.on_response(q, NodeId::random(&mut rng), None, &[]), None);
        assert_eq!(
            t.candidates()
                .iter()
                .find(|c| c.node.addr == q.addr)
                .unwrap()
                .state,
            CandidateState::Failed
        );
    }
}
