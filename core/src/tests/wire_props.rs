//! A session among several scripted remote peers, driven by proptest-chosen interleavings
//! of their messages (bitfields, haves, chokes, interest, requests, cancels, right and
//! corrupt blocks), disconnects and reconnects, disk answers in any order, sends reported
//! and time passing. After every input the wire checker judges everything the session
//! sent and received (see `crate::testing::wire_check`), and at the end every piece the
//! session verified holds the right data.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use sha1::{Digest, Sha1};

use super::harness::{content, metainfo};
use crate::api::{Action, DiskResult, Input, Output};
use crate::bitfield::Bitfield;
use crate::config::{Config, TorrentOptions};
use crate::id::{ConnId, OpId, PeerId, TorrentId};
use crate::metainfo::Metainfo;
use crate::session::Session;
use crate::testing::WireCheck;
use crate::time::{Duration, Instant};
use crate::wire::{BlockRequest, Decoder, Handshake, Message};

const PIECE: u32 = 32 * 1024;
const PIECES: usize = 6;
const BLOCK: u32 = 16 * 1024;
const REMOTES: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    /// Remote `p` connects (if it is not connected) and announces its pieces.
    Connect(usize),
    Unchoke(usize),
    Choke(usize),
    Interested(usize),
    NotInterested(usize),
    /// Remote `p` gets piece `x` and announces it.
    Have(usize, usize),
    /// Remote `p` answers the oldest request it holds from the session (right or corrupt
    /// data), if it has the piece and does not choke the session.
    Serve(usize, bool),
    /// Remote `p` asks for block `b` of piece `x`.
    Request(usize, usize, usize),
    /// Remote `p` withdraws its last request.
    Cancel(usize),
    /// Remote `p` disconnects.
    Close(usize),
    /// The driver writes everything queued for remote `p`.
    Sent(usize),
    /// The disk answers its `k`-th pending job (modulo their number).
    Disk(usize),
    /// Time passes, in tenths of a second.
    Time(u8),
}

fn step() -> impl Strategy<Value = Step> {
    let p = 0..REMOTES;
    prop_oneof![
        2 => p.clone().prop_map(Step::Connect),
        2 => p.clone().prop_map(Step::Unchoke),
        1 => p.clone().prop_map(Step::Choke),
        1 => p.clone().prop_map(Step::Interested),
        1 => p.clone().prop_map(Step::NotInterested),
        1 => (p.clone(), 0..PIECES).prop_map(|(p, x)| Step::Have(p, x)),
        5 => (p.clone(), prop::bool::weighted(0.15)).prop_map(|(p, c)| Step::Serve(p, c)),
        2 => (p.clone(), 0..PIECES, 0..2usize).prop_map(|(p, x, b)| Step::Request(p, x, b)),
        1 => p.clone().prop_map(Step::Cancel),
        1 => p.clone().prop_map(Step::Close),
        2 => p.clone().prop_map(Step::Sent),
        4 => (0..8usize).prop_map(Step::Disk),
        2 => any::<u8>().prop_map(|t| Step::Time(t % 50)),
    ]
}

/// A scripted remote peer, as the driver plays it.
#[derive(Debug)]
struct Remote {
    addr: SocketAddr,
    conn: Option<ConnId>,
    has: Bitfield,
    /// Decodes what the session sends it.
    decoder: Decoder,
    choking: bool,
    /// The session's requests it holds, oldest first.
    requests: VecDeque<BlockRequest>,
    /// Its own requests, for cancels.
    asked: Vec<BlockRequest>,
    /// Bytes handed to the driver for it and not yet reported written.
    unsent: usize,
}

struct Driver {
    now: Instant,
    session: Session,
    torrent: TorrentId,
    meta: std::sync::Arc<Metainfo>,
    data: Vec<u8>,
    disk: Vec<u8>,
    remotes: Vec<Remote>,
    jobs: Vec<(OpId, DiskResult)>,
    /// Dials to refuse once the outputs are drained (the session learns no address here
    /// that anything listens on).
    refused: Vec<ConnId>,
    check: WireCheck,
}

fn encode(msgs: &[Message]) -> Bytes {
    let mut out = BytesMut::new();
    for m in msgs {
        m.encode(&mut out);
    }
    out.freeze()
}

