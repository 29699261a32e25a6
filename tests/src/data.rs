//! Test data: deterministic pseudo-random files, and byte-for-byte tree comparison.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// One file to generate: a relative path (with `/` separators) and a length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub path: String,
    pub len: u64,
}

impl FileSpec {
    pub fn new(path: &str, len: u64) -> FileSpec {
        FileSpec {
            path: path.to_owned(),
            len,
        }
    }
}

/// The standard multi-file set, 67,232,408 bytes (just over 64 MiB): odd sizes so piece
/// boundaries fall inside files, a one-byte file, a zero-length file, nested directories and
/// names with spaces. With any power-of-two piece size many pieces span two or more files.
pub fn multi_file_set() -> Vec<FileSpec> {
    vec![
        FileSpec::new("alpha.bin", 7_340_033),
        FileSpec::new("one byte.bin", 1),
        FileSpec::new("sub dir/with space.dat", 123_457),
        FileSpec::new("sub dir/empty.txt", 0),
        FileSpec::new("sub dir/nested/deep/big.bin", 33_554_467),
        FileSpec::new("sub dir/nested/mid.bin", 16_777_259),
        FileSpec::new("zeta/last.bin", 9_437_191),
    ]
}

/// The standard set plus a 192 MiB file: 268,567,961 bytes (just over 256 MiB), for tests
/// whose memory bound must sit well below the torrent's size.
pub fn large_multi_file_set() -> Vec<FileSpec> {
    let mut set = multi_file_set();
    set.push(FileSpec::new("sub dir/nested/large.bin", 201_335_553));
    set
}

/// Total length of a spec.
pub fn total_len(spec: &[FileSpec]) -> u64 {
    spec.iter().map(|f| f.len).sum()
}

/// xorshift64* — fast, deterministic, good enough to make every block distinct.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        // Never zero, and nearby seeds start far apart.
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// FNV-1a, to give each file its own stream.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes every file of `spec` under `dir` (creating directories) with pseudo-random content
/// derived from `seed` and the file's path. Real bytes, never sparse.
pub fn make_files(dir: &Path, spec: &[FileSpec], seed: u64) {
    let mut buf = vec![0u8; 1 << 20];
    for f in spec {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        let file =
            File::create(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let mut w = BufWriter::new(file);
        let mut rng = XorShift::new(seed ^ fnv1a(f.path.as_bytes()));
        let mut left = f.len;
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64)).expect("chunk fits usize");
            rng.fill(&mut buf[..n]);
            w.write_all(&buf[..n])
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            left -= n as u64;
        }
        w.flush()
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

/// How strict [`compare_trees`] is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Compare {
    /// Accept a zero-length file of `expected` being absent from `actual` (transmission 3.00
    /// never creates zero-length files).
    pub allow_missing_empty_files: bool,
    /// Accept files in `actual` that `expected` lacks (e.g. a client's control files).
    pub allow_extra_files: bool,
    /// Leave out `actual`'s top-level `.tessera/` directory (Tessera's resume data and part
    /// files), and nothing else.
    pub skip_tessera_dir: bool,
}

impl Compare {
    /// Same files, same bytes, nothing more.
    pub fn exact() -> Compare {
        Compare::default()
    }

    /// For Tessera as the downloader: exact, but for its `.tessera/` directory.
    pub fn tessera() -> Compare {
        Compare {
            skip_tessera_dir: true,
            ..Compare::default()
        }
    }

    /// For transmission as the downloader.
    pub fn transmission() -> Compare {
        Compare {
            allow_missing_empty_files: true,
            ..Compare::default()
        }
    }
}

