//! Peer exchange (BEP 11, `ut_pex`): telling connected peers which peers we are connected
//! to, and learning peers from them.
//!
//! # Messages
//!
//! [`PexMessage`]: a bencoded dictionary with `added` (compact IPv4 peers, 6 bytes each) and
//! `added.f` (one [`PexFlags`] byte per added peer), `added6` / `added6.f` (IPv6, 18 bytes
//! each) and `dropped` / `dropped6`, sent as an extended message (BEP 10) with the id the
//! receiver chose for `ut_pex`.
//!
//! Decoding is bounded: a payload larger than [`MAX_PAYLOAD`] is refused without being
//! parsed, and at most the given number of added and of dropped peers is kept (the rest is
//! ignored, not an error). Peers with port 0 or an unspecified address and duplicates are
//! dropped; IPv4-mapped IPv6 addresses count as IPv4. Flags are used only when `added.f`
//! has exactly one byte per added peer.
//!
//! # Per peer: [`PexPeer`]
//!
//! What we have told one peer, and when we may tell it more: [`PexPeer::poll_message`] gives
//! the difference between the peers we are connected to now and those we told it about
//! (never the peer itself), at most [`MAX_ADDED`] added and [`MAX_DROPPED`] dropped per
//! message (what does not fit waits for the next one, as libtorrent does), the first at
//! once and the next at least [`PEX_INTERVAL`] later. [`PexPeer::receive`] reads its
//! messages, ignoring one that comes less than [`MIN_RECEIVE_INTERVAL`] after the last one
//! taken, and leaving out our own addresses and the sender's.
//!
//! The session decides where PEX runs at all: never for a private torrent (BEP 27), never
//! with `--no-pex`; and it bounds what it keeps of the learned peers like tracker peers.

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::BitOr;

use bytes::Bytes;
use thiserror::Error;

use crate::bencode::{self, DictBuilder, Value};
use crate::time::{Duration, Instant};

/// Least time between two messages to one peer (BEP 11: at most one a minute).
pub const PEX_INTERVAL: Duration = Duration::from_secs(60);
/// Least time between two messages taken from one peer; one that comes sooner is ignored.
pub const MIN_RECEIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Most added peers in one message we send.
pub const MAX_ADDED: usize = 50;
/// Most dropped peers in one message we send.
pub const MAX_DROPPED: usize = 50;
/// Largest message accepted, in bytes.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Most added (and, separately, dropped) peers taken from one message by [`PexPeer`].
pub const MAX_RECEIVED: usize = 200;

/// The flags byte of an added peer (BEP 11).
#[derive(Copy, Clone, Default, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct PexFlags(pub u8);

impl PexFlags {
    /// No flags.
    pub const NONE: PexFlags = PexFlags(0);
    /// It prefers encrypted connections.
    pub const ENCRYPTION: PexFlags = PexFlags(0x01);
    /// It is a seed (or uploads only).
    pub const SEED: PexFlags = PexFlags(0x02);
    /// It supports uTP.
    pub const UTP: PexFlags = PexFlags(0x04);
    /// It supports `ut_holepunch`.
    pub const HOLEPUNCH: PexFlags = PexFlags(0x08);
    /// The sender's connection to it is outgoing: it is reachable.
    pub const REACHABLE: PexFlags = PexFlags(0x10);

    /// True when every flag of `other` is set.
    pub fn contains(self, other: PexFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for PexFlags {
    type Output = PexFlags;
    fn bitor(self, rhs: PexFlags) -> PexFlags {
        PexFlags(self.0 | rhs.0)
    }
}

/// A `ut_pex` message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PexMessage {
    /// Peers the sender connected to, with their flags.
    pub added: Vec<(SocketAddr, PexFlags)>,
    /// Peers the sender is no longer connected to.
    pub dropped: Vec<SocketAddr>,
}

/// Why a payload is not a usable `ut_pex` message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PexError {
    /// Larger than [`MAX_PAYLOAD`].
    #[error("ut_pex message of {0} bytes, more than {MAX_PAYLOAD}")]
    TooLarge(usize),
    /// Not what BEP 11 describes.
    #[error("bad ut_pex message: {0}")]
    Malformed(String),
}

