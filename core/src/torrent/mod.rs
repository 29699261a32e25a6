//! One torrent: its peers, pieces, trackers and the disk work for them.
//!
//! Split by concern: this file holds the peer lifecycle and message dispatch;
//! `download` requests blocks and assembles pieces, `upload` serves requests and decides
//! whom to unchoke, `announce` talks to trackers, `check` hashes existing data.

mod announce;
mod check;
mod dht_port;
mod download;
mod link;
mod messages;
pub(crate) mod metadata_phase;
mod pex;
mod seed_goal;
mod smart_ban;
mod timers;
mod udp_announce;
mod upload;

pub(crate) use timers::TorrentTimer;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::api::{CloseReason, DiskResult, Event, PeerInfo, PeerRequests, Target, TorrentStats};
use crate::bitfield::Bitfield;
use crate::config::TorrentOptions;
use crate::extension;
use crate::id::{ConnId, OpId, PeerId, TorrentId};
use crate::layout::Layout;
use crate::metainfo::Metainfo;
use crate::peer::{Peer, Phase};
use crate::peer_list::PeerList;
use crate::picker::{Picker, Strategy};
use crate::rate::Rate;
use crate::shared::{Route, Shared};
use crate::time::{Duration, Instant};
use crate::timer::{Timer, TimerTable};
use crate::tracker::Announcer;
use crate::vec_map::VecMap;
use crate::wire::{Decoder, Handshake, Message};

/// While seeding, how often an address from the trackers may be dialled.
const SEED_DIAL_INTERVAL: Duration = Duration::from_secs(1);
/// Blocks nobody asked for (and that we do not want) tolerated from one peer.
const MAX_UNREQUESTED: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hashing existing data before anything else.
    Checking,
    Downloading,
    /// Every wanted piece verified.
    Seeding,
    /// A disk error stopped the torrent.
    Failed,
    /// Added from a magnet link, fetching its info dictionary: no pieces are exchanged.
    Metadata,
}

/// A disk operation in flight and what it is for.
#[derive(Debug)]
enum Op {
    Check {
        piece: u32,
    },
    /// A whole piece, hashed then written by the driver.
    WritePiece {
        piece: u32,
        bytes: usize,
        sources: Vec<Source>,
    },
    /// Blocks of an incomplete piece moved out of memory, unverified.
    Spill {
        piece: u32,
        bytes: usize,
    },
    /// The final hash check of a piece that was (partly) spilled.
    VerifySpilled {
        piece: u32,
        sources: Vec<Source>,
    },
    Read {
        key: upload::ChunkKey,
    },
}

/// A peer that contributed blocks to a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Source {
    conn: ConnId,
    addr: SocketAddr,
    id: Option<PeerId>,
}

#[derive(Debug)]
pub(crate) struct Torrent {
    pub id: TorrentId,
    meta: Arc<Metainfo>,
    layout: Layout,
    state: State,
    seed_after: bool,
    picker: Picker,
    /// Wanted pieces that cross into files not chosen for download: verified, never offered.
    hidden: Bitfield,
    peers: VecMap<ConnId, Box<Peer>>,
    peer_list: PeerList,
    announcer: Announcer,
    trackers: BTreeMap<ConnId, announce::Request>,
    ops: VecMap<OpId, Op>,
    download: download::Assembly,
    upload: upload::Serving,
    check: Option<check::Check>,
    downloaded: u64,
    uploaded: u64,
    wasted: u64,
    down_rate: Rate,
    up_rate: Rate,
    stopping: bool,
    /// While seeding, no tracker address is dialled before this.
    next_seed_dial: Instant,
    /// `connect_peers` held back an address that was due: not looked at again before this.
    dial_retry: Instant,
    /// Buffers reused from one input to the next.
    scratch: Scratch,
    /// When the torrent next needs the time: see `timers.rs`.
    timers: TimerTable<TorrentTimer, { TorrentTimer::ALL.len() }>,
    /// `seed_ratio` and `seed_time`: see `seed_goal.rs`.
    goal: seed_goal::SeedGoals,
    /// Bytes of the wanted pieces, once a seeding goal needed them.
    wanted_bytes: Option<u64>,
    /// Each peer's extension handshake and our extension state with it.
    ext: BTreeMap<ConnId, metadata_phase::PeerExt>,
    /// Our addresses as peers see us (their `yourip`, with our port): never dialled or
    /// learned through PEX.
    own_addrs: Vec<SocketAddr>,
    /// Added from a magnet link: the metadata exchange, until the torrent is replaced.
    magnet: Option<Box<metadata_phase::MetadataPhase>>,
}

