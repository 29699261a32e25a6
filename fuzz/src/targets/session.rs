//! A whole `Session` with one small torrent, driven by a fuzzer-chosen sequence of inputs:
//! inbound connections (optionally past a valid handshake), raw bytes and well-framed
//! messages on them, dials answered or refused, tracker replies, disk results (right,
//! wrong, failed, short, long, late and repeated), sends reported, closes and time jumps.
//! After every step the outputs are drained, as a driver must.
//!
//! Nothing may panic, and these must hold throughout:
//! - every peer's queued requests stay within `max_peer_requests`;
//! - every peer's unsent bytes are what the driver was given and has not reported sent;
//! - the torrent's stats agree with its bitfield and stay within its size;
//! - no action names a connection the core closed or was told is closed;
//! - disk actions stay inside the torrent's files, and a write's data fills its spans;
//! - `poll_output` reaches `Output::Timeout`;
//! - the wire checker (`tessera_core::testing::WireCheck`) finds no breach of the protocol
//!   in what the session sends and receives, and the stats' payload counters match the
//!   wire;
//! - an input for a connection the core closed, was told is closed or never opened is
//!   ignored (the contract in `tessera_core::api`): with nothing else due, it changes no
//!   snapshot and produces no output.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use tessera_core::api::{Action, DiskError, DiskErrorKind, DiskResult, Input, Output, Target};
use tessera_core::extension::ExtHandshake;
use tessera_core::metainfo::{FileEntry, Info};
use tessera_core::testing::WireCheck;
use tessera_core::wire::{BlockRequest, Decoder, Handshake, Message};
use tessera_core::{
    BLOCK_LEN, Bitfield, BlockRef, Config, ConnId, Duration, InfoHash, Instant, Layout, Metainfo,
    OpId, PeerId, Session, TorrentId, TorrentOptions,
};

const PIECE_LEN: u32 = 32 * 1024;
/// Files of the torrent: four pieces, the last one short, an empty file in the middle and
/// blocks that cross file boundaries.
const FILES: [(&str, u64); 4] = [
    ("a.bin", 40_000),
    ("empty", 0),
    ("b c.bin", 60_001),
    ("d", 17),
];
const TRACKER: &str = "http://tracker.test:6969/announce";
/// Outputs drained after one input before `poll_output` is declared stuck.
const MAX_OUTPUTS: usize = 1_000_000;

fn metainfo() -> Arc<Metainfo> {
    let layout = Layout::new(PIECE_LEN, FILES.iter().map(|f| f.1)).expect("layout");
    // The hashes never matter: the driver (this target) says whether a piece matched.
    let pieces: Vec<[u8; 20]> = (0..layout.num_pieces()).map(|p| [p as u8; 20]).collect();
    let files = FILES
        .iter()
        .map(|(path, length)| FileEntry {
            path: vec!["t".to_string(), path.to_string()],
            length: *length,
            padding: false,
            executable: false,
        })
        .collect();
    Arc::new(Metainfo {
        info_hash: InfoHash(*b"tessera-fuzz-session"),
        info: Info {
            name: "t".into(),
            piece_length: PIECE_LEN,
            pieces,
            files,
            private: false,
            multi_file: true,
            layout,
        },
        info_bytes: Bytes::new(),
        trackers: vec![vec![TRACKER.into()]],
        comment: None,
        created_by: None,
        creation_date: None,
    })
}

/// Session limits, kept small so that the fuzzer reaches them.
#[derive(Arbitrary, Debug)]
struct Limits {
    max_peers_per_torrent: u8,
    max_connections: u8,
    max_half_open: u8,
    unchoke_slots: u8,
    min_queue_depth: u8,
    extra_queue_depth: u8,
    max_hash_failures: u8,
    /// In KiB.
    max_buffered: u8,
    max_peer_requests: u8,
    /// In KiB.
    max_send_buffer: u8,
    max_known_peers: u8,
    /// Offer the Fast extension (BEP 6).
    fast: bool,
}

