//! What the connection layer below the peer wire (MSE, see `session/handshake.rs`) asks of
//! a torrent: the handshake to carry in an encrypted handshake's initial payload, the news
//! that it went out, a fresh connection to the same address when a handshake failed, and
//! the end of a peer that never got going.

use std::net::SocketAddr;

use super::Torrent;
use crate::api::CloseReason;
use crate::id::ConnId;
use crate::peer::Phase;
use crate::shared::Shared;
use crate::wire::HANDSHAKE_LEN;

impl Torrent {
    /// For an outbound connection that just came up: the peer's address and our BitTorrent
    /// handshake (`None`: no such peer waiting to connect).
    pub fn dial_handshake(
        &self,
        sh: &Shared,
        conn: ConnId,
    ) -> Option<(SocketAddr, [u8; HANDSHAKE_LEN])> {
        let peer = self.peers.get(&conn)?;
        (peer.phase == Phase::Connecting).then(|| (peer.addr, self.our_handshake(sh)))
    }

    /// Our handshake went out below the peer wire (in an MSE handshake's initial payload):
    /// the connection now waits for the peer's, as after `on_connected`.
    pub fn handshake_sent(&mut self, sh: &mut Shared, conn: ConnId) {
        if let Some(peer) = self.peers.get_mut(&conn)
            && peer.phase == Phase::Connecting
        {
            peer.phase = Phase::Handshaking;
            peer.connected_at = sh.now;
        }
    }

    /// Replaces the connecting peer `old` (its connection is gone) by a new connection to
    /// the same address. `None`: not redialled (no such peer, or the torrent is stopping).
    pub fn redial(&mut self, sh: &mut Shared, old: ConnId) -> Option<ConnId> {
        if self
            .peers
            .get(&old)
            .is_none_or(|p| p.phase != Phase::Connecting)
        {
            return None;
        }
        if self.stopping {
            self.peer_gone(sh, old, CloseReason::ShuttingDown);
            return None;
        }
        let addr = self.peers.remove(&old)?.addr;
        Some(self.dial(sh, addr))
    }

    /// A peer whose connection is gone (closed by either side) for `reason`.
    pub fn peer_gone(&mut self, sh: &mut Shared, conn: ConnId, reason: CloseReason) {
        sh.forget(conn);
        self.drop_peer(sh, conn, reason);
    }
}
