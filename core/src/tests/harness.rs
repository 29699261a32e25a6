//! A tiny deterministic swarm: sessions exchange bytes instantly and in order, disk
//! actions complete at once against memory, and time jumps to the next deadline.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use sha1::{Digest, Sha1};

use crate::Bitfield;
use crate::api::{Action, DiskResult, Event, Input, Output, Target};
use crate::config::{Config, TorrentOptions};
use crate::id::{ConnId, InfoHash, TorrentId};
use crate::layout::{FileSpan, Layout};
use crate::metainfo::{FileEntry, Info, Metainfo};
use crate::session::Session;
use crate::testing::WireCheck;
use crate::time::{Duration, Instant};
use crate::wire::{Decoder, Message};

/// Deterministic content for tests.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A metainfo for `files` (name, length) with `piece_length`, hashing `data`.
pub fn metainfo(
    name: &str,
    files: &[(&str, u64)],
    piece_length: u32,
    data: &[u8],
) -> Arc<Metainfo> {
    let layout = Layout::new(piece_length, files.iter().map(|f| f.1)).expect("layout");
    let pieces: Vec<[u8; 20]> = data
        .chunks(piece_length as usize)
        .map(|c| Sha1::digest(c).into())
        .collect();
    let multi = files.len() > 1;
    let entries = files
        .iter()
        .map(|(p, len)| FileEntry {
            path: if multi {
                vec![name.to_string(), p.to_string()]
            } else {
                vec![name.to_string()]
            },
            length: *len,
            padding: false,
            executable: false,
        })
        .collect();
    let mut h = Sha1::new();
    for p in &pieces {
        h.update(p);
    }
    Arc::new(Metainfo {
        info_hash: InfoHash(h.finalize().into()),
        info: Info {
            name: name.into(),
            piece_length,
            pieces,
            files: entries,
            private: false,
            multi_file: multi,
            layout,
        },
        info_bytes: Bytes::new(),
        trackers: vec![],
        comment: None,
        created_by: None,
        creation_date: None,
    })
}

/// Files of one torrent in memory.
#[derive(Debug, Clone)]
pub struct MemDisk {
    pub files: Vec<Vec<u8>>,
}

impl MemDisk {
    pub fn empty(meta: &Metainfo) -> Self {
        MemDisk {
            files: meta
                .info
                .files
                .iter()
                .map(|f| vec![0; f.length as usize])
                .collect(),
        }
    }

    pub fn full(meta: &Metainfo, data: &[u8]) -> Self {
        let mut files = Vec::new();
        let mut pos = 0;
        for f in &meta.info.files {
            files.push(data[pos..pos + f.length as usize].to_vec());
            pos += f.length as usize;
        }
        MemDisk { files }
    }

    pub fn read(&self, spans: &[FileSpan]) -> Vec<u8> {
        let mut out = Vec::new();
        for s in spans {
            out.extend_from_slice(
                &self.files[s.file][s.offset as usize..(s.offset + s.len) as usize],
            );
        }
        out
    }

    pub fn write(&mut self, spans: &[FileSpan], data: &[u8]) {
        let mut pos = 0;
        for s in spans {
            let len = s.len as usize;
            self.files[s.file][s.offset as usize..s.offset as usize + len]
                .copy_from_slice(&data[pos..pos + len]);
            pos += len;
        }
    }

    pub fn concat(&self) -> Vec<u8> {
        self.files.concat()
    }
}

/// Rewrites the data of a read of `piece` (to make a node lie).
pub type Corrupter = Box<dyn FnMut(u32, &mut Vec<u8>)>;

pub struct Node {
    pub session: Session,
    pub addr: SocketAddr,
    pub disk: MemDisk,
    pub torrent: TorrentId,
    pub events: Vec<Event>,
    deadline: Instant,
    /// Hook applied to the data of every block this node serves (to make it lie).
    pub corrupt: Option<Corrupter>,
    /// Every `Action::Send` of this node, with its time, when `record_sends` is set.
    pub sent: Vec<(Instant, ConnId, Bytes)>,
    pub record_sends: bool,
    /// What the node says on the wire, checked after every input (not for a magnet link:
    /// the checker needs the torrent's layout from the start; nor for a node that may
    /// encrypt: the checker reads plain BitTorrent).
    pub wire: Option<WireCheck>,
}

/// An HTTP tracker inside the swarm: answers every announce with the addresses of all
/// nodes and `body_extra` (e.g. `8:intervali1e`) and remembers when each node announced.
#[derive(Debug)]
pub struct Tracker {
    pub addr: SocketAddr,
    /// Bencoded keys (sorted before `peers`) added to every answer.
    pub body_extra: String,
    /// (node, time) of every announce received.
    pub log: Vec<(usize, Instant)>,
}

