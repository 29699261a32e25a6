//! Per-source limits on the queries we answer: a node flooding us with queries (to use us as
//! an amplifier, or to wear us out) is answered at a bounded rate and then ignored.
//!
//! A token bucket per source IP address: [`QueryLimits::burst`] queries at once, refilled at
//! [`QueryLimits::per_second`]. At most [`QueryLimits::max_sources`] sources are tracked:
//! when the table is full, sources whose bucket has refilled completely are forgotten (they
//! would start full anyway), and if none has, the least recently seen one is.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::node_id::canonical;
use crate::time::Instant;

/// Bounds of the [`QueryLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Queries answered per second and source, on average.
    pub per_second: u32,
    /// Queries a source may send at once.
    pub burst: u32,
    /// Most sources tracked at once.
    pub max_sources: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            per_second: 5,
            burst: 25,
            max_sources: 1024,
        }
    }
}

/// Thousandths of a query.
const MILLI: u64 = 1000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    milli_tokens: u64,
    last: Instant,
}

fn capacity(limits: &QueryLimits) -> u64 {
    u64::from(limits.burst) * MILLI
}

/// What `b` holds at `now`.
fn refilled(limits: &QueryLimits, b: Bucket, now: Instant) -> u64 {
    let nanos = now.saturating_duration_since(b.last).as_nanos();
    let gained = nanos * u128::from(limits.per_second) * u128::from(MILLI) / 1_000_000_000;
    let gained = u64::try_from(gained).unwrap_or(u64::MAX);
    b.milli_tokens.saturating_add(gained).min(capacity(limits))
}

/// Token buckets per source address.
#[derive(Debug, Clone)]
pub struct QueryLimiter {
    limits: QueryLimits,
    sources: BTreeMap<IpAddr, Bucket>,
    dropped: u64,
}

impl QueryLimiter {
    /// No source seen yet.
    pub fn new(limits: QueryLimits) -> QueryLimiter {
        QueryLimiter {
            limits,
            sources: BTreeMap::new(),
            dropped: 0,
        }
    }

    /// Sources tracked now.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Queries refused so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn capacity(&self) -> u64 {
        capacity(&self.limits)
    }

    fn refilled(&self, b: Bucket, now: Instant) -> u64 {
        refilled(&self.limits, b, now)
    }

    /// Whether a query from `ip` at `now` may be answered (and counts it if so).
    pub fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.limits.burst == 0 {
            self.dropped += 1;
            return false;
        }
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.limits.max_sources {
            self.make_room(now);
        }
        let full = self.capacity();
        let current = match self.sources.get(&ip) {
            Some(b) => self.refilled(*b, now),
            None => full,
        };
        let (tokens, ok) = if current >= MILLI {
            (current - MILLI, true)
        } else {
            (current, false)
        };
        self.sources.insert(
            ip,
            Bucket {
                milli_tokens: tokens,
                last: now,
            },
        );
        if !ok {
            self.dropped += 1;
        }
        ok
    }

    fn make_room(&mut self, now: Instant) {
        let full = self.capacity();
        let before = self.sources.len();
        let limits = self.limits;
        self.sources
            .retain(|_, b| refilled(&limits, *b, now) < full);
        if self.sources.len() == before {
            let oldest = self
                .sources
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(ip, _)| *ip);
            if let Some(ip) = oldest {
                self.sources.remove(&ip);
            }
        }
    }

    /// Checks that the table is within its bound.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.sources.len() > self.limits.max_sources {
            return Err(format!("{} query sources tracked", self.sources.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    #[test]
    fn a_flood_is_cut_to_the_rate_and_others_are_unaffected() {
        let limits = QueryLimits {
            per_second: 5,
            burst: 10,
            max_sources: 4,
        };
        let mut l = QueryLimiter::new(limits);
        let a: IpAddr = "1.1.1.1".parse().unwrap();
        let b: IpAddr = "2.2.2.2".parse().unwrap();
        let t0 = Instant::ZERO;
        let allowed = (0..100).filter(|_| l.allow(t0, a)).count();
        assert_eq!(allowed, 10);
        assert!(l.allow(t0, b));
        // One second later, five more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| l.allow(t1, a)).count(), 5);
        assert_eq!(l.dropped(), 90 + 95);
        // Many sources: the table stays bounded and the flooder is not forgotten while its
        // bucket is empty, unless it is the least recently seen.
        for i in 0..50u8 {
            assert!(l.allow(t1, IpAddr::from([9, 9, 9, i])));
            l.check_invariants().unwrap();
        }
        assert!(l.sources() <= 4);
    }
}
