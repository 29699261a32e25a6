//! A minimal BitTorrent peer in blocking `std::net` whose connections open with
//! tessera-core's MSE handshake machines (`tessera_core::mse`), for checking them against
//! real clients before the session uses them: it dials or accepts, runs the handshake, then
//! speaks the peer wire protocol through the negotiated cipher and fetches blocks, each
//! checked against the data on disk and each piece against the torrent's hash.
//!
//! Every read waits at most until a deadline; nothing here blocks longer.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tessera_core::Rng;
use tessera_core::mse::{Done, Encryption, Initiator, MseError, Policy, Responder, StreamCipher};
use tessera_core::wire::{BlockRequest, Decoder, Handshake, Message};
use tessera_core::{InfoHash, PeerId};

use crate::torrent::{Torrent, sha1};

/// How long one socket read waits before the deadline is checked again.
const READ_SLICE: Duration = Duration::from_millis(100);

/// An open connection after the MSE (or plaintext) handshake.
#[derive(Debug)]
pub struct MsePeer {
    stream: TcpStream,
    cipher: Option<StreamCipher>,
    decoder: Decoder,
    /// How the handshake ended.
    pub encryption: Encryption,
    /// The torrent the peer named in `req2` (when we accepted an MSE handshake).
    pub info_hash: Option<InfoHash>,
}

/// Our BitTorrent handshake for `info_hash` (no reserved bits: no extensions announced, so
/// the peer answers with a plain bitfield), with a peer id of its own: a client drops a
/// connection whose peer id it still has on another one, as it may for a while after we
/// closed that one.
pub fn bt_handshake(info_hash: InfoHash) -> Bytes {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut id = *b"-TS0001-mse-00000000";
    let suffix = format!("{:08x}", n ^ (std::process::id() << 12));
    id[12..].copy_from_slice(suffix.as_bytes());
    let h = Handshake {
        reserved: [0; 8],
        info_hash,
        peer_id: PeerId(id),
    };
    Bytes::copy_from_slice(&h.encode())
}

fn read_some(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<usize, String> {
    loop {
        if Instant::now() >= deadline {
            return Err("timed out waiting for the peer".into());
        }
        match stream.read(buf) {
            Ok(0) => return Err("the peer closed the connection".into()),
            Ok(n) => return Ok(n),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading: {e}")),
        }
    }
}

/// One side of the handshake, as [`drive`] uses it.
trait Side {
    fn feed(&mut self, bytes: &[u8]) -> Result<Option<Done>, MseError>;
    fn poll_transmit(&mut self) -> Option<Bytes>;
}

impl Side for Initiator {
    fn feed(&mut self, bytes: &[u8]) -> Result<Option<Done>, MseError> {
        Initiator::feed(self, bytes)
    }
    fn poll_transmit(&mut self) -> Option<Bytes> {
        Initiator::poll_transmit(self)
    }
}

/// A responder with the torrents it knows.
struct Accepting<'a>(Responder, &'a [InfoHash]);

impl Side for Accepting<'_> {
    fn feed(&mut self, bytes: &[u8]) -> Result<Option<Done>, MseError> {
        self.0.feed(bytes, self.1)
    }
    fn poll_transmit(&mut self) -> Option<Bytes> {
        self.0.poll_transmit()
    }
}

/// Runs one side of the handshake over `stream`: sends what it yields, feeds it what
/// arrives, until it is done or fails.
fn drive(stream: &mut TcpStream, deadline: Instant, side: &mut dyn Side) -> Result<Done, String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0;
    loop {
        let result = side.feed(&buf[..n]);
        while let Some(out) = side.poll_transmit() {
            stream
                .write_all(&out)
                .map_err(|e| format!("writing the handshake: {e}"))?;
        }
        match result {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            Err(e) => return Err(format!("handshake refused: {e}")),
        }
        n = read_some(stream, &mut buf, deadline)?;
    }
}

/// A seed of its own for each connection's secrets.
fn connection_seed() -> u64 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    u64::from(std::process::id()) << 32 | u64::from(NEXT.fetch_add(1, Ordering::Relaxed))
}

fn setup(stream: &TcpStream) -> Result<(), String> {
    stream
        .set_read_timeout(Some(READ_SLICE))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| format!("socket setup: {e}"))
}

impl MsePeer {
    /// Dials `addr` and runs an MSE initiator for `info_hash` with `policy`, the BitTorrent
    /// handshake as initial payload. `Err` says why the handshake failed.
    pub fn dial(
        addr: SocketAddr,
        info_hash: InfoHash,
        policy: Policy,
        timeout: Duration,
    ) -> Result<MsePeer, String> {
        let deadline = Instant::now() + timeout;
        let mut stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        setup(&stream)?;
        let mut rng = Rng::from_u64(connection_seed());
        let mut init = Initiator::new(&mut rng, info_hash, policy, bt_handshake(info_hash));
        let done = drive(&mut stream, deadline, &mut init)?;
        Ok(MsePeer::after(stream, done))
    }

