//! Running Tessera's binaries with the command-line contract of GUIDE.md section 4.
//!
//! ```text
//! <bin> download <TORRENT>... -o DIR [--peer HOST:PORT]... [--listen ADDR:PORT] [--seed]
//! <bin> seed     <TORRENT> [--data DIR] [--listen ADDR:PORT] [--peer HOST:PORT]...
//! <bin> info     <TORRENT>
//! <bin> verify   <TORRENT> --data DIR
//! ```
//!
//! Messages (`... seeding (Ctrl-C to stop)`) and logs (`-v`, `-vv`) go to stderr; the
//! end-of-run summary to stdout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::bins;
use crate::process::{self, Proc};

/// One of Tessera's binaries.
#[derive(Debug, Clone)]
pub struct Tessera {
    pub name: &'static str,
    pub path: PathBuf,
}

impl Tessera {
    /// `tessera-mio`, built if needed (see [`crate::bins`]).
    pub fn mio() -> Tessera {
        Tessera {
            name: "tessera-mio",
            path: bins::tessera_mio(),
        }
    }

    /// `tessera-smol`, built if needed.
    pub fn smol() -> Tessera {
        Tessera {
            name: "tessera-smol",
            path: bins::tessera_smol(),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        // Plain output, and a backtrace if it ever panics.
        cmd.env("RUST_BACKTRACE", "1").env("NO_COLOR", "1");
        cmd
    }

    /// Starts `download <torrent> -o <out> --listen 127.0.0.1:0 [--peer ..]...`.
    pub fn download(
        &self,
        log_dir: &Path,
        torrent: &Path,
        out: &Path,
        peers: &[SocketAddr],
    ) -> Proc {
        self.download_with(log_dir, torrent, out, peers, &[])
    }

    /// The command `download <torrent> -o <out> --listen 127.0.0.1:0 [--peer ..]... <extra>`,
    /// to run as is or wrapped (`prlimit`, ...).
    pub fn download_command(
        &self,
        torrent: &Path,
        out: &Path,
        peers: &[SocketAddr],
        extra: &[&str],
    ) -> Command {
        let mut cmd = self.command();
        cmd.arg("download")
            .arg(torrent)
            .arg("-o")
            .arg(out)
            .arg("--listen")
            .arg("127.0.0.1:0");
        peers_and_extra(&mut cmd, peers, extra);
        cmd
    }

    /// Starts [`Tessera::download_command`] (`download` with extra arguments).
    pub fn download_with(
        &self,
        log_dir: &Path,
        torrent: &Path,
        out: &Path,
        peers: &[SocketAddr],
        extra: &[&str],
    ) -> Proc {
        let cmd = self.download_command(torrent, out, peers, extra);
        Proc::spawn(&format!("{}-download", self.name), cmd, log_dir)
    }

    /// Starts `download <torrent>... -o <out> --listen 127.0.0.1:0 <extra>`: several
    /// torrents in one run.
    pub fn download_many(
        &self,
        log_dir: &Path,
        torrents: &[&Path],
        out: &Path,
        extra: &[&str],
    ) -> Proc {
        let mut cmd = self.command();
        cmd.arg("download")
            .args(torrents)
            .arg("-o")
            .arg(out)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(extra);
        Proc::spawn(&format!("{}-download-many", self.name), cmd, log_dir)
    }

    /// Starts `seed <torrent> --data <data> --listen <listen> [--peer ..]...`.
    pub fn seed(
        &self,
        log_dir: &Path,
        torrent: &Path,
        data: &Path,
        listen: SocketAddr,
        peers: &[SocketAddr],
    ) -> Proc {
        self.seed_with(log_dir, torrent, data, listen, peers, &[])
    }

    /// [`Tessera::seed`] with `extra` arguments appended (e.g. `-vv` for debug logs on
    /// stderr).
    pub fn seed_with(
        &self,
        log_dir: &Path,
        torrent: &Path,
        data: &Path,
        listen: SocketAddr,
        peers: &[SocketAddr],
        extra: &[&str],
    ) -> Proc {
        let mut cmd = self.command();
        cmd.arg("seed")
            .arg(torrent)
            .arg("--data")
            .arg(data)
            .arg("--listen")
            .arg(listen.to_string());
        peers_and_extra(&mut cmd, peers, extra);
        Proc::spawn(&format!("{}-seed", self.name), cmd, log_dir)
    }

    /// Starts `download <torrent> -o <out> --listen <listen> --seed [--peer ..]... <extra>`:
    /// downloads, then goes on seeding until interrupted.
    pub fn download_and_seed(
        &self,
        log_dir: &Path,
        torrent: &Path,
        out: &Path,
        listen: SocketAddr,
        peers: &[SocketAddr],
        extra: &[&str],
    ) -> Proc {
        let mut cmd = self.command();
        cmd.arg("download")
            .arg(torrent)
            .arg("-o")
            .arg(out)
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--seed");
        peers_and_extra(&mut cmd, peers, extra);
        Proc::spawn(&format!("{}-download-seed", self.name), cmd, log_dir)
    }

    /// Runs a short subcommand (`info`, `verify`, ...) to completion within `timeout`:
    /// `(status, stdout, stderr)`.
    pub fn run(
        &self,
        args: &[&std::ffi::OsStr],
        timeout: Duration,
    ) -> (ExitStatus, String, String) {
        let mut cmd = self.command();
        cmd.args(args);
        process::run_small(&mut cmd, timeout)
    }
}

/// Appends `--peer P` for each of `peers`, then `extra`.
fn peers_and_extra(cmd: &mut Command, peers: &[SocketAddr], extra: &[&str]) {
    for p in peers {
        cmd.arg("--peer").arg(p.to_string());
    }
    cmd.args(extra);
}
