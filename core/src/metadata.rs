//! Metadata exchange (BEP 9, `ut_metadata`): fetching a torrent's info dictionary from
//! peers when all we have is its info hash (a magnet link), and serving ours to others.
//!
//! # Messages
//!
//! [`MetadataMessage`]: a bencoded dictionary `{msg_type, piece[, total_size]}` sent as an
//! extended message (BEP 10) with the id the receiver chose for `ut_metadata`; a `data`
//! message is followed by the piece's raw bytes. The info dictionary travels in pieces of
//! [`PIECE_LEN`] bytes (the last one shorter).
//!
//! # Fetching: [`MetadataAssembler`]
//!
//! A pure state machine for one torrent, fed by the session: peers that offer `ut_metadata`
//! with a `metadata_size` ([`MetadataAssembler::add_peer`]), their `ut_metadata` messages
//! ([`MetadataAssembler::handle_message`]), their departure, and time. Out come requests to
//! send ([`MetadataAssembler::poll_transmit`]) and events ([`MetadataAssembler::poll_event`]):
//! the verified info dictionary, or a hash mismatch naming the peers that contributed.
//!
//! - Pieces are asked from several peers at once, at most
//!   [`AssemblerConfig::requests_per_peer`] outstanding per peer, each piece from one peer at
//!   a time, the least busy peer first.
//! - A reject puts the piece back for another peer and rests the peer that rejected for
//!   [`AssemblerConfig::rest_after_reject`]; a request unanswered after
//!   [`AssemblerConfig::request_timeout`] does the same. An answer that comes after the piece
//!   was given to another peer is still accepted (a duplicate is ignored). A peer is asked
//!   for one piece at most three times without answering.
//! - A `metadata_size` above [`AssemblerConfig::max_size`] (16 MiB) is refused. Pieces are
//!   collected for one size at a time: the first peer's. A peer claiming another size is kept
//!   aside and not asked; if no peer with the current size is left (gone, or proven to lie),
//!   the assembler starts over with the size most of the others claim.
//! - Errors that mean "drop this peer" are returned from the call that found them: data for
//!   a piece out of range or never asked of that peer (extra pieces), of the wrong length,
//!   or with a `total_size` other than the peer's `metadata_size`.
//! - When every piece is in, the bytes are hashed. If the SHA-1 is not the info hash, every
//!   piece is fetched again and [`MetadataEvent::HashMismatch`] names the contributors. A
//!   lone contributor is the certain culprit: it is never asked again, and the session
//!   should drop it. With several, each is a suspect, and the next attempt takes every
//!   piece from a single peer (the one with the fewest suspicions), so that a second
//!   mismatch names its culprit for certain.
//!
//! # Serving: [`serve`]
//!
//! Answers a request from our info dictionary bytes: the piece, or a reject when we have no
//! metadata or the piece does not exist.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::{Bytes, BytesMut};
use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::bencode::{self, DictBuilder, Value};
use crate::id::{ConnId, InfoHash};
use crate::time::{Duration, Instant};

/// Length of every piece of the info dictionary but the last.
pub const PIECE_LEN: usize = 16 * 1024;
/// Largest info dictionary fetched: 16 MiB (1024 pieces).
pub const MAX_METADATA_SIZE: u64 = 16 * 1024 * 1024;

/// Times one peer is asked for one piece without answering before it is not asked again.
const MAX_ASKS: u8 = 3;

const MSG_REQUEST: i64 = 0;
const MSG_DATA: i64 = 1;
const MSG_REJECT: i64 = 2;

/// A `ut_metadata` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMessage {
    /// Asks for a piece.
    Request {
        /// Its index.
        piece: u32,
    },
    /// A piece.
    Data {
        /// Its index.
        piece: u32,
        /// The length of the whole info dictionary.
        total_size: u64,
        /// The piece's bytes (at most [`PIECE_LEN`]).
        data: Bytes,
    },
    /// The sender will not send the piece.
    Reject {
        /// Its index.
        piece: u32,
    },
    /// A message type BEP 9 does not define (to be ignored, as BEP 9 asks).
    Unknown {
        /// Its `msg_type` (not 0, 1 or 2).
        msg_type: i64,
    },
}

