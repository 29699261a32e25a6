//! The extension messages of a torrent (BEP 10): our extension handshake, each peer's, and
//! the metadata exchange (BEP 9, `ut_metadata`) in both directions.
//!
//! A torrent added from a magnet link starts in [`State::Metadata`]: it knows only its info
//! hash (and what the link says: name, trackers, peers). It announces, dials and accepts
//! peers as any torrent does, but exchanges no pieces: peers that offer `ut_metadata` with
//! a `metadata_size` are handed to a [`MetadataAssembler`], which fetches the info
//! dictionary from several of them at once. Once its SHA-1 is the info hash the torrent
//! reports [`Event::MetadataReceived`] and waits for the driver, which creates storage and
//! calls `Session::resume_with_metadata`: the session then replaces the torrent by a
//! normal one with the same id, which inherits the addresses it knew.
//!
//! Every torrent with metadata serves it: a request gets its piece (or a reject), at most
//! two copies of it (and [`EXTRA_SERVED_PER_PEER`] pieces more) to one connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;

use super::{State, Torrent, send};
use crate::api::{CloseReason, Event, Misbehaviour};
use crate::extension::{self, ExtensionHandshake, ExtensionIds};
use crate::id::ConnId;
use crate::layout::Layout;
use crate::magnet::MagnetLink;
use crate::metadata::{self, AssemblerConfig, MetadataAssembler, MetadataEvent, MetadataMessage};
use crate::metainfo::{FileEntry, Info, Metainfo};
use crate::pex::PexPeer;
use crate::shared::Shared;
use crate::wire::Message;

/// Our extended message id for `ut_metadata` (what peers send it to us with).
pub(crate) const OUR_UT_METADATA: u8 = 2;
/// Our extended message id for `ut_pex`.
pub(crate) const OUR_UT_PEX: u8 = 1;
/// Pieces of our info dictionary served to one connection beyond two copies of it; later
/// requests are rejected.
pub(crate) const EXTRA_SERVED_PER_PEER: u32 = 16;
/// Addresses others told us we have (`yourip`), kept to recognise ourselves in PEX.
const MAX_OWN_ADDRS: usize = 8;

/// What a peer's extension handshake told us, and our extension state with it.
#[derive(Debug, Default)]
pub(crate) struct PeerExt {
    /// The ids it wants our extension messages sent with.
    pub ids: ExtensionIds,
    /// Its listening port (`p`).
    pub port: Option<u16>,
    /// `ut_metadata` pieces we served it.
    pub served: u32,
    /// PEX with it, when both sides offer it and the torrent allows it.
    pub pex: Option<PexPeer>,
}

/// The metadata phase of a torrent added from a magnet link.
#[derive(Debug)]
pub(crate) struct MetadataPhase {
    pub assembler: MetadataAssembler,
    /// The link's trackers, written into the `.torrent` made from the metadata.
    pub trackers: Vec<String>,
    /// The verified metadata, once it is in (waiting for `resume_with_metadata`).
    pub received: Option<Arc<Metainfo>>,
}

impl MetadataPhase {
    pub fn new(link: &MagnetLink) -> MetadataPhase {
        MetadataPhase {
            assembler: MetadataAssembler::new(link.info_hash, AssemblerConfig::default()),
            trackers: link.trackers.clone(),
            received: None,
        }
    }
}

/// The stand-in metainfo of a torrent whose metadata is not there yet: the info hash,
/// the link's name and trackers (each its own tier, so that every one is asked), and one
/// piece of one byte, so that nothing counts as complete. Nothing is ever read or written
/// for it: the torrent exchanges no pieces in [`State::Metadata`].
pub(crate) fn placeholder(link: &MagnetLink) -> Option<Metainfo> {
    let name = link
        .name
        .clone()
        .unwrap_or_else(|| link.info_hash.to_string());
    let layout = Layout::new(metadata::PIECE_LEN as u32, [1]).ok()?;
    Some(Metainfo {
        info_hash: link.info_hash,
        info: Info {
            name: name.clone(),
            piece_length: metadata::PIECE_LEN as u32,
            pieces: vec![[0; 20]],
            files: vec![FileEntry {
                path: vec![name],
                length: 1,
                padding: false,
                executable: false,
            }],
            private: false,
            multi_file: false,
            layout,
        },
        info_bytes: Bytes::new(),
        trackers: link.trackers.iter().map(|t| vec![t.clone()]).collect(),
        comment: None,
        created_by: None,
        creation_date: None,
    })
}

