//! Piece and block picking: which block to ask which peer for next.
//!
//! - Rarest first: among pieces the peer has and we want, the one fewest connected peers
//!   have; ties broken by a random order fixed per picker (drawn from the session seed).
//! - Random first: until `random_first` pieces are verified, a uniformly random available
//!   piece instead, so that we quickly have something to trade.
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
//! SKELETON: signatures fixed, bodies to be written.

use crate::bitfield::Bitfield;
use crate::id::ConnId;
use crate::layout::{BlockRef, Layout};
use crate::rng::Rng;

#[derive(Debug, Clone)]
pub struct PickerConfig {
    /// Verified pieces below which new pieces are chosen at random rather than rarest.
    pub random_first: u32,
    /// Most peers a block may be requested from at once in endgame.
    pub endgame_max_requesters: usize,
}

impl Default for PickerConfig {
    fn default() -> Self {
        PickerConfig {
            random_first: 4,
            endgame_max_requesters: 2,
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

#[derive(Debug)]
pub struct Picker {}

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
        let _ = (layout, have, wanted, config, rng);
        todo!()
    }

    // ---- availability -------------------------------------------------------------

    /// A connected peer announced these pieces (its bitfield).
    pub fn add_availability(&mut self, pieces: &Bitfield) {
        let _ = pieces;
        todo!()
    }

    /// A peer with these pieces went away.
    pub fn remove_availability(&mut self, pieces: &Bitfield) {
        let _ = pieces;
        todo!()
    }

    /// A connected peer announced one more piece (`have`).
    pub fn add_have(&mut self, piece: u32) {
        let _ = piece;
        todo!()
    }

    /// How many connected peers have `piece`.
    pub fn availability(&self, piece: u32) -> u32 {
        let _ = piece;
        todo!()
    }

    // ---- requests -----------------------------------------------------------------

    /// Picks up to `max` blocks for `peer` (which has `peer_has`), records them as
    /// requested by `peer`, and appends them to `out` in the order to request them.
    /// Never returns a block of a piece the peer lacks, that we have, or that is unwanted;
    /// never a block already requested from this peer; outside endgame, never a block
    /// requested from anyone.
    pub fn pick(
        &mut self,
        peer: ConnId,
        peer_has: &Bitfield,
        max: usize,
        rng: &mut Rng,
        out: &mut Vec<BlockRef>,
    ) {
        let _ = (peer, peer_has, max, rng, out);
        todo!()
    }

    /// A block arrived from `from` (requested by it or not).
    pub fn on_block(&mut self, block: BlockRef, from: ConnId) -> Arrival {
        let _ = (block, from);
        todo!()
    }

    /// `peer`'s request for `block` is gone unanswered (choked, rejected, timed out, or the
    /// peer left). The block is free again unless someone else requested it too.
    pub fn release(&mut self, block: BlockRef, peer: ConnId) {
        let _ = (block, peer);
        todo!()
    }

    /// The piece's hash matched and it is on disk.
    pub fn on_verified(&mut self, piece: u32) {
        let _ = piece;
        todo!()
    }

    /// The piece's hash did not match: all its blocks are wanted again, from one peer.
    pub fn on_hash_failed(&mut self, piece: u32) {
        let _ = piece;
        todo!()
    }

    /// Whether a piece is to be downloaded at all (file selection).
    pub fn set_wanted(&mut self, piece: u32, wanted: bool) {
        let _ = (piece, wanted);
        todo!()
    }

    // ---- queries ------------------------------------------------------------------

    /// True when the peer has a piece we want and do not have.
    pub fn is_interesting(&self, peer_has: &Bitfield) -> bool {
        let _ = peer_has;
        todo!()
    }

    /// True once no wanted block is free (every missing block is requested or received).
    pub fn in_endgame(&self) -> bool {
        todo!()
    }

    /// The peers `block` is currently requested from.
    pub fn requesters(&self, block: BlockRef) -> &[ConnId] {
        let _ = block;
        todo!()
    }

    /// Verified pieces.
    pub fn have(&self) -> &Bitfield {
        todo!()
    }

    /// True when every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        todo!()
    }

    /// Pieces started (some block requested or received) and not yet verified.
    pub fn partial_pieces(&self) -> usize {
        todo!()
    }
}
