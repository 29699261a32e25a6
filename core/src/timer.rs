//! Named deadlines.
//!
//! Every state machine in the core that has to act at some time without being given an input
//! keeps its deadlines in a [`TimerTable`]: one slot per named [`Timer`], each empty or holding
//! the instant it fires. The machine says when it next needs the time (`poll_timeout`, the
//! earliest armed slot) and is handed the time when it does (`handle_timeout(now)`, which runs
//! the slots that are due and re-arms or stops each of them).
//!
//! The session asks each machine it owns for its `poll_timeout` and returns the earliest as
//! [`Output::Timeout`](crate::Output::Timeout), so the driver wakes exactly when something is
//! due and never on a fixed beat. A machine must leave no slot armed at or before the `now`
//! it was handled at: a slot that stays due would make the driver spin.

use std::marker::PhantomData;

use crate::time::Instant;

/// A named deadline of one machine: an enum whose variants index a [`TimerTable`].
pub(crate) trait Timer: Copy + 'static {
    /// Every variant, in the order their handlers run when several are due at once.
    const ALL: &'static [Self];
    /// The variant's slot, below `ALL.len()`.
    fn index(self) -> usize;
}

/// When each of a machine's timers fires, if it is armed. `N` is the number of timers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimerTable<T, const N: usize> {
    at: [Option<Instant>; N],
    kind: PhantomData<T>,
}

impl<T: Timer, const N: usize> Default for TimerTable<T, N> {
    fn default() -> Self {
        TimerTable {
            at: [None; N],
            kind: PhantomData,
        }
    }
}

impl<T: Timer, const N: usize> TimerTable<T, N> {
    /// Arms `timer` to fire at `at` (replacing what it held).
    pub fn set(&mut self, timer: T, at: Instant) {
        self.at[timer.index()] = Some(at);
    }

    /// Arms `timer` at `at`, or stops it for `None`.
    pub fn set_or_stop(&mut self, timer: T, at: Option<Instant>) {
        self.at[timer.index()] = at;
    }

    /// Stops `timer`.
    pub fn stop(&mut self, timer: T) {
        self.at[timer.index()] = None;
    }

    /// When `timer` fires, if it is armed.
    pub fn get(&self, timer: T) -> Option<Instant> {
        self.at[timer.index()]
    }

    /// True when `timer` is armed at or before `now`.
    pub fn is_due(&self, timer: T, now: Instant) -> bool {
        self.at[timer.index()].is_some_and(|at| at <= now)
    }

    /// The earliest armed timer's instant.
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Two {
        A,
        B,
    }

    impl Timer for Two {
        const ALL: &'static [Self] = &[Two::A, Two::B];
        fn index(self) -> usize {
            self as usize
        }
    }

    fn at(secs: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(secs)
    }

    #[test]
    fn the_earliest_armed_timer_is_next_and_stopped_ones_never_fire() {
        let mut t: TimerTable<Two, 2> = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Two::B, at(5));
        t.set(Two::A, at(7));
        assert_eq!(t.next(), Some(at(5)));
        assert!(t.is_due(Two::B, at(5)) && !t.is_due(Two::A, at(6)));
        assert!(t.is_due(Two::A, at(7)) && t.is_due(Two::B, at(7)));
        t.stop(Two::B);
        assert_eq!(t.next(), Some(at(7)));
        assert!(!t.is_due(Two::B, at(100)));
        t.set_or_stop(Two::A, None);
        assert_eq!(t.next(), None);
        assert_eq!(t.get(Two::A), None);
    }

    #[test]
    fn earliest_of_optional_deadlines() {
        assert_eq!(earliest(None, None), None);
        assert_eq!(earliest(Some(at(1)), None), Some(at(1)));
        assert_eq!(earliest(None, Some(at(2))), Some(at(2)));
        assert_eq!(earliest(Some(at(3)), Some(at(2))), Some(at(2)));
    }
}
