//! A session with scripted connections in both directions: the test dials into it, is
//! dialled by it, reads every byte it sends per connection and answers by hand. Disk
//! actions are answered at once from memory (reads) or with success (writes).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::harness::{MemDisk, content, metainfo};
use crate::api::{Action, DiskResult, Event, Input, Output, Target};
use crate::bitfield::Bitfield;
use crate::config::{Config, TorrentOptions};
use crate::id::{ConnId, TorrentId};
use crate::metainfo::Metainfo;
use crate::mse::StreamCipher;
use crate::session::Session;
use crate::time::{Duration, Instant};
use crate::wire::{Decoder, Handshake, Message};

pub struct Rig {
    pub session: Session,
    pub metas: Vec<Arc<Metainfo>>,
    pub torrents: Vec<TorrentId>,
    disks: BTreeMap<TorrentId, MemDisk>,
    pub now: Instant,
    /// Everything the session sent, per connection, as it went on the wire.
    pub out: BTreeMap<ConnId, Vec<u8>>,
    /// How much of `out` each connection's reader has taken.
    taken: BTreeMap<ConnId, usize>,
    pub closed: BTreeSet<ConnId>,
    /// `Connect` actions, in order.
    pub connects: Vec<(ConnId, SocketAddr)>,
    pub events: Vec<Event>,
    /// Report every `Send` written at once (else the test reports with `sent`).
    pub ack_sends: bool,
}

/// A torrent of `len` bytes in pieces of `piece` bytes; `seed`: the session has it all.
pub struct TorrentSpec {
    pub len: usize,
    pub piece: u32,
    pub seed: bool,
}

impl Rig {
    pub fn new(config: Config, specs: &[TorrentSpec]) -> Rig {
        let now = Instant::ZERO;
        let mut rig = Rig {
            session: Session::new(config, now, [5; 32]),
            metas: Vec::new(),
            torrents: Vec::new(),
            disks: BTreeMap::new(),
            now,
            out: BTreeMap::new(),
            taken: BTreeMap::new(),
            closed: BTreeSet::new(),
            connects: Vec::new(),
            events: Vec::new(),
            ack_sends: true,
        };
        for (i, spec) in specs.iter().enumerate() {
            let data = content(spec.len, 40 + i as u64);
            let name = format!("t{i}");
            let meta = metainfo(&name, &[("f", spec.len as u64)], spec.piece, &data);
            let n = meta.layout().num_pieces() as usize;
            let have = if spec.seed {
                Bitfield::full(n)
            } else {
                Bitfield::new(n)
            };
            let disk = if spec.seed {
                MemDisk::full(&meta, &data)
            } else {
                MemDisk::empty(&meta)
            };
            let id = rig
                .session
                .add_torrent(
                    now,
                    meta.clone(),
                    TorrentOptions {
                        have: Some(have),
                        seed: true,
                        files: None,
                        ..TorrentOptions::default()
                    },
                )
                .expect("a new torrent");
            rig.disks.insert(id, disk);
            rig.metas.push(meta);
            rig.torrents.push(id);
        }
        rig.drain();
        rig
    }

    pub fn drain(&mut self) {
        loop {
            match self.session.poll_output() {
                Output::Timeout(_) => return,
                Output::Event(e) => self.events.push(e),
                Output::Action(a) => self.act(a),
            }
        }
    }

    fn act(&mut self, action: Action) {
        let now = self.now;
        let (op, result) = match action {
            Action::Send { conn, data } => {
                assert!(!self.closed.contains(&conn), "sent on a closed connection");
                self.out.entry(conn).or_default().extend_from_slice(&data);
                if self.ack_sends {
                    self.session.handle_input(Input::Sent {
                        now,
                        conn,
                        bytes: data.len(),
                    });
                }
                return;
            }
            Action::Close { conn } => {
                self.closed.insert(conn);
                return;
            }
            Action::Connect {
                conn,
                target: Target::Addr(addr),
            } => {
                self.connects.push((conn, addr));
                return;
            }
            Action::Read {
                op, torrent, spans, ..
            } => {
                let data = self.disks[&torrent].read(&spans);
                (op, DiskResult::Data(Bytes::from(data)))
            }
            Action::Write { op, .. } => (op, DiskResult::Ok),
            Action::Verify { op, .. } => (op, DiskResult::Ok),
            _ => return,
        };
        self.session.handle_input(Input::Disk { now, op, result });
    }

    /// A peer at `addr` dials the session.
    pub fn accept(&mut self, addr: SocketAddr) -> ConnId {
        let conn = self.session.accept(self.now, addr).expect("accepted");
        self.drain();
        conn
    }

