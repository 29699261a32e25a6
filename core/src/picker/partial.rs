//! A piece being downloaded: the state of each of its blocks and who was asked for it.

use crate::id::ConnId;
use crate::layout::BlockRef;

/// The state of one block of a partial piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Block {
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
    pub(super) fn requesters(&self) -> &[ConnId] {
        match self {
            Block::One(p) => std::slice::from_ref(p),
            Block::Many(ps) => ps,
            Block::Free | Block::Received => &[],
        }
    }
}

/// A piece with some block requested or received, not yet verified.
#[derive(Debug)]
pub(super) struct Partial {
    pub(super) piece: u32,
    pub(super) blocks: Vec<Block>,
    /// Blocks in state `Free`.
    pub(super) free: u32,
    /// Blocks in state `Received`.
    pub(super) received: u32,
    /// Every block below this index is not free (a hint so that taking blocks from a large
    /// piece does not rescan its head).
    pub(super) first_free: u32,
    /// For a single-source piece: the peer its free blocks are reserved for.
    pub(super) owner: Option<ConnId>,
}

impl Partial {
    pub(super) fn new(piece: u32, blocks: u32) -> Self {
        Partial {
            piece,
            blocks: vec![Block::Free; blocks as usize],
            free: blocks,
            received: 0,
            first_free: 0,
            owner: None,
        }
    }

    pub(super) fn num_blocks(&self) -> u32 {
        self.blocks.len() as u32
    }

    /// True when no block is requested or received (the piece may stop being partial).
    pub(super) fn untouched(&self) -> bool {
        self.free == self.num_blocks()
    }

    /// True when `peer` has a request for some block of this piece.
    pub(super) fn has_request_from(&self, peer: ConnId) -> bool {
        self.free + self.received < self.num_blocks()
            && self.blocks.iter().any(|b| b.requesters().contains(&peer))
    }

    /// Marks up to `max` free blocks as requested by `peer`, in block order, appending them
    /// to `out`. Returns how many.
    pub(super) fn take_free(&mut self, peer: ConnId, max: usize, out: &mut Vec<BlockRef>) -> usize {
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
    pub(super) fn add_requester(&mut self, b: usize, peer: ConnId) {
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
    pub(super) fn remove_requester(&mut self, b: usize, peer: ConnId) -> bool {
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
