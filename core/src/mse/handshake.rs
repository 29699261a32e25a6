//! The two sides of the MSE handshake as state machines (see the module above for the
//! contract): [`Initiator`] for connections we dial, [`Responder`] for those we accept.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::dh::{KEY_LEN, PrivateKey, PublicKey, SharedSecret};
use super::{
    CRYPTO_PLAINTEXT, CRYPTO_RC4, Detected, Done, Encryption, MAX_PAD, MseError, Policy, REQ1_SCAN,
    StreamCipher, VC, VC_SCAN, detect, req1_hash, req2_hash, req3_hash, xor20,
};
use crate::id::InfoHash;
use crate::rng::Rng;

/// Largest initial payload: its length goes on the wire as 16 bits.
const MAX_IA: usize = u16::MAX as usize;

/// The padding we send. Lengths over [`MAX_PAD`] are cut to it. The default is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Padding {
    /// PadA (initiator) or PadB (responder): random bytes after our public value.
    pub dh: u16,
    /// PadC (initiator) or PadD (responder): inside the encrypted part. Zero by default,
    /// as every client sends it: encrypted padding hides nothing more.
    pub crypto: u16,
}

impl Padding {
    /// What [`Initiator::new`] and [`Responder::new`] use: a random PadA/PadB length in
    /// `0..=512`, no PadC/PadD.
    pub fn random(rng: &mut Rng) -> Padding {
        Padding {
            dh: rng.below(MAX_PAD as u64 + 1) as u16,
            crypto: 0,
        }
    }

    fn dh_len(self) -> usize {
        usize::from(self.dh).min(MAX_PAD)
    }

    fn crypto_len(self) -> u16 {
        self.crypto.min(MAX_PAD as u16)
    }
}

/// Random padding bytes of the chosen length.
fn pad_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut pad = vec![0u8; len];
    rng.fill(&mut pad);
    pad
}