/// A `.torrent` file around a verified info dictionary: `announce` is the first tracker,
/// `announce-list` has every tracker as its own tier (BEP 12), `info` is the bytes as they
/// were received (so the file's info hash is the link's).
pub(crate) fn torrent_file(info: &[u8], trackers: &[String]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(s.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(s);
    }
    let mut out = Vec::with_capacity(info.len() + 64 + trackers.len() * 64);
    out.push(b'd');
    if let Some(first) = trackers.first() {
        string(&mut out, b"announce");
        string(&mut out, first.as_bytes());
        string(&mut out, b"announce-list");
        out.push(b'l');
        for t in trackers {
            out.push(b'l');
            string(&mut out, t.as_bytes());
            out.push(b'e');
        }
        out.push(b'e');
    }
    string(&mut out, b"info");
    out.extend_from_slice(info);
    out.push(b'e');
    out
}

impl Torrent {
    /// The verified metadata of a torrent added from a magnet link, once it is in.
    pub fn received_metadata(&self) -> Option<Arc<Metainfo>> {
        self.magnet.as_ref().and_then(|m| m.received.clone())
    }

    /// Whether the torrent is a magnet link's that has no metadata in use yet (it looks
    /// for peers on the DHT but does not announce itself).
    pub fn fetching_metadata(&self) -> bool {
        self.state == State::Metadata
    }

    /// Whether PEX runs for this torrent: on in the config, metadata known, not private.
    pub(super) fn pex_allowed(&self, sh: &Shared) -> bool {
        sh.config.pex && self.state != State::Metadata && !self.meta.info.private
    }

    /// Our BEP 10 handshake for this torrent: the session-wide fields, the extensions we
    /// offer, and `metadata_size` when we have metadata to serve.
    pub(super) fn our_ext_handshake(&self, sh: &Shared) -> Bytes {
        let mut hs = ExtensionHandshake::parse(&sh.ext_handshake()).unwrap_or_default();
        hs.extensions = ExtensionIds {
            ut_metadata: Some(OUR_UT_METADATA),
            ut_pex: self.pex_allowed(sh).then_some(OUR_UT_PEX),
        };
        hs.metadata_size =
            (!self.meta.info_bytes.is_empty()).then_some(self.meta.info_bytes.len() as u64);
        Bytes::from(hs.encode())
    }

    /// An extended message (BEP 10) from a peer.
    pub(super) fn on_extended(
        &mut self,
        sh: &mut Shared,
        conn: ConnId,
        id: u8,
        payload: Bytes,
    ) -> Result<(), Misbehaviour> {
        match id {
            extension::HANDSHAKE_ID => {
                self.on_ext_handshake(sh, conn, &payload);
                Ok(())
            }
            OUR_UT_METADATA => self.on_ut_metadata(sh, conn, &payload),
            OUR_UT_PEX => {
                self.on_ut_pex(sh, conn, &payload);
                Ok(())
            }
            // Ids we did not hand out: not for us.
            _ => Ok(()),
        }
    }

