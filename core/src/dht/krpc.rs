//! KRPC (BEP 5): the DHT's messages, bencoded dictionaries in single UDP datagrams.
//!
//! A message is a query (`y` = `q`: `ping`, `find_node`, `get_peers`, `announce_peer`), a
//! response (`y` = `r`) or an error (`y` = `e`), tied together by the transaction id `t` the
//! querier chose. Responses do not name the query they answer: the querier knows it from the
//! transaction. Extensions read and written here: the requester's address `ip` in replies
//! (BEP 42), `ro` in queries from read-only nodes (BEP 43), `want` and `nodes6` (BEP 32), and
//! 18-byte IPv6 entries in `values`.
//!
//! Decoding goes through [`crate::bencode`], is strict about what it needs and tolerant of
//! what it does not know (unknown keys are ignored, as the BEP asks), and bounded: an id is
//! 20 bytes, a transaction id and a token at most [`MAX_TRANSACTION_LEN`] and
//! [`MAX_TOKEN_LEN`] bytes, compact lists at most [`MAX_NODES`] and [`MAX_VALUES`] entries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use thiserror::Error;

use super::node_id::NodeId;
use crate::bencode::{self, DictBuilder, Value};
use crate::id::InfoHash;

/// Longest transaction id accepted (ours are 2 bytes; libtorrent's too).
pub const MAX_TRANSACTION_LEN: usize = 16;
/// Longest token accepted (libtorrent's are 4 bytes, ours 8, others up to 20).
pub const MAX_TOKEN_LEN: usize = 32;
/// Longest client version string kept.
pub const MAX_VERSION_LEN: usize = 16;
/// Most entries of `nodes` or `nodes6` read from one message (a reply carries 8).
pub const MAX_NODES: usize = 64;
/// Most peers of `values` read from one message.
pub const MAX_VALUES: usize = 256;
/// Most characters of an error's message kept.
pub const MAX_ERROR_CHARS: usize = 200;
/// Longest unknown method name kept (for the error reply).
pub const MAX_METHOD_LEN: usize = 32;

/// Error codes of BEP 5.
pub mod error_code {
    /// Generic error.
    pub const GENERIC: i64 = 201;
    /// Server error.
    pub const SERVER: i64 = 202;
    /// Protocol error: a malformed packet, an invalid argument or a bad token.
    pub const PROTOCOL: i64 = 203;
    /// Method unknown.
    pub const METHOD_UNKNOWN: i64 = 204;
}

/// One KRPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The transaction id (`t`), chosen by the querier and echoed by the reply.
    pub transaction: Vec<u8>,
    /// The sender's client version (`v`), if it gave one.
    pub version: Option<Vec<u8>>,
    /// The address the replying node saw the query come from (`ip`, BEP 42).
    pub requester: Option<SocketAddr>,
    /// The querier is read-only and must not be added to routing tables (`ro`, BEP 43).
    pub read_only: bool,
    /// What the message says.
    pub body: Body,
}

/// The three kinds of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `y` = `q`.
    Query(Query),
    /// `y` = `r`.
    Response(Response),
    /// `y` = `e`: a code and a human-readable message.
    Error {
        /// One of [`error_code`] (or another number).
        code: i64,
        /// Free text.
        message: String,
    },
}

/// Which address families a querier wants nodes of (`want`, BEP 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Want {
    /// `n4`: IPv4 nodes in `nodes`.
    pub v4: bool,
    /// `n6`: IPv6 nodes in `nodes6`.
    pub v6: bool,
}

/// A query: the method and its arguments (`q` and `a`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Is the node there?
    Ping {
        /// The querier's id.
        id: NodeId,
    },
    /// The nodes closest to `target` the queried node knows.
    FindNode {
        /// The querier's id.
        id: NodeId,
        /// The id looked for.
        target: NodeId,
        /// Families wanted (BEP 32); `None`: the family the query came over.
        want: Option<Want>,
    },
    /// Peers of `info_hash`, or else the closest nodes; and a token to announce with.
    GetPeers {
        /// The querier's id.
        id: NodeId,
        /// The torrent.
        info_hash: InfoHash,
        /// Families wanted (BEP 32); `None`: the family the query came over.
        want: Option<Want>,
    },
    /// The querier downloads `info_hash` on `port` (or on the query's source port when
    /// `implied_port`).
    AnnouncePeer {
        /// The querier's id.
        id: NodeId,
        /// The torrent.
        info_hash: InfoHash,
        /// The peer's port, ignored when `implied_port` is set.
        port: u16,
        /// Use the source port of the datagram instead of `port` (behind a NAT).
        implied_port: bool,
        /// The token the queried node gave the querier in a `get_peers` reply.
        token: Vec<u8>,
    },
    /// A method this node does not implement; answered with error 204.
    Unknown {
        /// The querier's id.
        id: NodeId,
        /// The method's name, as sent.
        method: Vec<u8>,
    },
}