/// Where in `window` the first complete copy of `needle` starts, searching from `from`.
fn find(window: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    window
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// A handshake's end: bookkeeping shared by both sides.
enum Outcome {
    Pending,
    Done,
    Failed(MseError),
}

/// The MSE handshake of a connection we dialled.
///
/// Sends `Ya` and PadA at once, then, when `Yb` arrives, `req1`, `req2 xor req3` and the
/// encrypted offer with the initial payload; finds the responder's encrypted `VC` within
/// [`VC_SCAN`] bytes and checks its `crypto_select`. With [`Policy::Disable`] there is no
/// MSE: the initial payload goes out as is and the first `feed` (even of no bytes) returns
/// [`Done`] with [`Encryption::None`].
pub struct Initiator {
    stage: IStage,
    outcome: Outcome,
    info_hash: InfoHash,
    provide: u32,
    key: Option<PrivateKey>,
    pad_crypto: u16,
    /// The initial payload, until it goes into step 3.
    ia: Bytes,
    /// Initial payload beyond 65,535 bytes: sent as payload once the method is known.
    excess: Bytes,
    cipher: Option<StreamCipher>,
    select: u32,
    buf: BytesMut,
    transmit: VecDeque<Bytes>,
    /// The shared secret began with a zero byte (see [`Initiator::secret_began_with_zero`]).
    zero_led_secret: bool,
}

#[derive(Debug, Clone, Copy)]
enum IStage {
    /// Plain BitTorrent: nothing to wait for.
    Plain,
    /// Waiting for the 96 bytes of `Yb`.
    PublicKey,
    /// Searching the bytes after `Yb` for the encrypted `VC` (`pattern`); `scanned` bytes
    /// of the buffer are known not to start it, but for the last 7.
    Vc { pattern: [u8; 8], scanned: usize },
    /// Waiting for `crypto_select` and `len(PadD)`.
    Select,
    /// Skipping `left` more bytes of PadD.
    PadD { left: usize },
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator")
            .field("stage", &self.stage)
            .field("info_hash", &self.info_hash)
            .field("provide", &self.provide)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl Initiator {
    /// Starts a handshake for the torrent `info_hash`, offering what `policy` allows and
    /// carrying `ia` (normally the BitTorrent handshake) as the initial payload. Random
    /// PadA (0 to 512 bytes).
    pub fn new(rng: &mut Rng, info_hash: InfoHash, policy: Policy, ia: Bytes) -> Initiator {
        let padding = Padding::random(rng);
        Initiator::with_padding(rng, info_hash, policy, ia, padding)
    }

    /// [`Initiator::new`] with chosen padding lengths.
    pub fn with_padding(
        rng: &mut Rng,
        info_hash: InfoHash,
        policy: Policy,
        ia: Bytes,
        padding: Padding,
    ) -> Initiator {
        let mut me = Initiator {
            stage: IStage::Plain,
            outcome: Outcome::Pending,
            info_hash,
            provide: policy.provide(),
            key: None,
            pad_crypto: padding.crypto_len(),
            ia: Bytes::new(),
            excess: Bytes::new(),
            cipher: None,
            select: 0,
            buf: BytesMut::new(),
            transmit: VecDeque::new(),
            zero_led_secret: false,
        };
        if policy == Policy::Disable {
            if !ia.is_empty() {
                me.transmit.push_back(ia);
            }
            return me;
        }
        let key = PrivateKey::generate(rng);
        let mut first = BytesMut::with_capacity(KEY_LEN + padding.dh_len());
        first.put_slice(key.public_key().as_bytes());
        first.put_slice(&pad_bytes(rng, padding.dh_len()));
        me.transmit.push_back(first.freeze());
        me.key = Some(key);
        let mut ia = ia;
        if ia.len() > MAX_IA {
            me.excess = ia.split_off(MAX_IA);
        }
        me.ia = ia;
        me.stage = IStage::PublicKey;
        me
    }

    /// True once the responder's public value is in and the shared secret begins with a
    /// zero byte: the 1 in 256 handshakes that peers which do not pad the secret to 96
    /// bytes (libtorrent up to 2.0.x) fail. A caller whose handshake then fails dials once
    /// more with MSE: the next connection has new keys.
    pub fn secret_began_with_zero(&self) -> bool {
        self.zero_led_secret
    }

    /// Test hook: offer exactly `provide` instead of what the policy offers.
    #[cfg(test)]
    pub(crate) fn set_provide(&mut self, provide: u32) {
        self.provide = provide;
    }

    /// Takes the responder's bytes. `Ok(None)`: more are needed; `Ok(Some(done))`: the
    /// handshake is over (drain [`poll_transmit`](Self::poll_transmit) first, then use the
    /// cipher); `Err`: close the connection. An error repeats on every later call.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Done>, MseError> {
        match &self.outcome {
            Outcome::Pending => {}
            Outcome::Done => return Err(MseError::Finished),
            Outcome::Failed(e) => return Err(e.clone()),
        }
        self.buf.extend_from_slice(bytes);
        let result = self.advance();
        match &result {
            Ok(Some(_)) => self.outcome = Outcome::Done,
            Ok(None) => {}
            Err(e) => {
                self.outcome = Outcome::Failed(e.clone());
                self.buf = BytesMut::new();
            }
        }
        result
    }

    /// The next bytes to send, in order; `None` when there are none for now.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    fn advance(&mut self) -> Result<Option<Done>, MseError> {
        loop {
            match self.stage {
                IStage::Plain => {
                    return Ok(Some(Done {
                        cipher: None,
                        encryption: Encryption::None,
                        info_hash: None,
                        leftover: std::mem::take(&mut self.buf).freeze(),
                    }));
                }
                IStage::PublicKey => {
                    if self.buf.len() < KEY_LEN {
                        return Ok(None);
                    }
                    let mut yb = [0u8; KEY_LEN];
                    self.buf.copy_to_slice(&mut yb);
                    let peer = PublicKey::from_bytes(&yb)?;
                    let Some(key) = self.key.take() else {
                        unreachable!("an MSE initiator holds its key until Yb")
                    };
                    let secret = key.shared_secret(&peer);
                    self.zero_led_secret = secret.as_bytes()[0] == 0;
                    let mut cipher = StreamCipher::initiator(&secret, &self.info_hash);
                    self.send_offer(&secret, &mut cipher);
                    // The responder's keystream starts with VC: its first 8 bytes are
                    // what the encrypted VC looks like.
                    let mut pattern = VC;
                    cipher.incoming().apply(&mut pattern);
                    self.cipher = Some(cipher);
                    self.stage = IStage::Vc {
                        pattern,
                        scanned: 0,
                    };
                }
                IStage::Vc { pattern, scanned } => {
                    let limit = VC_SCAN - KEY_LEN;
                    let window = &self.buf[..self.buf.len().min(limit)];
                    match find(window, &pattern, scanned.saturating_sub(VC.len() - 1)) {
                        Some(at) => {
                            self.buf.advance(at + VC.len());
                            self.stage = IStage::Select;
                        }
                        None if self.buf.len() >= limit => return Err(MseError::NoVc),
                        None => {
                            self.stage = IStage::Vc {
                                pattern,
                                scanned: window.len(),
                            };
                            return Ok(None);
                        }
                    }
                }
                IStage::Select => {
                    if self.buf.len() < 6 {
                        return Ok(None);
                    }
                    let mut head = [0u8; 6];
                    self.buf.copy_to_slice(&mut head);
                    self.cipher_mut().incoming().apply(&mut head);
                    let selected = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
                    let pad = u16::from_be_bytes([head[4], head[5]]);
                    let offered = (selected == CRYPTO_RC4 || selected == CRYPTO_PLAINTEXT)
                        && self.provide & selected != 0;
                    if !offered {
                        return Err(MseError::UnofferedSelect {
                            selected,
                            provided: self.provide,
                        });
                    }
                    if usize::from(pad) > MAX_PAD {
                        return Err(MseError::PadTooLong { len: pad });
                    }
                    self.select = selected;
                    self.stage = IStage::PadD {
                        left: usize::from(pad),
                    };
                }
                IStage::PadD { left } => {
                    let n = left.min(self.buf.len());
                    let mut pad = self.buf.split_to(n);
                    self.cipher_mut().incoming().apply(&mut pad);
                    if n < left {
                        self.stage = IStage::PadD { left: left - n };
                        return Ok(None);
                    }
                    return Ok(Some(self.finish()));
                }
            }
        }
    }

    fn cipher_mut(&mut self) -> &mut StreamCipher {
        self.cipher.as_mut().expect("the cipher exists from Yb on")
    }

    /// Step 3: `req1`, `req2 xor req3`, then the encrypted offer and initial payload.
    fn send_offer(&mut self, secret: &SharedSecret, cipher: &mut StreamCipher) {
        let ia = std::mem::take(&mut self.ia);
        let pad = usize::from(self.pad_crypto);
        let mut out = BytesMut::with_capacity(40 + VC.len() + 4 + 2 + pad + 2 + ia.len());
        out.put_slice(&req1_hash(secret));
        out.put_slice(&xor20(&req2_hash(&self.info_hash), &req3_hash(secret)));
        let encrypted = out.len();
        out.put_slice(&VC);
        out.put_u32(self.provide);
        out.put_u16(self.pad_crypto);
        out.put_bytes(0, pad);
        out.put_u16(ia.len() as u16);
        out.put_slice(&ia);
        cipher.encrypt(&mut out[encrypted..]);
        self.transmit.push_back(out.freeze());
    }

    fn finish(&mut self) -> Done {
        let mut cipher = self.cipher.take();
        let mut leftover = std::mem::take(&mut self.buf);
        let encryption = if self.select == CRYPTO_RC4 {
            Encryption::Rc4
        } else {
            cipher = None;
            Encryption::HandshakeOnly
        };
        let excess = std::mem::take(&mut self.excess);
        match cipher.as_mut() {
            Some(c) => {
                c.decrypt(&mut leftover);
                if !excess.is_empty() {
                    self.transmit.push_back(c.encrypt_bytes(excess));
                }
            }
            None if !excess.is_empty() => self.transmit.push_back(excess),
            None => {}
        }
        Done {
            cipher,
            encryption,
            info_hash: None,
            leftover: leftover.freeze(),
        }
    }
}

