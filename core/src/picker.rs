//! Piece and block picking: which block to ask which peer for next.
//!
//! - Rarest first: among pieces the peer has and we want, the one fewest connected peers
//!   have; ties broken by a random order fixed per picker (drawn from the session seed).
//! - Random first: until `random_first` pieces are verified, a uniformly random available
//!   piece instead, so that we quickly have something to trade.
//! - Sequential ([`Strategy::Sequential`], for streaming and for experiments): the
//!   lowest-index available piece instead of the rarest. Random first does not apply.
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
//! discarded, its requests forgotten (late copies are [`Arrival::Unwanted`]; the caller may
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

/// How a new piece is chosen once partial pieces have no free block for a peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strategy {
    /// The piece fewest connected peers have (after `random_first` random ones).
    #[default]
    RarestFirst,
    /// The lowest-index piece the peer has; `random_first` is ignored.
    Sequential,
}

#[derive(Debug, Clone)]
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
pub enum Arrival {
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

/// The state of one block of a partial piece.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    /// Neither requested nor received.
    Free,
    /// Requested from one peer: the usual case, kept without allocating.
    One(ConnId),
    /// Requested from several peers (endgame); always at least two, each once.
    Many(Vec<ConnId>),
    /// Arrived; awaiting the piece's hash check.
    Received,
}

impl Block {
    fn requesters(&self) -> &[ConnId] {
        match self {
            Block::One(p) => std::slice::from_ref(p),
            Block::Many(ps) => ps,
            Block::Free | Block::Received => &[],
        }
    }
}

/// A piece with some block requested or received, not yet verified.
#[derive(Debug)]
struct Partial {
    piece: u32,
    blocks: Vec<Block>,
    /// Blocks in state `Free`.
    free: u32,
    /// Blocks in state `Received`.
    received: u32,
    /// Every block below this index is not free (a hint so that taking blocks from a large
    /// piece does not rescan its head).
    first_free: u32,
    /// For a single-source piece: the peer its free blocks are reserved for.
    owner: Option<ConnId>,
}

impl Partial {
    fn new(piece: u32, blocks: u32) -> Self {
        Partial {
            piece,
            blocks: vec![Block::Free; blocks as usize],
            free: blocks,
            received: 0,
            first_free: 0,
            owner: None,
        }
    }

    fn num_blocks(&self) -> u32 {
        self.blocks.len() as u32
    }

    /// True when no block is requested or received (the piece may stop being partial).
    fn untouched(&self) -> bool {
        self.free == self.num_blocks()
    }

    /// True when `peer` has a request for some block of this piece.
    fn has_request_from(&self, peer: ConnId) -> bool {
        self.free + self.received < self.num_blocks()
            && self.blocks.iter().any(|b| b.requesters().contains(&peer))
    }

    /// Marks up to `max` free blocks as requested by `peer`, in block order, appending them
    /// to `out`. Returns how many.
    fn take_free(&mut self, peer: ConnId, max: usize, out: &mut Vec<BlockRef>) -> usize {
        let mut taken = 0;
        let mut i = self.first_free as usize;
        while i < self.blocks.len() && taken < max && self.free > 0 {
            if self.blocks[i] == Block::Free {
                self.blocks[i] = Block::One(peer);
                self.free -= 1;
                taken += 1;
                out.push(BlockRef {
                    piece: self.piece,
                    block: i as u32,
                });
            }
            i += 1;
        }
        self.first_free = i as u32;
        taken
    }

    /// Adds `peer` as a further requester of requested block `b` (endgame).
    fn add_requester(&mut self, b: usize, peer: ConnId) {
        let block = &mut self.blocks[b];
        match block {
            Block::One(first) => *block = Block::Many(vec![*first, peer]),
            Block::Many(peers) => peers.push(peer),
            Block::Free => {
                *block = Block::One(peer);
                self.free -= 1;
            }
            Block::Received => {}
        }
    }

    /// Removes `peer` from block `b`'s requesters. Returns true when the block became free.
    fn remove_requester(&mut self, b: usize, peer: ConnId) -> bool {
        let block = &mut self.blocks[b];
        let now_free = match block {
            Block::One(p) => *p == peer,
            Block::Many(peers) => {
                peers.retain(|&p| p != peer);
                match peers.as_slice() {
                    [] => true,
                    [only] => {
                        *block = Block::One(*only);
                        false
                    }
                    _ => false,
                }
            }
            Block::Free | Block::Received => false,
        };
        if now_free {
            *block = Block::Free;
            self.free += 1;
            self.first_free = self.first_free.min(b as u32);
        }
        now_free
    }
}

/// Slot value for a piece that is not partial.
const NOT_PARTIAL: u32 = u32::MAX;

/// A leaf of [`RarityTree`] for a piece that cannot be started.
const DEAD: u32 = u32::MAX;

/// A tournament tree over pieces in tie-break order (leaf `r` is the piece of rank `r` in
/// the random permutation). A leaf holds the piece's availability while the piece could be
/// started (wanted, missing, not partial), [`DEAD`] otherwise; an inner node holds the least
/// value below it. The rarest startable piece a peer has is then the leftmost least leaf it
/// has, found by a left-to-right search that skips subtrees no better than the best so far.
#[derive(Debug)]
struct RarityTree {
    /// Leaf count: a power of two, at least one.
    leaves: usize,
    /// `node[1]` is the root, `node[i]` has children `2i` and `2i + 1`, leaves start at
    /// `node[leaves]`. `node[0]` is unused.
    node: Vec<u32>,
}

impl RarityTree {
    fn new(len: usize) -> Self {
        let leaves = len.next_power_of_two();
        RarityTree {
            leaves,
            node: vec![DEAD; 2 * leaves],
        }
    }

    /// Sets leaf `rank` and the minima above it. O(log n).
    fn set(&mut self, rank: usize, value: u32) {
        let mut i = self.leaves + rank;
        if self.node[i] == value {
            return;
        }
        self.node[i] = value;
        while i > 1 {
            i /= 2;
            let min = self.node[2 * i].min(self.node[2 * i + 1]);
            if self.node[i] == min {
                break;
            }
            self.node[i] = min;
        }
    }

    /// Sets leaf `rank` only; [`RarityTree::rebuild`] must follow.
    fn set_leaf(&mut self, rank: usize, value: u32) {
        self.node[self.leaves + rank] = value;
    }

    /// Recomputes every inner node. O(n).
    fn rebuild(&mut self) {
        for i in (1..self.leaves).rev() {
            self.node[i] = self.node[2 * i].min(self.node[2 * i + 1]);
        }
    }

