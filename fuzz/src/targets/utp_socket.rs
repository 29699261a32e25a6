//! Two uTP sockets (`utp::UtpSocket`) joined by a link the fuzzer runs: it delivers,
//! drops, duplicates and reorders their datagrams, moves time, opens, writes to, closes and
//! aborts streams, and injects datagrams of its own (raw bytes, or packets built from the
//! connection ids and sequence numbers actually in use).
//!
//! Nothing may panic, and throughout:
//! - every datagram a socket sends decodes as uTP and is at most 1,472 bytes
//!   (`utp::MAX_PACKET_SIZE`, reached only by path MTU probes and after one passed);
//! - events name only streams the socket reported (or opened) and that are still open;
//!   nothing is reported for a stream after it was closed, aborted or reported closed;
//! - `send_room` never exceeds the configured send buffer, a write takes at most it, and
//!   `Sent` never reports more than was written;
//! - the half-open table and the connection count stay within their bounds;
//! - after `handle_timeout(now)` the next deadline is later than `now`;
//! - unless the fuzzer injected a datagram, what a stream delivers is exactly a prefix of
//!   what the other side wrote on it, and a stream the writer closed ends `Finished` only
//!   after delivering all of it.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use arbitrary::Arbitrary;
use bytes::Bytes;
use tessera_core::Rng;
use tessera_core::utp::packet::{self, Header, Packet, PacketType};
use tessera_core::utp::seq::Seq;
use tessera_core::utp::{
    CloseReason, MAX_PACKET_SIZE, StreamId, UtpConfig, UtpEvent, UtpSocket,
};
use tessera_core::{Duration, Instant};

const MAX_STEPS: usize = 300;
/// Datagrams the link holds at most (older ones are dropped).
const MAX_IN_FLIGHT: usize = 2048;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 6000 + u16::from(i)))
}

#[derive(Arbitrary, Debug)]
struct Cfg {
    nagle: bool,
    resets_per_second: u8,
    max_half_open: u8,
    max_packet_size: u16,
    send_buffer_kib: u8,
    recv_window_kib: u8,
    delayed_ack_ms: u8,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Connect { from_b: bool },
    Write { from_b: bool, stream: u8, len: u16 },
    Close { from_b: bool, stream: u8 },
    Abort { from_b: bool, stream: u8 },
    Deliver { index: u8 },
    DeliverAll,
    Drop { index: u8 },
    Duplicate { index: u8 },
    Time { ms: u16 },
    ToDeadline,
    Junk { to_b: bool, from: u8, bytes: Vec<u8> },
    Crafted {
        to_b: bool,
        ty: u8,
        id_delta: i8,
        seq_delta: i16,
        ack_delta: i16,
        wnd: u32,
        timestamp: u32,
        delay: u32,
        sack: Option<Vec<u8>>,
        payload_len: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    cfg: Cfg,
    steps: Vec<Step>,
}

/// One side: its socket and what the checks need to know about its streams.
struct Side {
    sock: UtpSocket,
    me: SocketAddr,
    cfg: UtpConfig,
    /// Streams open as far as the owner knows: id → (stream tag, bytes written).
    open: BTreeMap<StreamId, Stream>,
    /// Streams that were closed, aborted or reported closed.
    gone: Vec<StreamId>,
    /// The header of the last packet this side sent.
    last_sent: Option<Header>,
}

#[derive(Default)]
struct Stream {
    /// Our tag, sent first on the stream; the receiver learns it from the first 8 bytes.
    tag: u64,
    written: u64,
    sent: u64,
    /// Received bytes (the first 8 are the writer's tag).
    received: Vec<u8>,
}

/// The byte at `offset` of the stream tagged `tag`.
fn pattern(tag: u64, offset: u64) -> u8 {
    (tag.wrapping_mul(0x9E37_79B9).wrapping_add(offset.wrapping_mul(31)) >> 3) as u8
}

struct World {
    now: Instant,
    sides: [Side; 2],
    /// (to side, from address, bytes)
    link: VecDeque<(usize, SocketAddr, Bytes)>,
    /// Bytes written per tag, and whether the writer closed the stream cleanly.
    written: BTreeMap<u64, (Vec<u8>, bool)>,
    next_tag: u64,
    tainted: bool,
}

impl World {
    fn new(cfg: &Cfg) -> World {
        let c = UtpConfig {
            nagle: cfg.nagle,
            resets_per_second: u32::from(cfg.resets_per_second % 8),
            max_half_open: usize::from(cfg.max_half_open % 16),
            max_packet_size: usize::from(cfg.max_packet_size),
            send_buffer: (usize::from(cfg.send_buffer_kib) + 1) * 1024,
            recv_window: (usize::from(cfg.recv_window_kib) + 1) * 1024,
            delayed_ack: Duration::from_millis(u64::from(cfg.delayed_ack_ms % 50)),
            ..UtpConfig::default()
        };
        let mut rng = Rng::from_u64(7);
        let side = |i: u8, rng: &mut Rng| {
            let sock = UtpSocket::new(c, rng.fork());
            Side {
                cfg: *sock.config(),
                sock,
                me: addr(i),
                open: BTreeMap::new(),
                gone: Vec::new(),
                last_sent: None,
            }
        };
        World {
            now: Instant::from_nanos(1_000_000_000),
            sides: [side(1, &mut rng), side(2, &mut rng)],
            link: VecDeque::new(),
            written: BTreeMap::new(),
            next_tag: 1,
            tainted: false,
        }
    }

