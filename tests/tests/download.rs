//! `tessera-mio download` against real seeders on loopback, through opentracker.
//!
//! Each scenario is a function taking the binary, so `tessera-smol` gets the same tests by
//! adding one `#[test]` line per scenario once it exists.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use tessera_tests::aria2::Aria2;
use tessera_tests::bencode::{Value, bytes, dict};
use tessera_tests::data::{Compare, compare_trees, snapshot};
use tessera_tests::libtorrent::{LtOptions, LtPeer};
use tessera_tests::process;
use tessera_tests::scripted_peer::ScriptedSeeder;
use tessera_tests::tessera::Tessera;
use tessera_tests::torrent::{sha1, write_raw_torrent};
use tessera_tests::transmission::Transmission;
use tessera_tests::{Fixture, serial};

/// A 64 MiB download on loopback takes a few seconds; transmission adds ~10 s before it
/// unchokes. Anything near this bound is a bug.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(30);

// ---- scenarios --------------------------------------------------------------------------

fn downloads_from_libtorrent(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let _seeder = LtPeer::seed(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        &LtOptions::default(),
    );
    fx.tracker
        .wait_for_seeders(fx.torrent.info_hash, 1, ANNOUNCE_TIMEOUT);
    download_and_compare(t, &fx);
}

fn downloads_from_aria2(t: &Tessera) {
    let fx = Fixture::multi_file(20);
    let _seeder = Aria2::seed(&fx.logs(), &fx.torrent.path, &fx.seed_dir);
    fx.tracker
        .wait_for_seeders(fx.torrent.info_hash, 1, ANNOUNCE_TIMEOUT);
    download_and_compare(t, &fx);
}

fn downloads_from_transmission(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let _seeder = Transmission::seed(
        &fx.path().join("tr-seed"),
        &fx.torrent.path,
        &fx.seed_dir,
        fx.torrent.info_hash,
    );
    fx.tracker
        .wait_for_seeders(fx.torrent.info_hash, 1, ANNOUNCE_TIMEOUT);
    download_and_compare(t, &fx);
}

/// Both seeders come from the tracker. libtorrent having uploaded some but less than
/// everything proves aria2 supplied the rest. Both are held at 4 MiB/s (16 s for the whole set
/// from one alone), otherwise a fast download can be over before the other one unchokes.
fn downloads_from_libtorrent_and_aria2_at_once(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let throttled = LtOptions {
        upload_limit: 4 << 20,
        ..LtOptions::default()
    };
    let mut lt = LtPeer::seed(&fx.logs(), &fx.torrent.path, &fx.seed_dir, &throttled);
    let _aria2 = Aria2::seed_with_limit(&fx.logs(), &fx.torrent.path, &fx.seed_dir, 4 << 20);
    fx.tracker
        .wait_for_seeders(fx.torrent.info_hash, 2, ANNOUNCE_TIMEOUT);
    download_and_compare(t, &fx);

    let (uploaded, _) = lt.transferred();
    let total = fx.torrent.total_length;
    assert!(
        uploaded > 0 && uploaded < total,
        "{} should have downloaded from both seeders, but libtorrent uploaded {uploaded} of \
         {total} bytes",
        t.name
    );
}