    /// The rank of the leftmost least live leaf that `accept` takes. Gives up with `Err`
    /// after visiting `budget` nodes (when the ranks `accept` takes are scattered among
    /// better ones it rejects, a scan of candidates is cheaper).
    fn find(&self, accept: impl Fn(usize) -> bool, budget: usize) -> Result<Option<usize>, ()> {
        let mut best: Option<(u32, usize)> = None;
        // Depth-first, left child first: leaves come in rank order, so a subtree whose
        // least value is no better than the best found cannot hold a better leaf.
        // At most one pending right sibling per level plus the node at hand: no allocation.
        let mut stack = [0usize; 2 * usize::BITS as usize];
        stack[0] = 1;
        let mut len = 1;
        let mut visits = 0;
        while len > 0 {
            len -= 1;
            let i = stack[len];
            let value = self.node[i];
            if value == DEAD || best.is_some_and(|(b, _)| value >= b) {
                continue;
            }
            visits += 1;
            if visits > budget {
                return Err(());
            }
            if i >= self.leaves {
                if accept(i - self.leaves) {
                    best = Some((value, i - self.leaves));
                }
            } else {
                stack[len] = 2 * i + 1;
                stack[len + 1] = 2 * i;
                len += 2;
            }
        }
        Ok(best.map(|(_, rank)| rank))
    }
}

/// Chooses pieces and blocks to request; see the module documentation.
#[derive(Debug)]
pub struct Picker {
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

    /// The piece to start next for a peer with `peer_has`, if any.
    fn choose_new_piece(&self, peer_has: &Bitfield, rng: &mut Rng) -> Option<u32> {
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
        // Rarest: least availability, then lowest place in the random order. The tree
        // finds it in O(log n) when the peer has the rarest pieces; when it lacks many of
        // them, scanning the candidates is cheaper. A peer with no candidate at all (the
        // common case once it has sent what we lack) costs one pass over the words.
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
    pub fn set_wanted(&mut self, piece: u32, wanted: bool) {
        if piece >= self.num_pieces || self.wanted.get(piece as usize) == wanted {
            return;
        }
        let missing = !self.have.get(piece as usize);
        if wanted {
            self.wanted.set(piece as usize);
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
    pub fn in_endgame(&self) -> bool {
        self.free_blocks == 0
    }

    /// The peers `block` is currently requested from.
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
    pub fn partial_pieces(&self) -> usize {
        self.partials.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ConnId = ConnId(1);
    const B: ConnId = ConnId(2);
    const C: ConnId = ConnId(3);

    /// `pieces` pieces of `blocks` full blocks each; the last piece is `last_len` bytes.
    fn layout(pieces: u32, blocks: u32, last_len: u32) -> Layout {
        let piece_len = blocks * BLOCK_LEN;
        let total = u64::from(pieces - 1) * u64::from(piece_len) + u64::from(last_len);
        Layout::new(piece_len, [total]).unwrap()
    }

    /// `pieces` pieces of `blocks` blocks each, all full.
    fn even(pieces: u32, blocks: u32) -> Layout {
        layout(pieces, blocks, blocks * BLOCK_LEN)
    }

    fn config(random_first: u32, endgame_max_requesters: usize) -> PickerConfig {
        PickerConfig {
            random_first,
            endgame_max_requesters,
            strategy: super::Strategy::RarestFirst,
        }
    }

    fn bits(len: u32, set: &[u32]) -> Bitfield {
        let mut b = Bitfield::new(len as usize);
        for &i in set {
            b.set(i as usize);
        }
        b
    }

    /// A picker for a full download of `l`, nothing verified yet.
    fn fresh(l: &Layout, cfg: PickerConfig, seed: u64) -> Picker {
        let n = l.num_pieces() as usize;
        Picker::new(
            l,
            &Bitfield::new(n),
            &Bitfield::full(n),
            cfg,
            &mut Rng::from_u64(seed),
        )
    }

    fn pick(p: &mut Picker, peer: ConnId, has: &Bitfield, max: usize) -> Vec<BlockRef> {
        let mut out = Vec::new();
        p.pick(peer, has, max, &mut Rng::from_u64(99), &mut out);
        out
    }

    fn blk(piece: u32, block: u32) -> BlockRef {
        BlockRef { piece, block }
    }

    #[test]
    fn rarest_first_picks_least_available() {
        let l = even(5, 1);
        let mut p = fresh(&l, config(0, 2), 1);
        let counts = [5u32, 1, 4, 2, 3];
        for (piece, &c) in counts.iter().enumerate() {
            for _ in 0..c {
                p.add_have(piece as u32);
            }
        }
        assert_eq!(p.availability(1), 1);
        let has = Bitfield::full(5);
        let order: Vec<u32> = (0..5).map(|_| pick(&mut p, A, &has, 1)[0].piece).collect();
        assert_eq!(order, vec![1, 3, 4, 2, 0]);

        // A peer without the rarest piece gets the rarest it has.
        let mut p = fresh(&l, config(0, 2), 1);
        p.add_availability(&Bitfield::full(5));
        p.add_availability(&bits(5, &[0, 1, 3, 4]));
        p.remove_availability(&bits(5, &[0, 1]));
        // Availabilities now 1, 1, 1, 2, 2: rarest among {2, 3} is 2.
        assert_eq!(pick(&mut p, B, &bits(5, &[2, 3]), 1), vec![blk(2, 0)]);
    }

    /// The order in which a picker with this seed starts 64 equally available pieces.
    fn tie_order(seed: u64) -> Vec<u32> {
        let l = even(64, 1);
        let mut p = fresh(&l, config(0, 2), seed);
        let has = Bitfield::full(64);
        p.add_availability(&has);
        (0..64).map(|_| pick(&mut p, A, &has, 1)[0].piece).collect()
    }

    #[test]
    fn ties_broken_by_a_seeded_random_order() {
        let one = tie_order(1);
        assert_eq!(one, tie_order(1), "same seed, same order");
        assert_ne!(one, tie_order(2), "different seed, different order");
        assert_ne!(one, (0..64).collect::<Vec<u32>>(), "not sequential");
        let mut sorted = one.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..64).collect::<Vec<u32>>(), "every piece once");
    }

    #[test]
    fn sequential_picks_the_lowest_index_available_piece() {
        let l = even(64, 2);
        let cfg = PickerConfig {
            random_first: 4,
            endgame_max_requesters: 2,
            strategy: Strategy::Sequential,
        };
        let mut p = fresh(&l, cfg, 7);
        // Pieces 0..10 are common, piece 40 is the rarest: sequential ignores rarity and
        // random first alike.
        let most = bits(64, &(0..64).filter(|&i| i != 40).collect::<Vec<_>>());
        p.add_availability(&Bitfield::full(64));
        p.add_availability(&most);
        let has = bits(64, &[3, 5, 40, 63]);
        let mut out = Vec::new();
        p.pick(A, &has, 3, &mut Rng::from_u64(1), &mut out);
        // Both blocks of piece 3 (the lowest it has), then the first of piece 5.
        assert_eq!(
            out,
            vec![
                BlockRef { piece: 3, block: 0 },
                BlockRef { piece: 3, block: 1 },
                BlockRef { piece: 5, block: 0 },
            ]
        );
        // Another peer gets the free block of started piece 5 first, then piece 40.
        let mut out = Vec::new();
        p.pick(B, &bits(64, &[5, 40]), 2, &mut Rng::from_u64(2), &mut out);
        assert_eq!(
            out,
            vec![
                BlockRef { piece: 5, block: 1 },
                BlockRef {
                    piece: 40,
                    block: 0
                },
            ]
        );
        // Partial pieces first, then the lowest new one; verified pieces are skipped.
        p.on_verified(0);
        let mut out = Vec::new();
        p.pick(C, &Bitfield::full(64), 2, &mut Rng::from_u64(3), &mut out);
        assert_eq!(
            out,
            vec![
                BlockRef {
                    piece: 40,
                    block: 1
                },
                BlockRef { piece: 1, block: 0 },
            ]
        );
    }

    #[test]
    fn random_first_spreads_first_pieces() {
        let l = even(64, 1);
        let has = Bitfield::full(64);
        let first_piece = |random_first: u32, seed: u64| {
            let mut p = fresh(&l, config(random_first, 2), 7);
            p.add_availability(&has);
            p.add_availability(&bits(64, &(1..64).collect::<Vec<_>>()));
            // Piece 0 is the rarest.
            let mut out = Vec::new();
            p.pick(A, &has, 1, &mut Rng::from_u64(seed), &mut out);
            out[0].piece
        };
        let random: std::collections::BTreeSet<u32> =
            (0..32).map(|seed| first_piece(4, seed)).collect();
        assert!(random.len() >= 10, "random first spreads: {random:?}");
        assert!((0..32).all(|seed| first_piece(0, seed) == 0));

        // Once `random_first` pieces are verified, rarest first takes over.
        let mut p = fresh(&l, config(2, 2), 7);
        p.add_availability(&has);
        p.add_availability(&bits(64, &(1..64).collect::<Vec<_>>()));
        p.on_verified(10);
        assert_eq!(p.have().count_ones(), 1);
        let rarest_again = (0..8).all(|s| {
            let mut q = fresh(&l, config(1, 2), 7);
            q.add_availability(&has);
            q.add_availability(&bits(64, &(1..64).collect::<Vec<_>>()));
            q.on_verified(10);
            let mut out = Vec::new();
            q.pick(A, &has, 1, &mut Rng::from_u64(s), &mut out);
            out[0].piece == 0
        });
        assert!(rarest_again);
        p.on_verified(11);
        assert_eq!(pick(&mut p, A, &has, 1), vec![blk(0, 0)]);
    }

    #[test]
    fn partial_pieces_are_finished_before_new_ones() {
        let l = even(8, 4);
        let mut p = fresh(&l, config(0, 2), 3);
        let has = Bitfield::full(8);
        p.add_availability(&has);
        let a = pick(&mut p, A, &has, 2);
        let first = a[0].piece;
        assert_eq!(a, vec![blk(first, 0), blk(first, 1)]);
        let b = pick(&mut p, B, &has, 2);
        assert_eq!(b, vec![blk(first, 2), blk(first, 3)]);
        assert_eq!(p.partial_pieces(), 1);

        // Two partial pieces with free blocks: the older one first.
        let c = pick(&mut p, C, &has, 1);
        let second = c[0].piece;
        assert_ne!(second, first);
        p.release(blk(first, 1), A);
        let d = pick(&mut p, C, &has, 3);
        assert_eq!(d, vec![blk(first, 1), blk(second, 1), blk(second, 2)]);
        assert_eq!(p.partial_pieces(), 2);
    }

    #[test]
    fn never_picks_a_piece_the_peer_lacks() {
        let l = even(10, 2);
        let mut p = fresh(&l, config(2, 2), 4);
        p.add_availability(&Bitfield::full(10));
        // A starts some piece other peers may lack.
        let a = pick(&mut p, A, &Bitfield::full(10), 1);
        let started = a[0].piece;
        let others: Vec<u32> = (0..10).filter(|&i| i != started).take(2).collect();
        let has = bits(10, &others);
        let got = pick(&mut p, B, &has, 100);
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|b| others.contains(&b.piece)));
        assert!(pick(&mut p, C, &Bitfield::new(10), 100).is_empty());
    }

