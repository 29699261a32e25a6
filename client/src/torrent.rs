//! What names a torrent on the command line ([`TorrentRef`]) and reading `.torrent` files.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera_core::Metainfo;
use tessera_core::magnet::MagnetLink;
use tessera_core::metainfo::MAX_TORRENT_FILE;

use crate::error::Error;
use crate::ui::human_size;

/// A torrent as the user named it: a `.torrent` file, or a magnet link (which names the
/// torrent by its info hash; its metadata has to come from peers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentRef {
    /// The path of a `.torrent` file.
    File(PathBuf),
    /// A `magnet:?xt=...` link, as given.
    Magnet(String),
}

impl TorrentRef {
    /// What a command-line argument names: a magnet link if it starts with `magnet:`,
    /// else a file.
    pub fn parse(arg: &str) -> TorrentRef {
        if arg
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("magnet:"))
        {
            TorrentRef::Magnet(arg.to_string())
        } else {
            TorrentRef::File(PathBuf::from(arg))
        }
    }

    /// The torrent's metainfo, when it can be had without the network: read from the
    /// file. A magnet link's metainfo comes from peers (see `download`).
    pub fn load(&self) -> Result<Arc<Metainfo>, Error> {
        match self {
            TorrentRef::File(path) => load(path),
            TorrentRef::Magnet(_) => Err(Error::other(
                "a magnet link is not a .torrent file: `download` and `info` take magnet \
                 links, this needs the .torrent (`download --save-torrent FILE` writes one)",
            )),
        }
    }

    /// The magnet link, parsed; `None` for a file.
    pub fn magnet(&self) -> Result<Option<MagnetLink>, Error> {
        match self {
            TorrentRef::File(_) => Ok(None),
            TorrentRef::Magnet(link) => link
                .parse::<MagnetLink>()
                .map(Some)
                .map_err(|e| Error::other(format!("bad magnet link: {e}"))),
        }
    }
}

impl fmt::Display for TorrentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TorrentRef::File(path) => write!(f, "{}", path.display()),
            TorrentRef::Magnet(link) => f.write_str(link),
        }
    }
}

impl From<&str> for TorrentRef {
    fn from(s: &str) -> TorrentRef {
        TorrentRef::parse(s)
    }
}

/// Reads and parses a `.torrent` file, refusing files over the core's size limit without
/// reading them whole, and anything that is not a bencoded dictionary with a plain "not a
/// torrent file".
pub fn load(path: &Path) -> Result<Arc<Metainfo>, Error> {
    if path.to_str().is_some_and(|s| s.starts_with("magnet:")) {
        return Err(Error::other(
            "a magnet link is not a .torrent file: `download` and `info` take magnet links, this needs the .torrent (`download --save-torrent FILE` writes one)",
        ));
    }
    let file = File::open(path).map_err(|e| Error::at("opening", path, e))?;
    let size = file.metadata().ok().map(|m| m.len());
    if size.is_some_and(|n| n > MAX_TORRENT_FILE as u64) || path.is_dir() {
        return Err(not_a_torrent(path, size));
    }
    let mut bytes = Vec::new();
    file.take(MAX_TORRENT_FILE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::at("reading", path, e))?;
    if bytes.len() > MAX_TORRENT_FILE {
        // Grew while it was read.
        return Err(not_a_torrent(path, None));
    }
    // A torrent file is a bencoded dictionary: anything else (text, an image, a web page
    // saved instead of the torrent) is named as what it is not, with its first bytes.
    if bytes.first() != Some(&b'd') {
        let start = String::from_utf8_lossy(&bytes[..bytes.len().min(16)]).into_owned();
        let what = if bytes.is_empty() {
            "it is empty".to_string()
        } else {
            format!("it starts with \"{}\"", crate::output::printable(&start))
        };
        return Err(Error::other(format!(
            "{} is not a torrent file ({what})",
            path.display()
        )));
    }
    Metainfo::from_bytes(&bytes)
        .map(Arc::new)
        .map_err(|source| Error::Torrent {
            path: path.to_path_buf(),
            source,
        })
}

/// The error for a file too large to be a torrent (`size`, when known).
fn not_a_torrent(path: &Path, size: Option<u64>) -> Error {
    let what = match size {
        _ if path.is_dir() => "a directory".to_string(),
        Some(n) => human_size(n),
        None => "still growing".to_string(),
    };
    Error::other(format!(
        "{} is not a torrent file ({what}, over the {} limit of torrent files)",
        path.display(),
        human_size(MAX_TORRENT_FILE as u64)
    ))
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
        let magnet = TorrentRef::parse("magnet:?xt=urn:btih:abc");
        assert!(matches!(magnet, TorrentRef::Magnet(_)));
        let err = magnet.load().unwrap_err();
        assert!(err.to_string().contains("magnet"), "{err}");
        assert_eq!(
            TorrentRef::parse("MAGNET:?xt=x"),
            TorrentRef::Magnet("MAGNET:?xt=x".into())
        );
        assert_eq!(
            TorrentRef::parse("magnet.torrent"),
            TorrentRef::File("magnet.torrent".into())
        );
    }

    #[test]
    fn oversized_files_are_refused_before_reading_with_their_real_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.iso");
        let f = File::create(&path).unwrap();
        f.set_len(40 << 20).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "big.iso is not a torrent file (40.0 MiB, over the 32.0 MiB limit of torrent files)"
            ),
            "{err}"
        );
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not a torrent file (a directory"), "{err}");
    }

    #[test]
    fn other_files_are_not_torrent_files() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes, tail) in [
            (
                "page.html",
                &b"<!DOCTYPE html><html>hello</html>"[..],
                "(it starts with \"<!DOCTYPE html><\")",
            ),
            ("empty.torrent", b"", "(it is empty)"),
            ("list.torrent", b"le\n", "(it starts with \"le\\n\")"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let err = load(&path).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{name} is not a torrent file")) && err.ends_with(tail),
                "{err}"
            );
        }
    }
}
