//! Metainfo (`.torrent` files, BEP 3), with BEP 12 tracker tiers and BEP 47 padding files.
//!
//! SKELETON: signatures fixed, bodies to be written.

use bytes::Bytes;
use thiserror::Error;

use crate::bencode::BencodeError;
use crate::id::InfoHash;
use crate::layout::Layout;

/// Largest `.torrent` file accepted, in bytes.
pub const MAX_TORRENT_FILE: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// SHA-1 of exactly the bytes of the `info` dictionary as they were in the file.
    pub info_hash: InfoHash,
    pub info: Info,
    /// The bencoded `info` dictionary, exactly as in the file.
    pub info_bytes: Bytes,
    /// Tracker tiers (BEP 12): `announce-list` when present and non-empty, else `[[announce]]`,
    /// else empty. URLs are kept as written; the tracker module decides what it can use.
    pub trackers: Vec<Vec<String>>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub piece_length: u32,
    pub pieces: Vec<[u8; 20]>,
    /// In torrent order. A single-file torrent has one entry whose path is `[name]`.
    pub files: Vec<FileEntry>,
    pub private: bool,
    /// True when the torrent had a `files` list (its data lives under a directory `name`).
    pub multi_file: bool,
    pub layout: Layout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Validated path components relative to the download directory, starting with the
    /// torrent's name: `[name]` for a single-file torrent, `[name, dir.., file]` otherwise.
    pub path: Vec<String>,
    pub length: u64,
    /// BEP 47 padding file (attribute `p`): never written to disk, reads as zeros.
    pub padding: bool,
    /// BEP 47 attribute `x`.
    pub executable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetainfoError {
    #[error("not a torrent file: {0}")]
    Bencode(#[from] BencodeError),
    #[error("torrent file is {0} bytes, more than the {MAX_TORRENT_FILE}-byte limit")]
    TooLarge(usize),
    #[error("torrent is not a dictionary")]
    NotADictionary,
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` should be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("piece length {0} is not a power of two between 16 KiB and 256 MiB")]
    BadPieceLength(i64),
    #[error("`pieces` is {0} bytes, not a multiple of 20")]
    PiecesNotMultipleOf20(usize),
    #[error(
        "{got} piece hashes for {total} bytes in pieces of {piece_length}: expected {expected}"
    )]
    PieceCount {
        got: usize,
        expected: u64,
        total: u64,
        piece_length: u32,
    },
    #[error("unsafe file path {path:?}: {reason}")]
    UnsafePath { path: String, reason: &'static str },
    #[error("file path {0:?} appears twice (or is both a file and a directory)")]
    DuplicatePath(String),
}

impl Metainfo {
    /// Parses and validates a `.torrent` file. Every path is checked before anything could
    /// touch the disk.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let _ = bytes;
        todo!()
    }

    pub fn total_length(&self) -> u64 {
        self.info.layout.total_len()
    }

    pub fn layout(&self) -> &Layout {
        &self.info.layout
    }

    pub fn num_pieces(&self) -> u32 {
        self.info.layout.num_pieces()
    }

    pub fn piece_hash(&self, piece: u32) -> Option<[u8; 20]> {
        self.info.pieces.get(piece as usize).copied()
    }
}

/// What `create` needs to build a `.torrent`. Hashing the data is the caller's job (it is
/// disk work); this only encodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTorrent {
    pub name: String,
    /// Empty for a single-file torrent; otherwise each file's path below `name` and length.
    pub files: Vec<(Vec<String>, u64)>,
    /// Length of the single file when `files` is empty.
    pub length: u64,
    pub piece_length: u32,
    pub pieces: Vec<[u8; 20]>,
    pub private: bool,
    pub trackers: Vec<Vec<String>>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
}

impl NewTorrent {
    /// The bencoded `.torrent` file. `Metainfo::from_bytes` of the result succeeds and
    /// gives back the same fields.
    pub fn encode(&self) -> Vec<u8> {
        todo!()
    }
}
