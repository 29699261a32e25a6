//! One peer connection's protocol state (BEP 3): the four choke/interest flags, what the
//! peer has, the requests in flight each way, and the bytes waiting to be sent.
//!
//! Decisions (what to request, whom to unchoke) are the torrent's; a `Peer` only records.
//! It is told the time, and says what changed: a method that queues bytes returns whether
//! the connection newly has bytes waiting, so that the torrent lists it for the flush at
//! the end of the input.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use crate::bitfield::Bitfield;
use crate::id::{ConnId, PeerId, TorrentId};
use crate::layout::BlockRef;
use crate::rate::Rate;
use crate::time::Instant;
use crate::wire::{self, BlockRequest, Decoder, Message};

/// Withdrawn requests remembered per peer.
const MAX_RELEASED: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Outbound TCP connect in progress.
    Connecting,
    /// Waiting for the remote handshake.
    Handshaking,
    /// Handshakes exchanged.
    Active,
    /// An inbound connection from ourselves: our handshake went back so that the dialling
    /// side learns the address is its own and closes; nothing else happens here.
    Ourselves,
}

/// A request of ours in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outstanding {
    pub block: BlockRef,
    pub sent: Instant,
}

/// One connection's state. Fields are laid out by use (`repr(C)`, aligned to a cache line)
/// rather than by size: a large swarm keeps thousands of peers, and what every message and
/// every tick looks at sits in the first two cache lines, the buffers of the message path
/// in the next ones, and counters and identities that are rarely read at the end.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Peer {
    // ---- every message, every tick ----------------------------------------------------
    pub phase: Phase,
    /// Reported as needing a flush since bytes were last queued in `out`.
    listed: bool,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    /// Any message after the handshake seen (a bitfield is only allowed first).
    pub seen_message: bool,
    /// The peer let our requests time out; it gets one request at a time until it delivers.
    pub snubbed: bool,
    pub last_recv: Instant,
    pub last_send: Instant,
    /// Since when part of a message has been waiting for the rest.
    pub partial_since: Option<Instant>,
    /// How many requests we keep in flight to this peer.
    pub queue_depth: usize,
    /// The most requests the peer accepts queued (its BEP 10 `reqq`).
    pub max_requests: Option<usize>,
    pub torrent: TorrentId,
    pub conn: ConnId,
    /// Our requests to the peer, oldest first.
    pub requests: VecDeque<Outstanding>,
    /// When the peer last delivered a block we wanted (or when we started waiting).
    pub last_block_at: Instant,

    // ---- the message path --------------------------------------------------------------
    pub decoder: Decoder,
    /// Control messages waiting to be flushed as one `Send`.
    pub out: BytesMut,
    pub has: Bitfield,
    /// Pieces whose requests this peer let time out: not asked of it again until it
    /// delivers something.
    pub avoid: Option<Bitfield>,
    /// Bytes handed to the runtime for this connection, in total.
    pub emitted: u64,
    /// Bytes the runtime reported written (`Input::Sent`), in total.
    pub acked: u64,
    /// Reads in flight on behalf of this peer.
    pub reading: usize,
    /// The peer's requests to us, not yet being read from disk.
    pub their_requests: VecDeque<BlockRequest>,
    /// While our last `choke` is still queued: the stream position just past it.
    pub choke_marker: Option<u64>,
    pub download: Rate,
    pub upload: Rate,
    /// Blocks whose requests we withdrew (cancelled, timed out, choked): a copy may still
    /// arrive, and it was asked for. Bounded to the most recent ones.
    pub released: VecDeque<BlockRef>,
    /// When the peer last delivered a block we wanted (for the choker's snub rule).
    pub last_piece_at: Option<Instant>,
    /// When we last became interested in the peer.
    pub am_interested_since: Instant,
    pub connected_at: Instant,
    /// When our last `choke` left our send buffer (requests arriving shortly after are a
    /// race, not abuse).
    pub choked_at: Instant,

    // ---- rarely read -------------------------------------------------------------------
    pub addr: SocketAddr,
    pub id: Option<PeerId>,
    pub outbound: bool,
    /// Pieces that failed the hash check with this peer as their only source.
    pub hash_failures: u32,
    /// Requests that broke the rules (piece we lack, out of range, too long, while choked).
    pub bad_requests: u32,
    /// Requests that arrived while choked, well after our choke went out.
    pub choked_requests: u32,
    /// Requests dropped because the peer's queue with us was full.
    pub dropped_requests: u32,
    /// Blocks received that nobody asked for.
    pub unrequested_blocks: u32,
    /// Both handshakes had the Fast extension's bit (BEP 6).
    pub fast: bool,
    /// The pieces this peer may request from us while choked (the allowed-fast set we
    /// computed for it; empty without the Fast extension).
    pub allowed_out: Vec<u32>,
    /// The pieces this peer lets us request while it chokes us (its `allowed_fast`).
    pub allowed_in: crate::fast::PieceList,
}

