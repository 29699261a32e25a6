//! Hand-built torrents for tests (metainfo parsing lives in the core).

use std::sync::Arc;

use bytes::Bytes;
use sha1::{Digest, Sha1};
use tessera_core::metainfo::{FileEntry, Info, Metainfo};
use tessera_core::{InfoHash, Layout};

/// A torrent and the bytes it describes (padding as zeros).
pub struct TestTorrent {
    pub meta: Arc<Metainfo>,
    pub data: Vec<u8>,
}

impl TestTorrent {
    /// The bytes of piece `p`.
    pub fn piece(&self, p: u32) -> &[u8] {
        let l = self.meta.layout();
        let start = l.piece_offset(p) as usize;
        &self.data[start..start + l.piece_len(p) as usize]
    }

    /// The bytes of file `f`.
    pub fn file(&self, f: usize) -> &[u8] {
        let start: u64 = self.meta.info.files[..f].iter().map(|e| e.length).sum();
        let start = start as usize;
        &self.data[start..start + self.meta.info.files[f].length as usize]
    }
}

/// Deterministic, non-repeating-looking bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

/// A torrent named `name`. `files` are `(path below name, length, padding)`; a single
/// entry with an empty path makes a single-file torrent.
pub fn torrent(name: &str, files: &[(&str, u64, bool)], piece_len: u32) -> TestTorrent {
    let multi_file = !(files.len() == 1 && files[0].0.is_empty());
    let mut data = Vec::new();
    let mut entries = Vec::new();
    for (i, &(path, len, padding)) in files.iter().enumerate() {
        if padding {
            data.extend(std::iter::repeat_n(0u8, len as usize));
        } else {
            data.extend(pattern(len as usize, i as u64 + 1));
        }
        let mut components = vec![name.to_string()];
        if multi_file {
            components.extend(path.split('/').map(str::to_string));
        }
        entries.push(FileEntry {
            path: components,
            length: len,
            padding,
            executable: false,
        });
    }
    let layout = Layout::new(piece_len, files.iter().map(|f| f.1)).expect("layout");
    let pieces = data.chunks(piece_len as usize).map(sha1).collect();
    let meta = Metainfo {
        info_hash: InfoHash([7; 20]),
        info: Info {
            name: name.to_string(),
            piece_length: piece_len,
            pieces,
            files: entries,
            private: false,
            multi_file,
            layout,
        },
        info_bytes: Bytes::new(),
        trackers: vec![],
        comment: None,
        created_by: None,
        creation_date: None,
    };
    TestTorrent {
        meta: Arc::new(meta),
        data,
    }
}
