//! The peer wire protocol (BEP 3), with the message ids of the fast extension (BEP 6) and
//! the extension protocol (BEP 10) recognised.
//!
//! SKELETON: signatures fixed, bodies to be written.

use bytes::{Bytes, BytesMut};
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
        todo!()
    }

    pub fn has(&self, bit: (usize, u8)) -> bool {
        self.reserved[bit.0] & bit.1 != 0
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
    /// A message id this decoder does not know; its payload was skipped.
    Unknown {
        id: u8,
        len: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("not a BitTorrent handshake")]
    BadHandshake,
    #[error("message {id:?} with length {len} exceeds the limit of {max}")]
    TooLong { id: Option<u8>, len: u32, max: u32 },
    #[error("message id {id} has length {len}, expected {expected}")]
    BadLength { id: u8, len: u32, expected: u32 },
}

impl Message {
    /// Appends the framed message (length prefix included).
    pub fn encode(&self, out: &mut BytesMut) {
        let _ = out;
        todo!()
    }
}

/// Appends the 13-byte header of a `piece` message carrying `len` bytes; the payload is
/// sent after it as its own buffer, uncopied.
pub fn encode_piece_header(piece: u32, offset: u32, len: u32, out: &mut BytesMut) {
    let _ = (piece, offset, len, out);
    todo!()
}

/// A streaming decoder for one connection: a handshake, then length-prefixed messages.
/// Gives the same results for any split of the byte stream. Never allocates more than a
/// frame's bound: a length prefix above the bound for its message id is an error before any
/// of the payload is buffered.
#[derive(Debug, Default)]
pub struct Decoder {}

impl Decoder {
    pub fn new() -> Self {
        todo!()
    }

    /// Bounds `bitfield` frames to a torrent of `n` pieces (until called, any bitfield up to
    /// the largest torrent is allowed).
    pub fn set_num_pieces(&mut self, n: u32) {
        let _ = n;
        todo!()
    }

    /// Appends bytes from the socket. Payloads of complete messages are zero-copy slices of
    /// these buffers where they do not straddle two of them.
    pub fn feed(&mut self, data: Bytes) {
        let _ = data;
        todo!()
    }

    /// The handshake, once all 68 bytes are in. Call until it returns `Some`, then switch to
    /// `next_message`.
    pub fn handshake(&mut self) -> Result<Option<Handshake>, WireError> {
        todo!()
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        todo!()
    }

    /// Bytes fed but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        todo!()
    }
}