impl Limits {
    fn config(&self) -> Config {
        let min_queue_depth = 1 + usize::from(self.min_queue_depth % 16);
        Config {
            listen_port: 6881,
            max_peers_per_torrent: 1 + usize::from(self.max_peers_per_torrent % 8),
            max_connections: 1 + usize::from(self.max_connections % 12),
            max_half_open: 1 + usize::from(self.max_half_open % 4),
            unchoke_slots: usize::from(self.unchoke_slots % 4),
            min_queue_depth,
            max_queue_depth: min_queue_depth + usize::from(self.extra_queue_depth % 32),
            max_hash_failures: 1 + u32::from(self.max_hash_failures % 4),
            max_buffered_bytes: (1 + usize::from(self.max_buffered)) << 10,
            max_peer_requests: 1 + usize::from(self.max_peer_requests % 16),
            max_send_buffer: (1 + usize::from(self.max_send_buffer)) << 10,
            max_known_peers: 1 + usize::from(self.max_known_peers % 16),
            fast_extension: self.fast,
            ..Config::default()
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Have {
    /// Hash what is on disk first.
    Check,
    /// Resume data: these pieces (bit per piece).
    Resume(u8),
}

#[derive(Arbitrary, Debug)]
pub struct Scenario {
    limits: Limits,
    seed: u8,
    have: Have,
    /// Keep seeding after completion.
    seed_after: bool,
    /// File selection: a bit per file; `None` wants everything.
    files: Option<u8>,
    /// Answer every disk action at once as a healthy disk would (the `Disk` steps then
    /// only see actions issued while this is off, i.e. none).
    auto_disk: bool,
    steps: Vec<Step>,
}

/// A piece index: mostly valid, sometimes just past the end or absurd.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Piece {
    Valid(u8),
    PastEnd,
    Max,
}

/// A block length on the wire.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Len {
    /// The block's real length.
    Block,
    Any(u16),
    Huge(u32),
}

#[derive(Arbitrary, Debug)]
enum Msg {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(Piece),
    Bitfield(u8),
    RawBitfield(Vec<u8>),
    HaveAll,
    HaveNone,
    Request(Piece, u8, Len),
    Cancel(Piece, u8, Len),
    Reject(Piece, u8, Len),
    /// A block: piece, block index, length (filled with the byte).
    Piece(Piece, u8, Len, u8),
    Port(u16),
    Suggest(Piece),
    AllowedFast(Piece),
    Extended(u8, Vec<u8>),
    /// A BEP 10 extension handshake (extended message 0) with these fields.
    ExtHandshake {
        reqq: Option<u32>,
        port: Option<u16>,
        client: Option<String>,
    },
    Unknown(u8, Vec<u8>),
}

/// What the driver answers to a disk action.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Answer {
    /// What a healthy disk says: `Ok` for writes and checks, the bytes asked for reads.
    Natural,
    Ok,
    HashMismatch,
    Error(u8),
    /// `len` bytes whatever was asked.
    Data(u16),
    /// One byte fewer than asked.
    Short,
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// A peer connects to us.
    Accept {
        host: u8,
        port: u16,
    },
    /// A peer connects to us, handshakes, says which pieces it has (a bit per piece) and
    /// maybe unchokes us and says it is interested, all in one read.
    Peer {
        host: u8,
        peer: u8,
        bits: u8,
        unchoke: bool,
        interested: bool,
        /// Set the extension protocol bit and send an extension handshake with this `reqq`.
        extensions: Option<u8>,
    },
    /// Tell the session about a peer to dial.
    AddPeer {
        host: u8,
        port: u16,
        persistent: bool,
    },
    /// A dial the session asked for succeeds (or, `refused`, fails).
    Dialled {
        conn: u8,
        refused: bool,
    },
    /// The remote sends a handshake for our torrent (or, `other_torrent`, another one).
    Handshake {
        conn: u8,
        peer: u8,
        reserved: [u8; 8],
        other_torrent: bool,
    },
    /// Raw bytes, optionally after a valid handshake.
    Bytes {
        conn: u8,
        handshake: Option<u8>,
        data: Vec<u8>,
    },
    /// Well-framed messages, in one read.
    Messages {
        conn: u8,
        messages: Vec<Msg>,
    },
    /// The remote sends the blocks the session asked it for (up to `count + 1`, oldest
    /// first), filled with `fill`.
    Deliver {
        conn: u8,
        count: u8,
        fill: u8,
    },
    /// A tracker answers (HTTP, compact peers).
    TrackerReply {
        conn: u8,
        peers: Vec<(u8, u16)>,
        interval: u16,
        chunked: bool,
        close: bool,
    },
    /// The driver wrote `bytes` of a connection's queued data (`None`: all of it).
    Sent {
        conn: u8,
        bytes: Option<u16>,
    },
    /// The remote closed the connection.
    Close {
        conn: u8,
        error: bool,
    },
    /// A disk action completes. `again`: leave it pending so it can be answered twice.
    Disk {
        op: u8,
        answer: Answer,
        again: bool,
    },
    /// An input for a connection the core closed, was told is closed, or never opened.
    Stale {
        conn: u8,
        input: StaleInput,
    },
    /// Every pending disk action completes naturally.
    DiskAll,
    /// An answer for an operation that does not exist.
    DiskStale(u16),
    /// Time passes.
    Wait {
        millis: u16,
    },
    WaitSecs {
        secs: u8,
    },
    /// Time jumps to the deadline the session asked for.
    Deadline,
    Shutdown,
    /// A datagram on the session's UDP socket (a tracker answer, KRPC, uTP or garbage,
    /// whatever its first byte says).
    Datagram {
        host: u8,
        port: u16,
        data: Vec<u8>,
    },
}

