//! qBittorrent 4.5 (`qbittorrent-nox`, Debian's build on libtorrent-rasterbar 2.0), driven
//! through its Web API on 127.0.0.1.
//!
//! Setup: a profile directory of our own (`--profile`, so nothing is read from or written to
//! `$HOME`) with a `qBittorrent.conf` written before start: the legal notice accepted (else
//! it asks on stdin), the Web UI on 127.0.0.1 at a free port with the localhost login bypass
//! on (`WebUI\LocalHostAuth=false`: no password, no cookie), host-header validation and CSRF
//! checks off (the harness sends no `Referer`), peers on 127.0.0.1 (interface `lo`) at a
//! fixed free port, TCP only, DHT, LSD, PeX, UPnP/NAT-PMP off, encryption allowed
//! (`Session\Encryption=0`: prefer, accept plaintext), several connections per IP allowed,
//! no queueing (every torrent active at once), no preallocation.
//!
//! Torrents are added with `POST /api/v2/torrents/add` (multipart, the `.torrent` file and a
//! `savepath`); a torrent added with its data in place is checked first and then seeds. A
//! peer is given with `POST /api/v2/torrents/addPeers`; progress is polled with
//! `GET /api/v2/torrents/info?hashes=...`. It is stopped by PID (SIGTERM: it exits cleanly).
//!
//! Loopback: unlike transmission, it dials 127.0.0.1 peers (from `addPeers` and from the
//! tracker) and accepts them; libtorrent's SSRF mitigation leaves a loopback tracker alone
//! as long as its path is `/announce` (opentracker's is). It creates zero-length files.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::{self, Proc};
use crate::torrent::InfoHash;

/// How long the Web API may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running qbittorrent-nox.
#[derive(Debug)]
pub struct QBittorrent {
    proc: Proc,
    web: SocketAddr,
    peer_port: u16,
}

/// What `/api/v2/torrents/info` says about one torrent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TorrentInfo {
    /// `downloading`, `stalledUP`, `checkingUP`, `error`, `missingFiles`, ...
    pub state: String,
    /// 0.0 to 1.0.
    pub progress: f64,
    pub downloaded: u64,
    pub uploaded: u64,
}

