//! The routing table (BEP 5): the nodes we know, in buckets of [`K`] by distance from our id.
//!
//! Bucket `i` holds the nodes whose ids share exactly `i` leading bits with ours; the last
//! bucket holds every node sharing at least as many bits, and is the only one that splits:
//! when it is full and a new node falls in it, it becomes two (the nodes sharing one more bit
//! move to the new last bucket). So the table knows many nodes near us and few far away.
//!
//! A node is *good* when it answered a query of ours in the last [`GOOD_FOR`] (15 minutes),
//! or answered once and queried us in that time; *bad* when it failed to answer
//! [`RoutingConfig::max_failures`] queries in a row; *questionable* otherwise. A full bucket
//! takes a new node only in place of a bad one; otherwise the newcomer waits in the bucket's
//! replacement cache, and the table names the bucket's least recently seen questionable node
//! for the caller to ping: when that node fails, the best replacement takes its place.
//!
//! A bucket is refreshed (a lookup for a random id in its range) when it has not changed for
//! [`GOOD_FOR`], and at once when we have no reason to think it knows its range: a bucket
//! left holding fewer than [`K`] nodes after bootstrapping or after a split. A split happens
//! when the last bucket is full, and that bucket may well hold only nodes of the half nearer
//! to us: the half it keeps was then never looked up, and until it is, lookups towards it
//! that start from us (or from nodes that joined like us) never reach it.
//!
//! Only nodes that answered us enter the table. At most one node per IP address
//! ([`IpLimit::PerAddress`], the default; libtorrent keeps one per /24 and /64) unless relaxed
//! for tests on one machine ([`IpLimit::None`]).

use std::net::SocketAddr;

use super::krpc::NodeInfo;
use super::node_id::{NodeId, canonical};
use crate::rng::Rng;
use crate::time::{Duration, Instant};

/// Nodes per bucket (BEP 5).
pub const K: usize = 8;
/// How long an answer keeps a node good, and a bucket fresh.
pub const GOOD_FOR: Duration = Duration::from_secs(15 * 60);
/// Most buckets: one per bit of the id.
pub const MAX_BUCKETS: usize = 160;

/// How many nodes may share an IP address in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpLimit {
    /// One node per IP address: a host cannot fill buckets with many ports or ids.
    PerAddress,
    /// No limit (many nodes on 127.0.0.1 in tests).
    None,
}

/// Settings of a [`RoutingTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Nodes per bucket.
    pub k: usize,
    /// Nodes waiting per bucket in the replacement cache.
    pub replacements: usize,
    /// Failed queries in a row that make a node bad.
    pub max_failures: u8,
    /// Nodes per IP address.
    pub ip_limit: IpLimit,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            k: K,
            replacements: K,
            max_failures: 2,
            ip_limit: IpLimit::PerAddress,
        }
    }
}

/// A node's standing, by the BEP's 15-minute rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Answered recently.
    Good,
    /// Not heard from for a while: worth a ping before relying on it.
    Questionable,
    /// Failed to answer several times in a row: replaced by the next newcomer.
    Bad,
}

/// A node in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Its id.
    pub id: NodeId,
    /// Its UDP address.
    pub addr: SocketAddr,
    /// When it last answered one of our queries.
    pub last_response: Instant,
    /// When it last queried us.
    pub last_query: Option<Instant>,
    /// Queries it failed to answer since its last answer.
    pub failures: u8,
}

impl Node {
    fn new(id: NodeId, addr: SocketAddr, now: Instant) -> Node {
        Node {
            id,
            addr,
            last_response: now,
            last_query: None,
            failures: 0,
        }
    }

    /// Its standing at `now`.
    pub fn status(&self, now: Instant, max_failures: u8) -> Status {
        if self.failures >= max_failures {
            return Status::Bad;
        }
        let recent = |t: Instant| now.saturating_duration_since(t) < GOOD_FOR;
        if self.failures == 0 && (recent(self.last_response) || self.last_query.is_some_and(recent))
        {
            Status::Good
        } else {
            Status::Questionable
        }
    }

