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
//! It counts connections, handshakes, bytes it got out after the handshake, and how each
//! connection ended. A connection counts as closed by the remote only when the remote really
//! closed it: the reading half saw end of stream or a reset, or a write failed with a broken
//! pipe or a reset. A write that makes no progress for 5 s (the remote stopped reading but
//! keeps the connection) is a stall, not a close: the attack stops there and the connection
//! stays open until the remote closes it or the peer is dropped. One thread accepts, one
//! thread per connection (and one reading each); all stop on drop.

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
    /// Connections whose attack stopped at a write that made no progress.
    stalled: AtomicU64,
    /// Connections that got the whole attack out.
    completed: AtomicU64,
    /// Connections the remote closed, at any time (each counted once).
    remote_closes: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostileStats {
    pub connections: u64,
    pub handshakes: u64,
    /// Bytes of attack (after the handshake) written to sockets, all connections.
    pub attack_bytes: u64,
    /// Connections the remote closed (reset, broken pipe) while the attack was being written.
    pub cut_off: u64,
    /// Connections whose attack stopped because the remote stopped reading (not a close).
    pub stalled: u64,
    /// Connections that got the whole attack out.
    pub completed: u64,
    /// Connections the remote closed (end of stream or reset read, or a write failing with
    /// a broken pipe or reset), whenever it happened; at most one per connection.
    pub remote_closes: u64,
}

#[derive(Debug)]
struct Shared {
    info_hash: InfoHash,
    attack: Attack,
    counters: Counters,
    stop: AtomicBool,
}

/// Marks the connection closed by the remote, counting it once.
fn remote_closed(s: &Shared, closed: &AtomicBool) {
    if !closed.swap(true, Ordering::SeqCst) {
        s.counters.remote_closes.fetch_add(1, Ordering::SeqCst);
    }
}

/// The connection's reading half: drains and drops what the remote sends (its bitfield,
/// keep-alives) and notes its close (end of stream or reset; nothing else counts).
fn drain(mut reader: TcpStream, s: Arc<Shared>, closed: Arc<AtomicBool>) {
    let _ = reader.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 16384];
    while !s.stop.load(Ordering::SeqCst) && !closed.load(Ordering::SeqCst) {
        match reader.read(&mut sink) {
            Ok(0) => return remote_closed(&s, &closed),
            Ok(_) => {}
            Err(e) if is_close(&e) => return remote_closed(&s, &closed),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

/// An error that means the remote closed or reset the connection.
fn is_close(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
    )
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
            stalled: get(&c.stalled),
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
    let closed = Arc::new(AtomicBool::new(false));
    let reader = stream
        .try_clone()
        .map(|r| {
            let sh = Arc::clone(&shared);
            let cl = Arc::clone(&closed);
            thread::spawn(move || drain(r, sh, cl))
        })
        .ok();
    // Why a write failed: the remote closed the connection (counted as cut off), or it
    // stopped reading (a stall), or something else (neither).
    let failed = |e: &std::io::Error| {
        if is_close(e) {
            s.counters.cut_off.fetch_add(1, Ordering::SeqCst);
            remote_closed(s, &closed);
        } else if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            s.counters.stalled.fetch_add(1, Ordering::SeqCst);
        }
    };
    let mut send = |bytes: &[u8]| -> Result<(), std::io::Error> {
        stream.write_all(bytes)?;
        s.counters
            .attack_bytes
            .fetch_add(bytes.len() as u64, Ordering::SeqCst);
        Ok(())
    };
    let mut attack = || -> Result<(), std::io::Error> {
        match s.attack {
            Attack::FloodRequests(n) => {
                send(&[0, 0, 0, 1, 2])?; // interested
                let mut request = vec![0, 0, 0, 13, 6];
                request.extend_from_slice(&piece.to_be_bytes());
                request.extend_from_slice(&0u32.to_be_bytes());
                request.extend_from_slice(&16384u32.to_be_bytes());
                let batch = request.repeat(1024);
                let mut left = n as usize;
                while left > 0 && !s.stop.load(Ordering::SeqCst) {
                    let k = left.min(1024);
                    send(&batch[..k * request.len()])?;
                    left -= k;
                }
            }
            Attack::HugeLength => {
                send(&[0xff, 0xff, 0xff, 0xff])?;
                let zeros = vec![0u8; 64 * 1024];
                let mut left = u64::from(u32::MAX);
                while left > 0 && !s.stop.load(Ordering::SeqCst) {
                    let k = zeros.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    send(&zeros[..k])?;
                    left -= k as u64;
                }
            }
        }
        Ok(())
    };
    match attack() {
        Ok(()) => {
            s.counters.completed.fetch_add(1, Ordering::SeqCst);
        }
        Err(e) => failed(&e),
    }
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
