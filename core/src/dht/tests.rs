//! Whole DHT nodes wired together in-process: datagrams delivered at once (or dropped), time
//! jumping to the next deadline when nothing is in flight. What the nodes send is decoded and
//! checked on the way.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;

use crate::rng::Rng;

use super::*;

/// Nodes on a lossless network with no latency.
struct Net {
    nodes: Vec<Dht>,
    addrs: Vec<SocketAddr>,
    now: Instant,
    queue: VecDeque<(SocketAddr, SocketAddr, Bytes)>,
    events: Vec<Vec<DhtEvent>>,
    /// Datagrams to these addresses are dropped (nodes that are gone, or never existed).
    dead: Vec<SocketAddr>,
    /// Drop the next datagram sent to this address.
    drop_next_to: Option<SocketAddr>,
    delivered: usize,
}

fn public_addr(i: usize) -> SocketAddr {
    let i = u32::try_from(i).unwrap();
    SocketAddr::from(((0x0200_0000u32 + i * 7).to_be_bytes(), 6881))
}

impl Net {
    fn new() -> Net {
        Net {
            nodes: Vec::new(),
            addrs: Vec::new(),
            now: Instant::ZERO,
            queue: VecDeque::new(),
            events: Vec::new(),
            dead: Vec::new(),
            drop_next_to: None,
            delivered: 0,
        }
    }

    /// Adds a node with a BEP 42 id for its (public) address.
    fn add(&mut self, config: Config, addr: SocketAddr, seed: u64) -> usize {
        let mut rng = Rng::from_u64(seed);
        let id = NodeId::secure(addr.ip(), &mut rng);
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        self.nodes
            .push(Dht::new(config, self.now, s, Some(id), None));
        self.addrs.push(addr);
        self.events.push(Vec::new());
        self.nodes.len() - 1
    }

    fn index(&self, addr: SocketAddr) -> Option<usize> {
        self.addrs.iter().position(|a| *a == addr)
    }

    fn flush(&mut self, i: usize) {
        while let Some((to, bytes)) = self.nodes[i].poll_transmit() {
            // Everything a node sends is a valid KRPC message.
            let m = Message::decode(&bytes).expect("a node sent a malformed message");
            assert!(m.transaction.len() <= krpc::MAX_TRANSACTION_LEN);
            self.queue.push_back((self.addrs[i], to, bytes));
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events[i].push(e);
        }
        self.nodes[i].check_invariants().unwrap();
    }

    /// Delivers until nothing is in flight, then lets time jump to the next deadline, until
    /// `until` or `done` says so.
    fn run(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) {
        let end = self.now + limit;
        for i in 0..self.nodes.len() {
            self.flush(i);
        }
        loop {
            while let Some((from, to, bytes)) = self.queue.pop_front() {
                if self.drop_next_to == Some(to) {
                    self.drop_next_to = None;
                    continue;
                }
                if self.dead.contains(&to) {
                    continue;
                }
                if let Some(j) = self.index(to) {
                    self.delivered += 1;
                    self.nodes[j].handle_datagram(self.now, from, &bytes);
                    self.flush(j);
                }
                if done(self) {
                    return;
                }
            }
            if done(self) {
                return;
            }
            let next = (0..self.nodes.len())
                .filter(|j| !self.dead.contains(&self.addrs[*j]))
                .filter_map(|j| self.nodes[j].poll_timeout())
                .min();
            let Some(next) = next.filter(|t| *t <= end) else {
                return;
            };
            self.now = self.now.max(next);
            for j in 0..self.nodes.len() {
                if self.dead.contains(&self.addrs[j]) {
                    continue;
                }
                if self.nodes[j].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.nodes[j].handle_timeout(self.now);
                    self.flush(j);
                }
            }
        }
    }

    fn lookup_done(&self, i: usize, lookup: LookupId) -> Option<&LookupDone> {
        self.events[i].iter().find_map(|e| match e {
            DhtEvent::LookupDone(d) if d.lookup == lookup => Some(d),
            _ => None,
        })
    }

    fn peers_found(&self, i: usize, lookup: LookupId) -> Vec<SocketAddr> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                DhtEvent::Peers {
                    lookup: l, peers, ..
                } if *l == lookup => Some(peers.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// A network of `n` nodes, each bootstrapped from node 0 as it joins.
    fn build(n: usize, seed: u64, config: &Config) -> Net {
        let mut net = Net::new();
        for i in 0..n {
            let a = net.add(config.clone(), public_addr(i), seed * 1000 + i as u64);
            if i > 0 {
                let router = net.addrs[0];
                net.nodes[a].bootstrap(net.now, &[router]);
                net.run(Duration::from_secs(60), |net| {
                    net.nodes[a].is_bootstrapped()
                });
                assert!(net.nodes[a].is_bootstrapped(), "node {a} did not bootstrap");
            }
        }
        // Let the refreshes after the last joins finish.
        net.run(Duration::from_secs(30), |_| false);
        net
    }
}