impl Query {
    /// The querier's id.
    pub fn id(&self) -> NodeId {
        match self {
            Query::Ping { id }
            | Query::FindNode { id, .. }
            | Query::GetPeers { id, .. }
            | Query::AnnouncePeer { id, .. }
            | Query::Unknown { id, .. } => *id,
        }
    }

    /// The method name (`q`).
    pub fn method(&self) -> &[u8] {
        match self {
            Query::Ping { .. } => b"ping",
            Query::FindNode { .. } => b"find_node",
            Query::GetPeers { .. } => b"get_peers",
            Query::AnnouncePeer { .. } => b"announce_peer",
            Query::Unknown { method, .. } => method,
        }
    }
}

/// A node in a `nodes` (26-byte entries) or `nodes6` (38-byte entries) list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeInfo {
    /// Its id.
    pub id: NodeId,
    /// Its UDP address.
    pub addr: SocketAddr,
}

/// A reply (`r`). Every reply carries the replier's id; the other fields depend on the query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The replier's id.
    pub id: NodeId,
    /// IPv4 nodes (`nodes`).
    pub nodes: Vec<NodeInfo>,
    /// IPv6 nodes (`nodes6`, BEP 32).
    pub nodes6: Vec<NodeInfo>,
    /// Peers of the torrent (`values`): 6-byte IPv4 or 18-byte IPv6 compact entries.
    pub values: Vec<SocketAddr>,
    /// The token to announce with (`get_peers` replies).
    pub token: Option<Vec<u8>>,
}

/// Why a datagram is not a KRPC message we can use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Not bencode, or not a dictionary.
    #[error("not a bencoded dictionary: {0}")]
    NotBencode(String),
    /// A dictionary, but not a valid message. `transaction` is set when the message had a
    /// usable transaction id, and `query` when it was a query: the sender then gets error 203.
    #[error("invalid KRPC message: {reason}")]
    Invalid {
        /// The transaction id, when the message had a usable one.
        transaction: Option<Vec<u8>>,
        /// The message was a query (`y` = `q`).
        query: bool,
        /// What is wrong.
        reason: &'static str,
    },
}

