//! Several torrents in one `download` run, from real seeders (libtorrent, one per torrent,
//! through opentracker): all three complete byte for byte in one session; Ctrl-C in the
//! middle stops all three cleanly, each with its resume data, and the same command
//! resumes all three without hashing and without fetching their verified pieces again.

use std::path::Path;
use std::time::{Duration, Instant};

use tessera_tests::data::{self, Compare, FileSpec, compare_trees};
use tessera_tests::libtorrent::{LtOptions, LtPeer};
use tessera_tests::resume_file::{self, Resume};
use tessera_tests::tessera::Tessera;
use tessera_tests::torrent::{self, Torrent};
use tessera_tests::tracker::Opentracker;
use tessera_tests::{Scratch, serial};

const PIECE_LOG2: u32 = 18;
/// Each seeder's upload limit: a torrent of 16 MiB takes 4 s, so a stop in the middle is
/// reachable.
const SEEDER_RATE: u64 = 4 << 20;
/// What may be lost per torrent at an interruption: blocks in flight, pieces not yet
/// written (see `tests/resume.rs`).
const IN_FLIGHT: u64 = 16 << PIECE_LOG2;
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Three torrents with their seeders, announced to one tracker.
struct Three {
    scratch: Scratch,
    _tracker: Opentracker,
    torrents: Vec<Torrent>,
    seeders: Vec<LtPeer>,
}

impl Three {
    fn start() -> Three {
        let scratch = Scratch::new();
        let logs = scratch.logs();
        let mut tracker = Opentracker::start(&logs, &[]);
        let sets: [(&str, Vec<FileSpec>); 3] = [
            (
                "first set",
                vec![
                    FileSpec::new("a.bin", 9_000_011),
                    FileSpec::new("b/c.bin", 7_777_777),
                ],
            ),
            ("second.bin", vec![FileSpec::new("", 16_000_003)]),
            (
                "third",
                vec![
                    FileSpec::new("x.bin", 5_000_000),
                    FileSpec::new("empty", 0),
                    FileSpec::new("y/z.bin", 11_111_111),
                ],
            ),
        ];
        let mut torrents = Vec::new();
        for (i, (name, spec)) in sets.iter().enumerate() {
            let path = scratch.seed_dir().join(name);
            if spec.len() == 1 && spec[0].path.is_empty() {
                // A single-file torrent.
                std::fs::create_dir_all(scratch.seed_dir()).expect("seed dir");
                let one = [FileSpec::new(name, spec[0].len)];
                data::make_files(&scratch.seed_dir(), &one, 77 + i as u64);
            } else {
                data::make_files(&path, spec, 77 + i as u64);
            }
            let out = scratch.path().join(format!("{i}.torrent"));
            torrent::mktorrent(&path, PIECE_LOG2, &tracker.announce_url(), &out, &logs);
            let t = Torrent::load(&out);
            tracker.allow(t.info_hash);
            torrents.push(t);
        }
        let seeders = torrents
            .iter()
            .map(|t| {
                LtPeer::seed(
                    &logs,
                    &t.path,
                    &scratch.seed_dir(),
                    &LtOptions {
                        upload_limit: SEEDER_RATE,
                        ..LtOptions::default()
                    },
                )
            })
            .collect();
        for t in &torrents {
            tracker.wait_for_seeders(t.info_hash, 1, Duration::from_secs(30));
        }
        Three {
            scratch,
            _tracker: tracker,
            torrents,
            seeders,
        }
    }

    fn paths(&self) -> Vec<&Path> {
        self.torrents.iter().map(|t| t.path.as_path()).collect()
    }

    fn total(&self) -> u64 {
        self.torrents.iter().map(|t| t.total_length).sum()
    }

    /// What the seeders uploaded, each, once their counters stop moving (bounded).
    fn uploaded(&mut self) -> Vec<u64> {
        let mut last: Vec<u64> = self.seeders.iter_mut().map(|s| s.transferred().0).collect();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(100));
            let now: Vec<u64> = self.seeders.iter_mut().map(|s| s.transferred().0).collect();
            if now == last {
                break;
            }
            last = now;
        }
        last
    }

    /// Every torrent's data in `out`, compared with the seeders', and each resume file
    /// listing every piece.
    fn check(&self, out: &Path) {
        compare_trees(&self.scratch.seed_dir(), out, Compare::tessera());
        for t in &self.torrents {
            let resume = Resume::load(&resume_file::path(out, t.info_hash))
                .unwrap_or_else(|e| panic!("{}: no valid resume file: {e}", t.name));
            assert_eq!(resume.count(), t.num_pieces() as usize, "{}", t.name);
        }
    }
}

