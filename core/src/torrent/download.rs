//! The downloading side: keeping requests in flight, assembling received blocks into
//! pieces, handing complete pieces to the disk to be hashed and written, and acting on the
//! verdict (including striking and banning peers whose data fails the hash check).
//!
//! Received blocks stay in memory (as the `Bytes` they arrived in) until their piece is
//! complete; the driver then hashes the piece from memory and writes it only if it matches,
//! so corrupt data never reaches the disk and nothing is read back. When more than half
//! of `max_buffered_bytes` is held, the fullest partial piece is spilled to disk unverified
//! and checked from disk once complete.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::{Op, Source, State, Torrent, send};
use crate::api::{Action, CloseReason, DiskError, DiskErrorKind, DiskResult, Event, Misbehaviour};
use crate::id::{ConnId, PeerId};
use crate::layout::{BLOCK_LEN, BlockRef};
use crate::peer::Outstanding;
use crate::picker::Arrival;
use crate::shared::Shared;
use crate::wire::{BlockRequest, Message};

use super::smart_ban::SmartBan;

/// Pieces being assembled, and what has been learnt about peers' data.
#[derive(Debug, Default)]
pub(super) struct Assembly {
    pieces: BTreeMap<u32, PieceBuf>,
    /// Bytes of received blocks held in `pieces`.
    pub mem_bytes: usize,
    /// Bytes handed to the disk and not yet written.
    pub disk_bytes: usize,
    /// Failed pieces per peer id, counted when the peer was the piece's only source.
    strikes: BTreeMap<PeerId, u32>,
    banned: BTreeSet<PeerId>,
    /// Who sent which block of failed pieces, to find the liar once the piece passes.
    smart: SmartBan,
    /// Pieces that failed with blocks from several peers, fetched again from one peer
    /// alone (the one named, once one has picked it): a liar that keeps mixing corrupt
    /// blocks into a shared piece would otherwise make it fail for ever, with nobody to
    /// blame. Alone, a liar's attempt is a strike against it; an honest peer's passes,
    /// and smart ban names the liar.
    exclusive: BTreeMap<u32, Option<ConnId>>,
}

#[derive(Debug)]
struct PieceBuf {
    /// Blocks held in memory, by index.
    blocks: Vec<Option<Bytes>>,
    /// Blocks already written to disk (spilled).
    on_disk: Vec<bool>,
    held: usize,
    sources: Vec<Source>,
    /// Who sent each block held in memory.
    block_sources: Vec<Option<Source>>,
    spills_in_flight: u32,
    /// Every block received; the piece waits for its spills before the final check.
    complete: bool,
}

impl PieceBuf {
    fn new(blocks: u32) -> Self {
        PieceBuf {
            blocks: vec![None; blocks as usize],
            on_disk: vec![false; blocks as usize],
            held: 0,
            sources: Vec::new(),
            block_sources: vec![None; blocks as usize],
            spills_in_flight: 0,
            complete: false,
        }
    }

    fn spilled(&self) -> bool {
        self.on_disk.iter().any(|&d| d)
    }
}

impl Assembly {
    pub fn is_banned(&self, id: &PeerId) -> bool {
        self.banned.contains(id)
    }

    pub fn ban(&mut self, id: PeerId) {
        self.banned.insert(id);
    }
}

impl Torrent {
    /// Tops up `conn`'s requests to its queue depth (as far as the download limit allows).
    pub(super) fn request_blocks(&mut self, sh: &mut Shared, conn: ConnId) {
        self.request_blocks_with(sh, conn, false);
    }

    /// `conn`'s turn at the download limit (see [`crate::bandwidth`]).
    pub fn download_turn(&mut self, sh: &mut Shared, conn: ConnId) {
        self.request_blocks_with(sh, conn, true);
    }

