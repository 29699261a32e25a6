//! How a command ends: exit codes, the one-line error report and the panic hook.

use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::Once;

use crate::error::{Error, one_line};

/// How a command finished, when it did not fail outright with an [`Error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Everything the command was asked to do is done.
    Success,
    /// The command ran but did not achieve its goal (a disk error, incomplete data).
    Failed(String),
    /// Stopped by Ctrl-C (or SIGTERM) before its goal was reached.
    Interrupted,
}

/// Exit code for runtime failures.
pub const FAILURE: u8 = 1;
/// Exit code for usage errors (clap uses it too).
pub const USAGE: u8 = 2;
/// Exit code after an interruption (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;
/// Exit code after a panic (what Rust uses).
pub const PANIC: u8 = 101;

impl Exit {
    pub fn code(&self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed(_) => FAILURE,
            Exit::Interrupted => INTERRUPTED,
        }
    }

    /// The line to print on stderr, if any.
    pub fn message(&self) -> Option<String> {
        match self {
            Exit::Success => None,
            Exit::Failed(m) => Some(format!("error: {}", one_line(m))),
            Exit::Interrupted => Some("error: interrupted".to_string()),
        }
    }
}

/// Runs a command: installs the panic hook, prints `error: <one line>` for a failure and
/// turns the outcome into the process's exit code (0, 1, 130, or 101 after a panic).
/// Usage errors never get here: clap prints them and exits with 2 itself.
pub fn run_main(f: impl FnOnce() -> Result<Exit, Error>) -> ExitCode {
    install_panic_hook();
    let code = match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(exit)) => {
            if let Some(line) = exit.message() {
                crate::output::error_line(&line);
            }
            exit.code()
        }
        Ok(Err(e)) => {
            crate::output::error_line(&format!("error: {}", one_line(&e.to_string())));
            FAILURE
        }
        // The hook has printed the one line already.
        Err(_) => PANIC,
    };
    ExitCode::from(code)
}

/// A panic prints `internal error: <message> at <file:line>` and no backtrace, unless
/// `RUST_BACKTRACE` asks for one (then the default hook runs as well).
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(set_hook);
}

fn set_hook() {
    let backtrace = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        let thread = std::thread::current();
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let in_thread = match thread.name() {
            Some(name) if name != "main" => format!(" (thread {name})"),
            _ => String::new(),
        };
        crate::output::error_line(&format!(
            "internal error: {}{location}{in_thread}",
            one_line(&message)
        ));
        if backtrace {
            default_hook(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        assert_eq!(Exit::Success.code(), 0);
        assert_eq!(Exit::Success.message(), None);
        assert_eq!(Exit::Failed("disk\nfull".into()).code(), 1);
        assert_eq!(
            Exit::Failed("disk\nfull".into()).message().as_deref(),
            Some("error: disk; full")
        );
        assert_eq!(Exit::Interrupted.code(), 130);
    }

    #[test]
    fn run_main_maps_outcomes_to_exit_codes() {
        assert_eq!(run_main(|| Ok(Exit::Success)), ExitCode::from(0));
        assert_eq!(run_main(|| Ok(Exit::Interrupted)), ExitCode::from(130));
        assert_eq!(
            run_main(|| Err(Error::other("no such torrent"))),
            ExitCode::from(1)
        );
        assert_eq!(run_main(|| panic!("boom")), ExitCode::from(101));
    }
}