/// Why a payload is not a `ut_metadata` message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("bad ut_metadata message: {0}")]
pub struct MetadataDecodeError(pub String);

impl MetadataMessage {
    /// The payload (after the extended message id).
    pub fn encode(&self) -> Bytes {
        let dict = |msg_type: i64, piece: Option<u32>, total_size: Option<u64>| {
            let mut d = DictBuilder::new().insert(b"msg_type", Value::Int(msg_type));
            if let Some(piece) = piece {
                d = d.insert(b"piece", Value::Int(i64::from(piece)));
            }
            if let Some(size) = total_size {
                d = d.insert(
                    b"total_size",
                    Value::Int(i64::try_from(size).unwrap_or(i64::MAX)),
                );
            }
            bencode::encode(&d.build())
        };
        match self {
            MetadataMessage::Request { piece } => {
                Bytes::from(dict(MSG_REQUEST, Some(*piece), None))
            }
            MetadataMessage::Reject { piece } => Bytes::from(dict(MSG_REJECT, Some(*piece), None)),
            MetadataMessage::Unknown { msg_type } => Bytes::from(dict(*msg_type, None, None)),
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => {
                let head = dict(MSG_DATA, Some(*piece), Some(*total_size));
                let mut out = BytesMut::with_capacity(head.len() + data.len());
                out.extend_from_slice(&head);
                out.extend_from_slice(data);
                out.freeze()
            }
        }
    }

    /// Reads a payload. The piece data of a `data` message is a slice of `payload` (no
    /// copy). Keys other than `msg_type`, `piece` and `total_size` are ignored; bytes after
    /// the dictionary of anything but a `data` message are an error, as is data longer than
    /// [`PIECE_LEN`].
    pub fn decode(payload: &Bytes) -> Result<MetadataMessage, MetadataDecodeError> {
        let bad = |m: String| MetadataDecodeError(m);
        let (dict, rest) = bencode::decode_dict_prefix(payload).map_err(|e| bad(e.to_string()))?;
        let int = |key: &[u8]| dict.get(key).and_then(Value::as_int);
        let msg_type = int(b"msg_type").ok_or_else(|| bad("no integer msg_type".into()))?;
        if !(MSG_REQUEST..=MSG_REJECT).contains(&msg_type) {
            return Ok(MetadataMessage::Unknown { msg_type });
        }
        let piece = int(b"piece")
            .ok_or_else(|| bad("no integer piece".into()))
            .and_then(|p| u32::try_from(p).map_err(|_| bad(format!("piece {p} out of range"))))?;
        if msg_type != MSG_DATA {
            if !rest.is_empty() {
                return Err(bad(format!(
                    "{} bytes after a {} message",
                    rest.len(),
                    if msg_type == MSG_REQUEST {
                        "request"
                    } else {
                        "reject"
                    }
                )));
            }
            return Ok(if msg_type == MSG_REQUEST {
                MetadataMessage::Request { piece }
            } else {
                MetadataMessage::Reject { piece }
            });
        }
        let total_size = int(b"total_size")
            .ok_or_else(|| bad("data without an integer total_size".into()))
            .and_then(|s| {
                u64::try_from(s)
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| bad(format!("total_size {s}")))
            })?;
        if rest.len() > PIECE_LEN {
            return Err(bad(format!(
                "{} bytes of data, more than a piece ({PIECE_LEN})",
                rest.len()
            )));
        }
        Ok(MetadataMessage::Data {
            piece,
            total_size,
            data: payload.slice_ref(rest),
        })
    }
}

/// The number of pieces an info dictionary of `size` bytes travels in.
pub fn num_pieces(size: u64) -> u64 {
    size.div_ceil(PIECE_LEN as u64)
}

/// The length of piece `piece` of an info dictionary of `size` bytes (0 when out of range).
pub fn piece_len(size: u64, piece: u32) -> usize {
    let start = u64::from(piece) * PIECE_LEN as u64;
    usize::try_from(size.saturating_sub(start).min(PIECE_LEN as u64)).unwrap_or(0)
}

