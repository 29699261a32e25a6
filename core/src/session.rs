//! The session: every torrent, connection and tracker of one client, driven by inputs.
//!
//! Methods come in this order: construction, getters, `handle_*`/`accept` (inputs),
//! mutators (`add_torrent`, `add_peers`, `shutdown`), then `poll_output`.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::api::{Action, Event, Input, Output, Target};
use crate::bitfield::Bitfield;
use crate::extension::ExtHandshake;
use crate::id::{ConnId, InfoHash, OpId, PeerId, TorrentId};
use crate::metainfo::Metainfo;
use crate::picker::PickerConfig;
use crate::rng::Rng;
use crate::time::{Duration, Instant};
use crate::torrent::Torrent;
use crate::vec_map::VecMap;
use crate::wire::Decoder;

/// Tunables. `Config::default()` is what the command-line clients use.
#[derive(Debug, Clone)]
pub struct Config {
    /// First 8 bytes of our peer id (BEP 20 style); the other 12 come from the seed.
    pub peer_id_prefix: [u8; 8],
    /// The TCP port we accept peers on, announced to trackers (0: not listening).
    pub listen_port: u16,
    pub user_agent: String,
    /// Connections per torrent.
    pub max_peers_per_torrent: usize,
    /// Connections in total (peers and trackers).
    pub max_connections: usize,
    /// Outbound connections being set up at once.
    pub max_half_open: usize,
    /// Upload slots for the choker (tit-for-tat), besides the optimistic one.
    pub unchoke_slots: usize,
    /// Whether the choker has an optimistic unchoke slot. `false` with `unchoke_slots: 0`
    /// makes a free rider that never uploads (the simulator's experiments use it).
    pub optimistic_unchoke: bool,
    /// A peer that delivers nothing for this long while we wait for blocks has its
    /// requests handed to others.
    pub request_timeout: Duration,
    /// A connection silent for this long is closed (keep-alives count).
    pub idle_timeout: Duration,
    /// Requests in flight per peer: the queue depth starts at `min_queue_depth` and grows
    /// with the peer's rate to cover `request_queue_time` of transfer, up to `max_queue_depth`.
    pub min_queue_depth: usize,
    pub max_queue_depth: usize,
    pub request_queue_time: Duration,
    /// A peer whose pieces failed the hash check this many times (as sole source) is banned.
    pub max_hash_failures: u32,
    /// Bytes of received blocks held in memory before their piece is complete, plus pieces
    /// handed to the disk and not yet written. Above it, no new requests are sent.
    pub max_buffered_bytes: usize,
    /// Requests a peer may have queued with us before it is disconnected.
    pub max_peer_requests: usize,
    /// Upload bytes in flight to one connection (sent to the runtime, not yet reported
    /// written by `Input::Sent`).
    pub max_send_buffer: usize,
    /// Peers from trackers kept per torrent.
    pub max_known_peers: usize,
    /// How long a tracker request may take.
    pub tracker_timeout: Duration,
    /// Time between housekeeping rounds (time-outs, rates, keep-alives).
    pub tick: Duration,
    /// Piece picking policy.
    pub picker: PickerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            peer_id_prefix: *b"-TS0100-",
            listen_port: 0,
            user_agent: "Tessera/0.1".into(),
            max_peers_per_torrent: 50,
            max_connections: 200,
            max_half_open: 16,
            unchoke_slots: 4,
            optimistic_unchoke: true,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(180),
            min_queue_depth: 16,
            max_queue_depth: 500,
            request_queue_time: Duration::from_secs(2),
            max_hash_failures: 2,
            max_buffered_bytes: 32 << 20,
            max_peer_requests: 500,
            max_send_buffer: 4 << 20,
            max_known_peers: 1000,
            tracker_timeout: Duration::from_secs(30),
            tick: Duration::from_millis(500),
            picker: PickerConfig::default(),
        }
    }
}

/// How to add a torrent.
#[derive(Debug, Clone, Default)]
pub struct TorrentOptions {
    /// Pieces already verified (from a resume file). `None`: hash whatever is on disk first.
    pub have: Option<Bitfield>,
    /// Keep serving after the download completes.
    pub seed: bool,
    /// Files to download, by index in the metainfo's file list (`--only`). `None`: all.
    /// Every piece holding a byte of a chosen file is fetched; bytes of other files are
    /// never written (the driver's storage skips them) and pieces that cross into other
    /// files are verified but never offered to peers, since we cannot serve all of them.
    pub files: Option<Vec<bool>>,
}

/// A snapshot for progress displays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TorrentStats {
    pub pieces_total: u32,
    pub pieces_have: u32,
    /// Bytes verified on disk.
    pub bytes_have: u64,
    pub total_len: u64,
    /// Payload bytes received from peers (including wasted ones).
    pub downloaded: u64,
    /// Payload bytes sent to peers.
    pub uploaded: u64,
    /// Payload bytes received that were thrown away (duplicates, failed pieces).
    pub wasted: u64,
    pub peers: usize,
    /// Bytes per second over the last few seconds.
    pub download_rate: f64,
    pub upload_rate: f64,
    pub checking: bool,
    pub complete: bool,
}