/// What arrives for a connection the core no longer knows.
#[derive(Arbitrary, Debug)]
enum StaleInput {
    Connected,
    Received(Vec<u8>),
    Sent(u16),
    Closed(bool),
}

/// The far end of an open connection, as the driver sees it.
#[derive(Debug)]
struct Remote {
    /// Bytes the session queued and the driver has not reported sent.
    queued: usize,
    /// Decodes what the session sends to a peer (`None` for trackers, which get HTTP).
    decoder: Option<Decoder>,
    handshake_seen: bool,
    /// Blocks the session asked this peer for and has not cancelled or been sent.
    requests: Vec<BlockRequest>,
}

impl Remote {
    fn new(tracker: bool) -> Self {
        Remote {
            queued: 0,
            decoder: (!tracker).then(Decoder::new),
            handshake_seen: false,
            requests: Vec::new(),
        }
    }

    /// Reads what the session sent: it must be a well-formed handshake and messages.
    fn sent(&mut self, conn: ConnId, data: Bytes) {
        self.queued += data.len();
        let Some(decoder) = self.decoder.as_mut() else {
            return;
        };
        decoder.feed(data);
        if !self.handshake_seen {
            match decoder.handshake() {
                Ok(Some(_)) => self.handshake_seen = true,
                Ok(None) => return,
                Err(e) => panic!("the session sent a bad handshake on {conn:?}: {e}"),
            }
        }
        loop {
            match decoder.next_message() {
                Ok(Some(Message::Request(r))) => {
                    assert!(
                        r.len > 0 && r.len <= BLOCK_LEN,
                        "the session asked for {r:?}"
                    );
                    self.requests.push(r);
                }
                Ok(Some(Message::Cancel(r))) => self.requests.retain(|q| *q != r),
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(e) => panic!("the session sent malformed wire data on {conn:?}: {e}"),
            }
        }
    }
}

/// A disk action waiting for its answer.
#[derive(Debug, Clone, Copy)]
enum DiskOp {
    Write,
    Verify,
    Read { len: u32 },
}

struct Driver {
    session: Session,
    /// Judges what the session says on the wire (tessera-core's `testing` feature).
    wire: WireCheck,
    torrent: TorrentId,
    meta: Arc<Metainfo>,
    max_peer_requests: usize,
    now: Instant,
    deadline: Instant,
    /// Connections the driver has open.
    open: BTreeMap<ConnId, Remote>,
    /// Dials the session asked for, not yet answered; `true` for trackers.
    dialling: BTreeMap<ConnId, bool>,
    /// Open connections to trackers.
    trackers: BTreeSet<ConnId>,
    /// Connections the core closed or was told are closed.
    dead: BTreeSet<ConnId>,
    ops: Vec<(OpId, DiskOp)>,
    auto_disk: bool,
    next_port: u16,
}

/// With `TESSERA_FUZZ_TRACE` set, prints the kind of every event and action to stderr
/// (`... -runs=0 <corpus> 2>&1 | grep ^trace | sort | uniq -c` shows how deep a corpus
/// reaches).
fn trace(what: &str, item: &dyn std::fmt::Debug) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("TESSERA_FUZZ_TRACE").is_some()) {
        let text = format!("{item:?}");
        let kind = text
            .split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or("");
        eprintln!("trace {what} {kind}");
    }
}

fn pick<T: Copy>(items: impl IntoIterator<Item = T>, i: u8) -> Option<T> {
    let items: Vec<T> = items.into_iter().collect();
    if items.is_empty() {
        None
    } else {
        Some(items[usize::from(i) % items.len()])
    }
}

impl Driver {
    fn layout(&self) -> &Layout {
        self.meta.layout()
    }

    fn piece(&self, p: Piece) -> u32 {
        let n = self.layout().num_pieces();
        match p {
            Piece::Valid(i) => u32::from(i) % n,
            Piece::PastEnd => n,
            Piece::Max => u32::MAX,
        }
    }