    #[test]
    fn endgame_starts_only_when_no_block_is_free() {
        let l = even(2, 2);
        let mut p = fresh(&l, config(0, 2), 5);
        let has = Bitfield::full(2);
        assert!(!p.in_endgame());
        assert_eq!(pick(&mut p, A, &has, 3).len(), 3);
        assert!(!p.in_endgame());
        // B takes the last free block, not a duplicate.
        let b = pick(&mut p, B, &has, 1);
        assert_eq!(b.len(), 1);
        assert_eq!(p.requesters(b[0]), &[B]);
        assert!(p.in_endgame());
        // Now B gets A's blocks as duplicates.
        let dup = pick(&mut p, B, &has, 10);
        assert_eq!(dup.len(), 3);
        for d in &dup {
            assert_eq!(p.requesters(*d), &[A, B]);
        }
        // Releasing one duplicate does not free its block; releasing both does.
        p.release(dup[0], A);
        assert!(p.in_endgame());
        p.release(dup[0], B);
        assert!(!p.in_endgame());
        assert_eq!(pick(&mut p, C, &has, 10)[0], dup[0]);
    }

    #[test]
    fn no_endgame_while_a_block_nobody_has_is_free() {
        let l = even(2, 2);
        let mut p = fresh(&l, config(0, 2), 5);
        let has = bits(2, &[0]);
        assert_eq!(pick(&mut p, A, &has, 10).len(), 2);
        assert!(!p.in_endgame());
        assert!(pick(&mut p, B, &has, 10).is_empty());
    }

    #[test]
    fn endgame_gives_fewest_requesters_first_up_to_the_limit() {
        let l = even(2, 2);
        let has = Bitfield::full(2);
        let mut p = fresh(&l, config(0, 2), 6);
        let a = pick(&mut p, A, &has, 4);
        assert_eq!(pick(&mut p, B, &has, 4).len(), 4);
        // Every block has two requesters: the limit.
        assert!(pick(&mut p, C, &has, 4).is_empty());
        let _ = a;

        let mut p = fresh(&l, config(0, 3), 6);
        let a = pick(&mut p, A, &has, 4);
        let b = pick(&mut p, B, &has, 2);
        assert_eq!(b, a[..2]);
        let c = pick(&mut p, C, &has, 4);
        // The two blocks with one requester first, then the others, in order.
        assert_eq!(c, vec![a[2], a[3], a[0], a[1]]);
        assert_eq!(p.requesters(a[0]), &[A, B, C]);
        assert_eq!(pick(&mut p, ConnId(4), &has, 4), a[2..]);
        assert!(pick(&mut p, ConnId(5), &has, 4).is_empty());

        // A limit of 1 means no duplicates at all.
        let mut p = fresh(&l, config(0, 1), 6);
        assert_eq!(pick(&mut p, A, &has, 4).len(), 4);
        assert!(p.in_endgame());
        assert!(pick(&mut p, B, &has, 4).is_empty());
    }