/// The serving side: our answer to `message` from a peer, given our info dictionary bytes
/// (`None` when we do not have them yet). A request gets its piece, or a reject when we have
/// no metadata or the piece is out of range; other messages need no answer.
pub fn serve(info: Option<&Bytes>, message: &MetadataMessage) -> Option<MetadataMessage> {
    let MetadataMessage::Request { piece } = *message else {
        return None;
    };
    let Some(info) = info else {
        return Some(MetadataMessage::Reject { piece });
    };
    let size = info.len() as u64;
    let len = piece_len(size, piece);
    if len == 0 {
        return Some(MetadataMessage::Reject { piece });
    }
    let start = piece as usize * PIECE_LEN;
    Some(MetadataMessage::Data {
        piece,
        total_size: size,
        data: info.slice(start..start + len),
    })
}

// ---- fetching ------------------------------------------------------------------------------

/// Counts one answer to a request for `piece`; false when none was outstanding.
fn take_asked(asked: &mut BTreeMap<u32, u8>, piece: u32) -> bool {
    match asked.get_mut(&piece) {
        Some(n) if *n > 1 => {
            *n -= 1;
            true
        }
        Some(_) => {
            asked.remove(&piece);
            true
        }
        None => false,
    }
}

/// Limits and timings of a [`MetadataAssembler`].
#[derive(Debug, Clone)]
pub struct AssemblerConfig {
    /// Largest `metadata_size` accepted.
    pub max_size: u64,
    /// Requests outstanding at one peer.
    pub requests_per_peer: usize,
    /// How long a request may go unanswered before the piece goes to another peer.
    pub request_timeout: Duration,
    /// How long a peer that rejected (or did not answer) is left alone.
    pub rest_after_reject: Duration,
}

impl Default for AssemblerConfig {
    fn default() -> Self {
        AssemblerConfig {
            max_size: MAX_METADATA_SIZE,
            requests_per_peer: 4,
            request_timeout: Duration::from_secs(30),
            rest_after_reject: Duration::from_secs(20),
        }
    }
}

/// Why a peer cannot be used, or must be dropped, for the metadata exchange.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetadataPeerError {
    /// Its handshake gave no `metadata_size` (it may not have the metadata).
    #[error("no metadata_size in its extension handshake")]
    NoSize,
    /// Its `metadata_size` is larger than we accept.
    #[error("metadata_size {size} is larger than {max}")]
    TooLarge {
        /// What it claimed.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// A message from a peer never added.
    #[error("ut_metadata message from a peer that offered no metadata")]
    UnknownPeer,
    /// A `total_size` other than its `metadata_size`.
    #[error("total_size {sent} differs from its metadata_size {claimed}")]
    SizeMismatch {
        /// From its handshake.
        claimed: u64,
        /// In its message.
        sent: u64,
    },
    /// A piece index beyond the metadata.
    #[error("metadata piece {piece} out of range ({pieces} pieces)")]
    OutOfRange {
        /// The index.
        piece: u32,
        /// How many there are.
        pieces: u64,
    },
    /// Data for a piece we did not ask it for (or already got from it).
    #[error("metadata piece {0} was not asked for")]
    Unrequested(u32),
    /// Data of the wrong length for its piece.
    #[error("metadata piece {piece} is {len} bytes, not {expected}")]
    WrongLength {
        /// The index.
        piece: u32,
        /// Its length.
        len: usize,
        /// The length it must have.
        expected: usize,
    },
    /// The peer sent data whose hash did not match; it is not asked again.
    #[error("it sent metadata that does not match the info hash")]
    Excluded,
}

/// What a [`MetadataAssembler`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataEvent {
    /// The info dictionary; its SHA-1 is the info hash. The assembler is done.
    Complete(Bytes),
    /// The assembled bytes did not hash to the info hash; every piece is fetched again.
    HashMismatch {
        /// The peers whose pieces were used, in `ConnId` order.
        contributors: Vec<ConnId>,
        /// The only contributor, when there was one: certainly lying, never asked again.
        /// Drop it.
        culprit: Option<ConnId>,
    },
}

#[derive(Debug, Clone)]
enum Slot {
    Missing,
    Requested { from: ConnId, deadline: Instant },
    Have { from: ConnId, data: Bytes },
}

#[derive(Debug, Clone)]
struct PeerState {
    /// Its `metadata_size`.
    size: u64,
    /// Pieces asked of it and not answered yet, with how many times each was asked (a
    /// request that timed out may be sent to the same peer again; every answer counts).
    asked: BTreeMap<u32, u8>,
    /// Not asked anything before this.
    resting_until: Instant,
    /// Failed attempts it contributed to.
    suspicions: u32,
    /// Proven to send bad data.
    bad: bool,
}

