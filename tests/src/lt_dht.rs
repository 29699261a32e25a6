//! A small DHT of libtorrent 2.0 sessions on 127.0.0.1 (`scripts/lt_dht.py`): several
//! sessions in one process with the DHT on, its loopback restrictions off, no public routers,
//! bootstrapped from each other; session 0 seeds a small torrent and announces it.
//!
//! The waits here do not block: a test drives its own DHT node between polls, since the
//! libtorrent sessions query it while they work.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::libtorrent::PYTHON;
use crate::process::{self, Proc};

/// The running sessions.
#[derive(Debug)]
pub struct LtDht {
    proc: Proc,
    ports: Vec<u16>,
    /// The seeded torrent's info hash (hex) and the seeder's port.
    pub info_hash: String,
    /// Session 0's listen port (TCP peers and DHT).
    pub seeder_port: u16,
    /// Stdout lines already consumed.
    cursor: usize,
}

impl LtDht {
    /// Starts `sessions` sessions; returns once session 0 seeds its torrent.
    pub fn start(log_dir: &Path, dir: &Path, sessions: usize) -> LtDht {
        let ports: Vec<u16> = (0..sessions).map(|_| process::free_port()).collect();
        let mut cmd = Command::new(PYTHON);
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lt_dht.py"))
            .arg("--dir")
            .arg(dir);
        for p in &ports {
            cmd.arg("--port").arg(p.to_string());
        }
        let mut proc = Proc::spawn_with_stdin("libtorrent-dht", cmd, log_dir);
        let line = proc.wait_for_line("READY", Duration::from_secs(60));
        let mut words = line.split_whitespace().skip(1);
        let info_hash = words.next().expect("READY <hash>").to_owned();
        let seeder_port = words
            .next()
            .and_then(|p| p.parse().ok())
            .expect("READY <hash> <port>");
        LtDht {
            proc,
            ports,
            info_hash,
            seeder_port,
            cursor: 0,
        }
    }

    /// The sessions' DHT addresses.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect()
    }

    /// Sends a command line (see the script).
    pub fn send(&mut self, line: &str) {
        self.proc.send_line(line);
    }

    /// The first new stdout line starting with `prefix`, if one has arrived (later lines stay
    /// for later calls). Panics if the script exited.
    pub fn poll_line(&mut self, prefix: &str) -> Option<String> {
        let out = self.proc.stdout();
        let complete = &out[..out.rfind('\n').map_or(0, |i| i + 1)];
        for (i, line) in complete.lines().enumerate().skip(self.cursor) {
            if line.starts_with(prefix) {
                self.cursor = i + 1;
                return Some(line.to_owned());
            }
        }
        if let Some(status) = self.proc.try_status() {
            panic!("lt_dht.py exited ({status})\n{}", self.proc.tail());
        }
        None
    }

    /// Calls `work` (a slice of the test's own event loop) until a line starting with
    /// `prefix` arrives; panics after `timeout`.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration, mut work: impl FnMut()) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.poll_line(prefix) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "libtorrent printed no {prefix:?} line within {timeout:?}\n{}",
                self.proc.tail()
            );
            work();
        }
    }
}
