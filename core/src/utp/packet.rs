//! The uTP packet: the version 1 header and its extension chain (BEP 29, "header format").
//!
//! ```text
//! 0       4       8               16              24              32
//! +-------+-------+---------------+---------------+---------------+
//! | type  | ver   | extension     | connection_id                 |
//! +-------+-------+---------------+---------------+---------------+
//! | timestamp_microseconds                                        |
//! +---------------+---------------+---------------+---------------+
//! | timestamp_difference_microseconds                             |
//! +---------------+---------------+---------------+---------------+
//! | wnd_size                                                      |
//! +---------------+---------------+---------------+---------------+
//! | seq_nr                        | ack_nr                        |
//! +---------------+---------------+---------------+---------------+
//! ```
//!
//! All fields are big-endian. `extension` names the first extension header; each one is
//! `[next extension type, length, length bytes]` and type 0 ends the chain. The only
//! extension uTP uses is the selective ACK (type 1), a bitmask of packets received past
//! `ack_nr + 1`; others (libtorrent's close reason, type 3) are skipped by their length.
//!
//! The decoder borrows from the datagram and never allocates. It rejects a datagram
//! shorter than a header, a version other than 1, a type above 4, and an extension chain
//! that runs past the end of the datagram or holds more than [`MAX_EXTENSIONS`] headers
//! (the chain is read front to back, so it cannot loop; the limit only bounds the work a
//! datagram can cause). The length of a selective ACK is taken as given: libtorrent sends
//! bitmasks of any whole number of bytes, not only the multiples of four the BEP asks for.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::seq::Seq;
use crate::time::Instant;

/// Size of the fixed header.
pub const HEADER_LEN: usize = 20;
/// The only protocol version.
pub const VERSION: u8 = 1;
/// Extension type of the selective ACK.
pub const EXT_SACK: u8 = 1;
/// Extension type of padding: bytes that mean nothing, which receivers skip by their
/// length. Path MTU probes are padded with it ([`super::mtu`]). No BEP assigns this type
/// (libutp uses 2 internally, libtorrent 3 for its close reason).
pub const EXT_PADDING: u8 = 0x50;
/// At most this many extension headers are read from one packet.
pub const MAX_EXTENSIONS: usize = 16;

/// The five packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `ST_DATA`: payload; takes a sequence number.
    Data = 0,
    /// `ST_FIN`: the sender's last sequence number; no payload.
    Fin = 1,
    /// `ST_STATE`: an acknowledgement only; does not take a sequence number.
    State = 2,
    /// `ST_RESET`: the sender has no state for this connection.
    Reset = 3,
    /// `ST_SYN`: opens a connection; carries the id the initiator receives on.
    Syn = 4,
}

impl PacketType {
    /// The type for a header nibble, if it is one of the five.
    pub const fn from_u8(n: u8) -> Option<PacketType> {
        Some(match n {
            0 => PacketType::Data,
            1 => PacketType::Fin,
            2 => PacketType::State,
            3 => PacketType::Reset,
            4 => PacketType::Syn,
            _ => return None,
        })
    }
}

/// What the decoder rejects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PacketError {
    /// Fewer bytes than the fixed header.
    #[error("{0} bytes is shorter than a uTP header")]
    TooShort(usize),
    /// The low nibble of the first byte is not 1.
    #[error("uTP version {0} (only version 1 exists)")]
    Version(u8),
    /// The high nibble of the first byte is above 4.
    #[error("unknown uTP packet type {0}")]
    Type(u8),
    /// An extension header's length runs past the end of the datagram.
    #[error("uTP extension header runs past the end of the datagram")]
    ExtensionOverrun,
    /// More than [`MAX_EXTENSIONS`] extension headers.
    #[error("more than {MAX_EXTENSIONS} uTP extension headers")]
    TooManyExtensions,
}

