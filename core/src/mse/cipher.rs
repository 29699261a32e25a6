//! The stream cipher of MSE: RC4 keyed with `SHA1('keyA' | S | SKEY)` for the bytes the
//! initiator sends and `SHA1('keyB' | S | SKEY)` for the responder's, the first 1024 bytes of
//! each keystream discarded. RC4 itself is the `rc4` crate's.
//!
//! Encryption works in place: on a `&mut [u8]`, or on a [`Bytes`] that is the only handle to
//! its buffer (the usual case for a message just encoded or a socket read just split off);
//! a shared `Bytes` is copied once.

use bytes::{Bytes, BytesMut};
use rc4::{KeyInit, Rc4, StreamCipher as _};
use sha1::{Digest, Sha1};

use super::dh::SharedSecret;
use crate::id::InfoHash;

/// Keystream bytes thrown away after keying (the specification's defence against RC4's
/// biased first bytes).
pub const DISCARD: usize = 1024;

/// Which way a keystream runs: the initiator's bytes (`keyA`) or the responder's (`keyB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Bytes the initiator (the side that dialled) sends: `keyA`.
    FromInitiator,
    /// Bytes the responder (the side that accepted) sends: `keyB`.
    FromResponder,
}

/// One direction of RC4: applying it to bytes encrypts them, and applying the same
/// keystream again decrypts them.
pub struct Keystream(Rc4);

impl std::fmt::Debug for Keystream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keystream(..)")
    }
}

impl Keystream {
    /// The keystream for `direction` of a connection with shared secret `secret` for the
    /// torrent `skey`, with its first [`DISCARD`] bytes already spent.
    pub fn new(direction: Direction, secret: &SharedSecret, skey: &InfoHash) -> Keystream {
        let label: &[u8; 4] = match direction {
            Direction::FromInitiator => b"keyA",
            Direction::FromResponder => b"keyB",
        };
        let key = Sha1::new()
            .chain_update(label)
            .chain_update(secret.as_bytes())
            .chain_update(skey.0)
            .finalize();
        let rc4 = Rc4::new_from_slice(&key).expect("RC4 takes 1 to 256 key bytes; this is 20");
        let mut stream = Keystream(rc4);
        stream.apply(&mut [0u8; DISCARD]);
        stream
    }

    /// XORs the next `buf.len()` keystream bytes into `buf`, in place.
    pub fn apply(&mut self, buf: &mut [u8]) {
        self.0.apply_keystream(buf);
    }

    /// [`apply`](Self::apply) on a `Bytes`: in place when `bytes` is the only handle to its
    /// buffer, else in one pass from the shared buffer into a new one.
    pub fn apply_bytes(&mut self, bytes: Bytes) -> Bytes {
        match bytes.try_into_mut() {
            Ok(mut buf) => {
                self.apply(&mut buf);
                buf.freeze()
            }
            Err(shared) => {
                let mut out = BytesMut::zeroed(shared.len());
                self.0.apply_keystream_b2b(&shared, &mut out);
                out.freeze()
            }
        }
    }
}

/// Both directions of an encrypted connection, from one side's point of view: what we send
/// is encrypted with one keystream, what we receive decrypted with the other.
#[derive(Debug)]
pub struct StreamCipher {
    outgoing: Keystream,
    incoming: Keystream,
}

impl StreamCipher {
    /// The cipher of the side that dialled: it sends with `keyA`, receives with `keyB`.
    pub fn initiator(secret: &SharedSecret, skey: &InfoHash) -> StreamCipher {
        StreamCipher {
            outgoing: Keystream::new(Direction::FromInitiator, secret, skey),
            incoming: Keystream::new(Direction::FromResponder, secret, skey),
        }
    }

    /// The cipher of the side that accepted: it sends with `keyB`, receives with `keyA`.
    pub fn responder(secret: &SharedSecret, skey: &InfoHash) -> StreamCipher {
        StreamCipher {
            outgoing: Keystream::new(Direction::FromResponder, secret, skey),
            incoming: Keystream::new(Direction::FromInitiator, secret, skey),
        }
    }

    /// Encrypts bytes we are about to send, in place.
    pub fn encrypt(&mut self, buf: &mut [u8]) {
        self.outgoing.apply(buf);
    }

    /// Decrypts bytes we received, in place.
    pub fn decrypt(&mut self, buf: &mut [u8]) {
        self.incoming.apply(buf);
    }

