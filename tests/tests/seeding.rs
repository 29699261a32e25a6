//! Tessera as the seeder: `tessera-mio seed` and `download --seed` serving real leechers on
//! loopback, hostile leechers, and a clean stop on Ctrl-C.
//!
//! Each scenario is a function taking the binary, so `tessera-smol` gets the same tests by
//! adding one `#[test]` line per scenario once it exists. Tessera runs with `-vv` (debug logs
//! on stderr, kept with the other logs under `TESSERA_E2E_KEEP=1`).

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tessera_tests::aria2::Aria2;
use tessera_tests::data::{Compare, compare_files, compare_trees, large_multi_file_set};
use tessera_tests::libtorrent::{LtOptions, LtPeer};
use tessera_tests::process::{self, Proc, RssSampler};
use tessera_tests::scripted_leecher::{Behaviour, Ending, LeecherReport, ScriptedLeecher};
use tessera_tests::tessera::Tessera;
use tessera_tests::tracker::Scrape;
use tessera_tests::transmission::Transmission;
use tessera_tests::{Fixture, serial};

/// A 64 MiB download on loopback takes seconds; transmission adds ~10 s before it requests.
/// Anything near this bound is a bug.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Hashing 64 MiB takes well under a second on these machines.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// What Tessera prints (stderr) once `seed` has checked its data.
const SEEDING_LINE: &str = "pieces verified, seeding";
/// What `download --seed` prints (stderr) once the download is complete.
const DOWNLOADED_SEEDING_LINE: &str = "download complete, seeding";
/// Debug logs on stderr, for the report when something fails.
const LOGS: &[&str] = &["-vv"];

// ---- scenarios --------------------------------------------------------------------------

/// libtorrent learns of Tessera from opentracker only, downloads everything from it.
fn libtorrent_downloads_from_seed(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let (mut seeder, _addr) = start_seed(t, &fx, &[]);
    let out = fx.new_dir("out");
    let started = Instant::now();
    let mut leech = LtPeer::leech(&fx.logs(), &fx.torrent.path, &out, &LtOptions::default());
    let secs = leech.wait_done(DOWNLOAD_TIMEOUT);
    leech.proc().wait_success(Duration::from_secs(60));
    eprintln!(
        "libtorrent downloaded {} bytes from {} in {secs:.1} s ({:.1?} with start-up)",
        fx.torrent.total_length,
        t.name,
        started.elapsed()
    );
    compare_trees(&fx.seed_dir, &out, Compare::exact());
    assert_still_seeding(&mut seeder);
}

/// aria2 cannot be told a peer: it finds Tessera through opentracker.
fn aria2_downloads_from_seed(t: &Tessera) {
    let fx = Fixture::multi_file(20);
    let (mut seeder, _addr) = start_seed(t, &fx, &[]);
    let out = fx.new_dir("out");
    let started = Instant::now();
    let mut leech = Aria2::download(&fx.logs(), &fx.torrent.path, &out);
    leech.proc().wait_success(DOWNLOAD_TIMEOUT);
    eprintln!(
        "aria2 downloaded {} bytes from {} in {:.1?}",
        fx.torrent.total_length,
        t.name,
        started.elapsed()
    );
    compare_trees(&fx.seed_dir, &out, Compare::exact());
    assert_still_seeding(&mut seeder);
}

/// transmission never dials loopback peers: it leeches, listening, and Tessera dials it
/// (`seed --peer`). It waits ~10 s before it first requests.
fn transmission_downloads_from_seed(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let out = fx.new_dir("out");
    let mut tr = Transmission::start(&fx.path().join("tr-leech"), &out);
    tr.add(&fx.torrent.path, &out);
    let (mut seeder, _addr) = start_seed(t, &fx, &[tr.peer_addr()]);
    let started = Instant::now();
    tr.wait_complete(fx.torrent.info_hash, DOWNLOAD_TIMEOUT);
    // For the record: how often Tessera had to (re)dial it. transmission pipelines as many
    // requests as it expects to receive in 10 s unless the peer advertises a limit (BEP 10
    // `reqq`), which can trip the 500-queued-requests rule.
    let dials = seeder
        .stderr()
        .lines()
        .filter(|l| l.contains("connected (-TR"))
        .count();
    eprintln!(
        "transmission downloaded {} bytes from {} in {:.1?} over {dials} connection(s)",
        fx.torrent.total_length,
        t.name,
        started.elapsed()
    );
    compare_trees(&fx.seed_dir, &out, Compare::transmission());
    assert_still_seeding(&mut seeder);
}

