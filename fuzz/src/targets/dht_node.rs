//! A DHT node (`dht::Dht`) fed a fuzzer-chosen sequence of datagrams (raw, or well-formed
//! replies to the queries it sent, with fuzzer-chosen ids, nodes, peers and tokens, or
//! errors), requests (bootstrap, lookups, announces) and time jumps. After every step the
//! outputs are drained, as a driver must.
//!
//! Nothing may panic, and these must hold throughout:
//! - every datagram the node sends is a well-formed KRPC message; a reply carries the
//!   transaction id of the query it answers;
//! - the node's invariants hold (routing table, store, limits, bounded state);
//! - after `handle_timeout(now)` the next deadline lies after `now`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use arbitrary::Arbitrary;
use tessera_core::InfoHash;
use tessera_core::dht::krpc::DecodeError;
use tessera_core::dht::{
    Body, Config, Dht, Message, NodeId, NodeInfo, Query, Response, RoutingConfig,
};
use tessera_core::{Duration, Instant};

#[derive(Arbitrary, Debug)]
enum Setup {
    Default,
    Loopback,
    ReadOnly,
    DualStack,
    Tiny,
}

/// A peer address from a small set (some loopback, some IPv6), so that the same peers
/// come back.
fn addr(i: u8) -> SocketAddr {
    let port = 6881 + u16::from(i % 4);
    match i % 8 {
        0..=3 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(20, 0, 0, i / 4 % 16)), port),
        4 | 5 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), port),
        _ => SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(i))),
            port,
        ),
    }
}

#[derive(Arbitrary, Debug)]
struct Node {
    id: [u8; 20],
    addr: u8,
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// Raw bytes from a peer.
    Datagram { from: u8, bytes: Vec<u8> },
    /// A well-formed query from a peer.
    Query {
        from: u8,
        id: [u8; 20],
        kind: u8,
        target: [u8; 20],
        token: Vec<u8>,
        port: u16,
        read_only: bool,
    },
    /// A reply to one of the queries the node sent (by index among those unanswered).
    Reply {
        pick: u8,
        /// Reply from another address than the one asked.
        spoof: Option<u8>,
        id: Option<[u8; 20]>,
        nodes: Vec<Node>,
        values: Vec<u8>,
        token: Option<Vec<u8>>,
        ip: Option<u8>,
        error: bool,
    },
    Bootstrap { routers: Vec<u8> },
    AddNode { addr: u8 },
    FindNode { target: [u8; 20] },
    GetPeers { hash: u8 },
    Announce { hash: u8, port: Option<u16> },
    /// Milliseconds forward, or to the node's own deadline.
    Wait { millis: u32, to_deadline: bool },
    Save,
}

#[derive(Arbitrary, Debug)]
struct Input {
    setup: Setup,
    id: Option<[u8; 20]>,
    state: Option<Vec<u8>>,
    steps: Vec<Step>,
}

/// The target's body: one input, read as an [`Input`] the way libFuzzer's `arbitrary` does.
pub fn run(data: &[u8]) {
    if let Ok(input) = <Input as arbitrary::Arbitrary>::arbitrary_take_rest(arbitrary::Unstructured::new(data)) {
        check(input);
    }
}

