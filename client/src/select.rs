//! `download --only`: which files of a torrent to download.
//!
//! Each `--only` value is either a file index as `info` numbers them (`3`), a range of them
//! (`3-5`), or a glob on the file's path inside the torrent (below the torrent's name, `/`
//! between directories; a single-file torrent's one file is its name):
//!
//! - `*` matches any run of characters but `/`, `?` one character but `/`, `**` any run
//!   including `/`, `[abc]`, `[a-z]` and `[!a-z]` one character of (not of) a set, and `\`
//!   makes the next character literal;
//! - a pattern without `/` is matched against the file name only, in any directory
//!   (`*.iso`); with a `/` it must match the whole path (`disc 1/*.flac`).
//!
//! A file is chosen when any value selects it. A value that selects nothing is an error,
//! and so is choosing only padding files.

use tessera_core::Metainfo;

use crate::error::Error;

/// The chosen files (one flag per file of the torrent), or `None` for all of them when
/// there are no patterns.
pub fn choose(meta: &Metainfo, patterns: &[String]) -> Result<Option<Vec<bool>>, Error> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let files = &meta.info.files;
    let mut chosen = vec![false; files.len()];
    for pattern in patterns {
        let mut any = false;
        if let Some((from, to)) = index_range(pattern) {
            if to >= files.len() || from > to {
                return Err(Error::other(format!(
                    "--only {pattern}: the torrent's files are numbered 0 to {} (see `info`)",
                    files.len().saturating_sub(1)
                )));
            }
            for (i, c) in chosen.iter_mut().enumerate().take(to + 1).skip(from) {
                if !files[i].padding {
                    *c = true;
                    any = true;
                }
            }
        } else {
            let glob: Vec<char> = pattern.chars().collect();
            let whole_path = pattern.contains('/');
            for (i, _) in files.iter().enumerate().filter(|(_, f)| !f.padding) {
                let inside = inside_path(meta, i);
                let subject = if whole_path {
                    inside.as_str()
                } else {
                    inside.rsplit('/').next().unwrap_or_default()
                };
                let subject: Vec<char> = subject.chars().collect();
                if matches(&glob, &subject) {
                    chosen[i] = true;
                    any = true;
                }
            }
        }
        if !any {
            return Err(Error::other(format!(
                "--only {pattern:?} matches no file of the torrent (see `info` for paths and numbers)"
            )));
        }
    }
    Ok(Some(chosen))
}

/// The path of file `i` inside the torrent: below the name for a multi-file torrent.
pub fn inside_path(meta: &Metainfo, i: usize) -> String {
    let path = &meta.info.files[i].path;
    if meta.info.multi_file && path.len() > 1 {
        path[1..].join("/")
    } else {
        path.join("/")
    }
}

/// `N` or `N-M` (decimal).
fn index_range(s: &str) -> Option<(usize, usize)> {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    match s.split_once('-') {
        None if digits(s) => {
            let n = s.parse().ok()?;
            Some((n, n))
        }
        Some((a, b)) if digits(a) && digits(b) => Some((a.parse().ok()?, b.parse().ok()?)),
        _ => None,
    }
}