/// libtorrent seeds → Tessera `download --seed` → libtorrent stops (announcing `stopped`,
/// then killed by PID) → aria2 downloads from Tessera alone. aria2 starts only after the
/// libtorrent process has exited and opentracker lists Tessera and nobody else, so every
/// byte aria2 gets comes from Tessera.
fn chain_libtorrent_tessera_aria2(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let mut lt = LtPeer::seed(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        &LtOptions::default(),
    );
    wait_listed(&fx, &[lt.addr()]);

    let middle = fx.new_dir("middle");
    let listen = loopback(process::free_port());
    let mut tessera = t.download_and_seed(&fx.logs(), &fx.torrent.path, &middle, listen, &[], LOGS);
    tessera.wait_for_stderr_line(DOWNLOADED_SEEDING_LINE, DOWNLOAD_TIMEOUT);
    compare_trees(&fx.seed_dir, &middle, Compare::tessera());
    let (uploaded, _) = lt.transferred();
    assert!(
        uploaded >= fx.torrent.total_length,
        "libtorrent uploaded {uploaded} bytes, less than the torrent's {}: where did {} get \
         the rest?",
        fx.torrent.total_length,
        t.name
    );

    // libtorrent leaves the swarm: `stopped` to the tracker, then the process ends.
    lt.pause();
    let listed = wait_listed(&fx, &[listen]);
    let lt_pid = lt.proc().pid();
    let status = lt.proc().stop();
    assert!(
        !lt.proc().is_running(),
        "libtorrent (pid {lt_pid}) still runs after being stopped ({status})"
    );
    // Only Tessera, and as a seeder: it announced `completed` (BEP 3) after its download.
    let (scrape, ok) = fx
        .tracker
        .wait_for_scrape(fx.torrent.info_hash, ANNOUNCE_TIMEOUT, |s| {
            s == Scrape {
                complete: 1,
                incomplete: 0,
            }
        });
    assert!(
        ok,
        "opentracker should count exactly one seeder ({} after `completed`) and no leecher \
         before aria2 starts; it scrapes {scrape:?} and lists {listed:?}\n{}",
        t.name,
        tessera.tail()
    );

    let out = fx.new_dir("out");
    let started = Instant::now();
    let mut aria2 = Aria2::download(&fx.logs(), &fx.torrent.path, &out);
    aria2.proc().wait_success(DOWNLOAD_TIMEOUT);
    eprintln!(
        "aria2 downloaded {} bytes from {} alone in {:.1?}",
        fx.torrent.total_length,
        t.name,
        started.elapsed()
    );
    compare_trees(&fx.seed_dir, &out, Compare::exact());
    assert_still_seeding(&mut tessera);
}

