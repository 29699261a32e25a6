//! Answering the queries of other nodes, and the votes on our external address that their
//! responses carry.

use std::net::{IpAddr, SocketAddr};

use crate::time::Instant;

use super::krpc::{self, Body, Message, Query, Response, Want};
use super::node_id::{canonical, is_local};
use super::{Dht, DhtEvent, MAX_VOTES, NodeId, NodeInfo, Purpose, VERSION, family};

impl Dht {
    fn reply(&mut self, to: SocketAddr, transaction: Vec<u8>, body: Body) {
        let msg = Message {
            transaction,
            version: Some(VERSION.to_vec()),
            requester: Some(to),
            read_only: false,
            body,
        };
        self.send(to, &msg);
        self.stats.queries_answered += 1;
    }

    pub(super) fn reply_error(
        &mut self,
        to: SocketAddr,
        transaction: Vec<u8>,
        code: i64,
        message: &str,
    ) {
        self.reply(
            to,
            transaction,
            Body::Error {
                code,
                message: message.to_owned(),
            },
        );
    }

    pub(super) fn want(&self) -> Option<Want> {
        (self.tables[0].is_some() && self.tables[1].is_some())
            .then_some(Want { v4: true, v6: true })
    }

    /// The k nodes closest to `target` from the wanted tables, leaving out the querier
    /// itself (it knows where it is; naming it would waste one of the k places, and a
    /// lookup then misses the k-th closest node it can learn only from this answer).
    fn closest_for(
        &self,
        now: Instant,
        target: &NodeId,
        want: Option<Want>,
        f: usize,
        querier: &NodeInfo,
    ) -> (Vec<NodeInfo>, Vec<NodeInfo>) {
        let (w4, w6) = match want {
            Some(w) => (w.v4, w.v6),
            None => (f == 0, f == 1),
        };
        let k = self.config.routing.k;
        let get = |i: usize, wanted: bool| {
            if !wanted {
                return Vec::new();
            }
            let mut nodes = self.tables[i]
                .as_ref()
                .map(|t| t.closest(target, k + 1, now))
                .unwrap_or_default();
            nodes.retain(|n| n.id != querier.id && n.addr != querier.addr);
            nodes.truncate(k);
            nodes
        };
        (get(0, w4), get(1, w6))
    }

    pub(super) fn handle_query(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transaction: Vec<u8>,
        read_only: bool,
        q: Query,
    ) {
        self.stats.queries_received += 1;
        if self.config.read_only {
            return;
        }
        if !self.limiter.allow(now, from.ip()) {
            self.stats.rate_limited += 1;
            return;
        }
        let f = family(&from);
        let qid = q.id();
        let node = NodeInfo {
            id: qid,
            addr: from,
        };
        if !read_only && self.node_ok(&node) {
            let known = self.tables[f]
                .as_mut()
                .is_some_and(|t| t.node_queried(now, &qid, from));
            let wanted = !known && self.tables[f].as_ref().is_some_and(|t| t.wants(&qid, from));
            if wanted {
                let verifying = self
                    .outstanding
                    .values()
                    .filter(|o| o.purpose == Purpose::Verify)
                    .count();
                let pending = self.outstanding.values().any(|o| o.addr == from);
                if verifying < self.config.max_verify_pings && !pending {
                    let id = self.ids[f];
                    self.send_query(now, from, Some(qid), Purpose::Verify, Query::Ping { id });
                }
            }
        }
        let id = self.ids[f];
        let t = transaction;
        let body = match q {
            Query::Ping { .. } => Body::Response(Response {
                id,
                ..Response::default()
            }),
            Query::FindNode { target, want, .. } => {
                let (nodes, nodes6) = self.closest_for(now, &target, want, f, &node);
                Body::Response(Response {
                    id,
                    nodes,
                    nodes6,
                    ..Response::default()
                })
            }
            Query::GetPeers {
                info_hash, want, ..
            } => {
                let (nodes, nodes6) = self.closest_for(now, &info_hash.into(), want, f, &node);
                let values = self.store.get(
                    now,
                    &info_hash,
                    self.config.max_values,
                    |a| family(a) == f,
                    &mut self.rng,
                );
                Body::Response(Response {
                    id,
                    nodes,
                    nodes6,
                    values,
                    token: Some(self.tokens.make(from.ip()).to_vec()),
                })
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
                ..
            } => {
                let port = if implied_port { from.port() } else { port };
                let peer = SocketAddr::new(from.ip(), port);
                if !self.tokens.is_valid(from.ip(), &token) {
                    self.stats.announces_refused += 1;
                    self.reply_error(from, t, krpc::error_code::PROTOCOL, "bad token");
                    return;
                }
                if !self.addr_ok(&peer) {
                    self.reply_error(from, t, krpc::error_code::PROTOCOL, "bad port");
                    return;
                }
                self.store.announce(now, info_hash, peer);
                self.stats.announces_accepted += 1;
                Body::Response(Response {
                    id,
                    ..Response::default()
                })
            }
            Query::Unknown { .. } => {
                self.reply_error(from, t, krpc::error_code::METHOD_UNKNOWN, "method unknown");
                return;
            }
        };
        self.reply(from, t, body);
    }

    pub(super) fn vote(&mut self, now: Instant, voter: IpAddr, seen: IpAddr) {
        let voter = canonical(voter);
        self.votes.retain(|(v, _)| *v != voter);
        if self.votes.len() >= MAX_VOTES {
            self.votes.remove(0);
        }
        self.votes.push((voter, seen));
        let count = |ip: IpAddr| self.votes.iter().filter(|(_, s)| *s == ip).count();
        let n = count(seen);
        if Some(seen) == self.external || n < self.config.external_address_votes {
            return;
        }
        if self.external.is_some_and(|cur| count(cur) >= n) {
            return;
        }
        self.external = Some(seen);
        let f = usize::from(seen.is_ipv6());
        let mut id_changed = false;
        if self.config.secure_id && !is_local(seen) && !self.ids[f].matches_ip(seen) {
            let id = NodeId::secure(seen, &mut self.rng);
            self.ids[f] = id;
            if let Some(t) = self.tables[f].as_mut() {
                *t = t.with_id(id, now);
            }
            id_changed = true;
        }
        self.events.push_back(DhtEvent::ExternalAddress {
            ip: seen,
            id_changed,
        });
    }
}
