//! Random draws. Every one comes from a ChaCha stream derived from the master seed, so the
//! order of the draws is part of a run's identity: moving a draw changes the run.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng as _, SeedableRng};
use tessera_core::Duration;

/// True with probability `p`.
pub fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
}

/// Uniform in `[lo, hi)`.
pub fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
}

/// A duration uniform in `[lo, hi)`.
pub fn between(rng: &mut ChaCha8Rng, lo: Duration, hi: Duration) -> Duration {
    Duration::from_secs_f64(uniform(rng, lo.as_secs_f64(), hi.as_secs_f64()))
}

/// An index below `n` (`n > 0`).
pub fn index(rng: &mut ChaCha8Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// A new stream seeded from `master`.
pub fn stream(master: &mut ChaCha8Rng) -> ChaCha8Rng {
    let mut s = [0u8; 32];
    master.fill_bytes(&mut s);
    ChaCha8Rng::from_seed(s)
}