/// One datagram to a node, and what it sends back.
fn exchange(
    node: &mut Dht,
    now: Instant,
    from: SocketAddr,
    msg: &Message,
) -> Vec<(SocketAddr, Message)> {
    node.handle_datagram(now, from, &msg.encode());
    let mut out = Vec::new();
    while let Some((to, bytes)) = node.poll_transmit() {
        out.push((to, Message::decode(&bytes).unwrap()));
    }
    out
}

fn query(t: &[u8], q: Query) -> Message {
    Message {
        transaction: t.to_vec(),
        version: None,
        requester: None,
        read_only: false,
        body: Body::Query(q),
    }
}

fn node_with(config: Config, seed: u8) -> Dht {
    Dht::new(config, Instant::ZERO, [seed; 32], None, None)
}

fn response(m: &Message) -> &Response {
    match &m.body {
        Body::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
}

#[test]
fn answers_ping_find_node_get_peers_and_announce_on_the_wire() {
    let mut rng = Rng::from_u64(9);
    let mut dht = node_with(Config::default(), 1);
    let t0 = Instant::ZERO;
    let peer: SocketAddr = "3.4.5.6:7000".parse().unwrap();
    let peer_id = NodeId::secure(peer.ip(), &mut rng);

    let out = exchange(
        &mut dht,
        t0,
        peer,
        &query(b"p1", Query::Ping { id: peer_id }),
    );
    // The answer, and a ping to verify the stranger before it enters the table.
    let reply = out.iter().find(|(_, m)| m.transaction == b"p1").unwrap();
    assert_eq!(reply.0, peer);
    assert_eq!(response(&reply.1).id, dht.id());
    assert_eq!(reply.1.requester, Some(peer), "the ip key of BEP 42");
    assert_eq!(reply.1.version.as_deref(), Some(&VERSION[..]));
    let verify = out.iter().find(|(_, m)| m.transaction != b"p1").unwrap();
    assert!(matches!(verify.1.body, Body::Query(Query::Ping { id }) if id == dht.id()));
    // It answers the verification: now it is in the table.
    let answer = Message {
        transaction: verify.1.transaction.clone(),
        version: None,
        requester: None,
        read_only: false,
        body: Body::Response(Response {
            id: peer_id,
            ..Response::default()
        }),
    };
    exchange(&mut dht, t0, peer, &answer);
    assert_eq!(dht.stats().nodes[0], 1);

    // find_node returns it.
    let out = exchange(
        &mut dht,
        t0,
        "4.4.4.4:1".parse().unwrap(),
        &query(
            b"f1",
            Query::FindNode {
                id: NodeId::random(&mut rng),
                target: peer_id,
                want: None,
            },
        ),
    );
    let r = response(&out[0].1);
    assert_eq!(
        r.nodes,
        vec![NodeInfo {
            id: peer_id,
            addr: peer
        }]
    );

    // get_peers gives a token; announce_peer with it is stored; with another is refused.
    let info_hash = InfoHash([7; 20]);
    let asker: SocketAddr = "5.5.5.5:5555".parse().unwrap();
    let asker_id = NodeId::secure(asker.ip(), &mut rng);
    let out = exchange(
        &mut dht,
        t0,
        asker,
        &query(
            b"g1",
            Query::GetPeers {
                id: asker_id,
                info_hash,
                want: None,
            },
        ),
    );
    let g = out.iter().find(|(_, m)| m.transaction == b"g1").unwrap();
    let token = response(&g.1).token.clone().unwrap();
    assert!(response(&g.1).values.is_empty());
    let bad = exchange(
        &mut dht,
        t0,
        asker,
        &query(
            b"a0",
            Query::AnnouncePeer {
                id: asker_id,
                info_hash,
                port: 1,
                implied_port: false,
                token: b"nope".to_vec(),
            },
        ),
    );
    assert!(matches!(&bad[0].1.body, Body::Error { code: 203, .. }));
    let ok = exchange(
        &mut dht,
        t0,
        asker,
        &query(
            b"a1",
            Query::AnnouncePeer {
                id: asker_id,
                info_hash,
                port: 9,
                implied_port: true,
                token: token.clone(),
            },
        ),
    );
    assert_eq!(response(&ok[0].1).id, dht.id());
    // The token is bound to the address: another host cannot use it.
    let thief = exchange(
        &mut dht,
        t0,
        "6.6.6.6:1".parse().unwrap(),
        &query(
            b"a2",
            Query::AnnouncePeer {
                id: asker_id,
                info_hash,
                port: 9,
                implied_port: false,
                token,
            },
        ),
    );
    assert!(matches!(&thief[0].1.body, Body::Error { code: 203, .. }));
    // implied_port: the source port was stored, not 9.
    let out = exchange(
        &mut dht,
        t0,
        peer,
        &query(
            b"g2",
            Query::GetPeers {
                id: peer_id,
                info_hash,
                want: None,
            },
        ),
    );
    assert_eq!(response(&out[0].1).values, vec![asker]);
    let s = dht.stats();
    assert_eq!((s.announces_accepted, s.announces_refused), (1, 2));
}

#[test]
fn malformed_and_unknown_queries_get_errors() {
    let mut dht = node_with(Config::default(), 2);
    let from: SocketAddr = "8.8.4.4:1".parse().unwrap();
    dht.handle_datagram(
        Instant::ZERO,
        from,
        b"d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:xy1:y1:qe",
    );
    let (_, bytes) = dht.poll_transmit().unwrap();
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(m.transaction, b"xy");
    assert!(matches!(m.body, Body::Error { code: 203, .. }));
    dht.handle_datagram(
        Instant::ZERO,
        from,
        b"d1:ad2:id20:abcdefghij0123456789e1:q3:put1:t2:zz1:y1:qe",
    );
    let (_, bytes) = dht.poll_transmit().unwrap();
    assert!(matches!(
        Message::decode(&bytes).unwrap().body,
        Body::Error { code: 204, .. }
    ));
    // Garbage and stray replies are counted, never answered.
    dht.handle_datagram(Instant::ZERO, from, b"\x00\x01garbage");
    dht.handle_datagram(
        Instant::ZERO,
        from,
        b"d1:rd2:id20:abcdefghij0123456789e1:t2:qq1:y1:re",
    );
    assert!(dht.poll_transmit().is_none());
    let s = dht.stats();
    assert_eq!((s.invalid, s.unmatched), (2, 1));
}

#[test]
fn a_flooding_source_is_answered_at_the_limited_rate() {
    let mut dht = node_with(Config::default(), 3);
    let from: SocketAddr = "9.9.9.9:9".parse().unwrap();
    let id = NodeId([1; 20]);
    let mut answered = 0;
    for i in 0..200u16 {
        let out = exchange(
            &mut dht,
            Instant::ZERO,
            from,
            &query(&i.to_be_bytes(), Query::Ping { id }),
        );
        answered += out
            .iter()
            .filter(|(_, m)| matches!(m.body, Body::Response(_)))
            .count();
    }
    assert_eq!(answered, QueryLimits::default().burst as usize);
    assert_eq!(dht.stats().rate_limited, 200 - answered as u64);
    // Another source is still answered.
    let out = exchange(
        &mut dht,
        Instant::ZERO,
        "9.9.9.8:9".parse().unwrap(),
        &query(b"x", Query::Ping { id }),
    );
    assert!(out.iter().any(|(_, m)| matches!(m.body, Body::Response(_))));
}

#[test]
fn read_only_nodes_answer_nothing_and_say_so_in_their_queries() {
    let config = Config {
        read_only: true,
        ..Config::default()
    };
    let mut dht = node_with(config, 4);
    let out = exchange(
        &mut dht,
        Instant::ZERO,
        "9.9.9.9:9".parse().unwrap(),
        &query(
            b"p",
            Query::Ping {
                id: NodeId([1; 20]),
            },
        ),
    );
    assert!(out.is_empty());
    dht.bootstrap(Instant::ZERO, &["1.1.1.1:1".parse().unwrap()]);
    let (_, bytes) = dht.poll_transmit().unwrap();
    let m = Message::decode(&bytes).unwrap();
    assert!(m.read_only);
    assert!(String::from_utf8_lossy(&bytes).contains("2:roi1e"));

    // A node that gets a query marked read-only answers it but does not keep the querier.
    let mut normal = node_with(Config::default(), 5);
    let mut ro = query(
        b"p",
        Query::Ping {
            id: NodeId::secure("7.7.7.7".parse().unwrap(), &mut Rng::from_u64(1)),
        },
    );
    ro.read_only = true;
    let out = exchange(
        &mut normal,
        Instant::ZERO,
        "7.7.7.7:7".parse().unwrap(),
        &ro,
    );
    assert_eq!(out.len(), 1, "answered, and no verification ping");
}

#[test]
fn bootstrap_survives_a_lost_first_datagram_within_seconds() {
    let mut net = Net::new();
    let config = Config::default();
    for i in 0..30 {
        net.add(config.clone(), public_addr(i), i as u64);
    }
    // Nodes 1.. know node 0; the newcomer knows two routers, one of which is gone, and loses
    // its first datagram to the other.
    for i in 1..30 {
        let r = net.addrs[0];
        net.nodes[i].bootstrap(Instant::ZERO, &[r]);
    }
    net.run(Duration::from_secs(30), |_| false);
    let newcomer = net.add(config, public_addr(100), 100);
    let start = net.now;
    let gone: SocketAddr = "200.1.1.1:1".parse().unwrap();
    net.dead.push(gone);
    net.drop_next_to = Some(net.addrs[0]);
    let r = net.addrs[0];
    net.nodes[newcomer].bootstrap(start, &[gone, r]);
    net.run(Duration::from_secs(120), |net| {
        net.nodes[newcomer].is_bootstrapped()
    });
    assert!(net.nodes[newcomer].is_bootstrapped());
    let took = net.now - start;
    assert!(took <= Duration::from_secs(4), "bootstrap took {took:?}");
    assert!(net.nodes[newcomer].stats().nodes[0] >= 8);
}

#[test]
fn bootstrap_is_retried_while_nobody_answers() {
    let mut dht = node_with(Config::default(), 6);
    let router: SocketAddr = "1.2.3.4:6881".parse().unwrap();
    dht.bootstrap(Instant::ZERO, &[router]);
    let mut sent = Vec::new();
    let mut now = Instant::ZERO;
    while now < Instant::ZERO + Duration::from_secs(60) {
        while let Some((to, _)) = dht.poll_transmit() {
            sent.push((now, to));
        }
        now = dht.poll_timeout().unwrap();
        dht.handle_timeout(now);
    }
    let to_router: Vec<Instant> = sent
        .iter()
        .filter(|(_, to)| *to == router)
        .map(|(t, _)| *t)
        .collect();
    // Three tries 3 s apart, then again after 1 s, 2 s, 4 s... never a gap of minutes.
    assert!(to_router.len() >= 9, "{to_router:?}");
    assert!(
        to_router
            .windows(2)
            .all(|w| w[1] - w[0] <= Duration::from_secs(20))
    );
    assert!(!dht.is_bootstrapped());
}

#[test]
fn get_peers_finds_announced_peers_across_a_network() {
    let config = Config::default();
    let mut net = Net::build(60, 1, &config);
    let info_hash = InfoHash([0xab; 20]);
    let announcer = 17;
    let lid = net.nodes[announcer].announce(net.now, info_hash, Some(51413));
    net.run(Duration::from_secs(60), |net| {
        net.lookup_done(announcer, lid).is_some()
    });
    let done = net.lookup_done(announcer, lid).unwrap().clone();
    assert_eq!(done.announced, 8);
    // The announce went to the 8 nodes closest to the info hash.
    let mut ids: Vec<NodeId> = net
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != announcer)
        .map(|(_, n)| n.id())
        .collect();
    ids.sort_by_key(|id| id.distance(&info_hash.into()));
    let closest: Vec<NodeId> = done.closest.iter().map(|n| n.id).collect();
    assert_eq!(closest, ids[..8]);
    net.run(Duration::from_secs(5), |_| false);
    let holders = net
        .nodes
        .iter()
        .filter(|n| n.store().peers_of(&info_hash) == 1)
        .count();
    assert_eq!(holders, 8);

    let seeker = 42;
    let lid = net.nodes[seeker].get_peers(net.now, info_hash);
    net.run(Duration::from_secs(60), |net| {
        net.lookup_done(seeker, lid).is_some()
    });
    let expected = SocketAddr::new(net.addrs[announcer].ip(), 51413);
    assert_eq!(net.peers_found(seeker, lid), vec![expected]);
    let done = net.lookup_done(seeker, lid).unwrap();
    assert_eq!(done.peers, 1);
    assert!(done.hops_to_peers.is_some_and(|h| h <= 4), "{done:?}");
    assert!(done.queries >= 8 && done.queries < 60, "{done:?}");
}

