//! Piece and block picking: which block to ask which peer for next.
//!
//! - Rarest first: among pieces the peer has and we want, the one fewest connected peers
//!   have; ties broken by a random order fixed per picker (drawn from the session seed).
//! - Random first: until `random_first` pieces are verified, a uniformly random available
//!   piece instead, so that we quickly have something to trade.
//! - Sequential ([`Strategy::Sequential`], for experiments): the lowest-index available
//!   piece instead of the rarest. Random first does not apply.
//! - Streaming ([`Strategy::Streaming`], `--sequential`): in order within a window of
//!   pieces from the first missing one (the *head*: where a player reads), so that the file
//!   can be read while it downloads; but when the peer holds a piece no other connected
//!   peer has and the next piece in order can come from elsewhere, that rare piece first
//!   (the swarm needs it more than our playback needs it from this peer). Beyond the
//!   window, the rarest piece the peer has when it is rarer than the next in order. A
//!   single fast seeder (every piece equally rare) is thus read strictly in order. Random
//!   first does not apply.
//! - Urgent pieces ([`Picker::set_urgent`]: the first and last piece of each chosen file,
//!   `--first-last`, as players read both ends first): started before any other piece,
//!   lowest index first, whatever the strategy.
//! - Partial pieces first: a peer first gets free blocks of pieces already started (that
//!   it has), oldest first, so pieces complete quickly and few are held in memory.
//! - A piece that failed its hash check is fetched again from one peer only (its blocks go
//!   to whichever peer takes the first one), so a second failure has one culprit.
//! - Endgame: once no wanted block is free, a peer may also be given blocks already
//!   requested from other peers (fewest requesters first, at most `endgame_max_requesters`
//!   per block); the first copy to arrive wins and the others are cancelled.
//!
//! The picker knows blocks and who requested them; the caller (the torrent) knows peers,
//! queue depths and time-outs, and tells the picker when a request is gone unanswered.
//!
//! # State
//!
//! Per piece (a torrent may have about a million): its availability, its place in a random
//! permutation drawn once (the tie-break order), and bits in the `have`, `wanted`,
//! `single_source` and `partial` bitfields, so that candidate pieces for a peer are found
//! 64 at a time as `peer_has & wanted & !have & !partial`.
//!
//! The rarest piece to start is found in a tournament tree (`RarityTree`) whose leaves are
//! the pieces in tie-break order, holding the availability of pieces that could be started:
//! a search for the leftmost least leaf the peer has costs O(log n) when the peer has the
//! rarest pieces. When the peer lacks many better pieces, the search gives up after about
//! as many steps as a scan of the candidate words would take, and the scan decides.
//!
//! A piece is *partial* while some block of it is requested or received and it is not yet
//! verified. Partial pieces are few; they live in a vector in the order they were started,
//! each with a state per block (free, requested by one or more peers, received) and counts
//! of free and received blocks. A per-piece slot index finds a partial piece in O(1).
//!
//! `free_blocks` counts wanted blocks that nobody has requested and that have not arrived:
//! every block of a wanted, missing piece that is not partial, plus the free blocks of
//! partial pieces. Endgame is exactly `free_blocks == 0`.
//!
//! # Single source
//!
//! A piece that failed its hash check keeps a mark until it is verified. When it is started
//! again, the peer that takes its first block becomes its owner, and other peers get none of
//! its free blocks while the owner still has a request in it. Once the owner holds no
//! request there (it was choked, timed out, left, or was answered and has not asked again),
//! the next peer to take a block becomes the owner: the piece never stalls on a peer that
//! stopped serving it, at the price of then having two sources. (A caller that refills a
//! peer's queue as soon as a block arrives keeps the owner.) In endgame, requested blocks
//! of such a piece may be duplicated like any other; whichever copy arrives first is kept.
//! After the hash failure and until it is started again the piece is not partial.
//!
//! # Unwanting a partial piece
//!
//! `set_wanted(piece, false)` on a partial piece drops it at once: its received blocks are
//! discarded, its requests forgotten (late copies are `Arrival::Unwanted`; the caller may
//! cancel them on the wire). If it becomes wanted again it starts from scratch.
//!
//! # Cost
//!
//! With n pieces, P partial pieces and B blocks per piece:
//! - `pick`: O(P) to walk the partial pieces, O(1) per block taken; per new piece started
//!   O(log n) typically, at worst O(n / 64 + candidates) (random first: O(n / 64)); in
//!   endgame O(P·B log) to order the duplicate candidates.
//! - `on_block`, `release`, `requesters`, `in_endgame`, `is_complete`, `add_have`:
//!   O(1) or O(log n) (plus O(P) when a piece stops being partial, and O(requesters)).
//! - `on_verified`, `on_hash_failed`, `set_wanted`: O(P + log n).
//! - `add_availability` / `remove_availability`: O(ones · log n), at most O(n).
//! - `is_interesting`: O(n / 64).

