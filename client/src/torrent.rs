//! Reading `.torrent` files.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use tessera_core::Metainfo;
use tessera_core::metainfo::{MAX_TORRENT_FILE, MetainfoError};

use crate::error::Error;

/// Reads and parses a `.torrent` file, refusing files over the core's size limit without
/// reading them whole.
pub fn load(path: &Path) -> Result<Arc<Metainfo>, Error> {
    if path.to_str().is_some_and(|s| s.starts_with("magnet:")) {
        return Err(Error::other(
            "a magnet link is not a .torrent file: `download` and `info` take magnet links, this needs the .torrent (`download --save-torrent FILE` writes one)",
        ));
    }
    let file = File::open(path).map_err(|e| Error::at("opening", path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_TORRENT_FILE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::at("reading", path, e))?;
    if bytes.len() > MAX_TORRENT_FILE {
        return Err(Error::Torrent {
            path: path.to_path_buf(),
            source: MetainfoError::TooLarge(bytes.len()),
        });
    }
    Metainfo::from_bytes(&bytes)
        .map(Arc::new)
        .map_err(|source| Error::Torrent {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_and_magnets_are_clear_errors() {
        let err = load(Path::new("/nonexistent/x.torrent")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("opening /nonexistent/x.torrent: "),
            "{err}"
        );
        let err = load(Path::new("magnet:?xt=urn:btih:abc")).unwrap_err();
        assert!(err.to_string().contains("magnet"), "{err}");
    }

    #[test]
    fn oversized_files_are_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.torrent");
        let f = File::create(&path).unwrap();
        f.set_len(MAX_TORRENT_FILE as u64 + 10).unwrap();
        let err = load(&path).unwrap_err();
        assert!(
            matches!(err, Error::Torrent { source: MetainfoError::TooLarge(n), .. } if n == MAX_TORRENT_FILE + 1),
            "{err}"
        );
    }
}