/// A snapshot of one peer connection (for displays and the simulator's invariants).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    pub conn: ConnId,
    pub addr: SocketAddr,
    pub id: Option<PeerId>,
    pub outbound: bool,
    /// Handshakes exchanged.
    pub active: bool,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    /// Pieces the peer has.
    pub pieces: u32,
    /// Our requests in flight to the peer, and the most we allow.
    pub requests_out: usize,
    pub queue_depth: usize,
    /// The peer's requests queued with us (not yet being read).
    pub requests_in: usize,
    /// Upload bytes handed to the driver and not yet reported sent.
    pub unsent: usize,
    pub download_rate: f64,
    pub upload_rate: f64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub snubbed: bool,
}

/// What a connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Inbound, handshake not yet received: no torrent known.
    Pending,
    Peer(TorrentId),
    Tracker(TorrentId),
}

/// Session state every torrent acts through: the clock, configuration, randomness, and the
/// queue of outputs with the id allocators and routing tables that go with it.
#[derive(Debug)]
pub(crate) struct Shared {
    pub now: Instant,
    pub config: Config,
    pub rng: Rng,
    pub peer_id: PeerId,
    /// The `key` tracker parameter: random per session.
    pub key: u32,
    out: VecDeque<Output>,
    /// Peer connections with control bytes queued since the last flush.
    pub queued: Vec<(TorrentId, ConnId)>,
    next_id: u64,
    routes: VecMap<ConnId, Route>,
    ops: VecMap<OpId, TorrentId>,
    /// Our BEP 10 handshake payload, encoded once (it depends on the config alone).
    ext_handshake: Bytes,
}

impl Shared {
    pub fn action(&mut self, action: Action) {
        self.out.push_back(Output::Action(action));
    }

    pub fn event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Asks the driver for a connection that will belong to `route`.
    pub fn connect(&mut self, route: Route, target: Target) -> ConnId {
        let conn = ConnId(self.next());
        self.routes.insert(conn, route);
        self.action(Action::Connect { conn, target });
        conn
    }

    pub fn send(&mut self, conn: ConnId, data: Bytes) {
        self.action(Action::Send { conn, data });
    }

    /// Closes a connection the driver still has open.
    pub fn close(&mut self, conn: ConnId) {
        if self.routes.remove(&conn).is_some() {
            self.action(Action::Close { conn });
        }
    }

    /// Forgets a connection the driver reported closed.
    pub fn forget(&mut self, conn: ConnId) {
        self.routes.remove(&conn);
    }

    pub fn reroute(&mut self, conn: ConnId, route: Route) {
        if let Some(r) = self.routes.get_mut(&conn) {
            *r = route;
        }
    }

    /// Open connections of every kind.
    pub fn connections(&self) -> usize {
        self.routes.len()
    }

    /// The payload of our BEP 10 extension handshake (encoded once: the config is fixed).
    pub fn ext_handshake(&self) -> Bytes {
        self.ext_handshake.clone()
    }

    /// A new disk operation id for `torrent`.
    pub fn op(&mut self, torrent: TorrentId) -> OpId {
        let op = OpId(self.next());
        self.ops.insert(op, torrent);
        op
    }
}

/// An inbound connection waiting for the remote handshake.
#[derive(Debug)]
struct Pending {
    addr: SocketAddr,
    decoder: Decoder,
    since: Instant,
}

/// How long an inbound connection may take to send its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct Session {
    sh: Shared,
    torrents: VecMap<TorrentId, Torrent>,
    by_hash: BTreeMap<InfoHash, TorrentId>,
    pending: BTreeMap<ConnId, Pending>,
    next_tick: Instant,
    /// Set by `shutdown`: when to give up waiting for `stopped` announces.
    stopping: Option<Instant>,
    stopped: bool,
}

impl Session {
    pub fn new(config: Config, now: Instant, seed: [u8; 32]) -> Self {
        let mut rng = Rng::from_seed(seed);
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(&config.peer_id_prefix);
        // The suffix is printable so that peer ids read well in other clients' logs.
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        for b in &mut id[8..] {
            *b = ALPHABET[rng.index(ALPHABET.len())];
        }
        let key = rng.next_u64() as u32;
        let ext_handshake = Bytes::from(
            ExtHandshake {
                reqq: u32::try_from(config.max_peer_requests).ok(),
                port: (config.listen_port != 0).then_some(config.listen_port),
                client: Some(config.user_agent.clone()),
            }
            .encode(),
        );
        Session {
            sh: Shared {
                now,
                config,
                rng,
                peer_id: PeerId(id),
                key,
                out: VecDeque::new(),
                queued: Vec::new(),
                next_id: 0,
                routes: VecMap::new(),
                ops: VecMap::new(),
                ext_handshake,
            },
            torrents: VecMap::new(),
            by_hash: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_tick: now,
            stopping: None,
            stopped: false,
        }
    }

    // ---- getters ------------------------------------------------------------------