/// Glob matching as described in the module docs (backtracking; patterns are short).
fn matches(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') if p.get(1) == Some(&'*') => {
            let rest = &p[2..];
            // `**/` also matches no directory at all.
            if rest.first() == Some(&'/') && matches(&rest[1..], s) {
                return true;
            }
            (0..=s.len()).any(|k| matches(rest, &s[k..]))
        }
        Some('*') => {
            let rest = &p[1..];
            for k in 0..=s.len() {
                if matches(rest, &s[k..]) {
                    return true;
                }
                if s.get(k) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Some('?') => s.first().is_some_and(|&c| c != '/') && matches(&p[1..], &s[1..]),
        Some('[') => match class(&p[1..]) {
            Some((set, negated, used)) => {
                s.first().is_some_and(|&c| {
                    c != '/' && (set.iter().any(|&(lo, hi)| lo <= c && c <= hi) != negated)
                }) && matches(&p[1 + used..], &s[1..])
            }
            // No closing bracket: a literal `[`.
            None => s.first() == Some(&'[') && matches(&p[1..], &s[1..]),
        },
        Some('\\') if p.len() > 1 => s.first() == Some(&p[1]) && matches(&p[2..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && matches(&p[1..], &s[1..]),
    }
}

/// A `[...]` set: inclusive character ranges, whether negated, and how many pattern
/// characters it took after the `[` (the closing `]` included).
type Class = (Vec<(char, char)>, bool, usize);

/// The character class after a `[`, if it is closed.
fn class(p: &[char]) -> Option<Class> {
    let mut i = 0;
    let negated = matches!(p.first(), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut set = Vec::new();
    let mut first = true;
    loop {
        let c = *p.get(i)?;
        if c == ']' && !first {
            return Some((set, negated, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            set.push((c, p[i + 2]));
            i += 3;
        } else {
            set.push((c, c));
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::torrent;

    fn glob(p: &str, s: &str) -> bool {
        let p: Vec<char> = p.chars().collect();
        let s: Vec<char> = s.chars().collect();
        matches(&p, &s)
    }

    #[test]
    fn globs() {
        assert!(glob("*.bin", "a.bin"));
        assert!(!glob("*.bin", "d/a.bin"));
        assert!(glob("d/*.bin", "d/a.bin"));
        assert!(glob("**/a.bin", "a.bin"));
        assert!(glob("**/a.bin", "x/y/a.bin"));
        assert!(glob("x/**", "x/y/a.bin"));
        assert!(glob("x/**.bin", "x/y/a.bin"));
        assert!(!glob("x/*", "x/y/a.bin"));
        assert!(glob("?.bin", "a.bin"));
        assert!(!glob("?.bin", "ab.bin"));
        assert!(glob("[ab].bin", "b.bin"));
        assert!(!glob("[!ab].bin", "b.bin"));
        assert!(glob("[a-c]*", "bee"));
        assert!(glob("[]]", "]"));
        assert!(glob("\\*", "*"));
        assert!(!glob("\\*", "a"));
        assert!(glob("[x", "[x"));
        assert!(glob("with space.dat", "with space.dat"));
        assert!(!glob("a", "ab"));
    }

    #[test]
    fn choose_by_glob_and_index() {
        let t = torrent(
            "set",
            &[
                ("a.bin", 100, false),
                (".pad/1", 50, true),
                ("sub/b.bin", 100, false),
                ("sub/c.txt", 100, false),
            ],
            16384,
        );
        let pick = |ps: &[&str]| {
            choose(
                &t.meta,
                &ps.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(pick(&[]).unwrap(), None);
        assert_eq!(
            pick(&["*.bin"]).unwrap(),
            Some(vec![true, false, true, false])
        );
        assert_eq!(
            pick(&["sub/*"]).unwrap(),
            Some(vec![false, false, true, true])
        );
        assert_eq!(
            pick(&["3", "0"]).unwrap(),
            Some(vec![true, false, false, true])
        );
        // A range over a padding file leaves it out.
        assert_eq!(
            pick(&["0-2"]).unwrap(),
            Some(vec![true, false, true, false])
        );
        for bad in ["*.iso", "4", "1", "3-2", "sub"] {
            let e = pick(&[bad]).unwrap_err().to_string();
            assert!(e.contains("--only"), "{bad}: {e}");
        }
        // The name of the torrent is not part of the path.
        assert!(pick(&["set/a.bin"]).is_err());
        let single = torrent("one.iso", &[("", 100, false)], 16384);
        assert_eq!(
            choose(&single.meta, &["*.iso".to_string()]).unwrap(),
            Some(vec![true])
        );
    }
}