impl Driver {
    fn new(have: &Bitfield, remote_has: &[Bitfield]) -> Self {
        let len = PIECE as usize * PIECES - 1000;
        let data = content(len, 5);
        let meta = metainfo("t", &[("f", len as u64)], PIECE, &data);
        let mut disk = vec![0u8; len];
        for p in have.ones() {
            let r = p * PIECE as usize..((p + 1) * PIECE as usize).min(len);
            disk[r.clone()].copy_from_slice(&data[r]);
        }
        let now = Instant::ZERO;
        let config = Config {
            max_hash_failures: 2,
            ..Config::default()
        };
        let mut session = Session::new(config, now, [9; 32]);
        let torrent = session
            .add_torrent(
                now,
                meta.clone(),
                TorrentOptions {
                    have: Some(have.clone()),
                    seed: true,
                    files: None,
                    ..TorrentOptions::default()
                },
            )
            .expect("a torrent");
        let check = WireCheck::new(meta.layout().clone(), have.clone());
        let remotes = remote_has
            .iter()
            .enumerate()
            .map(|(i, has)| Remote {
                addr: SocketAddr::from(([10, 0, 1, i as u8 + 1], 7000)),
                conn: None,
                has: has.clone(),
                decoder: Decoder::new(),
                choking: true,
                requests: VecDeque::new(),
                asked: Vec::new(),
                unsent: 0,
            })
            .collect();
        let mut d = Driver {
            now,
            session,
            torrent,
            meta,
            data,
            disk,
            remotes,
            jobs: Vec::new(),
            refused: Vec::new(),
            check,
        };
        d.drain();
        d
    }

    fn input(&mut self, input: Input) {
        self.check.input(&input);
        self.session.handle_input(input);
        self.drain();
    }

    fn drain(&mut self) {
        loop {
            let out = self.session.poll_output();
            self.check.output(&out);
            match out {
                Output::Timeout(_) => break,
                Output::Event(_) => {}
                Output::Action(a) => self.act(a),
            }
        }
        self.check
            .after_drain(self.session.stats(self.torrent).as_ref());
    }

    fn remote_of(&mut self, conn: ConnId) -> Option<&mut Remote> {
        self.remotes.iter_mut().find(|r| r.conn == Some(conn))
    }

    fn piece_bytes(&self, piece: u32) -> std::ops::Range<usize> {
        let start = piece as usize * PIECE as usize;
        start..(start + PIECE as usize).min(self.data.len())
    }

