//! Node ids (BEP 5): 160-bit numbers in the same space as info hashes, compared by XOR
//! distance; and their tie to the node's external IP address (BEP 42).
//!
//! BEP 42 makes the first 21 bits of an id a CRC-32C of the node's masked IP address and
//! three random bits (kept in the id's last byte), so that a node cannot choose where in the
//! id space it sits without controlling many addresses. Local and private addresses are
//! exempt, as the BEP says.

use std::fmt;
use std::net::IpAddr;

use crc::{CRC_32_ISCSI, Crc};

use crate::id::{InfoHash, hex};
use crate::rng::Rng;

/// CRC-32C (Castagnoli), the checksum BEP 42 uses.
const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// A DHT node's 160-bit identity, or a key in the same space (an info hash, a lookup target).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub [u8; 20]);

/// The XOR of two ids, ordered as a 160-bit big-endian number: smaller is closer.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Distance(pub [u8; 20]);

impl NodeId {
    /// Length of an id in bytes.
    pub const LEN: usize = 20;

    /// A uniformly random id.
    pub fn random(rng: &mut Rng) -> NodeId {
        let mut id = [0u8; 20];
        rng.fill(&mut id);
        NodeId(id)
    }

    /// The id from 20 bytes, if `bytes` has exactly that length.
    pub fn from_slice(bytes: &[u8]) -> Option<NodeId> {
        <[u8; 20]>::try_from(bytes).ok().map(NodeId)
    }

    /// XOR distance to `other`.
    pub fn distance(&self, other: &NodeId) -> Distance {
        let mut d = [0u8; 20];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// How many leading bits `self` and `other` share (160 when they are equal).
    pub fn common_prefix_len(&self, other: &NodeId) -> usize {
        for i in 0..20 {
            let x = self.0[i] ^ other.0[i];
            if x != 0 {
                return i * 8 + x.leading_zeros() as usize;
            }
        }
        160
    }

    /// The bit at `index` (0 is the most significant bit of the first byte).
    pub fn bit(&self, index: usize) -> bool {
        self.0[index / 8] & (0x80 >> (index % 8)) != 0
    }

    /// A random id sharing exactly `prefix_len` leading bits with `self` (the bit after the
    /// prefix differs), or `self` itself when `prefix_len` is 160: a target inside the
    /// bucket that holds ids at that distance.
    pub fn random_with_prefix(&self, prefix_len: usize, rng: &mut Rng) -> NodeId {
        if prefix_len >= 160 {
            return *self;
        }
        let mut id = NodeId::random(rng).0;
        for i in 0..prefix_len {
            let mask = 0x80u8 >> (i % 8);
            id[i / 8] = (id[i / 8] & !mask) | (self.0[i / 8] & mask);
        }
        let mask = 0x80u8 >> (prefix_len % 8);
        id[prefix_len / 8] = (id[prefix_len / 8] & !mask) | (!self.0[prefix_len / 8] & mask);
        NodeId(id)
    }

    /// A BEP 42 id for a node whose external address is `ip`: 21 bits from the address and
    /// `r` (the low three bits of the last byte), the rest random.
    pub fn secure(ip: IpAddr, rng: &mut Rng) -> NodeId {
        let mut id = NodeId::random(rng).0;
        let r = id[19] & 7;
        let crc = secure_crc(ip, r);
        id[0] = (crc >> 24) as u8;
        id[1] = (crc >> 16) as u8;
        id[2] = ((crc >> 8) as u8 & 0xf8) | (id[2] & 7);
        NodeId(id)
    }

    /// Whether this id follows BEP 42 for a node at `ip` (its first 21 bits match the
    /// CRC-32C of the masked address and the three bits kept in the last byte).
    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        let crc = secure_crc(ip, self.0[19] & 7);
        self.0[0] == (crc >> 24) as u8
            && self.0[1] == (crc >> 16) as u8
            && self.0[2] & 0xf8 == (crc >> 8) as u8 & 0xf8
    }

    /// BEP 42's rule: the id matches `ip`, or `ip` is local or private (exempt).
    pub fn valid_for(&self, ip: IpAddr) -> bool {
        is_local(ip) || self.matches_ip(ip)
    }
}

/// CRC-32C of `ip` masked as BEP 42 says, with `r` in the top three bits.
fn secure_crc(ip: IpAddr, r: u8) -> u32 {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let mut b = (u32::from(v4) & 0x030f_3fff).to_be_bytes();
            b[0] |= r << 5;
            CRC32C.checksum(&b)
        }
        IpAddr::V6(v6) => {
            let octets = v6.octets();
            let high = u64::from_be_bytes([
                octets[0], octets[1], octets[2], octets[3], octets[4], octets[5], octets[6],
                octets[7],
            ]);
            let mut b = (high & 0x0103_070f_1f3f_7fff).to_be_bytes();
            b[0] |= r << 5;
            CRC32C.checksum(&b)
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is; anything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback, private, link-local or unique-local: the addresses BEP 42 exempts, and which a
/// node on the public Internet never sees from a real peer.
pub fn is_local(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
        }
    }
}

