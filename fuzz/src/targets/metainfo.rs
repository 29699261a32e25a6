//! `.torrent` parsing (`Metainfo::from_bytes`): never panics, and an accepted torrent is one
//! the disk layer can trust: every path component is safe to join onto the download
//! directory, the hash count matches the data, and the info hash is the SHA-1 of the info
//! dictionary's bytes.

use sha1::{Digest, Sha1};
use tessera_core::Metainfo;

/// The component rules `from_bytes` promises (see `metainfo::component_problem`).
fn assert_safe_component(c: &str) {
    assert!(!c.is_empty(), "empty path component");
    assert!(c != "." && c != "..", "path component {c:?} climbs");
    assert!(
        !c.contains(['/', '\\']),
        "separator in path component {c:?}"
    );
    assert!(!c.contains('\0'), "NUL in path component {c:?}");
    let b = c.as_bytes();
    assert!(
        !(b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'),
        "Windows drive in path component {c:?}"
    );
}

/// The target's body: one input.
pub fn run(data: &[u8]) {
    let Ok(meta) = Metainfo::from_bytes(data) else {
        return;
    };
    let info = &meta.info;
    assert_safe_component(&info.name);
    assert!(!info.files.is_empty(), "a torrent without files");
    for file in &info.files {
        assert!(!file.path.is_empty(), "empty path");
        assert_eq!(
            file.path[0], info.name,
            "path outside the torrent's directory"
        );
        if !info.multi_file {
            assert_eq!(file.path.len(), 1);
        } else {
            assert!(
                file.path.len() >= 2,
                "a file of a multi-file torrent is its directory"
            );
        }
        for c in &file.path {
            assert_safe_component(c);
        }
    }
    let total: u64 = info.files.iter().map(|f| f.length).sum();
    assert!(total > 0);
    assert_eq!(meta.total_length(), total);
    assert_eq!(meta.layout().num_files(), info.files.len());
    let n = meta.num_pieces();
    assert_eq!(
        n as usize,
        info.pieces.len(),
        "hash count does not match the data"
    );
    assert_eq!(
        u64::from(n),
        total.div_ceil(u64::from(info.piece_length)),
        "piece count does not match the data"
    );
    assert_eq!(
        meta.info_hash.0,
        <[u8; 20]>::from(Sha1::digest(&meta.info_bytes)),
        "info hash is not the hash of the info bytes"
    );
    // The layout answers for the first and last pieces without panicking, and their spans
    // cover exactly the piece.
    for piece in [0, n / 2, n - 1] {
        let len = meta.layout().piece_len(piece);
        assert!(len > 0 && len <= info.piece_length);
        let spans = meta.layout().spans(piece, 0, len);
        let covered: u64 = spans.iter().map(|s| s.len).sum();
        assert_eq!(
            covered,
            u64::from(len),
            "spans of piece {piece} do not cover it"
        );
        for s in &spans {
            assert!(s.file < info.files.len());
            assert!(
                s.offset
                    .checked_add(s.len)
                    .is_some_and(|end| end <= info.files[s.file].length)
            );
        }
    }
}