/// Buffers kept to save an allocation per use; empty between uses.
#[derive(Debug, Default)]
struct Scratch {
    /// Blocks just picked for a peer.
    blocks: Vec<crate::layout::BlockRef>,
    /// Connection ids to walk while the torrent changes.
    conns: Vec<ConnId>,
}

impl Torrent {
    pub fn new(
        sh: &mut Shared,
        id: TorrentId,
        meta: Arc<Metainfo>,
        options: TorrentOptions,
    ) -> Self {
        let layout = meta.layout().clone();
        let n = layout.num_pieces() as usize;
        let (wanted, hidden) = selection(&meta, options.files.as_deref());
        let have = options
            .have
            .as_ref()
            .filter(|h| h.len() == n)
            .cloned()
            .unwrap_or_else(|| Bitfield::new(n));
        let mut picker_rng = sh.rng.fork();
        let mut picker_config = sh.config.picker.clone();
        if options.sequential {
            picker_config.strategy = Strategy::streaming(layout.nominal_piece_len());
        }
        let mut picker = Picker::new(&layout, &have, &wanted, picker_config, &mut picker_rng);
        if options.first_last {
            picker.set_urgent(ends_of_files(&meta, options.files.as_deref()));
        }
        let announcer = Announcer::with_protocols(
            &meta.trackers,
            &mut sh.rng,
            crate::tracker::Protocols { udp: true },
        );
        for (url, reason) in announcer.unsupported() {
            sh.event(Event::Tracker {
                torrent: id,
                url: url.clone(),
                event: crate::api::TrackerEvent::Error(reason.clone()),
            });
        }
        let now = sh.now;
        let mut t = Torrent {
            id,
            layout,
            state: State::Downloading,
            seed_after: options.seed,
            picker,
            hidden,
            peers: VecMap::new(),
            peer_list: PeerList::new(sh.config.max_known_peers),
            announcer,
            trackers: BTreeMap::new(),
            ops: VecMap::new(),
            download: download::Assembly::default(),
            upload: upload::Serving::new(now, sh.config.unchoke_slots),
            check: None,
            downloaded: 0,
            uploaded: 0,
            wasted: 0,
            down_rate: Rate::new(now),
            up_rate: Rate::new(now),
            stopping: false,
            next_seed_dial: now,
            dial_retry: now,
            scratch: Scratch::default(),
            timers: TimerTable::default(),
            goal: seed_goal::SeedGoals::new(options.seed_ratio, options.seed_time),
            wanted_bytes: None,
            ext: BTreeMap::new(),
            own_addrs: Vec::new(),
            magnet: None,
            meta,
        };
        if options.have.is_none() {
            t.start_check(sh, wanted);
        } else {
            t.after_check(sh);
        }
        t
    }

    /// A torrent from a magnet link: it finds peers and fetches its metadata (see
    /// `metadata_phase`). `None` only if the stand-in metainfo cannot be built.
    pub fn new_magnet(
        sh: &mut Shared,
        id: TorrentId,
        link: &crate::magnet::MagnetLink,
    ) -> Option<Self> {
        let meta = Arc::new(metadata_phase::placeholder(link)?);
        let options = TorrentOptions {
            have: Some(Bitfield::new(1)),
            seed: false,
            files: None,
            ..TorrentOptions::default()
        };
        let mut t = Torrent::new(sh, id, meta, options);
        t.state = State::Metadata;
        t.magnet = Some(Box::new(metadata_phase::MetadataPhase::new(link)));
        Some(t)
    }

