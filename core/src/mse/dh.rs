//! The Diffie-Hellman key agreement of MSE: the 768-bit prime `P` of the specification,
//! generator 2, private exponents of 160 bits.
//!
//! The arithmetic is `crypto-bigint`'s constant-time Montgomery exponentiation with the
//! prime as a compile-time modulus; the exponent's time pattern depends only on its bound
//! (160 bits), never on its value. A 160-bit exponent gives the security the 768-bit group
//! can give (libtorrent moved from 768-bit exponents to 160-bit ones because the former made
//! connection storms expensive).

use crypto_bigint::modular::ConstMontyForm;
use crypto_bigint::{U768, const_monty_params};

use super::MseError;
use crate::rng::Rng;

/// Length in bytes of a public value and of the shared secret: both are sent, and hashed,
/// as 96 big-endian bytes with leading zeros.
pub const KEY_LEN: usize = 96;

/// Bits in a private exponent.
pub const PRIVATE_BITS: u32 = 160;

/// The prime of the MSE specification, big-endian hexadecimal.
const PRIME_HEX: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563";

const_monty_params!(
    MsePrime,
    U768,
    PRIME_HEX,
    "The 768-bit MSE prime as a compile-time modulus."
);

/// An integer modulo the MSE prime, in Montgomery form.
type Residue = ConstMontyForm<MsePrime, { U768::LIMBS }>;

/// The MSE prime.
const P: U768 = U768::from_be_hex(PRIME_HEX);

/// A private exponent: 160 random bits. Its `Debug` does not show it.
#[derive(Clone)]
pub struct PrivateKey(U768);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

/// A public value `Y = 2^X mod P`, as 96 big-endian bytes; one received from a peer has
/// been checked to lie in `[2, P-2]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; KEY_LEN]);

/// The shared secret `S = Y_peer^X mod P`, as 96 big-endian bytes (zero-padded on the
/// left, as every implementation hashes it). Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret([u8; KEY_LEN]);

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

impl PrivateKey {
    /// A fresh private exponent of [`PRIVATE_BITS`] bits from the session's generator.
    pub fn generate(rng: &mut Rng) -> PrivateKey {
        let mut bytes = [0u8; KEY_LEN];
        rng.fill(&mut bytes[KEY_LEN - (PRIVATE_BITS as usize / 8)..]);
        PrivateKey(U768::from_be_slice(&bytes))
    }

    /// Our public value, `2^X mod P`.
    pub fn public_key(&self) -> PublicKey {
        let y = Residue::new(&U768::from_u8(2)).pow_bounded_exp(&self.0, PRIVATE_BITS);
        PublicKey(to_bytes(&y.retrieve()))
    }

    /// The secret shared with the owner of `peer`, `peer^X mod P`.
    pub fn shared_secret(&self, peer: &PublicKey) -> SharedSecret {
        let y = Residue::new(&U768::from_be_slice(&peer.0));
        SharedSecret(to_bytes(
            &y.pow_bounded_exp(&self.0, PRIVATE_BITS).retrieve(),
        ))
    }
}

impl PublicKey {
    /// A peer's public value, refused unless it lies in `[2, P-2]`: 0, 1 and `P-1` (and
    /// anything not reduced modulo `P`) would give a secret the peer knows without a key, or
    /// one an eavesdropper can guess.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<PublicKey, MseError> {
        let y = U768::from_be_slice(bytes);
        let two = U768::from_u8(2);
        if y < two || y > P.wrapping_sub(&two) {
            return Err(MseError::BadPublicKey);
        }
        Ok(PublicKey(*bytes))
    }

    /// The 96 bytes sent on the wire.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl SharedSecret {
    /// The 96 bytes hashed into `req1`, `req3` and the RC4 keys.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