use crate::bitfield::Bitfield;
use crate::id::ConnId;
use crate::layout::{BLOCK_LEN, BlockRef, Layout};
use crate::rng::Rng;

mod partial;
mod rarity;

use partial::{Block, Partial};
use rarity::{DEAD, RarityTree};

/// How a new piece is chosen once partial pieces have no free block for a peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strategy {
    /// The piece fewest connected peers have (after `random_first` random ones).
    #[default]
    RarestFirst,
    /// The lowest-index piece the peer has; `random_first` is ignored.
    Sequential,
    /// In order within `window` pieces of the first missing one, rarest first beyond it
    /// when rarer pieces exist (see the module documentation); `random_first` is ignored.
    Streaming {
        /// Pieces from the first missing one that are fetched strictly in order.
        window: u32,
    },
}

impl Strategy {
    /// Streaming with a window of about 8 MiB (at least 4 pieces, at most 64).
    pub fn streaming(piece_len: u32) -> Strategy {
        let window = ((8u32 << 20) / piece_len.max(1)).clamp(4, 64);
        Strategy::Streaming { window }
    }
}

#[derive(Debug, Clone)]
/// Piece picking policy.
pub struct PickerConfig {
    /// Verified pieces below which new pieces are chosen at random rather than rarest
    /// (rarest-first only).
    pub random_first: u32,
    /// Most peers a block may be requested from at once in endgame (1: no endgame).
    pub endgame_max_requesters: usize,
    /// Rarest first (the default) or sequential.
    pub strategy: Strategy,
}

impl Default for PickerConfig {
    fn default() -> Self {
        PickerConfig {
            random_first: 4,
            endgame_max_requesters: 2,
            strategy: Strategy::RarestFirst,
        }
    }
}

/// What a received block means to the picker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// The first copy of a wanted block. `cancel` lists the other peers it was requested
    /// from (endgame); their requests are dropped from the picker and should be cancelled
    /// on the wire. `piece_complete` is true when this was the piece's last missing block.
    New {
        cancel: Vec<ConnId>,
        piece_complete: bool,
    },
    /// We already have this block, or do not want its piece: drop the data.
    Unwanted,
}

/// Slot value for a piece that is not partial.
const NOT_PARTIAL: u32 = u32::MAX;

