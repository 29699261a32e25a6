//! The session: every torrent, connection and tracker of one client, driven by inputs.
//!
//! Methods come in this order: construction, getters, `handle_*`/`accept` (inputs),
//! mutators (`add_torrent`, `add_peers`, `shutdown`), then `poll_output`. The connection
//! layer's handshakes (MSE) are in `handshake.rs`.

mod handshake;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::api::{AddTorrentError, Event, Input, Output, PeerInfo, PeerRequests, TorrentStats};
use crate::bitfield::Bitfield;
use crate::config::{Config, TorrentOptions};
use crate::id::{ConnId, InfoHash, PeerId, TorrentId};
use crate::metainfo::Metainfo;
use crate::shared::{Route, Shared};
use crate::time::{Duration, Instant};
use crate::timer::{Timer, TimerTable, earliest};
use crate::torrent::Torrent;
use crate::vec_map::VecMap;
use crate::wire::Decoder;

mod dht;
mod udp;
mod utp;

pub use udp::DatagramStats;

/// An inbound connection waiting for the remote handshake.
#[derive(Debug)]
struct Pending {
    addr: SocketAddr,
    decoder: Decoder,
    since: Instant,
}

/// How long an inbound connection may take to send its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// The session's own named deadlines (each torrent has its own: see `torrent/timers.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionTimer {
    /// The first inbound connection to run out of time for its handshake.
    Handshake,
    /// `shutdown` gives up waiting for `stopped` announces.
    Stop,
    /// A rate limit has tokens again for the peers waiting for it.
    Bandwidth,
}

impl Timer for SessionTimer {
    const ALL: &'static [Self] = &[
        SessionTimer::Handshake,
        SessionTimer::Stop,
        SessionTimer::Bandwidth,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Every torrent, connection and tracker of one BitTorrent client, as one state machine.
///
/// A session never blocks and never does IO: the driver that owns it (a runtime, the
/// simulator, a test) feeds it what happened with [`Session::handle_input`] (and the
/// mutators [`Session::accept`], [`Session::add_torrent`], [`Session::add_peers`],
/// [`Session::shutdown`]), then drains [`Session::poll_output`] until it returns
/// [`Output::Timeout`], carrying out each [`Action`](crate::Action) and reporting its
/// outcome as a later input. Every mutation must be followed by a complete drain. The
/// crate documentation has the whole loop.
///
/// Time comes only from the inputs (`now`, on the driver's clock, never going backwards:
/// an earlier `now` counts as the latest seen) and randomness only from the seed given to
/// [`Session::new`], so the same inputs replay to the same outputs.
#[derive(Debug)]
pub struct Session {
    sh: Shared,
    torrents: VecMap<TorrentId, Torrent>,
    by_hash: BTreeMap<InfoHash, TorrentId>,
    /// `HASH('req2', info hash)` of every torrent: how an MSE handshake names one.
    by_req2: BTreeMap<[u8; 20], InfoHash>,
    pending: BTreeMap<ConnId, Pending>,
    timers: TimerTable<SessionTimer, 3>,
    /// Set by `shutdown`: when to give up waiting for `stopped` announces.
    stopping: Option<Instant>,
    stopped: bool,
    /// Datagram routing and look-ups (`session/udp.rs`).
    udp: udp::Udp,
    /// The DHT node and its lookups (`session/dht.rs`).
    dht: dht::SessionDht,
}

impl Session {
    /// A session with no torrent yet. `now` is the driver's clock at the start (any epoch:
    /// only differences count); `seed` drives every random choice (our peer id's suffix,
    /// the tracker `key`, tie-breaks, the optimistic unchoke), so a session replays from it.
    pub fn new(config: Config, now: Instant, seed: [u8; 32]) -> Self {
        Session {
            sh: Shared::new(config, now, seed),
            torrents: VecMap::new(),
            by_hash: BTreeMap::new(),
            by_req2: BTreeMap::new(),
            pending: BTreeMap::new(),
            timers: TimerTable::default(),
            stopping: None,
            stopped: false,
            udp: udp::Udp::default(),
            dht: dht::SessionDht::default(),
        }
    }

    // ---- getters ------------------------------------------------------------------

    /// Our peer id: the config's prefix and twelve characters drawn from the seed.
    pub fn peer_id(&self) -> PeerId {
        self.sh.peer_id
    }

