//! Magnet links (BEP 9) and peer exchange (BEP 11) through whole sessions: swarms of real
//! sessions, and scripted peers whose bytes from Tessera are decoded and checked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sha1::{Digest, Sha1};

use super::harness::{MemDisk, Swarm, content};
use crate::api::{Action, Event, Input, Output, Target};
use crate::config::{Config, TorrentOptions};
use crate::extension::ExtensionHandshake;
use crate::id::{ConnId, PeerId};
use crate::magnet::MagnetLink;
use crate::metadata::{MetadataMessage, PIECE_LEN};
use crate::metainfo::{Metainfo, NewTorrent};
use crate::pex::{PexFlags, PexMessage};
use crate::session::Session;
use crate::time::{Duration, Instant};
use crate::wire::{Decoder, Handshake, Message};

/// A real torrent (info dictionary bytes and all) of `len` bytes in `files` files.
fn torrent(len: usize, piece_length: u32, files: usize, private: bool) -> (Arc<Metainfo>, Vec<u8>) {
    let data = content(len, 11);
    let pieces = data
        .chunks(piece_length as usize)
        .map(|c| Sha1::digest(c).into())
        .collect();
    let per = len / files;
    let file_list = (0..files)
        .map(|i| {
            let l = if i + 1 == files { len - per * i } else { per };
            (
                vec![format!("file{i:04}-with-a-rather-long-name.bin")],
                l as u64,
            )
        })
        .collect();
    let new = NewTorrent {
        name: "magnetic".into(),
        files: file_list,
        length: 0,
        piece_length,
        pieces,
        private,
        trackers: vec![],
        comment: None,
        created_by: None,
        creation_date: None,
    };
    let meta = Metainfo::from_bytes(&new.encode()).expect("a valid torrent");
    (Arc::new(meta), data)
}

fn link(meta: &Metainfo, peers: &[SocketAddr]) -> MagnetLink {
    MagnetLink {
        info_hash: meta.info_hash,
        name: Some("from the link".into()),
        trackers: vec!["http://127.0.0.1:1/announce".into()],
        peers: peers.iter().map(|a| Target::Addr(*a)).collect(),
        select: vec![],
    }
}

fn no_trackers(config: Config) -> Config {
    Config {
        tracker_timeout: Duration::from_secs(1),
        ..config
    }
}

#[test]
fn magnet_leecher_fetches_metadata_from_seeders_then_downloads() {
    // Enough files that the info dictionary spans several 16 KiB pieces.
    let (meta, data) = torrent(600_000, 16384, 700, false);
    assert!(
        meta.info_bytes.len() > 2 * PIECE_LEN,
        "{}",
        meta.info_bytes.len()
    );
    let mut swarm = Swarm::new();
    let s1 = swarm.add_seed(Config::default(), &meta, &data);
    let s2 = swarm.add_seed(Config::default(), &meta, &data);
    let peers = [swarm.addr(s1), swarm.addr(s2)];
    let m = swarm.add_magnet(no_trackers(Config::default()), &link(&meta, &peers));
    let done = swarm.run_until(Duration::from_secs(120), |s| s.complete(m));
    assert!(
        done,
        "{:?}\n{:?}",
        swarm.nodes[m].events, swarm.nodes[s1].events
    );
    assert_eq!(swarm.nodes[m].disk.concat(), data);
    let file = swarm.nodes[m]
        .events
        .iter()
        .find_map(|e| match e {
            Event::MetadataReceived {
                torrent_file,
                meta: got,
                ..
            } => {
                assert_eq!(got.info_bytes, meta.info_bytes);
                Some(torrent_file.clone())
            }
            _ => None,
        })
        .expect("metadata received");
    let saved = Metainfo::from_bytes(&file).expect("the .torrent made of it parses");
    assert_eq!(saved.info_hash, meta.info_hash);
    assert_eq!(
        saved.trackers,
        vec![vec!["http://127.0.0.1:1/announce".to_string()]]
    );
}

/// One magnet session whose outbound connections are scripted peers.
struct Leecher {
    session: Session,
    now: Instant,
    /// Per connection: the address dialled, and a decoder of what Tessera sent.
    conns: BTreeMap<ConnId, (SocketAddr, Decoder)>,
    closed: Vec<ConnId>,
    events: Vec<Event>,
    /// Datagrams Tessera sent, not yet taken.
    datagrams: Vec<(SocketAddr, Bytes)>,
}

