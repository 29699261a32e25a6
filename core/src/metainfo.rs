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

use crate::bencode::{self, BencodeError, DictBuilder, MAX_DEPTH, Value};
use crate::id::InfoHash;
use crate::layout::Layout;

/// Smallest piece length accepted (one block).
const MIN_PIECE_LENGTH: u32 = 16 << 10;
/// Largest piece length accepted.
const MAX_PIECE_LENGTH: u32 = 256 << 20;

/// Largest `.torrent` file accepted, in bytes.
pub const MAX_TORRENT_FILE: usize = 32 << 20;

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
    ///
    /// This only encodes: a `NewTorrent` that `from_bytes` would reject (an unsafe name or
    /// path, a hash count that does not match, no data at all) encodes to a torrent that
    /// `from_bytes` rejects.
    ///
    /// Lengths above `i64::MAX` cannot be written in bencode as this crate reads it and are
    /// written as `i64::MAX` (no real torrent comes near). Empty tiers are left out.
    pub fn encode(&self) -> Vec<u8> {
        let pieces: Vec<u8> = self.pieces.concat();
        let mut info = DictBuilder::new()
            .insert(b"name", Value::Bytes(self.name.as_bytes()))
            .insert(b"piece length", Value::Int(i64::from(self.piece_length)))
            .insert(b"pieces", Value::Bytes(&pieces));
        info = if self.files.is_empty() {
            info.insert(b"length", length_value(self.length))
        } else {
            let files = self
                .files
                .iter()
                .map(|(path, len)| {
                    let path = path.iter().map(|c| Value::Bytes(c.as_bytes())).collect();
                    DictBuilder::new()
                        .insert(b"length", length_value(*len))
                        .insert(b"path", Value::List(path))
                        .build()
                })
                .collect();
            info.insert(b"files", Value::List(files))
        };
        if self.private {
            info = info.insert(b"private", Value::Int(1));
        }

        let mut top = DictBuilder::new().insert(b"info", info.build());
        if let Some(first) = self.trackers.iter().flatten().next() {
            top = top.insert(b"announce", Value::Bytes(first.as_bytes()));
        }
        if self.trackers.iter().map(Vec::len).sum::<usize>() > 1 {
            let tiers = self
                .trackers
                .iter()
                .filter(|tier| !tier.is_empty())
                .map(|tier| Value::List(tier.iter().map(|u| Value::Bytes(u.as_bytes())).collect()))
                .collect();
            top = top.insert(b"announce-list", Value::List(tiers));
        }
        if let Some(comment) = &self.comment {
            top = top.insert(b"comment", Value::Bytes(comment.as_bytes()));
        }
        if let Some(created_by) = &self.created_by {
            top = top.insert(b"created by", Value::Bytes(created_by.as_bytes()));
        }
        if let Some(date) = self.creation_date {
            top = top.insert(b"creation date", Value::Int(date));
        }
        bencode::encode(&top.build())
    }
}

fn length_value(len: u64) -> Value<'static> {
    Value::Int(i64::try_from(len).unwrap_or(i64::MAX))
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

/// Why `c` cannot be one component of a path below the download directory, if it cannot.
///
/// Joined onto a directory, a safe component names an entry directly inside it on every
/// platform: it cannot be empty, climb (`..`), hold a separator of any platform, hold a
/// NUL (which truncates paths in C APIs) or start with a Windows drive (`C:` makes a
/// Windows join ignore the directory). Other Windows restrictions (reserved names such as
/// `CON`, trailing dots) cannot escape the directory and are left to the disk layer.
fn component_problem(c: &str) -> Option<&'static str> {
    if c.is_empty() {
        Some("empty path component")
    } else if c == "." || c == ".." {
        Some("`.` or `..` path component")
    } else if c.contains('/') {
        Some("path component contains `/`")
    } else if c.contains('\\') {
        Some("path component contains `\\`")
    } else if c.contains('\0') {
        Some("path component contains NUL")
    } else if matches!(c.as_bytes(), [letter, b':', ..] if letter.is_ascii_alphabetic()) {
        Some("path component starts with a Windows drive")
    } else {
        None
    }
}