/// The fixed 20-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Packet type.
    pub ty: PacketType,
    /// Connection id: the receiver's id for this connection (for `ST_SYN`, the id the
    /// initiator will receive on).
    pub conn_id: u16,
    /// The sender's clock when sending, in microseconds (wrapping; 0 means unset).
    pub timestamp_us: u32,
    /// The sender's latest one-way delay sample from the receiver: its clock when it got
    /// our last packet minus that packet's timestamp (0 before the first sample).
    pub timestamp_diff_us: u32,
    /// The sender's receive window: bytes it can still take.
    pub wnd_size: u32,
    /// Sequence number (for `ST_STATE`, the next number the sender will use).
    pub seq_nr: Seq,
    /// The last sequence number the sender received in order.
    pub ack_nr: Seq,
}

/// A decoded packet, borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The fixed header.
    pub header: Header,
    /// The first selective-ACK bitmask in the extension chain, if any (possibly empty).
    pub sack: Option<&'a [u8]>,
    /// Extension headers that were skipped: unknown types, and selective ACKs after the
    /// first.
    pub skipped_extensions: u8,
    /// Everything after the extension chain.
    pub payload: &'a [u8],
}

/// Cheap test whether a datagram can be uTP at all: at least a header long, version 1,
/// a known type. A bencoded DHT message (`d...`, version nibble 4) and a UDP tracker
/// answer (first byte 0, version 0) both fail it.
#[inline]
pub fn is_utp(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN && datagram[0] & 0x0f == VERSION && datagram[0] >> 4 <= 4
}

/// The low 32 bits of `now` in microseconds: the clock uTP timestamps are read from.
#[inline]
pub fn micros(now: Instant) -> u32 {
    (now.as_nanos() / 1_000) as u32
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> Packet<'a> {
    /// Decodes one datagram.
    pub fn decode(buf: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        if buf.len() < HEADER_LEN {
            return Err(PacketError::TooShort(buf.len()));
        }
        let version = buf[0] & 0x0f;
        if version != VERSION {
            return Err(PacketError::Version(version));
        }
        let ty = PacketType::from_u8(buf[0] >> 4).ok_or(PacketError::Type(buf[0] >> 4))?;
        let header = Header {
            ty,
            conn_id: be16(buf, 2),
            timestamp_us: be32(buf, 4),
            timestamp_diff_us: be32(buf, 8),
            wnd_size: be32(buf, 12),
            seq_nr: Seq(be16(buf, 16)),
            ack_nr: Seq(be16(buf, 18)),
        };
        let mut ext = buf[1];
        let mut at = HEADER_LEN;
        let mut sack = None;
        let mut skipped = 0u8;
        let mut count = 0;
        while ext != 0 {
            count += 1;
            if count > MAX_EXTENSIONS {
                return Err(PacketError::TooManyExtensions);
            }
            let [next, len] = buf
                .get(at..at + 2)
                .and_then(|b| <[u8; 2]>::try_from(b).ok())
                .ok_or(PacketError::ExtensionOverrun)?;
            let body = buf
                .get(at + 2..at + 2 + usize::from(len))
                .ok_or(PacketError::ExtensionOverrun)?;
            if ext == EXT_SACK && sack.is_none() {
                sack = Some(body);
            } else {
                skipped += 1;
            }
            at += 2 + usize::from(len);
            ext = next;
        }
        Ok(Packet {
            header,
            sack,
            skipped_extensions: skipped,
            payload: &buf[at..],
        })
    }
}

impl Header {
    /// Writes the 20 header bytes, naming `first_extension` as the first extension (0 for
    /// none).
    pub fn write(&self, first_extension: u8, out: &mut impl BufMut) {
        out.put_u8(((self.ty as u8) << 4) | VERSION);
        out.put_u8(first_extension);
        out.put_u16(self.conn_id);
        out.put_u32(self.timestamp_us);
        out.put_u32(self.timestamp_diff_us);
        out.put_u32(self.wnd_size);
        out.put_u16(self.seq_nr.0);
        out.put_u16(self.ack_nr.0);
    }
}

/// Encodes a packet: the header, a selective ACK if `sack` is given (at most 255 bytes
/// of it are used), then the payload.
pub fn encode(header: &Header, sack: Option<&[u8]>, payload: &[u8]) -> Bytes {
    encode_padded(header, sack, payload, 0)
}

