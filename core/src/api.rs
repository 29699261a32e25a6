//! What goes into the core and what comes out of it.
//!
//! The driver (a runtime, or the simulator) owns every socket, file, timer and thread. It
//! feeds [`Input`]s to `Session::handle_input` and then drains `Session::poll_output`
//! until it returns [`Output::Timeout`]: every mutation is followed by a complete drain.
//! The timeout is the instant at which the driver must call `handle_input(Input::Timeout)`
//! if nothing else happens first.
//!
//! # Inputs for what the core no longer knows
//!
//! An input for a connection or a disk operation the core does not know (any more) is
//! ignored: it changes nothing and produces nothing. The driver and the core race: the
//! core may close a connection ([`Action::Close`]) while the driver holds bytes read from
//! it, a write completion, or its own report that the connection broke, and a disk answer
//! may come back for an operation of a torrent that failed. The driver need not filter any
//! of these; it may feed what it has, in order. Ids are never reused, so a late input can
//! never be taken for a newer connection's or operation's.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

use crate::bitfield::BitfieldError;
use crate::id::{ConnId, InfoHash, OpId, PeerId, TorrentId};
use crate::layout::FileSpan;
use crate::time::Instant;
use crate::wire::WireError;

/// Something that happened outside the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// The deadline from the last [`Output::Timeout`] has passed (calling early is harmless).
    Timeout {
        /// When it happened, on the driver's clock.
        now: Instant,
    },
    /// An outbound connection asked for by [`Action::Connect`] is established.
    Connected {
        /// When it happened.
        now: Instant,
        /// The connection [`Action::Connect`] named.
        conn: ConnId,
    },
    /// Bytes arrived on a connection, in order.
    Received {
        /// When it happened, on the driver's clock.
        now: Instant,
        /// The connection.
        conn: ConnId,
        /// The bytes, as read (the core keeps slices of them: no copy).
        data: Bytes,
    },
    /// `bytes` more of this connection's queued sends were handed to the operating system.
    /// This is the core's flow control: it only produces more upload data for a connection
    /// while what it has sent and not yet heard back about here stays under a bound.
    Sent {
        /// When it happened, on the driver's clock.
        now: Instant,
        /// The connection.
        conn: ConnId,
        /// How many bytes.
        bytes: usize,
    },
    /// The connection is gone: the connect failed, the remote closed it, or it broke.
    /// `error` is the driver's words for why (`None`: the remote closed it). For a
    /// connection the core closed itself with [`Action::Close`] the driver need not send
    /// it; if it does, it is ignored like every input for a connection the core no longer
    /// knows (see the module documentation).
    Closed {
        /// When it happened, on the driver's clock.
        now: Instant,
        /// The connection.
        conn: ConnId,
        /// The driver's words for what went wrong (`None`: closed by the remote).
        error: Option<String>,
    },
    /// A disk operation asked for by an action has finished. Results still count after
    /// `Event::Stopped`: a driver that flushes its queued writes at the end of a clean stop
    /// feeds them, and verified pieces are recorded (for its resume data).
    Disk {
        /// When it happened, on the driver's clock.
        now: Instant,
        /// The operation the action named.
        op: OpId,
        /// What the disk did.
        result: DiskResult,
    },
    /// A UDP datagram arrived.
    Datagram {
        /// When it happened, on the driver's clock.
        now: Instant,
        /// The sender.
        from: SocketAddr,
        /// The datagram.
        data: Bytes,
    },
    /// The answer to [`Action::Resolve`]: the host's addresses, preferred first, or why
    /// there are none.
    Resolved {
        /// When it happened, on the driver's clock.
        now: Instant,
        /// The operation the action named.
        op: OpId,
        /// The addresses, or the resolver's words for why there are none.
        result: Result<Vec<IpAddr>, String>,
    },
}

impl Input {
    /// When the input happened.
    pub fn now(&self) -> Instant {
        match self {
            Input::Timeout { now }
            | Input::Connected { now, .. }
            | Input::Received { now, .. }
            | Input::Sent { now, .. }
            | Input::Closed { now, .. }
            | Input::Disk { now, .. }
            | Input::Datagram { now, .. }
            | Input::Resolved { now, .. } => *now,
        }
    }
}

