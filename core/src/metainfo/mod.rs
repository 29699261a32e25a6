//! Metainfo (`.torrent` files, BEP 3), with BEP 12 tracker tiers and BEP 47 padding files.
//!
//! Parsing happens in two steps. The top-level dictionary is read straight from the `bendy`
//! token stream so that the `info` dictionary's bytes can be kept exactly as they were in
//! the file: the info hash is the SHA-1 of those bytes. The `info` bytes are then decoded
//! into a [`Value`] and every field is checked: piece length, hash count, lengths and, above
//! all, file paths, which must not be able to escape the download directory.
//!
//! Fields that only inform (`comment`, `created by`, `creation date`, trackers) are read
//! leniently: a malformed one is ignored. Fields that decide what is downloaded and where
//! it is written are read strictly: a malformed one rejects the torrent.

use bendy::decoding::{Decoder, Object};
use bytes::Bytes;
use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::bencode::{self, BencodeError, MAX_DEPTH, Value};
use crate::id::InfoHash;
use crate::layout::Layout;

mod create;
mod path;

pub use create::NewTorrent;
use path::{check_distinct_paths, component_problem};

/// Smallest piece length accepted (one block).
pub const MIN_PIECE_LENGTH: u32 = 16 << 10;
/// Largest piece length accepted.
pub const MAX_PIECE_LENGTH: u32 = 256 << 20;

/// Largest `.torrent` file accepted, in bytes.
pub const MAX_TORRENT_FILE: usize = 32 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
/// A parsed, checked `.torrent` file.
pub struct Metainfo {
    /// SHA-1 of exactly the bytes of the `info` dictionary as they were in the file.
    pub info_hash: InfoHash,
    /// The `info` dictionary: what the info hash covers.
    pub info: Info,
    /// The bencoded `info` dictionary, exactly as in the file.
    pub info_bytes: Bytes,
    /// Tracker tiers (BEP 12): `announce-list` when present and non-empty, else `[[announce]]`,
    /// else empty. URLs are kept as written; the tracker module decides what it can use.
    pub trackers: Vec<Vec<String>>,
    /// Free text from the file.
    pub comment: Option<String>,
    /// The program that made the file.
    pub created_by: Option<String>,
    /// Seconds since the Unix epoch.
    pub creation_date: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The `info` dictionary, checked.
pub struct Info {
    /// The torrent's name: the single file's name, or the top directory's.
    pub name: String,
    /// Bytes per piece.
    pub piece_length: u32,
    /// The SHA-1 of every piece, in order.
    pub pieces: Vec<[u8; 20]>,
    /// In torrent order. A single-file torrent has one entry whose path is `[name]`.
    pub files: Vec<FileEntry>,
    /// The private flag (BEP 27).
    pub private: bool,
    /// True when the torrent had a `files` list (its data lives under a directory `name`).
    pub multi_file: bool,
    /// Where each piece lies in the files.
    pub layout: Layout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// One file of the torrent.
pub struct FileEntry {
    /// Validated path components relative to the download directory, starting with the
    /// torrent's name: `[name]` for a single-file torrent, `[name, dir.., file]` otherwise.
    pub path: Vec<String>,
    /// Its length in bytes.
    pub length: u64,
    /// BEP 47 padding file (attribute `p`): never written to disk, reads as zeros.
    pub padding: bool,
    /// BEP 47 attribute `x`.
    pub executable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
/// Why bytes are not an acceptable `.torrent` file.
pub enum MetainfoError {
    /// Not well-formed bencode.
    #[error("not a torrent file: {0}")]
    Bencode(#[from] BencodeError),
    /// Larger than [`MAX_TORRENT_FILE`].
    #[error("torrent file is {0} bytes, more than the {MAX_TORRENT_FILE}-byte limit")]
    TooLarge(usize),
    /// The top level is not a dictionary.
    #[error("torrent is not a dictionary")]
    NotADictionary,
    /// A required field is missing.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field holds the wrong type.
    #[error("field `{field}` should be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it should hold.
        expected: &'static str,
    },
    /// A field's value is not acceptable.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A piece length that is not a power of two within the limits.
    #[error("piece length {0} is not a power of two between 16 KiB and 256 MiB")]
    BadPieceLength(i64),
    /// `pieces` is not a whole number of SHA-1 hashes.
    #[error("`pieces` is {0} bytes, not a multiple of 20")]
    PiecesNotMultipleOf20(usize),
    #[error(
        "{got} piece hashes for {total} bytes in pieces of {piece_length}: expected {expected}"
    )]
    /// The hash count does not match the length.
    PieceCount {
        /// Hashes given.
        got: usize,
        /// Hashes the length needs.
        expected: u64,
        /// Total length.
        total: u64,
        /// Piece length.
        piece_length: u32,
    },
    /// A file path that could leave the download directory.
    #[error("unsafe file path {path:?}: {reason}")]
    UnsafePath {
        /// The path.
        path: String,
        /// Why it is unsafe.
        reason: &'static str,
    },
    /// Two files share a path (or one is a directory on the other's path).
    #[error("file path {0:?} appears twice (or is both a file and a directory)")]
    DuplicatePath(String),
}

impl Metainfo {
    /// Parses and validates a `.torrent` file. Every path is checked before anything could
    /// touch the disk.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        if bytes.len() > MAX_TORRENT_FILE {
            return Err(MetainfoError::TooLarge(bytes.len()));
        }
        let top = TopLevel::read(bytes)?;
        let info_value = bencode::decode(top.info)?;
        let info = parse_info(&info_value)?;
        let info_hash = InfoHash(Sha1::digest(top.info).into());
        Ok(Metainfo {
            info_hash,
            info,
            info_bytes: Bytes::copy_from_slice(top.info),
            trackers: trackers(top.announce.as_ref(), top.announce_list.as_ref()),
            comment: top.comment.as_ref().and_then(text),
            created_by: top.created_by.as_ref().and_then(text),
            creation_date: top.creation_date.as_ref().and_then(Value::as_int),
        })
    }

    /// Bytes in the torrent.
    pub fn total_length(&self) -> u64 {
        self.info.layout.total_len()
    }

    /// Where each piece lies in the files.
    pub fn layout(&self) -> &Layout {
        &self.info.layout
    }

    /// Pieces in the torrent.
    pub fn num_pieces(&self) -> u32 {
        self.info.layout.num_pieces()
    }

    /// The SHA-1 of `piece`, if it exists.
    pub fn piece_hash(&self, piece: u32) -> Option<[u8; 20]> {
        self.info.pieces.get(piece as usize).copied()
    }
}

