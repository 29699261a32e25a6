//! The peer wire protocol (BEP 3), with the message ids of the fast extension (BEP 6) and
//! the extension protocol (BEP 10) recognised.
//!
//! A connection starts with a 68-byte [`Handshake`]; after it every message is a frame: a
//! 4-byte big-endian length, then (unless the length is 0, a keep-alive) a 1-byte message id
//! and `length - 1` bytes of payload.
//!
//! [`Decoder`] is the receiving half: a streaming, zero-copy, bounded decoder. The sending
//! half is [`Handshake::encode`], [`Message::encode`] and, for the zero-copy send path of
//! blocks, [`encode_piece_header`].

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::id::{InfoHash, PeerId};

/// The protocol string of the handshake.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Bytes in a handshake.
pub const HANDSHAKE_LEN: usize = 68;
/// Largest `piece` payload accepted (we never request more than a 16 KiB block).
pub const MAX_BLOCK: u32 = 16 * 1024;
/// Largest BEP 10 extended message accepted.
pub const MAX_EXTENDED: u32 = 1 << 20;
/// Largest payload of a message id we do not know, skipped without buffering beyond this.
pub const MAX_UNKNOWN: u32 = 1 << 16;
/// Largest piece count a `bitfield` is bounded by before [`Decoder::set_num_pieces`] is
/// called (e.g. while fetching metadata). A torrent file within
/// [`MAX_TORRENT_FILE`](crate::metainfo::MAX_TORRENT_FILE) holds fewer piece hashes than this.
pub const MAX_PIECES: u32 = 1 << 22;
/// Global cap on a frame's length prefix, checked before the message id is even known:
/// above this the frame is rejected as soon as its 4 length bytes are in.
pub const MAX_FRAME: u32 = 1 << 24;

// Every per-id bound lies within the global cap, and `MAX_PIECES` covers every torrent file
// the metainfo parser accepts (20 bytes of hash per piece).
const _: () = assert!(MAX_PIECES / 8 < MAX_FRAME && MAX_EXTENDED < MAX_FRAME);
const _: () = assert!(MAX_PIECES as usize >= crate::metainfo::MAX_TORRENT_FILE / 20);

/// Bytes before a frame's payload: the length prefix and the message id.
const HEADER_LEN: usize = 5;

/// Message ids (BEP 3, BEP 6, BEP 10).
mod msg_id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const PORT: u8 = 9;
    pub const SUGGEST: u8 = 13;
    pub const HAVE_ALL: u8 = 14;
    pub const HAVE_NONE: u8 = 15;
    pub const REJECT: u8 = 16;
    pub const ALLOWED_FAST: u8 = 17;
    pub const EXTENDED: u8 = 20;
}
use msg_id::*;

/// Whether this decoder knows the message `id` (and so keeps its payload).
fn is_known(id: u8) -> bool {
    matches!(id, CHOKE..=PORT | SUGGEST..=ALLOWED_FAST | EXTENDED)
}

fn to_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The handshake that opens a connection (BEP 3).
pub struct Handshake {
    /// Extension bits (BEP 10 and others).
    pub reserved: [u8; 8],
    /// The torrent.
    pub info_hash: InfoHash,
    /// The sender's peer id.
    pub peer_id: PeerId,
}

impl Handshake {
    /// Reserved bit for BEP 10 (byte 5, 0x10).
    pub const EXTENSION_PROTOCOL: (usize, u8) = (5, 0x10);
    /// Reserved bit for BEP 6 (byte 7, 0x04).
    pub const FAST: (usize, u8) = (7, 0x04);
    /// Reserved bit for BEP 5 (byte 7, 0x01).
    pub const DHT: (usize, u8) = (7, 0x01);

    /// The handshake's bytes.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = 19;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id.0);
        out
    }

    /// Whether the reserved `bit` (one of the associated constants) is set. A byte index
    /// outside the 8 reserved bytes is never set.
    pub fn has(&self, bit: (usize, u8)) -> bool {
        self.reserved.get(bit.0).is_some_and(|b| b & bit.1 != 0)
    }

    /// Sets the reserved `bit` (one of the associated constants); out-of-range bytes are
    /// ignored.
    pub fn set(&mut self, bit: (usize, u8)) {
        if let Some(b) = self.reserved.get_mut(bit.0) {
            *b |= bit.1;
        }
    }

    /// Parses the 68 bytes after the pstrlen and protocol string have been checked.
    fn decode(buf: &[u8; HANDSHAKE_LEN]) -> Handshake {
        let mut h = Handshake {
            reserved: [0; 8],
            info_hash: InfoHash([0; 20]),
            peer_id: PeerId([0; 20]),
        };
        h.reserved.copy_from_slice(&buf[20..28]);
        h.info_hash.0.copy_from_slice(&buf[28..48]);
        h.peer_id.0.copy_from_slice(&buf[48..68]);
        h
    }
}

