//! The torrent's content, built once per run and shared by every node through `Bytes`
//! reference counts.
//!
//! Two modes:
//! - **Real**: random bytes and real SHA-1 piece hashes; disks hash what they are given.
//! - **Virtual**: each 16 KiB block starts with a 16-byte *stamp* (magic, piece, block,
//!   valid/corrupt flag) and is zeros after it. Piece hashes in the metainfo are dummies
//!   (the core only passes them through); disks check "every block carries the right valid
//!   stamp" instead of hashing. A 1000-peer swarm then shares one copy of the torrent.
//!
//! Both modes also have a *corrupt* variant of the content (what corrupt peers serve:
//! every block damaged) and, for each variant, a *wire image*: every block preceded by the
//! 13-byte header of the `piece` message that carries it. The network swaps a header and
//! the block that follows it on a connection for one slice of the wire image, so receivers
//! decode blocks zero-copy and hold slices of shared buffers, not copies.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::Rng as _;
use sha1::{Digest, Sha1};
use tessera_core::metainfo::{FileEntry, Info};
use tessera_core::{BLOCK_LEN, InfoHash, Layout, Metainfo};

/// Where the simulated tracker listens.
pub const TRACKER_URL: &str = "http://10.0.0.254:6969/announce";

/// Bytes of the stamp at the start of each virtual block.
pub const STAMP_LEN: usize = 16;
const MAGIC: &[u8; 4] = b"TSIM";
/// Bytes of a `piece` message before its block: length, id, piece, offset.
pub const PIECE_HEADER: usize = 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Real,
    Virtual,
}

/// Which copy of the content a block came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    Valid = 0,
    Corrupt = 1,
}

/// What a disk holds in one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Empty,
    Valid,
    Corrupt,
    /// Anything else (garbage); real mode keeps the bytes.
    Other,
}

#[derive(Debug)]
pub struct Payload {
    pub mode: Mode,
    pub meta: Arc<Metainfo>,
    pub layout: Layout,
    pub total_blocks: u32,
    pub blocks_per_piece: u32,
    /// The content, contiguous, indexed by [`Variant`].
    content: [Bytes; 2],
    wire: [Bytes; 2],
}

impl Payload {
    /// Builds the content. `size` bytes in pieces of `piece_len` (a multiple of 16 KiB).
    /// `corrupt` builds the corrupt variant too (only needed when corrupt peers exist).
    pub fn new(
        mode: Mode,
        size: u64,
        piece_len: u32,
        corrupt: bool,
        rng: &mut ChaCha8Rng,
    ) -> Payload {
        assert!(
            piece_len >= BLOCK_LEN && piece_len.is_multiple_of(BLOCK_LEN),
            "piece size must be a multiple of 16 KiB"
        );
        assert!(size > 0, "empty torrent");
        let layout = Layout::new(piece_len, [size]).expect("layout");
        let total_blocks = u32::try_from(size.div_ceil(u64::from(BLOCK_LEN))).expect("size");
        let blocks_per_piece = piece_len / BLOCK_LEN;
        let len = usize::try_from(size).expect("size");
        let mut valid = vec![0u8; len];
        match mode {
            Mode::Real => rng.fill_bytes(&mut valid),
            Mode::Virtual => {
                for g in 0..total_blocks {
                    stamp(&mut valid, g, blocks_per_piece, Variant::Valid);
                }
            }
        }
        let corrupt_bytes = corrupt.then(|| {
            let mut c = valid.clone();
            for g in 0..total_blocks {
                match mode {
                    Mode::Real => {
                        let at = g as usize * BLOCK_LEN as usize;
                        c[at] ^= 0xA5;
                    }
                    Mode::Virtual => stamp(&mut c, g, blocks_per_piece, Variant::Corrupt),
                }
            }
            c
        });
        let pieces = piece_hashes(mode, &valid, piece_len, &layout);
        let meta = Arc::new(metainfo(size, piece_len, &layout, pieces));
        let mut p = Payload {
            mode,
            meta,
            layout,
            total_blocks,
            blocks_per_piece,
            content: [Bytes::from(valid), Bytes::new()],
            wire: [Bytes::new(), Bytes::new()],
        };
        p.wire[0] = p.build_wire(Variant::Valid);
        if let Some(c) = corrupt_bytes {
            p.content[1] = Bytes::from(c);
            p.wire[1] = p.build_wire(Variant::Corrupt);
        }
        p
    }

    fn build_wire(&self, v: Variant) -> Bytes {
        let src = &self.content[v as usize];
        let mut out =
            BytesMut::with_capacity(src.len() + PIECE_HEADER * self.total_blocks as usize);
        for g in 0..self.total_blocks {
            let (piece, offset, len) = self.block_pos(g);
            out.put_u32(len + 9);
            out.put_u8(7);
            out.put_u32(piece);
            out.put_u32(offset);
            let at = g as usize * BLOCK_LEN as usize;
            out.put_slice(&src[at..at + len as usize]);
        }
        out.freeze()
    }

