//! The `tessera-mio` binary as a user runs it: a transfer between two instances ended by
//! Ctrl-C, and output to a closed pipe. The cases both binaries share (help, usage errors,
//! one-line errors, create/info/verify) run against each in `runtime-smol/tests/cli.rs`.

// Test code: a failed setup step should panic (clippy.toml allows it in #[test]s only).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tessera-mio");

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .output()
        .expect("run tessera-mio")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes a few files with odd sizes under `root`.
fn sample_data(root: &Path) {
    fs::create_dir_all(root.join("sub")).unwrap();
    let bytes = |n: usize, k: usize| (0..n).map(|i| (i * k + i / 13) as u8).collect::<Vec<u8>>();
    fs::write(root.join("a.bin"), bytes(100_000, 7)).unwrap();
    fs::write(root.join("sub/b.bin"), bytes(33_333, 11)).unwrap();
    fs::write(root.join("sub/empty"), b"").unwrap();
}

/// Kills a child on drop (by its PID, through `Child::kill`).
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn download_from_a_seeding_instance_then_interrupt_the_seeder() {
    let dir = tempfile::tempdir().unwrap();
    sample_data(&dir.path().join("seed/stuff"));
    let o = run(
        &[
            "create",
            "seed/stuff",
            "--piece-size",
            "16KiB",
            "-o",
            "stuff.torrent",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // Output goes to files (a pipe nobody reads could block a child).
    let log = |name: &str| Stdio::from(fs::File::create(dir.path().join(name)).unwrap());
    let read_log = |name: &str| fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let seeder = Command::new(BIN)
        .args([
            "seed",
            "stuff.torrent",
            "--data",
            "seed",
            "--listen",
            &listen,
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log("seed.out"))
        .stderr(log("seed.err"))
        .spawn()
        .unwrap();
    let mut seeder = Reaper(seeder);

    let mut leecher = Reaper(
        Command::new(BIN)
            .args([
                "download",
                "stuff.torrent",
                "-o",
                "down",
                "--listen",
                "127.0.0.1:0",
                "--peer",
                &listen,
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log("down.out"))
            .stderr(log("down.err"))
            .spawn()
            .unwrap(),
    );
    let status = wait_exit(&mut leecher.0, Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "download ended with {status:?}\nleecher: {}\nseeder: {}",
        read_log("down.err"),
        read_log("seed.err")
    );
    // The summary line is on stdout.
    assert!(
        read_log("down.out").starts_with("stuff: "),
        "{}",
        read_log("down.out")
    );
    for rel in ["stuff/a.bin", "stuff/sub/b.bin", "stuff/sub/empty"] {
        assert_eq!(
            fs::read(dir.path().join("down").join(rel)).unwrap(),
            fs::read(dir.path().join("seed").join(rel)).unwrap(),
            "{rel}"
        );
    }

    // Ctrl-C stops a seeder cleanly, with success.
    let pid = seeder.0.id().to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(kill.success());
    let status = wait_exit(&mut seeder.0, Duration::from_secs(45));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "seeder: {}",
        read_log("seed.err")
    );
}

/// `tessera-mio info x.torrent | head -1`: the reader is gone before the output is written;
/// the process must neither panic nor abort.
#[test]
fn output_to_a_closed_pipe_is_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    sample_data(&dir.path().join("data/stuff"));
    let o = run(&["create", "data/stuff", "-o", "stuff.torrent"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for args in [
        &["info", "stuff.torrent"][..],
        &["create", "data/stuff", "-o", "again.torrent"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_tessera-mio"))
            .args(args)
            .current_dir(dir.path())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {:?} {err}",
            out.status
        );
        assert!(!err.contains("internal error"), "{args:?}: {err}");
    }
}
