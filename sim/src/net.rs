//! The network model: hosts with an upload and a download link, connections as pairs of
//! TCP-like ordered byte streams.
//!
//! # Model
//!
//! - **Send queue.** Bytes an application sends on a connection wait in that direction's
//!   queue (unbounded here: the core bounds what it queues with `Input::Sent`, and the
//!   simulator checks that it does).
//! - **Uplink.** A host's upload link sends one *segment* at a time at its upload rate,
//!   taking segments round-robin from the directions that have queued bytes and window
//!   room. A segment is up to `quantum` bytes (never splitting a block's `piece` message).
//!   When a segment has left, the sender is told `Input::Sent` for its bytes.
//! - **Window.** A direction has at most `window` bytes in flight (left the uplink, not yet
//!   delivered); a full window takes it out of the round robin, like a TCP sender limited
//!   by its window, so a slow receiver slows its senders instead of queueing without end.
//! - **Latency.** A link's one-way latency is the sum of both hosts' access latencies, plus
//!   a uniform jitter per segment. Streams stay ordered: a segment never arrives before the
//!   one sent before it.
//! - **Downlink.** A host's download link is a FIFO at its download rate: a segment that
//!   starts arriving at `t0 = sent + latency` finishes at
//!   `max(end_of_send + latency, max(t0, downlink_free) + len / down_rate)`. It is computed
//!   when the segment is sent, without an event of its own (an approximation: segments are
//!   booked on the downlink in the order they were sent, not the order they arrive).
//! - **Set-up** takes one round trip: the acceptor sees the connection after one latency,
//!   the dialler learns it is connected after two. A dial to a host that is down,
//!   partitioned away or not listening fails after `connect_timeout` (`Input::Closed`).
//! - **Close** drops the closer's queue; what is already in flight still arrives, then the
//!   other side sees the close. A reset drops everything at once on both sides.
//! - **Faults** the network knows: partitions (deliveries across the cut wait until it
//!   heals, like TCP retransmitting), stalled hosts (they neither send nor read), and
//!   bandwidth changes (applied from the next segment).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use tessera_core::{Duration, Instant};

use crate::payload::{PIECE_HEADER, Payload, Variant};

/// Tunables of the network model.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Largest segment an uplink sends at once.
    pub quantum: usize,
    /// Bytes in flight per direction.
    pub window: usize,
    /// Uniform extra latency per segment, at most this.
    pub jitter: Duration,
    pub connect_timeout: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            quantum: 64 * 1024,
            window: 256 * 1024,
            jitter: Duration::from_millis(2),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Seconds to bytes at `rate` bytes per second, as a duration.
pub fn transfer_time(len: usize, rate: f64) -> Duration {
    Duration::from_nanos((len as f64 / rate * 1e9) as u64)
}

/// A host's links.
#[derive(Debug, Clone)]
pub struct Iface {
    pub up_rate: f64,
    pub down_rate: f64,
    /// When the downlink has finished receiving everything booked on it.
    pub down_free: Instant,
    /// One-way latency from this host to the core of the network.
    pub access: Duration,
    /// The segment being sent: (link, direction, bytes, carries blocks), when its end is
    /// an event (`UplinkDone`).
    pub busy: Option<(usize, usize, usize, bool)>,
    /// The uplink is sending until this point of the event order (time, sequence number).
    /// A segment whose end needs no event (nothing to report, nothing else waiting) only
    /// sets this, with a sequence number reserved for the `UplinkDone` it would have had;
    /// whatever is queued before then waits for an `UplinkKick` at exactly that point.
    pub busy_until: (Instant, u64),
    /// Directions waiting for the uplink, round robin.
    pub rr: VecDeque<(usize, usize)>,
    /// The host neither sends nor reads before this.
    pub stalled_until: Instant,
    /// Partition group: hosts in different groups cannot reach each other.
    pub group: u8,
}

