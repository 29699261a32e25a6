//! The core's protocol pieces against real peers, before the session uses them: the UDP
//! tracker client (BEP 15) driven over a real `UdpSocket` against opentracker, and the
//! metadata assembler (BEP 9) fetching an info dictionary from libtorrent over a plain TCP
//! connection. What they get is checked with the harness's own means (opentracker's HTTP
//! scrape, the torrent file's bytes); what they send is decoded and checked too.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use tessera_core::Instant;
use tessera_core::Rng;
use tessera_core::extension::{ExtensionHandshake, ExtensionIds};
use tessera_core::metadata::{AssemblerConfig, MetadataAssembler, MetadataEvent, MetadataMessage};
use tessera_core::tracker::udp::{
    Request, UdpRequestId, UdpTracker, UdpTrackerConfig, UdpTrackerError, UdpTrackerEvent,
};
use tessera_core::tracker::{AnnounceEvent, AnnounceParams};
use tessera_core::{ConnId, InfoHash as CoreHash, PeerId};
use tessera_tests::data::FileSpec;
use tessera_tests::libtorrent::{LtOptions, LtPeer};
use tessera_tests::torrent::{self, Torrent};
use tessera_tests::tracker::{Opentracker, Scrape};
use tessera_tests::{Fixture, Scratch, bencode, serial};

const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for one tracker exchange (opentracker answers at once on loopback).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);

/// A `UdpTracker` on a real socket, with the wall clock as its time.
struct UdpDriver {
    socket: UdpSocket,
    client: UdpTracker,
    start: std::time::Instant,
    /// Every request sent, decoded.
    sent: Vec<Request>,
}

impl UdpDriver {
    fn new(url: &str, seed: u64) -> UdpDriver {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        let client = UdpTracker::new(url, UdpTrackerConfig::default(), Rng::from_u64(seed))
            .expect("a valid udp:// URL");
        UdpDriver {
            socket,
            client,
            start: std::time::Instant::now(),
            sent: Vec::new(),
        }
    }

    fn port(&self) -> u16 {
        self.socket.local_addr().expect("local address").port()
    }

    fn now(&self) -> Instant {
        Instant::from_duration(self.start.elapsed())
    }

    fn announce(
        &mut self,
        info_hash: [u8; 20],
        id: &[u8; 20],
        event: AnnounceEvent,
    ) -> UdpRequestId {
        let params = AnnounceParams {
            info_hash: CoreHash(info_hash),
            peer_id: PeerId(*id),
            port: self.port(),
            uploaded: 0,
            downloaded: 0,
            left: 1_000_000,
            event,
            numwant: Some(50),
            key: 0x1234_5678,
            tracker_id: None,
        };
        let now = self.now();
        self.client.announce(now, params)
    }

    /// Runs the exchange until `request` ends (bounded by [`EXCHANGE_TIMEOUT`]).
    fn wait(&mut self, request: UdpRequestId) -> UdpTrackerEvent {
        let deadline = std::time::Instant::now() + EXCHANGE_TIMEOUT;
        let mut buf = vec![0u8; 65536];
        loop {
            while let Some((to, datagram)) = self.client.poll_transmit() {
                self.sent
                    .push(Request::decode(&datagram).expect("we send valid requests"));
                self.socket.send_to(&datagram, to).expect("send a datagram");
            }
            // One request at a time: its end is the only event.
            if let Some(event) = self.client.poll_event() {
                match &event {
                    UdpTrackerEvent::Resolve { host, .. } => panic!("nothing to resolve: {host}"),
                    UdpTrackerEvent::Announced { request: r, .. }
                    | UdpTrackerEvent::Scraped { request: r, .. }
                    | UdpTrackerEvent::Failed { request: r, .. }
                        if *r == request =>
                    {
                        return event;
                    }
                    other => panic!("an event for another request: {other:?}"),
                }
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "no answer from opentracker within {EXCHANGE_TIMEOUT:?}"
            );
            let until_timer = self
                .client
                .poll_timeout()
                .map_or(left, |t| t.saturating_duration_since(self.now()));
            let wait = until_timer
                .min(left)
                .clamp(Duration::from_millis(1), Duration::from_millis(200));
            self.socket
                .set_read_timeout(Some(wait))
                .expect("set a read timeout");
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let now = self.now();
                    assert!(
                        self.client.handle_datagram(now, from, &buf[..n]),
                        "opentracker's answer was not taken: {:?}",
                        &buf[..n.min(64)]
                    );
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    let now = self.now();
                    self.client.handle_timeout(now);
                }
                Err(e) => panic!("receiving from opentracker: {e}"),
            }
        }
    }

    /// The requests sent since the last call.
    fn take_sent(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.sent)
    }
}

