//! `verify`: hash every piece on disk (in parallel on the pool) and say which pieces and
//! files are complete. Exits 0 only when everything is.

use std::fmt::Write;
use std::sync::Arc;

use tessera_core::{DiskResult, Metainfo, OpId};

use crate::cli::VerifyArgs;
use crate::error::Error;
use crate::exit::Exit;
use crate::output::printable;
use crate::pool::{Completion, DiskPool, Job};
use crate::storage::Storage;
use crate::torrent;
use crate::ui::PieceProgress;

/// What is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Per piece: its hash matched.
    pub pieces: Vec<bool>,
    /// Per data file (padding files are left out): its path joined with `/`, and whether
    /// it is complete: every piece overlapping it verified, or, for a zero-length file,
    /// it exists.
    pub files: Vec<(String, bool)>,
}

impl VerifyReport {
    pub fn pieces_ok(&self) -> usize {
        self.pieces.iter().filter(|&&ok| ok).count()
    }

    pub fn complete(&self) -> bool {
        self.pieces.iter().all(|&ok| ok) && self.files.iter().all(|&(_, ok)| ok)
    }

    /// `pieces: a of b complete`, then one line per file.
    pub fn text(&self) -> String {
        let mut out = format!(
            "pieces: {} of {} complete\nfiles:\n",
            self.pieces_ok(),
            self.pieces.len()
        );
        for (path, ok) in &self.files {
            let state = if *ok { "complete" } else { "incomplete" };
            let _ = writeln!(out, "  {state:<10}  {}", printable(path));
        }
        out
    }
}

pub fn run(args: &VerifyArgs, quiet: bool) -> Result<Exit, Error> {
    let meta = torrent::load(&args.torrent)?;
    let storage = Arc::new(Storage::new(&args.data, meta.clone())?);
    let pool = DiskPool::blocking().map_err(|e| Error::io("starting disk threads", e))?;
    let progress = PieceProgress::new(quiet, "verifying", u64::from(meta.num_pieces()));
    let report = verify(&meta, &storage, &pool, &progress);
    progress.finish();
    let report = report?;
    crate::output::text(&report.text());
    if report.complete() {
        Ok(Exit::Success)
    } else {
        let bad_files = report.files.iter().filter(|(_, ok)| !ok).count();
        Ok(Exit::Failed(format!(
            "incomplete: {} of {} pieces verified, {bad_files} of {} files incomplete",
            report.pieces_ok(),
            report.pieces.len(),
            report.files.len()
        )))
    }
}

/// Hashes every piece of `meta` as stored in `storage`. A disk error (other than missing
/// or short files, which are just incomplete) stops the check.
pub fn verify(
    meta: &Metainfo,
    storage: &Arc<Storage>,
    pool: &DiskPool,
    progress: &PieceProgress,
) -> Result<VerifyReport, Error> {
    let layout = meta.layout();
    let n = meta.num_pieces();
    for piece in 0..n {
        let Some(expected) = meta.piece_hash(piece) else {
            return Err(Error::other(format!("piece {piece} has no hash")));
        };
        pool.submit(Job::Verify {
            op: OpId(u64::from(piece)),
            storage: storage.clone(),
            spans: layout.spans(piece, 0, layout.piece_len(piece)),
            expected,
        });
    }
    let mut pieces = vec![false; n as usize];
    let mut done = 0usize;
    let mut completions = Vec::new();
    while done < pieces.len() {
        pool.wait(&mut completions, None);
        for c in completions.drain(..) {
            let Completion::Disk { op, result } = c else {
                continue;
            };
            let Some(slot) = usize::try_from(op.0).ok().and_then(|i| pieces.get_mut(i)) else {
                continue;
            };
            done += 1;
            progress.inc(1);
            match result {
                DiskResult::Ok => *slot = true,
                DiskResult::HashMismatch | DiskResult::Data(_) => {}
                DiskResult::Error(e) => {
                    pool.abandon();
                    return Err(Error::Disk(e));
                }
            }
        }
    }
    let files = meta
        .info
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.padding)
        .map(|(i, f)| {
            let range = layout.file_pieces(i);
            let complete = if range.is_empty() {
                storage.exists(i)
            } else {
                range.into_iter().all(|p| pieces[p as usize])
            };
            (f.path.join("/"), complete)
        })
        .collect();
    Ok(VerifyReport { pieces, files })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::testutil::{TestTorrent, torrent};

    fn write_files(t: &TestTorrent, root: &std::path::Path) {
        for (i, f) in t.meta.info.files.iter().enumerate() {
            if f.padding {
                continue;
            }
            let path = f.path.iter().fold(root.to_path_buf(), |p, c| p.join(c));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, t.file(i)).unwrap();
        }
    }

    fn check(t: &TestTorrent, root: &std::path::Path) -> VerifyReport {
        let storage = Arc::new(Storage::new(root, t.meta.clone()).unwrap());
        let pool = DiskPool::new(3, Arc::new(|| {})).unwrap();
        verify(&t.meta, &storage, &pool, &PieceProgress::new(true, "", 0)).unwrap()
    }

    #[test]
    fn complete_then_damaged_data() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent(
            "v",
            &[
                ("a", 20_000, false),
                ("pad", 12_768, true),
                ("b", 40_000, false),
                ("z", 0, false),
                ("c", 5_000, false),
            ],
            16384,
        );
        write_files(&t, dir.path());
        let r = check(&t, dir.path());
        assert!(r.complete(), "{}", r.text());
        assert_eq!(r.pieces_ok(), t.meta.num_pieces() as usize);
        assert_eq!(
            r.text(),
            "pieces: 5 of 5 complete\nfiles:\n  complete    v/a\n  complete    v/b\n  complete    v/z\n  complete    v/c\n"
        );

        // Damage one byte of b in piece 3 (b spans pieces 2..5), remove z, truncate c.
        let b = dir.path().join("v/b");
        let mut bytes = fs::read(&b).unwrap();
        bytes[20_000] ^= 0xff;
        fs::write(&b, bytes).unwrap();
        fs::remove_file(dir.path().join("v/z")).unwrap();
        let r = check(&t, dir.path());
        assert!(!r.complete());
        assert_eq!(r.pieces, vec![true, true, true, false, true]);
        assert_eq!(
            r.files,
            vec![
                ("v/a".to_string(), true),
                ("v/b".to_string(), false),
                ("v/z".to_string(), false),
                ("v/c".to_string(), true),
            ]
        );
    }

    #[test]
    fn nothing_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent("single", &[("", 70_000, false)], 32768);
        let r = check(&t, dir.path());
        assert_eq!(r.pieces, vec![false; 3]);
        assert_eq!(r.files, vec![("single".to_string(), false)]);
        assert_eq!(
            r.text(),
            "pieces: 0 of 3 complete\nfiles:\n  incomplete  single\n"
        );
    }
}