/// Chooses pieces and blocks to request; see the module documentation.
#[derive(Debug)]
pub(crate) struct Picker {
    config: PickerConfig,
    num_pieces: u32,
    /// Blocks in every piece but the last.
    nominal_blocks: u32,
    /// Blocks in the last piece.
    last_blocks: u32,
    /// Connected peers that have each piece.
    availability: Vec<u32>,
    /// Each piece's place in a random order fixed at creation: the rarest-first tie-break.
    priority: Vec<u32>,
    /// The inverse of `priority`: the piece of each rank.
    by_priority: Vec<u32>,
    /// Availability of startable pieces in priority order, for finding the rarest.
    rarity: RarityTree,
    have: Bitfield,
    wanted: Bitfield,
    /// Pieces that failed their hash check and are not yet verified.
    single_source: Bitfield,
    /// Pieces in `partials`.
    partial: Bitfield,
    /// Partial pieces, oldest first.
    partials: Vec<Partial>,
    /// Each piece's index in `partials`, or `NOT_PARTIAL`.
    slot: Vec<u32>,
    /// Wanted blocks neither requested nor received (see the module documentation).
    free_blocks: u64,
    /// Wanted pieces not yet verified.
    wanted_missing: u32,
    /// Reused buffer for endgame candidates: (requesters, partial index, block).
    scratch: Vec<(usize, usize, usize)>,
    /// Pieces started before any other (see [`Picker::set_urgent`]).
    urgent: Bitfield,
    /// Urgent pieces not yet verified (an upper bound: only a hint to skip the search).
    urgent_missing: u32,
    /// No wanted piece below this is missing (the streaming head only moves forward).
    head: u32,
}

/// `bits` cut or padded to `len` bits.
fn resized(bits: &Bitfield, len: usize) -> Bitfield {
    if bits.len() == len {
        return bits.clone();
    }
    let mut out = Bitfield::new(len);
    for i in bits.ones().take_while(|&i| i < len) {
        out.set(i);
    }
    out
}

/// Index of the `n`-th (from 0) set bit of `word`, counting from the most significant.
fn nth_set_bit(mut word: u64, n: u32) -> u32 {
    for _ in 0..n {
        word &= !(1u64 << (63 - word.leading_zeros()));
    }
    word.leading_zeros()
}

impl Picker {
    /// A picker for a torrent with this layout. `have` are verified pieces; `wanted` are the
    /// pieces to download at all (all set for a full download).
    pub fn new(
        layout: &Layout,
        have: &Bitfield,
        wanted: &Bitfield,
        config: PickerConfig,
        rng: &mut Rng,
    ) -> Self {
        let num_pieces = layout.num_pieces();
        let n = num_pieces as usize;
        let have = resized(have, n);
        let wanted = resized(wanted, n);
        let mut by_priority: Vec<u32> = (0..num_pieces).collect();
        rng.shuffle(&mut by_priority);
        let mut priority = vec![0; n];
        for (rank, &piece) in by_priority.iter().enumerate() {
            priority[piece as usize] = rank as u32;
        }
        let mut picker = Picker {
            config,
            num_pieces,
            nominal_blocks: layout.nominal_piece_len().div_ceil(BLOCK_LEN),
            last_blocks: layout.blocks_in_piece(num_pieces.saturating_sub(1)),
            availability: vec![0; n],
            priority,
            by_priority,
            rarity: RarityTree::new(n),
            have,
            wanted,
            single_source: Bitfield::new(n),
            partial: Bitfield::new(n),
            partials: Vec::new(),
            slot: vec![NOT_PARTIAL; n],
            free_blocks: 0,
            wanted_missing: 0,
            scratch: Vec::new(),
            urgent: Bitfield::new(n),
            urgent_missing: 0,
            head: 0,
        };
        for p in 0..num_pieces {
            if picker.wanted_and_missing(p) {
                picker.wanted_missing += 1;
                picker.free_blocks += u64::from(picker.blocks_in(p));
            }
        }
        picker.rebuild_rarity();
        picker
    }

    /// The value of `piece`'s leaf in the rarity tree.
    fn rarity_leaf(&self, piece: u32) -> u32 {
        let p = piece as usize;
        if self.wanted.get(p) && !self.have.get(p) && !self.partial.get(p) {
            self.availability[p].min(DEAD - 1)
        } else {
            DEAD
        }
    }

    /// Brings `piece`'s leaf in the rarity tree up to date. O(log n).
    fn refresh(&mut self, piece: u32) {
        let value = self.rarity_leaf(piece);
        self.rarity
            .set(self.priority[piece as usize] as usize, value);
    }