    #[test]
    fn first_copy_wins_and_the_others_are_cancelled() {
        let l = even(1, 2);
        let has = Bitfield::full(1);
        let mut p = fresh(&l, config(0, 3), 8);
        let a = pick(&mut p, A, &has, 2);
        assert_eq!(pick(&mut p, B, &has, 2), a);
        assert_eq!(pick(&mut p, C, &has, 1), a[..1]);
        assert_eq!(
            p.on_block(a[0], B),
            Arrival::New {
                cancel: vec![A, C],
                piece_complete: false
            }
        );
        assert!(p.requesters(a[0]).is_empty());
        assert_eq!(p.on_block(a[0], A), Arrival::Unwanted);
        assert_eq!(
            p.on_block(a[1], A),
            Arrival::New {
                cancel: vec![B],
                piece_complete: true
            }
        );
        assert_eq!(p.partial_pieces(), 1, "complete pieces await their hash");
        p.on_verified(0);
        assert_eq!(p.partial_pieces(), 0);
        assert!(p.is_complete());
        assert_eq!(p.on_block(a[1], C), Arrival::Unwanted);
    }

    #[test]
    fn hash_failure_resets_the_piece_and_makes_it_single_source() {
        let l = even(1, 4);
        let has = Bitfield::full(1);
        let mut p = fresh(&l, config(0, 2), 9);
        let a = pick(&mut p, A, &has, 4);
        let arrivals: Vec<Arrival> = a.iter().map(|&b| p.on_block(b, A)).collect();
        assert_eq!(
            arrivals[3],
            Arrival::New {
                cancel: vec![],
                piece_complete: true
            }
        );
        assert!(p.in_endgame());
        p.on_hash_failed(0);
        assert_eq!(p.partial_pieces(), 0);
        assert!(!p.in_endgame());
        assert!(!p.have().get(0));

        // B takes the first block, so the rest are B's alone.
        assert_eq!(pick(&mut p, B, &has, 1), vec![blk(0, 0)]);
        assert!(pick(&mut p, A, &has, 4).is_empty());
        assert!(!p.in_endgame());
        assert_eq!(pick(&mut p, B, &has, 2), vec![blk(0, 1), blk(0, 2)]);
        assert_eq!(pick(&mut p, B, &has, 9), vec![blk(0, 3)]);
        // In endgame others may duplicate.
        assert!(p.in_endgame());
        assert_eq!(pick(&mut p, A, &has, 1), vec![blk(0, 0)]);
        for b in 0..4 {
            assert!(matches!(p.on_block(blk(0, b), B), Arrival::New { .. }));
        }
        p.on_verified(0);
        assert!(p.is_complete());
    }

    #[test]
    fn single_source_moves_on_when_the_owner_stops_serving() {
        let l = even(1, 4);
        let has = Bitfield::full(1);
        let mut p = fresh(&l, config(0, 2), 10);
        for b in pick(&mut p, A, &has, 4) {
            p.on_block(b, A);
        }
        p.on_hash_failed(0);

        // The owner's only request is released: the piece is untouched again.
        assert_eq!(pick(&mut p, A, &has, 1), vec![blk(0, 0)]);
        p.release(blk(0, 0), A);
        assert_eq!(p.partial_pieces(), 0);
        assert_eq!(pick(&mut p, B, &has, 2), vec![blk(0, 0), blk(0, 1)]);
        assert!(pick(&mut p, C, &has, 2).is_empty());

        // B's blocks arrive (or time out) and B holds no request: C may take over.
        assert!(matches!(p.on_block(blk(0, 0), B), Arrival::New { .. }));
        p.release(blk(0, 1), B);
        assert_eq!(pick(&mut p, C, &has, 2), vec![blk(0, 1), blk(0, 2)]);
        assert!(pick(&mut p, B, &has, 2).is_empty());
        assert_eq!(pick(&mut p, C, &has, 2), vec![blk(0, 3)]);
    }

    #[test]
    fn release_frees_blocks() {
        let l = even(2, 4);
        let has = Bitfield::full(2);
        let mut p = fresh(&l, config(0, 2), 11);
        let a = pick(&mut p, A, &has, 3);
        let piece = a[0].piece;
        // Unknown requests are ignored.
        p.release(a[0], B);
        p.release(blk(piece, 3), A);
        p.release(blk(piece, 99), A);
        p.release(blk(1 - piece, 0), A);
        assert_eq!(p.requesters(a[0]), &[A]);

        p.release(a[0], A);
        assert!(p.requesters(a[0]).is_empty());
        assert_eq!(pick(&mut p, B, &has, 2), vec![blk(piece, 0), blk(piece, 3)]);
        for b in [0, 3] {
            p.release(blk(piece, b), B);
        }
        for b in &a[1..] {
            p.release(*b, A);
        }
        assert_eq!(p.partial_pieces(), 0);
        assert_eq!(pick(&mut p, C, &has, 8).len(), 8);
    }

    #[test]
    fn interesting_means_a_wanted_missing_piece() {
        let l = even(70, 1);
        let mut wanted = Bitfield::full(70);
        wanted.clear(5);
        let mut p = Picker::new(
            &l,
            &bits(70, &[3]),
            &wanted,
            config(0, 2),
            &mut Rng::from_u64(0),
        );
        assert!(!p.is_interesting(&Bitfield::new(70)));
        assert!(!p.is_interesting(&bits(70, &[3, 5])));
        assert!(p.is_interesting(&bits(70, &[3, 5, 69])));
        p.on_verified(69);
        assert!(!p.is_interesting(&bits(70, &[3, 5, 69])));
        p.set_wanted(5, true);
        assert!(p.is_interesting(&bits(70, &[3, 5, 69])));
        // A wrong-length bitfield never panics.
        assert!(p.is_interesting(&bits(10, &[0])));
        let _ = p.is_interesting(&Bitfield::full(200));
    }

    #[test]
    fn unwanted_pieces_are_never_picked() {
        let l = even(6, 2);
        let has = Bitfield::full(6);
        let mut wanted = Bitfield::full(6);
        wanted.clear(1);
        let mut p = Picker::new(
            &l,
            &Bitfield::new(6),
            &wanted,
            config(0, 2),
            &mut Rng::from_u64(12),
        );
        p.set_wanted(4, false);
        let got = pick(&mut p, A, &has, 100);
        assert_eq!(got.len(), 8);
        assert!(got.iter().all(|b| b.piece != 1 && b.piece != 4));
        assert!(p.in_endgame());
        assert!(
            pick(&mut p, B, &has, 100)
                .iter()
                .all(|b| b.piece != 1 && b.piece != 4)
        );
        assert_eq!(p.on_block(blk(4, 0), A), Arrival::Unwanted);

        // Unwanting a partial piece drops it; in-flight copies become unwanted.
        let started = got[0].piece;
        assert!(matches!(p.on_block(got[0], A), Arrival::New { .. }));
        p.set_wanted(started, false);
        assert!(p.requesters(got[1]).is_empty());
        assert_eq!(p.on_block(got[1], A), Arrival::Unwanted);
        assert_eq!(p.partial_pieces(), 3);
        // Wanted again: from scratch.
        p.set_wanted(started, true);
        assert!(!p.in_endgame());
        assert_eq!(
            pick(&mut p, C, &has, 100),
            vec![blk(started, 0), blk(started, 1)]
        );
    }

