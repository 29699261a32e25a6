//! Diagnostics through `tracing`, formatted on stderr.
//!
//! `RUST_LOG` wins when set (and valid); otherwise `-v` means info, `-vv` debug, `-vvv`
//! trace, `--quiet` errors only, and the default is warnings. Colour only on a terminal,
//! and never with `NO_COLOR` set: a log written to a file or a pipe is plain text.

use tracing_subscriber::EnvFilter;

/// The filter directive used when `RUST_LOG` is not set.
pub fn default_directive(verbose: u8, quiet: bool) -> &'static str {
    match (quiet, verbose) {
        (true, 0) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    }
}

/// Installs the subscriber. Harmless when one is installed already (tests).
pub fn init(verbose: u8, quiet: bool) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(spec)
            .unwrap_or_else(|_| EnvFilter::new(default_directive(verbose, quiet))),
        _ => EnvFilter::new(default_directive(verbose, quiet)),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(crate::output::colour_on_stderr())
        .with_target(true)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_levels() {
        assert_eq!(default_directive(0, false), "warn");
        assert_eq!(default_directive(1, false), "info");
        assert_eq!(default_directive(2, false), "debug");
        assert_eq!(default_directive(3, false), "trace");
        assert_eq!(default_directive(9, false), "trace");
        assert_eq!(default_directive(0, true), "error");
        // An explicit -v beats --quiet for logs (--quiet still silences progress).
        assert_eq!(default_directive(1, true), "info");
    }
}