    /// The configuration the session was made with.
    pub fn config(&self) -> &Config {
        &self.sh.config
    }

    /// A snapshot of a torrent's progress (`None`: no such torrent).
    pub fn stats(&self, torrent: TorrentId) -> Option<TorrentStats> {
        self.torrents.get(&torrent).map(|t| t.stats(self.sh.now))
    }

    /// Every connection of a torrent to a peer.
    pub fn peers(&self, torrent: TorrentId) -> Vec<PeerInfo> {
        let mut peers = self
            .torrents
            .get(&torrent)
            .map(|t| t.peer_infos(self.sh.now))
            .unwrap_or_default();
        for p in &mut peers {
            p.encryption = self.sh.links.encryption(p.conn);
            p.transport = self.sh.transports.of(p.conn);
        }
        peers
    }

    /// Every connection of a torrent to a peer, with only its request counts: cheap
    /// enough to call after every input (the simulator's request-bound check does).
    pub fn peer_requests(&self, torrent: TorrentId) -> impl Iterator<Item = PeerRequests> + '_ {
        self.torrents
            .get(&torrent)
            .into_iter()
            .flat_map(Torrent::peer_requests)
    }

    /// The verified pieces of a torrent (for resume files).
    pub fn have(&self, torrent: TorrentId) -> Option<&Bitfield> {
        self.torrents.get(&torrent).map(Torrent::have)
    }

    // ---- inputs -------------------------------------------------------------------

    /// Feeds one thing that happened outside the core; drain [`Session::poll_output`]
    /// afterwards. Any input also runs the deadlines due by its `now`, so calling with
    /// [`Input::Timeout`] early or late is harmless.
    ///
    /// An input for a connection or disk operation the session does not know (any more)
    /// is ignored: the driver may race with a close the core asked for, and need not filter
    /// (see [`api`](crate::api)).
    pub fn handle_input(&mut self, input: Input) {
        let now = input.now().max(self.sh.now);
        self.sh.now = now;
        self.dispatch(input);
        self.after_input();
    }

    /// Routes one input (the driver's, or one the uTP socket's events stand for) to the
    /// connection layer, a pending connection, a torrent or a sub-machine.
    fn dispatch(&mut self, input: Input) {
        match input {
            Input::Timeout { .. } => {}
            Input::Connected { conn, .. } => {
                if !self.link_connected(conn) {
                    self.with_torrent(conn, |t, sh| t.on_connected(sh, conn))
                }
            }
            Input::Received { conn, data, .. } => {
                let Some(data) = self.link_received(conn, data) else {
                    return;
                };
                if self.pending.contains_key(&conn) {
                    self.on_pending_data(conn, data);
                } else {
                    self.with_torrent(conn, |t, sh| t.on_data(sh, conn, data));
                }
            }
            Input::Sent { conn, bytes, .. } => {
                let bytes = self.sh.links.sent(conn, bytes);
                if bytes > 0 {
                    self.with_torrent(conn, |t, sh| t.on_sent(sh, conn, bytes))
                }
            }
            Input::Closed { conn, error, .. } => {
                if self.link_closed(conn, error.as_deref()) {
                    // The connection layer redialled or gave the peer up.
                } else if self.pending.remove(&conn).is_some() {
                    self.sh.forget(conn);
                } else {
                    self.with_torrent(conn, |t, sh| t.on_closed(sh, conn, error));
                }
            }
            Input::Disk { op, result, .. } => {
                if let Some(torrent) = self.sh.take_op(op)
                    && let Some(t) = self.torrents.get_mut(&torrent)
                {
                    t.on_disk(&mut self.sh, op, result);
                }
            }
            Input::Datagram { from, data, .. } => self.on_datagram(from, &data),
            Input::Resolved { op, result, .. } => self.on_resolved(op, result),
        }
    }

    /// A peer connected to our listening socket. `None`: refuse it (limits); close it.
    pub fn accept(&mut self, now: Instant, remote: SocketAddr) -> Option<ConnId> {
        self.sh.now = now.max(self.sh.now);
        if self.stopping.is_some() || self.sh.connections() >= self.sh.config.max_connections {
            return None;
        }
        let conn = self.sh.accept();
        self.link_accepted(conn, remote);
        self.pending.insert(
            conn,
            Pending {
                addr: remote,
                decoder: Decoder::new(),
                since: now,
            },
        );
        self.arm_handshake_timer();
        Some(conn)
    }

