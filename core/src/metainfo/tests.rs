use super::*;
use crate::bencode::DictBuilder;

// --- helpers -----------------------------------------------------------------------

fn parse(bytes: &[u8]) -> Metainfo {
    match Metainfo::from_bytes(bytes) {
        Ok(m) => m,
        Err(e) => panic!("rejected: {e}\n{}", String::from_utf8_lossy(bytes)),
    }
}

fn err(bytes: &[u8]) -> MetainfoError {
    match Metainfo::from_bytes(bytes) {
        Ok(m) => panic!("accepted: {m:?}"),
        Err(e) => e,
    }
}

fn s(text: &str) -> Value<'_> {
    Value::Bytes(text.as_bytes())
}

pub(super) fn strs<'a>(items: &[&'a str]) -> Value<'a> {
    Value::List(items.iter().map(|c| s(c)).collect())
}

/// A `files` entry.
pub(super) fn file<'a>(path: &[&'a str], length: i64) -> Value<'a> {
    DictBuilder::new()
        .insert(b"length", Value::Int(length))
        .insert(b"path", strs(path))
        .build()
}

/// A `files` entry with BEP 47 attributes.
pub(super) fn file_attr<'a>(path: &[&'a str], length: i64, attr: &'a str) -> Value<'a> {
    DictBuilder::new()
        .insert(b"attr", s(attr))
        .insert(b"length", Value::Int(length))
        .insert(b"path", strs(path))
        .build()
}

/// `n` piece hashes, hash `i` filled with byte `i`.
pub(super) fn hashes(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| [i as u8; 20]).collect()
}

/// Info dictionary entries common to most tests: name `dir`, 16 KiB pieces.
pub(super) fn info_with<'a>(pieces: &'a [u8], rest: Vec<(&'a [u8], Value<'a>)>) -> Value<'a> {
    let mut info = DictBuilder::new()
        .insert(b"name", s("dir"))
        .insert(b"piece length", Value::Int(16384))
        .insert(b"pieces", Value::Bytes(pieces));
    for (k, v) in rest {
        info = info.insert(k, v);
    }
    info.build()
}

pub(super) fn torrent(info: Value<'_>) -> Vec<u8> {
    bencode::encode(&DictBuilder::new().insert(b"info", info).build())
}

/// A multi-file torrent named `dir` with `n_pieces` hashes.
pub(super) fn multi_with(files: Vec<Value<'_>>, n_pieces: usize) -> Vec<u8> {
    let pieces = hashes(n_pieces);
    torrent(info_with(&pieces, vec![(b"files", Value::List(files))]))
}

/// A multi-file torrent named `dir` with the right number of hashes for its lengths.
pub(super) fn multi(files: Vec<Value<'_>>) -> Vec<u8> {
    let total: i64 = files
        .iter()
        .filter_map(|f| f.get(b"length").and_then(Value::as_int))
        .map(|l| l.max(0))
        .sum();
    multi_with(files, usize::try_from(total).unwrap().div_ceil(16384))
}

/// A single-file torrent named `dir` of `length` bytes with `n_pieces` hashes.
pub(super) fn single(length: i64, n_pieces: usize) -> Vec<u8> {
    let pieces = hashes(n_pieces);
    torrent(info_with(&pieces, vec![(b"length", Value::Int(length))]))
}

pub(super) fn paths(m: &Metainfo) -> Vec<String> {
    m.info.files.iter().map(|f| f.path.join("/")).collect()
}

// --- accepted torrents -------------------------------------------------------------

/// Written out by hand; its SHA-1 was computed outside this code (`sha1sum`).
const HAND_INFO: &[u8] = b"d6:lengthi20000e4:name8:test.txt12:piece lengthi16384e\
    6:pieces40:AAAAAAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBBBBBe";
const HAND_INFO_SHA1: &str = "95bf4f359399747255f30d7e720c66e5737e93f4";

fn hand_torrent() -> Vec<u8> {
    [
        &b"d8:announce31:http://tracker.example/announce4:info"[..],
        HAND_INFO,
        b"e",
    ]
    .concat()
}