// ---------------------------------------------------------------------------------------
// Top level

/// The top-level fields this module reads. `info` is the raw bencoded dictionary.
struct TopLevel<'a> {
    info: &'a [u8],
    announce: Option<Value<'a>>,
    announce_list: Option<Value<'a>>,
    comment: Option<Value<'a>>,
    created_by: Option<Value<'a>>,
    creation_date: Option<Value<'a>>,
}

fn malformed(e: bendy::decoding::Error) -> MetainfoError {
    MetainfoError::Bencode(e.into())
}

/// Walks past a value without building it (unknown keys may be large).
fn skip(obj: Object<'_, '_>) -> Result<(), bendy::decoding::Error> {
    match obj {
        Object::List(mut list) => list.consume_all(),
        Object::Dict(mut dict) => dict.consume_all(),
        Object::Bytes(_) | Object::Integer(_) => Ok(()),
    }
}

impl<'a> TopLevel<'a> {
    /// Reads the top-level dictionary, which must span all of `bytes`.
    fn read(bytes: &'a [u8]) -> Result<Self, MetainfoError> {
        let mut decoder = Decoder::new(bytes).with_max_depth(MAX_DEPTH);
        let mut budget = bencode::Budget::default();
        let mut info = None;
        let mut announce = None;
        let mut announce_list = None;
        let mut comment = None;
        let mut created_by = None;
        let mut creation_date = None;
        {
            let mut dict = match decoder.next_object().map_err(malformed)? {
                None => return Err(BencodeError::Empty.into()),
                Some(Object::Dict(dict)) => dict,
                Some(_) => return Err(MetainfoError::NotADictionary),
            };
            // bendy rejects unsorted and duplicate keys, so each arm runs at most once.
            while let Some((key, value)) = dict.next_pair().map_err(malformed)? {
                match key {
                    b"info" => match value {
                        Object::Dict(d) => info = Some(d.into_raw().map_err(malformed)?),
                        _ => {
                            return Err(MetainfoError::WrongType {
                                field: "info",
                                expected: "a dictionary",
                            });
                        }
                    },
                    b"announce" => announce = Some(bencode::from_object(value, &mut budget)?),
                    b"announce-list" => {
                        announce_list = Some(bencode::from_object(value, &mut budget)?)
                    }
                    b"comment" => comment = Some(bencode::from_object(value, &mut budget)?),
                    b"created by" => created_by = Some(bencode::from_object(value, &mut budget)?),
                    b"creation date" => {
                        creation_date = Some(bencode::from_object(value, &mut budget)?)
                    }
                    _ => skip(value).map_err(malformed)?,
                }
            }
        }
        if !matches!(decoder.next_object(), Ok(None)) {
            return Err(BencodeError::TrailingBytes.into());
        }
        Ok(TopLevel {
            info: info.ok_or(MetainfoError::Missing("info"))?,
            announce,
            announce_list,
            comment,
            created_by,
            creation_date,
        })
    }
}

