//! Seeding goals: a torrent that seeds with `seed_ratio` or `seed_time` stops once either
//! is reached, on the session's clock.
//!
//! The clock starts when the torrent becomes complete (at the end of the check for data
//! that was complete already). When a goal is reached, the torrent stops taking peers'
//! requests and waits (at most [`DRAIN_TIMEOUT`] in all) for the blocks already handed to
//! the driver to be written, then [`LINGER`] more for the peers to read them (a socket
//! closed with unread input is reset, and a reset throws away what the peer has not read
//! yet), unless every peer is a seed by then; so the last copy a leecher was getting is
//! whole. Then it sends its `stopped` announces, closes its peers and reports
//! [`Event::SeedingDone`](crate::Event::SeedingDone).

use super::Torrent;
use crate::api::{CloseReason, Event, SeedGoal};
use crate::id::ConnId;
use crate::shared::Shared;
use crate::time::{Duration, Instant};

/// Longest wait for blocks in flight once a goal is reached.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long peers are given to read the last blocks once they are written.
const LINGER: Duration = Duration::from_secs(2);

/// A torrent's seeding goals and where it stands with them.
#[derive(Debug, Clone, Default)]
pub(super) struct SeedGoals {
    ratio: Option<f64>,
    time: Option<Duration>,
    /// When seeding began.
    since: Option<Instant>,
    /// The goal reached, and until when blocks in flight are waited for.
    reached: Option<(SeedGoal, Instant)>,
    /// When the blocks in flight were all written, once a goal was reached.
    drained_at: Option<Instant>,
    /// The torrent has stopped.
    done: bool,
}

impl SeedGoals {
    pub fn new(ratio: Option<f64>, time: Option<Duration>) -> Self {
        SeedGoals {
            // A ratio that is not a number never ends seeding; a negative one ends it at once.
            ratio: ratio.filter(|r| !r.is_nan()),
            time,
            ..SeedGoals::default()
        }
    }

    fn is_set(&self) -> bool {
        self.ratio.is_some() || self.time.is_some()
    }

    /// Seeding began at `now` (once).
    pub fn start(&mut self, now: Instant) {
        if self.is_set() && self.since.is_none() {
            self.since = Some(now);
        }
    }

    /// A goal is reached: no more requests are served.
    pub fn serving_over(&self) -> bool {
        self.reached.is_some() || self.done
    }

    /// The goal reached at `now`, having uploaded `uploaded` of a torrent of `size` bytes.
    fn due(&self, now: Instant, uploaded: u64, size: u64) -> Option<SeedGoal> {
        let since = self.since?;
        if self
            .ratio
            .is_some_and(|r| uploaded as f64 >= r * size as f64)
        {
            return Some(SeedGoal::Ratio);
        }
        if self
            .time
            .is_some_and(|t| now.saturating_duration_since(since) >= t)
        {
            return Some(SeedGoal::Time);
        }
        None
    }

    /// When the goals next need the time: the end of the seed time, or of the wait for
    /// blocks in flight.
    pub fn deadline(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        match self.reached {
            Some((_, until)) => Some(self.drained_at.map_or(until, |d| until.min(d + LINGER))),
            None => self.since.zip(self.time).map(|(s, t)| s + t),
        }
    }
}

impl Torrent {
    /// Bytes of the wanted pieces: what a ratio is counted against.
    fn wanted_len(&self) -> u64 {
        (0..self.layout.num_pieces())
            .filter(|&p| self.picker.is_wanted(p))
            .map(|p| u64::from(self.layout.piece_len(p)))
            .sum()
    }

    /// Judges the seeding goals at `sh.now` (after every input and at their deadline).
    pub(super) fn check_seed_goal(&mut self, sh: &mut Shared) {
        let now = sh.now;
        if self.goal.done || self.goal.since.is_none() || self.stopping {
            return;
        }
        let (goal, until) = match self.goal.reached {
            Some(r) => r,
            None => {
                let size = self.wanted_len_cached();
                let Some(goal) = self.goal.due(now, self.uploaded, size) else {
                    return;
                };
                tracing::info!(torrent = %self.id, %goal, uploaded = self.uploaded, "seeding goal reached");
                let until = now + DRAIN_TIMEOUT;
                self.goal.reached = Some((goal, until));
                for peer in self.peers.values_mut() {
                    peer.their_requests.clear();
                }
                (goal, until)
            }
        };
        if now < until {
            if self.peers.values().any(|p| p.unsent() > 0) {
                return;
            }
            let drained = *self.goal.drained_at.get_or_insert(now);
            let all_seeds = self.peers.values().all(|p| p.is_seed());
            if now < drained + LINGER && !all_seeds {
                return;
            }
        }
        self.goal.done = true;
        let seeded_for = self
            .goal
            .since
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        self.stop(sh);
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for conn in conns {
            self.close_peer(sh, conn, CloseReason::SeedingDone, false);
        }
        sh.event(Event::SeedingDone {
            torrent: self.id,
            goal,
            uploaded: self.uploaded,
            seeded_for,
        });
    }

    /// [`Torrent::wanted_len`], computed once.
    fn wanted_len_cached(&mut self) -> u64 {
        if let Some(n) = self.wanted_bytes {
            return n;
        }
        let n = self.wanted_len();
        self.wanted_bytes = Some(n);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(secs)
    }

    #[test]
    fn whichever_goal_comes_first_is_reached() {
        let mut g = SeedGoals::new(Some(1.5), Some(Duration::from_secs(60)));
        assert_eq!(g.due(at(100), 10_000, 1_000), None, "not seeding yet");
        g.start(at(10));
        g.start(at(20));
        assert_eq!(g.deadline(), Some(at(70)));
        assert_eq!(g.due(at(30), 1_499, 1_000), None);
        assert_eq!(g.due(at(30), 1_500, 1_000), Some(SeedGoal::Ratio));
        assert_eq!(g.due(at(70), 0, 1_000), Some(SeedGoal::Time));
        assert_eq!(g.due(at(69), 0, 1_000), None);
    }

    #[test]
    fn no_goal_never_starts_a_clock() {
        let mut g = SeedGoals::new(None, None);
        g.start(at(1));
        assert_eq!(g.deadline(), None);
        assert_eq!(g.due(at(1_000_000), u64::MAX, 1), None);
        let mut nan = SeedGoals::new(Some(f64::NAN), None);
        nan.start(at(1));
        assert_eq!(nan.due(at(1), u64::MAX, 1), None);
    }
}
