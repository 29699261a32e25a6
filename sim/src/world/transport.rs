//! The transport: every host's network interface and every connection, as one value.
//!
//! Applications (sessions, scripts, the tracker) dial, send and close through it; it
//! schedules its own events (a segment leaving an uplink, a delivery, a set-up step, a
//! close) and, when one of them reaches an application, returns what the application must
//! be told: a [`Notice`] (connected, closed) or an [`Arrival`] (bytes). It never calls an
//! application itself. The model (links, directions, segments, windows, the downlink FIFO)
//! is described in [`crate::net`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::Rng as _;
use tessera_core::{Duration, Instant};

use super::event::{DialError, Ev};
use crate::net::{ConnTable, EndState, Iface, Link, NetConfig, transfer_time};
use crate::payload::Payload;
use crate::queue::Queue;

/// Control-only bytes sent are reported (`Input::Sent`) once this many add up, or with the
/// next segment that carries blocks.
const REPORT_CONTROL: usize = 16 * 1024;

/// A host as the network sees it.
#[derive(Debug)]
struct Station {
    ip: Ipv4Addr,
    /// The port it listens on.
    port: u16,
    iface: Iface,
    /// Its connections: local id → (link, side).
    conns: ConnTable,
    /// Local ids for connections of scripts and the tracker (sessions choose their own).
    next_local: u64,
    /// The next ephemeral port its dials come from.
    next_port: u16,
    /// An `UplinkKick` is scheduled.
    kick_pending: bool,
    /// Bytes its uplink has sent.
    sent_bytes: u64,
    /// Running (a killed host stays down; its peer comes back as a new host).
    up: bool,
}

/// Something an application must be told.
#[derive(Debug)]
pub enum Notice {
    /// The dialler's connection is open.
    Connected { host: usize, local: u64 },
    /// A connection is closed under its application (`error`: `None` for an orderly close).
    Closed {
        host: usize,
        local: u64,
        error: Option<&'static str>,
    },
}

/// A segment that reached its receiver.
#[derive(Debug)]
pub struct Arrival {
    pub dst: usize,
    /// The receiver's id for the connection.
    pub local: u64,
    /// The sender's address.
    pub remote: IpAddr,
    /// The bytes, as few buffers as possible (give the vector back with
    /// [`Transport::recycle`]); `None` when the receiver's end is no longer open.
    pub data: Option<Vec<Bytes>>,
}

/// A connection reaching its acceptor.
#[derive(Debug)]
pub struct Incoming {
    pub to: usize,
    /// The dialler's address as the acceptor sees it.
    pub remote: SocketAddr,
}

/// Bytes that left an uplink, to be reported to the sender.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub local: u64,
    pub bytes: usize,
}

/// What the end of a segment on an uplink leads to.
#[derive(Debug)]
pub enum SegmentEnd {
    /// Nothing more: no segment was on the uplink, or the host is down.
    Nothing,
    /// The uplink is free (start the next segment with [`Transport::kick`]); the sender is
    /// told `Sent` when this is some.
    Free(Option<Sent>),
}

/// Why an application's send was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The application has no such connection (it closed it, or was told it is closed).
    Unknown,
    /// The connection is not open yet.
    NotConnected,
}

/// Every host's links and every connection.
#[derive(Debug)]
pub struct Transport {
    cfg: NetConfig,
    payload: Arc<Payload>,
    stations: Vec<Station>,
    links: Vec<Link>,
    by_ip: BTreeMap<Ipv4Addr, usize>,
    /// When the current partition heals (deliveries across the cut wait until then).
    partition_until: Instant,
    /// Every segment's end is an event: set when a sender's uploaded bytes are watched as
    /// they go (the seeder that leaves after so many copies).
    every_segment_ends: bool,
    /// The buffers of the segment being delivered (kept to reuse the allocation).
    buffers: Vec<Bytes>,
}

impl Transport {
    pub fn new(payload: Arc<Payload>, every_segment_ends: bool) -> Transport {
        Transport {
            cfg: NetConfig::default(),
            payload,
            stations: Vec::new(),
            links: Vec::new(),
            by_ip: BTreeMap::new(),
            partition_until: Instant::ZERO,
            every_segment_ends,
            buffers: Vec::new(),
        }
    }