#[test]
fn single_file_torrent() {
    let m = parse(&hand_torrent());
    assert_eq!(m.info.name, "test.txt");
    assert!(!m.info.multi_file);
    assert!(!m.info.private);
    assert_eq!(
        m.info.files,
        vec![FileEntry {
            path: vec!["test.txt".into()],
            length: 20000,
            padding: false,
            executable: false,
        }]
    );
    assert_eq!(m.info.piece_length, 16384);
    assert_eq!(m.num_pieces(), 2);
    assert_eq!(m.total_length(), 20000);
    assert_eq!(m.layout().piece_len(1), 20000 - 16384);
    assert_eq!(m.piece_hash(0), Some([b'A'; 20]));
    assert_eq!(m.piece_hash(1), Some([b'B'; 20]));
    assert_eq!(m.piece_hash(2), None);
    assert_eq!(m.trackers, vec![vec!["http://tracker.example/announce"]]);
    assert_eq!(m.comment, None);
    assert_eq!(m.created_by, None);
    assert_eq!(m.creation_date, None);
}

#[test]
fn info_hash_is_sha1_of_the_exact_info_bytes() {
    let m = parse(&hand_torrent());
    assert_eq!(&m.info_bytes[..], HAND_INFO);
    assert_eq!(m.info_hash.to_string(), HAND_INFO_SHA1);
    assert_eq!(m.info_hash, InfoHash(Sha1::digest(HAND_INFO).into()));
}

#[test]
fn info_hash_covers_keys_this_module_does_not_know() {
    // An unknown key inside `info` is part of the hash; one outside is not.
    let info = b"d6:lengthi20000e4:name8:test.txt12:piece lengthi16384e\
        6:pieces40:AAAAAAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBBBBB6:sourcel3:abcee";
    let a = parse(&[&b"d4:info"[..], info, b"e"].concat());
    let b = parse(&[&b"d4:info"[..], info, b"6:x-tool3:fooe"].concat());
    assert_eq!(&a.info_bytes[..], &info[..]);
    assert_eq!(a.info_hash, InfoHash(Sha1::digest(info).into()));
    assert_eq!(a.info_hash, b.info_hash);
    assert_ne!(a.info_hash.to_string(), HAND_INFO_SHA1);
}

#[test]
fn multi_file_with_nested_directories_an_empty_file_and_spaces() {
    let files = vec![
        file(&["cd 1", "01 intro.flac"], 20000),
        file(&["cd 1", "empty.txt"], 0),
        file(&["cover.jpg"], 5000),
        file(&["cd 2", "deep", "er", "x.bin"], 100_000),
    ];
    let pieces = hashes(8); // ceil(125000 / 16384)
    let info = DictBuilder::new()
        .insert(b"files", Value::List(files))
        .insert(b"name", s("My Album (2024)"))
        .insert(b"piece length", Value::Int(16384))
        .insert(b"pieces", Value::Bytes(&pieces))
        .build();
    let m = parse(&torrent(info));
    assert!(m.info.multi_file);
    assert_eq!(
        paths(&m),
        [
            "My Album (2024)/cd 1/01 intro.flac",
            "My Album (2024)/cd 1/empty.txt",
            "My Album (2024)/cover.jpg",
            "My Album (2024)/cd 2/deep/er/x.bin",
        ]
    );
    assert_eq!(m.info.files[3].path.len(), 5);
    let lens: Vec<u64> = m.info.files.iter().map(|f| f.length).collect();
    assert_eq!(lens, [20000, 0, 5000, 100_000]);
    assert_eq!(m.total_length(), 125_000);
    assert_eq!(m.num_pieces(), 8);
    assert_eq!(m.layout().num_files(), 4);
    assert_eq!(m.layout().file_pieces(1), 0..0);
    assert_eq!(m.layout().file_pieces(2), 1..2);
    assert_eq!(m.piece_hash(7), Some([7; 20]));
}

