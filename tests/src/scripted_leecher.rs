//! A scripted leecher in plain `std::net`, polite or hostile, to test a seeder.
//!
//! It dials the seeder, sends the BEP 3 handshake (reserved bytes zero, so no extension or
//! fast-extension messages come back) and `interested`, and waits (bounded) for `unchoke`.
//! Then, by [`Behaviour`]:
//!
//! - [`Behaviour::Polite`]: downloads a few pieces with 16 KiB requests, a few in flight,
//!   checks each against the torrent's SHA-1, says `not interested` and stays connected
//!   (keep-alives) until stopped. A control: a seeder must serve it and never drop it.
//!   It announces each piece it gets with `have`. [`Behaviour::PoliteLateBitfield`] also
//!   sends a bitfield after its first piece, as aria2 does.
//! - [`Behaviour::Flood`]: writes a flood of valid 16 KiB requests without reading a byte.
//! - [`Behaviour::OutOfRange`]: requests that cannot be served: pieces past the last one and
//!   at `u32::MAX`, blocks starting at or running past the end of their piece, an offset
//!   near `u32::MAX`.
//! - [`Behaviour::Oversized`]: requests of `len` bytes (1 MiB, say) inside pieces the seeder
//!   has.
//! - [`Behaviour::Lacking`]: requests for pieces the seeder does not offer.
//! - [`Behaviour::WhileChoked`]: not interested, so never unchoked, and requests anyway.
//!
//! A hostile leecher then reads (and discards) whatever comes until the seeder closes the
//! connection (EOF or reset, or a failed write while flooding) or a bound passes, and
//! reports when that happened relative to its first hostile request. The unchoke wait is
//! bounded; a hostile leecher that was never unchoked misbehaves anyway (requests while
//! choked are invalid too) and its report says so.
//!
//! Every received `piece` message is checked: a block not asked for (for the out-of-range and
//! oversized leechers, that is every block), a block longer than 16 KiB, or (polite) a piece
//! whose bytes fail SHA-1 counts as bad.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::torrent::{Torrent, sha1};

const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// The block size every client asks for.
pub const BLOCK: u32 = 16 * 1024;
/// Largest message accepted from the seeder: room to see (and report) an oversized block.
const MAX_MESSAGE: usize = 4 << 20;
/// How long a leecher waits for `unchoke` before it goes on without it.
pub const UNCHOKE_WAIT: Duration = Duration::from_secs(25);
/// How long a hostile leecher waits for the seeder to close the connection after its burst.
pub const CLOSE_WAIT: Duration = Duration::from_secs(30);
/// Requests in flight for the polite leecher.
const POLITE_DEPTH: usize = 8;
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(20);

/// What the scripted leecher does once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Download `pieces` pieces starting at `first` (wrapping), check them, then idle.
    Polite { first: u32, pieces: u32 },
    /// [`Behaviour::Polite`], and after its first piece it sends a `bitfield` (after `have`s
    /// and requests), as aria2 1.36 does with a peer that supports no extension: BEP 3 wants
    /// the bitfield first, but clients meet this in the wild.
    PoliteLateBitfield { first: u32, pieces: u32 },
    /// `count` valid 16 KiB requests written back to back, nothing read meanwhile.
    Flood { count: u32 },
    /// `count` requests no seeder can serve (kinds in rotation).
    OutOfRange { count: u32 },
    /// `count` requests of `len` bytes at offset 0 of pieces at least that long.
    Oversized { count: u32, len: u32 },
    /// `count` valid-looking 16 KiB requests for pieces the seeder's bitfield and `have`s do
    /// not offer (a partial seeder).
    Lacking { count: u32 },
    /// Never `interested`: waits `wait_secs` (still choked), then sends `count` requests for
    /// pieces the seeder has.
    WhileChoked { count: u32, wait_secs: u32 },
}