/// What the core wants next.
#[derive(Debug, Clone)]
pub enum Output {
    /// Something for the driver to do.
    Action(Action),
    /// Something for the user or the embedding program to know.
    Event(Event),
    /// Nothing more to do until this instant (or until the next input).
    Timeout(Instant),
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An address, as it is.
    Addr(SocketAddr),
    /// A host name to resolve (HTTP trackers); the driver picks the address.
    Host {
        /// The host name, as in the tracker URL.
        host: String,
        /// The port.
        port: u16,
    },
}

/// Something the core asks the driver to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Open a TCP connection; answer with [`Input::Connected`] or [`Input::Closed`]. (A
    /// peer connection the session carries over uTP, under `Config::transport`, never
    /// shows here: its packets are [`Action::SendDatagram`]s and [`Input::Datagram`]s, and
    /// no `Connect`, `Send` or `Close` names it. A uTP dial that falls back to TCP shows
    /// here late, under the id the uTP dial had.)
    Connect {
        /// The id the session gives the connection (every later input names it).
        conn: ConnId,
        /// Where to connect.
        target: Target,
    },
    /// Queue bytes on a connection, after everything queued before.
    Send {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        data: Bytes,
    },
    /// Close a connection, dropping anything still queued. The core has forgotten it.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Write blocks of a piece. `data` is contiguous from `offset` within the piece and
    /// `spans` says where those bytes go. When `expected` is set, `data` is the whole piece:
    /// hash it first and write only if it matches, answering [`DiskResult::HashMismatch`]
    /// otherwise (nothing written).
    Write {
        /// The id to answer with in [`Input::Disk`].
        op: OpId,
        /// The torrent.
        torrent: TorrentId,
        /// The piece.
        piece: u32,
        /// Where `data` starts within the piece.
        offset: u32,
        /// The bytes, in order (the blocks as they arrived, not copied together).
        data: Vec<Bytes>,
        /// Where the bytes lie in the torrent's files, in order.
        spans: Vec<FileSpan>,
        /// The piece's SHA-1, when `data` is the whole piece.
        expected: Option<[u8; 20]>,
    },
    /// Hash a piece as it is on disk. Data that cannot be read because a file is missing or
    /// too short is a mismatch, not an error.
    Verify {
        /// The id to answer with in [`Input::Disk`].
        op: OpId,
        /// The torrent.
        torrent: TorrentId,
        /// The piece.
        piece: u32,
        /// Where the bytes lie in the torrent's files, in order.
        spans: Vec<FileSpan>,
        /// The piece's SHA-1.
        expected: [u8; 20],
    },
    /// Read `len` bytes at `offset` within `piece`; answer with [`DiskResult::Data`].
    Read {
        /// The id to answer with in [`Input::Disk`].
        op: OpId,
        /// The torrent.
        torrent: TorrentId,
        /// The piece.
        piece: u32,
        /// Where the read starts within the piece.
        offset: u32,
        /// How many bytes to read.
        len: u32,
        /// Where the bytes lie in the torrent's files, in order.
        spans: Vec<FileSpan>,
    },
    /// Send one UDP datagram.
    SendDatagram {
        /// The receiver.
        to: SocketAddr,
        /// The payload.
        data: Bytes,
    },
    /// Look up a host name (a `udp://` tracker's): answer with [`Input::Resolved`] naming
    /// `op`, off the event loop (a resolver may block).
    Resolve {
        /// The id to answer with.
        op: OpId,
        /// The host name.
        host: String,
    },
}

