use bytes::Bytes;
use tessera_core::{DiskResult, FileSpan};

use super::*;
use crate::storage::part_path;
use crate::testutil::{TestTorrent, torrent};

/// Three data files (one empty) and a padding file; pieces of 16 KiB cross file edges.
fn sample() -> TestTorrent {
    torrent(
        "r",
        &[
            ("a.bin", 40_000, false),
            ("pad", 9_152, true),
            ("empty", 0, false),
            ("b/c.bin", 30_000, false),
        ],
        16384,
    )
}

fn spans(t: &TestTorrent, piece: u32) -> Vec<FileSpan> {
    let l = t.meta.layout();
    l.spans(piece, 0, l.piece_len(piece))
}

fn write_piece(t: &TestTorrent, s: &Storage, p: u32) {
    let r = s.write(
        p,
        0,
        &[Bytes::copy_from_slice(t.piece(p))],
        &spans(t, p),
        t.meta.piece_hash(p),
    );
    assert_eq!(r, DiskResult::Ok, "piece {p}");
}

fn storage(t: &TestTorrent, dir: &Path, chosen: Option<&[bool]>) -> Storage {
    let hash = t.meta.info_hash.to_string();
    let s =
        Storage::with_selection(dir, t.meta.clone(), chosen, Some(part_path(dir, &hash))).unwrap();
    s.prepare().unwrap();
    s
}

fn some_have(t: &TestTorrent, pieces: &[u32]) -> Bitfield {
    let mut have = Bitfield::new(t.meta.num_pieces() as usize);
    for &p in pieces {
        have.set(p as usize);
    }
    have
}

#[test]
fn encode_decode_round_trip() {
    let t = sample();
    let data = ResumeData {
        info_hash: t.meta.info_hash.0,
        have: some_have(&t, &[0, 3, 4]),
        files: vec![
            FileState::Present {
                size: 40_000,
                mtime: Mtime {
                    secs: 1_700_000_000,
                    nanos: 123_456_789,
                },
            },
            FileState::Untracked,
            FileState::NotChosen,
            FileState::Missing,
        ],
        part: FileState::Present {
            size: 7,
            mtime: Mtime {
                secs: -5,
                nanos: 999_999_999,
            },
        },
    };
    let bytes = data.encode();
    assert_eq!(&bytes[..8], MAGIC);
    assert_eq!(ResumeData::decode(&bytes), Ok(data));
}

#[test]
fn corrupted_truncated_and_foreign_files_are_rejected() {
    let t = sample();
    let data = ResumeData {
        info_hash: t.meta.info_hash.0,
        have: some_have(&t, &[1]),
        files: vec![FileState::Missing; 4],
        part: FileState::Missing,
    };
    let bytes = data.encode();
    // Every truncation, including an empty file.
    for len in 0..bytes.len() {
        assert!(
            matches!(ResumeData::decode(&bytes[..len]), Err(Rejected::Invalid(_))),
            "truncated to {len} accepted"
        );
    }
    // Every single flipped bit.
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            assert!(
                ResumeData::decode(&b).is_err(),
                "bit {bit} of byte {i} flipped and accepted"
            );
        }
    }
    // Trailing bytes.
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(ResumeData::decode(&longer).is_err());
    // Another version, checksum and all.
    let mut v2 = bytes[..bytes.len() - 20].to_vec();
    v2[8..12].copy_from_slice(&2u32.to_be_bytes());
    let sum: [u8; 20] = Sha1::digest(&v2).into();
    v2.extend_from_slice(&sum);
    assert!(
        matches!(ResumeData::decode(&v2), Err(Rejected::Invalid(m)) if m.contains("version 2"))
    );
    // Not a resume file at all.
    assert!(matches!(
        ResumeData::decode(b"d8:announce3:urle"),
        Err(Rejected::Invalid(m)) if m.contains("not a Tessera resume file")
    ));

    // Another torrent: info hash, piece count, file count.
    let current = vec![FileState::Missing; 4];
    let mut other = data.clone();
    other.info_hash = [9; 20];
    assert!(matches!(
        other.usable_have(&t.meta, &current, FileState::Missing),
        Err(Rejected::Foreign(_))
    ));
    let mut other = data.clone();
    other.have = Bitfield::new(99);
    assert!(matches!(
        other.usable_have(&t.meta, &current, FileState::Missing),
        Err(Rejected::Foreign(_))
    ));
    let mut other = data.clone();
    other.files.pop();
    assert!(matches!(
        other.usable_have(&t.meta, &current, FileState::Missing),
        Err(Rejected::Foreign(_))
    ));
    // Verified pieces in files recorded as missing cannot be.
    assert!(matches!(
        data.usable_have(&t.meta, &current, FileState::Missing),
        Err(Rejected::Invalid(_))
    ));
}

