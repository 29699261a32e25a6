//! libtorrent (rasterbar 2.0, Debian's python3-libtorrent) as a seeder or a leecher, through
//! `scripts/lt_peer.py` run by Debian's `/usr/bin/python3` (the pyenv python3 first on PATH
//! lacks the bindings). See the script for the settings: loopback only, DHT/LSD/UPnP/NAT-PMP
//! off, TCP only (or uTP only: [`LtOptions::utp_only`]), several connections per IP
//! allowed, `min_reconnect_time` 1 s.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{self, Proc};

/// Debian's python, which has the libtorrent bindings.
pub const PYTHON: &str = "/usr/bin/python3";

/// The script driving libtorrent.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lt_peer.py")
}

/// Options shared by [`LtPeer::seed`] and [`LtPeer::leech`].
#[derive(Debug, Clone, Default)]
pub struct LtOptions {
    /// Peers to dial once the torrent is checked.
    pub peers: Vec<SocketAddr>,
    /// Per-torrent upload limit in bytes/s (0: none). Change it later with
    /// [`LtPeer::set_upload_limit`].
    pub upload_limit: u64,
    /// Per-torrent download limit in bytes/s (0: none). Change it later with
    /// [`LtPeer::set_download_limit`].
    pub download_limit: u64,
    /// Leech: stay and seed after completing instead of exiting.
    pub keep_seeding: bool,
    /// Protocol encryption (MSE/PE), both ways.
    pub encryption: LtEncryption,
    /// Peer connections over uTP only, both ways (TCP off): the peer listens for uTP on
    /// its port's UDP socket and dials peers with uTP.
    pub utp_only: bool,
    /// uTP on both ways besides TCP, as libtorrent has it by default (it dials uTP first).
    pub utp: bool,
}

/// libtorrent's protocol encryption settings (`in_enc_policy`, `out_enc_policy`,
/// `allowed_enc_level`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LtEncryption {
    /// libtorrent's default: encrypted and plaintext connections both ways.
    #[default]
    Enabled,
    /// Only encrypted connections (`pe_forced`), RC4 for the whole stream (`pe_rc4`).
    Forced,
    /// Only plaintext connections (`pe_disabled`).
    Disabled,
}

impl LtEncryption {
    fn arg(self) -> &'static str {
        match self {
            LtEncryption::Enabled => "enabled",
            LtEncryption::Forced => "forced",
            LtEncryption::Disabled => "disabled",
        }
    }
}

/// A running libtorrent peer.
#[derive(Debug)]
pub struct LtPeer {
    proc: Proc,
    port: u16,
}

