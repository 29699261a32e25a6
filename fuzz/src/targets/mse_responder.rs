//! The incoming side of message stream encryption (`mse::Responder`), fed whatever a
//! stranger sends: never panics, gives the same result and sends the same bytes however the
//! stream is cut, repeats its error once failed, and sends at most its public value, PadB and
//! the encrypted answer.
//!
//! Input, first byte even (raw): `[mode] [policy] [split header] [stream]`: arbitrary bytes
//! from the start. Bytes that are not a plaintext handshake must fail once they are longer
//! than `Ya` and the longest PadA and `req1` (no SHA-1 of the secret can be guessed).
//!
//! First byte odd (crafted): a real initiator built by hand with the responder's `Yb`, every
//! field chosen by the fuzzer, so the search gets past `req1`, which blind bytes never do:
//!
//! ```text
//! [mode] [policy] [flags] [pad_a u16] [pad_c u16] [provide u32] [vc_xor 8] [ia_len u8]
//! [trail_len u16] [flip_at u16] [flip_xor u8] [split header] [ia ...] [trail ...]
//! ```
//!
//! `flags & 1`: the initiator names a torrent the responder lacks; `flags & 2`: XOR
//! `flip_xor` into the stream at `flip_at`. Padding lengths are taken modulo 600, so both
//! sides of the 512-byte limit occur. Without a flip the outcome is predicted from the
//! fields alone (a model written here, not the responder's code) and checked: done with the
//! right method, the initial payload and the trailing bytes as leftover, or the one error
//! the fields call for.

use bytes::{BufMut, Bytes, BytesMut};
use tessera_core::InfoHash;
use tessera_core::mse::dh::{KEY_LEN, PrivateKey, PublicKey};
use tessera_core::mse::{
    CRYPTO_PLAINTEXT, CRYPTO_RC4, Detected, Encryption, MAX_PAD, MseError, Policy, REQ1_SCAN,
    Responder, StreamCipher, VC, detect, req1_hash, req2_hash, req3_hash,
};
use tessera_core::Rng;
use super::split::{chunks, take_splits};

const KNOWN: InfoHash = InfoHash([0x5a; 20]);
/// Another torrent the responder has, listed first.
const DECOY: InfoHash = InfoHash([0xa5; 20]);
const RESPONDER_SEED: u64 = 0x5eed;

/// Everything one run of a responder produced.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// The last result: `Ok(Some(..))` done, `Ok(None)` waiting, `Err` failed.
    result: Result<Option<(Encryption, Option<InfoHash>)>, MseError>,
    /// The leftover, then every byte fed after the handshake was done, decrypted.
    stream: Vec<u8>,
    /// What the responder sent.
    sent: Vec<u8>,
}