impl Leecher {
    fn new(session: Session) -> Leecher {
        Leecher {
            session,
            now: Instant::ZERO,
            conns: BTreeMap::new(),
            closed: vec![],
            events: vec![],
            datagrams: vec![],
        }
    }

    fn drain(&mut self) {
        loop {
            match self.session.poll_output() {
                Output::Timeout(_) => return,
                Output::Event(e) => self.events.push(e),
                Output::Action(Action::Connect {
                    conn,
                    target: Target::Addr(addr),
                }) => {
                    self.conns.insert(conn, (addr, Decoder::new()));
                }
                Output::Action(Action::Send { conn, data }) => {
                    let now = self.now;
                    if let Some((_, d)) = self.conns.get_mut(&conn) {
                        d.feed(data.clone());
                    }
                    self.session.handle_input(Input::Sent {
                        now,
                        conn,
                        bytes: data.len(),
                    });
                }
                Output::Action(Action::Close { conn }) => self.closed.push(conn),
                Output::Action(Action::SendDatagram { to, data }) => {
                    self.datagrams.push((to, data));
                }
                Output::Action(_) => {}
            }
        }
    }

    fn feed(&mut self, conn: ConnId, bytes: Bytes) {
        let now = self.now;
        self.session.handle_input(Input::Received {
            now,
            conn,
            data: bytes,
        });
        self.drain();
    }

    fn msg(&mut self, conn: ConnId, m: &Message) {
        let mut b = BytesMut::new();
        m.encode(&mut b);
        self.feed(conn, b.freeze());
    }

    /// Everything Tessera sent on `conn` since the last call, decoded.
    fn sent(&mut self, conn: ConnId) -> Vec<Message> {
        let mut out = Vec::new();
        if let Some((_, d)) = self.conns.get_mut(&conn) {
            if d.handshake().ok().flatten().is_some() {
                // The handshake is taken once; later calls go straight to messages.
            }
            while let Ok(Some(m)) = d.next_message() {
                out.push(m);
            }
        }
        out
    }
}

/// Connects every dialled address as a scripted peer offering `ut_metadata` (id 3) with
/// `size`, and returns Tessera's extension handshake to each.
fn connect_all(
    l: &mut Leecher,
    info_hash: crate::id::InfoHash,
    size: u64,
) -> Vec<(ConnId, ExtensionHandshake, Vec<Message>)> {
    let conns: Vec<ConnId> = l.conns.keys().copied().collect();
    let mut out = Vec::new();
    for (i, conn) in conns.into_iter().enumerate() {
        let now = l.now;
        l.session.handle_input(Input::Connected { now, conn });
        l.drain();
        let mut hs = Handshake {
            reserved: [0; 8],
            info_hash,
            peer_id: PeerId([i as u8 + 1; 20]),
        };
        hs.set(Handshake::EXTENSION_PROTOCOL);
        l.feed(conn, Bytes::copy_from_slice(&hs.encode()));
        let theirs = ExtensionHandshake {
            extensions: crate::extension::ExtensionIds {
                ut_metadata: Some(3),
                ut_pex: Some(4),
            },
            metadata_size: Some(size),
            ..ExtensionHandshake::default()
        };
        l.msg(
            conn,
            &Message::Extended {
                id: 0,
                payload: Bytes::from(theirs.encode()),
            },
        );
        let sent = l.sent(conn);
        let ours = sent
            .iter()
            .find_map(|m| match m {
                Message::Extended { id: 0, payload } => ExtensionHandshake::parse(payload).ok(),
                _ => None,
            })
            .expect("an extension handshake");
        out.push((conn, ours, sent));
    }
    out
}

