//! Message stream encryption (MSE, also called protocol encryption, PE): the obfuscated
//! handshake libtorrent, transmission and Vuze speak, as a sans-IO state machine.
//!
//! ```text
//! 1 A->B: Ya, PadA
//! 2 B->A: Yb, PadB
//! 3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
//!         ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
//! 4 B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
//! 5 A->B: ENCRYPT2(payload)
//! ```
//!
//! `Y` are Diffie-Hellman public values ([`dh`]), `S` the shared secret, `SKEY` the info
//! hash, `HASH` SHA-1, `VC` eight zero bytes, `ENCRYPT` RC4 ([`cipher`]); every padding is
//! 0 to 512 bytes. `ENCRYPT2` is RC4 or nothing, as `crypto_select` says. `IA`, the initial
//! payload, carries the BitTorrent handshake.
//!
//! # The contract
//!
//! An [`Initiator`] (we dialled) or a [`Responder`] (we accepted) is fed the bytes the peer
//! sends, in any split, with `feed`; after every feed the caller drains `poll_transmit` and
//! sends what it yields, in order. A feed returns `Ok(None)` while more bytes are needed,
//! `Ok(Some(`[`Done`]`))` once the handshake is over, or the reason to close the connection
//! ([`MseError`]). Once done, everything `poll_transmit` still yields goes out before any
//! byte encrypted with [`Done::cipher`]; from then on the cipher (if any) encrypts and
//! decrypts the rest of the stream, and [`Done::leftover`] is the first plaintext the peer
//! sent (the responder's begins with the initial payload, the BitTorrent handshake).
//!
//! Nothing here keeps time: a handshake that stalls is the caller's to time out. Secret
//! values (private exponents, padding) come from the session's seeded generator, so a
//! simulation replays. What a peer can make a handshake buffer is bounded by the largest
//! handshake (about 66 KiB, most of it a maximal initial payload) plus one feed.
//!
//! [`Policy`] decides what we offer and accept: `Prefer` offers RC4 and plaintext and picks
//! RC4 when the peer offers it, `Require` takes RC4 only, `Disable` speaks plain BitTorrent
//! (an initiator sends its initial payload as is; a responder refuses an MSE handshake).
//! An incoming connection's first bytes tell a plaintext BitTorrent handshake from an MSE one
//! ([`detect`]); the responder does that itself.
//!
//! # When the peer closes first
//!
//! A peer that closes the connection before [`Done`] refused the handshake, or failed it:
//! the caller with [`Policy::Prefer`] redials in plain BitTorrent ([`Policy::Disable`]).
//! Dialling again with MSE is worth one try too: libtorrent up to 2.0.x (and rtorrent until
//! 2026) does not hash the shared secret as the 96 zero-padded bytes the specification
//! says, so it fails the 1 in 256 handshakes whose secret begins with a zero byte, and
//! a new connection has new keys. Such a peer dialling us fails the same way: we find no
//! `req1` (the handshake stalls until the caller's time-out) or no torrent for its `req2`.

#![warn(missing_docs)]

pub mod cipher;
pub mod dh;
mod handshake;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use sha1::{Digest, Sha1};
use thiserror::Error;

pub use cipher::{Keystream, StreamCipher};
pub use handshake::{Initiator, Padding, Responder};

use crate::id::InfoHash;
use crate::wire::PROTOCOL;

/// The verification constant: eight zero bytes, encrypted, that each side finds to know
/// where the other's padding ended and that both derived the same keys.
pub const VC: [u8; 8] = [0; 8];

/// Most padding bytes in any of PadA, PadB, PadC or PadD.
pub const MAX_PAD: usize = 512;

/// How many bytes after the initiator's public value the responder searches for
/// `HASH('req1', S)`: PadA at its longest, then the hash.
pub const REQ1_SCAN: usize = MAX_PAD + 20;

/// How many bytes from the start of the responder's stream the initiator searches for the
/// encrypted `VC`: the public value, PadB at its longest, then `VC`.
pub const VC_SCAN: usize = dh::KEY_LEN + MAX_PAD + VC.len();

/// `crypto_provide`/`crypto_select` bit: the payload stays plaintext after the handshake.
pub const CRYPTO_PLAINTEXT: u32 = 0x01;

/// `crypto_provide`/`crypto_select` bit: the payload is RC4-encrypted.
pub const CRYPTO_RC4: u32 = 0x02;

