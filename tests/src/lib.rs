//! The end-to-end harness: Tessera's binaries against real BitTorrent clients on loopback.
//!
//! - [`process`]: spawned processes with captured output, bounded waits, stop-by-PID on drop;
//!   free loopback ports.
//! - [`bins`]: finding (building once per process) `tessera-mio` / `tessera-smol`.
//! - [`data`]: deterministic pseudo-random file sets and byte-for-byte tree comparison.
//! - [`bencode`], [`torrent`]: torrents made with mktorrent or by hand, parsed by the harness's
//!   own code (info hash included) so the tests never trust the code under test.
//! - [`tracker`]: Debian's opentracker. [`libtorrent`], [`aria2`], [`transmission`]: real
//!   clients as seeders and leechers. [`scripted_peer`]: a corrupting seeder in plain std.
//!   [`scripted_leecher`]: a polite or hostile (flooding, out-of-range, oversized) leecher.
//! - [`process::RssSampler`]: a process's peak resident memory (`VmHWM`) from `/proc`.
//! - [`fake_tracker`]: an HTTP tracker with canned (hostile) answers; [`hostile_peer`]: a peer
//!   Tessera dials that floods requests or sends a 4 GiB length prefix.
//! - [`resume_file`]: Tessera's resume files read independently; [`mounts`]: full and
//!   read-only directories as root; [`lt_create`]: torrents with BEP 47 padding files.
//! - [`lt_dht`]: a small DHT of libtorrent sessions on loopback, one of them seeding.
//! - [`mse_peer`]: a blocking peer that opens connections with tessera-core's MSE handshake
//!   machines and fetches checked blocks through the negotiated cipher.
//!
//! Every end-to-end test takes [`serial()`] first: the machines have two cores, and two swarms
//! at once would make both slow and flaky. Set `TESSERA_E2E_KEEP=1` to keep a failed test's
//! temporary directory (data, torrents, every process's stdout/stderr).

pub mod aria2;
pub mod bencode;
pub mod bins;
pub mod data;
pub mod fake_tracker;
pub mod hostile_peer;
pub mod libtorrent;
pub mod lt_create;
pub mod lt_dht;
pub mod mounts;
pub mod mse_peer;
pub mod pex_probe;
pub mod process;
pub mod qbittorrent;
pub mod resume_file;
pub mod rtorrent;
pub mod scripted_leecher;
pub mod scripted_peer;
pub mod tessera;
pub mod torrent;
pub mod tracker;
pub mod transmission;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tempfile::TempDir;

use crate::data::FileSpec;
use crate::torrent::Torrent;
use crate::tracker::Opentracker;

/// The process-wide lock every end-to-end test holds for its whole run (a panicking test
/// poisons it; the next one takes it anyway).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The seed for the standard data set; any value works, a fixed one keeps runs comparable.
pub const DATA_SEED: u64 = 0x7E55_E7A0;

/// A temporary directory with the standard multi-file data set, its torrent, and an
/// opentracker that serves it.
///
/// Layout: `seed/<name>/...` (the data; `seed/` is what seeders get as their data dir),
/// `set.torrent`, `logs/` (captured output of every process), plus whatever a test adds.
#[derive(Debug)]
pub struct Fixture {
    pub tracker: Opentracker,
    pub torrent: Torrent,
    /// Holds `<name>/...`; compare a downloader's output dir against it.
    pub seed_dir: PathBuf,
    scratch: Scratch,
}

impl Fixture {
    /// The torrent's name (top directory of the set).
    pub const NAME: &'static str = "tessera set";

    /// The standard multi-file set ([`data::multi_file_set`]) with pieces of `2^piece_log2`
    /// bytes, announced to a fresh opentracker that already whitelists it.
    pub fn multi_file(piece_log2: u32) -> Fixture {
        Self::with_files(&data::multi_file_set(), piece_log2)
    }

    /// [`Fixture::multi_file`] with the files of `spec` (which must hold a zero-length file
    /// and make pieces span files, as the standard set does).
    pub fn with_files(spec: &[FileSpec], piece_log2: u32) -> Fixture {
        let scratch = Scratch::new();
        let logs = scratch.logs();
        let mut tracker = Opentracker::start(&logs, &[]);
        let seed_dir = scratch.seed_dir();
        scratch.seed_files(Self::NAME, spec);
        let torrent_path = scratch.path().join("set.torrent");
        torrent::mktorrent(
            &seed_dir.join(Self::NAME),
            piece_log2,
            &tracker.announce_url(),
            &torrent_path,
            &logs,
        );
        let torrent = Torrent::load(&torrent_path);
        assert!(
            torrent.files.iter().any(|f| f.length == 0),
            "mktorrent dropped the zero-length file: {:?}",
            torrent.files
        );
        assert!(
            torrent.pieces_spanning_files() > 0,
            "no piece spans two files"
        );
        tracker.allow(torrent.info_hash);
        Fixture {
            tracker,
            torrent,
            seed_dir,
            scratch,
        }
    }

    /// The temporary directory.
    pub fn path(&self) -> &Path {
        self.scratch.path()
    }

    /// Where processes' captured output goes.
    pub fn logs(&self) -> PathBuf {
        self.scratch.logs()
    }

    /// A new empty directory `<temp>/<name>`.
    pub fn new_dir(&self, name: &str) -> PathBuf {
        self.scratch.new_dir(name)
    }
}

/// A test's temporary directory, `tessera-e2e-*`, laid out as the tests use it: `seed/`
/// (data for seeders, `seed/<name>/...`), `logs/` (captured output of every process) and
/// whatever else a test adds. Kept after a failure when `TESSERA_E2E_KEEP` is set.
#[derive(Debug)]
pub struct Scratch {
    dir: Option<TempDir>,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("tessera-e2e-")
            .tempdir()
            .expect("create temp dir");
        Scratch { dir: Some(dir) }
    }

    /// The temporary directory.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("scratch dir").path()
    }

    /// Where processes' captured output goes.
    pub fn logs(&self) -> PathBuf {
        self.path().join("logs")
    }

    /// What seeders get as their data directory.
    pub fn seed_dir(&self) -> PathBuf {
        self.path().join("seed")
    }

    /// Writes the files of `spec` under `seed/<name>` ([`DATA_SEED`] content) and returns
    /// that directory.
    pub fn seed_files(&self, name: &str, spec: &[FileSpec]) -> PathBuf {
        let root = self.seed_dir().join(name);
        data::make_files(&root, spec, DATA_SEED);
        root
    }

    /// A new empty directory `<temp>/<name>`.
    pub fn new_dir(&self, name: &str) -> PathBuf {
        let p = self.path().join(name);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking()
            && std::env::var_os("TESSERA_E2E_KEEP").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("tessera-tests: kept {}", dir.keep().display());
        }
    }
}
