//! Trackers: the HTTP announce (BEP 3, BEP 23 compact peers, BEP 7 IPv6 peers), the UDP
//! tracker protocol (BEP 15, [`udp`]) and the schedule of announces over a torrent's tracker
//! tiers (BEP 12).
//!
//! The schedule (`Announcer`) keeps, per tier, the order in which its trackers are tried,
//! whether a `Started` (and later `Completed`) announce got through, and when the next
//! announce is due. A "round" is one pass over a tier's trackers from the front: it ends
//! with the first success, or with every tracker having failed, which starts a back-off.

pub mod announce;
pub mod http;
pub mod udp;
pub(crate) mod udp_pool;

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
/// Shortest time between a tracker's answer and an extra announce asked for by
/// `Announcer::want_peers` when the tracker gives no `min interval`.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(60);
/// The floor under a tracker's `interval` and `min interval` (as libtorrent's
/// `min_announce_interval`): a tracker answering `interval=1` is not announced to every
/// second.
pub const MIN_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(60);

/// Which tracker of the torrent's list (index into the flattened tier list).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TrackerIndex(pub usize);

/// An announce the session should perform now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnnounceJob {
    pub tracker: TrackerIndex,
    pub url: String,
    pub event: AnnounceEvent,
}

/// Per-torrent announce schedule. Pure: the session asks `poll` for due announces, performs
/// them, and reports the outcome with `on_success` / `on_failure`.
#[derive(Debug)]
pub(crate) struct Announcer {
    /// URL of every tracker by [`TrackerIndex`]: the position in the flattened tier list as
    /// given to [`Announcer::new`] (unsupported trackers keep their index but are never used).
    urls: Vec<String>,
    tiers: Vec<Tier>,
    unsupported: Vec<(String, String)>,
    /// `completed()` was called.
    completed: bool,
    /// `stop()` was called.
    stopped: bool,
}

#[derive(Debug)]
struct Tier {
    /// The order in which trackers are tried: shuffled at first; a tracker that answers moves
    /// to the front, so after any success `trackers[0]` is the last one that answered.
    trackers: Vec<TrackerIndex>,
    /// Position in `trackers` of the tracker the next announce goes to.
    current: usize,
    /// Trackers that failed in the current round.
    failed_in_round: usize,
    /// Consecutive rounds in which every tracker failed (the back-off exponent).
    failed_rounds: u32,
    /// When the next announce is due.
    next_at: Instant,
    /// The announce being performed, if any.
    in_flight: Option<(TrackerIndex, AnnounceEvent)>,
    /// A `Started` announce got through.
    started: bool,
    /// A `Completed` announce is owed.
    completed_pending: bool,
    /// When a tracker last answered, and the `min interval` it gave.
    last_success: Option<(Instant, Option<Duration>)>,
}

impl Tier {
    fn event(&self) -> AnnounceEvent {
        if !self.started {
            AnnounceEvent::Started
        } else if self.completed_pending {
            AnnounceEvent::Completed
        } else {
            AnnounceEvent::None
        }
    }
}

impl Announcer {
    /// `tiers` as in the metainfo. Trackers are shuffled within each tier (BEP 12) with
    /// `rng`. URLs that are not `http://` (after parsing with the `url` crate) are kept out
    /// of the schedule and listed by `unsupported()`. A URL listed a second time is ignored.
    #[cfg(test)]
    pub fn new(tiers: &[Vec<String>], rng: &mut Rng) -> Self {
        Self::with_protocols(tiers, rng, Protocols::default())
    }

