//! The session's datagram routing, UDP tracker announces and DHT start, driven with scripted
//! datagrams: what the session sends is decoded and checked.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;

use super::{Kind, classify};
use crate::Bitfield;
use crate::api::{Action, Event, Input, Output, Target, TrackerEvent};
use crate::config::{Config, DhtSettings, TorrentOptions};
use crate::dht;
use crate::metainfo::Metainfo;
use crate::session::Session;
use crate::tests::harness::metainfo;
use crate::time::{Duration, Instant};
use crate::tracker::AnnounceEvent;
use crate::tracker::udp::{PROTOCOL_ID, Request, Response, UdpAnnounceResponse};

const PORT: u16 = 6881;

fn at(secs: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(secs)
}

fn torrent(trackers: &[&[&str]], private: bool) -> Arc<Metainfo> {
    let data = vec![7u8; 64 * 1024];
    let mut m = (*metainfo("t", &[("t", data.len() as u64)], 16 * 1024, &data)).clone();
    m.trackers = trackers
        .iter()
        .map(|tier| tier.iter().map(|u| (*u).to_owned()).collect())
        .collect();
    m.info.private = private;
    Arc::new(m)
}

fn session(config: Config) -> Session {
    Session::new(
        Config {
            listen_port: PORT,
            ..config
        },
        Instant::ZERO,
        [9; 32],
    )
}

fn add(s: &mut Session, meta: Arc<Metainfo>) {
    let pieces = meta.info.pieces.len();
    s.add_torrent(
        Instant::ZERO,
        meta,
        TorrentOptions {
            have: Some(Bitfield::new(pieces)),
            ..TorrentOptions::default()
        },
    )
    .expect("added");
}

/// Everything the session wants until its timeout.
fn drain(s: &mut Session) -> (Vec<Action>, Vec<Event>, Instant) {
    let (mut actions, mut events) = (Vec::new(), Vec::new());
    loop {
        match s.poll_output() {
            Output::Action(a) => actions.push(a),
            Output::Event(e) => events.push(e),
            Output::Timeout(t) => return (actions, events, t),
        }
    }
}

fn datagrams(actions: &[Action]) -> Vec<(SocketAddr, Bytes)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendDatagram { to, data } => Some((*to, data.clone())),
            _ => None,
        })
        .collect()
}

fn feed(s: &mut Session, now: Instant, from: SocketAddr, data: Vec<u8>) {
    s.handle_input(Input::Datagram {
        now,
        from,
        data: Bytes::from(data),
    });
}

#[test]
fn datagrams_are_sorted_by_their_first_byte() {
    assert_eq!(classify(b"d1:ad2:id20:"), Kind::Dht);
    for ty in 0..=4u8 {
        assert_eq!(classify(&[ty << 4 | 1, 0, 0, 0]), Kind::Utp, "type {ty}");
    }
    assert_eq!(classify(&[5 << 4 | 1, 0]), Kind::Unknown);
    assert_eq!(classify(&[0, 0, 0, 1, 0, 0, 0, 7]), Kind::Tracker);
    assert_eq!(
        classify(&[0, 0, 0, 1]),
        Kind::Unknown,
        "too short for a tracker"
    );
    assert_eq!(classify(b""), Kind::Unknown);
    assert_eq!(classify(b"e"), Kind::Unknown);
}

#[test]
fn stray_datagrams_are_counted_and_dropped() {
    let mut s = session(Config::default());
    add(&mut s, torrent(&[], false));
    drain(&mut s);
    let from: SocketAddr = "10.0.0.1:1".parse().unwrap();
    for data in [
        vec![],
        vec![0xff; 3],
        b"d1:y1:qe".to_vec(),
        vec![0x41, 0, 0, 0],
        vec![0, 0, 0, 1, 1, 2, 3, 4, 0, 0],
    ] {
        feed(&mut s, at(1), from, data);
        let (actions, events, _) = drain(&mut s);
        assert!(actions.is_empty() && events.is_empty());
    }
    let stats = s.datagram_stats();
    assert_eq!((stats.tracker, stats.dht, stats.utp), (0, 0, 1));
    assert_eq!(stats.dropped, 4);
}