    /// Runs `f` on the torrent `conn` belongs to, if any.
    fn with_torrent(&mut self, conn: ConnId, f: impl FnOnce(&mut Torrent, &mut Shared)) {
        let id = match self.sh.route(conn) {
            Some(Route::Peer(t) | Route::Tracker(t)) => t,
            Some(Route::Pending) | None => return,
        };
        if let Some(t) = self.torrents.get_mut(&id) {
            f(t, &mut self.sh);
        }
    }

    fn on_pending_data(&mut self, conn: ConnId, data: Bytes) {
        let Some(p) = self.pending.get_mut(&conn) else {
            return;
        };
        p.decoder.feed(data);
        let handshake = match p.decoder.handshake() {
            Ok(None) => return,
            Ok(Some(h)) => h,
            Err(e) => {
                tracing::debug!(addr = %p.addr, "inbound connection: {e}");
                self.pending.remove(&conn);
                self.sh.close(conn);
                return;
            }
        };
        let Some(p) = self.pending.remove(&conn) else {
            return;
        };
        if !self.link_names(conn, &handshake.info_hash) {
            tracing::info!(addr = %p.addr, "inbound peer's handshake names another torrent than its encrypted handshake did");
            self.sh.close(conn);
            return;
        }
        let torrent = self
            .by_hash
            .get(&handshake.info_hash)
            .and_then(|id| self.torrents.get_mut(id));
        match torrent {
            Some(t) => {
                let id = t.id;
                self.sh.reroute(conn, Route::Peer(id));
                t.adopt_inbound(&mut self.sh, conn, p.addr, p.decoder, handshake);
            }
            None => {
                tracing::debug!(addr = %p.addr, info_hash = %handshake.info_hash, "inbound peer for a torrent we do not have");
                self.sh.close(conn);
            }
        }
    }

    /// The end of every input and mutator: due deadlines, deferred work, the flush of
    /// queued control messages, what the uTP socket made of it all (its events are
    /// inputs too, each followed by the same), then the deadlines re-armed for
    /// `poll_output`.
    fn after_input(&mut self) {
        self.settle();
        if self.sh.transports.has_utp() {
            self.utp_rounds();
        }
        self.update_timers();
    }

    /// Due deadlines, deferred work and the flush of queued control messages.
    fn settle(&mut self) {
        let now = self.sh.now;
        self.handle_timeouts();
        self.bandwidth_turns();
        for t in self.torrents.values_mut() {
            t.after_input(&mut self.sh);
        }
        let mut queued = std::mem::take(&mut self.sh.queued);
        for &(torrent, conn) in &queued {
            if let Some(t) = self.torrents.get_mut(&torrent) {
                t.flush(&mut self.sh, conn);
            }
        }
        // Keep the buffer for the next input (a flush queues nothing new).
        queued.clear();
        if self.sh.queued.is_empty() {
            self.sh.queued = queued;
        }
        self.drain_udp_trackers();
        self.drain_dht();
        if let Some(deadline) = self.stopping
            && !self.stopped
            && (now >= deadline
                || self
                    .torrents
                    .values()
                    .all(|t| t.stop_done() && !t.udp_announcing(&self.sh)))
        {
            self.finish_stop();
        }
    }

    /// Runs every deadline due at `sh.now`: the session's own, then each torrent's. Any
    /// input runs them, not only `Input::Timeout`.
    ///
    /// A sub-machine with deadlines of its own (a uTP socket's retransmits, the DHT's
    /// queries, a UDP tracker's retransmits) gets its `handle_timeout(now)` here and adds
    /// its `poll_timeout()` in [`Session::poll_timeout`].
    fn handle_timeouts(&mut self) {
        let now = self.sh.now;
        if self.timers.is_due(SessionTimer::Handshake, now) {
            let expired: Vec<ConnId> = self
                .pending
                .iter()
                .filter(|(_, p)| now.saturating_duration_since(p.since) >= HANDSHAKE_TIMEOUT)
                .map(|(c, _)| *c)
                .collect();
            for conn in expired {
                self.pending.remove(&conn);
                self.sh.close(conn);
            }
        }
        // `Stop` is judged in `after_input`, once this input's answers are in.
        for t in self.torrents.values_mut() {
            t.handle_timeout(&mut self.sh);
        }
        self.sh.udp_trackers.handle_timeout(now);
        self.dht_handle_timeout();
        self.sh.transports.handle_timeout(now);
    }

