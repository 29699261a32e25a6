//! uTP against libtorrent 2.0.8 with TCP off both ways: tessera-core's `UtpSocket`, driven
//! over a real UDP socket on 127.0.0.1, carries the BitTorrent wire protocol (spoken by
//! hand here, from BEP 3) to a libtorrent seeder and from a libtorrent leecher.
//!
//! - `download_from_libtorrent_over_utp`: we dial libtorrent's uTP port, handshake, get its
//!   bitfield, request every block of a 4 MiB torrent and compare what arrives with the
//!   data; then we close and the connection ends cleanly on both sides.
//! - `libtorrent_downloads_from_us_over_utp`: libtorrent dials our UDP socket, we accept
//!   and serve its requests; it verifies every piece, and its file equals the data.
//!
//! Each prints its throughput (loopback, debug or release as built; not a benchmark).

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant as StdInstant};

use bytes::{Buf, Bytes};
use tessera_core::rng::Rng;
use tessera_core::time::Instant;
use tessera_core::utp::{StreamId, UtpConfig, UtpEvent, UtpSocket};
use tessera_tests::bencode::{self, Value};
use tessera_tests::data::XorShift;
use tessera_tests::libtorrent::{LtOptions, LtPeer};
use tessera_tests::{Scratch, serial, torrent};

const PIECE: usize = 256 * 1024;
const BLOCK: usize = 16 * 1024;
/// Sixteen whole pieces and a short last one.
const LEN: usize = 4 * 1024 * 1024 + 12_345;
const NAME: &str = "utp.bin";

/// A single-file torrent without trackers, its data, and a scratch directory.
struct Fixture {
    scratch: Scratch,
    torrent: PathBuf,
    info_hash: [u8; 20],
    data: Bytes,
}

impl Fixture {
    fn new() -> Fixture {
        let scratch = Scratch::new();
        let mut data = vec![0u8; LEN];
        XorShift::new(29).fill(&mut data);
        let seed = scratch.new_dir("seed");
        std::fs::write(seed.join(NAME), &data).expect("write the data");
        let pieces: Vec<u8> = data.chunks(PIECE).flat_map(torrent::sha1).collect();
        let info = bencode::dict([
            ("length", Value::Int(LEN as i64)),
            ("name", bencode::bytes(NAME)),
            ("piece length", Value::Int(PIECE as i64)),
            ("pieces", bencode::bytes(pieces)),
        ]);
        let path = scratch.path().join("utp.torrent");
        let hash = torrent::write_raw_torrent(&path, None, info);
        Fixture {
            scratch,
            torrent: path,
            info_hash: hash.0,
            data: Bytes::from(data),
        }
    }

    fn pieces(&self) -> usize {
        LEN.div_ceil(PIECE)
    }
}

/// Tessera's uTP socket on a real UDP socket.
struct UtpEnd {
    udp: UdpSocket,
    utp: UtpSocket,
    epoch: StdInstant,
    buf: Vec<u8>,
    events: VecDeque<UtpEvent>,
    datagrams_in: u64,
    datagrams_out: u64,
    largest_out: usize,
}

impl UtpEnd {
    fn new(seed: u64) -> UtpEnd {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        UtpEnd {
            udp,
            utp: UtpSocket::new(UtpConfig::default(), Rng::from_u64(seed)),
            epoch: StdInstant::now(),
            buf: vec![0u8; 65536],
            events: VecDeque::new(),
            datagrams_in: 0,
            datagrams_out: 0,
            largest_out: 0,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.udp.local_addr().expect("local address")
    }

    fn now(&self) -> Instant {
        // Not zero: a zero timestamp means "unset" in uTP.
        Instant::from_duration(self.epoch.elapsed() + Duration::from_secs(1))
    }

    /// Sends what the socket queued and collects its events.
    fn flush(&mut self) {
        let now = self.now();
        while let Some(t) = self.utp.poll_transmit(now) {
            self.largest_out = self.largest_out.max(t.data.len());
            self.datagrams_out += 1;
            self.udp.send_to(&t.data, t.to).expect("send a datagram");
        }
        while let Some(e) = self.utp.poll_event() {
            self.events.push_back(e);
        }
    }

    /// Waits at most `max` (less if a timer is due) for datagrams, handles them and the
    /// timers.
    fn pump(&mut self, max: Duration) {
        self.flush();
        let now = self.now();
        let wait = self
            .utp
            .poll_timeout()
            .map_or(max, |t| t - now)
            .min(max)
            .max(Duration::from_micros(100));
        self.udp
            .set_read_timeout(Some(wait))
            .expect("set a read timeout");
        let mut first = true;
        loop {
            match self.udp.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    self.datagrams_in += 1;
                    let now = self.now();
                    assert!(
                        self.utp.handle_datagram(now, from, &self.buf[..n]),
                        "libtorrent sent something that is not uTP"
                    );
                    self.flush();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => panic!("receiving: {e}"),
            }
            if first {
                first = false;
                self.udp.set_nonblocking(true).expect("non-blocking");
            }
        }
        self.udp.set_nonblocking(false).expect("blocking");
        let now = self.now();
        if self.utp.poll_timeout().is_some_and(|t| t <= now) {
            self.utp.handle_timeout(now);
        }
        self.flush();
    }
}