impl Iface {
    pub fn new(up_rate: f64, down_rate: f64, access: Duration) -> Self {
        Iface {
            up_rate,
            down_rate,
            down_free: Instant::ZERO,
            access,
            busy: None,
            busy_until: (Instant::ZERO, 0),
            rr: VecDeque::new(),
            stalled_until: Instant::ZERO,
            group: 0,
        }
    }
}

/// Queued bytes, knowing when they are a run of blocks of the wire image.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub bytes: Bytes,
    /// (variant, first block, end block) when `bytes` is that part of the wire image.
    pub wire: Option<(Variant, u32, u32)>,
}

/// What one uplink turn sends on one direction: usually a single chunk (kept inline, so
/// that a segment costs no allocation), sometimes several.
#[derive(Debug, Default)]
pub struct Segment {
    first: Option<Chunk>,
    rest: Vec<Chunk>,
    pub len: usize,
    /// Some chunk is a run of the wire image (the segment carries blocks).
    pub wire: bool,
}

/// One direction of a connection.
#[derive(Debug, Default)]
pub struct Dir {
    pub queue: VecDeque<Chunk>,
    pub queued: usize,
    pub inflight: VecDeque<Segment>,
    pub inflight_bytes: usize,
    pub last_arrival: Instant,
    /// In the sender's round robin.
    pub in_rr: bool,
    /// The sender closed: after the in-flight segments, the receiver sees the close.
    pub fin: bool,
    /// Bytes sent and not yet reported to the sender (see `world::transport`).
    pub unreported: usize,
}

impl Dir {
    /// Queues `data`. A block of content that follows its `piece` header is replaced by
    /// the header and block as one slice of the wire image, merged with the run of blocks
    /// before it when they are adjacent there: the byte stream is unchanged.
    pub fn push(&mut self, data: Bytes, payload: &Payload) {
        self.queued += data.len();
        if let Some((v, g)) = payload.locate(&data) {
            let (piece, offset, len) = payload.block_pos(g);
            let mut header = [0u8; PIECE_HEADER];
            header[..4].copy_from_slice(&(len + 9).to_be_bytes());
            header[4] = 7;
            header[5..9].copy_from_slice(&piece.to_be_bytes());
            header[9..13].copy_from_slice(&offset.to_be_bytes());
            let back = self
                .queue
                .back()
                .filter(|c| c.wire.is_none() && c.bytes.ends_with(&header));
            if back.is_some()
                && let Some(mut prev) = self.queue.pop_back()
            {
                let keep = prev.bytes.len() - PIECE_HEADER;
                prev.bytes.truncate(keep);
                if !prev.bytes.is_empty() {
                    self.queue.push_back(prev);
                }
                match self.queue.back_mut() {
                    Some(Chunk {
                        bytes,
                        wire: Some((pv, first, end)),
                    }) if *pv == v && *end == g => {
                        *end = g + 1;
                        *bytes = payload.wire(v, *first, g + 1);
                    }
                    _ => self.queue.push_back(Chunk {
                        bytes: payload.wire(v, g, g + 1),
                        wire: Some((v, g, g + 1)),
                    }),
                }
                return;
            }
        }
        self.queue.push_back(Chunk {
            bytes: data,
            wire: None,
        });
    }

    /// Takes up to `quantum` bytes (at least one block's message when the front is one).
    pub fn take(&mut self, quantum: usize, payload: &Payload) -> Segment {
        let mut seg = Segment::default();
        while let Some(front) = self.queue.front_mut() {
            let room = quantum.saturating_sub(seg.len);
            if room == 0 {
                break;
            }
            let chunk = match front.wire {
                Some((v, first, end)) => {
                    // Whole block messages only.
                    let mut n = 0;
                    let mut bytes = 0;
                    while first + n < end {
                        let next = payload.wire_len(first + n, first + n + 1);
                        if bytes + next > room && !(n == 0 && seg.len == 0) {
                            break;
                        }
                        bytes += next;
                        n += 1;
                    }
                    if n == 0 {
                        break;
                    }
                    if first + n == end {
                        self.queue.pop_front().expect("front")
                    } else {
                        let taken = front.bytes.split_to(bytes);
                        front.wire = Some((v, first + n, end));
                        Chunk {
                            bytes: taken,
                            wire: Some((v, first, first + n)),
                        }
                    }
                }
                None => {
                    if front.bytes.len() <= room {
                        self.queue.pop_front().expect("front")
                    } else {
                        Chunk {
                            bytes: front.bytes.split_to(room),
                            wire: None,
                        }
                    }
                }
            };
            seg.len += chunk.bytes.len();
            seg.push(chunk);
        }
        self.queued -= seg.len;
        seg
    }

