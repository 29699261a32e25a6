//! The handshake between two in-process sides: every policy pairing, any padding, any split
//! of the byte stream; the stream after it; hand-made hostile peers for each error.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::dh::{KEY_LEN, PrivateKey, PublicKey};
use super::*;
use crate::id::PeerId;
use crate::rng::Rng;
use crate::wire::{self, Handshake, Message};

const IH: InfoHash = InfoHash([0xab; 20]);
const OTHER: InfoHash = InfoHash([0x11; 20]);

fn bt_handshake() -> Bytes {
    let mut h = Handshake {
        reserved: [0; 8],
        info_hash: IH,
        peer_id: PeerId(*b"-TS0001-abcdefghijkl"),
    };
    h.set(Handshake::FAST);
    Bytes::copy_from_slice(&h.encode())
}

/// What the initiator offers: what its policy offers, or exactly some bits.
#[derive(Debug, Clone, Copy)]
enum Offer {
    Policy(Policy),
    Bits(u32),
}

/// One side's view at the end of a run.
#[derive(Debug, Default)]
struct End {
    result: Option<Result<(Encryption, Option<InfoHash>), MseError>>,
    /// Plaintext received after the handshake: the leftover, then the decrypted rest.
    received: Vec<u8>,
}

/// Drives a handshake to its end: each side's bytes go to the other in chunks of the sizes
/// in `cuts` (cycled; 0 means 1), each side sends `payload` once done (encrypted if it has a
/// cipher), and whatever arrives after the handshake is decrypted and kept.
fn run(
    offer: Offer,
    resp_policy: Policy,
    pads: (Padding, Padding),
    cuts: (&[usize], &[usize]),
    ia: Bytes,
    payloads: (&[u8], &[u8]),
    torrents: &[InfoHash],
) -> (End, End) {
    let init_policy = match offer {
        Offer::Policy(p) => p,
        Offer::Bits(_) => Policy::Prefer,
    };
    let mut init = Initiator::with_padding(&mut Rng::from_u64(1), IH, init_policy, ia, pads.0);
    if let Offer::Bits(bits) = offer {
        init.set_provide(bits);
    }
    let mut resp = Responder::with_padding(&mut Rng::from_u64(2), resp_policy, pads.1);
    let (mut to_resp, mut to_init) = (VecDeque::<u8>::new(), VecDeque::<u8>::new());
    let (mut ie, mut re) = (End::default(), End::default());
    let (mut ic, mut rc): (Option<StreamCipher>, Option<StreamCipher>) = (None, None);
    let (mut i_sent, mut r_sent) = (false, false);
    let (mut ik, mut rk) = (0usize, 0usize);
    for _ in 0..100_000 {
        while let Some(b) = init.poll_transmit() {
            to_resp.extend(b.iter());
        }
        while let Some(b) = resp.poll_transmit() {
            to_init.extend(b.iter());
        }
        // A side that is done sends its payload once, after the handshake's own bytes.
        if matches!(ie.result, Some(Ok(_))) && !i_sent {
            i_sent = true;
            let mut p = payloads.0.to_vec();
            if let Some(c) = ic.as_mut() {
                c.encrypt(&mut p);
            }
            to_resp.extend(p);
        }
        if matches!(re.result, Some(Ok(_))) && !r_sent {
            r_sent = true;
            let mut p = payloads.1.to_vec();
            if let Some(c) = rc.as_mut() {
                c.encrypt(&mut p);
            }
            to_init.extend(p);
        }
        let mut moved = false;
        if !to_resp.is_empty() && !matches!(re.result, Some(Err(_))) {
            let n = cuts.1[rk % cuts.1.len()].max(1).min(to_resp.len());
            rk += 1;
            let chunk: Vec<u8> = to_resp.drain(..n).collect();
            deliver(&mut re, &mut rc, &chunk, |c| resp.feed(c, torrents));
            moved = true;
        }
        if (!to_init.is_empty() || (ie.result.is_none() && ik == 0))
            && !matches!(ie.result, Some(Err(_)))
        {
            let n = cuts.0[ik % cuts.0.len()].max(1).min(to_init.len());
            ik += 1;
            let chunk: Vec<u8> = to_init.drain(..n).collect();
            deliver(&mut ie, &mut ic, &chunk, |c| init.feed(c));
            moved = true;
        }
        if !moved {
            break;
        }
    }
    (ie, re)
}

