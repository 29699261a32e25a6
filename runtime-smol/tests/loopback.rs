//! Whole transfers on loopback: `tessera-smol` against itself and against `tessera-mio` in
//! both directions, and the Ctrl-C policy.

// Test code: a failed setup step should panic (clippy.toml allows it in #[test]s only).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Reaper, SMOL, log_file, mio, read_log, run, sample_data, start_seeder, stderr, wait_exit,
};

/// `seeder_bin` seeds a multi-file torrent made by `tessera-smol create`; `leecher_bin`
/// downloads it and must get every byte; then the seeder is interrupted and stops cleanly.
fn transfer(seeder_bin: &Path, leecher_bin: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = sample_data(&d.join("seed/stuff"));
    let o = run(
        Path::new(SMOL),
        &[
            "create",
            "seed/stuff",
            "--piece-size",
            "16KiB",
            "-o",
            "stuff.torrent",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let (seeder, port) = start_seeder(seeder_bin, d, "stuff.torrent", "seed", "seed");
    let peer = format!("127.0.0.1:{port}");
    let mut leecher = Reaper(
        Command::new(leecher_bin)
            .args(["download", "stuff.torrent", "-o", "down"])
            .args(["--listen", "127.0.0.1:0", "--peer", &peer])
            .current_dir(d)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log_file(d, "down.out"))
            .stderr(log_file(d, "down.err"))
            .spawn()
            .unwrap(),
    );
    let status = wait_exit(&mut leecher.0, Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "download ended with {status:?}\nleecher: {}\nseeder: {}",
        read_log(d, "down.err"),
        read_log(d, "seed.err")
    );
    // The summary is on stdout: the whole torrent downloaded from one peer.
    let summary = read_log(d, "down.out");
    assert!(summary.starts_with("stuff: 1.1 MiB in "), "{summary}");
    assert!(summary.contains(", 1 peer, "), "{summary}");
    for rel in &files {
        let got = fs::read(d.join("down").join(rel)).unwrap();
        let want = fs::read(d.join("seed").join(rel)).unwrap();
        assert!(
            got == want,
            "{rel} differs ({} vs {} bytes)",
            got.len(),
            want.len()
        );
    }

    // Ctrl-C stops a seeder cleanly, with success, and its summary counts the upload.
    let mut seeder = seeder;
    seeder.interrupt();
    let status = wait_exit(&mut seeder.0, Duration::from_secs(30));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "seeder: {}",
        read_log(d, "seed.err")
    );
    let summary = read_log(d, "seed.out");
    assert!(summary.contains("1.1 MiB uploaded"), "{summary}");
}

#[test]
fn smol_downloads_from_smol() {
    transfer(Path::new(SMOL), Path::new(SMOL));
}

#[test]
fn smol_downloads_from_mio() {
    transfer(mio(), Path::new(SMOL));
}

#[test]
fn mio_downloads_from_smol() {
    transfer(Path::new(SMOL), mio());
}

/// Accepts one connection on `tracker` (bounded) and reads its HTTP request.
fn next_request(tracker: &TcpListener, d: &Path) -> (std::net::TcpStream, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match tracker.accept() {
            Ok((s, _)) => break s,
            Err(_) => {
                assert!(
                    Instant::now() < deadline,
                    "no announce: {}",
                    read_log(d, "err")
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "request cut short: {request:?}");
        request.extend_from_slice(&buf[..n]);
    }
    (stream, String::from_utf8_lossy(&request).into_owned())
}

/// The first Ctrl-C starts a clean stop (the `stopped` announce to a tracker that does not
/// answer it is waited for), the second ends the run at once: exit 130, `error: interrupted`.
fn ctrl_c_twice_quits_at_once(bin: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sample_data(&d.join("seed/stuff"));
    let tracker = TcpListener::bind("127.0.0.1:0").unwrap();
    tracker.set_nonblocking(true).unwrap();
    let announce = format!("http://{}/announce", tracker.local_addr().unwrap());
    let o = run(
        Path::new(SMOL),
        &[
            "create",
            "seed/stuff",
            "--tracker",
            &announce,
            "-o",
            "t.torrent",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut leecher = Reaper(
        Command::new(bin)
            .args(["-v", "download", "t.torrent", "-o", "down"])
            .args(["--listen", "127.0.0.1:0"])
            .current_dir(d)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log_file(d, "out"))
            .stderr(log_file(d, "err"))
            .spawn()
            .unwrap(),
    );
    // The `started` announce gets an answer (no peers): the run is under way.
    let (mut started, request) = next_request(&tracker, d);
    assert!(request.starts_with("GET /announce?"), "{request}");
    let body = b"d8:intervali1800e5:peers0:e";
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    started.write_all(head.as_bytes()).unwrap();
    started.write_all(body).unwrap();
    drop(started);

    // Once the answer is in (logged with -v), Ctrl-C: the `stopped` announce comes, and
    // is not answered.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !read_log(d, "err").contains("next announce in 1800s") {
        assert!(
            Instant::now() < deadline,
            "no announce: {}",
            read_log(d, "err")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    leecher.interrupt();
    let (_held, request) = next_request(&tracker, d);
    assert!(request.contains("event=stopped"), "{request}");
    assert!(
        read_log(d, "err").contains("stopping: telling the trackers"),
        "{}",
        read_log(d, "err")
    );
    // Still waiting for the tracker.
    assert_eq!(wait_exit(&mut leecher.0, Duration::from_millis(500)), None);

    // Ctrl-C again: out at once.
    let asked = Instant::now();
    leecher.interrupt();
    let status = wait_exit(&mut leecher.0, Duration::from_secs(5));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(130),
        "{}",
        read_log(d, "err")
    );
    assert!(asked.elapsed() < Duration::from_secs(5));
    let err = read_log(d, "err");
    assert_eq!(err.lines().last(), Some("error: interrupted"), "{err}");
}

#[test]
fn smol_ctrl_c_twice_quits_at_once() {
    ctrl_c_twice_quits_at_once(Path::new(SMOL));
}

#[test]
fn mio_ctrl_c_twice_quits_at_once() {
    ctrl_c_twice_quits_at_once(mio());
}
