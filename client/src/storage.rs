//! A torrent's files on disk: the disk actions of the core (`Write`, `Verify`, `Read`).
//!
//! Files live at `root/<path components>` (the metainfo's validated paths, which start with
//! the torrent's name). Nothing is allocated eagerly: `prepare` makes directories and
//! zero-length files, and data files are created sparse on their first write, with
//! positioned writes wherever the blocks land. BEP 47 padding files are never touched on
//! disk and read as zeros.
//!
//! With a file selection (`download --only`), files not chosen are never created or
//! written. The pieces the core fetches for a chosen file's edges also hold bytes of its
//! neighbours; those bytes go to a sparse *part file* (`DIR/.tessera/<info hash>.parts`, at
//! their offset in the torrent) so that such pieces can still be checked from disk.
//!
//! A `Storage` is shared by the disk pool's threads: every operation takes `&self`, uses
//! positioned I/O (`pread`/`pwrite`), and open file handles are cached. [`Storage::sync`]
//! makes every write so far durable (for resume data).
//!
//! Written data is flushed as the download goes, not only when resume data is saved:
//! once [`WRITEBACK_EVERY`] bytes were written since the last flush, the disk pool calls
//! [`Storage::writeback`] after the write, which fsyncs the files written since, on that
//! worker's thread while the others go on. Without it most of a fast download is still
//! dirty in the page cache when it ends (the kernel starts writing back on its own only
//! after 30 s, or past a tenth of the memory), and the last `fdatasync` writes it all back
//! while the user waits (1.75 s of a 5.2 s download of 1 GiB on the development machine).

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use sha1::{Digest, Sha1};
use tessera_core::metainfo::Metainfo;
use tessera_core::{DiskError, DiskErrorKind, DiskResult, FileSpan};

use crate::error::Error;

mod file_state;

pub use file_state::{FileState, Mtime};

/// The directory inside the output directory that holds the part file and resume data.
pub const DIR_NAME: &str = ".tessera";

/// Where the part file lives: the bytes of files not chosen with `--only` that share a
/// piece with a chosen file (see the module docs).
pub fn part_path(dir: &Path, info_hash_hex: &str) -> PathBuf {
    dir.join(DIR_NAME).join(format!("{info_hash_hex}.parts"))
}

/// Open handles kept per torrent. Past this the cache is emptied (handles in use stay
/// open until their operation ends), which bounds descriptors for torrents of many files.
const MAX_OPEN_FILES: usize = 128;

/// Bytes read at a time when hashing.
const HASH_CHUNK: usize = 1 << 20;

/// Bytes written after which [`Storage::writeback`] flushes them (see the module docs).
/// Smaller means more journal commits; larger, more left for the run's last flush.
pub const WRITEBACK_EVERY: u64 = 32 << 20;

#[derive(Debug)]
struct StorageFile {
    path: PathBuf,
    length: u64,
    padding: bool,
    executable: bool,
    /// Offset of the file's first byte in the torrent.
    start: u64,
    /// Not chosen for download: its bytes live in the part file.
    skipped: bool,
}

/// The handle-cache key of the part file.
const PART: usize = usize::MAX;

#[derive(Debug, Clone)]
struct Handle {
    file: Arc<File>,
    writable: bool,
}

/// Why bytes could not be read.
enum ReadFail {
    /// The file does not exist.
    Missing(PathBuf),
    /// The file ends before the span does.
    Short(PathBuf),
    Io(DiskError),
}

impl ReadFail {
    /// As an error: for reads that must succeed (uploads, `create`).
    fn into_error(self) -> DiskError {
        match self {
            ReadFail::Missing(path) => DiskError {
                kind: DiskErrorKind::NotFound,
                message: format!("reading {}: file does not exist", path.display()),
            },
            ReadFail::Short(path) => DiskError {
                kind: DiskErrorKind::Other,
                message: format!(
                    "reading {}: file is shorter than expected (changed on disk?)",
                    path.display()
                ),
            },
            ReadFail::Io(e) => e,
        }
    }
}

