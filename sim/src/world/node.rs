//! A node: a real `tessera-core` session with its in-memory disk, and how it is driven.
//! An input goes in, the outputs are drained until the session names its next deadline,
//! each action is carried out on the transport, the disk or the queue, each event is
//! checked and counted, and the node's invariants are checked after every input.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rand_chacha::ChaCha8Rng;
use tessera_core::magnet::MagnetLink;
use tessera_core::testing::WireCheck;
use tessera_core::{
    Action, Bitfield, Config, DhtSettings, DiskResult, Duration, Event, Input, Instant, Metainfo,
    OpId, Output, Session, Target, TorrentId, TorrentOptions,
};

use super::event::{Ev, NO_REJOIN, rejoin_nanos};
use super::faults;
use super::population::{Class, Life, PEER_PORT, Population};
use super::tally::{Copies, SENT, Tally};
use super::transport::{SendError, Transport};
use crate::disk::Disk;
use crate::invariants;
use crate::payload::{Payload, Variant};
use crate::queue::Queue;
use crate::scenario::{Adversary, Scenario};

/// Time a disk operation takes.
const DISK_LATENCY: Duration = Duration::from_micros(200);
/// A node whose disk failed is restarted (with its resume data) after this long.
const RESTART_DELAY: Duration = Duration::from_secs(5);

/// What driving a node touches besides the node itself.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub sc: &'a Scenario,
    pub payload: &'a Payload,
    pub q: &'a mut Queue<Ev>,
    /// The run-time stream (disk failures here).
    pub rng: &'a mut ChaCha8Rng,
    pub net: &'a mut Transport,
    pub pop: &'a mut Population,
    pub tally: &'a mut Tally,
}

/// A real session and its disk.
#[derive(Debug)]
pub struct Node {
    session: Session,
    torrent: TorrentId,
    disk: Disk,
    /// The peer it is.
    pub rec: usize,
    /// The session's next deadline.
    deadline: Instant,
    /// The epoch of the `Timer` event that counts (earlier ones are stale).
    timer_gen: u64,
    /// When the `Timer` event that counts is due.
    timer_at: Option<Instant>,
    /// What the invariants remember between checks.
    prev_have: Vec<u64>,
    prev_requests: invariants::PrevRequests,
    /// What it uploads (a corrupt node serves the corrupt variant).
    serve: Variant,
    /// Pieces counted in the swarm's copy counts.
    counted: Bitfield,
    /// Leading pieces all counted (the verified prefix).
    prefix: usize,
    /// What the node says on the wire (`None`: not checked in this scenario, or not yet:
    /// a magnet link's torrent is checked from when its metadata is in).
    wire: Option<Box<WireCheck>>,
    /// A magnet link's torrent: how it goes on once its metadata is in.
    fetching: Option<TorrentOptions>,
}

/// The session configuration of a peer of `class`.
fn config_for(sc: &Scenario, class: Class) -> Config {
    let mut c = Config {
        listen_port: PEER_PORT,
        // The simulated links are TCP-like streams; uTP is not modelled here yet.
        transport: tessera_core::TransportPolicy::Tcp,
        ..Config::default()
    };
    c.picker.strategy = sc.strategy;
    if !sc.endgame {
        c.picker.endgame_max_requesters = 1;
    }
    if class == Class::FreeRider {
        c.unchoke_slots = 0;
        c.optimistic_unchoke = false;
    }
    c
}