/// The tracker's side of one announce over UDP: answers the connect, checks the announce,
/// answers it with `answer`. Returns the announce request.
fn serve_announce(
    s: &mut Session,
    now: Instant,
    tracker: SocketAddr,
    mut actions: Vec<Action>,
    answer: impl FnOnce(u32) -> Response,
) -> (
    crate::tracker::udp::AnnounceRequest,
    Vec<Action>,
    Vec<Event>,
) {
    let sent = datagrams(&actions);
    assert_eq!(sent.len(), 1, "{actions:?}");
    assert_eq!(sent[0].0, tracker);
    let req = match Request::decode(&sent[0].1) {
        // A connection id from within the last minute is used again.
        Ok(Request::Announce(req)) => req,
        Ok(Request::Connect { transaction }) => {
            let connect = Response::Connect {
                transaction,
                connection_id: 0xc0ffee,
            };
            feed(s, now, tracker, connect.encode(false));
            let (a, _, _) = drain(s);
            actions = a;
            let sent = datagrams(&actions);
            assert_eq!(sent.len(), 1, "{actions:?}");
            let Ok(Request::Announce(req)) = Request::decode(&sent[0].1) else {
                panic!("not an announce: {:?}", sent[0].1);
            };
            req
        }
        other => panic!("not a connect or announce request: {other:?}"),
    };
    assert_eq!(req.connection_id, 0xc0ffee);
    feed(s, now, tracker, answer(req.transaction).encode(false));
    let (actions, events, _) = drain(s);
    (req, actions, events)
}

#[test]
fn a_udp_tracker_is_announced_to_and_its_peers_dialled() {
    let mut s = session(Config::default());
    let tracker: SocketAddr = "10.1.1.1:6969".parse().unwrap();
    let meta = torrent(&[&["udp://10.1.1.1:6969/announce"]], false);
    let info_hash = meta.info_hash;
    add(&mut s, meta);
    let (actions, _, _) = drain(&mut s);
    let peers: Vec<SocketAddr> = vec![
        "10.2.0.1:51413".parse().unwrap(),
        "10.2.0.2:6881".parse().unwrap(),
    ];
    let (req, actions, events) = serve_announce(&mut s, at(0), tracker, actions, |transaction| {
        Response::Announce {
            transaction,
            answer: UdpAnnounceResponse {
                interval: Duration::from_secs(5),
                leechers: 1,
                seeders: 1,
                peers: peers.clone(),
            },
        }
    });
    assert_eq!(req.info_hash, info_hash);
    assert_eq!(req.peer_id, s.peer_id());
    assert_eq!(req.event, AnnounceEvent::Started);
    assert_eq!(req.port, PORT);
    assert_eq!(req.left, 64 * 1024);
    assert_eq!((req.uploaded, req.downloaded), (0, 0));
    assert_eq!(req.num_want, Some(200));
    assert_eq!(req.url_data, b"/announce");
    // The peers are dialled; the interval has the floor.
    let dialled: Vec<SocketAddr> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Connect {
                target: Target::Addr(addr),
                ..
            } => Some(*addr),
            _ => None,
        })
        .collect();
    assert_eq!(dialled, peers);
    assert!(
        events.contains(&Event::Tracker {
            torrent: crate::TorrentId(1),
            url: "udp://10.1.1.1:6969/announce".into(),
            event: TrackerEvent::Announced {
                peers: 2,
                interval: Duration::from_secs(60),
            },
        }),
        "{events:?}"
    );
    assert_eq!(s.datagram_stats().tracker, 2);

    // An answer again, or one from elsewhere, is not taken.
    feed(
        &mut s,
        at(1),
        tracker,
        Response::Connect {
            transaction: req.transaction,
            connection_id: 1,
        }
        .encode(false),
    );
    assert_eq!(s.datagram_stats().dropped, 1);

    // The next announce comes at the floored interval, with the connection id still valid
    // only for a minute: a new connect first.
    let (actions, _, _) = drain(&mut s);
    assert!(datagrams(&actions).is_empty());
    s.handle_input(Input::Timeout { now: at(59) });
    let (actions, _, _) = drain(&mut s);
    assert!(datagrams(&actions).is_empty(), "not before the interval");
    s.handle_input(Input::Timeout { now: at(60) });
    let (actions, _, _) = drain(&mut s);
    let (req, _, _) = serve_announce(&mut s, at(60), tracker, actions, |transaction| {
        Response::Announce {
            transaction,
            answer: UdpAnnounceResponse {
                interval: Duration::from_secs(1800),
                leechers: 0,
                seeders: 0,
                peers: vec![],
            },
        }
    });
    assert_eq!(req.event, AnnounceEvent::None);

    // Shutdown: a `stopped` announce over UDP (with the connection id of 40 s ago), and
    // the stop waits for it.
    s.shutdown(at(100));
    let (actions, events, _) = drain(&mut s);
    assert!(!events.contains(&Event::Stopped));
    let (req, _, events) = serve_announce(&mut s, at(100), tracker, actions, |transaction| {
        Response::Announce {
            transaction,
            answer: UdpAnnounceResponse {
                interval: Duration::from_secs(1800),
                leechers: 0,
                seeders: 0,
                peers: vec![],
            },
        }
    });
    assert_eq!(req.event, AnnounceEvent::Stopped);
    assert_eq!(req.num_want, Some(0));
    assert!(events.contains(&Event::Stopped), "{events:?}");
}

