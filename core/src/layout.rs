//! Storage layout: where each piece and block of a torrent lies in its files.
//!
//! A torrent is one byte stream cut into pieces of `piece_len` bytes (the last one
//! shorter) and, independently, into files laid end to end. A block of a piece can cross
//! any number of file boundaries; [`Layout::spans`] turns it into per-file ranges.
//! Zero-length files occupy no bytes and never appear in a span.

use thiserror::Error;

/// The unit of a request on the wire. BEP 3 clients all use 16 KiB.
pub const BLOCK_LEN: u32 = 16 * 1024;

/// A block: its piece and its index within the piece (offset = `block * BLOCK_LEN`).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct BlockRef {
    /// The piece.
    pub piece: u32,
    /// The block's index within the piece.
    pub block: u32,
}

/// A contiguous range of one file.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct FileSpan {
    /// Index into the torrent's file list.
    pub file: usize,
    /// Offset within that file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
/// Why a torrent's lengths cannot be laid out.
pub enum LayoutError {
    /// A piece length of zero.
    #[error("piece length must be positive")]
    ZeroPieceLength,
    /// Files longer than 2^64 bytes in all.
    #[error("total length overflows 64 bits")]
    TooLong,
    /// More pieces than a `u32` counts.
    #[error("{0} pieces is more than a torrent can have")]
    TooManyPieces(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Where every piece and block of a torrent lies in its files.
pub struct Layout {
    piece_len: u32,
    total_len: u64,
    num_pieces: u32,
    /// Start of each file in the torrent's byte stream.
    file_starts: Vec<u64>,
    file_lens: Vec<u64>,
}

impl Layout {
    /// The layout of files of these lengths, in order, cut into pieces of `piece_len`.
    pub fn new(
        piece_len: u32,
        file_lens: impl IntoIterator<Item = u64>,
    ) -> Result<Self, LayoutError> {
        if piece_len == 0 {
            return Err(LayoutError::ZeroPieceLength);
        }
        let file_lens: Vec<u64> = file_lens.into_iter().collect();
        let mut file_starts = Vec::with_capacity(file_lens.len());
        let mut total: u64 = 0;
        for &len in &file_lens {
            file_starts.push(total);
            total = total.checked_add(len).ok_or(LayoutError::TooLong)?;
        }
        let pieces = total.div_ceil(u64::from(piece_len));
        let num_pieces = u32::try_from(pieces).map_err(|_| LayoutError::TooManyPieces(pieces))?;
        Ok(Layout {
            piece_len,
            total_len: total,
            num_pieces,
            file_starts,
            file_lens,
        })
    }

    /// Pieces in the torrent.
    pub fn num_pieces(&self) -> u32 {
        self.num_pieces
    }

    /// Bytes in the torrent.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The piece length from the metainfo (every piece but possibly the last).
    pub fn nominal_piece_len(&self) -> u32 {
        self.piece_len
    }

    /// Files in the torrent.
    pub fn num_files(&self) -> usize {
        self.file_lens.len()
    }

    /// Length of file `file` (0 past the last file).
    pub fn file_len(&self, file: usize) -> u64 {
        self.file_lens[file]
    }

    /// Offset of `piece` in the torrent's byte stream.
    pub fn piece_offset(&self, piece: u32) -> u64 {
        u64::from(piece) * u64::from(self.piece_len)
    }

    /// Length of `piece`; 0 when out of range.
    pub fn piece_len(&self, piece: u32) -> u32 {
        if piece >= self.num_pieces {
            return 0;
        }
        let rest = self.total_len - self.piece_offset(piece);
        // `rest` is positive and, when below piece_len, fits in u32.
        u32::try_from(rest.min(u64::from(self.piece_len))).unwrap_or(self.piece_len)
    }

    /// Blocks in `piece`.
    pub fn blocks_in_piece(&self, piece: u32) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_LEN)
    }

    /// Offset of a block within its piece.
    pub fn block_offset(&self, block: BlockRef) -> u32 {
        block.block * BLOCK_LEN
    }

    /// Length of a block; 0 when out of range.
    pub fn block_len(&self, block: BlockRef) -> u32 {
        let piece_len = self.piece_len(block.piece);
        let start = block.block.saturating_mul(BLOCK_LEN);
        if start >= piece_len {
            0
        } else {
            (piece_len - start).min(BLOCK_LEN)
        }
    }

    /// The block that starts at `offset` in `piece` and is exactly as long as blocks there
    /// are, if there is one. This is how a `piece` message or a `request` is matched to a
    /// block: anything else is not a block this layout would ever ask for.
    pub fn block_at(&self, piece: u32, offset: u32, len: u32) -> Option<BlockRef> {
        if !offset.is_multiple_of(BLOCK_LEN) {
            return None;
        }
        let b = BlockRef {
            piece,
            block: offset / BLOCK_LEN,
        };
        (len != 0 && self.block_len(b) == len).then_some(b)
    }

