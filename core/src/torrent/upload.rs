//! The uploading side: validating peers' requests, reading blocks through a small cache of
//! piece chunks, sending them as fast as the connection drains, and choosing whom to
//! unchoke.
//!
//! Whom to unchoke is the [`Choker`]'s decision (tit-for-tat with an optimistic slot).
//!
//! Reads are issued for whole chunks ([`CHUNK`] bytes of a piece) so that the neighbouring
//! blocks a peer asks for next come from memory, and a chunk being read serves every peer
//! waiting for it. Upload data handed to the driver per connection stays under
//! `max_send_buffer` (the driver reports what it wrote with `Input::Sent`).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::{Op, Torrent, choke, send};
use crate::api::{Action, BadRequest, DiskResult, Event, Misbehaviour};
use crate::choker::{Choker, ChokerConfig, PeerView};
use crate::id::ConnId;
use crate::layout::BLOCK_LEN;
use crate::shared::Shared;
use crate::time::{Duration, Instant};
use crate::wire::{BlockRequest, Message};

/// Bytes read from disk at a time for uploads.
const CHUNK: u32 = 128 * 1024;
/// Bytes of chunks kept in the read cache.
const CACHE_BYTES: usize = 16 << 20;
/// Largest block we serve (BEP 3 clients use 16 KiB).
pub(crate) const MAX_REQUEST: u32 = 16 * 1024;
/// Requests dropped for a full queue, in multiples of the queue, before a peer is
/// disconnected as a flooder.
const FLOOD_FACTOR: usize = 4;
/// Requests while choked (after the grace) tolerated between two unchokes.
const MAX_CHOKED_REQUESTS: u32 = 300;
/// Invalid requests tolerated from one peer before it is disconnected.
const MAX_BAD_REQUESTS: u32 = 20;
/// Upload data handed to the runtime per connection, at least (more for fast peers).
const MIN_SEND_WINDOW: usize = 256 * 1024;
/// Requests arriving this soon after our choke left the send buffer are a race, not abuse.
const CHOKE_GRACE: Duration = Duration::from_secs(5);

/// A chunk of a piece: bytes `[chunk * CHUNK, (chunk + 1) * CHUNK)` of `piece`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ChunkKey {
    piece: u32,
    chunk: u32,
}

#[derive(Debug)]
pub(super) struct Serving {
    cache: BTreeMap<ChunkKey, Bytes>,
    /// Cache keys, least recently used first.
    lru: VecDeque<ChunkKey>,
    cache_bytes: usize,
    /// Chunks being read and the requests waiting for them.
    reading: BTreeMap<ChunkKey, Vec<(ConnId, BlockRequest)>>,
    pub choker: Choker,
    /// A peer's interest changed during this input: see `Torrent::after_input`.
    pub rechoke_pending: bool,
    /// The choker's input, kept to reuse its allocation.
    views: Vec<PeerView>,
    /// Who holds or wants an upload slot, kept up to date as peers change.
    pub slots: SlotCounts,
}

/// Counts of the torrent's peers by (choked by us, interested in us), so that deciding
/// whether to re-run the choker after an input looks at no peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SlotCounts {
    /// Not choked by us.
    unchoked: usize,
    /// Not choked by us and not interested: a slot going to waste.
    idle: usize,
    /// Choked by us and interested: waiting for a slot.
    waiting: usize,
}

impl SlotCounts {
    fn add(&mut self, (choked, interested): (bool, bool), up: bool) {
        let step = |n: &mut usize| *n = if up { *n + 1 } else { *n - 1 };
        if !choked {
            step(&mut self.unchoked);
            if !interested {
                step(&mut self.idle);
            }
        } else if interested {
            step(&mut self.waiting);
        }
    }

    /// A peer's state went from `before` to `after`.
    pub fn change(&mut self, before: (bool, bool), after: (bool, bool)) {
        if before != after {
            self.add(before, false);
            self.add(after, true);
        }
    }

    /// A peer in state `state` left.
    pub fn remove(&mut self, state: (bool, bool)) {
        self.add(state, false);
    }

    /// The counts of these states (to check the running counts).
    fn of(states: impl Iterator<Item = (bool, bool)>) -> Self {
        let mut counts = SlotCounts::default();
        for s in states {
            counts.add(s, true);
        }
        counts
    }
}