#[test]
fn implied_port_announces_the_source_port() {
    let mut net = Net::build(20, 2, &Config::default());
    let info_hash = InfoHash([0x11; 20]);
    let lid = net.nodes[3].announce(net.now, info_hash, None);
    net.run(Duration::from_secs(60), |net| {
        net.lookup_done(3, lid).is_some()
    });
    net.run(Duration::from_secs(2), |_| false);
    let lid = net.nodes[9].get_peers(net.now, info_hash);
    net.run(Duration::from_secs(60), |net| {
        net.lookup_done(9, lid).is_some()
    });
    assert_eq!(net.peers_found(9, lid), vec![net.addrs[3]]);
}

#[test]
fn unanswered_queries_time_out_and_make_nodes_bad() {
    let mut net = Net::build(30, 3, &Config::default());
    // Half the network goes away; lookups still end, and the dead nodes turn bad and leave
    // the table as answers from the living replace them.
    for i in 15..30 {
        let a = net.addrs[i];
        net.dead.push(a);
    }
    let target = NodeId([0x55; 20]);
    let lid = net.nodes[0].find_node(net.now, target);
    net.run(Duration::from_secs(120), |net| {
        net.lookup_done(0, lid).is_some()
    });
    let done = net.lookup_done(0, lid).unwrap();
    assert!(
        done.closest
            .iter()
            .all(|n| net.index(n.addr).is_some_and(|i| i < 15))
    );
    assert!(net.nodes[0].stats().timeouts > 0);
}

