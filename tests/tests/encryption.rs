//! Protocol encryption (MSE/PE) end to end: the Tessera binaries against libtorrent with
//! encryption forced (`out_enc_policy`/`in_enc_policy` = `pe_forced`, `allowed_enc_level` =
//! `pe_rc4`) and transmission with encryption required, on 127.0.0.1, data compared byte for
//! byte; and `--encryption disable` against a peer that takes only encrypted connections.
//!
//! Tessera runs with `-vv`: its log names each connection's protection ("RC4-encrypted
//! connection"), which the tests check besides the data.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tessera_tests::data::{Compare, FileSpec, compare_trees};
use tessera_tests::libtorrent::{LtEncryption, LtOptions, LtPeer};
use tessera_tests::process::{self, Proc};
use tessera_tests::tessera::Tessera;
use tessera_tests::torrent::{self, Torrent};
use tessera_tests::transmission::{TrEncryption, Transmission};
use tessera_tests::{Scratch, serial};

/// A few MiB on loopback take a second; transmission waits ~10 s before it unchokes.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
const SEEDING_LINE: &str = "pieces verified, seeding";
const RC4_LINE: &str = "RC4-encrypted connection";

/// A torrent of two files (6.1 MiB, 256 KiB pieces) with its data under `seed/`; the
/// announce URL is a closed loopback port: peers are given directly.
fn torrent() -> (Scratch, Torrent) {
    let scratch = Scratch::new();
    let files = [
        FileSpec::new("a.bin", 6 * 1024 * 1024 + 4321),
        FileSpec::new("b.bin", 100_000),
    ];
    let root = scratch.seed_files("encrypted set", &files);
    let path = scratch.path().join("enc.torrent");
    torrent::mktorrent(
        &root,
        18,
        "http://127.0.0.1:1/announce",
        &path,
        &scratch.logs(),
    );
    let t = Torrent::load(&path);
    (scratch, t)
}

fn forced() -> LtOptions {
    LtOptions {
        encryption: LtEncryption::Forced,
        ..LtOptions::default()
    }
}

fn download(
    t: &Tessera,
    s: &Scratch,
    tor: &Torrent,
    out: &Path,
    peers: &[SocketAddr],
    policy: &str,
) -> Proc {
    t.download_with(
        &s.logs(),
        &tor.path,
        out,
        peers,
        &["--encryption", policy, "-vv"],
    )
}

fn lines_with(p: &Proc, needle: &str) -> usize {
    p.stderr().lines().filter(|l| l.contains(needle)).count()
}

/// libtorrent seeds with encryption forced; Tessera downloads under `policy`.
fn downloads_from_forced_libtorrent(t: &Tessera, policy: &str) {
    let _serial = serial();
    let (s, tor) = torrent();
    let mut lt = LtPeer::seed(&s.logs(), &tor.path, &s.seed_dir(), &forced());
    let out = s.new_dir("out");
    let mut dl = download(t, &s, &tor, &out, &[lt.addr()], policy);
    dl.wait_success(DOWNLOAD_TIMEOUT);
    compare_trees(&s.seed_dir(), &out, Compare::tessera());
    assert!(
        lines_with(&dl, RC4_LINE) >= 1,
        "no RC4 connection in {}'s log\n{}",
        t.name,
        dl.tail()
    );
    assert!(
        !dl.stderr().contains("dialling again in plaintext") || policy == "prefer",
        "plaintext redial under {policy}"
    );
    lt.proc().stop();
}

#[test]
fn mio_downloads_from_forced_libtorrent_under_require() {
    downloads_from_forced_libtorrent(&Tessera::mio(), "require");
}

#[test]
fn smol_downloads_from_forced_libtorrent_under_prefer() {
    downloads_from_forced_libtorrent(&Tessera::smol(), "prefer");
}

/// Under `prefer`, one swarm of a plaintext-only and an encrypted-only libtorrent seeder:
/// Tessera reaches both (the plaintext one after its MSE handshake is refused).
#[test]
fn prefer_reaches_a_plaintext_only_and_an_encrypted_only_peer() {
    let _serial = serial();
    let (s, tor) = torrent();
    let mut enc = LtPeer::seed(&s.logs(), &tor.path, &s.seed_dir(), &forced());
    let plain_opts = LtOptions {
        encryption: LtEncryption::Disabled,
        ..LtOptions::default()
    };
    let mut plain = LtPeer::seed(&s.logs(), &tor.path, &s.seed_dir(), &plain_opts);
    let out = s.new_dir("out");
    let t = Tessera::mio();
    // `download --seed` keeps both connections up after the download, so both show.
    let mut dl = t.download_and_seed(
        &s.logs(),
        &tor.path,
        &out,
        SocketAddr::from(([127, 0, 0, 1], process::free_port())),
        &[enc.addr(), plain.addr()],
        &["--encryption", "prefer", "-vv"],
    );
    dl.wait_for_stderr_line("download complete, seeding", DOWNLOAD_TIMEOUT);
    compare_trees(&s.seed_dir(), &out, Compare::tessera());
    let log = dl.stderr();
    let rc4_to_enc = log
        .lines()
        .any(|l| l.contains(RC4_LINE) && l.contains(&enc.addr().to_string()));
    let plain_after_refusal = log.lines().any(|l| {
        l.contains("dialling again in plaintext") && l.contains(&plain.addr().to_string())
    });
    let plain_connected = log
        .lines()
        .any(|l| l.contains(&format!("peer {} connected", plain.addr())));
    assert!(
        rc4_to_enc,
        "no RC4 connection to the forced peer\n{}",
        dl.tail()
    );
    assert!(
        plain_after_refusal && plain_connected,
        "the plaintext-only peer was not reached in plaintext\n{}",
        dl.tail()
    );
    dl.stop();
    enc.proc().stop();
    plain.proc().stop();
}