#[test]
fn announce_list_tiers() {
    let pieces = hashes(1);
    let with = |top: Vec<(&'static [u8], Value<'static>)>| {
        let mut d = DictBuilder::new().insert(
            b"info",
            info_with(&pieces, vec![(b"length", Value::Int(1))]),
        );
        for (k, v) in top {
            d = d.insert(k, v);
        }
        parse(&bencode::encode(&d.build())).trackers
    };
    let tiers = Value::List(vec![
        strs(&["udp://a.example:1", "http://b.example/announce"]),
        Value::List(vec![]),
        Value::List(vec![s("http://c.example/"), Value::Int(5), s("")]),
        Value::List(vec![Value::Int(1)]),
        s("not a tier"),
    ]);
    assert_eq!(
        with(vec![
            (b"announce", s("http://ignored.example/")),
            (b"announce-list", tiers)
        ]),
        vec![
            vec!["udp://a.example:1", "http://b.example/announce"],
            vec!["http://c.example/"],
        ]
    );
    // An announce-list with nothing usable falls back to `announce`.
    assert_eq!(
        with(vec![
            (b"announce", s("http://only.example/")),
            (b"announce-list", Value::List(vec![Value::List(vec![])])),
        ]),
        vec![vec!["http://only.example/"]]
    );
    assert_eq!(
        with(vec![(b"announce-list", s("garbage"))]),
        Vec::<Vec<String>>::new()
    );
    assert_eq!(with(vec![]), Vec::<Vec<String>>::new());
}

#[test]
fn informational_fields_are_read_and_malformed_ones_ignored() {
    let pieces = hashes(1);
    let info = info_with(&pieces, vec![(b"length", Value::Int(10))]);
    let good = DictBuilder::new()
        .insert(b"comment", s("hello, world"))
        .insert(b"created by", s("tessera 0.1"))
        .insert(b"creation date", Value::Int(1_700_000_000))
        .insert(b"info", info.clone())
        .build();
    let m = parse(&bencode::encode(&good));
    assert_eq!(m.comment.as_deref(), Some("hello, world"));
    assert_eq!(m.created_by.as_deref(), Some("tessera 0.1"));
    assert_eq!(m.creation_date, Some(1_700_000_000));

    let odd = DictBuilder::new()
        .insert(b"comment", Value::Int(3))
        .insert(b"created by", Value::Bytes(b"caf\xe9"))
        .insert(b"creation date", s("yesterday"))
        .insert(b"info", info)
        .build();
    let m = parse(&bencode::encode(&odd));
    assert_eq!(m.comment, None);
    assert_eq!(m.created_by.as_deref(), Some("caf\u{fffd}"));
    assert_eq!(m.creation_date, None);
}

#[test]
fn private_flag() {
    let pieces = hashes(1);
    let with_private = |p: Option<Value<'static>>| {
        let mut rest = vec![(&b"length"[..], Value::Int(100))];
        if let Some(p) = p {
            rest.push((b"private", p));
        }
        parse(&torrent(info_with(&pieces, rest))).info.private
    };
    assert!(with_private(Some(Value::Int(1))));
    assert!(!with_private(Some(Value::Int(0))));
    assert!(!with_private(None));
}

#[test]
fn utf8_variants_are_preferred() {
    let pieces = hashes(1);
    let entry = DictBuilder::new()
        .insert(b"length", Value::Int(10))
        .insert(b"path", Value::List(vec![Value::Bytes(b"caf\xe9.txt")]))
        .insert(b"path.utf-8", strs(&["café.txt"]))
        .build();
    let info = DictBuilder::new()
        .insert(b"files", Value::List(vec![entry]))
        .insert(b"name", Value::Bytes(b"r\xe9sum\xe9"))
        .insert(b"name.utf-8", s("résumé"))
        .insert(b"piece length", Value::Int(16384))
        .insert(b"pieces", Value::Bytes(&pieces))
        .build();
    let m = parse(&torrent(info));
    assert_eq!(m.info.name, "résumé");
    assert_eq!(paths(&m), ["résumé/café.txt"]);

    // Without the UTF-8 variants the same torrent is rejected, not mangled.
    let info = info_with(
        &pieces,
        vec![(
            b"files",
            Value::List(vec![
                DictBuilder::new()
                    .insert(b"length", Value::Int(10))
                    .insert(b"path", Value::List(vec![Value::Bytes(b"caf\xe9.txt")]))
                    .build(),
            ]),
        )],
    );
    assert!(matches!(
        err(&torrent(info)),
        MetainfoError::WrongType { field: "path", .. }
    ));
}

