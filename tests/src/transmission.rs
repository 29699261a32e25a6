//! transmission 3.00 (`transmission-daemon`, driven with `transmission-remote`).
//!
//! Setup: a config dir of our own with a `settings.json` written before start: peer and RPC
//! sockets bound to 127.0.0.1, DHT/LPD/PEX/uTP/port mapping off, no RPC auth, no `.part`
//! renaming, no ratio or idle limits, plaintext preferred. Torrents are added over RPC; a
//! torrent added with its data already in the download dir is verified automatically.
//!
//! Quirks: it never dials 127.0.0.0/8 (it treats loopback as martian), so as a downloader it
//! only gets peers that dial it; as a seeder it takes incoming connections and announces to the
//! tracker fine. It waits about 10 s before it first unchokes or requests. It never creates
//! zero-length files (compare with [`crate::data::Compare::transmission`]).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{self, Proc};
use crate::torrent::InfoHash;

/// A running transmission-daemon.
#[derive(Debug)]
pub struct Transmission {
    proc: Proc,
    peer_port: u16,
    rpc_port: u16,
}

/// What `transmission-remote -i` says about one torrent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TorrentState {
    pub state: String,
    pub percent_done: f64,
    pub error: Option<String>,
}

/// transmission's `encryption` setting (protocol encryption, MSE/PE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TrEncryption {
    /// `0`: plaintext preferred, encrypted accepted (what the other tests use).
    #[default]
    PreferPlaintext = 0,
    /// `1`: encrypted preferred, plaintext accepted.
    PreferEncrypted = 1,
    /// `2`: encrypted connections only.
    Require = 2,
}

impl Transmission {
    /// Starts a daemon whose config lives in `<work_dir>/transmission` and whose default
    /// download dir is `download_dir`; plaintext preferred.
    pub fn start(work_dir: &Path, download_dir: &Path) -> Transmission {
        Self::start_with(work_dir, download_dir, TrEncryption::default())
    }

    /// [`Transmission::start`] with the given encryption setting.
    pub fn start_with(
        work_dir: &Path,
        download_dir: &Path,
        encryption: TrEncryption,
    ) -> Transmission {
        let peer_port = process::free_port();
        let rpc_port = process::free_port();
        let conf_dir: PathBuf = work_dir.join("transmission");
        fs::create_dir_all(&conf_dir).expect("create transmission config dir");
        fs::create_dir_all(download_dir).expect("create transmission download dir");
        let download_dir = download_dir.canonicalize().expect("canonical download dir");
        let settings = format!(
            r#"{{
    "bind-address-ipv4": "127.0.0.1",
    "bind-address-ipv6": "::1",
    "blocklist-enabled": false,
    "dht-enabled": false,
    "download-dir": "{dl}",
    "encryption": {encryption},
    "idle-seeding-limit-enabled": false,
    "incomplete-dir-enabled": false,
    "lpd-enabled": false,
    "message-level": 2,
    "peer-port": {peer_port},
    "peer-port-random-on-start": false,
    "pex-enabled": false,
    "port-forwarding-enabled": false,
    "ratio-limit-enabled": false,
    "rename-partial-files": false,
    "rpc-authentication-required": false,
    "rpc-bind-address": "127.0.0.1",
    "rpc-enabled": true,
    "rpc-host-whitelist-enabled": false,
    "rpc-port": {rpc_port},
    "rpc-whitelist": "127.0.0.1",
    "rpc-whitelist-enabled": true,
    "start-added-torrents": true,
    "utp-enabled": false,
    "watch-dir-enabled": false
}}
"#,
            dl = json_escape(&download_dir.display().to_string()),
            encryption = encryption as u8,
        );
        fs::write(conf_dir.join("settings.json"), settings).expect("write settings.json");
        let mut cmd = Command::new("transmission-daemon");
        cmd.arg("--foreground").arg("--config-dir").arg(&conf_dir);
        let proc = Proc::spawn("transmission", cmd, work_dir);
        let t = Transmission {
            proc,
            peer_port,
            rpc_port,
        };
        process::wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], rpc_port)),
            Duration::from_secs(20),
            "transmission-daemon RPC",
        );
        t
    }

    /// Starts a daemon seeding `torrent` from `data_dir` (holding `<name>`); returns once it
    /// has verified the data (100 %).
    pub fn seed(work_dir: &Path, torrent: &Path, data_dir: &Path, info_hash: InfoHash) -> Self {
        Self::seed_with(
            work_dir,
            torrent,
            data_dir,
            info_hash,
            TrEncryption::default(),
        )
    }

    /// [`Transmission::seed`] with the given encryption setting.
    pub fn seed_with(
        work_dir: &Path,
        torrent: &Path,
        data_dir: &Path,
        info_hash: InfoHash,
        encryption: TrEncryption,
    ) -> Self {
        let mut t = Self::start_with(work_dir, data_dir, encryption);
        t.add(torrent, data_dir);
        t.wait_complete(info_hash, Duration::from_secs(120));
        t
    }

    /// The address it accepts peers on.
    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.peer_port))
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    fn remote(&mut self, args: &[&str]) -> String {
        let mut cmd = Command::new("transmission-remote");
        cmd.arg(format!("127.0.0.1:{}", self.rpc_port)).args(args);
        let (status, out, err) = process::run_small(&mut cmd, Duration::from_secs(20));
        assert!(
            status.success(),
            "transmission-remote {args:?} failed ({status}): {out}{err}\n{}",
            self.proc.tail()
        );
        out
    }

    /// Adds `torrent` with `dir` as its download dir.
    pub fn add(&mut self, torrent: &Path, dir: &Path) {
        let torrent = torrent.display().to_string();
        let dir = dir.display().to_string();
        let out = self.remote(&["--add", &torrent, "--download-dir", &dir]);
        assert!(out.contains("success"), "transmission-remote --add: {out}");
    }

    /// State, percent done and error of one torrent.
    pub fn state(&mut self, info_hash: InfoHash) -> TorrentState {
        let out = self.remote(&["--torrent", &info_hash.hex(), "--info"]);
        let mut st = TorrentState::default();
        for line in out.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("State:") {
                st.state = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("Percent Done:") {
                st.percent_done = v.trim().trim_end_matches('%').parse().unwrap_or(0.0);
            } else if let Some(v) = line.strip_prefix("Error:") {
                st.error = Some(v.trim().to_owned());
            }
        }
        st
    }

    /// Waits at most `timeout` until the torrent is 100 % done (downloaded or verified).
    pub fn wait_complete(&mut self, info_hash: InfoHash, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.state(info_hash);
            if let Some(e) = &st.error {
                panic!("transmission reports an error: {e}\n{}", self.proc.tail());
            }
            if st.percent_done >= 100.0 && !st.state.starts_with("Verifying") {
                return;
            }
            assert!(
                self.proc.is_running(),
                "transmission-daemon exited\n{}",
                self.proc.tail()
            );
            assert!(
                Instant::now() < deadline,
                "transmission did not complete {info_hash:?} within {timeout:?}: {st:?}\n{}",
                self.proc.tail()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn json_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