#[derive(Debug)]
pub struct Storage {
    files: Vec<StorageFile>,
    /// Where the bytes of skipped files go (set when some file is skipped).
    part: Option<PathBuf>,
    handles: Mutex<HashMap<usize, Handle>>,
    /// Files (and [`PART`]) written since the last [`Storage::sync`].
    dirty: Mutex<BTreeSet<usize>>,
    /// Held through a whole sync: a sync that starts while another runs waits for it, so
    /// that it never returns while writes it must cover are still being flushed by the
    /// other (which took them out of `dirty`).
    syncing: Mutex<()>,
    /// Bytes written since a sync last started; see [`Storage::writeback`].
    unflushed: AtomicU64,
    /// From [`WRITEBACK_EVERY`] (smaller in tests).
    writeback_every: u64,
    /// A failed background flush: every later [`Storage::sync`] fails with it. The kernel
    /// reports a failed writeback to one `fsync` only, and the data it lost may be gone
    /// from the page cache, so a later `fsync` that succeeds proves nothing.
    writeback_failed: Mutex<Option<DiskError>>,
}

impl Storage {
    /// The storage of `meta`'s files under `root`. Refuses (rather than trusts) any path
    /// component that could lead outside `root`, although metainfo parsing rejects those.
    pub fn new(root: impl Into<PathBuf>, meta: Arc<Metainfo>) -> Result<Storage, Error> {
        Storage::with_selection(root, meta, None, None)
    }

    /// Like [`Storage::new`], with only the files marked in `chosen` (one flag per file of
    /// the torrent) created and written; the bytes of the others go to `part` (a file
    /// path; required when some file is not chosen).
    pub fn with_selection(
        root: impl Into<PathBuf>,
        meta: Arc<Metainfo>,
        chosen: Option<&[bool]>,
        part: Option<PathBuf>,
    ) -> Result<Storage, Error> {
        let root = root.into();
        if chosen.is_some_and(|c| c.len() != meta.info.files.len()) {
            return Err(Error::other(
                "internal error: file selection does not match the torrent",
            ));
        }
        let layout = meta.layout();
        if meta.info.files.len() != layout.num_files() {
            return Err(Error::other(format!(
                "torrent lists {} files but its layout has {}",
                meta.info.files.len(),
                layout.num_files()
            )));
        }
        let mut files = Vec::with_capacity(meta.info.files.len());
        let mut start = 0u64;
        for (i, entry) in meta.info.files.iter().enumerate() {
            let path = join_under(&root, &entry.path).ok_or_else(|| {
                Error::other(format!(
                    "refusing unsafe file path {:?} in the torrent",
                    entry.path.join("/")
                ))
            })?;
            if entry.length != layout.file_len(i) {
                return Err(Error::other(format!(
                    "file {} has length {} but the layout says {}",
                    path.display(),
                    entry.length,
                    layout.file_len(i)
                )));
            }
            let skipped = !entry.padding && chosen.is_some_and(|c| !c[i]);
            files.push(StorageFile {
                path,
                length: entry.length,
                padding: entry.padding,
                executable: entry.executable,
                start,
                skipped,
            });
            start += entry.length;
        }
        let mut storage = Storage::from_files(files);
        if storage.files.iter().any(|f| f.skipped) {
            storage.part = Some(part.ok_or_else(|| {
                Error::other("internal error: a file selection needs a part file")
            })?);
        }
        Ok(storage)
    }

    /// Storage over arbitrary existing files laid end to end (for `create`, which hashes
    /// data that is not described by a torrent yet).
    pub fn from_paths(files: impl IntoIterator<Item = (PathBuf, u64)>) -> Storage {
        let mut start = 0;
        Storage::from_files(
            files
                .into_iter()
                .map(|(path, length)| {
                    let f = StorageFile {
                        path,
                        length,
                        padding: false,
                        executable: false,
                        start,
                        skipped: false,
                    };
                    start += length;
                    f
                })
                .collect(),
        )
    }