/// Feeds a side until it is done, then decrypts into `received`.
fn deliver(
    end: &mut End,
    cipher: &mut Option<StreamCipher>,
    chunk: &[u8],
    feed: impl FnOnce(&[u8]) -> Result<Option<Done>, MseError>,
) {
    match end.result {
        None => match feed(chunk) {
            Ok(None) => {}
            Ok(Some(done)) => {
                assert_eq!(done.cipher.is_some(), done.encryption == Encryption::Rc4);
                end.received.extend_from_slice(&done.leftover);
                *cipher = done.cipher;
                end.result = Some(Ok((done.encryption, done.info_hash)));
            }
            Err(e) => end.result = Some(Err(e)),
        },
        Some(Ok(_)) => {
            let mut buf = chunk.to_vec();
            if let Some(c) = cipher.as_mut() {
                c.decrypt(&mut buf);
            }
            end.received.extend_from_slice(&buf);
        }
        Some(Err(_)) => {}
    }
}

/// What a policy pairing must give: each side's result (`None`: still waiting, the other
/// side having refused).
type Expected = (
    Option<Result<Encryption, MseError>>,
    Option<Result<Encryption, MseError>>,
);

fn expected(offer: Offer, resp: Policy) -> Expected {
    use Encryption::{HandshakeOnly, Rc4};
    let provide = match offer {
        Offer::Policy(Policy::Disable) => {
            // Plain BitTorrent from the initiator.
            return match resp {
                Policy::Require => (
                    Some(Ok(Encryption::None)),
                    Some(Err(MseError::PlaintextRefused)),
                ),
                _ => (Some(Ok(Encryption::None)), Some(Ok(Encryption::None))),
            };
        }
        Offer::Policy(p) => p.provide(),
        Offer::Bits(b) => b,
    };
    if resp == Policy::Disable {
        return (None, Some(Err(MseError::EncryptionRefused)));
    }
    match resp.select(provide) {
        Some(CRYPTO_RC4) => (Some(Ok(Rc4)), Some(Ok(Rc4))),
        Some(_) => (Some(Ok(HandshakeOnly)), Some(Ok(HandshakeOnly))),
        None => (
            None,
            Some(Err(MseError::NoCommonMethod { provided: provide })),
        ),
    }
}

fn offer_strategy() -> impl Strategy<Value = Offer> {
    prop_oneof![
        policy_strategy().prop_map(Offer::Policy),
        (0u32..8).prop_map(Offer::Bits),
    ]
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        Just(Policy::Prefer),
        Just(Policy::Require),
        Just(Policy::Disable)
    ]
}

fn padding_strategy() -> impl Strategy<Value = Padding> {
    (
        prop_oneof![0u16..=512, Just(0), Just(512)],
        prop_oneof![0u16..=512, Just(0), Just(512)],
    )
        .prop_map(|(dh, crypto)| Padding { dh, crypto })
}

fn cuts_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        prop::collection::vec(1usize..8, 1..20),
        prop::collection::vec(1usize..700, 1..8),
        Just(vec![usize::MAX]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Every pairing of policies ends as it must, for any padding and any split; when the
    /// handshake succeeds, each side receives exactly the plaintext the other sent.
    #[test]
    fn handshake_completes_for_any_split_and_padding(
        offer in offer_strategy(),
        resp_policy in policy_strategy(),
        pads in (padding_strategy(), padding_strategy()),
        cuts in (cuts_strategy(), cuts_strategy()),
        extra_ia in prop::collection::vec(any::<u8>(), 0..64),
        payloads in (prop::collection::vec(any::<u8>(), 0..3000),
                     prop::collection::vec(any::<u8>(), 0..3000)),
    ) {
        let mut ia = bt_handshake().to_vec();
        ia.extend_from_slice(&extra_ia);
        let (ie, re) = run(
            offer, resp_policy, pads, (&cuts.0, &cuts.1), Bytes::from(ia.clone()),
            (&payloads.0, &payloads.1), &[OTHER, IH],
        );
        let (want_i, want_r) = expected(offer, resp_policy);
        prop_assert_eq!(ie.result.clone().map(|r| r.map(|d| d.0)), want_i.clone());
        prop_assert_eq!(re.result.clone().map(|r| r.map(|d| d.0)), want_r.clone());
        if let (Some(Ok(_)), Some(Ok(enc))) = (&want_i, &want_r) {
            let ih = re.result.clone().and_then(|r| r.ok()).and_then(|d| d.1);
            prop_assert_eq!(ih, (*enc != Encryption::None).then_some(IH));
            // The responder got the initial payload, then the initiator's payload.
            let mut sent = ia.clone();
            sent.extend_from_slice(&payloads.0);
            prop_assert_eq!(&re.received, &sent);
            prop_assert_eq!(&ie.received, &payloads.1);
        }
    }
}