impl Behaviour {
    pub fn is_hostile(&self) -> bool {
        !matches!(
            self,
            Behaviour::Polite { .. } | Behaviour::PoliteLateBitfield { .. }
        )
    }
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Still open when the leecher was stopped (or its close wait ran out).
    Open,
    /// The seeder closed: orderly EOF.
    Eof,
    /// The seeder reset the connection (what a close with unread data becomes).
    Reset,
    /// A write failed with a broken pipe or reset while the leecher was sending.
    WriteFailed(String),
    /// The seeder stopped reading: a write made no progress for the write timeout.
    WriteStalled,
    /// Never connected, or the handshake was wrong.
    Failed(String),
}

impl Ending {
    /// The seeder ended the connection.
    pub fn cut_off(&self) -> bool {
        matches!(self, Ending::Eof | Ending::Reset | Ending::WriteFailed(_))
    }
}

/// What one scripted leecher saw.
#[derive(Debug, Clone)]
pub struct LeecherReport {
    pub behaviour: Behaviour,
    /// The seeder answered with a handshake for our info hash.
    pub handshake: bool,
    /// Pieces the seeder's bitfield and `have`s offered.
    pub pieces_offered: u32,
    /// From connecting to the first `unchoke`, if one came.
    pub unchoked_after: Option<Duration>,
    /// `choke` messages received.
    pub chokes: u64,
    pub requests_sent: u64,
    /// `piece` messages received, and their payload bytes.
    pub blocks: u64,
    pub block_bytes: u64,
    /// Blocks that were not asked for, were the wrong length, or (polite) pieces that failed
    /// SHA-1. Any is a seeder bug.
    pub bad_blocks: u64,
    pub largest_block: u32,
    /// Polite: pieces downloaded and matching the torrent's SHA-1.
    pub pieces_verified: u32,
    /// From the first hostile request sent to the end of the connection.
    pub closed_after: Option<Duration>,
    pub ending: Ending,
}

/// A running scripted leecher (one thread); stopped on drop.
#[derive(Debug)]
pub struct ScriptedLeecher {
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    thread: Option<JoinHandle<LeecherReport>>,
}

impl ScriptedLeecher {
    /// Dials `seeder` for `torrent` and behaves as told, on a thread of its own.
    pub fn start(seeder: SocketAddr, torrent: &Torrent, behaviour: Behaviour) -> ScriptedLeecher {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut peer_id = *b"-SL0001-000000000000";
        let tail = format!(
            "{:06}{:06}",
            std::process::id() % 1_000_000,
            seq % 1_000_000
        );
        peer_id[8..].copy_from_slice(tail.as_bytes());
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        let torrent = torrent.clone();
        let (s, p) = (Arc::clone(&stop), Arc::clone(&progress));
        let thread = thread::Builder::new()
            .name(format!("scripted-leecher-{seq}"))
            .spawn(move || run(seeder, &torrent, behaviour, peer_id, &s, &p))
            .expect("spawn scripted leecher");
        ScriptedLeecher {
            stop,
            progress,
            thread: Some(thread),
        }
    }

    /// The thread has ended (a hostile leecher ends once its connection does).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Polite: pieces verified so far.
    pub fn pieces_verified(&self) -> u64 {
        self.progress.load(Ordering::SeqCst)
    }

    /// Stops the leecher (closing its connection if still open) and returns its report.
    pub fn finish(mut self) -> LeecherReport {
        self.end().expect("the leecher's report")
    }