/// A seeder that corrupts every block of the pieces `p % 3 == 0`, next to an honest libtorrent
/// seeder held at 64 KiB/s. While libtorrent is throttled the download cannot finish (the
/// corrupted third alone would take minutes), so a close seen then is Tessera's decision, not
/// its exit. Then the limit is lifted and the download must complete with correct data.
fn closes_corrupting_peer_and_completes(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let scripted = ScriptedSeeder::start(&fx.torrent, &fx.seed_dir, |piece| piece % 3 == 0);
    let throttled = LtOptions {
        upload_limit: 64 * 1024,
        ..LtOptions::default()
    };
    let mut honest = LtPeer::seed(&fx.logs(), &fx.torrent.path, &fx.seed_dir, &throttled);
    fx.tracker
        .wait_for_seeders(fx.torrent.info_hash, 1, ANNOUNCE_TIMEOUT);

    let out = fx.new_dir("out");
    let mut dl = t.download(
        &fx.logs(),
        &fx.torrent.path,
        &out,
        &[scripted.addr(), honest.addr()],
    );
    let mut exited = false;
    process::poll_until(Duration::from_secs(60), || {
        let s = scripted.stats();
        exited = !dl.is_running();
        exited || (s.corrupt_blocks_served > 0 && s.remote_closes > 0)
    });
    let stats = scripted.stats();
    assert!(
        !exited,
        "{} exited before closing the corrupting peer ({stats:?})\n{}",
        t.name,
        dl.tail()
    );
    assert!(
        stats.corrupt_blocks_served > 0,
        "the corrupting peer served no corrupted block within 60 s ({stats:?})\n{}",
        dl.tail()
    );
    assert!(
        stats.remote_closes > 0,
        "{} kept the connection to the peer that sent {} corrupted blocks for 60 s ({stats:?})\n{}",
        t.name,
        stats.corrupt_blocks_served,
        dl.tail()
    );
    eprintln!("corrupting peer closed: {stats:?}");

    honest.set_upload_limit(0);
    dl.wait_success(DOWNLOAD_TIMEOUT);
    compare_trees(&fx.seed_dir, &out, Compare::tessera());
}

/// Torrents whose paths climb out of the output directory are refused before anything is
/// written: non-zero exit, one line on stderr with a reason, and nothing new anywhere outside
/// the output directory.
fn refuses_dotdot_paths(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let content = b"pwned";
    let file = |path: &[&str]| {
        dict([
            ("length", Value::Int(content.len() as i64)),
            ("path", Value::List(path.iter().map(bytes).collect())),
        ])
    };
    let multi = |name: &str, path: &[&str]| {
        dict([
            ("files", Value::List(vec![file(path)])),
            ("name", bytes(name)),
            ("piece length", Value::Int(16384)),
            ("pieces", bytes(sha1(content))),
        ])
    };
    let single = |name: &str| {
        dict([
            ("length", Value::Int(content.len() as i64)),
            ("name", bytes(name)),
            ("piece length", Value::Int(16384)),
            ("pieces", bytes(sha1(content))),
        ])
    };
    // Each escapes <root>/parent/out into <root>/parent (or further) if followed.
    let cases = [
        (
            "file path ../..",
            multi("evil", &["..", "..", "escaped.txt"]),
        ),
        (
            "file path sub/../../..",
            multi("evil", &["sub", "..", "..", "..", "escaped.txt"]),
        ),
        ("name ..", multi("..", &["escaped.txt"])),
        ("single-file name ../x", single("../escaped.txt")),
    ];
    for (i, (what, info)) in cases.into_iter().enumerate() {
        let root = fx.new_dir(&format!("dotdot-{i}"));
        let out = root.join("parent/out");
        fs::create_dir_all(&out).expect("create out dir");
        let torrent = fx.path().join(format!("dotdot-{i}.torrent"));
        write_raw_torrent(&torrent, Some(&fx.tracker.announce_url()), info);
        let outside = |root: &Path| -> Vec<_> {
            snapshot(root)
                .into_iter()
                .filter(|(p, _)| !p.starts_with("parent/out"))
                .collect()
        };
        let before = outside(&root);

        let mut dl = t.download(&fx.logs(), &torrent, &out, &[]);
        let refused_in_time = process::poll_until(Duration::from_secs(30), || !dl.is_running());
        assert!(
            refused_in_time,
            "{} still running 30 s after being given a torrent with a {what}: it must refuse it\n{}",
            t.name,
            dl.tail()
        );
        let status = dl.wait_exit(Duration::from_secs(1));
        assert!(
            !status.success(),
            "{} exited 0 on a torrent with a {what}\n{}",
            t.name,
            dl.tail()
        );
        let stderr = dl.stderr();
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{} should explain the refusal of a {what} in one stderr line, got {stderr:?}",
            t.name
        );
        let reason = lines[0].to_lowercase();
        assert!(
            ["..", "path", "unsafe", "travers", "escape"]
                .iter()
                .any(|w| reason.contains(w)),
            "{}'s refusal of a {what} does not say why: {:?}",
            t.name,
            lines[0]
        );
        let after = outside(&root);
        assert_eq!(
            before, after,
            "{} created or changed files outside its output dir for a {what}",
            t.name
        );
        assert!(
            !fx.path().join("escaped.txt").exists(),
            "{} wrote escaped.txt into the test's temp dir for a {what}",
            t.name
        );
    }
}

