//! The DHT's part in the peer wire (BEP 5): a torrent that may use the DHT sets the DHT bit
//! in its handshake, tells peers that set it too the UDP port of our node with a `port`
//! message, and passes on the nodes peers tell it of. A private torrent (BEP 27) does none
//! of this: its peers come only from its trackers.

use std::net::SocketAddr;

use super::{Torrent, send};
use crate::id::ConnId;
use crate::shared::Shared;
use crate::wire::{Handshake, Message};

impl Torrent {
    /// The torrent's info hash.
    pub(crate) fn info_hash(&self) -> crate::id::InfoHash {
        self.meta.info_hash
    }

    /// The session runs a DHT and this torrent may use it.
    pub(crate) fn uses_dht(&self, sh: &Shared) -> bool {
        sh.dht && !self.meta.info.private
    }

    /// After the handshakes: our DHT port to a peer that runs a DHT too.
    pub(super) fn send_dht_port(&mut self, sh: &mut Shared, conn: ConnId, theirs: &Handshake) {
        let port = sh.config.listen_port;
        if !self.uses_dht(sh) || port == 0 || !theirs.has(Handshake::DHT) {
            return;
        }
        if let Some(peer) = self.peers.get_mut(&conn) {
            send(sh, peer, &Message::Port(port));
        }
    }

    /// A peer's `port` message: its DHT node, at its address and that port.
    pub(super) fn dht_port_received(&mut self, sh: &mut Shared, conn: ConnId, port: u16) {
        if !self.uses_dht(sh) || port == 0 {
            return;
        }
        if let Some(peer) = self.peers.get(&conn) {
            sh.dht_node(SocketAddr::new(peer.addr.ip(), port));
        }
    }
}