impl Serving {
    pub fn new(now: Instant, slots: usize) -> Self {
        Serving {
            cache: BTreeMap::new(),
            lru: VecDeque::new(),
            cache_bytes: 0,
            reading: BTreeMap::new(),
            choker: Choker::new(
                ChokerConfig {
                    slots,
                    ..ChokerConfig::default()
                },
                now,
            ),
            rechoke_pending: false,
            views: Vec::new(),
            slots: SlotCounts::default(),
        }
    }

    pub fn forget_peer(&mut self, conn: ConnId) {
        for waiters in self.reading.values_mut() {
            waiters.retain(|(c, _)| *c != conn);
        }
    }

    fn get(&mut self, key: ChunkKey) -> Option<Bytes> {
        let data = self.cache.get(&key)?.clone();
        if let Some(i) = self.lru.iter().position(|k| *k == key) {
            self.lru.remove(i);
        }
        self.lru.push_back(key);
        Some(data)
    }

    fn insert(&mut self, key: ChunkKey, data: Bytes) {
        self.cache_bytes += data.len();
        if let Some(old) = self.cache.insert(key, data) {
            self.cache_bytes -= old.len();
        } else {
            self.lru.push_back(key);
        }
        while self.cache_bytes > CACHE_BYTES {
            let Some(old) = self.lru.pop_front() else {
                break;
            };
            if let Some(d) = self.cache.remove(&old) {
                self.cache_bytes -= d.len();
            }
        }
    }
}

impl Torrent {
    fn chunk_of(&self, req: BlockRequest) -> (ChunkKey, u32, u32) {
        let chunk = req.offset / CHUNK;
        let start = chunk * CHUNK;
        let len = (self.layout.piece_len(req.piece) - start).min(CHUNK);
        (
            ChunkKey {
                piece: req.piece,
                chunk,
            },
            start,
            len,
        )
    }

    /// A `request` message: queue it if it is valid, count it against the peer if not.
    pub(super) fn on_request(
        &mut self,
        sh: &mut Shared,
        conn: ConnId,
        req: BlockRequest,
    ) -> Result<(), Misbehaviour> {
        let now = sh.now;
        let have = self.offers(req.piece);
        let in_range = self.layout.range_in_piece(req.piece, req.offset, req.len);
        let Some(peer) = self.peers.get_mut(&conn) else {
            return Ok(());
        };
        let problem = if req.len > MAX_REQUEST {
            Some(BadRequest::TooLong)
        } else if !in_range {
            Some(BadRequest::OutsidePiece)
        } else if !have {
            Some(BadRequest::NotOffered)
        } else {
            None
        };
        if problem.is_none() && !peer.may_serve(req.piece) {
            // Requests sent before the peer saw our choke can arrive long after it left us
            // (they wait in the peer's own queues), so only many of them are abuse.
            if peer.choked_for(now, CHOKE_GRACE) {
                peer.choked_requests += 1;
                if peer.choked_requests > MAX_CHOKED_REQUESTS {
                    return Err(Misbehaviour::RequestsWhileChoked(MAX_CHOKED_REQUESTS));
                }
            }
            reject(sh, peer, req);
            return Ok(());
        }
        if problem.is_none() && self.goal.serving_over() {
            // The seeding goal is reached: the torrent is about to stop.
            return Ok(());
        }
        if let Some(problem) = problem {
            reject(sh, peer, req);
            peer.bad_requests += 1;
            tracing::debug!(addr = %peer.addr, ?req, "request {problem}");
            if peer.bad_requests > MAX_BAD_REQUESTS {
                return Err(Misbehaviour::InvalidRequests(problem));
            }
            return Ok(());
        }
        let max = sh.config.max_peer_requests;
        if peer.their_requests.len() >= max {
            // Over the queue we advertise (`reqq`): a peer that does not know it may
            // pipeline past it, so the excess is dropped; only a flood is disconnected.
            reject(sh, peer, req);
            peer.dropped_requests += 1;
            if peer.dropped_requests as usize > FLOOD_FACTOR * max {
                return Err(Misbehaviour::RequestFlood {
                    dropped: peer.dropped_requests,
                    max,
                });
            }
            return Ok(());
        }
        peer.their_requests.push_back(req);
        self.serve(sh, conn);
        Ok(())
    }

