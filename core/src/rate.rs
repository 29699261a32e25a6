//! Transfer rates over a sliding window, on the core's virtual clock.

use crate::time::{Duration, Instant};

/// Width of the window the rate is averaged over.
const WINDOW: Duration = Duration::from_secs(5);
const BUCKETS: usize = 10;

/// Bytes per second over the last [`WINDOW`], kept in buckets of `WINDOW / BUCKETS`.
#[derive(Debug, Clone)]
pub(crate) struct Rate {
    buckets: [u64; BUCKETS],
    /// The sum of `buckets`.
    sum: u64,
    /// Index of the bucket covering `bucket_start`.
    current: usize,
    bucket_start: Instant,
    started: Instant,
    total: u64,
}

impl Rate {
    pub fn new(now: Instant) -> Self {
        Rate {
            buckets: [0; BUCKETS],
            sum: 0,
            current: 0,
            bucket_start: now,
            started: now,
            total: 0,
        }
    }

    fn bucket_len() -> Duration {
        WINDOW / BUCKETS as u32
    }

    fn advance(&mut self, now: Instant) {
        let mut steps = 0;
        while now.saturating_duration_since(self.bucket_start) >= Self::bucket_len()
            && steps <= BUCKETS
        {
            self.current = (self.current + 1) % BUCKETS;
            self.sum -= self.buckets[self.current];
            self.buckets[self.current] = 0;
            self.bucket_start += Self::bucket_len();
            steps += 1;
        }
        if steps > BUCKETS {
            // Idle for longer than the window: everything is stale.
            self.buckets = [0; BUCKETS];
            self.sum = 0;
            self.bucket_start = now;
        }
    }

    pub fn add(&mut self, now: Instant, bytes: u64) {
        self.advance(now);
        self.buckets[self.current] += bytes;
        self.sum += bytes;
        self.total += bytes;
    }

    /// Bytes per second. Young meters average over their age, so a fresh fast peer is not
    /// reported as slow.
    pub fn get(&self, now: Instant) -> f64 {
        // The buckets `advance` would reuse by `now` are stale: leave them out.
        let bucket = Self::bucket_len().as_nanos() as u64;
        let stale = now.as_nanos().saturating_sub(self.bucket_start.as_nanos()) / bucket;
        let sum: u64 = if stale >= BUCKETS as u64 {
            0
        } else {
            let mut sum = self.sum;
            let mut k = self.current;
            for _ in 0..stale {
                k = if k + 1 == BUCKETS { 0 } else { k + 1 };
                sum -= self.buckets[k];
            }
            sum
        };
        let span = now
            .saturating_duration_since(self.started)
            .clamp(Self::bucket_len(), WINDOW);
        sum as f64 / span.as_secs_f64()
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn steady_rate() {
        let mut r = Rate::new(at(0));
        for i in 0..100 {
            r.add(at(i * 100), 10_000);
        }
        let rate = r.get(at(10_000));
        assert!((rate - 100_000.0).abs() < 15_000.0, "{rate}");
        assert_eq!(r.total(), 1_000_000);
    }

    #[test]
    fn decays_to_zero_when_idle() {
        let mut r = Rate::new(at(0));
        r.add(at(100), 1_000_000);
        assert!(r.get(at(200)) > 0.0);
        assert_eq!(r.get(at(60_000)), 0.0);
    }
}