/// While an honest libtorrent leecher downloads (held at 2 MiB/s, so it is still at it when
/// the hostile peers are done), three hostile scripted leechers each get cut off:
/// a flood of 100,000 requests written without reading (more than 500 queued), 40 requests
/// outside the torrent or the piece, 40 requests of 1 MiB (pieces are 1 MiB, so the length is
/// the only fault). A polite scripted leecher next to them is served and kept. Tessera's peak
/// RSS (`VmHWM`, from its start to the end of the hostile phase) stays under
/// [`RSS_BOUND_KIB`], a quarter of the torrent's size; the honest leecher completes with
/// correct data.
fn hostile_leechers_are_cut_off(t: &Tessera) {
    /// Tessera keeps a read cache of 16 MiB and at most 4 MiB of unsent data per peer (five
    /// here): under 40 MiB on top of a ~10 MiB process. 100,000 requests honoured would be
    /// 1.6 GB; a seeder holding the whole torrent in memory would need its 256 MiB
    /// ([`large_multi_file_set`]), four times the bound.
    const RSS_BOUND_KIB: u64 = 64 << 10;
    /// From a hostile peer's first bad request to Tessera closing its connection.
    const CUT_OFF_BOUND: Duration = Duration::from_secs(10);

    let fx = Fixture::with_files(&large_multi_file_set(), 20);
    assert!(fx.torrent.total_length >= 4 * (RSS_BOUND_KIB << 10));
    let (mut seeder, addr) = start_seed(t, &fx, &[]);
    let rss = RssSampler::start(seeder.pid(), Duration::from_millis(20));

    let out = fx.new_dir("out");
    let throttled = LtOptions {
        peers: vec![addr],
        download_limit: 2 << 20,
        ..LtOptions::default()
    };
    let mut honest = LtPeer::leech(&fx.logs(), &fx.torrent.path, &out, &throttled);
    let served = process::poll_until(Duration::from_secs(30), || honest.transferred().1 > 0);
    assert!(
        served,
        "{} served the honest libtorrent leecher nothing within 30 s\n{}\n{}",
        t.name,
        seeder.tail(),
        honest.proc().tail()
    );

    let polite = ScriptedLeecher::start(
        addr,
        &fx.torrent,
        Behaviour::Polite {
            first: 20,
            pieces: 4,
        },
    );
    let hostile = [
        ScriptedLeecher::start(addr, &fx.torrent, Behaviour::Flood { count: 100_000 }),
        ScriptedLeecher::start(addr, &fx.torrent, Behaviour::OutOfRange { count: 40 }),
        ScriptedLeecher::start(
            addr,
            &fx.torrent,
            Behaviour::Oversized {
                count: 40,
                len: 1 << 20,
            },
        ),
    ];
    let ended = process::poll_until(Duration::from_secs(90), || {
        hostile.iter().all(ScriptedLeecher::is_finished)
    });
    assert!(ended, "a hostile leecher's thread did not end within 90 s");
    let polite_done = process::poll_until(Duration::from_secs(60), || {
        polite.pieces_verified() >= 4 || polite.is_finished()
    });
    let honest_done_early = honest.proc().stdout().contains("DONE");
    let reports: Vec<LeecherReport> = hostile.into_iter().map(ScriptedLeecher::finish).collect();
    let polite = polite.finish();
    let closes: Vec<String> = seeder
        .stderr()
        .lines()
        .filter(|l| l.contains("closed"))
        .map(str::to_owned)
        .collect();
    eprintln!("Tessera's close log lines:\n{}", closes.join("\n"));
    for r in &reports {
        eprintln!("{r:?}");
    }
    eprintln!("polite: {polite:?}");

    for r in &reports {
        assert_cut_off(t, &seeder, r, CUT_OFF_BOUND);
    }
    assert!(
        polite_done && polite.pieces_verified == 4 && polite.bad_blocks == 0,
        "the polite scripted leecher next to the hostile ones was not served 4 good pieces: \
         {polite:?}\n{}",
        seeder.tail()
    );
    assert_eq!(
        polite.ending,
        Ending::Open,
        "{} closed the polite scripted leecher: {polite:?}",
        t.name
    );

    let peak = rss.finish();
    eprintln!(
        "{} RSS: {} KiB at the start, {} KiB at most in {} samples, peak (VmHWM) {} KiB",
        t.name, peak.first_kib, peak.max_kib, peak.samples, peak.peak_kib
    );
    assert!(peak.samples > 0, "no memory reading of {}", t.name);
    assert!(
        peak.peak_kib <= RSS_BOUND_KIB,
        "{}'s peak RSS (VmHWM) reached {} KiB by the end of the hostile phase (bound \
         {RSS_BOUND_KIB} KiB)",
        t.name,
        peak.peak_kib
    );

    assert!(
        !honest_done_early,
        "the honest leecher finished before the hostile phase ended: the test did not run them \
         at the same time"
    );
    honest.set_download_limit(0);
    honest.wait_done(DOWNLOAD_TIMEOUT);
    honest.proc().wait_success(Duration::from_secs(60));
    compare_trees(&fx.seed_dir, &out, Compare::exact());
    assert_still_seeding(&mut seeder);
}