    /// Recomputes the whole rarity tree. O(n).
    fn rebuild_rarity(&mut self) {
        for piece in 0..self.num_pieces {
            let value = self.rarity_leaf(piece);
            self.rarity
                .set_leaf(self.priority[piece as usize] as usize, value);
        }
        self.rarity.rebuild();
    }

    /// Adds one to (`up`) or takes one from the availability of each piece in `pieces`.
    fn change_availability(&mut self, pieces: &Bitfield, up: bool) {
        // Many changes: one O(n) rebuild beats an O(log n) update each.
        let bulk = pieces.count_ones() > self.num_pieces as usize / 16;
        for p in pieces.ones() {
            let Some(a) = self.availability.get_mut(p) else {
                break;
            };
            *a = if up {
                a.saturating_add(1)
            } else {
                a.saturating_sub(1)
            };
            if !bulk {
                self.refresh(p as u32);
            }
        }
        if bulk {
            self.rebuild_rarity();
        }
    }

    /// Blocks in `piece` (callers check the range).
    fn blocks_in(&self, piece: u32) -> u32 {
        if Some(piece) == self.num_pieces.checked_sub(1) {
            self.last_blocks
        } else {
            self.nominal_blocks
        }
    }

    fn wanted_and_missing(&self, piece: u32) -> bool {
        self.wanted.get(piece as usize) && !self.have.get(piece as usize)
    }

    fn slot_of(&self, piece: u32) -> Option<usize> {
        match self.slot.get(piece as usize) {
            Some(&s) if s != NOT_PARTIAL => Some(s as usize),
            _ => None,
        }
    }

    /// Starts tracking `piece` (wanted, missing, not partial) block by block, all free.
    /// Leaves `free_blocks` alone: the piece's blocks were counted free already.
    fn add_partial(&mut self, piece: u32) -> usize {
        let index = self.partials.len();
        self.partials
            .push(Partial::new(piece, self.blocks_in(piece)));
        self.slot[piece as usize] = index as u32;
        self.partial.set(piece as usize);
        self.refresh(piece);
        index
    }

    /// Stops tracking a partial piece. The caller fixes `free_blocks`.
    fn remove_partial(&mut self, index: usize) -> Partial {
        let part = self.partials.remove(index);
        self.slot[part.piece as usize] = NOT_PARTIAL;
        self.partial.clear(part.piece as usize);
        self.refresh(part.piece);
        for (i, later) in self.partials.iter().enumerate().skip(index) {
            self.slot[later.piece as usize] = i as u32;
        }
        part
    }

    // ---- availability -------------------------------------------------------------

    /// A connected peer announced these pieces (its bitfield).
    pub fn add_availability(&mut self, pieces: &Bitfield) {
        self.change_availability(pieces, true);
    }

    /// A peer with these pieces went away.
    pub fn remove_availability(&mut self, pieces: &Bitfield) {
        self.change_availability(pieces, false);
    }

    /// A connected peer announced one more piece (`have`). Out of range is ignored.
    pub fn add_have(&mut self, piece: u32) {
        if let Some(a) = self.availability.get_mut(piece as usize) {
            *a = a.saturating_add(1);
            self.refresh(piece);
        }
    }

    /// How many connected peers have `piece`.
    #[cfg(test)]
    pub fn availability(&self, piece: u32) -> u32 {
        self.availability.get(piece as usize).copied().unwrap_or(0)
    }

    // ---- requests -----------------------------------------------------------------

