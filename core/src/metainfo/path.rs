//! The path-safety rules for a torrent's file names: no path may escape the download
//! directory, and no two files may share bytes on disk.

use super::{FileEntry, MetainfoError};

/// Why `c` cannot be one component of a path below the download directory, if it cannot.
///
/// Joined onto a directory, a safe component names an entry directly inside it on every
/// platform: it cannot be empty, climb (`..`), hold a separator of any platform, hold a
/// NUL (which truncates paths in C APIs) or start with a Windows drive (`C:` makes a
/// Windows join ignore the directory). Other Windows restrictions (reserved names such as
/// `CON`, trailing dots) cannot escape the directory and are left to the disk layer.
pub(super) fn component_problem(c: &str) -> Option<&'static str> {
    if c.is_empty() {
        Some("empty path component")
    } else if c == "." || c == ".." {
        Some("`.` or `..` path component")
    } else if c.contains('/') {
        Some("path component contains `/`")
    } else if c.contains('\\') {
        Some("path component contains `\\`")
    } else if c.contains('\0') {
        Some("path component contains NUL")
    } else if matches!(c.as_bytes(), [letter, b':', ..] if letter.is_ascii_alphabetic()) {
        Some("path component starts with a Windows drive")
    } else {
        None
    }
}

/// Rejects two files with the same path, and a file whose path is a directory on another
/// file's path (`a` and `a/b`): either would make two files share bytes on disk.
///
/// Padding files (BEP 47) are never written, so two padding files may share a path (hybrid
/// torrents name them `.pad/<size>` and sizes repeat) or nest; but a padding path must not
/// meet a real file's path in either way, so that the disk layer never has to wonder.
///
/// Sorted component-wise, every path that a path `p` is a prefix of comes right after `p`,
/// before any path that `p` is not a prefix of. So a stack of the paths that are prefixes
/// of the current one finds every clash in one pass, in time linear in the total number of
/// components (after the sort), however deep the paths.
pub(super) fn check_distinct_paths(files: &[FileEntry]) -> Result<(), MetainfoError> {
    let mut sorted: Vec<&FileEntry> = files.iter().collect();
    sorted.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    // Earlier paths that are prefixes of (or equal to) the current one, each a prefix of
    // the next; and how many of them are real files.
    let mut stack: Vec<&FileEntry> = Vec::new();
    let mut real_on_stack = 0usize;
    for file in sorted {
        while let Some(top) = stack.last() {
            if file.path.starts_with(&top.path) {
                break;
            }
            if !top.padding {
                real_on_stack = real_on_stack.saturating_sub(1);
            }
            stack.pop();
        }
        // Every file on the stack is `file` itself or one of its directories.
        let clash = if file.padding {
            real_on_stack > 0
        } else {
            !stack.is_empty()
        };
        if clash {
            return Err(MetainfoError::DuplicatePath(file.path.join("/")));
        }
        if !file.padding {
            real_on_stack += 1;
        }
        stack.push(file);
    }
    Ok(())
}