    #[test]
    fn complete_when_every_wanted_piece_is_verified() {
        let l = even(3, 1);
        let mut p = Picker::new(
            &l,
            &bits(3, &[0]),
            &bits(3, &[0, 1]),
            config(0, 2),
            &mut Rng::from_u64(0),
        );
        assert!(!p.is_complete());
        p.on_verified(1);
        assert!(p.is_complete());
        assert!(p.in_endgame());
        assert!(pick(&mut p, A, &Bitfield::full(3), 10).is_empty());
        p.set_wanted(2, true);
        assert!(!p.is_complete());
        p.set_wanted(2, false);
        assert!(p.is_complete());
        p.set_wanted(0, false);
        p.set_wanted(0, true);
        assert!(p.is_complete());
        assert!(!fresh(&even(1, 1), config(0, 2), 0).in_endgame());
    }

    #[test]
    fn short_last_piece_has_fewer_blocks() {
        let l = layout(3, 4, BLOCK_LEN + 100);
        let mut p = fresh(&l, config(0, 2), 13);
        let got = pick(&mut p, A, &Bitfield::full(3), 100);
        assert_eq!(got.len(), 4 + 4 + 2);
        assert!(got.contains(&blk(2, 1)));
        assert!(!got.contains(&blk(2, 2)));
        assert_eq!(p.on_block(blk(2, 2), A), Arrival::Unwanted);
        assert!(matches!(
            p.on_block(blk(2, 0), A),
            Arrival::New {
                piece_complete: false,
                ..
            }
        ));
        assert!(matches!(
            p.on_block(blk(2, 1), A),
            Arrival::New {
                piece_complete: true,
                ..
            }
        ));
    }

    #[test]
    fn unrequested_blocks_are_accepted_once() {
        let l = even(2, 2);
        let mut p = fresh(&l, config(0, 2), 14);
        assert_eq!(
            p.on_block(blk(1, 1), C),
            Arrival::New {
                cancel: vec![],
                piece_complete: false
            }
        );
        assert_eq!(p.partial_pieces(), 1);
        assert_eq!(p.on_block(blk(1, 1), C), Arrival::Unwanted);
        // The rest of that piece comes first.
        assert_eq!(pick(&mut p, A, &Bitfield::full(2), 1), vec![blk(1, 0)]);
        // A released request may still be answered.
        p.release(blk(1, 0), A);
        assert!(matches!(
            p.on_block(blk(1, 0), A),
            Arrival::New {
                piece_complete: true,
                ..
            }
        ));
    }

    #[test]
    fn nonsense_inputs_are_ignored() {
        let l = even(3, 2);
        let mut p = fresh(&l, config(0, 2), 15);
        p.add_have(3);
        p.add_have(u32::MAX);
        assert_eq!(p.availability(3), 0);
        p.add_availability(&Bitfield::full(200));
        p.remove_availability(&Bitfield::full(200));
        p.remove_availability(&Bitfield::full(200));
        assert_eq!(p.availability(0), 0);
        assert_eq!(p.on_block(blk(3, 0), A), Arrival::Unwanted);
        assert_eq!(p.on_block(blk(u32::MAX, u32::MAX), A), Arrival::Unwanted);
        assert_eq!(p.on_block(blk(0, 2), A), Arrival::Unwanted);
        p.release(blk(u32::MAX, 0), A);
        p.on_verified(3);
        p.on_hash_failed(3);
        p.set_wanted(3, false);
        p.set_wanted(u32::MAX, true);
        assert!(p.requesters(blk(7, 7)).is_empty());
        assert!(pick(&mut p, A, &Bitfield::full(3), 0).is_empty());
        let got = pick(&mut p, A, &Bitfield::full(200), usize::MAX);
        assert_eq!(got.len(), 6);
        assert!(got.iter().all(|b| b.piece < 3));
        // Verdicts for pieces not complete (or already verified) do not break the counts.
        p.on_hash_failed(0);
        p.on_verified(1);
        p.on_verified(1);
        p.on_hash_failed(1);
        assert!(!p.in_endgame());
        let got = pick(&mut p, B, &Bitfield::full(3), 9);
        // Piece 0's two blocks, then (now in endgame) duplicates of A's piece 2.
        assert_eq!(got, vec![blk(0, 0), blk(0, 1), blk(2, 0), blk(2, 1)]);
        assert!(p.in_endgame());

        // An empty torrent.
        let empty = Layout::new(BLOCK_LEN, [0]).unwrap();
        let mut p = fresh(&empty, config(0, 2), 0);
        assert!(p.is_complete());
        assert!(pick(&mut p, A, &Bitfield::new(0), 9).is_empty());
        assert_eq!(p.on_block(blk(0, 0), A), Arrival::Unwanted);
    }
}

/// Model-based property tests: random operation sequences against a brute-force model.
#[cfg(test)]
mod props {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;
    // The proptest trait, not the picker's `Strategy` enum (both come in through globs).
    use proptest::strategy::Strategy;
    use proptest::test_runner::TestCaseError;
    use std::collections::{BTreeMap, BTreeSet};

    /// Most requests the harness lets one peer have outstanding (the caller's queue limit).
    const QUEUE: usize = 6;

    #[derive(Debug, Clone)]
    enum Op {
        /// A peer connects; the seed draws its bitfield (empty, full or random).
        Join(u64),
        /// A peer leaves: its requests are released and its pieces become unavailable.
        Leave(usize),
        /// A peer announces a piece (out-of-range pieces included).
        Have(usize, u32),
        /// A peer gets up to this many blocks, within its queue limit.
        Pick(usize, usize),
        /// An outstanding request is answered by its requester.
        Arrive(usize),
        /// A block arrives from anyone (maybe unknown, unrequested or out of range).
        Stray(usize, u32, u32),
        /// An outstanding request times out.
        Release(usize),
        /// A release of anything (maybe never requested).
        ReleaseStray(usize, u32, u32),
        /// A complete piece gets its hash verdict.
        Verdict(usize, bool),
        SetWanted(u32, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => any::<u64>().prop_map(Op::Join),
            1 => any::<usize>().prop_map(Op::Leave),
            2 => (any::<usize>(), 0u32..45).prop_map(|(i, p)| Op::Have(i, p)),
            7 => (any::<usize>(), 0usize..10).prop_map(|(i, m)| Op::Pick(i, m)),
            7 => any::<usize>().prop_map(Op::Arrive),
            1 => (any::<usize>(), 0u32..45, 0u32..6).prop_map(|(i, p, b)| Op::Stray(i, p, b)),
            2 => any::<usize>().prop_map(Op::Release),
            1 => (any::<usize>(), 0u32..45, 0u32..6)
                .prop_map(|(i, p, b)| Op::ReleaseStray(i, p, b)),
            3 => (any::<usize>(), prop::bool::weighted(0.7)).prop_map(|(i, ok)| Op::Verdict(i, ok)),
            1 => (0u32..45, prop::bool::weighted(0.6)).prop_map(|(p, w)| Op::SetWanted(p, w)),
        ]
    }

