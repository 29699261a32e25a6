//! When a run ends and how: the part of the driver that needs no session, a pure state
//! machine over the download's completion, fatal errors, Ctrl-C and the session's
//! `Event::Stopped`, with a backstop for a clean stop that hangs.

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

/// See the module docs.
#[derive(Debug)]
pub(super) struct Lifecycle {
    mode: Mode,
    /// How long a clean stop may take before the backstop ends it.
    grace: Duration,
    complete: bool,
    /// Set once a clean stop has started: the exit to report when it ends.
    stopping: Option<Exit>,
    /// The clean stop under way was asked for with Ctrl-C.
    interrupted: bool,
    /// A second Ctrl-C: out at once, without waiting for the disk or saving resume data.
    quit_now: bool,
    /// When to give up waiting for `Event::Stopped`.
    backstop: Instant,
    finished: Option<Exit>,
}

impl Lifecycle {
    /// A run in `mode` whose clean stop is given `grace` to finish.
    pub(super) fn new(mode: Mode, grace: Duration) -> Lifecycle {
        Lifecycle {
            mode,
            grace,
            complete: false,
            stopping: None,
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

    /// When to give up waiting for a clean stop (`FAR_FUTURE` while none is under way).
    pub(super) fn backstop(&self) -> Instant {
        self.backstop
    }

    /// A second Ctrl-C: nothing more is waited for, not even the disk.
    pub(super) fn quit_now(&self) -> bool {
        self.quit_now
    }

    /// The run was stopped by Ctrl-C before the download was complete (and not quit at
    /// once): what was verified is kept, and the same command resumes.
    pub(super) fn stopped_incomplete(&self) -> bool {
        self.interrupted && !self.complete && !self.quit_now
    }

    /// The run already ends with a failure (a disk error).
    pub(super) fn failed(&self) -> bool {
        matches!(self.finished, Some(Exit::Failed(_)))
    }

    /// Starts a clean stop that will end with `exit`, unless one is under way.
    fn stop(&mut self, exit: Exit, now: Instant) -> Step {
        if self.stopping.is_some() || self.finished.is_some() {
            return Step::Nothing;
        }
        self.stopping = Some(exit);
        self.backstop = now + self.grace;
        Step::Shutdown
    }

    /// Every piece is verified: a plain download stops, anything else goes on.
    pub(super) fn on_complete(&mut self, now: Instant) -> Step {
        self.complete = true;
        match self.mode {
            Mode::Download {
                keep_seeding: false,
            } => self.stop(Exit::Success, now),
            _ => Step::Nothing,
        }
    }

    /// Every piece is verified, found while the run is ending: nothing more is started.
    pub(super) fn set_complete(&mut self) {
        self.complete = true;
    }

    /// An error that ends the run with `message`.
    pub(super) fn on_fatal(&mut self, message: String, now: Instant) -> Step {
        self.stop(Exit::Failed(message), now)
    }

    /// Ctrl-C: a clean stop the first time (a success: what was verified is kept and the
    /// same command resumes), an immediate one the second (`Interrupted` if the download
    /// was not complete).
    pub(super) fn on_interrupt(&mut self, now: Instant) -> Step {
        if self.finished.is_some() {
            return Step::Nothing;
        }
        match self.stopping.clone() {
            None => {
                self.interrupted = true;
                self.stop(Exit::Success, now)
            }
            Some(reason) => {
                let unfinished_download =
                    matches!(self.mode, Mode::Download { .. }) && !self.complete;
                self.finished = Some(if self.interrupted && unfinished_download {
                    Exit::Interrupted
                } else {
                    reason
                });
                self.quit_now = true;
                Step::ExitNow
            }
        }
    }

    /// The session reported `Event::Stopped`.
    pub(super) fn on_stopped(&mut self) {
        let exit = self.stopping.clone().unwrap_or_else(|| {
            if self.complete {
                Exit::Success
            } else {
                Exit::Failed("the session stopped unexpectedly".into())
            }
        });
        self.finished.get_or_insert(exit);
    }

    /// True (once) when the backstop has passed without `Event::Stopped`.
    pub(super) fn on_time(&mut self, now: Instant) -> bool {
        if self.finished.is_none()
            && now >= self.backstop
            && let Some(exit) = self.stopping.clone()
        {
            self.finished = Some(exit);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(35);

    fn at(secs: u64) -> Instant {
        Instant::from_duration(Duration::from_secs(secs))
    }

    #[test]
    fn download_ends_after_complete_and_a_clean_stop() {
        let mut l = Lifecycle::new(
            Mode::Download {
                keep_seeding: false,
            },
            GRACE,
        );
        assert_eq!(l.on_complete(at(10)), Step::Shutdown);
        assert_eq!(l.backstop, at(45));
        assert_eq!(l.finished, None);
        l.on_stopped();
        assert_eq!(l.finished, Some(Exit::Success));
    }

    #[test]
    fn a_stop_that_hangs_ends_at_the_backstop() {
        let mut l = Lifecycle::new(
            Mode::Download {
                keep_seeding: false,
            },
            GRACE,
        );
        l.on_complete(at(10));
        assert!(!l.on_time(at(44)));
        assert!(l.on_time(at(45)));
        assert_eq!(l.finished, Some(Exit::Success));
        assert!(!l.on_time(at(46)));
    }

    #[test]
    fn keep_seeding_continues_after_complete() {
        let mut l = Lifecycle::new(Mode::Download { keep_seeding: true }, GRACE);
        assert_eq!(l.on_complete(at(1)), Step::Nothing);
        assert_eq!(l.finished, None);
        // Ctrl-C after completion is a success; a second one quits at once.
        assert_eq!(l.on_interrupt(at(2)), Step::Shutdown);
        assert_eq!(l.on_interrupt(at(3)), Step::ExitNow);
        assert_eq!(l.finished, Some(Exit::Success));
        assert_eq!(l.on_interrupt(at(4)), Step::Nothing);
    }

    #[test]
    fn interrupting_an_incomplete_download_is_a_clean_stop() {
        let mut l = Lifecycle::new(
            Mode::Download {
                keep_seeding: false,
            },
            GRACE,
        );
        assert_eq!(l.on_interrupt(at(1)), Step::Shutdown);
        assert_eq!(l.finished, None);
        l.on_stopped();
        // What was verified is kept and the same command resumes: exit 0.
        assert_eq!(l.finished, Some(Exit::Success));
        assert!(l.interrupted && !l.quit_now);
        // A second Ctrl-C before the stop is done quits at once, as interrupted.
        let mut l = Lifecycle::new(
            Mode::Download {
                keep_seeding: false,
            },
            GRACE,
        );
        l.on_interrupt(at(1));
        assert_eq!(l.on_interrupt(at(2)), Step::ExitNow);
        assert_eq!(l.finished, Some(Exit::Interrupted));
        assert!(l.quit_now);
    }

    #[test]
    fn seeding_ends_well_on_interrupt() {
        let mut l = Lifecycle::new(Mode::Seed, GRACE);
        assert_eq!(l.on_complete(at(1)), Step::Nothing);
        assert_eq!(l.on_interrupt(at(100)), Step::Shutdown);
        l.on_stopped();
        assert_eq!(l.finished, Some(Exit::Success));
        // Even a seeder whose data was incomplete stops with success when asked to.
        let mut l = Lifecycle::new(Mode::Seed, GRACE);
        l.on_interrupt(at(1));
        l.on_stopped();
        assert_eq!(l.finished, Some(Exit::Success));
    }

    #[test]
    fn disk_errors_are_fatal_and_keep_their_message() {
        let mut l = Lifecycle::new(Mode::Seed, GRACE);
        assert_eq!(l.on_fatal("disk error: full".into(), at(1)), Step::Shutdown);
        // A later interrupt while stopping quits at once, still reporting the error.
        assert_eq!(l.on_interrupt(at(2)), Step::ExitNow);
        assert_eq!(l.finished, Some(Exit::Failed("disk error: full".into())));

        let mut l = Lifecycle::new(
            Mode::Download {
                keep_seeding: false,
            },
            GRACE,
        );
        l.on_fatal("disk error: x".into(), at(1));
        // A second fatal error does not restart the stop.
        assert_eq!(l.on_fatal("disk error: y".into(), at(2)), Step::Nothing);
        l.on_stopped();
        assert_eq!(l.finished, Some(Exit::Failed("disk error: x".into())));
    }

    #[test]
    fn an_unexpected_stop_is_a_failure_unless_complete() {
        let mut l = Lifecycle::new(
            Mode::Download {
                keep_seeding: false,
            },
            GRACE,
        );
        l.on_stopped();
        assert!(matches!(l.finished, Some(Exit::Failed(_))));
    }
}