    /// A block request for `piece`'s block `block` (mostly a real one).
    fn request(&self, p: Piece, block: u8, len: Len) -> BlockRequest {
        let piece = self.piece(p);
        let layout = self.layout();
        let (offset, real_len) = if piece < layout.num_pieces() {
            let b = u32::from(block) % layout.blocks_in_piece(piece).max(1);
            let r = BlockRef { piece, block: b };
            (layout.block_offset(r), layout.block_len(r))
        } else {
            (u32::from(block) * BLOCK_LEN, BLOCK_LEN)
        };
        let len = match len {
            Len::Block => real_len,
            Len::Any(l) => u32::from(l),
            Len::Huge(l) => l,
        };
        BlockRequest { piece, offset, len }
    }

    fn message(&self, m: &Msg) -> Message {
        match m {
            Msg::KeepAlive => Message::KeepAlive,
            Msg::Choke => Message::Choke,
            Msg::Unchoke => Message::Unchoke,
            Msg::Interested => Message::Interested,
            Msg::NotInterested => Message::NotInterested,
            Msg::Have(p) => Message::Have(self.piece(*p)),
            Msg::Bitfield(bits) => {
                let mut has = Bitfield::new(self.layout().num_pieces() as usize);
                for i in 0..has.len() {
                    if bits & (1 << i) != 0 {
                        has.set(i);
                    }
                }
                Message::Bitfield(Bytes::from(has.to_bytes()))
            }
            Msg::RawBitfield(b) => Message::Bitfield(Bytes::copy_from_slice(b)),
            Msg::HaveAll => Message::HaveAll,
            Msg::HaveNone => Message::HaveNone,
            Msg::Request(p, b, l) => Message::Request(self.request(*p, *b, *l)),
            Msg::Cancel(p, b, l) => Message::Cancel(self.request(*p, *b, *l)),
            Msg::Reject(p, b, l) => Message::Reject(self.request(*p, *b, *l)),
            Msg::Piece(p, b, l, fill) => {
                let r = self.request(*p, *b, *l);
                // Longer than a frame may be is a protocol error anyway; keep memory bounded.
                let len = r.len.min(BLOCK_LEN + 1) as usize;
                Message::Piece {
                    piece: r.piece,
                    offset: r.offset,
                    data: Bytes::from(vec![*fill; len]),
                }
            }
            Msg::Port(p) => Message::Port(*p),
            Msg::Suggest(p) => Message::Suggest(self.piece(*p)),
            Msg::AllowedFast(p) => Message::AllowedFast(self.piece(*p)),
            Msg::Extended(id, payload) => Message::Extended {
                id: *id,
                payload: Bytes::copy_from_slice(payload),
            },
            Msg::ExtHandshake { reqq, port, client } => Message::Extended {
                id: 0,
                payload: Bytes::from(
                    ExtHandshake {
                        reqq: *reqq,
                        port: *port,
                        client: client.clone(),
                    }
                    .encode(),
                ),
            },
            Msg::Unknown(id, payload) => {
                // Ids the decoder does not know, framed by hand below.
                Message::Unknown {
                    id: *id,
                    len: payload.len() as u32,
                }
            }
        }
    }

    fn encode(&self, m: &Msg, out: &mut BytesMut) {
        if let Msg::Unknown(id, payload) = m {
            out.extend_from_slice(&(payload.len() as u32 + 1).to_be_bytes());
            out.extend_from_slice(&[*id]);
            out.extend_from_slice(payload);
        } else {
            self.message(m).encode(out);
        }
    }

    fn handshake(&self, peer: u8, reserved: [u8; 8], other_torrent: bool) -> [u8; 68] {
        let mut info_hash = self.meta.info_hash;
        if other_torrent {
            info_hash.0[0] ^= 1;
        }
        let mut peer_id = [peer; 20];
        peer_id[0] = b'F'; // Never our own id, which starts with `-`.
        Handshake {
            reserved,
            info_hash,
            peer_id: PeerId(peer_id),
        }
        .encode()
    }

    fn input(&mut self, input: Input) {
        self.wire.input(&input);
        self.session.handle_input(input);
        self.drain();
    }

    fn receive(&mut self, conn: ConnId, data: Bytes) {
        let now = self.now;
        self.input(Input::Received { now, conn, data });
    }

    /// Drains the outputs, playing the driver's part for each, and checks the invariants.
    /// With `auto_disk`, disk actions are answered as a healthy disk would, oldest first,
    /// each followed by a complete drain.
    fn drain(&mut self) {
        for _ in 0..MAX_OUTPUTS {
            let out = self.session.poll_output();
            self.wire.output(&out);
            match out {
                Output::Timeout(t) => {
                    self.deadline = t;
                    self.check();
                    self.wire
                        .after_drain(self.session.stats(self.torrent).as_ref());
                    let violations = self.wire.take_violations();
                    assert!(violations.is_empty(), "on the wire: {violations:#?}");
                    if !self.auto_disk || self.ops.is_empty() {
                        return;
                    }
                    let (op, kind) = self.ops.remove(0);
                    let input = self.disk_input(op, kind, Answer::Natural);
                    self.wire.input(&input);
                    self.session.handle_input(input);
                }
                Output::Event(e) => trace("event", &e),
                Output::Action(a) => {
                    trace("action", &a);
                    self.action(a)
                }
            }
        }
        panic!("poll_output did not reach Output::Timeout");
    }