/// A block request or cancel: `len` bytes at `offset` within `piece`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRequest {
    /// The piece.
    pub piece: u32,
    /// The offset within the piece.
    pub offset: u32,
    /// The length in bytes.
    pub len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// A peer wire message (BEP 3, BEP 6 fast extension, BEP 10, BEP 5 port).
pub enum Message {
    /// Nothing (a zero-length frame).
    KeepAlive,
    /// No more requests will be served.
    Choke,
    /// Requests will be served.
    Unchoke,
    /// The sender wants pieces we have.
    Interested,
    /// The sender wants nothing we have.
    NotInterested,
    /// The sender has this piece.
    Have(u32),
    /// Raw payload; validated against the torrent by `Bitfield::from_bytes`.
    Bitfield(Bytes),
    /// Asks for a block.
    Request(BlockRequest),
    /// A block.
    Piece {
        /// The piece.
        piece: u32,
        /// The offset within the piece.
        offset: u32,
        /// The block's bytes.
        data: Bytes,
    },
    /// Withdraws a request.
    Cancel(BlockRequest),
    /// The sender's DHT port (BEP 5).
    Port(u16),
    /// A piece the sender suggests (BEP 6).
    Suggest(u32),
    /// The sender has every piece (BEP 6).
    HaveAll,
    /// The sender has no piece (BEP 6).
    HaveNone,
    /// A request that will not be served (BEP 6).
    Reject(BlockRequest),
    /// A piece the sender serves even while choking (BEP 6).
    AllowedFast(u32),
    /// An extension message (BEP 10).
    Extended {
        /// The extended message id.
        id: u8,
        /// Its payload.
        payload: Bytes,
    },
    /// A message id this decoder does not know; its payload was skipped. `len` is the
    /// payload's length, the id byte not included (the frame's length prefix is `len + 1`).
    Unknown {
        /// The message id.
        id: u8,
        /// Its payload length.
        len: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
/// Why bytes from a peer are not valid wire data (or a decoder was misused).
pub enum WireError {
    /// The first 68 bytes are not a BitTorrent handshake.
    #[error("not a BitTorrent handshake")]
    BadHandshake,
    /// `len` is the frame's length prefix (id byte included); `id` is `None` when the length
    /// alone exceeded [`MAX_FRAME`].
    #[error("{} of {len} bytes exceeds the limit of {max}", MessageName(*id))]
    TooLong {
        /// The message id (`None`: the length alone was too long).
        id: Option<u8>,
        /// The length prefix.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A fixed-size message whose length prefix is not its size.
    #[error("{} of {len} bytes, expected {expected}", MessageName(Some(*id)))]
    BadLength {
        /// The message id.
        id: u8,
        /// The length prefix.
        len: u32,
        /// The message's size.
        expected: u32,
    },
    /// A `piece` or `extended` message too short for its fixed fields.
    #[error("{} of {len} bytes, expected at least {min}", MessageName(Some(*id)))]
    TooShort {
        /// The message id.
        id: u8,
        /// The length prefix.
        len: u32,
        /// The least the message needs.
        min: u32,
    },
    /// Usage error: [`Decoder::next_message`] was called before [`Decoder::handshake`]
    /// returned the handshake. Nothing was consumed; the decoder is still usable.
    #[error("next_message called before the handshake was decoded")]
    HandshakePending,
    /// Usage error: [`Decoder::handshake`] was called after it had returned the handshake
    /// (or on a decoder made by [`Decoder::after_handshake`]). Nothing was consumed.
    #[error("handshake called after the handshake was decoded")]
    HandshakeDone,
}

/// Names a message id for error messages: `a have message`, `a message` (id unknown yet).
struct MessageName(Option<u8>);

impl std::fmt::Display for MessageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            None => return f.write_str("a message"),
            Some(0) => "choke",
            Some(1) => "unchoke",
            Some(2) => "interested",
            Some(3) => "not-interested",
            Some(4) => "have",
            Some(5) => "bitfield",
            Some(6) => "request",
            Some(7) => "piece",
            Some(8) => "cancel",
            Some(9) => "port",
            Some(13) => "suggest",
            Some(14) => "have-all",
            Some(15) => "have-none",
            Some(16) => "reject",
            Some(17) => "allowed-fast",
            Some(20) => "extended",
            Some(id) => return write!(f, "a message with unknown id {id}"),
        };
        write!(f, "a {name} message")
    }
}