    /// Accepts one connection on `listener` within `timeout` and runs an MSE responder with
    /// `policy` that knows the torrents `torrents`. Answers with our BitTorrent handshake for
    /// the torrent the peer asked for. `Err` says why the handshake failed.
    pub fn accept(
        listener: &TcpListener,
        torrents: &[InfoHash],
        policy: Policy,
        timeout: Duration,
    ) -> Result<MsePeer, String> {
        let deadline = Instant::now() + timeout;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("listener: {e}"))?;
        let mut stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err("no incoming connection in time".into());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        stream
            .set_nonblocking(false)
            .map_err(|e| format!("socket setup: {e}"))?;
        setup(&stream)?;
        let mut rng = Rng::from_u64(connection_seed());
        let mut resp = Accepting(Responder::new(&mut rng, policy), torrents);
        let done = drive(&mut stream, deadline, &mut resp)?;
        Ok(MsePeer::after(stream, done))
    }

    fn after(stream: TcpStream, done: Done) -> MsePeer {
        let mut decoder = Decoder::new();
        decoder.feed(done.leftover);
        MsePeer {
            stream,
            cipher: done.cipher,
            decoder,
            encryption: done.encryption,
            info_hash: done.info_hash,
        }
    }

    /// A handle that closes the connection from another thread (`shutdown`), ending a
    /// [`serve_pieces`] running there.
    pub fn closer(&self) -> Result<TcpStream, String> {
        self.stream
            .try_clone()
            .map_err(|e| format!("cloning the socket: {e}"))
    }

    /// Sends raw stream bytes, encrypted when the stream is.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut out = bytes.to_vec();
        if let Some(c) = self.cipher.as_mut() {
            c.encrypt(&mut out);
        }
        self.stream
            .write_all(&out)
            .map_err(|e| format!("writing: {e}"))
    }

    /// Sends one message.
    pub fn send_message(&mut self, message: &Message) -> Result<(), String> {
        let mut out = BytesMut::new();
        message.encode(&mut out);
        self.send(&out)
    }

    fn fill(&mut self, deadline: Instant) -> Result<(), String> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = read_some(&mut self.stream, &mut buf, deadline)?;
        buf.truncate(n);
        if let Some(c) = self.cipher.as_mut() {
            c.decrypt(&mut buf);
        }
        self.decoder.feed(Bytes::from(buf));
        Ok(())
    }

    /// The peer's BitTorrent handshake (the first thing after MSE); sets the torrent's piece
    /// count on the decoder.
    pub fn read_handshake(
        &mut self,
        num_pieces: u32,
        deadline: Instant,
    ) -> Result<Handshake, String> {
        loop {
            match self.decoder.handshake() {
                Ok(Some(h)) => {
                    self.decoder.set_num_pieces(num_pieces);
                    return Ok(h);
                }
                Ok(None) => self.fill(deadline)?,
                Err(e) => return Err(format!("bad BitTorrent handshake: {e}")),
            }
        }
    }

    /// The next message.
    pub fn next_message(&mut self, deadline: Instant) -> Result<Message, String> {
        loop {
            match self.decoder.next_message() {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => self.fill(deadline)?,
                Err(e) => return Err(format!("bad message: {e}")),
            }
        }
    }

    /// Whether the peer closes the connection (or sends nothing) within `timeout`, reading
    /// and dropping whatever comes. `Ok(true)`: closed; `Ok(false)`: still open at the end.
    pub fn closes_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            match read_some(&mut self.stream, &mut buf, deadline) {
                Ok(_) => {}
                Err(e) => return !e.starts_with("timed out"),
            }
        }
    }
}

/// The torrent's whole content, its files concatenated in torrent order, read from `dir`
/// (which holds what a seeder serves).
pub fn torrent_bytes(torrent: &Torrent, dir: &Path) -> Vec<u8> {
    let mut all = Vec::with_capacity(usize::try_from(torrent.total_length).expect("fits"));
    for f in &torrent.files {
        if f.length > 0 {
            let path = dir.join(&f.path);
            all.extend(fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        }
    }
    assert_eq!(all.len() as u64, torrent.total_length);
    all
}

/// What [`fetch_pieces`] saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Messages before the first unchoke, by name (bitfield, have_all, extended...).
    pub before_unchoke: Vec<String>,
    /// Blocks received and checked.
    pub blocks: usize,
    /// Pieces whose SHA-1 matched the torrent.
    pub pieces_verified: usize,
}

