//! Tessera with the clients people run: qBittorrent 4.5 (libtorrent-rasterbar, driven through
//! its Web API) and rtorrent 0.9.8 (libtorrent-rakshasa, driven over XML-RPC), each
//! downloading the standard multi-file set from `tessera-mio seed` and seeding it to
//! `tessera-mio download`, byte for byte, on loopback through opentracker.
//!
//! Which client Tessera talked to is checked in its debug log (`-vv`): the remote's peer id
//! names it (`-qB4520-`, `-lt0D80-`), and it is the only other peer in the swarm.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tessera_tests::data::{Compare, compare_trees};
use tessera_tests::process::{self, Proc};
use tessera_tests::qbittorrent::QBittorrent;
use tessera_tests::rtorrent::Rtorrent;
use tessera_tests::tessera::Tessera;
use tessera_tests::{Fixture, serial};

/// A 64 MiB transfer on loopback takes seconds. Anything near this bound is a bug.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Hashing 64 MiB takes well under a second on these machines.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// What `seed` prints (stderr) once it has checked its data.
const SEEDING_LINE: &str = "pieces verified, seeding";
/// Debug logs on stderr: the peers' ids are in the `connected` lines.
const LOGS: &[&str] = &["-vv"];
/// Peer-id prefixes (Azureus style) of the Debian builds.
const QBITTORRENT_ID: &str = "-qB4520-";
const RTORRENT_ID: &str = "-lt0D80-";

// ---- scenarios --------------------------------------------------------------------------

/// qBittorrent is told Tessera's address (`addPeers`) and also finds it through opentracker.
fn qbittorrent_downloads_from_seed(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let (mut seeder, addr) = start_seed(t, &fx, &[]);
    let out = fx.new_dir("out");
    let mut qb = QBittorrent::start(fx.path(), &fx.logs());
    let started = Instant::now();
    qb.add(&fx.torrent.path, &out, fx.torrent.info_hash);
    qb.add_peers(fx.torrent.info_hash, &[addr]);
    qb.wait_complete(fx.torrent.info_hash, DOWNLOAD_TIMEOUT);
    eprintln!(
        "qBittorrent downloaded {} bytes from {} in {:.1?}",
        fx.torrent.total_length,
        t.name,
        started.elapsed()
    );
    compare_trees(&fx.seed_dir, &out, Compare::exact());
    assert_talked_to(&seeder, QBITTORRENT_ID);
    assert_still_seeding(&mut seeder);
}

/// qBittorrent seeds; Tessera learns of it from opentracker only.
fn downloads_from_qbittorrent(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let mut qb = QBittorrent::seed(
        fx.path(),
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        fx.torrent.info_hash,
    );
    fx.tracker
        .wait_for_seeders(fx.torrent.info_hash, 1, ANNOUNCE_TIMEOUT);
    let dl = download_and_compare(t, &fx);
    assert_talked_to(&dl, QBITTORRENT_ID);
    // qBittorrent refreshes its counters every 1.5 s.
    let mut uploaded = 0;
    process::poll_until(Duration::from_secs(10), || {
        uploaded = qb.info(fx.torrent.info_hash).map_or(0, |i| i.uploaded);
        uploaded >= fx.torrent.total_length
    });
    assert!(
        uploaded >= fx.torrent.total_length,
        "qBittorrent reports {uploaded} bytes uploaded, less than the torrent's {}",
        fx.torrent.total_length
    );
}

/// rtorrent keeps one peer per IP address, and on loopback every peer is 127.0.0.1: from
/// opentracker's list it may pick its own entry, find it is itself, and dial nobody else
/// (seen in about one run in three). So it starts first, and Tessera dials it (`--peer`),
/// as with transmission.
fn rtorrent_downloads_from_seed(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let out = fx.new_dir("out");
    let mut rt = Rtorrent::start(fx.path(), &fx.logs());
    rt.load(&fx.torrent.path, &out);
    let started = Instant::now();
    let (mut seeder, _addr) = start_seed(t, &fx, &[rt.peer_addr()]);
    rt.wait_complete(fx.torrent.info_hash, DOWNLOAD_TIMEOUT);
    eprintln!(
        "rtorrent downloaded {} bytes from {} in {:.1?}",
        fx.torrent.total_length,
        t.name,
        started.elapsed()
    );
    compare_trees(&fx.seed_dir, &out, Compare::exact());
    assert_talked_to(&seeder, RTORRENT_ID);
    assert_still_seeding(&mut seeder);
}