#[test]
fn a_udp_tracker_error_is_shown_like_a_failure_reason() {
    let mut s = session(Config::default());
    let tracker: SocketAddr = "[2001:db8::1]:6969".parse().unwrap();
    add(&mut s, torrent(&[&["udp://[2001:db8::1]:6969"]], false));
    let (actions, _, _) = drain(&mut s);
    let (_, _, events) = serve_announce(&mut s, at(0), tracker, actions, |transaction| {
        Response::Error {
            transaction,
            message: "torrent not registered".into(),
        }
    });
    assert!(
        events.iter().any(|e| matches!(e, Event::Tracker {
        event: TrackerEvent::Failure(m), ..
    } if m == "torrent not registered")),
        "{events:?}"
    );
}

#[test]
fn a_udp_tracker_reached_over_ipv6_gives_ipv6_peers() {
    let mut s = session(Config::default());
    let tracker: SocketAddr = "[2001:db8::1]:6969".parse().unwrap();
    add(&mut s, torrent(&[&["udp://[2001:db8::1]:6969"]], false));
    let (actions, _, _) = drain(&mut s);
    let peer: SocketAddr = "[2001:db8::5]:51413".parse().unwrap();
    let sent = datagrams(&actions);
    let Ok(Request::Connect { transaction }) = Request::decode(&sent[0].1) else {
        panic!("{sent:?}");
    };
    let connect = Response::Connect {
        transaction,
        connection_id: 7,
    };
    feed(&mut s, at(0), tracker, connect.encode(true));
    let sent = datagrams(&drain(&mut s).0);
    let Ok(Request::Announce(req)) = Request::decode(&sent[0].1) else {
        panic!("{sent:?}");
    };
    let answer = Response::Announce {
        transaction: req.transaction,
        answer: UdpAnnounceResponse {
            interval: Duration::from_secs(900),
            leechers: 1,
            seeders: 0,
            peers: vec![peer],
        },
    };
    // 18-byte peer entries, as the BEP says for a tracker reached over IPv6.
    feed(&mut s, at(0), tracker, answer.encode(true));
    let (actions, _, _) = drain(&mut s);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Connect { target: Target::Addr(a), .. } if *a == peer)),
        "{actions:?}"
    );
}