/// The outcome of a disk action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskResult {
    /// The write is done, or the hash matched.
    Ok,
    /// The data did not match the expected hash.
    HashMismatch,
    /// What a read returned.
    Data(Bytes),
    /// The operating system refused.
    Error(DiskError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Why the operating system refused a disk operation.
pub struct DiskError {
    /// What kind of failure it was.
    pub kind: DiskErrorKind,
    /// The operating system's message, with the path.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The kinds of disk failure the core tells apart.
pub enum DiskErrorKind {
    /// The disk is full.
    NoSpace,
    /// The file or directory may not be written.
    PermissionDenied,
    /// A file or directory is missing.
    NotFound,
    /// Anything else.
    Other,
}

/// Something the user (or an embedding program) may want to know.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The check of existing data finished: `have` of `total` pieces are good.
    Checked {
        /// The torrent.
        torrent: TorrentId,
        /// Pieces found good.
        have: u32,
        /// Pieces in the torrent.
        total: u32,
    },
    /// A downloaded piece matched its hash and is on disk.
    PieceVerified {
        /// The torrent.
        torrent: TorrentId,
        /// The piece.
        piece: u32,
    },
    /// A downloaded piece failed its hash check and will be fetched again.
    HashFailed {
        /// The torrent.
        torrent: TorrentId,
        /// The piece.
        piece: u32,
    },
    /// Every wanted piece is verified on disk.
    Complete {
        /// The torrent.
        torrent: TorrentId,
    },
    /// Something happened with one of the torrent's trackers.
    Tracker {
        /// The torrent.
        torrent: TorrentId,
        /// The tracker's URL, as in the metainfo.
        url: String,
        /// What happened.
        event: TrackerEvent,
    },
    /// A peer completed the handshake.
    PeerConnected {
        /// The torrent.
        torrent: TorrentId,
        /// The peer's address.
        addr: SocketAddr,
        /// The peer's id, from its handshake.
        id: PeerId,
    },
    /// A peer connection ended (it was in the torrent, or still handshaking: `None`).
    PeerClosed {
        /// The torrent.
        torrent: Option<TorrentId>,
        /// The peer's address.
        addr: SocketAddr,
        /// Why.
        reason: CloseReason,
    },
    /// A disk operation failed; the torrent stops downloading. Verified data is untouched.
    DiskError {
        /// The torrent.
        torrent: TorrentId,
        /// What kind of failure it was.
        kind: DiskErrorKind,
        /// The operating system's message, with the path.
        message: String,
    },
    /// A seeding goal (`TorrentOptions::seed_ratio` or `seed_time`) was reached: the
    /// torrent has stopped serving, sent its `stopped` announces and closed its peers.
    /// The other torrents of the session go on.
    SeedingDone {
        /// The torrent.
        torrent: TorrentId,
        /// The goal that was reached first.
        goal: SeedGoal,
        /// Payload bytes sent to peers in this session.
        uploaded: u64,
        /// How long it seeded.
        seeded_for: Duration,
    },
    /// `Session::shutdown` has finished: stopped announces sent (or timed out), all
    /// connections closed.
    Stopped,
    /// A torrent added from a magnet link has its info dictionary, verified against the
    /// info hash. It waits, exchanging no pieces, until the driver has made storage for it
    /// and calls `Session::resume_with_metadata`.
    MetadataReceived {
        /// The torrent.
        torrent: TorrentId,
        /// The metainfo: the received info dictionary and the link's trackers.
        meta: std::sync::Arc<crate::metainfo::Metainfo>,
        /// The same as a `.torrent` file, to save.
        torrent_file: Bytes,
    },
    /// A magnet link's metadata hashed right but is not a usable torrent (an unsafe path,
    /// say); the torrent can go no further.
    MetadataFailed {
        /// The torrent.
        torrent: TorrentId,
        /// What is wrong with it.
        reason: String,
    },
}

/// Which seeding goal ended a torrent's seeding ([`Event::SeedingDone`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedGoal {
    /// Uploaded bytes reached `seed_ratio` times the torrent's wanted size.
    Ratio,
    /// It seeded for `seed_time`.
    Time,
}

impl std::fmt::Display for SeedGoal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SeedGoal::Ratio => "seed ratio reached",
            SeedGoal::Time => "seed time reached",
        })
    }
}

