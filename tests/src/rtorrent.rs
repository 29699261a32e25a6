//! rtorrent 0.9.8 (libtorrent-rakshasa 0.13.8, a different engine from the libtorrent-rasterbar
//! that the Python bindings and qBittorrent share), run headless and driven over XML-RPC.
//!
//! Setup: an rc file of our own (`rtorrent -n -o import=<rc>`: `-n` skips `~/.rtorrent.rc`)
//! in a temp dir: `system.daemon.set = true` (no curses, no terminal needed: stdin, stdout
//! and stderr can be files), a session dir, peers bound to 127.0.0.1 on one free port
//! (`network.port_range.set = P-P`, `network.port_random.set = no`), announcing 127.0.0.1,
//! DHT off, PEX off, no UDP trackers, encryption allowed (`allow_incoming,try_outgoing,
//! enable_retry`: it tries an encrypted handshake first when it dials, and retries in
//! plaintext when the other side closes it), an XML-RPC endpoint on a Unix socket
//! (`network.scgi.open_local`) and a log file (debug level: handshakes, hash checks,
//! tracker requests and replies) in the log dir.
//!
//! Torrents are loaded with `load.start_verbose "" <file> "d.directory.set=<dir>"` (for a
//! multi-file torrent rtorrent puts `<name>/` under that directory, so `<dir>` is the data
//! dir a seeder reads or the output dir a leecher fills); a torrent whose data is in place
//! is hashed at load and then seeds. Completion is polled with `d.complete <hash>`. It is
//! stopped by PID (SIGTERM: it exits at once).
//!
//! XML-RPC goes over SCGI: a netstring of headers (`CONTENT_LENGTH`, `SCGI`), then the
//! `methodCall` document; the answer is a CGI-style header block and a `methodResponse`.
//! The harness writes and reads these few shapes itself (strings in, one integer or string
//! out).
//!
//! Quirks: there is no XML-RPC command to make it dial a given peer (`d.add_peer` does not
//! exist in 0.9.8); it learns peers from the tracker, or is dialled. It dials 127.0.0.1
//! peers it gets from a tracker (no martian filter, unlike transmission), but it keeps one
//! peer per IP address: on loopback, where every peer is 127.0.0.1, it dials at most one
//! entry of a tracker's list, and when that entry is its own (opentracker lists the asker
//! too) it logs "is self" and dials nobody else. A test that needs rtorrent connected has
//! Tessera dial it. Erasing a download
//! deletes the `.torrent` file it was loaded from (the file is "tied" to the download), so
//! [`Rtorrent::load`] hands it a copy. Hashes are upper-case hex in its answers.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{self, Proc};
use crate::torrent::InfoHash;

/// How long the XML-RPC socket may take to appear.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of rtorrent's own log shown in failure messages.
const LOG_TAIL: usize = 30;

/// A running rtorrent.
#[derive(Debug)]
pub struct Rtorrent {
    proc: Proc,
    dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    peer_port: u16,
    loaded: usize,
}

/// One XML-RPC value in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcValue {
    Int(i64),
    Str(String),
}