/// Collects a torrent's info dictionary from peers (see the module documentation).
///
/// Method order: getters, `add_peer`/`remove_peer`, `handle_*`, `poll_*`. After every call
/// that changes something, drain `poll_transmit` and `poll_event` and arm a timer at
/// `poll_timeout`.
#[derive(Debug)]
pub struct MetadataAssembler {
    info_hash: InfoHash,
    config: AssemblerConfig,
    /// The size pieces are collected for.
    size: Option<u64>,
    slots: Vec<Slot>,
    peers: BTreeMap<ConnId, PeerState>,
    /// After a mismatch with several contributors: the one peer every piece is taken from.
    single_source: bool,
    source: Option<ConnId>,
    done: bool,
    transmits: VecDeque<(ConnId, MetadataMessage)>,
    events: VecDeque<MetadataEvent>,
}

impl MetadataAssembler {
    /// An assembler for the torrent with this info hash.
    pub fn new(info_hash: InfoHash, config: AssemblerConfig) -> MetadataAssembler {
        MetadataAssembler {
            info_hash,
            config,
            size: None,
            slots: Vec::new(),
            peers: BTreeMap::new(),
            single_source: false,
            source: None,
            done: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ---- getters

    /// The size pieces are being collected for, once a peer has told one.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Pieces received and pieces in all (for the current size).
    pub fn progress(&self) -> (usize, usize) {
        let have = self
            .slots
            .iter()
            .filter(|s| matches!(s, Slot::Have { .. }))
            .count();
        (have, self.slots.len())
    }

    /// True once the verified info dictionary has been handed out.
    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// Peers that can be asked (added, not proven bad), whatever size they claim.
    pub fn usable_peers(&self) -> usize {
        self.peers.values().filter(|p| !p.bad).count()
    }

    // ---- peers

    /// A peer offers `ut_metadata` with this `metadata_size` (its extension handshake; a
    /// later handshake of the same peer replaces the earlier one). An error means it cannot
    /// help: nothing is kept.
    pub fn add_peer(
        &mut self,
        now: Instant,
        conn: ConnId,
        metadata_size: Option<u64>,
    ) -> Result<(), MetadataPeerError> {
        let size = metadata_size
            .filter(|&s| s > 0)
            .ok_or(MetadataPeerError::NoSize)?;
        if size > self.config.max_size {
            return Err(MetadataPeerError::TooLarge {
                size,
                max: self.config.max_size,
            });
        }
        if let Some(known) = self.peers.get(&conn) {
            if known.size == size {
                return Ok(());
            }
            self.remove_peer(now, conn);
        }
        self.peers.insert(
            conn,
            PeerState {
                size,
                asked: BTreeMap::new(),
                resting_until: Instant::ZERO,
                suspicions: 0,
                bad: false,
            },
        );
        if self.size.is_none() && !self.done {
            self.set_size(size);
        }
        self.settle_size();
        self.assign(now);
        Ok(())
    }

    /// The peer is gone (or no longer offers `ut_metadata`): its requests go to others.
    pub fn remove_peer(&mut self, now: Instant, conn: ConnId) {
        if self.peers.remove(&conn).is_none() {
            return;
        }
        for slot in &mut self.slots {
            if matches!(slot, Slot::Requested { from, .. } if *from == conn) {
                *slot = Slot::Missing;
            }
        }
        if self.source == Some(conn) {
            self.source = None;
        }
        self.settle_size();
        self.assign(now);
    }

    // ---- inputs

    /// A `ut_metadata` message from a peer. `Request`s are not for the assembler (answer
    /// them with [`serve`]) and are ignored, as are unknown types. An error means the peer
    /// broke the protocol: drop it (the assembler has already forgotten it).
    pub fn handle_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        message: &MetadataMessage,
    ) -> Result<(), MetadataPeerError> {
        let result = self.on_message(now, conn, message);
        if result.is_err() {
            self.remove_peer(now, conn);
        }
        self.assign(now);
        result
    }

    fn on_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        message: &MetadataMessage,
    ) -> Result<(), MetadataPeerError> {
        let (piece, total_size, data) = match message {
            MetadataMessage::Request { .. } | MetadataMessage::Unknown { .. } => return Ok(()),
            MetadataMessage::Reject { piece } => {
                if let Some(peer) = self.peers.get_mut(&conn)
                    && take_asked(&mut peer.asked, *piece)
                {
                    peer.resting_until = now + self.config.rest_after_reject;
                    if let Some(slot) = self.slots.get_mut(*piece as usize)
                        && matches!(slot, Slot::Requested { from, .. } if *from == conn)
                    {
                        *slot = Slot::Missing;
                    }
                }
                return Ok(());
            }
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => (*piece, *total_size, data),
        };
        if self.done {
            return Ok(());
        }
        let Some(peer) = self.peers.get_mut(&conn) else {
            return Err(MetadataPeerError::UnknownPeer);
        };
        if peer.bad {
            return Err(MetadataPeerError::Excluded);
        }
        if total_size != peer.size {
            return Err(MetadataPeerError::SizeMismatch {
                claimed: peer.size,
                sent: total_size,
            });
        }
        let pieces = num_pieces(peer.size);
        if u64::from(piece) >= pieces {
            return Err(MetadataPeerError::OutOfRange { piece, pieces });
        }
        if !take_asked(&mut peer.asked, piece) {
            return Err(MetadataPeerError::Unrequested(piece));
        }
        let expected = piece_len(peer.size, piece);
        if data.len() != expected {
            return Err(MetadataPeerError::WrongLength {
                piece,
                len: data.len(),
                expected,
            });
        }
        if Some(peer.size) != self.size {
            // Asked before the assembler moved to another size: nothing to do with it.
            return Ok(());
        }
        let Some(slot) = self.slots.get_mut(piece as usize) else {
            return Ok(());
        };
        if matches!(slot, Slot::Have { .. }) {
            return Ok(());
        }
        *slot = Slot::Have {
            from: conn,
            data: data.clone(),
        };
        if self.slots.iter().all(|s| matches!(s, Slot::Have { .. })) {
            self.verify();
        }
        Ok(())
    }