#[test]
fn bep47_attributes() {
    let m = parse(&multi(vec![
        file_attr(&["run.sh"], 100, "x"),
        file_attr(&[".pad", "16284"], 16284, "p"),
        file_attr(&["data"], 100, "hq"),
    ]));
    let flags: Vec<(bool, bool)> = m
        .info
        .files
        .iter()
        .map(|f| (f.padding, f.executable))
        .collect();
    assert_eq!(flags, [(false, true), (true, false), (false, false)]);
    // Padding files are part of the byte stream.
    assert_eq!(m.total_length(), 16484);
    assert_eq!(m.layout().file_pieces(2), 1..2);

    let pieces = hashes(1);
    let info = info_with(
        &pieces,
        vec![(b"attr", s("xp")), (b"length", Value::Int(10))],
    );
    let f = &parse(&torrent(info)).info.files[0];
    assert!(f.executable);
    assert!(!f.padding, "a single file is never padding");

    // Symlinks may leave out their length.
    let link = DictBuilder::new()
        .insert(b"attr", s("l"))
        .insert(b"path", strs(&["link"]))
        .insert(b"symlink path", strs(&["data"]))
        .build();
    let m = parse(&multi(vec![link, file(&["data"], 5)]));
    assert_eq!(m.info.files[0].length, 0);
}

#[test]
fn identical_padding_paths_are_allowed() {
    // libtorrent hybrid torrents: several `.pad/<size>` with the same size.
    let m = parse(&multi(vec![
        file(&["a"], 100),
        file_attr(&[".pad", "16284"], 16284, "p"),
        file(&["b"], 100),
        file_attr(&[".pad", "16284"], 16284, "p"),
        file(&["c"], 100),
    ]));
    assert_eq!(m.info.files.iter().filter(|f| f.padding).count(), 2);
    // Padding paths that nest are harmless too: padding is never written.
    parse(&multi(vec![
        file(&["a"], 100),
        file_attr(&[".pad"], 16284, "p"),
        file(&["b"], 100),
        file_attr(&[".pad", "x"], 16284, "p"),
        file(&["c"], 100),
    ]));
}

#[test]
fn padding_paths_may_not_meet_real_files() {
    for files in [
        // The same path.
        vec![
            file(&["a"], 100),
            file_attr(&[".pad", "1"], 1, "p"),
            file(&[".pad", "1"], 100),
        ],
        vec![file(&[".pad", "1"], 100), file_attr(&[".pad", "1"], 1, "p")],
        // A real file where padding needs a directory, with padding in between.
        vec![
            file(&[".pad"], 100),
            file_attr(&[".pad", "1"], 1, "p"),
            file_attr(&[".pad", "1"], 1, "p"),
        ],
        // Padding where a real file needs a directory, with other padding in between.
        vec![
            file_attr(&["x"], 1, "p"),
            file_attr(&["x", "a"], 1, "p"),
            file(&["x", "b"], 100),
        ],
    ] {
        assert!(
            matches!(err(&multi(files)), MetainfoError::DuplicatePath(_)),
            "accepted"
        );
    }
}

#[test]
fn large_single_file() {
    // 1 TiB in 256 MiB pieces.
    let length = 1i64 << 40;
    let pieces = hashes(4096);
    let info = |piece_length: i64| {
        DictBuilder::new()
            .insert(b"length", Value::Int(length))
            .insert(b"name", s("big.img"))
            .insert(b"piece length", Value::Int(piece_length))
            .insert(b"pieces", Value::Bytes(&pieces))
            .build()
    };
    let m = parse(&torrent(info(256 << 20)));
    assert_eq!(m.total_length(), 1 << 40);
    assert_eq!(m.num_pieces(), 4096);
    assert_eq!(m.layout().piece_len(4095), 256 << 20);
    // The same hashes are far too few for 16 KiB pieces.
    assert_eq!(
        err(&torrent(info(16384))),
        MetainfoError::PieceCount {
            got: 4096,
            expected: 1 << 26,
            total: 1 << 40,
            piece_length: 16384
        }
    );
}

