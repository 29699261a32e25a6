//! Trackers: the HTTP announce (BEP 3, BEP 23 compact peers, BEP 7 IPv6 peers) and the
//! schedule of announces over a torrent's tracker tiers (BEP 12).
//!
//! SKELETON: signatures fixed, bodies to be written.

pub mod announce;
pub mod http;

use std::time::Duration;

use crate::rng::Rng;
use crate::time::Instant;

pub use announce::{AnnounceError, AnnounceEvent, AnnounceParams, AnnounceResponse};

/// First retry delay after a failed announce; doubles per consecutive failure.
pub const RETRY_MIN: Duration = Duration::from_secs(15);
/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(30 * 60);
/// Interval used when a tracker gives none (or zero).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Which tracker of the torrent's list (index into the flattened tier list).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackerIndex(pub usize);

/// An announce the session should perform now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceJob {
    pub tracker: TrackerIndex,
    pub url: String,
    pub event: AnnounceEvent,
}

/// Per-torrent announce schedule. Pure: the session asks `poll` for due announces, performs
/// them, and reports the outcome with `on_success` / `on_failure`.
#[derive(Debug)]
pub struct Announcer {}

impl Announcer {
    /// `tiers` as in the metainfo. Trackers are shuffled within each tier (BEP 12) with
    /// `rng`. URLs that are not `http://` (after parsing with the `url` crate) are kept out
    /// of the schedule and listed by `unsupported()`.
    pub fn new(tiers: &[Vec<String>], rng: &mut Rng) -> Self {
        let _ = (tiers, rng);
        todo!()
    }

    /// Trackers that will never be announced to, with the reason (for one warning each).
    pub fn unsupported(&self) -> &[(String, String)] {
        todo!()
    }

    /// True when there is at least one usable tracker.
    pub fn is_empty(&self) -> bool {
        todo!()
    }

    /// The next announce that is due at `now`, if any, marking it in flight. Per tier only
    /// one announce is in flight at a time; within a tier the first tracker is tried first
    /// and a failure moves on to the next one (BEP 12). The first announce of each tier
    /// carries `Started`; after `completed()` the next carries `Completed`.
    pub fn poll(&mut self, now: Instant) -> Option<AnnounceJob> {
        let _ = now;
        todo!()
    }

    /// When `poll` may next return something (`Instant::FAR_FUTURE` when nothing is scheduled
    /// or everything is in flight).
    pub fn next_deadline(&self) -> Instant {
        todo!()
    }

    /// The tracker answered. The next regular announce of its tier is `interval` later
    /// (`min interval` when it is larger; [`DEFAULT_INTERVAL`] when missing), the tracker
    /// moves to the front of its tier and the failure count resets.
    pub fn on_success(&mut self, now: Instant, tracker: TrackerIndex, response: &AnnounceResponse) {
        let _ = (now, tracker, response);
        todo!()
    }

    /// The announce failed (unreachable, time-out, bad answer, or a `failure reason`).
    /// The tier tries its next tracker at once if it has one it has not tried in this
    /// round; otherwise it waits `RETRY_MIN * 2^n` (capped at `RETRY_MAX`) plus up to 10%
    /// jitter from `rng`.
    pub fn on_failure(&mut self, now: Instant, tracker: TrackerIndex, rng: &mut Rng) {
        let _ = (now, tracker, rng);
        todo!()
    }

    /// The download finished: each tier announces `Completed` as soon as it has no
    /// announce in flight (once; a tier that never announced `Started` successfully sends
    /// `Started` first as usual and skips `Completed`).
    pub fn completed(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// More peers would help: re-announce each tier as soon as its `min interval` allows.
    pub fn want_peers(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Shutting down: the `Stopped` announces to send, one per tier that has announced
    /// successfully (to its current tracker). After this `poll` returns nothing.
    pub fn stop(&mut self) -> Vec<AnnounceJob> {
        todo!()
    }
}