/// A free-text field: invalid UTF-8 is replaced rather than rejected.
fn text(v: &Value<'_>) -> Option<String> {
    v.as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// A tracker URL: a non-empty UTF-8 string.
fn tracker_url(v: &Value<'_>) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// BEP 12: the tiers of `announce-list` (empty tiers and entries that are not strings
/// dropped) when that leaves any, else `[[announce]]`, else nothing.
fn trackers(announce: Option<&Value<'_>>, announce_list: Option<&Value<'_>>) -> Vec<Vec<String>> {
    let tiers: Vec<Vec<String>> = announce_list
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(|tier| {
            let urls: Vec<String> = tier.as_list()?.iter().filter_map(tracker_url).collect();
            (!urls.is_empty()).then_some(urls)
        })
        .collect();
    if !tiers.is_empty() {
        return tiers;
    }
    announce
        .and_then(tracker_url)
        .map(|url| vec![vec![url]])
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// The info dictionary

fn parse_info(info: &Value<'_>) -> Result<Info, MetainfoError> {
    if info.as_dict().is_none() {
        return Err(MetainfoError::WrongType {
            field: "info",
            expected: "a dictionary",
        });
    }
    let name = utf8_string(info, b"name.utf-8", b"name", "name")?.to_owned();
    if let Some(reason) = component_problem(&name) {
        return Err(MetainfoError::UnsafePath { path: name, reason });
    }
    let piece_length = piece_length(info)?;
    let pieces = pieces(info)?;

    let (files, multi_file) = match (info.get(b"length"), info.get(b"files")) {
        (Some(_), Some(_)) => {
            return Err(MetainfoError::Invalid {
                field: "info",
                reason: "has both `length` and `files`".into(),
            });
        }
        (None, None) => return Err(MetainfoError::Missing("length` or `files")),
        (Some(length), None) => {
            let attr = Attr::of(info)?;
            let file = FileEntry {
                path: vec![name.clone()],
                length: non_negative(length)?,
                // A lone padding file would be a torrent of nothing: `p` is ignored here.
                padding: false,
                executable: attr.executable,
            };
            (vec![file], false)
        }
        (None, Some(files)) => {
            let files = parse_files(&name, files)?;
            check_distinct_paths(&files)?;
            (files, true)
        }
    };

    let total = files
        .iter()
        .try_fold(0u64, |sum, f| sum.checked_add(f.length))
        .ok_or_else(|| MetainfoError::Invalid {
            field: "length",
            reason: "the files' lengths add up to more than 2^64 bytes".into(),
        })?;
    if total == 0 {
        return Err(MetainfoError::Invalid {
            field: "length",
            reason: "the torrent holds no data (every file is empty)".into(),
        });
    }
    let expected = total.div_ceil(u64::from(piece_length));
    if u64::try_from(pieces.len()).ok() != Some(expected) {
        return Err(MetainfoError::PieceCount {
            got: pieces.len(),
            expected,
            total,
            piece_length,
        });
    }
    let layout = Layout::new(piece_length, files.iter().map(|f| f.length)).map_err(|e| {
        MetainfoError::Invalid {
            field: "length",
            reason: e.to_string(),
        }
    })?;

    Ok(Info {
        name,
        piece_length,
        pieces,
        files,
        private: info.get(b"private").and_then(Value::as_int) == Some(1),
        multi_file,
        layout,
    })
}

/// `utf8_key` when it holds a UTF-8 string, else `key`, which must hold one.
fn utf8_string<'a>(
    dict: &Value<'a>,
    utf8_key: &[u8],
    key: &[u8],
    field: &'static str,
) -> Result<&'a str, MetainfoError> {
    if let Some(s) = dict.get(utf8_key).and_then(Value::as_str) {
        return Ok(s);
    }
    dict.get(key)
        .ok_or(MetainfoError::Missing(field))?
        .as_str()
        .ok_or(MetainfoError::WrongType {
            field,
            expected: "a UTF-8 string",
        })
}

/// The value as a list of UTF-8 strings, if it is one.
fn str_list<'a>(v: &Value<'a>) -> Option<Vec<&'a str>> {
    v.as_list()?.iter().map(Value::as_str).collect()
}

