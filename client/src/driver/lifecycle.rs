//! When a run ends and how: the part of the driver that needs no session, a pure state
//! machine over each torrent's completion or failure (a disk error, no peer within
//! `--stall-timeout`), Ctrl-C and the session's `Event::Stopped`, with a backstop for a clean stop that hangs.
//!
//! A plain download ends once every torrent is complete or failed; a seeder (or a
//! download with `--seed`) runs until Ctrl-C, or until every torrent has failed. The run
//! succeeds only if no torrent failed and, for a plain download, all completed, or if it
//! was stopped with Ctrl-C (what was verified is kept and the same command resumes).

use std::time::Duration;

use tessera_core::Instant;

use super::plan::Mode;
use crate::exit::Exit;

/// What the driver should do after a change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Nothing,
    /// Start a clean stop (`Session::shutdown`).
    Shutdown,
    /// Stop now without waiting.
    ExitNow,
}

/// Where one torrent (one source of the plan) stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Status {
    /// Checking, downloading, or waiting for its metadata.
    Active,
    /// Every wanted piece is verified.
    Complete,
    /// It stopped with this error (a disk error, no data to seed).
    Failed(String),
    /// It reached its seeding goal (`--seed-ratio`, `--seed-time`) and stopped.
    SeedingDone,
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct Lifecycle {
    mode: Mode,
    /// How long a clean stop may take before the backstop ends it.
    grace: Duration,
    /// One per source of the plan.
    torrents: Vec<Status>,
    /// A clean stop is under way.
    stopping: bool,
    /// The clean stop under way was asked for with Ctrl-C.
    interrupted: bool,
    /// A second Ctrl-C: out at once, without waiting for the disk or saving resume data.
    quit_now: bool,
    /// When to give up waiting for `Event::Stopped`.
    backstop: Instant,
    finished: Option<Exit>,
}

impl Lifecycle {
    /// A run in `mode` of `torrents` torrents whose clean stop is given `grace` to finish.
    pub(super) fn new(mode: Mode, torrents: usize, grace: Duration) -> Lifecycle {
        Lifecycle {
            mode,
            grace,
            torrents: vec![Status::Active; torrents],
            stopping: false,
            interrupted: false,
            quit_now: false,
            backstop: Instant::FAR_FUTURE,
            finished: None,
        }
    }

    /// `Some` once the run is over, with how it ended.
    pub(super) fn finished(&self) -> Option<&Exit> {
        self.finished.as_ref()
    }

    /// Where torrent `i` stands.
    #[cfg(test)]
    pub(super) fn status(&self, i: usize) -> Option<&Status> {
        self.torrents.get(i)
    }

    /// When to give up waiting for a clean stop (`FAR_FUTURE` while none is under way).
    pub(super) fn backstop(&self) -> Instant {
        self.backstop
    }

    /// A second Ctrl-C: nothing more is waited for, not even the disk.
    pub(super) fn quit_now(&self) -> bool {
        self.quit_now
    }

    /// A clean stop is under way (or the run is over).
    pub(super) fn stopping(&self) -> bool {
        self.stopping || self.finished.is_some()
    }

    /// The run was stopped by Ctrl-C (and not quit at once): torrents still active keep
    /// what was verified, and the same command resumes them.
    pub(super) fn interrupted(&self) -> bool {
        self.interrupted && !self.quit_now
    }

    /// The run already ends with a failure: reporting more errors is noise.
    pub(super) fn failed(&self) -> bool {
        matches!(self.finished, Some(Exit::Failed(_)))
    }

    fn plain_download(&self) -> bool {
        self.mode
            == Mode::Download {
                keep_seeding: false,
            }
    }

    /// Some torrent still has something to do: in a plain download, one that is still
    /// active; when seeding, one that has not failed.
    fn anything_left(&self) -> bool {
        if self.plain_download() {
            self.torrents.contains(&Status::Active)
        } else {
            self.torrents
                .iter()
                .any(|s| !matches!(s, Status::Failed(_) | Status::SeedingDone))
        }
    }

    /// How the run ends if it ends now.
    fn outcome(&self) -> Exit {
        let failures: Vec<&str> = self
            .torrents
            .iter()
            .filter_map(|s| match s {
                Status::Failed(m) => Some(m.as_str()),
                _ => None,
            })
            .collect();
        match failures.as_slice() {
            [] => {}
            [one] => return Exit::Failed((*one).to_string()),
            many => {
                return Exit::Failed(format!(
                    "{} of {} torrents failed: {}",
                    many.len(),
                    self.torrents.len(),
                    many.join("; ")
                ));
            }
        }
        if self.plain_download() && !self.interrupted && self.anything_left() {
            return Exit::Failed("the session stopped unexpectedly".into());
        }
        Exit::Success
    }

    /// Starts a clean stop, unless one is under way.
    fn stop(&mut self, now: Instant) -> Step {
        if self.stopping() {
            return Step::Nothing;
        }
        self.stopping = true;
        self.backstop = now + self.grace;
        Step::Shutdown
    }