#[test]
fn encode_round_trip_and_tracker_keys() {
    let t = NewTorrent {
        name: "album".into(),
        files: vec![
            (vec!["a".into(), "1.flac".into()], 30000),
            (vec!["b.txt".into()], 0),
            (vec!["c".into()], 4000),
        ],
        length: 0,
        piece_length: 16384,
        pieces: vec![[1; 20], [2; 20], [3; 20]], // 34000 bytes
        private: true,
        trackers: vec![vec!["http://a/".into()], vec![], vec!["udp://b:1".into()]],
        comment: Some("c".into()),
        created_by: Some("tessera".into()),
        creation_date: Some(-5),
    };
    let bytes = t.encode();
    // Canonical: decoding and re-encoding changes nothing.
    assert_eq!(bencode::encode(&bencode::decode(&bytes).unwrap()), bytes);
    let top = bencode::decode(&bytes).unwrap();
    assert_eq!(
        top.get(b"announce").and_then(Value::as_str),
        Some("http://a/")
    );
    assert_eq!(
        top.get(b"announce-list"),
        Some(&Value::List(vec![
            strs(&["http://a/"]),
            strs(&["udp://b:1"])
        ]))
    );
    let m = parse(&bytes);
    assert_eq!(m.info.name, "album");
    assert_eq!(paths(&m), ["album/a/1.flac", "album/b.txt", "album/c"]);
    assert_eq!(m.info.pieces, t.pieces);
    assert!(m.info.private);
    assert!(m.info.multi_file);
    assert_eq!(m.trackers, vec![vec!["http://a/"], vec!["udp://b:1"]]);
    assert_eq!(m.comment.as_deref(), Some("c"));
    assert_eq!(m.created_by.as_deref(), Some("tessera"));
    assert_eq!(m.creation_date, Some(-5));

    // One tracker: `announce` only. Not private: no `private` key.
    let one = NewTorrent {
        files: vec![],
        length: 5,
        pieces: vec![[9; 20]],
        private: false,
        trackers: vec![vec!["http://a/".into()]],
        ..t
    };
    let bytes = one.encode();
    let top = bencode::decode(&bytes).unwrap();
    assert_eq!(top.get(b"announce-list"), None);
    assert_eq!(top.get(b"info").and_then(|i| i.get(b"private")), None);
    let m = parse(&bytes);
    assert_eq!(m.trackers, vec![vec!["http://a/"]]);
    assert_eq!(paths(&m), ["album"]);
    assert!(!m.info.multi_file);
}

// --- one rejection per rule --------------------------------------------------------

fn assert_unsafe(bytes: &[u8]) {
    let e = err(bytes);
    assert!(
        matches!(e, MetainfoError::UnsafePath { .. }),
        "expected UnsafePath, got {e:?}"
    );
}

#[test]
fn rejects_dot_dot_and_dot_components() {
    assert_unsafe(&multi(vec![file(&["..", "etc", "passwd"], 10)]));
    assert_unsafe(&multi(vec![file(&["a", "..", "..", "x"], 10)]));
    assert_unsafe(&multi(vec![file(&["."], 10)]));
    let pieces = hashes(1);
    for name in ["..", "."] {
        let info = DictBuilder::new()
            .insert(b"length", Value::Int(10))
            .insert(b"name", s(name))
            .insert(b"piece length", Value::Int(16384))
            .insert(b"pieces", Value::Bytes(&pieces))
            .build();
        assert_unsafe(&torrent(info));
    }
}