    fn alive(&self, conn: ConnId, what: &str) {
        assert!(
            !self.dead.contains(&conn),
            "{what} on connection {conn:?}, which is closed"
        );
    }

    fn check_spans(&self, spans: &[tessera_core::FileSpan]) -> u64 {
        let mut total = 0u64;
        for s in spans {
            let file_len = self.layout().file_len(s.file);
            assert!(
                s.offset
                    .checked_add(s.len)
                    .is_some_and(|end| end <= file_len),
                "span {s:?} outside its file of {file_len} bytes"
            );
            total += s.len;
        }
        total
    }

    fn action(&mut self, a: Action) {
        match a {
            Action::Connect { conn, target } => {
                self.alive(conn, "connect");
                assert!(
                    !self.open.contains_key(&conn),
                    "connect on an open connection"
                );
                self.dialling
                    .insert(conn, matches!(target, Target::Host { .. }));
            }
            Action::Send { conn, data } => {
                self.alive(conn, "send");
                let remote = self.open.get_mut(&conn);
                let remote = remote.unwrap_or_else(|| panic!("send on {conn:?}, not connected"));
                remote.sent(conn, data);
            }
            Action::Close { conn } => {
                self.alive(conn, "close");
                self.open.remove(&conn);
                self.dialling.remove(&conn);
                self.trackers.remove(&conn);
                self.dead.insert(conn);
            }
            Action::Write {
                op,
                torrent,
                piece,
                offset,
                data,
                spans,
                expected,
            } => {
                assert_eq!(torrent, self.torrent);
                let layout = self.layout();
                assert!(piece < layout.num_pieces(), "write of piece {piece}");
                let len: u64 = data.iter().map(|d| d.len() as u64).sum();
                assert_eq!(
                    self.check_spans(&spans),
                    len,
                    "write data does not fill its spans"
                );
                assert!(
                    u64::from(offset) + len <= u64::from(self.layout().piece_len(piece)),
                    "write past the end of piece {piece}"
                );
                if expected.is_some() {
                    assert_eq!(offset, 0);
                    assert_eq!(len, u64::from(self.layout().piece_len(piece)));
                }
                self.ops.push((op, DiskOp::Write));
            }
            Action::Verify {
                op,
                torrent,
                piece,
                spans,
                ..
            } => {
                assert_eq!(torrent, self.torrent);
                assert!(
                    piece < self.layout().num_pieces(),
                    "verify of piece {piece}"
                );
                let len = self.check_spans(&spans);
                assert_eq!(len, u64::from(self.layout().piece_len(piece)));
                self.ops.push((op, DiskOp::Verify));
            }
            Action::Read {
                op,
                torrent,
                piece,
                offset,
                len,
                spans,
            } => {
                assert_eq!(torrent, self.torrent);
                assert!(piece < self.layout().num_pieces(), "read of piece {piece}");
                assert!(
                    u64::from(offset) + u64::from(len) <= u64::from(self.layout().piece_len(piece)),
                    "read past the end of piece {piece}"
                );
                assert_eq!(self.check_spans(&spans), u64::from(len));
                self.ops.push((op, DiskOp::Read { len }));
            }
            Action::SendDatagram { .. } | Action::Resolve { .. } => {}
        }
    }

    fn check(&self) {
        for p in self.session.peers(self.torrent) {
            assert!(
                p.requests_in <= self.max_peer_requests,
                "peer {:?} has {} requests queued, limit {}",
                p.addr,
                p.requests_in,
                self.max_peer_requests
            );
            assert!(
                !self.dead.contains(&p.conn),
                "closed connection still a peer"
            );
            let queued = self.open.get(&p.conn).map_or(0, |r| r.queued);
            assert_eq!(
                p.unsent, queued,
                "the session's count of unsent bytes differs from the driver's"
            );
        }
        let stats = self.session.stats(self.torrent).expect("the torrent");
        let have = self.session.have(self.torrent).expect("the torrent");
        assert_eq!(have.len(), self.layout().num_pieces() as usize);
        assert_eq!(stats.pieces_have as usize, have.count_ones());
        assert!(stats.pieces_have <= stats.pieces_total);
        assert!(stats.bytes_have <= stats.total_len);
        assert!(
            stats.wasted <= stats.downloaded,
            "more wasted than downloaded"
        );
    }