/// Rejects two files with the same path, and a file whose path is a directory on another
/// file's path (`a` and `a/b`): either would make two files share bytes on disk.
///
/// Padding files (BEP 47) are never written, so two padding files may share a path (hybrid
/// torrents name them `.pad/<size>` and sizes repeat) or nest; but a padding path must not
/// meet a real file's path in either way, so that the disk layer never has to wonder.
///
/// Sorted component-wise, every path that a path `p` is a prefix of comes right after `p`,
/// before any path that `p` is not a prefix of. So a stack of the paths that are prefixes
/// of the current one finds every clash in one pass, in time linear in the total number of
/// components (after the sort), however deep the paths.
fn check_distinct_paths(files: &[FileEntry]) -> Result<(), MetainfoError> {
    let mut sorted: Vec<&FileEntry> = files.iter().collect();
    sorted.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    // Earlier paths that are prefixes of (or equal to) the current one, each a prefix of
    // the next; and how many of them are real files.
    let mut stack: Vec<&FileEntry> = Vec::new();
    let mut real_on_stack = 0usize;
    for file in sorted {
        while let Some(top) = stack.last() {
            if file.path.starts_with(&top.path) {
                break;
            }
            if !top.padding {
                real_on_stack = real_on_stack.saturating_sub(1);
            }
            stack.pop();
        }
        // Every file on the stack is `file` itself or one of its directories.
        let clash = if file.padding {
            real_on_stack > 0
        } else {
            !stack.is_empty()
        };
        if clash {
            return Err(MetainfoError::DuplicatePath(file.path.join("/")));
        }
        if !file.padding {
            real_on_stack += 1;
        }
        stack.push(file);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // --- helpers -----------------------------------------------------------------------

    fn parse(bytes: &[u8]) -> Metainfo {
        match Metainfo::from_bytes(bytes) {
            Ok(m) => m,
            Err(e) => panic!("rejected: {e}\n{}", String::from_utf8_lossy(bytes)),
        }
    }

    fn err(bytes: &[u8]) -> MetainfoError {
        match Metainfo::from_bytes(bytes) {
            Ok(m) => panic!("accepted: {m:?}"),
            Err(e) => e,
        }
    }

    fn s(text: &str) -> Value<'_> {
        Value::Bytes(text.as_bytes())
    }

    fn strs<'a>(items: &[&'a str]) -> Value<'a> {
        Value::List(items.iter().map(|c| s(c)).collect())
    }

    /// A `files` entry.
    fn file<'a>(path: &[&'a str], length: i64) -> Value<'a> {
        DictBuilder::new()
            .insert(b"length", Value::Int(length))
            .insert(b"path", strs(path))
            .build()
    }

    /// A `files` entry with BEP 47 attributes.
    fn file_attr<'a>(path: &[&'a str], length: i64, attr: &'a str) -> Value<'a> {
        DictBuilder::new()
            .insert(b"attr", s(attr))
            .insert(b"length", Value::Int(length))
            .insert(b"path", strs(path))
            .build()
    }

    /// `n` piece hashes, hash `i` filled with byte `i`.
    fn hashes(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| [i as u8; 20]).collect()
    }

    /// Info dictionary entries common to most tests: name `dir`, 16 KiB pieces.
    fn info_with<'a>(pieces: &'a [u8], rest: Vec<(&'a [u8], Value<'a>)>) -> Value<'a> {
        let mut info = DictBuilder::new()
            .insert(b"name", s("dir"))
            .insert(b"piece length", Value::Int(16384))
            .insert(b"pieces", Value::Bytes(pieces));
        for (k, v) in rest {
            info = info.insert(k, v);
        }
        info.build()
    }

    fn torrent(info: Value<'_>) -> Vec<u8> {
        bencode::encode(&DictBuilder::new().insert(b"info", info).build())
    }

    /// A multi-file torrent named `dir` with `n_pieces` hashes.
    fn multi_with(files: Vec<Value<'_>>, n_pieces: usize) -> Vec<u8> {
        let pieces = hashes(n_pieces);
        torrent(info_with(&pieces, vec![(b"files", Value::List(files))]))
    }

    /// A multi-file torrent named `dir` with the right number of hashes for its lengths.
    fn multi(files: Vec<Value<'_>>) -> Vec<u8> {
        let total: i64 = files
            .iter()
            .filter_map(|f| f.get(b"length").and_then(Value::as_int))
            .map(|l| l.max(0))
            .sum();
        multi_with(files, usize::try_from(total).unwrap().div_ceil(16384))
    }

    /// A single-file torrent named `dir` of `length` bytes with `n_pieces` hashes.
    fn single(length: i64, n_pieces: usize) -> Vec<u8> {
        let pieces = hashes(n_pieces);
        torrent(info_with(&pieces, vec![(b"length", Value::Int(length))]))
    }

    fn paths(m: &Metainfo) -> Vec<String> {
        m.info.files.iter().map(|f| f.path.join("/")).collect()
    }

    // --- accepted torrents -------------------------------------------------------------

    /// Written out by hand; its SHA-1 was computed outside this code (`sha1sum`).
    const HAND_INFO: &[u8] = b"d6:lengthi20000e4:name8:test.txt12:piece lengthi16384e\
        6:pieces40:AAAAAAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBBBBBe";
    const HAND_INFO_SHA1: &str = "95bf4f359399747255f30d7e720c66e5737e93f4";

    fn hand_torrent() -> Vec<u8> {
        [
            &b"d8:announce31:http://tracker.example/announce4:info"[..],
            HAND_INFO,
            b"e",
        ]
        .concat()
    }

    #[test]
    fn single_file_torrent() {
        let m = parse(&hand_torrent());
        assert_eq!(m.info.name, "test.txt");
        assert!(!m.info.multi_file);
        assert!(!m.info.private);
        assert_eq!(
            m.info.files,
            vec![FileEntry {
                path: vec!["test.txt".into()],
                length: 20000,
                padding: false,
                executable: false,
            }]
        );
        assert_eq!(m.info.piece_length, 16384);
        assert_eq!(m.num_pieces(), 2);
        assert_eq!(m.total_length(), 20000);
        assert_eq!(m.layout().piece_len(1), 20000 - 16384);
        assert_eq!(m.piece_hash(0), Some([b'A'; 20]));
        assert_eq!(m.piece_hash(1), Some([b'B'; 20]));
        assert_eq!(m.piece_hash(2), None);
        assert_eq!(m.trackers, vec![vec!["http://tracker.example/announce"]]);
        assert_eq!(m.comment, None);
        assert_eq!(m.created_by, None);
        assert_eq!(m.creation_date, None);
    }

    #[test]
    fn info_hash_is_sha1_of_the_exact_info_bytes() {
        let m = parse(&hand_torrent());
        assert_eq!(&m.info_bytes[..], HAND_INFO);
        assert_eq!(m.info_hash.to_string(), HAND_INFO_SHA1);
        assert_eq!(m.info_hash, InfoHash(Sha1::digest(HAND_INFO).into()));
    }

    #[test]
    fn info_hash_covers_keys_this_module_does_not_know() {
        // An unknown key inside `info` is part of the hash; one outside is not.
        let info = b"d6:lengthi20000e4:name8:test.txt12:piece lengthi16384e\
            6:pieces40:AAAAAAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBBBBB6:sourcel3:abcee";
        let a = parse(&[&b"d4:info"[..], info, b"e"].concat());
        let b = parse(&[&b"d4:info"[..], info, b"6:x-tool3:fooe"].concat());
        assert_eq!(&a.info_bytes[..], &info[..]);
        assert_eq!(a.info_hash, InfoHash(Sha1::digest(info).into()));
        assert_eq!(a.info_hash, b.info_hash);
        assert_ne!(a.info_hash.to_string(), HAND_INFO_SHA1);
    }

    #[test]
    fn multi_file_with_nested_directories_an_empty_file_and_spaces() {
        let files = vec![
            file(&["cd 1", "01 intro.flac"], 20000),
            file(&["cd 1", "empty.txt"], 0),
            file(&["cover.jpg"], 5000),
            file(&["cd 2", "deep", "er", "x.bin"], 100_000),
        ];
        let pieces = hashes(8); // ceil(125000 / 16384)
        let info = DictBuilder::new()
            .insert(b"files", Value::List(files))
            .insert(b"name", s("My Album (2024)"))
            .insert(b"piece length", Value::Int(16384))
            .insert(b"pieces", Value::Bytes(&pieces))
            .build();
        let m = parse(&torrent(info));
        assert!(m.info.multi_file);
        assert_eq!(
            paths(&m),
            [
                "My Album (2024)/cd 1/01 intro.flac",
                "My Album (2024)/cd 1/empty.txt",
                "My Album (2024)/cover.jpg",
                "My Album (2024)/cd 2/deep/er/x.bin",
            ]
        );
        assert_eq!(m.info.files[3].path.len(), 5);
        let lens: Vec<u64> = m.info.files.iter().map(|f| f.length).collect();
        assert_eq!(lens, [20000, 0, 5000, 100_000]);
        assert_eq!(m.total_length(), 125_000);
        assert_eq!(m.num_pieces(), 8);
        assert_eq!(m.layout().num_files(), 4);
        assert_eq!(m.layout().file_pieces(1), 0..0);
        assert_eq!(m.layout().file_pieces(2), 1..2);
        assert_eq!(m.piece_hash(7), Some([7; 20]));
    }

    #[test]
    fn announce_list_tiers() {
        let pieces = hashes(1);
        let with = |top: Vec<(&'static [u8], Value<'static>)>| {
            let mut d = DictBuilder::new().insert(
                b"info",
                info_with(&pieces, vec![(b"length", Value::Int(1))]),
            );
            for (k, v) in top {
                d = d.insert(k, v);
            }
            parse(&bencode::encode(&d.build())).trackers
        };
        let tiers = Value::List(vec![
            strs(&["udp://a.example:1", "http://b.example/announce"]),
            Value::List(vec![]),
            Value::List(vec![s("http://c.example/"), Value::Int(5), s("")]),
            Value::List(vec![Value::Int(1)]),
            s("not a tier"),
        ]);
        assert_eq!(
            with(vec![
                (b"announce", s("http://ignored.example/")),
                (b"announce-list", tiers)
            ]),
            vec![
                vec!["udp://a.example:1", "http://b.example/announce"],
                vec!["http://c.example/"],
            ]
        );
        // An announce-list with nothing usable falls back to `announce`.
        assert_eq!(
            with(vec![
                (b"announce", s("http://only.example/")),
                (b"announce-list", Value::List(vec![Value::List(vec![])])),
            ]),
            vec![vec!["http://only.example/"]]
        );
        assert_eq!(
            with(vec![(b"announce-list", s("garbage"))]),
            Vec::<Vec<String>>::new()
        );
        assert_eq!(with(vec![]), Vec::<Vec<String>>::new());
    }

    #[test]
    fn informational_fields_are_read_and_malformed_ones_ignored() {
        let pieces = hashes(1);
        let info = info_with(&pieces, vec![(b"length", Value::Int(10))]);
        let good = DictBuilder::new()
            .insert(b"comment", s("hello, world"))
            .insert(b"created by", s("tessera 0.1"))
            .insert(b"creation date", Value::Int(1_700_000_000))
            .insert(b"info", info.clone())
            .build();
        let m = parse(&bencode::encode(&good));
        assert_eq!(m.comment.as_deref(), Some("hello, world"));
        assert_eq!(m.created_by.as_deref(), Some("tessera 0.1"));
        assert_eq!(m.creation_date, Some(1_700_000_000));

        let odd = DictBuilder::new()
            .insert(b"comment", Value::Int(3))
            .insert(b"created by", Value::Bytes(b"caf\xe9"))
            .insert(b"creation date", s("yesterday"))
            .insert(b"info", info)
            .build();
        let m = parse(&bencode::encode(&odd));
        assert_eq!(m.comment, None);
        assert_eq!(m.created_by.as_deref(), Some("caf\u{fffd}"));
        assert_eq!(m.creation_date, None);
    }

    #[test]
    fn private_flag() {
        let pieces = hashes(1);
        let with_private = |p: Option<Value<'static>>| {
            let mut rest = vec![(&b"length"[..], Value::Int(100))];
            if let Some(p) = p {
                rest.push((b"private", p));
            }
            parse(&torrent(info_with(&pieces, rest))).info.private
        };
        assert!(with_private(Some(Value::Int(1))));
        assert!(!with_private(Some(Value::Int(0))));
        assert!(!with_private(None));
    }

    #[test]
    fn utf8_variants_are_preferred() {
        let pieces = hashes(1);
        let entry = DictBuilder::new()
            .insert(b"length", Value::Int(10))
            .insert(b"path", Value::List(vec![Value::Bytes(b"caf\xe9.txt")]))
            .insert(b"path.utf-8", strs(&["café.txt"]))
            .build();
        let info = DictBuilder::new()
            .insert(b"files", Value::List(vec![entry]))
            .insert(b"name", Value::Bytes(b"r\xe9sum\xe9"))
            .insert(b"name.utf-8", s("résumé"))
            .insert(b"piece length", Value::Int(16384))
            .insert(b"pieces", Value::Bytes(&pieces))
            .build();
        let m = parse(&torrent(info));
        assert_eq!(m.info.name, "résumé");
        assert_eq!(paths(&m), ["résumé/café.txt"]);

        // Without the UTF-8 variants the same torrent is rejected, not mangled.
        let info = info_with(
            &pieces,
            vec![(
                b"files",
                Value::List(vec![
                    DictBuilder::new()
                        .insert(b"length", Value::Int(10))
                        .insert(b"path", Value::List(vec![Value::Bytes(b"caf\xe9.txt")]))
                        .build(),
                ]),
            )],
        );
        assert!(matches!(
            err(&torrent(info)),
            MetainfoError::WrongType { field: "path", .. }
        ));
    }

    #[test]
    fn bep47_attributes() {
        let m = parse(&multi(vec![
            file_attr(&["run.sh"], 100, "x"),
            file_attr(&[".pad", "16284"], 16284, "p"),
            file_attr(&["data"], 100, "hq"),
        ]));
        let flags: Vec<(bool, bool)> = m
            .info
            .files
            .iter()
            .map(|f| (f.padding, f.executable))
            .collect();
        assert_eq!(flags, [(false, true), (true, false), (false, false)]);
        // Padding files are part of the byte stream.
        assert_eq!(m.total_length(), 16484);
        assert_eq!(m.layout().file_pieces(2), 1..2);

        let pieces = hashes(1);
        let info = info_with(
            &pieces,
            vec![(b"attr", s("xp")), (b"length", Value::Int(10))],
        );
        let f = &parse(&torrent(info)).info.files[0];
        assert!(f.executable);
        assert!(!f.padding, "a single file is never padding");

        // Symlinks may leave out their length.
        let link = DictBuilder::new()
            .insert(b"attr", s("l"))
            .insert(b"path", strs(&["link"]))
            .insert(b"symlink path", strs(&["data"]))
            .build();
        let m = parse(&multi(vec![link, file(&["data"], 5)]));
        assert_eq!(m.info.files[0].length, 0);
    }

    #[test]
    fn identical_padding_paths_are_allowed() {
        // libtorrent hybrid torrents: several `.pad/<size>` with the same size.
        let m = parse(&multi(vec![
            file(&["a"], 100),
            file_attr(&[".pad", "16284"], 16284, "p"),
            file(&["b"], 100),
            file_attr(&[".pad", "16284"], 16284, "p"),
            file(&["c"], 100),
        ]));
        assert_eq!(m.info.files.iter().filter(|f| f.padding).count(), 2);
        // Padding paths that nest are harmless too: padding is never written.
        parse(&multi(vec![
            file(&["a"], 100),
            file_attr(&[".pad"], 16284, "p"),
            file(&["b"], 100),
            file_attr(&[".pad", "x"], 16284, "p"),
            file(&["c"], 100),
        ]));
    }

    #[test]
    fn padding_paths_may_not_meet_real_files() {
        for files in [
            // The same path.
            vec![
                file(&["a"], 100),
                file_attr(&[".pad", "1"], 1, "p"),
                file(&[".pad", "1"], 100),
            ],
            vec![file(&[".pad", "1"], 100), file_attr(&[".pad", "1"], 1, "p")],
            // A real file where padding needs a directory, with padding in between.
            vec![
                file(&[".pad"], 100),
                file_attr(&[".pad", "1"], 1, "p"),
                file_attr(&[".pad", "1"], 1, "p"),
            ],
            // Padding where a real file needs a directory, with other padding in between.
            vec![
                file_attr(&["x"], 1, "p"),
                file_attr(&["x", "a"], 1, "p"),
                file(&["x", "b"], 100),
            ],
        ] {
            assert!(
                matches!(err(&multi(files)), MetainfoError::DuplicatePath(_)),
                "accepted"
            );
        }
    }

    #[test]
    fn large_single_file() {
        // 1 TiB in 256 MiB pieces.
        let length = 1i64 << 40;
        let pieces = hashes(4096);
        let info = |piece_length: i64| {
            DictBuilder::new()
                .insert(b"length", Value::Int(length))
                .insert(b"name", s("big.img"))
                .insert(b"piece length", Value::Int(piece_length))
                .insert(b"pieces", Value::Bytes(&pieces))
                .build()
        };
        let m = parse(&torrent(info(256 << 20)));
        assert_eq!(m.total_length(), 1 << 40);
        assert_eq!(m.num_pieces(), 4096);
        assert_eq!(m.layout().piece_len(4095), 256 << 20);
        // The same hashes are far too few for 16 KiB pieces.
        assert_eq!(
            err(&torrent(info(16384))),
            MetainfoError::PieceCount {
                got: 4096,
                expected: 1 << 26,
                total: 1 << 40,
                piece_length: 16384
            }
        );
    }

    #[test]
    fn encode_round_trip_and_tracker_keys() {
        let t = NewTorrent {
            name: "album".into(),
            files: vec![
                (vec!["a".into(), "1.flac".into()], 30000),
                (vec!["b.txt".into()], 0),
                (vec!["c".into()], 4000),
            ],
            length: 0,
            piece_length: 16384,
            pieces: vec![[1; 20], [2; 20], [3; 20]], // 34000 bytes
            private: true,
            trackers: vec![vec!["http://a/".into()], vec![], vec!["udp://b:1".into()]],
            comment: Some("c".into()),
            created_by: Some("tessera".into()),
            creation_date: Some(-5),
        };
        let bytes = t.encode();
        // Canonical: decoding and re-encoding changes nothing.
        assert_eq!(bencode::encode(&bencode::decode(&bytes).unwrap()), bytes);
        let top = bencode::decode(&bytes).unwrap();
        assert_eq!(
            top.get(b"announce").and_then(Value::as_str),
            Some("http://a/")
        );
        assert_eq!(
            top.get(b"announce-list"),
            Some(&Value::List(vec![
                strs(&["http://a/"]),
                strs(&["udp://b:1"])
            ]))
        );
        let m = parse(&bytes);
        assert_eq!(m.info.name, "album");
        assert_eq!(paths(&m), ["album/a/1.flac", "album/b.txt", "album/c"]);
        assert_eq!(m.info.pieces, t.pieces);
        assert!(m.info.private);
        assert!(m.info.multi_file);
        assert_eq!(m.trackers, vec![vec!["http://a/"], vec!["udp://b:1"]]);
        assert_eq!(m.comment.as_deref(), Some("c"));
        assert_eq!(m.created_by.as_deref(), Some("tessera"));
        assert_eq!(m.creation_date, Some(-5));

        // One tracker: `announce` only. Not private: no `private` key.
        let one = NewTorrent {
            files: vec![],
            length: 5,
            pieces: vec![[9; 20]],
            private: false,
            trackers: vec![vec!["http://a/".into()]],
            ..t
        };
        let bytes = one.encode();
        let top = bencode::decode(&bytes).unwrap();
        assert_eq!(top.get(b"announce-list"), None);
        assert_eq!(top.get(b"info").and_then(|i| i.get(b"private")), None);
        let m = parse(&bytes);
        assert_eq!(m.trackers, vec![vec!["http://a/"]]);
        assert_eq!(paths(&m), ["album"]);
        assert!(!m.info.multi_file);
    }

    // --- one rejection per rule --------------------------------------------------------

    fn assert_unsafe(bytes: &[u8]) {
        let e = err(bytes);
        assert!(
            matches!(e, MetainfoError::UnsafePath { .. }),
            "expected UnsafePath, got {e:?}"
        );
    }

    #[test]
    fn rejects_dot_dot_and_dot_components() {
        assert_unsafe(&multi(vec![file(&["..", "etc", "passwd"], 10)]));
        assert_unsafe(&multi(vec![file(&["a", "..", "..", "x"], 10)]));
        assert_unsafe(&multi(vec![file(&["."], 10)]));
        let pieces = hashes(1);
        for name in ["..", "."] {
            let info = DictBuilder::new()
                .insert(b"length", Value::Int(10))
                .insert(b"name", s(name))
                .insert(b"piece length", Value::Int(16384))
                .insert(b"pieces", Value::Bytes(&pieces))
                .build();
            assert_unsafe(&torrent(info));
        }
    }

    #[test]
    fn rejects_absolute_and_empty_components() {
        assert_unsafe(&multi(vec![file(&["/etc", "passwd"], 10)]));
        assert_unsafe(&multi(vec![file(&["a/../../b"], 10)]));
        // `["", "etc"]` is what splitting "/etc" on `/` gives.
        assert_unsafe(&multi(vec![file(&["", "etc"], 10)]));
        assert_unsafe(&multi(vec![file(&["a", ""], 10)]));
        // An empty path list.
        assert_unsafe(&multi(vec![file(&[], 10)]));
        let pieces = hashes(1);
        for name in ["", "/", "/etc"] {
            let info = DictBuilder::new()
                .insert(b"length", Value::Int(10))
                .insert(b"name", s(name))
                .insert(b"piece length", Value::Int(16384))
                .insert(b"pieces", Value::Bytes(&pieces))
                .build();
            assert_unsafe(&torrent(info));
        }
    }

    #[test]
    fn rejects_backslash() {
        assert_unsafe(&multi(vec![file(&["..\\..\\windows", "x"], 10)]));
        assert_unsafe(&multi(vec![file(&["\\\\server\\share"], 10)]));
    }

    #[test]
    fn rejects_windows_drive() {
        assert_unsafe(&multi(vec![file(&["C:", "x"], 10)]));
        assert_unsafe(&multi(vec![file(&["a", "c:evil.exe"], 10)]));
        let pieces = hashes(1);
        let info = DictBuilder::new()
            .insert(b"length", Value::Int(10))
            .insert(b"name", s("D:"))
            .insert(b"piece length", Value::Int(16384))
            .insert(b"pieces", Value::Bytes(&pieces))
            .build();
        assert_unsafe(&torrent(info));
        // A colon elsewhere is an ordinary character.
        let m = parse(&multi(vec![file(&["Part 1: the start"], 10)]));
        assert_eq!(paths(&m), ["dir/Part 1: the start"]);
    }

    #[test]
    fn rejects_nul() {
        assert_unsafe(&multi(vec![file(&["evil\0.txt"], 10)]));
    }

    #[test]
    fn rejects_duplicate_paths() {
        assert_eq!(
            err(&multi(vec![
                file(&["a", "b"], 10),
                file(&["c"], 10),
                file(&["a", "b"], 10),
            ])),
            MetainfoError::DuplicatePath("dir/a/b".into())
        );
        // Zero-length duplicates too: both would be created.
        assert!(matches!(
            err(&multi(vec![file(&["a"], 0), file(&["a"], 1)])),
            MetainfoError::DuplicatePath(_)
        ));
    }

    #[test]
    fn rejects_file_and_directory_collision() {
        for files in [
            vec![file(&["a"], 10), file(&["a", "b"], 10)],
            vec![file(&["a", "b", "c"], 10), file(&["a", "b"], 10)],
            vec![
                file(&["a", "b", "c"], 10),
                file(&["a", "bb"], 10),
                file(&["a", "b", "d"], 10),
                file(&["a"], 10),
            ],
        ] {
            assert!(matches!(
                err(&multi(files)),
                MetainfoError::DuplicatePath(_)
            ));
        }
        // Siblings sharing a directory, and names that are prefixes as strings only, are fine.
        parse(&multi(vec![
            file(&["a", "b"], 10),
            file(&["a", "c"], 10),
            file(&["ab"], 10),
            file(&["a b"], 10),
        ]));
    }

    #[test]
    fn rejects_bad_piece_lengths() {
        for bad in [0, -16384, 1, 20000, 8192, 16385, 512 << 20, 1 << 40] {
            let pieces = hashes(1);
            let info = DictBuilder::new()
                .insert(b"length", Value::Int(10))
                .insert(b"name", s("x"))
                .insert(b"piece length", Value::Int(bad))
                .insert(b"pieces", Value::Bytes(&pieces))
                .build();
            assert_eq!(err(&torrent(info)), MetainfoError::BadPieceLength(bad));
        }
        for good in [16384, 1 << 20, 256 << 20] {
            let pieces = hashes(1);
            let info = DictBuilder::new()
                .insert(b"length", Value::Int(10))
                .insert(b"name", s("x"))
                .insert(b"piece length", Value::Int(good))
                .insert(b"pieces", Value::Bytes(&pieces))
                .build();
            assert_eq!(parse(&torrent(info)).info.piece_length, good as u32);
        }
    }

    #[test]
    fn rejects_wrong_hash_count() {
        assert_eq!(
            err(&single(20000, 1)),
            MetainfoError::PieceCount {
                got: 1,
                expected: 2,
                total: 20000,
                piece_length: 16384
            }
        );
        assert!(matches!(
            err(&single(20000, 3)),
            MetainfoError::PieceCount { got: 3, .. }
        ));
        assert!(matches!(
            err(&multi_with(vec![file(&["a"], 16384), file(&["b"], 1)], 1)),
            MetainfoError::PieceCount { expected: 2, .. }
        ));
        // Exactly one piece's worth needs one hash, not two.
        assert_eq!(parse(&single(16384, 1)).num_pieces(), 1);
    }

    #[test]
    fn rejects_pieces_not_multiple_of_20() {
        let info = info_with(&[0; 39], vec![(b"length", Value::Int(20000))]);
        assert_eq!(
            err(&torrent(info)),
            MetainfoError::PiecesNotMultipleOf20(39)
        );
    }

    #[test]
    fn rejects_negative_length() {
        assert!(matches!(
            err(&single(-1, 0)),
            MetainfoError::Invalid {
                field: "length",
                ..
            }
        ));
        assert!(matches!(
            err(&multi_with(vec![file(&["a"], 20000), file(&["b"], -5)], 1)),
            MetainfoError::Invalid {
                field: "length",
                ..
            }
        ));
    }

    #[test]
    fn rejects_huge_lengths() {
        // Beyond 64 bits in the file itself.
        let info = b"d6:lengthi99999999999999999999e4:name1:x12:piece lengthi16384e6:pieces0:e";
        assert!(matches!(
            err(&[&b"d4:info"[..], info, b"e"].concat()),
            MetainfoError::Bencode(BencodeError::IntegerOverflow(_))
        ));
        // Each fits, the sum does not.
        assert!(matches!(
            err(&multi_with(
                vec![
                    file(&["a"], i64::MAX),
                    file(&["b"], i64::MAX),
                    file(&["c"], i64::MAX),
                ],
                1
            )),
            MetainfoError::Invalid {
                field: "length",
                ..
            }
        ));
        // Fits in 64 bits but needs more hashes than any file could hold.
        assert!(matches!(
            err(&single(i64::MAX, 1)),
            MetainfoError::PieceCount { .. }
        ));
    }

    #[test]
    fn rejects_a_torrent_without_data() {
        assert!(matches!(
            err(&single(0, 0)),
            MetainfoError::Invalid {
                field: "length",
                ..
            }
        ));
        assert!(matches!(
            err(&multi_with(vec![file(&["a"], 0), file(&["b"], 0)], 0)),
            MetainfoError::Invalid {
                field: "length",
                ..
            }
        ));
    }

    #[test]
    fn rejects_malformed_structure() {
        let pieces = hashes(1);
        let cases: Vec<(Vec<u8>, MetainfoError)> = vec![
            (
                torrent(info_with(&pieces, vec![])),
                MetainfoError::Missing("length` or `files"),
            ),
            (
                torrent(info_with(
                    &pieces,
                    vec![
                        (b"length", Value::Int(10)),
                        (b"files", Value::List(vec![file(&["a"], 10)])),
                    ],
                )),
                MetainfoError::Invalid {
                    field: "info",
                    reason: "has both `length` and `files`".into(),
                },
            ),
            (
                multi_with(vec![], 0),
                MetainfoError::Invalid {
                    field: "files",
                    reason: "the list is empty".into(),
                },
            ),
            (
                multi_with(vec![s("a")], 1),
                MetainfoError::WrongType {
                    field: "files",
                    expected: "a list of dictionaries",
                },
            ),
            (
                multi_with(
                    vec![DictBuilder::new().insert(b"length", Value::Int(1)).build()],
                    1,
                ),
                MetainfoError::Missing("path"),
            ),
            (
                multi_with(
                    vec![DictBuilder::new().insert(b"path", strs(&["a"])).build()],
                    1,
                ),
                MetainfoError::Missing("length"),
            ),
            (
                bencode::encode(
                    &DictBuilder::new()
                        .insert(b"announce", s("http://a/"))
                        .build(),
                ),
                MetainfoError::Missing("info"),
            ),
            (
                bencode::encode(&DictBuilder::new().insert(b"info", s("x")).build()),
                MetainfoError::WrongType {
                    field: "info",
                    expected: "a dictionary",
                },
            ),
            (
                torrent(
                    DictBuilder::new()
                        .insert(b"length", Value::Int(1))
                        .insert(b"piece length", Value::Int(16384))
                        .insert(b"pieces", Value::Bytes(&pieces))
                        .build(),
                ),
                MetainfoError::Missing("name"),
            ),
            (
                torrent(
                    DictBuilder::new()
                        .insert(b"length", Value::Int(1))
                        .insert(b"name", Value::Bytes(b"\xff"))
                        .insert(b"piece length", Value::Int(16384))
                        .insert(b"pieces", Value::Bytes(&pieces))
                        .build(),
                ),
                MetainfoError::WrongType {
                    field: "name",
                    expected: "a UTF-8 string",
                },
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(err(&bytes), expected, "{}", String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn rejects_non_dictionaries() {
        for bytes in [&b"li1ee"[..], b"i1e", b"4:spam", b"le"] {
            assert_eq!(err(bytes), MetainfoError::NotADictionary);
        }
        assert_eq!(err(b""), MetainfoError::Bencode(BencodeError::Empty));
        assert!(matches!(err(b"x"), MetainfoError::Bencode(_)));
        assert!(matches!(err(b"e"), MetainfoError::Bencode(_)));
    }

    #[test]
    fn rejects_truncated_files() {
        let full = hand_torrent();
        for len in 0..full.len() {
            assert!(
                Metainfo::from_bytes(&full[..len]).is_err(),
                "prefix of {len} bytes accepted"
            );
        }
        parse(&full);
    }

    #[test]
    fn rejects_trailing_bytes() {
        for tail in [&b"i0e"[..], b"e", b"de", b"x"] {
            let bytes = [hand_torrent(), tail.to_vec()].concat();
            assert!(matches!(err(&bytes), MetainfoError::Bencode(_)));
        }
    }

    #[test]
    fn rejects_unsorted_keys() {
        let bytes = [&b"d4:info"[..], HAND_INFO, b"8:announce1:xe"].concat();
        assert!(matches!(err(&bytes), MetainfoError::Bencode(_)));
    }

    #[test]
    fn rejects_deep_nesting() {
        let deep = |depth: usize| [vec![b'l'; depth], vec![b'e'; depth]].concat();
        // Under an unknown top-level key, which is skipped without being built.
        let bytes = [&b"d4:info"[..], HAND_INFO, b"1:z", &deep(100_000), b"e"].concat();
        assert!(matches!(err(&bytes), MetainfoError::Bencode(_)));
        // Inside `info`.
        let info = [
            &b"d6:lengthi20000e4:name8:test.txt12:piece lengthi16384e\
                6:pieces40:AAAAAAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBBBBB1:z"[..],
            &deep(MAX_DEPTH + 1),
            b"e",
        ]
        .concat();
        let bytes = [&b"d4:info"[..], &info, b"e"].concat();
        assert!(matches!(err(&bytes), MetainfoError::Bencode(_)));
        // Nesting that stays within the limit is fine.
        let bytes = [&b"d4:info"[..], HAND_INFO, b"1:z", &deep(8), b"e"].concat();
        parse(&bytes);
    }

    #[test]
    fn rejects_oversized_input() {
        let bytes = vec![b'd'; MAX_TORRENT_FILE + 1];
        assert_eq!(err(&bytes), MetainfoError::TooLarge(MAX_TORRENT_FILE + 1));
    }

    #[test]
    fn deep_paths_are_checked_quickly() {
        // 200 000 components in one path and a sibling: no quadratic work, no deep recursion.
        let deep: Vec<&str> = vec!["a"; 200_000];
        let mut other = deep.clone();
        other.push("b");
        let m = parse(&multi(vec![file(&deep, 10), file(&["x"], 10)]));
        assert_eq!(m.info.files[0].path.len(), 200_001);
        assert!(matches!(
            err(&multi(vec![file(&deep, 10), file(&other, 10)])),
            MetainfoError::DuplicatePath(_)
        ));
    }

    // --- properties --------------------------------------------------------------------

    /// Independent of `component_problem`: as a path of its own, each component must be
    /// exactly one normal component, itself; and none may mean anything special on Windows
    /// (which `std::path` on Unix does not know about).
    fn is_safe_path(components: &[String]) -> bool {
        use std::ffi::OsStr;
        use std::path::{Component, Path};
        components.iter().all(|c| {
            let mut parts = Path::new(c).components();
            let single = matches!(
                (parts.next(), parts.next()),
                (Some(Component::Normal(n)), None) if n == OsStr::new(c)
            );
            let drive = matches!(c.as_bytes(), [l, b':', ..] if l.is_ascii_alphabetic());
            single && !drive && !c.contains(['\\', '\0'])
        })
    }

    fn arb_component() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 _.é日-]{1,10}".prop_filter("not . or ..", |c| c != "." && c != "..")
    }

    fn arb_new_torrent() -> impl Strategy<Value = NewTorrent> {
        let files = prop::collection::vec(
            (
                prop::collection::vec(arb_component(), 1..4),
                prop_oneof![Just(0u64), 1u64..100_000, 1u64..10_000_000],
            ),
            0..6,
        );
        let trackers = prop::collection::vec(
            prop::collection::vec("(http|udp)://[a-z]{1,8}\\.example(:[0-9]{1,5})?/a", 1..3),
            0..3,
        );
        (
            arb_component(),
            files,
            1u64..20_000_000,
            14u32..=24,
            any::<bool>(),
            trackers,
            prop::option::of(".{0,20}"),
            prop::option::of(".{0,20}"),
            prop::option::of(any::<i64>()),
            any::<u64>(),
        )
            .prop_map(
                |(
                    name,
                    files,
                    length,
                    shift,
                    private,
                    trackers,
                    comment,
                    created_by,
                    creation_date,
                    seed,
                )| {
                    // Drop files whose path clashes with an earlier one.
                    let mut kept: Vec<(Vec<String>, u64)> = Vec::new();
                    for (path, len) in files {
                        if !kept
                            .iter()
                            .any(|(k, _)| k.starts_with(&path) || path.starts_with(k))
                        {
                            kept.push((path, len));
                        }
                    }
                    if let Some(first) = kept.first_mut() {
                        first.1 += 1; // never a torrent without data
                    }
                    let total = if kept.is_empty() {
                        length
                    } else {
                        kept.iter().map(|f| f.1).sum()
                    };
                    let piece_length = 1u32 << shift;
                    let n = total.div_ceil(u64::from(piece_length));
                    let pieces = (0..n)
                        .map(|i| {
                            let mut h = [0u8; 20];
                            h[..8].copy_from_slice(&(seed ^ i).to_le_bytes());
                            h[12..].copy_from_slice(&i.to_be_bytes());
                            h
                        })
                        .collect();
                    NewTorrent {
                        name,
                        files: kept,
                        length,
                        piece_length,
                        pieces,
                        private,
                        trackers,
                        comment,
                        created_by,
                        creation_date,
                    }
                },
            )
    }

    /// Paths from a small alphabet, so that clashes are common, with a few hostile
    /// components (and empty paths) mixed in.
    fn arb_clashing_path() -> impl Strategy<Value = Vec<&'static str>> {
        let safe = prop::sample::select(vec!["a", "b", ".pad", "16"]);
        let hostile = prop::sample::select(vec![
            "..", ".", "", "x/y", "/", "x\\y", "C:", "nul\0", "a:b",
        ]);
        let component = prop_oneof![30 => safe, 1 => hostile];
        prop_oneof![
            1 => Just(Vec::new()),
            30 => prop::collection::vec(component, 1..4),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..512),
            dict in any::<bool>(),
        ) {
            let bytes = if dict { [&b"d4:infod"[..], &bytes].concat() } else { bytes };
            let _ = Metainfo::from_bytes(&bytes);
        }

        #[test]
        fn new_torrents_round_trip(t in arb_new_torrent()) {
            let bytes = t.encode();
            let m = Metainfo::from_bytes(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&m.info.name, &t.name);
            prop_assert_eq!(m.info.piece_length, t.piece_length);
            prop_assert_eq!(&m.info.pieces, &t.pieces);
            prop_assert_eq!(m.info.private, t.private);
            prop_assert_eq!(m.info.multi_file, !t.files.is_empty());
            let expected: Vec<FileEntry> = if t.files.is_empty() {
                vec![FileEntry { path: vec![t.name.clone()], length: t.length, padding: false, executable: false }]
            } else {
                t.files.iter().map(|(path, length)| FileEntry {
                    path: std::iter::once(t.name.clone()).chain(path.iter().cloned()).collect(),
                    length: *length,
                    padding: false,
                    executable: false,
                }).collect()
            };
            prop_assert_eq!(&m.info.files, &expected);
            prop_assert_eq!(m.total_length(), expected.iter().map(|f| f.length).sum::<u64>());
            prop_assert_eq!(&m.trackers, &t.trackers);
            prop_assert_eq!(&m.comment, &t.comment);
            prop_assert_eq!(&m.created_by, &t.created_by);
            prop_assert_eq!(m.creation_date, t.creation_date);
            prop_assert_eq!(m.info_hash, InfoHash(Sha1::digest(&m.info_bytes).into()));
            prop_assert_eq!(bencode::encode(&bencode::decode(&bytes).unwrap()), bytes);
        }

        #[test]
        fn mutated_torrents_never_panic(
            t in arb_new_torrent(),
            pos in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut bytes = t.encode();
            let i = pos.index(bytes.len());
            bytes[i] = byte;
            if let Ok(m) = Metainfo::from_bytes(&bytes) {
                for f in &m.info.files {
                    prop_assert!(is_safe_path(&f.path), "unsafe path accepted: {:?}", f.path);
                }
            }
        }

        /// Against a naive oracle: unsafe components are always rejected; otherwise two files
        /// clash when one's path is the other's or a directory of it, unless both are padding.
        #[test]
        fn paths_are_judged_like_the_naive_oracle(
            files in prop::collection::vec(
                (arb_clashing_path(), any::<bool>(), 0i64..40_000),
                1..7,
            ),
        ) {
            let values: Vec<Value<'_>> = files
                .iter()
                .map(|(path, padding, len)| {
                    if *padding { file_attr(path, *len, "p") } else { file(path, *len) }
                })
                .collect();
            let result = Metainfo::from_bytes(&multi(values));

            let unsafe_path = files.iter().any(|(path, _, _)| {
                let full: Vec<String> = std::iter::once("dir").chain(path.iter().copied()).map(String::from).collect();
                path.is_empty() || !is_safe_path(&full)
            });
            let mut clash = false;
            for (i, (p, pad_p, _)) in files.iter().enumerate() {
                for (j, (q, pad_q, _)) in files.iter().enumerate() {
                    if i != j && q.starts_with(p) && !(*pad_p && *pad_q) {
                        clash = true;
                    }
                }
            }
            let no_data = files.iter().all(|f| f.2 == 0);

            if unsafe_path {
                prop_assert!(matches!(result, Err(MetainfoError::UnsafePath { .. })), "{:?}", result);
            } else if clash {
                prop_assert!(matches!(result, Err(MetainfoError::DuplicatePath(_))), "{:?}", result);
            } else if no_data {
                prop_assert!(matches!(result, Err(MetainfoError::Invalid { field: "length", .. })), "{:?}", result);
            } else {
                let m = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(m.info.files.len(), files.len());
                for (f, (_, padding, _)) in m.info.files.iter().zip(&files) {
                    prop_assert_eq!(f.padding, *padding);
                    prop_assert!(is_safe_path(&f.path));
                }
            }
        }
    }
}
