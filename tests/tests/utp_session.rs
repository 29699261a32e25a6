//! uTP as the peer transport of Tessera's binaries, against libtorrent 2.0.8 with TCP off
//! both ways (`--utp-only`), on 127.0.0.1, the data compared byte for byte:
//!
//! - Tessera (`download`, default `--transport both`) dials a uTP-only libtorrent seeder:
//!   its first dial is uTP, so it never falls back to TCP;
//! - a uTP-only libtorrent leecher dials Tessera (`seed`), which accepts uTP on the UDP
//!   socket of its listening port;
//! - both runtimes; and `--transport tcp` against a uTP-only seeder gets nowhere (no uTP
//!   dial at all);
//! - with libtorrent's own mix (uTP on besides TCP, `--utp`), the connection is uTP both
//!   ways: Tessera's first dial, and libtorrent's.
//!
//! Tessera runs with `-v`: its log names each uTP connection ("outbound peer: uTP
//! connection", "inbound peer: uTP connection"), which the tests check besides the data.
//! The size is 64 MiB (`TESSERA_UTP_MIB` changes it); `utp_and_tcp_download_times`
//! (ignored) prints the seconds of a download from libtorrent over uTP and over TCP in the
//! same run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tessera_tests::data::{Compare, FileSpec, compare_trees};
use tessera_tests::libtorrent::{LtOptions, LtPeer};
use tessera_tests::process::{self, Proc};
use tessera_tests::tessera::Tessera;
use tessera_tests::torrent;
use tessera_tests::{Scratch, serial};

const TIMEOUT: Duration = Duration::from_secs(300);
const OUTBOUND_UTP: &str = "outbound peer: uTP connection";
const INBOUND_UTP: &str = "inbound peer: uTP connection";
const FALLBACK: &str = "dialling over TCP";
const SEEDING_LINE: &str = "pieces verified, seeding";

