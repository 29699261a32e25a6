//! Interrupted downloads resume: SIGKILL at several points and Ctrl-C, each followed by the
//! same command, from a real seeder (libtorrent). What the seeder uploaded across all runs
//! shows that no piece verified before an interruption was fetched again.
//!
//! **In-flight allowance.** An interruption may lose what was in flight: blocks of pieces
//! not complete yet (in memory), complete pieces whose write had not finished, and bytes
//! the seeder had written to its socket that Tessera had not read. With one seeder serving
//! requests in order at 8 MiB/s that is a few pieces; [`IN_FLIGHT`] allows 16 pieces of
//! 256 KiB (4 MiB, half a second of transfer) per interruption. Fetching again even one of
//! the verified parts would exceed it: at the first kill alone (25 %) that is 16 MiB.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use tessera_tests::data::{Compare, compare_trees};
use tessera_tests::libtorrent::{LtOptions, LtPeer};
use tessera_tests::process::Proc;
use tessera_tests::resume_file::{self, Resume};
use tessera_tests::tessera::Tessera;
use tessera_tests::{Fixture, serial};

const PIECE_LOG2: u32 = 18;
/// What may be lost per interruption (see the module docs).
const IN_FLIGHT: u64 = 16 << PIECE_LOG2;
/// The seeder's upload limit: the 64 MiB set takes 8 s, so the kill points are reachable.
const SEEDER_RATE: u64 = 8 << 20;
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(30);

struct Setup {
    fx: Fixture,
    seeder: LtPeer,
}

fn setup() -> Setup {
    let fx = Fixture::multi_file(PIECE_LOG2);
    let seeder = LtPeer::seed(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        &LtOptions {
            upload_limit: SEEDER_RATE,
            ..LtOptions::default()
        },
    );
    fx.tracker
        .wait_for_seeders(fx.torrent.info_hash, 1, ANNOUNCE_TIMEOUT);
    Setup { fx, seeder }
}

