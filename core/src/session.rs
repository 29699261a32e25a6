//! The session: every torrent, connection and tracker of one client, driven by inputs.
//!
//! Methods come in this order: construction, getters, `handle_*`/`accept` (inputs),
//! mutators (`add_torrent`, `add_peers`, `shutdown`), then `poll_output`.
//!
//! SKELETON: signatures fixed, bodies being written.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::api::{Input, Output};
use crate::bitfield::Bitfield;
use crate::id::{ConnId, PeerId, TorrentId};
use crate::metainfo::Metainfo;
use crate::time::{Duration, Instant};

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
    /// Pieces to download (file selection). `None`: all.
    pub wanted: Option<Bitfield>,
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

#[derive(Debug)]
pub struct Session {}

impl Session {
    pub fn new(config: Config, now: Instant, seed: [u8; 32]) -> Self {
        let _ = (config, now, seed);
        todo!()
    }

    pub fn peer_id(&self) -> PeerId {
        todo!()
    }

    pub fn stats(&self, torrent: TorrentId) -> Option<TorrentStats> {
        let _ = torrent;
        todo!()
    }

    /// Feeds one input. Unknown connection or operation ids are ignored (the driver may
    /// race with a close the core asked for).
    pub fn handle_input(&mut self, input: Input) {
        let _ = input;
        todo!()
    }

    /// A peer connected to our listening socket. `None`: refuse it (limits); close it.
    pub fn accept(&mut self, now: Instant, remote: SocketAddr) -> Option<ConnId> {
        let _ = (now, remote);
        todo!()
    }

    pub fn add_torrent(
        &mut self,
        now: Instant,
        meta: Arc<Metainfo>,
        options: TorrentOptions,
    ) -> TorrentId {
        let _ = (now, meta, options);
        todo!()
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
        let _ = (now, torrent, peers, persistent);
        todo!()
    }

    /// Starts a clean stop: `stopped` announces, then every connection closed, then
    /// `Event::Stopped` (within `tracker_timeout`).
    pub fn shutdown(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// The next thing to do. Call until it returns `Output::Timeout`.
    pub fn poll_output(&mut self) -> Output {
        todo!()
    }
}
