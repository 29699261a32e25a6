//! Resume-data upkeep for a download: deciding how it starts, and when to save which
//! pieces are verified (the file format and the saving itself are [`crate::resume`]'s).
//!
//! It reads no clock: every call that depends on time takes the core's `now` from the
//! driver, so that it runs on the same clock as everything else (and tests drive it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tessera_core::{Bitfield, Instant, Metainfo};

use crate::pool::Job;
use crate::resume::{self, Startup};
use crate::storage::Storage;

/// How often resume data is saved while pieces are being verified.
pub(super) const SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// See the module docs.
#[derive(Debug)]
pub(super) struct ResumeUpkeep {
    path: PathBuf,
    storage: Arc<Storage>,
    info_hash: [u8; 20],
    /// The core knows what is on disk (the check, if there was one, is over): only then
    /// does its bitfield mean something.
    known: bool,
    /// Pieces were verified since the last save started.
    unsaved: bool,
    /// A save is running on the pool.
    saving: bool,
    /// No save starts before this.
    next_save: Instant,
    /// The last save failure printed, so that a failing disk is reported once.
    last_error: Option<String>,
}

impl ResumeUpkeep {
    /// Upkeep of the resume file at `path` for `storage`'s torrent. `known`: the core
    /// knows what is on disk; `unsaved`: the file does not record all of it yet. No save
    /// starts before `first_save`.
    pub(super) fn new(
        path: PathBuf,
        storage: Arc<Storage>,
        info_hash: [u8; 20],
        known: bool,
        unsaved: bool,
        first_save: Instant,
    ) -> ResumeUpkeep {
        ResumeUpkeep {
            path,
            storage,
            info_hash,
            known,
            unsaved,
            saving: false,
            next_save: first_save,
            last_error: None,
        }
    }

    /// How a download of `meta` (called `name` in messages) into `storage` under `dir`
    /// starts, at `now` ([`resume::startup`]): the verified pieces the core starts from
    /// (`None`: it checks the data on disk first), the upkeep, and the line that says
    /// which it is (none for a fresh start).
    pub(super) fn start(
        meta: &Metainfo,
        storage: &Arc<Storage>,
        dir: &Path,
        recheck: bool,
        name: &str,
        now: Instant,
    ) -> (Option<Bitfield>, ResumeUpkeep, Option<String>) {
        let hash = meta.info_hash.to_string();
        let path = resume::resume_path(dir, &hash);
        let n = meta.num_pieces() as usize;
        let startup = resume::startup(meta, storage, &path, recheck);
        // Resume data that was just read needs no saving until something changes.
        let unsaved = !matches!(startup, Startup::Resume(_));
        let (have, line) = match startup {
            Startup::Fresh => (Some(Bitfield::new(n)), None),
            Startup::Resume(have) => {
                let line = format!(
                    "{name}: resuming with {} of {n} pieces verified ({})",
                    have.count_ones(),
                    path.display()
                );
                (Some(have), Some(line))
            }
            Startup::Check(reason) => {
                let line = format!("{name}: checking the data in {} ({reason})", dir.display());
                (None, Some(line))
            }
        };
        // Saved at once when the core knows what is on disk: the file then exists before
        // the data can fill the disk (see `resume::write_resume`).
        let upkeep = ResumeUpkeep::new(
            path,
            storage.clone(),
            meta.info_hash.0,
            have.is_some(),
            unsaved,
            now,
        );
        (have, upkeep, line)
    }

    /// The core's check is over: what it found is worth saving at once.
    pub(super) fn checked(&mut self, now: Instant) {
        self.known = true;
        self.unsaved = true;
        self.next_save = now;
    }

    /// A piece was verified: the file no longer records everything.
    pub(super) fn piece_verified(&mut self) {
        self.unsaved = true;
    }

    /// The download is complete: save at once, so that a later kill (while seeding)
    /// keeps the completion.
    pub(super) fn completed(&mut self, now: Instant) {
        self.next_save = now;
    }

    /// When [`ResumeUpkeep::due`] will next have a save to start, if it will without
    /// something else happening first (pieces verified since the last save, none running).
    pub(super) fn next_due(&self) -> Option<Instant> {
        (self.known && self.unsaved && !self.saving).then_some(self.next_save)
    }

