//! Everyday controls against libtorrent on loopback: the rate limits (measured from
//! libtorrent's side), the seeding goals (a clean `stopped` announce, exit 0), and the
//! order `--sequential` verifies pieces in.
//!
//! Each scenario is a function taking the binary; `tessera-mio` and `tessera-smol` get a
//! `#[test]` each.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tessera_tests::data::{Compare, compare_trees};
use tessera_tests::libtorrent::{LtOptions, LtPeer};
use tessera_tests::process::{self, Proc};
use tessera_tests::tessera::Tessera;
use tessera_tests::{Fixture, serial};

const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(30);
/// What Tessera prints (stderr) once `seed` has checked its data.
const SEEDING_LINE: &str = "pieces verified, seeding";
/// The limit both rate tests set: 64 MiB at 4 MiB/s takes 16 s, longer than they measure.
const RATE: u64 = 4 << 20;
/// How long a rate is measured for, after the transfer has started.
const MEASURE: Duration = Duration::from_secs(6);

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits (bounded) until `bytes()` is above 1 MiB, then returns the rate it grows at over
/// [`MEASURE`], in bytes per second.
fn measured_rate(what: &str, mut bytes: impl FnMut() -> u64) -> f64 {
    let started = process::poll_until(Duration::from_secs(60), || bytes() > 1 << 20);
    assert!(started, "{what}: no transfer within 60 s");
    let (t0, b0) = (Instant::now(), bytes());
    std::thread::sleep(MEASURE);
    let (t1, b1) = (Instant::now(), bytes());
    (b1 - b0) as f64 / (t1 - t0).as_secs_f64()
}

fn assert_near(what: &str, rate: f64, limit: u64) {
    let ratio = rate / limit as f64;
    eprintln!(
        "{what}: {:.2} MiB/s measured from libtorrent's side, limit {:.2} MiB/s ({:+.1} %)",
        rate / f64::from(1 << 20),
        limit as f64 / f64::from(1 << 20),
        (ratio - 1.0) * 100.0
    );
    assert!(
        (0.8..=1.2).contains(&ratio),
        "{what}: {rate:.0} B/s against a limit of {limit} B/s"
    );
}

// ---- scenarios --------------------------------------------------------------------------

/// `seed --max-upload-rate 4MiB` to a libtorrent leecher: what libtorrent receives.
fn upload_limit_holds(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let addr = loopback(process::free_port());
    let mut seeder = t.seed_with(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        addr,
        &[],
        &["-v", "--max-upload-rate", "4MiB"],
    );
    seeder.wait_for_stderr_line(SEEDING_LINE, CHECK_TIMEOUT);
    let out = fx.new_dir("out");
    let mut leech = LtPeer::leech(
        &fx.logs(),
        &fx.torrent.path,
        &out,
        &LtOptions {
            peers: vec![addr],
            ..LtOptions::default()
        },
    );
    let rate = measured_rate("upload", || leech.transferred().1);
    assert_near(&format!("{} upload", t.name), rate, RATE);
    // The limit paces, it does not stop: the copy completes, whole.
    leech.wait_done(DOWNLOAD_TIMEOUT);
    compare_trees(&fx.seed_dir, &out, Compare::exact());
    leech.proc().stop();
    seeder.stop();
}

/// `download --max-download-rate 4MiB` from a libtorrent seeder: what libtorrent sends.
fn download_limit_holds(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let mut lt = LtPeer::seed(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        &LtOptions::default(),
    );
    let out = fx.new_dir("out");
    let mut tessera = t.download_with(
        &fx.logs(),
        &fx.torrent.path,
        &out,
        &[lt.addr()],
        &["-v", "--max-download-rate", "4MiB"],
    );
    let rate = measured_rate("download", || lt.transferred().0);
    assert_near(&format!("{} download", t.name), rate, RATE);
    tessera.wait_success(DOWNLOAD_TIMEOUT);
    compare_trees(&fx.seed_dir, &out, Compare::tessera());
    lt.proc().stop();
}

/// `seed --seed-time 5s`: stops five seconds after the check, announces `stopped` (the
/// tracker forgets it) and exits 0.
fn seed_time_stops_on_time(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let addr = loopback(process::free_port());
    let mut seeder = t.seed_with(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        addr,
        &[],
        &["-v", "--seed-time", "5s"],
    );
    let line = seeder.wait_for_stderr_line(SEEDING_LINE, CHECK_TIMEOUT);
    let seeding = Instant::now();
    assert!(
        line.contains("until 5s of seeding"),
        "the seeding message does not name the goal: {line}"
    );
    let listed = process::poll_until(Duration::from_secs(4), || {
        fx.tracker.peers(fx.torrent.info_hash).contains(&addr)
    });
    assert!(
        listed,
        "the tracker never listed the seeder\n{}",
        seeder.tail()
    );
    let status = seeder.wait_exit(Duration::from_secs(30));
    let took = seeding.elapsed();
    eprintln!(
        "{}: seed --seed-time 5s exited {took:.2?} after it said it seeds",
        t.name
    );
    assert!(status.success(), "{status}\n{}", seeder.tail());
    assert!(
        (Duration::from_millis(4500)..Duration::from_secs(9)).contains(&took),
        "stopped {took:?} after seeding began, not 5 s\n{}",
        seeder.tail()
    );
    assert!(
        seeder.stderr().contains("seed time reached"),
        "{}",
        seeder.tail()
    );
    // `stopped` announced: opentracker no longer lists it.
    assert!(
        fx.tracker.peers(fx.torrent.info_hash).is_empty(),
        "still listed after its stopped announce: {:?}",
        fx.tracker.peers(fx.torrent.info_hash)
    );
}