/// A partial seeder (one file missing): its bitfield offers exactly the pieces on disk; a
/// leecher asking for 40 pieces it lacks is cut off, and so is one that never said
/// `interested` (so stays choked) and sends 400 requests after the 5 s grace (more than the 300 tolerated); a polite leecher
/// beside them is served.
fn partial_seed_cuts_off_unservable_requests(t: &Tessera) {
    const CUT_OFF_BOUND: Duration = Duration::from_secs(10);
    const MISSING: &str = "zeta/last.bin";
    let fx = Fixture::multi_file(18);
    let data = fx.new_dir("partial");
    for f in &fx.torrent.files {
        let rel = f
            .path
            .strip_prefix(Fixture::NAME)
            .expect("under the torrent's name");
        if rel == Path::new(MISSING) {
            continue;
        }
        let to = data.join(&f.path);
        fs::create_dir_all(to.parent().expect("a parent")).expect("create dirs");
        fs::copy(fx.seed_dir.join(&f.path), &to).expect("copy a data file");
    }
    let missing = fx
        .torrent
        .files
        .iter()
        .find(|f| f.path.ends_with(MISSING))
        .expect("the missing file is in the torrent");
    let offered = (0..fx.torrent.num_pieces())
        .filter(|&p| {
            let start = u64::from(p) * fx.torrent.piece_length;
            start + fx.torrent.piece_len(p) <= missing.offset
                || start >= missing.offset + missing.length
        })
        .count() as u32;
    assert!(offered > 0 && offered < fx.torrent.num_pieces());

    let (mut seeder, addr) = start_seed_from(t, &fx, &data, &[], "missing or failing the check");
    let polite = ScriptedLeecher::start(
        addr,
        &fx.torrent,
        Behaviour::Polite {
            first: 0,
            pieces: 4,
        },
    );
    let hostile = [
        ScriptedLeecher::start(addr, &fx.torrent, Behaviour::Lacking { count: 40 }),
        ScriptedLeecher::start(
            addr,
            &fx.torrent,
            // Tessera tolerates 300 requests while choked (after a grace period), since
            // requests sent before a peer saw our choke can arrive long after it left.
            Behaviour::WhileChoked {
                count: 400,
                wait_secs: 7,
            },
        ),
    ];
    let ended = process::poll_until(Duration::from_secs(90), || {
        hostile.iter().all(ScriptedLeecher::is_finished)
    });
    assert!(ended, "a hostile leecher's thread did not end within 90 s");
    let polite_done = process::poll_until(Duration::from_secs(60), || {
        polite.pieces_verified() >= 4 || polite.is_finished()
    });
    let reports: Vec<LeecherReport> = hostile.into_iter().map(ScriptedLeecher::finish).collect();
    let polite = polite.finish();
    for r in reports.iter().chain([&polite]) {
        eprintln!("{r:?}");
    }
    assert_eq!(
        polite.pieces_offered, offered,
        "{} offers {} pieces with {MISSING} missing; {offered} are on disk",
        t.name, polite.pieces_offered
    );
    for r in &reports {
        assert_cut_off(t, &seeder, r, CUT_OFF_BOUND);
    }
    assert_eq!(
        reports[1].unchoked_after, None,
        "{} unchoked a peer that never said it was interested: {:?}",
        t.name, reports[1]
    );
    assert!(
        polite_done && polite.pieces_verified == 4 && polite.bad_blocks == 0,
        "the polite scripted leecher was not served 4 good pieces: {polite:?}\n{}",
        seeder.tail()
    );
    assert_eq!(
        polite.ending,
        Ending::Open,
        "{} closed the polite leecher",
        t.name
    );
    // The partial seeder left the data it had as it was.
    for f in fx
        .torrent
        .files
        .iter()
        .filter(|f| !f.path.ends_with(MISSING))
    {
        compare_files(&fx.seed_dir.join(&f.path), &data.join(&f.path));
    }
    assert_still_seeding(&mut seeder);
}

