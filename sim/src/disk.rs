//! A node's in-memory disk: per block, what it holds (nothing, the valid content, the
//! corrupt variant, or something else), so that a 1000-node swarm stores a byte per block
//! per node instead of the data. Reads hand back zero-copy slices of the shared content.
//!
//! `Write { expected }` and `Verify` hash with SHA-1 in real mode; in virtual mode they
//! check that every block of the piece carries its valid stamp.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use sha1::{Digest, Sha1};
use tessera_core::{BLOCK_LEN, DiskResult};

use crate::payload::{BlockKind, Mode, Payload, Variant};

#[derive(Debug, Clone)]
pub struct Disk {
    kinds: Vec<BlockKind>,
    /// Real mode: the bytes of blocks that are neither valid nor corrupt.
    other: BTreeMap<u32, Bytes>,
}

impl Disk {
    pub fn empty(p: &Payload) -> Disk {
        Disk {
            kinds: vec![BlockKind::Empty; p.total_blocks as usize],
            other: BTreeMap::new(),
        }
    }

    pub fn full(p: &Payload) -> Disk {
        Disk {
            kinds: vec![BlockKind::Valid; p.total_blocks as usize],
            other: BTreeMap::new(),
        }
    }

    pub fn kind(&self, g: u32) -> BlockKind {
        self.kinds[g as usize]
    }

    /// True when every block of `piece` holds the valid content.
    pub fn piece_valid(&self, p: &Payload, piece: u32) -> bool {
        p.piece_blocks(piece)
            .all(|g| self.kinds[g as usize] == BlockKind::Valid)
    }