    /// Encrypts a `Bytes` to send: in place if it is the only handle to its buffer.
    pub fn encrypt_bytes(&mut self, bytes: Bytes) -> Bytes {
        self.outgoing.apply_bytes(bytes)
    }

    /// Decrypts a received `Bytes`: in place if it is the only handle to its buffer.
    pub fn decrypt_bytes(&mut self, bytes: Bytes) -> Bytes {
        self.incoming.apply_bytes(bytes)
    }

    /// The two keystreams apart, `(outgoing, incoming)`, for a connection layer that keeps
    /// its send and receive paths separate.
    pub fn split(self) -> (Keystream, Keystream) {
        (self.outgoing, self.incoming)
    }

    /// The keystream for what we receive (the handshake decrypts its own fields with it).
    pub(crate) fn incoming(&mut self) -> &mut Keystream {
        &mut self.incoming
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mse::dh::{PrivateKey, PublicKey};
    use crate::rng::Rng;

    /// RC4 itself, on the classic test vectors (key "Key", "Wiki", "Secret"): checks that the
    /// crate is wired as plain RC4, with nothing discarded before `Keystream::new`'s discard.
    #[test]
    fn rc4_known_vectors() {
        for (key, plain, cipher) in [
            (&b"Key"[..], &b"Plaintext"[..], "bbf316e8d940af0ad3"),
            (b"Wiki", b"pedia", "1021bf0420"),
            (b"Secret", b"Attack at dawn", "45a01f645fc35b383552544b9bf5"),
        ] {
            let mut rc4 = Rc4::new_from_slice(key).unwrap();
            let mut buf = plain.to_vec();
            rc4.apply_keystream(&mut buf);
            let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, cipher);
        }
    }

    fn secret(seed: u64) -> SharedSecret {
        let mut rng = Rng::from_u64(seed);
        let a = PrivateKey::generate(&mut rng);
        let b = PrivateKey::generate(&mut rng);
        a.shared_secret(&PublicKey::from_bytes(b.public_key().as_bytes()).unwrap())
    }

    #[test]
    fn keystream_is_sha1_keyed_rc4_after_1024_bytes() {
        let s = secret(1);
        let skey = InfoHash([7; 20]);
        let key = Sha1::new()
            .chain_update(b"keyA")
            .chain_update(s.as_bytes())
            .chain_update(skey.0)
            .finalize();
        let mut reference = Rc4::new_from_slice(&key).unwrap();
        let mut expected = vec![0u8; DISCARD + 64];
        reference.apply_keystream(&mut expected);
        let mut got = vec![0u8; 64];
        Keystream::new(Direction::FromInitiator, &s, &skey).apply(&mut got);
        assert_eq!(got, expected[DISCARD..]);
        let mut other = vec![0u8; 64];
        Keystream::new(Direction::FromResponder, &s, &skey).apply(&mut other);
        assert_ne!(other, got, "keyA and keyB must differ");
    }

    #[test]
    fn the_two_sides_decrypt_each_other() {
        let s = secret(2);
        let skey = InfoHash([1; 20]);
        let mut a = StreamCipher::initiator(&s, &skey);
        let mut b = StreamCipher::responder(&s, &skey);
        for round in 0..5u8 {
            let plain: Vec<u8> = (0..100 * usize::from(round)).map(|i| i as u8).collect();
            let mut buf = plain.clone();
            a.encrypt(&mut buf);
            if !plain.is_empty() {
                assert_ne!(buf, plain);
            }
            b.decrypt(&mut buf);
            assert_eq!(buf, plain);
            let sent = b.encrypt_bytes(Bytes::from(plain.clone()));
            assert_eq!(a.decrypt_bytes(sent), plain);
        }
    }

    #[test]
    fn unique_bytes_are_encrypted_in_place_shared_ones_copied() {
        let s = secret(3);
        let skey = InfoHash([2; 20]);
        let mut a = StreamCipher::initiator(&s, &skey);
        let unique = Bytes::from(vec![5u8; 4096]);
        let ptr = unique.as_ptr();
        let out = a.encrypt_bytes(unique);
        assert_eq!(out.as_ptr(), ptr, "a unique buffer must not be copied");

        let shared = Bytes::from(vec![5u8; 4096]);
        let keep = shared.clone();
        let out = a.encrypt_bytes(shared);
        assert_ne!(out.as_ptr(), keep.as_ptr());
        assert_eq!(keep, vec![5u8; 4096], "a shared buffer must not change");
    }
}