#[test]
fn external_address_votes_give_a_bep42_id() {
    let mut dht = node_with(Config::default(), 7);
    let before = dht.id();
    let our_ip: IpAddr = "77.66.55.44".parse().unwrap();
    let t0 = Instant::ZERO;
    for i in 0..3u8 {
        let router = SocketAddr::from(([20, 0, 0, i], 6881));
        dht.add_node(t0, router);
        let (_, bytes) = dht.poll_transmit().unwrap();
        let q = Message::decode(&bytes).unwrap();
        let r = Message {
            transaction: q.transaction,
            version: None,
            requester: Some(SocketAddr::new(our_ip, 6881)),
            read_only: false,
            body: Body::Response(Response {
                id: NodeId::secure(router.ip(), &mut Rng::from_u64(u64::from(i))),
                ..Response::default()
            }),
        };
        dht.handle_datagram(t0, router, &r.encode());
    }
    let e = std::iter::from_fn(|| dht.poll_event())
        .find(|e| matches!(e, DhtEvent::ExternalAddress { .. }));
    assert_eq!(
        e,
        Some(DhtEvent::ExternalAddress {
            ip: our_ip,
            id_changed: true
        })
    );
    assert_ne!(dht.id(), before);
    assert!(dht.id().matches_ip(our_ip));
    assert_eq!(dht.external_ip(), Some(our_ip));
    // The table moved to the new id.
    assert_eq!(dht.routing_table(false).unwrap().id(), dht.id());
    assert_eq!(dht.stats().nodes[0], 3);
    dht.check_invariants().unwrap();
}