    /// A new host at `ip`, listening on `port`, its dials coming from `first_port` up. Its
    /// index is the next one (the caller's hosts stay in step).
    pub fn add_host(&mut self, ip: Ipv4Addr, port: u16, iface: Iface, first_port: u16) -> usize {
        let h = self.stations.len();
        self.stations.push(Station {
            ip,
            port,
            iface,
            conns: ConnTable::new(),
            next_local: 1,
            next_port: first_port,
            kick_pending: false,
            sent_bytes: 0,
            up: true,
        });
        self.by_ip.insert(ip, h);
        h
    }

    pub fn hosts(&self) -> usize {
        self.stations.len()
    }

    pub fn links(&self) -> usize {
        self.links.len()
    }

    /// A local id for a new connection of a script or the tracker.
    pub fn new_local(&mut self, h: usize) -> u64 {
        let s = &mut self.stations[h];
        s.next_local += 1;
        s.next_local - 1
    }

    pub fn sent_bytes(&self, h: usize) -> u64 {
        self.stations[h].sent_bytes
    }

    // ---- what faults change -----------------------------------------------------------

    pub fn set_up_rate(&mut self, h: usize, rate: f64) {
        self.stations[h].iface.up_rate = rate;
    }

    /// Host `h` neither sends nor reads until `until`.
    pub fn stall(&mut self, h: usize, until: Instant, q: &mut Queue<Ev>) {
        let s = &mut self.stations[h];
        s.iface.stalled_until = until;
        q.at(until, Ev::UplinkKick { host: h as u32 });
        s.kick_pending = true;
    }

    /// A partition begins; it heals at `until`. Hosts join it with [`Transport::cut_off`].
    pub fn partition(&mut self, until: Instant) {
        self.partition_until = until;
    }

    /// Host `h` is on the far side of the partition.
    pub fn cut_off(&mut self, h: usize) {
        self.stations[h].iface.group = 1;
    }

    pub fn heal(&mut self) {
        for s in &mut self.stations {
            s.iface.group = 0;
        }
    }

    /// Resets link `l` if both its ends are open (both sides are told now); false if not.
    pub fn reset_link(&mut self, l: usize, q: &mut Queue<Ev>) -> bool {
        let now = q.now();
        let link = &mut self.links[l];
        if link.dead || link.ends[0].state != EndState::Open || link.ends[1].state != EndState::Open
        {
            return false;
        }
        for d in link.dirs() {
            d.inflight.clear();
            d.inflight_bytes = 0;
        }
        for side in 0..2 {
            let ev = Ev::Reset {
                link: l as u32,
                side,
            };
            q.at(now, ev);
        }
        true
    }

    /// The host dies: its connections reset on the other side.
    pub fn kill(&mut self, h: usize, q: &mut Queue<Ev>) {
        let now = q.now();
        for &(l, side) in self.stations[h].conns.values() {
            let link = &mut self.links[l];
            link.ends[side].state = EndState::Closed;
            let other = 1 - side;
            match link.ends[other].state {
                EndState::Open | EndState::Dialling => q.at(
                    now + link.latency,
                    Ev::Reset {
                        link: l as u32,
                        side: other as u8,
                    },
                ),
                EndState::Unborn => link.dead = true,
                EndState::Closed => {}
            }
            for d in link.dirs() {
                d.drop_queue();
                d.inflight.clear();
                d.inflight_bytes = 0;
            }
            link.retire_if_finished();
        }
        let s = &mut self.stations[h];
        s.conns.clear();
        s.iface.rr.clear();
        s.up = false;
    }

    // ---- setting up -------------------------------------------------------------------