/// Waits (bounded) until the seeder has uploaded `bytes` in all, while `dl` runs.
fn wait_uploaded(seeder: &mut LtPeer, dl: &mut Proc, bytes: u64) -> u64 {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let (up, _) = seeder.transferred();
        if up >= bytes {
            return up;
        }
        assert!(
            dl.is_running(),
            "the download ended before the seeder had uploaded {bytes} bytes (at {up})\n{}",
            dl.tail()
        );
        assert!(
            Instant::now() < deadline,
            "the seeder uploaded only {up} of {bytes} bytes in {RUN_TIMEOUT:?}\n{}",
            dl.tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The seeder's upload counter once it stops moving (bounded).
fn settled_upload(seeder: &mut LtPeer) -> u64 {
    let mut last = seeder.transferred().0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let now = seeder.transferred().0;
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

fn check_result(t: &Tessera, fx: &Fixture, out: &Path) {
    compare_trees(&fx.seed_dir, out, Compare::tessera());
    // `verify` agrees, and the resume file says everything is verified.
    let (status, stdout, stderr) = t.run(
        &[
            OsStr::new("verify"),
            fx.torrent.path.as_os_str(),
            OsStr::new("--data"),
            out.as_os_str(),
        ],
        Duration::from_secs(60),
    );
    assert!(status.success(), "verify: {stdout}\n{stderr}");
    let resume = Resume::load(&resume_file::path(out, fx.torrent.info_hash))
        .unwrap_or_else(|e| panic!("{} left no valid resume file: {e}", t.name));
    assert_eq!(resume.info_hash, fx.torrent.info_hash);
    assert_eq!(resume.count(), fx.torrent.num_pieces() as usize);
}

// ---- scenarios ----------------------------------------------------------------------------

/// SIGKILL at ~25 %, ~60 % and ~90 % of the seeder's upload, the same command after each;
/// then a last run completes. Byte for byte, and the seeder uploaded at most the torrent
/// plus [`IN_FLIGHT`] per kill.
fn kill_and_resume(t: &Tessera) {
    let Setup { fx, mut seeder } = setup();
    let total = fx.torrent.total_length;
    let out = fx.new_dir("out");
    let torrent = &fx.torrent.path;
    let mut at_kill = Vec::new();
    let mut first_lines = Vec::new();
    for (i, fraction) in [0.25, 0.60, 0.90].into_iter().enumerate() {
        let mut dl = t.download(&fx.logs(), torrent, &out, &[]);
        let target = (total as f64 * fraction) as u64;
        wait_uploaded(&mut seeder, &mut dl, target);
        dl.signal("KILL");
        let status = dl.wait_exit(Duration::from_secs(10));
        assert!(
            !status.success(),
            "run {i} was not killed: {status}\n{}",
            dl.tail()
        );
        at_kill.push(settled_upload(&mut seeder));
        first_lines.push(dl.stderr().lines().next().unwrap_or_default().to_owned());
    }
    let started = Instant::now();
    let mut dl = t.download(&fx.logs(), torrent, &out, &[]);
    dl.wait_success(RUN_TIMEOUT);
    let last_run = started.elapsed();
    let uploaded = settled_upload(&mut seeder);
    eprintln!(
        "{}: seeder uploaded {at_kill:?} at the kills, {uploaded} in all for {total} bytes \
         (waste {} bytes; allowance {}); last run {last_run:.1?}; first lines {first_lines:?}",
        t.name,
        uploaded.saturating_sub(total),
        3 * IN_FLIGHT
    );
    check_result(t, &fx, &out);
    // Each restart after a kill found the data by hashing (the resume data was older than
    // the files) and said so.
    let restart = dl.stderr();
    assert!(
        restart.contains("checking the data") && restart.contains("pieces already on disk"),
        "the run after a SIGKILL did not check the data:\n{restart}"
    );
    assert!(
        uploaded <= total + 3 * IN_FLIGHT,
        "{} fetched verified data again: the seeder uploaded {uploaded} bytes for a \
         {total}-byte torrent over three kills (allowed {} in flight per kill)",
        t.name,
        IN_FLIGHT
    );
}

/// Ctrl-C at ~40 %: `stopped` to the tracker, exit 0, a resume file listing what was
/// verified; the same command
/// resumes from it without hashing and without fetching those pieces again. A third run
/// of the completed download needs no peer at all.
fn ctrl_c_and_resume(t: &Tessera) {
    let Setup { fx, mut seeder } = setup();
    let total = fx.torrent.total_length;
    let out = fx.new_dir("out");
    let torrent = &fx.torrent.path;
    let mut dl = t.download(&fx.logs(), torrent, &out, &[]);
    wait_uploaded(&mut seeder, &mut dl, total * 2 / 5);
    let hash = fx.torrent.info_hash;
    assert!(
        fx.tracker.scrape(hash).incomplete >= 1,
        "{} has not announced itself as a leecher",
        t.name
    );
    dl.signal("INT");
    let status = dl.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(0),
        "{}: a Ctrl-C stop should exit 0\n{}",
        t.name,
        dl.tail()
    );
    let at_stop = settled_upload(&mut seeder);
    // The clean stop told the tracker (`event=stopped`): no leecher left.
    assert_eq!(
        fx.tracker.scrape(hash).incomplete,
        0,
        "{} did not send `stopped` to the tracker",
        t.name
    );
    let resume = Resume::load(&resume_file::path(&out, fx.torrent.info_hash))
        .unwrap_or_else(|e| panic!("{}: no valid resume file after Ctrl-C: {e}", t.name));
    let verified = resume.count();
    let n = fx.torrent.num_pieces() as usize;
    assert!(
        verified > 0 && verified < n,
        "{verified} of {n} pieces in the resume file after a stop at 40 %"
    );
    // What it lists is on disk.
    let listed = (0..n as u32).filter(|&p| resume.verified[p as usize]);
    let bad = resume_file::bad_pieces(&fx.torrent, &out, listed);
    assert!(
        bad.is_empty(),
        "pieces listed as verified but not on disk: {bad:?}"
    );
    let stopped = dl.stderr();
    assert!(
        stopped.contains(&format!("stopped with {verified} of {n} pieces verified")),
        "{stopped}"
    );

    let mut dl = t.download(&fx.logs(), torrent, &out, &[]);
    dl.wait_success(RUN_TIMEOUT);
    let resumed = dl.stderr();
    assert!(
        resumed.contains(&format!("resuming with {verified} of {n} pieces verified")),
        "the second run did not resume from the resume file:\n{resumed}"
    );
    assert!(
        !resumed.contains("checking"),
        "the second run hashed the data:\n{resumed}"
    );
    let uploaded = settled_upload(&mut seeder);
    eprintln!(
        "{}: {verified} of {n} pieces verified at Ctrl-C; seeder uploaded {at_stop} by then, \
         {uploaded} in all for {total} (waste {})",
        t.name,
        uploaded.saturating_sub(total)
    );
    check_result(t, &fx, &out);
    assert!(
        uploaded <= total + IN_FLIGHT,
        "{} fetched verified pieces again after Ctrl-C: {uploaded} bytes uploaded for {total}",
        t.name
    );

    // Complete: the same command is done at once, with the seeder and tracker gone.
    drop(seeder);
    let before = fs::metadata(out.join(Fixture::NAME).join("alpha.bin"))
        .and_then(|m| m.modified())
        .expect("stat alpha.bin");
    let started = Instant::now();
    let mut dl = t.download(&fx.logs(), torrent, &out, &[]);
    dl.wait_success(Duration::from_secs(30));
    assert!(
        dl.stderr()
            .contains(&format!("resuming with {n} of {n} pieces verified")),
        "{}",
        dl.tail()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let after = fs::metadata(out.join(Fixture::NAME).join("alpha.bin"))
        .and_then(|m| m.modified())
        .expect("stat alpha.bin");
    assert_eq!(before, after, "a complete download was written again");
}

/// `--recheck` hashes the data even with a valid resume file, and a resume file that
/// lies (a verified piece corrupted on disk behind Tessera's back, mtime restored) is
/// caught by it.
fn recheck_finds_damage(t: &Tessera) {
    let Setup { fx, seeder } = setup();
    let out = fx.new_dir("out");
    let torrent = &fx.torrent.path;
    let mut dl = t.download(&fx.logs(), torrent, &out, &[]);
    dl.wait_success(RUN_TIMEOUT);
    // Flip a byte in the middle of a file, keeping its modification time.
    let victim = out.join(Fixture::NAME).join("sub dir/nested/mid.bin");
    let mtime = fs::metadata(&victim)
        .and_then(|m| m.modified())
        .expect("stat");
    let mut data = fs::read(&victim).expect("read");
    data[1_000_000] ^= 0x40;
    fs::write(&victim, data).expect("write");
    fs::File::options()
        .write(true)
        .open(&victim)
        .and_then(|f| f.set_modified(mtime))
        .expect("restore mtime");
    let mut dl = t.download_with(&fx.logs(), torrent, &out, &[], &["--recheck"]);
    dl.wait_success(RUN_TIMEOUT);
    let err = dl.stderr();
    assert!(
        err.contains("checking the data") && err.contains("--recheck"),
        "{err}"
    );
    let n = fx.torrent.num_pieces();
    assert!(
        err.contains(&format!("{} of {n} pieces already on disk", n - 1)),
        "{err}"
    );
    check_result(t, &fx, &out);
    drop(seeder);
}

// ---- tessera-mio ----------------------------------------------------------------------------

#[test]
fn mio_kill_and_resume() {
    let _serial = serial();
    kill_and_resume(&Tessera::mio());
}

#[test]
fn mio_ctrl_c_and_resume() {
    let _serial = serial();
    ctrl_c_and_resume(&Tessera::mio());
}

#[test]
fn mio_recheck_finds_damage() {
    let _serial = serial();
    recheck_finds_damage(&Tessera::mio());
}

// ---- tessera-smol ---------------------------------------------------------------------------

#[test]
fn smol_ctrl_c_and_resume() {
    let _serial = serial();
    ctrl_c_and_resume(&Tessera::smol());
}

#[test]
fn smol_kill_and_resume() {
    let _serial = serial();
    kill_and_resume(&Tessera::smol());
}
