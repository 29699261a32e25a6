//! uTP as a peer transport: a session dials, accepts and talks BitTorrent over its uTP
//! socket, checked from the other end by a second `UtpSocket` playing the peer (datagrams
//! in and out by hand), falls back to TCP when uTP gets no answer, and shrugs off
//! malformed datagrams; and two sessions exchange a torrent over uTP on the in-process
//! swarm.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::harness::*;
use super::rig::{PLAIN_PREFIX, handshake};
use crate::api::{Action, DiskResult, Event, Input, Output, Target};
use crate::config::{Config, TorrentOptions};
use crate::id::{ConnId, TorrentId};
use crate::metainfo::Metainfo;
use crate::mse::{Encryption, Policy};
use crate::rng::Rng;
use crate::session::Session;
use crate::time::{Duration, Instant};
use crate::transport::{FALLBACK_AFTER, Transport, TransportPolicy};
use crate::utp::{StreamId, UtpConfig, UtpEvent, UtpSocket};
use crate::wire::{Decoder, Handshake, Message};

const US: ([u8; 4], u16) = ([10, 0, 0, 1], 6881);
const PEER: ([u8; 4], u16) = ([10, 9, 9, 9], 7000);

fn us() -> SocketAddr {
    SocketAddr::from(US)
}

fn peer() -> SocketAddr {
    SocketAddr::from(PEER)
}

fn config(transport: TransportPolicy) -> Config {
    Config {
        listen_port: US.1,
        transport,
        ..Config::default()
    }
}

/// A session with one empty torrent of one 16 KiB piece, and a scripted peer at
/// [`PEER`] whose uTP socket exchanges datagrams with it.
struct Scripted {
    session: Session,
    meta: Arc<Metainfo>,
    data: Vec<u8>,
    torrent: TorrentId,
    now: Instant,
    remote: UtpSocket,
    /// What arrived on each of the remote's streams.
    received: BTreeMap<StreamId, Vec<u8>>,
    remote_events: Vec<UtpEvent>,
    /// `Connect`, `Send` and `Close` actions: the driver's TCP side.
    connects: Vec<(ConnId, SocketAddr)>,
    sends: Vec<(ConnId, Bytes)>,
    closes: Vec<ConnId>,
    events: Vec<Event>,
    /// Datagrams the session sent to the peer.
    to_peer: usize,
    /// The network loses everything the session sends to the peer.
    black_hole: bool,
}

impl Scripted {
    fn new(transport: TransportPolicy) -> Scripted {
        let data = content(16384, 3);
        let meta = metainfo("u", &[("u.bin", 16384)], 16384, &data);
        let now = Instant::ZERO;
        let mut session = Session::new(config(transport), now, [9; 32]);
        let torrent = session
            .add_torrent(
                now,
                meta.clone(),
                TorrentOptions {
                    have: empty_have(&meta),
                    ..TorrentOptions::default()
                },
            )
            .expect("a new torrent");
        let mut s = Scripted {
            session,
            meta,
            data,
            torrent,
            now,
            remote: UtpSocket::new(UtpConfig::default(), Rng::from_u64(77)),
            received: BTreeMap::new(),
            remote_events: Vec::new(),
            connects: Vec::new(),
            sends: Vec::new(),
            closes: Vec::new(),
            events: Vec::new(),
            to_peer: 0,
            black_hole: false,
        };
        s.pump();
        s
    }

