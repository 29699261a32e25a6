//! Two uTP sockets joined by a simulated link on a virtual clock: loss, duplication,
//! reordering (jitter), propagation delay, a path MTU (larger datagrams are dropped, as a
//! router drops a datagram it may not fragment) and an optional bottleneck (a rate and a
//! queue whose delay grows with its length). Every datagram is logged as it leaves a socket, so
//! tests can decode what went on the wire.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::rng::Rng;
use crate::time::Instant;
use crate::utp::packet::Packet;
use crate::utp::{UtpConfig, UtpEvent, UtpSocket};

/// The address of socket A.
pub const A: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
    6881,
);
/// The address of socket B.
pub const B: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)),
    6882,
);

/// Which socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    fn idx(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// How the link treats datagrams (both directions alike).
#[derive(Debug, Clone, Copy)]
pub struct LinkModel {
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
    /// One-way propagation delay.
    pub delay: Duration,
    /// Extra delay, uniform in 0..jitter, per datagram: reorders them.
    pub jitter: Duration,
    /// Bottleneck rate in bytes per second (None: infinite).
    pub rate: Option<u64>,
    /// Largest datagram the path carries (UDP payload).
    pub mtu: usize,
}

impl LinkModel {
    /// A perfect link with `delay` one way.
    pub fn clean(delay: Duration) -> Self {
        LinkModel {
            loss: 0.0,
            duplicate: 0.0,
            delay,
            jitter: Duration::ZERO,
            rate: None,
            mtu: crate::utp::MAX_PACKET_SIZE,
        }
    }
}

/// A datagram seen on the wire.
#[derive(Debug, Clone)]
pub struct Wire {
    pub at: Instant,
    pub from: Side,
    pub data: Bytes,
    /// Whether the link delivered it (at least once).
    pub delivered: bool,
}

impl Wire {
    pub fn packet(&self) -> Packet<'_> {
        Packet::decode(&self.data).expect("what a socket sends decodes")
    }
}

type DropFn = Box<dyn FnMut(Side, &Packet<'_>) -> bool>;

pub struct Pair {
    pub now: Instant,
    pub a: UtpSocket,
    pub b: UtpSocket,
    pub link: LinkModel,
    rng: Rng,
    /// (delivery time, order) → (to, from address, bytes)
    flight: BTreeMap<(Instant, u64), (Side, SocketAddr, Bytes)>,
    order: u64,
    /// When each direction's bottleneck is free again (A→B, B→A).
    busy_until: [Instant; 2],
    pub wire: Vec<Wire>,
    pub events_a: Vec<UtpEvent>,
    pub events_b: Vec<UtpEvent>,
    /// Drops a datagram when it returns true (on top of the random loss).
    pub drop: Option<DropFn>,
    /// Largest queueing delay seen at the bottleneck, per direction.
    pub max_queue: [Duration; 2],
    /// Queueing delay at the bottleneck of the last datagram, per direction.
    pub last_queue: [Duration; 2],
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair").field("now", &self.now).finish()
    }
}

impl Pair {
    pub fn new(cfg_a: UtpConfig, cfg_b: UtpConfig, link: LinkModel, seed: u64) -> Pair {
        let mut rng = Rng::from_u64(seed);
        Pair {
            // Not zero: a zero timestamp means "unset" on the wire.
            now: Instant::from_nanos(1_000_000_000),
            a: UtpSocket::new(cfg_a, rng.fork()),
            b: UtpSocket::new(cfg_b, rng.fork()),
            link,
            rng,
            flight: BTreeMap::new(),
            order: 0,
            busy_until: [Instant::ZERO; 2],
            wire: Vec::new(),
            events_a: Vec::new(),
            events_b: Vec::new(),
            drop: None,
            max_queue: [Duration::ZERO; 2],
            last_queue: [Duration::ZERO; 2],
        }
    }

