//! A checker of what one session says on the wire.
//!
//! [`WireCheck`] watches a session of one torrent from the outside, as its driver sees it:
//! every [`Input`] fed to the session and every [`Output`] it drained. It decodes the bytes
//! the session sends and receives on each peer connection (the handshake, then the framed
//! messages), keeps both sides' choke, interest, have and request state, and reports a
//! [`Violation`] whenever the session breaks the protocol:
//!
//! - a `request` to a peer that chokes us (except for a piece the peer allowed fast, BEP 6),
//!   to a peer we are not interested in, for a piece the peer has not announced or for a
//!   piece we already have;
//! - a `piece` to a peer we choke (except an allowed-fast piece), for a block the peer did
//!   not request (or whose request our choke discarded, or our `reject` answered), or of a
//!   piece we have not verified;
//! - a `have`, `bitfield` or `have all` announcing a piece we have not verified;
//! - `interested` sent to a peer that has nothing we lack; after the outputs of an input are
//!   drained, still interested in such a peer, or not interested in a peer that has a
//!   wanted piece we lack while downloading;
//! - bytes sent after a valid handshake that do not decode as messages;
//! - the payload counters of [`TorrentStats`] and of HTTP tracker announces differing from
//!   the payload bytes (the data of `piece` messages) actually sent and received.
//!
//! "Verified" is what the session learnt from the disk: a hash-checked `Write` or a `Verify`
//! answered `Ok` (at the start-up check, or for a spilled piece), or the pieces a test
//! declares verified up front ([`WireCheck::new`]'s `verified`).
//!
//! A connection whose first bytes in either direction are not a BitTorrent handshake (an
//! HTTP tracker announce, an encrypted stream) is not checked as a peer; an HTTP announce's
//! counters are checked against the payload moved before its connection was asked for.
//!
//! Driving it: for each input, call [`WireCheck::input`] (before or after
//! `Session::handle_input`, but before the outputs), then [`WireCheck::output`] for each
//! output in the order drained, then [`WireCheck::after_drain`] with the torrent's stats.
//! Violations accumulate; [`WireCheck::take_violations`] hands them over.

use std::collections::BTreeMap;

use bytes::Bytes;
use thiserror::Error;

use crate::api::{Action, DiskResult, Event, Input, Output, TorrentStats};
use crate::bitfield::Bitfield;
use crate::id::{ConnId, OpId};
use crate::layout::Layout;
use crate::wire::{BlockRequest, Decoder, Handshake, Message, WireError};

/// Outgoing bytes kept per connection until it is known to be a peer (to read an HTTP
/// announce's request line).
const MAX_HEAD: usize = 8 * 1024;