    pub fn size(&self) -> u64 {
        self.layout.total_len()
    }

    pub fn num_pieces(&self) -> u32 {
        self.layout.num_pieces()
    }

    pub fn has_corrupt(&self) -> bool {
        !self.content[1].is_empty()
    }

    /// (piece, offset in piece, length) of global block `g`.
    pub fn block_pos(&self, g: u32) -> (u32, u32, u32) {
        let piece = g / self.blocks_per_piece;
        let offset = (g % self.blocks_per_piece) * BLOCK_LEN;
        let len = (self.size() - u64::from(g) * u64::from(BLOCK_LEN)).min(u64::from(BLOCK_LEN));
        (piece, offset, len as u32)
    }

    /// Global index of the block at `offset` in `piece`.
    pub fn block_index(&self, piece: u32, offset: u32) -> u32 {
        piece * self.blocks_per_piece + offset / BLOCK_LEN
    }

    /// Global blocks of `piece`.
    pub fn piece_blocks(&self, piece: u32) -> std::ops::Range<u32> {
        let first = piece * self.blocks_per_piece;
        first..(first + self.blocks_per_piece).min(self.total_blocks)
    }

    /// `len` bytes of a variant at torrent offset `at`, zero-copy.
    pub fn slice(&self, v: Variant, at: u64, len: usize) -> Bytes {
        let at = at as usize;
        self.content[v as usize].slice(at..at + len)
    }

    /// If `data` is exactly one block of a variant's content (a zero-copy read slice),
    /// which variant and block.
    pub fn locate(&self, data: &Bytes) -> Option<(Variant, u32)> {
        for v in [Variant::Valid, Variant::Corrupt] {
            let buf = &self.content[v as usize];
            let base = buf.as_ptr() as usize;
            let ptr = data.as_ptr() as usize;
            if buf.is_empty() || ptr < base || ptr + data.len() > base + buf.len() {
                continue;
            }
            let off = ptr - base;
            if !off.is_multiple_of(BLOCK_LEN as usize) {
                return None;
            }
            let g = (off / BLOCK_LEN as usize) as u32;
            return (self.block_pos(g).2 as usize == data.len()).then_some((v, g));
        }
        None
    }

    /// The wire image of blocks `first..end` of a variant (headers included).
    pub fn wire(&self, v: Variant, first: u32, end: u32) -> Bytes {
        let stride = (BLOCK_LEN as usize) + PIECE_HEADER;
        let start = first as usize * stride;
        let last = end - 1;
        let stop = last as usize * stride + PIECE_HEADER + self.block_pos(last).2 as usize;
        self.wire[v as usize].slice(start..stop)
    }

    /// Bytes of the wire image of blocks `first..end`.
    pub fn wire_len(&self, first: u32, end: u32) -> usize {
        (first..end)
            .map(|g| PIECE_HEADER + self.block_pos(g).2 as usize)
            .sum()
    }

    /// What the bytes of block `g` (all of them in real mode, at least the stamp in
    /// virtual mode) are.
    pub fn classify(&self, g: u32, data: &[u8]) -> BlockKind {
        let (_, _, len) = self.block_pos(g);
        let at = g as usize * BLOCK_LEN as usize;
        match self.mode {
            Mode::Real => {
                if data.len() != len as usize {
                    return BlockKind::Other;
                }
                for v in [Variant::Valid, Variant::Corrupt] {
                    let c = &self.content[v as usize];
                    if !c.is_empty() && c[at..at + len as usize] == *data {
                        return if v == Variant::Valid {
                            BlockKind::Valid
                        } else {
                            BlockKind::Corrupt
                        };
                    }
                }
                BlockKind::Other
            }
            Mode::Virtual => {
                let n = STAMP_LEN.min(len as usize);
                if data.len() < n {
                    return BlockKind::Other;
                }
                let mut want = [0u8; STAMP_LEN];
                write_stamp(&mut want, g, self.blocks_per_piece, Variant::Valid);
                if data[..n] == want[..n] {
                    return BlockKind::Valid;
                }
                write_stamp(&mut want, g, self.blocks_per_piece, Variant::Corrupt);
                if data[..n] == want[..n] {
                    return BlockKind::Corrupt;
                }
                BlockKind::Other
            }
        }
    }
}