    /// Torrent `i` has every piece: a plain download stops once no torrent is active.
    pub(super) fn on_complete(&mut self, i: usize, now: Instant) -> Step {
        self.set_complete(i);
        if self.plain_download() && !self.anything_left() {
            self.stop(now)
        } else {
            Step::Nothing
        }
    }

    /// Torrent `i` has every piece, found while the run is ending: nothing more starts.
    pub(super) fn set_complete(&mut self, i: usize) {
        if let Some(s @ Status::Active) = self.torrents.get_mut(i) {
            *s = Status::Complete;
        }
    }

    /// Torrent `i` reached its seeding goal: the run stops once no other torrent has
    /// anything left to do (exit 0).
    pub(super) fn on_seeding_done(&mut self, i: usize, now: Instant) -> Step {
        match self.torrents.get_mut(i) {
            Some(s @ (Status::Active | Status::Complete)) => *s = Status::SeedingDone,
            _ => return Step::Nothing,
        }
        if self.anything_left() {
            Step::Nothing
        } else {
            self.stop(now)
        }
    }

    /// Torrent `i` stopped with an error (`message`). The run stops when nothing is left
    /// to do; the others go on otherwise.
    pub(super) fn on_failed(&mut self, i: usize, message: String, now: Instant) -> Step {
        match self.torrents.get_mut(i) {
            Some(s @ (Status::Active | Status::Complete)) => *s = Status::Failed(message),
            _ => return Step::Nothing,
        }
        if self.anything_left() {
            Step::Nothing
        } else {
            self.stop(now)
        }
    }

    /// Ctrl-C: a clean stop the first time (a success: what was verified is kept and the
    /// same command resumes), an immediate one the second (`Interrupted` if a download
    /// was not complete).
    pub(super) fn on_interrupt(&mut self, now: Instant) -> Step {
        if self.finished.is_some() {
            return Step::Nothing;
        }
        if !self.stopping {
            self.interrupted = true;
            return self.stop(now);
        }
        let unfinished_download =
            matches!(self.mode, Mode::Download { .. }) && self.torrents.contains(&Status::Active);
        self.finished = Some(if self.interrupted && unfinished_download {
            Exit::Interrupted
        } else {
            self.outcome()
        });
        self.quit_now = true;
        Step::ExitNow
    }

    /// The session reported `Event::Stopped`.
    pub(super) fn on_stopped(&mut self) {
        if self.finished.is_none() {
            self.finished = Some(self.outcome());
        }
    }