    /// Tells the session to dial `addr` for torrent `t`; returns the connection once up.
    pub fn dial(&mut self, t: usize, addr: SocketAddr) -> ConnId {
        self.session
            .add_peers(self.now, self.torrents[t], &[addr], false);
        self.drain();
        let conn = self.next_connect(addr).expect("the session dials");
        self.connected(conn);
        conn
    }

    /// The next connection the session asked to open to `addr`, if it asked since the last call.
    pub fn next_connect(&mut self, addr: SocketAddr) -> Option<ConnId> {
        let i = self.connects.iter().position(|(_, a)| *a == addr)?;
        Some(self.connects.remove(i).0)
    }

    pub fn connected(&mut self, conn: ConnId) {
        let now = self.now;
        self.session.handle_input(Input::Connected { now, conn });
        self.drain();
    }

    pub fn feed(&mut self, conn: ConnId, bytes: &[u8]) {
        let now = self.now;
        self.session.handle_input(Input::Received {
            now,
            conn,
            data: Bytes::copy_from_slice(bytes),
        });
        self.drain();
    }

    /// The remote closes `conn`.
    pub fn remote_close(&mut self, conn: ConnId) {
        let now = self.now;
        self.closed.insert(conn);
        self.session.handle_input(Input::Closed {
            now,
            conn,
            error: None,
        });
        self.drain();
    }

    /// Reports `bytes` of `conn` written.
    pub fn sent(&mut self, conn: ConnId, bytes: usize) {
        let now = self.now;
        self.session.handle_input(Input::Sent { now, conn, bytes });
        self.drain();
    }

    pub fn wait(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(250);
            let now = self.now;
            self.session.handle_input(Input::Timeout { now });
            self.drain();
        }
    }

    /// The bytes the session sent on `conn` since the last call.
    pub fn take(&mut self, conn: ConnId) -> Vec<u8> {
        let all = self.out.get(&conn).map(Vec::as_slice).unwrap_or_default();
        let from = self.taken.insert(conn, all.len()).unwrap_or(0);
        all[from..].to_vec()
    }
}

/// The scripted side of one connection after its handshakes: it encrypts what it sends
/// and decrypts and decodes what the session sends, when the stream is RC4.
pub struct Remote {
    pub conn: ConnId,
    pub cipher: Option<StreamCipher>,
    pub decoder: Decoder,
}

impl Remote {
    /// `leftover`: plaintext of the session's stream already taken by the handshake.
    pub fn new(conn: ConnId, cipher: Option<StreamCipher>, leftover: &[u8]) -> Remote {
        let mut decoder = Decoder::new();
        decoder.feed(Bytes::copy_from_slice(leftover));
        Remote {
            conn,
            cipher,
            decoder,
        }
    }

    /// Sends raw stream bytes (encrypted if the stream is).
    pub fn send_raw(&mut self, rig: &mut Rig, bytes: &[u8]) {
        let mut b = bytes.to_vec();
        if let Some(c) = self.cipher.as_mut() {
            c.encrypt(&mut b);
        }
        rig.feed(self.conn, &b);
    }

    pub fn send(&mut self, rig: &mut Rig, m: Message) {
        let mut b = BytesMut::new();
        m.encode(&mut b);
        self.send_raw(rig, &b);
    }

    /// Takes what the session sent since the last call into the decoder.
    pub fn pull(&mut self, rig: &mut Rig) {
        let mut b = rig.take(self.conn);
        if let Some(c) = self.cipher.as_mut() {
            c.decrypt(&mut b);
        }
        self.decoder.feed(Bytes::from(b));
    }

    /// The session's handshake (call once, first).
    pub fn handshake(&mut self, rig: &mut Rig) -> Handshake {
        self.pull(rig);
        self.decoder
            .handshake()
            .expect("a valid handshake")
            .expect("a whole handshake")
    }

    /// Every whole message the session sent since the last call.
    pub fn messages(&mut self, rig: &mut Rig, num_pieces: u32) -> Vec<Message> {
        self.pull(rig);
        self.decoder.set_num_pieces(num_pieces);
        let mut out = Vec::new();
        while let Some(m) = self.decoder.next_message().expect("valid messages") {
            out.push(m);
        }
        out
    }
}

/// A BitTorrent handshake for `info_hash` from peer id `id`, with the Fast bit if `fast`.
pub fn handshake(info_hash: crate::id::InfoHash, id: u8, fast: bool) -> [u8; 68] {
    let mut hs = Handshake {
        reserved: [0; 8],
        info_hash,
        peer_id: crate::id::PeerId([id; 20]),
    };
    if fast {
        hs.set(Handshake::FAST);
    }
    hs.encode()
}

/// The plaintext BitTorrent handshake's first 20 bytes.
pub const PLAIN_PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";

/// Whether `hay` holds `needle` anywhere.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