/// Appends a frame header for message `id` with `payload` bytes after the id byte.
fn put_header(out: &mut BytesMut, id: u8, payload: u32) {
    out.reserve(HEADER_LEN.saturating_add(to_usize(payload)));
    out.put_u32(payload.saturating_add(1));
    out.put_u8(id);
}

/// A fixed-size frame on the stack with its length prefix and id filled in: small messages
/// are built there and appended to the output in one copy.
fn stack_frame<const N: usize>(length: u32, id: u8) -> [u8; N] {
    let mut frame = [0u8; N];
    frame[..4].copy_from_slice(&length.to_be_bytes());
    frame[4] = id;
    frame
}

/// A message with no payload, as one append.
fn put_bare(out: &mut BytesMut, id: u8) {
    out.extend_from_slice(&stack_frame::<HEADER_LEN>(1, id));
}

fn put_piece_index(out: &mut BytesMut, id: u8, piece: u32) {
    let mut frame = stack_frame::<{ HEADER_LEN + 4 }>(5, id);
    frame[5..].copy_from_slice(&piece.to_be_bytes());
    out.extend_from_slice(&frame);
}

fn put_request(out: &mut BytesMut, id: u8, r: &BlockRequest) {
    let mut frame = stack_frame::<{ HEADER_LEN + 12 }>(13, id);
    frame[5..9].copy_from_slice(&r.piece.to_be_bytes());
    frame[9..13].copy_from_slice(&r.offset.to_be_bytes());
    frame[13..].copy_from_slice(&r.len.to_be_bytes());
    out.extend_from_slice(&frame);
}

/// `data` cut to what a frame can describe after `overhead` bytes of header fields. Longer
/// payloads are a caller bug; cutting them keeps the stream framed.
fn fit(data: &[u8], overhead: u32) -> (&[u8], u32) {
    let max = u32::MAX - overhead;
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX).min(max);
    (data.get(..to_usize(len)).unwrap_or(data), len)
}

impl Message {
    /// Appends the framed message (length prefix included). A payload too long for a 32-bit
    /// length prefix (a caller bug) is cut to fit, so the stream stays framed.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Message::KeepAlive => out.put_u32(0),
            Message::Choke => put_bare(out, CHOKE),
            Message::Unchoke => put_bare(out, UNCHOKE),
            Message::Interested => put_bare(out, INTERESTED),
            Message::NotInterested => put_bare(out, NOT_INTERESTED),
            Message::HaveAll => put_bare(out, HAVE_ALL),
            Message::HaveNone => put_bare(out, HAVE_NONE),
            Message::Have(piece) => put_piece_index(out, HAVE, *piece),
            Message::Suggest(piece) => put_piece_index(out, SUGGEST, *piece),
            Message::AllowedFast(piece) => put_piece_index(out, ALLOWED_FAST, *piece),
            Message::Bitfield(bits) => {
                let (bits, len) = fit(bits, 1);
                put_header(out, BITFIELD, len);
                out.put_slice(bits);
            }
            Message::Request(r) => put_request(out, REQUEST, r),
            Message::Cancel(r) => put_request(out, CANCEL, r),
            Message::Reject(r) => put_request(out, REJECT, r),
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                let (data, len) = fit(data, 9);
                out.reserve(13usize.saturating_add(data.len()));
                encode_piece_header(*piece, *offset, len, out);
                out.put_slice(data);
            }
            Message::Port(port) => {
                put_header(out, PORT, 2);
                out.put_u16(*port);
            }
            Message::Extended { id, payload } => {
                let (payload, len) = fit(payload, 2);
                put_header(out, EXTENDED, len.saturating_add(1));
                out.put_u8(*id);
                out.put_slice(payload);
            }
            Message::Unknown { id, len } => {
                let len = (*len).min(u32::MAX - 1);
                put_header(out, *id, len);
                out.put_bytes(0, to_usize(len));
            }
        }
    }
}

