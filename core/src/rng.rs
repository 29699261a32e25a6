//! The core's only source of randomness: a ChaCha8 stream from the seed the driver passes
//! to `Session::new`. Every choice (peer id suffix, random first pieces, tie-breaks,
//! optimistic unchoke, back-off jitter) draws from it, so one seed replays a run exactly.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng as _, SeedableRng};

/// A seeded random stream. The session makes its own from its seed; an embedder that runs
/// a sub-machine on its own (an MSE handshake, say) passes one of these to it.
#[derive(Debug, Clone)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// The stream of `seed`: the same seed gives the same stream.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Rng(ChaCha8Rng::from_seed(seed))
    }

    /// A stream from a small number (tests, the simulator, examples).
    pub fn from_u64(seed: u64) -> Self {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// An independent generator derived from this one (for a component that should not
    /// perturb the others' streams).
    pub fn fork(&mut self) -> Rng {
        let mut seed = [0u8; 32];
        self.0.fill_bytes(&mut seed);
        Rng::from_seed(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        self.0.fill_bytes(buf);
    }

    /// Uniform in `0..n`; `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        // Lemire's multiply-shift; the tiny bias for huge n does not matter here.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform index into a collection of `len` items; `len` must be positive.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// Puts `items` in a random order.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::from_seed([7; 32]);
        let mut b = Rng::from_seed([7; 32]);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::from_u64(1).next_u64(), Rng::from_u64(2).next_u64());
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::from_u64(3);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let x = r.below(5) as usize;
            seen[x] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