    /// Picks up to `max` blocks for `peer` (which has `peer_has`), records them as
    /// requested by `peer`, and appends them to `out` in the order to request them.
    /// Never returns a block of a piece the peer lacks, that we have, or that is unwanted;
    /// never a block already requested from this peer; outside endgame, never a block
    /// requested from anyone.
    ///
    /// Cost: O(partial pieces + blocks taken), plus for each new piece started O(log n)
    /// typically and O(n / 64 + candidates) at worst, plus in endgame O(blocks of partial
    /// pieces · log) to order the duplicate candidates.
    pub fn pick(
        &mut self,
        peer: ConnId,
        peer_has: &Bitfield,
        max: usize,
        rng: &mut Rng,
        out: &mut Vec<BlockRef>,
    ) {
        let mut left = max;

        // 1. Free blocks of pieces already started, oldest first.
        for part in &mut self.partials {
            if left == 0 {
                break;
            }
            if part.free == 0 || !peer_has.get(part.piece as usize) {
                continue;
            }
            if self.single_source.get(part.piece as usize) {
                match part.owner {
                    Some(owner) if owner != peer && part.has_request_from(owner) => continue,
                    _ => part.owner = Some(peer),
                }
            }
            let taken = part.take_free(peer, left, out);
            self.free_blocks -= taken as u64;
            left -= taken;
        }

        // 2. New pieces: random at first, then rarest.
        while left > 0 {
            let Some(piece) = self.choose_new_piece(peer_has, rng) else {
                break;
            };
            let index = self.add_partial(piece);
            let part = &mut self.partials[index];
            if self.single_source.get(piece as usize) {
                part.owner = Some(peer);
            }
            let taken = part.take_free(peer, left, out);
            self.free_blocks -= taken as u64;
            left -= taken;
        }

        // 3. Endgame: duplicate requests, fewest requesters first.
        if left > 0 && self.free_blocks == 0 {
            self.pick_endgame(peer, peer_has, left, out);
        }
    }

    /// The words of `peer_has & wanted & !have & !partial`: pieces a new request could start.
    fn new_piece_words<'a>(&'a self, peer_has: &'a Bitfield) -> impl Iterator<Item = u64> + 'a {
        peer_has
            .words()
            .iter()
            .zip(self.wanted.words())
            .zip(self.have.words())
            .zip(self.partial.words())
            .map(|(((&p, &w), &h), &q)| p & w & !h & !q)
    }

    /// Marks pieces to start before any other (the first and last piece of each chosen
    /// file). Pieces out of range, unwanted or verified are left out.
    pub fn set_urgent(&mut self, pieces: impl IntoIterator<Item = u32>) {
        for p in pieces {
            if p < self.num_pieces && self.wanted_and_missing(p) && !self.urgent.get(p as usize) {
                self.urgent.set(p as usize);
                self.urgent_missing += 1;
            }
        }
    }

    /// The lowest urgent piece the peer could start. O(n / 64) while urgent pieces are
    /// missing, O(1) after.
    fn urgent_piece(&self, peer_has: &Bitfield) -> Option<u32> {
        if self.urgent_missing == 0 {
            return None;
        }
        self.new_piece_words(peer_has)
            .zip(self.urgent.words())
            .map(|(w, &u)| w & u)
            .enumerate()
            .find(|&(_, w)| w != 0)
            .map(|(i, w)| (i * 64) as u32 + w.leading_zeros())
    }

    /// The first wanted piece not verified (the streaming head), moving `head` forward.
    /// Amortised O(1): the head never moves back (a piece below it is verified, or
    /// unwanted for good).
    fn advance_head(&mut self) -> u32 {
        while self.head < self.num_pieces && !self.wanted_and_missing(self.head) {
            self.head += 1;
        }
        self.head
    }

    /// The lowest-index piece the peer could start at or after `from`. O(n / 64).
    fn lowest_candidate(&self, peer_has: &Bitfield, from: u32) -> Option<u32> {
        let first_word = (from / 64) as usize;
        self.new_piece_words(peer_has)
            .enumerate()
            .skip(first_word)
            .map(|(i, w)| {
                // Bits below `from` in its own word are masked off.
                let w = if i == first_word {
                    w & (u64::MAX >> (from % 64))
                } else {
                    w
                };
                (i, w)
            })
            .find(|&(_, w)| w != 0)
            .map(|(i, w)| (i * 64) as u32 + w.leading_zeros())
    }

