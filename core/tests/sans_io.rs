//! The core is sans-IO: no sockets, files, clock, threads, environment or OS randomness.
//! `core/clippy.toml` forbids the types and functions under `cargo clippy`; this test checks
//! the same in the test command, by reading the sources, so that CI catches a slip too.
//! Addresses (`SocketAddr`, `IpAddr`) are plain values the protocol carries and are allowed.

use std::fs;
use std::path::{Path, PathBuf};

/// What only a runtime may use, and why.
const FORBIDDEN: &[(&str, &str)] = &[
    ("std::fs", "files: emit Action::Write / Read / Verify"),
    (
        "std::thread",
        "threads: the core runs on its caller's thread",
    ),
    ("std::env", "the environment: configuration comes in Config"),
    ("std::process", "processes"),
    ("std::io::stdin", "the terminal"),
    (
        "std::time::Instant",
        "the clock: time is an input (crate::time)",
    ),
    ("SystemTime", "the clock: time is an input (crate::time)"),
    ("TcpStream", "sockets: emit Action::Connect / Send"),
    (
        "TcpListener",
        "sockets: the runtime accepts, then Session::accept",
    ),
    ("UdpSocket", "sockets: emit Action::SendDatagram"),
    ("to_socket_addrs", "name resolution: emit Target::Host"),
    (
        "getrandom",
        "OS randomness: the session's seed drives crate::rng",
    ),
    (
        "OsRng",
        "OS randomness: the session's seed drives crate::rng",
    ),
    (
        "thread_rng",
        "OS randomness: the session's seed drives crate::rng",
    ),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("core/src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_sources_do_no_io() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut found = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("a UTF-8 source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (needle, why) in FORBIDDEN {
                if code.contains(needle) {
                    found.push(format!("{}:{}: {needle} ({why})", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the core must stay sans-IO:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_core_depends_on_nothing_that_does_io() {
    let manifest = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .expect("core/Cargo.toml");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .expect("a [dependencies] table");
    let names: Vec<&str> = deps
        .lines()
        .filter_map(|l| l.split(['.', '=', ' ']).next())
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .collect();
    // Each reviewed: buffers, bencode, CRC-32C (BEP 42 node ids), base32 (magnet links),
    // hashing, HTTP parsing, URL parsing and percent-decoding, a seeded PRNG, error derive, a
    // logging facade, constant-time big integers (MSE's Diffie-Hellman) and RC4 (MSE's stream
    // cipher); none opens, reads or waits on anything.
    let allowed = [
        "bendy",
        "bytes",
        "crc",
        "crypto-bigint",
        "data-encoding",
        "httparse",
        "percent-encoding",
        "rand_chacha",
        "rc4",
        "sha1",
        "thiserror",
        "tracing",
        "url",
    ];
    for name in &names {
        assert!(
            allowed.contains(name),
            "new core dependency {name:?}: check that it does no IO, then add it here"
        );
    }
}