#[test]
fn udp_and_http_trackers_share_a_tier() {
    // One retransmission at most: the UDP tracker gives up after 15 + 30 s.
    let mut s = session(Config {
        udp_tracker_retransmits: 1,
        ..Config::default()
    });
    add(
        &mut s,
        torrent(
            &[&["udp://10.1.1.1:6969", "http://10.1.1.2:8080/announce"]],
            false,
        ),
    );
    let mut tried = Vec::new();
    let mut now = at(0);
    let (mut actions, _, _) = drain(&mut s);
    for _ in 0..2 {
        if let Some(Action::Connect { conn, target }) =
            actions.iter().find(|a| matches!(a, Action::Connect { .. }))
        {
            tried.push(format!("{target:?}"));
            s.handle_input(Input::Closed {
                now,
                conn: *conn,
                error: Some("refused".into()),
            });
        } else {
            let sent = datagrams(&actions);
            assert_eq!(sent.len(), 1, "{actions:?}");
            tried.push(sent[0].0.to_string());
            // Nobody answers: one retransmission after 15 s, a failure after 30 more.
            s.handle_input(Input::Timeout {
                now: now + Duration::from_secs(15),
            });
            let (again, _, _) = drain(&mut s);
            assert_eq!(datagrams(&again).len(), 1, "retransmitted after 15 s");
            now += Duration::from_secs(45);
            s.handle_input(Input::Timeout { now });
        }
        let (a, events, _) = drain(&mut s);
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Tracker {
                    event: TrackerEvent::Error(_),
                    ..
                }
            )),
            "{events:?}"
        );
        actions = a;
        if !actions
            .iter()
            .any(|a| matches!(a, Action::Connect { .. } | Action::SendDatagram { .. }))
        {
            s.handle_input(Input::Timeout { now });
            actions = drain(&mut s).0;
        }
    }
    tried.sort();
    assert_eq!(tried.len(), 2, "{tried:?}");
    assert!(tried[0].starts_with("10.1.1.1:6969"), "{tried:?}");
    assert!(tried[1].contains("10.1.1.2"), "{tried:?}");
}

#[test]
fn a_tracker_host_name_is_resolved_by_the_driver() {
    let mut s = session(Config::default());
    add(
        &mut s,
        torrent(&[&["udp://tracker.example:1337/announce"]], false),
    );
    let (actions, _, _) = drain(&mut s);
    let Some(Action::Resolve { op, host }) = actions
        .iter()
        .find(|a| matches!(a, Action::Resolve { .. }))
        .cloned()
    else {
        panic!("no look-up: {actions:?}");
    };
    assert_eq!(host, "tracker.example");
    assert!(
        datagrams(&actions).is_empty(),
        "nothing sent before the address is known"
    );
    s.handle_input(Input::Resolved {
        now: at(0),
        op,
        result: Ok(vec![IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9))]),
    });
    let (actions, _, _) = drain(&mut s);
    let sent = datagrams(&actions);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "10.9.9.9:1337".parse::<SocketAddr>().unwrap());
    assert!(matches!(
        Request::decode(&sent[0].1),
        Ok(Request::Connect { .. })
    ));
    // The connect request starts with the protocol id.
    assert_eq!(sent[0].1[..8], PROTOCOL_ID.to_be_bytes());
}

fn dht_settings(bootstrap: SocketAddr) -> DhtSettings {
    DhtSettings {
        config: dht::Config::loopback(),
        bootstrap: vec![bootstrap],
        state: None,
    }
}

#[test]
fn the_dht_starts_with_a_public_torrent_only() {
    let node: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    // A private torrent: the DHT never starts, nothing is sent, a KRPC message is dropped.
    let mut s = session(Config::default());
    s.enable_dht(Instant::ZERO, dht_settings(node));
    add(&mut s, torrent(&[], true));
    let (actions, _, _) = drain(&mut s);
    assert!(datagrams(&actions).is_empty(), "{actions:?}");
    feed(
        &mut s,
        at(1),
        node,
        b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe".to_vec(),
    );
    assert!(datagrams(&drain(&mut s).0).is_empty());
    assert_eq!(s.datagram_stats().dht, 0);
    assert!(s.dht_state().is_none());

    // A public one: the node bootstraps from the given node and the lookup starts.
    let mut s = session(Config::default());
    s.enable_dht(Instant::ZERO, dht_settings(node));
    assert!(
        datagrams(&drain(&mut s).0).is_empty(),
        "no torrent yet, no DHT"
    );
    add(&mut s, torrent(&[], false));
    let (actions, _, _) = drain(&mut s);
    let sent = datagrams(&actions);
    assert!(!sent.is_empty());
    for (to, data) in &sent {
        assert_eq!(*to, node);
        let msg = dht::Message::decode(data).expect("KRPC");
        assert!(matches!(msg.body, dht::Body::Query(_)), "{msg:?}");
    }
    // A query from a node is answered.
    feed(
        &mut s,
        at(1),
        "127.0.0.1:7001".parse().unwrap(),
        b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe".to_vec(),
    );
    let sent = datagrams(&drain(&mut s).0);
    assert!(
        sent.iter().any(|(to, d)| to.port() == 7001
            && dht::Message::decode(d).is_ok_and(|m| matches!(m.body, dht::Body::Response(_)))),
        "{sent:?}"
    );
    assert_eq!(s.datagram_stats().dht, 1);
    assert!(s.dht_state().is_some());
}