    /// Gives the peers waiting for a rate limit their turns while its tokens last (see
    /// [`crate::bandwidth`]): one turn each in order, a peer wanting more going to the back.
    fn bandwidth_turns(&mut self) {
        let now = self.sh.now;
        // Each turn spends tokens or drops the peer from the queue; the bound is a guard.
        for _ in 0..100_000 {
            let Some((torrent, conn)) = self.sh.up.next_turn(now) else {
                break;
            };
            if let Some(t) = self.torrents.get_mut(&torrent) {
                t.upload_turn(&mut self.sh, conn);
            }
        }
        for _ in 0..100_000 {
            let Some((torrent, conn)) = self.sh.down.next_turn(now) else {
                break;
            };
            if let Some(t) = self.torrents.get_mut(&torrent) {
                t.download_turn(&mut self.sh, conn);
            }
        }
    }

    /// The earliest handshake time-out among the connections still handshaking.
    fn arm_handshake_timer(&mut self) {
        let handshake = self
            .pending
            .values()
            .map(|p| p.since + HANDSHAKE_TIMEOUT)
            .min();
        self.timers.set_or_stop(SessionTimer::Handshake, handshake);
    }

    /// Re-arms the session's deadlines and every torrent's from their state.
    fn update_timers(&mut self) {
        self.arm_handshake_timer();
        let stop = self.stopping.filter(|_| !self.stopped);
        self.timers.set_or_stop(SessionTimer::Stop, stop);
        let bandwidth = earliest(self.sh.up.deadline(), self.sh.down.deadline());
        self.timers.set_or_stop(SessionTimer::Bandwidth, bandwidth);
        for t in self.torrents.values_mut() {
            t.update_timers(&mut self.sh);
        }
    }

    /// The earliest deadline in the session: its own, every torrent's, and every
    /// sub-machine's. This is the seam for machines that own deadlines: each one keeps
    /// them in a [`TimerTable`] (or computes its next one), contributes its
    /// `poll_timeout()` here and is handed the time in [`Session::handle_timeouts`].
    fn poll_timeout(&self) -> Instant {
        let mut next = self.timers.next();
        for t in self.torrents.values() {
            next = earliest(next, t.poll_timeout());
        }
        next = earliest(next, self.sh.udp_trackers.poll_timeout());
        next = earliest(next, self.dht_poll_timeout());
        next = earliest(next, self.sh.transports.poll_timeout());
        next.unwrap_or(Instant::FAR_FUTURE)
    }

    // ---- mutators -----------------------------------------------------------------

    /// Adds a torrent and starts it: it hashes existing data first unless `options.have`
    /// says what is verified, then announces, dials and serves. Drain
    /// [`Session::poll_output`] afterwards. A torrent whose info hash is in the session
    /// already is refused ([`AddTorrentError::Duplicate`]) and the session is unchanged.
    pub fn add_torrent(
        &mut self,
        now: Instant,
        meta: Arc<Metainfo>,
        options: TorrentOptions,
    ) -> Result<TorrentId, AddTorrentError> {
        self.sh.now = now.max(self.sh.now);
        if self.by_hash.contains_key(&meta.info_hash) {
            return Err(AddTorrentError::Duplicate(meta.info_hash));
        }
        let id = TorrentId(self.sh.next_id());
        self.by_hash.insert(meta.info_hash, id);
        self.by_req2
            .insert(crate::mse::req2_hash(&meta.info_hash), meta.info_hash);
        let info_hash = meta.info_hash;
        let torrent = Torrent::new(&mut self.sh, id, meta, options);
        self.torrents.insert(id, torrent);
        self.dht_add(id, info_hash);
        self.after_input();
        Ok(id)
    }

