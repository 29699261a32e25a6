//! The Fast extension (BEP 6): the pure parts the peer logic builds on.
//!
//! - [`allowed_fast_set`]: the pieces a peer may request from us while choked, computed from
//!   its address and the info hash exactly as the BEP describes.
//! - [`availability_message`]: `have_all` or `have_none` instead of a bitfield where they fit.
//! - [`check_message`]: whether a received fast message is acceptable at all (negotiated,
//!   piece in range); what depends on the connection's history (a reject for a block never
//!   requested) is the peer logic's to check.
//! - [`split_on_choke`]: which of a peer's pending requests a choke rejects and which it keeps.
//! - [`PieceList`]: a bounded list of piece indices (allowed-fast pieces a peer grants us,
//!   suggested pieces), since everything a stranger can make us store is bounded.
//!
//! The messages themselves (`suggest_piece` 13, `have_all` 14, `have_none` 15,
//! `reject_request` 16, `allowed_fast` 17) are encoded and decoded by [`crate::wire`]; the
//! reserved bit is [`crate::wire::Handshake::FAST`].

#![warn(missing_docs)]

use std::collections::VecDeque;
use std::net::IpAddr;

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::bitfield::Bitfield;
use crate::id::InfoHash;
use crate::wire::{BlockRequest, Message};

/// How many allowed-fast pieces to grant a peer: the BEP's example size (libtorrent grants
/// 5 by default, and only to peers with few pieces).
pub const ALLOWED_FAST_COUNT: usize = 10;

/// Most allowed-fast pieces we keep from one peer; later grants are ignored.
pub const MAX_ALLOWED_FAST_RECEIVED: usize = 64;

/// Most suggestions we keep from one peer; a new one pushes out the oldest.
pub const MAX_SUGGESTIONS: usize = 32;

/// The allowed-fast set for a peer at `ip`, `k` pieces of a torrent with `num_pieces` pieces,
/// in the order the BEP's algorithm yields them:
///
/// ```text
/// x = (ip & 0xFFFFFF00) ++ info_hash
/// while |a| < k:
///     x = SHA1(x)
///     for each of the five big-endian 32-bit words y of x, while |a| < k:
///         i = y mod num_pieces; if i not in a: add i to a
/// ```
///
/// The /24 mask gives every peer behind one subnet the same set, so that a peer cannot
/// collect more free pieces by changing addresses. The BEP defines IPv4 only; an
/// IPv4-mapped IPv6 address counts as its IPv4 address, and other IPv6 addresses are masked
/// to their /48 and hashed as 16 bytes. `k` is cut to `num_pieces` (more could never be
/// found); an empty torrent has no set.
pub fn allowed_fast_set(ip: IpAddr, info_hash: &InfoHash, num_pieces: u32, k: usize) -> Vec<u32> {
    let k = k.min(num_pieces as usize);
    let mut set = Vec::with_capacity(k);
    if k == 0 {
        return set;
    }
    let mut x: Vec<u8> = match ip.to_canonical() {
        IpAddr::V4(v4) => (u32::from(v4) & 0xFFFF_FF00).to_be_bytes().to_vec(),
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[6..].fill(0);
            octets.to_vec()
        }
    };
    x.extend_from_slice(&info_hash.0);
    while set.len() < k {
        let digest: [u8; 20] = Sha1::digest(&x).into();
        for word in digest.chunks_exact(4) {
            if set.len() >= k {
                break;
            }
            let y = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
            let index = y % num_pieces;
            if !set.contains(&index) {
                set.push(index);
            }
        }
        x = digest.to_vec();
    }
    set
}

/// The message announcing our pieces right after the handshake: with the Fast extension,
/// `have_all` for a seeder and `have_none` for a peer with nothing; otherwise (or without
/// the extension) the bitfield.
pub fn availability_message(have: &Bitfield, fast: bool) -> Message {
    if fast && have.all() {
        Message::HaveAll
    } else if fast && have.none() {
        Message::HaveNone
    } else {
        Message::Bitfield(have.to_bytes().into())
    }
}

/// Why a received fast message closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FastError {
    /// A fast message from a peer that did not set the reserved bit (or to whom we did not).
    #[error("{0} without the Fast extension negotiated")]
    NotNegotiated(&'static str),
    /// A piece index past the torrent's last piece.
    #[error("{message} for piece {piece}, but the torrent has {num_pieces} pieces")]
    PieceOutOfRange {
        /// The message's name.
        message: &'static str,
        /// The index it named.
        piece: u32,
        /// The torrent's piece count.
        num_pieces: u32,
    },
}

/// The BEP 6 name of a fast message; `None` for the other messages.
pub fn fast_message_name(message: &Message) -> Option<&'static str> {
    Some(match message {
        Message::Suggest(_) => "suggest_piece",
        Message::HaveAll => "have_all",
        Message::HaveNone => "have_none",
        Message::Reject(_) => "reject_request",
        Message::AllowedFast(_) => "allowed_fast",
        _ => return None,
    })
}