/// Regular files under `root`, as sorted relative paths. Panics on symlinks and other oddities,
/// which no client should create.
pub fn list_files(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
            let path = entry.path();
            let kind = entry
                .file_type()
                .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
            if kind.is_dir() {
                walk(root, &path, out);
            } else if kind.is_file() {
                out.push(
                    path.strip_prefix(root)
                        .expect("entry under root")
                        .to_owned(),
                );
            } else {
                panic!("{} is neither a file nor a directory", path.display());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Compares the trees under `expected` and `actual` byte for byte; panics with a clear message
/// on the first difference (missing file, extra file, length, or first differing byte).
pub fn compare_trees(expected: &Path, actual: &Path, how: Compare) {
    assert!(
        actual.is_dir(),
        "compare_trees: {} is not a directory (nothing was downloaded?)",
        actual.display()
    );
    // The expected tree's own `.tessera/` (a Tessera seeder's resume data and DHT table,
    // written at the end of its run) is never payload.
    let mut want = list_files(expected);
    want.retain(|p| !p.starts_with(".tessera"));
    let mut have = list_files(actual);
    if how.skip_tessera_dir {
        have.retain(|p| !p.starts_with(".tessera"));
    }
    if !how.allow_extra_files {
        let extra: Vec<_> = have.iter().filter(|p| !want.contains(p)).collect();
        assert!(
            extra.is_empty(),
            "compare_trees: files in {} that {} lacks: {extra:?}",
            actual.display(),
            expected.display()
        );
    }
    for rel in &want {
        let a = expected.join(rel);
        let b = actual.join(rel);
        let a_len = fs::metadata(&a)
            .unwrap_or_else(|e| panic!("stat {}: {e}", a.display()))
            .len();
        if !b.exists() {
            if a_len == 0 && how.allow_missing_empty_files {
                continue;
            }
            panic!(
                "compare_trees: {} is missing (expected {a_len} bytes like {})",
                b.display(),
                a.display()
            );
        }
        compare_files(&a, &b);
    }
}

/// Compares two files byte for byte; panics at the first difference.
pub fn compare_files(a: &Path, b: &Path) {
    let open = |p: &Path| File::open(p).unwrap_or_else(|e| panic!("opening {}: {e}", p.display()));
    let (mut fa, mut fb) = (open(a), open(b));
    let len = |f: &File, p: &Path| {
        f.metadata()
            .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
            .len()
    };
    let (la, lb) = (len(&fa, a), len(&fb, b));
    assert_eq!(
        la,
        lb,
        "compare_trees: {} is {lb} bytes, expected {la} like {}",
        b.display(),
        a.display()
    );
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut fa, &mut ba, a);
        let m = read_full(&mut fb, &mut bb, b);
        assert_eq!(
            n,
            m,
            "{} and {} changed while compared",
            a.display(),
            b.display()
        );
        if n == 0 {
            return;
        }
        if ba[..n] != bb[..n] {
            let i = (0..n).find(|&i| ba[i] != bb[i]).expect("a differing byte");
            panic!(
                "compare_trees: {} differs from {} at byte {} (0x{:02x}, expected 0x{:02x})",
                b.display(),
                a.display(),
                offset + i as u64,
                bb[i],
                ba[i]
            );
        }
        offset += n as u64;
    }
}

fn read_full(f: &mut File, buf: &mut [u8], path: &Path) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading {}: {e}", path.display()),
        }
    }
    filled
}

/// A listing of everything under `dir` (directories too, with file sizes), to check that a
/// run created or changed nothing there.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Option<u64>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Option<u64>)>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).expect("under root").to_owned();
            let meta = fs::symlink_metadata(&path).ok();
            if meta.as_ref().is_some_and(|m| m.is_dir()) {
                out.push((rel, None));
                walk(root, &path, out);
            } else {
                out.push((rel, meta.map(|m| m.len())));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_is_over_64_mib_with_an_empty_file() {
        let set = multi_file_set();
        assert!(total_len(&set) >= 64 << 20);
        assert!(set.iter().any(|f| f.len == 0));
        assert!(set.iter().any(|f| f.path.contains(' ')));
    }

    #[test]
    fn generation_is_deterministic_and_compare_finds_differences() {
        let dir = tempfile::tempdir().unwrap();
        let spec = [FileSpec::new("a/x.bin", 100_003), FileSpec::new("e", 0)];
        make_files(&dir.path().join("one"), &spec, 7);
        make_files(&dir.path().join("two"), &spec, 7);
        compare_trees(
            &dir.path().join("one"),
            &dir.path().join("two"),
            Compare::exact(),
        );

        make_files(&dir.path().join("three"), &spec, 8);
        let differs = std::panic::catch_unwind(|| {
            compare_trees(
                &dir.path().join("one"),
                &dir.path().join("three"),
                Compare::exact(),
            )
        });
        assert!(
            differs.is_err(),
            "different seeds must give different bytes"
        );

        fs::remove_file(dir.path().join("two/e")).unwrap();
        let missing = std::panic::catch_unwind(|| {
            compare_trees(
                &dir.path().join("one"),
                &dir.path().join("two"),
                Compare::exact(),
            )
        });
        assert!(missing.is_err(), "a missing empty file is a difference");
        compare_trees(
            &dir.path().join("one"),
            &dir.path().join("two"),
            Compare::transmission(),
        );
    }
}