    /// The streaming choice (see the module documentation).
    fn streaming_piece(&mut self, peer_has: &Bitfield, window: u32) -> Option<u32> {
        let head = self.advance_head();
        let next = self.lowest_candidate(peer_has, head)?;
        let rarest = self.rarest(peer_has).unwrap_or(next);
        let (r, n) = (
            self.availability[rarest as usize],
            self.availability[next as usize],
        );
        let in_window = next < head.saturating_add(window);
        // In the window, the next piece unless this peer holds one nobody else has and
        // the next one can come from elsewhere; beyond it, the rarer piece.
        let swarm_first = if in_window { r <= 1 && n >= 2 } else { r < n };
        Some(if swarm_first { rarest } else { next })
    }

    /// The piece to start next for a peer with `peer_has`, if any.
    fn choose_new_piece(&mut self, peer_has: &Bitfield, rng: &mut Rng) -> Option<u32> {
        if let Some(piece) = self.urgent_piece(peer_has) {
            return Some(piece);
        }
        if let Strategy::Streaming { window } = self.config.strategy {
            return self.streaming_piece(peer_has, window);
        }
        if self.config.strategy == Strategy::Sequential {
            // The first set bit of the candidate words. O(n / 64).
            return self
                .new_piece_words(peer_has)
                .enumerate()
                .find(|&(_, w)| w != 0)
                .map(|(i, w)| (i * 64) as u32 + w.leading_zeros());
        }
        if self.have.count_ones() < self.config.random_first as usize {
            // Uniformly random among the candidates.
            let count: u64 = self
                .new_piece_words(peer_has)
                .map(|w| u64::from(w.count_ones()))
                .sum();
            if count == 0 {
                return None;
            }
            let mut n = rng.below(count);
            for (i, w) in self.new_piece_words(peer_has).enumerate() {
                let ones = u64::from(w.count_ones());
                if n < ones {
                    return Some((i * 64) as u32 + nth_set_bit(w, n as u32));
                }
                n -= ones;
            }
            return None;
        }
        self.rarest(peer_has)
    }

    /// The rarest piece the peer could start: least availability, then lowest place in
    /// the random order.
    fn rarest(&self, peer_has: &Bitfield) -> Option<u32> {
        // The tree finds it in O(log n) when the peer has the rarest pieces; when it
        // lacks many of them, scanning the candidates is cheaper. A peer with no candidate
        // at all (the common case once it has sent what we lack) costs one pass over the
        // words.
        if self.new_piece_words(peer_has).all(|w| w == 0) {
            return None;
        }
        let budget = self.have.words().len() + 64;
        let found = self
            .rarity
            .find(|rank| peer_has.get(self.by_priority[rank] as usize), budget);
        match found {
            Ok(rank) => rank.map(|r| self.by_priority[r]),
            Err(()) => self.rarest_by_scan(peer_has),
        }
    }

    /// The rarest piece the peer could start, by looking at every candidate. O(n / 64 +
    /// candidates).
    fn rarest_by_scan(&self, peer_has: &Bitfield) -> Option<u32> {
        let mut best: Option<(u64, u32)> = None;
        for (i, mut w) in self.new_piece_words(peer_has).enumerate() {
            while w != 0 {
                let bit = w.leading_zeros();
                w &= !(1u64 << (63 - bit));
                let piece = (i * 64) as u32 + bit;
                let p = piece as usize;
                let key = (u64::from(self.availability[p]) << 32) | u64::from(self.priority[p]);
                if best.is_none_or(|(k, _)| key < k) {
                    best = Some((key, piece));
                }
            }
        }
        best.map(|(_, piece)| piece)
    }