/// The address as IPv4 when it is an IPv4-mapped IPv6 one.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

fn usable(addr: &SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified()
}

impl PexMessage {
    /// The payload (after the extended message id). Every key is written, empty when there
    /// is nothing for it, as libtorrent does.
    pub fn encode(&self) -> Bytes {
        let mut added = Vec::new();
        let mut added_f = Vec::new();
        let mut added6 = Vec::new();
        let mut added6_f = Vec::new();
        for (addr, flags) in &self.added {
            match canonical(*addr) {
                SocketAddr::V4(a) => {
                    added.extend_from_slice(&a.ip().octets());
                    added.extend_from_slice(&a.port().to_be_bytes());
                    added_f.push(flags.0);
                }
                SocketAddr::V6(a) => {
                    added6.extend_from_slice(&a.ip().octets());
                    added6.extend_from_slice(&a.port().to_be_bytes());
                    added6_f.push(flags.0);
                }
            }
        }
        let mut dropped = Vec::new();
        let mut dropped6 = Vec::new();
        for addr in &self.dropped {
            match canonical(*addr) {
                SocketAddr::V4(a) => {
                    dropped.extend_from_slice(&a.ip().octets());
                    dropped.extend_from_slice(&a.port().to_be_bytes());
                }
                SocketAddr::V6(a) => {
                    dropped6.extend_from_slice(&a.ip().octets());
                    dropped6.extend_from_slice(&a.port().to_be_bytes());
                }
            }
        }
        let d = DictBuilder::new()
            .insert(b"added", Value::Bytes(&added))
            .insert(b"added.f", Value::Bytes(&added_f))
            .insert(b"added6", Value::Bytes(&added6))
            .insert(b"added6.f", Value::Bytes(&added6_f))
            .insert(b"dropped", Value::Bytes(&dropped))
            .insert(b"dropped6", Value::Bytes(&dropped6))
            .build();
        Bytes::from(bencode::encode(&d))
    }

    /// Reads a payload, keeping at most `max_peers` added and `max_peers` dropped peers
    /// (IPv4 ones first). Unknown keys are ignored; a list of the wrong type or of a length
    /// that is not a whole number of entries is an error.
    pub fn decode(payload: &[u8], max_peers: usize) -> Result<PexMessage, PexError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(PexError::TooLarge(payload.len()));
        }
        let value = bencode::decode(payload).map_err(|e| PexError::Malformed(e.to_string()))?;
        if value.as_dict().is_none() {
            return Err(PexError::Malformed(format!(
                "a {}, not a dictionary",
                value.kind()
            )));
        }
        let bytes = |key: &str| -> Result<&[u8], PexError> {
            match value.get(key.as_bytes()) {
                None => Ok(&[]),
                Some(Value::Bytes(b)) => Ok(b),
                Some(other) => Err(PexError::Malformed(format!(
                    "{key} is a {}, not a string",
                    other.kind()
                ))),
            }
        };
        let mut message = PexMessage::default();
        let mut seen = HashSet::new();
        for (key, flags_key, len) in [("added", "added.f", 6), ("added6", "added6.f", 18)] {
            let peers = entries(key, bytes(key)?, len)?;
            let flags = bytes(flags_key)?;
            let flags = (flags.len() == peers.len()).then_some(flags);
            for (i, addr) in peers.into_iter().enumerate() {
                if message.added.len() == max_peers {
                    break;
                }
                if usable(&addr) && seen.insert(addr) {
                    let f = flags.and_then(|f| f.get(i)).copied().unwrap_or(0);
                    message.added.push((addr, PexFlags(f)));
                }
            }
        }
        let mut seen = HashSet::new();
        for (key, len) in [("dropped", 6), ("dropped6", 18)] {
            for addr in entries(key, bytes(key)?, len)? {
                if message.dropped.len() == max_peers {
                    break;
                }
                if usable(&addr) && seen.insert(addr) {
                    message.dropped.push(addr);
                }
            }
        }
        Ok(message)
    }
}