    pub fn peer_id(&self) -> PeerId {
        self.sh.peer_id
    }

    pub fn config(&self) -> &Config {
        &self.sh.config
    }

    pub fn stats(&self, torrent: TorrentId) -> Option<TorrentStats> {
        self.torrents.get(&torrent).map(|t| t.stats(self.sh.now))
    }

    /// Every connection of a torrent to a peer.
    pub fn peers(&self, torrent: TorrentId) -> Vec<PeerInfo> {
        self.torrents
            .get(&torrent)
            .map(|t| t.peer_infos(self.sh.now))
            .unwrap_or_default()
    }

    /// The verified pieces of a torrent (for resume files).
    pub fn have(&self, torrent: TorrentId) -> Option<&Bitfield> {
        self.torrents.get(&torrent).map(Torrent::have)
    }

    // ---- inputs -------------------------------------------------------------------

    /// Feeds one input. Unknown connection or operation ids are ignored (the driver may
    /// race with a close the core asked for).
    pub fn handle_input(&mut self, input: Input) {
        let now = input.now().max(self.sh.now);
        self.sh.now = now;
        match input {
            Input::Timeout { .. } => {}
            Input::Connected { conn, .. } => {
                self.with_torrent(conn, |t, sh| t.on_connected(sh, conn))
            }
            Input::Received { conn, data, .. } => {
                if self.pending.contains_key(&conn) {
                    self.on_pending_data(conn, data);
                } else {
                    self.with_torrent(conn, |t, sh| t.on_data(sh, conn, data));
                }
            }
            Input::Sent { conn, bytes, .. } => {
                self.with_torrent(conn, |t, sh| t.on_sent(sh, conn, bytes))
            }
            Input::Closed { conn, error, .. } => {
                if self.pending.remove(&conn).is_some() {
                    self.sh.forget(conn);
                } else {
                    let reason = error.unwrap_or_else(|| "closed by remote".into());
                    self.with_torrent(conn, |t, sh| t.on_closed(sh, conn, reason));
                }
            }
            Input::Disk { op, result, .. } => {
                if let Some(torrent) = self.sh.ops.remove(&op)
                    && let Some(t) = self.torrents.get_mut(&torrent)
                {
                    t.on_disk(&mut self.sh, op, result);
                }
            }
            Input::Datagram { .. } => {}
        }
        self.after_input();
    }

    /// A peer connected to our listening socket. `None`: refuse it (limits); close it.
    pub fn accept(&mut self, now: Instant, remote: SocketAddr) -> Option<ConnId> {
        self.sh.now = now.max(self.sh.now);
        if self.stopping.is_some() || self.sh.connections() >= self.sh.config.max_connections {
            return None;
        }
        let conn = ConnId(self.sh.next());
        self.sh.routes.insert(conn, Route::Pending);
        self.pending.insert(
            conn,
            Pending {
                addr: remote,
                decoder: Decoder::new(),
                since: now,
            },
        );
        Some(conn)
    }

    /// Runs `f` on the torrent `conn` belongs to, if any.
    fn with_torrent(&mut self, conn: ConnId, f: impl FnOnce(&mut Torrent, &mut Shared)) {
        // `get_mut` for its lookup hint: the same connection's inputs come in runs.
        let id = match self.sh.routes.get_mut(&conn) {
            Some(Route::Peer(t) | Route::Tracker(t)) => *t,
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

    fn after_input(&mut self) {
        let now = self.sh.now;
        if now >= self.next_tick {
            self.next_tick = now + self.sh.config.tick;
            self.tick();
        }
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
        if let Some(deadline) = self.stopping
            && !self.stopped
            && (now >= deadline || self.torrents.values().all(Torrent::stop_done))
        {
            self.finish_stop();
        }
    }

    fn tick(&mut self) {
        let now = self.sh.now;
        let expired: Vec<ConnId> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.since) > HANDSHAKE_TIMEOUT)
            .map(|(c, _)| *c)
            .collect();
        for conn in expired {
            self.pending.remove(&conn);
            self.sh.close(conn);
        }
        for t in self.torrents.values_mut() {
            t.tick(&mut self.sh);
        }
    }

    // ---- mutators -----------------------------------------------------------------

    pub fn add_torrent(
        &mut self,
        now: Instant,
        meta: Arc<Metainfo>,
        options: TorrentOptions,
    ) -> TorrentId {
        self.sh.now = now.max(self.sh.now);
        let id = TorrentId(self.sh.next());
        self.by_hash.insert(meta.info_hash, id);
        let torrent = Torrent::new(&mut self.sh, id, meta, options);
        self.torrents.insert(id, torrent);
        self.next_tick = self.sh.now;
        self.after_input();
        id
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

    /// The next thing to do. Call until it returns `Output::Timeout`.
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.sh.out.pop_front() {
            return o;
        }
        if self.stopped {
            return Output::Timeout(Instant::FAR_FUTURE);
        }
        let mut deadline = self.next_tick;
        if let Some(s) = self.stopping {
            deadline = deadline.min(s);
        }
        Output::Timeout(deadline)
    }
}