    /// When we last heard from it at all.
    pub fn last_seen(&self) -> Instant {
        self.last_query
            .map_or(self.last_response, |q| q.max(self.last_response))
    }

    /// Its id and address.
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            id: self.id,
            addr: self.addr,
        }
    }
}

#[derive(Debug, Clone)]
struct Bucket {
    nodes: Vec<Node>,
    /// Nodes that answered while the bucket was full, oldest first.
    replacements: Vec<Node>,
    last_changed: Instant,
    /// To be refreshed at once, whatever `last_changed` says.
    refresh_due: bool,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket {
            nodes: Vec::new(),
            replacements: Vec::new(),
            last_changed: now,
            refresh_due: false,
        }
    }
}

/// What [`RoutingTable::node_responded`] did with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// It was in the table: now seen again.
    Updated,
    /// It entered the table (in a free place, or in place of a bad node).
    Added,
    /// Its bucket is full of nodes that are not bad: it waits in the replacement cache.
    /// `ping` is the bucket's least recently seen questionable node, to ping now: if it fails,
    /// a replacement takes its place.
    Cached {
        /// A questionable node of the full bucket.
        ping: Option<NodeInfo>,
    },
    /// Refused: our own id, a second node on a taken IP address, or a known id at another
    /// address.
    Rejected,
}

/// Nodes by distance from our id.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    id: NodeId,
    config: RoutingConfig,
    buckets: Vec<Bucket>,
}

impl RoutingTable {
    /// An empty table around `id`.
    pub fn new(id: NodeId, config: RoutingConfig, now: Instant) -> RoutingTable {
        RoutingTable {
            id,
            config,
            buckets: vec![Bucket::new(now)],
        }
    }

    /// Our id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Its settings.
    pub fn config(&self) -> RoutingConfig {
        self.config
    }