/// One breach of the protocol by the checked session.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Violation {
    /// A request to a peer that chokes us, for a piece it did not allow fast.
    #[error("{conn:?}: request {req:?} to a peer that chokes us")]
    RequestWhileChoked {
        /// The connection.
        conn: ConnId,
        /// The request.
        req: BlockRequest,
    },
    /// A request to a peer we told we are not interested.
    #[error("{conn:?}: request {req:?} while not interested")]
    RequestNotInterested {
        /// The connection.
        conn: ConnId,
        /// The request.
        req: BlockRequest,
    },
    /// A request for a piece the peer has not announced.
    #[error("{conn:?}: request {req:?} for a piece the peer does not have")]
    RequestPeerLacks {
        /// The connection.
        conn: ConnId,
        /// The request.
        req: BlockRequest,
    },
    /// A request for a piece we have verified.
    #[error("{conn:?}: request {req:?} for a piece we have")]
    RequestPieceWeHave {
        /// The connection.
        conn: ConnId,
        /// The request.
        req: BlockRequest,
    },
    /// A block sent to a peer we choke, not of a piece we allowed fast.
    #[error("{conn:?}: block {req:?} sent to a peer we choke")]
    PieceToChokedPeer {
        /// The connection.
        conn: ConnId,
        /// The block.
        req: BlockRequest,
    },
    /// A block the peer did not request (or whose request was discarded or rejected).
    #[error("{conn:?}: block {req:?} sent unrequested")]
    UnrequestedPiece {
        /// The connection.
        conn: ConnId,
        /// The block.
        req: BlockRequest,
    },
    /// A block of a piece we have not verified.
    #[error("{conn:?}: block {req:?} of a piece we have not verified")]
    PieceNotVerified {
        /// The connection.
        conn: ConnId,
        /// The block.
        req: BlockRequest,
    },
    /// A `have`, `bitfield` or `have all` announcing a piece we have not verified.
    #[error("{conn:?}: announced piece {piece} before verifying it")]
    HaveNotVerified {
        /// The connection.
        conn: ConnId,
        /// The piece.
        piece: u32,
    },
    /// `interested` sent to a peer that has nothing we lack.
    #[error("{conn:?}: interested in a peer that has nothing we lack")]
    InterestedInNothing {
        /// The connection.
        conn: ConnId,
    },
    /// Still interested, once the outputs are drained, in a peer that has nothing we lack.
    #[error("{conn:?}: still interested in a peer that has nothing we lack")]
    StaleInterest {
        /// The connection.
        conn: ConnId,
    },
    /// Not interested, once the outputs are drained, in a peer that has a wanted piece we
    /// lack, while downloading.
    #[error("{conn:?}: not interested in a peer that has piece {piece}, which we want")]
    MissedInterest {
        /// The connection.
        conn: ConnId,
        /// A piece the peer has and we want.
        piece: u32,
    },
    /// Bytes sent after a valid handshake that are not valid messages.
    #[error("{conn:?}: sent bytes that do not decode: {error}")]
    Undecodable {
        /// The connection.
        conn: ConnId,
        /// Why.
        error: WireError,
    },
    /// `TorrentStats::uploaded` is not the payload sent.
    #[error("stats say {stats} bytes uploaded, the wire carried {wire}")]
    StatsUploaded {
        /// What the stats say.
        stats: u64,
        /// What was sent.
        wire: u64,
    },
    /// `TorrentStats::downloaded` is not the payload received (within the bytes of
    /// connections the session closed while reading them; see [`WireCheck`]).
    #[error("stats say {stats} bytes downloaded, the wire carried {low}..={high}")]
    StatsDownloaded {
        /// What the stats say.
        stats: u64,
        /// Payload received for certain.
        low: u64,
        /// Payload received at most.
        high: u64,
    },
    /// An HTTP announce whose `uploaded` or `downloaded` is not the payload moved before it.
    #[error(
        "{conn:?}: announce says uploaded={uploaded} downloaded={downloaded}, the wire carried {wire_up} and {wire_down_low}..={wire_down_high}"
    )]
    AnnounceCounters {
        /// The tracker connection.
        conn: ConnId,
        /// The announce's `uploaded`.
        uploaded: u64,
        /// The announce's `downloaded`.
        downloaded: u64,
        /// Payload sent.
        wire_up: u64,
        /// Payload received for certain.
        wire_down_low: u64,
        /// Payload received at most.
        wire_down_high: u64,
    },
}

/// An HTTP announce the session sent, as read from its request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The connection it went on.
    pub conn: ConnId,
    /// The `event` parameter (`started`, `completed`, `stopped`), if any.
    pub event: Option<String>,
    /// The `uploaded` parameter.
    pub uploaded: Option<u64>,
    /// The `downloaded` parameter.
    pub downloaded: Option<u64>,
    /// The `left` parameter.
    pub left: Option<u64>,
}

/// Payload counters at one moment: sent, received for certain, received at most.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    sent: u64,
    received: u64,
    uncertain: u64,
}

/// What a connection turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Nothing decided yet.
    Unknown,
    /// The peer wire protocol.
    Peer,
    /// Not peer wire in plain text (a tracker, an encrypted stream): not checked.
    Other,
}

/// One side's decoder and handshake.
#[derive(Debug, Default)]
struct Stream {
    decoder: Decoder,
    handshake: Option<Handshake>,
    /// The decoder failed: nothing more is read from this side.
    broken: bool,
}

