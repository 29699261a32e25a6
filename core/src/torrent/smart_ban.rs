//! Smart ban (as libtorrent's): when a piece fails its hash check, remember a digest of
//! each block and the peer that sent it; when the piece later passes, the peers whose block
//! differed from the good one sent corrupt data, and are banned. Peers whose blocks were
//! right are cleared, however many failed pieces they shared with a liar.
//!
//! Only pieces assembled in memory are covered (a spilled piece's blocks are on disk when
//! its verdict comes); the strike count of `download` still covers the rest.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use sha1::{Digest, Sha1};

use super::Source;

/// Failed pieces remembered at most; the oldest is forgotten first. A record holds one entry
/// per block and sender, so this bounds memory to a few hundred KiB even for 16 MiB pieces.
const MAX_PIECES: usize = 64;
/// Entries remembered per piece at most (a piece re-fetched from many peers, many times).
const MAX_ENTRIES: usize = 4096;

/// A block of a piece being verified: its index, who sent it, its bytes.
pub(super) type HeldBlock = (u32, Source, Bytes);

/// What was received for one block of a piece that failed.
#[derive(Debug, Clone)]
struct Entry {
    block: u32,
    source: Source,
    digest: [u8; 20],
}

#[derive(Debug, Default)]
pub(super) struct SmartBan {
    /// Blocks of pieces whose verdict is pending, by piece.
    pending: BTreeMap<u32, Vec<HeldBlock>>,
    /// Failed pieces not yet passed, oldest first.
    failed: VecDeque<(u32, Vec<Entry>)>,
}

fn digest(data: &Bytes) -> [u8; 20] {
    Sha1::digest(data).into()
}

impl SmartBan {
    /// `piece` went to the disk to be hashed with these blocks.
    pub fn verifying(&mut self, piece: u32, blocks: Vec<HeldBlock>) {
        self.pending.insert(piece, blocks);
    }

    /// `piece` failed its hash check: remember what each peer sent for it.
    pub fn failed(&mut self, piece: u32) {
        let Some(blocks) = self.pending.remove(&piece) else {
            return;
        };
        let entries = blocks.iter().map(|(block, source, data)| Entry {
            block: *block,
            source: *source,
            digest: digest(data),
        });
        if let Some((_, record)) = self.failed.iter_mut().find(|(p, _)| *p == piece) {
            for e in entries {
                if record.len() >= MAX_ENTRIES {
                    break;
                }
                let known = record.iter().any(|r| {
                    r.block == e.block && r.source.same_peer(&e.source) && r.digest == e.digest
                });
                if !known {
                    record.push(e);
                }
            }
            return;
        }
        if self.failed.len() >= MAX_PIECES {
            self.failed.pop_front();
        }
        self.failed
            .push_back((piece, entries.take(MAX_ENTRIES).collect()));
    }

    /// `piece` passed: the peers that sent a block of it that differs from the good one
    /// (each once).
    pub fn passed(&mut self, piece: u32) -> Vec<Source> {
        let good = self.pending.remove(&piece);
        let Some(i) = self.failed.iter().position(|(p, _)| *p == piece) else {
            return Vec::new();
        };
        let Some((_, record)) = self.failed.remove(i) else {
            return Vec::new();
        };
        let Some(good) = good else {
            return Vec::new();
        };
        let good: BTreeMap<u32, [u8; 20]> = good
            .iter()
            .map(|(block, _, data)| (*block, digest(data)))
            .collect();
        let mut liars: Vec<Source> = Vec::new();
        for e in record {
            let differs = good.get(&e.block).is_some_and(|d| *d != e.digest);
            if differs && !liars.iter().any(|l| l.same_peer(&e.source)) {
                liars.push(e.source);
            }
        }
        liars
    }

    /// The verdict on `piece` will not come (a disk error).
    pub fn forget(&mut self, piece: u32) {
        self.pending.remove(&piece);
    }
}

impl Source {
    /// The same peer: the same peer id, or without ids the same address.
    pub(super) fn same_peer(&self, other: &Source) -> bool {
        match (self.id, other.id) {
            (Some(a), Some(b)) => a == b,
            _ => self.addr == other.addr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{ConnId, PeerId};

    fn src(n: u8) -> Source {
        Source {
            conn: ConnId(u64::from(n)),
            addr: ([10, 0, 0, n], 6881).into(),
            id: Some(PeerId([n; 20])),
        }
    }

    fn data(x: u8) -> Bytes {
        Bytes::from(vec![x; 16])
    }

    #[test]
    fn the_peer_whose_block_differed_is_named_and_only_it() {
        let mut s = SmartBan::default();
        // Peers 1 and 2 each sent a block; peer 2's was wrong.
        s.verifying(5, vec![(0, src(1), data(1)), (1, src(2), data(9))]);
        s.failed(5);
        // The piece passes with block 1 from peer 3, block 0 again from peer 1.
        s.verifying(5, vec![(0, src(1), data(1)), (1, src(3), data(2))]);
        assert_eq!(s.passed(5), vec![src(2)]);
        // Forgotten once judged.
        assert!(s.passed(5).is_empty());
    }

    #[test]
    fn a_piece_that_passes_first_time_names_nobody() {
        let mut s = SmartBan::default();
        s.verifying(1, vec![(0, src(1), data(1))]);
        assert!(s.passed(1).is_empty());
        assert!(s.pending.is_empty());
    }

    #[test]
    fn several_failures_accumulate_and_memory_is_bounded() {
        let mut s = SmartBan::default();
        s.verifying(0, vec![(0, src(1), data(7)), (1, src(2), data(2))]);
        s.failed(0);
        s.verifying(0, vec![(0, src(3), data(1)), (1, src(4), data(8))]);
        s.failed(0);
        s.verifying(0, vec![(0, src(3), data(1)), (1, src(2), data(2))]);
        let mut liars = s.passed(0);
        liars.sort_by_key(|l| l.conn);
        assert_eq!(liars, vec![src(1), src(4)]);

        for piece in 0..(MAX_PIECES as u32 + 10) {
            s.verifying(piece, vec![(0, src(1), data(1))]);
            s.failed(piece);
        }
        assert_eq!(s.failed.len(), MAX_PIECES);
        // The oldest were forgotten: their pass names nobody.
        s.verifying(0, vec![(0, src(2), data(2))]);
        assert!(s.passed(0).is_empty());
        s.verifying(MAX_PIECES as u32 + 9, vec![(0, src(2), data(2))]);
        assert_eq!(s.passed(MAX_PIECES as u32 + 9), vec![src(1)]);
    }
}