/// The MSE handshake (or plain BitTorrent) of a connection we accepted.
///
/// Tells plaintext from MSE by the first bytes ([`detect`]) and applies the policy; for MSE
/// answers `Yb` and PadB as soon as `Ya` is in, finds `req1` within [`REQ1_SCAN`] bytes after
/// it, the torrent from `req2 xor req3`, checks `VC`, selects a method from the peer's offer,
/// and reads the initial payload. The lookup is given with each feed: the torrents of the
/// session may change while a handshake is in flight.
pub struct Responder {
    stage: RStage,
    outcome: Outcome,
    policy: Policy,
    key: PrivateKey,
    pad_dh: Bytes,
    pad_crypto: u16,
    secret: Option<SharedSecret>,
    info_hash: Option<InfoHash>,
    cipher: Option<StreamCipher>,
    select: u32,
    buf: BytesMut,
    transmit: VecDeque<Bytes>,
}

#[derive(Debug, Clone, Copy)]
enum RStage {
    /// Too few bytes yet to tell plaintext from MSE.
    Detect,
    /// MSE: waiting for the 96 bytes of `Ya`.
    PublicKey,
    /// Searching the bytes after `Ya` for `req1`.
    Req1 { req1: [u8; 20], scanned: usize },
    /// Waiting for `req2 xor req3`.
    Req2,
    /// Waiting for `VC`, `crypto_provide` and `len(PadC)`.
    Offer,
    /// Skipping `left` more bytes of PadC.
    PadC { left: usize },
    /// Waiting for `len(IA)`.
    IaLen,
    /// Waiting for the `len` bytes of IA.
    Ia { len: usize },
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("stage", &self.stage)
            .field("policy", &self.policy)
            .field("info_hash", &self.info_hash)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// Waits for an incoming connection's first bytes, accepting what `policy` allows.
    /// Random PadB (0 to 512 bytes).
    pub fn new(rng: &mut Rng, policy: Policy) -> Responder {
        let padding = Padding::random(rng);
        Responder::with_padding(rng, policy, padding)
    }

