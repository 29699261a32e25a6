//! Torrents made by libtorrent (`scripts/lt_create.py`): the only common tool here that
//! writes BEP 47 padding files.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::libtorrent::PYTHON;
use crate::process;

/// How to lay the files out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padded {
    /// libtorrent's default: hybrid v1+v2, padding files in the v1 part.
    Hybrid,
    /// v1 only, with the same padding.
    V1,
}

/// Makes a torrent of `source` (a directory; the torrent's name is its file name) with
/// pieces of `piece_size` bytes and padding files after every file not ending on a piece
/// boundary.
pub fn padded_torrent(
    source: &Path,
    piece_size: u32,
    tracker: Option<&str>,
    how: Padded,
    out: &Path,
    log_dir: &Path,
) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lt_create.py");
    let mut cmd = Command::new(PYTHON);
    cmd.arg(script)
        .arg("--source")
        .arg(source)
        .arg("--piece-size")
        .arg(piece_size.to_string())
        .arg("--out")
        .arg(out);
    if let Some(t) = tracker {
        cmd.arg("--tracker").arg(t);
    }
    if how == Padded::V1 {
        cmd.arg("--v1-padded");
    }
    process::run("lt-create", cmd, log_dir, Duration::from_secs(120));
}
