//! `info`: what a `.torrent` describes, as stable text (compared across runtimes by tests).

use std::fmt::Write;

use tessera_core::Metainfo;

use crate::cli::InfoArgs;
use crate::error::Error;
use crate::exit::Exit;
use crate::output::printable;
use crate::torrent;
use crate::ui::human_size;

pub fn run(args: &InfoArgs) -> Result<Exit, Error> {
    if let Some(link) = crate::magnet::parse_arg(&args.torrent)? {
        crate::output::text(&crate::magnet::info_text(&link));
        return Ok(Exit::Success);
    }
    let meta = torrent::load(&args.torrent)?;
    crate::output::text(&info_text(&meta));
    Ok(Exit::Success)
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

/// Seconds since the Unix epoch as `YYYY-MM-DD hh:mm:ss UTC`.
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
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

    #[test]
    fn dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(format_utc(4_102_444_800), "2100-01-01 00:00:00 UTC");
    }
}