    /// [`Responder::new`] with chosen padding lengths.
    pub fn with_padding(rng: &mut Rng, policy: Policy, padding: Padding) -> Responder {
        let key = PrivateKey::generate(rng);
        let pad_dh = pad_bytes(rng, padding.dh_len()).into();
        Responder {
            stage: RStage::Detect,
            outcome: Outcome::Pending,
            policy,
            key,
            pad_dh,
            pad_crypto: padding.crypto_len(),
            secret: None,
            info_hash: None,
            cipher: None,
            select: 0,
            buf: BytesMut::new(),
            transmit: VecDeque::new(),
        }
    }

    /// Takes the initiator's bytes; `torrents` are the info hashes a peer may ask for.
    /// `Ok(None)`: more are needed; `Ok(Some(done))`: the handshake is over (drain
    /// [`poll_transmit`](Self::poll_transmit) first, then use the cipher); `Err`: close the
    /// connection. An error repeats on every later call.
    pub fn feed(&mut self, bytes: &[u8], torrents: &[InfoHash]) -> Result<Option<Done>, MseError> {
        self.feed_with(bytes, |req2| {
            torrents.iter().find(|ih| req2_hash(ih) == *req2).copied()
        })
    }

    /// [`feed`](Self::feed) with a lookup of its own: `lookup` maps `HASH('req2', SKEY)`
    /// ([`req2_hash`]) to the torrent's info hash, for a session that keeps them indexed.
    /// It is called at most once per handshake.
    pub fn feed_with(
        &mut self,
        bytes: &[u8],
        lookup: impl FnOnce(&[u8; 20]) -> Option<InfoHash>,
    ) -> Result<Option<Done>, MseError> {
        match &self.outcome {
            Outcome::Pending => {}
            Outcome::Done => return Err(MseError::Finished),
            Outcome::Failed(e) => return Err(e.clone()),
        }
        self.buf.extend_from_slice(bytes);
        let result = self.advance(lookup);
        match &result {
            Ok(Some(_)) => self.outcome = Outcome::Done,
            Ok(None) => {}
            Err(e) => {
                self.outcome = Outcome::Failed(e.clone());
                self.buf = BytesMut::new();
            }
        }
        result
    }

