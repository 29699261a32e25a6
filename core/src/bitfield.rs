//! A fixed-length set of piece indices, laid out as the wire's `bitfield` message
//! (BEP 3: the high bit of the first byte is piece 0).
//!
//! Stored as 64-bit words, most significant bit first, so that converting to and from the
//! wire is a big-endian copy and set operations work a word at a time.

use thiserror::Error;

/// Why bytes from the wire are not a valid bitfield for a torrent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BitfieldError {
    /// The byte count does not match the piece count.
    #[error("bitfield is {got} bytes, expected {expected} for {pieces} pieces")]
    WrongLength {
        /// Bytes received.
        got: usize,
        /// Bytes a bitfield of this torrent has.
        expected: usize,
        /// Pieces in the torrent.
        pieces: usize,
    },
    /// Bits set past the last piece.
    #[error("bitfield has spare bits set past piece {pieces}")]
    SpareBitsSet {
        /// Pieces in the torrent.
        pieces: usize,
    },
}

#[derive(Clone, PartialEq, Eq, Hash, Default)]
/// A set of pieces, one bit each, in the wire format's bit order (BEP 3).
pub struct Bitfield {
    words: Vec<u64>,
    len: usize,
    ones: usize,
}

#[inline]
fn mask(index: usize) -> u64 {
    1u64 << (63 - (index % 64))
}

impl Bitfield {
    /// `len` bits, all clear.
    pub fn new(len: usize) -> Self {
        Bitfield {
            words: vec![0; len.div_ceil(64)],
            len,
            ones: 0,
        }
    }

    /// `len` bits, all set.
    pub fn full(len: usize) -> Self {
        let mut b = Bitfield {
            words: vec![u64::MAX; len.div_ceil(64)],
            len,
            ones: len,
        };
        b.clear_spare();
        b
    }

    /// Parses the payload of a `bitfield` message for a torrent of `len` pieces. The byte
    /// count must be exactly `ceil(len / 8)` and the spare bits in the last byte clear.
    pub fn from_bytes(bytes: &[u8], len: usize) -> Result<Self, BitfieldError> {
        let expected = len.div_ceil(8);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength {
                got: bytes.len(),
                expected,
                pieces: len,
            });
        }
        let mut words = vec![0u64; len.div_ceil(64)];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            *word = u64::from_be_bytes(buf);
        }
        let mut b = Bitfield {
            words,
            len,
            ones: 0,
        };
        let before: u32 = b.words.iter().map(|w| w.count_ones()).sum();
        b.clear_spare();
        let after: u32 = b.words.iter().map(|w| w.count_ones()).sum();
        if before != after {
            return Err(BitfieldError::SpareBitsSet { pieces: len });
        }
        b.ones = after as usize;
        Ok(b)
    }

    /// The wire form: `ceil(len / 8)` bytes, spare bits clear.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.words.len() * 8);
        for w in &self.words {
            out.extend_from_slice(&w.to_be_bytes());
        }
        out.truncate(self.len.div_ceil(8));
        out
    }

    fn clear_spare(&mut self) {
        let rem = self.len % 64;
        if rem != 0
            && let Some(last) = self.words.last_mut()
        {
            *last &= !(u64::MAX >> rem);
        }
    }

    /// Number of bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no bits at all (not when none is set: see [`Bitfield::none`]).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> usize {
        self.ones
    }

    /// True when every bit is set.
    pub fn all(&self) -> bool {
        self.ones == self.len
    }

    /// True when no bit is set.
    pub fn none(&self) -> bool {
        self.ones == 0
    }

    /// Bit `index`; false when out of range.
    #[inline]
    pub fn get(&self, index: usize) -> bool {
        index < self.len && self.words[index / 64] & mask(index) != 0
    }

    /// Sets bit `index`; returns whether it was clear before. Out of range does nothing.
    pub fn set(&mut self, index: usize) -> bool {
        if index >= self.len {
            return false;
        }
        let w = &mut self.words[index / 64];
        let was_clear = *w & mask(index) == 0;
        *w |= mask(index);
        self.ones += usize::from(was_clear);
        was_clear
    }

    /// Clears bit `index`; returns whether it was set before. Out of range does nothing.
    pub fn clear(&mut self, index: usize) -> bool {
        if index >= self.len {
            return false;
        }
        let w = &mut self.words[index / 64];
        let was_set = *w & mask(index) != 0;
        *w &= !mask(index);
        self.ones -= usize::from(was_set);
        was_set
    }

    /// Sets every bit.
    pub fn fill(&mut self) {
        *self = Bitfield::full(self.len);
    }

    /// The words, most significant bit first; bits past `len` are zero.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Indices of set bits, ascending.
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| WordBits {
            word: w,
            base: i * 64,
        })
    }

    /// True when some bit is set here and clear in `other` (same length assumed; extra bits
    /// of either side are ignored).
    pub fn has_any_not_in(&self, other: &Bitfield) -> bool {
        self.words
            .iter()
            .zip(&other.words)
            .any(|(a, b)| a & !b != 0)
    }
}

struct WordBits {
    word: u64,
    base: usize,
}

impl Iterator for WordBits {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.word == 0 {
            return None;
        }
        let lead = self.word.leading_zeros() as usize;
        self.word &= !(1u64 << (63 - lead));
        Some(self.base + lead)
    }
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wire_layout_is_msb_first() {
        let mut b = Bitfield::new(10);
        b.set(0);
        b.set(9);
        assert_eq!(b.to_bytes(), vec![0b1000_0000, 0b0100_0000]);
        assert_eq!(Bitfield::from_bytes(&[0b1000_0000, 0b0100_0000], 10), Ok(b));
    }

    #[test]
    fn rejects_wrong_length_and_spare_bits() {
        assert_eq!(
            Bitfield::from_bytes(&[0, 0, 0], 10),
            Err(BitfieldError::WrongLength {
                got: 3,
                expected: 2,
                pieces: 10
            })
        );
        assert_eq!(
            Bitfield::from_bytes(&[0, 0b0010_0000], 10),
            Err(BitfieldError::SpareBitsSet { pieces: 10 })
        );
    }

    #[test]
    fn full_has_no_spare_bits() {
        let b = Bitfield::full(70);
        assert!(b.all());
        assert_eq!(b.count_ones(), 70);
        assert_eq!(*b.to_bytes().last().unwrap_or(&0), 0b1111_1100);
        assert!(!b.get(70));
    }

    proptest! {
        #[test]
        fn round_trips(len in 0usize..300, seed in any::<u64>()) {
            let mut b = Bitfield::new(len);
            let mut x = seed;
            for i in 0..len {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if x >> 63 == 1 { b.set(i); }
            }
            let back = Bitfield::from_bytes(&b.to_bytes(), len).unwrap();
            prop_assert_eq!(&back, &b);
            prop_assert_eq!(b.ones().count(), b.count_ones());
            prop_assert!(b.ones().all(|i| b.get(i)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40), len in 0usize..400) {
            let _ = Bitfield::from_bytes(&bytes, len);
        }
    }
}