impl Node {
    /// The session of peer `rec` starting its `life` now: seeders check their data, leechers
    /// start from their resume data (nothing, the first time). Call [`Node::started`] next.
    ///
    /// With the DHT, the session's node joins through `bootstrap`; with magnet links, a
    /// leecher's first life starts from the link.
    pub fn new(
        sc: &Scenario,
        payload: &Payload,
        now: Instant,
        rec: usize,
        life: Life,
        bootstrap: &[SocketAddr],
    ) -> Node {
        let seeder = life.class == Class::Seeder;
        let disk = life.disk.unwrap_or_else(|| {
            if seeder {
                Disk::full(payload)
            } else {
                Disk::empty(payload)
            }
        });
        let n = payload.num_pieces() as usize;
        let magnet = sc.magnet && !seeder && life.resume.is_none();
        let options = TorrentOptions {
            have: (!seeder).then(|| life.resume.unwrap_or_else(|| Bitfield::new(n))),
            seed: true,
            files: None,
            ..TorrentOptions::default()
        };
        let mut session = Session::new(config_for(sc, life.class), now, life.seed);
        if sc.dht {
            session.enable_dht(
                now,
                DhtSettings {
                    config: tessera_core::dht::Config::loopback(),
                    bootstrap: bootstrap.to_vec(),
                    state: None,
                },
            );
        }
        // With the DHT the torrent has no tracker (the info dictionary, and so the info
        // hash, is the same).
        let meta = if sc.dht {
            Arc::new(Metainfo {
                trackers: Vec::new(),
                ..(*payload.meta).clone()
            })
        } else {
            payload.meta.clone()
        };
        let verified = options.have.clone().unwrap_or_else(|| Bitfield::new(n));
        let wire = (sc.check_wire && !magnet)
            .then(|| Box::new(WireCheck::new(payload.meta.layout().clone(), verified)));
        let (torrent, fetching) = if magnet {
            let link = MagnetLink {
                info_hash: meta.info_hash,
                name: None,
                trackers: meta.trackers.iter().flatten().cloned().collect(),
                peers: Vec::new(),
                select: Vec::new(),
            };
            let id = session
                .add_magnet(now, &link)
                .expect("a new session holds no torrent");
            (id, Some(options))
        } else {
            let id = session
                .add_torrent(now, meta, options)
                .expect("a new session holds no torrent");
            (id, None)
        };
        let serve = if life.class == Class::Adversary(Adversary::Corrupt) {
            Variant::Corrupt
        } else {
            Variant::Valid
        };
        Node {
            session,
            torrent,
            disk,
            rec,
            deadline: now,
            timer_gen: 0,
            timer_at: None,
            prev_have: Vec::new(),
            prev_requests: invariants::PrevRequests::default(),
            serve,
            counted: Bitfield::new(n),
            prefix: 0,
            wire,
            fetching,
        }
    }

    /// Whether its torrent started from a magnet link and waits for the metadata.
    pub fn is_magnet(&self) -> bool {
        self.fetching.is_some()
    }

    /// The new session on host `h` does what it does first.
    pub fn started(&mut self, h: usize, cx: &mut Ctx) {
        self.count_have(cx);
        self.drain(h, cx);
        self.check(true, cx);
    }

    /// A connection reaches the session: its id for it, or `None` to refuse.
    pub fn accept(&mut self, now: Instant, remote: SocketAddr) -> Option<u64> {
        self.session.accept(now, remote).map(|c| c.0)
    }

    /// After [`Node::accept`]: the session answers the new connection.
    pub fn accepted(&mut self, h: usize, cx: &mut Ctx) {
        self.drain(h, cx);
        self.check(true, cx);
    }

    /// The node stops (its host died): its pieces leave the copy counts; what its next
    /// life keeps (have-set, bytes uploaded, disk).
    pub fn stop(self, copies: &mut Copies) -> (Option<Bitfield>, u64, Disk) {
        for p in self.counted.ones() {
            copies.remove(p);
        }
        // A magnet link's torrent without its metadata has nothing to keep: it starts from
        // the link again.
        let have = if self.fetching.is_some() {
            None
        } else {
            self.session.have(self.torrent).cloned()
        };
        (have, self.uploaded(), self.disk)
    }

    /// Payload bytes uploaded in this life.
    pub fn uploaded(&self) -> u64 {
        self.session.stats(self.torrent).map_or(0, |s| s.uploaded)
    }

    /// The peers whose unchoke slot this node gives: their addresses, and whether each is
    /// interested.
    pub fn unchoked(&self) -> impl Iterator<Item = (SocketAddr, bool)> {
        let peers = self.session.peers(self.torrent);
        peers
            .into_iter()
            .filter(|p| !p.am_choking)
            .map(|p| (p.addr, p.peer_interested))
    }

    /// Where the node stands, for a liveness violation.
    pub fn describe(&self, pop: &Population) -> String {
        let st = self.session.stats(self.torrent).unwrap_or_default();
        let peers = self.session.peers(self.torrent);
        let unchoked_by = peers.iter().filter(|p| !p.peer_choking).count();
        let interested = peers.iter().filter(|p| p.am_interested).count();
        let asking: Vec<String> = peers
            .iter()
            .filter(|p| p.requests_out > 0)
            .map(|p| {
                let who = pop.at(p.addr.ip()).map_or("?".into(), |o| pop.name(o));
                let snubbed = if p.snubbed { " (snubbed)" } else { "" };
                format!("{who} x{}{snubbed}", p.requests_out)
            })
            .collect();
        format!(
            "up, {}/{} pieces, {} peers ({} unchoke us, we want from {}), requests to [{}], {} lives",
            st.pieces_have,
            st.pieces_total,
            st.peers,
            unchoked_by,
            interested,
            asking.join(", "),
            pop.records[self.rec].lives
        )
    }