impl From<InfoHash> for NodeId {
    fn from(h: InfoHash) -> NodeId {
        NodeId(h.0)
    }
}

impl From<NodeId> for InfoHash {
    fn from(id: NodeId) -> InfoHash {
        InfoHash(id.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", hex(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn id(hex_str: &str) -> NodeId {
        NodeId(InfoHash::from_hex(hex_str).unwrap().0)
    }

    /// The table of BEP 42: address, the random byte, the id's first three and last byte.
    const VECTORS: [([u8; 4], u8, [u8; 3]); 5] = [
        ([124, 31, 75, 21], 1, [0x5f, 0xbf, 0xbf]),
        ([21, 75, 31, 124], 86, [0x5a, 0x3c, 0xe9]),
        ([65, 23, 51, 170], 22, [0xa5, 0xd4, 0x32]),
        ([84, 124, 73, 14], 65, [0x1b, 0x03, 0x21]),
        ([43, 213, 53, 83], 90, [0xe5, 0x6f, 0x6c]),
    ];

    #[test]
    fn bep42_test_vectors() {
        let ids = [
            "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401",
            "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256",
            "a5d43220bc8f112a3d426c84764f8c2a1150e616",
            "1b0321dd1bb1fe518101ceef99462b947a01ff41",
            "e56f6cbf5b7c4be0237986d5243b87aa6d51305a",
        ];
        for ((ip, rand, prefix), full) in VECTORS.iter().zip(ids) {
            let ip = IpAddr::V4(Ipv4Addr::from(*ip));
            let crc = secure_crc(ip, rand & 7);
            assert_eq!((crc >> 24) as u8, prefix[0], "{ip}");
            assert_eq!((crc >> 16) as u8, prefix[1], "{ip}");
            assert_eq!((crc >> 8) as u8 & 0xf8, prefix[2] & 0xf8, "{ip}");
            let example = id(full);
            assert_eq!(example.0[19], *rand);
            assert!(example.matches_ip(ip), "{ip}");
            assert!(example.valid_for(ip));
            // One flipped bit in the checked prefix, or another address, breaks it.
            let mut wrong = example;
            wrong.0[2] ^= 0x08;
            assert!(!wrong.matches_ip(ip));
            assert!(!example.matches_ip(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4))));
            // The unchecked low bits of byte 2 are free.
            let mut free = example;
            free.0[2] ^= 0x07;
            assert!(free.matches_ip(ip));
        }
    }

    #[test]
    fn generated_ids_validate_and_local_addresses_are_exempt() {
        let mut rng = Rng::from_u64(42);
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6));
        for ip in [IpAddr::V4(Ipv4Addr::new(124, 31, 75, 21)), v6] {
            for _ in 0..50 {
                let id = NodeId::secure(ip, &mut rng);
                assert!(id.matches_ip(ip));
            }
        }
        let random = NodeId::random(&mut rng);
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.0.9",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.0.1",
        ] {
            let ip: IpAddr = local.parse().unwrap();
            assert!(is_local(ip), "{local}");
            assert!(random.valid_for(ip), "{local}");
        }
        assert!(!is_local("8.8.8.8".parse().unwrap()));
        assert!(!is_local("2001:db8::1".parse().unwrap()));
        // A mapped public address is the IPv4 address for BEP 42.
        let v4: IpAddr = "124.31.75.21".parse().unwrap();
        let mapped: IpAddr = "::ffff:124.31.75.21".parse().unwrap();
        let id = NodeId::secure(v4, &mut rng);
        assert!(id.matches_ip(mapped));
    }

    #[test]
    fn distance_and_prefixes() {
        let a = id("0000000000000000000000000000000000000000");
        let b = id("8000000000000000000000000000000000000000");
        let c = id("0000000000000000000000000000000000000001");
        assert_eq!(a.common_prefix_len(&b), 0);
        assert_eq!(a.common_prefix_len(&c), 159);
        assert_eq!(a.common_prefix_len(&a), 160);
        assert!(a.distance(&c) < a.distance(&b));
        assert!(b.bit(0) && !b.bit(1) && c.bit(159));
    }

    proptest! {
        #[test]
        fn random_with_prefix_shares_exactly_the_prefix(seed: u64, len in 0usize..=160) {
            let mut rng = Rng::from_u64(seed);
            let me = NodeId::random(&mut rng);
            let t = me.random_with_prefix(len, &mut rng);
            prop_assert_eq!(me.common_prefix_len(&t), len);
        }

        #[test]
        fn xor_distance_is_a_metric(a: [u8; 20], b: [u8; 20], c: [u8; 20]) {
            let (a, b, c) = (NodeId(a), NodeId(b), NodeId(c));
            prop_assert_eq!(a.distance(&b), b.distance(&a));
            prop_assert_eq!(a.distance(&a), Distance([0; 20]));
            // Unidirectional: for a fixed point and distance there is one other point; and
            // common prefix length orders distances.
            if a.common_prefix_len(&b) > a.common_prefix_len(&c) {
                prop_assert!(a.distance(&b) < a.distance(&c));
            }
        }
    }
}
