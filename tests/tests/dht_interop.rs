//! Tessera's DHT node (`tessera_core::dht::Dht`, driven here over a real UDP socket on
//! 127.0.0.1) in a small DHT of libtorrent 2.0 sessions: it bootstraps from them, finds the
//! peer one of them announced, announces so that libtorrent finds it, and answers
//! libtorrent's queries well enough that libtorrent keeps it in its routing table and gets
//! peers from it. Every datagram Tessera sends is decoded and checked on the way out.
//!
//! Then the binaries: `download MAGNET` with no tracker and no peer, only a libtorrent
//! session as its DHT node, finds libtorrent's seeder through the DHT alone; and a Tessera
//! seeder that announced to that DHT is found the same way by another Tessera.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use tessera_core::InfoHash;
use tessera_core::Instant;
use tessera_core::dht::{Body, Config, Dht, DhtEvent, LookupDone, Message, Query};
use tessera_tests::data::{Compare, FileSpec, compare_files, compare_trees};
use tessera_tests::lt_dht::LtDht;
use tessera_tests::process::{self, Proc};
use tessera_tests::tessera::Tessera;
use tessera_tests::torrent::Torrent;
use tessera_tests::{Scratch, serial};

/// Our DHT node on a UDP socket, with what it sent and told.
struct Node {
    dht: Dht,
    sock: UdpSocket,
    epoch: std::time::Instant,
    events: Vec<DhtEvent>,
    sent: Vec<(SocketAddr, Message)>,
}

