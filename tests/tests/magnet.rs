//! Magnet links (BEP 9) and peer exchange (BEP 11) against real clients on 127.0.0.1.
//!
//! Tessera fetches the metadata from libtorrent and aria2 seeders (found through the
//! link's tracker, its `x.pe` peers, or `--peer`), libtorrent fetches it from a Tessera
//! seeder, a second run of the same magnet command uses the `.torrent` kept in
//! `DIR/.tessera/`, and Tessera learns a peer it was never told about from libtorrent's
//! `ut_pex`.

use std::path::Path;
use std::time::{Duration, Instant};

use tessera_tests::aria2::Aria2;
use tessera_tests::data::{Compare, compare_trees};
use tessera_tests::libtorrent::{LtOptions, LtPeer};
use tessera_tests::process::free_port;
use tessera_tests::tessera::Tessera;
use tessera_tests::torrent::Torrent;
use tessera_tests::{Fixture, serial};

const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(30);

/// `magnet:?xt=urn:btih:<hash>&dn=<name>` plus `extra` parameters.
fn magnet(fx: &Fixture, extra: &str) -> String {
    format!(
        "magnet:?xt=urn:btih:{}&dn=tessera+set{extra}",
        fx.torrent.info_hash.hex()
    )
}

/// The seconds Tessera reports it took to fetch the metadata.
fn metadata_seconds(stderr: &str) -> f64 {
    stderr
        .lines()
        .find_map(|l| {
            let rest = l.split("metadata received from peers in ").nth(1)?;
            rest.split('s').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no metadata line in:\n{stderr}"))
}

/// The `.torrent` Tessera kept in `out/.tessera/` names the same torrent and the link's
/// trackers.
fn check_saved(fx: &Fixture, out: &Path, trackers: &[String]) {
    let saved = out
        .join(".tessera")
        .join(format!("{}.torrent", fx.torrent.info_hash.hex()));
    let t = Torrent::load(&saved);
    assert_eq!(t.info_hash, fx.torrent.info_hash);
    let bytes = std::fs::read(&saved).expect("saved torrent");
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    match trackers.first() {
        Some(url) => assert!(has(format!("8:announce{}:{url}", url.len()).as_bytes())),
        None => assert!(
            !has(b"8:announce"),
            "no tracker in the link, none in the file"
        ),
    }
}

#[test]
fn mio_downloads_a_magnet_from_libtorrent_named_by_x_pe_then_reuses_the_saved_metadata() {
    let _serial = serial();
    let fx = Fixture::multi_file(18);
    let mut seeder = LtPeer::seed(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        &LtOptions::default(),
    );
    let link = magnet(&fx, &format!("&x.pe={}", seeder.addr()));
    let out = fx.new_dir("out");
    let tessera = Tessera::mio();
    let started = Instant::now();
    let mut run = tessera.download(&fx.logs(), Path::new(&link), &out, &[]);
    run.wait_success(DOWNLOAD_TIMEOUT);
    let total = started.elapsed();
    compare_trees(&fx.seed_dir, &out, Compare::tessera());
    let stderr = run.stderr();
    assert!(stderr.contains("fetching the metadata of"), "{stderr}");
    let secs = metadata_seconds(&stderr);
    eprintln!(
        "magnet from libtorrent over x.pe: metadata in {secs:.3} s, whole download {:.2} s",
        total.as_secs_f64()
    );
    check_saved(&fx, &out, &[]);

    // The seeder is gone: the second run needs no metadata (and no data).
    let _ = seeder.proc().stop();
    let copy = fx.path().join("copy.torrent");
    let mut again = tessera.download_with(
        &fx.logs(),
        Path::new(&link),
        &out,
        &[],
        &["--save-torrent", copy.to_str().expect("utf-8 path")],
    );
    again.wait_success(Duration::from_secs(30));
    let stderr = again.stderr();
    assert!(stderr.contains("using the metadata saved in"), "{stderr}");
    assert!(!stderr.contains("fetching the metadata"), "{stderr}");
    assert_eq!(Torrent::load(&copy).info_hash, fx.torrent.info_hash);
}

#[test]
fn smol_downloads_a_magnet_from_libtorrent_found_through_the_links_tracker() {
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
    let url = fx.tracker.announce_url();
    let encoded: String = url
        .bytes()
        .map(|b| match b {
            b':' => "%3A".to_string(),
            b'/' => "%2F".to_string(),
            _ => (b as char).to_string(),
        })
        .collect();
    let link = magnet(&fx, &format!("&tr={encoded}"));
    let out = fx.new_dir("out");
    let mut run = Tessera::smol().download(&fx.logs(), Path::new(&link), &out, &[]);
    run.wait_success(DOWNLOAD_TIMEOUT);
    compare_trees(&fx.seed_dir, &out, Compare::tessera());
    let secs = metadata_seconds(&run.stderr());
    eprintln!("magnet from libtorrent through the tracker (smol): metadata in {secs:.3} s");
    check_saved(&fx, &out, &[url]);
}

#[test]
fn mio_downloads_a_magnet_from_aria2_given_with_peer() {
    let _serial = serial();
    let fx = Fixture::multi_file(18);
    let seeder = Aria2::seed(&fx.logs(), &fx.torrent.path, &fx.seed_dir);
    let link = magnet(&fx, "");
    let out = fx.new_dir("out");
    let mut run = Tessera::mio().download_with(
        &fx.logs(),
        Path::new(&link),
        &out,
        &[seeder.addr()],
        &["-vv"],
    );
    run.wait_success(DOWNLOAD_TIMEOUT);
    compare_trees(&fx.seed_dir, &out, Compare::tessera());
    let secs = metadata_seconds(&run.stderr());
    eprintln!("magnet from aria2 over --peer: metadata in {secs:.3} s");
}

#[test]
fn libtorrent_fetches_the_metadata_of_a_magnet_from_a_tessera_seeder() {
    let _serial = serial();
    let fx = Fixture::multi_file(18);
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut seed = Tessera::mio().seed(&fx.logs(), &fx.torrent.path, &fx.seed_dir, listen, &[]);
    seed.wait_for_stderr_line("seeding", Duration::from_secs(60));
    let link = magnet(&fx, &format!("&x.pe={listen}"));
    let out = fx.new_dir("out");
    let opts = LtOptions {
        peers: vec![listen],
        ..LtOptions::default()
    };
    let mut leech = LtPeer::leech(&fx.logs(), Path::new(&link), &out, &opts);
    let line = leech.proc().wait_for_line("METADATA", DOWNLOAD_TIMEOUT);
    let secs = leech.wait_done(DOWNLOAD_TIMEOUT);
    compare_trees(&fx.seed_dir, &out, Compare::exact());
    eprintln!("libtorrent from a Tessera seeder: {line}, done in {secs:.2} s");
    let _ = seed.stop();
}

/// Tessera is given only libtorrent peer A (a slow seeder) with a magnet link and no
/// tracker; libtorrent peer B, a slow leecher, is connected to A. A's `ut_pex` (libtorrent
/// sends it about once a minute) is the only way Tessera can learn B: Tessera then connects
/// to B and downloads from it.
#[test]
fn tessera_learns_a_third_peer_through_libtorrents_pex() {
    let _serial = serial();
    let fx = Fixture::multi_file(18);
    let a = LtPeer::seed(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        &LtOptions {
            upload_limit: 400_000,
            ..LtOptions::default()
        },
    );
    let b_out = fx.new_dir("b");
    // B has no tracker either: it dials A itself (the torrent's tracker is fine for B,
    // Tessera never sees it).
    let mut b = LtPeer::leech(
        &fx.logs(),
        &fx.torrent.path,
        &b_out,
        &LtOptions {
            peers: vec![a.addr()],
            download_limit: 300_000,
            keep_seeding: true,
            ..LtOptions::default()
        },
    );
    // A can tell Tessera of B only once B is connected to it.
    b.wait_downloading_from(a.addr(), Duration::from_secs(60));
    let link = magnet(&fx, "");
    let out = fx.new_dir("out");
    let mut run =
        Tessera::mio().download_with(&fx.logs(), Path::new(&link), &out, &[a.addr()], &["-vv"]);
    let started = Instant::now();
    run.wait_for_stderr_line("through PEX", Duration::from_secs(150));
    let learned = started.elapsed();
    run.wait_for_stderr_line(
        &format!("peer {} connected", b.addr()),
        Duration::from_secs(30),
    );
    // B has pieces Tessera lacks (both fetch from A in their own order): it uploads some.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (uploaded, _) = b.transferred();
        if uploaded > 0 {
            eprintln!(
                "learned B through PEX after {:.1} s; B uploaded {uploaded} bytes to Tessera",
                learned.as_secs_f64()
            );
            break;
        }
        assert!(Instant::now() < deadline, "B never uploaded to Tessera");
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = run.stop();
}

/// A Tessera seeder connected to two scripted peers that offer `ut_pex`: for a public
/// torrent the second hears of the first at once (the control), for a private one
/// Tessera neither offers `ut_pex` nor sends it.
#[test]
fn a_private_torrent_gets_no_ut_pex_on_the_wire() {
    let _serial = serial();
    for private in [false, true] {
        let scratch = tessera_tests::Scratch::new();
        let root = scratch.seed_files(
            "set",
            &[tessera_tests::data::FileSpec::new("a.bin", 3 << 20)],
        );
        let torrent = scratch.path().join("set.torrent");
        let tessera = Tessera::mio();
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "create".as_ref(),
            root.as_os_str(),
            "-o".as_ref(),
            torrent.as_os_str(),
        ];
        if private {
            args.push("--private".as_ref());
        }
        let (status, _, stderr) = tessera.run(&args, Duration::from_secs(60));
        assert!(status.success(), "{stderr}");
        let info_hash = Torrent::load(&torrent).info_hash;
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut seed = tessera.seed_with(
            &scratch.logs(),
            &torrent,
            &scratch.seed_dir(),
            listen,
            &[],
            &["-vv"],
        );
        seed.wait_for_stderr_line("seeding", Duration::from_secs(60));
        let first = std::thread::spawn(move || {
            tessera_tests::pex_probe::watch(listen, info_hash, 40001, Duration::from_secs(8))
        });
        std::thread::sleep(Duration::from_secs(1));
        let second =
            tessera_tests::pex_probe::watch(listen, info_hash, 40002, Duration::from_secs(5));
        let first = first.join().expect("first probe");
        let _ = seed.stop();
        for r in [&first, &second] {
            assert!(
                r.ext_handshake && r.offers_metadata,
                "{r:?}\n{}",
                seed.stderr()
            );
            assert_eq!(r.offers_pex, !private, "private {private}: {r:?}");
        }
        let told: Vec<_> = second.pex_added.iter().flatten().copied().collect();
        if private {
            assert!(
                second.pex_added.is_empty() && first.pex_added.is_empty(),
                "{second:?} {first:?}"
            );
        } else {
            let expected = std::net::SocketAddr::from(([127, 0, 0, 1], 40001));
            assert!(told.contains(&expected), "{second:?}");
            assert_eq!(
                second.pex_added.len(),
                1,
                "one message within the minute: {second:?}"
            );
        }
    }
}