    /// Blocks `[offset, offset + total)` of `piece` as they arrive in `data`: one slice
    /// per block (copied only when `data` is not split at block boundaries).
    fn blocks_of(p: &Payload, piece: u32, offset: u32, data: &[Bytes]) -> Vec<(u32, Bytes)> {
        let first = p.block_index(piece, offset);
        let aligned = data
            .iter()
            .enumerate()
            .all(|(i, b)| b.len() == p.block_pos(first + i as u32).2 as usize);
        let chunks: Vec<Bytes> = if aligned {
            data.to_vec()
        } else {
            let mut all = BytesMut::new();
            for d in data {
                all.extend_from_slice(d);
            }
            let mut all = all.freeze();
            let mut out = Vec::new();
            let mut g = first;
            while !all.is_empty() {
                let n = (p.block_pos(g).2 as usize).min(all.len());
                out.push(all.split_to(n));
                g += 1;
            }
            out
        };
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, b)| (first + i as u32, b))
            .collect()
    }

    fn store(&mut self, p: &Payload, g: u32, data: &Bytes) {
        let Some(slot) = self.kinds.get_mut(g as usize) else {
            return;
        };
        let kind = p.classify(g, data);
        *slot = kind;
        if kind == BlockKind::Other && p.mode == Mode::Real {
            self.other.insert(g, data.clone());
        } else {
            self.other.remove(&g);
        }
    }

    /// `Action::Write`.
    pub fn write(
        &mut self,
        p: &Payload,
        piece: u32,
        offset: u32,
        data: &[Bytes],
        expected: Option<[u8; 20]>,
    ) -> DiskResult {
        let blocks = Self::blocks_of(p, piece, offset, data);
        if let Some(hash) = expected {
            let ok = match p.mode {
                Mode::Real => {
                    let mut h = Sha1::new();
                    for d in data {
                        h.update(d);
                    }
                    <[u8; 20]>::from(h.finalize()) == hash
                }
                Mode::Virtual => {
                    offset == 0
                        && blocks.len() == p.piece_blocks(piece).len()
                        && blocks
                            .iter()
                            .all(|(g, b)| p.classify(*g, b) == BlockKind::Valid)
                }
            };
            if !ok {
                return DiskResult::HashMismatch;
            }
        }
        for (g, b) in &blocks {
            self.store(p, *g, b);
        }
        DiskResult::Ok
    }

    /// `Action::Verify`.
    pub fn verify(&self, p: &Payload, piece: u32, expected: [u8; 20]) -> DiskResult {
        let ok = match p.mode {
            Mode::Virtual => self.piece_valid(p, piece),
            Mode::Real => {
                let mut h = Sha1::new();
                for g in p.piece_blocks(piece) {
                    h.update(self.block_bytes(p, g, Variant::Valid));
                }
                <[u8; 20]>::from(h.finalize()) == expected
            }
        };
        if ok {
            DiskResult::Ok
        } else {
            DiskResult::HashMismatch
        }
    }

    /// The bytes of block `g`; valid blocks come from `serve`'s content.
    fn block_bytes(&self, p: &Payload, g: u32, serve: Variant) -> Bytes {
        let (_, _, len) = p.block_pos(g);
        let at = u64::from(g) * u64::from(BLOCK_LEN);
        match self.kinds[g as usize] {
            BlockKind::Valid => p.slice(serve, at, len as usize),
            BlockKind::Corrupt if p.has_corrupt() => p.slice(Variant::Corrupt, at, len as usize),
            BlockKind::Other => self
                .other
                .get(&g)
                .cloned()
                .unwrap_or_else(|| Bytes::from(vec![0; len as usize])),
            BlockKind::Corrupt | BlockKind::Empty => Bytes::from(vec![0; len as usize]),
        }
    }

    /// `Action::Read`: `len` bytes at `offset` in `piece`. Zero-copy when every block is
    /// valid; `serve` is what valid blocks are served as (corrupt peers serve `Corrupt`).
    pub fn read(&self, p: &Payload, piece: u32, offset: u32, len: u32, serve: Variant) -> Bytes {
        let start = p.layout.piece_offset(piece) + u64::from(offset);
        let end = (start + u64::from(len)).min(p.size());
        if start >= end {
            return Bytes::new();
        }
        let g0 = (start / u64::from(BLOCK_LEN)) as u32;
        let g1 = (end - 1) / u64::from(BLOCK_LEN);
        let g1 = g1 as u32;
        if (g0..=g1).all(|g| self.kinds[g as usize] == BlockKind::Valid) {
            return p.slice(serve, start, (end - start) as usize);
        }
        let mut out = BytesMut::with_capacity((end - start) as usize);
        for g in g0..=g1 {
            let b = self.block_bytes(p, g, serve);
            let b_start = u64::from(g) * u64::from(BLOCK_LEN);
            let from = start.saturating_sub(b_start) as usize;
            let to = ((end - b_start) as usize).min(b.len());
            out.extend_from_slice(&b[from..to]);
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn write_verify_read_in_both_modes() {
        for mode in [Mode::Real, Mode::Virtual] {
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let p = Payload::new(mode, 100_000, 32768, true, &mut rng);
            let full = Disk::full(&p);
            let mut d = Disk::empty(&p);
            let expected = p.meta.piece_hash(1).unwrap();
            assert_eq!(d.verify(&p, 1, expected), DiskResult::HashMismatch);
            let good = full.read(&p, 1, 0, 32768, Variant::Valid);
            let bad = full.read(&p, 1, 0, 32768, Variant::Corrupt);
            assert_eq!(
                d.write(
                    &p,
                    1,
                    0,
                    &[bad.slice(..16384), bad.slice(16384..)],
                    Some(expected)
                ),
                DiskResult::HashMismatch
            );
            assert!(!d.piece_valid(&p, 1));
            // Unaligned pieces of a good piece.
            let parts = [
                good.slice(..100),
                good.slice(100..20000),
                good.slice(20000..),
            ];
            assert_eq!(d.write(&p, 1, 0, &parts, Some(expected)), DiskResult::Ok);
            assert!(d.piece_valid(&p, 1));
            assert_eq!(d.verify(&p, 1, expected), DiskResult::Ok);
            assert_eq!(d.read(&p, 1, 0, 32768, Variant::Valid), good);
            // A spill of a corrupt block, then the check fails.
            assert_eq!(
                d.write(&p, 1, 16384, &[bad.slice(16384..)], None),
                DiskResult::Ok
            );
            assert_eq!(d.kind(3), BlockKind::Corrupt);
            assert_eq!(d.verify(&p, 1, expected), DiskResult::HashMismatch);
            // The last, short piece.
            let last = full.read(&p, 3, 0, 32768, Variant::Valid);
            assert_eq!(last.len(), 100_000 - 3 * 32768);
            let e3 = p.meta.piece_hash(3).unwrap();
            assert_eq!(d.write(&p, 3, 0, &[last], Some(e3)), DiskResult::Ok);
            assert!(d.piece_valid(&p, 3));
        }
    }
}