/// Appends the 13-byte header of a `piece` message carrying `len` bytes; the payload is
/// sent after it as its own buffer, uncopied.
pub fn encode_piece_header(piece: u32, offset: u32, len: u32, out: &mut BytesMut) {
    let mut header = stack_frame::<{ HEADER_LEN + 8 }>(len.saturating_add(9), PIECE);
    header[5..9].copy_from_slice(&piece.to_be_bytes());
    header[9..].copy_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&header);
}

/// Builds a message from its id and its complete, length-checked payload (the bytes after
/// the id). `bytes` returns a range of the payload as `Bytes`; it is called only for
/// messages that keep their payload, so fixed-size messages cost no reference count.
fn build(id: u8, payload: &[u8], bytes: impl FnOnce(Range<usize>) -> Bytes) -> Message {
    let n = payload.len();
    // The fixed fields, zero-padded: the lengths were checked against the id, but reading
    // from a padded array keeps this panic-free whatever the caller passes.
    let mut head = [0u8; 12];
    let k = n.min(head.len());
    head[..k].copy_from_slice(&payload[..k]);
    let [a, b, c, d, e, f, g, h, i, j, k2, l] = head;
    let first = u32::from_be_bytes([a, b, c, d]);
    let second = u32::from_be_bytes([e, f, g, h]);
    let request = BlockRequest {
        piece: first,
        offset: second,
        len: u32::from_be_bytes([i, j, k2, l]),
    };
    match id {
        CHOKE => Message::Choke,
        UNCHOKE => Message::Unchoke,
        INTERESTED => Message::Interested,
        NOT_INTERESTED => Message::NotInterested,
        HAVE => Message::Have(first),
        BITFIELD => Message::Bitfield(bytes(0..n)),
        REQUEST => Message::Request(request),
        PIECE => Message::Piece {
            piece: first,
            offset: second,
            data: bytes(8.min(n)..n),
        },
        CANCEL => Message::Cancel(request),
        PORT => Message::Port(u16::from_be_bytes([a, b])),
        SUGGEST => Message::Suggest(first),
        HAVE_ALL => Message::HaveAll,
        HAVE_NONE => Message::HaveNone,
        REJECT => Message::Reject(request),
        ALLOWED_FAST => Message::AllowedFast(first),
        EXTENDED => Message::Extended {
            id: a,
            payload: bytes(1.min(n)..n),
        },
        _ => Message::Unknown {
            id,
            len: u32::try_from(n).unwrap_or(u32::MAX),
        },
    }
}

/// Where the decoder is in the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum State {
    /// Waiting for the 68-byte handshake.
    #[default]
    Handshake,
    /// At a frame boundary: the next bytes are a length prefix.
    Header,
    /// A frame whose 5 header bytes were consumed and whose payload lies across fed chunks:
    /// `got` of its `payload` bytes have been copied into `Decoder::partial` (or, for an
    /// unknown id, skipped).
    Body { id: u8, payload: u32, got: u32 },
    /// A protocol error was returned; the stream cannot be resynchronised. Every later call
    /// returns the same error and fed bytes are dropped.
    Failed(WireError),
}

/// A streaming decoder for one connection: a handshake, then length-prefixed messages.
/// Gives the same results for any split of the byte stream. Never allocates more than a
/// frame's bound: a length prefix above the bound for its message id is an error before any
/// of the payload is buffered.
///
/// # Buffering
///
/// Fed buffers are kept as they are in a queue of `Bytes` chunks (no empty chunk is ever
/// queued). A frame that lies within the front chunk is decoded in place: its payload is a
/// slice of that chunk (a reference count, no copy) and the chunk is advanced past it.
/// A frame that straddles chunks is the only one copied: once its header is read, its payload
/// is gathered into `partial`, a contiguous buffer reserved to the payload's (checked) length,
/// copying each byte once however small the feeds. An unknown message's payload is dropped
/// as it arrives instead. Decoding is thus O(frame) work per frame, whatever the feed sizes.
///
/// The decoder holds whatever was fed and not yet decoded, so a caller should drain
/// [`next_message`](Decoder::next_message) after each [`feed`](Decoder::feed) (or bound
/// [`buffered`](Decoder::buffered)).
///
/// # Errors and usage errors
///
/// Protocol errors ([`WireError::BadHandshake`], [`WireError::TooLong`],
/// [`WireError::BadLength`], [`WireError::TooShort`]) are final: the decoder drops its buffers
/// and returns the same error from then on. Calling `next_message` before the handshake was
/// decoded returns [`WireError::HandshakePending`] and calling `handshake` after it was
/// returns [`WireError::HandshakeDone`]; these change nothing. Use
/// [`Decoder::after_handshake`] for a stream that starts directly with messages.
#[derive(Default)]
pub struct Decoder {
    /// Fed chunks not yet consumed, none of them empty.
    chunks: VecDeque<Bytes>,
    /// Total length of `chunks`.
    queued: usize,
    /// The payload gathered so far of a frame straddling chunks (see `State::Body`).
    partial: BytesMut,
    state: State,
    num_pieces: Option<u32>,
}