    // ---- getters ------------------------------------------------------------------

    pub fn have(&self) -> &Bitfield {
        self.picker.have()
    }

    /// Whether we may offer `piece` to peers.
    fn offers(&self, piece: u32) -> bool {
        self.picker.have().get(piece as usize) && !self.hidden.get(piece as usize)
    }

    /// The pieces we offer to peers (our `bitfield`).
    fn offered(&self) -> Bitfield {
        let mut b = self.picker.have().clone();
        for p in self.hidden.ones() {
            b.clear(p);
        }
        b
    }

    pub fn stats(&self, now: Instant) -> TorrentStats {
        let have = self.picker.have();
        let bytes_have = have
            .ones()
            .map(|p| u64::from(self.layout.piece_len(p as u32)))
            .sum();
        TorrentStats {
            pieces_total: self.layout.num_pieces(),
            pieces_have: have.count_ones() as u32,
            bytes_have,
            total_len: self.layout.total_len(),
            downloaded: self.downloaded,
            uploaded: self.uploaded,
            wasted: self.wasted,
            peers: self.peers.values().filter(|p| p.is_active()).count(),
            download_rate: self.down_rate.get(now),
            upload_rate: self.up_rate.get(now),
            checking: self.state == State::Checking,
            complete: self.picker.is_complete(),
        }
    }