impl Message {
    /// Decodes one datagram.
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        let value = bencode::decode(buf).map_err(|e| DecodeError::NotBencode(e.to_string()))?;
        if value.as_dict().is_none() {
            return Err(DecodeError::NotBencode("not a dictionary".into()));
        }
        let transaction = value
            .get(b"t")
            .and_then(Value::as_bytes)
            .filter(|t| t.len() <= MAX_TRANSACTION_LEN)
            .map(<[u8]>::to_vec);
        let kind = value.get(b"y").and_then(Value::as_bytes);
        let invalid = |reason| DecodeError::Invalid {
            transaction: transaction.clone(),
            query: kind == Some(b"q"),
            reason,
        };
        let Some(t) = transaction.clone() else {
            return Err(invalid("no usable transaction id"));
        };
        let version = value
            .get(b"v")
            .and_then(Value::as_bytes)
            .filter(|v| v.len() <= MAX_VERSION_LEN)
            .map(<[u8]>::to_vec);
        let requester = value
            .get(b"ip")
            .and_then(Value::as_bytes)
            .and_then(compact_addr);
        let read_only = value.get(b"ro").and_then(Value::as_int) == Some(1);
        let body = match kind {
            Some(b"q") => Body::Query(decode_query(&value).map_err(invalid)?),
            Some(b"r") => Body::Response(decode_response(&value).map_err(invalid)?),
            Some(b"e") => decode_error(&value).map_err(invalid)?,
            _ => return Err(invalid("unknown message kind")),
        };
        Ok(Message {
            transaction: t,
            version,
            requester,
            read_only,
            body,
        })
    }

    /// The bencoded datagram.
    pub fn encode(&self) -> Vec<u8> {
        let ip = self.requester.map(compact_addr_bytes);
        let mut d = DictBuilder::new().insert(b"t", Value::Bytes(&self.transaction));
        if let Some(v) = &self.version {
            d = d.insert(b"v", Value::Bytes(v));
        }
        if let Some(ip) = &ip {
            d = d.insert(b"ip", Value::Bytes(ip));
        }
        if self.read_only {
            d = d.insert(b"ro", Value::Int(1));
        }
        // Buffers the values below borrow from.
        let mut nodes = Vec::new();
        let mut nodes6 = Vec::new();
        let mut values = Vec::new();
        match &self.body {
            Body::Query(q) => {
                d = d
                    .insert(b"y", Value::Bytes(b"q"))
                    .insert(b"q", Value::Bytes(q.method()));
                let args = query_args(q);
                d = d.insert(b"a", args);
            }
            Body::Response(r) => {
                for n in &r.nodes {
                    push_node(&mut nodes, n);
                }
                for n in &r.nodes6 {
                    push_node(&mut nodes6, n);
                }
                values.extend(r.values.iter().map(|a| compact_addr_bytes(*a)));
                let mut a = DictBuilder::new().insert(b"id", Value::Bytes(&r.id.0));
                if !r.nodes.is_empty() {
                    a = a.insert(b"nodes", Value::Bytes(&nodes));
                }
                if !r.nodes6.is_empty() {
                    a = a.insert(b"nodes6", Value::Bytes(&nodes6));
                }
                if !values.is_empty() {
                    a = a.insert(
                        b"values",
                        Value::List(values.iter().map(|v| Value::Bytes(v)).collect()),
                    );
                }
                if let Some(t) = &r.token {
                    a = a.insert(b"token", Value::Bytes(t));
                }
                d = d.insert(b"y", Value::Bytes(b"r")).insert(b"r", a.build());
            }
            Body::Error { code, message } => {
                d = d.insert(b"y", Value::Bytes(b"e")).insert(
                    b"e",
                    Value::List(vec![Value::Int(*code), Value::Bytes(message.as_bytes())]),
                );
            }
        }
        bencode::encode(&d.build())
    }
}

fn want_value(want: &Want) -> Value<'static> {
    let mut list = Vec::new();
    if want.v4 {
        list.push(Value::Bytes(b"n4"));
    }
    if want.v6 {
        list.push(Value::Bytes(b"n6"));
    }
    Value::List(list)
}

fn query_args(q: &Query) -> Value<'_> {
    let mut a = DictBuilder::new();
    match q {
        Query::Ping { id } | Query::Unknown { id, .. } => {
            a = a.insert(b"id", Value::Bytes(&id.0));
        }
        Query::FindNode { id, target, want } => {
            a = a
                .insert(b"id", Value::Bytes(&id.0))
                .insert(b"target", Value::Bytes(&target.0));
            if let Some(w) = want {
                a = a.insert(b"want", want_value(w));
            }
        }
        Query::GetPeers {
            id,
            info_hash,
            want,
        } => {
            a = a
                .insert(b"id", Value::Bytes(&id.0))
                .insert(b"info_hash", Value::Bytes(&info_hash.0));
            if let Some(w) = want {
                a = a.insert(b"want", want_value(w));
            }
        }
        Query::AnnouncePeer {
            id,
            info_hash,
            port,
            implied_port,
            token,
        } => {
            a = a
                .insert(b"id", Value::Bytes(&id.0))
                .insert(b"info_hash", Value::Bytes(&info_hash.0))
                .insert(b"port", Value::Int(i64::from(*port)))
                .insert(b"token", Value::Bytes(token));
            if *implied_port {
                a = a.insert(b"implied_port", Value::Int(1));
            }
        }
    }
    a.build()
}

fn push_node(buf: &mut Vec<u8>, n: &NodeInfo) {
    buf.extend_from_slice(&n.id.0);
    buf.extend_from_slice(&compact_addr_bytes(n.addr));
}

