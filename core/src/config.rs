//! How a session is tuned: its limits and policies ([`Config`]), and how a torrent is
//! added to it ([`TorrentOptions`]).

use crate::bitfield::Bitfield;
use crate::mse::Policy;
use crate::picker::PickerConfig;
use crate::time::Duration;
use crate::transport::TransportPolicy;

/// Tunables. `Config::default()` is what the command-line clients use, but for
/// `encryption` and `fast_extension`, which they set.
#[derive(Debug, Clone)]
pub struct Config {
    /// First 8 bytes of our peer id (BEP 20 style); the other 12 come from the seed.
    /// The default, `-TQ0100-`, uses a client code that neither BEP 20's list nor
    /// libtorrent's table of clients gives to anyone (`TS` was TorrentStorm's).
    pub peer_id_prefix: [u8; 8],
    /// The TCP port we accept peers on, announced to trackers (0: not listening).
    pub listen_port: u16,
    /// Our client name and version, for trackers and the extension handshake.
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
    /// The most requests in flight to one peer.
    pub max_queue_depth: usize,
    /// How much transfer time the queue depth should cover at the peer's rate.
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
    /// Period of the sweep over a torrent's connections (connect, handshake, idle, message
    /// and request time-outs, keep-alives, queue depths, dialling more peers). It runs
    /// only while the torrent has connections; other deadlines are exact.
    pub tick: Duration,
    /// Piece picking policy.
    pub picker: PickerConfig,
    /// Upload limit for the whole session, in payload bytes per second (`None`: none).
    /// Blocks are paced by a token bucket and shared fairly among all peers.
    pub max_upload_rate: Option<u64>,
    /// Download limit for the whole session, in payload bytes per second (`None`: none).
    /// Requests are paced by a token bucket and shared fairly among all peers.
    pub max_download_rate: Option<u64>,
    /// Message stream encryption (MSE/PE) for peer connections, both ways: `Prefer` dials
    /// encrypted and falls back to plaintext, `Require` makes and accepts RC4-encrypted
    /// connections only, `Disable` plain BitTorrent only. The core's default is `Disable`
    /// (what an embedder gets without asking); the command line's is `Prefer`.
    pub encryption: Policy,
    /// Offer the Fast extension (BEP 6: have-all/none, reject-request, allowed-fast) in our
    /// handshake; it is used with peers that offer it too. Off by default in the core, on
    /// in the command-line client.
    pub fast_extension: bool,
    /// Largest n in a `udp://` tracker's `15 × 2^n` s retransmission delay (BEP 15: 8,
    /// about two hours before the request fails and the tier moves on to its next
    /// tracker; lower moves on sooner).
    pub udp_tracker_retransmits: u32,
    /// Peer exchange (BEP 11) with peers that offer it; never for private torrents.
    pub pex: bool,
    /// Which transports peer connections use ([`TransportPolicy`]): `Tcp` only (the
    /// core's default: no uTP socket at all), `Utp` only, or `Both` (uTP first, TCP when
    /// uTP gets no answer; the command line's default).
    pub transport: TransportPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            peer_id_prefix: *b"-TQ0100-",
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
            max_upload_rate: None,
            max_download_rate: None,
            encryption: Policy::Disable,
            fast_extension: false,
            udp_tracker_retransmits: crate::tracker::udp::MAX_RETRANSMITS,
            pex: true,
            transport: TransportPolicy::Tcp,
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
    /// With `seed`: stop seeding once the bytes uploaded in this session reach this
    /// multiple of the wanted size ([`Event::SeedingDone`](crate::Event::SeedingDone)).
    pub seed_ratio: Option<f64>,
    /// With `seed`: stop seeding after this long (counted from completion, or from the
    /// check for data that was complete), whichever goal comes first.
    pub seed_time: Option<Duration>,
    /// Download pieces in order, a window ahead of the first missing one, for a player
    /// reading the file as it arrives (see [`crate::picker`]); rarest first otherwise.
    pub sequential: bool,
    /// Fetch the first and last piece of each chosen file before the others (players
    /// read both ends first).
    pub first_last: bool,
}

/// How the session's DHT starts ([`Session::enable_dht`](crate::Session::enable_dht)).
#[derive(Debug, Clone, Default)]
pub struct DhtSettings {
    /// The node's settings.
    pub config: crate::dht::Config,
    /// Nodes to join the network through (none: the node starts from `state` and from the
    /// nodes peers tell of in BEP 5 `port` messages).
    pub bootstrap: Vec<std::net::SocketAddr>,
    /// What [`Session::dht_state`](crate::Session::dht_state) returned in an earlier run.
    pub state: Option<Vec<u8>>,
}