    /// Moves outputs, datagrams and disk answers until nothing moves.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            loop {
                let action = match self.session.poll_output() {
                    Output::Timeout(_) => break,
                    Output::Event(e) => {
                        self.events.push(e);
                        continue;
                    }
                    Output::Action(a) => a,
                };
                let now = self.now;
                match action {
                    Action::SendDatagram { to, data } if to == peer() => {
                        self.to_peer += 1;
                        if !self.black_hole {
                            self.remote.handle_datagram(now, us(), &data);
                            moved = true;
                        }
                    }
                    Action::Connect {
                        conn,
                        target: Target::Addr(a),
                    } => self.connects.push((conn, a)),
                    Action::Send { conn, data } => self.sends.push((conn, data)),
                    Action::Close { conn } => self.closes.push(conn),
                    Action::Write { op, .. } | Action::Verify { op, .. } => {
                        let result = DiskResult::Ok;
                        self.session.handle_input(Input::Disk { now, op, result });
                        moved = true;
                    }
                    _ => {}
                }
            }
            while let Some(t) = self.remote.poll_transmit(self.now) {
                assert_eq!(t.to, us());
                let now = self.now;
                self.session.handle_input(Input::Datagram {
                    now,
                    from: peer(),
                    data: t.data,
                });
                moved = true;
            }
            while let Some(e) = self.remote.poll_event() {
                if let UtpEvent::Data { stream, data } = &e {
                    self.received
                        .entry(*stream)
                        .or_default()
                        .extend_from_slice(data);
                }
                self.remote_events.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("the session and the peer never go quiet");
    }

    /// Lets `d` of time pass in steps of 10 ms.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(10);
            let now = self.now;
            self.session.handle_input(Input::Timeout { now });
            self.remote.handle_timeout(now);
            self.pump();
        }
    }

    fn dial_peer(&mut self) {
        self.session
            .add_peers(self.now, self.torrent, &[peer()], false);
        self.pump();
    }

    /// The remote's stream, once it has one.
    fn stream(&self) -> StreamId {
        self.remote_events
            .iter()
            .find_map(|e| match e {
                UtpEvent::Incoming { stream, .. } | UtpEvent::Connected { stream } => Some(*stream),
                _ => None,
            })
            .expect("a uTP stream to the session")
    }

    fn remote_send(&mut self, stream: StreamId, bytes: &[u8]) {
        let now = self.now;
        let n = self
            .remote
            .write(now, stream, Bytes::copy_from_slice(bytes))
            .expect("the stream is open");
        assert_eq!(n, bytes.len());
        self.pump();
        self.advance(Duration::from_millis(200));
    }

    fn remote_message(&mut self, stream: StreamId, m: Message) {
        let mut b = BytesMut::new();
        m.encode(&mut b);
        self.remote_send(stream, &b);
    }

    /// The session's stream as the peer received it, decoded: its handshake and every
    /// whole message.
    fn decoded(&self, stream: StreamId) -> (Handshake, Vec<Message>) {
        let mut d = Decoder::new();
        d.feed(Bytes::from(
            self.received.get(&stream).cloned().unwrap_or_default(),
        ));
        let hs = d
            .handshake()
            .expect("a valid handshake")
            .expect("a whole handshake");
        d.set_num_pieces(1);
        let mut msgs = Vec::new();
        while let Some(m) = d.next_message().expect("valid messages") {
            msgs.push(m);
        }
        (hs, msgs)
    }
}

#[test]
fn a_utp_dial_carries_the_handshake_and_a_piece_both_ways() {
    let mut s = Scripted::new(TransportPolicy::Utp);
    s.dial_peer();
    assert!(s.connects.is_empty(), "no TCP dial under the uTP policy");
    assert!(s.to_peer > 0, "a SYN went to the peer");
    let stream = s.stream();
    let (hs, _) = s.decoded(stream);
    assert_eq!(hs.info_hash, s.meta.info_hash);
    assert!(s.sends.is_empty(), "nothing went out as a TCP send");

    let ih = s.meta.info_hash;
    s.remote_send(stream, &handshake(ih, 7, false));
    let have = crate::bitfield::Bitfield::full(1);
    s.remote_message(stream, Message::Bitfield(Bytes::from(have.to_bytes())));
    let (_, msgs) = s.decoded(stream);
    assert!(msgs.contains(&Message::Interested), "{msgs:?}");
    s.remote_message(stream, Message::Unchoke);
    let (_, msgs) = s.decoded(stream);
    let requests: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::Request(b) => Some(*b),
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 1, "{msgs:?}");
    let peers = s.session.peers(s.torrent);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].transport, Transport::Utp);
    assert!(peers[0].outbound && peers[0].active);
    let block = requests[0];
    let data = s.data[block.offset as usize..][..block.len as usize].to_vec();
    s.remote_message(
        stream,
        Message::Piece {
            piece: block.piece,
            offset: block.offset,
            data: Bytes::from(data),
        },
    );
    assert!(
        s.events.iter().any(|e| matches!(e, Event::Complete { .. })),
        "the piece arrived over uTP: {:?}",
        s.events
    );
    // Done and not seeding, the session closes the peer: with a uTP FIN, not a TCP close.
    s.advance(Duration::from_secs(1));
    assert!(
        s.remote_events.contains(&UtpEvent::Closed {
            stream,
            reason: crate::utp::CloseReason::Finished
        }),
        "{:?}",
        s.remote_events
    );
    assert!(s.connects.is_empty() && s.sends.is_empty() && s.closes.is_empty());
}