impl LtPeer {
    /// Seeds `torrent` from `data_dir` (which holds `<name>`, as a downloader's output dir
    /// would). Returns once libtorrent has checked the data and is seeding.
    ///
    /// Started again (up to three times in all) if libtorrent crashes before it is seeding:
    /// python3-libtorrent 2.0.8 segfaults now and then while it checks the data (seen about
    /// once in 30 starts under load, in CI too, never in 20 starts on an idle machine); the
    /// tests of Tessera should not fail for it.
    pub fn seed(log_dir: &Path, torrent: &Path, data_dir: &Path, opts: &LtOptions) -> LtPeer {
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            let mut peer = Self::start("seed", log_dir, torrent, data_dir, opts);
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            loop {
                if peer.proc.stdout().lines().any(|l| l == "SEEDING") {
                    return peer;
                }
                if let Some(status) = peer.proc.try_status() {
                    let crashed = std::os::unix::process::ExitStatusExt::signal(&status).is_some();
                    assert!(
                        crashed && attempt < ATTEMPTS,
                        "libtorrent-seed exited ({status}) before seeding\n{}",
                        peer.proc.tail()
                    );
                    eprintln!("tessera-tests: libtorrent crashed ({status}) while starting; again");
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "libtorrent-seed did not start seeding within 120 s\n{}",
                    peer.proc.tail()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Starts downloading `torrent` into `out_dir`; wait with [`LtPeer::wait_done`].
    pub fn leech(log_dir: &Path, torrent: &Path, out_dir: &Path, opts: &LtOptions) -> LtPeer {
        Self::start("leech", log_dir, torrent, out_dir, opts)
    }

    fn start(mode: &str, log_dir: &Path, torrent: &Path, dir: &Path, opts: &LtOptions) -> LtPeer {
        let port = process::free_port();
        let mut cmd = Command::new(PYTHON);
        cmd.arg(script())
            .arg(mode)
            .arg("--torrent")
            .arg(torrent)
            .arg("--dir")
            .arg(dir)
            .arg("--port")
            .arg(port.to_string())
            .arg("--upload-limit")
            .arg(opts.upload_limit.to_string())
            .arg("--download-limit")
            .arg(opts.download_limit.to_string())
            .arg("--encryption")
            .arg(opts.encryption.arg());
        for p in &opts.peers {
            cmd.arg("--peer").arg(p.to_string());
        }
        if opts.keep_seeding {
            cmd.arg("--keep-seeding");
        }
        if opts.utp_only {
            cmd.arg("--utp-only");
        }
        if opts.utp {
            cmd.arg("--utp");
        }
        let mut proc = Proc::spawn_with_stdin(&format!("libtorrent-{mode}"), cmd, log_dir);
        proc.wait_for_line("LISTENING", Duration::from_secs(30));
        LtPeer { proc, port }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Leech: waits at most `timeout` until every piece is downloaded and verified. Returns
    /// the seconds libtorrent measured from adding the torrent to completion.
    pub fn wait_done(&mut self, timeout: Duration) -> f64 {
        let line = self.proc.wait_for_line("DONE", timeout);
        line.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad DONE line from lt_peer: {line:?}"))
    }

    /// Leech: waits at most `timeout` until libtorrent has downloaded payload from some
    /// peer, asking it every 10 s to connect to `peer` again (its first dial, made once
    /// the torrent is checked, can be lost on a loaded machine). Panics if nothing came.
    pub fn wait_downloading_from(&mut self, peer: SocketAddr, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let mut next_dial = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if self.transferred().1 > 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "libtorrent downloaded nothing from {peer} within {timeout:?}\n{}",
                self.proc.tail()
            );
            if std::time::Instant::now() >= next_dial {
                self.proc.send_line(&format!("connect {peer}"));
                self.proc
                    .wait_for_line("OK connect", Duration::from_secs(10));
                next_dial = std::time::Instant::now() + Duration::from_secs(10);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Changes the per-torrent upload limit (bytes/s, 0 lifts it).
    pub fn set_upload_limit(&mut self, bytes_per_sec: u64) {
        self.proc
            .send_line(&format!("upload-limit {bytes_per_sec}"));
        self.proc
            .wait_for_line("OK upload-limit", Duration::from_secs(10));
    }

    /// Changes the per-torrent download limit (bytes/s, 0 lifts it).
    pub fn set_download_limit(&mut self, bytes_per_sec: u64) {
        self.proc
            .send_line(&format!("download-limit {bytes_per_sec}"));
        self.proc
            .wait_for_line("OK download-limit", Duration::from_secs(10));
    }

    /// Stops the torrent without ending the process: libtorrent drops its peers and
    /// announces `stopped`. Returns once libtorrent reports the torrent paused (the announce
    /// itself may still be on its way: watch the tracker).
    pub fn pause(&mut self) {
        self.proc.send_line("pause");
        self.proc.wait_for_line("OK pause", Duration::from_secs(10));
    }

    /// The session's uTP counters (libtorrent's `utp.*` metrics without the prefix:
    /// `packets_out`, `packet_resend`, `packet_loss`, `fast_retransmit`, `timeout`,
    /// `payload_pkts_out`, ...).
    pub fn utp_stats(&mut self) -> BTreeMap<String, u64> {
        self.proc.send_line("utp-stats");
        let line = self.proc.wait_for_line("UTPSTATS", Duration::from_secs(10));
        line.split_whitespace()
            .skip(1)
            .filter_map(|w| {
                let (name, value) = w.split_once('=')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    /// Payload bytes uploaded and downloaded for this torrent so far.
    pub fn transferred(&mut self) -> (u64, u64) {
        self.proc.send_line("stats");
        let line = self.proc.wait_for_line("STATS", Duration::from_secs(10));
        let field = |name: &str| -> u64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        };
        (field("uploaded"), field("downloaded"))
    }
}
