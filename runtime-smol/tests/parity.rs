//! `tessera-smol` and `tessera-mio` are the same program to a user: the same torrent bytes
//! from `create`, the same `info` and `verify` reports, the same exit codes and error lines
//! for the same bad inputs.

// Test code: a failed setup step should panic (clippy.toml allows it in #[test]s only).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::{SMOL, mio, run, sample_data, stderr, stdout};

/// What a user sees of a run, with the program's name replaced by `tessera`.
fn seen(o: &Output, bin: &str) -> (Option<i32>, String, String) {
    (
        o.status.code(),
        stdout(o).replace(bin, "tessera"),
        stderr(o).replace(bin, "tessera"),
    )
}

/// Runs both binaries with `args` in `dir` and asserts they behave the same; returns what
/// was seen.
fn same(args: &[&str], dir: &Path) -> (Option<i32>, String, String) {
    let s = seen(&run(Path::new(SMOL), args, dir), "tessera-smol");
    let m = seen(&run(mio(), args, dir), "tessera-mio");
    assert_eq!(
        s, m,
        "{args:?}: tessera-smol (left) and tessera-mio (right) differ"
    );
    s
}

/// A multi-file torrent whose only file would land outside the download directory.
fn dotdot_torrent() -> Vec<u8> {
    let mut t = b"d4:infod5:filesld6:lengthi5e4:pathl2:..4:evileee4:name4:root".to_vec();
    t.extend_from_slice(b"12:piece lengthi16384e6:pieces20:");
    t.extend_from_slice(&[7; 20]);
    t.extend_from_slice(b"ee");
    t
}

#[test]
fn create_info_and_verify_are_identical() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sample_data(&d.join("data/stuff"));
    for (bin, out) in [(Path::new(SMOL), "smol.torrent"), (mio(), "mio.torrent")] {
        let o = run(
            bin,
            &[
                "create",
                "data/stuff",
                "--piece-size",
                "32KiB",
                "--tracker",
                "http://127.0.0.1:1/announce",
                "--comment",
                "same",
                "--no-date",
                "-o",
                out,
            ],
            d,
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    assert!(
        fs::read(d.join("smol.torrent")).unwrap() == fs::read(d.join("mio.torrent")).unwrap(),
        "create made different torrents"
    );
    let (code, info, err) = same(&["info", "smol.torrent"], d);
    assert_eq!(code, Some(0), "{err}");
    assert!(info.contains("comment:"), "{info}");
    assert!(info.contains("stuff/sub/deeper/c.bin"), "{info}");
    let (code, report, _) = same(&["-q", "verify", "smol.torrent", "--data", "data"], d);
    assert_eq!(code, Some(0));
    assert!(report.starts_with("pieces: "), "{report}");
}

#[test]
fn bad_inputs_give_the_same_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("not.torrent"), b"hello, world\n").unwrap();
    fs::write(d.join("dotdot.torrent"), dotdot_torrent()).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["info", "missing.torrent"], "missing.torrent"),
        (&["download", "missing.torrent"], "missing.torrent"),
        (&["seed", "missing.torrent"], "missing.torrent"),
        (&["verify", "missing.torrent"], "missing.torrent"),
        (&["info", "not.torrent"], "not.torrent"),
        (
            &["download", "not.torrent", "--listen", "127.0.0.1:0"],
            "not.torrent",
        ),
        (&["verify", "not.torrent"], "not.torrent"),
        (&["info", "dotdot.torrent"], "dotdot.torrent"),
        (
            &["download", "dotdot.torrent", "--listen", "127.0.0.1:0"],
            "dotdot.torrent",
        ),
        (
            &["seed", "dotdot.torrent", "--listen", "127.0.0.1:0"],
            "dotdot.torrent",
        ),
    ];
    for (args, needle) in cases {
        let (code, out, err) = same(args, d);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert_eq!(out, "", "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err:?}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // The `..` torrent is refused for what it is, not for being unreadable.
    let (_, _, err) = same(&["info", "dotdot.torrent"], d);
    assert!(err.contains(".."), "{err}");
    // Nothing was created outside (or inside) the directory.
    assert!(!d.join("evil").exists() && !d.parent().unwrap().join("evil").exists());
}

#[test]
fn usage_errors_are_the_same() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["fly"][..],
        &["download"],
        &["info", "a", "b"],
        &["create", "x", "--piece-size", "3KiB"],
    ] {
        let (code, _, err) = same(args, dir.path());
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    let (_, _, err) = same(&["fly"], dir.path());
    assert!(
        err.starts_with("error: unrecognized subcommand 'fly'"),
        "{err}"
    );
    let (code, help, _) = same(&["--help"], dir.path());
    assert_eq!(code, Some(0));
    assert!(
        help.contains("Usage: tessera [OPTIONS] <COMMAND>"),
        "{help}"
    );
    // Every subcommand takes the same flags.
    for cmd in ["download", "seed", "info", "verify", "create"] {
        let (code, help, _) = same(&[cmd, "--help"], dir.path());
        assert_eq!(code, Some(0), "{cmd}");
        assert!(help.contains(&format!("Usage: tessera {cmd} ")), "{help}");
    }
}
