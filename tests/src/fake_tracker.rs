//! An HTTP tracker that serves one canned answer to every announce, in plain `std::net`:
//! for hostile tracker responses (malformed, enormous, thousands of peers).
//!
//! It listens on 127.0.0.1, reads each request's head (bounded), writes the reply and
//! closes. It counts requests, and the bytes of reply each connection got out before the
//! client closed it. One thread accepts, one thread per connection; all stop on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// What to answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `200 OK` with this body and its `Content-Length`.
    Body(Vec<u8>),
    /// `200 OK` with a `Content-Length` of this many bytes, and as many bytes of `x` as the
    /// client will take (it should give up at its own limit).
    Huge(u64),
}

/// A bencoded announce answer listing `peers` (compact form) with the given interval.
pub fn compact_peers_body(peers: &[SocketAddr], interval: u32) -> Vec<u8> {
    let mut compact = Vec::with_capacity(peers.len() * 6);
    for p in peers {
        let SocketAddr::V4(v4) = p else {
            panic!("compact peers are IPv4: {p}")
        };
        compact.extend_from_slice(&v4.ip().octets());
        compact.extend_from_slice(&v4.port().to_be_bytes());
    }
    let mut body = format!("d8:intervali{interval}e5:peers{}:", compact.len()).into_bytes();
    body.extend_from_slice(&compact);
    body.push(b'e');
    body
}

#[derive(Debug)]
struct Shared {
    reply: Reply,
    requests: AtomicU64,
    /// Reply bytes written, per connection, in order.
    sent: Mutex<Vec<u64>>,
    stop: AtomicBool,
}

/// The running tracker; stops and joins its acceptor on drop.
#[derive(Debug)]
pub struct FakeTracker {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeTracker {
    pub fn start(reply: Reply) -> FakeTracker {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake tracker");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            reply,
            requests: AtomicU64::new(0),
            sent: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let acceptor = thread::spawn(move || {
            let mut workers = Vec::new();
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let s = Arc::clone(&s);
                        workers.push(thread::spawn(move || serve(stream, &s)));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
            for w in workers {
                let _ = w.join();
            }
        });
        FakeTracker {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn announce_url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    /// Announce requests received (complete heads).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Reply bytes each connection took before it ended.
    pub fn sent(&self) -> Vec<u64> {
        self.shared
            .sent
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }
}

impl Drop for FakeTracker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn serve(mut stream: TcpStream, s: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    s.requests.fetch_add(1, Ordering::SeqCst);
    let mut sent = 0u64;
    match &s.reply {
        Reply::Body(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            if stream.write_all(head.as_bytes()).is_ok() && stream.write_all(body).is_ok() {
                sent = body.len() as u64;
            }
        }
        Reply::Huge(len) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            );
            if stream.write_all(head.as_bytes()).is_ok() {
                let chunk = vec![b'x'; 64 * 1024];
                while sent < *len && !s.stop.load(Ordering::SeqCst) {
                    let n = chunk.len().min((len - sent) as usize);
                    match stream.write(&chunk[..n]) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => sent += k as u64,
                    }
                }
            }
        }
    }
    if let Ok(mut v) = s.sent.lock() {
        v.push(sent);
    }
}
