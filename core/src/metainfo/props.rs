//! Property tests: whatever `create` encodes parses back to the same fields; no accepted
//! path can leave the download directory.

use super::tests::{file, file_attr, multi};
use super::*;
use proptest::prelude::*;

/// Independent of `component_problem`: as a path of its own, each component must be
/// exactly one normal component, itself; and none may mean anything special on Windows
/// (which `std::path` on Unix does not know about).
fn is_safe_path(components: &[String]) -> bool {
    use std::ffi::OsStr;
    use std::path::{Component, Path};
    components.iter().all(|c| {
        let mut parts = Path::new(c).components();
        let single = matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(n)), None) if n == OsStr::new(c)
        );
        let drive = matches!(c.as_bytes(), [l, b':', ..] if l.is_ascii_alphabetic());
        single && !drive && !c.contains(['\\', '\0'])
    })
}

fn arb_component() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _.é日-]{1,10}".prop_filter("not . or ..", |c| c != "." && c != "..")
}

fn arb_new_torrent() -> impl Strategy<Value = NewTorrent> {
    let files = prop::collection::vec(
        (
            prop::collection::vec(arb_component(), 1..4),
            prop_oneof![Just(0u64), 1u64..100_000, 1u64..10_000_000],
        ),
        0..6,
    );
    let trackers = prop::collection::vec(
        prop::collection::vec("(http|udp)://[a-z]{1,8}\\.example(:[0-9]{1,5})?/a", 1..3),
        0..3,
    );
    (
        arb_component(),
        files,
        1u64..20_000_000,
        14u32..=24,
        any::<bool>(),
        trackers,
        prop::option::of(".{0,20}"),
        prop::option::of(".{0,20}"),
        prop::option::of(any::<i64>()),
        any::<u64>(),
    )
        .prop_map(
            |(
                name,
                files,
                length,
                shift,
                private,
                trackers,
                comment,
                created_by,
                creation_date,
                seed,
            )| {
                // Drop files whose path clashes with an earlier one.
                let mut kept: Vec<(Vec<String>, u64)> = Vec::new();
                for (path, len) in files {
                    if !kept
                        .iter()
                        .any(|(k, _)| k.starts_with(&path) || path.starts_with(k))
                    {
                        kept.push((path, len));
                    }
                }
                if let Some(first) = kept.first_mut() {
                    first.1 += 1; // never a torrent without data
                }
                let total = if kept.is_empty() {
                    length
                } else {
                    kept.iter().map(|f| f.1).sum()
                };
                let piece_length = 1u32 << shift;
                let n = total.div_ceil(u64::from(piece_length));
                let pieces = (0..n)
                    .map(|i| {
                        let mut h = [0u8; 20];
                        h[..8].copy_from_slice(&(seed ^ i).to_le_bytes());
                        h[12..].copy_from_slice(&i.to_be_bytes());
                        h
                    })
                    .collect();
                NewTorrent {
                    name,
                    files: kept,
                    length,
                    piece_length,
                    pieces,
                    private,
                    trackers,
                    comment,
                    created_by,
                    creation_date,
                }
            },
        )
}

/// Paths from a small alphabet, so that clashes are common, with a few hostile
/// components (and empty paths) mixed in.
fn arb_clashing_path() -> impl Strategy<Value = Vec<&'static str>> {
    let safe = prop::sample::select(vec!["a", "b", ".pad", "16"]);
    let hostile = prop::sample::select(vec![
        "..", ".", "", "x/y", "/", "x\\y", "C:", "nul\0", "a:b",
    ]);
    let component = prop_oneof![30 => safe, 1 => hostile];
    prop_oneof![
        1 => Just(Vec::new()),
        30 => prop::collection::vec(component, 1..4),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        dict in any::<bool>(),
    ) {
        let bytes = if dict { [&b"d4:infod"[..], &bytes].concat() } else { bytes };
        let _ = Metainfo::from_bytes(&bytes);
    }

    #[test]
    fn new_torrents_round_trip(t in arb_new_torrent()) {
        let bytes = t.encode();
        let m = Metainfo::from_bytes(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&m.info.name, &t.name);
        prop_assert_eq!(m.info.piece_length, t.piece_length);
        prop_assert_eq!(&m.info.pieces, &t.pieces);
        prop_assert_eq!(m.info.private, t.private);
        prop_assert_eq!(m.info.multi_file, !t.files.is_empty());
        let expected: Vec<FileEntry> = if t.files.is_empty() {
            vec![FileEntry { path: vec![t.name.clone()], length: t.length, padding: false, executable: false }]
        } else {
            t.files.iter().map(|(path, length)| FileEntry {
                path: std::iter::once(t.name.clone()).chain(path.iter().cloned()).collect(),
                length: *length,
                padding: false,
                executable: false,
            }).collect()
        };
        prop_assert_eq!(&m.info.files, &expected);
        prop_assert_eq!(m.total_length(), expected.iter().map(|f| f.length).sum::<u64>());
        prop_assert_eq!(&m.trackers, &t.trackers);
        prop_assert_eq!(&m.comment, &t.comment);
        prop_assert_eq!(&m.created_by, &t.created_by);
        prop_assert_eq!(m.creation_date, t.creation_date);
        prop_assert_eq!(m.info_hash, InfoHash(Sha1::digest(&m.info_bytes).into()));
        prop_assert_eq!(bencode::encode(&bencode::decode(&bytes).unwrap()), bytes);
    }

    #[test]
    fn mutated_torrents_never_panic(
        t in arb_new_torrent(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = t.encode();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        if let Ok(m) = Metainfo::from_bytes(&bytes) {
            for f in &m.info.files {
                prop_assert!(is_safe_path(&f.path), "unsafe path accepted: {:?}", f.path);
            }
        }
    }

    /// Against a naive oracle: unsafe components are always rejected; otherwise two files
    /// clash when one's path is the other's or a directory of it, unless both are padding.
    #[test]
    fn paths_are_judged_like_the_naive_oracle(
        files in prop::collection::vec(
            (arb_clashing_path(), any::<bool>(), 0i64..40_000),
            1..7,
        ),
    ) {
        let values: Vec<Value<'_>> = files
            .iter()
            .map(|(path, padding, len)| {
                if *padding { file_attr(path, *len, "p") } else { file(path, *len) }
            })
            .collect();
        let result = Metainfo::from_bytes(&multi(values));

        let unsafe_path = files.iter().any(|(path, _, _)| {
            let full: Vec<String> = std::iter::once("dir").chain(path.iter().copied()).map(String::from).collect();
            path.is_empty() || !is_safe_path(&full)
        });
        let mut clash = false;
        for (i, (p, pad_p, _)) in files.iter().enumerate() {
            for (j, (q, pad_q, _)) in files.iter().enumerate() {
                if i != j && q.starts_with(p) && !(*pad_p && *pad_q) {
                    clash = true;
                }
            }
        }
        let no_data = files.iter().all(|f| f.2 == 0);

        if unsafe_path {
            prop_assert!(matches!(result, Err(MetainfoError::UnsafePath { .. })), "{:?}", result);
        } else if clash {
            prop_assert!(matches!(result, Err(MetainfoError::DuplicatePath(_))), "{:?}", result);
        } else if no_data {
            prop_assert!(matches!(result, Err(MetainfoError::Invalid { field: "length", .. })), "{:?}", result);
        } else {
            let m = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(m.info.files.len(), files.len());
            for (f, (_, padding, _)) in m.info.files.iter().zip(&files) {
                prop_assert_eq!(f.padding, *padding);
                prop_assert!(is_safe_path(&f.path));
            }
        }
    }
}