    /// Drops everything queued (the sender closed).
    pub fn drop_queue(&mut self) {
        self.queue.clear();
        self.queued = 0;
    }
}

impl Segment {
    fn push(&mut self, chunk: Chunk) {
        self.wire |= chunk.wire.is_some();
        if self.first.is_none() {
            self.first = Some(chunk);
        } else {
            self.rest.push(chunk);
        }
    }

    /// How many chunks.
    pub fn chunks(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// The segment as few buffers as possible for the receiver, appended to `out`: runs of
    /// plain chunks are copied together, wire-image runs stay zero-copy.
    pub fn into_buffers(self, out: &mut Vec<Bytes>) {
        let mut plain: Option<BytesMut> = None;
        let mut single: Option<Bytes> = None;
        for c in self.first.into_iter().chain(self.rest) {
            if c.wire.is_some() {
                if let Some(s) = single.take() {
                    out.push(s);
                }
                if let Some(p) = plain.take() {
                    out.push(p.freeze());
                }
                out.push(c.bytes);
            } else if let Some(p) = plain.as_mut() {
                p.extend_from_slice(&c.bytes);
            } else if let Some(s) = single.take() {
                let mut p = BytesMut::with_capacity(s.len() + c.bytes.len());
                p.extend_from_slice(&s);
                p.extend_from_slice(&c.bytes);
                plain = Some(p);
            } else {
                single = Some(c.bytes);
            }
        }
        if let Some(s) = single {
            out.push(s);
        }
        if let Some(p) = plain {
            out.push(p.freeze());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndState {
    /// The dialler's side before it is told `Connected`.
    Dialling,
    /// The acceptor's side before the connection reached it.
    Unborn,
    Open,
    /// The application closed it, or was told it is closed.
    Closed,
}

#[derive(Debug, Clone, Copy)]
pub struct End {
    pub host: usize,
    /// The application's id for the connection (a `ConnId` for sessions).
    pub local: u64,
    pub state: EndState,
}

/// A connection: end 0 dialled end 1. Direction `d` carries bytes from end `d`.
///
/// Links are never removed (events may still name them), but a finished one (neither end
/// open or dialling) gives its directions' buffers back: a large swarm makes millions of
/// short connections.
#[derive(Debug)]
pub struct Link {
    pub ends: [End; 2],
    /// The two directions; `None` once the link is finished.
    dirs: Option<Box<[Dir; 2]>>,
    pub latency: Duration,
    /// Gone for good (reset, or abandoned before it was set up).
    pub dead: bool,
}

impl Link {
    /// Direction `d` (recreated empty if the link was retired: only bookkeeping writes
    /// reach a finished link).
    pub fn dir(&mut self, d: usize) -> &mut Dir {
        &mut self.dirs.get_or_insert_with(Box::default)[d]
    }

    /// Both directions.
    pub fn dirs(&mut self) -> &mut [Dir; 2] {
        self.dirs.get_or_insert_with(Box::default)
    }

    /// Neither end is open or dialling: nothing will be sent or delivered any more.
    pub fn finished(&self) -> bool {
        self.ends
            .iter()
            .all(|e| !matches!(e.state, EndState::Open | EndState::Dialling))
    }

    /// Frees the directions' buffers if the link is finished.
    pub fn retire_if_finished(&mut self) {
        if self.finished() {
            self.dirs = None;
        }
    }

    pub fn new(from: usize, local: u64, to: usize, latency: Duration) -> Link {
        Link {
            ends: [
                End {
                    host: from,
                    local,
                    state: EndState::Dialling,
                },
                End {
                    host: to,
                    local: 0,
                    state: EndState::Unborn,
                },
            ],
            dirs: Some(Box::default()),
            latency,
            dead: false,
        }
    }
}

/// Where a host's connections are: local id → (link, side). A sorted vector: local ids
/// are handed out in increasing order, so inserting is an append, and a host has tens of
/// connections.
#[derive(Debug, Default)]
pub struct ConnTable {
    locals: Vec<u64>,
    places: Vec<(usize, usize)>,
}

impl ConnTable {
    pub fn new() -> Self {
        Self::default()
    }

    fn find(&self, local: u64) -> Result<usize, usize> {
        match self.locals.last() {
            Some(&last) if local > last => Err(self.locals.len()),
            _ => self.locals.binary_search(&local),
        }
    }

    pub fn get(&self, local: &u64) -> Option<&(usize, usize)> {
        self.find(*local).ok().map(|i| &self.places[i])
    }

    pub fn contains_key(&self, local: &u64) -> bool {
        self.find(*local).is_ok()
    }

    pub fn insert(&mut self, local: u64, place: (usize, usize)) {
        match self.find(local) {
            Ok(i) => self.places[i] = place,
            Err(i) => {
                self.locals.insert(i, local);
                self.places.insert(i, place);
            }
        }
    }

    pub fn remove(&mut self, local: &u64) -> Option<(usize, usize)> {
        let i = self.find(*local).ok()?;
        self.locals.remove(i);
        Some(self.places.remove(i))
    }

    /// The places, in local id order.
    pub fn values(&self) -> impl Iterator<Item = &(usize, usize)> + '_ {
        self.places.iter()
    }

    pub fn clear(&mut self) {
        self.locals.clear();
        self.places.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng;
    use tessera_core::wire::{Decoder, Message};

    /// Headers and blocks pushed as the core does become wire slices, segments never split
    /// a block message, and the receiver decodes the same messages.
    #[test]
    fn stream_is_preserved_and_blocks_zero_copy() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let p = Payload::new(
            crate::payload::Mode::Virtual,
            10 * 16384,
            32768,
            false,
            &mut rng,
        );
        let mut d = Dir::default();
        let mut expect = BytesMut::new();
        for g in 0..10u32 {
            let (piece, offset, len) = p.block_pos(g);
            let mut head = BytesMut::new();
            Message::Have(g).encode(&mut head);
            tessera_core::wire::encode_piece_header(piece, offset, len, &mut head);
            let head = head.freeze();
            let data = p.slice(Variant::Valid, u64::from(g) * 16384, len as usize);
            expect.extend_from_slice(&head);
            expect.extend_from_slice(&data);
            d.push(head, &p);
            d.push(data, &p);
        }
        let total = expect.len();
        assert_eq!(d.queued, total);
        let mut got = BytesMut::new();
        let mut decoder = Decoder::after_handshake();
        let mut blocks = 0;
        while d.queued > 0 {
            let seg = d.take(40_000, &p);
            assert!(seg.len <= 40_000 || seg.chunks() == 1);
            let mut buffers = Vec::new();
            seg.into_buffers(&mut buffers);
            for b in buffers {
                got.extend_from_slice(&b);
                decoder.feed(b);
            }
            while let Some(m) = decoder.next_message().unwrap() {
                if let Message::Piece { data, .. } = m {
                    assert!(p.locate(&data).is_none(), "a wire slice, not content");
                    blocks += 1;
                }
            }
        }
        assert_eq!(blocks, 10);
        assert_eq!(&got[..], &expect[..]);
    }
}