    /// True when `[offset, offset + len)` lies inside `piece` and is non-empty.
    pub fn range_in_piece(&self, piece: u32, offset: u32, len: u32) -> bool {
        len > 0 && u64::from(offset) + u64::from(len) <= u64::from(self.piece_len(piece))
    }

    /// The file ranges covering `len` bytes at `offset` within `piece`, in order. Ranges past
    /// the end of the torrent are cut off.
    pub fn spans(&self, piece: u32, offset: u32, len: u32) -> Vec<FileSpan> {
        let start = self.piece_offset(piece) + u64::from(offset);
        let end = (start + u64::from(len)).min(self.total_len);
        let mut out = Vec::new();
        if start >= end {
            return out;
        }
        // First file whose end lies past `start`.
        let mut file = self
            .file_starts
            .partition_point(|&s| s <= start)
            .saturating_sub(1);
        let mut pos = start;
        while pos < end && file < self.file_lens.len() {
            let f_start = self.file_starts[file];
            let f_end = f_start + self.file_lens[file];
            if f_end > pos {
                let take = f_end.min(end) - pos;
                out.push(FileSpan {
                    file,
                    offset: pos - f_start,
                    len: take,
                });
                pos += take;
            }
            file += 1;
        }
        out
    }

    /// The pieces that hold at least one byte of `file` (empty for a zero-length file).
    pub fn file_pieces(&self, file: usize) -> std::ops::Range<u32> {
        let len = self.file_lens[file];
        if len == 0 {
            return 0..0;
        }
        let start = self.file_starts[file];
        let first = start / u64::from(self.piece_len);
        let last = (start + len - 1) / u64::from(self.piece_len);
        // Both are below num_pieces, which fits in u32.
        u32::try_from(first).unwrap_or(u32::MAX)..u32::try_from(last + 1).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn blocks_and_pieces() {
        let l = Layout::new(32768, [40000, 0, 30000]).unwrap();
        assert_eq!(l.total_len(), 70000);
        assert_eq!(l.num_pieces(), 3);
        assert_eq!(l.piece_len(2), 70000 - 65536);
        assert_eq!(l.piece_len(3), 0);
        assert_eq!(l.blocks_in_piece(0), 2);
        assert_eq!(l.blocks_in_piece(2), 1);
        assert_eq!(l.block_len(BlockRef { piece: 2, block: 0 }), 4464);
        assert_eq!(l.block_len(BlockRef { piece: 2, block: 1 }), 0);
        assert_eq!(
            l.block_at(2, 0, 4464),
            Some(BlockRef { piece: 2, block: 0 })
        );
        assert_eq!(l.block_at(2, 0, 16384), None);
        assert_eq!(l.block_at(0, 1, 16384), None);
    }

    #[test]
    fn spans_cross_files_and_skip_empty_ones() {
        let l = Layout::new(32768, [40000, 0, 30000]).unwrap();
        assert_eq!(
            l.spans(1, 0, 32768),
            vec![
                FileSpan {
                    file: 0,
                    offset: 32768,
                    len: 7232
                },
                FileSpan {
                    file: 2,
                    offset: 0,
                    len: 25536
                }
            ]
        );
        assert_eq!(
            l.spans(0, 0, 16384),
            vec![FileSpan {
                file: 0,
                offset: 0,
                len: 16384
            }]
        );
        assert_eq!(l.file_pieces(0), 0..2);
        assert_eq!(l.file_pieces(1), 0..0);
        assert_eq!(l.file_pieces(2), 1..3);
    }

    #[test]
    fn rejects_bad_shapes() {
        assert_eq!(Layout::new(0, [1]), Err(LayoutError::ZeroPieceLength));
        assert_eq!(Layout::new(1, [u64::MAX, 1]), Err(LayoutError::TooLong));
        assert!(matches!(
            Layout::new(1, [u64::MAX]),
            Err(LayoutError::TooManyPieces(_))
        ));
    }

    proptest! {
        #[test]
        fn spans_tile_every_piece(
            lens in proptest::collection::vec(prop_oneof![Just(0u64), 1u64..100_000], 1..8),
            shift in 10u32..17,
        ) {
            let piece_len = 1u32 << shift;
            let l = Layout::new(piece_len, lens.iter().copied()).unwrap();
            let mut covered = vec![0u64; lens.len()];
            for p in 0..l.num_pieces() {
                let spans = l.spans(p, 0, l.piece_len(p));
                prop_assert_eq!(spans.iter().map(|s| s.len).sum::<u64>(), u64::from(l.piece_len(p)));
                for s in &spans {
                    prop_assert!(s.len > 0);
                    prop_assert!(s.offset + s.len <= lens[s.file]);
                    prop_assert_eq!(s.offset, covered[s.file]);
                    covered[s.file] += s.len;
                    prop_assert!(l.file_pieces(s.file).contains(&p));
                }
                let blocks: u32 = (0..l.blocks_in_piece(p)).map(|b| l.block_len(BlockRef { piece: p, block: b })).sum();
                prop_assert_eq!(blocks, l.piece_len(p));
            }
            prop_assert_eq!(covered, lens);
        }
    }
}
