//! Multi-file storage end to end: BEP 47 padding files are never written, `--only` fetches
//! one file and creates nothing else, and a later run without `--only` completes the rest.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tessera_tests::data::{Compare, FileSpec, compare_files, compare_trees};
use tessera_tests::libtorrent::{LtOptions, LtPeer};
use tessera_tests::lt_create::{Padded, padded_torrent};
use tessera_tests::resume_file::is_padding;
use tessera_tests::tessera::Tessera;
use tessera_tests::torrent::Torrent;
use tessera_tests::{Fixture, Scratch, serial};

const RUN_TIMEOUT: Duration = Duration::from_secs(120);
const PIECE: u64 = 256 << 10;

/// Every file and directory under `root`, relative, sorted (directories end with `/`).
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            if p.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A set with sizes that leave every file ending inside a piece, an empty file and a
/// one-byte one, made into a torrent with padding files by libtorrent and seeded by it.
struct PaddedSwarm {
    scratch: Scratch,
    torrent: Torrent,
    seeder: LtPeer,
}

const NAME: &str = "padded set";

fn padded_swarm(how: Padded) -> PaddedSwarm {
    let scratch = Scratch::new();
    let spec = [
        FileSpec::new("a.bin", 3_000_017),
        FileSpec::new("b/one.bin", 1),
        FileSpec::new("b/c.bin", 4_444_444),
        FileSpec::new("b/empty.txt", 0),
        FileSpec::new("z.bin", 2_500_000),
    ];
    let root = scratch.seed_files(NAME, &spec);
    let logs = scratch.logs();
    let path = scratch.path().join("padded.torrent");
    padded_torrent(&root, PIECE as u32, None, how, &path, &logs);
    let torrent = Torrent::load(&path);
    let pads = torrent.files.iter().filter(|f| is_padding(&f.path)).count();
    assert!(
        pads >= 3,
        "libtorrent made only {pads} padding files: {:?}",
        torrent.files
    );
    let seeder = LtPeer::seed(&logs, &path, &scratch.seed_dir(), &LtOptions::default());
    PaddedSwarm {
        scratch,
        torrent,
        seeder,
    }
}

impl PaddedSwarm {
    fn logs(&self) -> PathBuf {
        self.scratch.logs()
    }
    fn seed_dir(&self) -> PathBuf {
        self.scratch.seed_dir()
    }
    fn out(&self, name: &str) -> PathBuf {
        self.scratch.new_dir(name)
    }
}

/// The whole padded torrent: the same tree as the seed data, no `.pad` anything.
fn padding_files_are_never_written(t: &Tessera, how: Padded) {
    let swarm = padded_swarm(how);
    let out = swarm.out("out");
    let mut dl = t.download(
        &swarm.logs(),
        &swarm.torrent.path,
        &out,
        &[swarm.seeder.addr()],
    );
    dl.wait_success(RUN_TIMEOUT);
    compare_trees(&swarm.seed_dir(), &out, Compare::tessera());
    let all = tree(&out);
    assert!(
        !all.iter().any(|p| p.contains(".pad")),
        "{} wrote padding: {all:?}",
        t.name
    );
}

/// `--only c.bin` on the padded torrent: `<name>/b/c.bin` and nothing else appears (no
/// other file, no empty file, no other directory; `.tessera/` aside), byte for byte.
fn only_one_file_of_a_padded_torrent(t: &Tessera) {
    let mut swarm = padded_swarm(Padded::Hybrid);
    let out = swarm.out("out");
    let mut dl = t.download_with(
        &swarm.logs(),
        &swarm.torrent.path,
        &out,
        &[swarm.seeder.addr()],
        &["--only", "c.bin"],
    );
    dl.wait_success(RUN_TIMEOUT);
    let seen: Vec<String> = tree(&out)
        .into_iter()
        .filter(|p| !p.starts_with(".tessera"))
        .collect();
    assert_eq!(
        seen,
        vec![
            format!("{NAME}/"),
            format!("{NAME}/b/"),
            format!("{NAME}/b/c.bin")
        ],
        "{} created more than the chosen file",
        t.name
    );
    compare_files(
        &swarm.seed_dir().join(NAME).join("b/c.bin"),
        &out.join(NAME).join("b/c.bin"),
    );
    // What was fetched: the pieces of c.bin, which starts on a piece boundary (padding
    // before it), and nothing more.
    let c = swarm
        .torrent
        .files
        .iter()
        .find(|f| f.path.ends_with("b/c.bin"))
        .expect("c.bin in the torrent");
    let c_pieces = c.length.div_ceil(PIECE);
    let (uploaded, _) = swarm.seeder.transferred();
    eprintln!(
        "{}: --only c.bin fetched {uploaded} bytes: c.bin is {} bytes in {c_pieces} pieces",
        t.name, c.length
    );
    assert!(
        uploaded <= c_pieces * PIECE,
        "{} fetched {uploaded} bytes for --only c.bin",
        t.name
    );
}

