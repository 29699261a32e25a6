//! Debian's opentracker, run by the harness on a loopback port.
//!
//! Quirks (Debian build, opentracker 1.0 from 2021):
//! - Built whitelist-only: an info hash missing from the access list gets "Requested download is
//!   not authorized for use with this tracker." The list is re-read on SIGHUP.
//! - It chroots into `tracker.rootdir`, so `access.whitelist` is a path relative to that dir.
//! - It refuses to keep running as root ("Still running with root privileges?!") and drops to
//!   `tracker.user`: we use `nobody`, so the root dir must be world-readable (0755) and the
//!   whitelist 0644.
//! - `listen.tcp_udp 127.0.0.1:PORT` serves HTTP and UDP announces on the same port.
//! - An announce with `event=stopped` is answered without adding a peer: the harness uses it to
//!   ask "is this hash authorized yet?"; `/scrape` tells how many seeders announced.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::bencode::{self, Value};
use crate::process::{self, Proc};
use crate::torrent::InfoHash;

/// Counts a scrape reports for one torrent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scrape {
    pub complete: i64,
    pub incomplete: i64,
}

#[derive(Debug)]
pub struct Opentracker {
    proc: Proc,
    port: u16,
    root: PathBuf,
    allowed: Vec<InfoHash>,
}

