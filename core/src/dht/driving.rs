//! Our outgoing queries and the lookups they serve: sending, matching responses, timeouts,
//! maintenance, bootstrap and driving a lookup to its end.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::time::{Duration, Instant};

use super::lookup::{self, Lookup, LookupId, LookupKind, Traversal};
use super::node_id::canonical;
use super::routing::{self, RoutingTable};
use super::{
    Body, Dht, DhtEvent, LookupDone, Message, NodeId, NodeInfo, Outstanding, Purpose, Query,
    Response, VERSION, canonical_addr, family,
};

impl Dht {
    pub(super) fn deadline(&self, o: &Outstanding) -> Instant {
        if !o.slow && matches!(o.purpose, Purpose::Lookup(_)) {
            o.sent + self.config.lookup.slow_after
        } else {
            o.sent + self.config.query_timeout
        }
    }

    fn new_tid(&mut self) -> Option<u16> {
        for _ in 0..32 {
            let t = self.rng.next_u64() as u16;
            if !self.outstanding.contains_key(&t) {
                return Some(t);
            }
        }
        None
    }

    pub(super) fn send(&mut self, to: SocketAddr, msg: &Message) {
        self.transmits.push_back((to, Bytes::from(msg.encode())));
    }

    pub(super) fn send_query(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        expected: Option<NodeId>,
        purpose: Purpose,
        query: Query,
    ) -> bool {
        if self.outstanding.len() >= self.config.max_outstanding {
            return false;
        }
        let Some(tid) = self.new_tid() else {
            return false;
        };
        let msg = Message {
            transaction: tid.to_be_bytes().to_vec(),
            version: Some(VERSION.to_vec()),
            requester: None,
            read_only: self.config.read_only,
            body: Body::Query(query),
        };
        self.send(addr, &msg);
        self.outstanding.insert(
            tid,
            Outstanding {
                addr,
                expected,
                sent: now,
                slow: false,
                purpose,
            },
        );
        self.stats.queries_sent += 1;
        true
    }

