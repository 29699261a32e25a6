//! What a file looks like on disk, as far as resume data cares: there or not, its size and
//! its modification time.

use std::fmt;
use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// What is known about one file of the torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Never holds data that matters: a padding file or a zero-length file.
    Untracked,
    /// Not chosen for download: its bytes (of pieces shared with chosen files) are in the
    /// part file.
    NotChosen,
    Missing,
    Present {
        size: u64,
        mtime: Mtime,
    },
}

/// A modification time, to the nanosecond (as the file system keeps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mtime {
    pub secs: i64,
    pub nanos: u32,
}

impl Mtime {
    /// The Unix epoch: what is recorded for a file that has no modification time.
    pub const ZERO: Mtime = Mtime { secs: 0, nanos: 0 };

    fn of(t: SystemTime) -> Mtime {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Mtime {
                secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                // Before 1970: keep it distinct and ordered.
                let d = e.duration();
                let mut secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                let mut nanos = d.subsec_nanos();
                if nanos > 0 {
                    secs -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                Mtime { secs, nanos }
            }
        }
    }
}

impl FileState {
    /// The state of `path` on disk now (`Missing` if it cannot be examined).
    pub fn of_path(path: &Path) -> FileState {
        match fs::metadata(path) {
            Ok(m) if m.is_file() => FileState::Present {
                size: m.len(),
                mtime: m.modified().map(Mtime::of).unwrap_or(Mtime::ZERO),
            },
            _ => FileState::Missing,
        }
    }
}

/// In words, for the reason resume data is out of date ("12 bytes, modified at ...").
impl fmt::Display for FileState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileState::Untracked => f.write_str("not tracked"),
            FileState::NotChosen => f.write_str("not chosen"),
            FileState::Missing => f.write_str("missing"),
            FileState::Present { size, mtime } => write!(
                f,
                "{size} bytes, modified at {}.{:09}",
                mtime.secs, mtime.nanos
            ),
        }
    }
}