    /// Host `h` dials `addr` on its connection `local`.
    pub fn dial(&mut self, h: usize, local: u64, addr: SocketAddr, q: &mut Queue<Ev>) {
        let now = q.now();
        let target = match addr.ip() {
            IpAddr::V4(ip) => self.by_ip.get(&ip).copied(),
            IpAddr::V6(_) => None,
        }
        .filter(|&t| {
            let s = &self.stations[t];
            s.up && s.port == addr.port() && t != h
        });
        let lat = match target {
            Some(t) => self.stations[h].iface.access + self.stations[t].iface.access,
            None => Duration::ZERO,
        };
        let l = self.new_link(h, local, target.unwrap_or(usize::MAX), lat);
        match target {
            Some(t) if self.stations[t].iface.group == self.stations[h].iface.group => {
                q.at(now + lat, Ev::ConnectArrive { link: l as u32 });
            }
            _ => q.at(
                now + self.cfg.connect_timeout,
                Ev::ConnectFail {
                    link: l as u32,
                    error: DialError::TimedOut,
                },
            ),
        }
    }

    /// Host `h` dials a host name on `local`: there is no resolver, it fails now.
    pub fn dial_name(&mut self, h: usize, local: u64, q: &mut Queue<Ev>) {
        let l = self.new_link(h, local, usize::MAX, Duration::ZERO);
        q.at(
            q.now(),
            Ev::ConnectFail {
                link: l as u32,
                error: DialError::CannotResolve,
            },
        );
    }

    fn new_link(&mut self, h: usize, local: u64, to: usize, latency: Duration) -> usize {
        let l = self.links.len();
        self.links.push(Link::new(h, local, to, latency));
        self.stations[h].conns.insert(local, (l, 0));
        l
    }

    /// A dial reaches its target (`ConnectArrive`). `None` when it cannot be accepted (the
    /// dial then times out); else the caller asks the target's application and answers
    /// with [`Transport::accepted`].
    pub fn incoming(&mut self, l: usize, q: &mut Queue<Ev>) -> Option<Incoming> {
        let now = q.now();
        let link = &self.links[l];
        if link.dead || link.ends[0].state != EndState::Dialling {
            return None;
        }
        let (from, to) = (link.ends[0].host, link.ends[1].host);
        if !self.stations[to].up || self.stations[to].iface.group != self.stations[from].iface.group
        {
            let left = self.cfg.connect_timeout.saturating_sub(link.latency);
            q.at(
                now + left,
                Ev::ConnectFail {
                    link: l as u32,
                    error: DialError::TimedOut,
                },
            );
            return None;
        }
        let f = &mut self.stations[from];
        let port = f.next_port;
        f.next_port = if port == u16::MAX { 49152 } else { port + 1 };
        Some(Incoming {
            to,
            remote: SocketAddr::new(IpAddr::V4(f.ip), port),
        })
    }

    /// The acceptor's answer to [`Transport::incoming`]: its id for the connection, or
    /// `None` to refuse. The dialler hears of it one latency later.
    pub fn accepted(&mut self, l: usize, local: Option<u64>, q: &mut Queue<Ev>) {
        let link = &mut self.links[l];
        let at = q.now() + link.latency;
        let ok = local.is_some();
        match local {
            None => link.dead = true,
            Some(local) => {
                link.ends[1].local = local;
                link.ends[1].state = EndState::Open;
                let to = link.ends[1].host;
                self.stations[to].conns.insert(local, (l, 1));
            }
        }
        q.at(at, Ev::ConnectReply { link: l as u32, ok });
    }

    /// The acceptor's answer reaches the dialler (`ConnectReply`).
    pub fn connect_reply(&mut self, l: usize, ok: bool) -> Option<Notice> {
        if self.links[l].ends[0].state != EndState::Dialling {
            return None;
        }
        if !ok {
            return self.close_end(l, 0, Some("connection refused"));
        }
        let end = &mut self.links[l].ends[0];
        end.state = EndState::Open;
        Some(Notice::Connected {
            host: end.host,
            local: end.local,
        })
    }

    /// A dial failed (`ConnectFail`).
    pub fn connect_failed(&mut self, l: usize, error: DialError) -> Option<Notice> {
        let link = &mut self.links[l];
        if link.ends[0].state != EndState::Dialling {
            return None;
        }
        link.dead = true;
        self.close_end(l, 0, Some(error.text()))
    }