/// Messages encoded, encrypted, cut anywhere, decrypted and decoded are the messages sent:
/// what the peer logic sees over RC4 is what it would see in plaintext.
#[test]
fn encrypted_stream_decodes_to_the_same_messages() {
    let messages = [
        Message::HaveAll,
        Message::Interested,
        Message::Request(wire::BlockRequest {
            piece: 3,
            offset: 16384,
            len: 16384,
        }),
        Message::Piece {
            piece: 3,
            offset: 0,
            data: Bytes::from((0..16384u32).map(|i| (i * 7) as u8).collect::<Vec<_>>()),
        },
        Message::AllowedFast(9),
        Message::Reject(wire::BlockRequest {
            piece: 1,
            offset: 0,
            len: 16384,
        }),
        Message::Suggest(2),
        Message::KeepAlive,
    ];
    let mut plain = BytesMut::new();
    for m in &messages {
        m.encode(&mut plain);
    }
    let ia = bt_handshake();
    for cut in [1usize, 5, 13, 100, 1400, 100_000] {
        let (_, re) = run(
            Offer::Policy(Policy::Require),
            Policy::Prefer,
            (Padding { dh: 7, crypto: 3 }, Padding { dh: 300, crypto: 0 }),
            (&[cut], &[cut]),
            ia.clone(),
            (&plain, b""),
            &[IH],
        );
        assert_eq!(re.result, Some(Ok((Encryption::Rc4, Some(IH)))));
        let mut decoder = wire::Decoder::new();
        let received = Bytes::from(re.received);
        for chunk in received.chunks(cut.min(received.len())) {
            decoder.feed(Bytes::copy_from_slice(chunk));
        }
        let hs = decoder
            .handshake()
            .unwrap()
            .expect("the handshake came as IA");
        assert_eq!(hs.info_hash, IH);
        assert!(hs.has(Handshake::FAST));
        let mut got = Vec::new();
        while let Some(m) = decoder.next_message().unwrap() {
            got.push(m);
        }
        assert_eq!(got, messages, "cut {cut}");
    }
}