    /// Sends or starts reading queued requests of `conn` while its send buffer has room
    /// (and the upload limit allows).
    pub(super) fn serve(&mut self, sh: &mut Shared, conn: ConnId) {
        self.serve_with(sh, conn, false);
    }

    /// `conn`'s turn at the upload limit (see [`crate::bandwidth`]): one block at least.
    pub fn upload_turn(&mut self, sh: &mut Shared, conn: ConnId) {
        self.serve_with(sh, conn, true);
    }

    /// [`Torrent::serve`]; `turn`: the first block is paid for by the limit's turn.
    fn serve_with(&mut self, sh: &mut Shared, conn: ConnId, mut turn: bool) {
        if self.goal.serving_over() {
            return;
        }
        let id = self.id;
        let now = sh.now;
        let max = sh.config.max_send_buffer.max(MIN_SEND_WINDOW);
        loop {
            let Some(peer) = self.peers.get_mut(&conn) else {
                return;
            };
            // About a second of data at the peer's rate, so that control messages queued
            // behind it (a choke, a have) wait no longer than that.
            let window = (peer.upload.get(now) as usize).clamp(MIN_SEND_WINDOW, max);
            // Choked, a Fast extension peer keeps only requests for its allowed-fast pieces.
            if (peer.am_choking && !peer.fast)
                || peer.unsent() + peer.reading * BLOCK_LEN as usize >= window
            {
                return;
            }
            if peer.their_requests.is_empty() {
                return;
            }
            if !std::mem::take(&mut turn) && !sh.up.may_spend(now) {
                sh.up.wait((id, conn));
                return;
            }
            let Some(req) = peer.their_requests.pop_front() else {
                return;
            };
            sh.up.spend(u64::from(req.len));
            let (key, start, len) = self.chunk_of(req);
            if let Some(data) = self.upload.get(key) {
                self.send_block(sh, conn, req, &data, start);
                continue;
            }
            if let Some(p) = self.peers.get_mut(&conn) {
                p.reading += 1;
            }
            if let Some(waiters) = self.upload.reading.get_mut(&key) {
                waiters.push((conn, req));
                continue;
            }
            self.upload.reading.insert(key, vec![(conn, req)]);
            let op = sh.op(self.id);
            self.ops.insert(op, Op::Read { key });
            let spans = self.layout.spans(key.piece, start, len);
            sh.action(Action::Read {
                op,
                torrent: self.id,
                piece: key.piece,
                offset: start,
                len,
                spans,
            });
        }
    }