/// The metainfo's piece hashes: real SHA-1 in real mode; in virtual mode dummies the
/// core passes through (magic and piece index).
fn piece_hashes(mode: Mode, content: &[u8], piece_len: u32, layout: &Layout) -> Vec<[u8; 20]> {
    match mode {
        Mode::Real => content
            .chunks(piece_len as usize)
            .map(|c| Sha1::digest(c).into())
            .collect(),
        Mode::Virtual => (0..layout.num_pieces())
            .map(|p| {
                let mut h = [0u8; 20];
                h[..4].copy_from_slice(MAGIC);
                h[4..8].copy_from_slice(&p.to_be_bytes());
                h
            })
            .collect(),
    }
}

/// The single-file torrent of the content, announcing to the simulated tracker. Its info
/// hash derives from the size, piece length and piece hashes.
fn metainfo(size: u64, piece_len: u32, layout: &Layout, pieces: Vec<[u8; 20]>) -> Metainfo {
    let mut h = Sha1::new();
    h.update(b"tessera-sim");
    h.update(size.to_be_bytes());
    h.update(piece_len.to_be_bytes());
    for p in &pieces {
        h.update(p);
    }
    Metainfo {
        info_hash: InfoHash(h.finalize().into()),
        info: Info {
            name: "sim.bin".into(),
            piece_length: piece_len,
            pieces,
            files: vec![FileEntry {
                path: vec!["sim.bin".into()],
                length: size,
                padding: false,
                executable: false,
            }],
            private: false,
            multi_file: false,
            layout: layout.clone(),
        },
        info_bytes: Bytes::new(),
        trackers: vec![vec![TRACKER_URL.into()]],
        comment: None,
        created_by: None,
        creation_date: None,
    }
}

impl Payload {
    /// The same content as a torrent with a real info dictionary (bencoded, its SHA-1 the
    /// info hash), as peers hand it out to a magnet link (BEP 9). The plain payload's
    /// metainfo skips the encoding.
    pub fn with_info_dictionary(mut self) -> Payload {
        let meta = &self.meta;
        let new = tessera_core::metainfo::NewTorrent {
            name: meta.info.name.clone(),
            files: Vec::new(),
            length: meta.total_length(),
            piece_length: meta.info.piece_length,
            pieces: meta.info.pieces.clone(),
            private: false,
            trackers: meta.trackers.clone(),
            comment: None,
            created_by: None,
            creation_date: None,
        };
        let real = Metainfo::from_bytes(&new.encode()).expect("a torrent the core encoded");
        self.meta = Arc::new(real);
        self
    }
}

fn write_stamp(out: &mut [u8; STAMP_LEN], g: u32, blocks_per_piece: u32, v: Variant) {
    out[..4].copy_from_slice(MAGIC);
    out[4..8].copy_from_slice(&(g / blocks_per_piece).to_be_bytes());
    out[8..12].copy_from_slice(&(g % blocks_per_piece).to_be_bytes());
    out[12] = 1 + v as u8;
    out[13..].fill(0);
}

/// Writes the stamp of block `g` into `buf` (the whole content).
fn stamp(buf: &mut [u8], g: u32, blocks_per_piece: u32, v: Variant) {
    let at = g as usize * BLOCK_LEN as usize;
    let mut s = [0u8; STAMP_LEN];
    write_stamp(&mut s, g, blocks_per_piece, v);
    let n = STAMP_LEN.min(buf.len() - at);
    buf[at..at + n].copy_from_slice(&s[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn wire_image_is_piece_messages() {
        for mode in [Mode::Real, Mode::Virtual] {
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let p = Payload::new(mode, 100_000, 32768, true, &mut rng);
            assert_eq!(p.total_blocks, 7);
            let w = p.wire(Variant::Valid, 0, p.total_blocks);
            assert_eq!(w.len(), 100_000 + 13 * 7);
            let mut d = tessera_core::wire::Decoder::after_handshake();
            d.feed(w);
            for g in 0..p.total_blocks {
                let (piece, offset, len) = p.block_pos(g);
                let m = d.next_message().unwrap().unwrap();
                let tessera_core::wire::Message::Piece {
                    piece: mp,
                    offset: mo,
                    data,
                } = m
                else {
                    panic!("not a piece")
                };
                assert_eq!((mp, mo, data.len() as u32), (piece, offset, len));
                assert_eq!(p.classify(g, &data), BlockKind::Valid);
                let at = u64::from(g) * u64::from(BLOCK_LEN);
                assert_eq!(
                    p.locate(&p.slice(Variant::Valid, at, len as usize)),
                    Some((Variant::Valid, g))
                );
                let bad = p.slice(Variant::Corrupt, at, len as usize);
                assert_eq!(p.classify(g, &bad), BlockKind::Corrupt);
                assert_eq!(p.locate(&bad), Some((Variant::Corrupt, g)));
            }
            assert_eq!(p.classify(0, &[0u8; 16384]), BlockKind::Other);
        }
    }
}