#[test]
fn an_incoming_utp_connection_is_served_like_a_tcp_one() {
    let mut s = Scripted::new(TransportPolicy::Both);
    let now = s.now;
    let stream = s.remote.connect(now, us()).expect("a stream");
    s.pump();
    assert!(
        s.remote_events.contains(&UtpEvent::Connected { stream }),
        "the session answered the SYN"
    );
    let ih = s.meta.info_hash;
    s.remote_send(stream, &handshake(ih, 8, false));
    let (hs, _) = s.decoded(stream);
    assert_eq!(hs.info_hash, ih, "the session answered with its handshake");
    assert_eq!(hs.peer_id, s.session.peer_id());
    let peers = s.session.peers(s.torrent);
    assert_eq!(peers.len(), 1);
    assert_eq!(
        (peers[0].transport, peers[0].outbound),
        (Transport::Utp, false)
    );
    assert_eq!(peers[0].addr, peer());

    // The peer closes: the session forgets the connection, as for TCP.
    s.remote.close(s.now, stream).expect("open");
    s.pump();
    s.advance(Duration::from_millis(100));
    assert!(s.session.peers(s.torrent).is_empty());
    assert!(
        s.events
            .iter()
            .any(|e| matches!(e, Event::PeerClosed { .. }))
    );
}

#[test]
fn an_unanswered_utp_dial_falls_back_to_tcp_under_the_same_connection() {
    let mut s = Scripted::new(TransportPolicy::Both);
    s.black_hole = true;
    s.dial_peer();
    assert!(s.to_peer >= 1, "the SYN went out");
    assert!(s.connects.is_empty(), "uTP is tried first");
    s.advance(FALLBACK_AFTER - Duration::from_millis(100));
    assert!(s.connects.is_empty(), "not before {FALLBACK_AFTER:?}");
    s.advance(Duration::from_millis(200));
    assert_eq!(s.connects.len(), 1, "TCP after {FALLBACK_AFTER:?}");
    let (conn, addr) = s.connects[0];
    assert_eq!(addr, peer());
    let syns = s.to_peer;

    // The TCP connection is the same peer connection: it handshakes in plaintext.
    let now = s.now;
    s.session.handle_input(Input::Connected { now, conn });
    s.pump();
    let sent: Vec<u8> = s
        .sends
        .iter()
        .filter(|(c, _)| *c == conn)
        .flat_map(|(_, d)| d.iter().copied())
        .collect();
    assert!(sent.starts_with(PLAIN_PREFIX), "{sent:?}");
    let peers = s.session.peers(s.torrent);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].transport, Transport::Tcp);

    // The uTP dial was given up: nothing more goes out over uTP for it...
    s.advance(Duration::from_secs(10));
    assert_eq!(s.to_peer, syns, "no SYN after the fallback");
    // ... and the peer is remembered: another torrent dials it over TCP at once.
    let data = content(20000, 5);
    let meta = metainfo("v", &[("v.bin", 20000)], 16384, &data);
    let now = s.now;
    let t2 = s
        .session
        .add_torrent(
            now,
            meta.clone(),
            TorrentOptions {
                have: empty_have(&meta),
                ..TorrentOptions::default()
            },
        )
        .expect("a new torrent");
    s.pump();
    s.session.add_peers(now, t2, &[peer()], false);
    s.pump();
    assert_eq!(s.connects.len(), 2, "the second dial is TCP at once");
    assert_eq!(s.to_peer, syns, "and sends no SYN");
}

#[test]
fn an_unanswered_utp_dial_under_utp_only_gives_the_peer_up_without_tcp() {
    let mut s = Scripted::new(TransportPolicy::Utp);
    s.black_hole = true;
    s.dial_peer();
    s.advance(Duration::from_secs(20));
    assert!(s.connects.is_empty(), "never TCP under the uTP policy");
    assert!(s.to_peer >= 2, "the SYN was resent");
    let syn_timeouts = s
        .events
        .iter()
        .filter(|e| {
            matches!(e, Event::PeerClosed { reason, .. } if reason.to_string().contains("uTP SYN"))
        })
        .count();
    assert!(syn_timeouts >= 1, "{:?}", s.events);
}