fn id_arg(args: &Value<'_>, key: &[u8]) -> Result<NodeId, &'static str> {
    args.get(key)
        .and_then(Value::as_bytes)
        .and_then(NodeId::from_slice)
        .ok_or("missing or malformed 20-byte id argument")
}

fn decode_want(args: &Value<'_>) -> Option<Want> {
    let list = args.get(b"want")?.as_list()?;
    let mut w = Want::default();
    for item in list {
        match item.as_bytes() {
            Some(b"n4") => w.v4 = true,
            Some(b"n6") => w.v6 = true,
            _ => {}
        }
    }
    Some(w)
}

fn decode_query(msg: &Value<'_>) -> Result<Query, &'static str> {
    let method = msg
        .get(b"q")
        .and_then(Value::as_bytes)
        .ok_or("query without a method")?;
    let args = msg.get(b"a").ok_or("query without arguments")?;
    if args.as_dict().is_none() {
        return Err("arguments are not a dictionary");
    }
    let id = id_arg(args, b"id")?;
    Ok(match method {
        b"ping" => Query::Ping { id },
        b"find_node" => Query::FindNode {
            id,
            target: id_arg(args, b"target")?,
            want: decode_want(args),
        },
        b"get_peers" => Query::GetPeers {
            id,
            info_hash: id_arg(args, b"info_hash")?.into(),
            want: decode_want(args),
        },
        b"announce_peer" => {
            let implied_port = args.get(b"implied_port").and_then(Value::as_int) == Some(1);
            let port = args
                .get(b"port")
                .and_then(Value::as_int)
                .ok_or("announce_peer without a port")?;
            let port = u16::try_from(port).map_err(|_| "port out of range")?;
            if port == 0 && !implied_port {
                return Err("announce_peer for port 0");
            }
            let token = args
                .get(b"token")
                .and_then(Value::as_bytes)
                .filter(|t| t.len() <= MAX_TOKEN_LEN)
                .ok_or("missing or over-long token")?;
            Query::AnnouncePeer {
                id,
                info_hash: id_arg(args, b"info_hash")?.into(),
                port,
                implied_port,
                token: token.to_vec(),
            }
        }
        other if other.len() <= MAX_METHOD_LEN => Query::Unknown {
            id,
            method: other.to_vec(),
        },
        _ => return Err("over-long method name"),
    })
}

fn decode_nodes(bytes: Option<&[u8]>, entry: usize) -> Vec<NodeInfo> {
    let Some(bytes) = bytes else {
        return Vec::new();
    };
    bytes
        .chunks_exact(entry)
        .take(MAX_NODES)
        .filter_map(|c| {
            Some(NodeInfo {
                id: NodeId::from_slice(&c[..20])?,
                addr: compact_addr(&c[20..])?,
            })
        })
        .collect()
}

fn decode_response(msg: &Value<'_>) -> Result<Response, &'static str> {
    let r = msg.get(b"r").ok_or("response without r")?;
    if r.as_dict().is_none() {
        return Err("r is not a dictionary");
    }
    let id = id_arg(r, b"id")?;
    let nodes = decode_nodes(r.get(b"nodes").and_then(Value::as_bytes), 26);
    let nodes6 = decode_nodes(r.get(b"nodes6").and_then(Value::as_bytes), 38);
    let values = match r.get(b"values").and_then(Value::as_list) {
        Some(list) => list
            .iter()
            .filter_map(|v| v.as_bytes().and_then(compact_addr))
            .take(MAX_VALUES)
            .collect(),
        None => Vec::new(),
    };
    let token = match r.get(b"token").and_then(Value::as_bytes) {
        Some(t) if t.len() <= MAX_TOKEN_LEN => Some(t.to_vec()),
        Some(_) => return Err("over-long token"),
        None => None,
    };
    Ok(Response {
        id,
        nodes,
        nodes6,
        values,
        token,
    })
}

fn decode_error(msg: &Value<'_>) -> Result<Body, &'static str> {
    let e = msg
        .get(b"e")
        .and_then(Value::as_list)
        .ok_or("error without a list")?;
    let code = e
        .first()
        .and_then(Value::as_int)
        .ok_or("error without a code")?;
    let message = e
        .get(1)
        .and_then(Value::as_bytes)
        .map(|m| {
            String::from_utf8_lossy(m)
                .chars()
                .take(MAX_ERROR_CHARS)
                .collect()
        })
        .unwrap_or_default();
    Ok(Body::Error { code, message })
}

/// A compact address: 4 bytes of IPv4 or 16 of IPv6, then the port, big-endian.
pub fn compact_addr(b: &[u8]) -> Option<SocketAddr> {
    match b.len() {
        6 => Some(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(b[0], b[1], b[2], b[3]),
            u16::from_be_bytes([b[4], b[5]]),
        ))),
        18 => {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[..16]);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                u16::from_be_bytes([b[16], b[17]]),
                0,
                0,
            )))
        }
        _ => None,
    }
}