/// Compact peers of `len` bytes each (6: IPv4, 18: IPv6).
fn entries(key: &str, bytes: &[u8], len: usize) -> Result<Vec<SocketAddr>, PexError> {
    if !bytes.len().is_multiple_of(len) {
        return Err(PexError::Malformed(format!(
            "{key} is {} bytes, not a multiple of {len}",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(len)
        .map(|entry| {
            let (ip, port) = entry.split_at(len - 2);
            let port = u16::from_be_bytes([port[0], port[1]]);
            let ip = match <[u8; 4]>::try_from(ip) {
                Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
                Err(_) => {
                    let mut v6 = [0u8; 16];
                    v6.copy_from_slice(ip);
                    IpAddr::V6(Ipv6Addr::from(v6))
                }
            };
            canonical(SocketAddr::new(ip, port))
        })
        .collect())
}

/// PEX with one connected peer (see the module documentation).
#[derive(Debug, Clone)]
pub struct PexPeer {
    /// The peer's address: never told about itself, never learned from itself.
    remote: SocketAddr,
    /// The peers it has been told we are connected to.
    advertised: BTreeSet<SocketAddr>,
    /// When the next message may go.
    next_send: Instant,
    /// When its last message was taken.
    last_received: Option<Instant>,
}

impl PexPeer {
    /// PEX with the peer at `remote` (its listening address if known, else the
    /// connection's), which has `ut_pex` in its extension handshake.
    pub fn new(remote: SocketAddr) -> PexPeer {
        PexPeer {
            remote: canonical(remote),
            advertised: BTreeSet::new(),
            next_send: Instant::ZERO,
            last_received: None,
        }
    }

    /// How many peers it has been told about.
    pub fn advertised(&self) -> usize {
        self.advertised.len()
    }

    /// The message to send now, if one is due and there is something new: the peers in
    /// `connected` (our connections in the order we prefer to announce them, with their
    /// flags) not told yet, and those told that are no longer in `connected`.
    pub fn poll_message(
        &mut self,
        now: Instant,
        connected: &[(SocketAddr, PexFlags)],
    ) -> Option<PexMessage> {
        if now < self.next_send {
            return None;
        }
        let current: BTreeSet<SocketAddr> = connected
            .iter()
            .map(|(addr, _)| canonical(*addr))
            .filter(|addr| *addr != self.remote && usable(addr))
            .collect();
        let dropped: Vec<SocketAddr> = self
            .advertised
            .difference(&current)
            .take(MAX_DROPPED)
            .copied()
            .collect();
        let mut added = Vec::new();
        let mut taken = BTreeSet::new();
        for (addr, flags) in connected {
            let addr = canonical(*addr);
            if added.len() == MAX_ADDED {
                break;
            }
            if current.contains(&addr) && !self.advertised.contains(&addr) && taken.insert(addr) {
                added.push((addr, *flags));
            }
        }
        if added.is_empty() && dropped.is_empty() {
            return None;
        }
        for addr in &dropped {
            self.advertised.remove(addr);
        }
        self.advertised.extend(added.iter().map(|(addr, _)| *addr));
        self.next_send = now + PEX_INTERVAL;
        Some(PexMessage { added, dropped })
    }

    /// When [`PexPeer::poll_message`] may next give a message.
    pub fn poll_timeout(&self) -> Instant {
        self.next_send
    }

    /// A message from this peer: what to learn from it, or `None` when it came too soon
    /// after the last one and is ignored. Addresses in `own` (ours, as we listen and as
    /// others see us) and the sender's are left out; at most [`MAX_RECEIVED`] of each list
    /// are taken. An error means the payload is not a PEX message (ignore it, or drop the
    /// peer: the session's choice).
    pub fn receive(
        &mut self,
        now: Instant,
        payload: &[u8],
        own: &[SocketAddr],
    ) -> Result<Option<PexMessage>, PexError> {
        if self
            .last_received
            .is_some_and(|last| now < last + MIN_RECEIVE_INTERVAL)
        {
            return Ok(None);
        }
        let mut message = PexMessage::decode(payload, MAX_RECEIVED)?;
        self.last_received = Some(now);
        let own: Vec<SocketAddr> = own.iter().map(|a| canonical(*a)).collect();
        let foreign = |addr: &SocketAddr| *addr != self.remote && !own.contains(addr);
        message.added.retain(|(addr, _)| foreign(addr));
        message.dropped.retain(foreign);
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(secs)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn v4(i: u32, port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + i), port))
    }

    #[test]
    fn message_on_the_wire() {
        let m = PexMessage {
            added: vec![
                (addr("10.0.0.1:6881"), PexFlags::SEED | PexFlags::REACHABLE),
                (addr("[2001:db8::1]:80"), PexFlags::UTP),
                (addr("[::ffff:10.0.0.2]:1"), PexFlags::ENCRYPTION),
            ],
            dropped: vec![addr("10.0.0.3:2"), addr("[::1]:3")],
        };
        let bytes = m.encode();
        let mut expected = b"d5:added12:\x0a\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x01\
                             7:added.f2:\x12\x01\
                             6:added618:"
            .to_vec();
        expected.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        expected.extend_from_slice(b"\x00\x508:added6.f1:\x047:dropped6:\x0a\x00\x00\x03\x00\x02");
        expected.extend_from_slice(b"8:dropped618:");
        expected.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        expected.extend_from_slice(b"\x00\x03e");
        assert_eq!(bytes, expected);
        let back = PexMessage::decode(&bytes, 100).unwrap();
        // IPv4 entries come first; the mapped address is plain IPv4.
        assert_eq!(
            back.added,
            [
                (addr("10.0.0.1:6881"), PexFlags(0x12)),
                (addr("10.0.0.2:1"), PexFlags::ENCRYPTION),
                (addr("[2001:db8::1]:80"), PexFlags::UTP),
            ]
        );
        assert_eq!(back.dropped, m.dropped);
        assert!(PexFlags(0x12).contains(PexFlags::SEED));
        assert!(!PexFlags(0x12).contains(PexFlags::UTP));
    }

    #[test]
    fn reads_what_libtorrent_sends() {
        // libtorrent writes every key; here one IPv4 peer, seed and reachable.
        let lt = b"d5:added6:\x7f\x00\x00\x01\x1a\xe17:added.f1:\x126:added60:8:added6.f0:7:dropped0:8:dropped60:e";
        let m = PexMessage::decode(lt, 50).unwrap();
        assert_eq!(m.added, [(addr("127.0.0.1:6881"), PexFlags(0x12))]);
        assert!(m.dropped.is_empty());
        // Missing keys are empty lists; flags of the wrong length are ignored.
        let m = PexMessage::decode(
            b"d5:added12:\x01\x01\x01\x01\x00\x01\x02\x02\x02\x02\x00\x027:added.f1:\x01e",
            50,
        )
        .unwrap();
        assert_eq!(
            m.added,
            [
                (addr("1.1.1.1:1"), PexFlags::NONE),
                (addr("2.2.2.2:2"), PexFlags::NONE)
            ]
        );
    }

    #[test]
    fn bad_messages() {
        for (bad, why) in [
            (&b"le"[..], "not a dictionary"),
            (b"d5:addedi1ee", "added is a integer"),
            (b"d7:dropped5:abcdee", "not a multiple of 6"),
            (b"d6:added65:abcdee", "not a multiple of 18"),
            (b"d5:added", "malformed"),
        ] {
            let err = PexMessage::decode(bad, 50).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
        }
        let huge = vec![b'x'; MAX_PAYLOAD + 1];
        assert_eq!(
            PexMessage::decode(&huge, 50),
            Err(PexError::TooLarge(MAX_PAYLOAD + 1))
        );
    }

    #[test]
    fn thousands_of_peers_are_cut_and_garbage_dropped() {
        let many: Vec<(SocketAddr, PexFlags)> =
            (0..5000).map(|i| (v4(i, 6881), PexFlags::SEED)).collect();
        let mut with_garbage = vec![
            (addr("0.0.0.0:1"), PexFlags::NONE),
            (addr("10.9.9.9:0"), PexFlags::NONE),
            (v4(0, 6881), PexFlags::NONE),
        ];
        with_garbage.extend(many);
        let bytes = PexMessage {
            added: with_garbage,
            dropped: (0..5000).map(|i| v4(i, 1)).collect(),
        }
        .encode();
        assert!(bytes.len() < MAX_PAYLOAD);
        let m = PexMessage::decode(&bytes, 200).unwrap();
        assert_eq!(m.added.len(), 200);
        assert_eq!(m.added[0], (v4(0, 6881), PexFlags::NONE));
        assert_eq!(m.added[199], (v4(199, 6881), PexFlags::SEED));
        assert_eq!(m.dropped.len(), 200);
    }

    #[test]
    fn sends_the_difference_at_most_once_a_minute() {
        let remote = addr("10.0.0.100:6881");
        let mut p = PexPeer::new(remote);
        let a = (addr("10.0.0.1:1"), PexFlags::SEED);
        let b = (addr("10.0.0.2:2"), PexFlags::REACHABLE);
        let c = (addr("[2001:db8::3]:3"), PexFlags::NONE);
        // Nothing to say yet.
        assert_eq!(p.poll_message(at(0), &[(remote, PexFlags::NONE)]), None);
        assert_eq!(p.poll_timeout(), at(0));
        // The first message goes at once, without the peer itself.
        let m = p
            .poll_message(at(1), &[a, (remote, PexFlags::NONE), b])
            .unwrap();
        assert_eq!(m.added, [a, b]);
        assert!(m.dropped.is_empty());
        assert_eq!(p.poll_timeout(), at(61));
        assert_eq!(p.advertised(), 2);
        // Changes wait for the minute.
        assert_eq!(p.poll_message(at(60), &[b, c]), None);
        let m = p.poll_message(at(61), &[b, c]).unwrap();
        assert_eq!(m.added, [c]);
        assert_eq!(m.dropped, [a.0]);
        // Nothing changed: nothing sent, and the next change may go at once.
        assert_eq!(p.poll_message(at(200), &[b, c]), None);
        let m = p.poll_message(at(201), &[c]).unwrap();
        assert_eq!((m.added.len(), m.dropped.clone()), (0, vec![b.0]));
        // The message decodes to what was meant.
        let m = p.poll_message(at(262), &[a]).unwrap();
        assert_eq!(PexMessage::decode(&m.encode(), 100).unwrap(), m);
    }

    #[test]
    fn at_most_50_added_and_50_dropped_per_message() {
        let mut p = PexPeer::new(addr("10.9.9.9:1"));
        let first: Vec<(SocketAddr, PexFlags)> =
            (0..120).map(|i| (v4(i, 1), PexFlags::NONE)).collect();
        let m = p.poll_message(at(0), &first).unwrap();
        assert_eq!(m.added, first[..50]);
        let m = p.poll_message(at(60), &first).unwrap();
        assert_eq!(m.added, first[50..100]);
        let m = p.poll_message(at(120), &first).unwrap();
        assert_eq!(m.added, first[100..]);
        assert_eq!(p.advertised(), 120);
        // All gone: dropped 50 at a time, with newcomers added alongside.
        let newcomers: Vec<(SocketAddr, PexFlags)> =
            (1000..1060).map(|i| (v4(i, 2), PexFlags::NONE)).collect();
        let m = p.poll_message(at(180), &newcomers).unwrap();
        assert_eq!((m.added.len(), m.dropped.len()), (50, 50));
        let m = p.poll_message(at(240), &newcomers).unwrap();
        assert_eq!((m.added.len(), m.dropped.len()), (10, 50));
        let m = p.poll_message(at(300), &newcomers).unwrap();
        assert_eq!((m.added.len(), m.dropped.len()), (0, 20));
        assert_eq!(p.advertised(), 60);
        assert_eq!(p.poll_message(at(360), &newcomers), None);
    }

    #[test]
    fn receiving_skips_ourselves_the_sender_and_floods() {
        let remote = addr("10.0.0.100:6881");
        let us = [addr("10.0.0.200:6881"), addr("[::1]:6881")];
        let mut p = PexPeer::new(remote);
        let m = PexMessage {
            added: vec![
                (addr("10.0.0.1:1"), PexFlags::SEED),
                (us[0], PexFlags::NONE),
                (remote, PexFlags::NONE),
                (addr("[::ffff:10.0.0.200]:6881"), PexFlags::NONE),
                (us[1], PexFlags::NONE),
            ],
            dropped: vec![addr("10.0.0.2:2"), us[0]],
        };
        let got = p.receive(at(0), &m.encode(), &us).unwrap().unwrap();
        assert_eq!(got.added, [(addr("10.0.0.1:1"), PexFlags::SEED)]);
        assert_eq!(got.dropped, [addr("10.0.0.2:2")]);
        // Another within 30 s is ignored; after, taken.
        assert_eq!(p.receive(at(29), &m.encode(), &us), Ok(None));
        assert!(p.receive(at(30), &m.encode(), &us).unwrap().is_some());
        // Garbage is an error and does not count as a message taken.
        assert!(p.receive(at(100), b"junk", &us).is_err());
        assert!(p.receive(at(101), &m.encode(), &us).unwrap().is_some());
        // Thousands of peers: at most MAX_RECEIVED kept.
        let flood = PexMessage {
            added: (0..3000).map(|i| (v4(i, 1), PexFlags::NONE)).collect(),
            dropped: Vec::new(),
        };
        let got = p.receive(at(200), &flood.encode(), &us).unwrap().unwrap();
        assert_eq!(got.added.len(), MAX_RECEIVED);
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
            (0u32..20, 1u16..4).prop_map(|(i, port)| v4(i, port)),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), max in 0usize..40) {
            if let Ok(m) = PexMessage::decode(&bytes, max) {
                prop_assert!(m.added.len() <= max && m.dropped.len() <= max);
                prop_assert!(m.added.iter().all(|(a, _)| usable(a)));
                prop_assert_eq!(PexMessage::decode(&m.encode(), max), Ok(m));
            }
        }

        #[test]
        fn encoded_messages_decode_back(
            added in proptest::collection::vec((arb_addr(), any::<u8>()), 0..80),
            dropped in proptest::collection::vec(arb_addr(), 0..80),
        ) {
            let mut seen = HashSet::new();
            let mut added: Vec<(SocketAddr, PexFlags)> = added
                .into_iter()
                .map(|(a, f)| (canonical(a), PexFlags(f)))
                .filter(|(a, _)| usable(a) && seen.insert(*a))
                .collect();
            // The decoder gives IPv4 peers first.
            added.sort_by_key(|(a, _)| a.is_ipv6());
            let mut seen = HashSet::new();
            let mut dropped: Vec<SocketAddr> = dropped
                .into_iter()
                .map(canonical)
                .filter(|a| usable(a) && seen.insert(*a))
                .collect();
            dropped.sort_by_key(SocketAddr::is_ipv6);
            let m = PexMessage { added, dropped };
            prop_assert_eq!(PexMessage::decode(&m.encode(), usize::MAX), Ok(m));
        }

        /// Over any sequence of connection sets, what the peer was told always matches
        /// what we are connected to once the messages catch up, never includes the peer
        /// itself, and messages stay within their bounds and a minute apart.
        #[test]
        fn the_remote_view_converges(
            sets in proptest::collection::vec(proptest::collection::vec(arb_addr(), 0..150), 1..8),
        ) {
            let remote = v4(0, 1);
            let mut p = PexPeer::new(remote);
            let mut view: BTreeSet<SocketAddr> = BTreeSet::new();
            let mut now = at(0);
            let mut last_sent: Option<Instant> = None;
            for set in sets {
                let connected: Vec<(SocketAddr, PexFlags)> =
                    set.iter().map(|a| (*a, PexFlags::NONE)).collect();
                let expected: BTreeSet<SocketAddr> = set
                    .iter()
                    .map(|a| canonical(*a))
                    .filter(|a| *a != remote && usable(a))
                    .collect();
                for _ in 0..10 {
                    if let Some(m) = p.poll_message(now, &connected) {
                        prop_assert!(m.added.len() <= MAX_ADDED && m.dropped.len() <= MAX_DROPPED);
                        prop_assert!(last_sent.is_none_or(|t| now >= t + PEX_INTERVAL));
                        last_sent = Some(now);
                        let decoded = PexMessage::decode(&m.encode(), usize::MAX).unwrap();
                        for a in &decoded.dropped {
                            prop_assert!(view.remove(a));
                        }
                        for (a, _) in &decoded.added {
                            prop_assert!(view.insert(*a));
                        }
                    }
                    now += Duration::from_secs(61);
                }
                prop_assert_eq!(&view, &expected);
                prop_assert!(!view.contains(&remote));
            }
        }
    }
}