/// Encodes a packet as [`encode`] does, with [`EXT_PADDING`] extension headers after the
/// selective ACK so that the datagram is `size` bytes long (one more when a single byte
/// would be left, as an extension header takes two). A `size` the packet already reaches
/// adds nothing.
pub fn encode_padded(header: &Header, sack: Option<&[u8]>, payload: &[u8], size: usize) -> Bytes {
    let sack = sack.map(|s| &s[..s.len().min(255)]);
    let ext_len = sack.map_or(0, |s| 2 + s.len());
    let mut pad = size.saturating_sub(HEADER_LEN + ext_len + payload.len());
    if pad == 1 {
        pad = 2;
    }
    let mut out = BytesMut::with_capacity(HEADER_LEN + ext_len + pad + payload.len());
    let after_sack = if pad > 0 { EXT_PADDING } else { 0 };
    match sack {
        Some(mask) => {
            header.write(EXT_SACK, &mut out);
            out.put_u8(after_sack);
            out.put_u8(mask.len() as u8);
            out.put_slice(mask);
        }
        None => header.write(after_sack, &mut out),
    }
    while pad > 0 {
        // Each header takes two bytes and at most 255 more; never leave a single byte.
        let body = if pad <= 257 {
            pad - 2
        } else {
            255.min(pad - 4)
        };
        pad -= 2 + body;
        out.put_u8(if pad > 0 { EXT_PADDING } else { 0 });
        out.put_u8(body as u8);
        out.put_bytes(0, body);
    }
    out.put_slice(payload);
    out.freeze()
}