#[test]
fn saved_data_is_used_until_a_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let t = sample();
    let s = storage(&t, dir.path(), None);
    let path = resume_path(dir.path(), &t.meta.info_hash.to_string());
    // A fresh directory: nothing to hash.
    assert_eq!(startup(&t.meta, &s, &path, false), Startup::Fresh);
    assert!(s.nothing_on_disk());

    for p in [0, 1, 2] {
        write_piece(&t, &s, p);
    }
    // Data but no resume file: hash it.
    assert!(matches!(
        startup(&t.meta, &s, &path, false),
        Startup::Check(ref m) if m.contains("no resume data")
    ));
    let have = some_have(&t, &[0, 1, 2]);
    save(&s, &path, t.meta.info_hash.0, have.clone()).unwrap();
    assert!(path.starts_with(dir.path().join(".tessera")));
    assert_eq!(
        startup(&t.meta, &s, &path, false),
        Startup::Resume(have.clone())
    );
    // --recheck ignores it.
    assert!(matches!(
        startup(&t.meta, &s, &path, true),
        Startup::Check(ref m) if m == "--recheck"
    ));

    // A later write (what a run killed after its last save leaves): out of date.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_piece(&t, &s, 4);
    match startup(&t.meta, &s, &path, false) {
        Startup::Check(m) => assert!(m.contains("out of date") && m.contains("c.bin"), "{m}"),
        other => panic!("stale resume data trusted: {other:?}"),
    }
    // Saved again, then a file is truncated behind our back, or removed.
    save(&s, &path, t.meta.info_hash.0, some_have(&t, &[0, 1, 2, 4])).unwrap();
    assert!(matches!(
        startup(&t.meta, &s, &path, false),
        Startup::Resume(_)
    ));
    let a = dir.path().join("r/a.bin");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&a)
        .unwrap()
        .set_len(100)
        .unwrap();
    assert!(matches!(
        startup(&t.meta, &s, &path, false),
        Startup::Check(_)
    ));
    std::fs::remove_file(&a).unwrap();
    assert!(matches!(
        startup(&t.meta, &s, &path, false),
        Startup::Check(_)
    ));
    // A damaged resume file with data present: hash.
    save(&s, &path, t.meta.info_hash.0, some_have(&t, &[4])).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 1);
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(
        startup(&t.meta, &s, &path, false),
        Startup::Check(ref m) if m.contains("invalid")
    ));
}

#[test]
fn a_changed_selection_drops_the_pieces_of_files_whose_place_changed() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent(
        "r",
        &[
            ("a.bin", 40_000, false),
            ("empty", 0, false),
            ("b/c.bin", 30_000, false),
        ],
        16384,
    );
    let l = t.meta.layout();
    // Only c.bin (file 2) chosen: pieces from 2 (shared with a.bin) on.
    let only_c = [false, false, true];
    let s = storage(&t, dir.path(), Some(&only_c));
    let hash = t.meta.info_hash.to_string();
    let path = resume_path(dir.path(), &hash);
    let pieces: Vec<u32> = l.file_pieces(2).collect();
    assert!(l.file_pieces(0).contains(&pieces[0]));
    for &p in &pieces {
        write_piece(&t, &s, p);
    }
    // a.bin was never created; its bytes in the shared piece went to the part file.
    assert!(!dir.path().join("r/a.bin").exists());
    assert!(part_path(dir.path(), &hash).is_file());
    let have = some_have(&t, &pieces);
    save(&s, &path, t.meta.info_hash.0, have.clone()).unwrap();
    assert_eq!(startup(&t.meta, &s, &path, false), Startup::Resume(have));

    // Now everything is chosen: the pieces holding a.bin's bytes are not verified any
    // more (those bytes are in the part file, not in a.bin).
    let all = storage(&t, dir.path(), None);
    let Startup::Resume(kept) = startup(&t.meta, &all, &path, false) else {
        panic!("resume data refused after a change of selection");
    };
    for p in 0..t.meta.num_pieces() {
        let expect = pieces.contains(&p) && !l.file_pieces(0).contains(&p);
        assert_eq!(kept.get(p as usize), expect, "piece {p}");
    }
}

#[test]
fn atomic_write_leaves_the_old_file_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".tessera/x.resume");
    write_atomically(&path, b"old").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    write_atomically(&path, b"newer").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"newer");
    // The temporary file cannot be created (a directory is in its place): the write
    // fails and the old file is intact.
    let tmp = dir
        .path()
        .join(format!(".tessera/x.resume.tmp{}", std::process::id()));
    std::fs::create_dir(&tmp).unwrap();
    std::fs::write(tmp.join("keep"), b"x").unwrap();
    assert!(write_atomically(&path, b"lost").is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"newer");
    // The rename cannot happen (the target is a non-empty directory): old file intact, no
    // temporary file left behind.
    std::fs::remove_dir_all(&tmp).unwrap();
    let blocked = dir.path().join(".tessera/y.resume");
    std::fs::create_dir_all(blocked.join("z")).unwrap();
    assert!(write_atomically(&blocked, b"data").is_err());
    assert!(blocked.join("z").is_dir());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join(".tessera"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

#[test]
fn missing_and_unreadable_resume_files() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        ResumeData::load(&dir.path().join("nope.resume")),
        Err(Rejected::Missing)
    );
    // A directory where the file should be.
    assert!(matches!(
        ResumeData::load(dir.path()),
        Err(Rejected::Unreadable(_) | Rejected::Invalid(_))
    ));
}