    /// True (once) when the backstop has passed without `Event::Stopped`.
    pub(super) fn on_time(&mut self, now: Instant) -> bool {
        if self.finished.is_none() && self.stopping && now >= self.backstop {
            self.finished = Some(self.outcome());
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(35);
    const DOWNLOAD: Mode = Mode::Download {
        keep_seeding: false,
    };

    fn at(secs: u64) -> Instant {
        Instant::from_duration(Duration::from_secs(secs))
    }

    #[test]
    fn download_ends_after_complete_and_a_clean_stop() {
        let mut l = Lifecycle::new(DOWNLOAD, 1, GRACE);
        assert_eq!(l.on_complete(0, at(10)), Step::Shutdown);
        assert_eq!(l.backstop, at(45));
        assert_eq!(l.finished, None);
        l.on_stopped();
        assert_eq!(l.finished, Some(Exit::Success));
    }

    #[test]
    fn several_torrents_end_when_the_last_one_completes() {
        let mut l = Lifecycle::new(DOWNLOAD, 3, GRACE);
        assert_eq!(l.on_complete(2, at(1)), Step::Nothing);
        assert_eq!(l.on_complete(2, at(1)), Step::Nothing);
        assert_eq!(l.on_complete(0, at(2)), Step::Nothing);
        assert_eq!(l.status(1), Some(&Status::Active));
        assert_eq!(l.on_complete(1, at(3)), Step::Shutdown);
        l.on_stopped();
        assert_eq!(l.finished, Some(Exit::Success));
    }

    #[test]
    fn a_failed_torrent_lets_the_others_finish_and_fails_the_run() {
        let mut l = Lifecycle::new(DOWNLOAD, 3, GRACE);
        assert_eq!(
            l.on_failed(1, "b: disk error: full".into(), at(1)),
            Step::Nothing
        );
        assert_eq!(l.on_complete(0, at(2)), Step::Nothing);
        assert_eq!(
            l.on_failed(2, "c: disk error: gone".into(), at(3)),
            Step::Shutdown
        );
        l.on_stopped();
        assert_eq!(
            l.finished,
            Some(Exit::Failed(
                "2 of 3 torrents failed: b: disk error: full; c: disk error: gone".into()
            ))
        );
        // One failure alone is reported as it is.
        let mut l = Lifecycle::new(DOWNLOAD, 1, GRACE);
        assert_eq!(
            l.on_failed(0, "disk error: x".into(), at(1)),
            Step::Shutdown
        );
        // A second failure does not restart the stop.
        assert_eq!(l.on_failed(0, "disk error: y".into(), at(2)), Step::Nothing);
        l.on_stopped();
        assert_eq!(l.finished, Some(Exit::Failed("disk error: x".into())));
    }

    #[test]
    fn a_stop_that_hangs_ends_at_the_backstop() {
        let mut l = Lifecycle::new(DOWNLOAD, 1, GRACE);
        l.on_complete(0, at(10));
        assert!(!l.on_time(at(44)));
        assert!(l.on_time(at(45)));
        assert_eq!(l.finished, Some(Exit::Success));
        assert!(!l.on_time(at(46)));
    }

    #[test]
    fn seeding_goals_end_the_run_well_once_every_torrent_reached_its_own() {
        let mut l = Lifecycle::new(Mode::Seed, 2, GRACE);
        assert_eq!(l.on_complete(0, at(0)), Step::Nothing);
        assert_eq!(l.on_complete(1, at(0)), Step::Nothing);
        assert_eq!(l.on_seeding_done(1, at(5)), Step::Nothing);
        assert_eq!(l.on_seeding_done(1, at(6)), Step::Nothing);
        assert_eq!(l.on_seeding_done(0, at(9)), Step::Shutdown);
        l.on_stopped();
        assert_eq!(l.finished, Some(Exit::Success));
        // A download with --seed: the goal after completion ends it well too.
        let mut l = Lifecycle::new(Mode::Download { keep_seeding: true }, 1, GRACE);
        assert_eq!(l.on_complete(0, at(1)), Step::Nothing);
        assert_eq!(l.on_seeding_done(0, at(2)), Step::Shutdown);
        l.on_stopped();
        assert_eq!(l.finished, Some(Exit::Success));
    }

    #[test]
    fn keep_seeding_continues_after_complete() {
        let mut l = Lifecycle::new(Mode::Download { keep_seeding: true }, 2, GRACE);
        assert_eq!(l.on_complete(0, at(1)), Step::Nothing);
        assert_eq!(l.on_complete(1, at(1)), Step::Nothing);
        assert_eq!(l.finished, None);
        // A failure of one seeding torrent leaves the other serving.
        assert_eq!(l.on_failed(0, "a: disk error".into(), at(1)), Step::Nothing);
        // Ctrl-C after completion: a second one quits at once, with the failure.
        assert_eq!(l.on_interrupt(at(2)), Step::Shutdown);
        assert_eq!(l.on_interrupt(at(3)), Step::ExitNow);
        assert_eq!(l.finished, Some(Exit::Failed("a: disk error".into())));
        assert_eq!(l.on_interrupt(at(4)), Step::Nothing);
    }

    #[test]
    fn interrupting_an_incomplete_download_is_a_clean_stop() {
        let mut l = Lifecycle::new(DOWNLOAD, 2, GRACE);
        l.on_complete(1, at(0));
        assert_eq!(l.on_interrupt(at(1)), Step::Shutdown);
        assert_eq!(l.finished, None);
        assert!(l.interrupted());
        l.on_stopped();
        // What was verified is kept and the same command resumes: exit 0.
        assert_eq!(l.finished, Some(Exit::Success));
        // A second Ctrl-C before the stop is done quits at once, as interrupted.
        let mut l = Lifecycle::new(DOWNLOAD, 1, GRACE);
        l.on_interrupt(at(1));
        assert_eq!(l.on_interrupt(at(2)), Step::ExitNow);
        assert_eq!(l.finished, Some(Exit::Interrupted));
        assert!(l.quit_now && !l.interrupted());
    }

    #[test]
    fn seeding_ends_well_on_interrupt_and_badly_when_every_torrent_failed() {
        let mut l = Lifecycle::new(Mode::Seed, 1, GRACE);
        assert_eq!(l.on_complete(0, at(1)), Step::Nothing);
        assert_eq!(l.on_interrupt(at(100)), Step::Shutdown);
        l.on_stopped();
        assert_eq!(l.finished, Some(Exit::Success));
        let mut l = Lifecycle::new(Mode::Seed, 2, GRACE);
        assert_eq!(l.on_failed(0, "a: no data".into(), at(1)), Step::Nothing);
        assert_eq!(l.on_failed(1, "b: no data".into(), at(1)), Step::Shutdown);
        // A later interrupt while stopping quits at once, still reporting the errors.
        assert_eq!(l.on_interrupt(at(2)), Step::ExitNow);
        assert!(
            matches!(&l.finished, Some(Exit::Failed(m)) if m.starts_with("2 of 2 torrents failed"))
        );
    }

    #[test]
    fn an_unexpected_stop_is_a_failure_unless_complete() {
        let mut l = Lifecycle::new(DOWNLOAD, 1, GRACE);
        l.on_stopped();
        assert!(matches!(l.finished, Some(Exit::Failed(_))));
    }
}