    /// A torrent of `pieces` pieces of `blocks` blocks; the last one `last_len` bytes.
    fn layout(pieces: u32, blocks: u32, last_len: u32) -> Layout {
        let piece_len = blocks * BLOCK_LEN;
        let total = u64::from(pieces - 1) * u64::from(piece_len) + u64::from(last_len);
        Layout::new(piece_len, [total]).unwrap()
    }

    fn layout_strategy() -> impl Strategy<Value = Layout> {
        (1u32..=40, 1u32..=4)
            .prop_flat_map(|(pieces, blocks)| (Just(pieces), Just(blocks), 1..=blocks * BLOCK_LEN))
            .prop_map(|(pieces, blocks, last)| layout(pieces, blocks, last))
    }

    fn config_strategy() -> impl Strategy<Value = PickerConfig> {
        (0u32..5, 0usize..4, any::<bool>()).prop_map(
            |(random_first, endgame_max_requesters, sequential)| PickerConfig {
                random_first,
                endgame_max_requesters,
                strategy: if sequential {
                    super::Strategy::Sequential
                } else {
                    super::Strategy::RarestFirst
                },
            },
        )
    }

    /// A random bitfield of `len` bits: empty, full, or about `density` set.
    fn random_bits(rng: &mut Rng, len: usize) -> Bitfield {
        match rng.below(4) {
            0 => Bitfield::new(len),
            1 => Bitfield::full(len),
            _ => {
                let density = rng.chance(0.5);
                let mut b = Bitfield::new(len);
                for i in 0..len {
                    if rng.chance(if density { 0.8 } else { 0.3 }) {
                        b.set(i);
                    }
                }
                b
            }
        }
    }

    /// The picker under test and a brute-force model of what it should know.
    struct Harness {
        layout: Layout,
        n: u32,
        cfg: PickerConfig,
        picker: Picker,
        rng: Rng,
        peers: Vec<(ConnId, Bitfield)>,
        next_id: u64,
        /// Outstanding requests per block, in the order made, with whether each was a
        /// duplicate (made while another peer had the block requested: endgame).
        requests: BTreeMap<BlockRef, Vec<(ConnId, bool)>>,
        received: BTreeSet<BlockRef>,
        have: Vec<bool>,
        wanted: Vec<bool>,
        failed: Vec<bool>,
        /// Pieces with every block received, awaiting a verdict.
        complete: BTreeSet<u32>,
    }

    impl Harness {
        fn new(layout: Layout, cfg: PickerConfig, seed: u64) -> Self {
            let n = layout.num_pieces();
            let mut rng = Rng::from_u64(seed);
            let mut have = Bitfield::new(n as usize);
            let mut wanted = Bitfield::full(n as usize);
            for i in 0..n as usize {
                if rng.chance(0.1) {
                    have.set(i);
                }
                if rng.chance(0.15) {
                    wanted.clear(i);
                }
            }
            let picker = Picker::new(&layout, &have, &wanted, cfg.clone(), &mut rng);
            Harness {
                n,
                cfg,
                picker,
                peers: Vec::new(),
                next_id: 1,
                requests: BTreeMap::new(),
                received: BTreeSet::new(),
                have: (0..n as usize).map(|i| have.get(i)).collect(),
                wanted: (0..n as usize).map(|i| wanted.get(i)).collect(),
                failed: vec![false; n as usize],
                complete: BTreeSet::new(),
                rng,
                layout,
            }
        }

        fn blocks_in(&self, piece: u32) -> u32 {
            self.layout.blocks_in_piece(piece)
        }

        fn outstanding(&self, peer: ConnId) -> usize {
            self.requests
                .values()
                .filter(|rs| rs.iter().any(|&(p, _)| p == peer))
                .count()
        }

        fn all_requests(&self) -> Vec<(BlockRef, ConnId)> {
            self.requests
                .iter()
                .flat_map(|(&b, rs)| rs.iter().map(move |&(p, _)| (b, p)))
                .collect()
        }

        fn forget_request(&mut self, block: BlockRef, peer: ConnId) {
            if let Some(rs) = self.requests.get_mut(&block) {
                rs.retain(|&(p, _)| p != peer);
                if rs.is_empty() {
                    self.requests.remove(&block);
                }
            }
        }

        /// The picker dropped everything it knew about `piece`'s blocks.
        fn forget_piece(&mut self, piece: u32) {
            self.requests.retain(|b, _| b.piece != piece);
            self.received.retain(|b| b.piece != piece);
            self.complete.remove(&piece);
        }

        /// A stray peer: a connected one or one the picker never saw.
        fn some_peer(&self, i: usize) -> ConnId {
            if !self.peers.is_empty() && i % 3 != 0 {
                self.peers[i % self.peers.len()].0
            } else {
                ConnId(10_000 + (i % 5) as u64)
            }
        }

        fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
            match *op {
                Op::Join(seed) => {
                    let bits = random_bits(&mut Rng::from_u64(seed), self.n as usize);
                    let id = ConnId(self.next_id);
                    self.next_id += 1;
                    self.picker.add_availability(&bits);
                    self.peers.push((id, bits));
                }
                Op::Leave(i) => {
                    if self.peers.is_empty() {
                        return Ok(());
                    }
                    let (id, bits) = self.peers.remove(i % self.peers.len());
                    for (b, p) in self.all_requests() {
                        if p == id {
                            self.picker.release(b, id);
                            self.forget_request(b, id);
                        }
                    }
                    self.picker.remove_availability(&bits);
                }
                Op::Have(i, piece) => {
                    if piece >= self.n {
                        self.picker.add_have(piece);
                        return Ok(());
                    }
                    if self.peers.is_empty() {
                        return Ok(());
                    }
                    let k = i % self.peers.len();
                    if self.peers[k].1.set(piece as usize) {
                        self.picker.add_have(piece);
                    }
                }
                Op::Pick(i, max) => self.pick(i, max)?,
                Op::Arrive(i) => {
                    let all = self.all_requests();
                    if !all.is_empty() {
                        let (b, p) = all[i % all.len()];
                        self.deliver(b, p)?;
                    }
                }
                Op::Stray(i, piece, block) => {
                    let from = self.some_peer(i);
                    self.deliver(BlockRef { piece, block }, from)?;
                }
                Op::Release(i) => {
                    let all = self.all_requests();
                    if !all.is_empty() {
                        let (b, p) = all[i % all.len()];
                        self.picker.release(b, p);
                        self.forget_request(b, p);
                    }
                }
                Op::ReleaseStray(i, piece, block) => {
                    let peer = self.some_peer(i);
                    let b = BlockRef { piece, block };
                    self.picker.release(b, peer);
                    self.forget_request(b, peer);
                }
                Op::Verdict(i, pass) => {
                    if self.complete.is_empty() {
                        return Ok(());
                    }
                    let piece = *self.complete.iter().nth(i % self.complete.len()).unwrap();
                    prop_assert!(self.requests.keys().all(|b| b.piece != piece));
                    if pass {
                        self.picker.on_verified(piece);
                        self.have[piece as usize] = true;
                        self.failed[piece as usize] = false;
                    } else {
                        self.picker.on_hash_failed(piece);
                        self.failed[piece as usize] = true;
                    }
                    self.forget_piece(piece);
                }
                Op::SetWanted(piece, wanted) => {
                    self.picker.set_wanted(piece, wanted);
                    if piece < self.n {
                        if !wanted && self.wanted[piece as usize] {
                            self.forget_piece(piece);
                        }
                        self.wanted[piece as usize] = wanted;
                    }
                }
            }
            Ok(())
        }