    pub(super) fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transaction: &[u8],
        requester: Option<SocketAddr>,
        response: Option<Response>,
    ) {
        let tid = match <[u8; 2]>::try_from(transaction) {
            Ok(t) => u16::from_be_bytes(t),
            Err(_) => {
                self.stats.unmatched += 1;
                return;
            }
        };
        match self.outstanding.get(&tid) {
            Some(o) if o.addr == from => {}
            _ => {
                self.stats.unmatched += 1;
                return;
            }
        }
        let Some(o) = self.outstanding.remove(&tid) else {
            return;
        };
        self.stats.responses_received += 1;
        let f = family(&from);
        let Some(r) = response else {
            // An error: the node is there but the query failed.
            self.stats.errors_received += 1;
            if let Purpose::Lookup(lid) = o.purpose {
                if let Some(t) = self
                    .lookups
                    .get_mut(&lid)
                    .and_then(|l| l.traversals[f].as_mut())
                {
                    t.on_failure(lookup::Next {
                        addr: from,
                        id: o.expected,
                    });
                }
                self.drive(now, lid);
            }
            return;
        };
        if let Some(seen) = requester {
            self.vote(now, from.ip(), canonical(seen.ip()));
        }
        let node = NodeInfo {
            id: r.id,
            addr: from,
        };
        if let Some(e) = o.expected
            && e != r.id
            && let Some(t) = self.tables[f].as_mut()
        {
            t.remove(&e);
        }
        if self.node_ok(&node) {
            let insert = self.tables[f]
                .as_mut()
                .map(|t| t.node_responded(now, r.id, from));
            if let Some(routing::Insert::Cached { ping: Some(p) }) = insert
                && !self.outstanding.values().any(|o| o.addr == p.addr)
            {
                let id = self.ids[f];
                self.send_query(now, p.addr, Some(p.id), Purpose::Ping, Query::Ping { id });
            }
        }
        if let Purpose::Lookup(lid) = o.purpose {
            self.lookup_response(lid, from, o.expected, r);
            self.drive(now, lid);
        }
    }

    fn lookup_response(
        &mut self,
        lid: LookupId,
        from: SocketAddr,
        expected: Option<NodeId>,
        r: Response,
    ) {
        let f = family(&from);
        let ok4: Vec<NodeInfo> = r.nodes.into_iter().filter(|n| self.node_ok(n)).collect();
        let ok6: Vec<NodeInfo> = r.nodes6.into_iter().filter(|n| self.node_ok(n)).collect();
        let values: Vec<SocketAddr> = r
            .values
            .into_iter()
            .map(canonical_addr)
            .filter(|a| self.addr_ok(a))
            .collect();
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        let (same, other) = if f == 0 { (&ok4, &ok6) } else { (&ok6, &ok4) };
        let Some(depth) = l.traversals[f].as_mut().and_then(|t| {
            let to = lookup::Next {
                addr: from,
                id: expected,
            };
            t.on_response(to, r.id, r.token, same)
        }) else {
            return;
        };
        if let Some(t) = l.traversals[1 - f].as_mut() {
            for n in other {
                t.add(*n, depth.saturating_add(1));
            }
        }
        if matches!(l.kind, LookupKind::GetPeers | LookupKind::Announce { .. }) {
            let fresh = l.add_peers(&values, depth);
            if !fresh.is_empty() && !l.internal {
                let info_hash = l.info_hash();
                self.events.push_back(DhtEvent::Peers {
                    lookup: lid,
                    info_hash,
                    peers: fresh,
                });
            }
        }
    }

    pub(super) fn expire_queries(&mut self, now: Instant) {
        let due: Vec<u16> = self
            .outstanding
            .iter()
            .filter(|(_, o)| self.deadline(o) <= now)
            .map(|(t, _)| *t)
            .collect();
        let mut touched = Vec::new();
        for tid in due {
            let Some(o) = self.outstanding.get_mut(&tid) else {
                continue;
            };
            let f = family(&o.addr);
            let failed = now >= o.sent + self.config.query_timeout;
            if !failed {
                // Slow: frees its lookup slot, keeps waiting.
                o.slow = true;
                if let Purpose::Lookup(lid) = o.purpose {
                    let to = lookup::Next {
                        addr: o.addr,
                        id: o.expected,
                    };
                    if let Some(t) = self
                        .lookups
                        .get_mut(&lid)
                        .and_then(|l| l.traversals[f].as_mut())
                    {
                        t.on_slow(to);
                    }
                    touched.push(lid);
                }
                continue;
            }
            let Some(o) = self.outstanding.remove(&tid) else {
                continue;
            };
            self.stats.timeouts += 1;
            if let (Some(id), Some(t)) = (o.expected, self.tables[f].as_mut()) {
                t.node_failed(now, &id, o.addr);
            }
            if let Purpose::Lookup(lid) = o.purpose {
                if let Some(t) = self
                    .lookups
                    .get_mut(&lid)
                    .and_then(|l| l.traversals[f].as_mut())
                {
                    t.on_failure(lookup::Next {
                        addr: o.addr,
                        id: o.expected,
                    });
                }
                touched.push(lid);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for lid in touched {
            self.drive(now, lid);
        }
    }

    pub(super) fn maintain(&mut self, now: Instant) {
        for f in 0..2 {
            let Some(t) = &self.tables[f] else {
                continue;
            };
            let pending = |id: &NodeId| self.outstanding.values().any(|o| o.expected == Some(*id));
            if let Some(n) = t.questionable(now, pending) {
                let id = self.ids[f];
                self.send_query(now, n.addr, Some(n.id), Purpose::Ping, Query::Ping { id });
            }
        }
        let empty = self.tables.iter().flatten().all(RoutingTable::is_empty);
        let have_seeds = !self.bootstrap.routers.is_empty()
            || self.bootstrap.saved.iter().any(|s| !s.is_empty());
        if empty
            && have_seeds
            && self.bootstrap.lookup.is_none()
            && self.bootstrap.retry_at.is_none()
        {
            self.start_bootstrap(now);
            return;
        }
        if self.bootstrap.done && self.refresh.is_none() {
            self.start_refresh(now);
        }
    }

    fn start_refresh(&mut self, now: Instant) {
        for f in 0..2 {
            let target = match self.tables[f].as_mut() {
                Some(t) => t.refresh_target(now, &mut self.rng),
                None => None,
            };
            if let Some(target) = target {
                let mut families = [false, false];
                families[f] = true;
                let lid = self.start_lookup(now, LookupKind::FindNode, target, true, families);
                if self.lookups.contains_key(&lid) {
                    self.refresh = Some(lid);
                }
                return;
            }
        }
    }

    pub(super) fn start_bootstrap(&mut self, now: Instant) {
        if let Some(old) = self.bootstrap.lookup.take() {
            self.lookups.remove(&old);
        }
        let lid = LookupId(self.next_lookup);
        self.next_lookup += 1;
        let mut traversals: [Option<Traversal>; 2] = [None, None];
        for (f, slot) in traversals.iter_mut().enumerate() {
            let Some(table) = &self.tables[f] else {
                continue;
            };
            let mut t = Traversal::new(self.ids[f], self.config.lookup);
            for n in table.closest(&self.ids[f], self.config.routing.k * 2, now) {
                t.add(n, 0);
            }
            for n in &self.bootstrap.saved[f] {
                if self.node_ok(n) {
                    t.add(*n, 0);
                }
            }
            for r in &self.bootstrap.routers {
                if family(r) == f {
                    t.add_router(*r);
                }
            }
            *slot = Some(t);
        }
        self.lookups.insert(
            lid,
            Lookup::new(
                lid,
                LookupKind::FindNode,
                self.ids[0],
                now,
                traversals,
                true,
            ),
        );
        self.bootstrap.lookup = Some(lid);
        self.drive(now, lid);
    }

    pub(super) fn start_lookup(
        &mut self,
        now: Instant,
        kind: LookupKind,
        target: NodeId,
        internal: bool,
        families: [bool; 2],
    ) -> LookupId {
        let lid = LookupId(self.next_lookup);
        self.next_lookup += 1;
        let mut traversals: [Option<Traversal>; 2] = [None, None];
        for (f, slot) in traversals.iter_mut().enumerate() {
            let Some(table) = &self.tables[f] else {
                continue;
            };
            if !families[f] {
                continue;
            }
            let mut t = Traversal::new(target, self.config.lookup);
            for n in table.closest(&target, self.config.routing.k, now) {
                t.add(n, 0);
            }
            *slot = Some(t);
        }
        self.lookups.insert(
            lid,
            Lookup::new(lid, kind, target, now, traversals, internal),
        );
        self.drive(now, lid);
        lid
    }

    /// Sends what the lookup's traversals want sent; finishes it when they are done.
    fn drive(&mut self, now: Instant, lid: LookupId) {
        loop {
            let Some(l) = self.lookups.get_mut(&lid) else {
                return;
            };
            let mut sends = Vec::new();
            for (f, t) in l.traversals.iter_mut().enumerate() {
                if let Some(t) = t {
                    while let Some(n) = t.next_query() {
                        sends.push((f, n));
                    }
                }
            }
            let (kind, target) = (l.kind, l.target);
            if sends.is_empty() {
                if l.is_done() {
                    self.finish(now, lid);
                }
                return;
            }
            let want = self.want();
            let mut failed = false;
            for (f, n) in sends {
                let id = self.ids[f];
                let q = match kind {
                    LookupKind::FindNode => Query::FindNode { id, target, want },
                    _ => Query::GetPeers {
                        id,
                        info_hash: target.into(),
                        want,
                    },
                };
                if !self.send_query(now, n.addr, n.id, Purpose::Lookup(lid), q) {
                    failed = true;
                    if let Some(t) = self
                        .lookups
                        .get_mut(&lid)
                        .and_then(|l| l.traversals[f].as_mut())
                    {
                        t.on_failure(n);
                    }
                }
            }
            if !failed {
                // Whatever was asked for is sent; the traversal may be done already if it
                // had nothing to ask.
                if self.lookups.get(&lid).is_some_and(Lookup::is_done) {
                    self.finish(now, lid);
                }
                return;
            }
        }
    }

    fn finish(&mut self, now: Instant, lid: LookupId) {
        let Some(l) = self.lookups.remove(&lid) else {
            return;
        };
        let mut announced = 0;
        if let LookupKind::Announce { port } = l.kind {
            for (f, t) in l.traversals.iter().enumerate() {
                let Some(t) = t else {
                    continue;
                };
                for c in t.closest_responded() {
                    let Some(token) = c.token.clone() else {
                        continue;
                    };
                    let q = Query::AnnouncePeer {
                        id: self.ids[f],
                        info_hash: l.info_hash(),
                        port: port.unwrap_or(self.config.implied_port_hint),
                        implied_port: port.is_none(),
                        token,
                    };
                    if self.send_query(now, c.node.addr, Some(c.node.id), Purpose::Announce, q) {
                        announced += 1;
                    }
                }
            }
        }
        if self.bootstrap.lookup == Some(lid) {
            self.bootstrap.lookup = None;
            let nodes: usize = self.tables.iter().flatten().map(RoutingTable::len).sum();
            if nodes > 0 {
                self.bootstrap.attempts = 0;
                if !self.bootstrap.done {
                    self.bootstrap.done = true;
                    self.events.push_back(DhtEvent::Bootstrapped { nodes });
                    for t in self.tables.iter_mut().flatten() {
                        t.mark_sparse_buckets_stale();
                    }
                }
                if self.refresh.is_none() {
                    self.start_refresh(now);
                }
            } else {
                let backoff = 1u64 << self.bootstrap.attempts.min(6);
                self.bootstrap.attempts += 1;
                self.bootstrap.retry_at = Some(now + Duration::from_secs(backoff.min(60)));
            }
            return;
        }
        if self.refresh == Some(lid) {
            self.refresh = None;
            // Refresh the next stale bucket at once (after a bootstrap, the sparse ones).
            self.start_refresh(now);
            return;
        }
        if l.internal {
            return;
        }
        let mut closest = Vec::new();
        for t in l.traversals.iter().flatten() {
            closest.extend(t.closest_responded().iter().map(|c| c.node));
        }
        self.events.push_back(DhtEvent::LookupDone(LookupDone {
            lookup: lid,
            kind: l.kind,
            target: l.target,
            peers: l.peers.len(),
            closest,
            queries: l.queries(),
            responses: l.responses(),
            hops: l.hops_to_closest(),
            hops_to_peers: l.hops_to_peers,
            announced,
            elapsed: now.saturating_duration_since(l.started),
        }));
    }
}