#[test]
fn every_policy_pairing() {
    use Encryption::{HandshakeOnly, Rc4};
    let plain = Encryption::None;
    let pads = (Padding::default(), Padding::default());
    let table = [
        (Policy::Prefer, Policy::Prefer, Some(Ok(Rc4)), Some(Ok(Rc4))),
        (
            Policy::Prefer,
            Policy::Require,
            Some(Ok(Rc4)),
            Some(Ok(Rc4)),
        ),
        (
            Policy::Require,
            Policy::Prefer,
            Some(Ok(Rc4)),
            Some(Ok(Rc4)),
        ),
        (
            Policy::Require,
            Policy::Require,
            Some(Ok(Rc4)),
            Some(Ok(Rc4)),
        ),
        (
            Policy::Disable,
            Policy::Prefer,
            Some(Ok(plain)),
            Some(Ok(plain)),
        ),
        (
            Policy::Disable,
            Policy::Disable,
            Some(Ok(plain)),
            Some(Ok(plain)),
        ),
        (
            Policy::Disable,
            Policy::Require,
            Some(Ok(plain)),
            Some(Err(MseError::PlaintextRefused)),
        ),
        (
            Policy::Prefer,
            Policy::Disable,
            None,
            Some(Err(MseError::EncryptionRefused)),
        ),
        (
            Policy::Require,
            Policy::Disable,
            None,
            Some(Err(MseError::EncryptionRefused)),
        ),
    ];
    for (i, r, want_i, want_r) in table {
        let (ie, re) = run(
            Offer::Policy(i),
            r,
            pads,
            (&[64], &[64]),
            bt_handshake(),
            (b"from A", b"from B"),
            &[IH],
        );
        assert_eq!(ie.result.map(|r| r.map(|d| d.0)), want_i, "{i:?} -> {r:?}");
        assert_eq!(re.result.map(|r| r.map(|d| d.0)), want_r, "{i:?} -> {r:?}");
    }
    // Plaintext offered through MSE: the obfuscated handshake, then plaintext.
    let (ie, re) = run(
        Offer::Bits(CRYPTO_PLAINTEXT),
        Policy::Prefer,
        pads,
        (&[9], &[9]),
        bt_handshake(),
        (b"plain A", b"plain B"),
        &[IH],
    );
    assert_eq!(ie.result, Some(Ok((HandshakeOnly, None))));
    assert_eq!(re.result, Some(Ok((HandshakeOnly, Some(IH)))));
    assert_eq!(ie.received, b"plain B");
    let (_, re) = run(
        Offer::Bits(CRYPTO_PLAINTEXT),
        Policy::Require,
        pads,
        (&[9], &[9]),
        bt_handshake(),
        (b"", b""),
        &[IH],
    );
    assert_eq!(
        re.result,
        Some(Err(MseError::NoCommonMethod {
            provided: CRYPTO_PLAINTEXT
        }))
    );
}

#[test]
fn plaintext_after_a_plaintext_select_is_not_decrypted() {
    // The wire carries the payload after the handshake as is when plaintext was selected.
    let mut init = Initiator::with_padding(
        &mut Rng::from_u64(5),
        IH,
        Policy::Prefer,
        bt_handshake(),
        Padding::default(),
    );
    init.set_provide(CRYPTO_PLAINTEXT);
    let mut resp =
        Responder::with_padding(&mut Rng::from_u64(6), Policy::Prefer, Padding::default());
    let a1 = init.poll_transmit().unwrap();
    assert!(resp.feed(&a1, &[IH]).unwrap().is_none());
    let b1 = resp.poll_transmit().unwrap();
    assert!(init.feed(&b1).unwrap().is_none());
    let mut a2 = init.poll_transmit().unwrap().to_vec();
    a2.extend_from_slice(b"\0\0\0\x01\x02"); // interested, in plaintext, right after IA
    let done = resp.feed(&a2, &[IH]).unwrap().unwrap();
    assert!(done.cipher.is_none());
    let mut expected = bt_handshake().to_vec();
    expected.extend_from_slice(b"\0\0\0\x01\x02");
    assert_eq!(done.leftover, expected);
    let mut b2 = resp.poll_transmit().unwrap().to_vec();
    assert_eq!(b2.len(), 14, "VC, crypto_select, len(PadD), no PadD");
    b2.extend_from_slice(b"\0\0\0\x01\x01"); // unchoke, plaintext
    let done = init.feed(&b2).unwrap().unwrap();
    assert_eq!(done.encryption, Encryption::HandshakeOnly);
    assert_eq!(done.leftover, &b"\0\0\0\x01\x01"[..]);
    assert_eq!(init.feed(b"x").unwrap_err(), MseError::Finished);
}

/// The bytes an initiator sends, made by hand so that every field can be wrong.
struct Step3 {
    pad_a: usize,
    vc: [u8; 8],
    provide: u32,
    pad_c: u16,
    ia: Vec<u8>,
    /// Payload right after IA, before the responder's answer (possible when only one
    /// method is offered), encrypted as ENCRYPT2 for RC4.
    then: Vec<u8>,
    skey: InfoHash,
}

impl Default for Step3 {
    fn default() -> Self {
        Step3 {
            pad_a: 0,
            vc: VC,
            provide: CRYPTO_RC4,
            pad_c: 0,
            ia: bt_handshake().to_vec(),
            then: Vec::new(),
            skey: IH,
        }
    }
}

