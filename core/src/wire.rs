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

pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
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
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
}

impl Handshake {
    /// Reserved bit for BEP 10 (byte 5, 0x10).
    pub const EXTENSION_PROTOCOL: (usize, u8) = (5, 0x10);
    /// Reserved bit for BEP 6 (byte 7, 0x04).
    pub const FAST: (usize, u8) = (7, 0x04);
    /// Reserved bit for BEP 5 (byte 7, 0x01).
    pub const DHT: (usize, u8) = (7, 0x01);

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
    pub piece: u32,
    pub offset: u32,
    pub len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    /// Raw payload; validated against the torrent by `Bitfield::from_bytes`.
    Bitfield(Bytes),
    Request(BlockRequest),
    Piece {
        piece: u32,
        offset: u32,
        data: Bytes,
    },
    Cancel(BlockRequest),
    Port(u16),
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(BlockRequest),
    AllowedFast(u32),
    Extended {
        id: u8,
        payload: Bytes,
    },
    /// A message id this decoder does not know; its payload was skipped. `len` is the
    /// payload's length, the id byte not included (the frame's length prefix is `len + 1`).
    Unknown {
        id: u8,
        len: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("not a BitTorrent handshake")]
    BadHandshake,
    /// `len` is the frame's length prefix (id byte included); `id` is `None` when the length
    /// alone exceeded [`MAX_FRAME`].
    #[error("{} of {len} bytes exceeds the limit of {max}", MessageName(*id))]
    TooLong { id: Option<u8>, len: u32, max: u32 },
    /// A fixed-size message whose length prefix is not its size.
    #[error("{} of {len} bytes, expected {expected}", MessageName(Some(*id)))]
    BadLength { id: u8, len: u32, expected: u32 },
    /// A `piece` or `extended` message too short for its fixed fields.
    #[error("{} of {len} bytes, expected at least {min}", MessageName(Some(*id)))]
    TooShort { id: u8, len: u32, min: u32 },
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn handshake() -> Handshake {
        let mut h = Handshake {
            reserved: [0; 8],
            info_hash: InfoHash([0xab; 20]),
            peer_id: PeerId(*b"-TS0100-abcdefghijkl"),
        };
        h.set(Handshake::FAST);
        h.set(Handshake::EXTENSION_PROTOCOL);
        h
    }

    fn encoded(message: &Message) -> Bytes {
        let mut out = BytesMut::new();
        message.encode(&mut out);
        out.freeze()
    }

    fn frame(len: u32, id: u8, payload: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u32(len);
        out.put_u8(id);
        out.put_slice(payload);
        out.freeze()
    }

    /// Every message `decoder` can return now; stops at `Ok(None)` or the first error.
    fn drain(decoder: &mut Decoder) -> (Vec<Message>, Option<WireError>) {
        let mut messages = Vec::new();
        loop {
            match decoder.next_message() {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => return (messages, None),
                Err(e) => return (messages, Some(e)),
            }
        }
    }

    type Decoded = (Option<Handshake>, Vec<Message>, Option<WireError>);

    /// Decodes a complete stream fed in `chunks`, draining after each feed. Returns the
    /// handshake (if `with_handshake`), the messages and the first error.
    fn decode_chunks(chunks: impl IntoIterator<Item = Bytes>, with_handshake: bool) -> Decoded {
        let (decoded, leftover) = decode_chunks_leftover(chunks, with_handshake);
        if decoded.2.is_none() {
            assert_eq!(leftover, 0, "stream ended mid-frame");
        }
        decoded
    }

