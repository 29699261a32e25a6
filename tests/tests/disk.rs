//! Disk errors end to end: a full disk and a read-only directory give one clear `error:`
//! line and exit 1, leave every verified piece intact and listed in the resume file, and
//! the same command completes the download once there is room (or write access) again.
//!
//! As root, permissions stop nothing: the full disk is a small tmpfs mounted on the output
//! directory (or, where mounting is not permitted, `prlimit --fsize` with SIGXFSZ ignored,
//! which makes big writes fail with EFBIG), the read-only directory a read-only bind mount
//! (or `chattr +i`). See `tessera_tests::mounts`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tessera_tests::data::{Compare, compare_trees, list_files};
use tessera_tests::libtorrent::{LtOptions, LtPeer};
use tessera_tests::mounts::{FileSizeLimit, ReadOnly, Tmpfs};
use tessera_tests::process::Proc;
use tessera_tests::resume_file::{self, Resume};
use tessera_tests::tessera::Tessera;
use tessera_tests::torrent::sha1;
use tessera_tests::{Fixture, serial};

const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// Pieces lost when the disk fills: the writes queued behind the one that failed, and
/// blocks in memory. 32 pieces of 256 KiB.
const IN_FLIGHT: u64 = 8 << 20;

/// Every file under `dir` with a hash of its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, [u8; 20]> {
    list_files(dir)
        .into_iter()
        .map(|rel| {
            let bytes = std::fs::read(dir.join(&rel)).expect("read");
            (rel, sha1(&bytes))
        })
        .collect()
}

/// The one `error:` line of a failed run, which must be its last line on stderr.
fn error_line(dl: &Proc) -> String {
    let err = dl.stderr();
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line:\n{err}");
    assert_eq!(
        err.lines().rfind(|l| !l.trim().is_empty()),
        Some(errors[0]),
        "the error is not the last line:\n{err}"
    );
    errors[0].to_owned()
}

/// The resume file lists `k` pieces (`k > 0` if `some`) and all of them are on disk,
/// correct.
fn verified_pieces_intact(fx: &Fixture, out: &Path, some: bool) -> usize {
    let resume = Resume::load(&resume_file::path(out, fx.torrent.info_hash))
        .unwrap_or_else(|e| panic!("no valid resume file after the disk error: {e}"));
    let listed: Vec<u32> = (0..fx.torrent.num_pieces())
        .filter(|&p| resume.verified[p as usize])
        .collect();
    assert!(
        !some || !listed.is_empty(),
        "the resume file lists no verified piece"
    );
    let bad = resume_file::bad_pieces(&fx.torrent, out, listed.iter().copied());
    assert!(
        bad.is_empty(),
        "pieces listed as verified but damaged: {bad:?}"
    );
    listed.len()
}

/// Downloads the 64 MiB set into a 24 MiB file system: exit 1 with "No space left on
/// device" (or "File too large" under the fallback), the verified pieces intact and in the
/// resume file; with room again the same command resumes and completes.
fn disk_full(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let mut seeder = LtPeer::seed(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        &LtOptions::default(),
    );
    let out = fx.path().join("out");
    let tmpfs = Tmpfs::mount(&out, 24 << 20);
    let limit = match &tmpfs {
        Ok(_) => None,
        Err(e) => {
            eprintln!("{}: no tmpfs ({e}); limiting file sizes instead", t.name);
            std::fs::create_dir_all(&out).expect("mkdir");
            Some(FileSizeLimit(24 << 20))
        }
    };
    let peers = [seeder.addr()];
    let cmd = t.download_command(&fx.torrent.path, &out, &peers, &[]);
    let cmd = match limit {
        Some(l) => l.wrap(&cmd),
        None => cmd,
    };
    let mut dl = Proc::spawn(&format!("{}-download-full", t.name), cmd, &fx.logs());
    let status = dl.wait_exit(RUN_TIMEOUT);
    assert_eq!(status.code(), Some(1), "{}", dl.tail());
    let line = error_line(&dl);
    let why = if limit.is_some() {
        "File too large"
    } else {
        "No space left on device"
    };
    assert!(
        line.starts_with("error: disk error: writing ") && line.contains(why),
        "{line}"
    );
    // Under the file size limit the first pieces may all land past it: none verified.
    let verified = verified_pieces_intact(&fx, &out, limit.is_none());
    let n = fx.torrent.num_pieces() as usize;
    eprintln!(
        "{}: disk full with {verified} of {n} pieces verified: {line}",
        t.name
    );

    // Room again: the same command resumes from the resume file and completes.
    let mut dl = match &tmpfs {
        Ok(fs) => {
            fs.resize(256 << 20);
            t.download(&fx.logs(), &fx.torrent.path, &out, &peers)
        }
        Err(_) => t.download(&fx.logs(), &fx.torrent.path, &out, &peers),
    };
    dl.wait_success(RUN_TIMEOUT);
    assert!(
        dl.stderr()
            .contains(&format!("resuming with {verified} of {n} pieces verified")),
        "{}",
        dl.tail()
    );
    compare_trees(&fx.seed_dir, &out, Compare::tessera());
    let (uploaded, _) = seeder.transferred();
    eprintln!(
        "{}: seeder uploaded {uploaded} bytes in all for {}",
        t.name, fx.torrent.total_length
    );
    assert!(uploaded <= fx.torrent.total_length + IN_FLIGHT);
    drop(dl);
    drop(tmpfs);
}

