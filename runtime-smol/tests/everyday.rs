//! What a newcomer meets, run against both binaries: the demo, shell completions,
//! `info --json`, several torrents in one run, why a download reaches nobody
//! (`--stall-timeout`), a seeder without data, and the messages for the usual mistakes.

// Test code: a failed setup step should panic (clippy.toml allows it in #[test]s only).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Reaper, SMOL, assert_one_line_error, log_file, mio, read_log, run, sample_data, stderr, stdout,
    wait_exit,
};

/// Each binary with its name.
fn binaries() -> [(&'static Path, &'static str); 2] {
    [(Path::new(SMOL), "tessera-smol"), (mio(), "tessera-mio")]
}

/// `create`s a torrent of `data` (a path under `d`) at `out`, with 16 KiB pieces.
fn create(bin: &Path, d: &Path, data: &str, out: &str) {
    let o = run(
        bin,
        &[
            "create",
            data,
            "--piece-size",
            "16KiB",
            "-o",
            out,
            "--no-date",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// Starts `bin` with `args` in `d`, its output in `<label>.out` and `<label>.err`.
fn spawn(bin: &Path, d: &Path, args: &[&str], label: &str) -> Reaper {
    Reaper(
        Command::new(bin)
            .args(args)
            .current_dir(d)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log_file(d, &format!("{label}.out")))
            .stderr(log_file(d, &format!("{label}.err")))
            .spawn()
            .unwrap(),
    )
}

/// Waits (bounded) until `<label>.err` has `count` lines containing `needle`.
fn wait_for(p: &mut Reaper, d: &Path, label: &str, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = read_log(d, &format!("{label}.err"));
        if log.matches(needle).count() >= count {
            return;
        }
        if let Some(status) = p.0.try_wait().unwrap() {
            panic!("{label} exited with {status} before {needle:?}: {log}");
        }
        assert!(Instant::now() < deadline, "{label}: no {needle:?} in {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_demo_runs_to_completion() {
    for (bin, _) in binaries() {
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new(bin)
            .args(["demo", "--size", "3MiB", "--downloaders", "2"])
            .current_dir(dir.path())
            .env("TMPDIR", dir.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (out, err) = (stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
        assert!(
            out.contains("demo: 2 copies of 3.0 MiB identical to the payload, byte for byte"),
            "{out}"
        );
        // A summary line per node, each labelled; the seeder's leads with its upload.
        for k in [1, 2] {
            assert!(
                out.lines().any(
                    |l| l.starts_with(&format!("downloader {k}: tessera-demo.bin: "))
                        && l.contains(" MiB/s average, ")
                ),
                "{out}"
            );
        }
        assert!(
            out.lines()
                .any(|l| l.starts_with("seeder: tessera-demo.bin: ") && l.contains(" uploaded in ")),
            "{out}"
        );
        assert!(
            err.contains("seeder: tessera-demo.bin: all 192 pieces verified"),
            "{err}"
        );
        // The temporary directory is gone.
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

#[test]
fn completions_for_each_shell() {
    for (bin, name) in binaries() {
        let dir = tempfile::tempdir().unwrap();
        for (shell, marker) in [
            ("bash", format!("_{}()", name.replace('-', "__"))),
            ("zsh", format!("#compdef {name}")),
            ("fish", format!("complete -c {name}")),
        ] {
            let o = run(bin, &["completions", shell], dir.path());
            let script = stdout(&o);
            assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
            assert!(script.contains(&marker), "{shell}: no {marker:?}");
            for word in ["download", "seed", "demo", "stall-timeout", "json"] {
                assert!(script.contains(word), "{shell} completion lacks {word}");
            }
        }
    }
}

#[test]
fn info_json_for_scripts() {
    for (bin, _) in binaries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        sample_data(&d.join("data/stuff"));
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
            ],
            d,
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = run(bin, &["info", "--json", "stuff.torrent"], d);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let text = stdout(&o);
        assert_eq!(text.lines().count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["name"], "stuff");
        assert_eq!(v["total_length"], 1_181_917);
        assert_eq!(v["pieces"], 73);
        assert_eq!(v["piece_length"], 16384);
        assert_eq!(v["info_hash"].as_str().unwrap().len(), 40);
        assert_eq!(v["trackers"][0][0], "http://127.0.0.1:1/announce");
        let paths: Vec<String> = v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                f["path"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        assert_eq!(
            paths,
            [
                "a.bin",
                "sub/b.bin",
                "sub/deeper/c.bin",
                "sub/empty",
                "z.bin"
            ]
        );
        // The text report names the same info hash.
        let o = run(bin, &["info", "stuff.torrent"], d);
        assert!(stdout(&o).contains(v["info_hash"].as_str().unwrap()));
    }
}

/// `seed a b` in one process, `download a b` in another: one session each, both torrents
/// complete, a summary line each and a total; a second run says there is nothing to do.
#[test]
fn several_torrents_in_one_run() {
    for (bin, _) in binaries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        sample_data(&d.join("seed/one"));
        sample_data(&d.join("seed/two"));
        fs::write(d.join("seed/two/extra.bin"), vec![7u8; 50_000]).unwrap();
        create(bin, d, "seed/one", "one.torrent");
        create(bin, d, "seed/two", "two.torrent");
        let port = free_port();
        let listen = port.to_string();
        let mut seeder = spawn(
            bin,
            d,
            &[
                "seed",
                "one.torrent",
                "two.torrent",
                "--data",
                "seed",
                "--listen",
                &listen,
            ],
            "seed",
        );
        wait_for(&mut seeder, d, "seed", "seeding (Ctrl-C to stop)", 2);
        let peer = format!("127.0.0.1:{port}");
        let args = [
            "download",
            "one.torrent",
            "two.torrent",
            "-o",
            "down",
            "--listen",
            "127.0.0.1:0",
            "--peer",
            &peer,
        ];
        let mut leecher = spawn(bin, d, &args, "down");
        let status = wait_exit(&mut leecher.0, Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "{status:?}\n{}",
            read_log(d, "down.err")
        );
        for name in ["one", "two"] {
            for rel in ["a.bin", "sub/b.bin", "z.bin", "sub/empty"] {
                assert_eq!(
                    fs::read(d.join("down").join(name).join(rel)).unwrap(),
                    fs::read(d.join("seed").join(name).join(rel)).unwrap(),
                    "{name}/{rel}"
                );
            }
        }
        let out = read_log(d, "down.out");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("one: 1.1 MiB in "), "{out}");
        assert!(lines[1].starts_with("two: 1.2 MiB in "), "{out}");
        assert!(
            lines[2].starts_with("total: 2 torrents, 2 complete, 2.3 MiB in "),
            "{out}"
        );
        // Nothing left to do: said plainly, for each, at once.
        let started = Instant::now();
        let o = run(
            bin,
            &[
                "download",
                "one.torrent",
                "two.torrent",
                "-o",
                "down",
                "--listen",
                "127.0.0.1:0",
            ],
            d,
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.starts_with("one: already complete (1.1 MiB), nothing to fetch, 0 peers"),
            "{out}"
        );
        assert!(out.contains("\ntwo: already complete (1.2 MiB)"), "{out}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a complete download took {:?}",
            started.elapsed()
        );

        // The seeder stops on Ctrl-C; its summary leads with what it uploaded.
        seeder.interrupt();
        let status = wait_exit(&mut seeder.0, Duration::from_secs(30));
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{}",
            read_log(d, "seed.err")
        );
        let out = read_log(d, "seed.out");
        assert!(out.starts_with("one: 1.1 MiB uploaded in "), "{out}");
        assert!(out.contains("\ntwo: 1.2 MiB uploaded in "), "{out}");
        // No tracker was ever reached: nothing to tell them.
        let err = read_log(d, "seed.err");
        assert!(
            err.contains("stopping (Ctrl-C again to quit at once)"),
            "{err}"
        );
        assert!(!err.contains("telling the trackers"), "{err}");
    }
}

/// A download whose only peer refuses the connection says so, and gives up at the stall
/// timeout with exit 1; nothing in the log is coloured. The refusal is TCP's: the default
/// `--transport both` dials uTP first, gets no answer (a closed UDP port answers nothing
/// we see), and dials TCP after 3 s, so the stall timeout is 5 s.
#[test]
fn a_download_that_reaches_nobody_says_why() {
    for (bin, _) in binaries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        sample_data(&d.join("data/stuff"));
        create(bin, d, "data/stuff", "stuff.torrent");
        let dead = format!("127.0.0.1:{}", free_port());
        let started = Instant::now();
        let o = Command::new(bin)
            .args([
                "-v",
                "download",
                "stuff.torrent",
                "-o",
                "down",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--peer", &dead, "--stall-timeout", "5s"])
            .current_dir(d)
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "took {:?}",
            started.elapsed()
        );
        assert!(err.contains("warning: stuff: no peer for 5s:"), "{err}");
        assert!(
            err.contains(&format!(
                "\n  1 peer ({dead}) refused the connection (nothing listens at that address)"
            )),
            "{err}"
        );
        assert!(
            err.trim_end()
                .ends_with("error: no peer within 5s (--stall-timeout); the reasons are above"),
            "{err}"
        );
        // Logs (-v) went to a pipe: plain text.
        assert!(err.contains(" INFO "), "{err}");
        assert!(
            !err.contains('\x1b'),
            "colour codes in a piped log: {err:?}"
        );
    }
}

#[test]
fn a_seeder_needs_its_data() {
    for (bin, _) in binaries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        sample_data(&d.join("data/stuff"));
        create(bin, d, "data/stuff", "stuff.torrent");
        fs::create_dir(d.join("elsewhere")).unwrap();
        let o = run(
            bin,
            &[
                "seed",
                "stuff.torrent",
                "--data",
                "elsewhere",
                "--listen",
                "127.0.0.1:0",
            ],
            d,
        );
        assert_one_line_error(
            &o,
            "no data to seed for stuff: elsewhere/stuff does not exist",
        );
        assert!(
            fs::read_dir(d.join("elsewhere")).unwrap().next().is_none(),
            "a seeder without data created files"
        );

        // Part of the data: it seeds what it has and says how much.
        fs::remove_file(d.join("data/stuff/z.bin")).unwrap();
        let mut seeder = spawn(
            bin,
            d,
            &[
                "seed",
                "stuff.torrent",
                "--data",
                "data",
                "--listen",
                "127.0.0.1:0",
            ],
            "partial",
        );
        wait_for(&mut seeder, d, "partial", "seeding what is there", 1);
        let err = read_log(d, "partial.err");
        assert!(
            err.contains("warning: stuff: seeding what is there, 8 of 73 pieces (128.0 KiB of 1.1 MiB, 11.1%) in data; the other 65 are missing or damaged"),
            "{err}"
        );
        seeder.interrupt();
        assert!(wait_exit(&mut seeder.0, Duration::from_secs(30)).is_some());
    }
}

#[test]
fn usual_mistakes_get_plain_messages() {
    for (bin, _) in binaries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        sample_data(&d.join("data/stuff"));
        create(bin, d, "data/stuff", "stuff.torrent");
        // -o naming a file.
        fs::write(d.join("notes.txt"), b"x").unwrap();
        let o = run(bin, &["download", "stuff.torrent", "-o", "notes.txt"], d);
        assert_one_line_error(
            &o,
            "notes.txt is not a directory: -o must name a directory (it is created if missing)",
        );
        // Not a torrent: a large file, and a small one.
        let f = fs::File::create(d.join("movie.mkv")).unwrap();
        f.set_len(40 << 20).unwrap();
        let o = run(bin, &["info", "movie.mkv"], d);
        assert_one_line_error(
            &o,
            "movie.mkv is not a torrent file (40.0 MiB, over the 32.0 MiB limit of torrent files)",
        );
        fs::write(
            d.join("page.torrent"),
            b"<!DOCTYPE html><html>Not found</html>",
        )
        .unwrap();
        let o = run(bin, &["download", "page.torrent"], d);
        assert_one_line_error(
            &o,
            "page.torrent is not a torrent file (it starts with \"<!DOCTYPE html><\")",
        );
        // The same torrent twice.
        let o = run(
            bin,
            &["download", "stuff.torrent", "./stuff.torrent", "-o", "x"],
            d,
        );
        assert_one_line_error(&o, "are the same torrent");
        assert!(!d.join("x").exists());
        // --only with several torrents.
        let o = run(
            bin,
            &["download", "a.torrent", "b.torrent", "--only", "1"],
            d,
        );
        assert_one_line_error(&o, "--only chooses files of one torrent");
        // A bare port that is taken.
        let taken = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = taken.local_addr().unwrap().port().to_string();
        let o = run(
            bin,
            &["seed", "stuff.torrent", "--data", "data", "--listen", &port],
            d,
        );
        assert_one_line_error(&o, &format!("listening on 0.0.0.0:{port}"));
    }
}

/// Without --listen: port 6881, or the first free one after it.
#[test]
fn the_default_port_is_6881_or_the_next_free_one() {
    for (bin, _) in binaries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        sample_data(&d.join("data/stuff"));
        create(bin, d, "data/stuff", "stuff.torrent");
        let mut seeder = spawn(
            bin,
            d,
            &["-v", "seed", "stuff.torrent", "--data", "data"],
            "s",
        );
        wait_for(&mut seeder, d, "s", "listening on", 1);
        let err = read_log(d, "s.err");
        let port: u16 = err
            .split("listening on 0.0.0.0:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {err}"));
        assert!((6881..=6999).contains(&port), "{port}");
        // Taken now: the next one is taken by the next run.
        let mut second = spawn(
            bin,
            d,
            &["-v", "seed", "stuff.torrent", "--data", "data"],
            "t",
        );
        wait_for(&mut second, d, "t", "listening on", 1);
        let err = read_log(d, "t.err");
        assert!(!err.contains(&format!("0.0.0.0:{port} ")), "{err}");
        seeder.interrupt();
        second.interrupt();
        assert!(wait_exit(&mut seeder.0, Duration::from_secs(30)).is_some());
        assert!(wait_exit(&mut second.0, Duration::from_secs(30)).is_some());
    }
}