    /// Every peer connection's request counts, in connection order.
    pub fn peer_requests(&self) -> impl Iterator<Item = PeerRequests> + '_ {
        self.peers.iter().map(|(&conn, p)| PeerRequests {
            conn,
            addr: p.addr,
            requests_out: p.requests.len(),
            queue_depth: p.queue_depth,
            requests_in: p.their_requests.len(),
        })
    }

    pub fn peer_infos(&self, now: Instant) -> Vec<PeerInfo> {
        self.peers
            .iter()
            .map(|(&conn, p)| PeerInfo {
                conn,
                addr: p.addr,
                id: p.id,
                outbound: p.outbound,
                active: p.is_active(),
                am_choking: p.am_choking,
                am_interested: p.am_interested,
                peer_choking: p.peer_choking,
                peer_interested: p.peer_interested,
                pieces: p.has.count_ones() as u32,
                requests_out: p.requests.len(),
                queue_depth: p.queue_depth,
                requests_in: p.their_requests.len(),
                unsent: p.unsent(),
                download_rate: p.download.get(now),
                upload_rate: p.upload.get(now),
                downloaded: p.download.total(),
                uploaded: p.upload.total(),
                snubbed: p.snubbed,
                encryption: crate::mse::Encryption::None,
                transport: crate::transport::Transport::Tcp,
            })
            .collect()
    }

    /// Bytes of wanted pieces not yet verified (the tracker's `left`).
    fn left(&self) -> u64 {
        (0..self.layout.num_pieces())
            .filter(|&p| self.picker.is_wanted(p) && !self.picker.have().get(p as usize))
            .map(|p| u64::from(self.layout.piece_len(p)))
            .sum()
    }

    fn downloading(&self) -> bool {
        self.state == State::Downloading && !self.stopping
    }

    /// True once shutdown's `stopped` announces are done.
    pub fn stop_done(&self) -> bool {
        self.trackers.is_empty()
    }

    // ---- connection events --------------------------------------------------------

    pub fn on_connected(&mut self, sh: &mut Shared, conn: ConnId) {
        if self.trackers.contains_key(&conn) {
            self.tracker_connected(sh, conn);
            return;
        }
        let hs = self.our_handshake(sh);
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if peer.phase != Phase::Connecting {
            return;
        }
        peer.phase = Phase::Handshaking;
        peer.connected_at = sh.now;
        send_raw(sh, peer, &hs);
    }

    fn our_handshake(&self, sh: &Shared) -> [u8; crate::wire::HANDSHAKE_LEN] {
        let mut hs = Handshake {
            reserved: [0; 8],
            info_hash: self.meta.info_hash,
            peer_id: sh.peer_id,
        };
        hs.set(Handshake::EXTENSION_PROTOCOL);
        if sh.config.fast_extension {
            hs.set(Handshake::FAST);
        }
        if self.uses_dht(sh) {
            hs.set(Handshake::DHT);
        }
        hs.encode()
    }

    /// An inbound connection whose handshake named this torrent.
    pub fn adopt_inbound(
        &mut self,
        sh: &mut Shared,
        conn: ConnId,
        addr: SocketAddr,
        decoder: Decoder,
        hs: Handshake,
    ) {
        // While checking we do not know what we have, so we could not send a bitfield:
        // the peer is turned away and comes back later.
        if self.stopping
            || self.state == State::Checking
            || self.peers.len() >= sh.config.max_peers_per_torrent
            || self.peer_list.is_banned(&addr)
        {
            sh.close(conn);
            return;
        }
        let mut peer = Peer::new(
            sh.now,
            (self.id, conn),
            addr,
            false,
            self.layout.num_pieces(),
            sh.config.min_queue_depth,
        );
        peer.decoder = decoder;
        let ours = self.our_handshake(sh);
        send_raw(sh, &mut peer, &ours);
        self.peers.insert(conn, Box::new(peer));
        if self.on_handshake(sh, conn, hs) {
            self.process(sh, conn);
        }
    }

    pub fn on_data(&mut self, sh: &mut Shared, conn: ConnId, data: Bytes) {
        if let Some(req) = self.trackers.get_mut(&conn) {
            let done = req.parser.feed(&data);
            self.tracker_progress(sh, conn, done);
            return;
        }
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        peer.last_recv = sh.now;
        peer.decoder.feed(data);
        if peer.phase == Phase::Handshaking {
            match peer.decoder.handshake() {
                Ok(None) => return,
                Ok(Some(hs)) => {
                    if !self.on_handshake(sh, conn, hs) {
                        return;
                    }
                }
                Err(e) => {
                    self.close_peer(sh, conn, CloseReason::BadHandshake(e), true);
                    return;
                }
            }
        }
        self.process(sh, conn);
    }

    pub fn on_sent(&mut self, sh: &mut Shared, conn: ConnId, bytes: usize) {
        if let Some(peer) = self.peers.get_mut(&conn) {
            peer.on_sent(sh.now, bytes);
            self.serve(sh, conn);
        }
    }

    /// The driver reported `conn` gone, with its error if it gave one.
    pub fn on_closed(&mut self, sh: &mut Shared, conn: ConnId, error: Option<String>) {
        let reason = CloseReason::Remote(error);
        sh.forget(conn);
        if self.trackers.contains_key(&conn) {
            self.tracker_closed(sh, conn, reason.to_string());
        } else if self.peers.contains_key(&conn) {
            self.drop_peer(sh, conn, reason);
        }
    }

    pub fn on_disk(&mut self, sh: &mut Shared, op: OpId, result: DiskResult) {
        let Some(kind) = self.ops.remove(&op) else {
            return;
        };
        match kind {
            Op::Check { piece } => self.check_done(sh, piece, result),
            Op::WritePiece {
                piece,
                bytes,
                sources,
            } => {
                self.download.disk_bytes -= bytes;
                self.piece_written(sh, piece, result, sources);
            }
            Op::Spill { piece, bytes } => {
                self.download.disk_bytes -= bytes;
                self.spill_done(sh, piece, result);
            }
            Op::VerifySpilled { piece, sources } => self.piece_written(sh, piece, result, sources),
            Op::Read { key } => self.read_done(sh, key, result),
        }
    }

    /// Checks the remote handshake; false when the connection was closed.
    fn on_handshake(&mut self, sh: &mut Shared, conn: ConnId, hs: Handshake) -> bool {
        let Some(peer) = self.peers.get(&conn) else {
            return false;
        };
        let addr = peer.addr;
        let outbound = peer.outbound;
        if hs.info_hash != self.meta.info_hash {
            self.close_peer(sh, conn, CloseReason::OtherTorrent, true);
            return false;
        }
        if hs.peer_id == sh.peer_id {
            if outbound {
                self.peer_list.mark_self(addr);
                self.close_peer(sh, conn, CloseReason::Ourselves, false);
            } else if let Some(peer) = self.peers.get_mut(&conn) {
                peer.phase = Phase::Ourselves;
            }
            return false;
        }
        if self.download.is_banned(&hs.peer_id) {
            self.close_peer(sh, conn, CloseReason::Banned, false);
            return false;
        }
        if self
            .peers
            .iter()
            .any(|(c, p)| *c != conn && p.id == Some(hs.peer_id))
        {
            self.close_peer(sh, conn, CloseReason::AlreadyConnected, false);
            return false;
        }
        let Some(peer) = self.peers.get_mut(&conn) else {
            return false;
        };
        peer.id = Some(hs.peer_id);
        peer.phase = Phase::Active;
        if self.state != State::Metadata {
            peer.decoder.set_num_pieces(self.layout.num_pieces());
        }
        peer.last_block_at = sh.now;
        let fast = sh.config.fast_extension && hs.has(Handshake::FAST);
        let offered = self.offered();
        let allowed = if fast {
            crate::fast::allowed_fast_set(
                addr.ip(),
                &self.meta.info_hash,
                self.layout.num_pieces(),
                crate::fast::ALLOWED_FAST_COUNT,
            )
        } else {
            Vec::new()
        };
        let Some(peer) = self.peers.get_mut(&conn) else {
            return false;
        };
        peer.fast = fast;
        if fast {
            // BEP 6: have_all / have_none where they fit, else the bitfield; then the
            // pieces of its allowed-fast set that we can serve.
            send(sh, peer, &crate::fast::availability_message(&offered, true));
            for &piece in &allowed {
                if offered.get(piece as usize) {
                    send(sh, peer, &Message::AllowedFast(piece));
                }
            }
            peer.allowed_out = allowed;
        } else if offered.count_ones() > 0 {
            send(
                sh,
                peer,
                &Message::Bitfield(Bytes::from(offered.to_bytes())),
            );
        }
        if hs.has(Handshake::EXTENSION_PROTOCOL) {
            let payload = self.our_ext_handshake(sh);
            let Some(peer) = self.peers.get_mut(&conn) else {
                return false;
            };
            send(
                sh,
                peer,
                &Message::Extended {
                    id: extension::HANDSHAKE_ID,
                    payload,
                },
            );
        }
        self.send_dht_port(sh, conn, &hs);
        self.peer_list.connected(addr);
        sh.event(Event::PeerConnected {
            torrent: self.id,
            addr,
            id: hs.peer_id,
        });
        true
    }

    // ---- closing ------------------------------------------------------------------

    /// Closes a peer connection we decided to end. `failed` marks a connection that never
    /// got going (for dial back-off).
    fn close_peer(&mut self, sh: &mut Shared, conn: ConnId, reason: CloseReason, failed: bool) {
        sh.close(conn);
        self.remove_peer(sh, conn, reason, failed);
    }

    /// The driver reported the peer's connection gone.
    fn drop_peer(&mut self, sh: &mut Shared, conn: ConnId, reason: CloseReason) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        let failed = !peer.is_active();
        let reason = if peer.phase == Phase::Ourselves {
            CloseReason::Ourselves
        } else {
            reason
        };
        self.remove_peer(sh, conn, reason, failed);
    }

    fn remove_peer(&mut self, sh: &mut Shared, conn: ConnId, reason: CloseReason, failed: bool) {
        let Some(peer) = self.peers.remove(&conn) else {
            return;
        };
        self.upload.slots.remove(peer.slot_state());
        for r in &peer.requests {
            self.picker.release(r.block, conn);
        }
        self.picker.remove_availability(&peer.has);
        self.upload.forget_peer(conn);
        self.upload.choker.forget(conn);
        self.forget_ext(sh, conn);
        self.peer_list.disconnected(sh.now, peer.addr, failed);
        tracing::debug!(addr = %peer.addr, %reason, "peer closed");
        sh.event(Event::PeerClosed {
            torrent: Some(self.id),
            addr: peer.addr,
            reason,
        });
        if !peer.requests.is_empty() {
            self.request_all(sh);
        }
        if !peer.am_choking || peer.peer_interested {
            self.interest_changed();
        }
    }

    /// Closes every connection (end of shutdown).
    pub fn close_all(&mut self, sh: &mut Shared) {
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for conn in conns {
            self.close_peer(sh, conn, CloseReason::ShuttingDown, false);
        }
        let trackers: Vec<ConnId> = self.trackers.keys().copied().collect();
        for conn in trackers {
            self.trackers.remove(&conn);
            sh.close(conn);
        }
    }

    // ---- mutators -----------------------------------------------------------------

    pub fn add_peers(&mut self, sh: &mut Shared, peers: &[SocketAddr], persistent: bool) {
        for &addr in peers {
            self.peer_list.add(sh.now, addr, persistent);
        }
        self.connect_peers(sh);
    }

    /// Peers a DHT lookup found (forgotten again if the torrent's metadata, once it comes
    /// from a magnet link's peers, says it is private).
    pub fn add_dht_peers(&mut self, sh: &mut Shared, peers: &[SocketAddr]) {
        for &addr in peers {
            self.peer_list.add_from_dht(sh.now, addr);
        }
        self.connect_peers(sh);
    }

    /// Dials known peers while the limits allow.
    fn connect_peers(&mut self, sh: &mut Shared) {
        if self.stopping || self.state == State::Failed || self.state == State::Checking {
            return;
        }
        if self.picker.is_complete() && !self.seed_after {
            return;
        }
        let seeding = self.picker.is_complete();
        loop {
            let half_open = self.peers.values().filter(|p| !p.is_active()).count();
            if self.peers.len() >= sh.config.max_peers_per_torrent
                || half_open >= sh.config.max_half_open
                || sh.connections() >= sh.config.max_connections
            {
                // Held back by a limit: look again a sweep later (with connections, the
                // sweep comes anyway).
                self.dial_retry = sh.now + sh.config.tick;
                return;
            }
            // A seed waits for leechers to come; it dials the peers it was told to keep
            // (`--peer`) and otherwise one address a second, so that a crowd finishing
            // together does not dial each other in a storm only to find everyone seeding.
            let persistent_only = seeding && sh.now < self.next_seed_dial;
            let Some((addr, persistent)) =
                self.peer_list
                    .next_matching(sh.now, seeding, persistent_only)
            else {
                if persistent_only {
                    self.dial_retry = self.next_seed_dial;
                }
                return;
            };
            if seeding && !persistent {
                self.next_seed_dial = sh.now + SEED_DIAL_INTERVAL;
            }
            self.dial(sh, addr);
        }
    }

    /// Dials `addr`: a new outbound connection and its peer, not yet handshaken.
    fn dial(&mut self, sh: &mut Shared, addr: SocketAddr) -> ConnId {
        let conn = sh.connect(Route::Peer(self.id), Target::Addr(addr));
        let peer = Peer::new(
            sh.now,
            (self.id, conn),
            addr,
            true,
            self.layout.num_pieces(),
            sh.config.min_queue_depth,
        );
        self.peers.insert(conn, Box::new(peer));
        conn
    }

    /// Shutdown: stop requesting, send `stopped` announces. A torrent that stopped already
    /// (its seeding goal) keeps the announces it has on their way.
    pub fn stop(&mut self, sh: &mut Shared) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        let conns: Vec<ConnId> = self.trackers.keys().copied().collect();
        for conn in conns {
            self.trackers.remove(&conn);
            sh.close(conn);
        }
        self.cancel_udp_announces(sh);
        let jobs = self.announcer.stop();
        for job in jobs {
            self.start_announce(sh, job);
        }
    }

    // ---- output -------------------------------------------------------------------

    /// Flushes queued control messages to the driver.
    pub fn flush(&mut self, sh: &mut Shared, conn: ConnId) {
        if let Some(peer) = self.peers.get_mut(&conn) {
            Torrent::flush_peer(sh, conn, peer);
        }
    }

    /// Work deferred to the end of an input: at most one choker re-run however many
    /// peers changed their interest.
    pub fn after_input(&mut self, sh: &mut Shared) {
        if std::mem::take(&mut self.upload.rechoke_pending) {
            self.maybe_rechoke(sh);
        }
        self.check_seed_goal(sh);
    }

    /// Flushes one peer's control bytes, so that a payload can follow them in order.
    fn flush_peer(sh: &mut Shared, conn: ConnId, peer: &mut Peer) {
        if let Some(bytes) = peer.take_out() {
            sh.send(conn, bytes);
        }
    }
}

