//! Hostile DHT nodes. Each runs a real core node while the network forms (so that honest
//! nodes know it), then, from the attack time on, answers queries in its own way:
//!
//! - `garbage`: random bytes, or a reply cut short;
//! - `silent`: nothing at all;
//! - `self-only`: well-formed replies naming only itself (and a token, never peers);
//! - `far-away`: well-formed replies naming eight live nodes far from the target;
//! - `sybil`: a group with ids near one announced info hash (chosen, so not BEP 42 ids for
//!   their addresses) that name only each other, never peers, and swallow announces.

use std::net::SocketAddr;

use bytes::Bytes;
use tessera_core::Rng;
use tessera_core::dht::{Body, Message, NodeId, NodeInfo, Query, Response};

use super::DhtWorld;

/// A kind of hostile node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DhtAdversary {
    /// Answers with garbage.
    Garbage,
    /// Never answers.
    Silent,
    /// Names only itself.
    SelfOnly,
    /// Names nodes far from the target.
    FarAway,
    /// One of a group with ids near one target.
    Sybil,
}

impl DhtAdversary {
    /// Every kind.
    pub const ALL: [DhtAdversary; 5] = [
        DhtAdversary::Garbage,
        DhtAdversary::Silent,
        DhtAdversary::SelfOnly,
        DhtAdversary::FarAway,
        DhtAdversary::Sybil,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DhtAdversary::Garbage => "garbage",
            DhtAdversary::Silent => "silent",
            DhtAdversary::SelfOnly => "self-only",
            DhtAdversary::FarAway => "far-away",
            DhtAdversary::Sybil => "sybil",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<DhtAdversary> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// An id sharing its first 32 bits with `target`.
pub fn sybil_id(target: NodeId, rng: &mut Rng) -> NodeId {
    let mut id = NodeId::random(rng);
    id.0[..4].copy_from_slice(&target.0[..4]);
    id
}

fn target_of(q: &Query) -> Option<NodeId> {
    match q {
        Query::FindNode { target, .. } => Some(*target),
        Query::GetPeers { info_hash, .. } => Some((*info_hash).into()),
        _ => None,
    }
}

/// What a hostile node at `own` with id `id` answers to `bytes`.
pub(super) fn respond(
    kind: DhtAdversary,
    bytes: &[u8],
    own: SocketAddr,
    id: NodeId,
    w: &mut DhtWorld,
) -> Option<Bytes> {
    if kind == DhtAdversary::Silent {
        return None;
    }
    let msg = Message::decode(bytes).ok()?;
    let Body::Query(q) = &msg.body else {
        return None;
    };
    if kind == DhtAdversary::Garbage {
        let len = 1 + w.rng.index(120);
        let mut junk = vec![0u8; len];
        w.rng.fill(&mut junk);
        if w.rng.chance(0.5) {
            // A real reply, cut short.
            let mut reply = reply_to(&msg, id, Vec::new(), Some(junk[..4.min(len)].to_vec()));
            reply.truncate(reply.len() / 2);
            return Some(Bytes::from(reply));
        }
        return Some(Bytes::from(junk));
    }
    let target = target_of(q);
    let token = Some(vec![0xAD; 4]);
    let nodes = match (kind, target) {
        (_, None) => Vec::new(),
        (DhtAdversary::SelfOnly, Some(_)) => vec![NodeInfo { id, addr: own }],
        (DhtAdversary::FarAway, Some(t)) => far_nodes(w, t),
        (DhtAdversary::Sybil, Some(t)) => sybil_nodes(w, t),
        _ => Vec::new(),
    };
    Some(Bytes::from(reply_to(&msg, id, nodes, token)))
}

fn reply_to(msg: &Message, id: NodeId, nodes: Vec<NodeInfo>, token: Option<Vec<u8>>) -> Vec<u8> {
    Message {
        transaction: msg.transaction.clone(),
        version: None,
        requester: None,
        read_only: false,
        body: Body::Response(Response {
            id,
            nodes,
            token,
            ..Response::default()
        }),
    }
    .encode()
}

/// Eight live honest nodes whose ids differ from `target` in the first bit.
fn far_nodes(w: &mut DhtWorld, target: NodeId) -> Vec<NodeInfo> {
    let mut out = Vec::new();
    for _ in 0..64 {
        if out.len() == 8 {
            break;
        }
        let i = w.rng.index(w.slots.len());
        let s = &w.slots[i];
        if s.adversary.is_some() {
            continue;
        }
        if let Some(d) = &s.dht
            && d.id().bit(0) != target.bit(0)
        {
            out.push(NodeInfo {
                id: d.id(),
                addr: s.addr,
            });
        }
    }
    out
}

/// The eight sybils closest to `target`.
fn sybil_nodes(w: &mut DhtWorld, target: NodeId) -> Vec<NodeInfo> {
    let mut all: Vec<NodeInfo> = w
        .slots
        .iter()
        .filter(|s| s.adversary == Some(DhtAdversary::Sybil))
        .filter_map(|s| {
            s.dht.as_ref().map(|d| NodeInfo {
                id: d.id(),
                addr: s.addr,
            })
        })
        .collect();
    all.sort_by_key(|n| n.id.distance(&target));
    all.truncate(8);
    all
}
