//! Property tests.
//!
//! 1. One real `Session` against a scripted remote peer: random sequences of valid and
//!    invalid wire messages (whole or split), time jumps, `Sent` reports and disk results
//!    (right, wrong, errors) never panic it and keep its invariants.
//! 2. Random fault schedules over small real-payload swarms still finish with correct data.
//!
//! A failing case prints its seed / schedule; shrunk failures are kept as plain `#[test]`s
//! at the end of this file.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use tessera_core::wire::{BlockRequest, Handshake, Message};
use tessera_core::{
    Action, Bitfield, Config, ConnId, DiskError, DiskErrorKind, DiskResult, Duration, Input,
    Instant, OpId, Output, PeerId, Session, TorrentId, TorrentOptions,
};
use tessera_sim::disk::Disk;
use tessera_sim::payload::{Mode, Payload, Variant};
use tessera_sim::{Faults, Scenario, run};

#[derive(Debug, Clone)]
enum Step {
    /// A message from the remote, optionally split in two `Received` inputs.
    Msg(Wire, bool),
    /// Time passes.
    Tick(u64),
    /// The runtime reports `n` bytes sent.
    Sent(usize),
    /// Answer the `i`-th pending disk operation.
    Disk(usize, Answer),
    /// The remote closes; a new remote connects.
    Reconnect,
}

#[derive(Debug, Clone)]
enum Wire {
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Vec<u8>),
    HaveAll,
    Request(u32, u32, u32),
    Cancel(u32, u32, u32),
    /// A block: good data, corrupt data, or the wrong length.
    Piece(u32, u32, u8),
    Reject(u32, u32, u32),
    KeepAlive,
    Unknown(u8, u16),
    /// Raw bytes: a length prefix and some payload (oversized, truncated, nonsense).
    Raw(u32, Vec<u8>),
}

#[derive(Debug, Clone, Copy)]
enum Answer {
    Right,
    Mismatch,
    Error,
    ShortRead,
}