    fn act(&mut self, a: Action) {
        match a {
            Action::Send { conn, data } => {
                if let Some(r) = self.remote_of(conn) {
                    r.unsent += data.len();
                    r.decoder.feed(data);
                    if r.decoder.handshake().is_err() {
                        // Already past it.
                    }
                    while let Ok(Some(msg)) = r.decoder.next_message() {
                        match msg {
                            Message::Request(req) => r.requests.push_back(req),
                            Message::Cancel(req) => r.requests.retain(|q| *q != req),
                            _ => {}
                        }
                    }
                }
            }
            Action::Close { conn } => {
                if let Some(r) = self.remote_of(conn) {
                    r.conn = None;
                }
            }
            Action::Connect { conn, .. } => self.refused.push(conn),
            Action::Write {
                op,
                piece,
                offset,
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
                        let start = self.piece_bytes(piece).start + offset as usize;
                        self.disk[start..start + bytes.len()].copy_from_slice(&bytes);
                        DiskResult::Ok
                    }
                };
                self.jobs.push((op, result));
            }
            Action::Verify {
                op,
                piece,
                expected,
                ..
            } => {
                let r = self.piece_bytes(piece);
                let ok = <[u8; 20]>::from(Sha1::digest(&self.disk[r])) == expected;
                let result = if ok {
                    DiskResult::Ok
                } else {
                    DiskResult::HashMismatch
                };
                self.jobs.push((op, result));
            }
            Action::Read {
                op,
                piece,
                offset,
                len,
                ..
            } => {
                let start = self.piece_bytes(piece).start + offset as usize;
                let bytes = Bytes::copy_from_slice(&self.disk[start..start + len as usize]);
                self.jobs.push((op, DiskResult::Data(bytes)));
            }
            Action::SendDatagram { .. } | Action::Resolve { .. } => {}
        }
    }

    fn send(&mut self, p: usize, msgs: &[Message]) {
        let Some(conn) = self.remotes[p].conn else {
            return;
        };
        let now = self.now;
        self.input(Input::Received {
            now,
            conn,
            data: encode(msgs),
        });
    }

    fn step(&mut self, s: &Step) {
        let now = self.now;
        match *s {
            Step::Connect(p) => {
                if self.remotes[p].conn.is_some() {
                    return;
                }
                let Some(conn) = self.session.accept(now, self.remotes[p].addr) else {
                    return;
                };
                let r = &mut self.remotes[p];
                r.conn = Some(conn);
                r.decoder = Decoder::new();
                r.decoder.set_num_pieces(PIECES as u32);
                r.choking = true;
                r.requests.clear();
                r.asked.clear();
                r.unsent = 0;
                let hs = Handshake {
                    reserved: [0; 8],
                    info_hash: self.meta.info_hash,
                    peer_id: PeerId([p as u8 + 1; 20]),
                };
                let mut bytes = BytesMut::from(&hs.encode()[..]);
                Message::Bitfield(Bytes::from(r.has.to_bytes())).encode(&mut bytes);
                self.input(Input::Received {
                    now,
                    conn,
                    data: bytes.freeze(),
                });
            }
            Step::Unchoke(p) => {
                self.remotes[p].choking = false;
                self.send(p, &[Message::Unchoke]);
            }
            Step::Choke(p) => {
                self.remotes[p].choking = true;
                self.remotes[p].requests.clear();
                self.send(p, &[Message::Choke]);
            }
            Step::Interested(p) => self.send(p, &[Message::Interested]),
            Step::NotInterested(p) => self.send(p, &[Message::NotInterested]),
            Step::Have(p, x) => {
                if self.remotes[p].has.set(x) {
                    self.send(p, &[Message::Have(x as u32)]);
                }
            }
            Step::Serve(p, corrupt) => {
                let r = &mut self.remotes[p];
                if r.conn.is_none() || r.choking {
                    return;
                }
                let Some(req) = r.requests.pop_front() else {
                    return;
                };
                if !r.has.get(req.piece as usize) {
                    return;
                }
                let start = self.piece_bytes(req.piece).start + req.offset as usize;
                let mut block = self.data[start..start + req.len as usize].to_vec();
                if corrupt {
                    block[0] ^= 0xff;
                }
                self.send(
                    p,
                    &[Message::Piece {
                        piece: req.piece,
                        offset: req.offset,
                        data: Bytes::from(block),
                    }],
                );
            }
            Step::Request(p, x, b) => {
                let piece = x as u32;
                let plen = self.piece_bytes(piece).len() as u32;
                let offset = b as u32 * BLOCK;
                if offset >= plen {
                    return;
                }
                let req = BlockRequest {
                    piece,
                    offset,
                    len: BLOCK.min(plen - offset),
                };
                self.remotes[p].asked.push(req);
                self.send(p, &[Message::Request(req)]);
            }
            Step::Cancel(p) => {
                if let Some(req) = self.remotes[p].asked.pop() {
                    self.send(p, &[Message::Cancel(req)]);
                }
            }
            Step::Close(p) => {
                if let Some(conn) = self.remotes[p].conn.take() {
                    self.input(Input::Closed {
                        now,
                        conn,
                        error: None,
                    });
                }
            }
            Step::Sent(p) => {
                let r = &mut self.remotes[p];
                if let (Some(conn), n) = (r.conn, std::mem::take(&mut r.unsent))
                    && n > 0
                {
                    self.input(Input::Sent {
                        now,
                        conn,
                        bytes: n,
                    });
                }
            }
            Step::Disk(k) => {
                if self.jobs.is_empty() {
                    return;
                }
                let (op, result) = self.jobs.remove(k % self.jobs.len());
                self.input(Input::Disk { now, op, result });
            }
            Step::Time(t) => {
                self.now += Duration::from_millis(100 * u64::from(t));
                let now = self.now;
                self.input(Input::Timeout { now });
            }
        }
    }
}

fn bits(mask: u8) -> Bitfield {
    let mut b = Bitfield::new(PIECES);
    for p in 0..PIECES {
        if mask & (1 << p) != 0 {
            b.set(p);
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn the_session_keeps_the_protocol_with_several_peers(
        have in any::<u8>(),
        remote_has in prop::collection::vec(any::<u8>(), REMOTES),
        steps in prop::collection::vec(step(), 1..300),
    ) {
        let remote_has: Vec<Bitfield> = remote_has.iter().map(|&m| bits(m)).collect();
        let mut d = Driver::new(&bits(have), &remote_has);
        for (i, s) in steps.iter().enumerate() {
            d.step(s);
            while let Some(conn) = d.refused.pop() {
                let now = d.now;
                d.input(Input::Closed { now, conn, error: Some("refused".into()) });
            }
            let v = d.check.take_violations();
            prop_assert!(v.is_empty(), "after step {i} {s:?}: {v:#?}");
        }
        // Every verified piece holds the right bytes.
        let verified = d.session.have(d.torrent).cloned().unwrap_or_else(|| Bitfield::new(PIECES));
        for p in verified.ones() {
            let r = d.piece_bytes(p as u32);
            prop_assert!(d.disk[r.clone()] == d.data[r], "piece {p} verified with wrong data");
        }
    }
}