/// The standard set (no padding: pieces straddle files), `--only` one file in a nested
/// directory plus the empty file: only those appear; the neighbours' bytes of the shared
/// pieces stay in `.tessera/`. Then the same command without `--only` fetches the rest
/// and the tree is complete.
fn only_then_everything(t: &Tessera) {
    let fx = Fixture::multi_file(18);
    let mut seeder = LtPeer::seed(
        &fx.logs(),
        &fx.torrent.path,
        &fx.seed_dir,
        &LtOptions::default(),
    );
    let out = fx.new_dir("out");
    let mut dl = t.download_with(
        &fx.logs(),
        &fx.torrent.path,
        &out,
        &[seeder.addr()],
        &["--only", "sub dir/nested/mid.bin", "--only", "empty.txt"],
    );
    dl.wait_success(RUN_TIMEOUT);
    let seen: Vec<String> = tree(&out)
        .into_iter()
        .filter(|p| !p.starts_with(".tessera"))
        .collect();
    let name = Fixture::NAME;
    assert_eq!(
        seen,
        vec![
            format!("{name}/"),
            format!("{name}/sub dir/"),
            format!("{name}/sub dir/empty.txt"),
            format!("{name}/sub dir/nested/"),
            format!("{name}/sub dir/nested/mid.bin"),
        ],
        "{} created more than the chosen files",
        t.name
    );
    let rel = "sub dir/nested/mid.bin";
    compare_files(&fx.seed_dir.join(name).join(rel), &out.join(name).join(rel));
    let (first, _) = seeder.transferred();
    let mid = 16_777_259u64;
    assert!(
        first <= mid + 2 * PIECE,
        "{} fetched {first} bytes for a {mid}-byte file",
        t.name
    );

    let mut dl = t.download(&fx.logs(), &fx.torrent.path, &out, &[seeder.addr()]);
    dl.wait_success(RUN_TIMEOUT);
    assert!(dl.stderr().contains("resuming with"), "{}", dl.tail());
    compare_trees(&fx.seed_dir, &out, Compare::tessera());
    let (all, _) = seeder.transferred();
    eprintln!(
        "{}: --only fetched {first} bytes, the rest {} bytes, of {}",
        t.name,
        all - first,
        fx.torrent.total_length
    );
    // The two pieces shared with neighbours are fetched again (their neighbours' bytes
    // were in the part file), nothing else twice.
    assert!(
        all <= fx.torrent.total_length + 2 * PIECE,
        "{} fetched {all} bytes in all",
        t.name
    );
}

/// `--only` with a tiny `--max-buffered`: pieces of 1 MiB are spilled to disk half-received
/// and checked from disk once complete, including the two that c.bin shares with its
/// neighbours, whose other bytes are in the part file. The download completes, fetching
/// each piece once.
fn only_with_spilled_pieces(t: &Tessera) {
    let scratch = Scratch::new();
    let seed = scratch.seed_dir();
    let spec = [
        FileSpec::new("a.bin", 3_000_001),
        FileSpec::new("c.bin", 2_000_001),
        FileSpec::new("sub/b.bin", 3_000_001),
    ];
    let root = scratch.seed_files("spill", &spec);
    let logs = scratch.logs();
    let path = scratch.path().join("spill.torrent");
    tessera_tests::torrent::mktorrent(&root, 20, "http://127.0.0.1:1/announce", &path, &logs);
    let mut seeder = LtPeer::seed(&logs, &path, &seed, &LtOptions::default());
    let out = scratch.path().join("out");
    let mut dl = t.download_with(
        &logs,
        &path,
        &out,
        &[seeder.addr()],
        &["--only", "c.bin", "--max-buffered", "64KiB"],
    );
    dl.wait_success(RUN_TIMEOUT);
    compare_files(&seed.join("spill/c.bin"), &out.join("spill/c.bin"));
    assert!(!out.join("spill/a.bin").exists() && !out.join("spill/sub").exists());
    let (uploaded, _) = seeder.transferred();
    // c.bin spans bytes 3,000,001..5,000,002: pieces 2, 3 and 4 of 1 MiB.
    eprintln!(
        "{}: --only c.bin with spilling fetched {uploaded} bytes",
        t.name
    );
    assert!(uploaded <= 3 << 20, "{} fetched {uploaded} bytes", t.name);
}

#[test]
fn mio_only_with_spilled_pieces() {
    let _serial = serial();
    only_with_spilled_pieces(&Tessera::mio());
}

#[test]
fn mio_padding_files_are_never_written_hybrid() {
    let _serial = serial();
    padding_files_are_never_written(&Tessera::mio(), Padded::Hybrid);
}

#[test]
fn mio_padding_files_are_never_written_v1() {
    let _serial = serial();
    padding_files_are_never_written(&Tessera::mio(), Padded::V1);
}

#[test]
fn smol_padding_files_are_never_written_hybrid() {
    let _serial = serial();
    padding_files_are_never_written(&Tessera::smol(), Padded::Hybrid);
}

#[test]
fn mio_only_one_file_of_a_padded_torrent() {
    let _serial = serial();
    only_one_file_of_a_padded_torrent(&Tessera::mio());
}

#[test]
fn smol_only_one_file_of_a_padded_torrent() {
    let _serial = serial();
    only_one_file_of_a_padded_torrent(&Tessera::smol());
}

#[test]
fn mio_only_then_everything() {
    let _serial = serial();
    only_then_everything(&Tessera::mio());
}