#[test]
fn nodes_violating_bep42_stay_out_unless_local_or_allowed() {
    let mut rng = Rng::from_u64(5);
    let mut dht = node_with(Config::default(), 8);
    let t0 = Instant::ZERO;
    let addr: SocketAddr = "30.1.2.3:1".parse().unwrap();
    for (id, expect) in [
        (NodeId::random(&mut rng), 0),
        (NodeId::secure(addr.ip(), &mut rng), 1),
    ] {
        dht.add_node(t0, addr);
        let (_, bytes) = dht.poll_transmit().unwrap();
        let q = Message::decode(&bytes).unwrap();
        let r = Message {
            transaction: q.transaction,
            version: None,
            requester: None,
            read_only: false,
            body: Body::Response(Response {
                id,
                ..Response::default()
            }),
        };
        dht.handle_datagram(t0, addr, &r.encode());
        assert_eq!(dht.stats().nodes[0], expect);
    }
    // Loopback nodes are ignored by default, taken with allow_local_addresses.
    let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    for (config, expect) in [(Config::default(), 0), (Config::loopback(), 1)] {
        let mut dht = node_with(config, 9);
        dht.add_node(t0, local);
        let (_, bytes) = dht.poll_transmit().unwrap();
        let q = Message::decode(&bytes).unwrap();
        let r = Message {
            transaction: q.transaction,
            version: None,
            requester: None,
            read_only: false,
            body: Body::Response(Response {
                id: NodeId::random(&mut rng),
                ..Response::default()
            }),
        };
        dht.handle_datagram(t0, local, &r.encode());
        assert_eq!(dht.stats().nodes[0], expect);
    }
}