    /// As `decode_chunks`, for a stream that may end mid-frame: also returns `buffered()` at
    /// the end.
    fn decode_chunks_leftover(
        chunks: impl IntoIterator<Item = Bytes>,
        with_handshake: bool,
    ) -> (Decoded, usize) {
        let mut decoder = if with_handshake {
            Decoder::new()
        } else {
            Decoder::after_handshake()
        };
        let mut hs = None;
        let mut messages = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk);
            if with_handshake && hs.is_none() {
                match decoder.handshake() {
                    Ok(Some(h)) => hs = Some(h),
                    Ok(None) => continue,
                    Err(e) => return ((hs, messages, Some(e)), decoder.buffered()),
                }
            }
            let (more, error) = drain(&mut decoder);
            messages.extend(more);
            if error.is_some() {
                return ((hs, messages, error), decoder.buffered());
            }
        }
        ((hs, messages, None), decoder.buffered())
    }

    /// `stream` cut at `cuts` (positions, any order, out-of-range ones ignored).
    fn split_at(stream: &Bytes, cuts: &[usize]) -> Vec<Bytes> {
        let mut cuts: Vec<usize> = cuts.iter().copied().filter(|&c| c < stream.len()).collect();
        cuts.push(0);
        cuts.push(stream.len());
        cuts.sort_unstable();
        cuts.dedup();
        cuts.windows(2).map(|w| stream.slice(w[0]..w[1])).collect()
    }

    fn one_byte_feeds(stream: &Bytes) -> Vec<Bytes> {
        (0..stream.len()).map(|i| stream.slice(i..i + 1)).collect()
    }

    fn all_kinds() -> Vec<Message> {
        let request = BlockRequest {
            piece: 7,
            offset: 0x4000,
            len: 0x4000,
        };
        vec![
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(0x0102_0304),
            Message::Bitfield(Bytes::from_static(&[0xff, 0x80])),
            Message::Bitfield(Bytes::new()),
            Message::Request(request),
            Message::Piece {
                piece: 3,
                offset: 0x8000,
                data: Bytes::from(vec![0x5a; MAX_BLOCK as usize]),
            },
            Message::Piece {
                piece: 1,
                offset: 2,
                data: Bytes::new(),
            },
            Message::Cancel(request),
            Message::Port(6881),
            Message::Suggest(9),
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject(request),
            Message::AllowedFast(u32::MAX),
            Message::Extended {
                id: 0,
                payload: Bytes::from_static(b"d1:md11:ut_metadatai1eee"),
            },
            Message::Extended {
                id: 3,
                payload: Bytes::new(),
            },
            Message::Unknown { id: 42, len: 3 },
            Message::Unknown { id: 255, len: 0 },
        ]
    }

    #[test]
    fn handshake_round_trip() {
        let h = handshake();
        let bytes = h.encode();
        assert_eq!(bytes[0], 19);
        assert_eq!(&bytes[1..20], PROTOCOL);
        let mut decoder = Decoder::new();
        decoder.feed(Bytes::copy_from_slice(&bytes));
        assert_eq!(decoder.handshake(), Ok(Some(h)));
        assert_eq!(decoder.buffered(), 0);
        assert_eq!(decoder.next_message(), Ok(None));
    }

    #[test]
    fn handshake_reserved_bits() {
        let h = handshake();
        assert!(h.has(Handshake::FAST));
        assert!(h.has(Handshake::EXTENSION_PROTOCOL));
        assert!(!h.has(Handshake::DHT));
        assert_eq!(h.reserved, [0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        assert!(!h.has((8, 0xff)), "out-of-range byte is never set");
    }

    #[test]
    fn handshake_split_byte_by_byte() {
        let h = handshake();
        let mut stream = BytesMut::from(&h.encode()[..]);
        Message::Have(5).encode(&mut stream);
        let (got, messages, error) = decode_chunks(one_byte_feeds(&stream.freeze()), true);
        assert_eq!(
            (got, messages, error),
            (Some(h), vec![Message::Have(5)], None)
        );
    }

    #[test]
    fn bad_pstrlen_rejected_at_first_byte() {
        let mut decoder = Decoder::new();
        assert_eq!(decoder.handshake(), Ok(None));
        decoder.feed(Bytes::from_static(&[18]));
        assert_eq!(decoder.handshake(), Err(WireError::BadHandshake));
        // Sticky, and later bytes are dropped.
        decoder.feed(Bytes::from_static(b"BitTorrent protocol"));
        assert_eq!(decoder.handshake(), Err(WireError::BadHandshake));
        assert_eq!(decoder.next_message(), Err(WireError::BadHandshake));
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn wrong_protocol_string_rejected_early() {
        let mut decoder = Decoder::new();
        decoder.feed(Bytes::from_static(b"\x13BitTorrent"));
        assert_eq!(decoder.handshake(), Ok(None), "a correct prefix waits");
        decoder.feed(Bytes::from_static(b" Protocol"));
        assert_eq!(decoder.handshake(), Err(WireError::BadHandshake));

        let mut decoder = Decoder::new();
        decoder.feed(Bytes::from_static(b"GET / HTTP/1.1\r\n"));
        assert_eq!(decoder.handshake(), Err(WireError::BadHandshake));
    }

    #[test]
    fn stage_usage_errors_change_nothing() {
        let mut decoder = Decoder::new();
        decoder.feed(Bytes::copy_from_slice(&handshake().encode()));
        assert_eq!(decoder.next_message(), Err(WireError::HandshakePending));
        assert_eq!(decoder.buffered(), HANDSHAKE_LEN);
        assert_eq!(decoder.handshake(), Ok(Some(handshake())));
        assert_eq!(decoder.handshake(), Err(WireError::HandshakeDone));
        decoder.feed(encoded(&Message::Choke));
        assert_eq!(decoder.next_message(), Ok(Some(Message::Choke)));

        let mut decoder = Decoder::after_handshake();
        assert_eq!(decoder.handshake(), Err(WireError::HandshakeDone));
        assert_eq!(decoder.next_message(), Ok(None));
    }

    #[test]
    fn every_message_round_trips() {
        for message in all_kinds() {
            let bytes = encoded(&message);
            let mut decoder = Decoder::after_handshake();
            decoder.feed(bytes.clone());
            assert_eq!(decoder.next_message(), Ok(Some(message.clone())));
            assert_eq!(decoder.next_message(), Ok(None));
            assert_eq!(decoder.buffered(), 0);
            // And split in two everywhere.
            for cut in 1..bytes.len().min(40) {
                let chunks = split_at(&bytes, &[cut]);
                let (_, messages, error) = decode_chunks(chunks, false);
                assert_eq!(
                    (messages, error),
                    (vec![message.clone()], None),
                    "cut {cut}"
                );
            }
        }
    }

    #[test]
    fn encodings_follow_the_spec() {
        let request = BlockRequest {
            piece: 1,
            offset: 2,
            len: 3,
        };
        let cases: Vec<(Message, &[u8])> = vec![
            (Message::KeepAlive, &[0, 0, 0, 0]),
            (Message::Choke, &[0, 0, 0, 1, 0]),
            (Message::NotInterested, &[0, 0, 0, 1, 3]),
            (Message::Have(258), &[0, 0, 0, 5, 4, 0, 0, 1, 2]),
            (
                Message::Bitfield(Bytes::from_static(&[0xf0])),
                &[0, 0, 0, 2, 5, 0xf0],
            ),
            (
                Message::Request(request),
                &[0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3],
            ),
            (
                Message::Piece {
                    piece: 1,
                    offset: 2,
                    data: Bytes::from_static(b"xy"),
                },
                &[0, 0, 0, 11, 7, 0, 0, 0, 1, 0, 0, 0, 2, b'x', b'y'],
            ),
            (Message::Port(0x1ae1), &[0, 0, 0, 3, 9, 0x1a, 0xe1]),
            (Message::HaveAll, &[0, 0, 0, 1, 14]),
            (
                Message::Reject(request),
                &[0, 0, 0, 13, 16, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3],
            ),
            (
                Message::Extended {
                    id: 2,
                    payload: Bytes::from_static(b"de"),
                },
                &[0, 0, 0, 4, 20, 2, b'd', b'e'],
            ),
            (Message::Unknown { id: 30, len: 2 }, &[0, 0, 0, 3, 30, 0, 0]),
        ];
        for (message, bytes) in cases {
            assert_eq!(&encoded(&message)[..], bytes, "{message:?}");
        }
    }

    #[test]
    fn piece_header_matches_encode() {
        let data = Bytes::from(vec![1u8; 100]);
        let mut split = BytesMut::new();
        encode_piece_header(4, 16384, 100, &mut split);
        assert_eq!(split.len(), 13);
        split.extend_from_slice(&data);
        let whole = encoded(&Message::Piece {
            piece: 4,
            offset: 16384,
            data,
        });
        assert_eq!(split.freeze(), whole);
    }

    #[test]
    fn keep_alive() {
        let mut decoder = Decoder::after_handshake();
        decoder.feed(Bytes::from_static(&[0, 0]));
        assert_eq!(decoder.next_message(), Ok(None));
        decoder.feed(Bytes::from_static(&[0, 0, 0, 0, 0, 0]));
        assert_eq!(decoder.next_message(), Ok(Some(Message::KeepAlive)));
        assert_eq!(decoder.next_message(), Ok(Some(Message::KeepAlive)));
        assert_eq!(decoder.next_message(), Ok(None));
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn four_gib_length_prefix_rejected_without_buffering() {
        // The global cap rejects it from the length alone.
        let mut decoder = Decoder::after_handshake();
        decoder.feed(Bytes::from_static(&[0xff, 0xff, 0xff]));
        assert_eq!(decoder.next_message(), Ok(None));
        decoder.feed(Bytes::from_static(&[0xff]));
        let error = WireError::TooLong {
            id: None,
            len: u32::MAX,
            max: MAX_FRAME,
        };
        assert_eq!(decoder.next_message(), Err(error.clone()));
        assert!(decoder.buffered() <= HEADER_LEN);
        decoder.feed(Bytes::from(vec![0; 1 << 16]));
        assert_eq!(decoder.next_message(), Err(error));
        assert_eq!(decoder.buffered(), 0);

        // A length within the global cap but above a piece's bound: decided on the id byte.
        let mut decoder = Decoder::after_handshake();
        decoder.feed(frame(MAX_FRAME, PIECE, &[]));
        assert_eq!(
            decoder.next_message(),
            Err(WireError::TooLong {
                id: Some(PIECE),
                len: MAX_FRAME,
                max: MAX_BLOCK + 9
            })
        );
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn fixed_size_messages_need_their_exact_length() {
        let cases = [
            (6, HAVE, 5),
            (4, HAVE, 5),
            (2, CHOKE, 1),
            (2, HAVE_NONE, 1),
            (12, REQUEST, 13),
            (14, CANCEL, 13),
            (1, REJECT, 13),
            (2, PORT, 3),
            (5, ALLOWED_FAST, 5),
            (6, SUGGEST, 5),
        ];
        for (len, id, expected) in cases {
            let mut decoder = Decoder::after_handshake();
            // Only the header: the length is judged before any payload is in.
            decoder.feed(frame(len, id, &[]));
            let result = decoder.next_message();
            if len == expected {
                assert_eq!(result, Ok(None));
            } else {
                assert_eq!(result, Err(WireError::BadLength { id, len, expected }));
            }
        }
    }

    #[test]
    fn piece_longer_than_a_block_rejected() {
        let mut decoder = Decoder::after_handshake();
        decoder.feed(frame(9 + MAX_BLOCK, PIECE, &[]));
        assert_eq!(decoder.next_message(), Ok(None), "a full block is fine");

        let mut decoder = Decoder::after_handshake();
        decoder.feed(frame(10 + MAX_BLOCK, PIECE, &[]));
        assert_eq!(
            decoder.next_message(),
            Err(WireError::TooLong {
                id: Some(PIECE),
                len: 10 + MAX_BLOCK,
                max: 9 + MAX_BLOCK
            })
        );
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn messages_too_short_for_their_fields_rejected() {
        for (len, id, min) in [(8, PIECE, 9), (1, PIECE, 9), (1, EXTENDED, 2)] {
            let mut decoder = Decoder::after_handshake();
            decoder.feed(frame(len, id, &[0; 8]));
            assert_eq!(
                decoder.next_message(),
                Err(WireError::TooShort { id, len, min })
            );
        }
    }

    #[test]
    fn bitfield_bounded_by_torrent() {
        // Before `set_num_pieces`: up to the largest torrent.
        let mut decoder = Decoder::after_handshake();
        decoder.feed(frame(1 + MAX_PIECES / 8, BITFIELD, &[]));
        assert_eq!(decoder.next_message(), Ok(None));
        let mut decoder = Decoder::after_handshake();
        decoder.feed(frame(2 + MAX_PIECES / 8, BITFIELD, &[]));
        assert!(matches!(
            decoder.next_message(),
            Err(WireError::TooLong {
                id: Some(BITFIELD),
                ..
            })
        ));

        // After: 100 pieces fit in 13 bytes.
        let mut decoder = Decoder::after_handshake();
        decoder.set_num_pieces(100);
        decoder.feed(frame(14, BITFIELD, &[0xff; 13]));
        assert_eq!(
            decoder.next_message(),
            Ok(Some(Message::Bitfield(Bytes::from(vec![0xff; 13]))))
        );
        decoder.feed(frame(15, BITFIELD, &[]));
        assert_eq!(
            decoder.next_message(),
            Err(WireError::TooLong {
                id: Some(BITFIELD),
                len: 15,
                max: 14
            })
        );
    }

    #[test]
    fn extended_and_unknown_bounds() {
        let mut decoder = Decoder::after_handshake();
        decoder.feed(frame(2 + MAX_EXTENDED, EXTENDED, &[]));
        assert!(matches!(
            decoder.next_message(),
            Err(WireError::TooLong { .. })
        ));
        let mut decoder = Decoder::after_handshake();
        decoder.feed(frame(1 + MAX_EXTENDED, EXTENDED, &[]));
        assert_eq!(decoder.next_message(), Ok(None));

        let mut decoder = Decoder::after_handshake();
        decoder.feed(frame(2 + MAX_UNKNOWN, 99, &[]));
        assert_eq!(
            decoder.next_message(),
            Err(WireError::TooLong {
                id: Some(99),
                len: 2 + MAX_UNKNOWN,
                max: 1 + MAX_UNKNOWN
            })
        );
    }

    #[test]
    fn unknown_id_skipped_across_feeds() {
        let payload = vec![0xee; MAX_UNKNOWN as usize];
        let mut stream = BytesMut::new();
        stream.extend_from_slice(&frame(1 + MAX_UNKNOWN, 99, &payload));
        Message::Have(1).encode(&mut stream);
        let stream = stream.freeze();

        let mut decoder = Decoder::after_handshake();
        let mut fed = 0;
        for chunk in stream.chunks(1000) {
            decoder.feed(Bytes::copy_from_slice(chunk));
            fed += chunk.len();
            if fed < HEADER_LEN + payload.len() {
                assert_eq!(decoder.next_message(), Ok(None));
                assert_eq!(decoder.buffered(), fed, "fed but not yet returned");
                // Nothing of the payload is kept.
                assert!(
                    decoder.partial.capacity() < 64,
                    "{}",
                    decoder.partial.capacity()
                );
            }
        }
        assert_eq!(
            decoder.next_message(),
            Ok(Some(Message::Unknown {
                id: 99,
                len: MAX_UNKNOWN
            }))
        );
        assert_eq!(decoder.next_message(), Ok(Some(Message::Have(1))));
        assert_eq!(decoder.next_message(), Ok(None));
        assert_eq!(decoder.buffered(), 0);
    }

    /// Whether `inner` lies within `outer`'s memory.
    fn points_into(inner: &Bytes, outer: &Bytes) -> bool {
        let start = outer.as_ptr() as usize;
        let end = start + outer.len();
        let p = inner.as_ptr() as usize;
        !inner.is_empty() && p >= start && p + inner.len() <= end
    }

    #[test]
    fn zero_copy_payloads_within_one_chunk() {
        let mut stream = BytesMut::from(&handshake().encode()[..]);
        Message::Bitfield(Bytes::from_static(&[0xff; 4])).encode(&mut stream);
        Message::Piece {
            piece: 1,
            offset: 0,
            data: Bytes::from(vec![7; MAX_BLOCK as usize]),
        }
        .encode(&mut stream);
        Message::Extended {
            id: 1,
            payload: Bytes::from_static(b"d1:ai1ee"),
        }
        .encode(&mut stream);
        let chunk = stream.freeze();

        let mut decoder = Decoder::new();
        decoder.feed(chunk.clone());
        assert_eq!(decoder.handshake(), Ok(Some(handshake())));
        let (messages, error) = drain(&mut decoder);
        assert_eq!((messages.len(), error), (3, None));
        for message in &messages {
            let payload = match message {
                Message::Bitfield(b) => b,
                Message::Piece { data, .. } => data,
                Message::Extended { payload, .. } => payload,
                other => panic!("unexpected {other:?}"),
            };
            assert!(points_into(payload, &chunk), "{message:?} was copied");
        }
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn straddling_piece_is_copied_once_into_one_buffer() {
        let data = Bytes::from((0..MAX_BLOCK).map(|i| i as u8).collect::<Vec<_>>());
        let message = Message::Piece {
            piece: 2,
            offset: 0,
            data: data.clone(),
        };
        let stream = encoded(&message);
        let chunks = split_at(&stream, &[3, 100, 9000]);
        let mut decoder = Decoder::after_handshake();
        for (i, chunk) in chunks.iter().enumerate() {
            decoder.feed(chunk.clone());
            let got = decoder.next_message();
            if i + 1 < chunks.len() {
                assert_eq!(got, Ok(None));
            } else {
                assert_eq!(got, Ok(Some(message.clone())));
            }
        }
    }

    #[test]
    fn one_byte_feeds_of_a_block() {
        let message = Message::Piece {
            piece: 2,
            offset: 0,
            data: Bytes::from(vec![3; MAX_BLOCK as usize]),
        };
        let stream = encoded(&message);
        let mut decoder = Decoder::after_handshake();
        for (i, chunk) in one_byte_feeds(&stream).into_iter().enumerate() {
            decoder.feed(chunk);
            let got = decoder.next_message();
            if i + 1 < stream.len() {
                assert_eq!(got, Ok(None));
                assert_eq!(decoder.buffered(), i + 1);
                // Past the header, each byte moved into the frame buffer as it came.
                assert_eq!(decoder.chunks.is_empty(), i + 1 >= HEADER_LEN);
            } else {
                assert_eq!(got, Ok(Some(message.clone())));
            }
        }
        assert_eq!(decoder.buffered(), 0);
    }

    fn arb_request() -> impl Strategy<Value = BlockRequest> {
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(piece, offset, len)| BlockRequest {
            piece,
            offset,
            len,
        })
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
        prop_oneof![
            3 => proptest::collection::vec(any::<u8>(), 0..64),
            1 => proptest::collection::vec(any::<u8>(), 0..=max),
        ]
        .prop_map(Bytes::from)
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let unknown_id = any::<u8>().prop_filter("unknown id", |id| !is_known(*id));
        prop_oneof![
            Just(Message::KeepAlive),
            Just(Message::Choke),
            Just(Message::Unchoke),
            Just(Message::Interested),
            Just(Message::NotInterested),
            Just(Message::HaveAll),
            Just(Message::HaveNone),
            any::<u32>().prop_map(Message::Have),
            any::<u32>().prop_map(Message::Suggest),
            any::<u32>().prop_map(Message::AllowedFast),
            any::<u16>().prop_map(Message::Port),
            arb_request().prop_map(Message::Request),
            arb_request().prop_map(Message::Cancel),
            arb_request().prop_map(Message::Reject),
            arb_bytes(1024).prop_map(Message::Bitfield),
            (any::<u32>(), any::<u32>(), arb_bytes(MAX_BLOCK as usize)).prop_map(
                |(piece, offset, data)| Message::Piece {
                    piece,
                    offset,
                    data
                }
            ),
            (any::<u8>(), arb_bytes(2048))
                .prop_map(|(id, payload)| Message::Extended { id, payload }),
            (unknown_id, 0..300u32).prop_map(|(id, len)| Message::Unknown { id, len }),
        ]
    }

    /// Feeds `data` cut at `cuts` to `decoder`, driving it as a session would; must not panic.
    fn drive(mut decoder: Decoder, data: &Bytes, cuts: &[usize]) {
        let mut in_handshake = true;
        for chunk in split_at(data, cuts) {
            decoder.feed(chunk);
            if in_handshake {
                match decoder.handshake() {
                    Ok(Some(_)) | Err(WireError::HandshakeDone) => in_handshake = false,
                    Ok(None) => continue,
                    Err(_) => return,
                }
            }
            let (_, error) = drain(&mut decoder);
            if error.is_some() {
                assert_eq!(decoder.buffered(), 0);
                return;
            }
            assert!(decoder.buffered() <= data.len());
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(0..2048usize, 0..16),
            num_pieces in proptest::option::of(any::<u32>()),
        ) {
            let data = Bytes::from(data);
            let mut decoder = Decoder::after_handshake();
            if let Some(n) = num_pieces {
                decoder.set_num_pieces(n);
            }
            drive(decoder, &data, &cuts);
            drive(Decoder::new(), &data, &cuts);
            let mut with_handshake = BytesMut::from(&handshake().encode()[..]);
            with_handshake.extend_from_slice(&data);
            drive(Decoder::new(), &with_handshake.freeze(), &cuts);
        }

        #[test]
        fn arbitrary_frames_never_panic(
            frames in proptest::collection::vec(
                (any::<u32>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)),
                0..16,
            ),
            cuts in proptest::collection::vec(0..1024usize, 0..16),
        ) {
            // Plausible headers with arbitrary lengths and ids get further than random bytes.
            let mut data = BytesMut::new();
            for (len, id, payload) in frames {
                data.extend_from_slice(&frame(len % 64, id, &payload));
            }
            let data = data.freeze();
            drive(Decoder::after_handshake(), &data, &cuts);
            // Errors, too, do not depend on how the stream was cut.
            let whole = decode_chunks_leftover([data.clone()], false);
            prop_assert_eq!(&decode_chunks_leftover(split_at(&data, &cuts), false), &whole);
            prop_assert_eq!(&decode_chunks_leftover(one_byte_feeds(&data), false), &whole);
        }

        #[test]
        fn any_split_decodes_the_same(
            messages in proptest::collection::vec(arb_message(), 0..24),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
        ) {
            let h = handshake();
            let mut stream = BytesMut::from(&h.encode()[..]);
            for m in &messages {
                m.encode(&mut stream);
            }
            let stream = stream.freeze();
            let expected = (Some(h), messages.clone(), None);

            let whole = decode_chunks([stream.clone()], true);
            prop_assert_eq!(&whole, &expected);
            let cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len())).collect();
            prop_assert_eq!(&decode_chunks(split_at(&stream, &cuts), true), &expected);
            prop_assert_eq!(&decode_chunks(one_byte_feeds(&stream), true), &expected);

            // Feeding everything before draining gives the same too.
            let mut decoder = Decoder::new();
            for chunk in split_at(&stream, &cuts) {
                decoder.feed(chunk);
            }
            prop_assert_eq!(decoder.handshake(), Ok(Some(h)));
            prop_assert_eq!(drain(&mut decoder), (messages, None));

            // Re-encoding what was decoded reproduces the stream.
            let mut again = BytesMut::from(&whole.0.unwrap_or(h).encode()[..]);
            for m in &whole.1 {
                m.encode(&mut again);
            }
            prop_assert_eq!(again.freeze(), stream);
        }
    }
}