    // ---- driving ----------------------------------------------------------------------

    /// The node's `Timer` event of `epoch` (stale when a later one was armed).
    pub fn on_timer(&mut self, h: usize, epoch: u64, cx: &mut Ctx) {
        let now = cx.q.now();
        if self.timer_gen != epoch {
            return;
        }
        self.timer_at = None;
        if self.deadline <= now {
            self.feed(h, Input::Timeout { now }, cx);
        } else {
            self.arm(h, self.deadline, cx.q);
        }
    }

    /// The session's deadline is `at`: one `Timer` event stands for it, re-armed only when
    /// the deadline moves earlier.
    fn arm(&mut self, h: usize, at: Instant, q: &mut Queue<Ev>) {
        self.deadline = at;
        if at == Instant::FAR_FUTURE || self.timer_at.is_some_and(|t| t <= at) {
            return;
        }
        self.timer_gen += 1;
        self.timer_at = Some(at);
        let epoch = self.timer_gen;
        q.at(
            at,
            Ev::Timer {
                host: h as u32,
                epoch,
            },
        );
    }

    /// Hands one input to the session of host `h`, then carries out what it asks for.
    pub fn feed(&mut self, h: usize, input: Input, cx: &mut Ctx) {
        let kind = cx.tally.input(h, &input);
        if let Some(w) = self.wire.as_mut() {
            w.input(&input);
        }
        self.session.handle_input(input);
        self.drain(h, cx);
        // `Sent` only moves the upload side (the request bounds are state: a breach still
        // shows at the node's next other input).
        self.check(kind != SENT, cx);
    }

    fn drain(&mut self, h: usize, cx: &mut Ctx) {
        loop {
            let out = self.session.poll_output();
            if let Some(w) = self.wire.as_mut() {
                w.output(&out);
            }
            match out {
                Output::Timeout(t) => {
                    self.arm(h, t, cx.q);
                    self.check_wire(cx);
                    return;
                }
                Output::Event(e) => self.on_event(e, cx),
                Output::Action(a) => self.on_action(h, a, cx),
            }
        }
    }

    /// Reports what the wire checker found since the last input.
    fn check_wire(&mut self, cx: &mut Ctx) {
        let Some(w) = self.wire.as_mut() else {
            return;
        };
        w.after_drain(self.session.stats(self.torrent).as_ref());
        for v in w.take_violations() {
            self.violation(format!("on the wire: {v}"), cx);
        }
    }

    fn violation(&self, what: String, cx: &mut Ctx) {
        let name = cx.pop.name(self.rec);
        cx.tally.inv.report(cx.q.now(), name, what);
    }

    fn on_action(&mut self, h: usize, a: Action, cx: &mut Ctx) {
        let code = match &a {
            Action::Connect { .. } => 11,
            Action::Send { .. } => 12,
            Action::Close { .. } => 13,
            Action::Write { .. } => 14,
            Action::Verify { .. } => 15,
            Action::Read { .. } => 16,
            Action::SendDatagram { .. } => 17,
            Action::Resolve { .. } => 18,
        };
        cx.tally.step(code, h);
        match a {
            Action::Connect { conn, target } => match target {
                Target::Addr(addr) if cx.pop.records[self.rec].completed_at.is_some() => {
                    cx.tally.seed_dials += 1;
                    cx.net.dial(h, conn.0, addr, cx.q);
                }
                Target::Addr(addr) => cx.net.dial(h, conn.0, addr, cx.q),
                Target::Host { .. } => cx.net.dial_name(h, conn.0, cx.q),
            },
            Action::Send { conn, data } => match cx.net.send(h, conn.0, data, cx.q, cx.rng) {
                Err(SendError::Unknown) => {
                    self.violation(format!("send on closed connection {conn:?}"), cx);
                }
                Err(SendError::NotConnected) => {
                    self.violation(format!("send on {conn:?} before it was connected"), cx);
                }
                Ok(queued) => {
                    let limit = self.session.config().max_send_buffer + (1 << 20);
                    if queued > limit {
                        let what =
                            format!("{queued} bytes queued on {conn:?}: send buffer overrun");
                        self.violation(what, cx);
                    }
                }
            },
            Action::Close { conn } => {
                if !cx.net.close(h, conn.0, cx.q) {
                    self.violation(format!("close of closed connection {conn:?}"), cx);
                }
            }
            Action::Write {
                op,
                piece,
                offset,
                data,
                expected,
                ..
            } => {
                let result = match self.disk_failure(cx, "write failed") {
                    Some(error) => error,
                    None => self.disk.write(cx.payload, piece, offset, &data, expected),
                };
                disk_done(h, op, result, cx.q);
            }
            Action::Verify {
                op,
                piece,
                expected,
                ..
            } => {
                let result = self.disk.verify(cx.payload, piece, expected);
                disk_done(h, op, result, cx.q);
            }
            Action::Read {
                op,
                piece,
                offset,
                len,
                ..
            } => {
                let result = self.disk_failure(cx, "read failed").unwrap_or_else(|| {
                    DiskResult::Data(self.disk.read(cx.payload, piece, offset, len, self.serve))
                });
                disk_done(h, op, result, cx.q);
            }
            Action::SendDatagram { to, data } => self.send_datagram(to, data, cx),
            // The simulated network has no names: nothing to resolve.
            Action::Resolve { .. } => {}
        }
    }