#[test]
fn rejects_absolute_and_empty_components() {
    assert_unsafe(&multi(vec![file(&["/etc", "passwd"], 10)]));
    assert_unsafe(&multi(vec![file(&["a/../../b"], 10)]));
    // `["", "etc"]` is what splitting "/etc" on `/` gives.
    assert_unsafe(&multi(vec![file(&["", "etc"], 10)]));
    assert_unsafe(&multi(vec![file(&["a", ""], 10)]));
    // An empty path list.
    assert_unsafe(&multi(vec![file(&[], 10)]));
    let pieces = hashes(1);
    for name in ["", "/", "/etc"] {
        let info = DictBuilder::new()
            .insert(b"length", Value::Int(10))
            .insert(b"name", s(name))
            .insert(b"piece length", Value::Int(16384))
            .insert(b"pieces", Value::Bytes(&pieces))
            .build();
        assert_unsafe(&torrent(info));
    }
}

#[test]
fn rejects_backslash() {
    assert_unsafe(&multi(vec![file(&["..\\..\\windows", "x"], 10)]));
    assert_unsafe(&multi(vec![file(&["\\\\server\\share"], 10)]));
}

#[test]
fn rejects_windows_drive() {
    assert_unsafe(&multi(vec![file(&["C:", "x"], 10)]));
    assert_unsafe(&multi(vec![file(&["a", "c:evil.exe"], 10)]));
    let pieces = hashes(1);
    let info = DictBuilder::new()
        .insert(b"length", Value::Int(10))
        .insert(b"name", s("D:"))
        .insert(b"piece length", Value::Int(16384))
        .insert(b"pieces", Value::Bytes(&pieces))
        .build();
    assert_unsafe(&torrent(info));
    // A colon elsewhere is an ordinary character.
    let m = parse(&multi(vec![file(&["Part 1: the start"], 10)]));
    assert_eq!(paths(&m), ["dir/Part 1: the start"]);
}

#[test]
fn rejects_nul() {
    assert_unsafe(&multi(vec![file(&["evil\0.txt"], 10)]));
}

#[test]
fn rejects_duplicate_paths() {
    assert_eq!(
        err(&multi(vec![
            file(&["a", "b"], 10),
            file(&["c"], 10),
            file(&["a", "b"], 10),
        ])),
        MetainfoError::DuplicatePath("dir/a/b".into())
    );
    // Zero-length duplicates too: both would be created.
    assert!(matches!(
        err(&multi(vec![file(&["a"], 0), file(&["a"], 1)])),
        MetainfoError::DuplicatePath(_)
    ));
}

#[test]
fn rejects_file_and_directory_collision() {
    for files in [
        vec![file(&["a"], 10), file(&["a", "b"], 10)],
        vec![file(&["a", "b", "c"], 10), file(&["a", "b"], 10)],
        vec![
            file(&["a", "b", "c"], 10),
            file(&["a", "bb"], 10),
            file(&["a", "b", "d"], 10),
            file(&["a"], 10),
        ],
    ] {
        assert!(matches!(
            err(&multi(files)),
            MetainfoError::DuplicatePath(_)
        ));
    }
    // Siblings sharing a directory, and names that are prefixes as strings only, are fine.
    parse(&multi(vec![
        file(&["a", "b"], 10),
        file(&["a", "c"], 10),
        file(&["ab"], 10),
        file(&["a b"], 10),
    ]));
}

#[test]
fn rejects_bad_piece_lengths() {
    for bad in [0, -16384, 1, 20000, 8192, 16385, 512 << 20, 1 << 40] {
        let pieces = hashes(1);
        let info = DictBuilder::new()
            .insert(b"length", Value::Int(10))
            .insert(b"name", s("x"))
            .insert(b"piece length", Value::Int(bad))
            .insert(b"pieces", Value::Bytes(&pieces))
            .build();
        assert_eq!(err(&torrent(info)), MetainfoError::BadPieceLength(bad));
    }
    for good in [16384, 1 << 20, 256 << 20] {
        let pieces = hashes(1);
        let info = DictBuilder::new()
            .insert(b"length", Value::Int(10))
            .insert(b"name", s("x"))
            .insert(b"piece length", Value::Int(good))
            .insert(b"pieces", Value::Bytes(&pieces))
            .build();
        assert_eq!(parse(&torrent(info)).info.piece_length, good as u32);
    }
}