impl Rtorrent {
    /// Starts rtorrent with its rc file, session and socket in `<work_dir>/rtorrent` and its
    /// log in `log_dir`; returns once it answers XML-RPC.
    pub fn start(work_dir: &Path, log_dir: &Path) -> Rtorrent {
        let dir = work_dir.join("rtorrent");
        let session = dir.join("session");
        let downloads = dir.join("downloads");
        for d in [&session, &downloads] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
        }
        fs::create_dir_all(log_dir).expect("create log dir");
        let socket = dir.join("rpc.socket");
        let log = log_dir.join(format!("rtorrent-{}.log", process::free_port()));
        let peer_port = process::free_port();
        let rc = dir.join("rtorrent.rc");
        fs::write(
            &rc,
            format!(
                "session.path.set = {session}\n\
                 directory.default.set = {downloads}\n\
                 network.bind_address.set = 127.0.0.1\n\
                 network.local_address.set = 127.0.0.1\n\
                 network.port_range.set = {peer_port}-{peer_port}\n\
                 network.port_random.set = no\n\
                 dht.mode.set = disable\n\
                 protocol.pex.set = no\n\
                 trackers.use_udp.set = no\n\
                 protocol.encryption.set = allow_incoming,try_outgoing,enable_retry\n\
                 network.scgi.open_local = {socket}\n\
                 log.open_file = \"main\", {log}\n\
                 log.add_output = \"info\", \"main\"\n\
                 log.add_output = \"debug\", \"main\"\n\
                 system.daemon.set = true\n",
                session = session.display(),
                downloads = downloads.display(),
                socket = socket.display(),
                log = log.display(),
            ),
        )
        .expect("write rtorrent.rc");
        let mut cmd = Command::new("rtorrent");
        cmd.arg("-n")
            .arg("-o")
            .arg(format!("import={}", rc.display()));
        let proc = Proc::spawn("rtorrent", cmd, log_dir);
        let mut rt = Rtorrent {
            proc,
            dir,
            socket,
            log,
            peer_port,
            loaded: 0,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match rt.call("system.client_version", &[]) {
                Ok(RpcValue::Str(v)) => {
                    assert!(v.starts_with("0.9"), "rtorrent {v}: expected 0.9.x");
                    break;
                }
                other => {
                    assert!(
                        rt.proc.is_running(),
                        "rtorrent exited at start\n{}",
                        rt.tail()
                    );
                    assert!(
                        Instant::now() < deadline,
                        "rtorrent did not answer XML-RPC within {START_TIMEOUT:?} \
                         (last: {other:?})\n{}",
                        rt.tail()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        process::wait_for_port(rt.peer_addr(), Duration::from_secs(10), "rtorrent");
        rt
    }

    /// Starts rtorrent seeding `torrent` from `data_dir` (holding `<name>`); returns once it
    /// has hashed the data and found it complete.
    pub fn seed(
        work_dir: &Path,
        log_dir: &Path,
        torrent: &Path,
        data_dir: &Path,
        info_hash: InfoHash,
    ) -> Rtorrent {
        let mut rt = Self::start(work_dir, log_dir);
        rt.load(torrent, data_dir);
        rt.wait_complete(info_hash, Duration::from_secs(120));
        rt
    }

    /// The address it accepts peers on.
    pub fn peer_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.peer_port))
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Loads and starts (a copy of) `torrent` with its data under `dir` (`dir/<name>/...`
    /// for a multi-file torrent).
    pub fn load(&mut self, torrent: &Path, dir: &Path) {
        self.loaded += 1;
        let copy = self.dir.join(format!("{}.torrent", self.loaded));
        fs::copy(torrent, &copy).unwrap_or_else(|e| panic!("copying {}: {e}", torrent.display()));
        let dir = dir
            .canonicalize()
            .unwrap_or_else(|e| panic!("directory {}: {e}", dir.display()));
        let answer = self.call(
            "load.start_verbose",
            &[
                "",
                &copy.display().to_string(),
                &format!("d.directory.set={}", dir.display()),
            ],
        );
        assert_eq!(
            answer,
            Ok(RpcValue::Int(0)),
            "rtorrent's load.start_verbose\n{}",
            self.tail()
        );
    }

    /// `d.complete` of the torrent: `None` while rtorrent does not know it (yet).
    pub fn complete(&mut self, info_hash: InfoHash) -> Option<bool> {
        match self.call("d.complete", &[&info_hash.hex().to_uppercase()]) {
            Ok(RpcValue::Int(c)) => Some(c == 1),
            _ => None,
        }
    }

    /// An integer property (`d.bytes_done`, `d.up.total`, ...) of the torrent.
    pub fn get_int(&mut self, method: &str, info_hash: InfoHash) -> Option<i64> {
        match self.call(method, &[&info_hash.hex().to_uppercase()]) {
            Ok(RpcValue::Int(v)) => Some(v),
            _ => None,
        }
    }

    /// Waits at most `timeout` until `d.complete` is 1 and no hash check runs.
    pub fn wait_complete(&mut self, info_hash: InfoHash, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let complete = self.complete(info_hash);
            if complete == Some(true) && self.get_int("d.is_hash_checking", info_hash) == Some(0) {
                return;
            }
            assert!(self.proc.is_running(), "rtorrent exited\n{}", self.tail());
            assert!(
                Instant::now() < deadline,
                "rtorrent did not complete {info_hash:?} within {timeout:?} (d.complete \
                 {complete:?}, d.bytes_done {:?}, d.message {:?})\n{}",
                self.get_int("d.bytes_done", info_hash),
                self.call("d.message", &[&info_hash.hex().to_uppercase()]),
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The captured output and the end of rtorrent's own log, for failure messages.
    pub fn tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "{}\n--- rtorrent log tail, {} ---\n{}\n--- end ---",
            self.proc.tail(),
            self.log.display(),
            lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
        )
    }

    /// One XML-RPC call with string parameters over the SCGI socket: the answer's value, or
    /// the fault or transport error as text.
    pub fn call(&self, method: &str, params: &[&str]) -> Result<RpcValue, String> {
        let mut body = format!(
            "<?xml version=\"1.0\"?><methodCall><methodName>{}</methodName><params>",
            xml_escape(method)
        );
        for p in params {
            body.push_str(&format!(
                "<param><value><string>{}</string></value></param>",
                xml_escape(p)
            ));
        }
        body.push_str("</params></methodCall>");
        let headers = format!("CONTENT_LENGTH\0{}\0SCGI\x001\0", body.len());
        let request = format!("{}:{headers},{body}", headers.len());
        let mut s = UnixStream::connect(&self.socket)
            .map_err(|e| format!("connect {}: {e}", self.socket.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        s.write_all(request.as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)
            .map_err(|e| format!("read: {e}"))?;
        parse_response(&String::from_utf8_lossy(&answer))
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The text between `<tag>` and `</tag>` (first occurrence).
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(&xml[start..end])
}

/// The value of a `methodResponse` (after the SCGI answer's header block), or its fault.
fn parse_response(answer: &str) -> Result<RpcValue, String> {
    let xml = answer
        .split_once("\r\n\r\n")
        .map_or(answer, |(_, body)| body);
    if let Some(fault) = element(xml, "fault") {
        return Err(format!(
            "fault: {}",
            element(fault, "string").map_or_else(|| fault.to_owned(), xml_unescape)
        ));
    }
    let value = element(xml, "param")
        .and_then(|p| element(p, "value"))
        .ok_or_else(|| format!("no value in {answer:?}"))?;
    for int in ["i8", "i4", "int"] {
        if let Some(v) = element(value, int) {
            return v
                .trim()
                .parse()
                .map(RpcValue::Int)
                .map_err(|e| format!("integer {v:?}: {e}"));
        }
    }
    if let Some(v) = element(value, "string") {
        return Ok(RpcValue::Str(xml_unescape(v)));
    }
    if value.contains("<string/>") {
        return Ok(RpcValue::Str(String::new()));
    }
    // A bare value is a string in XML-RPC.
    Ok(RpcValue::Str(xml_unescape(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers() {
        let head = "Status: 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 1\r\n\r\n";
        let int = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<methodResponse>\n<params>\n\
                   <param><value><i8>1</i8></value></param>\n</params>\n</methodResponse>\n";
        assert_eq!(
            parse_response(&format!("{head}{int}")),
            Ok(RpcValue::Int(1))
        );
        let s = "<methodResponse><params><param><value><string>0.9.8 &amp; co</string>\
                 </value></param></params></methodResponse>";
        assert_eq!(
            parse_response(&format!("{head}{s}")),
            Ok(RpcValue::Str("0.9.8 & co".into()))
        );
        let fault = "<methodResponse><fault><value><struct><member><name>faultCode</name>\
                     <value><i4>-501</i4></value></member><member><name>faultString</name>\
                     <value><string>Could not find info-hash.</string></value></member>\
                     </struct></value></fault></methodResponse>";
        assert_eq!(
            parse_response(&format!("{head}{fault}")),
            Err("fault: Could not find info-hash.".into())
        );
    }
}