#[derive(Debug)]
struct Conn {
    kind: Kind,
    /// The session closed it, or was told it closed.
    closed: bool,
    out: Stream,
    inc: Stream,
    /// Our first outgoing bytes, until the connection's kind is known.
    head: Vec<u8>,
    /// Counters when the session asked for this connection.
    at_connect: Counters,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_has: Bitfield,
    /// Requests the peer sent that we have neither served nor discarded, with counts.
    their_requests: BTreeMap<BlockRequest, u32>,
    /// Pieces the peer allows us to request while it chokes us.
    allowed_in: Vec<u32>,
    /// Pieces we allow the peer to request while we choke it.
    allowed_out: Vec<u32>,
    /// Payload of `piece` messages received during the current input.
    received_this_input: u64,
    /// The peer did not choke us at some moment of the current input. The session sends
    /// what it decided while handling an input once the input is handled, so a request it
    /// queued while unchoked goes out even if a choke followed in the same input (the peer
    /// sees an ordinary race: requests crossing its choke).
    unchoked_in_input: bool,
}

impl Conn {
    fn new(pieces: usize, at_connect: Counters, num_pieces: u32) -> Self {
        let mut out = Stream::default();
        let mut inc = Stream::default();
        out.decoder.set_num_pieces(num_pieces);
        inc.decoder.set_num_pieces(num_pieces);
        Conn {
            kind: Kind::Unknown,
            closed: false,
            out,
            inc,
            head: Vec::new(),
            at_connect,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_has: Bitfield::new(pieces),
            their_requests: BTreeMap::new(),
            allowed_in: Vec::new(),
            allowed_out: Vec::new(),
            received_this_input: 0,
            unchoked_in_input: false,
        }
    }

    fn fast(&self) -> bool {
        let has = |s: &Stream| s.handshake.is_some_and(|h| h.has(Handshake::FAST));
        has(&self.out) && has(&self.inc)
    }

    /// Both handshakes are through: the session treats the peer as connected.
    fn active(&self) -> bool {
        self.kind == Kind::Peer
            && !self.closed
            && self.out.handshake.is_some()
            && self.inc.handshake.is_some()
    }
}

/// The checker of one session with one torrent (see the module documentation).
#[derive(Debug)]
pub struct WireCheck {
    layout: Layout,
    verified: Bitfield,
    wanted: Bitfield,
    /// The torrent stopped on a disk error: it wants nothing any more.
    failed: bool,
    conns: BTreeMap<ConnId, Conn>,
    /// Disk operations whose `Ok` verifies a piece.
    verifying: BTreeMap<OpId, u32>,
    counters: Counters,
    /// Connections that received blocks or an unchoke during the current input.
    touched: Vec<ConnId>,
    announces: Vec<Announce>,
    violations: Vec<Violation>,
}