/// Queues a control message for `peer`, listing the connection for the flush at the end of
/// the input.
fn send(sh: &mut Shared, peer: &mut Peer, msg: &Message) {
    if peer.send(sh.now, msg) {
        sh.queued.push((peer.torrent, peer.conn));
    }
}

/// Chokes `peer` (see [`Peer::choke`]), listing the connection for the flush like [`send`].
fn choke(sh: &mut Shared, peer: &mut Peer) {
    if peer.choke(sh.now) {
        sh.queued.push((peer.torrent, peer.conn));
    }
}

/// Queues raw bytes (a handshake) for `peer`, like [`send`].
fn send_raw(sh: &mut Shared, peer: &mut Peer, bytes: &[u8]) {
    if peer.send_raw(sh.now, bytes) {
        sh.queued.push((peer.torrent, peer.conn));
    }
}

/// The first and last piece of each chosen file (all files when `files` is `None`), for
/// `first_last`. Padding and empty files have none.
fn ends_of_files(meta: &Metainfo, files: Option<&[bool]>) -> Vec<u32> {
    let layout = meta.layout();
    let chosen = files.filter(|f| f.len() == meta.info.files.len());
    let mut ends = Vec::new();
    for (i, file) in meta.info.files.iter().enumerate() {
        if file.padding || chosen.is_some_and(|c| !c[i]) {
            continue;
        }
        let pieces = layout.file_pieces(i);
        if let Some(last) = pieces.end.checked_sub(1).filter(|_| !pieces.is_empty()) {
            ends.push(pieces.start);
            ends.push(last);
        }
    }
    ends
}

/// The pieces to fetch for a file selection, and those among them that cross into files
/// not chosen. Padding files count as neither: they are never written and read as zeros, so
/// a piece is fetched for the real files it holds, not for its padding.
fn selection(meta: &Metainfo, files: Option<&[bool]>) -> (Bitfield, Bitfield) {
    let layout = meta.layout();
    let n = layout.num_pieces() as usize;
    let Some(chosen) = files.filter(|f| f.len() == meta.info.files.len()) else {
        return (Bitfield::full(n), Bitfield::new(n));
    };
    let mut wanted = Bitfield::new(n);
    let mut other = Bitfield::new(n);
    for (i, file) in meta.info.files.iter().enumerate() {
        if file.padding {
            continue;
        }
        let target = if chosen[i] { &mut wanted } else { &mut other };
        for p in layout.file_pieces(i) {
            target.set(p as usize);
        }
    }
    let mut hidden = wanted.clone();
    for p in 0..n {
        if !other.get(p) {
            hidden.clear(p);
        }
    }
    (wanted, hidden)
}
