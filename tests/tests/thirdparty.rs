//! The harness checked with third-party pairs only: if these fail, the fault is in the harness
//! or the machine (tracker whitelist, client settings, data generation), not in Tessera.

use std::time::Duration;

use tessera_tests::aria2::Aria2;
use tessera_tests::data::{Compare, compare_trees};
use tessera_tests::libtorrent::{LtOptions, LtPeer};
use tessera_tests::process::poll_until;
use tessera_tests::scripted_leecher::{Behaviour, Ending, ScriptedLeecher};
use tessera_tests::scripted_peer::ScriptedSeeder;
use tessera_tests::transmission::Transmission;
use tessera_tests::{Fixture, serial};

const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn aria2_downloads_from_libtorrent_through_opentracker() {
    let _serial = serial();
    let fx = Fixture::multi_file(18);
    let _seeder = LtPeer::seed(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        &LtOptions::default(),
    );
    fx.tracker
        .wait_for_seeders(fx.torrent.info_hash, 1, ANNOUNCE_TIMEOUT);

    let out = fx.new_dir("out");
    let mut aria2 = Aria2::download(&fx.logs(), &fx.torrent.path, &out);
    aria2.proc().wait_success(DOWNLOAD_TIMEOUT);
    compare_trees(&fx.seed_dir, &out, Compare::exact());
}

#[test]
fn libtorrent_downloads_from_aria2_through_opentracker() {
    let _serial = serial();
    let fx = Fixture::multi_file(20);
    let _seeder = Aria2::seed(&fx.logs(), &fx.torrent.path, &fx.seed_dir);
    fx.tracker
        .wait_for_seeders(fx.torrent.info_hash, 1, ANNOUNCE_TIMEOUT);

    let out = fx.new_dir("out");
    let mut leech = LtPeer::leech(&fx.logs(), &fx.torrent.path, &out, &LtOptions::default());
    leech.wait_done(DOWNLOAD_TIMEOUT);
    compare_trees(&fx.seed_dir, &out, Compare::exact());
}

#[test]
fn libtorrent_downloads_from_transmission_through_opentracker() {
    let _serial = serial();
    let fx = Fixture::multi_file(18);
    let _seeder = Transmission::seed(
        &fx.path().join("tr-seed"),
        &fx.torrent.path,
        &fx.seed_dir,
        fx.torrent.info_hash,
    );
    fx.tracker
        .wait_for_seeders(fx.torrent.info_hash, 1, ANNOUNCE_TIMEOUT);

    let out = fx.new_dir("out");
    let mut leech = LtPeer::leech(&fx.logs(), &fx.torrent.path, &out, &LtOptions::default());
    leech.wait_done(DOWNLOAD_TIMEOUT);
    compare_trees(&fx.seed_dir, &out, Compare::exact());
}

/// transmission never dials loopback peers, so the seeder dials it; it never creates the
/// zero-length file.
#[test]
fn transmission_downloads_from_libtorrent_that_dials_it() {
    let _serial = serial();
    let fx = Fixture::multi_file(18);
    let out = fx.new_dir("out");
    let mut leech = Transmission::start(&fx.path().join("tr-leech"), &out);
    leech.add(&fx.torrent.path, &out);
    let opts = LtOptions {
        peers: vec![leech.peer_addr()],
        ..LtOptions::default()
    };
    let _seeder = LtPeer::seed(&fx.logs(), &fx.torrent.path, &fx.seed_dir, &opts);
    leech.wait_complete(fx.torrent.info_hash, DOWNLOAD_TIMEOUT);
    compare_trees(&fx.seed_dir, &out, Compare::transmission());
}

