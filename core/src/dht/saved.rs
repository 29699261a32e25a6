//! The routing table saved between runs: [`SavedState`].

use crate::bencode::{self, DictBuilder, Value};

use super::{MAX_SAVED_NODES, NodeId, NodeInfo, krpc};

/// A routing table saved by [`Dht::save`](super::Dht::save).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedState {
    /// The IPv4 node id.
    pub id: Option<NodeId>,
    /// The IPv6 node id.
    pub id6: Option<NodeId>,
    /// IPv4 nodes.
    pub nodes: Vec<NodeInfo>,
    /// IPv6 nodes.
    pub nodes6: Vec<NodeInfo>,
}

impl SavedState {
    /// Reads a saved state; `None` when the bytes are not one (a damaged file is ignored, not
    /// an error: the node bootstraps from its routers).
    pub fn decode(bytes: &[u8]) -> Option<SavedState> {
        let v = bencode::decode(bytes).ok()?;
        v.as_dict()?;
        let id = |key: &[u8]| {
            v.get(key)
                .and_then(Value::as_bytes)
                .and_then(NodeId::from_slice)
        };
        let nodes = |key: &[u8], len: usize, v6: bool| -> Vec<NodeInfo> {
            v.get(key)
                .and_then(Value::as_bytes)
                .map(|b| {
                    b.chunks_exact(len)
                        .take(MAX_SAVED_NODES)
                        .filter_map(|c| {
                            let addr = krpc::compact_addr(&c[20..])?;
                            (addr.is_ipv6() == v6).then_some(NodeInfo {
                                id: NodeId::from_slice(&c[..20])?,
                                addr,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(SavedState {
            id: id(b"id"),
            id6: id(b"id6"),
            nodes: nodes(b"nodes", 26, false),
            nodes6: nodes(b"nodes6", 38, true),
        })
    }

    /// The bencoded form.
    pub fn encode(&self) -> Vec<u8> {
        let compact = |nodes: &[NodeInfo]| -> Vec<u8> {
            let mut out = Vec::new();
            for n in nodes.iter().take(MAX_SAVED_NODES) {
                out.extend_from_slice(&n.id.0);
                out.extend_from_slice(&krpc::compact_addr_bytes(n.addr));
            }
            out
        };
        let nodes = compact(&self.nodes);
        let nodes6 = compact(&self.nodes6);
        let mut d = DictBuilder::new()
            .insert(b"nodes", Value::Bytes(&nodes))
            .insert(b"nodes6", Value::Bytes(&nodes6));
        if let Some(id) = &self.id {
            d = d.insert(b"id", Value::Bytes(&id.0));
        }
        if let Some(id) = &self.id6 {
            d = d.insert(b"id6", Value::Bytes(&id.0));
        }
        bencode::encode(&d.build())
    }
}