    /// Like [`Announcer::new`], with the `udp://` trackers scheduled too when
    /// `protocols.udp` is set: a tier mixing `http://` and `udp://` URLs is one tier, tried
    /// in its shuffled order whatever the protocol (BEP 12).
    pub fn with_protocols(tiers: &[Vec<String>], rng: &mut Rng, protocols: Protocols) -> Self {
        let mut urls = Vec::new();
        let mut unsupported = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut schedule = Vec::new();
        for tier in tiers {
            let mut trackers = Vec::new();
            for url in tier {
                let index = TrackerIndex(urls.len());
                urls.push(url.clone());
                if !seen.insert(url.as_str()) {
                    continue;
                }
                match protocol_of(url) {
                    Ok(TrackerProtocol::Http) => trackers.push(index),
                    Ok(TrackerProtocol::Udp) if protocols.udp => trackers.push(index),
                    Ok(TrackerProtocol::Udp) => unsupported.push((
                        url.clone(),
                        "udp:// trackers (BEP 15) are not supported".into(),
                    )),
                    Err(reason) => unsupported.push((url.clone(), reason)),
                }
            }
            if trackers.is_empty() {
                continue;
            }
            rng.shuffle(&mut trackers);
            schedule.push(Tier {
                trackers,
                current: 0,
                failed_in_round: 0,
                failed_rounds: 0,
                next_at: Instant::ZERO,
                in_flight: None,
                started: false,
                completed_pending: false,
                last_success: None,
            });
        }
        Announcer {
            urls,
            tiers: schedule,
            unsupported,
            completed: false,
            stopped: false,
        }
    }

    /// Trackers that will never be announced to, with the reason (for one warning each).
    pub fn unsupported(&self) -> &[(String, String)] {
        &self.unsupported
    }

    /// True when there is no usable tracker.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// The URL of a tracker (as given to [`Announcer::new`]).
    #[cfg(test)]
    pub fn url(&self, tracker: TrackerIndex) -> Option<&str> {
        self.urls.get(tracker.0).map(String::as_str)
    }

    /// The next announce that is due at `now`, if any, marking it in flight. Per tier only
    /// one announce is in flight at a time; within a tier the first tracker is tried first
    /// and a failure moves on to the next one (BEP 12). The first announce of each tier
    /// carries `Started`; after `completed()` the next carries `Completed`.
    pub fn poll(&mut self, now: Instant) -> Option<AnnounceJob> {
        if self.stopped {
            return None;
        }
        let tier = self
            .tiers
            .iter_mut()
            .find(|t| t.in_flight.is_none() && t.next_at <= now)?;
        let tracker = tier.trackers[tier.current];
        let event = tier.event();
        tier.in_flight = Some((tracker, event));
        Some(AnnounceJob {
            tracker,
            url: self.urls[tracker.0].clone(),
            event,
        })
    }

    /// When `poll` may next return something (`Instant::FAR_FUTURE` when nothing is scheduled
    /// or everything is in flight).
    pub fn next_deadline(&self) -> Instant {
        if self.stopped {
            return Instant::FAR_FUTURE;
        }
        self.tiers
            .iter()
            .filter(|t| t.in_flight.is_none())
            .map(|t| t.next_at)
            .min()
            .unwrap_or(Instant::FAR_FUTURE)
    }

    /// The tier whose in-flight announce went to `tracker` (reports of announces that are no
    /// longer in flight, e.g. after `stop()`, are ignored).
    fn in_flight_tier(&mut self, tracker: TrackerIndex) -> Option<(&mut Tier, AnnounceEvent)> {
        if self.stopped {
            return None;
        }
        let tier = self
            .tiers
            .iter_mut()
            .find(|t| t.in_flight.is_some_and(|(i, _)| i == tracker))?;
        let (_, event) = tier.in_flight.take()?;
        Some((tier, event))
    }

