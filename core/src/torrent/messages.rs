//! The peer wire messages of an established connection (BEP 3, BEP 6, BEP 10): each one
//! applied to the peer's state and handed to the download or upload side.

use super::{State, Torrent, send};
use crate::api::{CloseReason, Misbehaviour};
use crate::bitfield::Bitfield;
use crate::id::ConnId;
use crate::peer::Peer;
use crate::shared::Shared;
use crate::wire::Message;

impl Torrent {
    /// Handles every complete message buffered for `conn`.
    pub(super) fn process(&mut self, sh: &mut Shared, conn: ConnId) {
        loop {
            let Some(peer) = self.peers.get_mut(&conn) else {
                return;
            };
            match peer.decoder.next_message() {
                Ok(Some(msg)) => {
                    if let Err(reason) = self.on_message(sh, conn, msg) {
                        self.ban_peer(sh, conn, CloseReason::Misbehaved(reason));
                        return;
                    }
                }
                Ok(None) => {
                    peer.partial_since = match peer.decoder.buffered() {
                        0 => None,
                        _ => Some(peer.partial_since.unwrap_or(sh.now)),
                    };
                    return;
                }
                Err(e) => {
                    self.ban_peer(sh, conn, CloseReason::Misbehaved(Misbehaviour::Protocol(e)));
                    return;
                }
            }
        }
    }

    /// Closes a peer that broke the protocol, and never deals with it again (its address
    /// if we dialled it, its peer id either way).
    pub(super) fn ban_peer(&mut self, sh: &mut Shared, conn: ConnId, reason: CloseReason) {
        if let Some(peer) = self.peers.get(&conn) {
            if peer.outbound {
                self.peer_list.ban(peer.addr);
            }
            if let Some(id) = peer.id {
                self.download.ban(id);
            }
        }
        self.close_peer(sh, conn, reason, false);
    }

    /// Applies one message; `Err(reason)` closes the peer.
    pub(super) fn on_message(
        &mut self,
        sh: &mut Shared,
        conn: ConnId,
        msg: Message,
    ) -> Result<(), Misbehaviour> {
        if let Message::Port(port) = msg {
            self.dht_port_received(sh, conn, port);
        }
        let n = self.layout.num_pieces();
        let Some(peer) = self.peers.get_mut(&conn) else {
            return Ok(());
        };
        // Without metadata the piece count is not known yet: only the negotiation counts.
        let range = if self.state == State::Metadata {
            u32::MAX
        } else {
            n
        };
        crate::fast::check_message(&msg, peer.fast, range).map_err(Misbehaviour::Fast)?;
        let first = !peer.seen_message;
        peer.seen_message = true;
        if let Message::Extended { id, payload } = msg {
            return self.on_extended(sh, conn, id, payload);
        }
        if self.state == State::Metadata {
            // Without metadata there are no pieces to talk about: what the peer has is
            // learned again once the torrent is replaced by the full one.
            return match msg {
                Message::Unknown { id, len } => Err(Misbehaviour::UnknownMessage { id, len }),
                _ => Ok(()),
            };
        }
        match msg {
            Message::KeepAlive => {}
            Message::Choke => {
                peer.peer_choking = true;
                if peer.fast {
                    // BEP 6: a choke does not drop our requests; the peer rejects the ones
                    // it will not serve. Those outside its allowed-fast set will be, so
                    // they go to other peers now; the others stay in flight.
                    let picker = &mut self.picker;
                    peer.withdraw_choked(|block| picker.release(block, conn));
                    self.request_all(sh);
                } else {
                    self.release_requests(conn);
                }
            }
            Message::Unchoke => {
                peer.peer_choking = false;
                peer.last_block_at = sh.now;
                self.request_blocks(sh, conn);
            }
            Message::Interested => {
                let before = peer.slot_state();
                peer.peer_interested = true;
                self.upload.slots.change(before, peer.slot_state());
                self.interest_changed();
            }
            Message::NotInterested => {
                let before = peer.slot_state();
                peer.peer_interested = false;
                self.upload.slots.change(before, peer.slot_state());
                peer.their_requests.clear();
                self.interest_changed();
            }
            Message::Have(piece) => {
                if piece >= n {
                    return Err(Misbehaviour::HaveOutOfRange { piece, pieces: n });
                }
                if peer.has.set(piece as usize) {
                    self.picker.add_have(piece);
                    self.peer_has_changed(sh, conn);
                }
            }
            // BEP 3 puts the bitfield first, but aria2 sends it after other messages to
            // peers without extensions; a late one adds to what the peer announced.
            Message::Bitfield(bytes) => {
                let has =
                    Bitfield::from_bytes(&bytes, n as usize).map_err(Misbehaviour::Bitfield)?;
                if !first {
                    tracing::debug!(addr = %peer.addr, "bitfield after other messages");
                }
                self.add_peer_pieces(sh, conn, &has);
            }
            Message::HaveAll => self.add_peer_pieces(sh, conn, &Bitfield::full(n as usize)),
            Message::HaveNone => {}
            Message::Request(req) => self.on_request(sh, conn, req)?,
            Message::Cancel(req) => {
                peer.their_requests.retain(|r| *r != req);
            }
            Message::Reject(req) => {
                // Re-requested at once (from other peers first: the picker hands a block
                // to one peer at a time). A peer that chokes us and rejects an allowed-fast
                // piece is not asked for it again while it chokes us.
                let Some(block) = self.layout.block_at(req.piece, req.offset, req.len) else {
                    return Err(Misbehaviour::UnrequestedReject(req));
                };
                if peer.withdraw(block) {
                    self.picker.release(block, conn);
                } else if !peer.was_requested(block) {
                    return Err(Misbehaviour::UnrequestedReject(req));
                }
                if peer.peer_choking {
                    peer.allowed_in.remove(req.piece);
                }
                self.request_all(sh);
            }
            Message::AllowedFast(piece) => {
                if peer.allowed_in.insert(piece) && peer.peer_choking {
                    self.request_blocks(sh, conn);
                }
            }
            Message::Piece {
                piece,
                offset,
                data,
            } => self.on_block(sh, conn, piece, offset, data)?,
            // Handled above (`metadata_phase`). A suggestion is accepted and ignored: the
            // picker's order stands.
            Message::Port(_) | Message::Suggest(_) | Message::Extended { .. } => {}
            Message::Unknown { id, len } => {
                return Err(Misbehaviour::UnknownMessage { id, len });
            }
        }
        Ok(())
    }