#[test]
fn rejects_wrong_hash_count() {
    assert_eq!(
        err(&single(20000, 1)),
        MetainfoError::PieceCount {
            got: 1,
            expected: 2,
            total: 20000,
            piece_length: 16384
        }
    );
    assert!(matches!(
        err(&single(20000, 3)),
        MetainfoError::PieceCount { got: 3, .. }
    ));
    assert!(matches!(
        err(&multi_with(vec![file(&["a"], 16384), file(&["b"], 1)], 1)),
        MetainfoError::PieceCount { expected: 2, .. }
    ));
    // Exactly one piece's worth needs one hash, not two.
    assert_eq!(parse(&single(16384, 1)).num_pieces(), 1);
}

#[test]
fn rejects_pieces_not_multiple_of_20() {
    let info = info_with(&[0; 39], vec![(b"length", Value::Int(20000))]);
    assert_eq!(
        err(&torrent(info)),
        MetainfoError::PiecesNotMultipleOf20(39)
    );
}

#[test]
fn rejects_negative_length() {
    assert!(matches!(
        err(&single(-1, 0)),
        MetainfoError::Invalid {
            field: "length",
            ..
        }
    ));
    assert!(matches!(
        err(&multi_with(vec![file(&["a"], 20000), file(&["b"], -5)], 1)),
        MetainfoError::Invalid {
            field: "length",
            ..
        }
    ));
}

#[test]
fn rejects_huge_lengths() {
    // Beyond 64 bits in the file itself.
    let info = b"d6:lengthi99999999999999999999e4:name1:x12:piece lengthi16384e6:pieces0:e";
    assert!(matches!(
        err(&[&b"d4:info"[..], info, b"e"].concat()),
        MetainfoError::Bencode(BencodeError::IntegerOverflow(_))
    ));
    // Each fits, the sum does not.
    assert!(matches!(
        err(&multi_with(
            vec![
                file(&["a"], i64::MAX),
                file(&["b"], i64::MAX),
                file(&["c"], i64::MAX),
            ],
            1
        )),
        MetainfoError::Invalid {
            field: "length",
            ..
        }
    ));
    // Fits in 64 bits but needs more hashes than any file could hold.
    assert!(matches!(
        err(&single(i64::MAX, 1)),
        MetainfoError::PieceCount { .. }
    ));
}

#[test]
fn rejects_a_torrent_without_data() {
    assert!(matches!(
        err(&single(0, 0)),
        MetainfoError::Invalid {
            field: "length",
            ..
        }
    ));
    assert!(matches!(
        err(&multi_with(vec![file(&["a"], 0), file(&["b"], 0)], 0)),
        MetainfoError::Invalid {
            field: "length",
            ..
        }
    ));
}