fn mib() -> u64 {
    std::env::var("TESSERA_UTP_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// A one-file torrent of [`mib`] MiB (256 KiB pieces, a closed tracker) with its data under
/// `seed/`.
fn fixture(mib: u64) -> (Scratch, PathBuf) {
    let scratch = Scratch::new();
    let files = [FileSpec::new("utp.bin", mib * 1024 * 1024 + 777)];
    let root = scratch.seed_files("utp set", &files);
    let path = scratch.path().join("utp.torrent");
    torrent::mktorrent(
        &root,
        18,
        "http://127.0.0.1:1/announce",
        &path,
        &scratch.logs(),
    );
    (scratch, path)
}

fn utp_only() -> LtOptions {
    LtOptions {
        utp_only: true,
        ..LtOptions::default()
    }
}

fn lines_with(p: &Proc, needle: &str) -> usize {
    p.stderr().lines().filter(|l| l.contains(needle)).count()
}

/// Tessera downloads from a uTP-only libtorrent seeder with `extra` arguments; returns the
/// seconds it took and its process (exited).
fn download_from_libtorrent(
    t: &Tessera,
    s: &Scratch,
    torrent: &Path,
    lt: &LtPeer,
    extra: &[&str],
) -> (f64, Proc) {
    let out = s.new_dir(&format!("out-{}-{}", t.name, extra.join("")));
    let mut args = vec!["-v"];
    args.extend_from_slice(extra);
    let start = Instant::now();
    let mut dl = t.download_with(&s.logs(), torrent, &out, &[lt.addr()], &args);
    dl.wait_success(TIMEOUT);
    let secs = start.elapsed().as_secs_f64();
    compare_trees(&s.seed_dir(), &out, Compare::tessera());
    (secs, dl)
}

fn downloads_from_utp_only_libtorrent(t: &Tessera) {
    let _serial = serial();
    let (s, torrent) = fixture(mib());
    let mut lt = LtPeer::seed(&s.logs(), &torrent, &s.seed_dir(), &utp_only());
    let (secs, dl) = download_from_libtorrent(t, &s, &torrent, &lt, &[]);
    assert!(
        lines_with(&dl, OUTBOUND_UTP) >= 1,
        "no uTP connection in {}'s log\n{}",
        t.name,
        dl.tail()
    );
    assert_eq!(
        lines_with(&dl, FALLBACK),
        0,
        "fell back to TCP\n{}",
        dl.tail()
    );
    let stats = lt.utp_stats();
    assert!(
        stats.get("payload_pkts_out").copied().unwrap_or(0) > mib() * 1024 * 1024 / 1500,
        "libtorrent sent the data over uTP: {stats:?}"
    );
    eprintln!(
        "{}: {} MiB from libtorrent over uTP in {secs:.1} s",
        t.name,
        mib()
    );
    lt.proc().stop();
}

fn libtorrent_downloads_over_utp(t: &Tessera) {
    let _serial = serial();
    let (s, torrent) = fixture(mib());
    let listen = SocketAddr::from(([127, 0, 0, 1], process::free_port()));
    let mut seed = t.seed_with(&s.logs(), &torrent, &s.seed_dir(), listen, &[], &["-v"]);
    seed.wait_for_stderr_line(SEEDING_LINE, TIMEOUT);
    let out = s.new_dir("lt-out");
    let opts = LtOptions {
        peers: vec![listen],
        ..utp_only()
    };
    let start = Instant::now();
    let mut lt = LtPeer::leech(&s.logs(), &torrent, &out, &opts);
    lt.wait_done(TIMEOUT);
    let secs = start.elapsed().as_secs_f64();
    compare_trees(&s.seed_dir(), &out, Compare::exact());
    assert!(
        lines_with(&seed, INBOUND_UTP) >= 1,
        "no inbound uTP connection in {}'s log\n{}",
        t.name,
        seed.tail()
    );
    eprintln!(
        "{}: libtorrent downloaded {} MiB over uTP in {secs:.1} s",
        t.name,
        mib()
    );
    lt.proc().stop();
    seed.stop();
}

#[test]
fn mio_downloads_from_utp_only_libtorrent() {
    downloads_from_utp_only_libtorrent(&Tessera::mio());
}

#[test]
fn smol_downloads_from_utp_only_libtorrent() {
    downloads_from_utp_only_libtorrent(&Tessera::smol());
}

#[test]
fn utp_only_libtorrent_downloads_from_mio() {
    libtorrent_downloads_over_utp(&Tessera::mio());
}

#[test]
fn utp_only_libtorrent_downloads_from_smol() {
    libtorrent_downloads_over_utp(&Tessera::smol());
}

/// libtorrent with uTP and TCP on: Tessera's default (`both`) dials it over uTP and
/// libtorrent's uTP counters carry the data; and libtorrent, which dials uTP first too,
/// reaches Tessera's seeder over uTP.
#[test]
fn both_ways_the_connection_to_a_utp_and_tcp_libtorrent_is_utp() {
    let _serial = serial();
    let (s, torrent) = fixture(4);
    let both = LtOptions {
        utp: true,
        ..LtOptions::default()
    };
    let t = Tessera::mio();
    let mut lt = LtPeer::seed(&s.logs(), &torrent, &s.seed_dir(), &both);
    let (_, dl) = download_from_libtorrent(&t, &s, &torrent, &lt, &[]);
    assert!(lines_with(&dl, OUTBOUND_UTP) >= 1, "{}", dl.tail());
    assert_eq!(lines_with(&dl, FALLBACK), 0, "{}", dl.tail());
    let stats = lt.utp_stats();
    assert!(
        stats.get("payload_pkts_out").copied().unwrap_or(0) > 4 * 1024 * 1024 / 1500,
        "libtorrent sent the data over uTP: {stats:?}"
    );
    lt.proc().stop();

    let listen = SocketAddr::from(([127, 0, 0, 1], process::free_port()));
    let mut seed = t.seed_with(&s.logs(), &torrent, &s.seed_dir(), listen, &[], &["-v"]);
    seed.wait_for_stderr_line(SEEDING_LINE, TIMEOUT);
    let out = s.new_dir("lt-out");
    let opts = LtOptions {
        peers: vec![listen],
        ..both
    };
    let mut lt = LtPeer::leech(&s.logs(), &torrent, &out, &opts);
    lt.wait_done(TIMEOUT);
    compare_trees(&s.seed_dir(), &out, Compare::exact());
    assert!(lines_with(&seed, INBOUND_UTP) >= 1, "{}", seed.tail());
    lt.proc().stop();
    seed.stop();
}

/// `--transport tcp` never dials uTP: a uTP-only seeder is out of reach (the run is
/// stopped after a while, with nothing downloaded).
#[test]
fn transport_tcp_does_not_reach_a_utp_only_peer() {
    let _serial = serial();
    let (s, torrent) = fixture(1);
    let mut lt = LtPeer::seed(&s.logs(), &torrent, &s.seed_dir(), &utp_only());
    let out = s.new_dir("out");
    let mut dl = Tessera::mio().download_with(
        &s.logs(),
        &torrent,
        &out,
        &[lt.addr()],
        &["-v", "--transport", "tcp"],
    );
    std::thread::sleep(Duration::from_secs(5));
    assert!(dl.is_running(), "it cannot finish\n{}", dl.tail());
    dl.stop();
    assert_eq!(lines_with(&dl, OUTBOUND_UTP), 0, "{}", dl.tail());
    let (up, _) = lt.transferred();
    assert_eq!(up, 0, "libtorrent uploaded nothing");
    lt.proc().stop();
}

/// Seconds for a download from libtorrent over uTP (uTP-only seeder) and over TCP (TCP-only
/// seeder), in the same run, both runtimes: `TESSERA_UTP_MIB=64 cargo test --release -p
/// tessera-tests --test utp_session -- --ignored --nocapture`.
#[test]
#[ignore = "measurement: prints numbers"]
fn utp_and_tcp_download_times() {
    let _serial = serial();
    let (s, torrent) = fixture(mib());
    for t in [Tessera::mio(), Tessera::smol()] {
        let mut lt = LtPeer::seed(&s.logs(), &torrent, &s.seed_dir(), &utp_only());
        let (utp, _) = download_from_libtorrent(&t, &s, &torrent, &lt, &["--transport", "utp"]);
        let stats = lt.utp_stats();
        let stat = |k: &str| stats.get(k).copied().unwrap_or(0);
        eprintln!(
            "{}: libtorrent's uTP side: {} payload packets, {} resent, {} fast retransmits, {} \
             timeouts",
            t.name,
            stat("payload_pkts_out"),
            stat("packet_resend"),
            stat("fast_retransmit"),
            stat("timeout")
        );
        lt.proc().stop();
        let mut lt = LtPeer::seed(&s.logs(), &torrent, &s.seed_dir(), &LtOptions::default());
        let (tcp, _) = download_from_libtorrent(&t, &s, &torrent, &lt, &["--transport", "tcp"]);
        lt.proc().stop();
        eprintln!(
            "{}: {} MiB from libtorrent: uTP {utp:.1} s, TCP {tcp:.1} s",
            t.name,
            mib()
        );
    }
}