    // ---- closing ----------------------------------------------------------------------

    /// A reset reaches end `side` (`Reset`).
    pub fn reset(&mut self, l: usize, side: usize) -> Option<Notice> {
        match self.links[l].ends[side].state {
            EndState::Open | EndState::Dialling => {
                self.close_end(l, side, Some("connection reset by peer"))
            }
            EndState::Unborn | EndState::Closed => None,
        }
    }

    /// Host `h`'s application closes its connection `local`; false if it had none such.
    pub fn close(&mut self, h: usize, local: u64, q: &mut Queue<Ev>) -> bool {
        let now = q.now();
        let Some((l, side)) = self.stations[h].conns.remove(&local) else {
            return false;
        };
        let link = &mut self.links[l];
        link.ends[side].state = EndState::Closed;
        link.dir(side).drop_queue();
        match link.ends[1 - side].state {
            EndState::Open | EndState::Dialling => {
                let at = (now + link.latency).max(link.dir(side).last_arrival);
                q.at(
                    at,
                    Ev::Fin {
                        link: l as u32,
                        dir: side as u8,
                    },
                );
            }
            EndState::Unborn => link.dead = true,
            EndState::Closed => {}
        }
        link.retire_if_finished();
        true
    }

    /// The sender's close reaches the receiver (`Fin`): it is told once what is in flight
    /// has arrived.
    pub fn fin(&mut self, l: usize, dir: usize) -> Option<Notice> {
        let r = 1 - dir;
        let link = &mut self.links[l];
        if link.dead || !matches!(link.ends[r].state, EndState::Open | EndState::Dialling) {
            return None;
        }
        if link.dir(dir).inflight.is_empty() {
            return self.close_end(l, r, None);
        }
        link.dir(dir).fin = true;
        None
    }

    /// End `side` of a link is closed under its application, which is to be told (unless
    /// it is down or has let go of the connection already).
    fn close_end(&mut self, l: usize, side: usize, error: Option<&'static str>) -> Option<Notice> {
        let link = &mut self.links[l];
        link.ends[side].state = EndState::Closed;
        link.dir(side).drop_queue();
        if link.ends[1 - side].state == EndState::Closed {
            for d in link.dirs() {
                d.inflight.clear();
                d.inflight_bytes = 0;
            }
        }
        link.retire_if_finished();
        let (host, local) = (link.ends[side].host, link.ends[side].local);
        let station = self.stations.get_mut(host).filter(|s| s.up)?;
        if station.conns.get(&local) != Some(&(l, side)) {
            return None;
        }
        station.conns.remove(&local);
        Some(Notice::Closed { host, local, error })
    }

    // ---- sending ----------------------------------------------------------------------

    /// Host `h`'s application queues `data` on its connection `local`; the bytes now queued
    /// in that direction.
    pub fn send(
        &mut self,
        h: usize,
        local: u64,
        data: Bytes,
        q: &mut Queue<Ev>,
        rng: &mut ChaCha8Rng,
    ) -> Result<usize, SendError> {
        let &(l, side) = self.stations[h]
            .conns
            .get(&local)
            .ok_or(SendError::Unknown)?;
        if self.links[l].ends[side].state != EndState::Open {
            return Err(SendError::NotConnected);
        }
        let window = self.cfg.window;
        let dir = self.links[l].dir(side);
        dir.push(data, &self.payload);
        if !dir.in_rr && dir.inflight_bytes < window {
            dir.in_rr = true;
            self.stations[h].iface.rr.push_back((l, side));
        }
        self.kick(h, q, rng);
        Ok(self.links[l].dir(side).queued)
    }

    /// An `UplinkKick`: the uplink of `h` may be free again.
    pub fn uplink_kick(&mut self, h: usize, q: &mut Queue<Ev>, rng: &mut ChaCha8Rng) {
        self.stations[h].kick_pending = false;
        self.kick(h, q, rng);
    }

