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
//! Globs are compiled by `globset` into an automaton ([`translate`] says how the syntax
//! above maps onto its own), so matching takes time linear in the path whatever the pattern;
//! a backtracking matcher takes time exponential in the number of `*` on some names.
//!
//! A file is chosen when any value selects it. A value that selects nothing is an error,
//! and so is choosing only padding files.

use globset::{GlobBuilder, GlobMatcher};
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
            let glob = compile(pattern)?;
            let whole_path = pattern.contains('/');
            for (i, _) in files.iter().enumerate().filter(|(_, f)| !f.padding) {
                let inside = inside_path(meta, i);
                let subject = if whole_path {
                    inside.as_str()
                } else {
                    inside.rsplit('/').next().unwrap_or_default()
                };
                if glob.is_match(subject) {
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

/// A glob value compiled by `globset`, with the semantics of the module docs.
fn compile(pattern: &str) -> Result<GlobMatcher, Error> {
    GlobBuilder::new(&translate(pattern))
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| Error::other(format!("--only {pattern:?}: {e}")))
}

/// The pattern in `globset`'s syntax. The two differ in three places:
///
/// - `globset` makes `**` cross directories only as a whole path component (`**/x`, `x/**`,
///   `x/**/y`) and reads it as `*` elsewhere; here `**` is any run of characters wherever it
///   stands, so `x**y` becomes `x{*,*/**/*}y` (within one name, or across directories);
///   runs of three or more `*` are `**`;
/// - `{a,b}` is an alternation in `globset`, literal here: braces and commas are escaped;
/// - an unclosed `[` and a trailing `\` are literal here, errors in `globset`;
/// - no set matches `/` here, where `globset` lets a negated set (`[!a]`) match it.
fn translate(pattern: &str) -> String {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                out.push('\\');
                match p.get(i + 1) {
                    Some(&c) => out.push(c),
                    None => out.push('\\'),
                }
                i += 2;
            }
            '[' => match class_len(&p[i + 1..]) {
                Some(len) => {
                    // `[..]` ends at `p[i + len]`. A negated set gets `/` added: a set never
                    // matches `/` here, which `globset` allows for negated ones.
                    out.extend(&p[i..i + len]);
                    if matches!(p.get(i + 1), Some('!' | '^')) {
                        out.push('/');
                    }
                    out.push(']');
                    i += len + 1;
                }
                None => {
                    out.push_str("\\[");
                    i += 1;
                }
            },
            '*' => {
                let run = p[i..].iter().take_while(|&&c| c == '*').count();
                let component =
                    (i == 0 || p[i - 1] == '/') && p.get(i + run).is_none_or(|&c| c == '/');
                out.push_str(match run {
                    1 => "*",
                    _ if component => "**",
                    _ => "{*,*/**/*}",
                });
                i += run;
            }
            c @ ('{' | '}' | ',') => {
                out.push('\\');
                out.push(c);
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// How many characters after a `[` its set takes, the closing `]` included (`]` right
/// after `[`, `[!` or `[^` is a member, not the end); `None` if it is never closed.
fn class_len(p: &[char]) -> Option<usize> {
    let mut i = usize::from(matches!(p.first(), Some('!' | '^')));
    let first = i;
    loop {
        match p.get(i)? {
            ']' if i > first => return Some(i + 1),
            _ => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::torrent;

    fn glob(p: &str, s: &str) -> bool {
        compile(p).unwrap().is_match(s)
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
        // `**` inside a name still crosses directories; braces and commas are literal.
        assert!(glob("a**b", "ab"));
        assert!(glob("a**b", "a/x/yb"));
        assert!(glob("x/***", "x/y/z"));
        assert!(!glob("a**b", "a/x/bc"));
        assert!(glob("{a,b}.txt", "{a,b}.txt"));
        assert!(!glob("{a,b}.txt", "a.txt"));
        assert!(glob("a\\", "a\\"));
        assert!(glob("[]a]x", "]x"));
        assert!(!glob("[!a-c]", "/"));
    }

    /// 40 `*`s against a name they almost match: a backtracking matcher tries every way to
    /// split 100 characters among them (about 10^28 ways) before it says no; the compiled
    /// automaton reads the name once.
    #[test]
    fn many_stars_do_not_backtrack() {
        let name = "a".repeat(100);
        assert!(!glob(&("*a".repeat(40) + "b"), &name));
        assert!(glob(&"*a".repeat(40), &name));
        assert!(!glob(&("**a".repeat(40) + "b"), &"a/".repeat(50)));
        assert!(glob(
            &"**a".repeat(40),
            "a/".repeat(50).trim_end_matches('/')
        ));
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