/// Why a peer connection ended ([`Event::PeerClosed`]). Its `Display` is one line of plain
/// words for logs and summaries.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CloseReason {
    /// The remote's handshake could not be read.
    #[error("{0}")]
    BadHandshake(WireError),
    /// The remote's handshake named another torrent than the one we dialled it for.
    #[error("handshake for another torrent")]
    OtherTorrent,
    /// The remote is this session (a tracker handed us our own address).
    #[error("connected to ourselves")]
    Ourselves,
    /// The remote's peer id was banned earlier.
    #[error("banned peer")]
    Banned,
    /// Another connection to the same peer id exists.
    #[error("already connected to this peer")]
    AlreadyConnected,
    /// The peer broke the protocol; it is banned.
    #[error("{0}")]
    Misbehaved(Misbehaviour),
    /// Pieces with this peer as their only source failed the hash check this many times;
    /// it is banned.
    #[error("banned: {0} pieces from this peer failed the hash check")]
    HashFailures(u32),
    /// Banned: a block it sent of this piece differed from the block the piece passed its
    /// hash check with (smart ban).
    #[error("banned: sent a corrupt block of piece {0}")]
    CorruptBlock(u32),
    /// Neither side wants anything from the other.
    #[error("both seeding")]
    BothSeeding,
    /// `Session::shutdown` closed every connection.
    #[error("shutting down")]
    ShuttingDown,
    /// The torrent reached its seeding goal ([`Event::SeedingDone`]).
    #[error("seeding goal reached")]
    SeedingDone,
    /// The connection or handshake took too long.
    #[error("connection timed out")]
    ConnectTimeout,
    /// Nothing arrived for `Config::idle_timeout`.
    #[error("idle")]
    Idle,
    /// A message started arriving and did not complete in time.
    #[error("a message is trickling in too slowly")]
    SlowMessage,
    /// The encrypted handshake (MSE) failed and the peer was not redialled.
    #[error("{0}")]
    Encryption(String),
    /// The driver reported the connection gone ([`Input::Closed`]), with its error if any.
    #[error("{}", .0.as_deref().unwrap_or("closed by remote"))]
    Remote(Option<String>),
}

/// How a peer broke the protocol (the connection is closed and the peer banned).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Misbehaviour {
    /// Bytes that do not decode as peer wire messages.
    #[error("protocol error: {0}")]
    Protocol(WireError),
    /// A `have` for a piece the torrent does not have.
    #[error("have for piece {piece} of {pieces}")]
    HaveOutOfRange {
        /// The piece named.
        piece: u32,
        /// Pieces in the torrent.
        pieces: u32,
    },
    /// A `bitfield` that does not fit the torrent.
    #[error("{0}")]
    Bitfield(BitfieldError),
    /// A message id we do not know.
    #[error("unknown message id {id} ({len} bytes)")]
    UnknownMessage {
        /// The message id.
        id: u8,
        /// Its payload length.
        len: u32,
    },
    /// A fast message (BEP 6) that is not allowed: not negotiated, or for a piece out of
    /// range.
    #[error("{0}")]
    Fast(crate::fast::FastError),
    /// A `reject_request` for a block we never requested.
    #[error("reject for a block never requested: {0:?}")]
    UnrequestedReject(crate::wire::BlockRequest),
    /// Too many requests while choked, well after our choke went out.
    #[error("more than {0} requests while choked")]
    RequestsWhileChoked(u32),
    /// Too many requests we could not serve; the last one's problem.
    #[error("too many invalid requests (last one {0})")]
    InvalidRequests(BadRequest),
    /// Far more requests than the queue it may keep with us.
    #[error("request flood: {dropped} requests beyond the {max} it may queue")]
    RequestFlood {
        /// Requests dropped so far.
        dropped: u32,
        /// The queue it may keep (`Config::max_peer_requests`).
        max: usize,
    },
    /// A `piece` message that is not a block of the torrent.
    #[error(
        "sent {len} bytes at offset {offset} of piece {piece}, which is not a block we ask for"
    )]
    NotABlock {
        /// The piece named.
        piece: u32,
        /// The offset in it.
        offset: u32,
        /// The payload length.
        len: u32,
    },
    /// A bad `ut_metadata` message, or metadata that does not match the info hash.
    #[error("metadata exchange: {0}")]
    Metadata(String),
    /// Too many blocks that nobody asked for.
    #[error("sent too many blocks nobody asked for")]
    UnrequestedBlocks,
}

/// What was wrong with a request we could not serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BadRequest {
    /// Longer than the 16 KiB we serve.
    #[error("longer than 16 KiB")]
    TooLong,
    /// Past the end of the piece.
    #[error("outside the piece")]
    OutsidePiece,
    /// For a piece we do not offer.
    #[error("for a piece we do not have")]
    NotOffered,
}

