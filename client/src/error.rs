//! The user-facing error type: anything a command can fail with, shown as one line.

use std::io;
use std::path::{Path, PathBuf};

use tessera_core::DiskError;
use tessera_core::metainfo::MetainfoError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// An operating-system call failed; `context` says what was being done ("reading x").
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A `.torrent` file did not parse or validate.
    #[error("{}: {source}", path.display())]
    Torrent {
        path: PathBuf,
        #[source]
        source: MetainfoError,
    },
    /// A storage operation failed (the message names the file).
    #[error("{}", .0.message)]
    Disk(DiskError),
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// An io error about a path: "`verb` `path`: error".
    pub fn at(verb: &str, path: &Path, source: io::Error) -> Error {
        Error::io(format!("{verb} {}", path.display()), source)
    }

    pub fn other(message: impl Into<String>) -> Error {
        Error::Other(message.into())
    }
}

impl From<DiskError> for Error {
    fn from(e: DiskError) -> Self {
        Error::Disk(e)
    }
}

/// `text` with every line break replaced, so that it prints as one line.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let e = Error::at(
            "reading",
            Path::new("/x/y.torrent"),
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert_eq!(e.to_string(), "reading /x/y.torrent: entity not found");
        assert_eq!(one_line("a\n  b\n\nc"), "a; b; c");
        assert_eq!(one_line("single"), "single");
    }
}