/// The announce URL of a [`Tracker`] at `addr`.
pub fn tracker_url(addr: SocketAddr) -> String {
    format!("http://{addr}/announce")
}

/// `meta` announcing to `url`.
pub fn with_tracker(meta: &Arc<Metainfo>, url: &str) -> Arc<Metainfo> {
    let mut m = (**meta).clone();
    m.trackers = vec![vec![url.to_string()]];
    Arc::new(m)
}

#[derive(Debug)]
enum Delivery {
    Input(usize, Input),
    Connect {
        from: usize,
        conn: ConnId,
        to: SocketAddr,
    },
}

pub struct Swarm {
    pub now: Instant,
    pub nodes: Vec<Node>,
    /// (node, conn) → (node, conn) for each open link, both directions.
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    queue: VecDeque<Delivery>,
    pub actions: u64,
    pub tracker: Option<Tracker>,
    /// Open connections to the tracker.
    tracker_conns: Vec<(usize, ConnId)>,
}

impl Swarm {
    pub fn new() -> Self {
        Swarm {
            now: Instant::ZERO,
            nodes: Vec::new(),
            links: BTreeMap::new(),
            queue: VecDeque::new(),
            actions: 0,
            tracker: None,
            tracker_conns: Vec::new(),
        }
    }

    /// Adds a node listening at 10.0.0.<index+1>:6881.
    pub fn add(
        &mut self,
        config: Config,
        meta: &Arc<Metainfo>,
        disk: MemDisk,
        options: TorrentOptions,
    ) -> usize {
        let i = self.nodes.len();
        let addr = SocketAddr::from(([10, 0, 0, i as u8 + 1], 6881));
        let mut seed = [0u8; 32];
        seed[0] = i as u8;
        // The checker reads plain BitTorrent: a node that may encrypt is not checked (the
        // encryption tests check the wire themselves, through the cipher).
        // Nor is a node that may use uTP: its peer bytes travel inside datagrams.
        let plaintext = config.encryption == crate::mse::Policy::Disable
            && config.transport == crate::transport::TransportPolicy::Tcp;
        let mut session = Session::new(
            Config {
                listen_port: 6881,
                ..config
            },
            self.now,
            seed,
        );
        let verified = options
            .have
            .clone()
            .unwrap_or_else(|| Bitfield::new(meta.num_pieces() as usize));
        let torrent = session
            .add_torrent(self.now, meta.clone(), options)
            .expect("a new torrent");
        let wire = plaintext.then(|| WireCheck::new(meta.layout().clone(), verified));
        self.nodes.push(Node {
            session,
            addr,
            disk,
            torrent,
            events: Vec::new(),
            deadline: self.now,
            corrupt: None,
            sent: Vec::new(),
            record_sends: false,
            wire,
        });
        i
    }

    /// Adds a seeder: a node whose disk holds all of `data` ([`seeder`] options).
    pub fn add_seed(&mut self, config: Config, meta: &Arc<Metainfo>, data: &[u8]) -> usize {
        self.add(config, meta, MemDisk::full(meta, data), seeder())
    }

    /// Adds a node at 10.0.0.<index+1>:6881 that knows only a magnet link: once the
    /// metadata is in, it gets an empty disk and downloads.
    pub fn add_magnet(&mut self, config: Config, link: &crate::magnet::MagnetLink) -> usize {
        let i = self.nodes.len();
        let addr = SocketAddr::from(([10, 0, 0, i as u8 + 1], 6881));
        let mut seed = [0u8; 32];
        seed[0] = i as u8;
        let mut session = Session::new(
            Config {
                listen_port: 6881,
                ..config
            },
            self.now,
            seed,
        );
        let torrent = session.add_magnet(self.now, link).expect("a new torrent");
        self.nodes.push(Node {
            session,
            addr,
            disk: MemDisk { files: Vec::new() },
            torrent,
            events: Vec::new(),
            deadline: self.now,
            corrupt: None,
            sent: Vec::new(),
            record_sends: false,
            wire: None,
        });
        i
    }

    /// Tells `node` about `peers`.
    pub fn add_peers(&mut self, node: usize, peers: &[SocketAddr]) {
        let now = self.now;
        let n = &mut self.nodes[node];
        n.session.add_peers(now, n.torrent, peers, false);
    }

    pub fn addr(&self, node: usize) -> SocketAddr {
        self.nodes[node].addr
    }

    fn input(&mut self, node: usize, input: Input) {
        if let Some(w) = self.nodes[node].wire.as_mut() {
            w.input(&input);
        }
        self.nodes[node].session.handle_input(input);
    }