fn info_prints_info_hash(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let (status, stdout, stderr) = t.run(
        &[OsStr::new("info"), fx.torrent.path.as_os_str()],
        Duration::from_secs(30),
    );
    assert!(
        status.success(),
        "{} info failed ({status}): {stderr}",
        t.name
    );
    let want = fx.torrent.info_hash.hex();
    assert!(
        stdout.to_lowercase().contains(&want),
        "{} info does not print the info hash {want}:\n{stdout}",
        t.name
    );
}

/// `verify` accepts the seed data and rejects it after one byte is flipped.
fn verify_detects_a_flipped_byte(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let verify = |t: &Tessera| {
        t.run(
            &[
                OsStr::new("verify"),
                fx.torrent.path.as_os_str(),
                OsStr::new("--data"),
                fx.seed_dir.as_os_str(),
            ],
            Duration::from_secs(60),
        )
    };
    let (status, stdout, stderr) = verify(t);
    assert!(
        status.success(),
        "{} verify rejected good data ({status}):\n{stdout}\n{stderr}",
        t.name
    );

    let victim = fx
        .seed_dir
        .join(Fixture::NAME)
        .join("sub dir/nested/mid.bin");
    let mut data = fs::read(&victim).expect("read victim file");
    data[1_000_000] ^= 0x01;
    fs::write(&victim, data).expect("write victim file");
    let (status, stdout, stderr) = verify(t);
    assert!(
        !status.success(),
        "{} verify accepted data with a flipped byte:\n{stdout}\n{stderr}",
        t.name
    );
}

// ---- helpers ----------------------------------------------------------------------------

/// `download -o <temp>/out` with peers from the tracker only; exit 0 within the bound; same
/// bytes as the seed data.
fn download_and_compare(t: &Tessera, fx: &Fixture) {
    let out = fx.new_dir("out");
    let started = Instant::now();
    let mut dl = t.download(&fx.logs(), &fx.torrent.path, &out, &[]);
    dl.wait_success(DOWNLOAD_TIMEOUT);
    eprintln!(
        "{} downloaded {} bytes in {:.1?}",
        t.name,
        fx.torrent.total_length,
        started.elapsed()
    );
    compare_trees(&fx.seed_dir, &out, Compare::tessera());
}

// ---- tessera-mio --------------------------------------------------------------------------

#[test]
fn mio_downloads_from_libtorrent() {
    let _serial = serial();
    downloads_from_libtorrent(&Tessera::mio());
}

#[test]
fn mio_downloads_from_aria2() {
    let _serial = serial();
    downloads_from_aria2(&Tessera::mio());
}

#[test]
fn mio_downloads_from_transmission() {
    let _serial = serial();
    downloads_from_transmission(&Tessera::mio());
}

#[test]
fn mio_downloads_from_libtorrent_and_aria2_at_once() {
    let _serial = serial();
    downloads_from_libtorrent_and_aria2_at_once(&Tessera::mio());
}

#[test]
fn mio_closes_corrupting_peer_and_completes() {
    let _serial = serial();
    closes_corrupting_peer_and_completes(&Tessera::mio());
}

#[test]
fn mio_refuses_dotdot_paths() {
    let _serial = serial();
    refuses_dotdot_paths(&Tessera::mio());
}

#[test]
fn mio_info_prints_info_hash() {
    let _serial = serial();
    info_prints_info_hash(&Tessera::mio());
}

#[test]
fn mio_verify_detects_a_flipped_byte() {
    let _serial = serial();
    verify_detects_a_flipped_byte(&Tessera::mio());
}

// ---- tessera-smol -------------------------------------------------------------------------

#[test]
fn smol_downloads_from_libtorrent() {
    let _serial = serial();
    downloads_from_libtorrent(&Tessera::smol());
}

#[test]
fn smol_closes_corrupting_peer_and_completes() {
    let _serial = serial();
    closes_corrupting_peer_and_completes(&Tessera::smol());
}

#[test]
fn smol_refuses_dotdot_paths() {
    let _serial = serial();
    refuses_dotdot_paths(&Tessera::smol());
}