/// Checks a received message against the Fast extension: a fast message needs the extension
/// negotiated (`fast`: both handshakes had the bit) and a piece index below `num_pieces`.
/// Other messages pass. An `allowed_fast` for a piece we already have is legal (the BEP lets
/// a peer send its set whatever we have) and passes.
pub fn check_message(message: &Message, fast: bool, num_pieces: u32) -> Result<(), FastError> {
    let Some(name) = fast_message_name(message) else {
        return Ok(());
    };
    if !fast {
        return Err(FastError::NotNegotiated(name));
    }
    let piece = match message {
        Message::Suggest(p) | Message::AllowedFast(p) => *p,
        Message::Reject(r) => r.piece,
        _ => return Ok(()),
    };
    if piece >= num_pieces {
        return Err(FastError::PieceOutOfRange {
            message: name,
            piece,
            num_pieces,
        });
    }
    Ok(())
}

/// What a choke does to a peer's pending requests under the Fast extension: requests for
/// pieces in the peer's allowed-fast set (`allowed`) are kept and still served; every other
/// one is dropped and must be answered with `reject_request`. Returns `(keep, reject)`, each
/// in the order given.
pub fn split_on_choke(
    pending: impl IntoIterator<Item = BlockRequest>,
    allowed: &[u32],
) -> (Vec<BlockRequest>, Vec<BlockRequest>) {
    pending
        .into_iter()
        .partition(|r| allowed.contains(&r.piece))
}

/// A bounded list of distinct piece indices, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceList {
    pieces: VecDeque<u32>,
    capacity: usize,
}

impl PieceList {
    /// An empty list holding at most `capacity` pieces.
    pub fn new(capacity: usize) -> PieceList {
        PieceList {
            pieces: VecDeque::new(),
            capacity,
        }
    }

    /// Adds `piece` unless it is there already or the list is full (for grants: the first
    /// ones count, a flood is ignored). Returns whether it was added.
    pub fn insert(&mut self, piece: u32) -> bool {
        if self.pieces.len() >= self.capacity || self.contains(piece) {
            return false;
        }
        self.pieces.push_back(piece);
        true
    }

    /// Adds `piece` as the newest, pushing out the oldest when full (for hints: the latest
    /// count). A piece already there becomes the newest.
    pub fn push_newest(&mut self, piece: u32) {
        if self.capacity == 0 {
            return;
        }
        self.remove(piece);
        if self.pieces.len() >= self.capacity {
            self.pieces.pop_front();
        }
        self.pieces.push_back(piece);
    }

