//! `create`: make a `.torrent` from a file or a directory.
//!
//! A directory is walked recursively, files sorted by path (component by component,
//! comparing bytes), symbolic links skipped and anything else that is not a regular file
//! refused. Pieces are hashed across file boundaries on the disk pool, in parallel.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tessera_core::metainfo::NewTorrent;
use tessera_core::{Layout, Metainfo};

use crate::cli::CreateArgs;
use crate::error::Error;
use crate::exit::Exit;
use crate::pool::{Completion, DiskPool, Job};
use crate::storage::Storage;
use crate::ui::{PieceProgress, human_size};

/// Default piece sizes stay within these bounds.
const MIN_DEFAULT_PIECE: u64 = 16 << 10;
const MAX_DEFAULT_PIECE: u64 = 16 << 20;
/// The default piece size is the smallest power of two giving at most this many pieces.
const TARGET_MAX_PIECES: u64 = 2000;

/// One file to include.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path components below the torrent's name (empty for a single-file torrent).
    pub rel: Vec<String>,
    /// Where it is now.
    pub path: PathBuf,
    pub length: u64,
}

/// What a torrent will be made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    /// True when PATH was a single file (no `files` list in the torrent).
    pub single_file: bool,
    /// In torrent order.
    pub files: Vec<SourceFile>,
}

impl Source {
    pub fn total_length(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }
}

/// A power of two between 16 KiB and 16 MiB giving about 1000 to 2000 pieces.
pub fn default_piece_size(total: u64) -> u32 {
    let size = total
        .div_ceil(TARGET_MAX_PIECES)
        .max(1)
        .next_power_of_two()
        .clamp(MIN_DEFAULT_PIECE, MAX_DEFAULT_PIECE);
    // At most 16 MiB.
    u32::try_from(size).unwrap_or(1 << 24)
}

/// Finds the files under `path`.
pub fn scan(path: &Path) -> Result<Source, Error> {
    let meta = fs::metadata(path).map_err(|e| Error::at("reading", path, e))?;
    let canonical = fs::canonicalize(path).map_err(|e| Error::at("resolving", path, e))?;
    let name = canonical.file_name().ok_or_else(|| {
        Error::other(format!(
            "{} has no name to give the torrent",
            path.display()
        ))
    })?;
    let name = utf8(name, &canonical)?;
    let source = if meta.is_file() {
        check_readable(path)?;
        Source {
            name,
            single_file: true,
            files: vec![SourceFile {
                rel: vec![],
                path: path.to_path_buf(),
                length: meta.len(),
            }],
        }
    } else if meta.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut Vec::new(), &mut files)?;
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        if files.is_empty() {
            return Err(Error::other(format!(
                "{} contains no files",
                path.display()
            )));
        }
        Source {
            name,
            single_file: false,
            files,
        }
    } else {
        return Err(Error::other(format!(
            "{} is neither a regular file nor a directory",
            path.display()
        )));
    };
    if source.total_length() == 0 {
        return Err(Error::other(format!(
            "{}: nothing to share, every file is empty",
            path.display()
        )));
    }
    Ok(source)
}