impl Peer {
    pub fn new(
        now: Instant,
        (torrent, conn): (TorrentId, ConnId),
        addr: SocketAddr,
        outbound: bool,
        num_pieces: u32,
        min_queue_depth: usize,
    ) -> Self {
        Peer {
            torrent,
            conn,
            listed: false,
            addr,
            outbound,
            phase: if outbound {
                Phase::Connecting
            } else {
                Phase::Handshaking
            },
            decoder: Decoder::new(),
            id: None,
            connected_at: now,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            has: Bitfield::new(num_pieces as usize),
            seen_message: false,
            requests: VecDeque::new(),
            queue_depth: min_queue_depth,
            max_requests: None,
            last_block_at: now,
            snubbed: false,
            last_piece_at: None,
            am_interested_since: now,
            their_requests: VecDeque::new(),
            reading: 0,
            emitted: 0,
            acked: 0,
            choked_at: now,
            choke_marker: None,
            released: VecDeque::new(),
            avoid: None,
            out: BytesMut::new(),
            download: Rate::new(now),
            upload: Rate::new(now),
            hash_failures: 0,
            bad_requests: 0,
            choked_requests: 0,
            dropped_requests: 0,
            unrequested_blocks: 0,
            fast: false,
            allowed_out: Vec::new(),
            allowed_in: crate::fast::PieceList::new(crate::fast::MAX_ALLOWED_FAST_RECEIVED),
            last_recv: now,
            last_send: now,
            partial_since: None,
        }
    }

    /// Queues a control message. True when the connection must be listed for the next
    /// flush (the first bytes queued since the last one).
    #[must_use]
    pub fn send(&mut self, now: Instant, msg: &Message) -> bool {
        msg.encode(&mut self.out);
        self.queued(now)
    }

    /// Queues raw bytes (the handshake); returns what [`Peer::send`] does.
    #[must_use]
    pub fn send_raw(&mut self, now: Instant, bytes: &[u8]) -> bool {
        self.out.extend_from_slice(bytes);
        self.queued(now)
    }

    /// Notes bytes queued at `now`; true the first time since the last flush.
    fn queued(&mut self, now: Instant) -> bool {
        self.last_send = now;
        !std::mem::replace(&mut self.listed, true)
    }

