//! A scripted seeder that misbehaves on purpose, in plain `std::net`.
//!
//! It listens on 127.0.0.1, answers the BEP 3 handshake (19, "BitTorrent protocol", 8 zero
//! reserved bytes, info hash, peer id), sends a full bitfield and an unchoke, and serves every
//! `request` from the real files, except that blocks of the pieces chosen by the corruption rule
//! are XORed with 0x5A before sending. It counts what it served and whether the remote closed
//! the connection. One thread accepts, one thread per connection; all stop on drop.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::torrent::Torrent;

const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Largest block request served; bigger ones are a protocol error (the norm is 16 KiB).
const MAX_REQUEST: u32 = 128 * 1024;
const MAX_MESSAGE: usize = MAX_REQUEST as usize + 13;

/// Which pieces get corrupted blocks.
pub type CorruptRule = dyn Fn(u32) -> bool + Send + Sync;

/// Counters, updated live.
#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    handshakes: AtomicU64,
    blocks_served: AtomicU64,
    corrupt_blocks_served: AtomicU64,
    remote_closes: AtomicU64,
    protocol_errors: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptedStats {
    /// TCP connections accepted.
    pub connections: u64,
    /// Connections whose handshake carried the right info hash.
    pub handshakes: u64,
    /// `piece` messages sent, corrupted or not.
    pub blocks_served: u64,
    pub corrupt_blocks_served: u64,
    /// Connections the remote closed (EOF or reset), as opposed to ours at shutdown.
    pub remote_closes: u64,
    /// Connections we dropped for a bad handshake or message.
    pub protocol_errors: u64,
}

struct Shared {
    torrent: Torrent,
    /// Open data files, in torrent order (None for zero-length files).
    files: Vec<Option<File>>,
    corrupt: Box<CorruptRule>,
    counters: Counters,
    stop: AtomicBool,
}

