//! Round-trip time and the retransmission timeout (BEP 29, "timeouts").
//!
//! Every packet acknowledged that was sent only once (Karn's rule: a retransmitted
//! packet's ack cannot say which copy it answers) gives a sample:
//!
//! ```text
//! delta = rtt - sample
//! rtt_var += (|delta| - rtt_var) / 4
//! rtt += (sample - rtt) / 8
//! timeout = max(rtt + 4 * rtt_var, 500 ms)
//! ```
//!
//! The first sample sets `rtt` to itself and `rtt_var` to half of it (libutp). Before any
//! sample the timeout is 1 s. Each consecutive timeout doubles it (capped at 60 s); a new
//! sample or any acknowledgement of new data ends the back-off.

use std::time::Duration;

/// The retransmission timeout before any RTT sample.
pub const INITIAL_RTO: Duration = Duration::from_millis(1_000);
/// The longest timeout, however many back-offs.
pub const MAX_RTO: Duration = Duration::from_secs(60);

/// Smoothed RTT, its variance and the retransmission timeout, in microseconds.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    rtt_us: u64,
    var_us: u64,
    have_sample: bool,
    min_rto_us: u64,
    /// Consecutive timeouts since the last acknowledgement of new data.
    backoff: u32,
}

impl RttEstimator {
    /// An estimator whose timeout never goes below `min_rto` (500 ms in the BEP).
    pub fn new(min_rto: Duration) -> Self {
        RttEstimator {
            rtt_us: 0,
            var_us: 0,
            have_sample: false,
            min_rto_us: min_rto.as_micros().min(u128::from(u64::MAX)) as u64,
            backoff: 0,
        }
    }

    /// Adds the round-trip time of a packet that was sent once.
    pub fn sample(&mut self, rtt: Duration) {
        let s = rtt.as_micros().min(u128::from(u32::MAX)) as u64;
        if self.have_sample {
            let delta = self.rtt_us.abs_diff(s);
            // var += (|delta| - var) / 4, in signed arithmetic.
            self.var_us = (self.var_us as i64 + (delta as i64 - self.var_us as i64) / 4) as u64;
            self.rtt_us = (self.rtt_us as i64 + (s as i64 - self.rtt_us as i64) / 8) as u64;
        } else {
            self.rtt_us = s;
            self.var_us = s / 2;
            self.have_sample = true;
        }
    }

    /// New data was acknowledged: the peer is alive, the back-off ends.
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// A retransmission timer fired: the next timeout is twice as long.
    pub fn on_timeout(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// Consecutive timeouts since data was last acknowledged.
    pub fn backoff(&self) -> u32 {
        self.backoff
    }

    /// The smoothed round-trip time, if there has been a sample.
    pub fn rtt(&self) -> Option<Duration> {
        self.have_sample.then(|| Duration::from_micros(self.rtt_us))
    }

    /// The round-trip time variance.
    pub fn rtt_var(&self) -> Duration {
        Duration::from_micros(self.var_us)
    }

    /// The timeout without back-off: `max(rtt + 4 rtt_var, min_rto)`, or 1 s before the
    /// first sample.
    pub fn base_rto(&self) -> Duration {
        if !self.have_sample {
            return INITIAL_RTO.max(Duration::from_micros(self.min_rto_us));
        }
        let us = (self.rtt_us + 4 * self.var_us).max(self.min_rto_us);
        Duration::from_micros(us).min(MAX_RTO)
    }

    /// The current timeout: the base doubled once per consecutive timeout, capped.
    pub fn rto(&self) -> Duration {
        let base = self.base_rto();
        let shift = self.backoff.min(16);
        base.saturating_mul(1 << shift).min(MAX_RTO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn initial_timeout_is_one_second() {
        let r = RttEstimator::new(500 * MS);
        assert_eq!(r.rto(), 1000 * MS);
        assert_eq!(r.rtt(), None);
    }

    #[test]
    fn follows_the_beps_formula() {
        let mut r = RttEstimator::new(500 * MS);
        r.sample(100 * MS);
        assert_eq!(r.rtt(), Some(100 * MS));
        assert_eq!(r.rtt_var(), 50 * MS);
        // rto = 100 + 4 * 50 = 300, below the floor.
        assert_eq!(r.rto(), 500 * MS);
        r.sample(900 * MS);
        // delta = 800: var = 50 + (800 - 50) / 4 = 237.5; rtt = 100 + 800 / 8 = 200.
        assert_eq!(r.rtt(), Some(200 * MS));
        assert_eq!(r.rtt_var(), Duration::from_micros(237_500));
        assert_eq!(r.rto(), Duration::from_micros(200_000 + 4 * 237_500));
    }

    #[test]
    fn converges_and_keeps_the_floor() {
        let mut r = RttEstimator::new(500 * MS);
        for _ in 0..200 {
            r.sample(20 * MS);
        }
        let rtt = r.rtt().unwrap();
        assert!(rtt.abs_diff(20 * MS) < MS, "{rtt:?}");
        assert!(r.rtt_var() < MS);
        assert_eq!(r.rto(), 500 * MS);
        let mut fast = RttEstimator::new(10 * MS);
        for _ in 0..200 {
            fast.sample(20 * MS);
        }
        assert!(
            fast.rto() < 25 * MS && fast.rto() >= 20 * MS,
            "{:?}",
            fast.rto()
        );
    }

    #[test]
    fn timeouts_double_then_cap() {
        let mut r = RttEstimator::new(500 * MS);
        r.sample(10 * MS);
        r.on_timeout();
        assert_eq!(r.rto(), 1000 * MS);
        r.on_timeout();
        assert_eq!(r.rto(), 2000 * MS);
        for _ in 0..40 {
            r.on_timeout();
        }
        assert_eq!(r.rto(), MAX_RTO);
        r.reset_backoff();
        assert_eq!(r.rto(), 500 * MS);
    }
}