impl fmt::Debug for Decoder {
    /// A summary: the buffered bytes themselves are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("state", &self.state)
            .field("chunks", &self.chunks.len())
            .field("buffered", &self.buffered())
            .field("num_pieces", &self.num_pieces)
            .finish()
    }
}

impl Decoder {
    /// A decoder expecting the handshake first.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder for a stream whose handshake was already dealt with: it starts at a frame
    /// boundary, and [`next_message`](Decoder::next_message) can be called right away.
    pub fn after_handshake() -> Self {
        Decoder {
            state: State::Header,
            ..Self::default()
        }
    }

    /// Bounds `bitfield` frames to a torrent of `n` pieces (until called, any bitfield up to
    /// the largest torrent is allowed). Frames above [`MAX_FRAME`] stay rejected whatever `n`.
    pub fn set_num_pieces(&mut self, n: u32) {
        self.num_pieces = Some(n);
    }

    /// Appends bytes from the socket. Payloads of complete messages are zero-copy slices of
    /// these buffers where they do not straddle two of them. After a protocol error the bytes
    /// are dropped.
    pub fn feed(&mut self, data: Bytes) {
        if data.is_empty() || matches!(self.state, State::Failed(_)) {
            return;
        }
        self.queued = self.queued.saturating_add(data.len());
        self.chunks.push_back(data);
    }

    /// The handshake, once all 68 bytes are in. Call until it returns `Some`, then switch to
    /// `next_message`. Garbage is rejected as soon as the first byte that differs from
    /// `19, "BitTorrent protocol"` is in.
    pub fn handshake(&mut self) -> Result<Option<Handshake>, WireError> {
        match &self.state {
            State::Handshake => {}
            State::Failed(e) => return Err(e.clone()),
            State::Header | State::Body { .. } => return Err(WireError::HandshakeDone),
        }
        let mut buf = [0u8; HANDSHAKE_LEN];
        let n = self.peek(&mut buf);
        let expected = std::iter::once(&19u8).chain(PROTOCOL.iter());
        if !buf
            .iter()
            .take(n)
            .zip(expected)
            .all(|(got, want)| got == want)
        {
            return self.fail(WireError::BadHandshake);
        }
        if n < HANDSHAKE_LEN {
            return Ok(None);
        }
        self.consume(HANDSHAKE_LEN);
        self.state = State::Header;
        Ok(Some(Handshake::decode(&buf)))
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        match &self.state {
            State::Header => {}
            State::Body { .. } => return Ok(self.continue_body()),
            State::Handshake => return Err(WireError::HandshakePending),
            State::Failed(e) => return Err(e.clone()),
        }
        let mut header = [0u8; HEADER_LEN];
        // Usually the front chunk holds the whole header: a fixed-size copy, inlined.
        let n = match self.chunks.front() {
            Some(front) if front.len() >= HEADER_LEN => {
                header.copy_from_slice(&front[..HEADER_LEN]);
                HEADER_LEN
            }
            _ => self.peek(&mut header),
        };
        let [l0, l1, l2, l3, id] = header;
        if n < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([l0, l1, l2, l3]);
        if len == 0 {
            self.consume(4);
            return Ok(Some(Message::KeepAlive));
        }
        if len > MAX_FRAME {
            return self.fail(WireError::TooLong {
                id: None,
                len,
                max: MAX_FRAME,
            });
        }
        if n < HEADER_LEN {
            return Ok(None);
        }
        if let Err(e) = self.check_len(id, len) {
            return self.fail(e);
        }

        // Fast path: the whole frame is in the front chunk; decode it in place.
        let frame_len = to_usize(len).saturating_add(4);
        let in_place = self
            .chunks
            .front()
            .filter(|front| front.len() >= frame_len)
            .map(|front| {
                let payload = front.get(HEADER_LEN..frame_len).unwrap_or_default();
                // In range: `HEADER_LEN <= frame_len <= front.len()`.
                build(id, payload, |r| {
                    front.slice(HEADER_LEN + r.start..HEADER_LEN + r.end)
                })
            });
        if let Some(message) = in_place {
            self.consume(frame_len);
            return Ok(Some(message));
        }

        // Slow path: the frame straddles chunks (or is not all in yet, and so will).
        self.consume(HEADER_LEN);
        let payload = len - 1; // `len > 0` here.
        if is_known(id) {
            self.partial.reserve(to_usize(payload));
        }
        self.state = State::Body {
            id,
            payload,
            got: 0,
        };
        Ok(self.continue_body())
    }

