//! Peer exchange (BEP 11) for one torrent: telling each peer that offers `ut_pex` which
//! peers we are connected to (at most once a minute, see [`PexPeer`]), and adding the
//! peers it tells us about to the peer list, which bounds and deduplicates them like
//! tracker peers.
//!
//! Never for a private torrent (BEP 27), nor before the metadata says whether the torrent
//! is private, nor with `Config::pex` off: then `ut_pex` is not in our extension handshake,
//! nothing is sent, and what peers send anyway is ignored.

use std::net::SocketAddr;

use super::Torrent;
use super::send;
use crate::id::ConnId;
use crate::pex::PexFlags;
use crate::shared::Shared;
use crate::wire::Message;

impl Torrent {
    /// The peers we would tell others about, with their flags: active connections whose
    /// listening address we know (the address we dialled, or an inbound peer's `p`).
    fn pex_connected(&self) -> Vec<(SocketAddr, PexFlags)> {
        let mut out = Vec::new();
        for (conn, peer) in &self.peers {
            if !peer.is_active() {
                continue;
            }
            let addr = if peer.outbound {
                peer.addr
            } else {
                match self.ext.get(conn).and_then(|e| e.port) {
                    Some(port) => SocketAddr::new(peer.addr.ip(), port),
                    None => continue,
                }
            };
            let mut flags = PexFlags::NONE;
            if peer.outbound {
                flags = flags | PexFlags::REACHABLE;
            }
            if peer.is_seed() {
                flags = flags | PexFlags::SEED;
            }
            out.push((addr, flags));
        }
        out
    }

    /// Sends the PEX messages that are due (each peer's own minute decides).
    pub(super) fn pex_tick(&mut self, sh: &mut Shared) {
        if !self.pex_allowed(sh) {
            return;
        }
        let now = sh.now;
        if !self
            .ext
            .values()
            .any(|e| e.pex.as_ref().is_some_and(|p| p.poll_timeout() <= now))
        {
            return;
        }
        let connected = self.pex_connected();
        let mut messages = Vec::new();
        for (conn, ext) in &mut self.ext {
            let Some(id) = ext.ids.pex_id() else {
                continue;
            };
            if let Some(pex) = ext.pex.as_mut()
                && let Some(message) = pex.poll_message(now, &connected)
            {
                messages.push((*conn, id, message));
            }
        }
        for (conn, id, message) in messages {
            if let Some(peer) = self.peers.get_mut(&conn)
                && peer.is_active()
            {
                tracing::debug!(addr = %peer.addr, added = message.added.len(), dropped = message.dropped.len(), "sending ut_pex");
                send(
                    sh,
                    peer,
                    &Message::Extended {
                        id,
                        payload: message.encode(),
                    },
                );
            }
        }
    }

    /// A `ut_pex` message from a peer: its added peers join the peer list.
    pub(super) fn on_ut_pex(&mut self, sh: &mut Shared, conn: ConnId, payload: &[u8]) {
        if !self.pex_allowed(sh) {
            return;
        }
        let own = self.own_addrs.clone();
        let Some(pex) = self.ext.get_mut(&conn).and_then(|e| e.pex.as_mut()) else {
            return;
        };
        let message = match pex.receive(sh.now, payload, &own) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("{conn}: ignoring a ut_pex message: {e}");
                return;
            }
        };
        let mut learned = 0;
        for (addr, _) in &message.added {
            if self.peer_list.add(sh.now, *addr, false) {
                learned += 1;
            }
        }
        tracing::debug!(
            "{conn}: ut_pex with {} added, {} dropped; {learned} new",
            message.added.len(),
            message.dropped.len()
        );
        if learned > 0 {
            tracing::info!("learned {learned} peer(s) through PEX");
            self.connect_peers(sh);
        }
    }
}