#[test]
fn replies_only_count_from_the_address_queried() {
    let mut dht = node_with(Config::default(), 10);
    let t0 = Instant::ZERO;
    let node: SocketAddr = "40.1.1.1:1".parse().unwrap();
    dht.add_node(t0, node);
    let (_, bytes) = dht.poll_transmit().unwrap();
    let q = Message::decode(&bytes).unwrap();
    let r = Message {
        transaction: q.transaction,
        version: None,
        requester: None,
        read_only: false,
        body: Body::Response(Response {
            id: NodeId::secure("41.1.1.1".parse().unwrap(), &mut Rng::from_u64(1)),
            ..Response::default()
        }),
    };
    dht.handle_datagram(t0, "41.1.1.1:1".parse().unwrap(), &r.encode());
    assert_eq!(dht.stats().unmatched, 1);
    assert_eq!(dht.stats().nodes[0], 0);
}

#[test]
fn the_routing_table_is_saved_and_used_to_bootstrap_again() {
    let mut net = Net::build(25, 4, &Config::default());
    let saved = net.nodes[5].save();
    let state = SavedState::decode(&saved).unwrap();
    assert_eq!(state.id, Some(net.nodes[5].id()));
    assert_eq!(state.nodes.len(), net.nodes[5].stats().nodes[0]);
    assert!(state.nodes.len() >= 8);
    // A restart with the saved table and no router.
    let again = Dht::new(Config::default(), net.now, [77; 32], None, Some(&saved));
    assert_eq!(again.id(), net.nodes[5].id());
    let addr = net.addrs[5];
    net.nodes[5] = again;
    net.nodes[5].bootstrap(net.now, &[]);
    net.run(Duration::from_secs(30), |net| {
        net.nodes[5].is_bootstrapped()
    });
    assert!(net.nodes[5].is_bootstrapped());
    assert_eq!(net.addrs[5], addr);
    // Damaged state is ignored.
    assert_eq!(SavedState::decode(b"garbage"), None);
    let fresh = Dht::new(
        Config::default(),
        Instant::ZERO,
        [1; 32],
        None,
        Some(b"d5:nodes3:abce"),
    );
    assert_eq!(fresh.stats().nodes[0], 0);
}