    /// A datagram (the DHT's) goes to the node at `to`, if one is up there, after both
    /// ends' access latency. Datagrams take no bandwidth and are never lost here; a
    /// partition does not stop them.
    fn send_datagram(&mut self, to: SocketAddr, data: bytes::Bytes, cx: &mut Ctx) {
        let Some(other) = cx.pop.at(to.ip()) else {
            return;
        };
        let Some(host) = cx.pop.records[other].host else {
            return;
        };
        if to.port() != PEER_PORT {
            return;
        }
        let from = SocketAddr::new(IpAddr::V4(cx.pop.records[self.rec].ip), PEER_PORT);
        let at = cx.q.now() + cx.pop.latency(self.rec) + cx.pop.latency(other);
        cx.tally.datagrams += 1;
        cx.q.at(
            at,
            Ev::Datagram {
                host: host as u32,
                datagram: Box::new((from, data)),
            },
        );
    }

    /// A magnet link's metadata is in: it must be the torrent's info dictionary; the
    /// session goes on with it as a torrent, checked on the wire from now on.
    fn metadata_received(&mut self, meta: &Metainfo, cx: &mut Ctx) {
        let Some(options) = self.fetching.take() else {
            self.violation("metadata received twice".into(), cx);
            return;
        };
        if meta.info_hash != cx.payload.meta.info_hash
            || meta.info_bytes != cx.payload.meta.info_bytes
        {
            self.violation("metadata received is not the torrent's".into(), cx);
            return;
        }
        let now = cx.q.now();
        cx.tally.metadata_times.push(now.saturating_duration_since(
            cx.pop.records[self.rec].joined_at.unwrap_or(Instant::ZERO),
        ));
        if cx.sc.check_wire {
            let n = cx.payload.num_pieces() as usize;
            self.wire = Some(Box::new(WireCheck::new(
                cx.payload.meta.layout().clone(),
                Bitfield::new(n),
            )));
        }
        if let Err(e) = self
            .session
            .resume_with_metadata(now, self.torrent, options)
        {
            self.violation(format!("resume with the metadata: {e}"), cx);
        }
    }

    /// A failed disk operation's answer, if its disk fails it now.
    fn disk_failure(&self, cx: &mut Ctx, message: &str) -> Option<DiskResult> {
        let rate = cx.sc.faults.disk_error_rate;
        if !faults::disk_fails(cx.pop, self.rec, cx.q.now(), rate, cx.rng) {
            return None;
        }
        cx.tally.disk_errors += 1;
        Some(faults::disk_error(message))
    }

