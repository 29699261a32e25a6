//! aria2 (1.36) as a seeder or a downloader.
//!
//! Flags that matter on loopback: `--interface=127.0.0.1` (binds listening and outgoing
//! sockets), `--disable-ipv6=true` (otherwise it logs a bind error for IPv6), DHT, DHT6, LPD
//! and PEX off. Seeding: `--seed-ratio=0.0` (seed forever) with `--bt-seed-unverified=true`
//! (treat the existing files as complete without hashing them first; `-V` would hash them).
//! Downloading: `--seed-time=0` makes it exit 0 as soon as the download is verified.
//! `--stop-with-process=<our pid>` makes it exit if the test process dies. aria2 cannot be told
//! to dial a given peer: it learns peers from the tracker only.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{self, Proc};

fn command(port: u16, dir: &Path, torrent: &Path) -> Command {
    let mut cmd = Command::new("aria2c");
    cmd.arg("--interface=127.0.0.1")
        .arg("--disable-ipv6=true")
        .arg("--enable-dht=false")
        .arg("--enable-dht6=false")
        .arg("--bt-enable-lpd=false")
        .arg("--enable-peer-exchange=false")
        .arg(format!("--listen-port={port}"))
        .arg(format!("--stop-with-process={}", std::process::id()))
        .arg("--file-allocation=none")
        .arg("--summary-interval=0")
        .arg("--console-log-level=notice")
        .arg("--check-certificate=false")
        .arg("--auto-save-interval=0")
        .arg("--bt-max-peers=0")
        .arg(format!("--dir={}", dir.display()))
        .arg(torrent);
    cmd
}

/// A running aria2c.
#[derive(Debug)]
pub struct Aria2 {
    proc: Proc,
    port: u16,
}

impl Aria2 {
    /// Seeds `torrent` from `data_dir` (holding `<name>`). Returns once it listens.
    pub fn seed(log_dir: &Path, torrent: &Path, data_dir: &Path) -> Aria2 {
        Self::seed_with_limit(log_dir, torrent, data_dir, 0)
    }

    /// [`Aria2::seed`] with an upload limit in bytes/s (0: none).
    pub fn seed_with_limit(
        log_dir: &Path,
        torrent: &Path,
        data_dir: &Path,
        upload_limit: u64,
    ) -> Aria2 {
        let port = process::free_port();
        let mut cmd = command(port, data_dir, torrent);
        cmd.arg("--seed-ratio=0.0")
            .arg("--bt-seed-unverified=true")
            .arg(format!("--max-upload-limit={upload_limit}"));
        let mut proc = Proc::spawn("aria2-seed", cmd, log_dir);
        proc.wait_for_line(
            &format!("listening on TCP port {port}"),
            Duration::from_secs(30),
        );
        Aria2 { proc, port }
    }

    /// Downloads `torrent` into `out_dir` and exits when done; wait with
    /// `proc().wait_success(..)`.
    pub fn download(log_dir: &Path, torrent: &Path, out_dir: &Path) -> Aria2 {
        let port = process::free_port();
        let mut cmd = command(port, out_dir, torrent);
        cmd.arg("--seed-time=0").arg("--bt-stop-timeout=300");
        let proc = Proc::spawn("aria2-download", cmd, log_dir);
        Aria2 { proc, port }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }
}