    fn answer(&mut self, op: OpId, kind: DiskOp, answer: Answer) {
        let input = self.disk_input(op, kind, answer);
        self.input(input);
    }

    fn disk_input(&self, op: OpId, kind: DiskOp, answer: Answer) -> Input {
        let result = match (answer, kind) {
            (Answer::Natural, DiskOp::Read { len }) => {
                DiskResult::Data(Bytes::from(vec![0x5a; len as usize]))
            }
            (Answer::Natural | Answer::Ok, _) => DiskResult::Ok,
            (Answer::HashMismatch, _) => DiskResult::HashMismatch,
            (Answer::Error(k), _) => DiskResult::Error(DiskError {
                kind: match k % 4 {
                    0 => DiskErrorKind::NoSpace,
                    1 => DiskErrorKind::PermissionDenied,
                    2 => DiskErrorKind::NotFound,
                    _ => DiskErrorKind::Other,
                },
                message: "fuzz".into(),
            }),
            (Answer::Data(len), _) => DiskResult::Data(Bytes::from(vec![0xa5; len.into()])),
            (Answer::Short, DiskOp::Read { len }) => {
                DiskResult::Data(Bytes::from(vec![0x5a; len.saturating_sub(1) as usize]))
            }
            (Answer::Short, _) => DiskResult::Data(Bytes::new()),
        };
        Input::Disk {
            now: self.now,
            op,
            result,
        }
    }

