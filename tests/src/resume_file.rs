//! Tessera's resume files, read by the harness's own code (the format is documented in
//! `client/src/resume.rs`), and checks of pieces on disk against a torrent's hashes.
//!
//! ```text
//! "TSRESUME", u32 version, [20] info hash, u32 pieces, u32 files,
//! 21 bytes per file and for the part file, u32 bitfield length, bitfield, [20] SHA-1
//! ```

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::torrent::{InfoHash, Torrent, sha1};

/// Where `download -o <out>` keeps the resume file of `info_hash`.
pub fn path(out: &Path, info_hash: InfoHash) -> PathBuf {
    out.join(".tessera")
        .join(format!("{}.resume", info_hash.hex()))
}

/// What the harness reads from a resume file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub info_hash: InfoHash,
    /// Per piece: listed as verified.
    pub verified: Vec<bool>,
}

impl Resume {
    /// Parses the resume file at `path`; `Err` says why it is not one.
    pub fn load(path: &Path) -> Result<Resume, String> {
        let raw = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::parse(&raw)
    }

    fn parse(raw: &[u8]) -> Result<Resume, String> {
        if raw.len() < 8 + 4 + 20 + 8 + 20 || &raw[..8] != b"TSRESUME" {
            return Err("not a resume file".into());
        }
        let (body, sum) = raw.split_at(raw.len() - 20);
        if sha1(body) != sum {
            return Err("checksum mismatch".into());
        }
        let u32_at = |at: usize| -> Result<u32, String> {
            body.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| "truncated".to_string())
        };
        if u32_at(8)? != 1 {
            return Err(format!("version {}", u32_at(8)?));
        }
        let mut hash = [0u8; 20];
        hash.copy_from_slice(&body[12..32]);
        let pieces = u32_at(32)? as usize;
        let files = u32_at(36)? as usize;
        let bits_at = 40 + (files + 1) * 21;
        let nbits = u32_at(bits_at)? as usize;
        let bits = body
            .get(bits_at + 4..bits_at + 4 + nbits)
            .ok_or("truncated bitfield")?;
        if nbits != pieces.div_ceil(8) || bits_at + 4 + nbits != body.len() {
            return Err("bad bitfield length".into());
        }
        let verified = (0..pieces)
            .map(|i| bits[i / 8] & (0x80 >> (i % 8)) != 0)
            .collect();
        Ok(Resume {
            info_hash: InfoHash(hash),
            verified,
        })
    }

    pub fn count(&self) -> usize {
        self.verified.iter().filter(|&&v| v).count()
    }
}

/// The pieces among `pieces` whose bytes under `data_dir` (holding `<name>/...`) do not
/// match the torrent's hashes. Files that are missing or short make their pieces bad.
/// Files whose path starts with a `.pad` component (BEP 47 padding) read as zeros.
pub fn bad_pieces(
    torrent: &Torrent,
    data_dir: &Path,
    pieces: impl Iterator<Item = u32>,
) -> Vec<u32> {
    let mut bad = Vec::new();
    for p in pieces {
        let start = u64::from(p) * torrent.piece_length;
        let len = torrent.piece_len(p);
        let mut buf = vec![0u8; len as usize];
        let mut ok = true;
        for f in &torrent.files {
            let (from, to) = (f.offset.max(start), (f.offset + f.length).min(start + len));
            if from >= to {
                continue;
            }
            if is_padding(&f.path) {
                continue;
            }
            let dst = &mut buf[(from - start) as usize..(to - start) as usize];
            let read = File::open(data_dir.join(&f.path))
                .and_then(|file| file.read_exact_at(dst, from - f.offset));
            if read.is_err() {
                ok = false;
                break;
            }
        }
        if !ok || sha1(&buf) != torrent.pieces[p as usize] {
            bad.push(p);
        }
    }
    bad
}

/// A BEP 47 padding file as libtorrent names them: `<name>/.pad/<n>`.
pub fn is_padding(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == ".pad")
}