    /// The next bytes to send, in order; `None` when there are none for now.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    fn advance(
        &mut self,
        lookup: impl FnOnce(&[u8; 20]) -> Option<InfoHash>,
    ) -> Result<Option<Done>, MseError> {
        let mut lookup = Some(lookup);
        loop {
            match self.stage {
                RStage::Detect => match detect(&self.buf) {
                    Detected::NeedMore => return Ok(None),
                    Detected::Plaintext if self.policy == Policy::Require => {
                        return Err(MseError::PlaintextRefused);
                    }
                    Detected::Plaintext => {
                        return Ok(Some(Done {
                            cipher: None,
                            encryption: Encryption::None,
                            info_hash: None,
                            leftover: std::mem::take(&mut self.buf).freeze(),
                        }));
                    }
                    Detected::Encrypted if self.policy == Policy::Disable => {
                        return Err(MseError::EncryptionRefused);
                    }
                    Detected::Encrypted => self.stage = RStage::PublicKey,
                },
                RStage::PublicKey => {
                    if self.buf.len() < KEY_LEN {
                        return Ok(None);
                    }
                    let mut ya = [0u8; KEY_LEN];
                    self.buf.copy_to_slice(&mut ya);
                    let peer = PublicKey::from_bytes(&ya)?;
                    let mut reply = BytesMut::with_capacity(KEY_LEN + self.pad_dh.len());
                    reply.put_slice(self.key.public_key().as_bytes());
                    reply.put_slice(&std::mem::take(&mut self.pad_dh));
                    self.transmit.push_back(reply.freeze());
                    let secret = self.key.shared_secret(&peer);
                    let req1 = req1_hash(&secret);
                    self.secret = Some(secret);
                    self.stage = RStage::Req1 { req1, scanned: 0 };
                }
                RStage::Req1 { req1, scanned } => {
                    let window = &self.buf[..self.buf.len().min(REQ1_SCAN)];
                    match find(window, &req1, scanned.saturating_sub(req1.len() - 1)) {
                        Some(at) => {
                            self.buf.advance(at + req1.len());
                            self.stage = RStage::Req2;
                        }
                        None if self.buf.len() >= REQ1_SCAN => return Err(MseError::NoReq1),
                        None => {
                            self.stage = RStage::Req1 {
                                req1,
                                scanned: window.len(),
                            };
                            return Ok(None);
                        }
                    }
                }
                RStage::Req2 => {
                    if self.buf.len() < 20 {
                        return Ok(None);
                    }
                    let mut masked = [0u8; 20];
                    self.buf.copy_to_slice(&mut masked);
                    let secret = self
                        .secret
                        .take()
                        .expect("the secret exists from Ya until req2");
                    let req2 = xor20(&masked, &req3_hash(&secret));
                    let found = lookup.take().and_then(|f| f(&req2));
                    let info_hash = found.ok_or(MseError::UnknownTorrent)?;
                    self.cipher = Some(StreamCipher::responder(&secret, &info_hash));
                    self.info_hash = Some(info_hash);
                    self.stage = RStage::Offer;
                }
                RStage::Offer => {
                    if self.buf.len() < VC.len() + 4 + 2 {
                        return Ok(None);
                    }
                    let mut head = [0u8; 14];
                    self.buf.copy_to_slice(&mut head);
                    self.cipher_mut().decrypt(&mut head);
                    if head[..8] != VC {
                        return Err(MseError::WrongVc);
                    }
                    let provided = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
                    let pad = u16::from_be_bytes([head[12], head[13]]);
                    if usize::from(pad) > MAX_PAD {
                        return Err(MseError::PadTooLong { len: pad });
                    }
                    self.select = self
                        .policy
                        .select(provided)
                        .ok_or(MseError::NoCommonMethod { provided })?;
                    self.stage = RStage::PadC {
                        left: usize::from(pad),
                    };
                }
                RStage::PadC { left } => {
                    let n = left.min(self.buf.len());
                    let mut pad = self.buf.split_to(n);
                    self.cipher_mut().decrypt(&mut pad);
                    if n < left {
                        self.stage = RStage::PadC { left: left - n };
                        return Ok(None);
                    }
                    self.stage = RStage::IaLen;
                }
                RStage::IaLen => {
                    if self.buf.len() < 2 {
                        return Ok(None);
                    }
                    let mut len = [0u8; 2];
                    self.buf.copy_to_slice(&mut len);
                    self.cipher_mut().decrypt(&mut len);
                    self.stage = RStage::Ia {
                        len: usize::from(u16::from_be_bytes(len)),
                    };
                }
                RStage::Ia { len } => {
                    if self.buf.len() < len {
                        return Ok(None);
                    }
                    return Ok(Some(self.finish(len)));
                }
            }
        }
    }

    fn cipher_mut(&mut self) -> &mut StreamCipher {
        self.cipher
            .as_mut()
            .expect("the cipher exists from req2 on")
    }

    /// Step 4 out; the initial payload and whatever followed it become the leftover.
    fn finish(&mut self, ia_len: usize) -> Done {
        let pad = usize::from(self.pad_crypto);
        let mut reply = BytesMut::with_capacity(VC.len() + 4 + 2 + pad);
        reply.put_slice(&VC);
        reply.put_u32(self.select);
        reply.put_u16(self.pad_crypto);
        reply.put_bytes(0, pad);
        let mut cipher = self.cipher.take().expect("the cipher exists from req2 on");
        cipher.encrypt(&mut reply);
        self.transmit.push_back(reply.freeze());

        let mut ia = self.buf.split_to(ia_len);
        cipher.decrypt(&mut ia);
        let mut rest = std::mem::take(&mut self.buf);
        let (cipher, encryption) = if self.select == CRYPTO_RC4 {
            cipher.decrypt(&mut rest);
            (Some(cipher), Encryption::Rc4)
        } else {
            (None, Encryption::HandshakeOnly)
        };
        ia.unsplit(rest);
        Done {
            cipher,
            encryption,
            info_hash: self.info_hash,
            leftover: ia.freeze(),
        }
    }
}
