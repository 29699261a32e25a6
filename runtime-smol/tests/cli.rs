//! The `tessera-smol` binary as a user runs it: exit codes, one-line errors and the
//! offline commands.

// Test code: a failed setup step should panic (clippy.toml allows it in #[test]s only).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use common::{SMOL, assert_one_line_error, run, sample_data, stderr, stdout};

fn smol(args: &[&str], cwd: &Path) -> std::process::Output {
    run(Path::new(SMOL), args, cwd)
}

#[test]
fn help_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let o = smol(&["--help"], dir.path());
    assert_eq!(o.status.code(), Some(0));
    let help = stdout(&o);
    for cmd in ["download", "seed", "info", "verify", "create"] {
        assert!(help.contains(cmd), "help lacks {cmd}: {help}");
    }
    let o = smol(&["--version"], dir.path());
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o).trim(),
        format!("tessera-smol {}", env!("CARGO_PKG_VERSION"))
    );
    // Each subcommand has its own help.
    let o = smol(&["download", "--help"], dir.path());
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("--peer"), "{}", stdout(&o));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &[][..],
        &["download"],
        &["fly"],
        &["create", "x", "--piece-size", "3KiB"],
        &["download", "a.torrent", "--peer", "no-port"],
        &["seed", "a.torrent", "--listen", "nowhere"],
    ] {
        let o = smol(args, dir.path());
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

#[test]
fn missing_torrent_files_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["info", "verify", "download", "seed"] {
        let o = smol(&[cmd, "missing.torrent"], dir.path());
        assert_one_line_error(&o, "missing.torrent");
    }
    let o = smol(&["info", "magnet:?xt=urn:btih:0000"], dir.path());
    assert_one_line_error(&o, "magnet");
}

#[test]
fn create_refuses_empty_input() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("empty")).unwrap();
    let o = smol(&["create", "empty"], dir.path());
    assert_one_line_error(&o, "contains no files");
    let o = smol(&["create", "nothing-here"], dir.path());
    assert_one_line_error(&o, "nothing-here");
}

#[test]
fn listen_address_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = smol(
        &["download", "whatever.torrent", "--listen", &addr],
        dir.path(),
    );
    assert_one_line_error(&o, &format!("listening on {addr}"));
}

#[test]
fn create_info_verify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    sample_data(&dir.path().join("data/stuff"));
    let o = smol(
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

    let o = smol(&["info", "stuff.torrent"], dir.path());
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

    let o = smol(&["verify", "stuff.torrent", "--data", "data"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("pieces: 73 of 73 complete\n"),
        "{}",
        stdout(&o)
    );

    fs::write(dir.path().join("data/stuff/sub/b.bin"), b"short").unwrap();
    let o = smol(&["verify", "stuff.torrent", "--data", "data"], dir.path());
    assert_one_line_error(&o, "incomplete");
    assert!(
        stdout(&o).contains("incomplete  stuff/sub/b.bin"),
        "{}",
        stdout(&o)
    );
}
