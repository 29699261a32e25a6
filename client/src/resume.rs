//! Resume data: which pieces were verified on disk, and the state of the files when that
//! was true, so that a download started again with the same command neither hashes its
//! data again nor fetches a verified piece twice.
//!
//! The file is `DIR/.tessera/<info hash>.resume` (`DIR` is `download -o`). It is binary,
//! big-endian:
//!
//! ```text
//! "TSRESUME"                       magic, 8 bytes
//! u32 version                      1
//! [20] info hash
//! u32 pieces, u32 files            must match the torrent
//! per file, 21 bytes:              u8 state: 0 untracked (padding or empty), 1 not chosen
//!                                  (--only), 2 missing, 3 present; then u64 size,
//!                                  i64 mtime seconds, u32 mtime nanoseconds (0 unless present)
//! the part file, 21 bytes          state 2 or 3, as above
//! u32 bitfield bytes, bitfield     verified pieces, BitTorrent bit order
//! [20] SHA-1 of everything above   so that a torn or corrupted file is refused
//! ```
//!
//! All resume files of a torrent have the same length, which lets a save on a full disk
//! overwrite the old file in place ([`write_resume`]).
//!
//! It is written atomically (a temporary file, fsync, rename over the old one, fsync of
//! the directory), after the data files were fsynced, so that the pieces it lists are on
//! stable storage whenever it exists. It is trusted only when every file it describes has
//! exactly the recorded size and modification time: a download killed after the last save
//! has written since (newer modification times), and then the data is hashed again, which
//! finds every piece written before the kill. See [`Startup`] for the whole decision.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};
use tessera_core::{Bitfield, Layout, Metainfo};

use crate::storage::{DIR_NAME, FileState, Mtime, Storage};

const MAGIC: &[u8; 8] = b"TSRESUME";
/// The format version written and the only one read.
pub const VERSION: u32 = 1;
/// A resume file larger than this is not read (the largest torrent has fewer pieces and
/// files than would need it).
const MAX_LEN: u64 = 64 << 20;

/// Where the resume file of the torrent with `info_hash` (hex) lives under `dir`.
pub fn resume_path(dir: &Path, info_hash_hex: &str) -> PathBuf {
    dir.join(DIR_NAME).join(format!("{info_hash_hex}.resume"))
}

/// The contents of a resume file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeData {
    pub info_hash: [u8; 20],
    /// Verified pieces.
    pub have: Bitfield,
    /// One per file of the torrent, in order.
    pub files: Vec<FileState>,
    /// The part file (`Missing` when nothing was written there).
    pub part: FileState,
}

/// Why a resume file was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// There is none.
    Missing,
    /// It cannot be read.
    Unreadable(String),
    /// Not a resume file, a torn or corrupted one, or one of another version.
    Invalid(String),
    /// It belongs to another torrent (or to a torrent with the same info hash but another
    /// shape, which cannot be).
    Foreign(String),
    /// The files changed since it was written (a run that wrote more, then was killed; or
    /// someone else's change).
    Stale(String),
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::Missing => write!(f, "no resume data"),
            Rejected::Unreadable(m) => write!(f, "resume data unreadable: {m}"),
            Rejected::Invalid(m) => write!(f, "resume data invalid: {m}"),
            Rejected::Foreign(m) => write!(f, "resume data is for another torrent: {m}"),
            Rejected::Stale(m) => write!(f, "resume data out of date: {m}"),
        }
    }
}