    /// [`Torrent::request_blocks`]; `turn`: the limit gave this peer its turn.
    fn request_blocks_with(&mut self, sh: &mut Shared, conn: ConnId, turn: bool) {
        if !self.downloading() || self.over_budget(sh) {
            return;
        }
        let id = self.id;
        let mut taken = Vec::new();
        if !self.download.exclusive.is_empty() {
            let peers = &self.peers;
            for (&piece, owner) in &mut self.download.exclusive {
                let Some(o) = *owner else { continue };
                let keeps = peers.get(&o).is_some_and(|p| {
                    p.is_active() && !p.peer_choking && !p.snubbed && p.has.get(piece as usize)
                });
                if !keeps {
                    *owner = None;
                } else if o != conn {
                    taken.push(piece);
                }
            }
        }
        let Torrent {
            peers,
            picker,
            layout,
            scratch,
            download,
            ..
        } = self;
        let Some(peer) = peers.get_mut(&conn) else {
            return;
        };
        // Choked by a Fast extension peer, its allowed-fast pieces may still be requested.
        let choked = peer.peer_choking;
        if !peer.is_active() || !peer.am_interested || (choked && peer.allowed_in.is_empty()) {
            return;
        }
        let mut room = peer.request_room();
        if room == 0 {
            return;
        }
        // Under a download limit, requests are paid for as they are sent: as many as the
        // tokens cover, then the peer waits for its turn.
        let mut limited = false;
        if sh.down.is_limited() {
            if !turn && !sh.down.may_spend(sh.now) {
                sh.down.wait((id, conn));
                return;
            }
            let allowed = sh.down.blocks();
            if allowed < room {
                room = allowed;
                limited = true;
            }
        }
        let picked = &mut scratch.blocks;
        picked.clear();
        // Pieces whose requests to this peer timed out, to ask of it again if nothing else.
        let mut avoided = Vec::new();
        match (&peer.avoid, choked) {
            (None, false) if taken.is_empty() => {
                picker.pick(conn, &peer.has, room, &mut sh.rng, picked)
            }
            (avoid, _) => {
                let mut has = if choked {
                    let mut allowed = crate::bitfield::Bitfield::new(peer.has.len());
                    for p in peer.allowed_in.iter() {
                        if peer.has.get(p as usize) {
                            allowed.set(p as usize);
                        }
                    }
                    allowed
                } else {
                    peer.has.clone()
                };
                for &p in &taken {
                    has.clear(p as usize);
                }
                for p in avoid.iter().flat_map(|a| a.ones()) {
                    if has.clear(p) {
                        avoided.push(p);
                    }
                }
                picker.pick(conn, &has, room, &mut sh.rng, picked);
            }
        }
        // The avoided pieces wait for other peers while this one has something else to give;
        // once they are all it has that we lack, those no other peer could send (one not
        // snubbed, unchoking us now or later) are asked of it again, one request at a time
        // while it is snubbed: else nothing is ever requested, no block comes to clear the
        // mark, and the last pieces wait for ever.
        if picked.is_empty() && !avoided.is_empty() {
            let mut only_here = crate::bitfield::Bitfield::new(layout.num_pieces() as usize);
            for p in avoided {
                let elsewhere = peers
                    .iter()
                    .any(|(&c, o)| c != conn && o.is_active() && !o.snubbed && o.has.get(p));
                if !elsewhere {
                    only_here.set(p);
                }
            }
            picker.pick(conn, &only_here, room, &mut sh.rng, picked);
        }
        let Some(peer) = peers.get_mut(&conn) else {
            return;
        };
        for &block in picked.iter() {
            if let Some(owner) = download.exclusive.get_mut(&block.piece) {
                owner.get_or_insert(conn);
            }
            let req = BlockRequest {
                piece: block.piece,
                offset: layout.block_offset(block),
                len: layout.block_len(block),
            };
            peer.requests.push_back(Outstanding {
                block,
                sent: sh.now,
            });
            sh.down.spend(u64::from(req.len));
            send(sh, peer, &Message::Request(req));
        }
        if limited && picked.len() == room {
            sh.down.wait((id, conn));
        }
    }

    /// Tops up every peer (after requests were released, or the budget freed up).
    pub(super) fn request_all(&mut self, sh: &mut Shared) {
        self.request_all_but(sh, &[]);
    }