    /// The save to start on the pool at `now`, if one is due: the core knows what is on
    /// disk, pieces were verified since the last save started, none is running, and
    /// [`SAVE_INTERVAL`] has passed since the last one started (or a save was asked for
    /// at once). `have`, the core's verified pieces, is asked for only then.
    pub(super) fn due(
        &mut self,
        now: Instant,
        have: impl FnOnce() -> Option<Bitfield>,
    ) -> Option<Job> {
        if !self.known || !self.unsaved || self.saving || now < self.next_save {
            return None;
        }
        let have = have()?;
        self.unsaved = false;
        self.saving = true;
        self.next_save = now + SAVE_INTERVAL;
        Some(Job::SaveResume {
            storage: self.storage.clone(),
            path: self.path.clone(),
            info_hash: self.info_hash,
            have,
        })
    }

    /// A save finished. Returns the warning to print for a failure, once per distinct
    /// message; the data it would have recorded is still on disk and found by hashing
    /// next time.
    pub(super) fn saved(&mut self, result: Result<(), String>) -> Option<String> {
        self.saving = false;
        match result {
            Ok(()) => {
                self.last_error = None;
                None
            }
            Err(e) if self.last_error.as_ref() == Some(&e) => None,
            Err(e) => {
                let warning = format!("cannot save resume data: {e}");
                self.last_error = Some(e);
                Some(warning)
            }
        }
    }

    /// The last save of a run, on this thread, once every queued write has completed:
    /// skipped when the file is current (nothing verified since the last save, and that
    /// one worked). Returns the warning to print, as [`ResumeUpkeep::saved`].
    pub(super) fn save_final(&mut self, have: impl FnOnce() -> Option<Bitfield>) -> Option<String> {
        if !self.known || (!self.unsaved && self.last_error.is_none()) {
            return None;
        }
        let have = have()?;
        let result = resume::save(&self.storage, &self.path, self.info_hash, have);
        self.saved(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resume::ResumeData;
    use crate::testutil::{TestTorrent, torrent};

    fn at(secs: u64) -> Instant {
        Instant::from_duration(Duration::from_secs(secs))
    }

    /// A torrent with its storage under `dir`, and upkeep that knows what is on disk.
    fn upkeep(dir: &Path, unsaved: bool, first_save: Instant) -> (TestTorrent, ResumeUpkeep) {
        let t = torrent("u", &[("a", 40_000, false)], 16384);
        let storage = Arc::new(Storage::new(dir, t.meta.clone()).unwrap());
        storage.prepare().unwrap();
        let path = resume::resume_path(dir, &t.meta.info_hash.to_string());
        let u = ResumeUpkeep::new(path, storage, t.meta.info_hash.0, true, unsaved, first_save);
        (t, u)
    }

    fn have(t: &TestTorrent, pieces: &[usize]) -> Bitfield {
        let mut b = Bitfield::new(t.meta.num_pieces() as usize);
        for &p in pieces {
            b.set(p);
        }
        b
    }

    /// The pieces a save job would record.
    fn saving(job: Option<Job>) -> Option<Vec<usize>> {
        match job? {
            Job::SaveResume { have, .. } => Some(have.ones().collect()),
            other => panic!("not a save: {other:?}"),
        }
    }

    #[test]
    fn saves_follow_verified_pieces_at_most_every_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (t, mut u) = upkeep(dir.path(), true, at(0));
        // Due at once, and the core's pieces are asked for only when it is.
        assert_eq!(saving(u.due(at(0), || Some(have(&t, &[0])))), Some(vec![0]));
        // Running: nothing more starts, even with pieces verified meanwhile.
        u.piece_verified();
        assert!(u.due(at(30), || panic!("asked while saving")).is_none());
        assert_eq!(u.saved(Ok(())), None);
        // The interval counts from the start of the last save.
        assert!(u.due(at(9), || panic!("asked too early")).is_none());
        assert_eq!(
            saving(u.due(at(10), || Some(have(&t, &[0, 1])))),
            Some(vec![0, 1])
        );
        assert_eq!(u.saved(Ok(())), None);
        // Nothing verified since: nothing to save, however long it has been.
        assert!(
            u.due(at(1000), || panic!("asked with nothing new"))
                .is_none()
        );
        // The core cannot answer (no such torrent): nothing starts, and it stays due.
        u.piece_verified();
        assert!(u.due(at(1000), || None).is_none());
        assert!(u.due(at(1000), || Some(have(&t, &[2]))).is_some());
    }

    #[test]
    fn the_check_and_completion_ask_for_a_save_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (t, mut u) = upkeep(dir.path(), false, at(0));
        // Before the check is over, the core's bitfield means nothing.
        u.known = false;
        u.piece_verified();
        assert!(u.due(at(0), || panic!("asked during the check")).is_none());
        u.checked(at(5));
        assert!(u.due(at(5), || Some(have(&t, &[0]))).is_some());
        u.saved(Ok(()));
        // Complete 2 s after a save started: saved then, not 10 s after.
        u.piece_verified();
        assert!(u.due(at(7), || panic!("asked too early")).is_none());
        u.completed(at(7));
        assert!(u.due(at(7), || Some(have(&t, &[0, 1, 2]))).is_some());
    }