    /// Drains one node's outputs into the delivery queue, then checks what it said.
    fn drain(&mut self, i: usize) {
        loop {
            let out = self.nodes[i].session.poll_output();
            if let Some(w) = self.nodes[i].wire.as_mut() {
                w.output(&out);
            }
            let action = match out {
                Output::Timeout(t) => {
                    self.nodes[i].deadline = t;
                    let n = &mut self.nodes[i];
                    if let Some(w) = n.wire.as_mut() {
                        w.after_drain(n.session.stats(n.torrent).as_ref());
                        let violations = w.take_violations();
                        assert!(violations.is_empty(), "node {i}: {violations:#?}");
                    }
                    return;
                }
                Output::Event(e) => {
                    if let Event::MetadataReceived { torrent, meta, .. } = &e {
                        let now = self.now;
                        let n = &mut self.nodes[i];
                        n.disk = MemDisk::empty(meta);
                        let options = TorrentOptions {
                            have: empty_have(meta),
                            seed: true,
                            files: None,
                            ..TorrentOptions::default()
                        };
                        n.session
                            .resume_with_metadata(now, *torrent, options)
                            .expect("resumed");
                    }
                    self.nodes[i].events.push(e);
                    continue;
                }
                Output::Action(a) => a,
            };
            self.actions += 1;
            let now = self.now;
            match action {
                Action::Connect { conn, target } => {
                    let Target::Addr(to) = target else {
                        self.queue.push_back(Delivery::Input(
                            i,
                            Input::Closed {
                                now,
                                conn,
                                error: Some("no DNS".into()),
                            },
                        ));
                        continue;
                    };
                    self.queue
                        .push_back(Delivery::Connect { from: i, conn, to });
                }
                Action::Send { conn, data } if self.tracker_conns.contains(&(i, conn)) => {
                    let answer = self.announce(i);
                    self.queue.push_back(Delivery::Input(
                        i,
                        Input::Received {
                            now,
                            conn,
                            data: answer,
                        },
                    ));
                    self.queue.push_back(Delivery::Input(
                        i,
                        Input::Sent {
                            now,
                            conn,
                            bytes: data.len(),
                        },
                    ));
                    self.queue.push_back(Delivery::Input(
                        i,
                        Input::Closed {
                            now,
                            conn,
                            error: None,
                        },
                    ));
                }
                Action::Send { conn, data } => {
                    let len = data.len();
                    if self.nodes[i].record_sends {
                        self.nodes[i].sent.push((now, conn, data.clone()));
                    }
                    if let Some(&(j, their)) = self.links.get(&(i, conn)) {
                        self.queue.push_back(Delivery::Input(
                            j,
                            Input::Received {
                                now,
                                conn: their,
                                data,
                            },
                        ));
                    }
                    self.queue.push_back(Delivery::Input(
                        i,
                        Input::Sent {
                            now,
                            conn,
                            bytes: len,
                        },
                    ));
                }
                Action::Close { conn } => {
                    self.tracker_conns.retain(|&c| c != (i, conn));
                    if let Some((j, their)) = self.links.remove(&(i, conn)) {
                        self.links.remove(&(j, their));
                        self.queue.push_back(Delivery::Input(
                            j,
                            Input::Closed {
                                now,
                                conn: their,
                                error: None,
                            },
                        ));
                    }
                }
                Action::Write {
                    op,
                    spans,
                    data,
                    expected,
                    ..
                } => {
                    let bytes: Vec<u8> = data.iter().flat_map(|b| b.iter().copied()).collect();
                    let result = match expected {
                        Some(h) if <[u8; 20]>::from(Sha1::digest(&bytes)) != h => {
                            DiskResult::HashMismatch
                        }
                        _ => {
                            self.nodes[i].disk.write(&spans, &bytes);
                            DiskResult::Ok
                        }
                    };
                    self.queue
                        .push_back(Delivery::Input(i, Input::Disk { now, op, result }));
                }
                Action::Verify {
                    op,
                    spans,
                    expected,
                    ..
                } => {
                    let bytes = self.nodes[i].disk.read(&spans);
                    let ok = <[u8; 20]>::from(Sha1::digest(&bytes)) == expected;
                    let result = if ok {
                        DiskResult::Ok
                    } else {
                        DiskResult::HashMismatch
                    };
                    self.queue
                        .push_back(Delivery::Input(i, Input::Disk { now, op, result }));
                }
                Action::Read {
                    op, piece, spans, ..
                } => {
                    let mut bytes = self.nodes[i].disk.read(&spans);
                    if let Some(f) = self.nodes[i].corrupt.as_mut() {
                        f(piece, &mut bytes);
                    }
                    let result = DiskResult::Data(Bytes::from(bytes));
                    self.queue
                        .push_back(Delivery::Input(i, Input::Disk { now, op, result }));
                }
                Action::SendDatagram { to, data } => {
                    // Datagrams go from the sender's listening address (the UDP socket
                    // shares its port) to the node at `to`, if any; the rest are lost.
                    let from = self.nodes[i].addr;
                    if let Some(j) = self.nodes.iter().position(|n| n.addr == to) {
                        self.queue
                            .push_back(Delivery::Input(j, Input::Datagram { now, from, data }));
                    }
                }
                Action::Resolve { op, .. } => self.queue.push_back(Delivery::Input(
                    i,
                    Input::Resolved {
                        now,
                        op,
                        result: Err("no DNS".into()),
                    },
                )),
            }
        }
    }