    fn on_event(&mut self, e: Event, cx: &mut Ctx) {
        let now = cx.q.now();
        let rec = self.rec;
        match e {
            Event::PieceVerified { piece, .. } => {
                if !self.disk.piece_valid(cx.payload, piece) {
                    self.violation(format!("piece {piece} verified but its data is wrong"), cx);
                }
                self.count_have(cx);
            }
            Event::Checked { .. } => {
                let bad = self.session.have(self.torrent).and_then(|b| {
                    b.ones()
                        .find(|&p| !self.disk.piece_valid(cx.payload, p as u32))
                });
                if let Some(p) = bad {
                    self.violation(format!("piece {p} found at the check but wrong"), cx);
                }
                self.count_have(cx);
            }
            Event::Complete { .. } => {
                if cx.pop.complete(rec, now) && cx.sc.leave_on_complete {
                    let rejoin = NO_REJOIN;
                    cx.q.at(
                        now,
                        Ev::Leave {
                            rec: rec as u32,
                            rejoin,
                        },
                    );
                }
            }
            Event::HashFailed { .. } => cx.tally.hash_failures += 1,
            Event::PeerClosed { addr, reason, .. } => {
                let reason = reason.to_string();
                let Some(other) = cx.pop.at(addr.ip()) else {
                    return;
                };
                if !cx.pop.records[rec].class.honest() {
                    return;
                }
                let class = cx.pop.records[other].class;
                let dialled = addr.port() == PEER_PORT;
                cx.tally
                    .honest_closed((rec, other), class, &reason, dialled);
                if class.honest() && invariants::blames_peer(&reason) {
                    let who = cx.pop.name(other);
                    let what = format!("honest peer {who} closed as misbehaving: {reason}");
                    self.violation(what, cx);
                }
            }
            Event::PeerConnected { addr, .. } => {
                if let Some(other) = cx.pop.at(addr.ip())
                    && let Class::Adversary(a) = cx.pop.records[other].class
                {
                    *cx.tally.adversary_conns.entry(a).or_default() += 1;
                }
            }
            Event::DiskError { .. } => {
                if cx.pop.records[rec].class.honest() {
                    let rejoin = rejoin_nanos(Some(RESTART_DELAY));
                    cx.q.at(
                        now,
                        Ev::Leave {
                            rec: rec as u32,
                            rejoin,
                        },
                    );
                }
            }
            Event::MetadataReceived { meta, .. } => self.metadata_received(&meta, cx),
            Event::MetadataFailed { reason, .. } => {
                self.violation(format!("metadata failed: {reason}"), cx);
            }
            Event::Tracker { .. } | Event::SeedingDone { .. } | Event::Stopped => {}
        }
    }

    /// Brings the copy counts up to date with the have-set (honest nodes only).
    fn count_have(&mut self, cx: &mut Ctx) {
        if !cx.pop.records[self.rec].class.honest() {
            return;
        }
        let Some(have) = self.session.have(self.torrent) else {
            return;
        };
        for p in have.ones() {
            if !self.counted.get(p) {
                self.counted.set(p);
                cx.tally.copies.add(p);
            }
        }
        let n = self.counted.len();
        while self.prefix < n && self.counted.get(self.prefix) {
            self.prefix += 1;
        }
        let r = &mut cx.pop.records[self.rec];
        if r.playable_at.is_none() && self.prefix * 10 >= n {
            r.playable_at = Some(cx.q.now());
        }
    }

    /// The node's invariants, after an event touched it; the per-peer request bounds too
    /// when `peers` (and the scenario checks them after every event).
    fn check(&mut self, peers: bool, cx: &mut Ctx) {
        let mut problems = Vec::new();
        if let Some(have) = self.session.have(self.torrent)
            && let Err(e) = invariants::have_grows(&mut self.prev_have, have)
        {
            problems.push(e);
        }
        if cx.sc.check_peers_every_event && peers {
            invariants::request_bounds(
                &mut self.prev_requests,
                self.session.peer_requests(self.torrent),
                self.session.config(),
                &mut problems,
            );
        }
        for p in problems {
            self.violation(p, cx);
        }
    }

    /// The absolute request bounds, sampled (the queue depth may have shrunk since the
    /// requests went out, so nothing relative is judged).
    pub fn sampled_check(&self, cx: &mut Ctx) {
        let mut problems = Vec::new();
        invariants::absolute_request_bounds(
            self.session.peer_requests(self.torrent),
            self.session.config(),
            &mut problems,
        );
        for p in problems {
            self.violation(p, cx);
        }
    }
}

/// Answers a disk action of host `h` after the disk's latency.
fn disk_done(h: usize, op: OpId, result: DiskResult, q: &mut Queue<Ev>) {
    let at = q.now() + DISK_LATENCY;
    q.at(
        at,
        Ev::DiskDone {
            host: h as u32,
            done: Box::new((op, result)),
        },
    );
}
