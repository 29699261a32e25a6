use std::os::unix::ffi::OsStrExt;

use super::*;
use crate::testutil::{pattern, sha1};

fn args(path: &Path) -> CreateArgs {
    CreateArgs {
        path: path.to_path_buf(),
        trackers: vec![],
        piece_size: None,
        output: None,
        private: false,
        comment: None,
        no_date: false,
        force: false,
    }
}

fn pool() -> DiskPool {
    DiskPool::new(3, Arc::new(|| {})).unwrap()
}

/// A directory with odd sizes, an empty file, a nested directory and a symlink.
/// Returns the files' contents in the order a torrent must list them.
fn sample_dir(root: &Path) -> Vec<(Vec<String>, Vec<u8>)> {
    let files: Vec<(&str, usize)> = vec![
        ("b/c.bin", 40_001),
        ("a", 1),
        ("b/empty", 0),
        ("z", 16_385),
        ("b.txt", 777),
        ("b/a/deep", 70_000),
    ];
    let mut out = Vec::new();
    for (i, (rel, len)) in files.iter().enumerate() {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let data = pattern(*len, i as u64 + 10);
        fs::write(&path, &data).unwrap();
        out.push((rel.split('/').map(str::to_string).collect::<Vec<_>>(), data));
    }
    std::os::unix::fs::symlink(root.join("z"), root.join("link-to-z")).unwrap();
    std::os::unix::fs::symlink(root.join("b"), root.join("b/link-to-dir")).unwrap();
    out.sort_by(|x, y| x.0.cmp(&y.0));
    out
}

#[test]
fn scan_sorts_by_path_and_skips_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("stuff");
    let expected = sample_dir(&root);
    let source = scan(&root).unwrap();
    assert_eq!(source.name, "stuff");
    assert!(!source.single_file);
    let rels: Vec<Vec<String>> = source.files.iter().map(|f| f.rel.clone()).collect();
    assert_eq!(
        rels,
        vec![
            vec!["a".to_string()],
            vec!["b".into(), "a".into(), "deep".into()],
            vec!["b".into(), "c.bin".into()],
            vec!["b".into(), "empty".into()],
            vec!["b.txt".into()],
            vec!["z".into()],
        ]
    );
    assert_eq!(
        rels,
        expected.iter().map(|e| e.0.clone()).collect::<Vec<_>>()
    );
    assert_eq!(source.total_length(), 1 + 70_000 + 40_001 + 777 + 16_385);

    // `.` names the directory it is.
    let file = root.join("b.txt");
    let single = scan(&file).unwrap();
    assert!(single.single_file);
    assert_eq!(single.name, "b.txt");
    assert_eq!(single.files[0].rel, Vec::<String>::new());
    assert_eq!(single.files[0].length, 777);
}

#[test]
fn piece_hashes_match_a_reference_computation() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("stuff");
    let expected = sample_dir(&root);
    let all: Vec<u8> = expected.iter().flat_map(|e| e.1.iter().copied()).collect();
    let source = scan(&root).unwrap();
    let pool = pool();
    for piece_len in [16_384u32, 32_768, 1 << 20] {
        let hashes =
            hash_pieces(&source, piece_len, &pool, &PieceProgress::new(true, "", 0)).unwrap();
        let reference: Vec<[u8; 20]> = all.chunks(piece_len as usize).map(sha1).collect();
        assert_eq!(hashes, reference, "piece length {piece_len}");
    }

    let mut a = args(&root);
    a.piece_size = Some(32_768);
    a.trackers = vec!["http://t1/announce".into(), "udp://t2:6969".into()];
    a.private = true;
    a.no_date = true;
    a.comment = Some("hello".into());
    let t = build(&a, &pool, true).unwrap();
    assert_eq!(t.name, "stuff");
    assert_eq!(
        t.files,
        expected
            .iter()
            .map(|(rel, data)| (rel.clone(), data.len() as u64))
            .collect::<Vec<_>>()
    );
    assert_eq!(t.piece_length, 32_768);
    assert_eq!(t.pieces, all.chunks(32_768).map(sha1).collect::<Vec<_>>());
    assert!(t.private);
    assert_eq!(
        t.trackers,
        vec![
            vec!["http://t1/announce".to_string()],
            vec!["udp://t2:6969".to_string()]
        ]
    );
    assert_eq!(t.comment.as_deref(), Some("hello"));
    assert_eq!(t.creation_date, None);
    assert!(t.created_by.as_deref().unwrap().starts_with("Tessera "));
}