impl Packet<'_> {
    /// The packet encoded again: the same bytes when the chain held at most one selective
    /// ACK and nothing else.
    pub fn encode(&self) -> Bytes {
        encode(&self.header, self.sack, self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(ty: PacketType) -> Header {
        Header {
            ty,
            conn_id: 0x1234,
            timestamp_us: 0xdead_beef,
            timestamp_diff_us: 7,
            wnd_size: 1 << 20,
            seq_nr: Seq(65535),
            ack_nr: Seq(1),
        }
    }

    #[test]
    fn header_layout_is_the_beps() {
        let bytes = encode(&header(PacketType::Syn), None, b"");
        assert_eq!(
            &bytes[..],
            &[
                0x41, 0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 7, 0, 0x10, 0, 0, 0xff, 0xff,
                0, 1
            ]
        );
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.header, header(PacketType::Syn));
        assert_eq!(p.sack, None);
        assert!(p.payload.is_empty());
    }

    #[test]
    fn selective_ack_and_payload() {
        let bytes = encode(&header(PacketType::State), Some(&[1, 2, 3, 4]), b"xyz");
        assert_eq!(bytes[1], EXT_SACK);
        assert_eq!(&bytes[20..26], &[0, 4, 1, 2, 3, 4]);
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.sack, Some(&[1u8, 2, 3, 4][..]));
        assert_eq!(p.payload, b"xyz");
        assert_eq!(p.encode(), bytes);
    }

    #[test]
    fn unknown_extensions_are_skipped() {
        // close reason (3) then a SACK then payload.
        let mut b = encode(&header(PacketType::Data), None, b"").to_vec();
        b[1] = 3;
        b.extend_from_slice(&[EXT_SACK, 4, 0, 0, 0, 7, 0, 2, 0xff, 0x01]);
        b.extend_from_slice(b"payload");
        let p = Packet::decode(&b).unwrap();
        assert_eq!(p.sack, Some(&[0xffu8, 0x01][..]));
        assert_eq!(p.skipped_extensions, 1);
        assert_eq!(p.payload, b"payload");
    }

    #[test]
    fn padding_reaches_the_size_and_is_skipped() {
        for (sack, payload, size) in [
            (None, 1200usize, 1352usize),
            (Some(&[1u8, 0, 0, 0][..]), 1190, 1412),
            (None, 100, 1472),
            (None, 1000, 1021),
            (None, 1000, 1000),
            (None, 10, 700),
        ] {
            let body = vec![7u8; payload];
            let bytes = encode_padded(&header(PacketType::Data), sack, &body, size);
            let natural = HEADER_LEN + sack.map_or(0, |s| 2 + s.len()) + payload;
            let want = if size <= natural {
                natural
            } else if size == natural + 1 {
                size + 1
            } else {
                size
            };
            assert_eq!(bytes.len(), want, "{size}");
            let p = Packet::decode(&bytes).unwrap();
            assert_eq!(p.header, header(PacketType::Data));
            assert_eq!(p.sack, sack);
            assert_eq!(p.payload, &body[..]);
            assert_eq!(p.skipped_extensions > 0, want > natural);
            assert!(p.skipped_extensions as usize <= MAX_EXTENSIONS);
        }
    }

    #[test]
    fn rejects() {
        assert_eq!(Packet::decode(&[0x41; 19]), Err(PacketError::TooShort(19)));
        let mut b = encode(&header(PacketType::Data), None, b"").to_vec();
        b[0] = 0x02;
        assert_eq!(Packet::decode(&b), Err(PacketError::Version(2)));
        b[0] = 0x51;
        assert_eq!(Packet::decode(&b), Err(PacketError::Type(5)));
        // A chain that claims more bytes than there are.
        b[0] = 0x01;
        b[1] = EXT_SACK;
        b.extend_from_slice(&[0, 8, 1, 2]);
        assert_eq!(Packet::decode(&b), Err(PacketError::ExtensionOverrun));
        // A chain whose last header is cut in half.
        b.truncate(21);
        assert_eq!(Packet::decode(&b), Err(PacketError::ExtensionOverrun));
        // A long chain of empty extensions.
        b.truncate(20);
        for _ in 0..MAX_EXTENSIONS + 1 {
            b.extend_from_slice(&[9, 0]);
        }
        assert_eq!(Packet::decode(&b), Err(PacketError::TooManyExtensions));
    }

    #[test]
    fn cheap_filter() {
        assert!(is_utp(&encode(&header(PacketType::Syn), None, b"")));
        assert!(!is_utp(
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
        ));
        assert!(!is_utp(&[
            0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]));
        assert!(!is_utp(&[0x51; 20]));
        assert!(!is_utp(&[0x41; 19]));
    }

    fn any_header() -> impl Strategy<Value = Header> {
        (0u8..5, any::<(u16, u32, u32, u32, u16, u16)>()).prop_map(|(t, (c, ts, td, w, s, a))| {
            Header {
                ty: PacketType::from_u8(t).unwrap(),
                conn_id: c,
                timestamp_us: ts,
                timestamp_diff_us: td,
                wnd_size: w,
                seq_nr: Seq(s),
                ack_nr: Seq(a),
            }
        })
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(
            h in any_header(),
            sack in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..255)),
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
        ) {
            let bytes = encode(&h, sack.as_deref(), &payload);
            prop_assert!(is_utp(&bytes));
            let p = Packet::decode(&bytes).unwrap();
            prop_assert_eq!(p.header, h);
            prop_assert_eq!(p.sack, sack.as_deref());
            prop_assert_eq!(p.payload, &payload[..]);
            prop_assert_eq!(p.skipped_extensions, 0);
        }

        /// Any bytes: no panic; what decodes re-encodes to itself when its chain was a
        /// lone selective ACK or empty, and to the same packet otherwise.
        #[test]
        fn decoder_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let Ok(p) = Packet::decode(&bytes) else { return Ok(()) };
            prop_assert!(is_utp(&bytes));
            let again = p.encode();
            if p.skipped_extensions == 0 {
                prop_assert_eq!(&again[..], &bytes[..]);
            }
            let q = Packet::decode(&again).unwrap();
            prop_assert_eq!(q.header, p.header);
            prop_assert_eq!(q.sack, p.sack);
            prop_assert_eq!(q.payload, p.payload);
        }

        /// Datagrams that start like uTP with a random extension chain.
        #[test]
        fn random_chains(h in any_header(), chain in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut b = encode(&h, None, b"").to_vec();
            b[1] = chain.first().copied().unwrap_or(0);
            b.extend_from_slice(chain.get(1..).unwrap_or(&[]));
            if let Ok(p) = Packet::decode(&b) {
                prop_assert_eq!(p.header, h);
                prop_assert!(p.payload.len() <= chain.len());
            }
        }
    }
}