    fn on_ext_handshake(&mut self, sh: &mut Shared, conn: ConnId, payload: &[u8]) {
        let pex_allowed = self.pex_allowed(sh);
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let hs = match ExtensionHandshake::parse(payload) {
            Ok(hs) => hs,
            Err(e) => {
                tracing::debug!(addr = %peer.addr, "{e}");
                return;
            }
        };
        peer.max_requests = hs.reqq.map(|q| q as usize);
        tracing::debug!(addr = %peer.addr, client = ?hs.client, reqq = ?hs.reqq, m = ?hs.extensions, metadata_size = ?hs.metadata_size, "extension handshake");
        let addr = peer.addr;
        let ext = self.ext.entry(conn).or_default();
        ext.ids.update(hs.extensions);
        if hs.port.is_some() {
            ext.port = hs.port;
        }
        if pex_allowed && ext.ids.pex_id().is_some() {
            if ext.pex.is_none() {
                let remote = SocketAddr::new(addr.ip(), ext.port.unwrap_or(addr.port()));
                ext.pex = Some(PexPeer::new(remote));
            }
        } else {
            ext.pex = None;
        }
        let offers_metadata = ext.ids.metadata_id().is_some();
        if let Some(ip) = hs.your_ip
            && sh.config.listen_port != 0
        {
            self.note_own_ip(ip, sh.config.listen_port);
        }
        let now = sh.now;
        let Some(phase) = self.magnet.as_mut() else {
            return;
        };
        if phase.received.is_some() {
            return;
        }
        if offers_metadata {
            if let Err(e) = phase.assembler.add_peer(now, conn, hs.metadata_size) {
                tracing::debug!(%addr, "not asked for metadata: {e}");
            }
        } else {
            phase.assembler.remove_peer(now, conn);
        }
        self.metadata_flush(sh);
    }

    fn note_own_ip(&mut self, ip: IpAddr, port: u16) {
        let addr = SocketAddr::new(ip.to_canonical(), port);
        if !self.own_addrs.contains(&addr) && self.own_addrs.len() < MAX_OWN_ADDRS {
            self.own_addrs.push(addr);
        }
    }

    fn on_ut_metadata(
        &mut self,
        sh: &mut Shared,
        conn: ConnId,
        payload: &Bytes,
    ) -> Result<(), Misbehaviour> {
        let message =
            MetadataMessage::decode(payload).map_err(|e| Misbehaviour::Metadata(e.to_string()))?;
        if let MetadataMessage::Request { piece } = message {
            self.serve_metadata(sh, conn, piece);
            return Ok(());
        }
        let now = sh.now;
        let Some(phase) = self.magnet.as_mut().filter(|m| m.received.is_none()) else {
            // Data after we have it, or that we never asked for: not an offence.
            return Ok(());
        };
        let result = phase.assembler.handle_message(now, conn, &message);
        self.metadata_flush(sh);
        result.map_err(|e| Misbehaviour::Metadata(e.to_string()))
    }

    /// Answers a request for a piece of our info dictionary.
    fn serve_metadata(&mut self, sh: &mut Shared, conn: ConnId, piece: u32) {
        let info = (!self.meta.info_bytes.is_empty()).then_some(&self.meta.info_bytes);
        let Some(ext) = self.ext.get_mut(&conn) else {
            return;
        };
        let Some(id) = ext.ids.metadata_id() else {
            return;
        };
        let request = MetadataMessage::Request { piece };
        let pieces = metadata::num_pieces(self.meta.info_bytes.len() as u64);
        let limit = u32::try_from(pieces.saturating_mul(2))
            .unwrap_or(u32::MAX)
            .saturating_add(EXTRA_SERVED_PER_PEER);
        let answer = if ext.served >= limit {
            Some(MetadataMessage::Reject { piece })
        } else {
            metadata::serve(info, &request)
        };
        let Some(answer) = answer else {
            return;
        };
        if matches!(answer, MetadataMessage::Data { .. }) {
            ext.served += 1;
        }
        if let Some(peer) = self.peers.get_mut(&conn) {
            send(
                sh,
                peer,
                &Message::Extended {
                    id,
                    payload: answer.encode(),
                },
            );
        }
    }