        fn pick(&mut self, i: usize, max: usize) -> Result<(), TestCaseError> {
            if self.peers.is_empty() {
                return Ok(());
            }
            let (id, bits) = self.peers[i % self.peers.len()].clone();
            let max = max.min(QUEUE - self.outstanding(id));
            let mut out = Vec::new();
            self.picker.pick(id, &bits, max, &mut self.rng, &mut out);
            prop_assert!(out.len() <= max, "{} blocks for max {}", out.len(), max);
            let mut duplicated = false;
            for &b in &out {
                let p = b.piece as usize;
                prop_assert!(b.piece < self.n && b.block < self.blocks_in(b.piece));
                prop_assert!(bits.get(p), "{b:?}: peer lacks the piece");
                prop_assert!(self.wanted[p] && !self.have[p], "{b:?}: unwanted or have");
                prop_assert!(!self.received.contains(&b), "{b:?}: already received");
                let rs = self.requests.entry(b).or_default();
                prop_assert!(
                    rs.iter().all(|&(q, _)| q != id),
                    "{b:?}: already requested by this peer"
                );
                let dup = !rs.is_empty();
                duplicated |= dup;
                rs.push((id, dup));
                if dup {
                    prop_assert!(rs.len() <= self.cfg.endgame_max_requesters);
                }
            }
            if duplicated {
                prop_assert!(
                    self.picker.in_endgame(),
                    "duplicate request outside endgame"
                );
            }
            Ok(())
        }

        fn deliver(&mut self, b: BlockRef, from: ConnId) -> Result<(), TestCaseError> {
            let valid = b.piece < self.n
                && self.wanted[b.piece as usize]
                && !self.have[b.piece as usize]
                && b.block < self.blocks_in(b.piece)
                && !self.received.contains(&b);
            let got = self.picker.on_block(b, from);
            if !valid {
                prop_assert_eq!(got, Arrival::Unwanted);
                return Ok(());
            }
            let mut expected: Vec<ConnId> = self
                .requests
                .remove(&b)
                .unwrap_or_default()
                .into_iter()
                .map(|(p, _)| p)
                .filter(|&p| p != from)
                .collect();
            self.received.insert(b);
            let complete = (0..self.blocks_in(b.piece)).all(|k| {
                self.received.contains(&BlockRef {
                    piece: b.piece,
                    block: k,
                })
            });
            if complete {
                self.complete.insert(b.piece);
            }
            let Arrival::New {
                mut cancel,
                piece_complete,
            } = got
            else {
                return Err(TestCaseError::fail(format!("{b:?} from {from:?} unwanted")));
            };
            cancel.sort();
            expected.sort();
            prop_assert_eq!(cancel, expected);
            prop_assert_eq!(piece_complete, complete);
            Ok(())
        }