/// What we offer and accept: the `--encryption` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Outgoing: MSE offering RC4 and plaintext (the caller retries in plain BitTorrent when
    /// the peer refuses). Incoming: plaintext and MSE both accepted; RC4 chosen when offered.
    #[default]
    Prefer,
    /// Only MSE with RC4 for the whole stream, both ways.
    Require,
    /// Only plain BitTorrent, both ways.
    Disable,
}

impl Policy {
    /// The `crypto_provide` bits an initiator with this policy sends (none when disabled).
    pub fn provide(self) -> u32 {
        match self {
            Policy::Prefer => CRYPTO_RC4 | CRYPTO_PLAINTEXT,
            Policy::Require => CRYPTO_RC4,
            Policy::Disable => 0,
        }
    }

    /// The method a responder with this policy selects from the peer's `crypto_provide`:
    /// RC4 if offered, else plaintext where the policy allows it.
    fn select(self, provided: u32) -> Option<u32> {
        let rc4 = provided & CRYPTO_RC4 != 0;
        let plain = provided & CRYPTO_PLAINTEXT != 0;
        match self {
            Policy::Prefer if rc4 => Some(CRYPTO_RC4),
            Policy::Prefer if plain => Some(CRYPTO_PLAINTEXT),
            Policy::Require if rc4 => Some(CRYPTO_RC4),
            _ => None,
        }
    }
}

/// How the connection's stream ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// Plain BitTorrent: no MSE handshake at all.
    None,
    /// An MSE handshake that selected plaintext: only the handshake was obfuscated.
    HandshakeOnly,
    /// An MSE handshake that selected RC4: the whole stream is encrypted.
    Rc4,
}

impl std::fmt::Display for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encryption::None => "plaintext",
            Encryption::HandshakeOnly => "encrypted handshake, plaintext stream",
            Encryption::Rc4 => "RC4-encrypted",
        })
    }
}

/// A finished handshake.
#[derive(Debug)]
pub struct Done {
    /// The cipher for the rest of the stream: `Some` exactly when [`Done::encryption`] is
    /// [`Encryption::Rc4`].
    pub cipher: Option<StreamCipher>,
    /// How the stream is protected, for logs and peer listings.
    pub encryption: Encryption,
    /// The torrent the peer asked for with `req2` (a responder's MSE handshake); `None` for
    /// an initiator and for plain BitTorrent, where the BitTorrent handshake names it.
    pub info_hash: Option<InfoHash>,
    /// Plaintext the peer sent beyond the handshake, already decrypted: for a responder the
    /// initial payload first (or the whole plaintext BitTorrent handshake), then anything
    /// after it; for an initiator, whatever followed the responder's padding.
    pub leftover: Bytes,
}

/// Why a handshake failed. Each closes the connection; none is a panic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MseError {
    /// The peer's Diffie-Hellman public value is 0, 1, `P-1` or not below `P`.
    #[error("the peer's Diffie-Hellman public value is outside [2, P-2]")]
    BadPublicKey,
    /// No `HASH('req1', S)` in the bytes after the initiator's public value: padding over
    /// 512 bytes, or not an MSE handshake.
    #[error("no req1 hash within {REQ1_SCAN} bytes after the public value (padding too long)")]
    NoReq1,
    /// No encrypted `VC` in the responder's first [`VC_SCAN`] bytes: padding over 512
    /// bytes, or keys that do not match.
    #[error("no verification constant within {VC_SCAN} bytes (padding too long or wrong keys)")]
    NoVc,
    /// The `VC` after `req1`/`req2` decrypted to something other than zeros.
    #[error("wrong verification constant: the peer's keys are not ours")]
    WrongVc,
    /// `len(PadC)` or `len(PadD)` over 512.
    #[error("{len} bytes of padding in the encrypted handshake, more than {MAX_PAD}")]
    PadTooLong {
        /// The length the peer announced.
        len: u16,
    },
    /// `req2 xor req3` names no torrent we have.
    #[error("the peer asked for a torrent we do not have (unknown req2)")]
    UnknownTorrent,
    /// The responder selected a method we did not offer, or more than one.
    #[error("the peer selected crypto method {selected:#x}, not one we offered ({provided:#x})")]
    UnofferedSelect {
        /// What the peer selected.
        selected: u32,
        /// What we offered.
        provided: u32,
    },
    /// The initiator offers no method our policy accepts.
    #[error("the peer offers crypto methods {provided:#x}, none of which our policy allows")]
    NoCommonMethod {
        /// What the peer offered.
        provided: u32,
    },
    /// A plaintext BitTorrent handshake while encryption is required.
    #[error("plaintext BitTorrent handshake refused: encryption is required")]
    PlaintextRefused,
    /// An MSE handshake while encryption is disabled.
    #[error("encrypted handshake refused: encryption is disabled")]
    EncryptionRefused,
    /// Usage error: `feed` after the handshake returned [`Done`]; the bytes belong to the
    /// stream, not the handshake.
    #[error("feed called after the handshake was done")]
    Finished,
}