impl QBittorrent {
    /// Starts qbittorrent-nox with its profile in `<work_dir>/qbittorrent` and its default
    /// save path `<work_dir>/qbittorrent/downloads`; returns once the Web API answers.
    pub fn start(work_dir: &Path, log_dir: &Path) -> QBittorrent {
        let profile = work_dir.join("qbittorrent");
        let config_dir = profile.join("qBittorrent/config");
        fs::create_dir_all(&config_dir).expect("create qBittorrent config dir");
        let save = profile.join("downloads");
        fs::create_dir_all(&save).expect("create qBittorrent download dir");
        let peer_port = process::free_port();
        let web_port = process::free_port();
        // The keys are those of qBittorrent 4.5's `qBittorrent.conf` (`[Section]`, `\`
        // between key parts).
        let conf = format!(
            "[LegalNotice]\n\
             Accepted=true\n\
             \n\
             [BitTorrent]\n\
             Session\\Port={peer_port}\n\
             Session\\UseRandomPort=false\n\
             Session\\Interface=lo\n\
             Session\\InterfaceName=lo\n\
             Session\\InterfaceAddress=127.0.0.1\n\
             Session\\BTProtocol=TCP\n\
             Session\\DHTEnabled=false\n\
             Session\\LSDEnabled=false\n\
             Session\\PeXEnabled=false\n\
             Session\\Encryption=0\n\
             Session\\AnonymousModeEnabled=false\n\
             Session\\MultiConnectionsPerIp=true\n\
             Session\\QueueingSystemEnabled=false\n\
             Session\\AddTrackersEnabled=false\n\
             Session\\Preallocation=false\n\
             Session\\AddExtensionToIncompleteFiles=false\n\
             Session\\TempPathEnabled=false\n\
             Session\\DefaultSavePath={save}\n\
             \n\
             [Network]\n\
             PortForwardingEnabled=false\n\
             \n\
             [Preferences]\n\
             Connection\\UPnP=false\n\
             General\\Locale=en\n\
             WebUI\\Address=127.0.0.1\n\
             WebUI\\Port={web_port}\n\
             WebUI\\LocalHostAuth=false\n\
             WebUI\\HostHeaderValidation=false\n\
             WebUI\\CSRFProtection=false\n\
             WebUI\\UseUPnP=false\n",
            save = save.display(),
        );
        fs::write(config_dir.join("qBittorrent.conf"), conf).expect("write qBittorrent.conf");
        let mut cmd = Command::new("qbittorrent-nox");
        cmd.arg(format!("--profile={}", profile.display()));
        let proc = Proc::spawn("qbittorrent", cmd, log_dir);
        let mut qb = QBittorrent {
            proc,
            web: SocketAddr::from(([127, 0, 0, 1], web_port)),
            peer_port,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match qb.request("GET", "/api/v2/app/version", None) {
                Ok((200, _)) => break,
                other => {
                    assert!(
                        qb.proc.is_running(),
                        "qbittorrent-nox exited at start\n{}",
                        qb.proc.tail()
                    );
                    assert!(
                        Instant::now() < deadline,
                        "qBittorrent's Web API did not answer within {START_TIMEOUT:?} \
                         (last: {other:?})\n{}",
                        qb.proc.tail()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        let prefs = qb.get_json("/api/v2/app/preferences");
        assert_eq!(
            prefs["listen_port"].as_u64(),
            Some(u64::from(peer_port)),
            "qBittorrent did not take the configured listen port: {prefs}"
        );
        for off in ["dht", "lsd", "pex", "upnp"] {
            assert_eq!(
                prefs[off].as_bool(),
                Some(false),
                "qBittorrent's {off} is not off: {prefs}"
            );
        }
        qb
    }

    /// Starts qBittorrent seeding `torrent` from `data_dir` (holding `<name>`); returns once
    /// it has checked the data and seeds.
    pub fn seed(
        work_dir: &Path,
        log_dir: &Path,
        torrent: &Path,
        data_dir: &Path,
        info_hash: InfoHash,
    ) -> QBittorrent {
        let mut qb = Self::start(work_dir, log_dir);
        qb.add(torrent, data_dir, info_hash);
        qb.wait_complete(info_hash, Duration::from_secs(120));
        qb
    }

    /// The address it accepts peers on.
    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.peer_port))
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Adds `torrent` (whose info hash is `info_hash`), saving to (or seeding from)
    /// `save_path`; returns once qBittorrent lists it. (`torrents/add` answers "Ok." before
    /// the torrent is in the session: an `addPeers` right after it can find no torrent.)
    pub fn add(&mut self, torrent: &Path, save_path: &Path, info_hash: InfoHash) {
        const BOUNDARY: &str = "tessera-tests-boundary-7f3a";
        let file =
            fs::read(torrent).unwrap_or_else(|e| panic!("reading {}: {e}", torrent.display()));
        let save_path = save_path
            .canonicalize()
            .unwrap_or_else(|e| panic!("save path {}: {e}", save_path.display()));
        let mut body = Vec::new();
        let field = |body: &mut Vec<u8>, name: &str, value: &str| {
            write!(
                body,
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n\
                 {value}\r\n"
            )
            .expect("write to a Vec");
        };
        write!(
            body,
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"torrents\"; \
             filename=\"t.torrent\"\r\nContent-Type: application/x-bittorrent\r\n\r\n"
        )
        .expect("write to a Vec");
        body.extend_from_slice(&file);
        body.extend_from_slice(b"\r\n");
        field(&mut body, "savepath", &save_path.display().to_string());
        field(&mut body, "autoTMM", "false");
        field(&mut body, "paused", "false");
        write!(body, "--{BOUNDARY}--\r\n").expect("write to a Vec");
        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        let (status, answer) = self
            .request("POST", "/api/v2/torrents/add", Some((&content_type, &body)))
            .unwrap_or_else(|e| panic!("torrents/add: {e}\n{}", self.proc.tail()));
        assert!(
            status == 200 && answer.starts_with(b"Ok"),
            "qBittorrent refused the torrent ({status}): {}\n{}",
            String::from_utf8_lossy(&answer),
            self.proc.tail()
        );
        let listed =
            process::poll_until(Duration::from_secs(30), || self.info(info_hash).is_some());
        assert!(
            listed,
            "qBittorrent does not list {info_hash:?} 30 s after taking it\n{}",
            self.proc.tail()
        );
    }

    /// Tells qBittorrent to connect to `peers` for the torrent (`torrents/addPeers`).
    pub fn add_peers(&mut self, info_hash: InfoHash, peers: &[SocketAddr]) {
        let list: Vec<String> = peers.iter().map(SocketAddr::to_string).collect();
        let body = format!("hashes={}&peers={}", info_hash.hex(), list.join("%7C"));
        let (status, answer) = self
            .request(
                "POST",
                "/api/v2/torrents/addPeers",
                Some(("application/x-www-form-urlencoded", body.as_bytes())),
            )
            .unwrap_or_else(|e| panic!("torrents/addPeers: {e}\n{}", self.proc.tail()));
        let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        assert!(
            status == 200 && answer[info_hash.hex()]["added"].as_u64() == Some(peers.len() as u64),
            "qBittorrent did not add the peers {peers:?} ({status}): {answer}\n{}",
            self.proc.tail()
        );
    }

    /// The torrent's state, if qBittorrent has it.
    pub fn info(&mut self, info_hash: InfoHash) -> Option<TorrentInfo> {
        let list = self.get_json(&format!("/api/v2/torrents/info?hashes={}", info_hash.hex()));
        let t = list.as_array()?.first()?;
        Some(TorrentInfo {
            state: t["state"].as_str().unwrap_or_default().to_owned(),
            progress: t["progress"].as_f64().unwrap_or(0.0),
            downloaded: t["downloaded"].as_u64().unwrap_or(0),
            uploaded: t["uploaded"].as_u64().unwrap_or(0),
        })
    }

    /// Waits at most `timeout` until the torrent is complete (downloaded or checked) and not
    /// being checked.
    pub fn wait_complete(&mut self, info_hash: InfoHash, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.info(info_hash);
            if let Some(i) = &info {
                assert!(
                    !matches!(i.state.as_str(), "error" | "missingFiles"),
                    "qBittorrent reports {i:?} for {info_hash:?}\n{}",
                    self.proc.tail()
                );
                if i.progress >= 1.0 && !i.state.starts_with("checking") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "qBittorrent did not complete {info_hash:?} within {timeout:?}: {info:?}\n{}",
                self.proc.tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn get_json(&mut self, path: &str) -> Value {
        let (status, body) = self
            .request("GET", path, None)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.proc.tail()));
        assert_eq!(
            status,
            200,
            "GET {path}: {}\n{}",
            String::from_utf8_lossy(&body),
            self.proc.tail()
        );
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "GET {path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })
    }

    /// One HTTP/1.1 request on a connection of its own (`Connection: close`): the status and
    /// the body.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<(u16, Vec<u8>), String> {
        let addr = self.web;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
            addr.port()
        )
        .into_bytes();
        if let Some((content_type, bytes)) = body {
            write!(
                req,
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                bytes.len()
            )
            .map_err(|e| e.to_string())?;
            req.extend_from_slice(b"\r\n");
            req.extend_from_slice(bytes);
        } else {
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req)
            .map_err(|e| format!("send to {addr}: {e}"))?;
        read_response(&mut s).map_err(|e| format!("{method} {path} at {addr}: {e}"))
    }
}

/// Reads an HTTP/1.1 response: its status and its body (`Content-Length` or until the
/// connection closes).
fn read_response(s: &mut TcpStream) -> Result<(u16, Vec<u8>), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "closed before the end of the header: {:?}",
                String::from_utf8_lossy(&buf)
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let length: Option<usize> = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    });
    let mut body = buf[head_end + 4..].to_vec();
    loop {
        if length.is_some_and(|n| body.len() >= n) {
            body.truncate(length.unwrap_or_default());
            break;
        }
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((status, body))
}
