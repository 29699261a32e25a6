//! A peer that attacks whoever connects to it, in plain `std::net`.
//!
//! It listens on 127.0.0.1, answers the BEP 3 handshake with the right info hash, then:
//!
//! - [`Attack::FloodRequests`]: says `interested` and sends `n` `request` messages (16 KiB at
//!   the start of the first piece the remote's bitfield offers, else piece 0) as fast as the
//!   socket takes them, never reading an answer;
//! - [`Attack::HugeLength`]: sends a length prefix of 0xFFFFFFFF (a 4 GiB message) and then
//!   zeros, up to 4 GiB, as fast as the socket takes them.
//!
//! It counts connections, handshakes, bytes it got out after the handshake, and whether
//! the remote closed the connection before the attack was over. One thread accepts, one
//! thread per connection; all stop on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::torrent::InfoHash;

/// What to do after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    FloodRequests(u32),
    HugeLength,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    handshakes: AtomicU64,
    attack_bytes: AtomicU64,
    /// Connections the remote closed before the attack was over.
    cut_off: AtomicU64,
    /// Connections that got the whole attack out.
    completed: AtomicU64,
    /// Connections the remote closed (end of stream or reset seen while reading).
    remote_closes: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostileStats {
    pub connections: u64,
    pub handshakes: u64,
    /// Bytes of attack (after the handshake) written to sockets, all connections.
    pub attack_bytes: u64,
    pub cut_off: u64,
    pub completed: u64,
    pub remote_closes: u64,
}

#[derive(Debug)]
struct Shared {
    info_hash: InfoHash,
    attack: Attack,
    counters: Counters,
    stop: AtomicBool,
}

/// The connection's reading half: drains and drops what the remote sends (its bitfield,
/// keep-alives) and counts its close.
fn drain(mut reader: TcpStream, s: Arc<Shared>) {
    let _ = reader.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 16384];
    while !s.stop.load(Ordering::SeqCst) {
        match reader.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    if !s.stop.load(Ordering::SeqCst) {
        s.counters.remote_closes.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
pub struct HostilePeer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl HostilePeer {
    pub fn start(info_hash: InfoHash, attack: Attack) -> HostilePeer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hostile peer");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            info_hash,
            attack,
            counters: Counters::default(),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let acceptor = thread::spawn(move || {
            let mut workers = Vec::new();
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        s.counters.connections.fetch_add(1, Ordering::SeqCst);
                        let s = Arc::clone(&s);
                        workers.push(thread::spawn(move || run_attack(stream, s)));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
            for w in workers {
                let _ = w.join();
            }
        });
        HostilePeer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> HostileStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        HostileStats {
            connections: get(&c.connections),
            handshakes: get(&c.handshakes),
            attack_bytes: get(&c.attack_bytes),
            cut_off: get(&c.cut_off),
            completed: get(&c.completed),
            remote_closes: get(&c.remote_closes),
        }
    }
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn run_attack(mut stream: TcpStream, shared: Arc<Shared>) {
    let s = &*shared;
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    // A write blocked for this long means the remote stopped reading without closing.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut hs = [0u8; 68];
    if stream.read_exact(&mut hs).is_err()
        || hs[0] != 19
        || &hs[1..20] != b"BitTorrent protocol"
        || hs[28..48] != s.info_hash.0
    {
        return;
    }
    let mut reply = Vec::with_capacity(68);
    reply.push(19);
    reply.extend_from_slice(b"BitTorrent protocol");
    reply.extend_from_slice(&[0; 8]);
    reply.extend_from_slice(&s.info_hash.0);
    reply.extend_from_slice(b"-XX0000-hostilepeer!");
    if stream.write_all(&reply).is_err() {
        return;
    }
    s.counters.handshakes.fetch_add(1, Ordering::SeqCst);
    let piece = if matches!(s.attack, Attack::FloodRequests(_)) {
        first_piece_offered(&mut stream)
    } else {
        0
    };
    // The remote's messages are drained on another thread, so that they never block it.
    let reader = stream
        .try_clone()
        .map(|r| {
            let sh = Arc::clone(&shared);
            thread::spawn(move || drain(r, sh))
        })
        .ok();
    let cut_off = || {
        s.counters.cut_off.fetch_add(1, Ordering::SeqCst);
    };
    let mut send = |bytes: &[u8]| -> bool {
        if stream.write_all(bytes).is_err() {
            return false;
        }
        s.counters
            .attack_bytes
            .fetch_add(bytes.len() as u64, Ordering::SeqCst);
        true
    };
    match s.attack {
        Attack::FloodRequests(n) => {
            if !send(&[0, 0, 0, 1, 2]) {
                return cut_off(); // interested
            }
            let mut request = vec![0, 0, 0, 13, 6];
            request.extend_from_slice(&piece.to_be_bytes());
            request.extend_from_slice(&0u32.to_be_bytes());
            request.extend_from_slice(&16384u32.to_be_bytes());
            let batch = request.repeat(1024);
            let mut left = n as usize;
            while left > 0 && !s.stop.load(Ordering::SeqCst) {
                let k = left.min(1024);
                if !send(&batch[..k * request.len()]) {
                    return cut_off();
                }
                left -= k;
            }
        }
        Attack::HugeLength => {
            if !send(&[0xff, 0xff, 0xff, 0xff]) {
                return cut_off();
            }
            let zeros = vec![0u8; 64 * 1024];
            let mut left = u64::from(u32::MAX);
            while left > 0 && !s.stop.load(Ordering::SeqCst) {
                let k = zeros.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                if !send(&zeros[..k]) {
                    return cut_off();
                }
                left -= k as u64;
            }
        }
    }
    s.counters.completed.fetch_add(1, Ordering::SeqCst);
    // Stay connected until the remote closes us (or we are stopped).
    if let Some(r) = reader {
        let _ = r.join();
    }
}

/// Reads the remote's first message for up to a second: the first piece of its bitfield
/// (0 when it sends none).
fn first_piece_offered(stream: &mut TcpStream) -> u32 {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut len = [0u8; 4];
    if stream.read_exact(&mut len).is_err() {
        return 0;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > 1 << 20 {
        return 0;
    }
    let mut msg = vec![0u8; len];
    if stream.read_exact(&mut msg).is_err() || msg[0] != 5 {
        return 0;
    }
    msg[1..]
        .iter()
        .enumerate()
        .find(|(_, b)| **b != 0)
        .map_or(0, |(i, b)| (i * 8 + b.leading_zeros() as usize) as u32)
}
