//! `info`: what a `.torrent` describes, as stable text (compared across runtimes by tests)
//! or, with `--json`, as one JSON object for scripts.

use std::fmt::Write;

use tessera_core::Metainfo;

use crate::cli::InfoArgs;
use crate::error::Error;
use crate::exit::Exit;
use crate::output::printable;
use crate::ui::{format_utc, human_size};

pub fn run(args: &InfoArgs) -> Result<Exit, Error> {
    if let Some(link) = args.torrent.magnet()? {
        if args.json {
            return Err(Error::other(
                "--json describes a .torrent file: for a magnet link, `info` shows what the \
                 link says as text",
            ));
        }
        crate::output::text(&crate::magnet::info_text(&link));
        return Ok(Exit::Success);
    }
    let meta = args.torrent.load()?;
    if args.json {
        crate::output::line(&info_json(&meta).to_string());
    } else {
        crate::output::text(&info_text(&meta));
    }
    Ok(Exit::Success)
}

/// The `info` report as JSON: the same facts as [`info_text`], with sizes in bytes, the
/// files numbered by their place in `files` (as `download --only` takes them) and each
/// file's path as a list of components below the torrent's name. Strings are as the
/// torrent has them (JSON escapes control characters itself).
pub fn info_json(meta: &Metainfo) -> serde_json::Value {
    use serde_json::json;
    let info = &meta.info;
    let files: Vec<_> = info
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            json!({
                "index": i,
                "path": f.path.iter().skip(1).collect::<Vec<_>>(),
                "length": f.length,
                "padding": f.padding,
                "executable": f.executable,
            })
        })
        .collect();
    let tiers: Vec<&Vec<String>> = meta.trackers.iter().filter(|t| !t.is_empty()).collect();
    json!({
        "name": info.name,
        "info_hash": meta.info_hash.to_string(),
        "total_length": meta.total_length(),
        "piece_length": info.piece_length,
        "pieces": meta.num_pieces(),
        "private": info.private,
        "comment": meta.comment,
        "created_by": meta.created_by,
        "creation_date": meta.creation_date,
        "files": files,
        "trackers": tiers,
    })
}

/// The `info` report. One `key: value` per line, then the files and tracker tiers
/// indented; every string from the torrent has its control characters escaped.
pub fn info_text(meta: &Metainfo) -> String {
    let info = &meta.info;
    let mut out = String::new();
    let mut line = |key: &str, value: &str| {
        let _ = writeln!(out, "{:<14} {value}", format!("{key}:"));
    };
    line("name", &printable(&info.name));
    line("info hash", &meta.info_hash.to_string());
    line("total size", &size(meta.total_length()));
    line(
        "pieces",
        &format!(
            "{} of {}",
            meta.num_pieces(),
            size(u64::from(info.piece_length))
        ),
    );
    line("private", if info.private { "yes" } else { "no" });
    if let Some(c) = &meta.comment {
        line("comment", &printable(c));
    }
    if let Some(c) = &meta.created_by {
        line("created by", &printable(c));
    }
    if let Some(d) = meta.creation_date {
        line("creation date", &format!("{} ({d})", format_utc(d)));
    }
    let data_files = info.files.iter().filter(|f| !f.padding).count();
    let padding = info.files.len() - data_files;
    line(
        "files",
        &if padding == 0 {
            format!("{data_files}")
        } else {
            format!("{data_files} (and {padding} padding)")
        },
    );
    // Numbered as `download --only` takes them.
    for (i, f) in info.files.iter().enumerate() {
        let path = printable(&f.path.join("/"));
        let mut flags = String::new();
        if f.padding {
            flags.push_str(" [padding]");
        }
        if f.executable {
            flags.push_str(" [executable]");
        }
        let _ = writeln!(out, "  [{i}] {path}  {}{flags}", size(f.length));
    }
    if meta.trackers.iter().all(Vec::is_empty) {
        let _ = writeln!(out, "{:<14} none", "trackers:");
    } else {
        let _ = writeln!(out, "trackers:");
        for (i, tier) in meta.trackers.iter().filter(|t| !t.is_empty()).enumerate() {
            for url in tier {
                let _ = writeln!(out, "  tier {}: {}", i + 1, printable(url));
            }
        }
    }
    out
}

