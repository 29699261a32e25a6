//! What goes into the core and what comes out of it.
//!
//! The driver (a runtime, or the simulator) owns every socket, file, timer and thread. It
//! feeds [`Input`]s to `Session::handle_input` and then drains `Session::poll_output`
//! until it returns [`Output::Timeout`]: every mutation is followed by a complete drain.
//! The timeout is the instant at which the driver must call `handle_input(Input::Timeout)`
//! if nothing else happens first.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::id::{ConnId, OpId, PeerId, TorrentId};
use crate::layout::FileSpan;
use crate::time::Instant;

/// Something that happened outside the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// The deadline from the last [`Output::Timeout`] has passed (calling early is harmless).
    Timeout { now: Instant },
    /// An outbound connection asked for by [`Action::Connect`] is established.
    Connected { now: Instant, conn: ConnId },
    /// Bytes arrived on a connection, in order.
    Received {
        now: Instant,
        conn: ConnId,
        data: Bytes,
    },
    /// `bytes` more of this connection's queued sends were handed to the operating system.
    /// This is the core's flow control: it only produces more upload data for a connection
    /// while what it has sent and not yet heard back about here stays under a bound.
    Sent {
        now: Instant,
        conn: ConnId,
        bytes: usize,
    },
    /// The connection is gone: the connect failed, the remote closed it, or it broke.
    /// Not sent for connections the core closed itself with [`Action::Close`].
    Closed {
        now: Instant,
        conn: ConnId,
        error: Option<String>,
    },
    /// A disk operation asked for by an action has finished. Results still count after
    /// `Event::Stopped`: a driver that flushes its queued writes at the end of a clean stop
    /// feeds them, and verified pieces are recorded (for its resume data).
    Disk {
        now: Instant,
        op: OpId,
        result: DiskResult,
    },
    /// A UDP datagram arrived.
    Datagram {
        now: Instant,
        from: SocketAddr,
        data: Bytes,
    },
}

impl Input {
    pub fn now(&self) -> Instant {
        match self {
            Input::Timeout { now }
            | Input::Connected { now, .. }
            | Input::Received { now, .. }
            | Input::Sent { now, .. }
            | Input::Closed { now, .. }
            | Input::Disk { now, .. }
            | Input::Datagram { now, .. } => *now,
        }
    }
}

/// What the core wants next.
#[derive(Debug, Clone)]
pub enum Output {
    Action(Action),
    Event(Event),
    /// Nothing more to do until this instant (or until the next input).
    Timeout(Instant),
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Addr(SocketAddr),
    /// A host name to resolve (HTTP trackers); the driver picks the address.
    Host {
        host: String,
        port: u16,
    },
}

/// Something the core asks the driver to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Open a TCP connection; answer with [`Input::Connected`] or [`Input::Closed`].
    Connect { conn: ConnId, target: Target },
    /// Queue bytes on a connection, after everything queued before.
    Send { conn: ConnId, data: Bytes },
    /// Close a connection, dropping anything still queued. The core has forgotten it.
    Close { conn: ConnId },
    /// Write blocks of a piece. `data` is contiguous from `offset` within the piece and
    /// `spans` says where those bytes go. When `expected` is set, `data` is the whole piece:
    /// hash it first and write only if it matches, answering [`DiskResult::HashMismatch`]
    /// otherwise (nothing written).
    Write {
        op: OpId,
        torrent: TorrentId,
        piece: u32,
        offset: u32,
        data: Vec<Bytes>,
        spans: Vec<FileSpan>,
        expected: Option<[u8; 20]>,
    },
    /// Hash a piece as it is on disk. Data that cannot be read because a file is missing or
    /// too short is a mismatch, not an error.
    Verify {
        op: OpId,
        torrent: TorrentId,
        piece: u32,
        spans: Vec<FileSpan>,
        expected: [u8; 20],
    },
    /// Read `len` bytes at `offset` within `piece`; answer with [`DiskResult::Data`].
    Read {
        op: OpId,
        torrent: TorrentId,
        piece: u32,
        offset: u32,
        len: u32,
        spans: Vec<FileSpan>,
    },
    /// Send one UDP datagram.
    SendDatagram { to: SocketAddr, data: Bytes },
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
pub struct DiskError {
    pub kind: DiskErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskErrorKind {
    NoSpace,
    PermissionDenied,
    NotFound,
    Other,
}

/// Something the user (or an embedding program) may want to know.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The check of existing data finished: `have` of `total` pieces are good.
    Checked {
        torrent: TorrentId,
        have: u32,
        total: u32,
    },
    PieceVerified {
        torrent: TorrentId,
        piece: u32,
    },
    /// A downloaded piece failed its hash check and will be fetched again.
    HashFailed {
        torrent: TorrentId,
        piece: u32,
    },
    /// Every wanted piece is verified on disk.
    Complete {
        torrent: TorrentId,
    },
    Tracker {
        torrent: TorrentId,
        url: String,
        event: TrackerEvent,
    },
    PeerConnected {
        torrent: TorrentId,
        addr: SocketAddr,
        id: PeerId,
    },
    PeerClosed {
        torrent: Option<TorrentId>,
        addr: SocketAddr,
        reason: String,
    },
    /// A disk operation failed; the torrent stops downloading. Verified data is untouched.
    DiskError {
        torrent: TorrentId,
        message: String,
    },
    /// `Session::shutdown` has finished: stopped announces sent (or timed out), all
    /// connections closed.
    Stopped,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TrackerEvent {
    Announced {
        peers: usize,
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
    pub pieces_total: u32,
    pub pieces_have: u32,
    /// Bytes verified on disk.
    pub bytes_have: u64,
    pub total_len: u64,
    /// Payload bytes received from peers (including wasted ones).
    pub downloaded: u64,
    /// Payload bytes sent to peers.
    pub uploaded: u64,
    /// Payload bytes received that were thrown away (duplicates, failed pieces).
    pub wasted: u64,
    pub peers: usize,
    /// Bytes per second over the last few seconds.
    pub download_rate: f64,
    pub upload_rate: f64,
    pub checking: bool,
    pub complete: bool,
}

/// A snapshot of one peer connection (for displays and the simulator's invariants).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    pub conn: ConnId,
    pub addr: SocketAddr,
    pub id: Option<PeerId>,
    pub outbound: bool,
    /// Handshakes exchanged.
    pub active: bool,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    /// Pieces the peer has.
    pub pieces: u32,
    /// Our requests in flight to the peer, and the most we allow.
    pub requests_out: usize,
    pub queue_depth: usize,
    /// The peer's requests queued with us (not yet being read).
    pub requests_in: usize,
    /// Upload bytes handed to the driver and not yet reported sent.
    pub unsent: usize,
    pub download_rate: f64,
    pub upload_rate: f64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub snubbed: bool,
}
