//! The context every torrent acts through: the clock, configuration, randomness, the queue
//! of outputs, and the id allocators and routing table that go with it.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::api::{Action, Event, Output, Target};
use crate::bandwidth::Throttle;
use crate::config::Config;
use crate::conn::Links;
use crate::extension::ExtHandshake;
use crate::id::{ConnId, OpId, PeerId, TorrentId};
use crate::rng::Rng;
use crate::time::Instant;
use crate::tracker::TrackerIndex;
use crate::tracker::udp::UdpTrackerConfig;
use crate::tracker::udp_pool::UdpTrackerPool;
use crate::transport::{TransportPolicy, Transports};
use crate::utp::{UtpConfig, UtpSocket};
use crate::vec_map::VecMap;

/// Most DHT nodes learned from peers held between two inputs.
const MAX_DHT_NODES_QUEUED: usize = 64;

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
    /// The session's upload limit (`config.max_upload_rate`).
    pub up: Throttle,
    /// The session's download limit (`config.max_download_rate`).
    pub down: Throttle,
    /// How each peer connection's bytes are protected (MSE/PE): see [`crate::conn`].
    pub links: Links,
    /// Every `udp://` tracker the torrents announce to (answers go back through the
    /// session's datagram routing).
    pub udp_trackers: UdpTrackerPool<(TorrentId, TrackerIndex)>,
    /// The session runs a DHT: public torrents set the DHT bit and send `port` (BEP 5).
    pub dht: bool,
    /// DHT nodes learned from peers' `port` messages, for the session to hand to the DHT.
    pub dht_nodes: Vec<SocketAddr>,
    /// Which connections are uTP streams, and the uTP socket: see [`crate::transport`].
    pub transports: Transports,
}

impl Shared {
    /// The context of a new session: the peer id and tracker key are the first draws from
    /// the seeded generator.
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
        let config_retransmits = config.udp_tracker_retransmits;
        let max_peers = config.max_known_peers;
        // Only a session with uTP draws its socket's generator: a TCP-only session's
        // draws are what they always were.
        let utp = (config.transport != TransportPolicy::Tcp)
            .then(|| UtpSocket::new(UtpConfig::default(), rng.fork()));
        let transports = Transports::new(config.transport, utp);
        Shared {
            now,
            up: Throttle::new(config.max_upload_rate, now),
            down: Throttle::new(config.max_download_rate, now),
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
            links: Links::default(),
            udp_trackers: UdpTrackerPool::new(UdpTrackerConfig {
                max_retransmits: config_retransmits,
                max_peers,
                ..UdpTrackerConfig::default()
            }),
            dht: false,
            dht_nodes: Vec::new(),
            transports,
        }
    }

    /// The next output queued, if any.
    pub fn pop_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn action(&mut self, action: Action) {
        self.out.push_back(Output::Action(action));
    }

    pub fn event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    /// A new id: connections, disk operations and torrents share one counter.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Registers an inbound connection, not yet routed to a torrent.
    pub fn accept(&mut self) -> ConnId {
        let conn = ConnId(self.next_id());
        self.routes.insert(conn, Route::Pending);
        conn
    }

    /// What `conn` belongs to, if the session knows it.
    pub fn route(&mut self, conn: ConnId) -> Option<Route> {
        // `get_mut` for its lookup hint: the same connection's inputs come in runs.
        self.routes.get_mut(&conn).map(|r| *r)
    }

    /// The torrent a disk operation belongs to, forgetting the operation.
    pub fn take_op(&mut self, op: OpId) -> Option<TorrentId> {
        self.ops.remove(&op)
    }

    /// Asks for a connection that will belong to `route`: a peer at an address goes over
    /// uTP when the transport policy says so (see [`crate::transport`]), anything else
    /// over the driver's TCP.
    pub fn connect(&mut self, route: Route, target: Target) -> ConnId {
        let conn = ConnId(self.next_id());
        self.routes.insert(conn, route);
        if let (Route::Peer(_), Target::Addr(addr)) = (route, &target)
            && self.transports.dial(self.now, conn, *addr)
        {
            return conn;
        }
        self.action(Action::Connect { conn, target });
        conn
    }

    /// Sends peer wire bytes: encrypted when the connection's link says so.
    pub fn send(&mut self, conn: ConnId, data: Bytes) {
        let data = self.links.outgoing(conn, data);
        self.transmit(conn, data);
    }

    /// Sends bytes below the peer wire (the MSE handshake) as they are, keeping them out of
    /// the peer's flow control.
    pub fn send_below(&mut self, conn: ConnId, data: Bytes) {
        self.links.add_overhead(conn, data.len());
        self.transmit(conn, data);
    }

    /// Bytes onto the connection's transport: its uTP stream, or the driver's socket.
    fn transmit(&mut self, conn: ConnId, data: Bytes) {
        if let Some(data) = self.transports.send(self.now, conn, data) {
            self.action(Action::Send { conn, data });
        }
    }

    /// Closes a connection the driver (or the uTP socket) still has open.
    pub fn close(&mut self, conn: ConnId) {
        self.links.remove(conn);
        let utp = self.transports.close(self.now, conn);
        if self.routes.remove(&conn).is_some() && !utp {
            self.action(Action::Close { conn });
        }
    }

    /// Forgets a connection the driver (or the uTP socket) reported closed.
    pub fn forget(&mut self, conn: ConnId) {
        self.links.remove(conn);
        self.transports.forget(self.now, conn);
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

    /// A DHT node a peer told us of (BEP 5 `port`), kept for the session to hand over
    /// (bounded: the session drains them after every input).
    pub fn dht_node(&mut self, addr: SocketAddr) {
        if self.dht && self.dht_nodes.len() < MAX_DHT_NODES_QUEUED {
            self.dht_nodes.push(addr);
        }
    }

    /// A new disk operation id for `torrent`.
    pub fn op(&mut self, torrent: TorrentId) -> OpId {
        let op = OpId(self.next_id());
        self.ops.insert(op, torrent);
        op
    }
}
