//! Torrent files for the tests: made with `mktorrent`, read back with the harness's own bencode
//! parser (info hash = SHA-1 of the raw info dict), and crafted by hand for hostile cases.
//!
//! Why mktorrent: it writes plain v1 torrents and keeps zero-length files in the file list (so
//! does libtorrent's `create_torrent` with the `v1_only` flag, but by default libtorrent writes
//! hybrid v1+v2 torrents with `.pad` files, which is not what most of these tests want).
//! Its smallest piece is 32 KiB (`-l 15`).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha1::{Digest, Sha1};

use crate::bencode::{self, Value};
use crate::process;

/// A v1 info hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// 40 lowercase hex digits.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Percent-encoded for a tracker URL query.
    pub fn url_encoded(&self) -> String {
        self.0.iter().map(|b| format!("%{b:02X}")).collect()
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.hex())
    }
}

/// SHA-1 of `data`.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let digest = Sha1::digest(data);
    let mut out = [0u8; 20];
    out.copy_from_slice(&digest);
    out
}

/// One file of a torrent, in torrent order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentFile {
    /// Path relative to the download directory, including the torrent's name for multi-file
    /// torrents (`<name>/<path...>`), as every client lays it out.
    pub path: PathBuf,
    pub length: u64,
    /// Offset of the file's first byte in the torrent's byte stream.
    pub offset: u64,
}

/// What the harness needs to know about a (v1) torrent.
#[derive(Debug, Clone)]
pub struct Torrent {
    pub path: PathBuf,
    pub info_hash: InfoHash,
    pub name: String,
    pub piece_length: u64,
    pub pieces: Vec<[u8; 20]>,
    pub files: Vec<TorrentFile>,
    pub total_length: u64,
}

impl Torrent {
    /// Reads and parses a torrent file; panics with a reason if it is not a valid v1 torrent.
    pub fn load(path: &Path) -> Torrent {
        let raw = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        Self::parse(path, &raw).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
    }

    fn parse(path: &Path, raw: &[u8]) -> Result<Torrent, String> {
        let root = bencode::decode(raw).map_err(|e| format!("{e:?}"))?;
        let span = bencode::top_level_span(raw, "info")
            .map_err(|e| format!("{e:?}"))?
            .ok_or("no info dict")?;
        let info_hash = InfoHash(sha1(&raw[span]));
        let info = root.get("info").ok_or("no info dict")?;
        let name = info
            .get("name")
            .and_then(Value::as_bytes)
            .ok_or("no name")?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| "name is not UTF-8")?;
        let piece_length = info
            .get("piece length")
            .and_then(Value::as_int)
            .and_then(|n| u64::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or("bad piece length")?;
        let pieces_raw = info
            .get("pieces")
            .and_then(Value::as_bytes)
            .ok_or("no pieces")?;
        if pieces_raw.len() % 20 != 0 {
            return Err("pieces is not a multiple of 20 bytes".into());
        }
        let pieces = pieces_raw
            .chunks_exact(20)
            .map(|c| {
                let mut h = [0u8; 20];
                h.copy_from_slice(c);
                h
            })
            .collect::<Vec<_>>();

        let mut files = Vec::new();
        let mut offset = 0u64;
        if let Some(list) = info.get("files") {
            for f in list.as_list().ok_or("files is not a list")? {
                let length = f
                    .get("length")
                    .and_then(Value::as_int)
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or("bad file length")?;
                let mut p = PathBuf::from(&name);
                for part in f
                    .get("path")
                    .and_then(Value::as_list)
                    .ok_or("bad file path")?
                {
                    let part = part.as_bytes().ok_or("bad path component")?;
                    p.push(String::from_utf8(part.to_vec()).map_err(|_| "path is not UTF-8")?);
                }
                files.push(TorrentFile {
                    path: p,
                    length,
                    offset,
                });
                offset += length;
            }
        } else {
            let length = info
                .get("length")
                .and_then(Value::as_int)
                .and_then(|n| u64::try_from(n).ok())
                .ok_or("no length")?;
            files.push(TorrentFile {
                path: PathBuf::from(&name),
                length,
                offset: 0,
            });
            offset = length;
        }
        let expected_pieces = offset.div_ceil(piece_length);
        if pieces.len() as u64 != expected_pieces {
            return Err(format!(
                "{} piece hashes for {offset} bytes in pieces of {piece_length}",
                pieces.len()
            ));
        }
        Ok(Torrent {
            path: path.to_owned(),
            info_hash,
            name,
            piece_length,
            pieces,
            files,
            total_length: offset,
        })
    }

    pub fn num_pieces(&self) -> u32 {
        u32::try_from(self.pieces.len()).expect("piece count fits u32")
    }

    /// Length of piece `index` (the last one may be short).
    pub fn piece_len(&self, index: u32) -> u64 {
        let start = u64::from(index) * self.piece_length;
        self.piece_length.min(self.total_length - start)
    }

    /// How many pieces hold bytes of two or more files (boundary-crossing pieces).
    pub fn pieces_spanning_files(&self) -> usize {
        (0..self.num_pieces())
            .filter(|&i| {
                let start = u64::from(i) * self.piece_length;
                let end = start + self.piece_len(i);
                self.files
                    .iter()
                    .filter(|f| f.length > 0 && f.offset < end && f.offset + f.length > start)
                    .count()
                    > 1
            })
            .count()
    }
}

/// Makes a v1 torrent of `source` (a file or a directory) with mktorrent: pieces of
/// `2^piece_log2` bytes, one announce URL, no creation date. The torrent's name is the
/// source's file name.
pub fn mktorrent(source: &Path, piece_log2: u32, announce: &str, out: &Path, log_dir: &Path) {
    assert!(
        (15..=28).contains(&piece_log2),
        "mktorrent takes piece sizes 2^15 to 2^28"
    );
    let _ = fs::remove_file(out); // mktorrent refuses to overwrite
    let mut cmd = Command::new("mktorrent");
    cmd.arg("-l")
        .arg(piece_log2.to_string())
        .arg("-a")
        .arg(announce)
        .arg("-d")
        .arg("-o")
        .arg(out)
        .arg(source);
    process::run("mktorrent", cmd, log_dir, Duration::from_secs(120));
}

/// Writes a torrent built from `info` (and an optional announce URL) to `out` and returns its
/// info hash. For hand-crafted, possibly hostile torrents.
pub fn write_raw_torrent(out: &Path, announce: Option<&str>, info: Value) -> InfoHash {
    let hash = InfoHash(sha1(&info.encode()));
    let mut top = vec![("info", info)];
    if let Some(a) = announce {
        top.push(("announce", bencode::bytes(a)));
    }
    fs::write(out, bencode::dict(top).encode())
        .unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    hash
}
