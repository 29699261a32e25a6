//! Writing to stdout and stderr without ever panicking: a reader that went away (`| head`)
//! or a full disk behind a redirect is not a reason to crash, and there is nobody left to
//! tell, so write errors are ignored. And text from a torrent or a tracker made safe to
//! show ([`printable`]).

use std::io::{IsTerminal, Write};

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

/// Whether what goes to stderr may be coloured: only on a terminal, and not when
/// `NO_COLOR` is set to anything (<https://no-color.org>).
pub fn colour_on_stderr() -> bool {
    std::io::stderr().is_terminal() && no_color_unset(std::env::var_os("NO_COLOR"))
}

/// `NO_COLOR`'s rule: colour is off when the variable is present and not empty.
pub fn no_color_unset(value: Option<std::ffi::OsString>) -> bool {
    value.is_none_or(|v| v.is_empty())
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
    fn no_color_is_honoured_when_set_to_anything() {
        assert!(no_color_unset(None));
        assert!(no_color_unset(Some("".into())));
        assert!(!no_color_unset(Some("1".into())));
        assert!(!no_color_unset(Some("0".into())));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\x1b[2Jb\nc\té"), "a\\u{1b}[2Jb\\nc\\té");
    }
}
