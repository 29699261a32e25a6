//! Magnet links on the command line: `info MAGNET` (what the link says, no network), and
//! what `download MAGNET` needs around the core's metadata exchange: the `.torrent` kept
//! in `DIR/.tessera/<info hash>.torrent` once the metadata is in (so that the same command
//! later starts at once), the link's `x.pe` peers as addresses, and its `so=` selection as
//! `--only` patterns.

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera_core::magnet::MagnetLink;
use tessera_core::{Metainfo, Target};

use crate::error::Error;
use crate::output::printable;
use crate::storage::DIR_NAME;

/// The link in `arg`, if it is one (`Err` when it starts like a magnet link but is not a
/// usable one).
pub fn parse_arg(arg: &Path) -> Result<Option<MagnetLink>, Error> {
    let Some(text) = arg.to_str().filter(|s| s.starts_with("magnet:")) else {
        return Ok(None);
    };
    text.parse::<MagnetLink>()
        .map(Some)
        .map_err(|e| Error::other(format!("bad magnet link: {e}")))
}

/// Where `download` keeps the metadata of the link's torrent.
pub fn saved_path(dir: &Path, link: &MagnetLink) -> PathBuf {
    dir.join(DIR_NAME)
        .join(format!("{}.torrent", link.info_hash))
}

/// The metadata saved by an earlier run, if there is one for this link. A file that does
/// not parse or names another torrent is ignored (the metadata is fetched again).
pub fn load_saved(dir: &Path, link: &MagnetLink) -> Option<Arc<Metainfo>> {
    let path = saved_path(dir, link);
    let meta = crate::torrent::load(&path).ok()?;
    if meta.info_hash != link.info_hash {
        tracing::warn!("{} is not this link's torrent; ignoring it", path.display());
        return None;
    }
    Some(meta)
}

/// Writes the `.torrent` made of the received metadata to `DIR/.tessera/` and, if asked,
/// to `also`. Returns the problems (the download goes on without the saved file).
pub fn save(dir: &Path, link_hash: &str, file: &[u8], also: Option<&Path>) -> Vec<String> {
    let mut problems = Vec::new();
    let keep = dir.join(DIR_NAME).join(format!("{link_hash}.torrent"));
    let write = |path: &Path| -> std::io::Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension("torrent.tmp");
        std::fs::write(&tmp, file)?;
        std::fs::rename(&tmp, path)
    };
    for path in std::iter::once(keep.as_path()).chain(also) {
        if let Err(e) = write(path) {
            problems.push(format!("saving the metadata to {}: {e}", path.display()));
        }
    }
    problems
}

/// The link's `so=` selection as `--only` patterns (`3`, `4-6`).
pub fn only_patterns(link: &MagnetLink) -> Vec<String> {
    link.select
        .iter()
        .map(|r| {
            if r.first == r.last {
                r.first.to_string()
            } else {
                format!("{}-{}", r.first, r.last)
            }
        })
        .collect()
}

/// The link's `x.pe` peers as addresses, names resolved; those that do not resolve are
/// returned as warnings.
pub fn peers(link: &MagnetLink) -> (Vec<SocketAddr>, Vec<String>) {
    let mut addrs = Vec::new();
    let mut warnings = Vec::new();
    for peer in &link.peers {
        match peer {
            Target::Addr(a) => addrs.push(*a),
            Target::Host { host, port } => match crate::pool::resolve(host, *port) {
                Ok(a) => addrs.push(a),
                Err(e) => warnings.push(format!("peer {host}:{port} from the link: {e}")),
            },
        }
    }
    (addrs, warnings)
}

/// The `info` report for a magnet link: what the link says, nothing fetched.
pub fn info_text(link: &MagnetLink) -> String {
    let mut out = String::new();
    let line = |out: &mut String, key: &str, value: &str| {
        let _ = writeln!(out, "{:<14} {value}", format!("{key}:"));
    };
    line(
        &mut out,
        "magnet link",
        "yes (the metadata comes from peers)",
    );
    line(
        &mut out,
        "name",
        &link.name.as_deref().map_or("(not given)".into(), printable),
    );
    line(&mut out, "info hash", &link.info_hash.to_string());
    let select = only_patterns(link);
    if !select.is_empty() {
        line(&mut out, "select only", &select.join(","));
    }
    line(&mut out, "trackers", &link.trackers.len().to_string());
    for t in &link.trackers {
        let _ = writeln!(out, "  {}", printable(t));
    }
    line(&mut out, "peers", &link.peers.len().to_string());
    for p in &link.peers {
        let _ = match p {
            Target::Addr(a) => writeln!(out, "  {a}"),
            Target::Host { host, port } => writeln!(out, "  {}:{port}", printable(host)),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn info_of_a_link_and_its_selection() {
        let arg = format!(
            "magnet:?xt=urn:btih:{HASH}&dn=Some+name&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce&tr=udp%3A%2F%2Ft.example%3A80&x.pe=127.0.0.1:6881&so=0,2-4"
        );
        let link = parse_arg(Path::new(&arg)).unwrap().unwrap();
        assert_eq!(only_patterns(&link), vec!["0", "2-4"]);
        let text = info_text(&link);
        assert!(text.contains("name:          Some name\n"), "{text}");
        assert!(text.contains(&format!("info hash:     {HASH}\n")), "{text}");
        assert!(
            text.contains(
                "trackers:      2\n  http://127.0.0.1:6969/announce\n  udp://t.example:80\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("peers:         1\n  127.0.0.1:6881\n"),
            "{text}"
        );
        assert_eq!(peers(&link).0, vec!["127.0.0.1:6881".parse().unwrap()]);
        assert!(parse_arg(Path::new("a.torrent")).unwrap().is_none());
        let err = parse_arg(Path::new("magnet:?dn=x")).unwrap_err();
        assert!(err.to_string().contains("info hash"), "{err}");
    }

    #[test]
    fn saved_metadata_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let arg = format!("magnet:?xt=urn:btih:{HASH}");
        let link = parse_arg(Path::new(&arg)).unwrap().unwrap();
        assert!(load_saved(dir.path(), &link).is_none());
        let also = dir.path().join("copy/x.torrent");
        let problems = save(dir.path(), HASH, b"d4:infod4:name1:xee", Some(&also));
        assert!(problems.is_empty(), "{problems:?}");
        assert!(saved_path(dir.path(), &link).exists() && also.exists());
        // Not a valid torrent (and not this hash): ignored, fetched again.
        assert!(load_saved(dir.path(), &link).is_none());
    }
}