    fn open_conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.open.keys().copied()
    }

    fn step(&mut self, step: &Step) {
        let now = self.now;
        match step {
            Step::Accept { host, port } => {
                let addr = SocketAddr::from(([192, 0, 2, *host], *port));
                if let Some(conn) = self.session.accept(now, addr) {
                    assert!(!self.dead.contains(&conn) && !self.open.contains_key(&conn));
                    self.open.insert(conn, Remote::new(false));
                }
                self.drain();
            }
            Step::Peer {
                host,
                peer,
                bits,
                unchoke,
                interested,
                extensions,
            } => {
                let addr = SocketAddr::from(([192, 0, 2, *host], 6881));
                let Some(conn) = self.session.accept(now, addr) else {
                    self.drain();
                    return;
                };
                self.open.insert(conn, Remote::new(false));
                self.drain();
                let mut reserved = Handshake {
                    reserved: [0; 8],
                    info_hash: InfoHash([0; 20]),
                    peer_id: PeerId([0; 20]),
                };
                if extensions.is_some() {
                    reserved.set(Handshake::EXTENSION_PROTOCOL);
                }
                let hs = self.handshake(*peer, reserved.reserved, false);
                let mut out = BytesMut::from(&hs[..]);
                if let Some(reqq) = extensions {
                    let ext = Msg::ExtHandshake {
                        reqq: Some(u32::from(*reqq)),
                        port: None,
                        client: None,
                    };
                    self.message(&ext).encode(&mut out);
                }
                self.message(&Msg::Bitfield(*bits)).encode(&mut out);
                if *unchoke {
                    Message::Unchoke.encode(&mut out);
                }
                if *interested {
                    Message::Interested.encode(&mut out);
                }
                self.receive(conn, out.freeze());
            }
            Step::AddPeer {
                host,
                port,
                persistent,
            } => {
                // Port 0 now and then, the rest distinct.
                let port = if *port == 0 {
                    0
                } else {
                    self.next_port.wrapping_add(*port % 64)
                };
                let addr = SocketAddr::from(([198, 51, 100, *host % 8], port));
                self.session
                    .add_peers(now, self.torrent, &[addr], *persistent);
                self.drain();
            }
            Step::Dialled { conn, refused } => {
                let Some((conn, tracker)) =
                    pick(self.dialling.iter().map(|(c, t)| (*c, *t)), *conn)
                else {
                    return;
                };
                self.dialling.remove(&conn);
                if *refused {
                    self.dead.insert(conn);
                    self.input(Input::Closed {
                        now,
                        conn,
                        error: Some("connection refused".into()),
                    });
                } else {
                    self.open.insert(conn, Remote::new(tracker));
                    if tracker {
                        self.trackers.insert(conn);
                    }
                    self.input(Input::Connected { now, conn });
                }
            }
            Step::Handshake {
                conn,
                peer,
                reserved,
                other_torrent,
            } => {
                let Some(conn) = pick(self.open_conns(), *conn) else {
                    return;
                };
                let hs = self.handshake(*peer, *reserved, *other_torrent);
                self.receive(conn, Bytes::copy_from_slice(&hs));
            }
            Step::Bytes {
                conn,
                handshake,
                data,
            } => {
                let Some(conn) = pick(self.open_conns(), *conn) else {
                    return;
                };
                let mut bytes = Vec::new();
                if let Some(peer) = handshake {
                    bytes.extend_from_slice(&self.handshake(*peer, [0; 8], false));
                }
                bytes.extend_from_slice(data);
                self.receive(conn, Bytes::from(bytes));
            }
            Step::Messages { conn, messages } => {
                let Some(conn) = pick(self.open_conns(), *conn) else {
                    return;
                };
                let mut out = BytesMut::new();
                for m in messages {
                    self.encode(m, &mut out);
                }
                self.receive(conn, out.freeze());
            }
            Step::Deliver { conn, count, fill } => {
                let asked = self
                    .open
                    .iter()
                    .filter(|(_, r)| !r.requests.is_empty())
                    .map(|(c, _)| *c);
                let Some(conn) = pick(asked, *conn) else {
                    return;
                };
                let Some(remote) = self.open.get_mut(&conn) else {
                    return;
                };
                let n = remote.requests.len().min(usize::from(*count % 8) + 1);
                let mut out = BytesMut::new();
                for r in remote.requests.drain(..n) {
                    Message::Piece {
                        piece: r.piece,
                        offset: r.offset,
                        data: Bytes::from(vec![*fill; r.len as usize]),
                    }
                    .encode(&mut out);
                }
                self.receive(conn, out.freeze());
            }
            Step::TrackerReply {
                conn,
                peers,
                interval,
                chunked,
                close,
            } => {
                let Some(conn) = pick(self.trackers.iter().copied(), *conn) else {
                    return;
                };
                let mut compact = Vec::new();
                for (host, port) in peers {
                    compact.extend_from_slice(&[
                        203,
                        0,
                        113,
                        *host,
                        (port >> 8) as u8,
                        *port as u8,
                    ]);
                }
                let mut body =
                    format!("d8:intervali{interval}e5:peers{}:", compact.len()).into_bytes();
                body.extend_from_slice(&compact);
                body.push(b'e');
                let mut response = Vec::new();
                if *chunked {
                    response.extend_from_slice(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                    );
                    response.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                    response.extend_from_slice(&body);
                    response.extend_from_slice(b"\r\n0\r\n\r\n");
                } else {
                    response.extend_from_slice(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                            .as_bytes(),
                    );
                    response.extend_from_slice(&body);
                }
                self.receive(conn, Bytes::from(response));
                if *close && self.open.contains_key(&conn) {
                    self.close(conn, None);
                }
            }
            Step::Sent { conn, bytes } => {
                let Some(conn) = pick(self.open_conns(), *conn) else {
                    return;
                };
                let Some(remote) = self.open.get_mut(&conn) else {
                    return;
                };
                let bytes = match bytes {
                    None => remote.queued,
                    Some(b) => usize::from(*b).min(remote.queued),
                };
                remote.queued -= bytes;
                self.input(Input::Sent { now, conn, bytes });
            }
            Step::Close { conn, error } => {
                let Some(conn) = pick(self.open_conns(), *conn) else {
                    return;
                };
                self.close(conn, error.then(|| "connection reset".to_string()));
            }
            Step::Disk { op, answer, again } => {
                if self.ops.is_empty() {
                    return;
                }
                let i = usize::from(*op) % self.ops.len();
                let (id, kind) = if *again {
                    self.ops[i]
                } else {
                    self.ops.remove(i)
                };
                self.answer(id, kind, *answer);
            }
            Step::Stale { conn, input } => {
                // A dead connection, or one the session never handed out.
                let conn = pick(self.dead.iter().copied(), *conn)
                    .unwrap_or(ConnId(u64::MAX - u64::from(*conn)));
                let input = match input {
                    StaleInput::Connected => Input::Connected { now, conn },
                    StaleInput::Received(data) => Input::Received {
                        now,
                        conn,
                        data: Bytes::copy_from_slice(data),
                    },
                    StaleInput::Sent(bytes) => Input::Sent {
                        now,
                        conn,
                        bytes: usize::from(*bytes),
                    },
                    StaleInput::Closed(error) => Input::Closed {
                        now,
                        conn,
                        error: error.then(|| "connection reset".into()),
                    },
                };
                // With nothing due, the input must change nothing at all (a due deadline
                // would run on any input, so then only the usual invariants apply).
                let quiet = self.deadline > now;
                let before = (self.session.stats(self.torrent), self.session.peers(self.torrent));
                self.wire.input(&input);
                self.session.handle_input(input);
                if quiet {
                    let out = self.session.poll_output();
                    self.wire.output(&out);
                    if let Output::Timeout(t) = out {
                        assert_eq!(t, self.deadline, "a stale input moved the deadline");
                    } else {
                        panic!("a stale input on {conn:?} produced output");
                    }
                    let after = (self.session.stats(self.torrent), self.session.peers(self.torrent));
                    assert_eq!(before, after, "a stale input on {conn:?} changed the session");
                } else {
                    self.drain();
                }
            }
            Step::DiskAll => {
                for (id, kind) in std::mem::take(&mut self.ops) {
                    self.answer(id, kind, Answer::Natural);
                }
            }
            Step::DiskStale(id) => {
                self.input(Input::Disk {
                    now,
                    op: OpId(u64::from(*id) + 1_000_000),
                    result: DiskResult::Ok,
                });
            }
            Step::Wait { millis } => self.wait(Duration::from_millis(u64::from(*millis))),
            Step::WaitSecs { secs } => self.wait(Duration::from_secs(u64::from(*secs))),
            Step::Deadline => {
                if self.deadline > self.now && self.deadline != Instant::FAR_FUTURE {
                    self.now = self.deadline;
                }
                let now = self.now;
                self.input(Input::Timeout { now });
            }
            Step::Shutdown => {
                self.session.shutdown(now);
                self.drain();
            }
            Step::Datagram { host, port, data } => {
                let from = SocketAddr::from(([10, 0, 0, *host], *port));
                let data = Bytes::from(data.clone());
                self.input(Input::Datagram { now, from, data });
            }
        }
    }

    fn close(&mut self, conn: ConnId, error: Option<String>) {
        self.open.remove(&conn);
        self.trackers.remove(&conn);
        self.dead.insert(conn);
        let now = self.now;
        self.input(Input::Closed { now, conn, error });
    }

    fn wait(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        self.input(Input::Timeout { now });
    }
}