#[test]
fn malformed_datagrams_close_nothing() {
    let mut s = Scripted::new(TransportPolicy::Both);
    s.dial_peer();
    let stream = s.stream();
    let ih = s.meta.info_hash;
    s.remote_send(stream, &handshake(ih, 7, false));
    let before = s.session.datagram_stats();
    let stranger = SocketAddr::from(([10, 7, 7, 7], 1234));
    let mut rng = Rng::from_u64(5);
    let mut junk: Vec<Vec<u8>> = vec![
        vec![0x01],
        vec![0x41; 19],
        vec![0x21, 0, 0xff, 0xff],
        vec![0x11; 20],
        vec![0x01; 1500],
    ];
    for _ in 0..200 {
        let mut d = vec![0u8; 1 + rng.index(60)];
        rng.fill(&mut d);
        d[0] = [0x01, 0x11, 0x21, 0x31, 0x41][rng.index(5)];
        junk.push(d);
    }
    for d in &junk {
        for from in [peer(), stranger] {
            let now = s.now;
            s.session.handle_input(Input::Datagram {
                now,
                from,
                data: Bytes::from(d.clone()),
            });
            s.pump();
        }
    }
    let after = s.session.datagram_stats();
    assert_eq!(after.utp - before.utp, 2 * junk.len() as u64);
    assert!(s.closes.is_empty());
    let peers = s.session.peers(s.torrent);
    assert_eq!(peers.len(), 1, "the connection is still there");
    assert!(peers[0].active);
    // And it still carries messages.
    s.remote_message(stream, Message::Have(0));
    let (_, msgs) = s.decoded(stream);
    assert!(msgs.contains(&Message::Interested), "{msgs:?}");
}

/// A leecher downloads from a seeder, both under `Both`; returns the swarm, the two nodes
/// and what the leecher's connection looked like while it was up (transport, encryption,
/// outbound) for each side.
fn swarm_download(encryption: Policy) -> (Swarm, Vec<(Transport, Encryption, bool)>) {
    let data = content(600_000, 11);
    let meta = metainfo("s", &[("s.bin", data.len() as u64)], 32768, &data);
    let mut swarm = Swarm::new();
    let cfg = || Config {
        transport: TransportPolicy::Both,
        encryption,
        fast_extension: true,
        ..Config::default()
    };
    let seed = swarm.add(cfg(), &meta, MemDisk::full(&meta, &data), seeder());
    let leech = swarm.add(
        cfg(),
        &meta,
        MemDisk::empty(&meta),
        TorrentOptions {
            have: empty_have(&meta),
            ..TorrentOptions::default()
        },
    );
    let seed_addr = swarm.addr(seed);
    swarm.add_peers(leech, &[seed_addr]);
    let mut seen = Vec::new();
    let done = swarm.run_until(Duration::from_secs(60), |s| {
        for node in [leech, seed] {
            let n = &s.nodes[node];
            for p in n.session.peers(n.torrent).iter().filter(|p| p.active) {
                let look = (p.transport, p.encryption, p.outbound);
                if !seen.contains(&look) {
                    seen.push(look);
                }
            }
        }
        s.complete(leech)
    });
    assert!(done, "download did not complete");
    assert_eq!(swarm.nodes[leech].disk.concat(), data);
    seen.sort_by_key(|&(_, _, outbound)| !outbound);
    (swarm, seen)
}

#[test]
fn two_sessions_exchange_a_torrent_over_utp() {
    let (swarm, seen) = swarm_download(Policy::Disable);
    let none = Encryption::None;
    assert_eq!(
        seen,
        [(Transport::Utp, none, true), (Transport::Utp, none, false)],
        "one uTP connection, dialled by the leecher"
    );
    // 600 kB in datagrams of at most 1,472 bytes reached the leecher.
    assert!(swarm.nodes[1].session.datagram_stats().utp > 600_000 / 1472);
}

#[test]
fn mse_runs_inside_a_utp_stream() {
    let (_, seen) = swarm_download(Policy::Require);
    let rc4 = Encryption::Rc4;
    assert_eq!(
        seen,
        [(Transport::Utp, rc4, true), (Transport::Utp, rc4, false)]
    );
}