    /// [`Torrent::request_all`] except for the peers in `skip`.
    fn request_all_but(&mut self, sh: &mut Shared, skip: &[ConnId]) {
        let mut conns = std::mem::take(&mut self.scratch.conns);
        conns.clear();
        self.peers.keys_into(&mut conns);
        for &conn in &conns {
            if !skip.contains(&conn) {
                self.request_blocks(sh, conn);
            }
        }
        self.scratch.conns = conns;
    }

    /// True when held and unwritten data is at the limit: no new requests. Spills first.
    fn over_budget(&mut self, sh: &mut Shared) -> bool {
        let limit = sh.config.max_buffered_bytes;
        if self.download.mem_bytes > limit / 2 {
            self.spill(sh, limit / 2);
        }
        self.download.mem_bytes + self.download.disk_bytes >= limit
    }

    /// Hands every outstanding request of `conn` back to the picker.
    pub(super) fn release_requests(&mut self, conn: ConnId) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let picker = &mut self.picker;
        peer.withdraw_all(|block| picker.release(block, conn));
    }

    /// A `piece` message.
    pub(super) fn on_block(
        &mut self,
        sh: &mut Shared,
        conn: ConnId,
        piece: u32,
        offset: u32,
        data: Bytes,
    ) -> Result<(), Misbehaviour> {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let Some(block) = self.layout.block_at(piece, offset, len) else {
            return Err(Misbehaviour::NotABlock { piece, offset, len });
        };
        let now = sh.now;
        let Some(peer) = self.peers.get_mut(&conn) else {
            return Ok(());
        };
        let requested = peer.was_requested(block);
        peer.download.add(now, u64::from(len));
        self.downloaded += u64::from(len);
        self.down_rate.add(now, u64::from(len));
        match self.picker.on_block(block, conn) {
            Arrival::Unwanted => {
                self.wasted += u64::from(len);
                if !requested {
                    peer.unrequested_blocks += 1;
                    if peer.unrequested_blocks > super::MAX_UNREQUESTED {
                        return Err(Misbehaviour::UnrequestedBlocks);
                    }
                }
            }
            Arrival::New {
                cancel,
                piece_complete,
            } => {
                peer.last_block_at = now;
                peer.last_piece_at = Some(now);
                peer.snubbed = false;
                peer.avoid = None;
                let source = Source {
                    conn,
                    addr: peer.addr,
                    id: peer.id,
                };
                let req = BlockRequest { piece, offset, len };
                for other in cancel {
                    if let Some(p) = self.peers.get_mut(&other)
                        && p.withdraw(block)
                    {
                        send(sh, p, &Message::Cancel(req));
                    }
                }
                self.store(block, data, source);
                if piece_complete {
                    self.piece_complete(sh, piece);
                }
            }
        }
        self.request_blocks(sh, conn);
        Ok(())
    }

    fn store(&mut self, block: BlockRef, data: Bytes, source: Source) {
        let blocks = self.layout.blocks_in_piece(block.piece);
        let buf = self
            .download
            .pieces
            .entry(block.piece)
            .or_insert_with(|| PieceBuf::new(blocks));
        let Some(slot) = buf.blocks.get_mut(block.block as usize) else {
            return;
        };
        let len = data.len();
        if let Some(old) = slot.replace(data) {
            buf.held -= old.len();
            self.download.mem_bytes -= old.len();
        }
        buf.held += len;
        self.download.mem_bytes += len;
        if let Some(s) = buf.block_sources.get_mut(block.block as usize) {
            *s = Some(source);
        }
        if !buf.sources.iter().any(|s| s.conn == source.conn) {
            buf.sources.push(source);
        }
    }

    /// Every block of `piece` has arrived: hash and write it.
    fn piece_complete(&mut self, sh: &mut Shared, piece: u32) {
        let Some(expected) = self.meta.piece_hash(piece) else {
            return;
        };
        let spilled = self
            .download
            .pieces
            .get(&piece)
            .is_some_and(PieceBuf::spilled);
        if spilled {
            self.spill_piece(sh, piece);
            if let Some(buf) = self.download.pieces.get_mut(&piece) {
                buf.complete = true;
            }
            self.verify_spilled_if_ready(sh, piece);
            return;
        }
        let Some(buf) = self.download.pieces.remove(&piece) else {
            return;
        };
        let bytes = buf.held;
        self.download.mem_bytes -= bytes;
        self.download.disk_bytes += bytes;
        let held = buf
            .blocks
            .iter()
            .zip(&buf.block_sources)
            .enumerate()
            .filter_map(|(i, (b, s))| Some((i as u32, (*s)?, b.clone()?)))
            .collect();
        self.download.smart.verifying(piece, held);
        let data: Vec<Bytes> = buf.blocks.into_iter().flatten().collect();
        let op = sh.op(self.id);
        self.ops.insert(
            op,
            Op::WritePiece {
                piece,
                bytes,
                sources: buf.sources,
            },
        );
        let spans = self.layout.spans(piece, 0, self.layout.piece_len(piece));
        sh.action(Action::Write {
            op,
            torrent: self.id,
            piece,
            offset: 0,
            data,
            spans,
            expected: Some(expected),
        });
    }

    /// Moves the blocks held for `piece` to disk, unverified, one write per contiguous run.
    fn spill_piece(&mut self, sh: &mut Shared, piece: u32) {
        let Some(buf) = self.download.pieces.get_mut(&piece) else {
            return;
        };
        let mut i = 0;
        while i < buf.blocks.len() {
            if buf.blocks[i].is_none() {
                i += 1;
                continue;
            }
            let start = i;
            let mut data = Vec::new();
            while let Some(Some(b)) = buf.blocks.get_mut(i).map(Option::take) {
                data.push(b);
                buf.on_disk[i] = true;
                i += 1;
            }
            let bytes: usize = data.iter().map(Bytes::len).sum();
            buf.held -= bytes;
            buf.spills_in_flight += 1;
            self.download.mem_bytes -= bytes;
            self.download.disk_bytes += bytes;
            let offset = start as u32 * BLOCK_LEN;
            let op = sh.op(self.id);
            self.ops.insert(op, Op::Spill { piece, bytes });
            let spans = self.layout.spans(piece, offset, bytes as u32);
            sh.action(Action::Write {
                op,
                torrent: self.id,
                piece,
                offset,
                data,
                spans,
                expected: None,
            });
        }
    }

    /// Spills the fullest pieces until at most `target` bytes are held.
    fn spill(&mut self, sh: &mut Shared, target: usize) {
        while self.download.mem_bytes > target {
            let Some((&piece, _)) = self
                .download
                .pieces
                .iter()
                .filter(|(_, b)| b.held > 0)
                .max_by_key(|(_, b)| b.held)
            else {
                return;
            };
            tracing::debug!(
                piece,
                held = self.download.mem_bytes,
                "spilling a partial piece to disk"
            );
            self.spill_piece(sh, piece);
        }
    }

    pub(super) fn spill_done(&mut self, sh: &mut Shared, piece: u32, result: DiskResult) {
        if let Some(buf) = self.download.pieces.get_mut(&piece) {
            buf.spills_in_flight = buf.spills_in_flight.saturating_sub(1);
        }
        match result {
            DiskResult::Ok => self.verify_spilled_if_ready(sh, piece),
            DiskResult::Error(e) => self.fail(sh, e),
            other => self.fail(
                sh,
                unexpected(format!("unexpected answer to a write: {other:?}")),
            ),
        }
        self.request_all(sh);
    }

    fn verify_spilled_if_ready(&mut self, sh: &mut Shared, piece: u32) {
        let ready = self
            .download
            .pieces
            .get(&piece)
            .is_some_and(|b| b.complete && b.spills_in_flight == 0);
        if !ready {
            return;
        }
        let (Some(buf), Some(expected)) = (
            self.download.pieces.remove(&piece),
            self.meta.piece_hash(piece),
        ) else {
            return;
        };
        let op = sh.op(self.id);
        self.ops.insert(
            op,
            Op::VerifySpilled {
                piece,
                sources: buf.sources,
            },
        );
        let spans = self.layout.spans(piece, 0, self.layout.piece_len(piece));
        sh.action(Action::Verify {
            op,
            torrent: self.id,
            piece,
            spans,
            expected,
        });
    }

    /// The verdict on a complete piece.
    pub(super) fn piece_written(
        &mut self,
        sh: &mut Shared,
        piece: u32,
        result: DiskResult,
        sources: Vec<Source>,
    ) {
        match result {
            DiskResult::Ok => {
                self.download.exclusive.remove(&piece);
                let liars = self.download.smart.passed(piece);
                self.piece_verified(sh, piece);
                for liar in liars {
                    tracing::info!(addr = %liar.addr, piece, "sent a corrupt block");
                    self.ban_source(sh, liar, CloseReason::CorruptBlock(piece));
                }
            }
            DiskResult::HashMismatch => {
                self.download.smart.failed(piece);
                self.picker.on_hash_failed(piece);
                self.wasted += u64::from(self.layout.piece_len(piece));
                sh.event(Event::HashFailed {
                    torrent: self.id,
                    piece,
                });
                let mut distinct: Vec<Source> = Vec::new();
                for s in sources {
                    if !distinct
                        .iter()
                        .any(|d| d.id == s.id && (s.id.is_some() || d.addr == s.addr))
                    {
                        distinct.push(s);
                    }
                }
                tracing::info!(
                    piece,
                    sources = distinct.len(),
                    "piece failed the hash check"
                );
                if let [only] = distinct[..] {
                    self.strike(sh, only);
                }
                // Fetched again from one peer alone; a piece already so fetched stays so
                // (its owner may have been the liar).
                if distinct.len() > 1 || self.download.exclusive.contains_key(&piece) {
                    self.download.exclusive.insert(piece, None);
                }
                self.request_all(sh);
            }
            DiskResult::Error(e) => {
                self.download.smart.forget(piece);
                self.fail(sh, e);
            }
            DiskResult::Data(_) => {
                self.download.smart.forget(piece);
                self.fail(sh, unexpected("unexpected data from a write".into()));
            }
        }
    }

    fn piece_verified(&mut self, sh: &mut Shared, piece: u32) {
        self.picker.on_verified(piece);
        sh.event(Event::PieceVerified {
            torrent: self.id,
            piece,
        });
        if self.offers(piece) {
            for peer in self.peers.values_mut().filter(|p| p.is_active()) {
                send(sh, peer, &Message::Have(piece));
            }
        }
        // Only a peer that has this piece can have lost our interest with it.
        let downloading = self.state == State::Downloading;
        for peer in self.peers.values_mut() {
            if peer.is_active() && peer.am_interested && peer.has.get(piece as usize) {
                let want = downloading && self.picker.is_interesting(&peer.has);
                Torrent::set_interest(sh, peer, want);
            }
        }
        if self.picker.is_complete() && downloading {
            self.completed(sh);
        }
    }

    /// Every wanted piece is verified.
    pub(super) fn completed(&mut self, sh: &mut Shared) {
        self.state = State::Seeding;
        if self.seed_after {
            self.goal.start(sh.now);
        }
        sh.event(Event::Complete { torrent: self.id });
        self.announcer.completed(sh.now);
        let seeds: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.is_seed())
            .map(|(c, _)| *c)
            .collect();
        for conn in seeds {
            self.close_peer(sh, conn, CloseReason::BothSeeding, false);
        }
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for conn in conns {
            self.update_interest(sh, conn);
        }
    }

    /// `source` was the only source of a piece that failed its hash check.
    fn strike(&mut self, sh: &mut Shared, source: Source) {
        let Some(id) = source.id else { return };
        let strikes = self.download.strikes.entry(id).or_insert(0);
        *strikes += 1;
        let strikes = *strikes;
        if let Some(p) = self.peers.get_mut(&source.conn) {
            p.hash_failures = strikes;
        }
        if strikes < sh.config.max_hash_failures {
            return;
        }
        let reason = CloseReason::HashFailures(strikes);
        tracing::info!(addr = %source.addr, "{reason}");
        self.ban_source(sh, source, reason);
    }

    /// Bans the peer `source` (by peer id; by address too if we dialled it) and closes
    /// its connections.
    fn ban_source(&mut self, sh: &mut Shared, source: Source, reason: CloseReason) {
        if let Some(id) = source.id {
            self.download.banned.insert(id);
        }
        let conns: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(c, p)| match source.id {
                Some(id) => p.id == Some(id),
                None => **c == source.conn,
            })
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            if let Some(p) = self.peers.get(&conn)
                && p.outbound
            {
                self.peer_list.ban(p.addr);
            }
            self.close_peer(sh, conn, reason.clone(), false);
        }
        self.discard_blocks_of(&source);
    }

    /// Drops the blocks `source` sent to pieces still being assembled in memory and wants
    /// them again: kept, a banned liar's blocks would fail their pieces later, and every
    /// honest block in them with it. (Blocks already spilled to disk stay; their piece's
    /// verdict is left to the hash check.)
    fn discard_blocks_of(&mut self, source: &Source) {
        let mut dropped = Vec::new();
        for (&piece, buf) in &mut self.download.pieces {
            if buf.complete {
                continue;
            }
            for (i, sent_by) in buf.block_sources.iter_mut().enumerate() {
                if !sent_by.is_some_and(|s| s.same_peer(source)) {
                    continue;
                }
                if let Some(data) = buf.blocks.get_mut(i).and_then(Option::take) {
                    *sent_by = None;
                    buf.held -= data.len();
                    self.download.mem_bytes -= data.len();
                    dropped.push(BlockRef {
                        piece,
                        block: i as u32,
                    });
                }
            }
            // Still a source if some of its blocks were spilled (a failure may be its).
            let left = buf
                .block_sources
                .iter()
                .flatten()
                .any(|s| s.same_peer(source));
            if !left {
                buf.sources.retain(|s| !s.same_peer(source));
            }
        }
        for block in dropped {
            self.picker.discard(block);
        }
    }

    /// A disk error: stop downloading. What is verified stays verified.
    pub(super) fn fail(&mut self, sh: &mut Shared, error: DiskError) {
        if self.state == State::Failed {
            return;
        }
        self.state = State::Failed;
        sh.event(Event::DiskError {
            torrent: self.id,
            kind: error.kind,
            message: error.message,
        });
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for conn in conns {
            self.release_requests(conn);
            self.update_interest(sh, conn);
        }
    }

    /// Request time-outs and queue depths, once per tick.
    pub(super) fn download_tick(&mut self, sh: &mut Shared) {
        if !self.downloading() {
            return;
        }
        let now = sh.now;
        let timeout = sh.config.request_timeout;
        let mut timed_out = Vec::new();
        for (&conn, peer) in &mut self.peers {
            // A peer still connecting has sent nothing and has no request: its depth stays
            // the minimum it started with.
            if !peer.is_active() {
                continue;
            }
            let rate = peer.download.get(now);
            let depth = (rate * sh.config.request_queue_time.as_secs_f64() / f64::from(BLOCK_LEN))
                .ceil() as usize;
            peer.queue_depth = depth.clamp(sh.config.min_queue_depth, sh.config.max_queue_depth);
            if !peer.requests.is_empty()
                && now.saturating_duration_since(peer.last_block_at) > timeout
            {
                timed_out.push(conn);
            }
        }
        let n = self.layout.num_pieces() as usize;
        for &conn in &timed_out {
            if let Some(peer) = self.peers.get_mut(&conn) {
                tracing::debug!(addr = %peer.addr, requests = peer.requests.len(), "requests timed out");
                peer.snubbed = true;
                peer.last_block_at = now;
                let avoid = peer
                    .avoid
                    .get_or_insert_with(|| crate::bitfield::Bitfield::new(n));
                for r in &peer.requests {
                    avoid.set(r.block.piece as usize);
                }
            }
            self.release_requests(conn);
        }
        // What the timed-out peers held goes to the others first; they are topped up again
        // at the next tick (a snubbed peer that alone has a piece would otherwise take it
        // back at once, and with it a failed piece's single-source turn, for ever).
        self.request_all_but(sh, &timed_out);
    }
}

/// A disk answer that does not fit the action it answers: the driver is broken.
fn unexpected(message: String) -> DiskError {
    DiskError {
        kind: DiskErrorKind::Other,
        message,
    }
}