/// The scripted seeder speaks enough BitTorrent for libtorrent to download everything from it.
#[test]
fn libtorrent_downloads_from_the_honest_scripted_seeder() {
    let _serial = serial();
    let fx = Fixture::multi_file(15);
    let scripted = ScriptedSeeder::start(&fx.torrent, &fx.seed_dir, |_| false);
    let out = fx.new_dir("out");
    let opts = LtOptions {
        peers: vec![scripted.addr()],
        ..LtOptions::default()
    };
    let mut leech = LtPeer::leech(&fx.logs(), &fx.torrent.path, &out, &opts);
    leech.wait_done(DOWNLOAD_TIMEOUT);
    compare_trees(&fx.seed_dir, &out, Compare::exact());

    let stats = scripted.stats();
    assert!(stats.handshakes >= 1, "{stats:?}");
    assert_eq!(stats.corrupt_blocks_served, 0, "{stats:?}");
    // No assertion on protocol_errors: libtorrent first tries an encrypted (MSE) handshake,
    // which the scripted seeder drops as a protocol error, then retries in plaintext.
    // 64 MiB in 16 KiB blocks.
    assert!(
        stats.blocks_served >= fx.torrent.total_length / 16384,
        "{stats:?}"
    );
}

/// The corrupting seeder's bad blocks are caught by libtorrent's hash checks, and the honest
/// seeder (rate-limited while the scripted one is fast, so libtorrent asks both) fills in.
#[test]
fn libtorrent_survives_the_corrupting_scripted_seeder() {
    let _serial = serial();
    let fx = Fixture::multi_file(18);
    let scripted = ScriptedSeeder::start(&fx.torrent, &fx.seed_dir, |piece| piece % 3 == 0);
    let limited = LtOptions {
        upload_limit: 8 << 20,
        ..LtOptions::default()
    };
    let mut honest = LtPeer::seed(&fx.logs(), &fx.torrent.path, &fx.seed_dir, &limited);
    let out = fx.new_dir("out");
    let opts = LtOptions {
        peers: vec![scripted.addr(), honest.addr()],
        ..LtOptions::default()
    };
    let mut leech = LtPeer::leech(&fx.logs(), &fx.torrent.path, &out, &opts);
    leech.wait_done(DOWNLOAD_TIMEOUT);
    compare_trees(&fx.seed_dir, &out, Compare::exact());

    let stats = scripted.stats();
    assert!(stats.corrupt_blocks_served > 0, "{stats:?}");
    let (uploaded, _) = honest.transferred();
    assert!(uploaded > 0, "the honest seeder uploaded nothing");
}

/// The polite scripted leecher downloads and checks pieces from libtorrent, and catches the
/// corrupting scripted seeder's pieces: its SHA-1 check, which the seeding tests rely on, works
/// both ways.
#[test]
fn polite_scripted_leecher_checks_pieces() {
    let _serial = serial();
    let fx = Fixture::multi_file(18);
    let mut lt = LtPeer::seed(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        &LtOptions::default(),
    );
    let polite = Behaviour::Polite {
        first: 3,
        pieces: 6,
    };
    let leecher = ScriptedLeecher::start(lt.addr(), &fx.torrent, polite);
    let done = poll_until(Duration::from_secs(60), || {
        leecher.pieces_verified() >= 6 || leecher.is_finished()
    });
    let report = leecher.finish();
    assert!(
        done,
        "no 6 pieces from libtorrent in 60 s: {report:?}\n{}",
        lt.proc().tail()
    );
    assert_eq!(report.bad_blocks, 0, "{report:?}");
    assert_eq!(report.ending, Ending::Open, "{report:?}");
    assert_eq!(report.pieces_offered, fx.torrent.num_pieces(), "{report:?}");

    // Pieces 3, 6 are corrupted (piece % 3 == 0), 4, 5, 7, 8 are not.
    let scripted = ScriptedSeeder::start(&fx.torrent, &fx.seed_dir, |piece| piece % 3 == 0);
    let leecher = ScriptedLeecher::start(scripted.addr(), &fx.torrent, polite);
    let done = poll_until(Duration::from_secs(60), || {
        leecher.pieces_verified() >= 4 || leecher.is_finished()
    });
    // The two corrupted pieces are reported as bad, not verified.
    let settled = poll_until(Duration::from_secs(10), || {
        scripted.stats().blocks_served >= 96
    });
    let report = leecher.finish();
    assert!(done && settled, "{report:?} {:?}", scripted.stats());
    assert_eq!(report.pieces_verified, 4, "{report:?}");
    assert_eq!(report.bad_blocks, 2, "{report:?}");
}