/// Dials one peer of a public torrent and completes the handshakes (the peer's with the
/// DHT bit); returns our handshake and what followed it.
fn handshake_with_a_peer(dht_on: bool) -> (Session, crate::ConnId, Vec<u8>, Vec<u8>) {
    let mut s = session(Config::default());
    if dht_on {
        s.enable_dht(
            Instant::ZERO,
            dht_settings("127.0.0.1:7000".parse().unwrap()),
        );
    }
    let meta = torrent(&[], false);
    let info_hash = meta.info_hash;
    add(&mut s, meta);
    let peer: SocketAddr = "127.0.0.1:6000".parse().unwrap();
    s.add_peers(Instant::ZERO, crate::TorrentId(1), &[peer], false);
    let (actions, _, _) = drain(&mut s);
    let conn = actions
        .iter()
        .find_map(|a| match a {
            Action::Connect {
                conn,
                target: Target::Addr(a),
            } if *a == peer => Some(*conn),
            _ => None,
        })
        .expect("dialled");
    s.handle_input(Input::Connected { now: at(0), conn });
    let sends = |actions: &[Action]| -> Vec<u8> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { conn: c, data } if *c == conn => Some(data.to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    };
    let ours = sends(&drain(&mut s).0);
    let mut theirs = crate::wire::Handshake {
        reserved: [0; 8],
        info_hash,
        peer_id: crate::PeerId([b'p'; 20]),
    };
    theirs.set(crate::wire::Handshake::DHT);
    s.handle_input(Input::Received {
        now: at(0),
        conn,
        data: Bytes::copy_from_slice(&theirs.encode()),
    });
    let after = sends(&drain(&mut s).0);
    (s, conn, ours, after)
}

#[test]
fn public_torrents_exchange_dht_ports_with_peers() {
    let port_message = [0, 0, 0, 3, 9, (PORT >> 8) as u8, PORT as u8];
    // Off (the simulator, `--no-dht`): no DHT bit, no `port` message.
    let (_, _, ours, after) = handshake_with_a_peer(false);
    assert_eq!(ours[20 + 7] & 0x01, 0);
    assert!(!after.windows(7).any(|w| w == port_message));

    let (mut s, conn, ours, after) = handshake_with_a_peer(true);
    assert_eq!(ours[20 + 7] & 0x01, 0x01, "the DHT bit");
    assert!(after.windows(7).any(|w| w == port_message), "{after:?}");
    drain(&mut s);
    // The peer's `port` (7001): its node is pinged.
    s.handle_input(Input::Received {
        now: at(1),
        conn,
        data: Bytes::from_static(&[0, 0, 0, 3, 9, 0x1b, 0x59]),
    });
    let sent = datagrams(&drain(&mut s).0);
    assert!(
        sent.iter().any(
            |(to, d)| *to == "127.0.0.1:7001".parse::<SocketAddr>().unwrap()
                && dht::Message::decode(d)
                    .is_ok_and(|m| matches!(m.body, dht::Body::Query(dht::Query::Ping { .. })))
        ),
        "{sent:?}"
    );
}