/// Replays one input as libfuzzer-sys's `fuzz_target!` does for a structured target: too
/// short for the `Arbitrary` size hint, or not decodable as a [`Scenario`], it is skipped.
pub fn run(data: &[u8]) {
    if data.len() < <Scenario as Arbitrary>::size_hint(0).0 {
        return;
    }
    if let Ok(scenario) = Scenario::arbitrary_take_rest(Unstructured::new(data)) {
        check(scenario);
    }
}

/// Runs one scenario against a fresh session (the fuzz binary's body).
pub fn check(scenario: Scenario) {
    let meta = metainfo();
    let n = meta.num_pieces() as usize;
    let config = scenario.limits.config();
    let max_peer_requests = config.max_peer_requests;
    let bits = |mask: u8| {
        let mut b = Bitfield::new(n);
        for i in 0..n {
            if mask & (1 << i) != 0 {
                b.set(i);
            }
        }
        b
    };
    let options = TorrentOptions {
        have: match scenario.have {
            Have::Check => None,
            Have::Resume(mask) => Some(bits(mask)),
        },
        seed: scenario.seed_after,
        files: scenario
            .files
            .map(|mask| (0..FILES.len()).map(|i| mask & (1 << i) != 0).collect()),
        // The piece orders, from bits of the seed.
        sequential: scenario.seed & 1 != 0,
        first_last: scenario.seed & 2 != 0,
        ..TorrentOptions::default()
    };
    let verified = options.have.clone().unwrap_or_else(|| Bitfield::new(n));
    let now = Instant::ZERO + Duration::from_secs(1_000);
    let mut session = Session::new(config, now, [scenario.seed; 32]);
    let torrent = session
        .add_torrent(now, meta.clone(), options)
        .expect("a new session holds no torrent");
    let mut wire = WireCheck::new(meta.layout().clone(), verified);
    if let Some(mask) = scenario.files {
        let layout = meta.layout();
        let mut wanted = Bitfield::new(n);
        for file in (0..FILES.len()).filter(|i| mask & (1 << i) != 0) {
            for p in layout.file_pieces(file) {
                wanted.set(p as usize);
            }
        }
        wire.set_wanted(wanted);
    }
    let mut driver = Driver {
        session,
        wire,
        torrent,
        meta,
        max_peer_requests,
        now,
        deadline: now,
        open: BTreeMap::new(),
        dialling: BTreeMap::new(),
        trackers: BTreeSet::new(),
        dead: BTreeSet::new(),
        ops: Vec::new(),
        auto_disk: scenario.auto_disk,
        next_port: 10_000,
    };
    driver.drain();
    for step in scenario.steps.iter().take(256) {
        driver.step(step);
    }
}