fn metadata_requests(msgs: &[Message]) -> Vec<u32> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Extended { id: 3, payload } => match MetadataMessage::decode(payload) {
                Ok(MetadataMessage::Request { piece }) => Some(piece),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn metadata_is_asked_of_several_peers_and_a_liar_is_dropped() {
    let (meta, _) = torrent(600_000, 16384, 1500, false);
    let info = meta.info_bytes.clone();
    let pieces = info.len().div_ceil(PIECE_LEN);
    assert!(pieces >= 4, "{pieces}");
    let addrs: Vec<SocketAddr> = (1..=3)
        .map(|i| SocketAddr::from(([10, 1, 1, i], 7000)))
        .collect();
    let mut session = Session::new(
        Config {
            listen_port: 6881,
            ..Config::default()
        },
        Instant::ZERO,
        [5; 32],
    );
    let link = MagnetLink {
        trackers: vec![],
        ..link(&meta, &addrs)
    };
    let torrent = session.add_magnet(Instant::ZERO, &link).expect("added");
    let mut l = Leecher::new(session);
    l.drain();
    assert_eq!(l.conns.len(), 3, "every x.pe peer is dialled");
    let hs = connect_all(&mut l, meta.info_hash, info.len() as u64);
    for (_, ours, _) in &hs {
        assert_eq!(ours.extensions.ut_metadata, Some(2), "ut_metadata offered");
        assert_eq!(
            ours.extensions.ut_pex, None,
            "no PEX before the metadata says private or not"
        );
        assert_eq!(ours.metadata_size, None, "nothing to serve yet");
    }
    // Requests went out to every peer (the assembler spreads them).
    let mut asked: BTreeMap<ConnId, Vec<u32>> = BTreeMap::new();
    for (conn, _, sent) in &hs {
        let mut r = metadata_requests(sent);
        r.extend(metadata_requests(&l.sent(*conn)));
        asked.insert(*conn, r);
    }
    assert!(
        asked.values().filter(|r| !r.is_empty()).count() >= 2,
        "{asked:?}"
    );
    let all: std::collections::BTreeSet<u32> = asked.values().flatten().copied().collect();
    assert_eq!(
        all.len(),
        asked.values().map(Vec::len).sum::<usize>(),
        "no piece asked twice"
    );
    // The first peer answers with garbage of the right length, the others honestly.
    let liar = hs[0].0;
    let answer = |piece: u32, lie: bool| {
        let start = piece as usize * PIECE_LEN;
        let end = (start + PIECE_LEN).min(info.len());
        let mut data = info[start..end].to_vec();
        if lie {
            data.iter_mut().for_each(|b| *b = !*b);
        }
        Message::Extended {
            id: 2,
            payload: MetadataMessage::Data {
                piece,
                total_size: info.len() as u64,
                data: Bytes::from(data),
            }
            .encode(),
        }
    };
    let reject = |piece: u32| Message::Extended {
        id: 2,
        payload: MetadataMessage::Reject { piece }.encode(),
    };
    for _round in 0..50 {
        let pending: Vec<(ConnId, Vec<u32>)> = asked.iter().map(|(c, r)| (*c, r.clone())).collect();
        asked.clear();
        for (conn, reqs) in pending {
            for piece in reqs {
                if l.closed.contains(&conn) {
                    continue;
                }
                // The third peer rejects its first request.
                if conn == hs[2].0 && piece == 0 && l.now == Instant::ZERO {
                    l.msg(conn, &reject(piece));
                } else {
                    l.msg(conn, &answer(piece, conn == liar));
                }
            }
        }
        if l.events
            .iter()
            .any(|e| matches!(e, Event::MetadataReceived { .. }))
        {
            break;
        }
        l.now += Duration::from_secs(31);
        let now = l.now;
        l.session.handle_input(Input::Timeout { now });
        l.drain();
        for (conn, _, _) in &hs {
            let r = metadata_requests(&l.sent(*conn));
            if !r.is_empty() {
                asked.insert(*conn, r);
            }
        }
    }
    let got = l
        .events
        .iter()
        .find_map(|e| match e {
            Event::MetadataReceived { meta: m, .. } => Some(m.clone()),
            _ => None,
        })
        .expect("the metadata arrives from the honest peers");
    assert_eq!(got.info_bytes, info);
    assert!(l.closed.contains(&liar), "the peer that lied is dropped");
    assert!(!l.closed.contains(&hs[1].0));
    // Resumed as a normal torrent: the connections of the metadata phase are closed and
    // the addresses (not the liar's) dialled again.
    let before = l.conns.len();
    l.session
        .resume_with_metadata(
            l.now,
            torrent,
            TorrentOptions {
                have: Some(crate::bitfield::Bitfield::new(got.num_pieces() as usize)),
                seed: false,
                files: None,
                ..TorrentOptions::default()
            },
        )
        .expect("resumed");
    l.drain();
    assert!(l.closed.contains(&hs[1].0) && l.closed.contains(&hs[2].0));
    let redialled: Vec<SocketAddr> = l.conns.iter().skip(before).map(|(_, (a, _))| *a).collect();
    assert!(
        redialled.contains(&addrs[1]) && redialled.contains(&addrs[2]),
        "{redialled:?}"
    );
    assert!(!redialled.contains(&addrs[0]), "the liar is banned");
}

#[test]
fn metadata_size_above_the_limit_is_not_fetched() {
    let (meta, _) = torrent(100_000, 16384, 3, false);
    let addr = SocketAddr::from(([10, 1, 1, 1], 7000));
    let mut session = Session::new(Config::default(), Instant::ZERO, [5; 32]);
    let link = MagnetLink {
        trackers: vec![],
        ..link(&meta, &[addr])
    };
    session.add_magnet(Instant::ZERO, &link).expect("added");
    let mut l = Leecher::new(session);
    l.drain();
    let hs = connect_all(&mut l, meta.info_hash, 17 << 20);
    assert!(metadata_requests(&hs[0].2).is_empty());
    assert!(metadata_requests(&l.sent(hs[0].0)).is_empty());
}

/// A seeding session with one inbound scripted peer that offers `ut_metadata` (3) and
/// `ut_pex` (4) and listens at `port`.
struct Seed {
    session: Session,
    now: Instant,
    conns: BTreeMap<ConnId, Decoder>,
}

impl Seed {
    fn new(meta: &Arc<Metainfo>, data: &[u8]) -> (Seed, MemDisk) {
        let mut session = Session::new(
            Config {
                listen_port: 6881,
                ..Config::default()
            },
            Instant::ZERO,
            [6; 32],
        );
        let disk = MemDisk::full(meta, data);
        session
            .add_torrent(
                Instant::ZERO,
                meta.clone(),
                TorrentOptions {
                    have: Some(crate::bitfield::Bitfield::full(meta.num_pieces() as usize)),
                    seed: true,
                    files: None,
                    ..TorrentOptions::default()
                },
            )
            .expect("added");
        (
            Seed {
                session,
                now: Instant::ZERO,
                conns: BTreeMap::new(),
            },
            disk,
        )
    }

    fn drain(&mut self) {
        loop {
            match self.session.poll_output() {
                Output::Timeout(_) => return,
                Output::Action(Action::Send { conn, data }) => {
                    let now = self.now;
                    if let Some(d) = self.conns.get_mut(&conn) {
                        d.feed(data.clone());
                    }
                    self.session.handle_input(Input::Sent {
                        now,
                        conn,
                        bytes: data.len(),
                    });
                }
                Output::Action(Action::Close { conn }) => {
                    self.conns.remove(&conn);
                }
                _ => {}
            }
        }
    }

    fn join(&mut self, info_hash: crate::id::InfoHash, i: u8) -> ConnId {
        let now = self.now;
        let conn = self
            .session
            .accept(now, SocketAddr::from(([10, 2, 2, i], 50000)))
            .expect("accepted");
        self.conns.insert(conn, Decoder::new());
        self.drain();
        let mut hs = Handshake {
            reserved: [0; 8],
            info_hash,
            peer_id: PeerId([i; 20]),
        };
        hs.set(Handshake::EXTENSION_PROTOCOL);
        self.feed(conn, &hs.encode());
        let theirs = ExtensionHandshake {
            extensions: crate::extension::ExtensionIds {
                ut_metadata: Some(3),
                ut_pex: Some(4),
            },
            port: Some(6000 + u16::from(i)),
            ..ExtensionHandshake::default()
        };
        self.msg(
            conn,
            &Message::Extended {
                id: 0,
                payload: Bytes::from(theirs.encode()),
            },
        );
        if let Some(d) = self.conns.get_mut(&conn) {
            assert!(d.handshake().expect("our handshake").is_some());
        }
        conn
    }

    fn feed(&mut self, conn: ConnId, bytes: &[u8]) {
        let now = self.now;
        self.session.handle_input(Input::Received {
            now,
            conn,
            data: Bytes::copy_from_slice(bytes),
        });
        self.drain();
    }

    fn msg(&mut self, conn: ConnId, m: &Message) {
        let mut b = BytesMut::new();
        m.encode(&mut b);
        self.feed(conn, &b);
    }

    fn sent(&mut self, conn: ConnId) -> Vec<Message> {
        let mut out = Vec::new();
        if let Some(d) = self.conns.get_mut(&conn) {
            while let Ok(Some(m)) = d.next_message() {
                out.push(m);
            }
        }
        out
    }

    fn tick(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        self.session.handle_input(Input::Timeout { now });
        self.drain();
    }
}

fn ext_handshake(msgs: &[Message]) -> Option<ExtensionHandshake> {
    msgs.iter().find_map(|m| match m {
        Message::Extended { id: 0, payload } => ExtensionHandshake::parse(payload).ok(),
        _ => None,
    })
}

fn pex_messages(msgs: &[Message]) -> Vec<PexMessage> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Extended { id: 4, payload } => PexMessage::decode(payload, 1000).ok(),
            _ => None,
        })
        .collect()
}