fn walk(dir: &Path, rel: &mut Vec<String>, out: &mut Vec<SourceFile>) -> Result<(), Error> {
    let entries = fs::read_dir(dir).map_err(|e| Error::at("reading directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::at("reading directory", dir, e))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| Error::at("reading", &path, e))?;
        let name = utf8(&entry.file_name(), &path)?;
        if kind.is_symlink() {
            tracing::info!("skipping symbolic link {}", path.display());
        } else if kind.is_dir() {
            rel.push(name);
            walk(&path, rel, out)?;
            rel.pop();
        } else if kind.is_file() {
            check_readable(&path)?;
            let length = entry
                .metadata()
                .map_err(|e| Error::at("reading", &path, e))?
                .len();
            let mut file_rel = rel.clone();
            file_rel.push(name);
            out.push(SourceFile {
                rel: file_rel,
                path,
                length,
            });
        } else {
            return Err(Error::other(format!(
                "{} is not a regular file (a device, socket or pipe cannot go in a torrent)",
                path.display()
            )));
        }
    }
    Ok(())
}

fn utf8(name: &std::ffi::OsStr, path: &Path) -> Result<String, Error> {
    name.to_str()
        .map(str::to_string)
        .ok_or_else(|| Error::other(format!("{}: file name is not valid UTF-8", path.display())))
}

fn check_readable(path: &Path) -> Result<(), Error> {
    File::open(path)
        .map(drop)
        .map_err(|e| Error::at("cannot read", path, e))
}

/// The SHA-1 of every piece of `source` cut into `piece_len` pieces.
pub fn hash_pieces(
    source: &Source,
    piece_len: u32,
    pool: &DiskPool,
    progress: &PieceProgress,
) -> Result<Vec<[u8; 20]>, Error> {
    let layout = Layout::new(piece_len, source.files.iter().map(|f| f.length))
        .map_err(|e| Error::other(format!("cannot lay out the files: {e}")))?;
    let storage = Arc::new(Storage::from_paths(
        source.files.iter().map(|f| (f.path.clone(), f.length)),
    ));
    let n = layout.num_pieces();
    for piece in 0..n {
        pool.submit(Job::Hash {
            tag: u64::from(piece),
            storage: storage.clone(),
            spans: layout.spans(piece, 0, layout.piece_len(piece)),
        });
    }
    let mut hashes: Vec<Option<[u8; 20]>> = vec![None; n as usize];
    let mut left = hashes.len();
    let mut completions = Vec::new();
    while left > 0 {
        pool.wait(&mut completions, None);
        for c in completions.drain(..) {
            let Completion::Hashed { tag, result } = c else {
                continue;
            };
            let Some(slot) = usize::try_from(tag).ok().and_then(|i| hashes.get_mut(i)) else {
                continue;
            };
            match result {
                Ok(h) => {
                    if slot.replace(h).is_none() {
                        left -= 1;
                        progress.inc(1);
                    }
                }
                Err(e) => {
                    pool.abandon();
                    return Err(Error::Disk(e));
                }
            }
        }
    }
    Ok(hashes.into_iter().flatten().collect())
}

/// Scans, hashes and describes the torrent to write.
pub fn build(args: &CreateArgs, pool: &DiskPool, quiet: bool) -> Result<NewTorrent, Error> {
    let source = scan(&args.path)?;
    let total = source.total_length();
    let piece_length = args.piece_size.unwrap_or_else(|| default_piece_size(total));
    let progress = PieceProgress::new(quiet, "hashing", total.div_ceil(u64::from(piece_length)));
    let pieces = hash_pieces(&source, piece_length, pool, &progress);
    progress.finish();
    let pieces = pieces?;
    let creation_date = if args.no_date {
        None
    } else {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok())
    };
    let (files, length) = if source.single_file {
        (vec![], total)
    } else {
        (
            source
                .files
                .iter()
                .map(|f| (f.rel.clone(), f.length))
                .collect(),
            0,
        )
    };
    Ok(NewTorrent {
        name: source.name,
        files,
        length,
        piece_length,
        pieces,
        private: args.private,
        trackers: args.trackers.iter().map(|t| vec![t.clone()]).collect(),
        comment: args.comment.clone(),
        created_by: Some(format!("Tessera {}", env!("CARGO_PKG_VERSION"))),
        creation_date,
    })
}

pub fn run(args: &CreateArgs, quiet: bool) -> Result<Exit, Error> {
    let pool = DiskPool::blocking().map_err(|e| Error::io("starting disk threads", e))?;
    let torrent = build(args, &pool, quiet)?;
    let bytes = torrent.encode();
    // Parse what we made: the info hash to print, and a check that it is valid.
    let meta = Metainfo::from_bytes(&bytes).map_err(|e| {
        Error::other(format!(
            "internal error: the torrent made does not parse: {e}"
        ))
    })?;
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.torrent", torrent.name)));
    write_output(&out, &bytes, args.force)?;
    if !quiet {
        crate::output::line(&format!(
            "{}: {} in {} file{}, {} pieces of {}, info hash {}",
            out.display(),
            human_size(meta.total_length()),
            meta.info.files.len(),
            if meta.info.files.len() == 1 { "" } else { "s" },
            meta.num_pieces(),
            human_size(u64::from(meta.info.piece_length)),
            meta.info_hash
        ));
    }
    Ok(Exit::Success)
}

fn write_output(out: &Path, bytes: &[u8], force: bool) -> Result<(), Error> {
    let mut options = OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::other(format!(
                "{} exists already (use --force to overwrite it)",
                out.display()
            ))
        } else {
            Error::at("creating", out, e)
        }
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::at("writing", out, e))
}

#[cfg(test)]
mod tests;