#[test]
fn rejects_malformed_structure() {
    let pieces = hashes(1);
    let cases: Vec<(Vec<u8>, MetainfoError)> = vec![
        (
            torrent(info_with(&pieces, vec![])),
            MetainfoError::Missing("length` or `files"),
        ),
        (
            torrent(info_with(
                &pieces,
                vec![
                    (b"length", Value::Int(10)),
                    (b"files", Value::List(vec![file(&["a"], 10)])),
                ],
            )),
            MetainfoError::Invalid {
                field: "info",
                reason: "has both `length` and `files`".into(),
            },
        ),
        (
            multi_with(vec![], 0),
            MetainfoError::Invalid {
                field: "files",
                reason: "the list is empty".into(),
            },
        ),
        (
            multi_with(vec![s("a")], 1),
            MetainfoError::WrongType {
                field: "files",
                expected: "a list of dictionaries",
            },
        ),
        (
            multi_with(
                vec![DictBuilder::new().insert(b"length", Value::Int(1)).build()],
                1,
            ),
            MetainfoError::Missing("path"),
        ),
        (
            multi_with(
                vec![DictBuilder::new().insert(b"path", strs(&["a"])).build()],
                1,
            ),
            MetainfoError::Missing("length"),
        ),
        (
            bencode::encode(
                &DictBuilder::new()
                    .insert(b"announce", s("http://a/"))
                    .build(),
            ),
            MetainfoError::Missing("info"),
        ),
        (
            bencode::encode(&DictBuilder::new().insert(b"info", s("x")).build()),
            MetainfoError::WrongType {
                field: "info",
                expected: "a dictionary",
            },
        ),
        (
            torrent(
                DictBuilder::new()
                    .insert(b"length", Value::Int(1))
                    .insert(b"piece length", Value::Int(16384))
                    .insert(b"pieces", Value::Bytes(&pieces))
                    .build(),
            ),
            MetainfoError::Missing("name"),
        ),
        (
            torrent(
                DictBuilder::new()
                    .insert(b"length", Value::Int(1))
                    .insert(b"name", Value::Bytes(b"\xff"))
                    .insert(b"piece length", Value::Int(16384))
                    .insert(b"pieces", Value::Bytes(&pieces))
                    .build(),
            ),
            MetainfoError::WrongType {
                field: "name",
                expected: "a UTF-8 string",
            },
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(err(&bytes), expected, "{}", String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn rejects_non_dictionaries() {
    for bytes in [&b"li1ee"[..], b"i1e", b"4:spam", b"le"] {
        assert_eq!(err(bytes), MetainfoError::NotADictionary);
    }
    assert_eq!(err(b""), MetainfoError::Bencode(BencodeError::Empty));
    assert!(matches!(err(b"x"), MetainfoError::Bencode(_)));
    assert!(matches!(err(b"e"), MetainfoError::Bencode(_)));
}

#[test]
fn rejects_truncated_files() {
    let full = hand_torrent();
    for len in 0..full.len() {
        assert!(
            Metainfo::from_bytes(&full[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    parse(&full);
}

#[test]
fn rejects_trailing_bytes() {
    for tail in [&b"i0e"[..], b"e", b"de", b"x"] {
        let bytes = [hand_torrent(), tail.to_vec()].concat();
        assert!(matches!(err(&bytes), MetainfoError::Bencode(_)));
    }
}

#[test]
fn rejects_unsorted_keys() {
    let bytes = [&b"d4:info"[..], HAND_INFO, b"8:announce1:xe"].concat();
    assert!(matches!(err(&bytes), MetainfoError::Bencode(_)));
}

#[test]
fn rejects_deep_nesting() {
    let deep = |depth: usize| [vec![b'l'; depth], vec![b'e'; depth]].concat();
    // Under an unknown top-level key, which is skipped without being built.
    let bytes = [&b"d4:info"[..], HAND_INFO, b"1:z", &deep(100_000), b"e"].concat();
    assert!(matches!(err(&bytes), MetainfoError::Bencode(_)));
    // Inside `info`.
    let info = [
        &b"d6:lengthi20000e4:name8:test.txt12:piece lengthi16384e\
            6:pieces40:AAAAAAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBBBBB1:z"[..],
        &deep(MAX_DEPTH + 1),
        b"e",
    ]
    .concat();
    let bytes = [&b"d4:info"[..], &info, b"e"].concat();
    assert!(matches!(err(&bytes), MetainfoError::Bencode(_)));
    // Nesting that stays within the limit is fine.
    let bytes = [&b"d4:info"[..], HAND_INFO, b"1:z", &deep(8), b"e"].concat();
    parse(&bytes);
}

#[test]
fn rejects_oversized_input() {
    let bytes = vec![b'd'; MAX_TORRENT_FILE + 1];
    assert_eq!(err(&bytes), MetainfoError::TooLarge(MAX_TORRENT_FILE + 1));
}

#[test]
fn deep_paths_are_checked_quickly() {
    // 200 000 components in one path and a sibling: no quadratic work, no deep recursion.
    let deep: Vec<&str> = vec!["a"; 200_000];
    let mut other = deep.clone();
    other.push("b");
    let m = parse(&multi(vec![file(&deep, 10), file(&["x"], 10)]));
    assert_eq!(m.info.files[0].path.len(), 200_001);
    assert!(matches!(
        err(&multi(vec![file(&deep, 10), file(&other, 10)])),
        MetainfoError::DuplicatePath(_)
    ));
}