#[test]
fn ipv6_nodes_get_their_own_table_and_want_asks_for_both() {
    let config = Config {
        ipv6: true,
        ..Config::default()
    };
    let mut net = Net::new();
    for i in 0..20usize {
        let v6 = SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16 + 1], 6881));
        net.add(config.clone(), v6, 500 + i as u64);
    }
    for i in 1..20 {
        let r = net.addrs[0];
        net.nodes[i].bootstrap(net.now, &[r]);
        net.run(Duration::from_secs(30), |net| {
            net.nodes[i].is_bootstrapped()
        });
    }
    let node = &net.nodes[7];
    assert!(node.stats().nodes[1] >= 8);
    assert_eq!(node.stats().nodes[0], 0);
    let info_hash = InfoHash([3; 20]);
    let lid = net.nodes[2].announce(net.now, info_hash, Some(6000));
    net.run(Duration::from_secs(30), |net| {
        net.lookup_done(2, lid).is_some()
    });
    net.run(Duration::from_secs(2), |_| false);
    let lid = net.nodes[11].get_peers(net.now, info_hash);
    net.run(Duration::from_secs(30), |net| {
        net.lookup_done(11, lid).is_some()
    });
    assert_eq!(
        net.peers_found(11, lid),
        vec![SocketAddr::new(net.addrs[2].ip(), 6000)]
    );

    // A dual-stack node answers `want n4 n6` with nodes and nodes6 (38-byte entries).
    let mut dual = node_with(
        Config {
            ipv6: true,
            ..Config::default()
        },
        11,
    );
    let t0 = Instant::ZERO;
    for (i, addr) in [
        "50.0.0.1:1".parse::<SocketAddr>().unwrap(),
        "[2001:db8::50]:1".parse().unwrap(),
    ]
    .into_iter()
    .enumerate()
    {
        dual.add_node(t0, addr);
        let (_, bytes) = dual.poll_transmit().unwrap();
        let q = Message::decode(&bytes).unwrap();
        let r = Message {
            transaction: q.transaction,
            version: None,
            requester: None,
            read_only: false,
            body: Body::Response(Response {
                id: NodeId::secure(addr.ip(), &mut Rng::from_u64(i as u64)),
                ..Response::default()
            }),
        };
        dual.handle_datagram(t0, addr, &r.encode());
    }
    let asker: SocketAddr = "60.0.0.1:1".parse().unwrap();
    let q = query(
        b"w",
        Query::FindNode {
            id: NodeId([9; 20]),
            target: NodeId([0; 20]),
            want: Some(Want { v4: true, v6: true }),
        },
    );
    let out = exchange(&mut dual, t0, asker, &q);
    let (_, m) = out.iter().find(|(_, m)| m.transaction == b"w").unwrap();
    let r = response(m);
    assert_eq!((r.nodes.len(), r.nodes6.len()), (1, 1));
    // Without want, only the family asked over.
    let q = query(
        b"n",
        Query::FindNode {
            id: NodeId([9; 20]),
            target: NodeId([0; 20]),
            want: None,
        },
    );
    let out = exchange(&mut dual, t0, asker, &q);
    let (_, m) = out.iter().find(|(_, m)| m.transaction == b"n").unwrap();
    assert_eq!((response(m).nodes.len(), response(m).nodes6.len()), (1, 0));
}

/// A `find_node` lookup from node `i`: the k closest nodes it found, and the k closest nodes
/// of the network (but `i`), closest first.
fn lookup_from(net: &mut Net, i: usize, target: NodeId) -> (Vec<NodeId>, Vec<NodeId>) {
    let lid = net.nodes[i].find_node(net.now, target);
    net.run(Duration::from_secs(60), |net| {
        net.lookup_done(i, lid).is_some()
    });
    let done = net.lookup_done(i, lid).expect("the lookup ended");
    let found = done.closest.iter().map(|c| c.id).collect();
    let mut ids: Vec<NodeId> = net
        .nodes
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, d)| d.id())
        .collect();
    ids.sort_by_key(|id| id.distance(&target));
    ids.truncate(routing::K);
    (found, ids)
}

/// A case `a_lookup_finds_the_k_closest_nodes` once found: node 14 bootstrapped with one full
/// bucket of nodes of its own half of the id space, that bucket then split and left the other
/// half (where the target lies) empty, and no refresh looked it up; the nodes that joined
/// after it had the same hole, and the lookup ended on nodes ranked 20 to 27.
#[test]
fn a_lookup_across_the_id_space_from_a_late_joiner_finds_the_k_closest() {
    let mut net = Net::build(50, 668_299, &Config::default());
    let target = NodeId([
        39, 146, 77, 100, 177, 134, 121, 158, 207, 51, 144, 191, 235, 139, 254, 170, 149, 35, 53,
        79,
    ]);
    let from = 14;
    // Every node knows nodes of the half of the id space it is not in.
    for (j, node) in net.nodes.iter().enumerate() {
        let table = node.routing_table(false).unwrap();
        assert!(
            table.bucket_sizes()[0] > 0,
            "node {j}: {:?}",
            table.bucket_sizes()
        );
    }
    assert_ne!(net.nodes[from].id().0[0] >> 7, target.0[0] >> 7);
    let (found, closest) = lookup_from(&mut net, from, target);
    assert_eq!(found, closest);
}