    /// Gives `peer` up to `max` blocks requested by others, fewest requesters first (then
    /// oldest piece, then block order), none with `endgame_max_requesters` already.
    fn pick_endgame(
        &mut self,
        peer: ConnId,
        peer_has: &Bitfield,
        max: usize,
        out: &mut Vec<BlockRef>,
    ) {
        let limit = self.config.endgame_max_requesters;
        let mut candidates = std::mem::take(&mut self.scratch);
        candidates.clear();
        for (pi, part) in self.partials.iter().enumerate() {
            if part.free + part.received == part.num_blocks() || !peer_has.get(part.piece as usize)
            {
                continue;
            }
            for (bi, block) in part.blocks.iter().enumerate() {
                let rs = block.requesters();
                if !rs.is_empty() && rs.len() < limit && !rs.contains(&peer) {
                    candidates.push((rs.len(), pi, bi));
                }
            }
        }
        // Stable: ties stay in partial-age and block order.
        candidates.sort_by_key(|&(n, _, _)| n);
        for &(_, pi, bi) in candidates.iter().take(max) {
            let part = &mut self.partials[pi];
            part.add_requester(bi, peer);
            out.push(BlockRef {
                piece: part.piece,
                block: bi as u32,
            });
        }
        self.scratch = candidates;
    }

    /// A block arrived from `from` (requested by it or not).
    ///
    /// The first copy of a block of a wanted, unverified piece is accepted whether it was
    /// requested or not (a released block may still come); other requesters are dropped and
    /// returned in `cancel`. O(1) plus the requesters.
    pub fn on_block(&mut self, block: BlockRef, from: ConnId) -> Arrival {
        let piece = block.piece;
        if !self.wanted_and_missing(piece) || block.block >= self.blocks_in(piece) {
            return Arrival::Unwanted;
        }
        let index = match self.slot_of(piece) {
            Some(index) => index,
            None => self.add_partial(piece),
        };
        let part = &mut self.partials[index];
        let cancel =
            match std::mem::replace(&mut part.blocks[block.block as usize], Block::Received) {
                Block::Received => return Arrival::Unwanted,
                Block::Free => {
                    part.free -= 1;
                    self.free_blocks -= 1;
                    Vec::new()
                }
                Block::One(p) if p == from => Vec::new(),
                Block::One(p) => vec![p],
                Block::Many(mut peers) => {
                    peers.retain(|&p| p != from);
                    peers
                }
            };
        part.received += 1;
        Arrival::New {
            cancel,
            piece_complete: part.received == part.num_blocks(),
        }
    }

    /// `peer`'s request for `block` is gone unanswered (choked, rejected, timed out, or the
    /// peer left). The block is free again unless someone else requested it too. A request
    /// the picker does not know is ignored. O(1) (O(partial pieces) when the piece stops
    /// being partial).
    pub fn release(&mut self, block: BlockRef, peer: ConnId) {
        let Some(index) = self.slot_of(block.piece) else {
            return;
        };
        let part = &mut self.partials[index];
        if block.block >= part.num_blocks() {
            return;
        }
        if part.remove_requester(block.block as usize, peer) {
            self.free_blocks += 1;
        }
        if part.untouched() {
            // All blocks free: counted the same as a piece never started.
            self.remove_partial(index);
        }
    }

    /// A received block of a piece still being assembled is thrown away (its sender turned
    /// out to be a liar): it is free again, to be requested anew. A block not received, or
    /// of a piece not partial, is ignored. O(1) (O(partial pieces) when the piece stops
    /// being partial).
    pub fn discard(&mut self, block: BlockRef) {
        let Some(index) = self.slot_of(block.piece) else {
            return;
        };
        let part = &mut self.partials[index];
        let b = block.block as usize;
        if part.blocks.get(b) != Some(&Block::Received) {
            return;
        }
        part.blocks[b] = Block::Free;
        part.received -= 1;
        part.free += 1;
        part.first_free = part.first_free.min(block.block);
        self.free_blocks += 1;
        if part.untouched() {
            self.remove_partial(index);
        }
    }

