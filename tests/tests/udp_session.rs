//! The session's UDP socket end to end: a torrent whose only tracker is `udp://` (opentracker,
//! a libtorrent seeder that announced to it over UDP), a torrent with no tracker at all whose
//! seeder Tessera finds through a small DHT of libtorrent sessions, and the cases where no
//! DHT datagram may leave at all (`--no-dht`, a private torrent), checked on a UDP socket
//! given to Tessera as its only DHT node.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tessera_tests::data::{Compare, FileSpec, compare_files, compare_trees};
use tessera_tests::libtorrent::{LtOptions, LtPeer};
use tessera_tests::lt_dht::LtDht;
use tessera_tests::process::{self, Proc};
use tessera_tests::tessera::Tessera;
use tessera_tests::torrent::{self, Torrent};
use tessera_tests::tracker::Opentracker;
use tessera_tests::{Scratch, bencode, serial};

const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(60);
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
const NAME: &str = "udp set";

// ---- a udp:// tracker only -------------------------------------------------------------------

/// Data, a torrent whose only tracker is opentracker's `udp://` URL, and a libtorrent seeder
/// that announced to it over UDP (libtorrent has no other way to reach it).
fn downloads_through_a_udp_tracker(t: &Tessera) {
    let scratch = Scratch::new();
    let logs = scratch.logs();
    let mut tracker = Opentracker::start(&logs, &[]);
    scratch.seed_files(
        NAME,
        &[
            FileSpec::new("a.bin", 3 << 20),
            FileSpec::new("b/c.bin", 700_001),
        ],
    );
    let torrent_path = scratch.path().join("udp.torrent");
    let url = tracker.udp_url();
    assert!(url.starts_with("udp://127.0.0.1:"), "{url}");
    torrent::mktorrent(
        &scratch.seed_dir().join(NAME),
        16,
        &url,
        &torrent_path,
        &logs,
    );
    let meta = Torrent::load(&torrent_path);
    tracker.allow(meta.info_hash);
    let _seeder = LtPeer::seed(
        &logs,
        &torrent_path,
        &scratch.seed_dir(),
        &LtOptions::default(),
    );
    tracker.wait_for_seeders(meta.info_hash, 1, ANNOUNCE_TIMEOUT);

    let out = scratch.new_dir("out");
    let started = Instant::now();
    let mut dl = t.download_with(&logs, &torrent_path, &out, &[], &["--no-dht"]);
    dl.wait_success(DOWNLOAD_TIMEOUT);
    eprintln!(
        "{} downloaded {} bytes through a udp:// tracker in {:.1?}",
        t.name,
        meta.total_length,
        started.elapsed()
    );
    compare_trees(&scratch.seed_dir(), &out, Compare::tessera());
    // What the tracker heard over UDP: the `completed` announce made Tessera count as a
    // seeder, and its `stopped` at the end took it out again, leaving libtorrent alone.
    let stderr = dl.stderr();
    assert!(
        !stderr.contains("not supported"),
        "the udp:// tracker was refused:\n{stderr}"
    );
    assert!(
        process::poll_until(Duration::from_secs(10), || {
            let s = tracker.scrape(meta.info_hash);
            s.complete == 1 && s.incomplete == 0
        }),
        "opentracker did not see Tessera's announces: {:?}",
        tracker.scrape(meta.info_hash)
    );
}

#[test]
fn mio_downloads_through_a_udp_tracker() {
    let _serial = serial();
    downloads_through_a_udp_tracker(&Tessera::mio());
}

#[test]
fn smol_downloads_through_a_udp_tracker() {
    let _serial = serial();
    downloads_through_a_udp_tracker(&Tessera::smol());
}

// ---- the DHT alone -------------------------------------------------------------------------