    #[test]
    fn a_failing_save_is_reported_once_per_message() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut u) = upkeep(dir.path(), true, at(0));
        let full = || Err::<(), _>("No space left on device".to_string());
        let warning = u.saved(full()).expect("a warning");
        assert!(
            warning.starts_with("cannot save resume data: No space"),
            "{warning}"
        );
        assert_eq!(u.saved(full()), None);
        assert!(u.saved(Err("read-only file system".into())).is_some());
        assert_eq!(u.saved(Ok(())), None);
        assert!(u.saved(full()).is_some(), "reported again after a success");
    }

    #[test]
    fn the_final_save_writes_the_file_unless_it_is_current() {
        let dir = tempfile::tempdir().unwrap();
        let (t, mut u) = upkeep(dir.path(), false, at(0));
        // Current (just read at the start, nothing verified since): not written.
        assert_eq!(u.save_final(|| panic!("asked with the file current")), None);
        assert!(!u.path.exists());
        u.piece_verified();
        assert_eq!(u.save_final(|| Some(have(&t, &[1]))), None);
        let saved = ResumeData::load(&u.path).unwrap();
        assert_eq!(saved.have.ones().collect::<Vec<_>>(), vec![1]);
        assert_eq!(saved.info_hash, t.meta.info_hash.0);
        // A save that failed last time is tried again even with nothing new.
        u.unsaved = false;
        u.last_error = Some("earlier failure".into());
        assert_eq!(u.save_final(|| Some(have(&t, &[1, 2]))), None);
        let saved = ResumeData::load(&u.path).unwrap();
        assert_eq!(saved.have.ones().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn a_download_starts_fresh_or_from_its_resume_data() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent("u", &[("a", 40_000, false)], 16384);
        let storage = Arc::new(Storage::new(dir.path(), t.meta.clone()).unwrap());
        // Nothing on disk: every piece to fetch, no line, saved at once.
        let (have, mut u, line) =
            ResumeUpkeep::start(&t.meta, &storage, dir.path(), false, "u", at(3));
        assert_eq!(have.map(|h| h.count_ones()), Some(0));
        assert_eq!(line, None);
        assert!(u.due(at(2), || panic!("asked too early")).is_none());
        assert_eq!(u.save_final(|| Some(Bitfield::new(3))), None);
        // Started again: the resume data is trusted and needs no saving yet.
        let (have, mut u, line) =
            ResumeUpkeep::start(&t.meta, &storage, dir.path(), false, "u", at(0));
        assert_eq!(have.map(|h| h.count_ones()), Some(0));
        assert!(line.is_some_and(|l| l.starts_with("u: resuming with 0 of 3 pieces")));
        assert!(
            u.due(at(100), || panic!("asked with nothing new"))
                .is_none()
        );
        // --recheck: the core checks first, and nothing is saved before it is done.
        let (have, mut u, line) =
            ResumeUpkeep::start(&t.meta, &storage, dir.path(), true, "u", at(0));
        assert_eq!(have, None);
        assert!(
            line.is_some_and(|l| l.contains("checking the data in") && l.ends_with("(--recheck)"))
        );
        assert!(
            u.due(at(100), || panic!("asked during the check"))
                .is_none()
        );
    }
}