    /// Starts the next segment on host `h`'s uplink if it is free.
    pub fn kick(&mut self, h: usize, q: &mut Queue<Ev>, rng: &mut ChaCha8Rng) {
        let now = q.now();
        let s = &mut self.stations[h];
        if !s.up || s.iface.busy.is_some() {
            return;
        }
        // Busy with a segment whose end is no event, or stalled: come back then.
        if q.position() < s.iface.busy_until {
            if !s.kick_pending {
                s.kick_pending = true;
                let (at, seq) = s.iface.busy_until;
                q.at_reserved(at, seq, Ev::UplinkKick { host: h as u32 });
            }
            return;
        }
        if s.iface.stalled_until > now {
            if !s.kick_pending {
                s.kick_pending = true;
                q.at(s.iface.stalled_until, Ev::UplinkKick { host: h as u32 });
            }
            return;
        }
        if let Some((l, d)) = self.next_ready(h) {
            self.send_segment(h, l, d, q, rng);
        }
    }

    /// The next direction in `h`'s round robin with bytes queued and window room; the
    /// others leave the round robin.
    fn next_ready(&mut self, h: usize) -> Option<(usize, usize)> {
        while let Some((l, d)) = self.stations[h].iface.rr.pop_front() {
            let link = &mut self.links[l];
            if link.dead || link.ends[d].state != EndState::Open {
                if !link.finished() {
                    link.dir(d).in_rr = false;
                }
                continue;
            }
            let dir = link.dir(d);
            if dir.queued == 0 || dir.inflight_bytes >= self.cfg.window {
                dir.in_rr = false;
                continue;
            }
            return Some((l, d));
        }
        None
    }