    /// Takes the queued control bytes, if any, counting them as handed to the runtime.
    pub fn take_out(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            return None;
        }
        self.listed = false;
        // A copy, so that `out` keeps its buffer: control messages are a few bytes, and
        // splitting the buffer off would cost a fresh allocation (and its growth) per flush.
        let bytes = Bytes::copy_from_slice(&self.out);
        self.out.clear();
        self.emitted += bytes.len() as u64;
        Some(bytes)
    }

    /// Upload bytes handed to the runtime and not yet reported written.
    pub fn unsent(&self) -> usize {
        usize::try_from(self.emitted - self.acked).unwrap_or(usize::MAX)
    }

    /// The runtime wrote `bytes` more of this connection's data.
    pub fn on_sent(&mut self, now: Instant, bytes: usize) {
        self.acked = (self.acked + bytes as u64).min(self.emitted);
        if self.choke_marker.is_some_and(|m| self.acked >= m) {
            self.choke_marker = None;
            self.choked_at = now;
        }
    }

    /// Chokes the peer: queues the message and drops its queued requests. With the Fast
    /// extension, requests for its allowed-fast pieces stay queued and every other one is
    /// answered with `reject_request` (BEP 6), right after the choke. Returns what
    /// [`Peer::send`] does.
    #[must_use]
    pub fn choke(&mut self, now: Instant) -> bool {
        self.am_choking = true;
        let list = self.send(now, &Message::Choke);
        if self.fast {
            let pending = std::mem::take(&mut self.their_requests);
            let (keep, reject) = crate::fast::split_on_choke(pending, &self.allowed_out);
            self.their_requests = keep.into();
            for r in reject {
                Message::Reject(r).encode(&mut self.out);
            }
        } else {
            self.their_requests.clear();
        }
        self.choke_marker = Some(self.emitted + self.out.len() as u64);
        list
    }

    /// True once our last choke has been on the wire for `grace`.
    pub fn choked_for(&self, now: Instant, grace: crate::time::Duration) -> bool {
        self.am_choking
            && self.choke_marker.is_none()
            && now.saturating_duration_since(self.choked_at) > grace
    }

    /// Withdraws our request for `block` (it may still arrive: see `released`).
    pub fn withdraw(&mut self, block: BlockRef) -> bool {
        if !self.take_request(block) {
            return false;
        }
        self.remember_released(block);
        true
    }

    /// Withdraws every request in flight, handing each block to `release` in request order.
    pub fn withdraw_all(&mut self, mut release: impl FnMut(BlockRef)) {
        while let Some(r) = self.requests.pop_front() {
            self.remember_released(r.block);
            release(r.block);
        }
    }

    /// Withdraws every request in flight but those for the peer's allowed-fast pieces
    /// (which it may still serve while it chokes us), handing each block to `release`.
    pub fn withdraw_choked(&mut self, mut release: impl FnMut(BlockRef)) {
        let mut kept = VecDeque::new();
        while let Some(r) = self.requests.pop_front() {
            if self.allowed_in.contains(r.block.piece) {
                kept.push_back(r);
            } else {
                self.remember_released(r.block);
                release(r.block);
            }
        }
        self.requests = kept;
    }

    fn remember_released(&mut self, block: BlockRef) {
        if self.released.len() >= MAX_RELEASED {
            self.released.pop_front();
        }
        self.released.push_back(block);
    }

    /// True when `block` was requested from this peer: in flight (removed now) or withdrawn
    /// recently.
    pub fn was_requested(&mut self, block: BlockRef) -> bool {
        if self.take_request(block) {
            return true;
        }
        match self.released.iter().position(|b| *b == block) {
            Some(i) => {
                self.released.remove(i);
                true
            }
            None => false,
        }
    }

    /// Queues the header of a `piece` message; the caller flushes it at once and sends the
    /// payload right after it, as its own buffer. So the peer is not listed for the flush
    /// after the input (that would leave an empty flush behind for every block served).
    pub fn send_piece_header(&mut self, now: Instant, req: BlockRequest) {
        wire::encode_piece_header(req.piece, req.offset, req.len, &mut self.out);
        self.last_send = now;
    }

    /// Whether we send this peer blocks of `piece` now: unchoked, or an allowed-fast piece
    /// of a Fast extension peer.
    pub fn may_serve(&self, piece: u32) -> bool {
        !self.am_choking || (self.fast && self.allowed_out.contains(&piece))
    }

    /// (choked by us, interested in us): what the torrent's `SlotCounts` count.
    pub fn slot_state(&self) -> (bool, bool) {
        (self.am_choking, self.peer_interested)
    }

    pub fn is_seed(&self) -> bool {
        !self.has.is_empty() && self.has.all()
    }

    pub fn is_active(&self) -> bool {
        self.phase == Phase::Active
    }

    /// Removes our outstanding request for `block`, returning whether it was there. Blocks
    /// usually arrive in request order, so the front is checked first.
    pub fn take_request(&mut self, block: BlockRef) -> bool {
        if self.requests.front().is_some_and(|r| r.block == block) {
            self.requests.pop_front();
            return true;
        }
        match self.requests.iter().position(|r| r.block == block) {
            Some(i) => {
                self.requests.remove(i);
                true
            }
            None => false,
        }
    }

    /// Requests in flight that the queue depth still allows.
    pub fn request_room(&self) -> usize {
        let depth = if self.snubbed {
            1
        } else {
            self.queue_depth
                .min(self.max_requests.unwrap_or(usize::MAX))
        };
        depth.saturating_sub(self.requests.len())
    }
}