/// A download stopped with Ctrl-C, then run again in a read-only directory: exit 1 with
/// one error line, not a byte changed; writable again, the same command completes.
fn read_only(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let mut seeder = LtPeer::seed(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        &LtOptions {
            upload_limit: 8 << 20,
            ..LtOptions::default()
        },
    );
    let out = fx.new_dir("out");
    let peers = [seeder.addr()];
    let mut dl = t.download(&fx.logs(), &fx.torrent.path, &out, &peers);
    let total = fx.torrent.total_length;
    assert!(
        tessera_tests::process::poll_until(RUN_TIMEOUT, || seeder.transferred().0 >= total / 3),
        "no progress\n{}",
        dl.tail()
    );
    dl.signal("INT");
    assert_eq!(dl.wait_exit(Duration::from_secs(30)).code(), Some(0));
    let verified = verified_pieces_intact(&fx, &out, true);
    let before = contents(&out);

    let ro = ReadOnly::make(&out).unwrap_or_else(|e| panic!("cannot make a read-only dir: {e}"));
    let mut dl = t.download(&fx.logs(), &fx.torrent.path, &out, &peers);
    let status = dl.wait_exit(RUN_TIMEOUT);
    assert_eq!(status.code(), Some(1), "{}", dl.tail());
    let line = error_line(&dl);
    assert!(
        line.contains("Read-only file system") || line.contains("Operation not permitted"),
        "{line}"
    );
    eprintln!("{}: read-only ({:?}): {line}", t.name, ro.how());
    drop(ro);
    assert_eq!(
        contents(&out),
        before,
        "files changed in a read-only directory"
    );

    let mut dl = t.download(&fx.logs(), &fx.torrent.path, &out, &peers);
    dl.wait_success(RUN_TIMEOUT);
    let n = fx.torrent.num_pieces();
    assert!(
        dl.stderr()
            .contains(&format!("resuming with {verified} of {n} pieces verified")),
        "{}",
        dl.tail()
    );
    compare_trees(&fx.seed_dir, &out, Compare::tessera());

    // Complete data on a read-only file system is complete: exit 0, nothing to write.
    let ro = ReadOnly::make(&out).unwrap_or_else(|e| panic!("cannot make a read-only dir: {e}"));
    let mut dl = t.download(&fx.logs(), &fx.torrent.path, &out, &peers);
    dl.wait_success(Duration::from_secs(30));
    assert!(
        !dl.stderr().contains("warning"),
        "warnings for a complete read-only download:\n{}",
        dl.stderr()
    );
    drop(ro);
}

#[test]
fn mio_disk_full() {
    let _serial = serial();
    disk_full(&Tessera::mio());
}

#[test]
fn mio_read_only() {
    let _serial = serial();
    read_only(&Tessera::mio());
}

#[test]
fn smol_disk_full() {
    let _serial = serial();
    disk_full(&Tessera::smol());
}