impl Node {
    fn new() -> Node {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        let dht = Dht::new(Config::loopback(), Instant::ZERO, [0x5e; 32], None, None);
        Node {
            dht,
            sock,
            epoch: std::time::Instant::now(),
            events: Vec::new(),
            sent: Vec::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local address")
    }

    fn now(&self) -> Instant {
        Instant::from_duration(self.epoch.elapsed())
    }

    fn flush(&mut self) {
        while let Some((to, bytes)) = self.dht.poll_transmit() {
            let msg = Message::decode(&bytes).expect("Tessera sent a malformed KRPC message");
            self.sock.send_to(&bytes, to).expect("send_to");
            self.sent.push((to, msg));
        }
        while let Some(e) = self.dht.poll_event() {
            self.events.push(e);
        }
        self.dht.check_invariants().expect("DHT invariants");
    }

    /// Runs the node for at most `slice`.
    fn run_for(&mut self, slice: Duration) {
        let end = std::time::Instant::now() + slice;
        let mut buf = vec![0u8; 65536];
        loop {
            self.flush();
            let now = std::time::Instant::now();
            if now >= end {
                return;
            }
            let wake = self
                .dht
                .poll_timeout()
                .map_or(Duration::from_millis(50), |t| {
                    t.saturating_duration_since(self.now())
                });
            let wait = wake.min(end - now).max(Duration::from_millis(1));
            self.sock
                .set_read_timeout(Some(wait))
                .expect("set_read_timeout");
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let now = self.now();
                    self.dht.handle_datagram(now, from, &buf[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("recv_from: {e}"),
            }
            let now = self.now();
            if self.dht.poll_timeout().is_some_and(|t| t <= now) {
                self.dht.handle_timeout(now);
            }
        }
    }

    /// Runs the node until `done` holds; panics after `timeout`.
    fn run_until(&mut self, timeout: Duration, what: &str, mut done: impl FnMut(&Node) -> bool) {
        let end = std::time::Instant::now() + timeout;
        while !done(self) {
            assert!(
                std::time::Instant::now() < end,
                "{what}: not within {timeout:?}; stats {:?}",
                self.dht.stats()
            );
            self.run_for(Duration::from_millis(50));
        }
    }

    fn done(&self, lookup: tessera_core::dht::LookupId) -> Option<&LookupDone> {
        self.events.iter().find_map(|e| match e {
            DhtEvent::LookupDone(d) if d.lookup == lookup => Some(d),
            _ => None,
        })
    }

    fn peers(&self, lookup: tessera_core::dht::LookupId) -> Vec<SocketAddr> {
        self.events
            .iter()
            .filter_map(|e| match e {
                DhtEvent::Peers {
                    lookup: l, peers, ..
                } if *l == lookup => Some(peers.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

fn hex_hash(s: &str) -> InfoHash {
    InfoHash::from_hex(s).expect("a 40-digit info hash")
}

#[test]
fn tessera_dht_node_works_with_libtorrent_dht() {
    let _serial = serial();
    let scratch = Scratch::new();
    let dir = scratch.new_dir("lt");
    let mut lt = LtDht::start(&scratch.logs(), &dir, 3);
    let lt_addrs = lt.addrs();
    let seeder = SocketAddr::from(([127, 0, 0, 1], lt.seeder_port));
    let info_hash = hex_hash(&lt.info_hash);

    // Bootstrap from the three libtorrent sessions: all three enter our routing table.
    let mut node = Node::new();
    let now = node.now();
    node.dht.bootstrap(now, &lt_addrs);
    node.run_until(Duration::from_secs(30), "bootstrap", |n| {
        n.dht.is_bootstrapped() && n.dht.stats().nodes[0] == 3
    });
    // Our queries went out as find_node for our own id, to libtorrent's ports.
    assert!(node.sent.iter().any(|(to, m)| lt_addrs.contains(to)
        && matches!(&m.body, Body::Query(Query::FindNode { target, .. }) if *target == node.dht.id())));

    // libtorrent announces its torrent again now that we are around: it sends us get_peers
    // for a token, then announce_peer.
    lt.send("announce");
    let ours = node.addr();
    let mut found = Vec::new();
    for _ in 0..10 {
        let now = node.now();
        let lookup = node.dht.get_peers(now, info_hash);
        node.run_until(Duration::from_secs(30), "get_peers lookup", |n| {
            n.done(lookup).is_some()
        });
        found = node.peers(lookup);
        if found.contains(&seeder) {
            break;
        }
        node.run_for(Duration::from_secs(1));
    }
    assert!(
        found.contains(&seeder),
        "libtorrent's seeder {seeder} not found through the DHT: {found:?}"
    );

    // libtorrent stored its announce with us too (it took our token).
    node.run_until(
        Duration::from_secs(30),
        "libtorrent's announce to us",
        |n| n.dht.store().peers_of(&info_hash) > 0,
    );
    assert!(node.dht.stats().announces_accepted >= 1);

    // We announce a torrent of our own; libtorrent's get_peers finds us.
    let ours_hash = InfoHash([0x5a; 20]);
    let our_peer_port = 41_234;
    let now = node.now();
    let lookup = node.dht.announce(now, ours_hash, Some(our_peer_port));
    node.run_until(Duration::from_secs(30), "announce lookup", |n| {
        n.done(lookup).is_some()
    });
    let done = node.done(lookup).cloned().expect("announce done");
    assert!(done.announced >= 2, "{done:?}");
    let announces: Vec<&(SocketAddr, Message)> = node
        .sent
        .iter()
        .filter(|(_, m)| matches!(&m.body, Body::Query(Query::AnnouncePeer { info_hash, port, .. }) if *info_hash == ours_hash && *port == our_peer_port))
        .collect();
    assert_eq!(announces.len(), done.announced);
    // libtorrent answered them (an error would be a refused token).
    node.run_for(Duration::from_secs(1));
    assert_eq!(node.dht.stats().errors_received, 0);
    let expected = format!("127.0.0.1:{our_peer_port}");
    let mut seen = String::new();
    for _ in 0..5 {
        lt.send(&format!("get_peers 2 {}", hex(&ours_hash.0)));
        seen = lt.wait_line("PEERS 2", Duration::from_secs(60), || {
            node.run_for(Duration::from_millis(50))
        });
        if seen.contains(&expected) {
            break;
        }
    }
    assert!(
        seen.contains(&expected),
        "libtorrent did not find our announce: {seen}"
    );

    // libtorrent keeps our node in its routing table, and gets peers from us: session 1's
    // lookup for the seeded torrent receives `values` in a reply from our port.
    let our_id = node.dht.id().to_string();
    for i in 0..3 {
        lt.send(&format!("live {i}"));
        let line = lt.wait_line(&format!("LIVE {i}"), Duration::from_secs(30), || {
            node.run_for(Duration::from_millis(50))
        });
        assert!(
            line.contains(&format!("{our_id}@127.0.0.1:{}", ours.port())),
            "libtorrent session {i} does not keep us: {line}"
        );
    }
    lt.send(&format!("get_peers 1 {}", lt.info_hash));
    lt.wait_line("PEERS 1", Duration::from_secs(60), || {
        node.run_for(Duration::from_millis(50))
    });
    lt.send("replies 1");
    let replies = lt.wait_line("REPLIES 1", Duration::from_secs(10), || {
        node.run_for(Duration::from_millis(50))
    });
    assert!(
        replies
            .split_whitespace()
            .any(|w| w.starts_with(&format!("{}:", ours.port()))),
        "libtorrent got no values from us: {replies}"
    );
    // And on our side of the wire: a get_peers reply carrying the seeder, with a token.
    assert!(node.sent.iter().any(|(to, m)| lt_addrs.contains(to)
        && matches!(&m.body, Body::Response(r) if r.values.contains(&seeder) && r.token.is_some())));
    assert!(node.dht.stats().queries_answered > 0);
    lt.send("quit");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---- download MAGNET through the DHT alone ---------------------------------------------------

const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Polls `proc`'s stderr until it contains `needle`; the time it took.
fn wait_for_stderr(proc: &mut Proc, needle: &str, timeout: Duration) -> Duration {
    let start = std::time::Instant::now();
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

/// The DHT queries libtorrent's sessions received from 127.0.0.1:`port`, by name.
fn queries_from(lt: &mut LtDht, port: u16) -> Vec<(String, usize)> {
    lt.send(&format!("queries {port}"));
    let line = lt.wait_line(&format!("QUERIES {port}"), Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(20))
    });
    line.split_whitespace()
        .skip(2)
        .filter_map(|w| {
            let (q, n) = w.split_once(':')?;
            Some((q.to_owned(), n.parse().ok()?))
        })
        .collect()
}

fn count(queries: &[(String, usize)], name: &str) -> usize {
    queries
        .iter()
        .filter(|(q, _)| q == name)
        .map(|(_, n)| *n)
        .sum()
}

/// Four libtorrent sessions form a DHT on 127.0.0.1; session 0 seeds a torrent with no
/// tracker and announced it. Tessera gets only `magnet:?xt=urn:btih:<hash>` and one of the
/// other sessions as its DHT node (`--dht-bootstrap`): it looks the info hash up with plain
/// `get_peers` while the metadata is missing, fetches the metadata and the data from the
/// seeder it found (compared byte for byte), then announces itself. On libtorrent's side of
/// the wire: `get_peers` and `announce_peer` queries from Tessera's port, and a libtorrent
/// lookup that finds Tessera by the info hash.
fn downloads_a_magnet_through_the_dht_alone(t: &Tessera) {
    let scratch = Scratch::new();
    let logs = scratch.logs();
    let lt_dir = scratch.new_dir("lt");
    let mut lt = LtDht::start(&logs, &lt_dir, 4);
    let bootstrap = lt.addrs()[2];
    assert_ne!(bootstrap.port(), lt.seeder_port);
    let magnet = format!("magnet:?xt=urn:btih:{}", lt.info_hash);
    let data = std::fs::read(lt_dir.join("dht-seed.bin")).expect("the seeded data");

    let out = scratch.new_dir("out");
    let listen = SocketAddr::from(([127, 0, 0, 1], process::free_port()));
    let node = bootstrap.to_string();
    let started = std::time::Instant::now();
    let mut dl = t.download_and_seed(
        &logs,
        Path::new(&magnet),
        &out,
        listen,
        &[],
        &["-vv", "--dht-bootstrap", &node],
    );
    let metadata = wait_for_stderr(&mut dl, "metadata received from peers", DOWNLOAD_TIMEOUT);
    let file = out.join("dht-seed.bin");
    assert!(
        process::poll_until(DOWNLOAD_TIMEOUT, || std::fs::read(&file)
            .is_ok_and(|d| d == data)),
        "the download did not complete\n{}",
        dl.tail()
    );
    let done = started.elapsed();
    compare_files(&lt_dir.join("dht-seed.bin"), &file);
    let stderr = dl.stderr();
    let seeder = format!("127.0.0.1:{}", lt.seeder_port);
    assert!(
        stderr.contains(&seeder),
        "no sign of the seeder {seeder} in the log"
    );
    // Tessera's own account: plain lookups before the metadata, an announce after.
    let got_metadata = stderr
        .find("metadata received from peers")
        .expect("seen above");
    let get_peers = stderr
        .find("DHT get_peers lookup")
        .expect("a get_peers lookup");
    assert!(
        get_peers < got_metadata,
        "the lookup ran before the metadata came"
    );
    let announce = stderr
        .find("DHT announce lookup")
        .expect("an announce lookup once the metadata is in");
    assert!(announce > got_metadata);

    // On the wire, as libtorrent saw it: get_peers, then announce_peer with a token.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let queries = loop {
        let q = queries_from(&mut lt, listen.port());
        if count(&q, "announce_peer") > 0 || std::time::Instant::now() >= deadline {
            break q;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(count(&queries, "get_peers") >= 1, "{queries:?}");
    assert!(count(&queries, "announce_peer") >= 1, "{queries:?}");
    // And a libtorrent lookup finds Tessera by the info hash.
    let ours = listen.to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let found = loop {
        lt.send(&format!("get_peers 1 {}", lt.info_hash));
        let line = lt.wait_line("PEERS 1", Duration::from_secs(30), || {
            std::thread::sleep(Duration::from_millis(20))
        });
        let hit = line.split_whitespace().any(|w| w == ours);
        if hit || std::time::Instant::now() >= deadline {
            break hit;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(found, "libtorrent did not find Tessera at {ours}");
    let status = dl.stop();
    assert!(status.success(), "{status}\n{}", dl.tail());
    lt.send("quit");
    eprintln!(
        "{}: magnet through the DHT alone: metadata after {:.3} s, complete after {:.3} s \
         (libtorrent saw {queries:?} from Tessera)",
        t.name,
        metadata.as_secs_f64(),
        done.as_secs_f64()
    );
}

#[test]
fn mio_downloads_a_magnet_through_the_dht_alone() {
    let _serial = serial();
    downloads_a_magnet_through_the_dht_alone(&Tessera::mio());
}

#[test]
fn smol_downloads_a_magnet_through_the_dht_alone() {
    let _serial = serial();
    downloads_a_magnet_through_the_dht_alone(&Tessera::smol());
}

/// The DHT of libtorrent sessions as the only meeting place of two Tesseras: `tessera-smol
/// seed` of a torrent with no tracker, given one session as its DHT node, announces it
/// (libtorrent saw `announce_peer` from its port); then `tessera-mio download` of the bare
/// magnet link, given another session, finds the seeder through the DHT and downloads the
/// tree byte for byte.
#[test]
fn a_tessera_seeder_is_found_through_the_dht_from_a_bare_magnet() {
    let _serial = serial();
    let (seeder_bin, leecher_bin) = (Tessera::smol(), Tessera::mio());
    let scratch = Scratch::new();
    let logs = scratch.logs();
    let lt_dir = scratch.new_dir("lt");
    let mut lt = LtDht::start(&logs, &lt_dir, 4);
    let addrs = lt.addrs();

    let name = "dht set";
    let root = scratch.seed_files(
        name,
        &[
            FileSpec::new("a.bin", 1 << 20),
            FileSpec::new("b/c.bin", 300_001),
        ],
    );
    let torrent = scratch.path().join("t.torrent");
    let (status, _, err) = seeder_bin.run(
        &[
            "create".as_ref(),
            root.as_os_str(),
            "-o".as_ref(),
            torrent.as_os_str(),
            "--no-date".as_ref(),
        ],
        Duration::from_secs(60),
    );
    assert!(status.success(), "create failed: {err}");
    let hash = Torrent::load(&torrent).info_hash.hex();

    let seeder_addr = SocketAddr::from(([127, 0, 0, 1], process::free_port()));
    let seeder_node = addrs[1].to_string();
    let mut seeder = seeder_bin.seed_with(
        &logs,
        &torrent,
        &scratch.seed_dir(),
        seeder_addr,
        &[],
        &["--dht-bootstrap", &seeder_node],
    );
    process::wait_for_port(seeder_addr, Duration::from_secs(30), "the seeder");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let seeder_queries = loop {
        let q = queries_from(&mut lt, seeder_addr.port());
        if count(&q, "announce_peer") > 0 || std::time::Instant::now() >= deadline {
            break q;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        count(&seeder_queries, "announce_peer") >= 1,
        "the seeder did not announce: {seeder_queries:?}\n{}",
        seeder.tail()
    );

    let out = scratch.new_dir("out");
    let magnet = format!("magnet:?xt=urn:btih:{hash}");
    let leecher_node = addrs[3].to_string();
    let started = std::time::Instant::now();
    let mut dl = leecher_bin.download_with(
        &logs,
        Path::new(&magnet),
        &out,
        &[],
        &["-vv", "--dht-bootstrap", &leecher_node],
    );
    let metadata = wait_for_stderr(&mut dl, "metadata received from peers", DOWNLOAD_TIMEOUT);
    dl.wait_success(DOWNLOAD_TIMEOUT);
    let done = started.elapsed();
    compare_trees(&scratch.seed_dir(), &out, Compare::tessera());
    let stderr = dl.stderr();
    assert!(
        stderr.contains(&seeder_addr.to_string()),
        "no sign of the seeder {seeder_addr} in the log\n{}",
        dl.tail()
    );
    assert!(stderr.contains("peers from the DHT"), "{}", dl.tail());
    let status = seeder.stop();
    assert!(status.success(), "{status}\n{}", seeder.tail());
    lt.send("quit");
    eprintln!(
        "{} seeding, {} from the bare magnet through the DHT: metadata after {:.3} s, \
         complete after {:.3} s",
        seeder_bin.name,
        leecher_bin.name,
        metadata.as_secs_f64(),
        done.as_secs_f64()
    );
}