    fn stream_at(&self, s: usize, i: u8) -> Option<StreamId> {
        let open = &self.sides[s].open;
        (!open.is_empty()).then(|| *open.keys().nth(usize::from(i) % open.len()).expect("in range"))
    }

    /// Moves what both sockets want to send onto the link and checks their events.
    fn drain(&mut self) {
        for s in 0..2 {
            let other = 1 - s;
            let now = self.now;
            while let Some(t) = self.sides[s].sock.poll_transmit(now) {
                assert!(
                    t.data.len() <= MAX_PACKET_SIZE,
                    "datagram of {} bytes",
                    t.data.len()
                );
                assert!(t.data.len() <= self.sides[s].cfg.max_packet_size);
                let p = Packet::decode(&t.data).expect("what we send decodes");
                if t.to == self.sides[other].me {
                    self.sides[s].last_sent = Some(p.header);
                    let from = self.sides[s].me;
                    self.link.push_back((other, from, t.data));
                    if self.link.len() > MAX_IN_FLIGHT {
                        self.link.pop_front();
                    }
                }
            }
            while let Some(e) = self.sides[s].sock.poll_event() {
                self.event(s, e);
            }
            let side = &self.sides[s];
            assert!(side.sock.half_open() <= side.cfg.max_half_open);
            assert!(side.sock.connections() <= side.cfg.max_connections);
            for (&id, st) in &side.open {
                assert!(side.sock.send_room(id) <= side.cfg.send_buffer);
                assert!(st.sent <= st.written);
            }
        }
    }

    fn event(&mut self, s: usize, e: UtpEvent) {
        let side = &mut self.sides[s];
        match e {
            UtpEvent::Incoming { stream, addr } => {
                assert!(!side.gone.contains(&stream) && !side.open.contains_key(&stream));
                assert_ne!(addr, side.me);
                side.open.insert(stream, Stream::default());
            }
            UtpEvent::Connected { stream } => {
                assert!(side.open.contains_key(&stream), "connected: unknown {stream}");
            }
            UtpEvent::Data { stream, data } => {
                assert!(!data.is_empty());
                let st = side.open.get_mut(&stream).expect("data on an open stream");
                st.received.extend_from_slice(&data);
                if !self.tainted && st.received.len() >= 8 {
                    let tag = u64::from_be_bytes(st.received[..8].try_into().expect("8 bytes"));
                    let (w, _) = self.written.get(&tag).expect("a tag we wrote");
                    assert!(st.received.len() <= w.len(), "more than was written");
                    assert_eq!(&w[..st.received.len()], &st.received[..], "data differs");
                }
            }
            UtpEvent::Sent { stream, bytes } => {
                let st = side.open.get_mut(&stream).expect("sent on an open stream");
                st.sent += bytes as u64;
                assert!(st.sent <= st.written, "sent more than written");
            }
            UtpEvent::Closed { stream, reason } => {
                let st = side.open.remove(&stream).expect("closed: an open stream");
                side.gone.push(stream);
                if reason == CloseReason::Finished && !self.tainted && st.received.len() >= 8 {
                    let tag = u64::from_be_bytes(st.received[..8].try_into().expect("8 bytes"));
                    if let Some((w, true)) = self.written.get(&tag) {
                        assert_eq!(w.len(), st.received.len(), "finished before all data arrived");
                    }
                }
            }
        }
    }

    fn write(&mut self, s: usize, stream: StreamId, len: usize) {
        let now = self.now;
        let side = &mut self.sides[s];
        let st = side.open.get_mut(&stream).expect("open");
        if st.tag == 0 {
            st.tag = self.next_tag;
            self.next_tag += 1;
            self.written.insert(st.tag, (Vec::new(), false));
        }
        let (w, _) = self.written.get_mut(&st.tag).expect("tag");
        let mut bytes = Vec::with_capacity(len + 8);
        if w.is_empty() {
            bytes.extend_from_slice(&st.tag.to_be_bytes());
        }
        let total = bytes.len() + len;
        while bytes.len() < total {
            bytes.push(pattern(st.tag, (w.len() + bytes.len()) as u64));
        }
        let room = side.sock.send_room(stream);
        let took = side.sock.write(now, stream, Bytes::from(bytes.clone())).expect("write to an open stream");
        assert_eq!(took, bytes.len().min(room));
        w.extend_from_slice(&bytes[..took]);
        st.written += took as u64;
    }