/// aria2 1.36, downloading from a peer that supports no extension, sends `interested`,
/// requests and `have`s, and later a `bitfield` (seen on the wire from `aria2c` against
/// `tessera-mio seed`). BEP 3 puts the bitfield first, but a seeder that drops such a peer
/// cannot serve aria2 at all. A scripted leecher doing the same must get all its pieces.
fn late_bitfield_is_tolerated(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let (mut seeder, addr) = start_seed(t, &fx, &[]);
    let leecher = ScriptedLeecher::start(
        addr,
        &fx.torrent,
        Behaviour::PoliteLateBitfield {
            first: 7,
            pieces: 4,
        },
    );
    let done = process::poll_until(Duration::from_secs(30), || {
        leecher.pieces_verified() >= 4 || leecher.is_finished()
    });
    let report = leecher.finish();
    eprintln!("{report:?}");
    assert!(
        done && report.pieces_verified == 4 && report.bad_blocks == 0,
        "{} did not serve 4 good pieces to a leecher that sent its bitfield late: {report:?}\n{}",
        t.name,
        seeder.tail()
    );
    assert_eq!(
        report.ending,
        Ending::Open,
        "{} closed a leecher that sent its bitfield late",
        t.name
    );
    assert_still_seeding(&mut seeder);
}

/// Ctrl-C while a leecher is being served: exit 0 within [`STOP_BOUND`], and the `stopped`
/// announce takes Tessera off the tracker. Before that, a first leecher downloads everything
/// (compared byte for byte) and leaves the swarm cleanly, so opentracker then lists Tessera
/// alone and any change is Tessera's.
fn sigint_stops_cleanly(t: &Tessera) {
    const STOP_BOUND: Duration = Duration::from_secs(5);
    let fx = Fixture::multi_file(18);
    let (mut seeder, addr) = start_seed(t, &fx, &[]);

    let out = fx.new_dir("out");
    let keep = LtOptions {
        keep_seeding: true,
        ..LtOptions::default()
    };
    let mut first = LtPeer::leech(&fx.logs(), &fx.torrent.path, &out, &keep);
    first.wait_done(DOWNLOAD_TIMEOUT);
    first.pause();
    compare_trees(&fx.seed_dir, &out, Compare::exact());
    wait_listed(&fx, &[addr]);

    // A second leecher, slow, so that it is mid-download at Ctrl-C.
    let slow = LtOptions {
        peers: vec![addr],
        download_limit: 1 << 20,
        ..LtOptions::default()
    };
    let mut second = LtPeer::leech(&fx.logs(), &fx.torrent.path, &fx.new_dir("out2"), &slow);
    let served = process::poll_until(Duration::from_secs(30), || second.transferred().1 > 0);
    assert!(
        served,
        "{} served the second leecher nothing in 30 s",
        t.name
    );
    let before = fx.tracker.scrape(fx.torrent.info_hash);
    assert_eq!(
        before.complete, 1,
        "opentracker should count Tessera as the one seeder before Ctrl-C: {before:?}"
    );

    let sent = Instant::now();
    seeder.signal("INT");
    let stopped = process::poll_until(STOP_BOUND, || !seeder.is_running());
    let took = sent.elapsed();
    assert!(
        stopped,
        "{} still running {STOP_BOUND:?} after SIGINT\n{}",
        t.name,
        seeder.tail()
    );
    let status = seeder.wait_exit(Duration::from_secs(1));
    assert!(
        status.success(),
        "{} exited with {status} on SIGINT\n{}",
        t.name,
        seeder.tail()
    );
    eprintln!("{} stopped {took:.1?} after SIGINT", t.name);

    let peers = fx.tracker.peers(fx.torrent.info_hash);
    assert!(
        !peers.contains(&addr),
        "opentracker still lists {} ({addr}) after it stopped: it sent no `stopped` announce \
         (peers {peers:?})\n{}",
        t.name,
        seeder.tail()
    );
    let after = fx.tracker.scrape(fx.torrent.info_hash);
    assert_eq!(
        after.complete, 0,
        "opentracker still counts a seeder after {} stopped: {after:?}",
        t.name
    );
}