/// `seed --seed-ratio 1.0` to a libtorrent leecher: one whole copy goes out, then Tessera
/// stops on its own and exits 0.
fn seed_ratio_stops_after_one_copy(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let addr = loopback(process::free_port());
    let mut seeder = t.seed_with(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        addr,
        &[],
        &["-v", "--seed-ratio", "1.0"],
    );
    seeder.wait_for_stderr_line(SEEDING_LINE, CHECK_TIMEOUT);
    let out = fx.new_dir("out");
    let mut leech = LtPeer::leech(
        &fx.logs(),
        &fx.torrent.path,
        &out,
        &LtOptions {
            peers: vec![addr],
            keep_seeding: true,
            ..LtOptions::default()
        },
    );
    leech.wait_done(DOWNLOAD_TIMEOUT);
    let status = seeder.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", seeder.tail());
    assert!(
        seeder.stderr().contains("seed ratio reached"),
        "{}",
        seeder.tail()
    );
    let (_, got) = leech.transferred();
    eprintln!(
        "{}: seed --seed-ratio 1.0 stopped after libtorrent had {got} of {} bytes",
        t.name, fx.torrent.total_length
    );
    compare_trees(&fx.seed_dir, &out, Compare::exact());
    let gone = process::poll_until(ANNOUNCE_TIMEOUT, || {
        !fx.tracker.peers(fx.torrent.info_hash).contains(&addr)
    });
    assert!(gone, "the tracker still lists the stopped seeder");
    leech.proc().stop();
}

/// `download --sequential` from one libtorrent seeder: the pieces verified in the first
/// half are, at every point, a prefix of the torrent give or take the look-ahead window.
fn sequential_verifies_in_order(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let mut lt = LtPeer::seed(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        &LtOptions {
            // About 8 s for the whole torrent: many requests in flight at any time.
            upload_limit: 8 << 20,
            ..LtOptions::default()
        },
    );
    let out = fx.new_dir("out");
    let mut tessera = t.download_with(
        &fx.logs(),
        &fx.torrent.path,
        &out,
        &[lt.addr()],
        &["-vvv", "--sequential"],
    );
    tessera.wait_success(DOWNLOAD_TIMEOUT);
    compare_trees(&fx.seed_dir, &out, Compare::tessera());
    lt.proc().stop();
    let order = verified_order(&tessera);
    let n = fx.torrent.num_pieces() as usize;
    assert_eq!(order.len(), n, "every piece verified once");
    // 8 MiB of 256 KiB pieces: the window `--sequential` looks ahead.
    let window = 32;
    let mut have = vec![false; n];
    let mut worst = 0;
    for &piece in &order[..n / 2] {
        have[piece] = true;
        let prefix = have.iter().take_while(|&&h| h).count();
        worst = worst.max(piece.saturating_sub(prefix));
        assert!(
            piece < prefix + window,
            "piece {piece} verified with a prefix of {prefix}: {order:?}"
        );
    }
    eprintln!(
        "{}: --sequential verified the first half at most {worst} pieces ahead of the prefix",
        t.name
    );
}

/// The pieces `download -vvv` verified, in order (its `piece N verified` trace lines).
fn verified_order(p: &Proc) -> Vec<usize> {
    p.stderr()
        .lines()
        .filter_map(|l| {
            let rest = l.split("piece ").nth(1)?;
            let (n, tail) = rest.split_once(' ')?;
            tail.starts_with("verified").then(|| n.parse().ok())?
        })
        .collect()
}

// ---- tests ------------------------------------------------------------------------------

#[test]
fn upload_limit_holds_mio() {
    let _g = serial();
    upload_limit_holds(&Tessera::mio());
}

#[test]
fn upload_limit_holds_smol() {
    let _g = serial();
    upload_limit_holds(&Tessera::smol());
}

#[test]
fn download_limit_holds_mio() {
    let _g = serial();
    download_limit_holds(&Tessera::mio());
}

#[test]
fn download_limit_holds_smol() {
    let _g = serial();
    download_limit_holds(&Tessera::smol());
}

#[test]
fn seed_time_stops_on_time_mio() {
    let _g = serial();
    seed_time_stops_on_time(&Tessera::mio());
}

#[test]
fn seed_ratio_stops_after_one_copy_mio() {
    let _g = serial();
    seed_ratio_stops_after_one_copy(&Tessera::mio());
}

#[test]
fn seed_ratio_stops_after_one_copy_smol() {
    let _g = serial();
    seed_ratio_stops_after_one_copy(&Tessera::smol());
}

#[test]
fn sequential_verifies_in_order_mio() {
    let _g = serial();
    sequential_verifies_in_order(&Tessera::mio());
}