#[test]
fn dht_lookups_feed_the_torrent_and_announce_our_port() {
    let node: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let peer: SocketAddr = "127.0.0.5:6000".parse().unwrap();
    let mut s = session(Config::default());
    s.enable_dht(Instant::ZERO, dht_settings(node));
    let meta = torrent(&[], false);
    let info_hash = meta.info_hash;
    add(&mut s, meta);
    // Play the one node of the network: answer every query, with the peer for get_peers.
    let node_id = dht::NodeId([0x42; 20]);
    let mut now = at(0);
    let (mut actions, _, _) = drain(&mut s);
    let (mut dialled, mut announced) = (false, None);
    for _ in 0..50 {
        dialled |= actions
            .iter()
            .any(|a| matches!(a, Action::Connect { target: Target::Addr(a), .. } if *a == peer));
        for (to, data) in datagrams(&actions) {
            assert_eq!(to, node);
            let msg = dht::Message::decode(&data).expect("KRPC");
            let dht::Body::Query(q) = msg.body else {
                panic!("not a query: {msg:?}");
            };
            let values = match &q {
                dht::Query::GetPeers { info_hash: h, .. } if *h == info_hash => vec![peer],
                dht::Query::AnnouncePeer {
                    info_hash: h,
                    port,
                    implied_port,
                    token,
                    ..
                } => {
                    assert_eq!(*h, info_hash);
                    assert_eq!(token, b"tok");
                    announced = Some((*port, *implied_port));
                    vec![]
                }
                _ => vec![],
            };
            let reply = dht::Message {
                transaction: msg.transaction,
                version: None,
                requester: None,
                read_only: false,
                body: dht::Body::Response(dht::Response {
                    id: node_id,
                    nodes: vec![],
                    nodes6: vec![],
                    values,
                    token: Some(b"tok".to_vec()),
                }),
            };
            feed(&mut s, now, node, reply.encode());
        }
        if dialled && announced.is_some() {
            break;
        }
        let (a, _, next) = drain(&mut s);
        actions = a;
        if datagrams(&actions).is_empty() {
            now = next.min(now + Duration::from_secs(30));
            s.handle_input(Input::Timeout { now });
            actions.extend(drain(&mut s).0);
        }
    }
    assert!(dialled, "the peer from the DHT was not dialled");
    assert_eq!(
        announced,
        Some((PORT, false)),
        "announce_peer with our listen port"
    );
    assert!(now < at(120), "took until {now:?}");
    let stats = s.dht_stats().expect("a DHT runs");
    assert_eq!(stats.nodes[0], 1);
    assert!(s.datagram_stats().dht >= 3);
}

/// A torrent that is checking its data does not start its DHT lookup, and while it waits
/// the session's deadline is not `now` (which would make a runtime spin until the check
/// ends).
#[test]
fn a_checking_torrent_waits_for_its_lookup_without_spinning() {
    let node: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let mut s = session(Config::default());
    s.enable_dht(Instant::ZERO, dht_settings(node));
    let meta = torrent(&[], false);
    s.add_torrent(Instant::ZERO, meta, TorrentOptions::default())
        .expect("added");
    let (actions, _, next) = drain(&mut s);
    assert!(
        actions.iter().any(|a| matches!(a, Action::Verify { .. })),
        "it checks its data"
    );
    assert!(next > Instant::ZERO, "deadline {next:?} while checking");
    s.handle_input(Input::Timeout { now: next });
    let (_, _, after) = drain(&mut s);
    assert!(after > next, "deadline {after:?} at {next:?}");
}

/// A lookup that the network answers without a peer, for a torrent with none, goes again
/// after 10 s, then 20 s (not the minute of a torrent that has a few peers).
#[test]
fn a_torrent_alone_looks_again_soon_when_the_dht_knows_no_peer() {
    let node: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let mut s = session(Config::default());
    s.enable_dht(Instant::ZERO, dht_settings(node));
    let meta = torrent(&[], false);
    let info_hash = meta.info_hash;
    add(&mut s, meta);
    let mut starts = Vec::new();
    let mut now = at(0);
    let (mut actions, _, _) = drain(&mut s);
    while now < at(100) {
        for (to, data) in datagrams(&actions) {
            let msg = dht::Message::decode(&data).expect("KRPC");
            let dht::Body::Query(q) = msg.body else {
                panic!("not a query: {msg:?}");
            };
            if matches!(&q, dht::Query::GetPeers { info_hash: h, .. } if *h == info_hash) {
                starts.push(now);
            }
            let reply = dht::Message {
                transaction: msg.transaction,
                version: None,
                requester: None,
                read_only: false,
                body: dht::Body::Response(dht::Response {
                    id: dht::NodeId([0x42; 20]),
                    nodes: vec![],
                    nodes6: vec![],
                    values: vec![],
                    token: Some(b"tok".to_vec()),
                }),
            };
            feed(&mut s, now, to, reply.encode());
        }
        let (a, _, _) = drain(&mut s);
        actions = a;
        if datagrams(&actions).is_empty() {
            now += Duration::from_secs(1);
            s.handle_input(Input::Timeout { now });
            actions.extend(drain(&mut s).0);
        }
    }
    starts.dedup();
    assert!(starts.len() >= 3, "{starts:?}");
    let gaps: Vec<u64> = starts.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    assert_eq!(&gaps[..2], &[10, 20], "{starts:?}");
}