/// Runs a hand-made initiator against a responder: Ya and PadA, then (with the secret from
/// the responder's Yb) steps 3. Returns the responder's result on the last feed.
fn against_responder(step: &Step3, policy: Policy) -> Result<Option<Done>, MseError> {
    let mut rng = Rng::from_u64(77);
    let key = PrivateKey::generate(&mut rng);
    let mut resp = Responder::with_padding(&mut Rng::from_u64(78), policy, Padding::default());
    let mut first = key.public_key().as_bytes().to_vec();
    first.extend(std::iter::repeat_n(0x5a, step.pad_a));
    let r = resp.feed(&first, &[IH]);
    let Some(yb) = resp.poll_transmit() else {
        return r;
    };
    let yb: [u8; KEY_LEN] = yb[..KEY_LEN].try_into().unwrap();
    let secret = key.shared_secret(&PublicKey::from_bytes(&yb).unwrap());
    let mut out = BytesMut::new();
    out.put_slice(&req1_hash(&secret));
    out.put_slice(&xor20(&req2_hash(&step.skey), &req3_hash(&secret)));
    let enc = out.len();
    out.put_slice(&step.vc);
    out.put_u32(step.provide);
    out.put_u16(step.pad_c);
    out.put_bytes(0, usize::from(step.pad_c));
    out.put_u16(step.ia.len() as u16);
    out.put_slice(&step.ia);
    out.put_slice(&step.then);
    StreamCipher::initiator(&secret, &step.skey).encrypt(&mut out[enc..]);
    resp.feed(&out, &[IH])
}

#[test]
fn responder_refuses_each_kind_of_bad_handshake() {
    // The hand-made initiator is right when nothing is changed.
    let done = against_responder(&Step3::default(), Policy::Prefer)
        .unwrap()
        .unwrap();
    assert_eq!(done.encryption, Encryption::Rc4);
    assert_eq!(done.leftover, bt_handshake());
    // Payload pipelined after IA is decrypted with the stream's keystream.
    let pipelined = Step3 {
        then: b"\0\0\0\x01\x02".to_vec(),
        ..Step3::default()
    };
    let done = against_responder(&pipelined, Policy::Require)
        .unwrap()
        .unwrap();
    let mut expected = bt_handshake().to_vec();
    expected.extend_from_slice(b"\0\0\0\x01\x02");
    assert_eq!(done.leftover, expected);
    // PadA of 512 bytes is the most allowed; 513 is too much padding.
    let ok = Step3 {
        pad_a: 512,
        ..Step3::default()
    };
    assert!(against_responder(&ok, Policy::Prefer).unwrap().is_some());
    let long = Step3 {
        pad_a: 513,
        ..Step3::default()
    };
    assert_eq!(
        against_responder(&long, Policy::Prefer).unwrap_err(),
        MseError::NoReq1
    );
    let bad_vc = Step3 {
        vc: [0, 0, 0, 0, 0, 0, 0, 1],
        ..Step3::default()
    };
    assert_eq!(
        against_responder(&bad_vc, Policy::Prefer).unwrap_err(),
        MseError::WrongVc
    );
    let unknown = Step3 {
        skey: OTHER,
        ..Step3::default()
    };
    assert_eq!(
        against_responder(&unknown, Policy::Prefer).unwrap_err(),
        MseError::UnknownTorrent
    );
    let ok_pad = Step3 {
        pad_c: 512,
        ..Step3::default()
    };
    assert!(
        against_responder(&ok_pad, Policy::Prefer)
            .unwrap()
            .is_some()
    );
    let long_pad = Step3 {
        pad_c: 513,
        ..Step3::default()
    };
    assert_eq!(
        against_responder(&long_pad, Policy::Prefer).unwrap_err(),
        MseError::PadTooLong { len: 513 }
    );
    let nothing = Step3 {
        provide: 0x10,
        ..Step3::default()
    };
    assert_eq!(
        against_responder(&nothing, Policy::Prefer).unwrap_err(),
        MseError::NoCommonMethod { provided: 0x10 }
    );
    let no_ia = Step3 {
        ia: Vec::new(),
        ..Step3::default()
    };
    let done = against_responder(&no_ia, Policy::Require).unwrap().unwrap();
    assert!(done.leftover.is_empty());
}