fn announced_peers(event: &UdpTrackerEvent) -> (Vec<SocketAddr>, u32, u32) {
    match event {
        UdpTrackerEvent::Announced { response, .. } => {
            assert!(!response.interval.is_zero(), "no interval: {response:?}");
            (response.peers.clone(), response.seeders, response.leechers)
        }
        other => panic!("expected an announce answer, got {other:?}"),
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn udp_tracker_client_against_opentracker() {
    let _serial = serial();
    let scratch = Scratch::new();
    let logs = scratch.logs();
    let mut tracker = Opentracker::start(&logs, &[]);
    let source = scratch.seed_files("udp set", &[FileSpec::new("file.bin", 3 << 20)]);
    let torrent_path = scratch.path().join("udp.torrent");
    // The torrent's only tracker speaks UDP: libtorrent announces over UDP.
    let url = format!("{}/announce", tracker.udp_url());
    torrent::mktorrent(&source, 16, &url, &torrent_path, &logs);
    let torrent = Torrent::load(&torrent_path);
    let hash = torrent.info_hash;
    tracker.allow(hash);
    let seeder = LtPeer::seed(
        &logs,
        &torrent_path,
        &scratch.seed_dir(),
        &LtOptions::default(),
    );
    tracker.wait_for_seeders(hash, 1, ANNOUNCE_TIMEOUT);

    // First client: connect, then announce `started`; libtorrent's seeder is in the answer.
    let mut a = UdpDriver::new(&url, 1);
    let request = a.announce(hash.0, b"-TS0001-interop-aaaa", AnnounceEvent::Started);
    let answer = a.wait(request);
    let (peers, seeders, _) = announced_peers(&answer);
    assert!(
        peers.contains(&seeder.addr()),
        "libtorrent {} not among {peers:?}",
        seeder.addr()
    );
    assert_eq!(seeders, 1);
    let sent = a.take_sent();
    let [Request::Connect { .. }, Request::Announce(announce)] = &sent[..] else {
        panic!("expected a connect and an announce, sent {sent:?}");
    };
    assert_eq!(announce.info_hash.0, hash.0);
    assert_eq!(announce.event, AnnounceEvent::Started);
    assert_eq!(announce.port, a.port());
    assert_eq!(announce.url_data, b"/announce", "BEP 41 URL data");

    // A second client on another port gets both the seeder and the first client.
    let mut b = UdpDriver::new(&url, 2);
    let request = b.announce(hash.0, b"-TS0001-interop-bbbb", AnnounceEvent::Started);
    let (peers, seeders, leechers) = announced_peers(&b.wait(request));
    assert!(peers.contains(&seeder.addr()), "{peers:?}");
    assert!(
        peers.contains(&loopback(a.port())),
        "first client not among {peers:?}"
    );
    assert_eq!((seeders, leechers), (1, 2));

    // Scrape with the cached connection id: no connect this time; the counts agree with
    // opentracker's HTTP scrape.
    let now = a.now();
    let request = a.client.scrape(now, &[CoreHash(hash.0)]);
    let event = a.wait(request);
    let sent = a.take_sent();
    assert!(
        matches!(&sent[..], [Request::Scrape(s)] if s.info_hashes == [CoreHash(hash.0)]),
        "expected one scrape with the cached connection id, sent {sent:?}"
    );
    let UdpTrackerEvent::Scraped { files, .. } = event else {
        panic!("expected a scrape answer, got {event:?}");
    };
    let [(scraped, stats)] = files[..] else {
        panic!("{files:?}")
    };
    assert_eq!(scraped.0, hash.0);
    assert_eq!((stats.seeders, stats.leechers), (1, 2));
    assert_eq!(
        tracker.scrape(hash),
        Scrape {
            complete: 1,
            incomplete: 2
        }
    );

    // A torrent opentracker does not serve: it answers with an announce header and nothing
    // else (no interval, no counts, no error message), which fails the request at once
    // instead of leaving it to retransmissions.
    let request = a.announce([0x5a; 20], b"-TS0001-interop-aaaa", AnnounceEvent::Started);
    match a.wait(request) {
        UdpTrackerEvent::Failed {
            error: UdpTrackerError::Malformed(message),
            ..
        } => assert!(message.contains("announce answer of 8 bytes"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }

    // `stopped` takes both clients off the tracker.
    for (driver, id) in [
        (&mut a, b"-TS0001-interop-aaaa"),
        (&mut b, b"-TS0001-interop-bbbb"),
    ] {
        let request = driver.announce(hash.0, id, AnnounceEvent::Stopped);
        announced_peers(&driver.wait(request));
        let sent = driver.take_sent();
        assert!(
            sent.iter()
                .any(|r| matches!(r, Request::Announce(x) if x.event == AnnounceEvent::Stopped)),
            "{sent:?}"
        );
    }
    let (last, ok) = tracker.wait_for_scrape(hash, ANNOUNCE_TIMEOUT, |s| s.incomplete == 0);
    assert!(ok, "the clients are still listed after `stopped`: {last:?}");
    assert_eq!(last.complete, 1);
}

/// Reads one length-prefixed peer wire message (keep-alives skipped), bounded by 1 MiB.
fn read_message(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    loop {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        assert!(len <= 1 << 20, "a {len}-byte message from libtorrent");
        if len == 0 {
            continue;
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body)?;
        return Ok(body);
    }
}

fn send_extended(stream: &mut TcpStream, id: u8, payload: &[u8]) {
    let len = u32::try_from(payload.len() + 2).expect("a small message");
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(&[20, id]);
    frame.extend_from_slice(payload);
    stream.write_all(&frame).expect("write to libtorrent");
}

#[test]
fn metadata_assembler_fetches_the_info_dictionary_from_libtorrent() {
    let _serial = serial();
    // 32 KiB pieces over 64 MiB: about 41 KB of piece hashes, so the info dictionary comes
    // in three ut_metadata pieces.
    let fx = Fixture::multi_file(15);
    let seeder = LtPeer::seed(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        &LtOptions::default(),
    );
    let raw = std::fs::read(&fx.torrent.path).expect("read the torrent");
    let span = bencode::top_level_span(&raw, "info")
        .expect("a torrent")
        .expect("an info dictionary");
    let info = &raw[span];
    assert!(info.len() > 2 * 16384, "only {} bytes of info", info.len());
    let hash = fx.torrent.info_hash;

    let mut stream = TcpStream::connect_timeout(&seeder.addr(), Duration::from_secs(5))
        .expect("connect to libtorrent");
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("set a read timeout");
    // BitTorrent handshake with the extension protocol bit (BEP 10: reserved bit 20).
    let mut handshake = vec![19];
    handshake.extend_from_slice(b"BitTorrent protocol");
    handshake.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
    handshake.extend_from_slice(&hash.0);
    handshake.extend_from_slice(b"-TS0001-metadata-cli");
    stream.write_all(&handshake).expect("send the handshake");
    let mut theirs = [0u8; 68];
    stream
        .read_exact(&mut theirs)
        .expect("libtorrent's handshake");
    assert_eq!(
        &theirs[28..48],
        &hash.0,
        "libtorrent answered for another torrent"
    );
    assert!(
        theirs[25] & 0x10 != 0,
        "libtorrent does not offer the extension protocol"
    );

    // Our extension handshake offers ut_metadata as id 3.
    const OUR_ID: u8 = 3;
    let ours = ExtensionHandshake {
        extensions: ExtensionIds {
            ut_metadata: Some(OUR_ID),
            ut_pex: None,
        },
        client: Some("tessera-interop".into()),
        ..ExtensionHandshake::default()
    };
    send_extended(&mut stream, 0, &ours.encode());

    let conn = ConnId(1);
    let mut assembler = MetadataAssembler::new(CoreHash(hash.0), AssemblerConfig::default());
    let start = std::time::Instant::now();
    let now = || Instant::from_duration(start.elapsed());
    let mut their_id = None;
    let mut requested = Vec::new();
    let deadline = start + Duration::from_secs(30);
    let fetched: Bytes = 'fetch: loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no metadata from libtorrent within 30 s (asked for {requested:?})"
        );
        if let Some(id) = their_id {
            while let Some((to, message)) = assembler.poll_transmit() {
                assert_eq!(to, conn);
                if let MetadataMessage::Request { piece } = message {
                    requested.push(piece);
                }
                send_extended(&mut stream, id, &message.encode());
            }
        }
        match assembler.poll_event() {
            Some(MetadataEvent::Complete(bytes)) => break 'fetch bytes,
            Some(other) => panic!("{other:?}"),
            None => {}
        }
        let body = match read_message(&mut stream) {
            Ok(body) => body,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                assembler.handle_timeout(now());
                continue;
            }
            Err(e) => panic!("reading from libtorrent: {e}"),
        };
        // Only extended messages matter here (bitfield, have, unchoke... are not).
        let [20, ext, payload @ ..] = &body[..] else {
            continue;
        };
        if *ext == 0 {
            let handshake = ExtensionHandshake::parse(payload).expect("libtorrent's handshake");
            let id = handshake
                .extensions
                .metadata_id()
                .expect("libtorrent offers ut_metadata");
            assert_eq!(handshake.metadata_size, Some(info.len() as u64));
            their_id = Some(id);
            assembler
                .add_peer(now(), conn, handshake.metadata_size)
                .expect("a usable metadata size");
        } else if *ext == OUR_ID {
            let message = MetadataMessage::decode(&Bytes::copy_from_slice(payload))
                .expect("a well-formed ut_metadata message");
            assembler
                .handle_message(now(), conn, &message)
                .expect("libtorrent keeps to the protocol");
        }
    };
    assert_eq!(
        &fetched[..],
        info,
        "the info dictionary as in the torrent file"
    );
    assert_eq!(torrent::sha1(&fetched), hash.0);
    requested.sort_unstable();
    assert_eq!(requested, [0, 1, 2], "each piece asked once");
}