    fn from_files(files: Vec<StorageFile>) -> Storage {
        Storage {
            files,
            part: None,
            handles: Mutex::new(HashMap::new()),
            dirty: Mutex::new(BTreeSet::new()),
            syncing: Mutex::new(()),
            unflushed: AtomicU64::new(0),
            writeback_every: WRITEBACK_EVERY,
            writeback_failed: Mutex::new(None),
        }
    }

    /// Flushes after every `bytes` written instead of [`WRITEBACK_EVERY`] (for tests).
    pub fn with_writeback_every(mut self, bytes: u64) -> Storage {
        self.writeback_every = bytes.max(1);
        self
    }

    /// Where file `file` lives.
    pub fn path(&self, file: usize) -> Option<&Path> {
        self.files.get(file).map(|f| f.path.as_path())
    }

    /// True when file `file` exists on disk (padding files always "exist").
    pub fn exists(&self, file: usize) -> bool {
        self.files
            .get(file)
            .is_some_and(|f| f.padding || f.path.is_file())
    }

    /// The state of each file for resume data: padding and zero-length files are not
    /// tracked, skipped files are `NotChosen`, the others as they are on disk.
    pub fn file_states(&self) -> Vec<FileState> {
        self.files
            .iter()
            .map(|f| {
                if f.padding || f.length == 0 {
                    FileState::Untracked
                } else if f.skipped {
                    FileState::NotChosen
                } else {
                    FileState::of_path(&f.path)
                }
            })
            .collect()
    }

    /// The part file's state (`Missing` when there is none).
    pub fn part_state(&self) -> FileState {
        self.part
            .as_deref()
            .map_or(FileState::Missing, FileState::of_path)
    }

    /// True when no byte of data has a place on disk yet: every tracked file and the part
    /// file are missing. Such a download starts from nothing without hashing.
    pub fn nothing_on_disk(&self) -> bool {
        self.file_states().iter().all(|s| {
            matches!(
                s,
                FileState::Missing | FileState::Untracked | FileState::NotChosen
            )
        }) && self.part_state() == FileState::Missing
    }