impl ResumeData {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.files.len() * 21 + self.have.len() / 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&self.info_hash);
        out.extend_from_slice(&u32_of(self.have.len()).to_be_bytes());
        out.extend_from_slice(&u32_of(self.files.len()).to_be_bytes());
        for f in &self.files {
            encode_state(&mut out, f);
        }
        encode_state(&mut out, &self.part);
        let bits = self.have.to_bytes();
        out.extend_from_slice(&u32_of(bits.len()).to_be_bytes());
        out.extend_from_slice(&bits);
        let sum: [u8; 20] = Sha1::digest(&out).into();
        out.extend_from_slice(&sum);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<ResumeData, Rejected> {
        let invalid = |m: &str| Rejected::Invalid(m.to_string());
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(invalid("not a Tessera resume file"));
        }
        if bytes.len() < MAGIC.len() + 4 + 20 {
            return Err(invalid("truncated"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 20);
        let mut r = Reader { bytes: body, at: 0 };
        r.take(MAGIC.len())?;
        let version = r.u32()?;
        if version != VERSION {
            return Err(Rejected::Invalid(format!(
                "format version {version}, this program reads version {VERSION}"
            )));
        }
        if <[u8; 20]>::from(Sha1::digest(body)) != sum {
            return Err(invalid("checksum mismatch (truncated or corrupted)"));
        }
        let mut info_hash = [0u8; 20];
        info_hash.copy_from_slice(r.take(20)?);
        let pieces = r.u32()? as usize;
        let nfiles = r.u32()? as usize;
        if nfiles > body.len() {
            return Err(invalid("file count larger than the file"));
        }
        let mut files = Vec::with_capacity(nfiles);
        for _ in 0..nfiles {
            files.push(r.state()?);
        }
        let part = r.state()?;
        let nbits = r.u32()? as usize;
        let bits = r.take(nbits)?;
        let have = Bitfield::from_bytes(bits, pieces)
            .map_err(|e| Rejected::Invalid(format!("bitfield: {e:?}")))?;
        if r.at != body.len() {
            return Err(invalid("trailing bytes"));
        }
        Ok(ResumeData {
            info_hash,
            have,
            files,
            part,
        })
    }

    /// Reads the resume file at `path`.
    pub fn load(path: &Path) -> Result<ResumeData, Rejected> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Rejected::Missing),
            Err(e) => return Err(Rejected::Unreadable(format!("{}: {e}", path.display()))),
        };
        let mut bytes = Vec::new();
        file.take(MAX_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Rejected::Unreadable(format!("{}: {e}", path.display())))?;
        if bytes.len() as u64 > MAX_LEN {
            return Err(Rejected::Invalid("too large".into()));
        }
        ResumeData::decode(&bytes)
    }

    /// The verified pieces to start from, if this data describes `meta`'s files as they
    /// are now (`current`, one state per file, and the part file's). Pieces of files
    /// whose choice changed (now chosen but not then, or the reverse: their bytes are
    /// elsewhere now) are left out; they will be fetched again.
    pub fn usable_have(
        &self,
        meta: &Metainfo,
        current: &[FileState],
        current_part: FileState,
    ) -> Result<Bitfield, Rejected> {
        if self.info_hash != meta.info_hash.0 {
            return Err(Rejected::Foreign(format!(
                "info hash {}",
                hex(&self.info_hash)
            )));
        }
        let layout = meta.layout();
        if self.have.len() != layout.num_pieces() as usize || self.files.len() != current.len() {
            return Err(Rejected::Foreign(format!(
                "{} pieces and {} files, the torrent has {} and {}",
                self.have.len(),
                self.files.len(),
                layout.num_pieces(),
                current.len()
            )));
        }
        let mut have = self.have.clone();
        let mut part_used = false;
        for (i, (then, now)) in self.files.iter().zip(current).enumerate() {
            let name = || meta.info.files[i].path.join("/");
            match (then, now) {
                (FileState::Untracked, FileState::Untracked) => {}
                (FileState::Untracked, _) | (_, FileState::Untracked) => {
                    return Err(Rejected::Foreign(format!("file {} changed kind", name())));
                }
                (FileState::NotChosen, FileState::NotChosen) => part_used = true,
                (FileState::NotChosen, _) | (_, FileState::NotChosen) => {
                    clear_file(&mut have, layout, i);
                }
                (then, now) if then == now => {
                    if *then == FileState::Missing
                        && layout.file_pieces(i).any(|p| have.get(p as usize))
                    {
                        return Err(Rejected::Invalid(format!(
                            "pieces of the missing file {} are listed as verified",
                            name()
                        )));
                    }
                }
                (then, now) => return Err(Rejected::Stale(change(&name(), *then, *now))),
            }
        }
        if part_used && self.part != current_part {
            return Err(Rejected::Stale(change(
                "the part file",
                self.part,
                current_part,
            )));
        }
        Ok(have)
    }
}

/// How file `name` changed since resume data recorded it `then`, in words: what a reader
/// needs to know is that it was written (or removed) after the last save, not the
/// timestamps.
fn change(name: &str, then: FileState, now: FileState) -> String {
    use crate::ui::human_size;
    match (then, now) {
        (FileState::Present { size, .. }, FileState::Missing) => {
            format!("{name} is gone (it had {})", human_size(size))
        }
        (FileState::Missing, FileState::Present { size, .. }) => {
            format!(
                "{name} was created after the last save ({})",
                human_size(size)
            )
        }
        (FileState::Present { size: a, .. }, FileState::Present { size: b, .. }) if a != b => {
            format!(
                "{name} changed size after the last save ({}, was {})",
                human_size(b),
                human_size(a)
            )
        }
        (FileState::Present { mtime: a, .. }, FileState::Present { mtime: b, .. }) => format!(
            "{name} was written after the last save (modified {}, saved as of {})",
            mtime_utc(b),
            mtime_utc(a)
        ),
        (then, now) => format!("{name} is {now}, was {then}"),
    }
}