    fn end(&mut self) -> Option<LeecherReport> {
        self.stop.store(true, Ordering::SeqCst);
        let t = self.thread.take()?;
        match t.join() {
            Ok(r) => Some(r),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for ScriptedLeecher {
    fn drop(&mut self) {
        if !thread::panicking() {
            self.end();
        } else {
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// Why the connection loop stopped.
enum Stop {
    /// The seeder closed (EOF, reset) or broke the protocol.
    Closed(Ending),
    /// Told to stop.
    Stopped,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    connected_at: Instant,
    r: LeecherReport,
    /// Blocks requested and not received yet: (piece, offset, length).
    wanted: Vec<(u32, u32, u32)>,
    /// The seeder chokes us (the state at connection start).
    choked: bool,
    /// Pieces the seeder offers (bitfield and `have`s).
    has: Vec<bool>,
}

enum Msg {
    KeepAlive,
    Other(u8, Vec<u8>),
}

impl Conn {
    /// Reads one message, waiting at most until `deadline` (or the stop flag).
    fn read_msg(&mut self, deadline: Instant, stop: &AtomicBool) -> Result<Option<Msg>, Stop> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
                if len > MAX_MESSAGE {
                    return Err(Stop::Closed(Ending::Failed(format!(
                        "the seeder sent a {len}-byte message"
                    ))));
                }
                if self.buf.len() >= 4 + len {
                    let body: Vec<u8> = self.buf.drain(..4 + len).skip(4).collect();
                    return Ok(Some(if len == 0 {
                        Msg::KeepAlive
                    } else {
                        Msg::Other(body[0], body[1..].to_vec())
                    }));
                }
            }
            if stop.load(Ordering::SeqCst) {
                return Err(Stop::Stopped);
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// One read (the socket has a short read timeout).
    fn fill(&mut self) -> Result<(), Stop> {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(Stop::Closed(Ending::Eof)),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if is_timeout(&e) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                Err(Stop::Closed(Ending::Reset))
            }
            Err(e) => Err(Stop::Closed(Ending::Failed(format!("read: {e}")))),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        self.stream.write_all(bytes).map_err(|e| {
            Stop::Closed(if is_timeout(&e) {
                Ending::WriteStalled
            } else if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
            ) {
                Ending::WriteFailed(e.to_string())
            } else {
                Ending::Failed(format!("write: {e}"))
            })
        })
    }

    /// Handles a message from the seeder; returns a received block `(piece, offset, data)`.
    fn handle(&mut self, id: u8, body: Vec<u8>) -> Option<(u32, u32, Vec<u8>)> {
        let word = |b: &[u8], i: usize| {
            b.get(i..i + 4)
                .map(|w| u32::from_be_bytes(w.try_into().expect("4")))
        };
        match id {
            0 => {
                self.r.chokes += 1;
                self.choked = true;
                // BEP 3: a choke discards our outstanding requests.
                self.wanted.clear();
            }
            1 => {
                self.choked = false;
                if self.r.unchoked_after.is_none() {
                    self.r.unchoked_after = Some(self.connected_at.elapsed());
                }
            }
            4 => {
                if let Some(p) = word(&body, 0).and_then(|p| self.has.get_mut(p as usize)) {
                    *p = true;
                }
                self.r.pieces_offered = self.has.iter().filter(|h| **h).count() as u32;
            }
            5 => {
                for (i, h) in self.has.iter_mut().enumerate() {
                    *h = body.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0);
                }
                self.r.pieces_offered = self.has.iter().filter(|h| **h).count() as u32;
            }
            7 => {
                let (Some(piece), Some(offset)) = (word(&body, 0), word(&body, 4)) else {
                    self.r.bad_blocks += 1;
                    return None;
                };
                let data = body[8..].to_vec();
                let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
                self.r.blocks += 1;
                self.r.block_bytes += data.len() as u64;
                self.r.largest_block = self.r.largest_block.max(len);
                match self.wanted.iter().position(|w| *w == (piece, offset, len)) {
                    Some(i) if len <= BLOCK => {
                        self.wanted.swap_remove(i);
                        return Some((piece, offset, data));
                    }
                    _ => self.r.bad_blocks += 1,
                }
            }
            _ => {}
        }
        None
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn message(id: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len() + 1).expect("message fits");
    let mut m = Vec::with_capacity(payload.len() + 5);
    m.extend_from_slice(&len.to_be_bytes());
    m.push(id);
    m.extend_from_slice(payload);
    m
}

fn request(piece: u32, offset: u32, len: u32) -> Vec<u8> {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&piece.to_be_bytes());
    p[4..8].copy_from_slice(&offset.to_be_bytes());
    p[8..].copy_from_slice(&len.to_be_bytes());
    message(6, &p)
}

fn run(
    seeder: SocketAddr,
    t: &Torrent,
    behaviour: Behaviour,
    peer_id: [u8; 20],
    stop: &AtomicBool,
    progress: &AtomicU64,
) -> LeecherReport {
    let mut report = LeecherReport {
        behaviour,
        handshake: false,
        pieces_offered: 0,
        unchoked_after: None,
        chokes: 0,
        requests_sent: 0,
        blocks: 0,
        block_bytes: 0,
        bad_blocks: 0,
        largest_block: 0,
        pieces_verified: 0,
        closed_after: None,
        ending: Ending::Open,
    };
    let stream = match TcpStream::connect_timeout(&seeder, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => {
            report.ending = Ending::Failed(format!("connect {seeder}: {e}"));
            return report;
        }
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(20)));
    let _ = stream.set_nodelay(true);
    let mut c = Conn {
        stream,
        buf: Vec::new(),
        connected_at: Instant::now(),
        r: report,
        wanted: Vec::new(),
        choked: true,
        has: vec![false; t.num_pieces() as usize],
    };
    let mut hostile_at = None;
    let end = session(
        &mut c,
        t,
        behaviour,
        peer_id,
        stop,
        progress,
        &mut hostile_at,
    );
    c.r.ending = match end {
        Ok(()) | Err(Stop::Stopped) => Ending::Open,
        Err(Stop::Closed(e)) => e,
    };
    if c.r.ending.cut_off() {
        c.r.closed_after = hostile_at.map(|at: Instant| at.elapsed());
    }
    let _ = c.stream.shutdown(Shutdown::Both);
    c.r
}

fn session(
    c: &mut Conn,
    t: &Torrent,
    behaviour: Behaviour,
    peer_id: [u8; 20],
    stop: &AtomicBool,
    progress: &AtomicU64,
    hostile_at: &mut Option<Instant>,
) -> Result<(), Stop> {
    // Handshake.
    let mut hs = Vec::with_capacity(68);
    hs.push(19);
    hs.extend_from_slice(PROTOCOL);
    hs.extend_from_slice(&[0u8; 8]);
    hs.extend_from_slice(&t.info_hash.0);
    hs.extend_from_slice(&peer_id);
    c.write(&hs)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.buf.len() < 68 {
        if Instant::now() >= deadline || stop.load(Ordering::SeqCst) {
            return Err(Stop::Closed(Ending::Failed(
                "no handshake from the seeder within 10 s".into(),
            )));
        }
        c.fill()?;
    }
    let theirs: Vec<u8> = c.buf.drain(..68).collect();
    if theirs[0] != 19 || &theirs[1..20] != PROTOCOL || theirs[28..48] != t.info_hash.0 {
        return Err(Stop::Closed(Ending::Failed(format!(
            "bad handshake from the seeder: {theirs:02x?}"
        ))));
    }
    c.r.handshake = true;
    let wait = match behaviour {
        Behaviour::WhileChoked { wait_secs, .. } => Duration::from_secs(wait_secs.into()),
        _ => {
            c.write(&message(2, &[]))?; // interested
            UNCHOKE_WAIT
        }
    };

    // Wait (bounded) for unchoke; the choked requester just waits.
    let deadline = Instant::now() + wait;
    while (c.r.unchoked_after.is_none() || matches!(behaviour, Behaviour::WhileChoked { .. }))
        && Instant::now() < deadline
    {
        if let Some(Msg::Other(id, body)) = c.read_msg(deadline, stop)? {
            c.handle(id, body);
        }
    }

    match behaviour {
        Behaviour::Polite { first, pieces } => polite(c, t, first, pieces, false, stop, progress),
        Behaviour::PoliteLateBitfield { first, pieces } => {
            polite(c, t, first, pieces, true, stop, progress)
        }
        Behaviour::Flood { count } => {
            *hostile_at = Some(Instant::now());
            let per_piece = t.piece_length.div_ceil(u64::from(BLOCK));
            let mut batch = Vec::with_capacity(17 * 1024);
            let mut i = 0u64;
            while c.r.requests_sent < u64::from(count) {
                // Valid 16 KiB requests walking through the torrent, wrapping around.
                let piece = u32::try_from((i / per_piece) % u64::from(t.num_pieces()))
                    .expect("piece index fits");
                let offset = (i % per_piece) * u64::from(BLOCK);
                i += 1;
                if offset >= t.piece_len(piece) {
                    continue; // past the end of the short last piece
                }
                let len = u32::try_from((t.piece_len(piece) - offset).min(u64::from(BLOCK)))
                    .expect("fits");
                let offset = u32::try_from(offset).expect("fits");
                batch.extend_from_slice(&request(piece, offset, len));
                c.wanted.push((piece, offset, len));
                c.r.requests_sent += 1;
                if batch.len() >= 16 * 1024 {
                    c.write(&batch)?;
                    batch.clear();
                }
            }
            c.write(&batch)?;
            drain_until_closed(c, stop)
        }
        Behaviour::OutOfRange { count } => {
            let last = t.num_pieces() - 1;
            let last_len = u32::try_from(t.piece_len(last)).expect("fits");
            let plen = u32::try_from(t.piece_length).expect("fits");
            let kinds = [
                (t.num_pieces(), 0, BLOCK),   // the piece after the last
                (u32::MAX, 0, BLOCK),         // far past the last
                (last, last_len, BLOCK),      // starts at the end of the last piece
                (0, plen - BLOCK / 2, BLOCK), // runs past the end of piece 0
                (1, u32::MAX - 100, BLOCK),   // offset + length overflows u32
                (last, last_len - 1, BLOCK),  // runs past the end of the short last piece
            ];
            let mut burst = Vec::new();
            for k in 0..count as usize {
                let (p, o, l) = kinds[k % kinds.len()];
                burst.extend_from_slice(&request(p, o, l));
                c.r.requests_sent += 1;
            }
            *hostile_at = Some(Instant::now());
            c.write(&burst)?;
            drain_until_closed(c, stop)
        }
        Behaviour::Lacking { count } => {
            let lacking: Vec<u32> = (0..t.num_pieces())
                .filter(|&p| !c.has[p as usize])
                .collect();
            if lacking.is_empty() {
                return Err(Stop::Closed(Ending::Failed(
                    "the seeder offers every piece: none to ask for that it lacks".into(),
                )));
            }
            let mut burst = Vec::new();
            for k in 0..count as usize {
                let piece = lacking[k % lacking.len()];
                let len = u32::try_from(t.piece_len(piece).min(u64::from(BLOCK))).expect("fits");
                burst.extend_from_slice(&request(piece, 0, len));
                c.r.requests_sent += 1;
            }
            *hostile_at = Some(Instant::now());
            c.write(&burst)?;
            drain_until_closed(c, stop)
        }
        Behaviour::WhileChoked { count, .. } => {
            let mut burst = Vec::new();
            for k in 0..count {
                let piece = k % t.num_pieces();
                let len = u32::try_from(t.piece_len(piece).min(u64::from(BLOCK))).expect("fits");
                burst.extend_from_slice(&request(piece, 0, len));
                c.r.requests_sent += 1;
            }
            *hostile_at = Some(Instant::now());
            c.write(&burst)?;
            drain_until_closed(c, stop)
        }
        Behaviour::Oversized { count, len } => {
            let pieces: Vec<u32> = (0..t.num_pieces())
                .filter(|&p| t.piece_len(p) >= u64::from(len))
                .collect();
            assert!(
                !pieces.is_empty(),
                "no piece of {} is {len} bytes long",
                t.name
            );
            let mut burst = Vec::new();
            for k in 0..count as usize {
                burst.extend_from_slice(&request(pieces[k % pieces.len()], 0, len));
                c.r.requests_sent += 1;
            }
            *hostile_at = Some(Instant::now());
            c.write(&burst)?;
            drain_until_closed(c, stop)
        }
    }
}

/// Reads and checks whatever the seeder sends until it closes, the stop flag, or
/// [`CLOSE_WAIT`].
fn drain_until_closed(c: &mut Conn, stop: &AtomicBool) -> Result<(), Stop> {
    let deadline = Instant::now() + CLOSE_WAIT;
    while Instant::now() < deadline {
        if let Some(Msg::Other(id, body)) = c.read_msg(deadline, stop)? {
            c.handle(id, body);
        }
    }
    Ok(())
}

fn polite(
    c: &mut Conn,
    t: &Torrent,
    first: u32,
    pieces: u32,
    late_bitfield: bool,
    stop: &AtomicBool,
    progress: &AtomicU64,
) -> Result<(), Stop> {
    let mut mine = vec![0u8; (t.num_pieces() as usize).div_ceil(8)];
    let mut todo: Vec<u32> = (0..pieces.min(t.num_pieces()))
        .map(|k| (first + k) % t.num_pieces())
        .collect();
    todo.reverse();
    let mut last_sent = Instant::now();
    while let Some(piece) = todo.pop() {
        let plen = t.piece_len(piece);
        let blocks = u32::try_from(plen.div_ceil(u64::from(BLOCK))).expect("fits");
        let mut data = vec![0u8; usize::try_from(plen).expect("fits")];
        let mut got = vec![false; blocks as usize];
        let mut asked = vec![false; blocks as usize];
        while got.iter().any(|g| !g) {
            // Keep POLITE_DEPTH requests in flight while unchoked.
            if !c.choked {
                for b in 0..blocks {
                    if c.wanted.len() >= POLITE_DEPTH {
                        break;
                    }
                    if got[b as usize] || asked[b as usize] {
                        continue;
                    }
                    let offset = b * BLOCK;
                    let len = u32::try_from((plen - u64::from(offset)).min(u64::from(BLOCK)))
                        .expect("fits");
                    c.write(&request(piece, offset, len))?;
                    c.wanted.push((piece, offset, len));
                    asked[b as usize] = true;
                    c.r.requests_sent += 1;
                    last_sent = Instant::now();
                }
            }
            let deadline = Instant::now() + Duration::from_millis(200);
            if let Some(Msg::Other(id, body)) = c.read_msg(deadline, stop)? {
                if let Some((p, o, block)) = c.handle(id, body) {
                    let b = (o / BLOCK) as usize;
                    if p == piece && o % BLOCK == 0 && !got[b] {
                        data[o as usize..o as usize + block.len()].copy_from_slice(&block);
                        got[b] = true;
                    } else {
                        c.r.bad_blocks += 1;
                    }
                }
                if id == 0 {
                    // Choked: what was in flight is void; ask again after the next unchoke.
                    asked.copy_from_slice(&got);
                }
            }
            if last_sent.elapsed() > KEEP_ALIVE_EVERY {
                c.write(&0u32.to_be_bytes())?;
                last_sent = Instant::now();
            }
        }
        if sha1(&data) == t.pieces[piece as usize] {
            c.r.pieces_verified += 1;
            progress.store(u64::from(c.r.pieces_verified), Ordering::SeqCst);
            mine[piece as usize / 8] |= 0x80 >> (piece % 8);
            c.write(&message(4, &piece.to_be_bytes()))?; // have
            if late_bitfield && c.r.pieces_verified == 1 {
                c.write(&message(5, &mine))?;
            }
        } else {
            c.r.bad_blocks += 1;
        }
    }
    c.write(&message(3, &[]))?; // not interested: done
    idle(c, stop, last_sent)
}

/// Stays connected, sending keep-alives, until stopped or closed.
fn idle(c: &mut Conn, stop: &AtomicBool, mut last_sent: Instant) -> Result<(), Stop> {
    loop {
        let deadline = Instant::now() + Duration::from_millis(200);
        if let Some(Msg::Other(id, body)) = c.read_msg(deadline, stop)? {
            c.handle(id, body);
        }
        if last_sent.elapsed() > KEEP_ALIVE_EVERY {
            c.write(&0u32.to_be_bytes())?;
            last_sent = Instant::now();
        }
    }
}