        /// Every invariant, by brute force.
        fn check(&self) -> Result<(), TestCaseError> {
            let p = &self.picker;
            let mut free = 0u64;
            let mut partial = 0usize;
            for piece in 0..self.n {
                let i = piece as usize;
                let avail = self.peers.iter().filter(|(_, b)| b.get(i)).count() as u32;
                prop_assert_eq!(p.availability(piece), avail, "availability of {}", piece);
                prop_assert_eq!(p.have().get(i), self.have[i]);
                let live = self.wanted[i] && !self.have[i];
                let mut touched = false;
                for k in 0..self.blocks_in(piece) + 1 {
                    let b = BlockRef { piece, block: k };
                    let mut model: Vec<ConnId> = self
                        .requests
                        .get(&b)
                        .map(|rs| rs.iter().map(|&(q, _)| q).collect())
                        .unwrap_or_default();
                    let mut real = p.requesters(b).to_vec();
                    model.sort();
                    real.sort();
                    prop_assert_eq!(&real, &model, "requesters of {:?}", b);
                    if k == self.blocks_in(piece) {
                        prop_assert!(model.is_empty());
                        continue;
                    }
                    prop_assert!(model.len() <= self.cfg.endgame_max_requesters.max(1));
                    let received = self.received.contains(&b);
                    if !model.is_empty() {
                        prop_assert!(live && !received, "request for {:?}", b);
                        for q in &model {
                            let has = self.peers.iter().any(|(id, bits)| id == q && bits.get(i));
                            prop_assert!(has, "{:?} requested from {:?} lacking it", b, q);
                        }
                    }
                    touched |= received || !model.is_empty();
                    if live && !received && model.is_empty() {
                        free += 1;
                    }
                }
                partial += usize::from(touched);
                if self.failed[i] && live {
                    // Single source: at most one peer holds requests made outside endgame.
                    let sources: BTreeSet<ConnId> = self
                        .requests
                        .iter()
                        .filter(|(b, _)| b.piece == piece)
                        .flat_map(|(_, rs)| rs.iter().filter(|&&(_, dup)| !dup).map(|&(q, _)| q))
                        .collect();
                    prop_assert!(sources.len() <= 1, "piece {} from {:?}", piece, sources);
                }
            }
            prop_assert_eq!(p.availability(self.n), 0);
            // The rarity tree: leaves as the state says, inner nodes the least below.
            for piece in 0..self.n {
                let leaf = p.rarity.node[p.rarity.leaves + p.priority[piece as usize] as usize];
                prop_assert_eq!(leaf, p.rarity_leaf(piece));
            }
            for i in 1..p.rarity.leaves {
                let below = p.rarity.node[2 * i].min(p.rarity.node[2 * i + 1]);
                prop_assert_eq!(p.rarity.node[i], below);
            }
            // The rarest piece each peer could start, by brute force.
            for (_, bits) in &self.peers {
                let brute = (0..self.n)
                    .filter(|&q| {
                        let i = q as usize;
                        let touched = self
                            .received
                            .iter()
                            .chain(self.requests.keys())
                            .any(|b| b.piece == q);
                        bits.get(i) && self.wanted[i] && !self.have[i] && !touched
                    })
                    .min_by_key(|&q| (p.availability(q), p.priority[q as usize]));
                let by_tree = p
                    .rarity
                    .find(|r| bits.get(p.by_priority[r] as usize), usize::MAX);
                prop_assert_eq!(by_tree, Ok(brute.map(|q| p.priority[q as usize] as usize)));
                prop_assert_eq!(p.rarest_by_scan(bits), brute);
            }
            prop_assert_eq!(p.in_endgame(), free == 0, "free blocks: {}", free);
            prop_assert_eq!(p.partial_pieces(), partial);
            let complete = (0..self.n as usize).all(|i| !self.wanted[i] || self.have[i]);
            prop_assert_eq!(p.is_complete(), complete);
            for (id, bits) in &self.peers {
                prop_assert!(self.outstanding(*id) <= QUEUE);
                let interesting =
                    (0..self.n as usize).any(|i| bits.get(i) && self.wanted[i] && !self.have[i]);
                prop_assert_eq!(p.is_interesting(bits), interesting);
            }
            Ok(())
        }
    }

    proptest! {
        #[test]
        fn picker_matches_the_model(
            layout in layout_strategy(),
            cfg in config_strategy(),
            seed in any::<u64>(),
            ops in prop::collection::vec(op(), 1..250),
        ) {
            let mut h = Harness::new(layout, cfg, seed);
            h.check()?;
            for op in &ops {
                h.step(op)?;
                h.check()?;
            }
        }
    }

    /// Downloads everything from `peers` (whose bitfields together cover every piece),
    /// with random picks, arrivals, time-outs, chokes and failed hashes; fails on a stall.
    fn download(
        layout: &Layout,
        cfg: PickerConfig,
        peers: &[Bitfield],
        seed: u64,
    ) -> Result<(), TestCaseError> {
        let n = layout.num_pieces() as usize;
        let mut rng = Rng::from_u64(seed);
        let mut p = Picker::new(layout, &Bitfield::new(n), &Bitfield::full(n), cfg, &mut rng);
        let ids: Vec<ConnId> = (0..peers.len() as u64).map(|i| ConnId(i + 1)).collect();
        for bits in peers {
            p.add_availability(bits);
        }
        let mut outstanding: Vec<(BlockRef, ConnId)> = Vec::new();
        let mut steps = 0;
        while !p.is_complete() {
            steps += 1;
            prop_assert!(steps < 50_000, "no progress");
            let k = rng.index(peers.len());
            let queued = outstanding.iter().filter(|&&(_, q)| q == ids[k]).count();
            let action = if outstanding.is_empty() {
                0
            } else {
                rng.below(12)
            };
            match action {
                0..=3 => {
                    let max = rng.index(QUEUE - queued + 1);
                    let mut out = Vec::new();
                    p.pick(ids[k], &peers[k], max, &mut rng, &mut out);
                    outstanding.extend(out.into_iter().map(|b| (b, ids[k])));
                    if outstanding.is_empty() {
                        // Nothing in flight: some peer must be given something.
                        for (id, bits) in ids.iter().zip(peers) {
                            let mut out = Vec::new();
                            p.pick(*id, bits, QUEUE, &mut rng, &mut out);
                            outstanding.extend(out.into_iter().map(|b| (b, *id)));
                        }
                        prop_assert!(!outstanding.is_empty(), "stalled");
                    }
                }
                4..=9 => {
                    let (b, from) = outstanding.swap_remove(rng.index(outstanding.len()));
                    if let Arrival::New {
                        cancel,
                        piece_complete,
                    } = p.on_block(b, from)
                    {
                        outstanding.retain(|&(ob, q)| ob != b || !cancel.contains(&q));
                        if piece_complete {
                            if rng.chance(0.2) {
                                p.on_hash_failed(b.piece);
                            } else {
                                p.on_verified(b.piece);
                            }
                        }
                    }
                }
                10 => {
                    // A time-out.
                    let (b, q) = outstanding.swap_remove(rng.index(outstanding.len()));
                    p.release(b, q);
                }
                _ => {
                    // A choke: every request of one peer released.
                    for &(b, q) in outstanding.iter().filter(|&&(_, q)| q == ids[k]) {
                        p.release(b, q);
                    }
                    outstanding.retain(|&(_, q)| q != ids[k]);
                }
            }
        }
        prop_assert!(p.have().all());
        prop_assert_eq!(p.partial_pieces(), 0);
        Ok(())
    }

    proptest! {
        #[test]
        fn rarity_tree_agrees_with_a_scan(
            pieces in 1u32..3000,
            seed in any::<u64>(),
            budget in prop_oneof![Just(0usize), 1usize..200, Just(usize::MAX)],
        ) {
            let l = layout(pieces, 1, BLOCK_LEN);
            let n = pieces as usize;
            let mut rng = Rng::from_u64(seed);
            let mut wanted = Bitfield::new(n);
            for i in 0..n {
                if rng.chance(0.9) {
                    wanted.set(i);
                }
            }
            let cfg = PickerConfig {
                random_first: 0,
                ..PickerConfig::default()
            };
            let mut p = Picker::new(&l, &Bitfield::new(n), &wanted, cfg, &mut rng);
            let mut peers = Vec::new();
            for _ in 0..rng.index(6) + 1 {
                let bits = random_bits(&mut rng, n);
                p.add_availability(&bits);
                peers.push(bits);
            }
            for _ in 0..rng.index(50) {
                p.add_have(rng.below(u64::from(pieces)) as u32);
            }
            for _ in 0..rng.index(30) {
                let piece = rng.below(u64::from(pieces)) as u32;
                match rng.below(3) {
                    0 => p.on_verified(piece),
                    1 => {
                        let _ = p.on_block(BlockRef { piece, block: 0 }, ConnId(9));
                    }
                    _ => p.set_wanted(piece, rng.chance(0.5)),
                }
            }
            if rng.chance(0.5) {
                let gone = peers.swap_remove(0);
                p.remove_availability(&gone);
            }
            let asker = random_bits(&mut rng, n);
            peers.push(asker);
            for bits in &peers {
                let scan = p.rarest_by_scan(bits);
                match p.rarity.find(|r| bits.get(p.by_priority[r] as usize), budget) {
                    Ok(rank) => prop_assert_eq!(rank.map(|r| p.by_priority[r]), scan),
                    Err(()) => prop_assert!(budget < usize::MAX),
                }
                let mut rng = Rng::from_u64(0);
                prop_assert_eq!(p.choose_new_piece(bits, &mut rng), scan);
            }
        }

        #[test]
        fn a_single_seeder_completes_the_download(
            layout in layout_strategy(),
            cfg in config_strategy(),
            seed in any::<u64>(),
        ) {
            let n = layout.num_pieces() as usize;
            download(&layout, cfg, &[Bitfield::full(n)], seed)?;
        }

        #[test]
        fn several_partial_seeders_complete_the_download(
            layout in layout_strategy(),
            cfg in config_strategy(),
            seed in any::<u64>(),
            peers in 2usize..5,
        ) {
            let n = layout.num_pieces() as usize;
            let mut rng = Rng::from_u64(seed ^ 0x5eed);
            let mut bits: Vec<Bitfield> = (0..peers).map(|_| Bitfield::new(n)).collect();
            for i in 0..n {
                // Every piece somewhere, some in several places.
                bits[rng.index(peers)].set(i);
                bits[rng.index(peers)].set(i);
            }
            download(&layout, cfg, &bits, seed)?;
        }
    }
}