impl WireCheck {
    /// A checker for a session whose torrent has `layout` and starts with `verified`
    /// pieces (resume data; a checking session starts with none).
    pub fn new(layout: Layout, verified: Bitfield) -> Self {
        let n = layout.num_pieces() as usize;
        let verified = if verified.len() == n {
            verified
        } else {
            Bitfield::new(n)
        };
        WireCheck {
            layout,
            verified,
            wanted: Bitfield::full(n),
            failed: false,
            conns: BTreeMap::new(),
            verifying: BTreeMap::new(),
            counters: Counters::default(),
            touched: Vec::new(),
            announces: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// The pieces the session wants (a file selection); all of them unless told.
    pub fn set_wanted(&mut self, wanted: Bitfield) {
        if wanted.len() == self.wanted.len() {
            self.wanted = wanted;
        }
    }

    /// The violations found so far, handed over (the list starts empty again).
    pub fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
    }

    /// The HTTP announces seen so far, in order.
    pub fn announces(&self) -> &[Announce] {
        &self.announces
    }

    /// Pieces verified as far as the checker knows.
    pub fn verified(&self) -> &Bitfield {
        &self.verified
    }

    /// Payload bytes sent in `piece` messages.
    pub fn payload_sent(&self) -> u64 {
        self.counters.sent
    }

    /// Payload bytes received in `piece` messages the session read for certain.
    pub fn payload_received(&self) -> u64 {
        self.counters.received
    }

    fn report(&mut self, v: Violation) {
        self.violations.push(v);
    }

    fn conn(&mut self, conn: ConnId) -> &mut Conn {
        let n = self.layout.num_pieces();
        let at = self.counters;
        self.conns
            .entry(conn)
            .or_insert_with(|| Conn::new(n as usize, at, n))
    }

    /// An input the session is given.
    pub fn input(&mut self, input: &Input) {
        for conn in std::mem::take(&mut self.touched) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.received_this_input = 0;
                c.unchoked_in_input = false;
            }
        }
        match input {
            Input::Received { conn, data, .. } => self.received(*conn, data.clone()),
            Input::Closed { conn, .. } => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.closed = true;
                }
            }
            Input::Disk { op, result, .. } => {
                if let Some(piece) = self.verifying.remove(op)
                    && *result == DiskResult::Ok
                {
                    self.verified.set(piece as usize);
                }
            }
            Input::Timeout { .. }
            | Input::Connected { .. }
            | Input::Sent { .. }
            | Input::Datagram { .. }
            | Input::Resolved { .. } => {}
        }
    }

    /// An output the session produced, in the order drained.
    pub fn output(&mut self, output: &Output) {
        match output {
            Output::Action(Action::Connect { conn, .. }) => {
                self.conn(*conn);
            }
            Output::Action(Action::Send { conn, data }) => self.sent(*conn, data.clone()),
            Output::Action(Action::Close { conn }) => {
                let conn = *conn;
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.closed = true;
                    // It may have stopped reading part-way through what it received.
                    if self.touched.contains(&conn) {
                        let bytes = std::mem::take(&mut c.received_this_input);
                        self.counters.received -= bytes;
                        self.counters.uncertain += bytes;
                    }
                }
            }
            Output::Action(Action::Write {
                op,
                piece,
                expected: Some(_),
                ..
            })
            | Output::Action(Action::Verify { op, piece, .. }) => {
                self.verifying.insert(*op, *piece);
            }
            Output::Event(Event::PieceVerified { piece, .. }) => {
                self.verified.set(*piece as usize);
            }
            Output::Event(Event::DiskError { .. }) => self.failed = true,
            _ => {}
        }
    }

    /// The outputs of one input are drained: checks what must hold between inputs, and the
    /// payload counters against `stats` (the torrent's, if the session still has it).
    pub fn after_drain(&mut self, stats: Option<&TorrentStats>) {
        let downloading = stats.is_some_and(|s| !s.checking) && !self.failed;
        let mut found = Vec::new();
        for (&conn, c) in &self.conns {
            if !c.active() {
                continue;
            }
            let lacking = first_lacking(&c.peer_has, &self.verified, None);
            if c.am_interested && lacking.is_none() {
                found.push(Violation::StaleInterest { conn });
            }
            if !c.am_interested
                && downloading
                && let Some(piece) = first_lacking(&c.peer_has, &self.verified, Some(&self.wanted))
            {
                found.push(Violation::MissedInterest { conn, piece });
            }
        }
        if let Some(s) = stats {
            let k = self.counters;
            if s.uploaded != k.sent {
                found.push(Violation::StatsUploaded {
                    stats: s.uploaded,
                    wire: k.sent,
                });
            }
            if s.downloaded < k.received || s.downloaded > k.received + k.uncertain {
                found.push(Violation::StatsDownloaded {
                    stats: s.downloaded,
                    low: k.received,
                    high: k.received + k.uncertain,
                });
            }
        }
        self.violations.extend(found);
    }

    fn received(&mut self, conn_id: ConnId, data: Bytes) {
        let c = self.conn(conn_id);
        if c.closed || c.kind == Kind::Other || c.inc.broken {
            return;
        }
        c.inc.decoder.feed(data);
        let choking = c.peer_choking;
        if !self.touched.contains(&conn_id) {
            self.touched.push(conn_id);
        }
        let Some(c) = self.conns.get_mut(&conn_id) else {
            return;
        };
        c.unchoked_in_input |= !choking;
        if c.inc.handshake.is_none() {
            match c.inc.decoder.handshake() {
                Ok(Some(h)) => {
                    c.inc.handshake = Some(h);
                    c.kind = Kind::Peer;
                }
                Ok(None) => return,
                Err(_) => {
                    c.inc.broken = true;
                    if c.out.handshake.is_none() {
                        c.kind = Kind::Other;
                    }
                    return;
                }
            }
        }
        loop {
            let Some(c) = self.conns.get_mut(&conn_id) else {
                return;
            };
            match c.inc.decoder.next_message() {
                Ok(Some(msg)) => self.on_received(conn_id, msg),
                Ok(None) => return,
                // The session closes the peer; what it read up to here it has applied.
                Err(_) => {
                    c.inc.broken = true;
                    return;
                }
            }
        }
    }

    fn on_received(&mut self, conn_id: ConnId, msg: Message) {
        let n = self.layout.num_pieces() as usize;
        let layout = &self.layout;
        let Some(c) = self.conns.get_mut(&conn_id) else {
            return;
        };
        match msg {
            Message::Choke => c.peer_choking = true,
            Message::Unchoke => {
                c.peer_choking = false;
                c.unchoked_in_input = true;
                if !self.touched.contains(&conn_id) {
                    self.touched.push(conn_id);
                }
            }
            Message::Have(p) => {
                if (p as usize) < n {
                    c.peer_has.set(p as usize);
                }
            }
            Message::Bitfield(bytes) => {
                if let Ok(has) = Bitfield::from_bytes(&bytes, n) {
                    for p in has.ones() {
                        c.peer_has.set(p);
                    }
                }
            }
            Message::HaveAll => c.peer_has.fill(),
            Message::Request(req) => *c.their_requests.entry(req).or_insert(0) += 1,
            Message::AllowedFast(p) => {
                if !c.allowed_in.contains(&p) && c.allowed_in.len() < n.max(64) {
                    c.allowed_in.push(p);
                }
            }
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
                if layout.block_at(piece, offset, len).is_some() {
                    c.received_this_input += u64::from(len);
                    self.counters.received += u64::from(len);
                    if !self.touched.contains(&conn_id) {
                        self.touched.push(conn_id);
                    }
                }
            }
            Message::KeepAlive
            | Message::Interested
            | Message::NotInterested
            | Message::HaveNone
            | Message::Cancel(_)
            | Message::Reject(_)
            | Message::Port(_)
            | Message::Suggest(_)
            | Message::Extended { .. }
            | Message::Unknown { .. } => {}
        }
    }

    fn sent(&mut self, conn_id: ConnId, data: Bytes) {
        let c = self.conn(conn_id);
        if c.kind == Kind::Other || c.out.broken {
            return;
        }
        if c.out.handshake.is_none() && c.head.len() < MAX_HEAD {
            let room = MAX_HEAD - c.head.len();
            c.head.extend_from_slice(&data[..data.len().min(room)]);
        }
        c.out.decoder.feed(data);
        if c.out.handshake.is_none() {
            match c.out.decoder.handshake() {
                Ok(Some(h)) => {
                    c.out.handshake = Some(h);
                    c.kind = Kind::Peer;
                    c.head = Vec::new();
                }
                Ok(None) => return,
                Err(_) => {
                    c.out.broken = true;
                    c.kind = Kind::Other;
                    let head = std::mem::take(&mut c.head);
                    let at = c.at_connect;
                    if let Some(a) = parse_announce(conn_id, &head) {
                        self.check_announce(&a, at);
                        self.announces.push(a);
                    }
                    return;
                }
            }
        }
        loop {
            let Some(c) = self.conns.get_mut(&conn_id) else {
                return;
            };
            match c.out.decoder.next_message() {
                Ok(Some(msg)) => self.on_sent(conn_id, msg),
                Ok(None) => return,
                Err(error) => {
                    c.out.broken = true;
                    self.report(Violation::Undecodable {
                        conn: conn_id,
                        error,
                    });
                    return;
                }
            }
        }
    }

    fn check_announce(&mut self, a: &Announce, at: Counters) {
        let (Some(uploaded), Some(downloaded)) = (a.uploaded, a.downloaded) else {
            return;
        };
        if uploaded != at.sent
            || downloaded < at.received
            || downloaded > at.received + at.uncertain
        {
            self.report(Violation::AnnounceCounters {
                conn: a.conn,
                uploaded,
                downloaded,
                wire_up: at.sent,
                wire_down_low: at.received,
                wire_down_high: at.received + at.uncertain,
            });
        }
    }

    fn on_sent(&mut self, conn: ConnId, msg: Message) {
        let n = self.layout.num_pieces() as usize;
        let mut found = Vec::new();
        let verified = &self.verified;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match msg {
            Message::Choke => {
                c.am_choking = true;
                // Without the fast extension a choke discards the peer's requests; with it,
                // each is answered (a block or a reject).
                if !c.fast() {
                    c.their_requests.clear();
                }
            }
            Message::Unchoke => c.am_choking = false,
            Message::Interested => {
                c.am_interested = true;
                if first_lacking(&c.peer_has, verified, None).is_none() {
                    found.push(Violation::InterestedInNothing { conn });
                }
            }
            Message::NotInterested => c.am_interested = false,
            Message::Have(piece) => {
                if !verified.get(piece as usize) {
                    found.push(Violation::HaveNotVerified { conn, piece });
                }
            }
            Message::Bitfield(bytes) => {
                let has = Bitfield::from_bytes(&bytes, n).unwrap_or_else(|_| Bitfield::new(n));
                if let Some(piece) = has.ones().find(|&p| !verified.get(p)) {
                    found.push(Violation::HaveNotVerified {
                        conn,
                        piece: piece as u32,
                    });
                }
            }
            Message::HaveAll => {
                if let Some(piece) = (0..n).find(|&p| !verified.get(p)) {
                    found.push(Violation::HaveNotVerified {
                        conn,
                        piece: piece as u32,
                    });
                }
            }
            Message::Request(req) => {
                let fast_ok = c.fast() && c.allowed_in.contains(&req.piece);
                if c.peer_choking && !c.unchoked_in_input && !fast_ok {
                    found.push(Violation::RequestWhileChoked { conn, req });
                }
                if !c.am_interested {
                    found.push(Violation::RequestNotInterested { conn, req });
                }
                if !c.peer_has.get(req.piece as usize) {
                    found.push(Violation::RequestPeerLacks { conn, req });
                }
                if verified.get(req.piece as usize) {
                    found.push(Violation::RequestPieceWeHave { conn, req });
                }
            }
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
                let req = BlockRequest { piece, offset, len };
                self.counters.sent += u64::from(len);
                let fast_ok = c.fast() && c.allowed_out.contains(&piece);
                if c.am_choking && !fast_ok {
                    found.push(Violation::PieceToChokedPeer { conn, req });
                }
                match c.their_requests.get_mut(&req) {
                    Some(count) if *count > 1 => *count -= 1,
                    Some(_) => {
                        c.their_requests.remove(&req);
                    }
                    None => found.push(Violation::UnrequestedPiece { conn, req }),
                }
                if !verified.get(piece as usize) {
                    found.push(Violation::PieceNotVerified { conn, req });
                }
            }
            Message::Reject(req) => {
                c.their_requests.remove(&req);
            }
            Message::AllowedFast(p) => {
                if !c.allowed_out.contains(&p) {
                    c.allowed_out.push(p);
                }
            }
            Message::KeepAlive
            | Message::HaveNone
            | Message::Cancel(_)
            | Message::Port(_)
            | Message::Suggest(_)
            | Message::Extended { .. }
            | Message::Unknown { .. } => {}
        }
        self.violations.extend(found);
    }
}

/// The first piece `has` holds that `verified` lacks (and `wanted` holds, if given).
fn first_lacking(has: &Bitfield, verified: &Bitfield, wanted: Option<&Bitfield>) -> Option<u32> {
    has.ones()
        .find(|&p| !verified.get(p) && wanted.is_none_or(|w| w.get(p)))
        .map(|p| p as u32)
}

/// The parameters of an HTTP announce from its request line, if `head` starts with one.
fn parse_announce(conn: ConnId, head: &[u8]) -> Option<Announce> {
    let rest = head.strip_prefix(b"GET ")?;
    let end = rest.iter().position(|&b| b == b' ' || b == b'\r')?;
    let target = std::str::from_utf8(rest.get(..end)?).ok()?;
    let (_, query) = target.split_once('?')?;
    let mut a = Announce {
        conn,
        event: None,
        uploaded: None,
        downloaded: None,
        left: None,
    };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "event" => a.event = Some(value.to_string()),
            "uploaded" => a.uploaded = value.parse().ok(),
            "downloaded" => a.downloaded = value.parse().ok(),
            "left" => a.left = value.parse().ok(),
            _ => {}
        }
    }
    Some(a)
}

#[cfg(test)]
mod tests;