/// Reads the peer's handshake and first messages, says interested, waits for an unchoke,
/// requests every block of `pieces` (16 KiB blocks, at most 32 in flight) and checks each
/// against `data`, then each whole piece against the torrent's hash. Panics on a mismatch;
/// `Err` on a protocol failure or the deadline.
pub fn fetch_pieces(
    peer: &mut MsePeer,
    torrent: &Torrent,
    data: &[u8],
    pieces: &[u32],
    deadline: Instant,
) -> Result<Fetched, String> {
    const BLOCK: u32 = 16 * 1024;
    let mut fetched = Fetched::default();
    peer.send_message(&Message::Interested)?;
    loop {
        match peer.next_message(deadline)? {
            Message::Unchoke => break,
            other => fetched.before_unchoke.push(name(&other)),
        }
    }
    let mut wanted: Vec<BlockRequest> = Vec::new();
    for &piece in pieces {
        let len = u32::try_from(torrent.piece_len(piece)).expect("piece fits u32");
        wanted.extend((0..len).step_by(BLOCK as usize).map(|offset| BlockRequest {
            piece,
            offset,
            len: BLOCK.min(len - offset),
        }));
    }
    let total = wanted.len();
    let mut next = 0;
    let mut in_flight = 0;
    // Per piece: its bytes as they arrive, and how many arrived.
    let mut piece_bufs: std::collections::HashMap<u32, (Vec<u8>, u64)> = Default::default();
    while fetched.blocks < total {
        while in_flight < 32 && next < total {
            peer.send_message(&Message::Request(wanted[next]))?;
            next += 1;
            in_flight += 1;
        }
        match peer.next_message(deadline)? {
            Message::Piece {
                piece,
                offset,
                data: block,
            } => {
                let start =
                    usize::try_from(u64::from(piece) * torrent.piece_length + u64::from(offset))
                        .expect("fits");
                assert_eq!(
                    &block[..],
                    &data[start..start + block.len()],
                    "block {piece}/{offset} differs from the data"
                );
                let piece_len = torrent.piece_len(piece);
                let (buf, got) = piece_bufs
                    .entry(piece)
                    .or_insert_with(|| (vec![0; piece_len as usize], 0));
                buf[offset as usize..offset as usize + block.len()].copy_from_slice(&block);
                *got += block.len() as u64;
                if *got == piece_len {
                    assert_eq!(
                        sha1(buf),
                        torrent.pieces[piece as usize],
                        "piece {piece} fails its hash"
                    );
                    fetched.pieces_verified += 1;
                }
                fetched.blocks += 1;
                in_flight -= 1;
            }
            Message::Choke => return Err("choked while downloading".into()),
            Message::Reject(r) => return Err(format!("request rejected: {r:?}")),
            _ => {}
        }
    }
    Ok(fetched)
}

fn name(m: &Message) -> String {
    let s = format!("{m:?}");
    s.split(['(', ' ', '{']).next().unwrap_or("?").to_owned()
}

/// What [`serve_pieces`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Served {
    /// Blocks sent.
    pub blocks: usize,
    /// Whether the peer closed the connection (as a leecher does once it is done).
    pub closed_by_peer: bool,
}

/// Seeds to the peer until it closes the connection (or [`MsePeer::closer`] closes it) or
/// `deadline`: reads its handshake, sends ours unless it went out already (as a dialling
/// side's initial payload), a full bitfield and an unchoke, and answers every request from
/// `data` (requests over 128 KiB or outside the torrent end the serving with `Err`).
pub fn serve_pieces(
    peer: &mut MsePeer,
    torrent: &Torrent,
    data: &[u8],
    send_handshake: bool,
    deadline: Instant,
) -> Result<Served, String> {
    let ih = InfoHash(torrent.info_hash.0);
    let hs = peer.read_handshake(torrent.num_pieces(), deadline)?;
    if hs.info_hash != ih {
        return Err(format!("handshake for another torrent: {:?}", hs.info_hash));
    }
    if send_handshake {
        peer.send(&bt_handshake(ih))?;
    }
    let n = torrent.num_pieces() as usize;
    let mut bits = vec![0xffu8; n.div_ceil(8)];
    if !n.is_multiple_of(8) {
        bits[n / 8] = 0xff << (8 - n % 8);
    }
    peer.send_message(&Message::Bitfield(Bytes::from(bits)))?;
    peer.send_message(&Message::Unchoke)?;
    let mut served = Served::default();
    loop {
        let message = match peer.next_message(deadline) {
            Ok(m) => m,
            Err(e) if e.contains("closed") => {
                served.closed_by_peer = true;
                return Ok(served);
            }
            Err(e) => return Err(e),
        };
        if let Message::Request(r) = message {
            let start = u64::from(r.piece) * torrent.piece_length + u64::from(r.offset);
            let end = start + u64::from(r.len);
            if r.len > 128 * 1024 || r.piece >= torrent.num_pieces() || end > torrent.total_length {
                return Err(format!("bad request {r:?}"));
            }
            let block = Bytes::copy_from_slice(&data[start as usize..end as usize]);
            peer.send_message(&Message::Piece {
                piece: r.piece,
                offset: r.offset,
                data: block,
            })?;
            served.blocks += 1;
        }
    }
}
