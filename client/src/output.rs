//! Writing to stdout and stderr without ever panicking: a reader that went away (`| head`)
//! or a full disk behind a redirect is not a reason to crash, and there is nobody left to
//! tell, so write errors are ignored. And text from a torrent or a tracker made safe to
//! show ([`printable`]).

use std::io::Write;

/// Writes `text` and a newline to stdout.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Writes `text` as it is to stdout.
pub fn text(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Writes `text` and a newline to stderr.
pub fn error_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// `s` with control characters escaped, so a torrent cannot drive the terminal.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\x1b[2Jb\nc\té"), "a\\u{1b}[2Jb\\nc\\té");
    }
}