    /// Adds a torrent from a magnet link and starts fetching its metadata (BEP 9): it
    /// announces to the link's trackers and dials its `x.pe` peers that are addresses
    /// (names are the driver's to resolve and give with [`Session::add_peers`]), and with
    /// the DHT on ([`Session::enable_dht`]) looks its info hash up there. Once the
    /// info dictionary is in, [`Event::MetadataReceived`] says so and the torrent waits
    /// for [`Session::resume_with_metadata`]. Drain [`Session::poll_output`] afterwards.
    pub fn add_magnet(
        &mut self,
        now: Instant,
        link: &crate::magnet::MagnetLink,
    ) -> Result<TorrentId, AddTorrentError> {
        self.sh.now = now.max(self.sh.now);
        if self.by_hash.contains_key(&link.info_hash) {
            return Err(AddTorrentError::Duplicate(link.info_hash));
        }
        let id = TorrentId(self.sh.next_id());
        let Some(mut torrent) = Torrent::new_magnet(&mut self.sh, id, link) else {
            return Err(AddTorrentError::NoMetadata(id));
        };
        let peers: Vec<SocketAddr> = link
            .peers
            .iter()
            .filter_map(|p| match p {
                crate::api::Target::Addr(a) => Some(*a),
                crate::api::Target::Host { .. } => None,
            })
            .collect();
        torrent.add_peers(&mut self.sh, &peers, true);
        self.by_hash.insert(link.info_hash, id);
        self.torrents.insert(id, torrent);
        self.dht_add(id, link.info_hash);
        self.after_input();
        Ok(id)
    }

    /// Turns a magnet link's torrent whose metadata is in ([`Event::MetadataReceived`])
    /// into a normal one, as [`Session::add_torrent`] would add it with `options`, under
    /// the same id: its connections are closed and the addresses it knew are dialled again.
    pub fn resume_with_metadata(
        &mut self,
        now: Instant,
        torrent: TorrentId,
        options: TorrentOptions,
    ) -> Result<(), AddTorrentError> {
        self.sh.now = now.max(self.sh.now);
        let Some(meta) = self
            .torrents
            .get(&torrent)
            .and_then(Torrent::received_metadata)
        else {
            return Err(AddTorrentError::NoMetadata(torrent));
        };
        let Some(mut old) = self.torrents.remove(&torrent) else {
            return Err(AddTorrentError::NoMetadata(torrent));
        };
        let mut peer_list = old.hand_over(&mut self.sh);
        if meta.info.private {
            // BEP 27: a private torrent uses its trackers' peers only.
            let forgotten = peer_list.forget_dht_peers();
            tracing::debug!(forgotten, "private metadata: peers from the DHT forgotten");
        }
        let mut t = Torrent::new(&mut self.sh, torrent, meta, options);
        t.adopt_peer_list(&mut self.sh, peer_list);
        self.torrents.insert(torrent, t);
        self.dht_resumed(torrent);
        self.after_input();
        Ok(())
    }

    /// Peers to connect to, besides the trackers'. `persistent` ones are redialled with
    /// back-off whenever they are not connected.
    pub fn add_peers(
        &mut self,
        now: Instant,
        torrent: TorrentId,
        peers: &[SocketAddr],
        persistent: bool,
    ) {
        self.sh.now = now.max(self.sh.now);
        if let Some(t) = self.torrents.get_mut(&torrent) {
            t.add_peers(&mut self.sh, peers, persistent);
        }
        self.after_input();
    }

    /// Starts a clean stop: `stopped` announces, then every connection closed, then
    /// `Event::Stopped` (within `tracker_timeout`, at most 10 s).
    pub fn shutdown(&mut self, now: Instant) {
        self.sh.now = now.max(self.sh.now);
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(now + self.sh.config.tracker_timeout.min(Duration::from_secs(10)));
        for conn in std::mem::take(&mut self.pending).into_keys() {
            self.sh.close(conn);
        }
        for t in self.torrents.values_mut() {
            t.stop(&mut self.sh);
        }
        self.after_input();
    }

    fn finish_stop(&mut self) {
        self.stopped = true;
        for t in self.torrents.values_mut() {
            t.close_all(&mut self.sh);
        }
        self.sh.event(Event::Stopped);
    }

    // ---- output -------------------------------------------------------------------

    /// The next thing to do: an action to carry out, an event to report, or, once there
    /// is nothing more, [`Output::Timeout`] with the instant at which to call
    /// `handle_input(Input::Timeout)` if no other input comes first
    /// ([`Instant::FAR_FUTURE`]: nothing is due, wait for inputs). Call it until it returns
    /// the timeout, after every input and mutator.
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.sh.pop_output() {
            return o;
        }
        if self.stopped {
            return Output::Timeout(Instant::FAR_FUTURE);
        }
        Output::Timeout(self.poll_timeout())
    }
}