    /// The tracker answered. The next regular announce of its tier is `interval` later
    /// (`min interval` when it is larger; [`DEFAULT_INTERVAL`] when missing), the tracker
    /// moves to the front of its tier and the failure count resets. An owed `Completed`
    /// announce is due at once instead.
    pub fn on_success(&mut self, now: Instant, tracker: TrackerIndex, response: &AnnounceResponse) {
        let Some((tier, event)) = self.in_flight_tier(tracker) else {
            return;
        };
        match event {
            AnnounceEvent::Started => tier.started = true,
            AnnounceEvent::Completed => tier.completed_pending = false,
            AnnounceEvent::None | AnnounceEvent::Stopped => {}
        }
        let position = tier.current;
        tier.trackers[..=position].rotate_right(1);
        tier.current = 0;
        tier.failed_in_round = 0;
        tier.failed_rounds = 0;
        let min_interval = response
            .min_interval
            .filter(|d| !d.is_zero())
            .map(|d| d.max(MIN_ANNOUNCE_INTERVAL));
        tier.last_success = Some((now, min_interval));
        let interval = response
            .interval
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_INTERVAL)
            .max(min_interval.unwrap_or(Duration::ZERO))
            .max(MIN_ANNOUNCE_INTERVAL);
        tier.next_at = if tier.completed_pending {
            now
        } else {
            now + interval
        };
    }

    /// The announce failed (unreachable, time-out, bad answer, or a `failure reason`).
    /// The tier tries its next tracker at once if it has one it has not tried in this
    /// round; otherwise it waits `RETRY_MIN * 2^n` (capped at `RETRY_MAX`) plus up to 10%
    /// jitter from `rng`, and starts a new round from the front of the tier.
    pub fn on_failure(&mut self, now: Instant, tracker: TrackerIndex, rng: &mut Rng) {
        let Some((tier, _)) = self.in_flight_tier(tracker) else {
            return;
        };
        tier.failed_in_round += 1;
        if tier.failed_in_round < tier.trackers.len() {
            tier.current += 1;
            tier.next_at = now;
            return;
        }
        tier.current = 0;
        tier.failed_in_round = 0;
        tier.failed_rounds = tier.failed_rounds.saturating_add(1);
        let delay = retry_delay(tier.failed_rounds);
        let max_jitter = u64::try_from(delay.as_nanos() / 10).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(rng.below(max_jitter.saturating_add(1)));
        tier.next_at = now + delay + jitter;
    }

    /// The download finished: each tier announces `Completed` as soon as it has no
    /// announce in flight (once; a tier that never announced `Started` successfully sends
    /// `Started` first as usual and skips `Completed`).
    pub fn completed(&mut self, now: Instant) {
        if self.completed || self.stopped {
            return;
        }
        self.completed = true;
        for tier in self.tiers.iter_mut().filter(|t| t.started) {
            tier.completed_pending = true;
            if tier.in_flight.is_none() {
                tier.next_at = now;
            }
        }
    }

    /// More peers would help: re-announce each tier as soon as its `min interval` allows,
    /// counted from its last answer ([`DEFAULT_MIN_INTERVAL`] when the tracker gave none).
    /// Tiers that are failing keep their back-off; tiers without an answer yet are left
    /// alone, as are tiers with an announce in flight (its answer brings peers anyway).
    pub fn want_peers(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        for tier in &mut self.tiers {
            let Some((answered, min_interval)) = tier.last_success else {
                continue;
            };
            if tier.in_flight.is_some() || tier.failed_in_round > 0 || tier.failed_rounds > 0 {
                continue;
            }
            let allowed = answered + min_interval.unwrap_or(DEFAULT_MIN_INTERVAL);
            tier.next_at = tier.next_at.min(allowed.max(now));
        }
    }

    /// Shutting down: the `Stopped` announces to send, one per tier that has announced
    /// successfully (to its current tracker, the one that answered last). After this `poll`
    /// returns nothing, and later reports of announces are ignored.
    pub fn stop(&mut self) -> Vec<AnnounceJob> {
        if self.stopped {
            return Vec::new();
        }
        self.stopped = true;
        let mut jobs = Vec::new();
        for tier in &mut self.tiers {
            tier.in_flight = None;
            if tier.started {
                let tracker = tier.trackers[0];
                jobs.push(AnnounceJob {
                    tracker,
                    url: self.urls[tracker.0].clone(),
                    event: AnnounceEvent::Stopped,
                });
            }
        }
        jobs
    }
}