/// What the first bytes of an incoming connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// A plaintext BitTorrent handshake: 19, then "BitTorrent protocol".
    Plaintext,
    /// Anything else: an MSE public value (or garbage, which MSE will refuse).
    Encrypted,
    /// Too few bytes to tell: a prefix of the plaintext handshake's first 20 bytes.
    NeedMore,
}

/// Tells a plaintext BitTorrent handshake from an MSE one by the first bytes of an incoming
/// connection. Decides as soon as a byte differs from `19 "BitTorrent protocol"`, or when all
/// 20 match; a random public value starts that way with probability 2^-160.
pub fn detect(first: &[u8]) -> Detected {
    let n = first.len().min(1 + PROTOCOL.len());
    let matches = first[..n]
        .iter()
        .zip(std::iter::once(&19u8).chain(PROTOCOL.iter()))
        .all(|(a, b)| a == b);
    if !matches {
        Detected::Encrypted
    } else if n == 1 + PROTOCOL.len() {
        Detected::Plaintext
    } else {
        Detected::NeedMore
    }
}

fn hash(label: &[u8], value: &[u8]) -> [u8; 20] {
    Sha1::new()
        .chain_update(label)
        .chain_update(value)
        .finalize()
        .into()
}

/// `HASH('req1', S)`: the marker the responder finds after the initiator's padding.
pub fn req1_hash(secret: &dh::SharedSecret) -> [u8; 20] {
    hash(b"req1", secret.as_bytes())
}

/// `HASH('req2', SKEY)`: what a responder compares `req2 xor req3` with, one per torrent
/// (a session may keep them indexed).
pub fn req2_hash(info_hash: &InfoHash) -> [u8; 20] {
    hash(b"req2", &info_hash.0)
}

/// `HASH('req3', S)`: masks `req2` on the wire.
pub fn req3_hash(secret: &dh::SharedSecret) -> [u8; 20] {
    hash(b"req3", secret.as_bytes())
}

fn xor20(a: &[u8; 20], b: &[u8; 20]) -> [u8; 20] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

#[cfg(test)]
mod detect_tests {
    use super::*;

    #[test]
    fn detect_decides_at_the_first_differing_byte() {
        let mut hs = vec![19u8];
        hs.extend_from_slice(PROTOCOL);
        hs.extend_from_slice(&[0; 48]);
        assert_eq!(detect(&[]), Detected::NeedMore);
        for n in 1..20 {
            assert_eq!(detect(&hs[..n]), Detected::NeedMore, "{n} bytes");
        }
        assert_eq!(detect(&hs[..20]), Detected::Plaintext);
        assert_eq!(detect(&hs), Detected::Plaintext);
        assert_eq!(detect(&[18]), Detected::Encrypted);
        assert_eq!(detect(b"\x13BitTorrent protocoX"), Detected::Encrypted);
        assert_eq!(detect(b"\x13Bit"), Detected::NeedMore);
        assert_eq!(detect(b"\x13Bix"), Detected::Encrypted);
    }

    #[test]
    fn policies_offer_and_select() {
        assert_eq!(Policy::Prefer.provide(), 3);
        assert_eq!(Policy::Require.provide(), 2);
        assert_eq!(Policy::Disable.provide(), 0);
        assert_eq!(Policy::Prefer.select(3), Some(CRYPTO_RC4));
        assert_eq!(Policy::Prefer.select(1), Some(CRYPTO_PLAINTEXT));
        assert_eq!(Policy::Prefer.select(0x10), None);
        assert_eq!(Policy::Require.select(1), None);
        assert_eq!(Policy::Require.select(0xff), Some(CRYPTO_RC4));
        assert_eq!(Policy::Disable.select(3), None);
        assert_eq!(Policy::default(), Policy::Prefer);
    }
}