    /// Bytes fed but not yet returned as messages: the queued chunks plus, for a frame
    /// straddling chunks, its header and the payload gathered (or skipped) so far. After a
    /// protocol error, 0.
    pub fn buffered(&self) -> usize {
        let in_frame = match self.state {
            State::Body { got, .. } => HEADER_LEN.saturating_add(to_usize(got)),
            _ => 0,
        };
        self.queued.saturating_add(in_frame)
    }

    /// Checks a frame's length prefix `len` (id byte included, not 0) against the bounds of
    /// message `id`.
    fn check_len(&self, id: u8, len: u32) -> Result<(), WireError> {
        let exact = |expected: u32| {
            if len == expected {
                Ok(())
            } else {
                Err(WireError::BadLength { id, len, expected })
            }
        };
        let within = |min: u32, max: u32| {
            if len < min {
                Err(WireError::TooShort { id, len, min })
            } else if len > max {
                Err(WireError::TooLong {
                    id: Some(id),
                    len,
                    max,
                })
            } else {
                Ok(())
            }
        };
        match id {
            CHOKE | UNCHOKE | INTERESTED | NOT_INTERESTED | HAVE_ALL | HAVE_NONE => exact(1),
            HAVE | SUGGEST | ALLOWED_FAST => exact(5),
            REQUEST | CANCEL | REJECT => exact(13),
            PORT => exact(3),
            BITFIELD => {
                let pieces = self.num_pieces.unwrap_or(MAX_PIECES);
                within(1, pieces.div_ceil(8).saturating_add(1))
            }
            PIECE => within(9, MAX_BLOCK + 9),
            EXTENDED => within(2, MAX_EXTENDED + 1),
            _ => within(1, MAX_UNKNOWN + 1),
        }
    }

    /// Moves queued bytes into the straddling frame of `State::Body`; the message once it is
    /// complete.
    fn continue_body(&mut self) -> Option<Message> {
        let State::Body { id, payload, got } = &mut self.state else {
            return None;
        };
        let keep = is_known(*id);
        while *got < *payload {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let take = front.len().min(to_usize(*payload - *got));
            if keep {
                self.partial.extend_from_slice(&front[..take]);
            }
            front.advance(take);
            if front.is_empty() {
                self.chunks.pop_front();
            }
            self.queued = self.queued.saturating_sub(take);
            // `take <= payload - got`, so this neither truncates nor overflows.
            *got = got.saturating_add(u32::try_from(take).unwrap_or(u32::MAX));
        }
        if *got < *payload {
            return None;
        }
        let (id, payload) = (*id, *payload);
        self.state = State::Header;
        if !keep {
            return Some(Message::Unknown { id, len: payload });
        }
        // Take the whole buffer (reserved for this frame): splitting it off would leave
        // `partial` holding a reference that keeps the frame's allocation alive for as long
        // as the connection lasts.
        let frame = std::mem::take(&mut self.partial).freeze();
        Some(build(id, &frame, |r| frame.slice(r)))
    }

    /// Copies the first queued bytes into `out` without consuming them; how many there were.
    fn peek(&self, out: &mut [u8]) -> usize {
        let mut n = 0;
        for chunk in &self.chunks {
            let rest = &mut out[n..];
            if rest.is_empty() {
                break;
            }
            let take = rest.len().min(chunk.len());
            rest[..take].copy_from_slice(&chunk[..take]);
            n += take;
        }
        n
    }

    /// Drops the first `n` queued bytes (at most `queued`).
    fn consume(&mut self, mut n: usize) {
        self.queued = self.queued.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// Enters the failed state, dropping all buffers, and returns `error`.
    fn fail<T>(&mut self, error: WireError) -> Result<T, WireError> {
        self.chunks = VecDeque::new();
        self.queued = 0;
        self.partial = BytesMut::new();
        self.state = State::Failed(error.clone());
        Err(error)
    }
}

#[cfg(test)]
mod tests;