/// Bytes queued for one stream, written as its send room allows.
#[derive(Default)]
struct Outgoing(VecDeque<Bytes>);

impl Outgoing {
    fn push(&mut self, b: impl Into<Bytes>) {
        self.0.push_back(b.into());
    }

    fn write(&mut self, end: &mut UtpEnd, stream: StreamId) {
        while let Some(front) = self.0.front_mut() {
            let now = end.now();
            let n = end
                .utp
                .write(now, stream, front.clone())
                .expect("write to an open stream");
            if n < front.len() {
                front.advance(n);
                break;
            }
            self.0.pop_front();
        }
        end.flush();
    }
}

/// BEP 3 messages, as far as these tests need them.
#[derive(Debug)]
enum Msg {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have,
    Bitfield(Vec<u8>),
    Request(u32, u32, u32),
    Piece(u32, u32, Vec<u8>),
    Cancel,
    /// Any other message id (extension protocol, fast extension...).
    Other,
}

fn handshake(info_hash: &[u8; 20], peer_id: &[u8; 20]) -> Vec<u8> {
    let mut h = vec![19];
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(info_hash);
    h.extend_from_slice(peer_id);
    h
}

fn message(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    m.push(id);
    m.extend_from_slice(payload);
    m
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reassembles what arrives on a stream into the handshake and messages.
#[derive(Default)]
struct Reader {
    buf: Vec<u8>,
    handshake: Option<Vec<u8>>,
}

impl Reader {
    fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The peer's handshake once complete (68 bytes).
    fn handshake(&mut self) -> Option<Vec<u8>> {
        if self.handshake.is_none() && self.buf.len() >= 68 {
            self.handshake = Some(self.buf.drain(..68).collect());
            return self.handshake.clone();
        }
        None
    }

    fn next(&mut self) -> Option<Msg> {
        self.handshake.as_ref()?;
        if self.buf.len() < 4 {
            return None;
        }
        let len = be32(&self.buf) as usize;
        assert!(
            len <= BLOCK + 9 || len <= 1 + LEN.div_ceil(PIECE),
            "message of {len} bytes"
        );
        if self.buf.len() < 4 + len {
            return None;
        }
        let body: Vec<u8> = self.buf.drain(..4 + len).skip(4).collect();
        if body.is_empty() {
            return Some(Msg::KeepAlive);
        }
        let p = &body[1..];
        Some(match body[0] {
            0 => Msg::Choke,
            1 => Msg::Unchoke,
            2 => Msg::Interested,
            3 => Msg::NotInterested,
            4 => Msg::Have,
            5 => Msg::Bitfield(p.to_vec()),
            6 => Msg::Request(be32(p), be32(&p[4..]), be32(&p[8..])),
            7 => Msg::Piece(be32(p), be32(&p[4..]), p[8..].to_vec()),
            8 => Msg::Cancel,
            _ => Msg::Other,
        })
    }
}

/// The machine's count of UDP datagrams dropped because a socket's receive buffer was full
/// (`RcvbufErrors` in /proc/net/snmp; every process counts, so only a hint).
fn udp_receive_buffer_drops() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

fn peer_id() -> [u8; 20] {
    let mut id = *b"-TS0001-000000000000";
    XorShift::new(std::process::id().into()).fill(&mut id[8..]);
    id
}

#[test]
fn download_from_libtorrent_over_utp() {
    let _serial = serial();
    let fx = Fixture::new();
    let opts = LtOptions {
        utp_only: true,
        ..LtOptions::default()
    };
    let mut lt = LtPeer::seed(
        &fx.scratch.logs(),
        &fx.torrent,
        &fx.scratch.path().join("seed"),
        &opts,
    );
    let mut end = UtpEnd::new(1);
    let start = StdInstant::now();
    let now = end.now();
    let stream = end.utp.connect(now, lt.addr()).expect("connect");
    let mut out = Outgoing::default();
    out.push(handshake(&fx.info_hash, &peer_id()));
    out.write(&mut end, stream);

    let blocks: Vec<(u32, u32, u32)> = (0..LEN)
        .step_by(BLOCK)
        .map(|off| {
            (
                (off / PIECE) as u32,
                (off % PIECE) as u32,
                BLOCK.min(LEN - off) as u32,
            )
        })
        .collect();
    let mut got = vec![0u8; LEN];
    let mut have = vec![false; blocks.len()];
    let (mut next, mut outstanding, mut received) = (0usize, 0usize, 0usize);
    let (mut connected, mut unchoked) = (false, false);
    let mut reader = Reader::default();
    let deadline = StdInstant::now() + Duration::from_secs(120);
    while received < LEN {
        assert!(
            StdInstant::now() < deadline,
            "{received} of {LEN} bytes after 120 s; libtorrent:\n{}",
            lt.proc().tail()
        );
        end.pump(Duration::from_millis(20));
        while let Some(e) = end.events.pop_front() {
            match e {
                UtpEvent::Connected { stream: s } => {
                    assert_eq!(s, stream);
                    connected = true;
                }
                UtpEvent::Data { data, .. } => reader.feed(&data),
                UtpEvent::Sent { .. } => {}
                e => panic!("{e:?}; libtorrent:\n{}", lt.proc().tail()),
            }
        }
        if let Some(h) = reader.handshake() {
            assert!(connected);
            assert_eq!(&h[..20], b"\x13BitTorrent protocol");
            assert_eq!(
                &h[28..48],
                &fx.info_hash,
                "libtorrent's handshake names our torrent"
            );
        }
        while let Some(m) = reader.next() {
            match m {
                Msg::Bitfield(bits) => {
                    for i in 0..fx.pieces() {
                        assert!(
                            bits[i / 8] & (0x80 >> (i % 8)) != 0,
                            "libtorrent lacks piece {i}"
                        );
                    }
                    out.push(message(2, &[])); // interested
                }
                Msg::Unchoke => unchoked = true,
                Msg::Choke => unchoked = false,
                Msg::Piece(index, begin, block) => {
                    let off = index as usize * PIECE + begin as usize;
                    let k = off / BLOCK;
                    assert_eq!(
                        (blocks[k].0, blocks[k].1, blocks[k].2 as usize),
                        (index, begin, block.len())
                    );
                    assert!(!have[k], "block {k} twice");
                    have[k] = true;
                    got[off..off + block.len()].copy_from_slice(&block);
                    received += block.len();
                    outstanding -= 1;
                }
                Msg::KeepAlive | Msg::Have | Msg::Other | Msg::Interested | Msg::NotInterested => {}
                m => panic!("unexpected {m:?}"),
            }
        }
        while unchoked && outstanding < 64 && next < blocks.len() {
            let (i, b, l) = blocks[next];
            let mut p = i.to_be_bytes().to_vec();
            p.extend_from_slice(&b.to_be_bytes());
            p.extend_from_slice(&l.to_be_bytes());
            out.push(message(6, &p));
            next += 1;
            outstanding += 1;
        }
        out.write(&mut end, stream);
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(got == fx.data, "the data differs");
    let stats = end.utp.stats(stream).expect("stats");
    eprintln!(
        "uTP from libtorrent: {LEN} bytes in {secs:.2} s ({:.1} MiB/s); {} datagrams in, {} out, \
         largest out {} bytes; rtt {:?}, cwnd {}, our retransmits {}",
        LEN as f64 / secs / 1048576.0,
        end.datagrams_in,
        end.datagrams_out,
        end.largest_out,
        stats.rtt,
        stats.cwnd,
        stats.retransmits
    );
    assert!(end.largest_out <= 1400);

    // Close: our FIN is acknowledged and libtorrent's comes back; the socket forgets the
    // connection without waiting out its linger time.
    let now = end.now();
    end.utp.close(now, stream).expect("close");
    let deadline = StdInstant::now() + Duration::from_secs(4);
    while end.utp.connections() > 0 {
        assert!(StdInstant::now() < deadline, "the close did not complete");
        end.pump(Duration::from_millis(20));
    }
    assert!(end.events.is_empty(), "{:?}", end.events);
}

#[test]
fn libtorrent_downloads_from_us_over_utp() {
    let _serial = serial();
    let fx = Fixture::new();
    let mut end = UtpEnd::new(2);
    let out_dir = fx.scratch.new_dir("lt-out");
    let opts = LtOptions {
        utp_only: true,
        peers: vec![end.addr()],
        ..LtOptions::default()
    };
    let drops_before = udp_receive_buffer_drops();
    let start = StdInstant::now();
    let mut lt = LtPeer::leech(&fx.scratch.logs(), &fx.torrent, &out_dir, &opts);
    let mut stream = None;
    let mut reader = Reader::default();
    let mut out = Outgoing::default();
    let mut served = 0usize;
    let mut refused = 0;
    let mut first_request = None;
    let mut last_request = None;
    let mut last_stats = None;
    let mut done = None;
    let deadline = StdInstant::now() + Duration::from_secs(120);
    while done.is_none() {
        assert!(
            StdInstant::now() < deadline,
            "libtorrent did not finish within 120 s ({served} bytes served):\n{}",
            lt.proc().tail()
        );
        end.pump(Duration::from_millis(20));
        while let Some(e) = end.events.pop_front() {
            match e {
                UtpEvent::Incoming { stream: s, addr } => {
                    assert_eq!(addr, lt.addr(), "libtorrent dials from its listen port");
                    assert!(stream.is_none(), "a second connection at once");
                    stream = Some(s);
                }
                UtpEvent::Data { data, .. } => reader.feed(&data),
                UtpEvent::Sent { .. } => {}
                UtpEvent::Closed { reason, .. } => {
                    // libtorrent may hang up once it has everything.
                    assert_eq!(
                        served,
                        LEN,
                        "closed ({reason}) early:\n{}",
                        lt.proc().tail()
                    );
                }
                e => panic!("{e:?}"),
            }
        }
        if let Some(h) = reader.handshake() {
            if !h.starts_with(b"\x13BitTorrent protocol") {
                // libtorrent tries an encrypted handshake (MSE) first, then plaintext:
                // refuse the first connection as a client without MSE does.
                let s = stream.take().expect("a stream");
                let now = end.now();
                end.utp.abort(now, s).expect("abort");
                refused += 1;
                reader = Reader::default();
                out = Outgoing::default();
                continue;
            }
            assert_eq!(&h[28..48], &fx.info_hash);
            out.push(handshake(&fx.info_hash, &peer_id()));
            let mut bits = vec![0u8; fx.pieces().div_ceil(8)];
            for i in 0..fx.pieces() {
                bits[i / 8] |= 0x80 >> (i % 8);
            }
            out.push(message(5, &bits));
            out.push(message(1, &[])); // unchoke
        }
        while let Some(m) = reader.next() {
            match m {
                Msg::Request(index, begin, length) => {
                    first_request.get_or_insert_with(StdInstant::now);
                    let off = index as usize * PIECE + begin as usize;
                    let len = length as usize;
                    assert!(
                        len <= BLOCK && off + len <= LEN,
                        "bad request {index} {begin} {length}"
                    );
                    let mut head = (9 + length).to_be_bytes().to_vec();
                    head.push(7);
                    head.extend_from_slice(&index.to_be_bytes());
                    head.extend_from_slice(&begin.to_be_bytes());
                    out.push(head);
                    out.push(fx.data.slice(off..off + len));
                    served += len;
                    if served == LEN {
                        last_request = Some(StdInstant::now());
                        last_stats = stream.and_then(|s| end.utp.stats(s));
                    }
                }
                Msg::KeepAlive
                | Msg::Interested
                | Msg::NotInterested
                | Msg::Have
                | Msg::Cancel
                | Msg::Other => {}
                m => panic!("unexpected {m:?}"),
            }
        }
        if let Some(s) = stream
            && end.utp.stats(s).is_some()
        {
            out.write(&mut end, s);
        }
        done = lt
            .proc()
            .stdout()
            .lines()
            .find(|l| l.starts_with("DONE"))
            .map(str::to_owned);
    }
    let secs = start.elapsed().as_secs_f64();
    let drops = drops_before
        .zip(udp_receive_buffer_drops())
        .map(|(a, b)| b - a);
    lt.proc().wait_success(Duration::from_secs(60));
    let written = std::fs::read(out_dir.join(NAME)).expect("libtorrent's file");
    assert!(
        written == fx.data,
        "libtorrent's file differs from the data"
    );
    let requests = match (first_request, last_request) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => f64::NAN,
    };
    eprintln!(
        "uTP to libtorrent: {LEN} bytes in {secs:.2} s including libtorrent's start ({}), \
         {requests:.2} s from its first request to its last ({:.1} MiB/s); {refused} \
         encrypted attempt(s) refused; {} datagrams in, {} out, largest out {} bytes; UDP \
         receive-buffer drops on the machine meanwhile: {drops:?}; at the last request \
         {last_stats:?}",
        done.unwrap_or_default(),
        LEN as f64 / requests / 1048576.0,
        end.datagrams_in,
        end.datagrams_out,
        end.largest_out
    );
    assert!(end.largest_out <= 1400);
}