#[test]
fn a_seed_serves_its_metadata_and_sends_pex_at_most_once_a_minute() {
    let (meta, data) = torrent(200_000, 16384, 300, false);
    let (mut s, _disk) = Seed::new(&meta, &data);
    let a = s.join(meta.info_hash, 1);
    let first = s.sent(a);
    let hs = ext_handshake(&first).expect("extension handshake");
    assert_eq!(hs.metadata_size, Some(meta.info_bytes.len() as u64));
    assert_eq!(hs.extensions.ut_metadata, Some(2));
    assert_eq!(hs.extensions.ut_pex, Some(1));
    // Every piece of the info dictionary, then one past the end.
    let pieces = meta.info_bytes.len().div_ceil(PIECE_LEN) as u32;
    let mut got = Vec::new();
    for piece in 0..=pieces {
        s.msg(
            a,
            &Message::Extended {
                id: 2,
                payload: MetadataMessage::Request { piece }.encode(),
            },
        );
        for m in s.sent(a) {
            if let Message::Extended { id: 3, payload } = m {
                match MetadataMessage::decode(&payload).expect("ut_metadata") {
                    MetadataMessage::Data {
                        data, total_size, ..
                    } => {
                        assert_eq!(total_size, meta.info_bytes.len() as u64);
                        got.extend_from_slice(&data);
                    }
                    MetadataMessage::Reject { piece: p } => assert_eq!(p, pieces),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }
    assert_eq!(got, meta.info_bytes);
    // Serving is bounded: two copies and 16 pieces more, then rejects.
    let (mut data, mut rejects) = (pieces, 0);
    for _ in 0..2 * pieces + 20 {
        s.msg(
            a,
            &Message::Extended {
                id: 2,
                payload: MetadataMessage::Request { piece: 0 }.encode(),
            },
        );
        for m in s.sent(a) {
            if let Message::Extended { id: 3, payload } = m {
                match MetadataMessage::decode(&payload).expect("ut_metadata") {
                    MetadataMessage::Data { .. } => data += 1,
                    MetadataMessage::Reject { .. } => rejects += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }
    assert_eq!(data, 2 * pieces + 16);
    assert_eq!(rejects, pieces + 4);
    // PEX: a second peer joins; the first hears of it (its listening port), then nothing
    // more for a minute however often peers come and go.
    let mut pex_times = Vec::new();
    let mut told = Vec::new();
    let _b = s.join(meta.info_hash, 2);
    for step in 0..300 {
        if step == 20 {
            s.join(meta.info_hash, 3);
        }
        if step == 150 {
            s.join(meta.info_hash, 4);
        }
        s.tick(Duration::from_millis(500));
        for m in pex_messages(&s.sent(a)) {
            pex_times.push(s.now);
            told.extend(m.added.iter().map(|(addr, f)| (*addr, *f)));
        }
    }
    assert!(!pex_times.is_empty(), "PEX was sent");
    for w in pex_times.windows(2) {
        assert!(w[1] - w[0] >= Duration::from_secs(60), "{pex_times:?}");
    }
    let addrs: Vec<SocketAddr> = told.iter().map(|(a, _)| *a).collect();
    assert!(
        addrs.contains(&SocketAddr::from(([10, 2, 2, 2], 6002))),
        "{told:?}"
    );
    assert!(
        addrs.contains(&SocketAddr::from(([10, 2, 2, 3], 6003))),
        "{told:?}"
    );
    assert!(
        addrs.contains(&SocketAddr::from(([10, 2, 2, 4], 6004))),
        "{told:?}"
    );
    assert!(
        !addrs
            .iter()
            .any(|a| a.ip() == std::net::IpAddr::from([10, 2, 2, 1])),
        "never itself"
    );
    assert!(
        told.iter().all(|(_, f)| !f.contains(PexFlags::REACHABLE)),
        "inbound peers are not marked reachable"
    );
}

#[test]
fn a_private_torrent_sends_no_pex_and_ignores_it() {
    let (meta, data) = torrent(200_000, 16384, 3, true);
    let (mut s, _disk) = Seed::new(&meta, &data);
    let a = s.join(meta.info_hash, 1);
    let hs = ext_handshake(&s.sent(a)).expect("extension handshake");
    assert_eq!(hs.extensions.ut_pex, None, "no ut_pex offered");
    assert_eq!(
        hs.extensions.ut_metadata,
        Some(2),
        "metadata is still served (BEP 9 allows it)"
    );
    s.join(meta.info_hash, 2);
    // A PEX message naming a peer: ignored (it is never dialled).
    let pex = PexMessage {
        added: vec![(SocketAddr::from(([10, 3, 3, 3], 7777)), PexFlags::NONE)],
        dropped: vec![],
    };
    s.msg(
        a,
        &Message::Extended {
            id: 1,
            payload: pex.encode(),
        },
    );
    let mut dialled = false;
    for _ in 0..300 {
        s.tick(Duration::from_millis(500));
        let msgs = s.sent(a);
        assert!(
            !msgs
                .iter()
                .any(|m| matches!(m, Message::Extended { id: 4, .. })),
            "a ut_pex message went out for a private torrent"
        );
    }
    loop {
        match s.session.poll_output() {
            Output::Action(Action::Connect {
                target: Target::Addr(a),
                ..
            }) if a.port() == 7777 => dialled = true,
            Output::Timeout(_) => break,
            _ => {}
        }
    }
    assert!(!dialled);
    assert!(s.conns.contains_key(&a), "the peer stays connected");
}

#[test]
fn pex_spreads_a_peer_a_leecher_was_not_told_about() {
    for private in [false, true] {
        let (meta, data) = torrent(400_000, 16384, 2, private);
        let mut swarm = Swarm::new();
        // A peer with half the pieces: nobody completes, so every connection stays.
        let n = meta.num_pieces() as usize;
        let mut half = crate::bitfield::Bitfield::new(n);
        for p in 0..n / 2 {
            half.set(p);
        }
        let partial = TorrentOptions {
            have: Some(half),
            seed: true,
            files: None,
            ..TorrentOptions::default()
        };
        let seed = swarm.add(
            Config::default(),
            &meta,
            MemDisk::full(&meta, &data),
            partial,
        );
        let empty = || TorrentOptions {
            have: super::harness::empty_have(&meta),
            seed: true,
            files: None,
            ..TorrentOptions::default()
        };
        let b = swarm.add(Config::default(), &meta, MemDisk::empty(&meta), empty());
        let c = swarm.add(Config::default(), &meta, MemDisk::empty(&meta), empty());
        let seed_addr = swarm.addr(seed);
        swarm.add_peers(b, &[seed_addr]);
        swarm.add_peers(c, &[seed_addr]);
        let (b_addr, c_addr) = (swarm.addr(b), swarm.addr(c));
        let met = move |s: &Swarm| {
            s.nodes[b].events.iter().any(|e| matches!(e, Event::PeerConnected { addr, .. } if *addr == c_addr || addr.ip() == c_addr.ip()))
                || s.nodes[c].events.iter().any(|e| matches!(e, Event::PeerConnected { addr, .. } if *addr == b_addr || addr.ip() == b_addr.ip()))
        };
        let found = swarm.run_until(Duration::from_secs(20), met);
        assert_eq!(
            found, !private,
            "private {private}: the leechers met through PEX"
        );
    }
}

#[test]
fn no_pex_in_the_config_means_no_ut_pex_offered_or_sent() {
    let (meta, data) = torrent(200_000, 16384, 3, false);
    let mut session = Session::new(
        Config {
            listen_port: 6881,
            pex: false,
            ..Config::default()
        },
        Instant::ZERO,
        [6; 32],
    );
    session
        .add_torrent(
            Instant::ZERO,
            meta.clone(),
            TorrentOptions {
                have: Some(crate::bitfield::Bitfield::full(meta.num_pieces() as usize)),
                seed: true,
                files: None,
                ..TorrentOptions::default()
            },
        )
        .expect("added");
    let _ = data;
    let mut s = Seed {
        session,
        now: Instant::ZERO,
        conns: BTreeMap::new(),
    };
    let a = s.join(meta.info_hash, 1);
    let hs = ext_handshake(&s.sent(a)).expect("extension handshake");
    assert_eq!(hs.extensions.ut_pex, None);
    assert_eq!(hs.extensions.ut_metadata, Some(2));
    s.join(meta.info_hash, 2);
    for _ in 0..200 {
        s.tick(Duration::from_millis(500));
        assert!(pex_messages(&s.sent(a)).is_empty());
    }
}

// ---- the DHT (BEP 5) for a magnet link's torrent ---------------------------------------------

/// The one node of a scripted DHT: it answers every query Tessera sends it, with a token
/// and, to `get_peers` for `info_hash`, `peer` as the value. Every query is kept with the
/// time it came.
struct ScriptedNode {
    addr: SocketAddr,
    info_hash: crate::id::InfoHash,
    peer: SocketAddr,
    queries: Vec<(Instant, crate::dht::Query)>,
}

impl ScriptedNode {
    /// Answers what Tessera sent since the last call; every datagram must be a KRPC query
    /// to this node.
    fn answer(&mut self, l: &mut Leecher) -> bool {
        use crate::dht::{Body, Message as Krpc, NodeId, Query, Response};
        let sent = std::mem::take(&mut l.datagrams);
        for (to, data) in &sent {
            assert_eq!(*to, self.addr);
            let msg = Krpc::decode(data).expect("KRPC");
            let Body::Query(q) = msg.body else {
                panic!("not a query: {msg:?}");
            };
            let values = match &q {
                Query::GetPeers { info_hash, .. } if *info_hash == self.info_hash => {
                    vec![self.peer]
                }
                _ => vec![],
            };
            self.queries.push((l.now, q));
            let reply = Krpc {
                transaction: msg.transaction,
                version: None,
                requester: None,
                read_only: false,
                body: Body::Response(Response {
                    id: NodeId([0x42; 20]),
                    nodes: vec![],
                    nodes6: vec![],
                    values,
                    token: Some(b"tok".to_vec()),
                }),
            };
            let now = l.now;
            l.session.handle_input(Input::Datagram {
                now,
                from: self.addr,
                data: Bytes::from(reply.encode()),
            });
            l.drain();
        }
        !sent.is_empty()
    }

    /// Plays the node, a second of virtual time per quiet step, until `done` or `secs`
    /// seconds have passed.
    fn run(&mut self, l: &mut Leecher, secs: u64, mut done: impl FnMut(&Leecher, &Self) -> bool) {
        let end = l.now + Duration::from_secs(secs);
        while !done(l, self) && l.now < end {
            if !self.answer(l) {
                l.now += Duration::from_secs(1);
                let now = l.now;
                l.session.handle_input(Input::Timeout { now });
                l.drain();
            }
        }
    }

    /// The `get_peers` for the info hash among the queries from the `from`th on.
    fn get_peers_from(&self, from: usize) -> usize {
        self.queries
            .iter()
            .skip(from)
            .filter(|(_, q)| matches!(q, crate::dht::Query::GetPeers { info_hash, .. } if *info_hash == self.info_hash))
            .count()
    }

    /// The `announce_peer`s for the info hash: when, and with which port.
    fn announces(&self) -> Vec<(Instant, u16)> {
        self.queries
            .iter()
            .filter_map(|(t, q)| match q {
                crate::dht::Query::AnnouncePeer {
                    info_hash, port, ..
                } if *info_hash == self.info_hash => Some((*t, *port)),
                _ => None,
            })
            .collect()
    }
}

/// A magnet link with no tracker and no peer, in a session whose DHT has one (scripted)
/// node that knows a peer of the torrent. The lookup for the info hash goes out during the
/// metadata phase (`get_peers`, no `announce_peer`: nothing to serve yet), the peer is
/// dialled and gives the metadata. Then, public, the torrent announces itself at once and
/// dials the peer again; private (BEP 27), it sends nothing more about the info hash and
/// forgets the peer the DHT gave it.
fn magnet_torrent_uses_the_dht(private: bool) {
    let (meta, _) = torrent(100_000, 16384, 3, private);
    let info = meta.info_bytes.clone();
    let mut session = Session::new(
        Config {
            listen_port: 6881,
            ..Config::default()
        },
        Instant::ZERO,
        [7; 32],
    );
    let mut node = ScriptedNode {
        addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
        info_hash: meta.info_hash,
        peer: SocketAddr::from(([127, 0, 0, 5], 6000)),
        queries: vec![],
    };
    session.enable_dht(
        Instant::ZERO,
        crate::config::DhtSettings {
            config: crate::dht::Config::loopback(),
            bootstrap: vec![node.addr],
            state: None,
        },
    );
    let link = MagnetLink {
        trackers: vec![],
        ..link(&meta, &[])
    };
    let torrent = session.add_magnet(Instant::ZERO, &link).expect("added");
    let mut l = Leecher::new(session);
    l.drain();
    assert!(
        !l.datagrams.is_empty(),
        "the DHT starts with the magnet link"
    );
    let peer = node.peer;
    node.run(&mut l, 120, |l, _| {
        l.conns.values().any(|(a, _)| *a == peer)
    });
    assert!(node.get_peers_from(0) >= 1, "{:?}", node.queries);
    assert!(
        l.conns.values().any(|(a, _)| *a == peer),
        "the DHT's peer is dialled"
    );
    assert!(node.announces().is_empty(), "no announce without metadata");
    assert!(
        l.now < Instant::ZERO + Duration::from_secs(10),
        "{:?}",
        l.now
    );

    // The peer gives the metadata.
    let hs = connect_all(&mut l, meta.info_hash, info.len() as u64);
    assert_eq!(hs.len(), 1);
    let conn = hs[0].0;
    let mut asked = metadata_requests(&hs[0].2);
    for _ in 0..10 {
        for piece in std::mem::take(&mut asked) {
            let start = piece as usize * PIECE_LEN;
            let end = (start + PIECE_LEN).min(info.len());
            l.msg(
                conn,
                &Message::Extended {
                    id: 2,
                    payload: MetadataMessage::Data {
                        piece,
                        total_size: info.len() as u64,
                        data: info.slice(start..end),
                    }
                    .encode(),
                },
            );
        }
        asked = metadata_requests(&l.sent(conn));
    }
    let got = l
        .events
        .iter()
        .find_map(|e| match e {
            Event::MetadataReceived { meta: m, .. } => Some(m.clone()),
            _ => None,
        })
        .expect("the metadata from the DHT's peer");
    assert_eq!(got.info.private, private);
    assert!(node.announces().is_empty());

    // What was sent before the metadata arrived is answered first.
    while node.answer(&mut l) {}
    let resumed = l.now;
    let queries_before = node.queries.len();
    let dialled_before = l.conns.len();
    l.session
        .resume_with_metadata(
            l.now,
            torrent,
            TorrentOptions {
                have: Some(crate::bitfield::Bitfield::new(got.num_pieces() as usize)),
                seed: false,
                files: None,
                ..TorrentOptions::default()
            },
        )
        .expect("resumed");
    l.drain();
    assert!(l.closed.contains(&conn));
    let redialled = |l: &Leecher| {
        l.conns
            .values()
            .skip(dialled_before)
            .any(|(a, _)| *a == peer)
    };
    if private {
        node.run(&mut l, 300, |_, _| false);
        assert_eq!(node.get_peers_from(queries_before), 0, "{:?}", node.queries);
        assert!(node.announces().is_empty(), "{:?}", node.queries);
        assert!(!redialled(&l), "the DHT's peer is forgotten");
    } else {
        node.run(&mut l, 60, |l, n| !n.announces().is_empty() && redialled(l));
        let announces = node.announces();
        assert_eq!(announces.len(), 1, "{:?}", node.queries);
        let (when, port) = announces[0];
        assert_eq!(port, 6881);
        assert!(
            when < resumed + Duration::from_secs(5),
            "announced {when:?}, resumed {resumed:?}"
        );
        assert!(redialled(&l), "the DHT's peer is dialled again");
    }
}

#[test]
fn a_magnet_torrent_finds_peers_on_the_dht_and_announces_once_it_has_metadata() {
    magnet_torrent_uses_the_dht(false);
}

#[test]
fn a_magnet_torrent_whose_metadata_says_private_leaves_the_dht() {
    magnet_torrent_uses_the_dht(true);
}

/// Without the DHT (`--no-dht`, the simulator), a magnet link sends no datagram at all.
#[test]
fn a_magnet_torrent_without_the_dht_sends_no_datagram() {
    let (meta, _) = torrent(100_000, 16384, 3, false);
    let session = Session::new(
        Config {
            listen_port: 6881,
            ..Config::default()
        },
        Instant::ZERO,
        [7; 32],
    );
    let link = MagnetLink {
        trackers: vec![],
        ..link(&meta, &[])
    };
    let mut l = Leecher::new(session);
    l.session.add_magnet(Instant::ZERO, &link).expect("added");
    l.drain();
    for _ in 0..300 {
        l.now += Duration::from_secs(1);
        let now = l.now;
        l.session.handle_input(Input::Timeout { now });
        l.drain();
    }
    assert!(l.datagrams.is_empty(), "{:?}", l.datagrams);
    assert!(l.session.dht_stats().is_none());
}