    pub fn socket(&mut self, side: Side) -> &mut UtpSocket {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Moves what the sockets want sent onto the link, and their events into the logs.
    pub fn flush(&mut self) {
        for side in [Side::A, Side::B] {
            let now = self.now;
            while let Some(t) = self.socket(side).poll_transmit(now) {
                assert_eq!(
                    t.to,
                    if side == Side::A { B } else { A },
                    "sent to the wrong peer"
                );
                assert!(
                    t.data.len() <= crate::utp::MAX_PACKET_SIZE,
                    "datagram of {} bytes",
                    t.data.len()
                );
                self.send(side, t.data);
            }
            while let Some(e) = self.socket(side).poll_event() {
                match side {
                    Side::A => self.events_a.push(e),
                    Side::B => self.events_b.push(e),
                }
            }
        }
    }

    fn send(&mut self, from: Side, data: Bytes) {
        let pkt = Packet::decode(&data).expect("what a socket sends decodes");
        let dropped = self.drop.as_mut().is_some_and(|f| f(from, &pkt))
            || data.len() > self.link.mtu
            || (self.link.loss > 0.0 && self.rng.chance(self.link.loss));
        self.wire.push(Wire {
            at: self.now,
            from,
            data: data.clone(),
            delivered: !dropped,
        });
        if dropped {
            return;
        }
        let d = from.idx();
        let mut depart = self.now;
        if let Some(rate) = self.link.rate {
            let start = self.busy_until[d].max(self.now);
            let queued = start - self.now;
            self.last_queue[d] = queued;
            self.max_queue[d] = self.max_queue[d].max(queued);
            let serialize = Duration::from_nanos(data.len() as u64 * 1_000_000_000 / rate.max(1));
            depart = start + serialize;
            self.busy_until[d] = depart;
        }
        let copies = if self.link.duplicate > 0.0 && self.rng.chance(self.link.duplicate) {
            2
        } else {
            1
        };
        let (to, from_addr) = match from {
            Side::A => (Side::B, A),
            Side::B => (Side::A, B),
        };
        for _ in 0..copies {
            let jitter = if self.link.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_nanos(self.rng.below(self.link.jitter.as_nanos() as u64))
            };
            let at = depart + self.link.delay + jitter;
            self.order += 1;
            self.flight
                .insert((at, self.order), (to, from_addr, data.clone()));
        }
    }

    /// Injects a datagram as if `from` sent it to the other side, now.
    pub fn inject(&mut self, to: Side, from_addr: SocketAddr, data: &[u8]) -> bool {
        let now = self.now;
        let taken = self.socket(to).handle_datagram(now, from_addr, data);
        self.flush();
        taken
    }

    /// The time of the next thing that happens, if anything will.
    pub fn next_event(&self) -> Option<Instant> {
        [
            self.flight.keys().next().map(|&(t, _)| t),
            self.a.poll_timeout(),
            self.b.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Does the next thing. False when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        self.flush();
        let Some(t) = self.next_event() else {
            return false;
        };
        self.now = self.now.max(t);
        let now = self.now;
        if let Some(entry) = self.flight.first_entry()
            && entry.key().0 <= now
        {
            let (to, from_addr, data) = entry.remove();
            let taken = self.socket(to).handle_datagram(now, from_addr, &data);
            assert!(taken, "a uTP datagram was not taken");
        }
        for side in [Side::A, Side::B] {
            if self.socket(side).poll_timeout().is_some_and(|t| t <= now) {
                self.socket(side).handle_timeout(now);
            }
        }
        self.flush();
        true
    }

    /// Steps until `done` holds (true) or `limit` of virtual time has passed (false).
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Pair) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            self.flush();
            if done(self) {
                return true;
            }
            if self.next_event().is_none_or(|t| t > end) {
                self.now = self.now.max(end);
                return done(self);
            }
            self.step();
        }
    }

    /// Datagrams `from` sent, decoded.
    pub fn sent_by(&self, from: Side) -> impl Iterator<Item = &Wire> {
        self.wire.iter().filter(move |w| w.from == from)
    }
}