    /// Makes every write so far durable: fsyncs each file written since the last sync
    /// started, after waiting for a sync under way on another thread. Fails for good once
    /// a background flush ([`Storage::writeback`]) has failed.
    pub fn sync(&self) -> Result<(), DiskError> {
        let _syncing = self.syncing.lock().unwrap_or_else(PoisonError::into_inner);
        self.sync_dirty()?;
        match self.lock_failed().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// True when [`WRITEBACK_EVERY`] bytes were written since a sync last started.
    pub fn writeback_due(&self) -> bool {
        self.unflushed.load(Ordering::Relaxed) >= self.writeback_every
    }

    /// The background flush, run by a disk worker after a write: when
    /// [`Storage::writeback_due`] and no sync is under way, fsyncs the files written
    /// since the last sync. A failure is kept and fails every later [`Storage::sync`]
    /// (see `writeback_failed`), so resume data never lists data that did not reach
    /// the disk. Returns true when it flushed.
    pub fn writeback(&self) -> bool {
        if !self.writeback_due() {
            return false;
        }
        let Ok(_syncing) = self.syncing.try_lock() else {
            // Another worker is flushing; what it missed waits for the next one.
            return false;
        };
        if let Err(e) = self.sync_dirty() {
            tracing::warn!("flushing written data: {}", e.message);
            self.lock_failed().get_or_insert(e);
        }
        true
    }

    /// fsyncs each file written since this was last called. Called with `syncing` held.
    fn sync_dirty(&self) -> Result<(), DiskError> {
        self.unflushed.store(0, Ordering::Relaxed);
        let dirty = std::mem::take(&mut *self.lock_dirty());
        let mut result = Ok(());
        for (n, &index) in dirty.iter().enumerate() {
            let path = self.path_of(index);
            let synced = match self.lock_handles().get(&index).cloned() {
                Some(h) => h.file.sync_data(),
                // Evicted from the cache: a new descriptor syncs the same file.
                None => File::open(path).and_then(|f| f.sync_data()),
            };
            if let Err(e) = synced {
                // Still dirty: the next call tries again.
                self.lock_dirty().extend(dirty.iter().skip(n));
                result = Err(disk_error("syncing", path, &e));
                break;
            }
        }
        result
    }

    fn path_of(&self, index: usize) -> &Path {
        if index == PART {
            self.part.as_deref().unwrap_or(Path::new(""))
        } else {
            &self.files[index].path
        }
    }

    /// Creates every directory and every zero-length file of the chosen files; nothing
    /// else. What exists already is left alone (so that complete data on a read-only
    /// file system needs no write).
    pub fn prepare(&self) -> Result<(), Error> {
        for f in self.files.iter().filter(|f| !f.padding && !f.skipped) {
            if let Some(parent) = f.path.parent().filter(|p| !p.is_dir()) {
                fs::create_dir_all(parent).map_err(|e| Error::at("creating", parent, e))?;
            }
            if f.length == 0 && !f.path.is_file() {
                open_options(f.executable)
                    .open(&f.path)
                    .map_err(|e| Error::at("creating", &f.path, e))?;
            }
        }
        Ok(())
    }

    /// `Action::Write`: puts `data` (contiguous bytes) where `spans` say. With `expected`,
    /// `data` is a whole piece: it is hashed first and nothing is written on a mismatch.
    pub fn write(
        &self,
        piece: u32,
        offset: u32,
        data: &[Bytes],
        spans: &[FileSpan],
        expected: Option<[u8; 20]>,
    ) -> DiskResult {
        let data_len: u64 = data.iter().map(|d| d.len() as u64).sum();
        let span_len: u64 = spans.iter().map(|s| s.len).sum();
        if data_len != span_len {
            return internal(format!(
                "write of piece {piece} at {offset}: {data_len} bytes for spans of {span_len}"
            ));
        }
        if let Some(expected) = expected {
            let mut hasher = Sha1::new();
            for d in data {
                hasher.update(d);
            }
            if <[u8; 20]>::from(hasher.finalize()) != expected {
                return DiskResult::HashMismatch;
            }
        }
        let mut chunks = data.iter();
        let mut current: &[u8] = &[];
        for span in spans {
            let file = match self.file_for(span) {
                Ok(f) => f,
                Err(e) => return DiskResult::Error(e),
            };
            let (index, base) = self.place(file, span.file);
            let handle = if file.padding {
                None
            } else {
                match self.handle(index, true) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        return DiskResult::Error(disk_error("opening", self.path_of(index), &e));
                    }
                }
            };
            let mut pos = base + span.offset;
            let mut left = span.len;
            while left > 0 {
                while current.is_empty() {
                    match chunks.next() {
                        Some(c) => current = c,
                        // Lengths were checked above.
                        None => return internal("write ran out of data".to_string()),
                    }
                }
                let n = usize::try_from(left).map_or(current.len(), |l| l.min(current.len()));
                if let Some(h) = &handle
                    && let Err(e) = h.file.write_all_at(&current[..n], pos)
                {
                    return DiskResult::Error(disk_error("writing", self.path_of(index), &e));
                }
                current = &current[n..];
                pos += n as u64;
                left -= n as u64;
            }
            // Marked after the write, not before: a sync running meanwhile on another
            // worker would clear an earlier mark and miss these bytes.
            if handle.is_some() {
                self.lock_dirty().insert(index);
            }
        }
        self.unflushed.fetch_add(data_len, Ordering::Relaxed);
        DiskResult::Ok
    }

    /// `Action::Verify`: hashes the spans as they are on disk. Missing or short files are a
    /// mismatch, not an error.
    pub fn verify(&self, spans: &[FileSpan], expected: [u8; 20]) -> DiskResult {
        match self.hash_spans(spans) {
            Ok(hash) if hash == expected => DiskResult::Ok,
            Ok(_) | Err(ReadFail::Missing(_) | ReadFail::Short(_)) => DiskResult::HashMismatch,
            Err(ReadFail::Io(e)) => DiskResult::Error(e),
        }
    }

    /// The SHA-1 of the spans; any unreadable byte is an error.
    pub fn hash(&self, spans: &[FileSpan]) -> Result<[u8; 20], DiskError> {
        self.hash_spans(spans).map_err(ReadFail::into_error)
    }

    /// `Action::Read`: `len` bytes from the spans (which must cover exactly `len`).
    pub fn read(&self, spans: &[FileSpan], len: u32) -> DiskResult {
        let span_len: u64 = spans.iter().map(|s| s.len).sum();
        if span_len != u64::from(len) {
            return internal(format!("read of {len} bytes over spans of {span_len}"));
        }
        // Read into the unused capacity: the kernel fills it, nothing is zeroed first.
        let mut buf = Vec::with_capacity(len as usize);
        for span in spans {
            if let Err(e) = self.read_span_append(span, &mut buf) {
                return DiskResult::Error(e.into_error());
            }
        }
        DiskResult::Data(Bytes::from(buf))
    }

    fn hash_spans(&self, spans: &[FileSpan]) -> Result<[u8; 20], ReadFail> {
        let total: u64 = spans.iter().map(|s| s.len).sum();
        let chunk = usize::try_from(total).map_or(HASH_CHUNK, |t| t.min(HASH_CHUNK));
        // Filled by the reads themselves (never zeroed), emptied after each chunk.
        let mut buf = Vec::with_capacity(chunk);
        let mut hasher = Sha1::new();
        for span in spans {
            let mut pos = span.offset;
            let mut left = span.len;
            while left > 0 {
                let n = left.min(chunk as u64);
                let sub = FileSpan {
                    file: span.file,
                    offset: pos,
                    len: n,
                };
                buf.clear();
                self.read_span_append(&sub, &mut buf)?;
                hasher.update(&buf);
                pos += n;
                left -= n;
            }
        }
        Ok(hasher.finalize().into())
    }

    /// Appends the span's `span.len` bytes to `out`, read into its unused capacity (a read
    /// that goes on past the span, into capacity beyond it, is cut back).
    fn read_span_append(&self, span: &FileSpan, out: &mut Vec<u8>) -> Result<(), ReadFail> {
        let end = usize::try_from(span.len)
            .ok()
            .and_then(|len| out.len().checked_add(len))
            .ok_or_else(|| {
                ReadFail::Io(DiskError {
                    kind: DiskErrorKind::Other,
                    message: format!("internal error: a read of {} bytes", span.len),
                })
            })?;
        let Some((handle, mut pos, path)) = self.open_span(span)? else {
            out.resize(end, 0);
            return Ok(());
        };
        out.reserve(end - out.len());
        while out.len() < end {
            let before = out.len();
            match rustix::io::pread(&*handle.file, rustix::buffer::spare_capacity(out), pos) {
                Ok(0) => return Err(ReadFail::Short(path.to_path_buf())),
                Ok(_) => pos += (out.len() - before) as u64,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(ReadFail::Io(disk_error("reading", path, &e.into()))),
            }
        }
        out.truncate(end);
        Ok(())
    }

    /// The open file and position a span's bytes are at, with the file's path for
    /// messages; `None` for a padding file (zeros, never on disk).
    fn open_span(&self, span: &FileSpan) -> Result<Option<(Handle, u64, &Path)>, ReadFail> {
        let file = self.file_for(span).map_err(ReadFail::Io)?;
        if file.padding {
            return Ok(None);
        }
        let (index, base) = self.place(file, span.file);
        let path = self.path_of(index);
        match self.handle(index, false) {
            Ok(h) => Ok(Some((h, base + span.offset, path))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ReadFail::Missing(path.to_path_buf()))
            }
            Err(e) => Err(ReadFail::Io(disk_error("opening", path, &e))),
        }
    }

    /// Where the bytes of file `index` are: the file itself at offset 0, or for a skipped
    /// file the part file at the file's offset in the torrent.
    fn place(&self, file: &StorageFile, index: usize) -> (usize, u64) {
        if file.skipped && self.part.is_some() {
            (PART, file.start)
        } else {
            (index, 0)
        }
    }

    /// The file a span refers to, once the span is checked to lie inside it.
    fn file_for(&self, span: &FileSpan) -> Result<&StorageFile, DiskError> {
        let file = self.files.get(span.file).ok_or_else(|| DiskError {
            kind: DiskErrorKind::Other,
            message: format!("internal error: no file {} in this torrent", span.file),
        })?;
        match span.offset.checked_add(span.len) {
            Some(end) if end <= file.length => Ok(file),
            _ => Err(DiskError {
                kind: DiskErrorKind::Other,
                message: format!(
                    "internal error: {} bytes at {} lie outside {} ({} bytes)",
                    span.len,
                    span.offset,
                    file.path.display(),
                    file.length
                ),
            }),
        }
    }

    /// A cached handle for file `index`, opened read-write (creating the file and its
    /// directory if needed) when `write`, else at least read-only.
    fn handle(&self, index: usize, write: bool) -> io::Result<Handle> {
        if let Some(h) = self.lock_handles().get(&index)
            && (h.writable || !write)
        {
            return Ok(h.clone());
        }
        // Opened outside the lock: two threads may race to open the same file, which is
        // harmless (both handles are valid; the cache keeps one).
        let path = self.path_of(index);
        let executable = index != PART && self.files[index].executable;
        let opened = if write {
            match open_options(executable).open(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if let Some(parent) = path.parent() {
                        fs::create_dir_all(parent)?;
                    }
                    open_options(executable).open(path)?
                }
                other => other?,
            }
        } else {
            File::open(path)?
        };
        let handle = Handle {
            file: Arc::new(opened),
            writable: write,
        };
        let mut handles = self.lock_handles();
        if handles.len() >= MAX_OPEN_FILES {
            handles.clear();
        }
        handles.insert(index, handle.clone());
        Ok(handle)
    }

    fn lock_handles(&self) -> MutexGuard<'_, HashMap<usize, Handle>> {
        // The map stays consistent whatever panicked while holding it.
        self.handles.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_dirty(&self) -> MutexGuard<'_, BTreeSet<usize>> {
        self.dirty.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_failed(&self) -> MutexGuard<'_, Option<DiskError>> {
        self.writeback_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Read-write, created if missing, never truncated.