fn piece_length(info: &Value<'_>) -> Result<u32, MetainfoError> {
    let n = info
        .get(b"piece length")
        .ok_or(MetainfoError::Missing("piece length"))?
        .as_int()
        .ok_or(MetainfoError::WrongType {
            field: "piece length",
            expected: "an integer",
        })?;
    u32::try_from(n)
        .ok()
        .filter(|&len| {
            len.is_power_of_two() && (MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&len)
        })
        .ok_or(MetainfoError::BadPieceLength(n))
}

fn pieces(info: &Value<'_>) -> Result<Vec<[u8; 20]>, MetainfoError> {
    let bytes = info
        .get(b"pieces")
        .ok_or(MetainfoError::Missing("pieces"))?
        .as_bytes()
        .ok_or(MetainfoError::WrongType {
            field: "pieces",
            expected: "a string",
        })?;
    if bytes.len() % 20 != 0 {
        return Err(MetainfoError::PiecesNotMultipleOf20(bytes.len()));
    }
    bytes
        .chunks_exact(20)
        .map(|hash| {
            <[u8; 20]>::try_from(hash)
                .map_err(|_| MetainfoError::PiecesNotMultipleOf20(bytes.len()))
        })
        .collect()
}

/// A `length` field: an integer that is not negative.
fn non_negative(v: &Value<'_>) -> Result<u64, MetainfoError> {
    let n = v.as_int().ok_or(MetainfoError::WrongType {
        field: "length",
        expected: "an integer",
    })?;
    u64::try_from(n).map_err(|_| MetainfoError::Invalid {
        field: "length",
        reason: format!("{n} is negative"),
    })
}

/// BEP 47 file attributes. Unknown characters are ignored, as the BEP asks.
#[derive(Default)]
struct Attr {
    padding: bool,
    executable: bool,
    symlink: bool,
}

impl Attr {
    fn of(dict: &Value<'_>) -> Result<Attr, MetainfoError> {
        let Some(attr) = dict.get(b"attr") else {
            return Ok(Attr::default());
        };
        let attr = attr.as_bytes().ok_or(MetainfoError::WrongType {
            field: "attr",
            expected: "a string",
        })?;
        Ok(Attr {
            padding: attr.contains(&b'p'),
            executable: attr.contains(&b'x'),
            symlink: attr.contains(&b'l'),
        })
    }
}

/// The `files` list of a multi-file torrent, every path checked with [`component_problem`].
fn parse_files(name: &str, files: &Value<'_>) -> Result<Vec<FileEntry>, MetainfoError> {
    let wrong_type = MetainfoError::WrongType {
        field: "files",
        expected: "a list of dictionaries",
    };
    let list = files.as_list().ok_or_else(|| wrong_type.clone())?;
    if list.is_empty() {
        return Err(MetainfoError::Invalid {
            field: "files",
            reason: "the list is empty".into(),
        });
    }
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        if entry.as_dict().is_none() {
            return Err(wrong_type);
        }
        let attr = Attr::of(entry)?;
        let length = match entry.get(b"length") {
            Some(length) => non_negative(length)?,
            // BEP 47 lets symlinks (which hold no data) leave their length out.
            None if attr.symlink => 0,
            None => return Err(MetainfoError::Missing("length")),
        };
        let components = match entry.get(b"path.utf-8").and_then(str_list) {
            Some(components) => components,
            None => entry
                .get(b"path")
                .ok_or(MetainfoError::Missing("path"))
                .and_then(|p| {
                    str_list(p).ok_or(MetainfoError::WrongType {
                        field: "path",
                        expected: "a list of UTF-8 strings",
                    })
                })?,
        };
        if components.is_empty() {
            return Err(MetainfoError::UnsafePath {
                path: format!("{name}/"),
                reason: "the path list is empty",
            });
        }
        let mut path = Vec::with_capacity(components.len().saturating_add(1));
        path.push(name.to_owned());
        for c in components {
            if let Some(reason) = component_problem(c) {
                let mut shown = path.join("/");
                shown.push('/');
                shown.push_str(c);
                return Err(MetainfoError::UnsafePath {
                    path: shown,
                    reason,
                });
            }
            path.push(c.to_owned());
        }
        out.push(FileEntry {
            path,
            length,
            padding: attr.padding,
            executable: attr.executable,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