    /// Sends one block out of a chunk that starts at `chunk_start` within the piece.
    fn send_block(
        &mut self,
        sh: &mut Shared,
        conn: ConnId,
        req: BlockRequest,
        chunk: &Bytes,
        chunk_start: u32,
    ) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let from = (req.offset - chunk_start) as usize;
        let Some(data) = chunk
            .get(from..from + req.len as usize)
            .map(|_| chunk.slice(from..from + req.len as usize))
        else {
            return;
        };
        let now = sh.now;
        peer.send_piece_header(now, req);
        Torrent::flush_peer(sh, conn, peer);
        peer.emitted += data.len() as u64;
        peer.upload.add(now, u64::from(req.len));
        self.uploaded += u64::from(req.len);
        self.up_rate.add(now, u64::from(req.len));
        sh.send(conn, data);
    }

    pub(super) fn read_done(&mut self, sh: &mut Shared, key: ChunkKey, result: DiskResult) {
        let waiters = self.upload.reading.remove(&key).unwrap_or_default();
        for (conn, _) in &waiters {
            if let Some(p) = self.peers.get_mut(conn) {
                p.reading = p.reading.saturating_sub(1);
            }
        }
        let data = match result {
            DiskResult::Data(data) => data,
            DiskResult::Error(e) => {
                sh.event(Event::DiskError {
                    torrent: self.id,
                    kind: e.kind,
                    message: e.message,
                });
                return;
            }
            other => {
                tracing::warn!(?other, "unexpected answer to a read");
                return;
            }
        };
        let start = key.chunk * CHUNK;
        self.upload.insert(key, data.clone());
        let mut conns = Vec::new();
        for (conn, req) in waiters {
            let Some(peer) = self.peers.get_mut(&conn) else {
                continue;
            };
            if peer.may_serve(req.piece) {
                self.send_block(sh, conn, req, &data, start);
                conns.push(conn);
            } else {
                // Choked while the read was in flight.
                reject(sh, peer, req);
            }
        }
        conns.dedup();
        for conn in conns {
            self.serve(sh, conn);
        }
    }

    // ---- choking ------------------------------------------------------------------

    /// A peer's interest changed, or a peer left: once this input is handled, fill a free
    /// slot now rather than at the next round.
    pub(super) fn interest_changed(&mut self) {
        self.upload.rechoke_pending = true;
    }

    /// Re-runs the choker if a slot is free and someone waits for it, or an unchoked peer
    /// lost interest.
    pub(super) fn maybe_rechoke(&mut self, sh: &mut Shared) {
        let slots = sh.config.unchoke_slots + usize::from(sh.config.optimistic_unchoke);
        let counts = self.upload.slots;
        debug_assert_eq!(
            counts,
            SlotCounts::of(self.peers.values().map(|p| p.slot_state()))
        );
        let waiting = counts.waiting > 0;
        let idle_slot = counts.idle > 0;
        if (counts.unchoked < slots && waiting) || idle_slot {
            self.rechoke(sh, false);
        }
    }

    /// When the choker's next full round is due: only while some peer holds an upload
    /// slot or waits for one (a round with neither decides nothing).
    pub(super) fn choke_deadline(&self) -> Option<Instant> {
        let counts = self.upload.slots;
        (counts.unchoked > 0 || counts.waiting > 0).then(|| self.upload.choker.next_round())
    }

    /// Runs the choker (a full round, or a re-run that keeps the optimistic rotation) and
    /// applies its decision.
    pub(super) fn rechoke(&mut self, sh: &mut Shared, full_round: bool) {
        let now = sh.now;
        let mut views = std::mem::take(&mut self.upload.views);
        views.clear();
        let seeding = self.picker.is_complete();
        // Peers that are not interested never take part in a decision (see `PeerView`):
        // leaving them out saves their rates. A seed's choker ranks by turns, not by what
        // peers send us, so it gets no rates at all.
        views.extend(
            self.peers
                .iter()
                .filter(|(_, p)| p.is_active() && p.peer_interested)
                .map(|(&conn, p)| PeerView {
                    conn,
                    interested: p.peer_interested,
                    download_rate: if seeding { 0.0 } else { p.download.get(now) },
                    downloaded: if seeding { 0 } else { p.download.total() },
                    connected_at: p.connected_at,
                    last_block_at: p.last_piece_at,
                    am_interested_since: p.am_interested.then_some(p.am_interested_since),
                }),
        );
        let choker = &mut self.upload.choker;
        let mut decision = if full_round {
            choker.round(now, &views, seeding, &mut sh.rng)
        } else {
            choker.rerun(now, &views, seeding, &mut sh.rng)
        };
        self.upload.views = views;
        if !sh.config.optimistic_unchoke {
            decision.optimistic = None;
        }
        let mut newly_unchoked = Vec::new();
        let mut newly_choked = Vec::new();
        for (&conn, peer) in &mut self.peers {
            if !peer.is_active() {
                continue;
            }
            let unchoke = decision.is_unchoked(conn);
            let before = peer.slot_state();
            if unchoke && peer.am_choking {
                peer.am_choking = false;
                peer.choked_requests = 0;
                send(sh, peer, &Message::Unchoke);
                newly_unchoked.push(conn);
            } else if !unchoke && !peer.am_choking {
                choke(sh, peer);
                // The choke discards its requests, those being read too: a block read for
                // one must not reach it after a later unchoke, unasked.
                peer.reading = 0;
                newly_choked.push(conn);
            }
            self.upload.slots.change(before, peer.slot_state());
        }
        for conn in newly_choked {
            self.upload.forget_peer(conn);
        }
        for conn in newly_unchoked {
            self.serve(sh, conn);
        }
    }
}

/// Answers a request we will not serve with `reject_request`, when the peer speaks the Fast
/// extension (without it, a dropped request goes unanswered, as BEP 3 has it).
fn reject(sh: &mut Shared, peer: &mut crate::peer::Peer, req: BlockRequest) {
    if peer.fast {
        send(sh, peer, &Message::Reject(req));
    }
}