    /// Sends what the assembler asks and acts on what it reports.
    pub(super) fn metadata_flush(&mut self, sh: &mut Shared) {
        let Some(phase) = self.magnet.as_mut() else {
            return;
        };
        let mut sends = Vec::new();
        while let Some(t) = phase.assembler.poll_transmit() {
            sends.push(t);
        }
        let mut events = Vec::new();
        while let Some(e) = phase.assembler.poll_event() {
            events.push(e);
        }
        for (conn, message) in sends {
            let id = self.ext.get(&conn).and_then(|e| e.ids.metadata_id());
            if let (Some(id), Some(peer)) = (id, self.peers.get_mut(&conn)) {
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
        for event in events {
            match event {
                MetadataEvent::Complete(info) => self.metadata_complete(sh, info),
                MetadataEvent::HashMismatch {
                    contributors,
                    culprit,
                } => {
                    tracing::info!(
                        "the metadata from {} peer(s) did not match the info hash; fetching it again",
                        contributors.len()
                    );
                    if let Some(conn) = culprit {
                        self.ban_peer(
                            sh,
                            conn,
                            CloseReason::Misbehaved(Misbehaviour::Metadata(
                                "sent metadata that does not match the info hash".into(),
                            )),
                        );
                    }
                }
            }
        }
    }

    /// The info dictionary is in and verified: report it, with a `.torrent` made of it.
    fn metadata_complete(&mut self, sh: &mut Shared, info: Bytes) {
        let Some(phase) = self.magnet.as_mut() else {
            return;
        };
        let file = torrent_file(&info, &phase.trackers);
        match Metainfo::from_bytes(&file) {
            Ok(meta) if meta.info_hash == self.meta.info_hash => {
                let meta = Arc::new(meta);
                phase.received = Some(meta.clone());
                tracing::info!(name = %meta.info.name, bytes = info.len(), "metadata received");
                sh.event(Event::MetadataReceived {
                    torrent: self.id,
                    meta,
                    torrent_file: Bytes::from(file),
                });
            }
            Ok(_) => {}
            Err(e) => {
                // Its hash is right, so every peer will send the same: nothing to wait for.
                tracing::warn!("the torrent's metadata is not usable: {e}");
                self.state = State::Failed;
                sh.event(Event::MetadataFailed {
                    torrent: self.id,
                    reason: e.to_string(),
                });
            }
        }
    }

    /// The periodic part: the assembler's request time-outs.
    pub(super) fn metadata_tick(&mut self, sh: &mut Shared) {
        if let Some(phase) = self.magnet.as_mut()
            && phase.received.is_none()
            && phase
                .assembler
                .poll_timeout()
                .is_some_and(|at| at <= sh.now)
        {
            phase.assembler.handle_timeout(sh.now);
            self.metadata_flush(sh);
        }
    }

    /// A peer is gone: forget its extension state.
    pub(super) fn forget_ext(&mut self, sh: &Shared, conn: ConnId) {
        self.ext.remove(&conn);
        if let Some(phase) = self.magnet.as_mut() {
            phase.assembler.remove_peer(sh.now, conn);
        }
    }

    /// The hand-over to the normal torrent: every connection closed, and the addresses to
    /// dial again (those we dialled, and inbound peers' listening addresses).
    pub fn hand_over(&mut self, sh: &mut Shared) -> crate::peer_list::PeerList {
        let listening: Vec<SocketAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.outbound)
            .filter_map(|(c, p)| {
                let port = self.ext.get(c)?.port?;
                Some(SocketAddr::new(p.addr.ip(), port))
            })
            .collect();
        self.close_all(sh);
        for addr in listening {
            self.peer_list.add(sh.now, addr, false);
        }
        self.peer_list.retry_now(sh.now);
        let max = sh.config.max_known_peers;
        std::mem::replace(&mut self.peer_list, crate::peer_list::PeerList::new(max))
    }
}

impl Torrent {
    /// Takes the addresses a metadata phase knew (see [`Torrent::hand_over`]).
    pub fn adopt_peer_list(&mut self, sh: &mut Shared, list: crate::peer_list::PeerList) {
        self.peer_list = list;
        self.connect_peers(sh);
    }
}