/// A torrent without trackers, seeded by one of four libtorrent sessions that form a DHT on
/// 127.0.0.1 and announced to it. Tessera, given one of the other sessions as its only DHT
/// node, finds the seeder and downloads; it announces itself, so that a libtorrent session
/// finds it by the info hash; it saves its routing table at the end, and a second run in
/// the same directory with no `--dht-node` at all finds the seeder from that table alone.
fn finds_a_seeder_through_the_dht(t: &Tessera) {
    let scratch = Scratch::new();
    let logs = scratch.logs();
    let lt_dir = scratch.new_dir("lt");
    let mut lt = LtDht::start(&logs, &lt_dir, 4);
    let torrent_path = lt_dir.join("dht-seed.torrent");
    let meta = Torrent::load(&torrent_path);
    assert_eq!(meta.info_hash.hex(), lt.info_hash);
    let raw = bencode::decode(&std::fs::read(&torrent_path).expect("read the torrent"))
        .expect("a bencoded torrent");
    assert!(
        raw.get("announce").is_none() && raw.get("announce-list").is_none(),
        "the torrent must have no tracker"
    );
    let bootstrap = lt.addrs()[2];
    assert_ne!(bootstrap.port(), lt.seeder_port);
    let data = std::fs::read(lt_dir.join("dht-seed.bin")).expect("the seeded data");

    // First run: through the given node; then seeding, and announced.
    let out = scratch.new_dir("out");
    let listen = SocketAddr::from(([127, 0, 0, 1], process::free_port()));
    let started = Instant::now();
    let node = bootstrap.to_string();
    let mut dl = t.download_and_seed(
        &logs,
        &torrent_path,
        &out,
        listen,
        &[],
        &["-vv", "--dht-node", &node],
    );
    let first_peer = wait_for_stderr(&mut dl, "peers from the DHT", DOWNLOAD_TIMEOUT);
    let file = out.join("dht-seed.bin");
    assert!(
        process::poll_until(DOWNLOAD_TIMEOUT, || std::fs::read(&file)
            .is_ok_and(|d| d == data)),
        "the download did not complete\n{}",
        dl.tail()
    );
    let done = started.elapsed();
    let seeder = format!("127.0.0.1:{}", lt.seeder_port);
    assert!(
        dl.stderr().contains(&seeder),
        "no sign of the seeder {seeder} in the log"
    );

    // libtorrent finds Tessera by the info hash: its announce_peer carried our port.
    let ours = listen.to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut asked = 0;
    let found = loop {
        lt.send(&format!("get_peers 1 {}", lt.info_hash));
        asked += 1;
        let until = Instant::now() + Duration::from_secs(5);
        let mut hit = false;
        while Instant::now() < until && !hit {
            while let Some(line) = lt.poll_line("PEERS 1") {
                hit |= line.split_whitespace().any(|w| w == ours);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if hit || Instant::now() >= deadline {
            break hit;
        }
    };
    assert!(
        found,
        "libtorrent did not find Tessera at {ours} ({asked} lookups)"
    );
    let status = dl.stop();
    assert!(status.success(), "{status}\n{}", dl.tail());
    let stderr = dl.stderr();
    let summary = stderr
        .lines()
        .rfind(|l| l.contains("datagrams received:"))
        .expect("the end-of-run line on the UDP socket");
    eprintln!(
        "{}: {}",
        t.name,
        &summary[summary.find("datagrams").unwrap_or(0)..]
    );

    // The routing table was kept, with the libtorrent nodes in it.
    let saved = std::fs::read(out.join(".tessera/dht.dat")).expect("dht.dat written");
    let state = bencode::decode(&saved).expect("dht.dat is bencoded");
    let nodes = state
        .get("nodes")
        .and_then(bencode::Value::as_bytes)
        .unwrap_or_default();
    assert!(
        nodes.len() >= 26 && nodes.len().is_multiple_of(26),
        "saved nodes: {} bytes",
        nodes.len()
    );
    assert_eq!(
        state
            .get("id")
            .and_then(bencode::Value::as_bytes)
            .map(<[u8]>::len),
        Some(20)
    );

    // Second run, same directory, the data and resume data gone, no --dht-node: the saved
    // table alone leads to the seeder (libtorrent's sessions are still up).
    std::fs::remove_file(&file).expect("remove the data");
    for entry in std::fs::read_dir(out.join(".tessera")).expect("the .tessera dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "resume") {
            std::fs::remove_file(&path).expect("remove the resume data");
        }
    }
    let warm = Instant::now();
    let mut again = t.download_with(&logs, &torrent_path, &out, &[], &["-vv"]);
    let warm_peer = wait_for_stderr(&mut again, "peers from the DHT", DOWNLOAD_TIMEOUT);
    again.wait_success(DOWNLOAD_TIMEOUT);
    compare_files(&lt_dir.join("dht-seed.bin"), &file);
    eprintln!(
        "{}: first peer through the DHT after {first_peer:.1?}, complete after {done:.1?}; \
         from the saved table alone: first peer after {warm_peer:.1?}, complete after {:.1?}",
        t.name,
        warm.elapsed()
    );
}

/// Polls `proc`'s stderr for `needle` (every 5 ms, for the time it took to show).
fn wait_for_stderr(proc: &mut Proc, needle: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    while !proc.stderr().contains(needle) {
        assert!(
            start.elapsed() < timeout && proc.is_running(),
            "no {needle:?} within {timeout:?}\n{}",
            proc.tail()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

#[test]
fn mio_finds_a_seeder_through_the_dht() {
    let _serial = serial();
    finds_a_seeder_through_the_dht(&Tessera::mio());
}

#[test]
fn smol_finds_a_seeder_through_the_dht() {
    let _serial = serial();
    finds_a_seeder_through_the_dht(&Tessera::smol());
}

// ---- no DHT datagram at all ----------------------------------------------------------------

/// A small torrent made by Tessera (`private` or not) with no tracker, and a Tessera seeder
/// of it (with no DHT) on a free port.
struct Swarm {
    scratch: Scratch,
    torrent: PathBuf,
    seeder: Proc,
    seeder_addr: SocketAddr,
}

impl Swarm {
    fn new(t: &Tessera, private: bool) -> Swarm {
        let scratch = Scratch::new();
        let logs = scratch.logs();
        let root = scratch.seed_files(NAME, &[FileSpec::new("x.bin", 2 << 20)]);
        let torrent = scratch.path().join("t.torrent");
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "create".as_ref(),
            root.as_os_str(),
            "-o".as_ref(),
            torrent.as_os_str(),
            "--no-date".as_ref(),
        ];
        if private {
            args.push("--private".as_ref());
        }
        let (status, _, err) = t.run(&args, Duration::from_secs(60));
        assert!(status.success(), "create failed: {err}");
        let seeder_addr = SocketAddr::from(([127, 0, 0, 1], process::free_port()));
        let seeder = t.seed_with(
            &logs,
            &torrent,
            &scratch.seed_dir(),
            seeder_addr,
            &[],
            &["--no-dht"],
        );
        process::wait_for_port(seeder_addr, Duration::from_secs(30), "the seeder");
        Swarm {
            scratch,
            torrent,
            seeder,
            seeder_addr,
        }
    }

    /// Downloads with `extra` flags and `--dht-node` pointing at `sink`; returns every
    /// datagram `sink` received from the start until a second after the download ended
    /// (queries are answered as by a node that knows nobody).
    fn download(&self, t: &Tessera, sink: &UdpSocket, extra: &[&str], dir: &str) -> Vec<Vec<u8>> {
        self.download_from(t, &self.torrent, sink, extra, dir)
    }

    /// [`Swarm::download`] of `source` (the torrent file, or a magnet link of it).
    fn download_from(
        &self,
        t: &Tessera,
        source: &std::path::Path,
        sink: &UdpSocket,
        extra: &[&str],
        dir: &str,
    ) -> Vec<Vec<u8>> {
        let out = self.scratch.new_dir(dir);
        let node = sink.local_addr().expect("sink address").to_string();
        let mut args = vec!["--dht-node", node.as_str()];
        args.extend_from_slice(extra);
        let mut dl = t.download_with(
            &self.scratch.logs(),
            source,
            &out,
            &[self.seeder_addr],
            &args,
        );
        let mut got = Vec::new();
        let deadline = Instant::now() + DOWNLOAD_TIMEOUT;
        let mut ended: Option<Instant> = None;
        let mut buf = [0u8; 2048];
        sink.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set_read_timeout");
        loop {
            if let Ok((n, from)) = sink.recv_from(&mut buf) {
                got.push(buf[..n].to_vec());
                if let Some(reply) = krpc_reply(&buf[..n]) {
                    let _ = sink.send_to(&reply, from);
                }
            }
            if ended.is_none() && !dl.is_running() {
                ended = Some(Instant::now());
            }
            if ended.is_some_and(|e| e.elapsed() > Duration::from_secs(1)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "download did not end\n{}",
                dl.tail()
            );
        }
        dl.wait_success(Duration::from_secs(5));
        compare_files(
            &self.scratch.seed_dir().join(NAME).join("x.bin"),
            &out.join(NAME).join("x.bin"),
        );
        got
    }
}

/// The answer of a DHT node that knows nobody to a KRPC query: its id and a token, with the
/// query's transaction id (so that the node enters the routing table and lookups use it).
fn krpc_reply(query: &[u8]) -> Option<Vec<u8>> {
    let v = bencode::decode(query).ok()?;
    if v.get("y").and_then(bencode::Value::as_bytes) != Some(b"q") {
        return None;
    }
    let t = v.get("t").and_then(bencode::Value::as_bytes)?;
    let mut out = b"d1:rd2:id20:".to_vec();
    out.extend_from_slice(&[0x42; 20]);
    out.extend_from_slice(b"5:token3:toke1:t");
    out.extend_from_slice(format!("{}:", t.len()).as_bytes());
    out.extend_from_slice(t);
    out.extend_from_slice(b"1:y1:re");
    Some(out)
}

/// The bencoded KRPC queries among `datagrams` (what a DHT node sends first).
fn krpc_queries(datagrams: &[Vec<u8>]) -> usize {
    datagrams
        .iter()
        .filter(|d| {
            bencode::decode(d).is_ok_and(|v| {
                v.get("y").and_then(bencode::Value::as_bytes) == Some(b"q")
                    && v.get("q").is_some()
                    && v.get("t").is_some()
            })
        })
        .count()
}

/// The same download three times with the same DHT node given: a public torrent queries
/// it (the check can see datagrams), `--no-dht` sends it nothing, and a private torrent
/// sends it nothing without being told.
fn sends_no_dht_datagram_when_off(t: &Tessera) {
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind the sink");

    let mut public = Swarm::new(t, false);
    let on = public.download(t, &sink, &[], "on");
    assert!(
        krpc_queries(&on) >= 1,
        "a public torrent's DHT sent the node nothing ({} datagrams)",
        on.len()
    );
    assert_eq!(
        krpc_queries(&on),
        on.len(),
        "only KRPC queries go to a DHT node"
    );
    let off = public.download(t, &sink, &["--no-dht"], "off");
    assert!(off.is_empty(), "--no-dht sent {} datagrams", off.len());
    public.seeder.stop();
    let _ = public.seeder_addr;

    let mut private = Swarm::new(t, true);
    let got = private.download(t, &sink, &[], "private");
    assert!(
        got.is_empty(),
        "a private torrent sent {} datagrams",
        got.len()
    );
    private.seeder.stop();
    eprintln!(
        "{}: {} DHT queries with the DHT on, none with --no-dht or a private torrent",
        t.name,
        on.len()
    );
}

/// The `get_peers` queries for `info_hash` among `datagrams`.
fn get_peers_for(datagrams: &[Vec<u8>], info_hash: &[u8; 20]) -> usize {
    datagrams
        .iter()
        .filter(|d| {
            bencode::decode(d).is_ok_and(|v| {
                v.get("q").and_then(bencode::Value::as_bytes) == Some(b"get_peers")
                    && v.get("a")
                        .and_then(|a| a.get("info_hash"))
                        .and_then(bencode::Value::as_bytes)
                        == Some(&info_hash[..])
            })
        })
        .count()
}

/// A magnet link of a public torrent (its seeder given with `--peer`, so that the metadata
/// comes either way), downloaded with a DHT node given: the node is asked `get_peers` for
/// the link's info hash; with `--no-dht` it gets nothing at all.
fn a_magnet_uses_the_dht_unless_told_not_to(t: &Tessera) {
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind the sink");
    let mut public = Swarm::new(t, false);
    let hash = Torrent::load(&public.torrent).info_hash;
    let magnet = format!("magnet:?xt=urn:btih:{}", hash.hex());
    let source = std::path::Path::new(&magnet);
    let on = public.download_from(t, source, &sink, &[], "magnet-on");
    assert!(
        get_peers_for(&on, &hash.0) >= 1,
        "no get_peers for the magnet link's info hash ({} datagrams)",
        on.len()
    );
    assert_eq!(krpc_queries(&on), on.len(), "only KRPC queries");
    let off = public.download_from(t, source, &sink, &["--no-dht"], "magnet-off");
    assert!(off.is_empty(), "--no-dht sent {} datagrams", off.len());
    public.seeder.stop();
    eprintln!(
        "{}: a magnet link sent {} DHT queries ({} get_peers for it) with the DHT on, none \
         with --no-dht",
        t.name,
        on.len(),
        get_peers_for(&on, &hash.0)
    );
}

#[test]
fn mio_magnet_uses_the_dht_unless_told_not_to() {
    let _serial = serial();
    a_magnet_uses_the_dht_unless_told_not_to(&Tessera::mio());
}

#[test]
fn smol_sends_no_dht_datagram_when_off() {
    let _serial = serial();
    sends_no_dht_datagram_when_off(&Tessera::smol());
}