/// `1.5 MiB (1572864 bytes)`; below 1 KiB just `100 bytes`.
fn size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else {
        format!("{} ({bytes} bytes)", human_size(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::torrent;

    #[test]
    fn multi_file_report() {
        let t = torrent(
            "album",
            &[
                ("cd1/01 intro.flac", 300_000, false),
                (".pad/3216", 3216, true),
                ("cover.jpg", 900, false),
                ("empty", 0, false),
            ],
            16384,
        );
        let mut meta = (*t.meta).clone();
        meta.trackers = vec![
            vec![
                "http://a.example/announce".into(),
                "udp://b.example:80".into(),
            ],
            vec![],
            vec!["http://c.example/announce".into()],
        ];
        meta.comment = Some("line1\nline2\x1b[31m".into());
        meta.created_by = Some("Tessera 0.1.0".into());
        meta.creation_date = Some(1_700_000_000);
        meta.info.private = true;
        meta.info.files[2].executable = true;
        assert_eq!(
            info_text(&meta),
            "\
name:          album
info hash:     0707070707070707070707070707070707070707
total size:    297.0 KiB (304116 bytes)
pieces:        19 of 16.0 KiB (16384 bytes)
private:       yes
comment:       line1\\nline2\\u{1b}[31m
created by:    Tessera 0.1.0
creation date: 2023-11-14 22:13:20 UTC (1700000000)
files:         3 (and 1 padding)
  [0] album/cd1/01 intro.flac  293.0 KiB (300000 bytes)
  [1] album/.pad/3216  3.1 KiB (3216 bytes) [padding]
  [2] album/cover.jpg  900 bytes [executable]
  [3] album/empty  0 bytes
trackers:
  tier 1: http://a.example/announce
  tier 1: udp://b.example:80
  tier 2: http://c.example/announce
"
        );
    }

    #[test]
    fn json_report() {
        let t = torrent(
            "album",
            &[
                ("cd1/a \"b\"\n.flac", 300_000, false),
                (".pad/3216", 3216, true),
            ],
            16384,
        );
        let mut meta = (*t.meta).clone();
        meta.trackers = vec![vec!["http://a.example/announce".into()], vec![]];
        let v = info_json(&meta);
        assert_eq!(v["name"], "album");
        assert_eq!(v["info_hash"], "0707070707070707070707070707070707070707");
        assert_eq!(v["total_length"], 303_216);
        assert_eq!(v["pieces"], 19);
        assert_eq!(v["piece_length"], 16384);
        assert_eq!(v["private"], false);
        assert!(v["comment"].is_null());
        assert_eq!(
            v["files"][0]["path"],
            serde_json::json!(["cd1", "a \"b\"\n.flac"])
        );
        assert_eq!(v["files"][1]["padding"], true);
        assert_eq!(v["files"][1]["index"], 1);
        assert_eq!(
            v["trackers"],
            serde_json::json!([["http://a.example/announce"]])
        );
        // One line that parses back to the same value.
        let text = v.to_string();
        assert!(!text.contains('\n'));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), v);
    }

    #[test]
    fn single_file_report() {
        let t = torrent("file.iso", &[("", 1 << 20, false)], 262_144);
        assert_eq!(
            info_text(&t.meta),
            "\
name:          file.iso
info hash:     0707070707070707070707070707070707070707
total size:    1.0 MiB (1048576 bytes)
pieces:        4 of 256.0 KiB (262144 bytes)
private:       no
files:         1
  [0] file.iso  1.0 MiB (1048576 bytes)
trackers:      none
"
        );
    }
}