    /// Sends one segment of direction `d` of link `l` on host `h`'s uplink, booking its
    /// arrival on the receiver's downlink.
    fn send_segment(
        &mut self,
        h: usize,
        l: usize,
        d: usize,
        q: &mut Queue<Ev>,
        rng: &mut ChaCha8Rng,
    ) {
        let now = q.now();
        let window = self.cfg.window;
        let link = &mut self.links[l];
        let seg = link.dir(d).take(self.cfg.quantum, &self.payload);
        let (len, wire) = (seg.len, seg.wire);
        let t_end = now + transfer_time(len, self.stations[h].iface.up_rate);
        let jitter = if self.cfg.jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(rng.next_u64() % self.cfg.jitter.as_nanos() as u64)
        };
        let lat = link.latency + jitter;
        let down = &mut self.stations[link.ends[1 - d].host].iface;
        let receiving = (now + lat).max(down.down_free) + transfer_time(len, down.down_rate);
        let arrival = (t_end + lat).max(receiving);
        down.down_free = arrival;
        let dir = link.dir(d);
        let arrival = arrival.max(dir.last_arrival);
        dir.last_arrival = arrival;
        dir.inflight.push_back(seg);
        dir.inflight_bytes += len;
        let again = dir.queued > 0 && dir.inflight_bytes < window;
        dir.in_rr = again;
        q.at(
            arrival,
            Ev::Deliver {
                link: l as u32,
                dir: d as u8,
            },
        );
        // A control-only segment that completes nothing to report, with no other direction
        // waiting, needs no event at its end: its bytes are counted now (they are reported
        // with a later segment, as at the end), and anything queued meanwhile waits for
        // `busy_until` (see `Iface`), which keeps the order of events exactly as if the
        // `UplinkDone` had been scheduled.
        let report_due = wire || dir.unreported + len >= REPORT_CONTROL;
        let s = &mut self.stations[h];
        if again {
            s.iface.rr.push_back((l, d));
        }
        s.sent_bytes += len as u64;
        if !report_due && s.iface.rr.is_empty() && !self.every_segment_ends {
            dir.unreported += len;
            s.iface.busy_until = (t_end, q.reserve());
            return;
        }
        s.iface.busy = Some((l, d, len, wire));
        q.at(t_end, Ev::UplinkDone { host: h as u32 });
    }

    /// The segment on host `h`'s uplink has left (`UplinkDone`).
    pub fn uplink_done(&mut self, h: usize) -> SegmentEnd {
        let s = &mut self.stations[h];
        let Some((l, d, len, wire)) = s.iface.busy.take() else {
            return SegmentEnd::Nothing;
        };
        if !s.up {
            return SegmentEnd::Nothing;
        }
        let end = self.links[l].ends[d];
        // Control-only segments are reported with the next segment that carries blocks (or
        // once 16 KiB of them add up): the core's flow control is about upload data, and a
        // `Sent` per `have` message would double the inputs of a large swarm. (Nothing is
        // reported once the end is closed, so nothing is counted either.)
        if end.state != EndState::Open {
            return SegmentEnd::Free(None);
        }
        let dir = self.links[l].dir(d);
        dir.unreported += len;
        let sent = (wire || dir.unreported >= REPORT_CONTROL).then(|| Sent {
            local: end.local,
            bytes: std::mem::take(&mut dir.unreported),
        });
        SegmentEnd::Free(sent)
    }

    // ---- receiving --------------------------------------------------------------------

    /// The next segment of direction `dir` of link `l` reaches the receiver (`Deliver`),
    /// unless it must wait (a stalled receiver, a partition, a receiver not yet told it is
    /// connected): then it is delivered again later and this gives `None`. After the
    /// receiver has taken the bytes, call [`Transport::delivered`].
    pub fn arrive(&mut self, l: usize, dir: usize, q: &mut Queue<Ev>) -> Option<Arrival> {
        let now = q.now();
        let r = 1 - dir;
        let link = &mut self.links[l];
        if link.dead || link.finished() {
            return None;
        }
        let (src, dst) = (link.ends[dir].host, link.ends[r].host);
        let seg = link.dir(dir).inflight.pop_front()?;
        let (a, b) = (&self.stations[src].iface, &self.stations[dst].iface);
        let hold = if b.stalled_until > now {
            Some(b.stalled_until)
        } else if a.group != b.group {
            Some(self.partition_until.max(now + Duration::from_millis(1)))
        } else if link.ends[r].state == EndState::Dialling {
            Some(now + Duration::from_millis(1))
        } else {
            None
        };
        if let Some(at) = hold {
            link.dir(dir).inflight.push_front(seg);
            q.at(
                at,
                Ev::Deliver {
                    link: l as u32,
                    dir: dir as u8,
                },
            );
            return None;
        }
        link.dir(dir).inflight_bytes -= seg.len;
        let data = (link.ends[r].state == EndState::Open).then(|| {
            let mut buffers = std::mem::take(&mut self.buffers);
            seg.into_buffers(&mut buffers);
            buffers
        });
        Some(Arrival {
            dst,
            local: link.ends[r].local,
            remote: IpAddr::V4(self.stations[src].ip),
            data,
        })
    }

    /// Gives back the vector of an [`Arrival`]'s buffers, for the next one.
    pub fn recycle(&mut self, mut buffers: Vec<Bytes>) {
        buffers.clear();
        self.buffers = buffers;
    }

    /// End `side` of link `l` is open (the receiver's application may close it while it
    /// takes an arrival's buffers).
    pub fn is_open(&self, l: usize, side: usize) -> bool {
        self.links[l].ends[side].state == EndState::Open
    }

    /// After an arrival on direction `dir` of link `l`: the sender's close is seen once
    /// nothing is in flight any more, else the direction gets its window room back.
    pub fn delivered(
        &mut self,
        l: usize,
        dir: usize,
        q: &mut Queue<Ev>,
        rng: &mut ChaCha8Rng,
    ) -> Option<Notice> {
        let r = 1 - dir;
        let link = &mut self.links[l];
        if link.finished() {
            return None;
        }
        if link.dir(dir).fin
            && link.dir(dir).inflight.is_empty()
            && matches!(link.ends[r].state, EndState::Open | EndState::Dialling)
        {
            link.dir(dir).fin = false;
            return self.close_end(l, r, None);
        }
        let open = link.ends[dir].state == EndState::Open;
        let src = link.ends[dir].host;
        let d = link.dir(dir);
        if open && !d.in_rr && d.queued > 0 && d.inflight_bytes < self.cfg.window {
            d.in_rr = true;
            self.stations[src].iface.rr.push_back((l, dir));
            self.kick(src, q, rng);
        }
        None
    }
}