    /// The piece's hash matched and it is on disk. Outstanding requests for it are
    /// forgotten (late copies are `Unwanted`).
    pub fn on_verified(&mut self, piece: u32) {
        if piece >= self.num_pieces || self.have.get(piece as usize) {
            return;
        }
        if let Some(index) = self.slot_of(piece) {
            let part = self.remove_partial(index);
            self.free_blocks -= u64::from(part.free);
        } else if self.wanted.get(piece as usize) {
            self.free_blocks -= u64::from(self.blocks_in(piece));
        }
        if self.wanted.get(piece as usize) {
            self.wanted_missing -= 1;
        }
        if self.urgent.get(piece as usize) {
            self.urgent.clear(piece as usize);
            self.urgent_missing -= 1;
        }
        self.have.set(piece as usize);
        self.single_source.clear(piece as usize);
        self.refresh(piece);
    }

    /// The piece's hash did not match: all its blocks are wanted again, from one peer.
    /// The piece stops being partial; whoever starts it next becomes its single source.
    pub fn on_hash_failed(&mut self, piece: u32) {
        if piece >= self.num_pieces || self.have.get(piece as usize) {
            return;
        }
        self.single_source.set(piece as usize);
        if let Some(index) = self.slot_of(piece) {
            let part = self.remove_partial(index);
            self.free_blocks += u64::from(part.num_blocks() - part.free);
        }
    }

    /// Whether a piece is to be downloaded at all (file selection). Unwanting a partial
    /// piece drops it with its received blocks and requests (see the module documentation).
    #[cfg(test)]
    pub fn set_wanted(&mut self, piece: u32, wanted: bool) {
        if piece >= self.num_pieces || self.wanted.get(piece as usize) == wanted {
            return;
        }
        let missing = !self.have.get(piece as usize);
        if wanted {
            self.wanted.set(piece as usize);
            // A piece wanted again may be below the streaming head.
            self.head = self.head.min(piece);
            if missing {
                self.wanted_missing += 1;
                self.free_blocks += u64::from(self.blocks_in(piece));
            }
            self.refresh(piece);
            return;
        }
        if let Some(index) = self.slot_of(piece) {
            let part = self.remove_partial(index);
            self.free_blocks -= u64::from(part.free);
        } else if missing {
            self.free_blocks -= u64::from(self.blocks_in(piece));
        }
        if missing {
            self.wanted_missing -= 1;
        }
        self.wanted.clear(piece as usize);
        self.refresh(piece);
    }

    // ---- queries ------------------------------------------------------------------

    /// True when the peer has a piece we want and do not have. O(pieces / 64).
    pub fn is_interesting(&self, peer_has: &Bitfield) -> bool {
        peer_has
            .words()
            .iter()
            .zip(self.wanted.words())
            .zip(self.have.words())
            .any(|((&p, &w), &h)| p & w & !h != 0)
    }

    /// True once no wanted block is free (every missing block is requested or received).
    /// O(1).
    #[cfg(test)]
    pub fn in_endgame(&self) -> bool {
        self.free_blocks == 0
    }

    /// The peers `block` is currently requested from.
    #[cfg(test)]
    pub fn requesters(&self, block: BlockRef) -> &[ConnId] {
        self.slot_of(block.piece)
            .and_then(|i| self.partials[i].blocks.get(block.block as usize))
            .map_or(&[], Block::requesters)
    }

    /// Whether `piece` is to be downloaded at all.
    pub fn is_wanted(&self, piece: u32) -> bool {
        self.wanted.get(piece as usize)
    }

    /// Verified pieces.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// True when every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        self.wanted_missing == 0
    }

    /// Pieces started (some block requested or received) and not yet verified.
    #[cfg(test)]
    pub fn partial_pieces(&self) -> usize {
        self.partials.len()
    }
}

#[cfg(test)]
mod tests;

/// Model-based property tests: random operation sequences against a brute-force model.
#[cfg(test)]
mod props;