#[test]
fn public_values_out_of_range_are_refused_both_ways() {
    let p_minus_1 = {
        let mut p = [0u8; KEY_LEN];
        let hex = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090562";
        for (i, b) in p.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        p
    };
    let mut one = [0u8; KEY_LEN];
    one[KEY_LEN - 1] = 1;
    for bad in [[0u8; KEY_LEN], one, p_minus_1, [0xff; KEY_LEN]] {
        let mut resp = Responder::new(&mut Rng::from_u64(1), Policy::Prefer);
        assert_eq!(resp.feed(&bad, &[IH]).unwrap_err(), MseError::BadPublicKey);
        assert!(
            resp.poll_transmit().is_none(),
            "nothing answered to a bad Ya"
        );
        let mut init = Initiator::new(&mut Rng::from_u64(1), IH, Policy::Prefer, bt_handshake());
        init.poll_transmit().unwrap();
        assert_eq!(init.feed(&bad).unwrap_err(), MseError::BadPublicKey);
        assert!(init.poll_transmit().is_none(), "no offer after a bad Yb");
    }
}

/// A hand-made responder: Yb and PadB, then `VC`, `crypto_select`, `len(PadD)` and PadD
/// encrypted with keyB, against a real initiator offering `provide`.
fn against_initiator(
    pad_b: usize,
    select: u32,
    pad_d: u16,
    provide: u32,
    vc_key: InfoHash,
) -> Result<Option<Done>, MseError> {
    let mut init = Initiator::with_padding(
        &mut Rng::from_u64(3),
        IH,
        Policy::Prefer,
        bt_handshake(),
        Padding::default(),
    );
    init.set_provide(provide);
    let ya = init.poll_transmit().unwrap();
    let ya: [u8; KEY_LEN] = ya[..KEY_LEN].try_into().unwrap();
    let key = PrivateKey::generate(&mut Rng::from_u64(4));
    let secret = key.shared_secret(&PublicKey::from_bytes(&ya).unwrap());
    let mut out = BytesMut::new();
    out.put_slice(key.public_key().as_bytes());
    out.put_bytes(0x33, pad_b);
    let enc = out.len();
    out.put_slice(&VC);
    out.put_u32(select);
    out.put_u16(pad_d);
    out.put_bytes(0, usize::from(pad_d));
    // Payload, long enough that a missing VC is noticed.
    out.put_slice(b"after");
    out.put_bytes(b'.', VC_SCAN);
    StreamCipher::responder(&secret, &vc_key).encrypt(&mut out[enc..]);
    init.feed(&out)
}

#[test]
fn initiator_refuses_each_kind_of_bad_answer() {
    let done = against_initiator(512, CRYPTO_RC4, 512, 3, IH)
        .unwrap()
        .unwrap();
    assert_eq!(done.encryption, Encryption::Rc4);
    assert!(done.leftover.starts_with(b"after..."));
    assert_eq!(done.leftover.len(), 5 + VC_SCAN);
    assert_eq!(
        against_initiator(513, CRYPTO_RC4, 0, 3, IH).unwrap_err(),
        MseError::NoVc,
        "PadB over 512 bytes"
    );
    assert_eq!(
        against_initiator(0, CRYPTO_RC4, 0, 3, OTHER).unwrap_err(),
        MseError::NoVc,
        "keys from another info hash"
    );
    assert_eq!(
        against_initiator(0, CRYPTO_RC4, 513, 3, IH).unwrap_err(),
        MseError::PadTooLong { len: 513 }
    );
    for (select, provide) in [
        (CRYPTO_RC4, 1),
        (CRYPTO_PLAINTEXT, 2),
        (3, 3),
        (0, 3),
        (4, 7),
    ] {
        assert_eq!(
            against_initiator(0, select, 0, provide, IH).unwrap_err(),
            MseError::UnofferedSelect {
                selected: select,
                provided: provide
            }
        );
    }
}