impl Opentracker {
    /// Starts opentracker on a free loopback port with a whitelist of `info_hashes` (may be
    /// empty: add hashes later with [`Opentracker::allow`]). `dir` holds its config, chroot and
    /// logs. Returns once it answers announces for every listed hash.
    pub fn start(dir: &Path, info_hashes: &[InfoHash]) -> Opentracker {
        let port = process::free_port();
        let root = dir.join("opentracker");
        fs::create_dir_all(&root).expect("create opentracker dir");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755))
            .expect("chmod opentracker dir");
        let conf = dir.join("opentracker.conf");
        fs::write(
            &conf,
            format!(
                "listen.tcp_udp 127.0.0.1:{port}\n\
                 access.whitelist whitelist.txt\n\
                 tracker.rootdir {}\n\
                 tracker.user nobody\n",
                root.display()
            ),
        )
        .expect("write opentracker.conf");
        write_whitelist(&root, info_hashes);
        let mut cmd = Command::new("opentracker");
        cmd.arg("-f").arg(&conf);
        let mut tracker = Opentracker {
            proc: Proc::spawn("opentracker", cmd, dir),
            port,
            root,
            allowed: info_hashes.to_vec(),
        };
        process::wait_for_port(tracker.addr(), Duration::from_secs(10), "opentracker");
        for ih in info_hashes {
            tracker.wait_authorized(*ih);
        }
        tracker
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The HTTP announce URL.
    pub fn announce_url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    /// The UDP announce URL (same port).
    pub fn udp_url(&self) -> String {
        format!("udp://127.0.0.1:{}", self.port)
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Adds `info_hash` to the whitelist, reloads it (SIGHUP) and waits until it is served.
    pub fn allow(&mut self, info_hash: InfoHash) {
        if !self.allowed.contains(&info_hash) {
            self.allowed.push(info_hash);
        }
        write_whitelist(&self.root, &self.allowed);
        self.proc.signal("HUP");
        self.wait_authorized(info_hash);
    }

    fn wait_authorized(&mut self, info_hash: InfoHash) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // `event=stopped` is answered without adding this fake peer to the swarm.
            let query = format!(
                "/announce?info_hash={}&peer_id=-TT0000-harnessprobe&port=1&uploaded=0\
                 &downloaded=0&left=0&compact=1&event=stopped",
                info_hash.url_encoded()
            );
            let last = match http_get(self.addr(), &query) {
                Ok(body) if !contains(&body, b"failure reason") => return,
                Ok(body) => String::from_utf8_lossy(&body).into_owned(),
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "opentracker did not authorize {info_hash:?} within 10 s: {last}\n{}",
                self.proc.tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Scrapes one torrent. An unknown torrent has all counts zero.
    pub fn scrape(&self, info_hash: InfoHash) -> Scrape {
        let body = http_get(
            self.addr(),
            &format!("/scrape?info_hash={}", info_hash.url_encoded()),
        )
        .unwrap_or_else(|e| panic!("scraping opentracker: {e}"));
        let v = bencode::decode(&body).unwrap_or_else(|e| {
            panic!(
                "opentracker sent bad bencode ({e:?}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        let Some(Value::Dict(files)) = v.get("files") else {
            panic!("scrape without files: {}", String::from_utf8_lossy(&body));
        };
        match files.get(&info_hash.0[..]) {
            None => Scrape::default(),
            Some(t) => Scrape {
                complete: t.get("complete").and_then(Value::as_int).unwrap_or(0),
                incomplete: t.get("incomplete").and_then(Value::as_int).unwrap_or(0),
            },
        }
    }

    /// Waits at most `timeout` until at least `n` seeders have announced `info_hash`, so that
    /// a downloader started next gets them in its first announce.
    pub fn wait_for_seeders(&self, info_hash: InfoHash, n: i64, timeout: Duration) {
        let (last, ok) = self.wait_for_scrape(info_hash, timeout, |s| s.complete >= n);
        assert!(
            ok,
            "only {} of {n} seeders announced {info_hash:?} to opentracker within {timeout:?}",
            last.complete
        );
    }

    /// The peers opentracker lists for `info_hash` right now (it keys peers by address, so a
    /// client that sent `stopped` is absent and one that vanished without it is still there).
    ///
    /// Asked by announcing a probe peer, 127.0.0.1:1 (where nothing listens), as a leecher,
    /// and removing it again with `stopped` at once; a seeder announcing in between may be
    /// handed the probe's address and fail to dial it, which is harmless.
    pub fn peers(&self, info_hash: InfoHash) -> Vec<SocketAddr> {
        let query = |event: &str| {
            format!(
                "/announce?info_hash={}&peer_id=-TT0000-harnesspeers&port=1&uploaded=0\
                 &downloaded=0&left=1&compact=1&numwant=200&event={event}",
                info_hash.url_encoded()
            )
        };
        let body = http_get(self.addr(), &query("started"))
            .unwrap_or_else(|e| panic!("announcing the probe to opentracker: {e}"));
        let _ = http_get(self.addr(), &query("stopped"));
        let v = bencode::decode(&body).unwrap_or_else(|e| {
            panic!(
                "opentracker sent bad bencode ({e:?}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        assert!(
            v.get("failure reason").is_none(),
            "opentracker refused the probe: {}",
            String::from_utf8_lossy(&body)
        );
        let compact = v.get("peers").and_then(Value::as_bytes).unwrap_or_else(|| {
            panic!(
                "no compact peer list from opentracker: {}",
                String::from_utf8_lossy(&body)
            )
        });
        let probe = SocketAddr::from(([127, 0, 0, 1], 1));
        compact
            .chunks_exact(6)
            .map(|c| SocketAddr::from(([c[0], c[1], c[2], c[3]], u16::from_be_bytes([c[4], c[5]]))))
            .filter(|a| *a != probe)
            .collect()
    }

    /// Waits at most `timeout` until a scrape of `info_hash` satisfies `ok`; returns the
    /// last scrape and whether it did.
    pub fn wait_for_scrape(
        &self,
        info_hash: InfoHash,
        timeout: Duration,
        mut ok: impl FnMut(Scrape) -> bool,
    ) -> (Scrape, bool) {
        let mut last = Scrape::default();
        let held = process::poll_until(timeout, || {
            last = self.scrape(info_hash);
            ok(last)
        });
        (last, held)
    }
}

/// Writes the access list opentracker reads from its chroot, readable by `nobody`.
fn write_whitelist(root: &Path, hashes: &[InfoHash]) {
    // Written aside and renamed, so a reload never sees half a list.
    let tmp = root.join("whitelist.txt.new");
    let text: String = hashes.iter().map(|h| h.hex() + "\n").collect();
    fs::write(&tmp, text).expect("write whitelist");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).expect("chmod whitelist");
    fs::rename(&tmp, root.join("whitelist.txt")).expect("rename whitelist");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A minimal HTTP/1.0 GET; returns the body of a 200 answer.
pub fn http_get(addr: SocketAddr, path_and_query: &str) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
        addr.port()
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let head_end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header end in {:?}", String::from_utf8_lossy(&resp)))?;
    let status_line = String::from_utf8_lossy(&resp[..head_end]);
    if !status_line.starts_with("HTTP/1.0 200") && !status_line.starts_with("HTTP/1.1 200") {
        return Err(format!("HTTP answer: {status_line}"));
    }
    Ok(resp[head_end + 4..].to_vec())
}