#[test]
fn single_file_torrent_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("movie.mkv");
    let data = pattern(100_000, 3);
    fs::write(&path, &data).unwrap();
    let t = build(&args(&path), &pool(), true).unwrap();
    assert_eq!(t.name, "movie.mkv");
    assert!(t.files.is_empty());
    assert_eq!(t.length, 100_000);
    assert_eq!(t.piece_length, 16_384);
    assert_eq!(t.pieces, data.chunks(16_384).map(sha1).collect::<Vec<_>>());
    assert!(t.creation_date.is_some_and(|d| d > 1_600_000_000));
    assert!(t.trackers.is_empty() && !t.private);
}

#[test]
fn default_piece_sizes() {
    assert_eq!(default_piece_size(0), 16 << 10);
    assert_eq!(default_piece_size(1 << 20), 16 << 10);
    // 1 GiB: 1 MiB pieces, 1024 of them.
    assert_eq!(default_piece_size(1 << 30), 1 << 20);
    assert_eq!(default_piece_size(2000 * (256 << 10)), 256 << 10);
    assert_eq!(default_piece_size(2000 * (256 << 10) + 1), 512 << 10);
    assert_eq!(default_piece_size(1 << 50), 16 << 20);
    for total in [50_000_000u64, 20 << 30, 3 << 30, 700 << 20] {
        let p = u64::from(default_piece_size(total));
        assert!(p.is_power_of_two());
        let pieces = total.div_ceil(p);
        assert!(
            (1000..=2000).contains(&pieces),
            "{total}: {pieces} pieces of {p}"
        );
    }
}

#[test]
fn unusable_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let err = scan(&empty).unwrap_err().to_string();
    assert!(err.contains("contains no files"), "{err}");

    fs::write(empty.join("zero"), b"").unwrap();
    let err = scan(&empty).unwrap_err().to_string();
    assert!(err.contains("every file is empty"), "{err}");

    let err = scan(&dir.path().join("missing")).unwrap_err().to_string();
    assert!(err.starts_with("reading "), "{err}");

    let odd = dir.path().join("odd");
    fs::create_dir(&odd).unwrap();
    fs::write(odd.join(std::ffi::OsStr::from_bytes(b"bad\xffname")), b"x").unwrap();
    let err = scan(&odd).unwrap_err().to_string();
    assert!(err.contains("not valid UTF-8"), "{err}");

    let out = dir.path().join("exists.torrent");
    fs::write(&out, b"old").unwrap();
    let err = write_output(&out, b"new", false).unwrap_err().to_string();
    assert!(err.contains("--force"), "{err}");
    assert_eq!(fs::read(&out).unwrap(), b"old");
    write_output(&out, b"new", true).unwrap();
    assert_eq!(fs::read(&out).unwrap(), b"new");
}

#[test]
fn encoded_torrent_is_a_bencoded_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("stuff");
    sample_dir(&root);
    let t = build(&args(&root), &pool(), true).unwrap();
    let bytes = t.encode();
    assert_eq!(bytes.first(), Some(&b'd'));
    assert_eq!(bytes.last(), Some(&b'e'));
}

#[test]
fn created_torrent_round_trips_through_metainfo() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("stuff");
    let expected = sample_dir(&root);
    let mut a = args(&root);
    a.trackers = vec!["http://t1/announce".into()];
    a.private = true;
    a.output = Some(dir.path().join("out.torrent"));
    run(&a, true).unwrap();
    let meta = crate::torrent::load(&dir.path().join("out.torrent")).unwrap();
    assert_eq!(meta.info.name, "stuff");
    assert!(meta.info.multi_file && meta.info.private);
    assert_eq!(meta.trackers, vec![vec!["http://t1/announce".to_string()]]);
    let files: Vec<(Vec<String>, u64)> = meta
        .info
        .files
        .iter()
        .map(|f| (f.path.clone(), f.length))
        .collect();
    let want: Vec<(Vec<String>, u64)> = expected
        .iter()
        .map(|(rel, data)| {
            let mut p = vec!["stuff".to_string()];
            p.extend(rel.iter().cloned());
            (p, data.len() as u64)
        })
        .collect();
    assert_eq!(files, want);
    // The data verifies against the torrent where it already is.
    let storage = Arc::new(Storage::new(dir.path(), meta.clone()).unwrap());
    let report =
        crate::verify::verify(&meta, &storage, &pool(), &PieceProgress::new(true, "", 0)).unwrap();
    assert!(report.complete(), "{}", report.text());
    assert_eq!(meta.info_hash.0, sha1(&meta.info_bytes));
}