/// The running scripted seeder; stops and joins its threads on drop.
pub struct ScriptedSeeder {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ScriptedSeeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedSeeder")
            .field("addr", &self.addr)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ScriptedSeeder {
    /// Starts seeding `torrent` from `data_dir` (holding `<name>`), corrupting every block of
    /// the pieces for which `corrupt(piece)` is true.
    pub fn start(
        torrent: &Torrent,
        data_dir: &Path,
        corrupt: impl Fn(u32) -> bool + Send + Sync + 'static,
    ) -> ScriptedSeeder {
        let files = torrent
            .files
            .iter()
            .map(|f| {
                (f.length > 0).then(|| {
                    let p = data_dir.join(&f.path);
                    File::open(&p).unwrap_or_else(|e| panic!("opening {}: {e}", p.display()))
                })
            })
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind scripted seeder");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            torrent: torrent.clone(),
            files,
            corrupt: Box::new(corrupt),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let acceptor = thread::spawn(move || accept_loop(&listener, &s));
        ScriptedSeeder {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> ScriptedStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        ScriptedStats {
            connections: get(&c.connections),
            handshakes: get(&c.handshakes),
            blocks_served: get(&c.blocks_served),
            corrupt_blocks_served: get(&c.corrupt_blocks_served),
            remote_closes: get(&c.remote_closes),
            protocol_errors: get(&c.protocol_errors),
        }
    }
}

impl Drop for ScriptedSeeder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut workers = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                shared.counters.connections.fetch_add(1, Ordering::SeqCst);
                let s = Arc::clone(shared);
                workers.push(thread::spawn(move || serve(stream, &s)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    for w in workers {
        let _ = w.join();
    }
}

/// Why a connection ended.
enum End {
    /// EOF or reset from the remote.
    RemoteClosed,
    /// We are shutting down.
    Stopped,
    /// The remote broke the protocol.
    Protocol,
}

impl From<io::Error> for End {
    fn from(_: io::Error) -> End {
        End::RemoteClosed
    }
}

struct Conn<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    shared: &'a Shared,
}

impl Conn<'_> {
    /// Reads until `buf` holds at least `n` bytes.
    fn fill(&mut self, n: usize) -> Result<(), End> {
        let mut chunk = [0u8; 64 * 1024];
        while self.buf.len() < n {
            if self.shared.stop.load(Ordering::SeqCst) {
                return Err(End::Stopped);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(End::RemoteClosed),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Err(End::RemoteClosed),
            }
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        self.buf.drain(..n).collect()
    }

    fn send_message(&mut self, id: u8, payload: &[u8]) -> Result<(), End> {
        let len = u32::try_from(payload.len() + 1).expect("message length fits u32");
        let mut msg = Vec::with_capacity(payload.len() + 5);
        msg.extend_from_slice(&len.to_be_bytes());
        msg.push(id);
        msg.extend_from_slice(payload);
        self.stream.write_all(&msg)?;
        Ok(())
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        shared,
    };
    let end = run(&mut conn).err().unwrap_or(End::Stopped);
    let c = &shared.counters;
    match end {
        End::RemoteClosed => {
            c.remote_closes.fetch_add(1, Ordering::SeqCst);
        }
        End::Protocol => {
            c.protocol_errors.fetch_add(1, Ordering::SeqCst);
        }
        End::Stopped => {}
    }
    let _ = conn.stream.shutdown(Shutdown::Both);
}

fn run(conn: &mut Conn<'_>) -> Result<(), End> {
    let shared = conn.shared;
    let t = &shared.torrent;

    // Handshake: <19><"BitTorrent protocol"><8 reserved><20 info hash><20 peer id>.
    conn.fill(68)?;
    let hs = conn.take(68);
    if hs[0] != 19 || &hs[1..20] != PROTOCOL || hs[28..48] != t.info_hash.0 {
        return Err(End::Protocol);
    }
    shared.counters.handshakes.fetch_add(1, Ordering::SeqCst);
    let mut reply = Vec::with_capacity(68);
    reply.push(19);
    reply.extend_from_slice(PROTOCOL);
    reply.extend_from_slice(&[0u8; 8]);
    reply.extend_from_slice(&t.info_hash.0);
    reply.extend_from_slice(b"-SC0001-scriptedpeer");
    conn.stream.write_all(&reply)?;

    // A full bitfield (spare bits zero), then unchoke.
    let n = t.num_pieces() as usize;
    let mut bitfield = vec![0xFFu8; n.div_ceil(8)];
    if !n.is_multiple_of(8) {
        let last = bitfield.len() - 1;
        bitfield[last] = 0xFF << (8 - n % 8);
    }
    conn.send_message(5, &bitfield)?;
    conn.send_message(1, &[])?;

    let mut block = Vec::new();
    loop {
        conn.fill(4)?;
        let len = u32::from_be_bytes(conn.take(4).try_into().expect("4 bytes")) as usize;
        if len == 0 {
            continue; // keep-alive
        }
        if len > MAX_MESSAGE {
            return Err(End::Protocol);
        }
        conn.fill(len)?;
        let msg = conn.take(len);
        // choke, unchoke, interested, not interested, have, bitfield, cancel, port and
        // extension messages need no answer from a seeder that unchokes everyone.
        if msg[0] != 6 {
            continue;
        }
        if msg.len() != 13 {
            return Err(End::Protocol);
        }
        let word = |i: usize| u32::from_be_bytes(msg[i..i + 4].try_into().expect("4 bytes"));
        let (index, begin, length) = (word(1), word(5), word(9));
        if index >= t.num_pieces()
            || length == 0
            || length > MAX_REQUEST
            || u64::from(begin) + u64::from(length) > t.piece_len(index)
        {
            return Err(End::Protocol);
        }
        let offset = u64::from(index) * t.piece_length + u64::from(begin);
        block.resize(length as usize, 0);
        read_at(shared, offset, &mut block);
        let corrupt = (shared.corrupt)(index);
        if corrupt {
            block.iter_mut().for_each(|b| *b ^= 0x5A);
        }
        let mut payload = Vec::with_capacity(8 + block.len());
        payload.extend_from_slice(&index.to_be_bytes());
        payload.extend_from_slice(&begin.to_be_bytes());
        payload.extend_from_slice(&block);
        conn.send_message(7, &payload)?;
        shared.counters.blocks_served.fetch_add(1, Ordering::SeqCst);
        if corrupt {
            shared
                .counters
                .corrupt_blocks_served
                .fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Reads `buf.len()` bytes of the torrent's byte stream at `offset`, across files.
fn read_at(shared: &Shared, offset: u64, buf: &mut [u8]) {
    let mut done = 0usize;
    for (f, file) in shared.torrent.files.iter().zip(&shared.files) {
        let pos = offset + done as u64;
        if done == buf.len() {
            break;
        }
        if f.length == 0 || pos >= f.offset + f.length || pos < f.offset {
            continue;
        }
        let in_file = pos - f.offset;
        let n = usize::try_from((f.length - in_file).min((buf.len() - done) as u64))
            .expect("fits usize");
        file.as_ref()
            .expect("non-empty file is open")
            .read_exact_at(&mut buf[done..done + n], in_file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", f.path.display()));
        done += n;
    }
    assert_eq!(
        done,
        buf.len(),
        "block at {offset} runs past the torrent's data"
    );
}