fn open_options(executable: bool) -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(if executable { 0o777 } else { 0o666 });
    o
}

/// `root` joined with `components`, if every component is a plain name (no separators,
/// no `.`/`..`, not empty) and the result is under `root`.
fn join_under(root: &Path, components: &[String]) -> Option<PathBuf> {
    if components.is_empty() {
        return None;
    }
    let mut path = root.to_path_buf();
    for c in components {
        let mut parts = Path::new(c).components();
        match (parts.next(), parts.next()) {
            (Some(Component::Normal(n)), None) if n == c.as_str() && !c.contains('\0') => {
                path.push(c)
            }
            _ => return None,
        }
    }
    path.starts_with(root).then_some(path)
}

/// Maps an io error to the core's kinds, with a message naming the file.
pub fn disk_error(doing: &str, path: &Path, e: &io::Error) -> DiskError {
    use io::ErrorKind as K;
    let kind = match e.kind() {
        K::StorageFull | K::QuotaExceeded => DiskErrorKind::NoSpace,
        K::PermissionDenied | K::ReadOnlyFilesystem => DiskErrorKind::PermissionDenied,
        K::NotFound => DiskErrorKind::NotFound,
        _ => DiskErrorKind::Other,
    };
    DiskError {
        kind,
        message: format!("{doing} {}: {e}", path.display()),
    }
}

fn internal(message: String) -> DiskResult {
    DiskResult::Error(DiskError {
        kind: DiskErrorKind::Other,
        message: format!("internal error: {message}"),
    })
}

#[cfg(test)]
mod tests;