    /// The peer's whole piece set arrived (bitfield or have-all).
    /// The peer announced a set of pieces (bitfield or have-all): what it had announced
    /// before stays (a peer's pieces only grow).
    pub(super) fn add_peer_pieces(&mut self, sh: &mut Shared, conn: ConnId, has: &Bitfield) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if peer.has.none() {
            self.picker.add_availability(has);
            peer.has = has.clone();
        } else {
            for p in has.ones() {
                if peer.has.set(p) {
                    self.picker.add_have(p as u32);
                }
            }
        }
        self.peer_has_changed(sh, conn);
    }

    /// The peer's piece set grew: update our interest, and drop the connection when
    /// neither side can give the other anything.
    pub(super) fn peer_has_changed(&mut self, sh: &mut Shared, conn: ConnId) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        if peer.is_seed() {
            self.peer_list.mark_seed(peer.addr);
            if self.picker.is_complete() && self.state == State::Seeding {
                self.close_peer(sh, conn, CloseReason::BothSeeding, false);
                return;
            }
        }
        self.update_interest(sh, conn);
        self.request_blocks(sh, conn);
    }

    /// Sends interested / not interested when our view changed.
    pub(super) fn update_interest(&mut self, sh: &mut Shared, conn: ConnId) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if !peer.is_active() {
            return;
        }
        let want = self.state == State::Downloading && self.picker.is_interesting(&peer.has);
        Torrent::set_interest(sh, peer, want);
    }

    /// Sends interested / not interested if `want` differs from what the peer was told.
    pub(super) fn set_interest(sh: &mut Shared, peer: &mut Peer, want: bool) {
        if want != peer.am_interested {
            peer.am_interested = want;
            send(
                sh,
                peer,
                if want {
                    &Message::Interested
                } else {
                    &Message::NotInterested
                },
            );
            if want {
                peer.last_block_at = sh.now;
                peer.am_interested_since = sh.now;
            }
        }
    }
}