/// A case the property test found: the only nodes that knew the 8th closest node had the
/// querier itself among their 8 closest to the target, so their answers named the querier
/// in its place and the lookup never heard of the 8th. Answers now leave the querier out.
#[test]
fn answers_leave_the_querier_out_so_a_lookup_still_learns_the_kth_closest() {
    let mut net = Net::build(39, 209_838, &Config::default());
    let mut target = [0u8; 20];
    target[0] = 96;
    target[1] = 128;
    let (found, closest) = lookup_from(&mut net, 35, NodeId(target));
    assert_eq!(found, closest);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// On a random static network, a lookup from any node finds exactly the k nodes closest
    /// to a random target.
    #[test]
    fn a_lookup_finds_the_k_closest_nodes(seed in 0u64..1_000_000, n in 20usize..90, from: prop::sample::Index, target: [u8; 20]) {
        let mut net = Net::build(n, seed, &Config::default());
        let (found, closest) = lookup_from(&mut net, from.index(n), NodeId(target));
        prop_assert_eq!(found, closest);
    }

    /// A node fed arbitrary datagrams, replies to its own queries with arbitrary contents,
    /// and arbitrary time steps, never panics and keeps its bounds.
    #[test]
    fn a_node_survives_arbitrary_input(
        steps in proptest::collection::vec((0u8..4, proptest::collection::vec(any::<u8>(), 0..200), 0u64..5000), 1..60)
    ) {
        let mut dht = node_with(Config::default(), 12);
        let mut now = Instant::ZERO;
        dht.bootstrap(now, &["1.2.3.4:1".parse().unwrap()]);
        let mut last_query: Option<(SocketAddr, Vec<u8>)> = None;
        for (kind, bytes, dt) in steps {
            match kind {
                0 => dht.handle_datagram(now, "5.6.7.8:9".parse().unwrap(), &bytes),
                1 => {
                    if let Some((to, t)) = &last_query {
                        let r = Message {
                            transaction: t.clone(),
                            version: None,
                            requester: None,
                            read_only: false,
                            body: Body::Response(Response {
                                id: NodeId::from_slice(bytes.get(..20).unwrap_or(&[0; 20])).unwrap_or_default(),
                                nodes: bytes.chunks_exact(26).filter_map(|c| Some(NodeInfo { id: NodeId::from_slice(&c[..20])?, addr: krpc::compact_addr(&c[20..])? })).collect(),
                                values: bytes.chunks_exact(6).filter_map(krpc::compact_addr).collect(),
                                token: Some(bytes.iter().take(8).copied().collect()),
                                ..Response::default()
                            }),
                        };
                        dht.handle_datagram(now, *to, &r.encode());
                    }
                }
                2 => { dht.get_peers(now, InfoHash([bytes.first().copied().unwrap_or(0); 20])); }
                _ => {
                    now += Duration::from_millis(dt);
                    dht.handle_timeout(now);
                }
            }
            while let Some((to, b)) = dht.poll_transmit() {
                let m = Message::decode(&b).unwrap();
                if matches!(m.body, Body::Query(_)) {
                    last_query = Some((to, m.transaction));
                }
            }
            while dht.poll_event().is_some() {}
            prop_assert!(dht.check_invariants().is_ok(), "{:?}", dht.check_invariants());
            if kind == 3 {
                // Whatever was due is done: the next deadline lies ahead.
                prop_assert!(dht.poll_timeout().is_some_and(|t| t > now));
            }
        }
    }
}

proptest! {
    /// A damaged `dht.dat` is read as nothing or as a state within bounds, never a panic;
    /// what is read survives its own encoding.
    #[test]
    fn saved_state_decodes_any_bytes_within_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Some(state) = SavedState::decode(&bytes) {
            prop_assert!(state.nodes.len() <= MAX_SAVED_NODES && state.nodes6.len() <= MAX_SAVED_NODES);
            prop_assert!(state.nodes.iter().all(|n| n.addr.is_ipv4()));
            prop_assert!(state.nodes6.iter().all(|n| n.addr.is_ipv6()));
            prop_assert_eq!(SavedState::decode(&state.encode()), Some(state));
        }
    }

    /// Any state of IPv4 nodes round-trips through its encoding.
    #[test]
    fn saved_state_round_trips(
        id in any::<[u8; 20]>(),
        nodes in proptest::collection::vec((any::<[u8; 20]>(), any::<[u8; 4]>(), 1u16..), 0..40),
    ) {
        let state = SavedState {
            id: Some(NodeId(id)),
            id6: None,
            nodes: nodes
                .into_iter()
                .map(|(id, ip, port)| NodeInfo { id: NodeId(id), addr: SocketAddr::from((ip, port)) })
                .collect(),
            nodes6: Vec::new(),
        };
        prop_assert_eq!(SavedState::decode(&state.encode()), Some(state));
    }
}