    fn deliver(&mut self, d: Delivery) {
        let now = self.now;
        match d {
            Delivery::Input(j, input) => {
                self.input(j, input);
                self.drain(j);
            }
            Delivery::Connect { from, conn, to }
                if self.tracker.as_ref().is_some_and(|t| t.addr == to) =>
            {
                self.tracker_conns.push((from, conn));
                self.input(from, Input::Connected { now, conn });
                self.drain(from);
            }
            Delivery::Connect { from, conn, to } => {
                let from_addr = SocketAddr::new(self.nodes[from].addr.ip(), 40000 + conn.0 as u16);
                let target = self.nodes.iter().position(|n| n.addr == to);
                let accepted = target
                    .and_then(|j| self.nodes[j].session.accept(now, from_addr).map(|c| (j, c)));
                match accepted {
                    Some((j, their)) => {
                        self.links.insert((from, conn), (j, their));
                        self.links.insert((j, their), (from, conn));
                        self.input(from, Input::Connected { now, conn });
                        self.drain(from);
                    }
                    None => {
                        self.input(
                            from,
                            Input::Closed {
                                now,
                                conn,
                                error: Some("connection refused".into()),
                            },
                        );
                        self.drain(from);
                    }
                }
            }
        }
    }

    /// Runs until `done` holds or `limit` of virtual time passes; returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Swarm) -> bool) -> bool {
        let end = self.now + limit;
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
        loop {
            while let Some(d) = self.queue.pop_front() {
                self.deliver(d);
                if done(self) {
                    return true;
                }
            }
            if done(self) {
                return true;
            }
            let next = self
                .nodes
                .iter()
                .map(|n| n.deadline)
                .min()
                .unwrap_or(Instant::FAR_FUTURE);
            if next > end {
                self.now = end;
                return false;
            }
            self.now = self.now.max(next);
            for i in 0..self.nodes.len() {
                if self.nodes[i].deadline <= self.now {
                    let now = self.now;
                    self.input(i, Input::Timeout { now });
                    self.drain(i);
                }
            }
        }
    }

    /// The tracker's answer to an announce of `node`: every node's address.
    fn announce(&mut self, node: usize) -> Bytes {
        let now = self.now;
        let mut peers = Vec::new();
        for n in &self.nodes {
            if let SocketAddr::V4(a) = n.addr {
                peers.extend_from_slice(&a.ip().octets());
                peers.extend_from_slice(&a.port().to_be_bytes());
            }
        }
        let Some(t) = self.tracker.as_mut() else {
            return Bytes::new();
        };
        t.log.push((node, now));
        let mut body = format!("d{}5:peers{}:", t.body_extra, peers.len()).into_bytes();
        body.extend_from_slice(&peers);
        body.push(b'e');
        let mut out =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend_from_slice(&body);
        Bytes::from(out)
    }

    pub fn complete(&self, node: usize) -> bool {
        self.nodes[node]
            .events
            .iter()
            .any(|e| matches!(e, Event::Complete { .. }))
    }
}

/// What a node sent (with `record_sends`), decoded: (time, connection, message) for every whole message.
pub fn decoded_sends(node: &Node) -> Vec<(Instant, ConnId, Message)> {
    let mut decoders: BTreeMap<ConnId, (Decoder, bool)> = BTreeMap::new();
    let mut out = Vec::new();
    for (at, conn, data) in &node.sent {
        let (d, handshaken) = decoders
            .entry(*conn)
            .or_insert_with(|| (Decoder::new(), false));
        d.feed(data.clone());
        if !*handshaken {
            match d.handshake() {
                Ok(Some(_)) => *handshaken = true,
                Ok(None) => continue,
                Err(e) => panic!("our own handshake does not decode: {e}"),
            }
        }
        while let Some(m) = d.next_message().expect("our own messages decode") {
            out.push((*at, *conn, m));
        }
    }
    out
}

/// Options for a node that has everything (verified by the check).
pub fn seeder() -> TorrentOptions {
    TorrentOptions {
        have: None,
        seed: true,
        files: None,
        ..TorrentOptions::default()
    }
}

pub fn empty_have(meta: &Metainfo) -> Option<Bitfield> {
    Some(Bitfield::new(meta.num_pieces() as usize))
}