/// The compact form of `addr` (6 or 18 bytes; an IPv4-mapped IPv6 address as IPv6).
pub fn compact_addr_bytes(addr: SocketAddr) -> Vec<u8> {
    let mut out = match addr.ip() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    out.extend_from_slice(&addr.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 20])
    }

    #[test]
    fn bep5_examples_decode() {
        // The examples of BEP 5, with 20-byte ids.
        let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        let m = Message::decode(ping).unwrap();
        assert_eq!(m.transaction, b"aa");
        assert_eq!(
            m.body,
            Body::Query(Query::Ping {
                id: NodeId(*b"abcdefghij0123456789")
            })
        );
        assert_eq!(m.encode(), ping.to_vec());

        let announce = b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe";
        let m = Message::decode(announce).unwrap();
        assert_eq!(
            m.body,
            Body::Query(Query::AnnouncePeer {
                id: NodeId(*b"abcdefghij0123456789"),
                info_hash: InfoHash(*b"mnopqrstuvwxyz123456"),
                port: 6881,
                implied_port: true,
                token: b"aoeusnth".to_vec(),
            })
        );
        assert_eq!(m.encode(), announce.to_vec());

        let peers = b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re";
        let m = Message::decode(peers).unwrap();
        let Body::Response(r) = &m.body else {
            panic!("not a response")
        };
        assert_eq!(r.token.as_deref(), Some(&b"aoeusnth"[..]));
        assert_eq!(
            r.values,
            vec![
                "97.120.106.101:11893".parse().unwrap(),
                "105.100.104.116:28269".parse().unwrap()
            ]
        );
        assert_eq!(m.encode(), peers.to_vec());

        let err = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee";
        let m = Message::decode(err).unwrap();
        assert_eq!(
            m.body,
            Body::Error {
                code: 201,
                message: "A Generic Error Ocurred".into()
            }
        );
        assert_eq!(m.encode(), err.to_vec());
    }

    #[test]
    fn extensions_round_trip_on_the_wire() {
        let m = Message {
            transaction: vec![1, 2],
            version: Some(b"TS01".to_vec()),
            requester: Some("[2001:db8::1]:6881".parse().unwrap()),
            read_only: true,
            body: Body::Query(Query::FindNode {
                id: id(1),
                target: id(2),
                want: Some(Want { v4: true, v6: true }),
            }),
        };
        let bytes = m.encode();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("4:wantl2:n42:n6e"), "{text}");
        assert!(text.contains("2:roi1e"), "{text}");
        assert!(text.contains("2:ip18:"), "{text}");
        assert_eq!(Message::decode(&bytes).unwrap(), m);

        let r = Message {
            transaction: vec![9],
            version: None,
            requester: Some("1.2.3.4:5".parse().unwrap()),
            read_only: false,
            body: Body::Response(Response {
                id: id(3),
                nodes: vec![NodeInfo {
                    id: id(4),
                    addr: "5.6.7.8:9".parse().unwrap(),
                }],
                nodes6: vec![NodeInfo {
                    id: id(5),
                    addr: "[::2]:10".parse().unwrap(),
                }],
                values: vec!["[::3]:11".parse().unwrap(), "7.7.7.7:12".parse().unwrap()],
                token: Some(vec![1, 2, 3, 4]),
            }),
        };
        let bytes = r.encode();
        // 26-byte and 38-byte entries, 18- and 6-byte values.
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("5:nodes26:"), "{text}");
        assert!(text.contains("6:nodes638:"), "{text}");
        assert!(text.contains("6:valuesl18:"), "{text}");
        assert_eq!(Message::decode(&bytes).unwrap(), r);
    }

    #[test]
    fn malformed_queries_keep_their_transaction_for_the_error_reply() {
        let no_target = b"d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:xy1:y1:qe";
        assert_eq!(
            Message::decode(no_target),
            Err(DecodeError::Invalid {
                transaction: Some(b"xy".to_vec()),
                query: true,
                reason: "missing or malformed 20-byte id argument",
            })
        );
        let unknown = b"d1:ad2:id20:abcdefghij0123456789e1:q3:get1:t2:xy1:y1:qe";
        let m = Message::decode(unknown).unwrap();
        assert!(
            matches!(m.body, Body::Query(Query::Unknown { ref method, .. }) if method == b"get")
        );
        assert!(matches!(
            Message::decode(b"d1:t2:xy1:y1:ze"),
            Err(DecodeError::Invalid { query: false, .. })
        ));
        assert!(matches!(
            Message::decode(b"li1ee"),
            Err(DecodeError::NotBencode(_))
        ));
        let port_zero = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti0e5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe";
        assert!(Message::decode(port_zero).is_err());
    }

    fn arb_id() -> impl Strategy<Value = NodeId> {
        any::<[u8; 20]>().prop_map(NodeId)
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::from((Ipv6Addr::from(ip), p))),
        ]
    }

    fn arb_v4() -> impl Strategy<Value = SocketAddr> {
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p)))
    }

    fn arb_v6() -> impl Strategy<Value = SocketAddr> {
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, p)| SocketAddr::from((Ipv6Addr::from(ip), p)))
    }

    fn arb_want() -> impl Strategy<Value = Option<Want>> {
        proptest::option::of((any::<bool>(), any::<bool>()).prop_map(|(v4, v6)| Want { v4, v6 }))
    }

    fn arb_query() -> impl Strategy<Value = Query> {
        prop_oneof![
            arb_id().prop_map(|id| Query::Ping { id }),
            (arb_id(), arb_id(), arb_want()).prop_map(|(id, target, want)| Query::FindNode {
                id,
                target,
                want
            }),
            (arb_id(), arb_id(), arb_want()).prop_map(|(id, h, want)| Query::GetPeers {
                id,
                info_hash: h.into(),
                want
            }),
            (
                arb_id(),
                arb_id(),
                1u16..,
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..=MAX_TOKEN_LEN)
            )
                .prop_map(|(id, h, port, implied_port, token)| Query::AnnouncePeer {
                    id,
                    info_hash: h.into(),
                    port,
                    implied_port,
                    token
                }),
            (arb_id(), "[a-z_]{1,16}").prop_filter_map("a known method", |(id, m)| {
                (!["ping", "find_node", "get_peers", "announce_peer"].contains(&m.as_str())).then(
                    || Query::Unknown {
                        id,
                        method: m.into_bytes(),
                    },
                )
            }),
        ]
    }

    fn arb_nodes(addr: BoxedStrategy<SocketAddr>) -> impl Strategy<Value = Vec<NodeInfo>> {
        proptest::collection::vec(
            (arb_id(), addr).prop_map(|(id, addr)| NodeInfo { id, addr }),
            0..10,
        )
    }

    fn arb_body() -> impl Strategy<Value = Body> {
        prop_oneof![
            arb_query().prop_map(Body::Query),
            (
                arb_id(),
                arb_nodes(arb_v4().boxed()),
                arb_nodes(arb_v6().boxed()),
                proptest::collection::vec(arb_addr(), 0..20),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=MAX_TOKEN_LEN)),
            )
                .prop_map(|(id, nodes, nodes6, values, token)| Body::Response(
                    Response {
                        id,
                        nodes,
                        nodes6,
                        values,
                        token
                    }
                )),
            (any::<i64>(), "[ -~]{0,40}").prop_map(|(code, message)| Body::Error { code, message }),
        ]
    }

    prop_compose! {
        fn arb_message()(
            transaction in proptest::collection::vec(any::<u8>(), 0..=MAX_TRANSACTION_LEN),
            version in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=MAX_VERSION_LEN)),
            requester in proptest::option::of(arb_addr()),
            read_only: bool,
            body in arb_body(),
        ) -> Message {
            Message { transaction, version, requester, read_only, body }
        }
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(m in arb_message()) {
            let bytes = m.encode();
            let back = Message::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &m);
            prop_assert_eq!(back.encode(), bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(m in arb_message(), pos: prop::sample::Index, byte: u8) {
            let mut bytes = m.encode();
            let i = pos.index(bytes.len());
            bytes[i] = byte;
            if let Ok(back) = Message::decode(&bytes) {
                // Whatever decodes re-encodes and decodes the same.
                prop_assert_eq!(Message::decode(&back.encode()).unwrap(), back);
            }
        }
    }
}