fn respond(policy: Policy, pieces: &[&[u8]]) -> Outcome {
    let mut resp = Responder::new(&mut Rng::from_u64(RESPONDER_SEED), policy);
    let mut out = Outcome {
        result: Ok(None),
        stream: Vec::new(),
        sent: Vec::new(),
    };
    let mut cipher: Option<StreamCipher> = None;
    for piece in pieces {
        match &out.result {
            Ok(Some(_)) => {
                // The stream after the handshake, decrypted as the connection layer will.
                let mut bytes = piece.to_vec();
                if let Some(c) = cipher.as_mut() {
                    c.decrypt(&mut bytes);
                }
                out.stream.extend_from_slice(&bytes);
                continue;
            }
            Err(e) => {
                // Failed: stays failed, sends nothing more.
                assert_eq!(resp.feed(piece, &[DECOY, KNOWN]).as_ref().err(), Some(e));
                assert!(resp.poll_transmit().is_none());
                continue;
            }
            Ok(None) => {}
        }
        out.result = match resp.feed(piece, &[DECOY, KNOWN]) {
            Ok(Some(done)) => {
                assert_eq!(done.cipher.is_some(), done.encryption == Encryption::Rc4);
                out.stream.extend_from_slice(&done.leftover);
                cipher = done.cipher;
                Ok(Some((done.encryption, done.info_hash)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        while let Some(b) = resp.poll_transmit() {
            out.sent.extend_from_slice(&b);
        }
    }
    // Yb and PadB, then VC, crypto_select, len(PadD) (PadD is empty by default).
    assert!(
        out.sent.len() <= KEY_LEN + MAX_PAD + 14,
        "sent {}",
        out.sent.len()
    );
    if matches!(out.result, Ok(Some(_))) && policy != Policy::Disable {
        assert!(out.sent.is_empty() || out.sent.len() >= KEY_LEN + 14);
    }
    out
}

/// The same stream whole and cut; the two must agree.
fn whole_and_split(policy: Policy, lens: &[usize], stream: &[u8]) -> Outcome {
    let whole = respond(policy, &[stream]);
    let split = respond(policy, &chunks(stream, lens));
    assert_eq!(whole, split, "the result depends on how the stream was cut");
    whole
}

fn policy(byte: u8) -> Policy {
    match byte % 3 {
        0 => Policy::Prefer,
        1 => Policy::Require,
        _ => Policy::Disable,
    }
}

/// A little reader over the crafted header.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

/// What the responder selects from `provide`, as the MSE specification and the policy say.
fn model_select(policy: Policy, provide: u32) -> Option<u32> {
    match policy {
        Policy::Prefer if provide & CRYPTO_RC4 != 0 => Some(CRYPTO_RC4),
        Policy::Prefer if provide & CRYPTO_PLAINTEXT != 0 => Some(CRYPTO_PLAINTEXT),
        Policy::Require if provide & CRYPTO_RC4 != 0 => Some(CRYPTO_RC4),
        _ => None,
    }
}

fn crafted(data: &[u8]) {
    let mut c = Cursor(data);
    let policy = policy(c.u8());
    let flags = c.u8();
    let pad_a = usize::from(c.u16() % 600);
    let pad_c = c.u16() % 600;
    let provide = c.u32();
    let mut vc = VC;
    for b in &mut vc {
        *b ^= c.u8();
    }
    let ia_len = usize::from(c.u8());
    let trail_len = usize::from(c.u16() % 2048);
    let flip = (flags & 2 != 0).then(|| (usize::from(c.u16()), c.u8()));
    let skey = if flags & 1 != 0 {
        UNKNOWN_TO_RESPONDER
    } else {
        KNOWN
    };
    let (lens, rest) = take_splits(c.0);
    let ia = &rest[..ia_len.min(rest.len())];
    let rest = &rest[ia.len()..];
    let trail = &rest[..trail_len.min(rest.len())];

    // The responder's Yb, from a responder made as `run` makes them.
    let key = PrivateKey::generate(&mut Rng::from_u64(u64::from(pad_c) ^ 0xa11ce));
    let ya = key.public_key();
    let mut probe = Responder::new(&mut Rng::from_u64(RESPONDER_SEED), policy);
    let probe_result = probe.feed(ya.as_bytes(), &[DECOY, KNOWN]);
    let Some(first) = probe.poll_transmit() else {
        // Disable refuses MSE before answering.
        assert_eq!(probe_result.err(), Some(MseError::EncryptionRefused));
        assert_eq!(policy, Policy::Disable);
        return;
    };
    let yb: [u8; KEY_LEN] = first[..KEY_LEN].try_into().expect("Yb is 96 bytes");
    let secret = key.shared_secret(&PublicKey::from_bytes(&yb).expect("our Yb is in range"));

    let mut s = BytesMut::new();
    s.put_slice(ya.as_bytes());
    s.put_bytes(0xaa, pad_a);
    s.put_slice(&req1_hash(&secret));
    let req2 = req2_hash(&skey);
    let req3 = req3_hash(&secret);
    s.put_slice(&std::array::from_fn::<u8, 20, _>(|i| req2[i] ^ req3[i]));
    let encrypted = s.len();
    s.put_slice(&vc);
    s.put_u32(provide);
    s.put_u16(pad_c);
    s.put_bytes(0, usize::from(pad_c));
    s.put_u16(ia.len() as u16);
    s.put_slice(ia);
    let mut cipher = StreamCipher::initiator(&secret, &skey);
    cipher.encrypt(&mut s[encrypted..]);
    let select = model_select(policy, provide);
    let mut tail = trail.to_vec();
    if select == Some(CRYPTO_RC4) {
        cipher.encrypt(&mut tail);
    }
    s.put_slice(&tail);
    if let Some((at, x)) = flip {
        let len = s.len();
        s[at % len] ^= x;
    }
    let stream = Bytes::from(s);
    let out = whole_and_split(policy, &lens, &stream);
    if flip.is_some() {
        return; // Anything but a panic or a split-dependent result.
    }

    // The model: the first defect in stream order decides.
    let after_ya = stream.len() - KEY_LEN;
    let expected: Result<Option<Encryption>, MseError> = if policy == Policy::Disable {
        Err(MseError::EncryptionRefused)
    } else if pad_a > MAX_PAD {
        if after_ya >= REQ1_SCAN {
            Err(MseError::NoReq1)
        } else {
            Ok(None)
        }
    } else if skey != KNOWN {
        Err(MseError::UnknownTorrent)
    } else if vc != VC {
        Err(MseError::WrongVc)
    } else if usize::from(pad_c) > MAX_PAD {
        Err(MseError::PadTooLong { len: pad_c })
    } else if let Some(select) = select {
        Ok(Some(if select == CRYPTO_RC4 {
            Encryption::Rc4
        } else {
            Encryption::HandshakeOnly
        }))
    } else {
        Err(MseError::NoCommonMethod { provided: provide })
    };
    assert_eq!(
        out.result.clone().map(|r| r.map(|(e, _)| e)),
        expected,
        "policy {policy:?}, PadA {pad_a}, PadC {pad_c}, provide {provide:#x}"
    );
    if let Ok(Some((_, ih))) = out.result {
        assert_eq!(ih, Some(KNOWN));
        let mut want = ia.to_vec();
        want.extend_from_slice(trail);
        assert_eq!(out.stream, want, "leftover");
    }
}

/// Names a torrent the responder does not have.
const UNKNOWN_TO_RESPONDER: InfoHash = InfoHash([0x77; 20]);

fn raw(data: &[u8]) {
    let Some((&p, rest)) = data.split_first() else {
        return;
    };
    let policy = policy(p);
    let (lens, stream) = take_splits(rest);
    let out = whole_and_split(policy, &lens, stream);
    match detect(stream) {
        Detected::Plaintext if policy == Policy::Require => {
            assert_eq!(out.result, Err(MseError::PlaintextRefused));
        }
        Detected::Plaintext => {
            assert_eq!(out.result, Ok(Some((Encryption::None, None))));
            assert_eq!(
                out.stream, stream,
                "a plaintext handshake passes through whole"
            );
            assert!(out.sent.is_empty());
        }
        Detected::Encrypted if stream.len() >= KEY_LEN + REQ1_SCAN => {
            assert!(out.result.is_err(), "{:?}", out.result);
        }
        _ => assert!(!matches!(out.result, Ok(Some(_)))),
    }
}

/// The target's body: one input.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        crafted(rest);
    } else {
        raw(rest);
    }
}