/// rtorrent seeds; Tessera learns of it from opentracker only.
fn downloads_from_rtorrent(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let mut rt = Rtorrent::seed(
        fx.path(),
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        fx.torrent.info_hash,
    );
    fx.tracker
        .wait_for_seeders(fx.torrent.info_hash, 1, ANNOUNCE_TIMEOUT);
    let dl = download_and_compare(t, &fx);
    assert_talked_to(&dl, RTORRENT_ID);
    let uploaded = rt.get_int("d.up.total", fx.torrent.info_hash).unwrap_or(0);
    assert!(
        u64::try_from(uploaded).unwrap_or(0) >= fx.torrent.total_length,
        "rtorrent reports {uploaded} bytes uploaded, less than the torrent's {}\n{}",
        fx.torrent.total_length,
        rt.tail()
    );
}

// ---- helpers ----------------------------------------------------------------------------

/// `seed --data <seed dir> --listen 127.0.0.1:<free> [--peer ..]... -vv`; returns once it
/// has checked the data and opentracker lists it.
fn start_seed(t: &Tessera, fx: &Fixture, peers: &[SocketAddr]) -> (Proc, SocketAddr) {
    let addr = SocketAddr::from(([127, 0, 0, 1], process::free_port()));
    let mut p = t.seed_with(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        addr,
        peers,
        LOGS,
    );
    p.wait_for_stderr_line(SEEDING_LINE, CHECK_TIMEOUT);
    let listed = process::poll_until(ANNOUNCE_TIMEOUT, || {
        fx.tracker.peers(fx.torrent.info_hash).contains(&addr)
    });
    assert!(
        listed,
        "opentracker does not list {} at {addr} {ANNOUNCE_TIMEOUT:?} after it said it seeds\n{}",
        t.name,
        p.tail()
    );
    (p, addr)
}

/// `download -o <temp>/out -vv` with peers from the tracker only; exit 0 within the bound;
/// same bytes as the seed data. Returns the exited process (its logs).
fn download_and_compare(t: &Tessera, fx: &Fixture) -> Proc {
    let out = fx.new_dir("out");
    let started = Instant::now();
    let mut dl = t.download_with(&fx.logs(), &fx.torrent.path, &out, &[], LOGS);
    dl.wait_success(DOWNLOAD_TIMEOUT);
    eprintln!(
        "{} downloaded {} bytes in {:.1?}",
        t.name,
        fx.torrent.total_length,
        started.elapsed()
    );
    compare_trees(&fx.seed_dir, &out, Compare::tessera());
    dl
}

/// Tessera's debug log shows a connection to a peer whose id starts with `prefix`.
fn assert_talked_to(p: &Proc, prefix: &str) {
    let needle = format!("connected ({prefix}");
    assert!(
        p.stderr().lines().any(|l| l.contains(&needle)),
        "{} logged no connection to a {prefix} peer\n{}",
        p.name(),
        p.tail()
    );
}

fn assert_still_seeding(p: &mut Proc) {
    assert!(
        p.is_running(),
        "{} exited while it should be seeding\n{}",
        p.name(),
        p.tail()
    );
}

// ---- tessera-mio --------------------------------------------------------------------------

#[test]
fn mio_seed_to_qbittorrent() {
    let _serial = serial();
    qbittorrent_downloads_from_seed(&Tessera::mio());
}

#[test]
fn mio_downloads_from_qbittorrent() {
    let _serial = serial();
    downloads_from_qbittorrent(&Tessera::mio());
}

#[test]
fn mio_seed_to_rtorrent() {
    let _serial = serial();
    rtorrent_downloads_from_seed(&Tessera::mio());
}

#[test]
fn mio_downloads_from_rtorrent() {
    let _serial = serial();
    downloads_from_rtorrent(&Tessera::mio());
}

// ---- tessera-smol -------------------------------------------------------------------------

#[test]
fn smol_downloads_from_rtorrent() {
    let _serial = serial();
    downloads_from_rtorrent(&Tessera::smol());
}