fn to_bytes(n: &U768) -> [u8; KEY_LEN] {
    let encoded = n.to_be_bytes();
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(encoded.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> [u8; KEY_LEN] {
        let mut out = [0u8; KEY_LEN];
        let digits = format!("{s:0>192}");
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    fn key(x: &str) -> PrivateKey {
        PrivateKey(U768::from_be_slice(&hex(x)))
    }

    #[test]
    fn the_prime_is_the_specifications() {
        let p = hex(PRIME_HEX);
        assert_eq!(p[..8], [0xff; 8]);
        assert_eq!(p[KEY_LEN - 3..], [0x09, 0x05, 0x63]);
        assert!(PRIME_HEX.len() == 2 * KEY_LEN);
    }

    #[test]
    fn small_exponents_give_powers_of_two() {
        // 2^1, 2^10, 2^100: below P, so exact.
        assert_eq!(key("1").public_key().0, hex("2"));
        assert_eq!(key("a").public_key().0, hex("400"));
        let mut expected = [0u8; KEY_LEN];
        expected[KEY_LEN - 13] = 0x10; // 2^100 = 0x10 followed by 12 zero bytes
        assert_eq!(key("64").public_key().0, expected);
    }

    #[test]
    fn large_power_reduces_modulo_p() {
        // 2^767 < P < 2^768, so 2^768 mod P = 2^768 - P = !P + 1 (two's complement).
        // The exponent is over 160 bits, so check it through two steps: (2^384)^2.
        let half = key("180").public_key(); // 2^384
        let square = key("2").shared_secret(&half); // (2^384)^2
        let p = hex(PRIME_HEX);
        let mut expected = [0u8; KEY_LEN];
        let mut carry = 1u16;
        for i in (0..KEY_LEN).rev() {
            let v = u16::from(!p[i]) + carry;
            expected[i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(square.0, expected);
    }

    /// Values computed independently (Python's `pow(2, x, P)`), with a shared secret whose
    /// first byte is zero: it must stay 96 bytes long.
    #[test]
    fn known_vector_with_a_leading_zero_secret() {
        let xa = key("0123456789abcdef0123456789abcdef01234723");
        let xb = key("fedcba9876543210fedcba9876543210fedcba98");
        let ya = "1605d4ef41ae50d3d5d24681ba105bc940cb1d765487e8df9c948f49d091c3eab180bdb5b1e53d6e\
                  69598a37fcba1caa212d0c697b7e7ea32b678616f65f7a23f6487592a89d34743a148e0ee91e9bf1\
                  abc7867989b05d4cd1640907e8d3d444";
        let yb = "e2666b9cffca63998c8e806db50c47ac12512b327c5ec48d62e0a43c2961afcf136e7219fe2ec51e\
                  656b2f01ed089dd8cc53c78e7d650df59a752131bcf8ffff122144bf10c6269b47886d6af5838922\
                  3c66153ebb5e3dc18ea849ceb60ac18e";
        let s = "009eb142a925c8140b2e9f90ab298e7a283222bf56ad8d25ab6cd535d7bf092435a973d6a8348ef5\
                 40b26434d54f9d2d79a9508f33bc49b0122860b64ac25bd7876eaac7fcc3cca8fc97916b86600f7f\
                 9c72f33548f225c075ca946d34e30273";
        assert_eq!(xa.public_key().0, hex(ya));
        assert_eq!(xb.public_key().0, hex(yb));
        let ya = PublicKey::from_bytes(&hex(ya)).unwrap();
        let yb = PublicKey::from_bytes(&hex(yb)).unwrap();
        assert_eq!(xa.shared_secret(&yb).0, hex(s));
        assert_eq!(xb.shared_secret(&ya).0, hex(s));
        assert_eq!(xa.shared_secret(&yb).0[0], 0);
    }

    #[test]
    fn both_sides_agree() {
        let mut rng = Rng::from_u64(1);
        for _ in 0..4 {
            let a = PrivateKey::generate(&mut rng);
            let b = PrivateKey::generate(&mut rng);
            let (ya, yb) = (a.public_key(), b.public_key());
            let ya = PublicKey::from_bytes(&ya.0).unwrap();
            let yb = PublicKey::from_bytes(&yb.0).unwrap();
            let s = a.shared_secret(&yb);
            assert_eq!(s, b.shared_secret(&ya));
            assert_ne!(s.0, [0; KEY_LEN]);
        }
    }

    #[test]
    fn private_keys_have_160_bits_and_come_from_the_seed() {
        let a = PrivateKey::generate(&mut Rng::from_u64(9));
        let b = PrivateKey::generate(&mut Rng::from_u64(9));
        assert_eq!(a.0, b.0);
        let bytes = a.0.to_be_bytes();
        assert!(bytes.as_ref()[..KEY_LEN - 20].iter().all(|&b| b == 0));
        assert_ne!(
            a.0,
            PrivateKey::generate(&mut Rng::from_u64(10)).0,
            "different seeds, same key"
        );
    }

    #[test]
    fn public_values_outside_2_to_p_minus_2_are_refused() {
        let p = U768::from_be_hex(PRIME_HEX);
        let as_bytes = |n: U768| to_bytes(&n);
        for bad in [
            U768::ZERO,
            U768::ONE,
            p.wrapping_sub(&U768::ONE),
            p,
            p.wrapping_add(&U768::ONE),
            U768::MAX,
        ] {
            assert_eq!(
                PublicKey::from_bytes(&as_bytes(bad)),
                Err(MseError::BadPublicKey)
            );
        }
        for good in [U768::from_u8(2), p.wrapping_sub(&U768::from_u8(2))] {
            assert!(PublicKey::from_bytes(&as_bytes(good)).is_ok());
        }
    }
}