/// A modification time as a UTC date, to the second.
fn mtime_utc(m: crate::storage::Mtime) -> String {
    crate::ui::format_utc(m.secs)
}

/// Clears the pieces holding bytes of file `i`.
fn clear_file(have: &mut Bitfield, layout: &Layout, i: usize) {
    for p in layout.file_pieces(i) {
        have.clear(p as usize);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn encode_state(out: &mut Vec<u8>, s: &FileState) {
    let (kind, size, mtime) = match s {
        FileState::Untracked => (0, 0, Mtime::ZERO),
        FileState::NotChosen => (1, 0, Mtime::ZERO),
        FileState::Missing => (2, 0, Mtime::ZERO),
        FileState::Present { size, mtime } => (3, *size, *mtime),
    };
    out.push(kind);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&mtime.secs.to_be_bytes());
    out.extend_from_slice(&mtime.nanos.to_be_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Rejected> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| Rejected::Invalid("truncated".into()))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Rejected> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, Rejected> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn state(&mut self) -> Result<FileState, Rejected> {
        let kind = self.take(1)?[0];
        let size = u64::from_be_bytes(self.array()?);
        let secs = i64::from_be_bytes(self.array()?);
        let nanos = u32::from_be_bytes(self.array()?);
        Ok(match kind {
            0 => FileState::Untracked,
            1 => FileState::NotChosen,
            2 => FileState::Missing,
            3 if nanos < 1_000_000_000 => FileState::Present {
                size,
                mtime: Mtime { secs, nanos },
            },
            3 => return Err(Rejected::Invalid("bad modification time".into())),
            other => return Err(Rejected::Invalid(format!("unknown file state {other}"))),
        })
    }
}

/// How a download starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// No data on disk (and no usable resume data): every piece to fetch, nothing to hash.
    Fresh,
    /// The resume data matches the files: these pieces are verified.
    Resume(Bitfield),
    /// Hash what is on disk first (the core's check), for this reason.
    Check(String),
}

/// Decides how a download of `meta` into `storage` starts: `--recheck` hashes; usable
/// resume data at `path` is trusted; otherwise data on disk is hashed, and a directory
/// without any of the torrent's data starts fresh.
pub fn startup(meta: &Metainfo, storage: &Storage, path: &Path, recheck: bool) -> Startup {
    if recheck {
        return Startup::Check("--recheck".into());
    }
    let loaded = ResumeData::load(path)
        .and_then(|r| r.usable_have(meta, &storage.file_states(), storage.part_state()));
    match loaded {
        Ok(have) => Startup::Resume(have),
        Err(_) if storage.nothing_on_disk() => Startup::Fresh,
        Err(e) => Startup::Check(e.to_string()),
    }
}

/// Saves resume data saying `have` is verified: makes the data durable first
/// ([`Storage::sync`]), then records the files as they are and writes the resume file
/// atomically. Run it after every write of the pieces in `have` has completed.
pub fn save(
    storage: &Storage,
    path: &Path,
    info_hash: [u8; 20],
    have: Bitfield,
) -> Result<(), String> {
    storage.sync().map_err(|e| e.message)?;
    let data = ResumeData {
        info_hash,
        have,
        files: storage.file_states(),
        part: storage.part_state(),
    };
    write_resume(path, &data.encode()).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// [`write_atomically`], except on a full disk: then an existing resume file of the same
/// length (a torrent's resume files all have one length) is overwritten in place, which
/// needs no new space. A write torn by a crash then fails the checksum and the data is
/// hashed next time, so this is as safe, only less tidy.
pub fn write_resume(path: &Path, bytes: &[u8]) -> io::Result<()> {
    match write_atomically(path, bytes) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            ) && fs::metadata(path).is_ok_and(|m| m.len() == bytes.len() as u64) =>
        {
            use std::os::unix::fs::FileExt;
            let f = OpenOptions::new().write(true).open(path)?;
            f.write_all_at(bytes, 0)?;
            f.sync_data()
        }
        other => other,
    }
}

/// Writes `bytes` to `path` atomically: a temporary file next to it, fsynced, renamed over
/// `path`, then the directory fsynced. Creates the directory if needed. On any failure the
/// old file (if any) is left as it was.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"))?;
    fs::create_dir_all(dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests;
