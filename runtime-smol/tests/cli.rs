//! Both binaries as a user runs them: exit codes, one-line errors and the offline
//! commands. Every case runs against `tessera-smol` and `tessera-mio` (built on first use,
//! see `common`); `runtime-mio/tests/cli.rs` keeps what only concerns the mio binary.

// Test code: a failed setup step should panic (clippy.toml allows it in #[test]s only).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use common::{SMOL, assert_one_line_error, mio, run, sample_data, stderr, stdout};

/// Each binary with its name.
fn binaries() -> [(&'static Path, &'static str); 2] {
    [(Path::new(SMOL), "tessera-smol"), (mio(), "tessera-mio")]
}

#[test]
fn help_and_version() {
    for (bin, name) in binaries() {
        let dir = tempfile::tempdir().unwrap();
        let o = run(bin, &["--help"], dir.path());
        assert_eq!(o.status.code(), Some(0));
        let help = stdout(&o);
        for cmd in ["download", "seed", "info", "verify", "create"] {
            assert!(help.contains(cmd), "help lacks {cmd}: {help}");
        }
        let o = run(bin, &["--version"], dir.path());
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(
            stdout(&o).trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION"))
        );
        // Each subcommand has its own help.
        let o = run(bin, &["download", "--help"], dir.path());
        assert_eq!(o.status.code(), Some(0));
        assert!(stdout(&o).contains("--peer"), "{}", stdout(&o));
    }
}

#[test]
fn usage_errors_exit_2() {
    for (bin, _) in binaries() {
        let dir = tempfile::tempdir().unwrap();
        for args in [
            &[][..],
            &["download"],
            &["fly"],
            &["create", "x", "--piece-size", "3KiB"],
            &["download", "a.torrent", "--peer", "no-port"],
            &["seed", "a.torrent", "--listen", "nowhere"],
        ] {
            let o = run(bin, args, dir.path());
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
            // No arguments at all: the help, on stderr; otherwise clap's error.
            let err = stderr(&o);
            assert!(
                (err.starts_with("error: ") && err.trim_end().lines().count() == 1)
                    || (args.is_empty() && err.contains("Usage:")),
                "{args:?}: {err}"
            );
        }
    }
}

#[test]
fn missing_torrent_files_are_one_line_errors() {
    for (bin, _) in binaries() {
        let dir = tempfile::tempdir().unwrap();
        for cmd in ["info", "verify", "download", "seed"] {
            let o = run(bin, &[cmd, "missing.torrent"], dir.path());
            assert_one_line_error(&o, "missing.torrent");
        }
        let o = run(bin, &["info", "magnet:?xt=urn:btih:0000"], dir.path());
        assert_one_line_error(&o, "magnet");
    }
}

#[test]
fn create_refuses_empty_input() {
    for (bin, _) in binaries() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("empty")).unwrap();
        let o = run(bin, &["create", "empty"], dir.path());
        assert_one_line_error(&o, "contains no files");
        let o = run(bin, &["create", "nothing-here"], dir.path());
        assert_one_line_error(&o, "nothing-here");
    }
}

#[test]
fn listen_address_in_use_is_a_clear_error() {
    for (bin, _) in binaries() {
        let dir = tempfile::tempdir().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let o = run(
            bin,
            &["download", "whatever.torrent", "--listen", &addr],
            dir.path(),
        );
        assert_one_line_error(&o, &format!("listening on {addr}"));
    }
}

#[test]
fn create_info_verify_round_trip() {
    for (bin, _) in binaries() {
        let dir = tempfile::tempdir().unwrap();
        sample_data(&dir.path().join("data/stuff"));
        let o = run(
            bin,
            &[
                "create",
                "data/stuff",
                "--piece-size",
                "16KiB",
                "--tracker",
                "http://127.0.0.1:1/announce",
                "-o",
                "stuff.torrent",
                "--no-date",
            ],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

        let o = run(bin, &["info", "stuff.torrent"], dir.path());
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let info = stdout(&o);
        assert!(info.starts_with("name:          stuff\n"), "{info}");
        // 100000 + 33333 + 0 + 1 + 1048583 bytes in pieces of 16 KiB.
        assert!(info.contains("(1181917 bytes)\n"), "{info}");
        assert!(
            info.contains("pieces:        73 of 16.0 KiB (16384 bytes)\n"),
            "{info}"
        );
        assert!(info.contains("] stuff/sub/empty  0 bytes\n"), "{info}");
        assert!(
            info.contains("  tier 1: http://127.0.0.1:1/announce\n"),
            "{info}"
        );
        // Deterministic: the same input gives the same report.
        assert_eq!(
            stdout(&run(bin, &["info", "stuff.torrent"], dir.path())),
            info
        );

        let o = run(
            bin,
            &["verify", "stuff.torrent", "--data", "data"],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            stdout(&o).starts_with("pieces: 73 of 73 complete\n"),
            "{}",
            stdout(&o)
        );

        fs::write(dir.path().join("data/stuff/sub/b.bin"), b"short").unwrap();
        let o = run(
            bin,
            &["verify", "stuff.torrent", "--data", "data"],
            dir.path(),
        );
        assert_one_line_error(&o, "incomplete");
        assert!(
            stdout(&o).contains("incomplete  stuff/sub/b.bin"),
            "{}",
            stdout(&o)
        );
    }
}
