//! Pacing: a window's packets spread over the round trip instead of leaving back to back.
//!
//! Without pacing a sender puts a whole window on the wire whenever the window opens: at
//! the start, after an acknowledgement that covers many packets at once (a receiver that
//! acknowledges once per batch of datagrams, as libtorrent does; a selective ACK that
//! fills a hole), or when the application writes after a pause. On a path whose
//! bottleneck buffer is short, the tail of such a burst is dropped although the average
//! rate fits; on loopback that buffer is the receiver's UDP socket buffer (about 200 KB on
//! Linux, some 90 datagrams).
//!
//! The [`Pacer`] is a token bucket. Credit (bytes that may leave now) grows at the pacing
//! rate and is capped at the burst size; each datagram spends its length, and a datagram
//! may leave while the credit is positive (so the last one of a burst may overdraw it).
//! The connection sets the rate from its window and smoothed round-trip time, as Linux
//! TCP does (`sk_pacing_rate`): twice the window per round trip in slow start, 1.25 times
//! after, so pacing smooths the window out without holding it back. libtorrent and libutp
//! do not pace (libutp only spaces packets out when its window is below one packet); their
//! bursts are as large as their windows.
//!
//! Time comes from the caller: [`Pacer::ready_at`] is the instant the next datagram may
//! leave, which the connection reports as a deadline. A driver whose timers are coarse (a
//! millisecond is common) wakes late; credit accrues meanwhile, up to the burst.

use std::time::Duration;

use crate::time::Instant;

/// Credit is kept in nanobytes (bytes × 10⁹), so a rate in bytes per second times an
/// interval in nanoseconds adds up without rounding.
const NANO: i128 = 1_000_000_000;

/// A token bucket for one connection's datagrams.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Nanobytes that may leave now (negative after an overdraft).
    credit: i128,
    /// Most credit held, in nanobytes: the longest burst.
    burst: i128,
    /// Bytes per second (None: unlimited, only the burst counts).
    rate: Option<u64>,
    /// When the credit was last brought up to date.
    updated: Instant,
}

impl Pacer {
    /// A pacer with a full burst of `burst` bytes and no rate yet.
    pub fn new(burst: usize, now: Instant) -> Pacer {
        let burst = burst.max(1) as i128 * NANO;
        Pacer {
            credit: burst,
            burst,
            rate: None,
            updated: now,
        }
    }

    /// The pacing rate in bytes per second, if any.
    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// The longest burst, in bytes.
    pub fn burst(&self) -> usize {
        (self.burst / NANO) as usize
    }

    /// Brings the credit up to `now` at the old rate, then takes the new rate and burst
    /// (bytes). A burst smaller than the credit held cuts the credit.
    pub fn update(&mut self, now: Instant, rate: Option<u64>, burst: usize) {
        self.refill(now);
        self.rate = rate.map(|r| r.max(1));
        self.burst = burst.max(1) as i128 * NANO;
        self.credit = self.credit.min(self.burst);
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated);
        self.updated = self.updated.max(now);
        self.credit = match self.rate {
            None => self.burst,
            Some(rate) => {
                let gained = i128::from(rate).saturating_mul(elapsed.as_nanos() as i128);
                self.credit.saturating_add(gained).min(self.burst)
            }
        };
    }

    /// Whether a datagram may leave now (after [`Pacer::update`] for `now`).
    pub fn ready(&self) -> bool {
        self.credit > 0
    }

    /// A datagram of `bytes` left.
    pub fn spend(&mut self, bytes: usize) {
        self.credit -= bytes as i128 * NANO;
    }

    /// The earliest instant at or after `now` when a datagram may leave: `now` when
    /// [`Pacer::ready`], else strictly later (so a driver that wakes then finds credit).
    pub fn ready_at(&self, now: Instant) -> Instant {
        if self.ready() {
            return now;
        }
        let Some(rate) = self.rate else {
            return now;
        };
        // Credit must become positive: at least one nanobyte more than the deficit.
        let deficit = 1 - self.credit;
        let nanos = (deficit + i128::from(rate) - 1) / i128::from(rate);
        let wait = Duration::from_nanos(nanos.clamp(1, i128::from(u64::MAX)) as u64);
        self.updated.max(now) + wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_us(us: u64) -> Instant {
        Instant::from_duration(Duration::from_micros(us))
    }

    #[test]
    fn a_burst_then_one_datagram_per_interval() {
        let mut p = Pacer::new(3000, at_us(0));
        // 1 MB/s: a 1000-byte datagram per millisecond.
        p.update(at_us(0), Some(1_000_000), 3000);
        let mut sent = 0;
        while p.ready() {
            p.spend(1000);
            sent += 1;
        }
        assert_eq!(sent, 3);
        assert!(!p.ready());
        // Credit is exactly zero: one nanobyte more is a nanosecond away.
        assert_eq!(p.ready_at(at_us(0)), Instant::from_nanos(1));
        p.update(at_us(500), Some(1_000_000), 3000);
        assert!(p.ready());
        p.spend(1000);
        // -500 bytes: ready 500 µs (and a nanosecond) later.
        assert_eq!(
            p.ready_at(at_us(500)),
            at_us(1000) + Duration::from_nanos(1)
        );
        p.update(at_us(1000), Some(1_000_000), 3000);
        assert!(!p.ready());
        p.update(at_us(1001), Some(1_000_000), 3000);
        assert!(p.ready());
    }

    #[test]
    fn credit_never_exceeds_the_burst_and_low_rates_add_up() {
        let mut p = Pacer::new(2000, at_us(0));
        p.update(at_us(0), Some(100), 2000);
        // A long pause: only a burst's worth.
        p.update(at_us(10_000_000), Some(100), 2000);
        p.spend(1000);
        p.spend(1000);
        assert!(!p.ready());
        // 100 bytes/s refilled in steps of 1 µs (a hundredth of a byte each) still adds up.
        for us in 1..=1_000_000 {
            p.update(at_us(10_000_000 + us), Some(100), 2000);
        }
        assert!(p.ready());
        assert_eq!(p.credit, 100 * NANO);
    }

    #[test]
    fn without_a_rate_only_the_burst_counts() {
        let mut p = Pacer::new(2800, at_us(0));
        p.spend(1400);
        p.spend(1400);
        assert!(!p.ready());
        assert_eq!(p.ready_at(at_us(0)), at_us(0));
        p.update(at_us(1), None, 2800);
        assert!(p.ready());
        // A smaller burst cuts the credit.
        p.update(at_us(2), None, 1000);
        assert_eq!(p.burst(), 1000);
        p.spend(1400);
        assert!(!p.ready());
    }
}