#[test]
fn errors_are_sticky_and_done_is_final() {
    let mut resp = Responder::new(&mut Rng::from_u64(1), Policy::Require);
    let mut hs = vec![19u8];
    hs.extend_from_slice(wire::PROTOCOL);
    assert_eq!(
        resp.feed(&hs, &[IH]).unwrap_err(),
        MseError::PlaintextRefused
    );
    assert_eq!(
        resp.feed(b"more", &[IH]).unwrap_err(),
        MseError::PlaintextRefused
    );
    let mut resp = Responder::new(&mut Rng::from_u64(1), Policy::Prefer);
    let done = resp.feed(&hs, &[IH]).unwrap().unwrap();
    assert_eq!(done.encryption, Encryption::None);
    assert_eq!(done.leftover, hs);
    assert_eq!(resp.feed(b"x", &[IH]).unwrap_err(), MseError::Finished);
}

#[test]
fn a_disabled_initiator_is_done_at_once() {
    let mut init = Initiator::new(&mut Rng::from_u64(1), IH, Policy::Disable, bt_handshake());
    assert_eq!(init.poll_transmit(), Some(bt_handshake()));
    assert!(init.poll_transmit().is_none());
    let done = init.feed(&[]).unwrap().unwrap();
    assert_eq!(done.encryption, Encryption::None);
    assert!(done.leftover.is_empty());
}

#[test]
fn an_initial_payload_over_64_kib_follows_the_handshake() {
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let (_, re) = run(
        Offer::Policy(Policy::Require),
        Policy::Require,
        (Padding::default(), Padding::default()),
        (&[4000], &[4000]),
        Bytes::from(big.clone()),
        (b"then this", b""),
        &[IH],
    );
    assert_eq!(re.result, Some(Ok((Encryption::Rc4, Some(IH)))));
    let mut expected = big;
    expected.extend_from_slice(b"then this");
    assert_eq!(re.received, expected);
}

#[test]
fn same_seed_same_bytes() {
    let first = |seed| {
        let mut i = Initiator::new(&mut Rng::from_u64(seed), IH, Policy::Prefer, bt_handshake());
        i.poll_transmit().unwrap()
    };
    assert_eq!(first(4), first(4));
    assert_ne!(first(4), first(5));
    let a = first(4);
    assert!(a.len() >= KEY_LEN && a.len() <= KEY_LEN + MAX_PAD);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes in any split never panic a responder, give the same result as the
    /// same bytes whole, and are refused once past the longest handshake prefix that needs
    /// no secret (a plaintext handshake aside).
    #[test]
    fn responder_survives_arbitrary_bytes(
        policy in policy_strategy(),
        bytes in prop::collection::vec(any::<u8>(), 0..1500),
        cuts in prop::collection::vec(1usize..200, 1..10),
        plaintext_prefix in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if plaintext_prefix {
            let mut hs = vec![19u8];
            hs.extend_from_slice(wire::PROTOCOL);
            hs.extend_from_slice(&bytes);
            bytes = hs;
        }
        let outcome = |chunks: &mut dyn Iterator<Item = &[u8]>| {
            let mut resp = Responder::new(&mut Rng::from_u64(8), policy);
            let mut last = Ok(None);
            let mut sent = Vec::new();
            let mut stream = Vec::new();
            for c in chunks {
                if let Ok(Some(_)) = last {
                    // Done: the rest is the stream's (plaintext here), not the handshake's.
                    stream.extend_from_slice(c);
                    continue;
                }
                last = resp.feed(c, &[IH]).map(|d| {
                    d.map(|d| {
                        stream.extend_from_slice(&d.leftover);
                        d.encryption
                    })
                });
                while let Some(b) = resp.poll_transmit() {
                    sent.extend_from_slice(&b);
                }
            }
            (last, sent, stream)
        };
        let whole = outcome(&mut std::iter::once(&bytes[..]));
        let mut at = 0;
        let mut k = 0;
        let split = outcome(&mut std::iter::from_fn(|| {
            if at >= bytes.len() {
                return None;
            }
            let n = cuts[k % cuts.len()].min(bytes.len() - at);
            k += 1;
            at += n;
            Some(&bytes[at - n..at])
        }));
        prop_assert_eq!(&whole, &split);
        if bytes.len() >= KEY_LEN + REQ1_SCAN && detect(&bytes) == Detected::Encrypted {
            prop_assert!(whole.0.is_err(), "{:?}", whole.0);
        }
    }
}