// ---- helpers ----------------------------------------------------------------------------

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `seed --data <seed dir> --listen 127.0.0.1:<free> [--peer ..] -vv`; returns once it has
/// checked the data and opentracker lists it.
fn start_seed(t: &Tessera, fx: &Fixture, peers: &[SocketAddr]) -> (Proc, SocketAddr) {
    start_seed_from(t, fx, &fx.seed_dir, peers, SEEDING_LINE)
}

/// [`start_seed`] from `data`, waiting for `checked` on stderr.
fn start_seed_from(
    t: &Tessera,
    fx: &Fixture,
    data: &Path,
    peers: &[SocketAddr],
    checked: &str,
) -> (Proc, SocketAddr) {
    let addr = loopback(process::free_port());
    let mut p = t.seed_with(&fx.logs(), &fx.torrent.path, data, addr, peers, LOGS);
    p.wait_for_stderr_line(checked, CHECK_TIMEOUT);
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

/// Waits until opentracker lists exactly `addrs` for the fixture's torrent; returns them.
fn wait_listed(fx: &Fixture, addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut want = addrs.to_vec();
    want.sort();
    let mut last = Vec::new();
    let ok = process::poll_until(ANNOUNCE_TIMEOUT, || {
        last = fx.tracker.peers(fx.torrent.info_hash);
        last.sort();
        last == want
    });
    assert!(
        ok,
        "opentracker lists {last:?} for {:?}, expected exactly {want:?} within {ANNOUNCE_TIMEOUT:?}",
        fx.torrent.info_hash
    );
    last
}

/// The seeder closed the hostile leecher's connection within `bound` of its first bad request
/// and sent it no block it did not ask for, nor any longer than 16 KiB.
fn assert_cut_off(t: &Tessera, seeder: &Proc, r: &LeecherReport, bound: Duration) {
    assert!(
        r.handshake,
        "{:?}: no handshake from {}: {:?}\n{}",
        r.behaviour,
        t.name,
        r.ending,
        seeder.tail()
    );
    assert!(
        r.ending.cut_off(),
        "{:?}: {} did not close the connection within {:?} of the hostile requests \
         (ending {:?})\n{r:?}\n{}",
        r.behaviour,
        t.name,
        tessera_tests::scripted_leecher::CLOSE_WAIT,
        r.ending,
        seeder.tail()
    );
    let after = r.closed_after.expect("cut off after the hostile burst");
    assert!(
        after <= bound,
        "{:?}: {} took {after:.1?} to close the connection (bound {bound:?})",
        r.behaviour,
        t.name
    );
    assert_eq!(
        r.bad_blocks, 0,
        "{:?}: {} sent blocks nobody asked for or longer than 16 KiB: {r:?}",
        r.behaviour, t.name
    );
    assert!(
        r.largest_block <= 16 * 1024,
        "{:?}: {} sent a {}-byte block",
        r.behaviour,
        t.name,
        r.largest_block
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
fn mio_seed_to_libtorrent() {
    let _serial = serial();
    libtorrent_downloads_from_seed(&Tessera::mio());
}

#[test]
fn mio_seed_to_aria2() {
    let _serial = serial();
    aria2_downloads_from_seed(&Tessera::mio());
}

#[test]
fn mio_seed_to_transmission() {
    let _serial = serial();
    transmission_downloads_from_seed(&Tessera::mio());
}

#[test]
fn mio_chain_libtorrent_tessera_aria2() {
    let _serial = serial();
    chain_libtorrent_tessera_aria2(&Tessera::mio());
}

#[test]
fn mio_seed_cuts_off_hostile_leechers() {
    let _serial = serial();
    hostile_leechers_are_cut_off(&Tessera::mio());
}

#[test]
fn mio_partial_seed_cuts_off_unservable_requests() {
    let _serial = serial();
    partial_seed_cuts_off_unservable_requests(&Tessera::mio());
}

#[test]
fn mio_seed_tolerates_a_late_bitfield() {
    let _serial = serial();
    late_bitfield_is_tolerated(&Tessera::mio());
}

#[test]
fn mio_seed_stops_cleanly_on_sigint() {
    let _serial = serial();
    sigint_stops_cleanly(&Tessera::mio());
}