    fn step(&mut self, step: Step) {
        let now = self.now;
        match step {
            Step::Connect { from_b } => {
                let s = usize::from(from_b);
                let to = self.sides[1 - s].me;
                if let Ok(id) = self.sides[s].sock.connect(now, to) {
                    assert!(!self.sides[s].gone.contains(&id));
                    self.sides[s].open.insert(id, Stream::default());
                }
            }
            Step::Write { from_b, stream, len } => {
                let s = usize::from(from_b);
                if let Some(id) = self.stream_at(s, stream) {
                    self.write(s, id, usize::from(len) % 20_000);
                }
            }
            Step::Close { from_b, stream } | Step::Abort { from_b, stream } if self.stream_at(usize::from(from_b), stream).is_none() => {}
            Step::Close { from_b, stream } => {
                let s = usize::from(from_b);
                let id = self.stream_at(s, stream).expect("checked");
                self.sides[s].sock.close(now, id).expect("close an open stream");
                let st = self.sides[s].open.remove(&id).expect("open");
                self.sides[s].gone.push(id);
                if let Some(w) = self.written.get_mut(&st.tag) {
                    w.1 = true;
                }
            }
            Step::Abort { from_b, stream } => {
                let s = usize::from(from_b);
                let id = self.stream_at(s, stream).expect("checked");
                self.sides[s].sock.abort(now, id).expect("abort an open stream");
                self.sides[s].open.remove(&id);
                self.sides[s].gone.push(id);
            }
            Step::Deliver { index } => self.deliver(usize::from(index)),
            Step::DeliverAll => {
                for _ in 0..self.link.len().min(512) {
                    self.deliver(0);
                    self.drain();
                }
            }
            Step::Drop { index } => {
                if !self.link.is_empty() {
                    let i = usize::from(index) % self.link.len();
                    self.link.remove(i);
                }
            }
            Step::Duplicate { index } => {
                if !self.link.is_empty() {
                    let i = usize::from(index) % self.link.len();
                    let d = self.link[i].clone();
                    self.link.push_back(d);
                }
            }
            Step::Time { ms } => {
                self.now += Duration::from_millis(u64::from(ms));
                self.timeouts();
            }
            Step::ToDeadline => {
                let next = [self.sides[0].sock.poll_timeout(), self.sides[1].sock.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                if let Some(t) = next {
                    self.now = self.now.max(t);
                }
                self.timeouts();
            }
            Step::Junk { to_b, from, bytes } => {
                self.tainted = true;
                let s = usize::from(to_b);
                let from = if from % 4 == 0 { self.sides[1 - s].me } else { addr(from) };
                let taken = self.sides[s].sock.handle_datagram(now, from, &bytes);
                assert_eq!(taken, tessera_core::utp::is_utp(&bytes));
            }
            Step::Crafted { to_b, ty, id_delta, seq_delta, ack_delta, wnd, timestamp, delay, sack, payload_len } => {
                self.tainted = true;
                let s = usize::from(to_b);
                // Base the packet on what the target's peer last sent it.
                let Some(last) = self.sides[1 - s].last_sent else { return };
                let h = Header {
                    ty: PacketType::from_u8(ty % 5).expect("0..5"),
                    conn_id: last.conn_id.wrapping_add(id_delta as u16),
                    timestamp_us: timestamp,
                    timestamp_diff_us: delay,
                    wnd_size: wnd,
                    seq_nr: Seq(last.seq_nr.0.wrapping_add(seq_delta as u16)),
                    ack_nr: Seq(last.ack_nr.0.wrapping_add(ack_delta as u16)),
                };
                let payload = vec![0xAB; usize::from(payload_len)];
                let bytes = packet::encode(&h, sack.as_deref(), &payload);
                let from = self.sides[1 - s].me;
                assert!(self.sides[s].sock.handle_datagram(now, from, &bytes));
            }
        }
        self.drain();
    }

    fn deliver(&mut self, index: usize) {
        if self.link.is_empty() {
            return;
        }
        let i = index % self.link.len();
        let (to, from, data) = self.link.remove(i).expect("in range");
        let now = self.now;
        assert!(self.sides[to].sock.handle_datagram(now, from, &data), "our datagram was not uTP");
    }

    fn timeouts(&mut self) {
        let now = self.now;
        for s in 0..2 {
            if self.sides[s].sock.poll_timeout().is_some_and(|t| t <= now) {
                self.sides[s].sock.handle_timeout(now);
                if let Some(t) = self.sides[s].sock.poll_timeout() {
                    assert!(t > now, "a deadline at {t:?} is still due at {now:?}");
                }
            }
        }
    }
}

/// The target's body: one input, read as an [`Input`] the way libFuzzer's `arbitrary` does.
pub fn run(data: &[u8]) {
    if let Ok(input) = <Input as arbitrary::Arbitrary>::arbitrary_take_rest(arbitrary::Unstructured::new(data)) {
        check(input);
    }
}

/// Checks one structured input.
fn check(input: Input) {
    let mut w = World::new(&input.cfg);
    for step in input.steps.into_iter().take(MAX_STEPS) {
        w.step(step);
    }
    // Let everything settle: deliver what is left, run the timers out.
    for _ in 0..64 {
        w.step(Step::DeliverAll);
        w.step(Step::ToDeadline);
    }
}