// ---- which trackers can be announced to ----------------------------------------------

/// The tracker protocols the announce schedule (`Announcer`) uses besides HTTP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Protocols {
    /// `udp://` trackers (BEP 15).
    pub udp: bool,
}

/// How a tracker URL is announced to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackerProtocol {
    /// `http://` ([`http`], [`announce`]).
    Http,
    /// `udp://` ([`udp`]).
    Udp,
}

/// The protocol of a tracker URL, or why it cannot be used (a human-readable reason).
pub fn protocol_of(url: &str) -> Result<TrackerProtocol, String> {
    let http_reason = match http::parse_http_url(url) {
        Ok(_) => return Ok(TrackerProtocol::Http),
        Err(reason) => reason,
    };
    match udp::UdpTrackerUrl::parse(url) {
        Ok(_) => Ok(TrackerProtocol::Udp),
        Err(reason) if url.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("udp:")) => Err(reason),
        Err(_) => Err(http_reason),
    }
}

/// `RETRY_MIN * 2^(failed_rounds - 1)`, at most `RETRY_MAX`.
fn retry_delay(failed_rounds: u32) -> Duration {
    let doublings = failed_rounds.saturating_sub(1).min(16);
    (RETRY_MIN * (1u32 << doublings)).min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(secs)
    }

    fn answer(interval: Option<u64>, min_interval: Option<u64>) -> AnnounceResponse {
        AnnounceResponse {
            interval: interval.map(Duration::from_secs),
            min_interval: min_interval.map(Duration::from_secs),
            peers: Vec::new(),
            warning: None,
            tracker_id: None,
            complete: None,
            incomplete: None,
        }
    }

    fn tiers(urls: &[&[&str]]) -> Vec<Vec<String>> {
        urls.iter()
            .map(|tier| tier.iter().map(|u| (*u).to_owned()).collect())
            .collect()
    }

    fn announcer(urls: &[&[&str]]) -> (Announcer, Rng) {
        let mut rng = Rng::from_u64(7);
        (Announcer::new(&tiers(urls), &mut rng), rng)
    }

    #[test]
    fn first_announce_is_started_and_due_immediately() {
        let (mut a, _) = announcer(&[&["http://a.example/announce"]]);
        assert!(!a.is_empty());
        assert!(a.unsupported().is_empty());
        assert_eq!(a.next_deadline(), Instant::ZERO);
        let job = a.poll(at(0)).unwrap();
        assert_eq!(
            job,
            AnnounceJob {
                tracker: TrackerIndex(0),
                url: "http://a.example/announce".into(),
                event: AnnounceEvent::Started,
            }
        );
        // In flight: nothing more until it is reported.
        assert_eq!(a.poll(at(1000)), None);
        assert_eq!(a.next_deadline(), Instant::FAR_FUTURE);
    }

    #[test]
    fn success_schedules_next_at_interval() {
        let (mut a, _) = announcer(&[&["http://a/"]]);
        let job = a.poll(at(0)).unwrap();
        a.on_success(at(10), job.tracker, &answer(Some(900), None));
        assert_eq!(a.next_deadline(), at(910));
        assert_eq!(a.poll(at(909)), None);
        let job = a.poll(at(910)).unwrap();
        assert_eq!(job.event, AnnounceEvent::None);

        // A larger min interval wins; a missing interval means the default.
        a.on_success(at(1000), job.tracker, &answer(Some(100), Some(300)));
        assert_eq!(a.next_deadline(), at(1300));
        let job = a.poll(at(1300)).unwrap();
        a.on_success(at(1300), job.tracker, &answer(None, None));
        assert_eq!(a.next_deadline(), at(1300) + DEFAULT_INTERVAL);
        let job = a.poll(at(1300) + DEFAULT_INTERVAL).unwrap();
        a.on_success(at(5000), job.tracker, &answer(Some(0), None));
        assert_eq!(a.next_deadline(), at(5000) + DEFAULT_INTERVAL);
    }

    #[test]
    fn want_peers_respects_min_interval() {
        let (mut a, _) = announcer(&[&["http://a/"]]);
        // No answer yet: nothing to hurry.
        let job = a.poll(at(0)).unwrap();
        a.want_peers(at(0));
        assert_eq!(a.next_deadline(), Instant::FAR_FUTURE);

        a.on_success(at(0), job.tracker, &answer(Some(1800), Some(300)));
        a.want_peers(at(10));
        assert_eq!(a.next_deadline(), at(300));
        assert_eq!(a.poll(at(299)), None);
        let job = a.poll(at(300)).unwrap();
        assert_eq!(job.event, AnnounceEvent::None);

        // Without a min interval, the default one applies; past it, the announce is due now.
        a.on_success(at(300), job.tracker, &answer(Some(1800), None));
        a.want_peers(at(310));
        assert_eq!(a.next_deadline(), at(300) + DEFAULT_MIN_INTERVAL);
        let job = a.poll(at(360)).unwrap();
        a.on_success(at(360), job.tracker, &answer(Some(1800), None));
        a.want_peers(at(1000));
        assert_eq!(a.next_deadline(), at(1000));

        // Never later than the regular announce.
        let job = a.poll(at(1000)).unwrap();
        a.on_success(at(1000), job.tracker, &answer(Some(90), None));
        a.want_peers(at(1001));
        assert_eq!(a.next_deadline(), at(1060));
        let job = a.poll(at(1060)).unwrap();
        a.on_success(at(1060), job.tracker, &answer(Some(75), Some(70)));
        a.want_peers(at(1061));
        assert_eq!(a.next_deadline(), at(1130));
    }

    #[test]
    fn intervals_below_the_floor_are_raised_to_it() {
        let (mut a, _) = announcer(&[&["http://a/"]]);
        let job = a.poll(at(0)).unwrap();
        // interval=1, min interval=1: not every second, but after the floor.
        a.on_success(at(0), job.tracker, &answer(Some(1), Some(1)));
        assert_eq!(a.next_deadline(), at(0) + MIN_ANNOUNCE_INTERVAL);
        a.want_peers(at(1));
        assert_eq!(a.next_deadline(), at(0) + MIN_ANNOUNCE_INTERVAL);
        assert_eq!(a.poll(at(59)), None);
        let mut now = at(0) + MIN_ANNOUNCE_INTERVAL;
        let mut announces = 0;
        while now <= at(600) {
            let Some(job) = a.poll(now) else {
                now = a.next_deadline();
                continue;
            };
            announces += 1;
            a.on_success(now, job.tracker, &answer(Some(1), None));
            a.want_peers(now);
        }
        // Ten minutes at one announce a minute at most.
        assert!(announces <= 10, "{announces} announces");
    }

    #[test]
    fn failure_moves_to_next_tracker_then_backs_off_exponentially() {
        let urls: &[&str] = &["http://a/", "http://b/", "http://c/"];
        let (mut a, mut rng) = announcer(&[urls]);
        let mut now = at(0);
        let mut first_of_round = None;
        let mut expected = RETRY_MIN;
        for round in 0..10 {
            let mut tried = Vec::new();
            for _ in 0..3 {
                let job = a.poll(now).expect("next tracker due at once");
                assert_eq!(job.event, AnnounceEvent::Started);
                tried.push(job.tracker);
                a.on_failure(now, job.tracker, &mut rng);
            }
            tried.sort();
            assert_eq!(tried, [TrackerIndex(0), TrackerIndex(1), TrackerIndex(2)]);
            // Every tracker failed: back off, with jitter of at most 10%.
            let wait = a.next_deadline() - now;
            assert!(
                wait >= expected && wait <= expected + expected / 10,
                "round {round}: {wait:?} vs {expected:?}"
            );
            assert_eq!(a.poll(now + (expected - Duration::from_nanos(1))), None);
            now = a.next_deadline();
            // Each round starts again from the front of the tier.
            let front = a.tiers[0].trackers[0];
            assert_eq!(*first_of_round.get_or_insert(front), front);
            expected = (expected * 2).min(RETRY_MAX);
        }
        assert_eq!(expected, RETRY_MAX);
    }

    #[test]
    fn success_moves_tracker_to_front_and_resets_back_off() {
        let (mut a, mut rng) = announcer(&[&["http://a/", "http://b/", "http://c/"]]);
        let first = a.poll(at(0)).unwrap();
        a.on_failure(at(0), first.tracker, &mut rng);
        let second = a.poll(at(0)).unwrap();
        assert_ne!(second.tracker, first.tracker);
        a.on_success(at(1), second.tracker, &answer(Some(100), None));
        // The next round starts with the tracker that answered.
        let job = a.poll(at(101)).unwrap();
        assert_eq!(job.tracker, second.tracker);
        assert_eq!(job.event, AnnounceEvent::None);
        // And a failure of it moves to the tracker that failed before.
        a.on_failure(at(101), job.tracker, &mut rng);
        assert_eq!(a.poll(at(101)).unwrap().tracker, first.tracker);
    }

    #[test]
    fn one_failing_tracker_backs_off_then_succeeds_fresh() {
        let (mut a, mut rng) = announcer(&[&["http://a/"]]);
        let job = a.poll(at(0)).unwrap();
        a.on_failure(at(0), job.tracker, &mut rng);
        let retry = a.next_deadline();
        assert!(retry >= at(15) && retry <= at(15) + Duration::from_millis(1500));
        let job = a.poll(retry).unwrap();
        a.on_failure(retry, job.tracker, &mut rng);
        assert!(a.next_deadline() - retry >= RETRY_MIN * 2);
        let now = a.next_deadline();
        let job = a.poll(now).unwrap();
        assert_eq!(job.event, AnnounceEvent::Started);
        a.on_success(now, job.tracker, &answer(Some(600), None));
        let now = now + Duration::from_secs(600);
        let job = a.poll(now).unwrap();
        a.on_failure(now, job.tracker, &mut rng);
        // The count was reset by the success: back to the first delay.
        let wait = a.next_deadline() - now;
        assert!(
            wait >= RETRY_MIN && wait <= RETRY_MIN + RETRY_MIN / 10,
            "{wait:?}"
        );
    }

    #[test]
    fn completed_is_sent_once() {
        let (mut a, _) = announcer(&[&["http://a/"]]);
        let job = a.poll(at(0)).unwrap();
        a.on_success(at(0), job.tracker, &answer(Some(1800), None));
        a.completed(at(50));
        assert_eq!(a.next_deadline(), at(50));
        let job = a.poll(at(50)).unwrap();
        assert_eq!(job.event, AnnounceEvent::Completed);
        a.on_success(at(51), job.tracker, &answer(Some(1800), None));
        assert_eq!(a.next_deadline(), at(1851));
        a.completed(at(60));
        assert_eq!(a.next_deadline(), at(1851));
        assert_eq!(a.poll(at(1851)).unwrap().event, AnnounceEvent::None);
    }

    #[test]
    fn completed_waits_for_the_announce_in_flight_and_survives_failures() {
        let (mut a, mut rng) = announcer(&[&["http://a/", "http://b/"]]);
        let job = a.poll(at(0)).unwrap();
        a.on_success(at(0), job.tracker, &answer(Some(100), None));
        let job = a.poll(at(100)).unwrap();
        assert_eq!(job.event, AnnounceEvent::None);
        a.completed(at(101));
        assert_eq!(a.poll(at(101)), None);
        a.on_success(at(102), job.tracker, &answer(Some(100), None));
        // Due at once after the regular announce finished.
        let job = a.poll(at(102)).unwrap();
        assert_eq!(job.event, AnnounceEvent::Completed);
        a.on_failure(at(102), job.tracker, &mut rng);
        let job = a.poll(at(102)).unwrap();
        assert_eq!(job.event, AnnounceEvent::Completed);
        a.on_success(at(103), job.tracker, &answer(Some(100), None));
        assert_eq!(a.poll(at(203)).unwrap().event, AnnounceEvent::None);
    }

    #[test]
    fn completed_skipped_by_tier_that_never_started() {
        let (mut a, _) = announcer(&[&["http://a/"]]);
        let job = a.poll(at(0)).unwrap();
        a.completed(at(1));
        a.on_success(at(2), job.tracker, &answer(Some(100), None));
        assert_eq!(a.next_deadline(), at(102));
        assert_eq!(a.poll(at(102)).unwrap().event, AnnounceEvent::None);
    }

    #[test]
    fn stop_returns_stopped_only_for_tiers_that_succeeded() {
        let (mut a, mut rng) = announcer(&[&["http://a/"], &["http://b/"], &["http://c/"]]);
        let ja = a.poll(at(0)).unwrap();
        let jb = a.poll(at(0)).unwrap();
        let jc = a.poll(at(0)).unwrap();
        assert_eq!(a.poll(at(0)), None);
        a.on_success(at(1), ja.tracker, &answer(None, None));
        a.on_failure(at(1), jb.tracker, &mut rng);
        // c is still in flight.
        let stops = a.stop();
        assert_eq!(
            stops,
            vec![AnnounceJob {
                tracker: ja.tracker,
                url: "http://a/".into(),
                event: AnnounceEvent::Stopped,
            }]
        );
        assert_eq!(a.poll(at(100_000)), None);
        assert_eq!(a.next_deadline(), Instant::FAR_FUTURE);
        a.on_success(at(2), jc.tracker, &answer(None, None));
        a.want_peers(at(3));
        a.completed(at(3));
        assert_eq!(a.poll(at(100_000)), None);
        assert!(a.stop().is_empty());
    }

    #[test]
    fn two_tiers_announce_independently() {
        let (mut a, mut rng) = announcer(&[&["http://a/"], &["http://b/"]]);
        let ja = a.poll(at(0)).unwrap();
        let jb = a.poll(at(0)).unwrap();
        assert_eq!((ja.tracker, jb.tracker), (TrackerIndex(0), TrackerIndex(1)));
        assert_eq!(jb.event, AnnounceEvent::Started);
        a.on_success(at(0), ja.tracker, &answer(Some(100), None));
        assert_eq!(a.next_deadline(), at(100));
        a.on_failure(at(0), jb.tracker, &mut rng);
        let retry = a.next_deadline();
        assert!(retry >= at(15) && retry < at(17));
        let job = a.poll(retry).unwrap();
        assert_eq!(
            (job.tracker, job.event),
            (jb.tracker, AnnounceEvent::Started)
        );
        assert_eq!(a.poll(retry), None);
        a.on_success(retry, job.tracker, &answer(Some(500), None));
        assert_eq!(a.next_deadline(), at(100));
        let job = a.poll(at(100)).unwrap();
        assert_eq!((job.tracker, job.event), (ja.tracker, AnnounceEvent::None));
        assert_eq!(a.poll(at(100)), None);
        assert_eq!(a.next_deadline(), retry + Duration::from_secs(500));
    }

    #[test]
    fn unsupported_urls_listed_and_never_polled() {
        let (mut a, mut rng) = announcer(&[
            &[
                "udp://tracker.example:6969/announce",
                "https://secure.example/announce",
            ],
            &[
                "http://plain.example/announce",
                "ftp://x.example/",
                "not a url",
            ],
        ]);
        let listed: Vec<&str> = a.unsupported().iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(
            listed,
            [
                "udp://tracker.example:6969/announce",
                "https://secure.example/announce",
                "ftp://x.example/",
                "not a url"
            ]
        );
        assert!(a.unsupported()[0].1.contains("udp"));
        assert!(a.unsupported()[1].1.contains("TLS"));
        let mut now = at(0);
        for _ in 0..5 {
            let job = a.poll(now).unwrap();
            assert_eq!(job.tracker, TrackerIndex(2));
            assert_eq!(a.url(job.tracker), Some("http://plain.example/announce"));
            a.on_failure(now, job.tracker, &mut rng);
            now = a.next_deadline();
        }

        let (mut none, _) = announcer(&[&["udp://a:1"], &["https://b/"]]);
        assert!(none.is_empty());
        assert_eq!(none.next_deadline(), Instant::FAR_FUTURE);
        assert_eq!(none.poll(at(0)), None);
        assert!(none.stop().is_empty());
    }

    #[test]
    fn udp_trackers_share_tiers_with_http_ones_when_enabled() {
        let urls: &[&[&str]] = &[
            &["udp://a.example:6969/announce", "http://b.example/announce"],
            &["udp://c.example:1337", "udp://no-port.example/announce"],
        ];
        let mut rng = Rng::from_u64(3);
        let mut a = Announcer::with_protocols(&tiers(urls), &mut rng, Protocols { udp: true });
        let listed: Vec<&str> = a.unsupported().iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(listed, ["udp://no-port.example/announce"]);
        assert!(a.unsupported()[0].1.contains("no port"));
        // Both of the first tier are tried in one round, whatever their protocol.
        let first = a.poll(at(0)).unwrap();
        let other_tier = a.poll(at(0)).unwrap();
        assert_eq!(other_tier.url, "udp://c.example:1337");
        a.on_failure(at(0), first.tracker, &mut rng);
        let second = a.poll(at(0)).unwrap();
        let mut tried = [first.url, second.url];
        tried.sort();
        assert_eq!(
            tried,
            ["http://b.example/announce", "udp://a.example:6969/announce"]
        );

        assert_eq!(protocol_of("udp://a:1"), Ok(TrackerProtocol::Udp));
        assert_eq!(protocol_of("http://a/"), Ok(TrackerProtocol::Http));
        assert!(protocol_of("UDP://a").unwrap_err().contains("no port"));
        assert!(protocol_of("https://a/").unwrap_err().contains("TLS"));
        assert!(protocol_of("wss://a/").is_err());
    }

    #[test]
    fn duplicates_ignored_and_tiers_shuffled_by_seed() {
        let (a, _) = announcer(&[&["http://a/", "http://a/"], &["http://a/"]]);
        assert_eq!(a.tiers.len(), 1);
        assert_eq!(a.tiers[0].trackers, [TrackerIndex(0)]);

        let urls: Vec<String> = (0..6).map(|i| format!("http://t{i}/")).collect();
        let order = |seed| {
            let a = Announcer::new(std::slice::from_ref(&urls), &mut Rng::from_u64(seed));
            a.tiers[0].trackers.clone()
        };
        assert_eq!(order(1), order(1));
        let orders: std::collections::HashSet<_> = (0..8).map(order).collect();
        assert!(orders.len() > 1, "the shuffle depends on the rng");
        for o in orders {
            let mut sorted = o.clone();
            sorted.sort();
            assert_eq!(sorted, (0..6).map(TrackerIndex).collect::<Vec<_>>());
        }
    }

    #[test]
    fn stale_reports_are_ignored() {
        let (mut a, mut rng) = announcer(&[&["http://a/"]]);
        a.on_success(at(0), TrackerIndex(0), &answer(Some(10), None));
        a.on_failure(at(0), TrackerIndex(5), &mut rng);
        let job = a.poll(at(0)).unwrap();
        assert_eq!(job.event, AnnounceEvent::Started);
    }
}