/// Tessera seeds with `--encryption require`; libtorrent (encryption forced) dials it and
/// downloads everything.
fn forced_libtorrent_downloads_from_require_seed(t: &Tessera) {
    let _serial = serial();
    let (s, tor) = torrent();
    let listen = SocketAddr::from(([127, 0, 0, 1], process::free_port()));
    let mut seed = t.seed_with(
        &s.logs(),
        &tor.path,
        &s.seed_dir(),
        listen,
        &[],
        &["--encryption", "require", "-vv"],
    );
    seed.wait_for_stderr_line(SEEDING_LINE, DOWNLOAD_TIMEOUT);
    let out = s.new_dir("out");
    let opts = LtOptions {
        peers: vec![listen],
        ..forced()
    };
    let mut leech = LtPeer::leech(&s.logs(), &tor.path, &out, &opts);
    leech.wait_done(DOWNLOAD_TIMEOUT);
    leech.proc().wait_success(Duration::from_secs(60));
    compare_trees(&s.seed_dir(), &out, Compare::exact());
    assert!(
        lines_with(&seed, "inbound peer: RC4-encrypted connection") >= 1,
        "{}",
        seed.tail()
    );
    seed.stop();
}

#[test]
fn forced_libtorrent_downloads_from_mio_seed_under_require() {
    forced_libtorrent_downloads_from_require_seed(&Tessera::mio());
}

/// transmission seeds with encryption required; Tessera (`require`) dials it and
/// downloads. transmission waits about 10 s before it unchokes.
#[test]
fn smol_downloads_from_transmission_requiring_encryption() {
    let _serial = serial();
    let (s, tor) = torrent();
    let mut tr = Transmission::seed_with(
        &s.path().join("tr-seed"),
        &tor.path,
        &s.seed_dir(),
        tor.info_hash,
        TrEncryption::Require,
    );
    let out = s.new_dir("out");
    let t = Tessera::smol();
    let mut dl = download(&t, &s, &tor, &out, &[tr.peer_addr()], "require");
    dl.wait_success(DOWNLOAD_TIMEOUT);
    compare_trees(&s.seed_dir(), &out, Compare::tessera());
    assert!(lines_with(&dl, RC4_LINE) >= 1, "{}", dl.tail());
    tr.proc().stop();
}

/// Tessera seeds with `require` and dials transmission (encryption required), which
/// downloads everything.
#[test]
fn transmission_requiring_encryption_downloads_from_mio_seed() {
    let _serial = serial();
    let (s, tor) = torrent();
    let out = s.new_dir("out");
    let mut tr = Transmission::start_with(&s.path().join("tr-leech"), &out, TrEncryption::Require);
    tr.add(&tor.path, &out);
    let listen = SocketAddr::from(([127, 0, 0, 1], process::free_port()));
    let t = Tessera::mio();
    let mut seed = t.seed_with(
        &s.logs(),
        &tor.path,
        &s.seed_dir(),
        listen,
        &[tr.peer_addr()],
        &["--encryption", "require", "-vv"],
    );
    tr.wait_complete(tor.info_hash, DOWNLOAD_TIMEOUT);
    compare_trees(&s.seed_dir(), &out, Compare::transmission());
    assert!(lines_with(&seed, RC4_LINE) >= 1, "{}", seed.tail());
    seed.stop();
    tr.proc().stop();
}

/// `--encryption disable` against libtorrent with encryption forced: no data, and the log
/// says why.
#[test]
fn disable_against_forced_libtorrent_gets_nothing_and_says_why() {
    let _serial = serial();
    let (s, tor) = torrent();
    let mut lt = LtPeer::seed(&s.logs(), &tor.path, &s.seed_dir(), &forced());
    let out = s.new_dir("out");
    let t = Tessera::mio();
    let mut dl = download(&t, &s, &tor, &out, &[lt.addr()], "disable");
    let line = dl.wait_for_stderr_line(
        "it may require encryption, which is disabled here",
        Duration::from_secs(60),
    );
    assert!(line.contains(&lt.addr().to_string()), "{line}");
    assert!(dl.is_running(), "a download without peers keeps waiting");
    dl.stop();
    let (uploaded, _) = lt.transferred();
    assert_eq!(
        uploaded, 0,
        "libtorrent sent data to a plaintext connection"
    );
    assert!(
        !dl.stderr().contains("connected (-LT"),
        "a plaintext connection to the forced peer was established\n{}",
        dl.tail()
    );
    lt.proc().stop();
}