/// Checks one structured input.
fn check(input: Input) {
    let mut config = match input.setup {
        Setup::Default => Config::default(),
        Setup::Loopback => Config::loopback(),
        Setup::ReadOnly => Config {
            read_only: true,
            ..Config::loopback()
        },
        Setup::DualStack => Config {
            ipv6: true,
            ..Config::loopback()
        },
        Setup::Tiny => Config {
            routing: RoutingConfig {
                k: 2,
                replacements: 1,
                max_failures: 1,
                ..RoutingConfig::default()
            },
            max_outstanding: 4,
            max_verify_pings: 1,
            ipv6: true,
            ..Config::loopback()
        },
    };
    config.store.max_hashes = config.store.max_hashes.min(8);
    config.store.max_peers_per_hash = config.store.max_peers_per_hash.min(4);
    config.query_limits.max_sources = 4;
    let mut now = Instant::ZERO;
    let mut dht = Dht::new(
        config,
        now,
        [7; 32],
        input.id.map(NodeId),
        input.state.as_deref(),
    );
    // Queries the node sent and not yet answered here: (to, transaction).
    let mut asked: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    for step in input.steps.into_iter().take(256) {
        // Incoming queries by transaction id, to check that replies echo them.
        let mut incoming: Option<(SocketAddr, Vec<u8>)> = None;
        let mut waited = false;
        match step {
            Step::Datagram { from, bytes } => {
                // A raw datagram that is a query (or a malformed one) may be answered too.
                incoming = match Message::decode(&bytes) {
                    Ok(m) if matches!(m.body, Body::Query(_)) => Some((addr(from), m.transaction)),
                    Err(DecodeError::Invalid {
                        transaction: Some(t),
                        query: true,
                        ..
                    }) => Some((addr(from), t)),
                    _ => None,
                };
                dht.handle_datagram(now, addr(from), &bytes);
            }
            Step::Query {
                from,
                id,
                kind,
                target,
                token,
                port,
                read_only,
            } => {
                let id = NodeId(id);
                let q = match kind % 5 {
                    0 => Query::Ping { id },
                    1 => Query::FindNode {
                        id,
                        target: NodeId(target),
                        want: None,
                    },
                    2 => Query::GetPeers {
                        id,
                        info_hash: InfoHash(target),
                        want: None,
                    },
                    3 => Query::AnnouncePeer {
                        id,
                        info_hash: InfoHash(target),
                        port: port.max(1),
                        implied_port: port % 2 == 0,
                        token: token.into_iter().take(32).collect(),
                    },
                    _ => Query::Unknown {
                        id,
                        method: b"get".to_vec(),
                    },
                };
                let t = vec![kind, 0x42];
                let m = Message {
                    transaction: t.clone(),
                    version: None,
                    requester: None,
                    read_only,
                    body: Body::Query(q),
                };
                incoming = Some((addr(from), t));
                dht.handle_datagram(now, addr(from), &m.encode());
            }
            Step::Reply {
                pick,
                spoof,
                id,
                nodes,
                values,
                token,
                ip,
                error,
            } => {
                if !asked.is_empty() {
                    let (to, t) = asked.remove(usize::from(pick) % asked.len());
                    let body = if error {
                        Body::Error {
                            code: 201,
                            message: "no".into(),
                        }
                    } else {
                        let (v4, v6): (Vec<NodeInfo>, Vec<NodeInfo>) = nodes
                            .iter()
                            .take(16)
                            .map(|n| NodeInfo {
                                id: NodeId(n.id),
                                addr: addr(n.addr),
                            })
                            .partition(|n| n.addr.is_ipv4());
                        Body::Response(Response {
                            id: id.map(NodeId).unwrap_or_default(),
                            nodes: v4,
                            nodes6: v6,
                            values: values.iter().take(32).map(|v| addr(*v)).collect(),
                            token: token.map(|t| t.into_iter().take(32).collect()),
                        })
                    };
                    let m = Message {
                        transaction: t,
                        version: None,
                        requester: ip.map(addr),
                        read_only: false,
                        body,
                    };
                    let from = spoof.map(addr).unwrap_or(to);
                    dht.handle_datagram(now, from, &m.encode());
                }
            }
            Step::Bootstrap { routers } => {
                let r: Vec<SocketAddr> = routers.iter().take(8).map(|a| addr(*a)).collect();
                dht.bootstrap(now, &r);
            }
            Step::AddNode { addr: a } => dht.add_node(now, addr(a)),
            Step::FindNode { target } => {
                dht.find_node(now, NodeId(target));
            }
            Step::GetPeers { hash } => {
                dht.get_peers(now, InfoHash([hash; 20]));
            }
            Step::Announce { hash, port } => {
                dht.announce(now, InfoHash([hash; 20]), port);
            }
            Step::Wait {
                millis,
                to_deadline,
            } => {
                now = if to_deadline {
                    dht.poll_timeout().unwrap_or(now).max(now)
                } else {
                    now + Duration::from_millis(u64::from(millis % 3_600_000))
                };
                dht.handle_timeout(now);
                waited = true;
            }
            Step::Save => {
                let saved = dht.save();
                let back = tessera_core::dht::SavedState::decode(&saved);
                assert!(back.is_some(), "our own saved state reads back");
            }
        }
        while let Some((to, bytes)) = dht.poll_transmit() {
            let m = Message::decode(&bytes).expect("the node sent a malformed message");
            match m.body {
                Body::Query(_) => {
                    asked.push((to, m.transaction));
                    if asked.len() > 64 {
                        asked.remove(0);
                    }
                }
                Body::Response(_) | Body::Error { .. } => {
                    let (from, t) = incoming
                        .as_ref()
                        .expect("a reply with no query to answer");
                    assert_eq!(to, *from, "a reply to another address");
                    assert_eq!(&m.transaction, t, "a reply with another transaction id");
                }
            }
        }
        while dht.poll_event().is_some() {}
        if let Err(e) = dht.check_invariants() {
            panic!("invariant broken: {e}");
        }
        if waited {
            assert!(dht.poll_timeout().is_some_and(|t| t > now));
        }
    }
}
