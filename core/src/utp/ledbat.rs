//! LEDBAT congestion control (RFC 6817) as uTP applies it (BEP 29, "congestion control").
//!
//! Every uTP packet carries the sender's microsecond clock, and every packet back carries
//! the difference between the receiver's clock on arrival and that timestamp
//! (`timestamp_difference_microseconds`). The two clocks are unrelated, so a difference
//! means nothing alone; its minimum over the last minutes, the *base delay*, is the
//! propagation delay plus the clock offset, and a sample minus the base delay is the
//! queueing delay our packets meet on the way: the signal LEDBAT steers by.
//!
//! - [`DelayHistory`] keeps the base delay as one minimum per minute over the last
//!   [`BASE_HISTORY`] minutes (libutp's `DELAY_BASE_HISTORY`: clocks drift, so old minima
//!   must expire), and the queueing delay as the smallest of the last [`CURRENT_SAMPLES`]
//!   samples (noise filter). Timestamps wrap at 2^32 µs (71 minutes); all comparisons are
//!   modular, as in libutp. Clock drift is followed as libutp and libtorrent do: when the
//!   base delay of the *other* direction falls (their clock runs slow against ours), ours
//!   is raised by the same amount (at most 10 ms at a time).
//! - [`Ledbat`] is the window: on each acknowledgement of `acked` bytes with `in_flight`
//!   bytes outstanding and queueing delay `d` against the target `T` (100 ms),
//!
//!   ```text
//!   cwnd += gain * (T - d) / T * acked / in_flight
//!   ```
//!
//!   where `gain` is 3000 bytes per round trip (the BEP's
//!   `MAX_CWND_INCREASE_PACKETS_PER_RTT`, in bytes as libutp and libtorrent use it): below
//!   the target the window grows by up to `gain` per round trip, above it it shrinks in
//!   proportion. As in libtorrent the window starts in slow start (grows by the bytes
//!   acknowledged) until the delay reaches the target or a loss, and grows only while the
//!   sender fills it. A loss halves the window (BEP 29 since 2012; the caller limits this
//!   to once per round trip), a retransmission timeout sets it to one packet, and it never
//!   falls below one packet (RFC 6817's `MIN_CWND`).

use std::time::Duration;

use crate::time::Instant;

/// Minutes of per-minute minima the base delay is taken over (libutp: 13).
pub const BASE_HISTORY: usize = 13;
/// The queueing delay is the smallest of this many recent samples (libutp: 3).
pub const CURRENT_SAMPLES: usize = 3;
/// How long one base-delay bucket lasts.
pub const BUCKET: Duration = Duration::from_secs(60);