fn three_at_once(t: &Tessera) {
    let mut three = Three::start();
    let out = three.scratch.new_dir("out");
    let mut dl = t.download_many(&three.scratch.logs(), &three.paths(), &out, &[]);
    dl.wait_success(RUN_TIMEOUT);
    three.check(&out);
    // One summary line per torrent, then the total.
    let summary = dl.stdout();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(lines.len(), 4, "{summary}");
    for (line, t) in lines.iter().zip(&three.torrents) {
        assert!(line.starts_with(&format!("{}: ", t.name)), "{summary}");
    }
    assert!(
        lines[3].starts_with("total: 3 torrents, 3 complete, "),
        "{summary}"
    );
    // Every seeder served its torrent to that one process: all three were fetched at
    // once, in one session (one listening port).
    let up = three.uploaded();
    for (u, t) in up.iter().zip(&three.torrents) {
        assert!(*u >= t.total_length, "{}: {u} uploaded", t.name);
    }
}

fn ctrl_c_then_resume_all_three(t: &Tessera) {
    let mut three = Three::start();
    let total = three.total();
    let out = three.scratch.new_dir("out");
    let mut dl = t.download_many(&three.scratch.logs(), &three.paths(), &out, &[]);
    // Wait until every torrent is under way and the whole is about 40 % done.
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let up: Vec<u64> = three
            .seeders
            .iter_mut()
            .map(|s| s.transferred().0)
            .collect();
        if up.iter().all(|&u| u >= 2 * IN_FLIGHT) && up.iter().sum::<u64>() >= total * 2 / 5 {
            break;
        }
        assert!(dl.is_running(), "the download ended early\n{}", dl.tail());
        assert!(Instant::now() < deadline, "too slow: {up:?}\n{}", dl.tail());
        std::thread::sleep(Duration::from_millis(50));
    }
    dl.signal("INT");
    let status = dl.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(0),
        "a Ctrl-C stop exits 0\n{}",
        dl.tail()
    );
    let at_stop = three.uploaded();
    let stopped = dl.stderr();
    let mut verified = Vec::new();
    for tor in &three.torrents {
        let resume = Resume::load(&resume_file::path(&out, tor.info_hash))
            .unwrap_or_else(|e| panic!("{}: no resume file after Ctrl-C: {e}", tor.name));
        let n = tor.num_pieces() as usize;
        let k = resume.count();
        assert!(k > 0 && k < n, "{}: {k} of {n} pieces at 40 %", tor.name);
        assert!(
            stopped.contains(&format!(
                "{}: stopped with {k} of {n} pieces verified; the same command resumes",
                tor.name
            )),
            "{stopped}"
        );
        // What it lists is on disk.
        let listed = (0..n as u32).filter(|&p| resume.verified[p as usize]);
        let bad = resume_file::bad_pieces(tor, &out, listed);
        assert!(
            bad.is_empty(),
            "{}: listed but not on disk: {bad:?}",
            tor.name
        );
        verified.push((k, n));
    }

    let mut dl = t.download_many(&three.scratch.logs(), &three.paths(), &out, &[]);
    dl.wait_success(RUN_TIMEOUT);
    let resumed = dl.stderr();
    for (tor, (k, n)) in three.torrents.iter().zip(&verified) {
        assert!(
            resumed.contains(&format!(
                "{}: resuming with {k} of {n} pieces verified",
                tor.name
            )),
            "{resumed}"
        );
    }
    assert!(
        !resumed.contains("checking"),
        "the second run hashed: {resumed}"
    );
    three.check(&out);
    let up = three.uploaded();
    eprintln!(
        "{}: {verified:?} pieces verified at Ctrl-C; uploaded {at_stop:?} by then, {up:?} in all",
        t.name
    );
    for (u, tor) in up.iter().zip(&three.torrents) {
        assert!(
            *u <= tor.total_length + IN_FLIGHT,
            "{}: fetched verified pieces again: {u} uploaded for {}",
            tor.name,
            tor.total_length
        );
    }
}

#[test]
fn mio_three_torrents_at_once() {
    let _serial = serial();
    three_at_once(&Tessera::mio());
}

#[test]
fn mio_three_torrents_ctrl_c_then_resume() {
    let _serial = serial();
    ctrl_c_then_resume_all_three(&Tessera::mio());
}

#[test]
fn smol_three_torrents_ctrl_c_then_resume() {
    let _serial = serial();
    ctrl_c_then_resume_all_three(&Tessera::smol());
}