    /// Removes `piece`; returns whether it was there.
    pub fn remove(&mut self, piece: u32) -> bool {
        match self.pieces.iter().position(|&p| p == piece) {
            Some(i) => {
                self.pieces.remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether `piece` is in the list.
    pub fn contains(&self, piece: u32) -> bool {
        self.pieces.contains(&piece)
    }

    /// The pieces, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.pieces.iter().copied()
    }

    /// How many pieces the list holds.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    const BEP_HASH: InfoHash = InfoHash([0xaa; 20]);
    const BEP_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(80, 4, 4, 200));

    /// The BEP's test vector: 80.4.4.200, info hash 0xAA x 20, 1313 pieces.
    #[test]
    fn bep_6_test_vector() {
        assert_eq!(
            allowed_fast_set(BEP_IP, &BEP_HASH, 1313, 7),
            [1059, 431, 808, 1217, 287, 376, 1188]
        );
        assert_eq!(
            allowed_fast_set(BEP_IP, &BEP_HASH, 1313, 9),
            [1059, 431, 808, 1217, 287, 376, 1188, 353, 508]
        );
    }

    #[test]
    fn the_subnet_decides_not_the_host() {
        let same = IpAddr::V4(Ipv4Addr::new(80, 4, 4, 1));
        let other = IpAddr::V4(Ipv4Addr::new(80, 4, 5, 200));
        let mapped = IpAddr::V6(Ipv4Addr::new(80, 4, 4, 77).to_ipv6_mapped());
        let want = allowed_fast_set(BEP_IP, &BEP_HASH, 1313, 9);
        assert_eq!(allowed_fast_set(same, &BEP_HASH, 1313, 9), want);
        assert_eq!(allowed_fast_set(mapped, &BEP_HASH, 1313, 9), want);
        assert_ne!(allowed_fast_set(other, &BEP_HASH, 1313, 9), want);
        assert_ne!(
            allowed_fast_set(BEP_IP, &InfoHash([0xab; 20]), 1313, 9),
            want
        );
        let v6 = |s: &str| IpAddr::V6(s.parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            allowed_fast_set(v6("2001:db8:1:2::1"), &BEP_HASH, 1313, 9),
            allowed_fast_set(v6("2001:db8:1:ffff::9"), &BEP_HASH, 1313, 9)
        );
        assert_ne!(
            allowed_fast_set(v6("2001:db8:1::1"), &BEP_HASH, 1313, 9),
            allowed_fast_set(v6("2001:db8:2::1"), &BEP_HASH, 1313, 9)
        );
    }

    #[test]
    fn small_torrents_give_every_piece_and_no_more() {
        assert!(allowed_fast_set(BEP_IP, &BEP_HASH, 0, 10).is_empty());
        assert_eq!(allowed_fast_set(BEP_IP, &BEP_HASH, 1, 10), [0]);
        let mut all = allowed_fast_set(BEP_IP, &BEP_HASH, 7, 10);
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn availability_uses_have_all_and_have_none_only_with_fast() {
        let full = Bitfield::full(10);
        let empty = Bitfield::new(10);
        let mut some = Bitfield::new(10);
        some.set(3);
        assert_eq!(availability_message(&full, true), Message::HaveAll);
        assert_eq!(availability_message(&empty, true), Message::HaveNone);
        assert_eq!(
            availability_message(&some, true),
            Message::Bitfield(some.to_bytes().into())
        );
        assert_eq!(
            availability_message(&full, false),
            Message::Bitfield(full.to_bytes().into())
        );
        assert_eq!(
            availability_message(&empty, false),
            Message::Bitfield(empty.to_bytes().into())
        );
    }

    #[test]
    fn fast_messages_need_the_extension_and_a_piece_in_range() {
        let r = |piece| BlockRequest {
            piece,
            offset: 0,
            len: 16384,
        };
        for m in [
            Message::Suggest(1),
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject(r(1)),
            Message::AllowedFast(1),
        ] {
            assert_eq!(check_message(&m, true, 5), Ok(()), "{m:?}");
            assert!(
                matches!(
                    check_message(&m, false, 5),
                    Err(FastError::NotNegotiated(_))
                ),
                "{m:?}"
            );
        }
        for m in [
            Message::Suggest(5),
            Message::Reject(r(5)),
            Message::AllowedFast(u32::MAX),
        ] {
            assert!(
                matches!(
                    check_message(&m, true, 5),
                    Err(FastError::PieceOutOfRange { num_pieces: 5, .. })
                ),
                "{m:?}"
            );
        }
        assert_eq!(check_message(&Message::Have(99), false, 5), Ok(()));
        assert_eq!(check_message(&Message::Request(r(1)), false, 5), Ok(()));
        assert_eq!(
            FastError::NotNegotiated("have_all").to_string(),
            "have_all without the Fast extension negotiated"
        );
    }

    #[test]
    fn a_choke_keeps_allowed_fast_requests_and_rejects_the_rest() {
        let req = |piece, offset| BlockRequest {
            piece,
            offset,
            len: 16384,
        };
        let pending = [req(1, 0), req(4, 0), req(1, 16384), req(9, 0)];
        let (keep, reject) = split_on_choke(pending, &[1, 7]);
        assert_eq!(keep, [req(1, 0), req(1, 16384)]);
        assert_eq!(reject, [req(4, 0), req(9, 0)]);
    }

    #[test]
    fn piece_lists_are_bounded() {
        let mut grants = PieceList::new(3);
        assert!(grants.insert(5));
        assert!(!grants.insert(5), "no duplicates");
        assert!(grants.insert(6) && grants.insert(7));
        assert!(!grants.insert(8), "full: later grants ignored");
        assert_eq!(grants.iter().collect::<Vec<_>>(), [5, 6, 7]);
        assert!(grants.remove(6) && !grants.remove(6));
        assert!(grants.insert(8));

        let mut hints = PieceList::new(2);
        hints.push_newest(1);
        hints.push_newest(2);
        hints.push_newest(1);
        assert_eq!(hints.iter().collect::<Vec<_>>(), [2, 1]);
        hints.push_newest(3);
        assert_eq!(hints.iter().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(hints.len(), 2);
        let mut none = PieceList::new(0);
        none.push_newest(1);
        assert!(none.is_empty() && !none.insert(1));
    }

    proptest! {
        /// The set has min(k, n) distinct pieces below n, and a smaller k gives a prefix.
        #[test]
        fn allowed_fast_sets_are_distinct_in_range_and_nested(
            ip in any::<[u8; 4]>(),
            hash in any::<[u8; 20]>(),
            n in 1u32..3000,
            k in 0usize..40,
        ) {
            let ip = IpAddr::V4(Ipv4Addr::from(ip));
            let ih = InfoHash(hash);
            let set = allowed_fast_set(ip, &ih, n, k);
            prop_assert_eq!(set.len(), k.min(n as usize));
            prop_assert!(set.iter().all(|&p| p < n));
            let mut sorted = set.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), set.len());
            let bigger = allowed_fast_set(ip, &ih, n, k + 3);
            prop_assert_eq!(&bigger[..set.len()], &set[..]);
        }
    }
}