/// Why [`Session::add_torrent`](crate::Session::add_torrent) refused a torrent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddTorrentError {
    /// A torrent with this info hash is in the session already.
    #[error("torrent {0} is already in the session")]
    Duplicate(InfoHash),
    /// `resume_with_metadata` for a torrent that is not a magnet link's with its metadata in.
    #[error("torrent {0} is not waiting with received metadata")]
    NoMetadata(TorrentId),
}

#[derive(Debug, Clone, PartialEq)]
/// Something that happened with a tracker.
pub enum TrackerEvent {
    /// The tracker answered.
    Announced {
        /// Peers it listed.
        peers: usize,
        /// When it wants the next announce.
        interval: Duration,
    },
    /// The tracker's `warning message`.
    Warning(String),
    /// The tracker's `failure reason`.
    Failure(String),
    /// The tracker could not be reached or its answer not understood.
    Error(String),
}

/// A snapshot for progress displays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TorrentStats {
    /// Pieces in the torrent.
    pub pieces_total: u32,
    /// Pieces verified.
    pub pieces_have: u32,
    /// Bytes verified on disk.
    pub bytes_have: u64,
    /// Bytes in the torrent.
    pub total_len: u64,
    /// Payload bytes received from peers (including wasted ones).
    pub downloaded: u64,
    /// Payload bytes sent to peers.
    pub uploaded: u64,
    /// Payload bytes received that were thrown away (duplicates, failed pieces).
    pub wasted: u64,
    /// Peers with the handshake done.
    pub peers: usize,
    /// Bytes per second over the last few seconds.
    pub download_rate: f64,
    /// Bytes per second sent over the last few seconds.
    pub upload_rate: f64,
    /// Existing data is being hashed.
    pub checking: bool,
    /// Every wanted piece is verified.
    pub complete: bool,
}

/// One peer connection's request counts: the part of a [`PeerInfo`] a caller checking
/// request bounds after every input needs, read without rates or allocation
/// ([`Session::peer_requests`](crate::Session::peer_requests)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRequests {
    /// The connection.
    pub conn: ConnId,
    /// The peer's address.
    pub addr: SocketAddr,
    /// Our requests in flight to the peer.
    pub requests_out: usize,
    /// The most requests we keep in flight to it.
    pub queue_depth: usize,
    /// The peer's requests queued with us (not yet being read).
    pub requests_in: usize,
}

/// A snapshot of one peer connection (for displays and the simulator's invariants).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// The connection.
    pub conn: ConnId,
    /// The peer's address.
    pub addr: SocketAddr,
    /// Its peer id, once the handshake is done.
    pub id: Option<PeerId>,
    /// We dialled it.
    pub outbound: bool,
    /// Handshakes exchanged.
    pub active: bool,
    /// We choke it.
    pub am_choking: bool,
    /// We are interested in it.
    pub am_interested: bool,
    /// It chokes us.
    pub peer_choking: bool,
    /// It is interested in us.
    pub peer_interested: bool,
    /// Pieces the peer has.
    pub pieces: u32,
    /// Our requests in flight to the peer, and the most we allow.
    pub requests_out: usize,
    /// The most requests we keep in flight to it.
    pub queue_depth: usize,
    /// The peer's requests queued with us (not yet being read).
    pub requests_in: usize,
    /// Upload bytes handed to the driver and not yet reported sent.
    pub unsent: usize,
    /// Bytes per second received from it over the last few seconds.
    pub download_rate: f64,
    /// Bytes per second sent to it over the last few seconds.
    pub upload_rate: f64,
    /// Payload bytes received from it.
    pub downloaded: u64,
    /// Payload bytes sent to it.
    pub uploaded: u64,
    /// It let our requests time out: one request at a time until it delivers.
    pub snubbed: bool,
    /// How the connection is protected: plaintext, an MSE handshake with a plaintext
    /// stream, or RC4 for the whole stream.
    pub encryption: crate::mse::Encryption,
    /// What carries the connection: TCP or uTP.
    pub transport: crate::transport::Transport,
}