fn wire() -> impl Strategy<Value = Wire> {
    let idx = 0u32..12; // pieces 0..8 are real, 8.. are out of range
    let off = prop_oneof![Just(0u32), Just(16384), Just(5), Just(1 << 20)];
    let len = prop_oneof![Just(16384u32), Just(0), Just(100), Just(1 << 20)];
    prop_oneof![
        1 => Just(Wire::Choke),
        3 => Just(Wire::Unchoke),
        2 => Just(Wire::Interested),
        1 => Just(Wire::NotInterested),
        1 => idx.clone().prop_map(Wire::Have),
        1 => prop::collection::vec(any::<u8>(), 0..4).prop_map(Wire::Bitfield),
        1 => Just(Wire::HaveAll),
        3 => (idx.clone(), off.clone(), len.clone()).prop_map(|(p, o, l)| Wire::Request(p, o, l)),
        1 => (idx.clone(), off.clone(), len.clone()).prop_map(|(p, o, l)| Wire::Cancel(p, o, l)),
        4 => (0u32..9, prop_oneof![Just(0u32), Just(16384), Just(7)], 0u8..3)
            .prop_map(|(p, o, k)| Wire::Piece(p, o, k)),
        1 => (idx, off, len).prop_map(|(p, o, l)| Wire::Reject(p, o, l)),
        1 => Just(Wire::KeepAlive),
        1 => (21u8..=255, 0u16..300).prop_map(|(id, n)| Wire::Unknown(id, n)),
        1 => (any::<u32>(), prop::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(l, b)| Wire::Raw(l, b)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => (wire(), any::<bool>()).prop_map(|(w, split)| Step::Msg(w, split)),
        3 => prop_oneof![Just(1u64), Just(600), Just(11_000), Just(200_000)].prop_map(Step::Tick),
        2 => (0usize..40_000).prop_map(Step::Sent),
        4 => (0usize..4, prop_oneof![
            6 => Just(Answer::Right),
            1 => Just(Answer::Mismatch),
            1 => Just(Answer::Error),
            1 => Just(Answer::ShortRead),
        ]).prop_map(|(i, a)| Step::Disk(i, a)),
        1 => Just(Step::Reconnect),
    ]
}

/// The session under test, the remote's connection, and what the test knows.
struct Harness {
    payload: Payload,
    session: Session,
    torrent: TorrentId,
    disk: Disk,
    now: Instant,
    conn: Option<ConnId>,
    /// Connections the core closed or was told are closed.
    closed: Vec<ConnId>,
    pending: Vec<(OpId, Action)>,
    prev_have: Vec<u64>,
    prev_requests: BTreeMap<ConnId, usize>,
    remote: u16,
}

impl Harness {
    fn new(seeding: bool) -> Harness {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let payload = Payload::new(Mode::Virtual, 8 * 32768, 32768, true, &mut rng);
        let config = Config {
            max_peer_requests: 20,
            ..Config::default()
        };
        let mut session = Session::new(config, Instant::ZERO, [7; 32]);
        let n = payload.num_pieces() as usize;
        let mut have = Bitfield::new(n);
        let mut disk = Disk::empty(&payload);
        if seeding {
            have = Bitfield::full(n);
            disk = Disk::full(&payload);
        } else {
            // Half the pieces, so that both directions have something to do.
            let full = Disk::full(&payload);
            for p in 0..4u32 {
                have.set(p as usize);
                let data = full.read(&payload, p, 0, 32768, Variant::Valid);
                let hash = payload.meta.piece_hash(p);
                assert_eq!(disk.write(&payload, p, 0, &[data], hash), DiskResult::Ok);
            }
        }
        let torrent = session
            .add_torrent(
                Instant::ZERO,
                payload.meta.clone(),
                TorrentOptions {
                    have: Some(have),
                    seed: true,
                    files: None,
                    ..TorrentOptions::default()
                },
            )
            .expect("a new session holds no torrent");
        let mut h = Harness {
            payload,
            session,
            torrent,
            disk,
            now: Instant::ZERO,
            conn: None,
            closed: Vec::new(),
            pending: Vec::new(),
            prev_have: Vec::new(),
            prev_requests: BTreeMap::new(),
            remote: 40000,
        };
        h.drain().expect("initial drain");
        h.connect().expect("connect");
        h
    }

    fn connect(&mut self) -> Result<(), TestCaseError> {
        self.remote += 1;
        let addr = SocketAddr::from(([10, 9, 9, 9], self.remote));
        let conn = self.session.accept(self.now, addr);
        self.conn = conn;
        if let Some(c) = conn {
            let hs = Handshake {
                reserved: [0; 8],
                info_hash: self.payload.meta.info_hash,
                peer_id: PeerId([self.remote as u8; 20]),
            }
            .encode();
            self.input(Input::Received {
                now: self.now,
                conn: c,
                data: Bytes::copy_from_slice(&hs),
            })?;
        }
        Ok(())
    }

    fn input(&mut self, input: Input) -> Result<(), TestCaseError> {
        self.session.handle_input(input);
        self.drain()
    }

    fn drain(&mut self) -> Result<(), TestCaseError> {
        loop {
            match self.session.poll_output() {
                Output::Timeout(t) => {
                    prop_assert!(t >= self.now, "deadline in the past");
                    break;
                }
                Output::Event(_) => {}
                Output::Action(a) => match a {
                    Action::Send { conn, .. } => {
                        prop_assert!(!self.closed.contains(&conn), "send on closed {conn:?}");
                        prop_assert!(Some(conn) == self.conn, "send on unknown {conn:?}");
                    }
                    Action::Close { conn } => {
                        prop_assert!(!self.closed.contains(&conn), "closed twice {conn:?}");
                        self.closed.push(conn);
                        if self.conn == Some(conn) {
                            self.conn = None;
                        }
                    }
                    Action::Connect { conn, .. } => {
                        // Nobody answers dials: they fail at once.
                        self.closed.push(conn);
                        self.session.handle_input(Input::Closed {
                            now: self.now,
                            conn,
                            error: Some("unreachable".into()),
                        });
                    }
                    Action::Read { op, .. }
                    | Action::Write { op, .. }
                    | Action::Verify { op, .. } => {
                        self.pending.push((op, a));
                    }
                    Action::SendDatagram { .. } | Action::Resolve { .. } => {}
                },
            }
        }
        // Invariants.
        let have = self.session.have(self.torrent).expect("torrent");
        let words = have.words().to_vec();
        for (old, new) in self.prev_have.iter().zip(&words) {
            prop_assert_eq!(old & !new, 0, "have-set shrank");
        }
        self.prev_have = words;
        let config = self.session.config().clone();
        let mut next = BTreeMap::new();
        for p in self.session.peers(self.torrent) {
            let before = self.prev_requests.get(&p.conn).copied().unwrap_or(0);
            prop_assert!(p.requests_out <= config.max_queue_depth);
            prop_assert!(
                p.requests_out <= p.queue_depth.max(before),
                "requests beyond depth"
            );
            prop_assert!(p.requests_in <= config.max_peer_requests);
            next.insert(p.conn, p.requests_out);
        }
        self.prev_requests = next;
        for p in have.ones() {
            prop_assert!(
                self.disk.piece_valid(&self.payload, p as u32),
                "piece {p} verified but wrong"
            );
        }
        Ok(())
    }

    fn encode(&self, w: &Wire) -> Bytes {
        let mut out = BytesMut::new();
        let req = |p, o, l| BlockRequest {
            piece: p,
            offset: o,
            len: l,
        };
        let m = match w {
            Wire::Choke => Message::Choke,
            Wire::Unchoke => Message::Unchoke,
            Wire::Interested => Message::Interested,
            Wire::NotInterested => Message::NotInterested,
            Wire::Have(p) => Message::Have(*p),
            Wire::Bitfield(b) => Message::Bitfield(Bytes::copy_from_slice(b)),
            Wire::HaveAll => Message::HaveAll,
            Wire::Request(p, o, l) => Message::Request(req(*p, *o, *l)),
            Wire::Cancel(p, o, l) => Message::Cancel(req(*p, *o, *l)),
            Wire::Reject(p, o, l) => Message::Reject(req(*p, *o, *l)),
            Wire::KeepAlive => Message::KeepAlive,
            Wire::Unknown(id, n) => Message::Unknown {
                id: *id,
                len: u32::from(*n),
            },
            Wire::Piece(p, o, kind) => {
                let g = self.payload.block_index((*p).min(7), *o);
                let at = u64::from(g) * 16384;
                let data = match kind {
                    0 => self.payload.slice(Variant::Valid, at, 16384),
                    1 => self.payload.slice(Variant::Corrupt, at, 16384),
                    _ => Bytes::from(vec![1u8; 1000]),
                };
                Message::Piece {
                    piece: *p,
                    offset: *o,
                    data,
                }
            }
            Wire::Raw(len, bytes) => {
                out.put_u32(*len);
                out.put_slice(bytes);
                return out.freeze();
            }
        };
        m.encode(&mut out);
        out.freeze()
    }

    fn apply(&mut self, s: &Step) -> Result<(), TestCaseError> {
        match s {
            Step::Msg(w, split) => {
                let Some(conn) = self.conn else {
                    return self.connect();
                };
                let bytes = self.encode(w);
                let parts = if *split && bytes.len() > 1 {
                    vec![
                        bytes.slice(..bytes.len() / 2),
                        bytes.slice(bytes.len() / 2..),
                    ]
                } else {
                    vec![bytes]
                };
                for data in parts {
                    if self.conn != Some(conn) {
                        break;
                    }
                    self.input(Input::Received {
                        now: self.now,
                        conn,
                        data,
                    })?;
                }
            }
            Step::Tick(ms) => {
                self.now += Duration::from_millis(*ms);
                self.input(Input::Timeout { now: self.now })?;
            }
            Step::Sent(n) => {
                if let Some(conn) = self.conn {
                    self.input(Input::Sent {
                        now: self.now,
                        conn,
                        bytes: *n,
                    })?;
                }
            }
            Step::Disk(i, answer) => {
                if self.pending.is_empty() {
                    return Ok(());
                }
                let (op, action) = self.pending.remove(i % self.pending.len());
                let p = &self.payload;
                let result = match (answer, &action) {
                    (Answer::Error, _) => DiskResult::Error(DiskError {
                        kind: DiskErrorKind::Other,
                        message: "injected".into(),
                    }),
                    (
                        Answer::Mismatch,
                        Action::Write {
                            expected: Some(_), ..
                        }
                        | Action::Verify { .. },
                    ) => DiskResult::HashMismatch,
                    (Answer::ShortRead, Action::Read { .. }) => {
                        DiskResult::Data(Bytes::from_static(b"short"))
                    }
                    (
                        _,
                        Action::Write {
                            piece,
                            offset,
                            data,
                            expected,
                            ..
                        },
                    ) => self.disk.write(p, *piece, *offset, data, *expected),
                    (
                        _,
                        Action::Verify {
                            piece, expected, ..
                        },
                    ) => self.disk.verify(p, *piece, *expected),
                    (
                        _,
                        Action::Read {
                            piece, offset, len, ..
                        },
                    ) => DiskResult::Data(self.disk.read(p, *piece, *offset, *len, Variant::Valid)),
                    _ => DiskResult::Ok,
                };
                self.input(Input::Disk {
                    now: self.now,
                    op,
                    result,
                })?;
            }
            Step::Reconnect => {
                if let Some(conn) = self.conn.take() {
                    self.closed.push(conn);
                    self.input(Input::Closed {
                        now: self.now,
                        conn,
                        error: None,
                    })?;
                }
                self.connect()?;
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn one_session_survives_a_scripted_remote(
        seeding in any::<bool>(),
        steps in prop::collection::vec(step(), 1..120),
    ) {
        let mut h = Harness::new(seeding);
        for s in &steps {
            h.apply(s)?;
        }
    }
}

/// A random small swarm with random faults.
fn faulty_swarm(seed: u64, peers: u32, faults: Faults) -> Scenario {
    let mut sc = Scenario::new(seed);
    sc.peers = peers;
    sc.mode = tessera_sim::Mode::Real;
    sc.size = 512 * 1024 + 777;
    sc.piece_size = 32 * 1024;
    sc.up_min = 64.0 * 1024.0;
    sc.up_max = 512.0 * 1024.0;
    sc.faults = faults;
    sc.fault_window = Duration::from_secs(20);
    sc
}

fn faults() -> impl Strategy<Value = Faults> {
    (
        0u32..3,
        0u32..2,
        0u32..6,
        0u32..3,
        0u32..3,
        any::<bool>(),
        0u32..3,
    )
        .prop_map(
            |(leaves, joins, resets, partitions, stalls, bw, disk)| Faults {
                churn_leaves: leaves,
                churn_joins: joins,
                resets,
                partitions,
                stalls,
                bandwidth_changes: bw,
                disk_faulty: disk,
                disk_error_rate: 0.1,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn small_swarms_with_random_faults_finish_with_correct_data(
        seed in any::<u64>(),
        peers in 3u32..=8,
        faults in faults(),
    ) {
        let r = run(faulty_swarm(seed, peers, faults.clone()));
        prop_assert!(
            r.ok(),
            "seed {seed}, {peers} peers, {faults:?}:\n{}",
            r.text()
        );
    }
}

// Shrunk failures are kept below as regression tests.

/// The harness itself works: a valid exchange reaches the session and gets a block out.
#[test]
fn harness_uploads_a_requested_block() {
    let mut h = Harness::new(true);
    let steps = [
        Step::Msg(Wire::Interested, false),
        Step::Tick(600),
        Step::Tick(11_000),
        Step::Msg(Wire::Request(2, 16384, 16384), true),
        Step::Disk(0, Answer::Right),
    ];
    for s in &steps {
        h.apply(s).expect("step");
    }
    let stats = h.session.stats(h.torrent).expect("stats");
    assert_eq!(stats.uploaded, 16384, "one block served");
}