    /// Nodes in the table (not counting replacement caches).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    /// Whether the table holds no node.
    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(|b| b.nodes.is_empty())
    }

    /// Nodes waiting in replacement caches.
    pub fn replacements(&self) -> usize {
        self.buckets.iter().map(|b| b.replacements.len()).sum()
    }

    /// Number of buckets.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Nodes per bucket, nearest bucket last.
    pub fn bucket_sizes(&self) -> Vec<usize> {
        self.buckets.iter().map(|b| b.nodes.len()).collect()
    }

    /// Every node in the table.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    /// The node with `id`, if in the table.
    pub fn get(&self, id: &NodeId) -> Option<&Node> {
        self.buckets[self.bucket_of(id)]
            .nodes
            .iter()
            .find(|n| n.id == *id)
    }

    /// Good nodes now.
    pub fn good(&self, now: Instant) -> usize {
        self.nodes()
            .filter(|n| n.status(now, self.config.max_failures) == Status::Good)
            .count()
    }

    fn bucket_of(&self, id: &NodeId) -> usize {
        self.id.common_prefix_len(id).min(self.buckets.len() - 1)
    }

    /// Whether a node with `id` at `addr` that answered would enter the table now, or at least
    /// its replacement cache (to decide whether a node that queried us is worth a ping).
    pub fn wants(&self, id: &NodeId, addr: SocketAddr) -> bool {
        if *id == self.id || self.get(id).is_some() {
            return false;
        }
        if self.config.ip_limit == IpLimit::PerAddress {
            let ip = canonical(addr.ip());
            if self.nodes().any(|n| canonical(n.addr.ip()) == ip) {
                return false;
            }
        }
        let b = &self.buckets[self.bucket_of(id)];
        b.nodes.len() < self.config.k
            || self.bucket_of(id) == self.buckets.len() - 1
            || b.replacements.len() < self.config.replacements
    }

    /// A node with `id` at `addr` answered one of our queries.
    pub fn node_responded(&mut self, now: Instant, id: NodeId, addr: SocketAddr) -> Insert {
        if id == self.id {
            return Insert::Rejected;
        }
        let max_failures = self.config.max_failures;
        let b = self.bucket_of(&id);
        if let Some(n) = self.buckets[b].nodes.iter_mut().find(|n| n.id == id) {
            if n.addr == addr {
                n.last_response = now;
                n.failures = 0;
                self.buckets[b].last_changed = now;
                return Insert::Updated;
            }
            if n.status(now, max_failures) != Status::Bad {
                return Insert::Rejected;
            }
            // A bad node's id answering from elsewhere: take the new address, if free.
            let old = n.addr;
            if self.ip_taken(addr, Some(id)) {
                return Insert::Rejected;
            }
            let n = self.buckets[b]
                .nodes
                .iter_mut()
                .find(|n| n.id == id && n.addr == old);
            if let Some(n) = n {
                *n = Node::new(id, addr, now);
            }
            self.buckets[b].last_changed = now;
            return Insert::Updated;
        }
        if self.config.ip_limit == IpLimit::PerAddress {
            let ip = canonical(addr.ip());
            let holder = self
                .nodes()
                .find(|n| canonical(n.addr.ip()) == ip)
                .map(|n| (n.id, n.addr, n.status(now, max_failures)));
            if let Some((old_id, old_addr, status)) = holder {
                // The same address with a new id (a restart), or a bad node: replace it.
                if old_addr == addr || status == Status::Bad {
                    self.remove(&old_id);
                } else {
                    return Insert::Rejected;
                }
            }
        }
        let per_address = self.config.ip_limit == IpLimit::PerAddress;
        for bucket in &mut self.buckets {
            bucket.replacements.retain(|r| {
                r.id != id && !(per_address && canonical(r.addr.ip()) == canonical(addr.ip()))
            });
        }
        let node = Node::new(id, addr, now);
        loop {
            let b = self.bucket_of(&id);
            let last = self.buckets.len() - 1;
            if self.buckets[b].nodes.len() < self.config.k {
                self.buckets[b].nodes.push(node);
                self.buckets[b].last_changed = now;
                return Insert::Added;
            }
            if b == last && self.buckets.len() < MAX_BUCKETS {
                self.split(now);
                continue;
            }
            let bucket = &mut self.buckets[b];
            let worst_bad = bucket
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.status(now, max_failures) == Status::Bad)
                .max_by_key(|(_, n)| n.failures)
                .map(|(i, _)| i);
            if let Some(i) = worst_bad {
                bucket.nodes[i] = node;
                bucket.last_changed = now;
                return Insert::Added;
            }
            if self.config.replacements > 0 {
                if bucket.replacements.len() >= self.config.replacements {
                    bucket.replacements.remove(0);
                }
                bucket.replacements.push(node);
            }
            let ping = bucket
                .nodes
                .iter()
                .filter(|n| n.status(now, max_failures) == Status::Questionable)
                .min_by_key(|n| n.last_seen())
                .map(Node::info);
            return Insert::Cached { ping };
        }
    }

    fn ip_taken(&self, addr: SocketAddr, except: Option<NodeId>) -> bool {
        self.config.ip_limit == IpLimit::PerAddress && {
            let ip = canonical(addr.ip());
            self.nodes()
                .any(|n| Some(n.id) != except && canonical(n.addr.ip()) == ip)
        }
    }

    /// The last bucket becomes two.
    fn split(&mut self, now: Instant) {
        let depth = self.buckets.len() - 1;
        let id = self.id;
        let Some(old) = self.buckets.last_mut() else {
            return;
        };
        let mut near = Bucket::new(now);
        let moves = |n: &Node| id.common_prefix_len(&n.id) > depth;
        near.nodes = old.nodes.iter().copied().filter(moves).collect();
        old.nodes.retain(|n| !moves(n));
        near.replacements = old.replacements.iter().copied().filter(moves).collect();
        old.replacements.retain(|n| !moves(n));
        self.buckets.push(near);
        // Room made on either side is filled from the caches, most recent first.
        let k = self.config.k;
        for b in [depth, depth + 1] {
            let bucket = &mut self.buckets[b];
            while bucket.nodes.len() < k {
                let Some(r) = bucket.replacements.pop() else {
                    break;
                };
                bucket.nodes.push(r);
            }
        }
        // The far side was known only through the nodes that fell in it by chance, as the
        // near side filled the bucket: if that left it sparse, look it up.
        if self.buckets[depth].nodes.len() < k {
            self.buckets[depth].refresh_due = true;
        }
    }

    /// A node queried us: if it is in the table at that address, it counts as seen. Returns
    /// whether it was.
    pub fn node_queried(&mut self, now: Instant, id: &NodeId, addr: SocketAddr) -> bool {
        let b = self.bucket_of(id);
        match self.buckets[b]
            .nodes
            .iter_mut()
            .find(|n| n.id == *id && n.addr == addr)
        {
            Some(n) => {
                n.last_query = Some(now);
                true
            }
            None => false,
        }
    }

    /// A query to the node with `id` at `addr` went unanswered. A node that turns bad is
    /// replaced by the most recent node of the replacement cache, if there is one. A node of
    /// the replacement cache that fails is dropped from it.
    pub fn node_failed(&mut self, now: Instant, id: &NodeId, addr: SocketAddr) {
        let max_failures = self.config.max_failures;
        let b = self.bucket_of(id);
        let bucket = &mut self.buckets[b];
        bucket.replacements.retain(|r| r.id != *id);
        let Some(i) = bucket
            .nodes
            .iter()
            .position(|n| n.id == *id && n.addr == addr)
        else {
            return;
        };
        let n = &mut bucket.nodes[i];
        n.failures = n.failures.saturating_add(1);
        if n.status(now, max_failures) != Status::Bad {
            return;
        }
        let Some(r) = bucket.replacements.pop() else {
            return;
        };
        bucket.nodes.remove(i);
        bucket.last_changed = now;
        let taken = self.ip_taken(r.addr, None);
        if !taken {
            self.buckets[b].nodes.push(r);
        }
    }

    /// Removes the node with `id` (from the table or its replacement cache).
    pub fn remove(&mut self, id: &NodeId) {
        let b = self.bucket_of(id);
        self.buckets[b].nodes.retain(|n| n.id != *id);
        self.buckets[b].replacements.retain(|n| n.id != *id);
    }

    /// Up to `count` nodes closest to `target` that are not bad, closest first.
    pub fn closest(&self, target: &NodeId, count: usize, now: Instant) -> Vec<NodeInfo> {
        let max_failures = self.config.max_failures;
        let mut all: Vec<(super::node_id::Distance, NodeInfo)> = self
            .nodes()
            .filter(|n| n.status(now, max_failures) != Status::Bad)
            .map(|n| (n.id.distance(target), n.info()))
            .collect();
        if all.len() > count {
            all.select_nth_unstable_by(count, |a, b| a.0.cmp(&b.0));
            all.truncate(count);
        }
        all.sort_unstable_by_key(|a| a.0);
        all.into_iter().map(|(_, n)| n).collect()
    }

    /// The least recently seen questionable node, other than those `skip` names (pings
    /// already on their way).
    pub fn questionable(&self, now: Instant, skip: impl Fn(&NodeId) -> bool) -> Option<NodeInfo> {
        let max_failures = self.config.max_failures;
        self.nodes()
            .filter(|n| n.status(now, max_failures) == Status::Questionable && !skip(&n.id))
            .min_by_key(|n| n.last_seen())
            .map(Node::info)
    }

    /// A random target in a bucket due for a refresh (one marked stale first, then the
    /// stalest of those not changed for [`GOOD_FOR`]), marking it as refreshed; `None` when
    /// every bucket is fresh.
    pub fn refresh_target(&mut self, now: Instant, rng: &mut Rng) -> Option<NodeId> {
        let (i, _) = self
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                b.refresh_due || now.saturating_duration_since(b.last_changed) >= GOOD_FOR
            })
            .min_by_key(|(_, b)| (!b.refresh_due, b.last_changed))?;
        self.buckets[i].last_changed = now;
        self.buckets[i].refresh_due = false;
        Some(self.id.random_with_prefix(i, rng))
    }

    /// Marks buckets holding fewer than `k` nodes as stale, so that
    /// [`RoutingTable::refresh_target`] names each of them in turn (after bootstrapping).
    pub fn mark_sparse_buckets_stale(&mut self) {
        let k = self.config.k;
        for b in &mut self.buckets {
            if b.nodes.len() < k {
                b.refresh_due = true;
            }
        }
    }

    /// When the next bucket becomes stale (at or before its last change for a bucket marked
    /// stale: it is due now).
    pub fn next_refresh(&self) -> Instant {
        self.buckets
            .iter()
            .map(|b| {
                if b.refresh_due {
                    b.last_changed
                } else {
                    b.last_changed + GOOD_FOR
                }
            })
            .min()
            .unwrap_or(Instant::FAR_FUTURE)
    }

    /// The same nodes around another id (when our external address, and so our BEP 42 id,
    /// changed).
    pub fn with_id(&self, id: NodeId, now: Instant) -> RoutingTable {
        let mut t = RoutingTable::new(id, self.config, now);
        for n in self.nodes() {
            if t.node_responded(n.last_response, n.id, n.addr) == Insert::Added
                && let Some(m) = t
                    .buckets
                    .iter_mut()
                    .flat_map(|b| b.nodes.iter_mut())
                    .find(|m| m.id == n.id)
            {
                *m = *n;
            }
        }
        t
    }

    /// Checks the table's structure; a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let n = self.buckets.len();
        if n == 0 || n > MAX_BUCKETS {
            return Err(format!("{n} buckets"));
        }
        let mut ids = Vec::new();
        let mut ips = Vec::new();
        for (i, b) in self.buckets.iter().enumerate() {
            if b.nodes.len() > self.config.k {
                return Err(format!("bucket {i} holds {} nodes", b.nodes.len()));
            }
            if b.replacements.len() > self.config.replacements {
                return Err(format!("bucket {i} caches {} nodes", b.replacements.len()));
            }
            for node in b.nodes.iter().chain(&b.replacements) {
                let cpl = self.id.common_prefix_len(&node.id);
                if cpl == 160 {
                    return Err("our own id in the table".into());
                }
                let right = if i + 1 == n { cpl >= i } else { cpl == i };
                if !right {
                    return Err(format!("{} (prefix {cpl}) in bucket {i} of {n}", node.id));
                }
            }
            for node in &b.nodes {
                ids.push(node.id);
                ips.push(canonical(node.addr.ip()));
            }
        }
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err("an id twice in the table".into());
        }
        if self.config.ip_limit == IpLimit::PerAddress {
            ips.sort_unstable();
            if let Some(w) = ips.windows(2).find(|w| w[0] == w[1]) {
                return Err(format!("two nodes at {}", w[0]));
            }
        }
        for b in &self.buckets {
            for r in &b.replacements {
                if ids.binary_search(&r.id).is_ok() {
                    return Err(format!("{} both in the table and a cache", r.id));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(((0x0100_0000 + i).to_be_bytes(), 6881))
    }

    fn id_with_prefix(me: &NodeId, prefix: usize, rng: &mut Rng) -> NodeId {
        me.random_with_prefix(prefix, rng)
    }

    #[test]
    fn buckets_split_where_our_id_falls_and_far_buckets_stay_full() {
        let mut rng = Rng::from_u64(1);
        let me = NodeId::random(&mut rng);
        let t0 = Instant::ZERO;
        let mut t = RoutingTable::new(me, RoutingConfig::default(), t0);
        // 20 nodes in the far half: 8 enter, 12 wait or are dropped, no split below them.
        for i in 0..20 {
            let id = id_with_prefix(&me, 0, &mut rng);
            t.node_responded(t0, id, addr(i));
        }
        // The first split happened once the single bucket was full.
        assert_eq!(t.bucket_sizes()[0], K);
        // 8 nodes at each of several distances make the table split down to them.
        for prefix in 1..6 {
            for j in 0..K as u32 {
                let id = id_with_prefix(&me, prefix, &mut rng);
                assert_eq!(
                    t.node_responded(t0, id, addr(100 * prefix as u32 + j)),
                    Insert::Added
                );
            }
        }
        assert_eq!(t.bucket_sizes()[..6], [K; 6]);
        assert_eq!(t.len(), 6 * K);
        assert_eq!(t.replacements(), K);
        t.check_invariants().unwrap();
        // The nearest come back from closest(), nearest first.
        let near = t.closest(&me, 3, t0);
        assert_eq!(near.len(), 3);
        assert!(me.common_prefix_len(&near[0].id) >= 5);
        assert!(near[0].id.distance(&me) <= near[1].id.distance(&me));
    }

    #[test]
    fn full_buckets_cache_newcomers_and_ping_questionable_nodes() {
        let mut rng = Rng::from_u64(2);
        let me = NodeId([0; 20]);
        let t0 = Instant::ZERO;
        let mut t = RoutingTable::new(me, RoutingConfig::default(), t0);
        // Fill the far bucket after a split has happened.
        let mut far = Vec::new();
        for i in 0..K as u32 {
            let id = id_with_prefix(&me, 0, &mut rng);
            t.node_responded(t0, id, addr(i));
            far.push((id, addr(i)));
        }
        let near = id_with_prefix(&me, 3, &mut rng);
        t.node_responded(t0, near, addr(50));
        assert_eq!(t.bucket_count(), 2);
        // All good: a newcomer is cached, nobody to ping.
        let newcomer = id_with_prefix(&me, 0, &mut rng);
        assert_eq!(
            t.node_responded(t0, newcomer, addr(60)),
            Insert::Cached { ping: None }
        );
        // 16 minutes later they are questionable: the least recently seen is named.
        let t1 = t0 + Duration::from_secs(16 * 60);
        t.node_queried(t1, &far[0].0, far[0].1);
        let other = id_with_prefix(&me, 0, &mut rng);
        let Insert::Cached { ping: Some(p) } = t.node_responded(t1, other, addr(61)) else {
            panic!("no ping")
        };
        assert_ne!(
            p.id, far[0].0,
            "a node that queried us is not the least recently seen"
        );
        // It fails twice: it is replaced by the latest cached node.
        t.node_failed(t1, &p.id, p.addr);
        assert!(t.get(&p.id).is_some());
        t.node_failed(t1, &p.id, p.addr);
        assert!(t.get(&p.id).is_none());
        assert!(t.get(&other).is_some());
        t.check_invariants().unwrap();
    }

    #[test]
    fn one_node_per_address_unless_relaxed() {
        let mut rng = Rng::from_u64(3);
        let me = NodeId::random(&mut rng);
        let t0 = Instant::ZERO;
        let ip_port = |p: u16| SocketAddr::from(([1, 2, 3, 4], p));
        let mut strict = RoutingTable::new(me, RoutingConfig::default(), t0);
        let a = NodeId::random(&mut rng);
        let b = NodeId::random(&mut rng);
        assert_eq!(strict.node_responded(t0, a, ip_port(1)), Insert::Added);
        assert_eq!(strict.node_responded(t0, b, ip_port(2)), Insert::Rejected);
        assert!(!strict.wants(&b, ip_port(2)));
        // The same address with a new id is a restarted node: it replaces the old one.
        assert_eq!(strict.node_responded(t0, b, ip_port(1)), Insert::Added);
        assert!(strict.get(&a).is_none());
        // A known id from another address is refused while the node is not bad.
        assert_eq!(
            strict.node_responded(t0, b, SocketAddr::from(([5, 5, 5, 5], 1))),
            Insert::Rejected
        );

        let relaxed_config = RoutingConfig {
            ip_limit: IpLimit::None,
            ..RoutingConfig::default()
        };
        let mut relaxed = RoutingTable::new(me, relaxed_config, t0);
        for p in 1..=20 {
            relaxed.node_responded(t0, NodeId::random(&mut rng), ip_port(p));
        }
        assert!(relaxed.len() >= K);
        relaxed.check_invariants().unwrap();
    }

    #[test]
    fn stale_buckets_are_refreshed_one_at_a_time() {
        let mut rng = Rng::from_u64(4);
        let me = NodeId::random(&mut rng);
        let t0 = Instant::ZERO;
        let mut t = RoutingTable::new(me, RoutingConfig::default(), t0);
        for i in 0..12 {
            t.node_responded(t0, NodeId::random(&mut rng), addr(i));
        }
        // Buckets that splits left sparse are due at once, one each; then none until stale.
        let mut due = 0;
        while t.refresh_target(t0, &mut rng).is_some() {
            due += 1;
        }
        assert!(due >= 1 && due < t.bucket_count(), "{:?}", t.bucket_sizes());
        assert_eq!(t.next_refresh(), t0 + GOOD_FOR);
        let later = t0 + GOOD_FOR;
        let mut seen = 0;
        while let Some(target) = t.refresh_target(later, &mut rng) {
            assert!(me.common_prefix_len(&target) < MAX_BUCKETS);
            seen += 1;
        }
        assert_eq!(seen, t.bucket_count());
        // Sparse buckets can be made stale at once, after a bootstrap.
        assert!(
            t.bucket_sizes().iter().any(|n| *n < K),
            "{:?}",
            t.bucket_sizes()
        );
        t.mark_sparse_buckets_stale();
        assert!(t.refresh_target(later, &mut rng).is_some());
    }

    #[test]
    fn sparse_buckets_are_refreshed_at_once_even_at_the_epoch() {
        let mut rng = Rng::from_u64(6);
        let me = NodeId::random(&mut rng);
        let t0 = Instant::ZERO;
        let mut t = RoutingTable::new(me, RoutingConfig::default(), t0);
        for i in 0..3 {
            t.node_responded(t0, me.random_with_prefix(1, &mut rng), addr(i));
        }
        assert_eq!(t.refresh_target(t0, &mut rng), None);
        // Right after a bootstrap at the driver's epoch (nothing is 15 minutes old yet).
        t.mark_sparse_buckets_stale();
        assert_eq!(t.next_refresh(), t0);
        let target = t.refresh_target(t0, &mut rng).unwrap();
        assert_eq!(me.common_prefix_len(&target), 0);
        assert_eq!(t.refresh_target(t0, &mut rng), None);
        assert_eq!(t.next_refresh(), t0 + GOOD_FOR);
    }

    #[test]
    fn a_split_that_leaves_the_far_bucket_sparse_makes_it_due_for_a_refresh() {
        let mut rng = Rng::from_u64(7);
        let me = NodeId::random(&mut rng);
        let t0 = Instant::ZERO;
        let t1 = t0 + Duration::from_secs(10);
        let mut t = RoutingTable::new(me, RoutingConfig::default(), t0);
        // The one bucket fills with nodes of our half only (as a bootstrap towards our own id
        // finds them): nothing is sparse, nothing to refresh.
        for i in 0..K as u32 {
            let id = me.random_with_prefix(1, &mut rng);
            assert_eq!(t.node_responded(t0, id, addr(i)), Insert::Added);
        }
        t.mark_sparse_buckets_stale();
        assert_eq!(t.refresh_target(t0, &mut rng), None);
        // One more node of our half: the bucket splits, and the far half is left empty. It is
        // due at once, and only it (the split of the next bucket leaves k nodes behind).
        let id = me.random_with_prefix(2, &mut rng);
        assert_eq!(t.node_responded(t1, id, addr(100)), Insert::Added);
        assert_eq!(t.bucket_sizes(), vec![0, K, 1]);
        assert!(t.next_refresh() <= t1);
        let target = t.refresh_target(t1, &mut rng).unwrap();
        assert_eq!(me.common_prefix_len(&target), 0);
        assert_eq!(t.refresh_target(t1, &mut rng), None);
        // A split that leaves k nodes on the far side makes nothing due.
        let mut full = RoutingTable::new(me, RoutingConfig::default(), t0);
        for i in 0..K as u32 {
            full.node_responded(t0, me.random_with_prefix(0, &mut rng), addr(200 + i));
        }
        full.node_responded(t0, me.random_with_prefix(1, &mut rng), addr(300));
        assert_eq!(full.bucket_sizes(), vec![K, 1]);
        assert_eq!(full.refresh_target(t1, &mut rng), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Respond(u16, u8),
        Query(u16),
        Fail(u16),
        Wait(u16),
        Remove(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u16>(), 0u8..30).prop_map(|(n, p)| Op::Respond(n, p)),
            1 => any::<u16>().prop_map(Op::Query),
            2 => any::<u16>().prop_map(Op::Fail),
            1 => (0u16..1200).prop_map(Op::Wait),
            1 => any::<u16>().prop_map(Op::Remove),
        ]
    }

    proptest! {
        #[test]
        fn invariants_hold_under_random_sequences(
            seed: u64,
            strict: bool,
            ops in proptest::collection::vec(op(), 0..400),
        ) {
            let mut rng = Rng::from_u64(seed);
            let me = NodeId::random(&mut rng);
            let config = RoutingConfig {
                ip_limit: if strict { IpLimit::PerAddress } else { IpLimit::None },
                ..RoutingConfig::default()
            };
            let mut t = RoutingTable::new(me, config, Instant::ZERO);
            let mut now = Instant::ZERO;
            // A pool of nodes, each at a fixed prefix length from us; addresses shared by
            // groups of three so that the per-address rule is exercised.
            let mut pool: Vec<(NodeId, SocketAddr)> = Vec::new();
            for i in 0..200u32 {
                let prefix = (i % 24) as usize;
                pool.push((me.random_with_prefix(prefix, &mut rng), addr(i / 3)));
            }
            for op in ops {
                match op {
                    Op::Respond(n, extra) => {
                        let (mut id, a) = pool[usize::from(n) % pool.len()];
                        if extra > 25 {
                            id = me.random_with_prefix(usize::from(extra), &mut rng);
                        }
                        let before = t.len();
                        let r = t.node_responded(now, id, a);
                        if r == Insert::Added {
                            prop_assert!(t.get(&id).is_some());
                            prop_assert!(t.len() >= before);
                        }
                    }
                    Op::Query(n) => {
                        let (id, a) = pool[usize::from(n) % pool.len()];
                        t.node_queried(now, &id, a);
                    }
                    Op::Fail(n) => {
                        let (id, a) = pool[usize::from(n) % pool.len()];
                        t.node_failed(now, &id, a);
                    }
                    Op::Wait(s) => now += Duration::from_secs(u64::from(s)),
                    Op::Remove(n) => {
                        let (id, _) = pool[usize::from(n) % pool.len()];
                        t.remove(&id);
                    }
                }
                if let Err(e) = t.check_invariants() {
                    prop_assert!(false, "{}", e);
                }
                let c = t.closest(&me, K, now);
                prop_assert!(c.len() <= K);
                prop_assert!(c.windows(2).all(|w| w[0].id.distance(&me) <= w[1].id.distance(&me)));
            }
            let moved = t.with_id(NodeId::random(&mut rng), now);
            prop_assert!(moved.check_invariants().is_ok());
        }
    }
}