    /// Time has passed: unanswered requests go to other peers.
    pub fn handle_timeout(&mut self, now: Instant) {
        let rest = now + self.config.rest_after_reject;
        for slot in &mut self.slots {
            if let Slot::Requested { from, deadline } = *slot
                && deadline <= now
            {
                *slot = Slot::Missing;
                if let Some(peer) = self.peers.get_mut(&from) {
                    peer.resting_until = rest;
                }
            }
        }
        self.assign(now);
    }

    // ---- outputs

    /// A message to send to a peer (wrap it as an extended message with the peer's
    /// `ut_metadata` id).
    pub fn poll_transmit(&mut self) -> Option<(ConnId, MetadataMessage)> {
        self.transmits.pop_front()
    }

    /// Something to report.
    pub fn poll_event(&mut self) -> Option<MetadataEvent> {
        self.events.pop_front()
    }

    /// When [`MetadataAssembler::handle_timeout`] must be called next: a request's deadline,
    /// or the end of a rest while a piece is missing.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        let deadlines = self.slots.iter().filter_map(|s| match s {
            Slot::Requested { deadline, .. } => Some(*deadline),
            _ => None,
        });
        let missing = self.slots.iter().any(|s| matches!(s, Slot::Missing));
        let rests = self
            .peers
            .values()
            .filter(|p| missing && !p.bad && Some(p.size) == self.size)
            .map(|p| p.resting_until)
            .filter(|&t| t > Instant::ZERO);
        deadlines.chain(rests).min()
    }

    // ---- internals

    fn set_size(&mut self, size: u64) {
        let pieces = usize::try_from(num_pieces(size)).unwrap_or(0);
        self.size = Some(size);
        self.slots = vec![Slot::Missing; pieces];
        self.single_source = false;
        self.source = None;
    }

    /// When no usable peer claims the current size, moves to the size most usable peers
    /// claim (the smallest of equally common ones).
    fn settle_size(&mut self) {
        if self.done
            || self
                .peers
                .values()
                .any(|p| !p.bad && Some(p.size) == self.size)
        {
            return;
        }
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for p in self.peers.values().filter(|p| !p.bad) {
            *counts.entry(p.size).or_default() += 1;
        }
        let best = counts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(&size, _)| size);
        if let Some(size) = best {
            self.set_size(size);
        }
    }

    /// Can `peer` be asked for pieces of the current size now?
    fn askable(&self, peer: &PeerState, now: Instant) -> bool {
        !peer.bad && Some(peer.size) == self.size && peer.resting_until <= now
    }

    /// Can `peer` be asked for `piece` (not already asked too often without an answer)?
    fn may_ask(&self, conn: ConnId, piece: u32) -> bool {
        self.peers
            .get(&conn)
            .is_some_and(|p| p.asked.get(&piece).is_none_or(|&n| n < MAX_ASKS))
    }

    fn outstanding(&self, conn: ConnId) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Requested { from, .. } if *from == conn))
            .count()
    }

    /// Gives missing pieces to peers with room.
    fn assign(&mut self, now: Instant) {
        if self.done {
            return;
        }
        for peer in self.peers.values_mut() {
            if peer.resting_until <= now {
                // Over: no longer a deadline for poll_timeout.
                peer.resting_until = Instant::ZERO;
            }
        }
        if self.single_source {
            let keep = self
                .source
                .and_then(|s| self.peers.get(&s))
                .is_some_and(|p| self.askable(p, now));
            if !keep {
                self.source = self
                    .peers
                    .iter()
                    .filter(|(_, p)| self.askable(p, now))
                    .min_by_key(|(conn, p)| (p.suspicions, **conn))
                    .map(|(conn, _)| *conn);
            }
        }
        let limit = self.config.requests_per_peer.max(1);
        for index in 0..self.slots.len() {
            if !matches!(self.slots[index], Slot::Missing) {
                continue;
            }
            let Ok(piece) = u32::try_from(index) else {
                break;
            };
            let choice = if self.single_source {
                self.source
                    .filter(|&s| self.outstanding(s) < limit && self.may_ask(s, piece))
            } else {
                self.peers
                    .iter()
                    .filter(|(conn, p)| self.askable(p, now) && self.may_ask(**conn, piece))
                    .map(|(conn, p)| (self.outstanding(*conn), p.suspicions, *conn))
                    .filter(|(busy, _, _)| *busy < limit)
                    .min()
                    .map(|(_, _, conn)| conn)
            };
            let Some(conn) = choice else {
                continue;
            };
            self.slots[index] = Slot::Requested {
                from: conn,
                deadline: now + self.config.request_timeout,
            };
            if let Some(peer) = self.peers.get_mut(&conn) {
                *peer.asked.entry(piece).or_default() += 1;
            }
            self.transmits
                .push_back((conn, MetadataMessage::Request { piece }));
        }
    }

    /// Every piece is in: hash them.
    fn verify(&mut self) {
        let mut hasher = Sha1::new();
        let mut contributors = BTreeSet::new();
        for slot in &self.slots {
            if let Slot::Have { from, data } = slot {
                hasher.update(data);
                contributors.insert(*from);
            }
        }
        if hasher.finalize()[..] == self.info_hash.0[..] {
            let mut info =
                BytesMut::with_capacity(usize::try_from(self.size.unwrap_or(0)).unwrap_or(0));
            for slot in &self.slots {
                if let Slot::Have { data, .. } = slot {
                    info.extend_from_slice(data);
                }
            }
            self.done = true;
            self.slots.clear();
            self.peers.clear();
            self.transmits.clear();
            self.events
                .push_back(MetadataEvent::Complete(info.freeze()));
            return;
        }
        let contributors: Vec<ConnId> = contributors.into_iter().collect();
        let culprit = match contributors[..] {
            [only] => Some(only),
            _ => None,
        };
        for conn in &contributors {
            if let Some(peer) = self.peers.get_mut(conn) {
                peer.suspicions += 1;
                if culprit.is_some() {
                    peer.bad = true;
                    peer.asked.clear();
                }
            }
        }
        for slot in &mut self.slots {
            *slot = Slot::Missing;
        }
        self.single_source = true;
        self.source = None;
        self.events.push_back(MetadataEvent::HashMismatch {
            contributors,
            culprit,
        });
        self.settle_size();
    }
}

#[cfg(test)]
mod tests;