/// `a < b` on the 32-bit microsecond circle.
#[inline]
fn less_wrap(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

/// Base delay and recent queueing delay of one direction of a connection.
#[derive(Debug, Clone)]
pub struct DelayHistory {
    base: u32,
    minima: [u32; BASE_HISTORY],
    bucket: usize,
    bucket_started: Instant,
    recent: [u32; CURRENT_SAMPLES],
    recent_len: usize,
    recent_at: usize,
    initialized: bool,
}

impl Default for DelayHistory {
    fn default() -> Self {
        Self::new()
    }
}

impl DelayHistory {
    /// No samples yet.
    pub fn new() -> Self {
        DelayHistory {
            base: 0,
            minima: [0; BASE_HISTORY],
            bucket: 0,
            bucket_started: Instant::ZERO,
            recent: [u32::MAX; CURRENT_SAMPLES],
            recent_len: 0,
            recent_at: 0,
            initialized: false,
        }
    }

    /// Adds a raw delay sample (a clock difference in µs); returns its queueing delay
    /// (the sample minus the base delay).
    pub fn add_sample(&mut self, sample: u32, now: Instant) -> u32 {
        if !self.initialized {
            self.minima = [sample; BASE_HISTORY];
            self.base = sample;
            self.bucket_started = now;
            self.initialized = true;
        }
        if now.saturating_duration_since(self.bucket_started) >= BUCKET {
            // A new minute: the oldest minimum expires.
            self.bucket_started = now;
            self.bucket = (self.bucket + 1) % BASE_HISTORY;
            self.minima[self.bucket] = sample;
            self.base = self.minima[0];
            for &m in &self.minima[1..] {
                if less_wrap(m, self.base) {
                    self.base = m;
                }
            }
        }
        if less_wrap(sample, self.minima[self.bucket]) {
            self.minima[self.bucket] = sample;
        }
        if less_wrap(sample, self.base) {
            self.base = sample;
        }
        let delay = sample.wrapping_sub(self.base);
        self.recent[self.recent_at] = delay;
        self.recent_at = (self.recent_at + 1) % CURRENT_SAMPLES;
        self.recent_len = (self.recent_len + 1).min(CURRENT_SAMPLES);
        delay
    }

    /// The base delay (raw µs, meaningful only against other samples), if any sample.
    pub fn base(&self) -> Option<u32> {
        self.initialized.then_some(self.base)
    }

    /// The queueing delay: the smallest of the last few, if any sample.
    pub fn current(&self) -> Option<u32> {
        (self.recent_len > 0).then(|| self.recent.iter().copied().min().unwrap_or(0))
    }

    /// Raises every base-delay minimum by `offset` µs (clock drift compensation).
    pub fn shift(&mut self, offset: u32) {
        for m in &mut self.minima {
            *m = m.wrapping_add(offset);
        }
        self.base = self.base.wrapping_add(offset);
    }
}

/// The congestion window, in bytes.
#[derive(Debug, Clone)]
pub struct Ledbat {
    /// Window in bytes, with 16 fractional bits.
    cwnd: i64,
    slow_start: bool,
    /// Slow start ends when the window would pass this (0: no threshold yet).
    ssthresh: i64,
    mss: i64,
    max: i64,
    target_us: i64,
    gain: i64,
}

const FRAC: i64 = 1 << 16;

impl Ledbat {
    /// A window of `initial` bytes (at least `mss`), never above `max`, steering to a
    /// queueing delay of `target`, growing by at most `gain` bytes per round trip outside
    /// slow start.
    pub fn new(mss: usize, initial: usize, max: usize, target: Duration, gain: u32) -> Self {
        let mss = mss.max(1) as i64;
        let max = (max as i64).max(mss);
        Ledbat {
            cwnd: (initial as i64).clamp(mss, max) * FRAC,
            slow_start: true,
            ssthresh: 0,
            mss,
            max,
            target_us: (target.as_micros().min(i64::MAX as u128) as i64).max(1),
            gain: i64::from(gain),
        }
    }

    /// The largest packet payload changed (path MTU discovery): the window's floor, one
    /// packet, follows.
    pub fn set_mss(&mut self, mss: usize) {
        self.mss = (mss.max(1) as i64).min(self.max);
        self.cwnd = self.cwnd.max(self.mss * FRAC);
    }

    /// The window: bytes that may be in flight.
    pub fn window(&self) -> usize {
        (self.cwnd / FRAC) as usize
    }

    /// Whether the window is still in slow start.
    pub fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    /// `acked` bytes were newly acknowledged while `in_flight` bytes were outstanding
    /// (before this acknowledgement), and the queueing delay is `delay_us`.
    pub fn on_ack(&mut self, acked: usize, delay_us: u32, in_flight: usize) {
        if acked == 0 || in_flight == 0 {
            return;
        }
        let acked = acked as i64;
        let in_flight = in_flight as i64;
        let delay = i64::from(delay_us);
        if delay >= self.target_us && self.slow_start {
            self.ssthresh = self.cwnd / FRAC / 2;
            self.slow_start = false;
        }
        // gain * off_target / target * acked / in_flight, in 16-bit fixed point; i128
        // keeps every product exact.
        let off_target = (self.target_us - delay).max(-self.target_us * 16);
        let linear = (i128::from(acked.min(in_flight))
            * i128::from(self.gain)
            * i128::from(off_target)
            * i128::from(FRAC)
            / (i128::from(in_flight) * i128::from(self.target_us))) as i64;
        // Only a sender that fills its window learns anything about a bigger one.
        let saturated = in_flight + self.mss > self.cwnd / FRAC;
        let gain = if !saturated {
            linear.min(0)
        } else if self.slow_start {
            let exponential = acked * FRAC;
            if self.ssthresh != 0 && (self.cwnd + exponential) / FRAC > self.ssthresh {
                self.slow_start = false;
                linear
            } else {
                exponential.max(linear)
            }
        } else {
            linear
        };
        self.cwnd = (self.cwnd + gain).clamp(self.mss * FRAC, self.max * FRAC);
    }

    /// A packet was lost (fast retransmit): the window halves, slow start ends.
    pub fn on_loss(&mut self) {
        self.cwnd = (self.cwnd / 2).max(self.mss * FRAC);
        self.ssthresh = self.cwnd / FRAC;
        self.slow_start = false;
    }

    /// The retransmission timer fired. With nothing in flight the connection was only
    /// idle and the window decays by a third; otherwise it restarts from one packet in
    /// slow start.
    pub fn on_timeout(&mut self, idle: bool) {
        if idle {
            self.cwnd = (self.cwnd * 2 / 3).max(self.mss * FRAC);
        } else {
            self.cwnd = self.mss * FRAC;
            self.slow_start = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn at(secs: u64) -> Instant {
        Instant::from_duration(Duration::from_secs(secs))
    }

    #[test]
    fn queueing_delay_is_sample_minus_base() {
        let mut h = DelayHistory::new();
        assert_eq!(h.current(), None);
        assert_eq!(h.add_sample(5_000_000, at(0)), 0);
        assert_eq!(h.add_sample(5_030_000, at(1)), 30_000);
        assert_eq!(h.add_sample(5_050_000, at(2)), 50_000);
        // The smallest of the last three.
        assert_eq!(h.current(), Some(0));
        h.add_sample(5_040_000, at(3));
        assert_eq!(h.current(), Some(30_000));
        // A lower sample lowers the base at once.
        assert_eq!(h.add_sample(4_990_000, at(4)), 0);
        assert_eq!(h.base(), Some(4_990_000));
    }

    #[test]
    fn base_delay_forgets_old_minima_after_the_history() {
        let mut h = DelayHistory::new();
        h.add_sample(1_000, at(0));
        // The path gets 20 ms slower for good: the old minimum stays the base for the
        // whole history, then expires.
        let mut t = 1;
        while Duration::from_secs(t) < MIN * (BASE_HISTORY as u32 - 1) {
            h.add_sample(21_000, at(t));
            assert_eq!(h.base(), Some(1_000), "at {t}s");
            t += 30;
        }
        while Duration::from_secs(t) < MIN * (BASE_HISTORY as u32 + 2) {
            h.add_sample(21_000, at(t));
            t += 30;
        }
        assert_eq!(h.base(), Some(21_000));
        assert_eq!(h.current(), Some(0));
    }

    #[test]
    fn timestamps_wrap() {
        let mut h = DelayHistory::new();
        h.add_sample(u32::MAX - 1_000, at(0));
        // 3 ms more delay, across the wrap.
        assert_eq!(h.add_sample(1_999, at(1)), 3_000);
        // A smaller value across the wrap is a new base.
        assert_eq!(h.add_sample(u32::MAX - 2_000, at(2)), 0);
        assert_eq!(h.base(), Some(u32::MAX - 2_000));
        h.shift(5_000);
        assert_eq!(h.base(), Some(2_999));
    }

    const MSS: usize = 1_000;
    const TARGET: Duration = Duration::from_millis(100);

    #[test]
    fn slow_start_doubles_per_round_trip_below_the_target() {
        // From four packets: the exponential growth (the bytes acked) is above the
        // linear one (3000 bytes per round trip), which it replaces.
        let mut l = Ledbat::new(MSS, 4 * MSS, 1 << 20, TARGET, 3000);
        for _ in 0..4 {
            let w = l.window();
            l.on_ack(w, 0, w);
            assert_eq!(l.window(), 2 * w);
        }
        assert!(l.in_slow_start());
        // At the target slow start ends, with the threshold at half the window.
        let w = l.window();
        l.on_ack(MSS, 100_000, w);
        assert!(!l.in_slow_start());
        assert_eq!(l.window(), w);
    }

    #[test]
    fn linear_gain_is_at_most_gain_per_round_trip() {
        let mut l = Ledbat::new(MSS, 10 * MSS, 1 << 20, TARGET, 3000);
        l.on_loss(); // leave slow start: 5 packets
        assert_eq!(l.window(), 5 * MSS);
        // A whole window acknowledged with zero queueing delay: +3000 bytes.
        let w = l.window();
        l.on_ack(w, 0, w);
        assert_eq!(l.window(), w + 3000);
        // The same in per-packet acknowledgements of a full window: each adds its share.
        let w = l.window();
        l.on_ack(MSS, 0, w);
        assert_eq!(l.window(), w + 3000 * MSS / w);
        // Half the target: half the gain.
        let w = l.window();
        l.on_ack(w, 50_000, w);
        assert_eq!(l.window(), w + 1500);
        // Twice the target: the window shrinks by the gain.
        let w = l.window();
        l.on_ack(w, 200_000, w);
        assert_eq!(l.window(), w - 3000);
    }

    #[test]
    fn never_below_one_packet_nor_above_max() {
        let mut l = Ledbat::new(MSS, 4 * MSS, 8 * MSS, TARGET, 3000);
        for _ in 0..100 {
            l.on_ack(MSS, 10_000_000, MSS);
            l.on_loss();
        }
        assert_eq!(l.window(), MSS);
        let mut l = Ledbat::new(MSS, 4 * MSS, 8 * MSS, TARGET, 3000);
        for _ in 0..100 {
            let w = l.window();
            l.on_ack(w, 0, w);
        }
        assert_eq!(l.window(), 8 * MSS);
    }

    #[test]
    fn an_application_limited_sender_does_not_grow() {
        let mut l = Ledbat::new(MSS, 10 * MSS, 1 << 20, TARGET, 3000);
        // Two packets in flight of a ten-packet window.
        l.on_ack(MSS, 0, 2 * MSS);
        assert_eq!(l.window(), 10 * MSS);
        // But it still shrinks when the delay is above target.
        l.on_ack(MSS, 300_000, 2 * MSS);
        assert!(l.window() < 10 * MSS);
    }

    #[test]
    fn timeout_resets_or_decays() {
        let mut l = Ledbat::new(MSS, 30 * MSS, 1 << 20, TARGET, 3000);
        l.on_timeout(true);
        assert_eq!(l.window(), 20 * MSS);
        l.on_loss();
        l.on_timeout(false);
        assert_eq!(l.window(), MSS);
        assert!(l.in_slow_start());
    }
}
